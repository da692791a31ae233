"""Measurements along training paths: paired value/gradient MSE (Tables 1-2, Figure 3) and accuracy runs.

Paired protocol (Tables 1-2, Figure 3). One *driver* estimator (``cfg.estimator``)
trains the policy exactly as a plain ``Trainer`` run with the same seed would.
Every estimator under test sees the same path: at every step all of them
``update`` with the driver's batch rewards, and at the measured steps all of
them ``compute`` on that same batch. The truth at a measured step comes from
``mc_samples`` extra responses per batch prompt, drawn from the current
(pre-update) policy with a separate random generator, so measuring never
changes the path.

Values. ``V(x)`` = mean reward of the extra responses. An estimator's value MSE
is the mean over the batch's responses of ``(b - V)^2`` minus the Monte-Carlo
noise ``mean(s^2(x) / M)`` (``s^2``: unbiased reward variance of the M extra
samples): the truth's error is independent of every baseline (fresh samples),
so ``E(b - V_mc)^2 = E(b - V)^2 + Var(V_mc)`` and the subtraction is unbiased.

Gradients, as each method defines them. Each estimator's gradient uses its own
advantages (GRPO's std normalisation, REINFORCE++'s batch whitening, GPG's
rescaling, ...) and its own loss aggregation (:data:`AGGREGATION`), on a fixed
parameter subset (the last transformer block). Every such gradient is linear in
the per-response scores ``s_i = grad sum_t log pi(y_it | x_i, y_i<t)``, so the
scores are computed once per measured step and every estimator's gradient is a
weighted sum of them; per prompt ``p`` its contribution is
``c_p = sum_{i in p} a_i w_i s_i`` with the aggregation's weight ``w_i``, and the
batch gradient is ``mean_p c_p``. The truth is the unbiased policy gradient in
the ``seq-mean-token-sum-norm`` scale (``E[(Z - V) s] / L``, ``L`` =
``max_new_tokens``), per prompt ``t_p``, from the extra responses with
leave-one-out baselines inside two halves A/B; ``||t_A - t_B||^2 / 4`` estimates
its own noise, subtracted as above.

Batch size and scale. With ``e_p = s c_p - t_p`` i.i.d. over prompts (``s`` a scalar
rescaling of the estimator, 1 as it stands), the gradient MSE at ``B`` prompts per
batch is ``bias^2 + (m2 - bias^2) / B`` where ``m2 = E||e_p||^2`` (noise-corrected
mean over the batch's prompts) and ``bias^2 = ||E e_p||^2``, estimated without bias
by the mean of ``<e_p, e_q>`` over pairs ``p != q`` (the truth's noise is
independent across prompts). Both are quadratics in ``s`` whose coefficients are
the per-prompt moments stored per cell (``pp_*`` and ``x_*``), so the MSE at any
``B`` and the best rescaling at that ``B`` follow (:func:`mse_at`). At the measured
``B`` and ``s = 1`` this equals the directly measured MSE exactly; other ``B``
extrapolate (Theorem 2's ``MSE(g_oracle) + O(MSE(V)/B)`` form). Estimators that
pool across prompts (REINFORCE++'s batch statistics, GPG's rescaling, shrinkage)
are evaluated with the measured batch's statistics, which the i.i.d.
extrapolation holds fixed.

``accuracy_runs`` trains one run per (method, seed), in parallel worker
processes, and evaluates held-out accuracy (mean@k at the training temperature,
pass@k and greedy) at step 0 and every ``eval_every`` steps (Figures 4 and S.1,
Tables 3-4).

Example
-------
>>> cfg = get_preset("small", steps=24, estimator="kae")                    # doctest: +SKIP
>>> res = paired_run(cfg, {"kae": ("kae", {}), "grpo": ("grpo", {})},
...                  measure_steps=range(4, 25, 4), mc_samples=64)           # doctest: +SKIP
>>> summarise(res.cells, "value_mse")                                        # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .presets import Config
from .trainer import Rollout, Trainer, _to_numpy

TRUTH_MODE = "seq-mean-token-sum-norm"
GRADIENT_PARAMS = "the last transformer block (all its weights: attention, MLP, norms)"
# Loss aggregation as each method defines it (others: the unbiased seq-mean-token-sum-norm form).
# GRPO (Shao et al. 2024): mean over responses of each response's token mean. Dr. GRPO (Liu et al. 2025):
# token sums over a constant. GPG (Chu et al. 2025) and REINFORCE++ (Hu 2025): mean over all tokens.
AGGREGATION = {"grpo": "seq-mean-token-mean", "drgrpo": "seq-mean-token-sum-norm", "gpg": "token-mean",
               "reinforce_pp": "token-mean"}
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


def aggregation_weights(mode: str, lengths: np.ndarray, group_size: np.ndarray, budget: int) -> np.ndarray:
    """Per-response weights ``w_i`` such that prompt ``p``'s gradient contribution is ``sum_{i in p} a_i w_i s_i``
    and the batch gradient of loss aggregation ``mode`` is the mean of the contributions over prompts.

    ``lengths``: response lengths in tokens; ``group_size``: the size of each response's group;
    ``budget``: the constant of ``seq-mean-token-sum-norm`` (``max_new_tokens``). For ``token-mean`` the
    batch's token count enters as the batch mean length, held fixed when ``B`` changes.

    Examples
    --------
    >>> aggregation_weights("seq-mean-token-mean", np.array([2.0, 4.0]), np.array([2.0, 2.0]), 10)
    array([0.25 , 0.125])
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    if mode == "seq-mean-token-sum-norm":
        return 1.0 / (group_size * budget)
    if mode == "seq-mean-token-mean":
        return 1.0 / (group_size * np.maximum(lengths, 1.0))
    if mode == "token-mean":
        return 1.0 / (group_size * max(float(lengths.mean()), 1.0))
    raise ValueError(f"unknown loss aggregation {mode!r}")


