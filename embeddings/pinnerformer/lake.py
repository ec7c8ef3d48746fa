"""The ``user_sequences`` table (written by ``jobs/build_sequences.py``) as PinnerFormer's in-memory sequences.

* ``user_split``: the one definition of which users are held out from training (a stable hash of the id);
  the Spark job calls it through a pandas UDF, so the table's ``split`` column is this function's output.
* ``read_user_sequences``: one committed partition, checked against the contract.
* ``sequences_from_table``: rows of the table -> ``UserSequences`` (``embeddings.pinnerformer.data``), pins
  mapped to rows of a sorted pin table (-1, the unknown-pin token, for a pin missing from it):

  - ``mode="train"`` / ``"eval"``: each row's ``cutoff_ts`` splits its timeline; actions before it are the
    input, positives at or after it (within K = ``options.window_days``) the labels / targets.
  - ``mode="serve"``: no cutoff; the whole timeline is input and its latest M actions are the tokens (the
    user embedding at the end of ds).

This module imports only numpy and pyarrow at load time (``data`` pulls in torch), so Spark's Python
workers can import ``user_split`` cheaply.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embeddings.data.engagement import SPLIT_NAMES
from embeddings.data.schemas import USER_SEQUENCES
from embeddings.lake import Lake, PartitionMissingError, parse_ds

if TYPE_CHECKING:
    from embeddings.pinnerformer.data import SequenceOptions, UserSequences

MODES = ("train", "eval", "serve")

# splitmix64 (Steele et al., 2014): a bijective 64-bit mixer, so nearby ids land far apart.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def split_hash(user_ids: np.ndarray) -> np.ndarray:
    """(N,) float64 in [0, 1): splitmix64 of each int64 id, top 53 bits. Stable across runs and machines."""
    z = np.asarray(user_ids, dtype=np.int64).astype(np.uint64)  # two's complement: negative ids are fine
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def check_shares(valid_share: float, test_share: float) -> None:
    """Raise ValueError unless both shares are finite, >= 0 and sum to less than 1."""
    if not (np.isfinite(valid_share) and np.isfinite(test_share) and valid_share >= 0 and test_share >= 0
            and valid_share + test_share < 1):
        raise ValueError(f"valid_share and test_share must be >= 0 with a sum below 1, got {valid_share} and "
                         f"{test_share}")


def user_split(user_ids: np.ndarray, valid_share: float, test_share: float) -> np.ndarray:
    """Which users are held out from training: a deterministic function of the user id alone.

    A user is "valid" when ``split_hash(id) < valid_share``, "test" when it is below
    ``valid_share + test_share``, else "train"; a user keeps its split as long as the shares stay the same.

    Args:
        user_ids: (N,) int64 ids.
        valid_share / test_share: expected shares of users held out (e.g. 0.1 each).

    Returns:
        (N,) object array of "train" / "valid" / "test".

    Raises:
        ValueError: shares outside [0, 1) or summing to 1 or more.
    """
    check_shares(valid_share, test_share)
    u = split_hash(user_ids)
    names = np.asarray(SPLIT_NAMES, dtype=object)  # ("train", "valid", "test")
    code = np.where(u < valid_share, 1, np.where(u < valid_share + test_share, 2, 0))
    return names[code]


def read_user_sequences(lake: Lake, ds: dt.date | str) -> pa.Table:
    """The committed ``user_sequences`` partition of ``ds``, checked against the contract.

    Raises:
        PartitionMissingError: no such partition (the message names the table, ds and the job to run).
        CorruptFileError / SchemaMismatchError: an unreadable or mistyped file (named).
    """
    try:
        return lake.read(USER_SEQUENCES, ds)
    except PartitionMissingError as exc:
        raise PartitionMissingError(f"{exc} (user_sequences ds={parse_ds(ds)} is written by "
                                    f"`spark-submit jobs/build_sequences.py --ds {parse_ds(ds)}`)") from None


def sequences_from_table(
    table: pa.Table,
    pin_ids: np.ndarray,
    *,
    mode: str,
    splits: tuple[str, ...] | None = None,
    options: SequenceOptions | None = None,
    now_ts: int | None = None,
) -> tuple[UserSequences, np.ndarray]:
    """Rows of ``user_sequences`` -> the library's ``UserSequences`` (module docstring for the modes).

    Args:
        table: rows of ``user_sequences`` (``read_user_sequences``), one per user.
        pin_ids: (P,) sorted, distinct int64 pin ids; pin ``pin_ids[r]`` is pin row ``r`` (the row of the
            PinSage table); pins not in it get row -1 (the learned unknown-pin token, never a label).
        mode: "train" / "eval" (split at each row's ``cutoff_ts``) or "serve" (no cutoff).
        splits: keep only the users of these splits (e.g. ``("train",)``); None keeps all.
        options: M, K and the minimum number of actions (default ``SequenceOptions()``).
        now_ts: actions after this UTC second are rejected (counted); None = the latest action of the table
            (the job already rejected actions at or after the end of ds).

    Returns:
        ``(seqs, user_ids)``: the sequences of the users with at least ``options.min_actions`` input actions
        and their (U,) int64 user ids, aligned with the rows of ``seqs`` (the same array as
        ``seqs.user_ids``, ascending).

    Raises:
        ValueError: an unknown mode or split, ``pin_ids`` not sorted and distinct, list columns of unequal
            length, or an action outside the closed set.
    """
    from embeddings.pinnerformer.data import (
        SequenceOptions,
        build_user_sequences,
        encode_actions,
        encode_surfaces,
        to_seconds,
    )

    options = SequenceOptions() if options is None else options
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    pin_ids = np.asarray(pin_ids, dtype=np.int64)
    if pin_ids.ndim != 1 or (len(pin_ids) > 1 and (np.diff(pin_ids) <= 0).any()):
        raise ValueError("pin_ids must be a 1-D array of sorted, distinct pin ids")
    if splits is not None:
        unknown = sorted(set(splits) - set(SPLIT_NAMES))
        if unknown:
            raise ValueError(f"splits must be among {SPLIT_NAMES}, got {unknown}")
        table = table.filter(pc.is_in(table.column("split"), value_set=pa.array(list(splits), pa.string())))

    lengths = pc.list_value_length(table.column("pin_id")).to_numpy(zero_copy_only=False).astype(np.int64)
    for name in ("action", "surface", "duration_ms", "ts"):
        other = pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False)
        if not np.array_equal(other, lengths):
            raise ValueError(f"user_sequences: list column {name!r} differs in length from pin_id in "
                             f"{int((other != lengths).sum())} row(s)")

    def flat(name: str) -> pa.Array:
        return pc.list_flatten(table.column(name)).combine_chunks() if table.num_rows else pa.array([])

    users = np.repeat(table.column("user_id").to_numpy().astype(np.int64), lengths)
    pins = flat("pin_id").to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.searchsorted(pin_ids, pins)
    found = rows < len(pin_ids)
    found[found] = pin_ids[rows[found]] == pins[found]
    rows = np.where(found, rows, -1)
    actions = encode_actions(flat("action").to_numpy(zero_copy_only=False))
    surfaces, _ = encode_surfaces(flat("surface").to_numpy(zero_copy_only=False))  # null -> None -> code 0
    duration_ms = flat("duration_ms").cast(pa.float64()).to_numpy(zero_copy_only=False)  # null -> NaN
    ts = to_seconds(flat("ts").cast(pa.timestamp("us")).to_numpy(zero_copy_only=False))

    cutoff = None
    if mode != "serve":
        cutoff_s = to_seconds(table.column("cutoff_ts").cast(pa.timestamp("us")).to_numpy())
        # The table's rule is "input iff ts < cutoff_ts"; the library's is ts <= cutoff (whole seconds).
        cutoff = np.repeat(cutoff_s - 1, lengths)
    if now_ts is None:
        now_ts = int(ts.max()) if len(ts) else 0
    seqs = build_user_sequences(users, rows, actions, surfaces, duration_ms / 1000.0, ts,
                                num_pins=len(pin_ids), now_ts=now_ts, cutoff_ts=cutoff, options=options)
    return seqs, seqs.user_ids
