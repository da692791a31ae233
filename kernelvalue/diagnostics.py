"""Bias and variance diagnostics for the kernel smoothers, exact and asymptotic.

Exact (finite sample, conditional on the design)
    :func:`pointwise_variance` is ``sigma^2 * sum_j l_j(x)^2``: the variance of the
    linear smoother ``l(x) @ y`` under homoscedastic, uncorrelated errors.

Asymptotic (1-D, interior points, ``h -> 0`` and ``n h -> inf``; Fan & Gijbels
1996, Thm 3.1; Wand & Jones 1995, Sec. 5.4)
    bias(x)  = h^2 mu2(K) m''(x) / 2                           (local linear, degree 1)
    bias(x)  = h^2 mu2(K) [m''(x) / 2 + m'(x) f'(x) / f(x)]    (Nadaraya-Watson, degree 0)
    var(x)   = R(K) sigma^2(x) / (n h f(x))                    (both)

    The NW term ``m' f'/f`` is the *design bias*: with a non-uniform design
    there are more points on one side of ``x`` and the local mean follows the
    slope of ``m`` towards them. Local linear removes it. Near a boundary of
    the design (within ``support * h``) the NW bias is ``O(h)`` and none of
    these formulas apply.

Global (AMISE; the weight of the integrated error is the design density on an
interior interval ``[a, b]``, the convention of Ruppert, Sheather & Wand 1995
and of KernSmooth ``dpill``)
    MISE(h) = E int_a^b (m_hat(x) - m(x))^2 f(x) dx
    AMISE(h) = h^4 mu2^2 theta22 / 4 + R(K) sigma^2 (b - a) / (n h)
    theta22 = int_a^b B(x)^2 f(x) dx,  B = m'' (LL)  or  m'' + 2 m' f'/f (NW)
    h_AMISE = [R(K) sigma^2 (b - a) / (mu2^2 theta22 n)]^(1/5)

    The variance term is ``int_a^b R(K) sigma^2 / (n h f) * f dx``: weighting by
    ``f`` cancels the ``1/f`` and leaves the length of the interval.

Rates
    :func:`mse_rate` fits ``log MSE = a + slope * log n`` by least squares and
    returns the slope with its standard error and confidence interval, to
    check ``n^(-4/5)`` (twice-differentiable ``m``) or ``n^(-2/3)`` (Lipschitz).

Examples
--------
>>> import numpy as np
>>> from kernelvalue.diagnostics import asymptotic_bias, asymptotic_variance, h_amise
>>> x = np.array([0.5])
>>> asymptotic_bias(x, 0.1, "epanechnikov", 1, m2=2.0)  # 0.5 * 0.01 * 0.2 * 2
array([0.002])
>>> asymptotic_variance(x, 1000, 0.1, "epanechnikov", sigma2=0.25, f=1.0)  # 0.6 * 0.25 / 100
array([0.0015])
>>> round(h_amise(1000, "epanechnikov", sigma2=0.25, theta22=4.0), 4)  # (0.15 / 160)^(1/5)
0.248
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from array_api_compat import is_numpy_array
from scipy import integrate, stats

from ._array import array_namespace, as_float, device, like, to_numpy
from .kernels import get_kernel
from .smoothing import check_bandwidth, check_degree, smooth

__all__ = [
    "RateFit",
    "amise",
    "asymptotic_bias",
    "asymptotic_variance",
    "curvature_functional",
    "h_amise",
    "mse_rate",
    "pointwise_variance",
]


# --------------------------------------------------------------------------- helpers


def _check_nonnegative_scalar(value, name, *, strict=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}.") from None
    ok = math.isfinite(v) and (v > 0 if strict else v >= 0)
    if not ok:
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}.")
    return v


def _check_n(n):
    if isinstance(n, bool) or not float(n).is_integer() or n < 1:
        raise ValueError(f"n must be a positive integer (the sample size), got {n!r}.")
    return int(n)


def _eval_points(x_eval):
    """``x_eval`` as a 1-D floating array on its own namespace (numpy for lists)."""
    if isinstance(x_eval, (int, float, list, tuple)):
        x_eval = np.asarray(x_eval, dtype=float)
    xp = array_namespace(x_eval)
    x = as_float(x_eval, xp)
    if x.ndim == 0:
        x = xp.reshape(x, (1,))
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(
            f"x_eval must have shape (m,) or (m, 1), got {tuple(x.shape)}: the asymptotic "
            "formulas here are for one covariate."
        )
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError("x_eval contains NaN or inf; pass finite evaluation points.")
    return xp, x


def _evaluate(value, x, xp, name):
    """``value`` (scalar, array or callable of ``x``) as an array shaped like ``x``."""
    if callable(value):
        value = value(x)
    if isinstance(value, (int, float, list, tuple)) or is_numpy_array(value):
        arr = like(np.asarray(value, dtype=np.float64), x)
    else:
        if array_namespace(value) is not xp:
            # e.g. a torch tensor for a numpy x: go through numpy to x's namespace.
            value = to_numpy(value)
            arr = like(np.asarray(value, dtype=np.float64), x)
        else:
            arr = xp.astype(value, x.dtype)
    try:
        arr = xp.broadcast_to(arr, x.shape)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{name} has shape {tuple(arr.shape)} but x_eval has {tuple(x.shape)} points; pass a scalar, "
            "one value per evaluation point, or a callable of x."
        ) from exc
    if not bool(xp.all(xp.isfinite(arr))):
        raise ValueError(f"{name} is not finite at some evaluation points.")
    return arr


def _scalar_bandwidth(bandwidth, x, xp):
    h = check_bandwidth(bandwidth, 1, xp, x.dtype, device(x))
    return float(h[0])


# --------------------------------------------------------------------------- exact


def pointwise_variance(
    X, x_eval, bandwidth, sigma2, kernel="epanechnikov", degree=0, sample_weight=None, chunk_size=None
):
    """Exact variance of the smoother at ``x_eval``: ``sigma2 * ||l(x)||^2``.

    Conditional on the design ``X``, a linear smoother's fit is ``l(x) @ y``;
    with uncorrelated errors of variance ``sigma2`` its variance is
    ``sigma2 * sum_j l_j(x)^2``. The squared row norms come from
    :func:`kernelvalue.smoothing.smooth` (``return_norm=True``), chunked over
    evaluation points, so the smoother matrix is never formed.

    Parameters
    ----------
    X : array of shape (n, d) or (n,)
        Training inputs (any Array-API namespace).
    x_eval : array of shape (m, d) or (m,)
        Evaluation points.
    bandwidth : float or array of shape (d,)
        Positive bandwidth(s).
    sigma2 : float
        Error variance (``>= 0``), e.g. ``KernelValueEstimator.sigma2_``.
    kernel : str or Kernel
    degree : {0, 1}
        0 for Nadaraya-Watson, 1 for local linear.
    sample_weight : array of shape (n,), optional
        Observation weights used by the smoother (the errors are still taken
        to have common variance ``sigma2``).
    chunk_size : int, optional
        Evaluation points per block.

    Returns
    -------
    array of shape (m,)
        On ``X``'s namespace and device. NaN (with a ``RuntimeWarning`` from the
        smoother) where the local fit is undefined.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.linspace(0, 1, 101)
    >>> v = pointwise_variance(X, np.array([0.5]), 0.105, sigma2=1.0, kernel="uniform")
    >>> round(float(v[0]) * 21, 12)  # NW averages the 21 points in the box: variance 1/21
    1.0
    """
    sigma2 = _check_nonnegative_scalar(sigma2, "sigma2")
    xp = array_namespace(X)
    X = as_float(X, xp)
    # The norms do not depend on y: smooth a zero response to reuse the chunked path.
    zeros = xp.zeros((X.shape[0],), dtype=X.dtype, device=device(X))
    _, norm2 = smooth(
        X,
        zeros,
        x_eval,
        bandwidth,
        kernel=kernel,
        degree=degree,
        sample_weight=sample_weight,
        return_norm=True,
        chunk_size=chunk_size,
    )
    return sigma2 * norm2


# --------------------------------------------------------------------------- pointwise asymptotics


def asymptotic_bias(x_eval, bandwidth, kernel, degree, m2, m1=None, f=None, f1=None):
    """Leading-order interior bias of the NW (degree 0) or local linear (degree 1) fit.

    ``degree=1``: ``h^2 mu2(K) m''(x) / 2``.
    ``degree=0``: ``h^2 mu2(K) [m''(x) / 2 + m'(x) f'(x) / f(x)]`` (adds the design bias).

    Parameters
    ----------
    x_eval : array of shape (m,) or (m, 1)
        Interior evaluation points (one covariate).
    bandwidth : float
        Positive bandwidth ``h``.
    kernel : str or Kernel
    degree : {0, 1}
    m2 : float, array of shape (m,) or callable
        ``m''`` at ``x_eval`` (a callable receives the 1-D ``x_eval`` array).
    m1, f, f1 : float, array or callable, optional
        ``m'``, the design density ``f`` (``> 0``) and ``f'``; required for
        ``degree=0``, ignored for ``degree=1``.

    Returns
    -------
    array of shape (m,)
        On ``x_eval``'s namespace, device and floating dtype.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.25, 0.5])
    >>> asymptotic_bias(x, 0.1, "epanechnikov", 1, m2=lambda t: 6 * t)
    array([0.0015, 0.003 ])
    >>> # NW on a design with density f(x) = 0.5 + x adds h^2 mu2 m' f'/f.
    >>> asymptotic_bias(x, 0.1, "epanechnikov", 0, m2=2.0, m1=1.0, f=lambda t: 0.5 + t, f1=1.0)
    array([0.00466667, 0.004     ])
    """
    xp, x = _eval_points(x_eval)
    h = _scalar_bandwidth(bandwidth, x, xp)
    kern = get_kernel(kernel)
    check_degree(degree)
    curvature = _evaluate(m2, x, xp, "m2") / 2
    if degree == 0:
        missing = [name for name, v in (("m1", m1), ("f", f), ("f1", f1)) if v is None]
        if missing:
            raise ValueError(
                f"degree=0 (Nadaraya-Watson) needs m1 (m'), f (design density) and f1 (f') for the design-bias "
                f"term m' f'/f; missing {missing}. Pass them, or use degree=1 (local linear has no such term)."
            )
        dens = _evaluate(f, x, xp, "f")
        if not bool(xp.all(dens > 0)):
            raise ValueError("f (the design density) must be > 0 at every evaluation point.")
        curvature = curvature + _evaluate(m1, x, xp, "m1") * _evaluate(f1, x, xp, "f1") / dens
    return (h * h * kern.mu2) * curvature


def asymptotic_variance(x_eval, n, bandwidth, kernel, sigma2, f):
    """Leading-order interior variance ``R(K) sigma^2(x) / (n h f(x))`` (NW and LL alike).

    This is the variance conditional on the design. Over random designs the
    NW fit also varies with the positions of the window points, adding
    ``Var(conditional bias) ~ h^2 m'(x)^2 int u^2 K^2 / (n h f(x))``; local
    linear cancels that slope term (``tests/test_theory.py`` checks both).

    Parameters
    ----------
    x_eval : array of shape (m,) or (m, 1)
        Interior evaluation points.
    n : int
        Sample size.
    bandwidth : float
        Positive bandwidth ``h``.
    kernel : str or Kernel
    sigma2 : float, array of shape (m,) or callable
        Error variance (a function of ``x`` for heteroscedastic errors).
    f : float, array of shape (m,) or callable
        Design density at ``x_eval`` (``> 0``).

    Returns
    -------
    array of shape (m,)
        On ``x_eval``'s namespace, device and floating dtype.

    Examples
    --------
    >>> import numpy as np
    >>> asymptotic_variance(np.array([0.2, 0.5]), 500, 0.2, "gaussian", sigma2=1.0, f=lambda t: 2 * t)
    array([0.00705237, 0.00282095])
    """
    xp, x = _eval_points(x_eval)
    n = _check_n(n)
    h = _scalar_bandwidth(bandwidth, x, xp)
    kern = get_kernel(kernel)
    s2 = _evaluate(sigma2, x, xp, "sigma2")
    if not bool(xp.all(s2 >= 0)):
        raise ValueError("sigma2 must be >= 0 at every evaluation point.")
    dens = _evaluate(f, x, xp, "f")
    if not bool(xp.all(dens > 0)):
        raise ValueError("f (the design density) must be > 0 at every evaluation point.")
    return kern.roughness * s2 / ((n * h) * dens)


# --------------------------------------------------------------------------- global (AMISE)


def curvature_functional(m2, f, lo, hi, *, degree=1, m1=None, f1=None):
    """``theta22 = int_lo^hi B(x)^2 f(x) dx``, the bias functional of the AMISE.

    ``B = m''`` for local linear (``degree=1``) and ``B = m'' + 2 m' f'/f`` for
    Nadaraya-Watson (``degree=0``), so that the squared asymptotic bias is
    ``(h^2 mu2 B / 2)^2`` in both cases. Integrated with
    :func:`scipy.integrate.quad`; the callables take and return numpy floats.

    Parameters
    ----------
    m2, f : callable
        ``m''`` and the design density.
    lo, hi : float
        The interior interval ``[a, b]`` the error is integrated over.
    degree : {0, 1}
    m1, f1 : callable, optional
        ``m'`` and ``f'``; required for ``degree=0``.

    Returns
    -------
    float

    Examples
    --------
    >>> round(curvature_functional(lambda x: 6 * x, lambda x: 1.0, 0.0, 1.0), 10)  # int 36 x^2
    12.0
    """
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"need finite lo < hi, got lo={lo!r}, hi={hi!r}.")
    check_degree(degree)
    if degree == 0 and (m1 is None or f1 is None):
        raise ValueError("degree=0 needs m1 (m') and f1 (f') for the design-bias term; pass both.")

    def integrand(t):
        b = float(m2(t))
        if degree == 0:
            b += 2.0 * float(m1(t)) * float(f1(t)) / float(f(t))
        return b * b * float(f(t))

    value, _ = integrate.quad(integrand, lo, hi, limit=200)
    return float(value)


def _amise_constants(n, kernel, sigma2, theta22, support_length):
    kern = get_kernel(kernel)
    sigma2 = _check_nonnegative_scalar(sigma2, "sigma2")
    theta22 = _check_nonnegative_scalar(theta22, "theta22")
    support_length = _check_nonnegative_scalar(support_length, "support_length", strict=True)
    n = np.asarray(n, dtype=float) if not np.isscalar(n) else float(_check_n(n))
    if isinstance(n, np.ndarray) and (np.any(n < 1) or np.any(n != np.floor(n))):
        raise ValueError("n must hold positive integers (sample sizes).")
    return kern, sigma2, theta22, support_length, n


def amise(h, n, kernel, sigma2, theta22, support_length=1.0):
    """``AMISE(h) = h^4 mu2^2 theta22 / 4 + R(K) sigma2 (b - a) / (n h)``.

    The asymptotic mean integrated squared error over ``[a, b]`` weighted by the
    design density (see the module docstring), for constant error variance.

    Parameters
    ----------
    h : float or array
        Bandwidth(s) ``> 0``.
    n : int
        Sample size.
    kernel : str or Kernel
    sigma2 : float
        Error variance.
    theta22 : float
        ``int_a^b B^2 f`` (see :func:`curvature_functional`).
    support_length : float
        ``b - a``.

    Returns
    -------
    float or array like ``h``

    Examples
    --------
    >>> round(amise(0.1, 1000, "epanechnikov", sigma2=0.25, theta22=4.0), 8)  # 4e-6 + 1.5e-3
    0.001504
    """
    kern, sigma2, theta22, length, n = _amise_constants(n, kernel, sigma2, theta22, support_length)
    scalar = isinstance(h, (int, float))
    hh = np.asarray(h, dtype=float) if scalar or isinstance(h, (list, tuple)) else h
    if not bool(np.all(to_numpy(hh) > 0)):
        raise ValueError(f"h must be > 0, got {h!r}.")
    value = hh**4 * (kern.mu2**2 * theta22 / 4) + (kern.roughness * sigma2 * length) / (n * hh)
    return float(value) if scalar else value


def h_amise(n, kernel, sigma2, theta22, support_length=1.0):
    """AMISE-optimal bandwidth ``[R(K) sigma2 (b - a) / (mu2^2 theta22 n)]^(1/5)``.

    At this ``h`` the variance term of :func:`amise` is four times the squared-bias term.

    Parameters
    ----------
    n : int or array of int
        Sample size(s).
    kernel, sigma2, theta22, support_length
        As in :func:`amise`; ``theta22`` must be ``> 0`` (a line has no optimal ``h``).

    Returns
    -------
    float, or numpy array for an array ``n``

    Examples
    --------
    >>> h = h_amise(1000, "epanechnikov", sigma2=0.25, theta22=4.0)
    >>> round(h_amise(32000, "epanechnikov", sigma2=0.25, theta22=4.0) / h, 6)  # 32^(-1/5)
    0.5
    """
    kern, sigma2, theta22, length, n = _amise_constants(n, kernel, sigma2, theta22, support_length)
    if theta22 <= 0 or sigma2 <= 0:
        raise ValueError(
            "h_amise needs sigma2 > 0 and theta22 > 0: with no curvature (or no noise) the AMISE "
            "decreases for ever in h (or in 1/h) and has no minimiser."
        )
    h = (kern.roughness * sigma2 * length / (kern.mu2**2 * theta22 * n)) ** 0.2
    return float(h) if np.ndim(h) == 0 else h


# --------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class RateFit:
    """Least-squares fit of ``log(mse) = intercept + slope * log(n)``.

    Attributes
    ----------
    slope, intercept : float
    stderr : float
        Standard error of the slope.
    intercept_stderr : float
    ci : tuple of float
        ``level`` confidence interval for the slope (Student t, ``k - 2`` df).
    level : float
    n_points : int
    """

    slope: float
    intercept: float
    stderr: float
    intercept_stderr: float
    ci: tuple
    level: float
    n_points: int

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the confidence interval of the slope."""
        return bool(self.ci[0] <= value <= self.ci[1])


