"""Smoke tests of jobs.infer_pinsage on a tiny lake written in the test."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from embeddings.data.schemas import PIN_EMBEDDINGS, PIN_FEATURES, PPR_NEIGHBORS
from embeddings.pinsage.data import load_pin_graph
from embeddings.pinsage.inference import embed_per_pin
from embeddings.pinsage.model import PinSageConfig, build_model
from embeddings.pinsage.model_dir import save_model_dir
from jobs.infer_pinsage import InferPinSageConfig, main, run
from tests.pinsage.tiny_data import (  # noqa: F401 (one_torch_thread: a fixture)
    DS,
    features_table,
    neighbors_table,
    one_torch_thread,
    planted,
    write_tiny_lake,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL_CONFIG = PinSageConfig(in_dim=12, hidden_dim=16, embedding_dim=8, num_neighbors=4)


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    return str(save_model_dir(tmp_path / "model", build_model(MODEL_CONFIG), MODEL_CONFIG))


def _embeddings(lake):
    table = lake.read(PIN_EMBEDDINGS, DS)
    return table, np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)


def test_run_embeds_every_pin_with_unit_norm_and_a_manifest(lake, lake_uri, model_dir):
    data = write_tiny_lake(lake)
    result = run(InferPinSageConfig(lake_uri=lake_uri, ds=DS, model_dir=model_dir, chunk_size=50,
                                    model_version="pinsage/3"))
    table, vectors = _embeddings(lake)
    assert sorted(table.column("pin_id").to_pylist()) == sorted(data["pin_ids"].tolist())
    assert vectors.shape == (120, 8)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert pc.unique(table.column("model_version")).to_pylist() == ["pinsage/3"]
    assert [i["table"] for i in result.manifest.inputs] == ["pin_features", "ppr_neighbors"]
    assert result.manifest.extra["pins_missing_neighborhood"] == 0 and result.pins_per_s > 0

    # Equal to per-pin computation through each pin's own computation graph.
    graph, _ = load_pin_graph(lake, DS, num_neighbors=4)
    model = build_model(MODEL_CONFIG)
    model.load_state_dict(torch.load(f"{model_dir}/model.pt", weights_only=True))
    rows = np.arange(0, 120, 7)
    per_pin = embed_per_pin(model, rows, graph.features, graph.neighbors, graph.weights)
    order = np.argsort(table.column("pin_id").to_numpy())
    assert np.abs(vectors[order][rows] - per_pin).max() < 1e-5

    # Rerunning the partition rewrites it whole, with the same vectors.
    run(InferPinSageConfig(lake_uri=lake_uri, ds=DS, model_dir=model_dir, model_version="pinsage/3"))
    again_table, again = _embeddings(lake)
    assert again_table.num_rows == 120 and np.array_equal(again, vectors)


def test_default_model_version_is_the_weights_hash(lake, lake_uri, model_dir):
    write_tiny_lake(lake)
    result = run(InferPinSageConfig(lake_uri=lake_uri, ds=DS, model_dir=model_dir))
    assert result.model_version.startswith("sha256:") and len(result.model_version) == 19


def test_pins_without_a_neighborhood_are_embedded_and_counted(lake, lake_uri, model_dir):
    data = planted()
    lake.write(PIN_FEATURES, features_table(data["pin_ids"], data["features"]), DS)
    keep = slice(0, 118)  # the last two pins have no neighborhood row
    lake.write(PPR_NEIGHBORS, neighbors_table(data["pin_ids"][keep], data["neighbor_ids"][keep],
                                              data["neighbor_weights"][keep], data["hard_negative_ids"][keep]), DS)
    result = run(InferPinSageConfig(lake_uri=lake_uri, ds=DS, model_dir=model_dir))
    assert result.num_pins == 120 and result.manifest.extra["pins_missing_neighborhood"] == 2
    _, vectors = _embeddings(lake)
    assert np.isfinite(vectors).all()


def test_nan_features_are_rejected_naming_the_pins(lake, lake_uri, model_dir):
    data = write_tiny_lake(lake, num_days=1)
    features = data["features"].copy()
    features[5, 3] = np.nan
    lake.write(PIN_FEATURES, features_table(data["pin_ids"], features), DS)
    with pytest.raises(ValueError, match=rf"table pin_features \(ds=2026-03-31\) .*1 pin\(s\) have NaN or Inf "
                                         rf"features, e\.g\. pin_id \[{data['pin_ids'][5]}\]"):
        run(InferPinSageConfig(lake_uri=lake_uri, ds=DS, model_dir=model_dir))
    assert not lake.exists(PIN_EMBEDDINGS, DS)


def test_feature_width_must_match_the_model(lake, lake_uri, tmp_path):
    write_tiny_lake(lake, num_days=1)
    config = PinSageConfig(in_dim=5, hidden_dim=4, embedding_dim=4, num_neighbors=4)
    path = save_model_dir(tmp_path / "narrow", build_model(config), config)
    with pytest.raises(ValueError, match=r"has 12-d features but model sha256:\w+ in .*narrow expects in_dim=5"):
        run(InferPinSageConfig(lake_uri=lake_uri, ds=DS, model_dir=str(path)))


def test_a_model_with_id_vectors_is_refused_and_nothing_is_written(lake, lake_uri, tmp_path):
    write_tiny_lake(lake, num_days=1)
    config = PinSageConfig(in_dim=12, hidden_dim=4, embedding_dim=4, num_neighbors=4, num_ids=120, id_dim=3)
    path = save_model_dir(tmp_path / "ids", build_model(config), config)
    with pytest.raises(ValueError, match=r"model sha256:\w+ in .*ids learned per-pin id vectors \(id_dim=3.*cannot "
                                         r"embed table pin_features \(ds=2026-03-31\)"):
        run(InferPinSageConfig(lake_uri=lake_uri, ds=DS, model_dir=str(path)))
    assert not lake.exists(PIN_EMBEDDINGS, DS)


def test_main_runs_from_flags(lake, lake_uri, model_dir):
    write_tiny_lake(lake, num_days=1)
    main(["--ds", DS.isoformat(), "--lake-uri", lake_uri, "--model-dir", model_dir, "--device", "cpu",
          "--chunk-size", "64"])
    assert lake.read_manifest(PIN_EMBEDDINGS, DS).row_count == 120


def test_config_is_validated():
    with pytest.raises(ValueError, match="chunk_size must be positive, got 0"):
        InferPinSageConfig(lake_uri="/tmp/x", ds=DS, model_dir="/tmp/m", chunk_size=0)
