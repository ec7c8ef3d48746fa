"""PinnerSage's offline evaluation: several vectors per user against single-vector users, one ranking code.

Task (docs/EVALUATION.md, ``user future window``; docs/PINNERSAGE.md, "Evaluation"): for each user with
new positives in a held-out slice, every pin is ranked by the user's representation with the history
(everything before the slice) masked; ``recall@K`` over all new pins of the slice (``mode="next"``: the
first one only). Every method is a set of query vectors per user (``UserVectors``) scored by
``MultiVectorScorer`` and ranked by ``evaluate_users``, so methods differ only in their vectors:

* **PinnerSage** (``pinnersage_vectors``): ``user_medoids`` on the user's history, the top 3 medoids by
  importance (deterministic, the paper samples 3 by importance online); an item scores its best cosine to
  any of them (``blend="max"``: the merged nearest-neighbour lists) or the importance-weighted sum
  (``blend="sum"``).
* **Centroid ablation** (``representative="centroid"``): the same clusters, each represented by the mean of
  its members' unit vectors instead of its medoid.
* **Last pin** (``last_pin_vectors``): the embedding of the user's most recent history pin.
* **Time-decayed average** (``decayed_average_vectors``): ``sum_i exp(-lam * age_i) unit(x_i)`` over the
  actions.
* **k-means with fixed k** (``kmeans_vectors``): sklearn ``KMeans`` (seeded) on the distinct history pins,
  the top 3 centroids by the same importance.

Ward's alpha, k-means' k and every method's importance decay ``lam`` (the evaluator's ``lams``, e.g.
``LAM_GRID``) are chosen on the validation slice (``tune_on_validation``) and the test slice is scored once
with the choice (as ``embeddings.pinsage.evaluation.Evaluator._run``). On synthetic data
``topic_entropy`` gives the diversity of each user's top 50 (entropy of the planted topics, bits) and
``clusters_vs_interests`` the Spearman correlation of clusters per user with planted interests.
``paired_comparison`` bootstraps the per-user difference of the 3 medoids and each single-embedding
baseline (overall and per group, e.g. per planted number of interests), and ``top_topic_coverage`` is the
share of a user's targets in their own 3 most frequent topics: the most 3 single-topic queries could cover.

Importance ages are measured at the end of the UTC day of the user's last history action: shifting the
reference time scales all of one user's weights by the same factor, which changes neither the order of
their clusters nor the direction of their weighted vectors, so any reference gives the same rankings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import spearmanr

from embeddings.data.engagement import TEST, VALID
from embeddings.eval.baselines import tune_on_validation
from embeddings.eval.bootstrap import paired_bootstrap, paired_values
from embeddings.eval.metrics import RankingMetrics, top_k
from embeddings.eval.protocols import (
    MODES,
    USER_NEXT,
    USER_WINDOW,
    Protocol,
    Sequences,
    UserTargets,
    evaluate_users,
    evaluation_table,
    user_targets,
)
from embeddings.eval.scorers import BLENDS, MultiVectorScorer, unit_rows
from embeddings.pinnersage.clustering import normalize_rows
from embeddings.pinnersage.medoids import (
    DEFAULT_DECAY_PER_DAY,
    DEFAULT_MAX_ACTIONS,
    UserClusters,
    action_weights,
    cluster_importance,
    timestamps_us,
    user_clusters,
)
from embeddings.pinnersage.retrieval import InterleavedScorer, mean_direction, pull_queries

log = logging.getLogger(__name__)

SLICES = {"valid": VALID, "test": TEST}
# 0.2 .. 1.6: on the 90-day synthetic world recall@50 chose the grid's lowest alpha when it started at 0.6
# (2026-12-01) and at 0.4 (2026-12-04); at 0.2 two pins merge only at cos >= 0.98, nearly one pin per cluster
ALPHA_GRID: tuple[float, ...] = tuple(round(0.2 + 0.1 * i, 1) for i in range(15))
KMEANS_KS: tuple[int, ...] = (2, 3, 5, 8)
# Importance decay per day tried on VALID by every method that weighs actions by age (PinnerSage's top-3
# choice, the decayed average, k-means' top 3): none, the paper's 0.01 (the job's default), and faster ones
# (half-lives of 7 days, 2.3 days, 17 hours); with drifting interests a faster decay keeps today's in the top 3.
LAM_GRID: tuple[float, ...] = (0.0, 0.01, 0.1, 0.3, 1.0)
# Pull of every method's queries toward the corpus direction (retrieval.pull_queries), tried on VALID by every
# method alike: none, and two strengths. On the 90-day world's VALID slice (2026-12-05) the medoids peaked
# near 0.7, the centroids near 0.5, the last pin near 0.7, and the decayed average, already leaning that way,
# at 0 (docs/PINNERSAGE.md, "Why the average led").
PULL_GRID: tuple[float, ...] = (0.0, 0.35, 0.7)
EVAL_KS: tuple[int, ...] = (10, 50, 100)
TUNING_METRIC = "recall@50"  # the bar (held-out recall@50)
NUM_QUERY_VECTORS = 3  # medoids (or centroids) a user retrieves with (PinnerSage, KDD'20, 4.1)
DIVERSITY_K = 50
REPRESENTATIVES = ("medoid", "centroid")
# How a user's vectors are blended into one ranking: "max" / "sum" (MultiVectorScorer: best cosine, or the
# importance-weighted sum of cosines) or one candidate list per vector, interleaved with shares
# proportional to importance ("interleave", PinnerSage's retrieval in expectation) or equal ("round_robin");
# see embeddings.pinnersage.retrieval.
PINNERSAGE_BLENDS = (*BLENDS, "interleave", "round_robin")
DEFAULT_BLEND = "interleave"

_US_PER_DAY = 86_400_000_000


# ---- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserHistory:
    """Per-user engaged pins with their times, oldest first (ties: smaller pin row first), CSR layout.

    User ``u`` owns ``items[ptr[u]:ptr[u+1]]`` and ``ts_us[ptr[u]:ptr[u+1]]``; one row per action (a pin
    engaged twice appears twice), the same order as ``Sequences.from_events``.

    Attributes:
        ptr: (U+1,) int64 offsets.
        items: (E,) int64 pin rows in ``[0, num_items)``.
        ts_us: (E,) int64 microseconds since the epoch, UTC.
        num_items: N.
    """

    ptr: np.ndarray
    items: np.ndarray
    ts_us: np.ndarray
    num_items: int

    def __post_init__(self) -> None:
        for name in ("ptr", "items", "ts_us"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        if self.ptr.ndim != 1 or len(self.ptr) == 0 or self.ptr[0] != 0 or self.ptr[-1] != len(self.items):
            raise ValueError(f"history ptr must run from 0 to len(items)={len(self.items)}")
        if self.ts_us.shape != self.items.shape:
            raise ValueError(f"history has {len(self.items)} items but {len(self.ts_us)} timestamps")
        if len(self.items) and (self.items.min() < 0 or self.items.max() >= self.num_items):
            raise ValueError(f"history pin rows must lie in [0, {self.num_items})")

    @property
    def num_users(self) -> int:
        return len(self.ptr) - 1

    @classmethod
    def from_events(cls, users: np.ndarray, items: np.ndarray, ts: np.ndarray, num_users: int,
                    num_items: int) -> UserHistory:
        """Group events by user, oldest first (ties: smaller pin row), as ``Sequences.from_events``.

        Args:
            users: (E,) user rows in ``[0, num_users)``.
            items: (E,) pin rows.
            ts: (E,) datetime64 (UTC) or int64 microseconds since the epoch.
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ts_us = timestamps_us(ts)
        if not (users.shape == items.shape == ts_us.shape) or users.ndim != 1:
            raise ValueError(f"users, items and ts must be equal-length 1-D arrays, got {users.shape}, "
                             f"{items.shape}, {ts_us.shape}")
        if len(users) and (users.min() < 0 or users.max() >= num_users):
            raise ValueError(f"user rows must lie in [0, {num_users})")
        order = np.lexsort((items, ts_us, users))
        counts = np.bincount(users, minlength=num_users)
        return cls(np.concatenate([[0], np.cumsum(counts)]), items[order], ts_us[order], int(num_items))

    def user(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """``(items (m,), ts_us (m,))`` of user ``u``, oldest first."""
        start, end = self.ptr[u], self.ptr[u + 1]
        return self.items[start:end], self.ts_us[start:end]

    def sequences(self) -> Sequences:
        """The same history without times (for masking: ``Sequences.matrix``)."""
        return Sequences(self.ptr, self.items, self.num_items)


@dataclass(frozen=True)
class EvalSlice:
    """One evaluated slice: the history before it (with times), the targets, the protocol."""

    history: UserHistory
    targets: UserTargets
    protocol: Protocol

    def users(self) -> np.ndarray:
        """(R,) rows of the users with at least one target, ascending (the evaluated users)."""
        return np.flatnonzero(np.diff(self.targets.targets.indptr) > 0).astype(np.int64)


@dataclass(frozen=True)
class EvaluationData:
    """Labelled positive engagements (TRAIN / VALID / TEST) over the pins of one embedding table.

    Attributes:
        num_items: N (pins are rows ``0..N-1`` of ``pin_vectors``).
        users, items, ts, labels: (E,) positive events: user row, pin row, time (datetime64 UTC or int64
            microseconds), label (``TimeSplit.assign`` or ``split_per_user``).
        split: slice name (``"valid"``, ``"test"``) -> how the labels were made (goes into the protocol).
        mode: ``"window"`` (every new pin of the slice is a target) or ``"next"`` (the first one).
        max_users: users scored per slice at most (a seeded sample of those with a target), 0 = all.
        seed: seeds the sample.
    """

    num_items: int
    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    labels: np.ndarray
    split: Mapping[str, str]
    mode: str = "window"
    max_users: int = 2000
    seed: int = 0
    num_users: int = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        lengths = {len(np.asarray(a)) for a in (self.users, self.items, self.ts, self.labels)}
        if len(lengths) != 1:
            raise ValueError(f"users, items, ts and labels must have one entry per event (got lengths "
                             f"{len(self.users)}, {len(self.items)}, {len(self.ts)}, {len(self.labels)})")
        for name in SLICES:
            if name not in self.split:
                raise ValueError(f"evaluation data needs a split description for slice {name!r}")
        users = np.asarray(self.users, dtype=np.int64)
        object.__setattr__(self, "num_users", int(users.max()) + 1 if len(users) else 0)

    def slice(self, slice_name: str) -> EvalSlice:
        """History before ``slice_name`` (train for valid; train + valid for test) and its targets."""
        if slice_name not in SLICES:
            raise ValueError(f"slice must be one of {sorted(SLICES)}, got {slice_name!r}")
        label = SLICES[slice_name]
        data = user_targets(self.users, self.items, self.ts, self.labels, target_label=label,
                            num_users=self.num_users, num_items=self.num_items, mode=self.mode)
        before = np.asarray(self.labels) < label
        history = UserHistory.from_events(np.asarray(self.users)[before], np.asarray(self.items)[before],
                                          np.asarray(self.ts)[before], self.num_users, self.num_items)
        assert np.array_equal(history.items, data.history.items), "history order differs from Sequences'"
        targets = data.targets
        with_target = np.flatnonzero(np.diff(targets.indptr) > 0)
        if self.max_users and len(with_target) > self.max_users:
            keep = np.sort(np.random.default_rng(self.seed).choice(with_target, self.max_users, replace=False))
            mask = np.zeros(self.num_users)
            mask[keep] = 1.0
            targets = sp.csr_matrix(sp.diags(mask) @ targets)
            targets.eliminate_zeros()
        task = USER_WINDOW if self.mode == "window" else USER_NEXT
        protocol = Protocol(task=task, split=self.split[slice_name], masking="history masked")
        return EvalSlice(history, UserTargets(history.sequences(), sp.csr_matrix(targets)), protocol)


# ---- settings tuned on validation ---------------------------------------------------------------


def _pull_text(pull: float) -> str:
    return f" pull={pull:g}" if pull else ""


class WardSetting(NamedTuple):
    """PinnerSage's (and the centroid ablation's) setting: Ward's threshold, the importance decay and the
    pull of the queries toward the corpus direction (``retrieval.pull_queries``; 0: none)."""

    alpha: float
    lam: float
    pull: float = 0.0

    def __repr__(self) -> str:
        return f"alpha={self.alpha:g} lam={self.lam:g}" + _pull_text(self.pull)


class KMeansSetting(NamedTuple):
    """The k-means baseline's setting: the fixed k, the importance decay of its top 3 and the pull."""

    k: int
    lam: float
    pull: float = 0.0

    def __repr__(self) -> str:
        return f"k={self.k} lam={self.lam:g}" + _pull_text(self.pull)


class DecaySetting(NamedTuple):
    """The time-decayed average's setting: its decay per day and the pull."""

    lam: float
    pull: float = 0.0

    def __repr__(self) -> str:
        return f"lam={self.lam:g}" + _pull_text(self.pull)


class LastPinSetting(NamedTuple):
    """The last pin's setting: only the pull."""

    pull: float = 0.0

    def __repr__(self) -> str:
        return "last pin" + _pull_text(self.pull)


# ---- user representations ----------------------------------------------------------------------


@dataclass(frozen=True)
class UserVectors:
    """Query vectors per user (CSR layout): user ``u`` owns ``vectors[ptr[u]:ptr[u+1]]``.

    Attributes:
        ptr: (U+1,) int64 offsets; a user without vectors scores -inf everywhere (targets rank last).
        vectors: (V, d) float32 query vectors (medoid embeddings, centroids, averages, ...).
        weights: (V,) float64 importance of each vector, summing to 1 per user (used by ``blend="sum"``).
        num_clusters: (U,) int64 clusters found per user before the top-3 cut (1 for single-vector
            methods, 0 for users not represented).
    """

    ptr: np.ndarray
    vectors: np.ndarray
    weights: np.ndarray
    num_clusters: np.ndarray

    def pulled(self, direction: np.ndarray, pull: float) -> UserVectors:
        """The same users with every vector pulled toward ``direction`` (``retrieval.pull_queries``)."""
        if pull == 0 or not len(self.vectors):
            return self
        return dataclasses.replace(self, vectors=pull_queries(self.vectors, direction, pull))

    def scorer(self, pin_vectors: np.ndarray, blend: str = "max", *, seen: sp.csr_matrix | None = None,
               depth: int = max(EVAL_KS)) -> MultiVectorScorer | InterleavedScorer:
        """Every pin (``pin_vectors`` (N, d)) scored for each user by the user's vectors, blended.

        ``"max"`` / ``"sum"``: per-pin blend of cosines (``MultiVectorScorer``). ``"interleave"`` /
        ``"round_robin"``: the ``depth`` nearest pins of each vector (``seen`` (U, N), the history, left
        out) merged with shares proportional to the weights / equal (``InterleavedScorer``).
        """
        if blend not in PINNERSAGE_BLENDS:
            raise ValueError(f"blend must be one of {PINNERSAGE_BLENDS}, got {blend!r}")
        if blend in BLENDS:
            return MultiVectorScorer(pin_vectors, self.ptr, np.arange(len(self.vectors)), blend=blend,
                                     weights=self.weights, query_vectors=self.vectors)
        return InterleavedScorer(pin_vectors, self.ptr, self.vectors, self.weights, depth=depth, seen=seen,
                                 weighting="importance" if blend == "interleave" else "uniform")


def _assemble(num_users: int, dim: int, per_user: Mapping[int, tuple[np.ndarray, np.ndarray, int]]) -> UserVectors:
    """``UserVectors`` from ``user -> (vectors (k, d), importance (k,), num_clusters)``."""
    counts = np.zeros(num_users, np.int64)
    num_clusters = np.zeros(num_users, np.int64)
    vectors, weights = [np.zeros((0, dim), np.float32)], [np.zeros(0)]
    for u in sorted(per_user):
        v, w, c = per_user[u]
        counts[u], num_clusters[u] = len(v), c
        vectors.append(np.asarray(v, np.float32))
        w = np.asarray(w, np.float64)
        weights.append(w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w)))
    return UserVectors(np.concatenate([[0], np.cumsum(counts)]), np.concatenate(vectors),
                       np.concatenate(weights), num_clusters)


