"""The seed document's evidence, reproduced in a simulated world whose truth is known.

1. ``batch_vs_online``: a classic batch cycle (collect, train, A/B test, roll out) against a contextual
   bandit learning continuously; cumulative regret over time.
2. ``offline_replay``: from a uniform-random exploration log, the replay estimate (with its interval) of
   Random, the non-contextual Bandit and contextual bandits, next to each policy's true value.
3. ``taste_showcase``: which artwork of one comedy-romance title the contextual policy shows to members
   inclined to comedy and to members inclined to romance, next to the world's own best choice.
4. ``ab_test``: an online A/B test of personalized against unpersonalized selection, with the lift and its
   interval, split by members with and without prior interaction with the title.

``python -m keyart.simulation.experiments closed-loop --requests 200000`` runs the long closed-loop
comparison of every policy (see ``benchmarks/bench_closed_loop.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from keyart.errors import ValidationError
from keyart.evaluation import BanditLog, estimate
from keyart.features import Featurizer
from keyart.policies import LoggedFeedback, Policy, UniformPolicy, make_policy
from keyart.simulation.agents import ABAgent, BatchCycleAgent
from keyart.simulation.runner import (
    PolicyAgent,
    ProgressCallback,
    RunResult,
    featurize_pages,
    run_closed_loop,
    stream_windows,
)
from keyart.simulation.world import SHOWCASE_TITLE_ID, Requests, World

# ---- the policies of the experiments ------------------------------------------------------------

#: Display name -> (registry name, hyperparameters). Thompson policies use 512 quasi-Monte Carlo points
#: for their probabilities (the default is 4096) to keep closed loops fast; the propensity of every
#: decision is still the exact probability of the distribution it was drawn from.
POLICY_SUITE: dict[str, tuple[str, dict[str, Any]]] = {
    "Random": ("uniform", {}),
    "Bandit": ("greedy", {"epsilon": 0.05}),
    "Bandit (Thompson)": ("beta_ts", {}),
    "LinUCB": ("linucb", {"alpha": 0.3}),
    "Epsilon-greedy": ("epsilon_greedy", {"epsilon": 0.05}),
    "Linear TS": ("linear_ts", {"mc_points": 512}),
    "Logistic TS": ("logistic_ts", {"mc_points": 512}),
}
NON_CONTEXTUAL = frozenset({"Random", "Bandit", "Bandit (Thompson)"})


def make_suite_policy(name: str, seed: int) -> Policy:
    """A fresh policy of ``POLICY_SUITE`` by display name."""
    try:
        registry, params = POLICY_SUITE[name]
    except KeyError:
        raise ValidationError(f"Unknown policy {name!r}; choose from {', '.join(POLICY_SUITE)}.") from None
    return make_policy(registry, seed=seed, **params)


# ---- experiment 1: batch cycle against online learning ------------------------------------------


@dataclass(frozen=True)
class BatchOnlineResult:
    """Closed-loop runs of the batch cycle and of the online bandit on the same request stream."""

    runs: dict[str, RunResult]
    cycle_requests: int
    phases: list[tuple[int, str]]

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "approach": name,
                "take_fraction": r.take_fraction(),
                "take_fraction_last_20pct": r.take_fraction(0.8),
                "cumulative_regret": float(r.cumulative_regret()[-1]),
            }
            for name, r in self.runs.items()
        ]


def batch_vs_online(
    world: World,
    n_requests: int,
    *,
    seed: int = 0,
    online_policy: str = "LinUCB",
    batch_model: str = "Epsilon-greedy",
    cycle_requests: int | None = None,
    update_every: int = 250,
    progress: ProgressCallback | None = None,
) -> BatchOnlineResult:
    """Experiment 1: cumulative regret of a batch cycle and of a continuously learning contextual bandit.

    The batch cycle's model is the shared ridge model served greedily (``epsilon = 0``), retrained once
    per cycle on all uniform exploration data collected so far. Both face the same stream and luck.
    """
    cycle = cycle_requests or max(update_every, n_requests // 3)
    registry, params = POLICY_SUITE[batch_model]
    params = {**params, "epsilon": 0.0} if "epsilon" in params else params

    def make_model() -> Policy:
        return make_policy(registry, seed=seed, **params)

    batch_agent = BatchCycleAgent(make_model, world.config.page_size, cycle, seed=seed, name="Batch cycle")
    online = PolicyAgent(make_suite_policy(online_policy, seed), name=f"Online {online_policy}")
    runs = {
        "Batch cycle": run_closed_loop(
            world, batch_agent, n_requests, update_every=update_every, seed=seed, progress=progress
        ),
        f"Online {online_policy}": run_closed_loop(
            world, online, n_requests, update_every=update_every, seed=seed, progress=progress
        ),
    }
    return BatchOnlineResult(runs, cycle, batch_agent.phase_log)


# ---- experiment 2: replay on a uniform exploration log ------------------------------------------


@dataclass(frozen=True)
class ReplayRow:
    """One policy's replay estimate on the test part of the log, with the world's true value."""

    policy: str
    estimate: float
    lower: float
    upper: float
    truth: float
    ess: float
    n_events: int
    estimator: str

    @property
    def covered(self) -> bool:
        return self.lower <= self.truth <= self.upper


@dataclass(frozen=True)
class ReplayResult:
    """Experiment 2's table and the trained candidates (reused by experiment 3)."""

    rows: list[ReplayRow]
    policies: dict[str, Policy]
    n_train_events: int
    n_test_events: int
    alpha: float
    log: BanditLog  # the held-out part of the log, clustered by member

    @property
    def train_share(self) -> float:
        """The share of the log's events the candidates were trained on."""
        return self.n_train_events / (self.n_train_events + self.n_test_events)

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "policy": r.policy,
                "replay": r.estimate,
                "ci_low": r.lower,
                "ci_high": r.upper,
                "true_value": r.truth,
                "covered": r.covered,
                "ess": r.ess,
            }
            for r in self.rows
        ]


