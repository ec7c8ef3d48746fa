"""Evaluation protocols: what is ranked against what, what is masked, on which slice; and the result table.

A ``Protocol`` renders to the string carried by every result, so no number is shown without it, e.g.
``"user next-save | full ranking over all pins, seen masked | per-user split test | ties pessimistic"``.

Protocols (docs/EVALUATION.md has the details and the departures from the papers):

* **Item-to-item** (PinSage, sec. 4.2): query = a pin, target = the pin its user engaged with next; the
  target is ranked by cosine among all pins, the query itself masked. ``hr@K`` is PinSage's hit-rate@K.
* **User next item** (``mode="next"``): the user's first engagement in the target slice with a pin not in
  their history; history masked; the user is represented by their latest history pins.
* **User future window** (``mode="window"``, PinnerFormer): every distinct new positive in the target
  slice; ``recall@K``.
* **Leave-one-out** (S3-Rec and most sequential-recommendation papers): per user, last item = test,
  second-last = validation, the rest = train; full ranking with the history masked.

Item and user indices are rows ``0..N-1`` / ``0..U-1`` (map ids with ``np.unique(..., return_inverse=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embeddings.data.engagement import time_order
from embeddings.eval.bootstrap import bootstrap_mean
from embeddings.eval.metrics import RankingMetrics, Scorer, check_ties, evaluate_ranking
from embeddings.eval.scorers import ReindexedScorer

ITEM_TO_ITEM = "item-to-item next engagement"
USER_NEXT = "user next-save"
USER_WINDOW = "user future window"
LEAVE_ONE_OUT = "leave-one-out next item"
MODES = ("next", "window")


@dataclass(frozen=True)
class Protocol:
    """How a number was measured.

    Attributes:
        task: what is predicted (``ITEM_TO_ITEM``, ``USER_NEXT``, ...).
        split: which slice is scored, e.g. ``"time split test (7 days to 2026-01-31)"``, ``"per-user split
            valid"``, ``"leave-one-out test"``.
        masking: what is removed from the ranking, e.g. ``"seen masked"``, ``"query masked"``.
        candidates: what is ranked (full ranking over it).
        ties: ``"pessimistic"`` or ``"average"`` (``embeddings.eval.metrics``).
    """

    task: str
    split: str
    masking: str = "seen masked"
    candidates: str = "all pins"
    ties: str = "pessimistic"

    def __post_init__(self) -> None:
        check_ties(self.ties)
        for name in ("task", "split", "masking", "candidates"):
            if not getattr(self, name):
                raise ValueError(f"protocol {name} must not be empty")

    def __str__(self) -> str:
        return (f"{self.task} | full ranking over {self.candidates}, {self.masking} | {self.split} | "
                f"ties {self.ties}")


# ---- per-user sequences -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sequences:
    """Per-user item sequences in time order (CSR layout): user ``u`` = ``items[ptr[u]:ptr[u+1]]``.

    Attributes:
        ptr: (U+1,) int64 offsets.
        items: (E,) int64 item rows, oldest first within a user.
        num_items: N.
    """

    ptr: np.ndarray
    items: np.ndarray
    num_items: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ptr", np.asarray(self.ptr, dtype=np.int64))
        object.__setattr__(self, "items", np.asarray(self.items, dtype=np.int64))
        if self.ptr.ndim != 1 or len(self.ptr) == 0 or self.ptr[0] != 0 or self.ptr[-1] != len(self.items):
            raise ValueError(f"ptr must run from 0 to len(items)={len(self.items)}")
        if len(self.items) and (self.items.min() < 0 or self.items.max() >= self.num_items):
            raise ValueError(f"item rows must lie in [0, {self.num_items})")

    @property
    def num_users(self) -> int:
        return len(self.ptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.ptr)

    @classmethod
    def from_events(cls, users: np.ndarray, items: np.ndarray, ts: np.ndarray, num_users: int,
                    num_items: int) -> Sequences:
        """Group events by user and order them in time within a user (``engagement.time_order``: ties by a
        hash of (user, item), not by item).

        Args:
            users: (E,) user rows in ``[0, num_users)``.
            items: (E,) item rows in ``[0, num_items)``.
            ts: (E,) sortable timestamps (datetime64 or numbers).
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ts = np.asarray(ts)
        if not (users.shape == items.shape == ts.shape) or users.ndim != 1:
            raise ValueError(f"users, items and ts must be equal-length 1-D arrays, got {users.shape}, "
                             f"{items.shape}, {ts.shape}")
        if len(users) and (users.min() < 0 or users.max() >= num_users):
            raise ValueError(f"user rows must lie in [0, {num_users})")
        order = time_order(users, items, ts)
        counts = np.bincount(users, minlength=num_users)
        return cls(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), items[order], int(num_items))

    def matrix(self) -> sp.csr_matrix:
        """(U, N) 0/1 matrix of the items each user has (for masking and item-kNN)."""
        rows = np.repeat(np.arange(self.num_users), self.lengths)
        out = sp.csr_matrix((np.ones(len(self.items)), (rows, self.items)), shape=(self.num_users, self.num_items))
        out.sum_duplicates()
        out.data[:] = 1.0
        return out

    def latest(self, num_latest: int) -> tuple[np.ndarray, np.ndarray]:
        """Each user's ``num_latest`` most recent distinct items, newest first: ``(ptr (U+1,), items)``."""
        if num_latest <= 0:
            raise ValueError(f"num_latest must be positive, got {num_latest}")
        if not len(self.items):
            return np.zeros(self.num_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
        users = np.repeat(np.arange(self.num_users), self.lengths)
        position = np.arange(len(self.items))  # increases with time within a user
        # Latest occurrence of each (user, item): sort by (user, item, newest first), keep the first.
        order = np.lexsort((-position, self.items, users))
        first = np.r_[True, (users[order][1:] != users[order][:-1]) | (self.items[order][1:] != self.items[order][:-1])]
        kept = order[first]
        # Newest first within each user, then the first num_latest.
        kept = kept[np.lexsort((-position[kept], users[kept]))]
        kept_users = users[kept]
        starts = np.searchsorted(kept_users, kept_users, side="left")
        kept = kept[np.arange(len(kept)) - starts < num_latest]
        counts = np.bincount(users[kept], minlength=self.num_users)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), self.items[kept].astype(np.int64)

    def latest_matrix(self, num_latest: int) -> sp.csr_matrix:
        """(U, N) 0/1 matrix of each user's ``num_latest`` most recent distinct items (queries for kNN)."""
        ptr, items = self.latest(num_latest)
        rows = np.repeat(np.arange(self.num_users), np.diff(ptr))
        return sp.csr_matrix((np.ones(len(items)), (rows, items)), shape=(self.num_users, self.num_items))

    def subset(self, keep: np.ndarray) -> Sequences:
        """The sequences with only the events where ``keep`` (an (E,) bool in this order) is True."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != self.items.shape:
            raise ValueError(f"keep must have one flag per event ({len(self.items)}), got shape {keep.shape}")
        counts = np.bincount(np.repeat(np.arange(self.num_users), self.lengths)[keep], minlength=self.num_users)
        return Sequences(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), self.items[keep],
                         self.num_items)


def targets_matrix(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int) -> sp.csr_matrix:
    """(U, N) 0/1 matrix with a 1 for every (user, item) pair given."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    out = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(num_users, num_items))
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


