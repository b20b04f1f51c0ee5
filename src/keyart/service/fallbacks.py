"""Default artworks: what a title shows when the model cannot answer (never raises for a known title)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keyart.catalog import Catalog
from keyart.errors import KeyartError
from keyart.feedback import decision_id

#: ``policy`` of a decision answered by a default artwork.
DEFAULT_POLICY = "default"
#: Why a decision fell back (the ``fallback_reason`` field and the ``reason`` label of the metric).
REASONS = ("no_model", "unknown_member", "model_error", "timeout", "pool_changed", "overload")


def decision_ids(request_id: str, n: int, salt: str = "") -> list[str]:
    """Decision ids of a page's n titles in the policies' format ``<request id>-<row>`` (shadow ids carry
    ``salt`` after the request id, so they never collide with served ones). The service passes a key it
    makes per page, never the client's request id, so ids stay unique when a client reuses one."""
    return [decision_id(f"{request_id}{salt}", i) for i in range(n)]


def default_artworks(
    catalog: Catalog, title_ids: Sequence[str], pools: Sequence[tuple[str, ...]], learned: Mapping[str, str]
) -> list[int]:
    """Index into each pool of the default: the learner's best unpersonalized artwork when it is still in
    the pool, else the catalog's default artwork of the title."""
    out = []
    for t, pool in zip(title_ids, pools, strict=True):
        best = learned.get(t)
        if best is None or best not in pool:
            best = catalog.default_artwork(t).artwork_id
        out.append(pool.index(best))
    return out


def best_unpersonalized(
    stats: Mapping[str, Sequence[float]], catalog: Catalog, prior_weight: float = 20.0
) -> dict[str, str]:
    """Per title, the active artwork with the highest take fraction shrunk towards the overall one.

    ``stats``: artwork id -> (reward sum, decisions). Titles without any data are left out.
    """
    total_r = sum(v[0] for v in stats.values())
    total_n = sum(v[1] for v in stats.values())
    if total_n <= 0:
        return {}
    g = total_r / total_n
    out: dict[str, str] = {}
    for tid in catalog.active_title_ids():
        try:
            pool = catalog.pool_ids(tid)
        except KeyartError:  # a title without active artwork has no default to learn
            continue
        scored = [
            ((stats[a][0] + prior_weight * g) / (stats[a][1] + prior_weight), a) for a in pool if a in stats
        ]
        if scored:
            out[tid] = max(scored)[1]
    return out
