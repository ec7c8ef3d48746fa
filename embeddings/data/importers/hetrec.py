"""HetRec 2011 Last.fm 2k (hetrec2011-lastfm-2k) as a pin-board graph (docs/DATASETS.md).

* artist = pin, ``pin_id`` = artistID; every artist of artists.dat is a pin, tagged or not, and so is a
  tagged artistID missing from artists.dat (390 in the published files; its name is empty).
* each (user, tag) pair = a board owned by the user and named after the tag; ``board_id`` = 1 + the rank
  of (userID, tagID), so ids are dense and a pure function of the file.
* each row of user_taggedartists.dat = a save of the artist to that board at UTC midnight of its date.
* pin text = ``"<artist name>; <tag>; <tag>..."``: the distinct names (sorted) of the tags the artist got
  in the **training** part of the per-user split (``engagement.split_per_user`` over these events), so a
  held-out assignment cannot leak its board into content features.
* ``created_ts`` = the artist's first save; artists never tagged get the dataset's first save.

Encodings, checked on the published files: artists.dat is UTF-8 (two names are mojibake as published and
are kept), tags.dat is ISO-8859-1 (8 tags such as ``rock français``), the others ASCII.
user_artists.dat (listen counts, no time) and user_friends.dat (social links) are not read.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from embeddings.data.engagement import TRAIN, split_per_user
from embeddings.data.importers.common import (
    ImportedDataset,
    MalformedFileError,
    boards_table,
    check_header,
    events_table,
    first_event_ts,
    malformed,
    parse_int_fields,
    pins_table,
    read_lines,
)
from embeddings.data.schemas import Action

NAME = "hetrec-lastfm"
ARTISTS, TAGS, TAGGED = "artists.dat", "tags.dat", "user_taggedartists.dat"
ARTISTS_ENCODING, TAGS_ENCODING, TAGGED_ENCODING = "utf-8", "latin-1", "ascii"
TAGGED_COLUMNS = ("userID", "artistID", "tagID", "day", "month", "year")


def _read_names(path: Path, encoding: str, columns: tuple[str, ...]) -> dict[int, str]:
    """id -> name from a tab-separated file whose first two columns are an integer id and a name."""
    lines = read_lines(path, encoding)
    check_header(path, lines, columns)
    names: dict[int, str] = {}
    for number, line in lines:
        fields = line.split("\t")
        try:
            if len(fields) != len(columns):
                raise ValueError
            key = int(fields[0])
        except ValueError:
            raise malformed(
                path, number, f"{len(columns)} tab-separated fields {' '.join(columns)} with an integer "
                f"{columns[0]}", line,
            ) from None
        if key in names:
            raise MalformedFileError(f"{path} line {number}: {columns[0]} {key} appears twice")
        names[key] = fields[1]
    return names


def _read_assignments(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user, artist, tag, ts) of every tag assignment; ts = UTC midnight of day/month/year."""
    lines = read_lines(path, TAGGED_ENCODING)
    check_header(path, lines, TAGGED_COLUMNS)
    rows: list[tuple[int, int, int]] = []
    days: list[np.datetime64] = []
    dates: dict[tuple[int, int, int], np.datetime64] = {}  # few distinct dates: validate each once
    for number, line in lines:
        user, artist, tag, day, month, year = parse_int_fields(path, number, line, TAGGED_COLUMNS)
        when = dates.get((year, month, day))
        if when is None:
            try:
                when = np.datetime64(dt.date(year, month, day), "D")
            except ValueError:
                raise malformed(path, number, "a valid calendar date in day month year", line) from None
            dates[(year, month, day)] = when
        rows.append((user, artist, tag))
        days.append(when)
    if not rows:
        raise MalformedFileError(f"{path} has a header but no tag assignments")
    ids = np.array(rows, dtype=np.int64)  # (N, 3)
    return ids[:, 0], ids[:, 1], ids[:, 2], np.array(days, dtype="datetime64[D]").astype("datetime64[us]")


def read_hetrec(path: str | Path) -> ImportedDataset:
    """Read the hetrec2011-lastfm-2k folder into the raw contract (rules in the module docstring).

    Args:
        path: the folder holding artists.dat, tags.dat and user_taggedartists.dat.

    Returns:
        The dataset: one save per tag assignment, one pin per artist, one board per (user, tag).

    Raises:
        FileNotFoundError: a file is missing (the message names its path).
        MalformedFileError: a line is not in the published format (names file, 1-based line, expectation),
            a tagID is not in tags.dat, or an id appears twice.
    """
    path = Path(path)
    artists = _read_names(path / ARTISTS, ARTISTS_ENCODING, ("id", "name", "url", "pictureURL"))
    tags = _read_names(path / TAGS, TAGS_ENCODING, ("tagID", "tagValue"))
    users, artist_ids, tag_ids, ts = _read_assignments(path / TAGGED)
    unknown = np.setdiff1d(tag_ids, np.fromiter(tags, dtype=np.int64, count=len(tags)))
    if len(unknown):
        raise MalformedFileError(
            f"{path / TAGGED}: {len(unknown)} tagID(s) are not in {path / TAGS}, e.g. {unknown[:5].tolist()}"
        )

    # boards: one per (user, tag), ids = 1 + rank of (userID, tagID)
    keys, board_rows = np.unique(np.stack([users, tag_ids], axis=1), axis=0, return_inverse=True)
    board_ids = board_rows.ravel().astype(np.int64) + 1
    events = events_table(users, artist_ids, board_ids, np.full(len(users), Action.SAVE.value, dtype=object), ts)

    # pin text: tags from training assignments only (split over the events in canonical order)
    ev_users = events.column("user_id").to_numpy()
    ev_pins = events.column("pin_id").to_numpy()
    ev_tags = keys[events.column("board_id").to_numpy() - 1, 1]
    train = split_per_user(ev_users, ev_pins, events.column("ts").to_numpy()) == TRAIN
    train_pairs = np.unique(np.stack([ev_pins[train], ev_tags[train]], axis=1), axis=0)
    pin_list = np.union1d(np.fromiter(artists, dtype=np.int64, count=len(artists)), artist_ids)
    tags_of: dict[int, list[str]] = {}
    for pin, tag in train_pairs.tolist():
        tags_of.setdefault(pin, []).append(tags[tag])
    texts = ["; ".join(part for part in [artists.get(p, ""), *sorted(set(tags_of.get(p, ())))] if part)
             for p in pin_list.tolist()]
    pins = pins_table(pin_list, texts, first_event_ts(pin_list, artist_ids, ts))
    boards = boards_table(np.arange(1, len(keys) + 1), keys[:, 0], [tags[t] for t in keys[:, 1].tolist()])
    return ImportedDataset(NAME, events, pins, boards, (path / ARTISTS, path / TAGS, path / TAGGED))
