"""Figure S.1: KAE vs GRPO with the same prompt schedule (J consecutive steps per minibatch), accuracy over steps.

``python -m reproduce.figureS1 [--preset small|paper] [--device auto] [--seeds 0 1 2] [--out results]``

Both runs use the same schedule, so any difference comes from the baseline
(the paper's ablation: the schedule alone does not give KAE's gains). Writes
``results/figureS1.csv``, ``results/figureS1.data.csv``, ``results/figureS1.md``
and ``figures/figureS1.png`` (mean over seeds, band = +-1 SD).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import paper
from .figure4 import METRIC, change_sentence, gain_sentence, run_curves
from .report import write_result

NAME = "figureS1"
ESTIMATORS = {"KAE": ("kae", {}), "GRPO": ("grpo", {})}


def lead_from(data: pd.DataFrame, ours: str = "KAE", ref: str = "GRPO"):
    """First evaluated step from which ``ours``'s mean accuracy stays above ``ref``'s (None if never)."""
    means = data.pivot_table(index="step", columns="estimator", values=METRIC)
    ahead = (means[ours] > means[ref]).to_numpy()
    after = np.flatnonzero(~ahead)
    first = 0 if len(after) == 0 else after[-1] + 1
    return None if first >= len(ahead) else int(means.index[first])


def main(argv=None) -> pd.DataFrame:
    args, cfg, table, data, prov, fig = run_curves(NAME, "Figure S.1: KAE vs GRPO, same schedule", ESTIMATORS, argv)
    lead = lead_from(data)
    findings = [
        gain_sentence(data, "KAE", "GRPO", "KAE leads"),
        change_sentence(data, "KAE"),
        change_sentence(data, "GRPO"),
        f"KAE's mean accuracy stays above GRPO's from step {lead} on (paper: after ~30 steps)."
        if lead is not None
        else "KAE's mean accuracy does not stay above GRPO's to the end (paper: it leads after ~30 steps).",
    ]
    write_result(
        table,
        prov,
        out_dir=args.out,
        title="Figure S.1 - KAE vs GRPO with the same prompt schedule",
        paper_section=paper.FIGURES1["claim"],
        findings=findings,
        figures=[str(fig)],
        data=data,
    )
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
