"""Shared pieces of the evaluation command lines (eval/zeroshot.py, eval/select_checkpoint.py,
`python -m unist.evaluation.finetune`): argparse types that refuse a bad number before any work starts
(argparse then prints the usage and one error line, exit code 2), and `USER_ERRORS`, the project's
error classes for refused input, which `report_error` prints as one line (exit code 2) instead of a
traceback; `add_peer_flags` / `peer_settings`: --no-peers and --peer-max-series for the statsforecast peers."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from unist.data import DataError
from unist.release import ReleaseError
from unist.train.checkpoint import CheckpointError

from .checkpoints import ContaminationError
from .errors import EvalError

USER_ERRORS: tuple[type[Exception], ...] = (ContaminationError, DataError, EvalError, ReleaseError, CheckpointError)


def _number(kind: Callable[[str], float], ok: Callable[[float], bool], want: str) -> Callable[[str], float]:
    """An argparse type: `kind(text)` that satisfies `ok`, else an error saying `want`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {want}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r}: give {want}")
        return value
    parse.__name__ = want  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0")
sample_count = _number(int, lambda v: v == 0 or v >= 2, "0 (point forecast) or a number of draws >= 2")
fraction = _number(float, lambda v: 0.0 < v <= 1.0, "a fraction in (0, 1]")
positive_float = _number(float, lambda v: v > 0 and v != float("inf"), "a finite number > 0")


def add_peer_flags(ap: argparse.ArgumentParser) -> None:
    """--no-peers and --peer-max-series N: the statsforecast peers (unist.evaluation.peers) of EvalConfig."""
    ap.add_argument("--no-peers", action="store_true",
                    help="skip the statsforecast peers (AutoETS, AutoTheta, SeasonalNaive, MSTL on each context)")
    ap.add_argument("--peer-max-series", type=positive_int,
                    help="fit the peers on at most N (window, location, channel) series, a seeded subset of "
                         "locations (default: as many as take ~2 minutes per dataset at the context length)")


def peer_settings(args: argparse.Namespace) -> dict[str, object]:
    """EvalConfig keyword arguments from the flags of `add_peer_flags`."""
    return {"peers": not args.no_peers, "peer_max_series": args.peer_max_series}


def device(text: str) -> str:
    """An argparse type: a torch device this machine has (cpu, cuda, cuda:1, ...)."""
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device: use cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA GPU (torch {torch.__version__}); use cpu")
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: use cpu or cuda[:N]")
    return text


def report_error(error: Exception) -> int:
    """Print `error` as one line on stderr; the exit code for refused input (2)."""
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    return 2


__all__ = ["USER_ERRORS", "add_peer_flags", "device", "fraction", "non_negative_int", "peer_settings",
           "positive_float", "positive_int", "report_error", "sample_count"]
