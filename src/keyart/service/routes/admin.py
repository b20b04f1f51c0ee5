"""The model, health and metrics routes: ``GET /v1/model``, ``POST /v1/model/reload``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics``."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from keyart.service.engine import Engine
from keyart.service.follow import follow_info
from keyart.service.health import learner_status
from keyart.service.httpio import json_response
from keyart.service.schemas import error_responses
from keyart.service.state import Service, ServiceState

router = APIRouter()


def _public(params: dict[str, Any]) -> dict[str, Any]:
    """A policy's parameters without its ``seed``: the exploration key is the deployment's secret."""
    return {k: v for k, v in params.items() if k != "seed"}


def model_info(state: ServiceState, engine: Engine) -> dict[str, Any]:
    """What ``GET /v1/model`` reports: the configured and served policies, the generation (with the priors
    its model learned), the learner."""
    config = state.config
    gen = engine.generation
    out: dict[str, Any] = {
        "configured_policy": config.policy,
        "configured_shadow": config.shadow_policy,
        "catalog_rev": engine.view.rev,
        "model_error": engine.model_error,
        "model_ok": gen is not None,
        "serving": "model" if gen is not None else "defaults",
        "generation": None,
        "learner": learner_status(config.root, config.learn_interval_seconds),
    }
    if gen is not None:
        out.update(
            {
                "generation": gen.number,
                "policy": gen.primary.name,
                "model_version": gen.primary.version_,
                "params": _public(gen.primary.get_params()),
                "priors": gen.primary.learned_priors(),
                "loaded_at": engine.loaded_at,
                "published_at": gen.meta.get("created"),
                "learned_until": gen.meta.get("learned_until"),
                "rewards_learned": gen.meta.get("rewards_learned", 0),
                "shadow": None
                if gen.shadow is None
                else {
                    "policy": gen.shadow.name,
                    "model_version": gen.shadow.version_,
                    "params": _public(gen.shadow.get_params()),
                },
            }
        )
    return out


@router.get("/v1/model", tags=["model"], summary="The policy and model generation this worker serves")
async def get_model(state: Service) -> Response:
    return json_response(model_info(state, state.engine_of()))


@router.post(
    "/v1/model/reload",
    tags=["model"],
    summary="Check for a new generation now",
    responses=error_responses(401, 403),
)
async def reload_model(request: Request, state: Service) -> Response:
    state.require_key(request)
    engine = state.engine_of()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(engine.executor, functools.partial(engine.refresh, True))
    return json_response(model_info(state, engine))


@router.get("/healthz", tags=["health"], summary="Liveness")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", tags=["health"], summary="Readiness: catalog loaded and events writable")
async def readyz(state: Service) -> Response:
    """Ready when the engine is up and a record can be written to the events directory (503 with the
    reason otherwise). Also reports the model and the learner (which serving does not need): without a
    good model generation the worker still answers every page, with default artworks, so it stays ready
    and says so (``model_ok: false``, ``serving: "defaults"``, a ``warning``)."""
    engine = state.engine
    if engine is None:
        return json_response({"ready": False, "detail": "starting"}, 503)
    config = state.config
    problem = engine.writer.check()
    gen = engine.generation
    body: dict[str, Any] = {
        "ready": problem is None,
        "generation": None if gen is None else gen.number,
        "catalog_rev": engine.view.rev,
        "model_error": engine.model_error,
        "model_ok": gen is not None,
        "serving": "model" if gen is not None else "defaults",
        "learner": learner_status(config.root, config.learn_interval_seconds),
    }
    warnings = []
    if gen is None:
        warnings.append(f"no good model generation: answering with default artworks ({engine.model_error})")
    following = follow_info(engine.config, engine.follow_problem)
    if following is not None:  # follow mode: the shared model, and the node's Parquet sink
        body["follow"] = following
        if following["problem"] is not None and gen is not None:
            warnings.append(f"not serving the shared model's newest generation: {engine.model_error}")
    learner = body["learner"]
    if learner["behind"]:
        lag = learner["learn_lag_seconds"]
        warnings.append(
            f"the learner is behind: {learner['backlog_bytes'] / 2**20:.1f} MiB of events not yet ingested "
            + ("" if lag is None else f"and {lag:.0f} s of closed decisions not yet learned ")
            + f"after its last cycle ({learner['cycle_seconds']} s)"
        )
    if warnings:
        body["warning"] = "; ".join(warnings)
    if problem is not None:
        body["detail"] = problem
    return json_response(body, 200 if problem is None else 503)


@router.get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics (all worker processes)",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def get_metrics(state: Service) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
