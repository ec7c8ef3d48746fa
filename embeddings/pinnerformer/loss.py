"""PinnerFormer's objectives (which positions predict which pins) and softmax losses (paper Sec. 3.3).

Objectives (``sample_queries``), for each user of a batch:

* ``next_action``: the latest input position predicts the first positive after the input.
* ``sasrec``: every input position predicts the first positive after it (SASRec; the positives of the
  input itself are labels of the positions before them).
* ``all_action``: the latest position predicts every positive of the next K days (up to ``max_targets``,
  sampled).
* ``dense_all_action`` (the paper's choice): up to ``num_positions`` positions, sampled among those with
  a positive in their own next-K-day window, each predict one positive drawn uniformly from that window.

Losses:

* ``sampled_softmax_loss``: softmax over the query's target and negatives, logits ``u.p / tau - logQ(p)``.
  Negatives are the other queries' targets (in-batch) and/or pins drawn uniformly (random); any
  candidate that is one of the query's user's own positives is masked (apart from the query's own
  target column), so a user is never pushed away from what it engaged with. ``logQ`` is the log of a
  candidate's expected count in its sample: ``log(N * freq(p))`` for in-batch targets (``freq`` = the
  pin's share of the training positives) and ``log(S / P_pool)`` for uniform negatives; the paper's
  ablation: mixed + logQ Recall@10 0.229, in-batch without logQ 0.071.
* ``full_softmax_loss``: cross-entropy over every pin (for id-only next-item data with a small catalog,
  such as S3-Rec Beauty's 12k items, where this is what a plain SASRec uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from embeddings.pinnerformer.data import UserSequences

OBJECTIVES = ("next_action", "sasrec", "all_action", "dense_all_action")
NEGATIVES = ("mixed", "in_batch", "random", "full")


@dataclass(frozen=True)
class Queries:
    """The (position, target) pairs of one batch.

    Attributes:
        user: (N,) int64 row of the batch (0..B-1) each query belongs to.
        position: (N,) int64 token position (0 = the oldest kept token) whose output is the query.
        target: (N,) int64 pin row to predict.
    """

    user: np.ndarray
    position: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.target)


def _first_per_group(groups: np.ndarray, keys: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` items per group, those with the smallest random ``keys``."""
    order = np.lexsort((keys, groups))
    g = groups[order]
    starts = np.searchsorted(g, g, side="left")
    return np.sort(order[np.arange(len(order)) - starts < limit])


def sample_queries(
    seqs: UserSequences,
    users: np.ndarray,
    objective: str,
    rng: np.random.Generator,
    *,
    num_positions: int = 32,
    max_targets: int = 32,
) -> Queries:
    """The queries of ``objective`` for the batch ``users`` (rows of ``seqs``, in batch order).

    Args:
        seqs: the sequences (tokens and labels).
        users: (B,) rows of ``seqs``.
        objective: one of ``OBJECTIVES``.
        rng: draws positions and targets.
        num_positions: ``dense_all_action``'s positions per user.
        max_targets: ``all_action``'s targets per user.

    Returns:
        The queries; users without any label contribute none.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    users = np.asarray(users, dtype=np.int64)
    start, end = seqs.input_start[users], seqs.input_end[users]
    pos_index = seqs.positive_index
    if objective in ("next_action", "all_action"):
        rows = np.arange(len(users))
        events = end - 1
    else:  # every token of every user
        lengths = end - start
        rows = np.repeat(np.arange(len(users)), lengths)
        events = np.repeat(start, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    if objective in ("next_action", "sasrec"):
        nxt = seqs.next_positive(events)
        ok = nxt >= 0
        rows, events, targets = rows[ok], events[ok], seqs.pins[nxt[ok]]
    else:
        lo, hi = seqs.window_bounds(events)
        size = np.maximum(hi - lo, 0)
        if objective == "all_action":
            rows, events = np.repeat(rows, size), np.repeat(events, size)
            label = np.repeat(lo, size) + np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size)
            keep = _first_per_group(rows, rng.random(len(rows)), max_targets)
            rows, events, label = rows[keep], events[keep], label[keep]
        else:
            ok = np.flatnonzero(size > 0)
            keep = ok[_first_per_group(rows[ok], rng.random(len(ok)), num_positions)]
            rows, events = rows[keep], events[keep]
            label = lo[keep] + (rng.random(len(keep)) * size[keep]).astype(np.int64)
        targets = seqs.pins[pos_index[label]]
    return Queries(user=rows.astype(np.int64), position=(events - start[rows]).astype(np.int64),
                   target=targets.astype(np.int64))


def own_positive_keys(seqs: UserSequences, users: np.ndarray) -> np.ndarray:
    """Sorted unique keys ``b * P + pin`` of every labelable positive of each batch user ``b``
    (tokens and future), for masking a user's own positives among its negatives."""
    users = np.asarray(users, dtype=np.int64)
    pos = seqs.positive_index
    lo = np.searchsorted(pos, seqs.input_start[users], side="left")
    hi = np.searchsorted(pos, seqs.ptr[users + 1], side="left")
    size = hi - lo
    index = np.repeat(lo, size) + np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size)
    rows = np.repeat(np.arange(len(users), dtype=np.int64), size)
    return np.unique(rows * seqs.num_pins + seqs.pins[pos[index]])


