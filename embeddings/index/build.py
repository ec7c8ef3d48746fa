"""Build an HNSW index over one embedding space: validate, L2-normalize, add in large batches.

The published index is ``IndexIDMap2(IndexHNSWFlat(d, M, inner product))``: cosine similarity on
L2-normalized vectors, searched and reconstructed by the pins' own int64 ids. For large corpora the
``sq8`` variant stores each component as one byte (``IndexHNSWSQ``, 8-bit scalar quantizer): about a
quarter of the vector memory, at some recall per efSearch.

faiss parallelizes ``add`` over the vectors of one call with OpenMP, so vectors go in batches of
``add_batch`` (default 100k): large enough for every core, small enough to log progress with a rate.

Node order: the vectors are added in the order they come (for the lake, pin-id order, which says nothing
about where a pin sits in the graph), so a search hops between nodes scattered over the whole vector and
link arrays and most hops miss the CPU caches. After the build the nodes are renumbered in the reverse
Cuthill-McKee order of the level-0 graph (``reorder="rcm"``, the default; Coleman et al., "Graph
Reordering for Cache-Efficient Near Neighbor Search", 2021): graph neighbours get nearby positions, so
their vectors and links share cache lines and pages. The graph, the ids and every search result are
unchanged; on the 1M-pin benchmark it gives about 1.2x the queries per second (docs/INDEX.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import faiss
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

log = logging.getLogger(__name__)

VARIANTS = ("flat", "sq8")
REORDERS = ("rcm", "none")
_NAMED = 5  # ids named in an error


class IndexInputError(ValueError):
    """The vectors of an embedding space cannot be indexed (NaN/Inf, zero norm, duplicate ids, count)."""


@dataclass(frozen=True)
class IndexConfig:
    """How the HNSW graph is built. ``m``: links per node (2*m at level 0); ``ef_construction``: the beam
    width while inserting; ``variant``: ``flat`` (float32 vectors) or ``sq8`` (8-bit scalar quantizer);
    ``reorder``: ``rcm`` renumbers the nodes for cache locality after the build (see the module doc),
    ``none`` keeps the insertion order."""

    m: int = 32
    ef_construction: int = 200
    variant: str = "flat"
    add_batch: int = 100_000
    reorder: str = "rcm"

    def __post_init__(self) -> None:
        if self.m < 2:
            raise ValueError(f"m must be at least 2 (got {self.m})")
        if self.ef_construction < self.m:
            raise ValueError(f"ef_construction must be at least m={self.m} (got {self.ef_construction})")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS} (got {self.variant!r})")
        if self.reorder not in REORDERS:
            raise ValueError(f"reorder must be one of {REORDERS} (got {self.reorder!r})")
        if self.add_batch <= 0:
            raise ValueError(f"add_batch must be positive (got {self.add_batch})")


def validate_vectors(ids: np.ndarray, vectors: np.ndarray, what: str, *, previous_count: int | None = None,
                     count_tolerance: float = 0.25) -> None:
    """Refuse vectors that would make a broken index.

    Args:
        ids: (N,) int64 pin ids.
        vectors: (N, d) float32.
        what: the input named in errors, e.g. ``"pin_embeddings ds=2026-11-01"``.
        previous_count: the vector count of the previously published version, if any.
        count_tolerance: the count may differ from ``previous_count`` by at most this share of it.

    Raises:
        IndexInputError: empty input, a shape mismatch, NaN/Inf, zero-norm vectors, duplicate ids, or a
            count outside the tolerance; the message names the input and the first offending ids.
    """
    if vectors.ndim != 2 or ids.ndim != 1 or len(ids) != len(vectors):
        raise IndexInputError(f"{what}: expected (N,) ids and (N, d) vectors, got {ids.shape} and {vectors.shape}")
    if len(ids) == 0 or vectors.shape[1] == 0:
        raise IndexInputError(f"{what} has no vectors; refusing to publish an empty index")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = ids[~finite]
        raise IndexInputError(f"{what}: {len(bad)} vectors have NaN/Inf values (pin ids {bad[:_NAMED].tolist()})")
    norms = np.linalg.norm(vectors, axis=1)
    zero = norms <= 1e-12
    if zero.any():
        bad = ids[zero]
        raise IndexInputError(f"{what}: {len(bad)} vectors have zero norm (pin ids {bad[:_NAMED].tolist()})")
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        dup = unique[counts > 1]
        raise IndexInputError(f"{what}: {len(dup)} pin ids occur more than once ({dup[:_NAMED].tolist()})")
    if previous_count:
        change = abs(len(ids) - previous_count) / previous_count
        if change > count_tolerance:
            raise IndexInputError(
                f"{what} has {len(ids):,} vectors against {previous_count:,} in the published version "
                f"({change:.0%} change > tolerance {count_tolerance:.0%}); refusing to publish "
                "(raise --count-tolerance if the corpus really changed)"
            )


def normalize(vectors: np.ndarray) -> np.ndarray:
    """(N, d) float32, C-contiguous, each row scaled to unit L2 norm (a copy)."""
    out = np.array(vectors, dtype=np.float32, order="C", copy=True)
    faiss.normalize_L2(out)
    return out


def new_index(dim: int, config: IndexConfig) -> faiss.IndexIDMap2:
    """An empty ``IndexIDMap2`` over HNSW with inner product (flat or SQ8 storage)."""
    if config.variant == "flat":
        hnsw = faiss.IndexHNSWFlat(dim, config.m, faiss.METRIC_INNER_PRODUCT)
    else:
        hnsw = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, config.m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = config.ef_construction
    return faiss.IndexIDMap2(hnsw)


def hnsw_of(index: faiss.Index) -> faiss.IndexHNSW:
    """The HNSW index inside an ``IndexIDMap2`` (for ``efSearch`` and graph statistics)."""
    return faiss.downcast_index(faiss.downcast_index(index).index)


def stored_mean(index: faiss.Index, chunk: int = 65_536) -> np.ndarray:
    """(d,) float64 mean of the vectors stored in an ``IndexIDMap2(HNSW)`` (decoded, for SQ8), read in chunks of
    ``chunk`` so a large index is never copied whole; zeros for an empty index."""
    hnsw = hnsw_of(index)
    total = np.zeros(hnsw.d, np.float64)
    for start in range(0, hnsw.ntotal, chunk):
        total += hnsw.reconstruct_n(start, min(chunk, hnsw.ntotal - start)).sum(axis=0, dtype=np.float64)
    return total / max(hnsw.ntotal, 1)


def set_ef_search(index: faiss.Index, ef_search: int) -> None:
    hnsw_of(index).hnsw.efSearch = int(ef_search)


def build_hnsw_index(ids: np.ndarray, unit_vectors: np.ndarray, config: IndexConfig,
                     what: str = "vectors") -> faiss.IndexIDMap2:
    """Build the index over already validated, unit-norm vectors.

    Args:
        ids: (N,) int64 external ids (the pins' ids).
        unit_vectors: (N, d) float32 C-contiguous unit-norm rows.
        config: graph parameters and variant.
        what: named in the progress log lines.

    Returns:
        The filled index; its ``efSearch`` is left at faiss' default until the gate selects one.
    """
    n, dim = unit_vectors.shape
    index = new_index(dim, config)
    if config.variant == "sq8":
        # The scalar quantizer learns each component's range; a sample of 100k rows is plenty.
        sample = unit_vectors[:: max(1, n // 100_000)]
        index.train(sample)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    start = time.perf_counter()
    for lo in range(0, n, config.add_batch):
        hi = min(n, lo + config.add_batch)
        index.add_with_ids(unit_vectors[lo:hi], ids[lo:hi])
        elapsed = time.perf_counter() - start
        rate = hi / elapsed if elapsed > 0 else float("inf")
        log.info("%s: added %d/%d vectors (%.0f/s, ETA %.0f s)", what, hi, n, rate, (n - hi) / rate)
    if config.reorder == "rcm":
        start = time.perf_counter()
        reorder_for_locality(index)
        log.info("%s: nodes renumbered in reverse Cuthill-McKee order in %.1f s", what, time.perf_counter() - start)
    return index


def level0_graph(graph: faiss.HNSW) -> sp.csr_matrix:
    """(N, N) symmetric 0/1 adjacency of the HNSW graph's level 0 (every node's up to 2*m links)."""
    neighbors = faiss.vector_to_array(graph.neighbors)
    offsets = faiss.vector_to_array(graph.offsets).astype(np.int64)
    n, width = len(offsets) - 1, graph.nb_neighbors(0)
    links = neighbors[offsets[:-1, None] + np.arange(width)]  # level 0 comes first in a node's range
    rows = np.repeat(np.arange(n, dtype=np.int32), width)
    cols = links.ravel()
    keep = cols >= 0  # -1 pads a node with fewer links
    adjacency = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.int8), (rows[keep], cols[keep])), shape=(n, n))
    return (adjacency + adjacency.T).tocsr()


def locality_order(graph: faiss.HNSW) -> np.ndarray:
    """(N,) int64 new position -> old position: reverse Cuthill-McKee order of the level-0 graph."""
    return reverse_cuthill_mckee(level0_graph(graph), symmetric_mode=True).astype(np.int64)


def reorder_for_locality(index: faiss.IndexIDMap2) -> None:
    """Renumber the nodes of a built index in place (``locality_order``); ids and search results unchanged.

    ``IndexHNSW.permute_entries`` moves the vectors and the graph together; the id map follows the same
    permutation, and its reverse map (id -> position) is rebuilt.
    """
    inner = hnsw_of(index)
    if inner.ntotal == 0:
        return
    order = locality_order(inner.hnsw)
    inner.permute_entries(order)
    id_map = faiss.downcast_index(index)
    ids = faiss.vector_to_array(id_map.id_map)[order]
    faiss.copy_array_to_vector(np.ascontiguousarray(ids, dtype=np.int64), id_map.id_map)
    id_map.construct_rev_map()


def expected_memory_bytes(num_vectors: int, dim: int, m: int, bytes_per_component: int = 4) -> float:
    """The issue's estimate of an index's resident memory: vectors, graph links at level 0 (2*m int32)
    and above (about 10% more), and the id map (16 bytes a vector): ``n * (4d + 8m) * 1.1 + 16n``."""
    return num_vectors * (bytes_per_component * dim + 8 * m) * 1.1 + 16 * num_vectors
