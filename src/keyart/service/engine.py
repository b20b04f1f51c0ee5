"""One worker's decision engine: the catalog and model it serves, hot reload, and the per-page hot path.

All model work of a worker runs on one dedicated thread (``executor``): the featurizer's caches and the
policies' memos are not shared between threads, snapshot loading is serialized with decisions, and a
request waits for its page at most ``model_budget_seconds`` before it is answered with defaults. A new
generation or catalog is loaded on that thread and swapped in by one attribute assignment; a request in
flight keeps the objects it started with.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from keyart.catalog import Catalog
from keyart.context import MemberContext, Play
from keyart.errors import EmptyPoolError, KeyartError, SnapshotError, UnknownIdError
from keyart.events import context_to_dict
from keyart.features import Featurizer
from keyart.service import catalog_store, snapshots
from keyart.service.config import ServiceConfig
from keyart.service.fallbacks import DEFAULT_POLICY, decision_ids, default_artworks
from keyart.service.metrics import Metrics
from keyart.service.schemas import ContextIn, RequestError
from keyart.service.segments import SegmentWriter

log = logging.getLogger("keyart.service")
SHADOW_SALT = "/shadow"


@dataclass(frozen=True)
class CatalogView:
    """A catalog revision and the featurizer built on it (replaced whole on reload)."""

    catalog: Catalog
    rev: int
    featurizer: Featurizer


@dataclass
class Job:
    """One page's decision, shared between the request (which may give up) and the model thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: bool = False
    committed: bool = False


def make_context(member_id: str, ctx: ContextIn | None, now: float) -> MemberContext:
    """A ``MemberContext`` from the request (``timestamp`` defaults to the server's clock)."""
    if ctx is None:
        return MemberContext(member_id=member_id, timestamp=now)
    return MemberContext(
        member_id=member_id,
        played=tuple(Play(p.title_id, p.timestamp, p.engaged_seconds) for p in ctx.played),
        country=ctx.country,
        language=ctx.language,
        device=ctx.device,
        timestamp=now if ctx.timestamp is None else ctx.timestamp,
        interacted_titles=frozenset(ctx.interacted_titles),
        recommender_scores=ctx.recommender_scores,
        extra=ctx.extra,
    )


def context_json(ctx: MemberContext) -> str:
    """The context as ``keyart.events.context_to_json`` writes it (same keys and values, sorted keys),
    serialized with orjson for the hot path."""
    return orjson.dumps(context_to_dict(ctx), option=orjson.OPT_SORT_KEYS).decode()


