"""Sufficient statistics and posteriors checked against plain reference computations."""

import numpy as np
import pytest
from scipy.optimize import minimize

from core_helpers import logged_feedback, make_catalog, make_events, make_members
from keyart.errors import ConvergenceError, DimensionError, ValidationError
from keyart.features import FeatureConfig, Featurizer
from keyart.learning import ArtworkIndex, BlockGaussian, LinearStats
from keyart.logistic import fit_logistic
from keyart.policies import POLICIES, SharedModelPolicy, make_policy, restore_policy


def _data(n=400, d=5, m=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    ids = np.array([f"a{i}" for i in rng.integers(0, m, size=n)], dtype=object)
    theta = rng.normal(size=d)
    bias = {f"a{i}": rng.normal() for i in range(m)}
    f = X @ theta + np.array([bias[a] for a in ids])
    return X, ids, f, rng


def _design(X, ids, order):
    onehot = (ids[:, None] == np.array(order, dtype=object)[None, :]).astype(float)
    return np.hstack([X, onehot])


def test_ridge_posterior_equals_the_explicit_full_design():
    X, ids, f, rng = _data()
    r = f + rng.normal(scale=0.3, size=f.size)
    stats = LinearStats.from_events(X, ids, r)
    post = BlockGaussian.from_stats(stats, ridge=2.0, bias_ridge=0.5).posterior()
    D = _design(X, ids, stats.artwork_ids)
    prior = np.diag([2.0] * X.shape[1] + [0.5] * len(stats.artwork_ids))
    A = D.T @ D + prior
    w = np.linalg.solve(A, D.T @ r)
    cov = np.linalg.inv(A)
    np.testing.assert_allclose(post.theta, w[: X.shape[1]], atol=1e-10)
    np.testing.assert_allclose(post.beta, w[X.shape[1] :], atol=1e-10)
    # score moments of a few candidates, including covariance between two artworks and an unknown one
    Xc = rng.normal(size=(1, 3, X.shape[1]))
    rows = np.array([[0, 3, -1]])
    mean, cov_c = post.moments(Xc, rows, unknown_inv_d=1 / 0.5, covariance=True)
    Dc = np.zeros((3, A.shape[0]))
    Dc[:, : X.shape[1]] = Xc[0]
    Dc[0, X.shape[1] + 0] = 1
    Dc[1, X.shape[1] + 3] = 1
    ref_cov = Dc @ cov @ Dc.T
    ref_cov[2, 2] += 1 / 0.5  # the unknown artwork's bias: prior variance, independent of the rest
    np.testing.assert_allclose(mean[0], Dc @ w, atol=1e-10)
    np.testing.assert_allclose(cov_c[0], ref_cov, rtol=1e-5, atol=1e-7)  # computed in float32


def test_statistics_merge_exactly():
    X, ids, f, _ = _data(n=1000)
    whole = LinearStats.from_events(X, ids, f)
    a = LinearStats.from_events(X[:377], ids[:377], f[:377])
    b = LinearStats.from_events(X[377:], ids[377:], f[377:])
    merged = a.merge(b).aligned(ArtworkIndex(whole.artwork_ids))
    for name in ("xx", "xa", "aa", "xr", "ar"):
        np.testing.assert_allclose(getattr(merged, name), getattr(whole, name), atol=1e-9)
    assert merged.n == whole.n
    with pytest.raises(DimensionError):
        a.merge(LinearStats.empty(3))


def test_logistic_map_matches_a_generic_optimizer_and_partitions_merge():
    X, ids, f, rng = _data(n=600, d=4, m=5, seed=3)
    y = (rng.random(f.size) < 1 / (1 + np.exp(-f))).astype(float)
    prior = BlockGaussian.prior(4, 0, ridge=1.0, bias_ridge=0.5)
    post, order = fit_logistic([(X, ids, y)], prior, [], bias_ridge=0.5)
    halves, _ = fit_logistic(
        [(X[:250], ids[:250], y[:250]), (X[250:], ids[250:], y[250:])], prior, [], bias_ridge=0.5
    )
    for name in ("P_ss", "P_sa", "P_d", "eta_s", "eta_a"):
        np.testing.assert_allclose(getattr(post, name), getattr(halves, name), atol=1e-9)
    D = _design(X, ids, order)
    lam = np.array([1.0] * 4 + [0.5] * len(order))

    def nll(w):
        z = D @ w
        return np.sum(np.logaddexp(0, z) - y * z) + 0.5 * np.sum(lam * w * w)

    ref = minimize(nll, np.zeros(D.shape[1]), method="BFGS", options={"gtol": 1e-10}).x
    sol = post.posterior()
    np.testing.assert_allclose(np.concatenate([sol.theta, sol.beta]), ref, atol=1e-5)
    # Laplace precision = Hessian at the mode
    p = 1 / (1 + np.exp(-(D @ ref)))
    H = D.T @ (D * (p * (1 - p))[:, None]) + np.diag(lam)
    np.testing.assert_allclose(np.linalg.inv(H)[:4, :4], sol.sigma, rtol=1e-4, atol=1e-7)


def test_logistic_fit_from_a_prior_far_from_the_data_reaches_the_mode():
    """A confident prior that the data contradict (a taste flip on a strong feature) made plain Newton
    cycle; the damped fit must reach the posterior mode of a generic optimizer, weights included."""
    rng = np.random.default_rng(5)
    n, d = 500, 3
    X = np.column_stack([rng.uniform(0, 10, n), np.ones(n), rng.normal(size=n)])
    ids = np.array([f"a{i}" for i in rng.integers(0, 4, n)], dtype=object)
    order = ["a0", "a1", "a2", "a3"]
    y = (X[:, 0] < 5).astype(float)  # the prior below learned the opposite: high scores win
    w = rng.uniform(0.2, 1.0, n)
    mu = np.array([1.0, -5.0, 0.0])
    P_ss = np.diag([100.0, 1.0, 30.0])
    prior = BlockGaussian(P_ss, np.zeros((4, d)), np.full(4, 2.0), P_ss @ mu, np.zeros(4))
    post, got = fit_logistic([(X, ids, y, w)], prior, order, bias_ridge=2.0)
    assert list(got) == order
    D = _design(X, ids, order)
    P = np.diag(np.concatenate([np.diag(P_ss), np.full(4, 2.0)]))
    mu0 = np.concatenate([mu, np.zeros(4)])

    def nlp(v):
        z = D @ v
        return np.sum(w * (np.logaddexp(0, z) - y * z)) + 0.5 * (v - mu0) @ P @ (v - mu0)

    def grad(v):
        z = D @ v
        return D.T @ (w * (1 / (1 + np.exp(-z)) - y)) + P @ (v - mu0)

    sol = post.posterior()
    mode = np.concatenate([sol.theta, sol.beta])
    ref = minimize(nlp, mu0, jac=grad, method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 10_000})
    assert np.abs(grad(mode)).max() < 1e-6
    assert nlp(mode) <= ref.fun + 1e-8


