"""Full-ranking metrics from the ranks of held-out targets (one core shared by every model and baseline).

The pipeline, in chunks of queries so that no (queries x items) matrix is ever held whole:

    scorer(rows) -> scores (c, N)  ->  mask seen items  ->  rank of each target  ->  per-query metrics

* A **scorer** is any callable ``rows -> (len(rows), num_items)`` float scores, higher is better
  (``embeddings.eval.scorers``: embeddings, sparse similarities, fixed item scores, candidate generators).
  ``-inf`` means "not a candidate" (a generator that never reached the item); NaN is an error.
* **Masking**: items in a query's ``seen`` row are removed from the ranking (they neither outrank nor tie
  the target), except the query's own targets, which are never masked.
* **Rank** of a target (0-based) = number of unmasked items with a strictly greater score, plus the ties:
  all of them with ``ties="pessimistic"`` (the default: the target loses every tie, so a constant scorer
  scores zero), or half of them with ``ties="average"`` (the mid-rank: the expected rank under random tie
  breaking). Ties never favour the target. Other targets of the same query compete like any item, so a
  target ranked below another target can still be within the top K (``recall@K`` counts both).
* **Metrics per query** (a query with targets ``T`` and ranks ``r_t``):
  ``hr@K`` = 1 if any ``r_t < K``; ``recall@K`` = mean over ``T`` of ``[r_t < K]``;
  ``ndcg@K`` = sum over ``T`` of ``[r_t < K] / log2(r_t + 2)`` divided by the ideal
  ``sum_{i < min(|T|, K)} 1 / log2(i + 2)``; ``mrr`` = ``1 / (min_t r_t + 1)``; optionally the PinSage
  paper's scaled MRR ``1 / ceil((min_t r_t + 1) / scale)``. With one target per query ``hr@K`` =
  ``recall@K`` (PinSage's hit-rate@K).

Per-query arrays are kept (``RankingMetrics.values``) so that two models can be compared with a paired
bootstrap over the same queries (``embeddings.eval.bootstrap``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

TIES = ("pessimistic", "average")

Scorer = Callable[[np.ndarray], np.ndarray]
"""(c,) int64 query rows -> (c, num_items) float scores; higher is better, -inf = not a candidate."""


@dataclass(frozen=True)
class RankingMetrics:
    """Per-query metrics of one model on one evaluation, with the protocol they were measured under.

    Attributes:
        protocol: how the numbers were measured (``embeddings.eval.protocols.Protocol`` as a string);
            never show a number without it.
        query_ids: (R,) the rows of the queries that had at least one target, ascending.
        values: metric name -> (R,) float64 per-query values, aligned with ``query_ids``.
        best_rank: (R,) the 0-based rank of each query's best-ranked target (drives hit-rate curves).
        num_targets: (R,) targets per query.
        ties: how ties with the target were counted (``TIES``).
    """

    protocol: str
    query_ids: np.ndarray
    values: Mapping[str, np.ndarray]
    best_rank: np.ndarray
    num_targets: np.ndarray
    ties: str = "pessimistic"

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)

    @property
    def metric_names(self) -> list[str]:
        return list(self.values)

    def metric(self, name: str) -> np.ndarray:
        """The (R,) per-query values of ``name``.

        Raises:
            KeyError: ``name`` was not computed (the message lists what was).
        """
        if name not in self.values:
            raise KeyError(f"metric {name!r} was not computed under protocol {self.protocol!r}; "
                           f"available: {sorted(self.values)}")
        return self.values[name]

    def mean(self) -> dict[str, float]:
        """The mean of every metric over the queries (NaN when there are none)."""
        return {name: float(v.mean()) if len(v) else float("nan") for name, v in self.values.items()}

    def hit_rate_curve(self, ks: Sequence[int]) -> np.ndarray:
        """HR@K for each K in ``ks`` (fraction of queries with a target ranked below K): (len(ks),)."""
        ks = np.asarray(ks, dtype=np.float64)
        if not self.num_queries:
            return np.full(len(ks), np.nan)
        return (self.best_rank[None, :] < ks[:, None]).mean(axis=1)


def metric_name(kind: str, k: int | None = None) -> str:
    """``"hr", 10 -> "hr@10"``; ``"mrr" -> "mrr"``."""
    return kind if k is None else f"{kind}@{k}"


def check_ties(ties: str) -> str:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    return ties


def binary_csr(matrix: sp.spmatrix | sp.sparray, what: str) -> sp.csr_matrix:
    """A canonical 0/1 CSR copy of a sparse matrix (duplicates summed, explicit zeros dropped)."""
    if not sp.issparse(matrix):
        raise TypeError(f"{what} must be a scipy sparse matrix (queries x items), got {type(matrix).__name__}")
    out = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


SCORE_BUDGET = 1 << 24
"""Score entries held at once when ``chunk_size`` is None (64 MiB of float32, plus the comparisons)."""


def resolve_chunk_size(chunk_size: int | None, num_items: int) -> int:
    """``chunk_size`` if given, else as many queries as fit ``SCORE_BUDGET`` entries (1 to 1024)."""
    if chunk_size is None:
        return int(max(1, min(1024, SCORE_BUDGET // max(num_items, 1))))
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return int(chunk_size)


def _chunks(rows: np.ndarray, chunk_size: int):
    for start in range(0, len(rows), chunk_size):
        yield rows[start:start + chunk_size]


def _call_scorer(scorer: Scorer, rows: np.ndarray, num_items: int, protocol: str) -> np.ndarray:
    scores = np.asarray(scorer(rows))
    if scores.shape != (len(rows), num_items):
        raise ValueError(f"scorer returned scores of shape {scores.shape} for {len(rows)} queries; expected "
                         f"({len(rows)}, {num_items}) (protocol {protocol!r})")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        bad = rows[np.isnan(scores).any(axis=1)]
        raise ValueError(f"scorer returned NaN scores for {len(bad)} queries (first rows {bad[:5].tolist()}) "
                         f"under protocol {protocol!r}; scores must be finite or -inf")
    return scores


def rank_targets(
    scorer: Scorer,
    targets: sp.spmatrix | sp.sparray,
    *,
    seen: sp.spmatrix | sp.sparray | None = None,
    ties: str = "pessimistic",
    chunk_size: int | None = None,
    protocol: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 0-based full-ranking rank of every target of every query that has one.

    Args:
        scorer: ``rows -> (len(rows), N)`` scores (see module docstring).
        targets: (Q, N) sparse, nonzero = a held-out target of that query.
        seen: (Q, N) sparse, nonzero = masked for that query (its own targets excepted); None masks nothing.
        ties: ``"pessimistic"`` or ``"average"`` (module docstring).
        chunk_size: queries scored at once (memory ~ ``chunk_size * N`` scores, plus as much again for
            the comparisons); None sizes it from ``SCORE_BUDGET``.
        protocol: named in error messages.

    Returns:
        ``(query_ids (R,), ptr (R+1,), ranks (T,))``: the queries with targets, and the ranks of their
        targets in CSR layout (``ranks[ptr[i]:ptr[i+1]]`` belong to ``query_ids[i]``), float64.

    Raises:
        ValueError: shapes disagree, a bad ``ties`` or ``chunk_size``, or the scorer returned NaN or the
            wrong shape.
    """
    check_ties(ties)
    targets = binary_csr(targets, "targets")
    num_queries, num_items = targets.shape
    chunk_size = resolve_chunk_size(chunk_size, num_items)
    mask = None
    if seen is not None:
        seen = binary_csr(seen, "seen")
        if seen.shape != targets.shape:
            raise ValueError(f"seen has shape {seen.shape} but targets have {targets.shape} (protocol {protocol!r})")
        mask = (seen - seen.multiply(targets)).tocsr()  # never mask a query's own targets
        mask.eliminate_zeros()
    counts = np.diff(targets.indptr)
    query_ids = np.flatnonzero(counts > 0).astype(np.int64)
    ptr = np.concatenate([[0], np.cumsum(counts[query_ids])]).astype(np.int64)
    ranks = np.empty(ptr[-1], dtype=np.float64)
    tie_weight = 1.0 if ties == "pessimistic" else 0.5
    started, done, last_log = time.monotonic(), 0, time.monotonic()
    for rows in _chunks(query_ids, chunk_size):
        scores = _call_scorer(scorer, rows, num_items, protocol)
        if mask is not None:
            sub = mask[rows]
            if sub.nnz:
                scores = scores.copy()  # the scorer may hand out a view of its own state
                r, c = sub.nonzero()
                scores[r, c] = np.nan  # NaN compares False: masked items neither outrank nor tie
        sub_targets = targets[rows]
        local_rows = np.repeat(np.arange(len(rows)), np.diff(sub_targets.indptr))
        items = sub_targets.indices
        out = ranks[ptr[done]:ptr[done + len(rows)]]
        # Compare in slices of at most chunk_size targets so memory stays (chunk_size, N).
        for a in range(0, len(items), chunk_size):
            lr, it = local_rows[a:a + chunk_size], items[a:a + chunk_size]
            block = scores[lr]  # (b, N)
            target_scores = block[np.arange(len(lr)), it][:, None]
            greater = (block > target_scores).sum(axis=1)
            tied = (block == target_scores).sum(axis=1) - 1  # minus the target itself
            out[a:a + len(lr)] = greater + tie_weight * tied
        done += len(rows)
        if time.monotonic() - last_log > 30:
            rate = done / (time.monotonic() - started)
            log.info("ranked %d/%d queries (%.0f/s, ETA %.0f s) [%s]", done, len(query_ids), rate,
                     (len(query_ids) - done) / rate, protocol)
            last_log = time.monotonic()
    return query_ids, ptr, ranks


