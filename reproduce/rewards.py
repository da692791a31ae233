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

Failure behaviour: a completion is untrusted input. :func:`reward`,
:func:`rewards`, :func:`grade_answer` and :func:`is_equiv` never raise on
any completion or answer string, and never hang:

* an extracted answer longer than ``MAX_ANSWER_CHARS`` is not an answer (0);
* numbers beyond ``10**MAX_EXPONENT`` in magnitude (``1e400`` is inside,
  ``1e99999999`` outside) are compared by spelling only, never built;
* every regular expression on the grading path runs in linear time;
* math-verify (sympy) runs in a separate *process* (POSIX only): a
  comparison is abandoned after ``SYMBOLIC_CPU_S`` CPU seconds, and its
  process killed (a warm copy replaces it) if it runs on regardless, or
  makes no progress for ``SYMBOLIC_WALL_S`` seconds. Limits count CPU, not
  wall, time, so a loaded machine grades the same answers; with a free
  core, a call returns within a second.

A comparison that could not be decided (time-out, an exception inside
math-verify, a dead worker) grades 0 and is reported: as the ``failure`` of
:func:`grade_answer` (the evaluator counts them) and as a
:class:`GradingWarning`. Gold answers are data, checked where they are
loaded by :func:`gold_answer` (a ``ValueError`` for a missing, empty or
over-long gold, an unclosed or empty ``\\boxed{}``, an empty ``####`` line);
a bad gold that still reaches :func:`reward` grades 0 with a warning. Only
an unknown ``style`` (a programming error) raises.

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
import numbers
import multiprocessing.connection
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from fractions import Fraction
from typing import NamedTuple

import numpy as np

__all__ = [
    "STYLES",
    "Grade",
    "GradingWarning",
    "extract_answer",
    "last_boxed",
    "parse_number",
    "gold_answer",
    "grade_answer",
    "is_equiv",
    "reward",
    "rewards",
]

STYLES = ("gsm8k", "boxed", "auto")

# CPU seconds math-verify may spend on one comparison (both parses and the verify): then a CPU-time
# alarm in its process abandons it, and if a C-level loop ignores the alarm the process is killed
# _KILL_GRACE_S CPU seconds later. CPU, not wall, time: a loaded machine grades the same answers.
# (The slowest valid self-comparison over MATH500, Minerva and OlympiadBench uses 0.31 s.)
SYMBOLIC_CPU_S = 0.5
# Wall-clock seconds after which a comparison is killed however little CPU it used (a stuck process);
# where a process's CPU time cannot be read (no /proc), SYMBOLIC_CPU_S + _KILL_GRACE_S wall seconds.
SYMBOLIC_WALL_S = 10.0
# Wall-clock seconds the grader process may take to import math-verify and warm up (once per process).
STARTUP_TIMEOUT_S = 120
# Relative tolerance for numbers written as decimals (rounded values): the
# Qwen2.5-Math evaluation's ``math_equal`` uses the same 1e-4.
REL_TOL = 1e-4
# Longer boxed contents are not answers (the model dumped its reasoning in the
# box); refusing them keeps sympy away from inputs it can take minutes on.
MAX_ANSWER_CHARS = 1000
# Numbers are compared as exact fractions up to 10**MAX_EXPONENT in magnitude (and down to its
# reciprocal); beyond, by spelling only, so ``1e99999999`` is never built.
MAX_EXPONENT = 1000


class GradingWarning(RuntimeWarning):
    """An answer could not be graded (bad gold, time-out, math-verify error) and counted as wrong."""


class Grade(NamedTuple):
    """Verdict of :func:`grade_answer`: ``correct``, and ``failure`` saying why the grader could not
    decide (the answer then counts as wrong), or ``None`` when it decided."""

    correct: bool
    failure: str | None = None


def _failed(reason: str) -> Grade:
    warnings.warn(f"{reason}; graded as wrong", GradingWarning, stacklevel=2)
    return Grade(False, reason)


# ----------------------------------------------------------------------------- extraction
# Every pattern here and below is linear in its input: no two adjacent or nested quantifiers can
# match the same characters (a run of whitespace has exactly one way to be split).
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|:|=)\s*(?::\s*)?(.+?)(?:\.\s*$|\.\s+[A-Z]|\n|$)",
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
_UNIT_TAIL = re.compile(r"(?<=[\d.])(?:\\[,;:!]|~|\s)*[A-Za-z][A-Za-z .^0-9{}\\/-]*\Z")  # via _unit_tail
_UNIT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz .^0123456789{}\\/-"  # _UNIT_TAIL's last class
_SEPARATORS_REVERSED = re.compile(r"(?:[,;:!]\\|~|\s)*")  # _UNIT_TAIL's separators, read backwards
_SCI_TAIL = re.compile(r"(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?$")  # base: what precedes
_FRAC = re.compile(r"^([+-]?)\\[dt]?frac\s*\{\s*([+-]?[\d.]+)\s*\}\s*\{\s*([+-]?[\d.]+)\s*\}$")
_FRAC_SHORT = re.compile(r"^([+-]?)\\[dt]?frac\s*(\d)\s*(\d)$")  # \frac12
_SLASH = re.compile(r"^([+-]?[\d.]+)\s*/\s*([+-]?[\d.]+)$")
_PLAIN = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_INT = re.compile(r"[+-]?\d+")
_MATH_WORDS = re.compile(r"(?i)(?:pi|sqrt|root|inf|infinity|log|ln|exp|sin|cos|tan)\b.*")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")