class Engine:
    """What one worker process serves, and how it decides a page."""

    def __init__(self, config: ServiceConfig, metrics: Metrics, writer: SegmentWriter | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.writer = writer if writer is not None else SegmentWriter(config.segments_dir, fsync=config.fsync)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyart-model")
        self.view = self._load_catalog()
        self._catalog_stamp = catalog_store.stamp(config.catalog_path)
        self.generation: snapshots.Generation | None = None
        self.model_error: str | None = None
        self._snapshot_stamp: tuple[int, int] | None = None
        self.loaded_at = 0.0
        self.last_check = 0.0

    # ---- loading ----------------------------------------------------------------------------------
    def _load_catalog(self) -> CatalogView:
        catalog, rev = catalog_store.load_catalog(self.config.catalog_path)
        return CatalogView(catalog, rev, Featurizer(catalog, self.config.feature_config))

    def set_catalog(self, catalog: Catalog, rev: int) -> None:
        """Serve ``catalog`` (revision ``rev``) from now on, unless a newer revision is already served."""
        if rev > self.view.rev:
            self.view = CatalogView(catalog, rev, Featurizer(catalog, self.config.feature_config))
            self._warm()

    def refresh(self, force: bool = False) -> None:
        """Reload the catalog and the model generation when their files changed (call on the model thread)."""
        self.last_check = time.monotonic()
        cstamp = catalog_store.stamp(self.config.catalog_path)
        if force or cstamp != self._catalog_stamp:
            try:
                catalog, rev = catalog_store.load_catalog(self.config.catalog_path)
                self.set_catalog(catalog, rev)
                self._catalog_stamp = cstamp
            except (KeyartError, OSError, ValueError) as exc:
                log.error("catalog reload failed: %s", exc)
        sstamp = snapshots.pointer_stamp(self.config.snapshots_dir)
        if not force and sstamp == self._snapshot_stamp:
            return
        self._snapshot_stamp = sstamp
        try:
            gen = snapshots.load_latest(self.config.snapshots_dir)
        except (SnapshotError, OSError, ValueError) as exc:
            self.model_error = f"snapshot unreadable: {exc}"
            log.error(
                "%s (still serving generation %s)",
                self.model_error,
                None if self.generation is None else self.generation.number,
            )
            return
        if gen is None:
            self.model_error = "no snapshot published yet"
            return
        if self.generation is not None and gen.number == self.generation.number:
            return
        self._warm(gen)
        self.generation, self.model_error, self.loaded_at = gen, None, time.time()
        self.metrics.generation.set(gen.number)

    def _warm(self, gen: snapshots.Generation | None = None) -> None:
        """Run one tiny decision so the first real request does not pay for caches and solves."""
        gen = gen or self.generation
        view = self.view
        if gen is None:
            return
        for tid in view.catalog.active_title_ids()[:1]:
            try:
                batch = view.featurizer.page(MemberContext("warmup"), [tid], "warmup")
                gen.primary.choose(batch)
                if gen.shadow is not None:
                    gen.shadow.choose(batch)
            except Exception:  # warming is best effort; the hot path has its own fallbacks
                log.warning("model warm-up failed", exc_info=True)

    # ---- the hot path -----------------------------------------------------------------------------
    def pools(self, title_ids: list[str]) -> list[tuple[str, ...]]:
        """Each title's current pool; a 422 naming the first unknown or artless title."""
        catalog = self.view.catalog
        out = []
        limit = self.config.limits.max_artworks_per_pool
        for i, t in enumerate(title_ids):
            try:
                pool = catalog.pool_ids(t)
            except UnknownIdError:
                raise RequestError(
                    422, "unknown_title", f"title_ids[{i}]: unknown title {t!r}.", f"title_ids[{i}]"
                ) from None
            except EmptyPoolError:
                raise RequestError(
                    422,
                    "no_artwork",
                    f"title_ids[{i}]: title {t!r} has no active artwork.",
                    f"title_ids[{i}]",
                ) from None
            if len(pool) > limit:
                raise RequestError(
                    422,
                    "pool_too_large",
                    f"title_ids[{i}]: title {t!r} has {len(pool)} active artworks, "
                    f"more than max_artworks_per_pool={limit}.",
                    f"title_ids[{i}]",
                )
            out.append(pool)
        return out

    def decide(
        self,
        member_id: str,
        ctx_in: ContextIn | None,
        title_ids: list[str],
        page: str | None,
        request_id: str | None,
        job: Job | None = None,
        reason: str | None = None,
    ) -> dict[str, Any] | None:
        """Decide a page; log it to the segment; return the response body (None if the job was given up).

        ``reason`` forces the fallback (used when the model ran out of time). Raises ``RequestError`` for a
        title that cannot be shown at all; never raises for a model problem.
        """
        now = time.time()
        view, gen = self.view, self.generation
        ctx = make_context(member_id, ctx_in, now)
        rid = request_id or uuid.uuid4().hex
        pools = self.pools(title_ids)
        if reason is None and gen is None:
            reason = "no_model"
        if reason is None and ctx_in is None and not self.config.personalize_unknown_members:
            reason = "unknown_member"
        n = len(title_ids)
        shadow: dict[str, Any] | None = None
        if reason is None:
            assert gen is not None
            try:
                batch = view.featurizer.page(ctx, title_ids, rid)
                db = gen.primary.choose(batch)
                probs = db.probabilities
                index = db.index
                explored = db.explored.tolist()
                propensity = db.propensity.tolist()
                artwork_ids = db.artwork_ids.tolist()
                dids = db.decision_ids
                policy, version = db.policy, int(db.model_version)
            except UnknownIdError as exc:
                reason = "pool_changed"
                log.warning("pool changed since training: %s", exc)
            except Exception as exc:
                reason = "model_error"
                log.exception("model error, answering defaults: %s", exc)
            else:
                if gen.shadow is not None:
                    shadow = self._shadow(gen, batch, rid, title_ids)
        if reason is not None:
            index_list = default_artworks(view.catalog, title_ids, pools, gen.defaults if gen else {})
            index = np.asarray(index_list, dtype=np.int64)
            k = max(len(p) for p in pools)
            probs = np.zeros((n, k))
            probs[np.arange(n), index] = 1.0
            explored = [False] * n
            propensity = [1.0] * n
            artwork_ids = [p[j] for p, j in zip(pools, index_list, strict=True)]
            dids = decision_ids(rid, n)
            policy, version = DEFAULT_POLICY, 0 if gen is None else gen.number
        sizes = [len(p) for p in pools]
        record: dict[str, Any] = {
            "k": "page",
            "request_id": rid,
            "timestamp": ctx.timestamp,
            "member_id": member_id,
            "page": page,
            "context_json": context_json(ctx),
            "policy": policy,
            "model_version": version,
            "fallback": reason is not None,
            "title_ids": title_ids,
            "decision_ids": dids,
            "pools": pools,
            "probabilities": [probs[i, : sizes[i]].tolist() for i in range(n)],
            "index": index.tolist(),
            "explored": explored,
        }
        if shadow is not None:
            record["shadow"] = shadow
        if job is not None:
            with job.lock:
                if job.cancelled:
                    return None
                job.committed = True
        self.writer.append(record)  # before the response: an acknowledged decision is never lost
        m = self.metrics
        m.decisions.labels(policy).inc(n)
        n_explored = sum(explored)
        if n_explored:
            m.explored.labels(policy).inc(n_explored)
        if reason is not None:
            m.fallbacks.labels(reason).inc(n)
        if shadow is not None:
            m.shadow_decisions.labels(shadow["policy"]).inc(n)
        fb = reason is not None
        return {
            "request_id": rid,
            "member_id": member_id,
            "generation": -1 if gen is None else gen.number,
            "decisions": [
                {
                    "title_id": t,
                    "decision_id": d,
                    "artwork_id": a,
                    "propensity": p,
                    "policy": policy,
                    "model_version": version,
                    "explored": e,
                    "fallback": fb,
                    "fallback_reason": reason,
                }
                for t, d, a, p, e in zip(title_ids, dids, artwork_ids, propensity, explored, strict=True)
            ],
        }

    def _shadow(
        self, gen: snapshots.Generation, batch: Any, rid: str, title_ids: list[str]
    ) -> dict[str, Any] | None:
        """What the shadow policy would have chosen, with its propensities (logged, never served)."""
        assert gen.shadow is not None
        try:
            sdb = gen.shadow.choose(batch)
        except Exception as exc:
            log.warning("shadow policy failed: %s", exc)
            return None
        sizes = batch.pool_sizes.tolist()
        return {
            "policy": sdb.policy,
            "model_version": int(sdb.model_version),
            "decision_ids": decision_ids(rid, len(title_ids), SHADOW_SALT),
            "probabilities": [sdb.probabilities[i, : sizes[i]].tolist() for i in range(len(sizes))],
            "index": sdb.index.tolist(),
            "explored": sdb.explored.tolist(),
        }

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.writer.close()
