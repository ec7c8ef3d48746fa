"""The future-window evaluation on tiny literal data: recall of all positives, masking, entropy, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embeddings.data.schemas import Action
from embeddings.pinnerformer.data import SequenceOptions, build_user_sequences
from embeddings.pinnerformer.evaluation import (
    DECAY_LAMS,
    FutureWindowEvaluator,
    future_window_slice,
    input_history,
    p90_coverage,
    recall_curve,
    results_table,
)
from embeddings.pinnersage.evaluation import topic_entropy

HOUR = 3600
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
CUTOFF = T0 + 100 * HOUR
SAVE, CLICK = Action.SAVE.code, Action.CLICK.code


def tiny_sequences():
    """Two users over 6 pins (rows 0..5).

    User 10: input saves of pins 0, 1 (and a short click on 4, not positive); after the cutoff saves of 2, 3
    and a re-save of 0 (every positive is a target, the re-engagement included), and a save of 5 after the
    14-day window (not a target).
    User 20: input saves of 3, 4; after the cutoff a save of 1 and a short click on 2 (not a target).
    """
    events = [  # user, pin, action, duration_s, hours after T0
        (10, 0, SAVE, np.nan, 1), (10, 1, SAVE, np.nan, 2), (10, 4, CLICK, 2.0, 3),
        (10, 2, SAVE, np.nan, 101), (10, 3, SAVE, np.nan, 102), (10, 0, SAVE, np.nan, 103),
        (10, 5, SAVE, np.nan, 100 + 15 * 24),
        (20, 3, SAVE, np.nan, 5), (20, 4, SAVE, np.nan, 6),
        (20, 1, SAVE, np.nan, 110), (20, 2, CLICK, 2.0, 111),
    ]
    users, pins, actions, duration, hours = (np.array(c) for c in zip(*events))
    return build_user_sequences(users, pins, actions, np.zeros(len(users), np.int64), duration.astype(np.float32),
                                T0 + hours * HOUR, num_pins=6, now_ts=T0 + 1000 * HOUR, cutoff_ts=CUTOFF,
                                options=SequenceOptions(max_length=8, window_days=14))


def test_slice_targets_are_every_future_positive_of_the_window_and_history_is_the_input():
    seqs = tiny_sequences()
    s = future_window_slice("test", seqs, seqs.user_ids, description="tiny")
    assert s.targets.toarray().tolist() == [[1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0]]
    assert s.history.toarray().tolist() == [[1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 0]]
    assert "held-out users test, tiny" in str(s.protocol) and "input history masked" in str(s.protocol)
    positive = input_history(seqs)  # the baselines' history: positive input actions only
    assert positive.items.tolist() == [0, 1, 3, 4] and positive.ptr.tolist() == [0, 2, 4]
    assert input_history(seqs, positive_only=False).items.tolist() == [0, 1, 4, 3, 4]


def _evaluator(seqs, pin_vectors, **kwargs):
    slices = {name: future_window_slice(name, seqs, seqs.user_ids, description="tiny") for name in ("valid", "test")}
    return FutureWindowEvaluator(slices, pin_vectors, **kwargs)


def test_recall_counts_all_positives_with_the_history_masked():
    seqs = tiny_sequences()
    pins = np.eye(6, dtype=np.float32)
    # User 10 prefers 0 > 4 > 2 > 1 > 5 > 3; 1 and 4 are masked (history, not targets), 0 is a target and
    # stays: ranking 0, 2, 5, 3 -> targets 0 (rank 0), 2 (rank 1), 3 (rank 3). User 20: 1 is first.
    users = np.array([[6, 3, 5, 1, 4, 2], [0, 9, 0, 0, 0, 0]], dtype=np.float32)
    result = _evaluator(seqs, pins).user_embeddings("model", {"valid": users, "test": users}, pins)
    test = result.results["test"]
    assert test.query_ids.tolist() == [0, 1]
    np.testing.assert_allclose(test.metric("recall@1"), [1 / 3, 1.0])
    np.testing.assert_allclose(recall_curve(test, (1, 5, 10)), [(1 / 3 + 1) / 2, 1.0, 1.0])
    ndcg = (1 + 1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    np.testing.assert_allclose(test.metric("ndcg@10"), [ndcg, 1.0])
    # The recommended top 10 mask the whole history (a re-engagement is not recommended): user 10 gets
    # 2, 5, 3 and user 20 gets 1, 0, 2, 5 (ties by pin row). 7 slots; 90% of them need 5 of the 6 pins.
    assert result.coverage["test"] == pytest.approx(5 / 6)


def test_baselines_are_tuned_on_valid_and_scored_on_test():
    seqs = tiny_sequences()
    rng = np.random.default_rng(0)
    pins = rng.normal(size=(6, 4)).astype(np.float32)
    # With 6 pins every recall@10 is 1; the reciprocal rank tells the settings apart.
    evaluator = _evaluator(seqs, pins, item_topics=np.array([0, 0, 1, 1, 2, 2]), tuning_metric="mrr")
    popular = evaluator.popularity(input_history(seqs), CUTOFF, days=(1, 100))
    # In the last 100 days before the cutoff pins 0, 1, 3, 4 have one saver each: each user's best target
    # ties with one other pin (rank 1, pessimistic). In the last day nobody saved: 4 pins tie (rank 3).
    assert popular.tuning == [(1, 0.25), (100, 0.5)] and popular.setting == 100
    methods = [popular, evaluator.last_pin(), evaluator.decayed_average(), evaluator.pinnersage(alphas=(1.0,))]
    # the medoids' importance decay is chosen over the decayed average's grid, with alpha
    assert [tuple(s)[:2] for s, _ in methods[3].tuning] == [(1.0, lam) for lam in DECAY_LAMS]
    assert methods[3].setting.lam in DECAY_LAMS and methods[2].setting in DECAY_LAMS
    table = results_table(methods)
    assert set(table["model"]) == {"popularity", "pinsage_last_pin", "pinsage_decayed_average",
                                   "pinnersage_3_medoids"}
    assert set(table["split"]) == {"valid", "test"}
    assert set(table["metric"]) == {f"{kind}@{k}" for kind in ("recall", "hr", "ndcg") for k in (10, 50, 100)} | {
        "mrr", "topic_entropy@50", "p90_coverage@10"}
    assert "recall@1" not in set(table["metric"])  # the curve's cut-offs stay out of the table
    assert (table["num_queries"] == 2).all() and table["value"].between(0, math.log2(3)).all()


def test_user_embeddings_must_cover_the_slice():
    seqs = tiny_sequences()
    pins = np.eye(6, dtype=np.float32)
    with pytest.raises(ValueError, match="model: 1 user embeddings for the valid slice's 2 users"):
        _evaluator(seqs, pins).user_embeddings("model", {"valid": pins[:1], "test": pins[:2]}, pins)


def test_p90_coverage_is_the_smallest_share_of_pins_covering_90_percent_of_slots():
    # 10 slots: pin 0 fills 6, pin 1 fills 3, pin 2 fills 1. 90% = 9 slots: pins 0 and 1 suffice.
    lists = np.array([[0, 1], [0, 1], [0, 1], [0, 2], [0, 0]])
    assert p90_coverage(lists, num_items=20) == pytest.approx(2 / 20)
    # Everyone gets a different pin: 9 of 10 pins are needed.
    assert p90_coverage(np.arange(10)[:, None], num_items=10) == pytest.approx(0.9)
    assert p90_coverage(np.array([[3, -1]]), num_items=4) == pytest.approx(0.25)  # -1 slots are empty
    assert math.isnan(p90_coverage(np.full((2, 3), -1), num_items=4))
    with pytest.raises(ValueError, match=r"top_items must hold pin rows in \[0, 4\) or -1"):
        p90_coverage(np.array([[4]]), num_items=4)
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\]"):
        p90_coverage(lists, num_items=20, share=0.0)


def test_interest_entropy_of_planted_topics():
    topics = np.array([0, 0, 1, 1, 2, 3])
    entropy = topic_entropy(np.array([[0, 1, -1, -1], [0, 2, -1, -1], [0, 2, 4, 5]]), topics)
    np.testing.assert_allclose(entropy, [0.0, 1.0, 2.0])
