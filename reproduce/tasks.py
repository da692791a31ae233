"""Prompt sources: the synthetic verifiable arithmetic task (``small`` preset) and GSM8K (``paper``).

Each problem is a chain of 2-4 integer additions/subtractions, e.g.
``"What is 12+7-5?"``, with a GSM8K-style worked solution that evaluates the
chain left to right, one step per line, and ends with ``#### <answer>``, so
:func:`reproduce.rewards.extract_answer` with ``style="gsm8k"`` scores it.

The number of operands varies per problem, so per-prompt success rates of a
partially trained model spread over (0, 1): some prompts are easy, some hard,
as in the paper's prompt pools. Everything is deterministic from a seed.

Example
-------
>>> from reproduce.tasks import ArithmeticTask
>>> task = ArithmeticTask(seed=0)
>>> p = task.sample(1, stream="train")[0]
>>> sorted(p)
['answer', 'prompt', 'solution']
"""

from __future__ import annotations

import itertools
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Stream ids seed the draws of each stream; the split buckets below make the streams disjoint.
_STREAMS = {"sft": 0, "train": 1, "test": 2}
_BLOCK = 1024
# Every problem text belongs to exactly one split, by a hash of its expression (not of the seed), so the
# SFT corpus, the RL prompt pool and the held-out set never share a problem, for any seed or term range:
# 2 of 10 buckets are held out, 2 feed RL prompt pools, 6 the SFT corpus.
_BUCKETS = {"test": (0, 1), "train": (2, 3), "sft": (4, 5, 6, 7, 8, 9)}


def split_of(expression: str) -> str:
    """The split ("sft", "train" or "test") a problem expression such as ``"12+7-5"`` belongs to.

    Examples
    --------
    >>> split_of("12+7-5") in ("sft", "train", "test")
    True
    """
    bucket = zlib.crc32(expression.encode()) % 10
    return next(name for name, buckets in _BUCKETS.items() if bucket in buckets)


@dataclass(frozen=True)
class ArithmeticTask:
    """Generator of arithmetic chains with step-by-step GSM8K-style solutions.

    Parameters
    ----------
    seed : int
        Root seed; ``(seed, stream)`` fixes every draw.
    min_terms, max_terms : int
        Inclusive range of the number of operands per problem (>= 2).
    max_value : int
        Operands are drawn uniformly from ``1..max_value``.
    direct_rate : float
        Share of ``"sft"``-stream solutions that state the answer at once (``"#### 13"``) instead of
        working it out line by line, as many solutions in real corpora do. Every SFT answer is correct;
        a small model that imitates the direct style must compute the whole chain in one step and
        often fails, so its success depends on which style it samples. ``"train"`` and ``"test"``
        rows always carry the worked solution.

    Notes
    -----
    Streams are disjoint by construction (:func:`split_of`): a problem drawn for one stream is
    rejected by the others. ``"train"`` and ``"test"`` draws hold distinct problems; the SFT
    corpus may repeat one.

    Examples
    --------
    >>> task = ArithmeticTask(seed=1, min_terms=2, max_terms=2, max_value=9)
    >>> row = task.sample(1)[0]
    >>> row["solution"].endswith("#### " + row["answer"])
    True
    """

    seed: int = 0
    min_terms: int = 2
    max_terms: int = 4
    max_value: int = 30
    direct_rate: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.min_terms, int) and self.min_terms >= 2):
            raise ValueError(f"min_terms must be an int >= 2, got {self.min_terms!r}")
        if not (isinstance(self.max_terms, int) and self.max_terms >= self.min_terms):
            raise ValueError(f"max_terms must be an int >= min_terms={self.min_terms}, got {self.max_terms!r}")
        if not (isinstance(self.max_value, int) and self.max_value >= 1):
            raise ValueError(f"max_value must be an int >= 1, got {self.max_value!r}")
        if isinstance(self.direct_rate, bool) or not (isinstance(self.direct_rate, (int, float)) and 0 <= self.direct_rate < 1):
            raise ValueError(f"direct_rate must be a float in [0, 1), got {self.direct_rate!r}")

    def sample(self, n: int, stream: str = "train") -> list[dict]:
        """Draw ``n`` problems from a named stream ("sft", "train" or "test").

        Returns a list of ``{"prompt", "solution", "answer"}`` dicts; the same
        ``(seed, stream, n)`` always gives the same list, and a longer list
        extends a shorter one. Raises ValueError when the stream's share of the
        problem space is too small to hold ``n`` distinct problems.
        """
        if stream not in _STREAMS:
            raise ValueError(f"stream must be one of {sorted(_STREAMS)}, got {stream!r}")
        if not (isinstance(n, (int, np.integer)) and n >= 0):
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        rows, seen = [], set()
        block = 0
        while len(rows) < n:
            if block > 64 + 4 * n // _BLOCK:
                raise ValueError(
                    f"could not draw {n} distinct {stream!r} problems with {self.min_terms}-{self.max_terms} terms "
                    f"and values <= {self.max_value}; lower n or widen the task"
                )
            n_terms, values, signs, direct = self._block(stream, block)
            for i in range(_BLOCK):
                k = n_terms[i]
                row = _render(values[i, :k], signs[i, 1:k], direct=bool(direct[i]) and stream == "sft")
                expr = row["prompt"][len("What is ") : -2]
                if split_of(expr) != stream or (stream != "sft" and expr in seen):
                    continue
                seen.add(expr)
                rows.append(row)
                if len(rows) == n:
                    break
            block += 1
        return rows

    def _block(self, stream: str, block: int):
        rng = np.random.default_rng([self.seed, _STREAMS[stream], block])
        n_terms = rng.integers(self.min_terms, self.max_terms + 1, size=_BLOCK)
        values = rng.integers(1, self.max_value + 1, size=(_BLOCK, self.max_terms))
        signs = rng.integers(0, 2, size=(_BLOCK, self.max_terms))
        return n_terms, values, signs, rng.random(_BLOCK) < self.direct_rate


