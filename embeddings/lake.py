"""The data lake: partitioned Parquet tables with manifests, written atomically.

Layout under ``lake_uri`` (a local path, ``file://`` or any URI ``pyarrow.fs`` understands, e.g. ``s3://``):

    <table>/ds=YYYY-MM-DD/part-00000.parquet   a partition of a ds-partitioned table
    <table>/ds=YYYY-MM-DD/_manifest.json       written last: row count, schema hash, inputs, code version
    <table>/current/...                        a snapshot table (pins, boards)
    <table>/_staging/<id>/                     work in progress; never read

A write goes to ``_staging`` first and is then swapped into place, so a reader sees the old partition or
the new one, never half of either, and a failed write leaves what was published untouched. Rewriting a
partition replaces it whole (idempotent reruns; no duplicated rows).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from embeddings import __version__
from embeddings.data.schemas import TableSpec, schema_hash

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
SNAPSHOT_DIR = "current"


class LakeError(RuntimeError):
    """Base class for errors about tables in the lake."""


class PartitionMissingError(LakeError):
    pass


class CorruptFileError(LakeError):
    pass


class SchemaMismatchError(LakeError):
    pass


@dataclass(frozen=True)
class InputRef:
    """What an output was built from: a table partition and the row count its manifest had."""

    table: str
    ds: str | None
    row_count: int | None
    schema_hash: str | None


@dataclass(frozen=True)
class Manifest:
    table: str
    ds: str | None
    row_count: int
    schema_hash: str
    files: list[dict]
    inputs: list[dict] = field(default_factory=list)
    code_version: str = ""
    created_at: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))

    def as_input(self) -> InputRef:
        return InputRef(self.table, self.ds, self.row_count, self.schema_hash)


def parse_ds(value: str | dt.date) -> dt.date:
    """Parse ``YYYY-MM-DD`` (or pass a date through); raise a ValueError that names the value."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"ds must be a date in YYYY-MM-DD form, got {value!r}") from None


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version plus the git commit of the working tree, when there is one."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("EMB_CODE_VERSION", __version__)


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    return pafs.FileSystem.from_uri(uri)


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


