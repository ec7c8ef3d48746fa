"""The synthetic generator: determinism, contracts, and that the planted structure is really there."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import spearmanr

from embeddings.data import synthetic
from embeddings.data.engagement import POSITIVE_MIN_DURATION_MS, positive_mask
from embeddings.data.features import content_features
from embeddings.data.schemas import ACTION_VALUES, EVENTS, SYNTHETIC_USER_INTERESTS
from embeddings.lake import conform

START = dt.date(2026, 1, 1)


class Generated:
    """A tiny world with its days materialized, and per-event arrays as positions into the world."""

    def __init__(self, seed: int = 0, scale: str = "tiny") -> None:
        self.world = synthetic.generate_world(synthetic.make_params(scale), seed, START)
        self.days = list(synthetic.generate_days(self.world))
        self.events = pa.concat_tables([d.events for d in self.days])
        self.day_index = np.concatenate([np.full(d.events.num_rows, i) for i, d in enumerate(self.days)])
        ev = self.events
        self.user = ev["user_id"].to_numpy() - synthetic.USER_ID_BASE
        self.pin = ev["pin_id"].to_numpy() - synthetic.PIN_ID_BASE
        self.action = ev["action"].to_numpy(zero_copy_only=False).astype(object)
        self.duration = ev["duration_ms"].to_numpy(zero_copy_only=False)
        self.ts_us = ev["ts"].cast(pa.int64()).to_numpy()
        self.positive = positive_mask(self.action, self.duration)
        self.primary = self.world.pin_primary[self.pin]

    def interest_sets(self, day: int) -> dict[int, set[int]]:
        table = self.days[day].interests
        sets: dict[int, set[int]] = {}
        users = table["user_id"].to_numpy() - synthetic.USER_ID_BASE
        for u, t in zip(users.tolist(), table["topic"].to_numpy().tolist(), strict=True):
            sets.setdefault(u, set()).add(t)
        return sets


@pytest.fixture(scope="module")
def gen() -> Generated:
    return Generated()


def _all_tables(g: Generated) -> list[pa.Table]:
    snapshots = [table for _, table in synthetic.snapshot_tables(g.world)]
    return snapshots + [d.events for d in g.days] + [d.interests for d in g.days]


def test_same_seed_gives_identical_tables_and_another_seed_differs(gen):
    again = Generated(seed=0)
    assert all(a.equals(b) for a, b in zip(_all_tables(gen), _all_tables(again), strict=True))
    other = Generated(seed=1)
    assert not gen.events.equals(other.events)
    assert not synthetic.pins_table(gen.world).equals(synthetic.pins_table(other.world))


def test_every_table_conforms_to_its_contract(gen):
    snapshots = synthetic.snapshot_tables(gen.world)
    assert tuple(spec for spec, _ in snapshots) == synthetic.SNAPSHOT_SPECS
    for spec, table in snapshots:
        assert conform(table, spec.schema, what=spec.name).equals(table)
    for day in gen.days:
        assert day.events.schema == EVENTS.schema
        assert day.interests.schema == SYNTHETIC_USER_INTERESTS.schema


def test_events_lie_in_their_day_and_reference_existing_pins_and_own_boards(gen):
    w = gen.world
    for day in gen.days:
        lo = int(dt.datetime.combine(day.ds, dt.time(), dt.timezone.utc).timestamp() * 1e6)
        ts = day.events["ts"].cast(pa.int64()).to_numpy()
        assert ((ts >= lo) & (ts < lo + 86_400_000_000)).all()
    # A pin is engaged only after it was created (on a later day).
    assert (w.pin_created_us[gen.pin] < gen.ts_us).all()
    assert set(np.unique(gen.action)) <= set(ACTION_VALUES)
    board = gen.events["board_id"]
    is_save = gen.action == "save"
    assert np.array_equal(board.is_valid().to_numpy(zero_copy_only=False), is_save)
    board_pos = board.drop_null().to_numpy() - synthetic.BOARD_ID_BASE
    assert np.array_equal(w.board_user[board_pos], gen.user[is_save])  # saves go to the user's own boards
    is_view = np.isin(gen.action, ["click", "closeup"])
    has_duration = gen.events["duration_ms"].is_valid().to_numpy(zero_copy_only=False)
    assert np.array_equal(has_duration, is_view)
    assert set(gen.events["surface"].unique().to_pylist()) == set(synthetic.SURFACES)


def test_durations_straddle_the_positive_threshold(gen):
    is_view = np.isin(gen.action, ["click", "closeup"])
    long_share = (gen.duration[is_view] >= POSITIVE_MIN_DURATION_MS).mean()
    assert 0.3 < long_share < 0.7  # so positive_mask keeps some views and drops others


def test_some_pins_are_created_during_the_window_and_get_engaged(gen):
    new = gen.world.pin_created_day >= 0
    assert 0.05 < new.mean() < 0.3
    assert new[gen.pin].any()
    assert np.all(np.diff(gen.world.pin_created_us) >= 0)  # ids increase with creation time


def test_positives_follow_interests_and_hides_do_not(gen):
    held = [gen.interest_sets(d) for d in range(len(gen.days))]
    in_interest = np.array([
        t in held[d][u] for u, t, d in zip(gen.user.tolist(), gen.primary.tolist(), gen.day_index.tolist(),
                                           strict=True)
    ])
    assert in_interest[gen.positive].mean() > 0.85
    assert in_interest[gen.action == "hide"].mean() < 0.15


def test_boards_are_topically_focused(gen):
    w = gen.world
    is_save = gen.action == "save"
    board = gen.events["board_id"].drop_null().to_numpy() - synthetic.BOARD_ID_BASE
    topics = w.board_topics[board]
    in_board_topics = (topics[:, 0] == gen.primary[is_save]) | (topics[:, 1] == gen.primary[is_save])
    assert in_board_topics.mean() >= 0.85
    saves = np.bincount(board, minlength=len(w.board_ids))
    share = np.bincount(board, weights=in_board_topics, minlength=len(w.board_ids))[saves >= 3] / saves[saves >= 3]
    assert share.mean() >= 0.85
    assert ((w.board_topics[:, 1] >= 0).mean()) > 0.05  # some boards cover two topics


def test_every_users_interest_count_is_planted_and_weights_sum_to_one(gen):
    for day in (0, len(gen.days) - 1):
        table = gen.days[day].interests
        users = table["user_id"].to_numpy() - synthetic.USER_ID_BASE
        counts = np.bincount(users, minlength=len(gen.world.user_ids))
        assert np.array_equal(counts, gen.world.user_num_interests)
        sums = np.bincount(users, weights=table["weight"].to_numpy())
        np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    planted = gen.world.user_num_interests
    assert planted.min() == 1 and planted.max() == synthetic.MAX_INTERESTS


def test_user_interests_drift_but_overlap(gen):
    first, last = gen.interest_sets(0), gen.interest_sets(len(gen.days) - 1)
    changed = np.mean([first[u] != last[u] for u in first])
    overlap = np.mean([bool(first[u] & last[u]) for u in first])
    assert 0.3 < changed < 0.95
    assert overlap > 0.8


def test_planted_interest_count_correlates_with_distinct_topics_engaged(gen):
    pos = gen.positive
    num_users = len(gen.world.user_ids)
    pairs = np.unique(gen.user[pos] * gen.world.params.num_topics + gen.primary[pos])
    distinct = np.bincount(pairs // gen.world.params.num_topics, minlength=num_users)
    active = np.bincount(gen.user[pos], minlength=num_users) >= 20
    assert active.sum() >= 30
    rho = spearmanr(gen.world.user_num_interests[active], distinct[active])[0]
    assert rho > 0.4


def test_popularity_and_activity_are_heavy_tailed(gen):
    per_pin = np.sort(np.bincount(gen.pin, minlength=len(gen.world.pin_ids)))[::-1]
    assert per_pin[: len(per_pin) // 100].sum() / per_pin.sum() > 0.12  # top 1% of pins: > 12x their share
    per_user = np.sort(np.bincount(gen.user, minlength=len(gen.world.user_ids)))[::-1]
    assert per_user[: len(per_user) // 10].sum() / per_user.sum() > 0.25


def _text_precision(world: synthetic.SyntheticWorld, num_queries: int | None = None) -> float:
    vectors = content_features(world.pin_ids, world.pin_text.to_pylist())
    return synthetic.knn_label_precision(vectors, world.pin_primary, k=10, num_queries=num_queries)


def test_content_knn_precision_of_the_tiny_preset_is_in_band(gen):
    assert 0.3 <= _text_precision(gen.world) <= 0.6


@pytest.mark.slow
def test_content_knn_precision_of_the_demo_preset_is_in_band():
    world = synthetic.generate_world(synthetic.make_params("demo"), 0, START)
    assert 0.3 <= _text_precision(world, num_queries=3000) <= 0.6


def test_difficulty_knob_moves_content_knn_precision():
    def precision(fraction: float) -> float:
        params = synthetic.make_params("tiny", {"topic_word_fraction": fraction, "num_days": 1})
        return _text_precision(synthetic.generate_world(params, 0, START))

    assert precision(0.3) < precision(0.47) < precision(0.7)


def test_co_saves_carry_topic_signal_beyond_text(gen):
    # Pairs of pins saved to one board share their primary topic far more often than text neighbors do.
    board = gen.events["board_id"].drop_null().to_numpy()
    keys, counts = np.unique(board * gen.world.params.num_topics + gen.primary[gen.action == "save"],
                             return_counts=True)
    same = np.sum(counts * (counts - 1))
    per_board = np.bincount(np.unique(board, return_inverse=True)[1])
    pairs = np.sum(per_board * (per_board - 1))
    assert same / pairs > _text_precision(gen.world) + 0.25


def test_knn_label_precision_on_a_literal_example():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    assert synthetic.knn_label_precision(vectors, np.array([0, 0, 1, 1]), k=1) == 1.0
    assert synthetic.knn_label_precision(vectors, np.array([0, 1, 0, 1]), k=1) == 0.0
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\) for 4 vectors, got 4"):
        synthetic.knn_label_precision(vectors, np.array([0, 0, 1, 1]), k=4)


def test_make_params_rejects_unknown_scale_field_and_bad_values():
    with pytest.raises(ValueError, match="unknown synthetic scale 'huge'"):
        synthetic.make_params("huge")
    with pytest.raises(ValueError, match="unknown synthetic parameter 'num_pinz'"):
        synthetic.make_params("tiny", {"num_pinz": 5})
    with pytest.raises(ValueError, match="num_pins must be of type int, got 'many'"):
        synthetic.make_params("tiny", {"num_pins": "many"})
    with pytest.raises(ValueError, match="num_days must be a positive integer, got 0"):
        synthetic.make_params("tiny", {"num_days": 0})
    with pytest.raises(ValueError, match=r"topic_word_fraction must be in \[0, 1\], got 1.5"):
        synthetic.make_params("tiny", {"topic_word_fraction": 1.5})
    with pytest.raises(ValueError, match=r"num_topics \(5\) must exceed max_interests \(8\)"):
        synthetic.make_params("tiny", {"num_topics": 5})
    assert synthetic.make_params("tiny", {"num_pins": "500"}).num_pins == 500


def test_generate_day_events_rejects_a_day_outside_the_window(gen):
    topics, weights = next(synthetic.world_interests(gen.world))
    with pytest.raises(ValueError, match=r"day index must be in \[0, 14\), got 14"):
        synthetic.generate_day_events(gen.world, 14, topics, weights)
