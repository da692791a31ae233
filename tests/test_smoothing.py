"""Properties of the linear smoothers (kernelvalue.smoothing).

Hypothesis draws designs on a quarter grid in [-3, 3] and bandwidths on an
offset grid ((k + 1/2) / 4), so no training point sits exactly on a compact
kernel's support edge: every positive kernel weight is at least ~1/(4k + 2)
of the peak, and the local Gram matrices stay well conditioned. That lets the
algebraic identities below be checked to near machine precision: the
tolerances are a few hundred ulps of the data scale (sums of <= 25 terms of
size <= 10, each with O(eps) rounding, times a bounded condition number).
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kernelvalue._array import to_numpy
from kernelvalue.kernels import KERNELS, get_kernel
from kernelvalue.smoothing import local_weights, smooth, smoother_matrix, smoother_stats

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMPACT = sorted(k for k, v in KERNELS.items() if v.compact)
ALL_KERNELS = sorted(KERNELS)


def quiet(fn, *args, **kwargs):
    """Call ``fn`` ignoring the documented no-data RuntimeWarning (NaN rows are masked by the caller)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


@st.composite
def problems(draw, d=1, min_n=3, max_n=20, kernels=ALL_KERNELS, min_k=2):
    """(X, x_eval, h, kernel, y) with a well-conditioned design (see module docstring)."""
    n = draw(st.integers(min_n, max_n))
    X = np.array(draw(st.lists(st.integers(-12, 12), min_size=n * d, max_size=n * d)), float).reshape(n, d) / 4
    m = draw(st.integers(1, 6))
    # Evaluation points on the eighth grid: between and beyond the data.
    x_eval = np.array(draw(st.lists(st.integers(-28, 28), min_size=m * d, max_size=m * d)), float).reshape(m, d) / 8
    kernel = draw(st.sampled_from(kernels))
    if get_kernel(kernel).compact:
        ks = draw(st.lists(st.integers(min_k, 30), min_size=d, max_size=d))
    else:
        # Unbounded kernels: h >= range/4 keeps weight ratios above e^-8 (Gaussian).
        ks = draw(st.lists(st.integers(6, 30), min_size=d, max_size=d))
    h = (np.array(ks, float) + 0.5) / 4
    y = np.array(draw(st.lists(st.floats(-10, 10, allow_nan=False, allow_subnormal=False), min_size=n, max_size=n)))
    return X, x_eval, (float(h[0]) if d == 1 else h), kernel, y


def defined(rows):
    return ~np.isnan(rows).any(axis=1)


# ----------------------------------------------------------------- weights


@SETTINGS
@pytest.mark.parametrize("d, atol", [(1, 1e-12), (2, 1e-11)])
@given(degree=st.sampled_from([0, 1]), data=st.data())
def test_rows_sum_to_one(d, atol, degree, data):
    X, x_eval, h, kernel, _ = data.draw(problems(d=d))
    L = quiet(local_weights, X, np.vstack([X, x_eval]), h, kernel, degree)
    ok = defined(L)
    np.testing.assert_allclose(L[ok].sum(axis=1), 1.0, rtol=0, atol=atol)
    if degree == 0:
        # Each training point is inside its own window: NW is defined in-sample.
        assert ok[: X.shape[0]].all()


@SETTINGS
@given(problems(d=1), st.floats(-5, 5), st.floats(-5, 5))
def test_local_linear_reproduces_lines(prob, a, b):
    X, x_eval, h, kernel, _ = prob
    y = a + b * X[:, 0]
    fit = quiet(smooth, X, y, x_eval, h, kernel, degree=1)
    ok = ~np.isnan(fit)
    scale = abs(a) + 3 * abs(b) + 1
    np.testing.assert_allclose(fit[ok], a + b * x_eval[ok, 0], rtol=0, atol=1e-9 * scale)


