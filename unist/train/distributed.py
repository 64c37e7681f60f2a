"""Process-group setup and a clean exit, for `deepspeed` launches and plain `python` runs alike.

Plain `python train/pretrain.py` has no launcher, so `ensure_launcher_env` sets the variables the
DeepSpeed launcher would (RANK=0, WORLD_SIZE=1, LOCAL_RANK=0, MASTER_ADDR, a free MASTER_PORT);
otherwise DeepSpeed goes looking for MPI. `init` disables DeepSpeed's shared-memory comm op before
the process group starts: it only serves inference all-reduce, yet building it JIT-compiles C++
(~27 s) on the first start. `finish` ends the run the way gloo needs (barrier -> destroy_process_group
-> flush -> os._exit), since about one gloo run in eight aborts at interpreter exit otherwise.
Importing this module on a machine without CUDA sets DS_ACCELERATOR=cpu (unless set): DeepSpeed
otherwise probes for accelerators in every process and warns "Setting accelerator to CPU. If you
have GPU or other accelerator, we were unable to detect it." although nothing is wrong.
"""
from __future__ import annotations

import os
import socket
import sys

import torch
import torch.distributed as dist


def quiet_cpu_accelerator_probe() -> None:
    """Tell DeepSpeed it runs on CPU when no CUDA device exists (before deepspeed is imported)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


quiet_cpu_accelerator_probe()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_launcher_env() -> None:
    """Single-process defaults when no launcher set RANK/WORLD_SIZE."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def init() -> tuple[int, int, int, torch.device]:
    """Start the process group (nccl on GPU, gloo on CPU); return (rank, world_size, local_rank, device)."""
    import deepspeed

    ensure_launcher_env()
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # see module docstring
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        share_cpu_threads()
    deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank, device


def share_cpu_threads() -> None:
    """On CPU, split the cores between the ranks of this node (the launcher leaves every rank at all
    cores, which oversubscribes them), unless OMP_NUM_THREADS says otherwise."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or 1)
    if local > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def finish(code: int = 0) -> None:
    """barrier -> destroy_process_group -> flush -> os._exit(code). Never returns."""
    try:
        if dist.is_available() and dist.is_initialized():
            if code == 0:
                dist.barrier()
            dist.destroy_process_group()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
