"""The compiled kernels (``keyart.kernels``) equal their numpy reference, on both backends; the backend
switch (``KEYART_KERNELS``) and the fallback without numba; a small batch's float64 moments from its rows
equal the page basis's."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core_helpers import make_catalog, make_members, trained
from keyart import kernels
from keyart.errors import DimensionError, ValidationError
from keyart.exploration import sticky_uniforms
from keyart.features import Featurizer
from keyart.kernels import reference
from keyart.policies import make_policy
from keyart.policies.shared import SMALL_BATCH

try:
    import numba  # noqa: F401

    BACKENDS = ["numpy", "numba"]
except ImportError:  # pragma: no cover - CI installs numba (the test extra)
    BACKENDS = ["numpy"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend in turn (both in CI), restored to the environment's choice after the test."""
    assert kernels.use(request.param) == request.param
    yield request.param
    kernels.use("auto")


def _probabilities(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Rows of probabilities with zeros (padding, pruned candidates) and exact ties."""
    p = rng.random((n, k)) * (rng.random((n, k)) < 0.7)
    p[:, 0] += (p.sum(axis=1) == 0).astype(float)  # every row has mass somewhere
    p[rng.random(n) < 0.2] = 0.0
    p[:, -1] += (p.sum(axis=1) == 0).astype(float)
    return p / p.sum(axis=1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 50), k=st.integers(1, 16))
def test_sample_index_and_greedy_equal_the_reference(seed, n, k):
    for name in BACKENDS:
        kernels.use(name)
        rng = np.random.default_rng(seed)
        p = _probabilities(rng, n, k)
        u = rng.random(n)
        u[: n // 4] = 1.0 - 2.0**-53  # the top of [0, 1): the last positive entry
        np.testing.assert_array_equal(kernels.sample_index(p, u), reference.sample_index(p, u))
        scores = np.round(rng.normal(size=(n, k)), 1)  # rounded: ties
        mask = rng.random((n, k)) < 0.8
        mask[:, 0] = True
        np.testing.assert_array_equal(
            kernels.greedy_distribution(scores, mask), reference.greedy_distribution(scores, mask)
        )
    kernels.use("auto")


def test_sample_index_never_returns_a_zero_probability_entry(backend):
    p = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.25, 0.0, 0.75]])
    for u in (0.0, 0.5 - 1e-17, 0.5, 1.0 - 2.0**-53):
        idx = kernels.sample_index(p, np.full(3, u))
        assert (p[np.arange(3), idx] > 0).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 40))
def test_hash_kernels_equal_the_reference_exactly(seed, n):
    rng = np.random.default_rng(seed)
    mk = rng.integers(0, 2**64, n, dtype=np.uint64)
    tk = rng.integers(0, 2**64, n, dtype=np.uint64)
    periods = rng.integers(-(2**40), 2**40, n)
    ts = rng.uniform(-1e10, 1e10, n)
    salt = np.uint64(rng.integers(0, 2**63))
    for name in BACKENDS:
        kernels.use(name)
        np.testing.assert_array_equal(
            kernels.splitmix64(mk.reshape(-1, 1)), reference.splitmix64(mk)[:, None]
        )
        np.testing.assert_array_equal(
            kernels.sticky_mix(mk, tk, periods), reference.sticky_mix(mk, tk, periods)
        )
        for sticky in (1.0, 3_600.0, 86_400.0, np.inf):
            got, want = (
                kernels.sticky_draw(mk, tk, ts, sticky, salt),
                reference.sticky_draw(mk, tk, ts, sticky, salt),
            )
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    kernels.use("auto")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 20), k=st.integers(1, 13), r=st.integers(1, 40))
def test_row_quadratic_equals_the_reference(seed, n, k, r):
    rng = np.random.default_rng(seed)
    H, Z = rng.normal(size=(n, k, r)), rng.normal(size=(n, k, r))
    want = reference.row_quadratic(H, Z)
    scale = np.einsum("nkr,nkr->nk", np.abs(H), np.abs(Z))
    for name in BACKENDS:
        kernels.use(name)
        assert (np.abs(kernels.row_quadratic(H, Z) - want) <= 1e-12 * scale).all()
    kernels.use("auto")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 30), d=st.integers(1, 40), n=st.integers(0, 60))
def test_gather_product_equals_the_dense_product(seed, m, d, n):
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(m, d))
    V = rng.normal(size=(d, 7)) * (rng.random((d, 7)) < 0.2)
    rows = rng.integers(-m, m, n)
    want = Y[rows] @ V
    scale = np.abs(Y[rows]) @ np.abs(V)
    for name in BACKENDS:
        kernels.use(name)
        assert (np.abs(kernels.gather_product(Y, rows, V) - want) <= 1e-12 * scale).all()
    kernels.use("auto")
    with pytest.raises(DimensionError):
        kernels.gather_product(Y, np.array([m]), V)


def test_choices_are_the_same_on_both_backends(backend):
    """The whole choose path (sticky uniforms, greedy, draw) gives the numpy reference's decisions."""
    cat = make_catalog(n_titles=12, pool=6)
    f = Featurizer(cat)
    policy = trained(make_policy("linucb", seed=2, floor=0.1), cat, n=200)
    page = f.page(make_members(cat, 1)[0], list(cat.titles), request_id="r")
    got = policy.choose(page)
    kernels.use("numpy")
    want = policy.choose(page)
    np.testing.assert_array_equal(got.index, want.index)
    np.testing.assert_array_equal(got.probabilities, want.probabilities)
    members = [f"m{i % 7}" for i in range(50)]
    titles = [f"t{i}" for i in range(50)]
    ts = np.linspace(1.7e9, 1.7e9 + 5e5, 50)
    u_numpy = sticky_uniforms(9, members, titles, ts, 3_600.0)
    kernels.use(backend)
    u_backend = sticky_uniforms(9, members, titles, ts, 3_600.0)
    np.testing.assert_array_equal(u_backend[0], u_numpy[0])
    np.testing.assert_array_equal(u_backend[1], u_numpy[1])


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
def test_compiled_kernels_never_compile_on_a_call():
    """Each compiled kernel has its one signature from import; inputs of other dtypes, layouts or
    writeability are converted by the dispatch, not compiled for."""
    from keyart.kernels import compiled

    kernels.use("numba")
    try:
        names = {name for name, _ in kernels._examples()} - {"gather_product"} | {"_gather_product"}
        before = {name: len(getattr(compiled, name).signatures) for name in names}
        assert all(count == 1 for count in before.values())
        p = np.asfortranarray(np.full((4, 3), 1 / 3, dtype=np.float32))
        u = np.broadcast_to(np.float32(0.5), (4,))  # read-only
        kernels.sample_index(p, u)
        kernels.greedy_distribution(p[:, ::-1], np.ones((4, 3), dtype=np.int8))
        kernels.sticky_mix(np.arange(4), np.arange(4), np.arange(4, dtype=np.int32))
        kernels.sticky_draw(np.arange(4), np.arange(4), np.arange(4), 10, 3)
        kernels.row_quadratic(np.ones((2, 2, 2), dtype=np.float32), np.ones((2, 2, 2)))
        kernels.splitmix64(np.arange(6, dtype=np.uint32).reshape(2, 3))
        kernels.gather_product(np.ones((3, 4), dtype=np.float32).T, np.array([0, -1]), np.eye(3)[:, ::2])
        assert {name: len(getattr(compiled, name).signatures) for name in before} == before
    finally:
        kernels.use("auto")


def test_the_backend_switch():
    assert kernels.use("numpy") == "numpy" and kernels.backend() == "numpy"
    with pytest.raises(ValidationError, match="KEYART_KERNELS"):
        kernels.use("fortran")
    assert kernels.use("auto") == ("numba" if "numba" in BACKENDS else "numpy")
    assert kernels.warm_up() == kernels.backend()


def test_keyart_kernels_environment_and_the_fallback_without_numba():
    """``KEYART_KERNELS=numpy`` selects numpy; without numba, auto falls back to numpy and ``numba`` says
    how to install it."""
    code = (
        "import os, sys\n"
        "from keyart import kernels\n"
        "print(kernels.backend())\n"
        "sys.modules['numba'] = None\n"  # numba cannot be imported from here on
        "sys.modules.pop('keyart.kernels.compiled', None)\n"
        "print(kernels.use('auto'))\n"
        "try:\n    kernels.use('numba')\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**__import__("os").environ, "KEYART_KERNELS": "numpy"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0] == "numpy"
    assert out[1] == "numpy"
    assert out[2].startswith("ValidationError") and "keyart[fast]" in out[2]


@pytest.mark.parametrize("name", ["linucb", "linear_ts"])
def test_small_batches_moments_from_rows_equal_the_page_basis(backend, name):
    """A title or two (n x K <= SMALL_BATCH) takes its moments from the rows in float64: equal to the page
    basis's to 1e-12 relative, unknown artworks and padding included."""
    cat = make_catalog(n_titles=14, pool=7, seed=5)
    f = Featurizer(cat)
    policy = trained(make_policy(name, seed=1), cat, n=80)
    ctx = dataclasses.replace(make_members(cat, 1)[0], interacted_titles=frozenset({"t1"}))
    for titles in (["t0"], ["t1", "t2"], ["t3", "t13"]):
        batch = f.page(ctx, titles, request_id="r")
        assert batch.n * batch.k <= SMALL_BATCH
        post, rows = policy.posterior_, policy._rows(batch)
        for covariance in (False, True):
            mean, mom = policy._moments(batch, covariance=covariance)
            ref_mean, ref = post.page_moments(batch.basis(), rows, 1.0 / policy.bias_ridge_, covariance)
            m = batch.mask if not covariance else batch.mask[:, :, None] & batch.mask[:, None, :]
            np.testing.assert_allclose(mean[batch.mask], ref_mean[batch.mask], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(mom[m], ref[m], rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_one_title_benchmark_runs_both_agents_side_by_side():
    """benchmarks/bench_one_title.py --quick: the reference and keyart on each backend, in one table."""
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_one_title.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--quick"], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    assert "reference LinUCB (numpy)" in out and "keyart linucb (numpy)" in out
    assert ("keyart linucb (numba)" in out) == ("numba" in BACKENDS)
    row = next(line for line in out.splitlines() if line.startswith("reference"))
    assert row.split()[-2] == "1.00x"
