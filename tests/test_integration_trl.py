"""KAE inside TRL 1.x (kernelvalue.integrations.trl), on CPU with a tiny random Qwen2 and a local tokenizer.

Everything is TRL's real training loop (generation, reward functions, loss,
optimiser, checkpoints, accelerate on 1 and 2 processes); only the model is
tiny and untrained, so rewards are noise: these tests check plumbing and
state, not learning.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_helpers import assert_same_state, require

require("trl", "trl")

from trl_helpers import UNSCORABLE_PROMPT, RecordingTrainer, make_trainer, prompts, replay  # noqa: E402

from kernelvalue.advantage import get_estimator  # noqa: E402
from kernelvalue.integrations.common import STATE_FILE  # noqa: E402
from kernelvalue.integrations.schedule import JStepSampler  # noqa: E402
from kernelvalue.integrations.trl import KAEGRPOTrainer  # noqa: E402

pytestmark = pytest.mark.engines

torch.set_num_threads(1)
HERE = Path(__file__).resolve().parent


def test_training_uses_kae_advantages(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=12)
    trainer.train()
    recs = trainer.records
    assert [r["step"] for r in recs] == list(range(1, 13))

    # The advantages computed inside TRL equal kernelvalue's on the same keys and rewards.
    expected, reference = replay(recs)
    for rec, exp in zip(recs, expected):
        assert torch.equal(rec["advantages"], exp)
        assert rec["logged"] == exp.tolist()  # the completions table shows KAE's, not GRPO's
    assert_same_state(trainer.kae.estimator.state_dict(), reference.state_dict())

    # The loss saw exactly these advantages (TRL shuffles rows before the loss), and they are not GRPO's.
    grpo = get_estimator("grpo")
    for rec, seen in zip(recs, trainer.loss_advantages):
        assert torch.equal(seen.sort().values, rec["advantages"].sort().values)
        z = torch.nan_to_num(rec["rewards"])
        assert not torch.allclose(rec["advantages"], grpo.compute(rec["keys"], z, rec["step"]).advantages)

    # Unscorable completions: advantage 0, never in the history, counted in the logs.
    bad = [torch.isnan(r["rewards"]) for r in recs]
    assert any(b.any() for b in bad)
    assert all(torch.all(r["advantages"][b] == 0) for r, b in zip(recs, bad))
    assert UNSCORABLE_PROMPT not in trainer.kae.estimator.history.keys()
    logged = [h["kae/unscorable"] for h in trainer.state.log_history if "kae/unscorable" in h]
    assert logged == [float(b.sum()) for b in bad]

    # The paper's schedule: 4 prompts per step, each minibatch for J = 2 consecutive steps.
    ids = prompts()["prompt_id"]
    sampler = JStepSampler(len(ids), 4, J=2, seed=0)
    schedule = sampler.epoch_steps(0) + sampler.epoch_steps(1)
    for rec, rows in zip(recs, schedule):
        assert sorted(set(rec["keys"])) == sorted(ids[i] for i in rows)


def test_resume_restores_estimator_state(tmp_path):
    first = make_trainer(tmp_path / "a", max_steps=10, save_strategy="steps", save_steps=5)
    first.train()
    ckpt = tmp_path / "a" / "checkpoint-5"
    assert (ckpt / STATE_FILE).is_file()

    resumed = make_trainer(tmp_path / "b", max_steps=10)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert_same_state(resumed.loaded_states[0], first.saved_states[5])
    # Everything after the resume is computed from the restored history and step.
    assert [r["step"] for r in resumed.records] == list(range(6, 11))
    expected, _ = replay(first.records[:5] + resumed.records)
    for rec, exp in zip(resumed.records, expected[5:]):
        assert torch.equal(rec["advantages"], exp)
    # On CPU the resumed run is the uninterrupted one: same rewards, same final state.
    assert_same_state(resumed.kae.estimator.state_dict(), first.kae.estimator.state_dict())

    (ckpt / STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=STATE_FILE):
        make_trainer(tmp_path / "c", max_steps=10).train(resume_from_checkpoint=str(ckpt))


def test_evaluation_leaves_estimator_alone(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=2, eval_strategy="no", per_device_eval_batch_size=8)
    trainer.train()
    before = trainer.kae.estimator.state_dict()
    metrics = trainer.evaluate(eval_dataset=prompts())
    assert "eval_loss" in metrics and len(trainer.records) == 2
    assert_same_state(trainer.kae.estimator.state_dict(), before)


def test_two_processes_keep_identical_state(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    with socket.socket() as sock:  # a free port on loopback for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd += ["--master_port", str(port), str(HERE / "trl_two_process.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert_same_state(ranks[0]["state"], ranks[1]["state"])
    # Each rank holds half of every batch; both computed from all 8 rows, as kernelvalue does.
    expected, reference = replay(ranks[0]["records"])
    for step, exp in enumerate(expected):
        assert len(ranks[0]["records"][step]["keys"]) == 8
        joined = torch.cat([ranks[r]["records"][step]["advantages"] for r in range(2)])
        assert torch.equal(joined, exp)
    assert_same_state(ranks[0]["state"], reference.state_dict())


def test_setup_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="no 'prompt_id' column"):
        make_trainer(tmp_path, dataset=prompts().remove_columns("prompt_id"))
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        make_trainer(tmp_path, remove_unused_columns=True)
    with pytest.raises(ValueError, match="normalize_then_sum"):
        make_trainer(tmp_path, multi_objective_aggregation="normalize_then_sum")
    with pytest.raises(ValueError, match="map-style train_dataset"):
        make_trainer(tmp_path, dataset=prompts().to_iterable_dataset(), max_steps=2)
    with pytest.raises(ValueError, match="not one of kernelvalue's engine estimators"):
        KAEGRPOTrainer(None, None, estimator="grpo")
    same = prompts().map(lambda row: {"prompt_id": 3})
    with pytest.raises(ValueError, match="same prompt key 3"):
        make_trainer(tmp_path, dataset=same, cls=RecordingTrainer, max_steps=1).train()


def test_example_script_config_is_valid():
    """examples/trl_math_kae.py: every GRPOConfig key and value is accepted by the installed TRL."""
    import dataclasses
    import importlib.util
    import inspect

    from datasets import Dataset
    from trl import GRPOConfig
    from trl.rewards import accuracy_reward

    from kernelvalue.integrations.common import StepwiseEstimator
    from reproduce.presets import PAPER_MATH

    spec = importlib.util.spec_from_file_location("trl_math_kae", HERE.parent / "examples" / "trl_math_kae.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    kwargs = example.grpo_config_kwargs("runs/x", num_processes=8)
    assert set(kwargs) <= {f.name for f in dataclasses.fields(GRPOConfig)}
    config = GRPOConfig(**kwargs, use_cpu=True)  # use_cpu: this machine has no GPU for bf16/vLLM
    assert config.generation_batch_size // config.num_generations == PAPER_MATH["prompts_per_step"]
    assert (config.num_generations, example.J) == (PAPER_MATH["G"], 10)
    assert (config.max_steps, config.learning_rate) == (PAPER_MATH["steps"], PAPER_MATH["lr"])
    assert (config.temperature, config.max_completion_length) == (PAPER_MATH["temperature"], PAPER_MATH["max_new_tokens"])
    assert config.beta == PAPER_MATH["kl_coef"] and not config.remove_unused_columns
    inspect.signature(KAEGRPOTrainer).bind(None, None, J=example.J, **example.KAE)
    est = StepwiseEstimator.build(example.KAE["estimator"], example.KAE["estimator_options"])
    assert est.estimator.kernel.name == "triangular"

    # MATH-shaped rows become prompts with a stable id and the column TRL's accuracy reward reads.
    rows = example.to_prompts(
        Dataset.from_dict({"problem": ["1+1?", "2+2?"], "level": ["1", "1"], "type": ["a", "a"],
                           "solution": [r"so \boxed{2}", r"so \boxed{4}"]})
    )
    assert rows.column_names == ["solution", "prompt", "prompt_id"] and rows["prompt_id"] == [0, 1]
    assert example.INSTRUCTION in rows[1]["prompt"][0]["content"]
    completions = [[{"role": "assistant", "content": r"\boxed{2}"}], [{"role": "assistant", "content": r"\boxed{5}"}]]
    assert accuracy_reward(completions, rows["solution"]) == [1.0, 0.0]


@pytest.mark.parametrize("module", ["kernelvalue.integrations.common", "kernelvalue.integrations.schedule"])
def test_engine_free_modules_doctests(module):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
