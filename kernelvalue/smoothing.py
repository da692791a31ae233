"""Linear smoothers: Nadaraya-Watson (local constant) and local linear weights.

Pure functions on Array-API arrays. ``X`` is ``(n, d)``; evaluation points are
``(m, d)``; ``bandwidth`` is a positive scalar or one value per dimension
(product kernel). A fit at ``x0`` is ``l(x0) @ y`` where the smoother row
``l(x0)`` solves the kernel-weighted least-squares problem of degree 0 or 1
centred at ``x0``; rows sum to one.

Work is chunked over evaluation points so memory stays ``O(chunk * n * d)``:
the full smoother matrix is formed only by :func:`smoother_matrix`.

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

import warnings
from dataclasses import dataclass

from ._array import array_namespace, as_float, device
from .kernels import get_kernel

__all__ = [
    "SmootherStats",
    "check_bandwidth",
    "local_weights",
    "smooth",
    "smoother_matrix",
    "smoother_stats",
]

# Elements of the (chunk, n, d) distance block kept in memory at once.
_BLOCK_ELEMENTS = 1 << 22


def check_bandwidth(bandwidth, n_features, xp, dtype, dev):
    """Validate ``bandwidth`` and return it as a ``(n_features,)`` array.

    Raises
    ------
    ValueError
        If a bandwidth is not finite and strictly positive, or the number of
        per-dimension bandwidths differs from ``n_features``.
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


