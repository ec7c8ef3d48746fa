"""jobs.evaluate_pinnersage on a tiny synthetic lake, logging to a real SQLite MLflow store in tmp_path."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from embeddings.data.schemas import (
    EVENTS,
    PIN_EMBEDDINGS,
    SYNTHETIC_PIN_TOPICS,
    SYNTHETIC_USER_INTERESTS,
    SYNTHETIC_USERS,
    USER_MEDOIDS,
)
from embeddings.lake import Lake, PartitionMissingError

pytestmark = [pytest.mark.mlflow]

DS = dt.date(2026, 1, 20)
WINDOW_DAYS = 20
NUM_TOPICS, PINS_PER_TOPIC, DIM = 4, 12, 8
NUM_USERS = 12
JOB_PARAMS = {"window_days": WINDOW_DAYS, "alpha": 1.0, "lam": 0.01, "max_actions": 500, "top_k": 20}
METHODS = {"pinnersage", "pinnersage_centroid", "pinnersage_max", "pinnersage_sum", "pinnersage_round_robin",
           "last_pin", "decayed_average", "kmeans"}


def pin_id(topic: int, j: int) -> int:
    return 1000 + topic * PINS_PER_TOPIC + j


def build_lake(path) -> Lake:
    """Topics are orthogonal directions (e0..e3, small noise in e4..e7); user u holds u % 3 + 1 topics
    (``synthetic_user_interests`` of every day) and saves one pin a day from one of them, for every day of the
    window."""
    rng = np.random.default_rng(0)
    lake = Lake(str(path))
    ids, vectors, topics = [], [], []
    for t in range(NUM_TOPICS):
        for j in range(PINS_PER_TOPIC):
            v = np.zeros(DIM, np.float32)
            v[t] = 1.0
            v[4:] = 0.15 * rng.standard_normal(4)
            ids.append(pin_id(t, j)), vectors.append((v / np.linalg.norm(v)).tolist()), topics.append(t)
    lake.write(PIN_EMBEDDINGS, pa.table({"pin_id": ids, "embedding": vectors,
                                         "model_version": ["pinsage/1"] * len(ids)}), DS)
    lake.write(SYNTHETIC_PIN_TOPICS, pa.table({"pin_id": ids, "primary_topic": topics,
                                               "topics": [[t] for t in topics], "weights": [[1.0]] * len(ids)}))
    interests = {u: [(u + k) % NUM_TOPICS for k in range(u % 3 + 1)] for u in range(NUM_USERS)}
    lake.write(SYNTHETIC_USERS, pa.table({"user_id": list(range(NUM_USERS)),
                                          "num_interests": [len(interests[u]) for u in range(NUM_USERS)],
                                          "activity": [1.0] * NUM_USERS}))
    start = DS - dt.timedelta(days=WINDOW_DAYS - 1)
    for d in range(WINDOW_DAYS):
        day = start + dt.timedelta(days=d)
        rows = []
        for u in range(NUM_USERS):
            topic = interests[u][d % len(interests[u])]
            for k in range(2):
                rows.append({"user_id": u, "pin_id": pin_id(topic, int(rng.integers(PINS_PER_TOPIC))),
                             "board_id": 1, "action": "save",
                             "ts": dt.datetime.combine(day, dt.time(8 + k), dt.timezone.utc),
                             "duration_ms": None, "surface": "home"})
        lake.write(EVENTS, pa.Table.from_pylist(rows, schema=EVENTS.schema), day)
        lake.write(SYNTHETIC_USER_INTERESTS, pa.table(
            {"user_id": [u for u in range(NUM_USERS) for _ in interests[u]],
             "topic": [t for u in range(NUM_USERS) for t in interests[u]],
             "weight": [1.0 / len(interests[u]) for u in range(NUM_USERS) for _ in interests[u]]},
            schema=SYNTHETIC_USER_INTERESTS.schema), day)
    return lake


def write_user_medoids(lake: Lake) -> None:
    """A ``user_medoids`` partition as jobs.pinnersage writes it (one row per user suffices here)."""
    users = list(range(NUM_USERS))
    clusters = [u % 3 + 1 for u in users]
    table = pa.table({
        "user_id": users, "rank": [1] * NUM_USERS, "medoid_pin_id": [pin_id(u % NUM_TOPICS, 0) for u in users],
        "importance": [1.0] * NUM_USERS, "cluster_size": [3] * NUM_USERS, "num_cluster_actions": [3] * NUM_USERS,
        "num_clusters": clusters, "num_actions": [2 * WINDOW_DAYS] * NUM_USERS, "capped": [False] * NUM_USERS,
        "pinsage_model_version": ["pinsage/1"] * NUM_USERS, "computed_ds": [DS] * NUM_USERS,
    })
    lake.write(USER_MEDOIDS, table, DS, extra={
        "users": NUM_USERS, "users_by_num_clusters": {"1": 4, "2": 4, "3-4": 4}, "users_capped": 0,
        "actions_without_embedding": 0, "users_skipped_no_embedding": 0, "users_carried_over": 0,
        "users_recomputed": NUM_USERS, "pinsage_model_version": "pinsage/1", "params": JOB_PARAMS,
    })


def config(tmp_path, **overrides):
    from jobs.evaluate_pinnersage import EvaluatePinnerSageConfig

    values = dict(lake_uri=str(tmp_path / "lake"), ds=DS, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                  artifact_root=str(tmp_path / "artifacts"), valid_days=3, test_days=3, alphas=(0.8, 1.2),
                  kmeans_ks=(2,), lams=(0.3,), ci_samples=0)
    values.update(overrides)
    return EvaluatePinnerSageConfig(**values)


def test_a_run_logs_params_tables_histogram_and_lineage(tmp_path):
    from mlflow.tracking import MlflowClient

    from jobs.evaluate_pinnersage import EXPERIMENT, run

    lake = build_lake(tmp_path / "lake")
    write_user_medoids(lake)
    result = run(config(tmp_path))

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = client.get_run(result.run_id)
    assert logged.info.status == "FINISHED"
    assert client.get_experiment(logged.info.experiment_id).name == EXPERIMENT
    tags, params, metrics = logged.data.tags, logged.data.params, logged.data.metrics
    assert tags["ds"] == DS.isoformat() and tags["code_version"]
    assert tags["pinsage_model_version"] == "pinsage/1"
    assert "user_medoids/ds=2026-01-20" in tags["input.user_medoids"]
    assert "(20 partitions)" in tags["input.events"] and "input.pin_embeddings" in tags
    assert tags["eval.alpha_chosen_on_valid"] in {"0.8", "1.2"}
    assert tags["eval.alpha_matches_job"] == "False"  # 1.0 is not in this run's grid
    assert float(tags["eval.lam_chosen_on_valid"]) in {0.01, 0.3} and result.lam_chosen in {0.01, 0.3}
    assert tags["eval.lam_matches_job"] == str(result.lam_chosen == 0.01)
    assert params["evaluation.lams"] == "[0.01, 0.3]"  # the run's grid and the job's lambda
    assert tags["eval.setting.decayed_average"] in {"lam=0.01", "lam=0.3"}
    assert "time split test" in tags["eval.protocol.test"]
    assert params["job.alpha"] == "1.0" and params["evaluation.blend"] == "interleave"
    assert params["evaluation.alphas"] == "[0.8, 1.2]"
    assert metrics["job/users"] == NUM_USERS and metrics["job/users_by_num_clusters/3-4"] == 4
    assert metrics["job/clusters_per_user_median"] == 2.0
    assert 0.0 <= metrics["eval/pinnersage/test/recall_at_50"] <= 1.0
    assert metrics["ablation/pinnersage/test_recall_at_50"] == pytest.approx(
        float(result.ablation.set_index("method").loc["pinnersage", "test_recall@50"]))
    assert metrics["spearman_clusters_vs_planted_interests"] == pytest.approx(result.spearman)
    # the share of each user's top 50 on their planted interests (some of the 48 pins are off-interest)
    assert 0.0 < metrics["ablation/pinnersage/test_on_interest_at_50"] < 1.0
    assert result.spearman > 0.5  # 1, 2 or 3 orthogonal topics per user: Ward finds them
    for other in ("last_pin", "decayed_average"):
        low, diff, high = (metrics[f"paired_recall_at_50/{other}/{k}"] for k in ("ci_low", "diff", "ci_high"))
        assert low <= diff <= high
    assert tags["eval.beats_single_embedding_beyond_noise"] in {"True", "False"}

    artifacts = {a.path for folder in ("evaluation", "plots") for a in client.list_artifacts(result.run_id, folder)}
    assert {"evaluation/evaluation.csv", "evaluation/ablation.csv", "evaluation/ablation.json",
            "plots/clusters_per_user.png"} <= artifacts
    local = client.download_artifacts(result.run_id, "evaluation/ablation.csv", str(tmp_path / "dl"))
    ablation = pd.read_csv(local)
    assert set(ablation["method"]) == METHODS
    assert ablation.loc[ablation["method"] == "pinnersage_max", "blend"].item() == "max"
    png = client.download_artifacts(result.run_id, "plots/clusters_per_user.png", str(tmp_path / "dl"))
    assert io.open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    evaluation = pd.read_csv(client.download_artifacts(result.run_id, "evaluation/evaluation.csv",
                                                       str(tmp_path / "dl")))
    assert set(evaluation["model"]) == METHODS and set(evaluation["split"]) == {"valid", "test"}
    paired = pd.read_csv(client.download_artifacts(result.run_id, "evaluation/paired_recall@50.csv",
                                                   str(tmp_path / "dl")))
    overall = paired[paired["group"] == "all"].set_index("other")
    assert set(overall.index) == {"last_pin", "decayed_average"}
    assert tags["eval.beats_single_embedding_beyond_noise"] == str(bool(overall["beats"].all()))
    assert overall.loc["last_pin", "diff"] == pytest.approx(metrics["paired_recall_at_50/last_pin/diff"])
    # one block per planted interest count besides "all", each over fewer users
    per_group = paired[paired["group"] != "all"]
    assert len(per_group) and (per_group["users"] < overall["users"].max()).all()


def test_without_the_jobs_partition_nothing_is_logged(tmp_path):
    from mlflow.tracking import MlflowClient

    from jobs.evaluate_pinnersage import EXPERIMENT, run

    build_lake(tmp_path / "lake")  # no user_medoids partition
    with pytest.raises(PartitionMissingError, match="user_medoids"):
        run(config(tmp_path))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="ablation_blends"):
        config(tmp_path, ablation_blends=("median",))
    with pytest.raises(ValueError, match="valid_days"):
        config(tmp_path, valid_days=0)


def test_a_window_without_events_is_a_named_input_error(tmp_path):
    from embeddings.data.engagement import TimeSplit
    from embeddings.pinnersage.data import EvaluationInputError, load_evaluation_inputs

    lake = Lake(str(tmp_path / "lake"))
    lake.write(PIN_EMBEDDINGS, pa.table({"pin_id": [1, 2], "embedding": [[1.0, 0.0], [0.0, 1.0]],
                                         "model_version": ["pinsage/1"] * 2}), DS)
    with pytest.raises(EvaluationInputError, match=r"no committed events partition .* 2026-01-01\.\.2026-01-20"):
        load_evaluation_inputs(lake, TimeSplit(DS, WINDOW_DAYS, 3, 3))
