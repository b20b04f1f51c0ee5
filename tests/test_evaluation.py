"""Estimators against plain reference loops (OBP's definitions), bad inputs, diagnostics and flags."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyart.errors import DimensionError, UnknownIdError, ValidationError
from keyart.evaluation import (
    ESTIMATORS,
    BanditLog,
    EmptyLogError,
    EstimatorConfig,
    LinearRewardModel,
    TabularRewardModel,
    compare,
    cross_fit,
    estimate,
)


def _random_problem(seed: int, n: int = 60, k: int = 5, el: int = 3):
    rng = np.random.default_rng(seed)
    action = rng.integers(0, k, n)
    position = rng.integers(0, el, n)
    pscore = rng.uniform(0.05, 1.0, n)
    reward = rng.binomial(1, 0.4, n).astype(float)
    dist = rng.dirichlet(np.ones(k), size=(n, el)).transpose(0, 2, 1)  # (n, K, L), sums over K
    q_hat = rng.uniform(0, 1, (n, k, el))
    return reward, action, position, pscore, dist, q_hat


def _reference(name, reward, action, position, pscore, dist, q_hat, cfg):
    """Plain per-event loops written from OBP's estimator definitions."""
    n = len(reward)
    w = [dist[i, action[i], position[i]] / pscore[i] for i in range(n)]
    q_pi = [
        sum(dist[i, a, position[i]] * q_hat[i, a, position[i]] for a in range(dist.shape[1]))
        for i in range(n)
    ]
    q_a = [q_hat[i, action[i], position[i]] for i in range(n)]
    mean_w = sum(w) / n
    total = 0.0
    for i in range(n):
        if name == "ips":
            total += w[i] * reward[i]
        elif name == "snips":
            total += w[i] * reward[i] / mean_w
        elif name == "dm":
            total += q_pi[i]
        elif name == "dr":
            total += q_pi[i] + w[i] * (reward[i] - q_a[i])
        elif name == "sndr":
            total += q_pi[i] + w[i] * (reward[i] - q_a[i]) / mean_w
        elif name == "switch_dr":
            total += q_pi[i] + (w[i] <= cfg.switch_lambda) * w[i] * (reward[i] - q_a[i])
        elif name == "dr_os":
            lam = cfg.dr_os_lambda
            total += q_pi[i] + lam * w[i] / (w[i] ** 2 + lam) * (reward[i] - q_a[i])
    return total / n


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["ips", "snips", "dm", "dr", "sndr", "switch_dr", "dr_os"])
def test_estimators_match_reference_loops(seed: int, name: str) -> None:
    reward, action, position, pscore, dist, q_hat = _random_problem(seed)
    cfg = EstimatorConfig(switch_lambda=3.0, dr_os_lambda=2.0)
    log = BanditLog.from_arrays(reward, action, pscore, position, n_actions=5, n_positions=3)
    (est,) = estimate(log, dist, [name], estimated_rewards=q_hat, config=cfg)
    ref = _reference(name, reward, action, position, pscore, dist, q_hat, cfg)
    assert est.value == pytest.approx(ref, rel=1e-12, abs=1e-12)
    assert est.lower < est.value < est.upper or est.se == 0


def test_ips_interval_is_the_clt_interval() -> None:
    reward, action, position, pscore, dist, _ = _random_problem(3)
    log = BanditLog.from_arrays(reward, action, pscore, position)
    (est,) = estimate(log, dist, ["ips"])
    terms = [dist[i, action[i], position[i]] / pscore[i] * reward[i] for i in range(len(reward))]
    se = np.std(terms, ddof=1) / math.sqrt(len(terms))
    assert est.se == pytest.approx(se)
    assert est.upper - est.value == pytest.approx(1.959963984540054 * se)


