"""Advantage estimators against hostile and careless input: saved states (round trips and
corruption), option types, prompt keys, extreme rewards, memory bounds.

Every registered estimator is covered by name from the registry, so a new one inherits
these checks.
"""

import copy
import inspect
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelvalue.advantage import ESTIMATORS, get_estimator
from kernelvalue.advantage.base import REWARD_LIMIT, estimator_params

ALL = sorted(ESTIMATORS)
STATEFUL = sorted(n for n, cls in ESTIMATORS.items() if cls.stateful)
# Small bounds, so that short runs evict prompts and fill rows (passed where an estimator takes them).
SMALL = {"max_prompts": 6, "max_per_prompt": 4}


def make(name, **kw):
    accepted = estimator_params(name)
    return get_estimator(name, **{k: v for k, v in {**SMALL, **kw}.items() if k in accepted})


def run_of(rng, steps, n_keys=20, skip=0.3):
    """(step, keys, rewards) with rewards in {0, 1/2, 1} (SPO needs [0, 1]) and random step gaps."""
    out, step = [], 0
    for _ in range(steps):
        step += 1 + int(rng.random() < skip) * int(rng.integers(1, 4))
        ids = rng.choice(n_keys, size=int(rng.integers(1, 5)), replace=False)
        keys = [int(k) for k in ids for _ in range(int(rng.integers(1, 4)))]
        out.append((step, keys, rng.integers(0, 3, size=len(keys)) / 2.0))
    return out


def drive(est, run):
    out = []
    for step, keys, z in run:
        kw = {"values": np.full(len(z), 0.5)} if est.needs_values else {}
        out.append(est.compute(keys, z, step, **kw))
        est.update(keys, z, step)
    return out


def same_state(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def leaves(state, path=()):
    """Paths to every leaf of a nested state dict (arrays, numbers, strings, lists)."""
    for k, v in state.items():
        if isinstance(v, dict):
            yield from leaves(v, path + (k,))
        yield path + (k,)


def counters(state, word):
    return [v for p in leaves(state) if word in p[-1] and isinstance(v := _get(state, p), int)]


def _get(state, path):
    for k in path:
        state = state[k]
    return state


# ----------------------------------------------------------------------------- state round trips
@pytest.mark.parametrize("name", STATEFUL)
def test_save_resume_is_bit_identical_after_evictions(name, rng):
    run = run_of(rng, 80)
    a = make(name)
    drive(a, run[:40])
    assert all(c > 0 for c in counters(a.state_dict(), "evicted"))  # the bounds bound, and resume with them
    b = make(name)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    assert same_state(a.state_dict(), b.state_dict())
    for ra, rb in zip(drive(a, run[40:]), drive(b, run[40:])):
        np.testing.assert_array_equal(ra.advantages, rb.advantages)
        np.testing.assert_array_equal(ra.baselines, rb.baselines)
    assert same_state(a.state_dict(), b.state_dict())


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(STATEFUL),
    steps=st.lists(
        st.tuples(st.integers(1, 3), st.lists(st.tuples(st.integers(0, 9), st.sampled_from([0.0, 0.5, 1.0])), min_size=1, max_size=8)),
        min_size=2, max_size=25,
    ),
    cut=st.floats(0, 1),
)  # fmt: skip
def test_resume_at_any_step_continues_exactly(name, steps, cut):
    run, step = [], 0
    for gap, batch in steps:
        step += gap
        run.append((step, [k for k, _ in batch], np.array([r for _, r in batch])))
    k = int(cut * (len(run) - 1))
    a = make(name, max_prompts=8, max_per_prompt=2)  # 10 keys: some are evicted
    drive(a, run[:k])
    b = make(name, max_prompts=8, max_per_prompt=2)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    for ra, rb in zip(drive(a, run[k:]), drive(b, run[k:])):
        np.testing.assert_array_equal(ra.advantages, rb.advantages)
    assert same_state(a.state_dict(), b.state_dict())


