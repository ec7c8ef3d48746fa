"""Train PinnerFormer for one ds.

In: ``user_sequences`` of ds (``jobs.build_sequences``: one timeline per user, cut at ``cutoff_ts`` = the
end of ds minus ``label_days``; the users of split ``train`` train, those of ``valid`` early-stop on the
recall@10 of their future positives) and ``pin_embeddings`` of ds (the champion PinSage's output: the pin
table the model reads its pins from; its ``model_version`` is the PinSage version consumed).
Out: a model directory (``config.json`` + ``model.pt``, see ``embeddings.pinnerformer.model_dir``) with the
training metrics and the PinSage version in its metadata, and a checkpoint to resume from. With a tracking
URI (the default under the DAG), the MLflow store is checked before any training, and the run is logged to
the experiment ``pinnerformer`` (parameters, per-epoch metrics, the loss curve, lineage: the input
partitions and the PinSage version) and the model directory registered as a new version of the
registered model ``pinnerformer`` with the alias ``challenger`` and the tag ``pinsage_model_version``;
``jobs.evaluate_pinnerformer`` then decides whether it becomes ``champion``. A rerun for the same ds with
the same inputs, code and settings finds the version it registered (tag ``training.fingerprint``) and
registers nothing new.

Across processes: ``torchrun --nproc_per_node W -m jobs.train_pinnerformer --ds ...`` trains with
DistributedDataParallel (``embeddings.pinnerformer.distributed``: gloo on CPU, NCCL on CUDA with device
``LOCAL_RANK``; the in-batch negatives are gathered from every process). Every process loads the same
inputs and trains; ``--batch-size`` is per process, so the global batch is W x batch_size. Rank 0 alone
checks the MLflow store (before anything is read; the others stop too when it fails), decides whether the
fingerprint was already registered (every process then skips together), writes the model directory, logs
and registers; the other ranks return without a registered version. W is recorded in the run's params
and the model directory's metadata (``world_size``) and enters the training fingerprint when > 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from embeddings.data.schemas import USER_SEQUENCES
from embeddings.lake import Lake, code_version, parse_ds
from embeddings.pinnerformer.data import SequenceOptions, UserSequences
from embeddings.pinnerformer.distributed import destroy_process_group, init_process_group, torchrun_env, world
from embeddings.pinnerformer.lake import read_user_sequences, sequences_from_table
from embeddings.pinnerformer.loss import NEGATIVES, OBJECTIVES
from embeddings.pinnerformer.model import PinnerFormer, PinnerFormerConfig, build_model
from embeddings.pinnerformer.model_dir import LOADER, PinTable, load_pin_table, save_model_dir
from embeddings.pinnerformer.training import TrainingOptions, train
from embeddings.settings import Settings

log = logging.getLogger("jobs.train_pinnerformer")

REGISTERED_MODEL = EXPERIMENT = "pinnerformer"
FINGERPRINT_TAG = "training.fingerprint"
PINSAGE_VERSION_TAG = "pinsage_model_version"
DEFAULT_LABEL_DAYS = 14.0
# Small enough for the demo (5,000 synthetic users, 20,000 pins, 30 days) on 2 cores in a few minutes;
# the paper's sizes (M=256, d=256, 4+ layers) are flags away.
# Measured on the demo lake (user_sequences of build_sequences, 20,000 pins, 64-d stand-in PinSage vectors) with
# one torch thread: ~9 s per epoch, early stopping after about 8 epochs, valid recall@10 0.055.
DEFAULT_TRAINING = TrainingOptions(batch_size=64, learning_rate=5e-3, num_random_negatives=512, num_positions=16,
                                   num_epochs=8, patience=2, valid_mode="window", eval_k=10)

T = TypeVar("T")


@dataclass(frozen=True)
class TrainPinnerFormerConfig:
    """Args:
        lake_uri: the lake with the inputs.
        ds: the day whose ``user_sequences`` and ``pin_embeddings`` train the model.
        model_dir: where the trained model directory is written (replaced whole).
        checkpoint_path: the training checkpoint (default ``<model_dir>.checkpoint.pt`` beside it).
        resume: continue from the checkpoint when it exists.
        embedding_dim, model_dim, num_layers, num_heads, ff_dim, dropout: the model (``PinnerFormerConfig``).
        max_length: M, the latest input actions a user is embedded from (at most the table's M).
        window_days: K, the future window of the all-action objectives (training labels).
        max_valid_users: validation users ranked each epoch for early stopping (a seeded sample; 0 = all).
        device: ``auto`` (CUDA when present, with bf16 autocast), ``cpu`` or ``cuda[:N]``.
        num_threads: torch's CPU threads (0: torch's default, one per core). On a small machine shared with
            other tasks, 1 is much faster: with 2 threads on 2 cores busy with other jobs, a step took about 40
            times longer (measured).
        training: objective, negatives, optimization, batching (``TrainingOptions``; ``valid_mode`` window).
        tracking_uri: the MLflow tracking/registry store to log and register in (None: neither).
        artifact_root: where a new experiment keeps its artifacts (``Settings.mlflow_artifacts_uri``).
        registered_model: the registered model's name.
    """

    lake_uri: str
    ds: dt.date
    model_dir: str
    checkpoint_path: str | None = None
    resume: bool = True
    embedding_dim: int = 64
    model_dim: int = 64
    num_layers: int = 2
    num_heads: int = 2
    ff_dim: int = 256
    dropout: float = 0.1
    max_length: int = 64
    window_days: float = 28.0
    max_valid_users: int = 2000
    device: str = "auto"
    num_threads: int = 0
    training: TrainingOptions = field(default_factory=lambda: DEFAULT_TRAINING)
    tracking_uri: str | None = None
    artifact_root: str | None = None
    registered_model: str = REGISTERED_MODEL

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        for name in ("embedding_dim", "model_dim", "num_layers", "num_heads", "ff_dim", "max_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.model_dim % self.num_heads:
            raise ValueError(f"model_dim ({self.model_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.window_days <= 0 or self.max_valid_users < 0 or self.num_threads < 0:
            raise ValueError(f"window_days must be positive, max_valid_users and num_threads >= 0, got "
                             f"{self.window_days}, {self.max_valid_users} and {self.num_threads}")

    @property
    def resolved_checkpoint_path(self) -> Path:
        if self.checkpoint_path:
            return Path(self.checkpoint_path)
        model_dir = Path(self.model_dir)
        return model_dir.with_name(f"{model_dir.name}.checkpoint.pt")

    def model_config(self, pin_dim: int) -> PinnerFormerConfig:
        return PinnerFormerConfig(
            pin_dim=pin_dim, model_dim=self.model_dim, embedding_dim=self.embedding_dim, num_layers=self.num_layers,
            num_heads=self.num_heads, ff_dim=self.ff_dim, dropout=self.dropout, max_length=self.max_length,
            pin_hidden_dim=max(self.model_dim, self.embedding_dim),
        )


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced (``model`` is None when a registered version was found instead).

    Under torchrun every process returns one; only rank 0's names the version registered or found and the run
    (``registered_version`` and ``run_id`` are None on the other ranks).
    """

    model: PinnerFormer | None
    model_config: PinnerFormerConfig
    config: TrainPinnerFormerConfig
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    model_dir: Path
    checkpoint_path: Path
    num_train_users: int
    num_valid_users: int
    pinsage_model_version: str
    users_per_s: float
    queries_per_s: float
    seconds: float
    registered_version: str | None = None
    run_id: str | None = None
    world_size: int = 1

    @property
    def best_metrics(self) -> dict[str, float]:
        """The history entry of the epoch whose weights were kept (empty if no epoch finished)."""
        return next((h for h in self.history if h["epoch"] == self.best_epoch), {})


