"""Building the bipartite pin-board graph: DataFrame -> DataFrame transformations and the CSR export.

The steps of ``jobs.build_graph`` (docs/GRAPH.md), each a pure function of its inputs:

1. ``save_edges``: save events with a board -> one edge per (pin, board) with its number of saves
   (``weight``) and the time of the latest one (``last_ts``). Duplicated event rows count once.
2. ``prune_edges`` (Pixie, WWW'18 sec. 3.3 "graph pruning"): cap board degrees, then pin degrees, by a
   deterministic hash sample, then drop boards below a minimum size. The caps hold in the output (dropping
   boards only lowers degrees) and so does the minimum size (it is applied last).
3. ``index_graph``: dense indices (``pin_idx`` = rank of ``pin_id`` among the pins, ``board_idx`` likewise)
   and degrees. Pins are the snapshot's pins plus any pin in an edge, so isolated pins are nodes too.
4. ``csr_from_tables``: the indexed edges as ``BipartiteCSR`` arrays (numpy, one process).

Everything is a function of the data alone: no ``rand()``, no dependence on partitioning, so reruns with any
``spark.sql.shuffle.partitions`` give identical tables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from embeddings.data.schemas import Action
from embeddings.graph.csr import BipartiteCSR

MAX_INDEX = np.iinfo(np.int32).max
MAX_BUCKETS = 256
# Salts keep the board-cap and pin-cap samples independent of each other for the same seed.
_BOARD_CAP_SALT = 1
_PIN_CAP_SALT = 2


@dataclass(frozen=True)
class PruningConfig:
    """Pixie-style graph pruning.

    Attributes:
        max_board_degree: keep at most this many pins per board (a hash sample); None = no cap.
        max_pin_degree: keep at most this many boards per pin (a hash sample); None = no cap.
        min_board_size: drop boards with fewer pins than this after the caps (a board of one pin only leads
            a walk back to where it came from); 1 keeps every board.
        seed: salts the sampling hash; another seed gives another (equally deterministic) sample.
    """

    max_board_degree: int | None = 5000
    max_pin_degree: int | None = 1000
    min_board_size: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_board_degree", "max_pin_degree"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None (no cap), got {value}")
        if self.min_board_size < 1:
            raise ValueError(f"min_board_size must be >= 1, got {self.min_board_size}")


@dataclass(frozen=True)
class GraphWindow:
    """The days of events a graph is built from: ``start..end`` inclusive; ``end+1..ds`` are held out."""

    ds: dt.date
    start: dt.date
    end: dt.date

    @classmethod
    def ending_at(cls, ds: dt.date, window_days: int, holdout_days: int = 0) -> GraphWindow:
        """The ``window_days`` days ending at ``ds``, of which the last ``holdout_days`` are held out.

        Raises:
            ValueError: window_days < 1, holdout_days < 0, or holdout_days >= window_days.
        """
        if window_days < 1:
            raise ValueError(f"window_days must be >= 1, got {window_days}")
        if not 0 <= holdout_days < window_days:
            raise ValueError(
                f"holdout_days must be in 0..window_days-1 = 0..{window_days - 1}, got {holdout_days}"
            )
        start = ds - dt.timedelta(days=window_days - 1)
        return cls(ds=ds, start=start, end=ds - dt.timedelta(days=holdout_days))

    @property
    def holdout_days(self) -> int:
        return (self.ds - self.end).days

    @property
    def start_ts(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), dt.timezone.utc)

    @property
    def end_ts(self) -> dt.datetime:
        """Exclusive upper bound on event times: midnight UTC after ``end``."""
        return dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), dt.timezone.utc)

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def __str__(self) -> str:
        held = f", held out {self.end + dt.timedelta(days=1)}..{self.ds}" if self.holdout_days else ""
        return f"{self.start}..{self.end}{held}"


def save_edges(events, start_ts: dt.datetime | None = None, end_ts: dt.datetime | None = None):
    """Deduplicated save edges.

    Args:
        events: DataFrame with the ``events`` contract columns (user_id, pin_id, board_id, action, ts).
        start_ts / end_ts: keep events with ``start_ts <= ts < end_ts`` (None = no bound).

    Returns:
        DataFrame (pin_id long, board_id long, weight int, last_ts timestamp): one row per (pin, board) with a
        save; weight = number of distinct save events (user, ts), last_ts = the latest.
    """
    from pyspark.sql import functions as F

    saves = events.where((F.col("action") == Action.SAVE.value) & F.col("board_id").isNotNull())
    if start_ts is not None:
        saves = saves.where(F.col("ts") >= F.lit(start_ts))
    if end_ts is not None:
        saves = saves.where(F.col("ts") < F.lit(end_ts))
    return (
        saves.select("user_id", "pin_id", "board_id", "ts")
        .dropDuplicates()
        .groupBy("pin_id", "board_id")
        .agg(F.count(F.lit(1)).cast("int").alias("weight"), F.max("ts").alias("last_ts"))
    )


def cap_degree(edges, node_col: str, other_col: str, cap: int | None, seed: int, salt: int):
    """Keep at most ``cap`` edges per ``node_col`` value: those with the smallest hash of (seed, node, other).

    The sample is a pure function of the edge set (xxhash64, ties broken by ``other_col``), so it does not
    depend on partitioning, retries or row order.

    Returns:
        ``edges`` (same columns) with each node's degree at most ``cap``; unchanged when cap is None.
    """
    if cap is None:
        return edges
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = F.xxhash64(F.lit(seed).cast("long"), F.lit(salt).cast("long"), F.col(node_col), F.col(other_col))
    order = Window.partitionBy(node_col).orderBy(key, F.col(other_col))
    return edges.withColumn("_rank", F.row_number().over(order)).where(F.col("_rank") <= cap).drop("_rank")


def drop_small_boards(edges, min_board_size: int):
    """Drop every edge of boards with fewer than ``min_board_size`` pins."""
    if min_board_size <= 1:
        return edges
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    size = F.count(F.lit(1)).over(Window.partitionBy("board_id"))
    return edges.withColumn("_size", size).where(F.col("_size") >= min_board_size).drop("_size")


def pruning_stages(edges, config: PruningConfig) -> tuple:
    """The edges after each pruning step: (board cap, then pin cap, then small boards dropped).

    Returns:
        Three DataFrames with the columns of ``edges``; the last is ``prune_edges(edges, config)``. Counting
        each tells how many edges every rule removed.
    """
    board_capped = cap_degree(edges, "board_id", "pin_id", config.max_board_degree, config.seed, _BOARD_CAP_SALT)
    pin_capped = cap_degree(board_capped, "pin_id", "board_id", config.max_pin_degree, config.seed, _PIN_CAP_SALT)
    return board_capped, pin_capped, drop_small_boards(pin_capped, config.min_board_size)


def prune_edges(edges, config: PruningConfig):
    """Pixie pruning: cap board degrees, then pin degrees, then drop small boards (see the module doc).

    Returns:
        ``edges`` (same columns): board degree in ``[min_board_size, max_board_degree]``, pin degree at most
        ``max_pin_degree``.
    """
    return pruning_stages(edges, config)[-1]


def pins_created_before(pins, end_ts: dt.datetime):
    """Pin ids of the ``pins`` snapshot created before ``end_ts`` (the end of ds): (pin_id long)."""
    from pyspark.sql import functions as F

    return pins.where(F.col("created_ts") < F.lit(end_ts)).select("pin_id")


def dense_index(keys, key: str, index_col: str, num_buckets: int = 16):
    """Number the distinct values of ``key`` 0..N-1 in increasing order (the rank of each value).

    Values are split into up to ``num_buckets`` ranges (by approximate quantiles; any split gives the same
    answer), counted per range, and numbered within each range from that range's offset, so no step needs
    all rows in one task.

    Args:
        keys: DataFrame with a column ``key`` (duplicates allowed; nulls are dropped).
        num_buckets: parallelism of the numbering, 1..256.

    Returns:
        DataFrame (key, index_col int): one row per distinct value.

    Raises:
        ValueError: more than 2^31-1 distinct values (indices are int32), or num_buckets out of range.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not 1 <= num_buckets <= MAX_BUCKETS:
        raise ValueError(f"num_buckets must be in 1..{MAX_BUCKETS}, got {num_buckets}")
    values = keys.select(key).where(F.col(key).isNotNull()).distinct()
    probs = [i / num_buckets for i in range(1, num_buckets)]
    bounds = sorted(set(values.approxQuantile(key, probs, 0.001))) if probs else []
    bucket = F.lit(0)
    for b in bounds:  # bucket = number of bounds <= value: a pure function of the value
        bucket = bucket + F.when(F.col(key) >= F.lit(b).cast(values.schema[key].dataType), 1).otherwise(0)
    bucketed = values.withColumn("_bucket", bucket.cast("int"))
    counts = dict(bucketed.groupBy("_bucket").count().collect())
    total = sum(counts.values())
    if total > MAX_INDEX:
        raise ValueError(f"{total} distinct {key} values exceed the int32 index range ({MAX_INDEX})")
    offsets, running = {}, 0
    for b in sorted(counts):
        offsets[b] = running
        running += counts[b]
    offset = F.lit(0)
    for b in sorted(offsets):
        offset = F.when(F.col("_bucket") == b, F.lit(offsets[b])).otherwise(offset)
    number = F.row_number().over(Window.partitionBy("_bucket").orderBy(key))
    return bucketed.select(key, (offset + number - 1).cast("int").alias(index_col))


