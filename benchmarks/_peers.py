"""Peers run from the benchmarks in the same process: R KernSmooth via Rscript.

R times itself (``system.time`` around the call, best of ``repeats``), so the
numbers exclude R's start-up and reading the data, like ours exclude Python's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np


def load_average() -> str:
    """The 1-minute load average, to print beside every timing."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def kernsmooth_missing() -> str | None:
    """None when Rscript with KernSmooth is available, else why not."""
    if shutil.which("Rscript") is None:
        return "Rscript not found (apt-get install r-base-core r-cran-kernsmooth); R rows skipped"
    ok = subprocess.run(["Rscript", "-e", "library(KernSmooth)"], capture_output=True)
    if ok.returncode != 0:
        return "R package KernSmooth not installed; R rows skipped"
    return None


def run_kernsmooth(x, y, expr, repeats=3, inner=1):
    """Time ``expr`` (R code using vectors ``x``, ``y``): best of ``repeats``
    timings of ``inner`` back-to-back evaluations, divided by ``inner``
    (R's clock ticks in milliseconds).

    Returns ``(value, seconds)`` where ``value`` is the numeric result of the
    last evaluation (its first element when it is a vector or list).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "xy.bin"
        np.column_stack([x, y]).astype("<f8").tofile(path)
        n = len(x)
        script = f"""
suppressMessages(library(KernSmooth))
con <- file('{path}', 'rb'); v <- readBin(con, 'double', n = {2 * n}, endian = 'little'); close(con)
m <- matrix(v, ncol = 2, byrow = TRUE); x <- m[, 1]; y <- m[, 2]
best <- Inf
for (i in 1:{repeats}) {{
  t <- system.time(for (j in 1:{inner}) res <- {expr})[['elapsed']] / {inner}
  best <- min(best, t)
}}
val <- if (is.list(res)) res$y[1] else res[1]
cat(sprintf('%.17g %.6f\\n', val, best))
"""
        out = subprocess.run(["Rscript", "-e", script], check=True, capture_output=True, text=True).stdout
    value, seconds = out.split()
    return float(value), float(seconds)
