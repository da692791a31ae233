"""The replication report recomputes each claim's verdict from per-seed data files and flags disagreement."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from reproduce import replication

RESULTS = Path(__file__).resolve().parents[1] / "results"
pytestmark = pytest.mark.skipif(not (RESULTS / "table1.data.csv").is_file(), reason="no committed results")


def test_the_same_files_reach_the_same_verdicts():
    table = replication.compare(RESULTS, {"copy": RESULTS})
    assert (table["same verdict"] == "yes").all()
    tables = {c.split(":")[0] for c in table["claim"]}
    assert {"Table 1", "Table 2", "Table 3", "Table 4", "Figure 4", "Figure S.1"} <= tables
    assert all(v.rstrip(".").endswith(("holds", "does not hold", "undecided")) for v in table["main"])
    assert not any(c.startswith("pooled") for c in table.columns)  # the same seeds are not pooled


def test_a_reversed_effect_is_flagged_and_absent_tables_are_blank(tmp_path):
    cells = pd.read_csv(RESULTS / "table1.data.csv")
    cells["estimator"] = cells["estimator"].replace({"kae": "grpo", "grpo": "kae"})  # KAE now has GRPO's errors
    cells.to_csv(tmp_path / "table1.data.csv", index=False)
    table = replication.compare(RESULTS, {"swapped": tmp_path}).set_index("claim")
    row = table.loc["Table 1: KAE's value MSE below GRPO's"]
    assert row["main"].endswith(": holds") and row["swapped"].endswith("does not hold") and row["same verdict"] == "NO"
    table2_rows = table[table.index.str.startswith("Table 2")]
    assert (table2_rows["swapped"] == "").all() and (table2_rows["same verdict"] == "").all()


def test_main_writes_the_report_and_checks_its_arguments(tmp_path, capsys):
    main_dir = tmp_path / "main"
    main_dir.mkdir()
    for name in ("table2.data.csv", "table2.steps.csv"):
        shutil.copy(RESULTS / name, main_dir / name)
    replication.main(["--main", str(main_dir), "--other", str(main_dir), "--label", "itself"])
    text = (main_dir / "replication.md").read_text()
    assert "| itself" in text and "Table 2" in text and "Table 1" not in text
    assert "same verdict" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="one --label per --other"):
        replication.main(["--main", str(main_dir), "--other", str(main_dir), "--other", str(main_dir),
                          "--label", "one"])


def test_runs_with_other_seeds_are_also_pooled(tmp_path):
    cells = pd.read_csv(RESULTS / "table1.data.csv")
    cells["seed"] += 100  # the same numbers under other seeds: the pool has twice the seeds, the same mean
    cells.to_csv(tmp_path / "table1.data.csv", index=False)
    table = replication.compare(RESULTS, {"other seeds": tmp_path}).set_index("claim")
    n = pd.read_csv(RESULTS / "table1.data.csv")["seed"].nunique()
    pooled = table.loc["Table 1: KAE's value MSE below GRPO's", "pooled with other seeds"]
    assert f"{2 * n} seeds" in pooled and pooled.endswith("holds")
    assert table.loc["Table 1: KAE's value MSE below GRPO's", "same verdict"] == "yes"
    assert (table[table.index.str.startswith("Table 2")]["pooled with other seeds"] == "").all()


def test_each_claim_reads_as_its_own_report_states_it():
    # The replication recomputes a claim apart from the report that states it: the two must not drift.
    files = {"Table 1": "table1", "Table 2": "table2", "Table 3": "table3", "Table 4": "table4",
             "Figure 4": "figure4", "Figure S.1": "figureS1"}
    for claim, (_, text) in replication.claims(RESULTS).items():
        report = (RESULTS / f"{files[claim.split(':')[0]]}.md").read_text()
        assert text.rstrip(".") in report, claim


def test_pooling_is_per_table(tmp_path):
    # Table 1 re-run with other seeds is pooled even though the other folder's Table 2 reuses the seeds.
    cells = pd.read_csv(RESULTS / "table1.data.csv")
    cells["seed"] += 100
    cells.to_csv(tmp_path / "table1.data.csv", index=False)
    for name in ("table2.data.csv", "table2.steps.csv"):
        shutil.copy(RESULTS / name, tmp_path / name)
    table = replication.compare(RESULTS, {"mixed": tmp_path}).set_index("claim")
    assert table.loc["Table 1: KAE's value MSE below GRPO's", "pooled with mixed"] != ""
    assert (table[table.index.str.startswith("Table 2")]["pooled with mixed"] == "").all()
