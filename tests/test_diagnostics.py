"""Unit tests of kernelvalue.diagnostics: exact variance, asymptotic formulas, AMISE, rates."""

import math
import warnings

import numpy as np
import pytest
from scipy import optimize, stats

from kernelvalue._array import to_numpy
from kernelvalue.diagnostics import (
    RateFit,
    amise,
    asymptotic_bias,
    asymptotic_variance,
    curvature_functional,
    h_amise,
    mse_rate,
    pointwise_variance,
)
from kernelvalue.kernels import KERNELS, get_kernel
from kernelvalue.smoothing import local_weights

EPA = get_kernel("epanechnikov")  # mu2 = 1/5, R(K) = 3/5


# --------------------------------------------------------------------------- pointwise_variance


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("d", [1, 2])
def test_pointwise_variance_equals_row_norms_of_smoother_matrix(xp, rng, degree, d):
    n, m, sigma2 = 80, 9, 0.37
    X_np = rng.uniform(0, 1, size=(n, d))
    xe_np = rng.uniform(0.2, 0.8, size=(m, d))
    sw_np = rng.uniform(0.5, 2.0, size=n)
    h = [0.35, 0.5][:d] if d == 2 else 0.3
    L = local_weights(X_np, xe_np, h, "biweight", degree, sample_weight=sw_np)
    expected = sigma2 * np.sum(L**2, axis=1)

    X, xe, sw = (xp.asarray(a) for a in (X_np, xe_np, sw_np))
    got = pointwise_variance(X, xe, h, sigma2, "biweight", degree, sample_weight=sw, chunk_size=4)
    assert type(got) is type(X)
    np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-10, atol=0)


def test_pointwise_variance_box_kernel_is_one_over_count():
    # NW with the uniform kernel averages the points in the box: variance sigma2 / count.
    X = np.arange(101) / 100.0
    v = pointwise_variance(X, np.array([0.5, 0.3]), 0.105, 2.0, "uniform", 0)
    np.testing.assert_allclose(v, [2.0 / 21, 2.0 / 21], rtol=1e-12)


def test_pointwise_variance_float32_and_1d_inputs():
    X = np.linspace(0, 1, 50, dtype=np.float32)
    v = pointwise_variance(X, np.array([0.5], dtype=np.float32), 0.2, 1.0, "epanechnikov", 1)
    assert v.dtype == np.float32 and v.shape == (1,)


def test_pointwise_variance_nan_policy_warns():
    X = np.linspace(0, 1, 30)
    with pytest.warns(RuntimeWarning, match="no \\(or too few\\) training points"):
        v = pointwise_variance(X, np.array([0.5, 5.0]), 0.1, 1.0, "epanechnikov", 0)
    assert np.isfinite(v[0]) and np.isnan(v[1])


@pytest.mark.parametrize("sigma2, err", [(-1.0, ValueError), (float("nan"), ValueError), ("a", TypeError)])
def test_pointwise_variance_bad_sigma2(sigma2, err):
    with pytest.raises(err, match="sigma2"):
        pointwise_variance(np.linspace(0, 1, 10), np.array([0.5]), 0.3, sigma2, "epanechnikov", 0)


def test_pointwise_variance_bad_bandwidth():
    with pytest.raises(ValueError, match="bandwidth"):
        pointwise_variance(np.linspace(0, 1, 10), np.array([0.5]), 0.0, 1.0, "epanechnikov", 0)


# --------------------------------------------------------------------------- asymptotic bias / variance


def test_asymptotic_bias_hand_values():
    x = np.array([0.5])
    # LL: h^2 mu2 m''/2 = 0.01 * 0.2 * 3 / 2 = 0.003
    np.testing.assert_allclose(asymptotic_bias(x, 0.1, "epanechnikov", 1, m2=3.0), [0.003], rtol=1e-14)
    # NW: 0.01 * 0.2 * (3/2 + 2 * 0.6 / 1.5) = 0.002 * 2.3 = 0.0046
    nw = asymptotic_bias(x, 0.1, "epanechnikov", 0, m2=3.0, m1=2.0, f=1.5, f1=0.6)
    np.testing.assert_allclose(nw, [0.0046], rtol=1e-14)
    # Gaussian kernel, mu2 = 1: 0.04 * 1 * (-4) / 2 = -0.08
    np.testing.assert_allclose(asymptotic_bias(x, 0.2, "gaussian", 1, m2=-4.0), [-0.08], rtol=1e-14)


