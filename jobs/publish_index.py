"""Publish the faiss HNSW indexes of one ds: validate, build, gate, publish atomically, switch CURRENT.

In: per embedding space, its pin table at ds: ``pinsage`` <- ``pin_embeddings`` (PinSage), ``pinnerformer``
<- ``pinnerformer_pin_embeddings`` (the PinnerFormer pin tower; skipped when that partition is absent and
the space was not asked for by name); ``events`` of the last ``popular_days`` days (the fallback list).
Out: a new version ``<index_uri>/<space>/ds=<ds>/<run_id>/`` (index, id map, fallback list, manifest,
``_SUCCESS``), ``<space>/CURRENT`` moved to it unless it points to a newer ds, retention applied, and an
MLflow run in the experiment ``indexes`` (the manifest, the gate's figures and its recall-vs-efSearch
plot; the index itself is referenced by URI and sha256, not copied).

Per space: validate the vectors (finite, non-zero, unique ids, count within ``count_tolerance`` of the
version ``CURRENT`` points to), L2-normalize, build ``IndexIDMap2(IndexHNSW{Flat,SQ8}(d, M, IP))``, run the
gate (``embeddings.index.evaluate``). Bad input or a failed gate fails the task with the figures and
publishes nothing: ``CURRENT`` and every published version stay as they were.

Idempotent: when a complete version of the same space was already built from the same source partition
(its manifest's fingerprint) with the same index and gate parameters, it is reused instead of building a
duplicate; ``CURRENT`` is still moved to it if it should be (a run that crashed before the switch).

Rollback: ``python -m jobs.publish_index --space pinsage --rollback-to ds=2026-11-01/<run_id>`` points
``CURRENT`` at an older complete version (the only way the pointer moves back in time).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from embeddings.data.engagement import positive_mask
from embeddings.data.schemas import EVENTS, PIN_EMBEDDINGS, PINNERFORMER_PIN_EMBEDDINGS, TableSpec
from embeddings.data.vectors import single_value, vector_matrix
from embeddings.eval.plots import plot_recall_vs_ef
from embeddings.index.build import (
    REORDERS,
    IndexConfig,
    IndexInputError,
    build_hnsw_index,
    normalize,
    set_ef_search,
    validate_vectors,
)
from embeddings.index.evaluate import DEFAULT_EF_GRID, GateConfig, GateFailed, run_gate
from embeddings.index.publish import IDS_FILE, INDEX_FILE, POPULAR_FILE, IndexStore, VersionRef, safe_run_id
from embeddings.lake import MANIFEST_NAME, Lake, code_version, parse_ds
from embeddings.registry.tracking import connect, lineage_tags, start_run
from embeddings.settings import Settings

log = logging.getLogger("jobs.publish_index")

EXPERIMENT = "indexes"
SPACE_TABLES: dict[str, TableSpec] = {"pinsage": PIN_EMBEDDINGS, "pinnerformer": PINNERFORMER_PIN_EMBEDDINGS}
OPTIONAL_SPACES = frozenset({"pinnerformer"})  # "when present"


@dataclass(frozen=True)
class PublishIndexConfig:
    """Args:
        ds: the partition whose embeddings are published.
        lake_uri, index_uri, tracking_uri, artifacts_uri: where to read, publish and log.
        spaces: embedding spaces to publish; an optional space (``pinnerformer``) without a partition at ds
            is skipped unless ``require_all``.
        m, ef_construction, variant, reorder: the HNSW graph and its node order
            (``embeddings.index.build.IndexConfig``).
        gate: the gate's parameters (``embeddings.index.evaluate.GateConfig``; its defaults are the issue's).
        count_tolerance: largest relative change of the vector count against the ``CURRENT`` version.
        retention_days: keep the versions of this many most recent days (``CURRENT``'s always).
        popular_days, popular_count: the fallback list: the most engaged pins of the last days.
        run_id: names the version directory (default: Airflow's run id, else a UTC timestamp).
        threads: OpenMP threads for build and search (default: every core).
    """

    ds: dt.date
    lake_uri: str
    index_uri: str
    tracking_uri: str | None = None
    artifacts_uri: str | None = None
    spaces: tuple[str, ...] = ("pinsage", "pinnerformer")
    require_all: bool = False
    m: int = 32
    ef_construction: int = 200
    variant: str = "flat"
    reorder: str = "rcm"
    gate: GateConfig = field(default_factory=GateConfig)
    count_tolerance: float = 0.25
    retention_days: int = 7
    popular_days: int = 7
    popular_count: int = 1000
    run_id: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        unknown = set(self.spaces) - set(SPACE_TABLES)
        if unknown or not self.spaces:
            raise ValueError(f"spaces must be among {sorted(SPACE_TABLES)} (got {list(self.spaces)})")
        if not 0 <= self.count_tolerance:
            raise ValueError(f"count_tolerance must be non-negative (got {self.count_tolerance})")
        if self.retention_days <= 0 or self.popular_days <= 0 or self.popular_count <= 0:
            raise ValueError("retention_days, popular_days and popular_count must be positive")


@dataclass
class SpaceResult:
    space: str
    status: str  # published | reused | skipped
    version: str | None = None
    current: str | None = None
    pointer_moved: bool = False
    manifest: dict = field(default_factory=dict, repr=False)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def default_run_id(env: dict | None = None) -> str:
    env = os.environ if env is None else env
    if env.get("AIRFLOW_CTX_DAG_RUN_ID"):
        return env["AIRFLOW_CTX_DAG_RUN_ID"]
    return "manual__" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")


def run(config: PublishIndexConfig) -> list[SpaceResult]:
    """Publish every configured space (module docstring); raises on the first space that fails."""
    if config.threads:
        faiss.omp_set_num_threads(config.threads)
    gate = config.gate
    lake = Lake(config.lake_uri)
    store = IndexStore(config.index_uri)
    run_id = safe_run_id(config.run_id or default_run_id())
    results = []
    for space in config.spaces:
        spec = SPACE_TABLES[space]
        if space in OPTIONAL_SPACES and not config.require_all and not lake.exists(spec, config.ds):
            log.info("%s: no %s partition; nothing to publish for this space", space, lake.describe(spec, config.ds))
            results.append(SpaceResult(space, "skipped"))
            continue
        results.append(publish_space(lake, store, space, spec, config, gate, run_id))
    return results


def source_fingerprint(lake: Lake, spec: TableSpec, ds: dt.date) -> str:
    """sha256 of the source partition's manifest: changes whenever the partition is rewritten."""
    return hashlib.sha256(lake.read_manifest(spec, ds).to_json().encode()).hexdigest()


def build_fingerprint(source: str, index_config, gate) -> str:
    payload = json.dumps({"source": source, "index": asdict(index_config), "gate": asdict(gate)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def read_space(lake: Lake, spec: TableSpec, ds: dt.date) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """(ids, vectors, versions) of an embedding table's partition; ``versions`` holds its one
    ``model_version`` and, for a table that has the column, its one ``pinsage_model_version``.

    Raises:
        LakeError: the partition is missing or unreadable, ragged, or mixes model versions.
    """
    what = lake.describe(spec, ds)
    version_columns = [c for c in ("model_version", "pinsage_model_version") if c in spec.schema.names]
    table = lake.read(spec, ds, columns=["pin_id", "embedding", *version_columns])
    if table.num_rows == 0:
        raise IndexInputError(f"{what} has no rows; refusing to publish an empty index")
    versions = {column: single_value(table, column, what) for column in version_columns}
    vectors = vector_matrix(table["embedding"], what)
    ids = table["pin_id"].to_numpy().astype(np.int64)
    return ids, vectors, versions


def popular_pins(lake: Lake, ds: dt.date, days: int, count: int, indexed: np.ndarray) -> np.ndarray:
    """(K, 2) int64: the indexed pins with the most positive engagements in the ``days`` ending at ds, with
    their counts, most engaged first (ties by pin id). The service's fallback for users it cannot embed."""
    table, read = lake.read_range(EVENTS, ds - dt.timedelta(days=days - 1), ds,
                                  columns=["pin_id", "action", "duration_ms"])
    if len(read) < days:
        log.warning("popular pins: only %d of the %d days before %s have events", len(read), days, ds)
    positive = positive_mask(table["action"].to_numpy(zero_copy_only=False),
                             table["duration_ms"].to_numpy(zero_copy_only=False))
    pins = table["pin_id"].to_numpy()[positive]
    pins = pins[np.isin(pins, indexed)]
    unique, counts = np.unique(pins, return_counts=True)
    order = np.lexsort((unique, -counts))[:count]
    return np.stack([unique[order], counts[order]], axis=1).astype(np.int64)


def publish_space(lake: Lake, store, space: str, spec: TableSpec, config: PublishIndexConfig, gate,
                  run_id: str) -> SpaceResult:
    start = time.perf_counter()
    index_config = IndexConfig(m=config.m, ef_construction=config.ef_construction, variant=config.variant,
                               reorder=config.reorder)
    removed = [str(r) for r in store.clean_incomplete(space)]
    what = lake.describe(spec, config.ds)
    fingerprint = build_fingerprint(source_fingerprint(lake, spec, config.ds), index_config, gate)
    for ref in reversed(store.list_versions(space)):
        if ref.ds == config.ds and store.read_manifest(ref).get("build_fingerprint") == fingerprint:
            log.info("%s: %s was already built from %s with these parameters; reusing it", space, ref, what)
            moved = store.switch_current(ref, reason="rerun of an already published version")
            removed += [str(r) for r in store.apply_retention(space, config.retention_days)]
            return SpaceResult(space, "reused", ref.key, _key(store.current(space)), moved,
                               store.read_manifest(ref), removed, time.perf_counter() - start)

    ids, vectors, versions = read_space(lake, spec, config.ds)
    model_version = versions["model_version"]
    current = store.current(space)
    previous = store.read_manifest(current) if current else None
    validate_vectors(ids, vectors, what, previous_count=previous["count"] if previous else None,
                     count_tolerance=config.count_tolerance)
    unit = normalize(vectors)
    del vectors
    build_start = time.perf_counter()
    index = build_hnsw_index(ids, unit, index_config, what=f"{space} index of {what}")
    build_seconds = time.perf_counter() - build_start
    reconstruct_tolerance = 1e-5 if config.variant == "flat" else 2.0 / 255  # one 8-bit step of a unit range
    previous_recall = previous["gate"]["recall"] if previous else None
    gate_result = run_gate(index, ids, unit, gate, previous_recall=previous_recall,
                           reconstruct_tolerance=reconstruct_tolerance)
    ref = VersionRef(space, config.ds, run_id)
    if store.is_complete(ref):  # the same run id built other inputs (a rerun after an upstream rewrite)
        ref = VersionRef(space, config.ds, f"{run_id}-{fingerprint[:8]}")
    manifest = {
        "space": space,
        "version": ref.key,
        "ds": config.ds.isoformat(),
        "run_id": ref.run_id,
        "count": int(len(ids)),
        "dimension": int(unit.shape[1]),
        "metric": "inner_product",
        "normalized": True,
        "index_type": f"IndexIDMap2(IndexHNSW{'Flat' if config.variant == 'flat' else 'SQ8'})",
        "variant": config.variant,
        "m": config.m,
        "ef_construction": config.ef_construction,
        "reorder": config.reorder,
        "ef_search": gate_result.ef_search,
        "gate": gate_result.to_dict(),
        "gate_config": asdict(gate),
        "build_seconds": round(build_seconds, 3),
        "source": {"table": spec.name, "ds": config.ds.isoformat(), **versions,
                   "manifest": f"{lake.partition_path(spec, config.ds)}/{MANIFEST_NAME}"},
        "model_version": model_version,
        "build_fingerprint": fingerprint,
        "code_version": code_version(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "popular": {"days": config.popular_days, "count": config.popular_count},
    }
    with _tracked_run(config, space, manifest) as tracked, tempfile.TemporaryDirectory() as tmp:
        _log_gate(tracked, tmp, space, gate_result, gate, manifest)
        if not gate_result.passed:
            raise GateFailed(f"{space} index of {what} failed the gate, nothing published: "
                             + "; ".join(gate_result.failures) + f". Figures: {json.dumps(gate_result.to_dict())}",
                             gate_result)
        set_ef = gate_result.ef_search
        set_ef_search(index, set_ef)  # stored in the file, so a loader searches at the gate's efSearch
        files = {INDEX_FILE: Path(tmp) / INDEX_FILE, IDS_FILE: Path(tmp) / IDS_FILE,
                 POPULAR_FILE: Path(tmp) / POPULAR_FILE}
        faiss.write_index(index, str(files[INDEX_FILE]))
        np.save(files[IDS_FILE], faiss.vector_to_array(faiss.downcast_index(index).id_map))  # by position
        np.save(files[POPULAR_FILE], popular_pins(lake, config.ds, config.popular_days, config.popular_count, ids))
        written = store.publish(ref, files, manifest)
        moved = store.switch_current(ref)
        removed += [str(r) for r in store.apply_retention(space, config.retention_days)]
        if tracked is not None:
            _log_published(tracked, tmp, store, ref, written, moved)
    log.info("%s: published %s (%d vectors, efSearch %d, recall@%d %.4f, %.0f queries/s); CURRENT %s",
             space, ref, len(ids), set_ef, gate_result.k, gate_result.recall, gate_result.qps,
             "moved" if moved else f"stays at {_key(store.current(space))}")
    return SpaceResult(space, "published", ref.key, _key(store.current(space)), moved, written, removed,
                       time.perf_counter() - start)


def _key(ref) -> str | None:
    return ref.key if ref is not None else None


def _tracked_run(config: PublishIndexConfig, space: str, manifest: dict):
    if not config.tracking_uri:
        return contextlib.nullcontext()
    client = connect(config.tracking_uri)
    tags = {**lineage_tags(ds=config.ds.isoformat(), input_manifests={manifest["source"]["table"]:
                                                                         manifest["source"]["manifest"]}),
            "index.space": space, "index.version": manifest["version"],
            "source.model_version": manifest["model_version"]}
    return start_run(client, EXPERIMENT, run_name=f"{space} index ds={config.ds.isoformat()}", tags=tags,
                     artifact_root=config.artifacts_uri)


def _log_gate(tracked, tmp: str, space: str, result, gate, manifest: dict) -> None:
    if tracked is None:
        return
    tracked.log_params({"space": space, "variant": manifest["variant"], "reorder": manifest["reorder"],
                        "m": manifest["m"], "ef_construction": manifest["ef_construction"], "count": manifest["count"],
                        "dimension": manifest["dimension"], "gate": asdict(gate)})
    for point in result.curve:
        tracked.log_metrics({"gate_recall": point["recall"], "gate_qps": point["qps"]}, step=point["ef_search"])
    tracked.log_metrics({k: v for k, v in {
        "recall_at_k": result.recall, "qps": result.qps, "ef_search": result.ef_search,
        "self_rank1": result.self_rank1, "reconstruct_max_error": result.reconstruct_max_error,
        "build_seconds": manifest["build_seconds"], "count": manifest["count"]}.items() if v is not None})
    tracked.set_tags({"gate.passed": str(result.passed).lower(),
                      "gate.failures": "; ".join(result.failures)[:4000] or "none"})
    plot = plot_recall_vs_ef(result.curve, Path(tmp) / f"{space}_recall_vs_ef.png", target=gate.target_recall,
                             selected=result.ef_search, title=f"{space} index {manifest['version']}")
    tracked.log_figure(plot)


def _log_published(tracked, tmp: str, store, ref, manifest: dict, moved: bool) -> None:
    path = Path(tmp) / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=str))
    tracked.log_artifact(path, "index")
    index_entry = manifest["files"]["index.faiss"]
    tracked.set_tags({"index.uri": store.version_uri(ref), "index.sha256": index_entry["sha256"],
                      "index.bytes": str(index_entry["size"]), "index.current": str(moved).lower()})


def rollback(index_uri: str, space: str, version: str) -> None:
    """Point ``space``'s ``CURRENT`` at an older complete version (the forced move)."""
    store = IndexStore(index_uri)
    ref = VersionRef.parse(space, version)
    store.fetch(ref)  # refuse a version whose files do not match its manifest
    store.switch_current(ref, force=True, reason="rollback")


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m jobs.publish_index", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", help="the partition to publish (required unless --rollback-to)")
    parser.add_argument("--space", action="append", choices=sorted(SPACE_TABLES),
                        help="a space to publish (repeatable; default: every space, pinnerformer when present)")
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--index-uri", default=settings.index_uri)
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri)
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--variant", choices=("flat", "sq8"), default="flat",
                        help="sq8: 8-bit scalar-quantized vectors for large corpora")
    parser.add_argument("--reorder", choices=REORDERS, default="rcm",
                        help="rcm: renumber the nodes for cache locality after the build (same graph, "
                             "about 1.2x the queries per second on 1M pins); none: insertion order")
    parser.add_argument("--gate-queries", type=int, default=2000)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--min-qps", type=float, default=500.0)
    parser.add_argument("--max-recall-drop", type=float, default=0.02)
    parser.add_argument("--ef-grid", default=",".join(map(str, DEFAULT_EF_GRID)))
    parser.add_argument("--count-tolerance", type=float, default=0.25)
    parser.add_argument("--retention-days", type=int, default=7)
    parser.add_argument("--run-id")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--rollback-to", metavar="ds=YYYY-MM-DD/RUN_ID",
                        help="force --space's CURRENT to this older version and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.rollback_to:
        if not args.space or len(args.space) != 1:
            parser.error("--rollback-to needs exactly one --space")
        rollback(args.index_uri, args.space[0], args.rollback_to)
        return
    if not args.ds:
        parser.error("--ds is required")
    gate = GateConfig(num_queries=args.gate_queries, target_recall=args.target_recall, min_qps=args.min_qps,
                      max_recall_drop=args.max_recall_drop,
                      ef_grid=tuple(int(x) for x in args.ef_grid.split(",")))
    results = run(PublishIndexConfig(
        ds=args.ds, lake_uri=args.lake_uri, index_uri=args.index_uri,
        tracking_uri=None if args.no_tracking else args.tracking_uri, artifacts_uri=settings.mlflow_artifacts_uri,
        spaces=tuple(args.space or SPACE_TABLES), require_all=bool(args.space), m=args.m,
        ef_construction=args.ef_construction, variant=args.variant, reorder=args.reorder, gate=gate,
        count_tolerance=args.count_tolerance, retention_days=args.retention_days, run_id=args.run_id,
        threads=args.threads))
    for r in results:
        print(json.dumps({"space": r.space, "status": r.status, "version": r.version, "current": r.current,
                          "pointer_moved": r.pointer_moved, "removed": r.removed, "seconds": round(r.seconds, 2),
                          "gate": r.manifest.get("gate")}, default=str))


if __name__ == "__main__":
    main()
