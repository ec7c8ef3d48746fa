"""PinnerFormer across processes (torchrun + DistributedDataParallel): the process group and the
softmax candidates gathered from every process (paper Sec. 3.3, issue 6 point 3).

Under ``torchrun --nproc_per_node W`` each process trains on its slice of every global batch
(``shard_users``); ``training.train`` wraps the model in DistributedDataParallel when a process group of
more than one process is initialized (``init_process_group``). The in-batch negatives of a query are
the targets of every query of the global batch, not only of its own process: ``gather_candidates``
all-gathers each process's target pin embeddings (differentiably: the gradient a process computes for
another's targets flows back to the process that embedded them), their pin rows and logQ values, and
the own-positive keys with batch rows made global, so that a user's positives are masked whichever
process embedded them.

Uniform negatives are not gathered: every process draws the same ones, from the step's seed (the
draw of a single process), and embeds them itself. Gathering W different draws would give W times as
many uniform negatives, but the step would then no longer be the single-process step with the global
batch, and ``num_random_negatives`` gives more negatives at the same pin-tower cost anyway.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process stands in a torchrun launch.

    Attributes:
        rank: 0..world_size-1 over all nodes.
        local_rank: the rank on this node (the CUDA device index).
        world_size: the number of processes.
    """

    rank: int
    local_rank: int
    world_size: int


def torchrun_env(environ: Mapping[str, str] | None = None) -> DistributedEnv | None:
    """The launch read from torchrun's ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (None: not under torchrun).

    Raises:
        ValueError: some of the three are set but not all, or they are inconsistent.
    """
    environ = os.environ if environ is None else environ
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
    present = [n for n in names if n in environ]
    if not present:
        return None
    if len(present) != len(names):
        raise ValueError(f"torchrun sets WORLD_SIZE, RANK and LOCAL_RANK together; only {present} are set")
    try:
        world_size, rank, local_rank = (int(environ[n]) for n in names)
    except ValueError as error:
        raise ValueError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers, got "
                         f"{[environ[n] for n in names]}") from error
    if world_size < 1 or not 0 <= rank < world_size or not 0 <= local_rank <= rank:
        raise ValueError(f"inconsistent torchrun environment: WORLD_SIZE={world_size}, RANK={rank}, "
                         f"LOCAL_RANK={local_rank}")
    return DistributedEnv(rank=rank, local_rank=local_rank, world_size=world_size)


def init_process_group(env: DistributedEnv | None = None, *, backend: str | None = None,
                       timeout_s: float = 1800.0) -> DistributedEnv | None:
    """Join the process group of a torchrun launch (``env://``: ``MASTER_ADDR`` / ``MASTER_PORT``).

    Args:
        env: the launch (default: ``torchrun_env()``); None or a world of one process: nothing is done.
        backend: default ``nccl`` when CUDA is available (each process then uses device ``local_rank``),
            else ``gloo``.
        timeout_s: how long a collective waits for the other processes; rank 0 validates alone at each
            epoch end while the others wait, so it must exceed a validation.

    Returns:
        The launch, or None when there is nothing to join.
    """
    env = torchrun_env() if env is None else env
    if env is None or env.world_size == 1:
        return None
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (env.rank, env.world_size):
            raise ValueError(f"a process group (rank {dist.get_rank()} of {dist.get_world_size()}) is already "
                             f"initialized, not rank {env.rank} of {env.world_size}")
        return env
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend, rank=env.rank, world_size=env.world_size,
                            timeout=timedelta(seconds=timeout_s))
    log.info("joined process group: rank %d of %d (local rank %d), backend %s", env.rank, env.world_size,
             env.local_rank, backend)
    return env


