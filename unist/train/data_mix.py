"""Pretraining data: a weighted mixture of real datasets and the synthetic corpus, packed to a token budget.

  build_sources(cfg.data, seed)  load the training split (chronological 6:2:2, first 60 %) of every
                                 dataset to train on (registered names or .npz / video paths),
                                 z-scored with train-split statistics; held-out datasets are never
                                 passed to the loader. "auto" that finds no dataset, and a
                                 dataset_weights name outside the mixture, are errors (a wrong
                                 UNIST_DATA_DIR or a typo must not silently train something else).
  Mixture                        source weights: a data type's weight is split over its datasets.
  pack_batch(...)                micro-batch j of rank r: windows drawn with rng (seed, r, j) and added
                                 while they fit `tokens_per_batch`; patchified into one packed TokenBatch
                                 (cu_seqlens, no padding).
  PretrainStream                 an IterableDataset of those micro-batches; DataLoader worker w of n
                                 makes batches j = start + w, start + w + n, ... and the DataLoader's
                                 round-robin hands them out in order j = start, start + 1, ..., so the
                                 stream is the same for any num_workers and resumes exactly at `start`.
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from unist.data import (DATASETS, DataError, Normalizer, PriorConfig, PriorCorpus, STSeries, SyntheticConfig,
                        SyntheticCorpus, data_dir, load_series, sliding_windows, split_series)
from unist.data.registry import canonical_name, unknown_name_error
from unist.data.video import VIDEO_SUFFIXES
from unist.patching import PatcherConfig, TokenBatch, UniversalPatcher, partition_graph

from .config import DataSection
from .crops import crop_cells

SYNTHETIC = "synthetic"
PRIOR = "prior"  # the synthetic forecasting prior (`unist.data.synthetic.PriorCorpus`), weight data.prior_weight


# ---------------------------------------------------------------------------------- sources
@dataclass
class Source:
    """One mixture component. Real: `series` is its normalised training split and `starts` the starts of
    windows of `window` steps that do not straddle a gap; synthetic: `corpus` makes a fresh series per draw."""

    name: str
    layout: str | None  # None: the synthetic corpus (all layouts)
    weight: float = 0.0
    series: STSeries | None = None
    starts: np.ndarray | None = None
    corpus: SyntheticCorpus | None = None
    record: dict[str, Any] = field(default_factory=dict)  # what the checkpoint/release lists
    window: int = 0  # steps per window of a real source (data.window, or less where gaps force it)


MIN_WINDOW = 8  # the shortest window worth training on (two time patches at tau = 4)


def window_starts(series: STSeries, window: int) -> tuple[int, np.ndarray]:
    """(length, starts) of gap-free windows: `window` steps if any exist, else the longest length that
    halving reaches (>= MIN_WINDOW; a series cut by gaps, like GeoLife's sessions); starts may be empty."""
    length = min(window, series.num_steps)
    while True:
        starts = np.array([w.meta["window_start"] for w in sliding_windows(series, length)], dtype=np.int64)
        if starts.size or length // 2 < MIN_WINDOW:
            return length, starts
        length //= 2


def is_file_ref(entry: str) -> bool:
    """Whether a data.datasets / data.heldout entry is a file path (.npz in the unist npz format, or a
    video file) rather than a registered dataset name."""
    return Path(entry).suffix.lower() in (".npz", *VIDEO_SUFFIXES)


def source_name(entry: str) -> str:
    """The name a dataset entry trains under: the registered name, or a file's stem."""
    if is_file_ref(entry):
        return Path(entry).stem
    key = canonical_name(entry)
    if key is None:
        raise unknown_name_error(entry)
    return key


def canonical(name: str) -> str:
    """The registered name of `name`; DataError with a did-you-mean if there is none."""
    key = canonical_name(name)
    if key is None:
        raise unknown_name_error(name)
    return key


def _data_root(data: DataSection) -> tuple[Path, str]:
    """(data folder, where that choice came from) for error messages."""
    if data.data_dir:
        return Path(data.data_dir), "data.data_dir"
    if os.environ.get("UNIST_DATA_DIR"):
        return data_dir(), "UNIST_DATA_DIR"
    return data_dir(), "the default; UNIST_DATA_DIR is not set"


def auto_datasets(data: DataSection) -> list[str]:
    """Every registered dataset with a series whose folder exists under the data dir; DataError if none
    does (a wrong or missing UNIST_DATA_DIR would otherwise train on the synthetic corpus alone)."""
    root, origin = _data_root(data)
    names = [n for n, s in DATASETS.items() if s.has_series and (root / s.folder).is_dir()]
    if not names:
        folders = sorted({s.folder + "/" for s in DATASETS.values() if s.has_series})
        state = "does not exist" if not root.is_dir() else \
            f"holds none of the dataset folders ({', '.join(folders[:4])}, ...)"
        raise DataError(f"data.datasets=auto found no dataset: the data folder {root} ({origin}) {state}. Set "
                        "UNIST_DATA_DIR (or data.data_dir) to the folder that holds the datasets (docs/data.md), "
                        "or pass data.datasets=synthetic to train on the synthetic corpus alone")
    return names


def training_datasets(data: DataSection) -> list[str]:
    """The real datasets to train on, as registered names or file paths: `data.datasets` with "auto"
    expanded (see `auto_datasets`) and "synthetic" dropped (it is the synthetic corpus, see
    `build_sources`), minus `data.heldout` (matched by `source_name`)."""
    heldout = {source_name(n) for n in data.heldout}
    refs: list[str] = []
    for entry in data.datasets:
        if entry == "auto":
            refs += auto_datasets(data)
        elif entry == SYNTHETIC:
            continue
        elif is_file_ref(entry):
            if not Path(entry).is_file():
                raise DataError(f"data.datasets: file {entry} does not exist (give a path to a .npz in the unist "
                                "npz format, docs/data.md, or to a video file)")
            refs.append(entry)
        else:
            refs.append(canonical(entry))
    refs = [r for r in refs if source_name(r) not in heldout]
    names = [source_name(r) for r in refs]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise DataError(f"data.datasets lists {dups} more than once (a file trains under its stem, which must not "
                        "repeat another entry's name): rename the file or drop the duplicate")
    return refs


def _load_options(ref: str, data: DataSection) -> dict[str, Any]:
    suffix = Path(ref).suffix.lower()
    if suffix == ".npz":
        return {}
    kind = "video" if suffix in VIDEO_SUFFIXES else DATASETS[ref].kind if ref in DATASETS else "video"
    if kind == "video":
        return {"size": data.video_size, "fps": data.video_fps, "max_frames": data.video_max_frames}
    return {}


def load_training_split(ref: str, data: DataSection,
                        loader: Callable[..., STSeries] | None = None) -> tuple[STSeries, dict[str, Any]]:
    """The z-scored training split of dataset `ref` (a registered name or a file path) and its record
    (normaliser, sizes; a file's record names it by its stem and keeps the path)."""
    full = (loader or load_series)(ref, **_load_options(ref, data))
    train = split_series(full)["train"]
    norm = Normalizer().fit(train)
    record = {"name": source_name(ref), "layout": full.layout, "domain": full.domain,
              "split": "train (first 60%, 6:2:2)", "steps_used": train.num_steps, "steps_total": full.num_steps,
              "shape": list(full.values.shape), "normalizer": norm.state_dict()}
    if is_file_ref(ref):
        record["path"] = str(Path(ref).resolve())
    return norm.transform(train), record


def build_sources(data: DataSection, seed: int, loader: Callable[..., STSeries] | None = None) -> list[Source]:
    """Every mixture source with its weight (see DataSection); raises DataError if none has weight."""
    if data.data_dir:
        os.environ["UNIST_DATA_DIR"] = data.data_dir  # the data registry reads it
    refs = training_datasets(data)
    dataset_weights(data, [source_name(r) for r in refs])  # a misspelled name fails before any data is read
    sources = []
    for ref in refs:
        series, record = load_training_split(ref, data, loader)
        name = record["name"]
        length, starts = window_starts(series, data.window)
        if starts.size == 0:
            raise DataError(f"dataset {name!r}: no gap-free window of {min(data.window, MIN_WINDOW)} steps or more "
                            "in its training split; lower data.window or hold it out (data.heldout)")
        record["window"] = length
        sources.append(Source(name, series.layout, series=series, starts=starts, record=record, window=length))
    if data.synthetic_weight > 0:
        syn = SyntheticConfig(steps=(data.window, 4 * data.window), video_steps=(data.window, 4 * data.window))
        corpus = SyntheticCorpus(seed=seed, config=syn)
        sources.append(Source(SYNTHETIC, None, corpus=corpus,
                              record={"name": SYNTHETIC, "layout": "grid+graph+video", "seed": seed,
                                      "split": "generated on the fly (unist.data.SyntheticCorpus)"}))
    if data.prior_weight > 0:
        prior = PriorCorpus(seed=seed, config=PriorConfig(steps=(min(data.min_window * 2, data.window), data.window)))
        sources.append(Source(PRIOR, None, corpus=prior,
                              record={"name": PRIOR, "layout": "grid+graph", "seed": seed,
                                      "split": "generated on the fly (unist.data.PriorCorpus)"}))
    assign_weights(sources, data)
    sources = [s for s in sources if s.weight > 0]
    if not sources:
        raise DataError("the data mixture is empty: no dataset found to train on and synthetic_weight=0 and "
                        "prior_weight=0; set UNIST_DATA_DIR (or data.data_dir) or data.synthetic_weight > 0")
    for s in sources:
        s.record["weight"] = s.weight
    return sources


def dataset_weights(data: DataSection, trained: list[str]) -> dict[str, float]:
    """`data.dataset_weights` keyed by source name (aliases resolved); DataError for a name that is not
    one of the `trained` real datasets (a typo, a held-out or absent dataset), with a did-you-mean."""
    out = {}
    for key, w in data.dataset_weights.items():
        if key in (SYNTHETIC, PRIOR):
            raise DataError(f"data.dataset_weights cannot weight the synthetic corpora: use data.{key}_weight"
                            if key == PRIOR else "data.dataset_weights cannot weight the synthetic corpus: use "
                            "data.synthetic_weight")
        name = canonical_name(key) or key
        if name not in trained:
            close = difflib.get_close_matches(key, trained, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            why = " It is held out (data.heldout)." if name in {source_name(n) for n in data.heldout} else ""
            raise DataError(f"data.dataset_weights names {key!r}, which is not a dataset of this run.{why}{hint} "
                            f"Datasets trained on: {', '.join(trained) or 'none (synthetic only)'}")
        out[name] = w
    return out


def assign_weights(sources: list[Source], data: DataSection) -> None:
    """Normalised mixture weights: type_weights[layout] split over that layout's datasets (times
    dataset_weights[name], checked by `dataset_weights`); the synthetic corpus gets synthetic_weight."""
    per_name = dataset_weights(data, [s.name for s in sources if s.layout is not None])
    raw = []
    for s in sources:
        if s.layout is None:
            raw.append(data.prior_weight if s.name == PRIOR else data.synthetic_weight)
            continue
        peers = [p for p in sources if p.layout == s.layout]
        share = sum(per_name.get(p.name, 1.0) for p in peers)
        w = data.type_weights.get(s.layout, 0.0) * per_name.get(s.name, 1.0)
        raw.append(w / share if share > 0 else 0.0)
    total = sum(raw)
    for s, w in zip(sources, raw):
        s.weight = w / total if total > 0 else 0.0


# ---------------------------------------------------------------------------------- windows
def window_length(rng: np.random.Generator, data: DataSection, available: int) -> int:
    """Steps of one draw: half the time the longest (`data.window`, or all `available`), else log-uniform in
    [min_window, that] (see DataSection)."""
    longest = max(1, min(data.window, available))
    shortest = min(data.min_window, longest)
    if rng.random() < 0.5 or shortest == longest:
        return longest
    return int(round(math.exp(rng.uniform(math.log(shortest), math.log(longest)))))


def cell_budget(data: DataSection, steps: int, patch: PatcherConfig | None) -> int:
    """Cells a window of `steps` steps may keep: data.max_cells, and no more than `tokens_per_batch` tokens'
    worth of spatial patches (P cells each) at its number of time patches."""
    if patch is None:
        return data.max_cells
    n_time = -(-steps // patch.time_patch)
    return max(1, min(data.max_cells, (data.tokens_per_batch // n_time) * patch.spatial_slots))


def draw_window(src: Source, data: DataSection, rng: np.random.Generator,
                patch: PatcherConfig | None = None) -> STSeries:
    """One training window from `src` (`window_length` steps, from a gap-free start of a real source), cropped to
    `cell_budget` cells."""
    if src.corpus is not None:
        s = src.corpus.sample(int(rng.integers(0, 2**62)))
        s = Normalizer().fit(s).transform(s)  # per sample: the corpus has no fixed scale
        length = window_length(rng, data, s.num_steps)
        start = int(rng.integers(0, max(1, s.num_steps - length + 1)))
    else:
        s = src.series
        span = src.window or data.window
        length = window_length(rng, data, span)
        start = int(src.starts[rng.integers(0, len(src.starts))]) + int(rng.integers(0, span - length + 1))
    w = s.slice_time(start, min(s.num_steps, start + length))
    return crop_cells(w, cell_budget(data, w.num_steps, patch), rng)


def num_tokens(s: STSeries, patch: PatcherConfig) -> int:
    """Tokens the patcher makes from `s`: time patches x spatial patches (graph partitions are cached)."""
    n_time = -(-s.num_steps // patch.time_patch)
    if s.layout == "graph":
        n_space = partition_graph(s.num_nodes, patch.k, s.coords, s.edge_index, s.edge_weight).num_patches
    else:
        h, w = s.spatial_shape
        n_space = -(-h // patch.patch_size) * -(-w // patch.patch_size)
    return n_time * n_space


class Mixture:
    """Weighted sources + the packing rule; `batch(rank, j)` depends only on (seed, rank, j)."""

    def __init__(self, sources: list[Source], data: DataSection, patch: PatcherConfig, seed: int):
        self.sources, self.data, self.seed = sources, data, seed
        self.patcher = UniversalPatcher(patch)
        self.probs = np.array([s.weight for s in sources], np.float64)
        self.probs /= self.probs.sum()

    def data_index(self, j: int) -> int:
        """Which micro-batch of the stream position j is (j itself, or j mod data.repeat_batches)."""
        return j % self.data.repeat_batches if self.data.repeat_batches else j

    def windows(self, rank: int, j: int) -> list[STSeries]:
        """Windows of micro-batch j on `rank`, drawn until the next one would overflow the token budget."""
        rng = np.random.default_rng([self.seed, rank, self.data_index(j)])
        budget, out, used = self.data.tokens_per_batch, [], 0
        while True:
            src = self.sources[int(rng.choice(len(self.sources), p=self.probs))]
            w = draw_window(src, self.data, rng, self.patcher.config)
            w.meta["source"] = src.name
            n = num_tokens(w, self.patcher.config)
            while n > budget and w.num_nodes > 1:  # graph partitions can hold fewer than P nodes: crop further
                w = crop_cells(w, max(1, w.num_nodes * budget // n), rng)
                n = num_tokens(w, self.patcher.config)
            if n > budget:
                raise DataError(f"one window of {src.name!r} ({w.layout} {w.values.shape}) makes {n} tokens, more "
                                f"than data.tokens_per_batch={budget}: raise the budget or lower data.window")
            if used + n > budget:
                return out
            out.append(w)
            used += n

    def batch(self, rank: int, j: int) -> tuple[TokenBatch, dict[str, Any]]:
        wins = self.windows(rank, j)
        tb = self.patcher.patchify(wins)
        return tb, {"index": j, "sources": [w.meta["source"] for w in wins], "values": observed_points(tb)}


class PretrainStream(IterableDataset):
    """Endless packed micro-batches of one rank, starting at micro-batch `start` (see module docstring)."""

    def __init__(self, mixture: Mixture, rank: int, start: int = 0):
        super().__init__()
        self.mixture, self.rank, self.start = mixture, rank, start

    def __iter__(self) -> Iterator[tuple[TokenBatch, dict[str, Any]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        j = self.start + worker
        while True:
            yield self.mixture.batch(self.rank, j)
            j += workers


def make_loader(mixture: Mixture, rank: int, start: int, num_workers: int) -> DataLoader:
    """DataLoader over `PretrainStream` (batch_size=None: a TokenBatch is already a packed micro-batch)."""
    kw: dict[str, Any] = {"num_workers": num_workers, "batch_size": None}
    if num_workers > 0:
        kw.update(prefetch_factor=2, persistent_workers=False)
    return DataLoader(PretrainStream(mixture, rank, start), **kw)


def observed_points(batch: TokenBatch) -> int:
    """Observed space-time points of a batch (cells or nodes x time steps with any channel observed; padding
    and channels not counted): the unit of `values_per_s`, which does not depend on how tokens are cut."""
    return int(batch.mask.any(-1).sum())