@dataclass(frozen=True)
class UserTargets:
    """What a user-level evaluation needs: the history (queries, masking) and the targets.

    Attributes:
        history: per-user sequences before the target slice.
        targets: (U, N) 0/1 held-out targets (users without any are not evaluated).
    """

    history: Sequences
    targets: sp.csr_matrix


def user_targets(
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    labels: np.ndarray,
    *,
    target_label: int,
    num_users: int,
    num_items: int,
    mode: str = "next",
) -> UserTargets:
    """Targets of one slice from labelled positive events (labels from ``TimeSplit.assign`` or
    ``split_per_user``: 0 train, 1 valid, 2 test).

    The history is every event labelled below ``target_label`` (for the test slice: train + valid, what
    is known when the test slice starts). Targets are pins the user had not engaged with before (a masked
    ranking cannot predict re-engagements): the earliest one in the slice (``mode="next"``) or all of them
    (``mode="window"``).

    Args:
        users, items, ts, labels: (E,) positive events.
        target_label: the slice to score (1 = valid, 2 = test).
        num_users, num_items: U, N.
        mode: ``"next"`` or ``"window"``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    labels = np.asarray(labels)
    ts = np.asarray(ts)
    before = labels < target_label
    history = Sequences.from_events(users[before], items[before], ts[before], num_users, num_items)
    seen = history.matrix()
    in_slice = np.flatnonzero(labels == target_label)
    s_users, s_items, s_ts = users[in_slice], items[in_slice], ts[in_slice]
    new = np.asarray(seen[s_users, s_items]).ravel() == 0 if len(in_slice) else np.zeros(0, dtype=bool)
    s_users, s_items, s_ts = s_users[new], s_items[new], s_ts[new]
    if mode == "next" and len(s_users):
        order = time_order(s_users, s_items, s_ts)
        s_users, s_items = s_users[order], s_items[order]
        first = np.r_[True, s_users[1:] != s_users[:-1]]
        s_users, s_items = s_users[first], s_items[first]
    return UserTargets(history, targets_matrix(s_users, s_items, num_users, num_items))


@dataclass(frozen=True)
class LeaveOneOut:
    """The leave-one-out split of per-user sequences (users with fewer than 3 items are train only).

    Attributes:
        train: every sequence without its last two items (all of it for short users).
        valid: history = train sequence, target = second-last item.
        test: history = everything but the last item, target = the last item.
    """

    train: Sequences
    valid: UserTargets
    test: UserTargets


def leave_one_out(sequences: Sequences, min_length: int = 3) -> LeaveOneOut:
    """Split each user's sequence: last item = test, second-last = validation, the rest = train."""
    if min_length < 3:
        raise ValueError(f"min_length must be at least 3 (one train, one valid, one test item), got {min_length}")
    lengths = sequences.lengths
    position = np.arange(len(sequences.items)) - np.repeat(sequences.ptr[:-1], lengths)
    from_end = np.repeat(lengths, lengths) - 1 - position
    split = np.repeat(lengths >= min_length, lengths)
    users = np.repeat(np.arange(sequences.num_users), lengths)
    n, u = sequences.num_items, sequences.num_users
    train = sequences.subset(~split | (from_end >= 2))
    valid_hist = train
    test_hist = sequences.subset(~split | (from_end >= 1))
    valid_t = split & (from_end == 1)
    test_t = split & (from_end == 0)
    return LeaveOneOut(
        train=train,
        valid=UserTargets(valid_hist, targets_matrix(users[valid_t], sequences.items[valid_t], u, n)),
        test=UserTargets(test_hist, targets_matrix(users[test_t], sequences.items[test_t], u, n)),
    )


