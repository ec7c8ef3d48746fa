"""bench/diagnostics/pinnersage_valid.py's helpers on literal data: popularity ranks, the mean of the latest
k actions, the planted-interest oracle."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from embeddings.data.engagement import TRAIN, VALID
from embeddings.pinnersage.evaluation import EvaluationData, PinnerSageEvaluator

_PATH = Path(__file__).resolve().parents[2] / "bench" / "diagnostics" / "pinnersage_valid.py"
_spec = importlib.util.spec_from_file_location("pinnersage_valid", _PATH)
diag = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diag)

DAY0 = np.datetime64("2026-10-01T12:00:00", "us")
DAY = np.timedelta64(1, "D")


def _evaluator() -> PinnerSageEvaluator:
    # user 0: pins 0, 1, 0 then 2 (valid); user 1: pin 0 then 3 (valid). Pins: e0, e1, e0+e1, e1.
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    data = EvaluationData(num_items=4, users=np.array([0, 0, 0, 0, 1, 1]), items=np.array([0, 1, 0, 2, 0, 3]),
                          ts=DAY0 + np.array([0, 1, 2, 5, 0, 5]) * DAY,
                          labels=np.array([TRAIN, TRAIN, TRAIN, VALID, TRAIN, VALID]),
                          split={"valid": "literal valid", "test": "literal test"}, max_users=0)
    return PinnerSageEvaluator(data, vectors, ks=(1,), tuning_metric="recall@1")


def test_popularity_ranks_count_history_users_per_pin():
    # pin 0: 2 users, pin 1: 1, pins 2 and 3: none (ties by pin row)
    assert diag.popularity_ranks(_evaluator()).tolist() == [0, 1, 2, 3]


def test_the_mean_of_the_latest_actions_counts_a_repeated_pin_twice():
    evaluator = _evaluator()
    users = np.array([0, 1])
    latest1 = diag.latest_mean_vectors(evaluator, users, 1)
    assert latest1.ptr.tolist() == [0, 1, 2] and latest1.num_clusters.tolist() == [1, 1]
    np.testing.assert_allclose(latest1.vectors, [[1, 0], [1, 0]])
    latest3 = diag.latest_mean_vectors(evaluator, users, 3)
    np.testing.assert_allclose(latest3.vectors[0], [2 / 3, 1 / 3], rtol=1e-6)


def test_the_oracle_queries_the_heaviest_planted_interests_by_their_topic_centres():
    evaluator = _evaluator()
    topics = np.array([0, 1, 0, 1])
    interests = sp.csr_matrix(np.array([[1, 1], [0, 1]]))
    out = diag.oracle_vectors(evaluator, np.array([0, 1]), topics, interests, popularity_weighted=False, lam=0.0)
    # user 0: topic 0 holds two of its three actions, so it comes first; user 1 holds topic 1 only
    assert out.ptr.tolist() == [0, 2, 3] and out.num_clusters.tolist() == [2, 1]
    centre0 = (np.array([1.0, 0.0]) + np.array([1.0, 1.0]) / np.sqrt(2)) / 2
    np.testing.assert_allclose(out.vectors[0], centre0 / np.linalg.norm(centre0), rtol=1e-6)
    np.testing.assert_allclose(out.vectors[2], [0, 1], atol=1e-7)
    np.testing.assert_allclose(out.weights[:2], [2 / 3, 1 / 3], rtol=1e-6)
