"""PinSage's inputs as arrays: content features, PPR neighborhoods and positive pairs.

Pins are addressed by *row*: the position of their ``pin_id`` in the sorted ``pin_ids`` of the feature
table. Everything the model needs is then a dense array indexed by row (``PinGraph``).

Bad input (docs/PINSAGE.md, "Bad input"):

* NaN/Inf features, feature vectors of different lengths, duplicated pins, neighbor and weight lists of
  different lengths, and negative or non-finite weights are errors that name the pins.
* A pin with features but no neighborhood row is embedded from its own features alone (as an isolated
  pin); such pins are counted, logged and recorded, and more than ``max_missing_share`` of them is an
  error. Neighbor ids without features are dropped from the neighborhoods (counted and logged); a
  neighborhood row whose pin has no features is ignored (counted and logged).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embeddings.data.engagement import TRAIN, VALID, TimeSplit, positive_mask, time_order
from embeddings.data.schemas import EVENTS, PIN_FEATURES, PPR_NEIGHBORS
from embeddings.lake import Lake, Manifest

log = logging.getLogger(__name__)

MAX_IDS_IN_MESSAGE = 10


@dataclass(frozen=True)
class PinGraph:
    """Dense per-row arrays for every pin with features.

    Attributes:
        pin_ids: (P,) int64, sorted ascending; row r is pin ``pin_ids[r]``.
        features: (P, F) float32 content features.
        neighbors: (P, T) int32 rows of the top-T PPR neighbors, best first, -1 padding.
        weights: (P, T) float32 visit weights, 0 at padding.
        hard_negatives: (P, H) int32 rows of PPR-band hard negatives, -1 padding (H may be 0).
        stats: counts of what loading dropped or filled in (see module docstring).
    """

    pin_ids: np.ndarray
    features: np.ndarray
    neighbors: np.ndarray
    weights: np.ndarray
    hard_negatives: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def num_pins(self) -> int:
        return len(self.pin_ids)

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]

    def rows_of(self, pin_ids: np.ndarray) -> np.ndarray:
        """Rows of ``pin_ids`` ((N,) int64), -1 for pins without features."""
        return rows_of(self.pin_ids, pin_ids)


def rows_of(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in ``sorted_ids``, -1 where absent: (N,) -> (N,) int64."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.full(ids.shape, -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids)
    pos_clipped = np.minimum(pos, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos_clipped] == ids, pos_clipped, -1).astype(np.int64)


def _some(ids: np.ndarray) -> str:
    ids = np.asarray(ids)
    head = ", ".join(str(int(i)) for i in ids[:MAX_IDS_IN_MESSAGE])
    return f"[{head}{', ...' if len(ids) > MAX_IDS_IN_MESSAGE else ''}]"


def _list_parts(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(lengths (N,) int64, flat values) of a list column, whatever its chunking or slicing."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(array).to_numpy(zero_copy_only=False)
    return lengths, values


def _check_unique(pin_ids: np.ndarray, what: str) -> None:
    sorted_ids = np.sort(pin_ids)
    dup = np.unique(sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]])
    if len(dup):
        raise ValueError(f"{what}: pin_id must be unique, found {len(dup)} duplicated pin(s) {_some(dup)}")


def features_from_table(table: pa.Table, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted pin ids and their feature matrix from a ``pin_features`` table.

    Args:
        table: columns ``pin_id`` and ``features`` (list<float32>).
        what: how to name the table in errors (e.g. ``Lake.describe``).

    Returns:
        pin_ids (P,) int64 ascending, features (P, F) float32.

    Raises:
        ValueError: no rows, duplicated pins, vectors of different lengths, or NaN/Inf values (naming
            up to 10 pin ids).
    """
    pin_ids = table.column("pin_id").to_numpy().astype(np.int64)
    if len(pin_ids) == 0:
        raise ValueError(f"{what} has no rows; PinSage needs content features for every pin")
    _check_unique(pin_ids, what)
    lengths, values = _list_parts(table.column("features"))
    dim = int(np.bincount(lengths).argmax())
    odd = lengths != dim
    if odd.any() or dim == 0:
        raise ValueError(
            f"{what}: every feature vector must have one length (most have {dim}); "
            f"{int(odd.sum())} pin(s) differ, e.g. {_some(pin_ids[odd])} with lengths "
            f"{sorted(set(lengths[odd].tolist()))[:10]}"
        )
    features = values.astype(np.float32, copy=False).reshape(len(pin_ids), dim)
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{what}: {int(bad.sum())} pin(s) have NaN or Inf features, e.g. pin_id {_some(pin_ids[bad])}; "
            "fix the feature stage (jobs.build_features) for them"
        )
    order = np.argsort(pin_ids, kind="stable")
    if not (order == np.arange(len(order))).all():
        pin_ids, features = pin_ids[order], features[order]
    if not features.flags.writeable:  # a zero-copy view of Arrow memory; torch wants writable arrays
        features = features.copy()
    return pin_ids, features


