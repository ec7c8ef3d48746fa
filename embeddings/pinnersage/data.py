"""The evaluation inputs of PinnerSage from the lake: labelled positive engagements and the pin embeddings.

Shared by the nightly evaluation (``jobs.evaluate_pinnersage``) and the synthetic benchmark
(``bench/pinnersage.py``), so both score the same data the same way: the positive engagements
(``engagement.positive_mask``) of the split's window on pins with a ``pin_embeddings`` row of ``ds``,
labelled by the nightly ``TimeSplit`` (docs/DATA.md), and, on synthetic lakes, the planted truth
(``synthetic_pin_topics``: topic per pin, ``synthetic_users``: number of interests per user,
``synthetic_user_interests``: the interests active on each day of the valid and test slices).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from embeddings.data.engagement import TEST, TRAIN, VALID, TimeSplit, positive_mask
from embeddings.data.schemas import (
    EVENTS,
    PIN_EMBEDDINGS,
    SYNTHETIC_PIN_TOPICS,
    SYNTHETIC_USER_INTERESTS,
    SYNTHETIC_USERS,
)
from embeddings.lake import Lake, Manifest
from embeddings.pinnersage.evaluation import EvaluationData, indicator_matrix

log = logging.getLogger(__name__)


class EvaluationInputError(ValueError):
    """The lake has nothing to evaluate for this ds (no events, no positive engagement on embedded pins)."""


@dataclass(frozen=True)
class EvaluationInputs:
    """Attributes:
        data: labelled positive engagements (users and pins as rows).
        pin_ids: (N,) int64 pin id of each row of ``pin_vectors``, ascending.
        pin_vectors: (N, d) float32 ``pin_embeddings`` of ds.
        user_ids: (U,) int64 user id of each user row.
        item_topics: (N,) int64 planted topic per pin, or None when the lake is not synthetic.
        planted_interests: (U,) int64 planted number of interests (-1 unknown), or None.
        user_interests: slice name -> (U, T) 0/1 the planted topics each user row was interested in on any
            day of the slice (``synthetic_user_interests``), or None.
        pin_topics: (N, T) 0/1 every planted topic of each pin (primary and secondary;
            ``synthetic_pin_topics.topics``), or None.
        model_versions: the ``model_version`` values of the embeddings (one: the champion's).
        manifests: the manifests read (events partitions and pin_embeddings), for lineage.
        stats: counts for the log and the record.
    """

    data: EvaluationData
    pin_ids: np.ndarray
    pin_vectors: np.ndarray
    user_ids: np.ndarray
    item_topics: np.ndarray | None
    planted_interests: np.ndarray | None
    model_versions: list[str]
    manifests: list[Manifest]
    stats: dict
    user_interests: dict[str, sp.csr_matrix] | None = None
    pin_topics: sp.csr_matrix | None = None


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, found): the position of each of ``ids`` in ``sorted_ids``."""
    if not len(sorted_ids):
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    rows = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
    return rows, sorted_ids[rows] == ids


def load_evaluation_inputs(lake: Lake, split: TimeSplit, *, max_users: int = 2000, seed: int = 0,
                           planted: bool = True) -> EvaluationInputs:
    """Read and label the evaluation inputs of ``split.ds``.

    Args:
        lake: the lake.
        split: the time split (its window, valid and test days).
        max_users: users scored per slice at most (seeded sample; 0 = all).
        seed: seeds the sample.
        planted: read the synthetic ground truth when the lake has it.

    Raises:
        EvaluationInputError: no committed events partition, or no positive engagement on an embedded pin, in
            the window. A missing ``pin_embeddings`` partition is the lake's ``PartitionMissingError``.
    """
    ds = split.ds
    emb = lake.read(PIN_EMBEDDINGS, ds, columns=["pin_id", "embedding", "model_version"])
    manifests = [lake.read_manifest(PIN_EMBEDDINGS, ds)]
    events, days = lake.read_range(EVENTS, split.start, ds, columns=["user_id", "pin_id", "action", "ts",
                                                                      "duration_ms"])
    if not events.num_rows:
        raise EvaluationInputError(f"no committed events partition with rows in {split.start}..{ds} in the lake "
                                   f"{lake.lake_uri}: nothing to evaluate PinnerSage on")
    manifests += [lake.read_manifest(EVENTS, d) for d in days]
    pin_ids = emb.column("pin_id").to_numpy().astype(np.int64)
    order = np.argsort(pin_ids, kind="stable")
    pin_ids = pin_ids[order]
    flat = emb.column("embedding").combine_chunks().flatten().to_numpy().astype(np.float32)
    pin_vectors = flat.reshape(len(order), -1)[order]
    versions = sorted(set(emb.column("model_version").to_pylist()))

    actions = events.column("action").to_numpy(zero_copy_only=False)
    duration = events.column("duration_ms").to_numpy(zero_copy_only=False)
    positive = positive_mask(actions, duration)
    ev_users = events.column("user_id").to_numpy()[positive].astype(np.int64)
    ev_pins = events.column("pin_id").to_numpy()[positive].astype(np.int64)
    ts = events.column("ts").to_numpy()[positive].astype("datetime64[us]")
    rows, embedded = _lookup(pin_ids, ev_pins)
    if not embedded.any():
        raise EvaluationInputError(f"no positive engagement on a pin of {lake.describe(PIN_EMBEDDINGS, ds)} in "
                                   f"the events of {split.start}..{ds}: nothing to evaluate PinnerSage on")
    user_ids, users = np.unique(ev_users[embedded], return_inverse=True)
    users = users.ravel().astype(np.int64)
    rows, ts = rows[embedded], ts[embedded]
    labels = split.assign(ts.astype("datetime64[D]"))

    item_topics = planted_interests = pin_topics = None
    if planted and lake.exists(SYNTHETIC_PIN_TOPICS):
        topics = lake.read(SYNTHETIC_PIN_TOPICS, columns=["pin_id", "primary_topic", "topics"])
        at, found = _lookup(pin_ids, topics.column("pin_id").to_numpy().astype(np.int64))
        item_topics = np.full(len(pin_ids), -1, np.int64)
        item_topics[at[found]] = topics.column("primary_topic").to_numpy()[found]
        if (item_topics < 0).any():
            raise ValueError(f"{int((item_topics < 0).sum())} embedded pins have no planted topic in "
                             f"synthetic_pin_topics (e.g. pin ids {pin_ids[item_topics < 0][:10].tolist()})")
        lists = topics.column("topics").combine_chunks()
        per_pin = np.diff(lists.offsets.to_numpy())
        pin_rows = np.repeat(at, per_pin)[np.repeat(found, per_pin)]
        topic_cols = lists.values.to_numpy().astype(np.int64)[np.repeat(found, per_pin)]
        num_topics = int(topic_cols.max(initial=item_topics.max())) + 1
        pin_topics = indicator_matrix(pin_rows, topic_cols, (len(pin_ids), num_topics))
    if planted and lake.exists(SYNTHETIC_USERS):
        table = lake.read(SYNTHETIC_USERS, columns=["user_id", "num_interests"])
        ids = table.column("user_id").to_numpy().astype(np.int64)
        by_id = np.argsort(ids)
        at, found = _lookup(ids[by_id], user_ids)
        counts = table.column("num_interests").to_numpy().astype(np.int64)[by_id]
        planted_interests = np.where(found, counts[at] if len(counts) else -1, -1)

    user_interests = None
    if item_topics is not None:  # synthetic_user_interests is read only where the lake is synthetic
        slice_days = {"valid": (split.valid_start, split.test_start - dt.timedelta(days=1)),
                      "test": (split.test_start, ds)}
        user_interests = {name: _interest_matrix(lake, first, last, user_ids, pin_topics.shape[1])
                          for name, (first, last) in slice_days.items()}
        if any(m is None for m in user_interests.values()):
            log.warning("synthetic_user_interests has no partition in the valid or the test days: no on_interest")
            user_interests = None

    describe = (f"window {split.window_days} days from {split.start}, valid {split.valid_start}.."
                f"{split.test_start - dt.timedelta(days=1)}, test {split.test_start}..{ds}")
    data = EvaluationData(num_items=len(pin_ids), users=users, items=rows, ts=ts, labels=labels,
                          split={"valid": f"time split valid at {ds} ({describe})",
                                 "test": f"time split test at {ds} ({describe})"},
                          mode="window", max_users=max_users, seed=seed)
    stats = {
        "events_days": [str(days[0]), str(days[-1]), len(days)],
        "events": events.num_rows,
        "positive_events": int(positive.sum()),
        "positive_events_without_embedding": int((~embedded).sum()),
        "positive_events_used": int(embedded.sum()),
        "per_slice": {"train": int((labels == TRAIN).sum()), "valid": int((labels == VALID).sum()),
                      "test": int((labels == TEST).sum())},
        "users": len(user_ids),
        "pins": len(pin_ids),
        "embedding_dim": int(pin_vectors.shape[1]),
        "pin_embeddings_model_version": versions,
    }
    if item_topics is not None:
        stats["topics"] = int(len(np.unique(item_topics)))
    if planted_interests is not None:
        stats["users_without_planted_interests"] = int((planted_interests < 0).sum())
    log.info("PinnerSage evaluation inputs for ds=%s: %s", ds, stats)
    return EvaluationInputs(data, pin_ids, pin_vectors, user_ids, item_topics, planted_interests, versions,
                            manifests, stats, user_interests, pin_topics)


def _interest_matrix(lake: Lake, first: dt.date, last: dt.date, user_ids: np.ndarray,
                     num_topics: int) -> sp.csr_matrix | None:
    """(U, T) 0/1: the topics each of ``user_ids`` had as a planted interest on any day of ``first..last``
    (the committed ``synthetic_user_interests`` partitions; topics past ``num_topics`` are left out); None
    when no partition falls in those days."""
    table, days = lake.read_range(SYNTHETIC_USER_INTERESTS, first, last, columns=["user_id", "topic"])
    if not days:
        return None
    rows, found = _lookup(user_ids, table.column("user_id").to_numpy().astype(np.int64))
    topics = table.column("topic").to_numpy().astype(np.int64)
    keep = found & (topics >= 0) & (topics < num_topics)
    return indicator_matrix(rows[keep], topics[keep], (len(user_ids), num_topics))  # several days count once

