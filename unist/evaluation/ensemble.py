"""The four-candidate classical ensemble: a baseline of the zero-shot evaluation ("ensemble4").

Persistence ("the next hour looks like the last reading") and seasonal naive ("like the same hour
yesterday") are the field's strongest simple forecasts. This ensemble (the anchor of the first release,
unist-tiny, before the lag copy replaced it inside the network) forecasts every hidden token as

    anchor = w_P P + w_M M + w_S S + w_L (S + D),   w = softmax over the available candidates of
             -4 log(backtest error of each candidate)

  P  last value: per spatial slot and channel, the last value the encoder saw in the nearest earlier
     visible token of the same sample and spatial patch, repeated over the token's tau steps;
  M  smoothed last value: the mean of that token's seen values (less sensor noise than one reading);
  S  seasonal naive: the same spatial patch exactly one day earlier (k days for the smallest visible
     k <= 7), slot by slot; only for samples whose tokens tile the day (token length divides 24 h,
     read from the clock features) and where the source token's clock matches (gaps never shift it);
  D  level shift: the mean of P's token minus the mean of ITS token one day earlier, so S + D is
     seasonal naive corrected for "today runs warmer than yesterday".

`gate_features` backtests every candidate inside the context, at the token's own lead: how well
would it have predicted the visible tokens of this spatial patch; the weights are proportional to
error^-4 (a sharpened Bates & Granger inverse-error combination, `gate_init`). Candidates that do not
exist for a token get weight 0; P falls back to 0 (the location mean) where nothing earlier was seen.
Only the context enters any candidate or feature, so no target leaks (tested by poisoning hidden values).
`ClassicalEnsemble` runs it on raw windows with the same patching and per-location normalisation as the
model, so it is scored on exactly the model's terms; no learned weight enters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unist.data.series import STSeries
from unist.forecast.api import extend_future
from unist.model.history import (DAY_MINUTES, day_minute, expand_steps, group_mean, last_seen_values, latest_kept,
                                 mean_seen_values, tokens_per_day)
from unist.model.norm import denormalise, location_stats, normalise
from unist.model.registry import get_config
from unist.patching.patcher import PatcherConfig, UniversalPatcher



def seasonal_source(keep: torch.Tensor, minute: torch.Tensor, per_day: torch.Tensor, sample_id: torch.Tensor,
                    space_index: torch.Tensor, t_index: torch.Tensor, cu_seqlens: torch.Tensor,
                    max_days: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """For every token, the kept token of its spatial patch k days earlier (smallest k <= max_days).

    Tokens are time-major within a sample (token = cu[b] + t * n_space + s). The source's clock must
    match (a gap in the series breaks the k-days-earlier arithmetic, never the check). Returns src (L,),
    ok (L,)."""
    L = keep.numel()
    n_space = torch.bincount(sample_id[t_index == 0], minlength=int(cu_seqlens.numel()) - 1)  # (B,)
    tpd = per_day[sample_id]  # (L,)
    start = cu_seqlens[:-1].long()[sample_id]
    src = torch.zeros(L, dtype=torch.long, device=keep.device)
    ok = torch.zeros(L, dtype=torch.bool, device=keep.device)
    for k in range(1, max_days + 1):
        t_src = t_index - k * tpd
        cand = start + t_src.clamp(min=0) * n_space[sample_id] + space_index
        cand = cand.clamp(max=L - 1)
        diff = torch.remainder(minute[cand] - minute + 0.5 * DAY_MINUTES, DAY_MINUTES) - 0.5 * DAY_MINUTES
        good = (tpd > 0) & (t_src >= 0) & keep[cand] & (diff.abs() < 0.5) & ~ok
        src = torch.where(good, cand, src)
        ok = ok | good
    return src, ok


GATE_FEATURES = 8
CANDIDATES = 4  # last value P, smoothed M, seasonal S, level-corrected seasonal S + D
LOG_ERRORS = slice(4, 8)  # gate_features columns holding each candidate's backtest log error


@dataclass
class EnsembleParts:
    """The anchor's components on normalised values, each (L, S, C), 0 where they do not exist;
    `features` (L, GATE_FEATURES) for the weights (see `gate_features`) and `available` (L, CANDIDATES)."""

    persist: torch.Tensor
    smooth: torch.Tensor    # M - P
    seasonal: torch.Tensor  # S - P
    level: torch.Tensor     # D
    features: torch.Tensor | None = None
    available: torch.Tensor | None = None

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of logits (L, CANDIDATES) over the available candidates -> (L, CANDIDATES)."""
        if self.available is not None:
            logits = logits.masked_fill(~self.available, torch.finfo(logits.dtype).min)
        return torch.softmax(logits.float(), dim=-1).to(self.persist.dtype)

    def combine(self, w: torch.Tensor) -> torch.Tensor:
        """Candidate weights w (L, 4) (summing to 1) -> anchor (L, S, C) = sum_k w_k F_k."""
        w = w.to(self.persist.dtype)[:, :, None, None]
        return self.persist + w[:, 1] * self.smooth + (w[:, 2] + w[:, 3]) * self.seasonal + w[:, 3] * self.level

    def gate_inputs(self) -> torch.Tensor:
        """(L, GATE_FEATURES) features (zeros when they were not computed)."""
        if self.features is None:
            return self.persist.new_zeros(self.persist.shape[0], GATE_FEATURES)
        return self.features.to(self.persist.dtype)


