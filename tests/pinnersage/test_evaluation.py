from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from embeddings.data.engagement import TEST, TRAIN, VALID
from embeddings.pinnersage.evaluation import (
    EvaluationData,
    KMeansSetting,
    LastPinSetting,
    PinnerSageEvaluator,
    UserHistory,
    WardSetting,
    ablation_table,
    clusters_vs_interests,
    compare_methods,
    decayed_average_vectors,
    last_pin_vectors,
    on_interest_share,
    one_topic_each,
    paired_comparison,
    pinnersage_vectors,
    results_table,
    top_topic_coverage,
    topic_entropy,
)

SPLIT = {"valid": "literal valid", "test": "literal test"}
DAY0 = np.datetime64("2026-10-01T12:00:00", "us")
HOUR = np.timedelta64(1, "h")
DAY = np.timedelta64(1, "D")


def _three_cluster_world() -> tuple[EvaluationData, np.ndarray, np.ndarray]:
    """Three users, each with 3 history pins in each of 3 orthogonal clusters (e0, e1, e2 in 4-d).

    Rows 0-8: history pins H[c][j] = e_c + (0.1 (j - 1) - 0.02) e3 (train). Rows 9-11: V[c] = e_c - 0.05 e3
    (the valid slice: every user engages all three, user u's last one in cluster u; nearer the train
    clusters' centres than the test targets are). Rows 12-14: T[c] = e_c +
    0.05 e3 (the test slice: every user engages all three). Rows 15-20: six distractors near the mean
    direction (1, 1, 1, .). So three medoids find every target first; the last pin finds only its own
    cluster's target before the distractors; the average points at the distractors.
    """
    e = np.eye(4)
    vectors = [e[c] + (0.1 * (j - 1) - 0.02) * e[3] for c in range(3) for j in range(3)]
    vectors += [e[c] - 0.05 * e[3] for c in range(3)]
    vectors += [e[c] + 0.05 * e[3] for c in range(3)]
    vectors += [np.array([1.0, 1.0, 1.0, 0.1 * (j - 2.5)]) for j in range(6)]
    users, items, ts, labels = [], [], [], []
    for u in range(3):
        for i in range(9):  # train: one pin an hour
            users.append(u), items.append(i), ts.append(DAY0 + i * HOUR), labels.append(TRAIN)
        for position, c in enumerate([(u + 1) % 3, (u + 2) % 3, u]):  # valid: cluster u last
            users.append(u), items.append(9 + c), ts.append(DAY0 + 10 * DAY + position * HOUR)
            labels.append(VALID)
        for c in range(3):
            users.append(u), items.append(12 + c), ts.append(DAY0 + 20 * DAY + c * HOUR), labels.append(TEST)
    data = EvaluationData(num_items=len(vectors), users=np.array(users), items=np.array(items),
                          ts=np.array(ts), labels=np.array(labels), split=SPLIT)
    topics = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2, 0, 1, 2, 3, 3, 3, 3, 3, 3])
    return data, np.array(vectors, np.float32), topics


@pytest.fixture(scope="module")
def world():
    data, vectors, topics = _three_cluster_world()
    evaluator = PinnerSageEvaluator(data, vectors, item_topics=topics, ks=(3, 10), tuning_metric="recall@3",
                                    diversity_k=3)
    return evaluator


def test_three_medoids_beat_last_pin_and_decayed_average_on_recall(world):
    sage = world.pinnersage(alphas=(0.6, 1.0, 1.6))
    last = world.last_pin()
    average = world.decayed_average()
    recall = {m.name: m.results["test"].mean()["recall@3"] for m in (sage, last, average)}
    assert recall["pinnersage"] == pytest.approx(1.0)
    assert recall["last_pin"] == pytest.approx(1 / 3)
    assert recall["decayed_average"] == pytest.approx(0.0)
    # recall@10 holds every unmasked pin but the distractors: all three get the targets there
    assert sage.results["test"].mean()["recall@10"] == pytest.approx(1.0)
    assert sage.num_clusters["test"].tolist() == [3, 3, 3]
    assert sage.results["test"].num_queries == 3 and "history masked" in sage.results["test"].protocol


