from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from embeddings.data.schemas import PIN_FEATURES, PINS
from jobs.build_features import BuildFeaturesConfig, run

UTC = dt.timezone.utc


@pytest.fixture
def pins(lake):
    lake.write(PINS, pa.table({
        "pin_id": [3, 1, 2], "text": ["red shoe", "blue sea", "late pin"], "features": [None, None, None],
        "created_ts": [dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC),
                       dt.datetime(2026, 1, 6, tzinfo=UTC)],
    }))
    return lake


def test_features_for_pins_created_by_ds_with_manifest(pins):
    manifest = run(BuildFeaturesConfig(lake_uri=pins.lake_uri, ds="2026-01-05", text_dim=32))
    table = pins.read(PIN_FEATURES, "2026-01-05")
    assert table.column("pin_id").to_pylist() == [1, 3]  # pin 2 is created after ds; sorted by id
    vectors = np.array(table.column("features").to_pylist())
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert [i["table"] for i in manifest.inputs] == ["pins"] and manifest.extra["dim"] == 32
    run(BuildFeaturesConfig(lake_uri=pins.lake_uri, ds="2026-01-05", text_dim=32))
    assert pins.read(PIN_FEATURES, "2026-01-05").equals(table)  # rerun: identical


def test_no_pins_before_ds(pins):
    with pytest.raises(ValueError, match=r"table pins \(snapshot\).*has no pins created before the end of ds=2025-12-31"):
        run(BuildFeaturesConfig(lake_uri=pins.lake_uri, ds="2025-12-31"))


def test_created_ts_boundary_is_the_end_of_ds(lake):
    end = dt.datetime(2026, 1, 6, tzinfo=UTC)
    lake.write(PINS, pa.table({
        "pin_id": [1, 2, 3], "text": ["a", "b", "c"], "features": [None] * 3,
        "created_ts": [end - dt.timedelta(microseconds=1), end, end + dt.timedelta(days=3)],
    }))
    run(BuildFeaturesConfig(lake_uri=lake.lake_uri, ds=dt.date(2026, 1, 5), text_dim=8))
    assert lake.read(PIN_FEATURES, "2026-01-05").column("pin_id").to_pylist() == [1]
    run(BuildFeaturesConfig(lake_uri=lake.lake_uri, ds=dt.date(2026, 1, 6), text_dim=8))
    assert lake.read(PIN_FEATURES, "2026-01-06").column("pin_id").to_pylist() == [1, 2]
    assert lake.list_partitions(PIN_FEATURES) == [dt.date(2026, 1, 5), dt.date(2026, 1, 6)]


def test_manifest_inputs_name_the_pins_snapshot(pins):
    pins_manifest = pins.read_manifest(PINS)
    manifest = run(BuildFeaturesConfig(lake_uri=pins.lake_uri, ds="2026-01-07", text_dim=16))
    assert manifest.inputs == [{"table": "pins", "ds": None, "row_count": 3, "schema_hash": PINS.schema_hash}]
    assert pins_manifest.row_count == 3
    assert manifest.table == "pin_features" and manifest.ds == "2026-01-07" and manifest.row_count == 3
    assert manifest.extra == {"dim": 16, "text_dim": 16, "with_user_features": False, "zero_text_vectors": 0}
    assert pins.read_manifest(PIN_FEATURES, "2026-01-07") == manifest


def test_user_features_are_appended_and_rerun_is_bitwise_identical(lake):
    lake.write(PINS, pa.table({
        "pin_id": [5, 4], "text": ["", "green hat"], "features": [[0.0, 2.0], None],
        "created_ts": [dt.datetime(2026, 1, 1, tzinfo=UTC)] * 2,
    }))
    config = BuildFeaturesConfig(lake_uri=lake.lake_uri, ds="2026-01-01", text_dim=8)
    manifest = run(config)
    first = lake.read(PIN_FEATURES, "2026-01-01")
    vectors = np.array(first.column("features").to_pylist(), dtype=np.float32)
    assert first.column("pin_id").to_pylist() == [4, 5] and vectors.shape == (2, 10)
    np.testing.assert_allclose(vectors[:, 8:], [[0, 0], [0, 1]])
    assert (vectors[1, :8] == 0).all()  # empty text
    assert manifest.extra["with_user_features"] is True and manifest.extra["zero_text_vectors"] == 1
    run(config)
    assert lake.read(PIN_FEATURES, "2026-01-01").equals(first)
    assert len(lake.data_files(PIN_FEATURES, "2026-01-01")) == 1


def test_nan_user_features_name_the_snapshot_and_pins(lake):
    lake.write(PINS, pa.table({
        "pin_id": [5, 4], "text": ["x", "y"], "features": [[float("nan")], [1.0]],
        "created_ts": [dt.datetime(2026, 1, 1, tzinfo=UTC)] * 2,
    }))
    with pytest.raises(ValueError, match=r"table pins \(snapshot\) at .* \(pins as of ds=2026-01-01\): "
                                         r"pins.features has NaN/Inf values for 1 pin\(s\), e.g. pin_id \[5\]"):
        run(BuildFeaturesConfig(lake_uri=lake.lake_uri, ds="2026-01-01", text_dim=8))
    assert lake.list_partitions(PIN_FEATURES) == []


def test_config_and_missing_snapshot(lake):
    with pytest.raises(ValueError, match="text_dim must be positive, got 0"):
        BuildFeaturesConfig(lake_uri=lake.lake_uri, ds="2026-01-01", text_dim=0)
    with pytest.raises(ValueError, match="ds must be a date in YYYY-MM-DD form, got '01/02/2026'"):
        BuildFeaturesConfig(lake_uri=lake.lake_uri, ds="01/02/2026")
    from embeddings.lake import PartitionMissingError

    with pytest.raises(PartitionMissingError, match=r"table pins \(snapshot\) at .* is missing"):
        run(BuildFeaturesConfig(lake_uri=lake.lake_uri, ds="2026-01-01"))


def test_main_writes_the_partition(pins):
    from jobs.build_features import main

    main(["--ds", "2026-01-05", "--lake-uri", pins.lake_uri, "--text-dim", "8"])
    assert pins.read(PIN_FEATURES, "2026-01-05").num_rows == 2
