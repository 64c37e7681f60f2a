"""Test windows defined by their targets (contexts reach back before the split) and protocols whose contexts
hold two seasonal cycles; the pretraining windows of varying length that fit the token budget."""
import numpy as np
import pytest

from unist.data import DataError, STSeries
from unist.evaluation.protocols import PROTOCOLS, Protocol, protocol_for
from unist.evaluation.windows import make_windows
from unist.train.config import load_config
from unist.train.data_mix import cell_budget, window_length
from unist.patching import PatcherConfig


def _hourly(t: int, n: int = 3) -> STSeries:
    v = np.sin(2 * np.pi * np.arange(t) / 24)[:, None, None] + np.zeros((t, n, 1))
    ts = np.datetime64("2024-01-01T00:00") + np.arange(t) * np.timedelta64(60, "m")
    return STSeries(values=v.astype(np.float32), mask=np.ones((t, n, 1), bool), layout="graph", timestamps=ts,
                    interval_minutes=60.0, name="h")


def test_targets_lie_in_the_test_split_and_contexts_reach_back():
    s = _hourly(1000)
    p = Protocol("p", context=168, horizon=24)
    w = make_windows(s, p)
    t0 = 800
    assert w.origins.min() == t0 and w.origins.max() + 24 <= 1000  # every target in the test split
    assert w.starts.min() == t0 - 168 and w.context_used == 168
    assert w.num_windows == 200 - 24 + 1
    np.testing.assert_array_equal(w.context[0], s.values[t0 - 168:t0])
    np.testing.assert_array_equal(w.target[-1], s.values[1000 - 24:])


def test_a_split_of_one_horizon_is_never_refused():
    s = _hourly(60)  # test split: 12 steps, one horizon; 48 steps before it, fewer than the context asked
    w = make_windows(s, Protocol("p", context=168, horizon=12))
    assert w.num_windows == 1 and w.context_used == 48 and w.context_asked == 168
    with pytest.raises(DataError, match="fewer than one horizon"):
        make_windows(s, Protocol("p", context=8, horizon=13))


def test_validation_windows_have_targets_in_the_validation_split():
    s = _hourly(1000)
    w = make_windows(s, Protocol("p", context=100, horizon=10), split="val")
    assert w.origins.min() == 600 and w.origins.max() + 10 <= 800 and w.starts.min() == 500


@pytest.mark.parametrize("interval, season", [(5.0, 288), (30.0, 48), (60.0, 24), (1440.0, 7), (10080.0, 52),
                                              (43830.0, 12)])
def test_default_contexts_hold_two_seasons(interval, season):
    s = _hourly(10)
    s.interval_minutes = interval
    for layout in ("graph", "grid"):
        s.layout = layout
        p = protocol_for(s)
        assert p.season == season and p.context >= 2 * season, (layout, interval, p)
    for key, p in PROTOCOLS.items():
        if p.season and not p.video:
            assert p.context >= 2 * p.season, key


def test_training_window_lengths_and_cell_budget():
    data = load_config("tiny").data
    rng = np.random.default_rng(0)
    lengths = [window_length(rng, data, 10_000) for _ in range(400)]
    assert min(lengths) >= data.min_window and max(lengths) == data.window
    assert 0.35 < np.mean(np.array(lengths) == data.window) < 0.65  # half the draws are the longest
    assert window_length(rng, data, 20) == 20  # a short source gives what it has
    patch = PatcherConfig()
    cells = cell_budget(data, 512, patch)  # 128 time patches
    assert cells == (data.tokens_per_batch // 128) * patch.spatial_slots
    assert cell_budget(data, 8, patch) == data.max_cells
