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
names the bandwidth and the fix. Nothing is silently filled in.

Examples
--------
>>> import numpy as np
>>> from kernelvalue.smoothing import smooth
>>> X = np.linspace(0, 1, 50)[:, None]
>>> y = 2 * X[:, 0] + 1
>>> float(smooth(X, y, np.array([[0.5]]), 0.2, degree=1)[0])  # LL reproduces lines
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
    w = xp.prod(kern(diff / h), axis=2)
    if sample_weight is not None:
        w = w * sample_weight[None, :]
    s0 = xp.sum(w, axis=1)
    if degree == 0:
        bad = ~(s0 > 0)
        s0 = xp.where(bad, xp.ones_like(s0), s0)
        rows = w / s0[:, None]
    else:
        rows, bad = _local_linear_rows(w, diff, s0, xp)
    if bool(xp.any(bad)):
        rows = xp.where(bad[:, None], xp.full_like(rows, float("nan")), rows)
    return rows, bad


def _local_linear_rows(w, diff, s0, xp):
    # l_j(x0) = w_j [1, x_j - x0] A^{-1} e1 with A the weighted Gram matrix of
    # the local design [1, x - x0]; only the first column of A^{-1} is needed.
    m, n, d = diff.shape
    s1 = xp.sum(w[:, :, None] * diff, axis=1)  # (m, d)
    if d == 1:
        s2 = xp.sum(w * diff[:, :, 0] ** 2, axis=1)
        det = s0 * s2 - s1[:, 0] ** 2
        # det is a weighted variance of x times s0^2: relative tolerance makes
        # "one distinct point in the window" singular whatever the units.
        bad = ~(det > 1e-10 * s0 * s2)
        det = xp.where(bad, xp.ones_like(det), det)
        c0 = s2 / det
        c1 = -s1[:, 0] / det
        rows = w * (c0[:, None] + c1[:, None] * diff[:, :, 0])
        return rows, bad
    wd = w[:, :, None] * diff
    s2 = xp.matmul(xp.permute_dims(wd, (0, 2, 1)), diff)  # (m, d, d)
    top = xp.concat([s0[:, None, None], s1[:, None, :]], axis=2)
    bottom = xp.concat([s1[:, :, None], s2], axis=2)
    gram = xp.concat([top, bottom], axis=1)  # (m, d+1, d+1)
    counts = xp.sum(xp.astype(w > 0, xp.int64), axis=1)
    bad = counts < d + 1
    eye = xp.eye(d + 1, dtype=gram.dtype, device=device(gram))
    gram = xp.where(bad[:, None, None], eye[None, :, :], gram)
    e1 = xp.zeros((m, d + 1, 1), dtype=gram.dtype, device=device(gram))
    e1 = xp.concat([xp.ones((m, 1, 1), dtype=gram.dtype, device=device(gram)), e1[:, 1:, :]], axis=1)
    coef = xp.linalg.solve(gram, e1)[:, :, 0]  # (m, d+1)
    rows = w * (coef[:, 0:1] + xp.sum(diff * coef[:, None, 1:], axis=2))
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
    idx = xp.arange(X.shape[0], device=device(X))
    for start, stop, rows, bad in _blocks(X, X, h, kern, sw, degree, xp, chunk_size):
        fitted.append(xp.sum(rows * y[None, :], axis=1))
        # S_ii for the block: pick column start+k from row k.
        cols = idx[start:stop]
        onehot = cols[:, None] == idx[None, :]
        diag.append(xp.sum(xp.where(onehot, rows, xp.zeros_like(rows)), axis=1))
        good = ~bad
        sst += float(xp.sum(xp.where(good[:, None], rows * rows, xp.zeros_like(rows))))
        n_bad += int(xp.sum(xp.astype(bad, xp.int64)))
    diag = xp.concat(diag)
    trace = float(xp.sum(xp.where(xp.isnan(diag), xp.zeros_like(diag), diag)))
    return SmootherStats(xp.concat(fitted), diag, trace, sst, n_bad)
