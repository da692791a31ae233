"""KAE in verl: the ``kae`` family in verl's advantage registry and a ``kae`` v1 trainer mode.

Switch a verl run (v1 trainer, verl 0.9) to KAE on the command line::

    python -m verl.trainer.main_ppo ... trainer.v1.trainer_mode=kae algorithm.adv_estimator=kae

verl imports this module itself, in every process, through the ``verl.plugins``
entry point that ``pip install "kernelvalue[verl]"`` installs
(:mod:`kernelvalue.integrations.verl_plugin`). Options:

* ``algorithm.adv_estimator``: ``kae`` (the paper), ``kae_ll``, ``kae_cv`` or
  ``kae_shrink``;
* ``+algorithm.kae.<option>=...``: the estimator's options, for every name of
  the family (``get_estimator(name, **algorithm.kae)``), e.g.
  ``+algorithm.kae.bandwidth=0.2 +algorithm.kae.kernel=triangular``;
* ``+trainer.v1.kae.J=10`` (the default): the paper's prompt schedule, each
  minibatch of ``data.train_batch_size`` prompts served ``J`` consecutive
  steps (:class:`~kernelvalue.integrations.schedule.JStepSampler`, seeded by
  ``data.seed`` or 0); ``null`` keeps verl's sampler.

Why a trainer mode as well as the registry entries: verl calls an advantage
function with the rewards, the response mask, ``config.algorithm`` and
``uid``, a fresh uuid4 per prompt per step, so it has neither a key that
identifies a prompt across steps nor the step. :class:`KAETrainer` (verl's
synchronous trainer plus three things) supplies both while its
``_compute_advantage`` runs (the key of a trajectory is ``(data_source,
extra_info.index)`` of its dataset row; the step is ``global_steps``), writes
every step's rewards into the estimator once, and saves/restores the
estimator with verl's checkpoints (``global_step_N/kernelvalue_estimator.pt``).
The registered functions refuse to run outside it, naming the option to set.

verl's epoch counter (``trainer.total_epochs``) still counts
``len(dataset) // train_batch_size`` steps; one pass of the schedule over the
prompts takes ``J`` times that, so give runs ``trainer.total_training_steps``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from torchdata.stateful_dataloader import StatefulDataLoader
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.dataset.rl_dataset import collate_fn

from .common import KAE_FAMILY, StepwiseEstimator, check_keys, load_state, save_state
from .schedule import JStepSampler

__all__ = ["KAETrainer", "advantage_context", "estimator_from_config", "schedule_from_config", "DEFAULT_J"]

# The paper's schedule for MATH and GSM8K; J = 8 for DAPO.
DEFAULT_J = 10
# Where a trajectory's stable prompt key comes from, for error messages.
KEY_SOURCE = "data_source and extra_info.index"


@dataclass
class _Binding:
    estimator: StepwiseEstimator
    uid_keys: Mapping[str, Hashable]
    step: int
    padding: frozenset = field(default_factory=frozenset)
    baseline_means: list = field(default_factory=list)


_BINDING: contextvars.ContextVar[_Binding | None] = contextvars.ContextVar("kernelvalue_verl_binding", default=None)


@contextlib.contextmanager
def advantage_context(estimator: StepwiseEstimator, uid_keys: Mapping[str, Hashable], step: int, padding=()):
    """Let verl's ``compute_advantage`` run a KAE-family estimator.

    Parameters
    ----------
    estimator : StepwiseEstimator
        The run's estimator (its name must be ``config.algorithm.adv_estimator``).
    uid_keys : mapping
        verl's per-step ``uid`` of every prompt in the batch -> the prompt's
        stable key.
    step : int
        The training step (verl's ``global_steps``, from 1).
    padding : iterable of str
        uids of verl's synthetic padding trajectories: advantage 0, left out
        of the estimator.

    Examples
    --------
    ``KAETrainer._compute_advantage`` wraps verl's own with it; by hand::

        with advantage_context(est, {"uid-a": ("math", 7)}, step=3):
            data = compute_advantage(data, adv_estimator="kae", config=config.algorithm)
    """
    token = _BINDING.set(_Binding(estimator, uid_keys, int(step), frozenset(padding)))
    try:
        yield _BINDING.get()
    finally:
        _BINDING.reset(token)


def _registered(name: str):
    def compute_kae_advantage(token_level_rewards, response_mask, config=None, index=None, **kwargs):
        """KAE-family advantages with verl's advantage-function signature; returns ``(advantages, returns)``."""
        binding = _BINDING.get()
        if binding is None:
            raise RuntimeError(
                f"algorithm.adv_estimator={name} needs a prompt key that is stable across steps and the training "
                "step, which verl does not pass to advantage functions. Run it with kernelvalue's trainer mode: "
                "trainer.v1.trainer_mode=kae (installed with kernelvalue[verl])."
            )
        if binding.estimator.name != name:
            raise ValueError(
                f"verl asked for advantage estimator {name!r} but the trainer built {binding.estimator.name!r}; "
                "they both come from algorithm.adv_estimator."
            )
        if index is None:
            raise ValueError("verl passed no uid (index) for the batch; KAE needs it to find each trajectory's prompt.")
        uids = np.asarray(index, dtype=object).reshape(-1)
        keep = np.fromiter((u not in binding.padding for u in uids), dtype=bool, count=len(uids))
        try:
            keys = [binding.uid_keys[u] for u in uids[keep]]
        except KeyError as err:
            raise ValueError(f"trajectory uid {err.args[0]!r} has no stable prompt key ({KEY_SOURCE}).") from None
        keys = check_keys(keys, n_groups=len(set(uids[keep])), where=KEY_SOURCE)
        scores = token_level_rewards.sum(dim=-1)
        advantages = torch.zeros_like(scores)
        if keys:
            keep = torch.as_tensor(keep, device=scores.device)
            result = binding.estimator.compute(keys, scores[keep], binding.step)
            advantages[keep] = result.advantages
            binding.baseline_means.append(float(result.baselines.mean()))
        advantages = advantages.unsqueeze(-1) * response_mask
        return advantages, advantages

    compute_kae_advantage.__name__ = f"compute_{name}_advantage"
    compute_kae_advantage.__qualname__ = compute_kae_advantage.__name__
    return compute_kae_advantage


for _name in KAE_FAMILY:
    core_algos.register_adv_est(_name)(_registered(_name))


# ----------------------------------------------------------------------------- config
def estimator_from_config(config) -> StepwiseEstimator:
    """The estimator a verl config asks for (``algorithm.adv_estimator`` and ``algorithm.kae``).

    Raises a ValueError naming the option when the name is not of the KAE family
    and the estimator's own error for a bad option.
    """
    name = config.algorithm.adv_estimator
    if name not in KAE_FAMILY:
        raise ValueError(
            f"trainer.v1.trainer_mode=kae runs kernelvalue's estimators; set algorithm.adv_estimator to one of "
            f"{list(KAE_FAMILY)} (got {name!r}), or use trainer.v1.trainer_mode=sync for verl's own."
        )
    options = config.algorithm.get("kae", None)
    options = OmegaConf.to_container(options, resolve=True) if options is not None else {}
    return StepwiseEstimator.build(name, options)


def schedule_from_config(config, n_prompts: int) -> JStepSampler | None:
    """The J-step sampler a verl config asks for (``trainer.v1.kae.J``), or None for verl's own.

    Raises a ValueError for settings that pull prompts outside the step's
    minibatch (DAPO group filtering, refilling failed groups).
    """
    mode_options = config.trainer.v1.get("kae", None) or {}
    J = mode_options.get("J", DEFAULT_J)
    if J is None:
        return None
    filter_groups = config.algorithm.get("filter_groups", None)
    refill = config.trainer.v1.sampler.get("sync_refill_failed_groups", False)
    if (filter_groups is not None and filter_groups.get("enable", False)) or refill:
        raise ValueError(
            "the J-step schedule serves exactly data.train_batch_size prompts per step, but "
            "algorithm.filter_groups / trainer.v1.sampler.sync_refill_failed_groups fetch extra prompts; "
            "turn those off, or set +trainer.v1.kae.J=null to keep verl's sampler."
        )
    seed = mode_options.get("seed", None)
    if seed is None:
        seed = config.data.get("seed", None) or 0
    return JStepSampler(n_prompts, config.data.train_batch_size, J, seed=seed)


# ----------------------------------------------------------------------------- trainer
@register_trainer("kae")
class KAETrainer(PPOTrainerSync):
    """verl's synchronous trainer with a KAE-family advantage estimator.

    Selected by ``trainer.v1.trainer_mode=kae``; see the module docstring for
    the options. Everything else is :class:`PPOTrainerSync`: ``trainer_mode``
    reads ``"sync"`` (verl compares it with that literal to choose the
    synchronous replay buffer, dataloader and checkpoint paths, and reads
    ``trainer.v1.sync`` for the mode's own settings), whatever name the mode
    was registered under.

    Attributes
    ----------
    kae : StepwiseEstimator
        The run's estimator (its state is saved in every checkpoint).
    """

    def __init__(self, config):
        self.kae = estimator_from_config(config)  # bad options fail before any worker starts
        super().__init__(config)

    @property
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, name: str) -> None:
        # verl's __init__ assigns the registry name ("kae"); the behaviour stays synchronous.
        self._mode_name = name

    def _init_dataloader(self):
        super()._init_dataloader()
        sampler = schedule_from_config(self.config, len(self.train_dataset))
        if sampler is None:
            return
        self.train_dataloader = StatefulDataLoader(
            dataset=self.train_dataset,
            batch_size=self.train_dataloader.batch_size,
            num_workers=self.config.data["dataloader_num_workers"],
            drop_last=True,
            collate_fn=collate_fn,
            sampler=sampler,
        )

    def _compute_advantage(self, batch, metrics):
        rows = tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid", "data_source", "index"]
        )
        if not {"data_source", "index"} <= set(rows.keys()):
            raise ValueError(
                f"the trajectories in TransferQueue carry no {KEY_SOURCE}: KAE keys prompts by those fields of each "
                "dataset row, which verl's agent loop copies into every trajectory; a custom agent loop manager must "
                "copy them too."
            )
        uids = rows.get("uid").tolist()
        uid_keys = dict(zip(uids, zip(rows.get("data_source").tolist(), rows.get("index").tolist())))
        padding = {uid for uid, tag in zip(uids, batch.tags) if tag.get("is_padding", False)}
        with advantage_context(self.kae, uid_keys, self.global_steps, padding) as binding:
            batch = super()._compute_advantage(batch, metrics)
        if binding.baseline_means:
            metrics["kae/baseline_mean"] = float(np.mean(binding.baseline_means))
        return batch

    def step(self, metrics, timing_raw):
        batch = super().step(metrics, timing_raw)
        self.kae.flush()  # all of this step's batches are computed: their rewards join the history
        metrics["kae/prompts_in_history"] = self.kae.estimator.history.n_prompts
        return batch

    def _save_checkpoint(self):
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        save_state(self.kae, folder)  # before verl marks the checkpoint as the latest
        super()._save_checkpoint()

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if self.global_steps == 0:  # fresh run
            return
        if self.config.trainer.resume_mode == "resume_path":
            folder = self.config.trainer.resume_from_path
        else:
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        load_state(self.kae, os.path.abspath(folder))
