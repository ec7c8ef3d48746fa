"""One user's PinnerSage embeddings: Ward clusters of the engaged pins, their medoids and importances.

``user_medoids`` is the per-user function that the Spark job runs inside ``groupBy(user).applyInPandas``:
numpy/scipy only, O(m^2) time and memory in the user's distinct pins m, bounded by ``max_actions``.
Importance of a cluster is ``sum_i exp(-lam * age_days_i)`` over its actions (PinnerSage, KDD'20, 3.3;
lam = 0.01 per day was the paper's choice over 0 and 0.1). See docs/PINNERSAGE.md.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import numpy as np
from scipy.spatial.distance import pdist, squareform

from embeddings.pinnersage.clustering import (
    describe_pin_ids,
    check_alpha,
    medoid_index,
    normalize_rows,
    ward_labels_from_distances,
)

# Ward merge height cut for unit-norm embeddings (docs/PINNERSAGE.md, "Choosing alpha"): two single pins
# merge when cos >= 1 - alpha^2 / 2 = 0.5; the job tunes it on the validation slice.
DEFAULT_ALPHA: float = 1.0
DEFAULT_DECAY_PER_DAY: float = 0.01
DEFAULT_MAX_ACTIONS: int = 500
DEFAULT_TOP_K: int = 20

_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)


@dataclasses.dataclass(frozen=True)
class UserMedoids:
    """The top clusters of one user, most important first (all arrays have length K <= top_k).

    ``rank`` is 1-based; ``cluster_size`` counts distinct pins and ``num_cluster_actions`` their actions
    (a pin engaged three times counts 3 there and in ``importance``). ``num_clusters`` is the count before
    the top-k cut. ``num_actions_dropped`` actions (the oldest) were left out by the ``max_actions`` cap. ``centroid`` is
    the cluster's mean unit vector (the evaluation's centroid-instead-of-medoid ablation).
    """

    rank: np.ndarray  # (K,) int32
    medoid_pin_id: np.ndarray  # (K,) int64
    importance: np.ndarray  # (K,) float64
    cluster_size: np.ndarray  # (K,) int32
    num_cluster_actions: np.ndarray  # (K,) int32
    num_clusters: int
    num_actions: int  # actions given
    num_actions_dropped: int  # by the cap
    centroid: np.ndarray  # (K, d) float32 mean of the unit vectors of each cluster's distinct pins

    @property
    def capped(self) -> bool:
        return self.num_actions_dropped > 0


def end_of_day_us(ds: date) -> int:
    """Microseconds since the epoch (UTC) at the end of ``ds`` (= midnight starting the next day)."""
    return ((ds + timedelta(days=1)) - _EPOCH).days * _US_PER_DAY


def timestamps_us(ts: np.ndarray) -> np.ndarray:
    """(m,) int64 microseconds since the epoch, UTC, from datetime64 (any unit, UTC) or int64 microseconds."""
    ts = np.asarray(ts)
    if np.issubdtype(ts.dtype, np.datetime64):
        if np.isnat(ts).any():
            raise ValueError("ts contains NaT")
        return ts.astype("datetime64[us]").astype(np.int64)
    if np.issubdtype(ts.dtype, np.integer):
        return ts.astype(np.int64)
    raise TypeError(
        f"ts must be datetime64 (UTC) or int64 microseconds since the epoch (got dtype {ts.dtype}); for a "
        "tz-aware pandas column pass series.dt.tz_convert('UTC').dt.tz_localize(None).to_numpy()"
    )


def action_weights(ts_us: np.ndarray, ds: date, lam: float = DEFAULT_DECAY_PER_DAY) -> np.ndarray:
    """(m,) float64 ``exp(-lam * age_days)``, ages measured at the end of ``ds`` (an action at 23:59 of
    ``ds`` has age ~0; one at 00:00 of ``ds`` has age 1 day)."""
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam (importance decay per day) must be finite and >= 0 (got {lam})")
    age_days = (end_of_day_us(ds) - np.asarray(ts_us, np.int64)) / _US_PER_DAY
    return np.exp(-lam * age_days)


def cluster_importance(labels: np.ndarray, weights: np.ndarray, num_clusters: int) -> np.ndarray:
    """(C,) sum of the action weights of each cluster; ``labels`` (m,) gives each action's cluster."""
    return np.bincount(labels, weights=weights, minlength=num_clusters)


