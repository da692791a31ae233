"""Verifiable rewards: final-answer extraction and equivalence checking.

Two answer formats are recognised:

* GSM8K style: the last line starting ``#### <answer>``. When a completion has
  no ``####`` line we fall back to the last "The (final) answer is <answer>"
  phrase, the other common way instruction-tuned models state a result (a
  completion with neither has no answer and scores 0).
* ``\\boxed{...}`` / ``\\fbox{...}``: the content of the *last* box, braces
  matched (so ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``), as in the
  MATH and Qwen2.5-Math evaluation protocols.

Equivalence is decided in three tiers, cheapest first, so the trainer's hot
path (integer answers of the synthetic task and GSM8K) never reaches sympy:

1. **numbers**: both sides are plain numbers (``1,234``, ``$18``, ``18
   dollars``, ``0.5``, ``-3/4``, ``\\frac{3}{4}``, ``4.5e33``,
   ``4.5\\times10^{33}``, ``25\\%``) -> exact rational comparison, or a
   relative tolerance of ``1e-4`` when one side is written as a decimal;
2. **text**: the gold answer is words (``\\text{Evelyn}``, ``east``) ->
   normalised case-insensitive string match (sympy would read ``Evelyn`` as
   the product ``E*v*e*l*y*n`` and accept any anagram);
3. **symbolic**: ``math_verify.parse`` + ``math_verify.verify`` (fractions,
   radicals, ``\\pi``, tuples, intervals, sets, matrices, equations, units).

math-verify bounds its sympy work with ``signal.alarm``, which only works in
the main thread. In any other thread (e.g. a data-loader or a thread pool) we
run the symbolic tier in a one-worker *process* pool with the same time limit
and kill the worker on time-out, so a pathological answer can never hang the
caller. A time-out counts as "not equivalent" (reward 0).

Examples
--------
>>> extract_answer("3 + 4 = 7\\n#### 7")
'7'
>>> extract_answer("so $x = \\\\boxed{\\\\frac{1}{2}}$.", style="boxed")
'\\\\frac{1}{2}'
>>> reward("#### 1,000 dollars", "1000")
1.0
>>> reward("The answer is $\\\\boxed{0.5}$", "\\\\frac12", style="boxed")
1.0
>>> reward("#### 71", "72")
0.0
"""

from __future__ import annotations

import atexit
import functools
import math
import multiprocessing
import re
import threading
from fractions import Fraction

import numpy as np

__all__ = [
    "STYLES",
    "extract_answer",
    "last_boxed",
    "parse_number",
    "is_equiv",
    "reward",
    "rewards",
]

STYLES = ("gsm8k", "boxed", "auto")

# Seconds math-verify may spend parsing one answer and comparing one pair
# (integers: signal.alarm has one-second resolution).
VERIFY_TIMEOUT_S = 3
# Relative tolerance for numbers written as decimals (rounded values): the
# Qwen2.5-Math evaluation's ``math_equal`` uses the same 1e-4.
REL_TOL = 1e-4
# Longer boxed contents are not answers (the model dumped its reasoning in the
# box); refusing them keeps sympy away from inputs it can take minutes on.
MAX_ANSWER_CHARS = 1000


# ----------------------------------------------------------------------------- extraction
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+?)(?:\.\s*$|\.\s+[A-Z]|\n|$)",
    re.IGNORECASE | re.MULTILINE,
)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, braces matched.

    Also accepts the brace-less form ``\\boxed 5`` (content up to the next
    whitespace or ``$``). Returns ``None`` when there is no box or the last
    box is unterminated (a truncated completion has no final answer).

    Examples
    --------
    >>> last_boxed(r"first \\boxed{1}, then \\boxed{\\frac{a}{b^{2}}}")
    '\\\\frac{a}{b^{2}}'
    >>> last_boxed(r"\\fbox{42}"), last_boxed(r"\\boxed 7$"), last_boxed(r"\\boxed{unclosed")
    ('42', '7', None)
    """
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    rest = text[start:]
    stripped = rest.lstrip()
    if not stripped.startswith("{"):
        m = re.match(r"\s+([^\s$]+)", rest)
        return m.group(1) if m else None
    i = start + (len(rest) - len(stripped))
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "\\":  # an escaped brace \{ or \} does not open or close a group
            continue
        if c == "{" and (j == 0 or text[j - 1] != "\\"):
            depth += 1
        elif c == "}" and text[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def _gsm8k_answer(text: str) -> str | None:
    hits = _GSM8K_RE.findall(text)
    if hits:
        ans = hits[-1].strip()
        return ans or None
    hits = _ANSWER_IS_RE.findall(text)
    if hits:
        ans = hits[-1].strip().strip("*").strip()
        return ans.rstrip(".").strip() or None
    return None


def extract_answer(text: str, style: str = "gsm8k") -> str | None:
    """The final answer stated in a completion, as a string, or ``None``.

    Parameters
    ----------
    text : str
        The model's completion (or a reference solution).
    style : {"gsm8k", "boxed", "auto"}
        ``"gsm8k"``: last ``#### x`` line, else the last "The answer is x".
        ``"boxed"``: last ``\\boxed{}``/``\\fbox{}`` only (the evaluator's
        protocol: no box, no answer). ``"auto"``: a box if there is one,
        else the GSM8K rules.

    Examples
    --------
    >>> extract_answer("She makes 9 * 2 = $18.\\n#### 18")
    '18'
    >>> extract_answer("So the final answer is 42.")
    '42'
    >>> extract_answer(r"#### 3 ... \\boxed{4}", style="auto")
    '4'
    >>> extract_answer("no answer here", style="boxed") is None
    True
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if style == "gsm8k":
        return _gsm8k_answer(text)
    boxed = last_boxed(text)
    if style == "boxed" or boxed is not None:
        return boxed
    return _gsm8k_answer(text)


