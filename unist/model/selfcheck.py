"""Self-check: how far to trust the network's correction of the anchor, measured inside the context.

Zero-shot, the anchor (the lag copy's rule, `lags.py`, or the four-candidate anchor, `anchor.py`) transfers
by construction: its weights come from an in-context
backtest. The network's correction on top of it (the head's residual and the decoder's say in the
weights) is learned from the training corpus and need not transfer to a new domain. So `forecast`
backtests the network the same way the anchor backtests its candidates: each context window is
also sent through the model with its own last `n_back` time tokens hidden (n_back = the forecast's
future tokens, at most half the context), and the network's forecast and the anchor's forecast of
those tokens are scored against what was observed there. Per sample and spatial patch,

    trust = e_anchor^-beta / (e_anchor^-beta + e_network^-beta)      (e: mean |error|, normalised units)
    forecast = anchor + trust * (network - anchor)

(rectified-flow draws: the decoder's move of the anchor they are centred on is scaled the same way;
their spread around it is kept, since the trust is about the network's correction, not its
uncertainty)
the same sharpened inverse-error (Bates & Granger) rule with the same beta = 4 as the anchor's gates
(`anchor.gate_init`). A patch with no observed backtest target takes its sample's pooled errors; a
sample with none (a context of one time token) keeps trust 1, the network as trained. The backtest
samples ride in the same packed pass as the forecast (about twice the tokens); nothing outside the
context is read, so it is zero-shot. `UniSTConfig.self_check` switches it on.
"""
from __future__ import annotations

import torch

from .anchor import _group_mean

TRUST_BETA = 4.0
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
    e_net, has = _group_mean((net - target).abs().float(), ok, group, n_groups)  # (G,)
    e_anc, _ = _group_mean((anc - target).abs().float(), ok, group, n_groups)
    s_net, s_has = _group_mean((net - target).abs().float(), ok, target_sample, num_forecasts)  # (B,) pooled
    s_anc, _ = _group_mean((anc - target).abs().float(), ok, target_sample, num_forecasts)
    g_sample = torch.arange(n_groups, device=net.device) // n_space
    e_net = torch.where(has, e_net, s_net[g_sample])
    e_anc = torch.where(has, e_anc, s_anc[g_sample])
    known = has | s_has[g_sample]
    trust = torch.sigmoid(beta * (torch.log(e_anc + _EPS) - torch.log(e_net + _EPS)))
    trust = torch.where(known, trust, torch.ones_like(trust))  # (G,)
    fc = ~is_check
    return torch.where(fc, trust[(sample_id * n_space + space_index).clamp(max=n_groups - 1)],
                       torch.ones_like(sample_id, dtype=trust.dtype))  # (L,)
