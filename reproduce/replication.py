"""Do the verdicts survive a re-run? The same claims, recomputed from two sets of result files.

``python -m reproduce.replication --other results/rerun_seeds --label "seeds 5-9 / 8-15" [--other DIR --label L ...]``

Each table's headline claims are recomputed from the per-seed data files
(``<name>.data.csv``) that an entry point wrote, with the same verdict logic as
its report (:mod:`reproduce.verdict`), once for ``--main`` (default ``results``)
and once for each ``--other`` directory: a run with other seeds, or with the same
seeds and different floating point (``--threads 2`` changes the order of every
reduction). A claim absent from a directory (that table was not re-run) is left
blank. Where a re-run used other seeds, the two runs' seeds are also pooled (a
run with twice the seeds) and each claim's verdict is given for the pool: a claim
near the run's smallest detectable effect can change verdict between seed sets,
and the pool says which side it falls on. Writes ``<main>/replication.md``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .verdict import describe_or_why, per_seed, relative_reduction


def _effect(diffs, **fmt) -> tuple[str, str]:
    text, eff = describe_or_why(diffs, **fmt)
    return (eff.verdict if eff is not None else "no verdict"), text


def table1_claims(folder: Path) -> dict:
    from .table1 import PHASES

    cells = pd.read_csv(folder / "table1.data.csv")
    wide = per_seed(cells, "value_mse")
    early = per_seed(cells[cells["phase"] == PHASES[0]], "value_mse")
    late = per_seed(cells[cells["phase"] == PHASES[-1]], "value_mse")
    return {
        "Table 1: KAE's value MSE below GRPO's": _effect(relative_reduction(wide, "kae", "grpo"), fmt="+.1%"),
        "Table 1: KAE's value MSE below REINFORCE++'s": _effect(relative_reduction(wide, "kae", "reinforce_pp"),
                                                               fmt="+.1%"),
        "Table 1: KAE's reduction vs GRPO grows from the early to the late third": _effect(
            relative_reduction(late, "kae", "grpo") - relative_reduction(early, "kae", "grpo"), fmt="+.1%"),
        "Table 1: absolute window (h = 10 steps) below relative (h = 0.2)": _effect(
            relative_reduction(wide, "kae_abs10", "kae"), fmt="+.1%"),
    }


def table2_claims(folder: Path) -> dict:
    from .table2 import per_seed_table

    cells = pd.read_csv(folder / "table2.data.csv")
    steps = pd.read_csv(folder / "table2.steps.csv")
    b = int(steps["n_prompts"].iloc[0])
    seeds_table = per_seed_table(cells, (b,))
    mse, resc, cos = (per_seed(seeds_table, c) for c in (f"mse_B{b}", f"rescaled_B{b}", "grad_cos"))
    s1 = steps.groupby("seed")["score2_correct"].mean()
    s0 = steps.groupby("seed")["score2_wrong"].mean()
    return {
        f"Table 2: KAE's gradient MSE below GRPO's, each as it stands (B = {b})": _effect(mse["grpo"] - mse["kae"],
                                                                                       fmt=".3g"),
        f"Table 2: KAE's gradient MSE below GRPO's after the best rescaling (B = {b})": _effect(
            resc["grpo"] - resc["kae"], fmt=".3g"),
        "Table 2: KAE's gradient closer in angle than GRPO's": _effect(cos["kae"] - cos["grpo"], fmt="+.3f"),
        "Table 2: KAE's gradient MSE above the Oracle's": _effect(mse["kae"] / mse["oracle"] - 1, fmt="+.3f"),
        "Table 2: REINFORCE's gradient MSE below the Oracle's": _effect(
            (mse["oracle"] - mse["reinforce"]) / mse["oracle"], fmt="+.1%"),
        "Table 2: wrong responses have larger score norms (A6 fails)": _effect(np.log(s0 / s1), fmt="+.2f"),
    }


def table3_claims(folder: Path, name: str = "table3") -> dict:
    from .table3 import HELD_OUT, REFERENCE, paired_tests, verdict

    data = pd.read_csv(folder / f"{name}.data.csv")
    last = int(data["step"].max())
    wide = data.pivot_table(index=["seed", "step"], columns="estimator", values=HELD_OUT)
    gains = wide.xs(last, level="step") - wide.xs(0, level="step")
    out = {f"Table {name[-1]}: {m} raises held-out mean@4": _effect(gains[m], unit="points", scale=100, fmt="+.2f")
           for m in ("GRPO", "null (shuffled)") if m in gains}
    mids = sorted(s for s in data["step"].unique() if 0 < s < last)
    family = (data["estimator"].nunique() - 1) * (2 if mids else 1)
    final = data[data["step"] == last].rename(columns={"estimator": "method", HELD_OUT: "final_acc"})
    table = paired_tests(final, family=family)
    for _, row in table[table["method"] != REFERENCE].iterrows():
        m = row["method"]
        out[f"Table {name[-1]}: {REFERENCE} above {m} at the end (Bonferroni over {family})"] = (
            row["verdict"], verdict(table, m, family=family))
    if name == "table3" and {"KAE", "GRPO"} <= set(final["method"]):  # Figure S.1: this one comparison, alone
        f = final.pivot_table(index="seed", columns="method", values="final_acc")
        out["Figure S.1: KAE above GRPO at the end (one comparison, 95%)"] = _effect(
            f["KAE"] - f["GRPO"], unit="points", scale=100, fmt="+.2f")
    return out


def figure4_claims(folder: Path) -> dict:
    from .figure4 import METRIC

    data = pd.read_csv(folder / "figure4.data.csv")
    wide = data.pivot_table(index=["seed", "step"], columns="estimator", values=METRIC)
    last = int(data["step"].max())
    final, start = wide.xs(last, level="step"), wide.xs(0, level="step")
    pts = {"unit": "points", "scale": 100, "fmt": "+.2f"}
    return {
        "Figure 4: KAE above REINFORCE at the end (G = 1)": _effect(final["KAE"] - final["REINFORCE"], **pts),
        "Figure 4: KAE above REINFORCE++ at the end (G = 1)": _effect(final["KAE"] - final["REINFORCE++"], **pts),
        "Figure 4: REINFORCE raises held-out mean@4": _effect(final["REINFORCE"] - start["REINFORCE"], **pts),
        "Figure 4: KAE raises held-out mean@4": _effect(final["KAE"] - start["KAE"], **pts),
    }


FILES = {  # the data files each table's claims read
    "table1": ("table1.data.csv",), "table2": ("table2.data.csv", "table2.steps.csv"),
    "table3": ("table3.data.csv",), "table4": ("table4.data.csv",), "figure4": ("figure4.data.csv",),
}


CLAIMS = {"table1": table1_claims, "table2": table2_claims, "table3": table3_claims,
          "table4": lambda folder: table3_claims(folder, "table4"), "figure4": figure4_claims}


def claims(folder: Path) -> dict:
    """Every claim whose data files ``folder`` holds: ``{claim: (verdict, effect text)}``."""
    out = {}
    for name, fn in CLAIMS.items():
        if all((folder / f).is_file() for f in FILES[name]):
            out.update(fn(folder))
    return out


def pooled(main: Path, other: Path, into: Path) -> list[str]:
    """Write into ``into`` the data files of every table both folders hold with disjoint seeds, rows of both
    stacked (a run with more seeds, whose verdicts are sharper); returns those tables' names."""
    done = []
    for table, names in FILES.items():
        if not all((main / n).is_file() and (other / n).is_file() for n in names):
            continue
        frames = [(pd.read_csv(main / n), pd.read_csv(other / n)) for n in names]
        if any(set(a["seed"]) & set(b["seed"]) for a, b in frames):
            continue
        for n, (a, b) in zip(names, frames):
            pd.concat([a, b], ignore_index=True).to_csv(into / n, index=False)
        done.append(table)
    return done


