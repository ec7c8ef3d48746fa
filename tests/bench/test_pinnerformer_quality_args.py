"""bench/pinnerformer_quality.py: per-dataset flags reach the model and the training options."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from bench.pinnerformer_quality import Dataset, build, item_attributes, model_config, parse_args, training_options


def _dataset(name: str, num_items: int = 30) -> Dataset:
    attributes = np.full((num_items, 2), -1)
    attributes[0] = [0, 2]
    return Dataset(name=name, num_users=5, num_items=num_items, num_actions=0, split=None, attributes=attributes,
                   num_attributes=3)


def test_width_dropout_epochs_and_patience_are_per_dataset() -> None:
    args = parse_args(["--dim", "Beauty=32", "LastFM=16", "--dropout", "Beauty=0.5", "LastFM=0.25",
                       "--epochs", "Beauty=3", "LastFM=7", "--patience", "Beauty=1", "LastFM=2",
                       "--ema-decay", "LastFM=0.99"])
    beauty, lastfm = model_config(_dataset("Beauty"), args), model_config(_dataset("LastFM", 40), args)
    assert (beauty.model_dim, beauty.item_dim, beauty.ff_dim, beauty.dropout) == (32, 32, 32, 0.5)
    assert (lastfm.model_dim, lastfm.embedding_dim, lastfm.dropout, lastfm.num_items) == (16, 16, 0.25, 40)
    options = training_options(_dataset("LastFM"), args, seed=3)
    assert (options.num_epochs, options.patience, options.seed) == (7, 2, 3)
    assert (options.objective, options.negatives, options.ema_decay) == ("sasrec", "full", 0.99)


def test_defaults_hold_the_recorded_recipe_and_bad_values_fail() -> None:
    args = parse_args([])
    assert args.dim == {"Beauty": 128, "LastFM": 64}
    assert args.dropout == {"Beauty": 0.5, "LastFM": 0.3}
    assert args.item_attributes == ["Beauty"]
    assert args.ema_decay == {"Beauty": 0.999, "LastFM": 0.0}
    with pytest.raises(ValueError):
        parse_args(["--dropout", "Beauty=lots"])


def test_item_attributes_come_from_the_importers_pin_text_in_item_row_order() -> None:
    pins = pa.table({"pin_id": [10, 11, 12, 13], "text": ["attr_7 attr_40", "", "attr_40", "attr_3 attr_7 attr_9"]})
    table, num_attributes = item_attributes(pins, np.array([11, 12, 13, 10]))
    assert num_attributes == 4  # 3, 7, 9, 40 -> rows 0..3
    assert table.tolist() == [[-1, -1, -1], [3, -1, -1], [0, 1, 2], [1, 3, -1]]


def test_item_attributes_are_used_only_for_the_datasets_named() -> None:
    args = parse_args(["--item-attributes", "Beauty", "--dim", "Beauty=16", "LastFM=16"])
    beauty, lastfm = build(_dataset("Beauty"), args), build(_dataset("LastFM"), args)
    assert (beauty.config.num_attributes, beauty.config.max_item_attributes) == (3, 2)
    assert beauty.item_attributes[0].tolist() == [0, 2]
    assert lastfm.config.num_attributes == 0 and not hasattr(lastfm, "attribute_embedding")
    assert parse_args(["--item-attributes"]).item_attributes == []
    assert beauty.embed_pins(torch.arange(3)).shape == (3, 16)
