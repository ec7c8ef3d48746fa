"""The lake: atomic partition writes with manifests, contract checks on read."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embeddings.data.schemas import BOARDS, EVENTS
from embeddings.lake import CorruptFileError, Lake, PartitionMissingError, SchemaMismatchError, conform

TS = dt.datetime(2026, 1, 2, 3, tzinfo=dt.timezone.utc)


def _events(n: int, day: dt.date = dt.date(2026, 1, 2)) -> pa.Table:
    ts = dt.datetime.combine(day, dt.time(3), dt.timezone.utc)
    return pa.table({
        "user_id": list(range(n)), "pin_id": [7] * n, "board_id": [1] * n, "action": ["save"] * n,
        "ts": [ts] * n, "duration_ms": [None] * n, "surface": ["homefeed"] * n,
    })


def test_round_trip_and_manifest(lake):
    board_m = lake.write(BOARDS, pa.table({"board_id": [1], "user_id": [2], "name": ["b"]}))
    manifest = lake.write(EVENTS, _events(3), "2026-01-02", inputs=[board_m], extra={"k": 1})
    assert lake.read(EVENTS, "2026-01-02").num_rows == 3
    assert manifest.row_count == 3 and manifest.ds == "2026-01-02"
    assert manifest.schema_hash == EVENTS.schema_hash
    assert manifest.inputs == [{"table": "boards", "ds": None, "row_count": 1, "schema_hash": BOARDS.schema_hash}]
    assert manifest.files[0]["path"].endswith(".parquet") and manifest.code_version
    assert lake.read_manifest(EVENTS, "2026-01-02") == manifest


def test_rewrite_replaces_the_partition_and_leaves_others(lake):
    lake.write(EVENTS, _events(3, dt.date(2026, 1, 1)), "2026-01-01")
    lake.write(EVENTS, _events(3), "2026-01-02")
    lake.write(EVENTS, _events(2), "2026-01-02")
    assert lake.read(EVENTS, "2026-01-02").num_rows == 2
    assert lake.read(EVENTS, "2026-01-01").num_rows == 3
    assert lake.list_partitions(EVENTS) == [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]
    table, days = lake.read_range(EVENTS, dt.date(2026, 1, 1), dt.date(2026, 1, 1))
    assert table.num_rows == 3 and days == [dt.date(2026, 1, 1)]


def test_half_written_partition_is_not_committed(lake, lake_uri):
    staging = lake.new_staging(EVENTS)
    pq.write_table(_events(1), f"{staging}/part-0.parquet")
    (lake.local_path(EVENTS, "2026-01-05")).mkdir(parents=True)
    pq.write_table(_events(1), lake.local_path(EVENTS, "2026-01-05") / "part-0.parquet")  # no manifest
    assert lake.list_partitions(EVENTS) == []
    with pytest.raises(PartitionMissingError, match=r"table events \(ds=2026-01-05\) .* is missing"):
        lake.read(EVENTS, "2026-01-05")


def test_failed_write_keeps_the_published_partition(lake, monkeypatch):
    lake.write(EVENTS, _events(3), "2026-01-02")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        lake.write(EVENTS, _events(5), "2026-01-02")
    monkeypatch.undo()
    assert lake.read(EVENTS, "2026-01-02").num_rows == 3


def test_corrupt_parquet_names_the_file(lake):
    lake.write(EVENTS, _events(3), "2026-01-02")
    part = lake.local_path(EVENTS, "2026-01-02") / "part-00000.parquet"
    part.write_bytes(b"not parquet at all")
    with pytest.raises(CorruptFileError, match=r"cannot read Parquet file .*part-00000.parquet of table events \(ds=2026-01-02\)"):
        lake.read(EVENTS, "2026-01-02")


def test_schema_mismatches_are_named():
    with pytest.raises(SchemaMismatchError, match=r"events-x: missing column\(s\) \['surface'\]"):
        conform(_events(1).drop_columns(["surface"]), EVENTS.schema, "events-x")
    bad_type = _events(1).set_column(0, "user_id", pa.array(["u1"]))
    with pytest.raises(SchemaMismatchError, match=r"column 'user_id' has type string, expected int64"):
        conform(bad_type, EVENTS.schema, "events-x")
    null_id = _events(1).set_column(1, "pin_id", pa.array([None], pa.int64()))
    with pytest.raises(SchemaMismatchError, match=r"column 'pin_id' has 1 null value"):
        conform(null_id, EVENTS.schema, "events-x")


def test_partitioned_table_needs_a_ds(lake):
    with pytest.raises(ValueError, match="table events is partitioned by ds; a ds is required"):
        lake.write(EVENTS, _events(1))
    with pytest.raises(ValueError, match="ds must be a date in YYYY-MM-DD form, got '2026-1-2x'"):
        lake.write(EVENTS, _events(1), "2026-1-2x")
