"""Graph-building transformations on literal DataFrames a few rows long (one shared local Spark session)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from embeddings.graph.building import (
    GraphWindow,
    PruningConfig,
    cap_degree,
    csr_from_tables,
    dense_index,
    drop_small_boards,
    index_graph,
    prune_edges,
    pruning_stages,
    save_edges,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


# ---- pure parts (no Spark) ---------------------------------------------------------------------------------------
def test_window_holds_out_the_last_days():
    window = GraphWindow.ending_at(dt.date(2026, 1, 10), window_days=10, holdout_days=3)
    assert (window.start, window.end) == (dt.date(2026, 1, 1), dt.date(2026, 1, 7))
    assert window.holdout_days == 3
    assert len(window.days()) == 7
    assert window.end_ts == dt.datetime(2026, 1, 8, tzinfo=UTC)
    assert GraphWindow.ending_at(dt.date(2026, 1, 10), 90).end == dt.date(2026, 1, 10)


@pytest.mark.parametrize(
    ("window_days", "holdout_days", "match"),
    [(0, 0, r"window_days must be >= 1, got 0"), (5, 5, r"holdout_days must be in 0\.\.window_days-1 = 0\.\.4, got 5"),
     (5, -1, r"holdout_days must be in .* got -1")],
)
def test_window_rejects_bad_sizes(window_days, holdout_days, match):
    with pytest.raises(ValueError, match=match):
        GraphWindow.ending_at(dt.date(2026, 1, 10), window_days, holdout_days)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_board_degree": 0}, r"max_board_degree must be >= 1 or None \(no cap\), got 0"),
     ({"max_pin_degree": -2}, r"max_pin_degree must be >= 1 or None"),
     ({"min_board_size": 0}, r"min_board_size must be >= 1, got 0")],
)
def test_pruning_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PruningConfig(**kwargs)


def test_csr_from_tables_maps_indices_back_to_ids():
    pins = pa.table({"pin_id": [30, 10, 20], "pin_idx": [2, 0, 1]})
    boards = pa.table({"board_id": [7, 5], "board_idx": [1, 0]})
    edges = pa.table({"pin_idx": [0, 2, 2], "board_idx": [0, 0, 1]})
    csr = csr_from_tables(pins, boards, edges)
    assert csr.pin_ids.tolist() == [10, 20, 30]
    assert csr.board_ids.tolist() == [5, 7]
    assert csr.pin_degree().tolist() == [1, 0, 2]  # pin 20 is isolated
    assert csr.board_indices[csr.board_indptr[0]:csr.board_indptr[1]].tolist() == [0, 2]


def test_csr_from_tables_rejects_indices_that_are_not_dense():
    boards = pa.table({"board_id": [5], "board_idx": [0]})
    edges = pa.table({"pin_idx": [0], "board_idx": [0]})
    with pytest.raises(ValueError, match=r"pin_idx is not dense: 1 of 0\.\.1 missing or repeated"):
        csr_from_tables(pa.table({"pin_id": [1, 2], "pin_idx": [0, 0]}), boards, edges)
    with pytest.raises(ValueError, match=r"pin_idx is not dense: values outside 0\.\.1"):
        csr_from_tables(pa.table({"pin_id": [1, 2], "pin_idx": [0, 2]}), boards, edges)


# ---- Spark transformations ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark():
    from jobs.spark import build_spark_session

    session = build_spark_session(
        "test_building", master="local[2]", shuffle_partitions=2,
        conf={"spark.ui.enabled": "false", "spark.sql.adaptive.enabled": "true"},
    )
    yield session
    session.stop()


EVENT_COLUMNS = "user_id long, pin_id long, board_id long, action string, ts timestamp"
EDGE_COLUMNS = "pin_id long, board_id long, weight int, last_ts timestamp"


def edges_df(spark, pairs):
    return spark.createDataFrame([(p, b, 1, T0) for p, b in pairs], EDGE_COLUMNS)


def degrees(df, col):
    return {r[col]: r["count"] for r in df.groupBy(col).count().collect()}


@pytest.mark.spark
def test_save_edges_dedups_counts_and_keeps_the_latest_time(spark):
    from pyspark.testing import assertDataFrameEqual

    events = spark.createDataFrame(
        [
            (1, 10, 100, "save", at(0)),
            (1, 10, 100, "save", at(0)),  # an exact duplicate row counts once
            (2, 10, 100, "save", at(5)),
            (1, 11, 100, "save", at(1)),
            (1, 12, None, "save", at(2)),  # no board: not an edge
            (1, 13, 101, "click", at(3)),  # not a save
        ],
        EVENT_COLUMNS,
    )
    expected = spark.createDataFrame([(10, 100, 2, at(5)), (11, 100, 1, at(1))], EDGE_COLUMNS)
    assertDataFrameEqual(save_edges(events), expected)


@pytest.mark.spark
def test_save_edges_keeps_only_the_window(spark):
    from pyspark.testing import assertDataFrameEqual

    events = spark.createDataFrame(
        [(1, 10, 100, "save", at(-1)), (1, 11, 100, "save", at(0)), (1, 12, 100, "save", at(23.9)),
         (1, 13, 100, "save", at(24))],
        EVENT_COLUMNS,
    )
    expected = spark.createDataFrame([(11, 100, 1, at(0)), (12, 100, 1, at(23.9))], EDGE_COLUMNS)
    assertDataFrameEqual(save_edges(events, at(0), at(24)), expected)


@pytest.mark.spark
def test_cap_degree_keeps_a_hash_sample_independent_of_partitioning(spark):
    edges = edges_df(spark, [(p, 100) for p in range(8)] + [(1, 101), (2, 101)])
    kept = {}
    for parts in (1, 3, 7):
        capped = cap_degree(edges.repartition(parts), "board_id", "pin_id", cap=3, seed=0, salt=1)
        kept[parts] = sorted((r.pin_id, r.board_id) for r in capped.collect())
    assert kept[1] == kept[3] == kept[7]
    assert degrees(spark.createDataFrame(kept[1], "pin_id long, board_id long"), "board_id") == {100: 3, 101: 2}
    other_seed = cap_degree(edges, "board_id", "pin_id", cap=3, seed=1, salt=1).collect()
    assert len(other_seed) == 5
    assert cap_degree(edges, "board_id", "pin_id", cap=None, seed=0, salt=1) is edges


@pytest.mark.spark
def test_drop_small_boards(spark):
    from pyspark.testing import assertDataFrameEqual

    edges = edges_df(spark, [(1, 100), (2, 100), (3, 101), (1, 102)])
    assertDataFrameEqual(drop_small_boards(edges, 2), edges_df(spark, [(1, 100), (2, 100)]))
    assert drop_small_boards(edges, 1) is edges


@pytest.mark.spark
def test_pruning_caps_and_minimum_size_hold_in_the_output(spark):
    rng = np.random.default_rng(3)
    # Hub boards and hub pins: a skewed random edge set.
    pins = (rng.pareto(1.0, 600) * 3).astype(int) % 60
    boards = rng.integers(0, 25, 600)
    pairs = sorted({(int(p), int(b)) for p, b in zip(pins, boards, strict=True)})
    edges = edges_df(spark, pairs)
    config = PruningConfig(max_board_degree=8, max_pin_degree=4, min_board_size=3, seed=0)
    board_capped, pin_capped, pruned = pruning_stages(edges, config)
    assert max(degrees(edges, "board_id").values()) > 8 and max(degrees(edges, "pin_id").values()) > 4
    assert max(degrees(board_capped, "board_id").values()) == 8
    pruned_rows = pruned.collect()
    assert 0 < len(pruned_rows) < pin_capped.count() <= board_capped.count() < len(pairs)
    board_deg = degrees(pruned, "board_id")
    assert max(board_deg.values()) <= 8 and min(board_deg.values()) >= 3
    assert max(degrees(pruned, "pin_id").values()) <= 4
    assert sorted(map(tuple, pruned_rows)) == sorted(map(tuple, prune_edges(edges.repartition(5), config).collect()))


@pytest.mark.spark
@pytest.mark.parametrize("num_buckets", [1, 3, 16])
def test_dense_index_is_the_rank_of_the_key(spark, num_buckets):
    from pyspark.testing import assertDataFrameEqual

    ids = [50, -7, 3_000_000_000, 50, 12, 9, 9, 1 << 62]
    keys = spark.createDataFrame([(i,) for i in ids], "pin_id long").repartition(3)
    expected = spark.createDataFrame(
        [(int(v), i) for i, v in enumerate(sorted(set(ids)))], "pin_id long, pin_idx int"
    )
    assertDataFrameEqual(dense_index(keys, "pin_id", "pin_idx", num_buckets), expected)


@pytest.mark.spark
def test_dense_index_rejects_bad_bucket_counts(spark):
    keys = spark.createDataFrame([(1,)], "pin_id long")
    with pytest.raises(ValueError, match=r"num_buckets must be in 1\.\.256, got 0"):
        dense_index(keys, "pin_id", "pin_idx", 0)


@pytest.mark.spark
def test_index_graph_counts_isolated_pins_and_indexes_by_id(spark):
    from pyspark.testing import assertDataFrameEqual

    edges = spark.createDataFrame(
        [(30, 7, 2, at(1)), (10, 7, 1, at(2)), (30, 5, 1, at(3)), (20, 5, 4, at(4))], EDGE_COLUMNS
    )
    snapshot = spark.createDataFrame([(10,), (25,), (30,)], "pin_id long")  # 25 has no save: isolated
    tables = index_graph(edges, snapshot, num_buckets=2)
    assertDataFrameEqual(
        tables.pins,
        spark.createDataFrame([(10, 0, 1), (20, 1, 1), (25, 2, 0), (30, 3, 2)], "pin_id long, pin_idx int, degree int"),
    )
    assertDataFrameEqual(
        tables.boards, spark.createDataFrame([(5, 0, 2), (7, 1, 2)], "board_id long, board_idx int, degree int")
    )
    assertDataFrameEqual(
        tables.edges,
        spark.createDataFrame(
            [(30, 7, 2, at(1), 3, 1), (10, 7, 1, at(2), 0, 1), (30, 5, 1, at(3), 3, 0), (20, 5, 4, at(4), 1, 0)],
            EDGE_COLUMNS + ", pin_idx int, board_idx int",
        ),
    )
