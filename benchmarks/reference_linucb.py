"""A 100-line numpy LinUCB as an external baseline: one-hot features, every context x artwork cross.

It shares nothing with keyart's featurizer or policies; it reads what any service gets, the catalog and
the members' observable ``MemberContext`` (never the simulator's truth). Context: device, country,
language, hour bucket (4 h), weekday, prior interaction with the title, recommender-score tercile (edges
from the first page seen) and the genre shares of the member's play history; artwork: theme genres,
style, tags, featured-cast count (0, 1, 2+). The model is one shared ridge regression on the outer product
x = c (x) z (a bias in both, so main effects are crosses with the bias), score = mean + alpha * width,
ties broken uniformly at random (so the logged propensity, 1 / ties, is exact).

Plug it in with ``run_closed_loop(world, ReferenceLinUCB(seed), n, featurizer_factory=ReferenceFeaturizer)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keyart.batch import CandidateBatch
from keyart.catalog import Catalog
from keyart.context import MemberContext


class ReferenceFeaturizer:
    """Observable context -> one-hot vector c (n, dc); each candidate artwork -> one-hot vector z."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        arts = list(catalog.artworks.values())
        genres = {g for t in catalog.titles.values() for g in t.genres} | {
            g for a in arts for g in a.theme_genres
        }
        self.genre = {g: i for i, g in enumerate(sorted(genres))}
        self.style = {s: i for i, s in enumerate(sorted({a.style for a in arts}))}
        self.tag = {s: i for i, s in enumerate(sorted({t for a in arts for t in a.tags}))}
        self.dz = 1 + len(self.genre) + len(self.style) + len(self.tag) + 3
        self.vocab: dict[str, dict[str, int]] | None = None  # device, country, language: from the first page
        self.rec_edges = np.zeros(2)
        self._z: dict[str, np.ndarray] = {}
        self._shares: dict[tuple[str, int], np.ndarray] = {}

    def _art(self, artwork_id: str) -> np.ndarray:
        z = self._z.get(artwork_id)
        if z is None:
            a, z = self.catalog.artwork(artwork_id), np.zeros(self.dz)
            z[0] = 1.0
            z[[1 + self.genre[g] for g in a.theme_genres if g in self.genre]] = 1.0
            o = 1 + len(self.genre)
            if a.style in self.style:
                z[o + self.style[a.style]] = 1.0
            z[[o + len(self.style) + self.tag[t] for t in a.tags if t in self.tag]] = 1.0
            z[self.dz - 3 + min(len(a.featured_cast), 2)] = 1.0
            self._z[artwork_id] = z
        return z

    def _genre_shares(self, ctx: MemberContext) -> np.ndarray:
        key = (ctx.member_id, len(ctx.played))
        s = self._shares.get(key)
        if s is None:
            s = np.zeros(len(self.genre))
            for p in (p for p in ctx.played if p.title_id in self.catalog):
                gs = [self.genre[g] for g in self.catalog.title(p.title_id).genres if g in self.genre]
                s[gs] += 1.0 / max(len(gs), 1)
            s /= max(len(ctx.played), 1)
            self._shares[key] = s
        return s

    def pages(
        self, contexts: Sequence[MemberContext], titles: Sequence[Sequence[str]], request_ids: Sequence[str]
    ):
        if self.vocab is None:
            self.vocab = {
                f: {v: i for i, v in enumerate(sorted({getattr(c, f) for c in contexts}))}
                for f in ("device", "country", "language")
            }
            self.rec_edges = np.quantile(
                [s for c in contexts for s in c.recommender_scores.values()], [1 / 3, 2 / 3]
            )
        sizes = [len(self.vocab[f]) for f in ("device", "country", "language")]
        dc = 1 + sum(sizes) + 6 + 7 + 2 + 3 + len(self.genre)
        rows = [(c, t, r) for c, ts, r in zip(contexts, titles, request_ids, strict=True) for t in ts]
        pools = [self.catalog.pool_ids(t) for _, t, _ in rows]
        n, k = len(rows), max(len(p) for p in pools)
        C, Z = np.zeros((n, dc)), np.zeros((n, k, self.dz))
        mask, ids = np.zeros((n, k), dtype=bool), np.full((n, k), "", dtype=object)
        for i, ((c, t, _), pool) in enumerate(zip(rows, pools, strict=True)):
            o, C[i, 0] = 1, 1.0
            for f, size in zip(("device", "country", "language"), sizes, strict=True):
                j = self.vocab[f].get(getattr(c, f))
                if j is not None:
                    C[i, o + j] = 1.0
                o += size
            C[i, o + c.hour // 4] = C[i, o + 6 + c.weekday] = 1.0
            C[i, o + 13 + int(t in c.interacted_titles)] = 1.0
            C[i, o + 15 + int(np.searchsorted(self.rec_edges, c.recommender_scores.get(t, 0.0)))] = 1.0
            C[i, o + 18 :] = self._genre_shares(c)
            Z[i, : len(pool)] = [self._art(a) for a in pool]
            mask[i, : len(pool)], ids[i, : len(pool)] = True, pool
        batch = CandidateBatch(
            Z,
            mask,
            ids,
            np.array([t for _, t, _ in rows], dtype=object),
            np.array([c.member_id for c, _, _ in rows], dtype=object),
            np.array([r for _, _, r in rows], dtype=object),
            np.array([c.timestamp for c, _, _ in rows]),
        )
        batch.context = C  # type: ignore[attr-defined]
        return batch


class ReferenceLinUCB:
    """Shared ridge LinUCB on x = c (x) z: A = ridge I + sum x x', b = sum r x; argmax mean + alpha width."""

    def __init__(
        self, seed: int = 0, alpha: float = 0.1, ridge: float = 1.0, name: str = "reference LinUCB"
    ) -> None:
        self.alpha, self.ridge, self.name = alpha, ridge, name
        self.rng = np.random.default_rng([seed, 0x726566])
        self.A_inv: np.ndarray | None = None

    def _init(self, dc: int, dz: int) -> None:
        self.dc, self.dz = dc, dz
        self.A = self.ridge * np.eye(dc * dz)
        self.b = np.zeros(dc * dz)
        self.A_inv, self.theta = np.eye(dc * dz) / self.ridge, np.zeros(dc * dz)

    def act(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        C, Z = batch.context, batch.X  # type: ignore[attr-defined]
        if self.A_inv is None:
            self._init(C.shape[1], Z.shape[2])
        dc, dz = self.dc, self.dz
        mean = np.einsum("nj,nkj->nk", C @ self.theta.reshape(dc, dz), Z)
        width2 = np.empty(mean.shape)
        A4 = self.A_inv.reshape(dc, dz * dc * dz)
        for s in range(0, len(C), 256):  # B_n = (c' (x) I) A^-1 (c (x) I), (dz, dz) per row
            B = np.einsum("njkl,nk->njl", (C[s : s + 256] @ A4).reshape(-1, dz, dc, dz), C[s : s + 256])
            width2[s : s + 256] = np.einsum("nkj,njl,nkl->nk", Z[s : s + 256], B, Z[s : s + 256])
        score = np.where(batch.mask, mean + self.alpha * np.sqrt(np.maximum(width2, 0.0)), -np.inf)
        ties = score >= score.max(1, keepdims=True) - 1e-12
        key = np.where(ties, self.rng.random(ties.shape), -1.0)
        return key.argmax(1), 1.0 / ties.sum(1)

    def learn(
        self, batch: CandidateBatch, chosen: np.ndarray, propensity: np.ndarray, reward: np.ndarray
    ) -> None:
        C, Z = batch.context, batch.X[np.arange(batch.n), chosen]  # type: ignore[attr-defined]
        X = (C[:, :, None] * Z[:, None, :]).reshape(batch.n, -1)
        self.A += X.T @ X
        self.b += X.T @ reward
        self.A_inv = np.linalg.inv(self.A)
        self.theta = self.A_inv @ self.b
