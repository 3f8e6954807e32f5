"""Every notebook in ``notebooks/`` runs top to bottom (small settings).

The notebooks read ``IMOD_NOTEBOOK_SMALL=1`` (fewer members, epochs, datasets and seeds)
and write their files under ``IMOD_NOTEBOOK_OUT``; both are set here for the kernel.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell


def _ensure_kernel() -> str:
    """Name of a usable Python kernel, installing the ipykernel spec if none is registered."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(user=True)
    return "python3"


def test_notebooks_found():
    names = [p.name for p in NOTEBOOKS]
    assert names[:4] == [
        "01_quickstart.ipynb",
        "02_im_effect.ipynb",
        "03_adbench.ipynb",
        "04_memorization.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    kernel = _ensure_kernel()
    # The kernel is a child process: it inherits this environment.
    monkeypatch.setenv("IMOD_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("IMOD_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("IMOD_CACHE_DIR", str(tmp_path / "cache"))
    # The kernel runs in tmp_path: put this checkout first, not an installed imod.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=kernel,
        resources={"metadata": {"path": str(tmp_path)}},  # cwd of the kernel
        allow_errors=False,
    )
    # allow_errors=False: the first cell that raises stops the run with CellExecutionError
    # naming it, so a notebook that gets past this line ran every cell without an error.
    client.execute()
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
