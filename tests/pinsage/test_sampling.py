"""Computation graphs, pooling weights, the hard-negative curriculum."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.pinsage.sampling import (
    build_blocks,
    hard_negatives_for_epoch,
    pooling_weights,
    sample_hard_negatives,
)

# A 5-pin literal graph (rows). 0 <- {1, 2}; 1 <- {3}; 2 <- {0}; 3 <- {} (isolated); 4 <- {3, 1}.
NEIGHBORS = np.array([[1, 2], [3, -1], [0, -1], [-1, -1], [3, 1]], dtype=np.int32)
WEIGHTS = np.array([[0.6, 0.2], [1.0, 0.0], [0.5, 0.0], [0.0, 0.0], [0.3, 0.1]], dtype=np.float32)


def test_pooling_weights_importance_mean_max():
    mask = NEIGHBORS >= 0
    imp = pooling_weights(WEIGHTS, mask, "importance")
    assert np.allclose(imp[0], [0.75, 0.25]) and np.allclose(imp[4], [0.75, 0.25])
    assert np.allclose(imp[3], 0.0)  # isolated: no weight anywhere
    assert np.allclose(pooling_weights(WEIGHTS, mask, "mean")[0], [0.5, 0.5])
    assert np.allclose(pooling_weights(WEIGHTS, mask, "mean")[1], [1.0, 0.0])
    assert np.array_equal(pooling_weights(WEIGHTS, mask, "max"), mask.astype(np.float32))


def test_importance_weights_fall_back_to_uniform_when_all_zero():
    w = pooling_weights(np.zeros((1, 3), np.float32), np.array([[True, True, False]]), "importance")
    assert np.allclose(w, [[0.5, 0.5, 0.0]])


def test_pooling_weights_reject_unknown_pooling():
    with pytest.raises(ValueError, match="pooling must be one of .*got 'sum'"):
        pooling_weights(WEIGHTS, NEIGHBORS >= 0, "sum")


def test_build_blocks_two_hops_of_a_literal_graph():
    input_rows, blocks = build_blocks(np.array([0]), NEIGHBORS, WEIGHTS, num_layers=2, pooling="importance")
    top, bottom = blocks[1], blocks[0]
    # Layer 2: target 0 <- {1, 2}; its src nodes are [0, 1, 2] (dst first).
    assert top.num_dst == 1 and top.num_src == 3
    assert top.dst_ptr.tolist() == [0, 2] and top.src_index.tolist() == [1, 2]
    assert np.allclose(top.edge_weight, [0.75, 0.25])
    # Layer 1: [0, 1, 2] <- {1, 2}, {3}, {0}; src nodes [0, 1, 2, 3].
    assert bottom.num_dst == 3 and bottom.num_src == 4
    assert input_rows.tolist() == [0, 1, 2, 3]
    assert bottom.dst_ptr.tolist() == [0, 2, 3, 4]
    assert bottom.src_index.tolist() == [1, 2, 3, 0]
    assert bottom.dst_index.tolist() == [0, 0, 1, 2]
    # The transpose groups the same edges by source.
    assert bottom.src_ptr.tolist() == [0, 1, 2, 3, 4]
    assert bottom.src_index[bottom.src_order].tolist() == [0, 1, 2, 3]


def test_build_blocks_of_an_isolated_pin_has_no_edges():
    input_rows, blocks = build_blocks(np.array([3]), NEIGHBORS, WEIGHTS, num_layers=2, pooling="mean")
    assert input_rows.tolist() == [3]
    assert all(len(b.src_index) == 0 and b.num_src == 1 for b in blocks)


def test_build_blocks_rejects_duplicate_targets():
    with pytest.raises(ValueError, match="unique targets"):
        build_blocks(np.array([1, 1]), NEIGHBORS, WEIGHTS, 2, "importance")


def test_curriculum_none_in_epoch_one_then_n_minus_one_capped():
    assert [hard_negatives_for_epoch(e, 3) for e in range(1, 7)] == [0, 1, 2, 3, 3, 3]
    assert [hard_negatives_for_epoch(e, 0) for e in range(1, 4)] == [0, 0, 0]
    with pytest.raises(ValueError, match="epochs are numbered from 1, got 0"):
        hard_negatives_for_epoch(0, 3)


def test_sample_hard_negatives_from_each_querys_pool():
    pool = np.array([[5, 6, 7], [8, -1, -1], [-1, -1, -1]], dtype=np.int32)
    out = sample_hard_negatives(np.random.default_rng(0), np.array([0, 1, 2]), pool, 2)
    assert out.shape == (3, 2)
    assert set(out[0]) <= {5, 6, 7} and out[0, 0] != out[0, 1]  # without replacement
    assert sorted(out[1].tolist()) == [-1, 8]
    assert out[2].tolist() == [-1, -1]
    assert sample_hard_negatives(np.random.default_rng(0), np.array([0]), pool, 0).shape == (1, 0)
