"""Table 1: value MSE of every registry estimator on one paired policy path.

``python -m reproduce.table1 [--preset small|paper] [--device auto] [--seeds 0] [--out results]``

The driver estimator (KAE by default) trains the policy; every estimator in
``kernelvalue.advantage.ESTIMATORS`` (aliases and the oracle left out) is
updated with the same rewards and computes its baselines on the same batches.
At every ``measure_every``-th step the truth is the Monte-Carlo mean reward of
``mc_samples`` extra responses per batch prompt from the current policy, and
the MSE is corrected for the truth's own noise (see :mod:`reproduce.measure`).
Writes ``results/table1.csv`` (summary), ``results/table1.data.csv`` (per step)
and ``results/table1.md``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from . import paper
from .measure import paired_run, registry_estimators, summarise
from .report import Provenance, device_label, entry_config, entry_parser, model_label, write_result

NAME = "table1"


def measure_steps(cfg, opts) -> list[int]:
    return list(range(opts["measure_every"], cfg.steps + 1, opts["measure_every"]))


def compare(table: pd.DataFrame, rows, column: str, ours: str, ref: str, claim) -> str:
    """A plain sentence: our paired reduction of ``column`` for ``ours`` vs ``ref`` against the paper's ``claim``
    (a ``(low, high)`` range, a lower bound, or None for no paper number), with the paired difference's
    standard error over (seed, step) cells."""
    means = table.set_index("estimator")[column]
    if ours not in means.index or ref not in means.index:
        return f"{ours} or {ref} missing from the registry: no comparison."
    if not means[ref] > 0:
        return f"{ref}'s {column} is {means[ref]:.3g} (not > 0): no reduction to compare."
    cells = pd.DataFrame(rows).pivot_table(index=["seed", "step"], columns="estimator", values=column)
    diff = cells[ref] - cells[ours]
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    red = (means[ref] - means[ours]) / means[ref]
    text = (
        f"{ours} vs {ref}: {column} {means[ours]:.4g} vs {means[ref]:.4g}, a {red:.1%} reduction "
        f"(paired difference {diff.mean():.3g} +- {se:.2g} s.e. over {len(diff)} cells"
    )
    if claim is None:
        return text + ")."
    lo, hi = claim if isinstance(claim, tuple) else (claim, None)
    paper_txt = f"{lo * 100:g}-{hi * 100:g}%" if hi is not None else f">{lo * 100:g}%"
    if not (len(diff) >= 3 and abs(diff.mean()) > 2 * se):
        return text + f"; paper: {paper_txt} lower) -> undecided: fewer than 3 cells or |difference| < 2 s.e."
    verdict = "holds" if red >= lo else ("direction holds, size smaller" if red > 0 else "does NOT hold")
    return text + f"; paper: {paper_txt} lower) -> {verdict} at this scale."


def by_block_position(rows, column: str, cfg, estimators=("kae", "grpo", "reinforce_pp")) -> str:
    """Markdown table of ``column`` by position inside the J-step minibatch block (history grows with it)."""
    df = pd.DataFrame(rows)
    df = df[df["estimator"].isin(estimators)].assign(position=lambda d: (d["step"] - 1) % cfg.J + 1)
    wide = df.pivot_table(index="position", columns="estimator", values=column).reset_index()
    return wide.to_markdown(index=False, floatfmt=".4g")


def full_block_sentence(rows, column: str, cfg, ours="kae", ref="grpo", claim=None) -> str:
    """``ours`` vs ``ref`` at the last step of each J-step block, where the history is longest."""
    df = pd.DataFrame(rows)
    last = df[(df["step"] - 1) % cfg.J + 1 == cfg.J]
    if last.empty or not {ours, ref} <= set(last["estimator"]):
        return f"No measured step falls on the last step of a J = {cfg.J} block."
    sub = [r for r in rows if (r["step"] - 1) % cfg.J + 1 == cfg.J]
    table = summarise(sub, column, reference=())
    return f"At the last step of each block ((J-1)*G = {(cfg.J - 1) * cfg.G} past rewards per prompt): " + compare(
        table, sub, column, ours, ref, claim
    )


def history_note(cfg, steps) -> str:
    epoch = -(-cfg.n_train_prompts // cfg.prompts_per_step) * cfg.J
    if steps[-1] <= epoch:
        return (
            f"An epoch of the schedule is {epoch} steps and the run has {cfg.steps}, so no prompt returns after its "
            f"block: every history holds at most (J-1)*G = {(cfg.J - 1) * cfg.G} past rewards from the current "
            "J-step block, and KAE's window (h x step, relative to the step) covers fewer than J steps before "
            "step J/h. With the paper preset (7473 GSM8K prompts, 32 per step, J = 8, 300 steps) prompts do not return either."
        )
    return f"An epoch of the schedule is {epoch} steps; prompts return across epochs within the run."


def main(argv=None) -> pd.DataFrame:
    args = entry_parser(NAME, "Table 1: value MSE of every estimator on one paired policy path.").parse_args(argv)
    cfg, opts = entry_config(NAME, args)
    prov = Provenance(NAME, args.preset, model_label(cfg), opts["seeds"], device_label(cfg))
    estimators = registry_estimators()
    steps = measure_steps(cfg, opts)
    rows = []
    for seed in opts["seeds"]:
        run_cfg = dataclasses.replace(cfg, seed=seed)
        rows += paired_run(run_cfg, estimators, steps, opts["mc_samples"], progress=not args.quiet)
    table = summarise(rows, "value_mse")
    prov.extra = {
        "driver (trains the policy)": cfg.estimator,
        "G, prompts per step, J, steps": f"{cfg.G}, {cfg.prompts_per_step}, {cfg.J}, {cfg.steps}",
        "measured steps": f"{steps[0]}, {steps[1] if len(steps) > 1 else ''}, ... {steps[-1]} ({len(steps)} steps)",
        "truth": f"Monte-Carlo mean of {opts['mc_samples']} extra responses per prompt (noise floor subtracted)",
    }
    findings = [
        compare(table, rows, "value_mse", "kae", "grpo", (0.60, 0.70)),
        compare(table, rows, "value_mse", "kae", "reinforce_pp", 0.90),
        "Against RLOO, the same leave-one-out group term without the history: "
        + compare(table, rows, "value_mse", "kae", "rloo", None),
        full_block_sentence(rows, "value_mse", cfg, claim=(0.60, 0.70)),
        history_note(cfg, steps),
        "By position inside the J-step block (1 = first step of a new minibatch, where KAE has no history "
        "of the batch's prompts and reduces to the leave-one-out group mean):\n\n"
        + by_block_position(rows, "value_mse", cfg)
        + "\n",
        "value_mse is the mean over measured steps and seeds of the per-response squared error of each "
        "estimator's baseline against the Monte-Carlo value, minus the Monte-Carlo noise; std_err is over "
        "(seed, step) cells; negative values mean the error is below the noise floor's resolution.",
    ]
    t1 = paper.TABLE1
    paper_md = (
        f"{t1['setting']}: " + ", ".join(f"{k} {v:.3g}" for k, v in t1["value_mse"].items()) + f". {t1['claim']}"
    )
    write_result(
        table,
        prov,
        out_dir=args.out,
        title="Table 1 - value MSE of each advantage estimator's baseline",
        paper_section=paper_md,
        findings=findings,
        data=pd.DataFrame(rows),
    )
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
