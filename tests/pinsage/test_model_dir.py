"""A model directory round-trips from its config and state_dict alone."""

from __future__ import annotations

import json

import pytest
import torch

from embeddings.pinsage.model import PinSageConfig, build_model
from embeddings.pinsage.model_dir import load_model_dir, model_version_of, read_model_metadata, save_model_dir

CONFIG = PinSageConfig(in_dim=6, hidden_dim=8, embedding_dim=4, pooling="mean", num_neighbors=3)


def test_save_and_load_round_trip(tmp_path):
    model = build_model(CONFIG)
    path = save_model_dir(tmp_path / "m", model, CONFIG, {"ds": "2026-03-31"})
    loaded, config = load_model_dir(path)
    assert config == CONFIG and not loaded.training
    assert all(torch.equal(model.state_dict()[k], loaded.state_dict()[k]) for k in model.state_dict())
    _, metadata = read_model_metadata(path)
    assert metadata["ds"] == "2026-03-31" and len(metadata["weights_sha256"]) == 64
    assert model_version_of(path) == f"sha256:{metadata['weights_sha256'][:12]}"
    assert model_version_of(save_model_dir(tmp_path / "v", model, CONFIG, {"model_version": "7"})) == "7"


def test_saving_again_replaces_the_directory(tmp_path):
    save_model_dir(tmp_path / "m", build_model(CONFIG), CONFIG)
    (tmp_path / "m" / "stale.txt").write_text("left over")
    save_model_dir(tmp_path / "m", build_model(CONFIG), CONFIG)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.pt"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging or old copies left


def test_bad_model_directories_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a PinSage model directory: config.json is missing"):
        load_model_dir(tmp_path)
    path = save_model_dir(tmp_path / "m", build_model(CONFIG), CONFIG)
    (path / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="model.pt is missing"):
        load_model_dir(path)
    document = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**document, "format": "other/9"}))
    with pytest.raises(ValueError, match="has format 'other/9', expected 'pinsage-state-dict/1'"):
        load_model_dir(path)


def test_weights_that_do_not_fit_the_config_are_rejected(tmp_path):
    path = save_model_dir(tmp_path / "m", build_model(CONFIG), CONFIG)
    document = json.loads((path / "config.json").read_text())
    document["model_config"]["hidden_dim"] = 9
    (path / "config.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="model.pt does not fit the configuration in config.json"):
        load_model_dir(path)


def test_config_must_match_the_model():
    with pytest.raises(ValueError, match="model was built for"):
        save_model_dir("/nonexistent", build_model(CONFIG), PinSageConfig(in_dim=7))
