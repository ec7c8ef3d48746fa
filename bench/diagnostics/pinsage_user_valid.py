"""Compare ways of turning a history into a user ranking on HetRec Last.fm, on VALID only (never TEST).

    .venv/bin/python bench/diagnostics/pinsage_user_valid.py --vectors /tmp/pinsage_seed0.npy

Trains one seed of the bench's primary PinSage, another ``--pooling``, or another row of the bench's ablation
table (``--variant 'pinsage importance, T=10'``), with ``bench/pinsage_quality.py``'s
inputs and options (set by the bench's own flags, e.g. ``--epochs``, ``--ppr-steps``; ``--vectors`` caches
its embeddings, so a second call skips training), then scores the user next-save task
on the VALID slice for every user setting of ``--settings`` for PinSage and content features, and the
baselines' wider grids (item-kNN neighbor counts, Pixie's latest query pins). Prints one JSON line per
(method, setting) and records nothing: docs/PINSAGE.md keeps what it decided.

``--per-epoch`` (when it trains) also scores PinSage's user settings on VALID after every epoch, beside the
epoch's item-to-item validation hit-rate that early stopping watches (with ``--patience`` as large as
``--epochs``, the whole curve).

``--workdir DIR`` trains into the bench's workdir (the checkpoint goes to ``DIR/hetrec``, where
``bench/pinsage_quality.py --workdir DIR`` looks for it, and a checkpoint already there is resumed), so the bench
later evaluates that seed without training it again; ``--threads 1`` lets two such trainings (say, a seed of each
pooling) share the 2 cores side by side.

``--segments`` splits each line by the target: HR@10 over users whose VALID target was saved in TRAIN
("warm": on the graph, within the walks' reach) and over the rest ("cold": reachable only through content
features), with the share of cold pins in the method's top 10s and how popular its top-10 pins and the targets
are (median TRAIN savers).

``--versus-pixie N`` prints, per user setting, PinSage minus Pixie (latest N pins) on VALID: the mean per-user
difference of HR@10 and NDCG@10 with its 95% paired bootstrap interval, each user's values averaged over the
seeds given (``--vectors`` and ``--other-seeds``), as the bench pairs them on TEST.

``--development-split`` trains and scores on the bench's development split instead (``public_inputs``: TEST's
saves left out, the rest split per user again), whose TEST slice is VALID's saves with a history that holds
pins off the graph, as TEST's histories do (VALID's never do); only then does ``--dev-test`` score that slice
too. ``--graph-queries`` adds each PinSage, content and Pixie line with the query pins restricted to pins on the
TRAIN graph (``latest_queries``), and prints PinSage's graph-query minus all-pin difference per setting with its
95% paired bootstrap interval.

``--epoch-vectors DIR`` (when it trains) keeps every epoch's embeddings and validation record in DIR, and the
epoch the training kept; ``bench/diagnostics/pinsage_epoch_choice.py`` compares that epoch with the one best on
the VALID user task.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.pinsage_quality import (  # noqa: E402
    ABLATIONS,
    ablation_variants,
    build_parser,
    hetrec_inputs,
    set_threads,
    train_and_embed,
    training_options,
)
from embeddings.eval.bootstrap import paired_bootstrap, paired_values  # noqa: E402
from embeddings.eval.metrics import RankingMetrics, top_k  # noqa: E402
from embeddings.eval.scorers import EmbeddingScorer  # noqa: E402
from embeddings.pinsage.evaluation import (  # noqa: E402
    PIXIE_CANDIDATES,
    PIXIE_USER_STEPS,
    USER_QUERY_SETTINGS,
    Evaluator,
    embedding_users,
    pixie_generator,
    pixie_users,
)
from embeddings.pinsage.model import POOLINGS  # noqa: E402


def parse_setting(text: str) -> tuple:
    """``200:softmax:0.1`` -> (200, "softmax", 0.1)."""
    parts = text.split(":")
    out: list = [int(parts[0]), parts[1]]
    out += [float(p) for p in parts[2:]]
    return tuple(out)


def parse_walk(text: str) -> tuple:
    """``20:100:0.05:sqrt:1`` -> (latest 20, top 100 neighbors, temperature 0.05, boost sqrt, recency on)."""
    n, m, t, boost, recency = text.split(":")
    return int(n), int(m), float(t), boost, bool(int(recency))


class TransitionScorer:
    """Each query pin's top-M cosine neighbours as a softmax distribution, summed over the user's pins.

    ``boost="sqrt"``: Pixie's multi-hit boosting, ``(sum_q sqrt(w_q p_q(c)))^2``; ``"sum"``: ``sum_q w_q p_q(c)``.
    Weights ``w_q`` are 1/(1 + position) (newest first) with ``recency``, else 1.
    """

    def __init__(self, items, ptr, rows, neighbors, temperature, boost, recency):
        self.items, self.ptr, self.rows = items, ptr, rows
        self.m, self.t, self.boost, self.recency = neighbors, temperature, boost, recency
        self.num_items = len(items)

    def __call__(self, users):
        out = np.full((len(users), self.num_items), -np.inf, dtype=np.float32)
        for i, u in enumerate(users):
            q = self.rows[self.ptr[u]:self.ptr[u + 1]]
            if not len(q):
                continue
            sims = self.items[q] @ self.items.T  # (n, N)
            top = np.argpartition(-sims, self.m, axis=1)[:, :self.m]
            s = np.take_along_axis(sims, top, axis=1) / self.t
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            w = 1.0 / (1.0 + np.arange(len(q))) if self.recency else np.ones(len(q))
            p *= w[:, None]
            if self.boost == "sqrt":
                p = np.sqrt(p)
            score = np.zeros(self.num_items, dtype=np.float64)
            np.add.at(score, top.ravel(), p.ravel())
            row = np.where(score > 0, score, -np.inf)
            out[i] = row
        return out


def transition_factory(vectors: np.ndarray):
    items = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    def users(targets, setting):
        n, m, t, boost, recency = setting
        ptr, rows = targets.history.latest(n)
        return TransitionScorer(items, ptr, rows, m, t, boost, recency)

    return users


def segments(evaluator: Evaluator, scorer, result: RankingMetrics, slice_name: str = "valid") -> dict:
    """HR@10 over users with a warm target (saved in TRAIN) and a cold one, the cold share of the top 10s, and
    how popular the listed pins and the targets are (median TRAIN savers: users who saved the pin in TRAIN).

    A user's target is cold when none of their targets has a TRAIN save (mode "next" gives one target).
    """
    targets = evaluator.user_targets(slice_name)
    savers = np.asarray(evaluator.data.train_matrix().sum(axis=0)).ravel()
    warm_pin = savers > 0
    users = result.query_ids
    warm_user = (targets.targets[users] @ warm_pin.astype(np.float64)) > 0
    hits = result.metric("hr@10")
    top, _ = top_k(scorer, users, 10, evaluator.data.num_items, seen=targets.history.matrix())
    listed = top[top >= 0]

    def mean_hits(mask: np.ndarray) -> float | None:
        return round(float(hits[mask].mean()), 4) if mask.any() else None

    return {"warm_users": int(warm_user.sum()), "cold_users": int((~warm_user).sum()),
            "hr@10_warm": mean_hits(warm_user), "hr@10_cold": mean_hits(~warm_user),
            "top10_cold_share": round(float((~warm_pin[listed]).mean()), 4),
            "top10_median_savers": float(np.median(savers[listed])),
            "target_median_savers": float(np.median(savers[targets.targets[users].indices]))}


def slice_label(name: str) -> str:
    """The printed name of an evaluated slice: VALID, or the development split's TEST slice (never TEST itself)."""
    return "valid" if name == "valid" else "dev_test"