def test_diversity_is_the_entropy_of_topics_in_the_top_list(world):
    sage = world.pinnersage(alphas=(1.0,))
    last = world.last_pin()
    average = world.decayed_average()
    # top 3: the three targets (topics 0, 1, 2) / own target + two distractors / three distractors
    np.testing.assert_allclose(sage.results["test"].metric("topic_entropy@3"), np.log2(3))
    expected_last = -(1 / 3 * np.log2(1 / 3) + 2 / 3 * np.log2(2 / 3))
    np.testing.assert_allclose(last.results["test"].metric("topic_entropy@3"), expected_last)
    np.testing.assert_allclose(average.results["test"].metric("topic_entropy@3"), 0.0)


def test_topic_entropy_on_a_literal_list():
    topics = np.array([0, 0, 1, 2, 3, 3])
    out = topic_entropy(np.array([[0, 1, 2, 3], [4, 5, -1, -1], [-1, -1, -1, -1]]), topics)
    assert out[0] == pytest.approx(1.5)  # topics 0, 0, 1, 2: p = 1/2, 1/4, 1/4
    assert out[1] == 0.0  # empty positions are left out
    assert np.isnan(out[2])
    with pytest.raises(ValueError, match="item_topics has 6"):
        topic_entropy(np.array([[6]]), topics)


