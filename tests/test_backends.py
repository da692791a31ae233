"""numpy, array-api-strict and torch give the same numbers; outputs follow X.

float64 results agree to 1e-10 (the same arithmetic in a different library;
reductions may be ordered differently, costing a few ulps per term). float32
is checked for dtype preservation and for agreement with float64 at float32
precision (1e-4 relative: ~1e3 ulps of 6e-8 for sums of a few hundred terms).
"""

import warnings

import numpy as np
import pytest

from kernelvalue._array import array_namespace, to_numpy
from kernelvalue.estimator import KernelValueEstimator
from kernelvalue.smoothing import local_weights, smooth, smoother_stats

TOL64 = 1e-10


def _data(rng, n=120, d=1):
    X = rng.uniform(0, 1, size=(n, d))
    y = np.sin(2 * np.pi * X[:, 0]) + (X[:, 1] if d > 1 else 0) + 0.3 * rng.standard_normal(n)
    w = rng.integers(1, 4, size=n).astype(float)
    x_eval = np.vstack([rng.uniform(0, 1, size=(25, d)), np.full((1, d), 7.0)])  # last: no data nearby
    return X, y, w, x_eval


def _same_namespace(out, ref):
    assert array_namespace(out) is array_namespace(ref)
    assert out.dtype == ref.dtype


def _host(a):
    return np.asarray(to_numpy(a))


