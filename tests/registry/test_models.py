"""Model directories through a real MLflow store (SQLite + local artifacts in tmp): log, register, load."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.models import Model

from embeddings.registry.models import (
    CHALLENGER,
    CHAMPION,
    ModelLoadError,
    ModelVersionNotFound,
    import_function,
    load_model,
    load_model_dir,
    load_state_dict_dir,
    log_model_dir,
    register_version,
    save_state_dict_dir,
    set_alias,
)
from embeddings.registry.tracking import lineage_tags, start_run
from tests.registry.mlflow_store import store  # noqa: F401 - the fixture

TINY_BUILDER = "tests.registry.test_models:build_tiny"
STATE_DICT_LOADER = "embeddings.registry.models:load_state_dict_dir"
TEST_PACKAGES = ("tests.registry.",)


def build_tiny(config):
    """The builder the tiny model directories name (a test module is allowed via ``builder_packages``)."""
    return torch.nn.Linear(config["in_dim"], config["out_dim"])


def _tiny_dir(path: Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(seed)
    model = build_tiny({"in_dim": 3, "out_dim": 2})
    return save_state_dict_dir(path, model, {"in_dim": 3, "out_dim": 2}, TINY_BUILDER, {"seed": seed}), model


def _log_and_register(store, tmp_path, name, seed=0, tags=None):
    client, artifacts = store
    model_dir, model = _tiny_dir(tmp_path / f"model-{seed}", seed)
    with start_run(client, name, run_name=f"seed {seed}", tags=tags, artifact_root=artifacts) as run:
        x = np.zeros((2, 3), dtype=np.float32)
        logged = log_model_dir(client, run.run_id, model_dir, loader=STATE_DICT_LOADER, input_example=x,
                               output_example=np.zeros((2, 2), dtype=np.float32),
                               pip_requirements=["torch==2.13.0"], metadata={"ds": "2026-01-31"}, tags=tags)
    return register_version(client, name, logged, tags=tags), logged, model


def test_state_dict_dir_round_trip(tmp_path):
    path, model = _tiny_dir(tmp_path / "m")
    loaded = load_state_dict_dir(path, builder_packages=TEST_PACKAGES)
    assert not loaded.training
    assert all(torch.equal(model.state_dict()[k], loaded.state_dict()[k]) for k in model.state_dict())
    assert json.loads((path / "config.json").read_text())["builder"] == TINY_BUILDER
    with pytest.raises(ValueError, match="outside the allowed packages"):
        load_state_dict_dir(path)  # the default allows only this package's builders
    (path / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="model.pt is missing"):
        load_state_dict_dir(path, builder_packages=TEST_PACKAGES)


def test_import_function_refuses_code_outside_the_package():
    with pytest.raises(ValueError, match=r"'os:system' is outside the allowed packages \['embeddings.'\]"):
        import_function("os:system")
    with pytest.raises(ValueError, match="expected 'package.module:function'"):
        import_function("embeddings.registry.models")
    with pytest.raises(ImportError, match="has no function 'nope'"):
        import_function("embeddings.registry.models:nope")


@pytest.mark.mlflow
def test_log_register_and_load_by_alias(store, tmp_path, monkeypatch):
    client, _ = store
    tags = lineage_tags(ds="2026-01-31", input_manifests={"pin_features": "/lake/pf/_manifest.json"},
                        code_version="0.1.0+gabc", env={"AIRFLOW_CTX_DAG_ID": "nightly"})
    version, logged, model = _log_and_register(store, tmp_path, "tiny-load", tags=tags)
    assert version == "1"
    mv = client.get_model_version("tiny-load", version)
    assert CHALLENGER in mv.aliases
    assert mv.tags["ds"] == "2026-01-31" and mv.tags["airflow.dag_id"] == "nightly"
    assert mv.tags["input.pin_features"] == "/lake/pf/_manifest.json" and mv.tags["model.loader"] == STATE_DICT_LOADER
    set_alias(client, "tiny-load", CHAMPION, version)

    path = load_model_dir(client, "tiny-load", dst_path=tmp_path / "download")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.pt"]
    mlmodel = Model.load(str(path.parent / "MLmodel"))
    assert tuple(mlmodel.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 3)
    assert mlmodel.load_input_example(str(path.parent)).shape == (2, 3)
    assert mlmodel.metadata == {"ds": "2026-01-31"}
    assert (path.parent / "requirements.txt").read_text() == "torch==2.13.0\n"

    with pytest.raises(ValueError, match="download directory .*download is not empty"):
        load_model_dir(client, "tiny-load", dst_path=tmp_path / "download")

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    loaded = load_model(client, "tiny-load", builder_packages=TEST_PACKAGES)
    assert all(torch.equal(model.state_dict()[k], loaded.state_dict()[k]) for k in model.state_dict())
    assert not any(scratch.iterdir())  # load_model removes its temporary download
    by_number = load_model(client, "tiny-load", alias=None, version="1", builder_packages=TEST_PACKAGES)
    assert torch.equal(by_number.weight, model.weight)


@pytest.mark.mlflow
def test_pinsage_model_dir_loads_through_the_registry(store, tmp_path):
    from embeddings.pinsage.model import PinSageConfig, build_model
    from embeddings.pinsage.model_dir import save_model_dir

    client, artifacts = store
    config = PinSageConfig(in_dim=6, hidden_dim=8, embedding_dim=4, pooling="mean", num_neighbors=3)
    model = build_model(config)
    model_dir = save_model_dir(tmp_path / "pinsage", model, config, {"ds": "2026-01-31"})
    with start_run(client, "pinsage-test", artifact_root=artifacts) as run:
        logged = log_model_dir(client, run.run_id, model_dir, loader="embeddings.pinsage.model_dir:load_model_dir")
    version = register_version(client, "pinsage-test", logged)
    loaded, loaded_config = load_model(client, "pinsage-test", alias=CHALLENGER)
    assert loaded_config == config and version == "1"
    assert all(torch.equal(model.state_dict()[k], loaded.state_dict()[k]) for k in model.state_dict())


def _artifact_dir(client, name, version) -> Path:
    return Path(client.get_model_version_download_uri(name, version))


@pytest.mark.mlflow
def test_corrupt_or_missing_champion_artifacts_name_the_version(store, tmp_path):
    client, _ = store
    version, _, _ = _log_and_register(store, tmp_path, "tiny-corrupt")
    set_alias(client, "tiny-corrupt", CHAMPION, version)
    stored = _artifact_dir(client, "tiny-corrupt", version)

    weights = stored / "data" / "model.pt"
    weights.write_bytes(weights.read_bytes()[:-7] + b"garbage")
    with pytest.raises(ModelLoadError, match=r"registered model 'tiny-corrupt' version 1 \(alias 'champion'\): "
                                             r"file model.pt in .* is corrupt \(sha256"):
        load_model_dir(client, "tiny-corrupt")

    weights.unlink()
    with pytest.raises(ModelLoadError, match=r"version 1 \(alias 'champion'\): file model.pt of the model "
                                             r"directory is missing"):
        load_model(client, "tiny-corrupt", builder_packages=TEST_PACKAGES)

    (stored / "MLmodel").unlink()
    with pytest.raises(ModelLoadError, match=r"version 1 \(alias 'champion'\): .* has no MLmodel file"):
        load_model_dir(client, "tiny-corrupt")

    shutil.rmtree(stored)
    with pytest.raises(ModelLoadError, match=r"version 1 \(alias 'champion'\)"):
        load_model_dir(client, "tiny-corrupt")


@pytest.mark.mlflow
def test_a_loader_failure_names_the_version(store, tmp_path):
    client, _ = store
    version, _, _ = _log_and_register(store, tmp_path, "tiny-loader")
    with pytest.raises(ModelLoadError, match=r"'tiny-loader' version 1 \(alias 'challenger'\): loader "
                                             r"'embeddings.registry.models:load_state_dict_dir' failed"):
        load_model(client, "tiny-loader", alias=CHALLENGER)  # the test builder is not allowed by default


@pytest.mark.mlflow
def test_missing_alias_version_or_model(store, tmp_path):
    client, _ = store
    _log_and_register(store, tmp_path, "tiny-missing")
    with pytest.raises(ModelVersionNotFound,
                       match=r"'tiny-missing' has no alias 'champion' \(aliases: \{'challenger': 1\}\)"):
        load_model_dir(client, "tiny-missing")
    with pytest.raises(ModelVersionNotFound, match="has no version 9"):
        load_model_dir(client, "tiny-missing", alias=None, version="9")
    with pytest.raises(ModelVersionNotFound, match="registered model 'no-such-model' has no alias 'champion'"):
        load_model_dir(client, "no-such-model")
    with pytest.raises(ValueError, match="give exactly one of alias and version"):
        load_model_dir(client, "tiny-missing", alias="champion", version="1")


@pytest.mark.mlflow
def test_log_model_dir_rejects_bad_input(store, tmp_path):
    client, artifacts = store
    (tmp_path / "empty").mkdir()
    with start_run(client, "tiny-bad", artifact_root=artifacts) as run:
        with pytest.raises(ValueError, match="model directory .*missing does not exist"):
            log_model_dir(client, run.run_id, tmp_path / "missing", loader=STATE_DICT_LOADER)
        with pytest.raises(ValueError, match="model directory .*empty is empty; nothing to log"):
            log_model_dir(client, run.run_id, tmp_path / "empty", loader=STATE_DICT_LOADER)
        model_dir, _ = _tiny_dir(tmp_path / "m")
        with pytest.raises(ValueError, match="outside the allowed packages"):
            log_model_dir(client, run.run_id, model_dir, loader="pickle:loads")
