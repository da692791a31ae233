"""Property-based fuzzing of answer extraction and grading: any string up to 10^5 characters.

A completion is untrusted input, so for every string the grader returns a
verdict within ``LIMIT_S`` and never raises. Strings are drawn from random
unicode and from adversarial generators: runs of fragments that have broken
graders (long whitespace runs, nested and unclosed braces, ``\\boxed{``
without its ``}``, huge numbers and exponents, LaTeX commands, NUL bytes, lone
surrogates, right-to-left marks), placed where the grader reads them: the
whole completion, a ``\\boxed{}``, a ``####`` line, an "answer is" phrase,
and the gold answer itself.

The grader's limits count CPU seconds, so its wall-clock bound holds where
it has a core to itself: the limit is stretched by the machine's load per
core when that exceeds one (a shared CI box), and a call over it is retried
once before the test fails (a load spike is not a slow input; a slow input
is slow twice). The default run draws a modest number of examples;
``-m slow`` draws many more.
"""

import os
import re
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("math_verify")

from reproduce import rewards as R  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::reproduce.rewards.GradingWarning")

LIMIT_S = 1.0  # the bound on one grading call (issue 11)
MAX_CHARS = 10**5

FRAGMENTS = [
    " ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\x00", "\ufeff", "\u202e", "\u0301", "\ud800", "é", "𝑥", "中",
    "{", "}", "{{", "}}", "\\{", "\\}", "\\", "\\\\", "$", "\\$", "~", "\\,", "\\!", "%", "\\%",
    "\\boxed{", "\\boxed", "\\boxed ", "\\fbox{", "####", "#### ", "The answer is ", "final answer: ", "answer=",
    "\\frac{", "\\dfrac", "\\frac12", "\\sqrt{", "^{", "_{", "^", "\\left(", "\\right)", "\\left[", "\\right]",
    "\\text{", "\\mathrm{", "\\textbf{", "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\pi", "\\infty", "\\circ",
    "\\times10^{", "\\times 10^", "\\cdot", "*", "x", "e", "E+", "e-", "-", "+", ".", ",", "/", "=", ":", "(", ")",
    "0", "9", "99999", "1,000", "0.5", "1e400", "1e999999999", "10^{99999999}", "9^{9^{9^{9}}}", "2^{2^{40}}",
    "east", "x^2", "i", "dollars", "\\mbox{ m}", "(1, 2)", "[1, 2)",
]
GOLDS = [
    "204", "-3", "0", "1,450,000", "\\frac{14}{3}", "0.5", "4.5e33", "-1./3", "\\$18.90", "90^\\circ",
    "\\left( 3, \\frac{\\pi}{2} \\right)", "\\text{Evelyn}", "\\text{(C)}", "p - q", "x^5 - x^4 + x^3 - x^2 + x - 1",
    "3\\sqrt{13}", "[1, 2)", "6 - 5i", "$69$,$84$", "1e400", "Janet sells 16 - 3 - 4 = 9 eggs. #### 18",
    "so the answer is \\boxed{\\frac{1}{2}}.",
]


def _runs(max_run: int, max_chars: int):
    """Strings made of up to six runs of a fragment (or a short random string) repeated up to ``max_run``
    times: cheap to draw at 10^5 characters, and the shape that makes backtracking regexes blow up."""
    piece = st.one_of(st.sampled_from(FRAGMENTS), st.text(min_size=1, max_size=6))
    runs = st.lists(st.tuples(piece, st.integers(1, max_run)), min_size=1, max_size=6)
    return runs.map(lambda rs: "".join(p * n for p, n in rs)[:max_chars])


completions = st.one_of(st.text(max_size=200), _runs(40_000, MAX_CHARS))
# An answer short enough to reach the numeric, text and symbolic tiers (longer ones are refused at once).
answers = st.one_of(st.text(max_size=40), _runs(300, R.MAX_ANSWER_CHARS))
placements = st.sampled_from(["{}", "\\boxed{{{}}}", "$\\boxed{{{}}}$.", "#### {}", "The final answer is {}.",
                              "\\fbox{{{}}} and then \\boxed{{"])
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def warm_grader():
    """Start the math-verify grader process once (import and warm-up, ~2 s) outside the timed calls."""
    assert R.grade_answer("\\sqrt{4}", "2") == R.Grade(True)


def _timed(fn, *args):
    for _ in range(2):
        limit = LIMIT_S * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
        start = time.perf_counter()
        out = fn(*args)
        elapsed = time.perf_counter() - start
        if elapsed <= limit:
            return out
    pytest.fail(f"{fn.__name__} took {elapsed:.2f} s (> {limit:.2f} s) twice on {args!r:.300}")


