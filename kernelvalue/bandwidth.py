"""Bandwidth selection for the linear smoothers of :mod:`kernelvalue.smoothing`.

Two families:

**Criteria** minimised over a bandwidth grid (pure functions, also public):

- :func:`loo_score` -- closed-form leave-one-out CV. For any linear smoother
  that is a (locally) weighted least-squares fit -- Nadaraya-Watson and local
  linear, with or without sample weights -- deleting point ``i`` changes the
  fit at ``x_i`` so that ``y_i - m_{-i}(x_i) = (y_i - m(x_i)) / (1 - S_ii)``
  (the Sherman-Morrison deletion identity of the local fit at ``x_i``, whose
  leverage is ``S_ii``). One smoother pass gives all ``n`` refits.
- :func:`gcv_score` -- generalised CV (Craven & Wahba 1979):
  ``mean(((I - S) y)^2) / (1 - tr S / n)^2``. It replaces every ``S_ii`` by
  their average, so it differs from LOO whenever leverages vary.
- :func:`aicc_score` -- improved AIC of Hurvich, Simonoff & Tsai (1998):
  ``log(sigma2_hat) + 1 + 2 (tr S + 1) / (n - tr S - 2)`` with
  ``sigma2_hat = mean(((I - S) y)^2)``.
- :func:`kfold_score` -- K-fold CV by refitting on ``K - 1`` folds and
  predicting the held-out one (folds from a seeded permutation).

With ``sample_weight`` the squared residuals are averaged with those weights
(``sum w r^2 / sum w``); ``n`` in GCV and AICc stays the number of points.
A bandwidth at which any needed fit is undefined (no data in a compact
kernel's window, ``S_ii = 1`` so the leave-one-out fit does not exist, or
``tr S >= n - 2`` for AICc) scores ``+inf``: such a bandwidth is never chosen.

**Rules** (closed form, no search): :func:`silverman_bandwidth`,
:func:`scott_bandwidth` (normal-reference rules, per dimension) and
:func:`plugin_bandwidth`, the Ruppert, Sheather & Wand (1995) direct plug-in for
1-D local linear regression, the rule of R KernSmooth's ``dpill``.

Search (:func:`select_bandwidth`)
---------------------------------
The criterion is evaluated on a log-spaced grid of ``n_grid`` bandwidths and
then refined by :func:`scipy.optimize.minimize_scalar` (``method="bounded"``)
in ``log h`` between the two grid neighbours of the best grid point, so the
result is never ``<= 0``. Default grid (computed on the host with numpy/scipy,
``O(n log n)``):

- upper end: the largest feature range (the window then covers all data);
- lower end, compact kernels: 1.05 times the largest distance from a point to
  its ``k``-th nearest distinct neighbour divided by the kernel's support
  half-width, with ``k = 1`` (Nadaraya-Watson) or ``d + 1`` (local linear), so
  every leave-one-out fit has data in its window;
- lower end, unbounded kernels (Gaussian, exponential): the median distance
  to that ``k``-th neighbour; below the typical spacing the smoother
  interpolates, every criterion is large, and ``1 - S_ii`` is so small that
  the leave-one-out score is dominated by round-off.

Distances use the max-norm on features divided by their standard deviation.
For ``d > 1`` a single scale ``c`` is searched with ``h_j = c * sd_j`` (the
data's spread sets the relative bandwidths); the grid of ``c`` values is what
``grid`` means there. If the best grid point is the first or last grid point
(or the last one at which fits are defined) and the refinement does not move
inside, a ``UserWarning`` names the edge value and ``at_edge`` is True.

Backends: criteria are computed on ``X``'s Array-API namespace and device
(numpy, torch, array-api-strict) through
:func:`kernelvalue.smoothing.smoother_stats` (never forming ``S``); scores
are Python floats and the selected bandwidth is a Python ``float`` (1-D) or a
numpy array of shape ``(d,)``. ``binned=True`` (1-D only) bins the data once
(:func:`kernelvalue.binned.linear_binning`) and scores each bandwidth from
:func:`kernelvalue.binned.binned_criteria` in ``O(M log M)``; k-fold then
refits with ``binned_smooth``. The binned criteria are approximations with relative
error ``O((delta/h)^2)``, ``delta`` the bin width.

Examples
--------
>>> import numpy as np
>>> from kernelvalue.bandwidth import select_bandwidth
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(size=300)
>>> y = np.sin(2 * np.pi * x) + rng.normal(scale=0.3, size=300)
>>> res = select_bandwidth(x[:, None], y, "loo", kernel="gaussian")
>>> 0.01 < res.bandwidth < 0.1, res.at_edge
(True, False)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.spatial import cKDTree

from ._array import array_namespace, as_float, device, to_numpy
from .binned import BINNED_THRESHOLD, binned_criteria, binned_smooth, binned_smoother_stats, linear_binning
from .kernels import get_kernel
from ._array import _tracked
from .smoothing import (
    SmootherStats,
    _fastsum,
    _pairwise,
    _smoother_stats,
    check_bandwidth,
    check_degree,
    smooth,
    smoother_stats,
    use_fastsum,
)

__all__ = [
    "METHODS",
    "BandwidthResult",
    "select_bandwidth",
    "loo_score",
    "gcv_score",
    "aicc_score",
    "kfold_score",
    "silverman_bandwidth",
    "scott_bandwidth",
    "plugin_bandwidth",
]

CRITERIA = ("loo", "gcv", "aicc", "kfold")
RULES = ("silverman", "scott", "plugin")
METHODS = CRITERIA + RULES

# Refinement tolerance in log h: the bandwidth is located to about 0.1 %,
# far below its sampling variability (relative O(n^-1/10) for CV).
_XATOL = 1e-3


@dataclass
class BandwidthResult:
    """Outcome of :func:`select_bandwidth`.

    Attributes
    ----------
    bandwidth : float or ndarray of shape (d,)
        The selected bandwidth (a Python float for 1-D ``X``).
    method : str
        The method used.
    grid : ndarray or None
        Bandwidths at which the criterion was evaluated: shape ``(n_grid,)``
        for 1-D, ``(n_grid, d)`` for d-D; None for the rules.
    scores : ndarray or None
        Criterion at each grid bandwidth (``inf`` where undefined).
    at_edge : bool
        True if the optimum sits at the edge of the grid (a warning was issued).
    score : float or None
        Criterion at the selected bandwidth (None for the rules).
    outliers : ndarray of int or None
        Rows of X far outside the bulk (a warning names them), left out of the
        criterion and of the default grid; None when there are none (and for
        the rules).
    algorithm : str or None
        What computed the criteria: ``"binned"``, ``"fastsum"`` or ``"direct"``
        (None for the rules).
    """

    bandwidth: float | np.ndarray
    method: str
    grid: np.ndarray | None
    scores: np.ndarray | None
    at_edge: bool
    score: float | None = None
    outliers: np.ndarray | None = None
    algorithm: str | None = None


# --------------------------------------------------------------------------- validation


def _validate(X, y, sample_weight, min_samples=3):
    """``X`` as ``(n, d)`` float, ``y`` and weights as ``(n,)`` on X's namespace/device."""
    try:
        xp = array_namespace(X)
    except TypeError:  # lists, pandas: go through numpy
        X = np.asarray(X, dtype=float)
        xp = array_namespace(X)
    X = as_float(X, xp)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be 1-D (n,) or 2-D (n, d), got shape {tuple(X.shape)}; reshape it to (n, d).")
    n = X.shape[0]
    dtype, dev = X.dtype, device(X)
    y = xp.asarray(y if _is_array(y) else np.asarray(y, dtype=float), dtype=dtype, device=dev)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(
            f"y must have shape ({n},) to match X's {n} rows, got shape {tuple(y.shape)}; "
            "pass one response per row of X."
        )
    if n < min_samples:
        raise ValueError(
            f"bandwidth selection needs at least {min_samples} samples, got n={n}; pass more data or a fixed bandwidth."
        )
    if not bool(xp.all(xp.isfinite(X))):
        raise ValueError("X contains NaN or inf; remove or impute those rows before selecting a bandwidth.")
    if not bool(xp.all(xp.isfinite(y))):
        raise ValueError("y contains NaN or inf; remove or impute those rows before selecting a bandwidth.")
    sw = None
    if sample_weight is not None:
        sw = xp.asarray(
            sample_weight if _is_array(sample_weight) else np.asarray(sample_weight, dtype=float),
            dtype=dtype,
            device=dev,
        )
        sw = xp.reshape(sw, (-1,))
        if sw.shape[0] != n:
            raise ValueError(f"sample_weight must have shape ({n},), got {tuple(sw.shape)}; pass one weight per row of X.")
        if not bool(xp.all(xp.isfinite(sw))) or bool(xp.any(sw < 0)) or not float(xp.sum(sw)) > 0:
            raise ValueError(
                "sample_weight must be finite, non-negative and not all zero; fix or drop the offending weights."
            )
    return xp, X, y, sw


