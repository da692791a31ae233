"""Exact fast kernel sums for 1-D Nadaraya-Watson and local linear smoothers.

Everything a 1-D local constant or local linear fit needs at a point ``z`` is
a handful of kernel sums

    A_p(z) = sum_j v_j K((x_j - z)/h) ((x_j - z)/h)^p,   p <= 2,

with ``v`` the weights ``w``, the weighted responses ``w y`` or, for the
norm ``||l(z)||^2``, ``c w^2`` with ``K^2`` in place of ``K``. The direct
path (:mod:`kernelvalue.smoothing`) evaluates them pair by pair, ``O(n)`` per
point. Here they cost ``O(1)`` per point after an ``O(n)`` pass, exactly (no
binning), for two kernel families:

**Polynomials in |u|** (uniform, triangular, Epanechnikov, biweight,
triweight, tricube; Fan & Marron 1994, Seifert et al. 1994, Langrené & Warin
2019). On its window ``|x_j - z| <= h`` the summand is a polynomial in
``t = (x_j - z)/h`` (one per side of ``z`` when odd powers of ``|t|``
occur), so ``A_p(z)`` is a fixed combination of the moments
``mu_k(z) = sum_window v_j t_j^k``: prefix sums of ``v x^k`` give every
window's moments by two look-ups. Done naively that is the textbook failure
of fast sum updating: moments of ``x`` about a far origin cancel
catastrophically (``x ~ 1e6`` offsets, ``x^9`` for the tricube). Three
measures keep every sum accurate to a few hundred ulps of its own size:

1. *local frames*: the sorted data are cut into cells of width ``beta h``;
   a point's terms are powers of its offset ``s`` from its cell's centre,
   ``|s| <= beta/2`` in bandwidth units. A window meets at most
   ``1 + ceil(2/beta)`` cells; each piece's moments are moved to ``z`` by
   the binomial formula, which amplifies round-off by at most
   ``(1 + beta)^k`` for moment ``k``, so ``beta`` is chosen per kernel to
   keep that below ``1e4``;
2. *centred prefix sums*: within each cell the terms are centred on their
   cell mean before the cumulative sum, so the running sums stay of the
   size of one cell's terms instead of growing to the total, and a
   difference of two of them loses nothing to cancellation;
3. *exact windows*: window edges come from ``searchsorted`` on the sorted
   data; for the uniform kernel (the one kernel with ``K(1) != 0``) points
   on the edge are classified with the direct path's own floating-point
   test, so both paths sum over the same points, ties included.

**The exponential (Laplace) kernel** ``K(u) = e^{-|u|}/2`` has infinite
support but factorises: the sum over the points left of ``z`` obeys the
recursion ``L(i) = e^{-Delta_i} shift_{Delta_i}(L(i-1)) + v_i`` (``Delta_i``
the gap to the previous point in bandwidth units), likewise from the right.
The recursion is a contraction (``Delta^p e^{-Delta} <= 1``), so it is
stable; it runs sequentially inside blocks of consecutive points (vectorised
across blocks) and carries block totals across by a doubling scan: ``O(n)``
work, ``O(n / B)`` of it in the scan.

Accuracy (tested with hypothesis against the direct path: random sizes,
ties, ``1e6`` offsets, every kernel, both degrees, weights): ``1e-9``
relative or better, usually ``1e-12``. Where a polynomial kernel's sum is
below its round-off floor (every window point within ~``1e-12 h`` of the
support edge) the fit is reported undefined, as the direct path does when
the window is empty.

Compiled loop (optional): with numba installed (``pip install
kernelvalue[fast]``), :meth:`FastSmoother.criteria` -- the in-sample
cross-validation sums a bandwidth search evaluates dozens of times -- runs the
same algorithm for polynomial kernels as one compiled pass over the sorted
data (:mod:`kernelvalue._fastsum_jit`): window edges by two pointers instead
of binary searches, prefix sums in a ring that stays in cache, every per-point
quantity in registers instead of ``(moments x n)`` arrays; 5-6x faster at
``n = 1e6``. Points with a data point within a few ulps of a window edge, or
with too much estimated round-off, still go through the numpy code (or pair
by pair), so the results meet the same ``1e-9`` bar (tested against both).
Numba compiles one specialisation per kernel and degree at first use (a few
seconds) and caches it on disk. ``KERNELVALUE_JIT=0`` in the environment, or
:data:`USE_JIT` ``= False``, keeps everything in numpy.

Only numpy float64 on the host: callers convert (see
:func:`kernelvalue.smoothing.smooth`, which uses this module automatically
for 1-D data with one of these kernels).

Examples
--------
>>> import numpy as np
>>> from kernelvalue.fastsum import FastSmoother
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(size=10_000)
>>> fs = FastSmoother(x, np.sin(6 * x), "epanechnikov")
>>> st = fs.stats(0.05, degree=1)
>>> round(float(np.max(np.abs(st.fitted - np.sin(6 * x)))), 3)  # bias ~ h^2 m''/10 at the peaks
0.009
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import numpy as np

from .kernels import get_kernel

__all__ = ["FastSmoother", "FastStats", "supports"]

# Evaluation points per block: the per-point work runs on arrays of this
# length, small enough to stay in cache with a dozen moment rows.
_CHUNK = 1 << 15
# Points per piece above which moment rows are gathered one by one.
_ROWWISE = 4096
# Round-off amplification allowed in moving a piece's moments to z.
_SHIFT_GAIN = 1e4
# Cells never wider than this many bandwidths (wider only adds magnitude).
_MAX_CELL = 16.0
# Points per sequential block of the exponential recursion.
_EXP_BLOCK = 64
# Beyond this many bandwidths the exponential factor is exactly 0.
_EXP_CUTOFF = 800.0
# Local-linear determinant tolerance: the direct path's (smoothing._singular_tol).
_DET_REL = 1e-10
# Estimated relative round-off above which a point's sums are recomputed
# pair by pair (FastSmoother._fit). The estimate is a bound built from the
# worst case of each piece; the errors realised are ~100x below it (tested).
_TOL = 1e-9


#: Whether :meth:`FastSmoother.criteria` runs the compiled loop of
#: :mod:`kernelvalue._fastsum_jit` for polynomial kernels: when numba is
#: installed (``pip install kernelvalue[fast]``) and the environment variable
#: ``KERNELVALUE_JIT`` is not ``"0"``. Otherwise, and for everything else,
#: numpy passes.
USE_JIT = os.environ.get("KERNELVALUE_JIT", "1") != "0"


@functools.lru_cache(maxsize=None)
def _jit():
    """The compiled loops, or None without numba (imported at first use: numba takes a while to import)."""
    try:
        from . import _fastsum_jit
    except ImportError:
        return None
    return _fastsum_jit


def supports(kernel) -> bool:
    """Whether ``kernel`` has a closed form this module sums exactly.

    Examples
    --------
    >>> supports("tricube"), supports("gaussian")
    (True, False)
    """
    k = get_kernel(kernel)
    return k.poly is not None or k.exp_scale is not None


@dataclass(frozen=True)
class FastStats:
    """In-sample fit summaries in the caller's order (see :meth:`FastSmoother.stats`)."""

    fitted: np.ndarray
    diag: np.ndarray
    trace: float
    trace_sst: float
    bad: np.ndarray  # points whose local fit is undefined (NaN in fitted and diag)


