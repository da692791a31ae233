"""KernelValueEstimator: scikit-learn compliance, statistics, and input errors."""

import doctest
import warnings

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import kernelvalue.estimator as estimator_module
from kernelvalue.estimator import KernelValueEstimator, _sklearn_expected_failed_checks
from kernelvalue.smoothing import smoother_matrix

# ----------------------------------------------------------- scikit-learn

# Fast instances in the default suite: a fixed bandwidth (NW), a rule (LL) and
# a CV criterion on a short grid (grid = absolute h in 1-D, multiples of the
# per-feature sd in d-D). The defaults (LOO on the full grid) run the same
# checks in the slow suite: they take ~35 s because the checks fit 10-D data
# dozens of times.
FAST = [
    KernelValueEstimator(kernel="gaussian", bandwidth=1.0),
    KernelValueEstimator(kernel="gaussian", degree=1, bandwidth="scott"),
    KernelValueEstimator(bandwidth="gcv", grid=[0.5, 1.0, 2.0, 4.0]),
]
DEFAULTS = [KernelValueEstimator(), KernelValueEstimator(degree=1)]


@parametrize_with_checks(FAST, expected_failed_checks=_sklearn_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        # Grid-edge and no-data warnings are expected on the checks' toy data.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        check(estimator)


@pytest.mark.slow
@parametrize_with_checks(DEFAULTS, expected_failed_checks=_sklearn_expected_failed_checks)
def test_sklearn_compatible_defaults(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        check(estimator)


def _sine(rng, n=300, sigma=0.3):
    X = rng.uniform(0, 1, size=(n, 1))
    m = np.sin(2 * np.pi * X[:, 0])
    return X, m + sigma * rng.standard_normal(n), m


def test_grid_search_tunes_float_bandwidth(rng):
    X, y, _ = _sine(rng)
    grid = [0.01, 0.03, 0.07, 0.15, 0.4]
    with warnings.catch_warnings():
        # h = 0.01 leaves some held-out points without neighbours: NaN by
        # policy, so GridSearchCV scores that candidate NaN and skips it.
        warnings.simplefilter("ignore")
        search = GridSearchCV(KernelValueEstimator(degree=1), {"bandwidth": grid}, cv=5).fit(X, y)
    assert np.isnan(search.cv_results_["mean_test_score"][0])
    # The LOO optimum here is ~0.09 (MISE-optimal h ~ 0.1 for this m, sigma,
    # n): 5-fold CV must pick a neighbouring grid value, not an extreme.
    assert search.best_params_["bandwidth"] in (0.07, 0.15)
    loo = KernelValueEstimator(degree=1).fit(X, y)
    assert 0.03 < loo.bandwidth_ < 0.15
    best = search.best_estimator_
    np.testing.assert_array_equal(best.predict(X), KernelValueEstimator(degree=1, bandwidth=best.bandwidth).fit(X, y).predict(X))


def test_pipeline_with_scaler_is_unit_free(rng):
    X, y, _ = _sine(rng)
    Xs = 1e3 * X + 5e3  # other units
    pipe = make_pipeline(StandardScaler(), KernelValueEstimator(degree=1, bandwidth="loo")).fit(Xs, y)
    direct = KernelValueEstimator(degree=1, bandwidth="loo").fit(X, y)
    # Standardising is an affine map; LOO is affine-equivariant, so the
    # bandwidths agree up to the scale factor (to the optimiser's tolerance)
    # and the predictions up to that tolerance's effect.
    sd = X[:, 0].std()
    assert pipe[-1].bandwidth_ * sd == pytest.approx(direct.bandwidth_, rel=1e-3)
    np.testing.assert_allclose(pipe.predict(Xs[:20]), direct.predict(X[:20]), atol=1e-3)
    assert pipe.score(Xs, y) > 0.8


def test_pandas_input(rng):
    pd = pytest.importorskip("pandas")
    X, y, _ = _sine(rng, n=120)
    X2 = np.column_stack([X[:, 0], rng.uniform(0, 1, 120)])
    df = pd.DataFrame(X2, columns=["dose", "age"])
    est = KernelValueEstimator(bandwidth=[0.2, 0.5]).fit(df, pd.Series(y))
    np.testing.assert_array_equal(est.feature_names_in_, ["dose", "age"])
    assert est.n_features_in_ == 2
    ref = KernelValueEstimator(bandwidth=[0.2, 0.5]).fit(X2, y)
    np.testing.assert_allclose(est.predict(df.iloc[:10]), ref.predict(X2[:10]), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(df[["age", "dose"]].rename(columns={"age": "x", "dose": "z"}))
    assert est.score(df, y) == pytest.approx(ref.score(X2, y))


# ------------------------------------------------------------ statistics


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_effective_df_and_sigma2_match_explicit_smoother(rng, degree, weighted):
    X, y, _ = _sine(rng, n=80)
    w = rng.integers(1, 4, size=80).astype(float) if weighted else None
    est = KernelValueEstimator(degree=degree, bandwidth=0.15, kernel="biweight").fit(X, y, sample_weight=w)
    S = smoother_matrix(X, None, 0.15, "biweight", degree, w)
    assert est.effective_df_ == pytest.approx(np.trace(S), abs=1e-10)
    r = y - S @ y
    if w is None:
        expected = r @ r / (len(y) - 2 * np.trace(S) + np.sum(S * S))
    else:
        # Frequency weights: the formula on the expanded data, tr(S S^T) ->
        # sum_ij w_i S_ij^2 / w_j.
        expected = (w * r) @ r / (w.sum() - 2 * np.trace(S) + np.sum(w[:, None] * S**2 / w[None, :]))
    assert est.sigma2_ == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("degree", [0, 1])
def test_integer_weights_equal_duplicated_rows(rng, degree):
    X, y, _ = _sine(rng, n=60)
    w = rng.integers(0, 4, size=60)
    w[0] = 2
    x_eval = np.linspace(0.05, 0.95, 11)[:, None]
    a = KernelValueEstimator(degree=degree, bandwidth=0.2).fit(X, y, sample_weight=w.astype(float))
    b = KernelValueEstimator(degree=degree, bandwidth=0.2).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    assert a.effective_df_ == pytest.approx(b.effective_df_, abs=1e-10)
    assert a.sigma2_ == pytest.approx(b.sigma2_, rel=1e-10)
    for pa, pb in zip(a.predict(x_eval, return_std=True), b.predict(x_eval, return_std=True)):
        np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-10)


@pytest.mark.parametrize("degree", [0, 1])
def test_sigma2_estimates_noise_variance(rng, degree):
    n, sigma = 800, 0.5
    X, y, _ = _sine(rng, n=n, sigma=sigma)
    est = KernelValueEstimator(degree=degree, bandwidth="loo").fit(X, y)
    # Var(sigma2_hat) ~ 2 sigma^4 / (n - df) for Gaussian noise: sd ~ 0.0093;
    # squared smoothing bias is O(h^4 m''^2) ~ 1e-4 at the LOO h. 4 sd + bias.
    assert est.sigma2_ == pytest.approx(sigma**2, abs=4 * sigma**2 * np.sqrt(2 / (n - est.effective_df_)) + 1e-3)
    # The naive RSS / n is biased low by about sigma^2 (2 tr S - tr SS^T) / n.
    naive = np.mean((y - est.predict(X)) ** 2)
    assert naive < est.sigma2_


def test_predict_interval_is_prediction_plus_minus_z_std(rng):
    X, y, _ = _sine(rng, n=100)
    est = KernelValueEstimator(degree=1, bandwidth=0.15).fit(X, y)
    x = np.linspace(0, 1, 9)[:, None]
    pred, std = est.predict(x, return_std=True)
    for level in (0.5, 0.9, 0.95):
        lo, hi = est.predict_interval(x, level=level)
        z = norm.ppf(0.5 + level / 2)
        np.testing.assert_allclose(lo, pred - z * std, rtol=0, atol=1e-14)
        np.testing.assert_allclose(hi, pred + z * std, rtol=0, atol=1e-14)
    # std is sqrt(sigma2_ * ||l(x)||^2), with l the smoother rows.
    L = smoother_matrix(X, x, 0.15, "epanechnikov", 1)
    np.testing.assert_allclose(std, np.sqrt(est.sigma2_ * np.sum(L**2, axis=1)), rtol=1e-12)


def test_interval_coverage_and_std_on_simulated_data():
    # Local linear reproduces lines, so for a linear m the estimate is exactly
    # unbiased and, with Gaussian noise and a fixed design, exactly normal with
    # sd sigma ||l(x)||. The nominal 95% then holds up to estimating sigma^2
    # (t with ~n - 2 df instead of normal: 95% -> ~94.7% at n = 80).
    rng = np.random.default_rng(7)
    n, reps, sigma = 80, 400, 0.4
    X = rng.uniform(0, 1, size=(n, 1))
    x = np.array([[0.1], [0.3], [0.5], [0.7], [0.9]])
    m = lambda t: 1.0 - 2.0 * t  # noqa: E731
    covered, preds, stds = [], [], []
    for _ in range(reps):
        y = m(X[:, 0]) + sigma * rng.standard_normal(n)
        est = KernelValueEstimator(degree=1, bandwidth=0.15).fit(X, y)
        lo, hi = est.predict_interval(x)
        p, s = est.predict(x, return_std=True)
        covered.append((lo <= m(x[:, 0])) & (m(x[:, 0]) <= hi))
        preds.append(p)
        stds.append(s)
    coverage = np.mean(covered)
    # Binomial sd of a single point's coverage over 400 reps is 0.011; the
    # average over 5 (positively correlated) points has sd <= that: 4 sd.
    assert abs(coverage - 0.947) < 0.045
    # Monte-Carlo sd of the estimate matches the formula (with true sigma)
    # to the sd's own sampling error 1/sqrt(2 * 400) = 3.5%: 4 sd.
    L = smoother_matrix(X, x, 0.15, "epanechnikov", 1)
    exact_sd = sigma * np.sqrt(np.sum(L**2, axis=1))
    np.testing.assert_allclose(np.std(preds, axis=0, ddof=1), exact_sd, rtol=0.14)
    np.testing.assert_allclose(np.mean(stds, axis=0), exact_sd, rtol=0.05)


def test_interval_undercovers_where_bias_is_large():
    # The bands ignore smoothing bias (documented): at the peak of sin(2 pi x)
    # an oversmoothed NW fit is biased by ~ h^2 mu2 m''/2 and misses m.
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, size=(400, 1))
    y = np.sin(2 * np.pi * X[:, 0]) + 0.1 * rng.standard_normal(400)
    est = KernelValueEstimator(bandwidth=0.25).fit(X, y)
    lo, hi = est.predict_interval(np.array([[0.25]]))
    assert hi[0] < 1.0  # m(0.25) = 1 lies above the band


def test_cv_results_and_bandwidth(rng):
    from kernelvalue.bandwidth import loo_score

    X, y, _ = _sine(rng, n=150)
    est = KernelValueEstimator(degree=1, bandwidth="loo").fit(X, y)
    cv = est.cv_results_
    assert set(cv) == {"bandwidth", "score"} and cv["bandwidth"].shape == cv["score"].shape
    # The refined bandwidth is at least as good as every grid point.
    assert loo_score(X, y, est.bandwidth_, kernel="epanechnikov", degree=1) <= np.nanmin(cv["score"]) + 1e-12
    assert KernelValueEstimator(bandwidth=0.1).fit(X, y).cv_results_ is None
    assert KernelValueEstimator(bandwidth="silverman").fit(X, y).cv_results_ is None


def test_binned_path(rng):
    binned = pytest.importorskip("kernelvalue.binned")
    X, y, _ = _sine(rng, n=400)
    exact = KernelValueEstimator(degree=1, bandwidth=0.08, binned=False).fit(X, y)
    fast = KernelValueEstimator(degree=1, bandwidth=0.08, binned=True).fit(X, y)
    assert fast.binned_ and not exact.binned_
    x = np.linspace(0.05, 0.95, 19)[:, None]
    # Linear binning errors are O((range / grid_size)^2 / h^2) relative: loose check.
    np.testing.assert_allclose(fast.predict(x), exact.predict(x), atol=1e-2)
    assert fast.effective_df_ == pytest.approx(exact.effective_df_, rel=0.05)
    assert fast.sigma2_ == pytest.approx(exact.sigma2_, rel=0.05)
    n = binned.BINNED_THRESHOLD + 1
    big = KernelValueEstimator(bandwidth=0.05).fit(rng.uniform(0, 1, (n, 1)), rng.standard_normal(n))
    assert big.binned_  # "auto" switches on above the threshold (1-D)
    assert not KernelValueEstimator(bandwidth=0.05).fit(X, y).binned_


def test_no_data_at_predict_gives_nan_and_warning(rng):
    X, y, _ = _sine(rng, n=50)
    est = KernelValueEstimator(bandwidth=0.1).fit(X, y)
    with pytest.warns(RuntimeWarning, match="no \\(or too few\\) training points"):
        pred, std = est.predict(np.array([[0.5], [3.0]]), return_std=True)
    assert np.isfinite(pred[0]) and np.isnan(pred[1]) and np.isnan(std[1])


# ------------------------------------------------------------- bad input


@pytest.fixture
def data(rng):
    X, y, _ = _sine(rng, n=30)
    return X, y


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda X, y: (np.where(np.arange(30)[:, None] == 3, np.nan, X), y), "Input X contains NaN"),
        (lambda X, y: (np.where(np.arange(30)[:, None] == 3, np.inf, X), y), "Input X contains infinity"),
        (lambda X, y: (X, np.where(np.arange(30) == 3, np.nan, y)), "Input y contains NaN"),
        (lambda X, y: (X, y[:-1]), "X has 30 samples but y has 29; pass one response"),
        (lambda X, y: (X[:0], y[:0]), "0 sample"),
        (lambda X, y: (X[:, 0], y), "Expected 2D array"),
    ],
)
def test_bad_data_raises(data, mutate, match):
    X, y = mutate(*data)
    with pytest.raises(ValueError, match=match):
        KernelValueEstimator(bandwidth=0.2).fit(X, y)