def mse_rate(ns, mses, level=0.95):
    """Fit the log-log slope of an empirical MSE against the sample size.

    Ordinary least squares of ``log(mses)`` on ``log(ns)``
    (:func:`scipy.stats.linregress`), with a Student-t confidence interval for
    the slope. When each ``mses[k]`` is a Monte-Carlo mean its log has roughly
    constant variance across ``n``, which is what OLS assumes.

    Parameters
    ----------
    ns : array of shape (k,)
        Sample sizes (``> 0``, at least two distinct values).
    mses : array of shape (k,)
        Positive errors (any Array-API array, moved to numpy).
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    RateFit

    Examples
    --------
    >>> import numpy as np
    >>> ns = np.array([100, 200, 400, 800])
    >>> fit = mse_rate(ns, 3.0 * ns ** -0.8)
    >>> round(fit.slope, 10), round(fit.stderr, 10)
    (-0.8, 0.0)
    """
    n_arr = np.asarray(to_numpy(ns) if not isinstance(ns, (list, tuple)) else ns, dtype=float).reshape(-1)
    e_arr = np.asarray(to_numpy(mses) if not isinstance(mses, (list, tuple)) else mses, dtype=float).reshape(-1)
    if n_arr.shape != e_arr.shape:
        raise ValueError(f"ns and mses must have the same length, got {n_arr.size} and {e_arr.size}.")
    if n_arr.size < 3:
        raise ValueError(f"need at least 3 (n, mse) pairs to estimate a slope and its error, got {n_arr.size}.")
    if not (np.all(np.isfinite(n_arr)) and np.all(n_arr > 0)):
        raise ValueError("ns must be finite and > 0.")
    if not (np.all(np.isfinite(e_arr)) and np.all(e_arr > 0)):
        raise ValueError("mses must be finite and > 0 (the fit is on log scale).")
    if np.unique(n_arr).size < 2:
        raise ValueError("ns must hold at least two distinct sample sizes.")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}.")
    res = stats.linregress(np.log(n_arr), np.log(e_arr))
    k = n_arr.size
    q = stats.t.ppf(0.5 + level / 2, df=k - 2)
    slope, se = float(res.slope), float(res.stderr)
    return RateFit(
        slope=slope,
        intercept=float(res.intercept),
        stderr=se,
        intercept_stderr=float(res.intercept_stderr),
        ci=(float(slope - q * se), float(slope + q * se)),
        level=float(level),
        n_points=k,
    )