class _TooLarge(Exception):
    """A number beyond ``10**MAX_EXPONENT`` in magnitude, refused before it is built."""


def _exponent(digits: str) -> int:
    """A decimal exponent as an int, refusing one beyond ``MAX_EXPONENT`` before converting it."""
    core = digits.lstrip("+-").lstrip("0") or "0"
    if len(core) > len(str(MAX_EXPONENT)) or int(core) > MAX_EXPONENT:
        raise _TooLarge
    return -int(core) if digits.startswith("-") else int(core)


def _in_range(q: Fraction) -> Fraction:
    if q and abs(q.numerator.bit_length() - q.denominator.bit_length()) > MAX_EXPONENT * math.log2(10) + 1:
        raise _TooLarge
    return q


def _fraction(s: str) -> Fraction:
    """``Fraction(s)`` of a plain decimal, refusing huge exponents (``1e99999999``) before building them."""
    _, _, exp = s.lower().partition("e")
    if exp:
        _exponent(exp)
    try:
        return _in_range(Fraction(s))
    except ValueError as err:  # more digits than int() converts (sys.set_int_max_str_digits)
        raise _TooLarge from err


def _unit_tail(s: str):
    """``_UNIT_TAIL.search(s)`` in linear time.

    A search tries every start and runs each to the end of the string: quadratic on ``5a5a5a...(``.
    A tail lies in the longest suffix of unit characters, plus the separators just before it, so
    the search starts there.
    """
    k = len(s.rstrip(_UNIT_CHARS))
    return _UNIT_TAIL.search(s, k - _SEPARATORS_REVERSED.match(s[:k][::-1]).end())


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
    a single trailing letter is not (``5x`` is not a number). Strings longer
    than ``MAX_ANSWER_CHARS`` and numbers beyond ``10**MAX_EXPONENT`` in
    magnitude give ``None``.

    Examples
    --------
    >>> parse_number("$1,234")
    (Fraction(1234, 1), True)
    >>> parse_number(r"\\dfrac{3}{4}"), parse_number("0.5")
    ((Fraction(3, 4), True), (Fraction(1, 2), False))
    >>> parse_number(r"4.5 \\times 10^{33}")[0] == Fraction(45, 10) * 10**33
    True
    >>> parse_number("5x") is None, parse_number("1,2") is None, parse_number("1e99999999") is None
    (True, True, True)
    """
    try:
        return _parse_number(s)
    except _TooLarge:
        return None


def _parse_number(s: str) -> tuple[Fraction, bool] | None:
    """:func:`parse_number`, raising ``_TooLarge`` for a number beyond ``10**MAX_EXPONENT``."""
    if len(s) > MAX_ANSWER_CHARS:
        return None
    s = _clean(s)
    wrapped = _WRAPPERS.search(s) is not None  # \text{ m}: a one-letter unit is a unit when typeset as text
    for _ in range(2):  # \text{18 dollars} -> 18 dollars -> 18
        s = _WRAPPERS.sub(r" \1", s).strip()
    tail = _unit_tail(s)
    if tail is not None and _MATH_WORDS.fullmatch(tail.group(0).strip()):
        return None  # "2 pi", "3 sqrt 2": mathematics written in words, not a unit
    if tail is not None and (wrapped or len(re.sub(r"[^A-Za-z]", "", tail.group(0))) >= 2):
        s = s[: tail.start()].strip()
    if not s:
        return None
    m = _SCI_TAIL.search(s)
    if m and m.start() > 0:
        base = _parse_number(s[: m.start()])
        if base is None:
            return None
        return _in_range(base[0] * Fraction(10) ** _exponent(m.group(1))), False
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if _PLAIN.match(s):
        return _fraction(s), not re.search(r"[.eE]", s)
    m = _FRAC.match(s) or _FRAC_SHORT.match(s)
    if m:
        sign, num, den = m.groups()
        return _ratio(sign, num, den)
    m = _SLASH.match(s)
    if m:
        return _ratio("", *m.groups())
    return None


def _ratio(sign, num, den):
    if not (_PLAIN.match(num) and _PLAIN.match(den)) or _fraction(den) == 0:
        return None
    value = _in_range(_fraction(num) / _fraction(den))
    return (-value if sign == "-" else value), not re.search(r"[.eE]", num + den)


_REL_TOL_EXACT = Fraction(str(REL_TOL))


def _numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool:
    (x, x_exact), (y, y_exact) = a, b
    if x == y:
        return True
    if x_exact and y_exact:
        return False
    # A decimal is a rounded value: relative (not absolute) tolerance, so 1.2e-8 and 2.5e-10 differ.
    # Exact rational arithmetic: 1e400 has no float.
    return abs(x - y) <= _REL_TOL_EXACT * max(abs(x), abs(y))


def _same_integer(a: str, b: str) -> bool:
    """``int(a) == int(b)`` for ``[+-]?\\d+`` strings, without int()'s digit limit or cost."""

    def key(s):
        digits = s.lstrip("+-").lstrip("0")
        return ("-" if s.startswith("-") and digits else "") + digits

    return key(a) == key(b)


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


