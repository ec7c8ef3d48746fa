"""PinSage refitted on TRAIN + VALID before TEST on HetRec Last.fm, against the baselines' refreshed rows.

    .venv/bin/python bench/diagnostics/pinsage_refit.py --workdir DIR --train-seed 0 --threads 1   # one per seed
    .venv/bin/python bench/diagnostics/pinsage_refit.py --workdir DIR --score                       # then TEST

The bench (bench/pinsage_quality.py) tunes everything on VALID and scores TEST with models trained on TRAIN alone
(frozen), or with the graph and fits rebuilt from every save before TEST but the same trained models (refreshed).
The nightly job trains on every save up to ``ds``; this is that protocol's last step: each seed is trained again
on TRAIN + VALID (graph, PPR neighborhoods, next-save, same-day and board pairs: ``public_inputs(refit=True)``) for
the number of epochs its frozen training kept on VALID, and TEST is ranked with the user setting that training
chose on VALID, over the refreshed graph's embeddings, with every save before TEST as history. Both come from a
bench record (``--record``, default the latest 3-seed TEST run); nothing is tuned again, since VALID is now
training data (the per-epoch validation hit-rates it logs are on pairs it trained on, and choose nothing).

``--train-seed S`` trains seed S into ``DIR/refit`` (checkpointed, so an interrupted training resumes) and keeps
the last epoch's embeddings there; ``--threads 1`` lets two trainings share the 2 cores. ``--score`` scores
every seed of the bench's ``--first-seed`` / ``--seeds`` on TEST with the content-features, item-kNN, Pixie and
popularity baselines of the refreshed protocol (the same fits a refit gives them: none of them trains), and
prints the table, PinSage minus each with its 95% paired bootstrap interval over TEST queries (per-query values
averaged over the seeds), and one JSON line. Records nothing: docs/PINSAGE.md keeps what it decided.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.pinsage_quality import (  # noqa: E402
    ABLATIONS,
    PRIMARY,
    REFRESHED,
    ablation_variants,
    build_parser,
    format_paired,
    format_summary,
    hetrec_inputs,
    paired_differences,
    refreshed_baselines,
    set_threads,
    shared_options,
    summarize,
    train_variant,
    training_options,
)
from embeddings.pinsage.evaluation import Evaluator  # noqa: E402

REFIT = PRIMARY + ", refit"
RECORD = Path(__file__).resolve().parents[1] / "results" / "pinsage_ablations_none.json"
# options the refit sets itself: the epoch count from the record, and no early stopping on VALID it trains on
REFIT_OPTIONS = ("num_epochs", "patience")


@dataclasses.dataclass(frozen=True)
class Chosen:
    """What a seed's frozen training chose on VALID: the epoch it kept and the user task's setting."""

    epochs: int
    user_setting: tuple


def chosen_on_valid(record: dict, args_options: dict) -> dict[int, Chosen]:
    """Per seed of the record's primary model, its kept epoch and VALID-chosen user setting.

    Refuses a record whose shared training options, other than ``REFIT_OPTIONS``, differ from these flags'."""
    config = record["config"]
    theirs = {k: v for k, v in config["training"].items() if k not in REFIT_OPTIONS}
    ours = {k: v for k, v in args_options.items() if k not in REFIT_OPTIONS}
    if theirs != ours:
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise ValueError(f"the record's training options differ from these flags' in {differ}")
    method = record["metrics"]["hetrec_lastfm"]["methods"][PRIMARY]
    seeds = [t["seed"] for t in method["training"]]
    return {seed: Chosen(t["best_epoch"], ast.literal_eval(s["user_next"]))
            for seed, t, s in zip(seeds, method["training"], method["settings"])}


