"""Each importer on tiny files in its exact published format, written here (never ../shared/data).

The ``write_*`` helpers are also used by tests/jobs/test_import_dataset.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pytest

from embeddings.data.engagement import TEST, TRAIN, VALID, positive_mask, split_per_user
from embeddings.data.importers import (
    DATASETS,
    MalformedFileError,
    read_dataset,
    read_hetrec,
    read_movielens,
    read_s3rec,
)

UTC = dt.timezone.utc

# ---- tiny datasets ------------------------------------------------------------------------------

TAGGED_HEADER = "userID\tartistID\ttagID\tday\tmonth\tyear\n"
# user 5 has four assignments: by the per-user split (n=4: one test, one validation) January and February
# are training, March (café on Björk) validation and April (late on Muse) test. User 6 has two, all
# training, and tags Muse "late" too. Artist 4 is missing from artists.dat; artist 3 is never tagged.
TAGGED_ROWS = [
    "5\t1\t10\t1\t1\t2009",
    "5\t2\t10\t1\t2\t2009",
    "5\t1\t11\t1\t3\t2009",
    "5\t2\t12\t1\t4\t2009",
    "6\t2\t12\t1\t1\t2010",
    "6\t4\t13\t15\t1\t2010",
]


def _write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def write_hetrec(folder: Path, tagged_rows: list[str] = TAGGED_ROWS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder, "artists.dat", "id\tname\turl\tpictureURL\n1\tBjörk\thttp://a\thttp://p\n"
                                  "2\tMuse\thttp://a\thttp://p\n3\tQuiet\thttp://a\thttp://p\n")
    # tags.dat is ISO-8859-1 as published
    _write(folder, "tags.dat", "tagID\ttagValue\n10\trock\n11\tcafé\n12\tlate\n13\telectro\n", "latin-1")
    _write(folder, "user_taggedartists.dat", TAGGED_HEADER + "\n".join(tagged_rows) + "\n")
    # present in the published folder, never read
    _write(folder, "user_artists.dat", "userID\tartistID\tweight\n5\t1\t100\n")
    _write(folder, "user_friends.dat", "userID\tfriendID\n5\t6\n")
    return folder


def write_two_listeners(folder: Path) -> Path:
    """HetRec with 8 artists: user 5 saves artists 1-6 on six days (per-user split: TEST 6, VALID 5), user 6
    saves 2, 7, 8, 3 (TEST 3, VALID 8). In the development split user 5's history before its TEST slice (the
    VALID saves) holds artist 4, a development-VALID save of user 5 alone, so off the development graph."""
    rows = [f"5\t{a}\t10\t{a}\t1\t2009" for a in range(1, 7)]
    rows += [f"6\t{a}\t11\t{day}\t2\t2009" for day, a in enumerate((2, 7, 8, 3), start=1)]
    source = write_hetrec(folder, rows)
    (source / "artists.dat").write_text("id\tname\turl\tpictureURL\n" + "".join(
        f"{a}\tartist {a}\thttp://a\thttp://p\n" for a in range(1, 9)))
    return source


def write_movielens(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder, "movies.csv", "movieId,title,genres\n"
                                 '1,"Toy Story, The (1995)",Animation|Comedy\n'
                                 "2,Heat (1995),Action\n"
                                 "3,Unrated (2000),Drama\n"
                                 "4,Listed Out Of Order (2001),Drama|Action\n"
                                 "5,Nothing (2002),(no genres listed)\n")
    _write(folder, "ratings.csv", "userId,movieId,rating,timestamp\n"
                                  "1,1,4.0,964982703\n"      # save -> (1, Animation)
                                  "1,2,3.5,964982800\n"      # click, just under the threshold
                                  "2,1,5.0,965069200\n"      # save -> (2, Animation), next day
                                  "1,4,4.5,964982900\n"      # save -> (1, Drama): first listed genre
                                  "2,5,4.0,965069300\n")     # save -> (2, (no genres listed))
    _write(folder, "tags.csv", "userId,movieId,tag,timestamp\n1,1,funny,964982704\n")  # never read
    return folder


def write_s3rec(folder: Path, name: str = "Beauty") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder, f"{name}.txt", "1 10 11 12 10\n2 11 10\n")
    _write(folder, f"{name}_item2attributes.json", json.dumps({"10": [2, 1, 2], "11": [], "12": [3], "13": [4]}))
    return folder


def _texts(data) -> dict[int, str]:
    return dict(zip(data.pins.column("pin_id").to_pylist(), data.pins.column("text").to_pylist()))


def _ts(year: int, month: int, day: int, *hms: int) -> dt.datetime:
    return dt.datetime(year, month, day, *hms, tzinfo=UTC)


# ---- HetRec ---------------------------------------------------------------------------------------


def test_hetrec_rows_boards_and_saves(tmp_path):
    data = read_hetrec(write_hetrec(tmp_path))
    assert data.events.num_rows == len(TAGGED_ROWS)
    assert set(data.events.column("action").to_pylist()) == {"save"}
    # one board per (user, tag), ids 1.. in (userID, tagID) order, named after the tag, owned by the user
    assert [tuple(b.values()) for b in data.boards.to_pylist()] == [
        (1, 5, "rock"), (2, 5, "café"), (3, 5, "late"), (4, 6, "late"), (5, 6, "electro")]
    rows = {(r["user_id"], r["pin_id"], r["board_id"]): r["ts"] for r in data.events.to_pylist()}
    assert rows[(5, 1, 2)] == _ts(2009, 3, 1)  # café on Björk by user 5: board 2, UTC midnight of its date
    assert rows[(6, 4, 5)] == _ts(2010, 1, 15)
    assert data.pins.column("pin_id").to_pylist() == [1, 2, 3, 4]  # never-tagged 3 and unnamed 4 included
    assert data.pins.column("features").null_count == 4
    created = dict(zip(data.pins.column("pin_id").to_pylist(), data.pins.column("created_ts").to_pylist()))
    assert created[1] == _ts(2009, 1, 1) and created[4] == _ts(2010, 1, 15)  # first save
    assert created[3] == _ts(2009, 1, 1)  # never tagged: the dataset's first save


def test_hetrec_pin_text_uses_training_tags_only(tmp_path):
    data = read_hetrec(write_hetrec(tmp_path))
    ev = data.events
    labels = split_per_user(ev.column("user_id").to_numpy(), ev.column("pin_id").to_numpy(),
                            ev.column("ts").to_numpy())
    by_board = dict(zip(ev.column("board_id").to_pylist(), labels.tolist()))
    assert [by_board[b] for b in (1, 2, 3)] == [TRAIN, VALID, TEST] and by_board[4] == TRAIN
    texts = _texts(data)
    assert texts[1] == "Björk; rock"  # café was only ever a held-out (validation) assignment
    assert "café" not in " ".join(texts.values())
    assert texts[2] == "Muse; late; rock"  # user 5's "late" is test, but user 6's is training
    assert texts[3] == "Quiet" and texts[4] == "electro"  # never tagged; missing from artists.dat


def test_hetrec_a_tag_only_in_held_out_assignments_never_reaches_text(tmp_path):
    rows = [r for r in TAGGED_ROWS if not r.startswith("6\t2\t12")]  # now "late" is only user 5's test save
    texts = _texts(read_hetrec(write_hetrec(tmp_path, rows)))
    assert texts[2] == "Muse; rock" and "late" not in " ".join(texts.values())


def test_hetrec_is_a_function_of_the_rows_not_their_order(tmp_path):
    # same user, artist and date under two tags: a tie in time that only the canonical row order breaks
    rows = TAGGED_ROWS + ["7\t3\t10\t1\t5\t2009", "7\t3\t11\t1\t5\t2009", "7\t1\t10\t1\t6\t2009",
                          "7\t2\t10\t1\t7\t2009"]
    forward = read_hetrec(write_hetrec(tmp_path / "a", rows))
    backward = read_hetrec(write_hetrec(tmp_path / "b", rows[::-1]))
    for name in ("events", "pins", "boards"):
        assert getattr(forward, name).equals(getattr(backward, name)), name


def test_hetrec_decodes_each_file_with_its_encoding(tmp_path):
    folder = write_hetrec(tmp_path)
    assert "café" in read_hetrec(folder).boards.column("name").to_pylist()  # latin-1 tags.dat
    _write(folder, "artists.dat", "id\tname\turl\tpictureURL\n1\tBjörk\tu\tp\n", "latin-1")
    with pytest.raises(MalformedFileError, match=r"artists.dat line 2: expected utf-8 text, got byte b'\\xf6'"):
        read_hetrec(folder)


@pytest.mark.parametrize(
    ("file", "text", "match"),
    [
        ("user_taggedartists.dat", TAGGED_HEADER + "5\t1\t10\t1\t1\t2009\n5\t1\t10\t1\t1\n",
         r"user_taggedartists.dat line 3: expected 6 tab-separated integer fields userID artistID tagID "
         r"day month year, got '5\\t1\\t10\\t1\\t1'"),
        ("user_taggedartists.dat", TAGGED_HEADER + "5\t1\tten\t1\t1\t2009\n",
         r"user_taggedartists.dat line 2: expected 6 tab-separated integer fields .*, got '5\\t1\\tten"),
        ("user_taggedartists.dat", TAGGED_HEADER + "5\t1\t10\t31\t2\t2009\n",
         r"user_taggedartists.dat line 2: expected a valid calendar date in day month year, got"),
        ("user_taggedartists.dat", TAGGED_HEADER + "5\t1\t99\t1\t1\t2009\n",
         r"user_taggedartists.dat: 1 tagID\(s\) are not in .*tags.dat, e.g. \[99\]"),
        ("user_taggedartists.dat", "userID\tartistID\ttagID\ttimestamp\n5\t1\t10\t1238536800000\n",
         r"user_taggedartists.dat line 1: expected the header 'userID\\tartistID\\ttagID\\tday\\tmonth\\tyear'"),
        ("user_taggedartists.dat", TAGGED_HEADER, r"user_taggedartists.dat has a header but no tag assignments"),
        ("user_taggedartists.dat", "", r"user_taggedartists.dat is empty; expected a header line"),
        ("artists.dat", "id\tname\turl\tpictureURL\nx\tBjörk\tu\tp\n",
         r"artists.dat line 2: expected 4 tab-separated fields id name url pictureURL with an integer id"),
        ("artists.dat", "id\tname\turl\tpictureURL\n1\tA\tu\tp\n1\tB\tu\tp\n",
         r"artists.dat line 3: id 1 appears twice"),
        ("tags.dat", "tagID\ttagValue\n10\trock\textra\n",
         r"tags.dat line 2: expected 2 tab-separated fields tagID tagValue with an integer tagID"),
    ],
)
def test_hetrec_malformed_files_name_file_line_and_expectation(tmp_path, file, text, match):
    folder = write_hetrec(tmp_path)
    _write(folder, file, text)
    with pytest.raises(MalformedFileError, match=match):
        read_hetrec(folder)


@pytest.mark.parametrize("file", ["artists.dat", "tags.dat", "user_taggedartists.dat"])
def test_hetrec_missing_file_names_the_path(tmp_path, file):
    folder = write_hetrec(tmp_path)
    (folder / file).unlink()
    with pytest.raises(FileNotFoundError, match=rf"dataset file {re.escape(str(tmp_path / file))} does not exist"):
        read_hetrec(folder)


# ---- MovieLens ------------------------------------------------------------------------------------


def test_movielens_threshold_first_genre_boards_and_text(tmp_path):
    data = read_movielens(write_movielens(tmp_path))
    rows = {(r["user_id"], r["pin_id"]): r for r in data.events.to_pylist()}
    assert len(rows) == data.events.num_rows == 5
    assert rows[(1, 1)]["action"] == "save" and rows[(1, 2)]["action"] == "click"  # 4.0 saves, 3.5 does not
    assert rows[(1, 2)]["board_id"] is None and rows[(1, 2)]["duration_ms"] is None
    ev = data.events
    positive = positive_mask(ev.column("action").to_numpy(zero_copy_only=False),
                             ev.column("duration_ms").to_pandas().to_numpy(dtype=float, na_value=np.nan))
    assert positive.tolist() == [a == "save" for a in ev.column("action").to_pylist()]  # clicks never positive
    # one board per (user, first listed genre), ids in (userId, genre) order
    assert [tuple(b.values()) for b in data.boards.to_pylist()] == [
        (1, 1, "Animation"), (2, 1, "Drama"), (3, 2, "(no genres listed)"), (4, 2, "Animation")]
    assert rows[(1, 4)]["board_id"] == 2 and rows[(2, 1)]["board_id"] == 4
    assert rows[(1, 1)]["ts"] == dt.datetime.fromtimestamp(964982703, UTC)
    texts = _texts(data)
    assert texts[1] == "Toy Story, The (1995); Animation; Comedy"
    assert texts[5] == "Nothing (2002)"  # the "(no genres listed)" placeholder is not content
    created = dict(zip(data.pins.column("pin_id").to_pylist(), data.pins.column("created_ts").to_pylist()))
    assert created[1] == dt.datetime.fromtimestamp(964982703, UTC)
    assert created[3] == created[1]  # never rated: the dataset's first rating


@pytest.mark.parametrize(
    ("file", "text", "match"),
    [
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,1,four,964982703\n",
         r"ratings.csv line 3: expected 4 comma-separated fields userId,movieId,rating,timestamp \(integers "
         r"and a decimal rating\), got '1,1,four,964982703'"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0\n",
         r"ratings.csv line 2: expected 4 comma-separated fields"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,7.5,964982703\n",
         r"ratings.csv line 2: expected a rating between 0.5 and 5.0, got '1,1,7.5,964982703'"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,99,4.0,964982703\n",
         r"ratings.csv line 2: movieId 99 is not in .*movies.csv"),
        ("ratings.csv", "user,movie,rating,time\n1,1,4.0,964982703\n",
         r"ratings.csv line 1: expected the header 'userId,movieId,rating,timestamp'"),
        ("movies.csv", 'movieId,title,genres\n1,"Toy Story (1995)",Animation\n1,Again (1995),Drama\n',
         r"movies.csv line 3: movieId 1 appears twice"),
        ("movies.csv", "movieId,title,genres\n1,Toy Story, The (1995),Animation\n",
         r"movies.csv line 2: expected 3 comma-separated fields movieId,title,genres"),
        ("movies.csv", 'movieId,title,genres\n2,Heat (1995),Action\n1,"Toy Story (1995),Animation\n3,A,Drama\n',
         r"movies.csv line 3: expected CSV fields movieId,title,genres \(quotes closed on the same row\), "
         r"got a CSV error"),
    ],
)
def test_movielens_malformed_files_name_file_line_and_expectation(tmp_path, file, text, match):
    folder = write_movielens(tmp_path)
    _write(folder, file, text)
    with pytest.raises(MalformedFileError, match=match):
        read_movielens(folder)


def test_movielens_missing_file_names_the_path(tmp_path):
    folder = write_movielens(tmp_path)
    (folder / "ratings.csv").unlink()
    missing = re.escape(str(tmp_path / "ratings.csv"))
    with pytest.raises(FileNotFoundError, match=rf"dataset file {missing} does not exist"):
        read_movielens(folder)


# ---- S3-Rec ---------------------------------------------------------------------------------------


def test_s3rec_timestamps_keep_each_users_order(tmp_path):
    data = read_s3rec(write_s3rec(tmp_path), "Beauty")
    assert data.name == "s3rec-beauty" and data.events.num_rows == 6
    ev = data.events.to_pandas().sort_values(["user_id", "ts"], kind="stable")
    assert ev.groupby("user_id").pin_id.apply(list).to_dict() == {1: [10, 11, 12, 10], 2: [11, 10]}
    assert ev.groupby("user_id").ts.apply(lambda s: s.is_monotonic_increasing and s.is_unique).all()
    # the k-th action of every user is at 2020-01-01T00:00:00Z + k seconds: one ds partition
    start = _ts(2020, 1, 1)
    assert [t.to_pydatetime() for t in ev[ev.user_id == 1].ts] == [start + dt.timedelta(seconds=k) for k in range(4)]
    assert set(ev.ts.dt.date) == {dt.date(2020, 1, 1)}
    assert (ev.board_id == ev.user_id).all() and (ev.action == "save").all()
    assert [tuple(b.values()) for b in data.boards.to_pylist()] == [(1, 1, "saves"), (2, 2, "saves")]


def test_s3rec_pin_text_is_the_distinct_attribute_tokens(tmp_path):
    data = read_s3rec(write_s3rec(tmp_path), "Beauty")
    assert _texts(data) == {10: "attr_1 attr_2", 11: "", 12: "attr_3", 13: "attr_4"}
    created = dict(zip(data.pins.column("pin_id").to_pylist(), data.pins.column("created_ts").to_pylist()))
    assert created[12] == _ts(2020, 1, 1, 0, 0, 2) and created[13] == _ts(2020, 1, 1)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 10 11\n2 10 x\n",
         r"Beauty.txt line 2: expected space-separated integers 'user item item \.\.\.', got '2 10 x'"),
        ("1 10 11\n\n3\n", r"Beauty.txt line 3: expected a user id followed by at least one item id, got '3'"),
        ("1 10 11\n2 11\n1 12\n", r"Beauty.txt line 3: expected one line per user, but user 1 is also on line 1"),
        ("", r"Beauty.txt has no sequences"),
    ],
)
def test_s3rec_malformed_sequences(tmp_path, text, match):
    folder = write_s3rec(tmp_path)
    _write(folder, "Beauty.txt", text)
    with pytest.raises(MalformedFileError, match=match):
        read_s3rec(folder, "Beauty")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"10": [1, 2],\n "11": [3,]}', r"Beauty_item2attributes.json line 2: expected JSON, got an error"),
        ('{"10": [1, "red"]}', r"Beauty_item2attributes.json: expected an integer item id mapped to a list of "
                               r"integer attribute ids, got '10': \[1, 'red'\]"),
        ('[[10, 1]]', r"Beauty_item2attributes.json: expected a JSON object \{item id: \[attribute ids\]\}, got list"),
    ],
)
def test_s3rec_malformed_attributes(tmp_path, text, match):
    folder = write_s3rec(tmp_path)
    _write(folder, "Beauty_item2attributes.json", text)
    with pytest.raises(MalformedFileError, match=match):
        read_s3rec(folder, "Beauty")


def test_s3rec_missing_attributes_file_names_the_path(tmp_path):
    folder = write_s3rec(tmp_path)
    missing = re.escape(str(tmp_path / "LastFM.txt"))
    with pytest.raises(FileNotFoundError, match=rf"dataset file {missing} does not exist"):
        read_s3rec(folder, "LastFM")
    (folder / "Beauty_item2attributes.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"Beauty_item2attributes.json does not exist"):
        read_s3rec(folder, "Beauty")


# ---- the registry ---------------------------------------------------------------------------------


def test_registry_reads_by_name(tmp_path):
    assert sorted(DATASETS) == ["hetrec-lastfm", "movielens", "s3rec-beauty", "s3rec-lastfm"]
    assert read_dataset("s3rec-lastfm", write_s3rec(tmp_path, "LastFM")).name == "s3rec-lastfm"
    with pytest.raises(KeyError, match=r"unknown dataset 'nope'; known: \['hetrec-lastfm'"):
        read_dataset("nope", tmp_path)
