"""Training PinSage on positive pairs (the paper's Sec. 3.3), with producer-consumer batching.

Each minibatch is a set of positive pairs (q, i); its computation graph holds the queries, the
positives, ``num_shared_negatives`` pins drawn uniformly and shared by the whole minibatch, and, on the
curriculum, each query's hard negatives (pins from a lower PPR rank band of q: none in epoch 1, n-1 per
query in epoch n, capped). Loader workers (``torch.utils.data.DataLoader``) build the next batches'
computation graphs and feature slices in numpy while the current batch trains (the producer-consumer
scheme of Sec. 3.4); the trainer records how long it waits for them.

A batch is a pure function of ``(seed, epoch, batch number)``, so runs are reproducible on CPU and a run
resumed from a checkpoint (written at the end of every epoch, every ``checkpoint_every_steps`` steps
and when ``max_steps`` stops it) continues exactly where it stopped. Each epoch ends with a validation:
every pin is embedded layer by layer and the validation pairs are ranked against all pins (full
ranking; the query itself is excluded); training stops early when hit-rate@k has not improved for
``patience`` epochs, and the best epoch's weights are kept.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from embeddings.pinsage.data import PinGraph, PositivePairs
from embeddings.pinsage.inference import DEFAULT_CHUNK_SIZE, embed_all
from embeddings.pinsage.loss import max_margin_loss, sampled_softmax_loss
from embeddings.pinsage.model import PinSage
from embeddings.pinsage.sampling import (
    block_from_tensors,
    build_blocks,
    hard_negatives_for_epoch,
    sample_hard_negatives,
)

log = logging.getLogger(__name__)

LOSSES = ("max_margin", "sampled_softmax")
CHECKPOINT_FORMAT = "pinsage-checkpoint/1"
# Options that may change between a run and its resumption without changing the result.
_RUNTIME_OPTIONS = frozenset(
    {"num_epochs", "num_workers", "prefetch_batches", "log_every_s", "max_steps", "checkpoint_every_steps",
     "inference_chunk_size"}
)


@dataclass(frozen=True)
class TrainingOptions:
    """How to train (the model's shape is ``PinSageConfig``).

    Args:
        batch_size: positive pairs per minibatch.
        num_shared_negatives: uniform random negatives shared by the minibatch (the paper: 500).
        loss: ``max_margin`` (the paper) or ``sampled_softmax`` (in-batch positives plus the shared
            negatives, with the logQ correction; hard negatives are not used by it).
        margin: hinge margin of ``max_margin``.
        temperature: softmax temperature of ``sampled_softmax``.
        log_q_weight: scales ``sampled_softmax``'s logQ correction (1: the unbiased correction; 0: none; above 1
            it over-corrects: popular candidates' training logits drop further than their sampling rate asks).
        use_hard_negatives: the ablation switch for the hard-negative curriculum.
        max_hard_negatives: the curriculum's cap on hard negatives per query.
        learning_rate, weight_decay: Adam's (``weight_decay`` is its L2 term in the gradient). On CPU, train with
            weight decay only where subnormal floats are flushed to zero in every torch thread (``torch.
            set_flush_denormal(True)`` before the first parallel op, as bench/pinsage_quality.py does): the L2 term
            keeps the weights of units that no longer fire in the subnormal range, and a matmul over weights 12%
            subnormal ran over 100x slower. ``train`` warns when they are not flushed.
        num_epochs: the most epochs to train.
        patience: stop after this many epochs without a better validation hit-rate.
        num_valid_pairs: validation pairs scored each epoch (a fixed sample; on HetRec 1,000 pairs gave ~30
            hits at hit-rate@10, too few to stop on).
        hit_rate_k: k of hit-rate@k, the early-stopping metric.
        num_workers: loader worker processes (0: batches are built on the training thread).
        prefetch_batches: batches each worker prepares ahead.
        seed: seeds initialization, batch order and negative sampling.
        log_every_s: progress logging interval.
        max_steps: stop (with a checkpoint) after this many steps in total; for tests and time limits.
        checkpoint_every_steps: also checkpoint every this many steps (0: only at epoch ends).
        inference_chunk_size: targets per chunk of the per-epoch layer-wise embedding.
    """

    batch_size: int = 512
    num_shared_negatives: int = 500
    loss: str = "max_margin"
    margin: float = 0.1
    temperature: float = 0.05
    log_q_weight: float = 1.0
    use_hard_negatives: bool = True
    max_hard_negatives: int = 6
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    num_epochs: int = 10
    patience: int = 2
    num_valid_pairs: int = 10_000
    hit_rate_k: int = 10
    num_workers: int = 1
    prefetch_batches: int = 4
    seed: int = 0
    log_every_s: float = 10.0
    max_steps: int | None = None
    checkpoint_every_steps: int = 0
    inference_chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"TrainingOptions.loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("batch_size", "num_shared_negatives", "num_epochs", "patience", "num_valid_pairs",
                     "hit_rate_k", "prefetch_batches", "inference_chunk_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainingOptions.{name} must be positive, got {getattr(self, name)}")
        for name in ("max_hard_negatives", "num_workers", "checkpoint_every_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainingOptions.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"TrainingOptions.max_steps must be positive or None, got {self.max_steps}")
        if self.log_q_weight < 0:
            raise ValueError(f"TrainingOptions.log_q_weight must be >= 0, got {self.log_q_weight}")
        if self.margin < 0 or self.temperature <= 0 or self.learning_rate <= 0:
            raise ValueError(f"margin must be >= 0, temperature and learning_rate > 0 (got {self.margin}, "
                             f"{self.temperature}, {self.learning_rate})")

    @property
    def hard_negative_cap(self) -> int:
        """Hard negatives per query at the top of the curriculum (0 when they are switched off)."""
        return self.max_hard_negatives if self.use_hard_negatives and self.loss == "max_margin" else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- batches (the producer) -----------------------------------------------------------------------


@dataclass
class Batch:
    """One minibatch, ready for the model. Positions index the targets (the last block's dst nodes).

    Attributes:
        x: (N_0, in_dim) features of the computation graph's input nodes.
        ids: (N_0,) those nodes' pin rows (for a model's id vectors).
        blocks: per layer, ``BlockArrays.to_tensors()`` (input side first).
        query: (B, H) positions of each example's query pins (0 where ``query_mask`` is False); H = 1 for pairs.
        query_mask: (B, H) which query slots are filled (the first always is).
        positive: (B,) positions of each example's positive.
        negative: (S,) positions of the shared negatives.
        negative_mask: (B, S) False where a shared negative is one of the query's pins or its positive.
        hard: (B, K) positions of each query's hard negatives (0 where empty).
        hard_mask: (B, K) which hard slots are filled.
        log_q: (B + S,) log expected count of each softmax candidate (positives, then negatives).
        candidate_mask: (B, B + S) False for accidental hits of the softmax.
    """

    x: Tensor
    ids: Tensor
    blocks: list[dict[str, Tensor]]
    query: Tensor
    query_mask: Tensor
    positive: Tensor
    negative: Tensor
    negative_mask: Tensor
    hard: Tensor
    hard_mask: Tensor
    log_q: Tensor
    candidate_mask: Tensor

    @property
    def num_pairs(self) -> int:
        return int(self.query.shape[0])

    def pin_memory(self) -> Batch:
        """Page-locked copies (DataLoader calls this with ``pin_memory=True``, for CUDA)."""
        pin = lambda t: t.pin_memory()  # noqa: E731
        return dataclasses.replace(
            self, **{f.name: pin(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "blocks"},
            blocks=[{k: pin(v) for k, v in b.items()} for b in self.blocks],
        )


class TrainingBatches(Dataset):
    """The minibatches of one epoch, batch ``b`` a pure function of ``(seed, epoch, b)``.

    Args:
        graph: features, neighborhoods and hard-negative pools.
        pairs: (N, 2) training pairs [query row, positive row], or (N, H + 1) examples whose query is a set of
            pins: H query rows (newest first, -1 padding after the first) then the positive row (``PositivePairs``).
        epoch: 1-based epoch (sets the order and the number of hard negatives).
        options: batch size, negatives, curriculum.
        num_layers, pooling: the model's (for the computation graphs).
        start_batch: skip the epoch's first batches (resuming mid-epoch).
    """

    def __init__(self, graph: PinGraph, pairs: np.ndarray, epoch: int, options: TrainingOptions,
                 num_layers: int, pooling: str, start_batch: int = 0) -> None:
        self.graph, self.pairs, self.epoch, self.options = graph, pairs, epoch, options
        self.num_layers, self.pooling, self.start_batch = num_layers, pooling, start_batch
        self.num_batches = math.ceil(len(pairs) / options.batch_size)
        self.order = np.random.default_rng([options.seed, epoch]).permutation(len(pairs))
        self.num_hard = hard_negatives_for_epoch(epoch, options.hard_negative_cap)
        # logQ of the softmax: expected count of a pin among a batch's positives / uniform negatives.
        counts = np.bincount(pairs[:, -1], minlength=graph.num_pins).astype(np.float64)
        self.log_q_positive = np.log(np.maximum(options.batch_size * counts / len(pairs), 1e-12))
        self.log_q_negative = math.log(options.num_shared_negatives / graph.num_pins)

    def __len__(self) -> int:
        return max(self.num_batches - self.start_batch, 0)

    def __getitem__(self, index: int) -> Batch:
        b = self.start_batch + index
        opts = self.options
        rng = np.random.default_rng([opts.seed, self.epoch, b])
        chosen = self.pairs[self.order[b * opts.batch_size:(b + 1) * opts.batch_size]].astype(np.int64)
        query_rows, p = chosen[:, :-1], chosen[:, -1]
        q = query_rows[:, 0]  # the newest query pin: its hard negatives
        query_mask = query_rows >= 0
        num_pairs, num_query_pins = len(q), int(query_mask.sum())
        neg = rng.integers(0, self.graph.num_pins, opts.num_shared_negatives)
        hard = sample_hard_negatives(rng, q, self.graph.hard_negatives, self.num_hard)  # (B, K)
        hard[(hard == p[:, None]) | (hard == q[:, None])] = -1
        hard_mask = hard >= 0
        targets, inverse = np.unique(np.concatenate([query_rows[query_mask], p, neg, hard[hard_mask]]),
                                     return_inverse=True)
        query_pos = np.zeros(query_rows.shape, dtype=np.int64)
        query_pos[query_mask] = inverse[:num_query_pins]
        hard_pos = np.zeros(hard.shape, dtype=np.int64)
        hard_pos[hard_mask] = inverse[num_query_pins + num_pairs + len(neg):]
        input_rows, blocks = build_blocks(targets, self.graph.neighbors, self.graph.weights,
                                          self.num_layers, self.pooling)

        def not_a_query_or_positive(pins: np.ndarray) -> np.ndarray:  # (B, len(pins))
            hit = pins[None, :] == p[:, None]
            for h in range(query_rows.shape[1]):
                hit |= pins[None, :] == query_rows[:, h:h + 1]
            return ~hit

        candidates = np.concatenate([p, neg])
        candidate_mask = not_a_query_or_positive(candidates)
        candidate_mask[np.arange(num_pairs), np.arange(num_pairs)] = True  # each query's own positive
        log_q = np.concatenate([self.log_q_positive[p], np.full(len(neg), self.log_q_negative)])
        t = torch.from_numpy
        return Batch(
            x=t(self.graph.features[input_rows]),
            ids=t(input_rows.astype(np.int64)),
            blocks=[blk.to_tensors() for blk in blocks],
            query=t(query_pos),
            query_mask=t(query_mask),
            positive=t(inverse[num_query_pins:num_query_pins + num_pairs]),
            negative=t(inverse[num_query_pins + num_pairs:num_query_pins + num_pairs + len(neg)]),
            negative_mask=t(not_a_query_or_positive(neg)),
            hard=t(hard_pos),
            hard_mask=t(hard_mask),
            log_q=t(log_q.astype(np.float32)),
            candidate_mask=t(candidate_mask),
        )


def _identity(batch: Batch) -> Batch:
    return batch


def batch_loss(model: PinSage, batch: Batch, options: TrainingOptions, device: torch.device) -> Tensor:
    """The minibatch's loss (forward pass under bf16 autocast on CUDA; the loss itself in float32)."""
    blocks = [block_from_tensors(b, device) for b in batch.blocks]
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    with autocast:
        z = model(batch.x.to(device, non_blocking=True), blocks, batch.ids.to(device, non_blocking=True))
    z = z.float()
    d = lambda t: t.to(device, non_blocking=True)  # noqa: E731
    if batch.query.shape[1] == 1:  # pairs (the query before the positive: autograd sums in that order)
        query = z[d(batch.query.view(-1))]
    else:  # a set of pins: their mean, normalized (the user task's `sum` over the latest pins)
        mask = d(batch.query_mask).unsqueeze(-1).to(z.dtype)
        query = torch.nn.functional.normalize((z[d(batch.query)] * mask).sum(1), dim=-1)
    positive = z[d(batch.positive)]
    if options.loss == "sampled_softmax":
        candidates = torch.cat([positive, z[d(batch.negative)]])
        index = torch.arange(batch.num_pairs, device=device)
        log_q = options.log_q_weight * d(batch.log_q)
        return sampled_softmax_loss(query, candidates, log_q, index, options.temperature,
                                    d(batch.candidate_mask))
    hard = z[d(batch.hard)] if batch.hard.shape[1] else None  # (B, K, D)
    return max_margin_loss(query, positive, z[d(batch.negative)], options.margin, d(batch.negative_mask),
                           hard, d(batch.hard_mask))


# ---- validation ----------------------------------------------------------------------------------


@torch.no_grad()
def rank_positives(embeddings: np.ndarray, pairs: np.ndarray, chunk_size: int = 256) -> np.ndarray:
    """Full-ranking rank (1 = best) of each pair's positive among all pins, the query itself excluded.

    Args:
        embeddings: (P, D) pin embeddings.
        pairs: (V, 2) [query row, positive row].

    Returns:
        (V,) int64 ranks; ties count against the positive.
    """
    emb = torch.from_numpy(embeddings)
    ranks = np.empty(len(pairs), dtype=np.int64)
    for a in range(0, len(pairs), chunk_size):
        q = torch.from_numpy(pairs[a:a + chunk_size, 0])
        p = torch.from_numpy(pairs[a:a + chunk_size, 1])
        scores = emb[q] @ emb.T  # (c, P)
        rows = torch.arange(len(q))
        positive = scores[rows, p].clone()
        scores[rows, q] = float("-inf")
        scores[rows, p] = float("-inf")
        ranks[a:a + chunk_size] = (1 + (scores >= positive[:, None]).sum(dim=1)).numpy()
    return ranks


def validation_metrics(embeddings: np.ndarray, pairs: np.ndarray, options: TrainingOptions) -> dict[str, float]:
    """hit-rate@k, MRR (full ranking) and the max-margin loss with a fixed set of shared negatives."""
    ranks = rank_positives(embeddings, pairs)
    rng = np.random.default_rng([options.seed, 0x7A11D])
    neg = rng.integers(0, len(embeddings), options.num_shared_negatives)
    emb = torch.from_numpy(embeddings)
    q, p = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])
    mask = (torch.from_numpy(neg)[None, :] != q[:, None]) & (torch.from_numpy(neg)[None, :] != p[:, None])
    loss = max_margin_loss(emb[q], emb[p], emb[torch.from_numpy(neg)], options.margin, mask)
    return {
        f"valid_hit_rate@{options.hit_rate_k}": float((ranks <= options.hit_rate_k).mean()),
        "valid_mrr": float((1.0 / ranks).mean()),
        "valid_loss": float(loss),
    }