class FastSmoother:
    """Sorted 1-D data and exact kernel sums at any bandwidth.

    Sorting happens once; every bandwidth then costs ``O(n)`` (plus
    ``O(m log n)`` for ``m`` new evaluation points).

    Parameters
    ----------
    x : array of shape (n,)
        Inputs (finite).
    y : array of shape (n,)
        Responses.
    kernel : str or Kernel
        A kernel for which :func:`supports` is True.
    sample_weight : array of shape (n,), optional
        Non-negative weights.
    """

    def __init__(self, x, y, kernel, sample_weight=None):
        kern = get_kernel(kernel)
        if not supports(kern):
            raise ValueError(
                f"kernel {kern.name!r} has no polynomial or exponential form; the fast sums do not apply "
                "(use the direct path)."
            )
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        self.kernel = kern
        # Ties may come in any order (every window holds all of a tie group):
        # numpy's vectorised quicksort is 4x faster than its stable sort.
        self.order = np.argsort(x)
        self.x = x[self.order]
        self.y = np.asarray(y, dtype=np.float64).reshape(-1)[self.order]
        self.w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)[self.order]
        self.n = self.x.shape[0]
        self._pool = {}  # scratch arrays reused across bandwidths

    # ------------------------------------------------------------ public API
    def stats(self, bandwidth, degree, need_sst=True, norm_weights=None) -> FastStats:
        """Fitted values, leverages ``S_ii``, ``tr S`` and ``tr S S^T`` (in-sample).

        ``need_sst=False`` skips ``tr S S^T`` (NaN), which the CV criteria do
        not use and which costs sums of ``K^2``. ``norm_weights`` ``c`` gives
        ``sum_i sum_j c_j S_ij^2`` instead of ``tr S S^T``.
        """
        h = float(bandwidth)
        w = self._weights()
        c = None if norm_weights is None else np.asarray(norm_weights, dtype=np.float64).reshape(-1)[self.order]
        fit, A, norm, bad = self._fit(self.x, True, h, degree, w, need_sst, c)
        diag = self.kernel.k0 * A * w
        inverse = np.empty_like(self.order)
        inverse[self.order] = np.arange(self.n)
        trace = float(np.sum(diag[~bad]))
        sst = float(np.sum(norm[~bad])) if need_sst else math.nan
        return FastStats(fit[inverse], diag[inverse], trace, sst, bad[inverse])

    def criteria(self, bandwidth, degree, mask=None):
        """Cross-validation ingredients in one pass, without leaving sorted order.

        Returns ``(mse, loo, trace, n_used, n_undefined)`` over the points
        selected by ``mask`` (all by default; given in the caller's order):
        the weighted mean squared residual, the closed-form leave-one-out
        score (``inf`` where some ``S_ii = 1``), ``sum S_ii``, the number of
        points and of undefined fits among them (``mse``, ``loo`` are
        ``inf`` when there are any).
        """
        h = float(bandwidth)
        jit = _jit() if USE_JIT and self.kernel.poly is not None else None
        if jit is not None:
            return self._criteria_jit(jit, h, degree, mask)
        w = self._weights()
        fit, A, _, bad = self._fit(self.x, True, h, degree, w, False, None)
        keep = None if mask is None else np.asarray(mask, dtype=bool).reshape(-1)[self.order]
        if keep is not None:
            fit, A, bad, w, y = fit[keep], A[keep], bad[keep], w[keep], self.y[keep]
        else:
            y = self.y
        n_bad = int(np.count_nonzero(bad))
        diag = self.kernel.k0 * A * w
        trace = float(np.sum(diag[~bad])) if n_bad else float(np.sum(diag))
        if n_bad:
            return math.inf, math.inf, trace, y.shape[0], n_bad
        # Plain sums, not np.dot: BLAS threads spin badly on a busy machine.
        r = y - fit
        wr2 = r * r
        if self.w is not None:
            wr2 *= w
        wsum = float(np.sum(w))
        if not wsum > 0:  # every selected point weighs nothing: no average
            return math.inf, math.inf, trace, y.shape[0], 0
        mse = float(np.sum(wr2)) / wsum
        if not np.all(diag < 1.0):
            return mse, math.inf, trace, y.shape[0], 0
        one_minus = 1.0 - diag
        wr2 /= one_minus
        wr2 /= one_minus
        return mse, float(np.sum(wr2)) / wsum, trace, y.shape[0], 0

    def _criteria_jit(self, jit, h, degree, mask):
        """:meth:`criteria` by the compiled loop (polynomial kernels): the same
        windows, sums, round-off estimate and fallbacks."""
        x, y, w, kern, n = self.x, self.y, self._weights(), self.kernel, self.n
        if "padded" not in self._pool:
            self._pool["padded"] = np.concatenate(([-np.inf], x, [np.inf] * 3))
            self._pool["all"] = np.ones(n, dtype=bool)
        keep = self._pool["all"] if mask is None else np.asarray(mask, dtype=bool).reshape(-1)[self.order]
        coef = _coefficients(kern, False)
        loop = jit.criteria_loop(tuple(float(c) for c in coef), degree)
        tol = _edge_tol(x, x[[0, -1]], h)  # z = x: its extremes suffice
        ring = ("ring", 2 * coef.shape[0] + 3 * degree)  # rows: the moments of w and of w y
        scratch = self._pool.get(ring)
        if scratch is None:
            scratch = np.empty((jit.BLOCK, ring[1]))
        r2, loo, trace, n_bad, n_ge1, near, redo, self._pool[ring] = loop(
            self._pool["padded"], y, w, self.w is not None, keep, h, _cell_width(coef.shape[0] + 2 * degree - 1),
            kern.k0, np.finfo(float).eps, _TOL, _DET_REL, tol, scratch)
        # Points with data on a window edge and those too close to round-off
        # are summed pair by pair, with the kernel itself (the direct path's
        # weights), unless their windows hold many points (data on a lattice
        # of step ~h): then the numpy sums settle the edges.
        idx = np.sort(np.concatenate([near, redo]))
        if idx.size:
            z = x[idx]
            pairs = int(np.sum(np.searchsorted(x, z + h, side="right") - np.searchsorted(x, z - h, side="left")))
            if pairs <= 2 * n:
                fit_r, A_r, _, bad_r = _direct_fit(x, y, w, None, z, h, kern, degree, False)
            else:
                fit_r, A_r, _, bad_r = self._fit(z, False, h, degree, w, False, None)
            ok = ~bad_r
            n_bad += int(np.count_nonzero(bad_r))
            diag = kern.k0 * A_r[ok] * w[idx][ok]
            wr2 = (y[idx][ok] - fit_r[ok]) ** 2
            if self.w is not None:
                wr2 *= w[idx][ok]
            below = diag < 1.0
            trace += float(np.sum(diag))
            r2 += float(np.sum(wr2))
            loo += float(np.sum(wr2[below] / (1.0 - diag[below]) ** 2))
            n_ge1 += int(np.count_nonzero(~below))
        n_used = n if mask is None else int(np.count_nonzero(keep))
        if n_bad:
            return math.inf, math.inf, trace, n_used, n_bad
        wsum = float(np.sum(w if mask is None else w[keep]))
        if not wsum > 0:  # every selected point weighs nothing: no average
            return math.inf, math.inf, trace, n_used, 0
        return r2 / wsum, (loo / wsum if n_ge1 == 0 else math.inf), trace, n_used, 0

    def smooth(self, x_eval, bandwidth, degree, return_norm=False, norm_weights=None):
        """Fit (and ``sum_j c_j l_j(x)^2``) at new points; ``bad`` marks undefined fits.

        Returns ``(fitted, norm2 or None, bad)`` in the order of ``x_eval``.
        """
        z = np.asarray(x_eval, dtype=np.float64).reshape(-1)
        order = np.argsort(z, kind="stable")
        c = None if norm_weights is None else np.asarray(norm_weights, dtype=np.float64).reshape(-1)[self.order]
        fit, _, norm, bad = self._fit(z[order], False, float(bandwidth), degree, self._weights(), return_norm, c)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.shape[0])
        return fit[inverse], (norm[inverse] if return_norm else None), bad[inverse]

    # ------------------------------------------------------------ internals
    def _weights(self):
        if self.w is not None:
            return self.w
        ones = self._pool.get("ones")
        if ones is None:
            ones = self._pool["ones"] = np.ones(self.n)
        return ones

    def _fit(self, z, in_sample, h, degree, w, need_norm, c):
        """Fit, leverage factor ``A`` (``S_ii = K(0) w_i A_i``), norm and the undefined mask at sorted ``z``."""
        n_mom = 2 * degree + 1
        sets = [(w, n_mom), (w * self.y, degree + 1)]
        norm_v = (w * w if c is None else c * w * w) if need_norm else None
        (S, T), rho_s = self._sums(z, in_sample, h, sets, squared=False)
        Q, rho_q = self._sums(z, in_sample, h, [(norm_v, n_mom)], squared=True) if need_norm else ([None], None)
        Q = Q[0]
        fit, A, norm, bad, est = _combine(S, T, Q, degree, rho_s, rho_q)
        # The prefix sums' round-off is absolute (a fraction of the window's
        # weight); where it could exceed _TOL of the result (windows whose
        # points crowd near the support's edge or to one side of z, ties
        # alone at z) the sums are recomputed pair by pair over the window.
        redo = np.flatnonzero(est > _TOL)
        if redo.size:
            f_r, A_r, n_r, bad_r = _direct_fit(self.x, self.y, w, c, z[redo], h, self.kernel, degree, need_norm)
            fit[redo], A[redo], bad[redo] = f_r, A_r, bad_r
            if need_norm:
                norm[redo] = n_r
        nan = np.full_like(fit, np.nan)
        if norm is not None:
            norm = np.where(bad, nan, norm)
        return np.where(bad, nan, fit), np.where(bad, nan, A), norm, bad

    def _sums(self, z, in_sample, h, sets, squared):
        """``[sum_j v_j K(t_j) t_j^p for p < n_p] for (v, n_p) in sets`` at sorted ``z``
        (``K^2`` if ``squared``), and the relative round-off level of the first
        set's ``p = 0`` sum (None where it is at machine precision)."""
        kern = self.kernel
        if kern.exp_scale is not None:
            rate, scale = (2.0, kern.exp_scale**2) if squared else (1.0, kern.exp_scale)
            outs = [scale * a for a in _exp_sums(self.x, z, in_sample, h, rate, sets)]
            # Each sum carries a few dozen roundings relative to itself (one
            # per recursion step it passed): ill-conditioned local-linear fits
            # (far extrapolation) still go to the pairwise fallback.
            return outs, np.full(z.shape[0], _EXP_BLOCK * np.finfo(float).eps)
        coef = _coefficients(kern, squared)
        outs, scale = _poly_sums(self.x, z, in_sample, h, coef, sets, kern, self._pool)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.finfo(float).eps * float(np.sum(np.abs(coef))) * scale / outs[0][0]
        # A non-positive sum over a non-empty window may be round-off around 0.
        rho = np.where(outs[0][0] > 0, rho, np.where(scale > 0, np.inf, 0.0))
        return outs, rho


