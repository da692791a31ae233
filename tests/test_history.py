"""RewardHistory (bounded per-prompt store) and PromptScheduler (the paper's schedule)."""

import math
import pickle

import numpy as np
import pytest

from kernelvalue.advantage import PromptScheduler, RewardHistory
from kernelvalue.advantage.history import MOMENTS


def _feed(hist, rng, steps, n_keys=12, per_step=5, gmax=4, skip_prob=0.3):
    """Random appends; returns the full list of (key, step, n, sum, sumsq) appended."""
    log = []
    for step in range(1, steps + 1):
        if rng.random() < skip_prob:
            continue
        keys = rng.choice(n_keys, size=per_step, replace=False).tolist()
        counts = rng.integers(1, gmax + 1, size=per_step).astype(float)
        z = [rng.random(int(c)) for c in counts]
        sums = np.array([x.sum() for x in z])
        sumsq = np.array([(x * x).sum() for x in z])
        hist.append(keys, counts, sums, sumsq, step)
        log += [(k, step, c, s, q) for k, c, s, q in zip(keys, counts, sums, sumsq)]
    return log


def _brute(log, key, step, h, kern, window="relative"):
    out = dict.fromkeys(MOMENTS, 0.0)
    for k, s_, n, s, q in log:
        if k != key or s_ >= step:
            continue
        u = (step - s_) / (step * h) if window == "relative" else (step - s_) / h
        w = kern(u)
        d = -u
        out["w0"] += w * n
        out["wz"] += w * s
        out["wzz"] += w * q
        out["w2"] += w * w * n
        out["wd"] += w * n * d
        out["wdd"] += w * n * d * d
        out["wdz"] += w * s * d
    return out


KERNEL_FORMULAS = {
    "triangular": lambda u: max(0.0, 1 - abs(u)),
    "epanechnikov": lambda u: 0.75 * (1 - u * u) if abs(u) <= 1 else 0.0,
    "exponential": lambda u: 0.5 * math.exp(-abs(u)),
    "gaussian": lambda u: math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi),
}


@pytest.mark.parametrize(
    "kernel,window,h",
    [("epanechnikov", "relative", 0.3), ("exponential", "relative", 0.3), ("triangular", "relative", 0.3),
     ("triangular", "absolute", 7.0), ("gaussian", "absolute", 1.5), ("exponential", "absolute", 0.2)],
)  # fmt: skip
def test_lookup_matches_brute_force(kernel, window, h, rng):
    # absolute gaussian h=1.5 and exponential h=0.2: records die (K underflows to 0) after 58 and 149 steps
    hist = RewardHistory(kernel, bandwidth=h, max_per_prompt=None, window=window, sweep_every=5)
    log = []
    for start in (0, 60, 120, 180):  # lookups along the way, as pruning proceeds
        log += [(k, st + start, n, s, q) for k, st, n, s, q in _feed(_Offset(hist, start), rng, steps=60)]
        keys = list(range(14))  # two never-seen keys get zeros
        step = start + 61
        got = hist.lookup(keys, step=step, moments=tuple(MOMENTS))
        for i, key in enumerate(keys):
            ref = _brute(log, key, step, h, KERNEL_FORMULAS[kernel], window)
            for name in MOMENTS:
                # sums of <= 240*4 terms of size <= 4 (times |d| <= 1/h <= 5): 1e-11 absolute is >100x rounding
                assert got[name][i] == pytest.approx(ref[name], abs=1e-11), (kernel, key, name)
    if window == "absolute" and kernel != "exponential":
        # a record lives tau h steps (tau: support, or where K underflows to 0)
        tau = {"triangular": 1.0, "gaussian": 38.6}[kernel]
        assert all(hist.records(k)[:, 0].min() >= 240 - tau * h for k in hist.keys())