# ---- the loop (the consumer) --------------------------------------------------------------------


@dataclass
class TrainingState:
    """Everything a checkpoint restores (besides the model and optimizer)."""

    epoch: int = 1
    next_batch: int = 0
    step: int = 0
    epoch_loss_sum: float = 0.0
    epoch_batches: int = 0
    epoch_examples: int = 0
    epoch_wait_s: float = 0.0
    epoch_busy_s: float = 0.0
    examples: int = 0
    wait_s: float = 0.0
    busy_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False
    stopped_early: bool = False


@dataclass
class TrainingOutcome:
    """What ``train`` did. ``model`` holds the best epoch's weights (or the last ones if interrupted).

    ``examples_per_s`` counts training pairs over the time of training steps, waiting for data included
    (validation excluded); ``data_wait_share`` is the share of that time spent waiting for batches.
    """

    model: PinSage
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    interrupted: bool
    steps: int
    examples: int
    train_seconds: float
    examples_per_s: float
    data_wait_share: float


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; otherwise the named device (which must exist)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available here")
    return resolved


def subnormals_flushed() -> bool:
    """Whether float arithmetic flushes subnormal results to zero on every torch CPU thread (a probe: torch has
    no getter, and its switch sets the calling thread only; intra-op threads copy it when they start)."""
    probe = torch.full((1 << 20,), 1e-30) * 1e-10  # subnormal in float32, split across the threads
    return not bool(torch.count_nonzero(probe))


