from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from embeddings.data.engagement import TEST, TRAIN, VALID, TimeSplit, positive_mask, split_per_user, training_window


def test_positive_engagement_definition():
    actions = np.array(["save", "click", "click", "closeup", "closeup", "hide", "click"], dtype=object)
    duration = np.array([None, 10_000, 9_999, 10_000, None, 60_000, 50_000], dtype=object)
    np.testing.assert_array_equal(positive_mask(actions, duration), [1, 1, 0, 1, 0, 0, 1])


def test_training_window_and_time_split():
    ds = dt.date(2026, 3, 31)
    assert training_window(ds) == (dt.date(2026, 1, 1), ds)
    split = TimeSplit(ds, window_days=30, valid_days=3, test_days=2)
    assert split.test_start == dt.date(2026, 3, 30) and split.valid_start == dt.date(2026, 3, 27)
    days = np.array(["2026-03-26", "2026-03-27", "2026-03-29", "2026-03-30", "2026-03-31"], dtype="datetime64[D]")
    np.testing.assert_array_equal(split.assign(days), [TRAIN, VALID, VALID, TEST, TEST])
    with pytest.raises(ValueError, match=r"valid_days \+ test_days \(30\) must be below the window \(30 days\)"):
        TimeSplit(ds, window_days=30, valid_days=15, test_days=15)


@pytest.mark.parametrize(("n", "n_test", "n_valid"), [(1, 0, 0), (2, 0, 0), (3, 1, 0), (4, 1, 1), (5, 1, 1), (10, 2, 1), (20, 4, 3)])
def test_per_user_split_counts(n, n_test, n_valid):
    ts = np.arange(n).astype("datetime64[s]")
    labels = split_per_user(np.zeros(n, np.int64), np.arange(n), ts)
    assert (labels == TEST).sum() == n_test and (labels == VALID).sum() == n_valid
    # the held-out actions are the latest ones, test after validation
    assert (labels == np.sort(labels)).all()


def test_per_user_split_is_order_independent_and_ties_do_not_follow_pin_ids():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), 10)
    pins = rng.integers(0, 1000, len(users))
    ts = np.zeros(len(users), "datetime64[s]")  # every action at the same time: ties everywhere
    labels = split_per_user(users, pins, ts)
    perm = rng.permutation(len(users))
    np.testing.assert_array_equal(split_per_user(users[perm], pins[perm], ts[perm]), labels[perm])
    # under ties, the test item is not always the user's largest pin id
    largest = [pins[users == u].argmax() for u in range(50)]
    test_pos = [np.flatnonzero(labels[users == u] == TEST)[0] for u in range(50)]
    assert sum(a == b for a, b in zip(largest, test_pos)) < 25
