"""Pixie's multi-query candidate generator (Pixie, WWW'18, section 3.2): a baseline and a retrieval source.

Walk steps are split across the weighted query pins sub-linearly in degree
(``N_q = N * w_q * C_q / sum_r w_r C_r`` with ``C_q = deg(q) (C - log deg(q))``), each query walks with
its own budget (optionally with early stopping), and the visit counts are combined with multi-hit
boosting ``V[p] = (sum_q sqrt(V_q[p]))^2``, which favours pins reached from several queries.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from embeddings.graph.csr import BipartiteCSR
from embeddings.graph.walks import WalkConfig, degree_allocation_weight, max_log_degree, visit_counts


def allocate_steps(graph: BipartiteCSR, query_pins: np.ndarray, query_weights: np.ndarray, total_steps: int) -> np.ndarray:
    """(Q,) step budgets summing to at most ``total_steps``; isolated queries get 0."""
    degree = graph.pin_degree()[query_pins]
    scale = np.asarray(query_weights, np.float64) * degree_allocation_weight(degree, max_log_degree(graph))
    if scale.sum() <= 0:
        return np.zeros(len(query_pins), np.int64)
    return np.floor(total_steps * scale / scale.sum()).astype(np.int64)


def pixie_candidates(
    graph: BipartiteCSR,
    query_pins: np.ndarray,
    query_weights: np.ndarray,
    config: WalkConfig,
    num_candidates: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top candidates for a set of weighted query pins.

    Args:
        graph: the pin-board CSR.
        query_pins: (Q,) pin indices.
        query_weights: (Q,) non-negative weights (e.g. recency of the user's engagement).
        config: ``num_steps`` is the total budget shared by the queries; ``early_stop`` applies per query.
        num_candidates: how many to return.

    Returns:
        (pin indices (C,), boosted scores (C,)), best first, ties by pin index; query pins excluded.
    """
    query_pins = np.asarray(query_pins, np.int64)
    query_weights = np.asarray(query_weights, np.float64)
    if len(query_pins) != len(query_weights):
        raise ValueError(f"{len(query_pins)} query pins but {len(query_weights)} weights")
    if (query_weights < 0).any():
        raise ValueError("query weights must be non-negative")
    budgets = allocate_steps(graph, query_pins, query_weights, config.num_steps)
    boosted = np.zeros(graph.num_pins, np.float64)
    for pin, budget in zip(query_pins, budgets):
        if budget <= 0:
            continue
        pins, visits, _ = visit_counts(graph, int(pin), dataclasses.replace(config, num_steps=int(budget)))
        boosted[pins] += np.sqrt(visits)
    boosted[query_pins] = 0.0
    boosted = boosted**2
    hit = np.flatnonzero(boosted > 0)
    order = hit[np.lexsort((hit, -boosted[hit]))][:num_candidates]
    return order.astype(np.int64), boosted[order]