def gate_init(weight: torch.Tensor, bias: torch.Tensor, beta: float = 4.0) -> None:
    """Initial weighting rule: logit_k = -beta * log(backtest error of candidate k), i.e. weights proportional
    to error^-beta (beta = 2: Bates & Granger's inverse-MSE forecast combination, here on in-context MAE)."""
    with torch.no_grad():
        weight.zero_()
        bias.zero_()
        for k in range(CANDIDATES):
            weight[k, LOG_ERRORS.start + k] = -beta


def gate_features(mean_v: torch.Tensor, mean_has: torch.Tensor, last_val: torch.Tensor, has: torch.Tensor,
                  keep: torch.Tensor, group: torch.Tensor, num_groups: int, t_index: torch.Tensor,
                  n_space: torch.Tensor, lead: torch.Tensor, hidden: torch.Tensor, src_s: torch.Tensor,
                  ok_s: torch.Tensor, has_l: torch.Tensor, per_day: torch.Tensor, tau: int) -> torch.Tensor:
    """(L, 8) per hidden token: log1p(lead in steps), lead in days, has seasonal, has level, and an
    in-context backtest of its spatial patch AT ITS LEAD: the log mean |error| (over the visible tokens,
    on normalised values, against each visible token's mean) of each candidate, last value P, smoothed
    last token M, seasonal naive S and level-corrected seasonal S + D (see the code for the fallbacks).
    per_day (L,): tokens per day of each token's sample (0 = no daily clock).

    "Inside this very context, yesterday predicted today better than the last reading did" is exactly
    what the gates need, and it is computed the same way for any dataset: this is what lets them
    transfer zero-shot."""
    L = keep.numel()
    eps = 1e-3
    lead_tok = torch.where(hidden, lead, torch.zeros_like(lead))
    max_lead = int(lead_tok.max()) if L else 0
    idx = torch.arange(L, device=keep.device)
    e_p = mean_v.new_zeros(L)
    e_m, e_l = torch.zeros_like(e_p), torch.zeros_like(e_p)
    has_ep, has_em, has_el = (torch.zeros(L, dtype=torch.bool, device=keep.device) for _ in range(3))
    src_day = torch.where(ok_s, src_s, idx)
    for ell in range(1, max_lead + 1):  # backtests at every lead a hidden token needs
        back = (idx - ell * n_space).clamp(min=0)  # same patch, ell tokens earlier (time-major)
        pair = keep & (t_index >= ell) & keep[back]
        ok = pair[:, None, None] & mean_has
        gp, hp = group_mean((mean_v - last_val[back]).abs(), ok & has[back], group, num_groups)
        gm, hm = group_mean((mean_v - mean_v[back]).abs(), ok & mean_has[back], group, num_groups)
        lvl = mean_v[src_day] + mean_v[back] - mean_v[src_day[back]]
        okl = ok & (ok_s & ok_s[back])[:, None, None] & mean_has[src_day] & mean_has[back] & mean_has[src_day[back]]
        gl, hl = group_mean((mean_v - lvl).abs(), okl, group, num_groups)
        at = hidden & (lead == ell)
        e_p, has_ep = torch.where(at, gp[group], e_p), torch.where(at, hp[group], has_ep)
        e_m, has_em = torch.where(at, gm[group], e_m), torch.where(at, hm[group], has_em)
        e_l, has_el = torch.where(at, gl[group], e_l), torch.where(at, hl[group], has_el)
    okd = (keep & ok_s)[:, None, None] & mean_has & mean_has[src_day]
    gs, hs = group_mean((mean_v - mean_v[src_day]).abs(), okd, group, num_groups)
    e_s, has_es = gs[group], hs[group]
    log = lambda x: torch.log(x + eps)  # noqa: E731
    z = torch.zeros_like(e_p)
    has_s = hidden & ok_s
    # a candidate without a backtest pair gets the worst log error of the token's others (never a free pass)
    errs = torch.stack([torch.where(has_ep, log(e_p), z), torch.where(has_em, log(e_m), z),
                        torch.where(has_es & has_s, log(e_s), z), torch.where(has_el & has_l, log(e_l), z)], 1)
    known = torch.stack([has_ep, has_em, has_es & has_s, has_el & has_l], 1)
    worst = torch.where(known, errs, torch.full_like(errs, -1e4)).amax(1, keepdim=True)
    errs = torch.where(known, errs, torch.where(known.any(1, keepdim=True), worst, z.unsqueeze(1)))
    steps = lead_tok.to(mean_v.dtype) * tau
    tpd = per_day.to(mean_v.dtype)
    days = torch.where(tpd > 0, steps / (tpd * tau).clamp(min=1), z)
    feats = torch.cat([torch.stack([torch.log1p(steps), days, has_s.to(z.dtype), has_l.to(z.dtype)], 1), errs], 1)
    return torch.where(hidden[:, None], feats, torch.zeros_like(feats))  # (L, 8)