def _check_inputs(history: UserHistory, pin_vectors: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pin_vectors = np.asarray(pin_vectors)
    if pin_vectors.ndim != 2 or pin_vectors.shape[0] != history.num_items:
        raise ValueError(f"pin_vectors must be ({history.num_items}, d) (one row per pin of the history), "
                         f"got shape {pin_vectors.shape}")
    users = np.asarray(users, dtype=np.int64)
    if len(users) and (users.min() < 0 or users.max() >= history.num_users):
        raise ValueError(f"users must be rows in [0, {history.num_users})")
    return pin_vectors, users


def _recent_actions(items: np.ndarray, ts_us: np.ndarray, max_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """``user_medoids``' canonical order (most recent first, then smaller pin) cut to ``max_actions``."""
    order = np.lexsort((items, -ts_us))[:max_actions]
    return items[order], ts_us[order]


def reference_day(ts_us: np.ndarray) -> dt.date:
    """The UTC day of the latest of ``ts_us`` (int64 microseconds): importance ages are measured at its end."""
    day = int(np.max(ts_us)) // _US_PER_DAY
    return dt.date(1970, 1, 1) + dt.timedelta(days=day)


def ward_user_clusters(history: UserHistory, pin_vectors: np.ndarray, users: np.ndarray, *, alpha: float,
                       max_actions: int = DEFAULT_MAX_ACTIONS) -> dict[int, UserClusters]:
    """``medoids.user_clusters`` of each of ``users`` with a history (user row -> clusters), ranked later per lam."""
    pin_vectors, users = _check_inputs(history, pin_vectors, users)
    out = {}
    for u in users:
        items, ts_us = history.user(int(u))
        if len(items):
            out[int(u)] = user_clusters(items, ts_us, pin_vectors[items], reference_day(ts_us), alpha=alpha,
                                        max_actions=max_actions)
    return out


def pinnersage_vectors(
    history: UserHistory,
    pin_vectors: np.ndarray,
    users: np.ndarray,
    *,
    alpha: float,
    lam: float = DEFAULT_DECAY_PER_DAY,
    max_actions: int = DEFAULT_MAX_ACTIONS,
    num_vectors: int = NUM_QUERY_VECTORS,
    representative: str = "medoid",
    clusters: Mapping[int, UserClusters] | None = None,
) -> UserVectors:
    """PinnerSage users: the top ``num_vectors`` clusters of ``user_medoids`` by importance.

    Args:
        history: per-user engaged pins before the slice.
        pin_vectors: (N, d) pin embeddings (rows of ``history.items``).
        users: (R,) user rows to represent (others get no vectors).
        alpha, lam, max_actions: ``user_medoids``'s Ward threshold, decay per day and cap.
        num_vectors: clusters kept per user, most important first (deterministic top 3 for evaluation).
        representative: ``"medoid"`` (the medoid pin's embedding) or ``"centroid"`` (the mean of the unit
            vectors of the same cluster's distinct pins: the ablation).
        clusters: ``ward_user_clusters`` of these users at ``alpha`` and ``max_actions``, when already made
            (only the ranking by ``lam`` is then done here).

    Returns:
        ``UserVectors`` with the clusters' importances as weights and ``num_clusters`` from ``user_medoids``.
    """
    if representative not in REPRESENTATIVES:
        raise ValueError(f"representative must be one of {REPRESENTATIVES}, got {representative!r}")
    if num_vectors < 1:
        raise ValueError(f"num_vectors must be >= 1 (got {num_vectors})")
    pin_vectors, users = _check_inputs(history, pin_vectors, users)
    if clusters is None:
        clusters = ward_user_clusters(history, pin_vectors, users, alpha=alpha, max_actions=max_actions)
    per_user = {}
    for u in users:
        items, ts_us = history.user(int(u))
        if not len(items):
            continue
        out = clusters[int(u)].top(reference_day(ts_us), lam, num_vectors)
        vectors = pin_vectors[out.medoid_pin_id] if representative == "medoid" else out.centroid
        per_user[int(u)] = (vectors, out.importance, out.num_clusters)
    return _assemble(history.num_users, pin_vectors.shape[1], per_user)


def last_pin_vectors(history: UserHistory, pin_vectors: np.ndarray, users: np.ndarray) -> UserVectors:
    """The embedding of each user's most recent history pin (the last action; ties: the larger pin row)."""
    pin_vectors, users = _check_inputs(history, pin_vectors, users)
    per_user = {}
    for u in users:
        items, _ = history.user(int(u))
        if len(items):
            per_user[int(u)] = (pin_vectors[items[-1:]], np.ones(1), 1)
    return _assemble(history.num_users, pin_vectors.shape[1], per_user)


def decayed_average_vectors(
    history: UserHistory,
    pin_vectors: np.ndarray,
    users: np.ndarray,
    *,
    lam: float = DEFAULT_DECAY_PER_DAY,
    max_actions: int = DEFAULT_MAX_ACTIONS,
) -> UserVectors:
    """``sum_i exp(-lam * age_days_i) unit(x_i)`` over the user's ``max_actions`` most recent actions."""
    pin_vectors, users = _check_inputs(history, pin_vectors, users)
    per_user = {}
    for u in users:
        items, ts_us = history.user(int(u))
        if not len(items):
            continue
        items, ts_us = _recent_actions(items, ts_us, max_actions)
        weights = action_weights(ts_us, reference_day(ts_us), lam)
        mean = weights @ normalize_rows(pin_vectors[items], items)
        per_user[int(u)] = (mean[None, :], np.ones(1), 1)
    return _assemble(history.num_users, pin_vectors.shape[1], per_user)


@dataclass(frozen=True)
class KMeansClusters:
    """One user's k-means clustering (``kmeans_user_clusters``), ranked later per lam.

    Attributes:
        centers: (k, d) cluster centres.
        action_label: (m,) cluster of each kept action (the ``max_actions`` most recent).
        ts_us: (m,) time of each kept action.
    """

    centers: np.ndarray
    action_label: np.ndarray
    ts_us: np.ndarray

    def top(self, lam: float, num_vectors: int) -> tuple[np.ndarray, np.ndarray]:
        """``(centers (K,d), importance (K,))`` of the ``num_vectors`` clusters of largest importance (ties:
        the lower k-means label)."""
        k = len(self.centers)
        importance = cluster_importance(self.action_label, action_weights(self.ts_us, reference_day(self.ts_us),
                                                                          lam), k)
        top = np.lexsort((np.arange(k), -importance))[:num_vectors]
        return self.centers[top], importance[top]


def kmeans_user_clusters(history: UserHistory, pin_vectors: np.ndarray, users: np.ndarray, *, num_clusters: int,
                         max_actions: int = DEFAULT_MAX_ACTIONS, seed: int = 0,
                         num_init: int = 4) -> dict[int, KMeansClusters]:
    """k-means with a fixed k on each user's distinct pins (unit rows): user row -> ``KMeansClusters``.

    ``min(num_clusters, distinct pins)`` clusters per user (sklearn ``KMeans``, ``random_state=seed``) over
    the ``max_actions`` most recent actions.
    """
    from sklearn.cluster import KMeans  # imported here: only this baseline needs it

    if num_clusters < 1:
        raise ValueError(f"num_clusters must be >= 1 (got {num_clusters})")
    pin_vectors, users = _check_inputs(history, pin_vectors, users)
    out = {}
    for u in users:
        items, ts_us = history.user(int(u))
        if not len(items):
            continue
        items, ts_us = _recent_actions(items, ts_us, max_actions)
        distinct, action_to_pin = np.unique(items, return_inverse=True)
        x = normalize_rows(pin_vectors[distinct], distinct)
        k = min(num_clusters, len(distinct))
        if k == 1:
            labels, centers = np.zeros(len(distinct), np.int64), x.mean(axis=0, keepdims=True)
        else:
            fitted = KMeans(n_clusters=k, n_init=num_init, random_state=seed).fit(x)
            labels, centers = fitted.labels_.astype(np.int64), fitted.cluster_centers_
        out[int(u)] = KMeansClusters(centers, labels[action_to_pin.reshape(-1)], ts_us)
    return out


def kmeans_vectors(
    history: UserHistory,
    pin_vectors: np.ndarray,
    users: np.ndarray,
    *,
    num_clusters: int,
    lam: float = DEFAULT_DECAY_PER_DAY,
    max_actions: int = DEFAULT_MAX_ACTIONS,
    num_vectors: int = NUM_QUERY_VECTORS,
    seed: int = 0,
    num_init: int = 4,
    clusters: Mapping[int, KMeansClusters] | None = None,
) -> UserVectors:
    """k-means with a fixed k on each user's distinct pins (unit rows), top centroids by importance.

    ``min(num_clusters, distinct pins)`` clusters per user (``kmeans_user_clusters``, or ``clusters`` when
    already made with these arguments); importance is PinnerSage's ``sum exp(-lam * age)`` over each
    cluster's actions; ties go to the lower k-means label.
    """
    if num_clusters < 1 or num_vectors < 1:
        raise ValueError(f"num_clusters and num_vectors must be >= 1 (got {num_clusters}, {num_vectors})")
    pin_vectors, users = _check_inputs(history, pin_vectors, users)
    if clusters is None:
        clusters = kmeans_user_clusters(history, pin_vectors, users, num_clusters=num_clusters,
                                        max_actions=max_actions, seed=seed, num_init=num_init)
    per_user = {}
    for u in users:
        if int(u) in clusters:
            user = clusters[int(u)]
            centers, importance = user.top(lam, num_vectors)
            per_user[int(u)] = (centers, importance, len(user.centers))
    return _assemble(history.num_users, pin_vectors.shape[1], per_user)


# ---- diversity and the synthetic check ----------------------------------------------------------


def topic_entropy(top_items: np.ndarray, item_topics: np.ndarray) -> np.ndarray:
    """Entropy (bits) of the topics of each query's list: ``-sum_t p_t log2 p_t``.

    Args:
        top_items: (Q, k) item rows, best first; -1 marks an empty position (left out).
        item_topics: (N,) int topic of each item (the planted topic on synthetic data).

    Returns:
        (Q,) float64; 0 for a list of one topic, ``log2(k)`` for k distinct topics; NaN for an empty list.
    """
    top_items = np.asarray(top_items, dtype=np.int64)
    item_topics = np.asarray(item_topics)
    if top_items.ndim != 2:
        raise ValueError(f"top_items must be a (queries, k) array, got shape {top_items.shape}")
    if item_topics.ndim != 1 or not np.issubdtype(item_topics.dtype, np.integer):
        raise ValueError(f"item_topics must be a 1-D integer array, got shape {item_topics.shape}, "
                         f"dtype {item_topics.dtype}")
    if top_items.size and top_items.max() >= len(item_topics):
        raise ValueError(f"top_items hold rows up to {top_items.max()} but item_topics has {len(item_topics)}")
    out = np.full(len(top_items), np.nan)
    for i, row in enumerate(top_items):
        row = row[row >= 0]
        if len(row):
            p = np.unique(item_topics[row], return_counts=True)[1] / len(row)
            out[i] = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no -0.0 for a single topic
    return out


def indicator_matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A 0/1 CSR matrix with a 1 at each (row, col) pair (repeated pairs count once)."""
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def one_topic_each(item_topics: np.ndarray) -> sp.csr_matrix:
    """(N, T) 0/1 from (N,) one topic per item (``on_interest_share``'s ``pin_topics`` without secondaries)."""
    item_topics = np.asarray(item_topics, dtype=np.int64)
    return indicator_matrix(np.arange(len(item_topics)), item_topics,
                            (len(item_topics), int(item_topics.max()) + 1 if len(item_topics) else 0))


def on_interest_share(top_items: np.ndarray, pin_topics: sp.csr_matrix, users: np.ndarray,
                      interests: sp.csr_matrix) -> np.ndarray:
    """Share of each query's list with a topic that is one of the user's interests.

    Args:
        top_items: (Q, k) item rows, best first; -1 marks an empty position (left out).
        pin_topics: (N, T) 0/1 the topics of each item (synthetic pins: the primary and the secondary topic,
            either of which brings the pin to a user interested in it).
        users: (Q,) user row of each list.
        interests: (U, T') 0/1 the topics each user row is interested in (the planted interests).

    Returns:
        (Q,) float64 in [0, 1]; NaN for an empty list.
    """
    top_items = np.asarray(top_items, dtype=np.int64)
    pin_topics = sp.csr_matrix(pin_topics)
    interests = sp.csr_matrix(interests)
    if top_items.ndim != 2 or len(top_items) != len(users):
        raise ValueError(f"top_items must be a (queries, k) array with one row per user, got shape "
                         f"{top_items.shape} for {len(users)} users")
    width = max(pin_topics.shape[1], interests.shape[1])  # topics past either matrix's width are nobody's
    pin_topics, interests = (sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], width))
                             for m in (pin_topics, interests))
    q, k = top_items.shape
    filled = top_items >= 0
    # one row per list position: does the pin share a topic with the list's user?
    shared = pin_topics[top_items.clip(min=0).ravel()].multiply(
        interests[np.repeat(np.asarray(users, dtype=np.int64), k)])
    on = (np.asarray(shared.sum(axis=1)).ravel() > 0).reshape(q, k) & filled
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(filled.any(axis=1), on.sum(axis=1) / filled.sum(axis=1), np.nan)