@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("d", [1, 2])
def test_smooth_and_stats_agree_across_backends(xp, rng, degree, d):
    X, y, w, x_eval = _data(rng, d=d)
    h = 0.15 if d == 1 else [0.2, 0.4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the far point is NaN by policy
        ref_fit, ref_norm = smooth(X, y, x_eval, h, "epanechnikov", degree, w, return_norm=True)
        Xx, yx, wx, ex = (xp.asarray(a) for a in (X, y, w, x_eval))
        fit, norm2 = smooth(Xx, yx, ex, h, "epanechnikov", degree, wx, return_norm=True)
    _same_namespace(fit, Xx)
    _same_namespace(norm2, Xx)
    assert np.isnan(_host(fit)[-1])
    np.testing.assert_allclose(_host(fit), ref_fit, rtol=0, atol=TOL64)
    np.testing.assert_allclose(_host(norm2), ref_norm, rtol=0, atol=TOL64)

    ref = smoother_stats(X, y, h, "gaussian", degree, w)
    st = smoother_stats(Xx, yx, h, "gaussian", degree, wx)
    _same_namespace(st.fitted, Xx)
    np.testing.assert_allclose(_host(st.fitted), ref.fitted, rtol=0, atol=TOL64)
    np.testing.assert_allclose(_host(st.diag), ref.diag, rtol=0, atol=TOL64)
    assert st.trace == pytest.approx(ref.trace, abs=TOL64)
    assert st.trace_sst == pytest.approx(ref.trace_sst, abs=TOL64)
    L = local_weights(Xx, ex[:5, :], h, "gaussian", degree, wx)
    np.testing.assert_allclose(_host(L), local_weights(X, x_eval[:5], h, "gaussian", degree, w), rtol=0, atol=TOL64)


@pytest.mark.parametrize("bandwidth", [0.12, "loo"])
@pytest.mark.parametrize("degree", [0, 1])
def test_estimator_agrees_across_backends(xp, rng, bandwidth, degree):
    X, y, w, x_eval = _data(rng)
    x_eval = x_eval[:-1]
    ref = KernelValueEstimator(degree=degree, bandwidth=bandwidth).fit(X, y, sample_weight=w)
    ref_pred, ref_std = ref.predict(x_eval, return_std=True)

    Xx, yx, wx, ex = (xp.asarray(a) for a in (X, y, w, x_eval))
    est = KernelValueEstimator(degree=degree, bandwidth=bandwidth).fit(Xx, yx, sample_weight=wx)
    # Fitted state follows X ...
    _same_namespace(est.X_fit_, Xx)
    _same_namespace(est.y_fit_, Xx)
    assert est.bandwidth_ == pytest.approx(ref.bandwidth_, rel=1e-8)
    assert est.effective_df_ == pytest.approx(ref.effective_df_, abs=TOL64)
    assert est.sigma2_ == pytest.approx(ref.sigma2_, abs=TOL64)
    if bandwidth == "loo":
        _same_namespace(est.cv_results_["score"], Xx)
        np.testing.assert_allclose(_host(est.cv_results_["score"]), ref.cv_results_["score"], rtol=1e-9)
    # ... and so do the outputs.
    pred, std = est.predict(ex, return_std=True)
    _same_namespace(pred, Xx)
    _same_namespace(std, Xx)
    np.testing.assert_allclose(_host(pred), ref_pred, rtol=0, atol=TOL64)
    np.testing.assert_allclose(_host(std), ref_std, rtol=0, atol=TOL64)
    lo, hi = est.predict_interval(ex)
    _same_namespace(lo, Xx)
    ref_lo, ref_hi = ref.predict_interval(x_eval)
    np.testing.assert_allclose(_host(lo), ref_lo, rtol=0, atol=TOL64)
    np.testing.assert_allclose(_host(hi), ref_hi, rtol=0, atol=TOL64)
    assert est.score(Xx, yx) == pytest.approx(ref.score(X, y), abs=TOL64)


def test_estimator_preserves_float32(xp, rng):
    X, y, _, x_eval = _data(rng, d=2)
    x_eval = x_eval[:-1]
    X32, y32, e32 = (xp.asarray(a, dtype=xp.float32) for a in (X, y, x_eval))
    est = KernelValueEstimator(degree=1, bandwidth=[0.3, 0.5], kernel="gaussian").fit(X32, y32)
    pred, std = est.predict(e32, return_std=True)
    for out in (est.X_fit_, est.y_fit_, est.bandwidth_, pred, std):
        _same_namespace(out, X32)
    ref = KernelValueEstimator(degree=1, bandwidth=[0.3, 0.5], kernel="gaussian").fit(X, y)
    ref_pred, ref_std = ref.predict(x_eval, return_std=True)
    np.testing.assert_allclose(_host(pred), ref_pred, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_host(std), ref_std, rtol=1e-3)


def test_predict_on_other_namespace_is_an_error(rng):
    torch = pytest.importorskip("torch")
    X, y, _, x_eval = _data(rng)
    est = KernelValueEstimator(bandwidth=0.2).fit(torch.asarray(X), torch.asarray(y))
    with pytest.raises(ValueError, match=r"KernelValueEstimator\.predict\(\) must use the same namespace"):
        est.predict(x_eval)
    est_np = KernelValueEstimator(bandwidth=0.2).fit(X, y)
    with pytest.raises(ValueError, match="same namespace"):
        est_np.predict(torch.asarray(x_eval))


def test_y_and_weights_follow_x(rng):
    # "Everything follows X": y and sample_weight from numpy join a torch X.
    torch = pytest.importorskip("torch")
    X, y, w, x_eval = _data(rng)
    est = KernelValueEstimator(bandwidth=0.2).fit(torch.asarray(X), y, sample_weight=w)
    assert isinstance(est.y_fit_, torch.Tensor) and isinstance(est.sample_weight_fit_, torch.Tensor)
    ref = KernelValueEstimator(bandwidth=0.2).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(est.predict(torch.asarray(x_eval[:-1])).numpy(), ref.predict(x_eval[:-1]), atol=TOL64)


@pytest.mark.skipif(
    not (__import__("importlib").util.find_spec("torch") and __import__("torch").cuda.is_available()),
    reason="needs a CUDA device",
)
def test_estimator_on_cuda_matches_cpu(rng):
    import torch

    X, y, w, x_eval = _data(rng)
    x_eval = x_eval[:-1]
    dev = torch.device("cuda")
    est = KernelValueEstimator(degree=1, bandwidth="loo").fit(
        torch.asarray(X, device=dev), torch.asarray(y, device=dev), sample_weight=torch.asarray(w, device=dev)
    )
    pred, std = est.predict(torch.asarray(x_eval, device=dev), return_std=True)
    assert pred.device.type == "cuda" and est.X_fit_.device.type == "cuda"
    ref = KernelValueEstimator(degree=1, bandwidth="loo").fit(X, y, sample_weight=w)
    ref_pred, ref_std = ref.predict(x_eval, return_std=True)
    assert est.bandwidth_ == pytest.approx(ref.bandwidth_, rel=1e-6)
    np.testing.assert_allclose(pred.cpu().numpy(), ref_pred, rtol=0, atol=1e-8)
    np.testing.assert_allclose(std.cpu().numpy(), ref_std, rtol=0, atol=1e-8)


# torch notes that asarray now keeps requires_grad: exactly what this test needs.
@pytest.mark.filterwarnings("ignore:torch.asarray:UserWarning")
@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
@pytest.mark.parametrize("degree", [0, 1])
def test_torch_autograd_through_the_smoother(kernel, degree):
    # The hot loops update arrays in place, except tensors tracked by autograd:
    # d fit / d h must still flow and match a central finite difference
    # (step 1e-6: truncation O(1e-12), round-off O(1e-16 / 1e-6) = O(1e-10)).
    torch = pytest.importorskip("torch")
    X = torch.linspace(0, 1, 60, dtype=torch.float64)
    y = torch.sin(6 * X)
    h = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    smooth(X, y, X[:7], h, kernel=kernel, degree=degree).sum().backward()

    def total(b):
        return float(smooth(X, y, X[:7], b, kernel=kernel, degree=degree).sum())

    fd = (total(0.2 + 1e-6) - total(0.2 - 1e-6)) / 2e-6
    assert float(h.grad) == pytest.approx(fd, rel=1e-6, abs=1e-8)
