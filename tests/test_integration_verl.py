"""KAE inside verl 0.9 (kernelvalue.integrations.verl), on CPU: no GPU, no model, no rollout.

What runs for real: verl's plugin loading, its advantage registry and
``compute_advantage``, its Hydra config, the v1 trainer class (``KAETrainer``
is verl's synchronous trainer subclassed), its dataset and stateful
dataloader, its checkpoint code, and TransferQueue on a local Ray. What is
stubbed: the actor worker group (``save/load_checkpoint``) and, in the step
test, the rollout and actor update around ``_compute_advantage``.
"""

import os

import numpy as np
import pandas as pd
import pytest
import torch
from engine_helpers import assert_same_state, require

verl = require("verl", "verl")
require("transfer_queue", "verl")

import ray  # noqa: E402
import transfer_queue as tq  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402
from verl.trainer.ppo.v1 import get_trainer_cls  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

from kernelvalue.advantage import get_estimator  # noqa: E402
from kernelvalue.integrations import verl as kae_verl  # noqa: E402
from kernelvalue.integrations.common import KAE_FAMILY, STATE_FILE, StepwiseEstimator  # noqa: E402
from kernelvalue.integrations.schedule import JStepSampler  # noqa: E402

pytestmark = pytest.mark.engines

CONFIG_DIR = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
OPTIONS = {"kae": {"bandwidth": 0.5}, "kae_ll": {"bandwidth": 0.5}, "kae_cv": {"refit_every": 2}, "kae_shrink": {}}


