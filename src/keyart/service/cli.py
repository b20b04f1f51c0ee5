"""``keyart serve``: the decision service with its background learner, on uvicorn.

The process started by ``keyart serve`` prepares the state directory (catalog import, generation 0),
starts the learner process (and restarts it if it dies: ``LearnerSupervisor``), and runs uvicorn with
``--workers`` worker processes that all import ``keyart.service.app:app_from_env`` with the same
configuration.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from keyart.errors import KeyartError, ValidationError
from keyart.policies import DEFAULT_POLICY
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS
from keyart.service.config import CONFIG_ENV, MULTIPROC_ENV, Limits, ServiceConfig, exploration_key


def serve(
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    policy: str = DEFAULT_POLICY,
    floor: float = 0.1,
    shadow_policy: str | None = None,
    seed: int | None = None,
    catalog: Path | None = None,
    api_key: str | None = None,
    sticky_seconds: float = 86_400.0,
    learn_interval: float = 2.0,
    reload_interval: float = 0.25,
    model_budget: float = 0.05,
    attribution_window: float = ATTRIBUTION_WINDOW_SECONDS,
    quality_seconds: float = QUALITY_SECONDS,
    max_titles: int = 100,
    max_artworks: int = 64,
    max_body_bytes: int = 1 << 20,
    fsync: bool = False,
    learner: bool = True,
    log_level: str = "warning",
    segment_max_mb: float = 64.0,
    max_clock_skew: int = 86_400,
    follow: Path | None = None,
    events_dir: Path | None = None,
    events_window: float = 60.0,
) -> int:
    """Serve decisions over HTTP until interrupted; see ``docs/service.md``. Returns the exit status:
    0 when stopped by a signal, non-zero when the server stopped on a failure.

    prometheus_client chooses its multiprocess mode when it is first imported, so the metrics
    directory is named in the environment before anything imports it: with one worker, uvicorn serves
    from this very process, whose counters must go to the shared directory like every other's.
    """
    from keyart.catalog import Catalog

    if (follow is None) != (events_dir is None):
        print("keyart serve: --follow DIR and --events-dir DIR go together (follow mode)", file=sys.stderr)
        return 2
    if follow is not None and (_trained(policy) is not None or shadow_policy is not None):
        print(
            "keyart serve: with --follow the model comes from the shared directory: no snapshot --policy "
            "and no --shadow-policy",
            file=sys.stderr,
        )
        return 2
    # the inputs are read first: a file keyart refuses leaves nothing behind (no state, no key printed)
    imported = None if catalog is None else Catalog.load(catalog)
    trained, trained_shadow = _trained(policy), None if shadow_policy is None else _trained(shadow_policy)
    key = api_key or os.environ.get("KEYART_API_KEY")
    if not key:
        key = secrets.token_urlsafe(24)
        print(f"keyart serve: generated API key for state-changing endpoints: {key}", file=sys.stderr)
    root = Path(state_dir).resolve()
    if seed is None:
        try:
            seed = exploration_key(root)
        except ValidationError as exc:
            print(f"keyart serve: {exc}", file=sys.stderr)
            return 2
    config = ServiceConfig(
        state_dir=str(root),
        policy=policy if trained is None else trained[0].name,
        policy_params={} if trained is None else trained[0].get_params(),
        shadow_policy=shadow_policy if trained_shadow is None else trained_shadow[0].name,
        shadow_params={} if trained_shadow is None else trained_shadow[0].get_params(),
        seed=seed,
        floor=floor,
        sticky_seconds=sticky_seconds,
        api_key=key,
        limits=Limits(
            max_titles_per_page=max_titles,
            max_artworks_per_pool=max_artworks,
            max_body_bytes=max_body_bytes,
            max_clock_skew_seconds=max_clock_skew,
        ),
        learn_interval_seconds=learn_interval,
        reload_interval_seconds=reload_interval,
        model_budget_seconds=model_budget,
        attribution_window_seconds=attribution_window,
        quality_min_seconds=quality_seconds,
        fsync=fsync,
        segment_max_bytes=max(1, int(segment_max_mb * 2**20)),
        follow_dir=None if follow is None else str(Path(follow).resolve()),
        events_out=None if events_dir is None else str(Path(events_dir).resolve()),
        events_window_seconds=events_window,
    )
    config.root.mkdir(parents=True, exist_ok=True)
    os.environ[CONFIG_ENV] = config.to_json()
    os.environ[MULTIPROC_ENV] = str(config.metrics_dir)  # before prometheus_client is imported
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one BLAS thread per worker: matrices are small

    from keyart.service import catalog_store
    from keyart.service.learner import ensure_initial_generation, publish_trained
    from keyart.service.metrics import prepare_multiprocess_dir
    from keyart.service.server import Announcer, lean_spawn, run_server
    from keyart.service.supervisor import LearnerSupervisor

    if imported is not None and not config.catalog_path.exists():
        catalog_store.import_catalog(config.catalog_path, imported)
    if config.events_out is not None:  # follow mode: the shared model is published by a training job
        Path(config.events_out).mkdir(parents=True, exist_ok=True)
    elif trained is not None or trained_shadow is not None:
        publish_trained(
            config,
            None if trained is None else trained[0],
            None if trained_shadow is None else trained_shadow[0],
            None if trained is None else trained[1],
        )
    if config.follow_dir is None:
        ensure_initial_generation(config)
    prepare_multiprocess_dir(config.metrics_dir)
    try:
        catalog_now, rev = catalog_store.load_catalog(config.catalog_path)
    except (KeyartError, OSError, ValueError) as exc:  # no worker could serve it: say so, exit non-zero
        print(f"keyart serve: cannot read the catalog {config.catalog_path}: {exc}", file=sys.stderr)
        return 2
    n_titles = len(catalog_now.active_title_ids())
    if not n_titles:
        print(
            f"keyart serve: the catalog ({config.catalog_path}) has no active title: every page will be "
            "refused until titles and artworks are added (PUT /v1/titles/..., /v1/artworks/...) or the "
            "server is started with --catalog",
            file=sys.stderr,
        )
    shown = policy if follow is None else f"the generations of {config.follow_dir}"
    announce = Announcer(host, workers, shown, str(config.root), f"catalog rev {rev} with {n_titles} titles")
    with lean_spawn():  # worker and learner processes import what they serve, not every keyart command
        if config.follow_dir is not None:  # no learner: the node's Parquet sink in its place
            from keyart.service.parquet_sink import run_sink

            supervisor: LearnerSupervisor | None = LearnerSupervisor(config.to_json(), target=run_sink)
            supervisor.start()
        else:
            supervisor = LearnerSupervisor(config.to_json()).start() if learner else None
        try:
            status = run_server(
                "keyart.service.app:app_from_env", host, port, workers, log_level, announce=announce
            )
        finally:
            if supervisor is not None:
                supervisor.stop()
    if status:
        print(f"keyart serve: the server stopped on a failure (exit status {status})", file=sys.stderr)
    return status


def _trained(policy: str) -> tuple[Any, float | None] | None:
    """A snapshot file named by ``--policy`` (a .npz path, or an existing file), and when it was trained
    by ``keyart train``, the time its learning reaches (``learned_until``); None for a policy name."""
    if not (policy.endswith(".npz") or Path(policy).is_file()):
        return None
    from keyart.policies import load_policy
    from keyart.train import TrainingInfo

    info = TrainingInfo.load(Path(policy))
    return load_policy(policy), None if info is None else info.learned_until


_STATE = Path("keyart-state")


def serve_command(
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Catalog, events, snapshots.")] = _STATE,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes, same snapshot.")] = 1,
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="Serving policy: a name (keyart policies lists them) or a snapshot file (.npz, from keyart "
            "train), published as the next model generation.",
        ),
    ] = DEFAULT_POLICY,
    floor: Annotated[float, typer.Option("--floor", help="Exploration floor (>= floor / K each).")] = 0.1,
    shadow_policy: Annotated[
        str | None,
        typer.Option(
            "--shadow-policy",
            help="Policy run in shadow (its choices logged, never served): a name or a snapshot file (.npz).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Deployment key of the sticky randomness (default: drawn once per state directory and "
            "kept in its exploration.key).",
        ),
    ] = None,
    catalog: Annotated[
        Path | None,
        typer.Option(
            "--catalog",
            help="Catalog to import at the first start (any form of docs/data.md: JSON, or a directory of "
            "Parquet, CSV or JSON Lines tables).",
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="KEYART_API_KEY", help="Key for state changes.")
    ] = None,
    sticky_seconds: Annotated[float, typer.Option("--sticky-seconds", help="Sticky period.")] = 86_400.0,
    learn_interval: Annotated[float, typer.Option("--learn-interval", help="Learner cadence (s).")] = 2.0,
    reload_interval: Annotated[float, typer.Option("--reload-interval", help="Snapshot checks (s).")] = 0.25,
    model_budget: Annotated[float, typer.Option("--model-budget", help="Model time per page (s).")] = 0.05,
    attribution_window: Annotated[
        float,
        typer.Option(
            "--attribution-window",
            min=0.001,
            help="Attribution window in seconds: an outcome counts for the latest decision of its member "
            "and title at most this long before it (the same default as keyart evaluate).",
        ),
    ] = ATTRIBUTION_WINDOW_SECONDS,
    quality_seconds: Annotated[
        float, typer.Option("--quality-seconds", help="Engaged seconds of a quality play.")
    ] = QUALITY_SECONDS,
    max_titles: Annotated[int, typer.Option("--max-titles", help="Titles per page.")] = 100,
    max_artworks: Annotated[int, typer.Option("--max-artworks", help="Active artworks per pool.")] = 64,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Request body bytes.")] = 1 << 20,
    fsync: Annotated[bool, typer.Option("--fsync", help="fsync every logged event.")] = False,
    learner: Annotated[bool, typer.Option("--learner/--no-learner", help="Run the learner.")] = True,
    log_level: Annotated[
        Literal["critical", "error", "warning", "info", "debug", "trace"],
        typer.Option("--log-level", help="uvicorn's log level."),
    ] = "warning",
    segment_max_mb: Annotated[
        float,
        typer.Option(
            "--segment-max-mb", min=0.001, help="Seal and rotate a worker's segment past this size."
        ),
    ] = 64.0,
    max_clock_skew: Annotated[
        int,
        typer.Option(
            "--max-clock-skew", min=1, help="Seconds a client's timestamp may lie past the server's clock."
        ),
    ] = 86_400,
    follow: Annotated[
        Path | None,
        typer.Option(
            "--follow",
            help="Follow mode: serve the model generations a training job publishes in this shared "
            "directory (keyart spark train --publish DIR), with no local learner; needs --events-dir.",
        ),
    ] = None,
    events_dir: Annotated[
        Path | None,
        typer.Option(
            "--events-dir",
            help="Follow mode: the shared events directory; the node writes its decisions and outcomes "
            "there as Parquet (decisions/date=.../, outcomes/date=.../), a file per kind and date per "
            "window.",
        ),
    ] = None,
    events_window: Annotated[
        float,
        typer.Option("--events-window", min=0.01, help="Follow mode: seconds between Parquet writes."),
    ] = 60.0,
) -> None:
    """Serve artwork decisions over HTTP, log them, learn online, hot-reload snapshots."""
    status = serve(
        state_dir,
        host,
        port,
        workers,
        policy,
        floor,
        shadow_policy,
        seed,
        catalog,
        api_key,
        sticky_seconds,
        learn_interval,
        reload_interval,
        model_budget,
        attribution_window,
        quality_seconds,
        max_titles,
        max_artworks,
        max_body_bytes,
        fsync,
        learner,
        log_level,
        segment_max_mb,
        max_clock_skew,
        follow,
        events_dir,
        events_window,
    )
    if status:
        raise typer.Exit(status)
