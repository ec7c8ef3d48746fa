"""jobs.build_sequences on a tiny literal lake whose timelines are obvious (one shared local Spark session)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest

from embeddings.data.schemas import EVENTS, USER_SEQUENCES
from embeddings.lake import Lake, LakeError
from embeddings.pinnerformer.data import SequenceOptions
from embeddings.pinnerformer.lake import read_user_sequences, sequences_from_table, user_split

pytestmark = [pytest.mark.spark, pytest.mark.slow]

DS = dt.date(2026, 1, 10)
DAYS = [DS - dt.timedelta(days=i) for i in range(4, -1, -1)]  # 01-06 .. 01-10: the 5-day window
D6, D7, D8, D9, D10 = DAYS
CROWD = range(1000, 1200)  # users with one input and one future save: enough ids to see every split


def at(day: dt.date, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), dt.timezone.utc)


CUTOFF = at(D9)  # the end of DS minus label_days=2


def event(user: int, pin: int, ts: dt.datetime, action: str = "save", duration_ms: int | None = None,
          surface: str | None = "homefeed") -> dict:
    return {"user_id": user, "pin_id": pin, "board_id": 1 if action == "save" else None, "action": action,
            "ts": ts, "duration_ms": duration_ms, "surface": surface}


def base_events() -> dict[dt.date, list[dict]]:
    """Rows per events partition.

    User 1: 5 inputs, the latest three sharing one ts (given out of order), then 3 future actions, the first
    exactly at the cutoff. User 2: one action in the window (short) and one dated before the window.
    User 3: one input, one future action and one in the DS partition dated after the end of DS (rejected).
    """
    return {
        D6: [event(1, 1, at(D6, 10)), event(2, 6, at(D6 - dt.timedelta(days=5), 9))],
        D7: [event(1, 2, at(D7, 10), "click", 15_000), event(2, 5, at(D7, 8))],
        D8: [event(1, 5, at(D8, 12), "save"), event(1, 3, at(D8, 12), "click", 2_000, None),
             event(1, 7, at(D8, 12), "click", 30_000, "search"), event(3, 1, at(D8, 1))]
            + [event(u, 1, at(D8, 2)) for u in CROWD],
        D9: [event(1, 8, at(D9)), event(1, 9, at(D9, 15), "hide")],
        D10: [event(1, 4, at(D10, 23, 59)), event(3, 2, at(D10, 5), "click", 11_000),
              event(3, 4, at(DS + dt.timedelta(days=1), 1))] + [event(u, 2, at(D10, 3)) for u in CROWD],
    }


def write_events(lake: Lake, by_day: dict[dt.date, list[dict]]) -> None:
    for day, rows in by_day.items():
        lake.write(EVENTS, pa.Table.from_pylist(rows, schema=EVENTS.schema), day)


@pytest.fixture(scope="module")
def spark():
    from jobs.spark import build_spark_session

    session = build_spark_session("test_build_sequences", master="local[2]", shuffle_partitions=3,
                                  conf={"spark.ui.enabled": "false"})
    yield session
    session.stop()


def config_for(lake: Lake, **overrides):
    from jobs.build_sequences import BuildSequencesConfig

    values = {"lake_uri": lake.lake_uri, "ds": DS, "lookback_days": 5, "label_days": 2, "max_length": 3,
              "max_future": 2, "shuffle_partitions": 3}
    return BuildSequencesConfig(**{**values, **overrides})


def rows_by_user(lake: Lake) -> dict[int, dict]:
    return {r["user_id"]: r for r in read_user_sequences(lake, DS).to_pylist()}


@pytest.fixture(scope="module")
def computed(spark, tmp_path_factory):
    from jobs.build_sequences import run

    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    write_events(lake, base_events())
    return lake, run(config_for(lake), spark)


def test_timeline_is_time_ordered_with_ties_and_capped_on_both_sides_of_the_cutoff(computed):
    lake, _ = computed
    user = rows_by_user(lake)[1]
    # Inputs: the latest 3 (the three at 01-08 12:00, ordered by action then pin); the two older ones left out.
    # Future: the latest 2 of 3 (the save exactly at the cutoff is future, and the oldest of them).
    assert user["pin_id"] == [3, 7, 5, 9, 4]
    assert user["action"] == ["click", "click", "save", "hide", "save"]
    assert user["surface"] == [None, "search", "homefeed", "homefeed", "homefeed"]
    assert user["duration_ms"] == [2_000, 30_000, None, None, None]
    assert user["ts"] == [at(D8, 12)] * 3 + [at(D9, 15), at(D10, 23, 59)]
    assert (user["num_actions"], user["num_input_dropped"], user["num_future_dropped"]) == (8, 2, 1)
    assert user["cutoff_ts"] == CUTOFF


def test_short_users_and_bad_timestamps_are_dropped_and_counted(computed):
    lake, result = computed
    rows = rows_by_user(lake)
    assert 2 not in rows  # one action in the window; its other action is older than the window
    assert rows[3]["pin_id"] == [1, 2] and rows[3]["num_actions"] == 2  # the action after DS is rejected
    assert len(rows) == 2 + len(CROWD)
    stats = result.manifest.extra
    assert stats == result.stats
    expected = {"users": 202, "users_in_window": 203, "users_short": 1, "users_input_truncated": 1,
                "events_input_dropped": 2, "users_future_capped": 1, "events_future_dropped": 1,
                "events_rejected_future_ts": 1, "events_rejected_before_window": 1, "events_read": 413,
                "events_kept": 407, "events_future_kept": 2 + 1 + 200, "events_partitions": 5, "missing_days": 0,
                "cutoff_ts": "2026-01-09T00:00:00+00:00", "max_length": 3, "max_future": 2, "label_days": 2,
                "lookback_days": 5, "min_actions": 2, "valid_share": 0.1, "test_share": 0.1}
    assert {k: stats[k] for k in expected} == expected
    assert result.manifest.row_count == 202
    assert [i["ds"] for i in result.manifest.inputs] == [d.isoformat() for d in DAYS]


def test_split_is_user_split_of_the_id(computed):
    lake, result = computed
    table = read_user_sequences(lake, DS)
    ids = table.column("user_id").to_numpy()
    expected = user_split(ids, 0.1, 0.1)
    assert table.column("split").to_pylist() == expected.tolist()
    counts = {name: int((expected == name).sum()) for name in ("train", "valid", "test")}
    assert result.stats["users_by_split"] == counts and min(counts.values()) > 0


def test_rerun_gives_identical_rows(spark, computed):
    from jobs.build_sequences import run

    lake, first = computed
    before = read_user_sequences(lake, DS)
    second = run(config_for(lake), spark)
    after = read_user_sequences(lake, DS)
    assert after.equals(before)
    assert after.column("user_id").to_pylist() == sorted(set(after.column("user_id").to_pylist()))  # no duplicates
    assert second.stats == first.stats
    assert lake.list_partitions(USER_SEQUENCES) == [DS]


def test_reader_on_the_written_partition(computed):
    lake, _ = computed
    table = read_user_sequences(lake, DS)
    pin_ids = np.array([1, 2, 3, 4, 5, 7, 8], dtype=np.int64)  # pin 9 is unknown
    user1 = table.filter(np.asarray(table.column("user_id").to_numpy() == 1))
    seqs, ids = sequences_from_table(user1, pin_ids, mode="serve", options=SequenceOptions(max_length=4))
    assert ids.tolist() == [1]
    assert seqs.pins[seqs.input_start[0]:seqs.input_end[0]].tolist() == [5, 4, -1, 3]  # pins 7, 5, 9, 4
    seqs, ids = sequences_from_table(user1, pin_ids, mode="train", options=SequenceOptions(max_length=4))
    assert seqs.input_end[0] == 3 and seqs.pins.tolist() == [2, 5, 4, 3]  # the hide is no label
    seqs, ids = sequences_from_table(table, pin_ids, mode="train", splits=("train",),
                                     options=SequenceOptions(min_actions=1))
    train = table.filter(pa.compute.equal(table.column("split"), "train")).column("user_id").to_pylist()
    assert ids.tolist() == sorted(train) and len(train) > 100


def test_missing_ds_partition_or_empty_input_is_an_error_and_leaves_the_published_partition(spark, tmp_path):
    from jobs.build_sequences import SequenceInputError, run

    lake = Lake(str(tmp_path / "lake"))
    write_events(lake, {D9: [event(1, 1, at(D9, 1)), event(1, 2, at(D9, 2))]})
    published = pa.Table.from_pylist([{
        "user_id": 7, "split": "train", "cutoff_ts": CUTOFF, "pin_id": [1, 2], "action": ["save", "save"],
        "surface": [None, None], "duration_ms": [None, None], "ts": [at(D7), at(D8)], "num_actions": 2,
        "num_input_dropped": 0, "num_future_dropped": 0}], schema=USER_SEQUENCES.schema)
    manifest = lake.write(USER_SEQUENCES, published, DS)

    assert issubclass(SequenceInputError, LakeError)
    with pytest.raises(SequenceInputError, match=r"table events \(ds=2026-01-10\) .* is missing.*user_sequences"):
        run(config_for(lake), spark)
    # The partition of DS exists but holds only an action after the end of DS, the one before it no row.
    write_events(lake, {D9: [], D10: [event(1, 3, at(DS + dt.timedelta(days=1), 3))]})
    with pytest.raises(SequenceInputError, match=r"no action in the window .* before the end of ds=2026-01-10"):
        run(config_for(lake), spark)
    # Every user is short.
    write_events(lake, {D10: [event(2, 3, at(D10, 3))], D9: [event(1, 1, at(D9, 1))]})
    with pytest.raises(SequenceInputError, match="no user has min_actions=2 actions"):
        run(config_for(lake), spark)
    assert read_user_sequences(lake, DS).equals(published)
    assert lake.read_manifest(USER_SEQUENCES, DS) == manifest


def test_config_refuses_bad_settings(tmp_path):
    from jobs.build_sequences import BuildSequencesConfig

    with pytest.raises(ValueError, match="label_days must lie in"):
        BuildSequencesConfig(lake_uri=str(tmp_path), ds=DS, lookback_days=5, label_days=5)
    with pytest.raises(ValueError, match="valid_share and test_share"):
        BuildSequencesConfig(lake_uri=str(tmp_path), ds=DS, valid_share=0.6, test_share=0.5)
    with pytest.raises(ValueError, match="max_length >= 1"):
        BuildSequencesConfig(lake_uri=str(tmp_path), ds=DS, max_length=0)
