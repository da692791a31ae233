"""Measurements along training paths: paired value/gradient MSE (Tables 1-2, Figure 3) and accuracy curves.

Paired protocol (Tables 1-2, Figure 3). One *driver* estimator (``cfg.estimator``)
trains the policy exactly as a plain ``Trainer`` run with the same seed would.
Every estimator under test sees the same path: at every step all of them
``update`` with the driver's batch rewards, and at the measured steps all of
them ``compute`` baselines on that same batch. The truth at a measured step
comes from ``mc_samples`` extra responses per batch prompt, drawn from the
current (pre-update) policy with a separate random generator, so measuring
never changes the path:

- value truth: ``V(x)`` = mean reward of the extra responses. An estimator's
  value MSE is the mean over the batch's responses of ``(b - V)^2`` minus the
  Monte-Carlo noise ``mean(s^2(x) / M)`` (``s^2``: unbiased reward variance of
  the M extra samples). The truth's error is independent of every estimator's
  baseline (fresh samples), so ``E(b - V_mc)^2 = E(b - V)^2 + Var(V_mc)`` and the
  subtraction removes the common noise floor without bias.
- gradient truth: REINFORCE ``(1/(n*L)) sum_i (Z_i - b_i) grad log pi(y_i|x_i)``
  (``L`` = ``max_new_tokens``: the Dr. GRPO ``seq-mean-token-sum-norm`` form at
  ratio 1) on a fixed parameter subset, the last transformer block. The batch
  estimate of estimator ``e`` uses ``b_i`` = its baseline; the truth uses the
  extra responses with a leave-one-out mean of the other extra responses of the
  same prompt as baseline (independent of ``Z_i``, so unbiased). The extra
  responses are split in halves ``A``/``B``; ``||g_A - g_B||^2 / 4`` estimates the
  truth's own noise and is subtracted as above. We use baselines, not the
  estimators' advantages, so an estimator's std scaling cannot change the
  gradient's scale: Table 2 compares baselines, as the paper's theory does.

``accuracy_curves`` trains one run per estimator and seed and evaluates greedy
test accuracy every ``eval_every`` steps (Figures 4 and S.1).

Example
-------
>>> cfg = get_preset("small", steps=24, estimator="kae")                    # doctest: +SKIP
>>> rows = paired_run(cfg, {"KAE": ("kae", {}), "GRPO": ("grpo", {})},
...                   measure_steps=range(4, 25, 4), mc_samples=64)          # doctest: +SKIP
>>> summarise(rows, "value_mse")                                             # doctest: +SKIP
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from .presets import Config
from .trainer import Rollout, Trainer, _to_numpy

GRADIENT_MODE = "seq-mean-token-sum-norm"
GRADIENT_PARAMS = "the last transformer block (all its weights: attention, MLP, norms)"
_LAYER = re.compile(r"\.(?:layers|h)\.(\d+)\.")


# ----------------------------------------------------------------------------- estimators
def registry_estimators(exclude=("oracle",)) -> dict[str, tuple[str, dict]]:
    """Every estimator in ``kernelvalue.advantage.ESTIMATORS`` with default options, aliases removed.

    Returns ``{label: (name, kwargs)}``; labels are the registry names. ``oracle``
    is left out by default: its baseline is the Monte-Carlo truth itself.
    """
    from kernelvalue.advantage import ESTIMATORS

    seen, out = set(), {}
    for name, factory in ESTIMATORS.items():
        if name in exclude or id(factory) in seen:
            continue
        seen.add(id(factory))
        out[name] = (name, {})
    return out


def last_block_filter(model):
    """``param_filter`` selecting the last transformer block (``...layers.<L-1>.`` or ``...h.<L-1>.``)."""
    layers = [int(m.group(1)) for n, _ in model.named_parameters() if (m := _LAYER.search(n))]
    if not layers:
        raise ValueError("no transformer blocks found in model.named_parameters() (expected '.layers.<i>.' names)")
    tag = f".{max(layers)}."
    return lambda name: bool((m := _LAYER.search(name)) and m.group(0).endswith(tag))


# ----------------------------------------------------------------------------- paired value / gradient MSE
def paired_run(
    cfg: Config,
    estimators: dict[str, tuple[str, dict]],
    measure_steps,
    mc_samples: int,
    gradients: bool = False,
    log=print,
    progress: bool = True,
    trainer: Trainer | None = None,
) -> list[dict]:
    """Train with ``cfg.estimator`` and measure every estimator on the same path and samples.

    Parameters
    ----------
    cfg : Config
        The run (driver estimator, seed, steps, ...).
    estimators : dict
        ``{label: (registry name, kwargs)}``. An ``"oracle"`` entry gets the Monte-Carlo values.
    measure_steps : iterable of int
        1-based steps at which to measure (others are only trained through).
    mc_samples : int
        Extra responses per batch prompt for the truth (even, >= 4: two equal halves of >= 2).
    gradients : bool
        Also measure the policy-gradient MSE (Table 2).
    trainer : Trainer, optional
        A fresh ``Trainer(cfg)`` to drive (built here if None); passing one lets the caller inspect it.

    Returns
    -------
    list of dict
        One row per (measured step, estimator): ``seed, step, estimator, value_mse,
        value_mse_raw, value_noise, true_value`` and, with ``gradients``, ``grad_mse,
        grad_mse_raw, grad_noise, grad_norm2`` (squared norm of the truth) and ``grad_cos``
        (cosine between the estimate and the truth: scale-free, as Adam's update nearly is).
    """
    if not (isinstance(mc_samples, int) and mc_samples >= 4 and mc_samples % 2 == 0):
        raise ValueError(f"mc_samples must be an even int >= 4 (two equal halves of >= 2 samples), got {mc_samples!r}")
    steps = sorted({int(s) for s in measure_steps})
    if not steps or steps[0] < 1 or steps[-1] > cfg.steps:
        raise ValueError(f"measure_steps must lie in 1..steps={cfg.steps}, got {steps[:3]}...{steps[-3:]}")
    from kernelvalue.advantage import get_estimator

    trainer = Trainer(cfg, log=log) if trainer is None else trainer
    if trainer.step_count != 0:
        raise ValueError(f"trainer must be fresh (step 0), got one at step {trainer.step_count}")
    bank = {label: get_estimator(name, **kwargs) for label, (name, kwargs) in estimators.items()}
    oracle_labels = {label for label, (name, _) in estimators.items() if name == "oracle"}
    mc_gen = torch.Generator(trainer.device).manual_seed(10_000 + cfg.seed)
    param_filter = last_block_filter(trainer.model) if gradients else None
    wanted, rows = set(steps), []

    def observe(tr: Trainer, rollout: Rollout, step: int) -> None:
        if step in wanted:
            rows.extend(_measure(tr, rollout, step, bank, oracle_labels, mc_gen, mc_samples, param_filter))
        for est in bank.values():
            est.update(rollout.keys, rollout.rewards, step)

    from tqdm.auto import tqdm

    for _ in tqdm(range(cfg.steps), disable=not progress, desc=f"paired/{cfg.estimator}/seed{cfg.seed}"):
        trainer.step(observe=observe)
    for row in rows:
        row["seed"] = cfg.seed
    return rows


def _measure(tr, rollout, step, bank, oracle_labels, mc_gen, m, param_filter) -> list[dict]:
    """One measured step: Monte-Carlo truth from ``m`` extra responses per batch prompt, then every
    estimator's baselines on the batch (``compute`` only: ``update`` follows in ``observe``)."""
    uniq, inverse = np.unique(rollout.keys, return_inverse=True)
    extra = tr.sample(uniq, m, generator=mc_gen)
    z = extra.rewards.reshape(len(uniq), m)
    truth = z.mean(1)
    noise = z.var(1, ddof=1) / m
    baselines = {}
    for label, est in bank.items():
        values = truth[inverse] if label in oracle_labels else None
        res = est.compute(rollout.keys, rollout.rewards, step, values=values)
        baselines[label] = np.asarray(_to_numpy(res.baselines), dtype=np.float64).reshape(-1)
    rows = []
    for label, b in baselines.items():
        raw = float(np.mean((b - truth[inverse]) ** 2))
        rows.append(
            {
                "step": step,
                "estimator": label,
                "value_mse": raw - float(noise[inverse].mean()),
                "value_mse_raw": raw,
                "value_noise": float(noise[inverse].mean()),
                "true_value": float(truth.mean()),
            }
        )
    if param_filter is not None:
        grads = tr.policy_gradients(
            rollout, np.stack([rollout.rewards - b for b in baselines.values()]), param_filter, GRADIENT_MODE
        )
        g_true, g_noise = _mc_gradient(tr, extra, z, param_filter)
        for row, g in zip(rows, grads):
            raw = float(((g - g_true) ** 2).sum())
            cos = float(torch.nn.functional.cosine_similarity(g, g_true, dim=0))
            row.update(
                grad_mse=raw - g_noise, grad_mse_raw=raw, grad_noise=g_noise, grad_norm2=float((g_true**2).sum()), grad_cos=cos
            )
    return rows


def _mc_gradient(tr, extra: Rollout, z: np.ndarray, param_filter) -> tuple[torch.Tensor, float]:
    """Monte-Carlo REINFORCE gradient from the extra samples and an unbiased estimate of its noise."""
    n_prompts, m = z.shape
    half = np.arange(m) < m // 2  # halves A and B of every prompt's extra samples
    adv = np.zeros((2, n_prompts, m))
    for row, part in enumerate((half, ~half)):
        zp = z[:, part]
        loo = (zp.sum(1, keepdims=True) - zp) / (zp.shape[1] - 1)  # leave-one-out baseline within the half
        adv[row][:, part] = zp - loo
    rows = tr.policy_gradients(extra, adv.reshape(2, -1), param_filter, GRADIENT_MODE)
    # Each row averages over all n_prompts*m samples with zeros outside its half: rescale to the half's mean.
    g_a, g_b = rows[0] * m / half.sum(), rows[1] * m / (~half).sum()
    g_true = (g_a * half.sum() + g_b * (~half).sum()) / m
    # Var(g_true) = Var(g_a)/4 + Var(g_b)/4 for equal halves, and E||g_a - g_b||^2 = Var(g_a) + Var(g_b).
    return g_true, float(((g_a - g_b) ** 2).sum()) / 4


def summarise(rows: list[dict], column: str, reference=("grpo", "reinforce_pp")) -> pd.DataFrame:
    """Mean of ``column`` over measured steps and seeds per estimator, its standard error over
    (seed, step) cells, and the paired reduction vs each ``reference`` estimator present.

    The reduction is ``1 - mean(est) / mean(ref)``; both means cover the same cells (paired).
    """
    df = pd.DataFrame(rows)
    cells = df.pivot_table(index=["seed", "step"], columns="estimator", values=column, sort=False)
    means = cells.mean()
    out = pd.DataFrame(
        {
            "estimator": cells.columns,
            column: means.to_numpy(),
            "std_err": (cells.std(ddof=1) / np.sqrt(len(cells))).to_numpy() if len(cells) > 1 else np.nan,
        }
    )
    for ref in reference:
        if ref in cells.columns:
            with np.errstate(divide="ignore", invalid="ignore"):  # a reference MSE of 0 gives inf/nan, not a warning
                out[f"reduction_vs_{ref}"] = ((means[ref] - means) / means[ref]).to_numpy()
    return out.sort_values(column).reset_index(drop=True)


# ----------------------------------------------------------------------------- accuracy curves
def accuracy_curves(base: Config, estimators: dict[str, tuple[str, dict]], seeds, log=print, progress=True) -> list[dict]:
    """Greedy test accuracy at step 0 and every ``eval_every`` steps, one run per (estimator, seed).

    Returns rows ``estimator, seed, step, test_acc, train_reward`` (``train_reward``: mean batch
    reward over the steps since the previous evaluation).
    """
    import dataclasses

    rows, start_acc = [], None
    for label, (name, kwargs) in estimators.items():
        for seed in seeds:
            cfg = dataclasses.replace(base, estimator=name, estimator_kwargs=dict(kwargs), seed=int(seed))
            trainer = Trainer(cfg, log=log)
            if start_acc is None:  # greedy decoding of the same warm start: one evaluation serves every run
                start_acc = trainer.evaluate("test")
            rows.append({"estimator": label, "seed": int(seed), "step": 0, "test_acc": start_acc, "train_reward": np.nan})
            history = trainer.train(progress=progress)
            last = 0
            for m in history:
                if m["test_acc"] is not None:
                    window = [h["reward_mean"] for h in history[last : m["step"]]]
                    rows.append(
                        {
                            "estimator": label,
                            "seed": int(seed),
                            "step": m["step"],
                            "test_acc": m["test_acc"],
                            "train_reward": float(np.mean(window)),
                        }
                    )
                    last = m["step"]
    return rows
