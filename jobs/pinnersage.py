"""PinnerSage user medoids of one ds (Spark; ``spark-submit jobs/pinnersage.py --ds ...``).

In: the positive engagements (``embeddings.data.engagement.positive_mask``: a save, or a click/closeup of
at least 10 s) in the committed ``events`` partitions of the ``window_days`` days ending at ds, and the
``pin_embeddings`` partition of ds (the champion PinSage model's output; one ``model_version``).
Out: ``user_medoids`` ds=<ds>: the top-k medoids of each user's Ward clusters (``embeddings.pinnersage``),
with a manifest whose ``extra`` holds the counts (users, users per cluster-count bucket, capped users,
actions without an embedding, skipped users, carried-over and recomputed users).

Only (user_id, pin_id, ts) go through the shuffle: the driver writes the embeddings once as memory-mappable
``.npy`` arrays (sorted pin ids + an (n, d) float32 matrix) into a local temporary directory, which the
executors open by path (a local master) or receive through ``SparkContext.addFile`` (a cluster); users
are grouped into buckets (``hash(user_id) mod B``, about 500 users each) and each
``groupBy(bucket).applyInPandas`` call cuts its users apart, looks their vectors up with
``np.searchsorted`` and runs ``user_medoids`` per user. Users with no embedded pin are counted and skipped; their actions count as actions
without an embedding, and a few user ids are named in the log.

Incremental mode (default): the latest committed ``user_medoids`` partition before ds, if it was computed
with the same parameters, supplies the rows of every user who (a) still has positive engagements in the
window, (b) has none after that partition's ds, and (c) whose rows were computed with today's PinSage
model version; those rows are carried over unchanged (``computed_ds`` keeps the day they were computed).
Everyone else in the window is recomputed. A user without engagements in the window gets no rows, as in a
full run. Rerunning a ds gives the same rows (the previous partition is always strictly earlier).
See docs/PINNERSAGE.md, "Job".
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__" and not __package__:  # spark-submit jobs/pinnersage.py: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow.compute as pc

from embeddings.data.engagement import POSITIVE_MIN_DURATION_MS, TRAINING_WINDOW_DAYS, training_window
from embeddings.data.schemas import EVENTS, PIN_EMBEDDINGS, USER_MEDOIDS, Action
from embeddings.lake import Lake, LakeError, Manifest, parse_ds
from embeddings.pinnersage.medoids import (
    DEFAULT_ALPHA,
    DEFAULT_DECAY_PER_DAY,
    DEFAULT_MAX_ACTIONS,
    DEFAULT_TOP_K,
    end_of_day_us,
)
from embeddings.settings import Settings

log = logging.getLogger("jobs.pinnersage")

EMBEDDING_DISTRIBUTIONS = ("auto", "path", "spark_files")
# Buckets of users by their number of clusters (before the top-k cut), for the manifest.
CLUSTER_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9-16", 9, 16), ("17+", 17, 2**31 - 1),
)
_NAMED_USERS = 10
# Users per applyInPandas group: amortizes Spark's per-group cost; a bucket's rows are in memory at once
# (500 users of the 500-action cap: 250k rows of (user, pin, ts)).
USERS_PER_BUCKET = 500


class PinnerSageInputError(LakeError):
    """The input cannot make user medoids (no positive engagements in the window, bad embeddings)."""


@dataclass(frozen=True)
class PinnerSageConfig:
    """Settings of one PinnerSage run.

    Attributes:
        lake_uri / ds: the lake; the window ends at ds and the output is user_medoids ds=<ds>.
        window_days: days of events, ending at ds inclusive (90: the training window).
        alpha: Ward distance threshold (unit-norm embeddings, Euclidean).
        lam: importance decay per day of age.
        max_actions: most recent actions kept per user (Ward is O(m^2)); users above it are "capped".
        top_k: medoids kept per user, most important first.
        incremental: carry over the unchanged users of the latest earlier partition (see the module doc).
        embedding_distribution: "path" (executors open the driver's temporary .npy files: a local master or
            a shared filesystem), "spark_files" (shipped with addFile) or "auto" (path for a local master).
        spark_master / shuffle_partitions: the session; shuffle_partitions also sets the clustering tasks.
        stale_staging_s: staging dirs of user_medoids older than this are removed at the start.
    """

    lake_uri: str
    ds: dt.date
    window_days: int = TRAINING_WINDOW_DAYS
    alpha: float = DEFAULT_ALPHA
    lam: float = DEFAULT_DECAY_PER_DAY
    max_actions: int = DEFAULT_MAX_ACTIONS
    top_k: int = DEFAULT_TOP_K
    incremental: bool = True
    embedding_distribution: str = "auto"
    spark_master: str | None = None
    shuffle_partitions: int = 16
    stale_staging_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        from embeddings.pinnersage.clustering import check_alpha

        object.__setattr__(self, "ds", parse_ds(self.ds))
        training_window(self.ds, self.window_days)  # raises on a bad window
        check_alpha(self.alpha)
        if not np.isfinite(self.lam) or self.lam < 0:
            raise ValueError(f"lam (importance decay per day) must be finite and >= 0, got {self.lam}")
        if self.max_actions < 1 or self.top_k < 1:
            raise ValueError(f"max_actions and top_k must be >= 1, got {self.max_actions} and {self.top_k}")
        if self.embedding_distribution not in EMBEDDING_DISTRIBUTIONS:
            raise ValueError(f"embedding_distribution must be one of {EMBEDDING_DISTRIBUTIONS}, "
                             f"got {self.embedding_distribution!r}")
        if self.shuffle_partitions < 1:
            raise ValueError(f"shuffle_partitions must be >= 1, got {self.shuffle_partitions}")

    @property
    def window(self) -> tuple[dt.date, dt.date]:
        return training_window(self.ds, self.window_days)

    @property
    def params(self) -> dict:
        """What the rows depend on besides the inputs: a previous partition is reused only if these match."""
        return {"window_days": self.window_days, "alpha": self.alpha, "lam": self.lam,
                "max_actions": self.max_actions, "top_k": self.top_k}


@dataclass(frozen=True)
class PinnerSageResult:
    """What a run produced: the counts (also the manifest's ``extra``), the manifest and timings."""

    stats: dict
    manifest: Manifest = field(repr=False)
    timings_s: dict[str, float] = field(default_factory=dict)


def run(config: PinnerSageConfig, spark=None) -> PinnerSageResult:
    """Compute and commit ``user_medoids`` of ``config.ds``.

    Args:
        config: the run's settings.
        spark: a SparkSession to use; None creates one (``jobs.spark.build_spark_session``).

    Returns:
        PinnerSageResult.

    Raises:
        PinnerSageInputError: no committed events partition or no positive engagement in the window (the
            message names the window and the lake), or a pin_embeddings partition with several model
            versions or ragged vectors; nothing is committed and the published partition stays.
        PartitionMissingError: the pin_embeddings partition of ds is missing.
        CorruptFileError / SchemaMismatchError: an unreadable or mistyped input file (named).
    """
    from jobs.spark import build_spark_session, clean_stale_staging, runtime_conf

    started = time.perf_counter()
    if spark is None:
        spark = build_spark_session("pinnersage", config.spark_master, config.shuffle_partitions)
    session_s = time.perf_counter() - started
    lake = Lake(config.lake_uri)
    clean_stale_staging(lake, USER_MEDOIDS, config.stale_staging_s)
    with runtime_conf(spark, {"spark.sql.shuffle.partitions": config.shuffle_partitions}):
        result = _run(spark, lake, config)
    timings = {"session_s": session_s, **result.timings_s, "total_s": time.perf_counter() - started}
    log.info("pinnersage ds=%s done in %.1f s: %s", config.ds, timings["total_s"], _summary(result.stats))
    return PinnerSageResult(stats=result.stats, manifest=result.manifest, timings_s=timings)


def _run(spark, lake: Lake, config: PinnerSageConfig) -> PinnerSageResult:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from jobs.spark import ProgressLogger, naming_corrupt_files, read_committed, write_partition

    t0 = time.perf_counter()
    start, end = config.window
    where = f"window {start}..{end} (window_days={config.window_days}) of lake {lake.lake_uri}"
    committed = set(lake.list_partitions(EVENTS))
    days = [start + dt.timedelta(days=i) for i in range(config.window_days)]
    days = [d for d in days if d in committed]
    if not days:
        raise PinnerSageInputError(
            f"no committed events partitions in the {where} (table events has {len(committed)} partition(s) "
            "in all); nothing to cluster, user_medoids left as it was"
        )
    if len(days) < config.window_days:
        log.warning("%d day(s) of the %s have no committed events partition",
                    config.window_days - len(days), where)

    # Embeddings first: a missing partition fails before any Spark work (PartitionMissingError).
    embeddings_manifest = lake.read_manifest(PIN_EMBEDDINGS, config.ds)
    emb_pin_ids, emb_vectors, model_version = load_embeddings(lake, config.ds)
    events_manifests = [lake.read_manifest(EVENTS, d) for d in days]
    previous = _previous_partition(lake, config, model_version)
    t_inputs = time.perf_counter()

    events = read_committed(spark, lake, EVENTS, days)
    end_us = end_of_day_us(config.ds)
    start_us = end_of_day_us(start - dt.timedelta(days=1))
    is_view = F.col("action").isin(Action.CLICK.value, Action.CLOSEUP.value)
    positive = (F.col("action") == Action.SAVE.value) | (
        is_view & F.col("duration_ms").isNotNull() & (F.col("duration_ms") >= POSITIVE_MIN_DURATION_MS))
    ts_us = F.unix_micros(F.col("ts"))
    actions = (events.where(positive)
               .select("user_id", "pin_id", ts_us.alias("ts_us"))
               .where((F.col("ts_us") >= start_us) & (F.col("ts_us") < end_us))
               .persist(StorageLevel.MEMORY_AND_DISK))
    inputs_what = f"events {days[0]}..{days[-1]} of lake {lake.lake_uri}"
    with naming_corrupt_files(inputs_what):
        users_df = actions.select("user_id").distinct().persist(StorageLevel.MEMORY_AND_DISK)
        num_window_users = users_df.count()
    if num_window_users == 0:
        actions.unpersist()
        users_df.unpersist()
        raise PinnerSageInputError(
            f"no positive engagements (a save, or a click/closeup of >= {POSITIVE_MIN_DURATION_MS} ms) in the "
            f"{where}: {len(days)} events partition(s) read; nothing to cluster, user_medoids left as it was"
        )

    carried = None
    num_carried = 0
    if previous is not None:
        prev_ds, _ = previous
        prev_rows = read_committed(spark, lake, USER_MEDOIDS, [prev_ds])
        active = actions.where(F.col("ts_us") >= end_of_day_us(prev_ds)).select("user_id").distinct()
        eligible = (prev_rows.where(F.col("pinsage_model_version") == model_version)
                    .select("user_id").distinct()
                    .join(users_df, "user_id", "inner")
                    .join(active, "user_id", "left_anti"))
        carried_users = eligible.persist(StorageLevel.MEMORY_AND_DISK)
        num_carried = carried_users.count()
        carried = prev_rows.join(carried_users, "user_id", "left_semi")
        to_compute = actions.join(carried_users, "user_id", "left_anti")
    else:
        to_compute = actions
    num_recompute = num_window_users - num_carried
    log.info("pinnersage ds=%s: %d users with positive engagements in the %s; %d carried over from %s, %d to "
             "compute", config.ds, num_window_users, where, num_carried,
             f"user_medoids ds={previous[0]}" if previous else "nothing (full run)", num_recompute)

    with _embedding_source(spark.sparkContext, config, emb_pin_ids, emb_vectors) as (source, via_spark_files):
        del emb_vectors  # the executors read the .npy files
        cluster = _cluster_function(source, via_spark_files, config, model_version)
        buckets = num_user_buckets(num_recompute, config.shuffle_partitions)
        computed = (to_compute.groupBy(F.pmod(F.xxhash64("user_id"), F.lit(buckets)).alias("user_bucket"))
                    .applyInPandas(cluster, schema=_TASK_SCHEMA_DDL)
                    .persist(StorageLevel.MEMORY_AND_DISK))
        t_cluster0 = time.perf_counter()
        with naming_corrupt_files(inputs_what), ProgressLogger(spark, "users", items_total=num_recompute):
            stats = _stats(computed, F)
        cluster_s = time.perf_counter() - t_cluster0
        stats.update({
            "window_start": start.isoformat(), "window_end": end.isoformat(), "events_partitions": len(days),
            "pinsage_model_version": model_version, "embedded_pins": int(len(emb_pin_ids)),
            "users_in_window": int(num_window_users), "users_carried_over": int(num_carried),
            "users_recomputed": int(num_recompute),
            "previous_ds": previous[0].isoformat() if previous else None,
            "incremental": config.incremental, "params": config.params,
        })
        stats["users"] = stats["users_computed"] + int(num_carried)
        log.info("pinnersage ds=%s: clustered %d users in %.1f s (%.1f users/s)", config.ds,
                 num_recompute, cluster_s, num_recompute / max(cluster_s, 1e-9))
        if stats["skipped_user_ids"]:
            log.warning("%d user(s) skipped: none of their engaged pins has an embedding in %s, e.g. %s",
                        stats["users_skipped_no_embedding"], lake.describe(PIN_EMBEDDINGS, config.ds),
                        stats["skipped_user_ids"])
        if stats["actions_without_embedding"]:
            log.warning("%d action(s) on pins without an embedding were left out, e.g. of users %s",
                        stats["actions_without_embedding"], stats["users_with_missing_embeddings"])
        rows = computed.where(F.col("rank") > 0).drop("missing_actions")
        if carried is not None:
            rows = rows.unionByName(carried.select(*rows.columns))
            bucket_counts = _bucket_counts(carried, F)
            for name, count in bucket_counts.items():
                stats["users_by_num_clusters"][name] += count
            stats["users_capped"] += int(carried.where((F.col("rank") == 1) & F.col("capped")).count())
        inputs = [*events_manifests, embeddings_manifest]
        if previous is not None:
            inputs.append(previous[1])
        t_write = time.perf_counter()
        with naming_corrupt_files(inputs_what):
            manifest = write_partition(lake, USER_MEDOIDS, rows.orderBy("user_id", "rank"), config.ds, inputs, stats)
        write_s = time.perf_counter() - t_write
    for df in (actions, users_df, computed):
        df.unpersist()
    if previous is not None:
        carried_users.unpersist()
    timings = {"inputs_s": t_inputs - t0, "cluster_s": cluster_s, "write_s": write_s,
               "users_per_s": num_recompute / max(cluster_s, 1e-9)}
    return PinnerSageResult(stats=stats, manifest=manifest, timings_s=timings)


def load_embeddings(lake: Lake, ds: dt.date) -> tuple[np.ndarray, np.ndarray, str]:
    """The pin_embeddings of ``ds`` as (sorted pin ids (n,) int64, vectors (n, d) float32, model_version).

    Raises:
        PartitionMissingError: no such partition.
        PinnerSageInputError: several model versions, ragged or repeated rows, or an empty partition.
    """
    table = lake.read(PIN_EMBEDDINGS, ds)
    what = lake.describe(PIN_EMBEDDINGS, ds)
    if table.num_rows == 0:
        raise PinnerSageInputError(f"{what} has no rows; no pin has an embedding to cluster")
    versions = pc.unique(table.column("model_version")).to_pylist()
    if len(versions) != 1:
        raise PinnerSageInputError(f"{what} holds {len(versions)} model versions ({versions[:5]}); expected one")
    pin_ids = table.column("pin_id").to_numpy()
    embedding = table.column("embedding").combine_chunks()
    lengths = pc.list_value_length(embedding).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max() or lengths[0] == 0:
        raise PinnerSageInputError(f"{what}: embeddings have lengths {lengths.min()}..{lengths.max()}; expected one")
    vectors = embedding.flatten().to_numpy().astype(np.float32, copy=False).reshape(len(pin_ids), int(lengths[0]))
    order = np.argsort(pin_ids, kind="stable")
    pin_ids, vectors = pin_ids[order], vectors[order]
    if len(pin_ids) > 1 and (np.diff(pin_ids) == 0).any():
        raise PinnerSageInputError(f"{what}: repeated pin ids {np.unique(pin_ids[1:][np.diff(pin_ids) == 0])[:10]}")
    return pin_ids.astype(np.int64), np.ascontiguousarray(vectors), str(versions[0])


def _previous_partition(lake: Lake, config: PinnerSageConfig, model_version: str) -> tuple[dt.date, Manifest] | None:
    """The latest committed user_medoids partition before ds whose rows may be carried over, or None."""
    if not config.incremental:
        return None
    earlier = [d for d in lake.list_partitions(USER_MEDOIDS) if d < config.ds]
    if not earlier:
        log.info("incremental: no user_medoids partition before %s; computing every user", config.ds)
        return None
    manifest = lake.read_manifest(USER_MEDOIDS, earlier[-1])
    if manifest.extra.get("params") != config.params:
        log.info("incremental: user_medoids ds=%s was computed with %s, this run uses %s; computing every user",
                 earlier[-1], manifest.extra.get("params"), config.params)
        return None
    if manifest.extra.get("pinsage_model_version") != model_version:
        log.info("incremental: the champion changed (%s at ds=%s, %s now); rows of the old model are recomputed",
                 manifest.extra.get("pinsage_model_version"), earlier[-1], model_version)
    return earlier[-1], manifest


# ---- where the executors find the embeddings -----------------------------------------------------------------
class _embedding_source:
    """Write the embeddings as .npy into a temporary directory; yield (source, via_spark_files); clean up."""

    def __init__(self, sc, config: PinnerSageConfig, pin_ids: np.ndarray, vectors: np.ndarray) -> None:
        self.sc, self.config, self.pin_ids, self.vectors = sc, config, pin_ids, vectors
        self.tmp: str | None = None

    def __enter__(self) -> tuple[str, bool]:
        mode = self.config.embedding_distribution
        if mode == "auto":
            mode = "path" if self.sc.master.startswith("local") else "spark_files"
        self.tmp = tempfile.mkdtemp(prefix="pinnersage-emb-")
        # A unique name per run: addFile ignores a name it already shipped, even if the files changed.
        name = f"pin_embeddings-{self.config.ds}-{uuid.uuid4().hex[:12]}"
        local = os.path.join(self.tmp, name)
        os.makedirs(local)
        np.save(os.path.join(local, "pin_ids.npy"), self.pin_ids)
        np.save(os.path.join(local, "vectors.npy"), self.vectors)
        self.vectors = None
        if mode == "path":
            return local, False
        self.sc.addFile(local, recursive=True)
        return name, True

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


# One embedding table per Python worker, memory-mapped, reused by every group the worker runs.
_EMBEDDINGS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def load_embeddings_cached(source: str, via_spark_files: bool) -> tuple[np.ndarray, np.ndarray]:
    """(sorted pin ids (n,) int64, vectors (n, d) float32), memory-mapped from ``source`` once per process."""
    if via_spark_files:
        from pyspark import SparkFiles

        path = SparkFiles.get(source)
    else:
        path = source
    found = _EMBEDDINGS.get(path)
    if found is None:
        _EMBEDDINGS.clear()
        found = (np.load(os.path.join(path, "pin_ids.npy"), mmap_mode="r"),
                 np.load(os.path.join(path, "vectors.npy"), mmap_mode="r"))
        _EMBEDDINGS[path] = found
    return found


def lookup(pin_ids: np.ndarray, table_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``pin_ids`` (m,) in the sorted ``table_ids`` (n,): (found (m,) bool, row (found.sum(),) int64)."""
    pos = np.searchsorted(table_ids, pin_ids)
    clipped = np.minimum(pos, max(len(table_ids) - 1, 0))
    found = (pos < len(table_ids)) & (np.asarray(table_ids)[clipped] == pin_ids) if len(table_ids) else \
        np.zeros(len(pin_ids), bool)
    return found, pos[found].astype(np.int64)


_TASK_SCHEMA_DDL = (
    "user_id long, rank int, medoid_pin_id long, importance double, cluster_size int, num_cluster_actions int, "
    "num_clusters int, num_actions int, capped boolean, pinsage_model_version string, computed_ds date, "
    "missing_actions int"
)
_TASK_COLUMNS = [c.strip().split(" ")[0] for c in _TASK_SCHEMA_DDL.split(",")]


def _cluster_function(source: str, via_spark_files: bool, config: PinnerSageConfig, model_version: str):
    """The applyInPandas body: the (user_id, pin_id, ts_us) rows of a bucket of users -> up to top_k medoid
    rows per user, or one row with rank 0 (medoid -1) for a user none of whose pins has an embedding;
    ``missing_actions`` counts the user's actions on pins without one (dropped before writing).

    Users come in buckets (``user_bucket``) rather than one group each: Spark's per-group cost (an Arrow
    batch and a pandas frame per group, both ways) is larger than Ward's on a user of 100 actions, so the
    bucket's users are cut apart here with numpy and their rows assembled into one frame."""
    ds = config.ds
    params = (config.alpha, config.lam, config.max_actions, config.top_k)

    def cluster(frame):
        import pandas as pd

        from embeddings.pinnersage.medoids import user_medoids

        table_ids, vectors = load_embeddings_cached(source, via_spark_files)
        alpha, lam, max_actions, top_k = params
        users_all = frame["user_id"].to_numpy(np.int64)
        order = np.argsort(users_all, kind="stable")
        users_all = users_all[order]
        pins_all = frame["pin_id"].to_numpy(np.int64)[order]
        ts_all = frame["ts_us"].to_numpy(np.int64)[order]
        found_all, found_rows = lookup(pins_all, table_ids)
        rows_all = np.full(len(pins_all), -1, dtype=np.int64)  # each action's embedding row (-1: none)
        rows_all[found_all] = found_rows
        starts = np.flatnonzero(np.r_[True, users_all[1:] != users_all[:-1]])
        ends = np.r_[starts[1:], len(users_all)]
        columns: dict[str, list] = {c: [] for c in _TASK_COLUMNS if c not in ("pinsage_model_version", "computed_ds")}
        for lo, hi in zip(starts, ends):
            user = int(users_all[lo])
            pins, ts, found = pins_all[lo:hi], ts_all[lo:hi], found_all[lo:hi]
            missing = int(len(pins) - found.sum())
            if not found.any():
                for name, value in (("user_id", user), ("rank", 0), ("medoid_pin_id", -1), ("importance", 0.0),
                                    ("cluster_size", 0), ("num_cluster_actions", 0), ("num_clusters", 0),
                                    ("num_actions", 0), ("capped", False), ("missing_actions", missing)):
                    columns[name].append(np.array([value]))
                continue
            rows = rows_all[lo:hi][found]
            out = user_medoids(pins[found], ts[found], np.asarray(vectors[rows]), ds, alpha=alpha, lam=lam,
                               max_actions=max_actions, top_k=top_k)
            k = len(out.rank)
            columns["user_id"].append(np.full(k, user, np.int64))
            columns["rank"].append(out.rank)
            columns["medoid_pin_id"].append(out.medoid_pin_id)
            columns["importance"].append(out.importance)
            columns["cluster_size"].append(out.cluster_size)
            columns["num_cluster_actions"].append(out.num_cluster_actions)
            columns["num_clusters"].append(np.full(k, out.num_clusters, np.int32))
            columns["num_actions"].append(np.full(k, out.num_actions, np.int32))
            columns["capped"].append(np.full(k, out.capped))
            columns["missing_actions"].append(np.full(k, missing, np.int32))
        types = {"user_id": np.int64, "rank": np.int32, "medoid_pin_id": np.int64, "importance": np.float64,
                 "cluster_size": np.int32, "num_cluster_actions": np.int32, "num_clusters": np.int32,
                 "num_actions": np.int32, "capped": bool, "missing_actions": np.int32}
        data = {name: (np.concatenate(values) if values else np.zeros(0)).astype(types[name])
                for name, values in columns.items()}
        n = len(data["user_id"])
        data["pinsage_model_version"] = [model_version] * n
        data["computed_ds"] = [ds] * n
        return pd.DataFrame(data)[_TASK_COLUMNS]

    return cluster


def num_user_buckets(num_users: int, shuffle_partitions: int, users_per_bucket: int = USERS_PER_BUCKET) -> int:
    """Buckets of users for the clustering: about ``users_per_bucket`` users each, at least one per shuffle
    partition (so every task has work)."""
    return max(shuffle_partitions, -(-num_users // users_per_bucket))


# ---- counts ---------------------------------------------------------------------------------------------------
def _bucket_counts(rows, F) -> dict[str, int]:
    """Users per cluster-count bucket, from the rank-1 row of each user."""
    firsts = rows.where(F.col("rank") == 1)
    exprs = [F.sum(F.when(F.col("num_clusters").between(lo, hi), 1).otherwise(0)).alias(f"b{i}")
             for i, (_, lo, hi) in enumerate(CLUSTER_BUCKETS)]
    row = firsts.agg(*exprs).collect()[0]
    return {name: int(row[f"b{i}"] or 0) for i, (name, _, _) in enumerate(CLUSTER_BUCKETS)}


def _stats(computed, F) -> dict:
    """Counts over the computed users (each user has one row of rank 0 or 1)."""
    heads = computed.where(F.col("rank") <= 1)
    row = heads.agg(
        F.sum(F.when(F.col("rank") == 1, 1).otherwise(0)).alias("users"),
        F.sum(F.when(F.col("rank") == 0, 1).otherwise(0)).alias("skipped"),
        F.sum(F.when((F.col("rank") == 1) & F.col("capped"), 1).otherwise(0)).alias("capped"),
        F.sum("missing_actions").alias("missing"),
        F.sum("num_actions").alias("actions"),
        F.sum(F.when(F.col("rank") == 1, F.col("num_clusters")).otherwise(0)).alias("clusters"),
    ).collect()[0]
    skipped_ids = [r.user_id for r in heads.where(F.col("rank") == 0).select("user_id")
                   .orderBy("user_id").limit(_NAMED_USERS).collect()]
    missing_ids = [r.user_id for r in heads.where(F.col("missing_actions") > 0).select("user_id")
                   .orderBy("user_id").limit(_NAMED_USERS).collect()]
    return {
        "users_computed": int(row["users"] or 0),
        "users_skipped_no_embedding": int(row["skipped"] or 0),
        "users_capped": int(row["capped"] or 0),
        "actions_without_embedding": int(row["missing"] or 0),
        "actions_clustered": int(row["actions"] or 0),
        "clusters_computed": int(row["clusters"] or 0),
        "users_by_num_clusters": _bucket_counts(computed, F),
        "skipped_user_ids": skipped_ids,
        "users_with_missing_embeddings": missing_ids,
    }


def _summary(stats: dict) -> str:
    return (f"{stats['users']:,} users with medoids ({stats['users_carried_over']:,} carried over, "
            f"{stats['users_capped']:,} capped); {stats['users_recomputed']:,} users recomputed, of which "
            f"{stats['users_skipped_no_embedding']:,} skipped without embeddings; "
            f"clusters per user {stats['users_by_num_clusters']}")


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    defaults = PinnerSageConfig(lake_uri=settings.lake_uri, ds=dt.date(2000, 1, 1))
    parser = argparse.ArgumentParser(prog="spark-submit jobs/pinnersage.py", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--window-days", type=int, default=defaults.window_days)
    parser.add_argument("--alpha", type=float, default=defaults.alpha)
    parser.add_argument("--lam", type=float, default=defaults.lam, help="importance decay per day")
    parser.add_argument("--max-actions", type=int, default=defaults.max_actions)
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument("--incremental", action=argparse.BooleanOptionalAction, default=defaults.incremental,
                        help="carry over unchanged users of the latest earlier partition (default: on)")
    parser.add_argument("--embedding-distribution", choices=EMBEDDING_DISTRIBUTIONS,
                        default=defaults.embedding_distribution)
    parser.add_argument("--spark-master", default=None,
                        help="default: spark-submit's --master, else EMB_SPARK_MASTER (local[*])")
    parser.add_argument("--shuffle-partitions", type=int, default=defaults.shuffle_partitions)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = PinnerSageConfig(
        lake_uri=args.lake_uri, ds=args.ds, window_days=args.window_days, alpha=args.alpha, lam=args.lam,
        max_actions=args.max_actions, top_k=args.top_k, incremental=args.incremental,
        embedding_distribution=args.embedding_distribution, spark_master=args.spark_master,
        shuffle_partitions=args.shuffle_partitions,
    )
    result = run(config)
    print({"stats": result.stats, "timings_s": {k: round(v, 2) for k, v in result.timings_s.items()}})


if __name__ == "__main__":
    # Run the module under its package name, so functions shipped to Spark workers are pickled by reference.
    from jobs.pinnersage import main as _main

    _main()
