"""Benchmark evaluator: mean@k and pass@k on AIME24/25, AMC23, MATH500, Minerva and OlympiadBench.

For every problem the policy draws ``k`` completions (greedy when
``temperature=0``, then ``k`` must be 1), batched through
:func:`reproduce.models.generate` with a KV cache. The answer is the last
``\\boxed{}`` of each completion and is graded by
:func:`reproduce.rewards.is_equiv` (numbers, text, then ``math-verify``).
Per benchmark we report

* ``mean@k``: the average accuracy over all ``k`` samples of all problems
  (an unbiased estimate of pass@1);
* ``pass@j`` for ``j <= k``: the unbiased estimator of Chen et al. (2021),
  ``1 - C(k - c, j) / C(k, j)`` for a problem with ``c`` correct samples,
  averaged over problems;

and the macro average over benchmarks (each benchmark weighs the same, as
in the paper's "average" column).

Failure behaviour: benchmark files are checked when loaded, before any
generation. A JSON error, undecodable bytes, a row that is not an object,
a missing field or a bad gold answer (missing, empty, an unclosed or empty
``\boxed{``, see :func:`reproduce.rewards.gold_answer`) raise an error
naming the file and line (all bad rows, up to five, at once); a UTF-8 BOM is
accepted. Each benchmark is graded as soon as it is generated, answer by
answer: an answer the grader cannot decide (math-verify time-out or error)
counts as wrong and is counted in the "grading failures" column, never
stopping the run. The CLI saves each benchmark's completions (then grades)
atomically under ``--checkpoint-dir`` as soon as they exist; after a crash
the same command reuses them and generates only what is missing.

Data: the six benchmarks are read from ``<data>/eval/<name>/test.jsonl``
(fields ``problem``, ``answer``), where ``<data>`` is ``--data-dir``, else
``$KERNELVALUE_DATA``, else ``<repo>/../shared/data``. Any local ``.jsonl``
/ ``.json`` file or directory holding ``test.jsonl``, or a Hugging Face
dataset written ``hf:<name>[:<split>]`` (needs ``datasets``), works too.

CLI::

    python -m reproduce.evaluate --model /models/Qwen2.5-Math-7B --benchmarks all --k 1 --out results/eval.md
    python -m reproduce.evaluate --preset small --benchmarks all --k 1 --limit 20 --out results/eval.md

Example
-------
>>> pass_at_k(n=4, c=np.array([0, 1, 4]), k=2)
array([0. , 0.5, 1. ])
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write_text
from .paper import BENCHMARK_ORDER
from .rewards import extract_answer, gold_answer, grade_answer

BENCHMARKS = BENCHMARK_ORDER  # ("aime24", "aime25", "amc2023", "math500", "minervamath", "olympiadbench")
ALIASES = {
    "aime2024": "aime24",
    "aime2025": "aime25",
    "amc23": "amc2023",
    "amc": "amc2023",
    "math": "math500",
    "math-500": "math500",
    "minerva": "minervamath",
    "minerva_math": "minervamath",
    "olympiad": "olympiadbench",
    "olympiad_bench": "olympiadbench",
}
REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL_NOTE = (
    "The embedded tiny model (small preset) is a character-level LM of {params} parameters warm-started "
    "only on synthetic arithmetic chains: it cannot solve competition mathematics, so its accuracy on "
    "these benchmarks is ~0 by construction. This run shows that the evaluation pipeline works end to "
    "end, not a result."
)


# ----------------------------------------------------------------------------- data
@dataclass
class Benchmark:
    """Problems and gold answers of one benchmark (``source`` says where they came from)."""

    name: str
    problems: list
    answers: list
    source: str

    def __len__(self) -> int:
        return len(self.problems)


def resolve_data_dir(data_dir=None) -> Path:
    """``data_dir``, else ``$KERNELVALUE_DATA``, else ``<repo>/../shared/data``.

    Examples
    --------
    >>> resolve_data_dir("/data").as_posix()
    '/data'
    """
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("KERNELVALUE_DATA")
    if env:
        return Path(env)
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


def _read_rows(path: Path) -> list[tuple[str, object]]:
    """``(where, row)`` for each row of a ``.jsonl`` / ``.json`` file; ``where`` names the file and line.

    A UTF-8 byte-order mark is accepted; undecodable bytes and malformed JSON raise ``ValueError``
    naming the file and the line.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8") from None
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}:{err.colno}: invalid JSON ({err.msg})") from None
        except ValueError as err:  # e.g. an integer beyond Python's digit limit
            raise ValueError(f"{path}: invalid JSON ({err})") from None
        if isinstance(rows, dict):  # {"data": [...]} or {"test": [...]}
            rows = next((v for v in rows.values() if isinstance(v, list)), None)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of objects (or an object holding one)")
        return [(f"{path} row {i + 1}", row) for i, row in enumerate(rows)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}:{err.colno}: invalid JSON ({err.msg}); one object a line") from None
            except ValueError as err:  # e.g. an integer beyond Python's digit limit
                raise ValueError(f"{path}:{lineno}: invalid JSON ({err})") from None
    return out