def data_fingerprint(graph: PinGraph, pairs: PositivePairs) -> str:
    """A short hash of the training data's shape and pairs (a checkpoint only resumes on the same data)."""
    h = hashlib.sha256()
    h.update(np.asarray([graph.num_pins, graph.feature_dim, graph.neighbors.shape[1]], np.int64).tobytes())
    h.update(np.ascontiguousarray(graph.pin_ids).tobytes())
    h.update(np.ascontiguousarray(pairs.train).tobytes())
    h.update(np.ascontiguousarray(pairs.valid).tobytes())
    return h.hexdigest()[:16]


def _fingerprint(model: PinSage, options: TrainingOptions, data: str) -> dict[str, Any]:
    opts = {k: v for k, v in options.to_dict().items() if k not in _RUNTIME_OPTIONS}
    return {"model": model.config.to_dict(), "options": opts, "data": data}


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: Any,
                    best_state: dict[str, Tensor] | None, fingerprint: dict[str, Any], *,
                    checkpoint_format: str = CHECKPOINT_FORMAT, extra: dict[str, Any] | None = None) -> None:
    """Write the checkpoint atomically (a crash mid-write leaves the previous one).

    ``state`` is the trainer's dataclass of counters; ``checkpoint_format`` names the trainer (PinSage's by
    default; PinnerFormer's trainer passes its own), so one trainer never resumes from another's file;
    ``extra`` entries (tensors, lists, plain values) are stored beside the standard ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({
        "format": checkpoint_format,
        "fingerprint": fingerprint,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": dataclasses.asdict(state),
        "best_state": best_state,
    } | (extra or {}), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, fingerprint: dict[str, Any], *,
                    checkpoint_format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """Read a checkpoint and check it was written for the same model, options and data.

    Raises:
        ValueError: an unreadable checkpoint, another format, or a different fingerprint.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read means we cannot resume from it
        raise ValueError(f"checkpoint {path} is unreadable ({exc}); delete it to train from scratch") from exc
    if ckpt.get("format") != checkpoint_format:
        raise ValueError(f"checkpoint {path} has format {ckpt.get('format')!r}, expected {checkpoint_format!r}")
    if ckpt["fingerprint"] != fingerprint:
        diff = sorted(k for k in fingerprint if ckpt["fingerprint"].get(k) != fingerprint[k])
        raise ValueError(
            f"checkpoint {path} was written for a different {', '.join(diff)} "
            f"({ckpt['fingerprint']} vs now {fingerprint}); delete it or pass the same configuration and data"
        )
    return ckpt


