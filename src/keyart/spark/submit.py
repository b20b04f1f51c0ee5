"""The ``keyart spark`` commands as a file Spark can run: ``spark-submit .../keyart/spark/submit.py COMMAND
...`` (``python -m keyart.spark.submit`` takes the same arguments), with keyart's errors as one line and
an exit code (``keyart.cli``'s handling)."""

from __future__ import annotations

import sys


def main() -> None:
    """``keyart spark COMMAND ...`` with this process's arguments."""
    from keyart.cli import app

    app(["spark", *sys.argv[1:]])


if __name__ == "__main__":  # pragma: no cover - run by spark-submit
    main()
