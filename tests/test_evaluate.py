"""Benchmark evaluator: pass@k estimator, data loading, grading/aggregation, tiny end-to-end runs and the CLI."""

import itertools
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("math_verify")
torch = pytest.importorskip("torch")

from reproduce import evaluate as E  # noqa: E402
from reproduce.evaluate import (  # noqa: E402
    BENCHMARKS,
    Benchmark,
    default_pass_ks,
    evaluate,
    format_prompts,
    load_benchmark,
    pass_at_k,
    resolve_data_dir,
)
from reproduce.models import build_tiny_lm  # noqa: E402
from reproduce.rewards import Grade  # noqa: E402
from reproduce.tokenizer import char_tokenizer  # noqa: E402

DATA = resolve_data_dir()
needs_data = pytest.mark.skipif(
    not (DATA / "eval").is_dir(), reason=f"benchmark data {DATA / 'eval'} absent (set KERNELVALUE_DATA)"
)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    tok = char_tokenizer()
    return build_tiny_lm(tok, n_layer=1, d_model=32, n_head=2).eval(), tok


# ----------------------------------------------------------------------------- pass@k
def test_pass_at_k_matches_brute_force_enumeration():
    """Chen et al.'s estimator is the probability that a uniformly drawn k-subset of the n samples holds a
    correct one; enumerate every subset. Tolerance: the log-space product loses ~n ulps, far below 1e-12."""
    for n in range(1, 8):
        for k in range(1, n + 1):
            cs = np.arange(n + 1)
            got = pass_at_k(n, cs, k)
            for c in cs:
                subsets = list(itertools.combinations(range(n), k))
                hit = np.mean([any(i < c for i in s) for s in subsets])  # samples 0..c-1 are the correct ones
                assert got[c] == pytest.approx(hit, abs=1e-12), (n, c, k)


def test_pass_at_k_large_n_no_overflow():
    n, k, c = 200, 100, np.array([0, 1, 50, 100, 101, 200])
    exact = [1 - math.comb(n - ci, k) / math.comb(n, k) for ci in c]
    np.testing.assert_allclose(pass_at_k(n, c, k), exact, rtol=1e-10, atol=1e-15)


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(ValueError, match="k must be"):
        pass_at_k(4, [1], 5)
    with pytest.raises(ValueError, match="c must lie"):
        pass_at_k(4, [5], 1)
    with pytest.raises(ValueError, match="n must be"):
        pass_at_k(0, [0], 1)
    assert default_pass_ks(16) == [1, 2, 4, 8, 16] and default_pass_ks(3) == [1, 2, 3]


# ----------------------------------------------------------------------------- data
@needs_data
def test_load_each_benchmark_and_aliases():
    for name in BENCHMARKS:
        b = load_benchmark(name, limit=3)
        assert len(b) == 3 and all(b.problems) and all(b.answers)
        assert "boxed" in b.problems[0]  # the benchmark prompts carry the \boxed{} instruction
    assert load_benchmark("amc23", limit=1).name == "amc2023"
    assert len(load_benchmark("math500")) == 500


@needs_data
def test_load_from_path_env_and_other_fields(tmp_path, monkeypatch):
    src = DATA / "eval" / "aime24" / "test.jsonl"
    # a directory with test.jsonl, via the environment variable
    (tmp_path / "eval" / "aime24").mkdir(parents=True)
    (tmp_path / "eval" / "aime24" / "test.jsonl").write_text(src.read_text().splitlines()[0] + "\n")
    monkeypatch.setenv("KERNELVALUE_DATA", str(tmp_path))
    assert len(load_benchmark("aime24")) == 1
    # a local file with GSM8K-like fields: question + full solution (gold = last box / #### line)
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"question": "1+1?", "solution": "so \\boxed{\\frac{4}{2}}"}) + "\n")
    b = load_benchmark(str(f))
    assert (b.name, b.problems, b.answers) == ("mine", ["1+1?"], ["\\frac{4}{2}"])
    with pytest.raises(KeyError, match="--answer-key"):
        load_benchmark(str(f), answer_key="final")
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_benchmark("aime25")  # not in tmp_path
    with pytest.raises(FileNotFoundError, match="neither one of"):
        load_benchmark(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="limit"):
        load_benchmark("aime24", limit=0)


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