# ----------------------------------------------------------------------------- paired value / gradient MSE
@dataclass
class PairedResult:
    """``cells``: one row per (seed, step, estimator); ``steps``: one row per (seed, step) with the
    quantities shared by all estimators (truth norm, score norms by reward, ...)."""

    cells: list
    steps: list


def paired_run(
    cfg: Config,
    estimators: dict[str, tuple[str, dict]],
    measure_steps,
    mc_samples: int,
    gradients: bool = False,
    log=print,
    progress: bool = True,
    trainer: Trainer | None = None,
) -> PairedResult:
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
        Also measure policy gradients (Table 2).
    trainer : Trainer, optional
        A fresh ``Trainer(cfg)`` to drive (built here if None).

    Returns
    -------
    PairedResult
        ``cells`` rows: ``seed, step, estimator, value_mse, value_mse_raw, value_noise`` and, with
        ``gradients``, ``grad_mse`` (noise-corrected, at the measured batch size), ``grad_cos`` (cosine to
        the Monte-Carlo truth), ``grad_dot`` (``<g, g_true>``), ``grad_norm2`` (``||g||^2``) and the per-prompt
        moments ``pp_cc, pp_ct, pp_tt, x_cc, x_ct, x_tt`` (see the module docstring and :func:`mse_at`).
        ``steps`` rows: ``seed, step, true_value, n_prompts`` and, with ``gradients``, ``true_norm2``,
        ``grad_noise``, ``score2_correct``/``score2_wrong`` (mean ``||s_i||^2 / L^2`` of correct/wrong
        responses), ``len_correct``/``len_wrong`` and ``n_correct``/``n_wrong``.
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
    names = {label: name for label, (name, _) in estimators.items()}
    mc_gen = torch.Generator(trainer.device).manual_seed(10_000 + cfg.seed)
    param_filter = last_block_filter(trainer.model) if gradients else None
    wanted, result = set(steps), PairedResult([], [])

    def observe(tr: Trainer, rollout: Rollout, step: int) -> None:
        if step in wanted:
            _measure(tr, rollout, step, bank, names, mc_gen, mc_samples, param_filter, result)
        for est in bank.values():
            est.update(rollout.keys, rollout.rewards, step)

    from tqdm.auto import tqdm

    for _ in tqdm(range(cfg.steps), disable=not progress, desc=f"paired/{cfg.estimator}/seed{cfg.seed}"):
        trainer.step(observe=observe)
    for row in result.cells + result.steps:
        row["seed"] = cfg.seed
    return result