def offline_replay(
    world: World,
    n_requests: int,
    *,
    seed: int = 0,
    candidates: Sequence[str] = ("Random", "Bandit", "LinUCB", "Epsilon-greedy", "Logistic TS"),
    train_fraction: float = 0.7,
    window: int = 500,
    alpha: float = 0.05,
    progress: ProgressCallback | None = None,
) -> ReplayResult:
    """Experiment 2: train candidates on the first part of a uniform-random log, replay them on the rest.

    Logging is uniform over each pool, whose size varies, so the replay estimate is the self-normalized
    one: sum_i w_i r_i / sum_i w_i with w_i = pi(a_i | x_i) / (1 / K_i). With one pool size it is exactly
    Li et al.'s replay (mean reward of the events where the candidate agrees with the log); with varying
    sizes it removes replay's over-weighting of small pools. Intervals come from ``keyart.evaluation``
    (delta method), clustered by member. The log is split after ``round(train_fraction * n_requests)``
    requests (an update window ends there), so the train share is the one asked. The true value of a
    candidate is the mean over the same test events of sum_a pi(a | x_i) P(quality play | x_i, a) under
    the hidden truth.
    """
    if not 0 < train_fraction < 1:
        raise ValidationError(f"train_fraction must be in (0, 1). Got {train_fraction!r}.")
    world.reset()
    featurizer = Featurizer(world.catalog)
    logger = UniformPolicy(seed=seed)
    policies = {name: make_suite_policy(name, seed) for name in candidates}
    n_train = round(train_fraction * n_requests)
    k_max = world.config.max_pool
    reward, action, pscore, masks, members = [], [], [], [], []
    dists: dict[str, list[np.ndarray]] = {name: [] for name in candidates}
    truths: dict[str, list[np.ndarray]] = {name: [] for name in candidates}
    n_train_events = 0
    windows = stream_windows(
        world,
        n_requests,
        window=window,
        seed=seed,
        featurizer=featurizer,
        cut=lambda request: n_train if request < n_train else n_requests,
    )
    for w in windows:
        decisions = logger.choose(w.batch)
        chosen = np.fromiter((d.index for d in decisions), dtype=np.int64, count=len(decisions))
        prop = np.fromiter((d.propensity for d in decisions), dtype=np.float64, count=len(decisions))
        r = world.draw(w.events, chosen, uniforms=w.uniforms).quality.astype(np.float64)
        if w.start < n_train:
            fb = LoggedFeedback(w.batch, chosen, prop, r)
            for p in policies.values():
                p.update(fb)
            n_train_events += w.batch.n
        else:
            q = world.expected(w.events)
            pad = k_max - w.batch.k
            for name, p in policies.items():
                dist = p.probabilities(w.batch)
                truths[name].append((dist * q).sum(1))
                dists[name].append(np.pad(dist, ((0, 0), (0, pad))))
            reward.append(r)
            action.append(chosen)
            pscore.append(prop)
            masks.append(np.pad(w.batch.mask, ((0, 0), (0, pad))))
            members.append(w.batch.member_ids)
        if progress is not None:
            progress(w.requests.n)
    if not reward:
        raise ValidationError("n_requests is too small: the test part of the log is empty.")
    mask = np.concatenate(masks)
    log = BanditLog.from_arrays(
        reward=np.concatenate(reward),
        action=np.concatenate(action),
        pscore=np.concatenate(pscore),
        n_actions=k_max,
        action_mask=mask,
        cluster=np.concatenate(members),
    )
    from keyart.evaluation import EstimatorConfig

    cfg = EstimatorConfig(alpha=alpha)
    rows = []
    for name in candidates:
        dist = np.concatenate(dists[name])
        est = estimate(log, dist, ["snips"], config=cfg, policy=name)[0]
        rows.append(
            ReplayRow(
                name,
                est.value,
                est.lower,
                est.upper,
                float(np.concatenate(truths[name]).mean()),
                est.ess,
                log.n,
                "replay (self-normalized)",
            )
        )
    return ReplayResult(rows, policies, n_train_events, log.n, alpha, log)


