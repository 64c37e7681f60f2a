"""The seeded synthetic corpus: determinism in (seed, i), diversity, valid records, real-graph signals."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require_data

import unist.data as D
from unist.data import DataError


def _same(a: D.STSeries, b: D.STSeries) -> bool:
    return (a.layout == b.layout and a.values.shape == b.values.shape and np.array_equal(a.values, b.values, equal_nan=True)
            and np.array_equal(a.mask, b.mask))


def test_deterministic_in_seed_and_index():
    a, b = D.SyntheticCorpus(seed=3), D.SyntheticCorpus(seed=3)
    for i in (0, 7, 1):                                                       # order of access does not matter
        assert _same(a.sample(i), b.sample(i))
    assert _same(a[5], D.SyntheticCorpus(seed=3).sample(5))
    assert not _same(a.sample(0), D.SyntheticCorpus(seed=4).sample(0))
    assert not _same(a.sample(0), a.sample(1))


def test_each_kind_is_valid_and_diverse():
    cfg = D.SyntheticConfig()
    for kind in D.KINDS:
        samples = list(D.SyntheticCorpus(seed=1, kinds=(kind,), length=12))
        shapes = {s.values.shape for s in samples}
        assert len(shapes) >= 10, kind                                         # sizes and lengths vary
        assert len({s.num_channels for s in samples}) >= 2, kind
        for s in samples:
            assert s.layout == kind and s.domain == "synthetic" and s.meta["kind"] == kind
            assert np.isfinite(s.values[s.mask]).all() and s.mask.any()
            assert s.values[s.mask].std() > 0                                   # not constant
            if kind == "video":
                assert cfg.video_side[0] <= min(s.spatial_shape) and max(s.spatial_shape) <= cfg.video_side[1]
                assert cfg.video_steps[0] <= s.num_steps <= cfg.video_steps[1]
                assert 0 <= s.values.min() and s.values.max() <= 1 and s.interval_minutes < 1 / 60
            else:
                assert cfg.steps[0] <= s.num_steps <= cfg.steps[1]
                assert s.interval_minutes in cfg.intervals_minutes
            if kind == "grid":
                assert min(s.spatial_shape) >= cfg.grid_side[0] and max(s.spatial_shape) <= cfg.grid_side[1]
            if kind == "graph":
                assert 1 <= s.num_nodes <= cfg.graph_nodes[1] and s.coords.shape == (s.num_nodes, 2)
            if s.timestamps is not None:
                assert (np.diff(s.timestamps) == np.timedelta64(int(s.interval_minutes), "m")).all()


def test_corpus_mixes_kinds_missing_values_and_unknown_time():
    samples = list(D.SyntheticCorpus(seed=0, length=40))
    assert {s.layout for s in samples} == set(D.KINDS)
    tab = [s for s in samples if s.layout != "video"]
    assert any(s.missing_rate > 0 for s in tab) and any(s.missing_rate == 0 for s in tab)
    assert any(s.timestamps is None for s in tab) and any(s.timestamps is not None for s in tab)
    graphs = [s for s in samples if s.layout == "graph"]
    assert max(s.num_nodes for s in graphs) > 3 * min(s.num_nodes for s in graphs)


def test_grid_dynamics_have_daily_cycle():
    """With hourly steps and no noise dominance, the signal repeats at 24 steps more than at 12."""
    cfg = D.SyntheticConfig(steps=(240, 240), intervals_minutes=(60,), p_missing=0.0, max_channels=1)
    corr24, corr12 = [], []
    for i in range(6):
        x = np.nanmean(D.make_grid(np.random.default_rng(i), cfg).values, axis=(1, 2, 3))   # (T,) spatial mean
        x = x - x.mean()
        corr24.append(np.corrcoef(x[:-24], x[24:])[0, 1])
        corr12.append(np.corrcoef(x[:-12], x[12:])[0, 1])
    assert np.mean(corr24) > np.mean(corr12)


def test_graph_signal_diffuses_over_edges():
    """Neighbours are more alike than random node pairs."""
    rng = np.random.default_rng(0)
    pos, ei, ew = D.random_geometric_graph(rng, 200)
    g = D.GraphStructure.build(200, ei, ew, pos)
    s = D.synthetic_graph_signal(g, 200, seed=1, config=D.SyntheticConfig(p_missing=0.0))
    x = s.values[..., 0] - s.values[..., 0].mean(0)
    x /= x.std(0) + 1e-9
    near = np.mean((x[:, ei[0]] * x[:, ei[1]]).mean(0))
    pairs = rng.integers(0, 200, (2, 2000))
    far = np.mean((x[:, pairs[0]] * x[:, pairs[1]]).mean(0))
    assert near > far + 0.1


def test_synthetic_signal_on_real_pems07_graph():
    require_data("pems_graphs")
    g = D.load_graph("pems07")
    s = D.synthetic_graph_signal(g, 48, seed=5)
    assert s.values.shape[:2] == (48, 883) and s.layout == "graph"
    np.testing.assert_array_equal(s.coords, g.coords)
    np.testing.assert_array_equal(s.edge_index, g.edge_index)
    assert _same(s, D.synthetic_graph_signal(g, 48, seed=5))
    assert not _same(s, D.synthetic_graph_signal(g, 48, seed=6))


def test_bad_corpus_arguments():
    with pytest.raises(DataError, match="unknown synthetic kinds"):
        D.SyntheticCorpus(kinds=("mesh",))
    with pytest.raises(DataError, match="weights"):
        D.SyntheticCorpus(weights=(1.0,))
    with pytest.raises(IndexError):
        D.SyntheticCorpus(length=2).sample(2)
    with pytest.raises(TypeError, match="endless"):
        len(D.SyntheticCorpus())
    assert len(D.SyntheticCorpus(length=3)) == 3 and len(list(D.SyntheticCorpus(length=3))) == 3
    assert {D.SyntheticCorpus(kinds=("grid", "video"), weights=(0, 1)).sample(i).layout for i in range(5)} == {"video"}
