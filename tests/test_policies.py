"""The conformance suite: every registered policy, the same checks (river's checks/, sklearn's
parametrize_with_checks)."""

import copy

import numpy as np
import pytest
from scipy import special, stats

from core_helpers import logged_feedback, make_catalog, make_events, make_members, trained
from keyart.batch import CandidateBatch
from keyart.context import MemberContext
from keyart.errors import DimensionError, SnapshotError, UnknownIdError, ValidationError
from keyart.exploration import period_offsets
from keyart.features import Featurizer
from keyart.feedback import LoggedFeedback
from keyart.policies import (
    POLICIES,
    beta_max_probabilities,
    load_policy,
    make_policy,
    restore_policy,
    thompson_distribution,
)

NAMES = sorted(POLICIES)


@pytest.fixture(scope="module")
def catalog():
    return make_catalog()


@pytest.fixture(scope="module")
def batch(catalog):
    return make_events(catalog, 200, seed=11)


def _snap_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _snap_equal(a[k], b[k])
        elif isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("name", NAMES)
def test_probabilities_sum_to_one_and_respect_the_floor(name, catalog, batch):
    policy = trained(make_policy(name, seed=1, floor=0.2), catalog)
    p = policy.probabilities(batch)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert (p[~batch.mask] == 0).all()
    floor = 0.2 / batch.pool_sizes[:, None]
    assert (p[batch.mask] >= np.broadcast_to(floor, p.shape)[batch.mask] - 1e-12).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_decisions_and_propensity_is_the_shown_probability(name, catalog, batch):
    a = trained(make_policy(name, seed=5), catalog).choose(batch)
    b = trained(make_policy(name, seed=5), catalog).choose(batch)
    assert a == b
    for d in a:
        assert d.propensity == d.probabilities[d.index] > 0
        assert d.artwork_id == d.pool[d.index]
        assert d.policy == name and d.model_version == 1


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_restore_round_trips_exactly(name, catalog, batch, tmp_path):
    policy = trained(make_policy(name, seed=2, floor=0.05), catalog)
    restored = restore_policy(copy.deepcopy(policy.snapshot()))
    np.testing.assert_array_equal(policy.probabilities(batch), restored.probabilities(batch))
    assert policy.choose(batch) == restored.choose(batch)
    policy.save(tmp_path / "p.npz")
    loaded = load_policy(tmp_path / "p.npz")
    assert loaded.choose(batch) == policy.choose(batch)
    # and they keep learning identically
    more = logged_feedback(make_events(catalog, 100, seed=21), seed=21)
    np.testing.assert_array_equal(
        policy.update(more).probabilities(batch), loaded.update(more).probabilities(batch)
    )


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing", "not a zip"])
def test_a_damaged_snapshot_file_is_a_snapshot_error(damage, catalog, tmp_path):
    path = tmp_path / "p.npz"
    trained(make_policy("linucb", seed=2), catalog).save(path)
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes({"truncated": data[:1000], "empty": b"", "not a zip": b"PK" + b"x" * 100}[damage])
    with pytest.raises(SnapshotError, match="Cannot read policy snapshot"):
        load_policy(path)


@pytest.mark.parametrize("name", NAMES)
def test_update_does_not_mutate_its_input(name, catalog):
    fb = logged_feedback(make_events(catalog, 150, seed=8), seed=8)
    before = copy.deepcopy(fb)
    make_policy(name, seed=1).update(fb)
    for field in ("chosen", "propensity", "reward"):
        np.testing.assert_array_equal(getattr(fb, field), getattr(before, field))
    np.testing.assert_array_equal(fb.batch.X, before.batch.X)
    np.testing.assert_array_equal(fb.batch.artwork_ids, before.batch.artwork_ids)


def _corrupt(fb: LoggedFeedback, **changes) -> LoggedFeedback:
    return LoggedFeedback(
        **{
            "batch": fb.batch,
            "chosen": fb.chosen,
            "propensity": fb.propensity,
            "reward": fb.reward,
            **changes,
        }
    )


BAD_FEEDBACK = [
    (lambda fb: _corrupt(fb, propensity=np.zeros(fb.n)), ValidationError, r"propensity must be in \(0, 1\]"),
    (
        lambda fb: _corrupt(fb, propensity=np.full(fb.n, 1.5)),
        ValidationError,
        r"propensity must be in \(0, 1\]",
    ),
    (lambda fb: _corrupt(fb, reward=np.full(fb.n, np.nan)), ValidationError, "reward contains NaN"),
    (lambda fb: _corrupt(fb, chosen=np.full(fb.n, 50)), UnknownIdError, "outside an event's pool"),
    (lambda fb: _corrupt(fb, chosen=fb.chosen[:-1]), DimensionError, "chosen must have shape"),
    (lambda fb: _corrupt(fb, chosen=fb.chosen.astype(float)), ValidationError, "integer indices"),
]