# ----------------------------------------------------------------------------- corrupt states
def mutations(state):
    """(label, corrupted deep copy) for every leaf: removed, NaN, a string, one entry short."""
    for path in leaves(state):
        value = _get(state, path)
        variants = [("missing", None), ("string", "x")]
        if isinstance(value, (float, np.ndarray)) or (isinstance(value, int) and not isinstance(value, bool)):
            variants.append(("nan", math.nan))
        if isinstance(value, np.ndarray) and value.size:
            variants += [("short", value.reshape(-1)[:-1].reshape(-1)), ("inf entry", None)]
        if isinstance(value, list) and value:
            variants.append(("short", value[:-1]))
        for label, new in variants:
            bad = copy.deepcopy(state)
            parent = _get(bad, path[:-1])
            if label == "missing":
                del parent[path[-1]]
            elif label == "inf entry":
                arr = parent[path[-1]].astype(np.float64)
                arr.reshape(-1)[0] = np.inf
                parent[path[-1]] = arr
            elif label == "nan" and isinstance(value, np.ndarray):
                arr = value.astype(np.float64)
                arr.reshape(-1)[0] = np.nan
                parent[path[-1]] = arr
            else:
                parent[path[-1]] = new
            yield f"{'/'.join(map(str, path))}: {label}", bad


@pytest.mark.parametrize("name", STATEFUL)
def test_corrupt_or_foreign_state_is_refused_and_changes_nothing(name, rng):
    src = make(name)
    drive(src, run_of(rng, 30))
    state = src.state_dict()
    dst = make(name)
    drive(dst, run_of(np.random.default_rng(1), 12))
    before = pickle.dumps(dst.state_dict())
    probe = [(step + 100, keys, z) for step, keys, z in run_of(np.random.default_rng(2), 3)]
    n_cases = 0
    for label, bad in mutations(state):
        with pytest.raises(ValueError):
            dst.load_state_dict(bad)
        assert pickle.dumps(dst.state_dict()) == before, label  # all or nothing
        n_cases += 1
    assert n_cases > 20
    with pytest.raises(TypeError, match="dict"):
        dst.load_state_dict([("estimator", name)])
    other = next(n for n in STATEFUL if n != name)
    with pytest.raises(ValueError, match=f"state_dict is for estimator '{name}'"):
        make(other).load_state_dict(state)
    if "max_prompts" in estimator_params(name):
        with pytest.raises(ValueError, match="max_prompts: saved 6, here 7.*same options"):
            make(name, max_prompts=7).load_state_dict(state)
    # after all the failed loads the estimator still computes what its saved state says
    fresh = make(name)
    fresh.load_state_dict(pickle.loads(before))
    for ra, rb in zip(drive(dst, probe), drive(fresh, probe)):
        np.testing.assert_array_equal(ra.advantages, rb.advantages)


# ----------------------------------------------------------------------------- options and keys
def _options(name):
    sig = inspect.signature(ESTIMATORS[name].__init__)
    return [(p.name, p.default) for p in sig.parameters.values() if p.name in estimator_params(name)]


@pytest.mark.parametrize("name", ALL)
def test_options_of_the_wrong_type_are_refused_by_name(name):
    for option, default in _options(name):
        wrong = ["no", object(), [[0.1]]] + ([] if isinstance(default, bool) else [True])
        for value in wrong:
            with pytest.raises((TypeError, ValueError), match=option):
                get_estimator(name, **{option: value})


def test_scale_std_takes_only_booleans_and_needs_a_positive_eps():
    with pytest.raises(TypeError, match="scale_std must be True or False, got 'no'"):
        get_estimator("kae", scale_std="no")
    with pytest.raises(ValueError, match="eps must be > 0 with scale_std"):
        get_estimator("kae_ll", scale_std=True, eps=0.0)
    assert get_estimator("kae", scale_std=np.bool_(True)).scale_std is True


@pytest.mark.parametrize("keys", [[[0], [0]], [{"id": 1}, {"id": 1}], [{0}, {1}], [(0, [1]), (0, [1])]])
@pytest.mark.parametrize("name", ["kae", "grpo", "ema"])
def test_unhashable_keys_name_keys(name, keys):
    with pytest.raises(TypeError, match=r"keys\[0\] is .* not hashable; keys must be one hashable prompt id"):
        get_estimator(name).compute(keys, np.array([1.0, 0.0]), 1)


# ----------------------------------------------------------------------------- extreme rewards
EXTREME = {
    "float limit, both signs": [1.7e308, -1.7e308, 1.7e308, 1e308, -1.0, 0.5],
    "float limit, one sign": [1.7e308, 1.0e308, 1.7e308, 1.6e308, 1.7e308, 1.1e308],
    "huge squares": [1e200, -3e199, 1e200, 5e199, 1e160, 0.0],
    "tiny": [1e-300, -3e-301, 2e-300, 0.0, 5e-324, 1e-310],
    "just inside the state limit": [REWARD_LIMIT, -REWARD_LIMIT, 0.0, REWARD_LIMIT, 1.0, -1.0],
    "just outside the state limit": [2 * REWARD_LIMIT, 0.0, 1.0, 0.5, 1.0, 0.0],
}
KEYS6 = [0, 0, 1, 1, 1, 2]


