"""One worker's decision engine: the catalog and model it serves, hot reload, and the per-page hot path.

All model work of a worker runs on one dedicated thread (``executor``, a ``ModelThread``; both it and
``Job`` are in ``keyart.service.modelthread``): the featurizer's caches and the policies' memos are not
shared between threads, snapshot loading is serialized with decisions, and a request waits for its page at
most ``model_budget_seconds`` before it is answered with defaults (``Job``). A page whose request gave up
is skipped unstarted, and, once the model thread is saturated (busy without a pause for
``SATURATED_BUDGETS`` budgets), a request that would only wait in its queue longer than the budget is
answered with defaults at once (``overload``, see ``overloaded``): below saturation a queue is a burst
that drains, and nothing is shed. A new generation or catalog is loaded on
that thread and swapped in by one attribute assignment; a request in flight keeps the objects it started
with.

Per page, everything but ``featurizer.page`` and ``policy.choose`` is kept small: pools come from a
per-catalog cache, the page is logged as one line, a page record (``keyart.events.page_record``, the one
format of decision rows, with the probability vectors in base64: no per-number formatting), counters are
incremented once per page on cached label children, and the answer is one orjson call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from keyart import kernels
from keyart.catalog import Catalog
from keyart.context import MemberContext
from keyart.errors import EmptyPoolError, KeyartError, UnknownIdError
from keyart.events import context_to_json_fast as context_json
from keyart.events import page_record, shadow_record
from keyart.features import FeatureConfig, Featurizer
from keyart.service import catalog_store, follow, snapshots
from keyart.service.config import ServiceConfig
from keyart.service.fallbacks import DEFAULT_POLICY, decision_ids, default_artworks
from keyart.service.ids import PageKeys
from keyart.service.metrics import Metrics
from keyart.service.modelthread import Job, ModelThread
from keyart.service.parsing import PageRequest
from keyart.service.schemas import RequestError
from keyart.service.segments import SegmentWriter

log = logging.getLogger("keyart.service")
#: Budgets of uninterrupted work after which the model thread counts as saturated (see ``overloaded``).
SATURATED_BUDGETS = 4.0
SHADOW_SALT = "/shadow"
WARM_TITLES = 40  # titles of the page a worker decides before it serves (``Engine._warm``)


class EventLogError(KeyartError, RuntimeError):
    """A page's or outcome batch's line could not be logged: the request is not acknowledged (503)."""


@dataclass(frozen=True)
class CatalogView:
    """A catalog revision and the featurizer built on it (replaced whole on reload).

    ``pool_cache`` holds the pools of titles that passed ``Engine.pools``' checks (valid while the
    catalog's ``version`` is ``pool_cache_version[0]``), so a page's pools are one dict lookup per title.
    """

    catalog: Catalog
    rev: int
    featurizer: Featurizer
    pool_cache: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)
    others: dict[FeatureConfig, Featurizer] = field(default_factory=dict, compare=False, repr=False)

    def featurizer_for(self, features: FeatureConfig) -> Featurizer:
        """A featurizer of this catalog for a model's ``features`` (``ServiceConfig.features_for``): the
        view's own when they match, else one made on first use and kept with the view."""
        if features is self.featurizer.config or features == self.featurizer.config:
            return self.featurizer
        found = self.others.get(features)
        if found is None:
            found = self.others[features] = Featurizer(self.catalog, features)
        return found

    pool_cache_version: list[int] = field(default_factory=lambda: [-1], compare=False, repr=False)


