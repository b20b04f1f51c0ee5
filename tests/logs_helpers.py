"""Seeded keyart logs shared by the train and gate tests: a small catalog, 400 members x 3 titles, and
outcomes where 'face' artworks lead to quality plays most often."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from keyart.context import MemberContext
from keyart.events import OutcomeRecord, decisions_from_batch
from keyart.features import Featurizer
from keyart.policies import make_policy
from keyart.store import EventStore
from test_evaluation_keyart import T0, _catalog

__all__ = ["T0", "write_logs"]

PLAY = {"dark": 0.1, "bright": 0.2, "face": 0.7}


def write_logs(tmp: Path, face_probability: float | None = None) -> Path:
    """Write catalog.json, events.duckdb and a Parquet export into ``tmp``: 400 members, one every 10 s,
    3 titles each, artwork drawn uniformly (or, with ``face_probability``, the 'face' artwork with that
    probability and the other two evenly: a skewed logger); a last outcome a day later closes every
    attribution window."""
    cat = _catalog()
    cat.save(tmp / "catalog.json")
    feat, logger, rng = Featurizer(cat), make_policy("uniform", seed=11), np.random.default_rng(0)
    tables, outcomes = [], []
    for m in range(400):
        ctx = MemberContext(member_id=f"m{m}", country=str(rng.choice(["FR", "US"])), timestamp=T0 + 10 * m)
        titles = rng.choice([f"t{i}" for i in range(6)], size=3, replace=False).tolist()
        page = feat.page(ctx, titles, request_id=f"r{m}")
        table = decisions_from_batch(logger.choose(page), ctx, page="home", positions=[0, 1, 2])
        if face_probability is not None:
            table = _skewed(table, face_probability, rng)
        tables.append(table)
        for row in table.to_pylist():
            if rng.random() < PLAY[cat.artwork(row["artwork_id"]).style]:
                t, oid = row["timestamp"] + 60, f"o-{row['event_id']}"
                outcomes.append(
                    OutcomeRecord(oid, row["member_id"], row["title_id"], "play", t, None, 1800.0)
                )
    outcomes.append(OutcomeRecord("late", "m0", "t0", "stop", T0 + 86_400.0, None, 10.0))
    with EventStore(tmp / "events.duckdb") as store:
        store.append_decisions(pa.concat_tables(tables))
        store.append_outcomes(outcomes)
        store.export_parquet(tmp / "export")
    return tmp


def _skewed(table: pa.Table, face: float, rng: np.random.Generator) -> pa.Table:
    """The decisions redrawn from a logger that shows the 'face' artwork (pool index 2) with ``face``."""
    rows = table.to_pylist()
    probs = [(1 - face) / 2, (1 - face) / 2, face]
    for r in rows:
        i = int(rng.choice(3, p=probs))
        r.update(probabilities=probs, chosen_index=i, artwork_id=r["pool"][i], propensity=probs[i])
    return pa.Table.from_pylist(rows, schema=table.schema)