def test_asymptotic_bias_callables_arrays_scalars_agree():
    x = np.linspace(0.2, 0.8, 5)
    m1, m2 = np.cos, lambda t: -np.sin(t)
    f, f1 = (lambda t: 0.5 + t), (lambda t: np.ones_like(t))
    by_callable = asymptotic_bias(x, 0.05, "triangular", 0, m2, m1=m1, f=f, f1=f1)
    by_array = asymptotic_bias(x, 0.05, "triangular", 0, m2(x), m1=m1(x), f=f(x), f1=1.0)
    np.testing.assert_allclose(by_callable, by_array, rtol=1e-14)
    by_hand = 0.05**2 * (1 / 6) * (m2(x) / 2 + m1(x) * 1.0 / f(x))
    np.testing.assert_allclose(by_callable, by_hand, rtol=1e-14)


def test_nw_equals_ll_on_uniform_design():
    x = np.linspace(0.2, 0.8, 4)
    ll = asymptotic_bias(x, 0.1, "biweight", 1, m2=np.exp)
    nw = asymptotic_bias(x, 0.1, "biweight", 0, m2=np.exp, m1=np.exp, f=1.0, f1=0.0)
    np.testing.assert_allclose(nw, ll, rtol=1e-15)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_bias_scales_with_h2_mu2_and_variance_with_roughness(name):
    k = KERNELS[name]
    x = np.array([0.4])
    b1 = asymptotic_bias(x, 0.1, name, 1, m2=2.0)
    b2 = asymptotic_bias(x, 0.2, name, 1, m2=2.0)
    np.testing.assert_allclose(b2 / b1, [4.0], rtol=1e-13)
    np.testing.assert_allclose(b1, [0.01 * k.mu2], rtol=1e-13)
    v = asymptotic_variance(x, 200, 0.1, name, sigma2=2.0, f=0.5)
    np.testing.assert_allclose(v, [k.roughness * 2.0 / (200 * 0.1 * 0.5)], rtol=1e-13)


def test_asymptotic_formulas_follow_backend(xp):
    x = xp.asarray([0.25, 0.5, 0.75], dtype=xp.float32)
    b = asymptotic_bias(x, 0.1, "epanechnikov", 0, m2=lambda t: 2 * t, m1=1.0, f=1.0, f1=0.5)
    v = asymptotic_variance(x, 100, 0.1, "epanechnikov", sigma2=lambda t: t, f=1.0)
    for out in (b, v):
        assert type(out) is type(x) and out.dtype == xp.float32 and out.shape == (3,)
    np.testing.assert_allclose(
        to_numpy(b), 0.01 * 0.2 * (np.array([0.25, 0.5, 0.75]) + 0.5), rtol=1e-6
    )
    np.testing.assert_allclose(to_numpy(v), 0.6 * np.array([0.25, 0.5, 0.75]) / 10, rtol=1e-6)


def test_asymptotic_variance_hand_value_and_column_input():
    # 0.6 * 0.25 / (1000 * 0.1 * 2) = 7.5e-4
    v = asymptotic_variance(np.array([[0.3]]), 1000, 0.1, "epanechnikov", sigma2=0.25, f=2.0)
    np.testing.assert_allclose(v, [7.5e-4], rtol=1e-14)


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("name", ["epanechnikov", "gaussian", "tricube"])
def test_asymptotic_variance_matches_exact_on_regular_uniform_design(degree, name):
    # Uniform design: f' = f'' = 0, so the O(h^2) correction of the interior
    # variance vanishes; the midpoint-rule error of sum K^2 / (sum K)^2 is
    # O((1/(n h))^2) = 1e-6, and the Gaussian tail beyond [0, 1] is exp(-50).
    n, h, x0 = 10_000, 0.05, np.array([0.5])
    X = (np.arange(n) + 0.5) / n
    exact = pointwise_variance(X, x0, h, 1.3, name, degree)
    asym = asymptotic_variance(x0, n, h, name, sigma2=1.3, f=1.0)
    np.testing.assert_allclose(exact, asym, rtol=1e-4)