@pytest.mark.parametrize("name", ["snips", "dr", "sndr"])
def test_snips_dr_sndr_standard_errors_match_the_delta_method(name: str) -> None:
    """s.e. = sample s.d. of the linearized terms / sqrt(n): DR's per-event terms, and for the ratios
    SNIPS = sum(w r) / sum(w) and SNDR = mean(q_pi) + sum(w e) / sum(w) the delta-method terms."""
    reward, action, position, pscore, dist, q_hat = _random_problem(3)
    log = BanditLog.from_arrays(reward, action, pscore, position)
    (est,) = estimate(log, dist, [name], estimated_rewards=q_hat)
    n = len(reward)
    w = [dist[i, action[i], position[i]] / pscore[i] for i in range(n)]
    q_pi = [sum(dist[i, a, position[i]] * q_hat[i, a, position[i]] for a in range(5)) for i in range(n)]
    resid = [reward[i] - q_hat[i, action[i], position[i]] for i in range(n)]
    mean_w = sum(w) / n
    if name == "dr":
        terms = [q_pi[i] + w[i] * resid[i] for i in range(n)]
    elif name == "snips":
        ratio = sum(w[i] * reward[i] for i in range(n)) / sum(w)
        terms = [w[i] * (reward[i] - ratio) / mean_w for i in range(n)]
    else:
        ratio = sum(w[i] * resid[i] for i in range(n)) / sum(w)
        terms = [q_pi[i] + w[i] * (resid[i] - ratio) / mean_w for i in range(n)]
    se = statistics.stdev(terms) / math.sqrt(n)
    assert est.se == pytest.approx(se, rel=1e-10)
    assert (est.lower, est.upper) == pytest.approx(
        (est.value - 1.959963984540054 * se, est.value + 1.959963984540054 * se)
    )


def test_clipping_matches_reference() -> None:
    reward, action, position, pscore, dist, q_hat = _random_problem(4)
    log = BanditLog.from_arrays(reward, action, pscore, position)
    cfg = EstimatorConfig(ips_clip=2.0, dr_clip=2.0)
    ips, dr = estimate(log, dist, ["ips", "dr"], estimated_rewards=q_hat, config=cfg)
    w = np.minimum(dist[np.arange(60), action, position] / pscore, 2.0)
    assert ips.value == pytest.approx(np.mean(w * reward))
    q_pi = (dist * q_hat)[np.arange(60), :, position].sum(axis=1)
    assert dr.value == pytest.approx(np.mean(q_pi + w * (reward - q_hat[np.arange(60), action, position])))


def test_dr_os_infinite_lambda_is_dr_and_zero_lambda_is_dm() -> None:
    reward, action, position, pscore, dist, q_hat = _random_problem(5)
    log = BanditLog.from_arrays(reward, action, pscore, position)
    dr, dm = estimate(log, dist, ["dr", "dm"], estimated_rewards=q_hat)
    (inf,) = estimate(
        log, dist, ["dr_os"], estimated_rewards=q_hat, config=EstimatorConfig(dr_os_lambda=math.inf)
    )
    (zero,) = estimate(
        log, dist, ["dr_os"], estimated_rewards=q_hat, config=EstimatorConfig(dr_os_lambda=0.0)
    )
    assert inf.value == pytest.approx(dr.value)
    assert zero.value == pytest.approx(dm.value)


def test_replay_deterministic_matches_li_et_al() -> None:
    rng = np.random.default_rng(0)
    n, k = 400, 4
    action = rng.integers(0, k, n)
    reward = rng.binomial(1, 0.3, n).astype(float)
    choice = rng.integers(0, k, n)
    dist = np.eye(k)[choice]
    log = BanditLog.from_arrays(reward, action, np.full(n, 1 / k))
    (rep,) = estimate(log, dist, ["replay"])
    match = choice == action
    assert rep.n_matches == int(match.sum())
    assert rep.value == pytest.approx(reward[match].mean())
    assert rep.ci_method == "wilson"
    assert rep.lower < rep.value < rep.upper


def test_replay_stochastic_is_seeded() -> None:
    reward, action, position, _, dist, _ = _random_problem(6, n=300)
    log = BanditLog.from_arrays(reward, action, np.full(300, 0.2), position, n_actions=5, n_positions=3)
    a = estimate(log, dist, ["replay"], config=EstimatorConfig(replay_seed=1))[0]
    b = estimate(log, dist, ["replay"], config=EstimatorConfig(replay_seed=1))[0]
    c = estimate(log, dist, ["replay"], config=EstimatorConfig(replay_seed=2))[0]
    assert a == b
    assert (a.value, a.n_matches) != (c.value, c.n_matches)


def test_bootstrap_interval_brackets_estimate_and_is_seeded() -> None:
    reward, action, position, pscore, dist, q_hat = _random_problem(7, n=200)
    log = BanditLog.from_arrays(reward, action, pscore, position)
    cfg = EstimatorConfig(ci="bootstrap", n_bootstrap=300)
    e1 = estimate(log, dist, ["ips", "snips", "dr"], estimated_rewards=q_hat, config=cfg, seed=3)
    e2 = estimate(log, dist, ["ips", "snips", "dr"], estimated_rewards=q_hat, config=cfg, seed=3)
    assert e1 == e2
    normal = estimate(log, dist, ["ips"], estimated_rewards=q_hat)[0]
    assert e1[0].lower < e1[0].value < e1[0].upper
    assert e1[0].upper - e1[0].lower == pytest.approx(normal.upper - normal.lower, rel=0.25)