@dataclass(frozen=True)
class GraphTables:
    """The indexed graph as DataFrames (columns as in the graph_edges / graph_pins / graph_boards contracts)."""

    edges: object  # (pin_id, board_id, weight, last_ts, pin_idx, board_idx)
    pins: object  # (pin_id, pin_idx, degree)
    boards: object  # (board_id, board_idx, degree)


def index_graph(edges, pin_ids, num_buckets: int = 16) -> GraphTables:
    """Dense indices and degrees of the pruned graph.

    Args:
        edges: (pin_id, board_id, weight, last_ts) pruned edges.
        pin_ids: (pin_id) the pins that are nodes even without edges (the snapshot at ds).
        num_buckets: see ``dense_index``.

    Returns:
        GraphTables. Pins = ``pin_ids`` plus edge pins, each with its degree (0 = isolated); boards = edge
        boards. ``pin_idx``/``board_idx`` are ranks by id.
    """
    from pyspark.sql import functions as F

    pin_index = dense_index(pin_ids.select("pin_id").unionByName(edges.select("pin_id")), "pin_id", "pin_idx",
                            num_buckets)
    board_index = dense_index(edges.select("board_id"), "board_id", "board_idx", num_buckets)
    indexed = edges.join(pin_index, "pin_id").join(board_index, "board_id").select(
        "pin_id", "board_id", "weight", "last_ts", "pin_idx", "board_idx"
    )
    pin_degree = edges.groupBy("pin_id").agg(F.count(F.lit(1)).cast("int").alias("degree"))
    board_degree = edges.groupBy("board_id").agg(F.count(F.lit(1)).cast("int").alias("degree"))
    pins = (
        pin_index.join(pin_degree, "pin_id", "left")
        .select("pin_id", "pin_idx", F.coalesce("degree", F.lit(0)).cast("int").alias("degree"))
    )
    boards = board_index.join(board_degree, "board_id").select("board_id", "board_idx", "degree")
    return GraphTables(edges=indexed, pins=pins, boards=boards)


