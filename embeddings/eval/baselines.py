"""Baselines scored by the same ranking code as the models, and tuning on the validation slice.

* **Popularity** (``item_popularity``): an item's number of distinct training users (S3-Rec's PopRec
  counts interactions: ``binarize=False``). The same list for every query.
* **Item-kNN on co-engagement** (``fit_item_knn``): cosine between item columns of the binarized training
  user x item matrix, ``|U_i & U_j| / sqrt(|U_i| |U_j|)``, each item keeping its ``num_neighbors`` most
  similar other items. A user scores ``sum over history items i of sim(i, j)``; a query item scores its
  neighbors' similarities (``SparseScorer``). The neighbor count is chosen on the validation slice.
* **Content features alone**: ``EmbeddingScorer(features)``: cosine over the content feature vectors.
* **Pixie walks**: ``CandidateScorer(lambda pins, w: pixie_candidates(graph, pins, w, config, n), ...)``.

Every model and baseline is tuned on the validation slice only (``tune_on_validation``) and scored on the
test slice once, with the chosen setting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from embeddings.eval.metrics import RankingMetrics, binary_csr

log = logging.getLogger(__name__)


def item_popularity(interactions: sp.spmatrix | sp.sparray, *, binarize: bool = True) -> np.ndarray:
    """Per-item popularity from a (users x items) training matrix.

    Args:
        interactions: (U, N) sparse counts or 0/1.
        binarize: count distinct users (True) or sum the entries (False: interaction counts).

    Returns:
        (N,) float64.
    """
    if not sp.issparse(interactions):
        raise TypeError(f"interactions must be a scipy sparse (users x items) matrix, "
                        f"got {type(interactions).__name__}")
    matrix = binary_csr(interactions, "interactions") if binarize else sp.csr_matrix(interactions, dtype=np.float64)
    return np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()


def _top_k_rows(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row (ties: lower column first)."""
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    keep = np.zeros(len(data), dtype=bool)
    for row in range(matrix.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        if end - start <= k:
            keep[start:end] = True
            continue
        order = np.lexsort((indices[start:end], -data[start:end]))[:k]
        keep[start + order] = True
    row_of_entry = np.repeat(np.arange(matrix.shape[0]), np.diff(indptr))
    counts = np.bincount(row_of_entry[keep], minlength=matrix.shape[0])
    new_indptr = np.concatenate([[0], np.cumsum(counts)])
    out = sp.csr_matrix((data[keep], indices[keep], new_indptr), shape=matrix.shape)
    out.sort_indices()
    return out


def fit_item_knn(
    interactions: sp.spmatrix | sp.sparray, num_neighbors: int, *, chunk_size: int = 2048
) -> sp.csr_matrix:
    """Item-item cosine on the binarized training matrix, truncated to each item's top neighbors.

    Args:
        interactions: (U, N) sparse training interactions (any positive value counts once).
        num_neighbors: neighbors kept per item (the item itself is never its own neighbor).
        chunk_size: item rows of the similarity computed at once.

    Returns:
        (N, N) CSR similarity; row i holds item i's neighbors and their cosine in (0, 1].
    """
    if num_neighbors <= 0:
        raise ValueError(f"num_neighbors must be positive, got {num_neighbors}")
    x = binary_csr(interactions, "interactions")
    num_items = x.shape[1]
    xt = x.T.tocsr()  # (N, U)
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    blocks = []
    for start in range(0, num_items, chunk_size):
        stop = min(start + chunk_size, num_items)
        co = (xt[start:stop] @ x).tocsr()  # (c, N) co-engagement counts
        co = (sp.diags(inv[start:stop]) @ co @ sp.diags(inv)).tocsr()
        rows = np.repeat(np.arange(stop - start), np.diff(co.indptr))
        co.data[co.indices == start + rows] = 0.0  # an item is not its own neighbor
        co.eliminate_zeros()
        blocks.append(_top_k_rows(co, num_neighbors))
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, 0))


@dataclass(frozen=True)
class Tuning:
    """What tuning on the validation slice chose.

    Attributes:
        best: the chosen value.
        metric: the metric maximized.
        scores: (value, mean metric) for every candidate, in the order tried.
        results: the validation results, in the same order.
    """

    best: Hashable
    metric: str
    scores: list[tuple[Hashable, float]]
    results: list[RankingMetrics]


def tune_on_validation(
    candidates: Sequence[Hashable], evaluate: Callable[[Hashable], RankingMetrics], metric: str
) -> Tuning:
    """Evaluate each candidate setting on the validation slice and keep the best mean ``metric``.

    Ties go to the earlier candidate: list them simplest first. The test slice is never touched here.

    Args:
        candidates: settings to try (e.g. neighbor counts).
        evaluate: setting -> validation ``RankingMetrics``.
        metric: the metric to maximize (e.g. ``"ndcg@10"``).

    Raises:
        ValueError: no candidates, or a result without ``metric``.
    """
    if not candidates:
        raise ValueError("tune_on_validation needs at least one candidate setting")
    scores, results = [], []
    for value in candidates:
        result = evaluate(value)
        mean = float(result.metric(metric).mean()) if result.num_queries else float("nan")
        log.info("validation %s=%.4f for %r (%d queries) [%s]", metric, mean, value, result.num_queries,
                 result.protocol)
        scores.append((value, mean))
        results.append(result)
    means = np.array([s for _, s in scores])
    if np.isnan(means).all():
        raise ValueError(f"no candidate produced a {metric} on the validation slice (no queries with targets)")
    best = scores[int(np.nanargmax(means))][0]
    return Tuning(best=best, metric=metric, scores=scores, results=results)