# ----------------------------------------------------------------------------- tier 1: numbers
_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_UNIT_TAIL = re.compile(r"(?<=[\d.])\s*(?:\\[,;:!]|~|\s)*\s*[A-Za-z][A-Za-z .^0-9{}\\/-]*$")
_SCI_LATEX = re.compile(r"^(.+?)\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?$")
_FRAC = re.compile(r"^([+-]?)\\[dt]?frac\s*\{\s*([+-]?[\d.]+)\s*\}\s*\{\s*([+-]?[\d.]+)\s*\}$")
_FRAC_SHORT = re.compile(r"^([+-]?)\\[dt]?frac\s*(\d)\s*(\d)$")  # \frac12
_SLASH = re.compile(r"^([+-]?[\d.]+)\s*/\s*([+-]?[\d.]+)$")
_PLAIN = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_INT = re.compile(r"[+-]?\d+")
_MATH_WORDS = re.compile(r"(?i)(?:pi|sqrt|root|inf|infinity|log|ln|exp|sin|cos|tan)\b.*")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")


def _clean(s: str) -> str:
    s = s.strip().strip("$").strip()
    s = s.replace("\\$", "").replace("\\left", "").replace("\\right", "")
    s = re.sub(r"\\[,;:! ]", "", s)  # LaTeX thin spaces, e.g. 1\,000
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\circ", "")
    s = s.replace("\\%", "%").rstrip(".").strip()
    if s.endswith("%"):
        s = s[:-1].strip()
    return s


def parse_number(s: str) -> tuple[Fraction, bool] | None:
    """``(value, exact)`` if ``s`` is a plain number (possibly with ``$``, commas, units), else ``None``.

    ``exact`` is False when the number is written as a decimal or in
    scientific notation (a rounded value); fractions and integers are exact.
    Trailing words are read as units (``18 dollars``, ``6.5 \\text{ m}``);
    a single trailing letter is not (``5x`` is not a number).

    Examples
    --------
    >>> parse_number("$1,234")
    (Fraction(1234, 1), True)
    >>> parse_number(r"\\dfrac{3}{4}"), parse_number("0.5")
    ((Fraction(3, 4), True), (Fraction(1, 2), False))
    >>> parse_number(r"4.5 \\times 10^{33}")[0] == Fraction(45, 10) * 10**33
    True
    >>> parse_number("5x") is None, parse_number("1,2") is None
    (True, True)
    """
    s = _clean(s)
    wrapped = _WRAPPERS.search(s) is not None  # \text{ m}: a one-letter unit is a unit when typeset as text
    for _ in range(2):  # \text{18 dollars} -> 18 dollars -> 18
        s = _WRAPPERS.sub(r" \1", s).strip()
    tail = _UNIT_TAIL.search(s)
    if tail is not None and _MATH_WORDS.fullmatch(tail.group(0).strip()):
        return None  # "2 pi", "3 sqrt 2": mathematics written in words, not a unit
    if tail is not None and (wrapped or len(re.sub(r"[^A-Za-z]", "", tail.group(0))) >= 2):
        s = s[: tail.start()].strip()
    if not s:
        return None
    m = _SCI_LATEX.match(s)
    if m:
        base = parse_number(m.group(1))
        if base is None:
            return None
        return base[0] * Fraction(10) ** int(m.group(2)), False
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if _PLAIN.match(s):
        return Fraction(s), not re.search(r"[.eE]", s)
    m = _FRAC.match(s) or _FRAC_SHORT.match(s)
    if m:
        sign, num, den = m.groups()
        return _ratio(sign, num, den)
    m = _SLASH.match(s)
    if m:
        return _ratio("", *m.groups())
    return None


