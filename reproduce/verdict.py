"""Seed-level verdicts: a paired effect, its interval across seeds, and what the run could detect.

Every "holds / does not hold / undecided" in ``results/*.md`` comes from here. The
replicates are seeds: each seed is one independent training path, and the
quantity compared (an MSE averaged over that seed's measured steps, a final
accuracy, ...) is reduced to one number per seed and method before anything is
tested. Cells inside one seed (steps, prompts) are correlated and never count
as replicates.

For per-seed paired differences ``d_1..d_n`` (claimed direction positive):

- ``mean``, ``se = sd / sqrt(n)`` and the 95% t interval ``mean +- t_{0.975,n-1} se``;
- ``holds`` when the interval lies above 0, ``does not hold`` when it lies below
  0 (the opposite direction is established), ``undecided`` otherwise;
- ``mde``, the minimum detectable effect: the true mean difference a test at
  level 0.05 would detect with 80% power given the observed spread,
  ``(t_{0.975,n-1} + t_{0.80,n-1}) se``. An undecided verdict says the effect,
  if any, is likely smaller than this.

A re-run with other seeds can only move a verdict between ``undecided`` and a
decided one when the effect is near the interval's edge; the MDE says how near.

Examples
--------
>>> import numpy as np
>>> e = paired_effect(np.array([0.30, 0.25, 0.35, 0.28, 0.32]))
>>> e.verdict, round(e.mean, 3), e.n
('holds', 0.3, 5)
>>> paired_effect(np.array([0.1, -0.2, 0.05, -0.1, 0.12])).verdict
'undecided'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
POWER = 0.80
VERDICTS = ("holds", "does not hold", "undecided")


@dataclass(frozen=True)
class Effect:
    """A paired effect across seeds (claimed direction positive) and its verdict."""

    mean: float
    se: float
    low: float
    high: float
    n: int
    mde: float
    verdict: str

    def describe(self, unit: str = "", scale: float = 1.0, fmt: str = "+.3g") -> str:
        """``"+0.21 (95% CI +0.15 to +0.27, 5 seeds; detectable >= 0.08): holds"``."""
        u = f" {unit}" if unit else ""
        return (
            f"{scale * self.mean:{fmt}}{u} (95% CI {scale * self.low:{fmt}} to {scale * self.high:{fmt}}, "
            f"{self.n} seeds; smallest detectable effect {scale * self.mde:{fmt.lstrip('+')}}{u}): {self.verdict}"
        )


def paired_effect(diffs, level: float = LEVEL, power: float = POWER) -> Effect:
    """The verdict on per-seed paired differences ``diffs`` (one number per seed, claim: > 0).

    Parameters
    ----------
    diffs : array-like, shape (n_seeds,)
        ``claimed_better - other`` per seed, oriented so the paper's claim is a positive value.
        Non-finite values (a seed that lacks one side, a ratio to 0) are dropped.
    level : float
        Two-sided confidence level of the interval.
    power : float
        Power at which the minimum detectable effect is computed.

    Raises
    ------
    ValueError
        Fewer than 2 seeds, or ``level``/``power`` outside (0, 1).

    Examples
    --------
    >>> paired_effect([-0.4, -0.5, -0.45]).verdict
    'does not hold'
    """
    from scipy import stats

    if not (0 < level < 1 and 0 < power < 1):
        raise ValueError(f"level and power must lie in (0, 1), got {level!r}, {power!r}")
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    d = d[np.isfinite(d)]
    if d.size < 2:
        raise ValueError(f"a verdict needs per-seed differences from >= 2 seeds, got {d.size}")
    n = int(d.size)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(n))
    t_crit = float(stats.t.ppf(0.5 + level / 2, n - 1))
    low, high = mean - t_crit * se, mean + t_crit * se
    mde = (t_crit + float(stats.t.ppf(power, n - 1))) * se
    verdict = "holds" if low > 0 else ("does not hold" if high < 0 else "undecided")
    return Effect(mean, se, low, high, n, mde, verdict)


def describe_or_why(diffs, **fmt) -> tuple[str, Effect | None]:
    """``(paired_effect(diffs).describe(**fmt), effect)``, or a reason and None when fewer than 2 seeds
    give a finite difference (e.g. a reference MSE of exactly 0 in a toy run)."""
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    if np.isfinite(d).sum() < 2:
        return f"no verdict: {int(np.isfinite(d).sum())} seed(s) give a defined difference (need >= 2)", None
    eff = paired_effect(d)
    return eff.describe(**fmt), eff


def size_vs_claim(effect: Effect, claim) -> str:
    """How the effect's interval sits against the paper's claimed size.

    ``claim`` is a ``(low, high)`` range or a lower bound (same orientation and units as the
    effect); returns ``"below the paper's range"``, ``"inside"``, ``"above"`` or ``"overlaps"``.

    Examples
    --------
    >>> size_vs_claim(paired_effect([0.1, 0.12, 0.11]), (0.6, 0.7))
    "below the paper's range"
    """
    lo, hi = (claim, np.inf) if np.isscalar(claim) else claim
    if effect.high < lo:
        return "below the paper's range"
    if effect.low > hi:
        return "above the paper's range"
    if lo <= effect.low and effect.high <= hi:
        return "inside the paper's range"
    return "overlaps the paper's range"


def against_paper(effect: Effect, claim) -> str:
    """``"; paper <range>, ours <where>"``: a relative effect against the paper's claimed range or lower bound.

    Examples
    --------
    >>> against_paper(paired_effect([0.70, 0.69, 0.71]), (0.6, 0.73))
    "; paper 60%-73%, ours inside the paper's range"
    """
    return f"; paper {paper_range(claim)}, ours {size_vs_claim(effect, claim)}"


def paper_range(claim) -> str:
    """The paper's claimed range ``(low, high)`` or lower bound as percentages: ``"60%-73%"``, ``">90%"``."""
    lo, hi = (claim, None) if np.isscalar(claim) else claim
    return f"{100 * lo:g}%-{100 * hi:g}%" if hi is not None else f">{100 * lo:g}%"


