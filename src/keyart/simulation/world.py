"""A seeded synthetic world: catalog, members with hidden tastes, and the ground truth of quality plays.

The world plays the members. Policies only ever see what a real service sees (the ``Catalog`` and a
``MemberContext`` per page); the tastes that generate the outcomes stay inside ``World``. Everything is
numpy-vectorized over events so closed-loop runs of hundreds of thousands of decisions are cheap, and
every random source is a ``numpy.random.Generator`` derived from ``WorldConfig.seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from keyart.catalog import Artwork, Catalog, Title
from keyart.context import SECONDS_PER_DAY, MemberContext, Play
from keyart.errors import UnknownIdError, ValidationError
from keyart.simulation.config import COUNTRIES, DEVICES, GENRES, STYLES, WorldConfig

SHOWCASE_TITLE_ID = "t0000"
"""A comedy-romance-drama title with comedy-, romance- and drama-themed artworks (experiment 3)."""


def cast_names(n: int, buckets: int = 256) -> tuple[str, ...]:
    """``n`` cast names; while ``n <= buckets``, names whose default feature hash buckets all differ.

    The simulated cast is smaller than the default featurizer's cast hashing space, so names are picked
    to avoid collisions (the demo then measures learning, not hashing noise). Beyond ``buckets`` names,
    collisions are unavoidable and plain numbered names are used.
    """
    from keyart.features import stable_hash

    if n > buckets:
        return tuple(f"cast_{i:04d}" for i in range(n))
    out: list[str] = []
    used: set[int] = set()
    i = 0
    while len(out) < n:
        name = f"cast_{i:04d}"
        b = stable_hash(name, "cast") % buckets
        if b not in used:
            used.add(b)
            out.append(name)
        i += 1
    return tuple(out)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Events:
    """Decisions as the world sees them (hidden indices, not ids): one row per (member, title) decision.

    ``artworks`` is (n, K) world artwork indices aligned with the policy's candidate columns, -1 where
    padded. ``interacted`` says whether the member already knew the title.
    """

    member: np.ndarray  # (n,) int
    title: np.ndarray  # (n,) int
    artworks: np.ndarray  # (n, K) int, -1 = padding
    device: np.ndarray  # (n,) int
    timestamp: np.ndarray  # (n,) float
    interacted: np.ndarray  # (n,) bool

    @property
    def n(self) -> int:
        return int(self.member.shape[0])

    @property
    def mask(self) -> np.ndarray:
        return self.artworks >= 0

    def take(self, index: np.ndarray | slice) -> Events:
        """The events at ``index`` (rows)."""
        return Events(
            self.member[index],
            self.title[index],
            self.artworks[index],
            self.device[index],
            self.timestamp[index],
            self.interacted[index],
        )

    @staticmethod
    def concat(parts: Sequence[Events]) -> Events:
        """Events stacked row-wise, padded to the largest pool."""
        if len(parts) == 1:
            return parts[0]
        k = max(p.artworks.shape[1] for p in parts)
        arts = [np.pad(p.artworks, ((0, 0), (0, k - p.artworks.shape[1])), constant_values=-1) for p in parts]
        return Events(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("member", "title")),
            np.concatenate(arts),
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("device", "timestamp", "interacted")),
        )


@dataclass(frozen=True)
class Requests:
    """A block of page requests: who asks, when, on which device, for which titles (world indices)."""

    member: np.ndarray  # (r,) int
    device: np.ndarray  # (r,) int
    timestamp: np.ndarray  # (r,) float
    titles: np.ndarray  # (r, page_size) int
    recommender: np.ndarray  # (r, page_size) float: the recommender's title scores (from history only)

    @property
    def n(self) -> int:
        return int(self.member.shape[0])

    def take(self, index: np.ndarray | slice) -> Requests:
        """The requests at ``index`` (rows)."""
        return Requests(
            self.member[index],
            self.device[index],
            self.timestamp[index],
            self.titles[index],
            self.recommender[index],
        )

    @staticmethod
    def concat(parts: Sequence[Requests]) -> Requests:
        """Requests stacked row-wise."""
        if len(parts) == 1:
            return parts[0]
        return Requests(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("member", "device", "timestamp", "titles", "recommender")
            )
        )


@dataclass(frozen=True)
class Outcomes:
    """Drawn outcomes of shown artworks, plus their expected values under the hidden truth."""

    play: np.ndarray  # (n,) bool
    quality: np.ndarray  # (n,) bool (quality play; implies play)
    p_play: np.ndarray  # (n,) float
    expected: np.ndarray  # (n,) float: P(quality play) of the shown artwork


@dataclass
class _ArtworkDraws:
    """Generated artworks (hidden attributes included), one entry per artwork, before they get ids."""

    titles: list[int]
    themes: list[np.ndarray]
    casts: list[list[int]]
    styles: list[int]
    base: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clickbait: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def title(self) -> np.ndarray:
        return np.asarray(self.titles, dtype=np.int64)

    @property
    def style(self) -> np.ndarray:
        return np.asarray(self.styles, dtype=np.int64)


class World:
    """A simulated catalog and member population with a known ground truth.

    ``world.catalog`` is what services see; new titles and artworks (cold start) enter it when
    ``advance_to`` passes their arrival time. ``expected(events)`` is P(quality play) for every
    candidate, ``oracle(events)`` the best candidate, ``draw(events, chosen, rng)`` the outcomes.
    """

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config if config is not None else WorldConfig()
        if not isinstance(self.config, WorldConfig):
            raise ValidationError(f"config must be a WorldConfig. Got {type(config).__name__}.")
        # one generator per part: the launch world (catalog, members, histories) draws nothing from the
        # drift and arrival generators, so turning drift or cold start on leaves it exactly as it was
        root = np.random.SeedSequence([self.config.seed, 0x6B657961])
        s_catalog, s_members, s_history, s_drift, s_arrivals = root.spawn(5)
        self._build_catalog(np.random.default_rng(s_catalog), np.random.default_rng(s_arrivals))
        self._build_members(np.random.default_rng(s_members), np.random.default_rng(s_drift))
        self._build_histories(np.random.default_rng(s_history))
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

    # ---- generation ---------------------------------------------------------------------------
    def _build_catalog(self, rng: np.random.Generator, arrivals: np.random.Generator) -> None:
        """The launch catalog from ``rng``; the titles and artworks arriving later from ``arrivals``.

        The launch titles and artworks draw nothing from ``arrivals``, so turning cold start on or off
        leaves the launch world exactly as it was.
        """
        c = self.config
        self.genres = GENRES[: c.n_genres]
        self.styles = STYLES
        self.devices = DEVICES
        self.cast_names = cast_names(c.n_cast)
        G, C, S = c.n_genres, c.n_cast, len(STYLES)
        genre_pop = rng.dirichlet(np.full(G, 3.0))
        cast_pop = 1.0 / np.arange(1, C + 1) ** 0.6
        cast_pop = rng.permutation(cast_pop / cast_pop.sum())
        self.genre_popularity = genre_pop
        T0 = c.n_titles
        n_titles = T0 + c.n_new_titles

        # launch titles, their pools and hidden attributes (catalog generator only)
        title_genres, title_cast = self._draw_titles(rng, 0, T0, genre_pop, cast_pop)
        title_pop = rng.normal(0.0, c.title_popularity_sd, T0)
        if T0 > 1:  # the showcase is a popular title (enough traffic to learn its artworks)
            title_pop[0] = title_pop.max() + c.title_popularity_sd
        launch = self._draw_pools(rng, title_genres, title_cast, 0)
        runtime = [float(rng.integers(80, 150)) for _ in range(T0)]
        # device x style is a pure interaction (each style averages zero over devices): which style works
        # depends on the device, and no style is better for everyone
        ds = rng.normal(0.0, c.device_style_sd, (len(DEVICES), S))
        self.device_style = ds - ds.mean(0, keepdims=True)
        self._text_style = STYLES.index("text-heavy")

        # arrivals (cold start): new titles with their pools, then new artworks on launch titles
        new_genres, new_cast = self._draw_titles(arrivals, T0, n_titles, genre_pop, cast_pop)
        title_genres += new_genres
        title_cast += new_cast
        title_pop = np.concatenate([title_pop, arrivals.normal(0.0, c.title_popularity_sd, c.n_new_titles)])
        new_pools = self._draw_pools(arrivals, new_genres, new_cast, T0)
        runtime += [float(arrivals.integers(80, 150)) for _ in range(c.n_new_titles)]
        extra = self._draw_extra_artworks(arrivals, launch, title_genres, title_cast)

        self.title_genre_lists = title_genres
        self.title_cast_lists = title_cast
        TG = np.zeros((n_titles, G))
        TC = np.zeros((n_titles, C))
        for t in range(n_titles):
            TG[t, title_genres[t]] = 1.0 / len(title_genres[t])
            if len(title_cast[t]):
                TC[t, title_cast[t]] = 1.0 / len(title_cast[t])
        self.TG, self.TC = TG, TC
        self.title_pop = title_pop
        day = SECONDS_PER_DAY
        arrival_time = c.start_time + c.arrival_day * day
        self.title_arrival = np.full(n_titles, -np.inf)
        self.title_arrival[T0:] = arrival_time
        self.title_ids = tuple(f"t{t:04d}" for t in range(n_titles))

        # artworks: launch ones first, then the new titles' pools, then the new artworks of launch titles
        parts = (launch, new_pools, extra)
        self.art_title = np.concatenate([p.title for p in parts])
        self.art_style = np.concatenate([p.style for p in parts])
        self.art_base = np.concatenate([p.base for p in parts])
        self.art_clickbait = np.concatenate([p.clickbait for p in parts])
        self.art_clickbait[self.art_title == 0] = False  # the showcase's themed artworks stay honest
        themes = [x for p in parts for x in p.themes]
        casts = [x for p in parts for x in p.casts]
        A = len(themes)
        AG = np.zeros((A, G))
        AC = np.full((A, 2), -1, dtype=np.int64)
        for a in range(A):
            AG[a, themes[a]] = 1.0 / len(themes[a])
            AC[a, : len(casts[a])] = casts[a]
        self.AG, self.AC = AG, AC
        # mid-run arrivals: new titles' pools arrive with them, plus new artworks on launch titles
        self.art_arrival = self.title_arrival[self.art_title].copy()
        start = A - len(extra.themes)
        self.art_arrival[start:] = arrival_time
        self.art_arrival_extra = np.arange(start, A)
        # artwork ids: per title, numbered in order of creation
        counters = np.zeros(n_titles, dtype=np.int64)
        ids = []
        for a in range(A):
            t = int(self.art_title[a])
            ids.append(f"{self.title_ids[t]}-a{counters[t]:02d}")
            counters[t] += 1
        self.artwork_ids = tuple(ids)
        self.artwork_index = {aid: i for i, aid in enumerate(self.artwork_ids)}
        self.title_index = {tid: i for i, tid in enumerate(self.title_ids)}
        self._titles = [
            Title(
                title_id=self.title_ids[t],
                name="The Long Weekend" if t == 0 else f"Title {t}",
                genres=tuple(self.genres[g] for g in title_genres[t]),
                cast=tuple(self.cast_names[x] for x in title_cast[t]),
                runtime_minutes=runtime[t],
                default_artwork_id=f"{self.title_ids[t]}-a00",
            )
            for t in range(n_titles)
        ]
        self._artworks = [
            Artwork(
                artwork_id=self.artwork_ids[a],
                title_id=self.title_ids[int(self.art_title[a])],
                theme_genres=tuple(self.genres[g] for g in np.flatnonzero(self.AG[a])),
                featured_cast=tuple(self.cast_names[x] for x in self.AC[a] if x >= 0),
                style=STYLES[int(self.art_style[a])],
            )
            for a in range(A)
        ]

    def _draw_titles(
        self, rng: np.random.Generator, first: int, stop: int, genre_pop: np.ndarray, cast_pop: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Genres and cast of titles ``first .. stop - 1`` (title 0 is the showcase)."""
        c = self.config
        G, C = c.n_genres, c.n_cast
        title_genres: list[np.ndarray] = []
        title_cast: list[np.ndarray] = []
        for t in range(first, stop):
            k = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
            gs = rng.choice(G, size=min(k, G), replace=False, p=genre_pop)
            if t == 0 and G >= 3:  # the showcase title of experiment 3
                gs = np.array([0, 1, 2])
            kc = int(rng.integers(c.min_title_cast, c.max_title_cast + 1))
            title_cast.append(rng.choice(C, size=min(kc, C), replace=False, p=cast_pop))
            title_genres.append(np.asarray(gs, dtype=np.int64))
        return title_genres, title_cast

    def _draw_pools(
        self,
        rng: np.random.Generator,
        title_genres: list[np.ndarray],
        title_cast: list[np.ndarray],
        first: int,
    ) -> _ArtworkDraws:
        """The artwork pools of titles ``first, first + 1, ...`` (genres and cast given per title)."""
        c = self.config
        G, S = c.n_genres, len(STYLES)
        out = _ArtworkDraws([], [], [], [])
        for i, (gl, cl) in enumerate(zip(title_genres, title_cast, strict=True)):
            t = first + i
            extra = (
                rng.negative_binomial(1.2, 1.2 / (1.2 + c.mean_extra_pool)) if c.mean_extra_pool > 0 else 0
            )
            size = int(np.clip(c.min_pool + extra, c.min_pool, c.max_pool))
            if t == 0:
                size = max(size, min(6, c.max_pool))
            for j in range(size):
                if t == 0 and j < 3 and G >= 3:
                    theme = np.array([j])  # comedy, romance, drama
                elif len(gl) > 1 and rng.random() < 0.15:
                    theme = rng.choice(gl, size=2, replace=False)
                else:
                    theme = np.array([rng.choice(gl)])
                n_feat = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2]))
                out.titles.append(t)
                out.themes.append(theme)
                out.casts.append([int(x) for x in rng.choice(cl, size=min(n_feat, len(cl)), replace=False)])
                out.styles.append(int(rng.integers(S)))
        n = len(out.titles)
        out.base = rng.normal(0.0, c.base_appeal_sd, n)
        out.clickbait = rng.random(n) < c.clickbait_fraction
        return out

    def _draw_extra_artworks(
        self,
        rng: np.random.Generator,
        launch: _ArtworkDraws,
        title_genres: list[np.ndarray],
        title_cast: list[np.ndarray],
    ) -> _ArtworkDraws:
        """New artworks on launch titles (cold start): at most one per title with room, never clickbait."""
        c = self.config
        out = _ArtworkDraws([], [], [], [])
        if c.n_new_artworks:
            sizes = np.bincount(np.asarray(launch.titles, dtype=np.int64), minlength=c.n_titles)
            room = np.flatnonzero(sizes < c.max_pool)
            room = room[room != 0]
            for t in rng.choice(room, size=min(c.n_new_artworks, room.size), replace=False).tolist():
                out.titles.append(int(t))
                out.themes.append(np.array([rng.choice(title_genres[t])]))
                cl = title_cast[t]
                n_feat = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2]))
                out.casts.append([int(x) for x in rng.choice(cl, size=min(n_feat, len(cl)), replace=False)])
                out.styles.append(int(rng.integers(len(STYLES))))
        out.base = rng.normal(0.0, c.base_appeal_sd, len(out.titles))
        out.clickbait = np.zeros(len(out.titles), dtype=bool)
        return out

    def _build_members(self, rng: np.random.Generator, drift: np.random.Generator) -> None:
        """Members' hidden tastes and observable profile from ``rng``; the drift tastes from ``drift``."""
        c = self.config
        G, C, S, M = c.n_genres, c.n_cast, len(STYLES), c.n_members
        self.member_ids = tuple(f"m{m:06d}" for m in range(M))
        self.member_index = {mid: i for i, mid in enumerate(self.member_ids)}

        alpha = c.genre_concentration * G * self.genre_popularity

        def genre_tastes(g: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            share = g.dirichlet(alpha, size=M)
            taste = c.genre_taste_scale * (share - 1.0 / G) + g.normal(0.0, c.genre_taste_noise, (M, G))
            return share, taste

        self.genre_share, self.genre_taste = genre_tastes(rng)
        self.genre_taste_drift = genre_tastes(drift)[1] if c.taste_drift_per_day > 0 else self.genre_taste
        ct = rng.normal(0.0, 0.05, (M, C))
        if c.liked_cast:
            cast_pop = self.TC[: c.n_titles].sum(0) + 1e-3
            keys = np.log(cast_pop / cast_pop.sum())[None, :] + rng.gumbel(size=(M, C))
            liked = np.argsort(-keys, axis=1)[:, : c.liked_cast]
            ct[np.arange(M)[:, None], liked] += c.liked_cast_weight
        self.cast_taste = ct
        self.style_taste = rng.normal(0.0, c.style_taste_noise, (M, S))
        self.member_country = rng.choice(len(COUNTRIES), size=M, p=[0.4, 0.15, 0.15, 0.1, 0.1, 0.1])
        self.member_device = rng.choice(len(DEVICES), size=M, p=[0.45, 0.3, 0.15, 0.1])
        self.member_activity = rng.lognormal(0.0, 0.6, M)
        self.member_activity /= self.member_activity.sum()

    def _build_histories(self, rng: np.random.Generator) -> None:
        """Play histories sampled from each member's tastes (so history reveals taste), before start."""
        c = self.config
        M, T0 = c.n_members, c.n_titles
        # a member plays titles in proportion to their genre distribution, boosted by liked cast in
        # them (so favorite actors show up in the history often enough to be discoverable)
        in_cast = (self.TC[:T0] > 0).astype(np.float64)
        weight = np.log(self.genre_share @ self.TG[:T0].T + 1e-3)
        weight += c.history_cast_weight * (self.cast_taste @ in_cast.T)
        n_hist = np.minimum(T0, c.min_history + rng.poisson(max(c.mean_history - c.min_history, 0.0), M))
        keys = weight + self.title_pop[None, :T0] + rng.gumbel(size=(M, T0))
        order = np.argsort(-keys, axis=1)
        self.interacted = np.zeros((M, len(self.title_ids)), dtype=bool)
        self.history_genres = np.zeros((M, c.n_genres))  # observable: genre shares of the play history
        plays: list[tuple[Play, ...]] = []
        day = SECONDS_PER_DAY
        for m in range(M):
            titles = order[m, : n_hist[m]]
            ages = np.sort(rng.uniform(1.0, 365.0, len(titles)))[::-1]
            secs = rng.gamma(2.0, 1500.0, len(titles))
            plays.append(
                tuple(
                    Play(self.title_ids[t], float(c.start_time - a * day), float(s))
                    for t, a, s in zip(titles, ages, secs, strict=True)
                )
            )
            self.interacted[m, titles] = True
            self.history_genres[m] = self.TG[titles].sum(0) / max(len(titles), 1)
        if c.browsed_titles:
            browsed = rng.integers(0, T0, (M, c.browsed_titles))
            self.interacted[np.arange(M)[:, None], browsed] = True
        self.member_plays = plays
        self._interacted_sets: dict[int, frozenset[str]] = {}

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
        """World artwork indices of a title's current pool, in catalog order."""
        return np.asarray(
            [self.artwork_index[a.artwork_id] for a in self.catalog.pool(self.title_ids[title])]
        )

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
        )

    def favorite_genre(self) -> np.ndarray:
        """(n_members,) index of each member's strongest genre taste (hidden; for experiments only)."""
        return self.genre_taste.argmax(1)

    def __repr__(self) -> str:
        return (
            f"World(seed={self.config.seed}, {len(self.title_ids)} titles, {len(self.artwork_ids)} artworks, "
            f"{self.config.n_members} members)"
        )
