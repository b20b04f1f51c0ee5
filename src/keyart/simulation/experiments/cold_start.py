"""Cold start from the pixels: brand-new artworks (pixels only, no tags) released into a running policy
in an image world (``keyart.simulation.images``), with and without visual features.

A policy runs in closed loop from the world's launch; at the release (``WorldConfig.arrival_day``) new
titles arrive with pools of new artworks and some launch titles get a new artwork, none of them tagged.
On the decisions whose pool holds a new artwork (the *release pools*), the share of oracle (expected
quality plays of the shown artworks over the oracle's, on the same decisions) is followed request by
request after the release, and compared with the same policy's steady state: its share on the same
pools long after the release. The two variants differ only in the featurizer: with visual features
(``FeatureConfig(embedding_dim=23)``: the image features' main effect and their cross with the member's
genre taste) or without (``embedding_dim=0``: a new artwork is a blank arm, known only by its own bias).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from keyart.errors import ValidationError
from keyart.features import FeatureConfig, Featurizer
from keyart.policies import make_policy
from keyart.simulation.images import ImageWorld
from keyart.simulation.runner import REQUEST_BLOCK, PolicyAgent, RunResult, run_closed_loop

WITH_VISUAL = "with visual features"
WITHOUT_VISUAL = "without visual features"
#: The experiment's policy and its hyperparameters, for the benchmark (``bench_vision_cold_start.py``) and
#: the demo alike; chosen on the development image seeds (docs/vision.md, "Cold start from the pixels").
COLD_START_POLICY = "epsilon_greedy"
COLD_START_PARAMS: Mapping[str, Any] = {}


#: The featurizer both variants share but for the embedding: the declared layout, the one the numbers of
#: docs/vision.md were measured with (every cross, the library's default since, is not measured here yet)
COLD_START_FEATURES = FeatureConfig(
    crosses=(), title_affinity=False, cast_count_levels=0, tags_normalized=True
)


def visual_variants(embedding_dim: int = 23) -> dict[str, FeatureConfig]:
    """The two featurizers compared: image features on (``embedding_dim``) and off, on
    ``COLD_START_FEATURES``."""
    return {
        WITH_VISUAL: replace(COLD_START_FEATURES, embedding_dim=embedding_dim),
        WITHOUT_VISUAL: COLD_START_FEATURES,
    }


@dataclass(frozen=True)
class ColdStartCurve:
    """One variant's share of oracle on the release pools, by bins of requests after the release."""

    variant: str
    ends: np.ndarray  # (bins,) requests after the release at each bin's end
    share: np.ndarray  # (bins,) share of oracle on the release pools within the bin
    random_share: np.ndarray  # (bins,) a uniformly random choice's share on the same decisions
    early: float  # share over the first ``horizon`` requests after the release
    reached: float  # share over the last quarter of the horizon (the level reached by then)
    steady: float  # share over the steady window
    launch_steady: float  # share on the launch pools (no new artwork) over the steady window
    decisions: int  # decisions on release pools within the horizon

    @property
    def early_of_steady(self) -> float:
        return self.early / self.steady

    @property
    def reached_of_steady(self) -> float:
        return self.reached / self.steady


@dataclass(frozen=True)
class ColdStartResult:
    """Both variants' curves, with the release request, the horizon and the steady window (requests
    after the release), and the runs themselves."""

    release: int
    horizon: int
    steady_window: tuple[int, int]
    policy: str
    curves: dict[str, ColdStartCurve]
    runs: dict[str, RunResult] = field(repr=False)

    def table(self) -> list[dict[str, Any]]:
        """One row per variant: the share over the first bin and the whole horizon, the share reached (the
        horizon's last quarter), steady state, and their ratios."""
        return [
            {
                "variant": c.variant,
                "share_first_bin": float(c.share[0]),
                "share_first_horizon": c.early,
                "share_reached": c.reached,
                "share_steady": c.steady,
                "early_of_steady": c.early_of_steady,
                "reached_of_steady": c.reached_of_steady,
                "launch_share_steady": c.launch_steady,
                "decisions": c.decisions,
            }
            for c in self.curves.values()
        ]


def release_masks(world: ImageWorld, run: RunResult) -> tuple[int, np.ndarray]:
    """(the release's request number, (N,) bool: decisions on a pool holding a new artwork).

    A title's pool holds a new artwork from the request on which its pool first exceeds its launch size
    (all new artworks arrive together at the release)."""
    new = world.new_artworks
    n_titles = len(world.title_ids)
    launch_size = np.bincount(world.art_title[~new], minlength=n_titles)
    release_titles = np.bincount(world.art_title[new], minlength=n_titles) > 0
    grown = release_titles[run.title] & (run.pool_size > launch_size[run.title])
    if not grown.any():
        raise ValidationError("No decision saw a new artwork: the release is after the run's end.")
    return int(run.request[np.argmax(grown)]), grown


def share_of_oracle(run: RunResult, rows: np.ndarray) -> float:
    """Expected quality plays of the shown artworks over the oracle's, on the decisions ``rows``."""
    oracle = float(run.oracle[rows].sum())
    return float(run.expected[rows].sum()) / oracle if oracle > 0 else float("nan")


