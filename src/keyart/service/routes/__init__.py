"""The HTTP routes of the decision service, one ``APIRouter`` per resource: ``decisions``, ``outcomes``,
``catalog``, and ``admin`` (model, health, metrics). Each route receives the worker's ``ServiceState``
through the ``keyart.service.state.Service`` dependency; ``keyart.service.app`` wires them into an app."""

from keyart.service.routes import admin, catalog, decisions, outcomes

#: The routers in the order their routes appear in the OpenAPI document.
ROUTERS = (decisions.router, outcomes.router, catalog.router, admin.router)

__all__ = ["ROUTERS", "admin", "catalog", "decisions", "outcomes"]