def evaluate_diversity(scorer: Callable[[np.ndarray], np.ndarray], data: EvalSlice, item_topics: np.ndarray,
                       users: np.ndarray, *, k: int = DIVERSITY_K, interests: sp.csr_matrix | None = None,
                       pin_topics: sp.csr_matrix | None = None, chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """Per user of ``users`` (R,), on their top ``k`` pins (the history masked as in the ranking):
    ``topic_entropy@k`` (bits, of ``item_topics``) and, with ``interests`` (U, T), ``on_interest@k``
    (``on_interest_share`` over ``pin_topics``, default one topic each from ``item_topics``)."""
    items, _ = top_k(scorer, users, k, data.history.num_items, seen=data.targets.history.matrix(),
                     chunk_size=chunk_size)
    out = {f"topic_entropy@{k}": topic_entropy(items, item_topics)}
    if interests is not None:
        topics = one_topic_each(item_topics) if pin_topics is None else pin_topics
        out[f"on_interest@{k}"] = on_interest_share(items, topics, users, interests)
    return out


@dataclass(frozen=True)
class SpearmanResult:
    """Spearman's rank correlation of clusters per user with the planted number of interests."""

    rho: float
    pvalue: float
    num_users: int


def clusters_vs_interests(num_clusters: np.ndarray, planted_interests: np.ndarray) -> SpearmanResult:
    """Spearman (``scipy.stats.spearmanr``) of (U,) clusters per user against (U,) planted interests.

    Raises:
        ValueError: unequal lengths, fewer than 3 users, or a constant array (no rank correlation).
    """
    a = np.asarray(num_clusters, dtype=np.float64)
    b = np.asarray(planted_interests, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"num_clusters and planted_interests must be equal-length 1-D arrays, got {a.shape} "
                         f"and {b.shape}")
    if len(a) < 3:
        raise ValueError(f"a Spearman correlation needs at least 3 users, got {len(a)}")
    for name, values in (("num_clusters", a), ("planted_interests", b)):
        if np.all(values == values[0]):
            raise ValueError(f"{name} is constant ({values[0]:g} for all {len(values)} users): no rank correlation")
    result = spearmanr(a, b)
    return SpearmanResult(float(result.statistic), float(result.pvalue), len(a))


# ---- the evaluator ------------------------------------------------------------------------------


VectorBuilder = Callable[[UserHistory, np.ndarray, Hashable], UserVectors]
"""``(history, users, setting) -> UserVectors``: a method's representation of ``users`` for one setting."""


@dataclass(frozen=True)
class MethodResult:
    """One method: its setting chosen on validation, the validation scores of every candidate, and its
    results per slice (``"valid"`` at the chosen setting, ``"test"`` scored once).

    ``num_clusters[slice]`` is (R,) aligned with ``results[slice].query_ids``.
    """

    name: str
    setting: Hashable
    tuning: list[tuple[Hashable, float]]
    results: dict[str, RankingMetrics]
    num_clusters: dict[str, np.ndarray]
    seconds: float


class PinnerSageEvaluator:
    """Evaluates user representations on ``EvaluationData``; builds each slice once.

    Args:
        data: labelled positive engagements.
        pin_vectors: (N, d) pin embeddings (PinSage's), the items ranked and the vectors clustered.
        item_topics: (N,) planted topic per pin (synthetic data): adds ``topic_entropy@<diversity_k>``.
        user_interests: slice name -> (U, T) 0/1 planted interests of each user row during that slice
            (synthetic data, with ``item_topics``): adds ``on_interest@<diversity_k>``, the share of a
            user's top pins on one of their interests (a blend that falls between interests scores low).
        pin_topics: (N, T) 0/1 every topic of each pin (primary and secondary) for ``on_interest``
            (default: ``item_topics`` only).
        ks: cut-offs of ``recall@K`` / ``hr@K`` / ``ndcg@K``.
        tuning_metric: maximized on the validation slice.
        lam, max_actions: PinnerSage's decay per day (the job's) and cap, shared by every method that uses them.
        lams: decays per day tried on validation by every method that weighs actions by age (default:
            ``lam`` only); each method's setting then pairs its own parameter with one of them.
        pulls: pulls of the queries toward the corpus direction tried on validation by every method
            (``retrieval.pull_queries``; default: 0 only, the queries as they are).
    """

    def __init__(self, data: EvaluationData, pin_vectors: np.ndarray, *, item_topics: np.ndarray | None = None,
                 ks: Sequence[int] = EVAL_KS, tuning_metric: str = TUNING_METRIC,
                 lam: float = DEFAULT_DECAY_PER_DAY, max_actions: int = DEFAULT_MAX_ACTIONS,
                 lams: Sequence[float] | None = None, diversity_k: int = DIVERSITY_K,
                 user_interests: Mapping[str, sp.csr_matrix] | None = None, pin_topics: sp.csr_matrix | None = None,
                 chunk_size: int | None = None, pulls: Sequence[float] = (0.0,)) -> None:
        self.pin_vectors = unit_rows(pin_vectors, "pin vectors")
        if len(self.pin_vectors) != data.num_items:
            raise ValueError(f"pin_vectors have {len(self.pin_vectors)} rows but the evaluation data has "
                             f"{data.num_items} pins")
        if item_topics is not None and len(item_topics) != data.num_items:
            raise ValueError(f"item_topics has {len(item_topics)} entries but there are {data.num_items} pins")
        if user_interests is not None:
            if item_topics is None:
                raise ValueError("user_interests need item_topics (the topic of each pin)")
            for name in SLICES:
                if name not in user_interests or user_interests[name].shape[0] != data.num_users:
                    raise ValueError(f"user_interests need a ({data.num_users}, topics) matrix for slice {name!r}")
        self.data = data
        self.item_topics = item_topics
        if pin_topics is not None and pin_topics.shape[0] != data.num_items:
            raise ValueError(f"pin_topics has {pin_topics.shape[0]} rows but there are {data.num_items} pins")
        self.user_interests = user_interests
        self.pin_topics = pin_topics
        self.ks = tuple(ks)
        self.tuning_metric = tuning_metric
        self.lam = lam
        self.lams = tuple(float(v) for v in (lams if lams else (lam,)))
        for v in self.lams:
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"lams (importance decays per day) must be finite and >= 0, got {self.lams}")
        self.pulls = tuple(float(v) for v in (pulls or (0.0,)))
        for v in self.pulls:
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"pulls (toward the corpus direction) must be finite and >= 0, got {self.pulls}")
        self.max_actions = max_actions
        self.diversity_k = diversity_k
        self.chunk_size = chunk_size
        self.slices = {name: data.slice(name) for name in SLICES}
        self._vectors: dict[tuple, UserVectors] = {}  # (history, setting, representative, k) -> vectors
        # the clusters of the latest (history, alpha) or (history, k): settings are tried parameter-major,
        # so every lam of one alpha ranks the same clusters
        self._latest_clusters: dict[tuple, dict] = {}
        for name, s in self.slices.items():
            log.info("%s slice: %d users with targets, %d targets (%s)", name, len(s.users()),
                     s.targets.targets.nnz, s.protocol)

    @functools.cached_property
    def direction(self) -> np.ndarray:
        """(d,) the corpus direction the pulls move queries toward (``retrieval.mean_direction`` of the pin
        vectors), made once, by the first pulled setting."""
        return mean_direction(self.pin_vectors)

    def evaluate(self, vectors: UserVectors, slice_name: str, blend: str = DEFAULT_BLEND, *,
                 diversity: bool = False) -> RankingMetrics:
        """Full ranking of the slice's targets by ``vectors`` (history masked); with ``diversity`` and
        ``item_topics``, adds ``topic_entropy@K`` (and with ``user_interests``, ``on_interest@K``) per user."""
        s = self.slices[slice_name]
        scorer = vectors.scorer(self.pin_vectors, blend, seen=s.targets.history.matrix(),
                                depth=max(*self.ks, self.diversity_k))
        result = evaluate_users(scorer, s.targets, s.protocol, ks=self.ks, chunk_size=self.chunk_size)
        if diversity and self.item_topics is not None:
            interests = None if self.user_interests is None else self.user_interests[slice_name]
            diverse = evaluate_diversity(scorer, s, self.item_topics, result.query_ids, k=self.diversity_k,
                                         interests=interests, pin_topics=self.pin_topics, chunk_size=self.chunk_size)
            result = dataclasses.replace(result, values={**result.values, **diverse})
        return result

    def run(self, name: str, build: VectorBuilder, settings: Sequence[Hashable], blend: str = "max") -> MethodResult:
        """Tune ``settings`` on the validation slice, then score the test slice once with the choice.

        A setting with a ``pull`` field has the vectors ``build`` returns pulled toward the corpus direction
        (``UserVectors.pulled``); ``build`` itself never sees the pull.
        """
        if blend not in PINNERSAGE_BLENDS:
            raise ValueError(f"blend must be one of {PINNERSAGE_BLENDS}, got {blend!r}")
        started = time.perf_counter()
        settings = list(settings)
        built: dict[Hashable, UserVectors] = {}

        def make(history: UserHistory, users: np.ndarray, setting: Hashable) -> UserVectors:
            pull = getattr(setting, "pull", 0.0)
            if not pull:
                return build(history, users, setting)
            return build(history, users, setting._replace(pull=0.0)).pulled(self.direction, pull)

        def on_valid(setting: Hashable) -> RankingMetrics:
            s = self.slices["valid"]
            built[setting] = make(s.history, s.users(), setting)
            return self.evaluate(built[setting], "valid", blend)

        tuning = tune_on_validation(settings, on_valid, self.tuning_metric)
        results, clusters = {}, {}
        for slice_name in SLICES:
            if slice_name == "valid":
                vectors = built[tuning.best]
            else:
                s = self.slices[slice_name]
                vectors = make(s.history, s.users(), tuning.best)
            results[slice_name] = self.evaluate(vectors, slice_name, blend, diversity=True)
            clusters[slice_name] = vectors.num_clusters[results[slice_name].query_ids]
        seconds = time.perf_counter() - started
        log.info("%s evaluated in %.1f s (setting %r chosen on validation %s: %s)", name, seconds, tuning.best,
                 self.tuning_metric, tuning.scores)
        return MethodResult(name, tuning.best, tuning.scores, results, clusters, seconds)

    def _clusters(self, kind: str, history: UserHistory, users: np.ndarray, parameter: Hashable,
                  make: Callable[[], dict]) -> dict:
        """The clusters of ``users`` of (``kind``, ``history``, ``parameter``), kept until other ones are asked."""
        key = (kind, id(history))
        cached = self._latest_clusters.get(key)
        if cached is None or cached[0] != parameter or not np.array_equal(cached[1], users):
            self._latest_clusters[key] = cached = (parameter, np.array(users), make())
        return cached[2]

    def pinnersage(self, name: str = "pinnersage", alphas: Sequence[float] = ALPHA_GRID, blend: str = DEFAULT_BLEND,
                   representative: str = "medoid", num_vectors: int = NUM_QUERY_VECTORS) -> MethodResult:
        """Top-``num_vectors`` medoids (or centroids) of Ward clusters; ``WardSetting(alpha, lam)`` chosen on
        validation over ``alphas`` x ``self.lams``.

        A user's Ward clustering at one alpha is made once and ranked for every lam; the vectors of a
        (slice, setting) are reused by every blend.
        """
        def build(history: UserHistory, users: np.ndarray, setting: WardSetting) -> UserVectors:
            key = (id(history), setting, representative, num_vectors)
            if key not in self._vectors:
                clusters = self._clusters("ward", history, users, setting.alpha, lambda: ward_user_clusters(
                    history, self.pin_vectors, users, alpha=setting.alpha, max_actions=self.max_actions))
                self._vectors[key] = pinnersage_vectors(
                    history, self.pin_vectors, users, alpha=setting.alpha, lam=setting.lam,
                    max_actions=self.max_actions, num_vectors=num_vectors, representative=representative,
                    clusters=clusters)
            return self._vectors[key]

        return self.run(name, build, [WardSetting(float(a), lam, pull) for a in alphas for lam in self.lams
                                      for pull in self.pulls], blend)

    def centroid(self, name: str = "pinnersage_centroid", alphas: Sequence[float] = ALPHA_GRID,
                 blend: str = DEFAULT_BLEND) -> MethodResult:
        """The ablation: PinnerSage's clusters represented by their mean vectors instead of medoids."""
        return self.pinnersage(name, alphas, blend, representative="centroid")

    def last_pin(self, name: str = "last_pin") -> MethodResult:
        return self.run(name, lambda history, users, _: last_pin_vectors(history, self.pin_vectors, users),
                        [LastPinSetting(pull) for pull in self.pulls])

    def decayed_average(self, name: str = "decayed_average") -> MethodResult:
        """The time-decayed average, its ``DecaySetting(lam)`` chosen on validation over ``self.lams``."""
        return self.run(name, lambda history, users, setting: decayed_average_vectors(
            history, self.pin_vectors, users, lam=setting.lam, max_actions=self.max_actions),
            [DecaySetting(lam, pull) for lam in self.lams for pull in self.pulls])

    def kmeans(self, name: str = "kmeans", num_clusters: Sequence[int] = KMEANS_KS, blend: str = DEFAULT_BLEND,
               num_vectors: int = NUM_QUERY_VECTORS, seed: int = 0) -> MethodResult:
        """k-means with a fixed k, top-``num_vectors`` centroids by importance; ``KMeansSetting(k, lam)``
        chosen on validation over ``num_clusters`` x ``self.lams`` (one k-means per k, ranked per lam)."""
        def build(history: UserHistory, users: np.ndarray, setting: KMeansSetting) -> UserVectors:
            clusters = self._clusters("kmeans", history, users, setting.k, lambda: kmeans_user_clusters(
                history, self.pin_vectors, users, num_clusters=setting.k, max_actions=self.max_actions, seed=seed))
            return kmeans_vectors(history, self.pin_vectors, users, num_clusters=setting.k, lam=setting.lam,
                                  max_actions=self.max_actions, num_vectors=num_vectors, seed=seed, clusters=clusters)

        return self.run(name, build, [KMeansSetting(int(k), lam, pull) for k in num_clusters for lam in self.lams
                                      for pull in self.pulls], blend)