# ---- experiment 3: which artwork for comedy fans and for romance fans ---------------------------


@dataclass(frozen=True)
class ShowcaseResult:
    """Per group of members and artwork: the policy's and the oracle's share of impressions."""

    title_id: str
    groups: tuple[str, ...]
    artwork_ids: tuple[str, ...]
    themes: tuple[str, ...]
    styles: tuple[str, ...]
    policy_share: np.ndarray  # (groups, K)
    oracle_share: np.ndarray  # (groups, K)
    n_members: tuple[int, ...]
    policy: str
    member_probabilities: tuple[np.ndarray, ...]  # per group: (members, K) the policy's probabilities

    def _theme_columns(self, theme: str) -> np.ndarray:
        return np.array([theme in t.split("+") for t in self.themes])

    def theme_share_se(self, group: int, theme: str) -> float:
        """Standard error of the policy's ``theme_share`` over the group's members."""
        per_member = self.member_probabilities[group][:, self._theme_columns(theme)].sum(1)
        return float(per_member.std(ddof=1) / math.sqrt(per_member.size)) if per_member.size > 1 else 0.0

    def top(self, group: int, which: str = "policy") -> int:
        share = self.policy_share if which == "policy" else self.oracle_share
        return int(share[group].argmax())

    def theme_share(self, group: int, theme: str, which: str = "policy") -> float:
        share = self.policy_share if which == "policy" else self.oracle_share
        return float(sum(s for s, t in zip(share[group], self.themes, strict=True) if theme in t.split("+")))

    def table(self) -> list[dict[str, Any]]:
        out = []
        for g, group in enumerate(self.groups):
            for k, aid in enumerate(self.artwork_ids):
                out.append(
                    {
                        "members": group,
                        "artwork": aid,
                        "theme": self.themes[k],
                        "style": self.styles[k],
                        "policy_share": float(self.policy_share[g, k]),
                        "oracle_share": float(self.oracle_share[g, k]),
                    }
                )
        return out


