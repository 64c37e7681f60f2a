"""`python -m unist.data {info SOURCE | list}`: inspect a data source or list the registered datasets."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


from .load import load_series
from .readers import data_dir
from .registry import DATASETS
from .series import DataError, STSeries


def describe(s: STSeries) -> list[tuple[str, str]]:
    """(field, value) rows summarising a series."""
    rows = [("name", s.name), ("layout", s.layout), ("domain", s.domain), ("shape", str(tuple(s.values.shape))),
            ("channels", f"{s.num_channels} {s.channels or ''}".strip())]
    if s.interval_minutes:
        iv = s.interval_minutes
        rows.append(("interval", f"{iv:g} min" if iv >= 1 else f"{iv * 60:g} s ({1 / (iv * 60):g} fps)"))
    else:
        rows.append(("interval", "unknown"))
    if s.timestamps is not None:
        rows.append(("time span", f"{s.timestamps[0]} .. {s.timestamps[-1]} ({s.num_steps} steps)"))
    else:
        rows.append(("time span", f"{s.num_steps} steps (no timestamps)"))
    rows.append(("missing rate", f"{s.missing_rate:.4%}"))
    if s.mask.any():
        obs = s.values[s.mask]
        rows.append(("value range", f"{obs.min():.4g} .. {obs.max():.4g} (mean {obs.mean():.4g})"))
    if s.layout == "graph":
        e = 0 if s.edge_index is None else s.edge_index.shape[1]
        rows.append(("nodes / edges", f"{s.num_nodes} / {e}"))
    else:
        rows.append(("cells", f"{s.num_nodes} ({' x '.join(map(str, s.spatial_shape))})"))
    rows.append(("coords", "none" if s.coords is None else f"{s.meta.get('coords_kind', 'given')} {s.coords.shape}"))
    return rows


def _size(text: str) -> tuple[int, int] | int:
    """argparse type of --size: 'HxW' or one number (the short side), every number >= 1."""
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give HxW (e.g. 64x96) or one number >= 1 (the short side)")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def _positive(kind: type) -> Callable[[str], float]:
    """argparse type: a number of `kind` > 0 (frames, fps, minutes)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r}: give a number > 0")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with one line on stderr for a bad flag or an unreadable source."""
    ap = argparse.ArgumentParser(prog="python -m unist.data", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    info = sub.add_parser("info", help="summarise a dataset name, unist .npz or video file")
    info.add_argument("source")
    info.add_argument("--fps", type=_positive(float), help="video: resample to this frame rate")
    info.add_argument("--size", type=_size, help="video: HxW, or one number = short side")
    info.add_argument("--grayscale", action="store_true", help="video: one luma channel")
    info.add_argument("--max-frames", type=_positive(int), help="video: keep at most this many frames")
    info.add_argument("--bin-minutes", type=_positive(float), help="geolife_sample: time bin")
    sub.add_parser("list", help="list the registered datasets")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        print(f"data dir: {data_dir()}")
        print(f"{'name':<20} {'kind':<16} {'domain':<9} {'step':>8}  description")
        for s in DATASETS.values():
            step = "-" if s.interval_minutes is None else f"{s.interval_minutes:g} min"
            print(f"{s.name:<20} {s.kind:<16} {s.domain:<9} {step:>8}  {s.description}")
        print("also: video:<stem> for any clip under <data dir>/videos, a unist .npz path, or a video path")
        return 0
    opts = {k: v for k, v in [("fps", args.fps), ("size", args.size), ("max_frames", args.max_frames),
                              ("bin_minutes", args.bin_minutes)] if v is not None}
    if args.grayscale:
        opts["grayscale"] = True
    try:
        s = load_series(args.source, **opts)
    except DataError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    for k, v in describe(s):
        print(f"{k:<14} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
