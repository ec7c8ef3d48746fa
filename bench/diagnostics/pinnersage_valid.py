"""Why the decayed average out-retrieves 3 medoids on the synthetic world: measured on VALID only (never TEST).

    .venv/bin/python bench/diagnostics/pinnersage_valid.py --lake var/bench/pinnersage-world-90d/lake

Reads the lake the way ``bench/pinnersage.py --sections synthetic`` does (its ``--ds``, 90-day window, 7-day
slices, 2,000 users), then scores on the VALID slice, with the evaluation's own code (recall@50, history
masked, full ranking), each of:

* the methods at fixed settings (``--alphas``, ``--lam``), each at every pull of ``--pulls``
  (``embeddings.pinnersage.retrieval.pull_queries``);
* the mean of the user's latest k actions for each k of ``--latest``: how the mean of more pins leans to
  popular ones;
* an oracle: the user's planted VALID interests (``synthetic_user_interests``), the 3 heaviest by the user's
  decayed actions in them, each queried by its topic's centre (mean of its pins' unit vectors, uniform or
  weighted by popularity).

Beside recall, for each method: the median popularity rank of its top 50 pins and the share of them among
the 1% most engaged pins (popularity = history engagements of the slice; rank 0 is the most engaged).
Prints one JSON line per row and records nothing: docs/PINNERSAGE.md keeps what it decided.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from embeddings.data.engagement import TimeSplit  # noqa: E402
from embeddings.lake import Lake  # noqa: E402
from embeddings.pinnersage.data import load_evaluation_inputs  # noqa: E402
from embeddings.pinnersage.evaluation import (  # noqa: E402
    PinnerSageEvaluator,
    UserVectors,
    decayed_average_vectors,
    kmeans_vectors,
    last_pin_vectors,
    pinnersage_vectors,
)
from embeddings.pinnersage.medoids import action_weights  # noqa: E402

DIVERSITY_K = 50


def popularity_ranks(evaluator: PinnerSageEvaluator) -> np.ndarray:
    """(N,) rank of each pin by its engagements in the VALID slice's history (0: the most engaged)."""
    history = evaluator.slices["valid"].targets.history.matrix()
    counts = np.asarray((history > 0).sum(axis=0)).ravel()
    order = np.lexsort((np.arange(len(counts)), -counts))
    ranks = np.empty(len(counts), np.int64)
    ranks[order] = np.arange(len(counts))
    return ranks


def top_pins(evaluator: PinnerSageEvaluator, vectors: UserVectors, blend: str, users: np.ndarray) -> np.ndarray:
    """(R, 50) each user's top pins by the evaluation's scorer, history masked."""
    s = evaluator.slices["valid"]
    history = s.targets.history.matrix().tocsr()
    scorer = vectors.scorer(evaluator.pin_vectors, blend, seen=history, depth=100)
    out = []
    for start in range(0, len(users), 250):
        rows = users[start:start + 250]
        scores = scorer(rows)
        seen = history[rows].tocoo()
        scores[seen.row, seen.col] = -np.inf
        out.append(np.argpartition(-scores, DIVERSITY_K, axis=1)[:, :DIVERSITY_K])
    return np.concatenate(out)


