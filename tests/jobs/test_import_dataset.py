"""jobs.import_dataset on tiny datasets written by the tests (never ../shared/data)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow as pa
import pytest

from embeddings.data.engagement import TEST, VALID, split_per_user
from embeddings.data.importers import MalformedFileError, read_hetrec
from embeddings.data.schemas import BOARDS, EVENTS, PINS
from embeddings.lake import Lake
from embeddings.settings import REPO_ROOT
from jobs.import_dataset import ImportDatasetConfig, main, run
from jobs.validate_inputs import ValidateInputsConfig
from jobs.validate_inputs import run as validate
from tests.data.test_importers import TAGGED_ROWS, write_hetrec, write_movielens, write_s3rec


def _all_events(lake: Lake) -> pa.Table:
    return pa.concat_tables([lake.read(EVENTS, d) for d in lake.list_partitions(EVENTS)])


def test_hetrec_import_writes_the_raw_contract_and_reruns_identically(tmp_path, lake_uri):
    source = write_hetrec(tmp_path / "hetrec")
    config = ImportDatasetConfig(name="hetrec-lastfm", path=str(source), lake_uri=lake_uri)
    first = run(config)
    lake = Lake(lake_uri)
    expected = read_hetrec(source)
    dates = {dt.date(int(r.split("\t")[5]), int(r.split("\t")[4]), int(r.split("\t")[3])) for r in TAGGED_ROWS}
    assert first.days == tuple(sorted(dates)) == tuple(lake.list_partitions(EVENTS))
    assert (first.num_users, first.num_pins, first.num_boards, first.num_events) == (2, 4, 5, 6)
    events, pins, boards = _all_events(lake), lake.read(PINS), lake.read(BOARDS)
    assert events.equals(expected.events) and pins.equals(expected.pins) and boards.equals(expected.boards)
    for ds in first.days:  # every partition passes the contract checks the DAG runs first
        validate(ValidateInputsConfig(lake_uri=lake_uri, ds=ds))
    manifest = lake.read_manifest(EVENTS, first.days[0])
    sha = hashlib.sha256((source / "user_taggedartists.dat").read_bytes()).hexdigest()
    assert manifest.extra["dataset"] == "hetrec-lastfm"
    assert manifest.extra["source_sha256"]["user_taggedartists.dat"] == sha
    assert "user_friends.dat" not in manifest.extra["source_sha256"]

    again = run(config)
    assert again.days == first.days and again.removed_days == ()
    assert _all_events(lake).equals(events) and lake.read(PINS).equals(pins) and lake.read(BOARDS).equals(boards)


def test_rerun_on_changed_data_removes_stale_partitions(tmp_path, lake_uri):
    source = write_hetrec(tmp_path / "hetrec")
    config = ImportDatasetConfig(name="hetrec-lastfm", path=str(source), lake_uri=lake_uri)
    first = run(config)
    write_hetrec(source, [r for r in TAGGED_ROWS if not r.startswith("6\t")])  # drops the 2010 days
    second = run(config)
    assert second.removed_days == (dt.date(2010, 1, 1), dt.date(2010, 1, 15))
    assert set(second.days) == set(first.days) - set(second.removed_days)
    assert Lake(lake_uri).list_partitions(EVENTS) == list(second.days)
    assert _all_events(Lake(lake_uri)).num_rows == second.num_events == 4


def test_movielens_import_partitions_by_day_and_reports_the_split(tmp_path, lake_uri):
    result = run(ImportDatasetConfig(name="movielens", path=str(write_movielens(tmp_path / "ml")),
                                     lake_uri=lake_uri))
    assert result.days == (dt.date(2000, 7, 30), dt.date(2000, 7, 31))  # 964982703 s and a day later
    assert (result.num_events, result.num_saves, result.num_boards) == (5, 4, 4)
    events = _all_events(Lake(lake_uri))
    labels = split_per_user(events.column("user_id").to_numpy(), events.column("pin_id").to_numpy(),
                            events.column("ts").to_numpy())
    assert result.valid_share == pytest.approx((labels == VALID).mean())
    assert result.test_share == pytest.approx((labels == TEST).mean()) and result.test_share > 0


def test_main_imports_s3rec_into_one_partition(tmp_path, lake_uri):
    main(["s3rec-beauty", "--path", str(write_s3rec(tmp_path / "s3rec")), "--lake-uri", lake_uri])
    lake = Lake(lake_uri)
    assert lake.list_partitions(EVENTS) == [dt.date(2020, 1, 1)]
    assert lake.read(EVENTS, "2020-01-01").num_rows == 6 and lake.read(PINS).num_rows == 4


def test_defaults_point_at_shared_data_and_a_per_dataset_lake(monkeypatch, tmp_path):
    monkeypatch.setenv("EMB_VAR_DIR", str(tmp_path / "var"))
    config = ImportDatasetConfig(name="movielens")
    assert config.source_path == REPO_ROOT.parent / "shared" / "data" / "ml-latest-small"
    assert config.target_uri == str((tmp_path / "var").resolve() / "datasets" / "movielens" / "lake")
    assert ImportDatasetConfig(name="s3rec-lastfm").source_path.name == "s3rec"


def test_bad_names_and_inputs_fail_before_writing(tmp_path, lake_uri):
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; known: \['hetrec-lastfm', 'movielens'"):
        ImportDatasetConfig(name="nope")
    with pytest.raises(FileNotFoundError, match=r"dataset file .*nowhere/artists.dat does not exist"):
        run(ImportDatasetConfig(name="hetrec-lastfm", path=str(tmp_path / "nowhere"), lake_uri=lake_uri))
    source = write_s3rec(tmp_path / "s3rec")
    (source / "Beauty.txt").write_text("1 10\n2 x\n")
    with pytest.raises(MalformedFileError, match=r"Beauty.txt line 2: expected space-separated integers"):
        run(ImportDatasetConfig(name="s3rec-beauty", path=str(source), lake_uri=lake_uri))
    assert not any(Path(lake_uri).iterdir())  # nothing written
