"""The nightly embeddings DAG: orchestration only.

This file imports Airflow and the standard library alone (Airflow's "Top level Python Code" practice);
torch, pyspark and faiss are imported inside the processes the tasks start. Stages exchange data only
through the documented tables of the lake (docs/DATA.md), never through XCom.

Adding a stage: append a ``Stage`` to ``STAGES`` with its upstream stage names.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

DAG_ID = "nightly_embeddings"
REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable  # the environment that runs Airflow also runs the jobs

# Run types as Airflow writes them on a DagRun.
SCHEDULED, BACKFILL, MANUAL, ASSET_TRIGGERED = "scheduled", "backfill", "manual", "asset_triggered"


def partition_ds(run_type: str, logical_date: dt.datetime | None, requested_ds: str | None) -> str:
    """The partition ``ds`` (YYYY-MM-DD) a run processes.

    * scheduled and backfill runs: the UTC day that ended before the run's logical date (the DAG runs at
      02:00 UTC, so the run of 2026-11-22 02:00 processes ds=2026-11-21); a ``ds`` param that disagrees
      is an error rather than silently winning.
    * manual runs: the ``ds`` param when given, else the day before the logical date.

    Raises:
        ValueError: an unparseable ``ds`` param, a missing logical date, or a conflicting param.
    """
    requested = None
    if requested_ds not in (None, ""):
        try:
            requested = dt.date.fromisoformat(str(requested_ds)).isoformat()
        except ValueError:
            raise ValueError(f"ds param must be YYYY-MM-DD, got {requested_ds!r}") from None
    if run_type == MANUAL and requested is not None:
        return requested
    if logical_date is None:
        raise ValueError(f"a {run_type} run without a logical date needs an explicit ds param")
    utc = logical_date.astimezone(dt.timezone.utc) if logical_date.tzinfo else logical_date
    derived = (utc.date() - dt.timedelta(days=1)).isoformat()
    if requested is not None and requested != derived:
        raise ValueError(
            f"a {run_type} run with logical date {logical_date.isoformat()} processes ds={derived}; "
            f"the ds param {requested} is only honoured on manual runs"
        )
    return derived


def run_ds(dag_run, params) -> str:
    """Template macro: ``{{ run_ds(dag_run, params) }}``."""
    run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
    return partition_ds(str(run_type), dag_run.logical_date, (params or {}).get("ds"))


DS = "{{ run_ds(dag_run, params) }}"


@dataclass(frozen=True)
class Stage:
    """One task: a ``python -m jobs.<module>`` process or a ``spark-submit jobs/<module>.py``."""

    task_id: str
    module: str
    upstream: tuple[str, ...] = ()
    spark: bool = False
    timeout: dt.timedelta = dt.timedelta(hours=2)
    args: tuple[str, ...] = field(default=())


def _env_args(name: str) -> tuple[str, ...]:
    """Extra command-line arguments of a stage from the deployment's environment (e.g. a demo's epochs)."""
    return tuple(shlex.split(os.environ.get(name, "")))


# The time split of training and evaluation (docs/EVALUATION.md): the last TEST_DAYS days up to ds are the
# test slice, the VALID_DAYS before them the validation slice. The graph holds the test slice out by
# default, so that no evaluated save is inside a PPR neighborhood (EMB_GRAPH_HOLDOUT_DAYS=0 trades that
# for a fresher graph; the evaluation then records that the graph covers the test slice).
VALID_DAYS = os.environ.get("EMB_VALID_DAYS", "7")
TEST_DAYS = os.environ.get("EMB_TEST_DAYS", "7")
GRAPH_HOLDOUT_DAYS = os.environ.get("EMB_GRAPH_HOLDOUT_DAYS", TEST_DAYS)
SPLIT_ARGS = ("--valid-days", VALID_DAYS, "--test-days", TEST_DAYS)

STAGES: tuple[Stage, ...] = (
    Stage("validate_inputs", "jobs.validate_inputs", timeout=dt.timedelta(minutes=30)),
    Stage("build_features", "jobs.build_features", upstream=("validate_inputs",), timeout=dt.timedelta(hours=1)),
    Stage("build_graph", "jobs.build_graph", upstream=("validate_inputs",), spark=True,
          args=("--holdout-days", GRAPH_HOLDOUT_DAYS)),
    Stage("ppr_neighborhoods", "jobs.ppr_neighborhoods", upstream=("build_graph",), spark=True,
          timeout=dt.timedelta(hours=3)),
    Stage("train_pinsage", "jobs.train_pinsage", upstream=("build_features", "ppr_neighborhoods"),
          timeout=dt.timedelta(hours=8), args=(*SPLIT_ARGS, *_env_args("EMB_PINSAGE_TRAIN_ARGS"))),
    Stage("evaluate_pinsage", "jobs.evaluate_pinsage", upstream=("train_pinsage",),
          args=(*SPLIT_ARGS, *_env_args("EMB_PINSAGE_EVAL_ARGS"))),
    Stage("infer_pinsage", "jobs.infer_pinsage", upstream=("evaluate_pinsage",)),
    Stage("pinnersage", "jobs.pinnersage", upstream=("infer_pinsage",), spark=True),
    Stage("evaluate_pinnersage", "jobs.evaluate_pinnersage", upstream=("pinnersage",),
          timeout=dt.timedelta(hours=1), args=(*SPLIT_ARGS, *_env_args("EMB_PINNERSAGE_EVAL_ARGS"))),
    # PinnerFormer: sequences (Spark) -> train on the champion PinSage's pin_embeddings -> evaluate/promote ->
    # embed users and pins with whichever version is the champion.
    Stage("build_sequences", "jobs.build_sequences", upstream=("validate_inputs",), spark=True,
          args=_env_args("EMB_SEQUENCES_ARGS")),
    Stage("train_pinnerformer", "jobs.train_pinnerformer", upstream=("build_sequences", "infer_pinsage"),
          timeout=dt.timedelta(hours=8), args=_env_args("EMB_PINNERFORMER_TRAIN_ARGS")),
    Stage("evaluate_pinnerformer", "jobs.evaluate_pinnerformer", upstream=("train_pinnerformer",),
          timeout=dt.timedelta(hours=1), args=_env_args("EMB_PINNERFORMER_EVAL_ARGS")),
    Stage("infer_pinnerformer", "jobs.infer_pinnerformer", upstream=("evaluate_pinnerformer",),
          args=_env_args("EMB_PINNERFORMER_INFER_ARGS")),
    # Publishing last: validated, gated faiss HNSW indexes, each space's CURRENT switched atomically. The
    # PinSage index waits for the medoids the retrieval service pairs with it (same ds, same PinSage version).
    Stage("publish_pinsage_index", "jobs.publish_index", upstream=("infer_pinsage", "pinnersage"),
          args=("--space", "pinsage", *_env_args("EMB_PUBLISH_INDEX_ARGS"))),
    Stage("publish_pinnerformer_index", "jobs.publish_index", upstream=("infer_pinnerformer",),
          args=("--space", "pinnerformer", *_env_args("EMB_PUBLISH_INDEX_ARGS"))),
)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _operator(stage: Stage):
    args = ["--ds", DS, *stage.args]
    if stage.spark:
        return SparkSubmitOperator(
            task_id=stage.task_id,
            application=str(REPO_ROOT / (stage.module.replace(".", "/") + ".py")),
            application_args=args,
            conn_id="spark_default",
            name=f"{DAG_ID}.{stage.task_id}",
            driver_memory=os.environ.get("EMB_SPARK_DRIVER_MEMORY", "4g"),
            conf={
                "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", PYTHON),
                "spark.sql.session.timeZone": "UTC",
            },
            env_vars={"PYTHONPATH": str(REPO_ROOT)},
            execution_timeout=stage.timeout,
            do_xcom_push=False,
        )
    command = " ".join([shlex.quote(PYTHON), "-m", stage.module, "--ds", DS, *map(shlex.quote, stage.args)])
    return BashOperator(
        task_id=stage.task_id,
        bash_command=command,
        cwd=str(REPO_ROOT),
        append_env=True,
        do_xcom_push=False,  # stages exchange data through the lake only
        execution_timeout=stage.timeout,
    )


with DAG(
    dag_id=DAG_ID,
    description="Nightly: validate inputs, content features, pin-board graph and PPR neighborhoods (Spark), "
    "PinSage train -> evaluate/promote -> infer with the champion -> PinnerSage user medoids (Spark) -> evaluated; "
    "PinnerFormer sequences (Spark) -> train -> evaluate/promote -> infer with the champion; "
    "faiss HNSW indexes of both pin spaces gated and published last.",
    schedule="0 2 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["embeddings", "nightly"],
    params={"ds": Param(None, type=["null", "string"], description="YYYY-MM-DD; manual runs only")},
    user_defined_macros={"run_ds": run_ds},
    default_args={
        "owner": "embeddings",
        "retries": _env_int("EMB_TASK_RETRIES", 2),
        "retry_delay": dt.timedelta(minutes=_env_int("EMB_TASK_RETRY_DELAY_MIN", 5)),
        "execution_timeout": dt.timedelta(hours=2),
    },
    doc_md=__doc__
    + """
