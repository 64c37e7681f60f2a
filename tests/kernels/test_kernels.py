"""Tests of unist.kernels.varlen_attention: the Triton kernel (in the CPU interpreter, and on a GPU when
there is one), every PyTorch backend, torch.compile composition and input validation.

Tolerance rule (FlashAttention's): against an fp64 reference, a result computed in dtype X may be off
by at most 2x the error of the same reference math done in X, plus a small floor (fp32 round-off).
"""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # The Triton kernels run on CPU only in the interpreter, which must be chosen before the first
    # `import triton` of the session (unist.kernels imports triton lazily, at the first launch).
    os.environ.setdefault("TRITON_INTERPRET", "1")

from unist.kernels import BackendUnavailable, triton_interpreting, varlen_attention, varlen_attention_reference
from unist.kernels.env import HAS_TRITON
from unist.kernels.varlen_attention import _block_table

ERROR_FLOOR = 1e-5  # times max(1, |ref|): accumulated fp32 round-off the rule would otherwise not allow
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cu_seqlens_of(lengths, device="cpu"):
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths), 0)
    return cu.to(device)


def make_inputs(lengths, heads, head_dim, dtype, device="cpu", seed=0):
    """q, k, v (T, H, D) in `dtype` with grads, cu_seqlens, and an upstream gradient dout."""
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    q, k, v, dout = (torch.randn(total, heads, head_dim, generator=g).to(device=device, dtype=dtype) for _ in range(4))
    return [x.requires_grad_() for x in (q, k, v)], cu_seqlens_of(lengths, device), dout


def out_and_grads(fn, qkv, cu, dout, causal, dtype=None):
    """Run fn on copies of q, k, v (cast to dtype) and return (out, dq, dk, dv) in that dtype."""
    xs = [x.detach().to(dtype or x.dtype).requires_grad_() for x in qkv]
    out = fn(*xs, cu, causal)
    grads = torch.autograd.grad(out, xs, dout.to(out.dtype)) if out.numel() else [torch.zeros_like(x) for x in xs]
    return [out.detach(), *grads]


def reference(q, k, v, cu, causal):
    return varlen_attention_reference(q, k, v, cu, causal=causal)


def assert_flash_close(results, qkv, cu, dout, causal):
    """FlashAttention rule on out, dq, dk, dv: |x - ref64| <= 2 |ref_lowp - ref64| + floor."""
    ref64 = out_and_grads(reference, qkv, cu, dout.double(), causal, torch.float64)
    lowp = out_and_grads(reference, qkv, cu, dout, causal, qkv[0].dtype)
    for name, got, exact, low in zip(("out", "dq", "dk", "dv"), results, ref64, lowp):
        assert got.shape == exact.shape, name
        assert torch.isfinite(got).all(), f"{name}: non-finite values"
        err = (got.double() - exact).abs().max().item() if got.numel() else 0.0
        low_err = (low.double() - exact).abs().max().item() if got.numel() else 0.0
        floor = ERROR_FLOOR * max(1.0, exact.abs().max().item() if got.numel() else 1.0)
        assert err <= 2 * low_err + floor, f"{name}: error {err:.3g} > 2 * {low_err:.3g} + {floor:.1g}"


def triton_fn(q, k, v, cu, causal):
    return varlen_attention(q, k, v, cu, causal=causal, backend="triton")


