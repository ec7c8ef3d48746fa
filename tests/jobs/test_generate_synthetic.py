"""jobs.generate_synthetic: writes every table through the lake, idempotently, and rejects bad config."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from embeddings.data import synthetic
from embeddings.data.schemas import BOARDS, EVENTS, PINS, SYNTHETIC_USER_INTERESTS, TABLES
from jobs.generate_synthetic import GenerateSyntheticConfig, main, run

DS = dt.date(2026, 1, 10)
SNAPSHOTS = synthetic.SNAPSHOT_SPECS


def _config(lake_uri: str, **changes) -> GenerateSyntheticConfig:
    fields = {"ds": DS, "lake_uri": lake_uri, "num_days": 4, "seed": 3, "scale": "tiny"} | changes
    return GenerateSyntheticConfig(**fields)


def test_run_writes_the_window_ending_at_ds_and_every_table_reads_back(lake_uri, lake):
    result = run(_config(lake_uri))
    days = [DS - dt.timedelta(days=i) for i in (3, 2, 1, 0)]
    assert result.days == days
    assert lake.list_partitions(EVENTS) == days
    assert lake.list_partitions(SYNTHETIC_USER_INTERESTS) == days
    for spec in SNAPSHOTS:
        assert spec.name in TABLES  # registered in the catalogue
        assert lake.read(spec).num_rows > 0  # Lake.read checks the contract
    events = [lake.read(EVENTS, d) for d in days]
    assert sum(t.num_rows for t in events) == result.num_events > 0
    pin_ids = lake.read(PINS).column("pin_id").to_numpy()
    board_ids = lake.read(BOARDS).column("board_id").to_numpy()
    for table in events:
        assert np.isin(table.column("pin_id").to_numpy(), pin_ids).all()
        assert np.isin(table.column("board_id").drop_null().to_numpy(), board_ids).all()
    manifest = lake.read_manifest(EVENTS, DS)
    assert manifest.extra["seed"] == 3 and manifest.extra["scale"] == "tiny"
    assert {i["table"] for i in manifest.inputs} >= {PINS.name, BOARDS.name}


def test_rerun_rewrites_identical_partitions(lake_uri, lake):
    first = run(_config(lake_uri))
    before = {spec.name: lake.read(spec) for spec in SNAPSHOTS}
    before_events = {d: lake.read(EVENTS, d) for d in first.days}
    before_interests = {d: lake.read(SYNTHETIC_USER_INTERESTS, d) for d in first.days}
    second = run(_config(lake_uri))
    assert {name: [m.row_count for m in ms] for name, ms in first.manifests.items()} == {
        name: [m.row_count for m in ms] for name, ms in second.manifests.items()
    }
    for spec in SNAPSHOTS:
        assert lake.read(spec).equals(before[spec.name])
    for d in first.days:
        assert lake.read(EVENTS, d).equals(before_events[d])
        assert lake.read(SYNTHETIC_USER_INTERESTS, d).equals(before_interests[d])
    assert lake.list_partitions(EVENTS) == first.days  # nothing duplicated or left in staging


def test_another_seed_writes_other_data(lake_uri, lake, tmp_path):
    run(_config(lake_uri))
    other_uri = str(tmp_path / "other")
    run(_config(other_uri, seed=4))
    from embeddings.lake import Lake

    assert not lake.read(EVENTS, DS).equals(Lake(other_uri).read(EVENTS, DS))


def test_bad_config_is_rejected_with_a_clear_error(lake_uri):
    with pytest.raises(ValueError, match="num_days must be positive, got 0"):
        _config(lake_uri, num_days=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        _config(lake_uri, seed=-1)
    with pytest.raises(ValueError, match="unknown synthetic scale 'huge'"):
        _config(lake_uri, scale="huge")
    with pytest.raises(ValueError, match="unknown synthetic parameter 'pins'"):
        _config(lake_uri, overrides={"pins": 10})
    with pytest.raises(ValueError, match="set num_days with the num_days field"):
        _config(lake_uri, overrides={"num_days": 3})
    with pytest.raises(ValueError, match="ds must be a date in YYYY-MM-DD form, got '2026-13-01'"):
        _config(lake_uri, ds="2026-13-01")


def test_config_defaults_to_the_settings_lake(monkeypatch, tmp_path):
    monkeypatch.setenv("EMB_LAKE_URI", str(tmp_path / "from-env"))
    config = GenerateSyntheticConfig(ds="2026-01-10")
    assert config.lake_uri == str(tmp_path / "from-env")
    assert config.scale == "demo" and config.params == synthetic.PRESETS["demo"]
    assert config.start == DS - dt.timedelta(days=synthetic.PRESETS["demo"].num_days - 1)


def test_main_parses_arguments_and_overrides(lake_uri, lake):
    main(["--ds", "2026-01-10", "--lake-uri", lake_uri, "--scale", "tiny", "--num-days", "2", "--seed", "1",
          "--set", "num_pins=300", "--set", "num_users=40"])
    assert lake.list_partitions(EVENTS) == [DS - dt.timedelta(days=1), DS]
    assert lake.read(PINS).num_rows == 300
    with pytest.raises(SystemExit):
        main(["--ds", "2026-01-10", "--lake-uri", lake_uri, "--set", "num_pins"])
