"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def adbench_dir() -> Path:
    """Folder with the ADBench development copy (``IMOD_ADBENCH_DIR`` or ``../shared/adbench``).

    Tests that need it are skipped when it is missing.
    """
    env = os.environ.get("IMOD_ADBENCH_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "adbench"
    if not (path / "Classical").is_dir():
        pytest.skip(f"ADBench data folder not found at {path} (set IMOD_ADBENCH_DIR)")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests with one torch thread (tiny models; restored afterwards)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