def test_weight_diagnostics() -> None:
    reward, action, position, pscore, dist, _ = _random_problem(8)
    log = BanditLog.from_arrays(reward, action, pscore, position)
    (e,) = estimate(log, dist, ["ips"])
    w = dist[np.arange(60), action, position] / pscore
    assert e.max_weight == pytest.approx(w.max())
    assert e.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert e.mean_weight == pytest.approx(w.mean())


def _uniform_log(
    n: int, k: int, seed: int = 0, pscore: float | None = None
) -> tuple[BanditLog, np.random.Generator]:
    rng = np.random.default_rng(seed)
    action = rng.integers(0, k, n)
    reward = rng.binomial(1, 0.5, n).astype(float)
    return BanditLog.from_arrays(reward, action, np.full(n, pscore or 1 / k), n_actions=k), rng


def test_flags_support_deficiency_when_candidate_wants_unlogged_action() -> None:
    log, _ = _uniform_log(1000, 4)
    log = BanditLog.from_arrays(log.reward, np.minimum(log.action, 2), np.full(1000, 1 / 3), n_actions=4)
    dist = np.tile([0.0, 0.0, 0.0, 1.0], (1000, 1))
    est = estimate(log, dist, ["ips", "dr"])
    for e in est:
        assert e.unsupported_mass == pytest.approx(1.0)
        assert "support_deficiency" in e.flags


def test_flags_support_deficiency_exactly_from_logged_distribution() -> None:
    log, _ = _uniform_log(500, 3)
    logging = np.tile([0.5, 0.5, 0.0], (500, 1))
    log = BanditLog.from_arrays(
        log.reward, np.minimum(log.action, 1), np.full(500, 0.5), n_actions=3, logging_dist=logging
    )
    dist = np.tile([0.4, 0.4, 0.2], (500, 1))
    (e,) = estimate(log, dist, ["ips"])
    assert e.unsupported_mass == pytest.approx(0.2)
    assert "support_deficiency" in e.flags


def test_flags_tiny_propensities_and_domination() -> None:
    n = 2000
    rng = np.random.default_rng(1)
    action = np.zeros(n, dtype=np.int64)
    action[:5] = 1  # a handful of events with tiny propensity
    pscore = np.where(action == 1, 1e-4, 1 - 1e-4)
    reward = rng.binomial(1, 0.5, n).astype(float)
    log = BanditLog.from_arrays(reward, action, pscore, n_actions=2)
    dist = np.tile([0.5, 0.5], (n, 1))
    (e,) = estimate(log, dist, ["ips"])
    assert {"tiny_propensity", "dominated", "low_ess"} <= set(e.flags)


def test_clean_uniform_log_raises_no_weight_flags() -> None:
    log, rng = _uniform_log(5000, 4)
    dist = rng.dirichlet(np.ones(4), size=5000)
    for e in estimate(log, dist, ["ips", "snips", "dr", "sndr"]):
        assert e.flags == (), (e.estimator, e.flags)


def test_model_based_intervals_refit_the_model_or_are_flagged() -> None:
    log, _ = _uniform_log(500, 3)
    dist = np.full((500, 3), 1 / 3)
    dm, sw, os_, dr = estimate(
        log, dist, ["dm", "switch_dr", "dr_os", "dr"], config=EstimatorConfig(n_refit=20)
    )
    for e in (dm, sw, os_):
        assert e.ci_method.startswith("normal(refit-bootstrap") and "model_only" not in e.flags
    assert dr.ci_method == "normal"
    fixed = estimate(log, dist, ["dm", "dr"], estimated_rewards=np.full((500, 3), 0.5))
    assert "model_only" in fixed[0].flags and "model_only" not in fixed[1].flags


def test_few_matches_and_non_uniform_flags_for_replay() -> None:
    rng = np.random.default_rng(2)
    n = 200
    action = rng.integers(0, 4, n)
    pscore = np.where(action == 0, 0.4, 0.2)
    log = BanditLog.from_arrays(rng.binomial(1, 0.5, n).astype(float), action, pscore, n_actions=4)
    (e,) = estimate(log, np.tile([0, 0, 0, 1.0], (n, 1)), ["replay"])
    assert {"few_matches", "non_uniform_logging"} <= set(e.flags)