def test_logistic_fit_that_cannot_converge_raises_and_changes_nothing():
    X, ids, f, rng = _data(n=200, d=3, m=3, seed=4)
    y = (rng.random(f.size) < 1 / (1 + np.exp(-f))).astype(float)
    prior = BlockGaussian.prior(3, 0, ridge=1.0, bias_ridge=0.5)
    with pytest.raises(ConvergenceError, match="did not converge in 1 Newton steps"):
        fit_logistic([(X, ids, y)], prior, [], bias_ridge=0.5, max_iter=1)


@pytest.mark.parametrize("half_life", [None, 120.0])
@pytest.mark.parametrize("name", ["epsilon_greedy", "linucb", "linear_ts", "beta_ts", "greedy"])
def test_sequential_updates_equal_one_batch(name, half_life):
    """Additive statistics: any split of the events gives the same model, with forgetting too (an event's
    weight depends only on how many events came after it)."""
    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 500, seed=1), seed=1)
    one = make_policy(name, seed=1, half_life=half_life).update(fb)
    two = make_policy(name, seed=1, half_life=half_life)
    for lo, hi in ((0, 1), (1, 200), (200, 500)):
        two.update(fb.take(np.arange(lo, hi)))
    batch = make_events(cat, 50, seed=7)
    np.testing.assert_allclose(one.scores(batch), two.scores(batch), atol=1e-9)
    np.testing.assert_allclose(one.probabilities(batch), two.probabilities(batch), atol=1e-9)


