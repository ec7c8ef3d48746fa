"""What every importer returns, the line-level parsing that names file, line and expectation, and the
raw-contract table builders the importers share (docs/DATASETS.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from embeddings.data.schemas import BOARDS, EVENTS, PINS, UTC_TS


class MalformedFileError(ValueError):
    """A dataset file does not have the published format; the message names file, line and expectation."""


@dataclass(frozen=True)
class ImportedDataset:
    """Raw-contract tables of one public dataset.

    Attributes:
        name: the dataset's name (a key of ``embeddings.data.importers.DATASETS``).
        events: EVENTS rows in canonical order, sorted by (ts, user_id, pin_id, board_id), so the
            per-user split's last tie-break (row order) is the same here and for anyone reading the
            partitions back in day order.
        pins: PINS rows sorted by pin_id; ``features`` null.
        boards: BOARDS rows sorted by board_id.
        source_files: the files read, for provenance (the job records their checksums).
    """

    name: str
    events: pa.Table
    pins: pa.Table
    boards: pa.Table
    source_files: tuple[Path, ...]


def require_file(path: Path) -> Path:
    """``path`` if it is a file.

    Raises:
        FileNotFoundError: naming the path.
    """
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist (is --path the dataset's folder?)")
    return path


def read_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for every line of a text file, blank ones skipped.

    Each line is decoded on its own so that a byte the encoding cannot decode is reported with its line.

    Raises:
        FileNotFoundError: the file does not exist.
        MalformedFileError: a line is not valid ``encoding``.
    """
    with open(require_file(path), "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise MalformedFileError(
                    f"{path} line {number}: expected {encoding} text, got byte {raw[exc.start:exc.start + 1]!r} "
                    f"at column {exc.start + 1}"
                ) from None
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


def check_header(path: Path, lines: Iterator[tuple[int, str]], columns: Sequence[str], sep: str = "\t") -> None:
    """Consume the first line of ``lines`` and check it is exactly ``columns`` joined by ``sep``.

    Raises:
        MalformedFileError: the file is empty or the header differs.
    """
    expected = sep.join(columns)
    first = next(lines, None)
    if first is None:
        raise MalformedFileError(f"{path} is empty; expected a header line {expected!r}")
    number, line = first
    if line.lstrip("\ufeff") != expected:
        raise MalformedFileError(f"{path} line {number}: expected the header {expected!r}, got {line[:120]!r}")


def malformed(path: Path, number: int, expected: str, got: str) -> MalformedFileError:
    """The error for line ``number`` of ``path``: what was expected and (the start of) what was there."""
    shown = got if len(got) <= 120 else got[:120] + "..."
    return MalformedFileError(f"{path} line {number}: expected {expected}, got {shown!r}")


def parse_int_fields(path: Path, number: int, line: str, names: Sequence[str]) -> list[int]:
    """The tab-separated integer fields ``names`` of one line.

    Raises:
        MalformedFileError: wrong field count or a field that is not an integer.
    """
    fields = line.split("\t")
    try:
        if len(fields) != len(names):
            raise ValueError
        return [int(v) for v in fields]
    except ValueError:
        raise malformed(
            path, number, f"{len(names)} tab-separated integer fields {' '.join(names)}", line
        ) from None


# ---- raw-contract tables ------------------------------------------------------------------------


def _utc(ts: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ts, dtype="datetime64[us]"), UTC_TS)


def events_table(
    user_ids: np.ndarray,
    pin_ids: np.ndarray,
    board_ids: np.ndarray,
    actions: np.ndarray,
    ts: np.ndarray,
    has_board: np.ndarray | None = None,
) -> pa.Table:
    """EVENTS rows in canonical order (ts, user_id, pin_id, board_id); duration and surface are null.

    Args:
        user_ids, pin_ids, board_ids: (N,) int64; ``board_ids`` is ignored where ``has_board`` is False.
        actions: (N,) action strings.
        ts: (N,) datetime64 (UTC).
        has_board: (N,) bool, default all True (every event is a save onto a board).
    """
    n = len(user_ids)
    board_ids = np.asarray(board_ids, dtype=np.int64)
    mask = None if has_board is None else ~np.asarray(has_board, dtype=bool)
    table = pa.table(
        {
            "user_id": pa.array(np.asarray(user_ids, dtype=np.int64)),
            "pin_id": pa.array(np.asarray(pin_ids, dtype=np.int64)),
            "board_id": pa.array(board_ids, pa.int64(), mask=mask),
            "action": pa.array(np.asarray(actions, dtype=object), pa.string()),
            "ts": _utc(ts),
            "duration_ms": pa.nulls(n, pa.int32()),
            "surface": pa.nulls(n, pa.string()),
        },
        schema=EVENTS.schema,
    )
    return table.sort_by([("ts", "ascending"), ("user_id", "ascending"), ("pin_id", "ascending"),
                          ("board_id", "ascending")])


def first_event_ts(pin_list: np.ndarray, pin_ids: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """created_ts rule shared by the importers: a pin's earliest event; the dataset's earliest event for a
    pin with none (so every pin exists at every ds the dataset covers).

    Args:
        pin_list: (P,) sorted unique pin ids.
        pin_ids: (N,) pin of each event (all in ``pin_list``); ts: (N,) datetime64.

    Returns:
        (P,) datetime64[us].
    """
    ts = np.asarray(ts, dtype="datetime64[us]").astype(np.int64)
    first = np.full(len(pin_list), ts.min(), dtype=np.int64)
    at = np.searchsorted(pin_list, pin_ids)
    earliest = np.full(len(pin_list), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(earliest, at, ts)
    seen = earliest != np.iinfo(np.int64).max
    first[seen] = earliest[seen]
    return first.astype("datetime64[us]")


def pins_table(pin_ids: np.ndarray, texts: Sequence[str], created_ts: np.ndarray) -> pa.Table:
    """PINS rows (``features`` null), in the order given (callers pass sorted ids)."""
    return pa.table(
        {
            "pin_id": pa.array(np.asarray(pin_ids, dtype=np.int64)),
            "text": pa.array(list(texts), pa.string()),
            "features": pa.nulls(len(pin_ids), pa.list_(pa.float32())),
            "created_ts": _utc(created_ts),
        },
        schema=PINS.schema,
    )


def boards_table(board_ids: np.ndarray, user_ids: np.ndarray, names: Sequence[str]) -> pa.Table:
    """BOARDS rows in the order given (callers pass sorted ids)."""
    return pa.table(
        {
            "board_id": pa.array(np.asarray(board_ids, dtype=np.int64)),
            "user_id": pa.array(np.asarray(user_ids, dtype=np.int64)),
            "name": pa.array(list(names), pa.string()),
        },
        schema=BOARDS.schema,
    )
