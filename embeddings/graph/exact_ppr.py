"""Exact personalized PageRank on the pin->board->pin walk, by power iteration (an independent check).

The walk of ``embeddings.graph.walks`` restarts at the seed with probability ``alpha`` after each
pin->board->pin step. Its PPR vector solves ``pi = alpha e_s + (1 - alpha) pi M`` with
``M = D_p^-1 A D_b^-1 A^T`` (A: the P x B pin-board incidence). The walker counts the pins it lands on,
whose distribution is ``pi M = (pi - alpha e_s) / (1 - alpha)``: proportional to ``pi`` everywhere but at
the seed, which both rankings exclude. So the Monte Carlo top-T estimates the top-T of ``pi``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from embeddings.graph.csr import BipartiteCSR


def transition_factors(graph: BipartiteCSR) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(pin -> board, board -> pin) row-stochastic matrices; rows of isolated nodes are zero."""
    pin_deg = graph.pin_degree().astype(np.float64)
    board_deg = graph.board_degree().astype(np.float64)
    pin_rows = np.repeat(np.arange(graph.num_pins), graph.pin_degree())
    board_rows = np.repeat(np.arange(graph.num_boards), graph.board_degree())
    to_board = sp.csr_matrix(
        (1.0 / pin_deg[pin_rows], np.asarray(graph.pin_indices), np.asarray(graph.pin_indptr)),
        shape=(graph.num_pins, graph.num_boards),
    )
    to_pin = sp.csr_matrix(
        (1.0 / board_deg[board_rows], np.asarray(graph.board_indices), np.asarray(graph.board_indptr)),
        shape=(graph.num_boards, graph.num_pins),
    )
    return to_board, to_pin


def exact_ppr(
    graph: BipartiteCSR, seed: int, alpha: float, tol: float = 1e-10, max_iter: int = 1000,
    factors: tuple[sp.csr_matrix, sp.csr_matrix] | None = None,
) -> np.ndarray:
    """PPR scores (P,) from pin ``seed``, summing to 1 (an isolated seed keeps all mass).

    Raises:
        ValueError: alpha outside (0, 1), or no convergence within ``max_iter`` iterations.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    to_board, to_pin = factors or transition_factors(graph)
    to_board_t, to_pin_t = to_board.T.tocsr(), to_pin.T.tocsr()
    restart = np.zeros(graph.num_pins)
    restart[seed] = 1.0
    if graph.pin_indptr[seed + 1] == graph.pin_indptr[seed]:
        return restart
    pi = restart.copy()
    for _ in range(max_iter):
        nxt = alpha * restart + (1.0 - alpha) * (to_pin_t @ (to_board_t @ pi))
        if np.abs(nxt - pi).sum() < tol:
            return nxt
        pi = nxt
    raise ValueError(f"exact PPR from pin {seed} did not converge to {tol} in {max_iter} iterations")


def top_k_exact(scores: np.ndarray, seed: int, k: int) -> np.ndarray:
    """Indices of the k highest scores excluding the seed; ties broken by pin index."""
    scores = scores.copy()
    scores[seed] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))
    top = order[:k]
    return top[np.isfinite(scores[top]) & (scores[top] > 0)]


def mass_ratio(scores: np.ndarray, seed: int, returned: np.ndarray, k: int = 10) -> float:
    """Exact PPR mass the returned top-k captures over the exact top-k's mass (1.0 = as good as exact)."""
    best = top_k_exact(scores, seed, k)
    denom = scores[best].sum()
    returned = np.asarray(returned)[:k]
    returned = returned[returned >= 0]
    return float(scores[returned].sum() / denom) if denom > 0 else 1.0
