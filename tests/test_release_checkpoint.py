"""The shipped release `checkpoints/unist-tiny/`: loads by name on a fresh clone (no network, no
DeepSpeed, no pickle), is small, records its held-out datasets, and forecasts every layout."""
from __future__ import annotations

import json

import numpy as np

import unist
from unist.data.series import STSeries
from unist.release import CHECKPOINTS_DIR, load_release

SHIPPED = CHECKPOINTS_DIR / "unist-tiny"


def test_shipped_release_is_small_and_complete():
    files = {p.name for p in SHIPPED.iterdir()}
    assert {"model.safetensors", "config.json", "MODEL_CARD.md", "training_data.json"} <= files
    assert sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) < 10 * 2**20
    data = json.loads((SHIPPED / "training_data.json").read_text())
    trained = {d["name"] for d in data["datasets"]}
    held_out = {"metr_la_week", "nyc_bike2", "era5_t2m_uk", "flipping_a_pancake"}
    assert not trained & held_out and held_out <= set(data["heldout"])


def test_from_pretrained_by_name_forecasts_every_layout():
    rel = load_release("unist-tiny")
    model = unist.from_pretrained("unist-tiny")
    assert rel.config["model_name"] == "unist_tiny" and not model.training
    rng = np.random.default_rng(0)
    graph = STSeries(values=rng.normal(size=(12, 9, 1)).astype(np.float32), mask=np.ones((12, 9, 1), bool),
                     layout="graph", coords=rng.uniform(size=(9, 2)))
    grid = STSeries(values=rng.normal(size=(12, 6, 5, 2)).astype(np.float32), mask=np.ones((12, 6, 5, 2), bool),
                    layout="grid")
    video = STSeries(values=rng.uniform(size=(8, 16, 16, 3)).astype(np.float32), mask=np.ones((8, 16, 16, 3), bool),
                     layout="video")
    for s, h in ((graph, 12), (grid, 6), (video, 4)):
        out = model.forecast(s, horizon=h)
        assert out.shape == (h, *s.values.shape[1:]) and np.isfinite(out).all()


def test_set_inference_changes_only_inference_fields_and_records_it(tmp_path):
    import shutil

    import pytest

    from unist.release import ReleaseError, main, set_inference

    rel = tmp_path / "rel"
    shutil.copytree(SHIPPED, rel)
    weights = (rel / "model.safetensors").read_bytes()
    before = json.loads((rel / "config.json").read_text())
    flipped = not unist.from_pretrained(rel).config.self_check
    main(["set", str(rel), f"self_check={str(flipped).lower()}"])
    after = json.loads((rel / "config.json").read_text())
    assert unist.from_pretrained(rel).config.self_check is flipped
    assert (rel / "model.safetensors").read_bytes() == weights  # weights untouched, checksum still valid
    assert after["inference_changes"][-1]["field"] == "self_check" and after["inference_changes"][-1]["new"] is flipped
    assert {k: v for k, v in after["model_config"].items() if k != "self_check"} == \
        {k: v for k, v in before["model_config"].items() if k != "self_check"}
    card = (rel / "MODEL_CARD.md").read_text()
    assert "Inference settings changed after export" in card and "## Zero-shot evaluation" not in card
    for bad in ({"d_model": 64}, {"self_check": "yes"}):
        with pytest.raises(ReleaseError, match="only"):
            set_inference(rel, bad)
    with pytest.raises(SystemExit):
        main(["set", str(rel), "depth=2"])
