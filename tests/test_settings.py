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


def test_defaults_and_every_override(tmp_path):
    s = Settings.from_env({"EMB_VAR_DIR": str(tmp_path)})
    assert s.var_dir == str(tmp_path.resolve())
    assert s.index_uri == str(tmp_path / "indexes") and s.mlflow_artifacts_uri == str(tmp_path / "mlartifacts")
    env = {"EMB_VAR_DIR": str(tmp_path), "EMB_INDEX_URI": "s3://b/idx", "EMB_MLFLOW_ARTIFACTS": "s3://b/art",
           "AIRFLOW_HOME": "/opt/airflow"}
    s = Settings.from_env(env)
    assert (s.index_uri, s.mlflow_artifacts_uri, s.airflow_home) == ("s3://b/idx", "s3://b/art", "/opt/airflow")


def test_empty_variables_fall_back_to_defaults(tmp_path):
    s = Settings.from_env({"EMB_VAR_DIR": str(tmp_path), "EMB_LAKE_URI": "", "EMB_DEVICE": ""})
    assert s.lake_uri == str(tmp_path / "lake") and s.device == "auto"


def test_default_var_dir_is_under_the_repository():
    from embeddings.settings import REPO_ROOT

    assert Settings.from_env({}).var_dir == str((REPO_ROOT / "var").resolve())


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_valid_devices(device):
    assert Settings.from_env({"EMB_DEVICE": device}).device == device


@pytest.mark.parametrize("device", ["tpu", "cuda:", "cuda:x", "cpu:0", "auto:1", "CUDA", " cpu"])
def test_malformed_devices_are_rejected(device):
    with pytest.raises(ValueError, match=r"EMB_DEVICE must be one of .* \(optionally cuda:N\), got " + repr(device)):
        Settings.from_env({"EMB_DEVICE": device})


def test_empty_setting_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="setting lake_uri must not be empty"):
        Settings(var_dir=str(tmp_path), lake_uri="", index_uri="i", mlflow_tracking_uri="m",
                 mlflow_artifacts_uri="a", spark_master="local[*]", device="cpu", airflow_home="h")
