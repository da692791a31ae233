"""End-to-end runs of every ``python -m reproduce.<name>`` entry point at toy size (seconds each)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("kernelvalue.advantage", reason="the advantage-estimator registry is not installed")
pytest.importorskip("reproduce.rewards", reason="reproduce.rewards is not installed")

from reproduce import figure3, figure4, figureS1, table1, table2  # noqa: E402
from reproduce.measure import (  # noqa: E402
    AGGREGATION,
    aggregation_weights,
    last_block_filter,
    paired_run,
    response_scores,
    summarise,
)
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
    argv = ["--device", "cpu", "--quiet", "--workers", "1", "--out", str(tmp_path / "results"),
            "--figures", str(tmp_path / "figures")]
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
    table = table1.main(toy_argv(tmp_path, steps=6, mc_samples=4, measure_every=2) + ["--seeds", "0", "1"])
    assert {"kae", "kae_abs10", "grpo", "reinforce_pp"} <= set(table["estimator"])
    assert "oracle" not in set(table["estimator"])  # its baseline is the truth itself
    csv = pd.read_csv(tmp_path / "results" / "table1.csv")
    assert list(csv.columns[:3]) == ["estimator", "value_mse", "se_seeds"] and len(csv) == len(table)
    data = pd.read_csv(tmp_path / "results" / "table1.data.csv")
    assert sorted(data["step"].unique()) == [2, 4, 6] and set(data["phase"]) == {"early", "mid", "late"}
    assert sorted(data["seed"].unique()) == [0, 1] and len(data) == 2 * 3 * len(table)
    assert np.isfinite(data["value_mse_raw"]).all() and (data["value_mse_raw"] >= 0).all()
    phases = pd.read_csv(tmp_path / "results" / "table1.phases.csv")
    assert list(phases["phase"]) == ["early", "mid", "late"]
    text = read_md(tmp_path, "table1")
    assert "| MATH, step 10 | 19.4 | 5.8 | 78.8 |" in text  # the paper's rows sit beside ours
    assert "smallest detectable effect" in text or "no verdict: " in text  # verdicts come from seeds
    assert "kae" in capsys.readouterr().out


def test_table2_end_to_end(tmp_path, monkeypatch):
    # The toy model never answers correctly; score by completion-length parity so rewards vary.
    monkeypatch.setattr(Trainer, "score", lambda self, c, g: np.array([len(x) % 2 for x in c], dtype=float))
    table = table2.main(toy_argv(tmp_path, steps=2, mc_samples=4, measure_every=2) + ["--seeds", "0", "1"])
    rows = table.set_index("estimator")
    assert {"kae", "grpo", "drgrpo", "gpg", "oracle"} <= set(rows.index)
    assert {"mse_B2", "mse_B128", "mse_B512", "rescaled_B2", "rescaled_B512", "grad_cos", "vs_oracle"} <= set(table.columns)
    assert rows.loc["grpo", "aggregation"] == "seq-mean-token-mean" and rows.loc["kae", "aggregation"] == "seq-mean-token-sum-norm"
    # The GRPO family differs: std normalisation and aggregation change the gradient.
    assert len({rows.loc[e, "mse_B2"] for e in ("grpo", "drgrpo", "gpg")}) == 3
    data = pd.read_csv(tmp_path / "results" / "table2.data.csv")
    assert {"pp_cc", "pp_ct", "pp_tt", "x_cc", "x_ct", "x_tt", "grad_dot", "grad_norm2"} <= set(data.columns)
    steps = pd.read_csv(tmp_path / "results" / "table2.steps.csv")
    assert (steps["grad_noise"] >= 0).all() and {"score2_correct", "score2_wrong"} <= set(steps.columns)
    text = read_md(tmp_path, "table2")
    assert "last transformer block" in text and "Crossover" in text and "Score norms split by reward" in text


def test_figure3_end_to_end(tmp_path):
    table = figure3.main(toy_argv(tmp_path, steps=2, mc_samples=4, measure_every=2) + ["--seeds", "0", "1"])
    kae = table[table["kernel"].notna()]
    assert len(kae) == len(figure3.KERNELS) * len(figure3.BANDWIDTHS)
    assert set(table[table["kernel"].isna()]["estimator"]) == {"grpo", "reinforce_pp"}
    assert (tmp_path / "figures" / "figure3.png").stat().st_size > 1000
    assert "figure3.png" in read_md(tmp_path, "figure3")


def test_figure4_end_to_end(tmp_path):
    table = figure4.main(toy_argv(tmp_path, steps=2, eval_every=1) + ["--seeds", "0", "1"])
    assert list(table["estimator"]) == ["KAE", "REINFORCE", "REINFORCE++"] and (table["seeds"] == 2).all()
    data = pd.read_csv(tmp_path / "results" / "figure4.data.csv")
    assert sorted(data["step"].unique()) == [0, 1, 2] and len(data) == 3 * 2 * 3
    assert {"mean_at_k", "pass_at_k", "greedy"} <= set(data.columns)
    assert (tmp_path / "figures" / "figure4.png").exists()
    assert "G = 1" in read_md(tmp_path, "figure4")


def test_figureS1_end_to_end(tmp_path):
    table = figureS1.main(toy_argv(tmp_path, steps=2, eval_every=2) + ["--seeds", "3", "4"])
    assert list(table["estimator"]) == ["KAE", "GRPO"]
    assert (tmp_path / "figures" / "figureS1.png").exists()
    assert "| seeds | 3, 4 |" in read_md(tmp_path, "figureS1")


def test_parallel_workers_give_the_same_numbers(tmp_path):
    one = figureS1.main(toy_argv(tmp_path / "a", steps=2, eval_every=2) + ["--seeds", "3", "4"])
    argv = toy_argv(tmp_path / "b", steps=2, eval_every=2) + ["--seeds", "3", "4"]
    argv[argv.index("--workers") + 1] = "2"
    pd.testing.assert_frame_equal(one, figureS1.main(argv))


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
    res = paired_run(cfg, ests, [1, 2, 3], 4, gradients=True, log=lambda *_: None, progress=False, trainer=driven)
    assert len(res.cells) == 3 * 2 and len(res.steps) == 3 and driven.step_count == 3
    for (n, a), (_, b) in zip(plain.model.state_dict().items(), driven.model.state_dict().items()):
        assert torch.equal(a, b), n
    with pytest.raises(ValueError, match="fresh"):
        paired_run(cfg, ests, [1], 4, log=lambda *_: None, progress=False, trainer=driven)


def test_paired_estimators_match_their_own_computation(tmp_path):
    # Rows are paired: two labels for the same estimator and options must give identical numbers.
    cfg = get_preset("small", **TOY, steps=2, device="cpu", cache_dir=str(tmp_path))
    res = paired_run(cfg, {"a": ("grpo", {}), "b": ("grpo", {})}, [1, 2], 4, gradients=True, log=lambda *_: None,
                     progress=False)
    df = pd.DataFrame(res.cells).set_index(["step", "estimator"])
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


def test_per_prompt_decomposition_reproduces_the_measured_mse(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "score", lambda self, c, g: np.array([len(x) % 2 for x in c], dtype=float))
    # At the measured B, bias^2 + (m2 - bias^2)/B is the directly measured noise-corrected MSE, exactly.
    cfg = get_preset("small", **{**TOY, "prompts_per_step": 3}, steps=2, device="cpu", cache_dir=str(tmp_path))
    res = paired_run(cfg, {"kae": ("kae", {}), "grpo": ("grpo", {})}, [1, 2], 4, gradients=True,
                     log=lambda *_: None, progress=False)
    from reproduce.measure import mse_at

    for row in res.cells:
        assert mse_at(pd.Series(row), 3)[0] == pytest.approx(row["grad_mse"], rel=1e-9, abs=1e-15)
        best, scale = mse_at(pd.Series(row), 3, None)
        assert best <= row["grad_mse"] + 1e-15 and np.isfinite(scale)


@pytest.mark.parametrize("mode", ["seq-mean-token-mean", "seq-mean-token-sum-norm", "token-mean"])
def test_gradients_from_per_response_scores_equal_the_loss_gradient(tmp_path, mode):
    # Table 2 forms every estimator's gradient from per-response scores; it must equal backprop of the loss.
    tr = Trainer(get_preset("small", **TOY, device="cpu", cache_dir=str(tmp_path)), log=lambda *_: None)
    rollout = tr.sample(np.arange(2), 2)
    adv = np.array([0.5, -1.0, 2.0, -0.25])
    keep = last_block_filter(tr.model)
    scores = response_scores(tr, rollout, keep)
    lengths = rollout.mask.sum(1).numpy().astype(float)
    w = aggregation_weights(mode, lengths, np.full(4, 2.0), tr.cfg.max_new_tokens)
    from_scores = (adv * w) @ scores / 2  # mean over the 2 prompts of their contributions
    direct = tr.policy_gradient(rollout, adv, keep, mode).double().numpy()
    np.testing.assert_allclose(from_scores, direct, rtol=1e-4, atol=1e-6 * np.abs(direct).max())
    assert set(AGGREGATION.values()) <= {"seq-mean-token-mean", "seq-mean-token-sum-norm", "token-mean"}


def test_summarise_reduction_and_standard_error_across_seeds():
    rows = [
        {"seed": seed, "step": s, "estimator": e, "value_mse": v}
        for seed, cells in enumerate([[(1.0, 4.0), (3.0, 4.0)], [(2.0, 4.0), (4.0, 4.0)]])
        for s, (k, g) in enumerate(cells)
        for e, v in (("kae", k), ("grpo", g))
    ]
    out = summarise(rows, "value_mse", reference=("grpo",)).set_index("estimator")
    assert out.loc["kae", "value_mse"] == 2.5 and out.loc["kae", "reduction_vs_grpo"] == pytest.approx(0.375)
    assert out.loc["kae", "se_seeds"] == pytest.approx(np.std([2.0, 3.0], ddof=1) / np.sqrt(2))  # per-seed means


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


def test_accuracy_verdicts_come_from_per_seed_differences():
    from reproduce.figure4 import change_sentence, gain_sentence

    def data(kae, grpo):
        rows = []
        for seed, (a, b) in enumerate(zip(kae, grpo)):
            rows += [{"estimator": "KAE", "seed": seed, "step": 0, "mean_at_k": 0.5},
                     {"estimator": "KAE", "seed": seed, "step": 10, "mean_at_k": a},
                     {"estimator": "GRPO", "seed": seed, "step": 0, "mean_at_k": 0.5},
                     {"estimator": "GRPO", "seed": seed, "step": 10, "mean_at_k": b}]
        return pd.DataFrame(rows)

    assert gain_sentence(data([0.70, 0.71, 0.69], [0.50, 0.52, 0.49]), "KAE", "GRPO", "KAE leads").endswith(
        "holds (paper: KAE leads).")
    assert "undecided" in gain_sentence(data([0.60, 0.50, 0.55], [0.52, 0.58, 0.54]), "KAE", "GRPO", "x")
    assert "does not hold" in gain_sentence(data([0.40, 0.41, 0.39], [0.60, 0.61, 0.62]), "KAE", "GRPO", "x")
    assert "GRPO degrades" in change_sentence(data([0.6] * 3, [0.40, 0.41, 0.39]), "GRPO")
    assert "KAE improves" in change_sentence(data([0.70, 0.71, 0.69], [0.5] * 3), "KAE")


def test_preset_sweep_end_to_end(tmp_path, monkeypatch):
    from reproduce import sweep

    monkeypatch.setattr(sweep, "WARM_STARTS", {"mixed": {"sft_steps": 10, "sft_direct_rate": 0.5}})
    monkeypatch.setattr(sweep, "LRS", (1e-3,))
    table = sweep.main(toy_argv(tmp_path, steps=2) + ["--seeds", "0", "1"])
    assert list(table["warm start"]) == ["mixed"] and 0 <= table.loc[0, "direct share"] <= 1
    text = read_md(tmp_path, "preset_sweep")
    assert "lr 0.001: GRPO" in text and "null" in text


@pytest.mark.parametrize("overrides", [{"eval_k": 0}, {"do_sample": False}])
def test_accuracy_runs_refuse_a_metric_they_cannot_measure_before_training(tmp_path, overrides, monkeypatch):
    from reproduce import measure

    monkeypatch.setattr("reproduce.models.warm_start", lambda *a, **k: pytest.fail("trained before refusing"))
    cfg = get_preset("small", cache_dir=str(tmp_path), **overrides)
    with pytest.raises(ValueError, match="eval_k > 0 and do_sample=True"):
        measure.accuracy_runs(cfg, {"GRPO": ("grpo", {})}, [0], workers=1, progress=False)


@pytest.mark.parametrize("module", ["reproduce.presets", "reproduce.trainer", "reproduce.tasks",
                                    "reproduce.table3", "reproduce.verdict", "reproduce.measure"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0


def test_crossover_of_an_estimator_that_starts_above_and_one_that_never_crosses():
    from reproduce.table2 import MOMENTS, crossover_sentence

    rng = np.random.default_rng(0)

    def seeds(pp_cc, x_cc):  # MSE(B) = x_cc - 2 x_ct + x_tt + (pp_cc - x_cc + ...) / B, per seed
        rows = []
        for s in range(5):
            m = dict(pp_cc=pp_cc, pp_ct=1.0, pp_tt=1.0, x_cc=x_cc + 0.01 * rng.normal(), x_ct=0.5, x_tt=0.5)
            rows.append({"seed": s, **m})
        return pd.DataFrame(rows)

    # "ours" has more variance (pp) but less bias (x): above the reference at small B, below at large B.
    table = pd.concat([seeds(3.0, 0.55).assign(estimator="ours"), seeds(2.0, 0.8).assign(estimator="ref")])
    text = crossover_sentence(table[["estimator", "seed", *MOMENTS]], "ours", "ref", rescaled=False, draws=200)
    assert "is above ref's for B < " in text and "nan" not in text
    lo, hi = (float(v) for v in text.split("crossing ")[1].split(";")[0].split(" to "))
    assert 1 < lo <= hi < np.inf
    never = pd.concat([seeds(2.0, 0.5).assign(estimator="ours"), seeds(3.0, 0.8).assign(estimator="ref")])
    assert "at every batch size" in crossover_sentence(never[["estimator", "seed", *MOMENTS]], "ours", "ref", False)
