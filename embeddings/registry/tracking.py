"""Experiment tracking: one MLflow experiment per model, one run per training, with lineage.

Every run records its parameters, per-epoch metrics, the evaluation table (every number with its
protocol), figures, and lineage tags: the ds, the input partitions' manifests, the code version, and the
Airflow dag/run/try ids when the task runs under Airflow. The same lineage goes onto the registered model
version (``embeddings.registry.models.register_version``).

The MLflow client is created once per process by ``connect`` (which fails fast on an unreachable store,
before any training) and passed in everywhere; nothing here uses MLflow's global "active run".
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from embeddings.lake import code_version as lake_code_version
from embeddings.registry.store import TrackingStoreUnavailable, check_tracking_store

log = logging.getLogger(__name__)

AIRFLOW_ENV_TAGS = {
    "AIRFLOW_CTX_DAG_ID": "airflow.dag_id",
    "AIRFLOW_CTX_DAG_RUN_ID": "airflow.run_id",
    "AIRFLOW_CTX_TRY_NUMBER": "airflow.try_number",
    "AIRFLOW_CTX_TASK_ID": "airflow.task_id",
}
EVALUATION_DIR = "evaluation"
PLOTS_DIR = "plots"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
_MAX_BATCH = 100  # params/tags per log_batch call


def connect(tracking_uri: str, registry_uri: str | None = None, *, timeout_s: float = 10.0) -> MlflowClient:
    """A client for the store, after checking that the store answers (call it before training).

    An HTTP(S) server is probed once at ``/health`` with ``timeout_s`` and no retries (MLflow's own client
    retries for minutes); then the store is opened and its experiments listed (``check_tracking_store``,
    which also creates the schema of an embedded SQLite store).

    Args:
        tracking_uri: e.g. ``sqlite:///var/mlflow.db`` or ``http://127.0.0.1:5000``.
        registry_uri: the model registry (default: the tracking store).
        timeout_s: the HTTP probe's timeout.

    Raises:
        TrackingStoreUnavailable: naming the URI and the cause.
    """
    if tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http(s) only
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TrackingStoreUnavailable(
                f"MLflow tracking store {tracking_uri} is unreachable: GET {url} failed within {timeout_s} s "
                f"({exc}); failing before any training"
            ) from exc
    check_tracking_store(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


def lineage_tags(
    *,
    ds: str | None = None,
    input_manifests: Mapping[str, str] | None = None,
    code_version: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The lineage of a run (and of the model version it produces) as MLflow tags.

    Args:
        ds: the partition date trained on.
        input_manifests: input name -> where its manifest is (or a fingerprint), e.g.
            ``{"pin_features": "/lake/pin_features/ds=2026-01-31/_manifest.json"}``.
        code_version: package version + git commit (default: ``embeddings.lake.code_version()``).
        env: where to read the Airflow context (default ``os.environ``): ``AIRFLOW_CTX_DAG_ID``,
            ``AIRFLOW_CTX_DAG_RUN_ID``, ``AIRFLOW_CTX_TRY_NUMBER`` (and ``AIRFLOW_CTX_TASK_ID``), present
            when the task runs under Airflow.

    Returns:
        ``{"ds": ..., "input.<name>": ..., "code_version": ..., "airflow.dag_id": ..., ...}`` (only what is known).
    """
    env = os.environ if env is None else env
    tags: dict[str, str] = {}
    if ds:
        tags["ds"] = str(ds)
    for name, manifest in sorted((input_manifests or {}).items()):
        tags[f"input.{name}"] = str(manifest)
    tags["code_version"] = code_version or lake_code_version()
    for variable, tag in AIRFLOW_ENV_TAGS.items():
        if env.get(variable):
            tags[tag] = env[variable]
    return tags


def metric_key(*parts: str) -> str:
    """An MLflow metric key from readable parts: ``("test", "hr@10") -> "test/hr_at_10"``.

    MLflow keys allow letters, digits, ``_ - . / :`` and spaces; ``@`` becomes ``_at_``, anything else ``_``.
    """
    key = "/".join(p for p in parts if p)
    key = key.replace("@", "_at_")
    return re.sub(r"[^\w\-./ :]", "_", key)


