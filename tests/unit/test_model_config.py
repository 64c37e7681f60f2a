"""UniSTConfig validation, the model registry (parameter counts on the meta device) and FLOPs per token."""
from __future__ import annotations

import pytest
import torch
from model_testing import losses, mixed_windows, tiny_model

from unist.model import (ConfigError, MaskingConfig, MoEConfig, ObjectiveConfig, UniSTConfig, count_params,
                         create_model, flops_per_token, get_config, list_models)


@pytest.mark.parametrize("kwargs, match", [
    (dict(d_model=130, heads=4), "heads=4 does not divide d_model=130"),
    (dict(decoder_dim=96, decoder_heads=5), "decoder_heads=5 does not divide decoder_dim=96"),
    (dict(moe=MoEConfig(num_experts=2, top_k=3)), "top_k=3 unsupported"),
    (dict(moe=MoEConfig(num_experts=1, top_k=2)), r"top_k=2 > moe.num_experts=1"),
    (dict(moe=MoEConfig(capacity_factor=0.0)), "capacity_factor"),
    (dict(masking=MaskingConfig(strategies=("random", "spiral"))), r"unknown masking strategy \['spiral'\]"),
    (dict(masking=MaskingConfig(strategies="random")), "must be a list of names"),
    (dict(masking=MaskingConfig(ratio=1.0)), "masking.ratio=1.0"),
    (dict(objectives=ObjectiveConfig(masked=-1.0)), "must be >= 0"),
    (dict(objectives=ObjectiveConfig(masked=0, contrastive=0, diffusion=0)), "all objectives are off"),
    (dict(moe=MoEConfig(aux_loss_weight=-0.1)), "aux_loss_weight"),
    (dict(attn_backend="cuda_magic"), "attn_backend='cuda_magic' unknown"),
    (dict(depth=0), "depth=0 must be a positive integer"),
])
def test_bad_configs_raise_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        UniSTConfig(**kwargs).validate()


def test_config_round_trips_through_dict():
    cfg = get_config("unist_small", moe={"top_k": 1})
    again = UniSTConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.moe.top_k == 1


def test_from_dict_refuses_unknown_fields():
    """A config.json from another version (e.g. the removed four-candidate anchor's gated_anchor) is refused,
    naming the field, instead of silently building a different model."""
    d = UniSTConfig().to_dict()
    d["gated_anchor"] = True
    with pytest.raises(ConfigError, match=r"unknown fields \[.gated_anchor.\]"):
        UniSTConfig.from_dict(d)


def test_registry_names_overrides_and_errors():
    assert {"unist_tiny", "unist_small", "unist_base", "unist_large"} <= set(list_models())
    cfg = get_config("unist_tiny", depth=2, moe={"num_experts": 8})
    assert cfg.depth == 2 and cfg.moe.num_experts == 8 and cfg.moe.top_k == 2
    with pytest.raises(KeyError, match="did you mean 'unist_tiny'"):
        get_config("unist_tiyn")
    with pytest.raises(ConfigError, match="unknown config field 'widht'"):
        get_config("unist_tiny", widht=3)
    with pytest.raises(ConfigError, match="top_k"):
        create_model("unist_tiny", moe={"top_k": 5})


# name -> (min, max) total parameters; base/large are MoE with most parameters in the experts
SIZES = {"unist_tiny": (1e6, 5e6), "unist_small": (15e6, 60e6), "unist_base": (100e6, 400e6),
         "unist_large": (0.8e9, 2e9)}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_registered_parameter_counts(name):
    cfg = get_config(name)
    p = count_params(cfg)  # meta device: no memory, no init cost
    lo, hi = SIZES[name]
    assert lo <= p["total"] <= hi, f"{name}: {p['total'] / 1e6:.1f}M parameters"
    k, e = cfg.moe.top_k, cfg.moe.num_experts
    assert p["active"] == p["total"] - round(p["experts"] * (1 - k / e))
    assert p["experts"] > p["total"] / 2  # the MoE is where the parameters are


def test_every_tiny_registered_model_trains_one_step():
    """forward + backward on CPU for the registered sizes small enough for CI (unist_tiny)."""
    for name in list_models():
        if count_params(get_config(name))["total"] > 5e6:
            continue
        model = create_model(name, patch={"patch_size": 2, "time_patch": 2})
        out = losses(model, model.patcher.patchify(mixed_windows()))
        out["loss"].backward()
        assert torch.isfinite(out["loss"])
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_same_config_same_weights_different_seed_different_weights():
    a, b, c = tiny_model(), tiny_model(), tiny_model(seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_flops_per_token_formula():
    cfg = get_config("unist_base")
    f1, f2 = flops_per_token(cfg, 256), flops_per_token(cfg, 257)
    # one more token of attention span: 12 * (v * depth * d * (1 - ratio) + decoder_depth * decoder_dim)
    v = (1 - cfg.masking.ratio) + (1 - cfg.objectives.contrastive_ratio) / 3  # the view is forward-only
    slope = 12 * (v * cfg.depth * cfg.d_model * (1 - cfg.masking.ratio) + cfg.decoder_depth * cfg.decoder_dim)
    assert f2 - f1 == pytest.approx(slope, rel=1e-6)
    p = count_params(cfg)
    assert f1 > 6 * 0.5 * p["encoder_active"]  # at least the visible encoder tokens
    top1 = flops_per_token(get_config("unist_base", moe={"top_k": 1}), 256)
    assert top1 < f1
    assert flops_per_token(cfg, 256, training=False) == pytest.approx(f1 / 3)
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token(cfg, 0)
    pointset = flops_per_token(get_config("unist_tiny", patch_codec="pointset"), 48, channels=2)
    assert flops_per_token(get_config("unist_tiny"), 48, channels=2) < 0.7 * pointset  # the basis codec is cheaper


def test_from_dict_refuses_missing_fields():
    """A saved config without a field (unist-tiny-2's config.json had no lag_smooth before it was written out)
    must not silently take today's default, which may differ from what the model was trained with."""
    d = UniSTConfig().to_dict()
    del d["lag_smooth"]
    with pytest.raises(ConfigError, match=r"missing fields \['lag_smooth'\]"):
        UniSTConfig.from_dict(d)
    d = UniSTConfig().to_dict()
    del d["moe"]["top_k"]
    with pytest.raises(ConfigError, match=r"missing fields \['moe.top_k'\]"):
        UniSTConfig.from_dict(d)