def test_bad_foreign_data_raises(data):
    torch = pytest.importorskip("torch")
    X, y = (torch.asarray(a) for a in data)
    Xn = X.clone()
    Xn[3, 0] = float("nan")
    with pytest.raises(ValueError, match="Input X contains NaN or infinity"):
        KernelValueEstimator(bandwidth=0.2).fit(Xn, y)
    with pytest.raises(ValueError, match="X has 30 samples but y has 29"):
        KernelValueEstimator(bandwidth=0.2).fit(X, y[:-1])
    with pytest.raises(ValueError, match="Expected 2D array"):
        KernelValueEstimator(bandwidth=0.2).fit(X[:, 0], y)
    with pytest.raises(ValueError, match="0 sample"):
        KernelValueEstimator(bandwidth=0.2).fit(X[:0], y[:0])
    est = KernelValueEstimator(bandwidth=0.2).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but KernelValueEstimator is expecting 1"):
        est.predict(torch.zeros((3, 2), dtype=torch.float64))


@pytest.mark.parametrize(
    "params,match",
    [
        ({"bandwidth": 0.0}, "bandwidth must be finite and > 0"),
        ({"bandwidth": -0.3}, "bandwidth must be finite and > 0"),
        ({"bandwidth": [0.1, 0.2]}, "one bandwidth or one per feature"),
        ({"bandwidth": "cv"}, r"bandwidth='cv' is not a known selection method.*'loo'"),
        ({"kernel": "gauss"}, r"kernel='gauss' is unknown; choose one of .*'epanechnikov'"),
        ({"degree": 2}, "degree=2 is not supported; pass 0"),
        ({"binned": "yes"}, "binned='yes' is invalid"),
        ({"n_folds": 1}, "n_folds=1 is invalid"),
        ({"chunk_size": 0}, "chunk_size=0 is invalid"),
    ],
)
def test_bad_params_raise(data, params, match):
    with pytest.raises(ValueError, match=match):
        KernelValueEstimator(**{"bandwidth": 0.2, **params}).fit(*data)


