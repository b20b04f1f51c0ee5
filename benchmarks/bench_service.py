"""Load benchmark of the decision service on loopback, side by side with a bare ASGI endpoint.

Pages of 40 titles x 12 candidate artworks, POSTed by ``wrk`` (a Lua script rotates 64 pre-built pages of
different members). For 1 and 2 worker processes it measures:

- ``bare``: Starlette + orjson, same uvicorn settings, an endpoint that only parses the same body and
  returns a same-sized answer (40 decisions) — the ceiling of the HTTP stack on this machine;
- ``keyart``: ``keyart serve`` (its default policy, or ``--policy NAME``; decisions logged to segments,
  the learner ingesting them into DuckDB in the background — production settings);
- ``keyart @ x max``: keyart paced at fractions ``--loads`` of its own maximum throughput (4x the
  connections, each waiting an exponential Lua ``delay`` between requests: Poisson arrivals; wrk2 is not
  packaged here, and pacing closed-loop connections does not correct coordinated omission, so the p99 is
  if anything optimistic at overload, fine below it), with the fraction of title decisions answered with
  default artwork, in all and shed at once (``overload``) or out of time (``timeout``): the offered load
  at which shedding starts.

``--learner`` measures instead whether the learner keeps up: keyart with a 2-s attribution window (it
learns and publishes during the load) under wrk at full speed, with an outcome batch (10 plays, named
by member and title) after every 3 pages, for ``--duration`` seconds, then again paced at fractions
``--learner-loads`` of that request rate (a fresh server each time); it prints the events served per
second (title decisions + outcomes) against the events the learner stored and learned per second, the
share of the time the learner was busy, its backlog and lag at the end, and the ratio.

    python benchmarks/bench_service.py [--duration 10] [--connections 8] [--workers 1 2] [--learning]
    python benchmarks/bench_service.py --loads 0.25 0.5 0.75 0.9 1 1.25   # the paced runs (default)
    python benchmarks/bench_service.py --learner --workers 1 --duration 30 [--learner-loads 0.5]
    python benchmarks/bench_service.py --smoke    # CI: 1 worker, Python client, no wrk, seconds
    python benchmarks/bench_service.py --inprocess    # only the in-process cost of a page, no servers
    python benchmarks/bench_service.py --startup [--workers 1 2]   # seconds from start to ready

Prints the environment, the exact wrk commands, and a table: server, workers, title-decisions/s, p50, p99.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402

TITLES_PER_PAGE = 40
CANDIDATES = 12
N_TITLES = 400
N_BODIES = 64
GENRES = ("drama", "comedy", "horror", "scifi", "romance", "action", "documentary", "kids")


# ---- the bare endpoint (imported by uvicorn workers as ``bench_service:bare_app``) --------------------


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def decide(request: Request) -> Response:
        body = orjson.loads(await request.body())
        rid = "0" * 32
        out = {
            "request_id": rid,
            "member_id": body["member_id"],
            "generation": 1,
            "decisions": [
                {
                    "title_id": t,
                    "decision_id": f"{rid}-{i}",
                    "artwork_id": f"{t}-a0",
                    "propensity": 0.5,
                    "policy": "linucb",
                    "model_version": 1,
                    "explored": False,
                    "fallback": False,
                    "fallback_reason": None,
                }
                for i, t in enumerate(body["title_ids"])
            ],
        }
        return Response(orjson.dumps(out), media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/v1/decide", decide, methods=["POST"]), Route("/readyz", ready)])


def __getattr__(name: str) -> Any:  # lazy: importing this module starts nothing
    if name == "bare_app":
        return _bare_app()
    raise AttributeError(name)


# ---- data --------------------------------------------------------------------------------------------


def write_catalog(path: Path) -> None:
    from keyart.catalog import Artwork, Catalog, Title

    rng = np.random.default_rng(0)
    titles = [
        Title(
            f"t{i}",
            genres=tuple(rng.choice(GENRES, 2, replace=False).tolist()),
            cast=(f"c{i % 97}",),
            runtime_minutes=60.0,
        )
        for i in range(N_TITLES)
    ]
    arts = [
        Artwork(
            f"t{i}-a{j}",
            f"t{i}",
            theme_genres=(GENRES[(i + j) % len(GENRES)],),
            featured_cast=(f"c{(i + j) % 97}",) if j % 2 else (),
            style=f"s{j % 5}",
            tags=(f"tag{j % 7}",),
        )
        for i in range(N_TITLES)
        for j in range(CANDIDATES)
    ]
    Catalog(titles, arts).save_json(path)


def bodies() -> list[bytes]:
    rng = np.random.default_rng(1)
    out = []
    for m in range(N_BODIES):
        titles = rng.choice(N_TITLES, TITLES_PER_PAGE, replace=False)
        played = [
            {"title_id": f"t{int(t)}", "timestamp": 1.7e9 - 86_400 * k, "engaged_seconds": 1200.0}
            for k, t in enumerate(rng.choice(N_TITLES, 20, replace=False))
        ]
        out.append(
            orjson.dumps(
                {
                    "member_id": f"member-{m}",
                    "title_ids": [f"t{int(t)}" for t in titles],
                    "context": {
                        "played": played,
                        "country": "US",
                        "language": "en",
                        "device": ["tv", "mobile"][m % 2],
                    },
                }
            )
        )
    return out


def outcome_bodies(body_list: list[bytes], per_batch: int = 10) -> list[bytes]:
    """One outcome batch per page body: plays of its first ``per_batch`` titles by member and title
    (quality plays of 900 s; no decision id needed, so any worker's decision of that page joins them)."""
    out = []
    for body in body_list:
        page = orjson.loads(body)
        items = [
            {"member_id": page["member_id"], "title_id": t, "event_type": "play", "engaged_seconds": 900.0}
            for t in page["title_ids"][:per_batch]
        ]
        out.append(orjson.dumps({"outcomes": items}))
    return out


LUA = """
bodies = {}
local f = io.open("%(bodies)s", "r")
for line in f:lines() do bodies[#bodies + 1] = line end
f:close()
outcomes = {}
local g = io.open("%(outcomes)s", "r")
for line in g:lines() do outcomes[#outcomes + 1] = line end
g:close()
local every = %(outcome_every)d
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "bench"
request = function()
  i = i + 1
  if every > 0 and i %% (every + 1) == 0 then
    return wrk.format(nil, "/v1/outcomes", nil, outcomes[((i - 1) %% #outcomes) + 1])
  end
  return wrk.format(nil, "/v1/decide", nil, bodies[(i %% #bodies) + 1])
end
%(delay)s
response = function(status, headers, body)
  if status ~= 200 then errors_seen = (errors_seen or 0) + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("NON200 %%d\\n", summary.errors.status))
end
"""


# ---- processes -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not ready")


def start(
    kind: str, workers: int, root: Path, port: int, learning: bool = False, policy: str | None = None
) -> subprocess.Popen[bytes]:
    if kind == "bare":
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(Path(__file__).parent),
            "bench_service:bare_app",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
        ]
    else:
        state = root / f"state-{workers}"
        if state.exists():
            shutil.rmtree(state)
        cmd = [
            str(Path(sys.executable).with_name("keyart")),
            "serve",
            "--state-dir",
            str(state),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--catalog",
            str(root / "catalog.json"),
            "--api-key",
            "bench",
            "--learn-interval",
            "1.0",
        ] + (["--attribution-window", "2"] if learning else [])
        cmd += ["--policy", policy] if policy else []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_ready(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def startup_seconds(
    root: Path, workers: int, restart: bool, policy: str | None = None
) -> tuple[float, float]:
    """Seconds from launching ``keyart serve`` (a fresh state directory, or a restart on the one the
    previous call left) to the first ``/readyz`` 200, and to every worker answering."""
    import httpx

    state = root / f"startup-{workers}"
    if not restart and state.exists():
        shutil.rmtree(state)
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("keyart")), "serve", "--state-dir", str(state)]
    cmd += ["--port", str(port), "--workers", str(workers), "--api-key", "bench"]
    cmd += ["--catalog", str(root / "catalog.json")] + (["--policy", policy] if policy else [])
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(port, proc, timeout=300)
        ready = time.monotonic() - t0
        seen: set[str] = set()
        while len(seen) < workers and time.monotonic() - t0 < 300:
            with httpx.Client(timeout=5.0) as c:  # a new connection: any worker may answer
                r = c.get(f"http://127.0.0.1:{port}/readyz")
                if r.status_code == 200:
                    seen.add(r.headers["x-keyart-worker"])
        return ready, time.monotonic() - t0
    finally:
        stop(proc)


