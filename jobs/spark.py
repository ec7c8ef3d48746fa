"""What every Spark job shares: the session, reading committed lake partitions, writing through staging.

Nothing here runs at import: a job calls ``build_spark_session`` (or receives a session) inside ``run``.

* The session runs Python workers on this interpreter (``spark.pyspark.python`` = ``sys.executable`` unless
  ``PYSPARK_PYTHON`` or the conf says otherwise), in UTC, writing Parquet timestamps as microseconds with a
  time zone (what ``pyarrow`` and the lake contracts expect) instead of Spark's legacy INT96.
* Reading: a job lists committed partitions with ``Lake``, checks each Parquet footer here (a corrupt file
  fails fast with its path), and hands the file list to Spark. Failures inside Spark that name a file are
  re-raised as ``CorruptFileError`` naming it.
* Writing: Spark writes into ``Lake.new_staging``; Spark's marker and checksum files are removed, the row
  count is read from the Parquet footers, and ``Lake.commit`` swaps the directory into place (atomic,
  idempotent, the previous partition kept when anything fails).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from embeddings.data.schemas import TableSpec
from embeddings.lake import CorruptFileError, InputRef, Lake, Manifest, SchemaMismatchError
from embeddings.settings import Settings

log = logging.getLogger(__name__)

# Spark's error when a scan fails on a file: "[FAILED_READ_FILE...] Encountered error while reading file <uri>."
_FAILED_FILE = re.compile(r"reading file (\S+?)\.?(?:\s|$)")


def build_spark_session(
    app_name: str,
    master: str | None = None,
    shuffle_partitions: int | None = None,
    conf: Mapping[str, str] | None = None,
):
    """Create (or join) the SparkSession of a job.

    Args:
        app_name: the Spark application name.
        master: e.g. ``local[2]``. None: under spark-submit, its ``--master``; in a plain process,
            ``EMB_SPARK_MASTER`` (``Settings.spark_master``, default ``local[*]``).
        shuffle_partitions: ``spark.sql.shuffle.partitions``; None keeps Spark's default.
        conf: further settings (applied last).

    Returns:
        The active SparkSession (an existing one is reused; its runtime settings are updated).
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if not master and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not started by spark-submit
        master = Settings.from_env().spark_master
    if master:
        builder = builder.master(master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.ui.showConsoleProgress": "false",
    }
    if shuffle_partitions is not None:
        settings["spark.sql.shuffle.partitions"] = str(int(shuffle_partitions))
    # STACK_NOTES: workers must run this environment's python, or they fail on "No module named 'pandas'".
    if not os.environ.get("PYSPARK_PYTHON"):
        settings["spark.pyspark.python"] = sys.executable
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    started = time.perf_counter()
    spark = builder.getOrCreate()
    log.info("Spark session %s (master %s, %d cores) ready in %.1f s", app_name, spark.sparkContext.master,
             spark.sparkContext.defaultParallelism, time.perf_counter() - started)
    return spark


@contextlib.contextmanager
def runtime_conf(spark, settings: Mapping[str, str | int | None]) -> Iterator[None]:
    """Set runtime SQL settings for the duration of a block and restore the previous values after it."""
    previous = {}
    for key, value in settings.items():
        if value is None:
            continue
        previous[key] = spark.conf.get(key, None)
        spark.conf.set(key, str(value))
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def spark_schema(schema: pa.Schema):
    """The Spark StructType of an Arrow schema (the contracts in embeddings.data.schemas)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def spark_uri(lake: Lake, path: str) -> str:
    """A path of ``lake.fs`` as a URI Spark's Hadoop filesystems understand (``file://``, ``s3a://``...)."""
    if isinstance(lake.fs, pafs.LocalFileSystem):
        return "file://" + path
    scheme = lake.lake_uri.split("://", 1)[0]
    return f"{'s3a' if scheme == 's3' else scheme}://{path}"


def check_parquet_footers(lake: Lake, files: Sequence[str], spec: TableSpec, what: Mapping[str, str]) -> None:
    """Open every file's Parquet footer and compare its columns with the contract (cheap: no data read).

    Args:
        lake: the lake the files belong to.
        files: paths in ``lake.fs``.
        spec: the table's contract.
        what: file path -> description of its partition, for the messages.

    Raises:
        CorruptFileError: a file is not readable Parquet; the message names the file.
        SchemaMismatchError: a file lacks a contract column or stores it with another type.
    """
    for path in files:
        try:
            with lake.fs.open_input_file(path) as f:
                schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorruptFileError(f"cannot read Parquet file {path} of {what[path]}: {exc}") from None
        for field in spec.schema:
            if field.name not in schema.names:
                raise SchemaMismatchError(
                    f"Parquet file {path} of {what[path]} lacks column {field.name!r}; has {schema.names}"
                )
            found = schema.field(field.name).type
            if found != field.type and not _castable(found, field.type):
                raise SchemaMismatchError(
                    f"Parquet file {path} of {what[path]}: column {field.name!r} is {found}, expected {field.type}"
                )


def _castable(found: pa.DataType, expected: pa.DataType) -> bool:
    same_kind = (
        (pa.types.is_integer(found) and pa.types.is_integer(expected))
        or (pa.types.is_timestamp(found) and pa.types.is_timestamp(expected))
        or (pa.types.is_string(found) or pa.types.is_large_string(found)) and pa.types.is_string(expected)
    )
    return bool(same_kind)


