"""Checkpoints, resume and the warm-start cache under damage, interruption, hostile files and careless flags."""

import copy
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("reproduce.rewards", reason="reproduce.rewards is not installed")

from kernelvalue.advantage import ESTIMATORS, get_estimator
from reproduce.checkpoint import HEADER, MAGIC, CheckpointError, file_lock, read_checkpoint, write_checkpoint
from reproduce.models import warm_start
from reproduce.presets import Config, get_preset
from reproduce.report import entry_parser
from reproduce.trainer import (
    RESUME_OVERRIDES,
    TIMING_FIELDS,
    Trainer,
    config_from_args,
    main,
    parse_args,
)
from test_trainer import micro

REPO = Path(__file__).resolve().parents[1]
CORRUPT = "corrupt|not a kernelvalue checkpoint|format version"

torch.set_num_threads(1)


def quiet(*_):
    pass


def assert_same(a, b, where="state"):
    """Exact equality of nested states: tensors, numpy arrays, containers, primitives."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where


def strip_timing(history):
    return [{k: v for k, v in m.items() if k not in TIMING_FIELDS} for m in history]


def sample_state():
    """Everything a trainer state holds: tensors, numpy arrays and scalars, tuple and int keys, RNG states."""
    return {
        "w": torch.arange(6.0).reshape(2, 3),
        "step": 7,
        "none": None,
        "big": 2**100,
        "arrays": {
            "f": np.linspace(0, 1, 5),
            "u": np.arange(4, dtype=np.uint32),
            "b": np.array([True, False]),
            "s": np.array(["a", "bc"]),
        },
        "scalars": [np.int64(3), np.float64(0.25), np.str_("p1")],
        "keys": {(1, "a"): 2, 3: "x"},
        "numpy_rng": np.random.RandomState(0).get_state(),
        "pcg": np.random.default_rng(0).bit_generator.state,
        "history": [{"step": 1, "test_greedy": None, "loss": 0.5}],
    }


# ----------------------------------------------------------------------------- the file format
@pytest.fixture
def ckpt(tmp_path):
    return write_checkpoint(sample_state(), tmp_path / "checkpoint.pt")


def test_round_trip_is_exact_and_leaves_no_temporary_files(ckpt):
    assert_same(read_checkpoint(ckpt), sample_state())
    assert ckpt.read_bytes()[: len(MAGIC)] == MAGIC
    assert [p.name for p in ckpt.parent.iterdir()] == ["checkpoint.pt"]


def test_truncated_and_extended_files_are_corrupt(ckpt):
    data = ckpt.read_bytes()
    for cut in (0, 1, 5, len(MAGIC), HEADER.size - 1, HEADER.size, HEADER.size + 1, len(data) // 2, len(data) - 1):
        ckpt.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="empty" if cut == 0 else "corrupt"):
            read_checkpoint(ckpt)
    ckpt.write_bytes(data + b"\0")
    with pytest.raises(CheckpointError, match="corrupt: longer than written"):
        read_checkpoint(ckpt)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_checkpoint(sample_state(), tmp_path_factory.mktemp("flips") / "good.pt")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_single_bit_flip_is_caught_before_unpickling(good, data):
    raw = bytearray(good.read_bytes())
    raw[data.draw(st.integers(0, len(raw) - 1), label="byte")] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    path = good.with_name("flipped.pt")
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=CORRUPT):
        read_checkpoint(path)


def test_wrong_file_types_are_named(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"model": {"w": torch.ones(1)}}, legacy)  # a plain pickle, as checkpoints were before format 1
    text = tmp_path / "config.json"
    text.write_text(json.dumps({"lr": 1e-5}))
    for path in (legacy, text):
        with pytest.raises(CheckpointError, match="not a kernelvalue checkpoint.*plain pickles"):
            read_checkpoint(path)
    with pytest.raises(CheckpointError, match="not a file"):
        read_checkpoint(tmp_path)
    write_checkpoint({"step": 1}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="did you mean .*run/checkpoint.pt"):
        read_checkpoint(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")


def _with_header(payload: bytes) -> bytes:
    """A file whose header is valid for ``payload``: the digest is no signature, anyone can compute it."""
    return HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def test_crafted_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")  # unpickling calls open(marker, "w"): a visible side effect

    buf = io.BytesIO()
    torch.save({"model": Payload(), "step": 1}, buf)
    payload = buf.getvalue()
    torch.load(io.BytesIO(payload), weights_only=False)  # the file is live: full unpickling runs it
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(_with_header(payload))
    with pytest.raises(CheckpointError, match="refused.*nothing in it was run"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        Trainer.from_checkpoint(path, log=quiet)
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path):
    path = write_checkpoint({"a": np.array([1, "x"], dtype=object)}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = write_checkpoint({"n": 1, "w": torch.zeros(3)}, tmp_path / "checkpoint.pt")

    def interrupted_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint({"n": 2}, path)
    assert read_checkpoint(path)["n"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize("str_keys", [False, True])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_state_survives_the_safe_format(name, str_keys, tmp_path):
    rng = np.random.default_rng(3)
    batches = []
    for _ in range(12):
        ids = np.repeat(rng.choice(6, size=3, replace=False), 2)
        keys = np.array([f"p{i}" for i in ids]) if str_keys else ids.astype(np.int64)
        batches.append((keys, rng.integers(0, 2, size=6).astype(float)))

    def step(est, i, keys, z):
        extra = {"values": np.full(len(z), 0.5)} if getattr(est, "needs_values", False) else {}
        res = est.compute(keys, z, i, **extra)
        est.update(keys, z, i)
        return res

    a, b = get_estimator(name), get_estimator(name)
    for i, (keys, z) in enumerate(batches[:8], start=1):
        step(a, i, keys, z)
    path = write_checkpoint({"estimator": a.state_dict()}, tmp_path / "e.pt")
    b.load_state_dict(read_checkpoint(path)["estimator"])
    for i, (keys, z) in enumerate(batches[8:], start=9):
        np.testing.assert_array_equal(step(a, i, keys, z).advantages, step(b, i, keys, z).advantages)


# ----------------------------------------------------------------------------- trainer state
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A micro run saved at step 2 (of 4), and a trainer of the same config that took one step."""
    root = tmp_path_factory.mktemp("saved")
    cfg = micro(root, steps=4, eval_every=2)
    tr = Trainer(cfg, out_dir=root / "run", log=quiet)
    tr.train(2, progress=False)
    ckpt = tr.save_checkpoint(root / "run" / "checkpoint.pt")
    victim = Trainer(cfg, log=quiet)
    victim.step()
    return cfg, ckpt, victim


