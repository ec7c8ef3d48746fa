"""A random topical pin-board graph built directly as CSR, for walker benchmarks and correctness checks.

Pins fall into communities; each board belongs to one community and takes most of its pins from it
(``locality``), so the graph is not an expander and PPR neighborhoods are meaningful. Board sizes and
pin popularity are power-law. Deterministic given ``seed``.
"""

from __future__ import annotations

import numpy as np

from embeddings.graph.csr import BipartiteCSR


def topical_graph(
    num_pins: int, num_edges: int, num_communities: int, mean_board_size: float = 20.0,
    locality: float = 0.9, seed: int = 0,
) -> BipartiteCSR:
    """Returns a deduplicated BipartiteCSR with about ``num_edges`` edges (ids = indices + 1)."""
    rng = np.random.default_rng(seed)
    num_boards = max(1, int(num_edges / mean_board_size))
    size = np.maximum(1, rng.zipf(2.2, num_boards)).astype(np.float64)
    size = np.maximum(1, np.round(size * num_edges / size.sum())).astype(np.int64)
    board_of_edge = np.repeat(np.arange(num_boards), size)
    community_of_board = rng.integers(0, num_communities, num_boards)
    per = max(1, num_pins // num_communities)
    # within a community, popularity is power-law: rank r drawn with density ~ r^-0.8
    local = np.minimum((per * rng.random(len(board_of_edge)) ** 2.5).astype(np.int64), per - 1)
    pins = community_of_board[board_of_edge] * per + local
    away = rng.random(len(board_of_edge)) > locality
    pins[away] = rng.integers(0, num_pins, int(away.sum()))
    pins = np.minimum(pins, num_pins - 1)
    key = np.unique(board_of_edge * np.int64(num_pins) + pins)
    board_idx, pin_idx = key // num_pins, key % num_pins
    return BipartiteCSR.from_edges(pin_idx, board_idx, np.arange(num_pins) + 1, np.arange(num_boards) + 1)
