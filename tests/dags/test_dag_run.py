"""One real `airflow dags test` of the nightly DAG on tiny synthetic data, and one on bad input."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.slow]

DS = "2026-03-10"
LOGICAL_DATE = "2026-03-11T02:00:00+00:00"


def _env(tmp_path: Path, lake_uri: str) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EMB_", "MLFLOW"))}
    env.update(
        PATH=f"{venv_bin}:{env['PATH']}",
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO_ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": "local[2]"}),
        EMB_VAR_DIR=str(tmp_path / "var"),
        EMB_LAKE_URI=lake_uri,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        EMB_TASK_RETRIES="0",
        EMB_SPARK_DRIVER_MEMORY="1g",
        # 14 tiny days: 8 train, 3 valid, 3 test (held out of the graph); a small, short PinSage.
        EMB_VALID_DAYS="3",
        EMB_TEST_DAYS="3",
        EMB_PINSAGE_TRAIN_ARGS="--num-epochs 2 --hidden-dim 32 --embedding-dim 32 --num-workers 0",
        EMB_PINNERSAGE_EVAL_ARGS="--alphas 0.9 1.2 --kmeans-ks 2 --ci-samples 20",
        # PinnerFormer: a 3-day future window of the 14 days, a small model, 2 epochs.
        EMB_SEQUENCES_ARGS="--label-days 3 --shuffle-partitions 4",
        EMB_PINNERFORMER_TRAIN_ARGS="--num-epochs 2 --model-dim 32 --embedding-dim 32 --ff-dim 32 --max-length 32",
        EMB_PINNERFORMER_EVAL_ARGS="--max-users 300 --ci-samples 20",
        PYSPARK_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
    )
    return env


def _airflow(env: dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
    )


def _task_states(env: dict[str, str]) -> dict[str, str]:
    runs = _airflow(env, "dags", "list-runs", "nightly_embeddings", "-o", "json")
    run_id = json.loads(next(l for l in runs.stdout.splitlines() if l.startswith("[")))[0]["run_id"]
    out = _airflow(env, "tasks", "states-for-dag-run", "nightly_embeddings", run_id, "-o", "json")
    return {t["task_id"]: t["state"] for t in json.loads(next(l for l in out.stdout.splitlines() if l.startswith("[")))}


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    from jobs.generate_synthetic import GenerateSyntheticConfig, run

    tmp_path = tmp_path_factory.mktemp("dagrun")
    lake_uri = str(tmp_path / "lake")
    run(GenerateSyntheticConfig(lake_uri=lake_uri, ds=dt.date.fromisoformat(DS), scale="tiny"))
    env = _airflow_env = _env(tmp_path, lake_uri)
    migrated = _airflow(env, "db", "migrate", timeout=300)
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    return _airflow_env, lake_uri


def test_nightly_dag_runs_end_to_end(airflow_env):
    from dags.nightly_embeddings import STAGES
    from embeddings.data.schemas import GRAPH_CSR, PIN_EMBEDDINGS, PIN_FEATURES, USER_MEDOIDS
    from embeddings.lake import Lake

    env, lake_uri = airflow_env
    result = _airflow(env, "dags", "test", "nightly_embeddings", LOGICAL_DATE, "-c", json.dumps({"ds": DS}))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    states = _task_states(env)
    assert states == {s.task_id: "success" for s in STAGES}, log[-5000:]
    lake = Lake(lake_uri)
    assert lake.read_manifest(PIN_FEATURES, DS).row_count > 0
    # the graph held the test slice out, and the embeddings come from the registry's champion
    assert lake.read_manifest(GRAPH_CSR, DS).extra["holdout_days"] == 3
    embeddings = lake.read_manifest(PIN_EMBEDDINGS, DS)
    assert embeddings.row_count == lake.read_manifest(PIN_FEATURES, DS).row_count
    assert embeddings.extra["model_version"] == "pinsage/1"
    medoids = lake.read_manifest(USER_MEDOIDS, DS)
    assert medoids.row_count > 0 and medoids.extra["pinsage_model_version"] == "pinsage/1"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert client.get_registered_model("pinsage").aliases == {"challenger": 1, "champion": 1}
    version = client.get_model_version("pinsage", "1")
    assert version.tags["ds"] == DS and version.tags["airflow.dag_id"] == "nightly_embeddings"
    assert version.tags["promotion.decision"] == "promoted"
    run = client.get_run(version.run_id)
    assert "eval/pinsage challenger v1/test/ndcg_at_10" in run.data.metrics
    assert any(m.startswith("eval/item_knn/test/") for m in run.data.metrics)
    # PinnerSage's nightly evaluation: one run for the day, with its tables and the job's counts
    pinnersage_runs = client.search_runs([client.get_experiment_by_name("pinnersage").experiment_id],
                                         filter_string=f"tags.ds = '{DS}'")
    assert len(pinnersage_runs) == 1
    ps_run = pinnersage_runs[0]
    assert ps_run.data.tags["airflow.dag_id"] == "nightly_embeddings"
    assert ps_run.data.metrics["job/users"] > 0 and "spearman_clusters_vs_planted_interests" in ps_run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(ps_run.info.run_id, "evaluation")}
    assert "evaluation/ablation.csv" in artifacts
    # PinnerFormer: trained on the PinSage champion's embeddings, promoted (the first version), served
    from embeddings.data.schemas import PINNERFORMER_PIN_EMBEDDINGS, PINNERFORMER_USER_EMBEDDINGS, USER_SEQUENCES

    assert lake.read_manifest(USER_SEQUENCES, DS).row_count > 0
    assert client.get_registered_model("pinnerformer").aliases == {"challenger": 1, "champion": 1}
    pf_version = client.get_model_version("pinnerformer", "1")
    assert pf_version.tags["pinsage_model_version"] == "pinsage/1"
    assert pf_version.tags["promotion.decision"] == "promoted"
    users = lake.read_manifest(PINNERFORMER_USER_EMBEDDINGS, DS)
    assert users.row_count > 0
    assert lake.read_manifest(PINNERFORMER_PIN_EMBEDDINGS, DS).row_count == embeddings.row_count

    # Indexes: both spaces gated and published, CURRENT at today's version, served by the retrieval service.
    from embeddings.index.publish import IndexStore
    from embeddings.retrieval.service import Retriever

    index_uri = env["EMB_VAR_DIR"] + "/indexes"
    store = IndexStore(index_uri)
    for space, model_version in (("pinsage", "pinsage/1"), ("pinnerformer", "pinnerformer/1")):
        manifest = store.read_manifest(store.current(space))
        assert manifest["ds"] == DS and manifest["model_version"] == model_version
        assert manifest["gate"]["passed"] and manifest["gate"]["recall"] >= 0.95
        assert manifest["run_id"].startswith("manual__")  # the Airflow run id names the version
    index_runs = client.search_runs([client.get_experiment_by_name("indexes").experiment_id])
    assert {r.data.tags["index.space"] for r in index_runs} == {"pinsage", "pinnerformer"}
    retriever = Retriever(index_uri, lake_uri)
    assert retriever.reload() and retriever.health()["refused"] == {}
    some_pin = int(lake.read(PIN_EMBEDDINGS, DS, columns=["pin_id"])["pin_id"][0].as_py())
    assert len(retriever.related_pins(some_pin, k=5)["results"]) == 5
    some_user = int(lake.read(PINNERFORMER_USER_EMBEDDINGS, DS, columns=["user_id"])["user_id"][0].as_py())
    assert retriever.user_pins(some_user, k=5)["fallback"] is None


def test_bad_input_stops_the_run_before_any_stage(airflow_env, tmp_path):
    from embeddings.data.schemas import EVENTS, PIN_FEATURES
    from embeddings.lake import Lake

    env, lake_uri = airflow_env
    lake = Lake(lake_uri)
    bad_ds = "2026-03-09"
    published = lake.read_manifest(PIN_FEATURES, bad_ds) if lake.exists(PIN_FEATURES, bad_ds) else None
    events = lake.read(EVENTS, bad_ds)
    actions = events.column("action").to_pylist()
    actions[0] = "repin"  # not in the closed set
    lake.write(EVENTS, events.set_column(events.schema.get_field_index("action"), "action", pa.array(actions)), bad_ds)

    result = _airflow(env, "dags", "test", "nightly_embeddings", "2026-03-10T02:00:00+00:00",
                      "-c", json.dumps({"ds": bad_ds}))
    log = result.stdout + result.stderr
    assert "unknown action values ['repin']" in log, log[-5000:]
    assert f"table events (ds={bad_ds})" in log
    states = _task_states(env)
    assert states["validate_inputs"] == "failed"
    assert all(state in ("upstream_failed", None) for task, state in states.items() if task != "validate_inputs"), states
    # nothing downstream ran, so nothing was written for that day
    assert (lake.read_manifest(PIN_FEATURES, bad_ds) if lake.exists(PIN_FEATURES, bad_ds) else None) == published
