"""RL trainer, presets, warm start: tiny configs, seconds on 2 CPU cores."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("kernelvalue.advantage", reason="the advantage-estimator registry is not installed")
pytest.importorskip("reproduce.rewards", reason="reproduce.rewards is not installed")

from reproduce.models import build_tiny_lm, supervised_finetune, warm_start
from reproduce.presets import get_preset
from reproduce.tasks import ArithmeticTask
from reproduce.tokenizer import char_tokenizer
from reproduce.trainer import (
    TIMING_FIELDS,
    Trainer,
    aggregate_loss,
    config_from_args,
    parse_args,
    ppo_clip_loss,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

torch.set_num_threads(1)


def micro(tmp_path, **kw):
    """A micro small-preset config: 1-layer LM, 30 SFT steps, 4 prompts x G=2 per step."""
    base = {
        "n_layer": 1,
        "d_model": 32,
        "n_head": 2,
        "sft_steps": 30,
        "sft_batch_size": 16,
        "n_train_prompts": 16,
        "n_test": 8,
        "prompts_per_step": 4,
        "G": 2,
        "J": 2,
        "max_new_tokens": 24,
        "steps": 6,
        "eval_every": 3,
        "lr": 1e-3,
        "micro_batch_size": 5,
        "eval_batch_size": 5,
        "cache_dir": str(tmp_path / "cache"),
        "device": "cpu",
    }
    return get_preset("small", **{**base, **kw})


# ----------------------------------------------------------------------------- loss
LOSS = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 0.0, 0.0], [7.0, 0.0, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token-mean", (1 + 2 + 3 + 4 + 5 + 6 + 7) / 7),
        ("seq-mean-token-mean", (10 / 4 + 11 / 2 + 7 / 1) / 3),
        ("seq-mean-token-sum-norm", (10 + 11 + 7) / (3 * 8)),  # budget 8 = max_new_tokens
    ],
)
def test_loss_aggregation_matches_hand_computation(mode, expected):
    garbage = LOSS + 100.0 * (1 - MASK)  # masked-out entries must not count
    assert float(aggregate_loss(garbage, MASK, mode, budget=8)) == pytest.approx(expected, rel=1e-6)
    # Micro-batches with the whole batch's denominators sum to the full loss.
    denoms = {"n_seqs": 3, "n_tokens": MASK.sum(), "budget": 8}
    parts = aggregate_loss(garbage[:2], MASK[:2], mode, **denoms) + aggregate_loss(
        garbage[2:], MASK[2:], mode, **denoms
    )
    assert float(parts) == pytest.approx(expected, rel=1e-6)


def test_loss_aggregation_rejects_unknown_mode():
    with pytest.raises(ValueError, match="loss_agg_mode"):
        aggregate_loss(LOSS, MASK, "sum")


def test_ppo_clip_matches_hand_computation():
    old = torch.zeros(2, 2)
    logp = torch.log(torch.tensor([[1.5, 0.9], [0.5, 1.1]]))  # ratios
    adv = torch.tensor([1.0, -2.0])
    mask = torch.ones(2, 2)
    loss, stats = ppo_clip_loss(logp, old, adv, mask, 0.2, "token-mean")
    # A>0: -min(r, clip(r)) -> -1.2 (clipped), -0.9; A<0: -min(-2r, -2clip(r)) -> 2*0.8... = max(2r, 2clip(r))
    expected = (-1.2 - 0.9 + 2 * 0.8 + 2 * 1.1) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(stats["clip_frac"]) == pytest.approx(0.5)  # 1.5 and 0.5 lie outside [0.8, 1.2]


def test_kl_penalty_is_zero_at_reference_and_positive_elsewhere():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    mask = torch.ones(1, 2)
    base, _ = ppo_clip_loss(logp, logp, torch.zeros(1), mask, 0.2, "token-mean")
    same, s0 = ppo_clip_loss(logp, logp, torch.zeros(1), mask, 0.2, "token-mean", ref_logp=logp, kl_coef=1.0)
    _diff, s1 = ppo_clip_loss(logp, logp, torch.zeros(1), mask, 0.2, "token-mean", ref_logp=logp - 0.3, kl_coef=1.0)
    assert float(s0["kl"]) == 0 and float(same) == float(base)
    assert float(s1["kl"]) == pytest.approx(math.exp(-0.3) + 0.3 - 1, rel=1e-6)


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize(
    "field, value, match",
    [
        ("G", 0, "G must be"),
        ("lr", 0.0, "lr must be"),
        ("lr", -1e-3, "lr must be"),
        ("estimator", "no-such-estimator", "estimator="),
        ("loss_agg_mode", "sum", "loss_agg_mode"),
        ("temperature", 0.0, "temperature"),
        ("estimator_kwargs", {"bandwidth": -0.1}, "bandwidth"),
        ("estimator_kwargs", {"bandwidth": 0.0}, "bandwidth"),
        ("device", "tpu", "device"),
        ("minibatches", 3, "minibatches"),
        ("steps", -1, "steps"),
    ],
)
def test_bad_config_values_are_rejected(field, value, match):
    with pytest.raises(ValueError, match=match):
        get_preset("small", **{field: value})


def test_greedy_allows_zero_temperature_and_unknown_fields_fail():
    assert get_preset("small", do_sample=False, temperature=0.0).temperature == 0.0
    with pytest.raises(ValueError, match="unknown config field"):
        get_preset("small", learning_rate=1e-3)
    with pytest.raises(ValueError, match="preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="model"):
        get_preset("paper", model=None)


def test_warm_start_key_tracks_only_model_fields():
    a = get_preset("small")
    assert a.warm_start_key() == get_preset("small", estimator="grpo", G=8).warm_start_key()
    assert a.warm_start_key() != get_preset("small", sft_steps=a.sft_steps + 1).warm_start_key()


def test_cli_arguments_become_a_config():
    cfg = config_from_args(parse_args(["--estimator", "kae", "--G", "8", "--steps", "5", "--bandwidth", "0.2"]))
    assert (cfg.estimator, cfg.G, cfg.steps, cfg.estimator_kwargs["bandwidth"]) == ("kae", 8, 5, 0.2)


# ----------------------------------------------------------------------------- warm start
def test_sft_reduces_loss():
    tok = char_tokenizer()
    model = build_tiny_lm(tok, n_layer=1, d_model=32, n_head=2)
    losses = supervised_finetune(model, tok, ArithmeticTask(0), steps=40, batch_size=16, lr=3e-3)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_warm_start_is_cached(tmp_path):
    cfg = micro(tmp_path)
    m1, _ = warm_start(cfg, log=lambda *_: None)
    meta = json.loads((Path(cfg.cache_dir) / f"warmstart-{cfg.warm_start_key()}" / "meta.json").read_text())
    assert meta["key"] == cfg.warm_start_key() and meta["fields"]["sft_steps"] == 30
    m2, tok = warm_start(cfg, log=lambda *_: pytest.fail("second warm start must come from cache"))
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n
    assert tok.eos_token_id is not None


# ----------------------------------------------------------------------------- trainer
def test_one_rl_step_changes_params_and_writes_metrics(tmp_path):
    tr = Trainer(micro(tmp_path), out_dir=tmp_path / "run", log=lambda *_: None)
    before = [p.detach().clone() for p in tr.model.parameters()]
    m = tr.step()
    assert math.isfinite(m["loss"]) and 0 <= m["reward_mean"] <= 1
    changed = [not torch.equal(a, p) for a, p in zip(before, tr.model.parameters())]
    # With all-equal rewards in every group the advantages are all zero and nothing moves; then skip.
    if m["adv_std"] > 0:
        assert any(changed)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,reward_mean") and len(rows) == 2
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["step"] == 1


def test_rl_update_moves_params_with_nonzero_advantages(tmp_path):
    tr = Trainer(micro(tmp_path), log=lambda *_: None)
    rollout = tr.sample(np.arange(4), 2)
    before = [p.detach().clone() for p in tr.model.parameters()]
    stats = tr.update(rollout, np.array([1.0, -1.0] * 4))
    assert math.isfinite(stats["loss"]) and stats["grad_norm"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, tr.model.parameters()))


def test_policy_gradient_is_linear_in_advantages_and_restricted(tmp_path):
    tr = Trainer(micro(tmp_path), log=lambda *_: None)
    rollout = tr.sample(np.arange(4), 2)
    adv = np.linspace(-1, 1, 8)
    only_mlp = lambda name: "layers.0.mlp" in name
    g1 = tr.policy_gradient(rollout, adv, only_mlp)
    g2 = tr.policy_gradient(rollout, 2 * adv, only_mlp)
    n_mlp = sum(p.numel() for n, p in tr.model.named_parameters() if only_mlp(n))
    assert g1.shape == (n_mlp,) and g1.abs().sum() > 0
    torch.testing.assert_close(g2, 2 * g1, rtol=1e-5, atol=1e-7)
    # Several rows in one call (one forward pass, micro-batches of 5 over 8 rows) equal separate calls.
    both = tr.policy_gradients(rollout, np.stack([adv, np.ones(8)]), only_mlp)
    torch.testing.assert_close(both[0], g1, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(both[1], tr.policy_gradient(rollout, np.ones(8), only_mlp), rtol=1e-5, atol=1e-8)
    assert tr.policy_gradient(rollout, np.zeros(8)).abs().max() == 0
    assert all(p.grad is None and p.requires_grad for p in tr.model.parameters())  # nothing left behind
    with pytest.raises(ValueError, match="param_filter"):
        tr.policy_gradient(rollout, adv, lambda name: False)
    with pytest.raises(ValueError, match="shape"):
        tr.policy_gradients(rollout, np.zeros((2, 7)))


def test_sequence_level_policy_gradient_is_reinforce(tmp_path):
    # seq-mean-token-sum-norm at ratio 1 is REINFORCE: (1 / (n * budget)) sum_i A_i grad log pi(y_i | x_i).
    from reproduce.models import completion_logprobs

    tr = Trainer(micro(tmp_path), log=lambda *_: None)
    rollout = tr.sample(np.arange(4), 2)
    adv = np.linspace(-1, 1, 8)
    head = [p for n, p in tr.model.named_parameters() if "layers.0.mlp" in n]
    logp = completion_logprobs(tr.model, rollout.prompt, rollout.prompt_mask, rollout.tokens, rollout.mask)
    seq_logp = (logp * rollout.mask).sum(1)
    objective = (torch.as_tensor(adv, dtype=torch.float32) * seq_logp).sum() / (8 * tr.cfg.max_new_tokens)
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(objective, head)])
    got = tr.policy_gradient(rollout, adv, lambda n: "layers.0.mlp" in n, mode="seq-mean-token-sum-norm")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)


def test_evaluate_is_deterministic_and_leaves_the_training_rngs_alone(tmp_path):
    tr = Trainer(micro(tmp_path), log=lambda *_: None)
    state = tr.sample_gen.get_state()
    a = tr.evaluate("test")
    assert a == tr.evaluate("test") and set(a) == {"greedy", "mean_at_k", "pass_at_k", "k"}
    assert 0 <= a["greedy"] <= 1 and 0 <= a["mean_at_k"] <= a["pass_at_k"] <= 1 and a["k"] == tr.cfg.eval_k
    assert torch.equal(state, tr.sample_gen.get_state())  # evaluation draws from its own generator
    assert tr.evaluate("test", k=0)["mean_at_k"] is None


def test_reward_shuffle_is_a_null_control(tmp_path):
    # The estimator sees the batch's rewards permuted (same multiset, no link to the responses);
    # the logged reward is the true one.
    cfg = dataclasses.replace(micro(tmp_path), reward_shuffle=True, estimator="rloo")
    tr = Trainer(cfg, log=lambda *_: None)
    ro = tr.sample(np.arange(2), 8)
    ro.rewards[:] = np.arange(16) % 2
    seen = tr._control(ro)
    assert sorted(seen.rewards) == sorted(ro.rewards) and not np.array_equal(seen.rewards, ro.rewards)
    assert np.array_equal(ro.rewards, np.arange(16) % 2)


def test_resume_is_bit_identical(tmp_path):
    kw = {"ppo_epochs": 2, "minibatches": 2, "kl_coef": 0.05}  # exercise old log-probs, shuffles and the reference
    straight = Trainer(micro(tmp_path, **kw), log=lambda *_: None)
    straight.train(6, progress=False)

    first = Trainer(micro(tmp_path, **kw), out_dir=tmp_path / "run", log=lambda *_: None)
    first.train(3, progress=False)
    ckpt = first.save_checkpoint(tmp_path / "run" / "checkpoint.pt")
    first.step()  # a step past the checkpoint, lost in the "crash": the resumed run must drop its metrics row
    del first
    resumed = Trainer.from_checkpoint(ckpt, out_dir=tmp_path / "run", log=lambda *_: None)
    assert resumed.step_count == 3
    resumed.train(6, progress=False)

    for (n, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), n
    strip = lambda h: [{k: v for k, v in m.items() if k not in TIMING_FIELDS} for m in h]
    assert strip(straight.history) == strip(resumed.history)
    assert any(m["test_mean_at_k"] is not None for m in straight.history)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 7


# ----------------------------------------------------------------------------- paper preset
def _tiny_qwen_dir(tmp_path):
    tok = char_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    model = build_tiny_lm(tok, n_layer=1, d_model=32, n_head=2, arch="qwen2", max_positions=1024)
    path = tmp_path / "tiny-qwen2"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.skipif(not (SHARED / "data" / "gsm8k").exists(), reason="../shared GSM8K data absent")
def test_paper_preset_runs_one_step_on_real_gsm8k_rows(tmp_path):
    path = _tiny_qwen_dir(tmp_path)
    cfg = get_preset(
        "paper",
        model=str(path),
        n_train_prompts=3,
        n_test=3,
        prompts_per_step=3,
        G=2,
        max_new_tokens=8,
        steps=1,
        eval_every=1,
        micro_batch_size=3,
        device="cpu",
        lr=1e-3,
    )
    tr = Trainer(cfg, log=lambda *_: None)
    assert "<|im_start|>assistant" in tr.prompts["train"].texts[0] and "####" in tr.prompts["train"].texts[0]
    m = tr.step()
    assert math.isfinite(m["loss"]) and m["test_greedy"] is not None
    assert tr.model.config.model_type == "qwen2"


MATH500 = SHARED / "data" / "eval" / "math500" / "test.jsonl"


def math500_train_file(tmp_path, n=6, max_chars=200):
    """The first ``n`` short real MATH500 rows as a stand-in training file (short: the tiny model's context)."""
    rows = [json.loads(x) for x in MATH500.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if len(r["problem"]) <= max_chars][:n]
    path = tmp_path / "math-train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


@pytest.mark.skipif(not MATH500.exists(), reason="../shared MATH500 data absent")
def test_math_dataset_trains_with_boxed_reward_on_real_math500_rows(tmp_path):
    data, rows = math500_train_file(tmp_path)
    cfg = get_preset(
        "paper", dataset="math", model=str(_tiny_qwen_dir(tmp_path)), data_path=str(data), n_train_prompts=4,
        n_test=2, prompts_per_step=2, G=2, J=2, max_new_tokens=8, steps=2, eval_every=2, micro_batch_size=4,
        device="cpu", lr=1e-3,
    )
    tr = Trainer(cfg, log=lambda *_: None)
    assert tr.reward_style == "boxed" and len(tr.prompts["train"].ids) == 4 and len(tr.prompts["test"].ids) == 2
    text = tr.prompts["train"].texts[0]
    assert "<|im_start|>assistant" in text and "\\boxed{}" in text and text.count("Please reason step by step") == 1
    gold = tr.prompts["train"].answers[0]
    assert gold in {r["answer"] for r in rows}
    # The reward follows the dataset: a boxed answer scores, a GSM8K-style one does not.
    assert list(tr.score([f"so \\boxed{{{gold}}}", f"#### {gold}"], [gold, gold])) == [1.0, 0.0]
    before = [p.detach().clone() for p in tr.model.parameters()]
    history = tr.train(progress=False)
    assert [m["step"] for m in history] == [1, 2] and all(math.isfinite(m["loss"]) for m in history)
    assert 0 <= history[-1]["test_greedy"] <= 1
    # A zero advantage everywhere (all-0 rewards of a random model) would leave the weights; say which case.
    moved = any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    assert moved == any(m["adv_std"] > 0 for m in history)


def test_math_dataset_config_errors(tmp_path):
    with pytest.raises(ValueError, match="data_path"):
        get_preset("paper", dataset="math", model="m")
    with pytest.raises(ValueError, match="model"):
        get_preset("small", dataset="math", data_path="x.jsonl")
    with pytest.raises(ValueError, match="answer_key"):
        get_preset("paper", dataset="math", model="m", data_path="x.jsonl", answer_key="")
    with pytest.raises(ValueError, match="dataset"):
        get_preset("paper", dataset="dapo")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "gold": "1"}) + "\n")
    cfg = get_preset("paper", dataset="math", model=str(_tiny_qwen_dir(tmp_path)), data_path=str(bad), n_test=1,
                     device="cpu")
    with pytest.raises(KeyError, match="answer_key"):
        Trainer(cfg, log=lambda *_: None)


