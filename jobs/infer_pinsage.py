"""Embed every pin of one ds with a trained PinSage model.

In: the ``champion`` version of the registered model ``pinsage`` (downloaded from the MLflow registry and
checked against its logged sha256 sums; or a local model directory with ``--model-dir``),
``pin_features`` and ``ppr_neighbors`` of ds. Inference always uses the champion, so a night whose
challenger loses still publishes fresh embeddings of the new day's pins with the serving model. Out: ``pin_embeddings`` ds=<ds> (pin_id, unit-norm
embedding, model_version = ``pinsage/<version>``) with a manifest whose inputs are the two partitions. Embeddings are computed
layer by layer over all pins (``embeddings.pinsage.inference.embed_all``), never one computation graph
per pin.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from embeddings.data.schemas import PIN_EMBEDDINGS, PIN_FEATURES
from embeddings.lake import Lake, Manifest, parse_ds
from embeddings.pinsage.data import load_pin_graph
from embeddings.pinsage.inference import DEFAULT_CHUNK_SIZE, embed_all
from embeddings.pinsage.model_dir import load_model_dir, model_version_of
from embeddings.pinsage.training import resolve_device
from embeddings.settings import Settings

log = logging.getLogger("jobs.infer_pinsage")

UNIT_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class InferPinSageConfig:
    """Args:
        lake_uri: the lake with the inputs and the output.
        ds: the day to embed.
        model_dir: a local PinSage model directory; None loads ``registered_model@alias`` from the registry.
        model_version: stamped on every row (default: ``<registered_model>/<version>`` for a registry model;
            for a directory its ``model_version`` metadata, else ``sha256:<12 hex of the weights>``).
        tracking_uri: the MLflow registry (needed without ``model_dir``).
        registered_model, alias: which registered version to load (default ``pinsage@champion``).
        chunk_size: targets per chunk (bounds memory to about chunk_size * T edges).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        max_missing_share: the largest share of pins allowed to lack a neighborhood row.
    """

    lake_uri: str
    ds: dt.date
    model_dir: str | None = None
    model_version: str | None = None
    tracking_uri: str | None = None
    registered_model: str = "pinsage"
    alias: str = "champion"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    device: str = "auto"
    max_missing_share: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if not 0 <= self.max_missing_share <= 1:
            raise ValueError(f"max_missing_share must be in [0, 1], got {self.max_missing_share}")
        if self.model_dir is None and not self.tracking_uri:
            raise ValueError("give a model_dir or a tracking_uri to load the registered model from")


@dataclass(frozen=True)
class InferResult:
    manifest: Manifest
    num_pins: int
    model_version: str
    seconds: float
    compute_seconds: float

    @property
    def pins_per_s(self) -> float:
        """Pins per second of the embedding computation alone (reading and writing excluded)."""
        return self.num_pins / max(self.compute_seconds, 1e-9)


def embeddings_table(pin_ids: np.ndarray, embeddings: np.ndarray, model_version: str) -> pa.Table:
    """The ``pin_embeddings`` rows: (P,) ids, (P, D) vectors -> an Arrow table."""
    dim = embeddings.shape[1]
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), dim)
    return pa.table({
        "pin_id": pa.array(pin_ids, type=pa.int64()),
        "embedding": vectors.cast(pa.list_(pa.float32())),
        "model_version": pa.repeat(pa.scalar(model_version, pa.string()), len(pin_ids)),
    })


def run(config: InferPinSageConfig) -> InferResult:
    """Embed every pin of ``config.ds`` and write ``pin_embeddings``."""
    started = time.perf_counter()
    lake = Lake(config.lake_uri)
    device = resolve_device(config.device)
    with tempfile.TemporaryDirectory() as tmp:
        if config.model_dir is None:
            model_dir, registry_version = fetch_registered(config, Path(tmp) / "model")
            version = config.model_version or f"{config.registered_model}/{registry_version}"
        else:
            model_dir = Path(config.model_dir)
            version = config.model_version or model_version_of(model_dir)
        model, model_config = load_model_dir(model_dir)
        return _embed_and_write(config, lake, device, model, model_config, model_dir, version, started)


def fetch_registered(config: InferPinSageConfig, dst: Path) -> tuple[Path, str]:
    """Download ``registered_model@alias`` (every file checked against its logged sha256).

    Raises:
        ModelVersionNotFound: no version has the alias (no model was ever promoted).
        ModelLoadError: the version's files are missing or corrupt (naming model, version and alias).
    """
    from embeddings.registry.models import load_model_dir as download_model_dir
    from embeddings.registry.models import resolve_version
    from embeddings.registry.tracking import connect

    client = connect(config.tracking_uri)
    mv = resolve_version(client, config.registered_model, alias=config.alias)
    model_dir = download_model_dir(client, config.registered_model, alias=None, version=str(mv.version), dst_path=dst)
    log.info("loaded %s@%s = version %s from %s", config.registered_model, config.alias, mv.version, config.tracking_uri)
    return model_dir, str(mv.version)


def _embed_and_write(config, lake, device, model, model_config, model_dir, version, started) -> InferResult:
    if model_config.id_dim:
        raise ValueError(
            f"model {version} in {model_dir} learned per-pin id vectors (id_dim={model_config.id_dim}, a benchmark "
            f"option): they are tied to the rows it was trained on, so it cannot embed "
            f"{lake.describe(PIN_FEATURES, config.ds)}"
        )
    graph, manifests = load_pin_graph(lake, config.ds, model_config.num_neighbors, 0, config.max_missing_share)
    if graph.feature_dim != model_config.in_dim:
        raise ValueError(
            f"{lake.describe(PIN_FEATURES, config.ds)} has {graph.feature_dim}-d features but model {version} in "
            f"{model_dir} expects in_dim={model_config.in_dim}; retrain it or rebuild the features"
        )
    log.info("embedding %d pins with %s (version %s) on %s", graph.num_pins, model_dir, version, device)
    compute_started = time.perf_counter()
    embeddings = embed_all(model.to(device), graph.features, graph.neighbors, graph.weights,
                           config.chunk_size, device)
    compute_seconds = time.perf_counter() - compute_started
    norms = np.linalg.norm(embeddings, axis=1)
    bad = ~np.isfinite(norms) | (np.abs(norms - 1.0) > UNIT_NORM_TOLERANCE)
    if bad.any():
        raise ValueError(
            f"model {version} produced {int(bad.sum())} embedding(s) that are not finite and unit-norm "
            f"for ds={config.ds}, e.g. pin_id {graph.pin_ids[bad][:10].tolist()}; refusing to publish them"
        )
    manifest = lake.write(
        PIN_EMBEDDINGS, embeddings_table(graph.pin_ids, embeddings, version), config.ds, inputs=manifests,
        extra={
            "model_version": version,
            "model_dir": config.model_dir and str(Path(config.model_dir).resolve()),
            "registered_model": None if config.model_dir else f"{config.registered_model}@{config.alias}",
            "embedding_dim": int(embeddings.shape[1]),
            "num_neighbors": model_config.num_neighbors,
            "pooling": model_config.pooling,
            "compute_seconds": round(compute_seconds, 3),
            **graph.stats,
        },
    )
    seconds = time.perf_counter() - started
    result = InferResult(manifest, graph.num_pins, version, seconds, compute_seconds)
    log.info("pin_embeddings ds=%s: %d pins in %.1f s (%.0f pins/s computing; %.1f s in all)", config.ds,
             graph.num_pins, compute_seconds, result.pins_per_s, seconds)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m jobs.infer_pinsage", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--model-dir", default=None, help="a local model directory instead of the registry")
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri)
    parser.add_argument("--registered-model", default="pinsage")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--model-version", default=None)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--device", default=settings.device)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(InferPinSageConfig(lake_uri=args.lake_uri, ds=args.ds, model_dir=args.model_dir,
                           model_version=args.model_version, tracking_uri=args.tracking_uri,
                           registered_model=args.registered_model, alias=args.alias, chunk_size=args.chunk_size, device=args.device))


if __name__ == "__main__":
    main()
