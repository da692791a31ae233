"""Binned 1-D fast path: error bounds against the exact smoother, exactness
properties, smoother statistics, backends and bad input.

Error bound used below (derivation in kernelvalue/binned.py). With grid spacing
delta and bandwidth h, binning replaces each kernel weight by its linear
interpolant between grid points:

* on smooth parts of K the weight error is <= (delta/h)^2 sup|K''| / 8; over the
  ~2 tau n h f points of a window, relative to S_0 ~ n h f, that is
  (delta/h)^2 tau sup|K''| / 4 of the total weight;
* at a kink of K with slope jump J, points within delta of the kink (a fraction
  2 delta/h of the window, per kink) carry a weight error <= J delta/(4h): J/2
  (delta/h)^2 in total; interpolating the grid values back to the data adds
  about J/4 (delta/h)^2 more (the fitted curve inherits the kinks);
* a weight error moves the fit by at most the weight fraction times the spread
  of y in the window (<= range(y)); local linear weights exceed NW's by at most
  a factor ~4 at the boundary;
* linear interpolation of a smooth fit from grid to x adds delta^2 sup|m''| / 8.

So |binned - exact| <= (delta/h)^2 [C_K range(y) F_deg + h^2 sup|m''| / 8] with
C_K = tau sup|K''| / 4 + 3/4 sum J, F_0 = 1, F_1 = 4. C_K is computed from the
kernel itself below (finite differences), not tabulated.
"""

import math
import warnings

import numpy as np
import pytest

from kernelvalue._array import to_numpy
from kernelvalue.binned import (
    BINNED_THRESHOLD,
    DEFAULT_GRID_SIZE,
    BinnedData,
    _effective_support,
    binned_criteria,
    binned_smooth,
    binned_smoother_stats,
    linear_binning,
)
from kernelvalue.kernels import get_kernel
from kernelvalue.smoothing import smooth, smoother_stats

SMOOTHISH = ["epanechnikov", "gaussian", "triangular", "biweight", "exponential", "tricube"]


def kernel_constant(name):
    """C_K = tau sup|K''| / 4 + 3/4 sum of slope jumps, from the kernel itself."""
    kern = get_kernel(name)
    tau = _effective_support(kern)
    kinks = [0.0] + ([kern.support, -kern.support] if kern.compact else [])
    eps = 1e-6
    jumps = 0.0
    for u in kinks:
        k = [float(kern(np.array([u + s]))[0]) for s in (-2 * eps, -eps, 0.0, eps, 2 * eps)]
        left, right = (k[2] - k[0]) / (2 * eps), (k[4] - k[2]) / (2 * eps)
        jumps += abs(right - left)
    u = np.linspace(-tau, tau, 200_001)
    du = u[1] - u[0]
    k2 = np.abs(np.diff(kern(u), 2)) / du**2
    near_kink = np.min(np.abs(u[1:-1, None] - np.array(kinks)[None, :]), axis=1) < 3 * du
    return tau * k2[~near_kink].max() / 4 + 0.75 * jumps


@pytest.fixture
def data(rng):
    n = 2000
    x = rng.uniform(0.0, 1.0, n)
    y = np.sin(2 * np.pi * x) + 0.3 * rng.normal(size=n)
    return x, y


def test_kernel_constants_are_what_the_derivation_says():
    # Epanechnikov: K'' = -3/2 inside, slope jumps 3/2 at both edges.
    assert kernel_constant("epanechnikov") == pytest.approx(1.5 / 4 + 0.75 * 3.0, rel=1e-3)
    # Triangular: K'' = 0, jumps 2 at 0 and 1 at each edge.
    assert kernel_constant("triangular") == pytest.approx(0.75 * 4.0, rel=1e-3)


# --------------------------------------------------------------------- binning


