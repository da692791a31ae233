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
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .paper import BENCHMARK_ORDER
from .rewards import extract_answer, is_equiv
from .rewards import _gold_answer  # gold strings may be full solutions

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


def _read_rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        rows = json.loads(text)
        if isinstance(rows, dict):  # {"data": [...]} or {"test": [...]}
            rows = next((v for v in rows.values() if isinstance(v, list)), None)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of objects")
        return rows
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _pick(row: dict, keys: tuple, what: str, source: str):
    for key in keys:
        if key in row and row[key] is not None:
            return row[key]
    raise KeyError(
        f"{source}: a row has none of the {what} fields {list(keys)} (its fields: {sorted(row)}); "
        f"pass problem_key=/answer_key= (CLI: --problem-key/--answer-key)"
    )


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
    problems = [str(_pick(r, pkeys, "problem", label)) for r in rows]
    answers = [_gold_answer(str(_pick(r, akeys, "answer", label)), "boxed") for r in rows]
    return Benchmark(name=name, problems=problems, answers=answers, source=label)


def _load_hf(spec: str):
    try:
        import datasets
    except ImportError as err:
        raise ImportError("hf:<name> benchmarks need the 'datasets' package: pip install datasets") from err
    name, _, split = spec.partition(":")
    ds = datasets.load_dataset(name, split=split or "test")
    return [dict(r) for r in ds], f"hf:{name}:{split or 'test'}", name.split("/")[-1].lower()


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


# ----------------------------------------------------------------------------- evaluation
@dataclass
class BenchmarkResult:
    """Scores of one benchmark. ``correct`` is a bool array ``(n_problems, k)``; ``answered`` likewise
    (whether a completion had a ``\\boxed{}`` answer)."""

    name: str
    source: str
    k: int
    correct: np.ndarray
    answered: np.ndarray
    n_truncated: int = 0
    samples: list = field(default_factory=list, repr=False)

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
            rows.append(row)
        df = pd.DataFrame(rows)
        metric_cols = [c for c in df.columns if c.endswith("(%)")]
        macro = {"benchmark": "macro average", "problems": int(df["problems"].sum()), "k": self.results[0].k}
        macro.update({c: float(df[c].mean()) for c in metric_cols})
        macro["truncated prompts"] = int(df["truncated prompts"].sum())
        return pd.concat([df, pd.DataFrame([macro])], ignore_index=True)

    def macro(self, metric: str = "mean") -> float:
        """Macro average (percent) of ``mean@k`` (``metric="mean"``) or ``pass@j`` (``metric=j``)."""
        vals = [r.mean_at_k() if metric == "mean" else r.pass_at(int(metric)) for r in self.results]
        return 100 * float(np.mean(vals))


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
) -> EvalReport:
    """Generate ``k`` samples per problem on each benchmark and grade their ``\\boxed{}`` answers.

    Parameters
    ----------
    model, tokenizer
        A causal LM (already on its device, in eval mode) and its tokenizer
        (left padding; a pad token).
    benchmarks : "all", str or list
        Names from :data:`BENCHMARKS`, paths, ``hf:`` specs, or
        :class:`Benchmark` objects.
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
    if isinstance(benchmarks, Benchmark):
        benchmarks = [benchmarks]
    if isinstance(benchmarks, str) or (benchmarks and not isinstance(benchmarks[0], Benchmark)):
        benchmarks = load_benchmarks(benchmarks, data_dir=data_dir, limit=limit)
    elif limit is not None:
        benchmarks = [Benchmark(b.name, b.problems[:limit], b.answers[:limit], b.source) for b in benchmarks]
    model.eval()
    results = []
    used_chat = False
    for b in benchmarks:
        texts, used_chat = format_prompts(tokenizer, b.problems, chat_template, system_prompt)
        completions, n_trunc = generate_completions(
            model,
            tokenizer,
            texts,
            k,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            batch_size=batch_size,
            add_special_tokens=not used_chat,
            seed=seed,
            progress=progress,
            desc=b.name,
        )
        preds = [[extract_answer(c, "boxed") for c in cs] for cs in completions]
        correct = np.array([[is_equiv(p, gold) for p in ps] for ps, gold in zip(preds, b.answers)], dtype=bool)
        answered = np.array([[p is not None for p in ps] for ps in preds], dtype=bool)
        samples = []
        if keep_samples:
            samples = [
                {"benchmark": b.name, "index": i, "answer": gold, "completions": cs, "extracted": ps,
                 "correct": correct[i].tolist()}
                for i, (cs, ps, gold) in enumerate(zip(completions, preds, b.answers))
            ]
        results.append(BenchmarkResult(b.name, b.source, k, correct.reshape(len(b), k),
                                        answered.reshape(len(b), k), n_trunc, samples))
    settings = {
        "k": k,
        "temperature": temperature,
        "decoding": "greedy" if temperature == 0 else f"sampling at T={temperature}",
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "limit": limit,
        "chat_template": used_chat,
        "system_prompt": system_prompt,
        "seed": seed,
        "grader": "last \\boxed{} answer; reproduce.rewards.is_equiv (numbers, text, math-verify)",
    }
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
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


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
        pass_ks=[int(j) for j in args.pass_k.split(",")] if args.pass_k else None, seed=args.seed,
        progress=not args.no_progress, keep_samples=args.samples_out is not None,
    )
    seconds = time.perf_counter() - start
    n_samples = sum(r.correct.size for r in report.results)
    prov.extra.update({**{k: v for k, v in report.settings.items() if v is not None},
                       "benchmarks": "; ".join(f"{r.name}: {r.source}" for r in report.results),
                       "generation": f"{n_samples} samples in {seconds:.1f} s ({n_samples / seconds:.2f} samples/s)"})
    table = report.table()
    findings = [
        f"Macro-average mean@{args.k}: {report.macro('mean'):.2f}% over {len(report.results)} benchmark(s)"
        + (f", first {args.limit} problems of each" if args.limit else "") + "."
    ]
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
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.preset == "small":
        print(note)
    print(f"wrote {md_path} and {csv_path}")
    return report


if __name__ == "__main__":
    main()
