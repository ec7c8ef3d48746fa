"""bench/pinnerformer_public.py's pieces on tiny literal data: the action clock, the sequences of a split,
and the table's methods on one set of slices (no dataset files, no PinSage training)."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench import pinnerformer_public as public
from embeddings.data.engagement import TEST, TRAIN, VALID
from embeddings.pinnersage.evaluation import PinnerSageEvaluator

DAY = np.timedelta64(1, "D")


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    public.add_arguments(parser)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args([])
    for k, v in overrides.items():
        setattr(args, k, v)
    return args


def test_the_action_clock_counts_each_users_actions_in_order():
    users = np.array([1, 0, 1, 0, 1])
    order = np.lexsort((np.array([5, 1, 3, 2, 4]), users))  # user 0: events 1, 3; user 1: 0, 2, 4
    clock = public._action_clock(users, order)
    assert ((clock - public.T0) // public.DAY_S).tolist() == [2, 0, 0, 1, 1]


def test_sequences_put_the_slices_in_order_and_the_target_slice_in_the_future():
    t = np.datetime64("2011-01-01T00:00:00", "us")
    # User 0: two TRAIN saves on one day (pins 3 then 1 by pin row: 1 first), a VALID and a TEST save on the
    # next; user 1: one TRAIN save, tied in time with its VALID save (TRAIN first).
    data = public.PublicData(
        "tiny", num_pins=6,
        users=np.array([0, 0, 0, 0, 1, 1]), items=np.array([3, 1, 4, 5, 2, 0]),
        ts=np.array([t, t, t + DAY, t + DAY, t, t]),
        labels=np.array([TRAIN, TRAIN, VALID, TEST, VALID, TRAIN], dtype=np.int8))
    seqs = public.sequences(data, [TRAIN], VALID, max_length=8, window_days=1e4, min_actions=1)
    assert seqs.user_ids.tolist() == [0, 1]
    inputs = [seqs.pins[seqs.input_start[u]:seqs.input_end[u]].tolist() for u in range(2)]
    assert inputs == [[1, 3], [0]]
    assert seqs.future_matrix("window").toarray()[:, [4, 2]].tolist() == [[1, 0], [0, 1]]
    # Histories for TEST: TRAIN then VALID, no future; the clock is one day per action.
    test_history = public.sequences(data, [TRAIN, VALID], None, max_length=8, window_days=1.0, min_actions=1)
    assert test_history.pins[test_history.input_start[0]:test_history.input_end[0]].tolist() == [1, 3, 4]
    assert np.diff(test_history.ts[:3]).tolist() == [public.DAY_S] * 2
    # Training: the TRAIN slice cut by the split's rule (the last floor(20%) of n >= 3 actions, at least one).
    train = public.sequences(data, [TRAIN, VALID, TEST], None, max_length=8, window_days=1e4, min_actions=1,
                             holdout_share=0.2)
    assert [int(train.input_end[u] - train.input_start[u]) for u in range(2)] == [3, 2]
    assert train.future_matrix("window").toarray()[0].nonzero()[0].tolist() == [5]


def _tiny_public(num_users: int = 60, cycle: int = 20, length: int = 15, seed: int = 0) -> public.PublicData:
    """Users walking their topic's pins in a cycle longer than the walk (so every VALID and TEST pin is
    new to the user), split 60/20/20 by position in the walk."""
    rng = np.random.default_rng(seed)
    users, items, ts, labels = [], [], [], []
    t = np.datetime64("2011-01-01T00:00:00", "us")
    for u in range(num_users):
        topic, start = u % 4, rng.integers(cycle)
        for i in range(length):
            users.append(u)
            items.append(topic * cycle + (start + i) % cycle)
            ts.append(t + i * DAY)
            labels.append(TRAIN if i < 9 else VALID if i < 12 else TEST)
    return public.PublicData("tiny", 4 * cycle, np.array(users), np.array(items), np.array(ts),
                             np.array(labels, dtype=np.int8))


def test_every_method_of_the_table_scores_the_same_users_on_the_same_slices():
    torch.manual_seed(0)
    data = _tiny_public()
    args = _args(public_epochs=3, public_patience=3, public_max_length=16, public_max_users=0)
    pins = np.random.default_rng(0).normal(size=(data.num_pins, 8)).astype(np.float32)
    evaluator = PinnerSageEvaluator(data.evaluation_data(0), pins, tuning_metric=public.TUNING_METRIC)
    sparse = public.sparse_methods(evaluator)
    assert [m.name for m in sparse] == ["popularity", "item_knn_history"]
    for objective in ("next_action", "dense_all_action"):  # both find labels in the cut TRAIN slice
        model, summary = public.train_pinnerformer(data, pins, objective, 0, args)
        assert summary["epochs"] == 3 and len(summary["valid_curve"]) == 3
    args = _args(public_epochs=2, public_patience=2, public_max_length=16, public_max_users=0, seeds=[0, 1],
                 public_lrs=[1e-3, 5e-3])
    models, record = public.pinnerformer_methods(data, pins, data.evaluation_data(0), "dense_all_action", args)
    assert [m.name for m in models] == ["PinnerFormer dense_all_action seed 0", "PinnerFormer dense_all_action seed 1"]
    chosen = max(record["valid_by_learning_rate"], key=lambda item: item[1])[0]
    assert record["learning_rate"] == chosen and all(t["learning_rate"] == chosen for t in record["training"])
    assert len(models[0].tuning) == 2 and models[1].tuning == [
        (f"lr={chosen:g}", models[1].results["valid"].metric("recall@10").mean())]
    method = models[0]
    for m in [*sparse, *models]:
        assert m.results["test"].query_ids.tolist() == list(range(60)), m.name
        assert "per-user split test" in m.results["test"].protocol
        recall = m.results["test"].metric("recall@10")
        assert ((recall >= 0) & (recall <= 1)).all()
    recall = {m.name: m.results["test"].metric("recall@10").mean() for m in [*sparse, method]}
    # item-kNN over the history ranks the user's own topic first: it beats popularity by far.
    assert recall["item_knn_history"] > recall["popularity"] + 0.3, recall