@pytest.fixture
def interpret():
    """Run the Triton kernels in the CPU interpreter (set at import of this module on machines without CUDA)."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    if not triton_interpreting():
        pytest.skip("TRITON_INTERPRET is not set (a CUDA machine: the GPU tests cover the kernel)")


# ---------------------------------------------------------------- block table


def test_block_table_maps_every_block_once():
    lengths = [0, 1, 64, 65, 200, 0, 3]
    cu = cu_seqlens_of(lengths)
    seg, start = _block_table(cu, sum(lengths), 64, reverse=False)
    pairs = [(s, b) for s, b in zip(seg.tolist(), start.tolist()) if s >= 0]
    expected = [(i, b) for i, n in enumerate(lengths) for b in range(0, n, 64)]
    assert pairs == expected
    seg_r, start_r = _block_table(cu, sum(lengths), 64, reverse=True)
    assert sorted(zip(seg_r.tolist(), start_r.tolist())) == sorted(zip(seg.tolist(), start.tolist()))


# ---------------------------------------------------------------- Triton kernel in the interpreter

AWKWARD = [1, 7, 0, 129, 300]  # 1 token, sub-tile, empty, one past a tile, several tiles


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_dim", [16, 40, 64])
def test_triton_interpreter_fp32_awkward_lengths(interpret, head_dim, causal):
    qkv, cu, dout = make_inputs(AWKWARD, heads=2, head_dim=head_dim, dtype=torch.float32, seed=head_dim)
    assert_flash_close(out_and_grads(triton_fn, qkv, cu, dout, causal), qkv, cu, dout, causal)


@pytest.mark.parametrize("causal", [False, True])
def test_triton_interpreter_fp16(interpret, causal):
    qkv, cu, dout = make_inputs(AWKWARD, heads=2, head_dim=40, dtype=torch.float16, seed=1)
    assert_flash_close(out_and_grads(triton_fn, qkv, cu, dout, causal), qkv, cu, dout, causal)


@pytest.mark.parametrize(
    "lengths",
    [[300], [int(n) for n in torch.randint(1, 10, (50,), generator=torch.Generator().manual_seed(0))], [0, 5, 0]],
    ids=["one_segment", "fifty_tiny", "empty_around"],
)
def test_triton_interpreter_segment_mixes(interpret, lengths):
    qkv, cu, dout = make_inputs(lengths, heads=1, head_dim=16, dtype=torch.float32, seed=2)
    for causal in (False, True):
        assert_flash_close(out_and_grads(triton_fn, qkv, cu, dout, causal), qkv, cu, dout, causal)


def test_triton_interpreter_no_tokens(interpret):
    qkv, cu, dout = make_inputs([0, 0], heads=2, head_dim=16, dtype=torch.float32)
    out, dq, dk, dv = out_and_grads(triton_fn, qkv, cu, dout, causal=False)
    assert out.shape == dq.shape == (0, 2, 16)


def test_triton_interpreter_strided_qkv_and_scale(interpret):
    """q, k, v as views into one fused (T, 3, H, D) projection, and a custom softmax scale."""
    lengths = [70, 9]
    qkv_fused = torch.randn(sum(lengths), 3, 2, 24, requires_grad=True)
    cu = cu_seqlens_of(lengths)
    q, k, v = qkv_fused.unbind(1)
    out = varlen_attention(q, k, v, cu, softmax_scale=0.3, backend="triton")
    ref = varlen_attention_reference(q.double(), k.double(), v.double(), cu, softmax_scale=0.3)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad(out.sum(), qkv_fused)
    (grad_ref,) = torch.autograd.grad(varlen_attention_reference(q, k, v, cu, softmax_scale=0.3).sum(), qkv_fused)
    torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- Triton kernel on a GPU

GPU_LENGTHS = [1, 7, 0, 129, 300, 1000, 2049, 64]


@pytest.mark.gpu
@GPU
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("head_dim", [16, 32, 40, 64, 80, 96, 128], ids=lambda d: f"d{d}")  # 32: tiny/small
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_triton_gpu(dtype, head_dim, causal):
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 here means IEEE fp32 dots
    qkv, cu, dout = make_inputs(GPU_LENGTHS, heads=4, head_dim=head_dim, dtype=dtype, device="cuda", seed=head_dim)
    assert_flash_close(out_and_grads(triton_fn, qkv, cu, dout, causal), qkv, cu, dout, causal)


@pytest.mark.gpu
@GPU
def test_triton_gpu_compiled_no_graph_break():
    qkv, cu, dout = make_inputs([100, 3, 900], heads=4, head_dim=64, dtype=torch.bfloat16, device="cuda")
    eager = out_and_grads(triton_fn, qkv, cu, dout, causal=True)
    compiled = out_and_grads(torch.compile(triton_fn, fullgraph=True), qkv, cu, dout, causal=True)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b)


def test_kernels_compile_for_hopper():
    """Lower the kernels for sm_90 with the wheel's ptxas (no GPU needed): catches what the interpreter
    cannot (tl.dot shape rules, shared memory, register spills to local memory or the stack). Head dim 32
    is the models' (unist_tiny / unist_small), 128 the largest; fp32 is the register-bound case.
    Runs in a subprocess without TRITON_INTERPRET."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    import triton

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this triton wheel carries no ptxas")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    cmd = [sys.executable, "-m", "unist.kernels.compile_check", "--dtypes", "bf16,fp32", "--head-dims", "32,128"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("ok")]
    assert len(lines) == 2 * 2 * 7, result.stdout  # (dtype, head dim) x [fwd, dkdv, dq x (causal, full) + preprocess]
    spills = [line for line in lines if "local=" in line and not ("local=0" in line and "stack=0" in line)]
    assert not spills, "register spills:\n" + "\n".join(spills)


# ---------------------------------------------------------------- PyTorch backends


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_torch_backends_match_reference(backend, causal):
    qkv, cu, dout = make_inputs(AWKWARD, heads=2, head_dim=40, dtype=torch.float32, seed=3)

    def fn(q, k, v, cu, causal):
        return varlen_attention(q, k, v, cu, causal=causal, backend=backend)

    assert_flash_close(out_and_grads(fn, qkv, cu, dout, causal), qkv, cu, dout, causal)