def anchor_parts(values: torch.Tensor, seen: torch.Tensor, keep: torch.Tensor, sample_id: torch.Tensor,
                 space_index: torch.Tensor, t_index: torch.Tensor, tau: int, time_feats: torch.Tensor | None = None,
                 has_time: torch.Tensor | None = None, cu_seqlens: torch.Tensor | None = None,
                 gated: bool = True) -> EnsembleParts:
    """Anchor components (see module docstring) of every hidden token; kept tokens get zeros.

    values, seen (L, S, C): normalised values and what the encoder sees; keep (L,) visible tokens.
    gated=False: persistence only. The seasonal parts need time_feats and has_time (else 0)."""
    L, S, C = values.shape
    zeros = values.new_zeros(L, S, C)
    if L == 0:
        return EnsembleParts(zeros, zeros, zeros, zeros)
    last_val, has = last_seen_values(values, seen, tau)  # (L, P, C)
    src_p, ok_p = latest_kept(keep, sample_id, space_index, t_index)
    use_p = ok_p[:, None, None] & has[src_p]  # (L, P, C)
    persist = torch.where(use_p, last_val[src_p], torch.zeros_like(last_val))
    p_full = expand_steps(persist, tau)
    if not gated:
        return EnsembleParts(p_full, zeros, zeros, zeros)
    if cu_seqlens is None:
        cu_seqlens = torch.cat([sample_id.new_zeros(1), torch.bincount(sample_id).cumsum(0)]).int()
    B = int(cu_seqlens.numel()) - 1
    n_space_max = int(space_index.max()) + 1
    group = sample_id * n_space_max + space_index  # (L,) one group per (sample, spatial patch)
    n_space = torch.bincount(sample_id[t_index == 0], minlength=B)[sample_id]  # (L,) patches of the token's sample
    if time_feats is not None and has_time is not None:
        minute = day_minute(time_feats)
        per_day = tokens_per_day(minute, has_time, sample_id, t_index, space_index, B)
        src_s, ok_s = seasonal_source(keep, minute, per_day, sample_id, space_index, t_index, cu_seqlens)
    else:
        per_day = sample_id.new_zeros(B)
        src_s, ok_s = torch.zeros_like(sample_id), torch.zeros_like(keep)
    hidden = ~keep & ok_p
    mean_v, mean_has = mean_seen_values(values, seen, tau)  # (L, P, C)
    # smoothed persistence: the mean of the last visible token instead of its last reading
    use_m = hidden[:, None, None] & mean_has[src_p] & has[src_p]
    smooth = torch.where(use_m, mean_v[src_p] - persist, torch.zeros_like(persist))
    # seasonal: the same patch one day earlier, slot by slot (cells whose source was not seen: 0)
    hidden_s = ok_s & hidden
    use_s = hidden_s[:, None, None] & seen[src_s]  # (L, S, C)
    seas = torch.where(use_s, values[src_s] - p_full, zeros)
    # level shift: the persistence source's mean minus the mean of its own token one day earlier
    src_ps = src_s[src_p]
    has_l = hidden_s & ok_s[src_p]
    use_l = has_l[:, None, None] & mean_has[src_p] & mean_has[src_ps]
    level = torch.where(use_l, mean_v[src_p] - mean_v[src_ps], torch.zeros_like(mean_v))
    lead = t_index - t_index[src_p]
    feats = gate_features(mean_v, mean_has, last_val, has, keep, group, B * n_space_max, t_index, n_space, lead,
                          hidden, src_s, ok_s, has_l, per_day[sample_id], tau)
    available = torch.stack([torch.ones_like(hidden), hidden, hidden_s, has_l], 1)  # (L, 4); P always (0 if none)
    return EnsembleParts(p_full, expand_steps(smooth, tau), seas, expand_steps(level, tau), feats, available)


