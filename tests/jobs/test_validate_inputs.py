"""validate_inputs: a valid day passes; each kind of bad input fails naming table, partition and problem."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from embeddings.data.schemas import BOARDS, EVENTS, PINS
from jobs.validate_inputs import InputValidationError, ValidateInputsConfig, main, run

DS = "2026-02-03"
TS = dt.datetime(2026, 2, 3, 12, tzinfo=dt.timezone.utc)


def _events(**overrides) -> dict:
    cols = {
        "user_id": [1, 1, 2], "pin_id": [10, 11, 10], "board_id": [100, None, None],
        "action": ["save", "click", "hide"], "ts": [TS, TS, TS + dt.timedelta(hours=1)],
        "duration_ms": [None, 12_000, None], "surface": ["homefeed", "search", None],
    }
    cols.update(overrides)
    return cols


@pytest.fixture
def good(lake):
    lake.write(PINS, pa.table({"pin_id": [10, 11], "text": ["a", "b"], "features": [[1.0, 0.0], None],
                               "created_ts": [TS - dt.timedelta(days=9)] * 2}))
    lake.write(BOARDS, pa.table({"board_id": [100], "user_id": [1], "name": ["b"]}))
    lake.write(EVENTS, pa.table(_events()), DS)
    return lake


def _check(lake, match: str) -> None:
    with pytest.raises(InputValidationError, match=match):
        run(ValidateInputsConfig(lake_uri=lake.lake_uri, ds=DS))


def test_valid_inputs_pass(good):
    report = run(ValidateInputsConfig(lake_uri=good.lake_uri, ds=DS))
    assert report.events == 3 and report.pins == 2 and report.boards == 1
    assert report.actions == {"click": 1, "hide": 1, "save": 1}
    main(["--ds", DS, "--lake-uri", good.lake_uri])  # exits normally


def test_missing_partition(good):
    with pytest.raises(InputValidationError, match=r"table events \(ds=2026-02-04\) .* is missing"):
        run(ValidateInputsConfig(lake_uri=good.lake_uri, ds="2026-02-04"))
    with pytest.raises(SystemExit) as exit_info:
        main(["--ds", "2026-02-04", "--lake-uri", good.lake_uri])
    assert exit_info.value.code == 1


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"action": ["save", "repin", "hide"]}, r"table events \(ds=2026-02-03\).*unknown action values \['repin'\]"),
        ({"ts": [TS, TS, TS + dt.timedelta(days=1)]}, r"1 row\(s\) have ts outside the partition day 2026-02-03"),
        ({"board_id": [None, None, None]}, r"1 save\(s\) have a null board_id"),
        ({"board_id": [100, 100, None]}, r"1 non-save action\(s\) carry a board_id"),
        ({"pin_id": [10, 99, 10]}, r"reference pin_id\(s\) absent from the pins snapshot, e.g. \[99\]"),
        ({"board_id": [101, None, None]}, r"reference board_id\(s\) absent from the boards snapshot, e.g. \[101\]"),
        ({"user_id": [1, 1, 1], "pin_id": [10, 10, 10], "action": ["hide"] * 3, "board_id": [None] * 3,
          "ts": [TS] * 3}, r"2 duplicated row\(s\)"),
    ],
)
def test_bad_events(good, overrides, match):
    good.write(EVENTS, pa.table(_events(**overrides)), DS)
    _check(good, match)


def test_empty_partition(good):
    good.write(EVENTS, EVENTS.schema.empty_table(), DS)
    _check(good, r"table events \(ds=2026-02-03\).*has no rows")


def test_wrong_schema_and_null_ids(good):
    part = good.local_path(EVENTS, DS) / "part-00000.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table(_events(user_id=["u1", "u1", "u2"])), part)
    _check(good, r"table events \(ds=2026-02-03\).*column 'user_id' has type string, expected int64")
    pq.write_table(pa.table(_events(pin_id=[10, None, 10])), part)
    _check(good, r"column 'pin_id' has 1 null value")
    part.write_bytes(b"garbage")
    _check(good, r"cannot read Parquet file .*part-00000.parquet of table events \(ds=2026-02-03\)")


def test_nan_pin_features(good):
    good.write(PINS, pa.table({"pin_id": [10, 11], "text": ["a", "b"], "features": [[1.0, float("nan")], [0.0, 1.0]],
                               "created_ts": [TS] * 2}))
    _check(good, r"table pins \(snapshot\).*features has NaN/Inf for 1 pin\(s\), e.g. pin_id \[10\]")


def test_report_counts_the_window(good):
    prev = dt.datetime(2026, 2, 1, 8, tzinfo=dt.timezone.utc)
    good.write(EVENTS, pa.table(_events(ts=[prev] * 3, user_id=[1, 2, 3])), "2026-02-01")
    good.write(EVENTS, pa.table(_events(ts=[prev] * 3, user_id=[1, 2, 3])), "2025-10-01")  # outside 90 days
    report = run(ValidateInputsConfig(lake_uri=good.lake_uri, ds=dt.date(2026, 2, 3)))
    assert report.ds == DS and report.window_partitions == 2 and report.window_days == 90
    assert run(ValidateInputsConfig(lake_uri=good.lake_uri, ds=DS, window_days=1)).window_partitions == 1
    with pytest.raises(ValueError, match="window_days must be positive, got 0"):
        ValidateInputsConfig(lake_uri=good.lake_uri, ds=DS, window_days=0)


def test_ts_before_the_day(good):
    good.write(EVENTS, pa.table(_events(ts=[TS - dt.timedelta(hours=13), TS, TS])), DS)
    _check(good, r"table events \(ds=2026-02-03\).*1 row\(s\) have ts outside the partition day 2026-02-03 "
                 r"\(e.g. days \['2026-02-02'\]\)")


def test_missing_column_and_null_user_ids(good):
    import pyarrow.parquet as pq

    part = good.local_path(EVENTS, DS) / "part-00000.parquet"
    pq.write_table(pa.table(_events()).drop_columns(["surface"]), part)
    _check(good, r"table events \(ds=2026-02-03\).*missing column\(s\) \['surface'\]")
    pq.write_table(pa.table(_events(user_id=[None, 1, 2])), part)
    _check(good, r"table events \(ds=2026-02-03\).*column 'user_id' has 1 null value")


def test_missing_snapshots(lake):
    lake.write(EVENTS, pa.table(_events()), DS)
    _check(lake, r"table pins \(snapshot\) at .* is missing \(no _manifest.json\)")
    lake.write(PINS, pa.table({"pin_id": [10, 11], "text": ["a", "b"], "features": [None, None],
                               "created_ts": [TS] * 2}))
    _check(lake, r"table boards \(snapshot\) at .* is missing")


def test_duplicated_snapshot_ids(good):
    good.write(BOARDS, pa.table({"board_id": [100, 100], "user_id": [1, 2], "name": ["b", "c"]}))
    _check(good, r"table boards \(snapshot\).*1 duplicated board_id\(s\), e.g. \[100\]")
    good.write(PINS, pa.table({"pin_id": [10, 11, 11], "text": ["a", "b", "c"], "features": [None] * 3,
                               "created_ts": [TS] * 3}))
    _check(good, r"table pins \(snapshot\).*1 duplicated pin_id\(s\), e.g. \[11\]")


def test_pin_features_of_mixed_lengths(good):
    good.write(PINS, pa.table({"pin_id": [10, 11], "text": ["a", "b"], "features": [[1.0], [0.0, 1.0]],
                               "created_ts": [TS] * 2}))
    _check(good, r"table pins \(snapshot\).*features vectors have different lengths \[1, 2\]")


def test_corrupt_pins_snapshot(good):
    (good.local_path(PINS, None) / "part-00000.parquet").write_bytes(b"\x00garbage")
    _check(good, r"cannot read Parquet file .*part-00000.parquet of table pins \(snapshot\)")


def test_main_exits_1_on_bad_input_and_logs_the_problem(good, caplog):
    good.write(EVENTS, pa.table(_events(action=["save", "like", "hide"])), DS)
    with pytest.raises(SystemExit) as exit_info:
        main(["--ds", DS, "--lake-uri", good.lake_uri])
    assert exit_info.value.code == 1
    assert "input validation failed" in caplog.text and "unknown action values ['like']" in caplog.text
