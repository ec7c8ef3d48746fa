from __future__ import annotations

import numpy as np
import pytest

from embeddings.graph.csr import BipartiteCSR
from embeddings.graph.pixie import allocate_steps, pixie_candidates
from embeddings.graph.walks import WalkConfig


def _star():
    # query pins 0 and 1 each have a private board with pins 2/3; both share a board with pin 4
    pins = np.array([0, 2, 1, 3, 0, 1, 4])
    boards = np.array([0, 0, 1, 1, 2, 2, 2])
    return BipartiteCSR.from_edges(pins, boards, np.arange(5), np.arange(3))


def test_multi_hit_boosting_favours_pins_reached_from_several_queries():
    pins, scores = pixie_candidates(_star(), np.array([0, 1]), np.array([1.0, 1.0]), WalkConfig(num_steps=20000), 3)
    assert pins[0] == 4
    assert set(pins.tolist()) == {2, 3, 4}
    assert 0 not in pins and 1 not in pins
    assert (np.diff(scores) <= 0).all()


def test_steps_are_allocated_by_weight_and_degree():
    budgets = allocate_steps(_star(), np.array([0, 1]), np.array([3.0, 1.0]), 1000)
    assert budgets.sum() <= 1000 and budgets[0] == pytest.approx(3 * budgets[1], rel=0.01)


def test_mismatched_weights_are_rejected():
    with pytest.raises(ValueError, match="2 query pins but 1 weights"):
        pixie_candidates(_star(), np.array([0, 1]), np.array([1.0]), WalkConfig(), 3)
