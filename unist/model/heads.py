"""Output heads beside the patch head (`embed.PatchHead`): the lag copy's scorer and the diffusion head.

`LagScorer` weights the lag copy's candidates (`lags.py`). `FlowHead` is the diffusion head: a rectified
flow (flow matching) velocity network that generates hidden patches given decoder context; its loss is
`unist.objectives.losses.flow_matching_loss` and its sampler `unist.forecast.policy.sample_flow`.

Why flow matching rather than DDPM: the model learns the straight-line velocity v = x1 - x0 between
noise x0 ~ N(0, I) and data x1 along x_t = (1 - t) x0 + t x1 (Liu et al. 2022, Lipman et al. 2022).
There is no noise schedule or variance parameterisation to tune, the loss is one MSE, and because
the paths are nearly straight a plain Euler sampler with a handful of steps (default 8) gives usable
samples, so probabilistic forecasts cost a few head passes, not hundreds of network evaluations.

Like MAR (Li et al. 2024, "Autoregressive Image Generation without Vector Quantization") the
denoiser is a small per-token MLP with AdaLN-zero residual blocks, conditioned on the Transformer
output of that token, so the heavy network runs once and only the head runs per sampling step.
A row is one (token, channel): its S slot values are generated jointly, so a patch is coherent in
space and time; channels share the head and are told apart by a channel embedding.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .lags import LAG_FEATURES
from .position import sincos_1d

T_EMBED_DIM = 256


class AdaLNBlock(nn.Module):
    """x + gate * MLP(LN(x) * (1 + scale) + shift), (shift, scale, gate) from the condition (zero-init)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(y).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class FlowHead(nn.Module):
    """v_theta(x_t, t | token context, channel): rows of S slot values -> velocity of the same shape."""

    def __init__(self, slots: int, cond_dim: int, width: int, depth: int, max_channels: int):
        super().__init__()
        self.slots = slots
        self.x_in = nn.Linear(slots, width)
        self.t_embed = nn.Sequential(nn.Linear(T_EMBED_DIM, width), nn.SiLU(), nn.Linear(width, width))
        self.c_embed = nn.Linear(cond_dim, width)
        self.channel = nn.Embedding(max_channels, width)
        self.blocks = nn.ModuleList(AdaLNBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, slots)

    def zero_init_(self) -> None:
        """DiT's AdaLN-zero: every block starts as the identity and the velocity starts at 0."""
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        for lin in (self.final_ada[-1], self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def condition(self, h: torch.Tensor, channels: int) -> torch.Tensor:
        """Token context h (N, cond_dim) -> one condition per (token, channel) row (N * C, width)."""
        y = self.c_embed(h)[:, None, :] + self.channel.weight[:channels]  # (N, C, width)
        return y.reshape(-1, y.shape[-1])

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (R, S) at times t (R,), cond (R, width) -> v (R, S)."""
        y = cond + self.t_embed(sincos_1d(t * 1000.0, T_EMBED_DIM))  # (R, width)
        z = self.x_in(x)
        for blk in self.blocks:
            z = blk(z, y)
        shift, scale = self.final_ada(y).chunk(2, dim=-1)
        return self.out(self.final_norm(z) * (1 + scale) + shift)


class LagScorer(nn.Module):
    """Logits (L, Q) of the lag candidates: a linear rule on each candidate's features (initialised to
    -4 log rmse, +1 for last value) plus, with decoder features h (L, dd), a small MLP on
    [features, projection of h] whose output layer starts at zero."""

    def __init__(self, decoder_dim: int, hidden: int = 32, proj: int = 16):
        super().__init__()
        self.rule = nn.Linear(LAG_FEATURES, 1)
        self.proj = nn.Linear(decoder_dim, proj)
        self.mlp = nn.Sequential(nn.Linear(LAG_FEATURES + proj, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.rule.weight.zero_()
            self.rule.bias.zero_()
            self.rule.weight[0, 0] = -4.0   # log rmse
            self.rule.weight[0, 4] = 1.0    # last value starts favoured over any one of the 2K copies
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, feats: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        f = feats.to(self.rule.weight.dtype)
        logits = self.rule(f).squeeze(-1)  # (L, Q)
        if h is not None:
            p = self.proj(h.to(f.dtype))[:, None].expand(-1, f.shape[1], -1)
            logits = logits + self.mlp(torch.cat([f, p], -1)).squeeze(-1)
        return logits


__all__ = ["AdaLNBlock", "FlowHead", "LagScorer"]