def test_other_errors(data):
    X, y = data
    with pytest.raises(NotFittedError):
        KernelValueEstimator().predict(X)
    est = KernelValueEstimator(bandwidth=0.2).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but KernelValueEstimator is expecting 1"):
        est.predict(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="level=1.5 is invalid"):
        est.predict_interval(X, level=1.5)
    with pytest.raises(ValueError, match="binned=True needs one feature"):
        KernelValueEstimator(bandwidth=0.2, binned=True).fit(np.column_stack([X, X]), y)
    with pytest.raises(ValueError, match="n_samples=1"):
        KernelValueEstimator(bandwidth="loo").fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="sample_weight"):
        KernelValueEstimator(bandwidth=0.2).fit(X, y, sample_weight=-np.ones(30))
    with pytest.raises(ValueError, match="[Ss]ample.weight.*(non-zero|sums to zero)"):
        KernelValueEstimator(bandwidth=0.2).fit(X, y, sample_weight=np.zeros(30))


def test_interpolating_smoother_warns_and_gives_nan_sigma2():
    X = np.arange(10.0)[:, None]
    with pytest.warns(RuntimeWarning, match="interpolates"):
        est = KernelValueEstimator(bandwidth=0.5).fit(X, np.sin(X[:, 0]))
    assert est.effective_df_ == pytest.approx(10.0) and np.isnan(est.sigma2_)


