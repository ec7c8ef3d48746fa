"""The training loop: batches, curriculum, determinism, resuming, early stopping, losses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from embeddings.pinsage.data import PositivePairs, with_query_width
from embeddings.pinsage.inference import embed_all
from embeddings.pinsage.loss import sampled_softmax_loss
from embeddings.pinsage.model import PinSageConfig, build_model
from embeddings.pinsage.sampling import block_from_tensors
from embeddings.pinsage.training import (
    TrainingBatches,
    TrainingOptions,
    batch_loss,
    rank_positives,
    resolve_device,
    subnormals_flushed,
    train,
)
from tests.pinsage.tiny_data import one_torch_thread, planted, planted_graph, same_topic_pairs  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPTIONS = TrainingOptions(batch_size=32, num_shared_negatives=16, num_epochs=3, patience=10, max_hard_negatives=2,
                          num_workers=0, log_every_s=60)


@pytest.fixture(scope="module")
def inputs():
    data = planted(num_pins=80, seed=3)
    graph = planted_graph(data, num_neighbors=4, num_hard_negatives=4)
    rng = np.random.default_rng(3)
    pairs = PositivePairs(same_topic_pairs(rng, data["topic"], 200), same_topic_pairs(rng, data["topic"], 40))
    return graph, pairs


def _model(pooling="importance"):
    return build_model(PinSageConfig(in_dim=12, hidden_dim=16, embedding_dim=8, num_neighbors=4, pooling=pooling))


def _same_weights(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_batches_hold_pairs_negatives_and_the_epochs_hard_negatives(inputs):
    graph, pairs = inputs
    batches = TrainingBatches(graph, pairs.train, epoch=3, options=OPTIONS, num_layers=2, pooling="importance")
    assert len(batches) == 7  # ceil(200 / 32)
    batch = batches[0]
    num_targets = batch.blocks[-1]["sizes"][1].item()
    assert batch.query.shape == (32, 1) and batch.negative.shape == (16,)
    assert batch.hard.shape == (32, 2)  # epoch 3: two hard negatives per query (the cap)
    assert int(batch.query.max()) < num_targets and batch.x.shape[0] == batch.blocks[0]["sizes"][0].item()
    assert batches[6].query.shape == (200 - 6 * 32, 1)
    again = TrainingBatches(graph, pairs.train, 3, OPTIONS, 2, "importance")[0]
    assert torch.equal(batch.x, again.x) and torch.equal(batch.hard, again.hard)  # a pure function of (seed, epoch, b)


@pytest.mark.parametrize("loss", ["sampled_softmax", "max_margin"])
def test_pairs_padded_to_a_set_query_give_the_same_batches_and_loss(inputs, loss):
    graph, pairs = inputs
    options = dataclasses.replace(OPTIONS, loss=loss)
    plain = TrainingBatches(graph, pairs.train, 3, options, 2, "importance")[0]
    padded = TrainingBatches(graph, with_query_width(pairs.train, 3), 3, options, 2, "importance")[0]
    assert padded.query.shape == (32, 3) and padded.query_mask[:, 0].all() and not padded.query_mask[:, 1:].any()
    assert torch.equal(plain.x, padded.x) and torch.equal(plain.query[:, 0], padded.query[:, 0])
    assert torch.equal(plain.candidate_mask, padded.candidate_mask)
    model = _model()
    torch.testing.assert_close(batch_loss(model, padded, options, torch.device("cpu")),
                               batch_loss(model, plain, options, torch.device("cpu")))


def test_a_set_query_is_the_normalized_mean_of_its_pins_and_masks_them_as_candidates(inputs):
    graph, pairs = inputs
    options = dataclasses.replace(OPTIONS, loss="sampled_softmax")
    examples = with_query_width(pairs.train, 3)
    examples[:, 1], examples[:, 2] = (examples[:, 0] + 1) % graph.num_pins, (examples[:, 0] + 2) % graph.num_pins
    examples[1::2, 2] = -1  # every other query has two pins
    batches = TrainingBatches(graph, examples, 1, options, 2, "importance")
    batch, chosen = batches[0], examples[batches.order[:32]]
    assert batch.query_mask.sum(1).tolist() == (chosen[:, :3] >= 0).sum(1).tolist()
    neg = np.random.default_rng([options.seed, 1, 0]).integers(0, graph.num_pins, options.num_shared_negatives)
    candidates = np.concatenate([chosen[:, 3], neg])
    for b in range(32):  # a candidate that is one of the query's pins or its positive is masked, but its own
        hit = np.isin(candidates, chosen[b, :3]) | (candidates == chosen[b, 3])
        hit[b] = False
        assert (batch.candidate_mask[b].numpy() == ~hit).all()
    # the loss, recomputed from every pin's embedding: the query is the normalized mean of its pins' vectors
    model = _model()
    z = torch.from_numpy(embed_all(model, graph.features, graph.neighbors, graph.weights))
    query = torch.stack([z[torch.from_numpy(row[row >= 0])].sum(0) for row in chosen[:, :3]])
    query = query / query.norm(dim=1, keepdim=True)
    logits = query @ z[torch.from_numpy(candidates)].T / options.temperature - batch.log_q[None, :]
    logits = logits.masked_fill(~batch.candidate_mask, float("-inf"))
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(32))
    torch.testing.assert_close(batch_loss(model, batch, options, torch.device("cpu")), expected, atol=1e-5, rtol=1e-5)


def test_curriculum_is_recorded_per_epoch_and_switches_off(inputs):
    graph, pairs = inputs
    out = train(_model(), graph, pairs, OPTIONS.__class__(**{**OPTIONS.to_dict(), "num_epochs": 4}))
    assert [h["hard_negatives_per_query"] for h in out.history] == [0, 1, 2, 2]
    off = TrainingOptions(**{**OPTIONS.to_dict(), "use_hard_negatives": False})
    assert [h["hard_negatives_per_query"] for h in train(_model(), graph, pairs, off).history] == [0, 0, 0]


def test_training_lowers_the_loss_and_reports_speed(inputs):
    graph, pairs = inputs
    out = train(_model(), graph, pairs, OPTIONS)
    losses = [h["train_loss"] for h in out.history]
    assert losses[-1] < losses[0]
    assert out.examples == 3 * 200 and out.steps == 3 * 7
    assert out.examples_per_s > 0 and 0 <= out.data_wait_share < 1
    assert {"valid_hit_rate@10", "valid_mrr", "valid_loss"} <= set(out.history[0])


def test_weight_decay_on_cpu_warns_unless_subnormals_are_flushed(inputs, caplog):
    """Adam's L2 term leaves dead units' weights subnormal, and arithmetic on them crawls unless flushed."""
    graph, pairs = inputs
    decayed = dataclasses.replace(OPTIONS, weight_decay=1e-4, max_steps=1)
    assert not subnormals_flushed()  # torch's default
    train(_model(), graph, pairs, dataclasses.replace(decayed, weight_decay=0.0))
    assert "subnormal" not in caplog.text
    train(_model(), graph, pairs, decayed)
    assert "without subnormal floats flushed" in caplog.text
    caplog.clear()
    torch.set_flush_denormal(True)  # one torch thread here (the fixture): the switch covers all of it
    try:
        assert subnormals_flushed()
        train(_model(), graph, pairs, decayed)
    finally:
        torch.set_flush_denormal(False)
    assert "subnormal" not in caplog.text and not subnormals_flushed()


def test_resume_from_a_checkpoint_reproduces_an_uninterrupted_run(inputs, tmp_path):
    graph, pairs = inputs
    whole = train(_model(), graph, pairs, OPTIONS, checkpoint_path=tmp_path / "a.pt")
    stopped = train(_model(), graph, pairs, TrainingOptions(**{**OPTIONS.to_dict(), "max_steps": 10}),
                    checkpoint_path=tmp_path / "b.pt")
    assert stopped.interrupted and stopped.steps == 10  # in the middle of epoch 2
    resumed = train(_model(), graph, pairs, OPTIONS, checkpoint_path=tmp_path / "b.pt")
    assert not resumed.interrupted and resumed.steps == whole.steps
    assert _same_weights(whole.model, resumed.model)
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["valid_hit_rate@10"] == b["valid_hit_rate@10"]


def test_loader_workers_give_the_same_result_as_the_training_thread(inputs):
    graph, pairs = inputs
    options = TrainingOptions(**{**OPTIONS.to_dict(), "num_epochs": 1})
    inline = train(_model(), graph, pairs, options)
    workers = train(_model(), graph, pairs, TrainingOptions(**{**options.to_dict(), "num_workers": 1}))
    assert _same_weights(inline.model, workers.model)


def test_checkpoint_of_another_configuration_is_refused(inputs, tmp_path):
    graph, pairs = inputs
    options = TrainingOptions(**{**OPTIONS.to_dict(), "max_steps": 2})
    train(_model(), graph, pairs, options, checkpoint_path=tmp_path / "c.pt")
    changed = TrainingOptions(**{**options.to_dict(), "margin": 0.3})
    with pytest.raises(ValueError, match=r"checkpoint .*c\.pt was written for a different options"):
        train(_model(), graph, pairs, changed, checkpoint_path=tmp_path / "c.pt")
    fresh = train(_model(), graph, pairs, changed, checkpoint_path=tmp_path / "c.pt", resume=False)
    assert fresh.steps == 2


def test_early_stopping_keeps_the_best_epoch(inputs):
    graph, pairs = inputs
    frozen = TrainingOptions(**{**OPTIONS.to_dict(), "learning_rate": 1e-12, "patience": 1, "num_epochs": 5})
    out = train(_model(), graph, pairs, frozen)
    assert out.stopped_early and len(out.history) == 2 and out.best_epoch == 1


def test_on_epoch_sees_each_epochs_record_and_the_embeddings_it_validated(inputs):
    graph, pairs = inputs
    seen = []
    out = train(_model(), graph, pairs, OPTIONS, on_epoch=lambda record, vectors: seen.append((record, vectors)))
    assert [r for r, _ in seen] == out.history and [r["epoch"] for r, _ in seen] == [1, 2, 3]
    for record, vectors in seen:
        assert vectors.shape == (graph.num_pins, 8)
        rank = rank_positives(vectors, pairs.valid)
        assert record["valid_hit_rate@10"] == pytest.approx(float((rank <= 10).mean()))
    plain = train(_model(), graph, pairs, OPTIONS)
    assert _same_weights(plain.model, out.model)  # the hook changes nothing


@pytest.mark.parametrize(("pooling", "loss"), [("max", "max_margin"), ("mean", "sampled_softmax")])
def test_other_poolings_and_the_sampled_softmax_train(inputs, pooling, loss):
    graph, pairs = inputs
    options = TrainingOptions(**{**OPTIONS.to_dict(), "loss": loss, "num_epochs": 2})
    out = train(_model(pooling), graph, pairs, options)
    assert all(np.isfinite(h["train_loss"]) for h in out.history)
    if loss == "sampled_softmax":
        assert [h["hard_negatives_per_query"] for h in out.history] == [0, 0]


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_the_log_q_weight_scales_the_sampled_softmax_correction(inputs, weight):
    graph, pairs = inputs
    options = TrainingOptions(**{**OPTIONS.to_dict(), "loss": "sampled_softmax", "log_q_weight": weight})
    batch = TrainingBatches(graph, pairs.train, 1, options, 2, "importance")[0]
    assert batch.log_q.std() > 0  # the batch's positives differ in popularity: the weight changes the logits
    model, cpu = _model(), torch.device("cpu")
    with torch.no_grad():
        z = model(batch.x, [block_from_tensors(b) for b in batch.blocks])
        query, candidates = z[batch.query.view(-1)], torch.cat([z[batch.positive], z[batch.negative]])
        index = torch.arange(batch.num_pairs)
        expected, unbiased = (sampled_softmax_loss(query, candidates, w * batch.log_q, index, options.temperature,
                                                   batch.candidate_mask).item() for w in (weight, 1.0))
        loss = batch_loss(model, batch, options, cpu).item()
        default = batch_loss(model, batch, dataclasses.replace(options, log_q_weight=1.0), cpu).item()
    assert loss == pytest.approx(expected, rel=1e-6) and default == pytest.approx(unbiased, rel=1e-6)
    assert loss != pytest.approx(unbiased, rel=1e-3)


def test_id_vectors_train_for_the_pins_batches_reach_and_stay_zero_for_the_rest(inputs):
    graph, pairs = inputs
    extra = 400  # pins no pair or neighborhood touches: only an occasional uniform negative reaches one
    graph = dataclasses.replace(
        graph, pin_ids=np.arange(graph.num_pins + extra),
        features=np.concatenate([graph.features, np.ones((extra, graph.feature_dim), np.float32)]),
        neighbors=np.concatenate([graph.neighbors, np.full((extra, graph.neighbors.shape[1]), -1, np.int32)]),
        weights=np.concatenate([graph.weights, np.zeros((extra, graph.weights.shape[1]), np.float32)]),
        hard_negatives=np.concatenate([graph.hard_negatives,
                                       np.full((extra, graph.hard_negatives.shape[1]), -1, np.int32)]))
    model = build_model(PinSageConfig(in_dim=12, hidden_dim=16, embedding_dim=8, num_neighbors=4,
                                      num_ids=graph.num_pins, id_dim=4))
    options = TrainingOptions(**{**OPTIONS.to_dict(), "num_epochs": 1})
    batches = TrainingBatches(graph, pairs.train, 1, options, 2, "importance")
    reached = np.unique(np.concatenate([batches[b].ids.numpy() for b in range(len(batches))]))
    out = train(model, graph, pairs, options)
    moved = out.model.id_embedding.weight.detach().abs().sum(dim=1).numpy() > 0
    untouched = np.setdiff1d(np.arange(graph.num_pins), reached)
    assert len(untouched) > 200 and moved[reached].all() and not moved[untouched].any()


def test_rank_positives_full_ranking_excludes_the_query():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    # Query 0: pin 3 scores 1.0 (ties with the query, which is excluded), pin 1 0.9, pin 2 0.0.
    assert rank_positives(embeddings, np.array([[0, 3], [0, 1], [0, 2]])).tolist() == [1, 2, 3]


def test_options_and_devices_are_validated():
    with pytest.raises(ValueError, match="loss must be one of .*got 'triplet'"):
        TrainingOptions(loss="triplet")
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        TrainingOptions(batch_size=0)
    with pytest.raises(ValueError, match="log_q_weight must be >= 0, got -1"):
        TrainingOptions(log_q_weight=-1)
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="device 'cuda' was requested but CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_with_bf16_autocast(inputs):
    graph, pairs = inputs
    out = train(_model(), graph, pairs, TrainingOptions(**{**OPTIONS.to_dict(), "num_epochs": 2}), device="cuda")
    assert all(np.isfinite(h["train_loss"]) for h in out.history)
