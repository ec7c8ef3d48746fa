"""Scorers: callables ``rows -> (len(rows), num_items)`` scores that every model and baseline plugs into.

One ranking core (``embeddings.eval.metrics``) serves every model, so that a difference in numbers is a
difference in models, not in evaluation code:

* ``EmbeddingScorer``: cosine (or dot product) of query vectors against item vectors (PinSage, content
  features alone, PinnerFormer's user embedding).
* ``MultiVectorScorer``: several query vectors per query, blended by max, weighted sum or a soft maximum
  (a user's latest pins; PinnerSage's medoids).
* ``SparseScorer``: a sparse query matrix times a sparse item-item similarity (item-kNN).
* ``ItemScoresScorer``: the same item scores for every query (popularity).
* ``CandidateScorer``: a candidate generator ``(query_items, query_weights) -> (items, scores)`` (Pixie
  walks); items it did not return score -inf (not a candidate).
* ``ReindexedScorer``: scorer row ``i`` is query ``index[i]`` of another scorer (one row per pair).

Every scorer exposes ``num_items``; scores are float32 or float64 and never NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp

from embeddings.eval.metrics import SCORE_BUDGET

BLENDS = ("max", "sum", "softmax")
SIMILARITIES = ("cosine", "dot")
DEFAULT_BLEND_TEMPERATURE = 0.05


def finite_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    """The rows as a float32 (n, D) array, checked finite.

    Raises:
        ValueError: not 2-D, or NaN/Inf values (with the first bad row); ``what`` is named.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (rows, dim) array, got shape {vectors.shape}")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{what} has {len(bad)} rows with NaN or Inf values (first row {bad[0]})")
    return vectors