def test_cross_fit_predictions_are_out_of_fold() -> None:
    """With an arm-mean model, one event's own reward must not leak into its own prediction."""
    n, k = 40, 2
    rng = np.random.default_rng(0)
    action = rng.integers(0, k, n)
    reward = rng.binomial(1, 0.5, n).astype(float)
    log = BanditLog.from_arrays(reward, action, np.full(n, 0.5), n_actions=k)
    model = TabularRewardModel(prior_strength=0.0)
    q = cross_fit(model, log, n_folds=n, seed=0)  # leave-one-out
    i = 0
    same = (action == action[i]) & (np.arange(n) != i)
    assert q[i, action[i], 0] == pytest.approx(reward[same].mean())


def test_linear_reward_model_recovers_a_linear_truth() -> None:
    rng = np.random.default_rng(0)
    n, k, d = 4000, 3, 2
    x = rng.uniform(-1, 1, (n, d))
    beta = np.array([[0.2, -0.1, 0.0], [0.1, 0.2, -0.2]])
    actx = np.einsum("nd,ka->nkda", x, np.eye(k)).reshape(n, k, d * k)
    q = 0.5 + x @ beta
    action = rng.integers(0, k, n)
    reward = q[np.arange(n), action] + rng.normal(0, 0.05, n)
    log = BanditLog.from_arrays(reward, action, np.full(n, 1 / k), n_actions=k, action_context=actx)
    pred = LinearRewardModel(alpha=1e-3).fit(log).predict(log)[:, :, 0]
    assert np.abs(pred - q).max() < 0.02


def test_compare_builds_table_and_plot(tmp_path) -> None:
    log, _ = _uniform_log(800, 3)
    cands = {"a": np.tile([1.0, 0, 0], (800, 1)), "b": np.full((800, 3), 1 / 3)}
    comp = compare(log, cands, ESTIMATORS, truth={"a": 0.5, "b": 0.5})
    table = comp.to_arrow()
    assert table.num_rows == 2 * len(ESTIMATORS)
    assert set(table.column("policy").to_pylist()) == {"a", "b"}
    assert "relative_error" in table.column_names
    md = comp.to_markdown()
    assert md.count("\n| a |") == len(ESTIMATORS) and "rel. error" in md
    png = comp.plot(tmp_path / "cmp.png")
    assert png.stat().st_size > 1000


GOOD = {"reward": [1.0, 0.0, 1.0], "action": [0, 1, 2], "pscore": [0.5, 0.5, 0.25]}


def _args(**over):
    a = dict(GOOD)
    a.update(over)
    return a


BAD_LOGS = [
    (_args(reward=[]), EmptyLogError, "empty"),
    (_args(pscore=[0.5, 0.0, 0.25]), ValidationError, r"pscore must be in \(0, 1\].*rows 1"),
    (_args(pscore=[0.5, 1.5, 0.25]), ValidationError, r"pscore must be in \(0, 1\]"),
    (_args(pscore=[0.5, math.nan, 0.25]), ValidationError, "pscore"),
    (_args(action=[0, 1]), DimensionError, "action has 2 rows but reward has 3"),
    (_args(pscore=[0.5]), DimensionError, "pscore has 1 rows"),
    (_args(action=[0, 1, 7], n_actions=3), UnknownIdError, r"unknown action indices outside \[0, 3\)"),
    (_args(action=[0, -1, 2]), UnknownIdError, "unknown action"),
    (_args(action=[0.5, 1, 2]), ValidationError, "action must hold integer indices"),
    (_args(reward=[1.0, math.inf, 0.0]), ValidationError, "reward holds NaN or inf"),
    (_args(position=[0, 1, 5], n_positions=2), UnknownIdError, "position"),
    (_args(reward=[[1.0, 0.0, 1.0]]), DimensionError, "reward must be 1-dimensional"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), BAD_LOGS)
