"""Training PinnerFormer on user sequences (paper Sec. 3.3-3.4), in one process or under torchrun.

Each step takes ``batch_size`` users, builds their right-padded tokens, samples the objective's
queries (``loss.sample_queries``) and the uniform negatives, and minimizes the sampled softmax (or the
full softmax) with Adam and gradient-norm clipping. On CUDA the forward pass runs under bf16 autocast;
the losses are computed in float32. A batch, its negatives and its dropout are a pure function of
``(seed, epoch, batch number)``, so a run resumed from a checkpoint continues exactly where it stopped.

Each epoch ends with a validation when validation sequences are given: users are embedded at their
latest input token and their future positives are ranked against every pin (full ranking, input
history masked) by the project's ranking code (``embeddings.eval.metrics``); training stops early when
the metric (``hr@k`` of the next positive, or ``recall@k`` of the window) has not improved for
``patience`` epochs, and the best epoch's weights are kept.

A non-finite loss (or gradient norm) stops the run with a ``FloatingPointError`` naming the step, the
epoch and batch, and the batch's users; the checkpoint written just before (the weights before that
step) is kept. Checkpoints and the device choice reuse PinSage's helpers
(``embeddings.pinsage.training``).

Across processes (a process group of W > 1 processes initialized, e.g. by
``distributed.init_process_group`` under torchrun): the model is wrapped in DistributedDataParallel and
``batch_size`` is per process. Step s of epoch e takes the global batch a single process with
``batch_size * W`` would take (the same seeded permutation), split into W contiguous slices
(``distributed.shard_users``). Every process samples the queries of the whole global batch with the
single-process generator and keeps its own users' ones, draws the same uniform negatives, and sees the
targets of every process as in-batch negatives (``distributed.gather_candidates``); its loss is its
queries' summed cross-entropy times ``W / N`` (N = the global batch's queries), so the gradient DDP
averages is the gradient of the single-process mean loss. Hence, with dropout 0, W processes of batch B
follow one process of batch W * B up to float summation order (tested with 2 CPU processes; under bf16
autocast on CUDA only approximately). Dropout masks are drawn per process. Rank 0 alone logs, validates
(and tells the others the outcome) and writes checkpoints; every process returns the same weights.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from embeddings.eval.metrics import RankingMetrics, evaluate_ranking
from embeddings.eval.scorers import EmbeddingScorer
from embeddings.pinnerformer.data import UserSequences, collate_tokens
from embeddings.pinnerformer.distributed import gather_candidates, shard_users, world
from embeddings.pinnerformer.loss import (
    NEGATIVES,
    OBJECTIVES,
    Queries,
    full_softmax_loss,
    in_batch_log_q,
    own_positive_keys,
    sample_queries,
    sampled_softmax_loss,
)
from embeddings.pinnerformer.model import PinnerFormer, TokenInputs
from embeddings.pinsage.training import load_checkpoint, resolve_device, save_checkpoint

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "pinnerformer-checkpoint/1"
VALID_MODES = ("next", "window")
_RUNTIME_OPTIONS = frozenset({"num_epochs", "log_every_s", "max_steps", "checkpoint_every_steps", "eval_batch_size"})


@dataclass(frozen=True)
class TrainingOptions:
    """How to train (the model's shape is ``PinnerFormerConfig``).

    Args:
        objective: one of ``loss.OBJECTIVES`` (the paper's choice: ``dense_all_action``).
        negatives: ``mixed`` (in-batch + uniform, the paper's), ``in_batch``, ``random`` or ``full``
            (softmax over every pin: small id-only catalogs).
        log_q_correction: subtract each sampled candidate's log expected count (``mixed`` and
            ``in_batch``; with uniform negatives alone it is a constant that cancels).
        num_random_negatives: uniform negatives per batch (``mixed`` and ``random``).
        num_positions: ``dense_all_action``'s positions per user.
        max_targets: ``all_action``'s targets per user.
        batch_size: users per step.
        learning_rate, weight_decay, adam_betas: Adam's (AdamW when ``weight_decay`` > 0).
        grad_clip_norm: the gradient-norm clip.
        ema_decay: keep an exponential moving average of the weights with this decay per step (0: off;
            the first steps average with ``min(ema_decay, (1 + step) / (10 + step))`` so the random
            initialization fades fast). Validation, early stopping and the returned model then use the
            averaged weights; each epoch's record also holds the raw weights' figure (``valid_raw_*``).
        num_epochs, patience: the most epochs; stop after ``patience`` epochs without a better validation.
        eval_k: k of the validation metric.
        valid_mode: ``next`` (hr@k of the first future positive) or ``window`` (recall@k of all of them).
        seed: seeds initialization, batch order, negatives and dropout.
        log_every_s: progress logging interval.
        max_steps: stop (with a checkpoint) after this many steps in total.
        checkpoint_every_steps: also checkpoint every this many steps (0: epoch ends only).
        eval_batch_size: users per forward pass when embedding for validation.
    """

    objective: str = "dense_all_action"
    negatives: str = "mixed"
    log_q_correction: bool = True
    num_random_negatives: int = 1024
    num_positions: int = 32
    max_targets: int = 32
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip_norm: float = 1.0
    ema_decay: float = 0.0
    num_epochs: int = 10
    patience: int = 2
    eval_k: int = 10
    valid_mode: str = "window"
    seed: int = 0
    log_every_s: float = 10.0
    max_steps: int | None = None
    checkpoint_every_steps: int = 0
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"TrainingOptions.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"TrainingOptions.negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if self.valid_mode not in VALID_MODES:
            raise ValueError(f"TrainingOptions.valid_mode must be one of {VALID_MODES}, got {self.valid_mode!r}")
        for name in ("num_positions", "max_targets", "batch_size", "num_epochs", "patience", "eval_k",
                     "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainingOptions.{name} must be positive, got {getattr(self, name)}")
        if self.negatives in ("mixed", "random") and self.num_random_negatives <= 0:
            raise ValueError(f"negatives={self.negatives!r} needs num_random_negatives > 0, got "
                             f"{self.num_random_negatives}")
        if self.checkpoint_every_steps < 0 or (self.max_steps is not None and self.max_steps <= 0):
            raise ValueError(f"checkpoint_every_steps must be >= 0 and max_steps positive or None, got "
                             f"{self.checkpoint_every_steps} and {self.max_steps}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainingOptions.ema_decay must be in [0, 1) (0: off), got {self.ema_decay}")
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.grad_clip_norm <= 0:
            raise ValueError(f"learning_rate and grad_clip_norm must be > 0 and weight_decay >= 0, got "
                             f"{self.learning_rate}, {self.grad_clip_norm}, {self.weight_decay}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- batches ------------------------------------------------------------------------------------


@dataclass
class Batch:
    """One step's input.

    Attributes:
        users: (B,) rows of the training sequences.
        tokens: (B, L) the users' tokens.
        query_user, query_position, target: (N,) the objective's queries (``loss.Queries``).
        own_keys: (K,) keys ``b * P + pin`` of each batch user's positives.
        negatives: (S,) uniform negative pin rows (empty for ``in_batch`` and ``full``).
        target_log_q: (N,) in-batch logQ of the targets (zeros without the correction).
        negative_log_q: logQ of a uniform negative (0 without the correction).
        num_global_queries: across processes, the queries of the global batch (None in one process).
    """

    users: np.ndarray
    tokens: TokenInputs
    query_user: Tensor
    query_position: Tensor
    target: Tensor
    own_keys: Tensor
    negatives: Tensor
    target_log_q: Tensor
    negative_log_q: float
    num_global_queries: int | None = None

    @property
    def num_queries(self) -> int:
        return int(self.target.shape[0])


def make_batch(seqs: UserSequences, users: np.ndarray, options: TrainingOptions, rng: np.random.Generator,
               positive_counts: np.ndarray, negative_pool: np.ndarray) -> Batch:
    """The batch of ``users`` (a pure function of the arguments and ``rng``'s state)."""
    return _make_batch(seqs, users, options, rng, positive_counts, negative_pool, collate=True)


def _make_batch(seqs: UserSequences, users: np.ndarray, options: TrainingOptions, rng: np.random.Generator,
                positive_counts: np.ndarray, negative_pool: np.ndarray, *, collate: bool) -> Batch:
    """``make_batch``; without ``collate`` the tokens are left out (None)."""
    queries: Queries = sample_queries(seqs, users, options.objective, rng, num_positions=options.num_positions,
                                      max_targets=options.max_targets)
    num_negatives = options.num_random_negatives if options.negatives in ("mixed", "random") else 0
    negatives = negative_pool[rng.integers(0, len(negative_pool), num_negatives)]
    # Uniform negatives alone: every candidate's logQ (the positive's included) is the same constant,
    # which cancels in the softmax, so there is nothing to correct.
    correct = options.log_q_correction and options.negatives in ("mixed", "in_batch")
    target_log_q = (in_batch_log_q(positive_counts, queries.target) if correct
                    else np.zeros(len(queries), np.float32))
    t = torch.from_numpy
    return Batch(
        users=users,
        tokens=collate_tokens(seqs, users) if collate else None,
        query_user=t(queries.user),
        query_position=t(queries.position),
        target=t(queries.target),
        own_keys=t(own_positive_keys(seqs, users)),
        negatives=t(negatives.astype(np.int64)),
        target_log_q=t(target_log_q),
        negative_log_q=math.log(num_negatives / len(negative_pool)) if correct and num_negatives else 0.0,
    )


def make_shard_batch(seqs: UserSequences, global_users: np.ndarray, rank: int, world_size: int,
                     options: TrainingOptions, rng: np.random.Generator, positive_counts: np.ndarray,
                     negative_pool: np.ndarray) -> Batch:
    """Process ``rank``'s part of the global batch ``global_users`` (sorted rows of ``seqs``).

    The queries, negatives and logQ are drawn for the whole global batch exactly as ``make_batch``
    draws them in one process (same ``rng``), then this process keeps the queries of its users
    (``distributed.shard_users``); the negatives are the same on every process. A process whose slice
    is empty (a last batch with fewer users than processes) gets the first user's tokens and no query,
    so that it still takes part in the collectives of the step.
    """
    whole = _make_batch(seqs, global_users, options, rng, positive_counts, negative_pool, collate=False)
    bounds = np.cumsum([0] + [len(part) for part in np.array_split(global_users, world_size)])
    lo, hi = int(bounds[rank]), int(bounds[rank + 1])
    users = shard_users(global_users, rank, world_size)
    keep = ((whole.query_user >= lo) & (whole.query_user < hi)).nonzero().squeeze(1)
    keys = whole.own_keys
    own = (keys >= lo * seqs.num_pins) & (keys < hi * seqs.num_pins)
    if len(users) == 0:
        users = global_users[:1]
    return Batch(
        users=users,
        tokens=collate_tokens(seqs, users),
        query_user=whole.query_user[keep] - lo,
        query_position=whole.query_position[keep],
        target=whole.target[keep],
        own_keys=keys[own] - lo * seqs.num_pins,
        negatives=whole.negatives,
        target_log_q=whole.target_log_q[keep],  # log(N * freq) with N the global batch's queries
        negative_log_q=whole.negative_log_q,
        num_global_queries=whole.num_queries,
    )


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def batch_loss(model: PinnerFormer, batch: Batch, options: TrainingOptions, device: torch.device) -> Tensor:
    """The batch's loss (forward under bf16 autocast on CUDA, the softmax in float32)."""
    d = lambda x: x.to(device, non_blocking=True)  # noqa: E731
    with _autocast(device):
        out = model(batch.tokens.to(device))  # (B, L, E)
        queries = out[d(batch.query_user), d(batch.query_position)]  # (N, E)
        if options.negatives == "full":
            pins = model.embed_pins(torch.arange(model.num_pins, device=device))
        else:
            candidates = torch.cat([batch.target, batch.negatives])
            unique, inverse = torch.unique(d(candidates), return_inverse=True)
            pins = model.embed_pins(unique)[inverse]
    temperature = model.temperature
    if options.negatives == "full":
        return full_softmax_loss(queries, d(batch.target), pins, temperature)
    n = batch.num_queries
    return sampled_softmax_loss(
        queries, d(batch.query_user), d(batch.target), pins[:n], temperature,
        num_pins=model.num_pins, own_keys=d(batch.own_keys), in_batch=options.negatives != "random",
        negatives=d(batch.negatives), negative_embeddings=pins[n:],
        target_log_q=d(batch.target_log_q) if options.log_q_correction else None,
        negative_log_q=batch.negative_log_q if options.log_q_correction else None,
    )


def shard_batch_loss(model: PinnerFormer | torch.nn.parallel.DistributedDataParallel, batch: Batch,
                     options: TrainingOptions, device: torch.device, world_size: int) -> Tensor:
    """This process's share of the global batch's loss (a collective in the in-batch modes).

    ``world_size / N`` times the summed cross-entropy of this process's queries (N = the global batch's
    queries, ``batch.num_global_queries``): the mean over processes, which DistributedDataParallel's
    gradient averaging takes, is the single-process mean loss of the global batch. The in-batch
    candidates are every process's targets (``distributed.gather_candidates``); ``random`` and ``full``
    use none, so they gather nothing.

    Args:
        model: the model, or it wrapped in DistributedDataParallel (the user tower then runs through it).
        batch: ``make_shard_batch``'s.
        world_size: W.
    """
    core = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    if batch.num_global_queries is None:
        raise ValueError("shard_batch_loss needs a batch of make_shard_batch (num_global_queries is None)")
    d = lambda x: x.to(device, non_blocking=True)  # noqa: E731
    with _autocast(device):
        out = model(batch.tokens.to(device))  # (B, L, E)
        queries = out[d(batch.query_user), d(batch.query_position)]  # (N_local, E)
        if options.negatives == "full":
            pins = core.embed_pins(torch.arange(core.num_pins, device=device))
        else:
            candidates = torch.cat([batch.target, batch.negatives])
            unique, inverse = torch.unique(d(candidates), return_inverse=True)
            pins = core.embed_pins(unique)[inverse]
    temperature = core.temperature
    scale = world_size / max(batch.num_global_queries, 1)
    if options.negatives == "full":
        return full_softmax_loss(queries, d(batch.target), pins, temperature, reduction="sum") * scale
    n = batch.num_queries
    query_user, targets, target_emb = d(batch.query_user), d(batch.target), pins[:n]
    target_log_q, own_keys, columns = d(batch.target_log_q), d(batch.own_keys), None
    in_batch = options.negatives != "random"
    if in_batch:
        gathered = gather_candidates(target_emb, targets, target_log_q, own_keys, num_users=len(batch.users),
                                     num_pins=core.num_pins)
        query_user = query_user + gathered.user_offset
        targets, target_emb, target_log_q = gathered.pins, gathered.embeddings, gathered.log_q
        own_keys = gathered.own_keys
        columns = gathered.column_offset + torch.arange(n, device=device)
    return sampled_softmax_loss(
        queries, query_user, targets, target_emb, temperature,
        num_pins=core.num_pins, own_keys=own_keys, in_batch=in_batch,
        negatives=d(batch.negatives), negative_embeddings=pins[n:],
        target_log_q=target_log_q if options.log_q_correction else None,
        negative_log_q=batch.negative_log_q if options.log_q_correction else None,
        target_columns=columns, reduction="sum",
    ) * scale


# ---- embedding and validation -------------------------------------------------------------------


@torch.no_grad()
def embed_users(model: PinnerFormer, seqs: UserSequences, device: torch.device | str = "cpu",
                batch_size: int = 256) -> np.ndarray:
    """(U, E) float32 user embeddings at each user's latest input token."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = np.empty((seqs.num_users, model.config.embedding_dim), dtype=np.float32)
    for a in range(0, seqs.num_users, batch_size):
        users = np.arange(a, min(a + batch_size, seqs.num_users))
        with _autocast(device):
            out[users] = model.embed_users(collate_tokens(seqs, users).to(device)).float().cpu().numpy()
    model.train(was_training)
    return out


@torch.no_grad()
def embed_all_pins(model: PinnerFormer, device: torch.device | str = "cpu", chunk_size: int = 65_536) -> np.ndarray:
    """(P, E) float32 pin embeddings of every pin row (``PinnerFormer.embed_pins``)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    parts = []
    for a in range(0, model.num_pins, chunk_size):
        with _autocast(device):
            rows = torch.arange(a, min(a + chunk_size, model.num_pins), device=device)
            parts.append(model.embed_pins(rows).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, model.config.embedding_dim), np.float32)


def evaluate_future(model: PinnerFormer, seqs: UserSequences, *, mode: str = "window", k: int = 10,
                    split: str = "validation", device: torch.device | str = "cpu",
                    batch_size: int = 256) -> RankingMetrics:
    """Rank each user's future positives among all pins (full ranking, the input history masked).

    Args:
        seqs: sequences with future positives (``build_user_sequences`` with a cutoff).
        mode: ``next`` (the first future positive) or ``window`` (all of them).
        k: the cut-off of hr/recall/ndcg.
        split: names the slice in the protocol string.
    """
    users = embed_users(model, seqs, device, batch_size)
    pins = embed_all_pins(model, device)
    what = "first future positive" if mode == "next" else "future positives within the window"
    protocol = (f"user {what} | full ranking over all pins, input history masked | {split} | "
                "ties pessimistic")
    return evaluate_ranking(EmbeddingScorer(pins, users, model.similarity), seqs.future_matrix(mode), protocol=protocol,
                            seen=seqs.history_matrix(), ks=(k,))


# ---- the loop -----------------------------------------------------------------------------------


@dataclass
class TrainingState:
    """Everything a checkpoint restores (besides the model and optimizer)."""

    epoch: int = 1
    next_batch: int = 0
    step: int = 0
    epoch_loss_sum: float = 0.0
    epoch_batches: int = 0
    epoch_users: int = 0
    epoch_seconds: float = 0.0
    users: int = 0
    queries: int = 0
    seconds: float = 0.0
    batch_seconds: float = 0.0  # of ``seconds``: building batches on the main thread
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False
    stopped_early: bool = False


@dataclass
class TrainingOutcome:
    """What ``train`` did. ``model`` holds the best epoch's weights (or the last ones if interrupted or
    trained without validation). Rates count training steps only (validation excluded);
    ``batch_build_share`` is the part of that step time spent building batches (queries, negatives, token
    tensors) on the main thread. On CUDA the device has nothing else to run meanwhile but what is left of
    the previous step's optimizer update (the loss and gradient norm are read back before it), so the share
    is close to the time it waits on batch building."""

    model: PinnerFormer
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    interrupted: bool
    steps: int
    users: int
    queries: int
    train_seconds: float
    users_per_s: float
    queries_per_s: float
    batch_build_share: float = 0.0


def has_labels(seqs: UserSequences, objective: str) -> bool:
    """Whether ``objective`` finds at least one (position, target) pair in ``seqs``."""
    if objective in ("next_action", "all_action"):
        events = seqs.input_end - 1
    else:
        lengths = seqs.token_lengths
        events = np.repeat(seqs.input_start - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(lengths.sum())
    if objective in ("next_action", "sasrec"):
        return bool((seqs.next_positive(events) >= 0).any())
    lo, hi = seqs.window_bounds(events)
    return bool((hi > lo).any())


def data_fingerprint(seqs: UserSequences) -> str:
    """A short hash of the training sequences (a checkpoint only resumes on the same data)."""
    h = hashlib.sha256()
    for array in (seqs.ptr, seqs.input_start, seqs.input_end, seqs.pins, seqs.actions, seqs.surfaces, seqs.ts,
                  seqs.positive, seqs.duration_s):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(np.asarray([seqs.num_pins, seqs.window_s], np.int64).tobytes())
    return h.hexdigest()[:16]


def _fingerprint(model: PinnerFormer, options: TrainingOptions, data: str, world_size: int = 1) -> dict[str, Any]:
    opts = {k: v for k, v in options.to_dict().items() if k not in _RUNTIME_OPTIONS}
    out = {"model_type": "pinnerformer", "model": model.config.to_dict(), "options": opts, "data": data}
    if world_size > 1:  # the global batch is batch_size * world_size: resume with the same world
        out["world_size"] = world_size
    return out


def _step_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    key = [seed, epoch, batch, 0xD40] + ([rank] if rank else [])
    return int(np.random.default_rng(key).integers(0, 2**62))


def _check_same_inputs(model: PinnerFormer, fingerprint: dict[str, Any]) -> None:
    """Every process must train the same model on the same data and pin table (a collective)."""
    table = b"" if model.config.id_only else model.pin_table.cpu().numpy().tobytes() + \
        model.pin_known.cpu().numpy().tobytes()
    mine = (fingerprint, hashlib.sha256(table).hexdigest()[:16])
    every: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(every, mine)
    differ = [r for r, other in enumerate(every) if other != every[0]]
    if differ:
        raise ValueError(f"processes {differ} have other sequences, options, model config or pin table than "
                         "rank 0; every process must load the same inputs")


def train(
    model: PinnerFormer,
    seqs: UserSequences,
    options: TrainingOptions,
    *,
    valid: UserSequences | None = None,
    device: torch.device | str = "cpu",
    checkpoint_path: str | Path | None = None,
    resume: bool = True,
    negative_pool: np.ndarray | None = None,
) -> TrainingOutcome:
    """Train ``model`` in place on ``seqs``, validating on ``valid`` after each epoch.

    In a process group of W > 1 processes (module docstring) every process calls ``train`` with the same
    arguments: ``batch_size`` is then per process, CUDA device ``cuda`` means ``cuda:<current device>``
    (``distributed.init_process_group`` sets it to the local rank), rank 0 alone logs, validates and
    writes ``checkpoint_path`` (which every process reads to resume), and every process returns the same
    weights (and the same losses and metrics in its history; the timings are its own).

    Args:
        model: a freshly built model (a PinSage-mode one with its pin table attached); initialized here
            from ``options.seed`` unless resumed.
        seqs: the training sequences.
        options: see ``TrainingOptions``.
        valid: validation sequences with future positives (None: no validation, no early stopping).
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ...
        checkpoint_path: where checkpoints go (None: none).
        resume: continue from ``checkpoint_path`` when it exists.
        negative_pool: pin rows uniform negatives are drawn from (default: every known pin row).

    Returns:
        The outcome.

    Raises:
        ValueError: no training users, a checkpoint of another configuration, data or world size,
            processes with different inputs.
        FloatingPointError: a non-finite loss or gradient norm (names step, epoch, batch and users).
    """
    if seqs.num_users == 0:
        raise ValueError("train needs at least one training user (all were dropped or none were given)")
    if seqs.num_pins != model.num_pins:
        raise ValueError(f"the sequences have {seqs.num_pins} pin rows but the model has {model.num_pins}; "
                         "attach the pin table the sequences were mapped with")
    if model.config.id_only and (seqs.pins < 0).any():
        raise ValueError(f"{int((seqs.pins < 0).sum())} events have pin row -1 (not in the PinSage table), but "
                         "an id-only model has an embedding for every item row and no unknown-pin token")
    if not has_labels(seqs, options.objective):
        raise ValueError(
            f"objective {options.objective!r} finds no labels in the training sequences: next_action and "
            "all_action need future positives after each input (build_user_sequences with cutoff_ts), "
            "sasrec and dense_all_action a positive after some input token"
        )
    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    rank, world_size = world()
    if world_size > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    torch.manual_seed(options.seed)
    fresh = type(model)(model.config)
    model.load_state_dict(fresh.state_dict())  # initialization from the seed alone
    model.to(device)  # the pin table (a buffer) moves with it
    if negative_pool is None:
        negative_pool = (np.arange(model.num_pins) if model.config.id_only
                         else np.flatnonzero(model.pin_known.cpu().numpy()))
    negative_pool = np.asarray(negative_pool, dtype=np.int64)
    if len(negative_pool) == 0:
        raise ValueError("the negative pool is empty (no known pin rows)")
    optimizer = (torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay,
                                   betas=options.adam_betas)
                 if options.weight_decay
                 else torch.optim.Adam(model.parameters(), lr=options.learning_rate, betas=options.adam_betas))
    state, best_state = TrainingState(), None
    checkpoint = Path(checkpoint_path) if checkpoint_path is not None else None
    fingerprint = _fingerprint(model, options, data_fingerprint(seqs), world_size)
    if world_size > 1:
        _check_same_inputs(model, fingerprint)
    ema = WeightAverage(model, options.ema_decay) if options.ema_decay else None
    if checkpoint is not None and resume and checkpoint.exists():
        ckpt = load_checkpoint(checkpoint, fingerprint, checkpoint_format=CHECKPOINT_FORMAT)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state, best_state = TrainingState(**ckpt["state"]), ckpt["best_state"]
        if ema is not None:
            ema.load(ckpt["ema"])
        log.info("resumed from %s at epoch %d batch %d (step %d)", checkpoint, state.epoch, state.next_batch,
                 state.step)

    net: PinnerFormer | torch.nn.parallel.DistributedDataParallel = model
    if world_size > 1:
        # The pin table is input, not trained, and the same everywhere (_check_same_inputs): DDP does not
        # broadcast it, neither at the start nor before each forward (the only other buffer holds the
        # time features' few periods).
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, ["pin_table", "pin_known"])
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    positive_counts = seqs.positive_counts()
    global_batch_size = options.batch_size * world_size
    num_batches = math.ceil(seqs.num_users / global_batch_size)
    metric = f"{'hr' if options.valid_mode == 'next' else 'recall'}@{options.eval_k}"
    interrupted = False
    run_started = time.perf_counter()
    total_steps = options.num_epochs * num_batches
    if options.max_steps is not None:
        total_steps = min(total_steps, options.max_steps)
    steps_left_at_start = total_steps - ((state.epoch - 1) * num_batches + state.next_batch)

    def checkpoint_now() -> None:
        if checkpoint is not None and rank == 0:
            save_checkpoint(checkpoint, model, optimizer, state, best_state, fingerprint,
                            checkpoint_format=CHECKPOINT_FORMAT,
                            extra={"ema": ema.tensors()} if ema is not None else None)

    while not state.finished and state.epoch <= options.num_epochs:
        order = np.random.default_rng([options.seed, state.epoch]).permutation(seqs.num_users)
        model.train()
        started = time.perf_counter()
        last_log = started
        for b in range(state.next_batch, num_batches):
            t0 = time.perf_counter()
            users = np.sort(order[b * global_batch_size:(b + 1) * global_batch_size])
            rng = np.random.default_rng([options.seed, state.epoch, b])
            if world_size == 1:
                batch = make_batch(seqs, users, options, rng, positive_counts, negative_pool)
                num_queries = batch.num_queries
            else:
                batch = make_shard_batch(seqs, users, rank, world_size, options, rng, positive_counts, negative_pool)
                num_queries = batch.num_global_queries
            built = time.perf_counter()
            if num_queries == 0:  # the global batch's count: every process skips together
                if rank == 0:
                    log.warning("epoch %d batch %d has no labels (objective %s); skipped", state.epoch, b + 1,
                                options.objective)
                state.next_batch = b + 1
                continue
            # Dropout, as a function of the batch (and of the process).
            torch.manual_seed(_step_seed(options.seed, state.epoch, b, rank))
            if world_size == 1:
                loss = batch_loss(model, batch, options, device)
                loss_value = float(loss.detach())
            else:
                loss = shard_batch_loss(net, batch, options, device, world_size)
                total = loss.detach().clone()
                torch.distributed.all_reduce(total)  # the global batch's mean loss, the same on every process
                loss_value = float(total) / world_size
            where = lambda: (f"step {state.step + 1} (epoch {state.epoch}, batch {b + 1}/{num_batches}, "  # noqa: E731
                             f"users {seqs.user_ids[users[:5]].tolist()}{'...' if len(users) > 5 else ''})")
            if not math.isfinite(loss_value):
                _stop_on_nan(f"loss is {loss_value} at {where()}", checkpoint, checkpoint_now)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip_norm))
            if not math.isfinite(grad_norm):
                _stop_on_nan(f"gradient norm is {grad_norm} at {where()}", checkpoint, checkpoint_now)
            optimizer.step()
            if ema is not None:
                ema.update(state.step)
            t1 = time.perf_counter()
            state.step += 1
            state.next_batch = b + 1
            state.epoch_loss_sum += loss_value
            state.epoch_batches += 1
            state.epoch_users += len(users)
            state.epoch_seconds += t1 - t0
            state.users += len(users)
            state.queries += num_queries
            state.seconds += t1 - t0
            state.batch_seconds += built - t0
            if rank == 0 and (t1 - last_log >= options.log_every_s or b + 1 == num_batches):
                last_log = t1
                rate = state.epoch_batches / max(state.epoch_seconds, 1e-9)
                done = state.step - (total_steps - steps_left_at_start)
                run_rate = max(done, 1) / max(time.perf_counter() - run_started, 1e-9)
                log.info("epoch %d batch %d/%d: loss %.4f, %.0f users/s, %.0f queries/s, ETA epoch %.0f s, "
                         "ETA run %.0f s (early stopping may end it sooner)", state.epoch, b + 1, num_batches,
                         state.epoch_loss_sum / state.epoch_batches, state.epoch_users / max(state.epoch_seconds, 1e-9),
                         state.queries / max(state.seconds, 1e-9), (num_batches - b - 1) / max(rate, 1e-9),
                         max(steps_left_at_start - done, 0) / run_rate)
            if options.max_steps is not None and state.step >= options.max_steps:
                interrupted = True
                break
            if options.checkpoint_every_steps and state.step % options.checkpoint_every_steps == 0:
                checkpoint_now()
        if interrupted:
            checkpoint_now()
            if rank == 0:
                log.info("stopped after %d steps (max_steps); checkpoint %s", state.step, checkpoint)
            break

        record: dict[str, float] = {
            "epoch": state.epoch,
            "train_loss": state.epoch_loss_sum / max(state.epoch_batches, 1),
            "users_per_s": state.epoch_users / max(state.epoch_seconds, 1e-9),
            "epoch_seconds": time.perf_counter() - started,
            "temperature": float(model.temperature.detach()),
        }
        if valid is not None:
            def validate(prefix: str) -> dict[str, float]:
                result = evaluate_future(model, valid, mode=options.valid_mode, k=options.eval_k, device=device,
                                         batch_size=options.eval_batch_size)
                return {f"{prefix}{name}": float(values.mean()) if len(values) else float("nan")
                        for name, values in result.values.items()}

            metrics: list[Any] = [None]
            if rank == 0:
                metrics = [validate("valid_raw_") if ema is not None else {}]
                with ema.swapped_in() if ema is not None else contextlib.nullcontext():
                    metrics[0].update(validate("valid_"))
            if world_size > 1:  # every process takes rank 0's decision (and keeps the same best weights)
                torch.distributed.broadcast_object_list(metrics, src=0)
            record.update(metrics[0])
            value = record[f"valid_{metric}"]
            if value > state.best_metric:
                state.best_metric, state.best_epoch, state.bad_epochs = value, state.epoch, 0
                with ema.swapped_in() if ema is not None else contextlib.nullcontext():
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                state.bad_epochs += 1
            if state.bad_epochs >= options.patience:
                state.finished = state.stopped_early = True
                if rank == 0:
                    log.info("early stop after epoch %d: no better valid %s for %d epochs (best %.4f at epoch %d)",
                             state.epoch, metric, state.bad_epochs, state.best_metric, state.best_epoch)
        state.history.append(record)
        if rank == 0:
            log.info("epoch %d: %s", state.epoch, {k: round(v, 4) for k, v in record.items()})
        state.epoch += 1
        state.next_batch = 0
        state.epoch_loss_sum, state.epoch_batches, state.epoch_users, state.epoch_seconds = 0.0, 0, 0, 0.0
        checkpoint_now()

    if not interrupted and best_state is not None:
        model.load_state_dict(best_state)
    elif not interrupted and ema is not None:  # no validation: the averaged weights are the result
        ema.copy_to_model()
    return TrainingOutcome(
        model=model,
        history=copy.deepcopy(state.history),
        best_epoch=state.best_epoch,
        stopped_early=state.stopped_early,
        interrupted=interrupted,
        steps=state.step,
        users=state.users,
        queries=state.queries,
        train_seconds=state.seconds,
        users_per_s=state.users / max(state.seconds, 1e-9),
        queries_per_s=state.queries / max(state.seconds, 1e-9),
        batch_build_share=state.batch_seconds / max(state.seconds, 1e-9),
    )


