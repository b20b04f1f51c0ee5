"""Event schemas, context JSON round trip, and whole-batch validation of decisions and outcomes."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import pyarrow as pa
import pytest

from keyart.context import MemberContext, Play
from keyart.errors import ValidationError
from keyart.events import (
    DECISION_SCHEMA,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    OUTCOME_SCHEMA,
    PAGE_RECORD,
    SCHEMA_VERSION,
    DecisionColumns,
    DecisionRecord,
    OutcomeRecord,
    context_from_json,
    context_to_json,
    decisions_from_batch,
    decisions_table,
    encode_probabilities,
    outcomes_table,
    page_probabilities,
    page_record,
    page_rows,
    schema_version,
    shadow_record,
)


def decision(i: int = 0, **over) -> DecisionRecord:
    base = DecisionRecord(
        event_id=f"d{i}",
        timestamp=1.7e9 + i,
        member_id="m1",
        title_id="t1",
        pool=("a", "b", "c"),
        probabilities=(0.2, 0.5, 0.3),
        chosen_index=1,
        artwork_id="b",
        propensity=0.5,
        policy="uniform",
        model_version=0,
        explored=False,
    )
    return replace(base, **over)


def outcome(i: int = 0, **over) -> OutcomeRecord:
    base = OutcomeRecord(
        event_id=f"o{i}",
        member_id="m1",
        title_id="t1",
        event_type="play",
        timestamp=1.7e9 + 10 + i,
        decision_id="d0",
        engaged_seconds=700.0,
    )
    return replace(base, **over)


def test_schemas_are_versioned_and_documented() -> None:
    assert schema_version(DECISION_SCHEMA) == ("decision", SCHEMA_VERSION)
    assert schema_version(OUTCOME_SCHEMA) == ("outcome", SCHEMA_VERSION)
    for name in (
        "event_id",
        "timestamp",
        "member_id",
        "title_id",
        "page",
        "position",
        "context_json",
        "features",
        "pool",
        "probabilities",
        "artwork_id",
        "propensity",
        "policy",
        "model_version",
        "explored",
    ):
        assert name in DECISION_SCHEMA.names
    for name in (
        "event_id",
        "decision_id",
        "member_id",
        "title_id",
        "event_type",
        "engaged_seconds",
        "timestamp",
    ):
        assert name in OUTCOME_SCHEMA.names


def test_context_json_round_trip() -> None:
    ctx = MemberContext(
        member_id="m1",
        played=(Play("t9", 1.0, 30.0), Play("t8")),
        country="FR",
        language="fr",
        device="tv",
        timestamp=1.7e9,
        interacted_titles=frozenset({"t1", "t2"}),
        recommender_scores={"t1": 0.7},
        extra={"tenure": 3.0},
    )
    text = context_to_json(ctx)
    assert context_from_json(text) == ctx
    assert context_to_json(context_from_json(text)) == text


@pytest.mark.parametrize("text", ["{not json", "[]", '{"country": "FR"}'])
def test_bad_context_json(text: str) -> None:
    with pytest.raises(ValidationError, match="context_json"):
        context_from_json(text)


def test_decision_record_from_policy_decision() -> None:
    from keyart.feedback import Decision

    d = Decision(
        "id1", "r1", "m1", "t1", 1.7e9, ("a", "b"), (0.25, 0.75), (0.1, 0.2), 1, "b", 0.75, True, "linucb", 3
    )
    ctx = MemberContext(member_id="m1", timestamp=1.7e9)
    rec = DecisionRecord.from_decision(d, ctx, page="home", position=2)
    t = decisions_table([rec])
    row = t.to_pylist()[0]
    assert row["event_id"] == "id1" and row["pool"] == ["a", "b"] and row["probabilities"] == [0.25, 0.75]
    assert row["propensity"] == 0.75 and row["policy"] == "linucb" and row["model_version"] == 3
    assert row["explored"] is True and row["page"] == "home" and row["position"] == 2
    assert context_from_json(row["context_json"]) == ctx


def test_tables_accept_records_dicts_and_arrow() -> None:
    recs = [decision(i) for i in range(3)]
    t1 = decisions_table(recs)
    t2 = decisions_table(t1.drop_columns(["page", "features"]))
    assert t1.schema.equals(DECISION_SCHEMA) and t2.equals(t1)
    t3 = outcomes_table(
        [{"event_id": "o1", "member_id": "m", "title_id": "t", "event_type": "stop", "timestamp": 1.7e9}]
    )
    assert t3.column("decision_id").null_count == 1


def test_repeated_ids_in_one_batch_are_kept_once() -> None:
    t = decisions_table([decision(0), decision(1), decision(0)])
    assert t.column("event_id").to_pylist() == ["d0", "d1"]


BAD_DECISIONS = [
    ([decision(propensity=0.0, probabilities=(0.5, 0.0, 0.5))], "propensity' must be in \\(0, 1\\]"),
    ([decision(propensity=1.5)], "propensity' must be in \\(0, 1\\]"),
    ([decision(propensity=0.2)], "differs from probabilities\\[chosen_index\\]"),
    ([decision(probabilities=(0.2, 0.5, 0.2))], "must sum to 1"),
    ([decision(probabilities=(0.5, 0.5))], "differ in length"),
    ([decision(pool=(), probabilities=())], "'pool' is empty"),
    ([decision(chosen_index=3)], "chosen_index' points outside the pool"),
    ([decision(artwork_id="zzz")], "'artwork_id' is not pool\\[chosen_index\\]"),
    ([decision(member_id="")], "'member_id'.*empty strings"),
    ([decision(timestamp=math.nan)], "'timestamp'.*finite"),
    ([decision(model_version=-1)], "model_version"),
    ([decision(0), decision(1, probabilities=(1.5, -0.5, 0.0))], r"probabilities in \[0, 1\]"),
    ([{**decision().__dict__, "colour": "red"}], "unknown fields: colour"),
    # timestamps: epoch seconds in [1990, 2200), naming the field, the row and the likely unit
    ([decision(0), decision(1, timestamp=1.767e12)], r"'timestamp'.*1990-01-01.*rows 1; .*milliseconds"),
    ([decision(timestamp=1.767e15)], r"'timestamp'.*rows 0; .*microseconds"),
    ([decision(timestamp=5.0)], r"'timestamp'.*epoch seconds.*rows 0; got 5"),
    ([decision(timestamp=MAX_TIMESTAMP)], r"'timestamp'.*2200-01-01"),
    # artwork ids inside the pool: present, non-empty, each once
    ([decision(0), decision(1, pool=("a", "b", "b"))], r"'pool' repeats artwork id 'b' at rows 1"),
    ([decision(pool=("a", "b", None))], r"'pool' has a null artwork id at rows 0"),
    ([decision(pool=("", "b", "c"))], r"'pool' has an empty artwork id at rows 0"),
]


@pytest.mark.parametrize(("records", "match"), BAD_DECISIONS)
def test_bad_decisions(records, match) -> None:
    with pytest.raises(ValidationError, match=match):
        decisions_table(records)


def test_missing_required_column_in_arrow_table() -> None:
    t = decisions_table([decision()]).drop_columns(["propensity"])
    with pytest.raises(ValidationError, match="missing the required column 'propensity'"):
        decisions_table(t)


def test_null_in_required_column() -> None:
    t = decisions_table([decision()])
    t = t.set_column(
        t.schema.get_field_index("policy"), pa.field("policy", pa.string()), pa.array([None], pa.string())
    )
    with pytest.raises(ValidationError, match=r"'policy'.*missing values"):
        decisions_table(t)


def test_timestamps_at_the_edges_of_the_plausible_range_are_accepted() -> None:
    t = decisions_table([decision(0, timestamp=MIN_TIMESTAMP), decision(1, timestamp=MAX_TIMESTAMP - 1)])
    assert t.column("timestamp").to_pylist() == [MIN_TIMESTAMP, MAX_TIMESTAMP - 1]


def _with_column(name: str, values: pa.Array) -> pa.Table:
    t = decisions_table([decision()])
    return t.set_column(t.schema.get_field_index(name), name, values)


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (_with_column("timestamp", pa.array(["1700000000"])), "'timestamp'.*type string, expected double"),
        (_with_column("timestamp", pa.array([True])), "'timestamp'.*type bool, expected double"),
        (_with_column("timestamp", pa.array([1_767_225_600_000], pa.int64())), "'timestamp'.*milliseconds"),
        (
            _with_column("probabilities", pa.array([["0.2", "0.5", "0.3"]])),
            "'probabilities'.*type list<item: string>",
        ),
    ],
)
def test_arrow_columns_are_not_parsed_from_text(table: pa.Table, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        decisions_table(table)


def test_integer_epoch_seconds_are_accepted() -> None:
    t = decisions_table(_with_column("timestamp", pa.array([1_700_000_000], pa.int64())))
    assert t.column("timestamp").to_pylist() == [1.7e9]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (decision(), r"data must be .* list of decision records; got a DecisionRecord \(wrap a single"),
        ({"event_id": "x"}, r"data must be .*; got a dict \(wrap a single record in a list\)"),
        (None, "data must be .*; got a NoneType"),
        ("d1", "data must be .*; got a str"),
        (42, "data must be .*; got a int"),
        ([decision(), None], "Record 1 of data is a NoneType"),
        (
            [decision(), {**decision(1).__dict__, "model_version": 2**63}],
            "'model_version' of decision record 1",
        ),
        ([decision(), {**decision(1).__dict__, "timestamp": "1.7e9"}], "'timestamp' of decision record 1"),
    ],
)
def test_wrong_containers_and_values_name_the_argument(data, match) -> None:
    with pytest.raises(ValidationError, match=match):
        decisions_table(data)


BAD_OUTCOMES = [
    ([outcome(event_type="click")], "unknown type 'click'"),
    ([outcome(timestamp=1.767e15)], r"'timestamp' of the outcome table.*microseconds"),
    ([outcome(timestamp=-1.0)], r"'timestamp' of the outcome table.*1990-01-01"),
    ([outcome(engaged_seconds=-1.0)], "engaged_seconds' must be finite and >= 0"),
    ([outcome(timestamp=math.inf)], "'timestamp'.*finite"),
    ([outcome(decision_id="")], "'decision_id'.*empty"),
    ([outcome(event_id="")], "'event_id'.*empty"),
]


@pytest.mark.parametrize(("records", "match"), BAD_OUTCOMES)
def test_bad_outcomes(records, match) -> None:
    with pytest.raises(ValidationError, match=match):
        outcomes_table(records)


# ---- one decision format: policy batches and the service's page records build the same rows ----------


def _page_of_decisions():
    from keyart.catalog import Artwork, Catalog, Title
    from keyart.features import Featurizer
    from keyart.policies import make_policy

    cat = Catalog(
        [Title(f"t{i}", genres=("drama",)) for i in range(3)],
        [Artwork(f"t{i}-a{j}", f"t{i}", style=f"s{j}") for i in range(3) for j in range(2 + i)],
    )
    ctx = MemberContext(member_id="m1", country="FR", timestamp=1.7e9)
    batch = Featurizer(cat).page(ctx, ["t2", "t0", "t1"], request_id="r1")  # uneven pools: 4, 2, 3
    return ctx, make_policy("softmax", seed=3).choose(batch)


def _record_of(ctx: MemberContext, db, **over) -> dict:
    """The page as the service logs it (``keyart.service.engine`` builds it the same way)."""
    b = db.batch
    pools = [tuple(b.artwork_ids[i, : int(b.mask[i].sum())].tolist()) for i in range(b.n)]
    fields = {
        "request_id": "r1",
        "timestamp": ctx.timestamp,
        "member_id": ctx.member_id,
        "page": "home",
        "context_json": context_to_json(ctx),
        "policy": db.policy,
        "model_version": int(db.model_version),
        "fallback": False,
        "title_ids": b.title_ids.tolist(),
        "decision_ids": list(db.decision_ids),
        "pools": pools,
        "probabilities": db.probabilities,
        "index": np.asarray(db.index, dtype=np.int64),
        "explored": np.asarray(db.explored, dtype=bool),
    }
    return page_record(**{**fields, **over})


def test_a_page_record_expands_to_the_rows_decisions_from_batch_builds() -> None:
    import orjson

    ctx, db = _page_of_decisions()
    direct = decisions_from_batch(db, ctx, page="home", positions=[0, 1, 2])
    line = orjson.loads(orjson.dumps(_record_of(ctx, db), option=orjson.OPT_SERIALIZE_NUMPY))
    logged = decisions_table(page_rows(line).table())
    assert logged.equals(direct)  # bit for bit: pools, probabilities, propensities, shown artworks
    assert logged.column("propensity").to_pylist() == list(map(float, db.propensity))
    assert logged.column("artwork_id").to_pylist() == list(map(str, db.artwork_ids))


def test_page_record_lines_keep_their_format() -> None:
    """The segment line is the one the service wrote before the format moved to keyart.events: old
    learners read new lines, and the reader still reads the oldest lines (``probabilities`` lists)."""
    import orjson

    ctx, db = _page_of_decisions()
    shadow = shadow_record(
        policy="uniform",
        model_version=0,
        decision_ids=["s-0", "s-1", "s-2"],
        probabilities=db.probabilities,
        index=[0, 0, 0],
        explored=[True, False, True],
    )
    record = _record_of(ctx, db, shadow=shadow)
    assert list(record) == [
        "k", "request_id", "timestamp", "member_id", "page", "context_json", "policy", "model_version",
        "fallback", "title_ids", "decision_ids", "pools", "probabilities_b64", "index", "explored", "shadow",
    ]  # fmt: skip
    assert record["k"] == PAGE_RECORD
    assert list(shadow) == [
        "policy",
        "model_version",
        "decision_ids",
        "probabilities_b64",
        "index",
        "explored",
    ]
    line = orjson.loads(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))
    sizes = [len(p) for p in line["pools"]]
    old = {k: v for k, v in line.items() if k != "probabilities_b64"}
    old["probabilities"] = page_probabilities(line, sizes)
    assert page_rows(old).table().equals(page_rows(line).table())
    both = DecisionColumns.concat([page_rows(old), page_rows(line)]).table()  # lists and arrays
    assert both.equals(pa.concat_tables([page_rows(line).table()] * 2).combine_chunks())
    rows = decisions_table(page_rows(line, shadow=True).table())
    assert rows.column("event_id").to_pylist() == ["s-0", "s-1", "s-2"]
    assert rows.column("artwork_id").to_pylist() == [p[0] for p in line["pools"]]
    assert rows.column("fallback").to_pylist() == [False] * 3


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"index": [0, 1]}, "columns of other lengths"),
        ({"probabilities_b64": encode_probabilities(np.full((3, 2), 0.5))}, "columns for a pool of 4"),
        ({"probabilities": [[1.0], [1.0], [1.0]]}, "a probability row of 1 entries"),
    ],
)
def test_a_malformed_page_record_is_refused(change: dict, error: str) -> None:
    ctx, db = _page_of_decisions()
    line = {**_record_of(ctx, db), **change}
    if "probabilities" in change:
        del line["probabilities_b64"]
    with pytest.raises(ValueError, match=error):
        page_rows(line)


def test_a_chosen_index_outside_its_pool_is_refused() -> None:
    ctx, db = _page_of_decisions()
    rows = page_rows(_record_of(ctx, db, index=[0, 2, 0]))  # the second pool has 2 artworks
    with pytest.raises(ValidationError, match="'chosen_index' points outside the pool at rows 1"):
        rows.table()


def test_decision_records_are_rows_of_the_decision_schema() -> None:
    names = [f.name for f in fields(DecisionRecord)]
    assert sorted(names) == sorted(DECISION_SCHEMA.names)
    cols = [f.name for f in fields(DecisionColumns)]
    assert set(cols) - {"pool_sizes", "pool_ids"} == set(DECISION_SCHEMA.names) - {
        "features",
        "pool",
        "artwork_id",
        "propensity",
    }