def results_table(methods: Sequence[MethodResult], *, ci_samples: int = 0, seed: int = 0) -> pd.DataFrame:
    """``evaluation_table`` of every method and slice, with each method's chosen setting."""
    rows = [(m.name, slice_name, result, repr(m.setting)) for m in methods for slice_name, result in m.results.items()]
    return evaluation_table([r[:3] for r in rows], ci_samples=ci_samples, seed=seed, settings=[r[3] for r in rows])


# ---- the comparison of the nightly evaluation and the benchmark ----------------------------------

ABLATION_BLENDS: tuple[str, ...] = ("max", "sum", "round_robin")
# The single-embedding baselines of compare_methods, which the 3 medoids must beat (issue 5, "Bars").
SINGLE_EMBEDDING_METHODS: tuple[str, ...] = ("last_pin", "decayed_average")


def compare_methods(evaluator: PinnerSageEvaluator, *, alphas: Sequence[float] = ALPHA_GRID,
                    kmeans_ks: Sequence[int] = KMEANS_KS, ablation_blends: Sequence[str] = ABLATION_BLENDS,
                    seed: int = 0) -> list[MethodResult]:
    """Every method of the evaluation table, each tuned on validation and scored once on test.

    ``pinnersage`` (top-3 medoids, ``DEFAULT_BLEND``) first; then the centroid ablation (same blend), the
    medoids with each of ``ablation_blends`` (``pinnersage_<blend>``), the single-embedding baselines
    (``last_pin``, ``decayed_average``) and k-means with a fixed k (same blend as ``pinnersage``).
    """
    methods = [evaluator.pinnersage(alphas=alphas), evaluator.centroid(alphas=alphas)]
    methods += [evaluator.pinnersage(f"pinnersage_{blend}", alphas, blend) for blend in ablation_blends
                if blend != DEFAULT_BLEND]
    methods += [evaluator.last_pin(), evaluator.decayed_average(), evaluator.kmeans(num_clusters=kmeans_ks, seed=seed)]
    return methods


