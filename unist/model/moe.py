"""Mixture-of-experts feed-forward with top-k routing and DROPLESS dispatch.

Why dropless: a packed batch mixes grids, graphs and video of very different sizes, so the tokens a
router sends to one expert vary a lot from batch to batch. With a fixed capacity the tokens that
overflow are dropped (they skip the FFN), and which ones overflow depends on what else is in the
batch: a small domain sharing an expert with a large one loses its tokens most often. Dropless
dispatch (MegaBlocks, Mixtral, DeepSeek-MoE) never drops: token-expert assignments are sorted by
expert and every expert runs on its own contiguous slice, whatever its length. A capacity mode is
kept for ablations (`capacity_factor`).

Losses (returned, weighted by the caller's config):
  aux  = E * sum_e f_e * P_e     (Switch/GShard load balancing; f_e = share of assignments to expert
                                  e, P_e = mean router probability of e; 1.0 when uniform)
  z    = mean_t logsumexp(logits_t)^2   (ST-MoE router z-loss: keeps router logits small)
Stats for logging: per-expert load (E,) and per-layout load (3, E) (rows: grid, graph, video).

ZeRO-3: `Experts` keeps all expert weights as two stacked parameters, so the whole `MoEFeedForward`
can be registered as a leaf module (`deepspeed.utils.set_z3_leaf_modules(model, [MoEFeedForward])`):
ZeRO-3 then gathers it at once instead of hooking per expert, which would hang when a rank routes
no token to some expert.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import MoEConfig
from .norm import count_ids

NUM_LAYOUTS = 3  # grid, graph, video (unist.patching.tokens.LAYOUT_IDS)


class Mlp(nn.Module):
    """Dense feed-forward: Linear -> GELU -> Linear (timm `Mlp`)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, d) -> (N, d)
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class Experts(nn.Module):
    """E GELU experts stored as stacked weights w1 (E, d, h), w2 (E, h, d) (one module for ZeRO-3)."""

    def __init__(self, num_experts: int, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(num_experts, hidden))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden, dim))
        self.b2 = nn.Parameter(torch.zeros(num_experts, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same init as an nn.Linear of each expert (kaiming-uniform bound 1/sqrt(fan_in)).
        for w in (self.w1, self.w2):
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
        nn.init.zeros_(self.b1)
        nn.init.zeros_(self.b2)

    def forward(self, x: torch.Tensor, expert: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """x (A, d): assignments sorted by expert, expert (A,) their expert ids, counts (E,) rows per
        expert -> (A, d). One grouped matmul per layer (no Python loop over experts, no host sync)."""
        dtype = _compute_dtype(x)
        if not grouped_mm_supported(x.device, dtype):  # CUDA fp32: torch's grouped matmul is bf16-only there
            return self._loop(x, counts.tolist())
        offs = torch.cumsum(counts, 0).to(torch.int32)  # (E,) end row of each expert
        # index_select, not b[expert]: its backward is an index_add, advanced indexing's a slow index_put on CPU
        hid = grouped_mm(x.to(dtype), self.w1.to(dtype), offs) + self.b1.to(dtype).index_select(0, expert)  # (A, h)
        return grouped_mm(F.gelu(hid), self.w2.to(dtype), offs) + self.b2.to(dtype).index_select(0, expert)

    def _loop(self, x: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """The same math as one matmul pair per expert (the reference `forward` is tested against)."""
        params = zip(self.w1.unbind(0), self.b1.unbind(0), self.w2.unbind(0), self.b2.unbind(0))
        outs = [F.gelu(xe @ w1 + b1) @ w2 + b2  # xe (counts[e], d); empty slices are fine
                for xe, (w1, b1, w2, b2) in zip(torch.split(x, counts), params)]
        return torch.cat(outs, dim=0)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls run in here: autocast's (bf16) when it is on for x's device, else x's own."""
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype


def grouped_mm_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """torch._grouped_mm runs fp32 and bf16 on CPU; on CUDA only bf16 (sm90+)."""
    return device.type == "cpu" or (dtype == torch.bfloat16 and device.type == "cuda"
                                    and torch.cuda.get_device_capability(device) >= (9, 0))


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous: torch._grouped_mm's backward
    refuses expanded (stride-0) gradients such as the one of `y.sum()`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """x (A, d) rows grouped by expert, w (E, d, h), offs (E,) int32 cumulative row counts -> (A, h)."""
    return _ContiguousGrad.apply(torch._grouped_mm(x, w, offs=offs))


@dataclass
class MoEStats:
    """What one MoE layer reports: the two router losses (scalars, with grad) and detached load stats."""

    aux_loss: torch.Tensor
    z_loss: torch.Tensor
    load: torch.Tensor  # (E,) assignments per expert (after drops)
    layout_load: torch.Tensor  # (3, E) assignments per expert from grid / graph / video tokens
    dropped: torch.Tensor  # () fraction of assignments dropped (0 when dropless)


class MoEFeedForward(nn.Module):
    """Routed FFN: y = sum_{e in topk(x)} g_e(x) * expert_e(x) [+ shared(x)]; or a dense FFN when cfg.dense."""

    def __init__(self, dim: int, hidden: int, cfg: MoEConfig, dropout: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.dense = cfg.dense
        self.num_experts = 1 if cfg.dense else cfg.num_experts
        self.top_k = 1 if cfg.dense else cfg.top_k
        if self.dense:
            self.mlp = Mlp(dim, hidden, dropout)
            return
        self.router = nn.Linear(dim, cfg.num_experts, bias=False)
        nn.init.normal_(self.router.weight, std=cfg.router_init_std)
        self.experts = Experts(cfg.num_experts, dim, hidden)
        self.shared = Mlp(dim, hidden, dropout) if cfg.shared_expert else None
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, layout_id: torch.Tensor | None = None) -> tuple[torch.Tensor, MoEStats]:
        """x (N, d), layout_id (N,) int64 or None -> (y (N, d), MoEStats)."""
        n, E, k = x.shape[0], self.num_experts, self.top_k
        if layout_id is None:
            layout_id = torch.zeros(n, dtype=torch.long, device=x.device)
        if self.dense:
            zero = x.new_zeros(())
            load = torch.full((1,), float(n), device=x.device)
            layout_load = count_ids(layout_id, NUM_LAYOUTS).float()[:, None]
            return self.mlp(x), MoEStats(zero, zero, load, layout_load, zero.detach())

        with torch.autocast(x.device.type, enabled=False):  # fp32 router (stable softmax), also under autocast
            logits = F.linear(x.float(), self.router.weight.float())  # (N, E)
        probs = logits.softmax(dim=-1)  # (N, E)
        gate, expert = probs.topk(k, dim=-1)  # (N, k), (N, k)
        if k > 1:
            gate = gate / gate.sum(dim=-1, keepdim=True)  # renormalise over the chosen experts (Mixtral)

        flat_expert = expert.reshape(-1)  # (A = N*k,)
        order = torch.argsort(flat_expert, stable=True)  # assignments grouped by expert, token order kept
        sorted_expert = flat_expert[order]  # (A,)
        token = order // k  # (A,) token of each sorted assignment
        counts = count_ids(flat_expert, E)  # (E,)
        keep = self._capacity_keep(sorted_expert, counts, n)  # (A,) bool or None (dropless)
        if keep is not None:
            order, sorted_expert, token = order[keep], sorted_expert[keep], token[keep]
            kept_counts = count_ids(sorted_expert, E)
        else:
            kept_counts = counts

        y_sorted = self.experts(x.index_select(0, token), sorted_expert, kept_counts)  # (A', d)
        y_sorted = y_sorted * gate.reshape(-1).index_select(0, order)[:, None].to(y_sorted.dtype)
        y = x.new_zeros(x.shape, dtype=y_sorted.dtype).index_add_(0, token, y_sorted).to(x.dtype)  # (N, d)
        y = self.drop(y)
        if self.shared is not None:
            y = y + self.shared(x)

        f = counts.float() / max(n * k, 1)  # (E,) share of assignments (before drops, as in Switch)
        aux = E * (f * probs.mean(dim=0)).sum() if n else x.new_zeros(())
        z = torch.logsumexp(logits, dim=-1).pow(2).mean() if n else x.new_zeros(())
        layout_load = count_ids(layout_id.index_select(0, token) * E + sorted_expert, NUM_LAYOUTS * E)
        dropped = 1.0 - kept_counts.sum().float() / max(n * k, 1)
        return y, MoEStats(aux, z, kept_counts.float(), layout_load.view(NUM_LAYOUTS, E).float(), dropped.detach())

    def _capacity_keep(self, sorted_expert: torch.Tensor, counts: torch.Tensor, n: int) -> torch.Tensor | None:
        """With a capacity factor: keep the first `capacity` assignments of each expert (token order)."""
        cf = self.cfg.capacity_factor
        if cf is None:
            return None
        capacity = math.ceil(cf * n * self.top_k / self.num_experts)
        starts = torch.cumsum(counts, 0) - counts  # (E,) first sorted position of each expert
        rank = torch.arange(sorted_expert.numel(), device=sorted_expert.device) - starts[sorted_expert]
        return rank < capacity
