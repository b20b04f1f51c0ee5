"""``python -m keyart.simulation.experiments closed-loop --requests N --seed S [--policies a,b]``."""

from keyart.simulation.experiments.closed_loop import main

raise SystemExit(main())
