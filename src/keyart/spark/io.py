"""The Spark session and the Parquet layout of keyart's events.

The layout is the one ``EventStore.export_parquet`` writes (and ``keyart train`` reads):
``ROOT/decisions/date=YYYY-MM-DD/*.parquet`` and ``ROOT/outcomes/date=YYYY-MM-DD/*.parquet`` (UTC dates of
the events' timestamps), the columns of ``keyart.events.DECISION_SCHEMA`` and ``OUTCOME_SCHEMA``. A kind
with no rows may have no directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from keyart.errors import ValidationError
from keyart.events import DECISION_SCHEMA, OUTCOME_SCHEMA

try:
    from pyspark.errors import AnalysisException
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("keyart.spark needs pyspark: pip install 'keyart[spark]'.") from exc

KINDS = ("decisions", "outcomes")
_SCHEMAS = {"decisions": DECISION_SCHEMA, "outcomes": OUTCOME_SCHEMA}


def session(
    master: str | None = "local[*]", app_name: str = "keyart", conf: dict[str, str] | None = None
) -> SparkSession:
    """A Spark session (the active one when it exists). ``master`` None leaves it to ``spark-submit``;
    Arrow transfers on, the UI off unless ``conf`` says otherwise. In local mode the Python workers run
    this interpreter (where keyart is installed) unless ``PYSPARK_PYTHON`` names another."""
    builder = SparkSession.builder.appName(app_name)
    settings = {"spark.ui.enabled": "false", "spark.sql.execution.arrow.pyspark.enabled": "true"}
    if master is not None:
        builder = builder.master(master)
        if master.startswith("local"):  # pyspark reads it when the context starts
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in {**settings, **(conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def spark_schema(kind: str) -> Any:
    """The Spark schema of a kind's rows (from its Arrow schema)."""
    return from_arrow_schema(_SCHEMAS[kind])


def _is_uri(root: str | Path) -> bool:
    """A URI Spark reads (hdfs://, s3a://, file://...) rather than a local path keyart can look into."""
    return "://" in str(root)


def _join(root: str | Path, kind: str) -> str:
    return f"{str(root).rstrip('/')}/{kind}" if _is_uri(root) else str(Path(root) / kind)


def read_kind(spark: SparkSession, root: str | Path, kind: str) -> DataFrame:
    """One kind of a Parquet export (a local directory or a URI) as a DataFrame of exactly its schema's
    columns (the ``date`` partition column dropped); an empty DataFrame when a local export has no rows
    of that kind."""
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}. Got {kind!r}.")
    path = _join(root, kind)
    schema = _SCHEMAS[kind]
    if not _is_uri(root) and (not Path(path).is_dir() or not any(Path(path).rglob("*.parquet"))):
        return spark.createDataFrame([], spark_schema(kind))
    try:
        df = spark.read.parquet(path)
    except AnalysisException as exc:
        raise ValidationError(f"Cannot read the {kind} export at {path}: {exc}") from None
    missing = [f.name for f in schema if not f.nullable and f.name not in df.columns]
    if missing:
        raise ValidationError(f"The {kind} export at {path} lacks the required columns {missing}.")
    target = {f.name: f.dataType for f in spark_schema(kind).fields}
    return df.select(
        *[
            (F.col(name) if name in df.columns else F.lit(None)).cast(dtype).alias(name)
            for name, dtype in target.items()
        ]
    )


def read_events(spark: SparkSession, root: str | Path) -> tuple[DataFrame, DataFrame]:
    """(decisions, outcomes) of a Parquet export at ``root`` (``ValidationError`` when a local one holds
    neither)."""
    if not _is_uri(root) and not any((Path(root) / kind).is_dir() for kind in KINDS):
        raise ValidationError(
            f"No keyart Parquet export at {root}: expected decisions/ and outcomes/ partitioned by date= "
            "(EventStore.export_parquet writes them)."
        )
    return read_kind(spark, root, "decisions"), read_kind(spark, root, "outcomes")


def with_date(df: DataFrame) -> DataFrame:
    """``df`` with the ``date`` partition column (UTC date of ``timestamp``, YYYY-MM-DD) of the layout."""
    return df.withColumn(
        "date",
        F.date_format(
            F.date_add(F.lit("1970-01-01"), F.floor(F.col("timestamp") / 86400).cast("int")), "yyyy-MM-dd"
        ),
    )


def write_partitioned(df: DataFrame, path: str | Path) -> None:
    """Write ``df`` as Parquet partitioned by ``date`` under ``path`` (replacing what is there)."""
    with_date(df).write.mode("overwrite").partitionBy("date").parquet(str(path))


def arrow_table(batch: pa.RecordBatch, schema: pa.Schema | None = None) -> pa.Table:
    """An Arrow batch from Spark as a table, its columns cast to ``schema``'s types where named there
    (Spark hands over large strings and its own list field names)."""
    table = pa.Table.from_batches([batch])
    if schema is None:
        return table
    cols = [
        table.column(name).cast(schema.field(name).type) if name in schema.names else table.column(name)
        for name in table.column_names
    ]
    return pa.Table.from_arrays(cols, names=table.column_names)


__all__ = ["KINDS", "arrow_table", "read_events", "read_kind", "session", "spark_schema", "write_partitioned"]