@SETTINGS
@given(problems(d=2), st.floats(-5, 5), st.floats(-5, 5), st.floats(-5, 5))
def test_local_linear_reproduces_planes(prob, a, b1, b2):
    X, x_eval, h, kernel, _ = prob
    y = a + X @ np.array([b1, b2])
    fit = quiet(smooth, X, y, x_eval, h, kernel, degree=1)
    # Where the window spans both directions the plane is reproduced exactly;
    # where it is flat in one direction only the part along the span is
    # identified (documented minimum-norm rule), so check full-rank windows.
    L = quiet(local_weights, X, x_eval, h, kernel, 1)
    full = np.array([_window_rank(X, row) == 2 for row in np.nan_to_num(L)]) & ~np.isnan(fit)
    scale = abs(a) + 3 * (abs(b1) + abs(b2)) + 1
    np.testing.assert_allclose(fit[full], (a + x_eval @ np.array([b1, b2]))[full], rtol=0, atol=1e-8 * scale)


def _window_rank(X, row):
    pts = X[row != 0]
    if pts.shape[0] < 2:
        return 0
    return np.linalg.matrix_rank(pts - pts.mean(axis=0), tol=1e-9)


@SETTINGS
@given(problems(d=1), st.floats(-1e3, 1e3, allow_subnormal=False))
def test_nadaraya_watson_reproduces_constants(prob, c):
    X, x_eval, h, kernel, _ = prob
    fit = quiet(smooth, X, np.full(X.shape[0], c), x_eval, h, kernel, degree=0)
    ok = ~np.isnan(fit)
    np.testing.assert_allclose(fit[ok], c, rtol=1e-13, atol=0)


@SETTINGS
@given(problems(d=1), st.sampled_from([0, 1]), st.floats(-3, 3), st.floats(-3, 3), st.data())
def test_linear_in_y(prob, degree, alpha, beta, data):
    X, x_eval, h, kernel, y1 = prob
    y2 = np.array(data.draw(st.lists(st.floats(-10, 10), min_size=len(y1), max_size=len(y1))))
    lhs = quiet(smooth, X, alpha * y1 + beta * y2, x_eval, h, kernel, degree)
    rhs = alpha * quiet(smooth, X, y1, x_eval, h, kernel, degree) + beta * quiet(smooth, X, y2, x_eval, h, kernel, degree)
    # |l|_1 is at most a few (LL rows have small negative entries); terms <= 60.
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-11)


# d-D local linear solves through the eigen-decomposition of the window's
# weighted d x d covariance; on these designs its condition number reaches
# ~1e4 (e.g. 3 points whose weights differ 250-fold), which multiplies the
# round-off: 1e-9 there, the 1-D bound elsewhere.
ATOL_BY_D = {1: 1e-10, 2: 1e-9}


@SETTINGS
@pytest.mark.parametrize("d", [1, 2])
@given(degree=st.sampled_from([0, 1]), data=st.data())
def test_permutation_invariance(d, degree, data):
    X, x_eval, h, kernel, y = data.draw(problems(d=d))
    perm = np.array(data.draw(st.permutations(range(X.shape[0]))))
    w = np.array(data.draw(st.lists(st.integers(1, 4), min_size=len(y), max_size=len(y))), float)
    a = quiet(smooth, X, y, x_eval, h, kernel, degree, sample_weight=w)
    b = quiet(smooth, X[perm], y[perm], x_eval, h, kernel, degree, sample_weight=w[perm])
    np.testing.assert_allclose(a, b, rtol=0, atol=ATOL_BY_D[d])  # NaN pattern must match too


@SETTINGS
@pytest.mark.parametrize("d", [1, 2])
@given(degree=st.sampled_from([0, 1]), data=st.data())
def test_integer_weights_equal_row_duplication(d, degree, data):
    X, x_eval, h, kernel, y = data.draw(problems(d=d))
    w = np.array(data.draw(st.lists(st.integers(0, 3), min_size=len(y), max_size=len(y))))
    assume(w.sum() > 0)
    a = quiet(smooth, X, y, x_eval, h, kernel, degree, sample_weight=w.astype(float))
    b = quiet(smooth, np.repeat(X, w, axis=0), np.repeat(y, w), x_eval, h, kernel, degree)
    # Local-linear extrapolation can reach |fit| ~ 40 from |y| <= 10, and the
    # round-off scales with it: a relative term beside the absolute one.
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=ATOL_BY_D[d])


