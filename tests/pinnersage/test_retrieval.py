from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from embeddings.pinnersage.retrieval import InterleavedScorer, interleave_lists, mean_direction, pull_queries


def test_equal_weights_give_a_round_robin():
    merged = interleave_lists(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.array([1.0, 1.0]))
    assert merged.tolist() == [1, 5, 2, 6, 3, 7, 4, 8]


def test_shares_follow_the_weights_in_every_prefix():
    # keys (r + 0.5) / w: list 0 (w 3): 1/6, 1/2, 5/6, 7/6; list 1 (w 1): 1/2, 3/2, 5/2, 7/2
    merged = interleave_lists(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.array([0.75, 0.25]))
    assert merged.tolist() == [1, 2, 5, 3, 4, 6, 7, 8]
    assert merged[:4].tolist() == [1, 2, 5, 3]  # 3 of the first 4 from the heavier list


def test_repeats_keep_their_first_position_and_empty_slots_are_skipped():
    merged = interleave_lists(np.array([[1, 2, -1], [1, 3, 4]]), np.array([1.0, 1.0]), num=3)
    assert merged.tolist() == [1, 2, 3]


def test_a_zero_weight_list_only_fills_what_the_others_leave():
    merged = interleave_lists(np.array([[1, 2], [3, 4], [5, 6]]), np.array([0.0, 1.0, 0.0]))
    assert merged.tolist() == [3, 4, 1, 5, 2, 6]


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        interleave_lists(np.array([[1], [2]]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"\(k, D\)"):
        interleave_lists(np.array([1, 2]), np.array([1.0]))


def _two_interest_pins() -> np.ndarray:
    """Rows 0-3: a tight cluster around 0 deg (cos >= 0.999 to it); rows 4-7: a loose one around 90 deg
    (cos 0.94-0.99 to it); row 8: 45 deg."""
    degrees = [0, 1, -1, 2, 80, 100, 70, 110, 45]
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_interleaving_gives_each_medoid_its_share_where_max_gives_the_tight_one_everything():
    pins = _two_interest_pins()
    queries = pins[[0, 4]]  # the medoids of the two interests, equal importance
    ptr = np.array([0, 2])
    scorer = InterleavedScorer(pins, ptr, queries, np.array([0.5, 0.5]), depth=4)
    scores = scorer(np.array([0]))[0]
    top4 = np.argsort(-scores, kind="stable")[:4]
    assert sorted(top4.tolist()) == [0, 1, 4, 6]  # two per interest, nearest first within each
    by_max = np.argsort(-(queries @ pins.T).max(axis=0), kind="stable")[:4]
    assert sorted(by_max.tolist()) == [0, 1, 2, 4]  # max over cosines: three of the tight interest


def test_importance_sets_the_shares_and_seen_pins_take_no_slot():
    pins = _two_interest_pins()
    queries = pins[[0, 4]]
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0, 0, 0, 0]], np.float32))  # pin 0 is in the history
    scorer = InterleavedScorer(pins, np.array([0, 2]), queries, np.array([0.75, 0.25]), depth=4, seen=seen)
    scores = scorer(np.array([0]))[0]
    top4 = np.argsort(-scores, kind="stable")[:4]
    # list 0 (w .75) without pin 0: 1, 2, 3; list 1 (w .25): 4, ...; shares 3:1
    assert top4.tolist() == [1, 2, 4, 3]
    assert np.isfinite(scores).all() and scores[8] < 2  # pins outside the lists rank after them, by cosine


def test_a_user_without_vectors_scores_minus_inf_and_one_vector_is_its_neighbour_ranking():
    pins = _two_interest_pins()
    scorer = InterleavedScorer(pins, np.array([0, 0, 1]), pins[[4]], np.array([1.0]), depth=3)
    scores = scorer(np.array([0, 1]))
    assert np.isneginf(scores[0]).all()
    assert np.argsort(-scores[1], kind="stable").tolist() == np.argsort(-(pins[4] @ pins.T), kind="stable").tolist()


def test_bad_arguments_are_refused():
    pins = _two_interest_pins()
    with pytest.raises(ValueError, match="weighting"):
        InterleavedScorer(pins, np.array([0, 1]), pins[:1], np.ones(1), depth=2, weighting="magic")
    with pytest.raises(ValueError, match="ptr"):
        InterleavedScorer(pins, np.array([0, 2]), pins[:1], np.ones(1), depth=2)
    with pytest.raises(ValueError, match="seen"):
        InterleavedScorer(pins, np.array([0, 1]), pins[:1], np.ones(1), depth=2, seen=sp.csr_matrix((2, 9)))


def test_mean_direction_is_the_unit_mean_of_the_unit_rows():
    np.testing.assert_allclose(mean_direction(np.array([[2.0, 0.0], [0.0, 0.5]])), [2 ** -0.5, 2 ** -0.5])
    with pytest.raises(ValueError, match="average to zero"):
        mean_direction(np.array([[1.0, 0.0], [-3.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        mean_direction(np.array([[1.0, np.nan]]))


def test_pull_moves_each_unit_query_toward_the_direction():
    queries = np.array([[3.0, 0.0], [0.0, -1.0]])
    up = np.array([0.0, 1.0])
    np.testing.assert_allclose(pull_queries(queries, up, 0.0), [[1, 0], [0, -1]])
    pulled = pull_queries(queries[:1], up, 1.0)
    np.testing.assert_allclose(pulled[0], [2 ** -0.5, 2 ** -0.5], rtol=1e-6)
    assert pulled.dtype == np.float32
    with pytest.raises(ValueError, match="vanishes"):  # (0, -1) + 1 * (0, 1) = 0
        pull_queries(queries[1:], up, 1.0)
    with pytest.raises(ValueError, match="pull must be finite and >= 0"):
        pull_queries(queries, up, -0.5)
    with pytest.raises(ValueError, match="direction must have shape"):
        pull_queries(queries, np.ones(3), 0.5)
