"""RL trainer: sample G responses per prompt, score, take advantages from the registry, clipped PG update.

Read top to bottom: the loss (pure functions), the prompt sets, the ``Trainer``
(state lives there: policy, optimiser, RNGs, prompt schedule, advantage
estimator), checkpointing, and the CLI::

    python -m reproduce.trainer --preset small --estimator kae --G 4 --steps 100 --seed 0 --out runs/kae

Per step: the schedule gives a prompt minibatch (each minibatch is reused for
J consecutive steps), the policy samples G responses per prompt, the
verifiable reward scores them, the estimator named in the config turns
rewards into advantages (no advantage maths here), and the policy takes
``ppo_epochs x minibatches`` AdamW steps on the token-level PPO-clip loss.

Hooks for measurement code (:mod:`reproduce.measure`): ``Trainer.sample``
(with its own ``generator`` for extra samples that leave the path unchanged),
``Trainer.policy_gradients`` (flattened gradients on a parameter subset for
several advantage vectors, no step), ``Trainer.step(observe=...)`` (sees each
batch before the update), ``Trainer.evaluate`` and the ``on_step`` callback.

Defaults worth knowing: one torch CPU thread (``--threads``; two threads on a
shared 2-core machine were 20-50x slower), bf16 autocast on CUDA only, and
``ppo_epochs = minibatches = 1``, so the PPO ratio is exactly 1 and the update
is the plain policy gradient of the chosen loss aggregation.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .models import (
    completion_logprobs,
    generate,
    load_pretrained,
    stop_token_ids,
    warm_start,
)
from .checkpoint import CheckpointError, atomic_write_text, file_lock, read_checkpoint, write_checkpoint
from .presets import DEVICES, LOSS_AGG_MODES, PRESETS, REWARD_STYLES, Config, get_preset
from .tasks import ArithmeticTask, load_gsm8k, load_math, math_prompt


# ----------------------------------------------------------------------------- loss
def aggregate_loss(loss_mat, mask, mode, *, n_seqs=None, n_tokens=None, budget=None):
    """Reduce a per-token loss ``(n, L)`` to a scalar.

    ``token-mean``: sum over all valid tokens / number of valid tokens (DAPO).
    ``seq-mean-token-mean``: mean over sequences of each sequence's token mean (GRPO).
    ``seq-mean-token-sum-norm``: mean over sequences of each sequence's token
    *sum* divided by a constant ``budget`` (Dr. GRPO; we use the generation
    budget ``max_new_tokens``, so no length bias and batch-size invariance).

    The denominators ``n_seqs``/``n_tokens`` default to this batch's; pass the
    whole minibatch's when accumulating gradients over micro-batches, so the
    micro-batch losses sum to the minibatch loss.

    Examples
    --------
    >>> loss = torch.tensor([[1.0, 3.0], [2.0, 0.0]]); mask = torch.tensor([[1, 1], [1, 0]])
    >>> float(aggregate_loss(loss, mask, "token-mean")), float(aggregate_loss(loss, mask, "seq-mean-token-mean"))
    (2.0, 2.0)
    >>> float(aggregate_loss(loss, mask, "seq-mean-token-sum-norm", budget=4))
    0.75
    """
    mask = mask.to(loss_mat.dtype)
    if mode == "token-mean":
        denom = mask.sum() if n_tokens is None else n_tokens
        return (loss_mat * mask).sum() / torch.clamp(torch.as_tensor(denom, dtype=loss_mat.dtype), min=1.0)
    n_seqs = loss_mat.shape[0] if n_seqs is None else n_seqs
    per_seq = (loss_mat * mask).sum(-1)
    if mode == "seq-mean-token-mean":
        return (per_seq / mask.sum(-1).clamp(min=1.0)).sum() / n_seqs
    if mode == "seq-mean-token-sum-norm":
        budget = loss_mat.shape[1] if budget is None else budget
        return per_seq.sum() / (n_seqs * budget)
    raise ValueError(f"loss_agg_mode must be one of {list(LOSS_AGG_MODES)}, got {mode!r}")


def ppo_clip_loss(logp, old_logp, advantages, mask, clip_eps, mode, *, ref_logp=None, kl_coef=0.0, **denoms):
    """Token-level PPO-clip policy-gradient loss, plus an optional k3 KL penalty to a reference.

    ``logp``/``old_logp``/``ref_logp``: ``(n, L)`` token log-probs; ``advantages``:
    ``(n,)``, broadcast over each response's tokens. Returns ``(loss, stats)``.

    Examples
    --------
    >>> lp = torch.zeros(1, 2); m = torch.ones(1, 2)
    >>> float(ppo_clip_loss(lp, lp, torch.tensor([2.0]), m, 0.2, "token-mean")[0])
    -2.0
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.to(logp.dtype)[:, None]
    pg = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    loss_mat = pg
    kl = torch.zeros((), dtype=logp.dtype, device=logp.device)
    if ref_logp is not None and kl_coef > 0:
        # k3 estimator of KL(pi || ref): unbiased, non-negative (Schulman 2020).
        log_r = ref_logp - logp
        kl_mat = torch.exp(log_r) - log_r - 1
        loss_mat = pg + kl_coef * kl_mat
        kl = aggregate_loss(kl_mat.detach(), mask, mode, **denoms)
    loss = aggregate_loss(loss_mat, mask, mode, **denoms)
    clipped = ((ratio - 1).abs() > clip_eps).to(logp.dtype)
    stats = {"clip_frac": aggregate_loss(clipped.detach(), mask, "token-mean"), "kl": kl}
    return loss, stats


# ----------------------------------------------------------------------------- prompts
GSM8K_INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'


@dataclass
class PromptSet:
    """Prompt token ids (unpadded, one list per prompt), the prompt texts, and gold answers."""

    ids: list
    texts: list
    answers: list


