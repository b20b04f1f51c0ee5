import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from core_helpers import make_catalog, make_events, trained
from keyart.batch import CandidateBatch
from keyart.errors import DimensionError, ValidationError
from keyart.exploration import (
    apply_floor,
    epsilon_greedy_distribution,
    greedy_distribution,
    keyed_uniforms,
    monte_carlo_samples,
    period_index,
    period_offsets,
    sample_index,
    softmax_distribution,
    sticky_periods,
    sticky_uniforms,
)
from keyart.policies import POLICIES, make_policy

DAY = 86_400.0


def test_keyed_uniforms_are_reproducible_and_uniform():
    members = [f"m{i}" for i in range(20_000)]
    u = keyed_uniforms(3, members, ["t"] * len(members), [0] * len(members))
    np.testing.assert_array_equal(u, keyed_uniforms(3, members, ["t"] * len(members), [0] * len(members)))
    assert ((u >= 0) & (u < 1)).all()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    other = keyed_uniforms(4, members, ["t"] * len(members), [0] * len(members))
    assert abs(np.corrcoef(u, other)[0, 1]) < 0.05  # another seed is another stream


def test_keyed_uniforms_are_fixed_across_versions():
    """Golden values: a change here re-draws every member's sticky artwork on upgrade."""
    titles = ["t0-x", "t1-x", "t2-x", "t3-x", "t4-x"]
    u = keyed_uniforms(7, ["x"] * 5, titles, [3] * 5)
    expected = [
        0.7038194321697882,
        0.3967294639041762,
        0.5967192154844638,
        0.8012776633646341,
        0.43564639367785807,
    ]
    assert u.tolist() == expected
    mixed = keyed_uniforms(7, ["x", "y", "x", "y", "x"], titles, [3, 3, 3, 3, 3])
    assert mixed[[0, 2, 4]].tolist() == [expected[0], expected[2], expected[4]]  # one member's draws alone


def test_periods():
    assert period_index(np.array([0.0, 86_399.0, 86_400.0]), 86_400.0).tolist() == [0, 0, 1]
    assert period_index(np.array([1e9]), float("inf")).tolist() == [0]
    with pytest.raises(ValidationError, match="sticky_seconds"):
        period_index(np.array([0.0]), 0.0)
    assert period_index(np.array([99.0, 100.0, 86_499.0, 86_500.0]), DAY, 100.0).tolist() == [-1, 0, 0, 1]


