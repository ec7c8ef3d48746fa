"""Each importer on tiny files in its exact format, written here (never ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embeddings.data.importers import read_hetrec, read_movielens, read_s3rec
from embeddings.data.schemas import BOARDS, EVENTS, PINS
from embeddings.lake import Lake
from jobs.import_dataset import ImportDatasetConfig, run


def _write(path: Path, name: str, text: str, encoding: str = "utf-8") -> None:
    (path / name).write_text(text, encoding=encoding)


@pytest.fixture
def hetrec(tmp_path: Path) -> Path:
    _write(tmp_path, "artists.dat", "id\tname\turl\tpictureURL\n1\tBjörk\tu\tp\n2\tMuse\tu\tp\n3\tQuiet\tu\tp\n")
    _write(tmp_path, "tags.dat", "tagID\ttagValue\n10\trock\n11\tcafé\n12\tlatetag\n", encoding="latin-1")
    # user 5: four assignments; by the per-user split the last by time (tag 12, April) is test and the one
    # before (tag 11, March) validation; only January and February are training
    rows = [
        "5\t1\t10\t1\t1\t2009", "5\t2\t10\t1\t2\t2009", "5\t1\t11\t1\t3\t2009", "5\t2\t12\t1\t4\t2009",
        "6\t2\t10\t1\t1\t2010", "6\t4\t10\t1\t1\t2010",  # artist 4 is not in artists.dat
    ]
    _write(tmp_path, "user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_hetrec_mapping(hetrec):
    data = read_hetrec(hetrec)
    assert data.events.num_rows == 6
    assert set(data.events.column("action").to_pylist()) == {"save"}
    # one board per (user, tag), ids dense in (user, tag) order, named after the tag
    boards = data.boards.to_pylist()
    assert [(b["board_id"], b["user_id"], b["name"]) for b in boards] == [
        (1, 5, "rock"), (2, 5, "café"), (3, 5, "latetag"), (4, 6, "rock")]
    texts = dict(zip(data.pins.column("pin_id").to_pylist(), data.pins.column("text").to_pylist()))
    assert texts[1] == "Björk rock"  # UTF-8 name, training tags only
    assert texts[3] == "Quiet"  # never tagged: name only
    assert texts[4].startswith("artist_4")
    # tags of held-out assignments (validation or test) never reach pin text
    assert "latetag" not in " ".join(texts.values()) and "café" not in " ".join(texts.values())


def test_hetrec_malformed_and_missing(hetrec, tmp_path):
    _write(hetrec, "user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear\n5\t1\t10\t1\t1\n")
    with pytest.raises(ValueError, match=r"user_taggedartists.dat line 2: expected 6 tab-separated integer fields"):
        read_hetrec(hetrec)
    with pytest.raises(FileNotFoundError, match=r"dataset file .*nowhere.*artists.dat does not exist"):
        read_hetrec(tmp_path / "nowhere")


@pytest.fixture
def movielens(tmp_path: Path) -> Path:
    _write(tmp_path, "movies.csv", 'movieId,title,genres\n1,"Toy Story, The (1995)",Animation|Comedy\n2,Heat (1995),Action\n3,Unrated (2000),Drama\n')
    _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964982800\n2,1,5.0,964982900\n")
    return tmp_path


def test_movielens_mapping(movielens):
    data = read_movielens(movielens)
    rows = data.events.to_pylist()
    assert [r["action"] for r in rows] == ["save", "click", "save"]
    assert rows[1]["board_id"] is None and rows[1]["duration_ms"] is None
    assert {b["name"] for b in data.boards.to_pylist()} == {"Animation"}  # first genre of the saved movie
    assert rows[0]["ts"].timestamp() == 964982703
    texts = dict(zip(data.pins.column("pin_id").to_pylist(), data.pins.column("text").to_pylist()))
    assert texts[1] == "Toy Story, The (1995) Animation Comedy" and 3 in texts


def test_movielens_malformed(movielens):
    _write(movielens, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,four,964982703\n")
    with pytest.raises(ValueError, match=r"ratings.csv line 2: expected userId,movieId,rating,timestamp"):
        read_movielens(movielens)


@pytest.fixture
def s3rec(tmp_path: Path) -> Path:
    _write(tmp_path, "Beauty.txt", "1 10 11 12\n2 11 10\n")
    _write(tmp_path, "Beauty_item2attributes.json", json.dumps({"10": [1, 2], "11": [], "12": [3]}))
    return tmp_path


def test_s3rec_order_is_kept_on_increasing_timestamps(s3rec):
    data = read_s3rec(s3rec, "Beauty")
    ev = data.events.to_pandas()
    assert ev.groupby("user_id")["ts"].apply(lambda s: s.is_monotonic_increasing and s.is_unique).all()
    assert ev[ev.user_id == 1].pin_id.tolist() == [10, 11, 12]
    texts = dict(zip(data.pins.column("pin_id").to_pylist(), data.pins.column("text").to_pylist()))
    assert texts == {10: "attr_1 attr_2", 11: "item_11", 12: "attr_3"}


def test_s3rec_malformed(s3rec):
    _write(s3rec, "Beauty.txt", "1 10 x\n")
    with pytest.raises(ValueError, match=r"Beauty.txt line 1: expected space-separated integers"):
        read_s3rec(s3rec, "Beauty")


def test_job_writes_the_raw_contract_idempotently(hetrec, lake_uri):
    config = ImportDatasetConfig(name="hetrec-lastfm", path=str(hetrec), lake_uri=lake_uri)
    first = run(config)
    again = run(config)
    lake = Lake(lake_uri)
    assert first.days == again.days and len(first.days) == 5
    total = sum(lake.read(EVENTS, d).num_rows for d in lake.list_partitions(EVENTS))
    assert total == first.num_events == 6
    assert lake.read(PINS).num_rows == 4 and lake.read(BOARDS).num_rows == 4
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        ImportDatasetConfig(name="nope")
