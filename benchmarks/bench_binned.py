"""Benchmark: binned 1-D fit + cross-validated bandwidth at n = 10^6.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_binned.py [--quick]``

1. n = 10^6 points, 1-D: wall time of linear binning + leave-one-out CV
   bandwidth selection (``select_bandwidth(..., binned=True)``: the data are
   binned once, then each bandwidth is scored by
   :func:`kernelvalue.binned.binned_criteria` in O(M log M)) + the final
   binned fit at the data. Target: < 2 s (2-core machine).
2. n = 5000 (same design, new draw): the exact LOO path (fast sums; the
   compiled loop where numba is installed, loaded before the timings) versus
   the binned one: selected bandwidths, their ratio, times.
3. Binned fixed-bandwidth fit at n = 10^6 (Gaussian, h = 0.02, fit reported
   on 401 grid points) beside R KernSmooth ``locpoly`` in the same run (R
   times itself; skipped with a message without R): ours at the default grid
   (4097 points) and at R's 401. Target: within 2x of ``locpoly``.

``--quick`` uses n = 10^5 and n = 1500 for a smoke run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _peers import kernsmooth_missing, load_average, run_kernsmooth
from kernelvalue import fastsum
from kernelvalue.bandwidth import select_bandwidth
from kernelvalue.binned import binned_smooth


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, n)
    y = np.sin(2 * np.pi * x) + 0.5 * x + 0.3 * rng.normal(size=n)
    return x, y


def select(x, y, degree, binned):
    """The leave-one-out bandwidth (Epanechnikov kernel) and the seconds it took."""
    t0 = time.perf_counter()
    h = float(select_bandwidth(x[:, None], y, "loo", degree=degree, binned=binned).bandwidth)
    return h, time.perf_counter() - t0


def bench_large(n, degree):
    x, y = make_data(n)
    h, select_s = select(x, y, degree, binned=True)
    t0 = time.perf_counter()
    fit = binned_smooth(x, y, x, h, degree=degree)
    fit_s = time.perf_counter() - t0
    rmse = float(np.sqrt(np.mean((fit - (np.sin(2 * np.pi * x) + 0.5 * x)) ** 2)))
    print(f"degree={degree}: h={h:.5f}  select {select_s:.2f} s + fit {fit_s:.2f} s = {select_s + fit_s:.2f} s  "
          f"(RMSE vs true m: {rmse:.4f})")


def bench_exact_vs_binned(n, degree):
    x, y = make_data(n, seed=1)
    fastsum.FastSmoother(x, y, "epanechnikov").criteria(0.1, degree)  # load the compiled loop, if any
    h_exact, exact_s = select(x, y, degree, binned=False)
    h_binned, binned_s = select(x, y, degree, binned=True)
    print(f"degree={degree}: exact h={h_exact:.5f} in {exact_s:.3f} s; binned h={h_binned:.5f} "
          f"(ratio {h_binned / h_exact:.4f}) in {binned_s:.3f} s, exact/binned time {exact_s / binned_s:.1f}")


def bench_fixed_h_fit(n, repeats=5):
    x, y = make_data(n)
    grid = np.linspace(x.min(), x.max(), 401)
    missing = kernsmooth_missing()
    if missing:
        print(missing)
    print(f"{'degree':>6s} {'method':34s} {'time [s]':>9s} {'ours/R':>7s} {'load':>5s}")
    for degree in (0, 1):
        rows = []
        for name, gs in (("kernelvalue binned_smooth, M=4097", None), ("kernelvalue binned_smooth, M=401", 401)):
            best = np.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                binned_smooth(x, y, grid, 0.02, kernel="gaussian", degree=degree, grid_size=gs)
                best = min(best, time.perf_counter() - t0)
            rows.append((name, best))
        t_r = None
        if not missing:
            _, t_r = run_kernsmooth(x, y, f"locpoly(x, y, degree = {degree}, bandwidth = 0.02)", repeats=3, inner=5)
            rows.append(("R KernSmooth locpoly (M=401)", t_r))
        for name, t in rows:
            ratio = f"{t / t_r:7.2f}" if t_r else "      -"
            print(f"{degree:6d} {name:34s} {t:9.4f} {ratio} {load_average():>5s}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args()
    n_large, n_small = (10**5, 1500) if args.quick else (10**6, 5000)

    print(f"== binned fit + LOO-CV bandwidth, n = {n_large:,} (target < 2 s) ==")
    for degree in (0, 1):
        bench_large(n_large, degree)
    print(f"\n== exact vs binned LOO bandwidth, n = {n_small:,} (Epanechnikov) ==")
    for degree in (0, 1):
        bench_exact_vs_binned(n_small, degree)
    print(f"\n== binned fixed-h fit, n = {n_large:,}, Gaussian h = 0.02 (target: within 2x of locpoly) ==")
    bench_fixed_h_fit(n_large)


if __name__ == "__main__":
    main()