@pytest.mark.parametrize(("corrupt", "exc", "match"), BAD_FEEDBACK)
def test_bad_feedback_is_rejected(corrupt, exc, match, catalog):
    fb = logged_feedback(make_events(catalog, 20, seed=9), seed=9)
    with pytest.raises(exc, match=match):
        corrupt(fb)


def _one_event(X: np.ndarray, pool: list[str]) -> CandidateBatch:
    """A batch of one event of title t0 with explicit rows X (1, K, d)."""
    one = np.array(["t0"], dtype=object), np.array(["m"], dtype=object), np.array(["r"], dtype=object)
    return CandidateBatch(X, np.ones((1, len(pool)), bool), np.array([pool], dtype=object), *one, np.zeros(1))


@pytest.mark.parametrize("name", NAMES)
def test_bad_updates_leave_the_model_unchanged(name, catalog, batch):
    policy = trained(make_policy(name, seed=3), catalog)
    before = copy.deepcopy(policy.snapshot())
    fb = logged_feedback(make_events(catalog, 20, seed=9), seed=9)
    with pytest.raises(ValidationError, match=r"reward must be in the declared range \[0, 1\]"):
        policy.update(_corrupt(fb, reward=np.full(fb.n, 2.0)))
    with pytest.raises(ValidationError, match="must be a LoggedFeedback"):
        policy.update("not feedback")
    if name not in ("uniform", "beta_ts", "greedy"):
        wide = _one_event(np.zeros((1, 2, batch.d + 1)), ["t0-a0", "t0-a1"])
        with pytest.raises(DimensionError, match="columns but the model was built for"):
            policy.update(LoggedFeedback(wide, np.array([0]), np.array([0.5]), np.array([1.0])))
        with pytest.raises(DimensionError, match="columns"):
            policy.choose(wide)
        huge = _one_event(np.full((1, 2, batch.d), 1e200), ["t0-a0", "t0-new"])
        overflow = LoggedFeedback(huge, np.array([1]), np.array([0.5]), np.array([1.0]))
        with pytest.raises(ValidationError, match="non-finite"):
            policy.update(overflow)
        fresh = make_policy(name, seed=3)
        with pytest.raises(ValidationError, match="non-finite"):
            fresh.update(overflow)
        _snap_equal(fresh.snapshot(), make_policy(name, seed=3).snapshot())
    _snap_equal(policy.snapshot(), before)


@pytest.mark.parametrize("name", NAMES)
def test_choice_frequencies_match_logged_propensities(name, catalog):
    """Across many members with the same features, the shown artworks follow the logged distribution."""
    policy = trained(make_policy(name, seed=13, floor=0.3), catalog, n=800)
    f = Featurizer(catalog)
    n = 6000
    contexts = [MemberContext(f"member-{i}", timestamp=1.7e9) for i in range(n)]
    pool = [a.artwork_id for a in catalog.pool("t0")]
    decisions = policy.choose(f.events(contexts, ["t0"] * n, [pool] * n))
    p = np.array(decisions[0].probabilities)
    assert all(d.probabilities == decisions[0].probabilities for d in decisions)
    counts = np.bincount([d.index for d in decisions], minlength=len(pool))
    assert stats.chisquare(counts, n * p).pvalue > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_selection_is_sticky_within_a_period(name, catalog):
    policy = trained(make_policy(name, seed=17, floor=0.5, sticky_seconds=3600.0), catalog)
    f = Featurizer(catalog)
    member = make_members(catalog, 1)[0]
    start = period_offsets(17, [member.member_id], 3600.0)[0]  # the member's periods start there
    assert start % 3600 + 900 < 3600  # the four requests also share their clock hour (the hour feature)
    shown = []
    for period in range(30):
        seen = set()
        for k in range(4):  # four requests within the same period
            ctx = MemberContext(
                member.member_id, played=member.played, timestamp=start + 3600.0 * period + 300 * k
            )
            seen.add(policy.choose(f.page(ctx, ["t0"], request_id=f"{period}-{k}"))[0].artwork_id)
        assert len(seen) == 1
        shown.append(seen.pop())
    assert len(set(shown)) > 1  # with a floor of 0.5 the member does get explored across periods