def per_seed(df, value: str, by: str = "estimator", seed: str = "seed"):
    """``df`` reduced to one number per (seed, ``by``): the mean of ``value`` over that seed's cells.

    Returns a wide frame (index seed, one column per ``by`` value), the unit every verdict uses.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"seed": [0, 0, 1, 1], "step": [1, 2, 1, 2], "estimator": ["a"] * 4, "v": [1.0, 3.0, 2.0, 2.0]})
    >>> per_seed(df, "v")["a"].tolist()
    [2.0, 2.0]
    """
    return df.pivot_table(index=seed, columns=by, values=value, aggfunc="mean", sort=False)


def relative_reduction(wide, ours: str, ref: str) -> np.ndarray:
    """Per-seed ``1 - ours / ref`` from a :func:`per_seed` frame (positive: ``ours`` is lower).

    Examples
    --------
    >>> import pandas as pd
    >>> relative_reduction(pd.DataFrame({"kae": [1.0, 2.0], "grpo": [2.0, 4.0]}), "kae", "grpo").tolist()
    [0.5, 0.5]
    """
    return (1.0 - wide[ours] / wide[ref]).to_numpy(dtype=np.float64)


def reduction_sentence(wide, ours: str, ref: str, what: str, claim=None) -> tuple[str, Effect | None]:
    """One finding: ``ours`` lowers ``what`` relative to ``ref`` (per-seed ``1 - ours/ref``), with its
    seed-level verdict and, given the paper's ``claim`` (a ``(low, high)`` range or a lower bound of the
    reduction), where the size sits against it. Returns ``(sentence, effect)``."""
    if ours not in wide.columns or ref not in wide.columns:
        return f"{ours} or {ref} was not measured: no comparison.", None
    if len(wide) < 2:
        return f"{ours} vs {ref}: one seed only, no verdict (run >= 2 seeds).", None
    described, eff = describe_or_why(relative_reduction(wide, ours, ref), fmt="+.1%")
    text = f"{ours} vs {ref}, {what}: {wide[ours].mean():.4g} vs {wide[ref].mean():.4g}; reduction {described}"
    if claim is not None and eff is not None:
        text += against_paper(eff, claim)
    return text + ".", eff


def difference_sentence(wide, ours: str, ref: str, what: str, claim=None) -> tuple[str, Effect | None]:
    """Like :func:`reduction_sentence`, for quantities whose per-seed ratios are ill-conditioned (near 0 or of
    either sign, such as extrapolated or rescaled MSEs): the verdict is on the per-seed difference
    ``ref - ours``. The relative reduction beside it is the ratio of the seed means, given without an interval
    (one test per claim), with the paper's ``claim`` beside it."""
    if ours not in wide.columns or ref not in wide.columns:
        return f"{ours} or {ref} was not measured: no comparison.", None
    described, eff = describe_or_why((wide[ref] - wide[ours]).to_numpy(), fmt=".3g")
    mean_ref = float(wide[ref].mean())
    text = f"{ours} vs {ref}, {what}: {wide[ours].mean():.3g} vs {mean_ref:.3g}; {ref} - {ours} = {described}"
    if eff is not None and mean_ref > 0:
        text += f"; relative reduction {eff.mean / mean_ref:+.1%} of {ref}'s mean"
        if claim is not None:
            text += f" (paper {paper_range(claim)})"
    return text + ".", eff