# ----------------------------------------------------- docs and the demo


def test_docstring_examples():
    result = doctest.testmod(estimator_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_demo_runs_and_saves_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from kernelvalue.demo import SIGMA, main, run_demo

    out = tmp_path / "fig" / "demo.png"
    assert main(["--out", str(out), "--n", "150", "--seed", "1"]) == 0
    assert out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "nadaraya-watson" in printed and "local linear" in printed
    rows = run_demo(n=300, seed=2, out=None)
    for r in rows.values():
        # sigma2 near 0.09 (sd ~ 0.09 * sqrt(2 / 290) = 0.0075, plus bias): 0.03.
        assert r["sigma2"] == pytest.approx(SIGMA**2, abs=0.03)
        assert r["test_mse"] < 0.02  # ~ sigma^2 df / n ~ 0.003 at this n


# ------------------------------------------------ hostile inputs (issue 11)


@pytest.mark.parametrize("bandwidth", [None, True, False, np.True_])
def test_bandwidth_none_or_bool_is_rejected_by_name(data, bandwidth):
    with pytest.raises(ValueError, match=f"bandwidth={bandwidth!r} is invalid"):
        KernelValueEstimator(bandwidth=bandwidth).fit(*data)


@pytest.mark.parametrize("scale", [1e200, 1e160])
def test_overflowing_y_names_y_and_the_fix(data, scale):
    X, y = data
    with pytest.raises(ValueError, match="y is too large for float64.*Rescale y"):
        KernelValueEstimator(bandwidth=0.2).fit(X, y * scale)


def test_overflowing_weights_name_sample_weight(data):
    X, y = data
    with pytest.raises(ValueError, match="sample_weight is too large.*divide them by their mean"):
        KernelValueEstimator(bandwidth=0.2).fit(X, y, sample_weight=np.full(30, 1e307))
    # Large but harmless weights are fine: only their ratios matter.
    a = KernelValueEstimator(bandwidth=0.2).fit(X, y, sample_weight=np.full(30, 1e100))
    b = KernelValueEstimator(bandwidth=0.2).fit(X, y)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-12)


