"""Tables 3-4 entry points: paired statistics, paper-preset early failure, and tiny end-to-end runs."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("kernelvalue.advantage", reason="the advantage-estimator registry is not installed")
torch = pytest.importorskip("torch")
from scipy import stats  # noqa: E402

from reproduce import paper, table3, table4  # noqa: E402
from reproduce.evaluate import resolve_data_dir  # noqa: E402
from reproduce.table3 import METHODS, paired_tests, verdict  # noqa: E402

MICRO = [
    "n_layer=1", "d_model=32", "n_head=2", "sft_steps=20", "sft_batch_size=16", "n_train_prompts=12", "n_test=6",
    "prompts_per_step=3", "steps=2", "eval_every=1", "max_new_tokens=20", "lr=0.001", "micro_batch_size=6",
    "eval_batch_size=6",
]


def test_paired_tests_match_scipy_and_flag_significance():
    rng = np.random.default_rng(0)
    seeds = np.arange(6)
    base = rng.normal(0.5, 0.05, size=6)  # a per-seed effect shared by every method (what pairing removes)
    acc = {"KAE": base + 0.03, "GRPO": base + rng.normal(0, 0.005, 6), "GPG": base + 0.03 + np.array([1, -1, 1, -1, 0.5, -0.5]) * 0.01}
    df = pd.concat([pd.DataFrame({"method": m, "seed": seeds, "final_acc": v}) for m, v in acc.items()])
    t = paired_tests(df).set_index("method")
    for m in ("GRPO", "GPG"):
        d = acc["KAE"] - acc[m]
        assert t.loc[m, "diff_ref"] == pytest.approx(d.mean())
        assert t.loc[m, "p_ttest"] == pytest.approx(stats.ttest_rel(acc["KAE"], acc[m]).pvalue)
        assert t.loc[m, "p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
        half = stats.t.ppf(0.975, 5) * d.std(ddof=1) / np.sqrt(6)
        assert (t.loc[m, "ci_low"], t.loc[m, "ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert t.loc["GRPO", "p_ttest"] < 1e-3 and "significant at 5%." in verdict(t.reset_index(), "GRPO")
    assert t.loc["GPG", "p_ttest"] == pytest.approx(1.0) and "NOT significant" in verdict(t.reset_index(), "GPG")
    assert np.isnan(t.loc["KAE", "diff_ref"]) and t.loc["KAE", "sd"] == pytest.approx(np.std(acc["KAE"], ddof=1))
    with pytest.raises(ValueError, match="reference method"):
        paired_tests(df[df["method"] != "KAE"])


def test_methods_exist_in_the_registry():
    from kernelvalue.advantage import ESTIMATORS

    assert {name for name, _ in METHODS.values()} <= set(ESTIMATORS)
    assert set(paper.TABLE3["average"]) <= set(METHODS) and set(paper.TABLE4["average"]) <= set(METHODS)


def test_paper_preset_fails_early_naming_what_is_missing(tmp_path):
    with pytest.raises(SystemExit) as err:
        table3.main(["--preset", "paper", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    msg = str(err.value)
    assert "--model" in msg and "config.json" in msg and "--train-data" in msg and "MATH" in msg
    with pytest.raises(SystemExit, match="DAPO-17k"):
        table4.main(["--preset", "paper", "--out", str(tmp_path)])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One warm-start cache for both entry points (the micro SFT runs once)."""
    return tmp_path_factory.mktemp("warm")


@pytest.mark.parametrize("entry, name", [(table3, "table3"), (table4, "table4")])
def test_tiny_end_to_end(tmp_path, cache, entry, name):
    sets = [a for s in MICRO for a in ("--set", s)]
    bench = ["--bench-limit", "1"] if (resolve_data_dir() / "eval").is_dir() else ["--bench-limit", "0"]
    table = entry.main([
        "--seeds", "0", "1", "--methods", "KAE", "GRPO", "--device", "cpu", "--threads", "1", "--quiet",
        "--cache-dir", str(cache), "--out", str(tmp_path / "res"), "--figures", str(tmp_path / "fig"),
        *bench, *sets,
    ])
    assert list(table["method"]) == ["KAE", "GRPO"]
    expected = (paper.TABLE3 if name == "table3" else paper.TABLE4)["average"]
    assert table.set_index("method")["paper avg acc (%)"].to_dict() == {"KAE": expected["KAE"], "GRPO": expected["GRPO"]}
    md = (tmp_path / "res" / f"{name}.md").read_text()
    assert "KAE - GRPO" in md and "Provenance" in md and "The paper's numbers" in md
    data = pd.read_csv(tmp_path / "res" / f"{name}.data.csv")
    assert set(data["step"]) == {0, 1, 2} and set(data["seed"]) == {0, 1}
    assert ((data["test_acc"] >= 0) & (data["test_acc"] <= 1)).all()
    assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 0
    if bench[1] == "1":
        assert "pipeline check" in md
        assert len(pd.read_csv(tmp_path / "res" / f"{name}.benchmarks.csv")) == 7