def _padded(row_of_value: np.ndarray, values: np.ndarray, num_rows: int, width: int, fill: float) -> np.ndarray:
    """Pack values grouped by row (in order) into a (num_rows, width) array, keeping each row's first."""
    dtype = np.int32 if np.issubdtype(values.dtype, np.integer) else np.float32
    out = np.full((num_rows, width), fill, dtype=dtype)
    if len(values) == 0 or width == 0:
        return out
    starts = np.flatnonzero(np.r_[True, row_of_value[1:] != row_of_value[:-1]])
    counts = np.diff(np.r_[starts, len(values)])
    position = np.arange(len(values)) - np.repeat(starts, counts)
    keep = position < width
    out[row_of_value[keep], position[keep]] = values[keep]
    return out


def neighborhoods_from_table(
    table: pa.Table,
    pin_ids: np.ndarray,
    num_neighbors: int,
    num_hard_negatives: int,
    what: str,
    max_missing_share: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Padded neighbor, weight and hard-negative arrays aligned with ``pin_ids``.

    Args:
        table: a ``ppr_neighbors`` table (pin_id, neighbor_ids, neighbor_weights, hard_negative_ids).
        pin_ids: (P,) sorted pins with features.
        num_neighbors: T, keep each pin's first (best) T neighbors that have features.
        num_hard_negatives: H, keep up to H hard negatives per pin (0: none).
        what: how to name the table in errors.
        max_missing_share: the largest share of ``pin_ids`` allowed to lack a neighborhood row.

    Returns:
        neighbors (P, T) int32, weights (P, T) float32, hard_negatives (P, H) int32, stats.

    Raises:
        ValueError: duplicated pins, lists of different lengths, bad weights, or too many missing rows.
    """
    num_pins = len(pin_ids)
    table_ids = table.column("pin_id").to_numpy().astype(np.int64)
    _check_unique(table_ids, what)
    id_lengths, neighbor_ids = _list_parts(table.column("neighbor_ids"))
    w_lengths, neighbor_weights = _list_parts(table.column("neighbor_weights"))
    mismatch = id_lengths != w_lengths
    if mismatch.any():
        raise ValueError(
            f"{what}: neighbor_ids and neighbor_weights differ in length for {int(mismatch.sum())} pin(s), "
            f"e.g. pin_id {_some(table_ids[mismatch])}"
        )
    neighbor_weights = neighbor_weights.astype(np.float32, copy=False)
    bad_weight = ~np.isfinite(neighbor_weights) | (neighbor_weights < 0)
    if bad_weight.any():
        owners = np.unique(np.repeat(table_ids, id_lengths)[bad_weight])
        raise ValueError(
            f"{what}: neighbor_weights must be finite and >= 0; {len(owners)} pin(s) have bad weights, "
            f"e.g. pin_id {_some(owners)}"
        )

    rows = rows_of(pin_ids, table_ids)  # (R,) row of each table row's pin, -1 without features
    has_row = np.zeros(num_pins, dtype=bool)
    has_row[rows[rows >= 0]] = True
    missing = ~has_row
    stats = {
        "pins": num_pins,
        "pins_missing_neighborhood": int(missing.sum()),
        "neighborhoods_without_features": int((rows < 0).sum()),
    }
    if stats["pins_missing_neighborhood"]:
        log.warning(
            "%s: %d of %d pins have no neighborhood row (e.g. pin_id %s); they are embedded from their "
            "own features only", what, stats["pins_missing_neighborhood"], num_pins, _some(pin_ids[missing]),
        )
        share = stats["pins_missing_neighborhood"] / num_pins
        if share > max_missing_share:
            raise ValueError(
                f"{what}: {stats['pins_missing_neighborhood']} of {num_pins} pins with features "
                f"({share:.1%}) have no neighborhood row, above the allowed {max_missing_share:.1%}; e.g. "
                f"pin_id {_some(pin_ids[missing])}; rerun the neighborhoods job for this ds"
            )
    if stats["neighborhoods_without_features"]:
        log.warning("%s: ignoring %d neighborhood rows of pins without features (e.g. pin_id %s)",
                    what, stats["neighborhoods_without_features"], _some(table_ids[rows < 0]))

    owner = np.repeat(rows, id_lengths)  # (E,) owner row of each listed neighbor
    neighbor_rows = rows_of(pin_ids, neighbor_ids)
    keep = (owner >= 0) & (neighbor_rows >= 0) & (neighbor_rows != owner)
    stats["neighbor_ids_dropped"] = int(((owner >= 0) & ~keep).sum())
    if stats["neighbor_ids_dropped"]:
        log.warning("%s: dropped %d neighbor ids without features (or self-loops)", what,
                    stats["neighbor_ids_dropped"])
    neighbors = _padded(owner[keep], neighbor_rows[keep], num_pins, num_neighbors, -1)
    weights = _padded(owner[keep], neighbor_weights[keep], num_pins, num_neighbors, 0.0)
    weights[neighbors < 0] = 0.0
    stats["isolated_pins"] = int((neighbors[:, 0] < 0).sum()) if num_neighbors else num_pins

    hard = np.full((num_pins, 0), -1, dtype=np.int32)
    if num_hard_negatives > 0:
        h_lengths, hard_ids = _list_parts(table.column("hard_negative_ids"))
        h_owner = np.repeat(rows, h_lengths)
        h_rows = rows_of(pin_ids, hard_ids)
        h_keep = (h_owner >= 0) & (h_rows >= 0) & (h_rows != h_owner)
        hard = _padded(h_owner[h_keep], h_rows[h_keep], num_pins, num_hard_negatives, -1)
    return neighbors, weights, hard, stats


def load_pin_graph(
    lake: Lake,
    ds: dt.date,
    num_neighbors: int,
    num_hard_negatives: int = 0,
    max_missing_share: float = 0.05,
) -> tuple[PinGraph, list[Manifest]]:
    """Read ``pin_features`` and ``ppr_neighbors`` for ``ds`` into a ``PinGraph``.

    Returns:
        The graph and the manifests of the two partitions (the inputs of whatever is built from it).

    Raises:
        PartitionMissingError / SchemaMismatchError from the lake, ValueError for bad content.
    """
    manifests = [lake.read_manifest(PIN_FEATURES, ds), lake.read_manifest(PPR_NEIGHBORS, ds)]
    pin_ids, features = features_from_table(lake.read(PIN_FEATURES, ds), lake.describe(PIN_FEATURES, ds))
    neighbors, weights, hard, stats = neighborhoods_from_table(
        lake.read(PPR_NEIGHBORS, ds, columns=None if num_hard_negatives else
                  ["pin_id", "neighbor_ids", "neighbor_weights"]),
        pin_ids, num_neighbors, num_hard_negatives, lake.describe(PPR_NEIGHBORS, ds), max_missing_share,
    )
    log.info("loaded %d pins x %d features; %d isolated, %d without a neighborhood row",
             len(pin_ids), features.shape[1], stats["isolated_pins"], stats["pins_missing_neighborhood"])
    return PinGraph(pin_ids, features, neighbors, weights, hard, stats), manifests


@dataclass(frozen=True)
class PositivePairs:
    """Training and validation pairs as rows of a ``PinGraph``: (N, 2) int64 [query, positive].

    ``train`` may also be (N, H + 1): examples whose query is a set of up to H pins (newest first, -1 padding
    after the first; a pair is [query, -1, ..., positive]), trained against the normalized mean of the set's
    embeddings (``training.batch_loss``); ``valid`` stays pairs."""

    train: np.ndarray
    valid: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)


def with_query_width(pairs: np.ndarray, width: int) -> np.ndarray:
    """(N, 2) pairs as (N, width + 1) set-query examples [query, -1 ..., positive] (``PositivePairs``)."""
    padding = np.full((len(pairs), width - 1), -1, dtype=np.int64)
    return np.concatenate([pairs[:, :1], padding, pairs[:, 1:]], axis=1)


def engagement_pairs(
    events: pa.Table, pin_ids: np.ndarray, split: TimeSplit, max_gap_s: float
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Pairs (q, i) where a user's positive engagement with i came right after one with q, with their slice.

    "Right after" means the user's next positive engagement (other actions in between are ignored),
    within ``max_gap_s`` seconds, on a different pin. A pair belongs to the split slice of the day of its
    second engagement. Pairs with a pin that has no features are dropped (counted in ``stats``).

    Args:
        events: columns user_id, pin_id, action, ts, duration_ms.
        pin_ids: (P,) sorted pins with features.
        split: the time split at ds.
        max_gap_s: the largest gap between the two engagements.

    Returns:
        ((N, 2) int64 [query row, next row], (N,) int8 slice label (TRAIN/VALID/TEST), stats).
    """
    if max_gap_s <= 0:
        raise ValueError(f"max_gap_s must be positive, got {max_gap_s}")
    positive = positive_mask(
        events.column("action").to_numpy(zero_copy_only=False),
        events.column("duration_ms").to_numpy(zero_copy_only=False),
    )
    users = events.column("user_id").to_numpy()[positive]
    pins = events.column("pin_id").to_numpy()[positive]
    ts = events.column("ts").to_numpy()[positive].astype("datetime64[us]")
    order = time_order(users, pins, ts)
    users, pins, ts = users[order], pins[order], ts[order]
    same_user = users[1:] == users[:-1]
    gap_us = (ts[1:] - ts[:-1]).astype(np.int64)
    is_pair = same_user & (gap_us <= max_gap_s * 1e6) & (pins[1:] != pins[:-1])
    query, item, day = pins[:-1][is_pair], pins[1:][is_pair], ts[1:][is_pair].astype("datetime64[D]")
    label = split.assign(day)
    q_rows, i_rows = rows_of(pin_ids, query), rows_of(pin_ids, item)
    known = (q_rows >= 0) & (i_rows >= 0)
    stats = {
        "positive_events": int(positive.sum()),
        "pairs": int(is_pair.sum()),
        "pairs_without_features": int((~known).sum()),
    }
    return np.stack([q_rows, i_rows], axis=1)[known], label[known], stats


def positive_pairs(events: pa.Table, pin_ids: np.ndarray, split: TimeSplit, max_gap_s: float) -> PositivePairs:
    """The TRAIN and VALID ``engagement_pairs`` (test days are never used for training)."""
    pairs, label, stats = engagement_pairs(events, pin_ids, split, max_gap_s)
    stats = {**stats, "train_pairs": int((label == TRAIN).sum()), "valid_pairs": int((label == VALID).sum())}
    return PositivePairs(pairs[label == TRAIN], pairs[label == VALID], stats)


def load_positive_pairs(lake: Lake, pin_ids: np.ndarray, split: TimeSplit, max_gap_s: float) -> PositivePairs:
    """Read the window's events before the test slice and build ``positive_pairs``.

    Raises:
        ValueError: no events partition in the window, or no training or no validation pairs.
    """
    last_day = split.test_start - dt.timedelta(days=1)
    columns = ["user_id", "pin_id", "action", "ts", "duration_ms"]
    events, days = lake.read_range(EVENTS, split.start, last_day, columns=columns)
    where = f"table events, ds {split.start}..{last_day} under {lake.lake_uri}"
    if not days:
        raise ValueError(f"{where}: no committed partitions; PinSage needs engagement to train on")
    pairs = positive_pairs(events, pin_ids, split, max_gap_s)
    log.info("positive pairs from %d event days: %s", len(days), pairs.stats)
    if len(pairs.train) == 0:
        raise ValueError(f"{where}: no training pairs (consecutive positive engagements within "
                         f"{max_gap_s:.0f} s before {split.valid_start}); stats {pairs.stats}")
    if len(pairs.valid) == 0:
        raise ValueError(f"{where}: no validation pairs in {split.valid_start}..{last_day} (needed for early "
                         f"stopping); stats {pairs.stats}")
    return pairs
