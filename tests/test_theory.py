"""Monte-Carlo checks of the asymptotic theory of NW and local linear smoothing.

Setting: y = m(x) + sigma * eps, eps ~ N(0, 1), design density f on [0, 1]
(uniform, or Beta(2, 2): f = 6x(1-x), f' = 6 - 12x, f'' = -12), evaluation at
an interior point x0. The design is the deterministic quantile design
x_i = F^{-1}((i + 1/2) / n): it has density f, and conditioning on it removes
the random-design fluctuation of the bias (O_p(h / sqrt(nh)) for NW) so that
the Monte-Carlo mean targets the bias formula itself.

Vectorisation: the fit at x0 is l(x0) @ y, so one weight row from the library
(``local_weights``) serves all R replications: fits = l @ m(X) + sigma * E @ l
with E an (R, n) noise matrix. The kernels are compact, so l_j = 0 exactly
outside the window and the noise columns there are never drawn (same fits,
far less memory).

Tolerances. Each comparison allows
  * 4 Monte-Carlo standard errors (for the mean: sd(fit)/sqrt(R); for the
    sample variance of Gaussian fits: var * sqrt(2/(R-1))); with fixed seeds
    this is a |z| <= 4 criterion, two-sided level 6e-5 per check, and
  * the known second-order term of the expansion, derived below (relative size
    c * h^2), with a factor 1.5 for the O(h^4) remainder:
    ``test_second_order_terms`` verifies on a large design that the remainder
    after the c * h^2 term is below half of it and shrinks like h^4.

Second-order terms (symmetric K, mu_k = int u^k K, R = int K^2, Q = int u^2 K^2,
derivatives of f and m at x0; expand the sums as integrals against f and Taylor
expand to the next even order; odd moments vanish):
  NW bias = h^2 mu2 F''/(2f) [1 + h^2 (mu4 F''''/(12 mu2 F'') - mu2 f''/(2f))],
      F = f (m - m(x0)):  F'' = f m'' + 2 f'm',
      F'''' = f m'''' + 4 f'm''' + 6 f''m'' + 4 f'''m'.
  LL bias = h^2 mu2 m''/2 [1 + h^2 ((mu4/mu2) m''''/(12 m'')
      + (mu4/(2 mu2) - mu2/2) f''/f + (mu2 - mu4/mu2) (f'/f)^2)].
  NW var  = R sigma^2/(n h f) [1 + h^2 (Q/(2R) - mu2) f''/f].
  LL var  = R sigma^2/(n h f) [1 + h^2 ((Q/(2R) - mu2) f''/f + (2 mu2 - Q/R) (f'/f)^2)].
(NW: ratio of int K f(x0+hu)(m(x0+hu)-m(x0)) du to int K f(x0+hu) du; LL: the
2x2 weighted least-squares solve with moments a_k = int K u^k f(x0+hu) du.)
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from scipy import integrate, stats

from kernelvalue.diagnostics import (
    asymptotic_bias,
    asymptotic_variance,
    curvature_functional,
    h_amise,
    mse_rate,
    pointwise_variance,
)
from kernelvalue.kernels import get_kernel
from kernelvalue.smoothing import local_weights

Z = 4.0  # Monte-Carlo allowance in standard errors (see module docstring).


# --------------------------------------------------------------------------- setting


@dataclass(frozen=True)
class Design:
    name: str
    ppf: Callable
    d: tuple  # f, f', f'', f''' as callables

    def quantile(self, n):
        return self.ppf((np.arange(n) + 0.5) / n)


UNIFORM = Design(
    "uniform",
    lambda p: p,
    (lambda x: np.ones_like(x), lambda x: 0 * x, lambda x: 0 * x, lambda x: 0 * x),
)
BETA22 = Design(
    "beta22",
    stats.beta(2, 2).ppf,
    (lambda x: 6 * x * (1 - x), lambda x: 6 - 12 * x, lambda x: -12 + 0 * x, lambda x: 0 * x),
)
DESIGNS = {d.name: d for d in (UNIFORM, BETA22)}

# Smooth regression functions with derivatives m, m', m'', m''', m''''.
SMOOTH = {
    "exp": tuple((lambda k: lambda x: 2.0**k * np.exp(2 * x))(k) for k in range(5)),
    "sin": (
        lambda x: np.sin(2 * np.pi * x),
        lambda x: 2 * np.pi * np.cos(2 * np.pi * x),
        lambda x: -((2 * np.pi) ** 2) * np.sin(2 * np.pi * x),
        lambda x: -((2 * np.pi) ** 3) * np.cos(2 * np.pi * x),
        lambda x: (2 * np.pi) ** 4 * np.sin(2 * np.pi * x),
    ),
}


def _moments(kernel):
    k = get_kernel(kernel)
    K = lambda u: float(k(np.asarray([u]))[0])  # noqa: E731
    mu4 = integrate.quad(lambda u: u**4 * K(u), -k.support, k.support)[0]
    Q = integrate.quad(lambda u: u**2 * K(u) ** 2, -k.support, k.support)[0]
    return k.mu2, mu4, k.roughness, Q


def _asymptotics(x0, n, h, kernel, degree, sigma, m, design):
    """First-order bias and variance from the library, and their relative
    second-order coefficients c (value ~ first_order * (1 + c h^2))."""
    f, f1, f2, f3 = (g(x0) for g in design.d)
    m1, m2, m3, m4 = (g(x0) for g in m[1:])
    x = np.array([x0])
    bias = float(asymptotic_bias(x, h, kernel, degree, m2=m2, m1=m1, f=f, f1=f1)[0])
    var = float(asymptotic_variance(x, n, h, kernel, sigma**2, f)[0])
    mu2, mu4, R, Q = _moments(kernel)
    if degree == 0:
        F2 = f * m2 + 2 * f1 * m1
        F4 = f * m4 + 4 * f1 * m3 + 6 * f2 * m2 + 4 * f3 * m1
        c_bias = mu4 * F4 / (12 * mu2 * F2) - mu2 * f2 / (2 * f)
        c_var = (Q / (2 * R) - mu2) * f2 / f
    else:
        c_bias = (mu4 / mu2) * m4 / (12 * m2) + (mu4 / (2 * mu2) - mu2 / 2) * f2 / f + (mu2 - mu4 / mu2) * (f1 / f) ** 2
        c_var = (Q / (2 * R) - mu2) * f2 / f + (2 * mu2 - Q / R) * (f1 / f) ** 2
    return bias, var, c_bias, c_var


def _exact(X, x0, h, kernel, degree, sigma, mfun):
    """Exact conditional bias and variance at x0 given the design (library)."""
    row = local_weights(X, np.array([x0]), h, kernel, degree)[0]
    bias = float(row @ mfun(X) - mfun(x0))
    var = float(pointwise_variance(X, np.array([x0]), h, sigma**2, kernel, degree)[0])
    return row, bias, var


def _mc_fits(row, X, mfun, sigma, R, rng):
    """R Monte-Carlo fits l @ y at one point, vectorised over replications."""
    idx = np.flatnonzero(row)  # compact kernel: l_j = 0 outside the window
    w = row[idx]
    signal = w @ mfun(X[idx])
    fits = np.empty(R)
    step = max(1, 2_000_000 // idx.size)  # bound the noise block to ~16 MB
    for start in range(0, R, step):
        e = rng.standard_normal((min(step, R - start), idx.size))
        fits[start : start + e.shape[0]] = signal + sigma * (e @ w)
    return fits


# --------------------------------------------------------------------------- deterministic expansion check


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("mname", ["exp", "sin"])
def test_second_order_terms(degree, mname):
    """Exact conditional bias/variance on a large quantile design approach the
    first-order formulas at rate h^2, and the derived c h^2 term captures the
    deviation up to an O(h^4) remainder (ratio of remainders ~ 16 per halving)."""
    m, design, kernel, x0, sigma = SMOOTH[mname], BETA22, "epanechnikov", 0.3, 1.0
    n = 400_000  # discretisation error O((n h)^-2) <= 3e-9, far below h^4
    X = design.quantile(n)
    first, remainder, predicted = {}, {}, {}
    for h in (0.1, 0.05):
        _, b, v = _exact(X, x0, h, kernel, degree, sigma, m[0])
        ab, av, cb, cv = _asymptotics(x0, n, h, kernel, degree, sigma, m, design)
        first[h] = np.array([b / ab - 1, v / av - 1])
        predicted[h] = np.array([cb, cv]) * h**2
        remainder[h] = first[h] - predicted[h]
    # First-order error is O(h^2): halving h divides it by ~4.
    np.testing.assert_allclose(first[0.1] / first[0.05], 4.0, rtol=0.15)
    # The second-order term explains most of it ...
    assert np.all(np.abs(remainder[0.1]) < 0.5 * np.abs(predicted[0.1]))
    # ... and what is left is O(h^4): it shrinks by > 8 (16 asymptotically).
    assert np.all(np.abs(remainder[0.05]) < np.abs(remainder[0.1]) / 8)


# --------------------------------------------------------------------------- Monte-Carlo bias and variance


def _bias_variance_case(design, degree, n, h, R, seed, kernel="epanechnikov", sigma=0.2, x0=0.3, mname="exp"):
    m = SMOOTH[mname]
    X = design.quantile(n)
    row, exact_b, exact_v = _exact(X, x0, h, kernel, degree, sigma, m[0])
    fits = _mc_fits(row, X, m[0], sigma, R, np.random.default_rng(seed))
    mc_b, mc_v = fits.mean() - m[0](x0), fits.var(ddof=1)
    se_b = np.sqrt(mc_v / R)
    se_v = mc_v * np.sqrt(2 / (R - 1))
    ab, av, cb, cv = _asymptotics(x0, n, h, kernel, degree, sigma, m, design)
    return dict(
        mc_b=mc_b, mc_v=mc_v, se_b=se_b, se_v=se_v, exact_b=exact_b, exact_v=exact_v,
        ab=ab, av=av, cb=cb, cv=cv, h=h, m=m, x0=x0,
    )


def _check_bias_variance(r):
    h2 = r["h"] ** 2
    # Monte Carlo against the exact conditional quantities: pure MC error.
    assert abs(r["mc_b"] - r["exact_b"]) <= Z * r["se_b"]
    assert abs(r["mc_v"] - r["exact_v"]) <= Z * r["se_v"]
    # Monte Carlo against the first-order formulas: MC error + second-order term.
    assert abs(r["mc_b"] - r["ab"]) <= Z * r["se_b"] + 1.5 * abs(r["cb"]) * h2 * abs(r["ab"])
    assert abs(r["mc_v"] - r["av"]) <= Z * r["se_v"] + 1.5 * abs(r["cv"]) * h2 * r["av"]


# n h = 200 points in the window; R = 20000 gives 0.7 % (bias) and 1 % (variance)
# relative standard errors; the second-order terms are 0.5-2 % at h = 0.1.
FAST = dict(n=2000, h=0.1, R=20_000)
# h = 0.05 quarters the second-order terms; n = 16000 keeps n h = 800 and the
# variance small enough that R = 200000 resolves the (4x smaller) bias to 0.4 %.
SLOW = dict(n=16_000, h=0.05, R=200_000)


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("design", ["uniform", "beta22"])
def test_bias_and_variance_match_asymptotics(design, degree):
    r = _bias_variance_case(DESIGNS[design], degree, seed=11 + degree, **FAST)
    _check_bias_variance(r)


@pytest.mark.slow
@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("design", ["uniform", "beta22"])
def test_bias_and_variance_match_asymptotics_large(design, degree):
    r = _bias_variance_case(DESIGNS[design], degree, seed=21 + degree, **SLOW)
    _check_bias_variance(r)


@pytest.mark.parametrize("size", [pytest.param(FAST, id="fast"), pytest.param(SLOW, id="large", marks=pytest.mark.slow)])
def test_design_bias_shows_in_nw_not_in_ll(size):
    """Beta(2, 2) design at x0 = 0.3 (f'/f = 1.9), m = exp(2x): the NW design
    term m'f'/f is 1.9x the curvature term m''/2. The simulated NW bias matches
    the formula with the design term and rejects the one without; local linear
    is the other way round. On the uniform design both formulas coincide."""
    x0, h, kernel = 0.3, size["h"], "epanechnikov"
    m = SMOOTH["exp"]
    f, f1 = (g(x0) for g in BETA22.d[:2])
    with_design = float(asymptotic_bias(np.array([x0]), h, kernel, 0, m2=m[2], m1=m[1], f=f, f1=f1)[0])
    without = float(asymptotic_bias(np.array([x0]), h, kernel, 1, m2=m[2])[0])
    nw = _bias_variance_case(BETA22, 0, seed=31, **size)
    ll = _bias_variance_case(BETA22, 1, seed=32, **size)
    for r, right, wrong in ((nw, with_design, without), (ll, without, with_design)):
        tol = Z * r["se_b"] + 1.5 * abs(r["cb"]) * h**2 * abs(right)
        assert abs(r["mc_b"] - right) <= tol
        assert abs(r["mc_b"] - wrong) > 5 * tol
    nw_u = _bias_variance_case(UNIFORM, 0, seed=33, **size)
    assert abs(nw_u["mc_b"] - without) <= Z * nw_u["se_b"] + 1.5 * abs(nw_u["cb"]) * h**2 * abs(without)


# --------------------------------------------------------------------------- MSE rates


def _mse_curve(ns, design, x0, mfun, sigma, kernel, degree, bandwidths, R, seed):
    """Monte-Carlo MSE at x0 for each n (quantile design), and the exact conditional MSE."""
    rng = np.random.default_rng(seed)
    mc, exact, se = [], [], []
    for n, h in zip(ns, bandwidths):
        X = design.quantile(int(n))
        row, b, v = _exact(X, x0, h, kernel, degree, sigma, mfun)
        err = _mc_fits(row, X, mfun, sigma, R, rng) - mfun(x0)
        mc.append(np.mean(err**2))
        se.append(np.std(err**2, ddof=1) / np.sqrt(R))
        exact.append(b * b + v)
    return np.array(mc), np.array(exact), np.array(se)


def _ols_slope(ns, values):
    return stats.linregress(np.log(ns), np.log(values)).slope


RATE_FAST = dict(ns=250 * 2 ** np.arange(7), R=1000)  # n = 250 ... 16000
RATE_SLOW = dict(ns=500 * 2 ** np.arange(10), R=4000)  # n = 500 ... 256000


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("size", [pytest.param(RATE_FAST, id="fast"), pytest.param(RATE_SLOW, id="large", marks=pytest.mark.slow)])
def test_mse_rate_smooth_is_four_fifths(size, degree):
    """m = exp(2x) (C^infinity), Beta(2, 2) design, x0 = 0.3, h = h_AMISE(n) over
    [0.1, 0.9]: MSE(x0) = (bias^2 + var)(1 + delta(n)) with bias^2, var
    ~ n^(-4/5) and delta = O(h^2) from the second-order terms. Over the range
    of n, delta shifts the fitted slope by the OLS slope of log(1 + delta(n)),
    which we compute from the derived coefficients; we allow 1.5x that shift
    plus the slope's confidence half-width from the MC scatter."""
    ns, R = size["ns"], size["R"]
    m, design, kernel, x0, sigma = SMOOTH["exp"], BETA22, "epanechnikov", 0.3, 0.5
    theta = curvature_functional(m[2], design.d[0], 0.1, 0.9, degree=degree, m1=m[1], f1=design.d[1])
    hs = h_amise(ns, kernel, sigma**2, theta, support_length=0.8)
    mc, exact, se = _mse_curve(ns, design, x0, m[0], sigma, kernel, degree, hs, R, seed=41 + degree)
    assert np.all(np.abs(mc - exact) <= Z * se)  # simulation agrees with the exact conditional MSE

    delta = []
    for n, h in zip(ns, hs):
        ab, av, cb, cv = _asymptotics(x0, int(n), h, kernel, degree, sigma, m, design)
        amse = ab**2 + av
        delta.append((ab**2 * (1 + cb * h * h) ** 2 + av * (1 + cv * h * h)) / amse - 1)
    shift = _ols_slope(ns, 1 + np.array(delta))

    fit = mse_rate(ns, mc)
    half = fit.ci[1] - fit.slope
    assert abs(fit.slope - (-0.8)) <= half + 1.5 * abs(shift)
    # The test discriminates: the Lipschitz rate -2/3 is far outside.
    assert abs(fit.slope - (-2 / 3)) > 2 * (half + 1.5 * abs(shift))


def _kink_bandwidth(ns, kernel, sigma):
    """Pointwise-optimal h for m = |x - x0| under a uniform design with LL/NW:
    the equivalent kernel is K itself, so bias = h B1 with B1 = int |u| K and
    var = R sigma^2 / (n h); minimising h^2 B1^2 + R sigma^2/(n h) gives
    h = (R sigma^2 / (2 B1^2 n))^(1/3) ~ n^(-1/3) and MSE ~ n^(-2/3)."""
    k = get_kernel(kernel)
    B1 = 2 * integrate.quad(lambda u: u * float(k(np.asarray([u]))[0]), 0, k.support)[0]
    return (k.roughness * sigma**2 / (2 * B1**2 * np.asarray(ns, dtype=float))) ** (1 / 3)


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("size", [pytest.param(RATE_FAST, id="fast"), pytest.param(RATE_SLOW, id="large", marks=pytest.mark.slow)])
def test_mse_rate_kink_is_two_thirds(size, degree):
    """m(x) = |x - 1/2| + x, uniform design, x0 = 1/2 (the kink), h ~ n^(-1/3).
    Bias = h B1 and var = R sigma^2/(n h) hold exactly in the continuous limit
    (the linear part is reproduced by LL and cancels by symmetry for NW), so
    there is no higher-order shift: the slope must be -2/3 within its CI
    (discretisation error O((n h)^-2) < 1e-3 changes the slope by less)."""
    ns, R = size["ns"], size["R"]
    kernel, x0, sigma = "epanechnikov", 0.5, 0.5
    mfun = lambda x: np.abs(x - 0.5) + x  # noqa: E731
    hs = _kink_bandwidth(ns, kernel, sigma)
    mc, exact, se = _mse_curve(ns, UNIFORM, x0, mfun, sigma, kernel, degree, hs, R, seed=51 + degree)
    assert np.all(np.abs(mc - exact) <= Z * se)
    assert abs(_ols_slope(ns, exact) - (-2 / 3)) < 5e-3
    fit = mse_rate(ns, mc)
    half = fit.ci[1] - fit.slope
    assert abs(fit.slope - (-2 / 3)) <= half + 5e-3
    assert abs(fit.slope - (-0.8)) > 2 * (half + 5e-3)


# --------------------------------------------------------------------------- random designs


def _random_design_fits(n, R, h, kernel, degree, sigma, x0, mfun, sampler, rng):
    """Fits at x0 for R independent random designs, vectorised over designs.

    The library smooths one design at a time, so the rows are built here from
    the same kernel object and the same normal equations (NW: w / sum w; LL:
    w (s2 - s1 d) / (s0 s2 - s1^2), d = x - x0); the caller cross-checks a few
    rows against ``local_weights``."""
    X = sampler(rng, (R, n))
    d = X - x0
    w = get_kernel(kernel)(d / h)
    s0 = w.sum(axis=1, keepdims=True)
    if degree == 0:
        L = w / s0
    else:
        s1 = (w * d).sum(axis=1, keepdims=True)
        s2 = (w * d * d).sum(axis=1, keepdims=True)
        L = w * (s2 - s1 * d) / (s0 * s2 - s1**2)
    y = mfun(X) + sigma * rng.standard_normal((R, n))
    return X, L, (L * y).sum(axis=1)


@pytest.mark.parametrize("degree", [0, 1])
def test_random_design_nw_pays_an_extra_variance_term(degree):
    """Unconditionally on a random Beta(2, 2) design the NW fit's variance adds
    Var(conditional bias) ~ h^2 m'^2 Q / (n h f) (the local mean tracks the
    slope of m across the random positions of the window points); local linear
    removes the slope exactly, so its variance stays R sigma^2 / (n h f)
    (with sigma = 0.1 the NW term is about twice R sigma^2 / (n h f))
    (its extra term is O(h^4 / (n h))). The mean is the asymptotic bias in both.

    Tolerances: Z standard errors (the variance's from the sample fourth
    moment: the fits are a non-Gaussian mixture over designs) + 1.5 x the
    second-order term + the delta-method correction of the random denominator,
    E[sum K^2 / (sum K)^2] = R/(n h f) (1 + (3 R - 2 int K^3 / R)/(n h f)),
    bounded by 3 R / (n h f) (1.4 % here) and applied to the bias likewise."""
    n, R, h, kernel, sigma, x0 = 1000, 4000, 0.1, "epanechnikov", 0.1, 0.3
    m = SMOOTH["exp"]
    rng = np.random.default_rng(61 + degree)
    X, L, fits = _random_design_fits(n, R, h, kernel, degree, sigma, x0, m[0], lambda g, s: g.beta(2, 2, s), rng)
    for r in range(3):  # the vectorised rows are the library's rows
        np.testing.assert_allclose(L[r], local_weights(X[r], np.array([x0]), h, kernel, degree)[0], rtol=1e-10, atol=1e-14)

    ab, av, cb, cv = _asymptotics(x0, n, h, kernel, degree, sigma, m, BETA22)
    k = get_kernel(kernel)
    _, _, _, Q = _moments(kernel)
    f = BETA22.d[0](x0)
    ratio_term = 3 * k.roughness / (n * h * f)
    extra = h**2 * m[1](x0) ** 2 * Q / (n * h * f) if degree == 0 else 0.0

    err = fits - m[0](x0)
    mc_b, mc_v = err.mean(), err.var(ddof=1)
    se_b = np.sqrt(mc_v / R)
    se_v = np.sqrt((np.mean((err - mc_b) ** 4) - mc_v**2) / R)
    assert abs(mc_b - ab) <= Z * se_b + (1.5 * abs(cb) * h**2 + ratio_term) * abs(ab)
    predicted = av + extra
    assert abs(mc_v - predicted) <= Z * se_v + (1.5 * abs(cv) * h**2 + ratio_term) * predicted
    if degree == 0:  # the term is real: the conditional formula alone is rejected
        assert mc_v - av > 5 * (Z * se_v + (1.5 * abs(cv) * h**2 + ratio_term) * av)
