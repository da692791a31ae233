"""Compiled inner loop of the exact fast sums (optional: needs numba).

:mod:`kernelvalue.fastsum` sums polynomial kernels with numpy passes over
``(moments x n)`` arrays: a cross-validation criterion at ``n = 1e6`` costs
some forty such passes and a binary search per point. Here the same algorithm
-- cells of width ``beta h``, cell-centred prefix sums, each window piece's
moments moved to ``z`` by the binomial formula, the same round-off estimate
and fallback test -- runs point by point in one compiled loop over the sorted
data, in blocks of points: the block's window edges by two pointers (no
search), the prefix sums filled just ahead of the windows that read them (in
a ring that stays in cache), then each point's sums, fit, leverage and
criterion terms.

The loop is compiled once per kernel polynomial and degree, with the moment
counts and the kernel's coefficients as constants (numba unrolls the small
loops over moments: about 2.5x faster than with run-time counts) and cached
on disk, so each specialisation costs a few seconds once per environment.

Only the in-sample criteria of :meth:`FastSmoother.criteria` (what a
bandwidth search calls dozens of times) are compiled. Two kinds of points are
handed back to the numpy code of :mod:`kernelvalue.fastsum`, which remains the
reference (tested to agree with this module): points with a data point within
a few ulps of a window edge (the edge is settled there with the kernel
itself), and points whose estimated round-off calls for pairwise sums.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

# Points per block: window edges first, then the prefix sums they need, then
# the points (local arrays of this size stay in L1). Also the smallest ring.
BLOCK = 256


@functools.lru_cache(maxsize=None)
def criteria_loop(coef, degree):
    """The compiled criteria loop for ``K(t) = sum_k coef[k] |t|^k`` (a tuple)
    and local polynomial ``degree``.

    The returned function takes ``(xp, y, w, weighted, keep, h, beta, k0,
    eps, tol, det_rel, edge_tol, G)``, where ``xp`` holds the sorted data
    after one ``-inf`` and before three ``+inf`` (``x[j] = xp[j + 1]``) and
    ``G`` is scratch of shape ``(2^k, C)`` for the ``C`` moment rows, and
    returns ``(sum w r^2, sum w r^2 / (1 - S_ii)^2, sum S_ii, n undefined,
    n with S_ii >= 1, points near a window edge, points to sum pair by
    pair, the scratch)`` over the points with ``keep``, the last two kinds
    left out of the sums; the scratch comes back grown where the windows
    needed more (keep it for the next bandwidth: fresh pages cost a fault
    each).
    """
    if degree not in (0, 1):
        raise ValueError(f"the compiled loop fits degree 0 or 1, got {degree!r}")
    n_mom, n_t = 2 * degree + 1, degree + 1
    KS = len(coef) - 1 + n_mom  # moments of the weights
    KT = len(coef) - 1 + n_t  # moments of the weighted responses
    C = KS + KT
    K = KS - 1  # the highest power: the shift's round-off gain goes with it
    # The kernel's nonzero terms coef_k |t|^k, with the sign of t^k left of z.
    POW = tuple(k for k, c in enumerate(coef) if c != 0.0)
    RIGHT = tuple(float(coef[k]) for k in POW)
    LEFT = tuple(float(coef[k]) * (-1.0) ** k for k in POW)
    NP = len(POW)
    ODD = any(k % 2 for k in POW)
    SIDES = 2 if ODD else 1
    ABSCOEF = math.fsum(abs(c) for c in coef)
    LL = degree == 1

    @njit(cache=True, error_model="numpy")
    def loop(xp, y, w, weighted, keep, h, beta, k0, eps, tol, det_rel, edge_tol, G):
        n = xp.shape[0] - 4
        x = xp[1 : n + 1]

        # Cells of width beta h: ids floor((x - x0) / width), anchors at their centres.
        width = beta * h
        inv_h = 1.0 / h
        cap = int(min(n, np.floor((x[n - 1] - x[0]) / width) + 1))  # cells at most
        ends = np.empty(cap, np.intp)
        anchor = np.empty(cap)
        r = 0
        prev = 0.0
        anchor[0] = x[0] + 0.5 * width
        for j in range(1, n):
            cid = np.floor((x[j] - x[0]) / width)
            if cid != prev:
                ends[r] = j
                r += 1
                anchor[r] = x[0] + (cid + 0.5) * width
                prev = cid
        ends[r] = n
        ncell = r + 1
        mean = np.empty((ncell, C))
        # Prefix sums in a ring of R positions (a power of two), grown to
        # twice what a block reads (from its first window start to its last
        # window end) but no further than the data: it stays in cache where
        # the windows are narrow.
        R = BLOCK
        mask = R - 1
        full = 1
        while full < n + 1:
            full *= 2
        for q in range(C):
            G[0, q] = 0.0

        t = np.empty(C)
        M = np.empty(C)
        S = np.empty(n_mom)
        T = np.empty(n_t)
        LO = np.empty(BLOCK, np.intp)
        MID = np.empty(BLOCK, np.intp)
        HI = np.empty(BLOCK, np.intp)
        near = np.empty(n, np.intp)
        redo = np.empty(n, np.intp)
        n_near = n_redo = n_bad = n_ge1 = 0
        tot_r2 = tot_loo = tot_tr = 0.0
        lo = hi = mid = 0
        r_lo = r_mid = 0
        filled = 0  # prefix sums known at positions <= filled
        r_fill = -1  # cell of position filled (its mean is known)
        half = 0.5 * beta
        for i0 in range(0, n, BLOCK):
            i1 = min(i0 + BLOCK, n)
            # Window edges: lo = first x >= z - h, hi = first x > z + h, mid
            # = first x > z. They move by about one point per point: the
            # next three candidates are tested at once (x is sorted, so the
            # tests that hold are a prefix; the sentinels stop them), a loop
            # takes the rare longer jumps.
            for i in range(i0, i1):
                z = x[i]
                b = z - h
                lo += np.intp(xp[lo + 1] < b) + np.intp(xp[lo + 2] < b) + np.intp(xp[lo + 3] < b)
                while xp[lo + 1] < b:
                    lo += 1
                top = z + h
                hi += np.intp(xp[hi + 1] <= top) + np.intp(xp[hi + 2] <= top) + np.intp(xp[hi + 3] <= top)
                while xp[hi + 1] <= top:
                    hi += 1
                if ODD:
                    if mid <= i:
                        mid = i + 1
                    while xp[mid + 1] <= z:
                        mid += 1
                LO[i - i0], HI[i - i0], MID[i - i0] = lo, hi, mid
            if hi - LO[0] >= R:
                R2 = R
                while R2 <= 2 * (hi - LO[0]) and R2 < full:
                    R2 *= 2
                G2 = G if G.shape[0] >= R2 else np.empty((R2, C))
                # In place too: a new slot below R is the position's own old slot.
                for j in range(LO[0], filled + 1):
                    for q in range(C):
                        G2[j & (R2 - 1), q] = G[j & mask, q]
                G, R, mask = G2, R2, R2 - 1
            # Centred prefix sums of the terms v s^k, v y s^k up to the
            # block's last window end; a cell's mean is taken when the fill
            # first enters the cell.
            while filled < hi:
                if r_fill < 0 or filled == ends[r_fill]:
                    r_fill += 1
                    for q in range(C):
                        t[q] = 0.0
                    for j in range(filled, ends[r_fill]):
                        s = (x[j] - anchor[r_fill]) * inv_h
                        p = w[j]
                        for k in range(KS):
                            t[k] += p
                            p *= s
                        p = w[j] * y[j]
                        for k in range(KT):
                            t[KS + k] += p
                            p *= s
                    cnt = ends[r_fill] - filled
                    for q in range(C):
                        mean[r_fill, q] = t[q] / cnt
                stop = min(hi, ends[r_fill])
                for j in range(filled, stop):
                    s = (x[j] - anchor[r_fill]) * inv_h
                    j0, j1 = j & mask, (j + 1) & mask
                    p = w[j]
                    for k in range(KS):
                        G[j1, k] = G[j0, k] + (p - mean[r_fill, k])
                        p *= s
                    p = w[j] * y[j]
                    for k in range(KT):
                        G[j1, KS + k] = G[j0, KS + k] + (p - mean[r_fill, KS + k])
                        p *= s
                filled = stop
            blk_r2 = blk_loo = blk_tr = 0.0
            for i in range(i0, i1):
                lo_i, hi_i, mid_i = LO[i - i0], HI[i - i0], MID[i - i0]
                while ends[r_lo] <= lo_i:
                    r_lo += 1
                if ODD:
                    while r_mid < ncell - 1 and ends[r_mid] <= mid_i:
                        r_mid += 1
                if not keep[i]:
                    continue
                z = x[i]
                b = z - h
                top = z + h
                if (abs(xp[lo_i + 1] - b) <= edge_tol or abs(xp[lo_i] - b) <= edge_tol
                        or abs(xp[hi_i + 1] - top) <= edge_tol or abs(xp[hi_i] - top) <= edge_tol):
                    near[n_near] = i
                    n_near += 1
                    continue
                for p in range(n_mom):
                    S[p] = 0.0
                for p in range(n_t):
                    T[p] = 0.0
                scale = 0.0
                for side in range(SIDES):
                    if ODD and side == 0:
                        a, e_end, r = lo_i, mid_i, r_lo
                    elif ODD:
                        a, e_end, r = mid_i, hi_i, r_mid
                    else:
                        a, e_end, r = lo_i, hi_i, r_lo
                    while a < e_end:
                        e = min(e_end, ends[r])
                        cnt = e - a
                        for q in range(C):
                            M[q] = G[e & mask, q] - G[a & mask, q] + cnt * mean[r, q]
                        d = (anchor[r] - z) * inv_h
                        gain = abs(M[0])
                        base = abs(d) + half
                        for _ in range(K):
                            gain *= base
                        scale += gain
                        # mu_k = sum_m C(k, m) d^(k-m) M_m by Horner passes:
                        # the updates within a pass are independent (the
                        # binomial sums are one dependent chain per moment),
                        # with the same round-off gain (1 + |d|)^k.
                        for jj in range(1, KS):
                            for k in range(KS - 1, jj - 1, -1):
                                M[k] += d * M[k - 1]
                        for jj in range(1, KT):
                            for k in range(KT - 1, jj - 1, -1):
                                M[KS + k] += d * M[KS + k - 1]
                        # sum_k coef_k |t|^k t^p = sum_k coef_k sign^k mu_(k+p)
                        # on this side of z.
                        for p in range(n_mom):
                            part = 0.0
                            for q in range(NP):
                                part += (LEFT[q] if ODD and side == 0 else RIGHT[q]) * M[p + POW[q]]
                            S[p] += part
                        for p in range(n_t):
                            part = 0.0
                            for q in range(NP):
                                part += (LEFT[q] if ODD and side == 0 else RIGHT[q]) * M[KS + p + POW[q]]
                            T[p] += part
                        a = e
                        r += 1
                # Relative round-off of the sums, then fit, leverage factor
                # and the estimate of the fit's round-off (fastsum._sums,
                # fastsum._combine).
                inv0 = 1.0 / S[0]
                if S[0] > 0:
                    rho = eps * ABSCOEF * scale * inv0
                elif scale > 0:
                    rho = np.inf
                else:
                    rho = 0.0
                if not LL:
                    bad = not (S[0] > 0)
                    fit = T[0] * inv0
                    A = inv0
                    est = rho
                else:
                    tbar = S[1] * inv0
                    V = S[2] * inv0 - tbar * tbar
                    bad = not (S[0] > 0) or not (V > det_rel * S[2] * inv0)
                    if bad:
                        fit = A = 0.0
                        est = np.inf if S[0] > 0 else rho
                    else:
                        inv_v = 1.0 / V
                        al = tbar * inv_v
                        fit = (T[0] - al * (T[1] - tbar * T[0])) * inv0
                        A = (1.0 + tbar * al) * inv0
                        inv_root = np.sqrt(inv_v)
                        est = rho * (1.0 + (1.0 + abs(tbar)) * inv_root + 3.0 * abs(tbar) * inv_v * inv_root
                                     + 3.0 * inv_v)
                if est > tol:
                    redo[n_redo] = i
                    n_redo += 1
                    continue
                if bad:
                    n_bad += 1
                    continue
                diag = k0 * A * w[i]
                res = y[i] - fit
                wr2 = res * res
                if weighted:
                    wr2 *= w[i]
                blk_tr += diag
                blk_r2 += wr2
                if diag < 1.0:
                    one_minus = 1.0 - diag
                    blk_loo += wr2 / (one_minus * one_minus)
                else:
                    n_ge1 += 1
            # Block partial sums: round-off near that of numpy's pairwise sums.
            tot_r2 += blk_r2
            tot_loo += blk_loo
            tot_tr += blk_tr
        return tot_r2, tot_loo, tot_tr, n_bad, n_ge1, near[:n_near], redo[:n_redo], G

    return loop
