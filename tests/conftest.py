"""Shared test fixtures.

Real-data tests must fail, not skip, in CI (`CI=true`) when the data is missing; on a developer
machine without `../shared/data` they skip with a message saying where the data is looked for.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Triton runs only interpreted without a GPU, and the flag must be set before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("UNIST_DATA_DIR", REPO.parent / "shared" / "data"))


def require_data(*names: str) -> Path:
    """Return the data dir, failing (CI) or skipping (elsewhere) when a named folder is missing."""
    root = data_dir()
    missing = [n for n in names if not (root / n).exists()] if root.exists() else list(names) or ["."]
    if missing:
        msg = f"real data {missing} not found under {root} (set UNIST_DATA_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture
def real_data_dir() -> Path:
    return require_data()


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