def test_centroid_ablation_uses_the_same_clusters_with_their_mean_vectors(world):
    centroid = world.centroid(alphas=(1.0,))
    assert centroid.results["test"].mean()["recall@3"] == pytest.approx(1.0)
    assert centroid.num_clusters["test"].tolist() == [3, 3, 3]
    # one user, two clusters: the centroid of {0, 1, 2} is the mean of their unit vectors
    data, vectors, _ = _three_cluster_world()
    history = UserHistory.from_events(np.zeros(5, np.int64), np.array([0, 1, 2, 3, 4]),
                                      DAY0 + np.arange(5) * HOUR, 1, len(vectors))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    out = pinnersage_vectors(history, vectors, np.array([0]), alpha=1.0, representative="centroid")
    medoids = pinnersage_vectors(history, vectors, np.array([0]), alpha=1.0)
    assert out.num_clusters.tolist() == [2] and out.ptr.tolist() == [0, 2]
    # importance: three pins in cluster e0 against two in e1
    np.testing.assert_allclose(out.vectors[0], unit[[0, 1, 2]].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(out.vectors[1], unit[[3, 4]].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(medoids.vectors[0], vectors[1])  # the middle pin of cluster e0
    np.testing.assert_allclose(out.weights, medoids.weights)
    with pytest.raises(ValueError, match="representative must be one of"):
        pinnersage_vectors(history, vectors, np.array([0]), alpha=1.0, representative="mean")


def test_kmeans_baseline_tunes_k_on_validation(world):
    kmeans = world.kmeans(num_clusters=(2, 3))
    assert kmeans.setting == KMeansSetting(3, 0.01) and kmeans.setting.k == 3
    assert [s.k for s, _ in kmeans.tuning] == [2, 3] and kmeans.tuning[1][1] > kmeans.tuning[0][1]
    assert kmeans.results["test"].mean()["recall@3"] == pytest.approx(1.0)


def test_importance_weighted_sum_blend_runs_through_the_same_code(world):
    summed = world.pinnersage(name="pinnersage_sum", alphas=(1.0,), blend="sum")
    # the weighted sum of three orthogonal medoids points between them, at the distractors
    assert summed.results["test"].mean()["recall@3"] < 1.0
    table = results_table([summed, world.last_pin()])
    assert set(table["model"]) == {"pinnersage_sum", "last_pin"}
    assert set(table["split"]) == {"valid", "test"}
    assert "topic_entropy@3" in set(table["metric"]) and "setting" in table.columns
    assert table.loc[table["model"] == "pinnersage_sum", "setting"].iloc[0] == "alpha=1 lam=0.01"


def _alpha_world() -> EvaluationData:
    """One user in 2-d where the best alpha on the validation slice loses on the test slice.

    Pins by angle: H0 = 0 deg, H30, H60 (train), A = -1 (valid target), B = 34 (test target), D = 62 (never
    engaged). Valid, history {H0, H30, H60}: alpha 0.3 keeps three singletons (A's nearest medoid H0 wins
    recall@1); alpha 1.5 merges them into one cluster whose medoid H30 ranks B above A. Test, history
    {A, H0, H30, H60}: alpha 0.3 keeps H60 as a medoid, which ranks D above B; alpha 1.5's medoid H30 ranks
    B first.
    """
    return EvaluationData(
        num_items=6, users=np.zeros(5, np.int64), items=np.array([0, 1, 2, 3, 4]),
        ts=np.array([DAY0, DAY0 + HOUR, DAY0 + 2 * HOUR, DAY0 + 10 * DAY, DAY0 + 20 * DAY]),
        labels=np.array([TRAIN, TRAIN, TRAIN, VALID, TEST]), split=SPLIT)


def _angles(degrees: list[float]) -> np.ndarray:
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_compare_methods_reports_every_method_and_blend_in_the_ablation_table(world):
    methods = compare_methods(world, alphas=(1.0,), kmeans_ks=(3,))
    names = [m.name for m in methods]
    assert names == ["pinnersage", "pinnersage_centroid", "pinnersage_max", "pinnersage_sum",
                     "pinnersage_round_robin", "last_pin", "decayed_average", "kmeans"]
    table = ablation_table(methods, metrics=("recall@3",)).set_index("method")
    assert table.loc["pinnersage", "blend"] == "interleave" and table.loc["pinnersage_max", "blend"] == "max"
    assert table.loc["last_pin", "blend"] == "-" and table.loc["kmeans", "setting"] == "k=3 lam=0.01"
    # three orthogonal interests: one candidate list per medoid puts one target of each first
    assert table.loc["pinnersage", "test_recall@3"] == pytest.approx(1.0)
    assert table.loc["pinnersage", "test_topic_entropy@3"] == pytest.approx(np.log2(3))
    assert table.loc["last_pin", "test_recall@3"] == pytest.approx(1 / 3)
    assert table.loc["pinnersage", "test_clusters_per_user_median"] == 3.0
    valid_score = dict(methods[0].tuning)[WardSetting(1.0, 0.01)]
    assert table.loc["pinnersage", "valid_tuning_metric"] == pytest.approx(valid_score)


def test_alpha_is_chosen_on_validation_and_test_is_scored_once_with_it():
    vectors = _angles([0, 30, 60, -1, 34, 62])  # rows: H0, H30, H60, A, B, D
    evaluator = PinnerSageEvaluator(_alpha_world(), vectors, ks=(1,), tuning_metric="recall@1")
    result = evaluator.pinnersage(alphas=(0.3, 1.5), blend="max")
    assert result.tuning == [(WardSetting(0.3, 0.01), 1.0), (WardSetting(1.5, 0.01), 0.0)]
    assert result.setting.alpha == 0.3
    assert result.results["valid"].mean()["recall@1"] == 1.0
    assert result.results["test"].mean()["recall@1"] == 0.0
    # the test slice alone would have chosen 1.5: the choice did not look at it
    test = evaluator.slices["test"]
    on_test = {alpha: evaluator.evaluate(pinnersage_vectors(test.history, vectors, test.users(), alpha=alpha),
                                         "test", "max").mean()["recall@1"] for alpha in (0.3, 1.5)}
    assert on_test == {0.3: 0.0, 1.5: 1.0}


def _drift_world() -> tuple[EvaluationData, np.ndarray]:
    """One user in 2-d whose old interest is larger than today's: the decay decides which leads.

    Pins by angle: H0, H2, H4, H6 (train, 30 days ago), N90 (train, yesterday), V88 (valid), T93 (test), D10
    (never engaged, next to the old interest). At lam 0.01 the old cluster (4 actions) outweighs the new one
    (1 action) and its medoid (or the average, pulled to ~14 deg) ranks D10 first; at lam 0.3 the new
    cluster leads and V88 (then T93) is first.
    """
    ts = [DAY0 - 30 * DAY + k * HOUR for k in range(4)] + [DAY0 - DAY, DAY0 + DAY, DAY0 + 2 * DAY]
    data = EvaluationData(num_items=8, users=np.zeros(7, np.int64), items=np.arange(7), ts=np.array(ts),
                          labels=np.array([TRAIN] * 5 + [VALID, TEST]), split=SPLIT)
    return data, _angles([0, 2, 4, 6, 90, 88, 93, 10])


def test_the_importance_decay_is_chosen_on_validation_for_every_method_that_uses_it():
    data, vectors = _drift_world()
    evaluator = PinnerSageEvaluator(data, vectors, ks=(1,), tuning_metric="recall@1", lams=(0.01, 0.3))
    top1 = evaluator.pinnersage(alphas=(0.5,), blend="max", num_vectors=1)
    assert top1.tuning == [(WardSetting(0.5, 0.01), 0.0), (WardSetting(0.5, 0.3), 1.0)]
    assert top1.setting == WardSetting(0.5, 0.3) and repr(top1.setting) == "alpha=0.5 lam=0.3"
    assert top1.results["test"].mean()["recall@1"] == 1.0 and top1.num_clusters["test"].tolist() == [2]
    average = evaluator.decayed_average()
    assert [(s.lam, v) for s, v in average.tuning] == [(0.01, 0.0), (0.3, 1.0)] and repr(average.setting) == "lam=0.3"
    kmeans = evaluator.kmeans(num_clusters=(2,), blend="max", num_vectors=1)
    assert kmeans.setting == KMeansSetting(2, 0.3) and kmeans.results["test"].mean()["recall@1"] == 1.0
    # one decay only (the job's): the old interest leads and the test target is missed
    single = PinnerSageEvaluator(data, vectors, ks=(1,), tuning_metric="recall@1", lam=0.01)
    assert single.lams == (0.01,)
    assert single.pinnersage(alphas=(0.5,), blend="max", num_vectors=1).results["test"].mean()["recall@1"] == 0.0
    with pytest.raises(ValueError, match="lams"):
        PinnerSageEvaluator(data, vectors, lams=(0.01, float("nan")))


def test_each_alpha_is_clustered_once_whatever_the_number_of_decays(monkeypatch):
    import embeddings.pinnersage.evaluation as evaluation

    calls = []
    real = evaluation.user_clusters
    monkeypatch.setattr(evaluation, "user_clusters", lambda *a, **k: calls.append(k["alpha"]) or real(*a, **k))
    data, vectors = _drift_world()
    evaluator = PinnerSageEvaluator(data, vectors, ks=(1,), tuning_metric="recall@1", lams=(0.01, 0.1, 0.3))
    evaluator.pinnersage(alphas=(0.5, 1.0), blend="max")
    assert calls == [0.5, 1.0, 0.5]  # valid at each alpha (3 decays each), then test at the chosen one
    # ranking clusters made once equals clustering and ranking in one call, for every decay
    s = evaluator.slices["test"]
    for lam in (0.0, 0.01, 0.3):
        once = evaluation.ward_user_clusters(s.history, vectors, s.users(), alpha=0.5)
        a = pinnersage_vectors(s.history, vectors, s.users(), alpha=0.5, lam=lam, clusters=once)
        b = pinnersage_vectors(s.history, vectors, s.users(), alpha=0.5, lam=lam)
        np.testing.assert_array_equal(a.vectors, b.vectors)
        np.testing.assert_array_equal(a.weights, b.weights)


def test_clusters_track_planted_interests_by_spearman():
    # users 0, 1, 2 engage 1, 2 and 3 orthogonal clusters (3 pins each, rows 0-8 of the world)
    _, vectors, _ = _three_cluster_world()
    users = np.repeat([0, 1, 1, 2, 2, 2], 3)
    items = np.concatenate([np.arange(3), np.arange(6), np.arange(9)])
    ts = DAY0 + np.arange(len(items)) * HOUR
    history = UserHistory.from_events(users, items, ts, 3, len(vectors))
    out = pinnersage_vectors(history, vectors, np.arange(3), alpha=1.0)
    assert out.num_clusters.tolist() == [1, 2, 3]
    assert clusters_vs_interests(out.num_clusters, np.array([1, 2, 3])).rho == pytest.approx(1.0)
    literal = clusters_vs_interests(np.array([1, 2, 3, 4, 5]), np.array([1, 3, 2, 4, 5]))
    assert literal.rho == pytest.approx(0.9) and literal.num_users == 5  # 1 - 6 * 2 / (5 * 24)
    with pytest.raises(ValueError, match="num_clusters is constant"):
        clusters_vs_interests(np.array([2, 2, 2]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="equal-length"):
        clusters_vs_interests(np.array([1, 2, 3]), np.array([1, 2]))


def test_last_pin_and_average_on_a_literal_history():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    # pin 1 is the most recent; pins 0 and 2 were a day apart before it
    history = UserHistory.from_events(np.zeros(3, np.int64), np.array([2, 0, 1]),
                                      np.array([DAY0 - DAY, DAY0, DAY0 + HOUR]), 2, 3)
    last = last_pin_vectors(history, vectors, np.array([0, 1]))
    assert last.ptr.tolist() == [0, 1, 1]  # user 1 has no history: no vectors
    np.testing.assert_allclose(last.vectors[0], vectors[1])
    average = decayed_average_vectors(history, vectors, np.array([0]), lam=np.log(2))  # halves per day
    # ages at the end of the last action's day (2026-10-02 00:00): 11 h (pin 1), 12 h (pin 0), 36 h (pin 2)
    w1, w0, w2 = 0.5 ** (11 / 24), 0.5 ** (12 / 24), 0.5 ** (36 / 24)
    np.testing.assert_allclose(average.vectors[0], [w0 + w2, w1], rtol=1e-6)  # unit rows weighted
    with pytest.raises(ValueError, match=r"pin_vectors must be \(3, d\)"):
        last_pin_vectors(history, vectors[:2], np.array([0]))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="one entry per event"):
        EvaluationData(num_items=3, users=np.zeros(2, np.int64), items=np.zeros(1, np.int64),
                       ts=np.array([DAY0, DAY0]), labels=np.zeros(2), split=SPLIT)
    with pytest.raises(ValueError, match="split description for slice 'test'"):
        EvaluationData(num_items=3, users=np.zeros(1, np.int64), items=np.zeros(1, np.int64),
                       ts=np.array([DAY0]), labels=np.zeros(1), split={"valid": "v"})
    with pytest.raises(ValueError, match="mode must be one of"):
        EvaluationData(num_items=3, users=np.zeros(1, np.int64), items=np.zeros(1, np.int64),
                       ts=np.array([DAY0]), labels=np.zeros(1), split=SPLIT, mode="all")
    with pytest.raises(ValueError, match="pin_vectors have 5 rows but the evaluation data has 6 pins"):
        PinnerSageEvaluator(_alpha_world(), _angles([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="slice must be one of"):
        _alpha_world().slice("train")


def test_paired_comparison_overall_and_per_group(world):
    methods = [world.pinnersage(alphas=(1.0,)), world.last_pin(), world.decayed_average()]
    groups = np.array([1, 1, 2])  # the planted interests of user rows 0, 1, 2
    table = paired_comparison(methods, "pinnersage", ["last_pin", "decayed_average"], metric="recall@3",
                              groups=groups, ci_samples=50)
    assert table["group"].tolist() == ["all", "1", "2", "all", "1", "2"]
    assert table["users"].tolist() == [3, 2, 1, 3, 2, 1]
    rows = table.set_index(["group", "other"])
    # every user: the medoids find all 3 targets, the last pin 1, the average none (identical differences)
    assert rows.loc[("all", "last_pin"), ["reference_mean", "other_mean", "diff", "ci_low", "ci_high"]].tolist() == \
        pytest.approx([1.0, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert rows.loc[("2", "decayed_average"), "diff"] == pytest.approx(1.0)
    assert table["beats"].all()
    # unknown labels (negative) are left out of the groups, not of "all"
    unknown = paired_comparison(methods, "pinnersage", ["last_pin"], metric="recall@3",
                                groups=np.array([-1, 1, 1]), ci_samples=10)
    assert unknown["group"].tolist() == ["all", "1"] and unknown["users"].tolist() == [3, 2]
    with pytest.raises(ValueError, match="no evaluated method 'kmeans'"):
        paired_comparison(methods, "pinnersage", ["kmeans"])


def test_a_tie_is_not_beaten(world):
    sage = world.pinnersage(alphas=(1.0,))
    twin = world.pinnersage("twin", alphas=(1.0,))
    row = paired_comparison([sage, twin], "pinnersage", ["twin"], metric="recall@3", ci_samples=20).iloc[0]
    assert (row["diff"], row["ci_low"], row["beats"]) == (0.0, 0.0, False)


def test_top_topic_coverage_on_literal_targets():
    # user 0: targets of topics 0, 0, 1, 2, 3 -> the 3 most frequent cover 4 of 5; user 2: one topic
    targets = sp.csr_matrix(np.array([[1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]]))
    topics = np.array([0, 0, 1, 2, 3, 3])
    assert top_topic_coverage(targets, np.array([0, 2]), topics).tolist() == pytest.approx([0.8, 1.0])
    assert top_topic_coverage(targets, np.array([0]), topics, num_topics=1).tolist() == pytest.approx([0.4])
    with pytest.raises(ValueError, match="user row 1 has no targets"):
        top_topic_coverage(targets, np.array([1]), topics)
    with pytest.raises(ValueError, match="one topic per item"):
        top_topic_coverage(targets, np.array([0]), topics[:3])


def test_on_interest_share_on_literal_lists():
    interests = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 0, 1]]))  # user 0: topics 0, 1; user 1: topic 3
    topics = one_topic_each(np.array([0, 1, 2, 3, 3]))
    lists = np.array([[0, 1, 2, 3], [4, 3, -1, -1], [-1, -1, -1, -1]])
    share = on_interest_share(lists, topics, np.array([0, 1, 0]), interests)
    np.testing.assert_allclose(share[:2], [0.5, 1.0])
    assert np.isnan(share[2])  # an empty list
    # pin 2 with a secondary topic 1 is on user 0's interests; a topic past the users' width is nobody's
    both = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0],
                                   [0, 0, 0, 0, 1]]))
    np.testing.assert_allclose(on_interest_share(lists[:2], both, np.array([0, 1]), interests), [0.75, 0.5])
    with pytest.raises(ValueError, match="one row per user"):
        on_interest_share(lists, topics, np.array([0]), interests)


