"""How a ``World`` is generated from its config: the catalog, the members' hidden tastes, their histories.

Every draw comes from a ``numpy.random.Generator`` that ``World`` derives from ``WorldConfig.seed``: one
for the launch catalog, one for the members, one for the histories, and separate ones for the drift
tastes and the arrivals (cold start), so turning drift or cold start on leaves the launch world as it was.
The zoo's extensions (artwork tags, generic hidden crosses) draw from one more generator of their own, and
draw nothing when they are off, so the default world is exactly what it was before they existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from keyart.catalog import Artwork, Title
from keyart.context import SECONDS_PER_DAY, Play
from keyart.simulation.config import (
    ARTWORK_FAMILIES,
    COUNTRIES,
    DEVICES,
    GENRES,
    HOUR_BUCKETS,
    RECOMMENDER_EDGES,
    STYLES,
    TAGS,
    WorldConfig,
)

SHOWCASE_TITLE_ID = "t0000"
"""A comedy-romance-drama title with comedy-, romance- and drama-themed artworks (experiment 3)."""


def cast_names(n: int, buckets: int = 256) -> tuple[str, ...]:
    """``n`` cast names; while ``n <= buckets``, names whose default feature hash buckets all differ.

    The simulated cast is smaller than the default featurizer's cast hashing space, so names are picked
    to avoid collisions (the demo then measures learning, not hashing noise). Beyond ``buckets`` names,
    collisions are unavoidable and plain numbered names are used.
    """
    from keyart.hashing import stable_hash

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


class WorldGeneration:
    """The generation half of ``World`` (which inherits it): builds the catalog, with its hidden artwork
    attributes and later arrivals, the members' hidden tastes and observable profiles, and their play
    histories, as attributes of the world."""

    config: WorldConfig

    def _build_catalog(
        self, rng: np.random.Generator, arrivals: np.random.Generator, extras: np.random.Generator
    ) -> None:
        """The launch catalog from ``rng``; the titles and artworks arriving later from ``arrivals``; the
        artworks' tags (when ``n_tags > 0``) from ``extras``.

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
        self.art_cast_count = (AC >= 0).sum(1)
        self.tags = TAGS[: c.n_tags]
        self.art_tags = self._draw_tags(extras, A)
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
                tags=tuple(self.tags[x] for x in np.flatnonzero(self.art_tags[a])),
            )
            for a in range(A)
        ]

    def _draw_tags(self, rng: np.random.Generator, n_artworks: int) -> np.ndarray:
        """(A, n_tags) bool: each artwork's free tags, about ``tags_per_artwork`` each (Poisson, capped at
        ``n_tags``), popular tags more often. Draws nothing when ``n_tags`` is 0."""
        c = self.config
        if c.n_tags == 0:
            return np.zeros((n_artworks, 0), dtype=bool)
        pop = rng.dirichlet(np.full(c.n_tags, 2.0))
        k = np.minimum(rng.poisson(c.tags_per_artwork, n_artworks), c.n_tags)
        keys = np.log(pop)[None, :] + rng.gumbel(size=(n_artworks, c.n_tags))
        rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
        return rank < k[:, None]

    def _build_crosses(self, rng: np.random.Generator) -> None:
        """The effect tables of ``config.crosses``: (context values, artwork values) per cross, N(0, sd),
        centred over the context values (a pure interaction: no artwork value is better for everyone)."""
        c = self.config
        n_ctx = {
            "device": len(DEVICES),
            "country": len(COUNTRIES),
            "hour": HOUR_BUCKETS,
            "weekday": 7,
            "prior": 2,
            "recommender": len(RECOMMENDER_EDGES) + 1,
            "genre": c.n_genres,
        }
        n_art = {"theme": c.n_genres, "style": len(STYLES), "tag": c.n_tags, "cast_count": 3}
        self.cross_tables: list[tuple[str, str, np.ndarray]] = []
        for ctx, art, sd in c.crosses:
            table = rng.normal(0.0, sd, (n_ctx[ctx], n_art[art]))
            self.cross_tables.append((ctx, art, table - table.mean(0, keepdims=True)))
        assert all(a in ARTWORK_FAMILIES for _, a, _ in self.cross_tables)

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
        self.member_activity = rng.lognormal(0.0, c.member_activity_sd, M)
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
