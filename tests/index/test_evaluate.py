import numpy as np
import pytest

from embeddings.index.build import IndexConfig, build_hnsw_index, normalize
from embeddings.index.evaluate import GateConfig, drop_self, recall_at_k, run_gate
from tests.index.clustered import clustered_vectors


@pytest.fixture(scope="module")
def built():
    ids, vectors = clustered_vectors(2000, dim=32, noise=1.0)
    unit = normalize(vectors)
    return ids, unit, build_hnsw_index(ids, unit, IndexConfig(m=8, ef_construction=32))


def test_drop_self_and_recall():
    found = np.array([[7, 1, 2], [4, 5, 6]])
    assert drop_self(found, np.array([7, 9]), 2).tolist() == [[1, 2], [4, 5]]
    assert recall_at_k(np.array([[1, 2], [4, 5]]), np.array([[2, 3], [4, 5]])) == pytest.approx(0.75)


def test_gate_selects_the_smallest_ef_search_that_reaches_the_target(built):
    ids, unit, index = built
    result = run_gate(index, ids, unit, GateConfig(num_queries=300, min_qps=1, target_recall=0.99,
                                                       ef_grid=(10, 20, 40, 80, 160, 320)))
    assert result.passed, result.failures
    assert result.recall >= 0.99
    swept = [p["ef_search"] for p in result.curve]
    assert len(swept) >= 2 and swept[-1] == result.ef_search
    assert all(p["recall"] < 0.99 for p in result.curve[:-1])  # the smaller ones missed the target
    assert result.self_rank1 >= 0.99
    assert result.reconstruct_max_error <= 1e-6


def test_gate_fails_with_the_figures_when_the_target_is_out_of_reach(built):
    ids, unit, index = built
    result = run_gate(index, ids, unit, GateConfig(num_queries=200, min_qps=1, target_recall=0.999, ef_grid=(10,)))
    assert not result.passed
    assert "never reached 0.999" in result.failures[0]
    assert result.curve and result.curve[0]["ef_search"] == 10


def test_gate_fails_on_a_qps_floor_and_on_a_recall_regression(built):
    ids, unit, index = built
    result = run_gate(index, ids, unit, GateConfig(num_queries=200, min_qps=1e12), previous_recall=1.5)
    assert not result.passed
    assert any("below the floor" in f for f in result.failures)
    assert any("below the previous version's 1.5000" in f for f in result.failures)


def test_gate_catches_a_broken_reconstruct(built):
    ids, unit, index = built
    shifted = unit.copy()
    shifted[:, 0] += 0.01  # the index no longer stores the vectors the gate is told about
    result = run_gate(index, ids, shifted, GateConfig(num_queries=100, min_qps=1, target_recall=0.5))
    assert any("reconstruct round trip" in f for f in result.failures)
