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


# ---------------------------------------------------------------------------------- nothing in a release is trusted
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from unist.release import (ReleaseError, from_pretrained, model_card, release_search_path, sha256_file,  # noqa: E402
                           write_release)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def rel(tmp_path) -> Path:
    """A copy of the shipped release to damage."""
    return Path(shutil.copytree(SHIPPED, tmp_path / "rel"))


def _edit(rel: Path, fn) -> None:
    config = json.loads((rel / "config.json").read_text())
    (rel / "config.json").write_text(json.dumps(fn(config)))


def _reweigh(rel: Path, sd: dict) -> None:
    """Replace the weights and record their size and checksum, as a careful forger would."""
    save_file(sd, str(rel / "model.safetensors"))
    _edit(rel, lambda c: {**c, "weights": {**c["weights"], "sha256": sha256_file(rel / "model.safetensors"),
                                           "bytes": (rel / "model.safetensors").stat().st_size}})


@pytest.mark.parametrize("damage, match", [
    (lambda c: [c], "must hold a JSON object, it holds a list"),
    (lambda c: {**c, "weights": "model.safetensors"}, "field 'weights' must be an object, got a string"),
    (lambda c: {**c, "model_name": 7}, "field 'model_name' must be a string, got a number"),
    (lambda c: {**c, "weights": {**c["weights"], "bytes": "5992164"}}, "'weights.bytes' must be a number"),
    (lambda c: {**c, "weights": {**c["weights"], "sha256": "abc"}}, "is not a sha256"),
    (lambda c: {**c, "weights": {**c["weights"], "dtype": "int8"}}, "weights.dtype 'int8' is unknown"),
    (lambda c: {**c, "tokenizer": {}}, r"unknown field\(s\) \['tokenizer'\]"),
    (lambda c: {k: v for k, v in c.items() if k != "weights"}, "field 'weights' is missing"),
    (lambda c: {**c, "patcher_config": {**c["patcher_config"], "patch_size": 8}}, "patcher_config .* differs"),
    (lambda c: {**c, "model_name": "unist_small"}, "model_name 'unist_small' does not match model_config: d_model "
                                                   "128 vs 256"),
    (lambda c: {**c, "format_version": True}, "format version True is not supported"),
])
def test_config_json_is_validated_field_by_field(rel, damage, match):
    _edit(rel, damage)
    with pytest.raises(ReleaseError, match=match):
        from_pretrained(rel)


def test_weights_file_must_lie_inside_the_release(rel, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(rel / "model.safetensors", outside)
    for name in ("../elsewhere.safetensors", str(outside)):
        _edit(rel, lambda c: {**c, "weights": {**c["weights"], "file": name}})
        with pytest.raises(ReleaseError, match="points outside the release folder"):
            from_pretrained(rel)
    (rel / "link.safetensors").symlink_to(outside)  # a link out of the folder is outside too
    _edit(rel, lambda c: {**c, "weights": {**c["weights"], "file": "link.safetensors"}})
    with pytest.raises(ReleaseError, match="points outside the release folder"):
        from_pretrained(rel)


def test_non_finite_weights_are_refused_naming_the_tensor(rel):
    sd = load_file(str(rel / "model.safetensors"))
    name = sorted(k for k, v in sd.items() if v.is_floating_point())[3]
    sd[name] = sd[name].clone()
    sd[name].view(-1)[0] = float("nan")
    _reweigh(rel, sd)
    with pytest.raises(ReleaseError, match=f"tensor '{name}' has 1 non-finite"):
        from_pretrained(rel)


def test_truncated_weights_are_caught_by_their_recorded_size(rel):
    w = rel / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ReleaseError, match="has 1000 bytes, config.json says .*truncated"):
        from_pretrained(rel)


def test_half_precision_on_cpu_is_refused_with_the_way_to_get_it():
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(ReleaseError, match="compute in float32.*no fast path on CPU.*Load without dtype"):
            from_pretrained("unist-tiny", dtype=dtype)
    assert next(from_pretrained("unist-tiny", dtype=torch.float32).parameters()).dtype == torch.float32


