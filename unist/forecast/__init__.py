"""The forecasting API: `Forecaster` (a network + its `ForecastPolicy`) with `forecast`, `forecast_batch`,
`impute` and `embed`; inputs as `STSeries`, numpy arrays or pandas long frames (unique_id, ds, y).

    import unist
    fc = unist.from_pretrained("unist-tiny-6")       # = Forecaster.from_pretrained
    fc.forecast(window, horizon=12)
    fc.with_policy(correction="none").forecast(window, 12)   # the lag copy's rule alone (an ablation)

A forecast reads in three files: this package's `api.py` (the call) and `policy.py` (rule vs network),
and the network `unist/model/unist.py`.
"""
from .api import MAX_HORIZON, MAX_HORIZON_RATIO, Forecaster, check_horizon, eval_mode, extend_future, horizon_limit
from .inputs import array_series, frame_series
from .policy import CORRECTIONS, ForecastPolicy, sample_flow

__all__ = ["CORRECTIONS", "MAX_HORIZON", "MAX_HORIZON_RATIO", "ForecastPolicy", "Forecaster", "array_series",
           "check_horizon", "eval_mode", "extend_future", "frame_series", "horizon_limit", "sample_flow"]
