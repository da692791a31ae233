"""Exact fast sums (kernelvalue.fastsum) against the direct pairwise path.

The two paths compute the same numbers by different arithmetic: the fast sums
move cell moments to each point by the binomial formula (round-off ``eps``
times a bounded gain, with a pairwise fallback wherever that could exceed
``1e-10``), the direct path sums kernel weights one by one. So they agree to
``1e-9`` relative to the scale of the quantity (the issue's bar), on any
data: hypothesis draws sizes, heavy ties, ``1e6`` offsets, every kernel with a
closed form, both degrees and integer weights.
"""

import contextlib
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernelvalue.fastsum as fastsum
from kernelvalue.bandwidth import loo_score, select_bandwidth
from kernelvalue.fastsum import FastSmoother, supports
from kernelvalue.kernels import KERNELS, get_kernel
from kernelvalue.smoothing import FASTSUM_MIN_N, smooth, smoother_stats, use_fastsum

FAST_KERNELS = sorted(k for k, v in KERNELS.items() if supports(v))
REL = 1e-9
HAVE_NUMBA = fastsum._jit() is not None
# The criteria engines: numpy passes, and the compiled loop where numba is installed.
ENGINES = [False, True] if HAVE_NUMBA else [False]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def close(fast, direct, scale, conditioned=None):
    """Same NaN pattern, and ``|fast - direct| <= REL (|direct| + scale)`` (where
    ``conditioned``, if given, is True)."""
    fast, direct = np.asarray(fast), np.asarray(direct)
    assert np.array_equal(np.isnan(fast), np.isnan(direct))
    ok = ~np.isnan(direct) if conditioned is None else ~np.isnan(direct) & conditioned
    np.testing.assert_array_less(np.abs(fast[ok] - direct[ok]), REL * (np.abs(direct[ok]) + scale) + 1e-300)


@contextlib.contextmanager
def engine(jit):
    """FastSmoother.criteria by the compiled loop (``jit``) or by numpy passes."""
    saved = fastsum.USE_JIT
    fastsum.USE_JIT = jit
    try:
        yield
    finally:
        fastsum.USE_JIT = saved


def _design_condition(x, z, h, kernel, w):
    t = (x[None, :] - z[:, None]) / h
    k = get_kernel(kernel)(t) * (np.ones_like(x) if w is None else w)[None, :]
    s0, s1, s2 = k.sum(1), (k * t).sum(1), (k * t * t).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return s0 * s2 / (s0 * s2 - s1 * s1)