def test_bad_logs_raise_clear_errors(kwargs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        BanditLog.from_arrays(**kwargs)


def _log3() -> BanditLog:
    return BanditLog.from_arrays(**GOOD)


BAD_ESTIMATES = [
    ({"action_dist": np.full((2, 3), 1 / 3)}, DimensionError, "action_dist has 2 rows but the log has 3"),
    (
        {"action_dist": np.full((3, 4), 1 / 4)},
        DimensionError,
        "action_dist has 4 actions but the log has K=3",
    ),
    ({"action_dist": np.full((3, 3), 0.5)}, ValidationError, "must sum to 1"),
    ({"action_dist": np.full((3, 3), -1.0)}, ValidationError, r"probabilities in \[0, 1\]"),
    ({"estimators": ["ipw"]}, ValidationError, "Unknown estimator 'ipw'"),
    ({"estimators": []}, ValidationError, "at least one estimator"),
    ({"estimated_rewards": np.zeros((3, 2))}, ValidationError, "estimated_rewards must have shape"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), BAD_ESTIMATES)
def test_bad_estimate_arguments_raise_clear_errors(kwargs, exc, match) -> None:
    args = {"action_dist": np.full((3, 3), 1 / 3), "estimators": ["ips", "dr"]}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        estimate(_log3(), **args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "'alpha' parameter of EstimatorConfig"),
        ({"ci": "exact"}, "'ci' parameter"),
        ({"ips_clip": -1.0}, "'ips_clip'"),
        ({"n_bootstrap": 1}, "'n_bootstrap'"),
    ],
)
def test_bad_config(kwargs, match) -> None:
    with pytest.raises(ValidationError, match=match):
        EstimatorConfig(**kwargs)


def test_replay_with_no_successes_has_a_sane_interval_and_plots(tmp_path) -> None:
    n = 300
    log = BanditLog.from_arrays(np.zeros(n), np.arange(n) % 3, np.full(n, 1 / 3), n_actions=3)
    comp = compare(log, {"first": np.tile([1.0, 0, 0], (n, 1))}, ["replay", "ips"])
    rep = comp.estimates[0]
    assert (rep.value, rep.lower, rep.n_matches) == (0.0, 0.0, 100)
    assert 0.0 < rep.upper < 0.05  # Wilson: about 3.8 / 100
    assert "few_reward_events" in rep.flags
    assert comp.plot(tmp_path / "p.png").exists()


def test_bootstrap_mode_refits_model_based_estimators() -> None:
    log, rng = _uniform_log(400, 3, seed=4)
    dist = rng.dirichlet(np.ones(3), size=400)
    cfg = EstimatorConfig(ci="bootstrap", n_bootstrap=100, n_refit=30)
    ips, dm, dr = estimate(log, dist, ["ips", "dm", "dr"], config=cfg)
    assert ips.ci_method.startswith("bootstrap-percentile")
    assert dm.ci_method.startswith("bootstrap-refit-percentile") and dr.ci_method.startswith(
        "bootstrap-refit"
    )
    for e in (ips, dm, dr):
        assert e.lower < e.value < e.upper


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 80), k=st.integers(2, 6))
def test_estimator_identities(seed: int, n: int, k: int) -> None:
    """Identities that hold for any input: DR with q-hat = 0 is IPS, SNDR with q-hat = 0 is SNIPS, Switch-DR
    with an infinite threshold is DR and with a zero threshold is DM, and deterministic replay on a uniform
    log is SNIPS."""
    rng = np.random.default_rng(seed)
    action = rng.integers(0, k, n)
    reward = rng.binomial(1, 0.5, n).astype(float)
    log = BanditLog.from_arrays(reward, action, np.full(n, 1 / k), n_actions=k)
    dist = rng.dirichlet(np.ones(k), size=n)
    zero = np.zeros((n, k))
    q = rng.uniform(0, 1, (n, k))
    v = {
        e.estimator: e.value
        for e in estimate(log, dist, ["ips", "snips", "dr", "sndr"], estimated_rewards=zero)
    }
    assert v["dr"] == pytest.approx(v["ips"]) and v["sndr"] == pytest.approx(v["snips"])
    inf = EstimatorConfig(switch_lambda=math.inf)
    nil = EstimatorConfig(switch_lambda=0.0)
    dr, dm = (e.value for e in estimate(log, dist, ["dr", "dm"], estimated_rewards=q))
    assert estimate(log, dist, ["switch_dr"], estimated_rewards=q, config=inf)[0].value == pytest.approx(dr)
    assert estimate(log, dist, ["switch_dr"], estimated_rewards=q, config=nil)[0].value == pytest.approx(dm)
    det = np.eye(k)[rng.integers(0, k, n)]
    if (det[np.arange(n), action] == 1).any():
        rep, sn = estimate(log, det, ["replay", "snips"])
        assert rep.value == pytest.approx(sn.value)