def flatten_params(params: Mapping[str, Any] | Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts and dataclasses as ``{"a.b": "value"}`` strings (values cut to MLflow's 6000 chars)."""
    if is_dataclass(params) and not isinstance(params, type):
        params = asdict(params)
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        if isinstance(value, Mapping):
            out.update(flatten_params(value, prefix=f"{name}."))
        else:
            out[name] = str(value)[:_MAX_PARAM_LENGTH]
    return out


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of the experiment ``name`` (one per model: ``pinsage``, ``pinnersage``, ...), created if new."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


@dataclass(frozen=True)
class TrackedRun:
    """An open MLflow run and the client that writes to it."""

    client: MlflowClient
    run_id: str
    experiment_id: str

    def set_tags(self, tags: Mapping[str, str]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for start in range(0, len(items), _MAX_BATCH):
            self.client.log_batch(self.run_id, tags=items[start:start + _MAX_BATCH])

    def log_params(self, params: Mapping[str, Any] | Any) -> None:
        """Parameters (nested dicts/dataclasses flattened to ``a.b``)."""
        items = [Param(k, v) for k, v in flatten_params(params).items()]
        for start in range(0, len(items), _MAX_BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + _MAX_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, prefix: str = "") -> None:
        """Finite metrics (NaN/Inf are skipped with a warning); keys pass through ``metric_key``."""
        now = int(time.time() * 1000)
        items = []
        for name, value in metrics.items():
            value = float(value)
            if not math.isfinite(value):
                log.warning("not logging metric %s=%s (not finite) to run %s", name, value, self.run_id)
                continue
            items.append(Metric(metric_key(prefix, name), value, now, step or 0))
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Per-epoch metrics (``train_loss``, ``valid_hr@10``, ...) with ``step=epoch``."""
        self.log_metrics(metrics, step=epoch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_figure(self, path: str | Path) -> None:
        """A PNG written by ``embeddings.eval.plots`` (under ``plots/``)."""
        self.log_artifact(path, PLOTS_DIR)

    def log_evaluation(self, table: pd.DataFrame, name: str = "evaluation") -> None:
        """The evaluation table (``embeddings.eval.protocols.evaluation_table``).

        Writes ``evaluation/<name>.csv`` and ``.json`` (every row with its protocol), logs each row as the
        metric ``eval/<model>/<split>/<metric>``, and tags the run ``eval.protocol.<split>`` with the
        protocols used, so that no metric in the UI is separated from how it was measured.
        """
        required = {"model", "split", "metric", "value", "protocol"}
        if missing := required - set(table.columns):
            raise ValueError(f"evaluation table lacks columns {sorted(missing)}; build it with evaluation_table()")
        with tempfile.TemporaryDirectory() as tmp:
            table.to_csv(Path(tmp) / f"{name}.csv", index=False)
            (Path(tmp) / f"{name}.json").write_text(table.to_json(orient="records", indent=2))
            self.client.log_artifacts(self.run_id, tmp, EVALUATION_DIR)
        self.log_metrics({metric_key("eval", r.model, r.split, r.metric): r.value for r in table.itertuples()})
        protocols: dict[str, list[str]] = {}
        for r in table.itertuples():
            protocols.setdefault(r.split, [])
            if r.protocol not in protocols[r.split]:
                protocols[r.split].append(r.protocol)
        self.set_tags({f"eval.protocol.{split}": json.dumps(p) if len(p) > 1 else p[0]
                       for split, p in protocols.items()})


@contextlib.contextmanager
def start_run(
    client: MlflowClient,
    experiment_name: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    artifact_root: str | None = None,
) -> Iterator[TrackedRun]:
    """Open a run in the experiment (created if new); it ends FINISHED, or FAILED if the block raises.

    Args:
        client: from ``connect``.
        experiment_name: one per model.
        run_name: e.g. ``f"pinsage ds={ds}"``.
        tags: lineage (``lineage_tags``) and anything else.
        artifact_root: where a new experiment keeps its artifacts, as ``<artifact_root>/<experiment_name>``
            (``Settings.mlflow_artifacts_uri``). None leaves it to the store: a tracking server's default
            artifact root, but ``./mlruns`` of the working directory for a SQLite store.
    """
    location = f"{artifact_root.rstrip('/')}/{experiment_name}" if artifact_root else None
    experiment_id = get_or_create_experiment(client, experiment_name, location)
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
    tracked = TrackedRun(client, run.info.run_id, experiment_id)
    log.info("MLflow run %s started in experiment %s (%s)", tracked.run_id, experiment_name, experiment_id)
    try:
        yield tracked
    except BaseException:
        client.set_terminated(tracked.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(tracked.run_id, RunStatus.to_string(RunStatus.FINISHED))

