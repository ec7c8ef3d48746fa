from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from embeddings.pinnersage.clustering import medoid, ward_clusters
from embeddings.pinnersage.medoids import action_weights, end_of_day_us, user_medoids

DS = date(2026, 10, 1)
DAY = np.timedelta64(1, "D")
END = np.datetime64("2026-10-02T00:00:00", "us")  # end of DS


def _two_groups() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # pins 10-12 near e0, pins 20-21 near e1 (orthogonal directions: distance sqrt(2) apart)
    vectors = np.array(
        [[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [0.0, 1.0, 0.1], [0.1, 1.0, 0.0]], np.float32
    )
    pins = np.array([10, 11, 12, 20, 21])
    ts = END - np.array([1, 2, 3, 4, 5]) * DAY
    return pins, ts, vectors


def test_two_separated_groups_give_two_clusters_with_a_medoid_in_each():
    pins, ts, vectors = _two_groups()
    labels = ward_clusters(vectors, alpha=0.5)
    assert labels.tolist() == [0, 0, 0, 1, 1]
    out = user_medoids(pins, ts, vectors, DS, alpha=0.5)
    assert out.num_clusters == 2 and out.rank.tolist() == [1, 2]
    # pin 10 is the centre of (10, 11, 12): ~0.1 from each, while 11 and 12 are ~0.2 apart
    assert out.medoid_pin_id[0] == 10 and out.medoid_pin_id[1] in (20, 21)
    assert out.cluster_size.tolist() == [3, 2]
    assert not out.capped


def test_two_member_tie_goes_to_the_most_recent_pin():
    pins, ts, vectors = _two_groups()
    out = user_medoids(pins, ts, vectors, DS, alpha=0.5)
    assert out.medoid_pin_id[1] == 20  # 20 (4 days old) and 21 are equally central
    out = user_medoids(pins, END - np.array([1, 2, 3, 5, 4]) * DAY, vectors, DS, alpha=0.5)
    assert out.medoid_pin_id[1] == 21
    assert medoid(vectors[3:]) == 0  # the standalone medoid: ties go to the earliest row


def test_medoid_minimizes_the_sum_of_squared_distances():
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    assert medoid(vectors) in (1, 2)  # symmetric: 1 and 2 tie, the earlier row wins
    assert medoid(vectors) == 1
    assert medoid(vectors[[0, 1, 3]]) == 1


def test_single_action_is_one_cluster():
    labels = ward_clusters(np.array([[0.0, 3.0]]), alpha=0.0)
    assert labels.tolist() == [0]
    out = user_medoids(np.array([7]), np.array([END - 10 * DAY]), np.array([[0.0, 3.0]]), DS)
    assert out.num_clusters == 1 and out.medoid_pin_id.tolist() == [7] and out.cluster_size.tolist() == [1]
    assert out.importance[0] == pytest.approx(np.exp(-0.1))


def test_large_alpha_gives_one_cluster_and_tiny_alpha_one_per_distinct_pin():
    pins, ts, vectors = _two_groups()
    assert ward_clusters(vectors, alpha=10.0).tolist() == [0] * 5
    assert ward_clusters(vectors, alpha=1e-6).tolist() == [0, 1, 2, 3, 4]
    # a duplicated vector (pin 13 = pin 10) still merges at height 0
    with_dup = np.vstack([vectors, vectors[:1]])
    assert ward_clusters(with_dup, alpha=0.0).tolist() == [0, 1, 2, 3, 4, 0]
    out = user_medoids(np.append(pins, 13), np.append(ts, END - 6 * DAY), with_dup, DS, alpha=1e-6)
    assert out.num_clusters == 5


def test_importance_decays_with_age():
    # ages at the end of DS: 0.5 day, 1 day, 100 days
    ts = np.array([END - np.timedelta64(12, "h"), END - DAY, END - 100 * DAY])
    ts_us = ts.astype("datetime64[us]").astype(np.int64)
    assert action_weights(ts_us, DS, lam=0.01) == pytest.approx([np.exp(-0.005), np.exp(-0.01), np.exp(-1.0)])
    assert action_weights(ts_us, DS, lam=0.0) == pytest.approx([1.0, 1.0, 1.0])
    assert end_of_day_us(DS) == END.astype(np.int64)
    # one recent pin outranks two pins 100 days old (exp(-0.005) = 0.995 > 2 exp(-1) = 0.736)
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    out = user_medoids(np.array([1, 2, 3]), ts[[0, 2, 2]], vectors, DS, alpha=0.5)
    assert out.medoid_pin_id.tolist() == [1, 2] and out.cluster_size.tolist() == [1, 2]
    assert out.importance == pytest.approx([np.exp(-0.005), 2 * np.exp(-1.0)])
    # with lam = 0 the two old pins win
    out = user_medoids(np.array([1, 2, 3]), ts[[0, 2, 2]], vectors, DS, alpha=0.5, lam=0.0)
    assert out.medoid_pin_id.tolist() == [2, 1] and out.importance.tolist() == [2.0, 1.0]


def test_repeated_pin_is_clustered_once_and_counts_every_action():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    pins = np.array([5, 6, 5, 5])
    ts = END - np.array([1, 2, 3, 4]) * DAY
    out = user_medoids(pins, ts, vectors, DS, alpha=0.5, lam=0.0)
    assert out.medoid_pin_id.tolist() == [5, 6]
    assert out.cluster_size.tolist() == [1, 1] and out.num_cluster_actions.tolist() == [3, 1]
    assert out.importance.tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match=r"pins \[5\] have differing vectors"):
        user_medoids(pins, ts, np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.9, 0.1]]), DS)


