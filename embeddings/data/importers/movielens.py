"""MovieLens latest-small as pins and boards.

movie = pin; a rating >= 4 = a save of the movie to the user's board for the movie's first genre (one
board per (user, genre), ids dense in (userId, genre) order, named after the genre); a lower rating = a
click with unknown duration (not a positive engagement). ts = the rating's unix timestamp. Pin text =
title + genres. created_ts = the movie's earliest rating (1995-01-01 if never rated). tags.csv is not
used: tags are applied after watching and would leak held-out interactions into features.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from embeddings.data.importers.common import ImportedDataset, boards_table, events_table, pins_table, require_file
from embeddings.data.schemas import Action

POSITIVE_RATING = 4.0
NEVER_RATED_CREATED = np.datetime64("1995-01-01T00:00:00", "us")


def _rows(path: Path, columns: list[str]):
    with open(require_file(path), encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != columns:
            raise ValueError(f"{path.name} line 1: expected header {','.join(columns)}, got {header}")
        for row in reader:
            if row:
                yield reader.line_num, row


def read_movielens(path: str | Path) -> ImportedDataset:
    path = Path(path)
    movies: dict[int, tuple[str, list[str]]] = {}
    for number, row in _rows(path / "movies.csv", ["movieId", "title", "genres"]):
        try:
            movie_id, title, genres = int(row[0]), row[1], row[2]
        except (ValueError, IndexError):
            raise ValueError(f"movies.csv line {number}: expected movieId,title,genres, got {row}") from None
        movies[movie_id] = (title, genres.split("|"))
    users, pins, ratings, ts = [], [], [], []
    for number, row in _rows(path / "ratings.csv", ["userId", "movieId", "rating", "timestamp"]):
        try:
            if len(row) != 4:
                raise ValueError
            users.append(int(row[0]))
            pins.append(int(row[1]))
            ratings.append(float(row[2]))
            ts.append(int(row[3]))
        except ValueError:
            raise ValueError(f"ratings.csv line {number}: expected userId,movieId,rating,timestamp "
                             f"(integers and a decimal rating), got {row}") from None
        if pins[-1] not in movies:
            raise ValueError(f"ratings.csv line {number}: movieId {pins[-1]} is not in movies.csv")
    if not users:
        raise ValueError(f"{path / 'ratings.csv'} has no ratings")
    users_a, pins_a = np.array(users, np.int64), np.array(pins, np.int64)
    ts_a = (np.array(ts, np.int64) * 1_000_000).astype("datetime64[us]")
    positive = np.array(ratings) >= POSITIVE_RATING
    first_genre = [movies[p][1][0] for p in pins]
    keys = sorted({(u, g) for u, g, pos in zip(users, first_genre, positive) if pos})
    board_of = {k: i + 1 for i, k in enumerate(keys)}
    board_ids = [board_of[(u, g)] if pos else None for u, g, pos in zip(users, first_genre, positive)]
    actions = np.where(positive, Action.SAVE.value, Action.CLICK.value)
    first_rating: dict[int, np.datetime64] = {}
    for pin, when in zip(pins, ts_a):
        if pin not in first_rating or when < first_rating[pin]:
            first_rating[pin] = when
    pin_list = sorted(movies)
    texts = [f"{movies[p][0]} {' '.join(movies[p][1])}" for p in pin_list]
    created = [first_rating.get(p, NEVER_RATED_CREATED) for p in pin_list]
    return ImportedDataset(
        "movielens",
        events_table(users_a, pins_a, board_ids, actions.tolist(), ts_a),
        pins_table(pin_list, texts, created),
        boards_table(list(range(1, len(keys) + 1)), [k[0] for k in keys], [k[1] for k in keys]),
    )