def _is_array(a):
    try:
        array_namespace(a)
        return True
    except TypeError:
        return False


def _wmean(v, sw, xp):
    if sw is None:
        return float(xp.mean(v))
    return float(xp.sum(sw * v) / xp.sum(sw))


# --------------------------------------------------------------------------- criteria


@dataclass(frozen=True)
class _Fit:
    """What the criteria need from one smoother fit at one bandwidth."""

    mse: float  # (weighted) mean squared in-sample residual
    loo: float  # closed-form leave-one-out score, inf where undefined
    trace: float  # tr S
    n: int
    n_undefined: int


def _fit_from_stats(st, y, sw, xp, rows=None):
    """:class:`_Fit` from smoother statistics, over the rows ``rows`` (all by default)."""
    fitted, diag, trace = st.fitted, st.diag, st.trace
    if rows is not None:
        keep = xp.asarray(np.flatnonzero(rows), device=device(y))
        fitted, diag, y = xp.take(fitted, keep), xp.take(diag, keep), xp.take(y, keep)
        sw = None if sw is None else xp.take(sw, keep)
        n_undefined = int(xp.sum(xp.astype(xp.isnan(fitted), xp.int64)))
        trace = float(xp.sum(xp.where(xp.isnan(diag), xp.zeros_like(diag), diag)))
    else:
        n_undefined = st.n_undefined
    n = y.shape[0]
    if n_undefined:
        return _Fit(math.inf, math.inf, trace, n, n_undefined)
    r = y - fitted
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = r / (1.0 - diag)
    # S_ii = 1 (no other data in the window): the leave-one-out fit does not exist.
    loo = _wmean(resid * resid, sw, xp) if bool(xp.all(xp.isfinite(resid))) else math.inf
    return _Fit(_wmean(r * r, sw, xp), loo, float(trace), n, 0)


