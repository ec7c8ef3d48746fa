"""The production configuration's stores, for real: Airflow metadata and the MLflow registry on the
PostgreSQL server at 127.0.0.1:5432 (trust auth), each in a throwaway database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


@pytest.fixture
def database():
    import psycopg2

    name = f"emb_test_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


def test_airflow_metadata_on_postgres(database, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=database,
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO_ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        done = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    listed = subprocess.run([airflow, "dags", "list"], env=env, capture_output=True, text=True, timeout=300)
    assert "nightly_embeddings" in listed.stdout
    errors = subprocess.run([airflow, "dags", "list-import-errors"], env=env, capture_output=True, text=True, timeout=300)
    assert "No data found" in errors.stdout + errors.stderr


def test_mlflow_registry_on_postgres(database, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = database  # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3; name the installed driver
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("pinsage-test", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "embedding_dim", 256)
    client.log_metric(run.info.run_id, "hr_at_10", 0.25)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    client.create_registered_model("pinsage")
    version = client.create_model_version("pinsage", str(model_dir), run_id=run.info.run_id)
    client.set_registered_model_alias("pinsage", "champion", version.version)
    champion = client.get_model_version_by_alias("pinsage", "champion")
    assert champion.version == version.version and champion.source == str(model_dir)
    assert client.get_run(run.info.run_id).data.metrics["hr_at_10"] == 0.25
