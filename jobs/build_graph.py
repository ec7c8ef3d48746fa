"""Build the bipartite pin-board graph of one ds (Spark; ``spark-submit jobs/build_graph.py --ds ...``).

In: the committed ``events`` partitions of the window of ``window_days`` days ending at ds (save events with
a board), minus the last ``holdout_days`` (evaluation days never enter the graph), and the ``pins`` snapshot
(pins created before the end of ds are nodes even without a save).
Out, each partition ds=<ds> with a manifest:

* ``graph_edges`` (pin_id, board_id, weight, last_ts, pin_idx, board_idx): deduplicated, pruned save edges;
* ``graph_pins`` (pin_id, pin_idx, degree) and ``graph_boards`` (board_id, board_idx, degree);
* ``graph_csr``: the same graph as memory-mappable CSR arrays (embeddings.graph.csr), written last.

Pruning follows Pixie (cap hub degrees by a deterministic hash sample, drop small boards); the manifests
record the share of edges kept. Indices are ranks by id, so the outputs are a pure function of the input.
See docs/GRAPH.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __name__ == "__main__" and not __package__:  # spark-submit jobs/build_graph.py: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow.fs as pafs

from embeddings.data.engagement import TRAINING_WINDOW_DAYS
from embeddings.data.schemas import EVENTS, GRAPH_BOARDS, GRAPH_CSR, GRAPH_EDGES, GRAPH_PINS, PINS
from embeddings.graph.building import (
    GraphWindow,
    PruningConfig,
    csr_from_tables,
    index_graph,
    pins_created_before,
    pruning_stages,
    save_edges,
)
from embeddings.lake import Lake, LakeError, Manifest, parse_ds
from embeddings.settings import Settings

log = logging.getLogger("jobs.build_graph")

OUTPUT_TABLES = (GRAPH_EDGES, GRAPH_PINS, GRAPH_BOARDS, GRAPH_CSR)


class GraphBuildError(LakeError):
    """The input cannot make a graph (no events in the window, nothing left after pruning)."""


@dataclass(frozen=True)
class BuildGraphConfig:
    """Settings of one graph build.

    Attributes:
        lake_uri: the lake (local path or URI).
        ds: the day the graph is built for; the window ends here.
        window_days: days of events, ending at ds inclusive (90: the training window).
        holdout_days: the last days of the window kept out of the graph (evaluation edges); 0 = none.
        max_board_degree / max_pin_degree / min_board_size / seed: Pixie pruning (PruningConfig).
        spark_master: None = spark-submit's --master, or EMB_SPARK_MASTER in a plain process.
        shuffle_partitions: spark.sql.shuffle.partitions for this job (also the indexing parallelism).
        stale_staging_s: staging dirs of the output tables older than this are removed at the start.
    """

    lake_uri: str
    ds: dt.date
    window_days: int = TRAINING_WINDOW_DAYS
    holdout_days: int = 0
    max_board_degree: int | None = 5000
    max_pin_degree: int | None = 1000
    min_board_size: int = 2
    seed: int = 0
    spark_master: str | None = None
    shuffle_partitions: int = 16
    stale_staging_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        GraphWindow.ending_at(self.ds, self.window_days, self.holdout_days)  # raises on a bad window
        PruningConfig(self.max_board_degree, self.max_pin_degree, self.min_board_size, self.seed)  # likewise
        if self.shuffle_partitions < 1:
            raise ValueError(f"shuffle_partitions must be >= 1, got {self.shuffle_partitions}")

    @property
    def window(self) -> GraphWindow:
        return GraphWindow.ending_at(self.ds, self.window_days, self.holdout_days)

    @property
    def pruning(self) -> PruningConfig:
        return PruningConfig(self.max_board_degree, self.max_pin_degree, self.min_board_size, self.seed)


@dataclass(frozen=True)
class BuildGraphResult:
    """What a build produced: counts (also in the manifests' ``extra``), manifests and timings."""

    stats: dict
    manifests: dict[str, Manifest] = field(repr=False)
    timings_s: dict[str, float] = field(default_factory=dict)


def run(config: BuildGraphConfig, spark=None) -> BuildGraphResult:
    """Build and commit the graph of ``config.ds``.

    Args:
        config: the build's settings.
        spark: a SparkSession to use; None creates one (``jobs.spark.build_spark_session``).

    Returns:
        BuildGraphResult.

    Raises:
        GraphBuildError: no committed events partitions or no save edges in the window, or no edges left
            after pruning; the message names the window and the lake.
        CorruptFileError: an input Parquet file is unreadable (named).
        PartitionMissingError: the pins snapshot is missing.
    """
    from jobs.spark import build_spark_session, clean_stale_staging, runtime_conf

    started = time.perf_counter()
    if spark is None:
        spark = build_spark_session("build_graph", config.spark_master, config.shuffle_partitions)
    session_s = time.perf_counter() - started
    lake = Lake(config.lake_uri)
    for spec in OUTPUT_TABLES:
        clean_stale_staging(lake, spec, config.stale_staging_s)
    with runtime_conf(spark, {"spark.sql.shuffle.partitions": config.shuffle_partitions}):
        result = _build(spark, lake, config)
    timings = {"session_s": session_s, **result.timings_s, "total_s": time.perf_counter() - started}
    log.info("graph ds=%s built in %.1f s: %s", config.ds, timings["total_s"], _summary(result.stats))
    return BuildGraphResult(stats=result.stats, manifests=result.manifests, timings_s=timings)


def _build(spark, lake: Lake, config: BuildGraphConfig) -> BuildGraphResult:
    from pyspark import StorageLevel

    from jobs.spark import naming_corrupt_files, read_committed, write_partition

    window = config.window
    pruning = config.pruning
    t0 = time.perf_counter()
    committed = set(lake.list_partitions(EVENTS))
    days = [d for d in window.days() if d in committed]
    where = f"window {window} (window_days={config.window_days}, holdout_days={config.holdout_days})"
    if not days:
        raise GraphBuildError(
            f"no committed events partitions in the graph {where} of lake {lake.lake_uri} "
            f"(table events has {len(committed)} partition(s) in all); nothing to build a graph from"
        )
    missing = [d.isoformat() for d in window.days() if d not in committed]
    if missing:
        log.warning("%d day(s) of the graph %s have no committed events partition: %s",
                    len(missing), where, missing[:10])
    events_manifests = [lake.read_manifest(EVENTS, d) for d in days]
    pins_manifest = lake.read_manifest(PINS)
    events = read_committed(spark, lake, EVENTS, days)
    snapshot = read_committed(spark, lake, PINS, [None])
    inputs_what = f"events {days[0]}..{days[-1]} and the pins snapshot of lake {lake.lake_uri}"

    with naming_corrupt_files(inputs_what):
        raw = save_edges(events, window.start_ts, window.end_ts).persist(StorageLevel.MEMORY_AND_DISK)
        num_raw = raw.count()
        if num_raw == 0:
            raise GraphBuildError(
                f"no save events with a board in the graph {where} of lake {lake.lake_uri} "
                f"({len(days)} events partition(s) read); nothing to build a graph from"
            )
        board_capped, both_capped, pruned = pruning_stages(raw, pruning)
        pruned = pruned.persist(StorageLevel.MEMORY_AND_DISK)
        num_board_capped = board_capped.count()
        num_both_capped = both_capped.count()
        num_kept = pruned.count()
        if num_kept == 0:
            raise GraphBuildError(
                f"no edges left after pruning the graph {where} of lake {lake.lake_uri}: "
                f"{num_raw} edge(s) before, pruning {asdict(pruning)}; lower min_board_size or raise the caps"
            )
        tables = index_graph(pruned, pins_created_before(snapshot, _end_of(config.ds)), config.shuffle_partitions)
        edges = tables.edges.persist(StorageLevel.MEMORY_AND_DISK)
        pins = tables.pins.persist(StorageLevel.MEMORY_AND_DISK)
        boards = tables.boards.persist(StorageLevel.MEMORY_AND_DISK)
        pins_arrow = pins.select("pin_id", "pin_idx").toArrow()
        boards_arrow = boards.select("board_id", "board_idx").toArrow()
        edges_arrow = edges.select("pin_idx", "board_idx").toArrow()
    t_graph = time.perf_counter()
    csr = csr_from_tables(pins_arrow, boards_arrow, edges_arrow)
    degree = csr.pin_degree()
    stats = {
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "holdout_days": window.holdout_days,
        "holdout_start": (window.end + dt.timedelta(days=1)).isoformat() if window.holdout_days else None,
        "events_partitions": len(days),
        "missing_days": len(missing),
        "edges_before_pruning": int(num_raw),
        "dropped_by_board_cap": int(num_raw - num_board_capped),
        "dropped_by_pin_cap": int(num_board_capped - num_both_capped),
        "dropped_small_boards": int(num_both_capped - num_kept),
        "edges": int(num_kept),
        "share_of_edges_kept": round(num_kept / num_raw, 6),
        "pins": csr.num_pins,
        "isolated_pins": int((degree == 0).sum()),
        "boards": csr.num_boards,
        "max_pin_degree": int(degree.max()) if len(degree) else 0,
        "max_board_degree": int(csr.board_degree().max()),
        "pruning": asdict(pruning),
    }
    log.info("graph ds=%s: %s", config.ds, _summary(stats))
    inputs = [*events_manifests, pins_manifest]
    manifests = {}
    with naming_corrupt_files(inputs_what):
        manifests[GRAPH_EDGES.name] = write_partition(
            lake, GRAPH_EDGES, edges.orderBy("pin_idx", "board_idx"), config.ds, inputs, stats)
        manifests[GRAPH_PINS.name] = write_partition(
            lake, GRAPH_PINS, pins.orderBy("pin_idx"), config.ds, inputs, stats)
        manifests[GRAPH_BOARDS.name] = write_partition(
            lake, GRAPH_BOARDS, boards.orderBy("board_idx"), config.ds, inputs, stats)
    for df in (raw, pruned, edges, pins, boards):
        df.unpersist()
    t_tables = time.perf_counter()
    manifests[GRAPH_CSR.name] = write_csr(lake, csr, config.ds, [manifests[GRAPH_EDGES.name]], stats)
    t_csr = time.perf_counter()
    timings = {"graph_s": t_graph - t0, "tables_s": t_tables - t_graph, "csr_s": t_csr - t_tables}
    return BuildGraphResult(stats=stats, manifests=manifests, timings_s=timings)


def write_csr(lake: Lake, csr, ds: dt.date, inputs, extra: dict) -> Manifest:
    """Commit ``csr`` as the ``graph_csr`` partition of ``ds`` (staging + atomic swap; row_count = edges)."""
    from jobs.spark import delete_dir

    staging = lake.new_staging(GRAPH_CSR)
    try:
        if isinstance(lake.fs, pafs.LocalFileSystem):
            csr.save(staging)
        else:  # object storage: write locally, then upload the directory
            with tempfile.TemporaryDirectory(prefix="graph_csr-") as tmp:
                csr.save(tmp)
                pafs.copy_files(tmp, staging, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=lake.fs)
        return lake.commit(GRAPH_CSR, staging, ds, row_count=csr.num_edges, inputs=inputs, extra=extra)
    except BaseException:
        delete_dir(lake, staging)
        raise


def _end_of(ds: dt.date) -> dt.datetime:
    return dt.datetime.combine(ds + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


def _summary(stats: dict) -> str:
    return (f"{stats['pins']:,} pins ({stats['isolated_pins']:,} isolated), {stats['boards']:,} boards, "
            f"{stats['edges']:,} edges ({100 * stats['share_of_edges_kept']:.1f}% of "
            f"{stats['edges_before_pruning']:,} kept by pruning)")


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    defaults = BuildGraphConfig(lake_uri=settings.lake_uri, ds=dt.date(2000, 1, 1))
    parser = argparse.ArgumentParser(prog="spark-submit jobs/build_graph.py", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--window-days", type=int, default=defaults.window_days)
    parser.add_argument("--holdout-days", type=int, default=defaults.holdout_days)
    parser.add_argument("--max-board-degree", type=_optional_int, default=defaults.max_board_degree,
                        help="cap on pins per board ('none' = no cap)")
    parser.add_argument("--max-pin-degree", type=_optional_int, default=defaults.max_pin_degree,
                        help="cap on boards per pin ('none' = no cap)")
    parser.add_argument("--min-board-size", type=int, default=defaults.min_board_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--spark-master", default=None,
                        help="default: spark-submit's --master, else EMB_SPARK_MASTER (local[*])")
    parser.add_argument("--shuffle-partitions", type=int, default=defaults.shuffle_partitions)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = BuildGraphConfig(
        lake_uri=args.lake_uri, ds=args.ds, window_days=args.window_days, holdout_days=args.holdout_days,
        max_board_degree=args.max_board_degree, max_pin_degree=args.max_pin_degree,
        min_board_size=args.min_board_size, seed=args.seed, spark_master=args.spark_master,
        shuffle_partitions=args.shuffle_partitions,
    )
    result = run(config)
    print({"stats": result.stats, "timings_s": {k: round(v, 2) for k, v in result.timings_s.items()}})


if __name__ == "__main__":
    # Run the module under its package name, so functions shipped to Spark workers are pickled by reference.
    from jobs.build_graph import main as _main

    _main()
