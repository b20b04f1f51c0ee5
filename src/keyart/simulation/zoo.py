"""The world zoo: randomized simulated worlds, each fully described by (zoo version, seed).

A zoo world is an ordinary ``World`` whose ``WorldConfig`` is drawn from documented ranges
(``ZOO_RANGES``): catalog and pool sizes (2 to 40 artworks per title), which context families carry the
personalization and with which artwork families (the crosses) and how strongly, noise and base rates,
clickbait, popularity skew, drift and cold start. Nothing of it is visible to keyart: policies see the
catalog and the members' observable contexts only, as in every world.

Seeds come in two disjoint sets (docs/simulation.md, "The world zoo"): ``DEV_SEEDS`` for developing and
tuning defaults, ``HELD_OUT_SEEDS`` for reporting. Tuning scripts read ``DEV_SEEDS`` only; the held-out
worlds are run by ``benchmarks/bench_worlds.py`` to report, never to choose anything.

    from keyart.simulation.zoo import DEV_SEEDS, zoo_world
    world = zoo_world(DEV_SEEDS[0])
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from keyart.errors import ValidationError
from keyart.simulation.config import ARTWORK_FAMILIES, CONTEXT_FAMILIES, TAGS, WorldConfig
from keyart.simulation.world import World

ZOO_VERSION = 1
"""Bump when the ranges or the way a config is drawn change: (ZOO_VERSION, seed) names a world."""

DEV_SEEDS: tuple[int, ...] = tuple(range(50))
"""Development worlds: tuning scripts and defaults may be chosen on these."""

HELD_OUT_SEEDS: tuple[int, ...] = tuple(range(1_000_000, 1_000_020))
"""Held-out worlds: for reports only (``benchmarks/bench_worlds.py``); no tuning script reads them."""

REFERENCE_REQUESTS = 200_000
"""The run length the zoo is sized for: cold-start arrival days are placed within a run of this length."""

ZOO_RANGES: dict[str, str] = {
    "n_titles": "int in [150, 450]",
    "n_members": "int in [20000, 50000]",
    "n_genres": "int in [6, 12]",
    "n_cast": "int in [40, 200]",
    "min_pool": "int in [2, 4]",
    "max_pool": "one of 16, 24, 32, 40",
    "mean_extra_pool": "[2, 12] (negative binomial extra artworks)",
    "page_size": "int in [4, 8]",
    "mean_history": "[15, 60]",
    "requests_per_day": "[10000, 40000] (a 200k run spans 5 to 20 days)",
    "play_intercept": "[-5.2, -3.8] (base play rate)",
    "quality_intercept": "[-0.5, 1.0] (base quality rate)",
    "quality_title_weight": "[0.3, 1.2]",
    "base_appeal_sd": "[0.05, 0.5] (each artwork's own appeal)",
    "genre_taste_noise": "[0.02, 0.3] (taste not revealed by the history)",
    "style_taste_noise": "[0, 0.6] (a member's own style taste: unobservable noise)",
    "recommender_noise": "[0.3, 1.0]",
    "title_popularity_sd": "[0.1, 1.0] (popularity skew of titles)",
    "member_activity_sd": "[0.3, 1.2] (popularity skew of members: heavy users)",
    "clickbait_fraction": "[0, 0.15]; clickbait_play_boost [0.5, 1.2]; clickbait_quality_penalty [1.5, 3]",
    "known_title_damping": "[0.1, 1.0] (prior interaction x artwork)",
    "theme_weight": "genre taste x theme: [0.5, 2.5] with probability 0.8, else 0",
    "quality_theme_weight": "[0, 0.8] when theme_weight > 0, else 0",
    "cast_weight": "cast taste x featured cast: [0.3, 1.5] with probability 0.6, else 0",
    "device_style_sd": "device x style: [0.3, 1.3] with probability 0.5, else 0",
    "text_language_penalty": "language x text-heavy style: [0.1, 0.6] with probability 0.4, else 0",
    "n_tags": "int in [4, 12] with probability 0.8, else 0; tags_per_artwork [0.5, 3]",
    "crosses": (
        "1 to 4 distinct (context family, artwork family) pairs among "
        f"{', '.join(CONTEXT_FAMILIES)} x {', '.join(ARTWORK_FAMILIES)} (tag only when n_tags > 0), "
        "effect sd [0.2, 1.0] each"
    ),
    "taste_drift_per_day": "[0.02, 0.15] radians a day with probability 0.3, else 0",
    "cold start": (
        "with probability 0.4: n_new_artworks = [0.1, 0.4] x n_titles, n_new_titles = [0, 0.1] x n_titles, "
        "arriving at [0.3, 0.7] of a 200k-request run; else none"
    ),
}
"""Every randomized property of a zoo world and its range (uniform unless stated)."""


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise ValidationError(f"A zoo seed must be an int in [0, 2**63). Got {seed!r}.")
    return int(seed)


def zoo_config(seed: int, version: int = ZOO_VERSION) -> WorldConfig:
    """The ``WorldConfig`` of zoo world ``seed`` (a pure function of (version, seed))."""
    seed = _check_seed(seed)
    if version != ZOO_VERSION:
        raise ValidationError(f"This keyart builds zoo version {ZOO_VERSION}. Got {version!r}.")
    rng = np.random.default_rng(np.random.SeedSequence([seed, version, 0x7A6F6F]))

    def u(low: float, high: float) -> float:
        return float(rng.uniform(low, high))

    def i(low: int, high: int) -> int:
        return int(rng.integers(low, high + 1))

    def maybe(p: float, low: float, high: float) -> float:
        on = rng.random() < p
        value = u(low, high)  # drawn either way: one family's switch does not shift the others' draws
        return value if on else 0.0

    n_titles = i(150, 450)
    requests_per_day = u(10_000, 40_000)
    n_genres = i(6, 12)
    theme_weight = maybe(0.8, 0.5, 2.5)
    quality_theme = u(0.0, 0.8)
    n_tags = i(4, min(12, len(TAGS))) if rng.random() < 0.8 else 0
    tags_per_artwork = u(0.5, 3.0)
    pairs = [
        (c, a) for c, a in itertools.product(CONTEXT_FAMILIES, ARTWORK_FAMILIES) if a != "tag" or n_tags > 0
    ]
    n_cross = i(1, 4)
    picked = rng.choice(len(pairs), size=n_cross, replace=False)
    crosses = tuple((*pairs[int(j)], round(u(0.2, 1.0), 4)) for j in sorted(picked))
    drift = maybe(0.3, 0.02, 0.15)
    cold = rng.random() < 0.4
    share_art, share_titles, arrival = u(0.1, 0.4), u(0.0, 0.1), u(0.3, 0.7)
    run_days = REFERENCE_REQUESTS / requests_per_day
    return WorldConfig(
        seed=seed,
        n_genres=n_genres,
        n_cast=i(40, 200),
        n_titles=n_titles,
        min_pool=i(2, 4),
        max_pool=int(rng.choice([16, 24, 32, 40])),
        mean_extra_pool=u(2.0, 12.0),
        clickbait_fraction=u(0.0, 0.15),
        n_members=i(20_000, 50_000),
        genre_taste_noise=u(0.02, 0.3),
        style_taste_noise=u(0.0, 0.6),
        mean_history=u(15.0, 60.0),
        page_size=i(4, 8),
        recommender_noise=u(0.3, 1.0),
        requests_per_day=requests_per_day,
        play_intercept=u(-5.2, -3.8),
        title_popularity_sd=u(0.1, 1.0),
        base_appeal_sd=u(0.05, 0.5),
        theme_weight=theme_weight,
        cast_weight=maybe(0.6, 0.3, 1.5),
        device_style_sd=maybe(0.5, 0.3, 1.3),
        text_language_penalty=maybe(0.4, 0.1, 0.6),
        clickbait_play_boost=u(0.5, 1.2),
        known_title_damping=u(0.1, 1.0),
        quality_intercept=u(-0.5, 1.0),
        quality_title_weight=u(0.3, 1.2),
        quality_theme_weight=quality_theme if theme_weight > 0 else 0.0,
        clickbait_quality_penalty=u(1.5, 3.0),
        taste_drift_per_day=drift,
        n_new_titles=round(share_titles * n_titles) if cold else 0,
        n_new_artworks=round(share_art * n_titles) if cold else 0,
        arrival_day=arrival * run_days if cold else 1.0,
        n_tags=n_tags,
        tags_per_artwork=tags_per_artwork,
        member_activity_sd=u(0.3, 1.2),
        crosses=crosses,
    )


def zoo_world(seed: int, version: int = ZOO_VERSION, **overrides: Any) -> World:
    """Zoo world ``seed``; ``overrides`` change config fields (e.g. ``n_members`` for a small test world)."""
    config = zoo_config(seed, version)
    return World(config.with_(**overrides) if overrides else config)


def active_families(config: WorldConfig) -> dict[str, float]:
    """The personalization a world carries: each active (context x artwork) family and its strength."""
    out: dict[str, float] = {}
    for name, value in (
        ("genre x theme", config.theme_weight),
        ("cast x featured cast", config.cast_weight),
        ("device x style", config.device_style_sd),
        ("language x text-heavy", config.text_language_penalty),
    ):
        if value > 0:
            out[name] = float(value)
    for ctx, art, sd in config.crosses:
        if sd > 0 and (art != "tag" or config.n_tags > 0):
            key = f"{ctx} x {art}"
            out[key] = out.get(key, 0.0) + sd
    return out


def describe(seed: int) -> dict[str, Any]:
    """A one-line summary of zoo world ``seed``'s randomized properties (for reports; no world built)."""
    c = zoo_config(seed)
    return {
        "seed": seed,
        "titles": c.n_titles,
        "members": c.n_members,
        "pools": f"{c.min_pool}-{c.max_pool}",
        "page": c.page_size,
        "tags": c.n_tags,
        "clickbait": round(c.clickbait_fraction, 3),
        "drift": round(c.taste_drift_per_day, 3),
        "cold_start": c.n_new_artworks + c.n_new_titles > 0,
        "families": ", ".join(active_families(c)),
    }


__all__ = [
    "DEV_SEEDS",
    "HELD_OUT_SEEDS",
    "REFERENCE_REQUESTS",
    "ZOO_RANGES",
    "ZOO_VERSION",
    "active_families",
    "describe",
    "zoo_config",
    "zoo_world",
]