# Kernels smooth at 0 (K(u) = K(0)(1 - O(u^2))) converge at rate (range/h)^2;
# the triangular and exponential kernels have a cusp, K(u) = K(0)(1 - |u|),
# and converge only at rate range/h, so they are left out of the limit tests.
SMOOTH_AT_ZERO = [k for k in ALL_KERNELS if k not in ("triangular", "exponential")]


@SETTINGS
@given(problems(d=1, kernels=SMOOTH_AT_ZERO), st.data())
def test_huge_bandwidth_nw_gives_weighted_mean(prob, data):
    X, x_eval, _, kernel, y = prob
    w = np.array(data.draw(st.lists(st.integers(1, 4), min_size=len(y), max_size=len(y))), float)
    h = 1e6  # data and evaluation points lie within |u| <= 1e-5
    fit = smooth(X, y, np.clip(x_eval, -3, 3), h, kernel, degree=0, sample_weight=w)
    # Weights deviate from equal by O(u^2) = 1e-10 relative.
    np.testing.assert_allclose(fit, np.average(y, weights=w), rtol=0, atol=1e-8 * (1 + np.abs(y).max()))


@SETTINGS
@given(problems(d=1, kernels=SMOOTH_AT_ZERO))
def test_huge_bandwidth_ll_gives_ols_line(prob):
    X, x_eval, _, kernel, y = prob
    assume(np.ptp(X[:, 0]) > 0)
    h = 1e6
    x0 = np.clip(x_eval, -3, 3)
    fit = smooth(X, y, x0, h, kernel, degree=1)
    slope, intercept = np.polyfit(X[:, 0], y, 1)
    # O(u^2) weight perturbation times the design's condition (spread >= 1/4).
    np.testing.assert_allclose(fit, intercept + slope * x0[:, 0], rtol=0, atol=1e-6 * (1 + np.abs(y).max()))


@SETTINGS
@given(problems(d=2, kernels=["gaussian", "epanechnikov", "biweight"]))
def test_huge_bandwidth_ll_gives_ols_plane_2d(prob):
    X, x_eval, _, kernel, y = prob
    Z = np.column_stack([np.ones(len(X)), X])
    assume(np.linalg.matrix_rank(Z) == 3 and np.linalg.cond(Z) < 1e3)
    fit = smooth(X, y, np.clip(x_eval, -3, 3), 1e6, kernel, degree=1)
    beta = np.linalg.lstsq(Z, y, rcond=None)[0]
    expected = beta[0] + np.clip(x_eval, -3, 3) @ beta[1:]
    np.testing.assert_allclose(fit, expected, rtol=0, atol=1e-6 * (1 + np.abs(y).max()))


# --------------------------------------------------- product kernel, d-D


