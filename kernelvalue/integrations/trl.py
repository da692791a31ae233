"""KAE in TRL: ``KAEGRPOTrainer``, a drop-in ``GRPOTrainer`` whose advantages come from KAE.

Switch a TRL script to KAE by changing the trainer's class::

    trainer = KAEGRPOTrainer(model, reward_funcs, args=GRPOConfig(...), train_dataset=ds)  # was GRPOTrainer

The dataset needs a ``prompt_id`` column: one key per prompt, the same at every
step (``ds = ds.map(lambda row, i: {"prompt_id": i}, with_indices=True)``), and
``remove_unused_columns=False`` (TRL's default) so it reaches the trainer.

What changes against ``GRPOTrainer`` (TRL has no advantage hook; its maintainers'
advice is to subclass and override ``_generate_and_score_completions``):

* **advantages** of a training batch are ``Z - V_hat`` from the named
  kernelvalue estimator (``estimator="kae"``, ``"kae_ll"``, ``"kae_cv"`` or
  ``"kae_shrink"``, options in ``estimator_options``), computed on every process
  from the rewards and prompt keys of all processes (gathered, so every rank
  holds the same estimator state), at step ``state.global_step + 1``. The
  reward is the weighted sum of the reward functions (TRL's
  ``sum_then_normalize`` sum, before its normalisation); TRL's ``scale_rewards``
  does not apply (KAE's own ``scale_std`` option does).
* **unscorable completions** (every reward function returned None: NaN in
  TRL) are left out of the estimator -- no baseline contribution, no history --
  and get advantage 0, as TRL does with them; their count is logged as
  ``kae/unscorable`` and warned about.
* **evaluation** keeps GRPO's advantages for the eval loss and never touches
  the estimator: eval prompts are not part of the schedule and their keys may
  collide with training keys.
* **logs**: the completions table shows KAE's advantages; ``kae/baseline_mean``
  and ``kae/unscorable`` join the metrics.
* **prompt order**: the paper's J-step schedule (``J=10`` by default, the
  paper's value for MATH and GSM8K; ``J=None`` keeps TRL's sampler), each
  minibatch of ``generation_batch_size / num_generations`` prompts served for
  ``J`` consecutive generation batches, seeded by ``args.seed``.
* **checkpoints** hold the estimator's state (``checkpoint-N/kernelvalue_estimator.pt``,
  written by the main process); ``trainer.train(resume_from_checkpoint=...)``
  restores it on every process.
"""

from __future__ import annotations

import logging
import os

import torch
from accelerate.utils import gather_object
from datasets import IterableDataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer

from .common import StepwiseEstimator, check_keys, load_state, save_state
from .schedule import JStepSampler

__all__ = ["KAEGRPOTrainer", "DEFAULT_J"]

logger = logging.getLogger(__name__)

# The paper's schedule for MATH and GSM8K; J = 8 for DAPO.
DEFAULT_J = 10


class KAEGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with advantages from a kernelvalue KAE-family estimator.

    Parameters
    ----------
    *args, **kwargs
        Those of ``trl.GRPOTrainer``.
    estimator : str, default "kae"
        ``"kae"`` (the paper), ``"kae_ll"``, ``"kae_cv"`` or ``"kae_shrink"``.
    estimator_options : dict, optional
        Options of the estimator (``get_estimator(estimator, **estimator_options)``),
        e.g. ``{"bandwidth": 0.2, "kernel": "triangular"}``.
    J : int or None, default 10
        Consecutive generation batches each prompt minibatch is served; None
        keeps TRL's shuffled sampler.
    prompt_id_column : str, default "prompt_id"
        Dataset column with each prompt's stable key.

    Attributes
    ----------
    kae : StepwiseEstimator
        The estimator (saved with every checkpoint).

    Examples
    --------
    ::

        ds = ds.map(lambda row, i: {"prompt_id": i}, with_indices=True)
        trainer = KAEGRPOTrainer("Qwen/Qwen2.5-Math-1.5B", reward_fn, args=GRPOConfig(num_generations=4),
                                 train_dataset=ds, estimator="kae", estimator_options={"bandwidth": 0.2})
        trainer.train()
    """

    def __init__(self, *args, estimator="kae", estimator_options=None, J=DEFAULT_J, prompt_id_column="prompt_id", **kwargs):
        self.kae = StepwiseEstimator.build(estimator, estimator_options)  # bad options fail before the model loads
        self.J = J
        self.prompt_id_column = prompt_id_column
        super().__init__(*args, **kwargs)
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                "multi_objective_aggregation='normalize_then_sum' normalises each reward within its group, which is "
                "GRPO's baseline; KAE needs the raw weighted reward. Use 'sum_then_normalize' (TRL's default)."
            )
        if self.args.remove_unused_columns:
            raise ValueError(
                f"remove_unused_columns=True drops the {prompt_id_column!r} column KAE keys prompts by; set "
                "remove_unused_columns=False (TRL's default)."
            )
        columns = getattr(self.train_dataset, "column_names", None)
        if columns is not None and prompt_id_column not in columns:
            raise ValueError(
                f"train_dataset has no {prompt_id_column!r} column (columns: {columns}). KAE needs a key per prompt "
                f"that is the same at every step, e.g. ds.map(lambda row, i: {{{prompt_id_column!r}: i}}, "
                "with_indices=True)."
            )
        if J is not None and isinstance(self.train_dataset, IterableDataset):
            raise ValueError("the J-step schedule needs a map-style train_dataset (indexable); pass J=None to stream.")

    # ------------------------------------------------------------------ prompt schedule
    def _get_train_sampler(self, dataset=None):
        if self.J is None:
            return super()._get_train_sampler(dataset)
        dataset = self.train_dataset if dataset is None else dataset
        return JStepSampler(
            len(dataset),
            self.args.generation_batch_size // self.num_generations,
            self.J,
            seed=self.args.seed,
            mini_repeat_count=self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
        )

    # ------------------------------------------------------------------ advantages
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rewards_per_func = rewards_per_func  # all processes' rows, for the override below
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:  # evaluation: GRPO's advantages, estimator untouched
            return super()._generate_and_score_completions(inputs)
        local_keys = [row.get(self.prompt_id_column) for row in inputs]
        output = super()._generate_and_score_completions(inputs)
        keys = gather_object(local_keys)  # rank order, as the rewards were gathered
        keys = check_keys(keys, len(keys) // self.num_generations, self.prompt_id_column)

        per_func = self._rewards_per_func
        rewards = (per_func * self.reward_weights.to(per_func.device)).nansum(dim=1)
        scorable = ~torch.isnan(per_func).all(dim=1)
        n_bad = int((~scorable).sum())
        if n_bad and self.accelerator.is_main_process:
            logger.warning(
                "%d of %d completions are unscorable (every reward function returned None); they get advantage 0 "
                "and stay out of KAE's history.",
                n_bad,
                len(keys),
            )
        advantages = torch.zeros_like(rewards)
        if n_bad < len(keys):
            rows = scorable.nonzero().flatten().tolist()
            result = self.kae.compute([keys[i] for i in rows], rewards[scorable], self.state.global_step + 1)
            advantages[scorable] = result.advantages
            self._metrics["train"]["kae/baseline_mean"].append(result.baselines.mean().item())
        self._metrics["train"]["kae/unscorable"].append(float(n_bad))

        # The base class logged GRPO's advantages for this batch: show KAE's instead.
        logged = self._logs["advantages"]
        for _ in range(min(len(keys), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())

        n_local = len(inputs)
        start = self.accelerator.process_index * n_local
        output["advantages"] = advantages[start : start + n_local]
        return output

    # ------------------------------------------------------------------ state
    def _save_checkpoint(self, model, trial):
        self.kae.flush()  # on every process, so all keep the same state
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            save_state(self.kae, folder)
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            load_state(self.kae, checkpoint)

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        self.kae.flush()  # the last step's rewards, so the estimator's state is complete when training returns
        return result
