from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from embeddings.data.engagement import (
    TEST, TRAIN, VALID, TimeSplit, positive_mask, split_per_user, time_order, training_window,
)


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


@pytest.mark.parametrize(
    ("action", "duration", "positive"),
    [
        ("save", None, True), ("save", 0, True),
        ("click", 10_000, True), ("click", 9_999, False), ("click", None, False), ("click", float("nan"), False),
        ("closeup", 10_000, True), ("closeup", 9_999, False), ("closeup", None, False),
        ("hide", 10_000, False), ("hide", None, False),
    ],
)
def test_positive_mask_table(action, duration, positive):
    got = positive_mask(np.array([action], dtype=object), np.array([duration], dtype=object))
    assert got.dtype == bool and got.tolist() == [positive]


def test_training_window_bounds():
    assert training_window(dt.date(2026, 1, 10), days=1) == (dt.date(2026, 1, 10), dt.date(2026, 1, 10))
    assert training_window(dt.date(2026, 1, 10), days=10) == (dt.date(2026, 1, 1), dt.date(2026, 1, 10))
    with pytest.raises(ValueError, match="window days must be positive, got 0"):
        training_window(dt.date(2026, 1, 10), days=0)


def test_time_split_defaults_and_edges():
    ds = dt.date(2026, 4, 30)
    split = TimeSplit(ds)
    assert split.start == dt.date(2026, 1, 31)  # 90 days, both ends included
    assert split.test_start == dt.date(2026, 4, 24) and split.valid_start == dt.date(2026, 4, 17)
    days = np.array(["2026-04-16", "2026-04-17", "2026-04-23", "2026-04-24", "2026-04-30"], dtype="datetime64[D]")
    np.testing.assert_array_equal(split.assign(days), [TRAIN, VALID, VALID, TEST, TEST])
    assert split.assign(days).dtype == np.int8
    no_holdout = TimeSplit(ds, window_days=10, valid_days=0, test_days=0)
    assert (no_holdout.assign(days) == TRAIN).all()
    with pytest.raises(ValueError, match=r"valid_days and test_days must be >= 0"):
        TimeSplit(ds, valid_days=-1)
    with pytest.raises(ValueError, match=r"valid_days \+ test_days \(10\) must be below the window \(10 days\)"):
        TimeSplit(ds, window_days=10, valid_days=5, test_days=5)


# (n, test, valid) per the docstring: test = floor(0.2 n), at least 1 when n >= 3; valid carved the same
# way from the n - test that remain (so none when fewer than 3 remain).
@pytest.mark.parametrize(
    ("n", "n_test", "n_valid"),
    [(1, 0, 0), (2, 0, 0), (3, 1, 0), (4, 1, 1), (5, 1, 1), (6, 1, 1), (7, 1, 1), (8, 1, 1), (9, 1, 1), (10, 2, 1)],
)
def test_per_user_split_counts_one_to_ten_with_shuffled_rows(n, n_test, n_valid):
    rng = np.random.default_rng(n)
    ts = (np.datetime64("2026-01-01T00:00:00") + rng.permutation(n) * np.timedelta64(1, "m"))
    pins = rng.permutation(n) + 100
    labels = split_per_user(np.full(n, 7), pins, ts)
    assert labels.dtype == np.int8
    assert [(labels == s).sum() for s in (TEST, VALID)] == [n_test, n_valid]
    by_time = labels[np.argsort(ts)]
    assert (by_time == np.sort(by_time)).all()  # train, then valid, then test, in time


