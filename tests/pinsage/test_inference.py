"""Layer-wise inference equals per-pin computation; the model embeds pins it never saw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.pinsage.data import PositivePairs
from embeddings.pinsage.inference import embed_all, embed_per_pin
from embeddings.pinsage.model import PinSageConfig, build_model
from embeddings.pinsage.training import TrainingOptions, train
from tests.pinsage.tiny_data import (  # noqa: F401 (one_torch_thread: a fixture)
    one_torch_thread,
    planted,
    planted_graph,
    random_neighbors,
    same_topic_pairs,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_inputs(num_pins=150, feature_dim=10, num_neighbors=6, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num_pins, feature_dim)).astype(np.float32)
    neighbors, weights = random_neighbors(rng, num_pins, num_neighbors)
    neighbors[:4] = -1  # isolated pins
    weights[:4] = 0
    return features, neighbors, weights


@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_layerwise_inference_equals_per_pin_computation(pooling):
    features, neighbors, weights = _random_inputs()
    torch.manual_seed(1)
    model = build_model(PinSageConfig(in_dim=10, hidden_dim=24, embedding_dim=8, pooling=pooling, num_neighbors=6))
    layerwise = embed_all(model, features, neighbors, weights, chunk_size=17)
    per_pin = embed_per_pin(model, np.arange(len(features)), features, neighbors, weights)
    assert np.abs(layerwise - per_pin).max() < 1e-5
    assert np.allclose(np.linalg.norm(layerwise, axis=1), 1.0, atol=1e-5)
    reverse = np.arange(len(features))[::-1]
    minibatched = embed_per_pin(model, reverse, features, neighbors, weights, targets_per_graph=40)
    assert np.abs(layerwise[::-1] - minibatched).max() < 1e-5


def test_layerwise_inference_equals_per_pin_computation_with_id_vectors():
    features, neighbors, weights = _random_inputs()
    torch.manual_seed(1)
    model = build_model(PinSageConfig(in_dim=10, hidden_dim=24, embedding_dim=8, num_neighbors=6,
                                      num_ids=len(features), id_dim=5))
    torch.nn.init.normal_(model.id_embedding.weight)  # as if trained: every pin's id vector differs
    layerwise = embed_all(model, features, neighbors, weights, chunk_size=17)
    rows = np.arange(len(features))[::-1]
    assert np.abs(layerwise[rows] - embed_per_pin(model, rows, features, neighbors, weights)).max() < 1e-5
    assert np.abs(layerwise[rows] - embed_per_pin(model, rows, features, neighbors, weights,
                                                  targets_per_graph=40)).max() < 1e-5
    with pytest.raises(ValueError, match="learned id vectors for 150 pins but got features of 149 pins"):
        embed_all(model, features[:-1], neighbors[:-1], weights[:-1])


def test_layerwise_inference_does_not_depend_on_chunk_size():
    features, neighbors, weights = _random_inputs()
    model = build_model(PinSageConfig(in_dim=10, hidden_dim=24, embedding_dim=8, num_neighbors=6))
    assert np.abs(embed_all(model, features, neighbors, weights, chunk_size=1000)
                  - embed_all(model, features, neighbors, weights, chunk_size=7)).max() < 1e-6


def test_three_layer_model_matches_per_pin_too():
    features, neighbors, weights = _random_inputs(num_pins=60)
    model = build_model(PinSageConfig(in_dim=10, hidden_dim=12, embedding_dim=8, num_layers=3, num_neighbors=6))
    rows = np.arange(0, 60, 5)
    assert np.abs(embed_all(model, features, neighbors, weights)[rows]
                  - embed_per_pin(model, rows, features, neighbors, weights)).max() < 1e-5


def test_embed_all_rejects_features_of_the_wrong_width():
    features, neighbors, weights = _random_inputs()
    model = build_model(PinSageConfig(in_dim=11, num_neighbors=6))
    with pytest.raises(ValueError, match="features have 10 columns but the model expects in_dim=11"):
        embed_all(model, features, neighbors, weights)


def _precision_at_10(embeddings, rows, topic):
    scores = embeddings[rows] @ embeddings.T
    scores[np.arange(len(rows)), rows] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :10]
    return float((topic[top] == topic[rows][:, None]).mean())


def test_inductive_embeds_pins_unseen_in_training():
    data = planted(num_pins=160, seed=1)
    seen = planted_graph(data, num_pins=100)  # pins 100..159 do not exist while training
    rng = np.random.default_rng(1)
    topic = data["topic"]
    pairs = PositivePairs(same_topic_pairs(rng, topic[:100], 600), same_topic_pairs(rng, topic[:100], 100))
    model = build_model(PinSageConfig(in_dim=12, hidden_dim=32, embedding_dim=16, num_neighbors=5))
    options = TrainingOptions(batch_size=64, num_shared_negatives=32, num_epochs=4, patience=4, num_workers=0, seed=1)
    trained = train(model, seen, pairs, options).model

    full = planted_graph(data)
    embeddings = embed_all(trained, full.features, full.neighbors, full.weights)
    unseen = np.arange(100, 160)
    assert np.isfinite(embeddings[unseen]).all()
    assert np.allclose(np.linalg.norm(embeddings[unseen], axis=1), 1.0, atol=1e-5)
    features = full.features / np.linalg.norm(full.features, axis=1, keepdims=True)
    # The unseen pins' nearest pins share their planted topic far more often than by content features alone
    # (chance is 0.25 with 4 topics).
    assert _precision_at_10(embeddings, unseen, topic) > 0.7
    assert _precision_at_10(embeddings, unseen, topic) > _precision_at_10(features, unseen, topic) + 0.1