def _chunk_size(n, d, chunk_size):
    if chunk_size is not None:
        return max(1, int(chunk_size))
    return max(1, _BLOCK_ELEMENTS // max(1, n * d))


def _block_rows(X, x_eval, h, kern, sample_weight, degree, xp):
    """Smoother rows ``l(x)`` for a block of evaluation points, and a mask of
    the points whose local fit is undefined (rows are NaN there)."""
    diff = X[None, :, :] - x_eval[:, None, :]  # (m, n, d)
    u = diff / h
    # 1-D: skip the product over features (a full extra pass and copy).
    w = kern(u[:, :, 0]) if u.shape[2] == 1 else xp.prod(kern(u), axis=2)
    if sample_weight is not None:
        w = w * sample_weight[None, :]
    s0 = xp.sum(w, axis=1)
    if degree == 0:
        bad = ~(s0 > 0)
        s0 = xp.where(bad, xp.ones_like(s0), s0)
        rows = w / s0[:, None]
    else:
        # The local-linear intercept is invariant to rescaling the design:
        # d-D works in bandwidth units so its singularity test is scale-free
        # per dimension (the 1-D test is scale-free in any units).
        rows, bad = _local_linear_rows(w, diff if diff.shape[2] == 1 else u, s0, xp)
    if bool(xp.any(bad)):
        rows = xp.where(bad[:, None], xp.full_like(rows, float("nan")), rows)
    return rows, bad


def _singular_tol(xp, dtype):
    # Relative size below which a local design counts as degenerate: 1e-10 in
    # float64; in float32 the cancellation in s0*s2 - s1^2 alone is a few eps
    # (~1e-7), so the threshold must sit well above it or rounding noise would
    # pass for spread.
    return max(1e-10, 64 * float(xp.finfo(dtype).eps))


def _local_linear_rows(w, diff, s0, xp):
    # l_j(x0) = w_j [1, x_j - x0] A^{-1} e1 with A the weighted Gram matrix of
    # the local design [1, x - x0]; only the first column of A^{-1} is needed.
    m, n, d = diff.shape
    if d == 1:
        s1 = xp.sum(w[:, :, None] * diff, axis=1)[:, 0]
        s2 = xp.sum(w * diff[:, :, 0] ** 2, axis=1)
        det = s0 * s2 - s1**2
        # det is a weighted variance of x times s0^2: relative tolerance makes
        # "one distinct point in the window" singular whatever the units.
        bad = ~(det > _singular_tol(xp, det.dtype) * s0 * s2)
        det = xp.where(bad, xp.ones_like(det), det)
        c0 = s2 / det
        c1 = -s1 / det
        rows = w * (c0[:, None] + c1[:, None] * diff[:, :, 0])
        return rows, bad
    return _local_linear_rows_nd(w, diff, s0, xp)


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
    if degree not in (0, 1):
        raise ValueError(f"degree must be 0 (Nadaraya-Watson) or 1 (local linear), got {degree!r}.")
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


def _blocks(X, x_eval, h, kern, sw, degree, xp, chunk_size):
    n, d = X.shape
    step = _chunk_size(n, d, chunk_size)
    for start in range(0, x_eval.shape[0], step):
        stop = min(start + step, x_eval.shape[0])
        rows, bad = _block_rows(X, x_eval[start:stop, :], h, kern, sw, degree, xp)
        yield start, stop, rows, bad


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
    X, y, x_eval, bandwidth, kernel="epanechnikov", degree=0, sample_weight=None, return_norm=False, chunk_size=None
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
        Evaluation points per block (default bounds the block to ~4M elements).

    Returns
    -------
    fitted : array of shape (m,)
    norm2 : array of shape (m,), only if ``return_norm``

    Examples
    --------
    >>> import numpy as np
    >>> X = np.linspace(0, 1, 20)
    >>> float(smooth(X, np.full(20, 3.0), np.array([0.3]), 0.1)[0])
    3.0
    """
    xp, X, x_eval, h, kern, sw = _prepare(X, x_eval, bandwidth, kernel, degree, sample_weight)
    y = xp.asarray(y, dtype=X.dtype, device=device(X))
    fitted, norms, n_bad = [], [], 0
    for _, _, rows, bad in _blocks(X, x_eval, h, kern, sw, degree, xp, chunk_size):
        fitted.append(xp.sum(rows * y[None, :], axis=1))
        if return_norm:
            norms.append(xp.sum(rows * rows, axis=1))
        n_bad += int(xp.sum(xp.astype(bad, xp.int64)))
    if n_bad:
        _warn_no_data(n_bad, bandwidth)
    fitted = xp.concat(fitted) if fitted else xp.zeros((0,), dtype=X.dtype, device=device(X))
    if return_norm:
        return fitted, (xp.concat(norms) if norms else xp.zeros_like(fitted))
    return fitted


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


def smoother_stats(X, y, bandwidth, kernel="epanechnikov", degree=0, sample_weight=None, chunk_size=None):
    """Fitted values, leverages, ``tr S`` and ``tr S S^T`` in one chunked pass.

    Never forms ``S``; warns nothing (callers decide what an undefined fit
    means: the CV criteria score it as infinite).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.linspace(0, 1, 30)
    >>> st = smoother_stats(X, np.sin(X), 0.2)
    >>> bool(0 < st.trace < 30)
    True
    """
    xp, X, _, h, kern, sw = _prepare(X, None, bandwidth, kernel, degree, sample_weight)
    y = xp.asarray(y, dtype=X.dtype, device=device(X))
    fitted, diag, sst, n_bad = [], [], 0.0, 0
    n = X.shape[0]
    for start, stop, rows, bad in _blocks(X, X, h, kern, sw, degree, xp, chunk_size):
        fitted.append(xp.matmul(rows, y))
        # S_ii for the block: row k's column start+k, gathered from the
        # flattened block (O(chunk) instead of an O(chunk * n) mask).
        k = xp.arange(stop - start, device=device(X))
        diag.append(xp.take(xp.reshape(rows, (-1,)), k * (n + 1) + start))
        n_bad_block = int(xp.sum(xp.astype(bad, xp.int64)))
        if n_bad_block:  # undefined rows are NaN: leave them out of tr SS^T
            rows = xp.where(bad[:, None], xp.zeros_like(rows), rows)
        flat = xp.reshape(rows, (-1,))
        sst += float(xp.vecdot(flat, flat))
        n_bad += n_bad_block
    diag = xp.concat(diag)
    trace = float(xp.sum(xp.where(xp.isnan(diag), xp.zeros_like(diag), diag)))
    return SmootherStats(xp.concat(fitted), diag, trace, sst, n_bad)
