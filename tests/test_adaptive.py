"""kae_auto (kernelvalue.advantage.adaptive): its pieces against brute force, its protocol guarantees
(leave-one-out, exact resume, bounded memory, clear errors) and the theory it rests on.

Seeds are fixed; every tolerance says where it comes from.
"""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelvalue.advantage import get_estimator
from kernelvalue.advantage.adaptive import (
    DEFAULT_WINDOWS,
    Z_PROPAGATION,
    KAEAuto,
    _WindowBank,
    dispersion_terms,
    lepski_select,
    loo_shrinkage,
    propagation_critical_value,
)

SEED = 20260515


def schedule(rng, n_steps, n_prompts=6, max_group=4, p_skip=0.4):
    """Random steps: each prompt served or not, with a random group size (gaps between visits)."""
    out = []
    for step in range(1, n_steps + 1):
        keys, z = [], []
        for k in range(n_prompts):
            if rng.random() < p_skip:
                continue
            g = int(rng.integers(1, max_group + 1))
            keys += [k] * g
            z += list((rng.random(g) < 0.2 + 0.1 * k).astype(float))
        if keys:
            out.append((step, keys, np.array(z)))
    return out


# --------------------------------------------------------------------------- pieces
def test_window_bank_sums_are_the_exponential_kernel_sums():
    rng = np.random.default_rng(SEED)
    windows = np.array([1.0, 3.0, 40.0])
    bank = _WindowBank(windows)
    past = []  # (key, step, z)
    for step, keys, z in schedule(rng, 60):
        uniq = sorted(set(keys))
        keys = np.array(keys)
        cnt = np.array([np.sum(keys == k) for k in uniq], float)
        s = np.array([z[keys == k].sum() for k in uniq])
        ss = np.array([(z[keys == k] ** 2).sum() for k in uniq])
        bank.add(uniq, cnt, s, ss, step)
        past += [(k, step, zz) for k, zz in zip(keys, z)]
    now = 75
    W, W2, S, D, Q = bank.at(bank.rows(list(range(7))), now)
    for k in range(7):  # prompt 6 was never seen: zeros
        mine = [(now - st_, zz) for kk, st_, zz in past if kk == k]
        for h, L in enumerate(windows):
            w = np.array([np.exp(-lag / L) for lag, _ in mine])
            lag = np.array([lag for lag, _ in mine], float)
            zz = np.array([v for _, v in mine])
            # The recursion multiplies decay factors step by step: rounding ~ 1e-16 per step, 60 steps.
            for got, ref in ((W[k, h], w.sum()), (W2[k, h], (w * w).sum()), (S[k, h], (w * zz).sum()),
                             (D[k, h], (w * lag).sum())):  # fmt: skip
                assert got == pytest.approx(ref, rel=1e-12, abs=1e-300)
        wl = np.array([np.exp(-lag / windows[-1]) for lag, _ in mine])
        assert Q[k] == pytest.approx(float((wl * np.array([v for _, v in mine]) ** 2).sum()), rel=1e-12, abs=1e-300)


def _lepski_brute(est, var, z):
    out = []
    for e, v in zip(est, var):
        chosen, H = -1, len(e)
        for k in range(H):
            if not np.isfinite(e[k]):
                continue
            if any(np.isfinite(e[j]) and abs(e[j] - e[k]) > z * np.sqrt(v[j]) + 1e-12 for j in range(k)):
                break
            chosen = k
        out.append(chosen)
    return np.array(out)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    est=st.lists(st.lists(st.one_of(st.floats(0, 1), st.just(float("nan"))), min_size=5, max_size=5),
                 min_size=1, max_size=8),
    var=st.lists(st.floats(0, 0.5), min_size=5, max_size=5),
    z=st.floats(0.1, 4.0),
)
def test_lepski_select_matches_the_pairwise_definition(est, var, z):
    est = np.array(est)
    var = np.tile(np.array(var), (est.shape[0], 1))
    np.testing.assert_array_equal(lepski_select(est, var, z), _lepski_brute(est, var, z))


