"""Importers of public datasets into the raw contract (events, pins, boards). See docs/DATASETS.md."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from embeddings.data.importers.common import ImportedDataset
from embeddings.data.importers.hetrec import read_hetrec
from embeddings.data.importers.movielens import read_movielens
from embeddings.data.importers.s3rec import read_s3rec

# name -> (folder under ../shared/data, reader)
DATASETS: dict[str, tuple[str, Callable[[Path], ImportedDataset]]] = {
    "hetrec-lastfm": ("hetrec2011-lastfm-2k", read_hetrec),
    "movielens": ("ml-latest-small", read_movielens),
    "s3rec-beauty": ("s3rec", partial(read_s3rec, name="Beauty")),
    "s3rec-lastfm": ("s3rec", partial(read_s3rec, name="LastFM")),
}

__all__ = ["DATASETS", "ImportedDataset", "read_hetrec", "read_movielens", "read_s3rec"]
