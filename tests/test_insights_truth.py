"""The insights against the simulator's truth (seeded worlds of ``insights_config``, uniform exploration
logs written as a service writes them): the right artwork named for the right segment on titles with a
designed segment preference, clickbait flagged and no honest artwork flagged; and the benchmark of what to
add runs (its full run is in docs/insights.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from keyart.insights.clickbait import clickbait
from keyart.insights.data import InsightLogs, load_logs
from keyart.insights.segments import member_segments
from keyart.insights.shares import segment_estimates
from keyart.simulation.design import design_preferences, insights_config, true_takes, write_world_logs
from keyart.simulation.world import World

pytestmark = pytest.mark.slow
DESIGNED = ("t0000", "t0001", "t0002", "t0003")
GENRES = ("comedy", "romance", "drama")
MIN_ROWS = 60  # decisions of a segment on one title
CLEAR = 0.03  # the truth's margin (take fraction) between a segment's best artwork and the next


@pytest.fixture(scope="module", params=[0, 1])
def world_logs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    world = World(insights_config(request.param))
    designed = design_preferences(world, DESIGNED, GENRES, "close-up")
    path = write_world_logs(world, tmp_path_factory.mktemp("truth") / "events.duckdb", 6000, request.param)
    logs = load_logs(path, world.catalog)
    return world, designed, logs, member_segments(logs.contexts, logs.title, world.catalog)


def _cases(
    world: World, designed: dict, logs: InsightLogs, segments: dict
) -> list[tuple[str, str, str, str]]:
    """(title, genre, the report's best artwork, the truth's) for every genre segment of a designed title
    with enough decisions and a clear truth."""
    out = []
    for t in DESIGNED:
        rows = logs.rows_of(t)
        for r in segment_estimates(logs, segments, t, MIN_ROWS):
            if r["family"] != "Favourite genre" or not r["best"] or r["segment"] not in GENRES:
                continue
            mine = rows[segments["Favourite genre"][rows] == r["segment"]]
            members = [world.member_index[m] for m in logs.member[mine]]
            pool = list(designed[t].values())
            take = np.sort(true_takes(world, t, members, pool).mean(0))
            if take[-1] - take[-2] >= CLEAR:
                truth = pool[int(np.argmax(true_takes(world, t, members, pool).mean(0)))]
                out.append((t, str(r["segment"]), str(r["artwork_id"]), truth))
    return out


def test_the_right_artwork_for_the_right_segment(world_logs) -> None:
    world, designed, logs, segments = world_logs
    cases = _cases(world, designed, logs, segments)
    assert len(cases) >= 3, cases
    # the design works: the truth's best for genre-g fans is the g-themed artwork
    assert all(truth == designed[t][g] for t, g, _, truth in cases), cases
    right = [report == truth for _, _, report, truth in cases]
    assert np.mean(right) >= 0.75, cases  # chance: 1 in 3


def test_clickbait_is_flagged_and_no_honest_artwork_is(world_logs) -> None:
    world, _, logs, _ = world_logs
    found = clickbait(logs)
    bait = {a for a, c in zip(world.artwork_ids, world.art_clickbait, strict=True) if c}
    flagged = {c.artwork_id for c in found if c.flagged}
    assert flagged and not flagged - bait, flagged - bait  # every flag is a true clickbait
    seen = [c for c in found if c.artwork_id in bait and c.plays >= 30]
    assert len(seen) >= 4 and np.mean([c.flagged for c in seen]) >= 0.5, seen


def test_the_benchmark_of_what_to_add_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_insights
    finally:
        sys.path.pop(0)
    rows = bench_insights.one_seed(3, titles=2, requests=1500)
    assert [len(r) for r in rows] == [3, 3]
    for _, suggested, drawn in rows:
        assert 0.0 <= suggested < 1.0 and 0.0 <= drawn < 1.0
