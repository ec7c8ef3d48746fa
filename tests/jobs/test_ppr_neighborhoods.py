"""jobs.ppr_neighborhoods on a literal graph whose neighborhoods are obvious (one shared local Spark session)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from embeddings.data.schemas import GRAPH_CSR, PPR_NEIGHBORS
from embeddings.graph.csr import BipartiteCSR
from embeddings.lake import Lake, PartitionMissingError

REPO_ROOT = Path(__file__).resolve().parents[2]
DS = dt.date(2026, 1, 10)
WALK = {"num_steps": 2_000, "top_t": 5, "band": (5, 15), "num_band_samples": 3, "seed": 7}


def chain_graph(num_boards: int = 6) -> BipartiteCSR:
    """Boards 0..n-1 hold pins 5b..5b+5 (neighbouring boards share a pin: one component), pins 5n+1 and
    5n+2 are isolated, and one more board holds just the pair 5n+3, 5n+4 (a component of two).
    Pin ids are 1000 + 3 * index, board ids 500 + index, so ids and indices never coincide."""
    pins, boards = [], []
    for b in range(num_boards):
        for p in range(5 * b, 5 * b + 6):
            pins.append(p)
            boards.append(b)
    last = 5 * num_boards
    pins += [last + 3, last + 4]
    boards += [num_boards, num_boards]
    num_pins = last + 5
    return BipartiteCSR.from_edges(
        np.array(pins), np.array(boards), 1000 + 3 * np.arange(num_pins), 500 + np.arange(num_boards + 1)
    )


def write_graph(lake: Lake, graph: BipartiteCSR, ds: dt.date = DS) -> None:
    from jobs.build_graph import write_csr

    write_csr(lake, graph, ds, inputs=[], extra={"edges": graph.num_edges})


# ---- without Spark or the walker ----------------------------------------------------------------------------------
def test_neighborhoods_to_arrow_drops_padding_and_maps_ids():
    from jobs.ppr_neighborhoods import neighborhoods_to_arrow

    pin_ids = np.array([10, 11, 12, 13], dtype=np.int64)
    result = SimpleNamespace(
        seeds=np.array([2, 0, 3], dtype=np.int32),
        neighbors=np.array([[0, 1, -1], [2, -1, -1], [-1, -1, -1]], dtype=np.int32),
        weights=np.array([[0.75, 0.25, 0], [1.0, 0, 0], [0, 0, 0]], dtype=np.float32),
        band_samples=np.array([[3, -1], [-1, -1], [-1, -1]], dtype=np.int32),
        steps=np.array([100, 50, 0], dtype=np.int64),
    )
    batch = neighborhoods_to_arrow(result, pin_ids)
    assert batch.schema == PPR_NEIGHBORS.schema
    assert batch.to_pydict() == {
        "pin_id": [12, 10, 13],
        "neighbor_ids": [[10, 11], [12], []],
        "neighbor_weights": [[0.75, 0.25], [1.0], []],
        "hard_negative_ids": [[13], [], []],
        "num_steps": [100, 50, 0],
    }


def test_count_pins_without_neighbors():
    from jobs.ppr_neighborhoods import count_pins_without_neighbors

    assert count_pins_without_neighbors(chain_graph()) == (2, 2)
    # Pin 2 is on a board of its own only: not isolated, but no walk can leave it.
    lonely = BipartiteCSR.from_edges(np.array([0, 1, 2]), np.array([0, 0, 1]), np.arange(4), np.arange(2))
    assert count_pins_without_neighbors(lonely) == (1, 2)


def test_graph_is_loaded_once_per_process_and_again_when_rewritten(tmp_path):
    from jobs.ppr_neighborhoods import load_graph_cached

    path = tmp_path / "csr"
    chain_graph().save(path)
    first, load_s = load_graph_cached(str(path), via_spark_files=False)
    again, again_s = load_graph_cached(str(path), via_spark_files=False)
    assert again is first and again_s == 0.0 and load_s > 0
    (path / "csr.json").unlink()  # a rewritten partition is a new csr.json (new inode)
    chain_graph(num_boards=2).save(path)
    reloaded, _ = load_graph_cached(str(path), via_spark_files=False)
    assert reloaded.num_boards == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_steps": 0}, r"num_steps must be >= 1, got 0"), ({"alpha": 1.0}, r"alpha must be in \(0, 1\), got 1\.0"),
     ({"band": (50, 20)}, r"band must be \(lo, hi\) ranks with 0 <= lo < hi, got \(50, 20\)"),
     ({"csr_distribution": "nfs"}, r"csr_distribution must be one of \('auto', 'path', 'spark_files'\), got 'nfs'"),
     ({"pin_limit": 10}, r"pin_limit=10 walks only part of the graph, so it requires dry_run=True"),
     ({"pin_limit": 0, "dry_run": True}, r"pin_limit must be >= 1 or None, got 0")],
)
def test_config_rejects_bad_values(kwargs, match):
    from jobs.ppr_neighborhoods import PprNeighborhoodsConfig

    with pytest.raises(ValueError, match=match):
        PprNeighborhoodsConfig(lake_uri="x", ds=DS, **kwargs)


# ---- Spark + the walker -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("embeddings.graph.walks")
    from jobs.spark import build_spark_session

    session = build_spark_session("test_ppr_neighborhoods", master="local[2]", shuffle_partitions=3,
                                  conf={"spark.ui.enabled": "false"})
    yield session
    session.stop()


def config_for(lake: Lake, **overrides):
    from jobs.ppr_neighborhoods import PprNeighborhoodsConfig

    return PprNeighborhoodsConfig(**{"lake_uri": lake.lake_uri, "ds": DS, **WALK, "num_tasks": 3, **overrides})


@pytest.fixture(scope="module")
def walked(spark, tmp_path_factory):
    from jobs.ppr_neighborhoods import run

    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    graph = chain_graph()
    write_graph(lake, graph)
    result = run(config_for(lake), spark)
    return lake, graph, result


def read_sorted(lake: Lake, ds: dt.date = DS) -> pa.Table:
    return lake.read(PPR_NEIGHBORS, ds).sort_by("pin_id")


@pytest.mark.spark
def test_every_pin_gets_its_neighborhood(walked):
    lake, graph, result = walked
    rows = read_sorted(lake).to_pylist()
    assert [r["pin_id"] for r in rows] == graph.pin_ids.tolist()
    pair = set(graph.pin_ids[-2:].tolist())
    isolated = set(graph.pin_ids[-4:-2].tolist())
    chain = set(graph.pin_ids[:-4].tolist())
    for row in rows:
        pin, neighbors, weights = row["pin_id"], row["neighbor_ids"], row["neighbor_weights"]
        if pin in isolated:  # an empty neighborhood, not an error
            assert neighbors == weights == row["hard_negative_ids"] == []
            continue
        assert pin not in neighbors and len(set(neighbors)) == len(neighbors) <= WALK["top_t"]
        assert sum(weights) == pytest.approx(1.0, abs=1e-5)
        assert weights == sorted(weights, reverse=True)
        assert row["num_steps"] > 0
        component = pair if pin in pair else chain
        assert set(neighbors) <= component - {pin}
        assert not set(row["hard_negative_ids"]) & set(neighbors)
        assert set(row["hard_negative_ids"]) <= component - {pin}
    assert rows[-1]["neighbor_ids"] == [rows[-2]["pin_id"]] and rows[-1]["neighbor_weights"] == [1.0]
    extra = lake.read_manifest(PPR_NEIGHBORS, DS).extra
    assert extra["isolated_pins"] == result.isolated_pins == 2
    assert result.num_pins == graph.num_pins == lake.read_manifest(PPR_NEIGHBORS, DS).row_count
    assert result.total_steps == sum(r["num_steps"] for r in rows)
    assert result.timings["walk_s"] > 0 and result.timings["steps_per_core_s"] > 0
    assert [i["table"] for i in lake.read_manifest(PPR_NEIGHBORS, DS).inputs] == ["graph_csr"]


@pytest.mark.spark
def test_same_output_for_any_tasks_partitions_and_distribution(spark, walked, tmp_path):
    from jobs.ppr_neighborhoods import run

    lake, graph, _ = walked
    expected = read_sorted(lake)
    other = Lake(str(tmp_path / "lake"))
    write_graph(other, graph)
    for num_tasks, partitions, distribution, batch_size in [(1, 1, "path", 1024), (5, 7, "spark_files", 4)]:
        run(config_for(other, num_tasks=num_tasks, shuffle_partitions=partitions,
                       csr_distribution=distribution, batch_size=batch_size), spark)
        assert read_sorted(other).equals(expected), (num_tasks, partitions, distribution)


@pytest.mark.spark
def test_rerun_rewrites_one_ds_and_sees_a_rewritten_graph(spark, tmp_path):
    from jobs.ppr_neighborhoods import run

    lake = Lake(str(tmp_path / "lake"))
    earlier = DS - dt.timedelta(days=1)
    write_graph(lake, chain_graph(), earlier)
    write_graph(lake, chain_graph())
    run(config_for(lake, ds=earlier), spark)
    earlier_files = {p.name: p.read_bytes() for p in Path(lake.partition_path(PPR_NEIGHBORS, earlier)).iterdir()}
    # A half-finished earlier attempt at DS: files but no manifest.
    partial = Path(lake.partition_path(PPR_NEIGHBORS, DS))
    partial.mkdir(parents=True)
    (partial / "part-00000-crashed.parquet").write_bytes(b"half")
    run(config_for(lake), spark)
    assert "part-00000-crashed.parquet" not in os.listdir(partial)
    first = read_sorted(lake)
    # The graph of DS is rebuilt smaller while the Python workers (and their cached graphs) live on.
    smaller = chain_graph(num_boards=2)
    write_graph(lake, smaller)
    run(config_for(lake), spark)
    second = read_sorted(lake)
    assert second.column("pin_id").to_pylist() == smaller.pin_ids.tolist()
    assert second.num_rows < first.num_rows
    assert {p.name: p.read_bytes() for p in Path(lake.partition_path(PPR_NEIGHBORS, earlier)).iterdir()} \
        == earlier_files
    assert lake.list_partitions(PPR_NEIGHBORS) == [earlier, DS]


def lake_files(lake: Lake) -> dict[str, bytes]:
    """Every file under the lake (relative path -> bytes); empty directories are not content."""
    root = Path(lake.lake_uri)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.spark
def test_dry_run_walks_the_first_pins_and_writes_nothing(spark, walked, tmp_path):
    from jobs.ppr_neighborhoods import run

    lake, graph, full = walked
    published = read_sorted(lake).to_pylist()
    before = lake_files(lake)
    for _ in range(2):  # a rerun finds no leftovers and gives the same figures
        result = run(config_for(lake, dry_run=True, pin_limit=7), spark)
        assert result.manifest is None and result.walked_pins == 7 and result.num_pins == graph.num_pins
        assert result.num_tasks == 3
        # The steps of exactly pins 0..6 (pin_id order = index order), as the committed run took them.
        assert result.total_steps == sum(r["num_steps"] for r in published[:7]) > 0
        assert result.timings["walk_s"] > 0 and result.timings["steps_per_core_s"] > 0
        assert result.timings["task_walk_s"] > 0 and result.timings["task_write_s"] > 0
        assert lake_files(lake) == before
    # A limit beyond the graph walks every pin; a dry run on a lake without the output creates no partition.
    other = Lake(str(tmp_path / "lake"))
    write_graph(other, graph)
    before = lake_files(other)
    result = run(config_for(other, dry_run=True, pin_limit=10 * graph.num_pins), spark)
    assert result.walked_pins == graph.num_pins and result.total_steps == full.total_steps
    assert lake_files(other) == before and not other.exists(PPR_NEIGHBORS, DS)
    assert other.list_partitions(PPR_NEIGHBORS) == []


@pytest.mark.spark
def test_missing_or_corrupt_graph_is_an_error_naming_it(spark, tmp_path):
    from jobs.ppr_neighborhoods import run

    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(PartitionMissingError, match=r"table graph_csr \(ds=2026-01-10\) at .* is missing"):
        run(config_for(lake), spark)
    write_graph(lake, chain_graph())
    bad = Path(lake.partition_path(GRAPH_CSR, DS)) / "pin_indices.npy"
    bad.write_bytes(b"not an array")
    with pytest.raises(ValueError, match=rf"CSR array {re.escape(str(bad))} is missing or corrupt"):
        run(config_for(lake), spark)
    assert not lake.exists(PPR_NEIGHBORS, DS)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_submit_writes_neighborhoods(tmp_path):
    pytest.importorskip("embeddings.graph.walks")
    lake = Lake(str(tmp_path / "lake"))
    graph = chain_graph()
    write_graph(lake, graph)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1"}
    command = [
        str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]", "--driver-memory", "1g",
        "--conf", "spark.ui.enabled=false", "jobs/ppr_neighborhoods.py", "--ds", DS.isoformat(),
        "--lake-uri", lake.lake_uri, "--num-steps", "500", "--top-t", "5", "--band", "5,15",
        "--num-band-samples", "3", "--num-tasks", "4",
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    table = read_sorted(lake)
    assert table.column("pin_id").to_pylist() == graph.pin_ids.tolist()
    assert lake.read_manifest(PPR_NEIGHBORS, DS).extra["isolated_pins"] == 2
    assert "steps_per_s" in done.stdout
