"""Command line of `train/pretrain.py`: `[--config NAME] [--resume] [key=value ...]`.

Everything else is a typed `key=value` override of the preset (`python train/pretrain.py --keys`
lists them). `--local_rank` is accepted because the DeepSpeed launcher passes it; the rank itself
is read from the environment.
"""
from __future__ import annotations

import argparse
import signal
import sys
import traceback

from unist.data import DataError

from . import distributed
from .checkpoint import CheckpointError
from .config import PRESETS, ConfigError, load_config, valid_keys
from .trainer import NonFiniteError, run


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(
        prog="train/pretrain.py",
        description="UniST pretraining under DeepSpeed ZeRO. Overrides are key=value (dotted keys, e.g. "
                    "train.steps=200 zero.stage=3 model.depth=2); --keys lists them. See docs/training.md.")
    p.add_argument("--config", default="tiny", choices=sorted(PRESETS), help="preset (default: tiny)")
    p.add_argument("--resume", action="store_true", help="continue the run from its latest checkpoint")
    p.add_argument("--keys", action="store_true", help="list every override key and exit")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    if args.resume:
        args.overrides.append("resume=true")
    return args


def main(argv: list[str] | None = None) -> None:
    """Parse, train, and exit the way gloo needs (see unist.train.distributed.finish)."""
    args = parse_args(argv)
    if args.keys:
        try:
            print("\n".join(valid_keys()))
        except BrokenPipeError:  # `--keys | head`
            pass
        return
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGTERM, _interrupt)  # the launcher stops the other ranks with SIGTERM
    code = 0
    try:
        run(cfg)
    except KeyboardInterrupt:
        print("interrupted: the last finished checkpoint is intact; continue with --resume", file=sys.stderr)
        code = 130
    except (ConfigError, DataError, CheckpointError, NonFiniteError) as e:
        print(f"error: {e}", file=sys.stderr)  # the project's own errors name the problem and the fix
        code = 2
    except Exception:  # noqa: BLE001 - report, then exit non-zero through the clean shutdown path
        traceback.print_exc()
        code = 1
    distributed.finish(code)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
