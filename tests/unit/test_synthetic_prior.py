"""The in-context forecasting prior (`make_prior`, `PriorCorpus`): determinism, valid records, and that the
components recorded in `meta` are really in the values (periods, counts, spatial correlation)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from unist.data import DataError
from unist.data.prior import PRIOR_SPATIAL, PriorConfig, PriorCorpus, make_prior

# noise-free, level-free, single-period draws: the values are exactly periodic
PURE = dict(p_seasonal=1.0, num_periods=(1, 1), p_amplitude_drift=0.0, p_trend=0.0, p_random_walk=0.0,
            p_level_shift=0.0, p_noise=0.0, p_location_noise=0.0, p_counts=0.0, p_nonneg=0.0, p_missing=0.0)


def _acf(x: np.ndarray, lag: int) -> np.ndarray:
    """Pearson correlation of x[t] and x[t + lag] per column of x (T, ...)."""
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    a, b = x[:-lag] - x[:-lag].mean(0), x[lag:] - x[lag:].mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0) + 1e-12)


def _neighbour_corr(s) -> float:
    """Mean correlation of channel 0 between the two ends of each graph edge."""
    x = s.values[:, :, 0].astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    src, dst = s.edge_index
    return float(np.mean((x[:, src] * x[:, dst]).mean(0)))


def test_deterministic_in_seed_and_index():
    a, b = PriorCorpus(seed=3), PriorCorpus(seed=3)
    for i in (4, 0, 9):                                                          # access order does not matter
        x, y = a.sample(i), b[i]
        assert np.array_equal(x.values, y.values, equal_nan=True) and np.array_equal(x.mask, y.mask)
        assert x.meta == y.meta and x.layout == y.layout
        assert (x.timestamps is None) == (y.timestamps is None)
    assert not np.array_equal(a.sample(0).values, PriorCorpus(seed=4).sample(0).values)
    finite = PriorCorpus(seed=3, length=3)
    assert len(finite) == 3 and len(list(finite)) == 3
    assert np.array_equal(list(finite)[1].values, a.sample(1).values, equal_nan=True)
    with pytest.raises(IndexError):
        finite.sample(3)
    with pytest.raises(TypeError, match="endless"):
        len(a)


def test_records_are_valid_and_diverse():
    cfg = PriorConfig()
    samples = list(PriorCorpus(seed=1, length=60))
    assert {s.layout for s in samples} == {"graph", "grid"}
    assert len({s.num_channels for s in samples}) == 3 and len({s.meta["spatial"] for s in samples}) >= 3
    assert any(s.missing_rate > 0 for s in samples) and any(s.missing_rate == 0 for s in samples)
    for s in samples:
        assert s.values.dtype == np.float32 and s.mask.dtype == np.bool_
        assert np.array_equal(np.isnan(s.values), ~s.mask) and s.mask.any()
        assert s.domain == "synthetic_prior" and s.meta["kind"] == "prior"
        assert cfg.steps[0] <= s.num_steps <= cfg.steps[1] and 1 <= s.num_channels <= 3
        json.dumps(s.meta)                                                       # small and JSON-able
        assert s.meta["spatial"] in PRIOR_SPATIAL
        assert all(2 <= p <= s.num_steps // cfg.min_cycles for p in s.meta["periods"])
        assert len(s.meta["periods"]) == len(s.meta["clock_periods"]) == len(s.meta["period_shapes"])
        if s.layout == "graph":
            assert 1 <= s.num_nodes <= 64 and s.coords.shape == (s.num_nodes, 2) and s.edge_index.shape[0] == 2
        else:
            assert all(2 <= side <= 8 for side in s.spatial_shape) and s.edge_index is None
        if s.timestamps is None:
            assert s.interval_minutes is None
        else:
            assert s.interval_minutes in cfg.intervals_minutes
            assert (np.diff(s.timestamps) == np.timedelta64(int(s.interval_minutes), "m")).all()
        if s.meta["output"] == "real":
            assert s.values[s.mask].std() > 0


@pytest.mark.parametrize("clock", [0.0, 1.0])
def test_recorded_period_is_the_autocorrelation_peak(clock):
    """With the clock on or off: the series repeats exactly at the recorded period, and at no shorter lag
    more closely (a noise-free pure-seasonal draw)."""
    for s in PriorCorpus(seed=7, config=PriorConfig(p_timestamps=clock, **PURE), length=12):
        assert (s.timestamps is None) == (clock == 0.0)
        p = s.meta["periods"][0]
        acf = np.array([np.nanmean(_acf(s.values, lag)) for lag in range(1, p + 1)])
        assert acf[-1] > 0.99, (p, s.meta)
        assert acf[-1] >= acf.max() - 1e-4, (p, s.meta)


def test_clock_off_still_seasonal_with_noise():
    """Unknown time is no excuse: noisy draws without timestamps repeat at their period more than half a
    period off it, so the dynamics are readable from the values alone."""
    cfg = PriorConfig(p_timestamps=0.0, p_seasonal=1.0, num_periods=(1, 1), p_trend=0.0, p_random_walk=0.0,
                      p_level_shift=0.0, p_counts=0.0, p_nonneg=0.0, p_missing=0.0)
    hits = 0
    for s in PriorCorpus(seed=2, config=cfg, length=20):
        assert s.timestamps is None and s.interval_minutes is None
        p = s.meta["periods"][0]
        hits += np.nanmean(_acf(s.values, p)) > np.nanmean(_acf(s.values, p + max(1, p // 2))) + 0.1
    assert hits >= 18


def test_clock_periods_agree_with_the_clock_only_sometimes():
    hourly = dict(intervals_minutes=(60,), steps=(400, 600), p_timestamps=1.0, p_seasonal=1.0)
    on = list(PriorCorpus(seed=0, config=PriorConfig(p_clock_periods=1.0, **hourly), length=10))
    assert all(s.meta["periods"][0] == 24 and s.meta["clock_periods"][0] for s in on)      # daily, on the clock
    off = list(PriorCorpus(seed=0, config=PriorConfig(p_clock_periods=0.0, **hourly), length=10))
    assert not any(any(s.meta["clock_periods"]) for s in off)
    assert len({p for s in off for p in s.meta["periods"]}) >= 8                           # random periods
    default = [s.meta for s in PriorCorpus(seed=0, config=PriorConfig(p_timestamps=1.0), length=60)]
    aligned = sum(any(m["clock_periods"]) for m in default)
    assert 0 < aligned < 0.6 * len(default)


def test_counts_are_non_negative_integers():
    samples = list(PriorCorpus(seed=4, config=PriorConfig(p_counts=1.0), length=20))
    kinds = {c for s in samples for c in s.meta["components"] if c.startswith("counts_")}
    assert kinds == {"counts_poisson", "counts_negbin"}
    zeros = []
    for s in samples:
        v = s.values[s.mask]
        assert s.meta["output"] == "counts" and (v >= 0).all() and np.array_equal(v, np.round(v))
        zeros.append((v == 0).mean())
    assert max(zeros) > 0.5 and min(zeros) < 0.1                                # sometimes mostly zeros


def test_nonneg_clip_is_spiky_with_zeros():
    for s in PriorCorpus(seed=5, config=PriorConfig(p_counts=0.0, p_nonneg=1.0), length=10):
        v = s.values[s.mask]
        assert s.meta["output"] == "nonneg" and (v >= 0).all() and (v == 0).mean() > 0.2


def test_spatially_correlated_draws_have_correlated_neighbours():
    base = dict(p_graph=1.0, graph_nodes=(30, 40), p_missing=0.0, p_counts=0.0, p_nonneg=0.0)
    indep = PriorConfig(spatial_weights=(1, 0, 0, 0), **base)
    smooth = PriorConfig(spatial_weights=(0, 1, 0, 0), length_scale=(1.0, 3.0), **base)
    ci = [_neighbour_corr(s) for s in PriorCorpus(seed=6, config=indep, length=12)]
    cs = [_neighbour_corr(s) for s in PriorCorpus(seed=6, config=smooth, length=12)]
    assert abs(np.mean(ci)) < 0.15 and np.mean(cs) > np.mean(ci) + 0.4, (ci, cs)


def test_bad_config_is_refused():
    with pytest.raises(DataError, match="p_counts"):
        PriorConfig(p_counts=1.5)
    with pytest.raises(DataError, match="steps"):
        PriorConfig(steps=(4, 2))
    with pytest.raises(DataError, match="spatial_weights"):
        PriorConfig(spatial_weights=(1, 0))
    s = make_prior(np.random.default_rng(0))                                     # the default config
    assert s.domain == "synthetic_prior"