def verl_config(*overrides):
    """verl's own ``ppo_trainer`` config composed by Hydra with ``overrides`` (as on its command line)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose("ppo_trainer", overrides=list(overrides))


def hand_batch(keys, rewards, lengths, uids, T=6):
    """A DataProto as verl's trainer builds it: outcome reward on each response's last valid token."""
    n = len(keys)
    mask = (torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]).to(torch.float32)
    token_rewards = torch.zeros(n, T)
    token_rewards[torch.arange(n), torch.as_tensor(lengths) - 1] = torch.as_tensor(rewards, dtype=torch.float32)
    return DataProto.from_dict(
        tensors={"token_level_rewards": token_rewards, "response_mask": mask},
        non_tensors={"uid": np.array(uids, dtype=object)},
    )


def schedule_batches(steps, rng, prompts=(("math", 0), ("math", 1), ("gsm8k", 0)), G=4):
    """Per step: stable keys, rewards, lengths and verl-style fresh uids (one per prompt per step)."""
    for step in range(1, steps + 1):
        keys = [p for p in prompts for _ in range(G)]
        uids = [f"{step}-{i}" for i in range(len(prompts)) for _ in range(G)]
        rewards = rng.integers(0, 2, len(keys)).astype(np.float32)
        lengths = rng.integers(1, 7, len(keys))
        yield step, keys, rewards, lengths, uids


# ----------------------------------------------------------------------------- registry and compute_advantage
def test_plugin_registers_family_and_trainer_mode():
    # `import verl` loaded our entry point: the names are in verl's registries, bound to our code.
    for name in KAE_FAMILY:
        fn = core_algos.get_adv_estimator_fn(name)
        assert fn.__module__ == "kernelvalue.integrations.verl" and fn.__name__ == f"compute_{name}_advantage"
    assert get_trainer_cls("kae") is kae_verl.KAETrainer


def test_plugin_failure_is_logged_loudly():
    # verl logs a failing plugin at DEBUG only; ours says so at ERROR, naming what stops working.
    import subprocess
    import sys

    code = "import sys; sys.modules['transfer_queue'] = None; import verl"  # a broken install
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0  # verl itself still imports
    assert "kernelvalue's verl plugin failed to load" in proc.stderr and "transfer_queue" in proc.stderr


@pytest.mark.parametrize("name", KAE_FAMILY)
def test_verl_compute_advantage_uses_our_estimator(name, rng):
    algo = verl_config(f"algorithm.adv_estimator={name}").algorithm
    ours = StepwiseEstimator.build(name, OPTIONS[name])
    reference = get_estimator(name, **OPTIONS[name])
    for step, keys, rewards, lengths, uids in schedule_batches(5, rng):
        data = hand_batch(keys, rewards, lengths, uids)
        # One uid -> key per prompt; the padding trajectory verl may append is left out.
        uid_keys = dict(zip(uids, keys))
        pad = hand_batch([keys[0]], [0.0], [1], ["pad-x"])
        data = DataProto.concat([data, pad])
        with kae_verl.advantage_context(ours, uid_keys, step, padding={"pad-x"}):
            data = compute_advantage(data, adv_estimator=name, config=algo)
        expected = reference.compute(keys, torch.as_tensor(rewards), step).advantages
        reference.update(keys, rewards, step)
        mask = data.batch["response_mask"]
        assert torch.equal(data.batch["advantages"][:-1], expected[:, None] * mask[:-1])
        assert torch.equal(data.batch["returns"], data.batch["advantages"])
        assert not data.batch["advantages"][-1].any()
    grpo = compute_advantage(hand_batch(keys, rewards, lengths, uids), adv_estimator="grpo", config=algo)
    assert not torch.equal(grpo.batch["advantages"], data.batch["advantages"][:-1])
    ours.flush()
    assert_same_state(ours.estimator.state_dict(), reference.state_dict())


def test_refuses_without_trainer_mode_or_stable_keys(rng):
    algo = verl_config("algorithm.adv_estimator=kae").algorithm
    step, keys, rewards, lengths, uids = next(schedule_batches(1, rng))
    data = hand_batch(keys, rewards, lengths, uids)
    with pytest.raises(RuntimeError, match="trainer.v1.trainer_mode=kae"):
        compute_advantage(data, adv_estimator="kae", config=algo)
    est = StepwiseEstimator.build("kae")
    # Dataset rows without extra_info.index all get index 0 in verl: one key for every prompt.
    with kae_verl.advantage_context(est, {u: ("math", 0) for u in uids}, step):
        with pytest.raises(ValueError, match="same prompt key.*extra_info.index"):
            compute_advantage(data, adv_estimator="kae", config=algo)
    with kae_verl.advantage_context(est, {}, step):
        with pytest.raises(ValueError, match="no stable prompt key"):
            compute_advantage(data, adv_estimator="kae", config=algo)
    with kae_verl.advantage_context(StepwiseEstimator.build("kae_ll"), dict(zip(uids, keys)), step):
        with pytest.raises(ValueError, match="trainer built 'kae_ll'"):
            compute_advantage(data, adv_estimator="kae", config=algo)


def test_config_errors_name_the_option():
    with pytest.raises(ValueError, match="algorithm.adv_estimator"):
        kae_verl.estimator_from_config(verl_config("algorithm.adv_estimator=grpo"))
    with pytest.raises(TypeError, match="bandwith"):
        kae_verl.estimator_from_config(verl_config("algorithm.adv_estimator=kae", "+algorithm.kae.bandwith=0.1"))
    cfg = verl_config("algorithm.adv_estimator=kae", "algorithm.filter_groups.enable=true")
    with pytest.raises(ValueError, match="filter_groups"):
        kae_verl.schedule_from_config(cfg, n_prompts=4096)
    assert kae_verl.schedule_from_config(verl_config("+trainer.v1.kae.J=null"), 4096) is None
    sampler = kae_verl.schedule_from_config(verl_config("data.train_batch_size=8", "data.seed=3"), 40)
    assert (sampler.J, sampler.prompts_per_step, sampler.seed) == (kae_verl.DEFAULT_J, 8, 3)


# ----------------------------------------------------------------------------- the v1 trainer on TransferQueue
@pytest.fixture(scope="module")
def transfer_queue():
    # TransferQueue's controller and two storage units each take a CPU in Ray: 3 even on a 2-core machine.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init()
    yield
    tq.close()
    ray.shutdown()


class StubActor:
    """The actor worker group: only its checkpoint calls are reached here."""

    def __init__(self):
        self.calls = []

    def save_checkpoint(self, local_path, *args, **kwargs):
        self.calls.append(("save", local_path))

    def load_checkpoint(self, local_path, **kwargs):
        self.calls.append(("load", local_path))


@pytest.fixture
def dataset(tmp_path):
    """A verl-format parquet: two data sources whose extra_info.index both restart at 0."""
    rows = [
        {
            "data_source": source,
            "prompt": [{"role": "user", "content": f"{source} problem {i}"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(i)},
            "extra_info": {"split": "train", "index": i},
        }
        for source, n in (("math", 6), ("gsm8k", 4))
        for i in range(n)
    ]
    path = tmp_path / "train.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def make_trainer(tmp_path, dataset, *extra):
    from reproduce.tokenizer import char_tokenizer

    cfg = verl_config(
        "trainer.v1.trainer_mode=kae",
        "algorithm.adv_estimator=kae",
        "+algorithm.kae.bandwidth=0.5",
        "+trainer.v1.kae.J=2",
        "data.seed=5",
        f"data.train_files={dataset}",
        f"data.val_files={dataset}",
        "data.train_batch_size=4",
        "data.dataloader_num_workers=0",
        "actor_rollout_ref.rollout.n=2",
        f"trainer.default_local_dir={tmp_path / 'ckpt'}",
        *extra,
    )
    trainer = get_trainer_cls(cfg.trainer.v1.trainer_mode)(cfg)
    trainer.tokenizer, trainer.processor = char_tokenizer(), None
    trainer._init_dataloader()
    trainer.actor_rollout_wg = StubActor()
    trainer._load_checkpoint()  # resume_mode=auto: from the latest checkpoint in default_local_dir, if any
    return trainer


def rollout(trainer, step, rng):
    """What the agent loop writes into TransferQueue for one step: the dataloader's prompts, rollout.n each."""
    prompts = trainer._next_train_batch()
    n = trainer.config.actor_rollout_ref.rollout.n
    keys, rows, stable = [], [], []
    for i in range(len(prompts)):
        uid, source, index = prompts["uid"][i], prompts["data_source"][i], int(prompts["index"][i])
        for session in range(n):
            length = int(rng.integers(2, 6))
            scores = torch.zeros(length)
            scores[-1] = float(rng.integers(0, 2))
            keys.append(f"{uid}_{session}_0")
            stable.append((source, index))
            rows.append(
                {
                    "uid": uid,
                    "data_source": source,
                    "index": index,
                    "response_mask": torch.ones(length, dtype=torch.int64),
                    "rm_scores": scores,
                }
            )
    tags = [{"status": "success", "global_steps": step} for _ in keys]
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(rows), tags=tags)
    rewards = np.array([r["rm_scores"].sum().item() for r in rows], dtype=np.float32)
    return tq.KVBatchMeta(keys=keys, tags=tags, partition_id="train"), stable, rewards


