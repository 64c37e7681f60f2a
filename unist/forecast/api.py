"""`Forecaster`: the forecasting API, a network plus its `ForecastPolicy`: `forecast`, `impute`, `embed`.

    fc = unist.from_pretrained("unist-tiny-6")           # a Forecaster with the release's policy
    fc.forecast(window, horizon=12)                      # STSeries | numpy array | pandas long frame

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
from unist.model.hub import load_release
from unist.model.norm import denormalise
from unist.model.unist import UniST

from .inputs import array_series, forecast_frame, frame_series, is_frame
from .policy import ForecastPolicy, backtest_tokens, release_policy, sample_flow, trust_weights


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


class Forecaster:
    """A UniST network and the policy it forecasts by (see `policy.py`). `forecast_batch` is the one path:
    patchify the contexts (plus, for the self-check, each context with its own last tokens hidden), one
    network pass, then `forecast = rule + w * (network - rule)` and, with num_samples, rectified-flow draws."""

    def __init__(self, model: UniST, policy: ForecastPolicy | None = None):
        if not isinstance(model, UniST):
            raise TypeError(f"Forecaster needs a unist.model.UniST, got {type(model).__name__}")
        self.model = model
        self.policy = policy or ForecastPolicy()
        self.policy.check(model.lag_scorer is not None, 0)
        self.config = model.config
        self.patcher = model.patcher

    @classmethod
    def from_pretrained(cls, path_or_name, device=None, dtype=None, policy: ForecastPolicy | None = None,
                        verify: bool = True) -> "Forecaster":
        """The release's network with the release's policy (config.json "forecast_policy"), or `policy`."""
        rel = load_release(UniST, path_or_name, device=device, dtype=dtype, verify=verify)
        return cls(rel.model, policy or release_policy(rel.config, f"{rel.path}/config.json"))

    def with_policy(self, **changes) -> "Forecaster":
        """The same network under a changed policy, e.g. `with_policy(correction="none")` (an ablation)."""
        return Forecaster(self.model, self.policy.replace(**changes))

    def to(self, device) -> "Forecaster":
        self.model.to(device)
        return self

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ forecasting
    def forecast(self, data, horizon: int, num_samples: int = 0, allow_long: bool = False,
                 quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)):
        """Forecast `horizon` steps after `data`: an STSeries (grid, graph or video) or numpy array -> [horizon,
        *spatial, C] (point, float32) or, with num_samples > 0, [num_samples, horizon, *spatial, C]
        rectified-flow draws; a pandas long frame (unique_id, ds, y) -> a long frame of the forecast (columns
        unique_id, ds, unist and, with num_samples, unist-q{q} for `quantiles`). horizon: at most
        `horizon_limit(context steps)` unless allow_long=True (`check_horizon`)."""
        if is_frame(data):
            series, ids = frame_series(data)
            point = self.forecast_batch([series], horizon, allow_long=allow_long)[0]
            draws = self.forecast_batch([series], horizon, num_samples, allow_long)[0] if num_samples else None
            return forecast_frame(data, ids, point, draws, quantiles)
        if isinstance(data, np.ndarray):
            data = array_series(data)
        if not isinstance(data, STSeries):
            raise TypeError(f"forecast takes an STSeries, a numpy array or a pandas long frame (unique_id, ds, y), "
                            f"got {type(data).__name__}")
        return self.forecast_batch([data], horizon, num_samples, allow_long)[0]

    def forecast_batch(self, windows: list[STSeries], horizon: int, num_samples: int = 0,
                       allow_long: bool = False) -> list[np.ndarray]:
        """`forecast` for many windows in one packed pass (any mix of layouts, sizes and context lengths).

        Attention never crosses samples, routing is per token and normalisation per sample, so item i
        equals `forecast(windows[i], ...)` (up to float round-off) at a fraction of the cost."""
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be a positive int, got {horizon!r}")
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        policy, model = self.policy, self.model
        policy.check(model.lag_scorer is not None, num_samples)
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
        checked = policy.correction == "checked"
        n_back = backtest_tokens(n_ctx, future // tau) if checked else torch.zeros_like(n_ctx)
        backtests = n_back.nonzero().squeeze(1).tolist()  # samples with a self-check backtest
        windows = [extend_future(c, future) for c in ctxs] + [ctxs[b] for b in backtests]
        batch = self.patcher.patchify(windows).to(self._device())
        dev = batch.t_index.device
        n_vis = torch.cat([n_ctx, n_ctx[backtests] - n_back[backtests]]).to(dev)  # (B + B',) visible tokens
        keep = batch.t_index < n_vis[batch.sample_id]  # (L,) context tokens; the rest are hidden
        with eval_mode(model):
            out = model(batch, keep)
            nb, copy = out.batch, out.copy
            rule = model.lag_copy(copy) if policy.needs_rule else None  # (L, S, C) the backtest rule alone
            z, trust = policy.network(out), None  # (L, S, C) normalised
            if policy.correction == "none":
                z = rule
            elif backtests:
                check_of = torch.full((len(windows),), -1, dtype=torch.long, device=dev)
                check_of[B:] = torch.tensor(backtests, device=dev)
                trust = trust_weights(z, rule, nb.values, nb.mask & ~keep[:, None, None], check_of, batch.sample_id,
                                      batch.space_index, B, policy.beta)[:, None, None].to(z.dtype)  # (L, 1, 1)
                z = rule + trust * (z - rule)
            if num_samples:
                hid = ~keep & (batch.sample_id < B)  # the forecasts' future tokens (not the backtests')
                draws = sample_flow(model.flow, out.h[hid].repeat(num_samples, 1), z.shape[-1],
                                    self.config.objectives.flow_steps)
                centre = out.lagged[hid] if out.lagged is not None else torch.zeros_like(z[hid])
                if trust is not None:  # the decoder's move of the rule is trusted like the point forecast
                    centre = rule[hid] + trust[hid] * (centre - rule[hid])
                draws = draws.view(num_samples, -1, *draws.shape[1:]) + centre
                z = z.expand(num_samples, *z.shape).clone()  # (n, L, S, C)
                z[:, hid] = draws.to(z.dtype)
            y = denormalise(z, out.mean, out.std).float().cpu()
        steps = [slice(c.num_steps, c.num_steps + horizon) for c in ctxs]
        if not num_samples:  # first=B: the backtest samples are never unpatchified
            return [f[s] for f, s in zip(self.patcher.unpatchify(y.numpy(), batch, first=B), steps)]
        draws = [self.patcher.unpatchify(yi.numpy(), batch, first=B) for yi in y]  # n lists of B arrays
        return [np.stack([d[b][s] for d in draws]) for b, s in enumerate(steps)]

    # ------------------------------------------------------------------ imputation, embeddings
    def impute(self, series: STSeries) -> STSeries:
        """Fill the missing values of `series` (mask False) with the network's reconstruction (with the head's
        residual or without, by `policy.residual`), or with the lag copy's rule alone under correction "none".

        Tokens with at least one observed value go through the encoder with their observed cells;
        fully missing tokens are hidden and predicted from the others. Returns a copy with every value
        filled, mask all True, and `meta["imputed"]` = the original missing mask."""
        if isinstance(series, np.ndarray):
            series = array_series(series)
        if not isinstance(series, STSeries):
            raise TypeError(f"impute needs an STSeries or a numpy array, got {type(series).__name__}")
        if not series.mask.any():
            raise DataError(f"series {series.name!r} has no observed value: nothing to impute from")
        batch = self.patcher.patchify([series]).to(self._device())
        keep = batch.mask.flatten(1).any(dim=1)  # (L,) tokens with something observed
        with eval_mode(self.model):
            out = self.model(batch, keep)
            fill = self.model.lag_copy(out.copy) if self.policy.correction == "none" else self.policy.network(out)
            y = denormalise(fill, out.mean, out.std).float().cpu()
        full = self.patcher.unpatchify(y.numpy(), batch)[0]
        filled = np.where(series.mask, series.values, full).astype(np.float32)
        meta = {**series.meta, "imputed": ~series.mask}
        return replace(series, values=filled, mask=np.ones_like(series.mask), meta=meta)

    def embed(self, series: STSeries | list[STSeries]) -> torch.Tensor:
        """Per-sample embeddings [B, d_model]: mean of the encoder tokens over every observed patch."""
        windows = [series] if isinstance(series, STSeries) else list(series)
        batch = self.patcher.patchify(windows).to(self._device())
        with eval_mode(self.model):
            out = self.model(batch, torch.ones_like(batch.has_time), decode=False)
            return self.model.embed_samples(out.latent, out.visible)


__all__ = ["MAX_HORIZON", "MAX_HORIZON_RATIO", "Forecaster", "check_horizon", "eval_mode", "extend_future",
           "horizon_limit"]
