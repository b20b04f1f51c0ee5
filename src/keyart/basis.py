"""A one-member page's basis, derived from the feature layout: x[n, k] = V(level_n) z[n, k].

Every row of a page shares the member's context, up to the per-title blocks, so V is one small matrix per
level (distinct values of the crossed per-title blocks) and z = (1, uncrossed per-title blocks, artwork
row, pair blocks) is short (r = 36 by default). ``BasisPlan`` groups the layout's terms once so that
``project`` computes A @ V for fixed row vectors A (split once by ``split``) in a few array operations,
which is what makes a posterior's page moments O(r^2) per candidate (``Posterior.page_moments``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from keyart.layout import FeatureLayout, Plan, index, kron_rows


@dataclass
class _Group:
    """Terms that ``project`` handles in one step: same fixed context product, same level factors and
    same target columns of z. ``wide``: an outer product over a context product of width > 1."""

    fixed: tuple[str, ...]
    level: tuple[int, ...]
    target: slice
    wide: bool
    width_p: int
    plans: list[Plan]


@dataclass
class _ElemGroup:
    """Element-wise terms (diagonal, inner, or outer over a width-1 product) of one fixed context
    product and one target: ``project`` adds (sum over level keys of multiplier x coefficients) x the
    page's fixed product. A part of inner terms only keeps one column (its coefficient is a scalar)."""

    fixed: tuple[str, ...]
    target: slice
    parts: list[tuple[tuple[int, ...], list[Plan]]]


@dataclass
class SplitRows:
    """Row vectors A (N, d) regrouped for ``FeatureLayout.project``: split once per fixed set of rows (a
    posterior's [Sigma; theta]), so that a page only gathers and combines small blocks."""

    ctx: np.ndarray  # (N, plain context columns), read against the page's context
    direct: list[np.ndarray]  # per level key: (N, basis width), the terms that map straight onto z
    elem: list[list[np.ndarray]]  # per element-wise group, per level key: (N, target width) or (N, 1)
    wide: list[np.ndarray]  # per wide group: (context width, N, target width)

    def take(self, rows: np.ndarray) -> SplitRows:
        """The blocks of some rows; wide blocks are gathered by ``project``, one context slot each."""
        return SplitRows(
            self.ctx.take(rows, axis=0),
            [d.take(rows, axis=0) for d in self.direct],
            [[e.take(rows, axis=0) for e in parts] for parts in self.elem],
            self.wide,
        )


