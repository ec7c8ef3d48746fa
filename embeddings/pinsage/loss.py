"""PinSage's training objectives.

``max_margin_loss`` is the paper's (Sec. 3.3): for a positive pair (q, i) and a negative n,
``max(0, z_q . z_n - z_q . z_i + margin)``, averaged over every valid (query, negative) pair; the
negatives are a set shared by the whole minibatch plus, on the curriculum, each query's own hard
negatives. ``sampled_softmax_loss`` is the optional alternative: a softmax over in-batch positives and
the shared negatives with the logQ correction (subtract the log of each candidate's expected count in
the sample), as PinnerFormer uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def max_margin_loss(
    query: Tensor,
    positive: Tensor,
    negatives: Tensor,
    margin: float,
    negative_mask: Tensor | None = None,
    hard_negatives: Tensor | None = None,
    hard_mask: Tensor | None = None,
) -> Tensor:
    """Mean hinge loss over all valid (query, negative) pairs.

    Args:
        query: (B, D) query embeddings z_q.
        positive: (B, D) embeddings z_i of each query's positive.
        negatives: (S, D) negatives shared by the minibatch.
        margin: the hinge margin (Delta).
        negative_mask: (B, S) bool, False where a shared negative must not count for a query (it is the
            query itself or its positive); default all True.
        hard_negatives: (B, K, D) each query's own hard negatives, or None.
        hard_mask: (B, K) bool, which hard-negative slots are filled; default all True.

    Returns:
        Scalar: the sum of hinge terms divided by the number of valid pairs (0 when there are none).
    """
    pos_score = (query * positive).sum(-1, keepdim=True)  # (B, 1)
    terms = F.relu(query @ negatives.T - pos_score + margin)  # (B, S)
    if negative_mask is None:
        negative_mask = torch.ones_like(terms, dtype=torch.bool)
    total = (terms * negative_mask).sum()
    count = negative_mask.sum()
    if hard_negatives is not None and hard_negatives.size(1) > 0:
        hard_scores = torch.einsum("bd,bkd->bk", query, hard_negatives)  # (B, K)
        hard_terms = F.relu(hard_scores - pos_score + margin)
        if hard_mask is None:
            hard_mask = torch.ones_like(hard_terms, dtype=torch.bool)
        total = total + (hard_terms * hard_mask).sum()
        count = count + hard_mask.sum()
    return total / count.clamp_min(1)


def sampled_softmax_loss(
    query: Tensor,
    candidates: Tensor,
    log_q: Tensor,
    positive_index: Tensor,
    temperature: float,
    candidate_mask: Tensor | None = None,
) -> Tensor:
    """Sampled softmax with the logQ correction.

    Logits are ``z_q . z_c / temperature - log_q[c]``; the loss is the cross-entropy of each query's
    positive candidate.

    Args:
        query: (B, D).
        candidates: (C, D) the in-batch positives and the shared negatives.
        log_q: (C,) log of each candidate's expected count in the sample (its sampling probability
            times the number drawn).
        positive_index: (B,) int64, the column of each query's positive in ``candidates``.
        temperature: softmax temperature (> 0).
        candidate_mask: (B, C) bool, False for accidental hits (a candidate that is the query or another
            copy of its positive); the positive's own column must be True. Default all True.

    Returns:
        Scalar mean cross-entropy.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = query @ candidates.T / temperature - log_q.unsqueeze(0)  # (B, C)
    if candidate_mask is not None:
        logits = logits.masked_fill(~candidate_mask, float("-inf"))
    return F.cross_entropy(logits, positive_index)
