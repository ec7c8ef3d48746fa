"""bench/diagnostics/pinsage_user_valid.py: the Pixie-style blend of cosine neighbours and the warm / cold split,
on literal data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.diagnostics.pinsage_user_valid import (
    TransitionScorer,
    main,
    parse_setting,
    parse_walk,
    segments,
    versus_pixie,
)
from embeddings.data.engagement import TRAIN, VALID
from embeddings.pinsage.evaluation import EvaluationData, Evaluator
from tests.data.test_importers import write_hetrec, write_two_listeners

# pins 0-2 point one way, 3-5 the other; pin 1 sits nearest to pin 0
ITEMS = np.array([[1, 0], [0.99, 0.14], [0.9, 0.44], [0, 1], [0.14, 0.99], [0.44, 0.9]], dtype=np.float32)
ITEMS /= np.linalg.norm(ITEMS, axis=1, keepdims=True)


def test_each_pin_spreads_one_unit_over_its_top_neighbours() -> None:
    # user 0 holds pins [0]; user 1 holds [3, 0] (newest first)
    ptr, rows = np.array([0, 1, 3]), np.array([0, 3, 0])
    plain = TransitionScorer(ITEMS, ptr, rows, neighbors=3, temperature=0.05, boost="sum", recency=False)
    out = plain(np.array([0, 1]))
    assert np.isfinite(out[0]).sum() == 3  # pin 0's top 3 neighbours, its own side
    assert np.isclose(out[0][np.isfinite(out[0])].sum(), 1.0)  # one query pin, one unit of probability
    assert np.isclose(out[1][np.isfinite(out[1])].sum(), 2.0)
    assert np.isinf(out[0][3:]).all()
    # recency: the newest pin (3) weighs 1, the next 1/2, so pin 3's side outscores pin 0's side
    recent = TransitionScorer(ITEMS, ptr, rows, neighbors=3, temperature=0.05, boost="sum", recency=True)(
        np.array([1]))[0]
    assert recent[3:].sum() == pytest.approx(1.0) and recent[:3].sum() == pytest.approx(0.5)


def test_sqrt_boosting_favours_pins_reached_from_several_queries() -> None:
    items = np.array([[1, 0], [0, 1], [0.7071, 0.7071]], dtype=np.float32)
    ptr, rows = np.array([0, 2]), np.array([0, 1])
    summed = TransitionScorer(items, ptr, rows, 2, 1.0, "sum", False)(np.array([0]))[0]
    boosted = TransitionScorer(items, ptr, rows, 2, 1.0, "sqrt", False)(np.array([0]))[0]
    # pin 2 is each query's second neighbour; boosting lifts it relative to the queries themselves
    assert boosted[2] / boosted[0] > summed[2] / summed[0]


def test_settings_parse_from_the_command_line() -> None:
    assert parse_setting("200:softmax:0.1") == (200, "softmax", 0.1)
    assert parse_setting("20:sum") == (20, "sum")
    assert parse_walk("20:100:0.05:sqrt:1") == (20, 100, 0.05, "sqrt", True)


def literal_evaluator(users: list[int], items: list[int], num_train: int, num_items: int) -> Evaluator:
    """Saves one day apart: the first ``num_train`` in TRAIN, the rest in VALID; no item pairs."""
    labels = np.array([TRAIN] * num_train + [VALID] * (len(users) - num_train), dtype=np.int8)
    ts = (np.datetime64("2024-01-01T00:00:00", "us") + np.arange(len(users)) * np.timedelta64(1, "D")).astype(
        "datetime64[us]")
    none = np.empty((0, 2), np.int64)
    data = EvaluationData(num_items=num_items, users=np.array(users), items=np.array(items), ts=ts, labels=labels,
                          pairs={"valid": none, "test": none}, split={"valid": "v", "test": "t"}, max_users=0)
    return Evaluator(data)


def test_segments_split_hits_by_warm_and_cold_targets() -> None:
    # pins 0-2 are saved in TRAIN (warm), 3-4 never (cold); users 0 and 1 then save warm pin 2, user 2 cold pin 3
    evaluator = literal_evaluator([0, 0, 1, 1, 2, 0, 1, 2], [0, 1, 0, 1, 2, 2, 2, 3], num_train=5, num_items=5)
    # every user ranks pin 4 (cold), then 3 (cold), then 2 (warm): top 10 holds every unseen pin
    scores = np.array([0.0, 0.0, 1.0, 2.0, 3.0])

    def factory(_targets, _setting):
        return lambda rows: np.tile(scores, (len(rows), 1))

    result = evaluator.users(factory, None, "valid")
    out = segments(evaluator, factory(None, None), result)
    assert (out["warm_users"], out["cold_users"]) == (2, 1)
    assert out["hr@10_warm"] == 1.0 and out["hr@10_cold"] == 1.0
    # users 0 and 1 are shown pins 4, 3, 2 (2 cold of 3); user 2, who saved pin 2, pins 4, 3, 0, 1 (2 cold of 4)
    assert out["top10_cold_share"] == round(6 / 10, 4)
    # TRAIN savers: pins 0 and 1 two users each, pin 2 one, pins 3 and 4 none; the lists' ten entries hold
    # savers 0, 0, 1 twice and 0, 0, 2, 2 once (median 0); the targets (pin 2 twice, pin 3) 1, 1, 0 (median 1)
    assert (out["top10_median_savers"], out["target_median_savers"]) == (0.0, 1.0)


def test_versus_pixie_pairs_users_and_averages_their_values_over_seeds() -> None:
    # users 0-2 save pins 0 then 1 in TRAIN, then VALID pins 2, 3, 2; 20 pins, so a top 10 can miss
    evaluator = literal_evaluator([0, 0, 1, 1, 2, 2, 0, 1, 2], [0, 1, 0, 1, 0, 1, 2, 3, 2], num_train=6, num_items=20)
    # one seed puts pins 2 and 3 beside pin 1 (every user's latest pin), the other opposite it
    near = np.eye(20, dtype=np.float32)
    near[2], near[3] = near[1] + 0.1 * near[2], near[1] + 0.2 * near[3]
    far = np.eye(20, dtype=np.float32)
    far[2], far[3] = -near[1], -near[1] - 0.1 * near[4]
    last = np.zeros(20)
    last[[2, 3]] = -1.0  # Pixie ranks both targets last

    def pixie(_targets, _setting):
        return lambda rows: np.tile(last, (len(rows), 1))

    one = versus_pixie(evaluator, [near], pixie, 20, [(1, "sum")])
    assert one["seeds"] == 1 and one["pixie_latest"] == 20
    assert one["(1, 'sum')"]["valid_hr@10"] == [1.0, 1.0, 1.0]  # every user hit against none
    assert one["(1, 'sum')"]["valid_ndcg@10"][0] > 0.5
    both = versus_pixie(evaluator, [near, far], pixie, 20, [(1, "sum")])
    assert both["(1, 'sum')"]["valid_hr@10"] == [0.5, 0.5, 0.5]  # each user half hit: averaged before pairing


def test_a_training_into_the_bench_workdir_lands_where_the_bench_resumes_it(tmp_path, capsys) -> None:
    source = write_hetrec(tmp_path / "hetrec")
    flags = ["--hetrec-path", str(source), "--workdir", str(tmp_path / "work"), "--threads", "1", "--epochs", "1",
             "--patience", "1", "--ppr-steps", "50", "--num-neighbors", "2", "--valid-pairs", "10",
             "--settings", "1:sum", "--knn", "--pixie-latest", "--skip-content"]

    def trained(vectors: str) -> dict:
        main(flags + ["--vectors", str(tmp_path / vectors)])
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        return next(line["trained"] for line in lines if "trained" in line)

    first = trained("first.npy")
    # bench/pinsage_quality.py --workdir DIR keeps the HetRec checkpoints under DIR/hetrec, named by variant and loss
    assert (tmp_path / "work" / "hetrec" / "pinsage_importance-sampled_softmax-seed0.pt").exists()
    again = trained("again.npy")
    assert not first["resumed"] and again["resumed"] and again["steps"] == first["steps"]
    np.testing.assert_array_equal(np.load(tmp_path / "first.npy"), np.load(tmp_path / "again.npy"))
    # this fixture's VALID slice has no user with a next save, so there is nothing to pair against Pixie
    with pytest.raises(ValueError, match="VALID slice has no users"):
        main(flags + ["--vectors", str(tmp_path / "first.npy"), "--versus-pixie", "1",
                      "--other-seeds", str(tmp_path / "again.npy")])


def test_a_variant_trains_that_row_of_the_ablation_table(tmp_path, capsys) -> None:
    source = write_hetrec(tmp_path / "hetrec")
    flags = ["--hetrec-path", str(source), "--workdir", str(tmp_path / "work"), "--threads", "1", "--epochs", "1",
             "--patience", "1", "--ppr-steps", "50", "--num-neighbors", "2", "--valid-pairs", "10",
             "--settings", "1:sum", "--knn", "--pixie-latest", "--skip-content", "--vectors", str(tmp_path / "v.npy")]
    main(flags + ["--variant", "pinsage importance, max-margin, no hard negatives"])
    # the bench's own checkpoint of that row, so `bench/pinsage_quality.py --workdir` resumes it
    assert [p.name for p in (tmp_path / "work" / "hetrec").iterdir()] == [
        "pinsage_importance_max-margin_no_hard_negatives-max_margin-seed0.pt"]
    # --pooling picks that pooling's row too, under the bench's name for it
    main(flags[:3] + [str(tmp_path / "max")] + flags[4:-1] + [str(tmp_path / "max.npy"), "--pooling", "max"])
    assert [p.name for p in (tmp_path / "max" / "hetrec").iterdir()] == ["pinsage_max_pooling-sampled_softmax-seed0.pt"]
    capsys.readouterr()
    # T = 10 is no row when the graph keeps 2 neighbors; refused before any data is read
    with pytest.raises(SystemExit):
        main(flags[:1] + [str(tmp_path / "missing")] + flags[2:] + ["--variant", "pinsage importance, T=10"])
    assert "is not a row of the ablation table" in capsys.readouterr().err


def test_the_development_split_scores_its_test_slice_with_and_without_graph_queries(tmp_path, capsys) -> None:
    source = write_two_listeners(tmp_path / "hetrec")  # a history pin of the development TEST slice is off the graph
    flags = ["--hetrec-path", str(source), "--workdir", str(tmp_path / "work"), "--threads", "1", "--epochs", "1",
             "--patience", "1", "--ppr-steps", "50", "--num-neighbors", "2", "--valid-pairs", "10",
             "--settings", "5:sum", "--knn", "--pixie-latest", "5", "--skip-content",
             "--vectors", str(tmp_path / "v.npy")]
    with pytest.raises(SystemExit):  # the development TEST slice only, never TEST
        main(flags + ["--dev-test"])
    assert "needs --development-split" in capsys.readouterr().err
    main(flags + ["--development-split", "--dev-test", "--graph-queries"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["hetrec-development"]
    scored = {(line["method"], "dev_test_hr@10" in line) for line in lines if "setting" in line}
    assert {("pinsage", True), ("pinsage graph queries", True), ("Pixie", True), ("Pixie graph queries", True),
            ("pinsage", False)} <= scored
    difference = next(line for line in lines if line.get("method") == "pinsage graph queries - all pins")
    assert difference["valid_hr@10"] == [0.0, 0.0, 0.0]  # no VALID history pin is off the graph
    assert len(difference["dev_test_hr@10"]) == 3
