"""Inference on raw series: `forecast`, `impute` and `embed` (mixed into `UniST`).

Every call patchifies with the model's own patcher, so any grid, graph or video window works, and
normalises per location and channel with the observed context (instance normalisation, RevIN per
variate), de-normalising the outputs again. Forecasting is masked reconstruction of the future time patches:
the context is cropped at the front to whole time patches (the oldest T mod tau steps are dropped),
`horizon` unobserved steps (rounded up to whole patches) are appended, the future patches are hidden
from the encoder, and the decoder's prediction of them is mapped back with `unpatchify`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from unist.data.series import DataError, STSeries
from unist.patching.tokens import TokenBatch

from .losses import denormalise
from .selfcheck import backtest_tokens, trust_weights


# Forecast limits (docs/model.md, "Forecast limits"): pretraining hides about as many time patches as it shows,
# so a forecast much longer than its context is extrapolation, and the work grows with the horizon.
MAX_HORIZON_RATIO = 4   # horizon <= 4 x the window's context (after cropping to whole time patches)
MAX_HORIZON = 1024      # ... and <= 1024 steps, whatever the context; allow_long=True lifts both


def horizon_limit(context_steps: int) -> int:
    """The longest horizon `forecast` takes without allow_long=True after a context of `context_steps` steps."""
    return min(MAX_HORIZON, MAX_HORIZON_RATIO * context_steps)


def check_horizon(horizon: int, context_steps: int, name: str) -> None:
    """Refuse a horizon beyond `horizon_limit` with the ways around it (ValueError)."""
    limit = horizon_limit(context_steps)
    if horizon > limit:
        raise ValueError(f"horizon {horizon} is too long for window {name!r}: at most {limit} steps (the smaller of "
                         f"{MAX_HORIZON_RATIO} x its {context_steps}-step context and MAX_HORIZON={MAX_HORIZON}). "
                         "Beyond that the forecast is extrapolation and its cost grows with the horizon: forecast in "
                         f"chunks of <= {limit} steps, appending each forecast to the context, give a longer context, "
                         "or pass allow_long=True")


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no grad inside, the previous training flag restored after."""
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was)


def extend_future(window: STSeries, steps: int) -> STSeries:
    """`window` plus `steps` unobserved (NaN, mask False) future steps; timestamps extended when the step is known."""
    pad_shape = (steps,) + window.values.shape[1:]
    values = np.concatenate([window.values, np.full(pad_shape, np.nan, np.float32)])
    mask = np.concatenate([window.mask, np.zeros(pad_shape, bool)])
    ts = window.timestamps
    if ts is not None:
        step = window.interval_minutes
        if step is None and len(ts) >= 2:
            step = float((ts[-1] - ts[-2]) / np.timedelta64(1, "m"))
        if step:
            future = ts[-1] + np.arange(1, steps + 1) * np.timedelta64(int(round(step)), "m")
            ts = np.concatenate([ts, future])
        else:
            ts = None
    return replace(window, values=values, mask=mask, timestamps=ts, meta=dict(window.meta))


