"""Benchmark: advantage computation (compute + update) and history memory, for any registered estimator.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_advantage.py [--estimator NAME] [-o KEY=VALUE ...] [--quick]``

1. Time per training step of ``est.compute(...)`` + ``est.update(...)`` for
   1024 responses (256 prompts x G = 4, the paper's schedule: 1024 prompts,
   J = 8) once the estimator's reward history holds about 1.4x10^5 and 2x10^6
   rewards (``--entries``), CPU, numpy, next to GRPO (stateless, no history)
   timed in the same process. Target (issue 10): <= 2 ms median at 1.4x10^5.
2. History size over 10^4 steps of that schedule: live rewards, records and
   bytes versus everything ever seen, for the estimator's options.
3. A flood of new prompts (every step brings only new ones): the prompt bound
   (``max_prompts``) keeps memory flat.

Examples: ``--estimator kae_cv``, ``--estimator kae -o window=absolute -o bandwidth=10``,
``--estimator kae -o kernel=exponential``.
"""

from __future__ import annotations

import argparse
import ast
import os
import time

import numpy as np

from kernelvalue.advantage import PromptScheduler, get_estimator

N_PROMPTS, PER_STEP, J, G = 1024, 256, 8, 4


def _rollout(rng, ids, p_true):
    keys = np.repeat(ids, G)
    return keys, (rng.random(keys.shape[0]) < p_true[keys]).astype(np.float64)


def _entries(est):
    hist = getattr(est, "history", None)
    return None if hist is None else hist.n_entries


def _warm(name, kwargs, min_entries, seed=0, max_warmup=20_000, warmup_steps=None):
    """An estimator run on the schedule until its history holds ``min_entries`` rewards (at most
    ``max_warmup`` steps), or for ``warmup_steps`` steps; returns it with the run's generators."""
    rng = np.random.default_rng(seed)
    p_true = rng.uniform(0.05, 0.95, N_PROMPTS)
    sched = PromptScheduler(N_PROMPTS, PER_STEP, J, seed)
    est = get_estimator(name, **kwargs)
    step = 0
    while True:
        step += 1
        keys, z = _rollout(rng, next(sched), p_true)
        est.compute(keys, z, step)
        est.update(keys, z, step)
        entries = _entries(est)
        done = step >= warmup_steps if warmup_steps is not None else entries is None or entries >= min_entries
        if done or step >= max_warmup:
            return est, rng, p_true, sched, step


def time_estimator(name, kwargs, min_entries=100_000, repeats=200, seed=0, warmup_steps=None):
    """Median, mean and p90 ms of ``repeats`` steps after :func:`_warm`, with the step and history size reached."""
    est, rng, p_true, sched, step = _warm(name, kwargs, min_entries, seed, warmup_steps=warmup_steps)
    times = []
    for _ in range(repeats):
        step += 1
        keys, z = _rollout(rng, next(sched), p_true)
        t0 = time.perf_counter()
        est.compute(keys, z, step)
        est.update(keys, z, step)
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    # mean as well as median: the periodic sweep (every 16 steps) is amortised, not free
    return step, _entries(est), float(np.median(t)), float(np.mean(t)), float(np.percentile(t, 90))


def memory_run(name, kwargs, steps, checkpoints, seed=0):
    rng = np.random.default_rng(seed)
    p_true = rng.uniform(0.05, 0.95, N_PROMPTS)
    sched = PromptScheduler(N_PROMPTS, PER_STEP, J, seed)
    est = get_estimator(name, **kwargs)
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


def flood_run(name, kwargs, steps, per_step, seed=0):
    """Every step brings ``per_step`` prompts never seen before (G = 2)."""
    rng = np.random.default_rng(seed)
    est = get_estimator(name, **kwargs)
    peak = 0
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        keys = np.repeat(np.arange(step * per_step, (step + 1) * per_step), 2)
        z = (rng.random(keys.shape[0]) < 0.5).astype(np.float64)
        est.compute(keys, z, step)
        est.update(keys, z, step)
        peak = max(peak, est.history.nbytes)
    h = est.history
    return h.n_prompts, h.evicted_prompts, peak, h.nbytes, (time.perf_counter() - t0) / steps * 1e3


