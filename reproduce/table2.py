"""Table 2: policy-gradient MSE of every estimator, each as its method defines it, against a Monte-Carlo gradient.

``python -m reproduce.table2 [--preset small|paper] [--device auto] [--seeds 0 1 2 3 4] [--out results]``

The paired path of Table 1 (KAE drives; every estimator computes on the same
batches). At each measured step every estimator's gradient on the last
transformer block is formed from its own advantages and its own loss
aggregation (:data:`reproduce.measure.AGGREGATION`: GRPO's std-normalised
advantages with ``seq-mean-token-mean``, Dr. GRPO's mean-only advantages with
``seq-mean-token-sum-norm``, GPG's rescaled advantages and REINFORCE++'s
whitened ones with ``token-mean``; the rest, the Oracle and KAE included, with
the unbiased ``seq-mean-token-sum-norm``) and compared with the unbiased
Monte-Carlo policy gradient (see :mod:`reproduce.measure`). Reported per
estimator, averaged per seed and then across seeds:

- ``grad_mse``: the MSE at the measured batch (``B`` = prompts per step), noise-corrected;
- ``mse_B128``, ``mse_B512``: the MSE at larger batches from the per-prompt
  decomposition ``bias^2 + (m2 - bias^2)/B`` (Theorem 2's ``O(MSE(V)/B)`` form);
- ``cos``: cosine to the truth; ``mse_rescaled``: the MSE after the estimator's
  best scalar rescaling (what a tuned learning rate could reach), so a
  normalisation that only changes the scale is not penalised;
- the crossover ``B`` above which KAE's MSE is below GRPO's.

Verdicts are paired differences across seeds (:mod:`reproduce.verdict`). Writes
``results/table2.csv``, ``results/table2.data.csv`` (per seed, step, estimator),
``results/table2.steps.csv`` (per seed, step: truth norm, score norms by reward)
and ``results/table2.md``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import paper
from .measure import AGGREGATION, GRADIENT_PARAMS, TRUTH_MODE, paired_seeds
from .report import Provenance, device_label, entry_config, entry_parser, model_label, write_result
from .table1 import extra_estimators, measure_steps, schedule_note
from .verdict import describe_or_why, per_seed, relative_reduction, size_vs_claim

NAME = "table2"
BATCHES = (128, 512)


def per_seed_table(cells: pd.DataFrame, steps: pd.DataFrame, n_prompts: int) -> pd.DataFrame:
    """One row per (seed, estimator): every Table 2 quantity, each averaged over that seed's measured steps."""
    g = cells.groupby(["seed", "estimator"], sort=False)
    out = g[["grad_mse", "grad_cos", "grad_dot", "grad_norm2", "pp_m2", "pp_bias2", "value_mse"]].mean().reset_index()
    truth = steps.groupby("seed")["true_norm2"].mean()
    t = out["seed"].map(truth)
    out["mse_rescaled"] = t - out["grad_dot"] ** 2 / out["grad_norm2"].where(out["grad_norm2"] > 0)
    out["scale"] = out["grad_dot"] / out["grad_norm2"].where(out["grad_norm2"] > 0)
    out["pp_var"] = out["pp_m2"] - out["pp_bias2"]
    for b in (n_prompts, *BATCHES):
        out[f"mse_B{b}"] = out["pp_bias2"] + out["pp_var"] / b
    return out


def crossover(row_kae, row_ref) -> float:
    """``B`` at which KAE's and the reference's decomposed MSEs cross (inf if they never do for B >= 1)."""
    dv = row_kae["pp_var"] - row_ref["pp_var"]  # KAE's extra variance per prompt
    db = row_ref["pp_bias2"] - row_kae["pp_bias2"]  # the reference's extra squared bias
    if db > 0 and dv > 0:
        return float(dv / db)
    return 1.0 if dv <= 0 and db >= 0 else float("inf")


def bootstrap_crossover(seeds_table: pd.DataFrame, ours: str, ref: str, draws: int = 2000) -> tuple[float, float, float]:
    """Crossover ``B`` from seed means, with a 95% percentile interval from resampling seeds."""
    wide = seeds_table.pivot_table(index="seed", columns="estimator", values=["pp_var", "pp_bias2"])
    point = crossover(wide.xs(ours, axis=1, level=1).mean(), wide.xs(ref, axis=1, level=1).mean())
    rng = np.random.default_rng(0)
    seeds = wide.index.to_numpy()
    boots = []
    for _ in range(draws):
        pick = wide.loc[rng.choice(seeds, size=len(seeds))]
        boots.append(crossover(pick.xs(ours, axis=1, level=1).mean(), pick.xs(ref, axis=1, level=1).mean()))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return point, float(lo), float(hi)