@pytest.mark.parametrize(
    "name", ["epsilon_greedy", "softmax", "linucb", "linear_ts", "logistic_ts", "logistic_ucb"]
)
def test_contextual_policies_learn_a_shared_preference(name):
    """Rewards depend on theme match; trained on some titles, the policy prefers the match on others."""
    cat = make_catalog(n_titles=30, pool=6, seed=3)
    f = Featurizer(cat)
    rng = np.random.default_rng(0)
    policy = make_policy(name, seed=1)
    col = f.config.layout["theme_match"].start
    for step in range(8):
        batch = make_events(cat, 1000, seed=100 + step)
        train = np.isin(batch.title_ids, [f"t{i}" for i in range(20)])
        batch = batch.take(np.flatnonzero(train))
        chosen = rng.integers(0, batch.pool_sizes)
        x = batch.X[np.arange(batch.n), chosen, col]
        reward = (rng.random(batch.n) < np.clip(0.05 + 2.0 * x, 0, 1)).astype(float)
        policy.update(LoggedFeedback(batch, chosen, 1.0 / batch.pool_sizes, reward))
    test = make_events(cat, 2000, seed=999)
    test = test.take(np.flatnonzero(~np.isin(test.title_ids, [f"t{i}" for i in range(20)])))
    match = test.X[:, :, col]
    p = policy.probabilities(test)
    expected = (p * match).sum(axis=1).mean()
    best = np.where(test.mask, match, -1).max(axis=1).mean()
    rand = ((match * test.mask).sum(axis=1) / test.pool_sizes).mean()
    assert expected > rand + 0.7 * (best - rand)


def test_logistic_ucb_takes_the_highest_bound_of_the_model_logistic_ts_learns():
    """logistic_ucb and logistic_ts learn one model (the same Laplace posterior from the same events); the
    UCB's choice is the candidate with the highest mean logit + alpha sd, computed here from the posterior
    on the materialized rows, and with alpha > 0 it departs from the greedy choice where the bound says."""
    cat = make_catalog(n_titles=30, pool=6, seed=3)
    batch = make_events(cat, 800, seed=5)
    rng = np.random.default_rng(2)
    chosen = rng.integers(0, batch.pool_sizes)
    reward = (rng.random(batch.n) < 0.05 + 0.3 * (chosen == 0)).astype(float)
    feedback = LoggedFeedback(batch, chosen, 1.0 / batch.pool_sizes, reward)
    lts = make_policy("logistic_ts", seed=1).update(feedback)
    test = make_events(cat, 400, seed=9)
    departed = 0
    for alpha in (0.0, 1.0):
        ucb = make_policy("logistic_ucb", seed=1, alpha=alpha, floor=0.0).update(feedback)
        post = ucb.posterior_
        np.testing.assert_array_equal(post.theta, lts.posterior_.theta)
        np.testing.assert_array_equal(post.sigma, lts.posterior_.sigma)
        rows = ucb.index_.rows(np.asarray(test.artwork_ids, dtype=object))
        X = test.X
        known = rows >= 0
        safe = np.maximum(rows, 0)
        Z = X - post.U[safe] * known[..., None]
        unknown = 1.0 / ucb.bias_ridge_
        var = np.einsum("nkd,de,nke->nk", Z, post.sigma, Z) + np.where(known, post.inv_d[safe], unknown)
        mean = X @ post.theta + np.where(known, post.beta[safe], 0.0)
        bound = np.where(test.mask, mean + alpha * np.sqrt(var), -np.inf)
        p = ucb.probabilities(test)
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        np.testing.assert_array_equal(p.argmax(axis=1), bound.argmax(axis=1))
        greedy = np.where(test.mask, mean, -np.inf).argmax(axis=1)
        departed = int((p.argmax(axis=1) != greedy).sum())
        if alpha == 0.0:
            assert departed == 0
    assert departed > 0


def test_thompson_monte_carlo_meets_its_documented_bound():
    """Against the exact answer for two candidates: P(s1 > s0) = Phi((mu1 - mu0) / sd(s1 - s0))."""
    rng = np.random.default_rng(0)
    policy = make_policy("linear_ts", seed=4)
    normals = policy._normals(2)
    cases, misses = 300, 0
    for _ in range(cases):
        mean = rng.normal(0, 1, size=(1, 2))
        a = rng.normal(size=(2, 2))
        cov = (a @ a.T + 0.1 * np.eye(2))[None]
        p = thompson_distribution(mean, cov, np.ones((1, 2), bool), normals, 0.0005 / 2)[0]
        sd = np.sqrt(cov[0, 0, 0] + cov[0, 1, 1] - 2 * cov[0, 0, 1])
        exact = stats.norm.cdf((mean[0, 1] - mean[0, 0]) / sd)
        misses += abs(p[1] - exact) > 0.01
    # at most 0.01 error with 95% confidence: misses ~ Binomial(300, <= 0.05)
    assert misses <= stats.binom.ppf(0.999, cases, 0.05)


