"""The unist npz format: bring your own spatio-temporal data as one `.npz` file, no code needed.

Keys (only `data` is required; see docs/data.md):
  data              float [T, N, C] (graph / point sensors) or [T, H, W, C] (grid); NaN = missing
  mask              bool (or 0/1 integers), same shape as data; False/0 = missing (combined with the NaNs)
  layout            str 'graph' | 'grid' | 'video' (default: rank 3 -> graph, rank 4 -> grid)
  timestamps        datetime64 [T], strictly increasing
  interval_minutes  float scalar
  lat, lon          float [N] (graph) or [H], [W] / [H, W] (grid): real coordinates
  coords            float [N, 2] / [H, W, 2]: any other coordinates (used when lat/lon are absent)
  edge_index        int [2, E] (graph), node ids 0..N-1;  edge_weight float [E]
  channels          str [C];  domain, name  str scalars
Files are read with `allow_pickle=False`: object arrays are refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .series import LAYOUTS, DataError, STSeries

_KNOWN_KEYS = {"data", "mask", "layout", "timestamps", "interval_minutes", "lat", "lon", "coords", "edge_index",
               "edge_weight", "channels", "domain", "name"}


def _scalar_str(z, key: str, default: str) -> str:
    return str(z[key].item()) if key in z.files else default


def _grid_coords(lat: np.ndarray, lon: np.ndarray, h: int, w: int) -> np.ndarray:
    if lat.shape == (h,) and lon.shape == (w,):
        lat, lon = np.meshgrid(lat, lon, indexing="ij")
    if lat.shape != (h, w) or lon.shape != (h, w):
        raise DataError(f"grid lat/lon must be [H={h}], [W={w}] or both [H, W], got {lat.shape}, {lon.shape}")
    return np.stack([lat, lon], -1)


def _bool_mask(mask: np.ndarray, path: Path) -> np.ndarray:
    """The npz 'mask' as bool: bool as is, integers only when every value is exactly 0 or 1 (anything else,
    e.g. 255 or a float 0.5, is refused instead of being read as "observed")."""
    if mask.dtype == np.bool_:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        off = (mask != 0) & (mask != 1)
        if not off.any():
            return mask.astype(bool)
        idx = tuple(int(i) for i in np.argwhere(off)[0])
        raise DataError(f"{path}: integer 'mask' must hold only 0 (missing) and 1 (observed), but mask{list(idx)} = "
                        f"{mask[idx]} ({int(off.sum())} such values); save mask=(m > 0) or a bool array")
    raise DataError(f"{path}: 'mask' must be bool (False = missing) or 0/1 integers, got {mask.dtype}; save it "
                    "as mask.astype(bool) after checking what its values mean")


def load_npz(path: str | Path) -> STSeries:
    """Read a unist-format npz into an `STSeries` (errors name the bad key and the fix)."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"npz file {path} does not exist") from None
    except Exception as e:  # zipfile / format errors
        raise DataError(f"cannot read {path} as an npz file ({e}); write it with numpy.savez[_compressed]") from e
    with z:
        if "data" not in z.files:
            raise DataError(f"{path} has no 'data' array (keys: {sorted(z.files)}); store the values as "
                            "data=[T, N, C] (graph) or [T, H, W, C] (grid)")
        try:
            arrays = {k: z[k] for k in z.files}
        except ValueError as e:
            raise DataError(f"{path} holds pickled object arrays, which are refused (allow_pickle=False): save plain "
                            "numeric/str/datetime64 arrays, e.g. strings as np.array([...], dtype=str)") from e
        data = arrays["data"]
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
            raise DataError(f"{path}: 'data' must be numeric, got {data.dtype}")
        layout = _scalar_str(z, "layout", "graph" if data.ndim == 3 else "grid")
        if layout not in LAYOUTS:
            raise DataError(f"{path}: layout {layout!r} is unknown: use one of {LAYOUTS} (or leave it out)")
        want = 3 if layout == "graph" else 4
        if data.ndim != want:
            raise DataError(f"{path}: 'data' has rank {data.ndim} {data.shape} but layout {layout!r} needs rank {want} "
                            f"({'[T, N, C]' if want == 3 else '[T, H, W, C]'}); add a channel axis with data[..., None]")
        data = data.astype(np.float32)
        if np.isinf(data).any():
            raise DataError(f"{path}: 'data' has {int(np.isinf(data).sum())} inf values; replace them with NaN "
                            "(missing) or clip them")
        mask = ~np.isnan(data)
        if "mask" in arrays:
            m = arrays["mask"]
            if m.shape != data.shape:
                raise DataError(f"{path}: 'mask' shape {m.shape} differs from 'data' shape {data.shape}; "
                                "give one bool per value (False = missing)")
            mask &= _bool_mask(m, path)
        coords = None
        if "lat" in arrays and "lon" in arrays:
            lat, lon = arrays["lat"].astype(np.float64), arrays["lon"].astype(np.float64)
            if layout == "graph":
                if lat.shape != (data.shape[1],) or lon.shape != (data.shape[1],):
                    raise DataError(f"{path}: graph lat/lon must be [N={data.shape[1]}], got {lat.shape}, {lon.shape}")
                coords = np.stack([lat, lon], 1)
            else:
                coords = _grid_coords(lat, lon, data.shape[1], data.shape[2])
        elif "coords" in arrays:
            coords = arrays["coords"]
        interval = float(arrays["interval_minutes"]) if "interval_minutes" in arrays else None
        channels = [str(c) for c in arrays["channels"]] if "channels" in arrays else None
        return STSeries(values=data, mask=mask, layout=layout, coords=coords, edge_index=arrays.get("edge_index"),
                        edge_weight=arrays.get("edge_weight"), timestamps=arrays.get("timestamps"),
                        interval_minutes=interval, domain=_scalar_str(z, "domain", "unknown"),
                        name=_scalar_str(z, "name", path.stem), channels=channels,
                        meta={"source": str(path), "ignored_keys": sorted(set(arrays) - _KNOWN_KEYS)})


def save_npz(series: STSeries, path: str | Path) -> Path:
    """Write `series` in the unist npz format (compressed; `meta` is not stored)."""
    out: dict[str, np.ndarray] = {"data": series.values, "mask": series.mask, "layout": np.array(series.layout),
                                  "domain": np.array(series.domain), "name": np.array(series.name)}
    if series.timestamps is not None:
        out["timestamps"] = series.timestamps
    if series.interval_minutes is not None:
        out["interval_minutes"] = np.array(series.interval_minutes, np.float64)
    if series.coords is not None:
        out["coords"] = series.coords
    if series.edge_index is not None:
        out["edge_index"] = series.edge_index
    if series.edge_weight is not None:
        out["edge_weight"] = series.edge_weight
    if series.channels is not None:
        out["channels"] = np.array(series.channels, dtype=str)
    path = Path(path)
    with open(path, "wb") as f:  # a file object keeps numpy from appending a second ".npz"
        np.savez_compressed(f, **out)
    return path
