"""The variance-vs-traces notebook executes end to end (nbclient) and writes its figures.

It runs in a temporary directory with ``KERNELVALUE_FIGURES`` pointing there, so the
committed figures under ``figures/`` are left alone, and without ``KERNELVALUE_FULL``, so section 7
(the kae_auto scenario suite) runs its small configuration. About 40-60 s on two CPU cores.
"""

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "variance_vs_traces.ipynb"
SCRIPT = ROOT / "notebooks" / "variance_vs_traces.py"
FIGURES = ("variance_vs_G.png", "variance_vs_h.png", "kae_bias_variance_vs_h.png", "kae_rate.png", "kae_auto_suite.png")


def test_notebook_is_paired_with_its_script():
    # The .ipynb is generated from the jupytext .py (jupytext --to ipynb); a stale copy would run
    # different code from the one reviewed.
    jupytext = pytest.importorskip("jupytext")
    script = jupytext.read(SCRIPT)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert [(c.cell_type, c.source) for c in script.cells] == [(c.cell_type, c.source) for c in nb.cells]


def test_notebook_executes(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # run from a clean slate even if the committed copy holds outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    fig_dir = tmp_path / "figures"
    monkeypatch.setenv("KERNELVALUE_FIGURES", str(fig_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # BLAS threads only add contention on 2 cores
    monkeypatch.delenv("KERNELVALUE_FULL", raising=False)  # the CI configuration
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the traceback) if any cell fails
    elapsed = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    for name in FIGURES:
        assert (fig_dir / name).stat().st_size > 10_000, name  # a real plot, not an empty canvas
    assert elapsed < 120, f"notebook took {elapsed:.0f} s; the CI budget is 2 minutes"
