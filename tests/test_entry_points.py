"""End-to-end runs of every ``python -m reproduce.<name>`` entry point at toy size (seconds each)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("kernelvalue.advantage", reason="the advantage-estimator registry is not installed")
pytest.importorskip("reproduce.rewards", reason="reproduce.rewards is not installed")

from reproduce import figure3, figure4, figureS1, table1, table2  # noqa: E402
from reproduce.measure import last_block_filter, paired_run, summarise  # noqa: E402
from reproduce.presets import experiment, get_preset  # noqa: E402
from reproduce.trainer import Trainer  # noqa: E402

torch.set_num_threads(1)

TOY = {
    "n_layer": 1,
    "d_model": 32,
    "n_head": 2,
    "sft_steps": 10,
    "sft_batch_size": 8,
    "n_train_prompts": 8,
    "n_test": 4,
    "prompts_per_step": 2,
    "G": 2,
    "J": 2,
    "max_new_tokens": 10,
    "eval_batch_size": 4,
    "micro_batch_size": 16,
}


def toy_argv(tmp_path, **extra):
    sets = {**TOY, **extra}
    argv = ["--device", "cpu", "--quiet", "--out", str(tmp_path / "results"), "--figures", str(tmp_path / "figures")]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    for key, value in sets.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    return argv


def read_md(tmp_path, name):
    text = (tmp_path / "results" / f"{name}.md").read_text()
    for needed in ("## Provenance", "| preset | small |", "| seeds |", "| device | cpu", "| commit |", "wall time"):
        assert needed in text, needed
    assert "## The paper's numbers" in text
    return text


def test_table1_end_to_end(tmp_path, capsys):
    table = table1.main(toy_argv(tmp_path, steps=4, mc_samples=4, measure_every=2) + ["--seeds", "0", "1"])
    assert {"kae", "grpo", "reinforce_pp"} <= set(table["estimator"])
    assert "oracle" not in set(table["estimator"])  # its baseline is the truth itself
    csv = pd.read_csv(tmp_path / "results" / "table1.csv")
    assert list(csv.columns[:3]) == ["estimator", "value_mse", "std_err"] and len(csv) == len(table)
    data = pd.read_csv(tmp_path / "results" / "table1.data.csv")
    assert sorted(data["step"].unique()) == [2, 4]  # measure_every=2 over 4 steps
    assert sorted(data["seed"].unique()) == [0, 1] and len(data) == 2 * 2 * len(table)
    assert np.isfinite(data["value_mse_raw"]).all() and (data["value_mse_raw"] >= 0).all()
    text = read_md(tmp_path, "table1")
    assert "5.8e-03" in text or "0.0058" in text  # the paper's KAE number sits beside ours
    assert "kae" in capsys.readouterr().out


def test_table2_end_to_end(tmp_path):
    table = table2.main(toy_argv(tmp_path, steps=2, mc_samples=4, measure_every=2))
    assert {"kae", "grpo", "oracle"} <= set(table["estimator"])
    assert {"grad_mse", "reduction_vs_grpo", "value_mse", "grad_cos"} <= set(table.columns)
    assert np.isnan(table.set_index("estimator").loc["oracle", "value_mse"])  # its baseline is the truth
    data = pd.read_csv(tmp_path / "results" / "table2.data.csv")
    assert (data["grad_noise"] >= 0).all() and (data["grad_mse_raw"] >= 0).all()
    # REINFORCE's baseline is 0, so its gradient differs from the others unless every reward is 0.
    assert "last transformer block" in read_md(tmp_path, "table2")


def test_figure3_end_to_end(tmp_path):
    table = figure3.main(toy_argv(tmp_path, steps=2, mc_samples=4, measure_every=2) + ["--seeds", "0"])
    kae = table[table["kernel"].notna()]
    assert len(kae) == len(figure3.KERNELS) * len(figure3.BANDWIDTHS)
    assert set(table[table["kernel"].isna()]["estimator"]) == {"GRPO", "REINFORCE++"}
    assert (tmp_path / "figures" / "figure3.png").stat().st_size > 1000
    assert "figure3.png" in read_md(tmp_path, "figure3")


def test_figure4_end_to_end(tmp_path):
    table = figure4.main(toy_argv(tmp_path, steps=2, eval_every=1) + ["--seeds", "0", "1"])
    assert list(table["estimator"]) == ["KAE", "REINFORCE", "REINFORCE++"] and (table["seeds"] == 2).all()
    data = pd.read_csv(tmp_path / "results" / "figure4.data.csv")
    assert sorted(data["step"].unique()) == [0, 1, 2] and len(data) == 3 * 2 * 3
    assert (tmp_path / "figures" / "figure4.png").exists()
    assert "G = 1" in read_md(tmp_path, "figure4")


def test_figureS1_end_to_end(tmp_path):
    table = figureS1.main(toy_argv(tmp_path, steps=2, eval_every=2) + ["--seeds", "3"])
    assert list(table["estimator"]) == ["KAE", "GRPO"]
    assert (tmp_path / "figures" / "figureS1.png").exists()
    assert "| seeds | 3 |" in read_md(tmp_path, "figureS1")


def test_reproduce_lists_entry_points(capsys):
    from reproduce.__main__ import main

    main()
    out = capsys.readouterr().out
    for name in ("table1", "table2", "figure3", "figure4", "figureS1"):
        assert f"python -m reproduce.{name}" in out


# ----------------------------------------------------------------------------- measurement protocol
def test_measuring_leaves_the_training_path_unchanged(tmp_path):
    # Extra Monte-Carlo samples use their own generator: the driven run equals a plain run, bit for bit.
    cfg = get_preset("small", **TOY, steps=3, device="cpu", cache_dir=str(tmp_path))
    plain = Trainer(cfg, log=lambda *_: None)
    plain.train(progress=False)
    driven = Trainer(cfg, log=lambda *_: None)
    ests = {"kae": ("kae", {}), "grpo": ("grpo", {})}
    rows = paired_run(cfg, ests, [1, 2, 3], 4, gradients=True, log=lambda *_: None, progress=False, trainer=driven)
    assert len(rows) == 3 * 2 and driven.step_count == 3
    for (n, a), (_, b) in zip(plain.model.state_dict().items(), driven.model.state_dict().items()):
        assert torch.equal(a, b), n
    with pytest.raises(ValueError, match="fresh"):
        paired_run(cfg, ests, [1], 4, log=lambda *_: None, progress=False, trainer=driven)


def test_paired_estimators_match_their_own_computation(tmp_path):
    # Rows are paired: two labels for the same estimator and options must give identical numbers.
    cfg = get_preset("small", **TOY, steps=2, device="cpu", cache_dir=str(tmp_path))
    rows = paired_run(cfg, {"a": ("grpo", {}), "b": ("grpo", {})}, [1, 2], 4, gradients=True, log=lambda *_: None, progress=False)
    df = pd.DataFrame(rows).set_index(["step", "estimator"])
    for col in ("value_mse", "grad_mse"):
        np.testing.assert_array_equal(df.xs("a", level="estimator")[col], df.xs("b", level="estimator")[col])


def test_grpo_gradient_is_rloo_gradient_shrunk_by_one_minus_one_over_g(tmp_path):
    # Table 2's finding relies on this identity: Z - mean_all = (1 - 1/G) (Z - mean_others).
    from kernelvalue.advantage import get_estimator

    tr = Trainer(get_preset("small", **{**TOY, "G": 4}, device="cpu", cache_dir=str(tmp_path)), log=lambda *_: None)
    rollout = tr.sample(np.arange(2), 4)
    rollout.rewards[:] = [1, 0, 0, 1, 1, 1, 0, 0]  # fixed rewards: the identity holds for any values
    rows = [rollout.rewards - get_estimator(name).compute(rollout.keys, rollout.rewards, 1).baselines for name in ("grpo", "rloo")]
    g = tr.policy_gradients(rollout, np.stack(rows), last_block_filter(tr.model), "seq-mean-token-sum-norm")
    # float32 sums over ~1e3 terms: allow 1e-5 of the largest entry as absolute rounding error.
    torch.testing.assert_close(g[0], 0.75 * g[1], rtol=1e-4, atol=1e-5 * float(g.abs().max()))


def test_summarise_reduction_and_standard_error():
    rows = [
        {"seed": 0, "step": s, "estimator": e, "value_mse": v}
        for s, (k, g) in enumerate([(1.0, 4.0), (3.0, 4.0)])
        for e, v in (("kae", k), ("grpo", g))
    ]
    out = summarise(rows, "value_mse", reference=("grpo",)).set_index("estimator")
    assert out.loc["kae", "value_mse"] == 2.0 and out.loc["kae", "reduction_vs_grpo"] == pytest.approx(0.5)
    assert out.loc["kae", "std_err"] == pytest.approx(np.std([1.0, 3.0], ddof=1) / np.sqrt(2))


def test_last_block_filter_picks_only_the_last_layer(tmp_path):
    tr = Trainer(get_preset("small", **{**TOY, "n_layer": 2}, device="cpu", cache_dir=str(tmp_path)), log=lambda *_: None)
    keep = last_block_filter(tr.model)
    names = [n for n, _ in tr.model.named_parameters() if keep(n)]
    assert names and all(".layers.1." in n for n in names)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"mc_samples": 2}, "mc_samples"),
        ({"mc_samples": 7}, "even"),
        ({"measure_every": 0}, "measure_every"),
        ({"G": 0}, "G must be"),
        ({"no_such_field": 1}, "unknown config field"),
    ],
)
def test_experiment_options_are_validated(overrides, match):
    with pytest.raises(ValueError, match=match):
        experiment("table1", "small", **overrides)


def test_bad_cli_values_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        experiment("figure4", "small", seeds=[-1])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        table1.main(["--set", "steps"])
    with pytest.raises(SystemExit):
        table1.main(["--preset", "huge"])
    with pytest.raises(ValueError, match="measure_steps"):
        paired_run(get_preset("small", **TOY, steps=2, device="cpu", cache_dir=str(tmp_path)), {}, [5], 4)


def test_paper_preset_entry_point_with_a_tiny_qwen2_and_real_gsm8k_rows(tmp_path):
    # The paper preset's code path (chat template, GSM8K rows, pretrained loading) at toy size.
    from test_trainer import SHARED, _tiny_qwen_dir

    if not (SHARED / "data" / "gsm8k").exists():
        pytest.skip("../shared GSM8K data absent")
    model = _tiny_qwen_dir(tmp_path)
    sets = {"n_train_prompts": 4, "n_test": 2, "prompts_per_step": 2, "G": 2, "J": 2, "steps": 2}
    sets.update(mc_samples=4, measure_every=2, max_new_tokens=6, micro_batch_size=16)
    argv = ["--preset", "paper", "--model", str(model), "--device", "cpu", "--quiet"]
    argv += ["--out", str(tmp_path / "results"), "--figures", str(tmp_path / "figures")]
    for key, value in sets.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    table = table2.main(argv)
    assert {"kae", "grpo", "oracle"} <= set(table["estimator"])
    text = (tmp_path / "results" / "table2.md").read_text()
    assert "| preset | paper |" in text and str(model) in text


def test_paper_claim_verdict_needs_a_resolved_paired_difference():
    from reproduce.table1 import compare

    def rows(kae, grpo):
        return [
            {"seed": 0, "step": s, "estimator": e, "value_mse": v}
            for s, (a, b) in enumerate(zip(kae, grpo), 1)
            for e, v in (("kae", a), ("grpo", b))
        ]

    def table(r):
        return pd.DataFrame(r).groupby("estimator", as_index=False)["value_mse"].mean()

    clear = rows([0.010, 0.012, 0.011, 0.009], [0.040, 0.041, 0.039, 0.040])
    assert compare(table(clear), clear, "value_mse", "kae", "grpo", (0.6, 0.7)).endswith("-> holds at this scale.")
    few = rows([0.010, 0.012], [0.040, 0.041])
    assert "undecided" in compare(table(few), few, "value_mse", "kae", "grpo", (0.6, 0.7))
    noisy = rows([0.010, 0.050, 0.012, 0.048], [0.040, 0.020, 0.042, 0.019])
    assert "undecided" in compare(table(noisy), noisy, "value_mse", "kae", "grpo", (0.6, 0.7))


def test_accuracy_verdict_is_undecided_within_sampling_noise():
    from reproduce.figure4 import gain_sentence

    def table(a, b):
        return pd.DataFrame({"estimator": ["KAE", "GRPO"], "final_acc": [a, b], "final_sd": [0.01, 0.01]})

    assert "undecided" in gain_sentence(table(0.54, 0.527), "KAE", "GRPO", "KAE leads", 200)
    assert "holds at this scale" in gain_sentence(table(0.70, 0.50), "KAE", "GRPO", "KAE leads", 200)
    assert "does NOT hold" in gain_sentence(table(0.40, 0.60), "KAE", "GRPO", "KAE leads", 200)
