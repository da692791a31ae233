"""Advantage estimators: brute-force references, properties, state, backends, errors."""

import math
import pickle
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelvalue.advantage import ESTIMATORS, AdvantageResult, get_estimator, group_ids, register_estimator
from kernelvalue.advantage.base import AdvantageEstimator, estimator_params

KERNELS = {
    "triangular": (lambda u: max(0.0, 1 - abs(u)), 1.0),
    "epanechnikov": (lambda u: 0.75 * (1 - u * u) if abs(u) <= 1 else 0.0, 0.75),
    "uniform": (lambda u: 0.5 if abs(u) <= 1 else 0.0, 0.5),
    "exponential": (lambda u: 0.5 * math.exp(-abs(u)), 0.5),
    "gaussian": (lambda u: math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi), 1 / math.sqrt(2 * math.pi)),
}


# ----------------------------------------------------------------------------- simulation helpers
def random_run(rng, steps, n_keys=10, str_keys=False, g_choices=(1, 2, 3, 4, 6), skip=0.3, p_single=0.0):
    """A list of (step, keys, rewards): random prompts, group sizes and step gaps."""
    run, step = [], 0
    for _ in range(steps):
        step += 1 + int(rng.random() < skip) * int(rng.integers(1, 4))
        m = int(rng.integers(1, 6))
        ids = rng.choice(n_keys, size=m, replace=False)
        sizes = [1 if rng.random() < p_single else int(rng.choice(g_choices)) for _ in ids]
        keys = [f"p{i}" if str_keys else int(i) for i, s in zip(ids, sizes) for _ in range(s)]
        order = rng.permutation(len(keys))  # groups interleaved in the batch
        keys = [keys[o] for o in order]
        z = rng.integers(0, 2, size=len(keys)).astype(float) if rng.random() < 0.5 else rng.random(len(keys))
        run.append((step, keys, z))
    return run


def scaled(step, past, h, window):
    """The paper's scaled distance: (i - I_j)/(i h) (relative window) or (i - I_j)/h (absolute)."""
    return (step - past) / (step * h) if window == "relative" else (step - past) / h


def brute_kae(history, keys, z, step, h, kernel, global_mean, window="relative"):
    """The paper's formula, one response at a time, over an unbounded history list."""
    K, k0 = KERNELS[kernel]
    out = np.empty(len(keys))
    for g, key in enumerate(keys):
        num = den = 0.0
        for hk, hs, hz in history:
            if hk == key:
                w = K(scaled(step, hs, h, window))
                num += w * hz
                den += w
        for j, other in enumerate(keys):
            if j != g and other == key:
                num += k0 * z[j]
                den += k0
        out[g] = num / den if den > 0 else global_mean
    return out


def brute_kae_ll(history, keys, z, step, h, kernel, global_mean, window="relative"):
    """Local-linear version by weighted least squares on the explicit design."""
    K, k0 = KERNELS[kernel]
    nw = brute_kae(history, keys, z, step, h, kernel, global_mean, window)
    out = nw.copy()
    for g, key in enumerate(keys):
        u = lambda hs: scaled(step, hs, h, window)  # noqa: E731
        pts = [(-u(hs), hz, K(u(hs))) for hk, hs, hz in history if hk == key]
        pts += [(0.0, z[j], k0) for j, other in enumerate(keys) if j != g and other == key]
        pts = [p for p in pts if p[2] > 0]
        if len({p[0] for p in pts}) < 2:
            continue
        d, y, w = map(np.array, zip(*pts))
        X = np.stack([np.ones_like(d), d], axis=1) * np.sqrt(w)[:, None]
        coef = np.linalg.lstsq(X, y * np.sqrt(w), rcond=None)[0]
        out[g] = coef[0]
    return out


def check_against_brute(est, run, ref_fn, atol):
    """Drive ``est`` over ``run``; every step its (advantages, baselines) must equal
    ``ref_fn(history, keys, z, step, global_mean)`` (an unbounded list of (key, step, reward))."""
    history, seen = [], []
    for step, keys, z in run:
        gm = float(np.mean(seen)) if seen else 0.0
        ref_adv, ref_base = ref_fn(history, keys, z, step, gm)
        res = est.compute(keys, z, step)
        np.testing.assert_allclose(res.baselines, ref_base, rtol=0, atol=atol)
        np.testing.assert_allclose(res.advantages, ref_adv, rtol=0, atol=atol)
        est.update(keys, z, step)
        history += [(k, step, r) for k, r in zip(keys, z)]
        seen += list(z)


def drive(est, run, values=None):
    out = []
    for i, (step, keys, z) in enumerate(run):
        kw = {} if values is None else {"values": values[i]}
        res = est.compute(keys, z, step, **kw)
        est.update(keys, z, step)
        out.append(res)
    return out


