"""Benchmark: cost of the checked checkpoint format against a plain ``torch.save`` / ``torch.load``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_checkpoint.py [--mb 200]``

A trainer-like state (float32 weights, two AdamW moments of the same size, numpy RNG state) of about
``--mb`` MB of weights is written and read both ways in the same process and folder. The checked format adds
a SHA-256 over the payload on both sides, an fsync of the file and its folder on write, and
``weights_only`` unpickling on read. Prints median seconds and the ratio checked / plain.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reproduce.checkpoint import read_checkpoint, write_checkpoint


def state(mb: int) -> dict:
    n = mb * (1 << 20) // 4 // 8
    weights = {f"layer{i}.weight": torch.randn(n) for i in range(8)}
    moments = {i: {"exp_avg": torch.randn(n), "exp_avg_sq": torch.rand(n), "step": torch.tensor(3.0)} for i in range(8)}
    return {"model": weights, "optimizer": {"state": moments}, "rng": np.random.get_state(), "step": 3}


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=200, help="MB of weights (the state is ~3x that)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    obj = state(args.mb)
    with tempfile.TemporaryDirectory() as tmp:
        plain, checked = Path(tmp) / "plain.pt", Path(tmp) / "checked.pt"
        w_plain = median_seconds(lambda: torch.save(obj, plain), args.repeats)
        w_checked = median_seconds(lambda: write_checkpoint(obj, checked), args.repeats)
        r_plain = median_seconds(lambda: torch.load(plain, weights_only=False), args.repeats)
        r_checked = median_seconds(lambda: read_checkpoint(checked), args.repeats)
        size = checked.stat().st_size / 1e6
    print(f"state of {size:.0f} MB, median of {args.repeats}")
    print(f"write: plain {w_plain:.3f} s, checked {w_checked:.3f} s, ratio {w_checked / w_plain:.2f}")
    print(f"read:  plain {r_plain:.3f} s, checked {r_checked:.3f} s, ratio {r_checked / r_plain:.2f}")


if __name__ == "__main__":
    main()