@dataclass(frozen=True)
class TrainingInputs:
    """The sequences and the pin table of one ds, with what they were read from."""

    train: UserSequences
    valid: UserSequences
    pins: PinTable
    label_days: float
    manifests: list
    stats: dict


def label_days_of(manifest) -> float:
    """The future window of a ``user_sequences`` partition (its manifest's ``label_days``, else 14)."""
    return float((manifest.extra or {}).get("label_days") or DEFAULT_LABEL_DAYS)


def sample_rows(table, max_rows: int, seed: int):
    """At most ``max_rows`` rows of ``table`` (a seeded sample, in table order); all when 0 or fewer."""
    if not max_rows or table.num_rows <= max_rows:
        return table
    keep = np.sort(np.random.default_rng(seed).choice(table.num_rows, max_rows, replace=False))
    return table.take(keep)


def load_training_inputs(lake: Lake, config: TrainPinnerFormerConfig) -> TrainingInputs:
    """Read ``user_sequences`` and ``pin_embeddings`` of ds and build the train / valid sequences.

    Raises:
        PartitionMissingError: either partition is missing (named, with the job that writes it).
        ValueError: no training user or no validation user with a future positive.
    """
    table = read_user_sequences(lake, config.ds)
    seq_manifest = lake.read_manifest(USER_SEQUENCES, config.ds)
    pins = load_pin_table(lake, config.ds)
    label_days = label_days_of(seq_manifest)
    where = lake.describe(USER_SEQUENCES, config.ds)
    rows = {name: table.filter(pc.equal(table.column("split"), pa.scalar(name))) for name in ("train", "valid")}
    train_seqs, _ = sequences_from_table(rows["train"], pins.pin_ids, mode="train", options=SequenceOptions(
        max_length=config.max_length, window_days=config.window_days))
    valid_rows = sample_rows(rows["valid"], config.max_valid_users, config.training.seed)
    valid_seqs, _ = sequences_from_table(valid_rows, pins.pin_ids, mode="eval", options=SequenceOptions(
        max_length=config.max_length, window_days=label_days))
    if train_seqs.num_users == 0:
        raise ValueError(f"{where} has no training user with at least 2 input actions ({rows['train'].num_rows} "
                         f"rows of split train); nothing to train PinnerFormer on")
    if valid_seqs.future_matrix("window").nnz == 0:
        raise ValueError(f"{where}: no validation user has a positive action after the cutoff "
                         f"({rows['valid'].num_rows} rows of split valid); early stopping needs some")
    stats = {
        "users": table.num_rows, "train_rows": rows["train"].num_rows, "valid_rows": rows["valid"].num_rows,
        "train_users": train_seqs.num_users, "valid_users": valid_seqs.num_users, "pins": pins.num_pins,
        "pin_dim": pins.dim, "label_days": label_days,
        **{f"train.{k}": v for k, v in train_seqs.counts.as_dict().items()},
        **{f"valid.{k}": v for k, v in valid_seqs.counts.as_dict().items()},
    }
    log.info("PinnerFormer inputs for ds=%s: %s", config.ds, stats)
    return TrainingInputs(train_seqs, valid_seqs, pins, label_days, [seq_manifest, pins.manifest], stats)


