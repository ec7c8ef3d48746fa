"""The nightly DAG's structure and its ds derivation (no scheduler, no run)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from dags.nightly_embeddings import BACKFILL, MANUAL, SCHEDULED, STAGES, partition_ds, run_ds

UTC = dt.timezone.utc


@pytest.mark.parametrize(
    ("run_type", "logical_date", "param", "expected"),
    [
        # A scheduled run fires at 02:00 UTC and processes the day that just ended.
        (SCHEDULED, dt.datetime(2026, 11, 22, 2, 0, tzinfo=UTC), None, "2026-11-21"),
        (SCHEDULED, dt.datetime(2026, 1, 1, 2, 0, tzinfo=UTC), None, "2025-12-31"),
        # A logical date in another zone is converted to UTC first.
        (SCHEDULED, dt.datetime(2026, 11, 22, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=3))), None, "2026-11-20"),
        # Backfill runs have the logical dates scheduled runs would have had.
        (BACKFILL, dt.datetime(2026, 3, 1, 2, 0, tzinfo=UTC), None, "2026-02-28"),
        (BACKFILL, dt.datetime(2026, 3, 1, 2, 0, tzinfo=UTC), "2026-02-28", "2026-02-28"),
        # Manual runs take the ds param, or the day before their logical date.
        (MANUAL, dt.datetime(2026, 11, 22, 14, 7, tzinfo=UTC), "2026-10-03", "2026-10-03"),
        (MANUAL, dt.datetime(2026, 11, 22, 14, 7, tzinfo=UTC), None, "2026-11-21"),
        (MANUAL, dt.datetime(2026, 11, 22, 14, 7, tzinfo=UTC), "", "2026-11-21"),
        (MANUAL, None, "2026-10-03", "2026-10-03"),
    ],
)
def test_partition_ds_table(run_type, logical_date, param, expected):
    assert partition_ds(run_type, logical_date, param) == expected


def test_partition_ds_rejects_bad_or_conflicting_params():
    with pytest.raises(ValueError, match="ds param must be YYYY-MM-DD, got '2026-13-01'"):
        partition_ds(MANUAL, None, "2026-13-01")
    with pytest.raises(ValueError, match="processes ds=2026-02-28; the ds param 2026-01-01 is only honoured on manual"):
        partition_ds(BACKFILL, dt.datetime(2026, 3, 1, 2, tzinfo=UTC), "2026-01-01")
    with pytest.raises(ValueError, match="a manual run without a logical date needs an explicit ds param"):
        partition_ds(MANUAL, None, None)


def test_run_ds_macro_reads_the_dag_run():
    class RunType:  # Airflow passes an enum whose .value is the string
        value = "scheduled"

    dag_run = SimpleNamespace(run_type=RunType(), logical_date=dt.datetime(2026, 5, 2, 2, tzinfo=UTC))
    assert run_ds(dag_run, {"ds": None}) == "2026-05-01"
    assert run_ds(SimpleNamespace(run_type="manual", logical_date=None), {"ds": "2026-04-04"}) == "2026-04-04"


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO_ROOT

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags["nightly_embeddings"]


def test_dag_parses_with_expected_tasks_and_edges(dag):
    assert {t.task_id for t in dag.tasks} == {s.task_id for s in STAGES}
    for stage in STAGES:
        task = dag.get_task(stage.task_id)
        assert task.upstream_task_ids == set(stage.upstream), stage.task_id
    assert dag.get_task("validate_inputs").upstream_task_ids == set()
    # every other stage runs after validation, directly or not
    for stage in STAGES[1:]:
        assert "validate_inputs" in dag.get_task(stage.task_id).get_flat_relative_ids(upstream=True)


def test_pinnersage_runs_after_inference_and_is_evaluated_after(dag):
    assert dag.get_task("pinnersage").upstream_task_ids == {"infer_pinsage"}
    evaluate = dag.get_task("evaluate_pinnersage")
    assert evaluate.upstream_task_ids == {"pinnersage"}
    assert evaluate.downstream_task_ids == set()
    assert "-m jobs.evaluate_pinnersage" in evaluate.bash_command
    assert "--valid-days 7 --test-days 7" in evaluate.bash_command  # the nightly split, as PinSage's


def test_pinnerformer_chain_trains_on_the_pinsage_champion_and_serves_the_champion(dag):
    assert dag.get_task("build_sequences").upstream_task_ids == {"validate_inputs"}
    assert dag.get_task("train_pinnerformer").upstream_task_ids == {"build_sequences", "infer_pinsage"}
    assert dag.get_task("evaluate_pinnerformer").upstream_task_ids == {"train_pinnerformer"}
    infer = dag.get_task("infer_pinnerformer")
    assert infer.upstream_task_ids == {"evaluate_pinnerformer"}
    assert infer.downstream_task_ids == {"publish_pinnerformer_index"}
    assert "-m jobs.infer_pinnerformer" in infer.bash_command


def test_publishing_is_last_and_waits_for_what_the_service_pairs_with_each_index(dag):
    pinsage = dag.get_task("publish_pinsage_index")
    assert pinsage.upstream_task_ids == {"infer_pinsage", "pinnersage"}  # medoids of the same PinSage version
    assert "-m jobs.publish_index" in pinsage.bash_command and "--space pinsage" in pinsage.bash_command
    pinnerformer = dag.get_task("publish_pinnerformer_index")
    assert pinnerformer.upstream_task_ids == {"infer_pinnerformer"}
    assert "--space pinnerformer" in pinnerformer.bash_command
    assert {t.task_id for t in dag.tasks if not t.downstream_task_ids} == {
        "evaluate_pinnersage", "publish_pinsage_index", "publish_pinnerformer_index"}


def test_dag_settings(dag):
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert "nightly" in dag.tags
    assert dag.doc_md and "validate_inputs" in dag.doc_md
    assert dag.timetable.expression == "0 2 * * *"  # CronTriggerTimetable: logical date = trigger time
    for task in dag.tasks:
        assert task.execution_timeout is not None and task.execution_timeout > dt.timedelta(0), task.task_id
        assert task.retry_delay is not None
        assert task.do_xcom_push is False, f"{task.task_id} must not exchange data through XCom"


def test_dag_retries_come_from_the_environment(dag):
    # conftest sets EMB_TASK_RETRIES=0 so failing test runs end quickly; production default is 2
    assert {t.retries for t in dag.tasks} == {0}


def test_every_task_passes_the_derived_ds(dag):
    for task in dag.tasks:
        args = getattr(task, "bash_command", None) or " ".join(getattr(task, "application_args", []) or [])
        assert "--ds {{ run_ds(dag_run, params) }}" in args, task.task_id


def test_dag_file_imports_only_airflow_and_stdlib():
    import ast
    import sys

    from tests.conftest import REPO_ROOT

    tree = ast.parse((REPO_ROOT / "dags" / "nightly_embeddings.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"airflow", "__future__"}
    assert roots <= allowed, roots - allowed