def test_cap_keeps_the_most_recent_actions_and_reports_it():
    pins = np.arange(6)
    ts = END - np.array([6, 5, 4, 3, 2, 1]) * DAY  # pin 5 is the most recent
    vectors = np.eye(6)
    out = user_medoids(pins, ts, vectors, DS, alpha=1e-6, max_actions=3, lam=0.0)
    assert out.capped and out.num_actions == 6 and out.num_actions_dropped == 3
    assert sorted(out.medoid_pin_id.tolist()) == [3, 4, 5]
    # equal importances: the cluster of the more recent pin ranks first
    assert out.medoid_pin_id.tolist() == [5, 4, 3]
    out = user_medoids(pins, ts, vectors, DS, alpha=1e-6, max_actions=6, top_k=2)
    assert not out.capped and out.num_clusters == 6 and out.medoid_pin_id.tolist() == [5, 4]


def test_output_does_not_depend_on_input_row_order():
    rng = np.random.default_rng(0)
    # four pins on a square (all nearest-neighbour distances tie) plus random pins and repeats
    square = np.array([[1.0, 1, 0, 0], [1, -1, 0, 0], [-1, -1, 0, 0], [-1, 1, 0, 0]])
    vectors = np.vstack([square, rng.standard_normal((16, 4)), square[:2]])
    pins = np.concatenate([np.arange(20), [0, 1]])
    ts = END - np.concatenate([[3, 3, 3, 3], rng.integers(1, 40, 16), [5, 3]]) * DAY  # ts ties too
    first = user_medoids(pins, ts, vectors, DS, alpha=0.9, max_actions=15)
    assert first.num_clusters > 1
    for seed in range(10):
        perm = np.random.default_rng(seed).permutation(len(pins))
        again = user_medoids(pins[perm], ts[perm], vectors[perm], DS, alpha=0.9, max_actions=15)
        for name in ("medoid_pin_id", "importance", "cluster_size", "num_cluster_actions"):
            np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
        assert again.num_clusters == first.num_clusters


def test_exact_ties_are_resolved_the_same_whatever_the_row_order():
    # pin 1 is exactly as far from pin 2 as from pin 3 (squared distance 0.8 both): Ward's first merge is
    # a tie, and at alpha = 0.95 only that merge is made (the next one is at sqrt(1.12) = 1.06)
    vectors = np.array([[1.0, 0, 0, 0], [0.6, 0.8, 0, 0], [0.6, 0, 0.8, 0]])
    pins = np.array([1, 2, 3])
    ts = np.array([END - DAY] * 3)  # ts ties as well: the canonical order falls back to pin ids
    outs = set()
    for perm in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
        out = user_medoids(pins[perm], ts[perm], vectors[perm], DS, alpha=0.95)
        assert out.num_clusters == 2 and sorted(out.cluster_size.tolist()) == [1, 2]
        outs.add((tuple(out.medoid_pin_id.tolist()), tuple(out.cluster_size.tolist())))
    assert len(outs) == 1


def test_cap_at_a_timestamp_tie_keeps_the_smaller_pin_ids():
    pins = np.array([4, 2, 3, 1])
    ts = np.array([END - DAY] * 4)
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        out = user_medoids(pins[perm], ts[perm], np.eye(4)[perm], DS, alpha=1e-6, max_actions=2)
        assert out.medoid_pin_id.tolist() == [1, 2] and out.num_actions_dropped == 2


def test_nan_inf_and_zero_vectors_are_rejected_naming_the_pins():
    pins, ts, vectors = _two_groups()
    bad = vectors.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"embeddings of pins \[11\] contain NaN or Inf"):
        user_medoids(pins, ts, bad, DS)
    with pytest.raises(ValueError, match=r"embeddings of pins \[11\] contain NaN or Inf"):
        ward_clusters(bad, alpha=1.0, pin_ids=pins)
    bad[1, 0] = 1.0
    bad[3] = 0.0
    bad[4, 2] = np.inf
    with pytest.raises(ValueError, match=r"pins \[21\] contain NaN or Inf"):
        user_medoids(pins, ts, bad, DS)
    bad[4, 2] = 0.0
    with pytest.raises(ValueError, match=r"embeddings of pins \[20\] have zero norm"):
        user_medoids(pins, ts, bad, DS)
    # the oldest action is dropped by the cap, but its bad vector is still rejected
    with pytest.raises(ValueError, match=r"embeddings of pins \[20\] have zero norm"):
        user_medoids(pins, ts, bad, DS, max_actions=1)


def test_bad_inputs_are_rejected():
    pins, ts, vectors = _two_groups()
    with pytest.raises(ValueError, match="user has no actions"):
        user_medoids(pins[:0], ts[:0], vectors[:0], DS)
    with pytest.raises(ValueError, match=r"actions on pins \[10\] are after ds=2026-10-01"):
        user_medoids(pins, np.where(pins == 10, END, ts), vectors, DS)
    with pytest.raises(ValueError, match="5 pin ids, 4 timestamps and 5 vectors"):
        user_medoids(pins, ts[:4], vectors, DS)
    with pytest.raises(ValueError, match="alpha"):
        ward_clusters(vectors, alpha=-1.0)
    with pytest.raises(TypeError, match="ts must be datetime64"):
        user_medoids(pins, ts.astype(object), vectors, DS)
    # int64 microseconds are accepted and mean the same as datetime64
    a = user_medoids(pins, ts, vectors, DS, alpha=0.5)
    b = user_medoids(pins, ts.astype("datetime64[us]").astype(np.int64), vectors, DS, alpha=0.5)
    np.testing.assert_array_equal(a.importance, b.importance)
