"""Model directories in the MLflow registry: log, register, alias, download, verify, load.

A trained model is a **directory** (for PinSage ``config.json`` + ``model.pt``, see
``embeddings.pinsage.model_dir``; for others ``save_state_dict_dir`` below): weights as a ``state_dict``
read back with ``torch.load(weights_only=True)``, a JSON configuration, and code that rebuilds the module.
Nothing is pickled: neither a ``python_model`` (cloudpickle) nor a full ``nn.Module``.

``log_model_dir`` logs the directory as an MLflow 3 *logged model* (linked to the run) laid out as::

    MLmodel                      flavor "embeddings_model_dir": loader, data dir, sha256 of every file;
                                 signature; input example info; metadata
    input_example.json           the input example (when given)
    requirements.txt             explicit pip requirements (when given; nothing is inferred)
    data/<the model directory>

``register_version`` makes it a version of a registered model (one per model: ``pinsage``, ...) with the
lineage tags and the alias ``challenger``; ``embeddings.registry.promotion`` moves ``champion``. Registry
stages are never used (deprecated). ``load_model_dir`` downloads a version by alias or number, checks
every file against the logged sha256 and returns the local ``data`` directory; ``load_model`` then calls
the loader named in ``MLmodel`` (``"module:function"``, restricted to this package) on it. A version that
cannot be loaded raises ``ModelLoadError`` naming the model, version and alias.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.artifacts
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.models.utils import _save_example  # the helper every MLflow flavor uses to write examples
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

FLAVOR = "embeddings_model_dir"
FLAVOR_FORMAT = 1
DATA_DIR = "data"
MLMODEL_FILE = "MLmodel"
CHAMPION = "champion"
CHALLENGER = "challenger"
LOADER_PACKAGES: tuple[str, ...] = ("embeddings.",)
"""Packages a loader or builder named in the registry may come from: a tampered entry cannot make the
loading process import and call arbitrary code (``os:system`` on the path)."""

STATE_DICT_FORMAT = "state-dict-dir/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"


class ModelLoadError(RuntimeError):
    """A registered model version cannot be downloaded, verified or loaded (the message names it)."""


class ModelVersionNotFound(LookupError):
    """No version of the registered model has the requested alias or number."""


def is_not_found(exc: MlflowException) -> bool:
    """Whether an MLflow error means "no such entity" (alias, version, registered model)."""
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_function(spec: str, allowed_packages: Sequence[str] = LOADER_PACKAGES) -> Callable[..., Any]:
    """Resolve ``"package.module:function"`` to the function, from an allowed package only.

    Raises:
        ValueError: not ``module:function``, or a module outside ``allowed_packages``.
        ImportError: the module or the function does not exist.
    """
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name.isidentifier():
        raise ValueError(f"expected 'package.module:function', got {spec!r}")
    if not module_name.startswith(tuple(allowed_packages)):
        raise ValueError(f"{spec!r} is outside the allowed packages {list(allowed_packages)}")
    module = importlib.import_module(module_name)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ImportError(f"{module_name} has no function {function_name!r} (from {spec!r})")
    return function


# ---- a generic state_dict model directory ----------------------------------------------------------


def save_state_dict_dir(
    path: str | Path,
    model: Any,
    config: Mapping[str, Any],
    builder: str,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``config.json`` (builder, config, metadata) + ``model.pt`` (the ``state_dict``), atomically.

    For models without a format of their own. ``builder`` names a function ``config dict -> nn.Module``
    (e.g. ``"embeddings.pinnerformer.model:build_from_config"``); ``load_state_dict_dir`` calls it.

    Args:
        path: the directory (replaced whole).
        model: an ``nn.Module``.
        config: JSON-serializable configuration the builder takes.
        builder: ``"module:function"``.
        metadata: JSON-serializable facts to keep (ds, metrics).
    """
    import torch

    document = {"format": STATE_DICT_FORMAT, "builder": builder, "config": dict(config),
                "metadata": dict(metadata or {})}
    text = json.dumps(document, indent=2, sort_keys=True)  # fails here, before writing, if not JSON
    final = Path(path)
    staging = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, staging / WEIGHTS_FILE)
        (staging / CONFIG_FILE).write_text(text)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def load_state_dict_dir(path: str | Path, map_location: str = "cpu",
                        builder_packages: Sequence[str] = LOADER_PACKAGES) -> Any:
    """Rebuild a module written by ``save_state_dict_dir`` (weights via ``torch.load(weights_only=True)``).

    Returns:
        The ``nn.Module`` in eval mode.

    Raises:
        FileNotFoundError: ``config.json`` or ``model.pt`` missing.
        ValueError: another format, or weights that do not fit the rebuilt module.
    """
    import torch

    path = Path(path)
    config_file, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    for file in (config_file, weights):
        if not file.is_file():
            raise FileNotFoundError(f"{path} is not a state_dict model directory: {file.name} is missing")
    document = json.loads(config_file.read_text())
    if document.get("format") != STATE_DICT_FORMAT:
        raise ValueError(f"{config_file} has format {document.get('format')!r}, expected {STATE_DICT_FORMAT!r}")
    module = import_function(document["builder"], builder_packages)(document["config"])
    state = torch.load(weights, map_location=map_location, weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit the module built by {document['builder']}: {exc}") from None
    return module.eval()


# ---- logging and registering ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedModelDir:
    """A model directory logged to a run.

    Attributes:
        model_id: the MLflow logged model's id.
        model_uri: ``models:/<model_id>``.
        artifact_location: where its artifacts are stored (the registered version's source).
        run_id: the run that produced it.
        loader: ``"module:function"`` that loads the directory.
        files: relative path -> sha256 of every file in the directory.
    """

    model_id: str
    model_uri: str
    artifact_location: str
    run_id: str
    loader: str
    files: Mapping[str, str]


def log_model_dir(
    client: MlflowClient,
    run_id: str,
    model_dir: str | Path,
    *,
    loader: str,
    name: str = "model",
    input_example: Any = None,
    output_example: Any = None,
    signature: ModelSignature | None = None,
    pip_requirements: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    loader_packages: Sequence[str] = LOADER_PACKAGES,
) -> LoggedModelDir:
    """Log a model directory as an MLflow logged model of the run (no pickled code).

    Args:
        client: from ``embeddings.registry.tracking.connect``.
        run_id: the training run.
        model_dir: the directory to log (every file in it, recursively).
        loader: ``"module:function"`` taking the directory's local path and returning the model, e.g.
            ``"embeddings.pinsage.model_dir:load_model_dir"``; checked importable now.
        name: the logged model's name.
        input_example: a numpy array or dict of arrays the model takes (saved with the model).
        output_example: what the model returns for it; with ``input_example`` infers the signature.
        signature: an explicit signature (wins over inference).
        pip_requirements: written to ``requirements.txt`` as given (e.g. ``["torch==2.13.0"]``); nothing
            is inferred, so no ``+cpu``/CUDA build is recorded by accident.
        metadata: JSON-serializable facts stored in ``MLmodel``.
        tags: tags of the logged model (e.g. the lineage).
        loader_packages: packages the loader may come from (``LOADER_PACKAGES``).

    Returns:
        What was logged (id, uri, file checksums).

    Raises:
        ValueError: ``model_dir`` is not a non-empty directory, or a bad loader.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"model directory {model_dir} does not exist or is not a directory")
    files = {p.relative_to(model_dir).as_posix(): sha256_file(p) for p in sorted(model_dir.rglob("*")) if p.is_file()}
    if not files:
        raise ValueError(f"model directory {model_dir} is empty; nothing to log")
    import_function(loader, loader_packages)  # fail now, not when serving
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id,
                                        tags={k: str(v) for k, v in (tags or {}).items()})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp)
            shutil.copytree(model_dir, local / DATA_DIR)
            mlmodel = Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id,
                            model_uuid=logged.model_id, metadata=dict(metadata) if metadata else None)
            if signature is None and input_example is not None:
                signature = infer_signature(input_example, output_example)
            mlmodel.signature = signature
            if input_example is not None:
                _save_example(mlmodel, input_example, str(local))
            if pip_requirements:
                (local / "requirements.txt").write_text("\n".join(pip_requirements) + "\n")
            mlmodel.add_flavor(FLAVOR, format=FLAVOR_FORMAT, loader=loader, data=DATA_DIR, files=files)
            mlmodel.save(str(local / MLMODEL_FILE))
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    log.info("logged model directory %s (%d files) as %s of run %s", model_dir, len(files), logged.model_id, run_id)
    return LoggedModelDir(logged.model_id, f"models:/{logged.model_id}", logged.artifact_location, run_id, loader,
                          files)


def register_version(
    client: MlflowClient,
    name: str,
    logged: LoggedModelDir,
    *,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    alias: str | None = CHALLENGER,
) -> str:
    """Register a logged model directory as a new version of ``name`` (created if new).

    Args:
        client: the registry client.
        name: the registered model (one per model family).
        logged: from ``log_model_dir``.
        tags: version tags, normally the run's lineage (``tracking.lineage_tags``).
        description: the version's description.
        alias: set on the new version (``challenger``); None sets none.

    Returns:
        The new version number, as a string.
    """
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not is_not_found(exc):
            raise
        client.create_registered_model(name, description=f"embeddings model {name} (aliases: champion, challenger)")
    version_tags = {k: str(v) for k, v in (tags or {}).items()}
    version_tags.update({"model.loader": logged.loader, "model.id": logged.model_id})
    # The source is the artifact location, not models:/<id>: MLflow 3.17 resolves a models:/ source through
    # the process-global tracking URI, not this client's (a TODO in its SqlAlchemyStore).
    mv = client.create_model_version(name, source=logged.artifact_location, run_id=logged.run_id,
                                     tags=version_tags, description=description, model_id=logged.model_id)
    if alias:
        set_alias(client, name, alias, mv.version)
    log.info("registered %s version %s from run %s", name, mv.version, logged.run_id)
    return str(mv.version)


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point ``alias`` of ``name`` at ``version`` (moving it from the version that had it)."""
    client.set_registered_model_alias(name, alias, str(version))
    log.info("%s@%s -> version %s", name, alias, version)


def resolve_version(client: MlflowClient, name: str, *, alias: str | None = None,
                    version: str | None = None) -> ModelVersion:
    """The model version named by ``alias`` or by ``version`` (exactly one of them).

    Raises:
        ModelVersionNotFound: no such alias, version or registered model.
    """
    if (alias is None) == (version is None):
        raise ValueError(f"give exactly one of alias and version (got alias={alias!r}, version={version!r})")
    which = f"alias {alias!r}" if alias is not None else f"version {version}"
    try:
        if alias is not None:
            # Read the alias map rather than get_model_version_by_alias: MLflow 3.17 reports a missing alias
            # as INVALID_PARAMETER_VALUE, indistinguishable from a malformed request.
            aliases = client.get_registered_model(name).aliases
            if alias not in aliases:
                raise ModelVersionNotFound(f"registered model {name!r} has no {which} "
                                           f"(aliases: {dict(sorted(aliases.items())) or 'none'})")
            version = aliases[alias]
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if is_not_found(exc):
            raise ModelVersionNotFound(f"registered model {name!r} has no {which} ({exc.message})") from exc
        raise


def newest_version_tagged(client: MlflowClient, name: str, key: str, value: str) -> ModelVersion | None:
    """The highest-numbered version of ``name`` whose tag ``key`` equals ``value``; None if there is none
    (also when the registered model does not exist yet)."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and tags.`{key}` = '{value}'")
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise
    return max(versions, key=lambda v: int(v.version)) if versions else None


def _describe(name: str, mv: ModelVersion, alias: str | None) -> str:
    return f"registered model {name!r} version {mv.version}" + (f" (alias {alias!r})" if alias else "")


def _fetch(client: MlflowClient, name: str, alias: str | None, version: str | None,
           dst_path: str | Path | None) -> tuple[Path, dict[str, Any], str, Path | None]:
    """Download and verify; returns (data dir, flavor, description, the temporary directory we made)."""
    mv = resolve_version(client, name, alias=alias, version=version)
    what = _describe(name, mv, alias)
    if dst_path is not None and Path(dst_path).exists() and any(Path(dst_path).iterdir()):
        raise ValueError(f"download directory {dst_path} is not empty; give a new or empty one to load {what}")
    made = None if dst_path is not None else Path(tempfile.mkdtemp(prefix=f"{name}-v{mv.version}-"))
    dst = Path(dst_path) if dst_path is not None else made
    try:
        dst.mkdir(parents=True, exist_ok=True)
        return (*_download_and_verify(client, name, mv, what, dst), what, made)
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def _download_and_verify(client: MlflowClient, name: str, mv: ModelVersion, what: str,
                         dst: Path) -> tuple[Path, dict[str, Any]]:
    try:
        uri = client.get_model_version_download_uri(name, mv.version)
    except MlflowException as exc:
        raise ModelLoadError(f"{what}: cannot resolve where its artifacts are: {exc}") from exc
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                         tracking_uri=client.tracking_uri))
    except Exception as exc:  # noqa: BLE001 - any download failure makes the version unloadable
        raise ModelLoadError(f"{what}: cannot download its artifacts from {uri}: {exc}") from exc
    if not (local / MLMODEL_FILE).is_file():
        raise ModelLoadError(f"{what}: {uri} has no {MLMODEL_FILE} file (missing or not logged by log_model_dir)")
    try:
        flavor = Model.load(str(local / MLMODEL_FILE)).flavors.get(FLAVOR)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{what}: {MLMODEL_FILE} in {uri} cannot be read: {exc}") from exc
    if not flavor:
        raise ModelLoadError(f"{what}: {MLMODEL_FILE} in {uri} has no {FLAVOR!r} flavor; not logged by log_model_dir")
    data = local / flavor.get("data", DATA_DIR)
    for relative, expected in flavor["files"].items():
        file = data / relative
        if not file.is_file():
            raise ModelLoadError(f"{what}: file {relative} of the model directory is missing from {uri}")
        actual = sha256_file(file)
        if actual != expected:
            raise ModelLoadError(f"{what}: file {relative} in {uri} is corrupt (sha256 {actual[:12]}..., logged "
                                 f"{expected[:12]}...)")
    return data, flavor


def load_model_dir(
    client: MlflowClient,
    name: str,
    *,
    alias: str | None = CHAMPION,
    version: str | None = None,
    dst_path: str | Path | None = None,
) -> Path:
    """Download a registered version's model directory and verify every file against its sha256.

    Args:
        client: the registry client.
        name: the registered model.
        alias: the alias to load (default ``champion``); pass ``alias=None, version="3"`` for a number.
        version: a version number instead of an alias.
        dst_path: a new or empty directory to download to (default: a new temporary directory, left for
            the caller to remove).

    Returns:
        The local model directory (as it was given to ``log_model_dir``).

    Raises:
        ModelVersionNotFound: no version with that alias or number.
        ModelLoadError: artifacts missing, unreadable or corrupt (naming the model, version and alias).
    """
    data, _, _, _ = _fetch(client, name, alias, version, dst_path)
    return data


def load_model(
    client: MlflowClient,
    name: str,
    *,
    alias: str | None = CHAMPION,
    version: str | None = None,
    dst_path: str | Path | None = None,
    loader_packages: Sequence[str] = LOADER_PACKAGES,
    **loader_kwargs: Any,
) -> Any:
    """Download, verify, and load a registered version with the loader recorded in its ``MLmodel``.

    Args:
        client, name, alias, version: see ``load_model_dir``.
        dst_path: a new or empty directory to download to, kept; by default a temporary directory removed
            once the loader returns (a loader must read what it needs before returning).
        loader_packages: packages the recorded loader may come from (``LOADER_PACKAGES``).
        loader_kwargs: passed to the loader (e.g. ``map_location="cuda"``).

    Returns:
        Whatever the loader returns (for PinSage: ``(model, config)``).

    Raises:
        ModelVersionNotFound, ModelLoadError: as ``load_model_dir``; also when the loader fails.
    """
    data, flavor, what, made = _fetch(client, name, alias, version, dst_path)
    try:
        loader = import_function(flavor["loader"], loader_packages)
        return loader(data, **loader_kwargs)
    except Exception as exc:  # noqa: BLE001 - name the version whatever went wrong
        raise ModelLoadError(f"{what}: loader {flavor.get('loader')!r} failed on {data}: {exc}") from exc
    finally:
        if made is not None:  # the loader has read what it needs (torch.load reads the whole file)
            shutil.rmtree(made, ignore_errors=True)
