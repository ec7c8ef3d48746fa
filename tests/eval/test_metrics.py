"""Ranking metrics on tiny literal score matrices, every expected value computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from embeddings.eval.metrics import evaluate_ranking, metrics_from_ranks, rank_targets, resolve_chunk_size, top_k

# Two queries, four items.
SCORES = np.array([
    [0.9, 0.5, 0.5, 0.1],
    [0.2, 0.2, 0.2, 0.2],
])


def scorer(rows):
    return SCORES[rows]


def csr(dense):
    return sp.csr_matrix(np.array(dense, dtype=float))


def test_ranks_count_strictly_greater_and_every_tie_by_default():
    # q0 targets items 1 (0.5: one greater, one tie -> 2) and 3 (0.1: three greater -> 3);
    # q1 targets item 0 (all tied: three ties -> 3).
    ids, ptr, ranks = rank_targets(scorer, csr([[0, 1, 0, 1], [1, 0, 0, 0]]))
    assert ids.tolist() == [0, 1] and ptr.tolist() == [0, 2, 3]
    assert ranks.tolist() == [2.0, 3.0, 3.0]


def test_average_ties_count_half_of_the_ties():
    _, _, ranks = rank_targets(scorer, csr([[0, 1, 0, 1], [1, 0, 0, 0]]), ties="average")
    assert ranks.tolist() == [1.5, 3.0, 1.5]


def test_a_constant_scorer_never_hits_under_pessimistic_ties():
    result = evaluate_ranking(scorer, csr([[0, 0, 0, 0], [0, 0, 1, 0]]), protocol="p", ks=(1, 3))
    assert result.query_ids.tolist() == [1]  # q0 has no target: not evaluated
    assert result.metric("hr@3").tolist() == [0.0]
    assert result.metric("mrr").tolist() == [0.25]


def test_seen_items_are_masked_but_targets_never_are():
    # q0: item 0 masked -> target 1 has no greater, one tie -> rank 1; target 3 -> rank 2.
    # q1: item 1 masked, item 0 is both seen and target -> stays; ties with items 2, 3 -> rank 2.
    targets = csr([[0, 1, 0, 1], [1, 0, 0, 0]])
    seen = csr([[1, 0, 0, 0], [1, 1, 0, 0]])
    _, _, ranks = rank_targets(scorer, targets, seen=seen)
    assert ranks.tolist() == [1.0, 2.0, 2.0]


def test_metrics_by_hand():
    targets = csr([[0, 1, 0, 1], [1, 0, 0, 0]])
    seen = csr([[1, 0, 0, 0], [0, 1, 0, 0]])
    result = evaluate_ranking(scorer, targets, seen=seen, protocol="hand", ks=(1, 2, 10), mrr_scale=2)
    # ranks: q0 -> [1, 2], q1 -> [2]
    v = result.values
    assert v["hr@1"].tolist() == [0.0, 0.0]
    assert v["hr@2"].tolist() == [1.0, 0.0]
    assert v["recall@2"].tolist() == [0.5, 0.0]
    assert v["recall@10"].tolist() == [1.0, 1.0]
    ndcg2_q0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert v["ndcg@2"] == pytest.approx([ndcg2_q0, 0.0])
    ndcg10_q0 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert v["ndcg@10"] == pytest.approx([ndcg10_q0, 1 / math.log2(4)])
    assert v["mrr"] == pytest.approx([1 / 2, 1 / 3])
    assert v["mrr_scaled_2"] == pytest.approx([1.0, 1 / 2])  # 1 / ceil((rank + 1) / 2)
    assert result.best_rank.tolist() == [1.0, 2.0]
    assert result.mean()["hr@2"] == 0.5 and result.protocol == "hand" and result.ties == "pessimistic"
    assert result.hit_rate_curve([1, 2, 3]).tolist() == [0.0, 0.5, 1.0]


def test_single_target_hit_rate_equals_recall_and_ndcg_formula():
    values, best = metrics_from_ranks(np.array([0, 1, 2, 3]), np.array([0.0, 4.0, 12.0]), ks=(5, 10))
    assert values["hr@5"].tolist() == values["recall@5"].tolist() == [1.0, 1.0, 0.0]
    assert values["ndcg@5"] == pytest.approx([1.0, 1 / math.log2(6), 0.0])
    assert values["mrr"] == pytest.approx([1.0, 1 / 5, 1 / 13])
    assert best.tolist() == [0.0, 4.0, 12.0]


def test_ideal_dcg_caps_at_k():
    # Three targets at ranks 0, 1, 2 with K=2: two hits, ideal DCG over min(3, 2) = 2 positions -> 1.0.
    values, _ = metrics_from_ranks(np.array([0, 3]), np.array([0.0, 1.0, 2.0]), ks=(2,))
    assert values["ndcg@2"].tolist() == [1.0]
    assert values["recall@2"] == pytest.approx([2 / 3])


def test_minus_infinity_means_not_a_candidate():
    scores = np.array([[1.0, -np.inf, -np.inf, 0.5]])
    _, _, ranks = rank_targets(lambda rows: scores[rows], csr([[0, 1, 0, 0]]))
    assert ranks.tolist() == [3.0]  # two greater, one tie (item 2)


def test_chunking_gives_the_same_ranks():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(9, 7)).astype(float)  # many ties
    targets = sp.random(9, 7, density=0.3, random_state=1, format="csr")
    seen = sp.random(9, 7, density=0.3, random_state=2, format="csr")
    whole = rank_targets(lambda r: scores[r], targets, seen=seen, chunk_size=100)
    for size in (1, 2, 4):
        parts = rank_targets(lambda r: scores[r], targets, seen=seen, chunk_size=size)
        for a, b in zip(whole, parts, strict=True):
            np.testing.assert_array_equal(a, b)


def test_masking_does_not_write_into_the_scorers_array():
    scores = SCORES.copy()

    def view_scorer(rows):  # a slice: a view of the scorer's own state
        return scores[rows[0]:rows[-1] + 1]

    rank_targets(view_scorer, csr([[0, 1, 0, 0], [0, 0, 1, 0]]), seen=csr([[1, 0, 0, 0], [1, 0, 0, 0]]))
    np.testing.assert_array_equal(scores, SCORES)


def test_top_k_masks_seen_and_breaks_ties_by_index():
    items, scores = top_k(scorer, np.array([0, 1]), 3, 4, seen=csr([[1, 0, 0, 0], [0, 1, 0, 0]]))
    assert items.tolist() == [[1, 2, 3], [0, 2, 3]]
    assert scores.tolist() == [[0.5, 0.5, 0.1], [0.2, 0.2, 0.2]]


def test_top_k_pads_when_fewer_items_are_rankable():
    s = np.array([[1.0, -np.inf, 0.3]])
    items, scores = top_k(lambda r: s[r], np.array([0]), 3, 3, seen=csr([[0, 0, 1]]))
    assert items.tolist() == [[0, -1, -1]]
    assert scores[0, 0] == 1.0 and np.isneginf(scores[0, 1:]).all()


def test_protocol_is_required():
    with pytest.raises(ValueError, match="protocol must name how the numbers are measured"):
        evaluate_ranking(scorer, csr([[1, 0, 0, 0], [0, 0, 0, 0]]), protocol="")


def test_nan_scores_are_an_error():
    bad = np.array([[0.1, np.nan, 0.2, 0.3]])
    with pytest.raises(ValueError, match=r"scorer returned NaN scores for 1 queries .*under protocol 'p'"):
        evaluate_ranking(lambda r: bad[r], csr([[1, 0, 0, 0]]), protocol="p")


def test_wrong_score_shape_is_an_error():
    with pytest.raises(ValueError, match=r"scorer returned scores of shape \(2, 3\) for 2 queries; expected \(2, 4\)"):
        evaluate_ranking(lambda r: np.zeros((len(r), 3)), csr([[1, 0, 0, 0], [0, 1, 0, 0]]), protocol="p")


def test_bad_arguments():
    targets = csr([[1, 0, 0, 0]])
    with pytest.raises(ValueError, match="ties must be one of"):
        rank_targets(scorer, targets, ties="optimistic")
    with pytest.raises(ValueError, match=r"seen has shape \(1, 3\) but targets have \(1, 4\)"):
        rank_targets(scorer, targets, seen=csr([[1, 0, 0]]))
    with pytest.raises(TypeError, match="targets must be a scipy sparse matrix"):
        rank_targets(scorer, np.ones((1, 4)))
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        resolve_chunk_size(0, 10)
    with pytest.raises(ValueError, match="every K must be positive"):
        metrics_from_ranks(np.array([0, 1]), np.array([0.0]), ks=(0,))
    with pytest.raises(KeyError, match="metric 'hr@5' was not computed"):
        evaluate_ranking(scorer, targets, protocol="p").metric("hr@5")


def test_chunk_size_follows_the_score_budget():
    assert resolve_chunk_size(None, 1 << 20) == 16
    assert resolve_chunk_size(None, 10) == 1024
    assert resolve_chunk_size(7, 10) == 7


def test_top_k_matches_a_stable_full_sort_on_many_ties():
    rng = np.random.default_rng(5)
    for _ in range(20):
        scores = rng.integers(0, 3, size=(30, 25)).astype(float)
        scores[rng.random(scores.shape) < 0.3] = -np.inf  # not candidates: never listed
        items, _ = top_k(lambda r: scores[r], np.arange(30), 6, 25, chunk_size=7)
        reference = np.argsort(-scores, axis=1, kind="stable")[:, :6]
        reference[np.isneginf(np.take_along_axis(scores, reference, axis=1))] = -1
        np.testing.assert_array_equal(items, reference)