def test_thompson_probabilities_against_large_simulations_per_probability():
    """Twelve correlated candidates: each probability within 0.01 of a 300,000-draw simulation in at least
    95% of (case, candidate) pairs, up to a binomial allowance."""
    rng = np.random.default_rng(1)
    k, cases, misses = 12, 25, 0
    normals = make_policy("linear_ts", seed=2)._normals(k)
    for _ in range(cases):
        mean = rng.normal(0, 0.3, size=(1, k))
        a = rng.normal(size=(k, k))
        cov = (a @ a.T / k + 0.05 * np.eye(k))[None] * rng.uniform(0.1, 2.0)
        p = thompson_distribution(mean, cov, np.ones((1, k), bool), normals, 0.0005 / k)[0]
        draws = rng.multivariate_normal(mean[0], cov[0], size=300_000)
        ref = np.bincount(draws.argmax(axis=1), minlength=k) / draws.shape[0]
        misses += int((np.abs(p - ref) > 0.01).sum())
    assert misses <= stats.binom.ppf(0.999, cases * k, 0.05)


def test_thompson_independent_candidates_match_quadrature():
    """Independent scores have an exact answer, p_k = integral of f_k(t) prod_{j != k} F_j(t) dt: the
    conditional estimator is within 0.01 of it in at least 95% of (case, candidate) pairs."""
    rng = np.random.default_rng(3)
    normals = make_policy("linear_ts", seed=5)._normals(8)
    t = np.linspace(-12, 12, 20_001)
    misses = pairs = 0
    for _ in range(30):
        k = int(rng.integers(2, 9))
        mean, sd = rng.normal(0, 0.5, size=k), rng.uniform(0.2, 1.5, size=k)
        pdf = stats.norm.pdf(t[None, :], mean[:, None], sd[:, None])
        cdf = stats.norm.cdf(t[None, :], mean[:, None], sd[:, None])
        exact = np.trapezoid(pdf * np.prod(cdf, axis=0) / np.maximum(cdf, 1e-300), t, axis=1)
        p = thompson_distribution(mean[None], np.diag(sd**2)[None], np.ones((1, k), bool), normals, 0.0)[0]
        misses += int((np.abs(p - exact) > 0.01).sum())
        pairs += k
    assert misses <= stats.binom.ppf(0.999, pairs, 0.05)


def test_thompson_identical_candidates_share_exactly():
    """Candidates that always draw the same score split their wins evenly, whatever the estimator's order."""
    normals = make_policy("linear_ts", seed=5)._normals(3)
    mask = np.ones((1, 3), bool)
    # no uncertainty at all: two best candidates tie on every draw, the third never wins
    p = thompson_distribution(np.array([[1.0, 1.0, 0.0]]), np.zeros((1, 3, 3)), mask, normals, 0.0)[0]
    np.testing.assert_allclose(p, [0.5, 0.5, 0.0], atol=1e-12)
    p = thompson_distribution(np.array([[1.0, 1.0, 1.0]]), np.zeros((1, 3, 3)), mask, normals, 0.0)[0]
    np.testing.assert_allclose(p, [1 / 3, 1 / 3, 1 / 3], atol=1e-6)  # float32 shares
    four = np.ones((1, 4), bool)
    p = thompson_distribution(np.array([[2.0, 2.0, 1.0, 2.0]]), np.zeros((1, 4, 4)), four, normals, 0.0)[0]
    np.testing.assert_allclose(p, [1 / 3, 1 / 3, 0.0, 1 / 3], atol=1e-6)
    # two certain candidates at the mean of an uncertain third: it wins half the time, they split the rest
    cov = np.diag([0.0, 0.0, 1.0])[None]
    p = thompson_distribution(np.array([[0.0, 0.0, 0.0]]), cov, mask, normals, 0.0)[0]
    np.testing.assert_allclose(p, [0.25, 0.25, 0.5], atol=0.01)


def _beta_max_reference(a: np.ndarray, b: np.ndarray, grid: int = 1 << 16) -> np.ndarray:
    """The plain answer: a fine trapezoid rule over the union of every Beta's central range."""
    lo = float(special.betaincinv(a, b, 1e-13).min())
    hi = float(special.betaincinv(a, b, 1 - 1e-13).max())
    x = np.linspace(lo, hi, grid)
    pdf = stats.beta.pdf(x[None, :], a[:, None], b[:, None])
    cdf = special.betainc(a[:, None], b[:, None], x[None, :])
    others = np.prod(cdf, axis=0)[None, :] / np.maximum(cdf, 1e-300)
    p = np.trapezoid(pdf * others, x, axis=1)
    return p / p.sum()