class _Evaluator:
    """Criterion ingredients for one data set at any bandwidth: exact (fast
    sums or pairwise) or binned.

    Exact pairwise: :func:`kernelvalue.smoothing.smoother_stats` (``O(n^2)``
    per bandwidth at worst, chunked). Exact fast sums (1-D, polynomial or
    exponential kernels; :mod:`kernelvalue.fastsum`): the data are sorted
    once, then each bandwidth costs ``O(n)``. Binned: the data are binned
    once; each bandwidth then costs ``O(M log M)`` through
    :func:`kernelvalue.binned.binned_criteria`.
    """

    def __init__(self, X, y, kernel, degree, sw, xp, binned, grid_size, algorithm="auto", rows=None):
        self.X, self.y, self.kernel, self.degree, self.sw, self.xp = X, y, kernel, degree, sw, xp
        self.algorithm = algorithm
        self.rows = rows  # numpy bool mask of the rows the criteria average over (None: all)
        self.binned = bool(binned)
        self._fast = self._pair = None
        if self.binned:
            if X.shape[1] != 1:
                raise ValueError(f"binned=True supports 1-D X only, got {X.shape[1]} features; use binned=False.")
            if rows is not None:
                # Isolated outliers carry no weight at the inliers' bandwidths;
                # binning them would only stretch the grid.
                keep = xp.asarray(np.flatnonzero(rows), device=device(X))
                X, y = xp.take(X, keep, axis=0), xp.take(y, keep)
                sw = None if sw is None else xp.take(sw, keep)
            self._data = linear_binning(X[:, 0], y, sample_weight=sw, grid_size=grid_size)
        elif use_fastsum(algorithm, X, kernel, y, sw):
            self._fast = _fastsum(X, y, get_kernel(kernel), sw)
        elif X.shape[1] == 1 and not any(_tracked(a) for a in (X, y, sw) if a is not None):
            # Pairwise sums on data sorted once, with the pairwise differences kept.
            self._pair = _pairwise(X, y, get_kernel(kernel), sw, xp)
            self._pair_rows = None
            if rows is not None:
                self._pair_rows = np.empty_like(rows)
                self._pair_rows[to_numpy(self._pair.inverse)] = rows

    @property
    def method(self):
        """``"binned"``, ``"fastsum"`` or ``"direct"``."""
        return "binned" if self.binned else ("fastsum" if self._fast is not None else "direct")

    def stats(self, h):
        """:class:`~kernelvalue.smoothing.SmootherStats` at bandwidth ``h``."""
        if not self.binned:
            return smoother_stats(self.X, self.y, h, kernel=self.kernel, degree=self.degree, sample_weight=self.sw,
                                  algorithm=self.algorithm)
        with warnings.catch_warnings():
            # A too-coarse-grid warning per grid bandwidth would drown the user;
            # the criterion is still scored (and the exact path is one flag away).
            warnings.simplefilter("ignore", RuntimeWarning)
            return binned_smoother_stats(self._data, None, float(h), kernel=self.kernel, degree=self.degree)

    def fit(self, h):
        """:class:`_Fit` at bandwidth ``h``."""
        if self._fast is not None:
            mse, loo, trace, n, n_bad = self._fast.criteria(float(np.asarray(h).reshape(-1)[0]), self.degree,
                                                            self.rows)
            return _Fit(mse, loo, trace, n, n_bad)
        if self._pair is not None:
            fitted, diag, trace, _, n_bad = self._pair.stats(float(np.asarray(h).reshape(-1)[0]), self.degree, False)
            st = SmootherStats(fitted, diag, trace, math.nan, n_bad)
            return _fit_from_stats(st, self._pair.y, self._pair.sw, self.xp, self._pair_rows)
        if not self.binned:
            st = _smoother_stats(self.X, self.y, h, self.kernel, self.degree, self.sw, None, self.algorithm, False)
            return _fit_from_stats(st, self.y, self.sw, self.xp, self.rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            c = binned_criteria(self._data, float(h), kernel=self.kernel, degree=self.degree)
        loo = float(c.loo) if math.isfinite(c.loo) else math.inf
        return _Fit(float(c.rss), loo, float(c.trace), int(c.n), int(c.n_undefined))


def _loo(f):
    if f.n_undefined or not math.isfinite(f.loo):
        return math.inf
    return f.loo


def _gcv(f):
    denom = 1.0 - f.trace / f.n
    if f.n_undefined or not denom > 0:
        return math.inf
    score = f.mse / denom**2
    return score if math.isfinite(score) else math.inf


def _aicc(f):
    denom = f.n - f.trace - 2.0
    if f.n_undefined or not denom > 0:
        return math.inf
    # An exact fit (mse = 0) is legitimate; clamp so log stays finite and
    # the optimiser sees numbers, not -inf.
    score = math.log(max(f.mse, np.finfo(float).tiny)) + 1.0 + 2.0 * (f.trace + 1.0) / denom
    return score if math.isfinite(score) else math.inf


_FROM_FIT = {"loo": _loo, "gcv": _gcv, "aicc": _aicc}


def _folds(n, n_folds, random_state, rows=None):
    """Held-out index sets: a seeded permutation of the scored rows, split."""
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be an integer in [2, n={n}], got {n_folds!r}.")
    perm = np.random.default_rng(random_state).permutation(n)
    if rows is not None:
        perm = perm[rows[perm]]  # outliers stay in every training set, never held out
    return np.array_split(perm, int(n_folds))


def _kfold(X, y, h, kernel, degree, sw, xp, folds, binned, grid_size, algorithm="auto"):
    dev = device(X)
    n = X.shape[0]
    sq_err, weights = [], []
    for test in folds:
        mask = np.ones(n, dtype=bool)
        mask[test] = False
        tr = xp.asarray(np.flatnonzero(mask), device=dev)
        te = xp.asarray(test, device=dev)
        Xtr, ytr, Xte = xp.take(X, tr, axis=0), xp.take(y, tr, axis=0), xp.take(X, te, axis=0)
        swtr = None if sw is None else xp.take(sw, tr, axis=0)
        with warnings.catch_warnings():
            # Undefined held-out predictions are scored +inf below, not warned.
            warnings.simplefilter("ignore", RuntimeWarning)
            if binned:
                pred = binned_smooth(Xtr[:, 0], ytr, Xte[:, 0], float(h), kernel=kernel, degree=degree,
                                     sample_weight=swtr, grid_size=grid_size)
            else:
                pred = smooth(Xtr, ytr, Xte, h, kernel=kernel, degree=degree, sample_weight=swtr, algorithm=algorithm)
        if not bool(xp.all(xp.isfinite(pred))):
            return math.inf
        e = xp.take(y, te, axis=0) - pred
        sq_err.append(e * e)
        weights.append(None if sw is None else xp.take(sw, te, axis=0))
    err = xp.concat(sq_err)
    return _wmean(err, None if sw is None else xp.concat(weights), xp)


def _criterion_doc(summary, examples):
    return f"""{summary}

    Parameters
    ----------
    X : array of shape (n, d) or (n,)
        Inputs (any Array-API namespace; the computation follows it).
    y : array of shape (n,)
    bandwidth : float or array of shape (d,)
        Positive bandwidth(s).
    kernel : str or Kernel
    degree : {{0, 1}}
        0 for Nadaraya-Watson, 1 for local linear.
    sample_weight : array of shape (n,), optional
        Observation weights; residuals are averaged with them.
    binned : bool
        Use the binned 1-D approximation (:mod:`kernelvalue.binned`).
    grid_size : int, optional
        Binning grid size (``binned=True`` only).
    algorithm : {{"auto", "fastsum", "direct"}}
        Exact fast sums or pairwise sums (:func:`kernelvalue.smoothing.smooth`).

    Returns
    -------
    float
        The criterion (smaller is better); ``inf`` where a needed fit is undefined.

    Examples
    --------
{examples}
    """


def loo_score(X, y, bandwidth, kernel="epanechnikov", degree=0, sample_weight=None, binned=False, grid_size=None,
              algorithm="auto"):
    xp, X, y, sw = _validate(X, y, sample_weight)
    check_degree(degree)
    return _loo(_Evaluator(X, y, kernel, degree, sw, xp, binned, grid_size, algorithm).fit(bandwidth))


def gcv_score(X, y, bandwidth, kernel="epanechnikov", degree=0, sample_weight=None, binned=False, grid_size=None,
              algorithm="auto"):
    xp, X, y, sw = _validate(X, y, sample_weight)
    check_degree(degree)
    return _gcv(_Evaluator(X, y, kernel, degree, sw, xp, binned, grid_size, algorithm).fit(bandwidth))


def aicc_score(X, y, bandwidth, kernel="epanechnikov", degree=0, sample_weight=None, binned=False, grid_size=None,
              algorithm="auto"):
    xp, X, y, sw = _validate(X, y, sample_weight)
    check_degree(degree)
    return _aicc(_Evaluator(X, y, kernel, degree, sw, xp, binned, grid_size, algorithm).fit(bandwidth))


loo_score.__doc__ = _criterion_doc(
    """Closed-form leave-one-out CV: weighted mean of ``((y_i - m(x_i)) / (1 - S_ii))^2``.""",
    """    >>> import numpy as np
    >>> x = np.linspace(0, 1, 50); y = np.sin(6 * x)
    >>> loo_score(x, y, 0.1, degree=1) < loo_score(x, y, 0.5, degree=1)
    True""",
)
gcv_score.__doc__ = _criterion_doc(
    """Generalised CV: ``mean(((I - S) y)^2) / (1 - tr S / n)^2``.""",
    """    >>> import numpy as np
    >>> x = np.linspace(0, 1, 50); y = np.sin(6 * x)
    >>> round(gcv_score(x, y, 0.1), 6) != round(loo_score(x, y, 0.1), 6)
    True""",
)
aicc_score.__doc__ = _criterion_doc(
    """AICc of Hurvich, Simonoff & Tsai (1998):
    ``log(sigma2_hat) + 1 + 2 (tr S + 1) / (n - tr S - 2)``.""",
    """    >>> import numpy as np
    >>> x = np.linspace(0, 1, 50); y = np.sin(6 * x)
    >>> aicc_score(x, y, 0.1) < aicc_score(x, y, 1.0)
    True""",
)


def kfold_score(
    X, y, bandwidth, kernel="epanechnikov", degree=0, sample_weight=None, n_folds=5, random_state=None,
    binned=False, grid_size=None, algorithm="auto",
):
    """K-fold CV: refit on ``n_folds - 1`` folds, predict the held-out fold.

    Folds are the pieces of ``numpy.random.default_rng(random_state).permutation(n)``
    split by :func:`numpy.array_split`; the score is the (weighted) mean
    squared held-out error over all points. ``inf`` if any held-out
    prediction is undefined.

    Parameters
    ----------
    X, y, bandwidth, kernel, degree, sample_weight, binned, grid_size, algorithm
        As in :func:`loo_score`.
    n_folds : int
        Number of folds, ``2 <= n_folds <= n``.
    random_state : int or None
        Seed of the fold permutation.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(0, 1, 60); y = np.cos(4 * x)
    >>> kfold_score(x, y, 0.2, n_folds=5, random_state=0) < kfold_score(x, y, 2.0, n_folds=5, random_state=0)
    True
    """
    xp, X, y, sw = _validate(X, y, sample_weight)
    check_degree(degree)
    if binned and X.shape[1] != 1:
        raise ValueError("binned=True supports 1-D X only; use binned=False.")
    h = check_bandwidth(bandwidth, X.shape[1], xp, X.dtype, device(X))
    h = float(h[0]) if X.shape[1] == 1 else h
    return _kfold(X, y, h, kernel, degree, sw, xp, _folds(X.shape[0], n_folds, random_state), binned, grid_size,
                  algorithm)


# --------------------------------------------------------------------------- rules

# Marron & Nolan (1988) canonical bandwidths: a bandwidth derived for the
# Gaussian kernel becomes the equivalent one for K when multiplied by
# delta_K / delta_Gauss (same asymptotic bias-variance balance).
def _gauss_to(kernel):
    return get_kernel(kernel).canonical_bandwidth() / get_kernel("gaussian").canonical_bandwidth()


def _host(X, sample_weight):
    Xn = np.asarray(to_numpy(X), dtype=float)
    if Xn.ndim == 1:
        Xn = Xn[:, None]
    w = None if sample_weight is None else np.asarray(to_numpy(sample_weight), dtype=float).reshape(-1)
    return Xn, w


def _spread(Xn, w):
    """Per-feature standard deviation, IQR and the (Kish effective) sample size."""
    if w is None:
        sd = Xn.std(axis=0, ddof=1)
        q75, q25 = np.quantile(Xn, [0.75, 0.25], axis=0)
        return sd, q75 - q25, float(Xn.shape[0])
    p = w / w.sum()
    n_eff = 1.0 / np.sum(p * p)
    mean = p @ Xn
    # Unbiased for reliability weights: divide by 1 - sum p^2.
    sd = np.sqrt((p @ (Xn - mean) ** 2) / (1.0 - np.sum(p * p)))
    iqr = np.array([_wquantile(Xn[:, j], p, 0.75) - _wquantile(Xn[:, j], p, 0.25) for j in range(Xn.shape[1])])
    return sd, iqr, float(n_eff)


def _wquantile(v, p, q):
    order = np.argsort(v)
    cum = np.cumsum(p[order]) - 0.5 * p[order]  # mid-point plotting positions
    return float(np.interp(q, cum, v[order]))


def _rule_checks(X, sample_weight):
    xp, Xv, _, sw = _validate(X, np.zeros(_nrows(X)), sample_weight, min_samples=2)
    return _host(Xv, sw)


def _nrows(X):
    shape = getattr(X, "shape", None)
    return shape[0] if shape is not None else len(X)


def _result_bandwidth(h):
    h = np.asarray(h, dtype=float).reshape(-1)
    if not np.all(np.isfinite(h)) or not np.all(h > 0):
        raise ValueError(
            f"the rule gave a non-positive or non-finite bandwidth {h!r}: a feature has (almost) no spread; "
            "drop constant features or pass a bandwidth."
        )
    return float(h[0]) if h.size == 1 else h


def scott_bandwidth(X, kernel="gaussian", sample_weight=None):
    """Scott's normal-reference rule, per dimension.

    ``h_j = (4 / (d + 2))^(1/(d+4)) * sd_j * n^(-1/(d+4))`` -- the
    AMISE-optimal Gaussian-kernel bandwidth when the data are normal
    (``1.0592 sd n^(-1/5)`` in 1-D) -- times ``delta_K / delta_Gauss``
    (canonical bandwidths) for another kernel. A density rule used as a
    quick default: it ignores ``y``.

    Parameters
    ----------
    X : array of shape (n, d) or (n,)
    kernel : str or Kernel
    sample_weight : array of shape (n,), optional
        Weighted sd and Kish effective sample size ``(sum w)^2 / sum w^2``.

    Returns
    -------
    float (1-D) or ndarray of shape (d,)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=1000)
    >>> round(float(scott_bandwidth(x) / (1.0592 * x.std(ddof=1) * 1000 ** -0.2)), 3)
    1.0
    """
    Xn, w = _rule_checks(X, sample_weight)
    d = Xn.shape[1]
    sd, _, n = _spread(Xn, w)
    return _result_bandwidth((4.0 / (d + 2)) ** (1.0 / (d + 4)) * sd * n ** (-1.0 / (d + 4)) * _gauss_to(kernel))


def silverman_bandwidth(X, kernel="gaussian", sample_weight=None):
    """Silverman's rule of thumb, per dimension.

    ``h_j = 0.9 * A_j * n^(-1/(d+4))`` with the robust scale
    ``A_j = min(sd_j, IQR_j / 1.349)`` (IQR ignored when zero); in 1-D this
    is Silverman (1986, eq. 3.31), for ``d > 1`` the same constant with the
    d-dimensional rate. Rescaled to ``kernel`` by canonical bandwidths.

    Parameters
    ----------
    X, kernel, sample_weight
        As in :func:`scott_bandwidth`.

    Returns
    -------
    float (1-D) or ndarray of shape (d,)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=1000)
    >>> 0.2 < silverman_bandwidth(x) < 0.3
    True
    """
    Xn, w = _rule_checks(X, sample_weight)
    d = Xn.shape[1]
    sd, iqr, n = _spread(Xn, w)
    robust = np.where(iqr > 0, np.minimum(sd, iqr / 1.349), sd)
    return _result_bandwidth(0.9 * robust * n ** (-1.0 / (d + 4)) * _gauss_to(kernel))


# RSW / dpill constants (Gaussian kernel throughout the pilot stages):
# - theta_22 pilot, local cubic m'' with bandwidth
#   g = [C * sigma2 (b - a) / (|theta_24| n)]^(1/7), C = 3/(8 sqrt(pi)) if
#   theta_24 < 0 else 15/(16 sqrt(pi))  (RSW 1995, Sec. 4);
# - sigma^2 pilot, local linear with bandwidth
#   lambda = C3 [sigma2^2 (b - a) / (theta_22 n)^2]^(1/9),
#   C3 = [4 (1/2 + 2 sqrt 2 - 4/3 sqrt 3) / sqrt(2 pi)]^(1/9);
# - final h = [R(K) sigma2 (b - a) / (mu2(K)^2 theta_22 n)]^(1/5) with the
#   Gaussian R(K) = 1/(2 sqrt(pi)), mu2 = 1.
_C_TH24_NEG = 3.0 / (8.0 * math.sqrt(math.pi))
_C_TH24_POS = 15.0 / (16.0 * math.sqrt(math.pi))
_C3K = (4.0 * (0.5 + 2.0 * math.sqrt(2.0) - 4.0 / 3.0 * math.sqrt(3.0)) / math.sqrt(2.0 * math.pi)) ** (1.0 / 9.0)


def _block_quartic_fit(x, y):
    """RSS, sum of m''^2 and sum of m'' m'''' of a least-squares quartic on one block.

    The block is mapped to ``t in [-1, 1]`` (the 5 x 5 normal equations of a
    quartic on [-1, 1] have condition ~1e4) and solved from power sums;
    residuals are evaluated directly, not expanded.
    """
    lo, hi = float(x.min()), float(x.max())
    c, s = 0.5 * (lo + hi), (0.5 * (hi - lo) if hi > lo else 1.0)
    t = (x - c) / s
    powers = [np.ones_like(t), t]
    for _ in range(7):
        powers.append(powers[-1] * t)
    m = np.array([float(np.sum(p)) for p in powers])  # sum t^k, k = 0..8
    rhs = np.array([float(np.sum(p * y)) for p in powers[:5]])
    gram = m[np.arange(5)[:, None] + np.arange(5)[None, :]]
    try:
        beta = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        beta = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    fit = beta[4]
    for k in (3, 2, 1, 0):
        fit = fit * t + beta[k]
    r = y - fit
    # Derivatives in x: d/dx = (1/s) d/dt.
    d2 = (2 * beta[2] + t * (6 * beta[3] + 12 * beta[4] * t)) / s**2
    d4 = 24 * beta[4] / s**4
    return float(np.sum(r * r)), float(np.sum(d2 * d2)), float(d4 * np.sum(d2))


def _blocked_quartic(x, y, n_blocks):
    """Quartic LS fits on ``n_blocks`` consecutive blocks of the sorted data:
    RSS, theta_22 = mean m''^2, theta_24 = mean m'' m''''."""
    n = x.shape[0]
    size = n // n_blocks
    rss = th22 = th24 = 0.0
    for j in range(n_blocks):  # at most `blockmax` blocks, not a loop over samples
        sl = slice(j * size, n if j == n_blocks - 1 else (j + 1) * size)
        r, t22, t24 = _block_quartic_fit(x[sl], y[sl])
        rss, th22, th24 = rss + r, th22 + t22, th24 + t24
    return rss, th22 / n, th24 / n


def _mallows_blocks(x, y, n_max):
    """Number of blocks by Mallows' C_p (KernSmooth ``cpblock``, q = 4)."""
    rss = np.array([_blocked_quartic(x, y, k)[0] for k in range(1, n_max + 1)])
    k = np.arange(1, n_max + 1)
    cp = (x.shape[0] - 5 * n_max) * rss / rss[-1] + 10 * k - x.shape[0]
    return int(np.argmin(cp)) + 1


def _grid_moments(counts, delta, h, powers, squared=False):
    """``sum_k counts_k K((g_k - g_j)/h) (g_k - g_j)^p`` at every grid point ``j``,
    the Gaussian cut at 4 bandwidths as in KernSmooth's ``locpol`` (direct
    discrete convolution: the grid has a few hundred points)."""
    L = int(math.floor(4.0 * h / delta))
    if L < 1:
        raise ValueError(
            f"the binned plug-in grid (spacing {delta:.4g}) is too coarse for the pilot bandwidth {h:.4g}; "
            "pass a larger gridsize or binned=False."
        )
    L = min(L, counts.shape[0] - 1)
    off = delta * np.arange(-L, L + 1)
    kern = np.exp(-0.5 * (off / h) ** 2)
    if squared:
        kern = kern * kern
    # np.convolve pairs counts_k with f[j - k]; the offset wanted is
    # g_k - g_j = -(j - k) delta.
    return [np.convolve(counts, kern * (-off) ** p, mode="same") for p in powers]


def _grid_solve(ss, tt, degree):
    """Local polynomial coefficients at each grid point from moment arrays."""
    pp = degree + 1
    gram = np.stack([np.stack([ss[i + j] for j in range(pp)], axis=-1) for i in range(pp)], axis=-2)
    rhs = np.stack(tt[:pp], axis=-1)
    with np.errstate(all="ignore"):
        try:
            return np.linalg.solve(gram, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:
            return np.stack([np.linalg.lstsq(g, r, rcond=None)[0] for g, r in zip(gram, rhs)])


def _binned_pilots(xs, ys, a, b, n, g, sigma2_q, proptrun, gridsize):
    """theta_22, lambda and sigma^2 of the RSW rule on the binned grid, as KernSmooth ``dpill``."""
    data = linear_binning(xs, ys, grid_size=gridsize, lo=a, hi=b)
    counts, ysums, delta = data._counts, data._ysums, data.delta
    # theta_22: Gaussian local cubic, m'' = 2 * (coefficient of (x - g)^2).
    ss = _grid_moments(counts, delta, g, range(7))
    tt = _grid_moments(ysums, delta, g, range(4))
    mdd = 2.0 * _grid_solve(ss, tt, 3)[:, 2]
    lo_i = int(math.floor(proptrun * gridsize))
    sl = slice(lo_i, gridsize - lo_i)
    th22 = float(np.sum(np.nan_to_num(mdd[sl]) ** 2 * counts[sl]) / n)
    if not th22 > 0:
        raise ValueError("the pilot estimate of int m''^2 f is zero; use a CV method.")
    lam = _C3K * (sigma2_q**2 * (b - a) / (th22 * n) ** 2) ** (1.0 / 9.0)
    # sigma^2: Gaussian local linear at lambda; S_ii and (S S^T)_ii on the grid.
    ss = _grid_moments(counts, delta, lam, range(3))
    uu = _grid_moments(counts, delta, lam, range(3), squared=True)
    tt = _grid_moments(ysums, delta, lam, range(2))
    det = ss[0] * ss[2] - ss[1] * ss[1]
    with np.errstate(all="ignore"):
        c0, c1 = ss[2] / det, -ss[1] / det  # first row of the inverse Gram matrix
        fit = c0 * tt[0] + c1 * tt[1]
        sst = c0 * c0 * uu[0] + 2 * c0 * c1 * uu[1] + c1 * c1 * uu[2]
    rss = float(np.sum(ys * ys) - 2 * np.sum(fit * ysums) + np.sum(fit * fit * counts))
    denom = n - 2 * float(np.sum(c0 * counts)) + float(np.sum(sst * counts))
    return th22, lam, rss / denom


def _exact_pilots(xs, ys, X, xp, a, b, n, g, sigma2_q, proptrun, gridsize):
    """theta_22 (exact local cubic m'' on the grid, averaged over the data by
    interpolation), lambda and sigma^2 (exact smoother statistics) of the RSW rule."""
    grid = np.linspace(a, b, gridsize)
    mdd = _local_cubic_second_derivative(xs, ys, grid, g)
    lo_i = int(math.floor(proptrun * gridsize))
    central = np.zeros(gridsize)
    central[lo_i : gridsize - lo_i] = 1.0
    th22 = float(np.sum(np.interp(xs, grid, np.nan_to_num(mdd) ** 2 * central)) / n)
    if not th22 > 0:
        raise ValueError("the pilot estimate of int m''^2 f is zero; use a CV method.")
    lam = _C3K * (sigma2_q**2 * (b - a) / (th22 * n) ** 2) ** (1.0 / 9.0)
    xk = xp.asarray(xs[:, None], dtype=X.dtype, device=device(X))
    yk = xp.asarray(ys, dtype=X.dtype, device=device(X))
    st = smoother_stats(xk, yk, lam, kernel="gaussian", degree=1)
    r = yk - st.fitted
    return th22, lam, float(xp.sum(r * r)) / (n - 2.0 * st.trace + st.trace_sst)


def _local_cubic_second_derivative(x, y, grid, g):
    """m''(grid) from Gaussian-weighted local cubic fits (exact, chunked, O(M n))."""
    out = np.empty_like(grid)
    step = max(1, (1 << 21) // max(1, x.shape[0]))  # ~16 MB per (chunk, n) array
    for start in range(0, grid.shape[0], step):
        u = (x[None, :] - grid[start : start + step, None]) / g  # (c, n)
        wu = np.exp(-0.5 * u * u)
        mom = np.empty((u.shape[0], 7))  # sum_j w_j u_j^p, p = 0..6
        rhs = np.empty((u.shape[0], 4))  # sum_j w_j u_j^p y_j, p = 0..3
        for p in range(7):  # powers, not samples: memory stays O(chunk * n)
            mom[:, p] = wu.sum(axis=1)
            if p < 4:
                rhs[:, p] = wu @ y
            wu *= u
        gram = mom[:, np.arange(4)[:, None] + np.arange(4)[None, :]]  # (c, 4, 4) Hankel
        with np.errstate(all="ignore"):
            try:
                beta = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                beta = np.stack([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(gram, rhs)])
        out[start : start + step] = 2.0 * beta[:, 2] / g**2  # coefficient of u^2 -> m''/2
    return out


def plugin_bandwidth(
    x, y, kernel="gaussian", *, blockmax=5, divisor=20, trim=0.01, proptrun=0.05, gridsize=401, binned=None,
    grid_size=None, return_details=False,
):
    """Ruppert-Sheather-Wand (1995) direct plug-in bandwidth for 1-D local linear regression.

    The rule of R KernSmooth ``dpill`` (same defaults):

    1. sort by ``x``; drop ``floor(trim * n)`` points at each end; ``[a, b]`` is
       the trimmed range;
    2. split the data into ``N`` consecutive blocks (``N <= blockmax``,
       ``N <= n / divisor``) chosen by Mallows' ``C_p``; blocked quartic fits
       give ``sigma2_Q = RSS / (n - 5N)`` and ``theta_24``;
    3. ``theta_22 = (1/n) sum_i m''(x_i)^2`` over points in the central
       ``1 - 2 proptrun`` of ``[a, b]``, with ``m''`` from a Gaussian local
       cubic fit at the pilot bandwidth ``g`` (constants in the source);
    4. ``sigma2 = RSS / (n - 2 tr S + tr S S^T)`` of a Gaussian local linear fit
       at pilot bandwidth ``lambda``;
    5. ``h = [R(K) sigma2 (b - a) / (mu2^2 theta_22 n)]^(1/5)`` for the Gaussian
       kernel, times ``delta_K / delta_Gauss`` for another kernel.

    Two versions of steps 3-4:

    - ``binned=True`` is ``dpill`` itself: the trimmed data are linearly
      binned on ``gridsize`` points over ``[a, b]``, the Gaussian pilot fits
      (cut at 4 bandwidths) and the diagonals of ``S`` and ``S S^T`` are
      computed on the grid, and every sum over the data becomes a sum over
      the bins. Cost ``O(n log n)`` for the sort plus ``O(gridsize^2)``; it
      reproduces R's ``dpill`` to round-off (tested against committed R output).
    - ``binned=False`` computes ``m''`` exactly at the ``gridsize`` grid
      points (``O(gridsize * n)``) and averages it over the data by linear
      interpolation, and step 4 from the exact smoother statistics
      (:func:`kernelvalue.smoothing.smoother_stats`, ``O(n^2)`` for the
      Gaussian). It differs from the binned rule by the binning error, well
      under 1 % in ``h`` at the default grid (tested).

    ``binned=None`` (default) bins when more than
    :data:`kernelvalue.binned.BINNED_THRESHOLD` points remain after trimming.

    Parameters
    ----------
    x : array of shape (n,) or (n, 1)
    y : array of shape (n,)
    kernel : str or Kernel
        Kernel the bandwidth is for (the pilots always use the Gaussian).
    blockmax, divisor, trim, proptrun, gridsize
        As in ``dpill``.
    binned : bool or None
        The binned rule (``dpill``) or the exact one; None picks by size.
    grid_size : int, optional
        Binning grid size of the binned rule (default ``gridsize``).
    return_details : bool
        Also return the pilot quantities (dict with ``n_blocks``,
        ``sigma2_quartic``, ``theta24``, ``g``, ``theta22``, ``lam``,
        ``sigma2``, ``a``, ``b``, ``n``, ``binned``).

    Returns
    -------
    float, or (float, dict) if ``return_details``

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(size=500)
    >>> y = np.sin(2 * np.pi * x) + rng.normal(scale=0.2, size=500)
    >>> 0.02 < plugin_bandwidth(x, y) < 0.08
    True
    """
    xp, X, yv, _ = _validate(x, y, None, min_samples=3)
    if X.shape[1] != 1:
        raise ValueError(f"the plug-in rule is for 1-D x, got {X.shape[1]} features; use a CV method.")
    xs, ys = np.asarray(to_numpy(X[:, 0]), dtype=float), np.asarray(to_numpy(yv), dtype=float)
    order = np.argsort(xs, kind="stable")
    cut = int(math.floor(trim * xs.shape[0]))
    keep = order[cut : xs.shape[0] - cut]
    xs, ys = xs[keep], ys[keep]
    n = xs.shape[0]
    if n < 10:
        raise ValueError(f"the plug-in rule needs at least 10 points after trimming, got {n}; use a CV method.")
    a, b = float(xs[0]), float(xs[-1])
    if not b > a:
        raise ValueError("x has no spread; a bandwidth cannot be estimated.")

    n_max = max(min(n // divisor, blockmax), 1)
    n_blocks = _mallows_blocks(xs, ys, n_max)
    rss, _, th24 = _blocked_quartic(xs, ys, n_blocks)
    sigma2_q = rss / (n - 5 * n_blocks)
    if not (th24 != 0 and sigma2_q > 0):
        raise ValueError("the blocked quartic pilot found no curvature or no noise; use a CV method.")
    g = sigma2_q * (b - a) / (abs(th24) * n)
    g = ((_C_TH24_NEG if th24 < 0 else _C_TH24_POS) * g) ** (1.0 / 7.0)

    if binned is None:
        binned = n > BINNED_THRESHOLD
    if binned:
        th22, lam, sigma2 = _binned_pilots(xs, ys, a, b, n, g, sigma2_q, proptrun,
                                           gridsize if grid_size is None else int(grid_size))
    else:
        th22, lam, sigma2 = _exact_pilots(xs, ys, X, xp, a, b, n, g, sigma2_q, proptrun, gridsize)
    if not (sigma2 > 0 and math.isfinite(sigma2)):
        raise ValueError("the plug-in variance estimate is not positive; use a CV method.")
    h = _result_bandwidth((sigma2 * (b - a) / (2.0 * math.sqrt(math.pi) * th22 * n)) ** 0.2 * _gauss_to(kernel))
    if return_details:
        details = dict(n_blocks=n_blocks, sigma2_quartic=sigma2_q, theta24=th24, g=g, theta22=th22, lam=lam,
                       sigma2=sigma2, a=a, b=b, n=n, binned=bool(binned))
        return h, details
    return h


# --------------------------------------------------------------------------- search


def _scales(Xn):
    """Per-feature scale the common factor c multiplies (1 for 1-D)."""
    if Xn.shape[1] == 1:
        if not np.ptp(Xn[:, 0]) > 0:
            raise ValueError("X has no spread (all values equal); a bandwidth cannot be selected.")
        return np.ones(1)
    sd = Xn.std(axis=0, ddof=1)
    if not np.all(sd > 0):
        bad = np.flatnonzero(~(sd > 0)).tolist()
        raise ValueError(f"features {bad} of X are constant; drop them before selecting a bandwidth.")
    return sd


def _kth_gap_1d(x, k):
    """Distance from each distinct value to its ``k``-th nearest other distinct
    value (``k <= 2``), and the range: ``O(n log n)`` by sorting."""
    if k not in (1, 2):
        raise ValueError(f"_kth_gap_1d serves k = 1 or 2, got {k!r}")
    v = np.unique(x)  # sorted distinct values
    m = v.shape[0]
    k = min(k, m - 1)
    pad = np.full(2, np.inf)
    left1 = np.concatenate([pad[:1], np.diff(v)])
    left2 = np.concatenate([pad, v[2:] - v[:-2]])
    right1 = np.concatenate([np.diff(v), pad[:1]])
    right2 = np.concatenate([v[2:] - v[:-2], pad])
    # The two nearest on each side are ordered (left1 <= left2, right1 <=
    # right2), so the k-th nearest of the four needs no sort.
    if k <= 1:
        near = np.minimum(left1, right1)
    else:
        near = np.minimum(np.maximum(left1, right1), np.minimum(left2, right2))
    return near, float(v[-1] - v[0])


def _default_grid(Xn, scale, kern, degree, n_grid):
    d = Xn.shape[1]
    # A local fit needs k other distinct points: 1 (NW) or d + 1 (local linear).
    k = 1 if degree == 0 else d + 1
    if d == 1:
        dist, upper = _kth_gap_1d(Xn[:, 0], k)
    else:
        Z = np.unique(Xn / scale, axis=0)
        upper = float(np.max(np.ptp(Z, axis=0)))
        k = min(k, Z.shape[0] - 1)
        dist = cKDTree(Z).query(Z, k=k + 1, p=np.inf)[0][:, k]
    if kern.compact:
        # Every window must hold them; the 5 % margin keeps them off the
        # support's edge, where e.g. the Epanechnikov weight is zero.
        lower = 1.05 * float(np.max(dist)) / kern.support
    else:
        lower = float(np.median(dist))
    upper = max(upper, 10.0 * lower)
    return np.geomspace(lower, upper, n_grid)


def _check_grid(grid):
    g = np.asarray(to_numpy(grid) if _is_array(grid) else grid, dtype=float).reshape(-1)
    if g.size < 2 or not np.all(np.isfinite(g)) or not np.all(g > 0):
        raise ValueError("grid must hold at least 2 finite, positive bandwidths (scale factors for d > 1).")
    return np.unique(g)


def _outlying_rows(Xn, k):
    """Rows isolated far outside the bulk of ``X``, or None.

    A row is outlying when, in some feature, it lies beyond Tukey's far-out
    fences ``[Q1 - 3 IQR, Q3 + 3 IQR]`` *and* its ``k``-th nearest neighbour
    is more than one IQR away (max-norm, features in IQR units). Heavy but
    continuous tails pass the second test: only points with no data near
    them are caught.
    """
    q1, q3 = np.quantile(Xn, [0.25, 0.75], axis=0)
    iqr = q3 - q1
    unit = np.where(iqr > 0, iqr, Xn.std(axis=0))
    if not np.all(unit > 0):
        return None  # constant features: reported by _scales
    far = np.flatnonzero(np.any((Xn < q1 - 3 * iqr) | (Xn > q3 + 3 * iqr), axis=1))
    if far.size == 0 or far.size > Xn.shape[0] // 2:
        return None
    Z = Xn / unit
    k = min(k, Xn.shape[0] - 1)
    gap = cKDTree(Z).query(Z[far], k=k + 1, p=np.inf)[0][:, k]
    rows = np.zeros(Xn.shape[0], dtype=bool)
    rows[far[gap > 1.0]] = True
    return rows if rows.any() else None


def _warn_outliers(rows, Xn, method):
    idx = np.flatnonzero(rows)
    example = ", ".join(f"X[{i}] = {np.array2string(Xn[i], precision=4)}" for i in idx[:3])
    warnings.warn(
        f"select_bandwidth(method={method!r}): {idx.size} row(s) of X lie far outside the bulk of the data "
        f"({example}{', ...' if idx.size > 3 else ''}: beyond Q1 - 3 IQR or Q3 + 3 IQR and more than one IQR "
        "from their neighbours). They are left out of the criterion and of the default bandwidth grid, "
        "which they would otherwise stretch to their distance from the data; they stay in every fit. The "
        "fit at such a row uses whatever data the selected bandwidth reaches (none, i.e. NaN, with a compact "
        "kernel). Drop them, or pass `grid` to search wider bandwidths.",
        UserWarning,
        stacklevel=3,
    )


def select_bandwidth(
    X, y, method, *, kernel="epanechnikov", degree=0, sample_weight=None, grid=None, n_grid=30, n_folds=5,
    random_state=None, binned=False, grid_size=None, algorithm="auto",
):
    """Select a bandwidth by a CV-type criterion or a rule.

    Parameters
    ----------
    X : array of shape (n, d) or (n,)
        Inputs on any Array-API namespace (numpy, torch, array-api-strict);
        criteria are computed on it. pandas and lists are converted to numpy.
    y : array of shape (n,)
    method : {"loo", "gcv", "aicc", "kfold", "silverman", "scott", "plugin"}
        Criterion to minimise, or closed-form rule ("plugin": 1-D only).
    kernel : str or Kernel
    degree : {0, 1}
        0 for Nadaraya-Watson, 1 for local linear.
    sample_weight : array of shape (n,), optional
        Not supported by "plugin".
    grid : array, optional
        Bandwidths to search (1-D) or scale factors ``c`` with ``h_j = c sd_j``
        (d-D); default: see the module notes.
    n_grid : int
        Size of the default grid (>= 3).
    n_folds : int
        Folds for "kfold" (``2 <= n_folds <= n``).
    random_state : int or None
        Seed of the k-fold permutation.
    binned : bool
        Criteria from :func:`kernelvalue.binned.binned_smoother_stats` (1-D only);
        for "plugin", the binned plug-in (KernSmooth ``dpill``).
    grid_size : int, optional
        Binning grid size.
    algorithm : {"auto", "fastsum", "direct"}
        How the exact (``binned=False``) criteria sum: exact fast sums or
        pairwise (:func:`kernelvalue.smoothing.smooth`).

    Returns
    -------
    BandwidthResult
        ``bandwidth`` is a Python float (1-D) or a numpy array ``(d,)``.

    Warns
    -----
    UserWarning
        If the optimum is at an edge of the grid (``at_edge=True``), and if
        rows of X lie far outside the bulk (see :attr:`BandwidthResult.outliers`).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> X = rng.uniform(size=(200, 1))
    >>> y = np.cos(3 * X[:, 0]) + rng.normal(scale=0.1, size=200)
    >>> res = select_bandwidth(X, y, "gcv", degree=1)
    >>> res.method, res.grid.shape, bool(res.bandwidth > 0)
    ('gcv', (30,), True)
    """
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"method={method!r} is unknown; choose one of {list(METHODS)}.")
    method = method.lower()
    check_degree(degree)
    kern = get_kernel(kernel)
    xp, X, y, sw = _validate(X, y, sample_weight)
    n, d = X.shape
    if binned and d != 1:
        raise ValueError(f"binned=True supports 1-D X only, got {d} features; use binned=False.")

    if method in RULES:
        if method == "plugin":
            if sw is not None:
                raise ValueError("method='plugin' does not support sample_weight; use 'loo' or 'gcv'.")
            if d != 1:
                raise ValueError(f"method='plugin' is for 1-D X, got {d} features; use a CV method.")
            if degree != 1:
                warnings.warn(
                    "the RSW plug-in targets local linear (degree=1); with degree=0 it ignores the "
                    "Nadaraya-Watson design-bias term.",
                    UserWarning,
                    stacklevel=2,
                )
            h = plugin_bandwidth(X, y, kernel=kern, binned=binned, grid_size=grid_size)
        else:
            rule = silverman_bandwidth if method == "silverman" else scott_bandwidth
            h = rule(X, kernel=kern, sample_weight=sw)
        return BandwidthResult(h, method, None, None, False)

    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or n_grid < 3:
        raise ValueError(f"n_grid must be an integer >= 3, got {n_grid!r}.")
    Xn = np.asarray(to_numpy(X), dtype=float)
    outliers = _outlying_rows(Xn, 1 if degree == 0 else d + 1)
    inliers = None
    if outliers is not None:
        _warn_outliers(outliers, Xn, method)
        inliers = ~outliers
    folds = _folds(n, n_folds, random_state, inliers) if method == "kfold" else None
    Xg = Xn if inliers is None else Xn[inliers]
    scale = _scales(Xg)
    cgrid = _default_grid(Xg, scale, kern, degree, int(n_grid)) if grid is None else _check_grid(grid)

    evaluator = None
    if method != "kfold":
        evaluator = _Evaluator(X, y, kern, degree, sw, xp, binned, grid_size, algorithm, inliers)
    cache = {}

    def score(c):
        if c not in cache:
            h = float(c) if d == 1 else c * scale
            if method == "kfold":
                cache[c] = _kfold(X, y, h, kern, degree, sw, xp, folds, binned, grid_size, algorithm)
            else:
                cache[c] = _FROM_FIT[method](evaluator.fit(h))
        return cache[c]

    scores = np.array([score(float(c)) for c in cgrid])
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        raise ValueError(
            f"method={method!r}: no bandwidth in [{cgrid[0]:.4g}, {cgrid[-1]:.4g}] gives defined fits; "
            "pass a grid of larger bandwidths or use kernel='gaussian'."
        )
    k = int(np.argmin(scores))
    lo_k, hi_k = finite[0], finite[-1]  # the effective grid: where fits are defined
    left = cgrid[k - 1] if k > lo_k else cgrid[k]
    right = cgrid[k + 1] if k < hi_k else cgrid[k]
    best_c, best_s = float(cgrid[k]), float(scores[k])

    def f_log(t):
        s = score(float(math.exp(t)))
        return s if math.isfinite(s) else 1e300  # bounded Brent needs finite values

    if right > left:
        res = minimize_scalar(f_log, bounds=(math.log(left), math.log(right)), method="bounded",
                              options={"xatol": _XATOL})
        if math.isfinite(res.fun) and res.fun < best_s:
            best_c, best_s = float(math.exp(res.x)), float(res.fun)

    at_edge = False
    if k in (lo_k, hi_k):
        edge = float(cgrid[k])
        # The refinement may find an interior minimum between the edge point and
        # its neighbour; only a minimum pinned to the edge is reported.
        if abs(math.log(best_c) - math.log(edge)) <= 3 * _XATOL or best_c == edge:
            at_edge = True
            best_c, best_s = edge, float(scores[k])
            side = "lower" if k == lo_k else "upper"
            where = f"h={edge:.6g}" if d == 1 else f"c={edge:.6g}, h={np.array2string(edge * scale, precision=4)}"
            warnings.warn(
                f"select_bandwidth(method={method!r}): the criterion is smallest at the {side} edge of the "
                f"bandwidth grid, {where}; the optimum may lie outside [{cgrid[lo_k]:.4g}, {cgrid[hi_k]:.4g}]"
                f"{'' if d == 1 else ' (scale factors c of h_j = c sd_j)'}. Pass a wider `grid`.",
                UserWarning,
                stacklevel=2,
            )

    if d == 1:
        bandwidth, grid_out = float(best_c), cgrid.copy()
    else:
        bandwidth, grid_out = best_c * scale, cgrid[:, None] * scale[None, :]
    if not np.all(np.asarray(bandwidth) > 0):  # exp/positive grids make this impossible; guard anyway
        raise RuntimeError("internal error: selected a non-positive bandwidth.")
    out = None if outliers is None else np.flatnonzero(outliers)
    algo = "binned" if binned else ("fastsum" if evaluator is not None and evaluator.method == "fastsum" else
                                    "fastsum" if use_fastsum(algorithm, X, kern, y, sw) else "direct")
    return BandwidthResult(bandwidth, method, grid_out, scores, at_edge, best_s, out, algo)