# ----------------------------------------------------------------------------- KAE exactness
@pytest.mark.parametrize(
    "kernel,h,str_keys,p_single,window",
    [
        ("triangular", 0.2, False, 0.0, "relative"),
        ("triangular", 0.5, True, 0.5, "relative"),
        ("epanechnikov", 0.3, False, 0.3, "relative"),
        ("uniform", 0.25, True, 0.2, "relative"),
        ("exponential", 0.1, False, 0.4, "relative"),
        ("gaussian", 0.4, True, 0.0, "relative"),
        # absolute windows, in steps; gaussian h=0.8 and exponential h=0.15 drop records after ~31 / ~112 steps
        ("triangular", 10.0, False, 0.3, "absolute"),
        ("epanechnikov", 4.5, True, 0.0, "absolute"),
        ("uniform", 6.0, False, 0.5, "absolute"),
        ("gaussian", 0.8, True, 0.2, "absolute"),
        ("exponential", 0.15, False, 0.4, "absolute"),
    ],
)
def test_kae_matches_brute_force(kernel, h, str_keys, p_single, window, rng):
    run = random_run(rng, 70, str_keys=str_keys, p_single=p_single)
    est = get_estimator("kae", bandwidth=h, kernel=kernel, max_per_prompt=None, window=window)

    def ref(history, keys, z, step, gm):
        base = brute_kae(history, keys, z, step, h, kernel, gm, window)
        return z - base, base

    # values are averages of rewards in [0, 1]: 1e-12 absolute is ~1e4 ulps of slack
    check_against_brute(est, run, ref, atol=1e-12)


@pytest.mark.parametrize("window,h", [("relative", 0.4), ("absolute", 12.0)])
def test_kae_scale_std_matches_brute_force(window, h, rng):
    # sigma^2 of a prompt: kernel-weighted variance over its history and its whole current group
    run = random_run(rng, 40, p_single=0.3)
    est = get_estimator("kae", bandwidth=h, scale_std=True, eps=1e-3, max_per_prompt=None, window=window)
    K, k0 = KERNELS["triangular"]

    def ref(history, keys, z, step, gm):
        base = brute_kae(history, keys, z, step, h, "triangular", gm, window)
        adv = np.empty(len(keys))
        for g, key in enumerate(keys):
            w = [K(scaled(step, hs, h, window)) for hk, hs, hz in history if hk == key] + [k0] * keys.count(key)
            y = [hz for hk, hs, hz in history if hk == key] + [z[j] for j, k in enumerate(keys) if k == key]
            w, y = np.array(w), np.array(y)
            m = (w * y).sum() / w.sum()
            adv[g] = (z[g] - base[g]) / (np.sqrt((w * (y - m) ** 2).sum() / w.sum()) + 1e-3)
        return adv, base

    # |advantage| <= 1 / eps = 1e3: 1e-9 absolute is again ~1e4 ulps of its scale
    check_against_brute(est, run, ref, atol=1e-9)


def test_kae_single_stream_uses_history_only_and_falls_back_to_global_mean():
    est = get_estimator("kae", bandwidth=0.5)
    res = est.compute(["a"], np.array([1.0]), 1)
    assert res.baselines[0] == 0.0  # nothing seen yet
    est.update(["a"], np.array([1.0]), 1)
    est.update(["b"], np.array([0.0]), 2)
    # "c" never seen: the global mean of the two rewards; "a" at step 3: K((3-1)/1.5) = 1 - 4/3 < 0 -> 0 weight
    res = est.compute(["c", "a", "b"], np.array([1.0, 0.0, 1.0]), 3)
    np.testing.assert_allclose(res.baselines, [0.5, 0.5, 0.0])


@pytest.mark.parametrize(
    "kernel,h,window",
    [("triangular", 0.3, "relative"), ("exponential", 0.2, "relative"), ("epanechnikov", 0.6, "relative"),
     ("triangular", 8.0, "absolute"), ("exponential", 3.0, "absolute")],
)  # fmt: skip
def test_kae_ll_matches_weighted_least_squares(kernel, h, window, rng):
    run = random_run(rng, 50, p_single=0.3)
    est = get_estimator("kae_ll", bandwidth=h, kernel=kernel, max_per_prompt=None, window=window)

    def ref(history, keys, z, step, gm):
        base = brute_kae_ll(history, keys, z, step, h, kernel, gm, window)
        return z - base, base

    # lstsq (SVD) vs the closed-form 2x2 solve: d in [-1, 0] keeps the systems well conditioned here,
    # but the closed form's det = S0 S2 - S1^2 cancels a few digits: 1e-9 rather than 1e-12
    check_against_brute(est, run, ref, atol=1e-9)


