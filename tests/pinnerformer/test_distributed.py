"""Training across processes: 2 CPU processes (gloo, one torch thread each) against one process.

The equivalence under test (training.py's module docstring): with dropout 0, W processes of batch B
take the step one process of batch W * B takes, so loss, gradients and weights agree up to float
summation order.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from embeddings.pinnerformer.data import SequenceOptions
from embeddings.pinnerformer.distributed import (
    DistributedEnv,
    destroy_process_group,
    init_process_group,
    shard_users,
    torchrun_env,
)
from embeddings.pinnerformer.model import build_model
from embeddings.pinnerformer.training import (
    TrainingOptions,
    batch_loss,
    make_batch,
    make_shard_batch,
    shard_batch_loss,
    train,
)
from tests.pinnerformer.tiny_data import cycle_sequences, one_torch_thread, tiny_config  # noqa: F401

WORLD = 2
WINDOW = SequenceOptions(max_length=16, window_days=2.5 / 24)
OPTIONS = TrainingOptions(num_random_negatives=16, batch_size=8, num_epochs=2, learning_rate=1e-2, log_every_s=600)
# (objective, negatives): in-batch negatives gathered (with and without uniform ones), and the two
# modes that gather nothing.
CASES = [("dense_all_action", "in_batch"), ("dense_all_action", "mixed"), ("sasrec", "in_batch"),
         ("sasrec", "random"), ("sasrec", "full")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(task: str, out_dir: Path) -> list[dict]:
    """Run ``_TASKS[task]`` on WORLD processes joined by gloo; each returns a dict (saved by rank)."""
    mp.spawn(_worker, args=(task, _free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"{task}-rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _worker(rank: int, task: str, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    init_process_group(DistributedEnv(rank=rank, local_rank=rank, world_size=WORLD), backend="gloo",
                       timeout_s=120)
    try:
        torch.save(_TASKS[task](rank, Path(out_dir)), Path(out_dir) / f"{task}-rank{rank}.pt")
    finally:
        destroy_process_group()


def _first_global_batch(seqs, options: TrainingOptions) -> np.ndarray:
    """The users of epoch 1's first step with a global batch of WORLD * batch_size (as ``train`` takes it)."""
    order = np.random.default_rng([options.seed, 1]).permutation(seqs.num_users)
    return np.sort(order[:WORLD * options.batch_size])


def _step(model, seqs, options, rank: int | None):
    """Loss, gradients and number of queries of epoch 1's first step: one process (rank None) or this
    process's share (the loss and gradients of the global batch, its own queries)."""
    users = _first_global_batch(seqs, options)
    rng = np.random.default_rng([options.seed, 1, 0])
    counts, pool = seqs.positive_counts(), np.arange(seqs.num_pins)
    if rank is None:
        batch = make_batch(seqs, users, options, rng, counts, pool)
        loss = batch_loss(model, batch, options, torch.device("cpu"))
        value = float(loss.detach())
    else:
        batch = make_shard_batch(seqs, users, rank, WORLD, options, rng, counts, pool)
        net = torch.nn.parallel.DistributedDataParallel(model)
        loss = shard_batch_loss(net, batch, options, torch.device("cpu"), WORLD)
        total = loss.detach().clone()
        torch.distributed.all_reduce(total)
        value = float(total) / WORLD
    loss.backward()
    return value, {k: p.grad.clone() for k, p in model.named_parameters()}, batch.num_queries


def _case_options(objective: str, negatives: str, **overrides) -> TrainingOptions:
    return dataclasses.replace(OPTIONS, objective=objective, negatives=negatives, **overrides)


def _one_step_task(rank: int, out_dir: Path) -> dict:
    seqs = cycle_sequences(options=WINDOW)
    out = {}
    for objective, negatives in CASES:
        options = _case_options(objective, negatives)
        torch.manual_seed(0)
        loss, grads, queries = _step(build_model(tiny_config()), seqs, options, rank)
        trained = train(build_model(tiny_config()), seqs, dataclasses.replace(options, max_steps=1)).model
        out[objective, negatives] = {"loss": loss, "grads": grads, "queries": queries,
                                     "weights": trained.state_dict()}
    return out