def data_fingerprint(inputs: TrainingInputs) -> str:
    """sha256 (16 hex) of the training and validation sequences and of the pin table."""
    h = hashlib.sha256()
    for seqs in (inputs.train, inputs.valid):
        for array in (seqs.user_ids, seqs.ptr, seqs.input_start, seqs.input_end, seqs.pins, seqs.actions,
                      seqs.surfaces, seqs.duration_s, seqs.ts, seqs.positive):
            h.update(np.ascontiguousarray(array).tobytes())
        h.update(np.asarray([seqs.num_pins, seqs.window_s], np.int64).tobytes())
    h.update(inputs.pins.pin_ids.tobytes())
    h.update(inputs.pins.vectors.tobytes())
    h.update(inputs.pins.model_version.encode())
    return h.hexdigest()[:16]


def training_fingerprint(config: TrainPinnerFormerConfig, model_config: PinnerFormerConfig, data: str,
                         world_size: int = 1) -> str:
    """sha256 (16 hex) of what determines the trained weights: inputs, model, options, code, ds, and the number
    of processes when more than one (the global batch is ``world_size * batch_size``; a single process's
    fingerprint is the one it had before torchrun runs existed)."""
    document = {
        "ds": config.ds.isoformat(), "data": data, "model": model_config.to_dict(),
        "training": config.training.to_dict(), "window_days": config.window_days,
        "max_valid_users": config.max_valid_users, "code_version": code_version(),
    }
    if world_size > 1:
        document["world_size"] = world_size
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_example(seqs: UserSequences, num_users: int = 2) -> dict[str, np.ndarray]:
    """The model's input for the first users of ``seqs``: right-padded tokens (pins are rows of the pin table)."""
    from embeddings.pinnerformer.data import collate_tokens

    tokens = collate_tokens(seqs, np.arange(min(num_users, seqs.num_users)))
    example = {f.name: getattr(tokens, f.name).numpy() for f in dataclasses.fields(tokens)}
    example["duration_s"] = np.nan_to_num(example["duration_s"], nan=-1.0)  # JSON has no NaN; -1 = unknown
    return example