# math-verify's own limits (signal.alarm: whole wall-clock seconds) are off: a loaded machine would
# cut comparisons ours, in CPU seconds, allow. Its warning that they are off is silenced in the grader.
_MATH_VERIFY_TIMEOUT_S = None


@functools.lru_cache(maxsize=8192)
def _parse_cached(latex: str):
    from math_verify import parse

    # Wrap in a box so math-verify applies its boxed normalisation (units, \text, \dfrac, ...).
    return parse("\\boxed{" + latex + "}", parsing_timeout=_MATH_VERIFY_TIMEOUT_S)


def _verify_latex(pred: str, gold: str, pred_decimal: float | None = None) -> bool:
    """math-verify equivalence of two LaTeX answers (runs in the worker process: unbounded by itself).

    ``pred_decimal``: the prediction's value when it is a decimal number; it
    then also counts as equal to a *numeric* gold expression within
    ``REL_TOL`` (``0.8763`` for ``\\arcsin(10/13)``), since math-verify
    compares floats at 6 decimals only.
    """
    from math_verify import verify

    g, p = _parse_cached(gold), _parse_cached(pred)
    if not g or not p:
        return False
    if verify(g, p, timeout_seconds=_MATH_VERIFY_TIMEOUT_S):
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


# ----------------------------------------------------------------------------- the worker processes
# math-verify runs in a *grader* process the caller starts once (import and warm-up: ~2 s). The grader
# runs each comparison in a child it forks from its warm self (~10 ms), under two limits: a CPU-time
# alarm inside the child (which abandons the comparison and lives on), and the grader's watch on the
# child's CPU and wall time, which kills it (a C-level loop no signal interrupts, a stuck or dead
# child) and forks a fresh one. The caller only waits on the grader, which runs no untrusted work.