def _combine(S, T, Q, degree, rho_s, rho_q):
    """Fit, leverage factor, norm, undefined mask and the estimated relative
    round-off of fit and norm (0 where ``rho_s`` is None: exact sums)."""
    if degree == 0:
        bad = ~(S[0] > 0)
        s0 = np.where(bad, 1.0, S[0])
        fit, A = T[0] / s0, 1.0 / s0
        norm = None if Q is None else Q[0] * A * A
        est = np.zeros_like(fit) if rho_s is None else rho_s
        if Q is not None and rho_q is not None:
            est = np.maximum(est, rho_q + 2.0 * rho_s)
        return fit, A, norm, bad, est
    # Centred form: with tbar = S_1/S_0 and V = S_2/S_0 - tbar^2 (the
    # kernel-weighted mean and variance of t over the window), the weights
    # are l_j = w_j K_j (1 - a (t_j - tbar)) / S_0 with a = tbar / V and
    # S_ii = K(0) w_i (1 + tbar^2 / V) / S_0. Writing the norm through
    # moments about tbar keeps its round-off near the fit's (the expanded
    # quadratic form in c0, c1 would square the conditioning).
    with np.errstate(divide="ignore", invalid="ignore"):
        tbar = S[1] / S[0]
        V = S[2] / S[0] - tbar * tbar
        bad = ~(S[0] > 0) | ~(V > _DET_REL * S[2] / S[0])
    s0 = np.where(bad, 1.0, S[0])
    V = np.where(bad, 1.0, V)
    tbar = np.where(bad, 0.0, tbar)
    a = tbar / V
    fit = (T[0] - a * (T[1] - tbar * T[0])) / s0
    cond = 1.0 + tbar * a
    A = cond / s0
    norm = None
    if Q is not None:
        q1 = Q[1] - tbar * Q[0]
        q2 = Q[2] - 2.0 * tbar * Q[1] + tbar * tbar * Q[0]
        norm = (Q[0] - 2.0 * a * q1 + a * a * q2) / (s0 * s0)
    if rho_s is None:
        return fit, A, norm, bad, np.zeros_like(fit)
    # Relative errors rho in the normalised sums move V by ~3 rho, the fit
    # (in units of y's scale) by ~rho (1 + (1 + |tbar|)/sqrt(V) + 3 |tbar| / V^1.5)
    # and the leverage by ~3 rho / V. Undefined by the sums alone (S_2 at
    # round-off level, e.g. ties alone at z): let the direct sums decide.
    root = np.sqrt(V)
    est = rho_s * (1.0 + (1.0 + np.abs(tbar)) / root + 3.0 * np.abs(tbar) / (V * root) + 3.0 / V)
    est = np.where(bad, np.where(S[0] > 0, np.inf, rho_s), est)
    if Q is not None and rho_q is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = (1.0 + np.abs(a) * (1.0 + np.abs(tbar))) ** 2 * Q[0] / (norm * s0 * s0)
        est = np.maximum(est, np.where(bad, 0.0, rho_q * spread) + 2.0 * est)
    return fit, A, norm, bad, est


