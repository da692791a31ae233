"""Linear smoothers: Nadaraya-Watson (local constant) and local linear weights.

Pure functions on Array-API arrays. ``X`` is ``(n, d)``; evaluation points are
``(m, d)``; ``bandwidth`` is a positive scalar or one value per dimension
(product kernel). A fit at ``x0`` is ``l(x0) @ y`` where the smoother row
``l(x0)`` solves the kernel-weighted least-squares problem of degree 0 or 1
centred at ``x0``; rows sum to one.

Work is chunked over evaluation points so memory stays ``O(chunk * n * d)``:
the full smoother matrix is formed only by :func:`smoother_matrix`. The
chunked paths (:func:`smooth`, :func:`smoother_stats`) sort the data by the
first feature and give each block of evaluation points only the training
points within ``Kernel.tail_bound() * h_0`` of it: beyond that reach every
weight is exactly zero (compact support, or float64 underflow of the Gaussian
and exponential kernels), so the result is the same sum while the cost drops
from ``O(m n)`` to ``O(m * points in reach)``. (The numpy 1-D pairwise
Gaussian sums cut the kernel a little earlier, below ``1e-304 K(0)`` at
``|u| = 37.4``: past that numpy's ``exp`` leaves its vectorised path.)

Algorithms: in 1-D, kernels with a polynomial or exponential form (every
built-in kernel but the Gaussian) are summed exactly in ``O(n + m log n)``
by :mod:`kernelvalue.fastsum` (``algorithm="fastsum"``); the pairwise path
above is ``algorithm="direct"``. ``algorithm="auto"`` (the default) takes the
fast sums from :data:`FASTSUM_MIN_N` training points on, where they start to
pay, unless autograd tracks an input (the fast sums run in float64 numpy on
the host, then move the result back to the input's namespace, device and
dtype). Both agree to about ``1e-10`` relative (tested).

No-data policy: where an evaluation point has no training data inside the
kernel support (NW's 0/0), or too few distinct points for a local line, the
smoother row, the prediction and its norm are NaN and a ``RuntimeWarning``
names the bandwidth and the fix. Nothing is silently filled in. In d-D local
linear fits, directions in which the window's points do not spread (collinear
or redundant features) carry no slope: the fit is local linear along the
directions the points span and local constant across the others (the
minimum-norm least-squares solution); it is undefined only when the window
has no spread at all.

Examples
--------
>>> import numpy as np
>>> from kernelvalue.smoothing import smooth
>>> X = np.linspace(0, 1, 50)[:, None]
>>> y = 2 * X[:, 0] + 1
>>> round(float(smooth(X, y, np.array([[0.5]]), 0.2, degree=1)[0]), 12)  # LL reproduces lines
2.0
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from ._array import _tracked, array_namespace, as_float, device, iadd, idiv, imul, is_numpy_array, like, to_numpy
from .fastsum import FastSmoother, supports
from .kernels import KERNELS, get_kernel

__all__ = [
    "ALGORITHMS",
    "FASTSUM_MIN_N",
    "SmootherStats",
    "check_bandwidth",
    "check_degree",
    "local_weights",
    "smooth",
    "smoother_matrix",
    "smoother_stats",
    "use_fastsum",
]

# Elements of the (chunk, n, d) block of weights built at once. On CPU, blocks
# of 512 KB (float64) beat 2 MB ones by up to 2x and 32 MB ones by ~4x (n =
# 2000, glibc): larger temporaries come back from the allocator as fresh pages
# (page faults at every allocation) and fall out of cache; smaller blocks pay
# more per-call overhead. Accelerators want large blocks to amortise kernel
# launches.
_BLOCK_ELEMENTS_CPU = 1 << 16
_BLOCK_ELEMENTS_ACCELERATOR = 1 << 22

# Pairwise differences and their squares kept per data set by the 1-D
# pairwise sums (elements: 32 MB in float64), i.e. for n up to ~2000 points.
_PAIR_CACHE = 1 << 22

# numpy's exp is 20-200x slower where its result underflows or is subnormal
# (arguments below about -708). The numpy 1-D pairwise Gaussian sums clamp
# the argument at -_EXP_FLOOR and set those weights to exactly 0: the kernel
# is cut where it falls below 1e-304 of K(0) (|u| > 37.4) instead of where
# float64 underflows (|u| > 38.6); every other weight keeps its value.
_EXP_FLOOR = 700.0
_EXP_TINY = math.exp(-_EXP_FLOOR)

#: Values of the ``algorithm`` argument.
ALGORITHMS = ("auto", "fastsum", "direct")

#: Training-set size from which ``algorithm="auto"`` uses the exact fast sums
#: (below it the pairwise path is as fast: ~0.3 ms either way at n = 256).
FASTSUM_MIN_N = 256


def check_bandwidth(bandwidth, n_features, xp, dtype, dev):
    """Validate ``bandwidth`` and return it as a ``(n_features,)`` array.

    Raises
    ------
    ValueError
        If a bandwidth is not finite and strictly positive, or the number of
        per-dimension bandwidths differs from ``n_features``.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> check_bandwidth(0.5, 2, xp, xp.float64, "cpu")  # one value serves every feature
    array([0.5, 0.5])
    """
    h = xp.reshape(xp.asarray(bandwidth, dtype=dtype, device=dev), (-1,))
    if h.shape[0] == 1 and n_features != 1:
        h = xp.broadcast_to(h, (n_features,))
    if h.shape[0] != n_features:
        raise ValueError(
            f"bandwidth has {h.shape[0]} values but X has {n_features} features; "
            "pass one bandwidth or one per feature."
        )
    if not bool(xp.all(xp.isfinite(h))) or not bool(xp.all(h > 0)):
        raise ValueError(f"bandwidth must be finite and > 0, got {bandwidth!r}; pass a positive value.")
    return h


def check_degree(degree):
    """Validate the local polynomial degree and return it as an ``int``.

    Raises
    ------
    ValueError
        Unless ``degree`` is the integer 0 (Nadaraya-Watson) or 1 (local linear).

    Examples
    --------
    >>> check_degree(1)
    1
    """
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral) or degree not in (0, 1):
        raise ValueError(f"degree={degree!r} is not supported; pass 0 (Nadaraya-Watson) or 1 (local linear).")
    return int(degree)


def use_fastsum(algorithm, X, kernel, *arrays):
    """Whether the exact fast sums compute this 1-D fit (see the module notes).

    Raises
    ------
    ValueError
        If ``algorithm`` is unknown, or is ``"fastsum"`` where the fast sums do
        not apply (more than one feature, a kernel without a polynomial or
        exponential form, or inputs tracked by autograd).

    Examples
    --------
    >>> import numpy as np
    >>> use_fastsum("auto", np.zeros((1000, 1)), "epanechnikov"), use_fastsum("auto", np.zeros((1000, 1)), "gaussian")
    (True, False)
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r} is unknown; choose one of {list(ALGORITHMS)}.")
    if algorithm == "direct":
        return False
    d = 1 if X.ndim == 1 else X.shape[1]
    kern = get_kernel(kernel)
    tracked = any(a is not None and _tracked(a) for a in (X, *arrays))
    applicable = d == 1 and supports(kern) and not tracked
    if algorithm == "fastsum":
        if not applicable:
            why = (f"X has {d} features" if d != 1 else f"kernel {kern.name!r} has no polynomial or exponential form"
                   if not supports(kern) else "an input is tracked by autograd")
            raise ValueError(f"algorithm='fastsum' does not apply: {why}; use algorithm='direct' or 'auto'.")
        return True
    return applicable and X.shape[0] >= FASTSUM_MIN_N