def test_propagation_critical_value_reproduces_the_default():
    # The default z = 2.4 was computed with n_sim = 4000 at G = 1..16 (2.35-2.40). With 3000 draws the
    # no-drift false-alarm rate at alpha = 0.05 has sd sqrt(0.05 * 0.95 / 3000) = 0.004, which moves
    # the 0.05-grid answer by at most one grid step around the default.
    for G in (1, 4, 16):
        assert abs(propagation_critical_value(0.05, G=G, n_sim=3000, seed=1) - Z_PROPAGATION) <= 0.1 + 1e-9


def test_dispersion_is_one_for_binary_rewards_and_recovers_graded_ones():
    rng = np.random.default_rng(SEED)
    p, n = 400, 12
    V = rng.uniform(0.05, 0.95, p)
    w = rng.uniform(0.2, 1.0, (p, n))
    z01 = (rng.random((p, n)) < V[:, None]).astype(float)
    def phi(z):
        ss, den = dispersion_terms(w.sum(1), (w * w).sum(1), (w * z).sum(1), (w * z * z).sum(1), 0.0, 1.0)
        return ss.sum() / den.sum()

    # Identity for 0/1 data, whatever the weights (see the docstring): exact up to rounding.
    assert phi(z01) == pytest.approx(1.0, abs=1e-12)
    kappa = 3.0  # Beta(kappa V, kappa (1 - V)): Var = V (1 - V) / (kappa + 1), so phi = 1/4
    zb = rng.beta(kappa * V[:, None], kappa * (1 - V[:, None]), (p, n))
    # Ratio of two sums over p * n = 4800 rewards: relative sd ~ sqrt(2 / 4800) ~ 2%; 4 sd = 8%.
    assert phi(zb) == pytest.approx(0.25, rel=0.08)


def test_loo_shrinkage_matches_leaving_each_prompt_out():
    rng = np.random.default_rng(SEED)
    p = 9
    mu, r, b = rng.uniform(0, 1, p), rng.uniform(0.01, 0.3, p), rng.uniform(0, 0.01, p)
    valid = rng.random(p) < 0.8
    prior = np.array([3.0, 1.5, 0.9, 0.3, 0.01])
    c, t2, s2 = loo_shrinkage(mu, r, b, valid, 1.0, 0.0, 1.0, prior=prior)
    for k in range(p):
        o = valid & (np.arange(p) != k)
        n = o.sum() + prior[0]
        cen = (mu[o].sum() + prior[1]) / n
        spread = (mu[o] @ mu[o] + prior[2] - n * cen**2) / (n - 1)
        rbar, bbar = (r[o].sum() + prior[3]) / n, (b[o].sum() + prior[4]) / n
        top = cen * (1 - cen)
        tau2 = np.clip((spread - bbar - top * rbar) / (1 - rbar), 0, top)
        assert c[k] == pytest.approx(cen, abs=1e-12)
        assert t2[k] == pytest.approx(tau2, abs=1e-12)
        assert s2[k] == pytest.approx(top - tau2, abs=1e-12)


# --------------------------------------------------------------------------- protocol guarantees
def test_baseline_does_not_depend_on_the_response_own_reward():
    # Every piece of response g's baseline uses the other G - 1 responses, other prompts and the past
    # only, so the policy gradient is unbiased; changing Z_g must leave b_g unchanged (up to the rounding
    # of the leave-one-out sums, S - Z_g: a few ulps).
    rng = np.random.default_rng(SEED)
    est = get_estimator("kae_auto")
    for step, keys, z in schedule(rng, 40, n_prompts=8):
        base = est.compute(keys, z, step).baselines
        for g in rng.choice(len(z), size=min(3, len(z)), replace=False):
            z2 = z.copy()
            z2[g] = 1.0 - z2[g]
            assert est.compute(keys, z2, step).baselines[g] == pytest.approx(base[g], abs=1e-12)
        est.update(keys, z, step)



