"""train -> evaluate/promote of PinnerFormer through a real MLflow registry (SQLite) on a tiny lake.

The lake is written here: ``user_sequences`` rows (the contract of ``jobs.build_sequences``) where each
user saves pins of one planted topic, ``pin_embeddings`` whose vectors carry the topics, and
``synthetic_pin_topics`` (so the diversity metrics are computed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from mlflow.tracking import MlflowClient

from embeddings.data.schemas import PIN_EMBEDDINGS, SYNTHETIC_PIN_TOPICS, USER_SEQUENCES
from embeddings.lake import PartitionMissingError
from embeddings.pinnerformer.lake import user_split
from embeddings.pinnerformer.model_dir import load_model_dir, read_model_metadata
from embeddings.pinnerformer.training import TrainingOptions
from embeddings.registry.store import TrackingStoreUnavailable
from jobs.evaluate_pinnerformer import EvaluatePinnerFormerConfig
from jobs.evaluate_pinnerformer import run as evaluate
from jobs.train_pinnerformer import TrainPinnerFormerConfig, main
from jobs.train_pinnerformer import run as train
from tests.pinnerformer.tiny_data import one_torch_thread  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.mlflow, pytest.mark.usefixtures("one_torch_thread")]

DS = dt.date(2026, 3, 31)
END = dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)
LABEL_DAYS = 14
CUTOFF = END - dt.timedelta(days=LABEL_DAYS)
NUM_TOPICS, PINS_PER_TOPIC, DIM = 4, 15, 8
PIN_IDS = 5_000_000 + 11 * np.arange(NUM_TOPICS * PINS_PER_TOPIC, dtype=np.int64)
UNKNOWN_PIN = 4_999_999  # in some timelines, not in pin_embeddings


def pin_vectors(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(NUM_TOPICS, DIM))
    topic = np.arange(len(PIN_IDS)) % NUM_TOPICS
    vectors = centers[topic] + 0.4 * rng.normal(size=(len(PIN_IDS), DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def sequences_table(num_users: int = 90, length: int = 24, seed: int = 0) -> pa.Table:
    """One row per user: ``length`` actions on pins of the user's topic over 20 days ending at END, a save
    or a long click, with a few short clicks (not positive) and an action on a pin without an embedding."""
    rng = np.random.default_rng(seed)
    user_ids = 1000 + np.arange(num_users, dtype=np.int64)
    topic_pins = [np.flatnonzero(np.arange(len(PIN_IDS)) % NUM_TOPICS == t) for t in range(NUM_TOPICS)]
    rows = {name: [] for name in USER_SEQUENCES.schema.names}
    start = END - dt.timedelta(days=20)
    for u, user in enumerate(user_ids):
        offsets = np.sort(rng.choice(20 * 24 * 3600, length, replace=False))
        ts = [start + dt.timedelta(seconds=int(s)) for s in offsets]
        pins = PIN_IDS[rng.choice(topic_pins[u % NUM_TOPICS], length)].tolist()
        actions = rng.choice(["save", "click"], length, p=[0.7, 0.3]).tolist()
        duration = [None if a == "save" else int(rng.choice([2_000, 30_000])) for a in actions]
        pins[1] = UNKNOWN_PIN
        rows["user_id"].append(int(user))
        rows["cutoff_ts"].append(CUTOFF)
        rows["pin_id"].append(pins)
        rows["action"].append(actions)
        rows["surface"].append(["homefeed"] * length)
        rows["duration_ms"].append(duration)
        rows["ts"].append(ts)
        rows["num_actions"].append(length)
        rows["num_input_dropped"].append(0)
        rows["num_future_dropped"].append(0)
    rows["split"] = user_split(user_ids, 0.25, 0.25).tolist()
    return pa.Table.from_pydict(rows, schema=USER_SEQUENCES.schema)


def write_tiny_lake(lake, pinsage_version: str = "pinsage/1", synthetic: bool = True) -> None:
    lake.write(USER_SEQUENCES, sequences_table(), DS, extra={"label_days": LABEL_DAYS, "max_length": 256})
    write_pin_embeddings(lake, pinsage_version)
    if synthetic:
        topic = (np.arange(len(PIN_IDS)) % NUM_TOPICS).astype(np.int32)
        lake.write(SYNTHETIC_PIN_TOPICS, pa.table({
            "pin_id": PIN_IDS, "primary_topic": topic, "topics": [[int(t)] for t in topic],
            "weights": [[1.0]] * len(PIN_IDS)}))


def write_pin_embeddings(lake, pinsage_version: str) -> None:
    lake.write(PIN_EMBEDDINGS, pa.table({
        "pin_id": PIN_IDS, "embedding": pa.array(pin_vectors().tolist(), pa.list_(pa.float32())),
        "model_version": [pinsage_version] * len(PIN_IDS)}), DS)


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _train_config(lake_uri, tmp_path, tracking_uri, seed=0, **training) -> TrainPinnerFormerConfig:
    options = {"batch_size": 16, "num_random_negatives": 16, "num_positions": 4, "num_epochs": 2, "patience": 3,
               "seed": seed, "log_every_s": 60.0, **training}
    return TrainPinnerFormerConfig(
        lake_uri=lake_uri, ds=DS, model_dir=str(tmp_path / f"model-{seed}"), embedding_dim=8, model_dim=8,
        num_layers=1, num_heads=2, ff_dim=16, max_length=16, device="cpu", training=TrainingOptions(**options),
        tracking_uri=tracking_uri, artifact_root=str(tmp_path / "artifacts"),
    )


def _evaluate_config(lake_uri, tracking_uri, **kwargs) -> EvaluatePinnerFormerConfig:
    return EvaluatePinnerFormerConfig(lake_uri=lake_uri, ds=DS, tracking_uri=tracking_uri, device="cpu",
                                      ci_samples=20, **kwargs)


def test_champion_challenger_flow(lake, lake_uri, tmp_path, tracking_uri):
    write_tiny_lake(lake)
    client = MlflowClient(tracking_uri)

    first = train(_train_config(lake_uri, tmp_path, tracking_uri))
    assert first.registered_version == "1" and first.pinsage_model_version == "pinsage/1"
    version = client.get_model_version("pinnerformer", "1")
    assert version.tags["pinsage_model_version"] == "pinsage/1" and version.tags["ds"] == DS.isoformat()
    assert "input.user_sequences" in version.tags and "input.pin_embeddings" in version.tags
    run = client.get_run(first.run_id)
    assert run.data.tags["pinsage_model_version"] == "pinsage/1"
    assert run.data.params["training.objective"] == "dense_all_action" and run.data.params["model.max_length"] == "16"
    assert [m.step for m in client.get_metric_history(first.run_id, "train_loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(first.run_id, "valid_recall_at_10")] == [1, 2]
    assert "plots/training_curves.png" in {f.path for f in client.list_artifacts(first.run_id, "plots")}
    assert client.get_registered_model("pinnerformer").aliases == {"challenger": 1}
    model, config = load_model_dir(first.model_dir)
    assert config == first.model_config and config.pin_dim == DIM
    _, metadata = read_model_metadata(first.model_dir)
    assert metadata["pinsage_model_version"] == "pinsage/1" and len(metadata["history"]) == 2
    assert metadata["input_stats"]["train.num_unknown_pin_events"] > 0  # the unknown pin is counted

    # Same inputs, code and settings: the registered version is found, nothing is trained or registered.
    again = train(_train_config(lake_uri, tmp_path, tracking_uri))
    assert again.registered_version == "1" and again.history == [] and again.model is None
    assert len(client.search_model_versions("name = 'pinnerformer'")) == 1

    decided = evaluate(_evaluate_config(lake_uri, tracking_uri))
    assert decided.promoted and decided.reason == "no incumbent champion"
    assert set(decided.table["model"]) == {"pinnerformer challenger v1", "popularity", "pinsage_last_pin",
                                           "pinsage_decayed_average", "pinnersage_3_medoids"}
    test = decided.table[decided.table["split"] == "test"].set_index(["model", "metric"])["value"]
    for model_name in set(decided.table["model"]):
        assert 0 <= test[(model_name, "recall@10")] <= test[(model_name, "recall@50")] <= 1
        assert 0 < test[(model_name, "p90_coverage@10")] <= 1
        assert 0 <= test[(model_name, "topic_entropy@50")] <= 2  # 4 topics: at most 2 bits
    # Users saving one topic: the PinSage baselines that follow the history beat popularity.
    assert test[("pinsage_decayed_average", "recall@10")] > test[("popularity", "recall@10")]
    assert client.get_registered_model("pinnerformer").aliases == {"challenger": 1, "champion": 1}
    tags = client.get_model_version("pinnerformer", "1").tags
    assert tags["promotion.decision"] == "promoted" and tags["promotion.metric"] == "recall@10"
    metrics = client.get_run(first.run_id).data.metrics
    assert "eval/pinnerformer challenger v1/test/recall_at_10" in metrics
    assert "eval/pinnersage_3_medoids/valid/recall_at_100" in metrics
    assert "plots/recall_at_k_test.png" in {f.path for f in client.list_artifacts(first.run_id, "plots")}

    # A second version must beat the champion beyond noise: with an unreachable margin it stays challenger.
    second = train(_train_config(lake_uri, tmp_path, tracking_uri, seed=1))
    assert second.registered_version == "2"
    kept = evaluate(_evaluate_config(lake_uri, tracking_uri, margin=1.0))
    assert not kept.promoted and kept.champion_before == "1" and kept.version == "2"
    assert "pinnerformer champion v1" in set(kept.table["model"])
    tags = client.get_model_version("pinnerformer", "2").tags
    assert tags["promotion.decision"] == "kept_challenger" and tags["promotion.incumbent"] == "1"
    assert float(tags["promotion.ci_low"]) <= float(tags["promotion.ci_high"])
    assert client.get_registered_model("pinnerformer").aliases == {"challenger": 2, "champion": 1}


def test_a_challenger_of_another_pinsage_version_is_refused(lake, lake_uri, tmp_path, tracking_uri):
    write_tiny_lake(lake)
    first = train(_train_config(lake_uri, tmp_path, tracking_uri))
    write_pin_embeddings(lake, "pinsage/2")  # a new PinSage champion's embeddings replace the partition
    with pytest.raises(ValueError, match=r"pinnerformer version 1 consumed pinsage/1 but .*pin_embeddings.* "
                                         r"pinsage/2"):
        evaluate(_evaluate_config(lake_uri, tracking_uri))
    client = MlflowClient(tracking_uri)
    assert "promotion.decision" not in client.get_model_version("pinnerformer", first.registered_version).tags

    # Trained on the new PinSage version, the next version replaces the champion that cannot serve with it.
    second = train(_train_config(lake_uri, tmp_path, tracking_uri, seed=1))
    assert second.registered_version == "2" and second.pinsage_model_version == "pinsage/2"
    client.set_registered_model_alias("pinnerformer", "champion", "1")  # as if version 1 had been promoted
    decided = evaluate(_evaluate_config(lake_uri, tracking_uri))
    assert decided.promoted and "pinsage/1" in decided.reason and "pinsage/2" in decided.reason
    assert client.get_registered_model("pinnerformer").aliases == {"challenger": 2, "champion": 2}
    assert client.get_model_version("pinnerformer", "1").tags["promotion.replaced_by"] == "2"


def test_unreachable_store_fails_before_training(lake, lake_uri, tmp_path):
    write_tiny_lake(lake)
    config = _train_config(lake_uri, tmp_path, "http://127.0.0.1:9/")
    with pytest.raises(TrackingStoreUnavailable, match=r"http://127.0.0.1:9/ is unreachable"):
        train(config)
    assert not Path(config.model_dir).exists()


def test_missing_sequences_partition_is_named(lake, lake_uri, tmp_path, tracking_uri):
    write_pin_embeddings(lake, "pinsage/1")
    with pytest.raises(PartitionMissingError, match=r"table user_sequences \(ds=2026-03-31\) .* is missing"):
        train(_train_config(lake_uri, tmp_path, tracking_uri))


def test_nan_loss_names_the_step_and_registers_nothing(lake, lake_uri, tmp_path, tracking_uri):
    write_tiny_lake(lake)
    config = _train_config(lake_uri, tmp_path, tracking_uri, learning_rate=1e30)
    with pytest.raises(FloatingPointError, match=r"at step \d+ \(epoch \d+, batch \d+/\d+"):
        train(config)
    assert config.resolved_checkpoint_path.exists()
    assert not Path(config.model_dir).exists()
    assert MlflowClient(tracking_uri).search_registered_models() == []


def test_evaluate_needs_a_version_for_the_day(lake, lake_uri, tracking_uri):
    write_tiny_lake(lake)
    with pytest.raises(LookupError, match="no version of registered model 'pinnerformer' is tagged ds=2026-03-31"):
        evaluate(_evaluate_config(lake_uri, tracking_uri))


def test_main_parses_flags_and_trains_without_registering(lake, lake_uri, tmp_path):
    write_tiny_lake(lake, synthetic=False)
    main(["--ds", DS.isoformat(), "--lake-uri", lake_uri, "--model-dir", str(tmp_path / "m"), "--device", "cpu",
          "--embedding-dim", "8", "--model-dim", "8", "--num-layers", "1", "--ff-dim", "16", "--max-length", "8",
          "--objective", "next_action", "--negatives", "in_batch", "--batch-size", "32", "--num-epochs", "1",
          "--ema-decay", "0.99", "--no-register"])
    config, metadata = read_model_metadata(tmp_path / "m")
    assert config.max_length == 8 and metadata["training_options"]["objective"] == "next_action"
    assert metadata["training_options"]["negatives"] == "in_batch"
    assert metadata["training_options"]["ema_decay"] == 0.99


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_dim": 10, "num_heads": 4}, r"model_dim \(10\) must be divisible by num_heads \(4\)"),
        ({"max_length": 0}, "max_length must be positive, got 0"),
        ({"ds": "31/03/2026"}, "ds must be a date in YYYY-MM-DD form"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainPinnerFormerConfig(**{"lake_uri": "/tmp/x", "ds": DS, "model_dir": "/tmp/m", **kwargs})


def test_evaluate_config_is_validated():
    with pytest.raises(ValueError, match="margin must be >= 0, got -0.1"):
        dataclasses.replace(EvaluatePinnerFormerConfig(lake_uri="/tmp/x", ds=DS, tracking_uri="sqlite:///x"),
                            margin=-0.1)