def _ratio(sign, num, den):
    if not (_PLAIN.match(num) and _PLAIN.match(den)) or Fraction(den) == 0:
        return None
    value = Fraction(num) / Fraction(den)
    return (-value if sign == "-" else value), not re.search(r"[.eE]", num + den)


def _numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool:
    (x, x_exact), (y, y_exact) = a, b
    if x == y:
        return True
    if x_exact and y_exact:
        return False
    # A decimal is a rounded value: relative (not absolute) tolerance, so 1.2e-8 and 2.5e-10 differ.
    return math.isclose(float(x), float(y), rel_tol=REL_TOL, abs_tol=0.0)


# ----------------------------------------------------------------------------- tier 2: text
_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")


def _as_text(s: str, gold: bool = False) -> str | None:
    """Lower-cased words if ``s`` is a text answer (``\\text{East}``, ``Evelyn``, ``\\text{(C)}``), else ``None``.

    A gold answer counts as text when it has two or more letters, or is
    wrapped in ``\\text{}`` (multiple-choice letters such as ``\\text{(C)}``);
    a single bare letter is a variable.
    """
    t = _clean(s)
    wrapped = bool(re.search(r"\\(?:text|textbf|mathrm|mbox)\s*\{", t))
    t = re.sub(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", t)
    t = t.strip().strip("()").strip()
    words = [w for w in re.split(r"[ ,]+", t) if w]
    # Words only (hyphenated allowed): "p - q" is algebra, not text.
    if not words or not all(_WORD.fullmatch(w) for w in words):
        return None
    if gold and not wrapped and max(map(len, words)) < 2:
        return None
    return " ".join(t.lower().replace(",", " ").split())


# ----------------------------------------------------------------------------- tier 3: math-verify
def _gold_latex(gold: str) -> str:
    """Gold answers as math-verify reads them: ``$`` stripped, Python/float notation made LaTeX.

    Benchmarks mix conventions: OlympiadBench wraps answers in ``$...$``
    (sometimes several: ``$69$,$84$``), Minerva uses ``4.5e33``, ``-1./3``
    and ``np.arcsin(...)``.
    """
    g = re.sub(r"(?<!\\)\$", "", gold).strip()
    g = re.sub(r"\bnp\.", "", g)
    g = re.sub(r"(\d)\.(?!\d)", r"\1", g)  # 1./3 -> 1/3
    g = re.sub(r"(\d(?:\.\d+)?)[eE]([+-]?\d+)\b", r"\1\\times10^{\2}", g)
    g = re.sub(r"\barc(sin|cos|tan)\b", r"\\arc\1", g).replace("\\\\arc", "\\arc")
    return g


@functools.lru_cache(maxsize=8192)
def _parse_cached(latex: str):
    from math_verify import parse

    # Wrap in a box so math-verify applies its boxed normalisation (units, \text, \dfrac, ...).
    return parse("\\boxed{" + latex + "}", parsing_timeout=VERIFY_TIMEOUT_S)


def _verify_latex(pred: str, gold: str, pred_decimal: float | None = None) -> bool:
    """math-verify equivalence of two LaTeX answers (call in a main thread: signal timeouts).

    ``pred_decimal``: the prediction's value when it is a decimal number; it
    then also counts as equal to a *numeric* gold expression within
    ``REL_TOL`` (``0.8763`` for ``\\arcsin(10/13)``), since math-verify
    compares floats at 6 decimals only.
    """
    from math_verify import verify

    g, p = _parse_cached(gold), _parse_cached(pred)
    if not g or not p:
        return False
    if verify(g, p, timeout_seconds=VERIFY_TIMEOUT_S):
        return True
    if pred_decimal is None:
        return False
    import sympy

    for expr in g:
        if isinstance(expr, sympy.Basic) and expr.is_number:
            try:
                value = complex(expr.evalf())
            except (TypeError, ValueError):
                continue
            if value.imag == 0 and math.isclose(value.real, pred_decimal, rel_tol=REL_TOL, abs_tol=0.0):
                return True
    return False


_POOL = None
_POOL_LOCK = threading.Lock()


def _verify_in_worker(pred: str, gold: str, pred_decimal: float | None = None) -> bool:
    """Run :func:`_verify_latex` in a spawned worker process with a hard time limit.

    The worker's main thread may use ``signal.alarm``; if the whole call still
    overruns (parse + verify, plus spawn time on first use), the worker is
    killed and a fresh one is started on the next call.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = multiprocessing.get_context("spawn").Pool(1)
            # Close it before interpreter teardown: Pool.__del__ at exit fails noisily.
            atexit.register(_POOL.terminate)
        pool = _POOL
    try:
        return bool(pool.apply_async(_verify_latex, (pred, gold, pred_decimal)).get(timeout=3 * VERIFY_TIMEOUT_S + 30))
    except multiprocessing.TimeoutError:
        with _POOL_LOCK:
            pool.terminate()
            if _POOL is pool:
                _POOL = None
        return False


def is_equiv(pred: str | None, gold: str) -> bool:
    """Whether an extracted answer ``pred`` equals the gold answer ``gold`` (numbers, text, then math-verify).

    Examples
    --------
    >>> is_equiv(r"\\frac{\\pi}{2}", r"\\dfrac{\\pi}{2}"), is_equiv("(1, 2)", "(2, 1)")
    (True, False)
    >>> is_equiv("east", r"\\text{east}"), is_equiv(None, "3")
    (True, False)
    """
    if pred is None:
        return False
    pred, gold = str(pred).strip(), str(gold).strip()
    if not pred or not gold or len(pred) > MAX_ANSWER_CHARS:
        return False
    if _INT.fullmatch(pred) and _INT.fullmatch(gold):  # the trainer's common case, before any cleaning
        return int(pred) == int(gold)
    gold_num = parse_number(gold)
    if gold_num is None and re.search(r"\d[eE][+-]?\d", gold):
        gold_num = parse_number(_gold_latex(gold))
    pred_num = parse_number(pred)
    if gold_num is not None and pred_num is not None:
        return _numbers_equal(pred_num, gold_num)
    gold_text = _as_text(gold, gold=True)
    if gold_text is not None:
        return _as_text(pred) == gold_text
    gold_l, pred_l = _gold_latex(gold), re.sub(r"(?<!\\)\$", "", pred).strip()
    decimal = float(pred_num[0]) if pred_num is not None and not pred_num[1] else None
    if threading.current_thread() is threading.main_thread():
        return _verify_latex(pred_l, gold_l, decimal)
    return _verify_in_worker(pred_l, gold_l, decimal)


# ----------------------------------------------------------------------------- rewards
def _gold_answer(gold, style: str) -> str:
    gold = str(gold)
    if "####" in gold:  # a full GSM8K reference solution
        return _gsm8k_answer(gold) or gold
    if style != "gsm8k" and ("\\boxed" in gold or "\\fbox" in gold):  # a full MATH solution
        return last_boxed(gold) or gold
    return gold


def reward(completion: str, gold, style: str = "gsm8k") -> float:
    """Verifiable 0/1 reward: 1.0 when the completion's final answer equals ``gold``.

    Parameters
    ----------
    completion : str
        The model's response.
    gold : str or number
        The reference answer (``"72"``, ``"\\frac{\\pi}{2}"``) or a full
        reference solution (GSM8K ``... #### 72``, MATH ``... \\boxed{..}``).
    style : {"gsm8k", "boxed", "auto"}
        How to find the completion's answer (see :func:`extract_answer`).

    Examples
    --------
    >>> reward("9 * 2 = 18\\n#### 18", "Janet sells ... #### 18")
    1.0
    >>> reward(r"\\boxed{(3, \\frac{\\pi}{2})}", r"\\left( 3, \\frac{\\pi}{2} \\right)", style="boxed")
    1.0
    """
    return 1.0 if is_equiv(extract_answer(completion, style), _gold_answer(gold, style)) else 0.0


def rewards(completions, golds, style: str = "gsm8k") -> np.ndarray:
    """:func:`reward` over paired lists; returns a float64 array ``(n,)``.

    String work has no array form, so this is a list loop; numbers and text
    never reach sympy, which keeps it at microseconds per item for integer answers.

    Examples
    --------
    >>> rewards(["#### 1", "#### 2"], ["1", "1"])
    array([1., 0.])
    """
    completions, golds = list(completions), list(golds)
    if len(completions) != len(golds):
        raise ValueError(f"completions and golds must have equal length, got {len(completions)} and {len(golds)}")
    return np.fromiter((reward(c, g, style) for c, g in zip(completions, golds)), dtype=np.float64, count=len(golds))