def test_period_ends_are_spread_over_the_day_across_members():
    """Each member's periods start at a keyed offset: over 24,000 members, every hour of the day holds
    the period end of 1,000 expected members; each count is within 5 binomial s.d. (a 1e-6 chance per
    hour for a uniform spread), where unstaggered periods would put all 24,000 at 00:00."""
    members = [f"member-{i}" for i in range(24_000)]
    offsets = period_offsets(11, members, DAY)
    assert ((offsets >= 0) & (offsets < DAY)).all()
    counts = np.bincount((offsets // 3600).astype(int), minlength=24)
    sd = np.sqrt(24_000 * (1 / 24) * (23 / 24))
    assert np.abs(counts - 1000).max() < 5 * sd, counts
    assert stats.kstest(offsets / DAY, "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(offsets, period_offsets(12, members, DAY))[0, 1]) < 0.05  # keyed by the seed
    np.testing.assert_array_equal(period_offsets(11, members[:3], float("inf")), [0.0, 0.0, 0.0])


def test_sticky_uniforms_change_exactly_at_each_members_own_boundary():
    """Within a member's period (from its offset) the uniform of a (member, title) is one value; it is
    ``keyed_uniforms`` of that period, and the next one starts at offset + period, not at midnight."""
    members = [f"m{i}" for i in range(200)]
    off = period_offsets(5, members, DAY)
    start = 1_767_225_600.0 + 3 * DAY + off  # the start of each member's period number 20,457
    titles = ["t"] * len(members)
    inside = [start, start + 0.5 * DAY, start + DAY - 1e-3]
    draws = [sticky_uniforms(5, members, titles, t, DAY) for t in inside]
    for u, periods in draws:
        np.testing.assert_array_equal(u, draws[0][0])
        np.testing.assert_array_equal(periods, draws[0][1])
    np.testing.assert_array_equal(draws[0][0], keyed_uniforms(5, members, titles, draws[0][1].tolist()))
    np.testing.assert_array_equal(sticky_periods(5, members, start + DAY, DAY), draws[0][1] + 1)
    np.testing.assert_array_equal(sticky_periods(5, members, start - 1e-3, DAY), draws[0][1] - 1)
    after, _ = sticky_uniforms(5, members, titles, start + DAY, DAY)
    assert (after != draws[0][0]).mean() > 0.99
    midnight = np.floor(start / DAY) * DAY + DAY  # the next 00:00 UTC: a boundary for almost no one
    assert (
        sticky_periods(5, members, midnight - 1.0, DAY) == sticky_periods(5, members, midnight, DAY)
    ).mean() > 0.9
    with pytest.raises(DimensionError, match="same length"):
        sticky_uniforms(5, members, titles[:-1], start, DAY)
    with pytest.raises(DimensionError, match="same length"):
        sticky_periods(5, members[:-1], start, DAY)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_fixed_model_and_context_never_changes_its_choice_within_a_period(name):
    """Stickiness, exactly: 300 (member, title) rows, each asked at 8 times spread over the member's
    period with the same features (the timestamp moves only the period): one artwork per row. In the
    next period the same rows are re-drawn, and with a floor of 0.5 some of them change."""
    catalog = make_catalog(n_titles=12, pool=6, seed=3)
    policy = trained(make_policy(name, seed=21, floor=0.5), catalog)
    base = make_events(catalog, 300, seed=8)
    times = np.array([0.0, 1e-3, 0.1, 0.25, 0.5, 0.75, 0.9, 1 - 1e-6]) * DAY
    off = period_offsets(21, base.member_ids.tolist(), DAY)
    start = (np.floor(base.timestamps / DAY) + 1) * DAY + off  # a period start of each member

    def shown_at(t: np.ndarray) -> np.ndarray:
        b = base
        batch = CandidateBatch(b.X, b.mask, b.artwork_ids, b.title_ids, b.member_ids, b.request_ids, t)
        return policy.choose(batch).artwork_ids

    within = np.stack([shown_at(start + dt) for dt in times])
    assert (within == within[0]).all()
    next_period = shown_at(start + DAY + 0.5 * DAY)
    assert (next_period != within[0]).mean() > 0.1


def test_sample_index_matches_probabilities():
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    idx = sample_index(np.tile(p, (50_000, 1)), rng.random(50_000))
    counts = np.bincount(idx, minlength=5)
    assert counts[4] == 0
    assert stats.chisquare(counts[:4], 50_000 * p[:4]).pvalue > 1e-3


@settings(max_examples=200, deadline=None)
@given(
    p=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=12).filter(lambda v: sum(v) > 1e-6),
    u=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_sample_index_never_returns_a_zero_probability_entry(p, u):
    probs = np.asarray(p) / np.sum(p)
    i = sample_index(probs[None, :], np.array([u]))[0]
    assert probs[i] > 0


def test_closed_form_distributions():
    scores = np.array([[1.0, 3.0, 3.0, -1.0]])
    mask = np.array([[True, True, True, False]])
    np.testing.assert_allclose(greedy_distribution(scores, mask), [[0, 0.5, 0.5, 0]])
    np.testing.assert_allclose(epsilon_greedy_distribution(scores, mask, 0.3), [[0.1, 0.45, 0.45, 0]])
    sm = softmax_distribution(scores, mask, 2.0)
    ref = np.exp(np.array([1.0, 3.0, 3.0]) / 2.0)
    np.testing.assert_allclose(sm[0, :3], ref / ref.sum())
    assert sm[0, 3] == 0
    floored = apply_floor(greedy_distribution(scores, mask), mask, 0.3)
    assert floored[0, :3].min() >= 0.1 - 1e-12 and floored.sum() == pytest.approx(1.0)


def test_monte_carlo_sample_count():
    assert monte_carlo_samples(0.01, 0.95) == 9604


def test_keyed_uniforms_are_independent_across_titles_and_periods():
    """For one member, the draws of many (title, period) pairs are uniform and uncorrelated."""
    titles = [f"title-{i}" for i in range(5000)]
    u0 = keyed_uniforms(9, ["m"] * 5000, titles, [0] * 5000)
    u1 = keyed_uniforms(9, ["m"] * 5000, titles, [1] * 5000)
    assert stats.kstest(u0, "uniform").pvalue > 1e-3
    assert stats.kstest(u1, "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u0, u1)[0, 1]) < 0.06
    # consecutive titles are not correlated either
    assert abs(np.corrcoef(u0[:-1], u0[1:])[0, 1]) < 0.06