@st.composite
def problems(draw):
    n = draw(st.integers(2, 150))
    # A coarse lattice gives heavy ties; the offset puts x near 1e6.
    levels = draw(st.sampled_from([5, 40, 10_000]))
    offset = draw(st.sampled_from([0.0, 1e6, -3e5]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = offset + np.round(rng.uniform(0, 1, n) * levels) / levels
    y = np.sin(7 * (x - offset)) + rng.normal(0, 0.5, n)
    w = rng.integers(1, 5, n).astype(float) if draw(st.booleans()) else None
    h = draw(st.sampled_from([0.013, 0.05, 0.21, 1.7]))
    z = offset + rng.uniform(-0.3, 1.3, 25)
    return x, y, w, h, z


@SETTINGS
@given(problems(), st.sampled_from(FAST_KERNELS), st.sampled_from([0, 1]))
def test_fast_stats_equal_direct_stats(prob, kernel, degree):
    x, y, w, h, _ = prob
    fast = quiet(smoother_stats, x, y, h, kernel, degree, w, algorithm="fastsum")
    direct = quiet(smoother_stats, x, y, h, kernel, degree, w, algorithm="direct")
    scale = float(np.max(np.abs(y)))
    close(fast.fitted, direct.fitted, scale)
    close(fast.diag, direct.diag, 1.0)
    assert fast.n_undefined == direct.n_undefined
    assert fast.trace == pytest.approx(direct.trace, rel=REL, abs=REL)
    assert fast.trace_sst == pytest.approx(direct.trace_sst, rel=REL, abs=REL)


@SETTINGS
@given(problems(), st.sampled_from(FAST_KERNELS), st.sampled_from([0, 1]))
def test_fast_predictions_and_norms_equal_direct(prob, kernel, degree):
    x, y, w, h, z = prob
    c = None if w is None else 1.0 / w
    f_fit, f_norm = quiet(smooth, x, y, z, h, kernel, degree, w, return_norm=True, norm_weights=c, algorithm="fastsum")
    d_fit, d_norm = quiet(smooth, x, y, z, h, kernel, degree, w, return_norm=True, norm_weights=c, algorithm="direct")
    # A local line through a window whose weight sits almost all on one side
    # (far extrapolation; or two points whose weights differ by 1e12) has a
    # nearly singular design: every float evaluation of it, the direct one
    # too, carries ~eps * cond of round-off, cond = S0 S2 / (S0 S2 - S1^2).
    # Two of them agree to 1e-9 only where cond <= 1e4; compare those.
    conditioned = _design_condition(x, z, h, kernel, w) <= 1e4 if degree else None
    close(f_fit, d_fit, float(np.max(np.abs(y))), conditioned)
    close(f_norm, d_norm, 0.0, conditioned)


@pytest.mark.parametrize("kernel", FAST_KERNELS)
@pytest.mark.parametrize("degree", [0, 1])
def test_loo_through_fast_sums_equals_brute_force_refits(kernel, degree):
    rng = np.random.default_rng(3)
    n = 300
    x = 1e6 + np.round(rng.uniform(0, 1, n) * 120) / 120  # offsets and ties
    y = np.cos(5 * (x - 1e6)) + rng.normal(0, 0.2, n)
    w = rng.integers(1, 4, n).astype(float)
    h = 0.09
    brute = np.empty(n)
    for i in range(n):  # the reference: n genuine refits without point i
        keep = np.arange(n) != i
        brute[i] = y[i] - smooth(x[keep], y[keep], x[i : i + 1], h, kernel, degree, w[keep], algorithm="direct")[0]
    st_ = smoother_stats(x, y, h, kernel, degree, w, algorithm="fastsum")
    close((y - st_.fitted) / (1 - st_.diag), brute, float(np.max(np.abs(brute))))
    score = loo_score(x, y, h, kernel, degree, w, algorithm="fastsum")
    assert score == pytest.approx(np.sum(w * brute**2) / np.sum(w), rel=REL)


@SETTINGS
@given(problems(), st.sampled_from(FAST_KERNELS), st.sampled_from([0, 1]), st.sampled_from(ENGINES), st.booleans())
def test_fast_criteria_equal_direct(prob, kernel, degree, jit, masked):
    x, y, w, h, _ = prob
    n = x.size
    keep = np.arange(n) % 7 != 3 if masked else np.ones(n, dtype=bool)
    with engine(jit):
        mse, loo, trace, n_used, n_bad = FastSmoother(x, y, kernel, w).criteria(h, degree, keep if masked else None)
    st_ = quiet(smoother_stats, x, y, h, kernel, degree, w, algorithm="direct")
    fit, diag, yk = st_.fitted[keep], st_.diag[keep], y[keep]
    v = np.ones(n)[keep] if w is None else w[keep]
    assert (n_used, n_bad) == (int(keep.sum()), int(np.isnan(fit).sum()))
    ok = ~np.isnan(fit)
    assert trace == pytest.approx(np.sum(diag[ok]), rel=REL, abs=REL)
    if n_bad:
        assert mse == loo == math.inf
        return
    # Fits agree to REL (|fit| + scale) and leverages to REL: propagate that
    # through the squared (deleted) residuals.
    scale = float(np.max(np.abs(y)))
    r, dr = yk - fit, REL * (np.abs(fit) + scale)
    assert mse == pytest.approx(np.sum(v * r * r) / v.sum(), abs=np.sum(v * (2 * np.abs(r) + dr) * dr) / v.sum())
    if not np.all(diag < 1 - 1e-6):  # a leave-one-out fit without data, or nearly: no digits to compare
        return
    om = 1 - diag
    bound = np.sum(v * ((2 * np.abs(r) + dr) * dr / om**2 + 2 * r * r * REL / om**3)) / v.sum()
    assert loo == pytest.approx(np.sum(v * (r / om) ** 2) / v.sum(), abs=2 * bound)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed: the compiled loop is not used")
@pytest.mark.parametrize("kernel", FAST_KERNELS)
@pytest.mark.parametrize("degree", [0, 1])
def test_compiled_criteria_equal_numpy_criteria_on_hard_data(kernel, degree):
    if get_kernel(kernel).poly is None:
        pytest.skip("the compiled loop sums polynomial kernels")
    # Ties on a lattice of step h / 4 (every window edge on a data point),
    # 1e6 offsets, weights over four decades, a zero weight, a far point.
    rng = np.random.default_rng(5)
    x = 1e6 + np.concatenate([np.round(rng.uniform(0, 1, 3000) * 160) / 160, [40.0]])  # the last left out
    y = np.cos(5 * (x - 1e6)) + rng.normal(0, 0.2, x.size)
    w = 10.0 ** rng.uniform(-2, 2, x.size)
    w[7] = 0.0
    fs = FastSmoother(x, y, kernel, w)
    assert fastsum._jit() is not None
    # Lattice multiples (every point on a window edge: the fallback) and off-lattice bandwidths in
    # falling then rising order, so the compiled sums run and their scratch grows between calls.
    for h in (1 / 40, 0.4731, 0.0731, 0.2113, 0.5):
        with engine(False):
            ref = fs.criteria(h, degree, x < 1e6 + 10)
        with engine(True):
            got = fs.criteria(h, degree, x < 1e6 + 10)
        assert got[3:] == ref[3:]
        np.testing.assert_allclose(got[:3], ref[:3], rtol=1e-10)


def test_criteria_in_sorted_order_match_the_public_scores():
    rng = np.random.default_rng(8)
    x = rng.uniform(0, 1, 1000)
    y = np.sin(6 * x) + rng.normal(0, 0.3, 1000)
    mask = rng.uniform(size=1000) < 0.9
    mse, loo, trace, n, n_bad = FastSmoother(x, y, "biweight").criteria(0.08, 1, mask)
    st_ = smoother_stats(x, y, 0.08, "biweight", 1, algorithm="direct")
    r = (y - st_.fitted)[mask]
    assert (n, n_bad) == (int(mask.sum()), 0)
    assert mse == pytest.approx(np.mean(r**2), rel=REL)
    assert loo == pytest.approx(np.mean((r / (1 - st_.diag[mask])) ** 2), rel=REL)
    assert trace == pytest.approx(np.sum(st_.diag[mask]), rel=REL)


def test_uniform_kernel_edges_are_classified_as_the_direct_path_does():
    # Points exactly h apart on a lattice: the uniform kernel's jump sits on
    # them, so the window must hold exactly the points the direct path's own
    # floating-point test admits.
    x = np.arange(400) * 0.1
    y = np.sin(x)
    for h in (0.1, 0.2, 0.30000000000000004, 0.3):
        close(smoother_stats(x, y, h, "uniform", 0, algorithm="fastsum").fitted,
              smoother_stats(x, y, h, "uniform", 0, algorithm="direct").fitted, 1.0)


def test_exponential_recursions_far_from_the_data_and_in_gaps():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(0, 1, 500), rng.uniform(30, 31, 500)])  # a gap of 29 bandwidths
    y = np.sin(3 * x) + rng.normal(0, 0.1, x.size)
    z = np.array([-40.0, -2.0, 0.5, 15.0, 30.5, 70.0])
    for degree in (0, 1):
        f = smooth(x, y, z, 1.0, "exponential", degree, algorithm="fastsum")
        d = smooth(x, y, z, 1.0, "exponential", degree, algorithm="direct")
        close(f, d, 1.0)