# First uses of a construct cost math-verify 0.05-0.3 s (grammar and sympy caches): paid once by the
# grader, before it forks, not out of a real answer's CPU budget.
_WARM_UP = [
    ("\\frac{1}{2}", "0.5"), ("(3, \\frac{\\pi}{2})", "(3,\\pi/2)"), ("[1, 2)", "[1,2)"), ("x^2+1", "1+x^2"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"), ("\\{1, 2\\}", "\\{2,1\\}"),
    ("x=5", "5"), ("\\sqrt{2}", "2^{1/2}"), ("6-5i", "-5i+6"), ("\\arcsin(10/13)", "0.8776"),
]
_KILL_GRACE_S = 0.2  # CPU seconds past SYMBOLIC_CPU_S before a child that ignores its alarm is killed
# Address space a comparison may add to what the grader maps (RLIMIT_AS, where the OS has it): a memory
# bomb raises MemoryError in the child instead of swapping the machine.
_CHILD_EXTRA_MEMORY = 2 * 1024**3
_POLL_S = 0.05  # how often the grader reads a running child's CPU time
# Extra wall-clock seconds the caller grants the grader beyond SYMBOLIC_WALL_S before it gives up on the
# grader itself (never expected: the grader only forwards) and starts a new one on the next call.
_GRADER_SLACK_S = 2.0
_DIED = ("died",)


class _OutOfTime(BaseException):
    """Raised in a child when its CPU-time alarm fires (a BaseException: math-verify catches Exception)."""


def _out_of_time(signum, frame):
    raise _OutOfTime


def _run_limited(fn, args, cpu_s):
    """``("ok", fn(*args))``, or ``("timeout",)`` after ``cpu_s`` CPU seconds, or ``("error", type)``."""
    try:
        signal.setitimer(signal.ITIMER_PROF, cpu_s)
        try:
            return ("ok", fn(*args))
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _OutOfTime:
        return ("timeout",)
    except Exception as err:  # noqa: BLE001 -- str(err) of a sympy object can itself hang: the type only
        return ("error", type(err).__name__)


class _Peer:
    """A process at the other end of two pipes: tasks out, replies in."""

    def __init__(self, task_w: int, reply_r: int, pid: int, popen=None):
        self.out = multiprocessing.connection.Connection(task_w, readable=False)
        self.conn = multiprocessing.connection.Connection(reply_r, writable=False)
        self.pid, self.popen, self.ready = pid, popen, False

    def send(self, message):
        self.out.send(message)

    def recv(self, timeout: float):
        """The next reply; ``None`` if none came within ``timeout`` seconds; ``_DIED`` if the process died."""
        if not multiprocessing.connection.wait([self.conn], timeout):
            return None
        try:
            return self.conn.recv()
        except (EOFError, OSError):  # its end of the pipe closed: it is gone
            return _DIED

    def kill(self):
        for close in (self.conn.close, self.out.close):
            close()
        if self.popen is not None:
            self.popen.kill()
            self.popen.wait()
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


def _limit_memory():
    """Cap this process's address space at its current size plus ``_CHILD_EXTRA_MEMORY`` (Linux)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + _CHILD_EXTRA_MEMORY, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ImportError, OSError, ValueError):
        pass  # no /proc or no such limit here: the CPU and wall limits still bound the child


def _fork_child(*inherited) -> _Peer:
    """Fork a comparison child from this (warm, single-threaded) grader; ``inherited`` fds it must close."""
    task_r, task_w = os.pipe()
    reply_r, reply_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: serve comparisons until the grader closes the pipe or kills it
        try:
            for fd in (task_w, reply_r, *inherited):
                os.close(fd)
            _limit_memory()
            tasks = multiprocessing.connection.Connection(task_r, writable=False)
            replies = multiprocessing.connection.Connection(reply_w, readable=False)
            signal.signal(signal.SIGPROF, _out_of_time)
            while True:
                fn, args, cpu_s = tasks.recv()
                replies.send(_run_limited(fn, args, cpu_s))
        finally:
            os._exit(0)
    os.close(task_r)
    os.close(reply_w)
    return _Peer(task_w, reply_r, pid)


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used, from Linux ``/proc``; ``None`` elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # after "pid (name)": fields 3, 4, ...
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _await_reply(child: _Peer, cpu_s: float, wall_s: float):
    """The child's reply; ``None`` once it has used ``cpu_s + _KILL_GRACE_S`` CPU seconds (wall seconds
    where its CPU time cannot be read) or ``wall_s`` wall seconds; ``_DIED`` if it died."""
    start, start_cpu = time.monotonic(), _cpu_seconds(child.pid)
    while True:
        reply = child.recv(_POLL_S)
        if reply is not None:
            return reply
        wall, cpu = time.monotonic() - start, _cpu_seconds(child.pid)
        used = wall if start_cpu is None or cpu is None else cpu - start_cpu
        if used > cpu_s + _KILL_GRACE_S or wall > wall_s:
            return None


def _grader_main(fd_in: int, fd_out: int):
    """The grader process: warm math-verify up, then run each task in a forked child under the limits."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # time-outs are ours to report
    tasks = multiprocessing.connection.Connection(fd_in, writable=False)
    replies = multiprocessing.connection.Connection(fd_out, readable=False)
    try:
        for pred, gold in _WARM_UP:
            _verify_latex(pred, gold, 0.8776)
    except Exception as err:  # noqa: BLE001 -- e.g. math-verify missing: the caller reports it
        replies.send(("failed", f"{type(err).__name__}: {err}"))
        return
    replies.send(("ready",))
    child = None
    while True:
        try:
            fn, args, cpu_s, wall_s = tasks.recv()
        except EOFError:  # the caller is gone
            break
        child = child or _fork_child(fd_in, fd_out)
        try:
            child.send((fn, args, cpu_s))
            reply = _await_reply(child, cpu_s, wall_s)
        except OSError:  # it died between tasks
            reply = _DIED
        if reply is None or reply is _DIED:
            child.kill()
            child = None
            reply = ("timeout",) if reply is None else ("error", "the math-verify child process died")
        replies.send(reply)
    if child is not None:
        child.kill()