ABLATION_COLUMNS = ["method", "representation", "blend", "setting", "valid_tuning_metric", "test_users",
                    "test_clusters_per_user_median"]
_REPRESENTATION = {"last_pin": ("last pin", "-"), "decayed_average": ("time-decayed average", "-"),
                   "kmeans": ("k-means centroids (top 3)", DEFAULT_BLEND),
                   "pinnersage": ("Ward medoids (top 3)", DEFAULT_BLEND),
                   "pinnersage_centroid": ("Ward centroids (top 3)", DEFAULT_BLEND)}


def ablation_table(methods: Sequence[MethodResult], metrics: Sequence[str] = ("recall@10", "recall@50",
                                                                               "recall@100")) -> pd.DataFrame:
    """One row per method: what it is, its setting chosen on validation, the validation score of that
    setting and the TEST means of ``metrics`` (plus ``topic_entropy@K`` and ``on_interest@K`` when measured)."""
    rows = []
    for m in methods:
        representation, blend = _REPRESENTATION.get(m.name, ("Ward medoids (top 3)", m.name.split("pinnersage_")[-1]))
        test = m.results["test"]
        row = {"method": m.name, "representation": representation, "blend": blend, "setting": repr(m.setting),
               "valid_tuning_metric": dict(m.tuning)[m.setting], "test_users": test.num_queries,
               "test_clusters_per_user_median": float(np.median(m.num_clusters["test"]))
               if len(m.num_clusters["test"]) else float("nan")}
        names = list(metrics) + [k for k in test.values if k.startswith(("topic_entropy@", "on_interest@"))]
        row.update({f"test_{k}": float(np.nanmean(test.metric(k))) for k in names})
        rows.append(row)
    return pd.DataFrame(rows)