def _pick(row: dict, keys: tuple, what: str, where: str):
    for key in keys:
        if key in row and row[key] is not None:
            return row[key]
    raise KeyError(
        f"{where}: the row has none of the {what} fields {list(keys)} (its fields: {sorted(map(str, row))}); "
        f"pass problem_key=/answer_key= (CLI: --problem-key/--answer-key)"
    )


def _parse_rows(rows, pkeys: tuple, akeys: tuple) -> tuple[list[str], list[str]]:
    """Problems and gold answers of ``(where, row)`` pairs; every bad row is reported, by location."""
    problems, answers, errors = [], [], []
    for where, row in rows:
        try:
            if not isinstance(row, dict):
                raise ValueError(f"expected a JSON object with problem and answer fields, got "
                                 f"{type(row).__name__} {row!r:.60}")
            problem = _pick(row, pkeys, "problem", where)  # a missing field is a key-name error: raised at once
            if not isinstance(problem, str) or not problem.strip():
                raise ValueError(f"the problem must be a non-empty string, got {type(problem).__name__} "
                                 f"{problem!r:.60}")
            answers.append(gold_answer(_pick(row, akeys, "answer", where), "boxed"))
            problems.append(problem)
        except ValueError as err:
            errors.append(f"{where}: {err}")
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ValueError(f"{len(errors)} bad row(s); fix or drop them{more}:\n  " + "\n  ".join(errors[:5]))
    return problems, answers