def _option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"options look like KEY=VALUE (e.g. window=absolute), got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare string such as window=absolute


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimator", default="kae", help="registered name (default kae); see kernelvalue.advantage.ESTIMATORS")
    ap.add_argument("-o", "--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                    help="an estimator option, e.g. -o window=absolute -o bandwidth=10 (repeatable)")  # fmt: skip
    ap.add_argument("--entries", type=float, nargs="+", default=[1.4e5, 2e6], help="history sizes to time at")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 1.4e5 entries only, 2000 memory steps")
    args = ap.parse_args(argv)
    name, kwargs = args.estimator, dict(args.option)
    try:
        probe = get_estimator(name, **kwargs)
    except (TypeError, ValueError) as err:  # a bad name or option: the registry's message
        ap.error(str(err))
    has_history = _entries(probe) is not None
    repeats = 50 if args.quick else 200
    sizes = [e for e in args.entries if e <= 1.5e5] if args.quick else args.entries
    label = name + "".join(f" {k}={v}" for k, v in kwargs.items())
    print(f"# compute+update per step, {PER_STEP} prompts x G={G} = {PER_STEP * G} responses, CPU numpy, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{'estimator':<34} {'target':>9} {'step':>6} {'history':>9} {'median ms':>10} {'mean ms':>8} {'p90 ms':>8} {'vs grpo':>8}")
    _, _, peer, _, _ = time_estimator("grpo", {}, repeats=repeats, warmup_steps=20)
    print(f"{'grpo (peer, no history)':<34} {'-':>9} {'-':>6} {'-':>9} {peer:>10.3f} {'':>8} {'':>8} {1.0:>8.2f}")
    if not has_history:
        # the same training points: the steps at which the default KAE's history holds each size
        print(f"# {name} keeps no RewardHistory: timed at the steps where kae's history holds each size")
    for target in sizes:
        matched = None if has_history else _warm("kae", {}, int(target))[-1]
        step, entries, med, mean, p90 = time_estimator(
            name, kwargs, min_entries=int(target), repeats=repeats, warmup_steps=matched
        )
        flag = ("  <= 2 ms OK" if med <= 2.0 else "  > 2 ms") if target <= 1.5e5 else ""
        shown = "-" if entries is None else str(entries)
        print(f"{label:<34} {target:>9.2g} {step:>6} {shown:>9} {med:>10.3f} {mean:>8.3f} {p90:>8.3f} {med / peer:>8.2f}{flag}")
    if not has_history:
        return
    steps = 2000 if args.quick else 10_000
    checkpoints = sorted({s for s in (100, 500, 1000, 2000, 5000, 10_000) if s <= steps})
    print(f"\n# {label}: history over {steps} steps of the schedule")
    print(f"{'step':>6} {'rewards seen':>13} {'live rewards':>13} {'records':>9} {'row cap':>8} {'MiB':>7}")
    rows, last_ms, last_mean = memory_run(name, kwargs, steps, checkpoints)
    for step, seen, live, rec, cap_, nbytes in rows:
        print(f"{step:>6} {seen:>13} {live:>13} {rec:>9} {cap_:>8} {nbytes / 2**20:>7.2f}")
    print(f"compute+update over the last 200 steps: median {last_ms:.3f} ms, mean {last_mean:.3f} ms")
    flood_steps, per_step = (20, 10_000) if args.quick else (100, 10_000)
    held, evicted, peak, now, ms = flood_run(name, kwargs, flood_steps, per_step)
    print(f"\n# {label}: {flood_steps} steps of {per_step} new prompts each ({flood_steps * per_step} prompts, G=2)")
    print(f"prompts held {held}, forgotten {evicted}, peak {peak / 2**20:.1f} MiB, now {now / 2**20:.1f} MiB, "
          f"{ms:.1f} ms per step")  # fmt: skip


if __name__ == "__main__":
    main()
