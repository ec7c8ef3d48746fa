"""bench/diagnostics/pinsage_refit.py: a tiny HetRec training on TRAIN + VALID for the epochs a record kept, scored
on TEST against the refreshed baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.diagnostics.pinsage_refit import REFIT, main
from bench.pinsage_quality import (
    PAIRED,
    PRIMARY,
    REFRESHED,
    REPORTED,
    build_parser,
    hetrec_inputs,
    shared_options,
    training_options,
)
from tests.data.test_importers import write_two_listeners


def _record(path, flags: list[str], epochs: list[int], settings: list[str]) -> None:
    """A bench record holding what the refit reads: the shared training options, each seed's kept epoch and
    VALID-chosen user setting, and the primary model's TEST summaries."""
    summary = {"runs": len(epochs), **{f"{t}/{m}": {"mean": 0.1, "std": 0.0, "min": 0.1, "max": 0.1}
                                       for t, m in REPORTED}}
    primary = {**summary, "training": [{"seed": s, "best_epoch": e} for s, e in enumerate(epochs)],
               "settings": [{"item_to_item": "'cosine'", "user_next": s} for s in settings]}
    options = shared_options(training_options(build_parser().parse_args(flags)))
    path.write_text(json.dumps({"commit": "0" * 40, "config": {"training": options},
                                "metrics": {"hetrec_lastfm": {"methods": {PRIMARY: primary,
                                                                          PRIMARY + REFRESHED: summary}}}}))


def test_refit_inputs_train_on_every_save_before_test(tmp_path) -> None:
    source = write_two_listeners(tmp_path / "hetrec")
    args = build_parser().parse_args(["--hetrec-path", str(source), "--ppr-steps", "50", "--num-neighbors", "2"])
    frozen, data = hetrec_inputs(args, refresh=True)
    refit, refit_data = hetrec_inputs(args, refit=True)
    # the refit model trains on the graph the refreshed protocol serves, and on more pairs
    assert np.array_equal(refit.graph.neighbors, frozen.refreshed.graph.neighbors)
    assert refit.stats["pairs"]["train_next_save"] > frozen.stats["pairs"]["train_next_save"]
    assert np.array_equal(refit.pairs.valid, frozen.pairs.valid)
    assert np.array_equal(refit_data.pairs["test"], data.pairs["test"])
    assert "refitted on TRAIN + VALID" in refit_data.split["test"]


def test_the_refit_trains_each_seed_for_its_kept_epochs_and_scores_test(tmp_path, capsys) -> None:
    source = write_two_listeners(tmp_path / "hetrec")
    flags = ["--hetrec-path", str(source), "--ppr-steps", "50", "--num-neighbors", "2", "--valid-pairs", "10"]
    record = tmp_path / "record.json"
    _record(record, flags, epochs=[2, 1], settings=["(5, 'sum')", "(20, 'sum')"])
    common = flags + ["--record", str(record), "--workdir", str(tmp_path / "work"), "--threads", "1"]
    for seed in (0, 1):
        main(common + ["--train-seed", str(seed)])
    trained = [json.loads((tmp_path / "work" / "refit" / f"seed{s}.json").read_text()) for s in (0, 1)]
    assert [t["epochs_run"] for t in trained] == [2, 1]
    main(common + ["--train-seed", "0"])  # kept: not trained again
    assert json.loads((tmp_path / "work" / "refit" / "seed0.json").read_text()) == trained[0]
    capsys.readouterr()
    main(common + ["--score", "--seeds", "2"])
    out = next(json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{"))
    baselines = {name + REFRESHED for name in ("content features", "item-kNN", "Pixie", "popularity")}
    assert set(out["test"]) == {REFIT} | baselines
    assert set(out[f"{REFIT} minus this"]) == baselines
    assert out["test"][REFIT]["settings"][1]["user_next"] == "(20, 'sum')"
    pixie = out[f"{REFIT} minus this"]["Pixie" + REFRESHED]
    for task, metric in PAIRED:  # a deterministic baseline: the paired mean is the difference of the means
        key = f"{task}/{metric}"
        assert pixie[key]["diff"] == pytest.approx(out["test"][REFIT][key]["mean"]
                                                   - out["test"]["Pixie" + REFRESHED][key]["mean"], abs=1e-6)
    corrupt = tmp_path / "work" / "refit" / "seed1.npy"
    np.save(corrupt, np.full_like(np.load(corrupt), np.nan))
    with pytest.raises(ValueError, match="seed1.npy"):
        main(common + ["--score", "--seeds", "2"])


def test_the_refit_refuses_a_record_of_other_training_options(tmp_path) -> None:
    source = write_two_listeners(tmp_path / "hetrec")
    flags = ["--hetrec-path", str(source), "--ppr-steps", "50", "--num-neighbors", "2", "--valid-pairs", "10"]
    record = tmp_path / "record.json"
    _record(record, flags + ["--temperature", "0.1"], epochs=[1], settings=["(5, 'sum')"])
    with pytest.raises(ValueError, match="temperature"):
        main(flags + ["--record", str(record), "--workdir", str(tmp_path / "w"), "--train-seed", "0"])
