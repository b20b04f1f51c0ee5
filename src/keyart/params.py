"""Declared parameter constraints, checked once with one wording everywhere (scikit-learn's convention).

A class lists ``_parameter_constraints = {"epsilon": Interval(0, 1), ...}`` and calls
``validate_params(self)`` in its constructor; a bad value raises
``ValidationError("The 'epsilon' parameter of EpsilonGreedy must be in [0, 1]. Got 1.5.")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from keyart.errors import ValidationError


@dataclass(frozen=True)
class Interval:
    """A real (or integer) interval; ``closed`` says which ends belong to it."""

    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right", "neither"
    integer: bool = False
    infinite: bool = False  # also accept +inf (an unbounded interval's "never")

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.infinite and self.high is None and value == math.inf:
            return True
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False
        lo_ok = self.low is None or (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        )
        hi_ok = self.high is None or (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        return lo_ok and hi_ok

    def describe(self) -> str:
        kind = "an int" if self.integer else "a number"
        if self.low is None and self.high is None:
            return f"{kind}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        right = "]" if self.infinite and self.high is None else right
        return f"{kind} in {left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class OneOf:
    """A value from a fixed set."""

    options: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return value in self.options

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


@dataclass(frozen=True)
class Optional_:
    """``None`` or a value accepted by ``inner``."""

    inner: Any

    def accepts(self, value: Any) -> bool:
        return value is None or self.inner.accepts(value)

    def describe(self) -> str:
        return f"None or {self.inner.describe()}"


@dataclass(frozen=True)
class Seed:
    """An int in [0, 2**128): the key of the sticky hash is 16 bytes."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**128

    def describe(self) -> str:
        return "an int in [0, 2**128)"


def check_param(owner: str, name: str, value: Any, constraint: Any) -> None:
    """Raise the standard ValidationError when ``value`` breaks ``constraint``."""
    if not constraint.accepts(value):
        raise ValidationError(
            f"The {name!r} parameter of {owner} must be {constraint.describe()}. Got {value!r}."
        )


def validate_params(obj: Any) -> None:
    """Check every attribute named in ``type(obj)._parameter_constraints``."""
    owner = type(obj).__name__
    for name, constraint in getattr(type(obj), "_parameter_constraints", {}).items():
        check_param(owner, name, getattr(obj, name), constraint)


def get_params(obj: Any) -> dict[str, Any]:
    """The constructor parameters of ``obj`` as stored (hyperparameters only, never learned state)."""
    return {name: getattr(obj, name) for name in type(obj)._parameter_constraints}
