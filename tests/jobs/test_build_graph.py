"""jobs.build_graph on tiny events written with pyarrow (one shared local Spark session; one real spark-submit)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from embeddings.data.schemas import EVENTS, GRAPH_BOARDS, GRAPH_CSR, GRAPH_EDGES, GRAPH_PINS, PINS
from embeddings.graph.csr import BipartiteCSR
from embeddings.lake import CorruptFileError, Lake

pytestmark = pytest.mark.spark

REPO_ROOT = Path(__file__).resolve().parents[2]
DS = dt.date(2026, 1, 10)
NUM_DAYS = 6
PIN_BASE, BOARD_BASE = 3_000, 2_000
NUM_PINS, NUM_BOARDS = 40, 8
HUB_BOARD = BOARD_BASE + 99  # every pin is saved onto it: a hub to cap
LATE_PIN = PIN_BASE + 77  # saved only on the last day: gone when that day is held out
ISOLATED = (PIN_BASE + 90, PIN_BASE + 91)  # in the pins snapshot, never saved
UNBORN = PIN_BASE + 95  # created after ds: not a node


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc)


def events_table(day: dt.date, seed: int, num_saves: int = 60) -> pa.Table:
    rng = np.random.default_rng(seed)
    pins = PIN_BASE + rng.integers(0, NUM_PINS, num_saves)
    boards = BOARD_BASE + rng.integers(0, NUM_BOARDS, num_saves)
    pins = np.concatenate([pins, PIN_BASE + np.arange(NUM_PINS), pins[:5], [PIN_BASE]])
    boards = np.concatenate([boards, np.full(NUM_PINS, HUB_BOARD), boards[:5], [BOARD_BASE]])
    actions = ["save"] * (len(pins) - 1) + ["click"]  # the click has no board and is no edge
    boards = boards.astype(object)
    boards[-1] = None
    n = len(pins)
    seconds = rng.integers(0, 86_400, n)
    seconds[num_saves + NUM_PINS:num_saves + NUM_PINS + 5] = seconds[:5]  # exact duplicates of 5 saves
    users = rng.integers(1, 30, n)
    users[num_saves + NUM_PINS:num_saves + NUM_PINS + 5] = users[:5]
    return pa.table({
        "user_id": users, "pin_id": pins, "board_id": pa.array(list(boards), pa.int64()), "action": actions,
        "ts": [midnight(day) + dt.timedelta(seconds=int(s)) for s in seconds],
        "duration_ms": pa.nulls(n, pa.int32()), "surface": ["homefeed"] * n,
    })


def write_tiny_lake(lake: Lake, ds: dt.date = DS, num_days: int = NUM_DAYS) -> None:
    for i in range(num_days):
        day = ds - dt.timedelta(days=num_days - 1 - i)
        table = events_table(day, seed=i)
        if day == ds:
            late = pa.table({
                "user_id": [1, 2], "pin_id": [LATE_PIN, LATE_PIN], "board_id": [BOARD_BASE, BOARD_BASE + 1],
                "action": ["save", "save"], "ts": [midnight(day) + dt.timedelta(hours=h) for h in (1, 2)],
                "duration_ms": pa.nulls(2, pa.int32()), "surface": ["homefeed"] * 2,
            }, schema=table.schema)
            table = pa.concat_tables([table, late])
        lake.write(EVENTS, table, day)
    snapshot_ids = [*(PIN_BASE + np.arange(NUM_PINS)), *ISOLATED, UNBORN]
    created = [midnight(ds - dt.timedelta(days=30))] * (len(snapshot_ids) - 1) + [midnight(ds + dt.timedelta(days=1))]
    lake.write(PINS, pa.table({
        "pin_id": snapshot_ids, "text": ["a pin"] * len(snapshot_ids),
        "features": pa.nulls(len(snapshot_ids), pa.list_(pa.float32())), "created_ts": created,
    }))


@pytest.fixture(scope="module")
def spark():
    from jobs.spark import build_spark_session

    session = build_spark_session("test_build_graph", master="local[2]", shuffle_partitions=3,
                                  conf={"spark.ui.enabled": "false"})
    yield session
    session.stop()


def config_for(lake_uri: str, **overrides):
    from jobs.build_graph import BuildGraphConfig

    settings = {"lake_uri": lake_uri, "ds": DS, "window_days": 30, "max_board_degree": 12,
                "max_pin_degree": 5, "min_board_size": 2, "shuffle_partitions": 3, **overrides}
    return BuildGraphConfig(**settings)


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """One build of the tiny lake: (lake, result)."""
    from jobs.build_graph import run

    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    write_tiny_lake(lake)
    return lake, run(config_for(lake.lake_uri), spark)


def read_graph(lake: Lake, ds: dt.date = DS) -> dict:
    return {spec.name: lake.read(spec, ds) for spec in (GRAPH_EDGES, GRAPH_PINS, GRAPH_BOARDS)}


def test_build_writes_consistent_tables_and_csr(built):
    lake, result = built
    tables = read_graph(lake)
    edges, pins, boards = (tables[n].to_pandas() for n in ("graph_edges", "graph_pins", "graph_boards"))
    # Nodes: snapshot pins created by the end of ds (isolated ones included) plus pins of edges.
    assert UNBORN not in set(pins.pin_id)
    assert set(ISOLATED) <= set(pins.pin_id)
    assert pins.set_index("pin_id").loc[list(ISOLATED), "degree"].tolist() == [0, 0]
    assert result.stats["isolated_pins"] == int((pins.degree == 0).sum()) >= 2
    # Dense indices in id order.
    assert pins.sort_values("pin_id").pin_idx.tolist() == list(range(len(pins)))
    assert boards.sort_values("board_id").board_idx.tolist() == list(range(len(boards)))
    assert not edges.duplicated(["pin_id", "board_id"]).any()
    assert (edges.weight >= 1).all()
    assert edges.pin_idx.tolist() == pins.set_index("pin_id").loc[edges.pin_id, "pin_idx"].tolist()
    # Degrees agree with the edges, and the CSR with both.
    assert pins.set_index("pin_id").degree.loc[edges.pin_id.unique()].sum() == len(edges)
    csr = BipartiteCSR.load(lake.local_path(GRAPH_CSR, DS))
    assert (csr.num_pins, csr.num_boards, csr.num_edges) == (len(pins), len(boards), len(edges))
    assert csr.pin_ids.tolist() == sorted(pins.pin_id)
    assert csr.pin_degree().tolist() == pins.sort_values("pin_idx").degree.tolist()
    assert csr.board_degree().tolist() == boards.sort_values("board_idx").degree.tolist()
    pairs = {(int(csr.pin_ids[p]), int(csr.board_ids[b]))
             for p in range(csr.num_pins) for b in csr.pin_indices[csr.pin_indptr[p]:csr.pin_indptr[p + 1]]}
    assert pairs == set(zip(edges.pin_id, edges.board_id, strict=True))
    manifest = lake.read_manifest(GRAPH_CSR, DS)
    assert manifest.row_count == len(edges)
    assert manifest.extra["share_of_edges_kept"] == pytest.approx(len(edges) / manifest.extra["edges_before_pruning"])
    assert [i["table"] for i in manifest.inputs] == ["graph_edges"]
    assert {i["table"] for i in lake.read_manifest(GRAPH_EDGES, DS).inputs} == {"events", "pins"}


def test_weights_count_distinct_saves_and_last_seen_is_the_latest(built):
    lake, _ = built
    edges = read_graph(lake)["graph_edges"].to_pandas().set_index(["pin_id", "board_id"])
    events = pa.concat_tables([lake.read(EVENTS, d) for d in lake.list_partitions(EVENTS)]).to_pandas()
    saves = events[events.action == "save"].drop_duplicates(["user_id", "pin_id", "board_id", "ts"])
    truth = saves.groupby(["pin_id", "board_id"]).agg(weight=("ts", "size"), last_ts=("ts", "max"))
    joined = edges.join(truth, rsuffix="_truth", how="inner")
    assert len(joined) == len(edges)
    assert (joined.weight == joined.weight_truth).all()
    assert (joined.last_ts == joined.last_ts_truth).all()


def test_pruning_caps_are_respected_and_reported(built):
    lake, result = built
    pins = read_graph(lake)["graph_pins"].to_pandas()
    boards = read_graph(lake)["graph_boards"].to_pandas()
    assert pins.degree.max() <= 5 and boards.degree.max() <= 12 and boards.degree.min() >= 2
    stats = result.stats
    assert stats["dropped_by_board_cap"] > 0 and stats["dropped_by_pin_cap"] > 0  # the hub was capped
    assert stats["edges"] == stats["edges_before_pruning"] - stats["dropped_by_board_cap"] \
        - stats["dropped_by_pin_cap"] - stats["dropped_small_boards"]
    assert 0 < stats["share_of_edges_kept"] < 1
    assert lake.read_manifest(GRAPH_EDGES, DS).extra["share_of_edges_kept"] == stats["share_of_edges_kept"]


def test_same_graph_for_any_number_of_shuffle_partitions(spark, built, tmp_path):
    from jobs.build_graph import run

    lake, _ = built
    other = Lake(str(tmp_path / "lake"))
    write_tiny_lake(other)
    run(config_for(other.lake_uri, shuffle_partitions=1), spark)
    for name, table in read_graph(lake).items():
        assert read_graph(other)[name].equals(table), name
    a = BipartiteCSR.load(lake.local_path(GRAPH_CSR, DS))
    b = BipartiteCSR.load(other.local_path(GRAPH_CSR, DS))
    for array in ("pin_ids", "board_ids", "pin_indptr", "pin_indices", "board_indptr", "board_indices"):
        assert np.array_equal(getattr(a, array), getattr(b, array)), array


def test_held_out_days_never_enter_the_graph(spark, tmp_path):
    from jobs.build_graph import run

    lake = Lake(str(tmp_path / "lake"))
    write_tiny_lake(lake)
    result = run(config_for(lake.lake_uri, holdout_days=1, max_board_degree=None, max_pin_degree=None), spark)
    edges = lake.read(GRAPH_EDGES, DS).to_pandas()
    assert edges.last_ts.max() < midnight(DS)
    assert LATE_PIN not in set(edges.pin_id)
    assert result.stats["holdout_start"] == DS.isoformat() and result.stats["events_partitions"] == NUM_DAYS - 1
    assert lake.read_manifest(GRAPH_CSR, DS).extra["holdout_days"] == 1


def test_rerun_of_one_ds_rewrites_it_and_leaves_other_partitions_untouched(spark, tmp_path):
    from jobs.build_graph import run

    lake = Lake(str(tmp_path / "lake"))
    write_tiny_lake(lake)
    earlier = DS - dt.timedelta(days=1)
    run(config_for(lake.lake_uri, ds=earlier), spark)
    run(config_for(lake.lake_uri), spark)

    def snapshot(ds):
        out = {}
        for spec in (GRAPH_EDGES, GRAPH_PINS, GRAPH_BOARDS, GRAPH_CSR):
            part = Path(lake.partition_path(spec, ds))
            out[spec.name] = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in part.iterdir()}
        return out

    before_earlier, before = snapshot(earlier), read_graph(lake)
    first_manifest = lake.read_manifest(GRAPH_EDGES, DS)
    time.sleep(0.01)
    run(config_for(lake.lake_uri), spark)
    assert snapshot(earlier) == before_earlier
    for name, table in read_graph(lake).items():
        assert table.equals(before[name]), name  # rewritten whole: same rows, no duplicates
    assert lake.read_manifest(GRAPH_EDGES, DS).files != first_manifest.files  # new files replaced the old
    assert lake.list_partitions(GRAPH_EDGES) == [earlier, DS]


def test_half_finished_attempt_is_rewritten_cleanly(spark, tmp_path):
    from jobs.build_graph import run

    lake = Lake(str(tmp_path / "lake"))
    write_tiny_lake(lake)
    # A crashed attempt: a partition directory without a manifest, an old staging dir and a fresh one
    # (the fresh one may belong to a writer of another ds running now, so it is left alone).
    partial = Path(lake.partition_path(GRAPH_EDGES, DS))
    partial.mkdir(parents=True)
    (partial / "part-00000-crashed.parquet").write_bytes(b"half a file")
    old_staging = Path(lake.new_staging(GRAPH_PINS))
    (old_staging / "part-00000.parquet").write_bytes(b"junk")
    day_ago = time.time() - 86_400
    os.utime(old_staging, (day_ago, day_ago))
    fresh_staging = Path(lake.new_staging(GRAPH_PINS))
    run(config_for(lake.lake_uri), spark)
    names = sorted(p.name for p in partial.iterdir())
    assert "part-00000-crashed.parquet" not in names and "_manifest.json" in names
    assert all(n.endswith(".parquet") for n in names if n != "_manifest.json")
    assert lake.read(GRAPH_EDGES, DS).num_rows == lake.read_manifest(GRAPH_EDGES, DS).row_count
    assert not old_staging.exists() and fresh_staging.exists()


def test_empty_window_is_an_error_naming_window_and_lake(spark, tmp_path):
    from jobs.build_graph import GraphBuildError, run

    lake = Lake(str(tmp_path / "lake"))
    write_tiny_lake(lake)
    late = DS + dt.timedelta(days=60)
    with pytest.raises(GraphBuildError, match=rf"no committed events partitions in the graph window "
                                             rf"{late - dt.timedelta(days=29)}\.\.{late} .* of lake {lake.lake_uri}"):
        run(config_for(lake.lake_uri, ds=late), spark)


def test_window_without_saves_is_an_error(spark, tmp_path):
    from jobs.build_graph import GraphBuildError, run

    lake = Lake(str(tmp_path / "lake"))
    write_tiny_lake(lake)
    clicks = events_table(DS + dt.timedelta(days=1), seed=5).filter(pc.field("action") == "click")
    lake.write(EVENTS, clicks, DS + dt.timedelta(days=1))
    with pytest.raises(GraphBuildError,
                       match=r"no save events with a board in the graph window 2026-01-11\.\.2026-01-11"):
        run(config_for(lake.lake_uri, ds=DS + dt.timedelta(days=1), window_days=1), spark)


def test_no_edges_after_pruning_is_an_error(spark, built):
    from jobs.build_graph import GraphBuildError, run

    lake, _ = built
    with pytest.raises(GraphBuildError, match=r"no edges left after pruning the graph window .* edge\(s\) before"):
        run(config_for(lake.lake_uri, min_board_size=10_000, ds=DS - dt.timedelta(days=2)), spark)
    assert not lake.exists(GRAPH_EDGES, DS - dt.timedelta(days=2))


def test_corrupt_events_file_is_an_error_naming_the_file(spark, tmp_path):
    from jobs.build_graph import run

    lake = Lake(str(tmp_path / "lake"))
    write_tiny_lake(lake)
    bad_day = DS - dt.timedelta(days=2)
    bad_file = lake.data_files(EVENTS, bad_day)[0]
    Path(bad_file).write_bytes(b"PAR1 this is not parquet")
    expected = rf"cannot read Parquet file {re.escape(bad_file)} of table events \(ds={bad_day}\)"
    with pytest.raises(CorruptFileError, match=expected):
        run(config_for(lake.lake_uri), spark)


def test_spark_read_failures_are_re_raised_naming_the_file():
    from jobs.spark import naming_corrupt_files

    message = ("An error occurred while calling o57.count.\n: org.apache.spark.SparkException: [FAILED_READ_FILE."
               "NO_HINT] Encountered error while reading file file:///lake/events/ds=2026-01-01/part-0.parquet.  "
               "SQLSTATE: KD001")
    with pytest.raises(CorruptFileError, match=r"cannot read Parquet file file:///lake/events/ds=2026-01-01/"
                                               r"part-0\.parquet while reading events of 2026-01-01"):
        with naming_corrupt_files("events of 2026-01-01"):
            raise RuntimeError(message)
    with pytest.raises(KeyError):  # other errors pass through unchanged
        with naming_corrupt_files("events"):
            raise KeyError("x")


def test_config_rejects_bad_values():
    from jobs.build_graph import BuildGraphConfig

    with pytest.raises(ValueError, match=r"holdout_days must be in 0\.\.window_days-1 = 0\.\.89, got 90"):
        BuildGraphConfig(lake_uri="x", ds=DS, holdout_days=90)
    with pytest.raises(ValueError, match=r"min_board_size must be >= 1, got 0"):
        BuildGraphConfig(lake_uri="x", ds=DS, min_board_size=0)
    with pytest.raises(ValueError, match=r"ds must be a date in YYYY-MM-DD form, got '2026-13-01'"):
        BuildGraphConfig(lake_uri="x", ds="2026-13-01")


@pytest.mark.slow
def test_spark_submit_builds_the_graph(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    write_tiny_lake(lake)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1"}
    command = [
        str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]", "--driver-memory", "1g",
        "--conf", "spark.ui.enabled=false", "jobs/build_graph.py", "--ds", DS.isoformat(),
        "--lake-uri", lake.lake_uri, "--window-days", "30", "--max-board-degree", "12", "--shuffle-partitions", "2",
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for spec in (GRAPH_EDGES, GRAPH_PINS, GRAPH_BOARDS, GRAPH_CSR):
        assert lake.exists(spec, DS), spec.name
    extra = lake.read_manifest(GRAPH_CSR, DS).extra
    assert extra["isolated_pins"] >= 2 and extra["pruning"]["max_board_degree"] == 12
    assert json.loads(Path(lake.partition_path(GRAPH_CSR, DS), "csr.json").read_text())["num_edges"] == extra["edges"]
