"""A trained PinSage model on disk: ``config.json`` + ``model.pt`` (a ``state_dict``; no pickled code).

    <model_dir>/config.json   {"format": ..., "model_config": PinSageConfig.to_dict(), "metadata": {...}}
    <model_dir>/model.pt      torch.save(model.state_dict()); loaded with weights_only=True

The registry logs this directory as an MLflow artifact and downloads it again to serve a version; the
model is rebuilt from ``model_config`` alone (``build_model``). ``metadata`` carries what training
recorded (ds, metrics, data fingerprint) and the weights' sha256, from which a default model version
is derived.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from embeddings.pinsage.model import PinSage, PinSageConfig, build_model

MODEL_DIR_FORMAT = "pinsage-state-dict/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model_dir(path: str | Path, model: PinSage, config: PinSageConfig,
                   metadata: dict[str, Any] | None = None) -> Path:
    """Write the model directory atomically (replacing one that is there).

    Args:
        path: the directory to create.
        model: the model whose ``state_dict`` is saved.
        config: its configuration (must be ``model.config``).
        metadata: JSON-serializable facts to keep with it (training metrics, ds, ...).

    Returns:
        The directory.
    """
    if model.config != config:
        raise ValueError(f"model was built for {model.config}, not {config}")
    final = Path(path)
    staging = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, staging / WEIGHTS_FILE)
        meta = dict(metadata or {})
        meta["weights_sha256"] = _sha256(staging / WEIGHTS_FILE)
        document = {"format": MODEL_DIR_FORMAT, "model_config": config.to_dict(), "metadata": meta}
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


def read_model_metadata(path: str | Path) -> tuple[PinSageConfig, dict[str, Any]]:
    """The configuration and metadata of a model directory, without loading weights.

    Raises:
        FileNotFoundError: no ``config.json`` in ``path``.
        ValueError: another format or a bad configuration.
    """
    config_file = Path(path) / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a PinSage model directory: {CONFIG_FILE} is missing")
    try:
        document = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_file} is not valid JSON: {exc}") from None
    if document.get("format") != MODEL_DIR_FORMAT:
        raise ValueError(f"{config_file} has format {document.get('format')!r}, expected {MODEL_DIR_FORMAT!r}")
    return PinSageConfig.from_dict(document["model_config"]), document.get("metadata", {})


def load_model_dir(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[PinSage, PinSageConfig]:
    """Rebuild the model from its configuration and load its weights (eval mode).

    Raises:
        FileNotFoundError: ``config.json`` or ``model.pt`` missing.
        ValueError: another format, a bad configuration, or weights that do not fit it.
    """
    config, _ = read_model_metadata(path)
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{path} is not a complete PinSage model directory: {WEIGHTS_FILE} is missing")
    model = build_model(config)
    state = torch.load(weights, map_location=map_location, weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit the configuration in {CONFIG_FILE}: {exc}") from None
    return model.eval(), config


def model_version_of(path: str | Path) -> str:
    """The version to stamp on embeddings: ``metadata['model_version']`` if set, else ``sha256:<12 hex>``."""
    _, metadata = read_model_metadata(path)
    if metadata.get("model_version"):
        return str(metadata["model_version"])
    return f"sha256:{metadata['weights_sha256'][:12]}"
