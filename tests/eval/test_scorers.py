"""Scorers: cosine, multi-vector blends, sparse products, fixed scores and candidate generators."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from embeddings.eval.scorers import (
    CandidateScorer,
    EmbeddingScorer,
    ItemScoresScorer,
    MultiVectorScorer,
    ReindexedScorer,
    SparseScorer,
    unit_rows,
)

ITEMS = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
S = np.sqrt(0.5)


def test_embedding_scorer_is_cosine():
    scores = EmbeddingScorer(ITEMS)(np.array([0, 2]))
    np.testing.assert_allclose(scores, [[1, 0, S], [S, S, 1]], rtol=1e-6)
    queries = np.array([[0.0, -3.0]])
    np.testing.assert_allclose(EmbeddingScorer(ITEMS, queries)(np.array([0])), [[0, -1, -S]], rtol=1e-6)



def test_embedding_scorer_by_dot_product_keeps_the_norms():
    queries = np.array([[0.0, -3.0]])
    np.testing.assert_allclose(EmbeddingScorer(ITEMS, queries, "dot")(np.array([0])), [[0, -6, -3]], rtol=1e-6)
    # Item 1 (norm 2) outranks item 2 (norm sqrt 2) by dot product, not by cosine.
    np.testing.assert_allclose(EmbeddingScorer(ITEMS, similarity="dot")(np.array([1])), [[0, 4, 2]], rtol=1e-6)
    with pytest.raises(ValueError, match="similarity must be one of"):
        EmbeddingScorer(ITEMS, similarity="l2")
    with pytest.raises(ValueError, match=r"query vectors has 1 rows with NaN"):
        EmbeddingScorer(ITEMS, np.array([[np.nan, 0.0]]), "dot")


def test_unit_rows_keeps_zero_rows_and_rejects_non_finite():
    np.testing.assert_allclose(unit_rows(np.array([[0.0, 0.0], [3.0, 4.0]]), "v"), [[0, 0], [0.6, 0.8]], rtol=1e-6)
    with pytest.raises(ValueError, match=r"item vectors has 1 rows with NaN or Inf values \(first row 1\)"):
        EmbeddingScorer(np.array([[1.0, 0.0], [np.inf, 0.0]]))
    with pytest.raises(ValueError, match="query vectors have dim 3 but item vectors have 2"):
        EmbeddingScorer(ITEMS, np.ones((1, 3)))


def test_multi_vector_max_and_weighted_sum():
    # Query 0 owns items 0 and 1, query 1 owns nothing, query 2 owns item 2.
    ptr, rows = np.array([0, 2, 2, 3]), np.array([0, 1, 2])
    best = MultiVectorScorer(ITEMS, ptr, rows, blend="max")(np.array([0, 1, 2]))
    np.testing.assert_allclose(best[0], [1, 1, S], rtol=1e-6)
    assert np.isneginf(best[1]).all()
    np.testing.assert_allclose(best[2], [S, S, 1], rtol=1e-6)
    summed = MultiVectorScorer(ITEMS, ptr, rows, blend="sum", weights=np.array([2.0, 1.0, 1.0]))(np.array([0]))
    np.testing.assert_allclose(summed, [[2, 1, 3 * S]], rtol=1e-6)


def test_multi_vector_softmax_is_a_weighted_soft_maximum():
    ptr, rows = np.array([0, 2, 2, 3]), np.array([0, 1, 2])
    t, w = 0.1, np.array([2.0, 1.0, 1.0])
    soft = MultiVectorScorer(ITEMS, ptr, rows, blend="softmax", weights=w, temperature=t)(np.array([0, 1, 2]))
    sims = ITEMS[:2] @ ITEMS.T / np.linalg.norm(ITEMS, axis=1) / np.linalg.norm(ITEMS[:2], axis=1)[:, None]
    np.testing.assert_allclose(soft[0], t * np.log((w[:2, None] * np.exp(sims / t)).sum(0)), rtol=1e-5)
    assert np.isneginf(soft[1]).all()
    np.testing.assert_allclose(soft[2], [S, S, 1], rtol=1e-5)  # one vector of weight 1: its cosine
    # An item near both vectors beats one as near to only one of them; a cold temperature tends to "max".
    both = MultiVectorScorer(ITEMS, ptr, rows, blend="softmax", temperature=t)(np.array([0]))[0]
    assert both[2] > S
    cold = MultiVectorScorer(ITEMS, ptr, rows, blend="softmax", temperature=1e-3)(np.array([0]))
    np.testing.assert_allclose(cold, MultiVectorScorer(ITEMS, ptr, rows, blend="max")(np.array([0])), atol=2e-3)
    with pytest.raises(ValueError, match="temperature must be positive"):
        MultiVectorScorer(ITEMS, ptr, rows, blend="softmax", temperature=0.0)


def test_multi_vector_with_separate_query_vectors():
    medoids = np.array([[0.0, 1.0]])
    scores = MultiVectorScorer(ITEMS, np.array([0, 1]), np.array([0]), query_vectors=medoids)(np.array([0]))
    np.testing.assert_allclose(scores, [[0, 1, S]], rtol=1e-6)


def test_multi_vector_rejects_bad_layouts():
    with pytest.raises(ValueError, match="blend must be one of"):
        MultiVectorScorer(ITEMS, np.array([0, 1]), np.array([0]), blend="mean")
    with pytest.raises(ValueError, match="ptr must be non-decreasing offsets"):
        MultiVectorScorer(ITEMS, np.array([0, 2]), np.array([0]))
    with pytest.raises(ValueError, match="vector_rows must index the 3 query vectors"):
        MultiVectorScorer(ITEMS, np.array([0, 1]), np.array([5]))


def test_sparse_scorer_multiplies_queries_by_similarity():
    history = sp.csr_matrix(np.array([[1.0, 1.0, 0.0]]))
    similarity = sp.csr_matrix(np.array([[0, 0.5, 0.2], [0.5, 0, 0.1], [0.2, 0.1, 0]]))
    np.testing.assert_allclose(SparseScorer(history, similarity)(np.array([0])), [[0.5, 0.5, 0.3]])
    with pytest.raises(ValueError, match="query matrix has 2 columns but the similarity has 3 rows"):
        SparseScorer(sp.csr_matrix((1, 2)), similarity)


def test_item_scores_scorer_broadcasts():
    scores = ItemScoresScorer(np.array([3.0, 1.0]))(np.array([4, 7, 9]))
    assert scores.shape == (3, 2) and (scores == [3.0, 1.0]).all()
    with pytest.raises(ValueError, match="item scores must be a finite 1-D array"):
        ItemScoresScorer(np.array([np.nan]))


def test_candidate_scorer_passes_query_items_and_weights_and_fills_minus_infinity():
    calls = []

    def generate(pins, weights):  # a stand-in for pixie_candidates(graph, pins, weights, config, n)
        calls.append((pins.tolist(), weights.tolist()))
        return np.array([3, 0]), np.array([5.0, 2.0])

    queries = sp.csr_matrix(np.array([[0, 2.0, 0, 1.0], [0, 0, 0, 0]]))
    scores = CandidateScorer(generate, queries, 4)(np.array([0, 1]))
    assert calls == [([1, 3], [2.0, 1.0])]  # the empty query is not sent
    assert scores[0, 3] == 5.0 and scores[0, 0] == 2.0 and np.isneginf(scores[0, [1, 2]]).all()
    assert np.isneginf(scores[1]).all()


@pytest.mark.parametrize(("items", "scores", "message"), [
    ([0, 0], [1.0, 2.0], "duplicate items for query row 0"),
    ([0, 9], [1.0, 2.0], r"item indices outside \[0, 4\) for query row 0"),
    ([0], [1.0, 2.0], "returned items of shape"),
    ([0], [np.nan], "NaN scores for query row 0"),
])
def test_candidate_scorer_rejects_bad_generator_output(items, scores, message):
    queries = sp.csr_matrix(np.array([[1.0, 0, 0, 0]]))
    scorer = CandidateScorer(lambda p, w: (np.array(items), np.array(scores)), queries, 4)
    with pytest.raises(ValueError, match=message):
        scorer(np.array([0]))


def test_reindexed_scorer_maps_rows():
    scorer = ReindexedScorer(EmbeddingScorer(ITEMS), np.array([2, 2, 0]))
    np.testing.assert_allclose(scorer(np.array([2, 0])), EmbeddingScorer(ITEMS)(np.array([0, 2])), rtol=1e-6)
    assert scorer.num_items == 3


def test_vector_chunks_cover_every_query_once_within_the_budget():
    from embeddings.eval.metrics import SCORE_BUDGET
    from embeddings.eval.scorers import vector_chunks

    num_items = SCORE_BUDGET // 10  # at most 10 vectors per chunk
    counts = np.array([3, 4, 3, 12, 0, 5, 6])
    chunks = list(vector_chunks(counts, num_items))
    assert chunks == [(0, 3), (3, 4), (4, 6), (6, 7)]  # 10, the oversized 12 alone, 0 + 5, 6
    assert list(vector_chunks(np.zeros(0, dtype=np.int64), num_items)) == []