class BasisPlan:
    """The layout's terms grouped for the page basis: context-only terms of fixed blocks are read against
    the page's context in one step; terms without fixed context factors map straight onto z (one matrix
    per level key); the rest go in element-wise or wide groups of one fixed context product."""

    def __init__(self, layout: FeatureLayout) -> None:
        self.layout = layout
        basis_ctx = [p for p in layout.plain_context if p.fixed == p.term.context]
        self._bctx_x, self._bctx_c = (
            index([p.cols for p in basis_ctx]),
            index([p.context[0] for p in basis_ctx]),
        )
        direct: dict[tuple[int, ...], list[Plan]] = {}
        groups: dict[tuple[object, ...], _Group] = {}
        elem: dict[tuple[object, ...], dict[tuple[int, ...], list[Plan]]] = {}
        for p in layout.plans:
            if p in basis_ctx:
                continue
            if not p.fixed:
                direct.setdefault(p.level, []).append(p)
            elif p.mode == "outer" and p.width_p > 1:
                key = (p.fixed, p.level, p.target.start)
                groups.setdefault(key, _Group(p.fixed, p.level, p.target, True, p.width_p, [])).plans.append(
                    p
                )
            else:
                elem.setdefault((p.fixed, p.target.start, p.target.stop), {}).setdefault(p.level, []).append(
                    p
                )
        self._direct = sorted(direct.items(), key=lambda kv: len(kv[0]))  # the level-free key first
        # a level key's terms as (columns of x, columns of z); each is either widthwise or width 1
        self._direct_x = [index([p.cols for p in ps]) for _, ps in self._direct]
        self._direct_z = [index([p.target for p in ps]) for _, ps in self._direct]
        z0 = [
            i
            for p in (self._direct[0][1] if self._direct else [])
            for i in range(p.target.start, p.target.stop)
        ]
        self._direct_unique = len(set(z0)) == len(z0)
        self._elem = [
            _ElemGroup(fixed, slice(start, stop), sorted(parts.items(), key=lambda kv: len(kv[0])))
            for (fixed, start, stop), parts in elem.items()
        ]
        self._wide = list(groups.values())
        keys = {k for k, _ in self._direct} | {k for g in self._elem for k, _ in g.parts}
        self._level_keys = sorted((k for k in keys | {g.level for g in self._wide} if k), key=len)

    @cached_property
    def identity(self) -> SplitRows:
        """The identity's rows, split: ``project(basis, identity, level)`` is V (d, basis width) itself."""
        return self.split(np.eye(self.layout.dim))

    def split(self, A: np.ndarray) -> SplitRows:
        """Row vectors A (N, d) regrouped for ``project``."""
        lay, n = self.layout, A.shape[0]
        direct = []
        for i, (_, plans) in enumerate(self._direct):
            if i == 0 and not self._direct[0][0]:  # the level-free terms: a full row of z
                D = np.zeros((n, lay.basis_width))
                if self._direct_unique:
                    D[:, self._direct_z[0]] = A[:, self._direct_x[0]]
                else:
                    for p in plans:
                        D[:, p.target] += A[:, p.cols]
            else:
                D = np.ascontiguousarray(A[:, self._direct_x[i]])
            direct.append(D)
        elem = []
        for g in self._elem:
            blocks = []
            for _, ps in g.parts:
                B = None
                for p in ps:  # an inner term's coefficients are one column, broadcast over the target
                    b = A[:, p.cols] if p.mode != "inner" else A[:, p.cols.start, None]
                    B = b if B is None else B + b
                blocks.append(np.ascontiguousarray(B))
            elem.append(blocks)
        wide = []
        for g in self._wide:
            W = A[:, g.plans[0].cols].reshape(n, g.width_p, -1)
            for p in g.plans[1:]:
                W = W + A[:, p.cols].reshape(n, g.width_p, -1)
            wide.append(np.ascontiguousarray(W.transpose(1, 0, 2)))
        return SplitRows(np.ascontiguousarray(A[:, self._bctx_x]), direct, elem, wide)

    def project(
        self, basis: PageBasis, A: SplitRows, level: Any, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """A[rows] @ V at a page's context, (N, basis width), for row vectors A split by ``split``.

        ``level``: the values of the crossed per-title blocks, as in ``basis.levels`` (with one such
        block, a number or one number per projected row)."""
        lay = self.layout
        a = A if rows is None else A.take(rows)
        v = np.asarray(level, dtype=np.float64)
        if len(lay.level_blocks) == 1:
            v = v[..., None]
        mult: dict[tuple[int, ...], Any] = {}
        for key in self._level_keys:
            f = v[..., key[0]] if len(key) == 1 else np.prod(v[..., list(key)], axis=-1)
            mult[key] = f[:, None] if f.ndim else float(f)

        n = a.ctx.shape[0]
        first = 0
        if self._direct and not self._direct[0][0]:
            out, first = a.direct[0].copy(), 1
        else:
            out = np.zeros((n, lay.basis_width))
        out[:, 0] += a.ctx @ basis.c0[self._bctx_c]
        for i in range(first, len(self._direct)):
            out[:, self._direct_z[i]] += mult[self._direct[i][0]] * a.direct[i]
        for g, blocks, P0 in zip(self._elem, a.elem, basis.elem, strict=True):
            coef = None
            for (key, _), B in zip(g.parts, blocks, strict=True):
                term = mult[key] * B if key else B
                coef = term if coef is None else coef + term
            out[:, g.target] += coef * P0
        for g, W, (P0, nz) in zip(self._wide, a.wide, basis.wide, strict=True):
            if not nz:
                continue
            parts = [P0[u] * (W[u] if rows is None else W[u].take(rows, axis=0)) for u in nz]
            contrib = parts[0] if len(parts) == 1 else sum(parts)
            out[:, g.target] += contrib * mult[g.level] if g.level else contrib
        return out

    def basis_of(
        self, ctx: np.ndarray, art_block: np.ndarray, idx: np.ndarray, pair: np.ndarray
    ) -> PageBasis:
        """A one-member page's shared context, its levels and its candidates' z (n, K, basis width)."""
        lay = self.layout
        c0 = ctx[0].copy()
        c0[lay.per_title_cols] = 0.0
        values = ctx[:, lay.level_cols]
        one = len(lay.level_cols) == 1
        if not values.any():
            levels, level_of = np.zeros((1, values.shape[1])), np.zeros(ctx.shape[0], dtype=np.int64)
        elif one:
            levels = np.array(sorted(set(values[:, 0].tolist())))[:, None]
            level_of = np.searchsorted(levels[:, 0], values[:, 0])
        else:
            levels, level_of = np.unique(values, axis=0, return_inverse=True)

        def product(names: tuple[str, ...]) -> np.ndarray:
            return kron_rows([c0[None, lay.context[name]] for name in names])[0]

        elem = [product(g.fixed) for g in self._elem]
        wide = [(P0, np.flatnonzero(P0).tolist()) for P0 in (product(g.fixed) for g in self._wide)]
        Z = candidate_vectors(lay, ctx, art_block, idx, pair)
        return PageBasis(
            self,
            c0,
            levels[:, 0] if one else levels,
            np.asarray(level_of, dtype=np.int64).reshape(-1),
            values[:, 0].copy() if one else values,
            elem,
            wide,
            Z,
        )


@dataclass
class PageBasis:
    """A one-member page's candidate rows as x[n, k] = V(level_n) @ z[n, k], z of width ``width``.

    z = (1, the per-title blocks that are never crossed (the recommender score), artwork row, pair
    blocks); V depends on the member's context and on the crossed per-title blocks (the prior
    interaction), whose distinct values on the page are its ``levels``. ``project(A, level, rows)``
    computes A @ V without building V, so a posterior's quadratic forms cost O(r^2) per candidate
    instead of O(d^2) (``keyart.learning.Posterior.page_moments``).
    """

    plan: BasisPlan
    c0: np.ndarray  # the shared context, per-title blocks zeroed
    levels: np.ndarray  # (g,) with one crossed per-title block, else (g, blocks)
    level_of: np.ndarray  # (n,) level index of each row
    prior: np.ndarray  # (n,) or (n, blocks): each row's values of the crossed per-title blocks
    elem: list[np.ndarray] = field(repr=False)  # per element-wise group: its fixed context product
    wide: list[tuple[np.ndarray, list[int]]] = field(repr=False)  # per wide group: product, nonzero slots
    Z: np.ndarray = field(repr=False)

    @property
    def layout(self) -> FeatureLayout:
        return self.plan.layout

    @property
    def width(self) -> int:
        return self.plan.layout.basis_width

    def project(self, A: SplitRows, level: Any, rows: np.ndarray | None = None) -> np.ndarray:
        return self.plan.project(self, A, level, rows)


def candidate_vectors(
    layout: FeatureLayout, ctx: np.ndarray, art_block: np.ndarray, idx: np.ndarray, pair: np.ndarray
) -> np.ndarray:
    """Each candidate's basis vector z = (1, uncrossed per-title blocks, artwork row, pair blocks), (n, K,
    basis width), zero on padding (``idx`` 0)."""
    n, k = idx.shape
    Z = np.empty((n, k, layout.basis_width))
    Z[:, :, 0] = 1.0
    for i, name in enumerate(layout.z_blocks):
        Z[:, :, 1 + i] = ctx[:, layout.context[name].start, None]
    Z[:, :, layout.art_offset : layout.pair_offset] = art_block.take(idx, axis=0)
    Z[:, :, layout.pair_offset :] = pair
    Z[idx == 0] = 0.0
    return Z


def basis_plan(layout: FeatureLayout) -> BasisPlan:
    """The layout's basis plan, made once per layout."""
    plan = layout.__dict__.get("_basis_plan")
    if plan is None:
        plan = layout.__dict__["_basis_plan"] = BasisPlan(layout)
    return plan
