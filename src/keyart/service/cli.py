"""``keyart serve``: the decision service with its background learner, on uvicorn.

The process started by ``keyart serve`` prepares the state directory (catalog import, generation 0),
starts the learner process, and runs uvicorn with ``--workers`` worker processes that all import
``keyart.service.app:app_from_env`` with the same configuration.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import sys
from pathlib import Path

import typer

from keyart.service.config import CONFIG_ENV, Limits, ServiceConfig


def serve(
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    policy: str = "linucb",
    floor: float = 0.1,
    shadow_policy: str | None = None,
    seed: int = 0,
    catalog: Path | None = None,
    api_key: str | None = None,
    sticky_seconds: float = 86_400.0,
    learn_interval: float = 2.0,
    reload_interval: float = 0.25,
    model_budget: float = 0.05,
    attribution_window: float = 3_600.0,
    quality_seconds: float = 600.0,
    max_titles: int = 100,
    max_artworks: int = 64,
    max_body_bytes: int = 1 << 20,
    fsync: bool = False,
    learner: bool = True,
    log_level: str = "warning",
) -> None:
    """Serve decisions over HTTP until interrupted; see ``docs/service.md``."""
    import uvicorn

    from keyart.catalog import Catalog
    from keyart.service import catalog_store
    from keyart.service.learner import ensure_initial_generation, run_learner
    from keyart.service.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    key = api_key or os.environ.get("KEYART_API_KEY")
    if not key:
        key = secrets.token_urlsafe(24)
        print(f"keyart serve: generated API key for state-changing endpoints: {key}", file=sys.stderr)
    config = ServiceConfig(
        state_dir=str(Path(state_dir).resolve()), policy=policy, shadow_policy=shadow_policy, seed=seed, floor=floor,
        sticky_seconds=sticky_seconds, api_key=key,
        limits=Limits(max_titles_per_page=max_titles, max_artworks_per_pool=max_artworks,
                      max_body_bytes=max_body_bytes),
        learn_interval_seconds=learn_interval, reload_interval_seconds=reload_interval,
        model_budget_seconds=model_budget, attribution_window_seconds=attribution_window,
        quality_min_seconds=quality_seconds, fsync=fsync,
    )
    config.root.mkdir(parents=True, exist_ok=True)
    if catalog is not None and not config.catalog_path.exists():
        loader = Catalog.load_parquet if Path(catalog).is_dir() else Catalog.load_json
        catalog_store.import_catalog(config.catalog_path, loader(catalog))
    ensure_initial_generation(config)
    os.environ[CONFIG_ENV] = config.to_json()
    os.environ[MULTIPROC_ENV] = str(config.metrics_dir)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one BLAS thread per worker: matrices are small
    prepare_multiprocess_dir(config.metrics_dir)
    proc = None
    if learner:
        proc = multiprocessing.get_context("spawn").Process(
            target=run_learner, args=(config.to_json(),), name="keyart-learner", daemon=False
        )
        proc.start()
    try:
        uvicorn.run(
            "keyart.service.app:app_from_env", factory=True, host=host, port=port, workers=workers,
            log_level=log_level, access_log=False, http=_http(), loop=_loop(), timeout_graceful_shutdown=10,
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.join(30)
            if proc.is_alive():
                proc.kill()


def _http() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def serve_command(
    state_dir: Path = typer.Option(Path("keyart-state"), "--state-dir", help="Catalog, events, snapshots."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes serving the same snapshot."),
    policy: str = typer.Option("linucb", "--policy", help="Serving policy (see `keyart policies`)."),
    floor: float = typer.Option(0.1, "--floor", help="Exploration floor: each candidate gets >= floor / K."),
    shadow_policy: str | None = typer.Option(None, "--shadow-policy", help="Policy run in shadow (logged only)."),
    seed: int = typer.Option(0, "--seed", help="Deployment key of the sticky keyed-hash randomness."),
    catalog: Path | None = typer.Option(None, "--catalog", help="Catalog JSON (or Parquet dir) to import at first start."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="KEYART_API_KEY", help="Key for state-changing endpoints."),
    sticky_seconds: float = typer.Option(86_400.0, "--sticky-seconds", help="Period of sticky selection."),
    learn_interval: float = typer.Option(2.0, "--learn-interval", help="Seconds between learner cycles."),
    reload_interval: float = typer.Option(0.25, "--reload-interval", help="Seconds between snapshot checks."),
    model_budget: float = typer.Option(0.05, "--model-budget", help="Seconds a page may wait for the model."),
    attribution_window: float = typer.Option(3_600.0, "--attribution-window", help="Seconds an outcome counts."),
    quality_seconds: float = typer.Option(600.0, "--quality-seconds", help="Engaged seconds of a quality play."),
    max_titles: int = typer.Option(100, "--max-titles", help="Titles per page."),
    max_artworks: int = typer.Option(64, "--max-artworks", help="Active artworks per pool."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", help="Request body bytes."),
    fsync: bool = typer.Option(False, "--fsync", help="fsync every logged event (survives power loss)."),
    learner: bool = typer.Option(True, "--learner/--no-learner", help="Run the background learner."),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Serve artwork decisions over HTTP, log them, learn online, hot-reload snapshots."""
    serve(
        state_dir, host, port, workers, policy, floor, shadow_policy, seed, catalog, api_key, sticky_seconds,
        learn_interval, reload_interval, model_budget, attribution_window, quality_seconds, max_titles,
        max_artworks, max_body_bytes, fsync, learner, log_level,
    )