@pytest.mark.parametrize("half_life", [None, 90.0])
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_partitions_train_the_same_model_as_their_concatenation(name, half_life):
    """Per-partition sums (statistics, counts, Newton sums) merged give ``update`` on all the events:
    exactly with fixed priors; with learned ones (refitted at 256 events in both) to the fits' tolerance
    (the optimizer's stopping point in directions the evidence barely sees)."""
    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 400, seed=2), seed=2)
    parts = [fb.take(np.arange(lo, hi)) for lo, hi in ((0, 150), (150, 151), (151, 400))]
    shared = issubclass(POLICIES[name], SharedModelPolicy)
    for priors, atol in (("fixed", 1e-9), ("empirical", 1e-5)) if shared else ((None, 1e-9),):
        kw = {} if priors is None else {"priors": priors}
        whole = make_policy(name, seed=1, half_life=half_life, **kw).update(fb)
        split = make_policy(name, seed=1, half_life=half_life, **kw).update_partitions(parts)
        batch = make_events(cat, 60, seed=8)
        np.testing.assert_allclose(split.scores(batch), whole.scores(batch), atol=atol)
        np.testing.assert_allclose(split.probabilities(batch), whole.probabilities(batch), atol=atol)
        assert split.version_ == whole.version_ == 1


@pytest.mark.parametrize("half_life", [None, 90.0])
@pytest.mark.parametrize("name", ["epsilon_greedy", "softmax", "linucb", "linear_ts"])
def test_linear_models_learn_from_merged_statistics(name, half_life):
    """What a DuckDB or Spark job does: statistics per partition (weighted for forgetting), merged,
    then loaded into the policy, equal ``update`` on all the events (with fixed priors: learned ones are
    re-fitted inside an update at the refit points, which merged statistics cannot be split at)."""
    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 400, seed=3), seed=3)
    w = np.ones(fb.n) if half_life is None else 0.5 ** (np.arange(fb.n - 1, -1, -1) / half_life)
    stats = [
        LinearStats.from_events(fb.shown_X[lo:hi], fb.shown_ids[lo:hi], fb.reward[lo:hi], w[lo:hi])
        for lo, hi in ((0, 222), (222, 400))
    ]
    policy = make_policy(name, seed=1, half_life=half_life, priors="fixed").update(fb.take(np.arange(50)))
    reference = restore_policy(policy.snapshot()).update(fb)
    policy.update_stats(stats[0].merge(stats[1]).merge(LinearStats.empty(fb.batch.d)), events=fb.n)
    batch = make_events(cat, 60, seed=9)
    np.testing.assert_allclose(policy.scores(batch), reference.scores(batch), atol=1e-9)
    with pytest.raises(DimensionError, match="columns but the model was built for"):
        policy.update_stats(LinearStats.empty(fb.batch.d + 1), events=0)


def test_bad_statistics_and_partitions_change_nothing():
    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 100, seed=4), seed=4)
    policy = make_policy("linucb", seed=1, half_life=50.0).update(fb)
    before = policy.snapshot()
    stats = LinearStats.from_events(fb.shown_X, fb.shown_ids, fb.reward)
    with pytest.raises(ValidationError, match="events must be the number of events"):
        policy.update_stats(stats)
    bad = LinearStats(stats.artwork_ids, stats.xx * np.nan, stats.xa, stats.aa, stats.xr, stats.ar)
    with pytest.raises(ValidationError, match="NaN or inf"):
        policy.update_stats(bad, events=1)
    with pytest.raises(ValidationError, match="sequence of LoggedFeedback"):
        policy.update_partitions(fb)
    # the logistic model learns from events only: it has no linear-statistics API at all
    assert not hasattr(make_policy("logistic_ts", seed=1), "update_stats")
    after = policy.snapshot()
    for k in ("P_ss", "P_sa", "eta_s"):
        np.testing.assert_array_equal(after["state"][k], before["state"][k])
    assert after["version"] == before["version"]


