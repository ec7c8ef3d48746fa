from __future__ import annotations

import numpy as np
import pytest

from embeddings.graph.csr import BipartiteCSR
from embeddings.graph.exact_ppr import exact_ppr, mass_ratio, top_k_exact, transition_factors


def _graph():
    return BipartiteCSR.from_edges(np.array([0, 1, 1, 2, 2, 3]), np.array([0, 0, 1, 1, 2, 2]),
                                   np.arange(4), np.arange(3))


def test_exact_ppr_matches_a_dense_solve():
    graph, alpha, seed = _graph(), 0.3, 0
    to_board, to_pin = transition_factors(graph)
    m = (to_board @ to_pin).toarray()
    dense = alpha * np.linalg.solve(np.eye(4) - (1 - alpha) * m.T, np.eye(4)[seed])
    scores = exact_ppr(graph, seed, alpha)
    np.testing.assert_allclose(scores, dense, atol=1e-9)
    assert np.isclose(scores.sum(), 1.0)
    # farther pins along the chain get less
    assert scores[1] > scores[2] > scores[3] > 0


def test_top_k_and_mass_ratio():
    scores = np.array([0.5, 0.2, 0.2, 0.1])
    np.testing.assert_array_equal(top_k_exact(scores, 0, 2), [1, 2])  # tie broken by index
    assert mass_ratio(scores, 0, np.array([1, 2]), k=2) == 1.0
    assert mass_ratio(scores, 0, np.array([3, -1]), k=2) == pytest.approx(0.25)


def test_isolated_seed_and_bad_alpha():
    graph = BipartiteCSR.from_edges(np.array([0]), np.array([0]), np.arange(2), np.arange(1))
    np.testing.assert_array_equal(exact_ppr(graph, 1, 0.5), [0.0, 1.0])
    with pytest.raises(ValueError, match="alpha must be in"):
        exact_ppr(graph, 0, 0.0)
