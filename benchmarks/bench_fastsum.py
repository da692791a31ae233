"""Benchmark: exact LOO-CV bandwidth by fast sums (no binning), n = 1e5 and 1e6.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_fastsum.py [--sizes 100000 1000000]``

``select_bandwidth(x, y, "loo", kernel=K, degree=d, binned=False)`` on a
uniform design: with a polynomial kernel the exact criteria come from the fast
sums of :mod:`kernelvalue.fastsum` (sort once, then ``O(n)`` per bandwidth;
the pairwise path needs ``O(n * window)``, minutes at n = 1e6). Printed per
(n, kernel, degree): the selected h, the number of criterion evaluations
(30-point grid plus the bounded refinement), seconds in all and per
evaluation, the binned LOO bandwidth for reference, and the load average.
Target (issue 10): <= 3 s at n = 1e6 for NW and LL with a polynomial kernel.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _peers import load_average
from kernelvalue import bandwidth as bw
from kernelvalue.bandwidth import select_bandwidth


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, n)
    y = np.sin(2 * np.pi * x) + 0.5 * x + 0.3 * rng.normal(size=n)
    return x, y


class _Counting:
    """Counts criterion evaluations (each one a full O(n) pass)."""

    def __enter__(self):
        self.n, self._fit = 0, bw._Evaluator.fit

        def fit(ev, h):
            self.n += 1
            return self._fit(ev, h)

        bw._Evaluator.fit = fit
        return self

    def __exit__(self, *exc):
        bw._Evaluator.fit = self._fit


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--kernels", nargs="+", default=["epanechnikov", "tricube"])
    args = ap.parse_args()
    print("exact LOO-CV bandwidth (fast sums, binned=False), uniform design")
    print(f"{'n':>9s} {'kernel':13s} {'deg':>3s} {'h exact':>10s} {'h binned':>10s} {'evals':>5s} "
          f"{'time [s]':>9s} {'ms/eval':>8s} {'algorithm':>9s} {'load':>5s}")
    for n in args.sizes:
        x, y = make_data(n)
        for kernel in args.kernels:
            for degree in (0, 1):
                with _Counting() as count:
                    t0 = time.perf_counter()
                    res = select_bandwidth(x, y, "loo", kernel=kernel, degree=degree)
                    elapsed = time.perf_counter() - t0
                ref = select_bandwidth(x, y, "loo", kernel=kernel, degree=degree, binned=True)
                print(f"{n:9d} {kernel:13s} {degree:3d} {res.bandwidth:10.6f} {ref.bandwidth:10.6f} {count.n:5d} "
                      f"{elapsed:9.2f} {1e3 * elapsed / count.n:8.1f} {res.algorithm:>9s} {load_average():>5s}")
    print("target: <= 3 s at n = 1e6 (polynomial kernel, NW and LL)")


if __name__ == "__main__":
    main()
