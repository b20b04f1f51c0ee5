"""A seeded synthetic world: catalog, members with hidden tastes, and the ground truth of quality plays.

The world plays the members. Policies only ever see what a real service sees (the ``Catalog`` and a
``MemberContext`` per page); the tastes that generate the outcomes stay inside ``World``. Everything is
numpy-vectorized over events so closed-loop runs of hundreds of thousands of decisions are cheap, and
every random source is a ``numpy.random.Generator`` derived from ``WorldConfig.seed``.

How the world is drawn lives in ``keyart.simulation.generation``, its records (``Requests``, ``Events``,
``Outcomes``) in ``keyart.simulation.records``; this module holds the ``World`` itself: its hidden truth
and what it shows services. Every name is also importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keyart.catalog import Catalog
from keyart.context import SECONDS_PER_DAY, MemberContext
from keyart.errors import UnknownIdError, ValidationError
from keyart.simulation.config import COUNTRIES, DEVICES, HOUR_BUCKETS, RECOMMENDER_EDGES, WorldConfig
from keyart.simulation.generation import SHOWCASE_TITLE_ID, WorldGeneration, cast_names
from keyart.simulation.records import Events, Outcomes, Requests

__all__ = ["SHOWCASE_TITLE_ID", "Events", "Outcomes", "Requests", "World", "cast_names"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class World(WorldGeneration):
    """A simulated catalog and member population with a known ground truth.

    ``world.catalog`` is what services see; new titles and artworks (cold start) enter it when
    ``advance_to`` passes their arrival time. ``expected(events)`` is P(quality play) for every
    candidate, ``oracle(events)`` the best candidate, ``draw(events, chosen, rng)`` the outcomes.
    """

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config if config is not None else WorldConfig()
        if not isinstance(self.config, WorldConfig):
            raise ValidationError(f"config must be a WorldConfig. Got {type(config).__name__}.")
        # the runner keeps request blocks here when a dict is set (several agents on one stream)
        self.block_cache: dict[tuple[object, ...], object] | None = None
        # one generator per part: the launch world (catalog, members, histories) draws nothing from the
        # drift and arrival generators, so turning drift or cold start on leaves it exactly as it was
        root = np.random.SeedSequence([self.config.seed, 0x6B657961])
        # (the sixth, for the zoo's tags and crosses, draws nothing when they are off; spawn keys of the
        # first five are those of ``spawn(5)``)
        s_catalog, s_members, s_history, s_drift, s_arrivals, s_extras = root.spawn(6)
        extras = np.random.default_rng(s_extras)
        self._build_catalog(np.random.default_rng(s_catalog), np.random.default_rng(s_arrivals), extras)
        self._build_members(np.random.default_rng(s_members), np.random.default_rng(s_drift))
        self._build_histories(np.random.default_rng(s_history))
        self._build_crosses(extras)
        self.reset()

    def reset(self) -> None:
        """Back to the start: the clock at ``start_time`` and a fresh catalog of the launch titles.

        The hidden truth and the members do not change; runs that start from ``reset`` are comparable.
        """
        self.now = self.config.start_time
        self.catalog = Catalog(
            [self._titles[i] for i in np.flatnonzero(self.title_arrival <= self.now)],
            [self._artworks[i] for i in np.flatnonzero(self.art_arrival <= self.now)],
        )
        self._in_catalog_titles = self.title_arrival <= self.now
        self._in_catalog_arts = self.art_arrival <= self.now
        self._pool_key: tuple[int, int] | None = None
        self._pools: dict[int, np.ndarray] = {}

    # ---- hidden truth -------------------------------------------------------------------------
    def genre_taste_at(self, member: np.ndarray, timestamp: np.ndarray | None) -> np.ndarray:
        """Members' genre tastes at given times (they rotate toward a second taste when drift is on)."""
        base = self.genre_taste[member]
        if self.config.taste_drift_per_day <= 0 or timestamp is None:
            return base
        days = (
            np.maximum(np.asarray(timestamp, dtype=np.float64) - self.config.start_time, 0.0)
            / SECONDS_PER_DAY
        )
        theta = np.minimum(self.config.taste_drift_per_day * days, np.pi / 2)[:, None]
        return np.cos(theta) * base + np.sin(theta) * self.genre_taste_drift[member]

    def title_affinity(self, member: np.ndarray, timestamp: np.ndarray | None) -> np.ndarray:
        """(n, n_titles) how much each member likes each title (genre and cast taste, hidden)."""
        g = self.genre_taste_at(member, timestamp)
        return g @ self.TG.T + self.cast_taste[member] @ self.TC.T

    def _parts(self, ev: Events) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        art = np.where(ev.artworks >= 0, ev.artworks, 0)
        g = self.genre_taste_at(ev.member, ev.timestamp)  # (n, G)
        theme = np.einsum("nkg,ng->nk", self.AG[art], g)
        ac = self.AC[art]  # (n, K, 2)
        cast = np.where(ac >= 0, self.cast_taste[ev.member[:, None, None], np.maximum(ac, 0)], 0.0).sum(-1)
        style = self.art_style[art]
        st = self.style_taste[ev.member[:, None], style] + self.device_style[ev.device[:, None], style]
        lang_penalty = (self.member_country[ev.member] != 0)[:, None] & (style == self._text_style)
        cb = self.art_clickbait[art]
        effect = (
            self.art_base[art]
            + c.theme_weight * theme
            + c.cast_weight * cast
            + st
            - c.text_language_penalty * lang_penalty
            + c.clickbait_play_boost * cb
        )
        if self.cross_tables:
            effect = effect + self._cross_effects(ev, art)
        extra = self._artwork_extra(ev, art)
        if extra is not None:
            effect = effect + extra
        effect = np.where(ev.interacted[:, None], c.known_title_damping * effect, effect)
        title_aff = (g * self.TG[ev.title]).sum(1) + (self.cast_taste[ev.member] * self.TC[ev.title]).sum(1)
        p_play = _sigmoid(
            c.play_intercept
            + self.title_pop[ev.title][:, None]
            + c.title_affinity_weight * title_aff[:, None]
            + effect
        )
        p_quality = _sigmoid(
            c.quality_intercept
            + c.quality_title_weight * title_aff[:, None]
            + c.quality_theme_weight * theme
            - c.clickbait_quality_penalty * cb
        )
        mask = ev.artworks >= 0
        return np.where(mask, p_play, 0.0), np.where(mask, p_quality, 0.0), mask

    def _artwork_extra(self, ev: Events, art: np.ndarray) -> np.ndarray | None:
        """(n, K) more of the artwork effect for a subclass's own hidden attributes (an image world's
        visual taste, ``keyart.simulation.images``); None here."""
        del ev, art
        return None

    def _cross_effects(self, ev: Events, art: np.ndarray) -> np.ndarray:
        """(n, K) the generic hidden crosses' effects (``WorldConfig.crosses``; the zoo's worlds)."""
        total = np.zeros(art.shape)
        rows = np.arange(ev.n)[:, None]
        for ctx, fam, table in self.cross_tables:
            if ctx == "genre":
                r = self.genre_share[ev.member] @ table  # (n, artwork values)
            else:
                r = table[self._context_index(ctx, ev)]
            if fam == "theme":
                total += np.einsum("nkg,ng->nk", self.AG[art], r)
            elif fam == "style":
                total += r[rows, self.art_style[art]]
            elif fam == "tag":
                total += np.einsum("nkt,nt->nk", self.art_tags[art].astype(np.float64), r)
            else:  # cast_count
                total += r[rows, self.art_cast_count[art]]
        return total

    def _context_index(self, family: str, ev: Events) -> np.ndarray:
        """(n,) the value index of an observable context family for every event (what the truth uses)."""
        if family == "device":
            return ev.device
        if family == "country":
            return self.member_country[ev.member]
        if family == "hour":
            seconds = np.mod(ev.timestamp, SECONDS_PER_DAY)
            return np.minimum((seconds * HOUR_BUCKETS // SECONDS_PER_DAY).astype(np.int64), HOUR_BUCKETS - 1)
        if family == "weekday":  # Monday = 0 (1970-01-01 was a Thursday)
            return ((np.floor_divide(ev.timestamp, SECONDS_PER_DAY).astype(np.int64) + 3) % 7).astype(
                np.int64
            )
        if family == "prior":
            return ev.interacted.astype(np.int64)
        if family == "recommender":
            if ev.recommender is None:
                raise ValidationError(
                    "This world has a recommender cross: its events need recommender scores."
                )
            return np.digitize(ev.recommender, RECOMMENDER_EDGES)
        raise ValidationError(f"Unknown context family {family!r}.")

    def probabilities(self, events: Events) -> tuple[np.ndarray, np.ndarray]:
        """(P(play), P(quality play | play)) for every candidate, (n, K) each, 0 on padding."""
        p_play, p_q, _ = self._parts(events)
        return p_play, p_q

    def expected(self, events: Events) -> np.ndarray:
        """(n, K) expected reward (P(quality play)) of every candidate; 0 on padding."""
        p_play, p_q, _ = self._parts(events)
        return p_play * p_q

    def oracle(self, events: Events) -> tuple[np.ndarray, np.ndarray]:
        """The best candidate per event under the hidden truth: (index (n,), expected reward (n,))."""
        q = np.where(events.mask, self.expected(events), -1.0)
        best = q.argmax(1)
        return best, q[np.arange(events.n), best]

    def value(self, events: Events, probabilities: np.ndarray) -> np.ndarray:
        """(n,) expected reward of a stochastic choice given as (n, K) probabilities."""
        return (self.expected(events) * probabilities).sum(1)

    def draw(
        self,
        events: Events,
        chosen: np.ndarray,
        rng: np.random.Generator | None = None,
        *,
        uniforms: np.ndarray | None = None,
    ) -> Outcomes:
        """Outcomes of showing ``chosen`` (n,) candidates, drawn from the hidden truth.

        Two uniforms per event decide the play and the quality play whatever was chosen (common random
        numbers), so different policies facing the same events and uniforms see the same luck. Give either
        ``rng`` (the uniforms are drawn from it) or ``uniforms`` ((n, 2), e.g. a runner window's).
        """
        if (rng is None) == (uniforms is None):
            raise ValidationError("draw needs exactly one of rng and uniforms.")
        u = rng.random((events.n, 2)) if rng is not None else np.asarray(uniforms, dtype=np.float64)
        if u.shape != (events.n, 2):
            raise ValidationError(f"uniforms must have shape ({events.n}, 2). Got {u.shape}.")
        p_play, p_q = self.probabilities(events)
        rows = np.arange(events.n)
        pp, pq = p_play[rows, chosen], p_q[rows, chosen]
        play = u[:, 0] < pp
        quality = play & (u[:, 1] < pq)
        return Outcomes(play, quality, pp, pp * pq)

    # ---- requests and what services see -------------------------------------------------------
    def advance_to(self, timestamp: float) -> list[str]:
        """Move the clock; titles and artworks whose arrival time has passed enter the catalog.

        Returns the ids of the artworks that just arrived (cold start).
        """
        self.now = max(self.now, float(timestamp))
        new_t = (self.title_arrival <= self.now) & ~self._in_catalog_titles
        new_a = (self.art_arrival <= self.now) & ~self._in_catalog_arts
        if new_t.any():
            self.catalog.add_titles([self._titles[i] for i in np.flatnonzero(new_t)])
            self._in_catalog_titles |= new_t
        if new_a.any():
            self.catalog.add_artworks([self._artworks[i] for i in np.flatnonzero(new_a)])
            self._in_catalog_arts |= new_a
        return [self.artwork_ids[i] for i in np.flatnonzero(new_a)]

    def arrivals_due(self, timestamp: float) -> bool:
        """Whether ``advance_to(timestamp)`` would add titles or artworks to the catalog."""
        return bool(
            ((self.title_arrival <= timestamp) & ~self._in_catalog_titles).any()
            or ((self.art_arrival <= timestamp) & ~self._in_catalog_arts).any()
        )

    def sample_requests(self, n: int, rng: np.random.Generator, start: float | None = None) -> Requests:
        """``n`` page requests from ``start`` on: members by activity, a page of titles each.

        Pages lean toward titles the member likes (a recommender upstream of artwork choice) and toward
        titles the member already knows (continue watching), among the titles now in the catalog.
        """
        if not isinstance(n, int | np.integer) or n < 1:
            raise ValidationError(f"n must be a positive int. Got {n!r}.")
        c = self.config
        t0 = self.now if start is None else float(start)
        member = rng.choice(c.n_members, size=n, p=self.member_activity)
        timestamp = t0 + (np.arange(n) + rng.random(n)) * (SECONDS_PER_DAY / c.requests_per_day)
        other = rng.integers(0, len(DEVICES), n)
        device = np.where(rng.random(n) < c.primary_device_share, self.member_device[member], other)
        aff = self.title_affinity(member, timestamp)
        keys = (
            c.page_taste_sharpness * aff
            + self.title_pop[None, :]
            + c.page_interacted_boost * self.interacted[member]
            + rng.gumbel(size=aff.shape)
        )
        keys[:, ~self._in_catalog_titles] = -np.inf
        titles = np.argsort(-keys, axis=1)[:, : c.page_size]
        # the recommender only knows the observable history: genre overlap with past plays, plus noise
        hist = np.einsum("rg,rpg->rp", self.history_genres[member], self.TG[titles])
        rec = 4.0 * hist + rng.normal(0.0, c.recommender_noise, titles.shape)
        return Requests(member, device, timestamp, titles, rec)

    def interacted_set(self, member: int) -> frozenset[str]:
        s = self._interacted_sets.get(member)
        if s is None:
            s = frozenset(self.title_ids[t] for t in np.flatnonzero(self.interacted[member]))
            self._interacted_sets[member] = s
        return s

    def context(self, requests: Requests, i: int) -> MemberContext:
        """The observable ``MemberContext`` of request ``i``: never the member's hidden tastes."""
        m = int(requests.member[i])
        country, language = COUNTRIES[int(self.member_country[m])]
        return MemberContext(
            member_id=self.member_ids[m],
            played=self.member_plays[m],
            country=country,
            language=language,
            device=DEVICES[int(requests.device[i])],
            timestamp=float(requests.timestamp[i]),
            interacted_titles=self.interacted_set(m),
            recommender_scores={
                self.title_ids[int(t)]: float(s)
                for t, s in zip(requests.titles[i], requests.recommender[i], strict=True)
            },
        )

    def contexts(self, requests: Requests) -> list[MemberContext]:
        return [self.context(requests, i) for i in range(requests.n)]

    def pool_indices(self, title: int) -> np.ndarray:
        """World artwork indices of a title's current pool, in catalog order (cached per catalog version)."""
        key = (id(self.catalog), self.catalog.version)
        if self._pool_key != key:
            self._pool_key, self._pools = key, {}
        pool = self._pools.get(title)
        if pool is None:
            pool = np.asarray(
                [self.artwork_index[a.artwork_id] for a in self.catalog.pool(self.title_ids[title])]
            )
            self._pools[title] = pool
        return pool

    def events(self, requests: Requests) -> tuple[Events, list[list[str]]]:
        """Flatten requests into one event per (request, title), with pools in catalog order.

        Returns the events and the pools as artwork-id lists (what ``Featurizer.events`` takes).
        """
        r, p = requests.titles.shape
        titles = requests.titles.reshape(-1)
        pools = [self.pool_indices(int(t)) for t in titles]
        k = max(len(x) for x in pools)
        arts = np.full((r * p, k), -1, dtype=np.int64)
        for i, x in enumerate(pools):
            arts[i, : len(x)] = x
        member = np.repeat(requests.member, p)
        ev = Events(
            member=member,
            title=titles,
            artworks=arts,
            device=np.repeat(requests.device, p),
            timestamp=np.repeat(requests.timestamp, p),
            interacted=self.interacted[member, titles],
            recommender=requests.recommender.reshape(-1),
        )
        return ev, [[self.artwork_ids[a] for a in x] for x in pools]

    def events_from_ids(
        self, contexts: Sequence[MemberContext], title_ids: Sequence[str], artwork_ids: np.ndarray
    ) -> Events:
        """World events for arbitrary contexts and candidate columns (e.g. a ``CandidateBatch``'s)."""
        n = len(contexts)
        if len(title_ids) != n or artwork_ids.shape[0] != n:
            raise ValidationError(
                f"contexts, title_ids and artwork_ids must have the same length. "
                f"Got {n}, {len(title_ids)}, {artwork_ids.shape[0]}."
            )
        try:
            member = np.asarray([self.member_index[c.member_id] for c in contexts], dtype=np.int64)
            title = np.asarray([self.title_index[t] for t in title_ids], dtype=np.int64)
            arts = np.vectorize(lambda a: self.artwork_index[a] if a else -1, otypes=[np.int64])(artwork_ids)
        except KeyError as exc:
            raise UnknownIdError(f"Id not in this world: {exc.args[0]!r}.") from None
        return Events(
            member=member,
            title=title,
            artworks=arts.reshape(n, -1),
            device=np.asarray([DEVICES.index(c.device) for c in contexts], dtype=np.int64),
            timestamp=np.asarray([c.timestamp for c in contexts], dtype=np.float64),
            interacted=np.asarray(
                [t in c.interacted_titles for c, t in zip(contexts, title_ids, strict=True)]
            ),
            recommender=np.asarray(
                [c.recommender_scores.get(t, 0.0) for c, t in zip(contexts, title_ids, strict=True)],
                dtype=np.float64,
            ),
        )

    def favorite_genre(self) -> np.ndarray:
        """(n_members,) index of each member's strongest genre taste (hidden; for experiments only)."""
        return self.genre_taste.argmax(1)

    def __repr__(self) -> str:
        return (
            f"World(seed={self.config.seed}, {len(self.title_ids)} titles, {len(self.artwork_ids)} artworks, "
            f"{self.config.n_members} members)"
        )