def test_save_resume_is_bit_identical_and_a_failed_load_changes_nothing():
    # (tests/test_advantage_robustness.py corrupts every leaf of every estimator's state; this is the
    # kae_auto specifics: evictions under max_prompts, the pooled statistics, the analysis cache.)
    rng = np.random.default_rng(SEED)
    run = schedule(rng, 80, n_prompts=12, p_skip=0.6)
    a = get_estimator("kae_auto", max_prompts=10)  # 12 prompts: evictions happen
    for step, keys, z in run[:50]:
        a.compute(keys, z, step)
        a.update(keys, z, step)
    assert a.bank.evicted > 0
    state = pickle.loads(pickle.dumps(a.state_dict()))
    b = get_estimator("kae_auto", max_prompts=10)
    b.load_state_dict(state)
    c = get_estimator("kae_auto", max_prompts=10)
    c.load_state_dict(state)
    step, keys, z = run[50]
    c.compute(keys, z, step)  # leaves an analysis in the cache: a load must drop it
    broken = pickle.loads(pickle.dumps(state))
    broken["pooled"]["drift"][1, 0] = -1.0
    with pytest.raises(ValueError, match="negative sum of squares"):
        c.load_state_dict(broken)
    broken = pickle.loads(pickle.dumps(state))
    broken["bank"]["last"][0] = 10**6
    with pytest.raises(ValueError, match="after the last update"):
        c.load_state_dict(broken)
    c.load_state_dict(state)
    for step, keys, z in run[50:]:
        ra, rb, rc = (e.compute(keys, z, step) for e in (a, b, c))
        np.testing.assert_array_equal(ra.baselines, rb.baselines)
        np.testing.assert_array_equal(ra.baselines, rc.baselines)
        for e in (a, b, c):
            e.update(keys, z, step)
    with pytest.raises(ValueError, match="same options"):
        get_estimator("kae_auto").load_state_dict(state)


def test_memory_is_bounded_by_max_prompts():
    # Every prompt is served once and never again: the bank keeps at most max_prompts rows (the least
    # recently updated go first), so memory does not grow with training.
    est = get_estimator("kae_auto", max_prompts=50)
    for step in range(1, 400):
        keys = [step, step]
        est.compute(keys, np.array([1.0, 0.0]), step)
        est.update(keys, np.array([1.0, 0.0]), step)
        assert len(est.bank) <= 50
    assert est.bank.evicted == 399 - 50 and est.bank.W.shape[0] <= 100


def test_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    est = get_estimator("kae_auto")
    z = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float32)
    res = est.compute(torch.tensor([3, 3, 5, 5]), z, 1)
    assert isinstance(res.baselines, torch.Tensor) and res.baselines.dtype == torch.float32
    ref = get_estimator("kae_auto").compute([3, 3, 5, 5], z.double().numpy(), 1).baselines
    np.testing.assert_allclose(res.baselines.double().numpy(), ref, rtol=1e-6)  # float32 rounding


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: KAEAuto(windows=[4.0, 2.0]), ValueError, "windows must be increasing"),
        (lambda: KAEAuto(windows=[]), ValueError, "windows must be"),
        (lambda: KAEAuto(z=0), ValueError, "z must be"),
        (lambda: KAEAuto(drift_memory=-1), ValueError, "drift_memory"),
        (lambda: KAEAuto(reward_range=(1.0, 0.0)), ValueError, "low < high"),
        (lambda: KAEAuto(reward_range=3), TypeError, "reward_range"),
        (lambda: KAEAuto(reward_range=(0.0, 0.5, 1.0)), ValueError, "pair"),
        (lambda: KAEAuto(windows=[[1.0, 2.0]]), TypeError, "windows"),
        (lambda: KAEAuto(max_prompts=0), ValueError, "max_prompts"),
        (lambda: KAEAuto(shrink="no"), TypeError, "shrink"),
        (lambda: KAEAuto().compute([0], np.array([2.0]), 1), ValueError, "reward_range"),
        (lambda: KAEAuto().update([0], np.array([-0.5]), 1), ValueError, "reward_range"),
        (lambda: KAEAuto().compute([0], np.array([np.nan]), 1), ValueError, "non-finite"),
    ],
)
def test_bad_input_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_graded_rewards_with_another_range():
    # Rewards in [-1, 1]: the same estimator on the affine image gives the affine image of the baselines.
    rng = np.random.default_rng(SEED)
    a, b = get_estimator("kae_auto"), get_estimator("kae_auto", reward_range=(-1.0, 1.0))
    for step, keys, z in schedule(rng, 30, n_prompts=8):
        zg = np.clip(z * 0.7 + 0.15 * rng.random(len(z)), 0, 1)
        ba = a.compute(keys, zg, step).baselines
        bb = b.compute(keys, 2 * zg - 1, step).baselines
        np.testing.assert_allclose(bb, 2 * np.asarray(ba) - 1, atol=1e-9)
        a.update(keys, zg, step)
        b.update(keys, 2 * zg - 1, step)