@pytest.mark.slow
def test_beta_quadrature_matches_a_fine_reference():
    """Pools of 2-24 artworks with 1 to 100,000 impressions, close and distant take fractions."""
    rng = np.random.default_rng(7)
    worst = 0.0
    for case in range(20):
        k = int(rng.integers(2, 25))
        n = 10 ** rng.uniform(0, 5, size=k)
        rate = rng.uniform(0.01, 0.1, size=k) if case % 2 else 0.05 + rng.normal(0, 0.002, size=k)
        a, b = 1 + rate * n, 1 + (1 - rate) * n
        worst = max(worst, float(np.abs(beta_max_probabilities(a, b) - _beta_max_reference(a, b)).max()))
    assert worst < 1e-8


def test_beta_quadrature_matches_simulation():
    rng = np.random.default_rng(2)
    a = np.array([3.0, 30.0, 300.0, 2.0])
    b = np.array([40.0, 400.0, 4000.0, 20.0])
    p = beta_max_probabilities(a, b)
    draws = rng.beta(a, b, size=(400_000, 4))
    ref = np.bincount(draws.argmax(axis=1), minlength=4) / draws.shape[0]
    np.testing.assert_allclose(p, ref, atol=0.004)
    assert p.sum() == pytest.approx(1.0)


def test_beta_ts_cache_equals_a_fresh_computation_through_updates_and_widths(catalog):
    """The per-pool cache (grown as pools and widths appear, validated by counts) gives exactly what a
    policy without a cache computes, before and after updates, for narrow then wide batches with repeats."""
    policy = trained(make_policy("beta_ts", seed=3), catalog)
    events = make_events(catalog, 300, seed=21)
    small = [t for t in catalog.titles if len(catalog.pool(t)) < events.k][:3] * 10  # repeated pools
    pools = [[a.artwork_id for a in catalog.pool(t)] for t in small]
    narrow = Featurizer(catalog).events(make_members(catalog, len(small), seed=22), small, pools)
    assert narrow.k < events.k
    for step, batch in enumerate([narrow, events, narrow, events.take(np.arange(40))]):
        fresh = restore_policy(policy.snapshot())
        np.testing.assert_array_equal(policy.probabilities(batch), fresh.probabilities(batch))
        policy.update(logged_feedback(events.take(np.arange(20 * step, 20 * step + 20)), seed=step))


def test_beta_ts_computes_each_pool_once_per_count_change(catalog, monkeypatch):
    """The quadrature runs once per distinct pool whose counts moved, however often the pool repeats."""
    import keyart.policies.counts as policies_module

    calls = []
    real = policies_module.beta_max_probabilities
    monkeypatch.setattr(policies_module, "beta_max_probabilities", lambda a, b: calls.append(1) or real(a, b))
    policy = trained(make_policy("beta_ts", seed=3), catalog)
    events = make_events(catalog, 400, seed=5)
    distinct = len({events.pool(i) for i in range(events.n)})
    assert distinct < events.n
    policy.probabilities(events)
    assert len(calls) == distinct
    policy.probabilities(events)
    assert len(calls) == distinct  # nothing moved
    policy.update(logged_feedback(events.take(np.arange(3)), seed=1))
    calls.clear()
    policy.probabilities(events)
    moved = {events.pool(i) for i in range(3)}
    assert len(calls) == len(moved)


@pytest.mark.parametrize("name", ["linear_ts", "logistic_ts"])
def test_thompson_probabilities_do_not_depend_on_wider_pools_served_before(name):
    """Serving a pool wider than one block of normals must not move the probabilities of narrower pools:
    same seed, same decisions, whatever the policy saw before (and a restored snapshot agrees)."""
    cat = make_catalog(n_titles=4, pool=70)
    policy = trained(make_policy(name, seed=6), cat, n=300)
    members = make_members(cat, 30, seed=8)
    titles = [f"t{i % 4}" for i in range(30)]
    pools = [[a.artwork_id for a in cat.pool(t)][:5] for t in titles]
    narrow = Featurizer(cat).events(members, titles, pools)
    before = policy.probabilities(narrow)
    wide = Featurizer(cat).page(members[0], ["t0", "t1"])
    assert wide.k > 64
    policy.probabilities(wide)
    np.testing.assert_array_equal(policy.probabilities(narrow), before)
    np.testing.assert_array_equal(restore_policy(policy.snapshot()).probabilities(narrow), before)


