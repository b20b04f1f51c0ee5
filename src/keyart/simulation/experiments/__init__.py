"""The evidence of "Artwork Personalization at Netflix" (2017), reproduced in a simulated world whose
truth is known.

1. ``batch_vs_online``: a classic batch cycle (collect, train, A/B test, roll out) against a contextual
   bandit learning continuously; cumulative regret over time.
2. ``offline_replay``: from a uniform-random exploration log, the replay estimate (with its interval) of
   Random, the non-contextual Bandit and contextual bandits, next to each policy's true value.
3. ``taste_showcase``: which artwork of one comedy-romance title the contextual policy shows to members
   inclined to comedy and to members inclined to romance, next to the world's own best choice.
4. ``ab_test``: an online A/B test of personalized against unpersonalized selection, with the lift and its
   interval, split by members with and without prior interaction with the title.

Experiments 1 and 4 also report what their online policies showed (``stickiness``): the share of
decisions that explored and how often a member's artwork of a title changed within a sticky period.

``python -m keyart.simulation.experiments closed-loop --requests 200000`` runs the long closed-loop
comparison of every policy (see ``benchmarks/bench_closed_loop.py``).

One module per experiment (``batch_online``, ``replay``, ``showcase``, ``abtest``, ``closed_loop``;
``stickiness`` for what was shown; ``cold_start`` for new artworks in an image world), the policies they
share in ``suite``; every public name is importable from this package.
"""

from keyart.simulation.experiments.abtest import ABResult, Lift, ab_test, lift_interval
from keyart.simulation.experiments.batch_online import BatchOnlineResult, batch_vs_online
from keyart.simulation.experiments.closed_loop import (
    ClosedLoopComparison,
    compare_closed_loop,
    format_table,
    main,
)
from keyart.simulation.experiments.cold_start import ColdStartCurve, ColdStartResult, cold_start
from keyart.simulation.experiments.replay import ReplayResult, ReplayRow, offline_replay
from keyart.simulation.experiments.showcase import ShowcaseResult, taste_showcase
from keyart.simulation.experiments.stickiness import ShownLog, Stickiness, count_switches
from keyart.simulation.experiments.suite import (
    DEFAULT_SUITE_POLICY,
    NON_CONTEXTUAL,
    POLICY_SUITE,
    make_suite_policy,
)

__all__ = [
    "DEFAULT_SUITE_POLICY",
    "NON_CONTEXTUAL",
    "POLICY_SUITE",
    "ABResult",
    "BatchOnlineResult",
    "ClosedLoopComparison",
    "ColdStartCurve",
    "ColdStartResult",
    "Lift",
    "ReplayResult",
    "ReplayRow",
    "ShowcaseResult",
    "ShownLog",
    "Stickiness",
    "ab_test",
    "batch_vs_online",
    "cold_start",
    "compare_closed_loop",
    "count_switches",
    "format_table",
    "lift_interval",
    "main",
    "make_suite_policy",
    "offline_replay",
    "taste_showcase",
]
