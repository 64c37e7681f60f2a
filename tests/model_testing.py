"""Helpers shared by the model, objective and forecast tests: small series of every layout, tiny configs, the
pretraining losses of a network (`Pretrainer(model)(batch)`) and a single-thread fixture."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unist.data.series import STSeries
from unist.model import UniST, get_config
from unist.objectives import Pretrainer
from unist.patching import PatcherConfig

LOSS_KEYS = ("loss", "masked", "contrastive", "diffusion", "moe_aux", "moe_z")


def grid_series(t=8, h=6, w=5, c=2, seed=0, layout="grid", missing=0.0) -> STSeries:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(t, h, w, c)).astype(np.float32) + np.arange(t, dtype=np.float32)[:, None, None, None] * 0.1
    mask = rng.random(v.shape) >= missing
    ts = np.datetime64("2024-01-01T00:00") + np.arange(t) * np.timedelta64(30, "m")
    return STSeries(values=v, mask=mask, layout=layout, timestamps=ts, interval_minutes=30.0,
                    domain="video" if layout == "video" else "bike", name=f"{layout}{seed}")


def graph_series(t=8, n=11, c=1, seed=0, missing=0.0) -> STSeries:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(t, n, c)).astype(np.float32)
    coords = rng.random((n, 2))
    return STSeries(values=v, mask=rng.random(v.shape) >= missing, layout="graph", coords=coords,
                    domain="traffic", name=f"graph{seed}")


def mixed_windows(seed=0) -> list[STSeries]:
    """A grid, a graph and a video window (3 channels), all small."""
    return [grid_series(seed=seed), graph_series(seed=seed + 1),
            grid_series(t=6, h=4, w=4, c=3, seed=seed + 2, layout="video")]


def tiny_model(**overrides) -> UniST:
    """unist_tiny shrunk for unit tests: 2x2 patches, tau 2 (8 slots), narrow widths."""
    kw = dict(d_model=32, heads=2, depth=2, decoder_dim=32, decoder_heads=2, decoder_depth=1, diffusion_dim=32,
              diffusion_depth=1, patch_embed_dim=16, patch=PatcherConfig(patch_size=2, time_patch=2))
    kw.update(overrides)
    return UniST(get_config("unist_tiny", **kw))


def losses(model: UniST, batch, seed: int = 0) -> dict[str, torch.Tensor]:
    """The pretraining loss dict of `model` on `batch` (masks drawn from `seed`)."""
    torch.manual_seed(seed)
    return Pretrainer(model)(batch)


@pytest.fixture
def single_thread():
    """Tiny CPU models run faster on one thread than on two contended ones; restore afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def assert_nothing_hidden_leaks(make_parts, values: torch.Tensor, seen: torch.Tensor, parts) -> None:
    """The lag copy's candidates and features (`parts` = make_parts(values)) do not change when every cell the encoder
    does not see is poisoned with 1e6."""
    leaked = make_parts(torch.where(seen, values, torch.full_like(values, 1e6)))
    torch.testing.assert_close(leaked.values, parts.values)
    torch.testing.assert_close(leaked.features, parts.features)