def summary(seeds_table: pd.DataFrame, n_prompts: int) -> pd.DataFrame:
    cols = ["grad_mse", f"mse_B{BATCHES[0]}", f"mse_B{BATCHES[1]}", "grad_cos", "mse_rescaled", "scale",
            "pp_bias2", "pp_var", "value_mse"]
    g = seeds_table.groupby("estimator", sort=False)
    table = g[cols].mean()
    table.insert(1, "se_seeds", g["grad_mse"].std(ddof=1) / np.sqrt(g.size()))
    if "oracle" in table.index:
        table.insert(2, "vs_oracle", table["grad_mse"] / table.loc["oracle", "grad_mse"])
    for ref in ("grpo", "reinforce_pp"):
        if ref in table.index:
            table[f"reduction_vs_{ref}"] = 1 - table["grad_mse"] / table.loc[ref, "grad_mse"]
    table.insert(0, "aggregation", [AGGREGATION.get(e, TRUTH_MODE) for e in table.index])
    table = table.rename(columns={"grad_mse": f"grad_mse_B{n_prompts}"})
    return table.sort_values(f"grad_mse_B{n_prompts}").reset_index()


def findings_for(seeds_table: pd.DataFrame, steps: pd.DataFrame, cfg, n_prompts: int) -> list[str]:
    out = []
    red = paper.TABLE2["reduction_vs_grpo"]
    for b in (n_prompts, *BATCHES):
        wide = per_seed(seeds_table, f"mse_B{b}")
        for ref, claim in (("grpo", red), ("reinforce_pp", paper.TABLE2["reduction_vs_reinforcepp"])):
            if {"kae", ref} <= set(wide.columns):
                text, eff = describe_or_why(relative_reduction(wide, "kae", ref), fmt="+.1%")
                lo, hi = claim
                size = f", ours {size_vs_claim(eff, claim)}" if eff is not None else ""
                out.append(f"B = {b}{' (measured)' if b == n_prompts else ' (decomposed)'}: kae vs {ref} "
                           f"gradient-MSE reduction {text}; paper {lo:.1%}-{hi:.1%}{size}.")
    means = seeds_table.groupby("estimator")[["pp_var", "pp_bias2"]].mean()
    if {"kae", "grpo"} <= set(means.index):
        point, lo, hi = bootstrap_crossover(seeds_table, "kae", "grpo")
        out.append(
            f"Crossover: per prompt, GRPO's gradient has squared bias {means.loc['grpo', 'pp_bias2']:.3g} and variance "
            f"{means.loc['grpo', 'pp_var']:.3g}; KAE's {means.loc['kae', 'pp_bias2']:.3g} and "
            f"{means.loc['kae', 'pp_var']:.3g}. KAE's MSE is below GRPO's for B above about {point:.3g} prompts per "
            f"batch (95% seed-bootstrap interval {lo:.3g} to {hi:.3g}). GRPO's bias (its normalisation and its group "
            "mean, which includes the response itself) does not shrink with B; the variance terms do."
        )
    cos = per_seed(seeds_table, "grad_cos")
    if {"kae", "grpo"} <= set(cos.columns):
        out.append(f"Cosine to the true gradient, kae - grpo: {describe_or_why(cos['kae'] - cos['grpo'], fmt='+.3f')[0]}.")
    resc = per_seed(seeds_table, "mse_rescaled")
    if {"kae", "grpo"} <= set(resc.columns):
        text = describe_or_why(relative_reduction(resc, "kae", "grpo"), fmt="+.1%")[0]
        out.append(f"After each estimator's best scalar rescaling, kae vs grpo MSE reduction: {text}.")
    wide = per_seed(seeds_table, "grad_mse")
    if {"kae", "oracle"} <= set(wide.columns):
        ratio = wide["kae"] / wide["oracle"]
        out.append(
            f"kae / oracle gradient MSE at B = {n_prompts}: {ratio.mean():.3f} (excess over 1: "
            f"{describe_or_why(ratio - 1.0, fmt='+.3f')[0]}; Theorem 2: the excess is O(MSE(V)/B))."
        )
    out.append(reinforce_sentence(wide, steps))
    return out


