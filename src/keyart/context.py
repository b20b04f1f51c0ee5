"""What keyart knows about a member at decision time: history, locale, device, time, title signals.

One ``MemberContext`` serves a whole page: per-title signals (prior interaction, recommender scores) are
keyed by title id. Hidden truths (a simulated member's tastes) never belong here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keyart.errors import ValidationError

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Play:
    """One entry of a member's play history; ``timestamp`` in epoch seconds (UTC)."""

    title_id: str
    timestamp: float | None = None
    engaged_seconds: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.title_id, str) or not self.title_id:
            raise ValidationError(f"Play.title_id must be a non-empty string. Got {self.title_id!r}.")
        for name in ("timestamp", "engaged_seconds"):
            v = getattr(self, name)
            if v is not None and not (_is_number(v) and math.isfinite(v)):
                raise ValidationError(f"Play.{name} must be a finite number or None. Got {v!r}.")
        if self.engaged_seconds is not None and self.engaged_seconds < 0:
            raise ValidationError(f"Play.engaged_seconds must be >= 0. Got {self.engaged_seconds!r}.")


def _is_number(value: object) -> bool:
    return type(value) in (float, int) or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def _collection(name: str, values: object) -> tuple[Any, ...]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise ValidationError(
            f"{name} must be a collection of entries, not a single string or a mapping. Got {values!r}."
        )
    return tuple(values)


def _play(i: int, entry: object) -> Play:
    if isinstance(entry, Play):
        return entry
    if isinstance(entry, str):
        return Play(entry)
    if isinstance(entry, Mapping):
        try:
            return Play(**entry)
        except TypeError as exc:
            raise ValidationError(f"played[{i}] is not a valid Play: {exc}. Got {entry!r}.") from exc
    raise ValidationError(f"played[{i}] must be a Play, a title id or a mapping. Got {entry!r}.")


def _title_ids(name: str, values: object) -> frozenset[str]:
    ids = _collection(name, values)
    for t in ids:
        if not isinstance(t, str) or not t:
            raise ValidationError(f"{name} must hold non-empty title ids. Got {t!r}.")
    return frozenset(ids)


def _finite_map(name: str, values: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise ValidationError(f"{name} must be a mapping of title id to number. Got {values!r}.")
    out: dict[str, float] = {}
    for k, v in values.items():
        if not isinstance(k, str):
            raise ValidationError(f"{name} keys must be strings. Got {k!r}.")
        if not _is_number(v) or not math.isfinite(v):
            raise ValidationError(f"{name}[{k!r}] must be a finite number. Got {v!r}.")
        out[k] = float(v)
    return out


@dataclass(frozen=True)
class MemberContext:
    """A member's observable context for one page request.

    ``interacted_titles``: titles the member already interacted with (so artwork matters less there).
    ``recommender_scores``: the recommender's score per title id. ``extra``: free numeric features.
    ``timestamp`` is epoch seconds (UTC); hour of day and day of week derive from it.
    """

    member_id: str
    played: tuple[Play, ...] = ()
    country: str = ""
    language: str = ""
    device: str = ""
    timestamp: float = 0.0
    interacted_titles: frozenset[str] = frozenset()
    recommender_scores: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.member_id, str) or not self.member_id:
            raise ValidationError(f"member_id must be a non-empty string. Got {self.member_id!r}.")
        plays = tuple(_play(i, p) for i, p in enumerate(_collection("played", self.played)))
        object.__setattr__(self, "played", plays)
        for name in ("country", "language", "device"):
            if not isinstance(getattr(self, name), str):
                raise ValidationError(f"{name} must be a string. Got {getattr(self, name)!r}.")
        ts = self.timestamp
        if not _is_number(ts) or not math.isfinite(ts):
            raise ValidationError(f"timestamp must be finite epoch seconds. Got {ts!r}.")
        object.__setattr__(self, "timestamp", float(ts))
        object.__setattr__(self, "interacted_titles", _title_ids("interacted_titles", self.interacted_titles))
        object.__setattr__(
            self, "recommender_scores", _finite_map("recommender_scores", self.recommender_scores)
        )
        object.__setattr__(self, "extra", _finite_map("extra", self.extra))

    @property
    def hour(self) -> int:
        """Hour of day, 0-23 (UTC)."""
        return int(self.timestamp // 3600) % 24

    @property
    def weekday(self) -> int:
        """Day of week, Monday = 0 (1970-01-01 was a Thursday)."""
        return (int(self.timestamp // SECONDS_PER_DAY) + 3) % 7

    def played_title_ids(self) -> tuple[str, ...]:
        return tuple(p.title_id for p in self.played)
