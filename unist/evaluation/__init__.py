"""unist.evaluation: cross-domain zero-shot (and few-shot) evaluation against classical baselines.

  protocols    per data type: context / horizon / season / metric conventions (`protocol_for`)
  windows      chronological test windows shared by every model (`make_windows`)
  metrics      MAE, RMSE, MAPE, PSNR per horizon step; CRPS and interval coverage from samples
  baselines    last value, seasonal naive, historical average, ridge AR
  forecasters  UniST batched over windows, and its temporal-only (one location at a time) variant
  finetune     few-shot adaptation (full or LoRA) on the first fraction of the target's training split;
               `python -m unist.evaluation.finetune` writes a fine-tuned release (LoRA merged)
  checkpoints  release / random-init loading and the contamination audit
  runner       `run(EvalConfig)` -> JSON-ready results;  report: markdown table, plot, files
  errors, cli  `EvalError`; the command lines' typed flags and one-line errors (exit code 2)
CLI: python eval/zeroshot.py --help. See docs/evaluation.md.
"""
from .checkpoints import Checkpoint, ContaminationError, load_checkpoint
from .errors import EvalError
from .finetune import FinetuneConfig
from .metrics import crps_gaussian, crps_samples, point_metrics, probabilistic_metrics, psnr
from .protocols import PROTOCOLS, Protocol, protocol_for
from .report import markdown, plot, write_outputs
from .runner import SCHEMA_VERSION, EvalConfig, evaluate_dataset, run
from .windows import EvalWindows, make_windows

__all__ = ["Checkpoint", "ContaminationError", "EvalConfig", "EvalError", "EvalWindows", "FinetuneConfig",
           "PROTOCOLS", "Protocol", "SCHEMA_VERSION", "crps_gaussian", "crps_samples", "evaluate_dataset",
           "load_checkpoint", "make_windows", "markdown", "plot", "point_metrics", "probabilistic_metrics",
           "protocol_for", "psnr", "run", "write_outputs"]