# ---- the protocols ------------------------------------------------------------------------------


def evaluate_item_to_item(
    scorer: Scorer,
    query_items: np.ndarray,
    target_items: np.ndarray,
    num_items: int,
    *,
    split: str,
    ks: Sequence[int] = (10,),
    ties: str = "pessimistic",
    mrr_scale: int | None = None,
    chunk_size: int | None = None,
) -> RankingMetrics:
    """PinSage's offline protocol: rank each pair's target among all items, the query item masked.

    Args:
        scorer: item-level scorer (row ``q`` = query item ``q``), e.g. ``EmbeddingScorer(pin_vectors)``.
        query_items: (P,) query item rows.
        target_items: (P,) the item engaged next after each query.
        num_items: N.
        split: the slice the pairs come from (goes into the protocol string).
        ks, ties, mrr_scale, chunk_size: see ``evaluate_ranking``.

    Returns:
        One row per pair (``query_ids`` = pair positions).

    Raises:
        ValueError: unequal lengths, rows out of range, or pairs whose target is the query itself.
    """
    query_items = np.asarray(query_items, dtype=np.int64)
    target_items = np.asarray(target_items, dtype=np.int64)
    if query_items.shape != target_items.shape or query_items.ndim != 1:
        raise ValueError(f"query_items and target_items must be equal-length 1-D arrays, got "
                         f"{query_items.shape} and {target_items.shape}")
    for name, rows in (("query_items", query_items), ("target_items", target_items)):
        if len(rows) and (rows.min() < 0 or rows.max() >= num_items):
            raise ValueError(f"{name} must lie in [0, {num_items})")
    self_pairs = int((query_items == target_items).sum())
    if self_pairs:
        raise ValueError(f"{self_pairs} pairs have the query as their own target; drop them before evaluating")
    protocol = Protocol(task=ITEM_TO_ITEM, split=split, masking="query masked", ties=ties)
    pairs = np.arange(len(query_items))
    return evaluate_ranking(
        ReindexedScorer(scorer, query_items),
        targets_matrix(pairs, target_items, len(pairs), num_items),
        seen=targets_matrix(pairs, query_items, len(pairs), num_items),
        protocol=str(protocol), ks=ks, ties=ties, mrr_scale=mrr_scale, chunk_size=chunk_size,
    )


