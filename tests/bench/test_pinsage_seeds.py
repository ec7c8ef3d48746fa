"""bench/pinsage_seeds.py: pooling the per-seed figures of several PinSage quality records, on literal records."""

from __future__ import annotations

import copy
import functools
import json

import pytest

import bench.pinsage_seeds
from bench.common import record
from bench.pinsage_quality import REPORTED
from bench.pinsage_seeds import importance_at_least_mean, main, pool

KEYS = [f"{task}/{metric}" for task, metric in REPORTED]
VARIANTS = {"pinsage importance": ("importance", True, "sampled_softmax", None),
            "pinsage mean": ("mean", True, "sampled_softmax", None)}


def _method(values: list[float], seeds: list[int] | None) -> dict:
    """A record's method entry with every reported metric equal to ``values`` (one per seed)."""
    out = {key: {"per_seed": list(values)} for key in KEYS}
    if seeds is not None:
        out["training"] = [{"seed": s} for s in seeds]
    return out


def _record(seeds: list[int], importance: list[float], mean: list[float] | None, pixie: float = 0.09,
            commit: str = "abc") -> dict:
    methods = {"pinsage importance": _method(importance, seeds), "Pixie": _method([pixie], None)}
    names = ["pinsage importance"]
    if mean is not None:
        methods["pinsage mean"] = _method(mean, seeds)
        names.append("pinsage mean")
    variants = [{"name": n, "pooling": VARIANTS[n][0], "hard_negatives": True, "loss": VARIANTS[n][2],
                 "num_neighbors": None, "seeds": seeds} for n in names]
    return {"commit": commit, "dataset": "HetRec", "protocol": "per-user split",
            "config": {"seeds": seeds, "ablations": ["mean"] if mean else [], "workdir": "w", "variants": variants,
                       "epochs_cap": 10, "model": {"hidden_dim": 256}},
            "metrics": {"hetrec_lastfm": {"methods": methods}}}


def test_a_later_seed_joins_the_earlier_ones_and_a_repeated_seed_counts_once() -> None:
    first = _record([0, 1], [0.08, 0.10], [0.07, 0.08])
    later = _record([2], [0.12], [0.09])
    again = _record([0, 1, 2], [0.08, 0.10, 0.12], None)  # seeds 0-2 of importance, repeated exactly
    pooled = pool([first, later, again], ["a.json", "b.json", "c.json"])
    importance = pooled["pinsage importance"]
    assert importance["seeds"] == [0, 1, 2] and importance["runs"] == 3
    assert importance["user_next/hr@10"]["mean"] == pytest.approx(0.10)
    assert importance["user_next/hr@10"]["std"] == pytest.approx(0.02)
    assert pooled["pinsage mean"]["seeds"] == [0, 1, 2]
    assert pooled["Pixie"]["runs"] == 1 and pooled["Pixie"]["seeds"] == []
    assert list(pooled) == ["pinsage importance", "pinsage mean", "Pixie"]  # trained rows first, then baselines
    check = importance_at_least_mean(pooled)
    assert check["seeds"] == [0, 1, 2] and check["met"]
    assert check["user_next/hr@10"]["diff"] == pytest.approx(0.10 - 0.08)


def test_the_check_uses_only_the_seeds_both_poolings_ran() -> None:
    pooled = pool([_record([0, 1], [0.08, 0.10], [0.09, 0.09]), _record([2], [0.02], None)], ["a", "b"])
    check = importance_at_least_mean(pooled)
    assert check["seeds"] == [0, 1] and check["met"]  # importance's weak seed 2 has no mean-pooling partner
    worse = pool([_record([0, 1], [0.08, 0.09], [0.09, 0.09])], ["a"])
    assert not importance_at_least_mean(worse)["met"]


def test_a_seed_that_did_not_repeat_is_refused() -> None:
    with pytest.raises(ValueError, match=r"pinsage importance: seed 1 differs between a.json and b.json "
                                         r"\(by up to 0.01000\)"):
        pool([_record([0, 1], [0.08, 0.10], None), _record([1], [0.11], None)], ["a.json", "b.json"])


def test_a_baseline_that_moved_is_refused() -> None:
    with pytest.raises(ValueError, match="Pixie: the baseline differs between a and b"):
        pool([_record([0], [0.08], None), _record([1], [0.09], None, pixie=0.1)], ["a", "b"])


def test_records_of_another_evaluation_are_refused() -> None:
    other = _record([2], [0.1], None)
    other["config"]["epochs_cap"] = 20
    with pytest.raises(ValueError, match=r"b is not the same evaluation as a: config differs in \['epochs_cap'\]"):
        pool([_record([0], [0.08], None), other], ["a", "b"])
    elsewhere = _record([2], [0.1], None)
    elsewhere["dataset"] = "MovieLens"
    with pytest.raises(ValueError, match=r"config differs in \['dataset'\]"):
        pool([_record([0], [0.08], None), elsewhere], ["a", "b"])
    renamed = _record([2], [0.1], None)
    renamed["config"]["variants"][0]["pooling"] = "max"
    with pytest.raises(ValueError, match="b trains 'pinsage importance' as .*'max'"):
        pool([_record([0], [0.08], None), renamed], ["a", "b"])


def test_a_record_from_before_id_vectors_pools_with_one_that_names_id_dim_0() -> None:
    new = _record([2], [0.1], None)
    new["config"]["model"]["id_dim"] = 0
    assert pool([_record([0], [0.08], None), new], ["a", "b"])["pinsage importance"]["runs"] == 2
    new["config"]["model"]["id_dim"] = 64
    with pytest.raises(ValueError, match=r"config differs in \['model'\]"):
        pool([_record([0], [0.08], None), new], ["a", "b"])


def test_main_prints_and_records(tmp_path, capsys, monkeypatch) -> None:
    paths = []
    records = [("a.json", _record([0, 1], [0.08, 0.10], [0.07, 0.08])), ("b.json", _record([2], [0.12], [0.09]))]
    for name, rec in records:
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(rec))
    results, markdown = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    # the real record(), written under tmp_path instead of bench/results and docs/BENCHMARKS.md
    monkeypatch.setattr(bench.pinsage_seeds, "record", functools.partial(record, results_dir=results,
                                                                          markdown=markdown))
    main([str(p) for p in paths])
    out = capsys.readouterr().out
    assert "| pinsage importance | 3 | 10.00 ± 2.00 [8.00, 12.00]" in out
    assert "importance minus mean pooling on seeds [0, 1, 2]: user HR@10 +2.00" in out
    written = json.loads((results / "pinsage_seeds.json").read_text())
    assert written["metrics"]["importance_vs_mean"]["met"] and written["config"]["records"] == ["a.json", "b.json"]
    assert "## pinsage_seeds" in markdown.read_text()
    with pytest.raises(SystemExit, match="cannot read the record .*missing.json"):
        main([str(tmp_path / "missing.json"), "--dry-run"])


def test_pooling_does_not_change_its_inputs() -> None:
    first = _record([0], [0.08], [0.07])
    kept = copy.deepcopy(first)
    pool([first, _record([1], [0.1], [0.09])], ["a", "b"])
    assert first == kept
