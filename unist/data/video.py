"""Video files (.mp4 / .avi / .mkv / ...) -> `STSeries` with layout "video".

Frames are decoded with decord (fast, random access) and, when decord is missing or fails, with
PyAV (FFmpeg). Both give identical RGB frames for the codecs we use (checked in the tests).
Frame-rate resampling picks source frames nearest to a regular grid of target times; resizing
uses `torch.nn.functional.interpolate(antialias=True)` (torchvision must not be imported here).
Values are float32 in [0, 1], shape [T, H, W, 3] (or [T, H, W, 1] with grayscale).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .series import DataError, STSeries

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
BACKENDS = ("auto", "decord", "pyav")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)   # ITU-R BT.601
_CHUNK = 16                                            # frames converted / resized at a time


@dataclass
class VideoOptions:
    """fps: resample to this frame rate (None = native). size: (H, W), or an int = short side with the
    aspect ratio kept (None = native). start/stop: seconds. max_frames: keep at most this many
    frames (after resampling). backend: "auto" (decord, then PyAV), "decord" or "pyav"."""

    fps: float | None = None
    size: tuple[int, int] | int | None = None
    grayscale: bool = False
    max_frames: int | None = None
    start: float = 0.0
    stop: float | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise DataError(f"video backend {self.backend!r} is unknown: use one of {BACKENDS}")
        if self.fps is not None and self.fps <= 0:
            raise DataError(f"fps must be > 0, got {self.fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise DataError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.start < 0 or (self.stop is not None and self.stop <= self.start):
            raise DataError(f"need 0 <= start < stop (seconds), got start={self.start}, stop={self.stop}")
        if isinstance(self.size, (list, tuple)):
            self.size = (int(self.size[0]), int(self.size[1]))
        bad = self.size is not None and min(self.size if isinstance(self.size, tuple) else (self.size,)) < 1
        if bad:
            raise DataError(f"size must be (H, W) or a short side, all >= 1; got {self.size}")


def frame_indices(num_frames: int, src_fps: float, opts: VideoOptions) -> np.ndarray:
    """Source frame indices to keep: the window [start, stop) seconds, resampled to opts.fps."""
    fps = opts.fps or src_fps
    first = int(np.ceil(opts.start * src_fps - 1e-9))
    end = num_frames if opts.stop is None else min(num_frames, int(np.ceil(opts.stop * src_fps - 1e-9)))
    if first >= end:
        raise DataError(f"start={opts.start}s is past the end of the clip ({num_frames / src_fps:.2f}s)")
    t = np.arange(first / src_fps, end / src_fps - 1e-9, 1.0 / fps)             # target times, seconds
    idx = np.minimum(np.round(t * src_fps + 1e-6).astype(np.int64), end - 1)
    return idx[: opts.max_frames] if opts.max_frames else idx


def _last_needed(src_fps: float, opts: VideoOptions) -> int | None:
    """Highest source frame index `frame_indices` can pick (None = up to the end), so that a sequential
    decoder can stop early."""
    bounds = []
    if opts.stop is not None:
        bounds.append(int(np.ceil(opts.stop * src_fps - 1e-9)) - 1)
    if opts.max_frames:
        first = int(np.ceil(opts.start * src_fps - 1e-9))
        t_last = first / src_fps + (opts.max_frames - 1) / (opts.fps or src_fps)
        bounds.append(int(np.round(t_last * src_fps + 1e-6)))
    return min(bounds) if bounds else None


def _decode_decord(path: Path, opts: VideoOptions) -> tuple[np.ndarray, float]:
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
    fps = float(vr.get_avg_fps())
    idx = frame_indices(len(vr), fps, opts)
    return vr.get_batch(idx.tolist()).asnumpy(), fps                               # (T, H, W, 3) uint8


def _decode_pyav(path: Path, opts: VideoOptions) -> tuple[np.ndarray, float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if fps <= 0:
            raise DataError(f"{path}: the video stream states no frame rate")
        last = _last_needed(fps, opts)
        frames = []
        for f in container.decode(stream):
            frames.append(f.to_ndarray(format="rgb24"))
            if last is not None and len(frames) > last:
                break
    if not frames:
        raise DataError(f"{path}: no frame could be decoded")
    idx = frame_indices(len(frames), fps, opts)
    return np.stack([frames[i] for i in idx]), fps


def resize_frames(frames: "torch.Tensor", size: tuple[int, int] | int) -> "torch.Tensor":
    """(T, C, H, W) float -> (T, C, H', W') with antialiased bilinear interpolation.

    An int size is the short side; the long side keeps the aspect ratio (rounded)."""
    h, w = frames.shape[-2:]
    if isinstance(size, int):
        s = size / min(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
    if tuple(size) == (h, w):
        return frames
    import torch.nn.functional as F

    return F.interpolate(frames, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)


def decode_frames(path: str | Path, opts: VideoOptions) -> tuple[np.ndarray, float, str]:
    """(frames uint8 (T, H, W, 3), source fps, backend used) for the frames `opts` selects, before any
    resizing; with backend "auto" decord is tried first, then PyAV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video file {path} does not exist")
    errors = []
    for backend in (["decord", "pyav"] if opts.backend == "auto" else [opts.backend]):
        try:
            raw, fps = (_decode_decord if backend == "decord" else _decode_pyav)(path, opts)
            return raw, fps, backend
        except DataError:
            raise
        except Exception as e:  # ImportError, decord.DECORDError, av.FFmpegError, ...
            errors.append(f"{backend}: {type(e).__name__}: {e}")
    raise DataError(f"cannot decode video {path} ({'; '.join(errors)}); the file is corrupt or its codec is "
                    "unsupported: re-encode it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`")


def read_video(path: str | Path, **options) -> STSeries:
    """Decode a video file into an `STSeries` (see `VideoOptions` for the options)."""
    path = Path(path)
    try:
        opts = VideoOptions(**options)
    except TypeError as e:
        raise DataError(f"bad video option ({e}); valid options: fps, size, grayscale, max_frames, start, stop, "
                        "backend") from e
    raw, src_fps, backend = decode_frames(path, opts)
    import torch  # lazy: `unist.data` itself stays importable without paying for torch

    chunks = []
    for i in range(0, len(raw), _CHUNK):                     # chunks bound the float32 copy of large frames
        x = torch.from_numpy(raw[i:i + _CHUNK]).permute(0, 3, 1, 2).float().div_(255.0)   # (t, 3, H, W)
        if opts.size is not None:
            x = resize_frames(x, opts.size).clamp_(0.0, 1.0)
        x = x.permute(0, 2, 3, 1).numpy()                                          # (t, H', W', 3)
        chunks.append(x @ _LUMA[:, None] if opts.grayscale else x)                  # (t, H', W', 1 | 3)
    frames = np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
    fps = opts.fps or src_fps
    return STSeries(values=frames, mask=np.ones(frames.shape, bool), layout="video", interval_minutes=1.0 / (fps * 60.0),
                    domain="video", name=path.stem, channels=["gray"] if opts.grayscale else ["r", "g", "b"],
                    meta={"source": str(path), "backend": backend, "source_fps": src_fps, "fps": fps,
                          "source_size": tuple(raw.shape[1:3])})