def test_bias_and_variance_bad_input():
    x = np.array([0.5])
    with pytest.raises(ValueError, match=r"missing \['m1', 'f1'\]"):
        asymptotic_bias(x, 0.1, "epanechnikov", 0, m2=1.0, f=1.0)
    with pytest.raises(ValueError, match="f .*> 0"):
        asymptotic_bias(x, 0.1, "epanechnikov", 0, m2=1.0, m1=1.0, f=0.0, f1=1.0)
    with pytest.raises(ValueError, match="degree"):
        asymptotic_bias(x, 0.1, "epanechnikov", 2, m2=1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        asymptotic_bias(x, -0.1, "epanechnikov", 1, m2=1.0)
    with pytest.raises(ValueError, match="one covariate"):
        asymptotic_bias(np.ones((3, 2)), 0.1, "epanechnikov", 1, m2=1.0)
    with pytest.raises(ValueError, match="x_eval contains NaN"):
        asymptotic_bias(np.array([np.nan]), 0.1, "epanechnikov", 1, m2=1.0)
    with pytest.raises(ValueError, match="m2 has shape"):
        asymptotic_bias(np.array([0.1, 0.2]), 0.1, "epanechnikov", 1, m2=np.ones(3))
    with pytest.raises(ValueError, match="m2 is not finite"):
        asymptotic_bias(x, 0.1, "epanechnikov", 1, m2=np.inf)
    with pytest.raises(ValueError, match="unknown"):
        asymptotic_bias(x, 0.1, "nope", 1, m2=1.0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        asymptotic_variance(x, 0, 0.1, "epanechnikov", 1.0, 1.0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        asymptotic_variance(x, 10.5, 0.1, "epanechnikov", 1.0, 1.0)
    with pytest.raises(ValueError, match="sigma2 must be >= 0"):
        asymptotic_variance(x, 10, 0.1, "epanechnikov", -1.0, 1.0)
    with pytest.raises(ValueError, match="f .*> 0"):
        asymptotic_variance(x, 10, 0.1, "epanechnikov", 1.0, lambda t: -t)


# --------------------------------------------------------------------------- AMISE


def test_amise_hand_value_and_optimum():
    # h^4 mu2^2 theta22 / 4 + R sigma2 L / (n h) = 1e-4 * 0.04 * 4 / 4 + 0.6 * 0.25 * 2 / 100
    assert amise(0.1, 1000, "epanechnikov", 0.25, 4.0, support_length=2.0) == pytest.approx(4e-6 + 3e-3, rel=1e-14)
    args = (1000, "epanechnikov", 0.25, 4.0, 2.0)
    h_star = h_amise(*args)
    assert h_star == pytest.approx((0.6 * 0.25 * 2.0 / (0.04 * 4.0 * 1000)) ** 0.2, rel=1e-14)
    res = optimize.minimize_scalar(lambda h: amise(h, *args), bounds=(1e-3, 2.0), method="bounded",
                                   options={"xatol": 1e-10})
    assert res.x == pytest.approx(h_star, rel=1e-6)
    # First-order condition: variance term = 4 x squared-bias term at the optimum.
    bias_term = h_star**4 * 0.04 * 4.0 / 4
    assert amise(h_star, *args) == pytest.approx(5 * bias_term, rel=1e-12)


def test_amise_vectorised_and_rate():
    hs = np.array([0.05, 0.1, 0.2])
    vals = amise(hs, 500, "gaussian", 1.0, 3.0)
    np.testing.assert_allclose(vals, [amise(float(h), 500, "gaussian", 1.0, 3.0) for h in hs], rtol=1e-14)
    ns = np.array([1000, 32000])
    hs = h_amise(ns, "gaussian", 1.0, 3.0)
    assert hs[1] / hs[0] == pytest.approx(0.5, rel=1e-13)  # 32^(-1/5)


def test_amise_bad_input():
    with pytest.raises(ValueError, match="theta22 > 0"):
        h_amise(100, "epanechnikov", 1.0, 0.0)
    with pytest.raises(ValueError, match="sigma2"):
        h_amise(100, "epanechnikov", -1.0, 1.0)
    with pytest.raises(ValueError, match="support_length"):
        amise(0.1, 100, "epanechnikov", 1.0, 1.0, support_length=0.0)
    with pytest.raises(ValueError, match="h must be > 0"):
        amise(np.array([0.1, -0.1]), 100, "epanechnikov", 1.0, 1.0)
    with pytest.raises(ValueError, match="n must"):
        h_amise(0, "epanechnikov", 1.0, 1.0)
    with pytest.raises(ValueError, match="n must"):
        h_amise(np.array([10, 0]), "epanechnikov", 1.0, 1.0)


def test_curvature_functional():
    # m = x^3 on a uniform design: int_0^1 (6x)^2 dx = 12.
    assert curvature_functional(lambda t: 6 * t, lambda t: 1.0, 0.0, 1.0) == pytest.approx(12.0, rel=1e-12)
    # NW with f = 0.5 + x adds 2 m' f'/f to B; checked against a fine trapezoid rule.
    m1, m2, f, f1 = (lambda t: 3 * t**2), (lambda t: 6 * t), (lambda t: 0.5 + t), (lambda t: 1.0 + 0 * t)
    t = np.linspace(0.1, 0.9, 200_001)
    B = m2(t) + 2 * m1(t) * f1(t) / f(t)
    ref = np.trapezoid(B**2 * f(t), t)
    got = curvature_functional(m2, f, 0.1, 0.9, degree=0, m1=m1, f1=f1)
    assert got == pytest.approx(ref, rel=1e-9)
    with pytest.raises(ValueError, match="lo < hi"):
        curvature_functional(m2, f, 1.0, 0.0)
    with pytest.raises(ValueError, match="m1"):
        curvature_functional(m2, f, 0.0, 1.0, degree=0)


# --------------------------------------------------------------------------- mse_rate


def test_mse_rate_recovers_noiseless_power_law(xp):
    ns = np.array([100.0, 300.0, 1000.0, 3000.0, 10000.0])
    fit = mse_rate(xp.asarray(ns), xp.asarray(2.5 * ns**-0.8))
    assert isinstance(fit, RateFit)
    assert fit.slope == pytest.approx(-0.8, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(2.5), abs=1e-11)
    # linregress takes sqrt of a rounding-level residual sum: ~1e-8, not 0.
    assert fit.stderr < 1e-7 and fit.n_points == 5 and fit.level == 0.95


def test_mse_rate_standard_error_is_the_ols_formula(rng):
    ns = np.array([100, 200, 400, 800, 1600, 3200])
    mses = ns ** (-2 / 3) * np.exp(rng.normal(0, 0.1, ns.size))
    fit = mse_rate(ns, mses, level=0.9)
    x, y = np.log(ns), np.log(mses)
    sxx = np.sum((x - x.mean()) ** 2)
    slope = np.sum((x - x.mean()) * (y - y.mean())) / sxx
    resid = y - y.mean() - slope * (x - x.mean())
    se = math.sqrt(np.sum(resid**2) / (ns.size - 2) / sxx)
    q = stats.t.ppf(0.95, df=ns.size - 2)
    assert fit.slope == pytest.approx(slope, rel=1e-12)
    assert fit.stderr == pytest.approx(se, rel=1e-10)
    assert fit.ci == pytest.approx((slope - q * se, slope + q * se), rel=1e-10)


def test_mse_rate_interval_covers_at_nominal_level():
    # 2000 independent noisy power laws: the coverage is Binomial(2000, 0.95)/2000,
    # sd 0.0049, so 4 sd = 0.02 would flag a wrong quantile (z instead of t with
    # 4 df covers only ~0.88).
    rng = np.random.default_rng(7)
    ns = np.array([250, 500, 1000, 2000, 4000, 8000])
    noise = rng.normal(0, 0.05, size=(2000, ns.size))
    hits = [mse_rate(ns, 3 * ns**-0.8 * np.exp(e)).contains(-0.8) for e in noise]
    assert abs(np.mean(hits) - 0.95) < 0.02


@pytest.mark.parametrize(
    "ns, mses, match",
    [
        ([1, 2, 3], [1.0, 2.0], "same length"),
        ([1, 2], [1.0, 2.0], "at least 3"),
        ([1, 2, 3], [1.0, 0.0, 2.0], "mses must be finite and > 0"),
        ([1, 2, 3], [1.0, np.nan, 2.0], "mses must be finite and > 0"),
        ([1, -2, 3], [1.0, 1.0, 2.0], "ns must be finite and > 0"),
        ([5, 5, 5], [1.0, 1.0, 2.0], "two distinct"),
    ],
)
def test_mse_rate_bad_input(ns, mses, match):
    with pytest.raises(ValueError, match=match):
        mse_rate(ns, mses)


def test_mse_rate_bad_level():
    with pytest.raises(ValueError, match="level"):
        mse_rate([1, 2, 3], [1.0, 0.5, 0.3], level=1.5)


def test_no_warning_for_clean_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pointwise_variance(np.linspace(0, 1, 40), np.array([0.5]), 0.2, 1.0, "epanechnikov", 1)