# --------------------------------------------------------------------------- theory
def test_without_drift_the_widest_window_is_kept():
    # Propagation: with a constant value there is no drift to find, so (after the first steps) almost
    # every response should use the widest window; z was calibrated for >= 95% under the Lepski cap
    # alone, and the pooled drift test adds its own (rare) alarms: require >= 90%.
    rng = np.random.default_rng(SEED)
    V = rng.uniform(0.1, 0.9, 32)
    est = get_estimator("kae_auto")
    widest = []
    for step in range(1, 121):
        keys = np.repeat(np.arange(32), 4)
        z = (rng.random(keys.size) < V[keys]).astype(float)
        est.compute(keys, z, step)
        if step > 20:
            widest.append(np.mean(est.window_ == DEFAULT_WINDOWS[-1]))
        est.update(keys, z, step)
    assert np.mean(widest) >= 0.9


def test_a_rare_failure_of_an_easy_prompt_is_not_a_change():
    # A prompt at 0.99 with a long history: three current rewards 1, 1, 0 (probability 3%) are 5.7 raw
    # standard errors from 0.99 but within 2.4 on Anscombe's scale (0.54 vs 2.4 / sqrt(4 * 3 + 2) = 0.64):
    # the widest window stays, instead of a baseline of 0.5 from the group alone.
    est = get_estimator("kae_auto", shrink=False)
    for step in range(1, 101):
        z = np.ones(40)
        z[step % 40] = 0.0 if step % 4 == 0 else 1.0  # one failure every 4 steps: V ~ 1 - 1/160
        keys = np.repeat(np.arange(10), 4)
        est.update(keys, z, step)
    res = est.compute([0, 0, 0, 0], np.array([1.0, 1.0, 1.0, 0.0]), 101)
    assert np.all(est.window_ == DEFAULT_WINDOWS[-1])
    assert np.all(np.asarray(res.baselines) > 0.95)


def test_after_an_abrupt_change_the_window_shrinks_then_regrows():
    # Values jump by 0.5 at step 61: the pooled forward errors of the wide windows jump by ~0.25 x (their
    # share of pre-change weight)^2, far beyond their noise, so the chosen windows shrink within a few
    # steps; once the pre-change data have decayed (and the drift memory forgot the jump) they regrow.
    rng = np.random.default_rng(SEED)
    V = rng.uniform(0.1, 0.4, 32)
    est = get_estimator("kae_auto")
    med = {}
    for step in range(1, 241):
        keys = np.repeat(np.arange(32), 4)
        z = (rng.random(keys.size) < V[keys] + 0.5 * (step > 60)).astype(float)
        est.compute(keys, z, step)
        med[step] = np.median(est.window_)
        est.update(keys, z, step)
    assert med[60] == DEFAULT_WINDOWS[-1]
    assert max(med[s] for s in range(64, 70)) <= 16
    assert med[240] >= 64