def test_window_reading_is_an_option_recorded_in_params_and_state():
    rel, ab = get_estimator("kae"), get_estimator("kae", window="absolute")
    assert (rel.bandwidth, rel.window) == (0.2, "relative") and (ab.bandwidth, ab.window) == (10.0, "absolute")
    assert ab.state_dict()["params"]["window"] == "absolute" and rel.state_dict()["params"]["window"] == "relative"
    assert np.allclose(get_estimator("kae_cv", window="absolute").grid, np.geomspace(2, 50, 9))
    # A window of 10 steps at step 100 is the relative window h = 0.1 there, and only there.
    a, r = get_estimator("kae", bandwidth=10.0, window="absolute"), get_estimator("kae", bandwidth=0.1)
    for step in (60, 95):
        for e in (a, r):
            e.update([0, 0], np.array([1.0, 0.0]) if step == 60 else np.array([1.0, 1.0]), step)
    z = np.array([0.0, 0.0])
    # step 100: absolute K(5/10) = 0.5 on step 95 only; relative K(5/10) = 0.5 and K(40/10) = 0 -- the same
    np.testing.assert_array_equal(a.compute([0, 0], z, 100).baselines, r.compute([0, 0], z, 100).baselines)
    with pytest.raises(ValueError, match="window"):
        rel.load_state_dict(ab.state_dict())


def test_kae_ll_removes_linear_drift_bias():
    # Noise-free linear drift V_i = 0.2 + 0.003 i: NW lags by ~slope * window/3, LL is exact.
    ll, nw = get_estimator("kae_ll", bandwidth=0.3), get_estimator("kae", bandwidth=0.3)
    for step in range(1, 101):
        z = np.full(4, 0.2 + 0.003 * step)
        r_ll, r_nw = ll.compute([0] * 4, z, step), nw.compute([0] * 4, z, step)
        ll.update([0] * 4, z, step)
        nw.update([0] * 4, z, step)
    assert np.max(np.abs(r_ll.advantages)) < 1e-10
    assert np.min(np.abs(r_nw.advantages)) > 0.01  # ~0.003 * 30/3 * (1 - share of current group)


def _value_mse(names, steps, value_fn, noise, G=4, P=32, seed=0, **kw):
    """Mean squared baseline error vs the true value over the second half of a run."""
    rng = np.random.default_rng(seed)
    ests = {n: get_estimator(n, **kw) for n in names}
    err = dict.fromkeys(names, 0.0)
    keys = np.repeat(np.arange(P), G)
    for step in range(1, steps + 1):
        v = value_fn(step)[keys]
        z = noise(rng, v)
        for n, e in ests.items():
            b = e.compute(keys, z, step).baselines
            e.update(keys, z, step)
            if step > steps // 2:
                err[n] += float(np.mean((b - v) ** 2))
    return err


def test_kae_ll_beats_kae_under_strong_drift_and_loses_when_stationary():
    v0 = np.random.default_rng(5).uniform(0.2, 0.8, 32)
    gauss = lambda rng, v: v + 0.1 * rng.standard_normal(v.shape)  # noqa: E731
    drift = _value_mse(("kae", "kae_ll"), 100, lambda i: v0 + 0.01 * i, gauss, bandwidth=0.3)
    flat = _value_mse(("kae", "kae_ll"), 100, lambda i: v0, gauss, bandwidth=0.3)
    # Drift 0.01/step, window ~0.3*75 steps: NW lags ~0.07 (bias^2 ~5e-3) >> LL's extra variance.
    assert drift["kae_ll"] < 0.3 * drift["kae"]
    # No drift: no bias to remove, and boundary extrapolation inflates the variance (~x3.5 here).
    assert flat["kae_ll"] > 2 * flat["kae"]


def test_kae_cv_beats_a_mistuned_h_and_roughly_ties_a_good_one():
    bern = lambda rng, v: (rng.random(v.shape) < v).astype(float)  # noqa: E731
    phase = np.arange(32)
    runs = {
        "fast": lambda i: 0.5 + 0.4 * np.sin(i / 4.0 + phase),  # h = 0.2 far too wide
        "flat": lambda i: 0.5 + 0.4 * np.sin(phase),  # h = 0.2 too narrow
        "slow": lambda i: 0.5 + 0.4 * np.sin(i / 60.0 + phase),  # h = 0.2 near the best grid point
    }
    mse = {k: _value_mse(("kae", "kae_cv"), 150, f, bern, bandwidth=0.2) for k, f in runs.items()}
    assert mse["fast"]["kae_cv"] < 0.5 * mse["fast"]["kae"]
    assert mse["flat"]["kae_cv"] < 0.6 * mse["flat"]["kae"]
    # where h = 0.2 is already right, the online choice (which lags the drifting optimum) roughly ties
    assert abs(mse["slow"]["kae_cv"] / mse["slow"]["kae"] - 1) < 0.3


