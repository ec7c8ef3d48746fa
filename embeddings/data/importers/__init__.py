"""Importers of public datasets into the raw contract (events, pins, boards). See docs/DATASETS.md.

Each reader is a pure function of the files: ``read_*(folder) -> ImportedDataset``; writing to the lake is
``jobs.import_dataset``'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from embeddings.data.importers.common import ImportedDataset, MalformedFileError
from embeddings.data.importers.hetrec import read_hetrec
from embeddings.data.importers.movielens import read_movielens
from embeddings.data.importers.s3rec import read_s3rec


@dataclass(frozen=True)
class DatasetSource:
    """Where a public dataset is published under ``../shared/data`` and how to read it."""

    folder: str
    read: Callable[[Path], ImportedDataset]


DATASETS: dict[str, DatasetSource] = {
    "hetrec-lastfm": DatasetSource("hetrec2011-lastfm-2k", read_hetrec),
    "movielens": DatasetSource("ml-latest-small", read_movielens),
    "s3rec-beauty": DatasetSource("s3rec", partial(read_s3rec, name="Beauty")),
    "s3rec-lastfm": DatasetSource("s3rec", partial(read_s3rec, name="LastFM")),
}


def read_dataset(name: str, path: str | Path) -> ImportedDataset:
    """Read the dataset ``name`` (a key of ``DATASETS``) from the folder ``path``.

    Raises:
        KeyError: unknown name (the message lists the known ones); the reader's errors otherwise.
    """
    try:
        source = DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None
    return source.read(Path(path))


__all__ = [
    "DATASETS", "DatasetSource", "ImportedDataset", "MalformedFileError",
    "read_dataset", "read_hetrec", "read_movielens", "read_s3rec",
]
