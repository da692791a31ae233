"""Shared by the engine tests: import an engine, or skip -- except in CI, where a missing engine fails."""

import importlib
import os

import pytest


def require(module: str):
    """``importlib.import_module(module)``; skip the test module when absent, fail under ``CI=true``.

    CI installs the ``[verl]`` and ``[trl]`` extras, so there a missing engine
    is a broken install, not a reason to skip.
    """
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f'{module} is not installed (pip install "kernelvalue[{module.split(".")[0]}]")')
