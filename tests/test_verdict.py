"""The seed-level verdict logic on synthetic inputs: right verdicts, calibrated intervals, stable re-runs."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from reproduce.verdict import paired_effect, per_seed, reduction_sentence, relative_reduction, size_vs_claim


def test_clear_effects_get_their_verdicts():
    assert paired_effect([0.30, 0.25, 0.35, 0.28, 0.32]).verdict == "holds"
    assert paired_effect([-0.30, -0.25, -0.35, -0.28, -0.32]).verdict == "does not hold"
    assert paired_effect([0.1, -0.2, 0.05, -0.1, 0.12]).verdict == "undecided"


def test_interval_and_detectable_effect_match_the_t_distribution():
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    e = paired_effect(d)
    se = d.std(ddof=1) / np.sqrt(5)
    t = stats.t.ppf(0.975, 4)
    assert e.se == pytest.approx(se) and (e.low, e.high) == pytest.approx((3 - t * se, 3 + t * se))
    assert e.mde == pytest.approx((t + stats.t.ppf(0.8, 4)) * se)


def test_nan_seeds_are_dropped_and_too_few_seeds_refused():
    assert paired_effect([1.0, np.nan, 1.2, 0.9]).n == 3
    with pytest.raises(ValueError, match=">= 2 seeds"):
        paired_effect([1.0, np.nan])
    with pytest.raises(ValueError, match="level"):
        paired_effect([1.0, 2.0], level=1.5)


def test_false_positive_rate_is_the_nominal_level():
    # Under no effect, "holds" or "does not hold" happens in ~5% of runs of 5 seeds.
    rng = np.random.default_rng(0)
    decided = np.mean([paired_effect(rng.normal(0, 1, 5)).verdict != "undecided" for _ in range(4000)])
    assert decided == pytest.approx(0.05, abs=3 * np.sqrt(0.05 * 0.95 / 4000))


def test_power_at_the_detectable_effect_is_about_80_percent():
    # The MDE is defined at 80% power; with sd known to the generator, a true effect equal to the
    # expected MDE is detected about 80% of the time (t-approximation, so a loose band).
    rng = np.random.default_rng(1)
    n, sd = 8, 1.0
    mde = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / np.sqrt(n)
    hits = np.mean([paired_effect(rng.normal(mde, sd, n)).verdict == "holds" for _ in range(3000)])
    assert 0.70 < hits < 0.86


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000))
def test_large_effects_are_stable_under_reruns_with_other_seeds(seed):
    # An effect of 6 seed-SDs is "holds" for any draw of 5 seeds, and for machine-level noise on top
    # (a re-run with different floating point perturbs each seed's value by ~1e-9 relative).
    rng = np.random.default_rng(seed)
    d = rng.normal(6.0, 1.0, 5)
    assert paired_effect(d).verdict == "holds"
    assert paired_effect(d * (1 + 1e-9 * rng.standard_normal(5))).verdict == "holds"


def test_size_against_the_papers_claim():
    e = paired_effect([0.10, 0.12, 0.11, 0.09])
    assert size_vs_claim(e, (0.6, 0.73)) == "below the paper's range"
    assert size_vs_claim(e, (0.01, 0.05)) == "above the paper's range"
    assert size_vs_claim(e, (0.0, 0.5)) == "inside the paper's range"
    assert size_vs_claim(e, 0.105) == "overlaps the paper's range"


def test_per_seed_averages_cells_before_comparing():
    df = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "step": [1, 2, 3] * 2, "estimator": ["kae"] * 6,
                       "v": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    assert per_seed(df, "v")["kae"].tolist() == [2.0, 5.0]


def test_reduction_sentence_reports_the_seed_level_verdict():
    wide = pd.DataFrame({"kae": [1.0, 1.1, 0.9, 1.0], "grpo": [2.0, 2.1, 1.9, 2.2]})
    assert relative_reduction(wide, "kae", "grpo") == pytest.approx([0.5, 1 - 1.1 / 2.1, 1 - 0.9 / 1.9, 1 - 1 / 2.2])
    text, eff = reduction_sentence(wide, "kae", "grpo", "value MSE", (0.6, 0.73))
    assert eff.verdict == "holds" and "holds" in text and "below the paper's range" in text
    text, eff = reduction_sentence(wide.iloc[:1], "kae", "grpo", "value MSE")
    assert eff is None and "one seed" in text
    assert reduction_sentence(wide, "kae", "spo", "value MSE")[1] is None