# ---- load ------------------------------------------------------------------------------------------------


def _ms(text: str) -> float:
    m = re.match(r"([0-9.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def run_wrk(
    port: int,
    root: Path,
    duration: float,
    connections: int,
    rate: float | None = None,
    outcome_every: int = 0,
) -> dict[str, Any]:
    """wrk against ``/v1/decide`` for ``duration`` s: at full speed, or paced at ``rate`` requests/s;
    with ``outcome_every`` > 0, an outcome batch after every ``outcome_every`` pages."""
    delay = ""
    if rate:
        per_conn_ms = connections * 1000.0 / rate
        # exponential gaps per connection: Poisson arrivals overall, connections never in lock-step
        delay = (
            "local threads = 0\n"
            "setup = function(thread) threads = threads + 1; thread:set('tid', threads) end\n"
            "init = function(args) math.randomseed(1000 * (tid or 1) + os.time() % 1000) end\n"
            f"delay = function() return -math.log(1 - math.random()) * {per_conn_ms:.3f} end"
        )
    script = root / ("paced.lua" if rate else "max.lua")
    script.write_text(
        LUA
        % {
            "bodies": root / "bodies.jsonl",
            "outcomes": root / "outcomes.jsonl",
            "outcome_every": outcome_every,
            "delay": delay,
        }
    )
    cmd = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non200 = int(re.search(r"NON200 (\d+)", out).group(1)) if "NON200" in out else 0  # type: ignore[union-attr]
    return {"rps": rps, "p50": p50, "p99": p99, "non200": non200, "cmd": " ".join(cmd)}


