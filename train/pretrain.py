"""UniST pretraining entry point.

    deepspeed train/pretrain.py [--config tiny|small|base|large] [--resume] [key=value ...]
    python train/pretrain.py ...            # one process (sets RANK/WORLD_SIZE/MASTER_* itself)

With no arguments: unist_tiny on the synthetic corpus + the real datasets under UNIST_DATA_DIR
(training splits only), a few minutes on 2 CPU cores; writes runs/tiny/ (checkpoints, metrics,
loss.png, release/). The job itself lives in unist.train; see docs/training.md.
"""
import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a CPU shared with
# other jobs (or with DataLoader workers) spinning threads starve each other: measured 3-14x slower
# steps on 2 busy cores. Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from unist.train.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