def read_committed(spark, lake: Lake, spec: TableSpec, days: Iterable[dt.date | None]):
    """A DataFrame over the committed partitions ``days`` of ``spec`` (None = the snapshot), typed by the contract.

    Only files of committed partitions are read (never ``_staging``); footers are checked first.

    Raises:
        PartitionMissingError: a partition has no manifest or no Parquet files.
        CorruptFileError / SchemaMismatchError: see ``check_parquet_footers``.
    """
    from embeddings.lake import PartitionMissingError

    files: list[str] = []
    what: dict[str, str] = {}
    for day in days:
        lake.read_manifest(spec, day)
        found = lake.data_files(spec, day)
        if not found:
            raise PartitionMissingError(f"{lake.describe(spec, day)} has no Parquet files")
        files.extend(found)
        what.update({f: lake.describe(spec, day) for f in found})
    check_parquet_footers(lake, files, spec, what)
    return spark.read.schema(spark_schema(spec.schema)).parquet(*[spark_uri(lake, f) for f in files])


@contextlib.contextmanager
def naming_corrupt_files(what: str) -> Iterator[None]:
    """Re-raise Spark's failures to read a file as CorruptFileError naming the file and ``what`` was read."""
    try:
        yield
    except Exception as exc:  # py4j / pyspark errors: their classes differ between Spark Classic and Connect
        text = str(exc)
        if "FAILED_READ_FILE" not in text and "is not a Parquet file" not in text:
            raise
        match = _FAILED_FILE.search(text)
        where = match.group(1) if match else "(Spark did not name the file)"
        first_line = next((line for line in text.splitlines() if "FAILED_READ_FILE" in line), text[:300])
        raise CorruptFileError(f"cannot read Parquet file {where} while reading {what}: {first_line.strip()}") from None


def conform_dataframe(df, spec: TableSpec, what: str):
    """Select the contract's columns in order, cast to the contract's types.

    Raises:
        SchemaMismatchError: a column is missing (naming ``what``).
    """
    from pyspark.sql import functions as F

    missing = [f.name for f in spec.schema if f.name not in df.columns]
    if missing:
        raise SchemaMismatchError(f"{what}: missing column(s) {missing}; got {df.columns}")
    target = spark_schema(spec.schema)
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in target.fields])


def write_partition(
    lake: Lake,
    spec: TableSpec,
    df,
    ds: dt.date | None,
    inputs: Iterable[InputRef | Manifest] = (),
    extra: dict | None = None,
) -> Manifest:
    """Write a DataFrame as one partition (or the snapshot) of ``spec``: staging, then an atomic commit.

    Returns:
        The manifest; its ``row_count`` comes from the written files' footers.
    """
    df = conform_dataframe(df, spec, lake.describe(spec, ds))
    staging = lake.new_staging(spec)
    try:
        df.write.mode("overwrite").option("compression", "zstd").parquet(spark_uri(lake, staging))
        files = remove_non_data_files(lake, staging)
        row_count = sum(pq.read_metadata(f, filesystem=lake.fs).num_rows for f in files)
        return lake.commit(spec, staging, ds, row_count=row_count, inputs=inputs, extra=extra)
    except BaseException:
        delete_dir(lake, staging)
        raise


def remove_non_data_files(lake: Lake, directory: str) -> list[str]:
    """Delete hidden files (names starting with ``.`` or ``_``, which Hadoop readers skip too: Spark's
    ``_SUCCESS``, Hadoop's ``.crc`` checksums, temporary files of failed attempts); return the Parquet files."""
    data = []
    for info in lake.fs.get_file_info(pafs.FileSelector(directory, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        if info.base_name.startswith((".", "_")):
            lake.fs.delete_file(info.path)
        elif info.base_name.endswith(".parquet"):
            data.append(info.path)
    return sorted(data)


def delete_dir(lake: Lake, path: str) -> None:
    if lake.fs.get_file_info(path).type == pafs.FileType.Directory:
        lake.fs.delete_dir(path)


def clean_stale_staging(lake: Lake, spec: TableSpec, older_than_s: float) -> list[str]:
    """Remove staging directories of ``spec`` left by writers that died more than ``older_than_s`` ago.

    Younger ones are kept: they may belong to a writer of another partition running right now (a backfill),
    and staging is never read, so leaving them costs only disk.

    Returns:
        The removed paths.
    """
    root = lake.table_path(spec.name) + "/_staging"
    cutoff = time.time() - older_than_s
    removed = []
    for info in lake.fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.type == pafs.FileType.Directory and info.mtime is not None and info.mtime.timestamp() < cutoff:
            lake.fs.delete_dir(info.path)
            removed.append(info.path)
    if removed:
        log.info("removed %d stale staging dir(s) of table %s: %s", len(removed), spec.name, removed)
    return removed


class ProgressLogger:
    """Log the progress of the Spark jobs started inside a ``with`` block: tasks done, rate and ETA.

    Args:
        spark: the session.
        what: what one task processes, e.g. "pins".
        items_total: how many of them the block processes (for the rate), or None.
        every_s: seconds between log lines.
    """

    def __init__(self, spark, what: str, items_total: int | None = None, every_s: float = 10.0) -> None:
        self._tracker = spark.sparkContext.statusTracker()
        self._what = what
        self._items_total = items_total
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spark-progress", daemon=True)
        self._started = 0.0

    def __enter__(self) -> ProgressLogger:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.log_once()
            except Exception:  # a progress line must never fail the job (the context may be stopping)
                return

    def log_once(self) -> None:
        done = total = 0
        for stage_id in self._tracker.getActiveStageIds():
            info = self._tracker.getStageInfo(stage_id)
            if info is not None:
                done += info.numCompletedTasks
                total += info.numTasks
        if not total:
            return
        elapsed = time.perf_counter() - self._started
        frac = done / total
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        rate = ""
        if self._items_total:
            rate = f", ~{self._items_total * frac / max(elapsed, 1e-9):,.0f} {self._what}/s"
        log.info("%d/%d tasks (%.0f%%) after %.0f s%s, ETA %.0f s", done, total, 100 * frac, elapsed, rate, eta)
