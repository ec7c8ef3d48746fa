"""Train PinSage for one ds.

In: ``pin_features`` and ``ppr_neighbors`` of ds (features, top-T PPR neighborhoods, hard-negative
pools) and ``events`` of the training window before the test slice (positive pairs: consecutive positive
engagements of a user within ``max_gap_s``; the train slice trains, the validation slice early-stops).
Out: a model directory (``config.json`` + ``model.pt``, see ``embeddings.pinsage.model_dir``) with the
training metrics in its metadata, and a checkpoint to resume from. With a tracking URI (the default under
the DAG), the MLflow store is checked before any training, and the run is logged to the experiment
``pinsage`` (parameters, per-epoch metrics, loss curves, lineage) and the model directory registered as a
new version of the registered model ``pinsage`` with the alias ``challenger``; ``jobs.evaluate_pinsage``
then decides whether it becomes ``champion``. A rerun for the same ds with the same inputs, code and
settings finds the version it registered (tag ``training.fingerprint``) and registers nothing new.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from collections.abc import Sequence
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hashlib
import json
import tempfile

from embeddings.data.engagement import TRAINING_WINDOW_DAYS, TimeSplit
from embeddings.lake import Lake, code_version, parse_ds
from embeddings.pinsage.data import load_pin_graph, load_positive_pairs
from embeddings.pinsage.model import POOLINGS, PinSage, PinSageConfig, build_model
from embeddings.pinsage.model_dir import save_model_dir
from embeddings.pinsage.training import LOSSES, TrainingOptions, data_fingerprint, resolve_device, train
from embeddings.settings import Settings

log = logging.getLogger("jobs.train_pinsage")

REGISTERED_MODEL = EXPERIMENT = "pinsage"
FINGERPRINT_TAG = "training.fingerprint"
LOADER = "embeddings.pinsage.model_dir:load_model_dir"


@dataclass(frozen=True)
class TrainPinSageConfig:
    """Args:
        lake_uri: the lake with the inputs.
        ds: the day whose inputs train the model.
        model_dir: where the trained model directory is written (replaced whole).
        checkpoint_path: the training checkpoint (default ``<model_dir>.checkpoint.pt`` beside it).
        resume: continue from the checkpoint when it exists.
        hidden_dim, embedding_dim, num_layers, pooling, num_neighbors: the model (``PinSageConfig``).
        hard_negative_pool: PPR-band hard negatives kept per pin to sample the curriculum's from.
        max_gap_s: the largest gap between the two engagements of a positive pair.
        window_days, valid_days, test_days: the time split at ds (``TimeSplit``).
        max_missing_share: the largest share of pins allowed to lack a neighborhood row.
        device: ``auto`` (CUDA when present, with bf16 autocast), ``cpu`` or ``cuda[:N]``.
        training: optimization, negatives, curriculum, batching (``TrainingOptions``).
        tracking_uri: the MLflow tracking/registry store to log and register in (None: neither).
        artifact_root: where a new experiment keeps its artifacts (``Settings.mlflow_artifacts_uri``).
        registered_model: the registered model's name.
    """

    lake_uri: str
    ds: dt.date
    model_dir: str
    checkpoint_path: str | None = None
    resume: bool = True
    hidden_dim: int = 256
    embedding_dim: int = 256
    num_layers: int = 2
    pooling: str = "importance"
    num_neighbors: int = 50
    hard_negative_pool: int = 64
    max_gap_s: float = 1800.0
    window_days: int = TRAINING_WINDOW_DAYS
    valid_days: int = 7
    test_days: int = 7
    max_missing_share: float = 0.05
    device: str = "auto"
    training: TrainingOptions = field(default_factory=TrainingOptions)
    tracking_uri: str | None = None
    artifact_root: str | None = None
    registered_model: str = REGISTERED_MODEL

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("hidden_dim", "embedding_dim", "num_layers", "num_neighbors", "hard_negative_pool"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_gap_s <= 0:
            raise ValueError(f"max_gap_s must be positive, got {self.max_gap_s}")
        if not 0 <= self.max_missing_share <= 1:
            raise ValueError(f"max_missing_share must be in [0, 1], got {self.max_missing_share}")
        TimeSplit(self.ds, self.window_days, self.valid_days, self.test_days)  # validates the split

    @property
    def split(self) -> TimeSplit:
        return TimeSplit(self.ds, self.window_days, self.valid_days, self.test_days)

    @property
    def resolved_checkpoint_path(self) -> Path:
        if self.checkpoint_path:
            return Path(self.checkpoint_path)
        model_dir = Path(self.model_dir)
        return model_dir.with_name(f"{model_dir.name}.checkpoint.pt")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    ``examples_per_s``: training pairs per second of training-step time (waiting for data included,
    validation excluded); ``data_wait_share``: the share of that time spent waiting for batches.
    """

    model: PinSage
    model_config: PinSageConfig
    config: TrainPinSageConfig
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    interrupted: bool
    model_dir: Path
    checkpoint_path: Path
    num_train_pairs: int
    num_valid_pairs: int
    examples_per_s: float
    data_wait_share: float
    seconds: float
    registered_version: str | None = None
    run_id: str | None = None

    @property
    def best_metrics(self) -> dict[str, float]:
        """The history entry of the epoch whose weights were kept (empty if no epoch finished)."""
        return next((h for h in self.history if h["epoch"] == self.best_epoch), {})