def test_sdpa_batches_segments_into_few_calls(monkeypatch):
    """The CPU default pays per length bucket, not per segment: 256 equal segments are one SDPA call,
    a mixed pack a handful, and both stay exact (fwd and grads) against the reference."""
    calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(args[0].shape)
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr("unist.kernels.backends.F.scaled_dot_product_attention", counting_sdpa)

    def fn(q, k, v, cu, causal):
        return varlen_attention(q, k, v, cu, causal=causal, backend="sdpa")

    mixed = [1, 300, 7, 0, 129, 16, 16, 3, 64, 65, 2]
    for lengths, max_calls in (([16] * 256, 1), (mixed, 4)):
        for causal in (False, True):
            calls.clear()
            qkv, cu, dout = make_inputs(lengths, heads=2, head_dim=16, dtype=torch.float64, seed=4)
            assert_flash_close(out_and_grads(fn, qkv, cu, dout, causal), qkv, cu, dout, causal)
            assert 1 <= len(calls) <= max_calls, calls


def test_sdpa_padding_bound():
    """group_lengths keeps each group's padded work within PAD_RATIO x its real work + one call's slack."""
    from unist.kernels.backends import MIN_CALL_WORK, PAD_RATIO, group_lengths

    g = torch.Generator().manual_seed(7)
    for trial in range(20):
        lengths = torch.randint(0, 2000, (int(torch.randint(1, 200, (1,), generator=g)),), generator=g)
        lengths = [int(n) for n in lengths * (torch.rand(lengths.shape, generator=g) < 0.9)]  # some empty
        groups = group_lengths(lengths, heads_x_dim=128)
        members = sorted(i for grp in groups for i in grp)
        assert members == [i for i, n in enumerate(lengths) if n > 0]
        for grp in groups:
            top = lengths[grp[0]]
            assert all(lengths[i] <= top for i in grp)
            assert len(grp) * top * top <= PAD_RATIO * sum(lengths[i] ** 2 for i in grp) + MIN_CALL_WORK / 128


def test_sdpa_strided_qkv_and_scale():
    """The sdpa backend on views into one fused (T, 3, H, D) projection (what the model passes)."""
    lengths = [70, 9, 9, 0, 33]
    qkv_fused = torch.randn(sum(lengths), 3, 2, 24, dtype=torch.float64, requires_grad=True)
    cu = cu_seqlens_of(lengths)
    q, k, v = qkv_fused.unbind(1)
    for causal in (False, True):
        out = varlen_attention(q, k, v, cu, causal=causal, softmax_scale=0.3, backend="sdpa")
        ref = varlen_attention_reference(q, k, v, cu, causal=causal, softmax_scale=0.3)
        torch.testing.assert_close(out, ref)
        (grad,) = torch.autograd.grad((out * out).sum(), qkv_fused)
        (grad_ref,) = torch.autograd.grad((ref * ref).sum(), qkv_fused)
        torch.testing.assert_close(grad, grad_ref)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("causal", [False, True])
def test_flex_forward_matches_reference(causal):
    (q, k, v), cu, _ = make_inputs([3, 0, 40, 17], heads=2, head_dim=16, dtype=torch.float32, seed=5)
    with torch.no_grad():
        out = varlen_attention(q, k, v, cu, causal=causal, backend="flex")
        ref = varlen_attention_reference(q.double(), k.double(), v.double(), cu, causal=causal)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    if not q.is_cuda:  # no flex backward on CPU: a clear error, not a wrong gradient
        with pytest.raises(BackendUnavailable, match="no backward on CPU"):
            varlen_attention(q, k, v, cu, causal=causal, backend="flex")


def test_env_var_selects_backend(monkeypatch):
    (q, k, v), cu, _ = make_inputs([4, 4], heads=1, head_dim=16, dtype=torch.float32)
    monkeypatch.setenv("UNIST_ATTN_BACKEND", "no_such_backend")
    with pytest.raises(ValueError, match="unknown backend 'no_such_backend'"):
        varlen_attention(q, k, v, cu)
    monkeypatch.setenv("UNIST_ATTN_BACKEND", "reference")
    torch.testing.assert_close(varlen_attention(q, k, v, cu), varlen_attention_reference(q, k, v, cu))


def test_unavailable_backends_raise_clearly(monkeypatch):
    (q, k, v), cu, _ = make_inputs([4], heads=1, head_dim=16, dtype=torch.float32)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="TRITON_INTERPRET=1"):
        varlen_attention(q, k, v, cu, backend="triton")
    with pytest.raises(BackendUnavailable, match="xformers"):
        varlen_attention(q, k, v, cu, backend="xformers")
    with pytest.raises(BackendUnavailable, match="torch_varlen"):
        varlen_attention(q, k, v, cu, backend="torch_varlen")


# ---------------------------------------------------------------- torch.compile