def _start_grader() -> _Peer:
    """Start the grader: a plain ``python -c`` subprocess, not a ``multiprocessing`` child, which would
    re-import the caller's ``__main__`` and so re-run any script without a ``__name__`` guard."""
    task_r, task_w = os.pipe()
    reply_r, reply_w = os.pipe()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds the reproduce package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # no threads: it forks
    code = f"from reproduce.rewards import _grader_main; _grader_main({task_r}, {reply_w})"
    try:
        popen = subprocess.Popen(
            [sys.executable, "-c", code], pass_fds=(task_r, reply_w), env=env,
            stdin=subprocess.DEVNULL, start_new_session=True,  # no terminal Ctrl-C: its caller ends it
        )
    except BaseException:
        os.close(task_w)
        os.close(reply_r)
        raise
    finally:
        os.close(task_r)
        os.close(reply_w)
    return _Peer(task_w, reply_r, popen.pid, popen)


class _Grader:
    """The caller's handle on the grader process: started on first use, restarted if it is lost.

    Calls are serialised. If the grader cannot start (no POSIX ``fork``, math-verify missing, no answer
    within ``STARTUP_TIMEOUT_S``), the symbolic tier is off for this process and every comparison that
    needs it is a reported failure.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._peer: _Peer | None = None
        self.broken: str | None = None

    def _ready_peer(self) -> _Peer | None:
        if self._peer is None:
            try:
                self._peer = _start_grader()
            except Exception as err:  # noqa: BLE001 -- no executable, out of processes or descriptors
                self.broken = f"cannot start the math-verify grader process ({type(err).__name__}: {err})"
                return None
        if not self._peer.ready:
            message = self._peer.recv(STARTUP_TIMEOUT_S)
            if message != ("ready",):
                self._discard()
                why = message[1] if isinstance(message, tuple) and len(message) == 2 else (
                    "it exited" if message is _DIED else f"no answer within {STARTUP_TIMEOUT_S} s")
                self.broken = f"the math-verify grader process failed to start ({why})"
                return None
            self._peer.ready = True
        return self._peer

    def _discard(self):
        self._peer.kill()
        self._peer = None

    def run(self, fn, args) -> tuple:
        """``fn(*args)`` in a child of the grader: ``("ok", value)``, ``("timeout",)``, ``("error", what)``
        or ``("unavailable", why)``. Never raises on the grader's account."""
        with self._lock:
            for _ in range(2):  # a grader lost between calls never got the task: one fresh start
                peer = None if self.broken else self._ready_peer()
                if peer is None:
                    return ("unavailable", self.broken)
                try:
                    peer.send((fn, args, SYMBOLIC_CPU_S, SYMBOLIC_WALL_S))
                except OSError:
                    self._discard()
                    continue
                try:
                    reply = peer.recv(SYMBOLIC_WALL_S + _GRADER_SLACK_S)
                except BaseException:  # interrupted mid-task: its late reply must not answer the next call
                    self._discard()
                    raise
                if reply is None or reply is _DIED:
                    self._discard()
                    return ("error", "the math-verify grader process " + ("hung" if reply is None else "died"))
                return reply
            return ("error", "the math-verify grader process died")

    def close(self):
        """Stop the grader (at exit; a later call starts a new one)."""
        with self._lock:
            if self._peer is not None:
                self._discard()

    def forget(self):
        """Drop the handle without touching the process (in a forked child: it is the parent's)."""
        self._lock = threading.Lock()
        self._peer = None


