"""Peer agreement: at a fixed bandwidth our smoothers equal statsmodels ``KernelReg``.

statsmodels' continuous Gaussian kernel is the standard normal density and its
"lc"/"ll" estimators are exactly Nadaraya-Watson and local linear with a
product kernel, so the two implementations must agree to rounding (1e-8).
"""

import numpy as np
import pytest

from kernelvalue.estimator import KernelValueEstimator
from kernelvalue.smoothing import smooth

nonparametric = pytest.importorskip("statsmodels.nonparametric.kernel_regression")


# statsmodels warns about its future default RNG; irrelevant at a fixed bandwidth.
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("reg_type,degree", [("lc", 0), ("ll", 1)])
@pytest.mark.parametrize("d", [1, 2])
def test_predictions_equal_statsmodels_kernelreg(rng, reg_type, degree, d):
    n = 150
    X = rng.uniform(-1, 1, size=(n, d)) * np.arange(1, d + 1)  # different scales per feature
    y = np.sin(2 * X[:, 0]) + (X[:, 1] ** 2 if d == 2 else 0) + 0.2 * rng.standard_normal(n)
    h = np.array([0.3, 0.5][:d])
    x_eval = rng.uniform(-1, 1, size=(40, d)) * np.arange(1, d + 1)

    peer = nonparametric.KernelReg(y, X, var_type="c" * d, reg_type=reg_type, bw=h, ckertype="gaussian")
    expected, _ = peer.fit(x_eval)

    ours = smooth(X, y, x_eval, h if d > 1 else float(h[0]), kernel="gaussian", degree=degree)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-8)

    est = KernelValueEstimator(kernel="gaussian", degree=degree, bandwidth=h if d > 1 else float(h[0])).fit(X, y)
    np.testing.assert_allclose(est.predict(x_eval), expected, rtol=0, atol=1e-8)
