"""``keyart spark join|train|evaluate``: the reward join, training and evaluation on Apache Spark over a
Parquet export.

The same commands run locally (``--master local[*]``, the default) and on a cluster through
``spark-submit``, which runs ``keyart/spark/submit.py`` (``python -m keyart.spark.submit`` takes the same
arguments): there the master is spark-submit's own and ``--master`` is ignored. docs/spark.md shows both.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

import typer

from keyart.errors import ValidationError
from keyart.evaluate_cli import REWARD_MODELS, MinSeconds, WindowSeconds, evaluate_command
from keyart.policies import DEFAULT_POLICY
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS
from keyart.train_cli import Floor, PolicyName, PolicyParams, Seed, SnapshotOut

#: keyart evaluate's --lambda option, the same here.
Lambda = get_type_hints(evaluate_command, include_extras=True)["lambda_"]

spark_app = typer.Typer(
    no_args_is_help=True,
    help="The reward join, training and evaluation on Apache Spark over a Parquet export (docs/spark.md).",
)

Master = Annotated[
    str,
    typer.Option(
        "--master",
        help="Spark master URL, e.g. local[*], local[2], spark://host:7077 (under spark-submit its own "
        "--master wins).",
    ),
]
Export = Annotated[
    str,
    typer.Argument(
        help="A Parquet export (a directory or a URI such as hdfs://...): decisions/ and outcomes/ "
        "partitioned by date= (docs/spark.md).",
        show_default=False,
    ),
]
Start = Annotated[str | None, typer.Option("--start", help="Decisions from this time (epoch s or ISO date).")]
End = Annotated[str | None, typer.Option("--end", help="Decisions before this time (epoch s or ISO date).")]


def _session(master: str) -> Any:
    """The Spark session: spark-submit's when it started this process, else one on ``master``."""
    try:
        from keyart.spark.io import session
    except ImportError as exc:
        raise ValidationError(f"{exc} (keyart spark runs on Apache Spark)") from None
    return session(None if "PYSPARK_GATEWAY_PORT" in os.environ else master, "keyart")


def _joined(
    spark: Any,
    export: str,
    catalog: Any,
    start: str | None,
    end: str | None,
    window_seconds: float,
    min_seconds: float,
) -> Any:
    """``join_range`` of the export's decisions in [start, end) with the command's window and rule."""
    from keyart.rewards import QualityRule
    from keyart.spark.io import read_events
    from keyart.spark.join import join_range
    from keyart.train_cli import _time

    decisions, outcomes = read_events(spark, export)
    return join_range(
        decisions,
        outcomes,
        _time(start, "--start"),
        _time(end, "--end"),
        window_seconds=window_seconds,
        rule=QualityRule(min_seconds=min_seconds),
        runtimes=catalog,
    )


@spark_app.command("join")
def join_command(
    export: Export,
    out: Annotated[
        str,
        typer.Option("--out", help="Directory or URI for the joined rows (Parquet, partitioned by date=)."),
    ],
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="A catalog for the titles' runtimes (complete events count in full)."),
    ] = None,
    start: Start = None,
    end: End = None,
    window_seconds: WindowSeconds = ATTRIBUTION_WINDOW_SECONDS,
    min_seconds: MinSeconds = QUALITY_SECONDS,
    master: Master = "local[*]",
) -> None:
    """Join outcomes to decisions on Spark (the rows keyart.rewards gives) and write them with their
    reward; print the join's counts."""
    from keyart.catalog import Catalog
    from keyart.spark.io import write_partitioned

    cat = Catalog.load(catalog) if catalog is not None else None
    joined = _joined(_session(master), export, cat, start, end, window_seconds, min_seconds)
    write_partitioned(joined.table, out)
    typer.echo(str(joined.report))
    typer.echo(f"Wrote {out}: the joined rows, partitioned by date.")


@spark_app.command("train")
def train_command(
    export: Export,
    out: SnapshotOut,
    catalog: Annotated[
        Path,
        typer.Option("--catalog", help="The catalog the logs' artworks are in (any form of docs/data.md)."),
    ],
    policy: PolicyName = DEFAULT_POLICY,
    param: PolicyParams = None,
    seed: Seed = 0,
    floor: Floor = 0.1,
    start: Start = None,
    end: End = None,
    window_seconds: WindowSeconds = ATTRIBUTION_WINDOW_SECONDS,
    min_seconds: MinSeconds = QUALITY_SECONDS,
    master: Master = "local[*]",
    publish: Annotated[
        Path | None,
        typer.Option(
            "--publish",
            help="Also publish the snapshot as the next model generation in this shared directory, which "
            "keyart serve --follow DIR serves (the atomic LATEST protocol).",
        ),
    ] = None,
) -> None:
    """Train a policy on Spark from per-partition sums into the snapshot keyart train writes (keyart serve
    --policy FILE loads it)."""
    from keyart.catalog import Catalog
    from keyart.policies import make_policy
    from keyart.service.config import ServiceConfig
    from keyart.spark.train import check_trainable, train
    from keyart.train import parse_params
    from keyart.train_cli import _time, _write

    if out.suffix != ".npz":
        raise ValidationError(f"--out must be a .npz file. Got {out}.")
    cat = Catalog.load(catalog)
    config = ServiceConfig(
        state_dir=".", policy=policy, policy_params=parse_params(param or []), seed=seed, floor=floor
    )
    fresh = make_policy(policy, **config.policy_kwargs())
    check_trainable(fresh)
    t0 = time.perf_counter()
    trained, info = train(
        _session(master),
        export,
        cat,
        fresh,
        window_seconds=window_seconds,
        quality_seconds=min_seconds,
        start=_time(start, "--start"),
        end=_time(end, "--end"),
    )
    rate = info.rows / max(time.perf_counter() - t0, 1e-9)
    _write(trained, info, out)
    typer.echo(f"Wrote {out}: {trained.name} trained on {info.rows} decisions on Spark ({rate:,.0f} rows/s).")
    if publish is not None:
        from dataclasses import asdict

        from keyart.service.follow import publish_next

        meta = {"learned_until": info.learned_until, "trained": {**asdict(info), "by": "keyart spark train"}}
        number = publish_next(publish, trained, meta)
        typer.echo(f"Published generation {number} in {publish}.")