def run_python(port: int, body_list: list[bytes], duration: float) -> dict[str, Any]:
    """A small closed-loop Python client (the CI smoke: no wrk needed)."""
    import httpx

    lat = []
    errors = 0
    end = time.monotonic() + duration
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as c:
        i = 0
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = c.post(
                "/v1/decide",
                content=body_list[i % len(body_list)],
                headers={"content-type": "application/json"},
            )
            lat.append(time.perf_counter() - t0)
            errors += r.status_code != 200
            i += 1
    a = np.asarray(lat) * 1000
    return {
        "rps": len(lat) / duration,
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "non200": errors,
        "cmd": "python client (closed loop, 1 connection)",
    }


def metric_totals(port: int) -> dict[str, float]:
    """Counters and gauges of ``/metrics`` summed over their labels (and the service's processes), and
    ``fallbacks:<reason>`` for each fallback reason."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for name, labels, value in re.findall(r"^(keyart_\w+?)(\{[^}]*\})? ([0-9.e+-]+)$", text, re.M):
        out[name] = out.get(name, 0.0) + float(value)
        reason = re.search(r'reason="(\w+)"', labels or "")
        if name == "keyart_fallbacks_total" and reason:
            key = f"fallbacks:{reason.group(1)}"
            out[key] = out.get(key, 0.0) + float(value)
    return out


def fallback_counts(port: int) -> dict[str, float]:
    """Title decisions and fallbacks (in all and by reason) so far, over the service's processes."""
    m = metric_totals(port)
    return {k: v for k, v in m.items() if k.startswith("fallbacks:") or k in FALLBACK_KEYS}