class InferenceMixin:
    """forecast / impute / embed for `UniST` (uses its patcher, encoder, decoder and heads)."""

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _encode_decode(self, batch: TokenBatch, keep: torch.Tensor):
        """Normalise with the kept tokens' observed cells, encode them, decode everything.

        Returns (normalised batch, decoder features (L, dd), anchor parts, mean (L, S, C), std (L, S, C))."""
        batch = self.prepare(batch)
        seen = batch.mask & keep[:, None, None]
        batch, mean, std = self.normalise_batch(batch, seen)
        latent, _ = self.forward_encoder(self.encoder_view(batch, seen, keep))
        return batch, self.forward_decoder(latent, batch, keep), self.anchor(batch, seen, keep), mean, std

    def forecast(self, window: STSeries, horizon: int, num_samples: int = 0, allow_long: bool = False) -> np.ndarray:
        """Forecast `horizon` steps after `window` (grid, graph or video).

        Returns [horizon, *spatial, C] (point forecast, numpy float32) or, with num_samples > 0,
        [num_samples, horizon, *spatial, C] rectified-flow samples (take quantiles over axis 0).
        horizon: at most `horizon_limit(context steps)` unless allow_long=True (`check_horizon`).
        """
        if not isinstance(window, STSeries):
            raise TypeError(f"forecast needs an STSeries window, got {type(window).__name__}")
        return self.forecast_batch([window], horizon, num_samples, allow_long=allow_long)[0]

    def forecast_batch(self, windows: list[STSeries], horizon: int, num_samples: int = 0,
                       anchor_only: bool = False, self_check: bool | None = None,
                       allow_long: bool = False) -> list[np.ndarray]:
        """`forecast` for many windows in one packed pass (any mix of layouts, sizes and context lengths).

        Attention never crosses samples, routing is per token and normalisation per sample, so item i
        equals `forecast(windows[i], ...)` (up to float round-off) at a fraction of the cost.
        anchor_only: the ablation "what does the network add?": the anchor weighted by its in-context
        backtest alone (no head output, no decoder term in the weights; point forecasts only).
        self_check: scale the network's correction of the anchor by its own in-context backtest
        (`selfcheck.py`); None = the model's `config.self_check`. allow_long: lift the horizon bound
        (`check_horizon`).
        """
        if anchor_only and num_samples:
            raise ValueError("anchor_only gives point forecasts only: use num_samples=0")
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be a positive int, got {horizon!r}")
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        tau = self.config.patch.time_patch
        ctxs = []
        for window in windows:
            if not isinstance(window, STSeries):
                raise TypeError(f"forecast needs STSeries windows, got {type(window).__name__}")
            t = window.num_steps
            if t < tau:
                raise DataError(f"window {window.name!r} has {t} steps, fewer than one time patch (tau={tau}): "
                                f"give at least {tau} context steps")
            if not window.mask.any():
                raise DataError(f"window {window.name!r} has no observed value: nothing to forecast from")
            if not allow_long:
                check_horizon(int(horizon), t - t % tau, window.name)
            ctxs.append(window.slice_time(t % tau, t))  # whole time patches only
        if not ctxs:
            return []
        future = -(-horizon // tau) * tau
        B = len(ctxs)
        n_ctx = torch.tensor([c.num_steps // tau for c in ctxs])  # (B,) context tokens
        backtested = self.anchor_gate is not None or self.lag_scorer is not None  # an anchor with a rule of its own
        if self_check and not backtested:
            raise ValueError("self_check=True needs a backtest-weighted anchor (the lag copy, lag_candidates > 0, or the "
                             "four-candidate anchor, gated_anchor=True); this one has none: use self_check=False")
        check = self_check if self_check is not None else self.config.self_check
        check = check and not anchor_only and backtested
        n_back = backtest_tokens(n_ctx, future // tau) if check else torch.zeros_like(n_ctx)
        checked = n_back.nonzero().squeeze(1).tolist()  # samples with a backtest (`selfcheck.py`)
        windows = [extend_future(c, future) for c in ctxs] + [ctxs[b] for b in checked]
        batch = self.patcher.patchify(windows).to(self._device())
        dev = batch.t_index.device
        n_vis = torch.cat([n_ctx, n_ctx[checked] - n_back[checked]]).to(dev)  # (B + B',) visible tokens
        keep = batch.t_index < n_vis[batch.sample_id]  # (L,) context tokens; the rest are hidden
        with eval_mode(self):
            nb, h, anchor, mean, std = self._encode_decode(batch, keep)
            z = self.reconstruct(h, nb, anchor, anchor_only)  # (L, S, C) normalised
            if checked:
                base = self.reconstruct(h, nb, anchor, anchor_only=True)
                check_of = torch.full((len(windows),), -1, dtype=torch.long, device=dev)
                check_of[B:] = torch.tensor(checked, device=dev)
                trust = trust_weights(z, base, nb.values, nb.mask & ~keep[:, None, None], check_of,
                                      batch.sample_id, batch.space_index, B)[:, None, None].to(z.dtype)  # (L, 1, 1)
                z = base + trust * (z - base)
            if num_samples:
                hid = ~keep & (batch.sample_id < B)  # the forecasts' future tokens (not the backtests')
                draws = self.flow.sample(h[hid].repeat(num_samples, 1), z.shape[-1], self.config.objectives.flow_steps)
                centre = self.anchor_value(h, anchor)[hid]  # the flow draws residuals on the gated anchor
                if checked:  # the decoder's move of the anchor is trusted like the point forecast; the spread is kept
                    centre = base[hid] + trust[hid] * (centre - base[hid])
                draws = draws.view(num_samples, -1, *draws.shape[1:]) + centre
                z = z.expand(num_samples, *z.shape).clone()  # (n, L, S, C)
                z[:, hid] = draws.to(z.dtype)
            y = denormalise(z, mean, std).float().cpu()
        steps = [slice(c.num_steps, c.num_steps + horizon) for c in ctxs]
        if not num_samples:  # first=B: the backtest samples are never unpatchified
            return [f[s] for f, s in zip(self.patcher.unpatchify(y.numpy(), batch, first=B), steps)]
        draws = [self.patcher.unpatchify(yi.numpy(), batch, first=B) for yi in y]  # n lists of B arrays
        return [np.stack([d[b][s] for d in draws]) for b, s in enumerate(steps)]

    def impute(self, series: STSeries) -> STSeries:
        """Fill the missing values of `series` (mask False) with the model's reconstruction.

        Tokens with at least one observed value go through the encoder with their observed cells;
        fully missing tokens are hidden and predicted from the others. Returns a copy with every value
        filled, mask all True, and `meta["imputed"]` = the original missing mask.
        """
        if not isinstance(series, STSeries):
            raise TypeError(f"impute needs an STSeries, got {type(series).__name__}")
        if not series.mask.any():
            raise DataError(f"series {series.name!r} has no observed value: nothing to impute from")
        batch = self.patcher.patchify([series]).to(self._device())
        keep = batch.mask.flatten(1).any(dim=1)  # (L,) tokens with something observed
        with eval_mode(self):
            nb, h, anchor, mean, std = self._encode_decode(batch, keep)
            y = denormalise(self.reconstruct(h, nb, anchor), mean, std).float().cpu()
        full = self.patcher.unpatchify(y.numpy(), batch)[0]
        filled = np.where(series.mask, series.values, full).astype(np.float32)
        meta = {**series.meta, "imputed": ~series.mask}
        return replace(series, values=filled, mask=np.ones_like(series.mask), meta=meta)

    def embed(self, series: STSeries | list[STSeries]) -> torch.Tensor:
        """Per-sample embeddings [B, d_model]: mean of the encoder tokens over every observed patch."""
        windows = [series] if isinstance(series, STSeries) else list(series)
        batch = self.prepare(self.patcher.patchify(windows).to(self._device()))
        keep = torch.ones_like(batch.has_time)
        with eval_mode(self):
            nb, _, _ = self.normalise_batch(batch, batch.mask)
            visible = self.encoder_view(nb, nb.mask, keep)
            latent, _ = self.forward_encoder(visible)
            return self.embed_samples(latent, visible)
