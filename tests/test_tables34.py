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
    "eval_batch_size=6", "pool_min_terms=2",
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
        assert t.loc[m, "p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
        half = stats.t.ppf(0.975, 5) * d.std(ddof=1) / np.sqrt(6)
        assert (t.loc[m, "ci_low"], t.loc[m, "ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert t.loc["GRPO", "verdict"] == "holds" and '"KAE above GRPO" holds.' in verdict(t.reset_index(), "GRPO")
    assert t.loc["GPG", "verdict"] == "undecided" and "undecided" in verdict(t.reset_index(), "GPG")
    assert np.isnan(t.loc["KAE", "diff_ref"]) and t.loc["KAE", "sd"] == pytest.approx(np.std(acc["KAE"], ddof=1))
    with pytest.raises(ValueError, match="reference method"):
        paired_tests(df[df["method"] != "KAE"])
    # A family of comparisons widens every interval to the Bonferroni level.
    wide = paired_tests(df, family=4).set_index("method")
    ratio = stats.t.ppf(1 - 0.05 / 8, 5) / stats.t.ppf(0.975, 5)
    for m in ("GRPO", "GPG"):
        width = wide.loc[m, "ci_high"] - wide.loc[m, "ci_low"]
        assert width == pytest.approx(ratio * (t.loc[m, "ci_high"] - t.loc[m, "ci_low"]))
    assert "Bonferroni over 4 comparisons" in verdict(wide.reset_index(), "GRPO", family=4)


def test_methods_exist_in_the_registry():
    from kernelvalue.advantage import ESTIMATORS

    assert {spec[0] for spec in METHODS.values()} <= set(ESTIMATORS)
    assert set(paper.TABLE3["average"]) <= set(METHODS) and set(paper.TABLE4["average"]) <= set(METHODS)


def test_paper_preset_fails_early_naming_what_is_missing(tmp_path):
    with pytest.raises(SystemExit) as err:
        table3.main(["--preset", "paper", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    msg = str(err.value)
    assert "--model" in msg and "config.json" in msg and "--train-data" in msg and "MATH" in msg
    with pytest.raises(SystemExit, match="DAPO-17k"):
        table4.main(["--preset", "paper", "--out", str(tmp_path)])
    assert "trainer support" not in msg  # the boxed-answer dataset exists now


def test_paper_config_follows_the_paper_and_the_flags(tmp_path):
    from argparse import Namespace

    args = Namespace(model="/m", train_data="hf:x", device="cuda", cache_dir=None, G=8, set=["steps=7"])
    cfg = table3.paper_config("table3", args, "Dr.GRPO", 3)
    assert (cfg.dataset, cfg.G, cfg.J, cfg.steps, cfg.estimator, cfg.seed) == ("math", 8, 10, 7, "drgrpo", 3)
    assert (cfg.model, cfg.data_path, cfg.chat_template) == ("/m", "hf:x", True)
    args.G, args.set = None, []
    cfg = table3.paper_config("table4", args, "KAE", 0)
    assert cfg.G == 4 and 200 <= cfg.steps <= 500 and cfg.J == 8  # ../shared/paper.md: J = 8 for DAPO
    assert table3.PAPER_METHODS == tuple(paper.TABLE3["average"]) == tuple(paper.TABLE4["average"])


@pytest.mark.parametrize("entry, name", [(table3, "table3"), (table4, "table4")])
def test_paper_path_end_to_end_on_cpu_with_a_tiny_qwen2(tmp_path, monkeypatch, entry, name):
    # The paper preset's full path (weights loading, boxed-answer training, six-benchmark evaluation) at toy
    # size: the GPU check is the only thing bypassed.
    from test_trainer import MATH500, _tiny_qwen_dir, math500_train_file

    if not MATH500.exists() or not (resolve_data_dir() / "eval").is_dir():
        pytest.skip("../shared MATH500 / benchmark data absent")
    monkeypatch.setattr(table3, "gpu_available", lambda: True)
    data, _ = math500_train_file(tmp_path)
    sets = {"n_train_prompts": 4, "n_test": 2, "prompts_per_step": 2, "G": 2, "J": 2, "steps": 2, "eval_every": 1,
            "max_new_tokens": 6, "micro_batch_size": 4, "eval_batch_size": 8, "param_dtype": "float32", "lr": 1e-3}
    argv = ["--preset", "paper", "--model", str(_tiny_qwen_dir(tmp_path)), "--train-data", str(data),
            "--device", "cpu", "--quiet", "--bench-limit", "1", "--methods", "KAE", "GRPO", "--seeds", "0",
            "--out", str(tmp_path / "res"), "--figures", str(tmp_path / "fig")]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    table = entry.main(argv)
    assert list(table["method"]) == ["KAE", "GRPO"]
    assert ((table["final acc (%)"] >= 0) & (table["final acc (%)"] <= 100)).all()
    assert sum(c.endswith("mean@1 (%)") for c in table.columns) == 6
    expected = (paper.TABLE3 if name == "table3" else paper.TABLE4)["average"]
    assert table.set_index("method")["paper avg acc (%)"].to_dict() == {"KAE": expected["KAE"], "GRPO": expected["GRPO"]}
    md = (tmp_path / "res" / f"{name}.md").read_text()
    assert "| preset | paper |" in md and "Per benchmark" in md
    bench = pd.read_csv(tmp_path / "res" / f"{name}.benchmarks.csv")
    assert set(bench["method"]) == {"start", "KAE", "GRPO"} and len(bench) == 18
    curves = pd.read_csv(tmp_path / "res" / f"{name}.data.csv")
    assert set(curves["step"]) == {0, 1, 2}
    cfg = (tmp_path / "res" / f"{name}.runs" / "KAE-seed0" / "config.json").read_text()
    assert '"dataset": "math"' in cfg and (tmp_path / "fig" / f"{name}.png").stat().st_size > 0


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One warm-start cache for both entry points (the micro SFT runs once)."""
    return tmp_path_factory.mktemp("warm")


@pytest.mark.parametrize("entry, name", [(table3, "table3"), (table4, "table4")])
def test_tiny_end_to_end(tmp_path, cache, entry, name):
    sets = [a for s in MICRO for a in ("--set", s)]
    bench = ["--bench-limit", "1"] if (resolve_data_dir() / "eval").is_dir() else ["--bench-limit", "0"]
    table = entry.main([
        "--seeds", "0", "1", "--methods", "KAE", "GRPO", "null (shuffled)", "--device", "cpu", "--threads", "1",
        "--quiet", "--workers", "1",
        "--cache-dir", str(cache), "--out", str(tmp_path / "res"), "--figures", str(tmp_path / "fig"),
        *bench, *sets,
    ])
    assert list(table["method"]) == ["KAE", "GRPO", "null (shuffled)"]
    expected = (paper.TABLE3 if name == "table3" else paper.TABLE4)["average"]
    paper_avg = table.set_index("method")["paper avg acc (%)"]
    assert paper_avg[["KAE", "GRPO"]].to_dict() == {"KAE": expected["KAE"], "GRPO": expected["GRPO"]}
    assert {"final pass_at_k (%)", "final greedy (%)", "detectable (pts)"} <= set(table.columns)
    md = (tmp_path / "res" / f"{name}.md").read_text()
    assert "KAE - GRPO" in md and "raises held-out mean_at_k" in md and "The paper's numbers" in md
    data = pd.read_csv(tmp_path / "res" / f"{name}.data.csv")
    assert set(data["step"]) == {0, 1, 2} and set(data["seed"]) == {0, 1}
    for col in ("mean_at_k", "pass_at_k", "greedy"):
        assert ((data[col] >= 0) & (data[col] <= 1)).all()
    assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 0
    if bench[1] == "1":
        assert "pipeline check" in md
        assert len(pd.read_csv(tmp_path / "res" / f"{name}.benchmarks.csv")) == 7
