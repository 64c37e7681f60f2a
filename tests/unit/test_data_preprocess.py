"""Chronological splits, train-only normalisation, sliding windows, calendar features, spectral layout."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import unist.data as D
from unist.data import DataError, STSeries

FAST = settings(max_examples=25, deadline=None)


def _series(t: int, n: int = 3, c: int = 2, seed: int = 0, missing: float = 0.0, stamps: bool = True) -> STSeries:
    rng = np.random.default_rng(seed)
    v = (rng.normal(size=(t, n, c)) * [1.0, 10.0][:c] + [5.0, -3.0][:c]).astype(np.float32)
    m = rng.random(v.shape) >= missing
    ts = np.datetime64("2024-01-01T00:00") + np.arange(t) * np.timedelta64(5, "m") if stamps else None
    return STSeries(values=v, mask=m, layout="graph", timestamps=ts, interval_minutes=5.0)


# ---------------------------------------------------------------------------------- splits
@FAST
@given(t=st.integers(3, 300), a=st.floats(0.05, 0.9), b=st.floats(0.05, 0.9))
def test_splits_are_chronological_and_cover_everything(t, a, b):
    if a + b >= 0.95:
        a, b = a / (a + b) * 0.9, b / (a + b) * 0.9
    parts = D.split_series(_series(t, n=1, c=1), (a, b, 1 - a - b))
    sizes = [parts[k].num_steps for k in ("train", "val", "test")]
    assert sum(sizes) == t and min(sizes) >= 1
    stamps = np.concatenate([parts[k].timestamps for k in ("train", "val", "test")])
    assert (np.diff(stamps) > np.timedelta64(0, "m")).all()                   # time order, no overlap
    assert parts["val"].meta["split_start"] == sizes[0] and parts["test"].meta["split"] == "test"


def test_split_rejects_bad_ratios():
    with pytest.raises(DataError, match="summing to 1"):
        D.split_series(_series(10), (0.5, 0.5, 0.5))
    with pytest.raises(DataError, match="at least 3"):
        D.split_series(_series(2), (0.6, 0.2, 0.2))


# ---------------------------------------------------------------------------------- normalisation
@FAST
@given(t=st.integers(10, 80), missing=st.floats(0.0, 0.5), poison=st.floats(1e3, 1e9), seed=st.integers(0, 99))
def test_normalizer_uses_only_the_train_split(t, missing, poison, seed):
    """Poisoning val/test with huge values changes nothing: the statistics come from train only."""
    s = _series(t, missing=missing, seed=seed)
    if not s.mask[: int(0.6 * t)].reshape(-1, 2).any(0).all():
        return                                                                  # a channel unobserved in train
    clean = D.Normalizer().fit(D.split_series(s)["train"])
    b = D.split_series(s)["train"].num_steps
    poisoned_values = s.values.copy()
    poisoned_values[b:] = poison
    poisoned = STSeries(values=poisoned_values, mask=s.mask, layout="graph")
    stats = D.Normalizer().fit(D.split_series(poisoned)["train"])
    np.testing.assert_array_equal(stats.mean, clean.mean)
    np.testing.assert_array_equal(stats.std, clean.std)
    assert not np.allclose(D.Normalizer().fit(poisoned).mean, clean.mean)    # the poison is visible to a leaky fit
    # and the fitted statistics are the NaN-aware mean/std of the train block
    train = s.values[:b]
    np.testing.assert_allclose(clean.mean, np.nanmean(train.reshape(-1, 2), 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clean.std, np.maximum(np.nanstd(train.reshape(-1, 2), 0), 1e-3), rtol=1e-4)


def test_normalizer_round_trip_and_state():
    parts = D.split_series(_series(100, missing=0.1))
    norm = D.Normalizer().fit(parts["train"])
    z = norm.transform(parts["train"])
    assert np.allclose(np.nanmean(z.values, (0, 1)), 0, atol=1e-5) and np.allclose(np.nanstd(z.values, (0, 1)), 1, atol=1e-4)
    assert np.array_equal(np.isnan(z.values), ~parts["train"].mask)          # missing stays missing
    back = D.Normalizer.from_state_dict(json.loads(json.dumps(norm.state_dict()))).inverse_transform(norm.transform(parts["test"]))
    np.testing.assert_allclose(back.values, parts["test"].values, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(norm.inverse_transform(np.zeros((4, 2))), np.tile(norm.mean, (4, 1)))


def test_normalizer_refuses_leaks_and_floors_std():
    parts = D.split_series(_series(30))
    with pytest.raises(DataError, match="'val' split"):
        D.Normalizer().fit(parts["val"])
    with pytest.raises(DataError, match="not fitted"):
        D.Normalizer().transform(parts["train"])
    with pytest.raises(DataError, match="2 channels but got 1"):
        D.Normalizer().fit(parts["train"]).transform(np.zeros((3, 1)))
    const = STSeries(values=np.full((5, 2, 1), 7.0, np.float32), mask=np.ones((5, 2, 1), bool), layout="graph")
    norm = D.Normalizer(min_std=0.5).fit(const)
    assert norm.std.tolist() == [0.5] and np.all(norm.transform(const).values == 0)


# ---------------------------------------------------------------------------------- windows
@FAST
@given(t=st.integers(1, 60), context=st.integers(1, 12), horizon=st.integers(0, 6), stride=st.integers(1, 5))
def test_sliding_window_counts_and_contents(t, context, horizon, stride):
    s = _series(t, n=2, c=1)
    wins = list(D.sliding_windows(s, context, horizon, stride))
    assert len(wins) == D.num_windows(t, context + horizon, stride)
    for k, w in enumerate(wins):
        start = k * stride
        assert w.meta["window_start"] == start and w.num_steps == context + horizon
        np.testing.assert_array_equal(w.values, s.values[start:start + context + horizon])
        assert w.timestamps[0] == s.timestamps[start]
        if horizon:
            ctx, tgt = D.split_context_target(w)
            assert ctx.num_steps == context and tgt.num_steps == horizon
            np.testing.assert_array_equal(tgt.values, s.values[start + context:start + context + horizon])


def test_windows_skip_time_gaps_and_bad_args():
    s = _series(20)
    s.timestamps = s.timestamps.copy()
    s.timestamps[10:] += np.timedelta64(1, "D")                               # a gap between steps 9 and 10
    starts = [w.meta["window_start"] for w in D.sliding_windows(s, 4)]
    assert starts == [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16]
    with pytest.raises(DataError, match="context >= 1"):
        list(D.sliding_windows(s, 0))
    with pytest.raises(DataError, match="no horizon"):
        D.split_context_target(next(D.sliding_windows(s, 4)))


# ---------------------------------------------------------------------------------- calendar
def test_time_features():
    ts = np.array(["2024-01-01T00:00", "2024-01-01T06:00", "2024-01-04T12:00", "1970-01-01T00:00"], "datetime64[m]")
    f = D.time_features(ts)
    assert f.shape == (4, 4) and f.dtype == np.float32
    np.testing.assert_allclose(f[0], [0, 1, 0, 1], atol=1e-6)                  # Monday midnight
    np.testing.assert_allclose(f[1, :2], [1, 0], atol=1e-6)                    # 06:00 = quarter day
    week = 2 * np.pi * 3.5 / 7                                                 # Thursday noon
    np.testing.assert_allclose(f[2, 2:], [np.sin(week), np.cos(week)], atol=1e-6)
    np.testing.assert_allclose(f[3, 2:], [np.sin(2 * np.pi * 3 / 7), np.cos(2 * np.pi * 3 / 7)], atol=1e-6)
    with pytest.raises(DataError, match="datetime64"):
        D.time_features(np.arange(3))


# ---------------------------------------------------------------------------------- spectral layout
@pytest.mark.parametrize("n", [12, 150])                                       # dense and sparse eigensolver
def test_spectral_layout_path_is_monotone_and_deterministic(n):
    ei = np.stack([np.arange(n - 1), np.arange(1, n)])
    pos = D.spectral_layout(n, ei)
    assert pos.shape == (n, 2) and np.isfinite(pos).all() and pos.min() >= 0 and pos.max() <= 1
    assert np.all(np.diff(pos[:, 0]) > 0) or np.all(np.diff(pos[:, 0]) < 0)   # Fiedler vector orders a path
    rng = np.random.default_rng(0)
    perm = rng.permutation(n - 1)
    both = np.concatenate([ei[:, perm], ei[::-1]], 1)                          # shuffled, both directions
    np.testing.assert_allclose(D.spectral_layout(n, both), pos, atol=1e-9)    # same graph -> same layout


@FAST
@given(n=st.integers(1, 40), p=st.floats(0.0, 0.3), seed=st.integers(0, 999))
def test_spectral_layout_properties(n, p, seed):
    rng = np.random.default_rng(seed)
    adj = np.triu(rng.random((n, n)) < p, 1)
    ei = np.stack(np.nonzero(adj))
    w = rng.uniform(0.1, 2.0, ei.shape[1])
    pos = D.spectral_layout(n, ei, w)
    assert pos.shape == (n, 2) and np.isfinite(pos).all() and (pos >= 0).all() and (pos <= 1).all()
    np.testing.assert_array_equal(pos, D.spectral_layout(n, ei, w))
    # components occupy separate cells: nodes of different components never share a cell
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    k, label = connected_components(coo_matrix((np.ones(ei.shape[1]), tuple(ei)), shape=(n, n)), directed=False)
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    cell = np.floor(pos * [rows, cols]).astype(int)
    for c in range(k):
        inside = {tuple(x) for x in cell[label == c]}
        outside = {tuple(x) for x in cell[label != c]}
        assert len(inside) == 1 and not inside & outside


def test_sparse_and_dense_eigensolvers_agree(monkeypatch):
    from unist.data import preprocess

    pos, ei, ew = D.random_geometric_graph(np.random.default_rng(0), 120)
    sparse = D.spectral_layout(120, ei, ew)
    monkeypatch.setattr(preprocess, "_DENSE_MAX", 10_000)
    np.testing.assert_allclose(D.spectral_layout(120, ei, ew), sparse, atol=1e-6)


def test_spectral_layout_edge_cases():
    np.testing.assert_array_equal(D.spectral_layout(1, None), [[0.5, 0.5]])
    two = D.spectral_layout(2, np.array([[0], [1]]))
    assert two[0, 0] != two[1, 0] and two[0, 1] == two[1, 1]
    isolated = D.spectral_layout(3, np.zeros((2, 0), np.int64))               # three 1-node components
    assert len({tuple(p) for p in isolated}) == 3
    with pytest.raises(DataError, match="outside"):
        D.spectral_layout(2, np.array([[0], [2]]))
