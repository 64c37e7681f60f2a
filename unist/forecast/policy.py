"""`ForecastPolicy`: how a forecast weighs the network against the lag copy's in-context rule. One object,
one formula:

    forecast = rule + w * (network - rule)

  rule     the lag copy weighted by its in-context backtest alone (`UniST.lag_copy(copy, h=None)`): no learned
           say from the decoder, no head residual; a zero-shot classical ensemble by construction;
  network  the network's own prediction: the lag copy weighted with the decoder features, plus the patch head's
           residual when `residual` (False: the decoder's weighting of the candidates alone);
  w        by `correction`: "full" w = 1 (the network as trained), "none" w = 0 (the rule alone, an ablation),
           "checked" w = the self-check's trust, measured inside the context (below).

`residual` also decides what `Forecaster.impute` fills with, and correction "none" fills with the rule alone ("full"
and "checked" fill with the network: the self-check backtests forecasts, not fills). Why it is a switch: out of domain the head's residual
is the part of the network that transfers worst (docs/LOG.md, session 12: on the validation splits it costs
imputation 1-14 % on 6 of 8 cells, while the decoder's weighting of the in-context candidates transfers).

Why the self-check: zero-shot, the rule transfers by construction (its weights come from an in-context
backtest), while the network's correction is learned from the training corpus and need not transfer to a
new domain. So the forecast backtests the network the same way the rule backtests its candidates: each
context window is also sent through the model with its own last `n_back` time tokens hidden (n_back = the
forecast's future tokens, at most half the context), and the network's and the rule's forecasts of those
tokens are scored against what was observed there. Per sample and spatial patch,

    trust = e_rule^-beta / (e_rule^-beta + e_network^-beta)      (e: mean |error|, normalised units)

the sharpened inverse-error (Bates & Granger) rule with beta = 4, as the lag copy's scorer starts from. A
patch with no observed backtest target takes its sample's pooled errors; a sample with none (a context of
one time token) keeps trust 1, the network as trained. The backtest samples ride in the same packed pass as
the forecast (about twice the tokens); nothing outside the context is read, so it is zero-shot.
Rectified-flow draws (`sample_flow`) are centred on the network's lag copy moved towards the rule by the
same w; their spread is kept, since the trust is about the correction, not the uncertainty.

Releases store their policy in config.json ("forecast_policy"); `unist.from_pretrained` applies it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from einops import rearrange

from unist.errors import ConfigError
from unist.model.heads import FlowHead
from unist.model.history import group_mean
from unist.release import ReleaseError

CORRECTIONS = ("checked", "full", "none")
TRUST_BETA = 4.0


@dataclass(frozen=True)
class ForecastPolicy:
    """correction: "checked" (the network's correction scaled by its in-context self-check), "full" (the network
    as trained) or "none" (the lag copy's rule alone; point forecasts only). beta: sharpness of the trust.
    residual: the network's prediction includes the patch head's residual (False: the decoder-weighted lag copy
    alone), in forecasts and in `impute`."""

    correction: str = "full"
    beta: float = TRUST_BETA
    residual: bool = True

    def __post_init__(self) -> None:
        if self.correction not in CORRECTIONS:
            raise ConfigError(f"ForecastPolicy.correction={self.correction!r} unknown: use one of {CORRECTIONS}")
        if not self.beta > 0:
            raise ConfigError(f"ForecastPolicy.beta={self.beta!r} must be > 0 (sharpness of the self-check's trust)")
        if not isinstance(self.residual, bool):
            raise ConfigError(f"ForecastPolicy.residual={self.residual!r} must be true or false (whether the network's "
                              "prediction includes the patch head's residual)")

    @property
    def needs_rule(self) -> bool:
        return self.correction != "full"

    def check(self, has_lag_copy: bool, num_samples: int) -> None:
        """Refuse a policy the model or the call cannot follow (ConfigError naming the fix)."""
        if self.needs_rule and not has_lag_copy:
            raise ConfigError(f"ForecastPolicy(correction={self.correction!r}) needs the lag copy's rule, and this model "
                              "has no lag copy (lag_candidates=0): use correction='full'")
        if self.correction == "none" and num_samples:
            raise ConfigError("ForecastPolicy(correction='none') gives point forecasts only: use num_samples=0")
        if not self.residual and not has_lag_copy:
            raise ConfigError("ForecastPolicy(residual=False) leaves the network its lag copy alone, and this model has "
                              "no lag copy (lag_candidates=0): use residual=True")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ForecastPolicy":
        d = dict(d or {})
        unknown = sorted(set(d) - set(asdict(cls())))
        if unknown:
            raise ConfigError(f"unknown forecast_policy fields {unknown}: this unist reads {sorted(asdict(cls()))}")
        return cls(**d)

    def replace(self, **changes: Any) -> "ForecastPolicy":
        return replace(self, **changes)

    def network(self, out: Any) -> torch.Tensor:
        """The network's prediction (L, S, C) of a `NetOutput` under this policy: `out.pred` (head residual + lag
        copy) or, with residual=False, `out.lagged` (the decoder-weighted lag copy)."""
        return out.pred if self.residual else out.lagged


def release_policy(config: dict[str, Any], where: str) -> ForecastPolicy:
    """The forecasting policy of a release's parsed config.json (`ForecastPolicy()` when it has none); a bad one is
    a ReleaseError naming the file, like every other problem of a release."""
    try:
        return ForecastPolicy.from_dict(config.get("forecast_policy"))
    except (ConfigError, TypeError) as e:
        raise ReleaseError(f"{where}: forecast_policy: {e}; fix the field (or re-export the release)") from None


_EPS = 1e-3


def backtest_tokens(n_ctx: torch.Tensor, n_future: int) -> torch.Tensor:
    """(B,) time tokens to hide at the end of each context for its backtest: n_future, at most half the
    context (0 = no backtest: a context of one token)."""
    return torch.minimum(torch.full_like(n_ctx, n_future), n_ctx // 2)


def trust_weights(net: torch.Tensor, anc: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                  check_of: torch.Tensor, sample_id: torch.Tensor, space_index: torch.Tensor,
                  num_forecasts: int, beta: float = TRUST_BETA) -> torch.Tensor:
    """Trust in the network (L,) for every token of the forecast samples 0..num_forecasts-1.

    net, anc, target (L, S, C): the network's and the anchor's predictions and the normalised values;
    valid (L, S, C): the backtest cells to score (hidden tokens of backtest samples, observed);
    check_of (num_samples,): for each backtest sample the forecast sample it checks, -1 for the others."""
    n_space = int(space_index.max()) + 1
    n_groups = num_forecasts * n_space
    is_check = check_of[sample_id] >= 0  # (L,)
    target_sample = check_of[sample_id].clamp(min=0)
    group = target_sample * n_space + space_index  # (L,) the forecast (sample, patch) a backtest token speaks for
    ok = valid & is_check[:, None, None]
    e_net, has = group_mean((net - target).abs().float(), ok, group, n_groups)  # (G,)
    e_anc, _ = group_mean((anc - target).abs().float(), ok, group, n_groups)
    s_net, s_has = group_mean((net - target).abs().float(), ok, target_sample, num_forecasts)  # (B,) pooled
    s_anc, _ = group_mean((anc - target).abs().float(), ok, target_sample, num_forecasts)
    g_sample = torch.arange(n_groups, device=net.device) // n_space
    e_net = torch.where(has, e_net, s_net[g_sample])
    e_anc = torch.where(has, e_anc, s_anc[g_sample])
    known = has | s_has[g_sample]
    trust = torch.sigmoid(beta * (torch.log(e_anc + _EPS) - torch.log(e_net + _EPS)))
    trust = torch.where(known, trust, torch.ones_like(trust))  # (G,)
    fc = ~is_check
    return torch.where(fc, trust[(sample_id * n_space + space_index).clamp(max=n_groups - 1)],
                       torch.ones_like(sample_id, dtype=trust.dtype))  # (L,)


@torch.no_grad()
def sample_flow(flow: FlowHead, h: torch.Tensor, channels: int, steps: int) -> torch.Tensor:
    """Euler integration of the diffusion head's dx/dt = v from noise at t = 0 to data at t = 1.
    h (N, cond_dim) decoder features -> (N, S, C) draws."""
    cond = flow.condition(h, channels)  # (R, width)
    x = torch.randn(cond.shape[0], flow.slots, device=h.device, dtype=cond.dtype)
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps, device=x.device, dtype=x.dtype)
        x = x + flow.velocity(x, t, cond) / steps
    return rearrange(x, "(n c) s -> n s c", c=channels)


__all__ = ["CORRECTIONS", "ForecastPolicy", "TRUST_BETA", "backtest_tokens", "release_policy", "sample_flow",
           "trust_weights"]