def test_kae_shrink_helps_thin_windows_and_fades_with_rich_ones():
    bern = lambda rng, v: (rng.random(v.shape) < v).astype(float)  # noqa: E731
    rng = np.random.default_rng(6)
    close = 0.5 + 0.1 * (rng.random(64) - 0.5)
    spread = np.clip(0.5 + 0.9 * (rng.random(32) - 0.5), 0.01, 0.99)
    thin = _value_mse(("kae", "kae_shrink"), 6, lambda i: close, bern, G=2, P=64, bandwidth=0.2)
    rich = _value_mse(("kae", "kae_shrink"), 120, lambda i: spread, bern, G=8, P=32, bandwidth=0.2)
    # Similar prompts and 1-3 past rewards each: pooling across prompts is nearly free variance reduction.
    assert thin["kae_shrink"] < 0.2 * thin["kae"]
    # Spread prompts and ~30 effective rewards each: tau^2 >> s_k^2, so B_k -> 0 and gains fade.
    assert 0.75 * rich["kae"] < rich["kae_shrink"] < rich["kae"]


@pytest.mark.parametrize("window,grid", [("relative", [0.05, 0.1, 0.2, 0.4]), ("absolute", [3.0, 6.0, 12.0, 24.0])])
def test_kae_cv_scores_equal_separate_kae_runs_and_picks_sensible_h(window, grid, rng):
    cv = get_estimator("kae_cv", bandwidth=grid[2], grid=grid, refit_every=5, cv_decay=0.9, window=window)
    fixed = [get_estimator("kae", bandwidth=h, max_per_prompt=None, window=window) for h in grid]
    scores, counts = np.zeros(4), 0.0
    for step in range(1, 121):
        keys = np.repeat([0, 1, 2], 3)
        # fast drift: the value swings with period ~25 steps, noise small
        v = 0.5 + 0.4 * np.sin(step / 4.0 + np.arange(3))
        z = v[keys] + 0.05 * rng.standard_normal(keys.size)
        errs = [f.compute(keys, z, step).advantages for f in fixed]
        # the baselines in use are plain KAE's at the currently selected bandwidth
        np.testing.assert_allclose(cv.compute(keys, z, step).advantages, errs[grid.index(cv.bandwidth)], atol=1e-12)
        cv.update(keys, z, step)
        for f in fixed:
            f.update(keys, z, step)
        scores = 0.9 * scores + np.array([np.sum(e * e) for e in errs])
        counts = 0.9 * counts + keys.size
        np.testing.assert_allclose(cv.cv_scores_, scores, rtol=1e-10)
    np.testing.assert_allclose(cv.cv_counts_, counts, rtol=1e-12)
    assert cv.bandwidth == grid[0]  # fast drift -> the smallest window
    stat = get_estimator("kae_cv", grid=grid, refit_every=5, window=window)
    for step in range(1, 121):
        keys = np.repeat([0, 1, 2], 3)
        z = (rng.random(keys.size) < np.array([0.2, 0.5, 0.8])[keys]).astype(float)
        stat.compute(keys, z, step)
        stat.update(keys, z, step)
    assert stat.bandwidth == grid[-1]  # stationary -> the widest window (least variance)


def brute_shrink(history, keys, z, step, h, kernel, global_mean, window="relative"):
    K, k0 = KERNELS[kernel]
    nw = brute_kae(history, keys, z, step, h, kernel, global_mean, window)
    uniq = sorted(set(keys))
    stats = {}
    for key in uniq:
        w = [K(scaled(step, hs, h, window)) for hk, hs, hz in history if hk == key]
        y = [hz for hk, hs, hz in history if hk == key]
        w += [k0 for k in keys if k == key]
        y += [z[j] for j, k in enumerate(keys) if k == key]
        w, y = np.array(w), np.array(y)
        W, W2 = w.sum(), (w * w).sum()
        mu = (w * y).sum() / W
        stats[key] = (mu, (w * (y - mu) ** 2).sum(), W - W2 / W, W2 / W**2)
    sigma2 = sum(s[1] for s in stats.values()) / sum(s[2] for s in stats.values())
    mus = np.array([stats[k][0] for k in uniq])
    p = len(uniq)
    if p < 3:
        return nw
    var = np.array([sigma2 * stats[k][3] for k in uniq])
    tau2 = max(0.0, np.sum((mus - mus.mean()) ** 2) / (p - 1) - var.mean())
    out = nw.copy()
    for g, key in enumerate(keys):
        i = uniq.index(key)
        center = (mus.sum() - mus[i]) / (p - 1)
        # variance of response g's own leave-one-out estimate: history plus the G - 1 others
        w = [K(scaled(step, hs, h, window)) for hk, hs, hz in history if hk == key]
        w = np.array(w + [k0] * (keys.count(key) - 1))
        t = sigma2 * (w * w).sum() / w.sum() ** 2
        B = t / (t + tau2) if t + tau2 > 0 else 0.0
        out[g] = center + (1 - B) * (nw[g] - center)
    return out


