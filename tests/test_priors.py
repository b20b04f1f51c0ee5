"""Empirical Bayes priors: the fixed point maximizes the plain marginal likelihood, and recovers the
noise and prior scales of worlds drawn from the model itself."""

import numpy as np
import pytest
import scipy.optimize

from keyart.errors import ValidationError
from keyart.priors import (
    DataStats,
    _damped_newton_step,
    _Evidence,
    _newton_ascent,
    _touched,
    column_groups,
    fit_priors,
    log_evidence,
)


def _draw(seed: int, n: int, d: int = 6, m: int = 12, s2: float = 0.3, prior_var=(2.0, 0.05), bias_var=0.5):
    """Events from r = x . theta + beta_a + N(0, s2), theta's two column groups with their own variances."""
    rng = np.random.default_rng(seed)
    col = np.arange(d) % 2
    theta = rng.normal(0.0, np.sqrt(np.asarray(prior_var)[col]))
    beta = rng.normal(0.0, np.sqrt(bias_var), m)
    X = rng.normal(size=(n, d))
    a = rng.integers(0, m, n)
    r = X @ theta + beta[a] + rng.normal(0.0, np.sqrt(s2), n)
    return X, a, r, col


def _stats(X, a, r, m):
    onehot = np.zeros((m, X.shape[0]))
    onehot[a, np.arange(X.shape[0])] = 1.0
    return DataStats(X.T @ X, onehot @ X, onehot.sum(1), X.T @ r, onehot @ r, float(r @ r), float(X.shape[0]))


def _log_evidence(log_params, X, a, r, col, m):
    """log N(r; 0, s2 I + Z diag(prior variances) Z^T), Z = [X, onehot(a)]: the plain definition."""
    s2, v_g, v_b = np.exp(log_params[0]), np.exp(log_params[1:3]), np.exp(log_params[3])
    Z = np.hstack([X, np.eye(m)[a]])
    C = s2 * np.eye(len(r)) + (Z * np.concatenate([v_g[col], np.full(m, v_b)])) @ Z.T
    _, logdet = np.linalg.slogdet(C)
    return -0.5 * (logdet + r @ np.linalg.solve(C, r))


def test_the_fixed_point_is_the_maximum_of_the_plain_marginal_likelihood():
    X, a, r, col = _draw(seed=3, n=300)
    m = 12
    fit = fit_priors(_stats(X, a, r, m), col, np.ones(2), 1.0, max_iter=2000, tol=1e-10)
    assert fit.converged
    ours = np.log([fit.noise, *(fit.noise / fit.group_ridge), fit.noise / fit.bias_ridge])
    best = scipy.optimize.minimize(
        lambda p: -_log_evidence(p, X, a, r, col, m),
        np.zeros(4),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20_000},
    )
    assert _log_evidence(ours, X, a, r, col, m) >= -best.fun - 1e-6
    np.testing.assert_allclose(ours, best.x, atol=2e-3)


def _plain_gamma(fit, X, a, m, col):
    """MacKay's sum gamma = sum_j (1 - lambda_j (Z'Z + Lambda)^-1_jj) over the columns and the artworks the
    data touch, from the joint precision inverted as a whole."""
    Z = np.hstack([X, np.eye(m)[a]])
    touched = np.abs(Z).sum(axis=0) > 0
    lam = np.concatenate([fit.group_ridge[col], np.full(m, fit.bias_ridge)])
    inv = np.linalg.inv(Z.T @ Z + np.diag(lam))
    return float((1.0 - lam * np.diag(inv))[touched].sum())


@pytest.mark.parametrize(
    ("n", "d", "m", "degenerate"), [(300, 6, 12, False), (40, 6, 60, False), (20, 30, 12, True)]
)
def test_a_fit_counts_its_well_determined_parameters_and_says_when_it_interpolates(n, d, m, degenerate):
    """With fewer events than parameters (20 events, 42 parameters) the profiled evidence keeps rising as
    the noise falls (the rewards are fitted exactly): the fit says so. Drawn from the model, with the data to
    set them (or shrinking most of them), the fits leave most of the events to the noise."""
    X, a, r, col = _draw(seed=0, n=n, d=d, m=m)
    fit = fit_priors(_stats(X, a, r, m), col, np.ones(2), 1.0)
    assert fit.events == n
    assert fit.well_determined == pytest.approx(_plain_gamma(fit, X, a, m, col), rel=1e-8)
    assert fit.degenerate == degenerate
    if degenerate:
        assert fit.noise < 1e-3 * 0.3 and n - fit.well_determined < 0.01 * n  # the true noise is 0.3
    else:
        assert n - fit.well_determined > 0.4 * n