@spark_app.command("evaluate")
def evaluate_command(
    export: Export,
    candidate: Annotated[
        Path, typer.Option("--candidate", help="The policy snapshot to evaluate (keyart train --out FILE).")
    ],
    catalog: Annotated[
        Path,
        typer.Option("--catalog", help="The catalog the logs' artworks are in (any form of docs/data.md)."),
    ],
    estimator: Annotated[
        list[str] | None,
        typer.Option(
            "--estimator",
            help="An estimator to run (repeat for several; default ips and snips): replay, ips, snips, dm, "
            "dr, sndr, switch_dr, dr_os.",
        ),
    ] = None,
    reward_model: Annotated[
        Literal[REWARD_MODELS],  # type: ignore[valid-type]
        typer.Option(
            "--reward-model",
            help="Reward model of DM/DR: tabular (per artwork), linear (ridge on the shown artwork's "
            "features and identity), or auto (linear); logistic is for tabular and obd logs only.",
        ),
    ] = "auto",
    folds: Annotated[
        int,
        typer.Option(
            "--folds",
            min=2,
            help="Cross-fitting folds of the reward model (a member's fold: a hash of its id).",
        ),
    ] = 2,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the folds.")] = 0,
    lambda_: Lambda = None,
    alpha: Annotated[
        float, typer.Option("--alpha", min=0.0001, max=0.9999, help="1 - the intervals' coverage.")
    ] = 0.05,
    ips_clip: Annotated[
        float | None, typer.Option("--ips-clip", min=0, help="Clip IPS weights at this value (default none).")
    ] = None,
    start: Start = None,
    end: End = None,
    window_seconds: WindowSeconds = ATTRIBUTION_WINDOW_SECONDS,
    min_seconds: MinSeconds = QUALITY_SECONDS,
    master: Master = "local[*]",
) -> None:
    """Estimate a candidate policy's take fraction on Spark from partition sums (replay, IPS, SNIPS, DM,
    DR, SNDR, Switch-DR, DR-os) with member-clustered normal intervals (Wilson for replay on 0/1 rewards),
    as keyart evaluate --ci normal does on one machine."""
    from keyart.catalog import Catalog
    from keyart.evaluation.config import MODEL_BASED
    from keyart.policies import load_policy
    from keyart.spark.evaluate import DEFAULT_ESTIMATORS, estimate

    cat, policy = Catalog.load(catalog), load_policy(candidate)
    joined = _joined(_session(master), export, cat, start, end, window_seconds, min_seconds)
    lam = "slope" if lambda_ is None else float(lambda_)
    results = estimate(
        joined.table,
        cat,
        policy,
        estimator or DEFAULT_ESTIMATORS,
        alpha=alpha,
        ips_clip=ips_clip,
        switch_lambda=lam,
        dr_os_lambda=lam,
        reward_model=reward_model,
        n_folds=folds,
        seed=seed,
    )
    typer.echo(f"{policy.name} ({candidate}) on {results[0].n} decisions of {results[0].n_clusters} members:")
    typer.echo(
        f"{'estimator':10s} {'value':>9s} {'lower':>9s} {'upper':>9s} {'se':>9s} {'ess':>10s} {'max w':>8s}"
        "  lambda  flags"
    )
    for r in results:
        lam_text = "-" if r.lambda_ is None else f"{r.lambda_:g} ({r.lambda_by})"
        typer.echo(
            f"{r.estimator:10s} {r.value:9.4f} {r.lower:9.4f} {r.upper:9.4f} {r.se:9.4f} {r.ess:10.1f} "
            f"{r.max_weight:8.2f}  {lam_text}  {','.join(r.flags) or '-'}"
        )
    if any(r.estimator in MODEL_BASED for r in results):
        name = "linear (auto)" if reward_model == "auto" else reward_model
        typer.echo(
            f"Reward model of DM and the DR family: {name}, cross-fitted over {folds} folds of members "
            f"(seed {seed})."
        )
