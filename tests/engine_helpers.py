"""Shared by the engine tests: import an engine, or skip -- except in CI, where a missing engine fails."""

import importlib
import os

import numpy as np
import pytest


def require(module: str, extra: str):
    """``importlib.import_module(module)``; skip the test module when absent, fail under ``CI=true``.

    CI installs the ``[verl]`` and ``[trl]`` extras, so there a missing engine
    is a broken install, not a reason to skip.
    """
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f'{module} is not installed (pip install "kernelvalue[{extra}]")')


def assert_same_state(a, b):
    """Two estimator ``state_dict()``s are equal bit for bit (arrays: same dtype and values)."""
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            assert_same_state(a[k], b[k])
        elif isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k