# ---------------------------------------------------------------- polynomials


def _coefficients(kern, squared):
    coef = np.asarray(kern.poly, dtype=np.float64)
    return np.polynomial.polynomial.polymul(coef, coef) if squared else coef


def _direct_fit(x, y, w, c, z, h, kern, degree, need_norm):
    """Fit, leverage factor, norm and undefined mask at ``z`` pair by pair over
    each window, as the direct path forms them (the fallback of :meth:`FastSmoother._fit`)."""
    reach = kern.tail_bound() * h  # exactly zero weight beyond (support, or float underflow)
    lo = np.searchsorted(x, z - reach, side="left")
    hi = np.searchsorted(x, z + reach, side="right")
    m = z.shape[0]
    fit, A, norm, bad = np.empty(m), np.empty(m), np.empty(m), np.empty(m, dtype=bool)
    sizes = hi - lo
    ends = np.cumsum(sizes)
    start = 0
    while start < m:
        # Blocks of about 4M pairs (at least one point).
        budget = (ends[start - 1] if start else 0) + (1 << 22)
        stop = max(start + 1, int(np.searchsorted(ends, budget, side="right")))
        cnt = sizes[start:stop]
        i = np.repeat(np.arange(stop - start), cnt)
        j = np.arange(i.shape[0]) - np.repeat(np.cumsum(cnt) - cnt, cnt) + lo[start:stop][i]
        t = (x[j] - z[start:stop][i]) / h
        wk = w[j] * kern(t)
        k = stop - start

        def total(v):
            return np.bincount(i, v, minlength=k)

        s0 = total(wk)
        if degree == 0:
            b = ~(s0 > 0)
            s0 = np.where(b, 1.0, s0)
            rows, a_ = wk / s0[i], 1.0 / s0
        else:
            wt = wk * t
            s1, s2 = total(wt), total(wt * t)
            det = s0 * s2 - s1 * s1
            b = ~(det > _DET_REL * s0 * s2)
            det = np.where(b, 1.0, det)
            rows = wk * (s2[i] - s1[i] * t) / det[i]
            a_ = s2 / det
        fit[start:stop], A[start:stop], bad[start:stop] = total(rows * y[j]), a_, b
        if need_norm:
            norm[start:stop] = total(rows * rows * (1.0 if c is None else c[j]))
        start = stop
    return fit, A, norm, bad