def _measure(tr, rollout, step, bank, names, mc_gen, m, param_filter, result: PairedResult) -> None:
    """One measured step: Monte-Carlo truth from ``m`` extra responses per batch prompt, then every
    estimator on the batch (``compute`` only: ``update`` follows in ``observe``)."""
    uniq, inverse = np.unique(rollout.keys, return_inverse=True)
    extra = tr.sample(uniq, m, generator=mc_gen)
    z = extra.rewards.reshape(len(uniq), m)
    truth = z.mean(1)
    noise = z.var(1, ddof=1) / m
    outputs = {}
    for label, est in bank.items():
        values = truth[inverse] if names[label] == "oracle" else None
        res = est.compute(rollout.keys, rollout.rewards, step, values=values)
        outputs[label] = (np.asarray(_to_numpy(res.baselines), dtype=np.float64).reshape(-1),
                          np.asarray(_to_numpy(res.advantages), dtype=np.float64).reshape(-1))
    step_row = {"step": step, "true_value": float(truth.mean()), "n_prompts": len(uniq)}
    cells = []
    for label, (b, _) in outputs.items():
        raw = float(np.mean((b - truth[inverse]) ** 2))
        # The Oracle's baseline is this Monte-Carlo truth itself: its value error is 0 by definition, not measured.
        corrected = np.nan if names[label] == "oracle" else raw - float(noise[inverse].mean())
        cells.append({"step": step, "estimator": label, "value_mse": corrected,
                      "value_mse_raw": raw, "value_noise": float(noise[inverse].mean())})
    if param_filter is not None:
        _measure_gradients(tr, rollout, inverse, extra, z, outputs, names, param_filter, cells, step_row)
    result.cells.extend(cells)
    result.steps.append(step_row)