class Lake:
    """Read and write the tables of one lake URI."""

    def __init__(self, lake_uri: str) -> None:
        self.lake_uri = lake_uri
        self.fs, self.root = _filesystem(lake_uri)

    # ---- locations -------------------------------------------------------------------------------
    def table_path(self, table: str) -> str:
        return _join(self.root, table)

    def partition_path(self, spec: TableSpec, ds: dt.date | str | None) -> str:
        if spec.partitioned_by_ds:
            if ds is None:
                raise ValueError(f"table {spec.name} is partitioned by ds; a ds is required")
            return _join(self.root, spec.name, f"ds={parse_ds(ds).isoformat()}")
        return _join(self.root, spec.name, SNAPSHOT_DIR)

    def describe(self, spec: TableSpec, ds: dt.date | str | None) -> str:
        path = self.partition_path(spec, ds)  # raises when a partitioned table gets no ds
        where = f"ds={parse_ds(ds).isoformat()}" if spec.partitioned_by_ds else "snapshot"
        return f"table {spec.name} ({where}) at {path}"

    def local_path(self, spec: TableSpec, ds: dt.date | str | None) -> Path:
        """The partition as a local path (for memory-mapped arrays); only for local lakes."""
        if not isinstance(self.fs, pafs.LocalFileSystem):
            raise LakeError(f"{self.lake_uri} is not a local lake; copy the partition locally first")
        return Path(self.partition_path(spec, ds))

    # ---- listing ---------------------------------------------------------------------------------
    def exists(self, spec: TableSpec, ds: dt.date | str | None = None) -> bool:
        info = self.fs.get_file_info(_join(self.partition_path(spec, ds), MANIFEST_NAME))
        return info.type == pafs.FileType.File

    def list_partitions(self, spec: TableSpec) -> list[dt.date]:
        """Committed partitions (those with a manifest), oldest first."""
        if not spec.partitioned_by_ds:
            raise ValueError(f"table {spec.name} is a snapshot, not partitioned by ds")
        selector = pafs.FileSelector(self.table_path(spec.name), allow_not_found=True)
        days = []
        for info in self.fs.get_file_info(selector):
            name = info.base_name
            if info.type == pafs.FileType.Directory and name.startswith("ds="):
                try:
                    day = parse_ds(name[3:])
                except ValueError:  # no writer commits such a directory; it is not a partition
                    log.warning("table %s: ignoring %s, which is not a ds=YYYY-MM-DD partition", spec.name, info.path)
                    continue
                if self.exists(spec, day):
                    days.append(day)
        return sorted(days)

    def read_manifest(self, spec: TableSpec, ds: dt.date | str | None = None) -> Manifest:
        path = _join(self.partition_path(spec, ds), MANIFEST_NAME)
        try:
            with self.fs.open_input_stream(path) as f:
                return Manifest.from_json(f.read().decode())
        except FileNotFoundError:
            raise PartitionMissingError(
                f"{self.describe(spec, ds)} is missing (no {MANIFEST_NAME}); run the stage that writes it"
            ) from None
        except (ValueError, TypeError) as exc:  # bad JSON, bad UTF-8, or fields that are not a Manifest
            raise CorruptFileError(f"manifest {path} of {self.describe(spec, ds)} is unreadable: {exc}") from None

    # ---- reading ---------------------------------------------------------------------------------
    def data_files(self, spec: TableSpec, ds: dt.date | str | None = None) -> list[str]:
        part = self.partition_path(spec, ds)
        selector = pafs.FileSelector(part, allow_not_found=True, recursive=True)
        files = sorted(
            i.path for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
        )
        return files

    def read(
        self,
        spec: TableSpec,
        ds: dt.date | str | None = None,
        columns: Sequence[str] | None = None,
        require_manifest: bool = True,
    ) -> pa.Table:
        """Read one partition (or the snapshot) and check it against the contract.

        Raises:
            PartitionMissingError: no such partition (or, with ``require_manifest``, no manifest).
            CorruptFileError: a Parquet file cannot be read; the message names the file.
            SchemaMismatchError: the columns or their types differ from the contract.
        """
        if require_manifest:
            self.read_manifest(spec, ds)
        files = self.data_files(spec, ds)
        if not files:
            raise PartitionMissingError(f"{self.describe(spec, ds)} has no Parquet files")
        expected = spec.schema if columns is None else pa.schema([spec.schema.field(c) for c in columns])
        tables = []
        for path in files:
            try:
                table = pq.read_table(path, filesystem=self.fs, columns=list(columns) if columns else None)
            except (pa.ArrowInvalid, OSError) as exc:
                raise CorruptFileError(
                    f"cannot read Parquet file {path} of {self.describe(spec, ds)}: {exc}"
                ) from None
            # Conform each file before concatenating: part files of one partition (e.g. Spark's) may
            # differ in castable types, which concat_tables would reject with a bare ArrowInvalid.
            tables.append(conform(table, expected, what=f"{self.describe(spec, ds)}, file {path}"))
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def read_range(
        self, spec: TableSpec, start: dt.date, end: dt.date, columns: Sequence[str] | None = None
    ) -> tuple[pa.Table, list[dt.date]]:
        """Concatenate the committed partitions with start <= ds <= end; returns (table, days read)."""
        days = [d for d in self.list_partitions(spec) if start <= d <= end]
        schema = spec.schema if columns is None else pa.schema([spec.schema.field(c) for c in columns])
        if not days:
            return schema.empty_table(), []
        return pa.concat_tables([self.read(spec, d, columns) for d in days]), days

    # ---- writing ---------------------------------------------------------------------------------
    def write(
        self,
        spec: TableSpec,
        table: pa.Table,
        ds: dt.date | str | None = None,
        inputs: Iterable[InputRef | Manifest] = (),
        extra: dict | None = None,
        row_group_size: int = 1 << 20,
    ) -> Manifest:
        """Write one partition (or the snapshot) atomically, replacing what was there.

        The table is cast to the contract first; a column the contract lacks or a type that cannot be
        cast is an error that names the table and partition.
        """
        table = conform(table, spec.schema, what=self.describe(spec, ds))
        staging = self.new_staging(spec)
        try:
            pq.write_table(
                table, _join(staging, "part-00000.parquet"), filesystem=self.fs,
                row_group_size=row_group_size, compression="zstd",
            )
            return self.commit(spec, staging, ds, row_count=table.num_rows, inputs=inputs, extra=extra)
        except BaseException:
            self.fs.delete_dir_contents(staging, missing_dir_ok=True)
            self._delete_dir(staging)
            raise

    def new_staging(self, spec: TableSpec) -> str:
        """A fresh staging directory for a writer (Spark writes its part files here)."""
        staging = _join(self.table_path(spec.name), "_staging", uuid.uuid4().hex)
        self.fs.create_dir(staging, recursive=True)
        return staging

    def commit(
        self,
        spec: TableSpec,
        staging: str,
        ds: dt.date | str | None,
        row_count: int,
        inputs: Iterable[InputRef | Manifest] = (),
        extra: dict | None = None,
    ) -> Manifest:
        """Write the manifest into ``staging`` and swap it into the partition's place."""
        files = []
        for info in self.fs.get_file_info(pafs.FileSelector(staging, recursive=True)):
            if info.type == pafs.FileType.File:
                files.append({"path": info.path[len(staging) + 1:], "size": info.size})
        refs = [i.as_input() if isinstance(i, Manifest) else i for i in inputs]
        manifest = Manifest(
            table=spec.name,
            ds=parse_ds(ds).isoformat() if spec.partitioned_by_ds else None,
            row_count=int(row_count),
            schema_hash=spec.schema_hash,
            files=sorted(files, key=lambda f: f["path"]),
            inputs=[asdict(r) for r in refs],
            code_version=code_version(),
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            extra=extra or {},
        )
        with self.fs.open_output_stream(_join(staging, MANIFEST_NAME)) as f:
            f.write(manifest.to_json().encode())
        final = self.partition_path(spec, ds)
        trash = _join(self.table_path(spec.name), "_staging", f"old-{uuid.uuid4().hex}")
        had_old = self.fs.get_file_info(final).type == pafs.FileType.Directory
        if had_old:
            self.fs.move(final, trash)
        try:
            self.fs.move(staging, final)
        except BaseException:
            if had_old:  # put the published partition back
                self.fs.move(trash, final)
            raise
        if had_old:
            self._delete_dir(trash)
        log.info("committed %s: %d rows", self.describe(spec, ds), row_count)
        return manifest

    def clean_staging(self, spec: TableSpec) -> None:
        """Remove leftovers of writers that died before committing."""
        self._delete_dir(_join(self.table_path(spec.name), "_staging"))

    def _delete_dir(self, path: str) -> None:
        if self.fs.get_file_info(path).type == pafs.FileType.Directory:
            self.fs.delete_dir(path)


def conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """Select and cast ``table`` to ``schema``; raise SchemaMismatchError naming ``what`` otherwise."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise SchemaMismatchError(
            f"{what}: missing column(s) {missing}; expected schema {schema_hash(schema)} "
            f"with columns {schema.names}, got {table.column_names}"
        )
    columns = []
    for f in schema:
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatchError(
                    f"{what}: column {f.name!r} has type {col.type}, expected {f.type} ({exc})"
                ) from None
        if not f.nullable and col.null_count:
            raise SchemaMismatchError(f"{what}: column {f.name!r} has {col.null_count} null value(s)")
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)
