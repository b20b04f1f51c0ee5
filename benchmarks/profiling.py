"""Where the time goes: a ``cProfile`` run's functions by their own time, as the table the benchmarks'
``--profile N`` options print (``tune_defaults.py``, ``bench_service.py --inprocess``)."""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path
from typing import Any


def own_times(profiler: cProfile.Profile, top: int) -> tuple[float, list[dict[str, Any]]]:
    """The seconds of all functions' own time, and the ``top`` functions by own time: calls, own seconds,
    their share of the total, and seconds with their callees."""
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    table = [
        {
            "function": f"{Path(file).name}:{line} {func}",
            "calls": calls,
            "own s": round(own, 2),
            "own %": round(100 * own / total, 1),
            "with callees s": round(cum, 2),
        }
        for (file, line, func), (_, calls, own, cum, _) in rows
    ]
    return total, table
