"""Host-sync counting (tests/sync_count.py) and the attention dispatch's sync budget.

On CPU the counter is a proxy: it counts the calls that would make the host wait for a GPU. The
attention checks run in `async` mode here (the CUDA default: device-side asserts, no host reads), so
the counts below are what one CUDA training step would pay.
"""
import inspect
import os
from pathlib import Path

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the first `import triton`

from sync_count import SyncCounter  # noqa: E402

from unist.kernels import triton_interpreting, varlen_attention  # noqa: E402
from unist.kernels.env import HAS_TRITON  # noqa: E402

KERNELS_DIR = str(Path(__file__).resolve().parents[2] / "kernels") + os.sep  # the repo's kernels/, not tests/kernels/
THIS_FILE = str(Path(__file__).resolve())


# ---------------------------------------------------------------- the counter itself


def test_counter_records_every_sync_kind_with_its_call_site():
    x = torch.arange(6.0)
    mask = x > 2
    with SyncCounter() as syncs:
        x.sum().item()
        x.tolist()
        int(x[0])
        float(x[1])
        assert x[2]  # a Python truth test of a tensor
        x[mask]
        x.nonzero()
        torch.nonzero(x)
        torch.where(mask)
        torch.repeat_interleave(x.long())
        np.asarray(x)
        line = inspect.currentframe().f_lineno
    kinds = [e.kind for e in syncs.events]
    assert kinds == ["item", "tolist", "__int__", "__float__", "__bool__", "__getitem__", "nonzero", "nonzero",
                     "where", "repeat_interleave", "numpy"], syncs.report()
    assert all(e.filename == THIS_FILE for e in syncs.events), syncs.report()
    assert [e.lineno for e in syncs.events] == list(range(line - 11, line)), syncs.report()


def test_counter_ignores_ops_that_do_not_sync():
    x = torch.arange(6.0)
    idx = torch.tensor([0, 2])
    with SyncCounter() as syncs:
        y = x + 1
        y = y[idx] * 2
        y = torch.where(x > 2, x, -x)
        y = torch.repeat_interleave(x, torch.tensor([1, 2, 0, 1, 1, 1]), output_size=6)
        y = x[1:3].sum()
        x[idx] = 0.0
    assert y.shape == ()
    assert syncs.count() == 0, syncs.report()


def test_counter_counts_nested_calls_once_and_restores_torch():
    x = torch.tensor([3, 1, 3])
    before = (torch.nonzero, torch.Tensor.unique)
    with SyncCounter() as syncs:
        x.unique()  # Tensor.unique calls torch.unique: one sync, not two
    assert [e.kind for e in syncs.events] == ["unique"]
    assert (torch.nonzero, torch.Tensor.unique) == before
    assert "__bool__" not in vars(torch.Tensor) and "item" not in vars(torch.Tensor)
    x.item() if x.numel() == 1 else x.tolist()
    assert syncs.count() == 1  # nothing is recorded after exit


def test_counter_filters_by_path_and_kind_and_rejects_unknown_kinds():
    with SyncCounter(kinds=["item"]) as syncs:
        torch.ones(()).item()
        torch.ones(2).tolist()  # not watched
    assert syncs.count(kinds=["item"]) == 1 and syncs.count() == 1
    assert syncs.count(within="no/such/dir") == 0
    assert "test_sync.py" in syncs.report()
    with pytest.raises(ValueError, match="unknown kinds"):
        SyncCounter(kinds=["itme"])


# ---------------------------------------------------------------- attention dispatch


def _inputs(lengths, heads=2, head_dim=16):
    g = torch.Generator().manual_seed(0)
    total = sum(lengths)
    q, k, v = (torch.randn(total, heads, head_dim, generator=g).requires_grad_() for _ in range(3))
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths), 0)
    return q, k, v, cu


def _layers(backend, q, k, v, cu, layers):
    """`layers` attention calls on one cu_seqlens, as the blocks of one model step make, fwd + bwd."""
    out = q
    for _ in range(layers):
        out = varlen_attention(out, k, v, cu, max_seqlen=64, backend=backend)
    out.sum().backward()


# (backend, host syncs allowed for a whole step of 6 layers on one cu_seqlens, CUDA-default checks)
BUDGETS = [("reference", 0), ("sdpa", 1), ("triton", 0)]


@pytest.mark.parametrize("backend, budget", BUDGETS, ids=[b for b, _ in BUDGETS])
def test_attention_step_sync_budget(backend, budget, monkeypatch):
    if backend == "triton" and not (HAS_TRITON and triton_interpreting()):
        pytest.skip("the CPU inputs here need the Triton interpreter (TRITON_INTERPRET=1)")
    monkeypatch.setenv("UNIST_CHECK_INPUTS", "async")  # the CUDA default: device-side asserts only
    q, k, v, cu = _inputs([7, 0, 33, 64, 1])
    with SyncCounter() as syncs:
        _layers(backend, q, k, v, cu, layers=6)
    assert syncs.count(within=KERNELS_DIR) <= budget, syncs.report(within=KERNELS_DIR)


def test_attention_host_checks_read_cu_seqlens_once_per_tensor(monkeypatch):
    """Host mode (the CPU default) reads cu_seqlens once per tensor, not once per layer."""
    monkeypatch.setenv("UNIST_CHECK_INPUTS", "1")
    q, k, v, cu = _inputs([5, 9, 20])
    with SyncCounter() as syncs:
        _layers("reference", q, k, v, cu, layers=6)
    assert syncs.count(within=KERNELS_DIR) == 1, syncs.report(within=KERNELS_DIR)
    with SyncCounter() as syncs:
        _layers("reference", q, k, v, cu.clone(), layers=2)  # a new tensor is checked again
    assert syncs.count(within=KERNELS_DIR) == 1, syncs.report(within=KERNELS_DIR)
