"""Benchmark: exact LOO-CV bandwidth by fast sums (no binning), n = 1e5 and 1e6.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_fastsum.py [--sizes 100000 1000000] [--engines compiled numpy]``

``select_bandwidth(x, y, "loo", kernel=K, degree=d, binned=False)`` on a
uniform design: with a polynomial kernel the exact criteria come from the fast
sums of :mod:`kernelvalue.fastsum` (sort once, then ``O(n)`` per bandwidth;
the pairwise path needs ``O(n * window)``, minutes at n = 1e6), either by the
compiled loop (numba installed: ``kernelvalue[fast]``) or by numpy passes.
Printed per (engine, n, kernel, degree): the selected h, the number of
criterion evaluations (30-point grid plus the bounded refinement), seconds in
all and per evaluation, the binned LOO bandwidth for reference, and the load
average. The compiled loops are loaded (or, the first time ever, compiled)
before the timings; that one-off cost per process is printed on its own.
Target (issue 10): <= 3 s at n = 1e6 for NW and LL with a polynomial kernel.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _peers import load_average
from kernelvalue import bandwidth as bw
from kernelvalue import fastsum
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


def warm_up(kernels):
    """Load the compiled loops of every (kernel, degree) outside the timings; the seconds it took."""
    x, y = make_data(2000, seed=1)
    t0 = time.perf_counter()
    for kernel in kernels:
        smoother = fastsum.FastSmoother(x, y, kernel)
        for degree in (0, 1):
            smoother.criteria(0.1, degree)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--kernels", nargs="+", default=["epanechnikov", "tricube"])
    ap.add_argument("--engines", nargs="+", default=["compiled", "numpy"], choices=["compiled", "numpy"])
    args = ap.parse_args()
    engines = args.engines
    if "compiled" in engines and fastsum._jit() is None:
        print("numba is not installed (pip install kernelvalue[fast]): compiled rows skipped")
        engines = [e for e in engines if e != "compiled"]
    if "compiled" in engines:
        print(f"compiled loops loaded (compiled on first use) in {warm_up(args.kernels):.2f} s, once per process")
    print("exact LOO-CV bandwidth (fast sums, binned=False), uniform design")
    print(f"{'engine':>8s} {'n':>9s} {'kernel':13s} {'deg':>3s} {'h exact':>10s} {'h binned':>10s} {'evals':>5s} "
          f"{'time [s]':>9s} {'ms/eval':>8s} {'load':>5s}")
    saved = fastsum.USE_JIT
    try:
        for engine in engines:
            fastsum.USE_JIT = engine == "compiled"
            for n in args.sizes:
                x, y = make_data(n)
                for kernel in args.kernels:
                    for degree in (0, 1):
                        with _Counting() as count:
                            t0 = time.perf_counter()
                            res = select_bandwidth(x, y, "loo", kernel=kernel, degree=degree)
                            elapsed = time.perf_counter() - t0
                        assert res.algorithm == "fastsum"
                        ref = select_bandwidth(x, y, "loo", kernel=kernel, degree=degree, binned=True)
                        print(f"{engine:>8s} {n:9d} {kernel:13s} {degree:3d} {res.bandwidth:10.6f} "
                              f"{ref.bandwidth:10.6f} {count.n:5d} {elapsed:9.2f} {1e3 * elapsed / count.n:8.1f} "
                              f"{load_average():>5s}")
    finally:
        fastsum.USE_JIT = saved
    print("target: <= 3 s at n = 1e6 (polynomial kernel, NW and LL)")


if __name__ == "__main__":
    main()
