"""Run configurations: one validated dataclass, two presets.

``small`` (default) runs on 2 CPU cores in minutes: a tiny Qwen2-architecture
causal LM with a character tokenizer, warm-started by supervised fine-tuning
on the synthetic arithmetic task (:mod:`reproduce.tasks`), then trained by RL.
``paper`` is the paper's GSM8K setting: Qwen2.5-1.5B-Instruct (weights from
``--model``), chat template, GSM8K prompts, J = 8 steps per prompt minibatch.
``dataset="math"`` trains on any boxed-answer set (MATH, DAPO-17k; see
:func:`reproduce.tasks.load_math`) with the ``\\boxed{}`` reward; Tables 3-4
build their paper configs from ``PAPER_MATH``.

Example
-------
>>> cfg = get_preset("small", estimator="grpo", G=8)
>>> cfg.G, cfg.estimator, cfg.dataset
(8, 'grpo', 'synthetic')
>>> get_preset("small", G=0)
Traceback (most recent call last):
...
ValueError: G must be an int >= 1 (responses per prompt), got 0
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
DATASETS = ("synthetic", "gsm8k", "math")
# How each dataset's answers are read from a completion (reproduce.rewards.extract_answer style).
REWARD_STYLES = {"synthetic": "gsm8k", "gsm8k": "gsm8k", "math": "boxed"}
ARCHS = ("qwen2", "gpt2")
DEVICES = ("auto", "cpu", "cuda")
PARAM_DTYPES = ("float32", "bfloat16")
TINY_LM_POSITIONS = 256  # position table of the tiny LM built when model is None (GPT-2 cannot go past it)

# Fields that determine the warm-started model; their hash names its cache directory.
WARM_START_FIELDS = (
    "arch",
    "n_layer",
    "d_model",
    "n_head",
    "task_seed",
    "min_terms",
    "max_terms",
    "max_value",
    "sft_direct_rate",
    "sft_steps",
    "sft_batch_size",
    "sft_lr",
)


@dataclass
class Config:
    """Everything one training run needs; validated on construction.

    Parameters are grouped below: model, task/data, warm start (SFT), RL,
    evaluation, and run. See ``get_preset`` for the two presets. Estimator
    options (``bandwidth``, ``kernel``, ...) go in ``estimator_kwargs`` and
    are passed to ``kernelvalue.advantage.get_estimator`` unchanged.

    Examples
    --------
    >>> Config(lr=0.0)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number > 0, got 0.0
    """

    preset: str = "small"
    # model
    model: str | None = None  # hub name or local path (paper preset); None builds the tiny LM
    arch: str = "qwen2"
    n_layer: int = 2
    d_model: int = 64
    n_head: int = 4
    chat_template: bool = False
    param_dtype: str = "float32"
    # task / data
    dataset: str = "synthetic"
    data_path: str | None = None  # GSM8K directory/file override; the training set for dataset="math"
    problem_key: str | None = None  # dataset="math": problem field (dotted path ok); default problem/question/prompt
    answer_key: str | None = None  # dataset="math": answer field, e.g. "reward_model.ground_truth" (DAPO-17k)
    task_seed: int = 0
    min_terms: int = 2  # operands per problem of the SFT corpus and the held-out set
    max_terms: int = 5
    max_value: int = 9
    pool_min_terms: int | None = None  # operands per RL-pool problem (None: min_terms/max_terms)
    pool_max_terms: int | None = None
    n_train_prompts: int = 80  # the RL prompt pool (MATH analogue: prompts recur every 50 steps)
    n_test: int = 1000
    # warm start (small preset only)
    sft_steps: int = 1500
    sft_batch_size: int = 64
    sft_lr: float = 3e-3
    sft_direct_rate: float = 0.5  # share of SFT solutions that state the answer without the work (tasks.ArithmeticTask)
    # RL
    estimator: str = "kae"
    estimator_kwargs: dict = field(default_factory=dict)  # e.g. {"bandwidth": 0.1, "kernel": "triangular"}
    G: int = 4
    prompts_per_step: int = 16
    J: int = 10  # consecutive steps each prompt minibatch is used for (paper: 10 for GSM8K and MATH, 8 for DAPO)
    steps: int = 100
    lr: float = 3e-5  # small preset: chosen by the sweep in results/preset_sweep.md (1e-4 made the null control collapse)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    temperature: float = 1.0
    do_sample: bool = True
    max_new_tokens: int = 48
    clip_eps: float = 0.2
    ppo_epochs: int = 1
    minibatches: int = 1
    micro_batch_size: int = 64  # sequences per forward/backward; gradient accumulates across them
    loss_agg_mode: str = "token-mean"
    kl_coef: float = 0.0
    oracle_samples: int = 32  # extra samples per prompt for the Monte-Carlo value when estimator="oracle"
    reward_shuffle: bool = False  # null control: permute rewards across the batch before the estimator
    # evaluation
    eval_every: int = 25
    eval_batch_size: int = 200
    eval_k: int = 4  # samples per held-out problem at the training temperature (mean@k, pass@k); 0: greedy only
    # run
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None

    def __post_init__(self):
        _choice(self, "preset", PRESETS)
        _positive_int(self, "G", "responses per prompt")
        for name in (
            "n_layer",
            "d_model",
            "n_head",
            "n_train_prompts",
            "n_test",
            "prompts_per_step",
            "J",
            "max_new_tokens",
            "ppo_epochs",
            "minibatches",
            "micro_batch_size",
            "sft_batch_size",
            "eval_batch_size",
            "oracle_samples",
            "max_value",
        ):
            _positive_int(self, name)
        for name in ("steps", "sft_steps", "eval_every", "eval_k"):
            _positive_int(self, name, minimum=0)
        for name in ("seed", "task_seed"):
            _positive_int(self, name, "numpy seeds must be below 2**32", minimum=0, maximum=2**32 - 1)
        _positive_int(self, "min_terms", minimum=2)
        _positive_int(self, "max_terms", minimum=self.min_terms, why="at least min_terms")
        if not isinstance(self.reward_shuffle, bool):
            raise ValueError(f"reward_shuffle must be a bool, got {self.reward_shuffle!r}")
        if isinstance(self.sft_direct_rate, bool) or not (
            isinstance(self.sft_direct_rate, (int, float)) and 0 <= self.sft_direct_rate < 1
        ):
            raise ValueError(f"sft_direct_rate must be a float in [0, 1), got {self.sft_direct_rate!r}")
        for name in ("lr", "sft_lr", "grad_clip", "clip_eps"):
            _positive_float(self, name)
        for name in ("weight_decay", "kl_coef"):
            _positive_float(self, name, minimum=0.0)
        for name in ("chat_template", "do_sample"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.do_sample:
            _positive_float(self, "temperature", why=" when do_sample=True (use do_sample=False for greedy)")
        else:
            _positive_float(self, "temperature", minimum=0.0, why=" (ignored when do_sample=False)")
        for name in ("model", "data_path", "cache_dir"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be a non-empty string (a path or hub id) or None, got {value!r}")
        for name in ("problem_key", "answer_key"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip(".")):
                raise ValueError(f"{name} must be a non-empty field name (dotted path allowed) or None, got {value!r}")
        _choice(self, "loss_agg_mode", LOSS_AGG_MODES)
        _choice(self, "dataset", DATASETS)
        _choice(self, "arch", ARCHS)
        _choice(self, "device", DEVICES)
        _choice(self, "param_dtype", PARAM_DTYPES)
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if self.max_value > 2**62:
            raise ValueError(f"max_value must be <= 2**62 (operands are int64), got {self.max_value}")
        lo, hi = self.pool_terms()
        if not 2 <= lo <= hi:
            raise ValueError(f"pool_min_terms/pool_max_terms must satisfy 2 <= pool_min_terms <= pool_max_terms, got {lo}-{hi}")
        if self.prompts_per_step * self.G % self.minibatches:
            raise ValueError(
                f"minibatches={self.minibatches} must divide prompts_per_step*G={self.prompts_per_step * self.G}"
            )
        if self.dataset in ("gsm8k", "math") and self.model is None:
            raise ValueError(f"model must name a local path or hub id for dataset={self.dataset!r} (pass --model PATH)")
        if self.dataset == "math" and not self.data_path:
            raise ValueError(
                "data_path must name the training set for dataset='math': a .jsonl/.json file, a directory with "
                "train.jsonl (and optionally test.jsonl), or 'hf:<name>[:<split>]' (pass --train-data/--data-path)"
            )
        if self.dataset == "synthetic" and self.prompts_per_step > self.n_train_prompts:
            raise ValueError(
                f"prompts_per_step={self.prompts_per_step} exceeds the prompt pool n_train_prompts="
                f"{self.n_train_prompts}; raise n_train_prompts or lower prompts_per_step"
            )
        if self.model is None:
            _check_tiny_lm(self)
        if not isinstance(self.estimator, str):
            raise ValueError(f"estimator must be a registry name (a string), got {self.estimator!r}")
        if not isinstance(self.estimator_kwargs, dict) or not all(isinstance(k, str) for k in self.estimator_kwargs):
            raise TypeError(f"estimator_kwargs must be a dict with string keys, got {self.estimator_kwargs!r}")
        bw = self.estimator_kwargs.get("bandwidth")
        if bw is not None and (isinstance(bw, bool) or not isinstance(bw, (int, float)) or not 0 < bw < math.inf):
            raise ValueError(f"estimator_kwargs['bandwidth'] must be a finite number > 0, got {bw!r}")
        self.make_estimator()  # unknown names and bad options fail here, not at step 1

    def pool_terms(self) -> tuple[int, int]:
        """Operand range of the RL prompt pool (defaults to the task's ``min_terms``/``max_terms``)."""
        lo = self.min_terms if self.pool_min_terms is None else self.pool_min_terms
        return lo, self.max_terms if self.pool_max_terms is None else self.pool_max_terms

    def make_estimator(self):
        """A fresh advantage estimator from the registry (``estimator``, ``estimator_kwargs``)."""
        from kernelvalue.advantage import get_estimator

        try:
            return get_estimator(self.estimator, **self.estimator_kwargs)
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(
                f"estimator={self.estimator!r} with estimator_kwargs={self.estimator_kwargs!r} rejected: {err}"
            ) from err

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def warm_start_key(self) -> str:
        """Hash of the fields that determine the warm-started model (cache key)."""
        blob = json.dumps({k: getattr(self, k) for k in WARM_START_FIELDS}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def resolved_cache_dir(self) -> Path:
        """``cache_dir``, else ``$KERNELVALUE_CACHE``, else ``~/.cache/kernelvalue``."""
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        return Path(os.environ.get("KERNELVALUE_CACHE", Path.home() / ".cache" / "kernelvalue"))


PRESETS = {
    "small": {},
    # The paper's GSM8K setting (Qwen2.5-1.5B-Instruct). Batch size and lr are not given in the
    # summaries we have; these are common GRPO settings for 1.5B models.
    "paper": {
        "preset": "paper",
        "model": "Qwen/Qwen2.5-1.5B-Instruct",
        "dataset": "gsm8k",
        "chat_template": True,
        "n_train_prompts": 7473,
        "n_test": 1319,
        "G": 4,
        "prompts_per_step": 32,
        "J": 10,
        "steps": 300,
        "lr": 1e-6,
        "max_new_tokens": 512,
        "eval_k": 1,
        "micro_batch_size": 16,
        "eval_every": 50,
        "eval_batch_size": 64,
        "sft_steps": 0,
    },
}


# Tables 3-4 paper runs (dataset="math"): applied on top of PRESETS["paper"]. The paper gives the model
# (Qwen2.5-Math-7B or -1.5B), the data (MATH train / DAPO-17k), G in {4, 8}, J = 8 or 10 and 200-500 steps;
# everything else is NOT given in the summaries we have and is a common GRPO choice for Qwen2.5-Math
# (marked "ours"): 300 steps (middle of 200-500), 32 prompts per step, lr 1e-6, no KL, temperature 1,
# 3000 new tokens (Qwen2.5-Math has a 4096-token context), a 500-problem held-out set evaluated every 50
# steps. Parameters stay float32 (bf16 autocast on CUDA): with bf16 weights an lr-1e-6 AdamW step is below
# bf16 resolution for most weights and is lost. Memory: fp32 weights + grads + AdamW ~ 16 bytes/param, so
# Qwen2.5-Math-1.5B (~24 GB) fits one 80 GB GPU while 7B (~120 GB plus activations) needs more than one
# GPU's memory, which this single-device trainer does not shard; --set param_dtype=bfloat16 fits it at the
# cost of lost small updates.
PAPER_MATH = {
    "model": "Qwen/Qwen2.5-Math-7B",  # paper
    "dataset": "math",
    "chat_template": True,  # used when the tokenizer has one (Qwen2.5-Math ships a chat template)
    "G": 4,  # paper (also 8)
    "J": 10,  # paper: 10 for MATH (Table 4 sets 8, the paper's DAPO value)
    "steps": 300,  # ours, inside the paper's 200-500
    "prompts_per_step": 32,  # ours
    "lr": 1e-6,  # ours
    "kl_coef": 0.0,  # ours
    "temperature": 1.0,  # ours
    "max_new_tokens": 3000,  # ours
    "micro_batch_size": 8,  # ours (memory only; gradients accumulate)
    "param_dtype": "float32",  # ours (see above)
    "n_train_prompts": 1_000_000,  # all rows of the training file
    "n_test": 500,  # ours: held-out problems evaluated during training
    "eval_every": 50,
    "eval_batch_size": 64,
}


def get_preset(name: str = "small", **overrides) -> Config:
    """A validated ``Config`` for preset ``name`` with ``overrides`` applied.

    Examples
    --------
    >>> get_preset("paper", model="/models/qwen").J
    10
    """
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)}; see reproduce.presets.Config")
    if overrides.get("preset", name) != name:
        raise ValueError(f"preset={overrides['preset']!r} would mislabel a {name!r} config; choose the preset by name")
    return Config(**{**PRESETS[name], **overrides})


