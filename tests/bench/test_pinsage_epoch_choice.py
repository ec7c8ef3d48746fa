"""bench/diagnostics/pinsage_epoch_choice.py: the epoch kept by the training against the epoch best on the VALID
user task or the last epoch, on literal data and on a tiny development-split training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.diagnostics.pinsage_epoch_choice import Run, choose, load_run, main
from bench.diagnostics.pinsage_user_valid import main as user_valid
from tests.bench.test_pinsage_user_valid import literal_evaluator
from tests.data.test_importers import write_two_listeners


def test_the_user_way_picks_the_epoch_best_on_valid_users_and_the_kept_way_the_trainings() -> None:
    # users 0-2 save pins 0 then 1 in TRAIN, then VALID pins 2, 3, 2; 20 pins, so a top 10 can miss
    evaluator = literal_evaluator([0, 0, 1, 1, 2, 2, 0, 1, 2], [0, 1, 0, 1, 0, 1, 2, 3, 2], num_train=6, num_items=20)
    near = np.eye(20, dtype=np.float32)  # pins 2 and 3 beside pin 1, every user's latest pin
    near[2], near[3] = near[1] + 0.1 * near[2], near[1] + 0.2 * near[3]
    far = np.eye(20, dtype=np.float32)  # pins 2 and 3 opposite it
    far[2], far[3] = -near[1], -near[1] - 0.1 * near[4]
    settings = [(1, "sum"), (2, "sum")]
    run = Run(None, 0, kept_epoch=1, epochs={1: far, 2: near, 3: far})
    assert choose(evaluator, run, settings) == {"kept": (1, (1, "sum")), "user": (2, (1, "sum"))}
    kept_best = Run(None, 0, kept_epoch=2, epochs=run.epochs)
    assert choose(evaluator, kept_best, settings) == {"kept": (2, (1, "sum")), "user": (2, (1, "sum"))}
    near_last = Run(None, 0, kept_epoch=1, epochs={1: far, 2: far, 3: near})
    assert choose(evaluator, near_last, settings, "last") == {"kept": (1, (1, "sum")), "last": (3, (1, "sum"))}
    kept_last = Run(None, 0, kept_epoch=3, epochs=near_last.epochs)
    assert choose(evaluator, kept_last, settings, "last") == {"kept": (3, (1, "sum")), "last": (3, (1, "sum"))}


def test_a_development_training_keeps_every_epoch_and_the_choice_scores_its_test_slice(tmp_path, capsys) -> None:
    source = write_two_listeners(tmp_path / "hetrec")
    data = ["--hetrec-path", str(source), "--ppr-steps", "50", "--num-neighbors", "2", "--valid-pairs", "10"]
    epochs = tmp_path / "epochs"
    train = data + ["--threads", "1", "--epochs", "2", "--patience", "2", "--settings", "5:sum", "--knn",
                    "--pixie-latest", "--skip-content", "--development-split", "--epoch-vectors", str(epochs)]
    user_valid(train + ["--vectors", str(tmp_path / "v.npy")])
    assert sorted(p.name for p in epochs.iterdir()) == ["epoch01.npy", "epoch02.npy", "epochs.jsonl", "run.json"]
    run = load_run(epochs)
    assert run.seed == 0 and run.kept_epoch in (1, 2) and sorted(run.epochs) == [1, 2]
    # the kept epoch's vectors are the trained model's
    np.testing.assert_allclose(run.epochs[run.kept_epoch], np.load(tmp_path / "v.npy"), atol=1e-5)
    capsys.readouterr()
    with pytest.raises(SystemExit):  # a second training would append to the first's epochs
        user_valid(train + ["--vectors", str(tmp_path / "w.npy")])
    assert "already holds a training's epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the development TEST slice only, never TEST
        main(data + [str(epochs)])
    assert "needs --development-split" in capsys.readouterr().err

    main(data + ["--development-split", "--settings", "1:sum", "5:sum", "--", str(epochs), str(epochs)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    first, second, last = lines
    assert first == second and first["kept"]["epoch"] == run.kept_epoch
    assert set(first["user"]) == {"epoch", "setting", "dev_test_user_hr@10", "dev_test_user_ndcg@10",
                                  "dev_test_i2i_hr@10"}
    assert last["seeds"] == 2
    for name in ("user_hr@10", "user_ndcg@10", "i2i_hr@10"):
        gap = round(first["user"][f"dev_test_{name}"] - first["kept"][f"dev_test_{name}"], 3)
        assert last[name]["per_seed"] == pytest.approx([gap, gap], abs=2e-3)
        assert last[name]["paired"][0] == pytest.approx(gap, abs=2e-3)

    main(data + ["--development-split", "--rival", "last", "--settings", "1:sum", "5:sum", "--", str(epochs)])
    seed, versus = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert seed["kept"] == first["kept"] and seed["last"]["epoch"] == 2 and "user" not in seed
    assert versus["method"] == "last - kept, dev_test, x100" and versus["seeds"] == 1
    gap = round(seed["last"]["dev_test_user_hr@10"] - seed["kept"]["dev_test_user_hr@10"], 3)
    assert versus["user_hr@10"]["per_seed"] == pytest.approx([gap], abs=2e-3)


def test_an_unfinished_or_resumed_training_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="no run.json"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"seed": 0, "development_split": True, "best_epoch": 2,
                                                   "epochs_run": 2, "resumed": True}))
    (tmp_path / "epochs.jsonl").write_text(json.dumps({"epoch": 2}) + "\n")
    np.save(tmp_path / "epoch02.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"epochs \[2\] kept, the training ran \[1, 2\]"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"seed": 0, "development_split": False, "best_epoch": 2,
                                                   "epochs_run": 2, "resumed": False}))
    with pytest.raises(ValueError, match="not the development split"):
        load_run(tmp_path)