@dataclasses.dataclass(frozen=True)
class UserClusters:
    """One user's Ward clusters before they are ranked (``user_clusters``); ``top`` ranks them by importance.

    Clustering does not depend on the importance decay, so an evaluation that tries several ``lam`` clusters
    once and calls ``top`` per value. Distinct pins are in canonical order (position of each pin's most
    recent kept action); actions are the kept ones (the ``max_actions`` most recent) in canonical order.
    """

    distinct_pins: np.ndarray  # (n,) int64
    x: np.ndarray  # (n, d) unit vectors of the distinct pins
    pin_label: np.ndarray  # (n,) cluster of each distinct pin, 0..C-1
    action_label: np.ndarray  # (m,) cluster of each kept action
    ts_us: np.ndarray  # (m,) int64 time of each kept action
    distances: np.ndarray  # condensed (n choose 2,) Euclidean distances between the distinct pins
    num_actions: int  # actions given
    num_actions_dropped: int  # by the cap

    @property
    def num_clusters(self) -> int:
        return int(self.pin_label.max()) + 1

    def top(self, ds: date, lam: float = DEFAULT_DECAY_PER_DAY, top_k: int = DEFAULT_TOP_K) -> UserMedoids:
        """The ``top_k`` clusters by importance ``sum exp(-lam * age_days)`` (ages at the end of ``ds``),
        with their medoids; ties go to the cluster holding the more recent pin."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 (got {top_k})")
        num_clusters = self.num_clusters
        importance = cluster_importance(self.action_label, action_weights(self.ts_us, ds, lam), num_clusters)
        size = np.bincount(self.pin_label, minlength=num_clusters)
        cluster_actions = np.bincount(self.action_label, minlength=num_clusters)
        top = np.lexsort((np.arange(num_clusters), -importance))[:top_k]
        n = len(self.distinct_pins)
        squared = squareform(self.distances) ** 2 if n > 1 else np.zeros((1, 1))
        medoids = np.empty(len(top), np.int64)
        centroids = np.empty((len(top), self.x.shape[1]), np.float32)
        for i, c in enumerate(top):
            members = np.flatnonzero(self.pin_label == c)  # canonical order: ties go to the most recent pin
            medoids[i] = self.distinct_pins[members[medoid_index(squared[np.ix_(members, members)])]]
            centroids[i] = self.x[members].mean(axis=0)
        return UserMedoids(
            rank=np.arange(1, len(top) + 1, dtype=np.int32),
            medoid_pin_id=medoids,
            importance=importance[top],
            cluster_size=size[top].astype(np.int32),
            num_cluster_actions=cluster_actions[top].astype(np.int32),
            num_clusters=num_clusters,
            num_actions=self.num_actions,
            num_actions_dropped=self.num_actions_dropped,
            centroid=centroids,
        )


def user_medoids(
    pin_ids: np.ndarray,
    ts: np.ndarray,
    vectors: np.ndarray,
    ds: date,
    alpha: float = DEFAULT_ALPHA,
    lam: float = DEFAULT_DECAY_PER_DAY,
    max_actions: int = DEFAULT_MAX_ACTIONS,
    top_k: int = DEFAULT_TOP_K,
) -> UserMedoids:
    """PinnerSage for one user: cluster the engaged pins, keep the top-k medoids by importance.

    Rows are put in a canonical order first (``ts`` descending, then ``pin_id`` ascending), so the result
    does not depend on the input row order. The most recent ``max_actions`` actions in that order are kept.
    A pin engaged several times is clustered once (at its most recent action's place in the order) and
    every one of its kept actions adds to its cluster's importance.

    Args:
        pin_ids: (m,) int64 engaged pins, m >= 1 (repeats allowed: one row per action).
        ts: (m,) action times, datetime64 (UTC) or int64 microseconds since the epoch; all before the end
            of ``ds``.
        vectors: (m, d) embedding of each row's pin (rows of a repeated pin must be identical); rows are
            L2-normalized here.
        ds: the partition date; ages are measured at the end of this UTC day.
        alpha: Ward distance threshold (``DEFAULT_ALPHA``).
        lam: importance decay per day of age.
        max_actions: cap on the actions used, most recent first (Ward is O(m^2) in time and memory).
        top_k: clusters kept, most important first.

    Returns:
        ``UserMedoids``; importance ties are broken by the cluster holding the more recent pin.

    Raises:
        ValueError: mismatched lengths, no actions, NaN/Inf/zero-norm vectors, actions after ``ds``, or a
            repeated pin with differing vectors (each names the offending pin ids); bad parameters.
    """
    if max_actions < 1 or top_k < 1:
        raise ValueError(f"max_actions and top_k must be >= 1 (got {max_actions}, {top_k})")
    return user_clusters(pin_ids, ts, vectors, ds, alpha, max_actions).top(ds, lam, top_k)


def user_clusters(
    pin_ids: np.ndarray,
    ts: np.ndarray,
    vectors: np.ndarray,
    ds: date,
    alpha: float = DEFAULT_ALPHA,
    max_actions: int = DEFAULT_MAX_ACTIONS,
) -> UserClusters:
    """The clustering half of ``user_medoids`` (same arguments, same checks, same canonical order)."""
    pin_ids = np.asarray(pin_ids)
    if pin_ids.ndim != 1 or not np.issubdtype(pin_ids.dtype, np.integer):
        raise ValueError(f"pin_ids must be a 1-D integer array (got shape {pin_ids.shape}, dtype {pin_ids.dtype})")
    pin_ids = pin_ids.astype(np.int64)
    ts_us = timestamps_us(ts)
    num_actions = len(pin_ids)
    if num_actions == 0:
        raise ValueError("user has no actions; the caller must skip users without engagements")
    if len(ts_us) != num_actions or np.shape(vectors)[0] != num_actions:
        raise ValueError(f"{num_actions} pin ids, {len(ts_us)} timestamps and {np.shape(vectors)[0]} vectors")
    if max_actions < 1:
        raise ValueError(f"max_actions must be >= 1 (got {max_actions})")
    check_alpha(alpha)
    future = ts_us >= end_of_day_us(ds)
    if future.any():
        raise ValueError(f"actions on pins {describe_pin_ids(np.unique(pin_ids[future]))} are after ds={ds}")

    x_all = normalize_rows(vectors, pin_ids)  # (m, d): every row is checked, kept by the cap or not

    # canonical order: most recent first, then smaller pin id; the cap keeps the head
    order = np.lexsort((pin_ids, -ts_us))[:max_actions]
    pins, ts_us = pin_ids[order], ts_us[order]
    x_actions = x_all[order]

    # distinct pins in canonical order (position of each pin's most recent action)
    _, first_row, action_to_pin = np.unique(pins, return_index=True, return_inverse=True)
    pin_order = np.argsort(first_row, kind="stable")
    pin_rank = np.empty_like(pin_order)
    pin_rank[pin_order] = np.arange(len(pin_order))
    action_to_pin = pin_rank[action_to_pin.reshape(-1)]  # (m,) index into the distinct pins
    pin_rows = first_row[pin_order]  # (n,) action row of each distinct pin
    distinct_pins = pins[pin_rows]
    x = x_actions[pin_rows]  # (n, d)
    differs = ~(x_actions == x[action_to_pin]).all(axis=1)
    if differs.any():
        raise ValueError(f"pins {describe_pin_ids(np.unique(pins[differs]))} have differing vectors across their actions")

    n = len(distinct_pins)
    distances = pdist(x, "euclidean") if n > 1 else np.zeros(0)
    pin_label = ward_labels_from_distances(distances, n, alpha)  # (n,)
    return UserClusters(distinct_pins=distinct_pins, x=x, pin_label=pin_label, action_label=pin_label[action_to_pin],
                        ts_us=ts_us, distances=distances, num_actions=num_actions,
                        num_actions_dropped=num_actions - len(order))