@pytest.mark.parametrize("window,h", [("relative", 0.3), ("absolute", 9.0)])
def test_kae_shrink_matches_brute_force(window, h, rng):
    run = random_run(rng, 40, g_choices=(2, 3, 4), n_keys=8)
    est = get_estimator("kae_shrink", bandwidth=h, max_per_prompt=None, window=window)

    def ref(history, keys, z, step, gm):
        base = brute_shrink(history, keys, z, step, h, "triangular", gm, window)
        return z - base, base

    check_against_brute(est, run, ref, atol=1e-12)


# ----------------------------------------------------------------------------- baselines vs references
def _groups(keys, z):
    g = defaultdict(list)
    for i, k in enumerate(keys):
        g[k].append(i)
    return g


def ref_grpo(keys, z, std=True, eps=1e-6):
    torch = pytest.importorskip("torch")
    adv, base = np.empty(len(z)), np.empty(len(z))
    for k, idx in _groups(keys, z).items():
        t = torch.tensor(z[idx], dtype=torch.float64)
        if len(idx) == 1:
            m, s = 0.0, 1.0
        else:
            m, s = float(torch.mean(t)), float(torch.std(t))  # verl: unbiased torch.std
        for i in idx:
            base[i] = m
            adv[i] = (z[i] - m) / (s + eps) if std else z[i] - m
    return adv, base


def ref_rloo(keys, z):
    base = np.zeros(len(z))
    for k, idx in _groups(keys, z).items():
        for i in idx:
            base[i] = sum(z[j] for j in idx if j != i) / (len(idx) - 1) if len(idx) > 1 else 0.0
    return z - base, base


def ref_rpp(keys, z):
    torch = pytest.importorskip("torch")
    t = torch.tensor(z, dtype=torch.float64)
    var = float(torch.var(t)) if len(z) > 1 else 0.0  # verl masked_whiten: unbiased variance, rsqrt(var + 1e-8)
    return (z - z.mean()) / math.sqrt(var + 1e-8), np.full(len(z), z.mean())


def ref_gpg(keys, z):
    groups = _groups(keys, z)
    adv, base = np.empty(len(z)), np.empty(len(z))
    M = sum(len(idx) for idx in groups.values() if len(idx) > 1 and len(set(z[idx])) == 1)
    alpha = len(z) / (len(z) - M) if len(z) > M else 1.0
    for idx in groups.values():
        m = float(np.mean(z[idx])) if len(idx) > 1 else 0.0
        for i in idx:
            base[i], adv[i] = m, alpha * (z[i] - m)
    return adv, base


def ref_jspo(keys, z):
    groups = _groups(keys, z)
    uniq = list(groups)
    means = np.array([np.mean(z[groups[k]]) for k in uniq])
    G = np.array([len(groups[k]) for k in uniq], dtype=float)
    ss = sum(np.sum((z[groups[k]] - np.mean(z[groups[k]])) ** 2) for k in uniq)
    df = float(np.sum(G - 1))
    p = len(uniq)
    sigma2 = ss / df if df > 0 else 0.0
    tau2 = max(0.0, np.sum((means - means.mean()) ** 2) / (p - 1) - np.mean(sigma2 / G)) if p >= 3 else None
    base = np.empty(len(z))
    for i, k in enumerate(uniq):
        c = (means.sum() - means[i]) / (p - 1) if p > 1 else 0.0
        for g in groups[k]:
            if len(groups[k]) == 1:
                base[g] = c  # no other response: the other prompts' mean
                continue
            loo = (z[groups[k]].sum() - z[g]) / (len(groups[k]) - 1)
            t = sigma2 / (len(groups[k]) - 1)
            B = t / (t + tau2) if df > 0 and tau2 is not None and t + tau2 > 0 else 0.0
            base[g] = c + (1 - B) * (loo - c)
    return z - base, base


STATELESS_REFS = {
    "grpo": lambda k, z: ref_grpo(k, z, std=True),
    "drgrpo": lambda k, z: ref_grpo(k, z, std=False),
    "rloo": ref_rloo,
    "reinforce": lambda k, z: (z.copy(), np.zeros(len(z))),
    "reinforce_pp": ref_rpp,
    "gpg": ref_gpg,
    "jspo": ref_jspo,
}


