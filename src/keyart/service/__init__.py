"""The decision service: page decisions over HTTP, outcome intake, online learning, snapshots, fallbacks.

``create_app(config)`` builds the ASGI app of one worker; ``keyart serve`` runs workers and the learner.
See ``docs/service.md`` for the design.
"""

from keyart.service.config import Limits, ServiceConfig

__all__ = ["Limits", "ServiceConfig", "create_app"]


def create_app(config: ServiceConfig):  # type: ignore[no-untyped-def]
    """The ASGI app for ``config`` (imported lazily: FastAPI is only needed to serve)."""
    from keyart.service.app import create_app as _create

    return _create(config)
