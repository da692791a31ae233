"""Table 1: value MSE of every registry estimator on paired policy paths, overall and by training phase.

``python -m reproduce.table1 [--preset small|paper] [--device auto] [--seeds 0 1 2 3 4] [--out results]``

The driver estimator (KAE by default) trains the policy; every estimator in
``kernelvalue.advantage.ESTIMATORS`` (aliases and the oracle left out), plus KAE
with the bandwidth read as an absolute window of 10 steps, is updated with the
same rewards and computes its baselines on the same batches. At every
``measure_every``-th step the truth is the Monte-Carlo mean reward of
``mc_samples`` extra responses per batch prompt from the current policy, and
the MSE is corrected for the truth's own noise (see :mod:`reproduce.measure`).

The paper reports Table 1 at steps 10, 90 and 170; here the measured steps are
split into thirds of the run (early, mid, late), each averaged per seed, and
every verdict is a paired difference across seeds (:mod:`reproduce.verdict`).
Writes ``results/table1.csv`` (overall), ``results/table1.phases.csv``,
``results/table1.data.csv`` (per seed, step, estimator) and ``results/table1.md``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import paper
from .measure import paired_seeds, registry_estimators, summarise
from .report import Provenance, device_label, entry_config, entry_parser, model_label, write_result
from .verdict import describe_or_why, per_seed, reduction_sentence, relative_reduction

NAME = "table1"
PHASES = ("early", "mid", "late")


def measure_steps(cfg, opts) -> list[int]:
    return list(range(opts["measure_every"], cfg.steps + 1, opts["measure_every"]))


def extra_estimators(cfg) -> dict:
    """KAE under the other bandwidth reading (``paper.md``: "h ~ 10" as an absolute window of steps)."""
    return {"kae_abs10": ("kae", {"window": "absolute", "bandwidth": 10.0})}


def with_phase(cells: pd.DataFrame, steps: int) -> pd.DataFrame:
    """``cells`` with a ``phase`` column: early / mid / late thirds of the run's steps."""
    edges = np.linspace(0, steps, 4)
    idx = np.clip(np.searchsorted(edges, cells["step"].to_numpy(), side="left") - 1, 0, 2)
    return cells.assign(phase=np.asarray(PHASES)[idx])