@pytest.mark.parametrize("name", sorted(STATELESS_REFS))
def test_stateless_baselines_match_references(name, rng):
    est = get_estimator(name)
    for step, keys, z in random_run(rng, 25, p_single=0.2, str_keys=True):
        ref_adv, ref_base = STATELESS_REFS[name](keys, z)
        res = est.compute(keys, z, step)
        np.testing.assert_allclose(res.advantages, ref_adv, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(res.baselines, ref_base, rtol=1e-12, atol=1e-12)
    # all-equal groups: GPG rescales the rest by B / (B - M)
    res = est.compute([0, 0, 1, 1], np.array([1.0, 1.0, 1.0, 0.0]), 1)
    if name == "gpg":
        np.testing.assert_allclose(res.advantages, [0, 0, 1.0, -1.0])


def test_jspo_leaves_each_response_out_and_serves_single_streams():
    # Singletons only (G = 1): no leave-one-out mean, so each baseline is the other prompts' mean and the
    # advantages carry signal (a group-mean baseline would zero them all).
    z = np.array([1.0, 0.0, 0.0, 1.0])
    res = get_estimator("jspo").compute([0, 1, 2, 3], z, 1)
    np.testing.assert_allclose(res.baselines, (z.sum() - z) / 3, rtol=0, atol=1e-15)
    # Fixed shrinkage (tau^2 = 0 here, so B = 1 for every group): the baseline ignores the response's own reward.
    keys = [0, 0, 1, 1, 2, 2]
    a = get_estimator("jspo").compute(keys, np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]), 1).baselines
    b = get_estimator("jspo").compute(keys, np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]), 1).baselines
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)


def test_oracle_uses_values_and_requires_them():
    est = get_estimator("oracle")
    z, v = np.array([1.0, 0.0, 1.0]), np.array([0.3, 0.3, 0.9])
    res = est.compute([1, 1, 2], z, 1, values=v)
    np.testing.assert_array_equal(res.baselines, v)
    np.testing.assert_allclose(res.advantages, z - v)
    with pytest.raises(ValueError, match="values"):
        est.compute([1, 1, 2], z, 1)


def ref_trackers(name, run, **kw):
    state, seen, out = {}, [], []
    for step, keys, z in run:
        gm = float(np.mean(seen)) if seen else 0.0
        base = np.empty(len(z))
        for i, k in enumerate(keys):
            if name == "spo":
                a, b = state.get(k, (kw["alpha0"], kw["beta0"]))
                base[i] = a / (a + b)
            elif name == "krpo":
                base[i] = state[k][0] if k in state else gm
            else:
                base[i] = state[k] if k in state else gm
        out.append(base)
        for k, idx in _groups(keys, z).items():
            zk = z[idx]
            if name == "spo":
                a, b = state.get(k, (kw["alpha0"], kw["beta0"]))
                state[k] = (kw["rho"] * a + zk.sum(), kw["rho"] * b + (1 - zk).sum())
            elif name == "krpo":
                x, P, last = state.get(k, (gm, kw["p0"], step))
                for r in zk:  # sequential scalar Kalman updates == the batch form
                    P = P + kw["q"] * (step - last)
                    last = step
                    gain = P / (P + kw["r"])
                    x, P = x + gain * (r - x), (1 - gain) * P
                state[k] = (x, P, step)
            else:
                state[k] = kw["decay"] * state[k] + (1 - kw["decay"]) * zk.mean() if k in state else zk.mean()
        seen += list(z)
    return out


@pytest.mark.parametrize(
    "name,kw",
    [
        ("spo", {"rho": 0.8, "alpha0": 0.5, "beta0": 1.5}),
        ("krpo", {"q": 0.01, "r": 0.2, "p0": 0.3}),
        ("ema", {"decay": 0.7}),
    ],
)
def test_trackers_match_references(name, kw, rng):
    run = random_run(rng, 40, p_single=0.3)
    run = [(s, k, np.round(z)) for s, k, z in run] if name == "spo" else run
    res = drive(get_estimator(name, **kw), run)
    for r, ref, (_, _, z) in zip(res, ref_trackers(name, run, **kw), run):
        np.testing.assert_allclose(r.baselines, ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.advantages, z - ref, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- properties
batches = st.lists(
    st.tuples(st.integers(0, 5), st.floats(0, 1, allow_nan=False)), min_size=1, max_size=30
)


@settings(max_examples=60, deadline=None, derandomize=True)  # fixed examples: CI is reproducible
@given(batch=batches)
def test_group_centred_estimators_sum_to_zero_within_groups(batch):
    keys = [k for k, _ in batch]
    z = np.array([r for _, r in batch])
    _, inv = group_ids(keys)
    G = np.bincount(inv)
    multi = G[inv] > 1
    mean = np.bincount(inv, weights=z) / G
    std = np.sqrt(np.bincount(inv, weights=(z - mean[inv]) ** 2) / np.maximum(G - 1, 1))
    for name in ("rloo", "drgrpo", "grpo", "gpg"):
        adv = get_estimator(name).compute(keys, z, 1).advantages
        sums = np.bincount(inv, weights=np.where(multi, adv, 0.0))
        # The rounded group mean leaves sum(Z - mean) ~ G ulps of the rewards (<= 1); GRPO then divides
        # by std + 1e-6 and GPG multiplies by alpha <= n: 8 G ulps times that factor.
        factor = {"grpo": 1.0 / (std + 1e-6), "gpg": float(len(z))}.get(name, 1.0)
        assert np.all(np.abs(sums) <= 8 * G * np.finfo(float).eps * factor), name


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    steps=st.lists(st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1, allow_nan=False)), min_size=1, max_size=12),
                   min_size=1, max_size=8),
    name=st.sampled_from(["kae", "kae_shrink", "kae_cv", "kae_auto"]),
)
def test_kae_baselines_stay_within_the_reward_range(steps, name):
    # Nonnegative kernel weights make NW a convex combination; the fallback is a mean
    # of past rewards (0 before any: the documented prior, hence seen starts at [0]);
    # shrinkage interpolates between convex combinations. kae_auto's windows are exponential already.
    est, seen = get_estimator(name, **({} if name == "kae_auto" else {"kernel": "exponential"})), [0.0]
    for i, batch in enumerate(steps, start=1):
        keys = [k for k, _ in batch]
        z = np.array([r for _, r in batch])
        seen += list(z)
        base = est.compute(keys, z, i).baselines
        assert np.all(base >= min(seen) - 1e-12) and np.all(base <= max(seen) + 1e-12)
        est.update(keys, z, i)


