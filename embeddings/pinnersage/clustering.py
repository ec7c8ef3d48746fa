"""Ward clustering of one user's engaged pin embeddings, and the medoid of a cluster (PinnerSage, KDD'20, 3.2).

Pins are points on the unit sphere (rows are L2-normalized here) and distances are Euclidean, so for two
single pins ``||a - b|| = sqrt(2 - 2 cos(a, b))``. Ward's merge height of clusters A and B is scipy's
``sqrt(2 |A| |B| / (|A| + |B|)) * ||mean(A) - mean(B)||`` (equal to ``||a - b||`` for two single pins);
the dendrogram is cut at a distance threshold ``alpha`` (every merge of height ``<= alpha`` is made), not at
a fixed number of clusters, so heavy users with many topics get many clusters.

Determinism: given the rows in a fixed order, scipy's NN-chain Ward is deterministic, and exact ties
between merge costs are resolved by that order. Labels are renumbered by first appearance in the row
order (label 0 is the cluster of row 0), so they never depend on scipy's internal numbering. Callers that
want output independent of their input order sort the rows canonically first; ``user_medoids`` does
(most recent action first, then smaller pin id).
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform

# Costs of medoid candidates within this much (squared unit-sphere distance, summed) are ties: rounding
# in the pairwise sums must not decide between members that are equally central.
MEDOID_TIE_TOLERANCE: float = 1e-9

_MAX_NAMED = 10


def describe_pin_ids(ids: np.ndarray) -> str:
    """``[id, id, ...]`` with at most 10 ids named, for error messages."""
    shown = ", ".join(str(int(i)) for i in ids[:_MAX_NAMED])
    more = f" and {len(ids) - _MAX_NAMED} more" if len(ids) > _MAX_NAMED else ""
    return f"[{shown}{more}]"


def normalize_rows(vectors: np.ndarray, pin_ids: np.ndarray | None = None) -> np.ndarray:
    """L2-normalize rows after checking they are finite and non-zero.

    Args:
        vectors: (n, d) embeddings, any float dtype.
        pin_ids: (n,) ids used in error messages; row indices when ``None``.

    Returns:
        (n, d) float64 unit rows.

    Raises:
        ValueError: not 2-D, no rows, or rows with NaN/Inf or zero norm (the message names their pin ids).
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"vectors must be a non-empty (n, d) array (got shape {x.shape})")
    ids = np.arange(x.shape[0]) if pin_ids is None else np.asarray(pin_ids)
    if len(ids) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} vectors but {len(ids)} pin ids")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise ValueError(f"embeddings of pins {describe_pin_ids(np.unique(ids[~finite]))} contain NaN or Inf")
    norms = np.linalg.norm(x, axis=1)
    if (norms == 0).any():
        raise ValueError(f"embeddings of pins {describe_pin_ids(np.unique(ids[norms == 0]))} have zero norm")
    return x / norms[:, None]


def relabel_by_first_appearance(raw_labels: np.ndarray) -> np.ndarray:
    """(n,) int64 labels 0..C-1 numbered by the first row of each cluster (row 0 is in cluster 0)."""
    _, first_row, inverse = np.unique(raw_labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first_row), np.int64)
    rank[np.argsort(first_row, kind="stable")] = np.arange(len(first_row))
    return rank[inverse.reshape(-1)]


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float; raises ValueError unless it is finite and >= 0."""
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha (Ward distance threshold) must be finite and >= 0 (got {alpha})")
    return alpha


def ward_labels_from_distances(distances: np.ndarray, num_points: int, alpha: float) -> np.ndarray:
    """Ward on a condensed Euclidean distance vector, cut at ``alpha``.

    Args:
        distances: (n (n - 1) / 2,) condensed Euclidean distances (``scipy.spatial.distance.pdist``).
        num_points: n >= 1.
        alpha: merge height threshold (merges with height <= alpha are made).

    Returns:
        (n,) int64 labels, numbered by first appearance.
    """
    if num_points == 1:
        return np.zeros(1, np.int64)
    tree = linkage(distances, method="ward")
    return relabel_by_first_appearance(fcluster(tree, t=check_alpha(alpha), criterion="distance"))


def ward_clusters(vectors: np.ndarray, alpha: float, pin_ids: np.ndarray | None = None) -> np.ndarray:
    """Ward agglomerative clustering of one user's pins, cut at distance threshold ``alpha``.

    Args:
        vectors: (n, d) pin embeddings, n >= 1; rows are L2-normalized here (Euclidean on the unit sphere).
        alpha: Ward merge-height threshold, >= 0 (``DEFAULT_ALPHA`` in ``embeddings.pinnersage.medoids``).
        pin_ids: (n,) ids named in error messages (row indices when ``None``).

    Returns:
        (n,) int64 labels 0..C-1 numbered by first appearance in the row order. Identical vectors always
        share a cluster (they merge at height 0); one row gives one cluster.

    Raises:
        ValueError: bad ``alpha``, or NaN/Inf/zero-norm rows (naming their pin ids).
    """
    check_alpha(alpha)
    x = normalize_rows(vectors, pin_ids)
    if x.shape[0] == 1:
        return np.zeros(1, np.int64)
    return ward_labels_from_distances(pdist(x, "euclidean"), x.shape[0], alpha)


def medoid_index(squared_distances: np.ndarray) -> int:
    """Row of the member minimizing the sum of squared distances to the others.

    Args:
        squared_distances: (n, n) symmetric squared distances among one cluster's members, n >= 1.

    Returns:
        index in 0..n-1; costs within ``MEDOID_TIE_TOLERANCE`` of the minimum tie, and the earliest row
        among them wins (``user_medoids`` orders rows most recent first, so the most recent pin wins).
    """
    cost = squared_distances.sum(axis=1)
    return int(np.flatnonzero(cost <= cost.min() + MEDOID_TIE_TOLERANCE)[0])


def medoid(vectors: np.ndarray, pin_ids: np.ndarray | None = None) -> int:
    """Medoid of one cluster: the member with the least sum of squared distances to the other members.

    Args:
        vectors: (n, d) embeddings of the cluster's pins, n >= 1; rows are L2-normalized here.
        pin_ids: (n,) ids named in error messages.

    Returns:
        the medoid's row index (a real member, never a centroid); ties go to the earliest row.
    """
    x = normalize_rows(vectors, pin_ids)
    if x.shape[0] == 1:
        return 0
    # squared after the Euclidean pdist, exactly as user_medoids does, so both pick the same member
    return medoid_index(squareform(pdist(x, "euclidean")) ** 2)