def test_logistic_fit_stops_at_the_noise_floor_of_its_sums(monkeypatch):
    """On large logs the summed gradient carries rounding noise, so Newton steps never fall below an
    absolute tolerance; the fit must stop once the predicted decrease (the Newton decrement) is below
    the objective's precision instead of failing to converge (seen in a 200k-page closed loop)."""
    import keyart.logistic as logistic

    X, ids, f, rng = _data(n=2000, d=4, m=5, seed=6)
    y = (rng.random(f.size) < 1 / (1 + np.exp(-f))).astype(float)
    prior = BlockGaussian.prior(4, 0, ridge=1.0, bias_ridge=0.5)
    exact, _ = fit_logistic([(X, ids, y)], prior, [], bias_ridge=0.5)
    real = logistic.logistic_partition_sums
    noise = np.random.default_rng(0)

    def noisy(*args, **kwargs):
        hss, hsa, hd, gs, ga, ll = real(*args, **kwargs)
        return hss, hsa, hd, gs + noise.normal(0, 1e-5, gs.shape), ga, ll

    monkeypatch.setattr(logistic, "logistic_partition_sums", noisy)
    post, _ = fit_logistic([(X, ids, y)], prior, [], bias_ridge=0.5)
    a, b = exact.posterior(), post.posterior()
    np.testing.assert_allclose(b.theta, a.theta, atol=1e-6)
    np.testing.assert_allclose(b.beta, a.beta, atol=1e-6)