def csr_from_tables(pins: pa.Table, boards: pa.Table, edges: pa.Table) -> BipartiteCSR:
    """The CSR arrays of an indexed graph (collected to one process).

    Args:
        pins: (pin_id, pin_idx) with pin_idx a permutation of 0..P-1.
        boards: (board_id, board_idx) with board_idx a permutation of 0..B-1.
        edges: (pin_idx, board_idx) deduplicated.

    Returns:
        BipartiteCSR with ``pin_ids[pin_idx] == pin_id`` (likewise boards).

    Raises:
        ValueError: the indices are not dense 0..N-1, or an edge points outside them.
    """
    pin_ids = _ids_by_index(pins, "pin_id", "pin_idx")
    board_ids = _ids_by_index(boards, "board_id", "board_idx")
    return BipartiteCSR.from_edges(
        edges.column("pin_idx").to_numpy(), edges.column("board_idx").to_numpy(), pin_ids, board_ids
    )


def _ids_by_index(table: pa.Table, id_col: str, idx_col: str) -> np.ndarray:
    idx = table.column(idx_col).to_numpy().astype(np.int64)
    ids = table.column(id_col).to_numpy().astype(np.int64)
    out = np.empty(len(idx), dtype=np.int64)
    seen = np.zeros(len(idx), dtype=bool)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(idx)):
        raise ValueError(f"{idx_col} is not dense: values outside 0..{len(idx) - 1}")
    seen[idx] = True
    if not seen.all():
        raise ValueError(f"{idx_col} is not dense: {int((~seen).sum())} of 0..{len(idx) - 1} missing or repeated")
    out[idx] = ids
    return out