def test_with_the_noise_given_the_fit_maximizes_the_plain_marginal_likelihood_at_that_noise():
    X, a, r, col = _draw(seed=4, n=300)
    m, s2 = 12, 0.3
    # tol 1e-9 nats: at 1e-10 SciPy 1.17's L-BFGS-B ends in an abnormal line search at the same point (the
    # evidence's rounding is of that size), and reports it as not converged
    fit = fit_priors(_stats(X, a, r, m), col, np.ones(2), 1.0, max_iter=2000, tol=1e-9, noise=s2)
    assert fit.converged and fit.noise == s2
    ours = np.log([*(s2 / fit.group_ridge), s2 / fit.bias_ridge])
    best = scipy.optimize.minimize(
        lambda p: -_log_evidence(np.concatenate([[np.log(s2)], p]), X, a, r, col, m),
        np.zeros(3),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20_000},
    )
    assert _log_evidence(np.concatenate([[np.log(s2)], ours]), X, a, r, col, m) >= -best.fun - 1e-6
    np.testing.assert_allclose(ours, best.x, atol=2e-3)


def test_the_default_tolerance_reaches_the_maximum_from_the_constructors_ridges():
    """From ridge 1, at the default ``tol`` (0.01 nats), every fit ends within 0.01 nats of the evidence's
    maximum (a fit to 1e-10 nats). With the rule before (stop when a step gains under ``tol``), draws 1
    and 7 stopped after one step, 4.5 and 2.2 nats short."""
    for seed in range(8):
        X, a, r, col = _draw(seed=seed, n=2000)
        stats = _stats(X, a, r, 12)
        fit = fit_priors(stats, col, np.ones(2), 1.0)
        best = fit_priors(stats, col, np.ones(2), 1.0, max_iter=2000, tol=1e-10)
        assert fit.converged
        gap = log_evidence(stats, col, best.group_ridge, best.bias_ridge) - log_evidence(
            stats, col, fit.group_ridge, fit.bias_ridge
        )
        assert -1e-9 < gap < 0.01, (seed, gap)


