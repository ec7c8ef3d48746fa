"""The S3-Rec sequence files (``<Name>.txt`` + ``<Name>_item2attributes.json``) as saves (docs/DATASETS.md).

``<Name>.txt`` has one line per user, ``user item item ...``, oldest first, and no clock. The importer
assigns each action a timestamp that keeps exactly that order:

    ts of the k-th item (k = 0, 1, ...) on a user's line = 2020-01-01T00:00:00Z + k seconds

so a user's actions sit on distinct, strictly increasing timestamps and sorting by (user, ts) gives back
the published sequence; the leave-one-out protocol reads only that order. The gap carries no meaning.
Every user's actions start at the same instant, so all events land in one ``ds`` partition (2020-01-01)
unless a user has more than 86,400 actions (the longest published sequence has 899).

* item = pin (``pin_id`` = item id), every item of the sequences and of the attribute file.
* each action = a ``save`` to the user's one board (``board_id`` = user id, named ``saves``).
* pin text = the item's distinct attribute ids in ascending order as tokens, ``"attr_12 attr_40"``
  (S3-Rec uses them as a set); empty for an item without attributes.
* ``created_ts`` = the item's first action (2020-01-01T00:00:00Z + its earliest position).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embeddings.data.importers.common import (
    ImportedDataset,
    MalformedFileError,
    boards_table,
    events_table,
    first_event_ts,
    malformed,
    pins_table,
    read_lines,
    require_file,
)
from embeddings.data.schemas import Action

EPOCH = np.datetime64("2020-01-01T00:00:00", "us")
STEP = np.timedelta64(1_000_000, "us")  # one second between consecutive actions of a user
BOARD_NAME = "saves"


def _read_sequences(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, position within the user's line) of every action."""
    users: list[int] = []
    items: list[int] = []
    positions: list[int] = []
    line_of_user: dict[int, int] = {}
    for number, line in read_lines(path, "ascii"):
        try:
            ids = [int(v) for v in line.split()]
        except ValueError:
            raise malformed(path, number, "space-separated integers 'user item item ...'", line) from None
        if len(ids) < 2:
            raise malformed(path, number, "a user id followed by at least one item id", line)
        user, seq = ids[0], ids[1:]
        if user in line_of_user:
            raise MalformedFileError(
                f"{path} line {number}: expected one line per user, but user {user} is also on line "
                f"{line_of_user[user]}"
            )
        line_of_user[user] = number
        users.extend([user] * len(seq))
        items.extend(seq)
        positions.extend(range(len(seq)))
    if not users:
        raise MalformedFileError(f"{path} has no sequences")
    return np.array(users, np.int64), np.array(items, np.int64), np.array(positions, np.int64)


def _read_attributes(path: Path) -> dict[int, list[int]]:
    """item id -> sorted distinct attribute ids."""
    text = require_file(path).read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedFileError(f"{path} line {exc.lineno}: expected JSON, got an error: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise MalformedFileError(
            f"{path}: expected a JSON object {{item id: [attribute ids]}}, got {type(raw).__name__}"
        )
    attributes: dict[int, list[int]] = {}
    for key, values in raw.items():
        try:
            if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
                raise ValueError
            attributes[int(key)] = sorted(set(values))
        except ValueError:
            raise MalformedFileError(
                f"{path}: expected an integer item id mapped to a list of integer attribute ids, got "
                f"{key!r}: {str(values)[:80]}"
            ) from None
    return attributes


def read_s3rec(path: str | Path, name: str) -> ImportedDataset:
    """Read ``<name>.txt`` and ``<name>_item2attributes.json`` into the raw contract (module docstring).

    Args:
        path: the folder holding the files.
        name: the file stem as published, e.g. ``"Beauty"`` or ``"LastFM"``.

    Returns:
        The dataset ``s3rec-<name lowercased>``: one save per action, one pin per item, one board per user.

    Raises:
        FileNotFoundError: a file is missing (the message names its path).
        MalformedFileError: a line or the JSON is not in the published format (names file, line and
            expectation), or a user has two lines.
    """
    path = Path(path)
    seq_path, attr_path = path / f"{name}.txt", path / f"{name}_item2attributes.json"
    users, items, positions = _read_sequences(seq_path)
    attributes = _read_attributes(attr_path)
    ts = EPOCH + positions * STEP
    events = events_table(users, items, users, np.full(len(users), Action.SAVE.value, dtype=object), ts)
    pin_list = np.union1d(items, np.fromiter(attributes, dtype=np.int64, count=len(attributes)))
    texts = [" ".join(f"attr_{a}" for a in attributes.get(p, ())) for p in pin_list.tolist()]
    board_users = np.unique(users)
    return ImportedDataset(
        f"s3rec-{name.lower()}",
        events,
        pins_table(pin_list, texts, first_event_ts(pin_list, items, ts)),
        boards_table(board_users, board_users, [BOARD_NAME] * len(board_users)),
        (seq_path, attr_path),
    )
