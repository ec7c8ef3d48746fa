"""bench/pinnerformer_quality.py: per-dataset flags reach the model and the training options."""

from __future__ import annotations

import pytest

from bench.pinnerformer_quality import Dataset, model_config, parse_args, training_options


def _dataset(name: str, num_items: int = 30) -> Dataset:
    return Dataset(name=name, num_users=5, num_items=num_items, num_actions=0, split=None)


def test_width_dropout_epochs_and_patience_are_per_dataset() -> None:
    args = parse_args(["--dim", "Beauty=32", "LastFM=16", "--dropout", "Beauty=0.5", "LastFM=0.25",
                       "--epochs", "Beauty=3", "LastFM=7", "--patience", "Beauty=1", "LastFM=2"])
    beauty, lastfm = model_config(_dataset("Beauty"), args), model_config(_dataset("LastFM", 40), args)
    assert (beauty.model_dim, beauty.item_dim, beauty.ff_dim, beauty.dropout) == (32, 32, 32, 0.5)
    assert (lastfm.model_dim, lastfm.embedding_dim, lastfm.dropout, lastfm.num_items) == (16, 16, 0.25, 40)
    options = training_options(_dataset("LastFM"), args, seed=3)
    assert (options.num_epochs, options.patience, options.seed) == (7, 2, 3)
    assert (options.objective, options.negatives) == ("sasrec", "full")


def test_defaults_hold_the_recorded_recipe_and_bad_values_fail() -> None:
    args = parse_args([])
    assert args.dim == {"Beauty": 128, "LastFM": 64}
    assert args.dropout == {"Beauty": 0.5, "LastFM": 0.3}
    with pytest.raises(ValueError):
        parse_args(["--dropout", "Beauty=lots"])