@pytest.mark.parametrize("noise", [None, 0.3])
@pytest.mark.parametrize("d, m", [(6, 12), (10, 4)])
def test_the_hessian_is_the_derivative_of_the_gradient(noise, d, m):
    """The Newton fit's second derivatives in the log ridges (two groups, the bias) against central
    differences of the gradient, with the noise profiled out and given, with more artworks than columns
    and fewer (the two ways it computes the artworks' terms); the gradient against differences of the
    value."""
    X, a, r, col = _draw(seed=5, n=400, d=d, m=m)
    stats, cols = _touched(_stats(X, a, r, m), col)

    def at(x):
        return _Evidence(stats, cols, np.exp(x[:2]), float(np.exp(x[2])), noise)

    x, h = np.log([0.7, 3.0, 2.0]), 1e-5
    e = at(x)
    grad = np.append(e.grad_g, e.grad_b)
    steps = [(at(x + h * u), at(x - h * u)) for u in np.eye(3)]
    numeric_grad = [(p.value - m.value) / (2 * h) for p, m in steps]
    numeric_hess = [
        (np.append(p.grad_g, p.grad_b) - np.append(m.grad_g, m.grad_b)) / (2 * h) for p, m in steps
    ]
    np.testing.assert_allclose(grad, numeric_grad, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(e.hessian(), numeric_hess, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_newton_and_lbfgs_reach_the_same_maximum(seed):
    """Both methods, from the same start to 1e-8 nats, end at the same evidence and ridges (the evidence
    of these draws has one maximum, inside the box)."""
    X, a, r, col = _draw(seed=50 + seed, n=1500, d=8, m=20)
    stats = _stats(X, a, r, 20)
    fits = {
        m: fit_priors(stats, col, np.ones(2), 1.0, tol=1e-8, max_iter=2000, method=m)
        for m in ("newton", "lbfgs")
    }
    assert all(f.converged for f in fits.values())
    values = {m: log_evidence(stats, col, f.group_ridge, f.bias_ridge) for m, f in fits.items()}
    assert abs(values["newton"] - values["lbfgs"]) < 1e-6
    np.testing.assert_allclose(
        np.log(fits["newton"].group_ridge), np.log(fits["lbfgs"].group_ridge), atol=1e-3
    )
    with pytest.raises(ValidationError, match="method must be"):
        fit_priors(stats, col, np.ones(2), 1.0, method="bfgs")


class _Quadratic:
    """A concave quadratic in the shape of ``_Evidence`` (value, gradient, Hessian), for the optimizer."""

    def __init__(self, x, A, c):
        g = -A @ (x - c)
        self.value, self.grad_g, self.grad_b, self.A = float(-0.5 * (x - c) @ A @ (x - c)), g[:-1], g[-1], A

    def hessian(self):
        return -self.A


def test_projected_newton_finds_the_maximum_in_the_box():
    """Concave quadratics with correlated coordinates, maxima outside the box and starts on its faces:
    the projected Newton ascent ends at the box's maximum (within 1e-7 of L-BFGS-B's, run to a gradient of
    1e-12), including where the box turns a Newton step away from ascent and the gradient leads (draws
    137, 164, 248) and where a step lands within rounding of a bound (draw 222)."""
    for seed in range(300):
        rng = np.random.default_rng(seed)
        B = rng.normal(size=(4, 4))
        A, c = B @ B.T + 0.05 * np.eye(4), rng.normal(0.0, 3.0, 4)
        x0 = np.where(rng.random(4) < 0.5, -2.0, rng.uniform(-2.0, 2.0, 4))
        assert _box_maximum_reached(A, c, x0), seed


def test_a_newton_step_is_damped_where_the_hessian_is_not_negative_definite():
    g = np.array([1.0, -2.0])
    np.testing.assert_allclose(_damped_newton_step(-np.diag([2.0, 4.0]), g), [0.5, -0.5])  # plain Newton
    step = _damped_newton_step(np.diag([-1.0, 3.0]), g)  # a direction of positive curvature
    assert g @ step > 0 and np.all(np.isfinite(step))  # damped until it ascends
    np.testing.assert_array_equal(_damped_newton_step(np.full((2, 2), np.nan), g), g)  # the gradient


def _box_maximum_reached(A, c, x0):
    x, _, converged = _newton_ascent(
        lambda x: _Quadratic(x, A, c), np.ones(4, bool), x0, (-2.0, 2.0), 1e-10, 200
    )
    best = scipy.optimize.minimize(
        lambda z: 0.5 * (z - c) @ A @ (z - c),
        x0,
        jac=lambda z: A @ (z - c),
        method="L-BFGS-B",
        bounds=[(-2.0, 2.0)] * 4,
        options={"gtol": 1e-12, "ftol": 1e-15},
    )
    return converged and _Quadratic(x, A, c).value >= -best.fun - 1e-7


@pytest.mark.parametrize("seed", [22, 23, 24])
def test_logistic_thompson_learns_which_family_matters_from_its_laplace_approximation(seed):
    """Clicks from a logistic model whose 'theme' family has large weights and whose 'style' family has
    none: the evidence shrinks style far harder than theme; the noise stays 1 (a logistic model has none)."""
    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 3000, seed=21), seed=21)
    names = fb.batch.feature_names
    theme = np.array([n.startswith("theme[") for n in names])
    style = np.array([n.startswith("style[") for n in names])
    rng = np.random.default_rng(seed)
    w = np.where(theme, rng.normal(0.0, 1.5, len(names)), 0.0)
    p = 1.0 / (1.0 + np.exp(-(fb.shown_X @ w - 1.0)))
    clicks = (rng.random(fb.n) < p).astype(float)
    policy = make_policy("logistic_ts", seed=1).update(type(fb)(fb.batch, fb.chosen, fb.propensity, clicks))
    info = policy.learned_priors()
    assert info["mode"] == "empirical" and info["noise"] == 1.0 and policy.events_ == 3000
    assert theme.any() and style.any()
    assert info["families"]["style"]["ridge"] > 10 * info["families"]["theme"]["ridge"]
    assert 0.5 < info["families"]["theme"]["prior_sd"] < 4.0  # the weights' sd: 1.5 (16 draws of it)


