"""Tune the S3-Rec recipe on VALID only: one seed of the bench's model, its VALID HR@10 per epoch, never TEST.

    .venv/bin/python bench/diagnostics/s3rec_valid.py Beauty --seeds 0 --dim Beauty=128 --dropout Beauty=0.5

The first argument is the dataset; every other flag is ``bench/pinnerformer_quality.py``'s (``--dim``,
``--dropout``, ``--heads``, ``--layers``, ``--lr``, ``--epochs``, ``--patience``, ``--threads``, the first of
``--seeds``), so a setting chosen here is the bench's setting by the same flags. Prints the VALID curve, the
best epoch and the seconds; records nothing (docs/PINNERFORMER.md keeps the comparisons it made).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.pinnerformer_quality import build, load, parse_args, training_options, user_sequences  # noqa: E402
from embeddings.pinnerformer.training import train  # noqa: E402


def main(argv: list[str]) -> dict:
    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: s3rec_valid.py DATASET [bench/pinnerformer_quality.py flags]")
    name, args = argv[0], parse_args(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    data, seed = load(name), args.seeds[0]
    train_seqs = user_sequences(data.split.train, None, args.max_length)
    valid_seqs = user_sequences(data.split.valid.history, data.split.valid.targets, args.max_length)
    started = time.perf_counter()
    torch.manual_seed(seed)
    out = train(build(data, args), train_seqs, training_options(data, args, seed),
                valid=valid_seqs)
    curve = [round(h["valid_hr@10"], 4) for h in out.history]
    result = {"dataset": name, "seed": seed, "dim": args.dim[name], "dropout": args.dropout[name],
              "item_attributes": name in args.item_attributes, "heads": args.heads, "layers": args.layers,
              "lr": args.lr, "best_epoch": out.best_epoch,
              "ema_decay": args.ema_decay.get(name, 0.0), "best_valid_hr@10": max(curve), "valid_hr@10": curve,
              "seconds": round(time.perf_counter() - started)}
    if args.ema_decay.get(name):  # the raw weights of the same run, scored on the same users
        result["valid_raw_hr@10"] = [round(h["valid_raw_hr@10"], 4) for h in out.history]
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