def unit_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32; all-zero rows stay zero (they score 0 against everything).

    Args:
        vectors: (n, D) finite floats.
        what: named in errors.

    Raises:
        ValueError: not 2-D, or NaN/Inf values (with the first bad row).
    """
    vectors = finite_rows(vectors, what)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def vector_chunks(counts: np.ndarray, num_items: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` runs of consecutive queries whose vectors (``counts[q]`` each) are scored together,
    so that a chunk's (vectors, num_items) similarity matrix stays within ``SCORE_BUDGET`` (a query with
    more vectors than that is a chunk of its own)."""
    max_vectors = max(1, SCORE_BUDGET // max(num_items, 1))
    start = 0
    while start < len(counts):
        stop, total = start + 1, counts[start]
        while stop < len(counts) and total + counts[stop] <= max_vectors:
            total += counts[stop]
            stop += 1
        yield start, stop
        start = stop


class EmbeddingScorer:
    """Cosine similarity: ``unit(queries[rows]) @ unit(items).T`` (or the plain dot product).

    Args:
        item_vectors: (N, D) item embeddings (or content features).
        query_vectors: (Q, D) query embeddings; None means the items themselves (item-to-item).
        similarity: ``cosine`` or ``dot`` (for models trained on dot-product logits, whose vector norms
            carry part of the score: PinnerFormer with ``output="tied_dot"``).
    """

    def __init__(self, item_vectors: np.ndarray, query_vectors: np.ndarray | None = None,
                 similarity: str = "cosine") -> None:
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        prepare = unit_rows if similarity == "cosine" else finite_rows
        self.items = prepare(item_vectors, "item vectors")
        self.queries = self.items if query_vectors is None else prepare(query_vectors, "query vectors")
        if self.queries.shape[1] != self.items.shape[1]:
            raise ValueError(f"query vectors have dim {self.queries.shape[1]} but item vectors have "
                             f"{self.items.shape[1]}")
        self.num_items = len(self.items)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self.queries[rows] @ self.items.T  # (c, N)


class MultiVectorScorer:
    """Several vectors per query, each scored by cosine against the items, then blended per item.

    Query ``q`` owns ``vector_rows[ptr[q]:ptr[q+1]]``: rows of ``item_vectors`` (a user's latest pins) or,
    with ``query_vectors``, rows of that array (cluster medoids, ...).

    Args:
        item_vectors: (N, D).
        ptr: (Q+1,) offsets into ``vector_rows``.
        vector_rows: (V,) rows of ``query_vectors`` (default: of ``item_vectors``).
        blend: ``"max"`` (an item scores its best similarity to any of the query's vectors: candidates from
            several queries merged by score) or ``"sum"`` (weighted sum of similarities; with equal weights
            the same ranking as the cosine of the query's mean vector) or ``"softmax"``: the soft maximum
            ``t * log(sum_j w_j * exp(cos_j / t))``, between the two: an item near one of the vectors scores
            about its best similarity, and one near several of them scores higher (multi-hit boosting, as
            Pixie's walks from several query pins do). ``t`` -> 0 gives ``"max"``.
        weights: (V,) per-vector weights for ``"sum"`` and ``"softmax"`` (default 1); ignored by ``"max"``.
        temperature: ``t`` of ``"softmax"`` (> 0).
        query_vectors: (M, D) vectors addressed by ``vector_rows`` instead of ``item_vectors``.

    A query without vectors scores -inf everywhere (no candidates: its targets rank last).
    """

    def __init__(self, item_vectors: np.ndarray, ptr: np.ndarray, vector_rows: np.ndarray, *,
                 blend: str = "max", weights: np.ndarray | None = None,
                 query_vectors: np.ndarray | None = None, temperature: float = DEFAULT_BLEND_TEMPERATURE) -> None:
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.items = unit_rows(item_vectors, "item vectors")
        source = self.items if query_vectors is None else unit_rows(query_vectors, "query vectors")
        self.ptr = np.asarray(ptr, dtype=np.int64)
        self.vector_rows = np.asarray(vector_rows, dtype=np.int64)
        bad_ptr = self.ptr.ndim != 1 or len(self.ptr) == 0 or self.ptr[0] != 0
        if bad_ptr or self.ptr[-1] != len(self.vector_rows) or (np.diff(self.ptr) < 0).any():
            raise ValueError(f"ptr must be non-decreasing offsets from 0 to len(vector_rows)={len(self.vector_rows)}")
        if len(self.vector_rows) and (self.vector_rows.min() < 0 or self.vector_rows.max() >= len(source)):
            raise ValueError(f"vector_rows must index the {len(source)} query vectors")
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        if self.weights is not None and self.weights.shape != self.vector_rows.shape:
            raise ValueError(f"weights have shape {self.weights.shape}, expected {self.vector_rows.shape}")
        if blend == "softmax" and self.weights is not None and not (self.weights > 0).all():
            raise ValueError("softmax blend weights must be positive")
        self.vectors = source[self.vector_rows]  # (V, D)
        self.blend = blend
        self.num_items = len(self.items)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full((len(rows), self.num_items), -np.inf, dtype=np.float32)
        counts = self.ptr[rows + 1] - self.ptr[rows]
        for start, stop in vector_chunks(counts, self.num_items):
            self._score_into(out[start:stop], rows[start:stop], counts[start:stop])
        return out

    def _score_into(self, out: np.ndarray, rows: np.ndarray, counts: np.ndarray) -> None:
        has = counts > 0
        if not has.any():
            return
        index = np.concatenate([np.arange(self.ptr[r], self.ptr[r + 1]) for r in rows[has]])
        sims = self.vectors[index] @ self.items.T  # (v, N)
        if self.blend == "sum" and self.weights is not None:
            sims *= self.weights[index][:, None]
        elif self.blend == "softmax":
            # Scaled log-domain: t * logaddexp(a / t, b / t) accumulates t * log(sum w exp(cos / t)).
            sims /= self.temperature
            if self.weights is not None:
                sims += np.log(self.weights[index])[:, None]
        counts = counts[has]
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # Blend layer by layer (the j-th vector of every query that has one): far faster than reduceat
        # along axis 0.
        blended = sims[offsets].copy()  # every query has a first vector
        combine = {"max": np.maximum, "sum": np.add, "softmax": np.logaddexp}[self.blend]
        for j in range(1, int(counts.max())):
            sel = np.flatnonzero(counts > j)
            blended[sel] = combine(blended[sel], sims[offsets[sel] + j])
        out[has] = blended * self.temperature if self.blend == "softmax" else blended


class SparseScorer:
    """``query_matrix[rows] @ similarity``: e.g. a user's history (U x N) times item-kNN neighbors (N x N).

    Items no query entry reaches score 0.
    """

    def __init__(self, query_matrix: sp.spmatrix | sp.sparray, similarity: sp.spmatrix | sp.sparray) -> None:
        self.queries = sp.csr_matrix(query_matrix, dtype=np.float64)
        self.similarity = sp.csr_matrix(similarity, dtype=np.float64)
        if self.queries.shape[1] != self.similarity.shape[0]:
            raise ValueError(f"query matrix has {self.queries.shape[1]} columns but the similarity has "
                             f"{self.similarity.shape[0]} rows")
        self.num_items = self.similarity.shape[1]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return (self.queries[rows] @ self.similarity).toarray()


class ItemScoresScorer:
    """The same score vector for every query (popularity)."""

    def __init__(self, item_scores: np.ndarray) -> None:
        self.scores = np.asarray(item_scores, dtype=np.float64)
        if self.scores.ndim != 1 or not np.isfinite(self.scores).all():
            raise ValueError(f"item scores must be a finite 1-D array, got shape {self.scores.shape}")
        self.num_items = len(self.scores)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(rows), self.num_items))


