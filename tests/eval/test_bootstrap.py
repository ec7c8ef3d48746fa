"""Paired bootstrap: covers the true difference, deterministic given a seed, and aligns results."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.eval.bootstrap import bootstrap_mean, paired_bootstrap, paired_values
from embeddings.eval.metrics import RankingMetrics


def _two_models(rng, n, true_diff):
    """Per-user hit indicators of two models on the same users: B hits with p=0.3, A with p=0.3+diff,
    sharing most of their noise (a user easy for one is easy for the other)."""
    u = rng.random(n)
    b = (u < 0.3).astype(float)
    a = (u < 0.3 + true_diff).astype(float)
    return a, b


def test_interval_contains_the_true_difference_in_most_trials():
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(40):
        a, b = _two_models(rng, 400, 0.05)
        diff, low, high = paired_bootstrap(a, b, num_samples=300, seed=trial)
        assert low <= diff <= high
        covered += low <= 0.05 <= high
    assert covered >= 34  # nominal 95% of 40 = 38; allow for Monte Carlo error


def test_clear_improvement_lies_above_zero_and_noise_does_not():
    rng = np.random.default_rng(1)
    a, b = _two_models(rng, 2000, 0.1)
    assert paired_bootstrap(a, b, seed=0).ci_low > 0
    noise_a, noise_b = rng.random(2000), rng.random(2000)
    result = paired_bootstrap(noise_a, noise_b, seed=0)
    assert result.ci_low < 0 < result.ci_high


def test_deterministic_given_the_seed():
    rng = np.random.default_rng(2)
    a, b = rng.random(50), rng.random(50)
    assert paired_bootstrap(a, b, 200, 7) == paired_bootstrap(a, b, 200, 7)
    assert paired_bootstrap(a, b, 200, 7) != paired_bootstrap(a, b, 200, 8)
    mean, low, high = paired_bootstrap(a, b, 200, 7)
    assert mean == pytest.approx((a - b).mean())


def test_identical_models_give_a_zero_width_interval():
    x = np.array([0.0, 1.0, 1.0, 0.0])
    assert tuple(paired_bootstrap(x, x)) == (0.0, 0.0, 0.0)
    assert tuple(bootstrap_mean(np.array([0.25]))) == (0.25, 0.25, 0.25)


def test_bad_inputs():
    with pytest.raises(ValueError, match="needs the same users in both arrays: a has 2 values, b has 3"):
        paired_bootstrap(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="a must be a non-empty 1-D array"):
        paired_bootstrap(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="b has 1 NaN or Inf per-user values"):
        paired_bootstrap(np.zeros(2), np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        bootstrap_mean(np.zeros(2), confidence=1.0)
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        bootstrap_mean(np.zeros(2), num_samples=0)


def _result(protocol, ids, hr):
    ids = np.array(ids)
    return RankingMetrics(protocol, ids, {"hr@10": np.array(hr, dtype=float)}, np.zeros(len(ids)), np.ones(len(ids)))


def test_paired_values_requires_the_same_evaluation():
    a, b = _result("p", [1, 2], [1, 0]), _result("p", [1, 2], [0, 0])
    va, vb = paired_values(a, b, "hr@10")
    assert va.tolist() == [1, 0] and vb.tolist() == [0, 0]
    with pytest.raises(ValueError, match="cannot compare results from different evaluations"):
        paired_values(a, _result("q", [1, 2], [0, 0]), "hr@10")
    with pytest.raises(ValueError, match="cover different queries: 1 only in the first, 1 only in the second"):
        paired_values(a, _result("p", [1, 3], [0, 0]), "hr@10")