def evaluate_users(
    scorer: Scorer,
    data: UserTargets,
    protocol: Protocol,
    *,
    ks: Sequence[int] = (10,),
    mask_history: bool = True,
    chunk_size: int | None = None,
) -> RankingMetrics:
    """User-level full ranking: each user's targets among all items, the history masked.

    Args:
        scorer: user-level scorer (row ``u`` = user ``u``), e.g. ``MultiVectorScorer`` over the latest pins.
        data: history and targets (``user_targets`` or ``leave_one_out``).
        protocol: the protocol (its ``masking`` must say what ``mask_history`` does).
        ks, chunk_size: see ``evaluate_ranking``.
        mask_history: remove the history from each user's ranking.
    """
    seen = data.history.matrix() if mask_history else None
    return evaluate_ranking(scorer, data.targets, seen=seen, protocol=str(protocol), ks=ks, ties=protocol.ties,
                            chunk_size=chunk_size)


# ---- the table ----------------------------------------------------------------------------------

TABLE_COLUMNS = ["model", "split", "metric", "value", "ci_low", "ci_high", "num_queries", "protocol"]


def evaluation_table(
    results: Sequence[tuple[str, str, RankingMetrics]],
    *,
    ci_samples: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    settings: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per (model, split, metric), every row carrying its protocol.

    Args:
        results: ``(model, split, result)`` triples, e.g. ``("pinsage", "test", metrics)``.
        ci_samples: bootstrap resamples for a per-metric confidence interval over queries (0: none, NaN).
        seed, confidence: see ``bootstrap_mean``.
        settings: one per result, the setting it was measured with (e.g. chosen on validation); adds a
            ``setting`` column after ``split``.

    Returns:
        A DataFrame with ``TABLE_COLUMNS`` (and ``setting`` when given).
    """
    if settings is not None and len(settings) != len(results):
        raise ValueError(f"{len(settings)} settings for {len(results)} results")
    rows = []
    for model, split, result in results:
        for name, values in result.values.items():
            low = high = float("nan")
            if ci_samples and result.num_queries:
                _, low, high = bootstrap_mean(values, num_samples=ci_samples, seed=seed, confidence=confidence)
            mean = float(values.mean()) if result.num_queries else float("nan")
            rows.append([model, split, name, mean, low, high, result.num_queries, result.protocol])
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if settings is not None:
        table.insert(2, "setting", np.repeat(list(settings), [len(r.values) for _, _, r in results]))
    return table


def format_table(table: pd.DataFrame, metrics: Sequence[str] | None = None) -> str:
    """A Markdown table per protocol: models x metrics (``value [ci_low, ci_high]`` when present)."""
    lines = []
    for protocol, group in table.groupby("protocol", sort=False):
        names = list(metrics) if metrics else list(dict.fromkeys(group["metric"]))
        lines += [f"Protocol: {protocol}", "", "| model | split | queries | " + " | ".join(names) + " |",
                  "|" + "---|" * (3 + len(names))]
        for (model, split), rows in group.groupby(["model", "split"], sort=False):
            by_metric = rows.set_index("metric")
            cells = []
            for name in names:
                if name not in by_metric.index:
                    cells.append("")
                    continue
                row = by_metric.loc[name]
                cell = f"{row['value']:.4f}"
                if not np.isnan(row["ci_low"]):
                    cell += f" [{row['ci_low']:.4f}, {row['ci_high']:.4f}]"
                cells.append(cell)
            lines.append(f"| {model} | {split} | {int(rows['num_queries'].iloc[0])} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
