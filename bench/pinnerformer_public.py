"""PinnerFormer on public data whose clocks are coarse or bursty: HetRec Last.fm and MovieLens latest-small.

The ``public`` section of ``bench/pinnerformer_quality.py`` (issue 6, "Bars": "On HetRec Last.fm and
MovieLens latest-small: the same table, reported whichever way it falls"). Per dataset:

1. **Data.** The importer's events (``importers.read_dataset``), positive engagements only (HetRec: every
   tag assignment is a save; MovieLens: ratings >= 4), split per user (``engagement.split_per_user``,
   docs/DATA.md: each user's last 20% = TEST, the 20% before = VALID), by ``bench/pinsage_quality.py``'s
   ``public_inputs``, which also builds the pin-board graph, PPR neighborhoods, content features and pairs
   from TRAIN only.
2. **PinSage** (importance pooling, the sampled-softmax loss, seed 0: the PinSage bench's main variant)
   trained on the TRAIN pairs, early-stopped on VALID pairs (``train_and_embed``); its embeddings are the
   pins' input vectors and the vectors PinnerSage clusters.
3. **PinnerFormer** in PinSage mode (the nightly model's shapes: ``jobs.train_pinnerformer`` defaults, the
   PinSage table attached, the pin tower over it), once per objective (``--public-objectives``, default dense
   all-action and next-action) and seed, trained on each user's TRAIN actions (cut as the split cuts:
   the last 20% are future positives, the rest input, as the nightly job cuts timelines at a cutoff),
   early-stopped on VALID recall@10; the learning rate (``--public-lrs``: the nightly job's 5e-3, and 1e-3)
   chosen on the evaluator's VALID recall@10 with the first seed; TEST scored once. The clock: HetRec's
   times are calendar dates (most consecutive saves share one) and most MovieLens users rated everything
   within minutes, which is why docs/DATA.md splits them per user; for the same reason the sequences
   count time in actions, not seconds: a user's i-th action is at day i, so the K=28-day window of the
   all-action objectives is the next 28 actions, and the time features are off (so are action and
   surface: every kept action is a save with no surface).
4. **The table**, every method scored by ``PinnerSageEvaluator`` (the PinnerSage bench's evaluator) on the
   same slices: full ranking over all pins, history masked, every new pin of the slice a target
   (recall@10/50/100; a seeded sample of ``--public-max-users`` users per slice), settings tuned on VALID
   recall@10, TEST scored once. PinnerFormer's user embedding is ranked against its pin tower (cosine);
   PinnerSage's top-3 medoids (alpha and the importance decay lam on VALID, ``interleave`` blend), the
   PinSage last pin and time-decayed average (lam on VALID, over the same ``LAM_GRID``) against the PinSage
   vectors; popularity and item-kNN over the history (cosine on the binarized
   TRAIN user x pin matrix, neighbors on VALID) by the same ranking code on the same targets.
   Paired bootstraps over users: dense all-action - next-action, PinnerFormer - PinnerSage 3 medoids,
   PinnerFormer - the best baseline on VALID.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench import pinsage_quality as pq  # noqa: E402
from embeddings.data.engagement import TRAIN, VALID  # noqa: E402
from embeddings.data.schemas import Action  # noqa: E402
from embeddings.eval.baselines import fit_item_knn, item_popularity, tune_on_validation  # noqa: E402
from embeddings.eval.bootstrap import paired_bootstrap  # noqa: E402
from embeddings.eval.metrics import RankingMetrics  # noqa: E402
from embeddings.eval.protocols import evaluate_users  # noqa: E402
from embeddings.eval.scorers import ItemScoresScorer, SparseScorer  # noqa: E402
from embeddings.graph.walks import WalkConfig  # noqa: E402
from embeddings.pinnerformer.data import SequenceOptions, UserSequences, build_user_sequences  # noqa: E402
from embeddings.pinnerformer.model import PinnerFormerConfig, build_model  # noqa: E402
from embeddings.pinnerformer.training import embed_all_pins, embed_users, train  # noqa: E402
from embeddings.pinnersage.evaluation import (  # noqa: E402
    LAM_GRID,
    SLICES,
    EvaluationData,
    MethodResult,
    PinnerSageEvaluator,
    UserVectors,
    ablation_table,
)
from embeddings.pinsage.training import TrainingOptions as PinSageTrainingOptions  # noqa: E402
from jobs.train_pinnerformer import DEFAULT_TRAINING, TrainPinnerFormerConfig  # noqa: E402

log = logging.getLogger("bench.pinnerformer_public")

DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
PATHS = {"hetrec-lastfm": DATA_ROOT / "hetrec2011-lastfm-2k", "movielens": DATA_ROOT / "ml-latest-small"}
DAY_S = 86_400
T0 = 1_577_836_800  # 2020-01-01: action i of a user is at T0 + i days
TUNING_METRIC = "recall@10"
KNN_NEIGHBORS = (10, 20, 50, 100, 200, 500)
REPORTED = ("recall@10", "recall@50", "recall@100")
TRAIN_HOLDOUT_SHARE = 0.2  # each user's TRAIN actions: the last 20% are the training labels' future
FOREVER_DAYS = 10**4  # a window past any user's last action on the action clock (27 years of actions)


@dataclasses.dataclass(frozen=True)
class PublicData:
    """One dataset's positive events (user row, pin row, datetime64 time, TRAIN/VALID/TEST label) and
    PinSage's inputs (None in tests that bring their own pin vectors)."""

    name: str
    num_pins: int
    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    labels: np.ndarray
    inputs: pq.Inputs | None = None

    def evaluation_data(self, max_users: int) -> EvaluationData:
        """The evaluator's view: every new pin of a slice is a target; ``max_users`` sampled per slice."""
        return EvaluationData(num_items=self.num_pins, users=self.users, items=self.items, ts=self.ts,
                              labels=self.labels, mode="window", max_users=max_users, seed=0,
                              split={"valid": "per-user split valid (the 20% before test)",
                                     "test": "per-user split test (each user's last 20% of positives)"})


