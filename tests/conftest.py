"""Shared test fixtures and the test tiers.

Tiers are folders (tests/unit, tests/kernels, tests/integration), and every test is marked with its
tier, so `pytest -m unit` and `pytest tests/unit` select the same tests (Makefile: `make test-unit`,
`make test-kernels`, `make test-integration`, `make test`).

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
TIERS = ("unit", "kernels", "integration")


def pytest_collection_modifyitems(config, items):
    """Mark every test with its tier (the folder under tests/ it lives in)."""
    for item in items:
        tier = Path(str(item.fspath)).resolve().relative_to(REPO / "tests").parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(TIERS)}}}/, not tests/{tier}")
        item.add_marker(getattr(pytest.mark, tier))


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