def test_half_precision_torch_input_is_fitted_in_float32(data):
    torch = pytest.importorskip("torch")
    X, y = data
    for dtype in (torch.bfloat16, torch.float16):
        Xh, yh = torch.asarray(X, dtype=dtype), torch.asarray(y, dtype=dtype)
        est = KernelValueEstimator(bandwidth=0.2).fit(Xh, yh)
        pred = est.predict(Xh)
        assert est.X_fit_.dtype == torch.float32 and pred.dtype == torch.float32
        ref = KernelValueEstimator(bandwidth=0.2).fit(Xh.float(), yh.float()).predict(Xh.float())
        assert torch.equal(pred, ref)


def test_far_outlier_in_x_does_not_flatten_the_fit(rng):
    X, y, _ = _sine(rng, n=300)
    Xo, yo = np.vstack([X, [[1000.0]]]), np.append(y, 0.0)
    clean = KernelValueEstimator(degree=1).fit(X, y)
    # The fit at the outlier itself has no data within reach: warned, NaN.
    with pytest.warns(UserWarning, match=r"1 row\(s\) of X lie far outside.*X\[300\] = \[1000\.\]"), \
            pytest.warns(RuntimeWarning, match="1 training point"):
        est = KernelValueEstimator(degree=1).fit(Xo, yo)
    # The outlier is left out of the criterion and the grid, so the search
    # finds the bulk's bandwidth instead of one wide enough to reach it.
    assert est.bandwidth_ == pytest.approx(clean.bandwidth_, rel=1e-6)
    assert est.bandwidth_ < 0.2 and not est.bandwidth_at_edge_