class _Offset:
    """A RewardHistory whose append() shifts steps by ``start`` (to continue _feed's runs)."""

    def __init__(self, hist, start):
        self.hist, self.start = hist, start

    def append(self, keys, counts, sums, sumsq, step):
        self.hist.append(keys, counts, sums, sumsq, step + self.start)


def test_min_weight_truncates_infinite_kernels_and_frees_their_records(rng):
    # K truncated where it falls to min_weight * K(0): exp(-u) <= 1e-3 beyond u = log(1000)
    h, cut = 3.0, math.log(1000.0)
    hist = RewardHistory("exponential", bandwidth=h, window="absolute", min_weight=1e-3, max_per_prompt=None)
    log = _feed(hist, rng, steps=80)
    trunc = lambda u: 0.5 * math.exp(-u) if u <= cut else 0.0  # noqa: E731
    got = hist.lookup(list(range(12)), step=81, moments=("w0", "wz", "w2"))
    for key in range(12):
        ref = _brute(log, key, 81, h, trunc, "absolute")
        for name in ("w0", "wz", "w2"):
            assert got[name][key] == pytest.approx(ref[name], abs=1e-12)
    assert hist.n_records <= 12 * (math.ceil(cut * h) + 1)  # only the last ~21 steps are held


def test_dead_records_are_dropped_and_never_change_results(rng):
    # Unpruned reference: s*h >= 1 means nothing ever dies; lookups at the smaller h agree.
    pruned = RewardHistory("triangular", bandwidth=0.2, max_per_prompt=None, sweep_every=4)
    full = RewardHistory("triangular", bandwidth=1.0, max_per_prompt=None)
    rng2 = np.random.default_rng(1)
    for step in range(1, 301):
        keys = rng.choice(30, size=6, replace=False).tolist()
        counts = rng.integers(1, 5, size=6).astype(float)
        sums = counts * rng.random(6)
        pruned.append(keys, counts, sums, sums, step)
        full.append(keys, counts, sums, sums, step)
        if step % 25 == 0:
            q = rng2.choice(32, size=10, replace=False).tolist()
            a = pruned.lookup(q, step=step + 1, moments=tuple(MOMENTS))
            b = full.lookup(q, step=step + 1, bandwidth=0.2, moments=tuple(MOMENTS))
            for name in MOMENTS:
                np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-12)
    assert pruned.n_records < full.n_records / 3  # the 0.2-window keeps ~ a fifth of 300 steps
    # Every record kept is still inside the current window; every one dropped was outside.
    for key in pruned.keys():
        steps = pruned.records(key)[:, 0]
        assert np.all(steps >= 300 * (1 - 0.2) - 1e-9)


def test_cap_bounds_infinite_support_kernels(rng):
    hist = RewardHistory("gaussian", bandwidth=0.2, max_per_prompt=7)
    for step in range(1, 101):
        hist.append([0, 1], [2.0, 1.0], [1.0, 0.0], [1.0, 0.0], step)
    for key in (0, 1):
        rec = hist.records(key)
        assert rec.shape[0] == 7
        np.testing.assert_array_equal(rec[:, 0], np.arange(94, 101))  # the newest 7 steps, in order
    assert hist.capacity <= 8  # rows never grow past the cap (rounded to a power of two)


