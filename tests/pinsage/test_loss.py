"""Loss values on literal examples worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from embeddings.pinsage.loss import max_margin_loss, sampled_softmax_loss

Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
POS = torch.tensor([[0.6, 0.8], [0.0, 1.0]])  # positive scores 0.6 and 1.0
NEG = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # query 0 scores 1.0, 0.0; query 1 scores 0.0, 1.0


def test_max_margin_with_shared_negatives():
    # hinge terms: q0: (1.0 - 0.6 + 0.1) = 0.5, (0 - 0.6 + 0.1) -> 0; q1: (0 - 1 + 0.1) -> 0, (1 - 1 + 0.1) = 0.1
    assert max_margin_loss(Q, POS, NEG, margin=0.1).item() == pytest.approx(0.6 / 4)


def test_max_margin_masks_negatives_that_are_the_positive():
    mask = torch.tensor([[True, True], [True, False]])
    assert max_margin_loss(Q, POS, NEG, 0.1, negative_mask=mask).item() == pytest.approx(0.5 / 3)


def test_max_margin_adds_each_querys_hard_negatives():
    hard = torch.tensor([[[0.8, 0.6]], [[0.0, 1.0]]])  # q0 scores 0.8 -> 0.8 - 0.6 + 0.1 = 0.3
    hard_mask = torch.tensor([[True], [False]])
    loss = max_margin_loss(Q, POS, NEG, 0.1, hard_negatives=hard, hard_mask=hard_mask)
    assert loss.item() == pytest.approx((0.5 + 0.1 + 0.3) / 5)


def test_max_margin_is_zero_when_positives_win_by_the_margin():
    q = torch.tensor([[1.0, 0.0]])
    assert max_margin_loss(q, q, torch.tensor([[0.0, 1.0]]), margin=0.5).item() == 0.0


def test_sampled_softmax_with_logq_correction():
    q = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    log_q = torch.tensor([0.0, math.log(2.0)])
    loss = sampled_softmax_loss(q, candidates, log_q, torch.tensor([0]), temperature=1.0)
    # logits [1 - 0, 0 - log 2]: -log(e / (e + 1/2))
    assert loss.item() == pytest.approx(math.log(1 + 0.5 * math.exp(-1)))
    masked = sampled_softmax_loss(q, candidates, log_q, torch.tensor([0]), 1.0, torch.tensor([[True, False]]))
    assert masked.item() == pytest.approx(0.0, abs=1e-7)


def test_sampled_softmax_rejects_nonpositive_temperature():
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        sampled_softmax_loss(Q, NEG, torch.zeros(2), torch.tensor([0, 1]), temperature=0)
