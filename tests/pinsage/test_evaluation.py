"""The PinSage evaluator on tiny literal data: tuning on validation, the test slice scored once, baselines."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from embeddings.data.engagement import TEST, TRAIN, VALID, TimeSplit
from embeddings.eval.baselines import fit_item_knn, item_popularity
from embeddings.eval.protocols import Sequences
from embeddings.eval.scorers import EmbeddingScorer, ItemScoresScorer, SparseScorer
from embeddings.graph.csr import BipartiteCSR
from embeddings.pinsage.evaluation import (
    ITEM_TASK,
    USER_TASK,
    EvaluationData,
    Evaluator,
    embedding_users,
    evaluation_data_from_events,
    latest_queries,
    pixie_generator,
    pixie_users,
    results_table,
)

# Two communities of pins: {0, 1, 2} and {3, 4, 5}. Every user stays inside one community.
EVENTS = [  # (user, pin, label)
    (0, 0, TRAIN), (0, 1, TRAIN), (0, 2, VALID), (0, 1, TEST),
    (1, 3, TRAIN), (1, 4, TRAIN), (1, 5, VALID), (1, 3, TEST),
    (2, 1, TRAIN), (2, 0, VALID), (2, 2, TEST),
    (3, 4, TRAIN), (3, 3, VALID), (3, 5, TEST),
    (4, 0, TRAIN), (4, 2, TRAIN), (4, 1, VALID),
    (5, 5, TRAIN), (5, 4, TRAIN), (5, 3, VALID),
]


def literal_data(max_users: int = 0) -> EvaluationData:
    users = np.array([e[0] for e in EVENTS], dtype=np.int64)
    items = np.array([e[1] for e in EVENTS], dtype=np.int64)
    labels = np.array([e[2] for e in EVENTS], dtype=np.int8)
    ts = np.arange(len(EVENTS)).astype("datetime64[s]")
    pairs = {"valid": np.array([[1, 2], [4, 5]]), "test": np.array([[2, 1], [5, 3], [0, 2]])}
    return EvaluationData(num_items=6, users=users, items=items, ts=ts, labels=labels, pairs=pairs,
                          split={"valid": "literal valid", "test": "literal test"}, max_users=max_users)


COMMUNITY_VECTORS = np.array([[1, 0.1], [1, 0.2], [1, 0.0], [0.1, 1], [0.2, 1], [0.0, 1]], dtype=np.float32)


def test_community_embeddings_beat_opposite_embeddings_on_both_tasks():
    evaluator = Evaluator(literal_data())
    good = evaluator.embeddings("good", COMMUNITY_VECTORS)
    bad = evaluator.embeddings("bad", COMMUNITY_VECTORS[[3, 0, 4, 1, 5, 2]])
    for task, metric in ((ITEM_TASK, "mrr"), (USER_TASK, "ndcg@10")):
        assert good.results[(task, "test")].mean()[metric] > bad.results[(task, "test")].mean()[metric]
    # item-to-item: with 6 pins and the query masked, a same-community target ranks in the top 2
    assert good.results[(ITEM_TASK, "test")].best_rank.max() <= 1
    assert set(good.settings) == {ITEM_TASK, USER_TASK}


def test_item_knn_and_popularity_run_through_the_same_code():
    evaluator = Evaluator(literal_data())
    knn = evaluator.item_knn(neighbor_counts=(1, 5))
    pop = evaluator.popularity()
    assert knn.settings[USER_TASK] in (1, 5)
    # co-engagement stays inside communities, so item-kNN finds every user's next pin in its top 3
    assert knn.results[(USER_TASK, "test")].mean()["hr@10"] == 1.0
    table = results_table([knn, pop])
    assert set(table["model"]) == {"item_knn", "popularity"}
    assert {"valid", "test"} == set(table["split"])
    assert table["protocol"].str.contains("literal test").any()
    assert (table["setting"] != "").all()


def test_pixie_candidates_are_mapped_back_to_evaluation_rows():
    # graph pins are evaluation rows in reverse order; boards = the two communities
    row_of_graph_pin = np.array([5, 4, 3, 2, 1, 0])
    board = np.array([1, 1, 1, 0, 0, 0])  # graph pin i -> board
    graph = BipartiteCSR.from_edges(np.arange(6), board, np.arange(6) + 100, np.array([7, 8]))
    result = Evaluator(literal_data()).pixie(graph, row_of_graph_pin, item_steps=200, user_steps=400,
                                            latest=(1,))
    assert result.results[(ITEM_TASK, "test")].mean()["hr@10"] == 1.0
    assert result.results[(USER_TASK, "test")].mean()["hr@10"] == 1.0


def test_user_sample_is_seeded_and_bounded():
    a = Evaluator(literal_data(max_users=2)).embeddings("m", COMMUNITY_VECTORS)
    b = Evaluator(literal_data(max_users=2)).embeddings("m", COMMUNITY_VECTORS)
    assert a.results[(USER_TASK, "test")].num_queries == 2
    np.testing.assert_array_equal(a.results[(USER_TASK, "test")].query_ids, b.results[(USER_TASK, "test")].query_ids)


def test_time_split_data_from_raw_events():
    ds = dt.date(2026, 1, 31)
    split = TimeSplit(ds, window_days=30, valid_days=3, test_days=3)
    day = lambda d, s=0: dt.datetime(2026, 1, d, 12, 0, s)  # noqa: E731
    rows = [  # user, pin, day: consecutive saves 10 s apart make item-to-item pairs
        (1, 10, day(5)), (1, 11, day(5, 10)),
        (1, 12, day(27)), (1, 13, day(27, 10)),
        (2, 11, day(6)), (2, 14, day(30)), (2, 10, day(30, 10)),
        (3, 99, day(30)),  # a pin without features: left out
    ]
    events = pa.table({
        "user_id": [r[0] for r in rows], "pin_id": [r[1] for r in rows],
        "action": ["save"] * len(rows), "ts": pa.array([r[2] for r in rows], pa.timestamp("us", "UTC")),
        "duration_ms": pa.array([None] * len(rows), pa.int64()),
    })
    data = evaluation_data_from_events(events, np.array([10, 11, 12, 13, 14]), split, max_gap_s=60)
    assert data.num_items == 5 and len(data.users) == 7
    np.testing.assert_array_equal(data.pairs["valid"], [[2, 3]])
    np.testing.assert_array_equal(data.pairs["test"], [[4, 0]])
    assert "2026-01-29..2026-01-31" in data.split["test"]


def test_missing_slice_is_an_error():
    with pytest.raises(ValueError, match="slice 'test'"):
        EvaluationData(num_items=1, users=np.zeros(1, np.int64), items=np.zeros(1, np.int64),
                       ts=np.zeros(1, "datetime64[s]"), labels=np.zeros(1, np.int8),
                       pairs={"valid": np.zeros((0, 2), np.int64)}, split={"valid": "v"})


def test_grids_are_arguments_and_the_public_user_scorers_reproduce_the_tuned_results():
    evaluator = Evaluator(literal_data())
    only = evaluator.embeddings("good", COMMUNITY_VECTORS, user_settings=[(5, "softmax", 0.2)])
    assert only.settings[USER_TASK] == (5, "softmax", 0.2)
    again = evaluator.users(embedding_users(COMMUNITY_VECTORS), (5, "softmax", 0.2), "test")
    np.testing.assert_array_equal(again.best_rank, only.results[(USER_TASK, "test")].best_rank)

    knn = evaluator.item_knn(neighbor_counts=(2,))
    again = evaluator.users(evaluator.item_knn_users, 2, "test")
    np.testing.assert_array_equal(again.best_rank, knn.results[(USER_TASK, "test")].best_rank)
    assert evaluator.item_knn_similarity(2) is evaluator.item_knn_similarity(2)  # fitted once per k

    graph = BipartiteCSR.from_edges(np.arange(6), np.array([0, 0, 0, 1, 1, 1]), np.arange(6) + 100,
                                    np.array([7, 8]))
    pixie = evaluator.pixie(graph, np.arange(6), user_steps=400, latest=(3,))
    generate = pixie_generator(graph, np.arange(6), 6, num_candidates=1000, seed=0)
    again = evaluator.users(pixie_users(generate(400), 6), 3, "test")
    np.testing.assert_array_equal(again.best_rank, pixie.results[(USER_TASK, "test")].best_rank)


def test_latest_queries_keep_the_latest_pins_among_the_query_pins_and_fall_back_to_all() -> None:
    # user 0 saved 1, 2, 3, 4 (newest last); user 1 saved 5, 6; user 2 nothing; user 3 saved 7, 8, 1
    history = Sequences(np.array([0, 4, 6, 6, 9]), np.array([1, 2, 3, 4, 5, 6, 7, 8, 1]), 10)
    query_pins = np.isin(np.arange(10), [1, 2, 4, 8])
    ptr, rows = latest_queries(history, 2)
    assert ptr.tolist() == [0, 2, 4, 4, 6] and rows.tolist() == [4, 3, 6, 5, 1, 8]
    ptr, rows = latest_queries(history, 2, query_pins)
    # user 0 skips 3 for 2; user 1 has no query pin and keeps its latest two; user 3's are both query pins
    assert ptr.tolist() == [0, 2, 4, 4, 6] and rows.tolist() == [4, 2, 6, 5, 1, 8]
    ptr, rows = latest_queries(history, 5, query_pins)
    assert ptr.tolist() == [0, 3, 5, 5, 7] and rows.tolist() == [4, 2, 1, 6, 5, 1, 8]


def test_the_refreshed_protocol_scores_test_with_the_test_inputs_and_tunes_on_the_training_ones() -> None:
    data = literal_data()
    frozen, refreshed = Evaluator(data), Evaluator(data, refit_before_test=True)
    bad = COMMUNITY_VECTORS[[3, 0, 4, 1, 5, 2]]
    settings = [(1, "max"), (5, "sum")]
    good = frozen.embeddings("m", COMMUNITY_VECTORS, settings)
    served = refreshed.embeddings("m", COMMUNITY_VECTORS, settings, test_vectors=bad)
    for task in (ITEM_TASK, USER_TASK):  # VALID (and so the setting) from the vectors trained on TRAIN ...
        np.testing.assert_array_equal(served.results[(task, "valid")].best_rank,
                                      good.results[(task, "valid")].best_rank)
    assert served.settings == good.settings
    # ... TEST from the test vectors at that setting
    again = frozen.users(embedding_users(EmbeddingScorer(bad).items), good.settings[USER_TASK], "test")
    np.testing.assert_array_equal(served.results[(USER_TASK, "test")].best_rank, again.best_rank)
    assert served.results[(ITEM_TASK, "test")].mean()["mrr"] < good.results[(ITEM_TASK, "test")].mean()["mrr"]
    assert "refreshed" in served.results[(USER_TASK, "test")].protocol
    assert "refreshed" not in served.results[(USER_TASK, "valid")].protocol
    assert "refreshed" not in good.results[(USER_TASK, "test")].protocol
    with pytest.raises(ValueError, match="test_vectors"):
        refreshed.embeddings("m", COMMUNITY_VECTORS)


def test_the_refreshed_protocol_refits_item_knn_and_popularity_on_every_engagement_before_test() -> None:
    data = literal_data()
    frozen, refreshed = Evaluator(data), Evaluator(data, refit_before_test=True)
    before_test = data.engagement_matrix((TRAIN, VALID))
    assert before_test.sum() == sum(1 for e in EVENTS if e[2] != TEST)
    # popularity: pin 4 leads TRAIN (3 users); with VALID, pins 0, 1, 3 and 4 tie at 3
    pop, pop_served = frozen.popularity(), refreshed.popularity()
    np.testing.assert_array_equal(pop.results[(USER_TASK, "valid")].best_rank,
                                  pop_served.results[(USER_TASK, "valid")].best_rank)
    direct = ItemScoresScorer(item_popularity(before_test))
    again = frozen.item_to_item(direct, "test")
    np.testing.assert_array_equal(pop_served.results[(ITEM_TASK, "test")].best_rank, again.best_rank)
    # TEST's pair (5, 3): pin 3 has 1 TRAIN user, 3 with VALID, so it ranks higher refreshed
    assert (pop_served.results[(ITEM_TASK, "test")].best_rank[1] < pop.results[(ITEM_TASK, "test")].best_rank[1])
    # item-kNN: the neighbor count from VALID with the TRAIN fit, TEST with the fit on TRAIN + VALID
    knn, knn_served = frozen.item_knn(neighbor_counts=(1, 5)), refreshed.item_knn(neighbor_counts=(1, 5))
    assert knn_served.settings == knn.settings
    k = knn.settings[USER_TASK]
    similarity = refreshed.item_knn_similarity(k, "before_test")
    np.testing.assert_allclose(similarity.toarray(), fit_item_knn(before_test, k).toarray())
    again = frozen.users(lambda targets, _k: SparseScorer(targets.history.matrix(), similarity), k, "test")
    np.testing.assert_array_equal(knn_served.results[(USER_TASK, "test")].best_rank, again.best_rank)
    with pytest.raises(ValueError, match="'train' or 'before_test'"):
        refreshed.fit_matrix("test")


def test_the_refreshed_protocol_walks_the_test_graph_for_pixie() -> None:
    data = literal_data()
    mixed = BipartiteCSR.from_edges(np.arange(6), np.array([0, 1, 0, 1, 0, 1]), np.arange(6) + 100, np.array([7, 8]))
    communities = BipartiteCSR.from_edges(np.arange(6), np.array([0, 0, 0, 1, 1, 1]), np.arange(6) + 100,
                                          np.array([7, 8]))
    rows = np.arange(6)
    on_mixed = Evaluator(data).pixie(mixed, rows, item_steps=200, user_steps=400, latest=(1, 3))
    on_communities = Evaluator(data).pixie(communities, rows, item_steps=200, user_steps=400, latest=(1, 3))
    served = Evaluator(data, refit_before_test=True).pixie(mixed, rows, item_steps=200, user_steps=400,
                                                           latest=(1, 3), test_graph=(communities, rows))
    assert served.settings == on_mixed.settings
    np.testing.assert_array_equal(served.results[(USER_TASK, "valid")].best_rank,
                                  on_mixed.results[(USER_TASK, "valid")].best_rank)
    generate = pixie_generator(communities, rows, 6, num_candidates=1000, seed=0)
    again = Evaluator(data).users(pixie_users(generate(400), 6), on_mixed.settings[USER_TASK], "test")
    np.testing.assert_array_equal(served.results[(USER_TASK, "test")].best_rank, again.best_rank)
    assert served.results[(ITEM_TASK, "test")].mean()["hr@10"] == on_communities.results[(ITEM_TASK, "test")].mean()[
        "hr@10"]
    with pytest.raises(ValueError, match="test_graph"):
        Evaluator(data, refit_before_test=True).pixie(mixed, rows, latest=(1,))