@pytest.mark.parametrize("kernel,h,cap", [("triangular", 0.3, 1), ("gaussian", 0.6, 3), ("epanechnikov", 0.2, 5)])
def test_cap_keeps_the_newest_live_records_exactly(kernel, h, cap, rng):
    # Reference: per prompt a plain list; at each append its dead records go (weight zero now and
    # forever), a new step then evicts the oldest record once `cap` are held.
    hist = RewardHistory(kernel, bandwidth=h, max_per_prompt=cap, sweep_every=3)
    kern, support = KERNEL_FORMULAS[kernel], {"triangular": 1.0, "epanechnikov": 1.0, "gaussian": np.inf}[kernel]
    ref, step = {}, 0
    for _ in range(80):
        step = max(step + int(rng.integers(0, 3)), 1)  # repeated steps merge
        keys = rng.choice(8, size=3, replace=False).tolist()
        counts = rng.integers(1, 4, 3).astype(float)
        sums = counts * rng.random(3)
        hist.append(keys, counts, sums, sums, step)
        for k, c, s in zip(keys, counts, sums):
            recs = [r for r in ref.get(k, []) if (step - r[0]) / (step * h) <= support]
            if recs and recs[-1][0] == step:
                recs[-1] = (step, recs[-1][1] + c, recs[-1][2] + s)
            else:
                recs = (recs + [(step, c, s)])[-cap:]
            ref[k] = recs
        q = step + 1
        got = hist.lookup(list(range(8)), step=q)
        for k in range(8):
            assert hist.records(k).shape[0] <= cap
            w0 = sum(n * kern((q - st) / (q * h)) for st, n, _ in ref.get(k, []))
            wz = sum(sv * kern((q - st) / (q * h)) for st, _, sv in ref.get(k, []))
            # sums of <= cap terms of size <= 3: 1e-12 absolute is far above rounding
            assert got["w0"][k] == pytest.approx(w0, abs=1e-12) and got["wz"][k] == pytest.approx(wz, abs=1e-12)


def test_same_step_appends_merge_into_one_record():
    hist = RewardHistory(bandwidth=0.5)
    hist.append(["a"], [2], [1.0], [1.0], 3)
    hist.append(["a", "b"], [1, 1], [1.0, 0.0], [1.0, 0.0], 3)
    rec = hist.records("a")
    np.testing.assert_array_equal(rec, [[3, 3, 2.0, 2.0]])
    assert hist.n_entries == 4 and hist.n_records == 2


def test_sweep_forgets_prompts_whose_records_all_died():
    hist = RewardHistory("triangular", bandwidth=0.1, sweep_every=5)
    hist.append(["old"], [1], [1.0], [1.0], 1)
    for step in range(2, 40):
        hist.append(["new"], [1], [0.0], [0.0], step)
    assert "old" not in hist and "new" in hist
    assert hist.lookup(["old"], step=40)["w0"][0] == 0.0


def test_state_dict_round_trip_is_exact(rng):
    a = RewardHistory("epanechnikov", bandwidth=0.25, max_per_prompt=16, sweep_every=3)
    _feed(a, rng, steps=80)
    b = RewardHistory("epanechnikov", bandwidth=0.25)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    keys = list(range(12))
    for step in range(81, 120):
        ka = a.lookup(keys, step=step, moments=tuple(MOMENTS))
        kb = b.lookup(keys, step=step, moments=tuple(MOMENTS))
        for name in MOMENTS:
            np.testing.assert_array_equal(ka[name], kb[name])
        new = rng.choice(12, size=4, replace=False).tolist()
        for h in (a, b):
            h.append(new, [2, 2, 2, 2], [1.0, 0.5, 2.0, 0.0], [1.0, 0.5, 2.0, 0.0], step)
    assert a.n_records == b.n_records and a.keys() == b.keys()


def test_history_errors():
    with pytest.raises(ValueError, match="bandwidth"):
        RewardHistory(bandwidth=0.0)
    with pytest.raises(ValueError, match="kernel"):
        RewardHistory("no-such-kernel")
    with pytest.raises(ValueError, match="max_per_prompt"):
        RewardHistory(max_per_prompt=0)
    hist = RewardHistory(bandwidth=0.2)
    hist.append([1], [1], [1.0], [1.0], 5)
    with pytest.raises(ValueError, match="backwards"):
        hist.append([1], [1], [1.0], [1.0], 4)
    with pytest.raises(ValueError, match="exceeds the history's bandwidth"):
        hist.lookup([1], step=6, bandwidth=0.5)
    with pytest.raises(ValueError, match="unknown moments"):
        hist.lookup([1], step=6, moments=("w9",))
    other = RewardHistory(bandwidth=0.3)
    with pytest.raises(ValueError, match="same ones"):
        other.load_state_dict(hist.state_dict())


