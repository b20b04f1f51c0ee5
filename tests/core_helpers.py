"""Small seeded catalogs, members and logged batches shared by the core tests."""

from __future__ import annotations

import numpy as np

from keyart.batch import CandidateBatch
from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext, Play
from keyart.features import Featurizer
from keyart.feedback import LoggedFeedback
from keyart.policies import Policy

GENRES = ("comedy", "romance", "drama", "action", "horror", "kids")
STYLES = ("dark", "bright", "face", "text")


def make_catalog(n_titles: int = 12, pool: int = 6, seed: int = 0) -> Catalog:
    rng = np.random.default_rng(seed)
    cast = [f"actor{i}" for i in range(30)]
    titles, artworks = [], []
    for t in range(n_titles):
        g = tuple(rng.choice(GENRES, size=2, replace=False).tolist())
        c = tuple(rng.choice(cast, size=3, replace=False).tolist())
        titles.append(Title(f"t{t}", f"Title {t}", genres=g, cast=c, runtime_minutes=90.0))
        for a in range(pool - (t % 3)):
            artworks.append(
                Artwork(
                    f"t{t}-a{a}",
                    f"t{t}",
                    theme_genres=(g[a % 2],),
                    featured_cast=(c[a % 3],) if a % 2 else (),
                    style=STYLES[a % len(STYLES)],
                    tags=("tag" + str(a % 3),),
                )
            )
    return Catalog(titles, artworks)


def make_members(catalog: Catalog, n: int, seed: int = 1, t0: float = 1.7e9) -> list[MemberContext]:
    rng = np.random.default_rng(seed)
    ids = list(catalog.titles)
    out = []
    for i in range(n):
        hist = rng.choice(ids, size=int(rng.integers(0, 5)), replace=False).tolist()
        out.append(
            MemberContext(
                f"m{i}",
                played=tuple(Play(h, t0 - 86_400 * float(rng.integers(1, 90))) for h in hist),
                country=str(rng.choice(["US", "FR", "BR"])),
                device=str(rng.choice(["tv", "mobile", "web"])),
                timestamp=t0 + float(rng.integers(0, 86_400)),
                interacted_titles=frozenset(rng.choice(ids, size=1).tolist()),
                recommender_scores={ids[0]: float(rng.random())},
            )
        )
    return out


def make_events(catalog: Catalog, n: int, seed: int = 2) -> CandidateBatch:
    rng = np.random.default_rng(seed)
    members = make_members(catalog, n, seed=seed)
    tids = rng.choice(list(catalog.titles), size=n).tolist()
    pools = [[a.artwork_id for a in catalog.pool(t)] for t in tids]
    return Featurizer(catalog).events(members, tids, pools, request_ids=[f"r{i}" for i in range(n)])


def logged_feedback(batch: CandidateBatch, seed: int = 3, p_reward: float = 0.3) -> LoggedFeedback:
    """Uniformly random shown artworks with Bernoulli rewards that favour even artwork indices."""
    rng = np.random.default_rng([seed, 101])  # a stream of its own, not the one that drew the events
    chosen = rng.integers(0, batch.pool_sizes)
    reward = (rng.random(batch.n) < np.where(chosen % 2 == 0, p_reward, p_reward / 3)).astype(float)
    return LoggedFeedback(batch, chosen, 1.0 / batch.pool_sizes, reward)


def trained(policy: Policy, catalog: Catalog, n: int = 600, seed: int = 4) -> Policy:
    return policy.update(logged_feedback(make_events(catalog, n, seed=seed), seed=seed))