def test_per_user_split_users_are_independent_and_last_by_time_is_test():
    users = np.array([1, 2, 1, 2, 1, 2, 3, 1])
    pins = np.array([5, 5, 6, 6, 7, 7, 5, 8])
    minutes = np.array([3, 0, 1, 2, 0, 1, 0, 2])
    ts = np.datetime64("2026-01-01T00:00") + minutes.astype("timedelta64[m]")
    labels = split_per_user(users, pins, ts)
    # user 1 has 4 actions (1 test, 1 valid): latest pin 5 (min 3) test, then pin 8 (min 2) valid
    assert labels[users == 1].tolist() == [TEST, TRAIN, TRAIN, VALID]
    # user 2 has 3 actions: only the latest (pin 6, min 2) is held out
    assert labels[users == 2].tolist() == [TRAIN, TEST, TRAIN]
    assert labels[users == 3].tolist() == [TRAIN]
    assert split_per_user(users[:0], pins[:0], ts[:0]).shape == (0,)


def test_per_user_split_is_invariant_under_row_permutation():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 30, 400)
    pins = rng.integers(0, 200, 400)
    ts = np.datetime64("2026-01-01") + rng.integers(0, 20, 400).astype("timedelta64[h]")  # many ties
    labels = split_per_user(users, pins, ts)
    for _ in range(3):
        perm = rng.permutation(400)
        np.testing.assert_array_equal(split_per_user(users[perm], pins[perm], ts[perm]), labels[perm])


def test_ties_in_time_follow_the_user_pin_hash_not_pin_order():
    from embeddings.data.engagement import _tie_hash

    pins = np.arange(1, 11, dtype=np.int64)
    ts = np.full(10, np.datetime64("2026-01-01T00:00", "s"))
    for user in range(20):
        users = np.full(10, user, dtype=np.int64)
        labels = split_per_user(users, pins, ts)
        h = _tie_hash(users, pins)
        by_hash = pins[np.argsort(h)]  # (ts, hash) order when every ts is equal; n=10: 2 test, 1 valid
        assert sorted(pins[labels == TEST].tolist()) == sorted(by_hash[-2:].tolist())
        assert pins[labels == VALID].tolist() == [by_hash[-3]]
    tests = [frozenset(pins[split_per_user(np.full(10, u), pins, ts) == TEST].tolist()) for u in range(20)]
    assert len(set(tests)) > 3  # not always the largest (or any fixed) pin ids
    # time still comes first: a strictly later action is test whatever its hash
    later = ts.copy()
    later[0] += np.timedelta64(1, "s")
    assert split_per_user(np.zeros(10, np.int64), pins, later)[0] == TEST


def test_time_order_puts_time_first_and_breaks_ties_by_hash_then_by_the_earlier_keys():
    users = np.array([1, 0, 0, 0, 0, 0, 0], np.int64)
    pins = np.array([5, 9, 3, 7, 1, 4, 2], np.int64)
    ts = np.array([0, 2, 1, 1, 1, 1, 1]).astype("datetime64[D]")
    order = time_order(users, pins, ts)
    assert users[order].tolist() == [0] * 6 + [1]
    assert pins[order][5] == 9  # the only action of day 2 comes last for user 0
    tie = pins[order][:5]
    assert sorted(tie.tolist()) == [1, 2, 3, 4, 7]
    # the order inside the tie is a permutation that does not depend on the input order
    perm = np.random.default_rng(0).permutation(7)
    assert pins[perm][time_order(users[perm], pins[perm], ts[perm])].tolist() == pins[order].tolist()
    # an earlier key sorts before the hash inside a tie (e.g. a slice label)
    first = np.array([0, 0, 1, 1, 0, 1, 0])
    keyed = pins[time_order(users, pins, ts, first)]
    assert sorted(keyed[:2].tolist()) == [1, 2] and sorted(keyed[2:5].tolist()) == [3, 4, 7]
    assert keyed[5:].tolist() == [9, 5]


def test_ties_in_time_are_not_in_pin_order_for_any_user():
    pins = np.arange(50, dtype=np.int64)
    ts = np.zeros(50).astype("datetime64[D]")
    in_pin_order = [bool((np.diff(pins[time_order(np.full(50, u), pins, ts)]) > 0).all()) for u in range(20)]
    assert not any(in_pin_order)
