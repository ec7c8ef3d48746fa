"""Pipeline settings: one typed object read from environment variables.

The embedded default keeps everything under ``./var`` of the repository (lake, indexes, MLflow's SQLite
database, Airflow home). Production points the same names at object storage, PostgreSQL and a Spark
cluster (see ``infra/`` and README's "Running against real infrastructure").

| variable              | default                          | meaning                                   |
|-----------------------|----------------------------------|-------------------------------------------|
| EMB_VAR_DIR           | <repo>/var                       | root of every embedded-default location   |
| EMB_LAKE_URI          | <var>/lake                       | the data lake (local path, file://, s3://) |
| EMB_INDEX_URI         | <var>/indexes                    | where published faiss indexes live        |
| MLFLOW_TRACKING_URI   | sqlite:///<var>/mlflow.db        | MLflow tracking + registry store          |
| EMB_MLFLOW_ARTIFACTS  | <var>/mlartifacts                | default artifact root for new experiments |
| EMB_SPARK_MASTER      | local[*]                         | Spark master for jobs started in-process  |
| EMB_DEVICE            | auto                             | torch device: auto, cpu, cuda, cuda:N     |
| AIRFLOW_HOME          | <var>/airflow                    | Airflow home (SQLite metadata by default) |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_DEVICES = ("auto", "cpu", "cuda")
_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class Settings:
    """Where the pipeline reads and writes, and what it runs on."""

    var_dir: str
    lake_uri: str
    index_uri: str
    mlflow_tracking_uri: str
    mlflow_artifacts_uri: str
    spark_master: str
    device: str
    airflow_home: str

    def __post_init__(self) -> None:
        if not _DEVICE_RE.fullmatch(self.device):
            raise ValueError(f"EMB_DEVICE must be one of {_DEVICES} (optionally cuda:N), got {self.device!r}")
        for name in ("lake_uri", "index_uri", "mlflow_tracking_uri", "spark_master"):
            if not getattr(self, name):
                raise ValueError(f"setting {name} must not be empty")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default: ``os.environ``), filling in the embedded defaults."""
        env = os.environ if env is None else env
        var_dir = Path(env.get("EMB_VAR_DIR") or REPO_ROOT / "var").resolve()
        return cls(
            var_dir=str(var_dir),
            lake_uri=env.get("EMB_LAKE_URI") or str(var_dir / "lake"),
            index_uri=env.get("EMB_INDEX_URI") or str(var_dir / "indexes"),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{var_dir / 'mlflow.db'}",
            mlflow_artifacts_uri=env.get("EMB_MLFLOW_ARTIFACTS") or str(var_dir / "mlartifacts"),
            spark_master=env.get("EMB_SPARK_MASTER") or "local[*]",
            device=env.get("EMB_DEVICE") or "auto",
            airflow_home=env.get("AIRFLOW_HOME") or str(var_dir / "airflow"),
        )
