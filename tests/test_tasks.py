"""Synthetic arithmetic task and the character tokenizer."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reproduce.tasks import ArithmeticTask, load_gsm8k, split_of
from reproduce.tokenizer import CHARS, SPECIALS, char_tokenizer


def test_task_is_deterministic_and_streams_differ():
    a = ArithmeticTask(seed=3).sample(50, "train")
    assert a == ArithmeticTask(seed=3).sample(50, "train")
    assert ArithmeticTask(seed=3).sample(80, "train")[:50] == a  # longer draws extend shorter ones
    assert a != ArithmeticTask(seed=4).sample(50, "train")
    assert a != ArithmeticTask(seed=3).sample(50, "test")


def test_solutions_are_correct_step_by_step():
    for row in ArithmeticTask(seed=0).sample(300, "sft"):
        expr = _expr(row)
        assert int(row["answer"]) == eval(expr)  # left-to-right +/- equals Python's evaluation
        *steps, last = row["solution"].split("\n")
        assert last == f"#### {row['answer']}"
        for line in steps:
            lhs, rhs = line.split("=")
            assert eval(lhs) == int(rhs)


def _expr(row):
    return re.fullmatch(r"What is (.+)\?\n", row["prompt"]).group(1)


@pytest.mark.parametrize("terms", [(2, 3), (2, 5), (4, 5)])
def test_streams_are_disjoint_by_construction(terms):
    # Held-out problems never appear in the SFT corpus or an RL pool, whatever the seeds and term ranges.
    lo, hi = terms
    sft = {_expr(r) for r in ArithmeticTask(0, 2, 5, 9).sample(4000, "sft")}
    pool = [_expr(r) for r in ArithmeticTask(1, lo, hi, 9).sample(150, "train")]
    test = [_expr(r) for r in ArithmeticTask(2, lo, hi, 9).sample(150, "test")]
    assert not sft & set(test) and not sft & set(pool) and not set(pool) & set(test)
    assert len(set(test)) == len(test) and len(set(pool)) == len(pool)  # distinct prompts
    assert {split_of(e) for e in test} == {"test"} and {split_of(e) for e in pool} == {"train"}


def test_too_small_a_problem_space_is_refused():
    with pytest.raises(ValueError, match="distinct"):
        ArithmeticTask(0, 2, 2, 3).sample(100, "test")  # 2 x 3 x 3 = 18 problems in all


def test_direct_style_only_in_the_sft_corpus():
    task = ArithmeticTask(seed=0, direct_rate=0.5)
    sft = task.sample(400, "sft")
    direct = [r for r in sft if r["solution"].startswith("#### ")]
    assert 0.4 < len(direct) / len(sft) < 0.6
    assert all(r["solution"] == f"#### {r['answer']}" for r in direct)  # answers stay correct
    assert not any(r["solution"].startswith("#### ") for r in task.sample(200, "test") + task.sample(200, "train"))
    with pytest.raises(ValueError, match="direct_rate"):
        ArithmeticTask(direct_rate=1.0)


def test_answers_are_extractable_by_the_reward():
    rewards = pytest.importorskip("reproduce.rewards")
    for row in ArithmeticTask(seed=1).sample(100, "test"):
        assert rewards.reward(row["solution"], row["answer"], style="gsm8k") == 1
        wrong = str(int(row["answer"]) + 1)
        assert (
            rewards.reward(row["solution"].rsplit("#### ", 1)[0] + "#### " + wrong, row["answer"], style="gsm8k") == 0
        )


def test_task_rejects_bad_parameters():
    with pytest.raises(ValueError, match="min_terms"):
        ArithmeticTask(min_terms=1)
    with pytest.raises(ValueError, match="max_terms"):
        ArithmeticTask(min_terms=3, max_terms=2)
    with pytest.raises(ValueError, match="stream"):
        ArithmeticTask().sample(3, "validation")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=CHARS, max_size=60))
def test_tokenizer_round_trip(text):
    assume(not any(special in text for special in SPECIALS.values()))  # those are matched as special tokens
    tok = char_tokenizer()
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1  # one token per character
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_saves_and_reloads(tmp_path):
    from transformers import AutoTokenizer

    tok = char_tokenizer()
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "What is 3-12?\n3-12=-9\n#### -9"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert (again.pad_token_id, again.eos_token_id, again.padding_side) == (tok.pad_token_id, tok.eos_token_id, "left")


SHARED_GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"


@pytest.mark.skipif(not SHARED_GSM8K.exists(), reason="../shared GSM8K data absent")
def test_gsm8k_rows_load_with_clean_gold_answers():
    rows = load_gsm8k("test", path=str(SHARED_GSM8K), limit=5)
    assert len(rows) == 5 and rows[0]["answer"] == "18"  # Janet's ducks, the first test row
    assert rows[0]["prompt"].startswith("Janet") and rows[0]["solution"].endswith("#### 18")
    train = load_gsm8k("train", path=str(SHARED_GSM8K / "train.jsonl"), limit=200)
    assert all(re.fullmatch(r"-?[\d.]+", r["answer"]) for r in train)  # "1,000" becomes "1000"


def test_gsm8k_loader_strips_separators_and_rejects_bad_input(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "How many?", "answer": "5*200=1000\n#### 1,000"}) + "\n\n")
    assert load_gsm8k("train", path=str(tmp_path)) == [
        {"prompt": "How many?", "solution": "5*200=1000\n#### 1,000", "answer": "1000"}
    ]
    with pytest.raises(ValueError, match="split"):
        load_gsm8k("validation", path=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--data-path"):
        load_gsm8k("test", path=str(tmp_path))  # directory without test.jsonl
    path.write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(ValueError, match="####"):
        load_gsm8k("train", path=str(path))


# ----------------------------------------------------------------------------- boxed-answer sets (dataset="math")
from reproduce.tasks import MATH_INSTRUCTION, load_math, math_prompt  # noqa: E402

SHARED_MATH500 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval" / "math500" / "test.jsonl"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_math_seeded_holdout_is_disjoint_deterministic_and_extracts_boxed(tmp_path):
    rows = [{"problem": f"p{i}", "solution": f"so x = {i}, hence \\boxed{{{i}}}."} for i in range(20)]
    path = _write_jsonl(tmp_path / "math.jsonl", rows)
    a = load_math(str(path), n_test=5, seed=3)
    assert len(a["test"]) == 5 and len(a["train"]) == 15
    assert {r["prompt"] for r in a["test"]}.isdisjoint({r["prompt"] for r in a["train"]})
    assert a == load_math(str(path), n_test=5, seed=3) and a["test"] != load_math(str(path), n_test=5, seed=4)["test"]
    assert all(r["answer"] == r["prompt"][1:] for r in a["train"] + a["test"])  # last \boxed{} of the solution
    assert len(load_math(str(path), n_train=4, n_test=5)["train"]) == 4


def test_load_math_directory_uses_its_test_file_and_custom_keys(tmp_path):
    # DAPO-17k style: chat-message prompt and a nested ground truth.
    row = lambda i: {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"}],
                     "reward_model": {"ground_truth": str(i)}}
    _write_jsonl(tmp_path / "train.jsonl", [row(i) for i in range(4)])
    _write_jsonl(tmp_path / "test.jsonl", [row(i) for i in range(10, 13)])
    sets = load_math(str(tmp_path), n_test=2, answer_key="reward_model.ground_truth")
    assert [r["prompt"] for r in sets["train"]] == ["q0", "q1", "q2", "q3"]
    assert [(r["prompt"], r["answer"]) for r in sets["test"]] == [("q10", "10"), ("q11", "11")]
    # Default keys also find it (prompt, reward_model.ground_truth); open-r1's processed copy uses prompt/solution.
    _write_jsonl(tmp_path / "dapo.jsonl", [{"prompt": f"q{i}", "solution": str(i)} for i in range(6)])
    dapo = load_math(str(tmp_path / "dapo.jsonl"), n_test=1)
    assert len(dapo["train"]) == 5 and all(r["answer"] == r["prompt"][1:] for r in dapo["train"] + dapo["test"])
    assert load_math(str(tmp_path / "train.jsonl"), n_test=1)["train"][0]["answer"] in {"0", "1", "2", "3"}
    # DAPO-17k's own "Answer: $Answer" wrapper is removed (it would contradict the \\boxed{} instruction).
    wrapped = ("Solve the following math problem step by step. The last line of your response should be of the form "
               "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\nFind $x$ if $2x=4$."
               "\n\nRemember to put your answer on its own line after \"Answer:\".")
    _write_jsonl(tmp_path / "wrapped.jsonl", [{"prompt": wrapped, "solution": "2"}] * 2)
    assert load_math(str(tmp_path / "wrapped.jsonl"), n_test=1)["train"][0]["prompt"] == "Find $x$ if $2x=4$."


def test_load_math_rejects_bad_sources_and_keys(tmp_path):
    path = _write_jsonl(tmp_path / "m.jsonl", [{"problem": "p", "answer": "1"}] * 3)
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        load_math(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="too few"):
        load_math(str(path), n_test=3)
    with pytest.raises(KeyError, match="answer_key"):
        load_math(str(path), n_test=1, answer_key="ground_truth")
    with pytest.raises(KeyError, match="problem_key"):
        load_math(str(_write_jsonl(tmp_path / "q.jsonl", [{"text": "p", "answer": "1"}] * 3)), n_test=1)
    with pytest.raises(ValueError, match="n_test"):
        load_math(str(path), n_test=0)


def test_math_prompt_appends_the_qwen_math_instruction_once():
    assert math_prompt(" What is 2+2? ") == "What is 2+2?\n" + MATH_INSTRUCTION
    assert math_prompt(math_prompt("x")) == math_prompt("x")


@pytest.mark.skipif(not SHARED_MATH500.exists(), reason="../shared MATH500 data absent")
def test_load_math_reads_real_math500_rows():
    sets = load_math(str(SHARED_MATH500), n_test=100, seed=0)
    assert len(sets["train"]) + len(sets["test"]) == 500
    first = json.loads(SHARED_MATH500.read_text().splitlines()[0])
    row = next(r for r in sets["train"] + sets["test"] if r["prompt"] == first["problem"])
    assert row["answer"] == first["answer"]
