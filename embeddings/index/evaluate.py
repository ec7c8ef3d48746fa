"""The publishing gate: recall against exact search, speed, and sanity checks of a built index.

Queries are a seeded sample of the indexed vectors themselves (the pins a related-pins request starts
from). A query's own id is dropped from both the approximate and the exact result lists, so recall@10 is
about its 10 true neighbours, not about finding itself. efSearch is swept upwards and the smallest value
that reaches the target recall is selected; queries per second are measured there with one batch of
every query on every thread (how the retrieval service and offline jobs query). Then:

* self-query rank-1 rate: each query's own id is its first result (a tie at the same score counts: two
  pins with the same vector are interchangeable);
* ``reconstruct`` round trip: the stored vector of a sample of ids, looked up by id, equals the input
  (up to the 8-bit quantizer's step for ``sq8``);
* no regression: recall at the selected efSearch is not more than ``max_recall_drop`` below the previous
  published version's.

A failed gate raises ``GateFailed`` with every figure; nothing is published.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

from embeddings.index.build import set_ef_search

log = logging.getLogger(__name__)

DEFAULT_EF_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


class GateFailed(RuntimeError):
    """The index did not pass the gate; ``result`` holds the figures."""

    def __init__(self, message: str, result: GateResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class GateConfig:
    num_queries: int = 2000
    k: int = 10
    target_recall: float = 0.95
    ef_grid: tuple[int, ...] = DEFAULT_EF_GRID
    min_qps: float = 500.0
    max_recall_drop: float = 0.02
    min_self_rank1: float = 0.99
    reconstruct_samples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_queries <= 0 or self.k <= 0:
            raise ValueError(f"num_queries and k must be positive (got {self.num_queries}, {self.k})")
        if not 0 < self.target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1] (got {self.target_recall})")
        if not self.ef_grid or list(self.ef_grid) != sorted(set(self.ef_grid)):
            raise ValueError(f"ef_grid must be increasing and non-empty (got {self.ef_grid})")


@dataclass
class GateResult:
    """Every figure of one gate run (written into the manifest and MLflow)."""

    num_queries: int
    k: int
    target_recall: float
    curve: list[dict] = field(default_factory=list)  # {"ef_search", "recall", "qps"} per swept efSearch
    ef_search: int | None = None
    recall: float | None = None
    qps: float | None = None
    self_rank1: float | None = None
    reconstruct_max_error: float | None = None
    previous_recall: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures and self.ef_search is not None

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def sample_queries(num_vectors: int, num_queries: int, seed: int) -> np.ndarray:
    """Positions of the query vectors: a seeded sample without replacement (all of them if fewer)."""
    rng = np.random.default_rng(seed)
    if num_queries >= num_vectors:
        return np.arange(num_vectors)
    return np.sort(rng.choice(num_vectors, size=num_queries, replace=False))


def exact_neighbors(unit_vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, query_ids: np.ndarray,
                    k: int) -> np.ndarray:
    """(Q, k) ids of each query's k nearest vectors by inner product, its own id excluded (brute force)."""
    flat = faiss.IndexFlatIP(unit_vectors.shape[1])
    flat.add(unit_vectors)
    _, positions = flat.search(queries, k + 1)
    return drop_self(np.where(positions >= 0, ids[np.maximum(positions, 0)], -1), query_ids, k)