def load(name: str) -> PublicData:
    walk = WalkConfig(num_steps=5_000, top_t=50, band=(200, 500), num_band_samples=20)  # the PinSage bench's
    inputs, data = pq.public_inputs(PATHS[name], walk, 31 * DAY_S, 0, dataset=name)
    return PublicData(name, len(inputs.graph.pin_ids), np.asarray(data.users, np.int64),
                      np.asarray(data.items, np.int64), np.asarray(data.ts).astype("datetime64[us]"),
                      np.asarray(data.labels), inputs)


def pinsage_vectors(data: PublicData, args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    """PinSage trained on TRAIN (``--public-pinsage-cache`` DIR: reuse/keep the vectors; development only)."""
    cache = Path(args.public_pinsage_cache) / f"{data.name}-seed0-epochs{args.public_pinsage_epochs}.npy" \
        if args.public_pinsage_cache else None
    if cache is not None and cache.exists():
        log.warning("%s: PinSage vectors read from the cache %s (not a recorded run's setting)", data.name, cache)
        return np.load(cache), {"cached": str(cache)}
    options = PinSageTrainingOptions(num_epochs=args.public_pinsage_epochs, patience=2, num_workers=1,
                                     log_every_s=60.0)
    variant = pq.Variant("pinsage importance", "importance", True, (0,))
    with tempfile.TemporaryDirectory() as tmp:
        vectors, summary = pq.train_and_embed(data.inputs, variant, 0, options, (256, 256), Path(tmp))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
    return vectors, summary


def _action_clock(users: np.ndarray, order: np.ndarray) -> np.ndarray:
    """(E,) int64 seconds: the i-th event of a user (in ``order``) at ``T0 + i`` days."""
    ts = np.empty(len(users), dtype=np.int64)
    sorted_users = users[order]
    starts = np.searchsorted(sorted_users, sorted_users, side="left")
    ts[order] = T0 + (np.arange(len(order)) - starts) * DAY_S
    return ts


def sequences(data: PublicData, input_labels: Sequence[int], target_label: int | None, max_length: int,
              window_days: float, min_actions: int, *, holdout_share: float = 0.0) -> UserSequences:
    """Sequences of the events labelled ``input_labels`` (each user's actions in split order, action clock).

    The future positives: the events labelled ``target_label``; or, with ``target_label`` None and
    ``holdout_share`` > 0, each user's last ``floor(holdout_share * n)`` input events (at least one from 3
    events on: the per-user split's own rule, docs/DATA.md), which is how the TRAIN slice is cut into
    inputs and labels for training; or none.
    """
    wanted = np.isin(data.labels, [*input_labels] + ([] if target_label is None else [target_label]))
    users, items, ts, labels = (a[wanted] for a in (data.users, data.items, data.ts, data.labels))
    # Split order: by time, the slices in order within one timestamp, then pin row (deterministic).
    order = np.lexsort((items, labels, ts.astype(np.int64), users))
    clock = _action_clock(users, order)
    cutoff = None
    if target_label is not None:
        is_input = labels != target_label
        last_input = np.full(users.max() + 1, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last_input, users[is_input], clock[is_input])
        cutoff = last_input[users]
    elif holdout_share > 0:
        n = np.bincount(users)
        held = np.where(n >= 3, np.maximum(np.floor(holdout_share * n).astype(np.int64), 1), 0)
        cutoff = (T0 + (n - held - 1) * DAY_S)[users]
    n = len(users)
    return build_user_sequences(users, items, np.full(n, Action.SAVE.code), np.zeros(n), np.full(n, np.nan), clock,
                                num_pins=data.num_pins, now_ts=np.iinfo(np.int64).max // 2, cutoff_ts=cutoff,
                                options=SequenceOptions(max_length=max_length, window_days=window_days,
                                                        min_actions=min_actions))


def model_config(pin_dim: int, args: argparse.Namespace) -> PinnerFormerConfig:
    """The nightly job's model shapes (``jobs.train_pinnerformer`` defaults) without time/action/surface."""
    d = {f.name: f.default for f in dataclasses.fields(TrainPinnerFormerConfig)}
    return PinnerFormerConfig(pin_dim=pin_dim, model_dim=d["model_dim"], embedding_dim=d["embedding_dim"],
                              num_layers=d["num_layers"], num_heads=d["num_heads"], ff_dim=d["ff_dim"],
                              dropout=d["dropout"], max_length=args.public_max_length,
                              pin_hidden_dim=max(d["model_dim"], d["embedding_dim"]), features=())


def train_pinnerformer(data: PublicData, pins: np.ndarray, objective: str, seed: int, args: argparse.Namespace,
                       learning_rate: float | None = None) -> tuple[object, dict]:
    """One PinnerFormer on TRAIN, early-stopped on VALID recall@10 (window: every VALID positive);
    ``learning_rate`` None: the nightly job's."""
    window = args.public_window_actions
    train_seqs = sequences(data, [TRAIN], None, args.public_max_length, window, min_actions=2,
                           holdout_share=TRAIN_HOLDOUT_SHARE)
    valid_seqs = sequences(data, [TRAIN], VALID, args.public_max_length, FOREVER_DAYS, min_actions=1)
    torch.manual_seed(seed)
    model = build_model(model_config(pins.shape[1], args))
    model.attach_pin_table(torch.from_numpy(pins))
    options = dataclasses.replace(DEFAULT_TRAINING, objective=objective, seed=seed,
                                  num_epochs=args.public_epochs, patience=args.public_patience,
                                  valid_mode="window", eval_k=10, log_every_s=60,
                                  learning_rate=learning_rate or DEFAULT_TRAINING.learning_rate)
    out = train(model, train_seqs, options, valid=valid_seqs)
    summary = {"objective": objective, "seed": seed, "learning_rate": options.learning_rate,
               "best_epoch": out.best_epoch, "epochs": len(out.history),
               "train_seconds": round(out.train_seconds, 1), "users_per_s": round(out.users_per_s, 1),
               "valid_curve": [h.get("valid_recall@10") for h in out.history]}
    return out.model, summary


def pinnerformer_scores(model, data: PublicData, evaluator: PinnerSageEvaluator, split: str,
                        args: argparse.Namespace) -> tuple[RankingMetrics, np.ndarray]:
    """The model's user embeddings (from the slice's history) against its pin tower (``evaluator``'s pin
    vectors) on the evaluator's ``split`` slice: (metrics, one vector per scored user). Users with no
    history get no vector (their targets rank last, as for every method)."""
    history_labels = {"valid": [TRAIN], "test": [TRAIN, VALID]}
    seqs = sequences(data, history_labels[split], None, args.public_max_length, 1.0, min_actions=1)
    vectors = np.zeros((evaluator.data.num_users, model.config.embedding_dim), np.float32)
    vectors[seqs.user_ids] = embed_users(model, seqs)
    users = evaluator.slices[split].users()
    has = np.zeros(evaluator.data.num_users, bool)
    has[seqs.user_ids] = True
    counts = np.zeros(evaluator.data.num_users, np.int64)
    counts[users[has[users]]] = 1
    rows = np.flatnonzero(counts)
    user_vectors = UserVectors(np.concatenate([[0], np.cumsum(counts)]), vectors[rows], np.ones(len(rows)), counts)
    result = evaluator.evaluate(user_vectors, split, "max")
    return result, counts[result.query_ids]


def pinnerformer_methods(data: PublicData, pins: np.ndarray, eval_data: EvaluationData, objective: str,
                         args: argparse.Namespace) -> tuple[list[MethodResult], dict]:
    """One objective: the learning rate chosen on VALID recall@10 (the evaluator's VALID slice) with the
    first seed, then every seed trained at that rate and scored on TEST once. Returns one result per seed
    and the record of the choice."""
    def fit(seed: int, lr: float) -> tuple[object, PinnerSageEvaluator, RankingMetrics, np.ndarray, dict]:
        started = time.perf_counter()
        model, summary = train_pinnerformer(data, pins, objective, seed, args, lr)
        tower = PinnerSageEvaluator(eval_data, embed_all_pins(model), tuning_metric=TUNING_METRIC)
        valid, clusters = pinnerformer_scores(model, data, tower, "valid", args)
        summary["seconds"] = round(time.perf_counter() - started, 1)
        return model, tower, valid, clusters, summary

    first = args.seeds[0]
    candidates = {lr: fit(first, lr) for lr in args.public_lrs}
    scores = [(lr, float(c[2].metric(TUNING_METRIC).mean())) for lr, c in candidates.items()]
    lr = max(scores, key=lambda item: item[1])[0]  # ties: the earlier rate
    log.info("PinnerFormer %s: learning rate %g chosen on VALID %s %s", objective, lr, TUNING_METRIC, scores)
    methods, summaries = [], []
    for seed in args.seeds:
        model, tower, valid, valid_clusters, summary = candidates[lr] if seed == first else fit(seed, lr)
        test, test_clusters = pinnerformer_scores(model, data, tower, "test", args)
        name = f"PinnerFormer {objective} seed {seed}"
        # The first seed carries the whole choice; the others their own VALID figure at the chosen rate.
        tuning = ([(f"lr={v:g}", m) for v, m in scores] if seed == first
                  else [(f"lr={lr:g}", float(valid.metric(TUNING_METRIC).mean()))])
        methods.append(MethodResult(name, f"lr={lr:g}", tuning, {"valid": valid, "test": test},
                                    {"valid": valid_clusters, "test": test_clusters}, summary["seconds"]))
        summaries.append(summary)
        log.info("%s: best epoch %d/%d, TEST recall@10 %.4f", name, summary["best_epoch"], summary["epochs"],
                 test.metric("recall@10").mean())
    return methods, {"learning_rate": lr, "valid_by_learning_rate": scores, "training": summaries}


def sparse_methods(evaluator: PinnerSageEvaluator) -> list[MethodResult]:
    """Popularity (distinct TRAIN users) and item-kNN over the history, by ``evaluate_users`` on the
    evaluator's slices (the same targets, masking and cut-offs)."""
    data = evaluator.data
    train_mask = np.asarray(data.labels) == TRAIN
    fit = sp.csr_matrix((np.ones(int(train_mask.sum())), (np.asarray(data.users)[train_mask],
                                                           np.asarray(data.items)[train_mask])),
                        shape=(data.num_users, data.num_items))

    def evaluate(scorer_of: Callable[[str], object], split: str) -> RankingMetrics:
        s = evaluator.slices[split]
        return evaluate_users(scorer_of(split), s.targets, s.protocol, ks=evaluator.ks)

    out = []
    started = time.perf_counter()
    popular = item_popularity(fit)
    results = {split: evaluate(lambda _: ItemScoresScorer(popular), split) for split in SLICES}
    out.append(MethodResult("popularity", "distinct TRAIN users", [("distinct TRAIN users", float(
        results["valid"].metric(TUNING_METRIC).mean()))], results,
        {k: np.zeros(r.num_queries, np.int64) for k, r in results.items()}, time.perf_counter() - started))
    started = time.perf_counter()
    sims = {k: fit_item_knn(fit, k) for k in KNN_NEIGHBORS}

    def knn(k: int) -> Callable[[str], SparseScorer]:
        return lambda split: SparseScorer(evaluator.slices[split].targets.history.matrix(), sims[k])

    tuning = tune_on_validation(KNN_NEIGHBORS, lambda k: evaluate(knn(k), "valid"), TUNING_METRIC)
    results = {"valid": tuning.results[KNN_NEIGHBORS.index(tuning.best)], "test": evaluate(knn(tuning.best), "test")}
    out.append(MethodResult("item_knn_history", tuning.best, list(tuning.scores), results,
                            {k: np.zeros(r.num_queries, np.int64) for k, r in results.items()},
                            time.perf_counter() - started))
    return out


def bench_public(name: str, args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The future-window table of one public dataset: PinnerFormer (each objective, seeds) and the baselines."""
    started = time.perf_counter()
    data = load(name)
    pins, pinsage_training = pinsage_vectors(data, args)
    eval_data = data.evaluation_data(args.public_max_users)
    # PinnerSage's and the decayed average's importance decay tuned on VALID like alpha (LAM_GRID), as in
    # bench/pinnersage.py: a baseline at the paper's fixed lam would be weaker than the same method tuned.
    pinsage_eval = PinnerSageEvaluator(eval_data, pins, tuning_metric=TUNING_METRIC, lams=LAM_GRID)
    methods = [pinsage_eval.pinnersage(), pinsage_eval.last_pin(), pinsage_eval.decayed_average()]
    methods += sparse_methods(pinsage_eval)
    trained = {}
    for objective in args.public_objectives:
        results, trained[objective] = pinnerformer_methods(data, pins, eval_data, objective, args)
        methods += results
    by_name = {m.name: m for m in methods}
    test_users = by_name["pinnersage"].results["test"].query_ids
    for m in methods:  # one evaluated population: every method's TEST users are the same sample
        assert np.array_equal(m.results["test"].query_ids, test_users), m.name

    def per_user(names: Sequence[str], metric: str = "recall@10") -> np.ndarray:
        return np.mean([by_name[n].results["test"].metric(metric) for n in names], axis=0)

    groups = {o: [f"PinnerFormer {o} seed {s}" for s in args.seeds] for o in args.public_objectives}
    records: dict = {}
    for m in methods:
        if m.name.startswith("PinnerFormer"):
            continue
        records[m.name] = {k.capitalize(): float(m.results["test"].metric(k).mean()) for k in REPORTED} | {
            "choice": repr(m.setting), f"valid_{TUNING_METRIC}": float(m.results["valid"].metric(TUNING_METRIC).mean())}
    for objective, names in groups.items():
        rec = {"seeds": list(args.seeds)} | trained[objective]
        for k in REPORTED:  # keys as the issue names them: Recall@10, Recall@10_std, ...
            values = [float(by_name[n].results["test"].metric(k).mean()) for n in names]
            key = k.capitalize()
            rec[key] = float(np.mean(values))
            rec[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            rec[f"{key}_per_seed"] = values
        records[f"PinnerFormer {objective}"] = rec
    baselines = [m.name for m in methods if not m.name.startswith("PinnerFormer")]
    best = max(baselines, key=lambda n: by_name[n].results["valid"].metric(TUNING_METRIC).mean())
    main = args.public_objectives[0]
    comparisons = {f"PinnerFormer {main} - pinnersage (3 medoids)": (per_user(groups[main]), per_user(["pinnersage"])),
                   f"PinnerFormer {main} - {best} (best baseline on VALID)": (per_user(groups[main]), per_user([best]))}
    if len(groups) > 1:
        other = [o for o in groups if o != main][0]
        comparisons[f"PinnerFormer {main} - PinnerFormer {other}"] = (per_user(groups[main]), per_user(groups[other]))
    records["comparisons"] = {}
    for label, (a, b) in comparisons.items():
        d = paired_bootstrap(a, b, num_samples=2000, seed=0)
        records["comparisons"][label] = {"metric": "Recall@10", "mean_diff": d.mean, "ci_low": d.ci_low,
                                         "ci_high": d.ci_high}
    records["protocol"] = by_name["pinnersage"].results["test"].protocol
    records["test_users"] = int(len(test_users))
    records["data"] = data.inputs.stats
    records["pinsage_training"] = pinsage_training
    records["ablation"] = ablation_table(methods).round(5).to_dict(orient="records")
    records["seconds"] = round(time.perf_counter() - started, 1)

    summary = [f"{name} (per-user split, {records['test_users']} TEST users, {data.num_pins} pins): "
               f"Recall@10/50/100 of every new pin of the slice, full ranking, history masked"]
    order = [f"PinnerFormer {o}" for o in groups] + baselines
    for n in order:
        rec = records[n]
        spread = f" ± {rec['Recall@10_std']:.4f}" if "Recall@10_std" in rec else ""
        choice = (f" (VALID-chosen {rec['choice']})" if "choice" in rec
                  else f" (VALID-chosen lr={rec['learning_rate']:g}, seeds {rec['seeds']})")
        summary.append(f"{name} {n}{choice}: Recall@10 {rec['Recall@10']:.4f}{spread}, @50 {rec['Recall@50']:.4f}, "
                       f"@100 {rec['Recall@100']:.4f}")
    for label, d in records["comparisons"].items():
        summary.append(f"{name} {label}, Recall@10, paired bootstrap over users: {d['mean_diff']:+.4f} "
                       f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")
    print(f"{name} done in {records['seconds']:.0f} s")
    return records, summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--public-datasets", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--public-objectives", nargs="+", default=["dense_all_action", "next_action"])
    parser.add_argument("--public-epochs", type=int, default=100, help="PinnerFormer epoch cap (early stopping)")
    parser.add_argument("--public-patience", type=int, default=5)
    parser.add_argument("--public-lrs", nargs="+", type=float, default=[5e-3, 1e-3],
                        help="PinnerFormer learning rates tried on VALID with the first seed (the nightly job's first)")
    parser.add_argument("--public-max-length", type=int, default=64, help="M (the nightly job's default)")
    parser.add_argument("--public-window-actions", type=float, default=28.0,
                        help="K of the all-action objectives, in actions (the action clock: one day per action)")
    parser.add_argument("--public-max-users", type=int, default=2000, help="users scored per slice (0: all)")
    parser.add_argument("--public-pinsage-epochs", type=int, default=6, help="PinSage epoch cap (patience 2)")
    parser.add_argument("--public-pinsage-cache", default="",
                        help="a folder to keep / reuse the PinSage vectors in (development; the recorded run "
                             "trains PinSage afresh)")


if __name__ == "__main__":  # the same as bench/pinnerformer_quality.py --sections public [options]
    from bench.pinnerformer_quality import main

    main(["--sections", "public", *sys.argv[1:]])
