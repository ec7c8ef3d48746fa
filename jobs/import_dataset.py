"""Import a public dataset into a lake in the raw contract.

In: the dataset's files as published (default: ../shared/data/<folder>, relative to the repo root).
Out: ``events`` (one partition per UTC day), ``pins`` and ``boards`` snapshots, each with a manifest, in
``<var>/datasets/<name>/lake`` by default, so public data never mixes with the nightly lake. Reruns
rewrite the same partitions with the same content.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from embeddings.data.importers import DATASETS
from embeddings.data.schemas import BOARDS, EVENTS, PINS
from embeddings.lake import Lake, Manifest
from embeddings.settings import REPO_ROOT, Settings

log = logging.getLogger("jobs.import_dataset")


@dataclass(frozen=True)
class ImportDatasetConfig:
    name: str
    path: str | None = None
    lake_uri: str | None = None

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; known: {sorted(DATASETS)}")

    @property
    def source_path(self) -> Path:
        return Path(self.path) if self.path else REPO_ROOT.parent / "shared" / "data" / DATASETS[self.name][0]

    @property
    def target_uri(self) -> str:
        return self.lake_uri or str(Path(Settings.from_env().var_dir) / "datasets" / self.name / "lake")


@dataclass(frozen=True)
class ImportResult:
    lake_uri: str
    days: list[dt.date]
    num_events: int
    num_pins: int
    num_boards: int
    num_users: int


def run(config: ImportDatasetConfig) -> ImportResult:
    started = time.perf_counter()
    reader = DATASETS[config.name][1]
    data = reader(config.source_path)
    lake = Lake(config.target_uri)
    pins_m = lake.write(PINS, data.pins, extra={"dataset": config.name, "source": str(config.source_path)})
    boards_m = lake.write(BOARDS, data.boards, extra={"dataset": config.name})
    events = data.events
    day = events.column("ts").cast("timestamp[us]").to_numpy().astype("datetime64[D]")
    order = np.argsort(day, kind="stable")
    events, day = events.take(order), day[order]
    bounds = np.flatnonzero(np.r_[True, day[1:] != day[:-1], True])
    days = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        ds = day[lo].astype(dt.date)
        lake.write(EVENTS, events.slice(lo, hi - lo), ds, inputs=[pins_m, boards_m], extra={"dataset": config.name})
        days.append(ds)
    result = ImportResult(
        config.target_uri, days, events.num_rows, data.pins.num_rows, data.boards.num_rows,
        len(pc.unique(events.column("user_id"))),
    )
    log.info("imported %s into %s: %d events over %d days, %d pins, %d boards, %d users in %.1f s",
             config.name, result.lake_uri, result.num_events, len(days), result.num_pins, result.num_boards,
             result.num_users, time.perf_counter() - started)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.import_dataset", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(DATASETS))
    parser.add_argument("--path", default=None, help="dataset folder (default ../shared/data/<folder>)")
    parser.add_argument("--lake-uri", default=None, help="default <EMB_VAR_DIR>/datasets/<name>/lake")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(ImportDatasetConfig(name=args.name, path=args.path, lake_uri=args.lake_uri))


if __name__ == "__main__":
    main()
