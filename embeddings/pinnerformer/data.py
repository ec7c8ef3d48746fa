"""In-memory user sequences for PinnerFormer: time-ordered actions per user and their future positives.

``build_user_sequences`` turns events ``(user, pin row, action, surface, duration, ts)`` into one
time-ordered timeline per user, split at an optional cutoff into the **input** (actions at or before the
cutoff, of which the most recent ``max_length`` M are the model's tokens) and the **future** (positive
engagements after it, within ``window_days``, kept only as labels). Bad input is counted, never
silently dropped (docs/PINNERFORMER.md):

* events after ``now_ts`` are rejected (a clock in the future);
* events out of time order are sorted (stable: ties keep their given order);
* users with fewer than ``min_actions`` (2) input actions are dropped: no embedding;
* inputs longer than M are truncated to the latest M tokens (the older ones still count as history,
  for masking in evaluation);
* events on pins missing from the PinSage table (pin row ``-1``) get the learned unknown-pin token and
  are never labels.

Labels are looked up by position: ``window_bounds`` gives, for any event, the range of the user's
labelable positives strictly after it in order and at most ``window_days`` after it in time, and
``next_positive`` the first of them without the time limit. The objectives (``loss.sample_queries``)
are built on these two.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from embeddings.data.engagement import positive_mask
from embeddings.data.schemas import ACTION_VALUES
from embeddings.pinnerformer.model import TokenInputs

log = logging.getLogger(__name__)

SURFACES = ("homefeed", "search", "related")  # codes 1..; 0 = missing or unknown
DAY_S = 86_400
_TS_BITS = 34  # per-user time keys: user row << 34 | seconds since the earliest event (544 years)


@dataclass(frozen=True)
class SequenceOptions:
    """How timelines are cut.

    Args:
        max_length: M, the most recent input actions kept as tokens (the paper: 256).
        window_days: K, the future window of the all-action objectives (the paper: 28).
        min_actions: users with fewer input actions get no sequence (the issue: 2).
    """

    max_length: int = 256
    window_days: float = 28.0
    min_actions: int = 2

    def __post_init__(self) -> None:
        if self.max_length <= 0 or self.window_days <= 0 or self.min_actions < 1:
            raise ValueError(f"need max_length > 0, window_days > 0 and min_actions >= 1, got {self.max_length}, "
                             f"{self.window_days}, {self.min_actions}")

    @property
    def window_s(self) -> int:
        return int(round(self.window_days * DAY_S))


@dataclass(frozen=True)
class SequenceCounts:
    """What ``build_user_sequences`` did with its input (every bad-input rule is counted here)."""

    num_events: int
    num_future_rejected: int
    num_out_of_order: int
    num_users_short: int
    num_users_truncated: int
    num_events_truncated: int
    num_unknown_pin_events: int
    num_users: int
    num_input_events: int
    num_label_events: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class UserSequences:
    """Per-user timelines in CSR layout (events of user ``u`` = ``[ptr[u], ptr[u+1])``, time order).

    Events ``[ptr[u], input_end[u])`` are the input (history); ``[input_start[u], input_end[u])`` its
    model tokens (the latest M); ``[input_end[u], ptr[u+1])`` the future positives (labels only).

    Attributes:
        user_ids: (U,) the users' ids, ascending.
        ptr, input_start, input_end: (U+1,), (U,), (U,) int64 offsets.
        pins: (E,) int64 pin rows (-1 = not in the PinSage table).
        actions, surfaces: (E,) int64 codes.
        duration_s: (E,) float32, NaN = unknown.
        ts: (E,) int64 UTC seconds.
        positive: (E,) bool, the project's positive engagement on a known pin (the labelable events).
        num_pins: P, pin rows are ``0..P-1``.
        window_s: K in seconds.
        counts: what was rejected, sorted, dropped and truncated.
    """

    user_ids: np.ndarray
    ptr: np.ndarray
    input_start: np.ndarray
    input_end: np.ndarray
    pins: np.ndarray
    actions: np.ndarray
    surfaces: np.ndarray
    duration_s: np.ndarray
    ts: np.ndarray
    positive: np.ndarray
    num_pins: int
    window_s: int
    counts: SequenceCounts

    def __post_init__(self) -> None:
        users = np.repeat(np.arange(self.num_users, dtype=np.int64), np.diff(self.ptr))
        pos = np.flatnonzero(self.positive)
        ts0 = int(self.ts.min()) if len(self.ts) else 0
        if len(self.ts) and int(self.ts.max()) - ts0 >= 1 << (_TS_BITS - 1):
            raise ValueError(f"events span {int(self.ts.max()) - ts0} s, more than the label index supports "
                             f"(2^{_TS_BITS - 1} s); check the ts unit (seconds expected)")
        object.__setattr__(self, "_event_user", users)
        object.__setattr__(self, "_positive_index", pos)
        object.__setattr__(self, "_positive_key", (users[pos] << _TS_BITS) | (self.ts[pos] - ts0))
        object.__setattr__(self, "_ts0", ts0)

    @property
    def num_users(self) -> int:
        return len(self.ptr) - 1

    @property
    def token_lengths(self) -> np.ndarray:
        return self.input_end - self.input_start

    def window_bounds(self, events: np.ndarray, window_s: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The labels of each event: positives after it in order and at most ``window_s`` after it in time.

        Args:
            events: (Q,) absolute event indices.
            window_s: the window (default: the sequences' K).

        Returns:
            ``(lo, hi)``: (Q,) int64 ranges into ``positive_index`` (empty when ``hi <= lo``).
        """
        events = np.asarray(events, dtype=np.int64)
        window = self.window_s if window_s is None else int(window_s)
        if not 0 <= window < 1 << (_TS_BITS - 1):
            raise ValueError(f"window_s must lie in [0, 2^{_TS_BITS - 1}) seconds, got {window}")
        lo = np.searchsorted(self._positive_index, events, side="right")
        key = (self._event_user[events] << _TS_BITS) | (self.ts[events] - self._ts0 + window)
        hi = np.searchsorted(self._positive_key, key, side="right")
        return lo, hi

    def next_positive(self, events: np.ndarray) -> np.ndarray:
        """(Q,) absolute index of the first positive after each event of the same user, -1 where none."""
        events = np.asarray(events, dtype=np.int64)
        lo = np.searchsorted(self._positive_index, events, side="right")
        found = np.full(len(events), -1, dtype=np.int64)
        inside = np.flatnonzero(lo < len(self._positive_index))
        cand = self._positive_index[lo[inside]]
        same = self._event_user[cand] == self._event_user[events[inside]]
        found[inside[same]] = cand[same]
        return found

    @property
    def positive_index(self) -> np.ndarray:
        """(S,) absolute indices of the labelable positives, ascending."""
        return self._positive_index

    def positive_counts(self) -> np.ndarray:
        """(P,) how often each pin is a labelable positive (the logQ correction's frequencies)."""
        return np.bincount(self.pins[self._positive_index], minlength=self.num_pins).astype(np.int64)

    def _in_input(self) -> np.ndarray:
        """(E,) True for input events (before each user's cutoff)."""
        return np.arange(len(self.pins)) < np.repeat(self.input_end, np.diff(self.ptr))

    def _matrix(self, events: np.ndarray) -> sp.csr_matrix:
        rows, cols = self._event_user[events], self.pins[events]
        out = sp.csr_matrix((np.ones(len(events)), (rows, cols)), shape=(self.num_users, self.num_pins))
        out.sum_duplicates()
        out.data[:] = 1.0
        return out

    def history_matrix(self) -> sp.csr_matrix:
        """(U, P) 0/1 matrix of the known pins of each user's input, truncated tokens included (masking)."""
        return self._matrix(np.flatnonzero(self._in_input() & (self.pins >= 0)))

    def future_matrix(self, mode: str = "window") -> sp.csr_matrix:
        """(U, P) targets after each user's input: all future positives (``window``) or the first (``next``)."""
        if mode not in ("window", "next"):
            raise ValueError(f"mode must be 'window' or 'next', got {mode!r}")
        events = np.flatnonzero(~self._in_input() & self.positive)
        if mode == "next":
            events = events[np.unique(self._event_user[events], return_index=True)[1]]
        return self._matrix(events)