def _ideal_dcg(num_targets: np.ndarray, k: int) -> np.ndarray:
    discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
    return discounts[np.minimum(num_targets, k)]


def metrics_from_ranks(
    ptr: np.ndarray, ranks: np.ndarray, ks: Sequence[int] = (10,), mrr_scale: int | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-query metrics from target ranks in CSR layout (``rank_targets``'s ``ptr`` and ``ranks``).

    Args:
        ptr: (R+1,) offsets; every query must have at least one target.
        ranks: (T,) 0-based ranks (may be fractional with average ties).
        ks: cut-offs for ``hr@K``, ``recall@K`` and ``ndcg@K``.
        mrr_scale: also compute PinSage's scaled MRR ``1 / ceil((rank + 1) / scale)`` as
            ``mrr_scaled_<scale>`` (the paper uses 100).

    Returns:
        ``(values, best_rank)``: metric name -> (R,) float64, and (R,) best rank per query.
    """
    ptr = np.asarray(ptr, dtype=np.int64)
    ranks = np.asarray(ranks, dtype=np.float64)
    num_targets = np.diff(ptr)
    if (num_targets <= 0).any():
        raise ValueError("every query needs at least one target")
    if any(int(k) <= 0 for k in ks):
        raise ValueError(f"every K must be positive, got {list(ks)}")
    starts = ptr[:-1]
    values: dict[str, np.ndarray] = {}
    if len(num_targets):
        best_rank = np.minimum.reduceat(ranks, starts)
    else:
        best_rank = np.zeros(0)
    for k in ks:
        k = int(k)
        hit = ranks < k
        gain = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
        if len(num_targets):
            hits = np.add.reduceat(hit.astype(np.float64), starts)
            dcg = np.add.reduceat(gain, starts)
        else:
            hits = dcg = np.zeros(0)
        values[metric_name("hr", k)] = (hits > 0).astype(np.float64)
        values[metric_name("recall", k)] = hits / num_targets
        values[metric_name("ndcg", k)] = dcg / _ideal_dcg(num_targets, k)
    values["mrr"] = 1.0 / (best_rank + 1.0)
    if mrr_scale is not None:
        if mrr_scale <= 0:
            raise ValueError(f"mrr_scale must be positive, got {mrr_scale}")
        values[f"mrr_scaled_{mrr_scale}"] = 1.0 / np.ceil((best_rank + 1.0) / mrr_scale)
    return values, best_rank


def evaluate_ranking(
    scorer: Scorer,
    targets: sp.spmatrix | sp.sparray,
    *,
    protocol: str,
    seen: sp.spmatrix | sp.sparray | None = None,
    ks: Sequence[int] = (10,),
    ties: str = "pessimistic",
    mrr_scale: int | None = None,
    chunk_size: int | None = None,
) -> RankingMetrics:
    """Rank every query's targets among all items and compute per-query metrics.

    Args:
        scorer: ``rows -> (len(rows), N)`` scores.
        targets: (Q, N) sparse held-out targets; queries without one are skipped.
        protocol: the protocol string carried with the result (required: no number without it).
        seen: (Q, N) sparse items to mask per query (targets excepted), or None.
        ks, mrr_scale: see ``metrics_from_ranks``.
        ties, chunk_size: see ``rank_targets``.

    Returns:
        The per-query metrics, their protocol, and the best rank of each query.
    """
    if not protocol:
        raise ValueError("protocol must name how the numbers are measured (e.g. 'full ranking, seen masked, "
                         "per-user split test'); got an empty string")
    query_ids, ptr, ranks = rank_targets(scorer, targets, seen=seen, ties=ties, chunk_size=chunk_size,
                                         protocol=protocol)
    values, best_rank = metrics_from_ranks(ptr, ranks, ks, mrr_scale)
    return RankingMetrics(protocol=protocol, query_ids=query_ids, values=values, best_rank=best_rank,
                          num_targets=np.diff(ptr), ties=ties)


def top_k(
    scorer: Scorer,
    rows: np.ndarray,
    k: int,
    num_items: int,
    *,
    seen: sp.spmatrix | sp.sparray | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The K best items per query (seen items removed), for candidate lists and inspection.

    Ties are broken by the lower item index, so the lists are deterministic. Positions past the number of
    rankable items hold index -1 and score -inf.

    Args:
        scorer: ``rows -> (len(rows), num_items)`` scores.
        rows: (Q,) query rows to score.
        k: list length.
        num_items: N.
        seen: (num_queries_total, N) sparse items to exclude, indexed by ``rows``.

    Returns:
        ``(items (Q, k) int64, scores (Q, k) float64)``, best first.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    rows = np.asarray(rows, dtype=np.int64)
    chunk_size = resolve_chunk_size(chunk_size, num_items)
    seen_csr = binary_csr(seen, "seen") if seen is not None else None
    out_items = np.full((len(rows), k), -1, dtype=np.int64)
    out_scores = np.full((len(rows), k), -np.inf)
    kk = min(k, num_items)
    done = 0
    for chunk in _chunks(rows, chunk_size):
        scores = np.array(_call_scorer(scorer, chunk, num_items, "top_k"), copy=True)
        if seen_csr is not None:
            r, c = seen_csr[chunk].nonzero()
            scores[r, c] = np.nan
        # Masked (NaN) and non-candidates (-inf) are left out; the rest sorts by (-score, index).
        neg = np.where(np.isnan(scores), np.inf, -scores)
        kth = np.partition(neg, kk - 1, axis=1)[:, kk - 1:kk]  # (c, 1) the k-th smallest key
        less = neg < kth
        tied = neg == kth
        # Everything strictly better than the k-th, then the lowest-index ties until k are chosen.
        room = kk - less.sum(axis=1)
        for i in np.flatnonzero(tied.sum(axis=1) > room):  # ties straddle the cut: few rows
            tied[i, np.flatnonzero(tied[i])[room[i]:]] = False
        chosen = (less | tied) & (neg < np.inf)
        rows_c, cols_c = np.nonzero(chosen)
        order = np.lexsort((cols_c, neg[rows_c, cols_c], rows_c))
        rows_c, cols_c = rows_c[order], cols_c[order]
        position = np.arange(len(rows_c)) - np.searchsorted(rows_c, rows_c, side="left")
        out_items[done + rows_c, position] = cols_c
        out_scores[done + rows_c, position] = -neg[rows_c, cols_c]
        done += len(chunk)
    return out_items, out_scores