# ----------------------------------------------------------------------------- extraction
def _extraction(text):
    for style in R.STYLES:
        ans = _timed(R.extract_answer, text, style)
        assert ans is None or (isinstance(ans, str) and ans in text.replace("\\$", "$") or ans in text)
    box = _timed(R.last_boxed, text)
    assert box is None or box in text
    num = _timed(R.parse_number, text)
    assert num is None or (isinstance(num[0], Fraction) and isinstance(num[1], bool))


test_extraction_fuzz = FAST(given(completions)(_extraction))
test_extraction_fuzz_slow = pytest.mark.slow(SLOW(given(completions)(_extraction)))


# ----------------------------------------------------------------------------- grading
def _grading(text, answer, placement, gold, style):
    assert _timed(R.reward, text, gold, style) in (0.0, 1.0)  # a whole completion
    assert _timed(R.reward, placement.format(answer), gold, style) in (0.0, 1.0)  # an answer where it is read
    grade = _timed(R.grade_answer, answer, gold)
    assert isinstance(grade.correct, bool) and (grade.failure is None or isinstance(grade.failure, str))
    grade = _timed(R.grade_answer, "42", answer)  # a gold that is garbage, at grading time
    assert isinstance(grade.correct, bool)


_grading_strategy = given(completions, answers, placements, st.sampled_from(GOLDS), st.sampled_from(R.STYLES))
test_grading_fuzz = FAST(_grading_strategy(_grading))
test_grading_fuzz_slow = pytest.mark.slow(SLOW(_grading_strategy(_grading)))


def _gold_loading(text):
    """Loading a gold answer either gives a usable answer or a ValueError: nothing else, ever."""
    for style in R.STYLES:
        try:
            gold = _timed(R.gold_answer, text, style)
        except ValueError as err:
            assert str(err).startswith("bad gold answer: ")
            continue
        assert gold == gold.strip() and 0 < len(gold) <= R.MAX_ANSWER_CHARS


test_gold_loading_fuzz = FAST(given(st.one_of(completions, answers))(_gold_loading))


# ----------------------------------------------------------------------------- exact invariants
@settings(max_examples=60, deadline=None)
@given(a=st.integers(-(10**990), 10**990) | st.integers(-30, 30),
       b=st.integers(-(10**990), 10**990) | st.integers(-30, 30), zeros=st.integers(0, 3), plus=st.booleans())
def test_integers_of_any_length_are_graded_exactly(a, b, zeros, plus):
    """Integers up to ~1000 digits (beyond a float, near int()'s digit limit), with signs and leading zeros."""
    pred = ("-" if a < 0 else "+" if plus else "") + "0" * zeros + str(abs(a))
    assert R.reward(f"#### {pred}", str(b)) == float(a == b)
    assert R.reward(f"\\boxed{{{pred}}}", f"\\boxed{{{b}}}", "boxed") == float(a == b)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 9), e=st.integers(-(10**12), 10**12) | st.integers(-1200, 1200), d=st.integers(-2, 2))
def test_numbers_with_any_exponent_are_graded_without_building_them(m, e, d):
    """``m e{e}`` against ``m e{e+d}``: equal exactly when d = 0, at any exponent, at once. Beyond
    ``10**MAX_EXPONENT`` only the same spelling is the same number, so ``m \\times 10^{e}`` matches then."""
    assert _timed(R.reward, f"#### {m}e{e}", f"{m}e{e + d}") == float(d == 0)
    got = _timed(R.reward, f"\\boxed{{{m}\\times10^{{{e}}}}}", f"{m}e{e + d}", "boxed")
    if abs(abs(e) - R.MAX_EXPONENT) > 2:  # the range ends within a factor of 10 of 10**MAX_EXPONENT
        assert got == float(d == 0 and abs(e) < R.MAX_EXPONENT)
    assert got == 0.0 or d == 0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="5.a k\\,;~\t\n{}x-^", max_size=14))
def test_linear_unit_tail_search_finds_what_a_plain_search_finds(text):
    """``_unit_tail`` starts its search late to stay linear: it must find exactly the plain search's match
    (here the original pattern, ``\\s*`` and all, which is cubic but harmless on short strings)."""
    plain = re.compile(r"(?<=[\d.])\s*(?:\\[,;:!]|~|\s)*\s*[A-Za-z][A-Za-z .^0-9{}\\/-]*\Z").search(text)
    fast = R._unit_tail(text)
    assert (fast and fast.span()) == (plain and plain.span())