def test_fast_sums_are_used_automatically_where_they_apply():
    X = np.zeros((FASTSUM_MIN_N, 1))
    assert use_fastsum("auto", X, "tricube") and use_fastsum("auto", X, "exponential")
    assert not use_fastsum("auto", X, "gaussian")  # no closed form: pairwise
    assert not use_fastsum("auto", X[:-1], "tricube")  # small n: pairwise is as fast
    assert not use_fastsum("auto", np.zeros((FASTSUM_MIN_N, 2)), "tricube")  # d-D
    assert not use_fastsum("direct", X, "tricube")
    torch = pytest.importorskip("torch")
    h = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert not use_fastsum("auto", torch.zeros((FASTSUM_MIN_N, 1), dtype=torch.float64), "tricube", h)


@pytest.mark.parametrize(
    "X,kernel,match",
    [
        (np.zeros((50, 2)), "tricube", "X has 2 features"),
        (np.zeros((50, 1)), "gaussian", "no polynomial or exponential form"),
    ],
)
def test_forcing_fast_sums_where_they_do_not_apply_is_an_error(X, kernel, match):
    with pytest.raises(ValueError, match=match):
        smooth(X, np.zeros(50), X, 0.5, kernel, algorithm="fastsum")
    with pytest.raises(ValueError, match="algorithm='fast' is unknown"):
        smooth(X, np.zeros(50), X, 0.5, kernel, algorithm="fast")


def test_search_reports_the_algorithm_and_matches_direct():
    rng = np.random.default_rng(11)
    x = rng.uniform(0, 1, 600)
    y = np.sin(2 * np.pi * x) + rng.normal(0, 0.3, 600)
    fast = select_bandwidth(x, y, "loo", kernel="epanechnikov", degree=1)
    direct = select_bandwidth(x, y, "loo", kernel="epanechnikov", degree=1, algorithm="direct")
    assert fast.algorithm == "fastsum" and direct.algorithm == "direct"
    np.testing.assert_allclose(fast.scores, direct.scores, rtol=REL)
    assert fast.bandwidth == pytest.approx(direct.bandwidth, rel=1e-6)
    assert math.isfinite(fast.score)
