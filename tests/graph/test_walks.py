"""Walks on literal graphs whose neighbors are obvious, determinism, bands, and agreement with exact PPR."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.graph.csr import BipartiteCSR
from embeddings.graph.exact_ppr import exact_ppr, mass_ratio, transition_factors
from embeddings.graph.topical import topical_graph
from embeddings.graph.walks import WalkConfig, ppr_neighborhoods, visit_counts


@pytest.fixture
def halves() -> BipartiteCSR:
    # pins 0-2 on boards 0-1, pins 3-5 on boards 2-3; pin 6 is on no board
    return BipartiteCSR.from_edges(
        np.array([0, 1, 1, 2, 3, 4, 4, 5]), np.array([0, 0, 1, 1, 2, 2, 3, 3]),
        np.arange(7) + 100, np.arange(4) + 10,
    )


def test_halves_never_mix_and_seed_is_never_its_own_neighbor(halves):
    result = ppr_neighborhoods(halves, np.arange(7, dtype=np.int32), WalkConfig(num_steps=2000, top_t=4, band=(0, 2)))
    for seed in range(6):
        got = set(result.neighbors[seed][result.neighbors[seed] >= 0].tolist())
        half = {0, 1, 2} if seed < 3 else {3, 4, 5}
        assert got == half - {seed}
        assert np.isclose(result.weights[seed].sum(), 1.0)
        assert result.steps[seed] == 2000
    # the pin sharing a board with seed 0 (pin 1) ranks first; pin 2 is only reachable through pin 1
    assert result.neighbors[0][0] == 1


def test_isolated_pin_gets_an_empty_neighborhood(halves):
    result = ppr_neighborhoods(halves, np.array([6], np.int32), WalkConfig(num_steps=100, top_t=3))
    assert (result.neighbors == -1).all() and (result.weights == 0).all() and result.steps[0] == 0


def test_results_do_not_depend_on_chunking_threads_or_reruns():
    graph = topical_graph(2000, 20000, 20, seed=1)
    seeds = np.arange(0, 2000, 7, dtype=np.int32)
    config = WalkConfig(num_steps=500, top_t=10, band=(20, 60), num_band_samples=5, seed=3)
    whole = ppr_neighborhoods(graph, seeds, config)
    again = ppr_neighborhoods(graph, seeds, config)
    threaded = ppr_neighborhoods(graph, seeds, config, num_threads=2)
    parts = [ppr_neighborhoods(graph, chunk, config) for chunk in np.array_split(seeds[::-1], 5)]
    reversed_nb = np.concatenate([p.neighbors for p in parts])[::-1]
    for other in (again, threaded):
        np.testing.assert_array_equal(whole.neighbors, other.neighbors)
        np.testing.assert_array_equal(whole.band_samples, other.band_samples)
    np.testing.assert_array_equal(whole.neighbors, reversed_nb)
    different_seed = ppr_neighborhoods(graph, seeds, WalkConfig(num_steps=500, top_t=10, seed=4))
    assert not np.array_equal(whole.neighbors, different_seed.neighbors)


def test_band_samples_come_from_the_rank_band():
    graph = topical_graph(3000, 30000, 10, seed=2)
    config = WalkConfig(num_steps=4000, top_t=10, band=(50, 120), num_band_samples=8)
    result = ppr_neighborhoods(graph, np.array([5], np.int32), config)
    ranked, _, _ = visit_counts(graph, 5, config)  # the same walk, every count
    band = set(ranked[50:120].tolist())
    samples = result.band_samples[0]
    assert len(samples) == 8 and set(samples.tolist()) <= band and len(set(samples.tolist())) == 8
    np.testing.assert_array_equal(result.neighbors[0], ranked[:10])


def test_early_stopping_stops_early_and_keeps_the_top():
    graph = topical_graph(3000, 30000, 10, seed=2)
    full = ppr_neighborhoods(graph, np.array([5], np.int32), WalkConfig(num_steps=20000, top_t=10))
    early = ppr_neighborhoods(graph, np.array([5], np.int32), WalkConfig(num_steps=20000, top_t=10, early_stop=(10, 50)))
    assert early.steps[0] < full.steps[0]
    assert len(set(early.neighbors[0]) & set(full.neighbors[0])) >= 6


def test_monte_carlo_top10_captures_the_exact_ppr_mass():
    graph = topical_graph(1500, 15000, 15, seed=5)
    factors = transition_factors(graph)
    seeds = np.flatnonzero(graph.pin_degree() > 0)[::50].astype(np.int32)
    result = ppr_neighborhoods(graph, seeds, WalkConfig(num_steps=5000, alpha=0.5))
    ratios = [mass_ratio(exact_ppr(graph, int(s), 0.5, factors=factors), int(s), result.neighbors[i])
              for i, s in enumerate(seeds)]
    assert np.mean(ratios) >= 0.9


def test_config_validation():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got 1.5"):
        WalkConfig(alpha=1.5)
    with pytest.raises(ValueError, match="band must be"):
        WalkConfig(band=(5, 5))
    with pytest.raises(ValueError, match="num_steps must be positive"):
        WalkConfig(num_steps=0)


def test_out_of_range_seed_is_rejected(halves):
    with pytest.raises(ValueError, match=r"seed pin indices must be in 0..6"):
        ppr_neighborhoods(halves, np.array([7], np.int32), WalkConfig())


def test_the_spark_job_uses_the_walkers_default_budget():
    from jobs.ppr_neighborhoods import PprNeighborhoodsConfig

    assert PprNeighborhoodsConfig(lake_uri="x", ds="2026-01-01").num_steps == WalkConfig().num_steps
