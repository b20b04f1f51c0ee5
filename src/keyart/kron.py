"""The feature layout's Kronecker form: every row is x = L (c (x) z), for quadratic forms over many members.

``c`` is the row's vector of context products (each term's product of context blocks, the crossed per-title
blocks included), ``z`` the candidate's basis vector of ``keyart.basis`` (1, the uncrossed per-title blocks,
the artwork row, the pair blocks) and ``L`` a fixed sparse map (d x |c| r) read off the layout's terms: an
outer or diagonal column is the product of one c entry and one z entry, an inner column a sum of them.

For a posterior covariance Sigma, a candidate's quadratic form is z^T B(c) z with B(c) = (c (x) I)^T
Sigma_K (c (x) I), Sigma_K = L^T Sigma L formed once per posterior. B for all the contexts of a batch is
a few matrix products (as for the reference LinUCB's c (x) z model), O(|c|^2 r^2) per member instead of
O(d^2) per candidate: the path ``keyart.learning.Posterior.kron_moments`` takes for wide layouts. Within
a member's rows c changes only through the crossed per-title blocks (the levels: prior interaction, a
crossed recommender score); when no product holds two of them, c = c_0 + sum_l level_l c_l and B is
sum_ab level_a level_b Q_ab with Q_ab computed once per member, on the small supports of the c_l.
"""

from __future__ import annotations

from functools import cached_property
from typing import NamedTuple

import numpy as np
import scipy.sparse

from keyart.layout import FeatureLayout, kron_rows


class LiftMap(NamedTuple):
    """L's nonzeros at some x columns, in order of z entry: x column ``j`` gets c entry ``e``; the z entries
    ``z_used`` start at ``starts`` (``KronPlan.lift_map``)."""

    j: np.ndarray
    e: np.ndarray
    z_used: np.ndarray
    starts: np.ndarray