def _render(values: np.ndarray, minus: np.ndarray, direct: bool = False) -> dict:
    """Problem text, left-to-right worked solution (or, ``direct``, the answer line alone) and final answer."""
    ops = ["-" if m else "+" for m in minus]
    expr = str(values[0]) + "".join(op + str(v) for op, v in zip(ops, values[1:]))
    lines, acc = [], int(values[0])
    for op, v in zip(ops, values[1:]):
        new = acc - int(v) if op == "-" else acc + int(v)
        lines.append(f"{acc}{op}{int(v)}={new}")
        acc = new
    lines = [f"#### {acc}"] if direct else lines + [f"#### {acc}"]
    return {"prompt": f"What is {expr}?\n", "solution": "\n".join(lines), "answer": str(acc)}


# ----------------------------------------------------------------------------- GSM8K (paper preset)
DEFAULT_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


def load_gsm8k(split: str = "train", path: str | None = None, limit: int | None = None) -> list[dict]:
    """GSM8K rows as ``{"prompt", "solution", "answer"}`` dicts.

    ``path`` is a directory holding ``<split>.jsonl``, a ``.jsonl`` file, or a
    ``datasets`` hub id such as ``"openai/gsm8k"`` (needs the ``datasets``
    package and a local cache or network). By default the file comes from
    ``$KERNELVALUE_GSM8K`` or ``../shared/data/gsm8k``. The gold answer is the
    text after ``####`` with thousands separators removed.

    Examples
    --------
    >>> rows = load_gsm8k("test", limit=2)            # doctest: +SKIP
    >>> rows[0]["answer"]                               # doctest: +SKIP
    '18'
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if limit is not None and not (isinstance(limit, int) and limit >= 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    source = Path(path or os.environ.get("KERNELVALUE_GSM8K", DEFAULT_GSM8K))
    if source.is_dir():
        source = source / f"{split}.jsonl"
    if source.is_file():
        with open(source) as f:
            raw = [json.loads(line) for line in itertools.islice((x for x in f if x.strip()), limit)]
    elif path is not None and not Path(path).exists():
        raw = _load_gsm8k_hub(path, split, limit)
    else:
        raise FileNotFoundError(
            f"no GSM8K {split} file at {source}; pass --data-path DIR (with train.jsonl/test.jsonl), "
            "set $KERNELVALUE_GSM8K, or give a datasets hub id such as openai/gsm8k"
        )
    return [_gsm8k_row(r) for r in raw]


def _load_gsm8k_hub(name: str, split: str, limit: int | None) -> list[dict]:
    try:
        import datasets
    except ImportError as err:
        raise ImportError(f"loading {name!r} from the hub needs `pip install datasets`") from err
    ds = datasets.load_dataset(name, "main", split=split)
    return list(ds.select(range(min(limit, len(ds)))) if limit is not None else ds)


def _gsm8k_row(row: dict) -> dict:
    solution = row["answer"]
    if "####" not in solution:
        raise ValueError(f"GSM8K answer without '####' line: {solution[-80:]!r}")
    answer = solution.rsplit("####", 1)[1].strip().replace(",", "")
    return {"prompt": row["question"], "solution": solution, "answer": answer}


# ----------------------------------------------------------------------------- boxed-answer sets (MATH, DAPO-17k)
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
_PROBLEM_KEYS = ("problem", "question", "prompt")
_ANSWER_KEYS = ("answer", "final_answer", "solution", "reward_model.ground_truth")


def load_math(
    source: str,
    *,
    n_train: int | None = None,
    n_test: int = 500,
    seed: int = 0,
    problem_key: str | None = None,
    answer_key: str | None = None,
) -> dict[str, list[dict]]:
    """A boxed-answer training set and its held-out split, as ``{"train": rows, "test": rows}``.

    Rows are ``{"prompt", "solution", "answer"}`` dicts like :func:`load_gsm8k`'s;
    ``answer`` is the gold final answer (the last ``\\boxed{}`` of a full
    solution, else the field as given), graded with ``style="boxed"``.

    Parameters
    ----------
    source : str
        A ``.jsonl``/``.json`` file; a directory holding ``train.jsonl`` (and
        optionally ``test.jsonl``); or ``"hf:<name>[:<split>]"`` (a Hugging
        Face dataset; needs ``datasets``; split defaults to ``train``;
        ``"hf:<name>:<split>:<config>"`` names a config, e.g.
        ``hf:open-r1/DAPO-Math-17k-Processed:train:en``).
    n_train : int, optional
        Keep at most this many training rows (all by default).
    n_test : int
        Held-out problems for evaluation during training. A directory's
        ``test.jsonl`` supplies them when present (first ``n_test`` rows);
        otherwise ``n_test`` rows are drawn from the training rows by a
        permutation seeded with ``seed`` and removed from training.
    problem_key, answer_key : str, optional
        Field names, dotted for nested fields (``"reward_model.ground_truth"``).
        By default the first present of problem/question/prompt and
        answer/final_answer/solution/reward_model.ground_truth. A chat-style
        field (a list of ``{"role", "content"}`` messages, as in DAPO-17k's
        ``prompt``) gives its last user message.

    Examples
    --------
    >>> sets = load_math("train.jsonl", n_test=50, seed=0)   # doctest: +SKIP
    >>> sorted(sets), sorted(sets["train"][0])               # doctest: +SKIP
    (['test', 'train'], ['answer', 'prompt', 'solution'])
    """
    for name, value, low in (("n_train", n_train, 1), ("n_test", n_test, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"{name} must be an int >= {low}{' or None' if name == 'n_train' else ''}, got {value!r}")
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a path or 'hf:<name>[:<split>]' string, got {source!r}")
    test_raw = None
    if source.startswith("hf:"):
        train_raw, label = _load_hf_rows(source[3:])
    else:
        path = Path(source)
        if path.is_dir():
            test_file = path / "test.jsonl"
            test_raw = _read_json_rows(test_file) if test_file.is_file() else None
            path = path / "train.jsonl"
        if not path.is_file() or path.suffix not in (".jsonl", ".json"):
            raise FileNotFoundError(
                f"no training set at {source!r}: pass a .jsonl/.json file, a directory with train.jsonl "
                "(optionally test.jsonl), or 'hf:<name>[:<split>]' (e.g. hf:open-r1/DAPO-Math-17k-Processed:train)"
            )
        train_raw, label = _read_json_rows(path), str(path)
    train = [_math_row(r, problem_key, answer_key, label) for r in train_raw]
    if test_raw is not None:
        test = [_math_row(r, problem_key, answer_key, label) for r in test_raw[:n_test]]
    else:
        if len(train) <= n_test:
            raise ValueError(
                f"{label} has {len(train)} rows, too few to hold out n_test={n_test} and still train; "
                "lower n_test or add a test.jsonl beside train.jsonl"
            )
        # Seeded permutation: the held-out problems never appear in the RL prompt pool.
        order = np.random.default_rng([seed, _STREAMS["test"]]).permutation(len(train))
        held = np.zeros(len(train), dtype=bool)
        held[order[:n_test]] = True
        test = [r for r, h in zip(train, held) if h]
        train = [r for r, h in zip(train, held) if not h]
    if not test:
        raise ValueError(f"{source!r}: the held-out split is empty")
    return {"train": train[:n_train] if n_train is not None else train, "test": test}


def _read_json_rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        rows = json.loads(text)
        if isinstance(rows, dict):  # {"train": [...]} or {"data": [...]}
            rows = next((v for v in rows.values() if isinstance(v, list)), None)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of objects")
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} has no rows")
    return rows


def _load_hf_rows(spec: str) -> tuple[list[dict], str]:
    try:
        import datasets
    except ImportError as err:
        raise ImportError(f"hf:{spec} needs the 'datasets' package: pip install datasets") from err
    name, _, rest = spec.partition(":")
    split, _, subset = rest.partition(":")
    ds = datasets.load_dataset(name, subset or None, split=split or "train")
    return [dict(r) for r in ds], f"hf:{name}:{split or 'train'}" + (f":{subset}" if subset else "")


def _field(row: dict, key: str):
    value = row
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _math_row(row: dict, problem_key, answer_key, label: str) -> dict:
    from .rewards import gold_answer  # a full MATH solution's last \boxed{} is its gold answer

    def pick(key, defaults, what, config_name):
        for k in (key,) if key else defaults:
            value = _field(row, k)
            if value is not None:
                return value
        raise KeyError(
            f"{label}: a row has no {what} field {key or list(defaults)} (its fields: {sorted(row)}); "
            f"set {config_name} (e.g. --set {config_name}=prompt)"
        )

    problem = pick(problem_key, _PROBLEM_KEYS, "problem", "problem_key")
    if isinstance(problem, list):  # chat messages (DAPO-17k): the last user turn
        users = [m.get("content") for m in problem if isinstance(m, dict) and m.get("role") == "user"]
        problem = users[-1] if users else None
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError(f"{label}: problem field must be a non-empty string or chat message list, got {problem!r:.80}")
    problem = _strip_dapo_wrapper(problem)
    solution = pick(answer_key, _ANSWER_KEYS, "answer", "answer_key")
    try:
        answer = gold_answer(solution, "boxed")
    except ValueError as err:  # a gold no response can match: a data error, not a silent 0 at grading
        raise ValueError(f"{label}: {err}") from None
    return {"prompt": problem, "solution": str(solution), "answer": answer}


# DAPO-17k wraps each problem in an "Answer: $Answer" instruction (kept in open-r1's processed copy); it
# would contradict the \\boxed{} instruction, so the bare problem is kept.
_DAPO_HEAD = re.compile(r"^\s*Solve the following math problem step by step\..*?\n\s*\n", re.DOTALL)
_DAPO_TAIL = re.compile(r"\n\s*\n\s*Remember to put your answer on its own line after \"Answer:\"\.?\s*$")


def _strip_dapo_wrapper(problem: str) -> str:
    """The bare problem of a DAPO-17k prompt (other prompts unchanged).

    Examples
    --------
    >>> _strip_dapo_wrapper('Solve the following math problem step by step. The last line ... $Answer.\\n\\n'
    ...                     'What is 1+1?\\n\\nRemember to put your answer on its own line after "Answer:".')
    'What is 1+1?'
    """
    if not _DAPO_HEAD.match(problem):
        return problem
    return _DAPO_TAIL.sub("", _DAPO_HEAD.sub("", problem, count=1)).strip()


def math_prompt(problem: str) -> str:
    """The Qwen2.5-Math prompt: the problem, then the step-by-step ``\\boxed{}`` instruction (once).

    Examples
    --------
    >>> math_prompt("What is 1+1?")
    'What is 1+1?\\nPlease reason step by step, and put your final answer within \\\\boxed{}.'
    """
    problem = problem.strip()
    if "\\boxed" in problem:  # already instructed (e.g. the shared MATH500 rows)
        return problem
    return f"{problem}\n{MATH_INSTRUCTION}"
