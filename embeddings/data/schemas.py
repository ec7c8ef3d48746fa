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
# (tables added here)

# ---- graph and neighborhoods (embeddings.graph, jobs.build_graph, jobs.ppr_neighborhoods) ---------
# (tables added here)

# ---- the catalogue ---------------------------------------------------------------------------------
RAW_TABLES: dict[str, TableSpec] = {t.name: t for t in (EVENTS, PINS, BOARDS)}
TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in [
        EVENTS, PINS, BOARDS, PIN_FEATURES,
        # synthetic ground truth:
        # graph and neighborhoods:
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