ROW = json.dumps({"problem": "1+1?", "answer": "2"})


@pytest.mark.parametrize("name, content, message", [
    ("syntax.jsonl", ROW + "\n" + ROW + "\n{\"problem\": \"x\", \"answer\": }\n", r"syntax.jsonl:3:.*invalid JSON"),
    ("syntax.json", "[\n" + ROW + ",\n" + ROW + "\n", r"syntax.json:4:1: invalid JSON \(Expecting"),
    ("bare.jsonl", ROW + "\n5\n", r"bare.jsonl:2: expected a JSON object .*got int 5"),
    ("list.json", "[" + ROW + ", [1, 2]]", r"list.json row 2: expected a JSON object .*got list"),
    ("latin1.jsonl", ROW.replace("1+1", "caf\u00e9").encode("latin-1"), r"latin1.jsonl: not UTF-8 text \(byte 16"),
    ("none.jsonl", json.dumps({"problem": "p", "answer": None}), r"none.jsonl:1: the row has none of the answer"),
    ("empty.jsonl", json.dumps({"problem": "p", "answer": " "}), r"empty.jsonl:1: bad gold answer: it is empty"),
    ("open.jsonl", json.dumps({"problem": "p", "solution": "so \\boxed{\\frac{1}{2}"}), r"open.jsonl:1: .*not closed"),
    ("box.jsonl", json.dumps({"problem": "p", "answer": "\\boxed{}"}), r"box.jsonl:1: bad gold answer: it is empty"),
    ("nan.jsonl", '{"problem": "p", "answer": NaN}', r"nan.jsonl:1: bad gold answer: .*finite number, got float nan"),
    ("bool.jsonl", '{"problem": "p", "answer": true}', r"bool.jsonl:1: .*got bool True"),
    ("problem.jsonl", '{"problem": 7, "answer": "7"}', r"problem.jsonl:1: the problem must be a non-empty string"),
    ("huge.jsonl", '{"problem": "p", "answer": ' + "9" * 5000 + "}", r"huge.jsonl:1: invalid JSON \(Exceeds the limit"),
    ("long.jsonl", json.dumps({"problem": "p", "answer": "9" * 5000}), r"long.jsonl:1: .*5000 characters long"),
])
def test_malformed_benchmark_files_name_the_file_and_line(tmp_path, name, content, message):
    with pytest.raises((KeyError, ValueError), match=message):  # KeyError: a field name to pass
        load_benchmark(_write(tmp_path / name, content))


def test_all_bad_rows_are_reported_at_once_and_a_bom_is_fine(tmp_path):
    rows = [ROW] + [json.dumps({"problem": f"p{i}", "answer": ""}) for i in range(7)]
    with pytest.raises(ValueError, match=r"7 bad row\(s\); fix or drop them \(and 2 more\):\n  .*many.jsonl:2:"):
        load_benchmark(_write(tmp_path / "many.jsonl", "\n".join(rows)))
    b = load_benchmark(_write(tmp_path / "bom.jsonl", "\n".join([ROW, ROW]), encoding="utf-8-sig"))
    assert b.problems == ["1+1?", "1+1?"] and b.answers == ["2", "2"]
    b = load_benchmark(_write(tmp_path / "bom.json", "[" + ROW + "]", encoding="utf-8-sig"), limit=1)
    assert b.answers == ["2"]


def test_benchmark_objects_have_their_gold_checked_before_generation(tiny, monkeypatch):
    model, tok = tiny
    monkeypatch.setattr(E, "generate_completions", lambda *a, **kw: pytest.fail("generated before checking"))
    for answers, message in [([None], "problem 1: bad gold answer"), (["so \\boxed{1"], "not closed"),
                             ([], "as many answers as problems")]:
        with pytest.raises(ValueError, match=message):
            evaluate(model, tok, [Benchmark("toy", ["q"], answers, "inline")], progress=False)


