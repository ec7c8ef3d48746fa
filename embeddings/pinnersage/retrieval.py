"""PinnerSage retrieval: one candidate list per medoid, interleaved so that each medoid keeps its share.

PinnerSage (KDD'20, 4.1; ``../shared/REFERENCE.md``) samples 3 medoids in proportion to their importance,
queries the ANN index once per sampled medoid and blends the lists. Every sampled medoid contributes its
own neighbours, so a user's top candidates cover several interests. Merging the lists by raw cosine
(``blend="max"`` of ``MultiVectorScorer``) loses that: the medoid of a tight cluster has neighbours at a
higher cosine than the medoid of a loose one and takes every slot of the top 50.

``interleave_lists`` is the deterministic, expected-value version of the paper's sampling: list ``j``
(weight ``w_j``, the cluster's importance normalized over the user's medoids) places its ``r``-th
candidate at key ``(r + 0.5) / w_j`` (Sainte-Lague apportionment), so every prefix of the merged list
holds about ``w_j`` of its slots from list ``j``. Equal weights give a round robin. A pin found by
several medoids keeps its earliest position.

``InterleavedScorer`` turns this into a full ranking that ``evaluate_users`` can score: the merged
candidates first, in merged order, then every other pin by its best cosine to any medoid.

``pull_queries`` moves each query a share ``pull`` of the way toward the corpus direction (``mean_direction``,
the unit mean of every pin embedding) before the search: ``unit(unit(q) + pull * m)``. A single pin's
neighbours are pins like it, whatever their popularity, whereas the mean of many pins leans toward the pins
near the corpus mean, which in PinSage space are the popular ones (docs/PINNERSAGE.md, "Why the average led").
The pull gives any query that lean by a setting: 0 leaves the query as it is. The evaluation tunes it on the
validation slice for every method alike, and the retrieval service applies the value it is configured with.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from embeddings.eval.scorers import unit_rows, vector_chunks

WEIGHTINGS = ("importance", "uniform")


def mean_direction(item_vectors: np.ndarray) -> np.ndarray:
    """(d,) float64 unit mean of the unit rows of ``item_vectors`` (N, d): the corpus direction of ``pull_queries``.

    Raises:
        ValueError: a row is not finite, or the mean is zero (no direction to pull toward).
    """
    mean = unit_rows(item_vectors, "item vectors").astype(np.float64).mean(axis=0)
    norm = np.linalg.norm(mean)
    if not norm > 1e-12:
        raise ValueError("the item vectors average to zero: there is no corpus direction to pull queries toward")
    return mean / norm


def pull_queries(queries: np.ndarray, direction: np.ndarray, pull: float) -> np.ndarray:
    """(k, d) float32 ``unit(unit(q) + pull * direction)`` for each query row ``q``.

    Args:
        queries: (k, d) finite query vectors (medoids, centroids, averages, ...); any norm.
        direction: (d,) unit vector (``mean_direction`` of the index).
        pull: share of the direction added to each unit query, >= 0 (0: the unit queries unchanged).

    Raises:
        ValueError: ``pull`` is negative or not finite, the shapes disagree, or a pulled query is zero.
    """
    if not np.isfinite(pull) or pull < 0:
        raise ValueError(f"pull must be finite and >= 0, got {pull}")
    queries = unit_rows(queries, "query vectors").astype(np.float64)
    direction = np.asarray(direction, dtype=np.float64)
    if direction.shape != (queries.shape[1],):
        raise ValueError(f"direction must have shape ({queries.shape[1]},), got {direction.shape}")
    if pull == 0:
        return queries.astype(np.float32)
    pulled = queries + pull * direction[None, :]
    norms = np.linalg.norm(pulled, axis=1, keepdims=True)
    if (norms <= 1e-12).any():
        raise ValueError(f"a query points exactly away from the corpus direction and vanishes at pull {pull}")
    return (pulled / norms).astype(np.float32)


def interleave_lists(lists: np.ndarray, weights: np.ndarray, num: int | None = None) -> np.ndarray:
    """Merge ranked candidate lists so that list ``j`` holds about a ``weights[j]`` share of every prefix.

    Args:
        lists: (k, D) int64 candidate ids, best first; -1 marks an empty position (skipped).
        weights: (k,) non-negative weights (need not sum to 1); a list of weight 0 only fills what the
            positive-weight lists leave.
        num: length of the output at most (default: all distinct candidates).

    Returns:
        (L,) int64 distinct candidate ids, L <= num. Order: key ``(r + 0.5) / w_j`` of the ``r``-th entry
        of list ``j`` ascending, ties by list index then rank; a repeated id keeps its first position.

    Raises:
        ValueError: shapes disagree, or a weight is negative or not finite.
    """
    lists = np.asarray(lists, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if lists.ndim != 2 or weights.shape != (lists.shape[0],):
        raise ValueError(f"lists must be (k, D) and weights (k,), got {lists.shape} and {weights.shape}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"weights must be finite and non-negative, got {weights.tolist()}")
    k, depth = lists.shape
    if k == 0 or depth == 0:
        return np.zeros(0, np.int64)
    ranks = np.arange(depth, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):  # a weight below ~1e-306 overflows: last, as a zero
        keys = np.where(weights[:, None] > 0, (ranks[None, :] + 0.5) / weights[:, None], np.inf)
    # A zero-weight list comes after every positive one, in round robin among themselves.
    fallback = np.broadcast_to(ranks[None, :], (k, depth))
    list_index = np.broadcast_to(np.arange(k)[:, None], (k, depth))
    order = np.lexsort((fallback.ravel(), list_index.ravel(), fallback.ravel() * np.isinf(keys).ravel(),
                        keys.ravel()))
    merged = lists.ravel()[order]
    merged = merged[merged >= 0]
    _, first = np.unique(merged, return_index=True)
    merged = merged[np.sort(first)]
    return merged if num is None else merged[:num]


class InterleavedScorer:
    """A full ranking per user: the interleaved per-vector candidate lists first, then the rest by max cosine.

    Args:
        item_vectors: (N, d) pin embeddings (the index).
        ptr: (U+1,) offsets: user ``u`` owns ``query_vectors[ptr[u]:ptr[u+1]]``.
        query_vectors: (V, d) the users' vectors (medoid embeddings, ...).
        weights: (V,) importance of each vector (``"importance"`` weighting); ignored by ``"uniform"``.
        depth: candidates retrieved per vector (and the merged length at most): at least the largest
            cut-off evaluated, so a single-vector user gets exactly its nearest-neighbour ranking.
        seen: (U, N) sparse matrix of pins each user must not be offered (the history); they are left out
            of the candidate lists, so they take no slot of any medoid's share.
        weighting: ``"importance"`` (shares proportional to ``weights``) or ``"uniform"`` (round robin).

    A user without vectors scores -inf everywhere. Scores are float32; the merged candidates score
    ``2 + (L - position)`` (above any cosine), the other pins their best cosine.
    """

    def __init__(self, item_vectors: np.ndarray, ptr: np.ndarray, query_vectors: np.ndarray,
                 weights: np.ndarray, *, depth: int, seen: sp.csr_matrix | None = None,
                 weighting: str = "importance") -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.items = unit_rows(item_vectors, "item vectors")
        self.vectors = unit_rows(query_vectors, "query vectors")
        self.ptr = np.asarray(ptr, dtype=np.int64)
        if self.ptr.ndim != 1 or len(self.ptr) == 0 or self.ptr[0] != 0 or self.ptr[-1] != len(self.vectors) \
                or (np.diff(self.ptr) < 0).any():
            raise ValueError(f"ptr must be non-decreasing offsets from 0 to {len(self.vectors)} query vectors")
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.shape != (len(self.vectors),):
            raise ValueError(f"weights have shape {self.weights.shape}, expected ({len(self.vectors)},)")
        self.num_items = len(self.items)
        self.depth = min(int(depth), self.num_items)
        self.seen = None if seen is None else sp.csr_matrix(seen)
        if self.seen is not None and self.seen.shape != (len(self.ptr) - 1, self.num_items):
            raise ValueError(f"seen must be ({len(self.ptr) - 1}, {self.num_items}), got {self.seen.shape}")
        self.weighting = weighting

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full((len(rows), self.num_items), -np.inf, dtype=np.float32)
        counts = self.ptr[rows + 1] - self.ptr[rows]
        for start, stop in vector_chunks(counts, self.num_items):
            self._score_into(out[start:stop], rows[start:stop], counts[start:stop])
        return out

    def _score_into(self, out: np.ndarray, rows: np.ndarray, counts: np.ndarray) -> None:
        has = np.flatnonzero(counts > 0)
        if not len(has):
            return
        index = np.concatenate([np.arange(self.ptr[r], self.ptr[r + 1]) for r in rows[has]])
        owner = np.repeat(np.arange(len(has)), counts[has])  # (v,) position in ``has`` of each vector's user
        sims = self.vectors[index] @ self.items.T  # (v, N)
        offsets = np.concatenate([[0], np.cumsum(counts[has])])
        best = np.maximum.reduceat(sims, offsets[:-1], axis=0)  # (users, N) max cosine
        masked = sims
        if self.seen is not None:
            seen = self.seen[rows[has]][owner].tocoo()  # (v, N): each vector's user's history
            masked = sims.copy()
            masked[seen.row, seen.col] = -np.inf
        part = np.argpartition(-masked, self.depth - 1, axis=1)[:, :self.depth]
        part_scores = np.take_along_axis(masked, part, axis=1)
        # Best first; ties by the smaller pin row, so the lists do not depend on argpartition.
        order = np.lexsort((part, -part_scores), axis=1)
        lists = np.take_along_axis(part, order, axis=1)
        lists[~np.isfinite(np.take_along_axis(part_scores, order, axis=1))] = -1
        weights = self.weights[index] if self.weighting == "importance" else np.ones(len(index))
        for i, u in enumerate(has):
            lo, hi = offsets[i], offsets[i + 1]
            merged = interleave_lists(lists[lo:hi], weights[lo:hi], self.depth)
            out[u] = best[i]
            out[u, merged] = 2.0 + (len(merged) - np.arange(len(merged), dtype=np.float32))