class WeightAverage:
    """An exponential moving average of a model's parameters (``TrainingOptions.ema_decay``).

    Buffers are not averaged: the model's own are used with the averaged parameters. Every process of a
    DDP run updates its copy from the same synchronized parameters, so the copies stay equal."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.params = [p for p in model.parameters()]
        self.average = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Blend in the parameters after optimizer step ``step`` (0-based)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - decay)

    @contextlib.contextmanager
    def swapped_in(self):
        """The model holds the averaged parameters inside the block, its own again after it."""
        raw = [p.detach().clone() for p in self.params]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], raw)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        torch._foreach_copy_([p.data for p in self.params], self.average)

    def tensors(self) -> list[Tensor]:
        return [a.detach().cpu() for a in self.average]

    def load(self, tensors: list[Tensor]) -> None:
        if len(tensors) != len(self.average):
            raise ValueError(f"the checkpoint's weight average has {len(tensors)} tensors, the model "
                             f"{len(self.average)} parameters")
        with torch.no_grad():
            torch._foreach_copy_(self.average, [t.to(a.device) for t, a in zip(tensors, self.average)])


def _stop_on_nan(message: str, checkpoint: Path | None, checkpoint_now) -> None:
    """Keep a checkpoint of the weights before the failing step, then stop the run."""
    checkpoint_now()
    kept = f"checkpoint of the weights before this step kept at {checkpoint}" if checkpoint is not None \
        else "no checkpoint_path was given, so no checkpoint was written"
    raise FloatingPointError(f"{message}; {kept}")