def destroy_process_group() -> None:
    """Leave the process group (nothing when none is initialized)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialized default process group; ``(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_users(global_users: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s slice of a global batch: the ``rank``-th of ``world_size`` contiguous slices whose
    sizes differ by at most one (``np.array_split``); empty only when the batch has fewer users than
    processes."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
    return np.array_split(np.asarray(global_users), world_size)[rank]


@dataclass
class GatheredCandidates:
    """The in-batch candidates of the global batch, in rank order.

    Attributes:
        embeddings: (C, E) every process's target embeddings; the rows of this process keep their
            graph, the others' send their gradient back to their process in the backward pass.
        pins: (C,) int64 their pin rows.
        log_q: (C,) float32 their logQ values.
        own_keys: (K,) int64 sorted keys ``global row * P + pin`` of every user's positives, where the
            global row of this process's local row ``b`` is ``user_offset + b``.
        column_offset: the column of this process's first target.
        user_offset: the global row of this process's first user.
    """

    embeddings: Tensor
    pins: Tensor
    log_q: Tensor
    own_keys: Tensor
    column_offset: int
    user_offset: int


def _all_gather_padded(tensor: Tensor, sizes: list[int], group) -> list[Tensor]:
    """All-gather (no gradient) 1-D tensors of different lengths: padded to the longest, then cut."""
    longest = max(sizes)
    padded = torch.cat([tensor, tensor.new_zeros(longest - len(tensor))])
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return [part[:size] for part, size in zip(parts, sizes)]


def gather_candidates(target_embeddings: Tensor, target_pins: Tensor, target_log_q: Tensor, own_keys: Tensor, *,
                      num_users: int, num_pins: int, group=None) -> GatheredCandidates:
    """All-gather the in-batch candidates of every process (a collective: every process calls it).

    Args:
        target_embeddings: (N, E) this process's target embeddings (N may differ between processes).
        target_pins: (N,) int64 their pin rows.
        target_log_q: (N,) their logQ as in-batch candidates (computed with the global query count).
        own_keys: (K,) int64 keys ``local row * P + pin`` of this process's users' positives
            (``loss.own_positive_keys``).
        num_users: this process's users (local rows are ``0..num_users-1``).
        num_pins: P.
        group: the process group (default: the default group).

    Returns:
        The global candidates (``GatheredCandidates``); the gradient of the gathered embeddings reaches
        each process's ``target_embeddings`` summed over every process that used them.
    """
    device = target_embeddings.device
    n, dim = target_embeddings.shape
    counts = torch.tensor([n, num_users, len(own_keys)], dtype=torch.int64, device=device)
    all_counts = [torch.empty_like(counts) for _ in range(dist.get_world_size(group))]
    dist.all_gather(all_counts, counts, group=group)
    sizes, users, key_sizes = (list(c) for c in zip(*(t.tolist() for t in all_counts)))
    rank = dist.get_rank(group)

    longest = max(sizes)
    padded = torch.cat([target_embeddings, target_embeddings.new_zeros(longest - n, dim)])
    with warnings.catch_warnings():
        # Deprecated in favour of a private API (torch.distributed._functional_collectives); still the
        # public autograd-aware all-gather.
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        gathered = torch.distributed.nn.functional.all_gather(padded, group=group)
    embeddings = torch.cat([part[:size] for part, size in zip(gathered, sizes)])
    pins = torch.cat(_all_gather_padded(target_pins.to(torch.int64), sizes, group))
    log_q = torch.cat(_all_gather_padded(target_log_q.to(torch.float32), sizes, group))
    user_offsets = np.concatenate([[0], np.cumsum(users)])
    keys = _all_gather_padded(own_keys.to(torch.int64), key_sizes, group)
    # Local rows -> global rows: row b of process r is user_offsets[r] + b.
    keys = torch.cat([k + int(user_offsets[r]) * num_pins for r, k in enumerate(keys)])
    return GatheredCandidates(
        embeddings=embeddings,
        pins=pins,
        log_q=log_q,
        own_keys=keys,  # sorted: each process's keys are sorted and the row offsets increase
        column_offset=int(sum(sizes[:rank])),
        user_offset=int(user_offsets[rank]),
    )