def _first(d):
    return next(iter(d))


def _optimizer_tensor(state, name, value):
    per_param = state["optimizer"]["state"][_first(state["optimizer"]["state"])]
    per_param[name] = value(per_param[name])


BAD_STATES = {
    "not a dict": lambda s: [s],
    "missing part": lambda s: s.pop("optimizer"),
    "missing rng": lambda s: s["rng"].pop("numpy"),
    "NaN weight": lambda s: s["model"].__setitem__(_first(s["model"]), s["model"][_first(s["model"])] * float("nan")),
    "weight shape": lambda s: s["model"].__setitem__(_first(s["model"]), torch.zeros(3)),
    "weight dtype": lambda s: s["model"].__setitem__(_first(s["model"]), s["model"][_first(s["model"])].double()),
    "extra weight": lambda s: s["model"].__setitem__("extra.weight", torch.zeros(1)),
    "optimizer shape": lambda s: _optimizer_tensor(s, "exp_avg", lambda t: t.reshape(-1)[:1].clone()),
    "optimizer NaN": lambda s: _optimizer_tensor(s, "exp_avg_sq", lambda t: t * float("nan")),
    "optimizer groups": lambda s: s["optimizer"]["param_groups"][0]["params"].pop(),
    "sampling rng": lambda s: s["rng"].__setitem__("sample", s["rng"]["sample"][:10]),
    "numpy rng": lambda s: s["rng"].__setitem__("numpy", ("MT19937", np.zeros(3, np.uint32), 0, 0, 0.0)),
    "python rng": lambda s: s["rng"].__setitem__("python", (3, (1, 2), None)),
    "cuda rng": lambda s: s["rng"].__setitem__("cuda", ["not a tensor"]),
    "other estimator": lambda s: s.__setitem__("estimator", get_estimator("grpo").state_dict()),
    "scheduler": lambda s: s["scheduler"].__setitem__("J", 99),
    "history": lambda s: s["history"].pop(),
    "step": lambda s: s.__setitem__("step", -1),
    "wall": lambda s: s.__setitem__("wall", float("nan")),
    "changed lr": lambda s: s["config"].__setitem__("lr", 0.5),
    "invalid config": lambda s: s["config"].__setitem__("G", 0),
    "unknown config field": lambda s: s["config"].__setitem__("learning_rate", 0.5),
    "device": lambda s: s.__setitem__("device_type", "cuda"),
    "other prompts": lambda s: s.__setitem__("inputs_sha256", "0" * 64),
}


