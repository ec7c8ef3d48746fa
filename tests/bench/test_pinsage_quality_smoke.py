"""bench/pinsage_quality.py: the pairing and graph helpers on literal data, and the synthetic part end to end
on the ``tiny`` world (no shared data read)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.pinsage_quality import (DEFAULT_ABLATIONS, PAIRED, PRIMARY, REFRESHED, Inputs, Variant, ablation_list,
                                   ablation_variants, bench_hetrec, bench_synthetic, board_pairs, build_parser,
                                   cap_pairs,
                                   format_paired, history_queries, next_save_pairs, paired_differences, ppr_pairs,
                                   public_inputs, record_name, same_day_pairs, sharpen, shared_options,
                                   train_and_embed, train_graph, training_options, weight_concentration)
from embeddings.data.engagement import TEST, TRAIN, VALID
from embeddings.eval.metrics import RankingMetrics
from embeddings.graph.walks import WalkConfig
from embeddings.pinsage.data import PinGraph, PositivePairs, with_query_width
from embeddings.pinsage.evaluation import ITEM_TASK, USER_TASK, MethodResult
from embeddings.pinsage.training import TrainingOptions
from tests.data.test_importers import write_hetrec, write_two_listeners

DAY_US = 86_400 * 10**6


def _ts(days: list[float]) -> np.ndarray:
    return (np.asarray(days) * DAY_US).astype(np.int64).astype("datetime64[us]")


def test_next_save_pairs_follow_each_user_in_time_and_skip_repeats() -> None:
    # user 0: pin 3 (day 0, train), pin 3 again (day 0, train), pin 5 (day 1, valid), pin 7 (day 40, test)
    # user 1: pin 5 (day 2, train), pin 3 (day 2, test); rows given out of order on purpose.
    users = np.array([1, 0, 0, 1, 0, 0])
    items = np.array([3, 5, 3, 5, 7, 3])
    ts = _ts([2, 1, 0, 2, 40, 0])
    labels = np.array([TEST, VALID, TRAIN, TRAIN, TEST, TRAIN], dtype=np.int8)

    pairs, pair_labels = next_save_pairs(users, items, ts, labels, max_gap_s=None)
    assert pairs.tolist() == [[3, 5], [5, 7], [5, 3]]
    assert pair_labels.tolist() == [VALID, TEST, TEST]

    pairs, pair_labels = next_save_pairs(users, items, ts, labels, max_gap_s=31 * 86_400.0)
    assert pairs.tolist() == [[3, 5], [5, 3]]  # the 39-day gap 5 -> 7 is dropped
    assert pair_labels.tolist() == [VALID, TEST]


def test_next_save_pairs_put_training_saves_first_within_a_timestamp() -> None:
    users = np.zeros(2, dtype=np.int64)
    pairs, labels = next_save_pairs(users, np.array([9, 4]), _ts([0, 0]), np.array([TRAIN, VALID], np.int8), None)
    assert pairs.tolist() == [[9, 4]] and labels.tolist() == [VALID]


def test_same_day_pairs_pair_distinct_pins_of_one_user_day_only() -> None:
    # user 0 saves pins 1, 2, 3 and 3 again (another tag) on day 0 and pin 4 on day 1; user 1 saves 1 and 5
    # on day 0 and pin 6 alone on day 3.
    users = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    items = np.array([1, 2, 3, 3, 4, 1, 5, 6])
    ts = _ts([0, 0.1, 0.2, 0.3, 1, 0, 0.5, 3])

    one = same_day_pairs(users, items, ts, partners=1)
    assert len(one) == 5  # one partner for each of the 5 (user, day, pin) that share their day
    every = same_day_pairs(users, items, ts, partners=5)
    expected = {(a, b) for a in (1, 2, 3) for b in (1, 2, 3) if a != b} | {(1, 5), (5, 1)}
    assert {tuple(p) for p in every.tolist()} == expected and len(every) == len(expected)
    assert {tuple(p) for p in one.tolist()} <= expected
    assert same_day_pairs(users, items, ts, partners=1, seed=0).tolist() == one.tolist()  # seeded


def test_board_pairs_pair_distinct_pins_of_one_board_at_any_time() -> None:
    # board "a" holds pins 1, 2 and 2 again; board "b" pins 3 and 1; board "c" pin 4 alone
    boards = np.array(["a", "a", "a", "b", "b", "c"])
    items = np.array([1, 2, 2, 3, 1, 4])
    every = board_pairs(boards, items, partners=5)
    assert sorted(map(tuple, every.tolist())) == [(1, 2), (1, 3), (2, 1), (3, 1)]
    assert len(board_pairs(boards, items, partners=1)) == 4  # each board has 2 distinct pins: 1 partner each
    assert board_pairs(boards, items, partners=0).shape == (0, 2)
    big = np.repeat(np.array([7, 8]), 6)  # two boards of 6 pins: 2 partners each, seeded
    pins = np.r_[np.arange(6), np.arange(10, 16)]
    two = board_pairs(big, pins, partners=2, seed=3)
    assert len(two) == 24 and (two[:, 0] != two[:, 1]).all() and ((two >= 10).sum(axis=1) % 2 == 0).all()
    assert np.array_equal(two, board_pairs(big, pins, partners=2, seed=3))


def test_public_inputs_add_board_partners_to_the_training_pairs_only(tmp_path) -> None:
    source = write_hetrec(tmp_path / "hetrec")
    walk = WalkConfig(num_steps=50, top_t=2, band=(1, 2), num_band_samples=1)
    plain, data = public_inputs(source, walk, None, 0)
    boards, with_boards = public_inputs(source, walk, None, 0, board_partners=2)
    assert boards.stats["pairs"]["board_partners"] == 2
    assert len(boards.pairs.train) > len(plain.pairs.train)
    assert {tuple(p) for p in plain.pairs.train.tolist()} <= {tuple(p) for p in boards.pairs.train.tolist()}
    np.testing.assert_array_equal(with_boards.pairs["valid"], data.pairs["valid"])
    np.testing.assert_array_equal(with_boards.pairs["test"], data.pairs["test"])


def test_the_development_split_scores_the_valid_saves_as_its_test_slice_without_reading_test(tmp_path) -> None:
    source = write_two_listeners(tmp_path / "hetrec")
    walk = WalkConfig(num_steps=50, top_t=2, band=(1, 2), num_band_samples=1)
    inputs, data = public_inputs(source, walk, None, 0)
    dev_inputs, dev = public_inputs(source, walk, None, 0, development=True)
    row = {int(pin): r for r, pin in enumerate(inputs.graph.pin_ids)}
    assert dev_inputs.stats["saves_per_slice"] == {"train": 5, "valid": 1, "test": 2}
    assert inputs.stats["saves_per_slice"] == {"train": 6, "valid": 2, "test": 2}
    # The development TEST slice is the VALID slice, with the same history before it ...
    real_valid, dev_test = data.user_targets("valid"), dev.user_targets("test")
    assert sorted(dev_test.targets.nonzero()[1].tolist()) == [row[5], row[8]]
    assert (dev_test.targets != real_valid.targets).nnz == 0
    np.testing.assert_array_equal(dev_test.history.items, real_valid.history.items)
    # ... no TEST save is read (artist 6 only ever appears in TEST) ...
    assert row[6] not in dev.items.tolist() and row[6] in data.items.tolist()
    # ... and a dev-VALID pin (artist 4, saved by user 5 only) is in that history but off the dev graph.
    assert row[4] in dev_test.history.items.tolist()
    assert dev_inputs.csr.pin_degree()[row[4]] == 0 < inputs.csr.pin_degree()[row[4]]
    assert "development split test" in dev.split["test"]


def test_refresh_builds_the_graph_of_every_save_before_test_and_leaves_training_alone(tmp_path) -> None:
    source = write_two_listeners(tmp_path / "hetrec")
    walk = WalkConfig(num_steps=50, top_t=2, band=(1, 2), num_band_samples=1)
    plain, _ = public_inputs(source, walk, None, 0)
    inputs, data = public_inputs(source, walk, None, 0, refresh=True)
    assert plain.refreshed is None
    row = {int(pin): r for r, pin in enumerate(inputs.graph.pin_ids)}
    # the training graph, pairs and features are the plain ones
    np.testing.assert_array_equal(inputs.graph.neighbors, plain.graph.neighbors)
    np.testing.assert_array_equal(inputs.pairs.train, plain.pairs.train)
    # the refreshed graph: an edge per TRAIN and VALID save (each user tags with one tag: one board each), none
    # of TEST's
    assert (inputs.csr.num_edges, inputs.refreshed.csr.num_edges) == (6, 8)
    assert inputs.refreshed.csr.num_edges == int((data.labels != TEST).sum())
    assert inputs.refreshed.csr.pin_degree()[row[6]] == 0  # artist 6 only ever appears in TEST
    assert inputs.stats["refreshed_graph"]["edges"] == inputs.refreshed.csr.num_edges
    np.testing.assert_array_equal(inputs.refreshed.graph.features, inputs.graph.features)
    dev, _ = public_inputs(source, walk, None, 0, development=True, refresh=True)
    # on the development split, "before its TEST slice" is every save but TEST's: the real TRAIN graph
    assert dev.refreshed.csr.num_edges == inputs.csr.num_edges
    np.testing.assert_array_equal(dev.refreshed.graph.neighbors, inputs.graph.neighbors)


def test_history_queries_ask_for_each_new_pin_from_the_users_latest_distinct_pins() -> None:
    # user 0 saves 5, 6, 5 again, 7 in TRAIN, then 8 in VALID; user 1 saves 3 then 4; user 2 saves 9 once
    users = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    items = np.array([5, 6, 5, 7, 8, 3, 4, 9])
    ts = _ts([0, 1, 2, 3, 4, 0, 1, 0])
    labels = np.array([TRAIN] * 4 + [VALID] + [TRAIN] * 3, dtype=np.int8)
    two = history_queries(users, items, ts, labels, num_latest=2)
    # 6 from [5]; 5 again is no new pin, but makes 5 the newest; 7 from [5, 6]; 8 is VALID; 4 from [3]
    assert two.tolist() == [[5, -1, 6], [5, 6, 7], [3, -1, 4]]
    assert history_queries(users, items, ts, labels, num_latest=1).tolist() == [[5, 6], [5, 7], [3, 4]]
    assert with_query_width(np.array([[1, 2], [3, 4]]), 3).tolist() == [[1, -1, -1, 2], [3, -1, -1, 4]]


def test_public_inputs_add_history_queries_to_the_training_examples_only(tmp_path) -> None:
    source = write_hetrec(tmp_path / "hetrec")
    walk = WalkConfig(num_steps=50, top_t=2, band=(1, 2), num_band_samples=1)
    plain, data = public_inputs(source, walk, None, 0)
    histories, with_histories = public_inputs(source, walk, None, 0, history=(3, 2))
    stats = histories.stats["pairs"]["history_queries"]
    assert stats["latest"] == 3 and stats["copies"] == 2 and stats["examples"] > 0
    train = histories.pairs.train
    assert train.shape == (len(plain.pairs.train) + 2 * stats["examples"], 4)
    np.testing.assert_array_equal(train[:len(plain.pairs.train)], with_query_width(plain.pairs.train, 3))
    np.testing.assert_array_equal(histories.pairs.valid, plain.pairs.valid)
    np.testing.assert_array_equal(with_histories.pairs["test"], data.pairs["test"])


def test_the_parser_sets_the_softmax_temperature_log_q_weight_learning_rate_weight_decay_negatives_and_batch() -> None:
    fields = ("temperature", "log_q_weight", "learning_rate", "weight_decay", "num_shared_negatives", "batch_size")
    defaults = training_options(build_parser().parse_args([]))
    assert [getattr(defaults, f) for f in fields] == [getattr(TrainingOptions, f) for f in fields]
    tuned = training_options(build_parser().parse_args(["--temperature", "0.02", "--log-q-weight", "2",
                                                        "--learning-rate", "0.003", "--weight-decay", "0.0001",
                                                        "--shared-negatives", "2000", "--batch-size", "1024"]))
    assert [getattr(tuned, f) for f in fields] == [0.02, 2.0, 0.003, 0.0001, 2000, 1024]


def test_by_default_every_hetrec_training_runs_to_the_epoch_cap() -> None:
    """Patience as large as the cap: no run stops early, each keeps its best VALID epoch of the 10."""
    options = training_options(build_parser().parse_args([]))
    assert (options.num_epochs, options.patience) == (10, 10)
    assert training_options(build_parser().parse_args(["--epochs", "20", "--patience", "20"])).num_epochs == 20


def test_train_graph_dedups_edges_and_keeps_isolated_pins() -> None:
    pin_ids = np.array([10, 20, 30, 40])
    csr = train_graph(np.array([0, 0, 1, 2]), np.array([700, 700, 700, 900]), pin_ids)
    assert csr.num_pins == 4 and csr.num_boards == 2 and csr.num_edges == 3
    assert csr.pin_degree().tolist() == [1, 1, 1, 0]
    assert csr.board_ids.tolist() == [700, 900]


def test_weight_concentration_measures_how_far_visit_weights_are_from_uniform() -> None:
    neighbors = np.array([[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, -1, -1], [-1, -1, -1, -1]])
    weights = np.array([[5.0, 5, 5, 5], [97, 1, 1, 1], [3, 1, 9, 9], [0, 0, 0, 0]])  # padding weights ignored
    out = weight_concentration(neighbors, weights)
    assert out["pins"] == 3 and out["median_neighbors"] == 4.0  # counts 4, 4, 2; the isolated pin is left out
    # top shares 0.25 (uniform), 0.97, 0.75; effective counts 4, about 1.17, about 1.75
    assert out["median_top_share"] == 0.75
    assert out["median_top5_share"] == 1.0
    assert out["median_effective_neighbors"] == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))),
                                                              abs=0.01)


def test_sharpen_raises_the_visit_weights_to_a_power_and_refuses_bad_ones() -> None:
    neighbors = np.array([[1, 2, 3, -1], [0, 2, -1, -1]])
    weights = np.array([[0.5, 0.3, 0.2, 0.0], [0.6, 0.4, 0.0, 0.0]], dtype=np.float32)
    assert sharpen(weights, 1.0) is weights
    np.testing.assert_allclose(sharpen(weights, 2.0), weights**2)
    assert sharpen(weights, 2.0).dtype == np.float32
    before, after = weight_concentration(neighbors, weights), weight_concentration(neighbors, sharpen(weights, 2.0))
    assert after["median_top_share"] > before["median_top_share"]
    flat = weight_concentration(neighbors, sharpen(weights, 0.0))  # equal weights on the real neighbors only
    assert flat["median_top_share"] == pytest.approx(np.median([1 / 3, 1 / 2]), abs=1e-4)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="weight power"):
            sharpen(weights, bad)


def test_ppr_pairs_pair_each_pin_with_its_nearest_neighbors_only() -> None:
    neighbors = np.array([[2, 1, 3], [1, 0, -1], [-1, -1, -1], [0, 2, 1]])  # pin 1 lists itself first
    assert ppr_pairs(neighbors, 2).tolist() == [[0, 2], [0, 1], [1, 0], [3, 0], [3, 2]]
    assert ppr_pairs(neighbors, 0).shape == (0, 2)
    assert len(ppr_pairs(neighbors, 10)) == 7  # all of them, padding and self left out


def test_public_inputs_hash_pin_text_at_the_asked_width(tmp_path) -> None:
    source = write_hetrec(tmp_path / "hetrec")
    walk = WalkConfig(num_steps=50, top_t=2, band=(1, 2), num_band_samples=1)
    narrow, _ = public_inputs(source, walk, None, 0, text_dim=8)
    wide, _ = public_inputs(source, walk, None, 0, text_dim=64)
    pins = len(narrow.graph.pin_ids)
    assert pins > 0 and narrow.graph.features.shape == (pins, 8) and wide.graph.features.shape == (pins, 64)
    np.testing.assert_allclose(np.linalg.norm(wide.graph.features, axis=1), 1.0, rtol=1e-6)


def test_cap_pairs_is_a_seeded_ordered_sample() -> None:
    pairs = np.arange(20).reshape(10, 2)
    assert cap_pairs(pairs, 0, seed=0) is pairs
    sample = cap_pairs(pairs, 4, seed=1)
    assert len(sample) == 4 and (np.diff(sample[:, 0]) > 0).all()
    assert np.array_equal(sample, cap_pairs(pairs, 4, seed=1))


def test_a_neighbor_count_ablation_trains_on_the_top_t_neighbors_only(tmp_path) -> None:
    rng = np.random.default_rng(0)
    num_pins, t = 40, 6
    neighbors = np.stack([np.roll(np.arange(num_pins), -k - 1) for k in range(t)], axis=1).astype(np.int32)
    graph = PinGraph(np.arange(num_pins, dtype=np.int64) + 100, rng.normal(size=(num_pins, 8)).astype(np.float32),
                     neighbors, np.linspace(1.0, 0.5, t, dtype=np.float32)[None].repeat(num_pins, 0),
                     np.full((num_pins, 0), -1, np.int32))
    pairs = PositivePairs(rng.integers(0, num_pins, (64, 2)), rng.integers(0, num_pins, (16, 2)))
    inputs = Inputs(graph, train_graph(np.arange(num_pins), np.arange(num_pins) % 5, graph.pin_ids), pairs, {})
    options = TrainingOptions(batch_size=32, num_shared_negatives=8, num_epochs=1, num_workers=0,
                              num_valid_pairs=16)
    vectors, summary = train_and_embed(inputs, Variant("pinsage importance, T=2", "importance", True, (0,),
                                                       num_neighbors=2), 0, options, (8, 4), tmp_path)
    assert summary["num_neighbors"] == 2 and vectors.shape == (num_pins, 4)
    _, full = train_and_embed(inputs, Variant("pinsage importance", "importance", True, (0,)), 0, options, (8, 4),
                              tmp_path)
    assert full["num_neighbors"] == t


def test_a_resumed_bench_run_reuses_a_finished_training_and_refuses_other_settings(tmp_path) -> None:
    rng = np.random.default_rng(1)
    num_pins, t = 30, 4
    neighbors = np.stack([np.roll(np.arange(num_pins), -k - 1) for k in range(t)], axis=1).astype(np.int32)
    graph = PinGraph(np.arange(num_pins, dtype=np.int64), rng.normal(size=(num_pins, 8)).astype(np.float32),
                     neighbors, np.ones((num_pins, t), np.float32), np.full((num_pins, 0), -1, np.int32))
    pairs = PositivePairs(rng.integers(0, num_pins, (64, 2)), rng.integers(0, num_pins, (16, 2)))
    inputs = Inputs(graph, train_graph(np.arange(num_pins), np.arange(num_pins) % 5, graph.pin_ids), pairs, {})
    options = TrainingOptions(batch_size=32, num_shared_negatives=8, num_epochs=2, num_workers=0,
                              num_valid_pairs=16)
    variant = Variant("pinsage importance", "importance", True, (0,))
    first, s1 = train_and_embed(inputs, variant, 0, options, (8, 4), tmp_path, resume=True)
    again, s2 = train_and_embed(inputs, variant, 0, options, (8, 4), tmp_path, resume=True)
    assert not s1["resumed"] and s2["resumed"]
    np.testing.assert_array_equal(first, again)  # the finished run is embedded again, not retrained
    assert s2["history"] == s1["history"] and s2["steps"] == s1["steps"] == 4
    # the same variant and seed under another loss is another checkpoint, not a clash
    _, s3 = train_and_embed(inputs, dataclasses.replace(variant, loss="max_margin"), 0, options, (8, 4), tmp_path,
                            resume=True)
    assert not s3["resumed"]
    with pytest.raises(ValueError, match="checkpoint"):
        train_and_embed(inputs, variant, 0, dataclasses.replace(options, learning_rate=0.5), (8, 4), tmp_path,
                        resume=True)


@pytest.mark.slow
def test_synthetic_part_runs_on_the_tiny_world(tmp_path) -> None:
    args = argparse.Namespace(synthetic_scale="tiny", ppr_steps=500, num_neighbors=10, synthetic_gap_s=1800.0,
                              synthetic_train_pairs=2000, synthetic_epochs=1, synthetic_queries=200,
                              text_dim=32, weight_power=1.0, hidden_dim=16, embedding_dim=16, loss="sampled_softmax",
                              ablations=DEFAULT_ABLATIONS)
    options = TrainingOptions(batch_size=256, num_shared_negatives=64, num_epochs=1, num_workers=0,
                              num_valid_pairs=100)
    result = bench_synthetic(args, options, tmp_path)
    p = result["precision_at_10"]
    assert 0.0 <= p["pinsage"] <= 1.0 and 0.0 < p["content features"] <= 1.0
    assert result["gain"] == pytest.approx(p["pinsage"] - p["content features"], abs=1e-3)
    assert result["pairs"]["train_used"] <= 2000 and result["training"]["epochs_run"] == 1


def test_a_later_seed_or_id_vectors_record_under_their_own_name() -> None:
    parse = lambda *argv: build_parser().parse_args(list(argv))  # noqa: E731
    assert record_name(parse()) == "pinsage"
    assert record_name(parse("--ablations", "mean")) == "pinsage_ablations_mean"
    assert record_name(parse("--ablations", "mean", "--first-seed", "2", "--seeds", "1")) == \
        "pinsage_ablations_mean_seed2"
    assert record_name(parse("--ablations", "none", "--id-dim", "64")) == "pinsage_ablations_none_id64"
    assert record_name(parse("--first-seed", "3")) == "pinsage_seed3"
    assert record_name(parse("--history-queries", "10", "--history-copies", "4")) == "pinsage_history10x4"


def test_ablation_list_parses_in_table_order_and_rejects_unknown_names() -> None:
    assert ablation_list("max-margin, max,mean") == ("mean", "max", "max-margin")
    assert ablation_list("none") == ()
    with pytest.raises(argparse.ArgumentTypeError, match="unknown ablation"):
        ablation_list("mean,median")


def test_the_record_leaves_out_the_options_each_variant_sets_itself() -> None:
    options = TrainingOptions(num_epochs=7, patience=5)  # loss defaults to max_margin; the variants say theirs
    shared = shared_options(options)
    assert shared["num_epochs"] == 7 and shared["patience"] == 5
    assert not {"seed", "loss", "use_hard_negatives"} & set(shared)


def test_ablation_variants_run_the_primary_seeds_and_one_seed_per_paper_row() -> None:
    names = {v.name: v for v in ablation_variants(("mean", "max", "t", "max-margin"), (0, 1, 2), 3,
                                                  "sampled_softmax", 50)}
    assert names["pinsage importance"].seeds == (0, 1, 2) and names["pinsage mean"].seeds == (0, 1, 2)
    assert names["pinsage max pooling"].pooling == "max" and names["pinsage max pooling"].seeds == (0,)
    assert names["pinsage importance, T=10"].num_neighbors == 10
    assert not names["pinsage importance, max-margin, no hard negatives"].hard_negatives
    only_max = ablation_variants(("max",), (0,), 3, "sampled_softmax", 50)
    assert [v.name for v in only_max] == ["pinsage importance", "pinsage max pooling"]


def _result(name: str, values: dict[tuple[str, str], list[float]]) -> MethodResult:
    """A MethodResult whose TEST metrics per (task, metric) are the given per-query values."""
    results = {}
    for task in (ITEM_TASK, USER_TASK):
        metrics = {metric: np.asarray(v, dtype=np.float64) for (t, metric), v in values.items() if t == task}
        n = len(next(iter(metrics.values())))
        results[(task, "test")] = RankingMetrics(f"protocol of {task}", np.arange(n), metrics, np.zeros(n, np.int64),
                                                 np.ones(n, np.int64))
    return MethodResult(name, {}, results, 0.0)


def test_paired_differences_average_seeds_and_compare_ablations_on_shared_seeds_only() -> None:
    n = 200
    rng = np.random.default_rng(0)

    def values(offset: float) -> dict[tuple[str, str], list[float]]:
        return {key: (rng.random(n) < 0.3 + offset).astype(float).tolist() for key in PAIRED}

    seed0, seed1 = _result("p0", values(0.2)), _result("p1", values(0.2))
    baseline, ablation = _result("b", values(0.0)), _result("m0", values(0.2))
    methods = {PRIMARY: [seed0, seed1], "pinsage mean": [ablation], "Pixie": [baseline]}
    paired = paired_differences(methods, trained={PRIMARY, "pinsage mean"}, num_samples=500)

    assert set(paired) == {"pinsage mean", "Pixie"}
    assert paired["Pixie"]["primary_seeds"] == 2 and paired["pinsage mean"]["primary_seeds"] == 1
    for key in PAIRED:
        name = f"{key[0]}/{key[1]}"
        expected = np.mean([seed0.results[(key[0], "test")].metric(key[1]),
                            seed1.results[(key[0], "test")].metric(key[1])], axis=0) \
            - baseline.results[(key[0], "test")].metric(key[1])
        d = paired["Pixie"][name]
        assert d["diff"] == pytest.approx(expected.mean(), abs=1e-6)
        assert d["ci_low"] < d["diff"] < d["ci_high"]
        # the ablation ran seed 0 only, so the primary model's seed 1 does not enter its comparison
        same_seed = seed0.results[(key[0], "test")].metric(key[1]) - ablation.results[(key[0], "test")].metric(key[1])
        assert paired["pinsage mean"][name]["diff"] == pytest.approx(same_seed.mean(), abs=1e-6)
    table = format_paired(paired)
    assert table.count("\n") == 3 and "| Pixie | 2 |" in table


def test_paired_differences_refuse_results_over_other_queries() -> None:
    values = {key: [1.0, 0.0, 1.0] for key in PAIRED}
    other = _result("b", {key: [0.0, 1.0] for key in PAIRED})
    with pytest.raises(ValueError, match="different queries|different evaluations"):
        paired_differences({PRIMARY: [_result("p", values)], "Pixie": [other]}, trained={PRIMARY})


@pytest.mark.parametrize("weight_decay", ["0", "0.0001"])
def test_weight_decay_runs_flush_subnormals_in_every_torch_thread(weight_decay: str) -> None:
    """In a fresh process (torch's switch is process state): with --weight-decay a subnormal product is zero on
    both threads' halves of a tensor; without it the bench leaves float arithmetic as torch has it."""
    script = (
        "import sys, torch\n"
        "from bench.pinsage_quality import build_parser, set_threads\n"
        f"set_threads(build_parser().parse_args(['--weight-decay', '{weight_decay}']), 2)\n"
        "print(torch.get_num_threads(), int(torch.count_nonzero(torch.full((1 << 22,), 1e-30) * 1e-10)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert out == ["2", "0" if float(weight_decay) else str(1 << 22)]


def test_bench_hetrec_adds_refreshed_rows_and_keeps_the_frozen_ones(tmp_path) -> None:
    source = write_two_listeners(tmp_path / "hetrec")
    flags = ["--hetrec-path", str(source), "--ppr-steps", "50", "--num-neighbors", "2", "--valid-pairs", "10",
             "--epochs", "1", "--patience", "1", "--seeds", "1", "--ablations", "none"]
    results = {}
    assert build_parser().parse_args([]).refreshed  # the default since the development split's check
    for extra in (["--no-refreshed"], []):
        args = build_parser().parse_args(flags + extra)
        variants = ablation_variants(args.ablations, (0,), 1, args.loss, args.num_neighbors)
        workdir = tmp_path / f"work{len(extra)}"
        workdir.mkdir()
        results[not extra] = bench_hetrec(args, variants, training_options(args), workdir)[0]
    frozen, both = results[False], results[True]
    names = {PRIMARY, "content features", "item-kNN", "Pixie", "popularity"}
    assert set(frozen) == names and set(both) == names | {n + REFRESHED for n in names}
    for name in names:  # the frozen rows do not change, nor do the tuned settings under the refreshed protocol
        for key in (f"{USER_TASK}/hr@10", f"{ITEM_TASK}/hr@10", f"{ITEM_TASK}/mrr"):
            assert both[name][key] == frozen[name][key]
        assert both[name + REFRESHED]["settings"] == both[name]["settings"]
        assert "refreshed" in both[name + REFRESHED]["protocols"][USER_TASK]
        assert "refreshed" not in both[name]["protocols"][USER_TASK]
    # the refreshed primary is paired with the refreshed baselines, the frozen one with the frozen
    assert set(both["Pixie" + REFRESHED][f"{PRIMARY} minus this"]) == set(both["Pixie"][f"{PRIMARY} minus this"])
    assert f"{PRIMARY} minus this" not in both[PRIMARY + REFRESHED]
    assert both["content features" + REFRESHED][f"{USER_TASK}/hr@10"] == both["content features"][f"{USER_TASK}/hr@10"]
