"""Compile the varlen attention kernels for an NVIDIA GPU on a machine without one.

Triton's wheel carries ptxas, so `triton.compile` can lower our kernels for e.g. Hopper (sm_90) on a
CPU box. That catches what the interpreter never sees (tl.dot shape rules, shared-memory overflow,
register spills) before any GPU run. Prints one line per kernel: shared memory and, when the
wheel's cuobjdump is there, registers, stack and local memory (ptxas spills through the stack, so
stack > 0 means spills even with local=0); exits 1 if any kernel fails to compile.

  TRITON_INTERPRET= python -m unist.kernels.compile_check --dtypes bf16 --head-dims 64,128

Must run with TRITON_INTERPRET unset (triton's own helpers must be jitted for the compiler).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from unist.kernels import varlen_attention_kernels as vk
from unist.kernels.env import triton_interpreting

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
POINTER_TYPES = {"CuSeqlens": "*i32", "BlockSeg": "*i32", "BlockStart": "*i32", "LSE": "*fp32", "Delta": "*fp32"}
FLOAT_ARGS = ("qk_scale", "sm_scale")


def _signature(jitted, dtype_name: str, constexprs: dict, head_dim: int) -> tuple[dict, dict]:
    """Triton signature of a kernel + the divisibility-by-16 hints a contiguous (T, H, D) launch gets:
    token strides (H * D) always, head strides (D) when head_dim is a multiple of 16."""
    sig, attrs = {}, {}
    for i, name in enumerate(jitted.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in POINTER_TYPES or name[0].isupper():
            sig[name] = POINTER_TYPES.get(name, "*" + dtype_name)
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "fp32" if name in FLOAT_ARGS else "i32"
            if re.fullmatch(r"stride_\w?t", name) or (re.fullmatch(r"stride_\w?h", name) and head_dim % 16 == 0):
                attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, attrs


def _resource_usage(cubin: bytes, triton_dir: Path) -> str:
    cuobjdump = triton_dir / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not cuobjdump.exists():
        return ""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
        fh.write(cubin)
        fh.flush()
        out = subprocess.run([str(cuobjdump), "--dump-resource-usage", fh.name], capture_output=True, text=True).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+) .*LOCAL:(\d+)", out)
    return f" regs={match.group(1)} stack={match.group(2)} local={match.group(3)}" if match else ""


def compile_all(dtypes: list[str], head_dims: list[int], arch: int) -> int:
    # Lazy: triton is optional (and --help must work without it); see kernels/env.py.
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if triton_interpreting():
        raise SystemExit("compile_check: unset TRITON_INTERPRET (kernels must be jitted for the compiler)")
    vk.jit_kernels()
    target = GPUTarget("cuda", arch, 32)
    failures = 0
    for dtype_name in dtypes:
        for head_dim in head_dims:
            block_d = max(16, triton.next_power_of_2(head_dim))
            cfg = vk.kernel_configs(block_d, DTYPES[dtype_name], interpret=False, aligned=head_dim % 16 == 0)
            for causal in (False, True):
                jobs = [(vk._fwd_kernel, cfg.fwd), (vk._bwd_dkdv_kernel, cfg.dkdv), (vk._bwd_dq_kernel, cfg.dq)]
                if not causal:
                    jobs.append((vk._bwd_preprocess_kernel, vk.TileConfig(vk.PREPROCESS_BLOCK, vk.PREPROCESS_BLOCK)))
                for jitted, tile in jobs:
                    consts = dict(CAUSAL=causal, BLOCK_M=tile.block_m, BLOCK_N=tile.block_n, BLOCK_D=block_d,
                                  UPCAST=False, DOT_PRECISION="ieee")
                    consts = {k: v for k, v in consts.items() if k in jitted.arg_names}
                    sig, attrs = _signature(jitted, dtype_name, consts, head_dim)
                    name = f"{dtype_name} d={head_dim} causal={causal} {jitted.fn.__name__} {tile}"
                    try:
                        kernel = triton.compile(ASTSource(jitted, sig, constexprs=consts, attrs=attrs), target=target,
                                                options=dict(num_warps=tile.num_warps, num_stages=tile.num_stages))
                    except Exception as e:  # report every failing config, not only the first
                        failures += 1
                        print(f"FAIL {name}: {type(e).__name__}: {str(e)[:500]}", flush=True)
                        continue
                    usage = _resource_usage(kernel.asm["cubin"], Path(triton.__file__).parent)
                    print(f"ok   {name} shared={kernel.metadata.shared}{usage}", flush=True)
    return failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="bf16,fp16,fp32")
    parser.add_argument("--head-dims", default="16,32,40,64,80,96,128")
    parser.add_argument("--arch", type=int, default=90, help="compute capability x10 (90 = Hopper)")
    args = parser.parse_args(argv)
    failures = compile_all(args.dtypes.split(","), [int(d) for d in args.head_dims.split(",")], args.arch)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