def _cell_width(max_power):
    """Cell width in bandwidths: the widest whose moment shift gains at most ``_SHIFT_GAIN``."""
    if max_power == 0:
        return _MAX_CELL
    return min(_MAX_CELL, _SHIFT_GAIN ** (1.0 / max_power) - 1.0)


def _take(a, idx):
    # mode="clip" skips numpy's bounds-checked copy (indices are in range by
    # construction): several times faster than the default on large arrays.
    return np.take(a, idx, mode="clip")


@dataclass
class _Cells:
    """The sorted data cut into cells of width ``beta h``, in bandwidth units."""

    starts: np.ndarray  # first point of each (non-empty) cell
    ends: np.ndarray  # one past its last point
    counts: np.ndarray
    rank: np.ndarray  # cell of each point (and a sentinel for index n)
    anchor: np.ndarray  # cell centres
    s: np.ndarray  # (x - anchor) / h per point

    @classmethod
    def build(cls, x, h, beta):
        n = x.shape[0]
        width = beta * h
        cid = np.floor((x - x[0]) / width)
        starts = np.flatnonzero(np.diff(cid)) + 1
        starts = np.concatenate(([0], starts))
        ends = np.append(starts[1:], n)
        counts = ends - starts
        rank = np.zeros(n + 1, dtype=np.intp)
        rank[starts[1:]] = 1
        np.cumsum(rank, out=rank)
        rank[n] = starts.shape[0] - 1  # never used for a non-empty piece
        anchor = x[0] + (cid[starts] + 0.5) * width
        s = x - _take(anchor, rank[:n])
        s /= h
        return cls(starts, ends, counts, rank, anchor, s)