def _measure_gradients(tr, rollout, inverse, extra, z, outputs, names, param_filter, cells, step_row) -> None:
    budget = tr.cfg.max_new_tokens
    scores = response_scores(tr, rollout, param_filter)  # (n, p) float64
    lengths = rollout.mask.sum(1).cpu().numpy().astype(np.float64)
    n_prompts = z.shape[0]
    group = np.bincount(inverse, minlength=n_prompts).astype(np.float64)[inverse]
    t_a, t_b = prompt_truths(tr, extra, z, param_filter)  # (P, p) each, sum-norm scale
    t_hat = (t_a + t_b) / 2
    noise_p = ((t_a - t_b) ** 2).sum(1) / 4  # per-prompt noise of t_hat
    g_true = t_hat.mean(0)
    g_noise = float(noise_p.sum()) / n_prompts**2
    pairs = n_prompts * (n_prompts - 1)  # ordered pairs p != q (none for a batch of one prompt)
    tot_t = t_hat.sum(0)
    t_sq = (t_hat**2).sum(1)
    for row, (label, (_, adv)) in zip(cells, outputs.items()):
        w = adv * aggregation_weights(AGGREGATION.get(names[label], TRUTH_MODE), lengths, group, budget)
        contrib = np.zeros_like(t_hat)
        np.add.at(contrib, inverse, w[:, None] * scores)  # c_p
        g = contrib.mean(0)
        c_sq, ct = (contrib**2).sum(1), (contrib * t_hat).sum(1)
        tot_c = contrib.sum(0)
        norm = float(np.linalg.norm(g) * np.linalg.norm(g_true))
        row.update(
            grad_mse=float(((g - g_true) ** 2).sum()) - g_noise,
            grad_cos=float(g @ g_true) / norm if norm > 0 else float("nan"),
            grad_dot=float(g @ g_true),
            grad_norm2=float(g @ g),
            # Per-prompt moments of (c c_p - t_p) for any scale c (module docstring): means over prompts of
            # ||c_p||^2, <c_p, t_p>, ||t_p||^2 (noise-corrected), and the same over pairs p != q.
            pp_cc=float(c_sq.mean()),
            pp_ct=float(ct.mean()),
            pp_tt=float((t_sq - noise_p).mean()),
            x_cc=float(tot_c @ tot_c - c_sq.sum()) / pairs if pairs else float("nan"),
            x_ct=float(tot_c @ tot_t - ct.sum()) / pairs if pairs else float("nan"),
            x_tt=float(tot_t @ tot_t - t_sq.sum()) / pairs if pairs else float("nan"),
        )
    s2 = (scores**2).sum(1) * budget**-2.0
    correct = rollout.rewards > 0.5
    step_row.update(
        true_norm2=float(g_true @ g_true) - g_noise,
        grad_noise=g_noise,
        score2_correct=float(s2[correct].mean()) if correct.any() else float("nan"),
        score2_wrong=float(s2[~correct].mean()) if (~correct).any() else float("nan"),
        len_correct=float(lengths[correct].mean()) if correct.any() else float("nan"),
        len_wrong=float(lengths[~correct].mean()) if (~correct).any() else float("nan"),
        n_correct=int(correct.sum()),
        n_wrong=int((~correct).sum()),
    )


def mse_at(m: pd.DataFrame | pd.Series, batch: int, scale=1.0):
    """Gradient MSE at ``batch`` prompts per batch from per-prompt moments ``m`` (columns ``pp_cc, pp_ct,
    pp_tt, x_cc, x_ct, x_tt``), for a rescaling ``scale`` of the estimator, or the best one (``scale=None``).

    Returns ``(mse, scale)``.

    Examples
    --------
    >>> m = pd.Series({"pp_cc": 2.0, "pp_ct": 1.0, "pp_tt": 1.0, "x_cc": 0.5, "x_ct": 0.5, "x_tt": 0.5})
    >>> float(mse_at(m, 1)[0])                      # B = 1: E||c_p - t_p||^2 = 2 - 2 + 1
    1.0
    >>> [float(v) for v in mse_at(m, 1, None)]      # best s = <c, t> / ||c||^2 = 0.5
    [0.5, 0.5]
    """
    quad = m["x_cc"] + (m["pp_cc"] - m["x_cc"]) / batch
    lin = m["x_ct"] + (m["pp_ct"] - m["x_ct"]) / batch
    const = m["x_tt"] + (m["pp_tt"] - m["x_tt"]) / batch
    if scale is None:  # no best scale unless the quadratic term is positive (e.g. every advantage 0): NaN
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(quad > 0, np.divide(lin, quad), np.nan)
    return quad * scale**2 - 2 * lin * scale + const, scale


def response_scores(tr: Trainer, rollout: Rollout, param_filter) -> np.ndarray:
    """Per-response score vectors ``grad_theta sum_t log pi(y_it)`` on the selected parameters, ``(n, p)``.

    One forward/backward per response (the tiny model makes that cheap; per-sample gradients
    of a batched pass would need the model to be functional). Model gradients are left cleared.
    """
    params = [p for name, p in tr.model.named_parameters() if param_filter(name)]
    out = np.zeros((len(rollout.keys), sum(p.numel() for p in params)))
    for i in range(len(rollout.keys)):
        rb = rollout.select(torch.tensor([i]))
        logp = tr._logprobs(tr.model, rb)
        grads = torch.autograd.grad((logp * rb.mask).sum(), params, allow_unused=True)
        out[i] = torch.cat([(torch.zeros_like(p) if g is None else g).double().reshape(-1).cpu()
                            for g, p in zip(grads, params)]).numpy()
    return out


