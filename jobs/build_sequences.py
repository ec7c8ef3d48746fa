"""PinnerFormer user sequences of one ds (Spark; ``spark-submit jobs/build_sequences.py --ds ...``).

In: every action (any kind) in the committed ``events`` partitions of the ``lookback_days`` days ending at
ds; the partition of ds itself must exist.
Out: ``user_sequences`` ds=<ds>: one row per user with at least ``min_actions`` actions, holding the user's
time-ordered timeline as list columns (pin_id, action, surface, duration_ms, ts), ordered by
(ts, action, pin_id). ``cutoff_ts`` = the end of ds minus ``label_days`` splits it: the latest
``max_length`` (M) actions before the cutoff are the input, the actions from the cutoff to the end of ds the
future part (training labels / evaluation targets; the latest ``max_future`` kept, so the serving input,
the latest M of the whole timeline, stays exact). ``split`` holds each user out of training or not by a
stable hash of the id (``embeddings.pinnerformer.lake.user_split``, run here as a pandas UDF).

Actions at or after the end of ds (a clock in the future) are rejected and counted, as are actions before
the window's first day. The manifest's ``extra`` holds the counts (users, users per split, dropped short
users, truncated inputs, capped futures, rejected actions) and the parameters. Only the rows of one user at
a time are ever together: a window over ``user_id`` ranks the actions, and ``groupBy(user_id)`` collects the
kept ones as a sorted array of structs (one shuffle by user). See docs/DATA.md, ``user_sequences``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__" and not __package__:  # spark-submit jobs/build_sequences.py: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from embeddings.data.engagement import SPLIT_NAMES, training_window
from embeddings.data.schemas import EVENTS, USER_SEQUENCES
from embeddings.lake import Lake, LakeError, Manifest, parse_ds
from embeddings.pinnerformer.lake import check_shares, user_split
from embeddings.settings import Settings

log = logging.getLogger("jobs.build_sequences")

LOOKBACK_DAYS = 180
LABEL_DAYS = 14
_US_PER_DAY = 86_400 * 1_000_000
_EPOCH = dt.date(1970, 1, 1)


class SequenceInputError(LakeError):
    """The input cannot make user sequences (the events partition of ds is missing, or nothing is left)."""


@dataclass(frozen=True)
class BuildSequencesConfig:
    """Settings of one sequence build.

    Attributes:
        lake_uri / ds: the lake; the window ends at ds and the output is user_sequences ds=<ds>.
        max_length: M, the latest input actions (before the cutoff) kept per user (the paper: 256).
        max_future: the latest future actions (from the cutoff to the end of ds) kept per user.
        label_days: days before the end of ds where the future part starts (cutoff_ts); 0 = no future part.
        lookback_days: days of events, ending at ds inclusive.
        min_actions: users with fewer actions in the window (input and future) get no row (counted).
        valid_share / test_share: expected shares of users held out of training (``user_split``).
        spark_master / shuffle_partitions: the session.
        stale_staging_s: staging dirs of user_sequences older than this are removed at the start.
    """

    lake_uri: str
    ds: dt.date
    max_length: int = 256
    max_future: int = 256
    label_days: int = LABEL_DAYS
    lookback_days: int = LOOKBACK_DAYS
    min_actions: int = 2
    valid_share: float = 0.1
    test_share: float = 0.1
    spark_master: str | None = None
    shuffle_partitions: int = 16
    stale_staging_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        training_window(self.ds, self.lookback_days)  # raises on a bad window
        if self.max_length < 1 or self.max_future < 0 or self.min_actions < 1:
            raise ValueError(f"need max_length >= 1, max_future >= 0 and min_actions >= 1, got {self.max_length}, "
                             f"{self.max_future} and {self.min_actions}")
        if not 0 <= self.label_days < self.lookback_days:
            raise ValueError(f"label_days must lie in [0, lookback_days={self.lookback_days}), got {self.label_days}")
        check_shares(self.valid_share, self.test_share)
        if self.shuffle_partitions < 1:
            raise ValueError(f"shuffle_partitions must be >= 1, got {self.shuffle_partitions}")

    @property
    def window(self) -> tuple[dt.date, dt.date]:
        """First and last day (inclusive) of the lookback window."""
        return training_window(self.ds, self.lookback_days)

    @property
    def end_us(self) -> int:
        """The end of ds (midnight starting the next day), microseconds since the epoch, UTC."""
        return ((self.ds + dt.timedelta(days=1)) - _EPOCH).days * _US_PER_DAY

    @property
    def cutoff_us(self) -> int:
        return self.end_us - self.label_days * _US_PER_DAY

    @property
    def params(self) -> dict:
        return {"max_length": self.max_length, "max_future": self.max_future, "label_days": self.label_days,
                "lookback_days": self.lookback_days, "min_actions": self.min_actions,
                "valid_share": self.valid_share, "test_share": self.test_share}


@dataclass(frozen=True)
class BuildSequencesResult:
    """What a run produced: the counts (also the manifest's ``extra``), the manifest and timings."""

    stats: dict
    manifest: Manifest = field(repr=False)
    timings_s: dict[str, float] = field(default_factory=dict)


def run(config: BuildSequencesConfig, spark=None) -> BuildSequencesResult:
    """Build and commit ``user_sequences`` of ``config.ds``.

    Args:
        config: the run's settings.
        spark: a SparkSession to use; None creates one (``jobs.spark.build_spark_session``).

    Returns:
        BuildSequencesResult.

    Raises:
        SequenceInputError: the events partition of ds is missing, the window has no action before the end
            of ds, or no user has ``min_actions`` actions (the message names the table, ds and the lake);
            nothing is committed and the published partition stays.
        CorruptFileError / SchemaMismatchError: an unreadable or mistyped input file (named).
    """
    from jobs.spark import build_spark_session, clean_stale_staging, runtime_conf

    started = time.perf_counter()
    lake = Lake(config.lake_uri)
    days = _input_days(lake, config)  # fails before a session starts when the ds partition is missing
    if spark is None:
        spark = build_spark_session("build_sequences", config.spark_master, config.shuffle_partitions)
    session_s = time.perf_counter() - started
    clean_stale_staging(lake, USER_SEQUENCES, config.stale_staging_s)
    with runtime_conf(spark, {"spark.sql.shuffle.partitions": config.shuffle_partitions}):
        result = _run(spark, lake, config, days)
    timings = {"session_s": session_s, **result.timings_s, "total_s": time.perf_counter() - started}
    log.info("build_sequences ds=%s done in %.1f s: %s", config.ds, timings["total_s"], _summary(result.stats))
    return BuildSequencesResult(stats=result.stats, manifest=result.manifest, timings_s=timings)


def _input_days(lake: Lake, config: BuildSequencesConfig) -> list[dt.date]:
    """The committed events partitions of the window; the one of ds itself must be among them."""
    start, end = config.window
    committed = [d for d in lake.list_partitions(EVENTS) if start <= d <= end]
    if config.ds not in committed:
        raise SequenceInputError(
            f"{lake.describe(EVENTS, config.ds)} is missing (no committed partition; the window {start}..{end} "
            f"has {len(committed)} other(s)); cannot build user_sequences ds={config.ds}, "
            f"{lake.describe(USER_SEQUENCES, config.ds)} left as it was"
        )
    if len(committed) < config.lookback_days:
        log.warning("%d day(s) of the window %s..%s (lookback_days=%d) have no committed events partition",
                    config.lookback_days - len(committed), start, end, config.lookback_days)
    return committed


def _run(spark, lake: Lake, config: BuildSequencesConfig, days: list[dt.date]) -> BuildSequencesResult:
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.spark import naming_corrupt_files, read_committed, write_partition

    t0 = time.perf_counter()
    start, end = config.window
    where = f"events {days[0]}..{days[-1]} ({len(days)} partition(s)) of lake {lake.lake_uri}"
    events_manifests = [lake.read_manifest(EVENTS, d) for d in days]
    start_us = ((start - _EPOCH).days) * _US_PER_DAY
    end_us, cutoff_us = config.end_us, config.cutoff_us

    events = (read_committed(spark, lake, EVENTS, days)
              .select("user_id", "pin_id", "action", "surface", "duration_ms", "ts",
                      F.unix_micros("ts").alias("ts_us")))
    with naming_corrupt_files(where):
        read_counts = events.agg(
            F.count(F.lit(1)).alias("read"),
            F.sum(F.when(F.col("ts_us") >= end_us, 1).otherwise(0)).alias("future"),
            F.sum(F.when(F.col("ts_us") < start_us, 1).otherwise(0)).alias("early"),
        ).collect()[0]
    events_read = int(read_counts["read"])
    rejected_future, rejected_early = int(read_counts["future"] or 0), int(read_counts["early"] or 0)
    if rejected_future:
        log.warning("rejected %d action(s) with ts at or after the end of ds=%s (%s) in %s", rejected_future,
                    config.ds, _iso(end_us), where)
    if rejected_early:
        log.warning("rejected %d action(s) with ts before the window's first day %s in %s", rejected_early,
                    start, where)
    if events_read - rejected_future - rejected_early == 0:
        raise SequenceInputError(
            f"no action in the window {start}..{end} before the end of ds={config.ds} in {where} ({events_read} "
            f"row(s) read, {rejected_future} in the future); {lake.describe(USER_SEQUENCES, config.ds)} left as it was"
        )

    # One window over each user: inputs (before the cutoff) rank first, each part newest first, so the latest
    # M inputs have rank <= M and the latest max_future futures rank <= num_input + max_future. The window
    # and the groupBy below share the hash partitioning by user_id: one shuffle.
    is_future = F.col("ts_us") >= cutoff_us
    by_user = Window.partitionBy("user_id")
    newest_first = by_user.orderBy(F.col("is_future").asc(), F.col("ts_us").desc(), F.col("action").desc(),
                                   F.col("pin_id").desc(), F.col("surface").desc(), F.col("duration_ms").desc())
    ranked = (events.where((F.col("ts_us") >= start_us) & (F.col("ts_us") < end_us))
              .withColumn("is_future", is_future)
              .withColumn("num_input", F.sum(F.when(F.col("is_future"), 0).otherwise(1)).over(by_user))
              .withColumn("num_actions", F.count(F.lit(1)).over(by_user))
              .withColumn("rank", F.row_number().over(newest_first)))
    kept = ranked.where(F.when(F.col("is_future"), F.col("rank") <= F.col("num_input") + config.max_future)
                        .otherwise(F.col("rank") <= config.max_length))
    split = F.pandas_udf(_split_function(config.valid_share, config.test_share), "string")
    # array_sort orders the structs field by field: (ts, action, pin_id), then surface and duration_ms.
    # Short users are collected too (fewer than min_actions rows each) and counted before they are left out.
    grouped = (kept.groupBy("user_id")
               .agg(F.array_sort(F.collect_list(F.struct("ts", "action", "pin_id", "surface", "duration_ms")))
                    .alias("timeline"),
                    F.first("num_actions").alias("num_actions"), F.first("num_input").alias("num_input"))
               .select(
                   "user_id",
                   split(F.col("user_id")).alias("split"),
                   F.timestamp_micros(F.lit(cutoff_us)).alias("cutoff_ts"),
                   *[F.col("timeline")[name].alias(name)
                     for name in ("pin_id", "action", "surface", "duration_ms", "ts")],
                   F.col("num_actions").cast("int").alias("num_actions"),
                   F.col("num_input").cast("int").alias("num_input"),
                   F.greatest(F.col("num_input") - config.max_length, F.lit(0)).cast("int")
                   .alias("num_input_dropped"),
                   F.greatest(F.col("num_actions") - F.col("num_input") - config.max_future, F.lit(0)).cast("int")
                   .alias("num_future_dropped"))
               .persist(StorageLevel.MEMORY_AND_DISK))
    rows = grouped.where(F.col("num_actions") >= config.min_actions)
    with naming_corrupt_files(where):
        short = grouped.agg(
            F.count(F.lit(1)).alias("users_in_window"),
            F.sum(F.when(F.col("num_actions") < config.min_actions, 1).otherwise(0)).alias("short"),
        ).collect()[0]
        stats = _stats(rows, F)
    t_build = time.perf_counter()
    stats.update({
        "users_in_window": int(short["users_in_window"]), "users_short": int(short["short"] or 0),
        "events_read": events_read, "events_rejected_future_ts": rejected_future,
        "events_rejected_before_window": rejected_early,
        "window_start": start.isoformat(), "window_end": end.isoformat(), "events_partitions": len(days),
        "missing_days": config.lookback_days - len(days), "cutoff_ts": _iso(cutoff_us), **config.params,
    })
    if stats["users"] == 0:
        grouped.unpersist()
        raise SequenceInputError(
            f"no user has min_actions={config.min_actions} actions in {where} ({stats['users_in_window']} user(s), "
            f"all short); refusing to publish an empty {lake.describe(USER_SEQUENCES, config.ds)}, left as it was"
        )
    with naming_corrupt_files(where):
        manifest = write_partition(lake, USER_SEQUENCES, rows.orderBy("user_id"), config.ds, events_manifests, stats)
    t_write = time.perf_counter()
    grouped.unpersist()
    timings = {"build_s": t_build - t0, "write_s": t_write - t_build}
    return BuildSequencesResult(stats=stats, manifest=manifest, timings_s=timings)


def _split_function(valid_share: float, test_share: float):
    """The pandas UDF body: user ids -> "train" / "valid" / "test" (``user_split``, the one implementation)."""

    def split(user_ids: pd.Series) -> pd.Series:
        return pd.Series(user_split(user_ids.to_numpy(np.int64), valid_share, test_share), dtype=object)

    split.__annotations__ = {"user_ids": pd.Series, "return": pd.Series}  # resolved: pandas_udf reads them
    return split


def _stats(rows, F) -> dict:
    """Counts over the written rows."""
    row = rows.agg(
        F.count(F.lit(1)).alias("users"),
        *[F.sum(F.when(F.col("split") == name, 1).otherwise(0)).alias(name) for name in SPLIT_NAMES],
        F.sum(F.when(F.col("num_input_dropped") > 0, 1).otherwise(0)).alias("input_truncated"),
        F.sum("num_input_dropped").alias("input_dropped"),
        F.sum(F.when(F.col("num_future_dropped") > 0, 1).otherwise(0)).alias("future_capped"),
        F.sum("num_future_dropped").alias("future_dropped"),
        F.sum(F.size("pin_id")).alias("events"),
        F.sum(F.col("num_actions") - F.col("num_input") - F.col("num_future_dropped")).alias("future_events"),
    ).collect()[0]
    return {
        "users": int(row["users"]),
        "users_by_split": {name: int(row[name] or 0) for name in SPLIT_NAMES},
        "users_input_truncated": int(row["input_truncated"] or 0),
        "events_input_dropped": int(row["input_dropped"] or 0),
        "users_future_capped": int(row["future_capped"] or 0),
        "events_future_dropped": int(row["future_dropped"] or 0),
        "events_kept": int(row["events"] or 0),
        "events_future_kept": int(row["future_events"] or 0),
    }


def _iso(ts_us: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=ts_us)).isoformat()