class ClassicalEnsemble:
    """The ensemble as a forecaster: `forecast_batch(windows, horizon)` with the model's patching (`patch`) and
    per-location normalisation (the `unist_tiny` defaults), in the weighting rule of `gate_init`."""

    def __init__(self, patch: PatcherConfig):
        self.config = get_config("unist_tiny", patch=patch)
        self.patcher = UniversalPatcher(self.config.patch)
        self.gate_w = torch.zeros(CANDIDATES, GATE_FEATURES)
        self.gate_b = torch.zeros(CANDIDATES)
        gate_init(self.gate_w, self.gate_b)

    def forecast_batch(self, windows: list[STSeries], horizon: int, num_samples: int = 0) -> list[np.ndarray]:
        if num_samples:
            raise ValueError("ClassicalEnsemble gives point forecasts only: use num_samples=0")
        cfg, tau = self.config, self.config.patch.time_patch
        ctxs = [w.slice_time(w.num_steps % tau, w.num_steps) for w in windows]
        future = -(-horizon // tau) * tau
        batch = self.patcher.patchify([extend_future(c, future) for c in ctxs])
        n_ctx = torch.tensor([c.num_steps // tau for c in ctxs])
        keep = batch.t_index < n_ctx[batch.sample_id]
        with torch.no_grad():
            values = torch.where(batch.mask, batch.values, torch.zeros_like(batch.values))
            seen = batch.mask & keep[:, None, None]
            mean, std = location_stats(values, seen, batch.sample_id, batch.space_index, batch.num_samples, tau,
                                       floor=cfg.norm_floor)
            z = normalise(values, batch.mask, mean, std, cfg.norm_clip)
            parts = anchor_parts(z, seen, keep, batch.sample_id, batch.space_index, batch.t_index, tau,
                                 batch.time_feats, batch.has_time, batch.cu_seqlens)
            logits = F.linear(parts.gate_inputs().float(), self.gate_w, self.gate_b)
            y = denormalise(parts.combine(parts.weights(logits)), mean, std).float()
        steps = [slice(c.num_steps, c.num_steps + horizon) for c in ctxs]
        return [f[s] for f, s in zip(self.patcher.unpatchify(y.numpy(), batch), steps)]


__all__ = ["CANDIDATES", "GATE_FEATURES", "ClassicalEnsemble", "EnsembleParts", "anchor_parts", "gate_features",
           "gate_init", "seasonal_source"]