@pytest.mark.parametrize("name", NAMES)
def test_explored_marks_choices_other_than_the_best_guess(name, catalog):
    """``explored``: the shown artwork is not the policy's best guess (highest score among the candidates
    it could show); uniform explores whenever there is a choice. A greedy policy never explores."""
    batch = make_events(catalog, 300, seed=14)
    rows = np.arange(batch.n)
    for floor in (0.5, 0.0):  # without a floor LinUCB and Thompson give the best guess probability 0 often
        policy = trained(make_policy(name, seed=2, floor=floor), catalog)
        d = policy.choose(batch)
        if name == "uniform":
            expected = batch.pool_sizes > 1
        else:
            s = np.where(batch.mask, d.scores, -np.inf)
            expected = s[rows, d.index] < s.max(axis=1)
        np.testing.assert_array_equal(d.explored, expected)
        if floor or name not in ("greedy", "beta_ts"):  # beta_ts' scores are its means: it may not
            assert 0 < d.explored.mean() <= (1 if name == "uniform" else 0.9), floor
    assert [x.explored for x in d] == d.explored.tolist()
    one = Featurizer(catalog).events(make_members(catalog, 1), ["t0"], [[catalog.pool("t0")[0].artwork_id]])
    assert policy.choose(one)[0].explored is False  # a pool of one is no choice
    if name == "greedy":
        assert not make_policy(name, seed=2).update(logged_feedback(batch)).choose(batch).explored.any()


def test_seed_and_sticky_period_limits(catalog):
    batch = make_events(catalog, 20, seed=4)
    biggest = make_policy("epsilon_greedy", seed=2**128 - 1, epsilon=0.5)
    assert len(biggest.choose(batch)) == batch.n
    with pytest.raises(
        ValidationError, match=r"'seed' parameter of EpsilonGreedy must be an int in \[0, 2\*\*128\)"
    ):
        make_policy("epsilon_greedy", seed=2**128)
    forever = make_policy("uniform", seed=1, sticky_seconds=float("inf"))
    later = CandidateBatch(
        batch.X,
        batch.mask,
        batch.artwork_ids,
        batch.title_ids,
        batch.member_ids,
        batch.request_ids,
        batch.timestamps + 1e9,
    )
    np.testing.assert_array_equal(forever.choose(batch).index, forever.choose(later).index)
    assert restore_policy(forever.snapshot()).sticky_seconds == float("inf")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda st: st.update(trials=st["trials"][:-1]), "one entry per artwork"),
        (lambda st: st.update(successes=st["trials"] + 1.0), "successes <= trials"),
        (lambda st: st.update(trials=np.full_like(st["trials"], np.nan)), "finite"),
    ],
)
def test_count_snapshots_are_checked(change, match, catalog):
    snap = copy.deepcopy(trained(make_policy("beta_ts", seed=1), catalog).snapshot())
    change(snap["state"])
    with pytest.raises(SnapshotError, match=match):
        restore_policy(snap)


def test_one_logged_event_updates_like_a_batch_of_one(catalog):
    f = Featurizer(catalog)
    ctx = make_members(catalog, 1, seed=3)[0]
    pool = [a.artwork_id for a in catalog.pool("t1")]
    one = LoggedFeedback.from_event(f, ctx, "t1", pool, pool[2], 0.25, 1.0)
    assert one.n == 1 and one.chosen.tolist() == [2] and one.propensity.tolist() == [0.25]
    many = LoggedFeedback.from_events(f, [ctx], ["t1"], [pool], [pool[2]], [0.25], [1.0])
    a = make_policy("linucb", seed=1).update(one)
    b = make_policy("linucb", seed=1).update(many)
    _snap_equal(a.snapshot(), b.snapshot())
    with pytest.raises(UnknownIdError, match="not in that event's pool"):
        LoggedFeedback.from_event(f, ctx, "t1", pool, "t2-a0", 0.25, 1.0)


def test_unknown_policy_and_bad_parameters():
    with pytest.raises(ValidationError, match="Unknown policy 'nope'"):
        make_policy("nope", seed=1)
    with pytest.raises(
        ValidationError,
        match=r"The 'epsilon' parameter of EpsilonGreedy must be a number in \[0, 1\]. Got 1.5.",
    ):
        make_policy("epsilon_greedy", seed=1, epsilon=1.5)
    with pytest.raises(ValidationError, match="'seed' parameter of LinUCB"):
        make_policy("linucb", seed=-1)
    with pytest.raises(SnapshotError):
        restore_policy(
            {
                "format": 1,
                "policy": "linucb",
                "params": {"seed": 1},
                "version": 0,
                "state": {
                    "dim": 3,
                    "artwork_ids": [],
                    "P_ss": np.eye(2),
                    "P_sa": np.zeros((0, 3)),
                    "P_d": np.zeros(0),
                    "eta_s": np.zeros(3),
                    "eta_a": np.zeros(0),
                },
            }
        )