@pytest.mark.parametrize("seed", range(5))
def test_noise_and_prior_scales_are_recovered_in_worlds_drawn_from_the_model(seed):
    # 20,000 events: the noise is pinned to a few percent; a group's prior variance is estimated from its
    # few parameters only (3 draws each), so it is checked on the log scale with a wide band
    X, a, r, col = _draw(seed=100 + seed, n=20_000, d=30, m=40)
    fit = fit_priors(_stats(X, a, r, 40), col, np.ones(2), 1.0)
    assert fit.converged
    assert abs(fit.noise / 0.3 - 1) < 0.05
    prior_var = fit.noise / fit.group_ridge
    assert prior_var[0] > 10 * prior_var[1]  # the strong family is told apart from the weak one
    assert 0.4 < prior_var[0] / 2.0 < 2.5  # 15 draws: relative s.e. about 0.37
    assert 0.5 < (fit.noise / fit.bias_ridge) / 0.5 < 2.0  # 40 draws: relative s.e. about 0.22


def test_a_family_without_data_keeps_its_ridge_and_names_give_the_groups():
    X, a, r, col = _draw(seed=1, n=500)
    X[:, 1] = 0.0  # column 1 (group 1) never active
    col3 = np.where(np.arange(6) == 1, 2, col)
    fit = fit_priors(_stats(X, a, r, 12), col3, np.array([1.0, 1.0, 7.0]), 1.0)
    assert fit.group_ridge[2] == 7.0
    held = fit_priors(_stats(X, a, r, 12), col3, np.array([1.0, 3.0, 7.0]), 1.0, learn=np.array([1, 0, 1]))
    assert held.group_ridge[1] == 3.0 and held.group_ridge[0] != 1.0  # not learned where told so
    names, groups = column_groups(["bias[0]", "theme[0]", "theme[1]", "device_x_style[3]"], 4)
    assert names == ("bias", "theme", "device_x_style") and groups.tolist() == [0, 1, 1, 2]
    assert column_groups([], 3)[1].tolist() == [0, 0, 0]


# ---- the ridge policies with learned priors ------------------------------------------------------
from core_helpers import logged_feedback, make_catalog, make_events, make_members  # noqa: E402
from keyart.policies import make_policy  # noqa: E402
from keyart.policies.shared import refit_points  # noqa: E402
from keyart.priors import INITIAL_NOISE  # noqa: E402


def test_refit_points_double_then_step_and_depend_on_the_count_only():
    assert [refit_points(e) for e in (0, 255, 256, 511, 512, 65_535, 65_536, 70_000)] == [
        256,
        256,
        512,
        512,
        1024,
        65_536,
        131_072,
        131_072,
    ]


@pytest.mark.parametrize("half_life", [None, 300.0])
@pytest.mark.parametrize("name", ["linucb", "linear_ts"])
def test_learned_priors_are_refitted_where_the_counts_say_however_events_are_batched(name, half_life):
    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 700, seed=5), seed=5)
    whole = make_policy(name, seed=1, half_life=half_life).update(fb)
    chunks = make_policy(name, seed=1, half_life=half_life)
    for lo in range(0, fb.n, 97):
        chunks.update(fb.take(np.arange(lo, min(fb.n, lo + 97))))
    parts = make_policy(name, seed=1, half_life=half_life).update_partitions(
        [fb.take(np.arange(0, 300)), fb.take(np.arange(300, 700))]
    )
    assert whole.noise_ != INITIAL_NOISE and whole.events_ == 700  # fitted at 256 and 512
    batch = make_events(cat, 40, seed=6)
    for other in (chunks, parts):
        # the same refits on the same statistics (equal to rounding); the optimizer's stopping point in the
        # evidence's flat directions (families shrunk to nothing) moves the posterior's spread a little
        np.testing.assert_allclose(other.scores(batch), whole.scores(batch), atol=1e-6)
        np.testing.assert_allclose(other.probabilities(batch), whole.probabilities(batch), atol=1e-3)
        np.testing.assert_allclose(other.ridge_cols_, whole.ridge_cols_, rtol=1e-3)  # flat where pruned
        assert other.noise_ == pytest.approx(whole.noise_, rel=1e-6)
    assert whole.version_ == parts.version_ == 1