def test_mean_by_conjugate_gradients_equals_the_full_solve():
    """The mean from an earlier posterior's covariance as preconditioner equals the exact one; a cap on
    the iterations that cannot be met gives None (the caller then solves in full)."""
    cat = make_catalog()
    fb = logged_feedback(make_events(cat, 500, seed=3), seed=3)
    X, ids, r = fb.shown_X, fb.shown_ids, fb.reward
    index = ArtworkIndex()
    early = BlockGaussian.from_stats(
        LinearStats.from_events(X[:300], ids[:300], r[:300]).aligned(index), 1.0, 2.0
    )
    full = BlockGaussian.from_stats(LinearStats.from_events(X, ids, r).aligned(index), 1.0, 2.0)
    old, exact = early.posterior(), full.posterior()
    theta, beta = full.mean_by_cg(old.sigma, old.theta)
    np.testing.assert_allclose(theta, exact.theta, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(beta, exact.beta, rtol=1e-9, atol=1e-11)
    assert full.mean_by_cg(np.eye(full.P_ss.shape[0]), np.zeros_like(old.theta), max_iter=1) is None


def _split_by_title(fb, titles):
    keep = np.isin(fb.batch.title_ids[:, 0] if fb.batch.title_ids.ndim == 2 else fb.batch.title_ids, titles)
    return fb.take(np.flatnonzero(keep)), fb.take(np.flatnonzero(~keep))


ALL_CROSSES = pytest.param(FeatureConfig(tag_buckets=4, crosses="all"), marks=pytest.mark.slow)


@pytest.mark.parametrize("config", [FeatureConfig(), ALL_CROSSES])
@pytest.mark.parametrize("name", ["linucb", "linear_ts"])
def test_lagging_covariance_is_the_earlier_posterior_and_the_mean_stays_exact(name, config):
    """``covariance_refresh``: until the events grow by the fraction, the (co)variances are those of the
    model at the last full solve (artworks new since then at the prior's), the mean is the exact one;
    then, and at a refit of the priors, everything is exact again; with decay it is off."""
    cat = make_catalog()
    f = Featurizer(cat, config)
    rng = np.random.default_rng(4)
    members = make_members(cat, 900, seed=4)
    tids = rng.choice(list(cat.titles), size=900).tolist()
    pools = [[a.artwork_id for a in cat.pool(t)] for t in tids]
    fb = logged_feedback(f.events(members, tids, pools, request_ids=[f"q{i}" for i in range(900)]), seed=4)
    early, late = _split_by_title(fb.take(np.arange(600)), list(cat.titles)[:8])
    more = fb.take(np.arange(600, 900))
    probe = f.events(
        make_members(cat, 40, seed=9), tids[:40], pools[:40], request_ids=[f"p{i}" for i in range(40)]
    )
    kw = {"seed": 1, "priors": "fixed"}
    lag = make_policy(name, covariance_refresh=0.7, **kw).update(early)
    lag.probabilities(probe)  # the full solve the covariance lags from
    before = make_policy(name, **kw).update(early)
    lag.update(late)  # titles 9-12: artworks the lagging covariance has never seen
    exact = make_policy(name, **kw).update(early).update(late)
    assert lag.events_ < 1.7 * before.events_
    np.testing.assert_allclose(lag.scores(probe), exact.scores(probe), rtol=1e-9, atol=1e-12)
    for cov in (False, True):
        mean, var = lag._moments(probe, covariance=cov)
        np.testing.assert_allclose(mean, exact.scores(probe), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(var, before._moments(probe, covariance=cov)[1], rtol=1e-9, atol=1e-12)
    lag.update(more)  # past 1.7 times the events of the full solve: exact again
    exact.update(more)
    for cov in (False, True):
        np.testing.assert_allclose(
            lag._moments(probe, covariance=cov)[1],
            exact._moments(probe, covariance=cov)[1],
            rtol=1e-9,
            atol=1e-12,
        )
    np.testing.assert_allclose(lag.probabilities(probe), exact.probabilities(probe), atol=1e-9)
    # learned priors: the refit at 256 events makes the lag start again; decay turns it off
    for extra in ({"priors": "empirical"}, {"priors": "fixed", "half_life": 500.0}):
        a = make_policy(name, seed=1, covariance_refresh=0.5, **extra).update(fb.take(np.arange(200)))
        a.probabilities(probe)
        a.update(fb.take(np.arange(200, 290)))
        b = (
            make_policy(name, seed=1, **extra)
            .update(fb.take(np.arange(200)))
            .update(fb.take(np.arange(200, 290)))
        )
        np.testing.assert_allclose(a._moments(probe)[1], b._moments(probe)[1], rtol=1e-9, atol=1e-12)


def test_untouched_columns_are_solved_apart_and_equal_the_explicit_full_design():
    """Columns no event touched (zero in every row: the crosses of a family the data never uses) are
    independent of the rest: the posterior, its solve, the projected rows and the Gram skip them, exactly."""
    from keyart.learning import weighted_gram

    X, ids, f, rng = _data(d=9)
    X[:, [1, 4, 5, 8]] = 0.0
    r = f + rng.normal(scale=0.3, size=f.size)
    stats = LinearStats.from_events(X, ids, r)
    np.testing.assert_allclose(stats.xx, X.T @ X, atol=1e-9)
    w = rng.uniform(0.5, 2.0, X.shape[0])
    np.testing.assert_allclose(weighted_gram(X, w), (X * w[:, None]).T @ X, atol=1e-9)
    ridge = np.linspace(0.5, 3.0, X.shape[1])
    gauss = BlockGaussian(stats.xx + np.diag(ridge), stats.xa, stats.aa + 0.5, stats.xr, stats.ar)
    np.testing.assert_array_equal(gauss.coupled(), [0, 2, 3, 6, 7])
    post = gauss.posterior()
    D = _design(X, ids, stats.artwork_ids)
    A = D.T @ D + np.diag([*ridge, *[0.5] * len(stats.artwork_ids)])
    w_ref = np.linalg.solve(A, D.T @ r)
    d = X.shape[1]
    np.testing.assert_allclose(post.theta, w_ref[:d], atol=1e-10)
    np.testing.assert_allclose(post.beta, w_ref[d:], atol=1e-10)
    schur_inv = np.linalg.inv(A[:d, :d] - A[:d, d:] @ np.linalg.solve(A[d:, d:], A[d:, :d]))
    np.testing.assert_allclose(post.sigma, schur_inv, atol=1e-12)
    rhs = rng.normal(size=A.shape[0])
    s, a = gauss.solve(rhs[:d], rhs[d:])
    np.testing.assert_allclose(np.concatenate([s, a]), np.linalg.solve(A, rhs), atol=1e-10)
    Y, c = post.projected_rows(np.array([0, 2, -1]))
    np.testing.assert_allclose(Y[[0, 2]], post.U[[0, 2]] @ schur_inv, atol=1e-12)
    np.testing.assert_allclose(c[[0, 2]], np.einsum("ad,de,ae->a", post.U[[0, 2]], schur_inv, post.U[[0, 2]]))