def test_release_names_are_looked_up_in_the_search_path(rel, tmp_path, monkeypatch):
    with pytest.raises(ReleaseError, match="no release named 'mine': looked in .*installed package.*source checkout"
                                           ".*UNIST_HOME"):
        from_pretrained("mine")
    home = tmp_path / "home"
    (home / "checkpoints").mkdir(parents=True)
    shutil.move(rel, home / "checkpoints" / "mine")
    monkeypatch.setenv("UNIST_HOME", str(home))
    assert release_search_path()[0] == home / "checkpoints"
    assert load_release("mine").path == home / "checkpoints" / "mine"


def _nan_state(sd: dict) -> dict:
    name = next(k for k, v in sd.items() if v.is_floating_point())
    return {**sd, name: torch.full_like(sd[name], float("inf"))}


def test_writer_refuses_non_finite_or_overflowing_weights(tmp_path):
    r = load_release("unist-tiny")
    sd = {k: v.float() for k, v in load_file(str(SHIPPED / "model.safetensors")).items()}
    args = (r.config["model_name"], r.config["model_config"], r.config["training"], r.training_data, r.normalization)
    with pytest.raises(ReleaseError, match="non-finite value.*Refusing to write a release"):
        write_release(_nan_state(sd), tmp_path / "out", *args)
    name = next(k for k, v in sd.items() if v.is_floating_point())
    big = {**sd, name: sd[name] + 1e6}  # finite in float32, inf in float16
    with pytest.raises(ReleaseError, match="exceed float16's range"):
        write_release(big, tmp_path / "out", *args, weights_dtype="float16")
    assert not (tmp_path / "out").exists()


def test_model_card_loads_the_folder_it_describes_and_shows_its_command(tmp_path, monkeypatch):
    from unist.train.config import PretrainConfig

    r = load_release("unist-tiny")
    sd = load_file(str(SHIPPED / "model.safetensors"))
    training = {**r.config["training"], "run_config": PretrainConfig().to_dict()}  # the preset as is
    out = write_release(sd, tmp_path / "my_release", r.config["model_name"], r.config["model_config"], training,
                        r.training_data, r.normalization, "float16")
    card = (out / "MODEL_CARD.md").read_text()
    assert f'unist.from_pretrained("{out}")' in card and '"unist-tiny"' not in card
    assert "`python train/pretrain.py` (the `tiny` preset, no overrides;" in card
    assert "train.steps=2000 " in model_card(r.config, r.training_data, "unist-tiny")  # the shipped run's overrides
    assert from_pretrained(out).config.d_model == 128
    monkeypatch.setenv("UNIST_HOME", str(tmp_path))  # inside the search path, the card names the release
    (tmp_path / "checkpoints").mkdir()
    named = write_release(sd, tmp_path / "checkpoints" / "named", r.config["model_name"], r.config["model_config"],
                          training, r.training_data, r.normalization, "float16")
    assert 'unist.from_pretrained("named")' in (named / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_installed_package_ships_the_release(tmp_path):
    """Build the wheel from a copy of the source, install it alone, and load unist-tiny by name from elsewhere."""
    src = tmp_path / "src"
    src.mkdir()
    for item in ("setup.py", "README.md"):
        shutil.copy(REPO / item, src / item)
    for item in ("unist", "kernels", "checkpoints"):
        shutil.copytree(REPO / item, src / item, ignore=shutil.ignore_patterns("__pycache__"))
    py = sys.executable
    subprocess.run([py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "whl"),
                    str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "whl").glob("unist-*.whl"))
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, capture_output=True)
    code = ("import unist, unist.release as r; m = unist.from_pretrained('unist-tiny'); "
            "m2 = unist.from_pretrained('unist-tiny-2'); print(unist.__file__); print(r.resolve_release('unist-tiny'))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    env.pop("UNIST_HOME", None)
    out = subprocess.run([py, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    where, found = out.stdout.split()
    assert where.startswith(str(tmp_path / "site")) and found == str(tmp_path / "site" / "unist" / "checkpoints"
                                                                      / "unist-tiny")


def test_release_cli_refuses_with_one_line(tmp_path, capsys):
    from unist.release import main

    for argv in (["describe", str(tmp_path / "absent")], ["export", str(tmp_path / "absent"), str(tmp_path / "o")]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