def encode_surfaces(surfaces: np.ndarray, vocabulary: tuple[str, ...] = SURFACES) -> tuple[np.ndarray, int]:
    """Surface strings -> codes ``1..len(vocabulary)`` (0 for None or an unknown value) and the unknown count."""
    values = np.asarray(surfaces, dtype=object)
    codes = np.zeros(len(values), dtype=np.int64)
    for code, name in enumerate(vocabulary, start=1):
        codes[values == name] = code
    unknown = int(((codes == 0) & np.array([v is not None for v in values], dtype=bool)).sum())
    return codes, unknown


def encode_actions(actions: np.ndarray) -> np.ndarray:
    """Action strings -> ``Action`` codes.

    Raises:
        ValueError: a value outside the closed set (names the first few).
    """
    values = np.asarray(actions, dtype=object)
    codes = np.full(len(values), -1, dtype=np.int64)
    for code, name in enumerate(ACTION_VALUES):
        codes[values == name] = code
    if (codes < 0).any():
        bad = sorted({str(v) for v in values[codes < 0]})[:5]
        raise ValueError(f"events have actions outside {ACTION_VALUES}: {bad}")
    return codes


def to_seconds(ts: np.ndarray) -> np.ndarray:
    """datetime64 (any unit) or integer seconds -> int64 UTC seconds."""
    ts = np.asarray(ts)
    if np.issubdtype(ts.dtype, np.datetime64):
        return ts.astype("datetime64[s]").astype(np.int64)
    if not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"ts must be datetime64 or integer seconds, got dtype {ts.dtype}")
    return ts.astype(np.int64)