def run(config: TrainPinSageConfig) -> TrainResult:
    """Load the inputs of ``config.ds``, train, and write the model directory."""
    started = time.perf_counter()
    client = None
    if config.tracking_uri:
        from embeddings.registry.models import newest_version_tagged
        from embeddings.registry.tracking import connect

        client = connect(config.tracking_uri)  # fails now, not after training
    lake = Lake(config.lake_uri)
    device = resolve_device(config.device)
    opts = config.training
    pool = config.hard_negative_pool if opts.hard_negative_cap else 0
    graph, manifests = load_pin_graph(lake, config.ds, config.num_neighbors, pool, config.max_missing_share)
    pairs = load_positive_pairs(lake, graph.pin_ids, config.split, config.max_gap_s)
    model_config = PinSageConfig(
        in_dim=graph.feature_dim, hidden_dim=config.hidden_dim, embedding_dim=config.embedding_dim,
        num_layers=config.num_layers, pooling=config.pooling, num_neighbors=config.num_neighbors,
    )
    fingerprint = training_fingerprint(config, model_config, data_fingerprint(graph, pairs))
    if client is not None and (existing := newest_version_tagged(client, config.registered_model, FINGERPRINT_TAG, fingerprint)):
        log.info("%s version %s was already trained on these inputs with this code and these settings "
                 "(tag %s=%s); not training again", config.registered_model, existing.version, FINGERPRINT_TAG,
                 fingerprint)
        return TrainResult(
            model=None, model_config=model_config, config=config, history=[], best_epoch=0, stopped_early=False,
            interrupted=False, model_dir=Path(config.model_dir), checkpoint_path=config.resolved_checkpoint_path,
            num_train_pairs=len(pairs.train), num_valid_pairs=len(pairs.valid), examples_per_s=0.0,
            data_wait_share=0.0, seconds=time.perf_counter() - started, registered_version=str(existing.version),
            run_id=existing.run_id,
        )
    log.info("training PinSage on %s: %d pins, %d train / %d valid pairs, %s, %s", device, graph.num_pins,
             len(pairs.train), len(pairs.valid), model_config, opts)
    model = build_model(model_config)
    outcome = train(model, graph, pairs, opts, device, config.resolved_checkpoint_path, config.resume)
    metadata = {
        "ds": config.ds.isoformat(),
        "lake_uri": config.lake_uri,
        "inputs": [asdict(m.as_input()) for m in manifests],
        "data_fingerprint": data_fingerprint(graph, pairs),
        "code_version": code_version(),
        "training_options": opts.to_dict(),
        "max_gap_s": config.max_gap_s,
        "split": {"window_days": config.window_days, "valid_days": config.valid_days, "test_days": config.test_days},
        "history": outcome.history,
        "best_epoch": outcome.best_epoch,
        "stopped_early": outcome.stopped_early,
        "interrupted": outcome.interrupted,
        "pair_stats": pairs.stats,
        "graph_stats": graph.stats,
        "examples_per_s": outcome.examples_per_s,
        "data_wait_share": outcome.data_wait_share,
        "device": str(device),
        "training_fingerprint": fingerprint,
    }
    if outcome.interrupted:
        raise RuntimeError(f"training for ds={config.ds} stopped after {opts.max_steps} steps (max_steps) before an "
                           f"epoch ended; the checkpoint {config.resolved_checkpoint_path} resumes it")
    model_dir = save_model_dir(config.model_dir, outcome.model.cpu(), model_config, metadata)
    seconds = time.perf_counter() - started
    log.info("wrote %s (best epoch %d, %.0f pairs/s, data wait %.0f%%) in %.0f s", model_dir, outcome.best_epoch,
             outcome.examples_per_s, 100 * outcome.data_wait_share, seconds)
    result = TrainResult(
        model=outcome.model, model_config=model_config, config=config, history=outcome.history,
        best_epoch=outcome.best_epoch, stopped_early=outcome.stopped_early, interrupted=outcome.interrupted,
        model_dir=model_dir, checkpoint_path=config.resolved_checkpoint_path,
        num_train_pairs=len(pairs.train), num_valid_pairs=len(pairs.valid),
        examples_per_s=outcome.examples_per_s, data_wait_share=outcome.data_wait_share, seconds=seconds,
    )
    if client is not None:
        version, run_id = register(client, result, manifests, metadata, graph.features[:2])
        result = dataclasses.replace(result, registered_version=version, run_id=run_id)
    return result