# ----------------------------------------------------------------------------- scheduler
def test_scheduler_repeats_each_minibatch_J_times_and_covers_every_prompt():
    s = PromptScheduler(n_prompts=12, prompts_per_step=4, J=3, seed=7)
    steps = [next(s) for _ in range(2 * s.steps_per_epoch)]
    assert s.steps_per_epoch == 9
    for b in range(0, len(steps), 3):
        block = steps[b : b + 3]
        assert all(np.array_equal(block[0], x) for x in block)
        if b + 3 < len(steps):
            assert not np.array_equal(block[0], steps[b + 3])
    for e in range(2):
        epoch = np.concatenate(steps[e * 9 : (e + 1) * 9 : 3])
        np.testing.assert_array_equal(np.sort(epoch), np.arange(12))  # each prompt exactly once
    first, second = np.concatenate(steps[0:9:3]), np.concatenate(steps[9:18:3])
    assert not np.array_equal(first, second)  # reshuffled


def test_scheduler_tops_up_a_short_last_minibatch():
    s = PromptScheduler(n_prompts=10, prompts_per_step=4, J=1, seed=0)
    batches = [next(s) for _ in range(3)]
    assert all(b.shape == (4,) and len(set(b.tolist())) == 4 for b in batches)
    assert set(np.concatenate(batches).tolist()) == set(range(10))


def test_scheduler_resume_is_exact():
    a = PromptScheduler(50, 8, 4, seed=3)
    for _ in range(37):
        next(a)
    b = PromptScheduler(50, 8, 4, seed=999)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    for _ in range(100):
        np.testing.assert_array_equal(next(a), next(b))
    c, d = PromptScheduler(50, 8, 4, seed=3), PromptScheduler(50, 8, 4, seed=3)
    assert all(np.array_equal(next(c), next(d)) for _ in range(20))  # seeded


def test_scheduler_errors():
    with pytest.raises(ValueError, match="prompts_per_step"):
        PromptScheduler(4, 5, 2, 0)
    with pytest.raises(ValueError, match="J must be"):
        PromptScheduler(4, 2, 0, 0)
    with pytest.raises(ValueError, match="scheduler state"):
        PromptScheduler(4, 2, 2, 0).load_state_dict(PromptScheduler(6, 2, 2, 0).state_dict())


# ----------------------------------------------------------------------------- bounds and state checks
def test_max_prompts_forgets_the_least_recently_updated_prompts(rng):
    # One prompt per step, so "least recently updated" is unambiguous; a forgotten prompt starts afresh.
    hist = RewardHistory("gaussian", bandwidth=0.5, max_prompts=5, max_per_prompt=None)
    ref: dict = {}  # key -> list of (step, n, sum)
    for step in range(1, 121):
        key = int(rng.integers(0, 12))
        n, s = float(rng.integers(1, 4)), float(rng.random())
        if key not in ref and len(ref) == 5:
            del ref[min(ref, key=lambda k: ref[k][-1][0])]
        ref.setdefault(key, []).append((step, n, s))
        hist.append([key], [n], [s], [s], step)
        assert sorted(hist.keys()) == sorted(ref)
        got = hist.lookup(list(range(12)), step=step + 1)
        for k in range(12):
            w = [(n_ * KERNEL_FORMULAS["gaussian"]((step + 1 - st) / ((step + 1) * 0.5)), s_ * KERNEL_FORMULAS["gaussian"]((step + 1 - st) / ((step + 1) * 0.5))) for st, n_, s_ in ref.get(k, [])]  # noqa: E501
            assert got["w0"][k] == pytest.approx(sum(a for a, _ in w), abs=1e-12)
            assert got["wz"][k] == pytest.approx(sum(b for _, b in w), abs=1e-12)
    assert hist.evicted_prompts > 0 and hist.n_prompts == 5