def run_steps(trainer, steps, rng, reference=None):
    """``trainer.step`` for real around stubbed rollout/actor; returns the advantages verl stored per step."""
    out = []
    for _ in range(steps):
        trainer.global_steps += 1
        batch, stable, rewards = rollout(trainer, trainer.global_steps, rng)
        sync = trainer.config.trainer.v1.sync.get("parameter_sync_step", 1)
        halves = np.array_split(np.arange(len(batch.keys)), sync)
        parts = iter([batch.select_keys([batch.keys[i] for i in h]) for h in halves])
        trainer.prepare_step = lambda: {}
        trainer._step_once = lambda metrics, timing, size: trainer._compute_advantage(next(parts), metrics)
        metrics = {}
        trainer.step(metrics, {})
        stored = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["advantages"])["advantages"]
        adv = np.array([float(row[-1]) for row in stored.unbind(0)], dtype=np.float32)
        if reference is not None:
            expected = np.concatenate(
                [reference.compute([stable[i] for i in h], rewards[h], trainer.global_steps).advantages for h in halves]
            )
            reference.update(stable, rewards, trainer.global_steps)
            np.testing.assert_array_equal(adv, expected)
        assert metrics["kae/prompts_in_history"] == trainer.kae.estimator.history.n_prompts
        out.append((stable, adv))
        tq.kv_clear(keys=batch.keys, partition_id="train")
    return out


@pytest.mark.parametrize("sync_steps", [1, 2])
def test_trainer_step_stable_keys_step_and_schedule(transfer_queue, tmp_path, dataset, rng, sync_steps):
    trainer = make_trainer(tmp_path, dataset, f"+trainer.v1.sync.parameter_sync_step={sync_steps}")
    assert trainer.trainer_mode == "sync" and type(trainer.replay_buffer).__name__ == "ReplayBuffer"
    assert isinstance(trainer.train_dataloader.sampler, JStepSampler)
    reference = get_estimator("kae", bandwidth=0.5)
    steps = run_steps(trainer, 6, rng, reference)
    # The J = 2 schedule over the dataset's rows, keyed by (data_source, extra_info.index).
    frame = pd.read_parquet(dataset)
    rows = [(s, int(e["index"])) for s, e in zip(frame["data_source"], frame["extra_info"])]
    sampler = JStepSampler(len(rows), 4, J=2, seed=5)
    for (stable, _), prompts in zip(steps, sampler.epoch_steps(0)):
        assert sorted(set(stable)) == sorted(rows[p] for p in prompts)
    assert steps[0][0] == steps[1][0] and steps[1][0] != steps[2][0]
    assert trainer.kae.estimator.state_dict()["last_update"] == 6
    assert_same_state(trainer.kae.estimator.state_dict(), reference.state_dict())