@pytest.mark.parametrize("bad", sorted(BAD_STATES))
def test_a_refused_state_changes_nothing(saved, bad):
    _, ckpt, victim = saved
    state = read_checkpoint(ckpt)
    mutated = BAD_STATES[bad](state)
    state = mutated if bad == "not a dict" else state
    before = copy.deepcopy(victim.state_dict())
    with pytest.raises(CheckpointError):
        victim.load_state_dict(state)
    assert_same(before, victim.state_dict())


def test_a_good_state_loads_whole(saved):
    cfg, ckpt, _ = saved
    tr = Trainer(cfg, log=quiet)
    state = read_checkpoint(ckpt)
    tr.load_state_dict(state)
    assert_same(tr.state_dict(), read_checkpoint(ckpt))
    assert tr.step_count == 2


@pytest.mark.parametrize(
    "field, value",
    [("lr", 0.5), ("G", 4), ("estimator", "grpo"), ("task_seed", 1), ("seed", 5), ("kl_coef", 0.1),
     ("estimator_kwargs", {"bandwidth": 0.5}), ("n_train_prompts", 32), ("micro_batch_size", 2), ("preset", "paper")],
)
def test_resume_refuses_overrides_that_change_the_run(saved, field, value):
    _, ckpt, _ = saved
    with pytest.raises(ValueError, match=f"resume cannot change {field} .*may change only {', '.join(RESUME_OVERRIDES)}"):
        Trainer.from_checkpoint(ckpt, log=quiet, **{field: value})


def test_resume_refuses_unknown_fields_and_an_end_before_the_checkpoint(saved):
    _, ckpt, _ = saved
    with pytest.raises(ValueError, match="unknown config field"):
        Trainer.from_checkpoint(ckpt, log=quiet, learning_rate=1.0)
    with pytest.raises(ValueError, match="steps=1 ends before the checkpoint's step 2"):
        Trainer.from_checkpoint(ckpt, log=quiet, steps=1)


def test_resume_applies_allowed_overrides_and_records_the_real_config(saved, tmp_path):
    cfg, ckpt, _ = saved
    tr = Trainer.from_checkpoint(ckpt, out_dir=tmp_path, log=quiet, steps=3, eval_every=1, eval_batch_size=3,
                                 device="cpu", cache_dir=cfg.cache_dir, lr=cfg.lr)  # same lr: not a change
    assert (tr.cfg.steps, tr.cfg.eval_every, tr.cfg.lr) == (3, 1, cfg.lr)
    tr.train(progress=False)
    written = json.loads((tmp_path / "config.json").read_text())
    assert (written["steps"], written["lr"], written["eval_every"]) == (3, cfg.lr, 1)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert tr.history[-1]["test_greedy"] is not None


# ----------------------------------------------------------------------------- kill -9 during a save
_KILLED_WRITER = """
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
import reproduce.checkpoint as ck
from reproduce.presets import Config
from reproduce.trainer import Trainer

cfg, out = Config(**json.loads(sys.argv[1])), Path(sys.argv[2])
tr = Trainer(cfg, out_dir=out, log=lambda *_: None)
tr.train(2, progress=False)
tr.save_checkpoint(out / "checkpoint.pt")
tr.step()
write = ck._HashingWriter.write

def dying_write(self, data):  # SIGKILL this process once part of the new checkpoint is on disk
    if self.size > 4096:
        os.kill(os.getpid(), signal.SIGKILL)
    return write(self, data)

ck._HashingWriter.write = dying_write
tr.save_checkpoint(out / "checkpoint.pt")
print("not killed")
"""


def test_kill_during_save_keeps_the_previous_checkpoint_and_resume_is_bit_exact(tmp_path):
    cfg = micro(tmp_path, steps=4, eval_every=2)
    straight = Trainer(cfg, log=quiet)  # also fills the warm-start cache the child process reads
    straight.train(4, progress=False)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", _KILLED_WRITER, json.dumps(cfg.to_dict()), str(out)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert list(out.glob(".checkpoint.pt.*.tmp")), "the kill should have hit the write"
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 2

    resumed = Trainer.from_checkpoint(out / "checkpoint.pt", out_dir=out, log=quiet)
    resumed.train(4, progress=False)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert strip_timing(straight.history) == strip_timing(resumed.history)
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    resumed.save_checkpoint(out / "checkpoint.pt")
    assert not list(out.glob(".checkpoint.pt.*.tmp"))  # the killed writer's leftover is cleaned up


