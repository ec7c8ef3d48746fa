"""MovieLens latest-small (ml-latest-small) as pins, boards and engagement (docs/DATASETS.md).

* movie = pin, ``pin_id`` = movieId; every movie of movies.csv is a pin, rated or not.
* a rating >= 4.0 = a ``save`` of the movie to the user's board for the movie's *first* genre (one board
  per (user, genre); ``board_id`` = 1 + the rank of (userId, genre name); named after the genre). The
  genres field is alphabetical in this release, so "first" means alphabetically first.
* a lower rating = a ``click`` with unknown duration (``duration_ms`` null), so not a positive engagement
  (``engagement.positive_mask``) but still history.
* ``ts`` = the rating's unix timestamp (UTC).
* pin text = ``"<title>; <genre>; <genre>..."`` (``(no genres listed)`` is left out of the text).
* ``created_ts`` = the movie's first rating; movies never rated get the dataset's first rating.

tags.csv (free text applied by 58 users after watching) and links.csv (IMDb/TMDb ids) are not read: tags
would need the same training-only restriction as HetRec's for little content, and links carry none.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
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
    require_file,
)
from embeddings.data.schemas import Action

NAME = "movielens"
MOVIES, RATINGS = "movies.csv", "ratings.csv"
MOVIES_COLUMNS = ("movieId", "title", "genres")
RATINGS_COLUMNS = ("userId", "movieId", "rating", "timestamp")
POSITIVE_RATING = 4.0
MIN_RATING, MAX_RATING = 0.5, 5.0
NO_GENRES = "(no genres listed)"


def _csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str], str]]:
    """(1-based line number, fields, raw line) of each data row of a UTF-8 CSV file with this header.

    Raises:
        FileNotFoundError, MalformedFileError (bad encoding, header or quoting).
    """
    try:
        text = require_file(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise MalformedFileError(f"{path} line {line}: expected utf-8 text, got byte "
                                 f"{exc.object[exc.start:exc.start + 1]!r}") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1  # the line where the row being parsed begins
    try:
        header = next(reader, None)
        if header is None:
            raise MalformedFileError(f"{path} is empty; expected a header line {','.join(columns)!r}")
        if [h.lstrip("\ufeff") for h in header] != list(columns):
            raise malformed(path, 1, f"the header {','.join(columns)!r}", ",".join(header))
        start = reader.line_num + 1
        for row in reader:
            if row:
                yield start, row, ",".join(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise MalformedFileError(
            f"{path} line {start}: expected CSV fields {','.join(columns)} (quotes closed on the same row), "
            f"got a CSV error: {exc}"
        ) from None


def _read_movies(path: Path) -> dict[int, tuple[str, list[str]]]:
    movies: dict[int, tuple[str, list[str]]] = {}
    for number, row, raw in _csv_rows(path, MOVIES_COLUMNS):
        try:
            if len(row) != 3:
                raise ValueError
            movie_id = int(row[0])
        except ValueError:
            raise malformed(path, number, "3 comma-separated fields movieId,title,genres with an integer "
                            "movieId (titles with commas quoted)", raw) from None
        if movie_id in movies:
            raise MalformedFileError(f"{path} line {number}: movieId {movie_id} appears twice")
        genres = [g for g in row[2].split("|") if g]
        if not genres:
            raise malformed(path, number, f"|-separated genres or {NO_GENRES!r}", raw)
        movies[movie_id] = (row[1], genres)
    if not movies:
        raise MalformedFileError(f"{path} has a header but no movies")
    return movies


def _read_ratings(path: Path, movies: dict[int, tuple[str, list[str]]]) -> tuple[np.ndarray, ...]:
    """(user, movie, rating, unix seconds) of every rating."""
    users, items, ratings, seconds = [], [], [], []
    for number, row, raw in _csv_rows(path, RATINGS_COLUMNS):
        try:
            if len(row) != 4:
                raise ValueError
            user, movie, rating, second = int(row[0]), int(row[1]), float(row[2]), int(row[3])
        except ValueError:
            raise malformed(path, number, "4 comma-separated fields userId,movieId,rating,timestamp "
                            "(integers and a decimal rating)", raw) from None
        if not MIN_RATING <= rating <= MAX_RATING:
            raise malformed(path, number, f"a rating between {MIN_RATING} and {MAX_RATING}", raw)
        if movie not in movies:
            raise MalformedFileError(f"{path} line {number}: movieId {movie} is not in {path.parent / MOVIES}")
        users.append(user)
        items.append(movie)
        ratings.append(rating)
        seconds.append(second)
    if not users:
        raise MalformedFileError(f"{path} has a header but no ratings")
    return (np.array(users, np.int64), np.array(items, np.int64), np.array(ratings, np.float64),
            np.array(seconds, np.int64))


def read_movielens(path: str | Path) -> ImportedDataset:
    """Read the ml-latest-small folder into the raw contract (rules in the module docstring).

    Args:
        path: the folder holding movies.csv and ratings.csv.

    Returns:
        The dataset: one event per rating (save or click), one pin per movie, one board per (user, genre)
        with at least one save.

    Raises:
        FileNotFoundError: a file is missing (the message names its path).
        MalformedFileError: a line is not in the published format (names file, 1-based line, expectation),
            a rating is out of range, or a movieId is unknown or appears twice.
    """
    path = Path(path)
    movies = _read_movies(path / MOVIES)
    users, items, ratings, seconds = _read_ratings(path / RATINGS, movies)
    ts = (seconds * 1_000_000).astype("datetime64[us]")
    save = ratings >= POSITIVE_RATING

    pin_list = np.array(sorted(movies), dtype=np.int64)
    genre_names = sorted({genres[0] for _, genres in movies.values()})
    genre_rank = {g: i for i, g in enumerate(genre_names)}
    first_genre = np.array([genre_rank[movies[p][1][0]] for p in pin_list.tolist()], np.int64)
    event_genre = first_genre[np.searchsorted(pin_list, items)]
    keys, board_rows = np.unique(np.stack([users[save], event_genre[save]], axis=1), axis=0, return_inverse=True)
    board_ids = np.zeros(len(users), dtype=np.int64)
    board_ids[save] = board_rows.ravel() + 1
    actions = np.where(save, Action.SAVE.value, Action.CLICK.value).astype(object)
    events = events_table(users, items, board_ids, actions, ts, has_board=save)

    texts = ["; ".join([title, *(g for g in genres if g != NO_GENRES)])
             for title, genres in (movies[p] for p in pin_list.tolist())]
    pins = pins_table(pin_list, texts, first_event_ts(pin_list, items, ts))
    boards = boards_table(np.arange(1, len(keys) + 1), keys[:, 0], [genre_names[g] for g in keys[:, 1].tolist()])
    return ImportedDataset(NAME, events, pins, boards, (path / MOVIES, path / RATINGS))