def curve(
    world: ImageWorld, run: RunResult, variant: str, horizon: int, steady: tuple[int, int], bins: int
) -> ColdStartCurve:
    """A run's ``ColdStartCurve`` (requests counted from the release)."""
    release, pools = release_masks(world, run)
    after = run.request - release
    edges = np.linspace(0, horizon, bins + 1).round().astype(np.int64)
    share, rand = np.zeros(bins), np.zeros(bins)
    for i in range(bins):
        rows = pools & (after >= edges[i]) & (after < edges[i + 1])
        share[i] = share_of_oracle(run, rows)
        rand[i] = float(run.random[rows].sum() / run.oracle[rows].sum()) if rows.any() else float("nan")
    early = pools & (after >= 0) & (after < horizon)
    reached = pools & (after >= horizon - horizon // 4) & (after < horizon)
    window = (after >= steady[0]) & (after < steady[1])
    return ColdStartCurve(
        variant=variant,
        ends=edges[1:],
        share=share,
        random_share=rand,
        early=share_of_oracle(run, early),
        reached=share_of_oracle(run, reached),
        steady=share_of_oracle(run, pools & window),
        launch_steady=share_of_oracle(run, ~pools & window),
        decisions=int(early.sum()),
    )


def cold_start(
    world: ImageWorld,
    *,
    horizon: int = 10_000,
    steady: tuple[int, int] = (30_000, 40_000),
    seed: int = 0,
    update_every: int = 500,
    policy: str = COLD_START_POLICY,
    params: Mapping[str, Any] | None = None,
    variants: Mapping[str, FeatureConfig] | None = None,
    bins: int = 10,
    progress: Callable[[int], None] | None = None,
) -> ColdStartResult:
    """Run ``policy`` (registry name, ``params``: ``COLD_START_PARAMS`` for the default policy when None)
    once per featurizer variant (``visual_variants()`` by
    default) from the world's launch to ``steady[1]`` requests after the release, on the same request
    stream, and measure the share of oracle on the release pools: over the first ``horizon`` requests
    after the release (``bins`` bins for the curve), over the horizon's last quarter, and in the steady
    window (requests after the release)."""
    if not isinstance(world, ImageWorld):
        raise ValidationError(f"cold_start needs an ImageWorld. Got {type(world).__name__}.")
    if not 0 < horizon <= steady[0] < steady[1]:
        raise ValidationError(f"Need 0 < horizon <= steady start < steady stop. Got {horizon}, {steady}.")
    c = world.config
    release = round(c.arrival_day * c.requests_per_day)
    n_requests = release + steady[1] + 2 * REQUEST_BLOCK  # the release lands at a block end: slack
    variants = dict(variants) if variants is not None else visual_variants()
    runs: dict[str, RunResult] = {}
    curves: dict[str, ColdStartCurve] = {}
    for name, config in variants.items():
        agent = PolicyAgent(make_policy(policy, seed=seed, **policy_params(policy, params)), name=name)
        runs[name] = run_closed_loop(
            world,
            agent,
            n_requests,
            update_every=update_every,
            seed=seed,
            featurizer_factory=lambda catalog, config=config: Featurizer(catalog, config),  # type: ignore[misc]
            progress=progress,
        )
        curves[name] = curve(world, runs[name], name, horizon, steady, bins)
    first = next(iter(runs.values()))
    return ColdStartResult(release_masks(world, first)[0], horizon, steady, policy, curves, runs)


def policy_params(policy: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The hyperparameters to run ``policy`` with: ``params``, else the experiment's own for its policy."""
    if params is not None:
        return dict(params)
    return dict(COLD_START_PARAMS) if policy == COLD_START_POLICY else {}


def reference_shares(world: ImageWorld, n_requests: int = 4_000, seed: int = 0) -> dict[str, float]:
    """Reference levels on the release pools, from the hidden truth (what no policy can see): the share of
    oracle of a uniformly random choice, of choosing by each member's true visual effect, by the visual
    taste that the member's play history's genre affinity can tell (``_taste_from_history``), and by the
    members' average visual taste (the same choice for everyone), over ``n_requests`` pages drawn just
    after the release (from a generator of its own; the world is reset afterwards)."""
    c = world.config
    world.reset()
    world.advance_to(c.start_time + c.arrival_day * 86_400.0)
    requests = world.sample_requests(n_requests, np.random.default_rng(np.random.SeedSequence([seed, 0x5EF])))
    events, _ = world.events(requests)
    taste_from_history = _taste_from_history(world, c.start_time + c.arrival_day * 86_400.0)
    world.reset()
    q, mask = world.expected(events), events.mask
    art = np.where(mask, events.artworks, 0)
    rows = (world.new_artworks[art] & mask).any(axis=1)
    best = np.where(mask, q, -1.0).max(axis=1)[rows].sum()
    visual = world._artwork_extra(events, art)
    average = (world.visual_attributes @ world.visual_taste.mean(axis=0))[art]
    history = np.einsum("nkv,nv->nk", world.visual_attributes[art], taste_from_history[events.member])

    def by(score: np.ndarray) -> float:
        pick = np.where(mask, score, -np.inf).argmax(axis=1)
        return float(q[np.arange(events.n), pick][rows].sum() / best)

    uniform = float(((q * mask).sum(axis=1) / mask.sum(axis=1))[rows].sum() / best)
    return {
        "random": uniform,
        "true_visual_taste": by(visual),
        "history_visual_taste": by(history),
        "average_visual_taste": by(average),
    }


def _taste_from_history(world: ImageWorld, timestamp: float) -> np.ndarray:
    """(members, V) each member's visual taste as well as the genre affinity that the featurizer reads
    from their play history can tell it: the least-squares fit of the true tastes on [1, affinity] over
    all members (fitted on the truth: the best any genre x embedding cross could learn)."""
    from keyart.context import MemberContext

    featurizer = Featurizer(world.catalog)
    contexts = (
        MemberContext(world.member_ids[m], world.member_plays[m], timestamp=timestamp)
        for m in range(world.config.n_members)
    )
    affinity = np.array([featurizer.member_vectors(ctx)[0] for ctx in contexts])
    X = np.column_stack([np.ones(len(affinity)), affinity])
    coef, *_ = np.linalg.lstsq(X, world.visual_taste, rcond=None)
    return X @ coef