# ----------------------------------------------------------------------------- grading and aggregation
@needs_data
def test_scores_scripted_completions_exactly(tiny, monkeypatch):
    """Replace generation by scripted outputs on real rows: problem i gets (i mod (k+1)) correct samples,
    written in the benchmark's own format (with \\dfrac, units, text), so mean@k and pass@j are known exactly."""
    model, tok = tiny
    k = 3
    benches = [load_benchmark(n, limit=4) for n in BENCHMARKS]
    answers = {p.rstrip(): a for b in benches for p, a in zip(b.problems, b.answers)}

    def scripted(model, tokenizer, prompts, k, **kw):
        outs = []
        for i, prompt in enumerate(prompts):
            gold = answers[prompt.rstrip()].replace("$", "")
            right = f"Reasoning...\nThe answer is $\\boxed{{{gold}}}$"
            wrong = "I give up." if i % 2 else "\\boxed{\\text{no idea}}"
            outs.append([right] * (i % (k + 1)) + [wrong] * (k - i % (k + 1)))
        return outs, 0

    monkeypatch.setattr(E, "generate_completions", scripted)
    rep = evaluate(model, tok, benches, k=k, temperature=1.0, progress=False)
    c = np.arange(4) % (k + 1)  # correct counts per problem: 0, 1, 2, 3
    table = rep.table()
    for r in rep.results:
        assert r.correct.sum(1).tolist() == c.tolist(), r.name
        assert r.mean_at_k() == pytest.approx(c.mean() / k)
        assert r.pass_at(k) == pytest.approx(np.mean(c > 0))
        assert r.pass_at(2) == pytest.approx(np.mean([1 - math.comb(k - ci, 2) / math.comb(k, 2) for ci in c]))
    macro = table.iloc[-1]
    assert macro["benchmark"] == "macro average"
    assert macro[f"mean@{k} (%)"] == pytest.approx(100 * c.mean() / k)
    assert rep.macro(k) == pytest.approx(100 * np.mean(c > 0))


def test_evaluate_rejects_bad_settings(tiny):
    model, tok = tiny
    b = Benchmark("toy", ["1+1? \\boxed{}"], ["2"], "inline")
    with pytest.raises(ValueError, match="temperature"):
        evaluate(model, tok, [b], k=2, temperature=0.0, progress=False)
    with pytest.raises(ValueError, match="k must be"):
        evaluate(model, tok, [b], k=0, progress=False)
    with pytest.raises(ValueError, match="pass_ks"):
        evaluate(model, tok, [b], k=2, temperature=1.0, pass_ks=[3], progress=False)
    with pytest.raises(ValueError, match="max_new_tokens"):
        evaluate(model, tok, [b], max_new_tokens=10_000, progress=False)


def test_chat_template_used_when_present(tiny):
    model, tok = tiny
    tok = char_tokenizer()
    assert format_prompts(tok, ["Q"])[1] is False
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"
    texts, used = format_prompts(tok, ["Q"], system_prompt="S")
    assert used and texts == ["<system>S\n<user>Q\n<assistant>"]
    assert format_prompts(tok, ["Q"], chat_template="off") == (["Q\n"], False)
    rep = evaluate(model, tok, [Benchmark("toy", ["1+1?"], ["2"], "inline")], max_new_tokens=4, progress=False)
    assert rep.settings["chat_template"] is True


