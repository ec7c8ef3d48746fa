"""A quick sanity run of the PinnerFormer library on an S3-Rec file (not the benchmark: no result is recorded).

Reads ``<name>.txt`` through the project's importer (``embeddings.data.importers.s3rec.read_s3rec``),
splits it leave-one-out (``embeddings.eval.protocols.leave_one_out``), trains the id-only model with
the chosen objective for a bounded number of steps, and scores the test items with the project's
leave-one-out full ranking (history masked, ``evaluate_users``). It checks that loading, batching,
training and evaluation fit together and prints the rate; the bars of issue 6 need the full run of
the benchmark (later).

    .venv/bin/python -m bench.pinnerformer_sanity --dataset Beauty --max-steps 150
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from embeddings.data.importers.s3rec import read_s3rec
from embeddings.data.schemas import Action
from embeddings.eval.protocols import LEAVE_ONE_OUT, Protocol, Sequences, evaluate_users, leave_one_out
from embeddings.eval.scorers import EmbeddingScorer
from embeddings.pinnerformer.data import SequenceOptions, UserSequences, build_user_sequences
from embeddings.pinnerformer.model import PinnerFormerConfig, build_model
from embeddings.pinnerformer.training import TrainingOptions, embed_all_pins, embed_users, train

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "s3rec"
T0 = 1_577_836_800  # 2020-01-01T00:00:00Z, the importer's epoch


def _user_sequences(history: Sequences, targets, max_length: int) -> UserSequences:
    """History as input (one second per action, as the importer's ts rule), each target one second later."""
    lengths = history.lengths
    users = np.repeat(np.arange(history.num_users), lengths)
    ts = T0 + np.arange(len(users)) - np.repeat(history.ptr[:-1], lengths)
    cutoff = np.repeat(T0 + lengths - 1, lengths)
    if targets is not None:
        t = targets.tocoo()
        users = np.r_[users, t.row]
        ts = np.r_[ts, T0 + lengths[t.row]]
        cutoff = np.r_[cutoff, T0 + lengths[t.row] - 1]
        items = np.r_[history.items, t.col]
    else:
        items = history.items
        cutoff = None
    n = len(users)
    return build_user_sequences(users, items, np.full(n, Action.SAVE.code), np.zeros(n), np.full(n, np.nan), ts,
                                num_pins=history.num_items, now_ts=T0 + 10**7, cutoff_ts=cutoff,
                                options=SequenceOptions(max_length=max_length, window_days=10**4))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Beauty", choices=["Beauty", "LastFM"])
    parser.add_argument("--objective", default="sasrec")
    parser.add_argument("--negatives", default="full")
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    data = read_s3rec(DATA, args.dataset)
    events = data.events
    items, item_rows = np.unique(events.column("pin_id").to_numpy(), return_inverse=True)
    users, user_rows = np.unique(events.column("user_id").to_numpy(), return_inverse=True)
    seqs = Sequences.from_events(user_rows, item_rows, events.column("ts").to_numpy(), len(users), len(items))
    split = leave_one_out(seqs)
    train_seqs = _user_sequences(split.train, None, args.max_length)
    test_seqs = _user_sequences(split.test.history, split.test.targets, args.max_length)
    print(f"{args.dataset}: {len(users)} users, {len(items)} items, {len(seqs.items)} actions; loaded and split in "
          f"{time.perf_counter() - started:.1f} s")
    print(f"train sequences: {train_seqs.counts.as_dict()}")
    print(f"test sequences: {test_seqs.counts.as_dict()}")

    torch.manual_seed(args.seed)
    config = PinnerFormerConfig(num_items=len(items), item_dim=args.dim, model_dim=args.dim, embedding_dim=args.dim,
                                num_heads=2, ff_dim=args.dim, max_length=args.max_length, pin_hidden_dim=args.dim,
                                dropout=0.3, features=())
    options = TrainingOptions(objective=args.objective, negatives=args.negatives, batch_size=args.batch_size,
                              num_epochs=1000, max_steps=args.max_steps, seed=args.seed, log_every_s=20)
    model = build_model(config)
    out = train(model, train_seqs, options)
    print(f"trained {out.steps} steps in {out.train_seconds:.1f} s: {out.users_per_s:.0f} users/s, "
          f"{out.queries_per_s:.0f} queries/s")

    t0 = time.perf_counter()
    user_vectors = np.ones((len(users), config.embedding_dim), dtype=np.float32)  # users without targets
    user_vectors[test_seqs.user_ids] = embed_users(out.model, test_seqs)
    pin_vectors = embed_all_pins(out.model)
    protocol = Protocol(task=LEAVE_ONE_OUT, split="leave-one-out test", masking="history masked",
                        candidates="all items")
    result = evaluate_users(EmbeddingScorer(pin_vectors, user_vectors), split.test, protocol, ks=(10,))
    print(f"{result.protocol}: {result.num_queries} users, HR@10 {result.values['hr@10'].mean():.4f}, "
          f"NDCG@10 {result.values['ndcg@10'].mean():.4f} (after {out.steps} steps; evaluated in "
          f"{time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