### What a run does
Each run processes one partition `ds` (the UTC day that just ended; a `ds` param on manual runs).
`validate_inputs` checks the raw `events` partition and the `pins`/`boards` snapshots against the data
contract and stops the run on bad input; later stages write ds-partitioned tables with manifests.
`train_pinsage` registers a new `pinsage` version in MLflow (alias `challenger`), `evaluate_pinsage`
compares it with the champion and the baselines and moves `champion` only on a gain beyond noise, and
`infer_pinsage` writes `pin_embeddings` with whichever version is the champion. PinnerSage clusters
each user's engaged pins on those embeddings. PinnerFormer follows the same pattern: `build_sequences`
writes the users' timelines, `train_pinnerformer` registers a `pinnerformer` challenger trained on the
PinSage champion's `pin_embeddings`, `evaluate_pinnerformer` promotes it only beyond noise, and
`infer_pinnerformer` embeds users and pins with the champion (refusing a PinSage version it was not
trained on). Last, `publish_pinsage_index` and `publish_pinnerformer_index` build a faiss HNSW index of each
pin space, gate it (recall@10 against exact search, queries per second, sanity checks), publish it as an
immutable version and switch the space's `CURRENT` pointer, which the retrieval service (`python -m
jobs.serve`) follows. See README.md, docs/DATA.md, docs/PINSAGE.md, docs/PINNERSAGE.md, docs/PINNERFORMER.md
and docs/INDEX.md.
""",
) as dag:
    tasks = {stage.task_id: _operator(stage) for stage in STAGES}
    for stage in STAGES:
        for upstream in stage.upstream:
            tasks[upstream] >> tasks[stage.task_id]