# ---- paired comparisons and the topic ceiling ---------------------------------------------------


def top_topic_coverage(targets: sp.csr_matrix, users: np.ndarray, item_topics: np.ndarray,
                       num_topics: int = NUM_QUERY_VECTORS) -> np.ndarray:
    """(R,) share of each user's targets whose topic is one of the ``num_topics`` topics most frequent among
    that user's own targets: the most any ``num_topics`` single-topic queries could cover, chosen with the
    answers in hand (ties between topics cannot change the share).

    Args:
        targets: (U, N) 0/1 targets of a slice.
        users: (R,) user rows, each with at least one target.
        item_topics: (N,) int topic of each item (the planted primary topic on synthetic data).
        num_topics: topics allowed (PinnerSage's 3 query vectors).
    """
    targets = sp.csr_matrix(targets)
    item_topics = np.asarray(item_topics)
    if item_topics.ndim != 1 or len(item_topics) != targets.shape[1]:
        raise ValueError(f"item_topics must hold one topic per item ({targets.shape[1]}), "
                         f"got shape {item_topics.shape}")
    if num_topics < 1:
        raise ValueError(f"num_topics must be at least 1, got {num_topics}")
    out = np.empty(len(users))
    for i, u in enumerate(np.asarray(users, dtype=np.int64)):
        items = targets.indices[targets.indptr[u]:targets.indptr[u + 1]]
        if not len(items):
            raise ValueError(f"user row {u} has no targets")
        counts = np.sort(np.unique(item_topics[items], return_counts=True)[1])[::-1]
        out[i] = counts[:num_topics].sum() / len(items)
    return out


