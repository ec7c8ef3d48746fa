"""PPR neighborhoods of every pin by Pixie random walks (Spark; ``spark-submit jobs/ppr_neighborhoods.py --ds ...``).

In: ``graph_csr`` ds=<ds> (written by jobs.build_graph).
Out: ``ppr_neighbors`` ds=<ds> (pin_id, neighbor_ids, neighbor_weights, hard_negative_ids, num_steps), one
row per graph pin, with a manifest. Isolated pins get empty lists (counted in the manifest).

The seed pins ``0..P-1`` are split into ``num_tasks`` contiguous ranges of about equal walking work; each
Spark task memory-maps the CSR arrays once per Python worker (cached for the life of the worker), runs the
compiled walker (``embeddings.graph.walks.ppr_neighborhoods``) over its range in batches and writes its
rows with pyarrow as ``part-<task>.parquet`` into the partition's staging directory; the driver checks the
row count and commits the directory (``Lake.commit``). The rows never pass through the JVM, which on a small
machine would take CPU from the walkers. Randomness is a hash of (seed, pin, walk, step), so the output
does not depend on the number of tasks, batches, reruns or retries, and a retried task rewrites its file
with the same rows.

A dry run (``dry_run=True``, for benchmarks) does all of that but deletes the staging directory instead of
committing it; with ``pin_limit`` it walks only the first ``pin_limit`` pins (split into ranges of equal
work like a full run). Nothing published is touched, so it can run beside the nightly job.

The CSR must be readable by every executor: with ``csr_distribution="path"`` the executors open the lake
partition itself (a local lake, or a filesystem mounted at the same path on every node); with
``"spark_files"`` the driver copies the partition into a local directory (downloading it from object
storage if need be) and ships it with ``SparkContext.addFile``. See docs/GRAPH.md for the scale limits.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

if __name__ == "__main__" and not __package__:  # spark-submit jobs/ppr_neighborhoods.py: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from embeddings.data.schemas import GRAPH_CSR, PPR_NEIGHBORS
from embeddings.graph.csr import BipartiteCSR
from embeddings.lake import Lake, LakeError, Manifest, parse_ds
from embeddings.settings import Settings

log = logging.getLogger("jobs.ppr_neighborhoods")

CSR_DISTRIBUTIONS = ("auto", "path", "spark_files")
TASKS_PER_CORE = 8


@dataclass(frozen=True)
class PprNeighborhoodsConfig:
    """Settings of one neighborhoods run.

    Attributes:
        lake_uri / ds: where the graph_csr partition is and where the output goes.
        num_steps: walk steps per seed pin (Pixie's N; visit counts estimate personalized PageRank).
        alpha: restart probability of a walk (geometric length; Pixie: 0.5).
        top_t: neighbors kept per pin (PinSage: T=50).
        band: ranks (lo, hi) of the visit-count order from which hard negatives are sampled.
        num_band_samples: hard negatives per pin.
        seed: seeds the walks' hashing.
        early_stop: (n_p, n_v) Pixie early stopping, or None.
        num_tasks: Spark tasks the seed pins are split into (ranges of equal work); None = 8 per core.
        batch_size: seed pins per walker call.
        csr_distribution: "path", "spark_files" or "auto" (path for a local lake, else spark_files).
        warmup: run one tiny task per core first, so CSR loading and JIT compilation are timed apart.
        spark_master / shuffle_partitions: Spark settings (master None = spark-submit's, else EMB_SPARK_MASTER).
        stale_staging_s: staging dirs of the output older than this are removed at the start.
        dry_run: walk and write into staging as usual, check the row count, then delete the staging dir
            instead of committing (benchmarks: the timings of a real run, no published partition touched).
        pin_limit: walk only pins ``0..pin_limit-1`` (all pins if the graph has fewer); requires dry_run,
            since a partial partition must never be published.
    """

    lake_uri: str
    ds: dt.date
    num_steps: int = 5_000  # the walker's default budget (WalkConfig); see docs/PPR.md
    alpha: float = 0.5
    top_t: int = 50
    band: tuple[int, int] = (200, 500)
    num_band_samples: int = 20
    seed: int = 0
    early_stop: tuple[int, int] | None = None
    num_tasks: int | None = None
    batch_size: int = 1024
    csr_distribution: str = "auto"
    warmup: bool = True
    spark_master: str | None = None
    shuffle_partitions: int = 16
    stale_staging_s: float = 6 * 3600.0
    dry_run: bool = False
    pin_limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        object.__setattr__(self, "band", tuple(int(b) for b in self.band))
        if self.early_stop is not None:
            object.__setattr__(self, "early_stop", tuple(int(v) for v in self.early_stop))
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.top_t < 1:
            raise ValueError(f"top_t must be >= 1, got {self.top_t}")
        if len(self.band) != 2 or not 0 <= self.band[0] < self.band[1]:
            raise ValueError(f"band must be (lo, hi) ranks with 0 <= lo < hi, got {self.band}")
        if self.num_band_samples < 0:
            raise ValueError(f"num_band_samples must be >= 0, got {self.num_band_samples}")
        if self.num_tasks is not None and self.num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1 or None, got {self.num_tasks}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.csr_distribution not in CSR_DISTRIBUTIONS:
            raise ValueError(f"csr_distribution must be one of {CSR_DISTRIBUTIONS}, got {self.csr_distribution!r}")
        if self.pin_limit is not None:
            if self.pin_limit < 1:
                raise ValueError(f"pin_limit must be >= 1 or None, got {self.pin_limit}")
            if not self.dry_run:
                raise ValueError(
                    f"pin_limit={self.pin_limit} walks only part of the graph, so it requires dry_run=True "
                    "(a partial ppr_neighbors partition is never committed)"
                )

    def walk_config(self):
        """The walker's settings (embeddings.graph.walks.WalkConfig)."""
        from embeddings.graph.walks import WalkConfig

        return WalkConfig(
            alpha=self.alpha, num_steps=self.num_steps, top_t=self.top_t, band=self.band,
            num_band_samples=self.num_band_samples, seed=self.seed, early_stop=self.early_stop,
        )


@dataclass(frozen=True)
class PprNeighborhoodsResult:
    """What a run produced. ``timings`` separates start-up from walking (the benchmark reads these).

    timings keys: ``session_s`` (SparkSession), ``warmup_s`` (one task per core: CSR load + JIT),
    ``walk_s`` (the walking and writing stage, driver wall clock), ``commit_s``, ``total_s``;
    ``task_walk_s`` / ``task_setup_s`` (sums over tasks of time inside the walker / loading the graph);
    rates: ``steps_per_s`` = steps / walk_s, ``steps_per_core_s`` = that / cores,
    ``walker_steps_per_core_s`` = steps / task_walk_s (the walker alone, inside Spark).
    ``task_write_s`` sums the tasks' time converting and writing their rows (not counted in task_walk_s).

    ``manifest`` is None for a dry run (nothing committed); ``num_pins`` counts the graph's pins and
    ``walked_pins`` those walked (fewer with ``pin_limit``); the other counts are of the whole graph.
    """

    manifest: Manifest | None = field(repr=False)
    num_pins: int
    walked_pins: int
    isolated_pins: int
    pins_without_neighbors: int
    total_steps: int
    cores: int
    num_tasks: int
    timings: dict[str, float]


def run(config: PprNeighborhoodsConfig, spark=None) -> PprNeighborhoodsResult:
    """Compute and commit the neighborhoods of every pin of the graph at ``config.ds`` (or, with
    ``config.dry_run``, compute and write them into staging, check them and delete them).

    Args:
        config: the run's settings.
        spark: a SparkSession to use; None creates one (``jobs.spark.build_spark_session``).

    Returns:
        PprNeighborhoodsResult (counts and timings; the counts are also in the manifest's ``extra``;
        manifest None for a dry run).

    Raises:
        PartitionMissingError: no graph_csr partition for ds.
        LakeError: csr_distribution="path" on a lake that is not local.
        ValueError: the CSR files are missing or corrupt (named).
    """
    from jobs.spark import ProgressLogger, build_spark_session, clean_stale_staging, delete_dir, remove_non_data_files

    started = time.perf_counter()
    if spark is None:
        spark = build_spark_session("ppr_neighborhoods", config.spark_master, config.shuffle_partitions)
    session_s = time.perf_counter() - started
    lake = Lake(config.lake_uri)
    clean_stale_staging(lake, PPR_NEIGHBORS, config.stale_staging_s)
    csr_manifest = lake.read_manifest(GRAPH_CSR, config.ds)
    sc = spark.sparkContext
    cores = sc.defaultParallelism
    num_tasks = config.num_tasks or TASKS_PER_CORE * cores
    walk_config = config.walk_config()

    with _csr_source(sc, lake, config) as (source, via_spark_files, local_dir):
        graph = BipartiteCSR.load(local_dir)  # memory-mapped: the driver reads only the counts and degrees
        num_pins = graph.num_pins
        isolated, without_neighbors = count_pins_without_neighbors(graph)
        if num_pins == 0:
            raise ValueError(f"{lake.describe(GRAPH_CSR, config.ds)} has no pins; nothing to walk from")
        walked_pins = num_pins if config.pin_limit is None else min(config.pin_limit, num_pins)
        num_tasks = min(num_tasks, walked_pins)
        log.info("ppr ds=%s: %d pins (%d isolated), %d edges, %d tasks on %d cores, %d steps per pin%s",
                 config.ds, num_pins, isolated, graph.num_edges, num_tasks, cores, config.num_steps,
                 f"; dry run over pins 0..{walked_pins - 1}" if config.dry_run else "")
        warmup_s = 0.0
        if config.warmup:
            t = time.perf_counter()
            spark.range(0, cores, 1, cores).mapInArrow(
                partial(warm_up_worker, source=source, via_spark_files=via_spark_files, walk_config=walk_config),
                "setup_s double",
            ).collect()
            warmup_s = time.perf_counter() - t
            log.info("warm-up (graph load + walker compilation on %d worker(s)): %.1f s", cores, warmup_s)

        bounds = balanced_ranges(graph.pin_degree()[:walked_pins], num_tasks)
        extra = {
            "pins": num_pins, "isolated_pins": isolated, "pins_without_neighbors": without_neighbors,
            "edges": graph.num_edges, "num_tasks": num_tasks,
            "walk": {"num_steps": config.num_steps, "alpha": config.alpha, "top_t": config.top_t,
                     "band": list(config.band), "num_band_samples": config.num_band_samples,
                     "seed": config.seed, "early_stop": list(config.early_stop) if config.early_stop else None},
        }
        staging = lake.new_staging(PPR_NEIGHBORS)
        try:
            # One row per task (range k holds exactly task k); each task walks its seed range and writes its
            # own Parquet file into staging, so the output never passes through the JVM (docs/GRAPH.md).
            tasks = spark.range(0, num_tasks, 1, num_tasks).mapInArrow(
                partial(
                    walk_and_write_ranges, bounds=bounds, source=source, via_spark_files=via_spark_files,
                    walk_config=walk_config, batch_size=config.batch_size, lake_uri=config.lake_uri,
                    out_dir=staging,
                ),
                TASK_STATS_SCHEMA,
            )
            t = time.perf_counter()
            with ProgressLogger(spark, "pins", walked_pins):
                stats = tasks.toArrow()
            walk_s = time.perf_counter() - t
            t = time.perf_counter()
            files = remove_non_data_files(lake, staging)
            rows = int(pc.sum(stats.column("rows")).as_py() or 0)
            expected_files = {f"part-{k:05d}.parquet" for k in range(num_tasks)}
            if rows != walked_pins or {f.rsplit("/", 1)[-1] for f in files} != expected_files:
                raise LakeError(
                    f"{lake.describe(PPR_NEIGHBORS, config.ds)}: the tasks wrote {rows} rows in {len(files)} "
                    f"file(s), expected one row per walked pin ({walked_pins}) in {num_tasks} files; "
                    "not committed"
                )
            if config.dry_run:
                manifest = None
                delete_dir(lake, staging)
                log.info("dry run: %d rows checked in staging and deleted; %s untouched", rows,
                         lake.describe(PPR_NEIGHBORS, config.ds))
            else:
                manifest = lake.commit(PPR_NEIGHBORS, staging, config.ds, row_count=rows,
                                       inputs=[csr_manifest], extra=extra)
        except BaseException:
            delete_dir(lake, staging)
            raise
    commit_s = time.perf_counter() - t

    total_steps = int(pc.sum(stats.column("steps")).as_py() or 0)
    task_walk_s = float(pc.sum(stats.column("walk_s")).as_py() or 0.0)
    steps_per_s = total_steps / max(walk_s, 1e-9)
    timings = {
        "session_s": session_s, "warmup_s": warmup_s, "walk_s": walk_s, "commit_s": commit_s,
        "total_s": time.perf_counter() - started,
        "task_walk_s": task_walk_s,
        "task_setup_s": float(pc.sum(stats.column("setup_s")).as_py() or 0.0),
        "task_write_s": float(pc.sum(stats.column("write_s")).as_py() or 0.0),
        "steps_per_s": steps_per_s, "steps_per_core_s": steps_per_s / cores,
        "walker_steps_per_core_s": total_steps / max(task_walk_s, 1e-9),
    }
    log.info("ppr ds=%s: %d pins walked, %.3g steps in %.1f s walking (%.3g steps/s, %.3g per core; walker "
             "alone %.3g per core); start-up %.1f s (session %.1f + warm-up %.1f)", config.ds, walked_pins,
             total_steps, walk_s, steps_per_s, steps_per_s / cores, timings["walker_steps_per_core_s"],
             session_s + warmup_s, session_s, warmup_s)
    return PprNeighborhoodsResult(
        manifest=manifest, num_pins=num_pins, walked_pins=walked_pins, isolated_pins=isolated,
        pins_without_neighbors=without_neighbors, total_steps=total_steps, cores=cores, num_tasks=num_tasks,
        timings=timings,
    )


class _csr_source:
    """Where executors find the CSR: (source, via_spark_files, local_dir on the driver); cleans up after."""

    def __init__(self, sc, lake: Lake, config: PprNeighborhoodsConfig) -> None:
        self.sc, self.lake, self.config = sc, lake, config
        self.tmp: str | None = None

    def __enter__(self) -> tuple[str, bool, str]:
        mode = self.config.csr_distribution
        is_local = isinstance(self.lake.fs, pafs.LocalFileSystem)
        if mode == "auto":
            mode = "path" if is_local else "spark_files"
        if mode == "path":
            local = str(self.lake.local_path(GRAPH_CSR, self.config.ds))  # LakeError if the lake is not local
            return local, False, local
        # A unique name per run: addFile ignores a name it already shipped, even if the files changed.
        self.tmp = tempfile.mkdtemp(prefix="ppr-csr-")
        name = f"graph_csr-{self.config.ds}-{uuid.uuid4().hex[:12]}"
        local = os.path.join(self.tmp, name)
        os.makedirs(local)
        pafs.copy_files(self.lake.partition_path(GRAPH_CSR, self.config.ds), local,
                        source_filesystem=self.lake.fs, destination_filesystem=pafs.LocalFileSystem())
        self.sc.addFile(local, recursive=True)
        return name, True, local

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def count_pins_without_neighbors(graph: BipartiteCSR) -> tuple[int, int]:
    """(isolated pins: no board; pins whose boards hold no other pin, isolated ones included)."""
    degree = graph.pin_degree()
    board_degree = graph.board_degree()
    # Per pin, the largest board it is on; a walk can leave the pin only through a board of 2+ pins.
    sizes = board_degree[np.asarray(graph.pin_indices)]
    largest = np.zeros(graph.num_pins, dtype=np.int64)
    has = degree > 0
    if sizes.size:
        starts = np.asarray(graph.pin_indptr[:-1])[has]
        largest[has] = np.maximum.reduceat(sizes, starts)
    return int((~has).sum()), int((largest < 2).sum())


# ---- executor side ------------------------------------------------------------------------------------------
# One CSR per Python worker, memory-mapped, reused by every task the worker runs. The key includes the inode and
# mtime of csr.json, so a partition rewritten while the worker lives is loaded afresh.
_GRAPHS: dict[tuple, BipartiteCSR] = {}


def load_graph_cached(source: str, via_spark_files: bool) -> tuple[BipartiteCSR, float]:
    """The CSR of ``source`` for this process, loading it on first use; returns (graph, seconds spent loading)."""
    if via_spark_files:
        from pyspark import SparkFiles

        path = SparkFiles.get(source)
    else:
        path = source
    stat = os.stat(os.path.join(path, "csr.json"))
    key = (path, stat.st_ino, stat.st_mtime_ns)
    graph = _GRAPHS.get(key)
    if graph is not None:
        return graph, 0.0
    started = time.perf_counter()
    _GRAPHS.clear()
    graph = BipartiteCSR.load(path, mmap=True)
    _GRAPHS[key] = graph
    return graph, time.perf_counter() - started


def warm_up_worker(batches: Iterator[pa.RecordBatch], source: str, via_spark_files: bool, walk_config):
    """Load the graph and run the walker once on a few steps, so the timed stage finds a warm worker."""
    import dataclasses

    from embeddings.graph.walks import ppr_neighborhoods

    for batch in batches:
        started = time.perf_counter()
        graph, _ = load_graph_cached(source, via_spark_files)
        tiny = dataclasses.replace(walk_config, num_steps=min(walk_config.num_steps, 100))
        ppr_neighborhoods(graph, np.zeros(1, dtype=np.int32), tiny)
        yield pa.RecordBatch.from_pydict({"setup_s": [time.perf_counter() - started] * batch.num_rows})


TASK_STATS_SCHEMA = "task int, rows long, steps long, walk_s double, setup_s double, write_s double"
# Rows buffered before a row group is written: big enough for efficient reads, small enough for any task.
ROW_GROUP_ROWS = 65_536


def balanced_ranges(pin_degree: np.ndarray, num_tasks: int) -> np.ndarray:
    """Split pin indices ``0..P-1`` into ``num_tasks`` contiguous ranges of about equal walking work.

    A pin with boards costs a full walk budget; an isolated pin costs only its (empty) output row, counted
    as 2% of a walk. Equal pin counts would leave some tasks with far more walks than others (new pins,
    which are often isolated, cluster at high ids), and the slowest task sets the wall time.

    Returns:
        (num_tasks+1,) int64 bounds, non-decreasing, from 0 to P; task k walks ``bounds[k]:bounds[k+1]``.
    """
    work = np.where(np.asarray(pin_degree) > 0, 1.0, 0.02)
    cumulative = np.concatenate([[0.0], np.cumsum(work)])
    targets = np.linspace(0.0, cumulative[-1], num_tasks + 1)
    bounds = np.searchsorted(cumulative, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, len(work)
    return np.maximum.accumulate(bounds)


def walk_and_write_ranges(
    tasks: Iterator[pa.RecordBatch],
    bounds: np.ndarray,
    source: str,
    via_spark_files: bool,
    walk_config,
    batch_size: int,
    lake_uri: str,
    out_dir: str,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: for each task id k, walk seeds ``bounds[k]:bounds[k+1]`` in batches of ``batch_size``
    and write them as ``out_dir/part-{k:05d}.parquet``; yield one row of task statistics.

    The file is written under a temporary name and renamed, and its name depends only on k, so a retried or
    speculative attempt replaces it with the same rows (the walks are deterministic).
    """
    import pyarrow.parquet as pq

    from embeddings.graph.walks import ppr_neighborhoods

    graph, setup_s = load_graph_cached(source, via_spark_files)
    fs = Lake(lake_uri).fs
    for batch in tasks:
        for task in batch.column(0).to_pylist():
            seeds = np.arange(bounds[task], bounds[task + 1], dtype=np.int32)
            final = f"{out_dir}/part-{task:05d}.parquet"
            temporary = f"{out_dir}/.part-{task:05d}.{uuid.uuid4().hex}.tmp"
            steps, walk_s, write_s, pending = 0, 0.0, 0.0, []
            with fs.open_output_stream(temporary) as sink, \
                    pq.ParquetWriter(sink, _OUTPUT_SCHEMA, compression="zstd") as writer:
                for start in range(0, len(seeds), batch_size):
                    started = time.perf_counter()
                    result = ppr_neighborhoods(graph, seeds[start:start + batch_size], walk_config)
                    walk_s += time.perf_counter() - started
                    steps += int(np.asarray(result.steps).sum())
                    started = time.perf_counter()
                    pending.append(neighborhoods_to_arrow(result, graph.pin_ids))
                    if sum(b.num_rows for b in pending) >= ROW_GROUP_ROWS:
                        writer.write_table(pa.Table.from_batches(pending))
                        pending = []
                    write_s += time.perf_counter() - started
                started = time.perf_counter()
                writer.write_table(pa.Table.from_batches(pending, schema=_OUTPUT_SCHEMA))
            fs.move(temporary, final)
            write_s += time.perf_counter() - started
            yield pa.RecordBatch.from_pydict(
                {"task": [task], "rows": [len(seeds)], "steps": [steps], "walk_s": [walk_s], "setup_s": [setup_s],
                 "write_s": [write_s]},
                schema=pa.schema([("task", pa.int32()), ("rows", pa.int64()), ("steps", pa.int64()),
                                  ("walk_s", pa.float64()), ("setup_s", pa.float64()), ("write_s", pa.float64())]),
            )
            setup_s = 0.0


_OUTPUT_SCHEMA = PPR_NEIGHBORS.schema


def neighborhoods_to_arrow(result, pin_ids: np.ndarray) -> pa.RecordBatch:
    """A walker result (pin indices, -1 padded) as ppr_neighbors rows (pin ids, variable-length lists).

    Args:
        result: NeighborhoodResult with seeds (S,), neighbors (S,T), weights (S,T), band_samples (S,K),
            steps (S,); -1 marks padding.
        pin_ids: (P,) id of every pin index.

    Returns:
        RecordBatch with the ppr_neighbors schema, S rows in seed order.
    """
    pin_ids = np.asarray(pin_ids)
    seeds = np.asarray(result.seeds)
    neighbors = np.asarray(result.neighbors)
    weights = np.asarray(result.weights, dtype=np.float32)
    band = np.asarray(result.band_samples)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(pin_ids[seeds.astype(np.int64)], pa.int64()),
            _padded_to_list(neighbors, pin_ids[np.maximum(neighbors, 0)], pa.int64()),
            _padded_to_list(neighbors, weights, pa.float32()),
            _padded_to_list(band, pin_ids[np.maximum(band, 0)], pa.int64()),
            pa.array(np.asarray(result.steps, dtype=np.int64), pa.int64()),
        ],
        schema=_OUTPUT_SCHEMA,
    )


def _padded_to_list(index: np.ndarray, values: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """Rows of ``values`` where ``index >= 0`` as a list array (row order kept)."""
    keep = index >= 0
    offsets = np.zeros(len(index) + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[keep], value_type))


def _int_pair(text: str) -> tuple[int, int]:
    lo, hi = text.split(",")
    return int(lo), int(hi)


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    defaults = PprNeighborhoodsConfig(lake_uri=settings.lake_uri, ds=dt.date(2000, 1, 1))
    parser = argparse.ArgumentParser(prog="spark-submit jobs/ppr_neighborhoods.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--num-steps", type=int, default=defaults.num_steps)
    parser.add_argument("--alpha", type=float, default=defaults.alpha)
    parser.add_argument("--top-t", type=int, default=defaults.top_t)
    parser.add_argument("--band", type=_int_pair, default=defaults.band, help="LO,HI ranks of hard negatives")
    parser.add_argument("--num-band-samples", type=int, default=defaults.num_band_samples)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--early-stop", type=_int_pair, default=None, help="N_P,N_V (Pixie early stopping)")
    parser.add_argument("--num-tasks", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--csr-distribution", choices=CSR_DISTRIBUTIONS, default=defaults.csr_distribution)
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--spark-master", default=None,
                        help="default: spark-submit's --master, else EMB_SPARK_MASTER (local[*])")
    parser.add_argument("--shuffle-partitions", type=int, default=defaults.shuffle_partitions)
    parser.add_argument("--dry-run", action="store_true",
                        help="walk and write into staging, check, then delete it: commit nothing (benchmarks)")
    parser.add_argument("--pin-limit", type=int, default=None,
                        help="walk only the first N pins (requires --dry-run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = PprNeighborhoodsConfig(
        lake_uri=args.lake_uri, ds=args.ds, num_steps=args.num_steps, alpha=args.alpha, top_t=args.top_t,
        band=args.band, num_band_samples=args.num_band_samples, seed=args.seed, early_stop=args.early_stop,
        num_tasks=args.num_tasks, batch_size=args.batch_size, csr_distribution=args.csr_distribution,
        warmup=not args.no_warmup, spark_master=args.spark_master, shuffle_partitions=args.shuffle_partitions,
        dry_run=args.dry_run, pin_limit=args.pin_limit,
    )
    result = run(config)
    print({"pins": result.num_pins, "walked_pins": result.walked_pins, "dry_run": config.dry_run,
           "isolated_pins": result.isolated_pins, "total_steps": result.total_steps,
           "cores": result.cores, "timings": {k: round(v, 3) for k, v in result.timings.items()}})


if __name__ == "__main__":
    # Run the module under its package name, so functions shipped to Spark workers are pickled by reference.
    from jobs.ppr_neighborhoods import main as _main

    _main()
