"""What every importer returns, and the line-level parsing that names the file, line and expectation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from embeddings.data.schemas import BOARDS, EVENTS, PINS

UTC = dt.timezone.utc


@dataclass(frozen=True)
class ImportedDataset:
    """Raw-contract tables of one public dataset."""

    name: str
    events: pa.Table
    pins: pa.Table
    boards: pa.Table


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    return path


def read_lines(path: Path, encoding: str, header: bool) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without newline) for non-empty lines, header skipped."""
    with open(require_file(path), encoding=encoding, newline="") as f:
        for number, line in enumerate(f, start=1):
            if header and number == 1:
                continue
            line = line.rstrip("\r\n")
            if line:
                yield number, line


def parse_ints(path: Path, number: int, line: str, sep: str | None, count: int, expected: str) -> list[int]:
    fields = line.split(sep)
    try:
        if count and len(fields) != count:
            raise ValueError
        return [int(v) for v in fields]
    except ValueError:
        raise ValueError(f"{path.name} line {number}: expected {expected}, got {line[:80]!r}") from None


def events_table(user_ids, pin_ids, board_ids, actions, ts, duration_ms=None) -> pa.Table:
    n = len(user_ids)
    return pa.table(
        {
            "user_id": pa.array(user_ids, pa.int64()),
            "pin_id": pa.array(pin_ids, pa.int64()),
            "board_id": pa.array(board_ids, pa.int64()),
            "action": pa.array(actions, pa.string()),
            "ts": pa.array(np.asarray(ts, dtype="datetime64[us]"), pa.timestamp("us", tz="UTC")),
            "duration_ms": pa.array(duration_ms if duration_ms is not None else [None] * n, pa.int32()),
            "surface": pa.array([None] * n, pa.string()),
        },
        schema=EVENTS.schema,
    )


def pins_table(pin_ids, texts, created_ts) -> pa.Table:
    return pa.table(
        {
            "pin_id": pa.array(pin_ids, pa.int64()),
            "text": pa.array(texts, pa.string()),
            "features": pa.array([None] * len(pin_ids), pa.list_(pa.float32())),
            "created_ts": pa.array(np.asarray(created_ts, dtype="datetime64[us]"), pa.timestamp("us", tz="UTC")),
        },
        schema=PINS.schema,
    )


def boards_table(board_ids, user_ids, names) -> pa.Table:
    return pa.table(
        {"board_id": pa.array(board_ids, pa.int64()), "user_id": pa.array(user_ids, pa.int64()),
         "name": pa.array(names, pa.string())},
        schema=BOARDS.schema,
    )