def build_prompts(cfg: Config, tokenizer) -> dict[str, PromptSet]:
    """The finite RL prompt pool ("train") and the held-out set ("test") for ``cfg``.

    ``dataset="math"`` follows the Qwen2.5-Math convention: the problem, then "Please reason step by
    step, and put your final answer within \\boxed{}.", in the chat template when ``chat_template``
    is on and the tokenizer has one (else plain text and a newline, as :mod:`reproduce.evaluate` does).
    """
    if cfg.dataset == "synthetic":
        pool = ArithmeticTask(cfg.task_seed, *cfg.pool_terms(), cfg.max_value)
        test = ArithmeticTask(cfg.task_seed, cfg.min_terms, cfg.max_terms, cfg.max_value)
        rows = {"train": pool.sample(cfg.n_train_prompts, "train"), "test": test.sample(cfg.n_test, "test")}
    elif cfg.dataset == "math":
        rows = load_math(cfg.data_path, n_train=cfg.n_train_prompts, n_test=cfg.n_test, seed=cfg.task_seed,
                         problem_key=cfg.problem_key, answer_key=cfg.answer_key)
    else:
        rows = {
            "train": load_gsm8k("train", path=cfg.data_path, limit=cfg.n_train_prompts),
            "test": load_gsm8k("test", path=cfg.data_path, limit=cfg.n_test),
        }
    chat = cfg.chat_template and (cfg.dataset != "math" or getattr(tokenizer, "chat_template", None) is not None)
    sets = {}
    for split, items in rows.items():
        texts = [_render_prompt(cfg, tokenizer, r["prompt"], chat) for r in items]
        # Chat templates already carry their special tokens; plain prompts get the tokenizer's (e.g. <bos>).
        ids = tokenizer(texts, add_special_tokens=not chat)["input_ids"]
        sets[split] = PromptSet(ids=ids, texts=texts, answers=[str(r["answer"]) for r in items])
    return sets