def model_signature(example: dict[str, np.ndarray], embedding_dim: int):
    """The signature: (batch, length) token tensors of any length in, (batch, embedding_dim) user embeddings out
    (inferred from the example, the length would be fixed to the example's)."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    inputs = Schema([TensorSpec(value.dtype, (-1, -1), key) for key, value in example.items()])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, embedding_dim), "user_embedding")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def agree(what: str, step: Callable[[], T], rank: int, world_size: int) -> T | None:
    """Run ``step`` on this process and stop every process when it fails on any (a collective under torchrun).

    Without it, a process whose step raised would exit while the others wait in the next collective until the
    process group's timeout. The processes exchange whether their step raised: one that raised re-raises its
    error, the others raise a RuntimeError naming the failed ranks and their errors.

    Raises:
        RuntimeError: ``step`` failed on another rank (``what`` and the ranks' errors named).
    """
    if world_size == 1:
        return step()
    value, error = None, None
    try:
        value = step()
    except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks have heard of it
        error = exc
    errors: list[str | None] = [None] * world_size
    torch.distributed.all_gather_object(errors, None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = {r: message for r, message in enumerate(errors) if message is not None}
    if failed:
        raise RuntimeError(f"{what} failed on rank(s) {sorted(failed)} of {world_size}: {failed}; rank {rank} stops "
                           "too")
    return value


def run(config: TrainPinnerFormerConfig) -> TrainResult:
    """Load the inputs of ``config.ds``, train, write the model directory, and register it.

    Under torchrun (``WORLD_SIZE`` > 1) this process joins the process group (gloo on CPU, NCCL on CUDA with
    device ``LOCAL_RANK``), trains its share of each global batch of ``WORLD_SIZE * batch_size`` users, and
    leaves the group at the end, also on error. Rank 0 alone connects to MLflow, writes the model directory,
    logs and registers (module docstring).

    Raises:
        TrackingStoreUnavailable: the MLflow store is unreachable (before reading or training anything; under
            torchrun on rank 0, the other ranks raising RuntimeError).
        PartitionMissingError: ``user_sequences`` or ``pin_embeddings`` of ds is missing.
        FloatingPointError: a non-finite loss or gradient (the library names the step; a checkpoint is kept).
        RuntimeError: ``max_steps`` stopped the run before an epoch ended; under torchrun, another rank failed.
    """
    from embeddings.pinsage.training import resolve_device

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    env = torchrun_env()
    if env is None or env.world_size == 1 or world()[1] > 1:
        # One process, or a process group its caller manages (and leaves).
        return _run(config, device)
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank)  # one GPU per process, whatever --device named
    init_process_group(env, backend="nccl" if device.type == "cuda" else "gloo")
    try:
        return _run(config, device)
    finally:
        destroy_process_group()


def _run(config: TrainPinnerFormerConfig, device: torch.device) -> TrainResult:
    """``run`` in this process's process group (none: one process)."""
    started = time.perf_counter()
    rank, world_size = world()
    client = None
    if config.tracking_uri:
        from embeddings.registry.models import newest_version_tagged
        from embeddings.registry.tracking import connect

        # Fails now, not after training; rank 0 alone connects (the others register nothing), and agree() stops
        # the others when it fails.
        client = agree("connecting to the MLflow store", lambda: connect(config.tracking_uri) if rank == 0 else None,
                       rank, world_size)
    lake = Lake(config.lake_uri)
    opts = config.training
    inputs = agree(f"loading the inputs of ds={config.ds}", lambda: load_training_inputs(lake, config), rank,
                   world_size)
    model_config = config.model_config(inputs.pins.dim)
    data = data_fingerprint(inputs)
    fingerprint = training_fingerprint(config, model_config, data, world_size)
    pinsage_version = inputs.pins.model_version
    existing = None
    if config.tracking_uri:  # not ``client``: every rank must take part in the collectives below
        def find_existing() -> tuple[str, str] | None:
            if rank != 0:
                return None
            found = newest_version_tagged(client, config.registered_model, FINGERPRINT_TAG, fingerprint)
            return (str(found.version), found.run_id) if found else None

        existing = agree("looking up the training fingerprint", find_existing, rank, world_size)
        if world_size > 1:  # rank 0 decides; every process skips (or trains) together
            decision = [existing]
            torch.distributed.broadcast_object_list(decision, src=0)
            existing = decision[0]
    if existing is not None:
        version, run_id = existing
        if rank == 0:
            log.info("%s version %s was already trained on these inputs with this code and these settings "
                     "(tag %s=%s); not training again", config.registered_model, version, FINGERPRINT_TAG,
                     fingerprint)
        return TrainResult(
            model=None, model_config=model_config, config=config, history=[], best_epoch=0, stopped_early=False,
            model_dir=Path(config.model_dir), checkpoint_path=config.resolved_checkpoint_path,
            num_train_users=inputs.train.num_users, num_valid_users=inputs.valid.num_users,
            pinsage_model_version=pinsage_version, users_per_s=0.0, queries_per_s=0.0,
            seconds=time.perf_counter() - started, registered_version=version if rank == 0 else None,
            run_id=run_id if rank == 0 else None, world_size=world_size,
        )
    log.info("training PinnerFormer on %s%s: %d train / %d valid users, %d pins of %s, %s, %s", device,
             f" (rank {rank} of {world_size}, global batch {world_size * opts.batch_size})" if world_size > 1 else "",
             inputs.train.num_users, inputs.valid.num_users, inputs.pins.num_pins, pinsage_version, model_config, opts)
    model = build_model(model_config)
    model.attach_pin_table(torch.from_numpy(inputs.pins.vectors))
    outcome = train(model, inputs.train, opts, valid=inputs.valid, device=device,
                    checkpoint_path=config.resolved_checkpoint_path, resume=config.resume)
    if outcome.interrupted:
        raise RuntimeError(f"training for ds={config.ds} stopped after {opts.max_steps} steps (max_steps) before an "
                           f"epoch ended; the checkpoint {config.resolved_checkpoint_path} resumes it")
    metadata = {
        "ds": config.ds.isoformat(),
        "lake_uri": config.lake_uri,
        "inputs": [asdict(m.as_input()) for m in inputs.manifests],
        PINSAGE_VERSION_TAG: pinsage_version,
        "pin_table": {"pins": inputs.pins.num_pins, "dim": inputs.pins.dim},
        "data_fingerprint": data,
        "code_version": code_version(),
        "training_options": opts.to_dict(),
        "window_days": config.window_days,
        "label_days": inputs.label_days,
        "history": outcome.history,
        "best_epoch": outcome.best_epoch,
        "stopped_early": outcome.stopped_early,
        "input_stats": inputs.stats,
        "users_per_s": outcome.users_per_s,
        "queries_per_s": outcome.queries_per_s,
        "device": str(device),
        "world_size": world_size,
        "training_fingerprint": fingerprint,
    }
    result = TrainResult(
        model=outcome.model, model_config=model_config, config=config, history=outcome.history,
        best_epoch=outcome.best_epoch, stopped_early=outcome.stopped_early, model_dir=Path(config.model_dir),
        checkpoint_path=config.resolved_checkpoint_path, num_train_users=inputs.train.num_users,
        num_valid_users=inputs.valid.num_users, pinsage_model_version=pinsage_version,
        users_per_s=outcome.users_per_s, queries_per_s=outcome.queries_per_s,
        seconds=time.perf_counter() - started, world_size=world_size,
    )
    if rank != 0:  # every process holds the same weights; rank 0 writes and registers them
        return result
    model_dir = save_model_dir(config.model_dir, outcome.model.cpu(), metadata)
    seconds = time.perf_counter() - started
    log.info("wrote %s (best epoch %d, %.0f users/s) in %.0f s", model_dir, outcome.best_epoch, outcome.users_per_s,
             seconds)
    result = dataclasses.replace(result, model_dir=model_dir, seconds=seconds)
    if client is not None:
        version, run_id = register(client, result, inputs, metadata)
        result = dataclasses.replace(result, registered_version=version, run_id=run_id)
    return result


def manifest_refs(lake_uri: str, manifests) -> dict[str, str]:
    """Input name -> ``<partition uri> rows=<n> created=<time>`` (what a lineage tag records)."""
    return {m.table: f"{lake_uri.rstrip('/')}/{m.table}/ds={m.ds} rows={m.row_count} created={m.created_at}"
            for m in manifests}


def register(client, result: TrainResult, inputs: TrainingInputs, metadata: dict) -> tuple[str, str]:
    """Log the run to the ``pinnerformer`` experiment and register the model directory as a new version.

    Returns:
        (the new version number, the run id).
    """
    from importlib.metadata import version as package_version

    from embeddings.eval.plots import plot_loss_curves
    from embeddings.registry.models import log_model_dir, register_version
    from embeddings.registry.tracking import lineage_tags, start_run

    config = result.config
    lineage = lineage_tags(ds=config.ds.isoformat(), input_manifests=manifest_refs(config.lake_uri, inputs.manifests))
    lineage[PINSAGE_VERSION_TAG] = result.pinsage_model_version
    tags = {**lineage, FINGERPRINT_TAG: metadata["training_fingerprint"]}
    with start_run(client, EXPERIMENT, run_name=f"pinnerformer ds={config.ds}", tags=tags,
                   artifact_root=config.artifact_root) as run:
        run.log_params({
            "model": result.model_config.to_dict(), "training": config.training.to_dict(),
            "window_days": config.window_days, "label_days": inputs.label_days, "device": metadata["device"],
            "max_valid_users": config.max_valid_users, "data_fingerprint": metadata["data_fingerprint"],
            PINSAGE_VERSION_TAG: result.pinsage_model_version, "world_size": metadata["world_size"],
        })
        for record in result.history:
            run.log_epoch(int(record["epoch"]), {k: v for k, v in record.items() if k != "epoch"})
        run.log_metrics({
            "best_epoch": result.best_epoch, "train_users": result.num_train_users,
            "valid_users": result.num_valid_users, "users_per_s": result.users_per_s,
            "queries_per_s": result.queries_per_s, "train_seconds": result.seconds,
            **{f"inputs.{k}": v for k, v in inputs.stats.items() if isinstance(v, (int, float))},
        })
        run.set_tags({"inputs": json.dumps(metadata["inputs"])[:5000]})
        if result.history:
            curves = {key: [h[key] for h in result.history] for key in result.history[0]
                      if key == "train_loss" or key.startswith(("valid_recall", "valid_raw_recall"))}
            with tempfile.TemporaryDirectory() as tmp:
                run.log_figure(plot_loss_curves(curves, Path(tmp) / "training_curves.png",
                                                title=f"PinnerFormer ds={config.ds}"))
        torch_version = package_version("torch").split("+")[0]
        example = input_example(inputs.train)
        logged = log_model_dir(
            client, run.run_id, result.model_dir, loader=LOADER, name="pinnerformer", input_example=example,
            signature=model_signature(example, result.model_config.embedding_dim),
            pip_requirements=[f"torch=={torch_version}"],
            metadata={"ds": config.ds.isoformat(), "embedding_dim": result.model_config.embedding_dim,
                      PINSAGE_VERSION_TAG: result.pinsage_model_version,
                      "input": "right-padded tokens of a user's latest actions; pins are rows of the pin table "
                               f"(pin_embeddings of {result.pinsage_model_version}, sorted by pin_id), attached "
                               "with attach_pin_table; output: the user embedding at the latest token"},
            tags=lineage,
        )
        version = register_version(client, config.registered_model, logged, tags=tags,
                                   description=f"PinnerFormer trained for ds={config.ds} on "
                                               f"{result.pinsage_model_version} (best epoch {result.best_epoch})")
    log.info("registered %s version %s (run %s) with alias challenger", config.registered_model, version, run.run_id)
    return version, run.run_id


def main(argv: Sequence[str] | None = None) -> TrainResult:
    settings = Settings.from_env()
    defaults = DEFAULT_TRAINING
    parser = argparse.ArgumentParser(
        prog="python -m jobs.train_pinnerformer", description=__doc__.splitlines()[0],
        epilog="Across processes: torchrun --nproc_per_node W -m jobs.train_pinnerformer --ds ... (rank 0 registers)")
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--model-dir", default=None, help="default: <var>/models/pinnerformer/ds=<ds>")
    parser.add_argument("--checkpoint-path", default=None)
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--device", default=settings.device)
    parser.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: one per core)")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--model-dim", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=2)
    parser.add_argument("--ff-dim", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=64, help="M: latest input actions per user")
    parser.add_argument("--window-days", type=float, default=28.0, help="K: the all-action objectives' window")
    parser.add_argument("--max-valid-users", type=int, default=2000)
    parser.add_argument("--objective", choices=OBJECTIVES, default=defaults.objective)
    parser.add_argument("--negatives", choices=NEGATIVES, default=defaults.negatives)
    parser.add_argument("--no-log-q-correction", action="store_true")
    parser.add_argument("--num-random-negatives", type=int, default=defaults.num_random_negatives)
    parser.add_argument("--num-positions", type=int, default=defaults.num_positions)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="users per step and process: under torchrun the global batch is WORLD_SIZE x this")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--ema-decay", type=float, default=defaults.ema_decay,
                        help="validate and keep a moving average of the weights with this decay per step (0: off)")
    parser.add_argument("--num-epochs", type=int, default=defaults.num_epochs)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri,
                        help="MLflow store to log and register in (default $MLFLOW_TRACKING_URI)")
    parser.add_argument("--no-register", action="store_true", help="train and write the model directory only")
    args = parser.parse_args(argv)
    env = torchrun_env()
    rank = f" [rank {env.rank}]" if env is not None and env.world_size > 1 else ""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s %(name)s{rank}: %(message)s")
    ds = parse_ds(args.ds)
    model_dir = args.model_dir or str(Path(settings.var_dir) / "models" / "pinnerformer" / f"ds={ds.isoformat()}")
    training = dataclasses.replace(
        defaults, objective=args.objective, negatives=args.negatives, log_q_correction=not args.no_log_q_correction,
        num_random_negatives=args.num_random_negatives, num_positions=args.num_positions,
        batch_size=args.batch_size, learning_rate=args.learning_rate, ema_decay=args.ema_decay,
        num_epochs=args.num_epochs,
        patience=args.patience, seed=args.seed, max_steps=args.max_steps,
    )
    return run(TrainPinnerFormerConfig(
        lake_uri=args.lake_uri, ds=ds, model_dir=model_dir, checkpoint_path=args.checkpoint_path,
        resume=not args.no_resume, embedding_dim=args.embedding_dim, model_dim=args.model_dim,
        num_layers=args.num_layers, num_heads=args.num_heads, ff_dim=args.ff_dim, dropout=args.dropout,
        max_length=args.max_length, window_days=args.window_days, max_valid_users=args.max_valid_users,
        device=args.device, num_threads=args.num_threads, training=training,
        tracking_uri=None if args.no_register else args.tracking_uri, artifact_root=settings.mlflow_artifacts_uri,
    ))


if __name__ == "__main__":
    main()
