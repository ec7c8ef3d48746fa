"""Baselines on a 4-user literal matrix whose similarities are obvious, and tuning on validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from embeddings.eval.baselines import fit_item_knn, item_popularity, tune_on_validation
from embeddings.eval.metrics import evaluate_ranking
from embeddings.eval.scorers import ItemScoresScorer, SparseScorer

# users x items: item 0 = {u0, u1}, item 1 = {u0, u1, u2}, item 2 = {u1, u2}, item 3 = {u3}.
# u0 engaged item 0 three times: the matrix is binarized, so it counts once.
TRAIN = sp.csr_matrix(np.array([
    [3, 1, 0, 0],
    [1, 1, 1, 0],
    [0, 1, 1, 0],
    [0, 0, 0, 1],
], dtype=float))
C01 = 2 / math.sqrt(2 * 3)  # |{u0,u1}| / sqrt(2 * 3)
C02 = 1 / math.sqrt(2 * 2)


def test_item_knn_cosine_by_hand():
    sim = fit_item_knn(TRAIN, num_neighbors=3).toarray()
    expected = np.array([
        [0, C01, C02, 0],
        [C01, 0, C01, 0],
        [C02, C01, 0, 0],
        [0, 0, 0, 0],  # item 3 shares no user with anything; never its own neighbor
    ])
    np.testing.assert_allclose(sim, expected)


def test_item_knn_keeps_the_top_neighbors_with_ties_to_the_lower_index():
    sim = fit_item_knn(TRAIN, num_neighbors=1)
    assert sim.getrow(0).indices.tolist() == [1]
    assert sim.getrow(1).indices.tolist() == [0]  # items 0 and 2 tie at C01
    assert sim.getrow(2).indices.tolist() == [1]
    assert sim.getrow(3).nnz == 0


def test_item_knn_is_the_same_in_any_chunking():
    rng = np.random.default_rng(3)
    x = sp.csr_matrix((rng.random((30, 17)) < 0.2).astype(float))
    whole = fit_item_knn(x, 4, chunk_size=100).toarray()
    for size in (1, 5):
        np.testing.assert_array_equal(fit_item_knn(x, 4, chunk_size=size).toarray(), whole)


def test_item_knn_rejects_a_bad_neighbor_count():
    with pytest.raises(ValueError, match="num_neighbors must be positive, got 0"):
        fit_item_knn(TRAIN, 0)


def test_popularity_counts_distinct_users_or_interactions():
    assert item_popularity(TRAIN).tolist() == [2, 3, 2, 1]
    assert item_popularity(TRAIN, binarize=False).tolist() == [4, 3, 2, 1]
    with pytest.raises(TypeError, match="interactions must be a scipy sparse"):
        item_popularity(np.ones((2, 2)))


def test_popularity_ranks_every_user_by_the_same_list():
    # u3 has seen item 3 (masked); target item 0 ties with item 2 at popularity 2 -> rank 2 (pessimistic).
    targets = sp.csr_matrix(np.array([[0, 0, 0, 0]] * 3 + [[1, 0, 0, 0]], dtype=float))
    result = evaluate_ranking(ItemScoresScorer(item_popularity(TRAIN)), targets, seen=TRAIN, protocol="p", ks=(2, 3))
    assert result.query_ids.tolist() == [3]
    assert result.metric("hr@2").tolist() == [0.0] and result.metric("hr@3").tolist() == [1.0]


def _knn_validation(num_neighbors):
    # A user who engaged item 0 comes back for item 2: only with 2 neighbors does item 0 reach item 2.
    history = sp.csr_matrix(np.array([[1.0, 0, 0, 0]]))
    targets = sp.csr_matrix(np.array([[0, 0, 1.0, 0]]))
    scorer = SparseScorer(history, fit_item_knn(TRAIN, num_neighbors))
    return evaluate_ranking(scorer, targets, seen=history, protocol="valid", ks=(1,))


def test_tuning_picks_the_best_validation_metric_and_keeps_the_first_of_ties():
    tuning = tune_on_validation([1, 2, 3], _knn_validation, "mrr")
    assert tuning.best == 2
    assert [v for v, _ in tuning.scores] == [1, 2, 3]
    assert tuning.scores[0][1] == pytest.approx(1 / 3)  # item 1 greater, tie with item 3 -> rank 2
    assert tuning.scores[1][1] == pytest.approx(1 / 2)
    assert len(tuning.results) == 3 and tuning.metric == "mrr"


def test_tuning_needs_candidates_and_the_metric():
    with pytest.raises(ValueError, match="needs at least one candidate"):
        tune_on_validation([], _knn_validation, "mrr")
    with pytest.raises(KeyError, match="metric 'ndcg@99' was not computed"):
        tune_on_validation([1], _knn_validation, "ndcg@99")
