"""User timelines: sorting, rejection, dropping, truncation, unknown pins, label windows, batching."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.data.schemas import Action
from embeddings.pinnerformer.data import (
    SequenceOptions,
    build_user_sequences,
    collate_tokens,
    encode_actions,
    encode_surfaces,
    to_seconds,
)
from tests.pinnerformer.tiny_data import HOUR, NOW, T0

SAVE, CLICK, HIDE = Action.SAVE.code, Action.CLICK.code, Action.HIDE.code
DAY = 24 * HOUR


def _build(events, **kwargs):
    users, pins, actions, ts = (np.asarray(c) for c in zip(*events))
    duration = np.where(actions == CLICK, 30.0, np.nan)  # clicks long enough to be positive
    kwargs.setdefault("num_pins", 10)
    kwargs.setdefault("now_ts", NOW)
    return build_user_sequences(users, pins, actions, np.zeros(len(users)), duration, ts, **kwargs)


def test_sorts_out_of_order_events_and_counts_them():
    seqs = _build([(1, 3, SAVE, T0 + 2 * HOUR), (1, 4, SAVE, T0), (1, 5, SAVE, T0 + HOUR), (2, 1, SAVE, T0),
                   (2, 2, SAVE, T0 + HOUR)])
    assert seqs.user_ids.tolist() == [1, 2]
    assert seqs.pins[seqs.ptr[0]:seqs.ptr[1]].tolist() == [4, 5, 3]
    assert seqs.counts.num_out_of_order == 1  # only (1, pin 4) came after a later event of its user


def test_rejects_future_events_and_drops_short_users_with_counts():
    seqs = _build([(1, 3, SAVE, T0), (1, 4, SAVE, NOW + 1), (2, 1, SAVE, T0), (2, 2, SAVE, T0 + 1),
                   (3, 5, SAVE, T0)])
    c = seqs.counts
    assert (c.num_events, c.num_future_rejected, c.num_users_short, c.num_users) == (5, 1, 2, 1)
    assert seqs.user_ids.tolist() == [2]


def test_truncates_to_the_latest_max_length_tokens_and_keeps_the_history():
    events = [(1, p, SAVE, T0 + p * HOUR) for p in range(7)] + [(2, 1, SAVE, T0), (2, 2, SAVE, T0 + 1)]
    seqs = _build(events, options=SequenceOptions(max_length=4))
    assert (seqs.counts.num_users_truncated, seqs.counts.num_events_truncated) == (1, 3)
    assert seqs.token_lengths.tolist() == [4, 2]
    tokens = collate_tokens(seqs, np.array([0, 1]))
    assert tokens.pins[0].tolist() == [3, 4, 5, 6]
    assert tokens.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert seqs.history_matrix()[0].indices.tolist() == list(range(7))  # truncated tokens are still history


def test_cutoff_splits_input_and_future_positives_within_the_window():
    events = [(1, 0, SAVE, T0), (1, 1, SAVE, T0 + HOUR),
              (1, 2, SAVE, T0 + 2 * DAY), (1, 3, HIDE, T0 + 3 * DAY), (1, 4, SAVE, T0 + 40 * DAY)]
    seqs = _build(events, cutoff_ts=T0 + HOUR, options=SequenceOptions(window_days=28))
    assert seqs.input_end.tolist() == [2] and seqs.ptr.tolist() == [0, 3]
    assert seqs.pins.tolist() == [0, 1, 2]  # the hide and the save after 28 days are not labels
    assert seqs.counts.num_label_events == 1
    assert seqs.future_matrix("window")[0].indices.tolist() == [2]


def test_window_bounds_and_next_positive_on_a_literal_timeline():
    # user 1: save p0 @0h, hide p1 @1h, save p2 @2h, click(30 s) p3 @50 days; user 2: save p5, save p6
    events = [(1, 0, SAVE, T0), (1, 1, HIDE, T0 + HOUR), (1, 2, SAVE, T0 + 2 * HOUR), (1, 3, CLICK, T0 + 50 * DAY),
              (2, 5, SAVE, T0), (2, 6, SAVE, T0 + HOUR)]
    seqs = _build(events)
    assert seqs.positive.tolist() == [True, False, True, True, True, True]
    lo, hi = seqs.window_bounds(np.array([0, 1, 2, 3, 4, 5]))
    labels = [seqs.pins[seqs.positive_index[a:b]].tolist() for a, b in zip(lo, hi)]
    assert labels == [[2], [2], [], [], [6], []]  # p3 is 50 days later: outside 28 days
    assert seqs.next_positive(np.array([0, 1, 2, 3, 4, 5])).tolist() == [2, 2, 3, -1, 5, -1]
    assert seqs.positive_counts().tolist() == [1, 0, 1, 1, 0, 1, 1, 0, 0, 0]


def test_equal_timestamps_keep_their_given_order_and_count_as_later():
    seqs = _build([(1, 4, SAVE, T0), (1, 7, SAVE, T0), (1, 2, SAVE, T0)])
    assert seqs.pins.tolist() == [4, 7, 2] and seqs.counts.num_out_of_order == 0
    lo, hi = seqs.window_bounds(np.array([0]))
    assert seqs.pins[seqs.positive_index[lo[0]:hi[0]]].tolist() == [7, 2]


def test_unknown_pins_are_counted_tokens_but_never_labels():
    seqs = _build([(1, -1, SAVE, T0), (1, 2, SAVE, T0 + 1), (1, -1, SAVE, T0 + 2)])
    assert seqs.counts.num_unknown_pin_events == 2
    assert seqs.positive.tolist() == [False, True, False]
    assert collate_tokens(seqs, np.array([0])).pins.tolist() == [[-1, 2, -1]]
    with pytest.raises(ValueError, match=r"pin rows must lie in \[-1, 10\)"):
        _build([(1, 10, SAVE, T0), (1, 2, SAVE, T0)])


def test_encoders_and_input_checks():
    codes, unknown = encode_surfaces(np.array(["search", None, "lockscreen", "homefeed"], dtype=object))
    assert codes.tolist() == [2, 0, 0, 1] and unknown == 1
    assert encode_actions(np.array(["save", "hide"], dtype=object)).tolist() == [SAVE, HIDE]
    with pytest.raises(ValueError, match="actions outside"):
        encode_actions(np.array(["like"], dtype=object))
    assert to_seconds(np.array(["2026-01-01T00:00:01.9"], dtype="datetime64[ms]")).tolist() == [T0 + 1]
    with pytest.raises(ValueError, match="equal length"):
        build_user_sequences(np.zeros(2), np.zeros(3), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2),
                             num_pins=5, now_ts=NOW)


def test_timestamps_in_the_wrong_unit_are_refused():
    with pytest.raises(ValueError, match="check the ts unit"):
        _build([(1, 1, SAVE, T0 * 1000), (1, 2, SAVE, T0)], now_ts=T0 * 10_000)  # milliseconds mixed in


def test_future_matrix_next_is_each_users_first_future_positive():
    events = [(1, 0, SAVE, T0), (1, 1, SAVE, T0 + 1), (1, 5, SAVE, T0 + 3), (1, 4, SAVE, T0 + 2),
              (2, 2, SAVE, T0), (2, 3, SAVE, T0 + 1), (2, 6, HIDE, T0 + 2), (2, 7, SAVE, T0 + 5)]
    seqs = _build(events, cutoff_ts=T0 + 1)
    nxt, window = seqs.future_matrix("next"), seqs.future_matrix("window")
    assert [nxt[u].indices.tolist() for u in range(2)] == [[4], [7]]
    assert [sorted(window[u].indices.tolist()) for u in range(2)] == [[4, 5], [7]]
    assert [seqs.history_matrix()[u].indices.tolist() for u in range(2)] == [[0, 1], [2, 3]]
