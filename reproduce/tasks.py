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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Distinct stream ids keep the SFT corpus, the RL prompt pool and the test set
# from sharing draws (overlap is still possible by chance, but not systematic).
_STREAMS = {"sft": 0, "train": 1, "test": 2}
_BLOCK = 1024


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

    def __post_init__(self):
        if not (isinstance(self.min_terms, int) and self.min_terms >= 2):
            raise ValueError(f"min_terms must be an int >= 2, got {self.min_terms!r}")
        if not (isinstance(self.max_terms, int) and self.max_terms >= self.min_terms):
            raise ValueError(f"max_terms must be an int >= min_terms={self.min_terms}, got {self.max_terms!r}")
        if not (isinstance(self.max_value, int) and self.max_value >= 1):
            raise ValueError(f"max_value must be an int >= 1, got {self.max_value!r}")

    def sample(self, n: int, stream: str = "train") -> list[dict]:
        """Draw ``n`` problems from a named stream ("sft", "train" or "test").

        Returns a list of ``{"prompt", "solution", "answer"}`` dicts; the same
        ``(seed, stream, n)`` always gives the same list, and a longer list
        extends a shorter one.
        """
        if stream not in _STREAMS:
            raise ValueError(f"stream must be one of {sorted(_STREAMS)}, got {stream!r}")
        if not (isinstance(n, (int, np.integer)) and n >= 0):
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        # Fixed-size blocks, each from its own seed, so a longer draw extends a shorter one.
        draws = [self._block(stream, b) for b in range(max(1, -(-n // _BLOCK)))]
        n_terms, values, signs = (np.concatenate(parts)[:n] for parts in zip(*draws))
        return [_render(values[i, : n_terms[i]], signs[i, 1 : n_terms[i]]) for i in range(n)]

    def _block(self, stream: str, block: int):
        rng = np.random.default_rng([self.seed, _STREAMS[stream], block])
        n_terms = rng.integers(self.min_terms, self.max_terms + 1, size=_BLOCK)
        values = rng.integers(1, self.max_value + 1, size=(_BLOCK, self.max_terms))
        signs = rng.integers(0, 2, size=(_BLOCK, self.max_terms))
        return n_terms, values, signs


def _render(values: np.ndarray, minus: np.ndarray) -> dict:
    """Problem text, left-to-right worked solution and final answer."""
    ops = ["-" if m else "+" for m in minus]
    expr = str(values[0]) + "".join(op + str(v) for op, v in zip(ops, values[1:]))
    lines, acc = [], int(values[0])
    for op, v in zip(ops, values[1:]):
        new = acc - int(v) if op == "-" else acc + int(v)
        lines.append(f"{acc}{op}{int(v)}={new}")
        acc = new
    lines.append(f"#### {acc}")
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