def _buffer(pool, name, shape):
    """A reusable scratch array: across bandwidths the same (C, n) arrays are
    needed, and fresh ones of this size cost a page fault per 4 KB."""
    if pool is None:
        return np.empty(shape)
    buf = pool.get(name)
    if buf is None or buf.shape != shape:
        buf = pool[name] = np.empty(shape)
    return buf


def _centred_prefix(sets, cells, n_pows, pool=None):
    """Prefix sums of the cell-centred terms ``v s^k`` (``k < n_pow`` per set),
    stacked, and the cell means.

    The sum of terms over points ``[a, b)`` of one cell ``r`` is
    ``G[:, b] - G[:, a] + (b - a) * mean[:, r]``; the running sums restart
    (to round-off) at every cell boundary, so they never outgrow a cell and a
    difference of two of them loses nothing to cancellation.
    """
    n = cells.s.shape[0]
    terms = _buffer(pool, "terms", (sum(n_pows), n))
    row = 0
    for (v, _), k in zip(sets, n_pows):
        terms[row] = v
        for j in range(1, k):
            np.multiply(terms[row + j - 1], cells.s, out=terms[row + j])
        row += k
    mean = np.add.reduceat(terms, cells.starts, axis=1)
    mean /= cells.counts
    rank = cells.rank[:n]
    for row in range(terms.shape[0]):
        terms[row] -= _take(mean[row], rank)
    G = _buffer(pool, "prefix", (terms.shape[0], n + 1))
    G[:, 0] = 0.0
    for row in range(terms.shape[0]):
        np.cumsum(terms[row], out=G[row, 1:])
    return G, mean


@functools.lru_cache(maxsize=None)
def _pascal_diagonals(K):
    """``C(m + step, m)`` for ``m < K - step``, as column vectors, for each step."""
    return [np.array([math.comb(m + step, m) for m in range(K - step)], dtype=np.float64)[:, None]
            for step in range(1, K)]


def _shift_pascal(M, delta, n_pows):
    """Each set's moments about a cell centre moved to ``z`` (``delta`` = centre
    minus ``z``): ``mu_k = sum_m C(k, m) delta^(k-m) M_m``, one diagonal of the
    Pascal matrix per step (sets of equal size in one go)."""
    out = M.copy()
    if len(set(n_pows)) == 1:
        K = n_pows[0]
        blocks = [(M.reshape(len(n_pows), K, -1), out.reshape(len(n_pows), K, -1))]
    else:
        rows = np.cumsum([0, *n_pows])
        blocks = [(M[rows[i] : rows[i + 1]], out[rows[i] : rows[i + 1]]) for i in range(len(n_pows))]
    for src, dst in blocks:
        K = src.shape[-2]
        power = delta.copy()
        for step, coef in enumerate(_pascal_diagonals(K), start=1):
            dst[..., step:, :] += (coef * power) * src[..., : K - step, :]
            if step + 1 < K:
                power *= delta
    return out


class _PolyPass:
    """Everything one bandwidth needs to sum a polynomial kernel at many points."""

    def __init__(self, x, h, sets, n_pows, pool=None):
        self.h = h
        self.n_pows = n_pows
        self.beta = _cell_width(max(n_pows) - 1)
        self.cells = _Cells.build(x, h, self.beta)
        self.G, self.mean = _centred_prefix(sets, self.cells, n_pows, pool)

    def moments(self, a, b, z):
        """Stacked moments about ``z`` of the points ``[a, b)`` (all sets), and
        their round-off scale: the sum over pieces of the first set's piece
        mass times the shift's gain ``(beta/2 + |delta|)^K`` for that piece."""
        cells, G, mean = self.cells, self.G, self.mean
        C = G.shape[0]
        K = max(self.n_pows) - 1
        mu = np.zeros((C, z.shape[0]))
        scale = np.zeros(z.shape[0])
        idx = None  # None: every point (the first piece)
        live = a < b
        if not live.all():
            idx = np.flatnonzero(live)
            a, b, z = a[idx], b[idx], z[idx]
        while a.shape[0]:
            r = _take(cells.rank, a)
            e = np.minimum(b, _take(cells.ends, r))
            cnt = (e - a).astype(np.float64)
            if a.shape[0] <= _ROWWISE:
                # Few points: one fancy-indexing call for all moment rows.
                M = G[:, e] - G[:, a] + cnt * mean[:, r]
            else:
                # Many: row by row, where 1-D gathers stream fastest.
                M = np.empty((C, a.shape[0]))
                for row in range(C):
                    np.subtract(_take(G[row], e), _take(G[row], a), out=M[row])
                    M[row] += cnt * _take(mean[row], r)
            delta = _take(cells.anchor, r)
            delta -= z
            delta /= self.h
            gain = (np.abs(delta) + 0.5 * self.beta) ** K * np.abs(M[0])
            M = _shift_pascal(M, delta, self.n_pows)
            if idx is None:
                mu += M
                scale += gain
            else:
                mu[:, idx] += M
                scale[idx] += gain
            more = e < b
            if not more.any():
                break
            sub = np.flatnonzero(more)
            idx = sub if idx is None else idx[sub]
            a, b, z = e[sub], b[sub], z[sub]
        return mu, scale


