"""unist: one spatio-temporal foundation model for grids, graphs and video.

    import unist
    fc = unist.from_pretrained("unist-tiny-6")    # a unist.forecast.Forecaster (network + forecasting policy)
    fc.forecast(window, horizon=12)

`from_pretrained` is resolved on first use (PEP 562), so `import unist.data` stays free of model code.
"""
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "from_pretrained"]


def __getattr__(name: str) -> Any:
    if name == "from_pretrained":
        from unist.forecast import Forecaster  # lazy on purpose: importing a subpackage must not load the model

        return Forecaster.from_pretrained
    raise AttributeError(f"module 'unist' has no attribute {name!r}")