def test_memory_stays_bounded_under_a_flood_of_new_prompts():
    # The case in miniature: every step brings only new prompts, and the exponential
    # kernel never zeroes a weight in the relative reading (u < 1/h), so only max_prompts frees rows.
    cap, per_prompt = 256, 4
    hist = RewardHistory("exponential", bandwidth=0.2, max_prompts=cap, max_per_prompt=per_prompt)
    for step in range(1, 301):
        keys = list(range(step * 100, step * 100 + 100))
        hist.append(keys, np.ones(100), np.ones(100), np.ones(100), step)
        assert hist.n_prompts <= cap
        assert hist.nbytes <= cap * (32 * per_prompt + 16)  # the documented bound
    assert hist.evicted_prompts == 300 * 100 - cap
    with pytest.raises(ValueError, match="max_prompts"):  # one step alone exceeds the bound
        hist.append(list(range(cap + 1)), np.ones(cap + 1), np.ones(cap + 1), np.ones(cap + 1), 301)
    assert hist.n_prompts == cap and hist.keys()[0] >= 300 * 100 - cap  # refused before any change


def test_arrays_shrink_once_prompts_die():
    hist = RewardHistory("triangular", bandwidth=0.1, sweep_every=4)
    hist.append(list(range(5000)), np.ones(5000), np.ones(5000), np.ones(5000), 1)
    big = hist.nbytes
    for step in range(2, 60):
        hist.append(["kept"], [1.0], [1.0], [1.0], step)
    assert hist.n_prompts == 1 and hist.nbytes < big / 100


def _mutations(state):
    """(label, corrupted copy) pairs that must each be refused."""
    p, cap = state["n"].shape
    out = []

    def put(label, **kw):
        bad = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
        bad.update(kw)
        out.append((label, bad))

    for key in state:
        bad = dict(state)
        del bad[key]
        out.append((f"missing {key}", bad))
    for name in ("step", "n", "s", "ss"):
        put(f"{name} shape", **{name: state[name][:, :-1]})
    for name in ("n", "s", "ss"):
        for v in (np.nan, np.inf):
            arr = state[name].copy()
            arr[0, state["head"][0]] = v
            put(f"{name} {v}", **{name: arr})
    put("head past cap", head=np.full(p, cap))
    put("len past cap", len=np.full(p, cap + 1))
    ghost, r = state["n"].copy(), int(np.argmin(state["len"]))
    ghost[r, (state["head"][r] + state["len"][r]) % cap] = 2.0  # data in an empty cell
    put("data outside the records", n=ghost)
    back = state["step"].copy()
    back[0] = back[0][::-1]
    put("steps out of order", step=back)
    put("step after last_step", last_step=int(state["step"].max()) - 1)
    put("count below one", n=np.where(state["n"] > 0, 0.5, 0.0))
    put("keys repeated", keys=[state["keys"][0]] * p)
    put("keys unhashable", keys=[[k] for k in state["keys"]])
    put("cap a string", cap="8")
    put("other kernel", kernel="gaussian")
    put("other window", window="absolute")
    return out


def test_corrupt_state_is_refused_and_changes_nothing(rng):
    src = RewardHistory("triangular", bandwidth=0.5, max_per_prompt=6)
    _feed(src, rng, steps=30, gmax=3)
    state = src.state_dict()
    assert all(state["len"] >= 2) and state["n"].shape[1] > state["len"].min()  # every check has something to bite
    dst = RewardHistory("triangular", bandwidth=0.5, max_per_prompt=6)
    _feed(dst, rng, steps=10)
    before = pickle.dumps(dst.state_dict())
    for label, bad in _mutations(state):
        with pytest.raises(ValueError):
            dst.load_state_dict(bad)
        assert pickle.dumps(dst.state_dict()) == before, label  # all or nothing
    dst.load_state_dict(state)  # the intact state still loads
    assert dst.keys() == src.keys()
