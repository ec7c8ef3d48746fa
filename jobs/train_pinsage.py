"""Train PinSage for one ds.

In: ``pin_features`` and ``ppr_neighbors`` of ds (features, top-T PPR neighborhoods, hard-negative
pools) and ``events`` of the training window before the test slice (positive pairs: consecutive positive
engagements of a user within ``max_gap_s``; the train slice trains, the validation slice early-stops).
Out: a model directory (``config.json`` + ``model.pt``, see ``embeddings.pinsage.model_dir``) with the
training metrics in its metadata, and a checkpoint to resume from. Registering the model in MLflow is
the registry's job (``embeddings.registry``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from embeddings.data.engagement import TRAINING_WINDOW_DAYS, TimeSplit
from embeddings.lake import Lake, code_version, parse_ds
from embeddings.pinsage.data import load_pin_graph, load_positive_pairs
from embeddings.pinsage.model import POOLINGS, PinSage, PinSageConfig, build_model
from embeddings.pinsage.model_dir import save_model_dir
from embeddings.pinsage.training import LOSSES, TrainingOptions, data_fingerprint, resolve_device, train
from embeddings.settings import Settings

log = logging.getLogger("jobs.train_pinsage")


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

    @property
    def best_metrics(self) -> dict[str, float]:
        """The history entry of the epoch whose weights were kept (empty if no epoch finished)."""
        return next((h for h in self.history if h["epoch"] == self.best_epoch), {})


def run(config: TrainPinSageConfig) -> TrainResult:
    """Load the inputs of ``config.ds``, train, and write the model directory."""
    started = time.perf_counter()
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
    }
    model_dir = save_model_dir(config.model_dir, outcome.model.cpu(), model_config, metadata)
    seconds = time.perf_counter() - started
    log.info("wrote %s (best epoch %d, %.0f pairs/s, data wait %.0f%%) in %.0f s", model_dir, outcome.best_epoch,
             outcome.examples_per_s, 100 * outcome.data_wait_share, seconds)
    return TrainResult(
        model=outcome.model, model_config=model_config, config=config, history=outcome.history,
        best_epoch=outcome.best_epoch, stopped_early=outcome.stopped_early, interrupted=outcome.interrupted,
        model_dir=model_dir, checkpoint_path=config.resolved_checkpoint_path,
        num_train_pairs=len(pairs.train), num_valid_pairs=len(pairs.valid),
        examples_per_s=outcome.examples_per_s, data_wait_share=outcome.data_wait_share, seconds=seconds,
    )


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
    parser.add_argument("--num-workers", type=int, default=defaults.num_workers)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ds = parse_ds(args.ds)
    model_dir = args.model_dir or str(Path(settings.var_dir) / "models" / "pinsage" / f"ds={ds.isoformat()}")
    training = TrainingOptions(
        batch_size=args.batch_size, num_shared_negatives=args.num_shared_negatives, loss=args.loss,
        use_hard_negatives=not args.no_hard_negatives, max_hard_negatives=args.max_hard_negatives,
        learning_rate=args.learning_rate, num_epochs=args.num_epochs, patience=args.patience,
        num_workers=args.num_workers, seed=args.seed, max_steps=args.max_steps,
    )
    run(TrainPinSageConfig(
        lake_uri=args.lake_uri, ds=ds, model_dir=model_dir, checkpoint_path=args.checkpoint_path,
        resume=not args.no_resume, device=args.device, hidden_dim=args.hidden_dim,
        embedding_dim=args.embedding_dim, num_layers=args.num_layers, pooling=args.pooling,
        num_neighbors=args.num_neighbors, max_gap_s=args.max_gap_s, valid_days=args.valid_days,
        test_days=args.test_days, training=training,
    ))


if __name__ == "__main__":
    main()
