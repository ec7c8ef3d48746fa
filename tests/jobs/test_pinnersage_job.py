"""jobs.pinnersage on a tiny literal lake whose clusters are obvious (one shared local Spark session)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from embeddings.data.schemas import EVENTS, PIN_EMBEDDINGS, USER_MEDOIDS
from embeddings.lake import Lake, PartitionMissingError

pytestmark = [pytest.mark.spark, pytest.mark.slow]

DS = dt.date(2026, 1, 10)
D = 4
E = np.eye(D, dtype=np.float32)
# Pins around three directions; the unperturbed pin of each topic is its medoid.
PIN_VECTORS = {
    10: E[0], 11: E[0] + 0.1 * E[3], 12: E[0] - 0.1 * E[3],
    20: E[1], 21: E[1] + 0.1 * E[3], 22: E[1] - 0.1 * E[3],
    30: E[2],
}
NO_EMBEDDING = (97, 98, 99)


def at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), dt.timezone.utc)


def event(user: int, pin: int, ts: dt.datetime, action: str = "save", duration_ms: int | None = None) -> dict:
    return {"user_id": user, "pin_id": pin, "board_id": 1 if action == "save" else None, "action": action,
            "ts": ts, "duration_ms": duration_ms, "surface": "home"}


def base_events() -> list[dict]:
    """User 1: topic e0 (4 actions) and e1 (3 actions), plus one pin without embedding.
    User 2: one save of pin 30; a hide of 10 and a 5 s click of 20 are not positive.
    User 3: only pins without embeddings (skipped). User 4: a 12 s closeup of 21 (positive)."""
    d0, d1, d2 = DS - dt.timedelta(days=2), DS - dt.timedelta(days=1), DS
    return [
        event(1, 10, at(d0, 1)), event(1, 11, at(d0, 2)), event(1, 12, at(d1, 3)), event(1, 10, at(d2, 4)),
        event(1, 20, at(d1, 5)), event(1, 21, at(d2, 6), "click", 15_000), event(1, 22, at(d2, 7)),
        event(1, 97, at(d2, 8)),
        event(2, 30, at(d1, 9)), event(2, 10, at(d2, 10), "hide"), event(2, 20, at(d2, 11), "click", 5_000),
        event(3, 98, at(d0, 12)), event(3, 99, at(d2, 13)),
        event(4, 21, at(d2, 14), "closeup", 12_000),
    ]


def write_events(lake: Lake, rows: list[dict]) -> None:
    by_day: dict[dt.date, list[dict]] = {}
    for row in rows:
        by_day.setdefault(row["ts"].date(), []).append(row)
    for day, day_rows in by_day.items():
        lake.write(EVENTS, pa.Table.from_pylist(day_rows, schema=EVENTS.schema), day)


def write_embeddings(lake: Lake, ds: dt.date, version: str = "pinsage/1") -> None:
    ids = sorted(PIN_VECTORS)
    vectors = [(PIN_VECTORS[i] / np.linalg.norm(PIN_VECTORS[i])).tolist() for i in ids]
    lake.write(PIN_EMBEDDINGS, pa.table({"pin_id": ids, "embedding": vectors, "model_version": [version] * len(ids)}),
               ds)


def make_lake(path) -> Lake:
    lake = Lake(str(path))
    write_events(lake, base_events())
    write_embeddings(lake, DS)
    return lake


@pytest.fixture(scope="module")
def spark():
    from jobs.spark import build_spark_session

    session = build_spark_session("test_pinnersage", master="local[2]", shuffle_partitions=3,
                                  conf={"spark.ui.enabled": "false"})
    yield session
    session.stop()


def config_for(lake: Lake, **overrides):
    from jobs.pinnersage import PinnerSageConfig

    return PinnerSageConfig(**{"lake_uri": lake.lake_uri, "ds": DS, "window_days": 5, **overrides})


def rows_of(lake: Lake, ds: dt.date = DS) -> list[dict]:
    return lake.read(USER_MEDOIDS, ds).sort_by([("user_id", "ascending"), ("rank", "ascending")]).to_pylist()


@pytest.fixture(scope="module")
def computed(spark, tmp_path_factory):
    from jobs.pinnersage import run

    lake = make_lake(tmp_path_factory.mktemp("lake"))
    result = run(config_for(lake), spark)
    return lake, result


def test_medoids_of_obvious_clusters(computed):
    lake, _ = computed
    rows = rows_of(lake)
    got = [(r["user_id"], r["rank"], r["medoid_pin_id"], r["cluster_size"], r["num_cluster_actions"],
            r["num_clusters"], r["num_actions"]) for r in rows]
    assert got == [
        (1, 1, 10, 3, 4, 2, 7),  # e0: pins 10 (twice), 11, 12
        (1, 2, 20, 3, 3, 2, 7),  # e1: 20, 21, 22; pin 97 has no embedding
        (2, 1, 30, 1, 1, 1, 1),  # the hide and the 5 s click are not engagements
        (4, 1, 21, 1, 1, 1, 1),  # a 12 s closeup is
    ]
    assert all(r["pinsage_model_version"] == "pinsage/1" and r["computed_ds"] == DS and not r["capped"]
               for r in rows)
    assert rows[0]["importance"] > rows[1]["importance"] > 0


def test_manifest_counts_skipped_users_and_missing_embeddings(computed):
    lake, result = computed
    extra = lake.read_manifest(USER_MEDOIDS, DS).extra
    assert extra == result.stats
    assert extra["users"] == 3 and extra["users_in_window"] == 4
    assert extra["users_skipped_no_embedding"] == 1 and extra["skipped_user_ids"] == [3]
    assert extra["actions_without_embedding"] == 3
    assert extra["users_with_missing_embeddings"] == [1, 3]
    assert extra["users_by_num_clusters"] == {"1": 2, "2": 1, "3-4": 0, "5-8": 0, "9-16": 0, "17+": 0}
    assert extra["users_capped"] == 0 and extra["users_carried_over"] == 0 and extra["users_recomputed"] == 4
    assert lake.read_manifest(USER_MEDOIDS, DS).row_count == 4
    assert sorted({i["table"] for i in lake.read_manifest(USER_MEDOIDS, DS).inputs}) == ["events", "pin_embeddings"]


def test_cap_is_applied_and_counted(spark, tmp_path):
    from jobs.pinnersage import run

    lake = make_lake(tmp_path / "lake")
    result = run(config_for(lake, max_actions=3), spark)
    user1 = [r for r in rows_of(lake) if r["user_id"] == 1]
    assert all(r["capped"] and r["num_actions"] == 7 for r in user1)
    assert result.stats["users_capped"] == 1


def test_rerun_gives_identical_rows(spark, computed):
    from jobs.pinnersage import run

    lake, _ = computed
    before = rows_of(lake)
    run(config_for(lake), spark)
    assert rows_of(lake) == before
    # Shipping the embeddings with SparkContext.addFile (a cluster's way) gives the same rows too.
    run(config_for(lake, embedding_distribution="spark_files", shuffle_partitions=1), spark)
    assert rows_of(lake) == before


def test_incremental_carries_unchanged_users_and_recomputes_on_a_new_champion(spark, tmp_path):
    from jobs.pinnersage import run

    lake = make_lake(tmp_path / "lake")
    run(config_for(lake), spark)
    ds2 = DS + dt.timedelta(days=1)
    write_events(lake, [event(2, 11, at(ds2, 1))])  # only user 2 engages after DS
    write_embeddings(lake, ds2)

    result = run(config_for(lake, ds=ds2), spark)
    rows = rows_of(lake, ds2)
    assert result.stats["users_carried_over"] == 2 and result.stats["users_recomputed"] == 2  # 1, 4 | 2, 3
    assert result.stats["previous_ds"] == DS.isoformat()
    assert {r["user_id"]: r["computed_ds"] for r in rows} == {1: DS, 2: ds2, 4: DS}
    old = {(r["user_id"], r["rank"]): r for r in rows_of(lake)}
    assert all(r == old[(r["user_id"], r["rank"])] for r in rows if r["user_id"] in (1, 4))
    assert [(r["rank"], r["medoid_pin_id"]) for r in rows if r["user_id"] == 2] == [(1, 11), (2, 30)]
    assert result.stats["users"] == 3
    assert result.stats["users_by_num_clusters"] == {"1": 1, "2": 2, "3-4": 0, "5-8": 0, "9-16": 0, "17+": 0}

    # A full run computes the same medoids for the carried users here (nothing aged out of their clusters).
    full = run(config_for(lake, ds=ds2, incremental=False), spark)
    assert full.stats["users_carried_over"] == 0 and full.stats["users_recomputed"] == 4
    assert [(r["user_id"], r["rank"], r["medoid_pin_id"]) for r in rows_of(lake, ds2)] == \
        [(r["user_id"], r["rank"], r["medoid_pin_id"]) for r in rows]

    # Back to incremental, but a new champion: nothing of pinsage/1 may be carried over.
    run(config_for(lake, ds=ds2), spark)  # restores the carried rows
    write_embeddings(lake, ds2, version="pinsage/2")
    result = run(config_for(lake, ds=ds2), spark)
    assert result.stats["users_carried_over"] == 0 and result.stats["users_recomputed"] == 4
    assert {r["pinsage_model_version"] for r in rows_of(lake, ds2)} == {"pinsage/2"}
    assert {r["computed_ds"] for r in rows_of(lake, ds2)} == {ds2}


def test_empty_window_is_an_error_and_leaves_the_published_partition(spark, computed, tmp_path):
    from jobs.pinnersage import PinnerSageInputError, run

    lake = make_lake(tmp_path / "lake")
    later = DS + dt.timedelta(days=30)
    published = pa.Table.from_pylist(rows_of(computed[0]), schema=USER_MEDOIDS.schema)
    lake.write(USER_MEDOIDS, published, later)
    write_embeddings(lake, later)
    with pytest.raises(PinnerSageInputError, match=r"window 2026-02-05\.\.2026-02-09 \(window_days=5\)"):
        run(config_for(lake, ds=later), spark)
    assert lake.read(USER_MEDOIDS, later).equals(published)

    # Partitions in the window, but no positive engagement in them: the same kind of error.
    write_events(lake, [event(5, 10, at(later, 1), "hide")])
    with pytest.raises(PinnerSageInputError, match=r"no positive engagements .* window 2026-02-05\.\.2026-02-09"):
        run(config_for(lake, ds=later), spark)
    assert lake.read(USER_MEDOIDS, later).equals(published)


def test_missing_embeddings_partition_is_partition_missing(spark, tmp_path):
    from jobs.pinnersage import run

    lake = make_lake(tmp_path / "lake")
    with pytest.raises(PartitionMissingError, match="pin_embeddings"):
        run(config_for(lake, ds=DS - dt.timedelta(days=1)), spark)
    assert not lake.list_partitions(USER_MEDOIDS)


def test_lookup_finds_rows_of_sorted_ids():
    from jobs.pinnersage import lookup

    found, rows = lookup(np.array([5, 1, 9, 3]), np.array([1, 3, 5]))
    assert found.tolist() == [True, True, False, True] and rows.tolist() == [2, 0, 1]
    found, rows = lookup(np.array([5]), np.array([], dtype=np.int64))
    assert found.tolist() == [False] and rows.tolist() == []


def test_users_are_clustered_in_buckets_of_about_500():
    from jobs.pinnersage import USERS_PER_BUCKET, num_user_buckets

    assert USERS_PER_BUCKET == 500
    assert num_user_buckets(4, shuffle_partitions=3) == 3  # at least one bucket per shuffle partition
    assert num_user_buckets(100_000, shuffle_partitions=16) == 200
    assert num_user_buckets(100_001, shuffle_partitions=16) == 201
