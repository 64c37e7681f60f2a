"""The shipped releases `checkpoints/unist-tiny-6/` (current), `unist-tiny-5/`, `unist-tiny-4/`, `unist-tiny-3/` and `unist-tiny-2/`: load by name on a
fresh clone (no network, no DeepSpeed, no pickle), are small, record their held-out datasets and forecasting
policy, and forecast every layout. Then: nothing in a release is trusted (config.json checked field by field,
weights against their size, sha256 and for NaN/inf), the writer, the model card, the policy CLI and the
installed package."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import unist
from conftest import REPO
from unist.data.series import STSeries
from unist.errors import ConfigError
from unist.forecast import Forecaster, ForecastPolicy
from unist.model import UniST
from unist.release import (CHECKPOINTS_DIR, FORMAT_VERSION, ReleaseError, read_release, release_search_path,
                           resolve_release, sha256_file, write_release)
from unist.train.export import main, model_card, set_policy

CURRENT, PREVIOUS = "unist-tiny-6", "unist-tiny-2"
SHIPPED = CHECKPOINTS_DIR / CURRENT
POLICIES = {CURRENT: {"correction": "checked", "beta": 4.0, "residual": False}, "unist-tiny-5": {"correction": "checked", "beta": 4.0},
            "unist-tiny-4": {"correction": "checked", "beta": 4.0},
            "unist-tiny-3": {"correction": "checked", "beta": 4.0},
            PREVIOUS: {"correction": "full", "beta": 4.0}}


@pytest.mark.parametrize("name", [CURRENT, "unist-tiny-5", "unist-tiny-4", "unist-tiny-3", PREVIOUS])
def test_shipped_release_is_small_and_complete(name):
    root = CHECKPOINTS_DIR / name
    files = {p.name for p in root.iterdir()}
    assert {"model.safetensors", "config.json", "MODEL_CARD.md", "training_data.json", "normalization.json"} <= files
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) <= 16 * 2**20
    config = json.loads((root / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION == 2 and config["forecast_policy"] == POLICIES[name]
    assert "self_check" not in config["model_config"]  # v2: the policy is its own section
    data = json.loads((root / "training_data.json").read_text())
    trained = {d["name"] for d in data["datasets"]}
    held_out = {"metr_la_week", "nyc_bike1", "era5_t2m_uk", "flipping_a_pancake"}  # README's zero-shot sets
    assert not trained & set(data["heldout"]) and held_out <= set(data["heldout"])


def _series_of_every_layout():
    rng = np.random.default_rng(0)
    graph = STSeries(values=rng.normal(size=(12, 9, 1)).astype(np.float32), mask=np.ones((12, 9, 1), bool),
                     layout="graph", coords=rng.uniform(size=(9, 2)))
    grid = STSeries(values=rng.normal(size=(12, 6, 5, 2)).astype(np.float32), mask=np.ones((12, 6, 5, 2), bool),
                    layout="grid")
    video = STSeries(values=rng.uniform(size=(8, 16, 16, 3)).astype(np.float32), mask=np.ones((8, 16, 16, 3), bool),
                     layout="video")
    return ((graph, 12), (grid, 6), (video, 4))


def test_from_pretrained_by_name_forecasts_every_layout():
    files = read_release(CURRENT)
    fc = unist.from_pretrained(CURRENT)
    assert files.config["model_name"] == "unist_tiny" and files.path == SHIPPED
    assert isinstance(fc, Forecaster) and isinstance(fc.model, UniST) and not fc.model.training
    assert fc.policy == ForecastPolicy(correction="checked", beta=4.0, residual=False)  # the release's policy
    for s, h in _series_of_every_layout():
        out = fc.forecast(s, horizon=h)
        assert out.shape == (h, *s.values.shape[1:]) and np.isfinite(out).all()
        ablation = fc.with_policy(correction="none").forecast(s, horizon=h)  # the rule alone: a different forecast
        trained = fc.with_policy(correction="full", residual=True).forecast(s, horizon=h)  # than the network's
        assert ablation.shape == out.shape and not np.allclose(ablation, trained)
        # (without the residual, a window whose tokens have one candidate, e.g. 8 video frames, is the rule itself)


def test_previous_release_loads_with_its_own_policy():
    fc = unist.from_pretrained(PREVIOUS)
    assert fc.policy == ForecastPolicy(correction="full") and not fc.model.training
    bare = UniST.from_pretrained(PREVIOUS)  # the network alone, same weights
    assert isinstance(bare, UniST) and not bare.training
    assert all(torch.equal(a, b) for a, b in zip(bare.state_dict().values(), fc.model.state_dict().values()))
    s, h = _series_of_every_layout()[0]
    assert np.isfinite(fc.forecast(s, horizon=h)).all()


def test_set_policy_changes_only_the_policy_and_records_it(tmp_path):
    rel = tmp_path / "rel"
    shutil.copytree(SHIPPED, rel)
    weights = (rel / "model.safetensors").read_bytes()
    before = json.loads((rel / "config.json").read_text())
    assert Forecaster.from_pretrained(rel).policy.correction == "checked"
    main(["policy", str(rel), "correction=full"])
    after = json.loads((rel / "config.json").read_text())
    assert Forecaster.from_pretrained(rel).policy == ForecastPolicy(correction="full", residual=False)
    assert (rel / "model.safetensors").read_bytes() == weights  # weights untouched, checksum still valid
    change = after["inference_changes"][-1]
    assert change["field"] == "forecast_policy.correction" and (change["old"], change["new"]) == ("checked", "full")
    assert after["inference_changes"][:-1] == before["inference_changes"]  # the earlier history is kept
    assert after["forecast_policy"] == {"correction": "full", "beta": 4.0, "residual": False}
    assert {k: v for k, v in after.items() if k not in ("forecast_policy", "inference_changes")} == \
        {k: v for k, v in before.items() if k not in ("forecast_policy", "inference_changes")}
    card = (rel / "MODEL_CARD.md").read_text()
    assert "Changed after export (weights untouched)" in card and "## Zero-shot evaluation" not in card
    assert '"correction": "full"' in card
    set_policy(rel, {"beta": 2.0})
    assert Forecaster.from_pretrained(rel).policy == ForecastPolicy(correction="full", beta=2.0, residual=False)
    with pytest.raises(ReleaseError, match="the policy's fields are"):
        set_policy(rel, {"d_model": 64})
    with pytest.raises(ConfigError, match="correction='yes' unknown"):
        set_policy(rel, {"correction": "yes"})
    assert json.loads((rel / "config.json").read_text())["forecast_policy"]["beta"] == 2.0  # refusals change nothing
    main(["policy", str(rel), "residual=true"])  # a bool is read from its word (bool("false") would be True)
    assert Forecaster.from_pretrained(rel).policy == ForecastPolicy(correction="full", beta=2.0)
    main(["policy", str(rel), "residual=false"])
    assert Forecaster.from_pretrained(rel).policy == ForecastPolicy(correction="full", beta=2.0, residual=False)
    for bad in ("depth=2", "self_check=true", "correction=yes", "residual=no", "lag_ets=1"):
        with pytest.raises(SystemExit) as e:
            main(["policy", str(rel), bad])
        assert e.value.code == 2
    # an inference-only model field (the exponential-smoothing candidates): recorded like a policy field
    assert UniST.from_pretrained(rel).config.lag_ets is True  # unist-tiny-6 ships them (docs/LOG.md, session 13)
    main(["policy", str(rel), "lag_ets=false"])
    after = json.loads((rel / "config.json").read_text())
    assert after["model_config"]["lag_ets"] is False and UniST.from_pretrained(rel).config.lag_ets is False
    assert after["inference_changes"][-1]["field"] == "model_config.lag_ets"
    assert (after["inference_changes"][-1]["old"], after["inference_changes"][-1]["new"]) == (True, False)
    assert (rel / "model.safetensors").read_bytes() == weights
    old = tmp_path / "old"
    shutil.copytree(resolve_release("unist-tiny-4"), old)
    with pytest.raises(ConfigError, match="lag_ets=True needs lag_error='mae'"):  # tiny-4 backtests in RMSE
        set_policy(old, {"lag_ets": True})


# ---------------------------------------------------------------------------------- nothing in a release is trusted
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


def _v1(c: dict) -> dict:
    """The config as format v1 wrote it: the policy inside model_config (self_check), no forecast_policy."""
    v1 = {k: v for k, v in c.items() if k != "forecast_policy"}
    return {**v1, "format_version": 1, "model_config": {**c["model_config"], "self_check": True}}


@pytest.mark.parametrize("damage, match", [
    (lambda c: [c], "must hold a JSON object, it holds a list"),
    (lambda c: {**c, "weights": "model.safetensors"}, "field 'weights' must be an object, got a string"),
    (lambda c: {**c, "model_name": 7}, "field 'model_name' must be a string, got a number"),
    (lambda c: {**c, "forecast_policy": "checked"}, "field 'forecast_policy' must be an object, got a string"),
    (lambda c: {**c, "weights": {**c["weights"], "bytes": "6116172"}}, "'weights.bytes' must be a number"),
    (lambda c: {**c, "weights": {**c["weights"], "sha256": "abc"}}, "is not a sha256"),
    (lambda c: {**c, "weights": {**c["weights"], "dtype": "int8"}}, "weights.dtype 'int8' is unknown"),
    (lambda c: {**c, "tokenizer": {}}, r"unknown field\(s\) \['tokenizer'\]"),
    (lambda c: {k: v for k, v in c.items() if k != "weights"}, "field 'weights' is missing"),
    (lambda c: {**c, "patcher_config": {**c["patcher_config"], "patch_size": 8}}, "patcher_config .* differs"),
    (lambda c: {**c, "model_name": "unist_small"}, "model_name 'unist_small' does not match model_config: d_model "
                                                   "128 vs 256"),
    (lambda c: {**c, "model_config": {**c["model_config"], "self_check": True}},
     r"model_config does not describe a valid UniSTConfig: UniSTConfig.from_dict: unknown fields \['self_check'\]"),
    (lambda c: {**c, "format_version": True}, "format version True is not supported"),
    (_v1, "release format version 1 is not supported by this unist \\(reads version 2\\); use the unist version "
          "that wrote it"),
])
def test_config_json_is_validated_field_by_field(rel, damage, match):
    _edit(rel, damage)
    with pytest.raises(ReleaseError, match=match):
        unist.from_pretrained(rel)


@pytest.mark.parametrize("policy, match", [
    ({"self_check": True}, r"unknown forecast_policy fields \['self_check'\]"),
    ({"correction": "yes"}, "correction='yes' unknown"),
    ({"correction": "checked", "beta": 0}, "beta=0 must be > 0"),
])
def test_forecast_policy_is_validated(rel, policy, match):
    _edit(rel, lambda c: {**c, "forecast_policy": policy})
    with pytest.raises(ReleaseError, match=r"config.json: forecast_policy: .*" + match):
        unist.from_pretrained(rel)


def test_weights_file_must_lie_inside_the_release(rel, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(rel / "model.safetensors", outside)
    for name in ("../elsewhere.safetensors", str(outside)):
        _edit(rel, lambda c: {**c, "weights": {**c["weights"], "file": name}})
        with pytest.raises(ReleaseError, match="points outside the release folder"):
            unist.from_pretrained(rel)
    (rel / "link.safetensors").symlink_to(outside)  # a link out of the folder is outside too
    _edit(rel, lambda c: {**c, "weights": {**c["weights"], "file": "link.safetensors"}})
    with pytest.raises(ReleaseError, match="points outside the release folder"):
        unist.from_pretrained(rel)


def test_non_finite_weights_are_refused_naming_the_tensor(rel):
    sd = load_file(str(rel / "model.safetensors"))
    name = sorted(k for k, v in sd.items() if v.is_floating_point())[3]
    sd[name] = sd[name].clone()
    sd[name].view(-1)[0] = float("nan")
    _reweigh(rel, sd)
    with pytest.raises(ReleaseError, match=f"tensor '{name}' has 1 non-finite"):
        unist.from_pretrained(rel)


def test_truncated_and_modified_weights_are_caught(rel):
    w = rel / "model.safetensors"
    good = w.read_bytes()
    w.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, one bit flipped
    with pytest.raises(ReleaseError, match="does not match the sha256 in config.json"):
        unist.from_pretrained(rel)
    w.write_bytes(good[:1000])
    with pytest.raises(ReleaseError, match="has 1000 bytes, config.json says .*truncated"):
        unist.from_pretrained(rel)


def test_half_precision_on_cpu_is_refused_with_the_way_to_get_it():
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(ReleaseError, match="compute in float32.*no fast path on CPU.*Load without dtype"):
            unist.from_pretrained(CURRENT, dtype=dtype)
    fc = unist.from_pretrained(CURRENT, dtype=torch.float32)
    assert next(fc.model.parameters()).dtype == torch.float32  # stored as float16, loaded as float32


def test_release_names_are_looked_up_in_the_search_path(rel, tmp_path, monkeypatch):
    with pytest.raises(ReleaseError, match="no release named 'mine': looked in .*installed package.*source checkout"
                                           ".*UNIST_HOME"):
        unist.from_pretrained("mine")
    home = tmp_path / "home"
    (home / "checkpoints").mkdir(parents=True)
    shutil.move(rel, home / "checkpoints" / "mine")
    monkeypatch.setenv("UNIST_HOME", str(home))
    assert release_search_path()[0] == home / "checkpoints"
    assert read_release("mine").path == home / "checkpoints" / "mine"
    assert unist.from_pretrained("mine").policy.correction == "checked"


def _nan_state(sd: dict) -> dict:
    name = next(k for k, v in sd.items() if v.is_floating_point())
    return {**sd, name: torch.full_like(sd[name], float("inf"))}


def test_writer_refuses_non_finite_or_overflowing_weights(tmp_path):
    r = read_release(CURRENT)
    sd = {k: v.float() for k, v in r.state_dict.items()}
    args = (r.config["model_name"], r.config["model_config"])
    meta = dict(forecast_policy=r.config["forecast_policy"], training=r.config["training"],
                training_data=r.training_data, normalization=r.normalization)
    with pytest.raises(ReleaseError, match="non-finite value.*Refusing to write a release"):
        write_release(tmp_path / "out", _nan_state(sd), *args, **meta)
    name = next(k for k, v in sd.items() if v.is_floating_point())
    big = {**sd, name: sd[name] + 1e6}  # finite in float32, inf in float16
    with pytest.raises(ReleaseError, match="exceed float16's range"):
        write_release(tmp_path / "out", big, *args, **meta, weights_dtype="float16")
    assert not (tmp_path / "out").exists()
    out = write_release(tmp_path / "out", sd, *args, **meta, weights_dtype="float16")  # a good one round-trips
    assert unist.from_pretrained(out).policy == ForecastPolicy(correction="checked", residual=False)
    assert json.loads((out / "config.json").read_text())["format_version"] == FORMAT_VERSION


def test_model_card_loads_the_folder_it_describes_and_shows_its_command(tmp_path, monkeypatch):
    from unist.train.config import PretrainConfig

    r = read_release(CURRENT)
    training = {**r.config["training"], "run_config": PretrainConfig().to_dict()}  # the preset as is
    meta = dict(forecast_policy=r.config["forecast_policy"], training=training, training_data=r.training_data,
                normalization=r.normalization, card=model_card, weights_dtype="float16")
    out = write_release(tmp_path / "my_release", r.state_dict, r.config["model_name"], r.config["model_config"],
                        **meta)
    card = (out / "MODEL_CARD.md").read_text()
    assert f'unist.from_pretrained("{out}")' in card and f'"{CURRENT}"' not in card
    assert "`python train/pretrain.py` (the `tiny` preset, no overrides;" in card
    assert "python -m unist.train.export export RUN/checkpoints OUT" in card
    assert '`{"correction": "checked", "beta": 4.0, "residual": false}`' in card  # the forecasting policy section
    assert "train.steps=4500 " in model_card(r.config, r.training_data, CURRENT)  # the shipped run's overrides
    assert unist.from_pretrained(out).config.d_model == 128
    monkeypatch.setenv("UNIST_HOME", str(tmp_path))  # inside the search path, the card names the release
    (tmp_path / "checkpoints").mkdir()
    named = write_release(tmp_path / "checkpoints" / "named", r.state_dict, r.config["model_name"],
                          r.config["model_config"], **meta)
    assert 'unist.from_pretrained("named")' in (named / "MODEL_CARD.md").read_text()


def test_installed_package_ships_the_releases(tmp_path):
    """Build the wheel from a copy of the source, install it alone, and load the releases by name from elsewhere."""
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
    code = (f"import unist, unist.release as r; m = unist.from_pretrained({CURRENT!r}); "
            f"m2 = unist.from_pretrained({PREVIOUS!r}); print(unist.__file__); print(r.resolve_release({CURRENT!r})); "
            "print(type(m).__name__, m.policy.correction, m2.policy.correction)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    env.pop("UNIST_HOME", None)
    out = subprocess.run([py, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    where, found, kind, policy, policy2 = out.stdout.split()
    assert where.startswith(str(tmp_path / "site")) and found == str(tmp_path / "site" / "unist" / "checkpoints"
                                                                      / CURRENT)
    assert (kind, policy, policy2) == ("Forecaster", "checked", "full")


def test_release_cli_refuses_with_one_line(tmp_path, capsys):
    for argv in (["describe", str(tmp_path / "absent")], ["export", str(tmp_path / "absent"), str(tmp_path / "o")],
                 ["policy", str(tmp_path / "absent"), "correction=checked"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_release_cli_describes_a_release_by_name(capsys):
    main(["describe", CURRENT])
    described = json.loads(capsys.readouterr().out)
    assert described["forecast_policy"] == POLICIES[CURRENT] and resolve_release(CURRENT) == SHIPPED