def load_benchmark(
    source: str, *, data_dir=None, limit: int | None = None, problem_key=None, answer_key=None
) -> Benchmark:
    """Load one benchmark: a name from :data:`BENCHMARKS`, a local file/directory, or ``hf:<name>[:<split>]``.

    Parameters
    ----------
    source : str
        ``"math500"`` (or an alias such as ``"amc23"``), a ``.jsonl``/``.json``
        path, a directory with ``test.jsonl``, or ``"hf:HuggingFaceH4/MATH-500:test"``.
    data_dir : path, optional
        Root holding ``eval/<name>/test.jsonl`` (see :func:`resolve_data_dir`).
    limit : int, optional
        Keep the first ``limit`` problems.
    problem_key, answer_key : str, optional
        Field names; by default ``problem`` (or ``question``) and ``answer``
        (or ``solution``, from which the last ``\\boxed{}`` is the gold answer).

    Examples
    --------
    >>> b = load_benchmark("aime24", limit=2)          # doctest: +SKIP
    >>> len(b), b.answers[0]                          # doctest: +SKIP
    (2, '204')
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    pkeys = (problem_key,) if problem_key else ("problem", "question", "prompt")
    akeys = (answer_key,) if answer_key else ("answer", "final_answer", "solution")
    if not isinstance(source, str) or not source:
        raise TypeError(f"source must be a benchmark name, path or 'hf:<name>' string, got {source!r}")
    name = ALIASES.get(source.lower(), source.lower())
    if source.startswith("hf:"):
        rows, label, name = _load_hf(source[3:])
    elif name in BENCHMARKS:
        path = resolve_data_dir(data_dir) / "eval" / name / "test.jsonl"
        if not path.is_file():
            raise FileNotFoundError(
                f"benchmark {name!r} not found at {path}; pass --data-dir DIR (or set KERNELVALUE_DATA) to a "
                "directory holding eval/<name>/test.jsonl with fields 'problem' and 'answer'"
            )
        rows, label = _read_rows(path), str(path)
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "test.jsonl"
        if not path.is_file():
            raise FileNotFoundError(
                f"benchmark source {source!r} is neither one of {list(BENCHMARKS)} nor an existing "
                ".jsonl/.json file or directory with test.jsonl; use 'hf:<dataset>[:<split>]' for the hub"
            )
        rows, label, name = _read_rows(path), str(path), path.parent.name if path.stem == "test" else path.stem
    rows = rows[:limit] if limit is not None else rows
    if not rows:
        raise ValueError(f"benchmark {source!r} ({label}) has no rows")
    problems, answers = _parse_rows(rows, pkeys, akeys)
    return Benchmark(name=name, problems=problems, answers=answers, source=label)


def _load_hf(spec: str):
    try:
        import datasets
    except ImportError as err:
        raise ImportError("hf:<name> benchmarks need the 'datasets' package: pip install datasets") from err
    name, _, split = spec.partition(":")
    ds = datasets.load_dataset(name, split=split or "test")
    label = f"hf:{name}:{split or 'test'}"
    return [(f"{label} row {i + 1}", dict(r)) for i, r in enumerate(ds)], label, name.split("/")[-1].lower()


def load_benchmarks(benchmarks="all", **kwargs) -> list[Benchmark]:
    """:func:`load_benchmark` for each of ``benchmarks`` ("all", a comma-separated string, or a list)."""
    if isinstance(benchmarks, str):
        benchmarks = list(BENCHMARKS) if benchmarks == "all" else [b.strip() for b in benchmarks.split(",") if b]
    if not benchmarks:
        raise ValueError("benchmarks must name at least one benchmark (or 'all')")
    return [load_benchmark(b, **kwargs) for b in benchmarks]


# ----------------------------------------------------------------------------- metrics
def pass_at_k(n: int, c, k: int) -> np.ndarray:
    """Unbiased pass@k of Chen et al. (2021) for problems with ``c`` correct out of ``n`` samples.

    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``
    in log space and vectorised over ``c`` (no overflowing binomials).

    Parameters
    ----------
    n : int
        Samples per problem.
    c : array_like of int
        Correct samples per problem, ``0 <= c <= n``.
    k : int
        ``1 <= k <= n``.

    Examples
    --------
    >>> pass_at_k(5, [0, 1, 2, 5], 1)
    array([0. , 0.2, 0.4, 1. ])
    """
    c = np.asarray(c)
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be an int >= 1 (samples per problem), got {n!r}")
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= n):
        raise ValueError(f"k must be an int with 1 <= k <= n={n}, got {k!r}")
    if c.size and (c.min() < 0 or c.max() > n):
        raise ValueError(f"c must lie in [0, n={n}], got values in [{c.min()}, {c.max()}]")
    i = np.arange(1, n + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log1p(-k / i)  # only terms with i > n - c >= k are used, so all finite
    # suffix[j] = sum_{i=j+1}^{n} log(1 - k/i); the product runs over i = n-c+1..n.
    suffix = np.concatenate([np.cumsum(logs[::-1])[::-1], [0.0]])
    start = np.clip(n - c, 0, n)
    fail = np.where(n - c >= k, np.exp(suffix[np.minimum(start, n)]), 0.0)
    return np.where(c == 0, 0.0, 1.0 - fail)


def default_pass_ks(k: int) -> list[int]:
    """1, the powers of two below ``k``, and ``k``.

    Examples
    --------
    >>> default_pass_ks(1), default_pass_ks(8), default_pass_ks(6)
    ([1], [1, 2, 4, 8], [1, 2, 4, 6])
    """
    ks = {1, k} | {2**p for p in range(int(np.log2(k)) + 1) if 2**p <= k}
    return sorted(ks)


# ----------------------------------------------------------------------------- generation
def format_prompts(tokenizer, problems, chat_template="auto", system_prompt=None) -> tuple[list[str], bool]:
    """Render problems as model inputs; returns ``(texts, used_chat_template)``.

    ``chat_template="auto"`` uses the tokenizer's chat template when it has one
    (instruction/chat models), else the bare problem and a newline (base models
    and the tiny LM). The benchmark problems already end with the instruction
    "put your final answer within \\boxed{}".
    """
    has = getattr(tokenizer, "chat_template", None) is not None
    if chat_template not in ("auto", True, False, "on", "off"):
        raise ValueError(f"chat_template must be 'auto', 'on' or 'off', got {chat_template!r}")
    use = has if chat_template == "auto" else chat_template in (True, "on")
    if use and not has:
        raise ValueError("chat_template='on' but the tokenizer has no chat template; use 'off' or 'auto'")
    if not use:
        return [p.rstrip() + "\n" for p in problems], False
    texts = []
    for p in problems:
        msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": p}
        ]
        texts.append(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    return texts, True


def max_context(model) -> int | None:
    """The model's maximum sequence length (``max_position_embeddings`` / ``n_positions``), if it has one."""
    cfg = model.config
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)