def _fastsum(X, y, kern, sw):
    return FastSmoother(to_numpy(X[:, 0]), to_numpy(y), kern, None if sw is None else to_numpy(sw))


def _chunk_size(X, chunk_size):
    """Evaluation points per block for training inputs ``X`` of shape (n, d)."""
    if chunk_size is not None:
        return max(1, int(chunk_size))
    on_cpu = "cpu" in str(device(X)).lower()
    block = _BLOCK_ELEMENTS_CPU if on_cpu else _BLOCK_ELEMENTS_ACCELERATOR
    return max(1, block // max(1, X.shape[0] * X.shape[1]))


def _block_rows(X, x_eval, h, kern, sample_weight, degree, xp):
    """Smoother rows ``l(x)`` for a block of evaluation points, and a mask of
    the points whose local fit is undefined (rows are NaN there)."""
    # The block is the hot loop of every CV criterion: build each (m, n)
    # array once and update it in place (see kernelvalue._array.imul).
    if X.shape[1] == 1:
        u = idiv(X[:, 0][None, :] - x_eval[:, 0][:, None], h[0])  # (m, n)
        w = kern(u)
    else:
        u = idiv(X[None, :, :] - x_eval[:, None, :], h)  # (m, n, d)
        w = xp.prod(kern(u), axis=2)
    if sample_weight is not None:
        w = imul(w, sample_weight[None, :])
    s0 = xp.sum(w, axis=1)
    if degree == 0:
        bad = ~(s0 > 0)
        rows = idiv(w, xp.where(bad, xp.ones_like(s0), s0)[:, None])
    else:
        # Bandwidth units: the local-linear intercept is invariant to
        # rescaling the design, and in d-D this makes the singularity test
        # scale-free per dimension.
        rows, bad = _local_linear_rows(w, u, s0, xp)
    if bool(xp.any(bad)):
        rows = xp.where(bad[:, None], xp.full_like(rows, float("nan")), rows)
    return rows, bad


def _singular_tol(xp, dtype):
    # Relative size below which a local design counts as degenerate: 1e-10 in
    # float64; in float32 the cancellation in s0*s2 - s1^2 alone is a few eps
    # (~1e-7), so the threshold must sit well above it or rounding noise would
    # pass for spread.
    return max(1e-10, 64 * float(xp.finfo(dtype).eps))


def _local_linear_rows(w, u, s0, xp):
    # l_j(x0) = w_j [1, u_j] A^{-1} e1 with A the weighted Gram matrix of the
    # local design [1, u] (u = (x - x0)/h); only the first column of A^{-1}
    # is needed. Consumes ``w`` and ``u`` (the rows are built in u's buffer).
    if u.ndim == 3:
        return _local_linear_rows_nd(w, u, s0, xp)
    wu = w * u
    s1 = xp.sum(wu, axis=1)
    s2 = xp.vecdot(wu, u, axis=-1)
    det = s0 * s2 - s1**2
    # det is a weighted variance of u times s0^2: relative tolerance makes
    # "one distinct point in the window" singular whatever the units.
    bad = ~(det > _singular_tol(xp, det.dtype) * s0 * s2)
    det = xp.where(bad, xp.ones_like(det), det)
    rows = imul(u, (-s1 / det)[:, None])  # c1 u ...
    rows = iadd(rows, (s2 / det)[:, None])  # ... + c0
    return imul(rows, w), bad


def _local_linear_rows_nd(w, u, s0, xp):
    # Centred form of the same solution: with weighted mean mu and covariance C
    # of the local design u (in bandwidth units), the intercept at x0 is
    # l_j = w_j / s0 * (1 - (u_j - mu)^T C^+ mu).  Centring keeps the solve
    # well conditioned.  C^+ is the pseudo-inverse over the directions in
    # which the window's points spread: with collinear or redundant features
    # no slope is identifiable across the flat directions, so the fit is local
    # linear along the spanned ones and local constant across the rest (the
    # minimum-norm weighted least-squares solution). The fit is undefined only
    # when the window has no spread at all (the 1-D rule).
    m, n, d = u.shape
    empty = ~(s0 > 0)
    s0_safe = xp.where(empty, xp.ones_like(s0), s0)
    p = w / s0_safe[:, None]  # normalised weights (m, n)
    mu = xp.sum(p[:, :, None] * u, axis=1)  # (m, d)
    pu = p[:, :, None] * u
    second = xp.matmul(xp.permute_dims(pu, (0, 2, 1)), u)  # E_w[u u^T], (m, d, d)
    cov = second - mu[:, :, None] * mu[:, None, :]
    cov = 0.5 * (cov + xp.permute_dims(cov, (0, 2, 1)))
    eye = xp.eye(d, dtype=u.dtype, device=device(u))
    cov = xp.where(empty[:, None, None], eye[None, :, :], cov)
    lam, vec = xp.linalg.eigh(cov)  # ascending eigenvalues
    # Relative threshold as in 1-D (var > 1e-10 E[u^2]), against the largest
    # uncentred second moment so the test does not depend on the location.
    scale = xp.max(xp.linalg.diagonal(second), axis=1)
    keep = lam > _singular_tol(xp, lam.dtype) * scale[:, None]
    bad = empty | ~xp.any(keep, axis=1)
    safe_lam = xp.where(keep, lam, xp.ones_like(lam))
    inv_lam = xp.where(keep, 1.0 / safe_lam, xp.zeros_like(lam))
    proj = xp.sum(vec * mu[:, :, None], axis=1)  # V^T mu, (m, d)
    c = xp.sum(vec * (inv_lam * proj)[:, None, :], axis=2)  # V diag(1/lam) V^T mu
    rows = p * (1.0 - xp.sum((u - mu[:, None, :]) * c[:, None, :], axis=2))
    return rows, bad


def _prepare(X, x_eval, bandwidth, kernel, degree, sample_weight):
    xp = array_namespace(X)
    X = as_float(X, xp)
    if X.ndim == 1:
        X = X[:, None]
    dtype, dev = X.dtype, device(X)
    x_eval = X if x_eval is None else xp.asarray(x_eval, dtype=dtype, device=dev)
    if x_eval.ndim == 1:
        x_eval = x_eval[:, None]
    degree = check_degree(degree)
    h = check_bandwidth(bandwidth, X.shape[1], xp, dtype, dev)
    sw = None if sample_weight is None else xp.asarray(sample_weight, dtype=dtype, device=dev)
    return xp, X, x_eval, h, get_kernel(kernel), sw


def _warn_no_data(n_bad, bandwidth):
    warnings.warn(
        f"{n_bad} evaluation point(s) have no (or too few) training points inside the kernel "
        f"support at bandwidth={bandwidth!r}; their predictions are NaN. Use a larger bandwidth "
        "or a kernel with unbounded support (e.g. 'gaussian').",
        RuntimeWarning,
        stacklevel=3,
    )


def _by_first_feature(a, xp):
    """The permutation sorting the rows of ``a`` by feature 0, and its inverse."""
    order = xp.argsort(a[:, 0], stable=True)
    return order, xp.argsort(order)


def _blocks(X, x_eval, h, kern, sw, degree, xp, chunk_size):
    """Smoother rows block by block, on the training columns that can carry weight.

    ``X`` and ``x_eval`` must be sorted by feature 0. Yields
    ``(start, stop, cols, rows, bad)``: ``rows`` are the rows of
    ``x_eval[start:stop]`` on the training points ``cols`` (a slice); every
    other entry of those rows is exactly 0, because the product kernel
    vanishes once ``|u_0| > tau`` (``Kernel.tail_bound()``: the support, or
    where an unbounded kernel underflows to 0 in float64). Dropping exact
    zeros changes no sum, and the cost falls from ``O(m n)`` to ``O(m *
    window)`` for small bandwidths.
    """
    n, m = X.shape[0], x_eval.shape[0]
    step = _chunk_size(X, chunk_size)
    starts = list(range(0, m, step))
    tau = kern.tail_bound()
    if math.isfinite(tau) and m:
        # Contiguous copies: searchsorted wants a dense sorted sequence.
        x0, e0 = xp.asarray(X[:, 0], copy=True), x_eval[:, 0]
        eps = float(xp.finfo(X.dtype).eps)
        scale = max(abs(float(x0[0])), abs(float(x0[-1])), abs(float(e0[0])), abs(float(e0[-1])))
        # Widened by many ulps: rounding in x -/+ reach must never drop a
        # point that (x_j - x)/h, itself rounded, puts inside the support.
        reach = tau * float(to_numpy(h)[0]) * (1.0 + 64 * eps) + 64 * eps * scale
        firsts = xp.asarray(starts, device=device(X))
        lasts = xp.asarray([min(s + step, m) - 1 for s in starts], device=device(X))
        lows = to_numpy(xp.searchsorted(x0, xp.take(e0, firsts) - reach, side="left")).tolist()
        highs = to_numpy(xp.searchsorted(x0, xp.take(e0, lasts) + reach, side="right")).tolist()
    else:
        lows, highs = [0] * len(starts), [n] * len(starts)
    for start, lo, hi in zip(starts, lows, highs):
        # An empty window still gets one (zero-weight) column, so the block
        # reports its rows as undefined instead of returning (m, 0) arrays.
        lo = min(int(lo), n - 1)
        cols = slice(lo, max(int(hi), lo + 1))
        stop = min(start + step, m)
        rows, bad = _block_rows(
            X[cols, :], x_eval[start:stop, :], h, kern, None if sw is None else sw[cols], degree, xp
        )
        yield start, stop, cols, rows, bad


def local_weights(X, x_eval=None, bandwidth=1.0, kernel="epanechnikov", degree=0, sample_weight=None):
    """Smoother rows ``l(x)`` for each evaluation point: an ``(m, n)`` array.

    Parameters
    ----------
    X : array of shape (n, d) or (n,)
        Training inputs.
    x_eval : array of shape (m, d) or (m,), optional
        Evaluation points; defaults to ``X`` (the in-sample smoother matrix).
    bandwidth : float or array of shape (d,)
        Positive bandwidth(s).
    kernel : str or Kernel
    degree : {0, 1}
        0 for Nadaraya-Watson, 1 for local linear.
    sample_weight : array of shape (n,), optional
        Non-negative observation weights.

    Returns
    -------
    array of shape (m, n)
        Rows sum to one; NaN rows where the local fit is undefined.

    Examples
    --------
    >>> import numpy as np
    >>> L = local_weights(np.arange(5.0), bandwidth=1.5, kernel="triangular")
    >>> np.allclose(L.sum(axis=1), 1.0)
    True
    """
    xp, X, x_eval, h, kern, sw = _prepare(X, x_eval, bandwidth, kernel, degree, sample_weight)
    rows, bad = _block_rows(X, x_eval, h, kern, sw, degree, xp)
    if bool(xp.any(bad)):
        _warn_no_data(int(xp.sum(xp.astype(bad, xp.int64))), bandwidth)
    return rows


smoother_matrix = local_weights


def smooth(
    X,
    y,
    x_eval,
    bandwidth,
    kernel="epanechnikov",
    degree=0,
    sample_weight=None,
    return_norm=False,
    chunk_size=None,
    norm_weights=None,
    algorithm="auto",
):
    """Fitted values ``l(x) @ y`` at the evaluation points, chunked.

    Parameters
    ----------
    X, x_eval, bandwidth, kernel, degree, sample_weight
        As in :func:`local_weights`.
    y : array of shape (n,)
        Responses.
    return_norm : bool
        Also return ``||l(x)||^2``: the pointwise variance is ``sigma^2`` times it.
    chunk_size : int, optional
        Evaluation points per block (default: blocks of ~64K weights on CPU,
        ~4M on accelerators).
    norm_weights : array of shape (n,), optional
        With ``return_norm``: return ``sum_j c_j l_j(x)^2`` for these ``c``
        instead (e.g. ``c = 1 / w`` gives the variance factor under frequency
        weights ``w``, the norm on the data with rows repeated).
    algorithm : {"auto", "fastsum", "direct"}
        Exact fast sums or pairwise sums (see the module notes).

    Returns
    -------
    fitted : array of shape (m,)
    norm2 : array of shape (m,), only if ``return_norm``

    Examples
    --------
    >>> import numpy as np
    >>> X = np.linspace(0, 1, 20)
    >>> round(float(smooth(X, np.full(20, 3.0), np.array([0.3]), 0.1)[0]), 12)  # NW reproduces constants
    3.0
    """
    xp, X, x_eval, h, kern, sw = _prepare(X, x_eval, bandwidth, kernel, degree, sample_weight)
    y = xp.asarray(y, dtype=X.dtype, device=device(X))
    c = None if norm_weights is None else xp.asarray(norm_weights, dtype=X.dtype, device=device(X))
    if use_fastsum(algorithm, X, kern, y, sw, c, h):
        fit, norm2, bad = _fastsum(X, y, kern, sw).smooth(
            to_numpy(x_eval[:, 0]), float(to_numpy(h)[0]), degree, return_norm, None if c is None else to_numpy(c)
        )
        if bad.any():
            _warn_no_data(int(bad.sum()), bandwidth)
        return (like(fit, X), like(norm2, X)) if return_norm else like(fit, X)
    if X.shape[1] == 1 and not return_norm and not any(_tracked(a) for a in (X, y, sw, h, x_eval) if a is not None):
        order, inverse = _by_first_feature(x_eval, xp)
        fit, bad = _pairwise(X, y, kern, sw, xp, chunk_size).fit_at(
            xp.take(x_eval[:, 0], order), float(to_numpy(h)[0]), degree
        )
        n_bad = int(xp.sum(xp.astype(bad, xp.int64)))
        if n_bad:
            _warn_no_data(n_bad, bandwidth)
        return xp.take(fit, inverse)
    X, (y, sw, c), _ = _sorted_data(X, (y, sw, c), xp)
    order, inverse = _by_first_feature(x_eval, xp)
    x_eval = xp.take(x_eval, order, axis=0)
    fitted, norms, n_bad = [], [], 0
    for _, _, cols, rows, bad in _blocks(X, x_eval, h, kern, sw, degree, xp, chunk_size):
        fitted.append(xp.matmul(rows, y[cols]))
        if return_norm:
            norms.append(xp.vecdot(rows, rows, axis=-1) if c is None else xp.matmul(rows * rows, c[cols]))
        n_bad += int(xp.sum(xp.astype(bad, xp.int64)))
    if n_bad:
        _warn_no_data(n_bad, bandwidth)
    if not fitted:
        fitted = norms = [xp.zeros((0,), dtype=X.dtype, device=device(X))]
    fitted = xp.take(xp.concat(fitted), inverse)
    if return_norm:
        return fitted, xp.take(xp.concat(norms), inverse)
    return fitted


def _sorted_data(X, columns, xp):
    """``X`` and the per-row ``columns`` (arrays or None) sorted by feature 0
    (see :func:`_blocks`), and the permutation that restores the original order."""
    order, inverse = _by_first_feature(X, xp)
    columns = tuple(None if a is None else xp.take(a, order) for a in columns)
    return xp.take(X, order, axis=0), columns, inverse


def _pairwise(X, y, kern, sw, xp, chunk_size=None):
    on_cpu = "cpu" in str(device(X)).lower()
    block = int(chunk_size) if chunk_size is not None else (256 if on_cpu else 4096)
    return _Pairwise1D(X, y, kern, sw, xp, block)


class _Pairwise1D:
    """Sorted 1-D data and symmetric pairwise kernel sums at any bandwidth.

    The kernel matrix is symmetric, so each block pair ``(I, J)``, ``I <= J``,
    is evaluated once (one distance pass) and feeds the sums of both row
    blocks: ``K`` times ``[w, w y]`` for the rows of ``I`` and ``K^T`` times
    them for the rows of ``J`` (odd moments change sign). Blocks farther
    apart than the kernel's reach (where every weight is exactly zero) are
    skipped. The pairwise differences are computed once per data set and
    kept while they fit in :data:`_PAIR_CACHE` elements, so that a bandwidth
    search pays only the kernel evaluation per bandwidth.
    """

    def __init__(self, X, y, kern, sw, xp, block):
        self.xp, self.kern = xp, kern
        self.X, (self.y, self.sw), self.inverse = _sorted_data(X, (y, sw), xp)
        self.w = xp.ones_like(self.y) if sw is None else self.sw
        self.x = self.X[:, 0]
        self.xs = to_numpy(self.x)
        n = self.x.shape[0]
        self.starts = list(range(0, n, block))
        self.block = block
        self._diffs = {} if n * (n + 1) <= _PAIR_CACHE else None  # d and d^2 for half the pairs

    def _pairs(self, reach):
        n = self.x.shape[0]
        for bi, a in enumerate(self.starts):
            ai = min(a + self.block, n)
            for b in self.starts[bi:]:
                if float(self.xs[b]) - float(self.xs[ai - 1]) > reach:
                    break  # sorted: every later block is farther still
                yield a, ai, b, min(b + self.block, n)

    def _diff(self, a, ai, b, bj):
        """Differences ``x_J - x_I`` of a block pair and their squares (cached)."""
        if self._diffs is not None and (a, b) in self._diffs:
            return self._diffs[(a, b)]
        d = self.x[b:bj][None, :] - self.x[a:ai][:, None]
        pair = (d, d * d)
        if self._diffs is not None:
            self._diffs[(a, b)] = pair
        return pair

    def _weights_block(self, d, d2, h, gauss, buf, span):
        """Kernel weights for a block of differences ``d`` (squares ``d2``, at most
        ``span`` apart), into ``buf`` for the numpy Gaussian."""
        if gauss and buf is not None:
            return _gauss_block(d2, 0.5 / (h * h), span, buf[: d.shape[0], : d.shape[1]])
        if gauss:
            return self.xp.exp(d2 * (-0.5 / (h * h)))
        return self.kern(d / h)

    def fit_at(self, z, h, degree):
        """Fitted values and the undefined mask at new points ``z`` (sorted 1-D), from
        blocked kernel sums against the data within the kernel's reach."""
        xp, kern = self.xp, self.kern
        m = z.shape[0]
        n_mom = 2 * degree + 1
        V = xp.stack([self.w, self.w * self.y], axis=1)
        S = xp.zeros((m, n_mom), dtype=self.X.dtype, device=device(self.X))
        T = xp.zeros((m, degree + 1), dtype=self.X.dtype, device=device(self.X))
        gauss = kern is KERNELS["gaussian"]
        buf = np.empty((self.block, self.block)) if is_numpy_array(self.X) else None
        reach = kern.tail_bound() * h
        zs = to_numpy(z)
        for a in range(0, m, self.block):
            ai = min(a + self.block, m)
            lo = int(np.searchsorted(self.xs, zs[a] - reach, side="left"))
            hi = int(np.searchsorted(self.xs, zs[ai - 1] + reach, side="right"))
            for b in range(lo, hi, self.block):
                bj = min(b + self.block, hi)
                d = self.x[b:bj][None, :] - z[a:ai][:, None]
                span = max(abs(float(self.xs[bj - 1] - zs[a])), abs(float(zs[ai - 1] - self.xs[b])))
                E = self._weights_block(d, d * d, h, gauss, buf, span)
                t = d / h if degree else None
                for p in range(n_mom):
                    Vp = V if p <= degree else V[:, :1]
                    rows = xp.matmul(E, Vp[b:bj, :])
                    S[a:ai, p] += rows[:, 0]
                    if p <= degree:
                        T[a:ai, p] += rows[:, 1]
                    if p + 1 < n_mom:
                        E = imul(E, t) if buf is not None else E * t
        fit, _, _, _, _ = _stats_from_sums(S, T, None, xp.ones_like(S[:, 0]), None, degree, 1.0, xp)
        return fit, xp.isnan(fit)

    def stats(self, h, degree, need_sst):
        """Sorted-order ``fitted, diag, trace, trace_sst (NaN unless need_sst), n_bad``."""
        xp, kern = self.xp, self.kern
        n = self.x.shape[0]
        dev, dt = device(self.X), self.X.dtype
        n_mom = 2 * degree + 1
        V = xp.stack([self.w, self.w * self.y], axis=1)
        w2 = self.w * self.w
        S = xp.zeros((n, n_mom), dtype=dt, device=dev)  # sum w K t^p
        T = xp.zeros((n, degree + 1), dtype=dt, device=dev)  # sum w y K t^p
        Q = xp.zeros((n, n_mom), dtype=dt, device=dev) if need_sst else None  # sum w^2 K^2 t^p
        # The Gaussian's constant cancels from every fit and leverage (S_ii =
        # K(0) w_i A_i with K(0) = 1 then): exp(-d^2 / 2h^2) in two passes.
        gauss = kern is KERNELS["gaussian"]
        k0 = 1.0 if gauss else kern.k0
        # numpy: one reused block buffer. Fresh 512 KB temporaries would come
        # from mmap with a page fault per 4 KB, costing as much as the exp.
        buf = np.empty((self.block, self.block)) if is_numpy_array(self.X) else None
        for a, ai, b, bj in self._pairs(kern.tail_bound() * h):
            d, d2 = self._diff(a, ai, b, bj)
            E = self._weights_block(d, d2, h, gauss, buf, float(self.xs[bj - 1] - self.xs[a]))
            t = d / h if degree else None
            mirror = b != a
            for p in range(n_mom):
                Vp = V if p <= degree else V[:, :1]
                rows = xp.matmul(E, Vp[b:bj, :])
                S[a:ai, p] += rows[:, 0]
                if p <= degree:
                    T[a:ai, p] += rows[:, 1]
                if mirror:
                    cols = xp.matmul(xp.permute_dims(E, (1, 0)), Vp[a:ai, :])
                    sign = -1.0 if p % 2 else 1.0
                    S[b:bj, p] += sign * cols[:, 0]
                    if p <= degree:
                        T[b:bj, p] += sign * cols[:, 1]
                if p + 1 < n_mom:
                    E = imul(E, t) if buf is not None else E * t
            if need_sst:
                if gauss and buf is not None:
                    E2 = _gauss_block(d2, 1.0 / (h * h), float(self.xs[bj - 1] - self.xs[a]), np.empty_like(d2))
                else:
                    E2 = xp.exp(d2 * (-1.0 / (h * h))) if gauss else kern(d / h) ** 2
                for p in range(n_mom):
                    Q[a:ai, p] += xp.matmul(E2, w2[b:bj])
                    if mirror:
                        Q[b:bj, p] += (-1.0 if p % 2 else 1.0) * xp.matmul(xp.permute_dims(E2, (1, 0)), w2[a:ai])
                    if p + 1 < n_mom:
                        E2 = E2 * t
        return _stats_from_sums(S, T, Q, self.w, self.y, degree, k0, xp)


def _gauss_block(d2, c, span, out):
    """``exp(-c d2)`` into ``out`` (numpy); where ``c span^2`` passes
    ``_EXP_FLOOR``, weights below ``exp(-_EXP_FLOOR)`` become 0 (see there)."""
    np.multiply(d2, -c, out=out)
    if c * span * span <= _EXP_FLOOR:
        return np.exp(out, out=out)
    np.maximum(out, -_EXP_FLOOR, out=out)
    np.exp(out, out=out)
    np.putmask(out, out <= _EXP_TINY, 0.0)
    return out


def _stats_from_sums(S, T, Q, w, y, degree, k0, xp):
    """Fitted values, leverages and norms from the kernel sums (the direct
    path's formulas: NW ``T_0/S_0``; LL through ``det = S_0 S_2 - S_1^2``)."""
    s0 = S[:, 0]
    if degree == 0:
        bad = ~(s0 > 0)
        s0 = xp.where(bad, xp.ones_like(s0), s0)
        fit, A = T[:, 0] / s0, 1.0 / s0
        norm = None if Q is None else Q[:, 0] * A * A
    else:
        s1, s2 = S[:, 1], S[:, 2]
        det = s0 * s2 - s1 * s1
        bad = ~(s0 > 0) | ~(det > _singular_tol(xp, det.dtype) * s0 * s2)
        det = xp.where(bad, xp.ones_like(det), det)
        c0, c1 = s2 / det, -s1 / det
        fit, A = c0 * T[:, 0] + c1 * T[:, 1], c0
        norm = None if Q is None else c0 * c0 * Q[:, 0] + 2.0 * c0 * c1 * Q[:, 1] + c1 * c1 * Q[:, 2]
    nan = xp.full_like(fit, float("nan"))
    diag = xp.where(bad, nan, k0 * A * w)
    zero = xp.zeros_like(fit)
    trace = float(xp.sum(xp.where(bad, zero, diag)))
    sst = float("nan") if norm is None else float(xp.sum(xp.where(bad, zero, norm)))
    return xp.where(bad, nan, fit), diag, trace, sst, int(xp.sum(xp.astype(bad, xp.int64)))


@dataclass(frozen=True)
class SmootherStats:
    """In-sample summaries of a linear smoother ``S`` fitted to ``(X, y)``.

    Attributes
    ----------
    fitted : array (n,)
        ``S y``.
    diag : array (n,)
        ``S_ii``, the leverages (for closed-form leave-one-out).
    trace : float
        ``tr S``, the effective degrees of freedom.
    trace_sst : float
        ``tr(S S^T) = sum_ij S_ij^2``.
    n_undefined : int
        Points whose local fit is undefined (NaN in ``fitted``/``diag``).
    """

    fitted: object
    diag: object
    trace: float
    trace_sst: float
    n_undefined: int


def smoother_stats(
    X, y, bandwidth, kernel="epanechnikov", degree=0, sample_weight=None, chunk_size=None, algorithm="auto"
):
    """Fitted values, leverages, ``tr S`` and ``tr S S^T`` in one chunked pass.

    Never forms ``S``; warns nothing (callers decide what an undefined fit
    means: the CV criteria score it as infinite). ``algorithm`` as in
    :func:`smooth`.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.linspace(0, 1, 30)
    >>> st = smoother_stats(X, np.sin(X), 0.2)
    >>> bool(0 < st.trace < 30)
    True
    """
    return _smoother_stats(X, y, bandwidth, kernel, degree, sample_weight, chunk_size, algorithm, True)


def _smoother_stats(X, y, bandwidth, kernel, degree, sample_weight, chunk_size, algorithm, need_sst):
    """:func:`smoother_stats`; ``need_sst=False`` may skip ``tr S S^T`` (NaN),
    which the CV criteria do not use."""
    xp, X, _, h, kern, sw = _prepare(X, None, bandwidth, kernel, degree, sample_weight)
    y = xp.asarray(y, dtype=X.dtype, device=device(X))
    if use_fastsum(algorithm, X, kern, y, sw, h):
        st = _fastsum(X, y, kern, sw).stats(float(to_numpy(h)[0]), degree, need_sst=need_sst)
        return SmootherStats(like(st.fitted, X), like(st.diag, X), st.trace, st.trace_sst, int(st.bad.sum()))
    if X.shape[1] == 1 and not any(_tracked(a) for a in (X, y, sw, h) if a is not None):
        pw = _pairwise(X, y, kern, sw, xp, chunk_size)
        fitted, diag, trace, sst, n_bad = pw.stats(float(to_numpy(h)[0]), degree, need_sst)
        return SmootherStats(xp.take(fitted, pw.inverse), xp.take(diag, pw.inverse), trace, sst, n_bad)
    X, (y, sw), inverse = _sorted_data(X, (y, sw), xp)
    fitted, diag, sst, n_bad = [], [], 0.0, 0
    for start, stop, cols, rows, bad in _blocks(X, X, h, kern, sw, degree, xp, chunk_size):
        fitted.append(xp.matmul(rows, y[cols]))
        # S_ii for the block: row k's column start + k (window-relative),
        # gathered from the flattened block (O(chunk), not an O(chunk * n) mask).
        k = xp.arange(stop - start, device=device(X))
        width = cols.stop - cols.start
        diag.append(xp.take(xp.reshape(rows, (-1,)), k * (width + 1) + (start - cols.start)))
        n_bad_block = int(xp.sum(xp.astype(bad, xp.int64)))
        if n_bad_block:  # undefined rows are NaN: leave them out of tr SS^T
            rows = xp.where(bad[:, None], xp.zeros_like(rows), rows)
        flat = xp.reshape(rows, (-1,))
        sst += float(xp.vecdot(flat, flat))
        n_bad += n_bad_block
    diag = xp.concat(diag)
    trace = float(xp.sum(xp.where(xp.isnan(diag), xp.zeros_like(diag), diag)))
    return SmootherStats(xp.take(xp.concat(fitted), inverse), xp.take(diag, inverse), trace, sst, n_bad)
