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
