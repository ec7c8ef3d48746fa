"""Import a public dataset into a lake in the raw contract.

In: the dataset's files as published (default: ``../shared/data/<folder>``, relative to the repo root).
Out: ``events`` (one partition per UTC day of ts), ``pins`` and ``boards`` snapshots, each with a manifest
recording the dataset and the sha256 of every file read, in ``<EMB_VAR_DIR>/datasets/<name>/lake`` by
default so public data never mixes with the nightly lake. A rerun rewrites every partition whole and
deletes ``events`` partitions the import no longer produces, so the lake holds exactly one import.
Mapping rules and measured sizes: docs/DATASETS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from embeddings.data.engagement import TEST, VALID, split_per_user
from embeddings.data.importers import DATASETS, ImportedDataset, read_dataset
from embeddings.data.schemas import BOARDS, EVENTS, PINS, Action
from embeddings.lake import Lake
from embeddings.settings import REPO_ROOT, Settings

log = logging.getLogger("jobs.import_dataset")

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PROGRESS_EVERY = 500  # partitions between progress lines


@dataclass(frozen=True)
class ImportDatasetConfig:
    """What to import and where.

    Attributes:
        name: a key of ``embeddings.data.importers.DATASETS``.
        path: the dataset folder; None = ``../shared/data/<folder>`` relative to the repo root.
        lake_uri: the target lake; None = ``<Settings.var_dir>/datasets/<name>/lake``.
    """

    name: str
    path: str | None = None
    lake_uri: str | None = None

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; known: {sorted(DATASETS)}")

    @property
    def source_path(self) -> Path:
        return Path(self.path) if self.path else SHARED_DATA / DATASETS[self.name].folder

    @property
    def target_uri(self) -> str:
        return self.lake_uri or str(Path(Settings.from_env().var_dir) / "datasets" / self.name / "lake")


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote, with the per-user split's shares over all its events."""

    name: str
    lake_uri: str
    days: tuple[dt.date, ...]  # events partitions written, oldest first
    removed_days: tuple[dt.date, ...]  # stale events partitions of an earlier import, deleted
    num_users: int
    num_pins: int
    num_boards: int
    num_events: int
    num_saves: int
    valid_share: float  # share of events in the per-user split's validation slice
    test_share: float
    wall_s: float


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def event_days(events: pa.Table) -> np.ndarray:
    """(N,) UTC day of each event's ts, datetime64[D]."""
    return events.column("ts").to_numpy().astype("datetime64[D]")


def write_events_by_day(lake: Lake, events: pa.Table, extra: dict) -> list[dt.date]:
    """Write one ``events`` partition per UTC day, grouping the rows once; returns the days written.

    The input is sorted by ts (``ImportedDataset.events``), so each day is one contiguous slice and keeps
    the canonical row order.
    """
    days = event_days(events)
    if len(days) > 1 and (days[1:] < days[:-1]).any():
        raise ValueError("events must be sorted by ts before they are written by day")
    bounds = np.flatnonzero(np.r_[True, days[1:] != days[:-1], True])
    num_days = len(bounds) - 1
    written: list[dt.date] = []
    started = time.perf_counter()
    for i, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        ds = days[lo].astype(dt.date)
        lake.write(EVENTS, events.slice(lo, hi - lo), ds, extra=extra)
        written.append(ds)
        if (i + 1) % PROGRESS_EVERY == 0 and i + 1 < num_days:
            rate = (i + 1) / (time.perf_counter() - started)
            log.info("events: %d/%d partitions, %.0f partitions/s, ETA %.0f s",
                     i + 1, num_days, rate, (num_days - i - 1) / rate)
    return written


def remove_stale_days(lake: Lake, keep: Sequence[dt.date]) -> list[dt.date]:
    """Delete committed ``events`` partitions not in ``keep`` (left by an earlier import of other data)."""
    stale = sorted(set(lake.list_partitions(EVENTS)) - set(keep))
    for ds in stale:
        lake.fs.delete_dir(lake.partition_path(EVENTS, ds))
    if stale:
        log.warning("deleted %d events partition(s) of an earlier import not produced now (%s .. %s) in %s",
                    len(stale), stale[0], stale[-1], lake.lake_uri)
    return stale


def write_dataset(lake: Lake, data: ImportedDataset, extra: dict) -> tuple[list[dt.date], list[dt.date]]:
    """Write the snapshots, then the events by day, then drop stale days; returns (written, removed)."""
    lake.write(PINS, data.pins, extra=extra)
    lake.write(BOARDS, data.boards, extra=extra)
    days = write_events_by_day(lake, data.events, extra)
    return days, remove_stale_days(lake, days)


def run(config: ImportDatasetConfig) -> ImportResult:
    """Read the dataset, write it to the lake and summarize it.

    Raises:
        FileNotFoundError, embeddings.data.importers.MalformedFileError: from the reader, naming the file.
    """
    started = time.perf_counter()
    source = config.source_path
    log.info("reading %s from %s", config.name, source)
    data = read_dataset(config.name, source)
    extra = {
        "dataset": config.name,
        "source": str(source),
        "source_sha256": {p.name: _sha256(p) for p in data.source_files},
    }
    lake = Lake(config.target_uri)
    days, removed = write_dataset(lake, data, extra)

    events = data.events
    users = events.column("user_id").to_numpy()
    labels = split_per_user(users, events.column("pin_id").to_numpy(), events.column("ts").to_numpy())
    num_events = events.num_rows
    actions = events.column("action").to_numpy(zero_copy_only=False)
    result = ImportResult(
        name=config.name,
        lake_uri=config.target_uri,
        days=tuple(days),
        removed_days=tuple(removed),
        num_users=len(np.unique(users)),
        num_pins=data.pins.num_rows,
        num_boards=data.boards.num_rows,
        num_events=num_events,
        num_saves=int((actions == Action.SAVE.value).sum()),
        valid_share=float((labels == VALID).sum() / num_events),
        test_share=float((labels == TEST).sum() / num_events),
        wall_s=time.perf_counter() - started,
    )
    log.info(
        "imported %s into %s in %.1f s: %d users, %d pins, %d boards, %d events (%d saves) in %d partitions "
        "(%s .. %s); per-user split valid %.3f, test %.3f",
        result.name, result.lake_uri, result.wall_s, result.num_users, result.num_pins, result.num_boards,
        result.num_events, result.num_saves, len(days), days[0], days[-1], result.valid_share, result.test_share,
    )
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.import_dataset", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(DATASETS))
    parser.add_argument("--path", default=None, help="dataset folder (default ../shared/data/<folder>)")
    parser.add_argument("--lake-uri", default=None, help="target lake (default <EMB_VAR_DIR>/datasets/<name>/lake)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(ImportDatasetConfig(name=args.name, path=args.path, lake_uri=args.lake_uri))


if __name__ == "__main__":
    main()
