"""The S3-Rec sequence files (Beauty, LastFM): one line per user, `user item item ...`, time-ordered.

Order only: the n-th action of a user (0-based) gets ts = 2020-01-01T00:00Z + n days, so each user's
actions keep their order on distinct, increasing timestamps (the leave-one-out protocol reads only the
order; day-sized steps keep one action per user per ds partition). Each action is a save to the user's
single board (board_id = user id, name "history"). Pin text = the item's attribute tokens
(`attr_<id>`) from <name>_item2attributes.json, or `item_<id>` when it has none; created_ts = 2020-01-01.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embeddings.data.importers.common import (
    ImportedDataset,
    boards_table,
    events_table,
    parse_ints,
    pins_table,
    read_lines,
    require_file,
)
from embeddings.data.schemas import Action

EPOCH = np.datetime64("2020-01-01T00:00:00", "us")
DAY = np.timedelta64(86_400_000_000, "us")


def read_s3rec(path: str | Path, name: str) -> ImportedDataset:
    """Read ``<name>.txt`` and ``<name>_item2attributes.json`` from ``path`` (name: Beauty or LastFM)."""
    path = Path(path)
    users, items, positions = [], [], []
    seqs = path / f"{name}.txt"
    for number, line in read_lines(seqs, "ascii", header=False):
        ids = parse_ints(seqs, number, line, None, 0, "space-separated integers 'user item item ...'")
        if len(ids) < 2:
            raise ValueError(f"{seqs.name} line {number}: expected a user id and at least one item, got {line!r}")
        user, seq = ids[0], ids[1:]
        users.extend([user] * len(seq))
        items.extend(seq)
        positions.extend(range(len(seq)))
    if not users:
        raise ValueError(f"{seqs} has no sequences")
    attrs_path = require_file(path / f"{name}_item2attributes.json")
    try:
        attributes = {int(k): v for k, v in json.loads(attrs_path.read_text()).items()}
    except (json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{attrs_path.name}: expected a JSON object item -> [attribute ids]: {exc}") from None
    user_a = np.array(users, np.int64)
    ts = EPOCH + np.array(positions, np.int64) * DAY
    pin_list = sorted(set(items))
    texts = [" ".join(f"attr_{a}" for a in attributes[p]) if attributes.get(p) else f"item_{p}" for p in pin_list]
    board_users = sorted(set(users))
    return ImportedDataset(
        f"s3rec-{name.lower()}",
        events_table(user_a, np.array(items, np.int64), user_a, [Action.SAVE.value] * len(users), ts),
        pins_table(pin_list, texts, [EPOCH] * len(pin_list)),
        boards_table(board_users, board_users, ["history"] * len(board_users)),
    )
