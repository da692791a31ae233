"""Synthetic arithmetic task and the character tokenizer."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reproduce.tasks import ArithmeticTask, load_gsm8k
from reproduce.tokenizer import CHARS, SPECIALS, char_tokenizer


def test_task_is_deterministic_and_streams_differ():
    a = ArithmeticTask(seed=3).sample(50, "train")
    assert a == ArithmeticTask(seed=3).sample(50, "train")
    assert ArithmeticTask(seed=3).sample(80, "train")[:50] == a  # longer draws extend shorter ones
    assert a != ArithmeticTask(seed=4).sample(50, "train")
    assert a != ArithmeticTask(seed=3).sample(50, "test")


def test_solutions_are_correct_step_by_step():
    for row in ArithmeticTask(seed=0).sample(300, "sft"):
        expr = re.fullmatch(r"What is (.+)\?\n", row["prompt"]).group(1)
        assert int(row["answer"]) == eval(expr)  # left-to-right +/- equals Python's evaluation
        *steps, last = row["solution"].split("\n")
        assert last == f"#### {row['answer']}"
        for line in steps:
            lhs, rhs = line.split("=")
            assert eval(lhs) == int(rhs)


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
