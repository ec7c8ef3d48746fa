"""A trained PinnerFormer on disk: ``config.json`` + ``model.pt`` (a ``state_dict``; no pickled code).

    <model_dir>/config.json   {"format": ..., "model_config": PinnerFormerConfig.to_dict(), "metadata": {...}}
    <model_dir>/model.pt      torch.save(model.state_dict()); loaded with weights_only=True

The pin table (the PinSage embeddings a PinSage-mode model reads its pins from) is not part of the
``state_dict``: it is the ``pin_embeddings`` partition of the PinSage version recorded in
``metadata["pinsage_model_version"]``, attached again by whoever loads the model
(``PinnerFormer.attach_pin_table``; ``load_pin_table`` reads it, sorted by pin id, so that pin row ``r`` is
the same pin in training, evaluation and inference). The registry logs this directory with the loader
``embeddings.pinnerformer.model_dir:load_model_dir`` (``LOADER``; ``embeddings.registry.models.log_model_dir``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embeddings.data.schemas import PIN_EMBEDDINGS
from embeddings.lake import Lake, Manifest
from embeddings.pinnerformer.model import PinnerFormer, PinnerFormerConfig, build_model

MODEL_DIR_FORMAT = "pinnerformer-state-dict/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
LOADER = "embeddings.pinnerformer.model_dir:load_model_dir"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model_dir(path: str | Path, model: PinnerFormer, metadata: dict[str, Any] | None = None) -> Path:
    """Write the model directory atomically (replacing one that is there).

    Args:
        path: the directory to create.
        model: the model whose ``state_dict`` (without the pin table) and ``config`` are saved.
        metadata: JSON-serializable facts to keep with it (ds, PinSage version, training history, ...).

    Returns:
        The directory.

    Raises:
        TypeError: metadata that is not JSON-serializable (nothing is written).
    """
    document = {"format": MODEL_DIR_FORMAT, "model_config": model.config.to_dict(), "metadata": dict(metadata or {})}
    json.dumps(document)  # fail here, before writing, if not JSON
    final = Path(path)
    staging = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, staging / WEIGHTS_FILE)
        document["metadata"]["weights_sha256"] = _sha256(staging / WEIGHTS_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def read_model_metadata(path: str | Path) -> tuple[PinnerFormerConfig, dict[str, Any]]:
    """The configuration and metadata of a model directory, without loading weights.

    Raises:
        FileNotFoundError: no ``config.json`` in ``path``.
        ValueError: another format or a bad configuration.
    """
    config_file = Path(path) / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a PinnerFormer model directory: {CONFIG_FILE} is missing")
    try:
        document = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_file} is not valid JSON: {exc}") from None
    if document.get("format") != MODEL_DIR_FORMAT:
        raise ValueError(f"{config_file} has format {document.get('format')!r}, expected {MODEL_DIR_FORMAT!r}")
    return PinnerFormerConfig.from_dict(document["model_config"]), document.get("metadata", {})


def load_model_dir(path: str | Path,
                   map_location: str | torch.device = "cpu") -> tuple[PinnerFormer, PinnerFormerConfig]:
    """Rebuild the model from its configuration and load its weights (eval mode, no pin table attached).

    Raises:
        FileNotFoundError: ``config.json`` or ``model.pt`` missing.
        ValueError: another format, a bad configuration, or weights that do not fit it.
    """
    config, _ = read_model_metadata(path)
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{path} is not a complete PinnerFormer model directory: {WEIGHTS_FILE} is missing")
    model = build_model(config)
    state = torch.load(weights, map_location=map_location, weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit the configuration in {CONFIG_FILE}: {exc}") from None
    return model.eval(), config


# ---- the pin table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinTable:
    """The PinSage embeddings a PinSage-mode model reads its pins from (``pin_embeddings`` of one ds).

    Attributes:
        pin_ids: (P,) int64 pin ids, ascending: pin row ``r`` is ``pin_ids[r]``.
        vectors: (P, d) float32 PinSage embeddings, aligned with ``pin_ids``.
        model_version: the PinSage version that produced them (``pinsage/<N>``).
        manifest: the partition's manifest (lineage).
    """

    pin_ids: np.ndarray
    vectors: np.ndarray
    model_version: str
    manifest: Manifest

    @property
    def num_pins(self) -> int:
        return len(self.pin_ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def load_pin_table(lake: Lake, ds: dt.date | str) -> PinTable:
    """``pin_embeddings`` of ds as a pin table, sorted by pin id.

    Raises:
        PartitionMissingError: no such partition (the lake's message names it).
        ValueError: an empty partition, rows of several PinSage versions, embeddings of unequal length or
            with NaN/Inf (each names the partition).
    """
    where = lake.describe(PIN_EMBEDDINGS, ds)
    manifest = lake.read_manifest(PIN_EMBEDDINGS, ds)
    table = lake.read(PIN_EMBEDDINGS, ds, columns=["pin_id", "embedding", "model_version"])
    if not table.num_rows:
        raise ValueError(f"{where} has no rows; PinnerFormer needs the PinSage embedding of every pin")
    versions = sorted(set(table.column("model_version").to_pylist()))
    if len(versions) != 1:
        raise ValueError(f"{where} mixes PinSage versions {versions}; a model reads one version's pin table")
    pin_ids = table.column("pin_id").to_numpy().astype(np.int64)
    order = np.argsort(pin_ids, kind="stable")
    if len(pin_ids) > 1 and (np.diff(pin_ids[order]) == 0).any():
        raise ValueError(f"{where} has duplicate pin ids")
    column = table.column("embedding").combine_chunks()
    lengths = np.unique(column.value_lengths().to_numpy(zero_copy_only=False))
    if len(lengths) != 1 or lengths[0] == 0:
        raise ValueError(f"{where} has embeddings of lengths {lengths.tolist()}; expected one positive length")
    vectors = column.flatten().to_numpy().astype(np.float32).reshape(len(pin_ids), int(lengths[0]))[order]
    if not np.isfinite(vectors).all():
        raise ValueError(f"{where} has NaN or Inf embeddings in {int((~np.isfinite(vectors).all(axis=1)).sum())} rows")
    return PinTable(pin_ids[order], vectors, versions[0], manifest)