@pytest.mark.parametrize("name", sorted(set(ESTIMATORS) - {"oracle"}))
def test_permutation_equivariance(name, rng):
    run = random_run(rng, 12, p_single=0.2)
    a, b = get_estimator(name), get_estimator(name)
    for step, keys, z in run:
        perm = rng.permutation(len(keys))
        ra = a.compute(keys, z, step)
        rb = b.compute([keys[p] for p in perm], z[perm], step)
        # reorderings change float summation order only
        np.testing.assert_allclose(rb.advantages, ra.advantages[perm], rtol=1e-12, atol=1e-12)
        a.update(keys, z, step)
        b.update([keys[p] for p in perm], z[perm], step)


# ----------------------------------------------------------------------------- state
STATEFUL = ["kae", "kae_ll", "kae_cv", "kae_shrink", "spo", "krpo", "ema"]


@pytest.mark.parametrize("name", STATEFUL)
def test_save_resume_is_bit_identical(name, rng):
    kw = {"max_per_prompt": 6} if name.startswith("kae") else {}
    run = random_run(rng, 60, p_single=0.2)
    run = [(s, k, np.round(z)) for s, k, z in run]
    a = get_estimator(name, **kw)
    drive(a, run[:30])
    b = get_estimator(name, **kw)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    for ra, rb in zip(drive(a, run[30:]), drive(b, run[30:])):
        np.testing.assert_array_equal(ra.advantages, rb.advantages)
        np.testing.assert_array_equal(ra.baselines, rb.baselines)
    with pytest.raises(ValueError, match="state_dict"):
        get_estimator("grpo").load_state_dict(a.state_dict())


def test_state_dict_rejects_other_options():
    for name, mine, other in [("kae", {"bandwidth": 0.2}, {"bandwidth": 0.3}), ("kae", {}, {"eps": 1e-3}),
                              ("ema", {"decay": 0.9}, {"decay": 0.8}), ("spo", {}, {"rho": 0.5})]:  # fmt: skip
        with pytest.raises(ValueError, match="same options"):
            get_estimator(name, **other).load_state_dict(get_estimator(name, **mine).state_dict())


# ----------------------------------------------------------------------------- backends
@pytest.mark.parametrize("name", ["kae", "grpo", "reinforce_pp", "spo", "kae_ll"])
def test_torch_in_torch_out(name):
    torch = pytest.importorskip("torch")
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        est = get_estimator(name)
        z = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=dtype)
        keys = torch.tensor([3, 3, 5, 5])
        res = est.compute(keys, z, 1)
        assert isinstance(res, AdvantageResult)
        for out in (res.advantages, res.baselines):
            assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device == z.device
        ref = get_estimator(name).compute([3, 3, 5, 5], z.double().numpy(), 1)
        # float32 rounding of O(1) values: 1e-6; bfloat16 keeps 8 bits: 1e-2
        tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
        np.testing.assert_allclose(res.advantages.double().numpy(), ref.advantages, rtol=tol, atol=tol)


def test_numpy_int_rewards_give_float64_and_keys_can_be_mixed():
    res = get_estimator("rloo").compute([1, "1", 1, "1"], np.array([1, 0, 0, 1]), 1)
    assert res.advantages.dtype == np.float64
    res32 = get_estimator("kae").compute([1, 1], np.array([1.0, 0.0], dtype=np.float32), 1)
    assert res32.advantages.dtype == res32.baselines.dtype == np.float32  # a float dtype is kept
    np.testing.assert_array_equal(res.baselines, [0.0, 1.0, 1.0, 0.0])  # 1 and "1" are different prompts
    res = get_estimator("rloo").compute((7, 8, 7), [1.0, 0.0, 0.0], 1)  # tuples and lists
    np.testing.assert_array_equal(res.baselines, [0.0, 0.0, 1.0])
    # tuple keys are single hashables, not rows of a 2-D key array
    keys = [("gsm8k", 3), ("math", 3), ("gsm8k", 3), ("gsm8k", 4)]
    uniq, inv = group_ids(keys)
    assert uniq == [("gsm8k", 3), ("math", 3), ("gsm8k", 4)] and inv.tolist() == [0, 1, 0, 2]
    est = get_estimator("kae", bandwidth=1.0)
    z = np.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(est.compute(keys, z, 1).baselines, [0.0, 0.0, 1.0, 0.0])
    est.update(keys, z, 1)
    assert ("gsm8k", 3) in est.history


