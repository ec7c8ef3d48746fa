from __future__ import annotations

import pytest

from embeddings.settings import Settings


def test_embedded_defaults_live_under_var(tmp_path):
    s = Settings.from_env({"EMB_VAR_DIR": str(tmp_path)})
    assert s.lake_uri == str(tmp_path / "lake")
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.airflow_home == str(tmp_path / "airflow") and s.spark_master == "local[*]" and s.device == "auto"


def test_environment_overrides():
    s = Settings.from_env({"EMB_LAKE_URI": "s3://b/lake", "MLFLOW_TRACKING_URI": "postgresql://x/db",
                           "EMB_SPARK_MASTER": "spark://m:7077", "EMB_DEVICE": "cuda:1"})
    assert (s.lake_uri, s.mlflow_tracking_uri, s.spark_master, s.device) == (
        "s3://b/lake", "postgresql://x/db", "spark://m:7077", "cuda:1")


def test_bad_device_is_rejected():
    with pytest.raises(ValueError, match="EMB_DEVICE must be one of"):
        Settings.from_env({"EMB_DEVICE": "tpu"})
