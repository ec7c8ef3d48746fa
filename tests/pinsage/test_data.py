"""Loading features, neighborhoods and positive pairs; bad input is rejected or counted as documented."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from embeddings.data.engagement import TimeSplit
from embeddings.data.schemas import EVENTS
from embeddings.pinsage.data import features_from_table, neighborhoods_from_table, positive_pairs, rows_of
from tests.pinsage.tiny_data import features_table, neighbors_table

IDS = np.array([30, 10, 20, 40], dtype=np.int64)  # unsorted on purpose


def _features(values=None):
    values = np.arange(8, dtype=np.float32).reshape(4, 2) if values is None else values
    return features_table(IDS, values)


def test_features_are_sorted_by_pin_id():
    pin_ids, features = features_from_table(_features(), "pin_features (test)")
    assert pin_ids.tolist() == [10, 20, 30, 40]
    assert features[:, 0].tolist() == [2.0, 4.0, 0.0, 6.0]
    assert features.flags.writeable


def test_nan_features_are_rejected_naming_the_pins():
    values = np.arange(8, dtype=np.float32).reshape(4, 2)
    values[1, 0] = np.nan
    values[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"2 pin\(s\) have NaN or Inf features, e\.g\. pin_id \[10, 40\]"):
        features_from_table(_features(values), "table pin_features (ds=2026-03-31)")


def test_features_of_different_lengths_are_rejected():
    table = pa.table({"pin_id": pa.array([1, 2, 3], pa.int64()),
                      "features": pa.array([[1.0, 2.0], [1.0], [3.0, 4.0]], pa.list_(pa.float32()))})
    with pytest.raises(ValueError, match=r"one length \(most have 2\); 1 pin\(s\) differ, e\.g\. \[2\]"):
        features_from_table(table, "pin_features")


def test_duplicate_and_empty_feature_tables_are_rejected():
    table = pa.table({"pin_id": pa.array([1, 1], pa.int64()),
                      "features": pa.array([[1.0], [2.0]], pa.list_(pa.float32()))})
    with pytest.raises(ValueError, match=r"pin_id must be unique, found 1 duplicated pin\(s\) \[1\]"):
        features_from_table(table, "pin_features")
    with pytest.raises(ValueError, match="has no rows"):
        features_from_table(table.slice(0, 0), "pin_features")


def _neighbors(rows):
    ids, nbrs, weights = zip(*rows, strict=True)
    return neighbors_table(list(ids), list(nbrs), list(weights), [[] for _ in ids])


def test_neighborhoods_are_padded_top_t_rows():
    pin_ids = np.array([10, 20, 30, 40])
    table = _neighbors([(10, [20, 30, 40], [0.5, 0.3, 0.2]), (20, [10], [1.0]), (30, [], []),
                        (40, [10, 20], [0.6, 0.4])])
    neighbors, weights, hard, stats = neighborhoods_from_table(table, pin_ids, 2, 0, "ppr_neighbors")
    assert neighbors.tolist() == [[1, 2], [0, -1], [-1, -1], [0, 1]]
    assert np.allclose(weights, [[0.5, 0.3], [1.0, 0.0], [0.0, 0.0], [0.6, 0.4]])
    assert hard.shape == (4, 0)
    assert stats["isolated_pins"] == 1 and stats["pins_missing_neighborhood"] == 0


def test_missing_neighborhoods_fall_back_to_isolated_and_are_counted():
    pin_ids = np.array([10, 20, 30, 40])
    table = _neighbors([(10, [20, 99, 40], [0.5, 0.3, 0.2]), (20, [10], [1.0]), (30, [10], [1.0]), (77, [10], [1.0])])
    neighbors, _, _, stats = neighborhoods_from_table(table, pin_ids, 3, 0, "ppr_neighbors", max_missing_share=0.25)
    assert neighbors[3].tolist() == [-1, -1, -1]  # pin 40 has no row: isolated
    assert neighbors[0].tolist() == [1, 3, -1]  # 99 has no features: dropped, the rest moves up
    assert stats == {"pins": 4, "pins_missing_neighborhood": 1, "neighborhoods_without_features": 1,
                     "neighbor_ids_dropped": 1, "isolated_pins": 1}


def test_too_many_missing_neighborhoods_is_an_error():
    table = _neighbors([(10, [20], [1.0])])
    with pytest.raises(ValueError, match=r"3 of 4 pins with features \(75\.0%\) have no neighborhood row, above "
                                         r"the allowed 5\.0%; e\.g\. pin_id \[20, 30, 40\]"):
        neighborhoods_from_table(table, np.array([10, 20, 30, 40]), 2, 0, "ppr_neighbors")


def test_mismatched_lists_and_bad_weights_are_rejected():
    pin_ids = np.array([10, 20])
    with pytest.raises(ValueError, match=r"differ in length for 1 pin\(s\), e\.g\. pin_id \[20\]"):
        neighborhoods_from_table(_neighbors([(10, [20], [1.0]), (20, [10], [0.5, 0.5])]), pin_ids, 2, 0, "ppr")
    with pytest.raises(ValueError, match=r"finite and >= 0; 1 pin\(s\) have bad weights, e\.g\. pin_id \[10\]"):
        neighborhoods_from_table(_neighbors([(10, [20], [-1.0]), (20, [10], [1.0])]), pin_ids, 2, 0, "ppr")


def test_hard_negative_pools_keep_known_pins():
    table = neighbors_table([10, 20, 30], [[20], [10], [10]], [[1.0], [1.0], [1.0]], [[30, 99, 10], [], [20]])
    _, _, hard, _ = neighborhoods_from_table(table, np.array([10, 20, 30]), 1, 3, "ppr")
    assert hard.tolist() == [[2, -1, -1], [-1, -1, -1], [1, -1, -1]]  # 99 unknown, 10 is itself


def test_rows_of_marks_unknown_ids():
    assert rows_of(np.array([10, 20, 30]), np.array([30, 5, 10, 31])).tolist() == [2, -1, 0, -1]


def _events(rows):
    columns = list(zip(*rows, strict=True))
    return pa.table({
        "user_id": pa.array(columns[0], pa.int64()),
        "pin_id": pa.array(columns[1], pa.int64()),
        "action": pa.array(columns[2], pa.string()),
        "ts": pa.array(columns[3], EVENTS.schema.field("ts").type),
        "duration_ms": pa.array(columns[4], pa.int32()),
    })


def test_positive_pairs_are_consecutive_positive_engagements_within_the_gap():
    day = dt.datetime(2026, 3, 20, 12, tzinfo=dt.timezone.utc)
    valid_day = dt.datetime(2026, 3, 29, 12, tzinfo=dt.timezone.utc)
    m = dt.timedelta(minutes=1)
    events = _events([
        (1, 10, "save", day, None),
        (1, 50, "click", day + m, 500),  # short click: not positive, skipped over
        (1, 20, "click", day + 2 * m, 20_000),  # long click: positive -> pair (10, 20)
        (1, 20, "save", day + 3 * m, None),  # same pin again: no pair
        (1, 30, "closeup", day + 100 * m, 15_000),  # gap too long: no pair
        (2, 30, "save", day, None),
        (2, 99, "save", day + m, None),  # 99 has no features: pair dropped
        (3, 10, "save", valid_day, None),
        (3, 30, "save", valid_day + m, None),  # a validation pair
    ])
    split = TimeSplit(dt.date(2026, 3, 31), window_days=20, valid_days=2, test_days=1)
    pairs = positive_pairs(events, np.array([10, 20, 30, 50]), split, max_gap_s=30 * 60)
    assert pairs.train.tolist() == [[0, 1]]
    assert pairs.valid.tolist() == [[0, 2]]
    assert pairs.stats["pairs_without_features"] == 1


def test_positive_pairs_reject_nonpositive_gap():
    with pytest.raises(ValueError, match="max_gap_s must be positive, got 0"):
        positive_pairs(_events([(1, 10, "save", dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc), None)]),
                       np.array([10]), TimeSplit(dt.date(2026, 3, 31)), max_gap_s=0)