@pytest.mark.parametrize("backend", ["reference", "sdpa", "triton"])
def test_compile_fullgraph_no_graph_break(backend, request):
    """fullgraph=True fails on any graph break; aot_eager traces fwd + bwd (fake kernels, autograd) cheaply."""
    if backend == "triton":
        request.getfixturevalue("interpret")
    torch._dynamo.reset()
    qkv, cu, dout = make_inputs([9, 0, 20], heads=2, head_dim=16, dtype=torch.float32, seed=6)

    def fn(q, k, v, cu, causal):
        return varlen_attention(q, k, v, cu, causal=causal, backend=backend) * 2.0

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    for a, b in zip(out_and_grads(compiled, qkv, cu, dout, True), out_and_grads(fn, qkv, cu, dout, True)):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- validation


def _qkv(t=6, h=2, d=16, dtype=torch.float32):
    return torch.randn(t, h, d, dtype=dtype), torch.randn(t, h, d, dtype=dtype), torch.randn(t, h, d, dtype=dtype)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: (torch.randn(6, 16), *_qkv()[1:], cu_seqlens_of([6])), "must be 3-D"),
        (lambda: (*_qkv()[:2], torch.randn(6, 3, 16), cu_seqlens_of([6])), "same"),
        (lambda: (*_qkv(d=40)[:2], torch.randn(6, 2, 16), cu_seqlens_of([6])), "same"),
        (lambda: (*_qkv(), cu_seqlens_of([6]).long()), "int32"),
        (lambda: (*_qkv(), torch.tensor([0, 4, 2, 6], dtype=torch.int32)), "non-decreasing"),
        (lambda: (*_qkv(), cu_seqlens_of([5])), "end at total_tokens=6"),
        (lambda: (*_qkv(), torch.tensor([1, 6], dtype=torch.int32)), "start at 0"),
        (lambda: (*_qkv(), torch.tensor([[0, 6]], dtype=torch.int32)), "1-D"),
        (lambda: (*_qkv(d=300), cu_seqlens_of([6])), "head_dim 300 unsupported"),
        (lambda: (*(x.long() for x in _qkv()), cu_seqlens_of([6])), "unsupported"),
    ],
    ids=["rank", "heads", "head_dim", "cu_dtype", "cu_order", "cu_end", "cu_start", "cu_rank", "big_dim", "int_dtype"],
)
def test_validation_errors(make, match):
    with pytest.raises(ValueError, match=match):
        varlen_attention(*make(), backend="reference")


def test_value_check_modes(monkeypatch):
    """UNIST_CHECK_INPUTS: 1 = host ValueError, async = device assert (on CPU it raises at once), 0 = off."""
    q, k, v = _qkv()
    bad = cu_seqlens_of([5])  # ends at 5, not at T = 6
    monkeypatch.setenv("UNIST_CHECK_INPUTS", "1")
    with pytest.raises(ValueError, match="end at total_tokens=6"):
        varlen_attention(q, k, v, bad, backend="reference")
    monkeypatch.setenv("UNIST_CHECK_INPUTS", "async")
    with pytest.raises(RuntimeError, match="UNIST_CHECK_INPUTS=1"):
        varlen_attention(q, k, v, bad, backend="reference")
    monkeypatch.setenv("UNIST_CHECK_INPUTS", "0")
    varlen_attention(q, k, v, bad, backend="reference")  # not checked: the caller vouches for cu_seqlens
    monkeypatch.setenv("UNIST_CHECK_INPUTS", "yes please")
    with pytest.raises(ValueError, match="UNIST_CHECK_INPUTS='yes please' unknown"):
        varlen_attention(q, k, v, cu_seqlens_of([6]), backend="reference")


def test_value_checks_see_in_place_changes(monkeypatch):
    """The checks are cached per cu_seqlens tensor, but an in-place write invalidates the entry."""
    monkeypatch.setenv("UNIST_CHECK_INPUTS", "1")
    q, k, v = _qkv()
    cu = cu_seqlens_of([2, 4])
    varlen_attention(q, k, v, cu, backend="reference")
    cu[1] = 7  # now 0, 7, 6: decreasing
    with pytest.raises(ValueError, match="non-decreasing"):
        varlen_attention(q, k, v, cu, backend="reference")


def test_triton_rejects_head_dim_over_128(interpret):
    q, k, v = _qkv(d=160)
    with pytest.raises(ValueError, match="head_dim <= 128"):
        varlen_attention(q, k, v, cu_seqlens_of([6]), backend="triton")


def test_default_backend_on_cpu_is_sdpa():
    q, k, v = _qkv()
    from unist.kernels import default_backend

    assert default_backend(q) == "sdpa"
    assert math.isfinite(varlen_attention(q, k, v, cu_seqlens_of([2, 4])).sum().item())
