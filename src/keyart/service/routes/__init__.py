"""The HTTP routes of the decision service, one ``APIRouter`` per resource: ``decisions``, ``outcomes``,
``catalog``, ``admin`` (model, health, metrics), and ``docs`` (Swagger UI and ReDoc, offline). Each route
receives the worker's ``ServiceState`` through the ``keyart.service.state.Service`` dependency;
``keyart.service.app`` wires them into an app."""

from keyart.service.routes import admin, catalog, decisions, docs, outcomes

#: The routers in the order their routes appear in the OpenAPI document.
ROUTERS = (decisions.router, outcomes.router, catalog.router, admin.router, docs.router)

__all__ = ["ROUTERS", "admin", "catalog", "decisions", "docs", "outcomes"]