def _reference_rows(X, x0, h, kernel, degree):
    """Explicit weighted least squares at one point: the definition of l(x0)."""
    kern = get_kernel(kernel)
    w = np.prod(kern((X - x0) / h), axis=1)
    Z = np.ones((len(X), 1)) if degree == 0 else np.column_stack([np.ones(len(X)), X - x0])
    A = Z.T @ (w[:, None] * Z)
    return np.linalg.solve(A, (w[:, None] * Z).T)[0]


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("kernel", ["epanechnikov", "gaussian", "triweight"])
def test_product_kernel_per_dimension_bandwidth(rng, kernel, degree):
    X = rng.uniform(-1, 1, size=(60, 3)) * np.array([1.0, 10.0, 0.1])
    h = np.array([0.8, 6.0, 0.09])
    x_eval = rng.uniform(-0.5, 0.5, size=(7, 3)) * np.array([1.0, 10.0, 0.1])
    L = local_weights(X, x_eval, h, kernel, degree)
    ref = np.vstack([_reference_rows(X, x0, h, kernel, degree) for x0 in x_eval])
    np.testing.assert_allclose(L, ref, rtol=1e-9, atol=1e-12)
    # Per-dimension bandwidths are tied to their columns: rescaling a column
    # and its bandwidth together leaves the smoother unchanged ...
    c = np.array([3.0, 0.5, 100.0])
    np.testing.assert_allclose(local_weights(X * c, x_eval * c, h * c, kernel, degree), L, rtol=1e-9, atol=1e-12)
    # ... and permuting columns together with the bandwidths does too.
    p = [2, 0, 1]
    np.testing.assert_allclose(local_weights(X[:, p], x_eval[:, p], h[p], kernel, degree), L, rtol=1e-9, atol=1e-12)
    # A scalar bandwidth is the same value in every dimension.
    np.testing.assert_allclose(
        local_weights(X, x_eval, 5.0, kernel, degree), local_weights(X, x_eval, [5.0] * 3, kernel, degree)
    )


def test_local_linear_collinear_window_is_minimum_norm(rng):
    # Second feature redundant (x2 = 2 x1): the windows are 1-D, the plane is
    # not identified, and the fit equals 1-D local linear on the spanned
    # direction (the documented minimum-norm rule) instead of failing.
    x = rng.uniform(0, 1, 40)
    X = np.column_stack([x, 2 * x])
    y = np.sin(3 * x)
    x0 = np.array([[0.3, 0.6], [0.7, 1.4]])
    h = np.array([0.3, 0.6])  # equal in bandwidth units, so the span is the diagonal
    fit2 = smooth(X, y, x0, h, "gaussian", degree=1)
    # In bandwidth units u = (x - x0)/0.3 along both axes: the product kernel
    # exp(-u^2/2)^2 equals a 1-D Gaussian with bandwidth 0.3/sqrt(2).
    fit1 = smooth(x[:, None], y, x0[:, :1], 0.3 / math.sqrt(2), "gaussian", degree=1)
    np.testing.assert_allclose(fit2, fit1, rtol=1e-9)


# ------------------------------------------------------ chunking, S stats


@pytest.mark.parametrize("degree", [0, 1])
def test_chunk_size_does_not_change_results(xp, rng, degree):
    X = rng.uniform(0, 1, size=(53, 2))
    y = np.sin(4 * X[:, 0]) + X[:, 1]
    w = rng.integers(1, 4, size=53).astype(float)
    x_eval = rng.uniform(0, 1, size=(17, 2))
    Xx, yx, wx, ex = (xp.asarray(a) for a in (X, y, w, x_eval))
    base, base_norm = smooth(Xx, yx, ex, [0.4, 0.5], "biweight", degree, wx, return_norm=True)
    st0 = smoother_stats(Xx, yx, [0.4, 0.5], "biweight", degree, wx)
    for chunk in (1, 4, 16, 1000):
        fit, norm2 = smooth(Xx, yx, ex, [0.4, 0.5], "biweight", degree, wx, return_norm=True, chunk_size=chunk)
        np.testing.assert_allclose(to_numpy(fit), to_numpy(base), rtol=0, atol=1e-13)
        np.testing.assert_allclose(to_numpy(norm2), to_numpy(base_norm), rtol=0, atol=1e-13)
        st = smoother_stats(Xx, yx, [0.4, 0.5], "biweight", degree, wx, chunk_size=chunk)
        np.testing.assert_allclose(to_numpy(st.fitted), to_numpy(st0.fitted), rtol=0, atol=1e-13)
        np.testing.assert_allclose(to_numpy(st.diag), to_numpy(st0.diag), rtol=0, atol=1e-13)
        assert st.trace == pytest.approx(st0.trace, abs=1e-12)
        assert st.trace_sst == pytest.approx(st0.trace_sst, abs=1e-12)