FALLBACK_KEYS = ("keyart_decisions_total", "keyart_fallbacks_total")


def fallback_rates(port: int, since: dict[str, float] | None = None) -> dict[str, float]:
    """Fractions of the title decisions since ``since`` answered with defaults: ``fallback_rate`` in all,
    ``overload_rate`` (shed at once) and ``timeout_rate`` (out of budget)."""
    now, since = fallback_counts(port), since or {}

    def delta(key: str) -> float:
        return now.get(key, 0.0) - since.get(key, 0.0)

    dec = delta("keyart_decisions_total")
    if not dec:
        return {"fallback_rate": 0.0, "overload_rate": 0.0, "timeout_rate": 0.0}
    return {
        "fallback_rate": delta("keyart_fallbacks_total") / dec,
        "overload_rate": delta("fallbacks:overload") / dec,
        "timeout_rate": delta("fallbacks:timeout") / dec,
    }


def inprocess_ms_per_page(
    root: Path,
    body_list: list[bytes],
    n: int = 600,
    policy: str | None = None,
    profiler: Any = None,
) -> tuple[float, float]:
    """Cost of a page without HTTP, on one thread: parse, featurize, choose, log, answer (``parse_page``,
    ``Engine.decide``, ``PageResult.page_json``). Returns the median ms per page and the median of the
    service's own part (the page minus the time inside ``featurizer.page`` and ``policy.choose``). A
    ``cProfile.Profile`` given as ``profiler`` runs over the pages only (not the set-up)."""
    from keyart.catalog import Catalog
    from keyart.service import catalog_store
    from keyart.service.config import ServiceConfig
    from keyart.service.engine import Engine
    from keyart.service.learner import ensure_initial_generation
    from keyart.service.metrics import Metrics
    from keyart.service.parsing import parse_page

    chosen = {"policy": policy} if policy else {}
    config = ServiceConfig(state_dir=str(root / "inprocess"), api_key="bench", **chosen)
    catalog_store.import_catalog(config.catalog_path, Catalog.load_json(root / "catalog.json"))
    ensure_initial_generation(config)
    engine = Engine(config, Metrics())
    engine.refresh(True)
    core = [0.0]

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                core[0] += time.perf_counter() - t0

        return wrapper

    fz, gen = engine.view.featurizer, engine.generation
    assert gen is not None
    fz.page = timed(fz.page)  # type: ignore[method-assign]
    gen.primary.choose = timed(gen.primary.choose)  # type: ignore[method-assign]
    total, own = [], []
    if profiler is not None:
        profiler.enable()
    for i in range(len(body_list) + n):
        core[0] = 0.0
        t0 = time.perf_counter()
        req = parse_page(body_list[i % len(body_list)], config.limits, time.time())
        result = engine.decide(req)
        assert result is not None and not result.reason
        result.page_json()
        dt = time.perf_counter() - t0
        if i >= len(body_list):  # the first round warms caches
            total.append(dt)
            own.append(dt - core[0])
    if profiler is not None:
        profiler.disable()
    engine.close()
    return float(np.median(total)) * 1000, float(np.median(own)) * 1000


def profiled_pages(root: Path, body_list: list[bytes], policy: str | None, top: int) -> tuple[float, float]:
    """``inprocess_ms_per_page`` under ``cProfile``: prints the ``top`` functions by own time (whose
    shares say where a page's time goes; the milliseconds it returns include the profiler's overhead)."""
    import cProfile

    from keyart.simulation.experiments import format_table

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from profiling import own_times

    profiler = cProfile.Profile()
    ms = inprocess_ms_per_page(root, body_list, policy=policy, profiler=profiler)
    total, table = own_times(profiler, top)
    print(f"profile of the in-process pages: {total:.1f} s in all (own times)")
    print(format_table(table, digits=2))
    return ms