@dataclass(slots=True)
class PageResult:
    """A decided page, by column: what the response shows (``page_json``, ``title_json``)."""

    request_id: str
    member_id: str
    generation: int
    title_ids: list[str]
    decision_ids: list[str]
    artwork_ids: list[str]
    propensity: list[float]
    explored: list[bool]
    policy: str
    model_version: int
    reason: str | None

    def decisions(self) -> list[dict[str, Any]]:
        """One dict per title, as ``DecisionOut``."""
        policy, version, fb, reason = self.policy, self.model_version, self.reason is not None, self.reason
        return [
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
            for t, d, a, p, e in zip(
                self.title_ids,
                self.decision_ids,
                self.artwork_ids,
                self.propensity,
                self.explored,
                strict=True,
            )
        ]

    def page_json(self) -> bytes:
        """The ``POST /v1/decide`` response body (``DecideResponse``)."""
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "member_id": self.member_id,
                "generation": self.generation,
                "decisions": self.decisions(),
            }
        )

    def title_json(self) -> bytes:
        """The ``POST /v1/decide/title`` response body: the one decision, its request and generation."""
        return orjson.dumps(
            {**self.decisions()[0], "request_id": self.request_id, "generation": self.generation}
        )


def _has_pool(catalog: Catalog, title_id: str) -> bool:
    try:
        return bool(catalog.pool_ids(title_id))
    except EmptyPoolError:
        return False


