"""HetRec 2011 Last.fm 2k as a pin-board graph.

artist = pin (pin_id = artistID); each (user, tag) pair = a board owned by the user, named after the tag
(board ids dense in (userID, tagID) order); each row of user_taggedartists.dat = a save of the artist to
that board at UTC midnight of its date. Pin text = the artist name plus the names of the tags it got in
the *training* part of the per-user split only (engagement.split_per_user), so held-out boards cannot leak
into features. created_ts = the pin's earliest save, or 2005-01-01 for artists never tagged. Tagged artists missing
from artists.dat are pins named `artist_<id>` plus their training tags.
user_artists.dat (listen counts, no time) and user_friends.dat (social links) are not used: neither is a
dated pin-board action.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import numpy as np

from embeddings.data.engagement import TRAIN, split_per_user
from embeddings.data.importers.common import (
    ImportedDataset,
    boards_table,
    events_table,
    parse_ints,
    pins_table,
    read_lines,
)
from embeddings.data.schemas import Action

NEVER_TAGGED_CREATED = np.datetime64("2005-01-01T00:00:00", "us")
TAGGED = "user_taggedartists.dat"


def read_hetrec(path: str | Path) -> ImportedDataset:
    """Read the HetRec Last.fm folder into the raw contract (see the module docstring)."""
    path = Path(path)
    artists: dict[int, str] = {}
    for number, line in read_lines(path / "artists.dat", "utf-8", header=True):
        fields = line.split("\t")
        try:
            artists[int(fields[0])] = fields[1]
        except (ValueError, IndexError):
            raise ValueError(f"artists.dat line {number}: expected 'id<TAB>name<TAB>url<TAB>pictureURL', "
                             f"got {line[:80]!r}") from None
    tags: dict[int, str] = {}
    # tags.dat is ISO-8859-1 (latin-1), unlike artists.dat (UTF-8).
    for number, line in read_lines(path / "tags.dat", "latin-1", header=True):
        fields = line.split("\t")
        try:
            tags[int(fields[0])] = fields[1]
        except (ValueError, IndexError):
            raise ValueError(f"tags.dat line {number}: expected 'tagID<TAB>tagValue', got {line[:80]!r}") from None
    rows = []
    for number, line in read_lines(path / TAGGED, "ascii", header=True):
        user, artist, tag, day, month, year = parse_ints(
            path / TAGGED, number, line, "\t", 6,
            "6 tab-separated integer fields userID artistID tagID day month year",
        )
        try:
            when = dt.datetime(year, month, day)
        except ValueError:
            raise ValueError(f"{TAGGED} line {number}: invalid date day={day} month={month} year={year}") from None
        if tag not in tags:
            raise ValueError(f"{TAGGED} line {number}: tagID {tag} is not in tags.dat")
        rows.append((user, artist, tag, np.datetime64(when, "us")))
    if not rows:
        raise ValueError(f"{path / TAGGED} has no tag assignments")
    user_ids = np.array([r[0] for r in rows], np.int64)
    pin_ids = np.array([r[1] for r in rows], np.int64)
    tag_ids = np.array([r[2] for r in rows], np.int64)
    ts = np.array([r[3] for r in rows], dtype="datetime64[us]")

    board_keys = sorted(set(zip(user_ids.tolist(), tag_ids.tolist())))
    board_of = {key: i + 1 for i, key in enumerate(board_keys)}
    board_ids = np.array([board_of[k] for k in zip(user_ids.tolist(), tag_ids.tolist())], np.int64)

    labels = split_per_user(user_ids, pin_ids, ts)
    train_tags: dict[int, set[str]] = defaultdict(set)
    for pin, tag, label in zip(pin_ids.tolist(), tag_ids.tolist(), labels.tolist()):
        if label == TRAIN:
            train_tags[pin].add(tags[tag])
    first_save: dict[int, np.datetime64] = {}
    for pin, when in zip(pin_ids.tolist(), ts):
        if pin not in first_save or when < first_save[pin]:
            first_save[pin] = when
    # Some tagged artists are missing from artists.dat: they are pins too, named only by their tags.
    pin_list = sorted(set(artists) | set(pin_ids.tolist()))
    texts = [" ".join([artists.get(p, f"artist_{p}"), *sorted(train_tags.get(p, ()))]) for p in pin_list]
    created = [first_save.get(p, NEVER_TAGGED_CREATED) for p in pin_list]
    events = events_table(user_ids, pin_ids, board_ids, [Action.SAVE.value] * len(rows), ts)
    boards = boards_table(list(range(1, len(board_keys) + 1)), [k[0] for k in board_keys],
                          [tags[k[1]] for k in board_keys])
    return ImportedDataset("hetrec-lastfm", events, pins_table(pin_list, texts, created), boards)
