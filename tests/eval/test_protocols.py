"""Protocols: sequences, target construction, the item-to-item and user protocols, the result table."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from embeddings.data.engagement import TEST, TRAIN, VALID
from embeddings.eval.baselines import item_popularity
from embeddings.eval.bootstrap import paired_bootstrap, paired_values
from embeddings.eval.protocols import (
    LEAVE_ONE_OUT,
    USER_NEXT,
    USER_WINDOW,
    Protocol,
    Sequences,
    UserTargets,
    evaluate_item_to_item,
    evaluate_users,
    evaluation_table,
    format_table,
    leave_one_out,
    user_targets,
)
from embeddings.eval.scorers import CandidateScorer, EmbeddingScorer, ItemScoresScorer, MultiVectorScorer


def test_protocol_string_names_every_choice():
    p = Protocol(task=USER_NEXT, split="per-user split test")
    assert str(p) == "user next-save | full ranking over all pins, seen masked | per-user split test | ties pessimistic"
    with pytest.raises(ValueError, match="ties must be one of"):
        Protocol(task=USER_NEXT, split="x", ties="optimistic")
    with pytest.raises(ValueError, match="protocol split must not be empty"):
        Protocol(task=USER_NEXT, split="")


def test_sequences_order_by_time_then_item_and_latest_are_distinct_newest_first():
    seqs = Sequences.from_events(users=[1, 0, 0, 0, 0], items=[2, 3, 1, 3, 2], ts=[5, 4, 2, 3, 1],
                                 num_users=3, num_items=4)
    assert seqs.ptr.tolist() == [0, 4, 5, 5]
    assert seqs.items.tolist() == [2, 1, 3, 3, 2]  # user 0 by ts 1, 2, 3, 4; then user 1
    ptr, items = seqs.latest(2)
    assert ptr.tolist() == [0, 2, 3, 3] and items.tolist() == [3, 1, 2]
    assert seqs.latest_matrix(1).toarray().tolist() == [[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert seqs.matrix().toarray().tolist() == [[0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"user rows must lie in \[0, 3\)"):
        Sequences.from_events([3], [0], [0], 3, 4)


def test_user_targets_next_and_window_skip_reengagements():
    # user 0: history 0, 1; slice: 1 (seen before: skipped), then 3, then 2.  user 1: only history.
    users = [0, 0, 0, 0, 0, 1]
    items = [0, 1, 1, 3, 2, 2]
    ts = [1, 2, 10, 11, 12, 1]
    labels = [TRAIN, VALID, TEST, TEST, TEST, TRAIN]
    nxt = user_targets(users, items, ts, labels, target_label=TEST, num_users=2, num_items=4, mode="next")
    assert nxt.targets.toarray().tolist() == [[0, 0, 0, 1], [0, 0, 0, 0]]
    assert nxt.history.items.tolist() == [0, 1, 2]  # train + valid are history for the test slice
    win = user_targets(users, items, ts, labels, target_label=TEST, num_users=2, num_items=4, mode="window")
    assert win.targets.toarray().tolist() == [[0, 0, 1, 1], [0, 0, 0, 0]]
    valid = user_targets(users, items, ts, labels, target_label=VALID, num_users=2, num_items=4)
    assert valid.targets.toarray().tolist() == [[0, 1, 0, 0], [0, 0, 0, 0]]
    assert valid.history.items.tolist() == [0, 2]
    with pytest.raises(ValueError, match="mode must be one of"):
        user_targets(users, items, ts, labels, target_label=TEST, num_users=2, num_items=4, mode="all")


def test_leave_one_out_split():
    seqs = Sequences(np.array([0, 4, 6, 9]), np.array([3, 1, 3, 2, 0, 1, 2, 0, 1]), 4)
    loo = leave_one_out(seqs)
    assert loo.train.ptr.tolist() == [0, 2, 4, 5] and loo.train.items.tolist() == [3, 1, 0, 1, 2]  # user 1 is short
    assert loo.valid.targets.toarray().tolist() == [[0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]]
    assert loo.test.targets.toarray().tolist() == [[0, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]]
    assert loo.test.history.items.tolist() == [3, 1, 3, 0, 1, 2, 0]
    assert loo.valid.history is loo.train


def test_popularity_under_leave_one_out_with_history_masked():
    # Train parts (all but the last two): u0 [0, 1], u1 [0, 1], u2 [0, 2] -> popularity [3, 2, 1, 0, 0, 0].
    seqs = Sequences(np.array([0, 4, 8, 12]), np.array([0, 1, 2, 3, 0, 1, 3, 2, 0, 2, 3, 1]), 6)
    loo = leave_one_out(seqs)
    pop = item_popularity(loo.train.matrix())
    assert pop.tolist() == [3, 2, 1, 0, 0, 0]
    protocol = Protocol(task=LEAVE_ONE_OUT, split="leave-one-out test", masking="history masked")
    result = evaluate_users(ItemScoresScorer(pop), loo.test, protocol, ks=(1,))
    # u0: history {0,1,2} masked, target 3 ties with 4 and 5 at 0 -> rank 2.
    # u1: history {0,1,3}, target 2 (pop 1) beats 4, 5 -> rank 0.  u2: history {0,2,3}, target 1 -> rank 0.
    assert result.query_ids.tolist() == [0, 1, 2]
    assert result.best_rank.tolist() == [2.0, 0.0, 0.0]
    assert result.metric("hr@1").tolist() == [0.0, 1.0, 1.0]
    assert result.protocol == str(protocol)
    unmasked = evaluate_users(ItemScoresScorer(pop), loo.test, protocol, ks=(1,), mask_history=False)
    assert unmasked.best_rank.tolist() == [5.0, 2.0, 1.0]  # history items now outrank the targets


def test_item_to_item_masks_the_query_and_rejects_self_pairs():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]])
    result = evaluate_item_to_item(EmbeddingScorer(vectors), np.array([0, 0, 2]), np.array([1, 2, 3]), 4,
                                   split="time split valid", ks=(1, 2))
    # pair 0: query 0 -> 1 is its nearest other pin (rank 0); pair 1: 0 -> 2 is last (rank 2);
    # pair 2: query 2 -> 3 is nearest (rank 0).
    assert result.best_rank.tolist() == [0.0, 2.0, 0.0]
    assert result.metric("hr@1").tolist() == [1.0, 0.0, 1.0]
    assert result.query_ids.tolist() == [0, 1, 2]
    assert result.protocol.startswith("item-to-item next engagement | full ranking over all pins, query masked")
    with pytest.raises(ValueError, match="1 pairs have the query as their own target"):
        evaluate_item_to_item(EmbeddingScorer(vectors), np.array([0, 1]), np.array([0, 2]), 4, split="x")
    with pytest.raises(ValueError, match=r"target_items must lie in \[0, 4\)"):
        evaluate_item_to_item(EmbeddingScorer(vectors), np.array([0]), np.array([4]), 4, split="x")


def _planted(rng, num_users=300, num_items=200, num_topics=5, dim=8):
    """Users with one topic each; items of that topic are what they save next. A topic-aware embedding
    should beat popularity, and the paired bootstrap should say so."""
    item_topic = rng.integers(0, num_topics, num_items)
    centers = rng.normal(size=(num_topics, dim)) * 3
    item_vectors = centers[item_topic] + rng.normal(size=(num_items, dim))
    user_topic = rng.integers(0, num_topics, num_users)
    users, items, ts, labels = [], [], [], []
    for u in range(num_users):
        own = np.flatnonzero(item_topic == user_topic[u])
        chosen = rng.choice(own, size=6, replace=False)
        users += [u] * 6
        items += chosen.tolist()
        ts += list(range(6))
        labels += [TRAIN] * 4 + [VALID, TEST]
    return (np.array(users), np.array(items), np.array(ts), np.array(labels), item_vectors)


def test_embedding_model_beats_popularity_on_planted_topics():
    rng = np.random.default_rng(0)
    users, items, ts, labels, item_vectors = _planted(rng)
    data = user_targets(users, items, ts, labels, target_label=TEST, num_users=300, num_items=200, mode="window")
    protocol = Protocol(task=USER_WINDOW, split="planted test")
    ptr, latest = data.history.latest(3)
    model = evaluate_users(MultiVectorScorer(item_vectors, ptr, latest, blend="max"), data, protocol, ks=(10,))
    pop = evaluate_users(ItemScoresScorer(item_popularity(data.history.matrix())), data, protocol, ks=(10,))
    a, b = paired_values(model, pop, "recall@10")
    _, low, _ = paired_bootstrap(a, b, seed=0)
    assert low > 0 and model.mean()["recall@10"] > 0.1
    # A Pixie-like generator plugs into the same code: the 20 nearest pins of the latest three.
    def generate(pins, weights):
        sims = item_vectors[pins] @ item_vectors.T
        best = np.argsort(-sims.max(axis=0))[:20]
        return best, sims.max(axis=0)[best]

    walks = evaluate_users(CandidateScorer(generate, data.history.latest_matrix(3), 200), data, protocol, ks=(10,))
    assert walks.query_ids.tolist() == model.query_ids.tolist()
    assert walks.mean()["recall@10"] > pop.mean()["recall@10"]


def test_evaluation_table_carries_protocols_and_intervals():
    protocol = Protocol(task=USER_NEXT, split="t")
    targets = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    seqs = Sequences(np.array([0, 1, 2]), np.array([2, 2]), 3)
    result = evaluate_users(ItemScoresScorer(np.array([3.0, 1.0, 0.0])), UserTargets(seqs, targets), protocol,
                            ks=(1,))
    table = evaluation_table([("pop", "test", result)], ci_samples=50)
    assert list(table.columns) == ["model", "split", "metric", "value", "ci_low", "ci_high", "num_queries",
                                   "protocol"]
    row = table.set_index("metric").loc["hr@1"]
    assert row["value"] == 0.5 and row["num_queries"] == 2 and row["protocol"] == str(protocol)
    assert row["ci_low"] <= 0.5 <= row["ci_high"]
    text = format_table(table, ["hr@1", "mrr"])
    assert text.startswith(f"Protocol: {protocol}")
    assert "| pop | test | 2 | 0.5000 [" in text