@pytest.mark.filterwarnings("error")  # no overflow warning either: a clear result or a clear error
@pytest.mark.parametrize("case", sorted(EXTREME))
@pytest.mark.parametrize("name", ALL)
def test_extreme_rewards_give_finite_results_or_a_clear_error(name, case):
    est = make(name)
    z = np.array(EXTREME[case])
    kw = {"values": np.zeros(6)} if est.needs_values else {}
    for step in (1, 2, 3):
        before = pickle.dumps(est.state_dict())
        try:
            res = est.compute(KEYS6, z, step, **kw)
        except ValueError as err:
            assert "rewards" in str(err)
            assert pickle.dumps(est.state_dict()) == before
        else:
            assert np.all(np.isfinite(res.advantages)) and np.all(np.isfinite(res.baselines))
        try:
            est.update(KEYS6, z, step)
        except ValueError as err:
            assert "rewards" in str(err)
            assert pickle.dumps(est.state_dict()) == before  # nothing recorded
    if est.stateful and case == "just outside the state limit":
        with pytest.raises(ValueError, match=r"accepts \|reward\| <= 3.4e\+38"):
            est.update(KEYS6, z, 4)


@pytest.mark.parametrize("name", ["grpo", "reinforce_pp"])
def test_normalised_advantages_stay_finite_for_any_finite_rewards(name):
    z = np.array(EXTREME["float limit, both signs"])
    res = get_estimator(name).compute(KEYS6, z, 1)
    # the same advantages as for the rewards divided by 2**1000 (the normalisation is scale-free;
    # not for GRPO's singleton group, whose std is verl's constant 1)
    small = get_estimator(name, eps=0.0).compute(KEYS6, np.ldexp(z, -1000), 1)
    np.testing.assert_allclose(res.advantages[:5], small.advantages[:5], rtol=1e-12)


def test_results_that_do_not_fit_the_output_dtype_are_refused():
    torch = pytest.importorskip("torch")
    z = torch.tensor([3e38, -3e38, 1.0], dtype=torch.float32)  # fine as float32 rewards; Z - baseline is not
    with pytest.raises(ValueError, match="advantages exceed the torch.float32 range.*or pass float64 rewards"):
        get_estimator("rloo").compute([0, 0, 1], z, 1)
    assert torch.isfinite(get_estimator("rloo").compute([0, 0, 1], z.double(), 1).advantages).all()
    with pytest.raises(ValueError, match="oracle.*advantages exceed the float64 range"):
        get_estimator("oracle").compute([0], np.array([1.7e308]), 1, values=np.array([-1.7e308]))


# Estimators whose baselines scale with the rewards, exactly: every operation commutes with a power of two.
# (SPO needs rewards in [0, 1]; GRPO and REINFORCE++ advantages are scale-free given eps scaled with them.)
HOMOGENEOUS = ["drgrpo", "ema", "gpg", "grpo", "jspo", "kae", "kae_cv", "kae_ll", "kae_shrink", "krpo", "oracle",
               "reinforce", "reinforce_pp", "rloo"]  # fmt: skip


@pytest.mark.parametrize("name", [n for n in HOMOGENEOUS if n in ESTIMATORS])
def test_rescaled_rewards_give_exactly_rescaled_baselines(name, rng):
    # Stateful estimators take |Z| <= 2**128 as they are; stateless ones beyond 2**128 (or below 2**-128)
    # work on the batch divided by a power of two: both must be exact, bit for bit.
    powers = (100, -100) if ESTIMATORS[name].stateful else (300, -300, 100)
    # no singleton groups: GRPO gives them verl's constant std of 1, which does not scale
    run = [(s, k, z) for s, k, z in run_of(rng, 60, n_keys=6) if min(k.count(x) for x in k) > 1]
    for k in powers:
        kw = {"eps": math.ldexp(1e-6 if name == "grpo" else 1e-8, k if name == "grpo" else 2 * k)} if name in ("grpo", "reinforce_pp") else {}
        a, b = make(name), make(name, **kw)
        for step, keys, z in run:
            v = {"values": np.full(len(z), 0.375)} if a.needs_values else {}
            vb = {"values": np.ldexp(v["values"], k)} if v else {}
            ra, rb = a.compute(keys, z, step, **v), b.compute(keys, np.ldexp(z, k), step, **vb)
            np.testing.assert_array_equal(rb.baselines, np.ldexp(ra.baselines, k))
            scale = 0 if name in ("grpo", "reinforce_pp") else k
            np.testing.assert_array_equal(rb.advantages, np.ldexp(ra.advantages, scale))
            a.update(keys, z, step)
            b.update(keys, np.ldexp(z, k), step)