def train(
    model: PinSage,
    graph: PinGraph,
    pairs: PositivePairs,
    options: TrainingOptions,
    device: torch.device | str = "cpu",
    checkpoint_path: str | Path | None = None,
    resume: bool = True,
    on_epoch: Callable[[dict[str, Any], np.ndarray], None] | None = None,
) -> TrainingOutcome:
    """Train ``model`` in place on ``pairs.train``, validating on ``pairs.valid`` each epoch.

    Args:
        model: a freshly built model; initialized here from ``options.seed`` unless resumed.
        graph: features, neighborhoods and hard-negative pools.
        pairs: training and validation pairs (rows of ``graph``).
        options: see ``TrainingOptions``.
        device: a torch device (``resolve_device`` turns ``auto`` into one).
        checkpoint_path: where checkpoints go (None: no checkpoints).
        resume: continue from ``checkpoint_path`` when it exists.
        on_epoch: called after each epoch's validation with that epoch's record and the (P, D) embeddings
            it validated (e.g. to score another task per epoch); it never changes the training.

    Returns:
        The outcome; ``outcome.model`` is ``model`` with the best epoch's weights.

    Raises:
        ValueError: no training or validation pairs, or a checkpoint of another configuration or data.
    """
    if len(pairs.train) == 0 or len(pairs.valid) == 0:
        raise ValueError(f"train needs training and validation pairs, got {len(pairs.train)} and {len(pairs.valid)}")
    device = torch.device(device)
    if options.weight_decay > 0 and device.type == "cpu" and not subnormals_flushed():
        log.warning("weight decay on CPU without subnormal floats flushed to zero: steps may slow many times over "
                    "(TrainingOptions.weight_decay)")
    torch.manual_seed(options.seed)
    model.load_state_dict(type(model)(model.config).state_dict())  # initialization from the seed alone
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    state, best_state = TrainingState(), None
    checkpoint = Path(checkpoint_path) if checkpoint_path is not None else None
    fingerprint = _fingerprint(model, options, data_fingerprint(graph, pairs))
    if checkpoint is not None and resume and checkpoint.exists():
        ckpt = load_checkpoint(checkpoint, fingerprint)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state, best_state = TrainingState(**ckpt["state"]), ckpt["best_state"]
        log.info("resumed from %s at epoch %d batch %d (step %d)", checkpoint, state.epoch, state.next_batch,
                 state.step)

    valid_rng = np.random.default_rng([options.seed, 0x5A1D])
    valid = pairs.valid[np.sort(valid_rng.choice(len(pairs.valid), min(options.num_valid_pairs, len(pairs.valid)),
                                                 replace=False))]
    metric = f"valid_hit_rate@{options.hit_rate_k}"
    interrupted = False

    def checkpoint_now() -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, state, best_state, fingerprint)

    while not state.finished and state.epoch <= options.num_epochs:
        dataset = TrainingBatches(graph, pairs.train, state.epoch, options, len(model.convs),
                                  model.config.pooling, start_batch=state.next_batch)
        loader = DataLoader(
            dataset, batch_size=None, shuffle=False, num_workers=options.num_workers,
            prefetch_factor=options.prefetch_batches if options.num_workers else None,
            pin_memory=device.type == "cuda", collate_fn=_identity,
        )
        model.train()
        num_batches, started = dataset.num_batches, time.perf_counter()
        last_log = started
        batches = iter(loader)
        for b in range(state.next_batch, num_batches):
            t0 = time.perf_counter()
            batch = next(batches)
            t1 = time.perf_counter()
            loss = batch_loss(model, batch, options, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())  # synchronizes with the device, so the step time is real
            t2 = time.perf_counter()
            state.step += 1
            state.next_batch = b + 1
            state.epoch_loss_sum += loss_value
            state.epoch_batches += 1
            state.epoch_examples += batch.num_pairs
            state.examples += batch.num_pairs
            state.epoch_wait_s += t1 - t0
            state.epoch_busy_s += t2 - t1
            state.wait_s += t1 - t0
            state.busy_s += t2 - t1
            if t2 - last_log >= options.log_every_s or b + 1 == num_batches:
                last_log = t2
                spent = state.epoch_wait_s + state.epoch_busy_s
                rate = state.epoch_examples / max(spent, 1e-9)
                left = (len(pairs.train) - (b + 1) * options.batch_size) / max(rate, 1e-9)
                log.info("epoch %d batch %d/%d: loss %.4f, %.0f pairs/s, data wait %.0f%%, ETA epoch %.0f s",
                         state.epoch, b + 1, num_batches, state.epoch_loss_sum / state.epoch_batches, rate,
                         100 * state.epoch_wait_s / max(spent, 1e-9), max(left, 0.0))
            if options.max_steps is not None and state.step >= options.max_steps:
                interrupted = True
                break
            if options.checkpoint_every_steps and state.step % options.checkpoint_every_steps == 0:
                checkpoint_now()
        del batches, loader
        if interrupted:
            checkpoint_now()
            log.info("stopped after %d steps (max_steps); checkpoint %s", state.step, checkpoint)
            break

        embeddings = embed_all(model, graph.features, graph.neighbors, graph.weights,
                               options.inference_chunk_size, device, options.log_every_s)
        metrics = validation_metrics(embeddings, valid, options)
        spent = state.epoch_wait_s + state.epoch_busy_s
        record = {
            "epoch": state.epoch,
            "train_loss": state.epoch_loss_sum / max(state.epoch_batches, 1),
            "hard_negatives_per_query": dataset.num_hard,
            "examples_per_s": state.epoch_examples / max(spent, 1e-9),
            "data_wait_share": state.epoch_wait_s / max(spent, 1e-9),
            "epoch_seconds": time.perf_counter() - started,
            **metrics,
        }
        state.history.append(record)
        log.info("epoch %d: %s", state.epoch, {k: round(v, 4) for k, v in record.items()})
        if on_epoch is not None:
            on_epoch(dict(record), embeddings)
        if metrics[metric] > state.best_metric:
            state.best_metric, state.best_epoch, state.bad_epochs = metrics[metric], state.epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state.bad_epochs += 1
        if state.bad_epochs >= options.patience:
            state.finished = state.stopped_early = True
            log.info("early stop after epoch %d: no better %s for %d epochs (best %.4f at epoch %d)",
                     state.epoch, metric, state.bad_epochs, state.best_metric, state.best_epoch)
        state.epoch += 1
        state.next_batch = 0
        state.epoch_loss_sum, state.epoch_batches, state.epoch_examples = 0.0, 0, 0
        state.epoch_wait_s = state.epoch_busy_s = 0.0
        checkpoint_now()

    if not interrupted and best_state is not None:
        model.load_state_dict(best_state)
    total = state.wait_s + state.busy_s
    return TrainingOutcome(
        model=model,
        history=copy.deepcopy(state.history),
        best_epoch=state.best_epoch,
        stopped_early=state.stopped_early,
        interrupted=interrupted,
        steps=state.step,
        examples=state.examples,
        train_seconds=total,
        examples_per_s=state.examples / max(total, 1e-9),
        data_wait_share=state.wait_s / max(total, 1e-9),
    )