CandidateGenerator = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``(query_items (m,), query_weights (m,)) -> (items (c,), scores (c,))``, e.g.
``lambda pins, w: pixie_candidates(graph, pins, w, config, num_candidates)``."""


class CandidateScorer:
    """Scores from a candidate generator: returned items get their scores, the rest -inf.

    Args:
        generate: the generator (see ``CandidateGenerator``).
        query_matrix: (Q, N) sparse; row ``q``'s nonzeros are the query items and their weights.
        num_items: N (the generator's item indices must lie in ``[0, N)``).
    """

    def __init__(self, generate: CandidateGenerator, query_matrix: sp.spmatrix | sp.sparray, num_items: int) -> None:
        self.generate = generate
        self.queries = sp.csr_matrix(query_matrix, dtype=np.float64)
        self.queries.sum_duplicates()
        self.num_items = int(num_items)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), self.num_items), -np.inf)
        for i, row in enumerate(np.asarray(rows, dtype=np.int64)):
            start, end = self.queries.indptr[row], self.queries.indptr[row + 1]
            if start == end:
                continue
            items, scores = self.generate(self.queries.indices[start:end].astype(np.int64),
                                          self.queries.data[start:end])
            items = np.asarray(items, dtype=np.int64)
            scores = np.asarray(scores, dtype=np.float64)
            if items.shape != scores.shape or items.ndim != 1:
                raise ValueError(f"candidate generator returned items of shape {items.shape} and scores of "
                                 f"shape {scores.shape} for query row {row}; expected two equal 1-D arrays")
            if len(items) and (items.min() < 0 or items.max() >= self.num_items):
                raise ValueError(f"candidate generator returned item indices outside [0, {self.num_items}) "
                                 f"for query row {row}")
            if len(np.unique(items)) != len(items):
                raise ValueError(f"candidate generator returned duplicate items for query row {row}")
            if np.isnan(scores).any():
                raise ValueError(f"candidate generator returned NaN scores for query row {row}")
            out[i, items] = scores
        return out


class ReindexedScorer:
    """Row ``i`` of this scorer is row ``index[i]`` of ``scorer`` (e.g. one row per (query, target) pair)."""

    def __init__(self, scorer: Callable[[np.ndarray], np.ndarray], index: np.ndarray) -> None:
        self.scorer = scorer
        self.index = np.asarray(index, dtype=np.int64)
        self.num_items = getattr(scorer, "num_items", None)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self.scorer(self.index[rows])
