"""What every stage means by a positive engagement, a training window and an evaluation split.

One definition, used by every stage and documented in docs/DATA.md:

* **Positive engagement**: a ``save``, or a ``click``/``closeup`` lasting at least 10 s
  (``duration_ms >= 10_000``). ``hide`` is never positive.
* **Training window**: the ``TRAINING_WINDOW_DAYS`` (90) days ending at ``ds``, both ends included.
* **Nightly evaluation split (by time at ds)**: the last ``test_days`` of the window are the test slice,
  the ``valid_days`` before them the validation slice, everything earlier the training slice.
* **Per-user split (public data with coarse or bursty clocks)**: each user's actions are ordered by
  ``ts``; ties are broken by a stable hash of ``(user_id, pin_id)`` (then row order), so that no id order
  leaks into the split. The last 20% (``floor(0.2 n)``, at least one when ``n >= 3``) are the test slice;
  the validation slice is carved the same way from what remains; users with fewer than 3 actions keep
  everything in training.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from embeddings.data.schemas import Action

POSITIVE_MIN_DURATION_MS = 10_000
TRAINING_WINDOW_DAYS = 90
HOLDOUT_FRACTION = 0.2
MIN_ACTIONS_TO_SPLIT = 3

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "valid", "test")


def positive_mask(actions: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    """Which events are positive engagements.

    Args:
        actions: (N,) action strings (values of ``Action``).
        duration_ms: (N,) durations; NaN or a masked/None value means unknown (never long enough).

    Returns:
        (N,) bool.
    """
    actions = np.asarray(actions, dtype=object)
    duration = np.asarray(duration_ms, dtype=np.float64)  # None -> nan
    long_enough = np.nan_to_num(duration, nan=-1.0) >= POSITIVE_MIN_DURATION_MS
    is_save = actions == Action.SAVE.value
    is_view = (actions == Action.CLICK.value) | (actions == Action.CLOSEUP.value)
    return is_save | (is_view & long_enough)


def training_window(ds: dt.date, days: int = TRAINING_WINDOW_DAYS) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of the training window ending at ``ds``."""
    if days <= 0:
        raise ValueError(f"window days must be positive, got {days}")
    return ds - dt.timedelta(days=days - 1), ds


@dataclass(frozen=True)
class TimeSplit:
    """The nightly split by time at ``ds``: day ranges are inclusive."""

    ds: dt.date
    window_days: int = TRAINING_WINDOW_DAYS
    valid_days: int = 7
    test_days: int = 7

    def __post_init__(self) -> None:
        if self.valid_days < 0 or self.test_days < 0:
            raise ValueError("valid_days and test_days must be >= 0")
        if self.valid_days + self.test_days >= self.window_days:
            raise ValueError(
                f"valid_days + test_days ({self.valid_days + self.test_days}) must be below the "
                f"window ({self.window_days} days)"
            )

    @property
    def start(self) -> dt.date:
        return training_window(self.ds, self.window_days)[0]

    @property
    def test_start(self) -> dt.date:
        return self.ds - dt.timedelta(days=self.test_days - 1)

    @property
    def valid_start(self) -> dt.date:
        return self.test_start - dt.timedelta(days=self.valid_days)

    def assign(self, days: np.ndarray) -> np.ndarray:
        """Split label (TRAIN/VALID/TEST) for each event day; (N,) datetime64[D] -> (N,) int8."""
        days = np.asarray(days, dtype="datetime64[D]")
        out = np.full(days.shape, TRAIN, dtype=np.int8)
        out[days >= np.datetime64(self.valid_start)] = VALID
        out[days >= np.datetime64(self.test_start)] = TEST
        return out


def _tie_hash(user_ids: np.ndarray, pin_ids: np.ndarray) -> np.ndarray:
    """A stable 64-bit mix of (user, pin) (splitmix64 finalizer) used to break ties in time."""
    with np.errstate(over="ignore"):
        x = user_ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ pin_ids.astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def time_order(user_ids: np.ndarray, pin_ids: np.ndarray, ts: np.ndarray, *earlier_keys: np.ndarray) -> np.ndarray:
    """Indices that order events by user, then time; ties in time go by a stable hash of (user, pin).

    The split, PinSage's pairs and the shared protocols (``embeddings.eval.protocols``) use this order, so
    that where timestamps tie (HetRec's are dates) the order inside a tie carries no signal. Ordering a tie
    by pin id would: HetRec's artist ids follow their first appearance in users' top-50 lists, so
    id-adjacent artists share listeners.
    ``earlier_keys`` (each (N,)) sort before the hash inside a tie (e.g. a slice label, so that within a
    timestamp TRAIN comes first). Returns (N,) int64 indices.
    """
    user_ids = np.asarray(user_ids, dtype=np.int64)
    pin_ids = np.asarray(pin_ids, dtype=np.int64)
    ts = np.asarray(ts)
    if np.issubdtype(ts.dtype, np.datetime64):
        ts = ts.astype("datetime64[us]").astype(np.int64)
    keys = (pin_ids, _tie_hash(user_ids, pin_ids), *reversed(earlier_keys), ts, user_ids)
    return np.lexsort(keys)


def _holdout_count(n: np.ndarray) -> np.ndarray:
    hold = np.floor(HOLDOUT_FRACTION * n).astype(np.int64)
    hold = np.maximum(hold, 1)
    return np.where(n >= MIN_ACTIONS_TO_SPLIT, hold, 0)


def split_per_user(user_ids: np.ndarray, pin_ids: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The per-user split: (N,) ids and timestamps -> (N,) int8 labels TRAIN/VALID/TEST.

    Deterministic: the same rows in any order get the same labels.
    """
    user_ids = np.asarray(user_ids, dtype=np.int64)
    pin_ids = np.asarray(pin_ids, dtype=np.int64)
    ts = np.asarray(ts).astype("datetime64[us]").astype(np.int64)
    n = len(user_ids)
    labels = np.full(n, TRAIN, dtype=np.int8)
    if n == 0:
        return labels
    order = time_order(user_ids, pin_ids, ts)
    sorted_users = user_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, n])
    position = np.arange(n) - np.repeat(starts, counts)  # 0-based position within the user, by time
    size = np.repeat(counts, counts)
    n_test = _holdout_count(size)
    n_valid = _holdout_count(size - n_test)
    from_end = size - 1 - position
    sorted_labels = np.where(from_end < n_test, TEST, np.where(from_end < n_test + n_valid, VALID, TRAIN))
    labels[order] = sorted_labels.astype(np.int8)
    return labels
