"""Confidence intervals over users (queries): is model A better than model B, or is it noise?

``paired_bootstrap`` resamples users with replacement and recomputes the mean of the per-user differences
``a - b`` (both models scored on the same users: their noise is shared, so the paired interval is much
narrower than comparing two separate intervals). The interval is the percentile interval of those
resampled means. Deterministic given ``seed``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from embeddings.eval.metrics import RankingMetrics

_DRAWS_PER_BLOCK = 1 << 22  # resampled indices held at once (32 MiB of int64)


class BootstrapResult(NamedTuple):
    """``(mean, ci_low, ci_high)``: the observed mean (of ``a - b`` when paired) and its interval."""

    mean: float
    ci_low: float
    ci_high: float


def _check(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array of per-user values, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} has {int((~np.isfinite(values)).sum())} NaN or Inf per-user values")
    return values


def bootstrap_mean(
    values: np.ndarray, *, num_samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> BootstrapResult:
    """The mean of per-user values and its percentile bootstrap interval.

    Args:
        values: (n,) finite per-user values.
        num_samples: bootstrap resamples.
        seed: seeds the resampling (same inputs + seed -> same interval).
        confidence: interval coverage, in (0, 1).

    Returns:
        ``BootstrapResult(mean, ci_low, ci_high)``.

    Raises:
        ValueError: empty or non-finite values, ``num_samples`` < 1, ``confidence`` outside (0, 1).
    """
    values = _check(values, "values")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(values)
    rng = np.random.default_rng(seed)
    means = np.empty(num_samples)
    block = max(1, _DRAWS_PER_BLOCK // n)
    for start in range(0, num_samples, block):
        m = min(block, num_samples - start)
        means[start:start + m] = values[rng.integers(0, n, size=(m, n))].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(float(values.mean()), float(low), float(high))


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, num_samples: int = 1000, seed: int = 0, *, confidence: float = 0.95
) -> BootstrapResult:
    """Mean per-user difference ``a - b`` and its paired percentile bootstrap interval.

    Args:
        a: (n,) per-user metric of model A (e.g. the challenger).
        b: (n,) the same metric of model B on the same users, in the same order.
        num_samples, seed, confidence: see ``bootstrap_mean``.

    Returns:
        ``BootstrapResult(mean diff, ci_low, ci_high)``; A is better beyond noise when ``ci_low > 0``.

    Raises:
        ValueError: different lengths, empty, or non-finite inputs.
    """
    a = _check(a, "a")
    b = _check(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs the same users in both arrays: a has {len(a)} values, "
                         f"b has {len(b)}")
    return bootstrap_mean(a - b, num_samples=num_samples, seed=seed, confidence=confidence)


def paired_values(a: RankingMetrics, b: RankingMetrics, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The per-query ``metric`` of two results on the same evaluation, aligned by query.

    Raises:
        ValueError: the protocols differ, or the two results do not cover the same queries.
    """
    if a.protocol != b.protocol or a.ties != b.ties:
        raise ValueError(f"cannot compare results from different evaluations: {a.protocol!r} (ties {a.ties}) "
                         f"vs {b.protocol!r} (ties {b.ties})")
    if not np.array_equal(a.query_ids, b.query_ids):
        only_a = np.setdiff1d(a.query_ids, b.query_ids)
        only_b = np.setdiff1d(b.query_ids, a.query_ids)
        raise ValueError(f"results under {a.protocol!r} cover different queries: {len(only_a)} only in the "
                         f"first, {len(only_b)} only in the second")
    return a.metric(metric), b.metric(metric)
