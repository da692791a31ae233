"""Regenerate ``dpill_reference.json``: R KernSmooth ``dpill`` on the plug-in test data.

Run: ``python tests/data/make_dpill_reference.py`` (needs ``Rscript`` with the
KernSmooth package, e.g. ``apt-get install r-base-core r-cran-kernsmooth``).

The data sets are the ones the plug-in tests in ``tests/test_bandwidth.py``
draw (same generators and seeds); the JSON keeps R's bandwidth with a
checksum of each data set, so the comparison runs in CI without R and fails
loudly if numpy's generators ever change the data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("dpill_reference.json")


def datasets():
    """``name -> (x, y)``: the plug-in tests' data."""
    out = {}
    for seed in (100, 101, 102):  # test_plugin_close_to_amise_optimum
        rng = np.random.default_rng(seed)
        x = rng.uniform(0, 1, 1000)
        out[f"sine_n1000_seed{seed}"] = (x, np.sin(2 * np.pi * x) + rng.normal(0, 0.3, 1000))
    rng = np.random.default_rng(21)  # test_plugin_pilot_stages
    x = rng.uniform(0, 1, 800)
    out["sine_n800_seed21"] = (x, np.sin(2 * np.pi * x) + rng.normal(0, 0.3, 800))
    rng = np.random.default_rng(7)  # a skewed design with a heavier tail
    x = rng.beta(2, 5, 2000)
    out["beta_n2000_seed7"] = (x, np.cos(8 * x) + x + rng.normal(0, 0.2, 2000))
    return out


def checksum(x, y):
    return [float(np.sum(x)), float(np.sum(y))]


def run_dpill(x, y):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "xy.csv"
        np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.17g")
        script = (
            "suppressMessages(library(KernSmooth)); "
            f"d <- read.csv('{path}', header = FALSE); "
            "cat(sprintf('%.17g', dpill(d[, 1], d[, 2])), '\\n'); "
            "cat(as.character(packageVersion('KernSmooth')), R.version.string, sep = '\\n')"
        )
        out = subprocess.run(["Rscript", "-e", script], check=True, capture_output=True, text=True).stdout.split("\n")
    return float(out[0]), out[1].strip(), out[2].strip()


def main():
    rows, versions = {}, None
    for name, (x, y) in datasets().items():
        h, ks, r = run_dpill(x, y)
        rows[name] = {"dpill": h, "n": int(x.shape[0]), "checksum": checksum(x, y)}
        versions = {"KernSmooth": ks, "R": r}
    OUT.write_text(json.dumps({"generated_by": "tests/data/make_dpill_reference.py", **versions,
                               "datasets": rows}, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
