import faiss
import numpy as np
import pytest

from embeddings.index.build import (
    IndexConfig,
    IndexInputError,
    build_hnsw_index,
    expected_memory_bytes,
    hnsw_of,
    level0_graph,
    normalize,
    reorder_for_locality,
    validate_vectors,
)
from tests.index.clustered import clustered_vectors


def test_build_searches_and_reconstructs_by_pin_id():
    ids, vectors = clustered_vectors(500)
    unit = normalize(vectors)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    index = build_hnsw_index(ids, unit, IndexConfig(m=8, ef_construction=40, add_batch=128))
    assert index.ntotal == 500
    hnsw_of(index).hnsw.efSearch = 64
    scores, found = index.search(unit[:5], 1)
    assert found[:, 0].tolist() == ids[:5].tolist()  # every vector finds itself first
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
    np.testing.assert_allclose(index.reconstruct(int(ids[42])), unit[42], atol=1e-7)


def _edges_by_id(index) -> set[tuple[int, int]]:
    ids = faiss.vector_to_array(faiss.downcast_index(index).id_map)
    graph = level0_graph(hnsw_of(index).hnsw).tocoo()
    return set(zip(ids[graph.row].tolist(), ids[graph.col].tolist()))


def _mean_link_span(index) -> float:
    graph = level0_graph(hnsw_of(index).hnsw).tocoo()
    return float(np.abs(graph.row.astype(np.int64) - graph.col).mean())


@pytest.mark.parametrize("variant", ["flat", "sq8"])
def test_reorder_keeps_the_graph_ids_and_results_and_brings_links_closer(variant):
    ids, vectors = clustered_vectors(2000, seed=3)
    unit = normalize(vectors)
    index = build_hnsw_index(ids, unit, IndexConfig(m=8, ef_construction=40, variant=variant, reorder="none"))
    copy = faiss.deserialize_index(faiss.serialize_index(index))
    reorder_for_locality(copy)

    assert _edges_by_id(copy) == _edges_by_id(index)  # the same graph, renumbered
    assert _mean_link_span(copy) < 0.7 * _mean_link_span(index)  # insertion order: ~n/3
    for ef in (16, 64):
        hnsw_of(index).hnsw.efSearch = hnsw_of(copy).hnsw.efSearch = ef
        scores, found = index.search(unit[:200], 10)
        scores_copy, found_copy = copy.search(unit[:200], 10)
        np.testing.assert_array_equal(found_copy, found)
        np.testing.assert_array_equal(scores_copy, scores)
    for pin in ids[[0, 7, 1999]]:
        np.testing.assert_array_equal(copy.reconstruct(int(pin)), index.reconstruct(int(pin)))


def test_sq8_variant_stores_bytes_approximately():
    ids, vectors = clustered_vectors(400)
    unit = normalize(vectors)
    index = build_hnsw_index(ids, unit, IndexConfig(m=8, ef_construction=40, variant="sq8"))
    error = np.abs(index.reconstruct(int(ids[7])) - unit[7]).max()
    assert 0 < error < 2 / 255


@pytest.mark.parametrize("mutate, message", [
    (lambda ids, v: v.__setitem__((3, 0), np.nan), r"1 vectors have NaN/Inf values \(pin ids \[\d+\]\)"),
    (lambda ids, v: v.__setitem__((4, slice(None)), 0.0), r"1 vectors have zero norm"),
    (lambda ids, v: ids.__setitem__(5, ids[6]), r"1 pin ids occur more than once"),
])
def test_validate_names_the_input_and_the_pins(mutate, message):
    ids, vectors = clustered_vectors(50)
    mutate(ids, vectors)
    with pytest.raises(IndexInputError, match=f"pin_embeddings ds=2026-11-01.*{message}"):
        validate_vectors(ids, vectors, "pin_embeddings ds=2026-11-01")


def test_validate_refuses_empty_and_a_count_far_below_the_previous_version():
    ids, vectors = clustered_vectors(50)
    with pytest.raises(IndexInputError, match="has no vectors"):
        validate_vectors(ids[:0], vectors[:0], "t")
    with pytest.raises(IndexInputError, match="50 vectors against 100 in the published version"):
        validate_vectors(ids, vectors, "t", previous_count=100, count_tolerance=0.25)
    validate_vectors(ids, vectors, "t", previous_count=60, count_tolerance=0.25)  # within tolerance


def test_config_is_checked():
    with pytest.raises(ValueError, match="variant must be one of"):
        IndexConfig(variant="pq")
    with pytest.raises(ValueError, match="ef_construction must be at least m"):
        IndexConfig(m=32, ef_construction=16)
    with pytest.raises(ValueError, match="reorder must be one of"):
        IndexConfig(reorder="bfs")


def test_expected_memory_formula():
    # n * (4d + 8M) * 1.1 + 16n for 1,000 vectors of d=64, M=32
    assert expected_memory_bytes(1000, 64, 32) == pytest.approx(1000 * (256 + 256) * 1.1 + 16_000)