def taste_showcase(
    world: World,
    policy: Policy,
    *,
    title_id: str = SHOWCASE_TITLE_ID,
    genres: tuple[str, str] = ("comedy", "romance"),
    n_members: int = 300,
    seed: int = 0,
    policy_name: str | None = None,
) -> ShowcaseResult:
    """Experiment 3: the artwork a trained contextual policy shows one title's members, by hidden taste.

    Members are picked by their hidden tastes (only the experiment may look): inclined to the first genre
    (their strongest, with at least 40% of their genre distribution, and under 5% for the other genre) or
    to the second, among members who never interacted with the title. The policy sees only their
    contexts; its share per artwork is its mean probability. The oracle's share is how often each artwork
    is the truly best one for the members of the group.
    """
    if title_id not in world.title_index:
        raise ValidationError(f"title_id {title_id!r} is not a title of this world.")
    gi = [world.genres.index(g) for g in genres]
    title = world.title_index[title_id]
    taste = world.genre_taste
    rng = np.random.default_rng([world.config.seed, seed, 0x73686F77])
    featurizer = Featurizer(world.catalog)
    groups, pol, orc, counts, se = [], [], [], [], []
    for j, g in enumerate(gi):
        other = gi[1 - j]
        share = world.genre_share
        eligible = np.flatnonzero(
            (taste.argmax(1) == g)
            & (share[:, g] >= 0.4)
            & (share[:, other] < 0.05)
            & ~world.interacted[:, title]
        )
        if eligible.size == 0:
            raise ValidationError(f"No member of this world is inclined to {genres[j]!r}.")
        members = rng.choice(eligible, size=min(n_members, eligible.size), replace=False)
        requests = Requests(
            member=members,
            device=world.member_device[members],
            timestamp=np.full(members.size, world.now),
            titles=np.full((members.size, 1), title),
            recommender=np.zeros((members.size, 1)),
        )
        events, _ = world.events(requests)
        contexts = world.contexts(requests)
        batch = featurize_pages(featurizer, world, requests, contexts)
        probs = policy.probabilities(batch)
        pol.append(probs.mean(0))
        se.append(probs)
        best, _ = world.oracle(events)
        orc.append(np.bincount(best, minlength=batch.k) / members.size)
        groups.append(f"inclined to {genres[j]}")
        counts.append(int(members.size))
    pool = world.catalog.pool(title_id)
    return ShowcaseResult(
        title_id=title_id,
        groups=tuple(groups),
        artwork_ids=tuple(a.artwork_id for a in pool),
        themes=tuple("+".join(a.theme_genres) for a in pool),
        styles=tuple(a.style for a in pool),
        policy_share=np.vstack(pol),
        oracle_share=np.vstack(orc),
        n_members=tuple(counts),
        policy=policy_name or policy.name,
        member_probabilities=tuple(se),
    )


# ---- experiment 4: online A/B test of personalized against unpersonalized -----------------------


@dataclass(frozen=True)
class Lift:
    """Take fraction of each arm, the relative lift (treatment / control - 1) and its interval."""

    segment: str
    control: float
    treatment: float
    lift: float
    lower: float
    upper: float
    n_control: int
    n_treatment: int
    true_lift: float


def _clustered_ratio(y: np.ndarray, cluster: np.ndarray) -> tuple[float, float]:
    """Mean of y and the variance of that mean, with events clustered by member (delta method)."""
    _, inv = np.unique(cluster, return_inverse=True)
    sums = np.bincount(inv, weights=y)
    ns = np.bincount(inv).astype(np.float64)
    mean = sums.sum() / ns.sum()
    resid = sums - mean * ns
    g = ns.size
    var = (resid @ resid) * g / max(g - 1, 1) / ns.sum() ** 2
    return float(mean), float(var)


def lift_interval(
    y: np.ndarray, arm: np.ndarray, member: np.ndarray, alpha: float = 0.05
) -> tuple[float, float, float, float, float]:
    """(control mean, treatment mean, lift, lower, upper): log-ratio CI, member-clustered variances."""
    mc, vc = _clustered_ratio(y[arm == 0], member[arm == 0])
    mt, vt = _clustered_ratio(y[arm == 1], member[arm == 1])
    if mc <= 0 or mt <= 0:
        return mc, mt, math.nan, math.nan, math.nan
    z = float(stats.norm.ppf(1 - alpha / 2))
    se = math.sqrt(vc / mc**2 + vt / mt**2)
    log_ratio = math.log(mt / mc)
    return mc, mt, mt / mc - 1, math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1


@dataclass(frozen=True)
class ABResult:
    """Experiment 4: the lifts (overall and by prior interaction) and the run behind them."""

    lifts: list[Lift]
    run: RunResult
    arms: np.ndarray
    control: str
    treatment: str
    warmup: float

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "segment": x.segment,
                "control": x.control,
                "treatment": x.treatment,
                "lift": x.lift,
                "ci_low": x.lower,
                "ci_high": x.upper,
                "true_lift": x.true_lift,
                "n_control": x.n_control,
                "n_treatment": x.n_treatment,
            }
            for x in self.lifts
        ]