@pytest.mark.parametrize("kernel", ALL_KERNELS)
@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("d", [1, 2])
def test_smoother_stats_match_explicit_matrix(rng, kernel, degree, d):
    # The chunked paths sort the data and give each block only the training
    # points within the kernel's reach; a small bandwidth and small chunks
    # make those windows narrow and many, while smoother_matrix builds every
    # entry. Dropping exact zeros must not change the numbers beyond round-off.
    n = 120
    X = rng.uniform(0, 1, size=(n, d))  # unsorted
    y = np.cos(5 * X[:, 0]) + 0.1 * rng.standard_normal(n)
    w = rng.uniform(0.5, 2.0, n)
    h = [0.12, 0.3][:d]
    x_eval = np.concatenate([rng.uniform(0, 1, size=(15, d)), np.full((1, d), 40.0)])  # the last: no data near
    S = quiet(smoother_matrix, X, None, h, kernel, degree, w)
    ok = defined(S)
    st = smoother_stats(X, y, h, kernel, degree, w, chunk_size=7)
    assert st.n_undefined == n - ok.sum()
    np.testing.assert_allclose(st.fitted[ok], S[ok] @ y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.diag[ok], np.diag(S)[ok], rtol=0, atol=1e-13)
    assert st.trace == pytest.approx(np.sum(np.diag(S)[ok]), abs=1e-12)
    assert st.trace_sst == pytest.approx(np.sum(S[ok] ** 2), abs=1e-12)
    L = quiet(local_weights, X, x_eval, h, kernel, degree, w)
    fit, norm2 = quiet(smooth, X, y, x_eval, h, kernel, degree, w, return_norm=True, chunk_size=3)
    np.testing.assert_allclose(fit[:-1], L[:-1] @ y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(norm2[:-1], np.sum(L[:-1] ** 2, axis=1), rtol=0, atol=1e-13)
    c = rng.uniform(0.0, 3.0, n)
    _, cnorm2 = quiet(smooth, X, y, x_eval, h, kernel, degree, w, return_norm=True, chunk_size=3, norm_weights=c)
    np.testing.assert_allclose(cnorm2[:-1], (L[:-1] ** 2) @ c, rtol=0, atol=1e-12)
    # The far point is NaN where L's row is (no weight in reach); the
    # exponential kernel still reaches it, and a local line extrapolated
    # ~300 bandwidths multiplies the round-off by that lever arm.
    np.testing.assert_allclose(fit[-1], L[-1] @ y, rtol=1e-9)


@pytest.mark.parametrize("degree", [0, 1])
def test_gaussian_weights_below_exp_floor_are_zero(rng, degree):
    # At h = 0.004 most block pairs reach u ~ 100 where exp underflows (the
    # slow path of numpy's exp): those weights are cut at |u| = sqrt(1400)
    # = 37.4 instead of 38.6. Nothing else moves: every kept weight is the
    # same number, and the cut ones are below 1e-304 of a point's own weight.
    n, h = 300, 0.004
    x = np.sort(rng.uniform(0, 1, n))
    x[-1] = x[-2] + 30 * h  # an isolated point: its neighbour weighs exp(-450)
    y = np.cos(5 * x) + 0.1 * rng.standard_normal(n)
    w = rng.uniform(0.5, 2.0, n)
    S = quiet(smoother_matrix, x, None, h, "gaussian", degree, w)
    st = smoother_stats(x, y, h, "gaussian", degree, w, algorithm="direct")
    np.testing.assert_allclose(st.fitted, S @ y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.diag, np.diag(S), rtol=0, atol=1e-13)
    # New points: in reach of one point, near the cut, beyond it (a local
    # line needs a second point, 30 h further: NaN at all three).
    z = x[-1] + np.array([20.0, 37.0, 38.0]) * h
    L = quiet(local_weights, x, z, h, "gaussian", degree, w)
    with pytest.warns(RuntimeWarning, match=f"{1 + 2 * degree} evaluation point"):
        fit = smooth(x, y, z, h, "gaussian", degree, w, algorithm="direct")
    if degree == 0:
        np.testing.assert_allclose(fit[:2], L[:2] @ y, rtol=1e-9)
        assert np.isfinite(L[2] @ y) and np.isnan(fit[2])  # subnormal weights on the dense path


def test_window_keeps_points_exactly_on_the_support_edge():
    # The uniform kernel weighs |u| = 1 fully: a grid with spacing h / 4 puts
    # training points at exactly +-h from evaluation points; the reach of each
    # block must include them however x -/+ h rounds.
    X = np.arange(41) * 0.025
    y = np.sin(7 * X)
    S = local_weights(X, None, 0.1, "uniform")
    assert np.any(np.abs((X[None, :] - X[:, None]) / 0.1) == 1.0)  # some pairs sit exactly on the edge
    st = smoother_stats(X, y, 0.1, "uniform", chunk_size=1)
    np.testing.assert_allclose(st.fitted, S @ y, rtol=0, atol=1e-14)
    np.testing.assert_allclose(smooth(X, y, X[::-1], 0.1, "uniform", chunk_size=2), (S @ y)[::-1], rtol=0, atol=1e-14)


# -------------------------------------------------------- no-data policy


def test_nw_no_data_in_support_gives_nan_and_warning(xp):
    X = xp.asarray([[0.0], [0.1], [0.2]])
    y = xp.asarray([1.0, 2.0, 3.0])
    x_eval = xp.asarray([[0.1], [5.0]])
    with pytest.warns(RuntimeWarning, match=r"1 evaluation point.*bandwidth=0\.3.*larger bandwidth"):
        fit, norm2 = smooth(X, y, x_eval, 0.3, "epanechnikov", 0, return_norm=True)
    fit, norm2 = to_numpy(fit), to_numpy(norm2)
    assert np.isfinite(fit[0]) and np.isnan(fit[1]) and np.isnan(norm2[1])
    with pytest.warns(RuntimeWarning, match="NaN"):
        L = to_numpy(local_weights(X, x_eval, 0.3))
    assert np.isnan(L[1]).all() and np.isfinite(L[0]).all()


def test_ll_one_distinct_point_gives_nan_and_warning(xp):
    # Two points at the same x in the window: a line through them is undefined.
    # float32 too: the singularity test must not mistake rounding for spread.
    for dtype in (xp.float64, xp.float32):
        X = xp.asarray([[0.0], [0.0], [5.0]], dtype=dtype)
        y = xp.asarray([1.0, 3.0, 0.0], dtype=dtype)
        x0 = xp.asarray([[0.1]], dtype=dtype)
        with pytest.warns(RuntimeWarning, match="too few"):
            fit = to_numpy(smooth(X, y, x0, 1.0, "triangular", 1))
        assert np.isnan(fit).all()
        # NW is defined there (the mean of the two).
        assert float(to_numpy(smooth(X, y, x0, 1.0, "triangular", 0))[0]) == pytest.approx(2.0)


def test_smoother_stats_reports_undefined_without_warning():
    X = np.array([[0.0], [0.0], [5.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st = smoother_stats(X, np.array([1.0, 3.0, 0.0]), 1.0, "triangular", 1)
    assert st.n_undefined == 3 and np.isnan(st.fitted).all()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_bandwidth_raises(bad):
    with pytest.raises(ValueError, match="bandwidth must be finite and > 0"):
        smooth(np.zeros((3, 1)), np.zeros(3), np.zeros((1, 1)), bad)


def test_wrong_number_of_bandwidths_raises():
    with pytest.raises(ValueError, match="one per feature"):
        smooth(np.zeros((3, 2)), np.zeros(3), np.zeros((1, 2)), [1.0, 1.0, 1.0])