def phase_table(cells: pd.DataFrame, names=("kae", "kae_abs10", "kae_auto", "grpo", "rloo", "reinforce_pp")) -> pd.DataFrame:
    """Value MSE per phase for ``names`` (mean over seeds of each seed's phase mean) and KAE's reductions."""
    rows = []
    for phase in PHASES:
        part = cells[cells["phase"] == phase]
        wide = per_seed(part, "value_mse")
        row = {"phase": phase, "steps": f"{part['step'].min()}-{part['step'].max()}"}
        row.update({n: wide[n].mean() for n in names if n in wide.columns})
        for ref in ("grpo", "reinforce_pp"):
            if {"kae", ref} <= set(wide.columns):
                row[f"kae_reduction_vs_{ref}"] = float(relative_reduction(wide, "kae", ref).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def phase_findings(cells: pd.DataFrame) -> list[str]:
    out = []
    for phase in PHASES:
        wide = per_seed(cells[cells["phase"] == phase], "value_mse")
        text, _ = reduction_sentence(wide, "kae", "grpo", f"value MSE, {phase} third", paper.TABLE1["reduction_vs_grpo"])
        out.append(text)
    early = per_seed(cells[cells["phase"] == "early"], "value_mse")
    late = per_seed(cells[cells["phase"] == "late"], "value_mse")
    if {"kae", "grpo"} <= set(early.columns) and len(early) > 1:
        growth = relative_reduction(late, "kae", "grpo") - relative_reduction(early, "kae", "grpo")
        out.append(
            "Does KAE's reduction vs GRPO grow from the early to the late third (paper: 70% at step 10, 69% at 90, "
            f"71% at 170)? Late minus early reduction: {describe_or_why(growth, fmt='+.1%')[0]}."
        )
    return out


def schedule_note(cfg, steps) -> str:
    epoch = -(-cfg.n_train_prompts // cfg.prompts_per_step) * cfg.J
    if steps[-1] <= epoch:
        return (
            f"An epoch of the schedule is {epoch} steps and the run has {cfg.steps}: no prompt returns after its "
            f"J-step block, so a history holds at most (J-1)*G = {(cfg.J - 1) * cfg.G} past rewards."
        )
    return (
        f"An epoch of the schedule is {epoch} steps and the run has {cfg.steps}: every prompt returns "
        f"{cfg.steps // epoch} time(s) after its first J-step block; KAE's relative window (0.2 x step) reaches back "
        f"{0.2 * cfg.steps:.0f} steps at the last step."
    )


def main(argv=None) -> pd.DataFrame:
    args = entry_parser(NAME, "Table 1: value MSE of every estimator on paired policy paths.").parse_args(argv)
    cfg, opts = entry_config(NAME, args)
    prov = Provenance(NAME, args.preset, model_label(cfg), opts["seeds"], device_label(cfg))
    estimators = {**registry_estimators(), **extra_estimators(cfg)}
    steps = measure_steps(cfg, opts)
    res = paired_seeds(cfg, estimators, steps, opts["mc_samples"], opts["seeds"], workers=args.workers,
                       progress=not args.quiet)
    cells = with_phase(pd.DataFrame(res.cells), cfg.steps)
    table = summarise(cells, "value_mse")
    phases = phase_table(cells)
    wide = per_seed(cells, "value_mse")
    prov.extra = {
        "driver (trains the policy)": f"{cfg.estimator} {cfg.estimator_kwargs or ''}".strip(),
        "G, prompts per step, J, steps, lr": f"{cfg.G}, {cfg.prompts_per_step}, {cfg.J}, {cfg.steps}, {cfg.lr:g}",
        "measured steps": f"every {opts['measure_every']} steps ({len(steps)} per seed)",
        "truth": f"Monte-Carlo mean of {opts['mc_samples']} extra responses per prompt (noise floor subtracted)",
        "KAE bandwidth": "kae: h = 0.2 relative to the step (window 0.2 i); kae_abs10: h = 10 steps absolute",
        "uncertainty": f"across {len(opts['seeds'])} seeds (each seed's steps averaged first)",
    }
    findings = [
        reduction_sentence(wide, "kae", "grpo", "value MSE, whole run", paper.TABLE1["reduction_vs_grpo"])[0],
        reduction_sentence(wide, "kae", "reinforce_pp", "value MSE, whole run", paper.TABLE1["reduction_vs_reinforcepp"])[0],
        "Against RLOO (the same leave-one-out group term without the history): "
        + reduction_sentence(wide, "kae", "rloo", "value MSE")[0],
        "The two bandwidth readings: " + reduction_sentence(wide, "kae_abs10", "kae", "value MSE")[0],
        *phase_findings(cells),
        "By phase (mean over seeds):\n\n" + phases.to_markdown(index=False, floatfmt=".4g") + "\n",
        schedule_note(cfg, steps),
        "value_mse: per-response squared error of each estimator's baseline against the Monte-Carlo value, minus "
        "the Monte-Carlo noise, averaged over a seed's measured steps; se_seeds is the standard error across seeds. "
        "Negative values are below the noise floor's resolution.",
    ]
    t1 = paper.TABLE1
    paper_md = "\n".join([
        "| setting | GRPO | KAE | REINFORCE++ |", "|---|---|---|---|",
        *[f"| {row} | {v['GRPO']:.3g} | {v['KAE']:.3g} | {v.get('REINFORCE++', float('nan')):.3g} |"
          for row, v in t1["rows"].items()],
        "", t1["claim"],
    ])
    write_result(
        table,
        prov,
        out_dir=args.out,
        title="Table 1 - value MSE of each advantage estimator's baseline",
        paper_section=paper_md,
        findings=findings,
        data=cells,
    )
    phases.to_csv(f"{args.out}/{NAME}.phases.csv", index=False)
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