def row(evaluator: PinnerSageEvaluator, ranks: np.ndarray, name: str, vectors: UserVectors,
        blend: str = "interleave", pull: float = 0.0) -> dict:
    started = time.perf_counter()
    if pull:
        vectors = vectors.pulled(evaluator.direction, pull)
    recall = evaluator.evaluate(vectors, "valid", blend).mean()["recall@50"]
    users = evaluator.slices["valid"].users()
    top = ranks[top_pins(evaluator, vectors, blend, users)]
    out = {"method": name, "blend": blend, "pull": pull, "valid_recall@50_x100": round(100 * recall, 2),
           "top50_median_popularity_rank": float(np.median(top)),
           "top50_share_in_top1pct": round(float((top < len(ranks) / 100).mean()), 3),
           "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(out), flush=True)
    return out


def latest_mean_vectors(evaluator: PinnerSageEvaluator, users: np.ndarray, k: int) -> UserVectors:
    """The mean of the unit vectors of each user's latest ``k`` actions (a pin engaged twice counts twice)."""
    history = evaluator.slices["valid"].history
    unit = evaluator.pin_vectors
    vectors = np.zeros((len(users), unit.shape[1]), np.float32)
    for i, u in enumerate(users):
        items, _ = history.user(int(u))
        vectors[i] = unit[items[::-1][:k]].mean(axis=0)
    counts = np.zeros(history.num_users, np.int64)
    counts[users] = 1
    return UserVectors(np.concatenate([[0], np.cumsum(counts)]), vectors, np.ones(len(users)), counts)


def oracle_vectors(evaluator: PinnerSageEvaluator, users: np.ndarray, item_topics: np.ndarray,
                   interests, popularity_weighted: bool, lam: float) -> UserVectors:
    """Up to 3 topic centres per user: the user's planted VALID interests, heaviest by decayed actions first."""
    unit = evaluator.pin_vectors.astype(np.float64)
    num_topics = int(item_topics.max()) + 1
    history = evaluator.slices["valid"].history
    weight = np.ones(len(unit))
    if popularity_weighted:
        weight += np.asarray((evaluator.slices["valid"].targets.history.matrix() > 0).sum(axis=0)).ravel()
    centres = np.zeros((num_topics, unit.shape[1]))
    np.add.at(centres, item_topics, unit * weight[:, None])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    interests = interests.tocsr()
    counts = np.zeros(history.num_users, np.int64)
    vectors, weights = [], []
    for u in users:
        items, ts_us = history.user(int(u))
        topics = interests.indices[interests.indptr[u]:interests.indptr[u + 1]]
        if not len(topics) or not len(items):
            continue
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(ts_us.max()) // 86_400_000_000)
        w_actions = action_weights(ts_us, day, lam)
        mass = np.array([w_actions[item_topics[items] == t].sum() for t in topics])
        top = np.argsort(-mass, kind="stable")[:3]
        counts[u] = len(top)
        vectors.append(centres[topics[top]])
        weights.append((mass[top] + 1e-9) / (mass[top] + 1e-9).sum())
    ptr = np.concatenate([[0], np.cumsum(counts)])
    return UserVectors(ptr, np.concatenate(vectors).astype(np.float32), np.concatenate(weights), counts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default="var/bench/pinnersage-world-90d/lake")
    parser.add_argument("--ds", default="2026-11-01")
    parser.add_argument("--window-days", type=int, default=90)
    parser.add_argument("--holdout-days", type=int, default=7)
    parser.add_argument("--max-users", type=int, default=2000)
    parser.add_argument("--alphas", type=float, nargs="+", default=(0.3, 0.6, 1.0))
    parser.add_argument("--lam", type=float, default=0.1, help="importance decay of every method (per day)")
    parser.add_argument("--pulls", type=float, nargs="+", default=(0.0, 0.2, 0.4, 0.7, 1.0))
    parser.add_argument("--latest", type=int, nargs="+", default=(1, 3, 10, 30, 100, 500))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    split = TimeSplit(ds=dt.date.fromisoformat(args.ds), window_days=args.window_days,
                      valid_days=args.holdout_days, test_days=args.holdout_days)
    inputs = load_evaluation_inputs(Lake(args.lake), split, max_users=args.max_users, seed=0)
    if inputs.item_topics is None or inputs.user_interests is None:
        raise SystemExit(f"{args.lake} is not a synthetic lake (no planted topics or interests)")
    evaluator = PinnerSageEvaluator(inputs.data, inputs.pin_vectors, item_topics=inputs.item_topics)
    ranks = popularity_ranks(evaluator)
    s = evaluator.slices["valid"]
    users = s.users()
    targets = s.targets.targets.tocsr()[users].tocoo()
    print(json.dumps({"valid_users": len(users), "targets": int(targets.nnz),
                      "target_median_popularity_rank": float(np.median(ranks[targets.col])),
                      "target_share_in_top1pct": round(float((ranks[targets.col] < len(ranks) / 100).mean()), 3),
                      "spearman_cosine_to_corpus_direction_vs_popularity": round(float(spearmanr(
                          evaluator.pin_vectors @ evaluator.direction, -ranks).correlation), 3)}), flush=True)

    methods = [("decayed average", decayed_average_vectors(s.history, evaluator.pin_vectors, users, lam=args.lam),
                ("interleave",)),
               ("last pin", last_pin_vectors(s.history, evaluator.pin_vectors, users), ("interleave",)),
               ("k-means k 8", kmeans_vectors(s.history, evaluator.pin_vectors, users, num_clusters=8, lam=args.lam),
                ("interleave",))]
    for alpha in args.alphas:
        methods.append((f"3 medoids alpha {alpha:g}", pinnersage_vectors(
            s.history, evaluator.pin_vectors, users, alpha=alpha, lam=args.lam), ("interleave", "sum")))
        methods.append((f"3 centroids alpha {alpha:g}", pinnersage_vectors(
            s.history, evaluator.pin_vectors, users, alpha=alpha, lam=args.lam, representative="centroid"),
            ("interleave",)))
    for pull in args.pulls:
        for name, vectors, blends in methods:
            for blend in blends:
                row(evaluator, ranks, name, vectors, blend, pull)
    for k in args.latest:
        row(evaluator, ranks, f"mean of the latest {k} actions", latest_mean_vectors(evaluator, users, k))
    for weighted in (False, True):
        row(evaluator, ranks, f"oracle: 3 planted interests, {'popularity-weighted' if weighted else 'uniform'} "
            "topic centres", oracle_vectors(evaluator, users, inputs.item_topics, inputs.user_interests["valid"],
                                            weighted, args.lam))


if __name__ == "__main__":
    main()