def generate_completions(
    model,
    tokenizer,
    prompts: list[str],
    k: int = 1,
    *,
    max_new_tokens: int = 1024,
    temperature: float = 0.0,
    batch_size: int = 16,
    add_special_tokens: bool = True,
    seed: int = 0,
    progress: bool = True,
    desc: str = "generate",
) -> tuple[list[list[str]], int]:
    """``k`` completions per prompt, generated in length-sorted batches with a KV cache.

    Prompts longer than the model's context minus ``max_new_tokens`` keep their
    *last* tokens (the question and the boxed-answer instruction are at the end).
    Returns ``(completions[prompt][sample], n_truncated_prompts)``.

    Examples
    --------
    >>> from reproduce.tokenizer import char_tokenizer
    >>> from reproduce.models import build_tiny_lm
    >>> tok = char_tokenizer(); lm = build_tiny_lm(tok, n_layer=1, d_model=32, n_head=2).eval()
    >>> outs, n_trunc = generate_completions(lm, tok, ["1+1=", "2+2="], k=3, temperature=1.0,
    ...                                      max_new_tokens=4, progress=False)
    >>> [len(o) for o in outs], n_trunc
    ([3, 3], 0)
    """
    import torch
    from tqdm.auto import tqdm

    from .models import generate, stop_token_ids
    from .trainer import left_pad

    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if temperature == 0 and k != 1:
        raise ValueError(f"greedy decoding (temperature=0) gives k={k} identical samples; pass --temperature > 0")
    device = next(model.parameters()).device
    ids = tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]
    limit = max_context(model)
    budget = None if limit is None else limit - max_new_tokens
    if budget is not None and budget < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for the prompt in the model's context {limit}")
    n_trunc = sum(budget is not None and len(x) > budget for x in ids)
    if budget is not None:
        ids = [x[-budget:] for x in ids]
    # Rows = (prompt, sample); longest first so batches pad little and OOM shows up at once.
    rows = sorted(((p, s) for p in range(len(prompts)) for s in range(k)), key=lambda r: -len(ids[r[0]]))
    out = [[None] * k for _ in prompts]
    stop = stop_token_ids(model, tokenizer)
    gen = torch.Generator(device).manual_seed(seed)
    float32_cuda = device.type == "cuda" and next(model.parameters()).dtype == torch.float32
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if float32_cuda else contextlib.nullcontext()
    bar = tqdm(total=len(rows), desc=desc, disable=not progress, unit="sample")
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        inp, mask = left_pad([ids[p] for p, _ in batch], tokenizer.pad_token_id, device)
        with autocast:
            res = generate(
                model,
                inp,
                mask,
                max_new_tokens,
                stop,
                tokenizer.pad_token_id,
                generator=gen,
                temperature=temperature if temperature > 0 else 1.0,
                do_sample=temperature > 0,
            )
        texts = tokenizer.batch_decode(res.tokens, skip_special_tokens=True)
        for (p, s), text in zip(batch, texts):
            out[p][s] = text
        bar.update(len(batch))
    bar.close()
    return out, n_trunc


# ----------------------------------------------------------------------------- grading
def grade_completions(completions: list, answers: list) -> tuple[list, np.ndarray, np.ndarray, list]:
    """Extract the ``\\boxed{}`` answer of every completion and grade it, one answer at a time.

    ``completions[i]`` holds the ``k`` samples of problem ``i``, whose gold answer is ``answers[i]``.
    Returns ``(extracted, correct, answered, failures)``: extracted answers (``None`` without a box),
    bool arrays ``(n, k)``, and one ``{"index", "sample", "reason"}`` per answer the grader could not
    decide. Such an answer counts as wrong; it never stops the evaluation.

    Examples
    --------
    >>> ext, correct, answered, failures = grade_completions([["so \\\\boxed{4}", "no box"]], ["4"])
    >>> ext, correct.tolist(), answered.tolist(), failures
    ([['4', None]], [[True, False]], [[True, False]], [])
    """
    k = len(completions[0]) if completions else 0
    correct = np.zeros((len(completions), k), dtype=bool)
    answered = np.zeros((len(completions), k), dtype=bool)
    extracted = [[None] * k for _ in completions]
    failures = []
    for i, (samples, gold) in enumerate(zip(completions, answers)):
        for j, completion in enumerate(samples):
            try:
                pred = extract_answer(completion, "boxed")
                grade = grade_answer(pred, gold)
                reason = grade.failure
            except Exception as err:  # noqa: BLE001 -- grade_answer never raises; a bug costs one answer
                pred, grade, reason = None, None, f"grader error ({type(err).__name__}: {err})"
            extracted[i][j], answered[i, j] = pred, pred is not None
            correct[i, j] = grade is not None and grade.correct
            if reason is not None:
                failures.append({"index": i, "sample": j, "reason": reason})
    return extracted, correct, answered, failures