def graph_minus_all(graph: dict[str, RankingMetrics], every: dict[str, RankingMetrics]) -> dict:
    """Per slice: HR@10 and NDCG@10 with graph queries minus with all pins, 95% paired bootstrap over users."""
    out = {}
    for name, result in graph.items():
        for metric in ("hr@10", "ndcg@10"):
            a, b = paired_values(result, every[name], metric)
            diff = paired_bootstrap(a, b, 2000, seed=0)
            out[f"{slice_label(name)}_{metric}"] = [round(diff.mean, 4), round(diff.ci_low, 4), round(diff.ci_high, 4)]
    return out


def versus_pixie(evaluator: Evaluator, seeds: list[np.ndarray], pixie, latest: int, settings: list) -> dict:
    """PinSage minus Pixie on VALID for each user setting: {setting: {metric: [diff, ci_low, ci_high]}}.

    Each user's HR@10 and NDCG@10 is averaged over ``seeds`` (one (P, D) embedding per seed) before pairing."""
    theirs = evaluator.users(pixie, latest, "valid")
    if not len(theirs.query_ids):
        raise ValueError("--versus-pixie: the VALID slice has no users with a next save to pair")
    out: dict = {"method": "pinsage - Pixie", "pixie_latest": latest, "seeds": len(seeds)}
    for setting in settings:
        ours = [evaluator.users(embedding_users(EmbeddingScorer(v).items), setting, "valid") for v in seeds]
        row = {}
        for metric in ("hr@10", "ndcg@10"):
            a = np.mean([paired_values(run, theirs, metric)[0] for run in ours], axis=0)
            diff = paired_bootstrap(a, theirs.metric(metric), 2000, seed=0)
            row["valid_" + metric] = [round(diff.mean, 4), round(diff.ci_low, 4), round(diff.ci_high, 4)]
        out[repr(setting)] = row
    return out


