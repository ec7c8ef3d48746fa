"""The user_sequences reader: the user split, reading a partition, rows -> UserSequences in each mode."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from embeddings.data.schemas import USER_SEQUENCES, Action
from embeddings.lake import PartitionMissingError
from embeddings.pinnerformer.data import SequenceOptions, encode_surfaces
from embeddings.pinnerformer.lake import read_user_sequences, sequences_from_table, split_hash, user_split

DS = dt.date(2026, 1, 10)
CUTOFF = dt.datetime(2026, 1, 9, tzinfo=dt.timezone.utc)  # end of DS minus 2 label days
PIN_IDS = np.array([10, 20, 30, 40, 50], dtype=np.int64)  # pin row = position


def at(hours: float) -> dt.datetime:
    """``hours`` after the cutoff (negative: before it)."""
    return CUTOFF + dt.timedelta(hours=hours)


def row(user: int, split: str, events: list[tuple]) -> dict:
    """One user_sequences row from (pin_id, action, ts) triples, already in timeline order."""
    pins, actions, ts = zip(*events)
    surfaces = ["homefeed", None, "search", "related", "elsewhere", "homefeed"][:len(pins)]
    return {"user_id": user, "split": split, "cutoff_ts": CUTOFF, "pin_id": list(pins), "action": list(actions),
            "surface": surfaces,
            "duration_ms": [None] * len(pins), "ts": list(ts), "num_actions": len(pins),
            "num_input_dropped": 0, "num_future_dropped": 0}


def table() -> pa.Table:
    """User 1 (train): 3 inputs (one on pin 999, not in the pin table), then 2 future saves and a future hide.
    User 2 (valid): 2 inputs and 1 future save. User 3 (test): 1 input and 1 future save."""
    return pa.Table.from_pylist([
        row(1, "train", [(10, "save", at(-30)), (999, "click", at(-20)), (20, "save", at(-1)),
                         (30, "save", at(0)), (40, "hide", at(1)), (50, "save", at(5))]),
        row(2, "valid", [(20, "save", at(-5)), (30, "click", at(-4)), (40, "save", at(2))]),
        row(3, "test", [(50, "save", at(-3)), (10, "save", at(3))]),
    ], schema=USER_SEQUENCES.schema)


def user_events(seqs, user_row: int, what: str = "pins") -> list:
    return getattr(seqs, what)[seqs.ptr[user_row]:seqs.ptr[user_row + 1]].tolist()


# ---- user_split -------------------------------------------------------------------------------------
def test_user_split_is_a_stable_function_of_the_id_with_the_requested_shares():
    ids = np.arange(100_000, dtype=np.int64)
    split = user_split(ids, 0.1, 0.1)
    shares = {name: float((split == name).mean()) for name in ("train", "valid", "test")}
    assert shares == pytest.approx({"train": 0.8, "valid": 0.1, "test": 0.1}, abs=0.005)
    # Shuffled input, same answer per id; a pinned value guards the formula (splitmix64, seed = the id).
    perm = np.random.default_rng(0).permutation(len(ids))
    assert (user_split(ids[perm], 0.1, 0.1) == split[perm]).all()
    assert split_hash(np.array([0], dtype=np.int64))[0] == (0xE220A8397B1DCDAF >> 11) * 2.0**-53  # splitmix64(0)
    assert user_split(np.array([0, 3, 2**62, -7], dtype=np.int64), 0.1, 0.1).tolist() == [
        "train", "test", "valid", "train"]


def test_user_split_shares_are_thresholds_on_one_hash():
    ids = np.arange(5_000, dtype=np.int64)
    u = split_hash(ids)
    split = user_split(ids, 0.2, 0.3)
    assert ((split == "valid") == (u < 0.2)).all()
    assert ((split == "test") == ((u >= 0.2) & (u < 0.5))).all()
    assert (user_split(ids, 0.0, 0.0) == "train").all()


@pytest.mark.parametrize("shares", [(-0.1, 0.1), (0.5, 0.5), (float("nan"), 0.1)])
def test_user_split_refuses_bad_shares(shares):
    with pytest.raises(ValueError, match="valid_share and test_share"):
        user_split(np.arange(3), *shares)


# ---- reading ---------------------------------------------------------------------------------------
def test_read_user_sequences_round_trips_and_names_a_missing_partition(lake):
    with pytest.raises(PartitionMissingError, match=r"user_sequences \(ds=2026-01-10\).*build_sequences.py --ds"):
        read_user_sequences(lake, DS)
    lake.write(USER_SEQUENCES, table(), DS)
    assert read_user_sequences(lake, "2026-01-10").equals(table())


# ---- rows -> UserSequences ------------------------------------------------------------------------
def test_train_mode_splits_each_timeline_at_its_cutoff():
    seqs, user_ids = sequences_from_table(table(), PIN_IDS, mode="train", options=SequenceOptions(window_days=28))
    # User 3 has one input action (< min_actions 2): dropped and counted.
    assert user_ids.tolist() == [1, 2] and user_ids is seqs.user_ids
    assert seqs.counts.num_users_short == 1
    # User 1: inputs 10, 999 (-> -1), 20; labels: the saves at and after the cutoff (the hide is no label).
    assert user_events(seqs, 0) == [0, -1, 1, 2, 4]
    assert (seqs.input_end[0] - seqs.ptr[0], seqs.ptr[1] - seqs.input_end[0]) == (3, 2)
    assert user_events(seqs, 1) == [1, 2, 3]
    assert (seqs.input_end[1] - seqs.ptr[1], seqs.ptr[2] - seqs.input_end[1]) == (2, 1)
    assert seqs.counts.num_unknown_pin_events == 1
    assert user_events(seqs, 0, "actions") == [Action.SAVE.code, Action.CLICK.code, Action.SAVE.code,
                                               Action.SAVE.code, Action.SAVE.code]
    assert user_events(seqs, 0, "surfaces") == encode_surfaces(
        np.array(["homefeed", None, "search", "related", "homefeed"], dtype=object))[0].tolist()
    assert np.isnan(seqs.duration_s).all()
    assert user_events(seqs, 0, "ts")[3] == int(CUTOFF.timestamp())
    assert seqs.future_matrix()[0].indices.tolist() == [2, 4]


def test_label_window_and_split_filter():
    seqs, user_ids = sequences_from_table(table(), PIN_IDS, mode="eval", splits=("valid", "test"),
                                          options=SequenceOptions(window_days=1 / 24, min_actions=1))
    assert user_ids.tolist() == [2, 3]
    # A 1-hour window: user 2's save 2 h after the cutoff and user 3's at 3 h are no labels.
    assert seqs.ptr.tolist() == [0, 2, 3]
    assert seqs.future_matrix().nnz == 0


def test_serve_mode_uses_the_latest_m_actions_of_the_whole_timeline():
    seqs, user_ids = sequences_from_table(table(), PIN_IDS, mode="serve", options=SequenceOptions(max_length=4))
    assert user_ids.tolist() == [1, 2, 3]
    assert (seqs.input_end == seqs.ptr[1:]).all()  # everything is input
    assert seqs.token_lengths.tolist() == [4, 3, 2]
    assert seqs.pins[seqs.input_start[0]:seqs.input_end[0]].tolist() == [1, 2, 3, 4]  # the hide is a token
    assert seqs.counts.num_users_truncated == 1


def test_sequences_from_table_refuses_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of"):
        sequences_from_table(table(), PIN_IDS, mode="predict")
    with pytest.raises(ValueError, match="splits must be among"):
        sequences_from_table(table(), PIN_IDS, mode="train", splits=("holdout",))
    with pytest.raises(ValueError, match="sorted, distinct"):
        sequences_from_table(table(), PIN_IDS[::-1], mode="train")
    ragged = table().set_column(4, "action", pa.array([["save"]] * 3, pa.list_(pa.string())))
    with pytest.raises(ValueError, match="'action' differs in length"):
        sequences_from_table(ragged, PIN_IDS, mode="train")


def test_an_empty_selection_gives_no_users():
    seqs, user_ids = sequences_from_table(table(), PIN_IDS, mode="train", splits=())
    assert seqs.num_users == 0 and len(user_ids) == 0
