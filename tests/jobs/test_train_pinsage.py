"""Smoke tests of jobs.train_pinsage on a tiny lake written in the test."""

from __future__ import annotations

import pytest

from embeddings.data.schemas import PPR_NEIGHBORS
from embeddings.lake import PartitionMissingError
from embeddings.pinsage.model_dir import load_model_dir, read_model_metadata
from embeddings.pinsage.training import TrainingOptions
from jobs.train_pinsage import TrainPinSageConfig, main, run
from tests.pinsage.tiny_data import DS, one_torch_thread, write_tiny_lake  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(lake_uri, tmp_path, **training):
    options = {"batch_size": 64, "num_shared_negatives": 16, "num_epochs": 2, "patience": 3,
               "max_hard_negatives": 1, "num_workers": 0, **training}
    return TrainPinSageConfig(
        lake_uri=lake_uri, ds=DS, model_dir=str(tmp_path / "model"), hidden_dim=16, embedding_dim=8,
        num_neighbors=4, window_days=10, valid_days=2, test_days=1, device="cpu",
        training=TrainingOptions(**options),
    )


def test_run_trains_and_writes_a_model_directory(lake, lake_uri, tmp_path):
    write_tiny_lake(lake)
    result = run(_config(lake_uri, tmp_path))
    assert len(result.history) == 2 and result.best_epoch in (1, 2)
    assert result.best_metrics["epoch"] == result.best_epoch and "valid_hit_rate@10" in result.best_metrics
    assert result.num_train_pairs > 0 and result.num_valid_pairs > 0
    assert result.examples_per_s > 0 and 0 <= result.data_wait_share < 1
    model, config = load_model_dir(result.model_dir)
    assert config == result.model_config and config.in_dim == 12
    _, metadata = read_model_metadata(result.model_dir)
    assert [i["table"] for i in metadata["inputs"]] == ["pin_features", "ppr_neighbors"]
    assert metadata["ds"] == DS.isoformat() and len(metadata["history"]) == 2
    assert result.checkpoint_path.exists()

    # A rerun finds the finished checkpoint and writes the same model again (idempotent).
    again = run(_config(lake_uri, tmp_path))
    assert read_model_metadata(again.model_dir)[1]["weights_sha256"] == metadata["weights_sha256"]


def test_main_parses_flags_and_runs(lake, lake_uri, tmp_path):
    write_tiny_lake(lake)
    main(["--ds", DS.isoformat(), "--lake-uri", lake_uri, "--model-dir", str(tmp_path / "m"), "--device", "cpu",
          "--hidden-dim", "8", "--embedding-dim", "8", "--num-neighbors", "3", "--valid-days", "2", "--test-days",
          "1", "--batch-size", "64", "--num-shared-negatives", "8", "--num-epochs", "1", "--num-workers", "0",
          "--loss", "sampled_softmax", "--pooling", "mean", "--no-register"])
    config, metadata = read_model_metadata(tmp_path / "m")
    assert config.pooling == "mean" and metadata["training_options"]["loss"] == "sampled_softmax"


def test_missing_neighborhoods_partition_is_named(lake, lake_uri, tmp_path):
    write_tiny_lake(lake)
    lake._delete_dir(lake.partition_path(PPR_NEIGHBORS, DS))
    with pytest.raises(PartitionMissingError, match=r"table ppr_neighbors \(ds=2026-03-31\) .* is missing"):
        run(_config(lake_uri, tmp_path))


def test_no_events_in_the_window_is_an_error(lake, lake_uri, tmp_path):
    write_tiny_lake(lake, num_days=1)  # only ds itself: the test slice, never read
    with pytest.raises(ValueError, match=r"table events, ds 2026-03-22\.\.2026-03-30 .*no committed partitions"):
        run(_config(lake_uri, tmp_path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pooling": "sum"}, "pooling must be one of"),
        ({"max_gap_s": 0}, "max_gap_s must be positive, got 0"),
        ({"valid_days": 5, "test_days": 5, "window_days": 10}, r"valid_days \+ test_days \(10\) must be below"),
        ({"ds": "31/03/2026"}, "ds must be a date in YYYY-MM-DD form"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainPinSageConfig(**{"lake_uri": "/tmp/x", "ds": DS, "model_dir": "/tmp/m", **kwargs})


def test_training_cut_by_max_steps_fails_and_leaves_a_checkpoint(lake, lake_uri, tmp_path):
    write_tiny_lake(lake)
    config = _config(lake_uri, tmp_path, max_steps=1)
    with pytest.raises(RuntimeError, match=r"stopped after 1 steps \(max_steps\) before an epoch ended"):
        run(config)
    assert config.resolved_checkpoint_path.exists()
    assert not (tmp_path / "model").exists()  # no half-trained model directory
