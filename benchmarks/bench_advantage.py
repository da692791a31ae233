"""Benchmark: advantage computation (compute + update) and history memory.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_advantage.py [--quick]``

1. Time per training step of ``est.compute(...)`` + ``est.update(...)`` for
   1024 responses (256 prompts x G = 4) once the KAE history holds >= 10^5
   rewards (CPU, numpy). Target: <= 2 ms (median over repeats).
2. History size over 10^4 steps of the paper's schedule (1024 prompts,
   256 per step, J = 8, G = 4): live rewards, records and bytes versus
   everything ever seen, for the default cap and a tight one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kernelvalue.advantage import PromptScheduler, get_estimator

N_PROMPTS, PER_STEP, J, G = 1024, 256, 8, 4


def _rollout(rng, ids, p_true):
    keys = np.repeat(ids, G)
    return keys, (rng.random(keys.shape[0]) < p_true[keys]).astype(np.float64)


def time_estimator(name, kwargs, min_entries=100_000, repeats=200, seed=0):
    rng = np.random.default_rng(seed)
    p_true = rng.uniform(0.05, 0.95, N_PROMPTS)
    sched = PromptScheduler(N_PROMPTS, PER_STEP, J, seed)
    est = get_estimator(name, **kwargs)
    step = 0
    hist = getattr(est, "history", None)
    # Warm up until the history is as large as the benchmark asks (stateless: a few steps).
    while True:
        step += 1
        keys, z = _rollout(rng, next(sched), p_true)
        est.compute(keys, z, step)
        est.update(keys, z, step)
        if hist is None and step >= 20 or hist is not None and hist.n_entries >= min_entries:
            break
    times = []
    for _ in range(repeats):
        step += 1
        keys, z = _rollout(rng, next(sched), p_true)
        t0 = time.perf_counter()
        est.compute(keys, z, step)
        est.update(keys, z, step)
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    entries = hist.n_entries if hist is not None else 0
    # mean as well as median: the periodic sweep (every 16 steps) is amortised, not free
    return step, entries, float(np.median(t)), float(np.mean(t)), float(np.percentile(t, 90))


def memory_run(steps, max_per_prompt, checkpoints, seed=0):
    rng = np.random.default_rng(seed)
    p_true = rng.uniform(0.05, 0.95, N_PROMPTS)
    sched = PromptScheduler(N_PROMPTS, PER_STEP, J, seed)
    est = get_estimator("kae", bandwidth=0.2, max_per_prompt=max_per_prompt)
    rows, times = [], []
    for step in range(1, steps + 1):
        keys, z = _rollout(rng, next(sched), p_true)
        t0 = time.perf_counter()
        est.compute(keys, z, step)
        est.update(keys, z, step)
        times.append(time.perf_counter() - t0)
        if step in checkpoints:
            h = est.history
            rows.append((step, step * PER_STEP * G, h.n_entries, h.n_records, h.capacity, h.nbytes))
    return rows, float(np.median(times[-200:])) * 1e3, float(np.mean(times[-200:])) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and 2000 memory steps")
    args = ap.parse_args(argv)
    repeats = 50 if args.quick else 200
    print(f"# compute+update per step, {PER_STEP} prompts x G={G} = {PER_STEP * G} responses, CPU numpy")
    print(f"{'estimator':<12} {'step':>6} {'history':>9} {'median ms':>10} {'mean ms':>8} {'p90 ms':>8}")
    cases = [
        ("kae", {"bandwidth": 0.2}),
        ("kae", {"bandwidth": 0.2, "kernel": "exponential"}),
        ("kae_ll", {"bandwidth": 0.2}),
        ("kae_cv", {}),
        ("kae_shrink", {"bandwidth": 0.2}),
        ("grpo", {}),
        ("rloo", {}),
        ("spo", {}),
        ("krpo", {}),
        ("ema", {}),
        ("jspo", {}),
    ]
    for name, kw in cases:
        label = name + ("/exp" if kw.get("kernel") == "exponential" else "")
        step, entries, med, mean, p90 = time_estimator(name, kw, repeats=repeats)
        flag = ("  <= 2 ms OK" if med <= 2.0 else "  > 2 ms") if name == "kae" else ""
        print(f"{label:<12} {step:>6} {entries:>9} {med:>10.3f} {mean:>8.3f} {p90:>8.3f}{flag}")

    steps = 2000 if args.quick else 10_000
    checkpoints = sorted({s for s in (100, 500, 1000, 2000, 5000, 10_000) if s <= steps})
    for cap in (512, 64):
        print(f"\n# KAE history over {steps} steps (h=0.2, triangular, max_per_prompt={cap})")
        print(f"{'step':>6} {'rewards seen':>13} {'live rewards':>13} {'records':>9} {'row cap':>8} {'MiB':>7}")
        rows, last_ms, last_mean = memory_run(steps, cap, checkpoints)
        for step, seen, live, rec, cap_, nbytes in rows:
            print(f"{step:>6} {seen:>13} {live:>13} {rec:>9} {cap_:>8} {nbytes / 2**20:>7.2f}")
        print(f"compute+update over the last 200 steps: median {last_ms:.3f} ms, mean {last_mean:.3f} ms")


if __name__ == "__main__":
    main()
