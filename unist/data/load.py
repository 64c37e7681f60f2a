"""`load_series`: one entry point from any source (registered name, unist npz, video file) to `STSeries`."""
from __future__ import annotations

from pathlib import Path

from .npz_format import load_npz
from .readers import data_dir
from .registry import canonical_name, load_registered, unknown_name_error
from .series import DataError, STSeries
from .video import VIDEO_SUFFIXES, read_video


def load_series(source: str | Path | STSeries, **options) -> STSeries:
    """Load `source` as an `STSeries`.

    source: a registered dataset name (`list_datasets()`, or 'video:<stem>'), a path to a `.npz`
    in the unist npz format, or a path to a video file. `options` go to the reader: video files
    and clips take fps, size, grayscale, max_frames, start, stop, backend (`VideoOptions`);
    `geolife_sample` takes bin_minutes, grid_size, bbox, gaps (`TrajectoryGridOptions`).
    """
    if isinstance(source, STSeries):
        return source
    if isinstance(source, str) and canonical_name(source) is not None:
        return load_registered(source, **options)
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".npz", *VIDEO_SUFFIXES):
        if path.exists():
            raise DataError(f"{path}: unsupported file type {suffix!r}; use a .npz in the unist npz format "
                            f"(docs/data.md) or a video file {VIDEO_SUFFIXES}")
        raise unknown_name_error(str(source))
    if not path.is_file():
        raise DataError(f"file {path} does not exist (registered datasets are read from UNIST_DATA_DIR, now "
                        f"{data_dir()}; list them with `python -m unist.data list`)")
    if suffix == ".npz":
        if options:
            raise DataError(f"npz files take no options, got {sorted(options)}")
        return load_npz(path)
    return read_video(path, **options)