def drop_self(result_ids: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """(Q, k): each row of (Q, k+1) result ids without the query's own id (or without the last column)."""
    out = np.empty((len(result_ids), k), dtype=np.int64)
    for row, (found, own) in enumerate(zip(result_ids, query_ids)):
        kept = found[found != own]
        out[row] = kept[:k] if len(kept) >= k else np.pad(kept, (0, k - len(kept)), constant_values=-1)
    return out


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approx_i ∩ exact_i| / |exact_i| (``-1`` entries ignored)."""
    hits = 0
    total = 0
    for a, e in zip(approx, exact):
        e = e[e >= 0]
        hits += len(np.intersect1d(a[a >= 0], e, assume_unique=True))
        total += len(e)
    return hits / total if total else 0.0


def timed_search(index: faiss.Index, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Search every query in one batch at ``ef_search``; returns scores, ids and queries per second."""
    set_ef_search(index, ef_search)
    start = time.perf_counter()
    scores, result_ids = index.search(queries, k)
    elapsed = time.perf_counter() - start
    return scores, result_ids, len(queries) / max(elapsed, 1e-9)


def run_gate(index: faiss.Index, ids: np.ndarray, unit_vectors: np.ndarray, config: GateConfig, *,
             previous_recall: float | None = None, reconstruct_tolerance: float = 1e-5) -> GateResult:
    """Sweep efSearch, select the smallest that reaches the target, and check the index.

    Args:
        index: built by ``build_hnsw_index`` over ``ids`` / ``unit_vectors``.
        ids: (N,) int64 in the order they were added.
        unit_vectors: (N, d) float32 unit-norm rows, as indexed.
        config: the gate's parameters.
        previous_recall: the previous published version's recall at its selected efSearch, if any.
        reconstruct_tolerance: largest allowed absolute error of a reconstructed component.

    Returns:
        The figures; ``failures`` lists each failed check (empty when the gate passed).
    """
    positions = sample_queries(len(ids), config.num_queries, config.seed)
    queries, query_ids = unit_vectors[positions], ids[positions]
    k = min(config.k, len(ids) - 1)
    result = GateResult(num_queries=len(positions), k=k, target_recall=config.target_recall,
                        previous_recall=previous_recall)
    if k <= 0:
        result.failures.append(f"an index of {len(ids)} vector(s) has no neighbours to recall")
        return result
    exact = exact_neighbors(unit_vectors, ids, queries, query_ids, k)
    first_scores = first_ids = None
    for ef in config.ef_grid:
        scores, found, qps = timed_search(index, queries, k + 1, max(ef, k + 1))
        recall = recall_at_k(drop_self(found, query_ids, k), exact)
        result.curve.append({"ef_search": int(ef), "recall": float(recall), "qps": float(qps)})
        log.info("gate: efSearch=%d recall@%d=%.4f %.0f queries/s", ef, k, recall, qps)
        if recall >= config.target_recall:
            result.ef_search, result.recall = int(ef), float(recall)
            first_scores, first_ids = scores, found
            break
    if result.ef_search is None:
        best = max(result.curve, key=lambda p: p["recall"])
        result.failures.append(
            f"recall@{k} never reached {config.target_recall} (best {best['recall']:.4f} at efSearch "
            f"{best['ef_search']}, largest tried {config.ef_grid[-1]})"
        )
        return result
    # Speed at the selected efSearch: the best of three timed batches (the first is often cold).
    result.qps = max(timed_search(index, queries, k + 1, result.ef_search)[2] for _ in range(3))
    if result.qps < config.min_qps:
        result.failures.append(f"{result.qps:.0f} queries/s at efSearch {result.ef_search} is below the floor "
                               f"{config.min_qps:.0f}")
    if previous_recall is not None and result.recall < previous_recall - config.max_recall_drop:
        result.failures.append(f"recall@{k} {result.recall:.4f} is more than {config.max_recall_drop} below the "
                               f"previous version's {previous_recall:.4f}")
    result.self_rank1 = self_rank1_rate(first_scores, first_ids, queries, query_ids)
    if result.self_rank1 < config.min_self_rank1:
        result.failures.append(f"self-query rank-1 rate {result.self_rank1:.4f} < {config.min_self_rank1}")
    result.reconstruct_max_error = reconstruct_error(index, ids, unit_vectors, config.reconstruct_samples,
                                                     config.seed)
    if not result.reconstruct_max_error <= reconstruct_tolerance:
        result.failures.append(f"reconstruct round trip differs by {result.reconstruct_max_error:.2e} "
                               f"> {reconstruct_tolerance:.0e}")
    return result


def self_rank1_rate(scores: np.ndarray, found: np.ndarray, queries: np.ndarray, query_ids: np.ndarray) -> float:
    """Share of queries whose own id is the first result, or ties with it (same score within 1e-5)."""
    own_score = np.einsum("ij,ij->i", queries, queries)  # 1 for unit vectors (SQ8 stores them approximately)
    first_is_self = found[:, 0] == query_ids
    tie = np.abs(scores[:, 0] - own_score) <= 1e-5
    return float(np.mean(first_is_self | tie))


def reconstruct_error(index: faiss.Index, ids: np.ndarray, unit_vectors: np.ndarray, num_samples: int,
                      seed: int) -> float:
    """Largest absolute difference between stored vectors looked up by id and the input vectors."""
    positions = sample_queries(len(ids), num_samples, seed + 1)
    error = 0.0
    for pos in positions:
        stored = index.reconstruct(int(ids[pos]))
        error = max(error, float(np.max(np.abs(stored - unit_vectors[pos]))))
    return error