def test_a_refit_is_a_fixed_point_and_keeps_the_data():
    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 600, seed=7), seed=7)
    policy = make_policy("linucb", seed=1).update(fb)
    policy.refit_priors()  # last fitted at 512 events: now to all 600
    data = policy.data_stats()
    before = log_evidence(data, policy.column_group_, _group_ridges(policy), policy.bias_ridge_)
    scores = policy.scores(fb.batch)
    again = policy.refit_priors()
    # started at the optimum (to the fit's tolerance, 0.01 of log evidence): the evidence (flat where a
    # family is shrunk to nothing) and the model barely move
    assert again.converged
    assert log_evidence(data, policy.column_group_, again.group_ridge, again.bias_ridge) >= before - 1e-9
    assert log_evidence(data, policy.column_group_, again.group_ridge, again.bias_ridge) < before + 1e-2
    np.testing.assert_allclose(policy.scores(fb.batch), scores, atol=3e-4)  # every cross: d = 1,618
    after = policy.data_stats()
    for a, b in zip(
        (data.xx, data.xa, data.aa, data.xr, data.ar),
        (after.xx, after.xa, after.aa, after.xr, after.ar),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-9)
    # the rewards are Bernoulli: the learned noise is about their variance around the model's fit
    r = fb.reward
    assert 0.5 * r.var() < policy.noise_ < 1.05 * r.var()
    # fixed priors keep the constructor's values and noise 1
    fixed = make_policy("linucb", seed=1, priors="fixed").update(fb)
    assert fixed.noise_ == 1.0 and (fixed.ridge_cols_ == 1.0).all() and fixed.bias_ridge_ == 1.0


def _group_ridges(policy):
    return np.bincount(policy.column_group_, weights=policy.ridge_cols_) / np.bincount(policy.column_group_)


def test_learned_priors_are_reported_and_survive_a_snapshot(tmp_path):
    from keyart.policies import load_policy, restore_policy

    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 300, seed=11), seed=11)
    policy = make_policy("linear_ts", seed=1)
    assert policy.learned_priors() is None  # nothing learned yet
    policy.update(fb)
    info = policy.learned_priors()
    assert info["mode"] == "empirical" and info["noise"] == policy.noise_
    assert set(info["families"]) == set(policy.groups_)
    assert info["families"]["bias"]["ridge"] == policy.ridge  # the intercept is not shrunk (UNSHRUNK_...)
    assert sum(f["columns"] for f in info["families"].values()) == fb.batch.d
    for name, fam in info["families"].items():
        cols = policy.ridge_cols_[policy.column_group_ == policy.groups_.index(name)]
        assert fam["ridge"] == pytest.approx(cols.mean()) and (cols == cols[0]).all()  # one ridge per family
        assert fam["prior_sd"] == pytest.approx(np.sqrt(policy.noise_ / fam["ridge"]))
    policy.save(tmp_path / "p.npz")
    batch = make_events(cat, 30, seed=12)
    for again in (restore_policy(policy.snapshot()), load_policy(tmp_path / "p.npz")):
        assert again.learned_priors() == info
        np.testing.assert_allclose(again.probabilities(batch), policy.probabilities(batch), atol=1e-12)
    assert make_policy("beta_ts", seed=1).update(fb).learned_priors() is None


def test_partitions_of_different_widths_change_nothing_even_across_a_refit_point():
    from keyart.errors import DimensionError
    from keyart.features import FeatureConfig, Featurizer

    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 300, seed=13), seed=13)
    wide = Featurizer(cat, FeatureConfig(tag_buckets=4))
    members = make_members(cat, 10, seed=14)
    tids = [list(cat.titles)[i % len(cat.titles)] for i in range(10)]
    other = logged_feedback(wide.events(members, tids, [[a.artwork_id for a in cat.pool(t)] for t in tids]))
    policy = make_policy("linucb", seed=1)
    with pytest.raises(DimensionError):
        policy.update_partitions([fb, other])  # the first part alone would cross the refit at 256
    assert policy.dim_ is None and policy.events_ == 0 and policy.version_ == 0


@pytest.mark.parametrize("trained_first", [200, 0])
def test_a_failing_part_after_a_refit_point_leaves_the_model_as_it_was(trained_first):
    from keyart.errors import ValidationError
    from keyart.feedback import LoggedFeedback
    from test_policies import _one_event, _snap_equal

    cat = make_catalog()
    policy = make_policy("linucb", seed=3)
    if trained_first:
        policy.update(logged_feedback(make_events(cat, trained_first, seed=15), seed=15))
    before = policy.snapshot()
    fb = logged_feedback(make_events(cat, 300, seed=16), seed=16)  # crosses the refit at 256
    huge = _one_event(np.full((1, 2, fb.batch.d), 1e200), ["t0-a0", "t0-new"])
    overflow = LoggedFeedback(huge, np.array([1]), np.array([0.5]), np.array([1.0]))
    with pytest.raises(ValidationError, match="non-finite"):
        policy.update_partitions([fb, overflow])
    _snap_equal(policy.snapshot(), before)
    assert policy.events_ == trained_first