# ----------------------------------------------------------------------------- checkpoints
CHECKPOINT_FORMAT = "kernelvalue-eval-checkpoint/1"


def _checkpoint_path(checkpoint_dir, name: str) -> Path:
    return Path(checkpoint_dir) / (re.sub(r"[^\w.-]", "_", name) + ".json")


def _load_checkpoint(path: Path, fingerprint: dict, n: int, k: int):
    """``(completions, n_truncated)`` saved by an earlier run with the same ``fingerprint``, or ``None``
    when there is no file; a corrupt file, or one from another run, raises ``ValueError``."""
    if not path.is_file():
        return None
    fix = "delete it to generate that benchmark again"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        completions, n_trunc, stored = data["completions"], data["n_truncated"], data["fingerprint"]
        ok = (data["format"] == CHECKPOINT_FORMAT and isinstance(stored, dict) and isinstance(n_trunc, int)
              and isinstance(completions, list) and len(completions) == n
              and all(isinstance(c, list) and len(c) == k and all(isinstance(x, str) for x in c) for c in completions))
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ValueError(f"{path} is not a complete evaluation checkpoint of {n} problems x {k} samples; {fix}")
    if stored != fingerprint:
        differ = sorted(key for key in fingerprint.keys() | stored.keys() if fingerprint.get(key) != stored.get(key))
        raise ValueError(f"{path} holds completions of another run (it differs in: {', '.join(differ)}); {fix}, "
                         "or use another checkpoint directory")
    return completions, n_trunc


# ----------------------------------------------------------------------------- evaluation
@dataclass
class BenchmarkResult:
    """Scores of one benchmark. ``correct`` is a bool array ``(n_problems, k)``; ``answered`` likewise
    (whether a completion had a ``\\boxed{}`` answer); ``failures`` lists the answers the grader could not
    decide (``{"index", "sample", "reason"}``), which count as wrong; ``resumed``: the completions came
    from a checkpoint."""

    name: str
    source: str
    k: int
    correct: np.ndarray
    answered: np.ndarray
    n_truncated: int = 0
    samples: list = field(default_factory=list, repr=False)
    failures: list = field(default_factory=list, repr=False)
    resumed: bool = False  # completions read back from a checkpoint, not generated by this call

    @property
    def n_problems(self) -> int:
        return self.correct.shape[0]

    def mean_at_k(self) -> float:
        return float(self.correct.mean())

    def pass_at(self, j: int) -> float:
        return float(pass_at_k(self.k, self.correct.sum(1), j).mean())


@dataclass
class EvalReport:
    """Per-benchmark results, the settings that produced them, and a table with the macro average."""

    results: list
    settings: dict
    pass_ks: list

    def table(self):
        """DataFrame: one row per benchmark plus "macro average"; accuracies in percent."""
        import pandas as pd

        rows = []
        for r in self.results:
            row = {"benchmark": r.name, "problems": r.n_problems, "k": r.k, f"mean@{r.k} (%)": 100 * r.mean_at_k()}
            row.update({f"pass@{j} (%)": 100 * r.pass_at(j) for j in self.pass_ks})
            row["boxed answer (%)"] = 100 * float(r.answered.mean())
            row["truncated prompts"] = r.n_truncated
            row["grading failures"] = len(r.failures)
            rows.append(row)
        df = pd.DataFrame(rows)
        metric_cols = [c for c in df.columns if c.endswith("(%)")]
        macro = {"benchmark": "macro average", "problems": int(df["problems"].sum()), "k": self.results[0].k}
        macro.update({c: float(df[c].mean()) for c in metric_cols})
        macro["truncated prompts"] = int(df["truncated prompts"].sum())
        macro["grading failures"] = int(df["grading failures"].sum())
        return pd.concat([df, pd.DataFrame([macro])], ignore_index=True)

    def macro(self, metric: str = "mean") -> float:
        """Macro average (percent) of ``mean@k`` (``metric="mean"``) or ``pass@j`` (``metric=j``)."""
        vals = [r.mean_at_k() if metric == "mean" else r.pass_at(int(metric)) for r in self.results]
        return 100 * float(np.mean(vals))


