"""Parameter counts and training FLOPs per token, for MFU.

FLOPs follow the usual 6N + attention rule (Kaplan et al.; nanochat, PaLM appendix B): a matmul
weight used once per token costs 2 FLOPs forward and 4 backward, and self-attention over a sequence
of n tokens adds 12 * layers * width * n per token (QK^T and AV, forward + backward).
UniST needs three refinements, all expectation values under the config's masking:
  * MoE: only top_k of E experts run per token, so expert weights count top_k / E ("active" params).
  * Not every token visits every part: the encoder sees the visible fraction (1 - ratio) of the
    tokens, plus (1 - contrastive_ratio) for the second contrastive view; the decoder and the
    reconstruction head see all tokens; the diffusion head runs once per hidden token and channel.
  * Some weights run per point or per slot, not per token: the point-set codec's point MLP on each
    of the S * C (slot, channel) points and its head's slot MLPs on each of the S slots; the basis
    codec's slot-basis layers on each of the S slots, plus its weight-free contractions (embedding
    moments 3 * S * C * S and head expansion S * C * S multiply-adds per token, `_basis_contractions`).
Embedding tables (lookups) and the per-sample contrastive projector are left out.
"""
from __future__ import annotations

import torch

from .config import UniSTConfig
from .moe import Experts
from .unist import UniST

# Weights that run per (slot, channel) point / per slot rather than per token, by patch codec.
_PER_POINT = {"pointset": ("patch_embed.point_in.", "patch_embed.point_mlp.", "patch_embed.score."), "basis": ()}
_PER_SLOT = {"pointset": ("head.pos.", "head.out."), "basis": ("patch_embed.basis.", "head.basis.")}


_CACHE: dict[str, dict[str, int]] = {}


def count_params(config: UniSTConfig) -> dict[str, int]:
    """Parameter counts of the model `config` describes, built on the meta device (no memory, fast;
    cached per config, since trainers call `flops_per_token` often).

    total: all parameters. active: what one token uses (experts scaled by top_k / E).
    Groups used by `flops_per_token`: encoder, decoder (incl. its embeddings and the head's token
    projection), per_point, per_slot, flow (diffusion head), embedding (lookup tables, no FLOPs).
    """
    key = repr(config)
    if key in _CACHE:
        return dict(_CACHE[key])
    with torch.device("meta"):
        model = UniST(config)
    groups = dict.fromkeys(("encoder", "decoder", "per_point", "per_slot", "flow", "embedding", "other",
                            "experts"), 0)
    embedding_names = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Embedding)}
    expert_names = {f"{name}.{p}" for name, m in model.named_modules() if isinstance(m, Experts)
                    for p, _ in m.named_parameters()}
    for name, p in model.named_parameters():
        n = p.numel()
        if name in expert_names:
            groups["experts"] += n
        if name in embedding_names or name in ("patch_embed.empty", "mask_token"):
            groups["embedding"] += n
        elif name.startswith(_PER_POINT[config.patch_codec]):
            groups["per_point"] += n
        elif name.startswith(_PER_SLOT[config.patch_codec]):
            groups["per_slot"] += n
        elif name.startswith("flow."):
            groups["flow"] += n
        elif name.startswith(("patch_embed.", "pos.", "encoder.")):
            groups["encoder"] += n
        elif name.startswith(("decoder", "head.")):
            groups["decoder"] += n
        else:
            groups["other"] += n  # contrastive projector (per sample)
    total = sum(p.numel() for p in model.parameters())
    moe = config.moe
    inactive = 0 if moe.dense else round(groups["experts"] * (1 - moe.top_k / moe.num_experts))
    _CACHE[key] = {"total": total, "active": total - inactive, **groups,
                   "encoder_active": groups["encoder"] - inactive}
    return dict(_CACHE[key])


def flops_per_token(config: UniSTConfig, seq_len: int, channels: int = 1, training: bool = True) -> float:
    """Expected FLOPs per packed token of one training step (forward + backward), or forward only.

    seq_len: tokens per sample (attention span); channels: C of the batch. With
    v = (1 - ratio) + [contrastive on] (1 - contrastive_ratio) / 3 encoder passes per token (the view has no backward) and
    h = ratio hidden tokens per token (diffusion):
      F = 6 * [ v * (N_enc_active + S*C*N_point) + N_dec + S*N_slot + [diffusion on] h*C*N_flow ]
          + 12 * [ v * depth * d_model * (1 - ratio) * seq_len + decoder_depth * decoder_dim * seq_len ]
    (6 -> 2 and 12 -> 4 when training=False; masked and diffusion both off drops the decoder terms).
    """
    if seq_len < 1 or channels < 1:
        raise ValueError(f"seq_len and channels must be >= 1, got {seq_len}, {channels}")
    p = count_params(config)
    o, ratio = config.objectives, config.masking.ratio
    slots = config.patch.slots
    # the contrastive view is encoded without gradient: a forward only, a third of a training pass
    enc_passes = (1 - ratio) + ((1 - o.contrastive_ratio) / 3 if o.contrastive > 0 else 0.0)
    enc_seq = (1 - ratio) * seq_len
    decoder_on = o.masked > 0 or o.diffusion > 0
    weights = enc_passes * (p["encoder_active"] + slots * channels * p["per_point"])
    attn = enc_passes * config.depth * config.d_model * enc_seq
    if decoder_on:
        weights += p["decoder"] + slots * p["per_slot"]
        attn += config.decoder_depth * config.decoder_dim * seq_len
    if o.diffusion > 0:
        weights += ratio * channels * p["flow"]
    mult = 3 if training else 1
    contractions = _basis_contractions(config, channels, enc_passes, decoder_on)
    return float(2 * mult * (weights + contractions) + 4 * mult * attn)


def _basis_contractions(config: UniSTConfig, channels: int, enc_passes: float, decoder_on: bool) -> float:
    """Multiply-adds per token of the basis codec's weight-free einsums (rank = slots): 0 for the point set."""
    if config.patch_codec != "basis":
        return 0.0
    s = config.patch.slots
    return enc_passes * 3 * s * channels * s + (s * channels * s if decoder_on else 0.0)
