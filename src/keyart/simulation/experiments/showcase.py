"""Experiment 3, ``taste_showcase``: which artwork of one comedy-romance title the contextual policy shows
to members inclined to comedy and to members inclined to romance, next to the world's own best choice."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from keyart.errors import ValidationError
from keyart.features import Featurizer
from keyart.policies import Policy
from keyart.simulation.runner import featurize_pages
from keyart.simulation.world import SHOWCASE_TITLE_ID, Requests, World


@dataclass(frozen=True)
class ShowcaseResult:
    """Per group of members and artwork: the policy's and the oracle's share of impressions."""

    title_id: str
    groups: tuple[str, ...]
    artwork_ids: tuple[str, ...]
    themes: tuple[str, ...]
    styles: tuple[str, ...]
    policy_share: np.ndarray  # (groups, K)
    oracle_share: np.ndarray  # (groups, K)
    n_members: tuple[int, ...]
    policy: str
    member_probabilities: tuple[np.ndarray, ...]  # per group: (members, K) the policy's probabilities

    def _theme_columns(self, theme: str) -> np.ndarray:
        return np.array([theme in t.split("+") for t in self.themes])

    def theme_share_se(self, group: int, theme: str) -> float:
        """Standard error of the policy's ``theme_share`` over the group's members."""
        per_member = self.member_probabilities[group][:, self._theme_columns(theme)].sum(1)
        return float(per_member.std(ddof=1) / math.sqrt(per_member.size)) if per_member.size > 1 else 0.0

    def top(self, group: int, which: str = "policy") -> int:
        share = self.policy_share if which == "policy" else self.oracle_share
        return int(share[group].argmax())

    def theme_share(self, group: int, theme: str, which: str = "policy") -> float:
        share = self.policy_share if which == "policy" else self.oracle_share
        return float(sum(s for s, t in zip(share[group], self.themes, strict=True) if theme in t.split("+")))

    def table(self) -> list[dict[str, Any]]:
        out = []
        for g, group in enumerate(self.groups):
            for k, aid in enumerate(self.artwork_ids):
                out.append(
                    {
                        "members": group,
                        "artwork": aid,
                        "theme": self.themes[k],
                        "style": self.styles[k],
                        "policy_share": float(self.policy_share[g, k]),
                        "oracle_share": float(self.oracle_share[g, k]),
                    }
                )
        return out


def taste_showcase(
    world: World,
    policy: Policy,
    *,
    title_id: str = SHOWCASE_TITLE_ID,
    genres: tuple[str, str] = ("comedy", "romance"),
    n_members: int = 300,
    seed: int = 0,
    policy_name: str | None = None,
) -> ShowcaseResult:
    """Experiment 3: the artwork a trained contextual policy shows one title's members, by hidden taste.

    Members are picked by their hidden tastes (only the experiment may look): inclined to the first genre
    (their strongest, with at least 40% of their genre distribution, and under 5% for the other genre) or
    to the second, among members who never interacted with the title. The policy sees only their
    contexts; its share per artwork is its mean probability. The oracle's share is how often each artwork
    is the truly best one for the members of the group.
    """
    if title_id not in world.title_index:
        raise ValidationError(f"title_id {title_id!r} is not a title of this world.")
    gi = [world.genres.index(g) for g in genres]
    title = world.title_index[title_id]
    taste = world.genre_taste
    rng = np.random.default_rng([world.config.seed, seed, 0x73686F77])
    featurizer = Featurizer(world.catalog)
    groups, pol, orc, counts, se = [], [], [], [], []
    for j, g in enumerate(gi):
        other = gi[1 - j]
        share = world.genre_share
        eligible = np.flatnonzero(
            (taste.argmax(1) == g)
            & (share[:, g] >= 0.4)
            & (share[:, other] < 0.05)
            & ~world.interacted[:, title]
        )
        if eligible.size == 0:
            raise ValidationError(f"No member of this world is inclined to {genres[j]!r}.")
        members = rng.choice(eligible, size=min(n_members, eligible.size), replace=False)
        requests = Requests(
            member=members,
            device=world.member_device[members],
            timestamp=np.full(members.size, world.now),
            titles=np.full((members.size, 1), title),
            recommender=np.zeros((members.size, 1)),
        )
        events, _ = world.events(requests)
        contexts = world.contexts(requests)
        batch = featurize_pages(featurizer, world, requests, contexts)
        probs = policy.probabilities(batch)
        pol.append(probs.mean(0))
        se.append(probs)
        best, _ = world.oracle(events)
        orc.append(np.bincount(best, minlength=batch.k) / members.size)
        groups.append(f"inclined to {genres[j]}")
        counts.append(int(members.size))
    pool = world.catalog.pool(title_id)
    return ShowcaseResult(
        title_id=title_id,
        groups=tuple(groups),
        artwork_ids=tuple(a.artwork_id for a in pool),
        themes=tuple("+".join(a.theme_genres) for a in pool),
        styles=tuple(a.style for a in pool),
        policy_share=np.vstack(pol),
        oracle_share=np.vstack(orc),
        n_members=tuple(counts),
        policy=policy_name or policy.name,
        member_probabilities=tuple(se),
    )