def build_user_sequences(
    user_ids: np.ndarray,
    pins: np.ndarray,
    actions: np.ndarray,
    surfaces: np.ndarray,
    duration_s: np.ndarray,
    ts: np.ndarray,
    *,
    num_pins: int,
    now_ts: int,
    cutoff_ts: int | np.ndarray | None = None,
    options: SequenceOptions = SequenceOptions(),
) -> UserSequences:
    """Per-user timelines from events (module docstring for the rules).

    Args:
        user_ids: (E,) int64 user ids.
        pins: (E,) int64 pin rows in ``[0, num_pins)``, or -1 for a pin missing from the PinSage table.
        actions: (E,) ``Action`` codes (``encode_actions``).
        surfaces: (E,) surface codes (``encode_surfaces``).
        duration_s: (E,) float seconds, NaN = unknown.
        ts: (E,) int64 UTC seconds (``to_seconds``).
        num_pins: P.
        now_ts: events after this second are rejected (counted).
        cutoff_ts: events at or before it are input, positives after it (within the window) labels; a
            scalar or one per event (e.g. the user's own cutoff); None = everything is input.
        options: M, K and the minimum number of actions.

    Returns:
        The sequences of the users with at least ``min_actions`` input actions, and the counts.

    Raises:
        ValueError: arrays of unequal length, or pin rows outside ``[-1, num_pins)``.
    """
    arrays = [np.asarray(a) for a in (user_ids, pins, actions, surfaces, duration_s, ts)]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError(f"event arrays must be 1-D of equal length, got shapes {[a.shape for a in arrays]}")
    users, pins, actions, surfaces = (a.astype(np.int64) for a in arrays[:4])
    duration, ts = arrays[4].astype(np.float32), arrays[5].astype(np.int64)
    if len(pins) and (pins.min() < -1 or pins.max() >= num_pins):
        raise ValueError(f"pin rows must lie in [-1, {num_pins}) (-1 = not in the PinSage table), got "
                         f"[{pins.min()}, {pins.max()}]")
    num_events = len(users)
    cutoff = None if cutoff_ts is None else np.broadcast_to(np.asarray(cutoff_ts, dtype=np.int64), users.shape)

    future = ts > now_ts
    num_future = int(future.sum())
    if num_future:
        log.warning("rejected %d events with a timestamp after now (%d)", num_future, now_ts)
    keep = ~future
    users, pins, actions, surfaces, duration, ts = (a[keep] for a in (users, pins, actions, surfaces, duration, ts))
    cutoff = None if cutoff is None else cutoff[keep]

    # Out of order: an event earlier than the one given before it for the same user.
    by_user = np.argsort(users, kind="stable")
    same_user = users[by_user][1:] == users[by_user][:-1]
    num_out_of_order = int((same_user & (ts[by_user][1:] < ts[by_user][:-1])).sum())
    order = np.lexsort((np.arange(len(users)), ts, users))
    users, pins, actions, surfaces, duration, ts = (a[order] for a in (users, pins, actions, surfaces, duration, ts))
    cutoff = None if cutoff is None else cutoff[order]

    action_names = np.asarray(ACTION_VALUES, dtype=object)[actions]
    positive = positive_mask(action_names, duration * 1000.0) & (pins >= 0)
    is_input = np.ones(len(users), dtype=bool) if cutoff is None else ts <= cutoff
    label = ~is_input & positive
    if cutoff is not None:
        label &= ts <= cutoff + options.window_s
    keep = is_input | label
    users, pins, actions, surfaces, duration, ts, positive, is_input = (
        a[keep] for a in (users, pins, actions, surfaces, duration, ts, positive, is_input))

    uniq, start = np.unique(users, return_index=True)
    ends = np.r_[start[1:], len(users)]
    num_input = np.add.reduceat(is_input.astype(np.int64), start) if len(start) else np.zeros(0, np.int64)
    ok = num_input >= options.min_actions
    num_short = int((~ok).sum())
    keep = np.repeat(ok, ends - start)
    users, pins, actions, surfaces, duration, ts, positive, is_input = (
        a[keep] for a in (users, pins, actions, surfaces, duration, ts, positive, is_input))
    uniq, num_input, lengths = uniq[ok], num_input[ok], (ends - start)[ok]
    ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    input_end = ptr[:-1] + num_input
    input_start = np.maximum(ptr[:-1], input_end - options.max_length)
    truncated = input_start - ptr[:-1]
    counts = SequenceCounts(
        num_events=num_events,
        num_future_rejected=num_future,
        num_out_of_order=num_out_of_order,
        num_users_short=num_short,
        num_users_truncated=int((truncated > 0).sum()),
        num_events_truncated=int(truncated.sum()),
        num_unknown_pin_events=int((pins < 0).sum()),
        num_users=len(uniq),
        num_input_events=int(num_input.sum()),
        num_label_events=int((~is_input).sum()),
    )
    if num_short or counts.num_users_truncated or num_out_of_order:
        log.info("sequences: %s", counts.as_dict())
    return UserSequences(uniq, ptr, input_start, input_end, pins, actions, surfaces, duration, ts, positive,
                         int(num_pins), options.window_s, counts)


def collate_tokens(seqs: UserSequences, users: np.ndarray) -> TokenInputs:
    """The model tokens of ``users`` (rows of ``seqs``), right-padded to the longest.

    Returns:
        ``TokenInputs`` of shape (len(users), L); padding holds pin row 0, action 0, ts of the latest token.
    """
    users = np.asarray(users, dtype=np.int64)
    start, end = seqs.input_start[users], seqs.input_end[users]
    lengths = end - start
    length = int(lengths.max())
    offsets = np.arange(length)
    mask = offsets[None, :] < lengths[:, None]
    index = np.where(mask, start[:, None] + offsets[None, :], (end - 1)[:, None])  # (B, L)
    t = torch.from_numpy
    return TokenInputs(
        pins=t(np.where(mask, seqs.pins[index], 0)),
        actions=t(np.where(mask, seqs.actions[index], 0)),
        surfaces=t(np.where(mask, seqs.surfaces[index], 0)),
        duration_s=t(np.where(mask, seqs.duration_s[index], np.float32("nan")).astype(np.float32)),
        ts=t(seqs.ts[index]),
        mask=t(mask),
    )