def save_epoch(directory: Path, record: dict, vectors: np.ndarray) -> None:
    """One epoch's embeddings (``epochNN.npy``) and its validation record (a line of ``epochs.jsonl``)."""
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / f"epoch{record['epoch']:02d}.npy", vectors)
    with open(directory / "epochs.jsonl", "a") as f:
        f.write(json.dumps({k: v for k, v in record.items() if isinstance(v, (int, float))}) + "\n")


def save_run(directory: Path, args, summary: dict) -> None:
    """The finished training's kept epoch and what it was trained on (``run.json``), beside its epochs."""
    run = {"seed": args.seed, "development_split": args.development_split, "best_epoch": summary["best_epoch"],
           "epochs_run": summary["epochs_run"], "resumed": summary["resumed"]}
    (directory / "run.json").write_text(json.dumps(run, indent=1) + "\n")


def main(argv: list[str]) -> None:
    parser = build_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--vectors", type=Path, required=True, help=".npy cache of the trained embeddings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", type=parse_setting, nargs="*",
                        default=list(USER_QUERY_SETTINGS), help="user settings, e.g. 200:softmax:0.1")
    parser.add_argument("--knn", type=int, nargs="*", default=[400, 1000, 3000])
    parser.add_argument("--pixie-latest", type=int, nargs="*", default=[20, 50, 200])
    parser.add_argument("--skip-content", action="store_true")
    parser.add_argument("--pooling", default="importance", choices=POOLINGS, help="the trained model's pooling")
    parser.add_argument("--variant", default=None, metavar="NAME",
                        help="train this row of the bench's ablation table instead (overrides --pooling), e.g. "
                             "'pinsage importance, T=10' or 'pinsage importance, max-margin, no hard negatives'")
    parser.add_argument("--per-epoch", action="store_true",
                        help="when training, score PinSage's user settings on VALID after every epoch")
    parser.add_argument("--segments", action="store_true",
                        help="split HR@10 by warm / cold targets and give the cold share of the top 10s")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="train into DIR/hetrec, the checkpoints of `bench/pinsage_quality.py --workdir DIR`, "
                             "resuming one there (default: a temporary directory)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training")
    parser.add_argument("--walk-settings", type=parse_walk, nargs="*", default=[],
                        help="latest:neighbors:temperature:boost:recency, e.g. 20:100:0.05:sqrt:1")
    parser.add_argument("--versus-pixie", type=int, default=None, metavar="N",
                        help="PinSage minus Pixie (latest N pins) on VALID per user setting, with a paired interval")
    parser.add_argument("--other-seeds", type=Path, nargs="*", default=[],
                        help="with --versus-pixie: .npy embeddings of further seeds, averaged per user with --vectors")
    parser.add_argument("--development-split", action="store_true",
                        help="train and score on the development split (no TEST save is read)")
    parser.add_argument("--dev-test", action="store_true",
                        help="with --development-split: score its TEST slice (VALID's saves) as well")
    parser.add_argument("--graph-queries", action="store_true",
                        help="also score with query pins restricted to the TRAIN graph's pins")
    parser.add_argument("--epoch-vectors", type=Path, default=None, metavar="DIR",
                        help="when training, keep every epoch's embeddings and validation record in DIR "
                             "(bench/diagnostics/pinsage_epoch_choice.py reads them)")
    args = parser.parse_args(argv)
    if args.dev_test and not args.development_split:
        parser.error("--dev-test scores the development split's TEST slice; it needs --development-split")
    if args.epoch_vectors is not None and args.vectors.exists():
        parser.error(f"--epoch-vectors keeps a training's epochs, but {args.vectors} exists: nothing trains")
    if args.epoch_vectors is not None and (args.epoch_vectors / "epochs.jsonl").exists():
        parser.error(f"--epoch-vectors {args.epoch_vectors} already holds a training's epochs")
    slices = ("valid", "test") if args.dev_test else ("valid",)
    # Every training is a row of the bench's ablation table, so its checkpoint is the one the bench resumes.
    rows = {v.name: v for v in ablation_variants(ABLATIONS, (args.seed,), 1, args.loss, args.num_neighbors)}
    if args.variant is None:  # the pooling's row with the bench's loss and every neighbor
        variant = next(v for v in rows.values()
                       if v.pooling == args.pooling and v.loss == args.loss and v.num_neighbors is None)
    elif args.variant in rows:
        variant = rows[args.variant]
    else:
        parser.error(f"--variant {args.variant!r} is not a row of the ablation table: {sorted(rows)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(args, args.threads)
    inputs, data = hetrec_inputs(args, development=args.development_split)
    evaluator = Evaluator(data)
    if args.vectors.exists():
        vectors = np.load(args.vectors)
    else:
        def score_epoch(record: dict, epoch_vectors: np.ndarray) -> None:
            if args.epoch_vectors is not None:
                save_epoch(args.epoch_vectors, record, epoch_vectors)
            if not args.per_epoch:
                return
            factory = embedding_users(EmbeddingScorer(epoch_vectors).items)
            users = {repr(setting): round(float(evaluator.users(factory, setting, "valid").metric("hr@10").mean()), 4)
                     for setting in args.settings}
            print(json.dumps({"epoch": record["epoch"], "valid_i2i_hit_rate@10": round(record["valid_hit_rate@10"], 4),
                              "valid_user_hr@10": users}), flush=True)

        with contextlib.ExitStack() as stack:
            if args.workdir is None:
                checkpoints = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pinsage-user-valid-")))
            else:
                # bench/pinsage_quality.py's layout; the development split's trainings beside it, never resumed there
                checkpoints = args.workdir / ("hetrec-development" if args.development_split else "hetrec")
                checkpoints.mkdir(parents=True, exist_ok=True)
            vectors, summary = train_and_embed(inputs, variant, args.seed, training_options(args),
                                               (args.hidden_dim, args.embedding_dim), checkpoints,
                                               resume=args.workdir is not None,
                                               on_epoch=score_epoch if args.per_epoch or args.epoch_vectors
                                               else None, id_dim=args.id_dim)
        np.save(args.vectors, vectors)
        if args.epoch_vectors is not None:
            save_run(args.epoch_vectors, args, summary)
        print(json.dumps({"trained": {k: v for k, v in summary.items() if k != "history"}}), flush=True)

    def show(method: str, setting, factory) -> dict:
        results = {}
        for name in slices:
            started = time.perf_counter()
            result = results[name] = evaluator.users(factory, setting, name)
            prefix = slice_label(name)
            line = {"method": method, "setting": repr(setting),
                    f"{prefix}_hr@10": round(float(result.metric("hr@10").mean()), 4),
                    f"{prefix}_ndcg@10": round(float(result.metric("ndcg@10").mean()), 4),
                    "seconds": round(time.perf_counter() - started, 1)}
            if args.segments:
                line.update(segments(evaluator, factory(evaluator.user_targets(name), setting), result, name))
            print(json.dumps(line), flush=True)
        return results

    on_graph = inputs.csr.pin_degree() > 0  # evaluation rows are graph rows in the bench
    embedded = {"pinsage": vectors} if args.skip_content else {"pinsage": vectors,
                                                                "content": inputs.graph.features}
    for method, vecs in embedded.items():
        items = EmbeddingScorer(vecs).items
        factory, graph_factory = embedding_users(items), embedding_users(items, on_graph)
        for setting in args.settings:
            every = show(method, setting, factory)
            if args.graph_queries:
                graph = show(method + " graph queries", setting, graph_factory)
                print(json.dumps({"method": method + " graph queries - all pins", "setting": repr(setting),
                                  **graph_minus_all(graph, every)}), flush=True)
        walk_users = transition_factory(vecs)
        for setting in args.walk_settings:
            show(method + " transitions", setting, walk_users)
    for k in args.knn:
        show("item-kNN", k, evaluator.item_knn_users)
    generate = pixie_generator(inputs.csr, np.arange(inputs.csr.num_pins), evaluator.data.num_items,
                               PIXIE_CANDIDATES, 0)
    walks = generate(PIXIE_USER_STEPS)
    pixie, graph_pixie = (pixie_users(walks, evaluator.data.num_items, q) for q in (None, on_graph))
    for n in args.pixie_latest:
        show("Pixie", n, pixie)
        if args.graph_queries:
            show("Pixie graph queries", n, graph_pixie)
    if args.versus_pixie is not None:
        seeds = [vectors] + [np.load(path) for path in args.other_seeds]
        print(json.dumps(versus_pixie(evaluator, seeds, pixie, args.versus_pixie, args.settings)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
