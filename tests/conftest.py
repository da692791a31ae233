"""Shared fixtures: numeric tests run on every Array-API backend we support."""

import numpy as np
import pytest

BACKENDS = ["numpy", "array_api_strict", "torch"]


def _namespace(name):
    if name == "numpy":
        import array_api_compat.numpy as xp
    elif name == "array_api_strict":
        xp = pytest.importorskip("array_api_strict")
    else:
        pytest.importorskip("torch")
        import array_api_compat.torch as xp
    return xp


@pytest.fixture(params=BACKENDS)
def xp(request):
    """An Array-API namespace: numpy, array-api-strict or torch (CPU)."""
    return _namespace(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(20260430)
