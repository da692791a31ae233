"""Tiny TRL runs for the KAE tests: a random 1-layer Qwen2, a character tokenizer built locally, no network.

Shared by ``test_integration_trl.py`` and the 2-process script ``trl_two_process.py``.
"""

import copy

import numpy as np
import torch
from datasets import Dataset
from trl import GRPOConfig

from kernelvalue.advantage import get_estimator
from kernelvalue.integrations.trl import KAEGRPOTrainer
from reproduce.models import build_tiny_lm
from reproduce.tokenizer import char_tokenizer

N_PROMPTS = 8
UNSCORABLE_PROMPT = 0  # every completion of this prompt is unscorable (the reward returns None)


def prompts(n=N_PROMPTS):
    """Prompt texts and their stable ids (a shuffled order, so ids are not row positions)."""
    ids = np.random.default_rng(7).permutation(100)[:n].tolist()
    ids[1] = UNSCORABLE_PROMPT
    return Dataset.from_dict({"prompt": [f"{i}+{i % 7}=" for i in ids], "prompt_id": ids})


def reward(completions, prompt_id, **kwargs):
    """0/1 by the parity of the digits in the completion; None (unscorable) for one prompt."""
    return [
        None if p == UNSCORABLE_PROMPT else float(sum(ch.isdigit() for ch in c) % 2)
        for c, p in zip(completions, prompt_id)
    ]


def grpo_args(output_dir, **overrides):
    """G = 2, 4 prompts per step on one process (8 completions), 6 new tokens, CPU, no reference model."""
    kw = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        num_generations=2,
        max_completion_length=6,
        max_steps=12,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        beta=0.0,
        temperature=1.0,
        dataloader_num_workers=0,
        bf16=False,
        disable_tqdm=True,
    )
    kw.update(overrides)
    return GRPOConfig(**kw)


class RecordingTrainer(KAEGRPOTrainer):
    """Records what each training generation fed the estimator and what reached the loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records, self.loss_advantages, self.saved_states, self.loaded_states = [], [], {}, []

    def _generate_and_score_completions(self, inputs):
        training = self.model.training
        output = super()._generate_and_score_completions(inputs)
        if training:
            from accelerate.utils import gather_object

            self.records.append(
                {
                    "step": self.state.global_step + 1,
                    "keys": gather_object([row["prompt_id"] for row in inputs]),
                    "rewards": self._rewards_per_func[:, 0].clone(),
                    "advantages": output["advantages"].clone(),
                    "logged": list(self._logs["advantages"]),
                }
            )
        return output

    def _compute_loss(self, model, inputs):
        self.loss_advantages.append(inputs["advantages"].detach().clone())
        return super()._compute_loss(model, inputs)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        self.saved_states[self.state.global_step] = copy.deepcopy(self.kae.estimator.state_dict())

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.loaded_states.append(copy.deepcopy(self.kae.estimator.state_dict()))


def make_trainer(output_dir, dataset=None, cls=RecordingTrainer, J=2, **overrides):
    torch.manual_seed(0)
    tok = char_tokenizer()
    model = build_tiny_lm(tok, n_layer=1, d_model=32, n_head=2)
    return cls(
        model,
        reward,
        args=grpo_args(output_dir, **overrides),
        train_dataset=prompts() if dataset is None else dataset,
        processing_class=tok,
        J=J,
        estimator_options={"bandwidth": 0.5},
    )


def replay(records, name="kae", options=None):
    """kernelvalue's estimator on the recorded keys and rewards: the advantages of every record (all ranks).

    Unscorable rows (NaN reward) are left out and get 0, as the trainer documents.
    """
    est = get_estimator(name, **({"bandwidth": 0.5} if options is None else options))
    out = []
    for rec in records:
        z = rec["rewards"]
        ok = ~torch.isnan(z)
        keys = [k for k, good in zip(rec["keys"], ok.tolist()) if good]
        adv = torch.zeros_like(z)
        adv[ok] = est.compute(keys, z[ok], rec["step"]).advantages
        est.update(keys, z[ok], rec["step"])
        out.append(adv)
    return out, est