def _checked_benchmark(b: Benchmark) -> Benchmark:
    """``b`` with its gold answers checked (:func:`reproduce.rewards.gold_answer`); bad ones raise, located."""
    if not b.problems or len(b.problems) != len(b.answers):
        raise ValueError(f"benchmark {b.name!r} needs as many answers as problems (at least one), got "
                         f"{len(b.problems)} problems and {len(b.answers)} answers")
    answers = []
    for i, answer in enumerate(b.answers):
        try:
            answers.append(gold_answer(answer, "boxed"))
        except ValueError as err:
            raise ValueError(f"benchmark {b.name!r} ({b.source}) problem {i + 1}: {err}") from None
    return Benchmark(b.name, list(b.problems), answers, b.source)


def evaluate(
    model,
    tokenizer,
    benchmarks="all",
    *,
    k: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 1024,
    batch_size: int = 16,
    limit: int | None = None,
    data_dir=None,
    chat_template="auto",
    system_prompt: str | None = None,
    pass_ks=None,
    seed: int = 0,
    progress: bool = True,
    keep_samples: bool = False,
    checkpoint_dir=None,
    model_id: str | None = None,
) -> EvalReport:
    """Generate ``k`` samples per problem on each benchmark and grade their ``\\boxed{}`` answers.

    Each benchmark is graded as soon as its samples are generated, one answer
    at a time: an answer the grader cannot decide counts as wrong and is
    listed in the result's ``failures`` (the table's "grading failures"),
    never stopping the run. With ``checkpoint_dir``, each benchmark's
    completions (then its grades) are written there atomically as soon as
    they exist, so a crash loses no finished benchmark: a rerun with the same
    settings, prompts and ``model_id`` reads them back (and grades them
    again) instead of generating; a file from a different run is refused.

    Parameters
    ----------
    model, tokenizer
        A causal LM (already on its device, in eval mode) and its tokenizer
        (left padding; a pad token).
    benchmarks : "all", str or list
        Names from :data:`BENCHMARKS`, paths, ``hf:`` specs, or
        :class:`Benchmark` objects (whose gold answers are checked first).
    k : int
        Samples per problem; ``k > 1`` needs ``temperature > 0``.
    temperature : float
        0 decodes greedily.
    limit : int, optional
        First ``limit`` problems of each benchmark (quick runs).
    pass_ks : list of int, optional
        Which pass@j to report (default :func:`default_pass_ks`).
    keep_samples : bool
        Keep completions, extracted answers and grades per problem in each
        result's ``samples`` (for ``--samples-out``).
    checkpoint_dir : path, optional
        Where to persist per-benchmark completions and grades (``<name>.json``).
    model_id : str, optional
        Names the model's weights in the checkpoints (required with
        ``checkpoint_dir``, so another model's completions are never reused).

    Returns
    -------
    EvalReport

    Examples
    --------
    >>> from reproduce.tokenizer import char_tokenizer
    >>> from reproduce.models import build_tiny_lm
    >>> tok = char_tokenizer(); lm = build_tiny_lm(tok, n_layer=1, d_model=32, n_head=2).eval()
    >>> bench = Benchmark("toy", ["What is 1+1? Put it in \\\\boxed{}."], ["2"], "inline")
    >>> rep = evaluate(lm, tok, [bench], max_new_tokens=8, progress=False)
    >>> list(rep.table()["benchmark"])
    ['toy', 'macro average']
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1 (samples per problem), got {k!r}")
    pass_ks = default_pass_ks(k) if pass_ks is None else sorted(set(int(j) for j in pass_ks))
    if any(j < 1 or j > k for j in pass_ks):
        raise ValueError(f"pass_ks must lie in [1, k={k}], got {pass_ks}")
    if checkpoint_dir is not None and not model_id:
        raise ValueError("checkpoint_dir needs model_id (a name for the model's weights), so that completions "
                         "of another model are never reused")
    if isinstance(benchmarks, Benchmark):
        benchmarks = [benchmarks]
    if isinstance(benchmarks, str) or (benchmarks and not isinstance(benchmarks[0], Benchmark)):
        benchmarks = load_benchmarks(benchmarks, data_dir=data_dir, limit=limit)
    else:
        benchmarks = [_checked_benchmark(b) for b in benchmarks]
        if limit is not None:
            benchmarks = [Benchmark(b.name, b.problems[:limit], b.answers[:limit], b.source) for b in benchmarks]
    names = [b.name for b in benchmarks]
    if checkpoint_dir is not None and len(set(names)) < len(names):
        raise ValueError(f"benchmark names must be unique to checkpoint them, got {names}")
    model.eval()
    settings = {
        "k": k,
        "temperature": temperature,
        "decoding": "greedy" if temperature == 0 else f"sampling at T={temperature}",
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "limit": limit,
        "chat_template": False,
        "system_prompt": system_prompt,
        "seed": seed,
        "grader": "last \\boxed{} answer; reproduce.rewards.is_equiv (numbers, text, math-verify)",
    }
    results = []
    for b in benchmarks:
        texts, used_chat = format_prompts(tokenizer, b.problems, chat_template, system_prompt)
        settings["chat_template"] = used_chat
        stored, path, fingerprint = None, None, None
        if checkpoint_dir is not None:
            path = _checkpoint_path(checkpoint_dir, b.name)
            prompts = hashlib.sha256("\0".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
            generation = ("k", "temperature", "max_new_tokens", "batch_size", "seed")
            fingerprint = {"model": model_id, "prompts_sha256": prompts, "add_special_tokens": not used_chat,
                           **{key: settings[key] for key in generation}}
            stored = _load_checkpoint(path, fingerprint, len(b), k)
        if stored is not None:
            completions, n_trunc = stored
        else:
            completions, n_trunc = generate_completions(
                model, tokenizer, texts, k, max_new_tokens=max_new_tokens, temperature=temperature,
                batch_size=batch_size, add_special_tokens=not used_chat, seed=seed, progress=progress, desc=b.name,
            )
        record = {"format": CHECKPOINT_FORMAT, "benchmark": b.name, "source": b.source, "fingerprint": fingerprint,
                  "n_truncated": n_trunc, "completions": completions}
        if path is not None and stored is None:
            atomic_write_text(path, json.dumps(record))  # the costly part is safe before grading starts
        extracted, correct, answered, failures = grade_completions(completions, b.answers)
        if path is not None:
            record["graded"] = {"answers": b.answers, "extracted": extracted, "correct": correct.tolist(),
                                "failures": failures}
            atomic_write_text(path, json.dumps(record))
        samples = []
        if keep_samples:
            reasons = [[None] * k for _ in completions]
            for f in failures:
                reasons[f["index"]][f["sample"]] = f["reason"]
            samples = [
                {"benchmark": b.name, "index": i, "answer": gold, "completions": cs, "extracted": ps,
                 "correct": correct[i].tolist(), "grading_failures": reasons[i]}
                for i, (cs, ps, gold) in enumerate(zip(completions, extracted, b.answers))
            ]
        results.append(BenchmarkResult(b.name, b.source, k, correct, answered, n_trunc, samples, failures,
                                       resumed=stored is not None))
    return EvalReport(results, settings, pass_ks)


# ----------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m reproduce.evaluate",
        description="mean@k / pass@k of a causal LM on AIME24, AIME25, AMC23, MATH500, Minerva, OlympiadBench.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="local path (or cached hub id) of a causal LM with its tokenizer")
    src.add_argument("--preset", choices=["small"], help="'small': the embedded tiny warm-started LM (accuracy ~0)")
    p.add_argument("--benchmarks", default="all", help="'all' or comma-separated names / paths / hf:<name>[:split]")
    p.add_argument("--k", type=int, default=1, help="samples per problem")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy (default when k=1; else 0.6)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 2048 (--model) or 64 (--preset small)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per generate call (default 16 CPU, 64 CUDA)")
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark")
    p.add_argument("--pass-k", default=None, help="comma-separated j for pass@j (default 1, powers of 2, k)")
    p.add_argument("--data-dir", default=None, help="root with eval/<name>/test.jsonl (default $KERNELVALUE_DATA "
                   "or <repo>/../shared/data)")
    p.add_argument("--problem-key", default=None)
    p.add_argument("--answer-key", default=None)
    p.add_argument("--chat-template", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="weights dtype for --model (auto: bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads")
    p.add_argument("--cache-dir", default=None, help="cache of the small preset's warm-started model")
    p.add_argument("--out", default="results/eval.md", help="markdown report; a .csv is written beside it")
    p.add_argument("--samples-out", default=None, help="optional JSONL of every completion and its grade")
    p.add_argument("--checkpoint-dir", default=None,
                   help="where each finished benchmark's completions and grades are saved as it finishes, and "
                   "read back by a rerun after a crash (default: <out without suffix>.partial; removed once "
                   "the report is written)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    # A bad flag stops here, with its name, not after the model has loaded (or deep inside generation).
    for name in ("k", "limit", "max_new_tokens", "batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.temperature is not None and not args.temperature >= 0:
        p.error(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    try:
        args.pass_k = [int(j) for j in args.pass_k.split(",")] if args.pass_k else None
    except ValueError:
        p.error(f"--pass-k must be comma-separated integers, got {args.pass_k!r}")
    if args.pass_k is not None and not all(1 <= j <= args.k for j in args.pass_k):
        p.error(f"--pass-k values must lie in [1, --k={args.k}], got {args.pass_k}")
    return args


def main(argv=None) -> EvalReport:
    import torch

    from .report import Provenance, write_result
    from .trainer import resolve_device

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.preset == "small":
        from .models import warm_start
        from .presets import get_preset

        cfg = get_preset("small", cache_dir=args.cache_dir)
        model, tokenizer = warm_start(cfg)
        model_name = f"embedded tiny {cfg.arch} LM ({cfg.n_layer} layers, d_model={cfg.d_model}, small preset warm start)"
        max_new = args.max_new_tokens or cfg.max_new_tokens
        note = TINY_MODEL_NOTE.format(params=f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M")
    else:
        from .models import load_pretrained

        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(
            args.dtype, torch.bfloat16 if device.type == "cuda" else torch.float32
        )
        model, tokenizer = load_pretrained(args.model, dtype=dtype)
        model_name = args.model
        max_new = args.max_new_tokens or 2048
    model.to(device).eval()
    model_id = f"{model_name}; {next(model.parameters()).dtype}; {device}"
    checkpoint_dir = Path(args.checkpoint_dir or Path(args.out).with_suffix(".partial"))
    temperature = args.temperature if args.temperature is not None else (0.0 if args.k == 1 else 0.6)
    batch = args.batch_size or (64 if device.type == "cuda" else 16)
    prov = Provenance(name=Path(args.out).stem, preset=args.preset or "paper", model=model_name,
                      seeds=[args.seed], device=str(device))
    benches = load_benchmarks(args.benchmarks, data_dir=args.data_dir, limit=args.limit,
                              problem_key=args.problem_key, answer_key=args.answer_key)
    start = time.perf_counter()
    report = evaluate(
        model, tokenizer, benches, k=args.k, temperature=temperature, max_new_tokens=max_new, batch_size=batch,
        chat_template=args.chat_template, system_prompt=args.system_prompt,
        pass_ks=args.pass_k, seed=args.seed,
        progress=not args.no_progress, keep_samples=args.samples_out is not None,
        checkpoint_dir=checkpoint_dir, model_id=model_id,
    )
    seconds = time.perf_counter() - start
    n_samples = sum(r.correct.size for r in report.results)
    prov.extra.update({**{k: v for k, v in report.settings.items() if v is not None},
                       "benchmarks": "; ".join(f"{r.name}: {r.source}" for r in report.results),
                       "generation": f"{n_samples} samples in {seconds:.1f} s ({n_samples / seconds:.2f} samples/s)"})
    resumed = [r.name for r in report.results if r.resumed]
    if resumed:
        prov.extra["resumed"] = f"completions of {', '.join(resumed)} read back from {checkpoint_dir} (interrupted run)"
    table = report.table()
    findings = [
        f"Macro-average mean@{args.k}: {report.macro('mean'):.2f}% over {len(report.results)} benchmark(s)"
        + (f", first {args.limit} problems of each" if args.limit else "") + "."
    ]
    n_failed = sum(len(r.failures) for r in report.results)
    if n_failed:
        findings.append(f"{n_failed} of {n_samples} answers could not be graded (math-verify time-out or error) "
                        "and count as wrong: see 'grading failures' (and --samples-out for which).")
    if args.preset == "small":
        findings.append(note)
    from . import paper

    lines = []
    for t in (paper.TABLE3, paper.TABLE4):
        lines += [f"Average accuracy (%), {t['setting']}:", "", "| method | average |", "|---|---|"]
        lines += [f"| {m} | {v:.2f} |" for m, v in t["average"].items()] + [""]
    paper_section = "\n".join(lines)
    csv_path, md_path = write_result(
        table, prov, out_dir=Path(args.out).parent, title="Benchmark evaluation (mean@k / pass@k)",
        paper_section=paper_section, findings=findings,
    )
    if args.samples_out:
        Path(args.samples_out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.samples_out, "w") as f:
            for r in report.results:
                f.writelines(json.dumps(s) + "\n" for s in r.samples)
    for r in report.results:  # the report now holds them
        _checkpoint_path(checkpoint_dir, r.name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: files of other runs stay
        checkpoint_dir.rmdir()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if n_failed:
        print(f"warning: {n_failed} answers could not be graded and count as wrong ('grading failures')")
    if args.preset == "small":
        print(note)
    print(f"wrote {md_path} and {csv_path}")
    return report


if __name__ == "__main__":
    main()