@pytest.mark.parametrize("name", ["beta_ts", "greedy", "linucb", "logistic_ts", "logistic_ucb"])
def test_retiring_an_artwork(name, catalog, batch):
    policy = trained(make_policy(name, seed=1), catalog)
    victim = "t0-a0"
    if hasattr(policy, "posterior_"):
        theta, sigma = policy.posterior_.theta.copy(), policy.posterior_.sigma.copy()
        policy.retire_artwork(victim)
        # marginalizing the artwork's bias leaves the shared model's posterior exactly as it was
        np.testing.assert_allclose(policy.posterior_.theta, theta, atol=1e-9)
        np.testing.assert_allclose(policy.posterior_.sigma, sigma, atol=1e-9)
    else:
        policy.retire_artwork(victim)
    assert victim not in policy.index_.ids
    assert np.isfinite(policy.probabilities(batch)).all()
    with pytest.raises(UnknownIdError, match=victim):
        policy.retire_artwork(victim)


@pytest.mark.parametrize(
    "name", ["greedy", "beta_ts", "epsilon_greedy", "linucb", "linear_ts", "logistic_ts", "logistic_ucb"]
)
def test_forgetting_weighs_the_later_events_of_a_batch_more(name, catalog):
    """With a half-life, the events of one batch are weighed in order: the same events with the good and
    bad halves swapped must leave the shown artwork's score on the side of the later half."""
    batch = make_events(catalog, 200, seed=6)
    chosen = np.zeros(batch.n, dtype=np.int64)
    late_good = np.repeat([0.0, 1.0], batch.n // 2)
    scores = {}
    for order, reward in (("late good", late_good), ("late bad", late_good[::-1])):
        policy = make_policy(name, seed=1, half_life=30.0)
        policy.update(LoggedFeedback(batch, chosen, np.ones(batch.n), reward))
        scores[order] = policy.scores(batch)[:, 0].mean()
    assert scores["late good"] > scores["late bad"]


def test_forgetting_tracks_a_drifting_take_rate(catalog):
    fast = make_policy("greedy", seed=1, half_life=200.0)
    slow = make_policy("greedy", seed=1)
    batch = make_events(catalog, 100, seed=5)
    chosen = np.zeros(batch.n, dtype=np.int64)
    for step in range(40):
        good_first = step < 20  # artwork 0 of every pool is good, then becomes bad
        reward = np.full(batch.n, 1.0 if good_first else 0.0)
        fb = LoggedFeedback(batch, chosen, np.ones(batch.n), reward)
        fast.update(fb)
        slow.update(fb)
    s_fast, s_slow = fast.scores(batch)[0, 0], slow.scores(batch)[0, 0]
    assert s_fast < 0.1 < 0.4 < s_slow


@pytest.mark.parametrize("name", ["beta_ts", "greedy", "epsilon_greedy", "logistic_ts"])
def test_warm_starting_a_new_artwork(name, catalog):
    policy = trained(make_policy(name, seed=1), catalog, n=1500)
    like = ["t0-a0", "t0-a2"]
    batch = make_events(catalog, 5, seed=3)
    if hasattr(policy, "posterior_"):
        expected = policy.posterior_.beta[policy.index_.rows(np.array(like, dtype=object))].mean()
        policy.warm_start("t0-new", like)
        row = policy.index_.rows(np.array(["t0-new"], dtype=object))[0]
        assert policy.posterior_.beta[row] == pytest.approx(expected, abs=1e-12)
    else:
        rows = policy.index_.rows(np.array(like, dtype=object))
        rate = (policy.successes_[rows].sum() + 1) / (policy.trials_[rows].sum() + 2)
        policy.warm_start("t0-new", like)
        row = policy.index_.rows(np.array(["t0-new"], dtype=object))[0]
        assert policy.successes_[row] / policy.trials_[row] == pytest.approx(rate)
    assert np.isfinite(policy.probabilities(batch)).all()
    with pytest.raises(ValidationError, match="already known"):
        policy.warm_start("t0-new", like)
    with pytest.raises(UnknownIdError, match="ghost"):
        policy.warm_start("t0-other", ["ghost"])


def test_feedback_from_raw_events_and_unknown_shown_artworks(catalog):
    f = Featurizer(catalog)
    members = make_members(catalog, 3)
    pools = [list(catalog.pool_ids(t)) for t in ("t0", "t1", "t2")]
    fb = LoggedFeedback.from_events(
        f, members, ["t0", "t1", "t2"], pools, ["t0-a1", "t1-a0", "t2-a3"], [0.5, 0.2, 0.25], [1.0, 0.0, 1.0]
    )
    assert fb.chosen.tolist() == [1, 0, 3]
    np.testing.assert_array_equal(
        fb.shown_X, f.events(members, ["t0", "t1", "t2"], pools).X[[0, 1, 2], [1, 0, 3]]
    )
    with pytest.raises(UnknownIdError, match=r"shown\[1\] = 'ghost' is not in that event's pool"):
        LoggedFeedback.from_events(
            f, members[:2], ["t0", "t1"], pools[:2], ["t0-a1", "ghost"], [0.5, 0.5], [1, 0]
        )


def test_thompson_probabilities_of_a_row_do_not_depend_on_the_rest_of_the_batch():
    rng = np.random.default_rng(5)
    k = 4
    a = rng.normal(size=(k, k))
    good = a @ a.T + 0.1 * np.eye(k)
    bad = np.ones((k, k)) - 1e-3 * np.eye(k)  # numerically indefinite, as rounding can make a covariance
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(bad / 4 + 1e-9 * np.eye(k))
    mean = rng.normal(size=(2, k))
    mean[1] = 0.0  # every candidate of the bad row stays in the simulation
    normals = make_policy("linear_ts", seed=2)._normals(k)
    mask = np.ones((2, k), bool)
    alone = thompson_distribution(mean[:1], good[None], mask[:1], normals, 0.0)
    mixed = thompson_distribution(mean, np.stack([good, bad]), mask, normals, 0.0)
    np.testing.assert_array_equal(alone[0], mixed[0])
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)