def test_untouched_columns_change_neither_the_evidence_nor_the_fit():
    """Columns no event touched add nothing to the log evidence or its gradient: the fit with them equals
    the fit without them, and their groups keep their ridges."""
    X, a, r, col = _draw(seed=5, n=300)
    m = 12
    wide = np.hstack([X, np.zeros((X.shape[0], 3))])
    wide_col = np.concatenate([col, [2, 2, 2]])
    narrow, padded = _stats(X, a, r, m), _stats(wide, a, r, m)
    ridges = np.array([0.7, 3.0])
    np.testing.assert_allclose(
        log_evidence(padded, wide_col, np.append(ridges, 5.0), 0.8), log_evidence(narrow, col, ridges, 0.8)
    )
    fit = fit_priors(narrow, col, np.ones(2), 1.0, tol=1e-8)
    fit_wide = fit_priors(padded, wide_col, np.ones(3), 1.0, tol=1e-8)
    np.testing.assert_allclose(fit_wide.group_ridge[:2], fit.group_ridge, rtol=1e-6)
    assert fit_wide.group_ridge[2] == 1.0 and np.isclose(fit_wide.noise, fit.noise)


@pytest.mark.parametrize("name", ["linucb", "logistic_ts"])
def test_a_refit_starts_from_the_constructors_ridges_unless_told_to_start_from_the_current(name):
    """By default (``refit_restart``) a refit is the fit from the constructor's ``ridge`` and ``bias_ridge``:
    the priors are a function of the data alone. With ``refit_restart=False`` it starts from the current
    priors. Both equal the fits computed directly from those starts."""
    from keyart.policies import restore_policy
    from keyart.priors import UNSHRUNK_FAMILIES

    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 700, seed=11), seed=11)
    params = {"ridge": 1e3, "bias_ridge": 1e3}
    policy = make_policy(name, seed=1, **params, **({"mc_points": 256} if name == "logistic_ts" else {}))
    assert policy.refit_restart
    policy.update(fb)  # refitted at 256 and 512 events
    twin = restore_policy(policy.snapshot())
    data, groups = policy.data_stats(), policy.column_group_
    learn = np.array([g not in UNSHRUNK_FAMILIES for g in policy.groups_], dtype=bool)
    noise = None if policy._learns_noise else policy.noise_
    tol = policy._prior_tol
    current = _group_ridges(policy)
    warm = fit_priors(data, groups, current, policy.bias_ridge_, tol=tol, learn=learn, noise=noise)
    cold = fit_priors(data, groups, np.where(learn, 1e3, current), 1e3, tol=tol, learn=learn, noise=noise)
    adopted = policy.refit_priors()
    np.testing.assert_array_equal(adopted.group_ridge, cold.group_ridge)
    assert adopted.bias_ridge == cold.bias_ridge
    twin.refit_restart = False
    again = twin.refit_priors()
    np.testing.assert_array_equal(again.group_ridge, warm.group_ridge)
    assert again.bias_ridge == warm.bias_ridge


@pytest.mark.parametrize("name", ["linucb", "linear_ts"])
def test_a_model_does_not_adopt_a_fit_whose_noise_went_to_zero(name):
    """20 events for some 700 columns: the fit takes the noise to its floor; the model keeps its priors
    and its noise. With 100 events the same refit is adopted."""
    cat = make_catalog()
    few = make_policy(name, seed=1).update(logged_feedback(make_events(cat, 20, seed=2), seed=2))
    before = (few.ridge_cols_.copy(), few.bias_ridge_, few.noise_)
    scores = few.scores(make_events(cat, 10, seed=9))
    assert fit_priors(**few.refit_problem()).degenerate
    assert few.refit_priors() is None
    np.testing.assert_array_equal(few.ridge_cols_, before[0])
    assert (few.bias_ridge_, few.noise_) == before[1:] and before[2] == INITIAL_NOISE
    np.testing.assert_array_equal(few.scores(make_events(cat, 10, seed=9)), scores)
    enough = make_policy(name, seed=1).update(logged_feedback(make_events(cat, 100, seed=2), seed=2))
    fit = enough.refit_priors()
    assert fit is not None and not fit.degenerate and enough.noise_ == fit.noise != INITIAL_NOISE