def _positive_int(cfg, name, why="", minimum=1, maximum=None):
    value = getattr(cfg, name)
    in_range = value >= minimum and (maximum is None or value <= maximum) if isinstance(value, int) else False
    if isinstance(value, bool) or not in_range:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an int {bound}{f' ({why})' if why else ''}, got {value!r}")


def _positive_float(cfg, name, why="", minimum=None):
    """A finite number > 0 (or >= ``minimum`` when given); bools, NaN and inf are refused."""
    value = getattr(cfg, name)
    number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not number or not (value > 0 if minimum is None else value >= minimum):
        bound = "> 0" if minimum is None else f">= {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}{why}, got {value!r}")


def _check_tiny_lm(cfg):
    """The tiny LM's warm start needs SFT steps; Qwen2's attention needs whole key/value head groups and
    an even RoPE head size; GPT-2's learned positions end at ``TINY_LM_POSITIONS``, so the longest prompt
    plus ``max_new_tokens`` (RL) and the longest SFT example must fit."""
    if cfg.sft_steps < 1:
        raise ValueError("sft_steps must be >= 1 when model is None (the tiny LM is warm-started by SFT), got 0")
    if cfg.arch == "qwen2":  # RoPE positions have no table to run off, but heads have shape rules
        kv_heads = max(1, cfg.n_head // 2)  # build_tiny_lm's grouped-query attention
        if cfg.n_head % kv_heads or (cfg.d_model // cfg.n_head) % 2:
            raise ValueError(
                f"arch='qwen2' needs n_head divisible by its {kv_heads} key/value heads and an even head size "
                f"d_model/n_head for RoPE, got n_head={cfg.n_head}, d_model={cfg.d_model}; use an even n_head "
                "(or 1 or 3) and d_model a multiple of 2*n_head"
            )
        return
    digits = len(str(cfg.max_value))  # operand width; a running total has at most this plus the terms' carry
    total = len(str(cfg.max_terms * cfg.max_value)) + 1  # with a minus sign
    prompt = 1 + len("What is ?\n") + cfg.max_terms * (digits + 1) - 1  # <bos>, text, operands and operators
    solution = (cfg.max_terms - 1) * (2 * total + digits + 3) + len("#### ") + total + 1  # lines "a+b=c\n", eos
    if prompt + cfg.max_new_tokens > TINY_LM_POSITIONS or prompt + solution > TINY_LM_POSITIONS:
        raise ValueError(
            f"arch='gpt2' has {TINY_LM_POSITIONS} positions, but prompts of up to {prompt} tokens plus "
            f"max_new_tokens={cfg.max_new_tokens} (or SFT examples of up to {prompt + solution} tokens) need more; "
            "lower max_new_tokens, max_terms or max_value, or use arch='qwen2'"
        )


def _choice(cfg, name, options):
    options = list(options)  # a list, so an unhashable value is refused by the message below, not a TypeError
    if getattr(cfg, name) not in options:
        raise ValueError(f"{name} must be one of {options}, got {getattr(cfg, name)!r}")


# ----------------------------------------------------------------------------- experiments (entry points)
# Per entry point and preset: Config overrides ("config") and measurement options. Options:
#   seeds          run seeds (one training path each; Table 2 keeps one so its small preset fits the
#                  README's 10-minute budget on 2 CPU cores)
#   mc_samples     extra responses per batch prompt for the Monte-Carlo truth (Tables 1-2, Figure 3)
#   measure_every  measure at steps measure_every, 2*measure_every, ... (coprime with J, so every
#                  position inside a J-step minibatch block is measured)
# Any option can be overridden like a Config field (``--set mc_samples=8``).
# The small preset's paired measurements (Tables 1-2, Figure 3) run the MATH-analogue RL of Table 3 with KAE as
# driver; Table 1 runs long enough for the paper's early/mid/late rows (steps 10, 90, 170), Table 2 measures
# gradients (costlier) over the first 40 steps, where the policy changes fastest.
_SMALL_MEASURE = {"eval_every": 0, "estimator": "kae"}
_PAPER_MEASURE = {"steps": 40, "eval_every": 0, "estimator": "kae"}
EXPERIMENTS = {
    "table1": {
        "small": {"config": {**_SMALL_MEASURE, "steps": 180}, "seeds": [0, 1, 2, 3, 4], "mc_samples": 64,
                  "measure_every": 6},
        "paper": {"config": _PAPER_MEASURE, "seeds": [0], "mc_samples": 64, "measure_every": 3},
    },
    "table2": {
        "small": {"config": {**_SMALL_MEASURE, "steps": 40}, "seeds": [0, 1, 2, 3, 4], "mc_samples": 64,
                  "measure_every": 4},
        "paper": {"config": _PAPER_MEASURE, "seeds": [0], "mc_samples": 64, "measure_every": 3},
    },
    "figure3": {
        "small": {"config": {**_SMALL_MEASURE, "steps": 90}, "seeds": [0, 1, 2, 3, 4], "mc_samples": 64,
                  "measure_every": 9},
        "paper": {"config": _PAPER_MEASURE, "seeds": [0], "mc_samples": 64, "measure_every": 3},
    },
    # Single stream: one response per prompt, so only the history can give a baseline.
    "figure4": {
        "small": {"config": {"G": 1, "steps": 200, "eval_every": 40}, "seeds": list(range(8))},
        "paper": {"config": {"G": 1, "steps": 300, "eval_every": 25}, "seeds": [0, 1, 2]},
    },
    "figureS1": {
        "small": {"config": {"G": 4, "steps": 100, "eval_every": 20}, "seeds": list(range(8))},
        "paper": {"config": {"G": 4, "steps": 300, "eval_every": 25}, "seeds": [0, 1, 2]},
    },
}


def experiment(name: str, preset: str = "small", seeds=None, **overrides) -> tuple[Config, dict]:
    """``(Config, options)`` for entry point ``name`` under ``preset``.

    ``overrides`` may name Config fields or the experiment's options (see ``EXPERIMENTS``).

    Examples
    --------
    >>> cfg, opts = experiment("table2", "small", mc_samples=8, steps=6)
    >>> cfg.steps, opts["mc_samples"], opts["seeds"]
    (6, 8, [0, 1, 2, 3, 4])
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {sorted(EXPERIMENTS)}, got {name!r}")
    if preset not in EXPERIMENTS[name]:
        raise ValueError(f"preset must be one of {sorted(EXPERIMENTS[name])}, got {preset!r}")
    block = EXPERIMENTS[name][preset]
    options = {k: v for k, v in block.items() if k != "config"}
    options.update({k: overrides.pop(k) for k in list(overrides) if k in options})
    if seeds is not None:
        options["seeds"] = list(seeds)
    seeds_ok = isinstance(options["seeds"], list) and options["seeds"]
    if not seeds_ok or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in options["seeds"]):
        raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {options['seeds']!r}")
    m = options.get("mc_samples", 4)
    if isinstance(m, bool) or not isinstance(m, int) or m < 4 or m % 2:
        raise ValueError(f"mc_samples must be an even int >= 4 (the truth's noise is estimated from two halves), got {m!r}")
    every = options.get("measure_every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"measure_every must be an int >= 1, got {every!r}")
    cfg = get_preset(preset, **{**block["config"], **overrides})
    return cfg, options