def _summary(stats: dict) -> str:
    return (f"{stats['users']:,} users {stats['users_by_split']} with {stats['events_kept']:,} actions "
            f"({stats['events_future_kept']:,} after the cutoff {stats['cutoff_ts']}); {stats['users_short']:,} "
            f"short users dropped; {stats['users_input_truncated']:,} inputs truncated "
            f"({stats['events_input_dropped']:,} actions), {stats['users_future_capped']:,} futures capped "
            f"({stats['events_future_dropped']:,} actions); {stats['events_rejected_future_ts']:,} actions "
            f"rejected at or after the end of ds")


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    defaults = BuildSequencesConfig(lake_uri=settings.lake_uri, ds=dt.date(2000, 1, 1))
    parser = argparse.ArgumentParser(prog="spark-submit jobs/build_sequences.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--max-length", type=int, default=defaults.max_length, help="M: input actions kept")
    parser.add_argument("--max-future", type=int, default=defaults.max_future, help="future actions kept")
    parser.add_argument("--label-days", type=int, default=defaults.label_days,
                        help="the cutoff is the end of ds minus this many days")
    parser.add_argument("--lookback-days", type=int, default=defaults.lookback_days)
    parser.add_argument("--min-actions", type=int, default=defaults.min_actions)
    parser.add_argument("--valid-share", type=float, default=defaults.valid_share)
    parser.add_argument("--test-share", type=float, default=defaults.test_share)
    parser.add_argument("--spark-master", default=None,
                        help="default: spark-submit's --master, else EMB_SPARK_MASTER (local[*])")
    parser.add_argument("--shuffle-partitions", type=int, default=defaults.shuffle_partitions)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = BuildSequencesConfig(
        lake_uri=args.lake_uri, ds=args.ds, max_length=args.max_length, max_future=args.max_future,
        label_days=args.label_days, lookback_days=args.lookback_days, min_actions=args.min_actions,
        valid_share=args.valid_share, test_share=args.test_share, spark_master=args.spark_master,
        shuffle_partitions=args.shuffle_partitions,
    )
    result = run(config)
    print({"stats": result.stats, "timings_s": {k: round(v, 2) for k, v in result.timings_s.items()}})


if __name__ == "__main__":
    # Run the module under its package name, so functions shipped to Spark workers are pickled by reference.
    from jobs.build_sequences import main as _main

    _main()