def compare(main: Path, others: dict[str, Path]) -> pd.DataFrame:
    """One row per claim of ``main``: its verdict there and in each other folder, whether they agree,
    and, for a folder with other seeds, the verdict of both runs' seeds pooled."""
    base = claims(main)
    found = {label: claims(folder) for label, folder in others.items()}
    pools = {}
    for label, folder in others.items():
        with tempfile.TemporaryDirectory() as tmp:
            if pooled(main, folder, Path(tmp)):
                pools[f"pooled with {label}"] = claims(Path(tmp))
    rows = []
    for claim, (verdict, text) in base.items():
        row = {"claim": claim, "main": text}
        agree = []
        for label, other_claims in found.items():
            other = other_claims.get(claim)
            row[label] = "" if other is None else other[1]
            if other is not None:
                agree.append(other[0] == verdict)
        row["same verdict"] = "" if not agree else ("yes" if all(agree) else "NO")
        for label, pool in pools.items():
            both = pool.get(claim)
            row[label] = "" if both is None else both[1]
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(prog="python -m reproduce.replication", description=__doc__.splitlines()[0])
    p.add_argument("--main", default="results", help="the committed results (default ./results)")
    p.add_argument("--other", action="append", required=True, help="a directory of re-run result files")
    p.add_argument("--label", action="append", required=True, help="what each --other run changed")
    args = p.parse_args(argv)
    if len(args.other) != len(args.label):
        raise SystemExit("give one --label per --other directory")
    main_dir = Path(args.main)
    table = compare(main_dir, {label: Path(o) for label, o in zip(args.label, args.other)})
    lines = ["# Replication: the same claims from re-runs", "",
             f"Main results: `{main_dir}`. " + "; ".join(f"{label}: `{o}`" for label, o in zip(args.label, args.other))
             + ". Each verdict is recomputed from the per-seed data files with the report's own logic "
             "(`python -m reproduce.replication`). A blank cell: that table was not re-run.", "",
             table.to_markdown(index=False), ""]
    (main_dir / "replication.md").write_text("\n".join(lines))
    print(table[["claim", "same verdict"]].to_string(index=False))
    return table


if __name__ == "__main__":
    main()