def reinforce_sentence(wide: pd.DataFrame, steps: pd.DataFrame) -> str:
    """Why REINFORCE (baseline 0) can beat the Oracle: the score norm differs by reward, against the theory's A6."""
    s1 = steps.groupby("seed")["score2_correct"].mean()
    s0 = steps.groupby("seed")["score2_wrong"].mean()
    p = steps.assign(p=steps["n_correct"] / (steps["n_correct"] + steps["n_wrong"])).groupby("seed")["p"].mean()
    ratio = s0 / s1
    text = (
        f"Score norms split by reward: mean ||s||^2/L^2 of wrong responses is {s0.mean():.3g} and of correct ones "
        f"{s1.mean():.3g} (ratio {ratio.mean():.2f}; log-ratio {describe_or_why(np.log(ratio), fmt='+.2f')[0]}). "
        "Assumption A6 (reward uncorrelated with the score norm) does not hold here: wrong responses are less likely "
        "under the policy, so their scores are longer. With 0/1 rewards REINFORCE (baseline 0) puts no weight on "
        "wrong responses, whose per-response variance contribution is V^2 ||s||^2 under the Oracle; REINFORCE has "
        "the lower variance whenever (1 - p) ((1 - p) S1 + p S0) > S1, i.e. S0/S1 > (2 - p)/(1 - p)"
    )
    threshold = float(((2 - p) / (1 - p)).mean())
    text += f" = {threshold:.2f} at this run's mean reward p = {p.mean():.2f} (per response, ignoring prompt mixing)."
    if {"reinforce", "oracle"} <= set(wide.columns):
        text += (" Measured: REINFORCE's MSE below the Oracle's by "
                 f"{describe_or_why((wide['oracle'] - wide['reinforce']) / wide['oracle'], fmt='+.1%')[0]}.")
    return text


def main(argv=None) -> pd.DataFrame:
    parser = entry_parser(NAME, "Table 2: policy-gradient MSE against a Monte-Carlo gradient.")
    args = parser.parse_args(argv)
    cfg, opts = entry_config(NAME, args)
    prov = Provenance(NAME, args.preset, model_label(cfg), opts["seeds"], device_label(cfg))
    from .measure import registry_estimators

    estimators = {**registry_estimators(exclude=()), **extra_estimators(cfg)}
    steps = measure_steps(cfg, opts)
    res = paired_seeds(cfg, estimators, steps, opts["mc_samples"], opts["seeds"], gradients=True,
                       workers=args.workers, progress=not args.quiet)
    cells, step_rows = pd.DataFrame(res.cells), pd.DataFrame(res.steps)
    n_prompts = cfg.prompts_per_step
    seeds_table = per_seed_table(cells, step_rows, n_prompts)
    table = summary(seeds_table, n_prompts)
    prov.extra = {
        "driver (trains the policy)": f"{cfg.estimator} {cfg.estimator_kwargs or ''}".strip(),
        "G, prompts per step (B), J, steps, lr": f"{cfg.G}, {n_prompts}, {cfg.J}, {cfg.steps}, {cfg.lr:g}",
        "measured steps": f"every {opts['measure_every']} steps ({len(steps)} per seed)",
        "parameters": GRADIENT_PARAMS,
        "truth": f"unbiased Monte-Carlo policy gradient ({TRUTH_MODE} scale) from {opts['mc_samples']} extra "
                 "responses per prompt, noise-corrected",
        "KAE bandwidth": "kae: h = 0.2 relative to the step (window 0.2 i); kae_abs10: h = 10 steps absolute",
        "mean squared norm of the true gradient": f"{step_rows['true_norm2'].mean():.4g}",
        "uncertainty": f"across {len(opts['seeds'])} seeds (each seed's steps averaged first)",
    }
    findings = findings_for(seeds_table, step_rows, cfg, n_prompts) + [schedule_note(cfg, steps)]
    findings.append(
        f"grad_mse_B{n_prompts} is ||g_est - g_MC||^2 minus the Monte-Carlo noise; mse_B128/B512 extrapolate the "
        "per-prompt decomposition (prompts i.i.d.; estimators pooling across prompts keep the measured batch's "
        "statistics). se_seeds is the standard error across seeds. Every estimator's gradient uses the same "
        "sampled responses; only advantages and aggregation differ."
    )
    write_result(
        table,
        prov,
        out_dir=args.out,
        title="Table 2 - policy-gradient MSE, each method's advantages and loss aggregation",
        paper_section=paper.TABLE2["claim"],
        findings=findings,
        data=cells,
    )
    step_rows.to_csv(f"{args.out}/{NAME}.steps.csv", index=False)
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