_GRADER = _Grader()
atexit.register(_GRADER.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_GRADER.forget)


def _symbolic(pred: str, gold: str, pred_decimal: float | None) -> Grade:
    reply = _GRADER.run(_verify_latex, (pred, gold, pred_decimal))
    if reply[0] == "ok":
        return Grade(bool(reply[1]))
    if reply[0] == "timeout":
        return _failed(f"math-verify exceeded its time limit ({SYMBOLIC_CPU_S} CPU seconds)")
    if reply[0] == "error":
        return _failed(f"math-verify failed ({reply[1]})")
    return _failed(f"symbolic grading unavailable: {reply[1]}")


# ----------------------------------------------------------------------------- grading
def _as_string(value) -> str:
    """A gold answer as a string: a str, or a real number (int, finite float, numpy scalar); else ``ValueError``."""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        isinstance(value, numbers.Integral) or math.isfinite(value)
    ):
        try:
            return str(value)
        except ValueError:  # an int with more digits than str() converts
            raise ValueError(f"it is an int too long to print (> {MAX_ANSWER_CHARS} characters)") from None
    raise ValueError(f"it must be a string or a finite number, got {type(value).__name__}"
                     + (f" {value!r}" if isinstance(value, (bool, float)) or value is None else ""))


def _checked_answer(answer: str) -> str:
    answer = answer.strip()
    if not answer:
        raise ValueError("it is empty")
    if len(answer) > MAX_ANSWER_CHARS:
        raise ValueError(f"it is {len(answer)} characters long; no answer over MAX_ANSWER_CHARS="
                         f"{MAX_ANSWER_CHARS} is ever graded correct")
    return answer


def gold_answer(gold, style: str = "boxed") -> str:
    """The gold answer held by ``gold``: a bare answer, or a full reference solution.

    A GSM8K solution (``... #### 72``) gives its last ``####`` line; with a
    style other than ``"gsm8k"``, a MATH solution gives its last
    ``\\boxed{}``. Call it where gold answers are loaded: a gold that no
    response could ever match is a data error, raised here rather than
    scored 0 (or, for ``None``, 1) at grading time.

    Raises
    ------
    ValueError
        ``gold`` is not a string or finite number (``None``, a bool, NaN), is
        empty, has an empty last ``####`` line, an unclosed or empty
        ``\\boxed{``, or is longer than ``MAX_ANSWER_CHARS``.

    Examples
    --------
    >>> gold_answer("Janet sells 16 - 3 - 4 = 9 eggs ... #### 18"), gold_answer(r"so \\boxed{\\frac{1}{2}}.")
    ('18', '\\\\frac{1}{2}')
    >>> gold_answer(r"so \\boxed{\\frac{1}{2}.")
    Traceback (most recent call last):
    ...
    ValueError: bad gold answer: its last \\boxed{ is not closed: 'so \\\\boxed{\\\\frac{1}{2}.'
    """
    try:
        text = _as_string(gold)
        if "####" in text:
            answer = _gsm8k_answer(text)
            if answer is None:
                raise ValueError("its last '####' line is empty")
        elif style != "gsm8k" and _BOX_RE.search(text):
            answer = last_boxed(text)
            if answer is None:
                raise ValueError(f"its last \\boxed{{ is not closed: {text[-60:]!r}")
        else:
            answer = text
        return _checked_answer(answer)
    except ValueError as err:
        raise ValueError(f"bad gold answer: {err}") from None


