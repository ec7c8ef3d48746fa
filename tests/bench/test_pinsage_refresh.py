"""bench/diagnostics/pinsage_refresh.py: the refreshed protocol against the frozen one on a tiny development-split
training, resumed from the checkpoint pinsage_user_valid.py leaves."""

from __future__ import annotations

import json

import pytest

from bench.diagnostics.pinsage_refresh import main
from bench.diagnostics.pinsage_user_valid import main as user_valid
from bench.pinsage_quality import PAIRED, PRIMARY
from tests.data.test_importers import write_two_listeners


def test_the_refresh_diagnostic_resumes_the_development_training_and_scores_both_protocols(tmp_path, capsys) -> None:
    source = write_two_listeners(tmp_path / "hetrec")
    data = ["--hetrec-path", str(source), "--ppr-steps", "50", "--num-neighbors", "2", "--valid-pairs", "10"]
    trained = data + ["--epochs", "1", "--patience", "1"]
    user_valid(trained + ["--threads", "1", "--settings", "5:sum", "--knn", "--pixie-latest", "--skip-content",
                          "--development-split", "--workdir", str(tmp_path / "work"), "--vectors",
                          str(tmp_path / "v.npy")])
    capsys.readouterr()
    main(trained + ["--checkpoints", str(tmp_path / "work"), "--seeds", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    seed, out = lines
    assert seed == {"seed": 0, "best_epoch": 1, "epochs_run": 1, "resumed": True}  # not trained again
    methods = {PRIMARY, "content features", "item-kNN", "Pixie", "popularity"}
    assert set(out["dev_test_x100"]["frozen"]) == set(out["dev_test_x100"]["refreshed"]) == methods
    assert set(out["refreshed_minus_frozen"]) == methods
    for method in methods:  # one seed each: the paired mean difference is the difference of the means
        for task, metric in PAIRED:
            key = f"{task}/{metric}"
            change = out["dev_test_x100"]["refreshed"][method][key] - out["dev_test_x100"]["frozen"][method][key]
            assert 100 * out["refreshed_minus_frozen"][method][key]["diff"] == pytest.approx(change, abs=0.02)
    # content features are the same vectors under both protocols
    assert out["dev_test_x100"]["refreshed"]["content features"] == out["dev_test_x100"]["frozen"]["content features"]
    assert set(out[f"{PRIMARY} minus"]["refreshed"]) == methods - {PRIMARY}
    # the development split's refreshed graph holds its VALID saves: the real TRAIN graph
    assert out["graphs"]["refreshed_graph"]["edges"] > out["graphs"]["graph"]["edges"]