# ----------------------------------------------------------------------------- the CLI
MICRO_SETS = {"n_layer": 1, "d_model": 32, "n_head": 2, "sft_steps": 10, "sft_batch_size": 8, "n_train_prompts": 8,
              "n_test": 4, "prompts_per_step": 2, "max_new_tokens": 12, "eval_batch_size": 4}


def cli(tmp_path, *extra, out="run"):
    sets = [a for k, v in MICRO_SETS.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    flags = ["--G", "2", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), *sets]
    return [*flags, *(["--out", str(tmp_path / out)] if out else []), *extra]


def run_files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_fresh_run_refuses_an_existing_run_folder_unless_overwrite(tmp_path, capsys):
    main(cli(tmp_path, "--steps", "1", "--seed", "0"))
    before = run_files(tmp_path / "run")
    assert set(before) == {".lock", "checkpoint.pt", "config.json", "metrics.csv", "metrics.jsonl"}
    with pytest.raises(FileExistsError, match="already holds a run.*--overwrite"):
        main(cli(tmp_path, "--steps", "1", "--seed", "1"))
    assert run_files(tmp_path / "run") == before  # untouched
    main(cli(tmp_path, "--steps", "1", "--seed", "1", "--overwrite"))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 1
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["seed"] == 1
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        main(cli(tmp_path, "--steps", "1", out="file"))


def test_a_second_run_on_a_busy_out_folder_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with file_lock(tmp_path / "run" / ".lock"):  # as a run in another process holds it
        with pytest.raises(FileExistsError, match="another run is writing to --out"):
            main(cli(tmp_path, "--steps", "1"))
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".lock"]


def test_a_diverged_run_never_replaces_its_last_good_checkpoint(tmp_path):
    tr = Trainer(micro(tmp_path), log=quiet)
    tr.step()
    path = tr.save_checkpoint(tmp_path / "checkpoint.pt")
    good = path.read_bytes()
    tr.step()
    with torch.no_grad():
        next(tr.model.parameters())[0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or inf at step 2.*last good checkpoint stays"):
        tr.save_checkpoint(path)
    assert path.read_bytes() == good


def test_cli_resume_continues_in_place_and_refuses_changes(tmp_path, capsys):
    main(cli(tmp_path, "--steps", "2", "--save-every", "1"))
    ckpt = str(tmp_path / "run" / "checkpoint.pt")
    for flags, field in [(["--lr", "0.5"], "lr"), (["--G", "4"], "G"), (["--set", "task_seed=1"], "task_seed"),
                         (["--estimator", "grpo"], "estimator"), (["--preset", "paper"], "preset")]:
        with pytest.raises(ValueError, match=f"resume cannot change {field}"):
            main(["--resume", ckpt, *flags])
    main(cli(tmp_path, "--steps", "2", out="other"))
    other = run_files(tmp_path / "other")
    with pytest.raises(FileExistsError, match="already holds a run"):
        main(["--resume", ckpt, "--steps", "3", "--out", str(tmp_path / "other")])
    assert run_files(tmp_path / "other") == other
    capsys.readouterr()
    main(["--resume", ckpt, "--steps", "3", "--device", "cpu", "--threads", "1"])  # no --out: its own folder
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 3
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    assert read_checkpoint(ckpt)["step"] == 3
    main(["--resume", ckpt, "--steps", "4", "--out", str(tmp_path / "fresh")])  # an empty folder is fine
    assert read_checkpoint(tmp_path / "fresh" / "checkpoint.pt")["step"] == 4
    assert read_checkpoint(ckpt)["step"] == 3  # the source run is left alone


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--threads", "0"], "--threads: must be an int >= 1"),
        (["--threads", "two"], "--threads: must be an int >= 1"),
        (["--save-every", "-1"], "--save-every: must be an int >= 0"),
    ],
)
def test_bad_cli_flags_fail_at_parse_time_naming_the_flag(flags, match, capsys):
    with pytest.raises(SystemExit):
        parse_args(flags)
    assert match in capsys.readouterr().err


@pytest.mark.parametrize("flags, match", [(["--threads", "0"], "--threads: must be an int >= 1"),
                                          (["--seeds", "0", "-1"], "--seeds: must be an int >= 0")])
def test_entry_point_flags_fail_at_parse_time(flags, match, capsys):
    with pytest.raises(SystemExit):
        entry_parser("table1", "Table 1").parse_args(flags)
    assert match in capsys.readouterr().err


