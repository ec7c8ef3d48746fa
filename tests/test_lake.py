"""The lake: atomic partition writes with manifests, contract checks on read."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embeddings.data.schemas import BOARDS, EVENTS
from embeddings.lake import (
    CorruptFileError,
    Lake,
    Manifest,
    PartitionMissingError,
    SchemaMismatchError,
    conform,
    parse_ds,
)

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


def _staging_leftovers(lake, spec) -> list:
    root = lake.local_path(spec, "2026-01-01").parent / "_staging"
    return sorted(root.iterdir()) if root.exists() else []


def test_manifest_lists_the_files_with_sizes_and_round_trips_through_json(lake):
    manifest = lake.write(EVENTS, _events(4), dt.date(2026, 1, 2), extra={"note": "x"})
    part = lake.local_path(EVENTS, "2026-01-02")
    assert manifest.files == [{"path": "part-00000.parquet", "size": (part / "part-00000.parquet").stat().st_size}]
    assert (part / "_manifest.json").exists() and manifest.extra == {"note": "x"}
    assert manifest.table == "events" and manifest.inputs == [] and manifest.created_at
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert lake.exists(EVENTS, "2026-01-02") and not lake.exists(EVENTS, "2026-01-03")


def test_snapshot_round_trip_with_file_uri(tmp_path):
    lake = Lake(f"file://{tmp_path}")
    boards = pa.table({"board_id": [2, 1], "user_id": [5, 6], "name": ["x", "y"]})
    manifest = lake.write(BOARDS, boards)
    assert manifest.ds is None and manifest.row_count == 2
    assert lake.read(BOARDS).equals(conform(boards, BOARDS.schema, "boards"))
    assert (tmp_path / "boards" / "current" / "_manifest.json").exists()
    with pytest.raises(ValueError, match="table boards is a snapshot, not partitioned by ds"):
        lake.list_partitions(BOARDS)


def test_rewrite_has_exactly_the_new_rows_and_no_staging_leftovers(lake):
    lake.write(EVENTS, _events(3), "2026-01-02")
    new = _events(2).set_column(0, "user_id", pa.array([40, 41]))
    lake.write(EVENTS, new, "2026-01-02")
    got = lake.read(EVENTS, "2026-01-02")
    assert got.column("user_id").to_pylist() == [40, 41]
    assert lake.data_files(EVENTS, "2026-01-02")[0].endswith("part-00000.parquet")
    assert len(lake.data_files(EVENTS, "2026-01-02")) == 1
    assert _staging_leftovers(lake, EVENTS) == []


def test_failed_first_write_publishes_nothing_and_cleans_staging(lake, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("injected fault")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="injected fault"):
        lake.write(EVENTS, _events(2), "2026-01-02")
    monkeypatch.undo()
    assert lake.list_partitions(EVENTS) == [] and _staging_leftovers(lake, EVENTS) == []
    with pytest.raises(PartitionMissingError, match=r"table events \(ds=2026-01-02\) at .* is missing \(no _manifest.json\)"):
        lake.read(EVENTS, "2026-01-02")


def test_failed_rewrite_keeps_published_rows_and_manifest(lake, monkeypatch):
    first = lake.write(EVENTS, _events(3), "2026-01-02")
    monkeypatch.setattr(pq, "write_table", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("crash mid-write")))
    with pytest.raises(RuntimeError, match="crash mid-write"):
        lake.write(EVENTS, _events(7), "2026-01-02")
    monkeypatch.undo()
    assert lake.read(EVENTS, "2026-01-02").equals(conform(_events(3), EVENTS.schema, "x"))
    assert lake.read_manifest(EVENTS, "2026-01-02") == first
    assert _staging_leftovers(lake, EVENTS) == []


def test_staging_only_and_manifestless_partitions_are_invisible(lake):
    lake.write(EVENTS, _events(1, dt.date(2026, 1, 1)), "2026-01-01")
    staging = lake.new_staging(EVENTS)
    pq.write_table(_events(1), f"{staging}/part-00000.parquet")
    lake.local_path(EVENTS, "2026-01-03").mkdir(parents=True)
    pq.write_table(_events(1), lake.local_path(EVENTS, "2026-01-03") / "part-00000.parquet")
    assert lake.list_partitions(EVENTS) == [dt.date(2026, 1, 1)]
    table, days = lake.read_range(EVENTS, dt.date(2026, 1, 1), dt.date(2026, 1, 5))
    assert days == [dt.date(2026, 1, 1)] and table.num_rows == 1
    with pytest.raises(PartitionMissingError, match=r"table events \(ds=2026-01-03\) at .* is missing"):
        lake.read(EVENTS, "2026-01-03")
    lake.clean_staging(EVENTS)
    assert _staging_leftovers(lake, EVENTS) == []


def test_partition_with_manifest_but_no_files(lake):
    lake.write(EVENTS, _events(1), "2026-01-02")
    (lake.local_path(EVENTS, "2026-01-02") / "part-00000.parquet").unlink()
    with pytest.raises(PartitionMissingError, match=r"table events \(ds=2026-01-02\) at .* has no Parquet files"):
        lake.read(EVENTS, "2026-01-02")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00 binary", b'{"table": "events"}', b"[1, 2]"])
def test_unreadable_manifest_is_corrupt(lake, content):
    lake.write(EVENTS, _events(1), "2026-01-02")
    (lake.local_path(EVENTS, "2026-01-02") / "_manifest.json").write_bytes(content)
    with pytest.raises(CorruptFileError, match=r"manifest .*_manifest.json of table events \(ds=2026-01-02\) .* is unreadable"):
        lake.read(EVENTS, "2026-01-02")


def test_schema_errors_on_write_and_read_name_table_and_partition(lake):
    with pytest.raises(SchemaMismatchError, match=r"table events \(ds=2026-01-02\) at .*: missing column\(s\) \['ts'\]"):
        lake.write(EVENTS, _events(1).drop_columns(["ts"]), "2026-01-02")
    assert lake.list_partitions(EVENTS) == []
    bad_type = _events(2).set_column(3, "action", pa.array([[1], [2]]))
    with pytest.raises(SchemaMismatchError, match=r"table events \(ds=2026-01-02\).*column 'action' has type list<item: int64>, expected string"):
        lake.write(EVENTS, bad_type, "2026-01-02")
    lake.write(EVENTS, _events(2), "2026-01-02")
    part = lake.local_path(EVENTS, "2026-01-02") / "part-00000.parquet"
    pq.write_table(_events(2).drop_columns(["user_id"]), part)
    with pytest.raises(SchemaMismatchError, match=r"table events \(ds=2026-01-02\) .*part-00000.parquet: missing column\(s\) \['user_id'\]"):
        lake.read(EVENTS, "2026-01-02")
    pq.write_table(_events(2).set_column(4, "ts", pa.array([None, None], EVENTS.schema.field("ts").type)), part)
    with pytest.raises(SchemaMismatchError, match=r"column 'ts' has 2 null value\(s\)"):
        lake.read(EVENTS, "2026-01-02")


def test_conform_casts_selects_and_orders_columns():
    table = _events(2).set_column(0, "user_id", pa.array([1, 2], pa.int32())).append_column("junk", pa.array([0, 0]))
    out = conform(table.select(list(reversed(table.column_names))), EVENTS.schema, "x")
    assert out.schema == EVENTS.schema and out.column("user_id").to_pylist() == [1, 2]


def test_partition_of_several_part_files_with_castable_types(lake):
    lake.write(EVENTS, _events(2), "2026-01-02")
    part = lake.local_path(EVENTS, "2026-01-02")
    other = _events(1).set_column(0, "user_id", pa.array([9], pa.int32()))
    pq.write_table(other, part / "part-00001.parquet")
    table = lake.read(EVENTS, "2026-01-02")
    assert table.schema == EVENTS.schema and table.column("user_id").to_pylist() == [0, 1, 9]


def test_list_partitions_and_read_range_are_ordered(lake):
    for day in (dt.date(2026, 1, 5), dt.date(2026, 1, 1), dt.date(2026, 1, 3), dt.date(2026, 1, 2)):
        lake.write(EVENTS, _events(day.day, day), day)
    (lake.local_path(EVENTS, "2026-01-01").parent / "ds=not-a-day").mkdir()  # ignored, not a partition
    assert lake.list_partitions(EVENTS) == [dt.date(2026, 1, d) for d in (1, 2, 3, 5)]
    table, days = lake.read_range(EVENTS, dt.date(2026, 1, 2), dt.date(2026, 1, 5), columns=["ts", "user_id"])
    assert days == [dt.date(2026, 1, 2), dt.date(2026, 1, 3), dt.date(2026, 1, 5)]
    assert table.column_names == ["ts", "user_id"] and table.num_rows == 2 + 3 + 5
    assert [t.day for t in table.column("ts").to_pylist()] == [2] * 2 + [3] * 3 + [5] * 5
    empty, none = lake.read_range(EVENTS, dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    assert none == [] and empty.num_rows == 0 and empty.schema == EVENTS.schema


def test_parse_ds():
    assert parse_ds("2026-01-02") == parse_ds(dt.datetime(2026, 1, 2, 5)) == dt.date(2026, 1, 2)
    with pytest.raises(ValueError, match=r"ds must be a date in YYYY-MM-DD form, got None"):
        parse_ds(None)