def test_linear_binning_small_example_by_hand():
    # 0.25 is half way between grid points 0 and 0.5: weight 1/2 each.
    grid, counts, ysums = linear_binning(np.array([0.0, 0.25, 1.0]), np.array([1.0, 2.0, 3.0]), grid_size=3)
    np.testing.assert_allclose(grid, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(counts, [1.5, 0.5, 1.0])
    np.testing.assert_allclose(ysums, [2.0, 1.0, 3.0])


def test_linear_binning_conserves_mass_and_first_moment(rng):
    x = rng.normal(size=5000)
    y = rng.normal(size=5000)
    w = rng.uniform(0.1, 2.0, size=5000)
    grid, counts, ysums = linear_binning(x, y, sample_weight=w, grid_size=257)
    assert counts.min() >= 0
    np.testing.assert_allclose(counts.sum(), w.sum(), rtol=1e-12)
    np.testing.assert_allclose(ysums.sum(), (w * y).sum(), rtol=1e-10, atol=1e-10)
    # Linear binning keeps each point's centre of mass: sum_g g c_g = sum_i w_i x_i.
    np.testing.assert_allclose((grid * counts).sum(), (w * x).sum(), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose([grid[0], grid[-1]], [x.min(), x.max()])


def test_effective_support_truncation():
    for name, tau in [("gaussian", math.sqrt(2 * math.log(1e12))), ("exponential", math.log(1e12))]:
        assert _effective_support(get_kernel(name)) == pytest.approx(tau, rel=1e-6)
    assert _effective_support(get_kernel("epanechnikov")) == 1.0


# ------------------------------------------------------------- error vs exact


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("kernel", SMOOTHISH)
def test_error_vs_exact_within_derived_bound(data, kernel, degree):
    x, y = data
    h, M = 0.05, 1025
    x_eval = np.linspace(0.0, 1.0, 301)
    exact = smooth(x, y, x_eval, h, kernel, degree)
    approx = binned_smooth(x, y, x_eval, h, kernel, degree, grid_size=M)
    delta = 1.0 / (M - 1)  # the grid spans [0, 1] because x_eval does
    r2 = (delta / h) ** 2
    bound = r2 * (kernel_constant(kernel) * np.ptp(y) * (1 if degree == 0 else 4) + h**2 * (2 * np.pi) ** 2 / 8)
    err = np.max(np.abs(approx - exact))
    assert err < bound, (err, bound)


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("kernel", ["epanechnikov", "gaussian", "biweight", "tricube"])
def test_error_shrinks_fourfold_when_grid_spacing_halves(rng, kernel, degree):
    # Noise-free smooth data so the O((delta/h)^2) term dominates; many random
    # evaluation points so the max over cells of t(1 - t) is ~1/4 at every M
    # (a fixed evaluation set would sample different t per grid and blur the ratio).
    # Data at 0 and 1 pin the grid to [0, 1] for every M.
    x = np.concatenate([[0.0, 1.0], rng.uniform(0.0, 1.0, 3000)])
    y = np.sin(2 * np.pi * x)
    x_eval = np.concatenate([[0.0, 1.0], rng.uniform(0.0, 1.0, 600)])
    h = 0.08
    exact = smooth(x, y, x_eval, h, kernel, degree)
    errs = [np.max(np.abs(binned_smooth(x, y, x_eval, h, kernel, degree, grid_size=m) - exact)) for m in (101, 201, 401)]
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    # Second order: 4x per halving; [3, 5.5] leaves room for the kink terms'
    # Poisson fluctuation, while a first-order method would give ~2.
    assert np.all((ratios > 3.0) & (ratios < 5.5)), (errs, ratios)


def test_uniform_kernel_is_first_order(data):
    # The uniform kernel jumps by 1/2 at +-1: points within delta of an edge
    # (a fraction 2 delta/h of the window over both edges) get weight errors up
    # to 1/2, so the error is O(delta/h) range(y), not O((delta/h)^2).
    x, y = data
    h, M = 0.05, 1025
    x_eval = np.linspace(0.0, 1.0, 301)
    err = np.max(np.abs(binned_smooth(x, y, x_eval, h, "uniform", grid_size=M) - smooth(x, y, x_eval, h, "uniform")))
    assert err < (1.0 / (M - 1)) / h * np.ptp(y)


# ------------------------------------------------------------- exactness


@pytest.mark.parametrize("kernel", SMOOTHISH + ["uniform"])
def test_nw_reproduces_constants_and_ll_lines_exactly(rng, kernel):
    # The binned fit is a genuine weighted least-squares fit (interpolated
    # kernel weights, true design), so these hold to round-off at any grid.
    x = rng.uniform(-2.0, 3.0, 1500)
    w = rng.uniform(0.2, 3.0, 1500)
    x_eval = rng.uniform(-2.0, 3.0, 200)
    const = binned_smooth(x, np.full_like(x, 4.2), x_eval, 0.3, kernel, 0, sample_weight=w, grid_size=301)
    np.testing.assert_allclose(const, 4.2, rtol=0, atol=1e-10)
    line = binned_smooth(x, 1.5 - 0.7 * x, x_eval, 0.3, kernel, 1, sample_weight=w, grid_size=301)
    np.testing.assert_allclose(line, 1.5 - 0.7 * x_eval, rtol=0, atol=1e-10)
    st = binned_smoother_stats(x, 1.5 - 0.7 * x, 0.3, kernel, 1, sample_weight=w, grid_size=301)
    np.testing.assert_allclose(st.fitted, 1.5 - 0.7 * x, rtol=0, atol=1e-10)


def test_integer_weights_equal_duplicated_rows(rng):
    # Binning is linear in the weights, so weight 2 == the row twice.
    x = rng.uniform(size=400)
    y = np.cos(4 * x) + 0.1 * rng.normal(size=400)
    w = rng.integers(1, 4, size=400)
    xd, yd = np.repeat(x, w), np.repeat(y, w)
    for degree in (0, 1):
        a = binned_smoother_stats(x, y, 0.1, "biweight", degree, sample_weight=w.astype(float), grid_size=513)
        b = binned_smoother_stats(xd, yd, 0.1, "biweight", degree, grid_size=513)
        np.testing.assert_allclose(np.repeat(a.fitted, w), b.fitted, rtol=1e-12, atol=1e-12)
        # Duplicated rows each get half (or a third) of the weighted leverage.
        np.testing.assert_allclose(np.repeat(a.diag / w, w), b.diag, rtol=1e-10)
        assert a.trace == pytest.approx(b.trace, rel=1e-10)


def test_weighted_fit_close_to_exact_weighted(data, rng):
    x, y = data
    w = rng.uniform(0.5, 2.0, x.size)
    x_eval = np.linspace(0.0, 1.0, 101)
    for degree in (0, 1):
        exact = smooth(x, y, x_eval, 0.05, "epanechnikov", degree, sample_weight=w)
        approx = binned_smooth(x, y, x_eval, 0.05, "epanechnikov", degree, sample_weight=w)
        # default grid: delta/h = 1/(4096 * 0.05); bound as in the module docstring
        # with weights in [0.5, 2] widening the weight-fraction term by 4.
        r2 = (1 / 4096 / 0.05) ** 2
        bound = r2 * (4 * kernel_constant("epanechnikov") * np.ptp(y) * (1 if degree == 0 else 4) + 0.05**2 * 40 / 8)
        assert np.max(np.abs(approx - exact)) < bound


# ------------------------------------------------------------- smoother statistics


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("kernel", ["epanechnikov", "gaussian"])
def test_stats_close_to_exact(data, kernel, degree):
    x, y = data
    h, M = 0.1, 201
    exact = smoother_stats(x, y, h, kernel, degree)
    approx = binned_smoother_stats(x, y, h, kernel, degree, grid_size=M)
    delta = np.ptp(x) / (M - 1)
    # Leverages are K(0) w_i A(x_i) with A = 1/S_0 (or the LL first-row
    # factor), so their relative error is S_0's: C_K (delta/h)^2 (times 4 for
    # LL). n delta ~ 10 points per grid strip: Poisson fluctuations of the kink
    # terms stay within a factor 3 of their mean.
    rel = 3 * kernel_constant(kernel) * (delta / h) ** 2 * (1 if degree == 0 else 4)
    assert np.max(np.abs(approx.diag / exact.diag - 1)) < rel
    assert approx.trace == pytest.approx(exact.trace, rel=rel)
    assert approx.trace_sst == pytest.approx(exact.trace_sst, rel=2 * rel)  # squares double it
    assert np.max(np.abs(approx.fitted - exact.fitted)) < rel * np.ptp(y) + delta**2 * 40 / 8
    assert approx.n_undefined == exact.n_undefined == 0


def test_binned_data_reused_across_bandwidths_matches_direct_calls(data):
    x, y = data
    bd = linear_binning(x, y)
    assert isinstance(bd, BinnedData) and bd.n == x.size and bd.grid_size == DEFAULT_GRID_SIZE
    for h in (0.02, 0.1):
        for degree in (0, 1):
            a = binned_smoother_stats(bd, None, h, "tricube", degree)
            b = binned_smoother_stats(x, y, h, "tricube", degree)
            np.testing.assert_array_equal(a.fitted, b.fitted)
            np.testing.assert_array_equal(a.diag, b.diag)
            assert (a.trace, a.trace_sst) == (b.trace, b.trace_sst)
    fit = binned_smooth(bd, None, x[:5], 0.1)
    np.testing.assert_allclose(fit, binned_smoother_stats(bd, None, 0.1).fitted[:5], rtol=1e-12)


def test_binned_loo_cv_selects_the_exact_bandwidth(rng):
    # The use case: closed-form LOO over a bandwidth grid. The binned criterion
    # differs from the exact one by O((delta/h)^2) ~ 1e-4 relative, far below
    # the criterion's change between neighbouring grid points, so the argmin agrees.
    x = rng.uniform(size=1500)
    y = np.sin(2 * np.pi * x) + 0.5 * rng.normal(size=1500)
    grid = np.geomspace(0.02, 0.3, 12)
    bd = linear_binning(x, y)

    def loo(st):
        return np.mean(((y - st.fitted) / (1 - st.diag)) ** 2)

    for degree in (0, 1):
        exact = np.array([loo(smoother_stats(x, y, h, degree=degree)) for h in grid])
        binned = np.array([loo(binned_smoother_stats(bd, None, h, degree=degree)) for h in grid])
        assert np.argmin(binned) == np.argmin(exact)
        np.testing.assert_allclose(binned, exact, rtol=1e-3)


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_binned_criteria_equal_the_per_point_computation(data, rng, degree, weighted):
    # rss and the traces are the same sums as from the arrays, reordered by
    # cell, so they agree to round-off. Unweighted loo interpolates
    # phi(S) = 1/(1 - S)^2 instead of S: per point the difference is at most
    # phi''(S) dS^2 / 8 = 3/4 (1 - S)^-4 dS^2 with dS the change of S over a
    # cell, dS ~ C S delta/h (C of order one, as for S_0). With S <= 1/4 this
    # is <= 0.15 C^2 (delta/h)^2 relative: (delta/h)^2 as tolerance.
    x, y = data
    y = y + 100.0  # a large mean must not cost precision (per-cell centring)
    w = rng.uniform(0.5, 2.0, x.size) if weighted else None
    bd = linear_binning(x, y, sample_weight=w)
    v = np.ones_like(x) if w is None else w
    for h in (0.01, 0.05, 0.2):
        crit = binned_criteria(bd, h, "epanechnikov", degree)
        st = binned_smoother_stats(bd, None, h, "epanechnikov", degree)
        r = y - st.fitted
        assert crit.rss == pytest.approx(np.sum(v * r * r) / v.sum(), rel=1e-9)
        assert weighted or np.max(st.diag) < 0.25  # the premise of the tolerance
        loo_rel = 0.0 if weighted else (np.ptp(x) / 4096 / h) ** 2  # weighted: same per-point formula
        assert crit.loo == pytest.approx(np.sum(v * (r / (1 - st.diag)) ** 2) / v.sum(), rel=loo_rel + 1e-12)
        assert (crit.trace, crit.trace_sst, crit.n, crit.n_undefined) == (st.trace, st.trace_sst, x.size, 0)


def test_binned_criteria_undefined_and_type(data):
    x, y = data
    with pytest.raises(TypeError, match="BinnedData"):
        binned_criteria(x, 0.1)
    bd = linear_binning(x, y, grid_size=101)
    with pytest.warns(RuntimeWarning):
        crit = binned_criteria(bd, 0.004)  # support within one grid spacing
    assert crit.n_undefined == x.size and math.isnan(crit.loo)
    # Local linear with all x equal: no line can be fitted anywhere.
    crit = binned_criteria(linear_binning(np.full(30, 1.0), y[:30]), 0.5, degree=1)
    assert crit.n_undefined == 30 and math.isnan(crit.rss)


# ------------------------------------------------------------- NaN policy, warnings


def test_no_data_in_support_gives_nan_and_warning(data):
    x, y = data
    with pytest.warns(RuntimeWarning, match="no \\(or too few\\) training points"):
        fit = binned_smooth(x, y, np.array([0.5, 3.0]), 0.05)
    assert np.isfinite(fit[0]) and np.isnan(fit[1])


def test_points_the_grid_cannot_serve_are_computed_exactly(data):
    x, y = data
    bd = linear_binning(x, y)
    x_eval = np.array([0.5, -1.0, x.max() + 0.3])
    # Outside the grid with an unbounded kernel: the exact fit exists (tiny
    # but positive weights), so the binned path returns it too.
    fit = binned_smooth(bd, None, x_eval, 0.05, kernel="gaussian")
    exact = smooth(x, y, x_eval[1:], 0.05, "gaussian")
    assert np.isfinite(fit).all()
    np.testing.assert_allclose(fit[1:], exact, rtol=1e-12)
    # ... and with a compact kernel neither path has data there: NaN on both.
    with pytest.warns(RuntimeWarning, match="no \\(or too few\\) training points"):
        fit = binned_smooth(bd, None, x_eval, 0.05, kernel="epanechnikov")
    assert np.isfinite(fit[0]) and np.isnan(fit[1:]).all()
    # A far evaluation point no longer stretches the grid of the others.
    near = binned_smooth(x, y, np.array([0.5]), 0.05)
    with pytest.warns(RuntimeWarning):
        both = binned_smooth(x, y, np.array([0.5, 1e6]), 0.05)
    assert both[0] == near[0]


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("kernel", ["epanechnikov", "gaussian"])
def test_far_outlier_does_not_stretch_the_grid(data, kernel, degree):
    x, y = data
    xo, yo = np.append(x, 1e6), np.append(y, 5.0)
    x_eval = np.array([0.25, 0.5, 1e6, 7.0])
    h = 0.05  # one grid over [0, 1e6] would be 244 wide: all NaN
    clean = binned_smooth(x, y, x_eval[:2], h, kernel=kernel, degree=degree)
    clean_st = binned_smoother_stats(x, y, h, kernel=kernel, degree=degree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN where no data: checked below
        exact = smooth(xo, yo, x_eval[2:], h, kernel=kernel, degree=degree)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = binned_smooth(xo, yo, x_eval, h, kernel=kernel, degree=degree)
        st = binned_smoother_stats(xo, yo, h, kernel=kernel, degree=degree)
    assert not any("grid spacing" in str(w.message) for w in caught)
    # The bulk gets the grid it has without the outlier (no weight crosses the
    # gap), so its fits are the same numbers; far points are computed exactly.
    np.testing.assert_array_equal(fit[:2], clean)
    np.testing.assert_array_equal(st.fitted[:-1], clean_st.fitted)
    np.testing.assert_array_equal(st.diag[:-1], clean_st.diag)
    np.testing.assert_array_equal(np.isnan(fit[2:]), np.isnan(exact))
    np.testing.assert_allclose(fit[2:][~np.isnan(exact)], exact[~np.isnan(exact)], rtol=1e-12)
    if degree == 0:  # alone in its window: the fit is its own y, S_ii = 1
        assert (st.fitted[-1], st.diag[-1], st.n_undefined) == (5.0, 1.0, 0)
        assert st.trace == pytest.approx(clean_st.trace + 1.0, rel=1e-12)
    else:  # no line through one point: undefined, as on the exact path
        assert np.isnan(st.fitted[-1]) and st.n_undefined == 1
        assert st.trace == pytest.approx(clean_st.trace, rel=1e-12)
        assert any("no (or too few)" in str(w.message) for w in caught)


def test_far_apart_clusters_get_a_grid_each(rng):
    a = rng.uniform(0.0, 1.0, 3000)
    b = rng.uniform(1e4, 1e4 + 2.0, 2000)
    ya, yb = np.sin(6 * a), np.cos(b - 1e4)
    x, y = np.concatenate([a, b]), np.concatenate([ya, yb])
    w = rng.uniform(0.5, 2.0, x.size)
    st = binned_smoother_stats(x, y, 0.05, degree=1, sample_weight=w)
    alone = [binned_smoother_stats(a, ya, 0.05, degree=1, sample_weight=w[:3000]),
             binned_smoother_stats(b, yb, 0.05, degree=1, sample_weight=w[3000:])]
    np.testing.assert_array_equal(st.fitted, np.concatenate([s.fitted for s in alone]))
    np.testing.assert_array_equal(st.diag, np.concatenate([s.diag for s in alone]))
    assert st.trace_sst == pytest.approx(sum(s.trace_sst for s in alone), rel=1e-12)
    z = np.array([0.5, 1e4 + 1.0])
    fit = binned_smooth(x, y, z, 0.05, degree=1, sample_weight=w)
    assert fit[0] == binned_smooth(a, ya, z[:1], 0.05, degree=1, sample_weight=w[:3000])[0]
    assert fit[1] == binned_smooth(b, yb, z[1:], 0.05, degree=1, sample_weight=w[3000:])[0]


def test_local_linear_all_x_equal_is_undefined_nw_is_the_mean(rng):
    x = np.full(50, 2.0)
    y = rng.normal(size=50)
    np.testing.assert_allclose(binned_smooth(x, y, np.array([2.0]), 0.5), y.mean(), rtol=1e-12)
    with pytest.warns(RuntimeWarning):
        ll = binned_smooth(x, y, np.array([2.0]), 0.5, degree=1)
    assert np.isnan(ll[0])
    st = binned_smoother_stats(x, y, 0.5, degree=1)
    assert st.n_undefined == 50


def test_coarse_grid_warns(data):
    x, y = data
    with pytest.warns(RuntimeWarning, match="grid_size"):
        binned_smoother_stats(x, y, 0.01, grid_size=101)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        binned_smoother_stats(x, y, 0.01)  # default grid: delta = 1/4096 << h
    # Support within one grid spacing: the binned "fit" is a bin average, not
    # an approximation, so everything is undefined rather than plausible.
    with pytest.warns(RuntimeWarning, match="undefined"):
        st = binned_smoother_stats(x, y, 0.5 / 100, grid_size=101)
    assert st.n_undefined == x.size and np.all(np.isnan(st.fitted)) and math.isnan(st.trace)
    with pytest.warns(RuntimeWarning):
        assert np.all(np.isnan(binned_smooth(x, y, np.array([0.5]), 0.5 / 100, grid_size=101)))


# ------------------------------------------------------------- backends


def test_backends_follow_x(xp, data):
    x, y = data
    xb, yb = xp.asarray(x), xp.asarray(y)
    x_eval = xp.asarray(np.linspace(0.1, 0.9, 7))
    ref = binned_smooth(x, y, np.linspace(0.1, 0.9, 7), 0.1, degree=1, return_norm=True)
    fit, norm = binned_smooth(xb, yb, x_eval, 0.1, degree=1, return_norm=True)
    assert type(fit) is type(xb)
    np.testing.assert_allclose(to_numpy(fit), ref[0], rtol=1e-12)
    np.testing.assert_allclose(to_numpy(norm), ref[1], rtol=1e-12)
    st = binned_smoother_stats(xb, yb, 0.1)
    assert type(st.diag) is type(xb) and st.fitted.shape == (x.size,)
    grid, counts, ysums = linear_binning(xb, yb)
    assert type(grid) is type(xb)
    # (n, 1) inputs and float32 in -> float32 out
    x32 = xp.asarray(x[:, None], dtype=xp.float32)
    fit32 = binned_smooth(x32, xp.asarray(y, dtype=xp.float32), xp.asarray([0.5], dtype=xp.float32), 0.1)
    assert fit32.dtype == xp.float32
    np.testing.assert_allclose(to_numpy(fit32), binned_smooth(x, y, np.array([0.5]), 0.1), rtol=1e-5)


def test_norm_close_to_exact(data):
    x, y = data
    x_eval = np.linspace(0.05, 0.95, 31)
    for degree in (0, 1):
        _, exact = smooth(x, y, x_eval, 0.08, "gaussian", degree, return_norm=True)
        _, approx = binned_smooth(x, y, x_eval, 0.08, "gaussian", degree, return_norm=True)
        # same O((delta/h)^2) relative error, delta/h = 1/(4096*0.08) ~ 3e-3; x3 for squares
        np.testing.assert_allclose(approx, exact, rtol=3 * 4 * kernel_constant("gaussian") * (1 / 4096 / 0.08) ** 2)


def test_threshold_is_a_sensible_size():
    assert isinstance(BINNED_THRESHOLD, int) and 1000 <= BINNED_THRESHOLD <= 10**5


# ------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors(data):
    x, y = data
    with pytest.raises(ValueError, match="1-D"):
        binned_smooth(np.c_[x, x], y, np.array([0.5]), 0.1)
    with pytest.raises(ValueError, match="1-D"):
        binned_smoother_stats(np.c_[x, x], y, 0.1)
    bad = x.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        binned_smoother_stats(bad, y, 0.1)
    bad = y.copy()
    bad[3] = np.inf
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        binned_smoother_stats(x, bad, 0.1)
    with pytest.raises(ValueError, match="x_eval contains NaN"):
        binned_smooth(x, y, np.array([np.nan]), 0.1)
    with pytest.raises(ValueError, match="y has 5 values"):
        binned_smoother_stats(x, y[:5], 0.1)
    with pytest.raises(ValueError, match="0 samples"):
        linear_binning(np.array([]), np.array([]))
    for h in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="bandwidth"):
            binned_smoother_stats(x, y, h)
    with pytest.raises(ValueError, match="unknown"):
        binned_smoother_stats(x, y, 0.1, kernel="nope")
    with pytest.raises(ValueError, match="degree"):
        binned_smoother_stats(x, y, 0.1, degree=2)
    for g in (2, 10.5, True):
        with pytest.raises(ValueError, match="grid_size"):
            linear_binning(x, y, grid_size=g)
    with pytest.raises(ValueError, match="cover the data"):
        linear_binning(x, y, lo=0.5)
    with pytest.raises(ValueError, match="sample_weight"):
        linear_binning(x, y, sample_weight=-np.ones_like(x))
    with pytest.raises(ValueError, match="sample_weight has"):
        linear_binning(x, y, sample_weight=np.ones(3))
    bd = linear_binning(x, y)
    with pytest.raises(ValueError, match="already a BinnedData"):
        binned_smoother_stats(bd, y, 0.1)