def learner_keeps_up(
    root: Path,
    workers: int,
    duration: float,
    connections: int,
    rate: float | None = None,
    policy: str | None = None,
) -> dict[str, Any]:
    """Served events/s (decisions and outcomes) at full speed, or paced at ``rate`` requests/s, against
    what the learner stores and learns per second meanwhile (see the module docstring)."""
    port = free_port()
    proc = start("keyart", workers, root, port, learning=True, policy=policy)
    try:
        run_wrk(port, root, 2.0, connections, outcome_every=3)  # warm-up
        m0, t0 = metric_totals(port), time.monotonic()
        paced = 4 * connections if rate else connections
        res = run_wrk(port, root, duration, paced, rate=rate, outcome_every=3)
        m1, dt = metric_totals(port), time.monotonic() - t0
    finally:
        stop(proc)

    def per_s(key: str) -> float:
        return (m1.get(key, 0.0) - m0.get(key, 0.0)) / dt

    served = per_s("keyart_decisions_total") + per_s("keyart_outcomes_total")
    ingested = per_s("keyart_events_ingested_total")
    learned = per_s("keyart_rewards_joined_total")
    out = {
        "workers": workers,
        "offered": rate,
        "seconds": dt,
        "pages_per_s": res["rps"],
        "served_events_per_s": served,
        "ingested_events_per_s": ingested,
        "learned_decisions_per_s": learned,
        "decisions_per_s": per_s("keyart_decisions_total"),
        "busy_fraction": per_s("keyart_learner_busy_seconds_total"),
        "backlog_mib": m1.get("keyart_ingest_backlog_bytes", 0.0) / 2**20,
        "lag_s": m1.get("keyart_learner_lag_seconds", 0.0),
        "generations": m1.get("keyart_published_generation", 0.0)
        - m0.get("keyart_published_generation", 0.0),
        "cmd": res["cmd"],
    }
    busy = out["busy_fraction"]
    # events the learner gets through per second of its own work (ingest and learn), against what is served
    out["ratio"] = ingested / served if served else float("nan")
    out["capacity_ratio"] = ingested / busy / served if busy and served else float("nan")
    return out


