"""Objectives (which positions predict which pins) and the softmax losses (masking, logQ)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embeddings.data.schemas import Action
from embeddings.pinnerformer.data import SequenceOptions, build_user_sequences
from embeddings.pinnerformer.loss import (
    full_softmax_loss,
    in_batch_log_q,
    own_positive_keys,
    sample_queries,
    sampled_softmax_loss,
)
from tests.pinnerformer.tiny_data import HOUR, NOW, T0

DAY = 24 * HOUR


def _seqs(window_days: float = 28.0):
    """User 10: pins 0..5 hourly, then pin 6 at +40 days; input up to pin 3 (cutoff after 4 tokens).
    User 20: pins 7, 8 (input), 9 (future)."""
    rows = [(10, p, T0 + p * HOUR) for p in range(6)] + [(10, 6, T0 + 40 * DAY)]
    rows += [(20, 7, T0), (20, 8, T0 + HOUR), (20, 9, T0 + 2 * HOUR)]
    users, pins, ts = (np.asarray(c) for c in zip(*rows))
    cutoff = np.where(users == 10, T0 + 3 * HOUR, T0 + HOUR)
    n = len(users)
    return build_user_sequences(users, pins, np.full(n, Action.SAVE.code), np.zeros(n), np.full(n, np.nan), ts,
                                num_pins=12, now_ts=NOW + 100 * DAY, cutoff_ts=cutoff,
                                options=SequenceOptions(window_days=window_days))


def _pairs(q):
    return sorted(zip(q.user.tolist(), q.position.tolist(), q.target.tolist()))


def test_next_action_and_sasrec_queries():
    seqs, rng = _seqs(), np.random.default_rng(0)
    users = np.array([0, 1])
    assert _pairs(sample_queries(seqs, users, "next_action", rng)) == [(0, 3, 4), (1, 1, 9)]
    assert _pairs(sample_queries(seqs, users, "sasrec", rng)) == [(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4),
                                                                   (1, 0, 8), (1, 1, 9)]
    # Batch order is kept: the same users the other way round.
    assert _pairs(sample_queries(seqs, np.array([1, 0]), "next_action", rng)) == [(0, 1, 9), (1, 3, 4)]


def test_all_action_predicts_every_positive_of_the_window_from_the_latest_position():
    seqs, rng = _seqs(), np.random.default_rng(0)
    # User 10's future within 28 days: pins 4, 5 (pin 6 is 40 days later; build_user_sequences dropped it).
    assert _pairs(sample_queries(seqs, np.array([0, 1]), "all_action", rng)) == [(0, 3, 4), (0, 3, 5), (1, 1, 9)]
    capped = sample_queries(seqs, np.array([0, 1]), "all_action", rng, max_targets=1)
    assert sorted(capped.user.tolist()) == [0, 1]


def test_dense_all_action_targets_lie_in_each_positions_window():
    seqs = _seqs(window_days=2 / 24)  # a 2-hour window: position i may predict pins i+1, i+2
    seen = set()
    for seed in range(30):
        q = sample_queries(seqs, np.array([0, 1]), "dense_all_action", np.random.default_rng(seed), num_positions=3)
        assert np.bincount(q.user, minlength=2).tolist() == [3, 2]  # at most 3 positions; user 20 has 2 tokens
        for user, position, target in _pairs(q):
            first = 0 if user == 0 else 7
            assert first + position < target <= first + position + 2
            seen.add((user, position, target))
    # Every (position, target) of user 10's windows was drawn at some point: positions and targets are random.
    assert {(p, t) for u, p, t in seen if u == 0} == {(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (3, 5)}


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="objective must be one of"):
        sample_queries(_seqs(), np.array([0]), "next_click", np.random.default_rng(0))


def test_own_positive_keys_cover_tokens_and_future():
    seqs = _seqs()
    keys = own_positive_keys(seqs, np.array([1, 0]))  # batch row 0 = user 20, row 1 = user 10
    assert keys.tolist() == sorted([7, 8, 9] + [12 + p for p in range(6)])


def _unit(x):
    return F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def _manual(q, cands, allowed, log_q, tau):
    logits = q @ cands.T / tau - log_q
    logits = logits.masked_fill(~torch.tensor(allowed, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(q)))


def test_own_positives_are_masked_among_in_batch_and_random_negatives():
    torch.manual_seed(0)
    q = _unit(torch.randn(3, 4))
    targets = torch.tensor([1, 2, 3])  # queries 0 and 1 of user 0 (positives {1, 2}), query 2 of user 1 ({1, 3})
    users = torch.tensor([0, 0, 1])
    negatives = torch.tensor([1, 4])
    t_emb, n_emb = _unit(torch.randn(3, 4)), _unit(torch.randn(2, 4))
    keys = torch.tensor(sorted([0 * 10 + 1, 0 * 10 + 2, 1 * 10 + 1, 1 * 10 + 3]))
    loss = sampled_softmax_loss(q, users, targets, t_emb, 0.1, num_pins=10, own_keys=keys, negatives=negatives,
                                negative_embeddings=n_emb)
    allowed = [[1, 0, 1, 0, 1],
               [0, 1, 1, 0, 1],
               [0, 1, 1, 0, 1]]
    expected = _manual(q, torch.cat([t_emb, n_emb]), allowed, torch.zeros(5), 0.1)
    torch.testing.assert_close(loss, expected)
    # A masked candidate's embedding does not matter; an allowed one's does.
    moved = t_emb.clone()
    moved[1] = -moved[1]  # pin 2: masked for query 0, allowed for query 2
    again = sampled_softmax_loss(q[:1], users[:1], targets, moved, 0.1, num_pins=10, own_keys=keys)
    first = sampled_softmax_loss(q[:1], users[:1], targets, t_emb, 0.1, num_pins=10, own_keys=keys)
    torch.testing.assert_close(again, first)


def test_random_only_uses_no_in_batch_negatives_and_in_batch_only_no_random_ones():
    torch.manual_seed(1)
    q, t_emb, n_emb = _unit(torch.randn(2, 4)), _unit(torch.randn(2, 4)), _unit(torch.randn(3, 4))
    targets, users, negatives = torch.tensor([1, 2]), torch.tensor([0, 1]), torch.tensor([5, 6, 7])
    keys = torch.tensor([1, 12])
    loss = sampled_softmax_loss(q, users, targets, t_emb, 0.5, num_pins=10, own_keys=keys, in_batch=False,
                                negatives=negatives, negative_embeddings=n_emb)
    expected = _manual(q, torch.cat([t_emb, n_emb]), [[1, 0, 1, 1, 1], [0, 1, 1, 1, 1]], torch.zeros(5), 0.5)
    torch.testing.assert_close(loss, expected)
    in_batch = sampled_softmax_loss(q, users, targets, t_emb, 0.5, num_pins=10, own_keys=keys)
    torch.testing.assert_close(in_batch, _manual(q, t_emb, [[1, 1], [1, 1]], torch.zeros(2), 0.5))
    with pytest.raises(ValueError, match="needs in-batch negatives or uniform negatives"):
        sampled_softmax_loss(q, users, targets, t_emb, 0.5, num_pins=10, own_keys=keys, in_batch=False)


def test_log_q_correction_subtracts_each_candidates_log_expected_count():
    counts = np.array([0, 6, 2, 2])  # pin 1 is 60% of the positives
    log_q = in_batch_log_q(counts, np.array([1, 2]))
    np.testing.assert_allclose(log_q, [math.log(2 * 0.6), math.log(2 * 0.2)], rtol=1e-6)
    torch.manual_seed(2)
    q, t_emb, n_emb = _unit(torch.randn(2, 4)), _unit(torch.randn(2, 4)), _unit(torch.randn(2, 4))
    targets, users, negatives = torch.tensor([1, 2]), torch.tensor([0, 1]), torch.tensor([3, 3])
    keys = torch.tensor([1, 7])  # user 0: pin 1, user 1: pin 2 (key = user * 5 + pin)
    corrected = sampled_softmax_loss(q, users, targets, t_emb, 0.2, num_pins=5, own_keys=keys, negatives=negatives,
                                     negative_embeddings=n_emb, target_log_q=torch.from_numpy(log_q),
                                     negative_log_q=math.log(2 / 4))
    full_log_q = torch.tensor([log_q[0], log_q[1], math.log(0.5), math.log(0.5)], dtype=torch.float32)
    expected = _manual(q, torch.cat([t_emb, n_emb]), [[1, 1, 1, 1]] * 2, full_log_q, 0.2)
    torch.testing.assert_close(corrected, expected)
    plain = sampled_softmax_loss(q, users, targets, t_emb, 0.2, num_pins=5, own_keys=keys, negatives=negatives,
                                 negative_embeddings=n_emb)
    assert not torch.allclose(corrected, plain)  # the correction changes the loss (popular pin 1 pays less)


def test_full_softmax_is_cross_entropy_over_every_pin():
    torch.manual_seed(3)
    q, pins = _unit(torch.randn(4, 8)), _unit(torch.randn(6, 8))
    targets = torch.tensor([0, 5, 2, 2])
    torch.testing.assert_close(full_softmax_loss(q, targets, pins, 0.1),
                               F.cross_entropy(q @ pins.T / 0.1, targets))