def test_the_average_falls_between_interests_and_the_medoids_do_not():
    data, vectors, topics = _three_cluster_world()
    interests = sp.csr_matrix(np.tile([1.0, 1.0, 1.0, 0.0], (data.num_users, 1)))  # topics 0-2; 3: distractors
    evaluator = PinnerSageEvaluator(data, vectors, item_topics=topics, ks=(3,), tuning_metric="recall@3",
                                    diversity_k=3, user_interests={"valid": interests, "test": interests})
    sage, average = evaluator.pinnersage(alphas=(1.0,)), evaluator.decayed_average()
    np.testing.assert_allclose(sage.results["test"].metric("on_interest@3"), 1.0)
    np.testing.assert_allclose(average.results["test"].metric("on_interest@3"), 0.0)
    assert ablation_table([sage, average], metrics=("recall@3",))["test_on_interest@3"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="need item_topics"):
        PinnerSageEvaluator(data, vectors, user_interests={"valid": interests, "test": interests})
    with pytest.raises(ValueError, match="for slice 'test'"):
        PinnerSageEvaluator(data, vectors, item_topics=topics, user_interests={"valid": interests})


def test_the_pull_toward_the_corpus_direction_is_chosen_on_validation_for_every_method():
    # H at 0 degrees is the history; B (20) is its nearest pin, the target T (50) lies toward the other pins
    # (80-100 degrees), so only a query pulled toward the corpus direction (about 70 degrees) ranks T first.
    vectors = _angles([0, 20, 50, 80, 85, 90, 95, 100])
    data = EvaluationData(num_items=8, users=np.zeros(3, np.int64), items=np.array([0, 2, 1]),
                          ts=DAY0 + np.arange(3) * DAY, labels=np.array([TRAIN, VALID, TEST]), split=SPLIT)
    evaluator = PinnerSageEvaluator(data, vectors, ks=(1,), tuning_metric="recall@1", pulls=(0.0, 2.0))
    last = evaluator.last_pin()
    assert last.tuning == [(LastPinSetting(0.0), 0.0), (LastPinSetting(2.0), 1.0)]
    assert repr(last.setting) == "last pin pull=2"
    average = evaluator.decayed_average()
    assert [(s.pull, v) for s, v in average.tuning] == [(0.0, 0.0), (2.0, 1.0)]
    medoids = evaluator.pinnersage(alphas=(1.0,), blend="max")
    assert medoids.setting == WardSetting(1.0, 0.01, 2.0) and repr(medoids.setting) == "alpha=1 lam=0.01 pull=2"
    # TEST once, with the pull: the history is H and T; pulled, T's query ranks a corpus pin above B
    assert medoids.results["test"].mean()["recall@1"] == 0.0
    # without a pull grid nothing moves: the queries are the vectors themselves
    plain = PinnerSageEvaluator(data, vectors, ks=(1,), tuning_metric="recall@1").last_pin()
    assert plain.tuning == [(LastPinSetting(0.0), 0.0)] and repr(plain.setting) == "last pin"
    with pytest.raises(ValueError, match="pulls"):
        PinnerSageEvaluator(data, vectors, pulls=(-1.0,))