def print_learner(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'workers':>8}{'offered/s':>10}{'requests/s':>11}{'served ev/s':>13}{'ingested ev/s':>15}"
        f"{'learned dec/s':>15}"
        f"{'busy':>7}{'backlog MiB':>13}{'lag s':>8}{'gens':>6}{'ingested/served':>17}{'capacity':>10}"
    )
    for r in rows:
        offered = "max" if r["offered"] is None else f"{r['offered']:.0f}"
        print(
            f"{r['workers']:>8}{offered:>10}{r['pages_per_s']:>11.0f}{r['served_events_per_s']:>13.0f}"
            f"{r['ingested_events_per_s']:>15.0f}{r['learned_decisions_per_s']:>15.0f}{r['busy_fraction']:>7.0%}"
            f"{r['backlog_mib']:>13.1f}{r['lag_s']:>8.1f}{r['generations']:>6.0f}{r['ratio']:>17.2f}"
            f"{r['capacity_ratio']:>10.2f}"
        )
    for r in rows:
        verdict = "keeps up" if r["ratio"] >= 0.95 and r["backlog_mib"] < 8 else "falls behind"
        speed = "full speed" if r["offered"] is None else f"{r['offered']:.0f} requests/s"
        print(
            f"workers={r['workers']}: the learner stored {r['ratio']:.2f} of the events served at {speed} "
            f"(busy {r['busy_fraction']:.0%} of the time; capacity {r['capacity_ratio']:.2f} x what "
            f"is served; learned {r['learned_decisions_per_s']:.0f} of {r['decisions_per_s']:.0f} "
            f"decisions/s): {verdict}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--loads",
        type=float,
        nargs="*",
        default=[0.25, 0.5, 0.75, 0.9, 1.0, 1.25],
        help="offered loads of the paced runs, as fractions of keyart's maximum",
    )
    ap.add_argument("--smoke", action="store_true", help="1 worker, Python client, 2 s: the CI smoke run")
    ap.add_argument(
        "--inprocess", action="store_true", help="only the in-process cost of a page (no servers, no wrk)"
    )
    ap.add_argument(
        "--startup", action="store_true", help="seconds from start (fresh, then restart) to ready, 3 each"
    )
    ap.add_argument(
        "--learning",
        action="store_true",
        help="2-s attribution window: the learner learns and publishes generations during the load",
    )
    ap.add_argument(
        "--learner", action="store_true", help="does the learner keep up with full-speed serving? (see above)"
    )
    ap.add_argument(
        "--learner-loads",
        type=float,
        nargs="*",
        default=[0.5],
        help="with --learner, also paced at these fractions of the full-speed request rate",
    )
    ap.add_argument(
        "--policy", default=None, help="keyart's serving policy (default: keyart serve's, DEFAULT_POLICY)"
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="with --inprocess: run the pages under cProfile and print the N functions of most own time",
    )
    args = ap.parse_args(argv)
    from keyart.policies import DEFAULT_POLICY

    root = Path(tempfile.mkdtemp(prefix="keyart-bench-"))
    write_catalog(root / "catalog.json")
    body_list = bodies()
    (root / "bodies.jsonl").write_bytes(b"\n".join(body_list) + b"\n")
    (root / "outcomes.jsonl").write_bytes(b"\n".join(outcome_bodies(body_list)) + b"\n")
    import uvicorn

    print(
        f"# keyart service benchmark: pages of {TITLES_PER_PAGE} titles x {CANDIDATES} candidates, "
        f"{N_BODIES} members rotating; policy {args.policy or DEFAULT_POLICY}"
    )
    print(
        f"# python {platform.python_version()}, uvicorn {uvicorn.__version__} (httptools, uvloop), "
        f"{os.cpu_count()} CPUs, {platform.platform()}; load generator on the same machine"
    )
    print(f"# load average (1 min) before the run: {os.getloadavg()[0]:.2f}")
    rows: list[tuple[str, int, dict[str, Any]]] = []
    ms: tuple[float, float] | None = None
    if args.startup:
        try:
            print(f"{'workers':>8}{'start':>9}{'ready s':>9}{'all workers s':>15}")
            for workers in args.workers:
                for i in range(6):
                    ready, every = startup_seconds(root, workers, restart=i % 2 == 1, policy=args.policy)
                    kind = "restart" if i % 2 else "fresh"
                    print(f"{workers:>8}{kind:>9}{ready:>9.1f}{every:>15.1f}", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"# load average (1 min) after the run: {os.getloadavg()[0]:.2f}")
        return {}
    if args.learner:
        try:
            learner_rows = []
            for w in args.workers:
                full = learner_keeps_up(root, w, args.duration, args.connections, policy=args.policy)
                learner_rows.append(full)
                for load in args.learner_loads:
                    rate = full["pages_per_s"] * load
                    learner_rows.append(
                        learner_keeps_up(root, w, args.duration, args.connections, rate, args.policy)
                    )
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print()
        print_learner(learner_rows)
        print(f"# load average (1 min) after the run: {os.getloadavg()[0]:.2f}")
        cmds = sorted({r["cmd"].replace(str(root), "$TMP") for r in learner_rows})
        print("\ncommands:\n  " + "\n  ".join(cmds))
        return {"learner": learner_rows}
    try:
        if args.smoke:
            port = free_port()
            proc = start("keyart", 1, root, port, policy=args.policy)
            try:
                res = run_python(port, body_list, 2.0)
                res.update(fallback_rates(port))
            finally:
                stop(proc)
            rows.append(("keyart", 1, res))
        elif not args.inprocess:
            for workers in args.workers:
                for kind in ("bare", "keyart"):
                    port = free_port()
                    proc = start(kind, workers, root, port, args.learning, args.policy)
                    try:
                        run_wrk(port, root, 2.0, args.connections)  # warm-up
                        before = fallback_counts(port) if kind == "keyart" else {}
                        res = run_wrk(port, root, args.duration, args.connections)
                        rows.append((kind, workers, res))
                        if kind == "keyart":
                            res.update(fallback_rates(port, before))
                            for load in args.loads:
                                before = fallback_counts(port)
                                paced = run_wrk(
                                    port, root, args.duration, 4 * args.connections, rate=res["rps"] * load
                                )
                                paced["target_rps"] = res["rps"] * load
                                paced["load"] = load
                                paced.update(fallback_rates(port, before))
                                rows.append((f"keyart @ {load:.2f} max", workers, paced))
                    finally:
                        stop(proc)
        if not args.smoke:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1):
                if args.profile:
                    ms = profiled_pages(root, body_list, args.policy, args.profile)
                else:
                    ms = inprocess_ms_per_page(root, body_list, policy=args.policy)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        f"{'server':<20}{'workers':>8}{'offered/s':>10}{'pages/s':>9}{'title-decisions/s':>19}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'non-200':>8}{'fallback':>10}{'overload':>10}{'timeout':>9}"
    )
    for kind, workers, r in rows:
        offered = f"{r['target_rps']:>10.0f}" if "target_rps" in r else f"{'max':>10}"
        fb = (
            f"{r['fallback_rate']:>10.2%}{r['overload_rate']:>10.2%}{r['timeout_rate']:>9.2%}"
            if "fallback_rate" in r
            else f"{'-':>10}{'-':>10}{'-':>9}"
        )
        print(
            f"{kind:<20}{workers:>8}{offered}{r['rps']:>9.0f}{r['rps'] * TITLES_PER_PAGE:>19.0f}"
            f"{r['p50']:>9.2f}{r['p99']:>9.2f}{r['non200']:>8}" + fb
        )
    print()
    summary: dict[str, Any] = {"rows": [{"server": k, "workers": w, **r} for k, w, r in rows]}
    if ms is not None:
        summary["inprocess_ms"], summary["inprocess_own_ms"] = ms
    by = {(k, w): r for k, w, r in rows}
    for workers in sorted({w for _, w, _ in rows}):
        bare, ka = by.get(("bare", workers)), by.get(("keyart", workers))
        if bare and ka:
            ratio = ka["rps"] / bare["rps"]
            print(
                f"workers={workers}: keyart / bare throughput = {ratio:.2f} (goal >= 0.5); "
                f"fallback rate at max load = {ka.get('fallback_rate', 0):.4f}"
            )
        paced = sorted((r for k, w, r in rows if w == workers and "load" in r), key=lambda r: r["load"])
        half = next((r for r in paced if r["load"] == 0.5), None)
        if half:
            print(
                f"workers={workers}: p99 at {half['target_rps']:.0f} pages/s (half of keyart's max; achieved "
                f"{half['rps']:.0f}) = {half['p99']:.2f} ms (goal < 25 ms)"
            )
        if paced:
            shed = next((r["load"] for r in paced if r["overload_rate"] > 0.01), None)
            print(
                f"workers={workers}: pages shed at once (overload) exceed 1% from "
                + ("no offered load measured" if shed is None else f"{shed:.2f} x keyart's max")
                + " ("
                + ", ".join(f"{r['load']:.2f}: {r['overload_rate']:.2%}" for r in paced)
                + ")"
            )
    if ms is not None:
        print(
            f"in-process page (parse + featurize + choose + log + answer, no HTTP): {ms[0]:.3f} ms per page "
            f"(median) = at most {1000 / ms[0]:.0f} pages/s per busy core; the service's own part "
            f"(all but featurizer.page and policy.choose): {ms[1]:.3f} ms"
        )
    print(f"# load average (1 min) after the run: {os.getloadavg()[0]:.2f}")
    cmds = sorted({r["cmd"].replace(str(root), "$TMP") for _, _, r in rows})
    print("\ncommands:\n  " + "\n  ".join(cmds))
    return summary


if __name__ == "__main__":
    json.dumps(main())
