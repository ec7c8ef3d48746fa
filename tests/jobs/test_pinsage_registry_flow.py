"""train -> evaluate/promote -> infer through a real MLflow registry (SQLite) on a tiny lake."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from embeddings.data.schemas import PIN_EMBEDDINGS
from embeddings.pinsage.training import TrainingOptions
from embeddings.registry.models import ModelLoadError, ModelVersionNotFound
from embeddings.registry.store import TrackingStoreUnavailable
from jobs.evaluate_pinsage import EvaluatePinSageConfig
from jobs.evaluate_pinsage import run as evaluate
from jobs.infer_pinsage import InferPinSageConfig
from jobs.infer_pinsage import run as infer
from jobs.train_pinsage import TrainPinSageConfig
from jobs.train_pinsage import run as train
from tests.pinsage.tiny_data import DS, one_torch_thread, write_tiny_lake  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.mlflow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _train_config(lake_uri, tmp_path, tracking_uri, seed=0) -> TrainPinSageConfig:
    return TrainPinSageConfig(
        lake_uri=lake_uri, ds=DS, model_dir=str(tmp_path / f"model-{seed}"), hidden_dim=16, embedding_dim=8,
        num_neighbors=4, window_days=10, valid_days=2, test_days=2, device="cpu",
        training=TrainingOptions(batch_size=64, num_shared_negatives=16, num_epochs=2, patience=3,
                                 max_hard_negatives=1, num_workers=0, seed=seed),
        tracking_uri=tracking_uri, artifact_root=str(tmp_path / "artifacts"),
    )


def _evaluate_config(lake_uri, tracking_uri, **kwargs) -> EvaluatePinSageConfig:
    return EvaluatePinSageConfig(lake_uri=lake_uri, ds=DS, tracking_uri=tracking_uri, window_days=10, valid_days=2,
                                 test_days=2, pixie=False, device="cpu", **kwargs)


def test_champion_challenger_flow(lake, lake_uri, tmp_path, tracking_uri):
    write_tiny_lake(lake)
    client = MlflowClient(tracking_uri)

    first = train(_train_config(lake_uri, tmp_path, tracking_uri))
    assert first.registered_version == "1"
    version = client.get_model_version("pinsage", "1")
    assert version.tags["ds"] == DS.isoformat() and "input.ppr_neighbors" in version.tags
    run = client.get_run(first.run_id)
    assert run.data.params["model.pooling"] == "importance"
    assert [m.step for m in client.get_metric_history(first.run_id, "train_loss")] == [1, 2]
    assert "plots/training_curves.png" in {f.path for f in client.list_artifacts(first.run_id, "plots")}

    # Same inputs, code and settings: the registered version is found, nothing is trained or registered.
    again = train(_train_config(lake_uri, tmp_path, tracking_uri))
    assert again.registered_version == "1" and again.history == []
    assert len(client.search_model_versions("name = 'pinsage'")) == 1

    with pytest.raises(ModelVersionNotFound, match="no alias 'champion'"):
        infer(InferPinSageConfig(lake_uri=lake_uri, ds=DS, tracking_uri=tracking_uri, device="cpu"))

    decided = evaluate(_evaluate_config(lake_uri, tracking_uri))
    assert decided.promoted and decided.reason == "no incumbent champion"
    assert set(decided.table["model"]) == {"pinsage challenger v1", "content features", "item_knn", "popularity"}
    assert client.get_registered_model("pinsage").aliases == {"challenger": 1, "champion": 1}
    metrics = client.get_run(first.run_id).data.metrics
    assert "eval/pinsage challenger v1/test/ndcg_at_10" in metrics and "eval/item_knn/valid/hr_at_10" in metrics

    # A second version must beat the champion beyond noise: with an unreachable margin it stays challenger.
    second = train(_train_config(lake_uri, tmp_path, tracking_uri, seed=1))
    assert second.registered_version == "2"
    kept = evaluate(_evaluate_config(lake_uri, tracking_uri, margin=1.0))
    assert not kept.promoted and kept.champion_before == "1"
    tags = client.get_model_version("pinsage", "2").tags
    assert tags["promotion.decision"] == "kept_challenger" and tags["promotion.incumbent"] == "1"
    assert float(tags["promotion.ci_low"]) <= float(tags["promotion.ci_high"])
    assert client.get_registered_model("pinsage").aliases == {"challenger": 2, "champion": 1}

    # Inference serves the champion, not the newest version.
    result = infer(InferPinSageConfig(lake_uri=lake_uri, ds=DS, tracking_uri=tracking_uri, device="cpu"))
    assert result.model_version == "pinsage/1"
    assert set(lake.read(PIN_EMBEDDINGS, DS).column("model_version").to_pylist()) == {"pinsage/1"}

    # A champion whose files were tampered with is refused, naming the version.
    source = Path(client.get_model_version("pinsage", "1").source.removeprefix("file://"))
    weights = next(source.rglob("model.pt"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelLoadError, match=r"pinsage.*version 1"):
        infer(InferPinSageConfig(lake_uri=lake_uri, ds=DS, tracking_uri=tracking_uri, device="cpu"))
    # ...and what was published stays.
    assert lake.read_manifest(PIN_EMBEDDINGS, DS).row_count == result.num_pins


def test_unreachable_store_fails_before_training(lake, lake_uri, tmp_path):
    write_tiny_lake(lake)
    config = _train_config(lake_uri, tmp_path, "http://127.0.0.1:9/")
    with pytest.raises(TrackingStoreUnavailable, match=r"http://127.0.0.1:9/ is unreachable"):
        train(dataclasses.replace(config, tracking_uri="http://127.0.0.1:9/"))
    assert not Path(config.model_dir).exists()


def test_evaluate_needs_a_version_for_the_day(lake, lake_uri, tracking_uri):
    write_tiny_lake(lake)
    with pytest.raises(LookupError, match="no version of registered model 'pinsage' is tagged ds=2026-03-31"):
        evaluate(_evaluate_config(lake_uri, tracking_uri))
