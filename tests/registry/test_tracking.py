"""Runs with lineage, metrics, the evaluation table and figures; a store that is down fails fast."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from embeddings.eval.metrics import RankingMetrics
from embeddings.lake import code_version
from embeddings.eval.plots import plot_loss_curves
from embeddings.eval.protocols import evaluation_table
from embeddings.registry.store import TrackingStoreUnavailable
from embeddings.registry.tracking import connect, flatten_params, lineage_tags, metric_key, start_run
from tests.registry.mlflow_store import store  # noqa: F401 - the fixture


def test_lineage_tags_read_the_airflow_context():
    env = {"AIRFLOW_CTX_DAG_ID": "nightly_embeddings", "AIRFLOW_CTX_DAG_RUN_ID": "scheduled__2026-01-31",
           "AIRFLOW_CTX_TRY_NUMBER": "2", "UNRELATED": "x"}
    tags = lineage_tags(ds="2026-01-31", input_manifests={"events": "/lake/events/m.json", "pins": "/lake/p/m.json"},
                        code_version="0.1.0+gabc123", env=env)
    assert tags == {
        "ds": "2026-01-31",
        "input.events": "/lake/events/m.json",
        "input.pins": "/lake/p/m.json",
        "code_version": "0.1.0+gabc123",
        "airflow.dag_id": "nightly_embeddings",
        "airflow.run_id": "scheduled__2026-01-31",
        "airflow.try_number": "2",
    }
    outside = lineage_tags(env={})  # outside Airflow: no airflow.* tags; the code version is always known
    assert outside == {"code_version": code_version()}


def test_metric_keys_and_flat_params():
    assert metric_key("test", "hr@10") == "test/hr_at_10"
    assert metric_key("eval", "item-kNN (k=50)", "ndcg@10") == "eval/item-kNN _k_50_/ndcg_at_10"

    @dataclass
    class Options:
        lr: float = 0.01
        layers: tuple = (2, 3)

    assert flatten_params({"model": {"dim": 8, "opts": Options()}, "seed": 1}) == {
        "model.dim": "8", "model.opts.lr": "0.01", "model.opts.layers": "(2, 3)", "seed": "1"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_fails_fast():
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingStoreUnavailable, match=rf"MLflow tracking store {uri} is unreachable: GET "
                                                       rf"{uri}/health failed within 2.0 s"):
        connect(uri, timeout_s=2.0)
    assert time.monotonic() - started < 10  # MLflow's own retries would take minutes


def test_an_unusable_sqlite_store_fails_fast(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    with pytest.raises(TrackingStoreUnavailable,
                       match="MLflow tracking store sqlite:///.*/a-file/mlflow.db is unreachable"):
        connect(uri)


def _result():
    ids = np.arange(4)
    return RankingMetrics("user next-save | full ranking over all pins, seen masked | t | ties pessimistic", ids,
                          {"hr@10": np.array([1.0, 0, 1, 0]), "mrr": np.array([1.0, 0.1, 0.5, 0.2])},
                          np.zeros(4), np.ones(4))


@pytest.mark.mlflow
def test_a_run_records_params_epochs_evaluation_figures_and_lineage(store, tmp_path):
    client, artifacts = store
    tags = lineage_tags(ds="2026-01-31", env={"AIRFLOW_CTX_DAG_ID": "nightly"})
    with start_run(client, "tracking-test", run_name="ds=2026-01-31", tags=tags, artifact_root=artifacts) as run:
        run.log_params({"model": {"embedding_dim": 8}, "lr": 0.01})
        for epoch, (loss, hr) in enumerate([(1.0, 0.1), (0.5, 0.3)]):
            run.log_epoch(epoch, {"train_loss": loss, "valid_hr@10": hr, "bad": float("nan")})
        run.log_evaluation(evaluation_table([("pinsage", "test", _result()), ("popularity", "test", _result())]))
        run.log_figure(plot_loss_curves({"train_loss": [1.0, 0.5]}, tmp_path / "loss.png"))
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["ds"] == "2026-01-31" and finished.data.tags["airflow.dag_id"] == "nightly"
    assert finished.data.params == {"model.embedding_dim": "8", "lr": "0.01"}
    history = client.get_metric_history(run.run_id, "valid_hr_at_10")
    assert [(m.step, m.value) for m in history] == [(0, 0.1), (1, 0.3)]
    assert "bad" not in finished.data.metrics
    assert finished.data.metrics["eval/pinsage/test/hr_at_10"] == 0.5
    assert finished.data.tags["eval.protocol.test"] == _result().protocol
    listed = {f.path for f in client.list_artifacts(run.run_id, "evaluation")}
    assert listed == {"evaluation/evaluation.csv", "evaluation/evaluation.json"}
    local = Path(client.download_artifacts(run.run_id, "evaluation/evaluation.json", str(tmp_path)))
    rows = json.loads(local.read_text())
    assert {r["protocol"] for r in rows} == {_result().protocol} and len(rows) == 4
    assert [f.path for f in client.list_artifacts(run.run_id, "plots")] == ["plots/loss.png"]


@pytest.mark.mlflow
def test_a_run_that_raises_ends_failed(store):
    client, artifacts = store
    with pytest.raises(RuntimeError, match="training diverged"):
        with start_run(client, "tracking-test", artifact_root=artifacts) as run:
            raise RuntimeError("training diverged")
    assert client.get_run(run.run_id).info.status == "FAILED"


@pytest.mark.mlflow
def test_log_evaluation_wants_the_table_format(store):
    import pandas as pd

    client, artifacts = store
    with start_run(client, "tracking-test", artifact_root=artifacts) as run:
        with pytest.raises(ValueError, match=r"evaluation table lacks columns \['protocol'\]"):
            run.log_evaluation(pd.DataFrame({"model": [], "split": [], "metric": [], "value": []}))