# ----------------------------------------------------------------------------- errors and registry
def test_bad_inputs_raise_clear_errors():
    est = get_estimator("kae")
    with pytest.raises(ValueError, match="rewards.*non-finite.*finite number"):
        est.compute([0, 0], np.array([1.0, np.nan]), 1)
    with pytest.raises(ValueError, match="keys has 3 entries but rewards has 2"):
        est.compute([0, 0, 1], np.array([1.0, 0.0]), 1)
    for bad_keys in (None, "p0", 3):
        with pytest.raises(TypeError, match="keys must be a sequence or array with one prompt key per response"):
            est.compute(bad_keys, np.array([1.0]), 1)
    with pytest.raises(ValueError, match="empty batch"):
        est.compute([], np.array([]), 1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        est.compute([0], np.array([1.0]), 0)
    with pytest.raises(TypeError, match="step must be an integer"):
        est.compute([0], np.array([1.0]), 1.5)
    est.update([0], np.array([1.0]), 5)
    with pytest.raises(ValueError, match="not after the last update"):
        est.compute([0], np.array([1.0]), 5)
    with pytest.raises(ValueError, match="backwards"):
        est.update([0], np.array([1.0]), 4)
    est.compute([0], np.array([1.0]), 9)
    with pytest.raises(ValueError, match="backwards"):
        est.compute([0], np.array([1.0]), 7)
    with pytest.raises(ValueError, match=r"spo needs rewards in \[0, 1\]"):
        get_estimator("spo").compute([0], np.array([2.0]), 1)


def test_registry_errors_and_aliases():
    with pytest.raises(ValueError, match="unknown estimator 'nope'.*'grpo'.*'kae'"):
        get_estimator("nope")
    with pytest.raises(TypeError, match=r"does not take option\(s\) \['bandwidth'\].*accepts"):
        get_estimator("grpo", bandwidth=0.2)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="bandwidth must be finite and > 0"):
            get_estimator("kae", bandwidth=bad)
    for name in ("grpo", "kae", "reinforce_pp"):
        with pytest.raises(ValueError, match="eps must be finite and >= 0"):
            get_estimator(name, eps=-1e-6)
    with pytest.raises(ValueError, match="refit_every must be a positive integer"):
        get_estimator("kae_cv", refit_every=0)
    with pytest.raises(ValueError, match="kernel='nope' is unknown"):
        get_estimator("kae", kernel="nope")
    with pytest.raises(ValueError, match="bandwidth"):
        get_estimator("kae_cv", grid=[0.1, -0.2])
    assert type(get_estimator("reinforce++")) is type(get_estimator("reinforce_pp"))
    assert type(get_estimator("Dr-GRPO")) is type(get_estimator("drgrpo"))
    assert set(estimator_params("kae")) >= {"bandwidth", "kernel", "scale_std"}
    expected = {"kae", "kae_ll", "kae_cv", "kae_shrink", "grpo", "drgrpo", "rloo", "reinforce",
                "reinforce_pp", "gpg", "oracle", "spo", "krpo", "jspo", "ema"}
    assert expected <= set(ESTIMATORS)


def test_register_estimator_adds_a_custom_estimator():
    @register_estimator("half_test")
    class Half(AdvantageEstimator):
        def _compute(self, batch):
            return batch.z - 0.5, np.full_like(batch.z, 0.5)

    try:
        res = get_estimator("half_test").compute(["x"], np.array([1.0]), 1)
        np.testing.assert_array_equal(res.advantages, [0.5])
        with pytest.raises(ValueError, match="already registered"):
            register_estimator("half_test")(type("Other", (AdvantageEstimator,), {}))
    finally:
        del ESTIMATORS["half_test"]


@pytest.mark.parametrize(
    "module",
    ["kernelvalue.advantage", "kernelvalue.advantage.base", "kernelvalue.advantage.history",
     "kernelvalue.advantage.kae", "kernelvalue.advantage.baselines", "kernelvalue.advantage.peers",
     "kernelvalue.advantage.scheduler", "kernelvalue.advantage.adaptive"],
)  # fmt: skip
def test_docstring_examples_run(module):
    # The numpydoc examples are part of the documentation: keep them true.
    import doctest
    import importlib

    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    res = doctest.testmod(importlib.import_module(module), optionflags=flags)
    assert res.failed == 0 and res.attempted > 0