def paired_comparison(methods: Sequence[MethodResult], reference: str, others: Sequence[str], *,
                      metric: str = TUNING_METRIC, slice_name: str = "test", groups: np.ndarray | None = None,
                      ci_samples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """``reference`` minus each of ``others`` on ``metric`` of ``slice_name``: per-user paired bootstrap.

    Args:
        methods: evaluated methods (``compare_methods``), all on the same users.
        reference, others: method names.
        groups: optional (U,) label per user row (e.g. the planted number of interests; negative = unknown,
            left out of the groups): adds one row per (group, other) beside the ``"all"`` rows.
        ci_samples, seed: bootstrap resamples and their seed.

    Returns:
        One row per (group, other): ``metric``, ``group``, ``other``, ``users``, ``reference_mean``, ``other_mean``,
        ``diff``, ``ci_low``, ``ci_high`` (95%), ``beats`` (``ci_low > 0``: ahead beyond noise).
    """
    by_name = {m.name: m for m in methods}
    for name in (reference, *others):
        if name not in by_name:
            raise ValueError(f"no evaluated method {name!r}; have {sorted(by_name)}")
    ref = by_name[reference].results[slice_name]
    labels = None if groups is None else np.asarray(groups)[ref.query_ids]
    selections = [("all", np.ones(ref.num_queries, dtype=bool))]
    if labels is not None:
        selections += [(str(g), labels == g) for g in np.unique(labels[labels >= 0])]
    rows = []
    for other in others:
        a, b = paired_values(ref, by_name[other].results[slice_name], metric)
        for group, keep in selections:
            diff = paired_bootstrap(a[keep], b[keep], ci_samples, seed)
            rows.append({"metric": metric, "group": group, "other": other, "users": int(keep.sum()),
                         "reference_mean": float(a[keep].mean()), "other_mean": float(b[keep].mean()),
                         "diff": diff.mean, "ci_low": diff.ci_low, "ci_high": diff.ci_high,
                         "beats": bool(diff.ci_low > 0)})
    return pd.DataFrame(rows)
