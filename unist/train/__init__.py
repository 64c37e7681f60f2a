"""unist.train: the DeepSpeed pretraining job (`train/pretrain.py` is its entry point).

  config      typed presets (tiny/small/base/large) + key=value overrides
  ds_config   the DeepSpeed JSON generated from the config
  data_mix    mixture of real training splits + synthetic corpus, packed to a token budget
  engine      model + activation checkpointing + ZeRO-3 leaf modules -> deepspeed.initialize
  checkpoint  crash-safe checkpoints (temp tag, verify, atomic `latest`, keep last K)
  metrics     losses, tokens/s, MFU, expert load per data type -> console, JSONL, CSV, plot
  trainer     the loop; `run(cfg)`
"""
from .config import ConfigError, PretrainConfig, load_config

__all__ = ["ConfigError", "PretrainConfig", "load_config"]