def _training_task(rank: int, out_dir: Path) -> dict:
    # 41 users in global batches of 8: the last one has a single user, so rank 1 sits it out (no query).
    seqs = cycle_sequences(options=WINDOW, num_users=41)
    valid = cycle_sequences(cutoff_step=14, options=WINDOW, num_users=41)
    options = dataclasses.replace(OPTIONS, batch_size=4, num_epochs=3, patience=1, valid_mode="next")
    outcome = train(build_model(tiny_config(dropout=0.1)), seqs, options, valid=valid,
                    checkpoint_path=out_dir / f"ckpt-{rank}.pt")
    return {"weights": outcome.model.state_dict(), "steps": outcome.steps, "users": outcome.users,
            "history": [{k: v for k, v in h.items() if k not in ("users_per_s", "epoch_seconds")}
                        for h in outcome.history], "best_epoch": outcome.best_epoch}


_TASKS = {"one_step": _one_step_task, "training": _training_task}


@pytest.mark.slow
def test_two_processes_take_the_step_one_process_takes_with_the_global_batch(tmp_path, one_torch_thread):  # noqa: F811
    ranks = _spawn("one_step", tmp_path)
    seqs = cycle_sequences(options=WINDOW)
    for objective, negatives in CASES:
        options = _case_options(objective, negatives)
        case = f"{objective}/{negatives}"
        torch.manual_seed(0)
        single = build_model(tiny_config())
        loss, grads, queries = _step(single, seqs, options, rank=None)
        shares = [r[objective, negatives] for r in ranks]
        assert sum(s["queries"] for s in shares) == queries and all(s["queries"] > 0 for s in shares), case
        for share in shares:
            assert share["loss"] == pytest.approx(loss, abs=1e-5), case
            for name, grad in grads.items():  # DDP averaged: the same on both processes
                torch.testing.assert_close(share["grads"][name], grad, atol=1e-6, rtol=1e-4, msg=f"{case} {name}")
        # One Adam step moves each weight by about lr * sign(gradient); where the gradient is zero up to
        # rounding (the attention key biases: the softmax ignores them) the sign is the rounding's, so
        # those few elements are left out of the comparison.
        wide = dataclasses.replace(options, batch_size=WORLD * options.batch_size, max_steps=1)
        weights = train(build_model(tiny_config()), seqs, wide).model.state_dict()
        skipped = 0
        for name, value in weights.items():
            grad = grads[name]
            decided = (grad.abs() > 1e-6) | (grad == 0)
            skipped += int((~decided).sum())
            for share in shares:
                torch.testing.assert_close(share["weights"][name][decided], value[decided], atol=1e-5, rtol=1e-4,
                                           msg=f"{case} {name}")
        total = sum(v.numel() for v in weights.values())
        assert skipped < 0.01 * total, f"{case}: {skipped} of {total} weights have a gradient of rounding size"


@pytest.mark.slow
def test_a_two_process_run_ends_with_the_same_weights_on_every_process(tmp_path):
    first, second = _spawn("training", tmp_path)
    assert first["steps"] == second["steps"] == 3 * 6  # ceil(41 / 8) global steps per epoch
    assert first["users"] == 3 * 41  # counted over the global batches
    for name, value in first["weights"].items():
        assert torch.equal(value, second["weights"][name]), name
    assert first["history"] == second["history"] and first["best_epoch"] == second["best_epoch"]
    assert all(np.isfinite(h["train_loss"]) for h in first["history"])
    assert (tmp_path / "ckpt-0.pt").exists() and not (tmp_path / "ckpt-1.pt").exists()  # rank 0 alone writes


def test_torchrun_env_reads_the_three_variables():
    assert torchrun_env({}) is None
    assert torchrun_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == DistributedEnv(3, 1, 4)
    with pytest.raises(ValueError, match=r"only \['WORLD_SIZE', 'RANK'\] are set"):
        torchrun_env({"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(ValueError, match="inconsistent torchrun environment: WORLD_SIZE=2, RANK=2"):
        torchrun_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})
    assert init_process_group(DistributedEnv(0, 0, 1)) is None  # one process: nothing to join


def test_shards_are_contiguous_balanced_and_cover_the_batch():
    users = np.arange(10, 17)
    parts = [shard_users(users, r, 3) for r in range(3)]
    assert [p.tolist() for p in parts] == [[10, 11, 12], [13, 14], [15, 16]]
    assert shard_users(np.array([5]), 1, 2).tolist() == []
    with pytest.raises(ValueError, match=r"rank must lie in \[0, 2\)"):
        shard_users(users, 2, 2)
