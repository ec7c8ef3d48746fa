"""Data contracts: the one source of truth for every table in the lake (documented in docs/DATA.md).

Schemas are Arrow schemas; Spark jobs convert them with ``embeddings.data.spark_schemas``. A table is
either partitioned by ``ds`` (one directory ``ds=YYYY-MM-DD`` per day) or a snapshot (one directory,
replaced as a whole). Later stages register their outputs here too.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")


class Action(str, enum.Enum):
    """The closed set of user actions. Order is stable: the integer code is the position."""

    SAVE = "save"
    CLICK = "click"
    CLOSEUP = "closeup"
    HIDE = "hide"

    @property
    def code(self) -> int:
        return list(Action).index(self)


ACTION_VALUES: tuple[str, ...] = tuple(a.value for a in Action)


@dataclass(frozen=True)
class TableSpec:
    """A table of the lake: its name, Arrow schema, partitioning and primary key."""

    name: str
    schema: pa.Schema
    partitioned_by_ds: bool
    key: tuple[str, ...]
    doc: str

    @property
    def schema_hash(self) -> str:
        return schema_hash(self.schema)


def schema_hash(schema: pa.Schema) -> str:
    """A short stable hash of field names, types and nullability (metadata ignored)."""
    text = ";".join(f"{f.name}:{f.type}:{'null' if f.nullable else 'notnull'}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


EVENTS = TableSpec(
    name="events",
    schema=pa.schema(
        [
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("pin_id", pa.int64(), nullable=False),
            # Only saves land on a board; other actions have no board.
            pa.field("board_id", pa.int64(), nullable=True),
            pa.field("action", pa.string(), nullable=False),
            pa.field("ts", UTC_TS, nullable=False),
            pa.field("duration_ms", pa.int32(), nullable=True),
            pa.field("surface", pa.string(), nullable=True),
        ]
    ),
    partitioned_by_ds=True,
    key=("user_id", "pin_id", "action", "ts"),
    doc="One row per user action, partitioned by the UTC date of ts.",
)

PINS = TableSpec(
    name="pins",
    schema=pa.schema(
        [
            pa.field("pin_id", pa.int64(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            # Users may bring their own image/text embeddings; null when absent. Fixed length when present.
            pa.field("features", pa.list_(pa.float32()), nullable=True),
            pa.field("created_ts", UTC_TS, nullable=False),
        ]
    ),
    partitioned_by_ds=False,
    key=("pin_id",),
    doc="Snapshot of every pin; stages use the pins with created_ts before the end of their ds.",
)

BOARDS = TableSpec(
    name="boards",
    schema=pa.schema(
        [
            pa.field("board_id", pa.int64(), nullable=False),
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
        ]
    ),
    partitioned_by_ds=False,
    key=("board_id",),
    doc="Snapshot of every board and its owner.",
)

PIN_FEATURES = TableSpec(
    name="pin_features",
    schema=pa.schema(
        [
            pa.field("pin_id", pa.int64(), nullable=False),
            pa.field("features", pa.list_(pa.float32()), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("pin_id",),
    doc="Content feature vector per pin (hashed text n-grams with IDF, plus user-supplied features).",
)

# ---- synthetic ground truth (embeddings.data.synthetic) ------------------------------------------
# Only jobs.generate_synthetic writes these: what the generator planted, for tests and benchmarks to
# check what models recover (docs/SYNTHETIC.md). Topics are integers 0..T-1.
SYNTHETIC_TOPICS = TableSpec(
    name="synthetic_topics",
    schema=pa.schema(
        [
            pa.field("topic", pa.int32(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
            pa.field("prior", pa.float32(), nullable=False),
        ]
    ),
    partitioned_by_ds=False,
    key=("topic",),
    doc="Synthetic truth: each planted topic, a readable name (two of its words) and its prior share.",
)

SYNTHETIC_PIN_TOPICS = TableSpec(
    name="synthetic_pin_topics",
    schema=pa.schema(
        [
            pa.field("pin_id", pa.int64(), nullable=False),
            pa.field("primary_topic", pa.int32(), nullable=False),
            # The topic mixture: the primary topic first, then a secondary one for some pins.
            pa.field("topics", pa.list_(pa.int32()), nullable=False),
            pa.field("weights", pa.list_(pa.float32()), nullable=False),
        ]
    ),
    partitioned_by_ds=False,
    key=("pin_id",),
    doc="Synthetic truth: each pin's planted primary topic and topic mixture (weights sum to 1).",
)

SYNTHETIC_BOARD_TOPICS = TableSpec(
    name="synthetic_board_topics",
    schema=pa.schema(
        [
            pa.field("board_id", pa.int64(), nullable=False),
            pa.field("topics", pa.list_(pa.int32()), nullable=False),
        ]
    ),
    partitioned_by_ds=False,
    key=("board_id",),
    doc="Synthetic truth: the one or two topics each board is focused on.",
)

SYNTHETIC_USERS = TableSpec(
    name="synthetic_users",
    schema=pa.schema(
        [
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("num_interests", pa.int32(), nullable=False),
            pa.field("activity", pa.float32(), nullable=False),
        ]
    ),
    partitioned_by_ds=False,
    key=("user_id",),
    doc="Synthetic truth: each user's planted interest count and expected events per weekday.",
)

SYNTHETIC_USER_INTERESTS = TableSpec(
    name="synthetic_user_interests",
    schema=pa.schema(
        [
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("topic", pa.int32(), nullable=False),
            pa.field("weight", pa.float32(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("user_id", "topic"),
    doc="Synthetic truth: one row per (user, active interest) on day ds; a user's weights sum to 1.",
)

# ---- graph and neighborhoods (embeddings.graph, jobs.build_graph, jobs.ppr_neighborhoods) ---------
# Indices are dense ranks: pin_idx = rank of pin_id among the graph's pins, board_idx likewise, so they are
# a pure function of the input and ties broken by index are ties broken by id (docs/GRAPH.md).
GRAPH_EDGES = TableSpec(
    name="graph_edges",
    schema=pa.schema(
        [
            pa.field("pin_id", pa.int64(), nullable=False),
            pa.field("board_id", pa.int64(), nullable=False),
            # Number of distinct save events of the pin onto the board in the graph window.
            pa.field("weight", pa.int32(), nullable=False),
            pa.field("last_ts", UTC_TS, nullable=False),
            pa.field("pin_idx", pa.int32(), nullable=False),
            pa.field("board_idx", pa.int32(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("pin_id", "board_id"),
    doc="Deduplicated, pruned pin-board save edges of the graph window ending at ds (minus held-out days).",
)

GRAPH_PINS = TableSpec(
    name="graph_pins",
    schema=pa.schema(
        [
            pa.field("pin_id", pa.int64(), nullable=False),
            pa.field("pin_idx", pa.int32(), nullable=False),
            pa.field("degree", pa.int32(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("pin_id",),
    doc="Pin nodes: every pin created before the end of ds plus any pin in an edge; degree 0 = isolated.",
)

GRAPH_BOARDS = TableSpec(
    name="graph_boards",
    schema=pa.schema(
        [
            pa.field("board_id", pa.int64(), nullable=False),
            pa.field("board_idx", pa.int32(), nullable=False),
            pa.field("degree", pa.int32(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("board_id",),
    doc="Board nodes: boards with at least one edge after pruning, with their degree.",
)

GRAPH_CSR = TableSpec(
    name="graph_csr",
    # Not Parquet: the partition holds the .npy arrays of embeddings.graph.csr.BipartiteCSR (plus csr.json).
    # The schema lists those arrays and their dtypes, so the manifest's schema hash pins the format.
    schema=pa.schema(
        [
            pa.field("pin_ids", pa.int64(), nullable=False),
            pa.field("board_ids", pa.int64(), nullable=False),
            pa.field("pin_indptr", pa.int64(), nullable=False),
            pa.field("pin_indices", pa.int32(), nullable=False),
            pa.field("board_indptr", pa.int64(), nullable=False),
            pa.field("board_indices", pa.int32(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=(),
    doc="The graph of graph_edges as memory-mappable CSR arrays in both directions (.npy, not Parquet).",
)

PPR_NEIGHBORS = TableSpec(
    name="ppr_neighbors",
    schema=pa.schema(
        [
            pa.field("pin_id", pa.int64(), nullable=False),
            # Top-T pins by visit count of Pixie walks from pin_id (itself excluded), best first.
            pa.field("neighbor_ids", pa.list_(pa.int64()), nullable=False),
            # Visit counts normalized to sum to 1 over the listed neighbors (empty for isolated pins).
            pa.field("neighbor_weights", pa.list_(pa.float32()), nullable=False),
            # A sample of pins from a lower rank band (PinSage hard negatives).
            pa.field("hard_negative_ids", pa.list_(pa.int64()), nullable=False),
            pa.field("num_steps", pa.int64(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("pin_id",),
    doc="Personalized-PageRank neighborhood of every graph pin (PinSage neighborhoods, hard negatives).",
)

# ---- pin embeddings (embeddings.pinsage) ----------------------------------------------------------
PIN_EMBEDDINGS = TableSpec(
    name="pin_embeddings",
    schema=pa.schema(
        [
            pa.field("pin_id", pa.int64(), nullable=False),
            # PinSage's output for the pin, unit L2 norm, finite; one length (the model's embedding_dim).
            pa.field("embedding", pa.list_(pa.float32()), nullable=False),
            # The model that produced it (a registry version, or sha256:<weights> for a local model dir).
            pa.field("model_version", pa.string(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("pin_id",),
    doc="PinSage embedding of every pin with content features at ds (jobs.infer_pinsage).",
)

# ---- user embeddings (embeddings.pinnersage) ------------------------------------------------------
USER_MEDOIDS = TableSpec(
    name="user_medoids",
    schema=pa.schema(
        [
            pa.field("user_id", pa.int64(), nullable=False),
            # 1 = the user's most important cluster; at most top_k rows per user.
            pa.field("rank", pa.int32(), nullable=False),
            # The cluster's medoid: a real pin id with a pin_embeddings row.
            pa.field("medoid_pin_id", pa.int64(), nullable=False),
            # sum over the cluster's actions of exp(-lambda * age_days), ages at the end of computed_ds.
            pa.field("importance", pa.float64(), nullable=False),
            pa.field("cluster_size", pa.int32(), nullable=False),  # distinct pins
            pa.field("num_cluster_actions", pa.int32(), nullable=False),
            pa.field("num_clusters", pa.int32(), nullable=False),  # before the top-k cut
            pa.field("num_actions", pa.int32(), nullable=False),  # embedded actions given to the clustering
            pa.field("capped", pa.bool_(), nullable=False),  # the oldest actions were left out (max_actions)
            pa.field("pinsage_model_version", pa.string(), nullable=False),
            # The ds whose run computed the row (earlier than ds for rows carried over incrementally).
            pa.field("computed_ds", pa.date32(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("user_id", "rank"),
    doc="PinnerSage: the top-k medoids of the Ward clusters of each user's engaged pins (jobs.pinnersage).",
)

# ---- user sequences (embeddings.pinnerformer, jobs.build_sequences) -------------------------------
# One row per user: the time-ordered timeline of the lookback window, list columns of equal length, ordered
# by (ts, action, pin_id). Actions before cutoff_ts are the input (the latest max_length of them), the rest
# (up to the end of ds) the future part: training labels / evaluation targets (docs/DATA.md).
USER_SEQUENCES = TableSpec(
    name="user_sequences",
    schema=pa.schema(
        [
            pa.field("user_id", pa.int64(), nullable=False),
            # "train" / "valid" / "test": embeddings.pinnerformer.lake.user_split (a stable hash of user_id).
            pa.field("split", pa.string(), nullable=False),
            # The end of ds minus label_days: ts < cutoff_ts is input, later is future.
            pa.field("cutoff_ts", UTC_TS, nullable=False),
            pa.field("pin_id", pa.list_(pa.int64()), nullable=False),
            pa.field("action", pa.list_(pa.string()), nullable=False),
            pa.field("surface", pa.list_(pa.string()), nullable=False),  # items null when unknown
            pa.field("duration_ms", pa.list_(pa.int32()), nullable=False),  # items null when unknown
            pa.field("ts", pa.list_(UTC_TS), nullable=False),
            pa.field("num_actions", pa.int32(), nullable=False),  # in the lookback window, before any cap
            pa.field("num_input_dropped", pa.int32(), nullable=False),  # input older than the latest max_length
            pa.field("num_future_dropped", pa.int32(), nullable=False),  # future older than the latest max_future
        ]
    ),
    partitioned_by_ds=True,
    key=("user_id",),
    doc="PinnerFormer: each user's time-ordered actions of the lookback window ending at ds (jobs.build_sequences).",
)

# ---- PinnerFormer embeddings (jobs.infer_pinnerformer) ----------------------------------------------
# Both tables of one ds come from one PinnerFormer version and one PinSage version: inference refuses to mix
# a model with pin_embeddings of another PinSage version (docs/DATA.md).
PINNERFORMER_USER_EMBEDDINGS = TableSpec(
    name="pinnerformer_user_embeddings",
    schema=pa.schema(
        [
            pa.field("user_id", pa.int64(), nullable=False),
            # The user tower's output at the latest of the user's latest max_length actions: unit norm, finite.
            pa.field("embedding", pa.list_(pa.float32()), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),  # pinnerformer/<N>
            pa.field("pinsage_model_version", pa.string(), nullable=False),  # pinsage/<N> of its pin inputs
            # The ds whose run computed the row (earlier than ds for rows carried over incrementally).
            pa.field("computed_ds", pa.date32(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("user_id",),
    doc="PinnerFormer: one embedding per user active in the lookback window ending at ds (jobs.infer_pinnerformer).",
)

PINNERFORMER_PIN_EMBEDDINGS = TableSpec(
    name="pinnerformer_pin_embeddings",
    schema=pa.schema(
        [
            pa.field("pin_id", pa.int64(), nullable=False),
            # The pin tower's output over the pin's PinSage embedding: unit norm, finite.
            pa.field("embedding", pa.list_(pa.float32()), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),  # pinnerformer/<N>
            pa.field("pinsage_model_version", pa.string(), nullable=False),
        ]
    ),
    partitioned_by_ds=True,
    key=("pin_id",),
    doc="PinnerFormer pin tower: one embedding per pin of pin_embeddings at ds (jobs.infer_pinnerformer).",
)

# ---- the catalogue ---------------------------------------------------------------------------------
RAW_TABLES: dict[str, TableSpec] = {t.name: t for t in (EVENTS, PINS, BOARDS)}
TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in [
        EVENTS, PINS, BOARDS, PIN_FEATURES,
        # synthetic ground truth:
        SYNTHETIC_TOPICS, SYNTHETIC_PIN_TOPICS, SYNTHETIC_BOARD_TOPICS, SYNTHETIC_USERS,
        SYNTHETIC_USER_INTERESTS,
        # graph and neighborhoods:
        GRAPH_EDGES, GRAPH_PINS, GRAPH_BOARDS, GRAPH_CSR, PPR_NEIGHBORS,
        # pin embeddings:
        PIN_EMBEDDINGS,
        # user embeddings:
        USER_MEDOIDS,
        USER_SEQUENCES,
        PINNERFORMER_USER_EMBEDDINGS, PINNERFORMER_PIN_EMBEDDINGS,
    ]
}


def register_table(spec: TableSpec) -> TableSpec:
    """Add a stage's output table to the catalogue (names are unique)."""
    existing = TABLES.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"table {spec.name!r} is already registered with a different spec")
    TABLES[spec.name] = spec
    return spec


def get_table(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known tables: {sorted(TABLES)}") from None