def grade_answer(pred: str | None, gold) -> Grade:
    """Whether an extracted answer ``pred`` equals the gold answer ``gold``, and why if undecidable.

    Numbers, then text, then math-verify (see the module docstring). Never
    raises: a bad gold, a math-verify time-out or error gives
    ``Grade(False, failure=<why>)`` and a :class:`GradingWarning`; no answer
    (``None``) or an over-long one is simply wrong.

    Examples
    --------
    >>> grade_answer("0.5", r"\\frac12"), grade_answer("1e400", "1")
    (Grade(correct=True, failure=None), Grade(correct=False, failure=None))
    """
    try:
        try:
            gold = _checked_answer(_as_string(gold))
        except ValueError as err:
            return _failed(f"bad gold answer: {err}")
        return _grade(pred, gold)
    except Exception as err:  # noqa: BLE001 -- a grader bug must cost one answer, not a training run
        return _failed(f"grader error ({type(err).__name__})")


def _grade(pred, gold: str) -> Grade:
    if pred is None:
        return Grade(False)
    pred = str(pred).strip()
    if not pred or len(pred) > MAX_ANSWER_CHARS:
        return Grade(False)
    if _INT.fullmatch(pred) and _INT.fullmatch(gold):  # the trainer's common case, before any cleaning
        return Grade(_same_integer(pred, gold))
    try:
        gold_num = _parse_number(gold)
        if gold_num is None and re.search(r"\d[eE][+-]?\d", gold):
            gold_num = _parse_number(_gold_latex(gold))
        pred_num = _parse_number(pred)
    except _TooLarge:  # beyond 10**MAX_EXPONENT: only the same spelling is the same number
        return Grade(_clean(pred) == _clean(gold))
    if gold_num is not None and pred_num is not None:
        return Grade(_numbers_equal(pred_num, gold_num))
    gold_text = _as_text(gold, gold=True)
    if gold_text is not None:
        return Grade(_as_text(pred) == gold_text)
    gold_l, pred_l = _gold_latex(gold), re.sub(r"(?<!\\)\$", "", pred).strip()
    decimal = None
    if pred_num is not None and not pred_num[1]:
        try:
            decimal = float(pred_num[0])
        except OverflowError:  # a decimal beyond float range equals no gold expression math-verify evaluates
            decimal = None
    return _symbolic(pred_l, gold_l, decimal)


def is_equiv(pred: str | None, gold) -> bool:
    """Whether an extracted answer ``pred`` equals the gold answer ``gold`` (numbers, text, then math-verify).

    ``grade_answer(pred, gold).correct``: never raises.

    Examples
    --------
    >>> is_equiv(r"\\frac{\\pi}{2}", r"\\dfrac{\\pi}{2}"), is_equiv("(1, 2)", "(2, 1)")
    (True, False)
    >>> is_equiv("east", r"\\text{east}"), is_equiv(None, "3")
    (True, False)
    """
    return grade_answer(pred, gold).correct


# ----------------------------------------------------------------------------- rewards
def reward(completion: str, gold, style: str = "gsm8k") -> float:
    """Verifiable 0/1 reward: 1.0 when the completion's final answer equals ``gold``.

    Never raises on any ``completion`` or ``gold``: a completion that is not
    a string, or a gold that :func:`gold_answer` rejects, scores 0.0 with a
    :class:`GradingWarning`.

    Parameters
    ----------
    completion : str
        The model's response.
    gold : str or number
        The reference answer (``"72"``, ``"\\frac{\\pi}{2}"``) or a full
        reference solution (GSM8K ``... #### 72``, MATH ``... \\boxed{..}``).
    style : {"gsm8k", "boxed", "auto"}
        How to find the completion's answer (see :func:`extract_answer`).
        An unknown style raises ``ValueError``.

    Examples
    --------
    >>> reward("9 * 2 = 18\\n#### 18", "Janet sells ... #### 18")
    1.0
    >>> reward(r"\\boxed{(3, \\frac{\\pi}{2})}", r"\\left( 3, \\frac{\\pi}{2} \\right)", style="boxed")
    1.0
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    try:
        try:
            gold = gold_answer(gold, style)
        except ValueError as err:
            _failed(str(err))
            return 0.0
        if not isinstance(completion, str):
            _failed(f"the completion is a {type(completion).__name__}, not a str")
            return 0.0
        return 1.0 if grade_answer(extract_answer(completion, style), gold).correct else 0.0
    except Exception as err:  # noqa: BLE001 -- a grader bug must cost one answer, not a training run
        _failed(f"grader error ({type(err).__name__})")
        return 0.0


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