def _render_prompt(cfg, tokenizer, prompt, chat=None):
    chat = cfg.chat_template if chat is None else chat
    if cfg.dataset == "math":
        text = math_prompt(prompt)
        if not chat:
            return text + "\n"
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    if not chat:
        return prompt
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            f"chat_template=True but the tokenizer of {cfg.model!r} has no chat template; "
            "pass --no-chat-template for base models"
        )
    messages = [{"role": "user", "content": f"{prompt.strip()} {GSM8K_INSTRUCTION}"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def left_pad(seqs: list, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(ids, mask)`` tensors."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.as_tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


# ----------------------------------------------------------------------------- rollouts
@dataclass
class Rollout:
    """``n = len(prompt_ids) * G`` sampled responses, grouped by prompt (rows g*... are prompt ``keys``).

    Attributes: ``keys`` (n,) pool prompt ids, ``prompt`` / ``prompt_mask`` (n, P) left-padded,
    ``tokens`` / ``mask`` (n, L) completions, ``completions`` decoded texts, ``rewards`` (n,) float64.
    """

    keys: np.ndarray
    prompt: torch.Tensor
    prompt_mask: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    completions: list
    rewards: np.ndarray

    def select(self, idx: torch.Tensor) -> Rollout:
        """The sub-batch of rows ``idx`` (a 1-D index tensor)."""
        i = idx.cpu().numpy()
        dev = self.prompt.device
        return Rollout(
            self.keys[i],
            self.prompt[idx.to(dev)],
            self.prompt_mask[idx.to(dev)],
            self.tokens[idx.to(dev)],
            self.mask[idx.to(dev)],
            [self.completions[j] for j in i],
            self.rewards[i],
        )


# ----------------------------------------------------------------------------- trainer
METRIC_FIELDS = (
    "step",
    "reward_mean",
    "reward_std",
    "solved_all",
    "solved_none",
    "loss",
    "kl",
    "clip_frac",
    "grad_norm",
    "adv_mean",
    "adv_std",
    "response_len",
    "test_mean_at_k",
    "test_pass_at_k",
    "test_greedy",
    "sample_s",
    "update_s",
    "measure_s",
    "step_s",
    "wall_s",
)
EVAL_SEED_OFFSET = 20_000  # evaluation samples: torch.Generator seed EVAL_SEED_OFFSET + cfg.seed
TIMING_FIELDS = ("sample_s", "update_s", "measure_s", "step_s", "wall_s")


class Trainer:
    """One RL run: policy, reference, optimiser, prompt schedule, advantage estimator, RNGs.

    Parameters
    ----------
    cfg : Config
        A validated configuration (see :func:`reproduce.presets.get_preset`).
    out_dir : str or Path, optional
        Where ``metrics.csv``, ``metrics.jsonl``, ``config.json`` and checkpoints go.
    on_step : callable, optional
        ``on_step(trainer, metrics)`` after every step (for measurement code).
    log : callable
        Where progress messages go (``print`` by default).

    Examples
    --------
    >>> cfg = get_preset("small", steps=2, cache_dir="/tmp/kv-cache")     # doctest: +SKIP
    >>> tr = Trainer(cfg); tr.train(); tr.evaluate("test")                # doctest: +SKIP
    """

    def __init__(self, cfg: Config, out_dir=None, on_step=None, log=print):
        self.cfg, self.on_step, self.log = cfg, on_step, log
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = resolve_device(cfg.device)
        if cfg.model is None:
            self.model, self.tokenizer = warm_start(cfg, log=log)
        else:
            dtype = torch.bfloat16 if cfg.param_dtype == "bfloat16" else torch.float32
            self.model, self.tokenizer = load_pretrained(cfg.model, dtype=dtype)
        self.model.to(self.device).eval()
        seed_everything(cfg.seed)  # after the warm start, which seeds its own SFT
        self.ref_model = copy.deepcopy(self.model).requires_grad_(False) if cfg.kl_coef > 0 else None
        self.stop_ids = stop_token_ids(self.model, self.tokenizer)
        self.reward_style = REWARD_STYLES[cfg.dataset]  # "#### x" (synthetic, GSM8K) or \boxed{x} (math)
        self.prompts = build_prompts(cfg, self.tokenizer)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.estimator = cfg.make_estimator()
        from kernelvalue.advantage import PromptScheduler

        self.scheduler = PromptScheduler(len(self.prompts["train"].ids), cfg.prompts_per_step, cfg.J, cfg.seed)
        self._schedule = iter(self.scheduler)
        # Dedicated generators: sampling and minibatch shuffles are reproducible from saved state alone.
        self.sample_gen = torch.Generator(self.device).manual_seed(cfg.seed)
        self.shuffle_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self._temperature = cfg.temperature if cfg.do_sample else 1.0
        self.step_count = 0
        self.history: list[dict] = []
        self._wall = 0.0
        self._files_synced = False

    # -- sampling and scoring ------------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sample(self, prompt_ids, n: int, split: str = "train", greedy: bool = False, generator=None) -> Rollout:
        """Sample ``n`` responses for each prompt in ``prompt_ids`` and score them.

        Responses of prompt ``prompt_ids[b]`` are rows ``b*n .. b*n+n-1``.
        ``greedy=True`` decodes greedily instead of sampling at the config's temperature.
        ``generator`` defaults to the run's ``sample_gen``; measurement code passes its own so
        that extra samples leave the training path unchanged.
        """
        pset = self.prompts[split]
        prompt_ids = np.asarray(prompt_ids, dtype=np.int64)
        keys = np.repeat(prompt_ids, n)
        prompt, prompt_mask = left_pad([pset.ids[k] for k in keys], self.tokenizer.pad_token_id, self.device)
        with self._autocast():
            gen = generate(
                self.model,
                prompt,
                prompt_mask,
                self.cfg.max_new_tokens,
                self.stop_ids,
                self.tokenizer.pad_token_id,
                generator=self.sample_gen if generator is None else generator,
                temperature=self.cfg.temperature,
                do_sample=self.cfg.do_sample and not greedy,
            )
        completions = self.tokenizer.batch_decode(gen.tokens, skip_special_tokens=True)
        rewards = self.score(completions, [pset.answers[k] for k in keys])
        return Rollout(keys, prompt, prompt_mask, gen.tokens, gen.mask, completions, rewards)

    def score(self, completions: list, golds: list) -> np.ndarray:
        """Verifiable 0/1 rewards from :func:`reproduce.rewards.reward`."""
        from .rewards import reward

        return np.array([reward(c, g, style=self.reward_style) for c, g in zip(completions, golds)], dtype=np.float64)

    def mc_values(self, rollout: Rollout, n: int | None = None) -> np.ndarray:
        """Monte-Carlo value of each row's prompt from ``n`` fresh samples (``oracle_samples`` by default)."""
        uniq, inverse = np.unique(rollout.keys, return_inverse=True)
        n = n or self.cfg.oracle_samples
        extra = self.sample(uniq, n)
        return extra.rewards.reshape(len(uniq), n).mean(1)[inverse]

    def advantages(self, rollout: Rollout, step: int | None = None):
        """Advantages from the configured estimator; then the step's rewards join its history.

        ``step`` is 1-based (the paper's i); defaults to the trainer's next step.
        Returns the estimator's result (``.advantages``, ``.baselines``).
        """
        step = self.step_count + 1 if step is None else step
        values = self.mc_values(rollout) if self.cfg.estimator == "oracle" else None
        result = self.estimator.compute(rollout.keys, rollout.rewards, step, values=values)
        self.estimator.update(rollout.keys, rollout.rewards, step)
        return result

    def _control(self, rollout: Rollout) -> Rollout:
        """The rollout the estimator sees: as sampled, or with its rewards permuted across the batch
        (``reward_shuffle``, the null control: same reward distribution, no link to the responses)."""
        if not self.cfg.reward_shuffle:
            return rollout
        perm = torch.randperm(len(rollout.rewards), generator=self.shuffle_gen).numpy()
        return dataclasses.replace(rollout, rewards=rollout.rewards[perm])

    # -- gradients -----------------------------------------------------------------------------
    def _logprobs(self, model, rb: Rollout) -> torch.Tensor:
        with self._autocast():
            return completion_logprobs(model, rb.prompt, rb.prompt_mask, rb.tokens, rb.mask, self._temperature)

    @torch.no_grad()
    def _frozen_logprobs(self, model, rollout: Rollout) -> torch.Tensor:
        parts = [self._logprobs(model, rollout.select(i)) for i in self._micro(torch.arange(len(rollout.keys)))]
        return torch.cat(parts)

    def _micro(self, idx: torch.Tensor):
        return idx.split(self.cfg.micro_batch_size)

    def _accumulate(self, rollout, advantages, idx, old_logp=None, ref_logp=None) -> dict:
        """Backward of the minibatch ``idx``'s loss, micro-batch by micro-batch. Returns loss stats."""
        cfg = self.cfg
        denoms = {
            "n_seqs": len(idx),
            "n_tokens": rollout.mask[idx.to(rollout.mask.device)].sum(),
            "budget": cfg.max_new_tokens,
        }
        totals = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0}
        for micro in self._micro(idx):
            rb = rollout.select(micro)
            logp = self._logprobs(self.model, rb)
            old = logp.detach() if old_logp is None else old_logp[micro.to(old_logp.device)]
            ref = None if ref_logp is None else ref_logp[micro.to(ref_logp.device)]
            loss, stats = ppo_clip_loss(
                logp,
                old,
                advantages[micro.to(advantages.device)],
                rb.mask,
                cfg.clip_eps,
                cfg.loss_agg_mode,
                ref_logp=ref,
                kl_coef=cfg.kl_coef,
                **denoms,
            )
            loss.backward()
            weight = len(micro) / len(idx)
            totals["loss"] += loss.item()
            totals["kl"] += stats["kl"].item()
            totals["clip_frac"] += stats["clip_frac"].item() * weight
        return totals

    def policy_gradients(self, rollout: Rollout, advantages, param_filter=None, mode=None) -> torch.Tensor:
        """Flattened policy-gradient estimates for several advantage vectors, without an optimiser step.

        Parameters
        ----------
        rollout : Rollout
        advantages : array (k, n) or (n,)
            One row of advantages per estimate (e.g. one per estimator), for the rollout's ``n`` rows.
        param_filter : callable, optional
            ``param_filter(name) -> bool`` picks the parameters (all if None).
        mode : str, optional
            Loss aggregation (``cfg.loss_agg_mode`` if None).

        Returns
        -------
        Tensor (k, p) or (p,), float32 on CPU: ``-grad(loss)`` (the ascent direction) at the current
        parameters (ratio = 1), concatenated over the chosen parameters in ``named_parameters`` order.
        The loss is linear in the advantages, so one forward pass per micro-batch serves all ``k``
        rows (``k`` backward passes through the retained graph). Model gradients are left cleared.

        Examples
        --------
        >>> g = trainer.policy_gradients(rollout, np.stack([adv_a, adv_b]), lambda n: "layers.1." in n)  # doctest: +SKIP
        """
        adv = torch.as_tensor(np.asarray(advantages, dtype=np.float32), device=self.device)
        single = adv.ndim == 1
        adv = adv[None] if single else adv
        n = len(rollout.keys)
        if adv.ndim != 2 or adv.shape[1] != n:
            raise ValueError(f"advantages must have shape (k, {n}) or ({n},), got {tuple(adv.shape)}")
        mode = self.cfg.loss_agg_mode if mode is None else mode
        named = [(name, p) for name, p in self.model.named_parameters() if param_filter is None or param_filter(name)]
        if not named:
            raise ValueError("param_filter selected no parameters; check it against model.named_parameters()")
        params = [p for _, p in named]
        denoms = {"n_seqs": n, "n_tokens": rollout.mask.sum(), "budget": self.cfg.max_new_tokens}
        total = torch.zeros(adv.shape[0], sum(p.numel() for p in params))
        for micro in self._micro(torch.arange(n)):
            rb = rollout.select(micro)
            logp = self._logprobs(self.model, rb)
            for row in range(adv.shape[0]):
                loss, _ = ppo_clip_loss(logp, logp.detach(), adv[row, micro.to(self.device)], rb.mask, 1.0, mode, **denoms)
                grads = torch.autograd.grad(loss, params, retain_graph=row < adv.shape[0] - 1, allow_unused=True)
                total[row] -= torch.cat(
                    [(torch.zeros_like(p) if g is None else g).float().reshape(-1).cpu() for g, p in zip(grads, params)]
                )
        return total[0] if single else total

    def policy_gradient(self, rollout: Rollout, advantages, param_filter=None, mode=None) -> torch.Tensor:
        """One flattened policy-gradient estimate ``(p,)``; see :meth:`policy_gradients`."""
        return self.policy_gradients(rollout, np.asarray(advantages)[None], param_filter, mode)[0]

    def update(self, rollout: Rollout, advantages) -> dict:
        """``ppo_epochs`` passes over ``minibatches`` shuffled minibatches, one AdamW step each."""
        cfg = self.cfg
        n = len(rollout.keys)
        adv = torch.as_tensor(np.asarray(advantages, dtype=np.float32), device=self.device)
        multi = cfg.ppo_epochs * cfg.minibatches > 1
        # With a single update the sampling policy is the current one: ratio == 1 exactly, no extra pass.
        old_logp = self._frozen_logprobs(self.model, rollout) if multi else None
        ref_logp = self._frozen_logprobs(self.ref_model, rollout) if self.ref_model is not None else None
        self.model.train()
        stats = []
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(n, generator=self.shuffle_gen) if cfg.minibatches > 1 else torch.arange(n)
            for idx in order.chunk(cfg.minibatches):
                self.optimizer.zero_grad(set_to_none=True)
                s = self._accumulate(rollout, adv, idx, old_logp, ref_logp)
                s["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
                self.optimizer.step()
                stats.append(s)
        self.model.eval()
        return {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}

    # -- one step, evaluation, loop --------------------------------------------------------------
    def step(self, observe=None) -> dict:
        """One RL step; returns (and records) its metrics.

        ``observe(trainer, rollout, step)``, if given, sees the step's batch after sampling and before
        the advantages and the update (measurement code uses it; its time is reported as ``measure_s``
        and left out of ``step_s``). It must not draw from ``sample_gen``, or the path changes.
        """
        t0 = time.perf_counter()
        prompt_ids = next(self._schedule)
        rollout = self.sample(prompt_ids, self.cfg.G)
        t1 = time.perf_counter()
        if observe is not None:
            observe(self, rollout, self.step_count + 1)
        measure_s = time.perf_counter() - t1
        t1 += measure_s
        result = self.advantages(self._control(rollout))
        adv = np.asarray(_to_numpy(result.advantages), dtype=np.float64)
        if adv.shape != rollout.rewards.shape or not np.isfinite(adv).all():
            raise FloatingPointError(
                f"estimator {self.cfg.estimator!r} returned advantages of shape {adv.shape} with "
                f"{int((~np.isfinite(adv)).sum())} non-finite values at step {self.step_count + 1}; expected "
                f"{rollout.rewards.shape}, all finite"
            )
        stats = self.update(rollout, adv)
        t2 = time.perf_counter()
        self.step_count += 1
        groups = rollout.rewards.reshape(-1, self.cfg.G)
        metrics = {
            "step": self.step_count,
            "reward_mean": float(rollout.rewards.mean()),
            "reward_std": float(rollout.rewards.std()),
            "solved_all": float((groups.min(1) == 1).mean()),
            "solved_none": float((groups.max(1) == 0).mean()),
            **stats,
            "adv_mean": float(adv.mean()),
            "adv_std": float(adv.std()),
            "response_len": float(rollout.mask.sum(1).float().mean()),
            "test_mean_at_k": None,
            "test_pass_at_k": None,
            "test_greedy": None,
            "sample_s": t1 - t0,
            "update_s": t2 - t1,
            "measure_s": measure_s,
        }
        if self.cfg.eval_every and self.step_count % self.cfg.eval_every == 0:
            ev = self.evaluate("test")
            metrics.update(test_mean_at_k=ev["mean_at_k"], test_pass_at_k=ev["pass_at_k"], test_greedy=ev["greedy"])
        metrics["step_s"] = time.perf_counter() - t0 - measure_s
        self._wall += metrics["step_s"]
        metrics["wall_s"] = self._wall
        self.history.append(metrics)
        self._write_metrics(metrics)
        if self.on_step is not None:
            self.on_step(self, metrics)
        return metrics

    @torch.no_grad()
    def evaluate(self, split: str = "test", limit: int | None = None, k: int | None = None) -> dict:
        """Held-out accuracy on ``split`` ("test" or "train"), batched; never touches the training RNGs.

        Returns ``{"greedy": ..., "mean_at_k": ..., "pass_at_k": ..., "k": k}``: greedy accuracy, and
        with ``k`` samples per problem at the training temperature (``cfg.eval_k`` by default; 0 skips
        them) the mean accuracy (mean@k, an unbiased estimate of the expected reward RL maximises) and
        the unbiased pass@k. The samples come from a generator seeded afresh from ``cfg.seed`` at every
        call, so every evaluation of a seed (any method, any step) uses the same random numbers.
        """
        from .evaluate import pass_at_k

        k = self.cfg.eval_k if k is None else k
        n = len(self.prompts[split].ids) if limit is None else min(limit, len(self.prompts[split].ids))
        chunks = np.array_split(np.arange(n), max(1, -(-n // self.cfg.eval_batch_size)))
        greedy = np.concatenate([self.sample(ids, 1, split=split, greedy=True).rewards for ids in chunks])
        out = {"greedy": float(greedy.mean()), "mean_at_k": None, "pass_at_k": None, "k": k}
        if k and self.cfg.do_sample:
            gen = torch.Generator(self.device).manual_seed(EVAL_SEED_OFFSET + self.cfg.seed)
            per = max(1, self.cfg.eval_batch_size // k)
            z = np.concatenate([
                self.sample(ids, k, split=split, generator=gen).rewards.reshape(-1, k)
                for ids in np.array_split(np.arange(n), max(1, -(-n // per)))
            ])
            out["mean_at_k"] = float(z.mean())
            out["pass_at_k"] = float(pass_at_k(k, z.sum(1).astype(np.int64), k).mean())
        return out

    def train(self, steps: int | None = None, save_every: int = 0, progress: bool = True) -> list[dict]:
        """Run until ``steps`` total steps (``cfg.steps`` by default); checkpoint every ``save_every``."""
        from tqdm.auto import tqdm

        total = self.cfg.steps if steps is None else steps
        bar = tqdm(total=total, initial=self.step_count, disable=not progress, desc=self.cfg.estimator)
        while self.step_count < total:
            m = self.step()
            bar.update(1)
            bar.set_postfix(
                reward=f"{m['reward_mean']:.3f}",
                loss=f"{m['loss']:.3g}",
                **({"test": f"{m['test_mean_at_k']:.3f}"} if m["test_mean_at_k"] is not None else {}),
            )
            if save_every and self.out_dir is not None and self.step_count % save_every == 0:
                self.save_checkpoint(self.out_dir / "checkpoint.pt")
        bar.close()
        return self.history

    # -- metrics files and checkpoints ------------------------------------------------------------
    def _write_metrics(self, metrics: dict) -> None:
        """Append ``metrics``. The first write of this process replaces ``config.json`` and the metrics
        files atomically by the config and ``history``, so a fresh run never appends to an old one and a
        resumed run drops the steps past its checkpoint (it recomputes them bit-identically)."""
        if self.out_dir is None:
            return
        if not self._files_synced:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / "config.json", json.dumps(self.cfg.to_dict(), indent=2))
            atomic_write_text(self.out_dir / "metrics.jsonl", _jsonl(self.history))
            atomic_write_text(self.out_dir / "metrics.csv", _csv(self.history, header=True))
            self._files_synced = True
            return
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(_jsonl([metrics]))
        with open(self.out_dir / "metrics.csv", "a", newline="") as f:
            f.write(_csv([metrics], header=False))

    @functools.cached_property
    def inputs_sha256(self) -> str:
        """Digest of what the policy is trained and tested on: the prompts' token ids and gold answers
        (both splits), and the stop and pad ids. A resume must see the same one."""
        sha = hashlib.sha256()
        for split in ("train", "test"):
            pset = self.prompts[split]
            sha.update(np.array([len(ids) for ids in pset.ids], dtype=np.int64).tobytes())
            sha.update(np.fromiter(itertools.chain.from_iterable(pset.ids), dtype=np.int64).tobytes())
            sha.update(json.dumps(pset.answers).encode())
        sha.update(json.dumps([self.stop_ids, self.tokenizer.pad_token_id]).encode())
        return sha.hexdigest()

    def state_dict(self) -> dict:
        """Everything needed to continue the run bit-identically: tensors, Python primitives and numpy arrays
        only, so :func:`reproduce.checkpoint.read_checkpoint` can load it without unpickling code."""
        return {
            "config": self.cfg.to_dict(),
            "step": self.step_count,
            "wall": self._wall,
            "history": self.history,
            "device_type": self.device.type,
            "inputs_sha256": self.inputs_sha256,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "estimator": self.estimator.state_dict(),
            "rng": {
                "sample": self.sample_gen.get_state(),
                "shuffle": self.shuffle_gen.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output.

        Every part is checked, and loaded into scratch objects, before the trainer is touched: a state that
        is malformed, non-finite, from another device, from other prompts or from a run whose config differs
        outside ``RESUME_OVERRIDES`` raises :class:`~reproduce.checkpoint.CheckpointError` and changes nothing.
        """
        _check_layout(state)
        changed = _run_changes(_saved_config(state), self.cfg)
        if changed:
            raise CheckpointError(
                "state is from a run with other settings: "
                + ", ".join(f"{k} (state {a!r}, this trainer {b!r})" for k, (a, b) in changed.items())
            )
        if state["device_type"] != self.device.type:
            raise CheckpointError(
                f"state was saved on device type {state['device_type']!r}, this trainer runs on {self.device.type!r}; "
                "its sampler state cannot continue there. Resume with --device "
                f"{state['device_type']} (or auto on a machine that has it)."
            )
        if state["inputs_sha256"] != self.inputs_sha256:
            raise CheckpointError(
                "state is from a run with other prompts, answers or tokenizer (input digest differs): the data "
                "file, its fields or the task changed. Resume with the run's own data."
            )
        _check_progress(state)
        _check_tensors("model", state["model"], self.model.state_dict())
        _check_optimizer_state(state["optimizer"], self.optimizer)
        scheduler, estimator = copy.deepcopy(self.scheduler), self.cfg.make_estimator()
        rng = state["rng"]
        parts = {
            "scheduler": lambda: scheduler.load_state_dict(state["scheduler"]),
            "estimator": lambda: estimator.load_state_dict(state["estimator"]),
            "sampling RNG": lambda: torch.Generator(self.device).set_state(rng["sample"]),
            "shuffle RNG": lambda: torch.Generator().set_state(rng["shuffle"]),
            "torch RNG": lambda: torch.Generator().set_state(rng["torch"]),
            "numpy RNG": lambda: np.random.RandomState().set_state(rng["numpy"]),
            "python RNG": lambda: random.Random().setstate(rng["python"]),
            "cuda RNG": lambda: _check_cuda_rng(rng["cuda"]),
        }
        for name, load in parts.items():
            try:
                load()
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError, OverflowError) as err:
                raise CheckpointError(f"state refused: its {name} does not load ({err})") from err
        # Everything is validated; the optimizer goes first as the one load that builds new state (atomically).
        self.optimizer.load_state_dict(state["optimizer"])
        self.model.load_state_dict(state["model"])
        self.scheduler, self.estimator = scheduler, estimator
        self._schedule = iter(self.scheduler)
        self.sample_gen.set_state(rng["sample"])
        self.shuffle_gen.set_state(rng["shuffle"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            for device, cuda_state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state, device)
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.step_count, self._wall, self.history = state["step"], float(state["wall"]), list(state["history"])

    def save_checkpoint(self, path) -> Path:
        """Write ``state_dict()`` to ``path`` atomically and durably, with a length and SHA-256 header
        (:func:`reproduce.checkpoint.write_checkpoint`); a crash mid-write leaves the previous file.

        Refuses (``FloatingPointError``) while the weights hold NaN or inf, so a diverged run never
        replaces its last good checkpoint.
        """
        bad = [name for name, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise FloatingPointError(
                f"model weights hold NaN or inf at step {self.step_count} ({bad[:3]}); not writing {path}, "
                "so the last good checkpoint stays. Lower lr or grad_clip and resume from it."
            )
        return write_checkpoint(self.state_dict(), path)

    @classmethod
    def from_checkpoint(cls, path, out_dir=None, on_step=None, log=print, **overrides) -> Trainer:
        """Rebuild the run saved at ``path`` and load its state.

        The file is checked whole (length, SHA-256) and unpickled with ``weights_only``: no code in it runs
        (:func:`reproduce.checkpoint.read_checkpoint`). ``overrides`` may change only the fields in
        ``RESUME_OVERRIDES``; another field given a different value raises, because it would continue a
        different run on this one's history. The trainer's config (and ``config.json``) is the saved one
        with the overrides applied.
        """
        state = read_checkpoint(path)
        _check_layout(state)
        cfg = resume_config(_saved_config(state), overrides, state["step"])
        trainer = cls(cfg, out_dir=out_dir, on_step=on_step, log=log)
        trainer.load_state_dict(state)
        return trainer


# ----------------------------------------------------------------------------- resume rules
# Config fields a resume may change. None alters the trained path: ``steps`` moves the end of the run
# (never before the checkpoint); ``eval_every`` and ``eval_batch_size`` change only what is measured
# (greedy, no RNG); ``cache_dir`` only locates the warm start, which the saved weights replace; ``device``
# may be spelled differently ("auto" or the device it resolves to), but the device type must match the
# checkpoint's, since sampler states are device-specific; ``data_path`` may move, but the prompts' token
# ids and answers must hash to the saved digest. Any other field must keep its saved value: a new lr, G,
# estimator, seed or task_seed would continue a different run on this one's history. Start a new run.
RESUME_OVERRIDES = ("steps", "eval_every", "eval_batch_size", "eval_k", "cache_dir", "device", "data_path")
STATE_KEYS = ("config", "step", "wall", "history", "device_type", "inputs_sha256", "model", "optimizer", "scheduler",
              "estimator", "rng")
RNG_KEYS = ("sample", "shuffle", "torch", "cuda", "numpy", "python")


def resume_config(saved: Config, overrides: dict, step: int = 0) -> Config:
    """``saved`` with ``overrides`` applied, refusing any that would change the run (see ``RESUME_OVERRIDES``).

    Examples
    --------
    >>> saved = get_preset("small", steps=10)
    >>> resume_config(saved, {"steps": 20, "lr": saved.lr}).steps
    20
    >>> resume_config(saved, {"lr": 1e-3})
    Traceback (most recent call last):
    ...
    ValueError: resume cannot change lr (saved 3e-05, asked 0.001): ...
    """
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; see reproduce.presets.Config")
    changed = {k: (getattr(saved, k), v) for k, v in overrides.items() if k not in RESUME_OVERRIDES
               and v != getattr(saved, k)}
    if changed:
        raise ValueError(
            "resume cannot change " + ", ".join(f"{k} (saved {a!r}, asked {b!r})" for k, (a, b) in changed.items())
            + ": it would continue a different run on this one's history. A resume may change only "
            + ", ".join(RESUME_OVERRIDES) + " (and the CLI's --threads, --save-every, --out); "
            "start a new run (a fresh --out) for anything else."
        )
    cfg = dataclasses.replace(saved, **{k: v for k, v in overrides.items() if k in RESUME_OVERRIDES})
    if cfg.steps < step:
        raise ValueError(f"steps={cfg.steps} ends before the checkpoint's step {step}; pass steps >= {step}")
    return cfg


def _run_changes(a: Config, b: Config) -> dict:
    """Fields outside ``RESUME_OVERRIDES`` where ``a`` and ``b`` differ: ``{name: (a's, b's)}``."""
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if k not in RESUME_OVERRIDES and da[k] != db[k]}


def _check_layout(state) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"state must be a dict (Trainer.state_dict output), got {type(state).__name__}")
    missing = [k for k in STATE_KEYS if k not in state]
    rng = state.get("rng")
    missing += [f"rng.{k}" for k in RNG_KEYS if isinstance(rng, dict) and k not in rng]
    if missing or not isinstance(rng, dict):
        raise CheckpointError(
            f"state lacks {missing or ['rng (a dict)']}: not a checkpoint of this trainer version"
        )


def _check_progress(state) -> None:
    """Step count, wall time and one metrics row per step must agree."""
    step, history, wall = state["step"], state["history"], state["wall"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"state step must be an int >= 0, got {step!r}")
    steps = [m.get("step") if isinstance(m, dict) else None for m in history] if isinstance(history, list) else None
    if steps != list(range(1, step + 1)):
        raise CheckpointError(f"state history must hold one metrics dict per step 1..{step}")
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not 0 <= wall < math.inf:
        raise CheckpointError(f"state wall time must be a finite number >= 0, got {wall!r}")


def _saved_config(state) -> Config:
    try:
        return Config(**state["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"the saved config is not valid for this version of the code: {err}") from err


def _check_tensors(part: str, got, expected: dict) -> None:
    """``got`` must hold exactly ``expected``'s keys, with the same shapes and dtypes, and finite floats."""
    if not isinstance(got, dict):
        raise CheckpointError(f"state {part} must be a dict of tensors, got {type(got).__name__}")
    if got.keys() != expected.keys():
        diff = sorted(set(got) ^ set(expected), key=str)[:5]
        raise CheckpointError(f"state {part} does not fit this run: keys differ (e.g. {diff})")
    for key, ref in expected.items():
        t = got[key]
        if not isinstance(t, torch.Tensor) or t.shape != ref.shape or t.dtype != ref.dtype:
            what = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise CheckpointError(f"state {part}[{key!r}] is {what}, this run needs {tuple(ref.shape)} {ref.dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"state {part}[{key!r}] holds NaN or inf; resuming would sample from NaN probabilities")


def _check_optimizer_state(saved, optimizer) -> None:
    """Saved optimizer state must map onto this optimizer's parameters with their shapes, all finite
    (``Optimizer.load_state_dict`` checks only the group sizes)."""
    try:
        groups = saved["param_groups"]
        sizes = [len(g["params"]) for g in groups]
        if sizes != [len(g["params"]) for g in optimizer.param_groups]:
            raise CheckpointError(f"state optimizer has parameter groups of sizes {sizes}, this run's differ")
        params = {i: p for g, mine in zip(groups, optimizer.param_groups) for i, p in zip(g["params"], mine["params"])}
        for i, per_param in saved["state"].items():
            if i not in params:
                raise CheckpointError(f"state optimizer holds state for unknown parameter {i!r}")
            for name, value in per_param.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if value.dim() and value.shape != params[i].shape:
                    raise CheckpointError(f"state optimizer {name} of parameter {i} has shape {tuple(value.shape)}, "
                                          f"the parameter {tuple(params[i].shape)}")
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise CheckpointError(f"state optimizer {name} of parameter {i} holds NaN or inf")
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"state optimizer is malformed ({err!r})") from err


def _check_cuda_rng(states) -> None:
    if states is not None and not (
        isinstance(states, list) and all(isinstance(s, torch.Tensor) and s.dtype == torch.uint8 for s in states)
    ):
        raise TypeError("expected None or a list of uint8 tensors")


def _jsonl(rows) -> str:
    return "".join(json.dumps(m) + "\n" for m in rows)


def _csv(rows, header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    if header:
        writer.writeheader()
    writer.writerows({k: ("" if m.get(k) is None else m[k]) for k in METRIC_FIELDS} for m in rows)
    return buf.getvalue()


# ----------------------------------------------------------------------------- helpers
def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False; use --device cpu or auto")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ----------------------------------------------------------------------------- CLI
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "metrics.csv", "config.json")


def parse_args(argv=None):
    from .report import int_at_least

    p = argparse.ArgumentParser(prog="python -m reproduce.trainer", description="One plain RL training run.")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS), help="small (default) or paper")
    p.add_argument("--estimator", default=None, help="registry name: kae, grpo, drgrpo, rloo, reinforce, ...")
    p.add_argument("--bandwidth", type=float, default=None, help="kernel bandwidth h (KAE-type estimators)")
    p.add_argument("--kernel", default=None, help="kernel name (KAE-type estimators)")
    p.add_argument("--G", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--J", type=int, default=None, help="steps each prompt minibatch is reused for")
    p.add_argument("--prompts-per-step", type=int, default=None)
    p.add_argument("--loss-agg-mode", default=None, choices=list(LOSS_AGG_MODES))
    p.add_argument("--kl-coef", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--model", default=None, help="paper preset: local path or hub id of the weights")
    p.add_argument("--data-path", default=None, help="paper preset: GSM8K directory (default ../shared/data/gsm8k); "
                   "with --set dataset=math the training set (.jsonl, directory with train.jsonl, or hf:<name>)")
    p.add_argument("--no-chat-template", action="store_true")
    p.add_argument("--device", default=None, choices=list(DEVICES), help="auto (default), cpu or cuda")
    # 1 by default: see reproduce.report.entry_parser (oversubscribed threads were 20-50x slower on a shared box).
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch CPU threads (default 1)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="output directory for metrics and checkpoints; must not hold "
                   "another run's files unless --overwrite (a resume defaults to its checkpoint's folder)")
    p.add_argument("--overwrite", action="store_true", help="let this run replace the run files already in --out")
    p.add_argument("--save-every", type=int_at_least(0), default=0, help="checkpoint every N steps (0: at the end only)")
    p.add_argument("--resume", default=None, help="checkpoint.pt to continue from (it is verified and loaded "
                   "without running code). Flags may change only " + ", ".join(RESUME_OVERRIDES)
                   + ", --threads, --save-every and --out; other flags must match the saved run")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any reproduce.presets.Config field, value parsed as JSON (e.g. --set n_layer=1)",
    )
    return p.parse_args(argv)


def cli_overrides(args) -> dict:
    """The Config fields the parsed CLI ``args`` set explicitly: named flags, then ``--set`` pairs."""
    from .report import parse_sets

    flags = (
        "estimator",
        "G",
        "steps",
        "seed",
        "lr",
        "J",
        "prompts_per_step",
        "loss_agg_mode",
        "kl_coef",
        "eval_every",
        "model",
        "data_path",
        "cache_dir",
        "device",
    )
    overrides = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    if args.no_chat_template:
        overrides["chat_template"] = False
    kwargs = {key: getattr(args, key) for key in ("bandwidth", "kernel") if getattr(args, key) is not None}
    if kwargs:
        overrides["estimator_kwargs"] = kwargs
    return {**overrides, **parse_sets(args.set)}


def config_from_args(args) -> Config:
    """The validated config for parsed CLI ``args``: preset, then named flags, then ``--set`` pairs."""
    return get_preset(args.preset or "small", **cli_overrides(args))


@contextlib.contextmanager
def claim_out_dir(out: Path, overwrite: bool = False, resume: Path | None = None):
    """Hold ``out`` for one run; yield the old run files that ``overwrite`` replaces.

    ``out`` is created if needed and locked (``out/.lock``) for the ``with`` block, so a second run
    writing there at the same time is refused. It may hold none of ``RUN_FILES``, or be the folder of
    the checkpoint being resumed; another run's folder is refused unless ``overwrite``, because this
    run would truncate its metrics and replace its checkpoint.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(out / ".lock", wait=False))
        except BlockingIOError:
            raise FileExistsError(f"another run is writing to --out {out} (it holds {out / '.lock'})") from None
        continuing = resume is not None and out.resolve() == resume.resolve().parent
        found = [] if continuing else [out / name for name in RUN_FILES if (out / name).exists()]
        if found and not overwrite:
            raise FileExistsError(
                f"--out {out} already holds a run ({', '.join(p.name for p in found)}); this run would truncate "
                "its metrics and replace its checkpoint. Pass --overwrite to replace it, choose a fresh --out, "
                f"or continue it with --resume {out / 'checkpoint.pt'}"
            )
        yield found


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    resume = Path(args.resume) if args.resume else None
    out = Path(args.out) if args.out else (resume.parent if resume is not None else None)
    if resume is None:
        cfg = config_from_args(args)  # bad flags fail before --out is touched
        if out is None and args.save_every:
            raise ValueError("--save-every needs --out (the folder the checkpoints go to)")
    with claim_out_dir(out, args.overwrite, resume) if out is not None else contextlib.nullcontext([]) as replaced:
        if resume is not None:
            overrides = {**cli_overrides(args), **({"preset": args.preset} if args.preset else {})}
            trainer = Trainer.from_checkpoint(resume, out_dir=out, **overrides)
        else:
            trainer = Trainer(cfg, out_dir=out)
        for path in replaced:  # only once the new run is built: a refused start leaves the old run whole
            path.unlink(missing_ok=True)
        history = trainer.train(save_every=args.save_every)
        acc = trainer.evaluate("test")
        if out is not None:
            trainer.save_checkpoint(out / "checkpoint.pt")
    last = history[-1] if history else {}
    print(
        json.dumps(
            {
                "steps": trainer.step_count,
                "final_test": acc,  # greedy, mean@k and pass@k on the held-out set
                "last_reward": last.get("reward_mean"),
                "wall_s": last.get("wall_s"),
            }
        )
    )


if __name__ == "__main__":
    main()