def test_save_every_without_out_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--save-every needs --out"):
        main(cli(tmp_path, "--save-every", "2", out=None))


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--set", "sft_steps=0"], "sft_steps must be >= 1 when model is None"),
        (["--set", "lr=NaN"], "lr must be a finite number"),
        (["--lr", "inf"], "lr must be a finite number"),
        (["--set", "G=true"], "G must be an int"),
        (["--set", "G=2.0"], "G must be an int"),
        (["--set", "do_sample=1"], "do_sample must be true or false"),
        (["--set", "chat_template=no"], "chat_template must be true or false"),
        (["--seed", "-1"], "seed must be an int in"),
        (["--set", "task_seed=4294967296"], "task_seed must be an int in"),
        (["--set", "weight_decay=NaN"], "weight_decay must be a finite number >= 0"),
        (["--set", "kl_coef=true"], "kl_coef must be a finite number"),
        (["--set", "temperature=Infinity"], "temperature must be a finite number"),
        (["--set", "do_sample=false", "--set", "temperature=NaN"], "temperature must be a finite number"),
        (["--bandwidth", "inf"], "bandwidth'\\] must be a finite number"),
        (["--set", 'estimator_kwargs={"bandwidth": true}'], "bandwidth'\\] must be a finite number"),
        (["--set", "min_terms=1"], "min_terms must be an int >= 2"),
        (["--set", "max_terms=1"], "max_terms must be an int >= 2"),
        (["--set", "max_value=0"], "max_value must be an int >= 1"),
        (["--set", "prompts_per_step=9"], "exceeds the prompt pool"),
        (["--set", "arch=gpt2", "--set", "max_new_tokens=250"], "arch='gpt2' has 256 positions"),
        (["--set", "n_head=5", "--set", "d_model=40"], "key/value heads"),
        (["--set", "d_model=30"], "even head size"),
        (["--set", "cache_dir=5"], "cache_dir must be a non-empty string"),
        (["--set", "device=[1]"], "device must be one of"),
        (["--set", "preset=paper"], "mislabel"),
        (["--set", "no_such_field=1"], "unknown config field"),
        (["--set", "steps"], "FIELD=VALUE"),
    ],
)
def test_every_bad_value_fails_at_config_time(tmp_path, flags, match):
    with pytest.raises((ValueError, TypeError), match=match):
        config_from_args(parse_args(cli(tmp_path, *flags, out=None)))


def test_config_rejects_unhashable_and_wrongly_typed_fields():
    with pytest.raises(ValueError, match="preset must be one of"):
        Config(preset=["small"])
    with pytest.raises(ValueError, match="estimator must be a registry name"):
        get_preset("small", estimator=None)
    with pytest.raises(TypeError, match="string keys"):
        get_preset("small", estimator_kwargs={1: 2})


# ----------------------------------------------------------------------------- the warm-start cache
_RACER = """
import hashlib, json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from reproduce.models import warm_start
from reproduce.presets import Config

cfg, me, barrier = Config(**json.loads(sys.argv[1])), sys.argv[2], Path(sys.argv[3])
(barrier / me).touch()
while len(list(barrier.iterdir())) < 2:  # both processes start the warm start together
    time.sleep(0.005)
logs = []
model, _ = warm_start(cfg, log=logs.append)
weights = b"".join(t.numpy().tobytes() for t in model.state_dict().values())
print(json.dumps({"built": any("cached at" in x for x in logs), "digest": hashlib.sha256(weights).hexdigest()}))
"""


def test_two_processes_share_the_first_warm_start(tmp_path):
    cfg = micro(tmp_path, sft_steps=40)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, json.dumps(cfg.to_dict()), name, str(barrier)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, True]  # one built it, the other waited and loaded it
    assert results[0]["digest"] == results[1]["digest"]
    cache = Path(cfg.cache_dir)
    assert not list(cache.glob("*.tmp"))
    warm_start(cfg, log=lambda msg: pytest.fail(f"the entry should be complete: {msg}"))


def test_a_damaged_cache_entry_is_rebuilt_not_used(tmp_path):
    cfg = micro(tmp_path)
    model, _ = warm_start(cfg, log=quiet)
    entry = Path(cfg.cache_dir) / f"warmstart-{cfg.warm_start_key()}"
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x10
    weights.write_bytes(bytes(data))
    stale = Path(cfg.cache_dir) / f".warmstart-{cfg.warm_start_key()}.999.dead.tmp"  # a killed build's leftover
    stale.mkdir()
    (stale / "config.json").write_text("{")
    logs = []
    rebuilt, _ = warm_start(cfg, log=logs.append)
    assert any("damaged" in x for x in logs) and any("cached at" in x for x in logs)
    assert not stale.exists()
    for (name, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), name
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["sha256"]["model.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_cache_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="cache_dir .* is not a directory"):
        warm_start(micro(tmp_path), log=quiet)