class Engine:
    """What one worker process serves, and how it decides a page."""

    def __init__(self, config: ServiceConfig, metrics: Metrics, writer: SegmentWriter | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.writer = (
            writer
            if writer is not None
            else SegmentWriter(config.segments_dir, fsync=config.fsync, max_bytes=config.segment_max_bytes)
        )
        # the compiled kernels are loaded from numba's disk cache (compiled, the first time on a machine)
        # here, before the worker reports ready: no request waits on a compile
        log.info("kernels: %s", kernels.warm_up())
        self.executor = ModelThread()
        self.keys = PageKeys(config.exploration_seed())  # decision ids every worker recognises
        self._catalog_stamp = catalog_store.stamp(config.catalog_path)  # before reading: never newer
        self.view = self._load_catalog()
        self._side_view: tuple[Any, CatalogView] | None = None  # see _current_view
        self.generation: snapshots.Generation | None = None
        self.model_error: str | None = None
        self.follow_problem: str | None = None  # follow mode: why the newest shared model is not served
        self._snapshot_stamp: tuple[int, int] | None = None
        self.loaded_at = 0.0
        self.last_check = 0.0
        # the model thread's backlog: pages posted (loop thread) and finished (model thread), the moving
        # average of a page's model time (model thread), and when the thread last had nothing to do (either
        # thread), to shed, under saturation only, pages it could not finish in time (``overloaded``)
        self.posted = 0
        self.finished = 0
        self.page_seconds = 0.0
        self.idle_at = time.monotonic()

    # ---- loading ----------------------------------------------------------------------------------
    def _load_catalog(self) -> CatalogView:
        catalog, rev = catalog_store.load_catalog(self.config.catalog_path)
        return CatalogView(catalog, rev, Featurizer(catalog, self.config.feature_config))

    def set_catalog(self, catalog: Catalog, rev: int) -> None:
        """Serve ``catalog`` (revision ``rev``) from now on, unless a newer revision is already served."""
        if rev > self.view.rev:
            self.view = CatalogView(catalog, rev, Featurizer(catalog, self.config.feature_config))
            self._warm()

    def catalog_changed(self) -> bool:
        """Whether ``catalog.json`` was replaced since this worker last read it (one ``stat``)."""
        return catalog_store.stamp(self.config.catalog_path) != self._catalog_stamp

    def refresh_catalog(self, force: bool = False) -> None:
        """Reload the catalog when its file changed (call on the model thread).

        Called before every page, so a catalog change acknowledged by any worker is served by every
        worker from the next page on (read-your-writes): one ``stat`` per page, a reload per change.
        """
        cstamp = catalog_store.stamp(self.config.catalog_path)
        if force or cstamp != self._catalog_stamp:
            try:
                catalog, rev = catalog_store.load_catalog(self.config.catalog_path)
                self.set_catalog(catalog, rev)
                self._catalog_stamp = cstamp
            except (KeyartError, OSError, ValueError) as exc:
                log.error("catalog reload failed: %s", exc)

    def _set_follow_problem(self, reason: str | None) -> None:
        """Record why the newest shared generation is not served (a ``follow.REASONS`` entry, or None)
        on the engine and in its gauge."""
        self.follow_problem = reason
        for r in follow.REASONS:
            self.metrics.child(self.metrics.follow_problem, r).set(1 if r == reason else 0)

    def _shared_reachable(self) -> bool:
        """Follow mode, before a reload: whether the shared directory can be read. When it cannot, keep the
        generation held, say why (``model_error``, the gauge), and forget the pointer's stamp so the
        generation is read again as soon as the directory is back."""
        found = follow.shared_dir_problem(self.config.snapshots_dir)
        if found is None:
            return True
        reason, text = found
        held = self.generation
        self.model_error = text + ("" if held is None else f" (still serving generation {held.number})")
        self._snapshot_stamp = None
        self.metrics.model_ok.set(0 if held is None else 1)
        self._set_follow_problem(reason)
        return False

    def refresh(self, force: bool = False) -> None:
        """Reload the catalog and the model generation when their files changed (call on the model thread)."""
        self.last_check = time.monotonic()
        self.refresh_catalog(force)
        following = self.config.follow_dir is not None
        if following and not self._shared_reachable():  # the shared model: keep the one held
            return
        sstamp = snapshots.pointer_stamp(self.config.snapshots_dir)
        if not force and sstamp == self._snapshot_stamp:
            return
        self._snapshot_stamp = sstamp
        # verified before loading; a damaged or missing generation (or LATEST) is skipped for the newest
        # good one; a metadata-only generation keeps the policies this worker already holds
        found = snapshots.load_newest_good(self.config.snapshots_dir, reuse=self.generation)
        gen, held = found.generation, self.generation
        if following:  # damaged: a newer generation (or LATEST) was skipped; none_published: nothing served
            reason = "damaged" if found.skipped else None
            if gen is None and held is None and not found.skipped:
                reason = "none_published"
            self._set_follow_problem(reason)
        for problem in found.skipped:
            self.metrics.child(self.metrics.snapshot_skipped, "worker").inc()
            log.error("model generation not loaded: %s", problem)
        if gen is None or (held is not None and gen.number <= held.number):  # nothing newer that is good
            problem = "; ".join(found.skipped) if found.skipped else None
            if held is None:
                self.model_error = problem or "no snapshot published yet"
            elif problem is not None:
                self.model_error = f"{problem} (still serving generation {held.number})"
            elif gen is not None:
                self.model_error = None
            self.metrics.model_ok.set(0 if held is None else 1)
            return
        if held is None or gen.primary is not held.primary:
            self._warm(gen)
        self.generation, self.loaded_at = gen, time.time()
        self.model_error = (
            None if not found.skipped else "; ".join(found.skipped) + f" (serving generation {gen.number})"
        )
        self.metrics.generation.set(gen.number)
        self.metrics.model_ok.set(1)

    def _warm(self, gen: snapshots.Generation | None = None) -> None:
        """Run one tiny decision so the first real request does not pay for caches and solves."""
        gen = gen or self.generation
        view = self.view
        if gen is None:
            return
        catalog = view.catalog
        tids = []  # one title (a title request's path) and a page of up to 40 (a page's: the basis)
        for t in catalog.active_title_ids():
            if _has_pool(catalog, t):
                tids.append(t)
                if len(tids) == WARM_TITLES:
                    break
        if not tids:  # nothing to warm with (e.g. titles created before their artworks): not a failure
            log.info("model warm-up skipped: no title has an active artwork yet")
            return
        try:
            for policy in (gen.primary, gen.shadow):
                if policy is not None:
                    featurizer = view.featurizer_for(self.config.features_for(policy))
                    for titles in (tids[:1], tids):
                        policy.choose(featurizer.page(MemberContext("warmup"), titles, "warmup"))
        except Exception as exc:  # warming is best effort; the hot path has its own fallbacks
            log.warning("model warm-up failed: %s: %s", type(exc).__name__, exc)
            log.debug("model warm-up failure", exc_info=True)

    # ---- the hot path -----------------------------------------------------------------------------
    def pools(self, view: CatalogView, title_ids: list[str]) -> list[tuple[str, ...]]:
        """Each title's current pool; a 422 naming the first unknown or artless title."""
        cache = view.pool_cache
        version = view.catalog.version
        if view.pool_cache_version[0] != version:
            cache.clear()
            view.pool_cache_version[0] = version
        try:
            return [cache[t] for t in title_ids]
        except KeyError:
            pass
        catalog = view.catalog
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
            cache[t] = pool
            out.append(pool)
        return out

    def decide(
        self, req: PageRequest, job: Job | None = None, reason: str | None = None
    ) -> PageResult | None:
        """Decide a page; log it to the segment; return the result (None if the job was given up).

        ``reason`` forces the fallback (the model ran out of time, or was too busy to start in time).
        Raises ``RequestError`` for a title that cannot be shown at all and ``EventLogError`` when the
        page cannot be logged (it is then not acknowledged); never raises for a model problem. A page
        whose request gave up before the model thread reached it costs nothing.
        """
        if job is not None and job.cancelled:  # its request already answered defaults: no work, no log
            return None
        if job is not None:  # on the model thread: serve every catalog change already acknowledged
            self.refresh_catalog()
            view = self.view
        else:  # answered on the event loop (timeout, overload): read a changed catalog without keeping it
            view = self._current_view()
        gen = self.generation
        ctx = req.context
        title_ids = req.title_ids
        # decision ids come from a key made here, never from the client's request id: a reused request id
        # must not give two pages the same decision ids (the client's id stays as the correlation id)
        key = self.keys.new()
        rid = req.request_id or key
        pools = self.pools(view, title_ids)
        if reason is None and gen is None:
            reason = "no_model"
        if reason is None and not req.known and not self.config.personalize_unknown_members:
            reason = "unknown_member"
        n = len(title_ids)
        shadow: dict[str, Any] | None = None
        if reason is None:
            assert gen is not None
            t0 = time.perf_counter()
            try:
                features = self.config.features_for(gen.primary)
                batch = view.featurizer_for(features).page(ctx, title_ids, key)
                db = gen.primary.choose(batch)
                probs = db.probabilities
                index = np.ascontiguousarray(db.index, dtype=np.int64)
                explored_arr = np.asarray(db.explored, dtype=np.bool_)
                explored = explored_arr.tolist()
                n_explored = int(np.count_nonzero(explored_arr))
                propensity = np.asarray(db.propensity, dtype=np.float64).tolist()
                artwork_ids = np.asarray(db.artwork_ids).tolist()
                dids = list(db.decision_ids)
                policy, version = db.policy, int(db.model_version)
            except UnknownIdError as exc:
                reason = "pool_changed"
                log.warning("pool changed since training: %s", exc)
            except Exception as exc:
                reason = "model_error"
                log.exception("model error, answering defaults: %s", exc)
            else:
                if gen.shadow is not None:
                    shadow = self._shadow(gen, view, batch, ctx, key, title_ids)
            if job is not None:
                dt = time.perf_counter() - t0
                # a slow average: one page stalled by the OS scheduler must not look like a backlog
                self.page_seconds = (
                    dt if self.page_seconds == 0.0 else self.page_seconds + (dt - self.page_seconds) / 16
                )
        if reason is not None:
            index_list = default_artworks(view.catalog, title_ids, pools, gen.defaults if gen else {})
            index = np.asarray(index_list, dtype=np.int64)
            k = max(len(p) for p in pools)
            probs = np.zeros((n, k))
            probs[np.arange(n), index] = 1.0
            explored = [False] * n
            n_explored = 0
            propensity = [1.0] * n
            artwork_ids = [p[j] for p, j in zip(pools, index_list, strict=True)]
            dids = decision_ids(key, n)
            policy, version = DEFAULT_POLICY, 0 if gen is None else gen.number
        record = page_record(
            request_id=rid,
            timestamp=ctx.timestamp,
            member_id=req.member_id,
            page=req.page,
            context_json=context_json(ctx),
            policy=policy,
            model_version=version,
            fallback=reason is not None,
            title_ids=title_ids,
            decision_ids=dids,
            pools=pools,
            probabilities=probs,
            index=index,
            explored=explored,
            shadow=shadow,
        )
        if job is not None:
            with job.lock:
                if job.cancelled:
                    return None
                job.committed = True
        try:
            self.writer.append(record)  # before the response: an acknowledged decision is never lost
        except OSError as exc:
            log.error("a page could not be logged (not acknowledged): %s", exc)
            raise EventLogError(f"the decisions could not be logged: {exc}") from exc
        self.metrics.count_page(policy, n, n_explored, reason, None if shadow is None else shadow["policy"])
        return PageResult(
            rid,
            req.member_id,
            -1 if gen is None else gen.number,
            title_ids,
            dids,
            artwork_ids,
            propensity,
            explored,
            policy,
            version,
            reason,
        )

    def _current_view(self) -> CatalogView:
        """The served catalog, or (when the file changed since) a view of the new one, not kept: the
        model thread owns ``self.view``; this is for defaults answered off it."""
        view = self.view
        cstamp = catalog_store.stamp(self.config.catalog_path)
        if cstamp == self._catalog_stamp:
            return view
        side = self._side_view  # made once per change (the event loop's thread only)
        if side is None or side[0] != cstamp:
            try:
                catalog, rev = catalog_store.load_catalog(self.config.catalog_path)
            except (KeyartError, OSError, ValueError):
                return view
            side = self._side_view = (
                cstamp,
                CatalogView(catalog, rev, Featurizer(catalog, self.config.feature_config)),
            )
        return side[1] if side[1].rev > view.rev else view

    def decide_posted(self, req: PageRequest, job: Job) -> PageResult | None:
        """``decide`` on the model thread for a page a request posted (and waits for, see ``Job``)."""
        try:
            return self.decide(req, job)
        finally:
            self.finished += 1
            if self.finished == self.posted:
                self.idle_at = time.monotonic()

    def post(self, req: PageRequest, job: Job) -> None:
        """Loop thread: queue a page for the model thread (``decide_posted``; ``job.finish`` answers)."""
        if self.posted == self.finished:
            self.idle_at = time.monotonic()  # the thread was idle until now
        self.posted += 1
        self.executor.post(self.decide_posted, (req, job), job.finish)

    def backlog_seconds(self) -> float:
        """Roughly how long a page posted now would wait for the model thread (0 when it is idle)."""
        return (self.posted - self.finished) * self.page_seconds

    def overloaded(self, budget: float) -> bool:
        """Loop thread: whether a page posted now should be answered with defaults at once. Only under
        saturation, when the model thread has worked without a pause for ``SATURATED_BUDGETS`` budgets
        (below it a queue is a burst that drains, never a reason to shed), and then when the pages
        already queued would take the whole budget (the page would only time out waiting)."""
        if self.posted == self.finished:
            return False
        busy = time.monotonic() - self.idle_at
        return busy >= SATURATED_BUDGETS * budget and self.backlog_seconds() >= budget

    def _shadow(
        self,
        gen: snapshots.Generation,
        view: CatalogView,
        batch: Any,
        ctx: MemberContext,
        key: str,
        title_ids: list[str],
    ) -> dict[str, Any] | None:
        """What the shadow policy would have chosen, with its propensities (logged, never served); the
        primary's ``batch`` unless the shadow's model was featurized otherwise (a challenger with other
        crosses or vocabularies)."""
        assert gen.shadow is not None
        try:
            features = self.config.features_for(gen.shadow)
            if features is not self.config.features_for(gen.primary):
                batch = view.featurizer_for(features).page(ctx, title_ids, key)
            sdb = gen.shadow.choose(batch)
            return shadow_record(
                policy=sdb.policy,
                model_version=int(sdb.model_version),
                decision_ids=decision_ids(key, len(title_ids), SHADOW_SALT),
                probabilities=sdb.probabilities,
                index=np.ascontiguousarray(sdb.index, dtype=np.int64),
                explored=np.ascontiguousarray(sdb.explored, dtype=np.bool_),
            )
        except Exception as exc:
            log.warning("shadow policy failed: %s", exc)
            return None

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.writer.close()
