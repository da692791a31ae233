"""Figure 4: single stream (G = 1), test accuracy over training of KAE vs REINFORCE and REINFORCE++.

``python -m reproduce.figure4 [--preset small|paper] [--device auto] [--seeds 0 1 2] [--out results]``

With one response per prompt there is no group: REINFORCE uses no baseline,
REINFORCE++ the batch's global mean reward, KAE the prompt's own kernel-weighted
reward history (the prompt schedule makes prompts recur J steps in a row). One
training run per (estimator, seed); greedy test accuracy every ``eval_every``
steps. Writes ``results/figure4.csv`` (final accuracies), ``results/figure4.data.csv``
(curves), ``results/figure4.md`` and ``figures/figure4.png`` (mean over seeds,
band = +-1 standard deviation across seeds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paper
from .report import Provenance, device_label, entry_config, entry_parser, model_label, save_figure, write_result

NAME = "figure4"
ESTIMATORS = {"KAE": ("kae", {}), "REINFORCE": ("reinforce", {}), "REINFORCE++": ("reinforce_pp", {})}


def plot_curves(data: pd.DataFrame, path: Path, metric: str, title: str) -> None:
    """Mean held-out ``metric`` over seeds per estimator, with a +-1 SD band across seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, part in data.groupby("estimator", sort=False):
        stats = part.groupby("step")[metric].agg(["mean", "std"]).fillna(0.0)
        ax.plot(stats.index, stats["mean"], marker="o", label=name)
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2)
    ax.set_xlabel("RL step")
    ax.set_ylabel({"mean_at_k": "held-out mean@k (training temperature)", "greedy": "held-out greedy accuracy",
                   "pass_at_k": "held-out pass@k"}.get(metric, metric))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


METRIC = "mean_at_k"  # held-out mean@k at the training temperature (greedy and pass@k are reported too)


def final_table(data: pd.DataFrame) -> pd.DataFrame:
    """Start and final held-out accuracy per estimator (mean and SD over seeds) and the change over training."""
    last = data[data["step"] == data["step"].max()].groupby("estimator", sort=False)
    start = data[data["step"] == 0].groupby("estimator", sort=False)
    out = pd.DataFrame({"start": start[METRIC].mean(), "final": last[METRIC].mean(), "final_sd": last[METRIC].std(ddof=1),
                        "final_greedy": last["greedy"].mean(), "final_pass_at_k": last["pass_at_k"].mean(),
                        "seeds": last.size()})
    out["change"] = out["final"] - out["start"]
    return out.reset_index()


def gain_sentence(data: pd.DataFrame, ours: str, ref: str, paper_gain: str) -> str:
    """``ours`` minus ``ref`` in final held-out accuracy, paired by seed, with its verdict."""
    from .verdict import describe_or_why

    final = data[data["step"] == data["step"].max()].pivot_table(index="seed", columns="estimator", values=METRIC)
    text = describe_or_why((final[ours] - final[ref]).to_numpy(), unit="points", scale=100, fmt="+.2f")[0]
    return f"Final held-out {METRIC}, {ours} minus {ref}: {text} (paper: {paper_gain})."


def change_sentence(data: pd.DataFrame, name: str) -> str:
    """Did ``name`` raise held-out accuracy over training? Final minus start, paired by seed."""
    from .verdict import describe_or_why

    wide = data[data["estimator"] == name].pivot_table(index="seed", columns="step", values=METRIC)
    text, eff = describe_or_why((wide[wide.columns.max()] - wide[0]).to_numpy(), unit="points", scale=100, fmt="+.2f")
    what = {"holds": "improves", "does not hold": "degrades", "undecided": "has no resolved change", None: "?"}[
        eff.verdict if eff is not None else None]
    return f"{name} {what} over training: final minus start {text} (verdict on 'improves')."


def run_curves(name: str, description: str, estimators: dict, argv=None):
    """Shared body of Figures 4 and S.1: train, tabulate, plot; returns ``(args, cfg, table, data, prov, fig)``."""
    from .measure import accuracy_runs

    args = entry_parser(name, description).parse_args(argv)
    cfg, opts = entry_config(name, args)
    prov = Provenance(name, args.preset, model_label(cfg), opts["seeds"], device_label(cfg))
    data = accuracy_runs(cfg, estimators, opts["seeds"], workers=args.workers, progress=not args.quiet)
    table = final_table(data)
    fig_path = Path(args.figures) / f"{name}.png"
    plot_curves(data, fig_path, METRIC, f"{description} ({args.preset} preset, G={cfg.G}, J={cfg.J}, "
                f"{len(opts['seeds'])} seeds, band = +-1 SD across seeds)")
    prov.extra = {
        "G, prompts per step, J, steps, lr": f"{cfg.G}, {cfg.prompts_per_step}, {cfg.J}, {cfg.steps}, {cfg.lr:g}",
        "evaluation": f"mean@{cfg.eval_k} at the training temperature {cfg.temperature:g} (and greedy, pass@"
                      f"{cfg.eval_k}) on {cfg.n_test} held-out problems every {cfg.eval_every} steps",
        "band": "+-1 standard deviation across seeds; verdicts from per-seed paired differences",
        "KAE bandwidth": "h = 0.2 relative to the step (window 0.2 i)",
    }
    return args, cfg, table, data, prov, fig_path


def main(argv=None) -> pd.DataFrame:
    args, cfg, table, data, prov, fig = run_curves(NAME, "Figure 4: single stream", ESTIMATORS, argv)
    gains = ", ".join(f"+{v:.1%} {k}" for k, v in paper.FIGURE4["final_gain"].items())
    findings = [
        gain_sentence(data, "KAE", "REINFORCE", gains),
        gain_sentence(data, "KAE", "REINFORCE++", "not given"),
        change_sentence(data, "REINFORCE") + " The paper reports that REINFORCE degrades.",
        change_sentence(data, "REINFORCE++"),
        change_sentence(data, "KAE") + " The paper reports that KAE keeps improving.",
    ]
    write_result(
        table,
        prov,
        out_dir=args.out,
        title="Figure 4 - single stream (G = 1): KAE vs REINFORCE and REINFORCE++",
        paper_section=paper.FIGURE4["claim"] + f" Final gain of KAE: {gains}.",
        findings=findings,
        figures=[str(fig)],
        data=data,
    )
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
