"""kernelvalue: kernel-smoothed value and advantage estimation for RL on language models.

The statistics core (kernels, smoothers, bandwidth selection, diagnostics, the
scikit-learn style :class:`KernelValueEstimator`) and, in
:mod:`kernelvalue.advantage`, the RL advantage estimators (KAE and the
baselines it is compared with) behind one registry.

Examples
--------
>>> import numpy as np
>>> from kernelvalue import KernelValueEstimator
>>> X = np.linspace(0, 1, 60)[:, None]
>>> est = KernelValueEstimator(degree=1, bandwidth=0.2).fit(X, 3 * X[:, 0])
>>> round(float(est.predict(np.array([[0.5]]))[0]), 6)
1.5
"""

from .advantage import ESTIMATORS, get_estimator
from .bandwidth import select_bandwidth
from .estimator import KernelValueEstimator
from .kernels import KERNELS, Kernel, get_kernel

__version__ = "0.1.0"

__all__ = [
    "ESTIMATORS",
    "KERNELS",
    "Kernel",
    "KernelValueEstimator",
    "get_estimator",
    "get_kernel",
    "select_bandwidth",
    "__version__",
]
