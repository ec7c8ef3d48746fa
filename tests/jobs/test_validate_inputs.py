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