def ab_test(
    world: World,
    n_requests: int,
    *,
    seed: int = 0,
    control: str = "Bandit",
    treatment: str = "LinUCB",
    update_every: int = 250,
    warmup: float = 0.25,
    alpha: float = 0.05,
    progress: ProgressCallback | None = None,
) -> ABResult:
    """Experiment 4: members split by hash; unpersonalized (control) against personalized (treatment).

    Both arms start untrained and learn online from their own traffic; the lift is measured on the
    decisions after the first ``warmup`` fraction of the test, on drawn quality plays, with a
    member-clustered interval. ``true_lift`` uses the world's expected values of the same decisions.
    """
    if not 0 <= warmup < 1:
        raise ValidationError(f"warmup must be in [0, 1). Got {warmup!r}.")
    agent = ABAgent(make_suite_policy(control, seed), make_suite_policy(treatment, seed + 1))
    run = run_closed_loop(world, agent, n_requests, update_every=update_every, seed=seed, progress=progress)
    arms = agent.arms
    keep = np.arange(run.n_decisions) >= int(warmup * run.n_decisions)
    lifts = []
    for segment, sel in (
        ("all", keep),
        ("no prior interaction", keep & ~run.interacted),
        ("prior interaction", keep & run.interacted),
    ):
        y, a, m = run.reward[sel], arms[sel], run.member[sel]
        mc, mt, lift, lo, hi = lift_interval(y, a, m, alpha)
        e = run.expected[sel]
        true_lift = float(e[a == 1].mean() / e[a == 0].mean() - 1)
        lifts.append(Lift(segment, mc, mt, lift, lo, hi, int((a == 0).sum()), int((a == 1).sum()), true_lift))
    return ABResult(lifts, run, arms, control, treatment, warmup)


# ---- the long closed-loop comparison ------------------------------------------------------------


@dataclass(frozen=True)
class ClosedLoopComparison:
    """Every policy on the same request stream: take fraction of the last part, ratio, gap captured."""

    runs: dict[str, RunResult]
    last: float = 0.2
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        start = 1.0 - self.last
        bandit = self.runs["Bandit"].take_fraction(start) if "Bandit" in self.runs else math.nan
        rows = []
        for name, r in self.runs.items():
            tf = r.take_fraction(start)
            rows.append(
                {
                    "policy": name,
                    "take_fraction": tf,
                    "take_fraction_drawn": r.take_fraction(start, expected=False),
                    "ratio_to_bandit": tf / bandit,
                    "gap_captured": r.gap_captured(start),
                    "random": r.random_take_fraction(start),
                    "oracle": r.oracle_take_fraction(start),
                    "requests_per_second": r.requests_per_second,
                }
            )
        return rows

    def best_contextual(self) -> str:
        names = [n for n in self.runs if n not in NON_CONTEXTUAL]
        return max(names, key=lambda n: self.runs[n].take_fraction(1.0 - self.last))


def compare_closed_loop(
    world: World,
    n_requests: int,
    *,
    policies: Sequence[str] = tuple(POLICY_SUITE),
    seed: int = 0,
    update_every: int = 1000,
    progress: Callable[[str, int], None] | None = None,
) -> ClosedLoopComparison:
    """Run each named policy of ``POLICY_SUITE`` for ``n_requests`` on the same stream and luck."""
    runs = {}
    for name in policies:
        agent = PolicyAgent(make_suite_policy(name, seed), name=name)
        cb = None if progress is None else (lambda k, _n=name: progress(_n, k))
        runs[name] = run_closed_loop(
            world, agent, n_requests, update_every=update_every, seed=seed, progress=cb
        )
    return ClosedLoopComparison(runs)


def format_table(rows: Sequence[Mapping[str, Any]], digits: int = 4) -> str:
    """A plain-text table (for benchmarks and logs)."""
    if not rows:
        return ""
    cols = list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    body = [[cell(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join(
        [line, sep] + ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keyart.simulation.experiments closed-loop --requests N --seed S [--policies a,b]``."""
    import argparse
    import sys
    import time

    from keyart.simulation.config import demo_config

    parser = argparse.ArgumentParser(prog="python -m keyart.simulation.experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    cl = sub.add_parser("closed-loop", help="every policy in closed loop on the demo world")
    cl.add_argument("--requests", type=int, default=200_000)
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument("--update-every", type=int, default=1000)
    cl.add_argument("--policies", default=",".join(POLICY_SUITE))
    args = parser.parse_args(argv)
    world = World(demo_config(seed=args.seed))
    names = [p.strip() for p in args.policies.split(",") if p.strip()]
    t0 = time.perf_counter()
    cmp_ = compare_closed_loop(
        world, args.requests, policies=names, seed=args.seed, update_every=args.update_every
    )
    print(f"$ python -m keyart.simulation.experiments {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(
        f"world: {world!r}, page size {world.config.page_size}, {args.requests:,} requests "
        f"({args.requests * world.config.page_size:,} decisions), update every {args.update_every}"
    )
    print(format_table(cmp_.table()))
    print(f"best contextual: {cmp_.best_contextual()}; wall time {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