# ----------------------------------------------------------------------------- end to end
@needs_data
def test_end_to_end_tiny_random_model_two_problems_per_benchmark(tiny):
    """Real generation with a random tiny Qwen2 over 2 problems of each benchmark: structure and invariants."""
    model, tok = tiny
    rep = evaluate(model, tok, "all", k=2, temperature=1.0, limit=2, max_new_tokens=12, progress=False,
                   keep_samples=True, seed=3)
    table = rep.table()
    assert list(table["benchmark"]) == list(BENCHMARKS) + ["macro average"]
    assert {"problems", "k", "mean@2 (%)", "pass@1 (%)", "pass@2 (%)", "boxed answer (%)",
            "truncated prompts"} <= set(table.columns)
    assert (table["problems"].iloc[:-1] == 2).all() and table["problems"].iloc[-1] == 12
    pct = table[[c for c in table.columns if c.endswith("(%)")]].to_numpy()
    assert np.all((pct >= 0) & (pct <= 100))
    # pass@1 is mean@k (both unbiased estimates of single-sample accuracy); pass@2 >= pass@1
    np.testing.assert_allclose(table["pass@1 (%)"], table["mean@2 (%)"])
    assert np.all(table["pass@2 (%)"] >= table["pass@1 (%)"] - 1e-12)
    # char-level tiny LM with 256 positions: long competition prompts are left-truncated, and counted
    assert table["truncated prompts"].iloc[-1] > 0
    s = rep.results[0].samples[1]
    assert len(s["completions"]) == 2 and all(isinstance(x, bool) for x in s["correct"])
    # same seed, same samples (sampling uses a dedicated generator)
    rep2 = evaluate(model, tok, "aime24", k=2, temperature=1.0, limit=2, max_new_tokens=12, progress=False,
                    keep_samples=True, seed=3)
    assert rep2.results[0].samples[1]["completions"] == s["completions"]


@needs_data
def test_cli_with_a_saved_tiny_model(tmp_path, tiny):
    model, tok = tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    out = tmp_path / "res" / "eval.md"
    rep = E.main([
        "--model", str(tmp_path / "m"), "--benchmarks", "aime24,minerva", "--limit", "2", "--max-new-tokens", "8",
        "--device", "cpu", "--out", str(out), "--samples-out", str(tmp_path / "s.jsonl"), "--no-progress",
    ])
    assert [r.name for r in rep.results] == ["aime24", "minervamath"]
    md = out.read_text()
    assert "macro average" in md and "Provenance" in md and "41.49" in md  # paper's KAE average beside ours
    df = pd.read_csv(out.with_suffix(".csv"))
    assert list(df["benchmark"]) == ["aime24", "minervamath", "macro average"]
    assert df["grading failures"].tolist() == [0, 0, 0]
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert len(lines) == 4 and {"answer", "completions", "extracted", "correct"} <= set(json.loads(lines[0]))
    assert not (tmp_path / "res" / "eval.partial").exists()  # the checkpoints are gone once the report is written


# ----------------------------------------------------------------------------- failures and checkpoints
def _scripted(calls):
    """A generate_completions stand-in: sample j of problem i answers ``\\boxed{<i + j>}``; records its calls."""

    def generate(model, tokenizer, prompts, k, desc="", **kw):
        calls.append(desc)
        return [[f"so \\boxed{{{i + j}}}" for j in range(k)] for i in range(len(prompts))], 1

    return generate


def test_grading_failures_are_isolated_counted_and_reported(tiny, monkeypatch):
    """One answer that crashes the grader and one it cannot decide cost those answers only."""
    model, tok = tiny
    real = E.grade_answer

    def flaky(pred, gold):
        if pred == "3":
            raise RuntimeError("grader bug")
        if pred == "4":
            return Grade(False, "math-verify exceeded its time limit")
        return real(pred, gold)

    monkeypatch.setattr(E, "generate_completions", _scripted([]))
    monkeypatch.setattr(E, "grade_answer", flaky)
    bench = Benchmark("toy", ["a", "b", "c"], ["1", "3", "4"], "inline")
    rep = evaluate(model, tok, [bench], k=2, temperature=1.0, progress=False, keep_samples=True)
    r = rep.results[0]  # samples: problem 0 -> 0, 1; problem 1 -> 1, 2; problem 2 -> 2, 3
    assert r.correct.tolist() == [[False, True], [False, False], [False, False]]
    assert r.failures == [{"index": 2, "sample": 1, "reason": "grader error (RuntimeError: grader bug)"}]
    table = rep.table()
    assert table["grading failures"].tolist() == [1, 1]
    assert r.samples[2]["grading_failures"] == [None, "grader error (RuntimeError: grader bug)"]
    bench = Benchmark("toy", ["a"], ["9"], "inline")
    rep = evaluate(model, tok, [bench], k=5, temperature=1.0, progress=False)
    assert [f["sample"] for f in rep.results[0].failures] == [3, 4]


