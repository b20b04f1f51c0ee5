"""keyart's own exception types: every bad input ends in one of these, naming the argument."""

from __future__ import annotations


class KeyartError(Exception):
    """Base class of every error keyart raises on purpose."""


class ValidationError(KeyartError, ValueError):
    """An argument has the wrong value, type, shape or range."""


class DuplicateIdError(ValidationError):
    """An id that must be unique was given twice."""


class UnknownIdError(ValidationError):
    """An id refers to nothing known (an artwork, a title, a member's history entry)."""


class EmptyPoolError(ValidationError):
    """A title has no active artwork to choose from."""


class DimensionError(ValidationError):
    """A feature matrix or vector has the wrong shape."""


class NotFittedError(KeyartError, RuntimeError):
    """A model was asked for something that needs learned state it does not have yet."""


class SnapshotError(KeyartError):
    """A snapshot is missing, corrupt, or of another policy or format version."""


class StoreError(KeyartError):
    """The event store could not accept or return events."""


class ConvergenceError(KeyartError, RuntimeError):
    """An iterative fit did not reach its tolerance; the model it was fitting is left unchanged."""
