"""Benchmark: binned 1-D fit + cross-validated bandwidth at n = 10^6.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_binned.py [--quick]``

1. n = 10^6 points, 1-D: wall time of linear binning + leave-one-out CV
   bandwidth selection + the final binned fit at the data. Target: < 2 s
   (2-core machine). Two selectors:
   a. ``select_bandwidth(..., binned=True)`` from :mod:`kernelvalue.bandwidth`
      (when it exists): per-observation ``binned_smoother_stats`` arrays,
      O(n) per bandwidth;
   b. this module's ``cv_binned``: a 40-point log grid scored by
      :func:`kernelvalue.binned.binned_criteria` (O(M log M) per bandwidth)
      then a bounded Brent refinement in log h.
2. n = 5000 (same design, new draw): the exact O(n^2) LOO path versus both
   binned selectors: selected bandwidths, their ratios, times.

``--quick`` uses n = 10^5 and n = 1500 for a smoke run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scipy.optimize import minimize_scalar

from kernelvalue.binned import binned_criteria, binned_smooth, binned_smoother_stats, linear_binning
from kernelvalue.smoothing import smoother_stats

try:  # the bandwidth module is another component; fall back to a plain grid search
    from kernelvalue.bandwidth import select_bandwidth
except ImportError:  # pragma: no cover - depends on the checkout
    select_bandwidth = None


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, n)
    y = np.sin(2 * np.pi * x) + 0.5 * x + 0.3 * rng.normal(size=n)
    return x, y


def loo(st, y):
    if st.n_undefined:
        return np.inf
    r = (y - st.fitted) / (1.0 - st.diag)
    return float(np.mean(r * r))


def grid_search(stats_fn, y, grid):
    scores = np.array([loo(stats_fn(h), y) for h in grid])
    return float(grid[int(np.argmin(scores))]), len(grid)


def select(x, y, degree, binned):
    """Selected LOO bandwidth and the number of criterion evaluations."""
    if select_bandwidth is not None:
        res = select_bandwidth(x[:, None], y, "loo", degree=degree, binned=binned)
        return float(res.bandwidth), "kernelvalue.bandwidth.select_bandwidth"
    grid = np.geomspace(2e-3, 0.5, 40)
    if binned:
        data = linear_binning(x, y)
        h, _ = grid_search(lambda h: binned_smoother_stats(data, None, h, degree=degree), y, grid)
    else:
        h, _ = grid_search(lambda h: smoother_stats(x, y, h, degree=degree), y, grid)
    return h, "own 40-point log grid (kernelvalue.bandwidth not found)"


def cv_binned(x, y, degree, n_grid=40):
    """LOO bandwidth from binned_criteria: log grid from 4 grid spacings to the
    range, then bounded Brent in log h around the best grid point."""
    data = linear_binning(x, y)
    grid = np.geomspace(4 * data.delta, np.ptp(x), n_grid)

    def score(log_h):
        s = binned_criteria(data, float(np.exp(log_h)), degree=degree).loo
        return s if np.isfinite(s) else 1e300

    scores = np.array([score(np.log(h)) for h in grid])
    k = int(np.argmin(scores))
    lo, hi = np.log(grid[max(k - 1, 0)]), np.log(grid[min(k + 1, n_grid - 1)])
    res = minimize_scalar(score, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(res.x)) if res.fun < scores[k] else float(grid[k])


def bench_large(n, degree, selector):
    x, y = make_data(n)
    t0 = time.perf_counter()
    if selector == "criteria":
        h, how = cv_binned(x, y, degree), "binned_criteria grid + Brent"
    else:
        h, how = select(x, y, degree, binned=True)
    t1 = time.perf_counter()
    fit = binned_smooth(x, y, x, h, degree=degree)
    t2 = time.perf_counter()
    rmse = float(np.sqrt(np.mean((fit - (np.sin(2 * np.pi * x) + 0.5 * x)) ** 2)))
    return {"n": n, "degree": degree, "h": h, "select_s": t1 - t0, "fit_s": t2 - t1, "total_s": t2 - t0,
            "rmse_vs_truth": rmse, "how": how}


def bench_exact_vs_binned(n, degree):
    x, y = make_data(n, seed=1)
    t0 = time.perf_counter()
    h_exact, how = select(x, y, degree, binned=False)
    t1 = time.perf_counter()
    h_binned, _ = select(x, y, degree, binned=True)
    t2 = time.perf_counter()
    h_crit = cv_binned(x, y, degree)
    t3 = time.perf_counter()
    return {"n": n, "degree": degree, "h_exact": h_exact, "h_binned": h_binned, "h_crit": h_crit,
            "exact_s": t1 - t0, "binned_s": t2 - t1, "crit_s": t3 - t2, "how": how}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args()
    n_large, n_small = (10**5, 1500) if args.quick else (10**6, 5000)

    print(f"== binned fit + LOO-CV bandwidth, n = {n_large:,} (target < 2 s) ==")
    selectors = ["criteria"] + (["select_bandwidth"] if select_bandwidth is not None else [])
    for selector in selectors:
        for degree in (0, 1):
            r = bench_large(n_large, degree, selector)
            print(f"degree={degree}: h={r['h']:.5f}  select {r['select_s']:.2f} s + fit {r['fit_s']:.2f} s "
                  f"= {r['total_s']:.2f} s  (RMSE vs true m: {r['rmse_vs_truth']:.4f}; via {r['how']})")

    print(f"\n== exact vs binned LOO bandwidth, n = {n_small:,} (Epanechnikov, NW) ==")
    r = bench_exact_vs_binned(n_small, 0)
    print(f"exact ({r['how']}): h={r['h_exact']:.5f} in {r['exact_s']:.1f} s")
    print(f"binned, same selector: h={r['h_binned']:.5f} (ratio {r['h_binned'] / r['h_exact']:.4f}) in "
          f"{r['binned_s']:.2f} s, speed-up {r['exact_s'] / r['binned_s']:.0f}x")
    print(f"binned_criteria grid + Brent: h={r['h_crit']:.5f} (ratio {r['h_crit'] / r['h_exact']:.4f}) in "
          f"{r['crit_s']:.2f} s")


if __name__ == "__main__":
    main()