def test_zero_eps_and_equal_rewards_give_zero_advantages_not_nan():
    z = np.full(3, 0.1)  # sum / 3 rounds away from 0.1: the refined mean does not
    np.testing.assert_array_equal(get_estimator("grpo", eps=0.0).compute([0, 0, 0], z, 1).advantages, 0.0)
    np.testing.assert_array_equal(get_estimator("reinforce_pp", eps=0.0).compute([0, 1, 2], z, 1).advantages, 0.0)
    np.testing.assert_array_equal(get_estimator("gpg").compute([0, 0, 0, 1], np.append(z, 1.0), 1).advantages, [0, 0, 0, 4])


# ----------------------------------------------------------------------------- memory bounds
@pytest.mark.parametrize("name", [n for n in STATEFUL if "max_prompts" in estimator_params(n)])
def test_a_flood_of_new_prompts_keeps_at_most_max_prompts(name):
    est = make(name, max_prompts=64, kernel="exponential") if "kernel" in estimator_params(name) else make(name, max_prompts=64)
    for step in range(1, 61):
        keys = np.repeat(np.arange(step * 50, step * 50 + 50), 2)
        z = np.tile([1.0, 0.0], 50)
        est.compute(keys, z, step)
        est.update(keys, z, step)
    state = est.state_dict()
    held = [len(_get(state, p)) for p in leaves(state) if p[-1] == "keys"]
    assert held and all(h <= 64 for h in held)
    assert sum(counters(state, "evicted")) == 60 * 50 - 64
    keys = np.arange(10_000, 10_065)  # one step with more prompts than the bound: refused, nothing recorded
    with pytest.raises(ValueError, match="65 distinct prompts but max_prompts=64"):
        est.update(keys, np.ones(65), 61)
    assert same_state(est.state_dict(), state)


def test_trackers_forget_the_least_recently_updated_prompt(rng):
    # EMA with room for 3 prompts, one prompt per step (no ties): a forgotten prompt is unseen again.
    est, ref, seen = get_estimator("ema", decay=0.5, max_prompts=3), {}, []
    for step in range(1, 80):
        key, z = int(rng.integers(0, 6)), rng.integers(0, 2, size=2).astype(float)
        gm = float(np.mean(seen)) if seen else 0.0
        assert est.compute([key, key], z, step).baselines[0] == (ref[key][0] if key in ref else gm)
        est.update([key, key], z, step)
        if key not in ref and len(ref) == 3:
            del ref[min(ref, key=lambda k: ref[k][1])]
        ref[key] = (0.5 * ref[key][0] + 0.5 * z.mean() if key in ref else z.mean(), step)
        seen += list(z)


@pytest.mark.parametrize(
    "name,path,value,match",
    [
        ("spo", ("table", "alpha"), 0.0, "below"),  # Beta parameters must be > 0
        ("krpo", ("table", "P"), -1.0, "below"),  # a variance
        ("ema", ("table", "last"), 10**6, "after the last update"),
        ("kae_cv", ("cv", "bandwidth"), 0.123, "neither the initial bandwidth nor a grid point"),
        ("kae_cv", ("cv", "scores"), -1.0, "below"),
        ("kae", ("total",), 1e300, "exceeds count"),
        ("kae", ("last_seen",), 0, "outside"),
    ],
)
def test_states_that_break_an_invariant_are_refused(name, path, value, match, rng):
    est = make(name)
    drive(est, run_of(rng, 10))
    state = est.state_dict()
    target = _get(state, path[:-1])
    old = target[path[-1]]
    target[path[-1]] = np.full_like(old, value) if isinstance(old, np.ndarray) else value
    with pytest.raises(ValueError, match=match):
        make(name).load_state_dict(state)