def in_batch_log_q(positive_counts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) ``log(N * freq(p))``: the log expected count of each target among N in-batch targets."""
    counts = np.asarray(positive_counts, dtype=np.float64)
    total = max(counts.sum(), 1.0)
    return np.log(np.maximum(len(targets) * counts[targets] / total, 1e-12)).astype(np.float32)


def sampled_softmax_loss(
    queries: Tensor,
    query_user: Tensor,
    targets: Tensor,
    target_embeddings: Tensor,
    temperature: Tensor | float,
    *,
    num_pins: int,
    own_keys: Tensor,
    in_batch: bool = True,
    negatives: Tensor | None = None,
    negative_embeddings: Tensor | None = None,
    target_log_q: Tensor | None = None,
    negative_log_q: Tensor | float | None = None,
    target_columns: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Sampled softmax over in-batch and/or uniform negatives, own positives masked, logQ corrected.

    Candidates are the T targets (column n = query n's target; T = N in one process) followed by the S
    uniform negatives. With ``in_batch`` False only each query's own target column of the first block
    takes part. Across processes (``distributed.gather_candidates``) the first block holds the targets
    of the global batch, ``query_user`` global rows and ``target_columns`` where this process's own
    targets lie in it.

    Args:
        queries: (N, E) unit-norm user embeddings at the query positions.
        query_user: (N,) int64 batch row of each query's user.
        targets: (T,) int64 target pin rows; ``target_embeddings`` (T, E) their pin-tower embeddings.
        temperature: scalar (> 0).
        num_pins: P (the key space of ``own_keys``).
        own_keys: (K,) sorted int64 keys ``b * P + pin`` of each batch user's positives (``own_positive_keys``).
        in_batch: use the other queries' targets as negatives.
        negatives: (S,) int64 uniform negative pin rows, ``negative_embeddings`` (S, E); None = none.
        target_log_q: (T,) logQ of the targets as in-batch candidates (None: no correction).
        negative_log_q: scalar or (S,) logQ of the uniform negatives (None: no correction).
        target_columns: (N,) int64 column of each query's own target among the T (default ``0..N-1``).
        reduction: ``mean`` or ``sum`` of the queries' cross-entropies.

    Returns:
        Scalar mean (or sum) cross-entropy of each query's target.
    """
    n, m = len(queries), len(targets)
    device = queries.device
    cand_pins, cand_emb = targets, target_embeddings
    if negatives is not None and len(negatives):
        cand_pins = torch.cat([targets, negatives])
        cand_emb = torch.cat([target_embeddings, negative_embeddings])
    elif not in_batch:
        raise ValueError("sampled_softmax_loss needs in-batch negatives or uniform negatives (got neither)")
    logits = (queries.float() / temperature) @ cand_emb.float().T  # (N, C); dividing the (N, E) side is far cheaper
    if target_log_q is not None or negative_log_q is not None:
        log_q = torch.zeros(len(cand_pins), device=device)
        if target_log_q is not None:
            log_q[:m] = target_log_q
        if negative_log_q is not None and len(cand_pins) > m:
            log_q[m:] = negative_log_q
        logits = logits - log_q.unsqueeze(0)
    # Masks are computed per batch user (B, C) and then spread to that user's queries.
    num_users = int(query_user.max()) + 1 if n else 0
    keys = torch.arange(num_users, device=device).unsqueeze(1) * num_pins + cand_pins.unsqueeze(0)
    own = torch.isin(keys, own_keys)[query_user]  # (N, C) candidate is one of the user's positives
    allowed = ~own
    if not in_batch:
        allowed[:, :m] = False
    rows = torch.arange(n, device=device)
    columns = rows if target_columns is None else target_columns.to(device)
    allowed[rows, columns] = True
    logits = logits.masked_fill(~allowed, float("-inf"))
    return F.cross_entropy(logits, columns, reduction=reduction)


def full_softmax_loss(queries: Tensor, targets: Tensor, pin_embeddings: Tensor, temperature: Tensor | float, *,
                      reduction: str = "mean") -> Tensor:
    """Cross-entropy of each query's target among all pins.

    Args:
        queries: (N, E); targets: (N,) pin rows; pin_embeddings: (P, E) every pin's embedding.
        reduction: ``mean`` or ``sum`` over the queries.
    """
    logits = (queries.float() / temperature) @ pin_embeddings.float().T  # divide the (N, E) side, not (N, P)
    return F.cross_entropy(logits, targets, reduction=reduction)