def train_seed(args, chosen: Chosen, seed: int) -> Path:
    """Train ``seed`` on TRAIN + VALID for ``chosen.epochs`` epochs; its last epoch's embeddings go to a .npy."""
    out = args.workdir / "refit"
    out.mkdir(parents=True, exist_ok=True)
    vectors_path = out / f"seed{seed}.npy"
    if vectors_path.exists():
        logging.info("%s exists: seed %d is trained", vectors_path, seed)
        return vectors_path
    inputs, _ = hetrec_inputs(args, refit=True)
    options = dataclasses.replace(training_options(args), num_epochs=chosen.epochs, patience=chosen.epochs)
    variant = next(v for v in ablation_variants(ABLATIONS, (seed,), 1, args.loss, args.num_neighbors)
                   if v.name == PRIMARY)
    last: dict[str, np.ndarray] = {}

    def keep_last(record: dict, embeddings: np.ndarray) -> None:
        if record["epoch"] == chosen.epochs:
            last["vectors"] = embeddings

    _, summary = train_variant(inputs, variant, seed, options, (args.hidden_dim, args.embedding_dim), out,
                               resume=True, on_epoch=keep_last, id_dim=args.id_dim)
    if "vectors" not in last:
        raise RuntimeError(f"seed {seed}: the training in {out} finished before this call; remove its checkpoint "
                           "to train it again (its last epoch's embeddings were not kept)")
    np.save(vectors_path, last["vectors"].astype(np.float32))
    summary["pairs"] = inputs.stats["pairs"]
    (out / f"seed{seed}.json").write_text(json.dumps(summary, indent=1))
    logging.info("seed %d: %d epochs in %.0f s, embeddings in %s", seed, summary["epochs_run"],
                 summary["train_seconds"], vectors_path)
    return vectors_path


def score(args, chosen: dict[int, Chosen], record: dict) -> None:
    """TEST of every refitted seed against the refreshed baselines, with paired intervals."""
    seeds = tuple(range(args.first_seed, args.first_seed + args.seeds))
    inputs, data = hetrec_inputs(args, refresh=True)
    served = Evaluator(data, refit_before_test=True)
    runs = []
    for seed in seeds:
        vectors = np.load(args.workdir / "refit" / f"seed{seed}.npy")
        if vectors.shape[0] != inputs.graph.num_pins or not np.isfinite(vectors).all():
            raise ValueError(f"seed {seed}: {args.workdir / 'refit'}/seed{seed}.npy holds vectors of shape "
                             f"{vectors.shape} ({inputs.graph.num_pins} pins expected) or values that are not finite")
        runs.append(served.embeddings(f"{REFIT} seed {seed}", vectors, (chosen[seed].user_setting,),
                                      test_vectors=vectors))
    methods = {REFIT: runs, **refreshed_baselines(served, inputs)}
    summaries = {name: summarize(name, rs) for name, rs in methods.items()}
    paired = paired_differences(methods, set(), REFIT)
    earlier = {name: record["metrics"]["hetrec_lastfm"]["methods"][name]
               for name in (PRIMARY, PRIMARY + REFRESHED)}
    print(json.dumps({"seeds": list(seeds), "chosen": {s: dataclasses.asdict(c) for s, c in chosen.items()},
                      "test": summaries, f"{REFIT} minus this": paired,
                      "record": {"path": str(args.record), "commit": record["commit"],
                                 "test": {k: {m: v[m] for m in v if "/" in m} for k, v in earlier.items()}}},
                     default=str), flush=True)
    print(f"\nTEST, x100, {len(seeds)} seeds (mean ± std [min, max]); baselines under the refreshed protocol")
    print(format_summary({**summaries, **{f"{k} (record {record['commit']})": v for k, v in earlier.items()}}))
    print(f"\n{REFIT} minus each method, x100, 95% paired bootstrap interval over TEST queries")
    print(format_paired(paired, REFIT))


def main(argv: list[str]) -> None:
    parser = build_parser()
    parser.description = __doc__.splitlines()[0]
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--train-seed", type=int, help="train this seed on TRAIN + VALID")
    mode.add_argument("--score", action="store_true", help="score the trained seeds on TEST")
    parser.add_argument("--record", type=Path, default=RECORD,
                        help="the bench record whose kept epochs and user settings the refit reuses")
    parser.add_argument("--workdir", type=Path, required=True, help="the trainings go to DIR/refit")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(args, args.threads)
    record = json.loads(args.record.read_text())
    chosen = chosen_on_valid(record, shared_options(training_options(args)))
    if args.score:
        score(args, chosen, record)
    else:
        if args.train_seed not in chosen:
            parser.error(f"seed {args.train_seed} is not in {args.record} (seeds {sorted(chosen)})")
        train_seed(args, chosen[args.train_seed], args.train_seed)


if __name__ == "__main__":
    main(sys.argv[1:])
