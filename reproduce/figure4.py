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

import numpy as np
import pandas as pd

from . import paper
from .measure import accuracy_curves
from .report import Provenance, device_label, entry_config, entry_parser, model_label, save_figure, write_result

NAME = "figure4"
ESTIMATORS = {"KAE": ("kae", {}), "REINFORCE": ("reinforce", {}), "REINFORCE++": ("reinforce_pp", {})}


def plot_curves(data: pd.DataFrame, path: Path, title: str) -> None:
    """Mean test accuracy over seeds per estimator, with a +-1 SD band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, part in data.groupby("estimator", sort=False):
        stats = part.groupby("step")["test_acc"].agg(["mean", "std"]).fillna(0.0)
        ax.plot(stats.index, stats["mean"], marker="o", label=name)
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2)
    ax.set_xlabel("RL step")
    ax.set_ylabel("greedy test accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def final_table(data: pd.DataFrame) -> pd.DataFrame:
    """Start and final accuracy per estimator: mean and SD over seeds, and the change over training."""
    last = data[data["step"] == data["step"].max()].groupby("estimator", sort=False)["test_acc"]
    start = data[data["step"] == 0].groupby("estimator", sort=False)["test_acc"].mean()
    out = pd.DataFrame({"start_acc": start, "final_acc": last.mean(), "final_sd": last.std(ddof=1), "seeds": last.size()})
    out["change"] = out["final_acc"] - out["start_acc"]
    # Sampled (temperature 1) reward on the training prompts, first and last evaluation windows.
    evals = sorted(s for s in data["step"].unique() if s > 0)
    if evals:
        reward = data.groupby(["estimator", "step"], sort=False)["train_reward"].mean()
        out["train_reward_first"] = [reward.get((e, evals[0]), np.nan) for e in out.index]
        out["train_reward_last"] = [reward.get((e, evals[-1]), np.nan) for e in out.index]
    return out.reset_index()


def accuracy_se(acc: float, n_test: int) -> float:
    """Binomial standard error of an accuracy measured on ``n_test`` problems."""
    return float(np.sqrt(acc * (1 - acc) / n_test))


def gain_sentence(table: pd.DataFrame, ours: str, ref: str, paper_gain: str, n_test: int) -> str:
    rows = table.set_index("estimator")
    a, b = rows.loc[ours, "final_acc"], rows.loc[ref, "final_acc"]
    gain, se = a - b, accuracy_se((a + b) / 2, n_test)
    if abs(gain) < 2 * se:
        verdict = "undecided at this scale: the gap is within"
    else:
        verdict = ("holds" if gain > 0 else "does NOT hold") + " at this scale: the gap is beyond"
    return (
        f"Final accuracy {ours} {a:.3f} vs {ref} {b:.3f} ({gain:+.3f}; paper: {paper_gain}) -> {ours} above {ref} "
        f"{verdict} 2 x the test set's sampling s.e. ({se:.3f} on {n_test} "
        f"problems); seed SD {rows.loc[ours, 'final_sd']:.3f} / {rows.loc[ref, 'final_sd']:.3f}."
    )


def change_sentence(table: pd.DataFrame, name: str, n_test: int) -> str:
    row = table.set_index("estimator").loc[name]
    se = accuracy_se(row["start_acc"], n_test)
    if row["change"] < -2 * se:
        what = "degrades"
    elif row["change"] > 2 * se:
        what = "improves"
    else:
        what = "does not change beyond 2 x the test-set s.e."
    return f"{name}'s accuracy {what} over training ({row['start_acc']:.3f} -> {row['final_acc']:.3f}, s.e. {se:.3f})."


def run_curves(name: str, description: str, estimators: dict, argv=None):
    """Shared body of Figures 4 and S.1: train, tabulate, plot; returns ``(args, cfg, table, data, prov, fig)``."""
    args = entry_parser(name, description).parse_args(argv)
    cfg, opts = entry_config(name, args)
    prov = Provenance(name, args.preset, model_label(cfg), opts["seeds"], device_label(cfg))
    data = pd.DataFrame(accuracy_curves(cfg, estimators, opts["seeds"], progress=not args.quiet))
    table = final_table(data)
    fig_path = Path(args.figures) / f"{name}.png"
    plot_curves(data, fig_path, f"{description} ({args.preset} preset, G={cfg.G}, J={cfg.J}, {len(opts['seeds'])} seeds)")
    prov.extra = {
        "G, prompts per step, J, steps, lr": f"{cfg.G}, {cfg.prompts_per_step}, {cfg.J}, {cfg.steps}, {cfg.lr:g}",
        "evaluation": f"greedy accuracy on {cfg.n_test} held-out problems every {cfg.eval_every} steps",
        "band": "+-1 standard deviation across seeds",
        "train_reward": "mean sampled reward of the training batches since the previous evaluation",
    }
    return args, cfg, table, data, prov, fig_path


def main(argv=None) -> pd.DataFrame:
    args, cfg, table, data, prov, fig = run_curves(NAME, "Figure 4: single stream", ESTIMATORS, argv)
    gains = ", ".join(f"+{v:.1%} {k}" for k, v in paper.FIGURE4["final_gain"].items())
    findings = [
        gain_sentence(table, "KAE", "REINFORCE", gains, cfg.n_test),
        gain_sentence(table, "KAE", "REINFORCE++", "not given", cfg.n_test),
        change_sentence(table, "REINFORCE", cfg.n_test) + " The paper reports that REINFORCE degrades.",
        change_sentence(table, "KAE", cfg.n_test) + " The paper reports that KAE keeps improving.",
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