def prompt_truths(tr: Trainer, extra: Rollout, z: np.ndarray, param_filter) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo policy gradient of each prompt from its extra responses, once per half: ``(t_A, t_B)``,
    each ``(P, p)``, in the ``seq-mean-token-sum-norm`` scale, with leave-one-out baselines inside a half
    (independent of each response's own reward, so both halves are unbiased)."""
    n_prompts, m = z.shape
    half = np.arange(m) < m // 2
    out = []
    for part in (half, ~half):
        zp = z[:, part]
        loo = (zp.sum(1, keepdims=True) - zp) / (zp.shape[1] - 1)
        adv = np.zeros_like(z)
        adv[:, part] = (zp - loo) * (m / part.sum())  # rows average over all m samples: rescale to the half
        out.append(adv)
    rows_a, rows_b = [], []
    for p in range(n_prompts):
        idx = torch.arange(p * m, (p + 1) * m)
        grads = tr.policy_gradients(extra.select(idx), np.stack([out[0][p], out[1][p]]), param_filter, TRUTH_MODE)
        rows_a.append(grads[0].double().numpy())
        rows_b.append(grads[1].double().numpy())
    return np.stack(rows_a), np.stack(rows_b)


def summarise(cells, column: str, reference=("grpo", "reinforce_pp")) -> pd.DataFrame:
    """Mean of ``column`` per estimator, its standard error across seeds (each seed's cells averaged
    first: cells of one seed are correlated), and the reduction vs each ``reference`` estimator present.

    The reduction is ``1 - mean(est) / mean(ref)``; both means cover the same cells (paired).
    """
    from .verdict import per_seed

    df = pd.DataFrame(cells)
    wide = per_seed(df, column)
    means = wide.mean()
    out = pd.DataFrame({
        "estimator": wide.columns,
        column: means.to_numpy(),
        "se_seeds": (wide.std(ddof=1) / np.sqrt(len(wide))).to_numpy() if len(wide) > 1 else np.nan,
    })
    for ref in reference:
        if ref in wide.columns:
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"reduction_vs_{ref}"] = ((means[ref] - means) / means[ref]).to_numpy()
    return out.sort_values(column).reset_index(drop=True)


# ----------------------------------------------------------------------------- parallel runs
def default_workers() -> int:
    """Worker processes for independent runs: one per core, at most 2 by default (each uses 1 thread)."""
    return max(1, min(2, os.cpu_count() or 1))


def run_parallel(fn, jobs: list, workers: int | None = None, progress: bool = False) -> list:
    """``[fn(*job) for job in jobs]``, over ``workers`` spawned processes (1 torch thread each).

    Every job is deterministic on its own (its config and seed fix it), so the results do not
    depend on the number of workers; the order of ``jobs`` is kept.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    import multiprocessing as mp

    from tqdm.auto import tqdm

    threads = torch.get_num_threads()
    with mp.get_context("spawn").Pool(workers, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        pending = [pool.apply_async(fn, job) for job in jobs]
        return [p.get() for p in tqdm(pending, disable=not progress, desc="runs")]


def paired_seed(cfg: Config, estimators, measure_steps, mc_samples, gradients) -> PairedResult:
    """One seed's :func:`paired_run`, silent (for :func:`run_parallel`)."""
    return paired_run(cfg, estimators, measure_steps, mc_samples, gradients=gradients, log=_quiet, progress=False)


