"""The world's vectorized records: page requests, (member, title) events and their drawn outcomes.

They carry hidden world indices, not ids: what the world sees of a run, never what a policy sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
    recommender: np.ndarray | None = None  # (n,) float: the recommender's score of the title, if known

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
            None if self.recommender is None else self.recommender[index],
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
            None
            if any(p.recommender is None for p in parts)
            else np.concatenate([p.recommender for p in parts]),  # type: ignore[misc]
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