def test_a_crash_loses_no_finished_benchmark(tiny, monkeypatch, tmp_path):
    """Generation dies in the second benchmark: the first is on disk and a rerun generates only the second,
    reproducing an uninterrupted run exactly (each benchmark's sampling is seeded on its own)."""
    model, tok = tiny
    benches = [Benchmark("one", ["1+1=", "2+2="], ["2", "4"], "inline"), Benchmark("two", ["3+3="], ["6"], "inline")]
    kw = dict(k=2, temperature=1.0, max_new_tokens=6, progress=False, seed=5, keep_samples=True)
    whole = evaluate(model, tok, benches, **kw)
    real = E.generate_completions
    calls = []

    def dies_on_two(model, tokenizer, prompts, k, desc="", **gen_kw):
        calls.append(desc)
        if desc == "two":
            raise RuntimeError("CUDA out of memory")
        return real(model, tokenizer, prompts, k, desc=desc, **gen_kw)

    monkeypatch.setattr(E, "generate_completions", dies_on_two)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(ValueError, match="model_id"):
        evaluate(model, tok, benches, checkpoint_dir=ckpt, **kw)
    with pytest.raises(RuntimeError, match="out of memory"):
        evaluate(model, tok, benches, checkpoint_dir=ckpt, model_id="tiny", **kw)
    saved = json.loads((ckpt / "one.json").read_text())
    assert [s["completions"] for s in whole.results[0].samples] == saved["completions"]
    assert saved["graded"]["correct"] == whole.results[0].correct.tolist()
    assert not (ckpt / "two.json").exists()

    monkeypatch.setattr(E, "generate_completions",
                        lambda *a, desc="", **k: calls.append(desc) or real(*a, desc=desc, **k))
    calls.clear()
    resumed = evaluate(model, tok, benches, checkpoint_dir=ckpt, model_id="tiny", **kw)
    assert calls == ["two"] and [r.resumed for r in resumed.results] == [True, False]
    for a, b in zip(whole.results, resumed.results):
        assert a.samples == b.samples and np.array_equal(a.correct, b.correct)
    pd.testing.assert_frame_equal(whole.table(), resumed.table())

    # A checkpoint from another run is refused, naming what differs; a torn or edited one likewise.
    with pytest.raises(ValueError, match=r"one.json holds completions of another run \(it differs in: model, seed\)"):
        evaluate(model, tok, benches, checkpoint_dir=ckpt, model_id="other", **{**kw, "seed": 6})
    (ckpt / "one.json").write_text((ckpt / "one.json").read_text()[:100])
    with pytest.raises(ValueError, match="one.json is not a complete evaluation checkpoint of 2 problems x 2"):
        evaluate(model, tok, benches, checkpoint_dir=ckpt, model_id="tiny", **kw)


@pytest.mark.parametrize("flags, message", [
    (["--k", "0"], "--k must be >= 1"), (["--limit", "-1"], "--limit must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"), (["--max-new-tokens", "0"], "--max-new-tokens must be"),
    (["--threads", "0"], "--threads must be >= 1"), (["--temperature", "nan"], "--temperature must be >= 0"),
    (["--pass-k", "1,x"], "comma-separated integers"), (["--k", "2", "--pass-k", "4"], r"lie in \[1, --k=2\]"),
])
def test_cli_refuses_bad_flags_before_loading_anything(flags, message, capsys):
    with pytest.raises(SystemExit):
        E.parse_args(["--preset", "small", *flags])
    assert re.search(message, capsys.readouterr().err)