def _window_edges(x, z, in_sample, h, odd, kern):
    """Index ranges ``[lo, hi)`` of the points each ``z`` gives a nonzero weight,
    and ``mid`` splitting ``x_j <= z`` from ``x_j > z`` (None for even kernels).

    Edges are the direct path's own: a point is in the window exactly when
    ``kern((x_j - z) / h)`` is nonzero in floating point. With data far from
    the origin ``(x_j - z)/h`` carries ``ulp(x)/h`` of rounding (``2e-9`` at
    ``x ~ 1e6``, ``h = 0.05``), so a point a hair outside the support would
    otherwise enter the sum with a tiny polynomial weight of either sign.
    """
    lo = _exact_edge(x, z, h, kern, np.searchsorted(x, z - h, side="left"), left=True)
    if in_sample:
        # The test is symmetric in (i, j) (fl(x_j - x_i) = -fl(x_i - x_j)),
        # so hi_i = #{j : lo_j <= i}: a count instead of a second search.
        hi = np.cumsum(np.bincount(lo, minlength=x.shape[0] + 1))[: x.shape[0]]
    else:
        hi = _exact_edge(x, z, h, kern, np.searchsorted(x, z + h, side="right"), left=False)
    mid = np.searchsorted(x, z, side="right") if odd else None
    return lo, mid, hi


def _edge_tol(x, z, h):
    """Distance from a window bound within which a point's side is re-tested:
    a few dozen ulps of the data's magnitude."""
    return 64 * np.finfo(float).eps * (max(abs(float(x[0])), abs(float(x[-1])), float(np.max(np.abs(z)))) + h)


def _exact_edge(x, z, h, kern, edge, left):
    """Move a window edge over whole tie groups until it separates the points
    with nonzero weight from the others.

    ``searchsorted`` against ``z -/+ h`` is already right unless a data point
    lies within a few ulps of that bound; only those points are re-tested,
    with the kernel itself (its value is what the direct path sums).
    """
    n = x.shape[0]
    if n == 0 or z.shape[0] == 0:
        return edge
    bound = z - h if left else z + h
    tol = _edge_tol(x, z, h)
    sel_all = np.flatnonzero((np.abs(_take(x, edge) - bound) <= tol)
                             | (np.abs(_take(x, np.maximum(edge - 1, 0)) - bound) <= tol))
    if sel_all.size == 0:
        return edge
    zs, e = z[sel_all], edge[sel_all]

    def weighs(j, sel):
        return kern((x[j] - zs[sel]) / h) != 0

    for _ in range(64):
        moved = False
        if left:  # x[e - 1] must weigh nothing, x[e] must weigh (unless right of z)
            sel = np.flatnonzero(e > 0)
            sel = sel[weighs(e[sel] - 1, sel)]
            e[sel] = np.searchsorted(x, x[e[sel] - 1], side="left")
            moved |= sel.size > 0
            sel = np.flatnonzero(e < n)
            sel = sel[~weighs(e[sel], sel) & (x[e[sel]] < zs[sel])]
            e[sel] = np.searchsorted(x, x[e[sel]], side="right")
            moved |= sel.size > 0
        else:  # x[e] must weigh nothing, x[e - 1] must weigh (unless left of z)
            sel = np.flatnonzero(e < n)
            sel = sel[weighs(e[sel], sel)]
            e[sel] = np.searchsorted(x, x[e[sel]], side="right")
            moved |= sel.size > 0
            sel = np.flatnonzero(e > 0)
            sel = sel[~weighs(e[sel] - 1, sel) & (x[e[sel] - 1] > zs[sel])]
            e[sel] = np.searchsorted(x, x[e[sel] - 1], side="left")
            moved |= sel.size > 0
        if not moved:
            edge[sel_all] = e
            return edge
    raise RuntimeError("internal error: window edges did not settle.")


