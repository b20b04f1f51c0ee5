"""Shared by the Spark tests: one local Spark session (``local[2]``, small shuffles, UI off) for the whole
run, and seeded events with the join's edge cases (ties, late, early, unmatched, several decisions per
member and title) written as a store and its Parquet export."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keyart.context import MemberContext
from keyart.events import DecisionRecord, OutcomeRecord, context_to_json, decisions_table, outcomes_table
from keyart.spark.io import session
from keyart.store import EventStore

T0 = 1_700_000_000.0
H = 3600.0

__all__ = ["T0", "H", "edge_events", "frame", "rows_of", "spark", "write_export"]


#: Model statistics agree to 1e-9 relative (and absolute near zero): the executors sum in another order than
#: one process. The learned priors agree to what their fit determines: it stops where a step gains less
#: than 0.01 nats of evidence, and sums that differ in the 13th digit move that point along the evidence's
#: flat directions (a hard-shrunk family's ridge by about 1e-5 of itself).
TOL, PRIOR_RTOL = 1e-9, 1e-4
#: snapshot state keys that hold the priors (``ridge_cols``, ...), or the data plus a prior term
PRIORS = ("ridge_cols", "bias_ridge", "noise", "eta0")


def assert_same_state(sa: dict, sb: dict) -> None:
    """Two snapshot states of a model trained on the same events (artworks in any order): the data parts
    (``P_ss`` less the ridges, ``P_d`` less the bias ridge, ``eta_a`` less the prior's term, the rest as
    they are) to ``TOL``, the learned priors to ``PRIOR_RTOL``."""
    assert sorted(sa["artwork_ids"]) == sorted(sb["artwork_ids"])
    rows = [list(sa["artwork_ids"]).index(a) for a in sb["artwork_ids"]]

    def data(state: dict, key: str, by_artwork: bool) -> np.ndarray:
        value = np.asarray(state[key], dtype=np.float64)
        if key == "P_ss" and "ridge_cols" in state:
            value = value - np.diag(state["ridge_cols"])
        elif key == "P_d" and "bias_ridge" in state:
            value = value - state["bias_ridge"]
        elif key == "eta_a" and "eta0" in state:
            value = value - np.asarray(state["eta0"])
        return value[rows] if by_artwork and state is sa else value

    for key, value in sb.items():
        if key == "artwork_ids":
            continue
        by_artwork = key in ("P_sa", "P_d", "eta_a", "eta0", "successes", "trials")
        if key in PRIORS:
            got = np.asarray(sa[key])[rows] if by_artwork else sa[key]
            np.testing.assert_allclose(got, value, rtol=PRIOR_RTOL, atol=TOL, err_msg=key)
        elif isinstance(value, np.ndarray | float | int) and not isinstance(value, bool):
            got, want = data(sa, key, by_artwork), data(sb, key, by_artwork)
            np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL, err_msg=key)
        else:
            assert sa[key] == value, key


@pytest.fixture(scope="session")
def spark() -> Iterator:
    """The run's Spark session: two local cores, four shuffle partitions, no UI, and a 2 GB heap: every
    Spark test module of the run shares it (one xdist worker), and the partial sums of the wide default
    layout (d = 1,712: 23 MB per partition) pass through it, which on the default 1 GB ran out of heap
    once, late in a full run (it never did with the module alone)."""
    s = session(
        "local[2]",
        "keyart-tests",
        {
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "4",
            "spark.driver.memory": "2g",
        },
    )
    yield s
    s.stop()


def edge_events(n_members: int = 40, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """(decisions, outcomes) over three days: per (member, title) several decisions, some at one time
    (ties), outcomes by decision id (some naming unknown or later decisions) or by member and title (some
    before any decision, some after the window), plays, completes, impressions and stops."""
    rng = np.random.default_rng(seed)
    decisions, outcomes = [], []
    types = ["play", "play", "impression", "complete", "stop", "progress"]
    for m in range(n_members):
        member = f"m{m:03d}"
        for title in ("t1", "t2", "t3"):
            times = np.sort(T0 + rng.integers(0, 3 * 24, size=int(rng.integers(1, 5))) * H)
            if rng.random() < 0.3:
                times = np.append(times, times[-1])  # a tie: two decisions at one time
            ids = []
            for j, t in enumerate(times):
                eid = f"d-{member}-{title}-{j}"
                ids.append((eid, float(t)))
                decisions.append(
                    DecisionRecord(
                        event_id=eid,
                        timestamp=float(t),
                        member_id=member,
                        title_id=title,
                        pool=("a", "b"),
                        probabilities=(0.5, 0.5),
                        chosen_index=j % 2,
                        artwork_id="ab"[j % 2],
                        propensity=0.5,
                        policy="uniform",
                        model_version=0,
                        explored=True,
                        context_json=context_to_json(MemberContext(member_id=member, timestamp=float(t))),
                    )
                )
            for k in range(int(rng.integers(0, 6))):
                base = ids[int(rng.integers(len(ids)))][1]
                t = base + float(rng.choice([0.0, 60.0, 1800.0, H, H + 1, 2 * H, -600.0]))
                kind = str(rng.choice(types))
                secs = None if rng.random() < 0.2 else float(rng.choice([30.0, 599.0, 600.0, 2400.0]))
                claim = None
                u = rng.random()
                if u < 0.3:
                    claim = ids[int(rng.integers(len(ids)))][0]
                elif u < 0.35:
                    claim = f"unknown-{member}-{k}"
                outcomes.append(OutcomeRecord(f"o-{member}-{title}-{k}", member, title, kind, t, claim, secs))
    outcomes.append(OutcomeRecord("o-last", "m000", "t1", "stop", T0 + 5 * 24 * H, None, 1.0))
    return decisions_table(decisions), outcomes_table(outcomes)


def write_export(tmp: Path, decisions: pa.Table, outcomes: pa.Table) -> tuple[Path, Path]:
    """An event store of the events and its Parquet export: (store path, export directory)."""
    path = tmp / "events.duckdb"
    with EventStore(path) as store:
        store.append_decisions(decisions)
        store.append_outcomes(outcomes)
        store.export_parquet(tmp / "export")
    return path, tmp / "export"


def rows_of(df) -> list[dict]:
    """A DataFrame's rows as dicts, in event id order (collected: for small test frames only)."""
    return sorted((r.asDict(recursive=True) for r in df.collect()), key=lambda r: r["event_id"])


def frame(spark, table: pa.Table, tmp: Path):
    """An Arrow table as a Spark DataFrame (through a Parquet file in ``tmp``: no pandas in between)."""
    path = tmp / f"frame-{len(list(tmp.glob('frame-*')))}.parquet"
    pq.write_table(table, path)
    return spark.read.parquet(str(path))
