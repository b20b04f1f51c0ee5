"""Clustered logs (``BanditLog.cluster``): standard errors against a plain cluster-robust sandwich, whole
clusters in both bootstraps and in cross-fitting, replay's effective matches, the ``model_bias`` and
``few_reward_events`` flags, and bad cluster ids."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from keyart.errors import DimensionError, ValidationError
from keyart.evaluation import BanditLog, EstimatorConfig, TabularRewardModel, cross_fit, estimate
from keyart.evaluation.clusters import _Clusters, _folds

Z = 1.959963984540054


def _problem(seed: int, n: int = 90, k: int = 4, el: int = 2, g: int = 15):
    """A random log with positions and ``g`` clusters of uneven sizes (string ids, shuffled order)."""
    rng = np.random.default_rng(seed)
    action = rng.integers(0, k, n)
    position = rng.integers(0, el, n)
    pscore = rng.uniform(0.1, 1.0, n)
    reward = rng.binomial(1, 0.4, n).astype(float)
    dist = rng.dirichlet(np.ones(k), size=(n, el)).transpose(0, 2, 1)
    q_hat = rng.uniform(0, 1, (n, k, el))
    member = [f"m{j}" for j in rng.choice(g, size=n, p=rng.dirichlet(np.ones(g)))]
    return reward, action, position, pscore, dist, q_hat, member


def _parts(name, reward, action, position, pscore, dist, q_hat):
    """(a, b, c) per event with theta = mean(a) + mean(b) / mean(c), written as plain loops."""
    a, b, c = [], [], []
    for i in range(len(reward)):
        w = dist[i, action[i], position[i]] / pscore[i]
        q_pi = sum(dist[i, x, position[i]] * q_hat[i, x, position[i]] for x in range(dist.shape[1]))
        resid = reward[i] - q_hat[i, action[i], position[i]]
        a.append({"ips": 0.0, "snips": 0.0, "dr": q_pi, "sndr": q_pi}[name])
        b.append(w * reward[i] if name in ("ips", "snips") else w * resid)
        c.append(w if name in ("snips", "sndr") else 1.0)
    return a, b, c


def _sandwich_se(a, b, c, cluster) -> float:
    """Cluster-robust sandwich for the three means (g / (g - 1) small-sample factor), then the delta method
    for theta = mu_a + mu_b / mu_c."""
    n = len(a)
    mu = [sum(a) / n, sum(b) / n, sum(c) / n]
    totals: dict[object, list[float]] = {}
    for i in range(n):
        u = totals.setdefault(cluster[i], [0.0, 0.0, 0.0])
        for j, x in enumerate((a[i], b[i], c[i])):
            u[j] += x - mu[j]
    g = len(totals)
    meat = [
        [sum(u[j] * u[k] for u in totals.values()) * g / (g - 1) / n**2 for k in range(3)] for j in range(3)
    ]
    grad = [1.0, 1.0 / mu[2], -mu[1] / mu[2] ** 2]
    return math.sqrt(sum(grad[j] * meat[j][k] * grad[k] for j in range(3) for k in range(3)))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("clustered", [True, False])
def test_standard_errors_match_the_cluster_robust_sandwich(seed: int, clustered: bool) -> None:
    reward, action, position, pscore, dist, q_hat, member = _problem(seed)
    log = BanditLog.from_arrays(reward, action, pscore, position, cluster=member if clustered else None)
    units = member if clustered else list(range(len(reward)))  # no clusters: each event its own
    names = ["ips", "snips", "dr", "sndr"]
    for e in estimate(log, dist, names, estimated_rewards=q_hat):
        a, b, c = _parts(e.estimator, reward, action, position, pscore, dist, q_hat)
        assert e.se == pytest.approx(_sandwich_se(a, b, c, units), rel=1e-10), e.estimator
        assert e.upper - e.value == pytest.approx(Z * e.se) and e.ci_method == "normal"
        assert e.n_clusters == len(set(units))


def test_clustering_widens_the_interval_of_a_correlated_log() -> None:
    reward, action, position, pscore, dist, q_hat, _ = _problem(2, n=400)
    member = np.arange(400) // 20  # 20 events per member, rewards shared within a member
    reward = np.repeat(np.random.default_rng(0).binomial(1, 0.4, 20), 20).astype(float)
    plain = BanditLog.from_arrays(reward, action, pscore, position)
    clustered = BanditLog.from_arrays(reward, action, pscore, position, cluster=member)
    for e0, e1 in zip(
        estimate(plain, dist, ["ips", "dr"], estimated_rewards=q_hat),
        estimate(clustered, dist, ["ips", "dr"], estimated_rewards=q_hat),
        strict=True,
    ):
        assert e1.value == e0.value
        assert e1.se > 1.5 * e0.se


def _replicated(seed: int, g: int = 40, m: int = 3):
    """A log of g events, and the same log with every event copied m times as one cluster (shuffled)."""
    rng = np.random.default_rng(seed)
    k = 3
    action = rng.integers(0, k, g)
    reward = rng.binomial(1, 0.5, g).astype(float)
    pscore = rng.uniform(0.2, 0.6, g)
    dist = rng.dirichlet(np.ones(k), size=g)
    order = rng.permutation(g * m)
    rows = np.repeat(np.arange(g), m)[order]
    # each event its own cluster, with the ids of its copies' cluster: the same (hashed) cross-fitting
    # folds, and the unclustered formulas (test_each_event_its_own_cluster_is_the_unclustered_analysis)
    small = BanditLog.from_arrays(reward, action, pscore, n_actions=k, cluster=np.arange(g))
    big = BanditLog.from_arrays(reward[rows], action[rows], pscore[rows], n_actions=k, cluster=rows)
    return small, dist, big, dist[rows]


@pytest.mark.parametrize(
    "cfg",
    [
        EstimatorConfig(ci="normal"),
        EstimatorConfig(ci="bootstrap", n_bootstrap=200, n_refit=20),
        EstimatorConfig(n_refit=20),
    ],
    ids=["normal", "bootstrap", "auto-refit"],
)
def test_a_cluster_of_copies_counts_once(cfg: EstimatorConfig) -> None:
    """Known truth: m identical copies of an event, clustered, carry the information of one event. So the
    clustered analysis of the copied log equals the unclustered analysis of the original log, for the
    normal s.e., the percentile bootstrap (whole clusters resampled) and the refit bootstrap (whole
    clusters resampled and kept in one cross-fitting fold)."""
    small, dist, big, big_dist = _replicated(3)
    names = ["ips", "snips", "dm", "dr", "sndr", "switch_dr", "dr_os"]
    model = TabularRewardModel(prior_strength=0.0)  # plain means: copies do not change the fit
    ref = estimate(small, dist, names, reward_model=model, config=cfg, seed=5)
    got = estimate(big, big_dist, names, reward_model=model, config=cfg, seed=5)
    for r, e in zip(ref, got, strict=True):
        assert e.ci_method == r.ci_method
        for attr in ("value", "lower", "upper", "se", "mean_weight"):
            assert getattr(e, attr) == pytest.approx(getattr(r, attr), rel=1e-9, abs=1e-12), (
                e.estimator,
                attr,
            )
        assert (("model_bias" in e.flags) == ("model_bias" in r.flags)) and e.ci_method == r.ci_method
        assert (e.n, e.n_clusters, r.n_clusters) == (120, 40, 40)
    # without the clusters the copies pass for independent events: intervals about sqrt(3) too narrow
    naive = estimate(BanditLog.from_arrays(big.reward, big.action, big.pscore), big_dist, ["ips"])[0]
    assert naive.se == pytest.approx(ref[0].se / math.sqrt(3), rel=0.05)


class _FixedModel:
    """A reward model whose predictions do not depend on its training events (so on the folds): the
    plain and the clustered log are cross-fitted alike although their folds are drawn by different rules
    (a permutation of the events, a hash of the cluster ids)."""

    def fit(self, log: BanditLog) -> _FixedModel:
        return self

    def predict(self, log: BanditLog) -> np.ndarray:
        keys = log.arm_keys()[:, :, None] + log.position[:, None, None]
        return np.broadcast_to(0.1 + 0.05 * (keys % 5), (log.n, log.n_actions, log.n_positions)).copy()


def test_each_event_its_own_cluster_is_the_unclustered_analysis() -> None:
    reward, action, position, pscore, dist, _, _ = _problem(4, n=200)
    ids = [f"e{i:04d}" for i in range(200)]  # sorted like the events: same resampling draws
    plain = BanditLog.from_arrays(reward, action, pscore, position)
    single = BanditLog.from_arrays(reward, action, pscore, position, cluster=ids)
    names = ["ips", "snips", "dm", "dr", "sndr", "dr_os"]
    for cfg in (EstimatorConfig(n_refit=20), EstimatorConfig(ci="bootstrap", n_bootstrap=100, n_refit=20)):
        for e0, e1 in zip(
            estimate(plain, dist, names, config=cfg, reward_model=_FixedModel()),
            estimate(single, dist, names, config=cfg, reward_model=_FixedModel()),
            strict=True,
        ):
            for attr in ("value", "lower", "upper", "se"):
                assert getattr(e1, attr) == pytest.approx(getattr(e0, attr), rel=1e-9), (e0.estimator, attr)


def test_cross_fitting_keeps_a_cluster_in_one_fold() -> None:
    seen: list[tuple[set[int], set[int]]] = []

    class Recording:
        def fit(self, log: BanditLog):
            fitted = TabularRewardModel().fit(log)
            train = set(log.cluster.tolist())

            class Predict:
                def predict(self, sub: BanditLog) -> np.ndarray:
                    seen.append((train, set(sub.cluster.tolist())))
                    return fitted.predict(sub)

            return Predict()

    reward, action, position, pscore, dist, _, member = _problem(5, n=300, g=25)
    log = BanditLog.from_arrays(reward, action, pscore, position, cluster=member)
    estimate(log, dist, ["dm", "dr"], reward_model=Recording(), n_folds=3, config=EstimatorConfig(n_refit=10))
    assert len(seen) == 3 * 11  # 3 folds, on the log and on each of the 10 refits
    for train, test in seen:
        assert train and test and not train & test
    with pytest.raises(ValidationError, match="number of clusters"):
        estimate(log, dist, ["dr"], n_folds=26)


def _hashed_fold(name: str, n_folds: int, seed: int) -> int:
    """The fold rule written out: 64-bit BLAKE2b of f"{seed}:{id}" personalized "fold", little-endian,
    modulo the number of folds."""
    h = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8, person=b"fold".ljust(16, b"\0"))
    return int.from_bytes(h.digest(), "little") % n_folds


def _dm_reference(log: BanditLog, dist: np.ndarray, q_hat: np.ndarray) -> float:
    rows = np.arange(log.n)
    return float((dist[rows, :, log.position] * q_hat[rows, :, log.position]).sum(axis=1).mean())


@pytest.mark.parametrize(("n_folds", "seed"), [(2, 0), (3, 11)])
def test_a_clusters_fold_is_a_hash_of_its_id_and_the_seed(n_folds: int, seed: int) -> None:
    """The cross-fitting folds of a clustered log: each member's fold is the keyed hash of its id and the
    seed (so any process computes it from the id alone: Spark's executors do), whatever else is in the
    log; DM's value is the one of a cross-fit over exactly those folds."""
    reward, action, position, pscore, dist, _, member = _problem(7, n=300, g=40)
    log = BanditLog.from_arrays(reward, action, pscore, position, cluster=member)
    folds = np.array([_hashed_fold(m, n_folds, seed) for m in member])
    assert np.array_equal(_folds(log, _Clusters.of(log), n_folds, seed), folds)
    model = TabularRewardModel()
    ref = cross_fit(model, log, n_folds=n_folds, folds=folds)
    cfg = EstimatorConfig(ci="normal")
    (dm,) = estimate(log, dist, ["dm"], reward_model=model, n_folds=n_folds, seed=seed, config=cfg)
    assert dm.value == pytest.approx(_dm_reference(log, dist, ref), rel=1e-12)
    keep = np.flatnonzero(np.isin(member, sorted(set(member))[::2]))  # half of the members left out
    sub = log.take(keep)
    assert np.array_equal(_folds(sub, _Clusters.of(sub), n_folds, seed), folds[keep])


def test_hashed_folds_split_the_clusters_evenly() -> None:
    """Each of 3 folds gets about a third of 30,000 ids (binomial s.d. 0.0027: 0.02 is 7 s.d.)."""
    n = 30_000
    log = BanditLog.from_arrays(np.zeros(n), np.zeros(n, int), np.ones(n), cluster=range(n))
    shares = np.bincount(_folds(log, _Clusters.of(log), 3, 0), minlength=3) / n
    assert np.all(np.abs(shares - 1 / 3) < 0.02)


def test_tiny_logs_empty_folds_and_one_fold() -> None:
    """A fold no cluster hashes to is left out of the cross-fit (the others still predict each other);
    when every cluster hashes to one fold, cross-fitting is refused with a clear error."""
    names = [f"m{j}" for j in range(200)]
    in0 = [m for m in names if _hashed_fold(m, 3, 0) == 0 and _hashed_fold(m, 2, 0) == 0][:2]
    in1 = [m for m in names if _hashed_fold(m, 3, 0) == 1][:2]
    rng = np.random.default_rng(8)
    member = [(in0 + in1)[j % 4] for j in range(40)]
    reward = rng.binomial(1, 0.5, 40).astype(float)
    action = rng.integers(0, 2, 40)
    log = BanditLog.from_arrays(reward, action, np.full(40, 0.5), cluster=member)
    dist = np.full((40, 2), 0.5)
    cfg = EstimatorConfig(ci="normal")
    model = TabularRewardModel()
    (dm,) = estimate(log, dist, ["dm"], reward_model=model, n_folds=3, config=cfg)  # fold 2 is empty
    folds = np.array([_hashed_fold(m, 3, 0) for m in member])
    assert set(folds.tolist()) == {0, 1}
    ref = cross_fit(model, log, n_folds=3, folds=folds)
    assert dm.value == pytest.approx(_dm_reference(log, dist[:, :, None], ref), rel=1e-12)
    one = BanditLog.from_arrays(reward, action, np.full(40, 0.5), cluster=[in0[j % 2] for j in range(40)])
    with pytest.raises(ValidationError, match="hashed to one of the 2 cross-fitting folds"):
        estimate(one, dist, ["dr"], reward_model=model, n_folds=2, seed=0, config=cfg)


def test_clustered_replay_uses_the_effective_number_of_matches() -> None:
    rng = np.random.default_rng(6)
    n, k = 600, 3
    member = np.arange(n) // 12  # 50 members whose rewards share a member-level rate
    action = rng.integers(0, k, n)
    reward = rng.binomial(1, np.repeat(rng.uniform(0.05, 0.95, n // 12), 12)).astype(float)
    log = BanditLog.from_arrays(reward, action, np.full(n, 1 / k), n_actions=k, cluster=member)
    dist = np.tile([1.0, 0.0, 0.0], (n, 1))
    (rep,) = estimate(log, dist, ["replay"])
    match = action == 0
    p = reward[match].mean()
    se = _sandwich_se([0.0] * n, list(match * reward), list(match.astype(float)), member)
    n_eff = min(int(match.sum()), p * (1 - p) / se**2)
    den = 1 + Z * Z / n_eff
    mid = (p + Z * Z / (2 * n_eff)) / den
    half = Z * math.sqrt(p * (1 - p) / n_eff + Z * Z / (4 * n_eff**2)) / den
    assert rep.ci_method == "wilson" and rep.se == pytest.approx(se)
    assert (rep.lower, rep.upper) == pytest.approx((mid - half, mid + half))
    assert n_eff < 0.75 * match.sum()  # correlated members: fewer effective matches
    # no successes: the design effect is unknown; the matched members count, Wilson's upper = z^2/(g + z^2)
    zero = BanditLog.from_arrays(np.zeros(n), action, np.full(n, 1 / k), n_actions=k, cluster=member)
    (rep0,) = estimate(zero, dist, ["replay"])
    g_matched = len(set(member[match].tolist()))
    assert (rep0.value, rep0.lower) == (0.0, 0.0)
    assert rep0.upper == pytest.approx(Z * Z / (g_matched + Z * Z))


def test_model_bias_flag_is_the_paired_clustered_test() -> None:
    """``model_bias`` fires on DM, Switch-DR and DR-os exactly when |theta - DR| > z * s.e. of the paired
    difference, summed within clusters (reference: plain loops). Rewards are shared within a member, so
    the clustered s.e. is wider than the i.i.d. one and some reward models fall between the two."""
    reward, action, position, pscore, dist, _, member = _problem(7, n=300, g=40)
    first = {m: i for i, m in reversed(list(enumerate(member)))}
    reward = np.array([reward[first[m]] for m in member])
    log = BanditLog.from_arrays(reward, action, pscore, position, cluster=member)
    cfg = EstimatorConfig(ci="normal", switch_lambda=2.0, dr_os_lambda=1.0)
    n = log.n
    w = [dist[i, action[i], position[i]] / pscore[i] for i in range(n)]
    snips = sum(w[i] * reward[i] for i in range(n)) / sum(w)
    fired: dict[tuple[object, str], bool] = {}
    between = 0
    models = [("exact", np.full(dist.shape, snips))]  # DM == DR exactly
    models += [(c, np.full(dist.shape, c)) for c in np.linspace(0.0, 1.0, 41)]
    models += [("random", np.random.default_rng(8).uniform(0.3, 0.5, dist.shape))]
    for label, q_hat in models:
        dr, *others = estimate(
            log, dist, ["dr", "dm", "switch_dr", "dr_os"], estimated_rewards=q_hat, config=cfg
        )
        assert "model_bias" not in dr.flags
        for e in others:
            diff = []
            for i in range(n):
                wi = w[i]
                x = {"dm": 0.0, "switch_dr": wi * (wi <= 2.0), "dr_os": wi / (wi * wi + 1.0)}[e.estimator]
                diff.append((x - wi) * (reward[i] - q_hat[i, action[i], position[i]]))
            mean = sum(diff) / n
            totals: dict[str, float] = {}
            for i in range(n):
                totals[member[i]] = totals.get(member[i], 0.0) + diff[i] - mean
            g = len(totals)
            se = math.sqrt(sum(t * t for t in totals.values()) * g / (g - 1)) / n
            se_iid = math.sqrt(sum((d - mean) ** 2 for d in diff) / (n - 1) / n)
            assert e.value - dr.value == pytest.approx(mean, abs=1e-12)
            assert ("model_bias" in e.flags) == (abs(mean) > Z * se), (label, e.estimator)
            between += Z * se_iid < abs(mean) <= Z * se
            fired[label, e.estimator] = "model_bias" in e.flags
    assert fired[1.0, "dm"] and not fired["exact", "dm"]
    assert between >= 3  # the i.i.d. test would have fired there: the clustering matters


def test_few_reward_events_counts_rewarded_events_with_weight_for_every_weighted_estimator() -> None:
    rng = np.random.default_rng(9)
    n, k = 3000, 4
    action = rng.integers(0, k, n)
    names = ["ips", "snips", "dm", "dr", "sndr", "switch_dr", "dr_os"]
    dist = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))

    def flagged(reward: np.ndarray) -> set[str]:
        log = BanditLog.from_arrays(reward, action, np.full(n, 1 / k), n_actions=k)
        es = estimate(log, dist, names, config=EstimatorConfig(ci="normal"))
        return {e.estimator for e in es if "few_reward_events" in e.flags}

    on_target = np.flatnonzero(action == 0)
    rare = np.zeros(n)
    rare[on_target[:29]] = 1.0  # 29 rewarded events the candidate wants
    assert flagged(rare) == set(names) - {"dm"}
    rare[on_target[29]] = 1.0  # 30: enough
    assert flagged(rare) == set()
    elsewhere = np.where(action != 0, 1.0, 0.0)  # thousands of rewards, all where w = 0
    elsewhere[on_target[:5]] = 1.0
    assert flagged(elsewhere) == set(names) - {"dm"}


def test_few_clusters_flag_and_cluster_ids() -> None:
    reward, action, position, pscore, dist, q_hat, _ = _problem(10, n=200)
    few = BanditLog.from_arrays(reward, action, pscore, position, cluster=np.arange(200) % 12)
    many = BanditLog.from_arrays(reward, action, pscore, position, cluster=np.arange(200) % 50)
    plain = BanditLog.from_arrays(reward, action, pscore, position)
    for log, expect in ((few, True), (many, False), (plain, False)):
        for e in estimate(log, dist, ["ips", "dr"], estimated_rewards=q_hat):
            assert ("few_clusters" in e.flags) == expect
            assert e.as_row()["n_clusters"] == e.n_clusters
    # any hashable ids: tuples (member, day), mixed types; codes follow sorted ids when they sort
    tup = BanditLog.from_arrays([1.0, 0.0, 1.0], [0, 1, 0], [0.5] * 3, cluster=[("m", 2), ("m", 1), ("m", 2)])
    assert tup.cluster.tolist() == [1, 0, 1]
    mixed = BanditLog.from_arrays([1.0, 0.0, 1.0], [0, 1, 0], [0.5] * 3, cluster=[7, "x", 7])
    assert mixed.cluster.tolist() == [0, 1, 0]
    assert few.take(np.array([0, 13, 12])).cluster.tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("cluster", "exc", "match"),
    [
        (["a", "b"], DimensionError, "cluster has 2 rows but reward has 3"),
        (np.zeros((3, 2)), DimensionError, "cluster must be 1-dimensional"),
        (["a", None, "b"], ValidationError, r"missing ids \(None or NaN\) at rows 1"),
        ([1.0, 2.0, math.nan], ValidationError, "missing ids"),
        ([[1], [2], [3]], ValidationError, "hashable"),
        ("abc", ValidationError, "not a single string"),
        (5, DimensionError, "1-dimensional"),
    ],
)
def test_bad_cluster_ids_raise_clear_errors(cluster, exc, match) -> None:
    with pytest.raises(exc, match=match):
        BanditLog.from_arrays([1.0, 0.0, 1.0], [0, 1, 2], [0.5, 0.5, 0.25], cluster=cluster)