def paired_seeds(cfg: Config, estimators, measure_steps, mc_samples, seeds, gradients=False, workers=None,
                 progress=True) -> PairedResult:
    """:func:`paired_run` for every seed in ``seeds`` (in parallel), merged."""
    from .models import warm_start

    if cfg.model is None:
        warm_start(cfg, log=print if progress else _quiet)  # build the shared warm start once, before the workers
    jobs = [(dataclasses.replace(cfg, seed=int(s)), estimators, list(measure_steps), mc_samples, gradients)
            for s in seeds]
    parts = run_parallel(paired_seed, jobs, workers, progress)
    return PairedResult([r for p in parts for r in p.cells], [r for p in parts for r in p.steps])


# ----------------------------------------------------------------------------- accuracy runs
EVAL_FIELDS = ("mean_at_k", "pass_at_k", "greedy")


def start_accuracy(cfg: Config) -> dict:
    """Held-out accuracy of the warm start under ``cfg`` (its seed fixes the evaluation samples)."""
    return Trainer(cfg, log=_quiet).evaluate("test")


def accuracy_run(cfg: Config, label: str, start: dict) -> list[dict]:
    """One training run's held-out accuracy at step 0 (``start``: the warm start's, same evaluation samples)
    and every ``eval_every`` steps and the last step. Rows ``estimator, seed, step, mean_at_k, pass_at_k,
    greedy, train_reward`` (mean batch reward since the previous evaluation)."""
    trainer = Trainer(cfg, log=_quiet)
    rows = [{"estimator": label, "seed": cfg.seed, "step": 0, **{f: start[f] for f in EVAL_FIELDS},
             "train_reward": np.nan}]
    history = trainer.train(progress=False)
    last = 0
    for m in history:
        final = m["step"] == cfg.steps
        if m["test_mean_at_k"] is None and not final:
            continue
        ev = ({"mean_at_k": m["test_mean_at_k"], "pass_at_k": m["test_pass_at_k"], "greedy": m["test_greedy"]}
              if m["test_mean_at_k"] is not None else trainer.evaluate("test"))
        window = [h["reward_mean"] for h in history[last: m["step"]]]
        rows.append({"estimator": label, "seed": cfg.seed, "step": m["step"], **{f: ev[f] for f in EVAL_FIELDS},
                     "train_reward": float(np.mean(window))})
        last = m["step"]
    return rows


def accuracy_runs(base: Config, methods: dict, seeds, workers=None, progress=True) -> pd.DataFrame:
    """Held-out accuracy curves of every (method, seed) run, run in parallel.

    ``methods``: ``{label: (registry name, kwargs)}`` or ``{label: (registry name, kwargs, config
    overrides)}`` (e.g. ``{"reward_shuffle": True}`` for the null control). Every run of a seed starts
    from the same warm start and is evaluated on the same samples (paired across methods).
    """
    from .models import warm_start

    if not (base.eval_k > 0 and base.do_sample):  # the curves are mean@k at the training temperature
        raise ValueError(f"accuracy runs report held-out mean@k at the training temperature: they need eval_k > 0 "
                         f"and do_sample=True, got eval_k={base.eval_k}, do_sample={base.do_sample} "
                         "(use --set eval_k=4 --set do_sample=true)")
    if base.model is None:
        warm_start(base, log=print if progress else _quiet)  # build the shared warm start once
    seeds = [int(s) for s in seeds]
    starts = dict(zip(seeds, run_parallel(start_accuracy, [(dataclasses.replace(base, seed=s),) for s in seeds],
                                          workers)))
    jobs = []
    for label, spec in methods.items():
        name, kwargs, extra = (*spec, {})[:3]
        for seed in seeds:
            cfg = dataclasses.replace(base, estimator=name, estimator_kwargs=dict(kwargs), seed=seed, **extra)
            jobs.append((cfg, label, starts[seed]))
    parts = run_parallel(accuracy_run, jobs, workers, progress)
    return pd.DataFrame([r for p in parts for r in p])


def _quiet(*args, **kwargs) -> None:
    pass