@pytest.mark.parametrize("degree", [0, 1])
def test_far_outlier_in_x_binned_fit_and_predict(rng, degree):
    # n > BINNED_THRESHOLD: binned="auto" bins. One grid over [0, 1e6] would
    # be far too coarse for the bulk's bandwidth (NaN everywhere); the bulk
    # is binned on its own and the outlier, out of every window's reach, is
    # computed exactly.
    X, y, _ = _sine(rng, n=6000)
    Xo, yo = np.vstack([X, [[1e6]]]), np.append(y, 3.0)
    clean = KernelValueEstimator(degree=degree).fit(X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = KernelValueEstimator(degree=degree).fit(Xo, yo)
        pred = est.predict(np.array([[0.25], [0.5], [1e6]]))
    messages = [str(w.message) for w in caught]
    assert est.algorithm_ == "binned" and est.bandwidth_ == pytest.approx(clean.bandwidth_, rel=1e-6)
    assert not any("grid spacing" in msg for msg in messages)
    assert any("lie far outside" in msg for msg in messages)
    np.testing.assert_allclose(pred[:2], clean.predict(np.array([[0.25], [0.5]])), rtol=1e-6)
    assert np.all(np.abs(pred[:2] - [1.0, 0.0]) < 0.1)
    assert est.sigma2_ == pytest.approx(clean.sigma2_, rel=1e-3) and np.isfinite(est.effective_df_)
    exact = KernelValueEstimator(degree=degree, bandwidth=est.bandwidth_, binned=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        at_outlier = exact.fit(Xo, yo).predict(np.array([[1e6]]))
    if degree == 0:  # alone in its window: its own response, as on the exact path
        assert pred[2] == at_outlier[0] == 3.0
        assert est.effective_df_ == pytest.approx(clean.effective_df_ + 1.0, rel=1e-9)
    else:  # no line through one point: NaN and warned, as on the exact path
        assert np.isnan(pred[2]) and np.isnan(at_outlier[0])
        assert any("1 training point(s) have an undefined local fit" in msg for msg in messages)
        assert any("1 evaluation point(s) have no" in msg for msg in messages)


def test_gaussian_far_point_is_consistent_across_paths(rng):
    X, y, _ = _sine(rng, n=6000)
    # Inside the data, 16 and 20 bandwidths out (h = 0.05), and 70 out, where
    # exp(-u^2/2) underflows to 0 for every training point.
    far = np.array([[0.5], [1.8], [-1.0], [-2.5]])
    exact = KernelValueEstimator(kernel="gaussian", bandwidth=0.05, binned=False).fit(X, y)
    binned = KernelValueEstimator(kernel="gaussian", bandwidth=0.05, binned=True).fit(X, y)
    assert exact.algorithm_ == "direct" and binned.algorithm_ == "binned"
    with pytest.warns(RuntimeWarning, match="1 evaluation point"):
        pe = exact.predict(far)
    with pytest.warns(RuntimeWarning, match="1 evaluation point"):
        pb = binned.predict(far)
    assert np.isfinite(pe[:3]).all() and np.isnan(pe[3]) and np.isfinite(pb[:3]).all() and np.isnan(pb[3])
    # Outside the data the binned path evaluates exactly; inside, binning error.
    np.testing.assert_allclose(pb[1:3], pe[1:3], rtol=1e-12)
    assert pb[0] == pytest.approx(pe[0], abs=1e-3)


def test_algorithm_param_and_attribute(rng):
    X, y, _ = _sine(rng, n=600)
    fast = KernelValueEstimator(kernel="tricube", degree=1, bandwidth=0.1).fit(X, y)
    direct = KernelValueEstimator(kernel="tricube", degree=1, bandwidth=0.1, algorithm="direct").fit(X, y)
    gauss = KernelValueEstimator(kernel="gaussian", bandwidth=0.1).fit(X, y)
    assert (fast.algorithm_, direct.algorithm_, gauss.algorithm_) == ("fastsum", "direct", "direct")
    np.testing.assert_allclose(fast.predict(X), direct.predict(X), rtol=1e-9, atol=1e-9)
    assert fast.sigma2_ == pytest.approx(direct.sigma2_, rel=1e-9)
    with pytest.raises(ValueError, match="algorithm='fast' is invalid"):
        KernelValueEstimator(algorithm="fast").fit(X, y)