class KronPlan:
    """The layout's context products (their offsets in c and their levels) and the sparse map L."""

    def __init__(self, layout: FeatureLayout) -> None:
        self.layout = layout
        self.r = layout.basis_width
        levels = layout.level_blocks
        products: dict[tuple[str, ...], int] = {}
        level_of: list[int] = []  # per c entry: -1 fixed, else the level block it is multiplied by
        multi = False
        xs: list[np.ndarray] = []
        es: list[np.ndarray] = []
        ss: list[np.ndarray] = []
        for p in layout.plans:
            names = tuple(n for n in p.term.context if n not in layout.z_blocks)
            if names not in products:
                products[names] = len(level_of)
                held = [levels.index(n) for n in names if n in levels]
                multi |= len(held) > 1
                width = int(np.prod([_width(layout.context[n]) for n in names]))
                level_of += [held[0] if len(held) == 1 else -1] * width
            o, t0, ws = products[names], p.target.start, p.width_s
            wp = p.width_p if names == p.term.context else 1  # an uncrossed per-title block is a z entry
            if p.mode == "outer":
                i, s = np.divmod(np.arange(wp * ws), ws)
                xs.append(p.cols.start + np.arange(wp * ws))
            else:  # diagonal: column s pairs entry s with z entry s; inner: one column sums the pairs
                i = s = np.arange(ws)
                xs.append(p.cols.start + (np.arange(ws) if p.mode == "diagonal" else np.zeros(ws, np.int64)))
            es.append(o + i)
            ss.append(t0 + s)
        self.products = products
        self.width = len(level_of)  # |c|
        self.multi_level = multi
        #: L's nonzeros (all ones), in order of s: x column j gets c entry e times z entry s
        j, e, s = np.concatenate(xs), np.concatenate(es), np.concatenate(ss)
        order = np.argsort(s, kind="stable")
        self.j, self.e, self.s = j[order], e[order], s[order]
        lv = np.array(level_of, dtype=np.int64)
        if multi:  # two crossed per-title blocks in one product: every row's c is its own
            self.supports = [np.arange(self.width)]
        else:
            self.supports = [np.flatnonzero(lv == -1), *(np.flatnonzero(lv == i) for i in range(len(levels)))]

    @cached_property
    def _LT(self) -> scipy.sparse.csr_matrix:
        """L^T, sparse (|c| r, d)."""
        rows, shape = self.e * self.r + self.s, (self.width * self.r, self.layout.dim)
        return scipy.sparse.csr_matrix((np.ones(self.j.size), (rows, self.j)), shape=shape)

    def contexts(self, ctx: np.ndarray) -> np.ndarray:
        """(n, |c|) context products of rows of context vectors (n, context width)."""
        lay = self.layout
        out = np.empty((ctx.shape[0], self.width))
        for names, o in self.products.items():
            part = kron_rows([ctx[:, lay.context[n]] for n in names]) if names else np.ones((ctx.shape[0], 1))
            out[:, o : o + part.shape[1]] = part
        return out

    def members(self, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows' distinct members: (their context products with every level at 1 (u, |c|), each row's
        member (n,), each row's level values (n, levels)). With ``multi_level``, every distinct c."""
        lay = self.layout
        if self.multi_level:
            c, inverse = np.unique(self.contexts(ctx), axis=0, return_inverse=True)
            return c, inverse.reshape(-1), np.zeros((ctx.shape[0], 0))
        fixed = ctx.copy()
        fixed[:, lay.per_title_cols] = 0.0
        fixed[:, lay.level_cols] = 1.0
        _, first, inverse = np.unique(fixed, axis=0, return_index=True, return_inverse=True)
        return self.contexts(fixed[first]), inverse.reshape(-1), ctx[:, lay.level_cols]

    def project(self, sigma: np.ndarray) -> list[list[np.ndarray | None]]:
        """From Sigma, the blocks of T = Sigma_K as (|c|, |c|, r, r) between supports a <= b, each
        (|S_a| |S_b|, r^2) for one matrix product per member (None where a support is empty)."""
        LT = self._LT
        sigma_k = (LT @ (LT @ sigma).T).T  # L^T Sigma L
        w, r = self.width, self.r
        T = sigma_k.reshape(w, r, w, r).transpose(0, 2, 1, 3)
        sup = self.supports
        return [
            [
                None
                if b < a or not (sup[a].size and sup[b].size)
                else np.ascontiguousarray(T[np.ix_(sup[a], sup[b])].reshape(-1, r * r))
                for b in range(len(sup))
            ]
            for a in range(len(sup))
        ]

    def member_quadratics(self, blocks: list[list[np.ndarray | None]], c: np.ndarray) -> np.ndarray:
        """Per member (context products ``c`` (u, |c|) with levels at 1, ``members``) its Q_ab (u, pairs,
        r, r) for every pair of supports a <= b with a block (``project``), Q_ab + Q_ab^T where a != b."""
        r, sup = self.r, self.supports
        pairs = [(a, b) for a in range(len(sup)) for b in range(a, len(sup)) if blocks[a][b] is not None]
        out = np.empty((c.shape[0], len(pairs), r, r))
        for p, (a, b) in enumerate(pairs):
            ca, cb = c[:, sup[a]], c[:, sup[b]]
            Q = ((ca[:, :, None] * cb[:, None, :]).reshape(c.shape[0], -1) @ blocks[a][b]).reshape(-1, r, r)
            out[:, p] = Q if a == b else Q + Q.transpose(0, 2, 1)
        return out

    def quadratic(
        self, blocks: list[list[np.ndarray | None]], Q: np.ndarray, inverse: np.ndarray, levels: np.ndarray
    ) -> np.ndarray:
        """B(c) (n, r, r) of every row: sum_ab level_a level_b Q_ab of its member (``member_quadratics``
        of the members, ``Q``), with each row's member ``inverse`` and level values ``levels``."""
        sup = self.supports
        coef = np.hstack([np.ones((inverse.size, 1)), levels])
        pairs = [(a, b) for a in range(len(sup)) for b in range(a, len(sup)) if blocks[a][b] is not None]
        out = np.zeros((inverse.size, self.r, self.r))
        for p, (a, b) in enumerate(pairs):
            Qp = Q[inverse, p]
            out += Qp if a == b == 0 else (coef[:, a] * coef[:, b])[:, None, None] * Qp
        return out

    def lift_map(self, columns: np.ndarray | None = None) -> LiftMap:
        """L's nonzeros at x ``columns`` (all when None): lifting vectors that are zero at every other column
        (Sigma U_a lives on the model's coupled columns) needs no others."""
        keep = slice(None) if columns is None else np.isin(self.j, columns)
        j, e, s = self.j[keep], self.e[keep], self.s[keep]  # still in order of s
        z_used, starts = np.unique(s, return_index=True)
        return LiftMap(j, e, z_used, starts)

    def lift(self, AJ: np.ndarray, c: np.ndarray, k: int, lift_map: LiftMap | None = None) -> np.ndarray:
        """V(c_i)^T a_ik = (c_i (x) I)^T L^T a_ik for K vectors a_ik per row, given at the map's x columns
        (``AJ`` (n K, nnz) = A[:, map.j]; the map ``lift_map()`` when None), and the rows' context products
        c (n, |c|): (n, K, r), O(nnz) each."""
        m = lift_map or self._full_map
        n = c.shape[0]
        out = np.zeros((n, k, self.r))
        if m.j.size:
            prod = AJ.reshape(n, k, -1) * c[:, None, m.e]
            out[:, :, m.z_used] = np.add.reduceat(prod, m.starts, axis=2)
        return out

    @cached_property
    def _full_map(self) -> LiftMap:
        return self.lift_map()


def _width(s: slice) -> int:
    return s.stop - s.start


def kron_plan(layout: FeatureLayout) -> KronPlan:
    """The layout's Kronecker plan, made once per layout."""
    plan = layout.__dict__.get("_kron_plan")
    if plan is None:
        plan = layout.__dict__["_kron_plan"] = KronPlan(layout)
    return plan
