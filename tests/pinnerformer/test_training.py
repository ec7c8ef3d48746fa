"""The training loop: every objective learns a toy, determinism and resuming, validation, NaN stop."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import embeddings.pinnerformer.training as training
from embeddings.pinnerformer.data import SequenceOptions, build_user_sequences
from embeddings.pinnerformer.model import build_model
from embeddings.pinnerformer.training import TrainingOptions, evaluate_future, make_batch, train
from embeddings.pinsage.training import load_checkpoint
from tests.pinnerformer.tiny_data import (  # noqa: F401 (one_torch_thread is a fixture)
    NOW,
    T0,
    cycle_sequences,
    one_torch_thread,
    tiny_config,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A 2.5-hour window on hourly actions: each position's window holds its next two pins, which follow
# from the latest pin (cycle_events), so every objective has something learnable.
WINDOW = SequenceOptions(max_length=16, window_days=2.5 / 24)
OPTIONS = TrainingOptions(num_random_negatives=16, batch_size=8, num_epochs=12, learning_rate=1e-2, log_every_s=600)


@pytest.fixture(scope="module")
def sequences():
    return {"cut": cycle_sequences(cutoff_step=14, options=WINDOW), "all": cycle_sequences(options=WINDOW)}


def _model(**overrides):
    return build_model(tiny_config(**overrides))


def _same_weights(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


@pytest.mark.parametrize("objective, negatives", [
    ("next_action", "mixed"), ("sasrec", "mixed"), ("all_action", "mixed"), ("dense_all_action", "mixed"),
    ("dense_all_action", "in_batch"), ("dense_all_action", "random"), ("sasrec", "full"),
])
def test_each_objective_learns_the_toy(sequences, objective, negatives):
    seqs = sequences["cut" if objective in ("next_action", "all_action") else "all"]
    options = dataclasses.replace(OPTIONS, objective=objective, negatives=negatives)
    out = train(_model(), seqs, options)
    losses = [h["train_loss"] for h in out.history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def test_same_seed_same_weights_and_a_resumed_run_matches_a_straight_one(sequences, tmp_path):
    seqs = sequences["all"]
    options = dataclasses.replace(OPTIONS, num_epochs=2)
    config = dict(dropout=0.2)  # dropout too must be a function of (seed, epoch, batch)
    straight = train(_model(**config), seqs, options).model
    again = train(_model(**config), seqs, options).model
    assert _same_weights(straight, again)
    path = tmp_path / "ckpt.pt"
    cut = train(_model(**config), seqs, dataclasses.replace(options, max_steps=7), checkpoint_path=path)
    assert cut.interrupted and cut.steps == 7 and path.exists()
    resumed = train(_model(**config), seqs, options, checkpoint_path=path)
    assert resumed.steps == 12 and not resumed.interrupted  # 6 batches per epoch, 2 epochs
    assert _same_weights(straight, resumed.model)
    different = train(_model(**config), seqs, dataclasses.replace(options, seed=1)).model
    assert not _same_weights(straight, different)


def test_resume_refuses_a_checkpoint_of_other_options(sequences, tmp_path):
    path = tmp_path / "ckpt.pt"
    train(_model(), sequences["all"], dataclasses.replace(OPTIONS, max_steps=2), checkpoint_path=path)
    with pytest.raises(ValueError, match="different options"):
        train(_model(), sequences["all"], dataclasses.replace(OPTIONS, objective="sasrec"), checkpoint_path=path)


def test_validation_ranks_future_positives_and_keeps_the_best_epoch(sequences):
    options = dataclasses.replace(OPTIONS, objective="sasrec", num_epochs=6, patience=2, valid_mode="next")
    out = train(_model(), sequences["all"], options, valid=sequences["cut"])
    assert [h["epoch"] for h in out.history] == list(range(1, len(out.history) + 1))
    hrs = [h["valid_hr@10"] for h in out.history]
    assert all(0.0 <= v <= 1.0 for v in hrs)
    assert out.best_epoch == 1 + int(np.argmax(hrs))
    result = evaluate_future(out.model, sequences["cut"], mode="next", k=10)
    assert result.num_queries == sequences["cut"].num_users
    assert result.values["hr@10"].mean() == pytest.approx(max(hrs))  # the best epoch's weights are kept
    assert "input history masked" in result.protocol


def test_the_tied_dot_output_learns_the_toy_and_is_validated_by_dot_product(sequences):
    options = dataclasses.replace(OPTIONS, objective="sasrec", negatives="full", num_epochs=6, patience=6,
                                  valid_mode="next")
    model = _model(features=(), token_input="scaled", output="tied_dot", user_head=False)
    out = train(model, sequences["all"], options, valid=sequences["cut"])
    losses = [h["train_loss"] for h in out.history]
    assert losses[-1] < 0.8 * losses[0], losses
    hrs = [h["valid_hr@10"] for h in out.history]
    result = evaluate_future(out.model, sequences["cut"], mode="next", k=10)
    assert result.values["hr@10"].mean() == pytest.approx(max(hrs))
    # The validation ranks by dot product, the model's similarity: cosine would rank otherwise.
    users = training.embed_users(out.model, sequences["cut"])
    pins = training.embed_all_pins(out.model)
    by_dot = np.argsort(-(users @ pins.T), axis=1, kind="stable")[:, :10]
    cosine = (users / np.linalg.norm(users, axis=1, keepdims=True)) @ (pins / np.linalg.norm(pins, axis=1,
                                                                                           keepdims=True)).T
    assert not np.array_equal(by_dot, np.argsort(-cosine, axis=1, kind="stable")[:, :10])


def test_the_weight_average_follows_the_recurrence_and_is_what_validation_scores_and_keeps(sequences):
    options = dataclasses.replace(OPTIONS, objective="sasrec", num_epochs=3, patience=3, valid_mode="next",
                                  ema_decay=0.9)
    raw = train(_model(), sequences["all"], dataclasses.replace(options, ema_decay=0.0), valid=sequences["cut"])
    out = train(_model(), sequences["all"], options, valid=sequences["cut"])
    # The raw weights are trained exactly as without the average; their figure is recorded beside it.
    assert [h["valid_raw_hr@10"] for h in out.history] == [h["valid_hr@10"] for h in raw.history]
    hrs = [h["valid_hr@10"] for h in out.history]
    assert out.best_epoch == 1 + int(np.argmax(hrs))
    result = evaluate_future(out.model, sequences["cut"], mode="next", k=10)
    assert result.values["hr@10"].mean() == pytest.approx(max(hrs))  # the best epoch's averaged weights


def test_the_weight_average_blends_each_step_and_swaps_back():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = training.WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(step=0)  # warm-up: min(0.5, 1/10) = 0.1 of the old average kept
    assert torch.allclose(average.average[0], torch.full((1, 2), 0.9))
    with torch.no_grad():
        model.weight.fill_(2.0)
    average.update(step=100)  # min(0.5, 101/110) = 0.5
    assert torch.allclose(average.average[0], torch.full((1, 2), 1.45))
    with average.swapped_in():
        assert torch.allclose(model.weight, torch.full((1, 2), 1.45))
    assert torch.equal(model.weight, torch.full((1, 2), 2.0))
    with pytest.raises(ValueError, match="1 parameters"):
        average.load([torch.zeros(1), torch.zeros(1)])
    with pytest.raises(ValueError, match="ema_decay"):
        TrainingOptions(ema_decay=1.0)


def test_a_run_with_the_weight_average_resumes_to_the_same_weights(sequences, tmp_path):
    options = dataclasses.replace(OPTIONS, num_epochs=2, ema_decay=0.8)
    straight = train(_model(), sequences["all"], options).model
    path = tmp_path / "ckpt.pt"
    cut = train(_model(), sequences["all"], dataclasses.replace(options, max_steps=7), checkpoint_path=path)
    assert cut.interrupted
    resumed = train(_model(), sequences["all"], options, checkpoint_path=path)
    assert _same_weights(straight, resumed.model)  # without validation: the average of the last step
    plain = train(_model(), sequences["all"], dataclasses.replace(options, ema_decay=0.0)).model
    assert not _same_weights(straight, plain)


def test_a_nan_loss_stops_the_run_naming_step_and_batch_and_keeps_a_checkpoint(sequences, tmp_path, monkeypatch):
    real = training.batch_loss
    calls = {"n": 0}

    def nan_on_third_call(*args, **kwargs):  # fault injection: the third step's loss is NaN
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(training, "batch_loss", nan_on_third_call)
    path = tmp_path / "ckpt.pt"
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3 \(epoch 1, batch 3/6, users \[.*kept at"):
        train(_model(), sequences["all"], OPTIONS, checkpoint_path=path)
    model = _model()
    fingerprint = training._fingerprint(model, OPTIONS, training.data_fingerprint(sequences["all"]))
    state = load_checkpoint(path, fingerprint, checkpoint_format=training.CHECKPOINT_FORMAT)["state"]
    assert (state["step"], state["next_batch"]) == (2, 2)  # the weights before the failing step


def test_objectives_without_labels_are_refused(sequences):
    with pytest.raises(ValueError, match="finds no labels"):
        train(_model(), sequences["all"], dataclasses.replace(OPTIONS, objective="next_action"))


def test_batches_are_a_pure_function_of_the_rng(sequences):
    seqs = sequences["all"]
    counts, pool = seqs.positive_counts(), np.arange(seqs.num_pins)
    a = make_batch(seqs, np.array([0, 3, 5]), OPTIONS, np.random.default_rng([0, 1, 2]), counts, pool)
    b = make_batch(seqs, np.array([0, 3, 5]), OPTIONS, np.random.default_rng([0, 1, 2]), counts, pool)
    assert torch.equal(a.target, b.target) and torch.equal(a.negatives, b.negatives)
    assert a.tokens.pins.shape == (3, 16) and len(a.negatives) == 16
    assert a.negative_log_q == pytest.approx(math.log(16 / 40))


def test_pinsage_mode_trains_with_a_pin_table_and_unknown_pins(sequences):
    seqs = sequences["all"]
    torch.manual_seed(0)
    model = build_model(tiny_config(num_items=0, pin_dim=6))
    table = torch.randn(seqs.num_pins, 6)
    known = torch.ones(seqs.num_pins, dtype=torch.bool)
    known[3] = False
    model.attach_pin_table(table, known)
    out = train(model, seqs, dataclasses.replace(OPTIONS, num_epochs=2))
    assert all(math.isfinite(h["train_loss"]) for h in out.history)
    assert torch.equal(out.model.pin_table, table)  # the table is input, never trained
    with pytest.raises(ValueError, match="pin rows but the model has"):
        train(build_model(tiny_config(num_items=5)), seqs, OPTIONS)


def test_an_id_only_model_refuses_unknown_pins():
    seqs = build_user_sequences(np.zeros(3), np.array([1, -1, 2]), np.zeros(3), np.zeros(3), np.full(3, np.nan),
                                T0 + np.arange(3), num_pins=40, now_ts=NOW)
    with pytest.raises(ValueError, match="1 events have pin row -1"):
        train(_model(), seqs, dataclasses.replace(OPTIONS, objective="sasrec"))


def test_progress_lines_give_rate_and_eta(sequences, caplog):
    with caplog.at_level("INFO", logger="embeddings.pinnerformer.training"):
        train(_model(), sequences["all"], dataclasses.replace(OPTIONS, num_epochs=1, log_every_s=0))
    lines = [r.getMessage() for r in caplog.records if "batch" in r.getMessage()]
    assert len(lines) == 6  # one per batch with log_every_s=0
    assert "users/s" in lines[0] and "ETA epoch" in lines[0] and "ETA run" in lines[0]


def test_the_outcome_says_what_share_of_step_time_built_batches(sequences):
    out = train(_model(), sequences["all"], dataclasses.replace(OPTIONS, num_epochs=1))
    assert 0 < out.batch_build_share < 1 and out.train_seconds > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_under_bf16_autocast(sequences):
    out = train(_model(), sequences["all"], dataclasses.replace(OPTIONS, num_epochs=2), device="auto")
    assert next(out.model.parameters()).device.type == "cuda"
    assert all(math.isfinite(h["train_loss"]) for h in out.history)
    result = evaluate_future(out.model, sequences["cut"], mode="next", device="cuda")
    assert result.num_queries == sequences["cut"].num_users


def test_a_pinnerformer_checkpoint_is_not_taken_for_a_pinsage_one(sequences, tmp_path):
    path = tmp_path / "ckpt.pt"
    train(_model(), sequences["all"], dataclasses.replace(OPTIONS, num_epochs=1), checkpoint_path=path)
    fingerprint = training._fingerprint(_model(), OPTIONS, training.data_fingerprint(sequences["all"]))
    with pytest.raises(ValueError, match="has format 'pinnerformer-checkpoint/1', expected 'pinsage-checkpoint/1'"):
        load_checkpoint(path, fingerprint)


def test_adam_betas_are_checked_and_kept_as_a_tuple():
    assert TrainingOptions(adam_betas=[0.9, 0.98]).adam_betas == (0.9, 0.98)
    with pytest.raises(ValueError, match="adam_betas must be two numbers"):
        TrainingOptions(adam_betas=(0.9, 1.0))
