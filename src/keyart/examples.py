"""A tiny, self-contained example of the library: a two-title catalog, two members, one policy.

The policy is epsilon-greedy (the shared ridge model, epsilon 0.1): before learning every estimate is 0,
a tie, so it shows each title's artworks with equal probability, which is what knowing nothing looks
like. (An untrained LinUCB would already prefer the artwork whose features overlap the member's history:
its uncertainty bonus is largest there. That looks personalized, but it is optimism, not knowledge.)
After learning, the best guess gets 1 - epsilon + epsilon / K = 0.95, and a decision is ``explored``
only when the draw shows another artwork, at epsilon / K = 0.05.
"""

from __future__ import annotations

import numpy as np

from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext, Play
from keyart.features import Featurizer
from keyart.feedback import Decision, LoggedFeedback
from keyart.policies import make_policy


def tiny_catalog() -> Catalog:
    titles = [
        Title(
            "good-will", "Good Will Hunting", genres=("drama", "romance", "comedy"), cast=("matt", "robin")
        ),
        Title("heist", "The Heist", genres=("action", "comedy"), cast=("ann", "bo")),
        Title("romcom", "Love, Actually Funny", genres=("romance", "comedy"), cast=("cy",)),
        Title("standup", "Laugh Hour", genres=("comedy",), cast=("robin",)),
    ]
    artworks = [
        Artwork(
            "gw-romance", "good-will", theme_genres=("romance",), featured_cast=("matt",), style="couple"
        ),
        Artwork("gw-comedy", "good-will", theme_genres=("comedy",), featured_cast=("robin",), style="bright"),
        Artwork("heist-action", "heist", theme_genres=("action",), style="dark"),
        Artwork("heist-comedy", "heist", theme_genres=("comedy",), featured_cast=("bo",), style="bright"),
        Artwork("romcom-1", "romcom", theme_genres=("romance",), style="couple"),
        Artwork("standup-1", "standup", theme_genres=("comedy",), featured_cast=("robin",), style="bright"),
    ]
    return Catalog(titles, artworks)


def tiny_example(seed: int = 7) -> tuple[list[Decision], list[Decision]]:
    """Decisions for a comedy fan and a romance fan, before and after learning from simulated plays."""
    catalog = tiny_catalog()
    featurizer = Featurizer(catalog)
    members = [
        MemberContext("comedy-fan", played=(Play("standup"),), device="tv", timestamp=1.7e9),
        MemberContext("romance-fan", played=(Play("romcom"),), device="mobile", timestamp=1.7e9),
    ]
    policy = make_policy("epsilon_greedy", seed=seed, epsilon=0.1)
    pages = [featurizer.page(m, ["good-will", "heist"], request_id=f"{m.member_id}-0") for m in members]
    before = [d for page in pages for d in policy.choose(page)]
    # each fan plays when shown the artwork of their genre: 50 rounds of uniform exploration
    rng = np.random.default_rng(seed)
    for _ in range(50):
        for m, page in zip(members, pages, strict=True):
            chosen = rng.integers(0, page.pool_sizes)
            ids = page.artwork_ids[np.arange(page.n), chosen]
            fan = "comedy" if m.member_id == "comedy-fan" else "romance"
            rewards = np.array([1.0 if fan in catalog.artwork(a).theme_genres else 0.0 for a in ids])
            policy.update(LoggedFeedback(page, chosen, 1.0 / page.pool_sizes, rewards))
    later = [featurizer.page(m, ["good-will", "heist"], request_id=f"{m.member_id}-1") for m in members]
    after = [d for page in later for d in policy.choose(page)]
    return before, after