def _poly_sums(x, z, in_sample, h, coef, sets, kern, pool=None):
    """Kernel sums for ``K(t) = sum_k coef_k |t|^k`` on ``|t| <= 1`` and their
    round-off scale per point (see :meth:`_PolyPass.moments`)."""
    D = coef.shape[0] - 1
    odd = bool(np.any(coef[1::2] != 0))
    n_pows = [D + n_p for _, n_p in sets]
    fp = _PolyPass(x, h, sets, n_pows, pool)
    lo, mid, hi = _window_edges(x, z, in_sample, h, odd, kern)
    # out_p = sum_k coef_k |t|^k t^p = sum_k coef_k sign^k mu_(k+p) per side.
    sides = [(-1.0, 0), (1.0, 1)] if odd else [(1.0, None)]
    terms = [[(k, float(c * sign**k)) for k, c in enumerate(coef) if c != 0.0] for sign, _ in sides]
    outs = [np.empty((n_p, z.shape[0])) for _, n_p in sets]
    mass = np.empty(z.shape[0])
    # Blocks of points whose (moments x points) arrays stay near 1 MB: larger
    # temporaries fall out of cache and come back from the allocator as fresh
    # pages (a page fault per 4 KB).
    chunk = max(1024, min(_CHUNK, (1 << 17) // sum(n_pows)))
    for start in range(0, z.shape[0], chunk):
        sl = slice(start, start + chunk)
        zc = z[sl]
        if odd:
            halves, mass[sl] = [], 0.0
            for a, b in ((lo[sl], mid[sl]), (mid[sl], hi[sl])):
                mu, scale = fp.moments(a, b, zc)
                halves.append(mu)
                mass[sl] += scale
        else:
            mu, mass[sl] = fp.moments(lo[sl], hi[sl], zc)
            halves = [mu]
        for s_i, mu in enumerate(halves):
            row = 0
            for out, (_, n_p), k in zip(outs, sets, n_pows):
                for p in range(n_p):
                    # Explicit sums, not a matrix product: few terms, and BLAS
                    # threads spin badly on a busy machine.
                    part = sum(c * mu[row + p + j] for j, c in terms[s_i])
                    if s_i == 0:
                        out[p, sl] = part
                    else:
                        out[p, sl] += part
                row += k
    return outs, mass


# ---------------------------------------------------------------- exponential


def _transport(mom, gap, rate):
    """Moments about an earlier point moved to a point ``gap`` bandwidths later,
    with the kernel's decay ``exp(-rate gap)``; ``mom`` has shape (P, ...)."""
    gap = np.minimum(gap, _EXP_CUTOFF / rate)  # exp underflows to 0 well before
    decay = np.exp(-rate * gap)
    out = np.empty_like(mom)
    P = mom.shape[0]
    # (x_j - x_new) = (x_j - x_old) - gap: binomial expansion with -gap.
    for p in range(P):
        acc = mom[p].copy()
        g = 1.0
        for m in range(p - 1, -1, -1):
            g = g * -gap
            acc += math.comb(p, m) * g * mom[m]
        out[p] = decay * acc
    return out


def _left_sums(x, V, h, rate):
    """``L[p, s, i] = sum_{j<=i} V[s, j] exp(-rate (x_i - x_j)/h) ((x_j - x_i)/h)^p`` for sorted ``x``.

    Sequential inside blocks of ``_EXP_BLOCK`` points (vectorised across
    blocks), then block totals carried across by a doubling scan.
    """
    S, N = V.shape
    P = 3
    B = max(1, min(_EXP_BLOCK, int(math.isqrt(max(N, 1)))))
    NB = -(-N // B)
    pad = NB * B - N
    # Gaps are differences of x divided by h, never differences of x / h:
    # with x ~ 1e6 offsets the latter would lose half the digits.
    X = np.concatenate([x, np.full(pad, x[-1])]).reshape(NB, B)
    Vp = np.concatenate([V, np.zeros((S, pad))], axis=1)
    L = np.zeros((P, S, NB, B))
    L[0, :, :, 0] = Vp.reshape(S, NB, B)[:, :, 0]
    Vb = Vp.reshape(S, NB, B)
    for k in range(1, B):
        L[:, :, :, k] = _transport(L[:, :, :, k - 1], (X[:, k] - X[:, k - 1]) / h, rate)
        L[0, :, :, k] += Vb[:, :, k]
    # Inclusive scan of block totals (frame: each block's last point).
    carry = L[:, :, :, -1].copy()
    ends = X[:, -1]
    d = 1
    while d < NB:
        gap = (ends[d:] - ends[:-d]) / h
        if rate * float(gap.min()) >= _EXP_CUTOFF:
            break  # every farther block is beyond underflow too
        carry[:, :, d:] += _transport(carry[:, :, :-d], gap, rate)
        d *= 2
    if NB > 1:
        prev = carry[:, :, :-1]
        gaps = (X[1:, :] - ends[:-1, None]) / h
        L[:, :, 1:, :] += _transport(prev[..., None] * np.ones(B), gaps, rate)
    return L.reshape(P, S, NB * B)[:, :, :N]


def _exp_sums(x, z, in_sample, h, rate, sets):
    """Sums for ``exp(-rate |t|)`` by left and right recursions."""
    V = np.stack([v for v, _ in sets])
    if in_sample:
        pts, vals, take = x, V, slice(None)
    else:
        pts = np.concatenate([x, z])
        order = np.argsort(pts, kind="stable")
        pts = pts[order]
        vals = np.concatenate([V, np.zeros((V.shape[0], z.shape[0]))], axis=1)[:, order]
        take = np.flatnonzero(order >= x.shape[0])
    left = _left_sums(pts, vals, h, rate)
    right = _left_sums(-pts[::-1], vals[:, ::-1], h, rate)[:, :, ::-1]
    sign = np.array([1.0, -1.0, 1.0])[:, None, None]  # t -> -t on the mirrored side
    total = left + sign * right
    total[0] -= vals  # the point itself was counted on both sides
    total = total[:, :, take]
    return [total[:n_p, s] for s, (_, n_p) in enumerate(sets)]
