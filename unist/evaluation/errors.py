"""`EvalError`: an evaluation that cannot run as configured (bad setting, unforecastable horizon, too many
channels for the model). Like `DataError`, `ReleaseError` and `ContaminationError`, the command-line tools
print its message as one line and exit with code 2."""
from __future__ import annotations


class EvalError(ValueError):
    """A bad evaluation or fine-tuning setting: the message names the setting and the fix."""


__all__ = ["EvalError"]