def test_save_then_resume_restores_estimator_and_schedule(transfer_queue, tmp_path, dataset, rng):
    trainer = make_trainer(tmp_path, dataset)
    run_steps(trainer, 3, rng)
    trainer._save_checkpoint()
    folder = tmp_path / "ckpt" / "global_step_3"
    assert (folder / STATE_FILE).is_file() and (folder / "data.pt").is_file()
    assert trainer.actor_rollout_wg.calls == [("save", str(folder / "actor"))]

    resumed = make_trainer(tmp_path, dataset)
    assert resumed.global_steps == 3 and resumed.actor_rollout_wg.calls == [("load", str(folder / "actor"))]
    assert_same_state(resumed.kae.estimator.state_dict(), trainer.kae.estimator.state_dict())
    # Both continue identically, into the schedule's next epoch: same prompts from the restored
    # dataloader, same advantages.
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for (keys_a, adv_a), (keys_b, adv_b) in zip(run_steps(trainer, 5, rng_a), run_steps(resumed, 5, rng_b)):
        assert keys_a == keys_b
        np.testing.assert_array_equal(adv_a, adv_b)
    assert_same_state(resumed.kae.estimator.state_dict(), trainer.kae.estimator.state_dict())

    # A checkpoint written without the estimator's state cannot be resumed silently.
    (folder / STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=STATE_FILE):
        make_trainer(tmp_path, dataset, "trainer.resume_mode=resume_path", f"trainer.resume_from_path={folder}")


def test_trainer_refuses_trajectories_without_keys(transfer_queue, tmp_path, dataset):
    trainer = make_trainer(tmp_path, dataset)
    trainer.global_steps = 1
    keys = ["u_0_0", "u_1_0"]
    rows = [{"uid": "u", "response_mask": torch.ones(2, dtype=torch.int64), "rm_scores": torch.ones(2)}] * 2
    tags = [{"status": "success", "global_steps": 1}] * 2
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(rows), tags=tags)
    with pytest.raises(ValueError, match="no data_source and extra_info.index"):
        trainer._compute_advantage(tq.KVBatchMeta(keys=keys, tags=tags, partition_id="train"), {})
    tq.kv_clear(keys=keys, partition_id="train")


def test_trainer_refuses_estimators_outside_family(tmp_path, dataset):
    cfg = verl_config("trainer.v1.trainer_mode=kae", "algorithm.adv_estimator=grpo")
    with pytest.raises(ValueError, match="trainer.v1.trainer_mode=kae runs kernelvalue's estimators"):
        kae_verl.KAETrainer(cfg)
    OmegaConf.resolve(cfg)  # the composed config itself is fine


# ----------------------------------------------------------------------------- the launch script
def test_example_launch_script_config_is_valid():
    """Every override of examples/verl_math_kae.sh exists in verl's config and passes verl's own checks."""
    import subprocess
    from pathlib import Path

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    from reproduce.presets import PAPER_MATH

    script = Path(__file__).resolve().parents[1] / "examples" / "verl_math_kae.sh"
    overrides = subprocess.run(
        ["bash", str(script), "--print-overrides"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    cfg = verl_config(*overrides)  # Hydra refuses keys verl does not have (only '+' ones are new)
    assert sorted(o.split("=")[0] for o in overrides if o.startswith("+")) == [
        "+algorithm.kae.bandwidth",
        "+algorithm.kae.kernel",
        "+trainer.v1.kae.J",
    ]
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)  # the worker configs verl builds from these keys
    omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert get_trainer_cls(cfg.trainer.v1.trainer_mode) is kae_verl.KAETrainer
    est = kae_verl.estimator_from_config(cfg)
    assert (est.name, est.estimator.kernel.name) == ("kae", "triangular")
    sampler = kae_verl.schedule_from_config(cfg, n_prompts=7500)  # MATH's training split
    # The paper's G and J; the rest as reproduce's paper preset.
    assert (cfg.actor_rollout_ref.rollout.n, sampler.J) == (PAPER_MATH["G"], 10)
    assert "Qwen2.5-Math-7B" in cfg.actor_rollout_ref.model.path
    assert cfg.data.train_batch_size == PAPER_MATH["prompts_per_step"] == sampler.prompts_per_step
    assert cfg.trainer.total_training_steps == PAPER_MATH["steps"]
    assert cfg.actor_rollout_ref.actor.optim.lr == PAPER_MATH["lr"]
    assert cfg.actor_rollout_ref.rollout.temperature == PAPER_MATH["temperature"]
    assert cfg.data.max_response_length == PAPER_MATH["max_new_tokens"]
    assert not cfg.actor_rollout_ref.actor.use_kl_loss and not cfg.algorithm.use_kl_in_reward