def test_missing_weights_fail_early_with_the_path(tmp_path):
    cfg = get_preset("paper", model=str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(FileNotFoundError, match="no-such-model.*--model"):
        Trainer(cfg, log=lambda *_: None)


def test_cached_tokenizer_keeps_character_vocabulary(tmp_path):
    # Next to a Qwen2 config.json, AutoTokenizer would swap in Qwen2's byte-level pre-tokenizer.
    _, tok = warm_start(micro(tmp_path), log=lambda *_: None)
    _, tok = warm_start(micro(tmp_path), log=lambda *_: None)
    text = "What is 3 - 1?\n"
    assert tok(text)["input_ids"] == char_tokenizer()(text)["input_ids"]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_training_logprobs_match_sampling_logprobs(tmp_path, temperature):
    # Catches any misalignment of positions/padding between generation and the training forward pass.
    from reproduce.models import completion_logprobs, generate

    tr = Trainer(micro(tmp_path, temperature=temperature), log=lambda *_: None)
    r = tr.sample(np.arange(4), 3)
    gen = generate(
        tr.model,
        r.prompt,
        r.prompt_mask,
        24,
        tr.stop_ids,
        tr.tokenizer.pad_token_id,
        torch.Generator().manual_seed(1),
        temperature=temperature,
    )
    with torch.no_grad():
        lp = completion_logprobs(tr.model, r.prompt, r.prompt_mask, gen.tokens, gen.mask, temperature)
    torch.testing.assert_close(lp * gen.mask, gen.logprobs, rtol=1e-4, atol=1e-4)
    assert gen.mask[:, 0].all() and (gen.logprobs[gen.mask] < 0).all()


def test_cli_runs_resumes_and_writes_files(tmp_path, capsys):
    from reproduce.trainer import main

    micro_flags = [
        "n_layer=1",
        "d_model=32",
        "n_head=2",
        "sft_steps=10",
        "sft_batch_size=8",
        "n_train_prompts=8",
        "n_test=4",
        "prompts_per_step=2",
        "max_new_tokens=12",
        "eval_batch_size=4",
    ]
    common = ["--device", "cpu", "--threads", "1", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "r")]
    main(["--G", "2", "--steps", "2", "--eval-every", "1", *common, *[a for f in micro_flags for a in ("--set", f)]])
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["steps"] == 2 and 0 <= first["final_test"]["greedy"] <= 1
    main(["--resume", str(tmp_path / "r" / "checkpoint.pt"), "--steps", "3", *common])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 3
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        config_from_args(parse_args(["--set", "n_layer"]))


@pytest.mark.slow
def test_small_preset_warm_start_lands_in_the_target_accuracy_band(tmp_path):
    # The default SFT length was chosen so RL starts from a partly competent policy (measured ~45% greedy).
    torch.set_num_threads(2)
    tr = Trainer(get_preset("small", cache_dir=str(tmp_path), device="cpu"), log=lambda *_: None)
    assert 0.2 <= tr.evaluate("test") <= 0.65
    assert 0.1 <= tr.sample(np.arange(256), 1).rewards.mean() <= 0.6  # sampled (temperature 1) accuracy