def manifest_refs(lake_uri: str, manifests) -> dict[str, str]:
    """Input name -> ``<partition uri> rows=<n> created=<time>`` (what a lineage tag records)."""
    return {m.table: f"{lake_uri.rstrip('/')}/{m.table}/ds={m.ds} rows={m.row_count} created={m.created_at}"
            for m in manifests}


def training_fingerprint(config: TrainPinSageConfig, model_config: PinSageConfig, data: str) -> str:
    """sha256 (16 hex) of what determines the trained weights: inputs, model, options, code, ds."""
    document = {
        "ds": config.ds.isoformat(), "data": data, "model": model_config.to_dict(),
        "training": config.training.to_dict(), "max_gap_s": config.max_gap_s, "code_version": code_version(),
        "split": [config.window_days, config.valid_days, config.test_days],
        "hard_negative_pool": config.hard_negative_pool,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def register(client, result: TrainResult, manifests, metadata: dict, example_features) -> tuple[str, str]:
    """Log the run to the ``pinsage`` experiment and register the model directory as a new version.

    Returns:
        (the new version number, the run id).
    """
    from embeddings.eval.plots import plot_loss_curves
    from embeddings.registry.models import log_model_dir, register_version
    from embeddings.registry.tracking import lineage_tags, start_run

    config = result.config
    lineage = lineage_tags(ds=config.ds.isoformat(), input_manifests=manifest_refs(config.lake_uri, manifests))
    tags = {**lineage, FINGERPRINT_TAG: metadata["training_fingerprint"]}
    with start_run(client, EXPERIMENT, run_name=f"pinsage ds={config.ds}", tags=tags,
                   artifact_root=config.artifact_root) as run:
        run.log_params({
            "model": result.model_config.to_dict(), "training": config.training.to_dict(),
            "max_gap_s": config.max_gap_s, "device": metadata["device"],
            "split": {"window_days": config.window_days, "valid_days": config.valid_days,
                      "test_days": config.test_days},
            "data_fingerprint": metadata["data_fingerprint"],
        })
        for record in result.history:
            run.log_epoch(int(record["epoch"]), {k: v for k, v in record.items() if k != "epoch"})
        run.log_metrics({
            "best_epoch": result.best_epoch, "train_pairs": result.num_train_pairs,
            "valid_pairs": result.num_valid_pairs, "examples_per_s": result.examples_per_s,
            "data_wait_share": result.data_wait_share, "train_seconds": result.seconds,
            **{f"graph.{k}": v for k, v in metadata["graph_stats"].items()},
        })
        run.set_tags({"inputs": json.dumps(metadata["inputs"])[:5000]})
        with tempfile.TemporaryDirectory() as tmp:
            curves = {key: [h[key] for h in result.history] for key in result.history[0] if key != "epoch"} \
                if result.history else {}
            if curves:
                run.log_figure(plot_loss_curves(
                    {k: v for k, v in curves.items() if k in ("train_loss",) or k.startswith("valid_")},
                    Path(tmp) / "training_curves.png", title=f"PinSage ds={config.ds}"))
        example = {"features": example_features.astype("float32")}
        logged = log_model_dir(
            client, run.run_id, result.model_dir, loader=LOADER, name="pinsage", input_example=example,
            pip_requirements=["torch==2.13.0", "torch-geometric==2.8.1"],
            metadata={"ds": config.ds.isoformat(), "embedding_dim": result.model_config.embedding_dim,
                      "input": "content features (in_dim) of a pin and its PPR neighbors' (layer-wise)"},
            tags=lineage,
        )
        version = register_version(client, config.registered_model, logged, tags=tags,
                                   description=f"PinSage trained for ds={config.ds} (best epoch {result.best_epoch})")
    log.info("registered %s version %s (run %s) with alias challenger", config.registered_model, version, run.run_id)
    return version, run.run_id


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    defaults = TrainingOptions()
    parser = argparse.ArgumentParser(prog="python -m jobs.train_pinsage", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--model-dir", default=None, help="default: <var>/models/pinsage/ds=<ds>")
    parser.add_argument("--checkpoint-path", default=None)
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--device", default=settings.device)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--pooling", choices=POOLINGS, default="importance")
    parser.add_argument("--num-neighbors", type=int, default=50)
    parser.add_argument("--max-gap-s", type=float, default=1800.0)
    parser.add_argument("--valid-days", type=int, default=7)
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument("--loss", choices=LOSSES, default=defaults.loss)
    parser.add_argument("--no-hard-negatives", action="store_true")
    parser.add_argument("--max-hard-negatives", type=int, default=defaults.max_hard_negatives)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--num-shared-negatives", type=int, default=defaults.num_shared_negatives)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--num-epochs", type=int, default=defaults.num_epochs)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--num-valid-pairs", type=int, default=defaults.num_valid_pairs,
                        help="validation pairs ranked each epoch for early stopping")
    parser.add_argument("--num-workers", type=int, default=defaults.num_workers)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri,
                        help="MLflow store to log and register in (default $MLFLOW_TRACKING_URI)")
    parser.add_argument("--no-register", action="store_true", help="train and write the model directory only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ds = parse_ds(args.ds)
    model_dir = args.model_dir or str(Path(settings.var_dir) / "models" / "pinsage" / f"ds={ds.isoformat()}")
    training = TrainingOptions(
        batch_size=args.batch_size, num_shared_negatives=args.num_shared_negatives, loss=args.loss,
        use_hard_negatives=not args.no_hard_negatives, max_hard_negatives=args.max_hard_negatives,
        learning_rate=args.learning_rate, num_epochs=args.num_epochs, patience=args.patience,
        num_valid_pairs=args.num_valid_pairs,
        num_workers=args.num_workers, seed=args.seed, max_steps=args.max_steps,
    )
    run(TrainPinSageConfig(
        lake_uri=args.lake_uri, ds=ds, model_dir=model_dir, checkpoint_path=args.checkpoint_path,
        resume=not args.no_resume, device=args.device, hidden_dim=args.hidden_dim,
        embedding_dim=args.embedding_dim, num_layers=args.num_layers, pooling=args.pooling,
        num_neighbors=args.num_neighbors, max_gap_s=args.max_gap_s, valid_days=args.valid_days,
        test_days=args.test_days, training=training,
        tracking_uri=None if args.no_register else args.tracking_uri, artifact_root=settings.mlflow_artifacts_uri,
    ))


if __name__ == "__main__":
    main()
