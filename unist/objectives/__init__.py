"""Pretraining objectives around the network: masking strategies, the three losses (masked reconstruction,
contrastive, rectified-flow diffusion) and `Pretrainer`, the module DeepSpeed trains.

    from unist.model import create_model
    from unist.objectives import Pretrainer
    losses = Pretrainer(create_model("unist_tiny"))(batch)   # dict: loss, masked, contrastive, diffusion, moe_*
"""
from .losses import flow_matching_loss, info_nce, masked_huber, masked_l1, masked_mse
from .masking import block_mask, random_mask, sample_mask, temporal_mask, tube_mask
from .pretrain import MASKED_LOSSES, Pretrainer, moe_terms

__all__ = ["MASKED_LOSSES", "Pretrainer", "block_mask", "flow_matching_loss", "info_nce", "masked_huber", "masked_l1",
           "masked_mse", "moe_terms", "random_mask", "sample_mask", "temporal_mask", "tube_mask"]