SHARED = ["epsilon_greedy", "linucb", "linear_ts", "logistic_ts", "logistic_ucb"]


@pytest.mark.parametrize("name", SHARED)
def test_a_model_records_its_featurization_keeps_it_in_snapshots_and_refuses_another(name, catalog, tmp_path):
    """A shared model keeps the FeatureConfig its columns came from, so whoever loads it featurizes the same
    way (``model_features``); rows of another config of the same width are refused, not misread."""
    import dataclasses
    from types import SimpleNamespace

    from keyart.layout import FeatureConfig
    from keyart.policies import LEGACY_FEATURES, model_features

    config = FeatureConfig(crosses="all", tag_buckets=4)
    members = make_members(catalog, 150, seed=5)
    rng = np.random.default_rng(6)
    tids = rng.choice(list(catalog.titles), size=150).tolist()
    pools = [[a.artwork_id for a in catalog.pool(t)] for t in tids]
    events = Featurizer(catalog, config).events(members, tids, pools)
    policy = make_policy(name, seed=0)
    assert model_features(policy) == FeatureConfig()  # nothing learned yet: the default
    policy.update(logged_feedback(events))
    assert policy.features_ is config and model_features(policy) is config
    policy.save(tmp_path / "p.npz")
    loaded = load_policy(tmp_path / "p.npz")
    assert loaded.features_ == config and model_features(loaded) == config
    same = Featurizer(catalog, dataclasses.replace(config, on_unknown_history="ignore"))
    loaded.choose(same.events(members[:5], tids[:5], pools[:5]))  # how unknown titles are met is no column
    genres = sorted({g for t in catalog.titles.values() for g in t.genres})[:3]
    other = dataclasses.replace(config, vocabularies={"genre": tuple(genres)})
    assert other.dim == config.dim
    with pytest.raises(DimensionError, match="another FeatureConfig"):
        loaded.choose(Featurizer(catalog, other).events(members[:5], tids[:5], pools[:5]))
    before = loaded.snapshot()
    with pytest.raises(DimensionError):
        loaded.update(logged_feedback(Featurizer(catalog, other).events(members, tids, pools)))
    _snap_equal(before, loaded.snapshot())
    # saved before models recorded it: the legacy default of the model's width, else the default
    legacy = make_policy(name, seed=0).update(
        logged_feedback(Featurizer(catalog, LEGACY_FEATURES).events(members, tids, pools))
    )
    snap = legacy.snapshot()
    del snap["state"]["features"]
    assert model_features(restore_policy(snap)) == LEGACY_FEATURES
    assert model_features(restore_policy(snap), FeatureConfig(crosses="all")) == LEGACY_FEATURES  # by width
    with pytest.raises(DimensionError, match="recorded no FeatureConfig"):
        model_features(SimpleNamespace(features_=None, dim_=5), FeatureConfig())
    bad = {**snap, "state": {**snap["state"], "features": {"genre_buckets": "many"}}}
    with pytest.raises(SnapshotError):
        restore_policy(bad)
