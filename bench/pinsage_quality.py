"""PinSage quality: HetRec Last.fm against its baselines and ablations, and planted topics on synthetic data.

    .venv/bin/python bench/pinsage_quality.py           # the default ablations (10 trainings; 5-7 h on 2 cores)
    .venv/bin/python bench/pinsage_quality.py --ablations none --workdir var/bench/pinsage-quality  # 3 seeds
    .venv/bin/python bench/pinsage_quality.py --ablations mean --workdir var/bench/pinsage-quality  # reuses them
    .venv/bin/python bench/pinsage_quality.py --quick   # 1 seed, 1 epoch, small synthetic run; records nothing
    .venv/bin/python bench/pinsage_quality.py --seeds 1 --ablations max   # seed 0 and max pooling only

HetRec Last.fm (issue 4, "Quality on HetRec Last.fm"): the dataset is read with the library importer
(artist = pin, (user, tag) = board, one save per tag assignment), split with the per-user split
(``engagement.split_per_user``: each user's last 20% of saves = test, the 20% before = validation). The
pin-board graph, the PPR neighborhoods, the training pairs, item-kNN and popularity use TRAIN saves only;
pin text holds only training tags (the importer's rule). Pairs are a user's consecutive positive saves of
two different artists at most ``--max-gap-days`` apart, labelled by the slice of the second save
(HetRec times are calendar dates: same-day pairs are 89% of all consecutive pairs; inside a day the saves
follow ``engagement.time_order``, a hash of (user, pin), not artist ids). The training pairs add each TRAIN
save's ``--day-partners`` same-day partners (default 4, chosen on VALID) and each TRAIN (board, pin)'s
``--board-partners`` board partners (default 4, chosen on VALID); the held-out pairs do not.
``--history-queries H`` (off by default; tried on VALID, not adopted) adds the user task itself as examples: the
user's latest H pins as one set query, the next new pin as its positive (``history_queries``).
PinSage trains on TRAIN pairs, early-stops on VALID pairs; every method (PinSage, its ablations, content
features alone, item-kNN, Pixie, popularity) is evaluated by ``embeddings.pinsage.evaluation.Evaluator``,
its settings tuned on VALID only and TEST scored once. ``--refreshed`` (default; ``--no-refreshed`` drops it)
adds every method's TEST figures under the refreshed protocol as rows named ``<method>, refreshed``: the same
trained models and VALID-tuned settings, TEST ranked over the graph, PPR neighborhoods, walks, item-kNN and
popularity of every save before TEST (TRAIN + VALID), PinSage inferred over that graph, as the nightly pipeline
serves; the bars stay read on the frozen rows.

Synthetic (issue 4, "On synthetic data"): the ``demo`` world (``embeddings.data.synthetic``, in memory,
no lake) with the nightly time split at its last day; the graph and the pairs come from the days before
the test slice; precision@10 of the planted primary topic among each sampled pin's 10 cosine nearest
neighbors (``synthetic.knn_label_precision``), PinSage vs content features alone.

Prints the tables and, unless ``--quick``, writes bench/results/pinsage.json and appends to
docs/BENCHMARKS.md (``bench.common.record``), with the speed figures of bench/results/pinsage_speed.json
(measured by bench/pinsage_speed.py, copied, not re-run). A run that leaves out one of the default
ablations (``--ablations``) is recorded as ``pinsage_ablations_<names>`` instead, so it never replaces
the full table; a run from a later seed (``--first-seed S``) adds ``_seedS``, one with learned id vectors
(``--id-dim N``) ``_idN``, one with history queries (``--history-queries H --history-copies C``) ``_historyHxC``.
``bench/pinsage_seeds.py`` pools the per-seed figures of several records.

With ``--workdir`` every training keeps its checkpoint there and a rerun resumes from it: a finished training
is only embedded again, an interrupted one continues from its last epoch, and one with other settings or
data is refused (``train``'s fingerprint). Each run's summary says whether it was resumed, and its
``train_seconds`` count the training across resumptions. With 4 same-day partners alone a HetRec training took
80-120 s per epoch on 2 cores; the 4 board partners double the pairs (477,319) and the epoch time, so every run
trains to a 10-epoch cap, about the training examples of the 20-epoch cap before them (docs/PINSAGE.md).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import record  # noqa: E402
from embeddings.data import synthetic  # noqa: E402
from embeddings.data.engagement import (  # noqa: E402
    TEST, TRAIN, VALID, TimeSplit, positive_mask, split_per_user, time_order,
)
from embeddings.data.features import DEFAULT_TEXT_DIM, content_features  # noqa: E402
from embeddings.data.importers import read_dataset  # noqa: E402
from embeddings.eval.bootstrap import paired_bootstrap, paired_values  # noqa: E402
from embeddings.graph.csr import BipartiteCSR  # noqa: E402
from embeddings.graph.walks import WalkConfig, ppr_neighborhoods  # noqa: E402
from embeddings.pinsage.data import (  # noqa: E402
    PinGraph, PositivePairs, positive_pairs, rows_of, with_query_width,
)
from embeddings.pinsage.evaluation import (  # noqa: E402
    ITEM_TASK,
    KNN_NEIGHBORS,
    PIXIE_LATEST,
    USER_QUERY_SETTINGS,
    USER_TASK,
    EvaluationData,
    Evaluator,
    MethodResult,
    results_table,
)
from embeddings.pinsage.inference import embed_all  # noqa: E402
from embeddings.pinsage.model import PinSageConfig, build_model  # noqa: E402
from embeddings.pinsage.training import TrainingOptions, train  # noqa: E402

log = logging.getLogger("bench.pinsage_quality")

HETREC_PATH = Path("/work/shared/data/hetrec2011-lastfm-2k")
SPEED_RESULTS = REPO_ROOT / "bench" / "results" / "pinsage_speed.json"
DAY_S = 86_400.0
# (task, metric) reported on TEST: user next-save HR@10 / NDCG@10, item-to-item hit-rate@K and MRR.
REPORTED = [(USER_TASK, "hr@10"), (USER_TASK, "ndcg@10"), (ITEM_TASK, "hr@10"), (ITEM_TASK, "hr@50"),
            (ITEM_TASK, "hr@100"), (ITEM_TASK, "hr@500"), (ITEM_TASK, "mrr"), (ITEM_TASK, "mrr_scaled_100")]
# (task, metric) of the paired comparison against the primary model (``paired_differences``).
PAIRED = [(USER_TASK, "hr@10"), (USER_TASK, "ndcg@10"), (ITEM_TASK, "hr@10"), (ITEM_TASK, "hr@100"),
          (ITEM_TASK, "mrr")]
PRIMARY = "pinsage importance"
REFRESHED = ", refreshed"  # the name suffix of a method's rows under the refreshed protocol (``--refreshed``)


@dataclass(frozen=True)
class Variant:
    """One trained PinSage configuration of the ablation table."""

    name: str
    pooling: str
    hard_negatives: bool
    seeds: tuple[int, ...]
    loss: str = "sampled_softmax"
    num_neighbors: int | None = None  # T: the first T of each pin's PPR neighbors (None: all the graph has)


# The paper's ablations (``--ablations``): mean and max pooling, T = 10 and 20 neighbors (``t``), and the
# max-margin loss with and without the hard-negative curriculum (sampled softmax uses in-batch and shared
# negatives only, so hard negatives are an ablation of max-margin). Max pooling is left out by default:
# even fused, it trains about 2x slower on CPU than the weighted sum (docs/PINSAGE.md).
ABLATIONS = ("mean", "max", "t", "max-margin")
DEFAULT_ABLATIONS = ("mean", "t", "max-margin")

# HetRec's tuning grids: the evaluator's, widened where VALID chose an edge of them (2026-12-05,
# bench/diagnostics/pinsage_user_valid.py, docs/PINSAGE.md): on the user task item-kNN rises to a plateau at
# 3,000 neighbors (6,000 and all 18,022 score the same), Pixie's query pins to one at 200 (500 the same),
# and content features' soft maximum at temperature 0.2 (0.3 the same). The nightly evaluation keeps the
# narrower defaults: 3,000 neighbors of each of 20k synthetic pins could hold up to 60M similarities.
# Since the ties in time stopped following artist ids (engagement.time_order), VALID's best PinSage blends are
# short sums (latest 10 or 20), so the grid also tries the latest 10 and 50 with `sum`.
HETREC_USER_SETTINGS = (*USER_QUERY_SETTINGS, (200, "softmax", 0.2), (10, "sum"), (50, "sum"))
HETREC_KNN_NEIGHBORS = (*KNN_NEIGHBORS, 1000, 3000)
HETREC_PIXIE_LATEST = (*PIXIE_LATEST, 50, 200)


def ablation_list(text: str) -> tuple[str, ...]:
    """``--ablations``: a comma-separated subset of ``ABLATIONS``, or ``none``; returned in table order."""
    names = {n.strip() for n in text.split(",") if n.strip()} - {"none"}
    unknown = sorted(names - set(ABLATIONS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown ablation(s) {unknown}; choose from {ABLATIONS} or 'none'")
    return tuple(a for a in ABLATIONS if a in names)


def ablation_variants(ablations: Sequence[str], seeds: tuple[int, ...], ablation_seeds: int, loss: str,
                      num_neighbors: int) -> list[Variant]:
    """The primary model (every seed), then the chosen ablations: mean pooling on ``ablation_seeds`` seeds
    (the bar compares it), the others on one seed each, as the paper's table reports them."""
    variants = [Variant("pinsage importance", "importance", True, seeds, loss)]
    if "mean" in ablations:
        variants.append(Variant("pinsage mean", "mean", True, seeds[:ablation_seeds], loss))
    if "max" in ablations:
        variants.append(Variant("pinsage max pooling", "max", True, seeds[:1], loss))
    if "t" in ablations:
        variants += [Variant(f"pinsage importance, T={t}", "importance", True, seeds[:1], loss, t)
                     for t in (10, 20) if t < num_neighbors]
    if "max-margin" in ablations:
        variants += [Variant("pinsage importance, max-margin", "importance", True, seeds[:1], "max_margin"),
                     Variant("pinsage importance, max-margin, no hard negatives", "importance", False, seeds[:1],
                             "max_margin")]
    return variants


@dataclass(frozen=True)
class Refreshed:
    """The graph rebuilt from every save before TEST (TRAIN + VALID), as a nightly rebuild would serve TEST:
    the same pins, features and PPR walk settings as ``Inputs.graph``, other boards, neighborhoods and weights."""

    graph: PinGraph
    csr: BipartiteCSR


@dataclass(frozen=True)
class Inputs:
    """Everything PinSage and the evaluator need for one dataset (rows = sorted pin ids)."""

    graph: PinGraph
    csr: BipartiteCSR  # pin index == row of ``graph``
    pairs: PositivePairs
    stats: dict
    refreshed: Refreshed | None = None  # ``public_inputs(refresh=True)`` only


# ---- shared pieces --------------------------------------------------------------------------------


def train_graph(pin_rows: np.ndarray, board_ids: np.ndarray, pin_ids: np.ndarray) -> BipartiteCSR:
    """The pin-board CSR of the given saves ((E,) pin rows, (E,) board ids); pin index = row of ``pin_ids``."""
    boards, board_idx = np.unique(board_ids, return_inverse=True)
    edges = np.unique(np.stack([pin_rows, board_idx.ravel()], axis=1), axis=0)
    return BipartiteCSR.from_edges(edges[:, 0], edges[:, 1], pin_ids, boards)


def neighborhoods(csr: BipartiteCSR, walk: WalkConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """PPR neighbors (P, T), weights (P, T) and band hard negatives (P, K) of every pin, and the seconds."""
    started = time.perf_counter()
    result = ppr_neighborhoods(csr, np.arange(csr.num_pins), walk, num_threads=2)
    seconds = time.perf_counter() - started
    log.info("PPR neighborhoods of %d pins (%d steps each) in %.1f s; %d isolated", csr.num_pins, walk.num_steps,
             seconds, int((result.neighbors[:, 0] < 0).sum()))
    return result.neighbors, result.weights, result.band_samples, seconds


def pin_graph(pin_ids: np.ndarray, features: np.ndarray, pin_rows: np.ndarray, board_ids: np.ndarray,
              walk: WalkConfig, weight_power: float) -> tuple[PinGraph, BipartiteCSR, float]:
    """The PinGraph (features, PPR neighborhoods sharpened by ``weight_power``, band negatives) and the CSR of the
    given saves, and the seconds the walks took."""
    csr = train_graph(pin_rows, board_ids, pin_ids)
    neighbors, weights, band, ppr_s = neighborhoods(csr, walk)
    return PinGraph(pin_ids, features, neighbors, sharpen(weights, weight_power), band), csr, ppr_s


def sharpen(weights: np.ndarray, power: float) -> np.ndarray:
    """The (P, T) visit weights raised to ``power`` (> 1: importance pooling leans harder on the top neighbors,
    0: mean pooling's equal weights; the pooling normalizes them per pin, ``sampling.pooling_weights``)."""
    if not np.isfinite(power) or power < 0:
        raise ValueError(f"the weight power must be finite and >= 0, got {power}")
    return weights if power == 1 else np.power(weights, power).astype(weights.dtype)


def weight_concentration(neighbors: np.ndarray, weights: np.ndarray) -> dict:
    """How far the PPR visit weights are from uniform, over the pins that have neighbors.

    Importance pooling weighs a pin's neighbors by these weights; mean pooling weighs them equally, so the
    nearer to uniform they are, the closer the two poolings are. Args: (P, T) neighbors (-1 = none) and
    weights. Returns the medians of the neighbor count, of the top neighbor's share (uniform: 1/count), of the
    top 5's share and of the effective neighbor count ``exp(entropy)`` (uniform: the count).
    """
    valid = neighbors >= 0
    has = valid.any(axis=1)
    w = np.where(valid, weights, 0.0)[has].astype(np.float64)
    p = w / w.sum(axis=1, keepdims=True)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    ranked = -np.sort(-p, axis=1)
    return {"pins": int(has.sum()), "median_neighbors": float(np.median(valid[has].sum(axis=1))),
            "median_top_share": round(float(np.median(ranked[:, 0])), 4),
            "median_top5_share": round(float(np.median(ranked[:, :5].sum(axis=1))), 4),
            "median_effective_neighbors": round(float(np.median(np.exp(entropy))), 2)}


def next_save_pairs(users: np.ndarray, items: np.ndarray, ts: np.ndarray, labels: np.ndarray,
                    max_gap_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Each user's consecutive positive saves of two different pins, labelled by the second's slice.

    Saves are in ``time_order`` with the slice label first inside a tie, so within a timestamp training
    saves come before held-out ones (as the per-user split ordered them) and the rest of a tie goes by a
    hash of (user, pin), never by pin id. Args are (E,) arrays: user, pin row, ts (datetime64[us]),
    label. Returns ((N, 2) int64 [query row, next row], (N,) int8 label).
    """
    order = time_order(users, items, ts, labels)
    u, i, t, lab = users[order], items[order], ts[order].astype(np.int64), labels[order]
    keep = (u[1:] == u[:-1]) & (i[1:] != i[:-1])
    if max_gap_s is not None:
        keep &= (t[1:] - t[:-1]) <= max_gap_s * 1e6
    return np.stack([i[:-1][keep], i[1:][keep]], axis=1).astype(np.int64), lab[1:][keep]


def cycle_pairs(groups: Sequence[np.ndarray], items: np.ndarray, partners: int, seed: int = 0) -> np.ndarray:
    """Pairs of two different pins of one group, ``partners`` per (group, pin).

    A group is a distinct tuple of the ``groups`` columns (say user and day). Each distinct (group, pin) is
    paired with the pins ``1..partners`` places after it in a seeded random cycle of that group's distinct
    pins (fewer where the group has fewer). Args are (E,) integer arrays. Returns (N, 2) int64 [query, partner].
    """
    keys = np.unique(np.stack([*(g.astype(np.int64) for g in groups), items.astype(np.int64)], axis=1), axis=0)
    shuffle = np.random.default_rng(seed).random(len(keys))
    order = np.lexsort((shuffle, *(keys[:, c] for c in reversed(range(len(groups))))))
    group, i = keys[order, :-1], keys[order, -1]
    starts = np.flatnonzero(np.r_[True, (group[1:] != group[:-1]).any(axis=1)])
    sizes = np.diff(np.r_[starts, len(i)])
    first, size = np.repeat(starts, sizes), np.repeat(sizes, sizes)
    position = np.arange(len(i)) - first
    out = [np.stack([i[size > s], i[(first + (position + s) % size)[size > s]]], axis=1)
           for s in range(1, partners + 1)]
    return np.concatenate(out).astype(np.int64) if out else np.empty((0, 2), np.int64)


def same_day_pairs(users: np.ndarray, items: np.ndarray, ts: np.ndarray, partners: int,
                   seed: int = 0) -> np.ndarray:
    """Pairs of two different pins one user saved on the same calendar day, ``partners`` per pin and day.

    Where times are dates (HetRec), "the pin engaged right after" is unknown within a day: every same-day
    save is as much the next one as any other. ``cycle_pairs`` over (user, day). Args are (E,) arrays: user,
    pin row, ts (datetime64[us]). Returns (N, 2) int64 [query, partner].
    """
    return cycle_pairs([users, ts.astype("datetime64[D]").astype(np.int64)], items, partners, seed)


def board_pairs(boards: np.ndarray, items: np.ndarray, partners: int, seed: int = 0) -> np.ndarray:
    """Pairs of two different pins saved to one board, ``partners`` per (board, pin) (``cycle_pairs``).

    The pin-board-pin step of a Pixie walk as training positives (HetRec: a board is a user's tag), at any
    distance in time. Args are (E,) arrays: board id (any values np.unique orders), pin row.
    """
    _, codes = np.unique(boards, return_inverse=True)
    return cycle_pairs([codes.ravel()], items, partners, seed)


def history_queries(users: np.ndarray, items: np.ndarray, ts: np.ndarray, labels: np.ndarray,
                    num_latest: int) -> np.ndarray:
    """The user task as training examples: each first save of a pin by a user, queried by the user's latest pins.

    For every TRAIN save whose pin the user had not saved before and that has at least one earlier save, the
    query is the user's ``num_latest`` latest distinct earlier pins, newest first (as ``Sequences.latest`` forms
    the user task's queries), and the positive is the new pin. Saves are in ``time_order``. Args are (E,)
    arrays: user, pin row, ts (datetime64[us]), label. Returns (M, num_latest + 1) int64 [query rows (-1
    padding), positive row] (``PositivePairs``).
    """
    order = time_order(users, items, ts, labels)
    u, i, lab = users[order], items[order], labels[order]
    out: list[list[int]] = []
    latest: dict[int, None] = {}  # the current user's distinct pins, oldest first, by their latest save
    for k in range(len(u)):
        if k == 0 or u[k] != u[k - 1]:
            latest = {}
        if lab[k] != TRAIN:
            continue
        pin = int(i[k])
        if pin not in latest and latest:
            query = list(latest)[::-1][:num_latest]
            out.append(query + [-1] * (num_latest - len(query)) + [pin])
        latest.pop(pin, None)
        latest[pin] = None
    return np.asarray(out, dtype=np.int64).reshape(-1, num_latest + 1)


def ppr_pairs(neighbors: np.ndarray, positives: int) -> np.ndarray:
    """Each pin paired with its ``positives`` nearest PPR neighbors (best first; -1 and the pin itself skipped).

    GraphSAGE's unsupervised positives: pins that co-occur on the graph's walks. Pixie ranks by these visits,
    so the pairs teach PinSage the proximity that Pixie's user lists follow. Args: (P, T) neighbor rows.
    Returns (N, 2) int64 [pin, neighbor].
    """
    top = neighbors[:, :max(positives, 0)]
    pins = np.repeat(np.arange(len(neighbors)), top.shape[1])
    partner = top.ravel()
    keep = (partner >= 0) & (partner != pins)
    return np.stack([pins[keep], partner[keep]], axis=1).astype(np.int64)


def cap_pairs(pairs: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """A seeded sample of at most ``limit`` pairs (order kept); 0 = all."""
    if not limit or len(pairs) <= limit:
        return pairs
    return pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), limit, replace=False))]


def variant_graph(graph: PinGraph, variant: Variant) -> PinGraph:
    """The graph as ``variant`` sees it: the first T of each pin's PPR neighbors (best first) when it sets T."""
    if variant.num_neighbors is None:
        return graph
    return dataclasses.replace(graph, neighbors=graph.neighbors[:, :variant.num_neighbors],
                               weights=graph.weights[:, :variant.num_neighbors])


def train_variant(inputs: Inputs, variant: Variant, seed: int, options: TrainingOptions, dims: tuple[int, int],
                  workdir: Path, resume: bool = False,
                  on_epoch: Callable[[dict, np.ndarray], None] | None = None,
                  id_dim: int = 0) -> tuple[torch.nn.Module, dict]:
    """Train one PinSage (checkpoints under ``workdir``): (the kept model, summary; its ``seconds`` are the call's
    wall time, a resumed run's loading included, ``train_seconds`` the training's across resumptions).

    ``resume``: continue from the run's checkpoint in ``workdir`` where one exists (a finished run is only
    loaded again; ``train`` refuses a checkpoint of other settings or data). ``on_epoch`` goes to ``train``.
    ``id_dim`` > 0 appends a learned id vector of that width to every pin's features (``PinSageConfig.id_dim``)."""
    hidden, embedding = dims
    graph = variant_graph(inputs.graph, variant)
    config = PinSageConfig(in_dim=graph.feature_dim, hidden_dim=hidden, embedding_dim=embedding,
                           pooling=variant.pooling, num_neighbors=graph.neighbors.shape[1],
                           num_ids=graph.num_pins if id_dim else 0, id_dim=id_dim)
    opts = dataclasses.replace(options, seed=seed, use_hard_negatives=variant.hard_negatives, loss=variant.loss)
    started = time.perf_counter()
    checkpoint = workdir / f"{variant.name}-{variant.loss}-seed{seed}.pt".replace(" ", "_").replace(",", "")
    resumed = resume and checkpoint.exists()
    outcome = train(build_model(config), graph, inputs.pairs, opts, "cpu", checkpoint_path=checkpoint, resume=resume,
                    on_epoch=on_epoch)
    summary = {"seed": seed, "num_neighbors": config.num_neighbors, "best_epoch": outcome.best_epoch,
               "epochs_run": len(outcome.history),
               "stopped_early": outcome.stopped_early, "steps": outcome.steps,
               "examples_per_s": round(outcome.examples_per_s, 1),
               "data_wait_share": round(outcome.data_wait_share, 4),
               "seconds": round(time.perf_counter() - started, 1),
               "train_seconds": round(outcome.train_seconds, 1), "resumed": resumed,
               "history": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()}
                           for h in outcome.history]}
    log.info("%s seed %d trained in %.0f s%s (best epoch %d of %d, %.0f pairs/s)", variant.name, seed,
             outcome.train_seconds, f", resumed from {checkpoint}" if resumed else "", outcome.best_epoch,
             len(outcome.history), outcome.examples_per_s)
    return outcome.model, summary


def embed_variant(model: torch.nn.Module, graph: PinGraph, variant: Variant) -> np.ndarray:
    """Every pin's embedding by ``model`` over ``graph`` as ``variant`` sees it: (P, D) float32."""
    graph = variant_graph(graph, variant)
    return embed_all(model, graph.features, graph.neighbors, graph.weights)


def train_and_embed(inputs: Inputs, variant: Variant, seed: int, options: TrainingOptions, dims: tuple[int, int],
                    workdir: Path, resume: bool = False,
                    on_epoch: Callable[[dict, np.ndarray], None] | None = None,
                    id_dim: int = 0) -> tuple[np.ndarray, dict]:
    """Train one PinSage (``train_variant``) and embed every pin: ((P, D) float32, summary)."""
    model, summary = train_variant(inputs, variant, seed, options, dims, workdir, resume, on_epoch, id_dim)
    return embed_variant(model, inputs.graph, variant), summary


# ---- HetRec Last.fm -------------------------------------------------------------------------------


def public_inputs(path: Path, walk: WalkConfig, max_gap_s: float | None, max_train_pairs: int,
                  dataset: str = "hetrec-lastfm", day_partners: int = 0,
                  ppr_positives: int = 0, text_dim: int = DEFAULT_TEXT_DIM,
                  weight_power: float = 1.0, board_partners: int = 0,
                  history: tuple[int, int] = (0, 0), development: bool = False,
                  refresh: bool = False, refit: bool = False) -> tuple[Inputs, EvaluationData]:
    """Import a public dataset (``importers.DATASETS``: HetRec Last.fm here, MovieLens too for
    bench/pinnerformer_quality.py), keep its positive engagements (HetRec's are all saves; MovieLens's are
    ratings >= 4), split them per user, build graph / neighborhoods / features / pairs from TRAIN.
    ``day_partners`` > 0 adds ``same_day_pairs`` of the TRAIN saves to the training pairs (never to the
    held-out pairs the evaluation scores); ``ppr_positives`` > 0 adds ``ppr_pairs`` of the TRAIN graph;
    ``board_partners`` > 0 adds ``board_pairs`` of the TRAIN saves. ``history = (H, C)`` with H > 0 adds C
    copies of ``history_queries`` (latest H pins) to them, and the pairs become (N, H + 1) examples.
    ``text_dim`` is the width of the hashed pin text in the content features (``content_features``);
    ``weight_power`` raises the PPR visit weights to that power (``sharpen``).
    ``development`` builds the development split instead: the TEST saves are left out and the rest is split
    per user again, so its TEST slice is exactly the VALID saves, scored with a history (dev-TRAIN + dev-VALID)
    that holds pins off the graph as TEST's does, and nothing of TEST is read.
    ``refresh`` also builds ``Inputs.refreshed``: the graph and PPR neighborhoods of every save before TEST, for
    the refreshed protocol (``Evaluator(refit_before_test=True)``); the pin text keeps the importer's training tags.
    ``refit`` builds the graph, neighborhoods and training pairs (partners included) from every save before TEST
    (TRAIN + VALID), as a nightly training on all saves up to ``ds`` sees them, for a model refitted before TEST
    is scored; the validation pairs stay VALID's, which such a model has trained on."""
    if refit and history[0] and history[1]:
        raise ValueError("public_inputs: refit does not build history queries (they read TRAIN's saves only)")
    imported = read_dataset(dataset, path)
    events, pins = imported.events, imported.pins.sort_by("pin_id")
    events = events.filter(pa.array(positive_mask(events.column("action").to_numpy(zero_copy_only=False),
                                                  events.column("duration_ms").to_numpy(zero_copy_only=False))))
    pin_ids = pins.column("pin_id").to_numpy().astype(np.int64)
    user_ids = events.column("user_id").to_numpy()
    event_pins = events.column("pin_id").to_numpy()
    ts = events.column("ts").to_numpy().astype("datetime64[us]")
    labels = split_per_user(user_ids, event_pins, ts)
    if development:
        kept = labels != TEST
        events = events.filter(pa.array(kept))
        user_ids, event_pins, ts = user_ids[kept], event_pins[kept], ts[kept]
        labels = split_per_user(user_ids, event_pins, ts)
    rows = rows_of(pin_ids, event_pins)
    if (rows < 0).any():
        raise ValueError(f"{int((rows < 0).sum())} {dataset} saves name pins missing from the pins table")
    _, users = np.unique(user_ids, return_inverse=True)
    users = users.ravel().astype(np.int64)

    train = labels != TEST if refit else labels == TRAIN
    boards = events.column("board_id").to_numpy()
    features = content_features(pin_ids, pins.column("text").to_pylist(), text_dim=text_dim)
    graph, csr, ppr_s = pin_graph(pin_ids, features, rows[train], boards[train], walk, weight_power)
    neighbors, band = graph.neighbors, graph.hard_negatives
    refreshed = None
    if refresh:
        before = labels != TEST
        refreshed = Refreshed(*pin_graph(pin_ids, features, rows[before], boards[before], walk, weight_power)[:2])

    pairs, pair_labels = next_save_pairs(users, rows, ts, labels, max_gap_s)
    train_pairs = pairs[(pair_labels != TEST) if refit else (pair_labels == TRAIN)]
    next_pairs = len(train_pairs)
    if day_partners:
        train_pairs = np.unique(np.concatenate([train_pairs, same_day_pairs(
            users[train], rows[train], ts[train], day_partners)]), axis=0)
    if ppr_positives:
        train_pairs = np.unique(np.concatenate([train_pairs, ppr_pairs(neighbors, ppr_positives)]), axis=0)
    if board_partners:
        train_pairs = np.unique(np.concatenate([train_pairs, board_pairs(boards[train], rows[train],
                                                                         board_partners)]), axis=0)
    history_latest, history_copies = history
    history_examples = 0
    if history_latest and history_copies:
        queries = history_queries(users, rows, ts, labels, history_latest)
        history_examples = len(queries)
        train_pairs = np.concatenate([with_query_width(train_pairs, history_latest)] + [queries] * history_copies)
    split_pairs = {"valid": pairs[pair_labels == VALID], "test": pairs[pair_labels == TEST]}
    positive = PositivePairs(cap_pairs(train_pairs, max_train_pairs, seed=0), split_pairs["valid"])
    gap = "no gap limit" if max_gap_s is None else f"gap <= {max_gap_s / DAY_S:g} days"
    split = "development" if development else "per-user"
    split += ", refitted on TRAIN + VALID" if refit else ""
    data = EvaluationData(
        num_items=len(pin_ids), users=users, items=rows, ts=ts, labels=labels, pairs=split_pairs,
        split={name: f"{split} split {name} (item pairs: next save, {gap})" for name in ("valid", "test")},
        max_users=0,
    )
    stats = {
        "users": int(users.max()) + 1, "pins": len(pin_ids), "saves": len(rows),
        "saves_per_slice": {"train": int(train.sum()), "valid": int((labels == VALID).sum()),
                            "test": int((labels == TEST).sum())},
        "graph": {"pins_with_boards": int((csr.pin_degree() > 0).sum()), "boards": csr.num_boards,
                  "edges": csr.num_edges, "ppr_seconds": round(ppr_s, 1)},
        "pins_with_hard_negatives": int((band[:, 0] >= 0).sum()),
        "neighbor_weights": weight_concentration(neighbors, graph.weights),
        "feature_dim": int(features.shape[1]),
        "pairs": {"train_available": len(train_pairs), "train_next_save": next_pairs,
                  "day_partners": day_partners, "ppr_positives": ppr_positives, "board_partners": board_partners,
                  "history_queries": {"latest": history_latest, "copies": history_copies,
                                      "examples": history_examples},
                  "train_used": len(positive.train),
                  "valid": len(split_pairs["valid"]), "test": len(split_pairs["test"]), "gap": gap},
    }
    log.info("%s: %s", dataset, stats)
    if refreshed is not None:
        stats["refreshed_graph"] = {"pins_with_boards": int((refreshed.csr.pin_degree() > 0).sum()),
                                    "boards": refreshed.csr.num_boards, "edges": refreshed.csr.num_edges}
    return Inputs(graph, csr, positive, stats, refreshed), data


def summarize(name: str, runs: Sequence[MethodResult]) -> dict:
    """Mean / std / min / max over seeds of every reported TEST metric, and the VALID-chosen settings."""
    out: dict = {"runs": len(runs), "settings": [{k: repr(v) for k, v in r.settings.items()} for r in runs]}
    for task, metric in REPORTED:
        values = np.array([float(r.results[(task, "test")].metric(metric).mean()) for r in runs])
        out[f"{task}/{metric}"] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
                                   else 0.0, "min": float(values.min()), "max": float(values.max()),
                                   "per_seed": values.round(5).tolist()}
    out["test_queries"] = {task: runs[0].results[(task, "test")].num_queries for task in (ITEM_TASK, USER_TASK)}
    out["protocols"] = {task: runs[0].results[(task, "test")].protocol for task in (ITEM_TASK, USER_TASK)}
    return out


def seed_mean(runs: Sequence[MethodResult], task: str, metric: str, reference: MethodResult) -> np.ndarray:
    """The per-query TEST ``metric`` averaged over the runs (seeds), aligned with ``reference``'s queries
    (``paired_values`` refuses another evaluation or other queries)."""
    first = reference.results[(task, "test")]
    return np.mean([paired_values(first, r.results[(task, "test")], metric)[1] for r in runs], axis=0)


def paired_differences(methods: dict[str, Sequence[MethodResult]], trained: set[str], primary: str = PRIMARY,
                       num_samples: int = 2000) -> dict[str, dict]:
    """The primary model minus each other method on TEST, per ``PAIRED`` metric: the mean per-query
    difference and its 95% paired bootstrap interval over the TEST queries (users or item pairs).

    Each side's per-query value is averaged over its seeds first. A trained rival (``trained``: an ablation)
    is compared on the seeds both ran (the run's first n seeds, in order); a baseline, deterministic, against every seed
    of the primary model. The interval is over queries only: seed-to-seed spread is the table's ± column.
    """
    out: dict[str, dict] = {}
    reference = methods[primary][0]
    for rival, runs in methods.items():
        if rival == primary:
            continue
        shared = rival in trained  # an ablation: compared on the seeds both ran
        n = min(len(runs), len(methods[primary])) if shared else len(methods[primary])
        ours, theirs = methods[primary][:n], (runs[:n] if shared else runs)
        row: dict = {"primary_seeds": n}
        for task, metric in PAIRED:
            diff = paired_bootstrap(seed_mean(ours, task, metric, reference),
                                    seed_mean(theirs, task, metric, reference), num_samples, seed=0)
            row[f"{task}/{metric}"] = {"diff": round(diff.mean, 6), "ci_low": round(diff.ci_low, 6),
                                       "ci_high": round(diff.ci_high, 6)}
        out[rival] = row
    return out


def format_paired(paired: dict[str, dict], primary: str = PRIMARY) -> str:
    """A Markdown table: primary minus each method, x100, with its 95% paired bootstrap interval."""
    header = ["method", f"{primary} seeds"] + [f"{'user' if t == USER_TASK else 'i2i'} {m}" for t, m in PAIRED]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rival, row in paired.items():
        cells = [rival, str(row["primary_seeds"])]
        for task, metric in PAIRED:
            d = row[f"{task}/{metric}"]
            cells.append(f"{100 * d['diff']:+.2f} [{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_summary(rows: dict[str, dict]) -> str:
    """A Markdown table: method x reported metric (mean ± std [min, max] over seeds; x100)."""
    header = ["method", "seeds"] + [f"{'user' if t == USER_TASK else 'i2i'} {m}" for t, m in REPORTED]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, s in rows.items():
        cells = [name, str(s["runs"])]
        for task, metric in REPORTED:
            v = s[f"{task}/{metric}"]
            cell = f"{100 * v['mean']:.2f}"
            if s["runs"] > 1:
                cell += f" ± {100 * v['std']:.2f} [{100 * v['min']:.2f}, {100 * v['max']:.2f}]"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def walk_config(args: argparse.Namespace) -> WalkConfig:
    """The PPR walks of ``--ppr-steps`` / ``--num-neighbors``, hard negatives from visit ranks 200-500."""
    return WalkConfig(num_steps=args.ppr_steps, top_t=args.num_neighbors, band=(200, 500), num_band_samples=20)


def training_options(args: argparse.Namespace) -> TrainingOptions:
    """Every HetRec run's options. Early stopping watches every validation pair (HetRec: ~12.5k; 1,000 gave
    ~30 hits, too noisy to stop on)."""
    return TrainingOptions(num_epochs=args.epochs, patience=args.patience, num_workers=1, log_every_s=30.0,
                           num_valid_pairs=args.valid_pairs, temperature=args.temperature,
                           learning_rate=args.learning_rate, weight_decay=args.weight_decay,
                           num_shared_negatives=args.shared_negatives, batch_size=args.batch_size,
                           log_q_weight=args.log_q_weight)


# TrainingOptions fields that train_and_embed sets from the Variant and the seed
PER_VARIANT_OPTIONS = ("seed", "loss", "use_hard_negatives")


def shared_options(options: TrainingOptions) -> dict:
    """The options every HetRec run shares, for the record: seed, loss and hard negatives are each run's own
    (``train_and_embed`` sets them from its Variant), so the record leaves out these unused defaults."""
    return {k: v for k, v in options.to_dict().items() if k not in PER_VARIANT_OPTIONS}


def set_threads(args: argparse.Namespace, threads: int) -> None:
    """torch's thread count; with ``--weight-decay``, subnormal floats flushed to zero in every torch thread first.

    Adam's L2 term keeps the weights of ReLU units that no longer fire in the subnormal range (under 1.2e-38);
    HetRec trainings without the flush (three side by side) slowed from 1,100 to 184 pairs/s by their third epoch
    (2026-12-07), and a matmul over weights 12% subnormal took 117x as long.
    torch's switch sets the calling thread only, and its intra-op threads copy it when they start, so it comes
    before the first parallel op (``train`` warns if it did not take)."""
    if args.weight_decay > 0:
        torch.set_flush_denormal(True)
    torch.set_num_threads(threads)


def hetrec_inputs(args: argparse.Namespace, development: bool = False,
                  refresh: bool = False, refit: bool = False) -> tuple[Inputs, EvaluationData]:
    """HetRec Last.fm as the flags describe it (``public_inputs``; ``development``: its development split;
    ``refresh``: with the graph of every save before TEST too; ``refit``: built from TRAIN + VALID)."""
    max_gap_s = None if args.max_gap_days <= 0 else args.max_gap_days * DAY_S
    return public_inputs(Path(args.hetrec_path), walk_config(args), max_gap_s, args.max_train_pairs,
                         day_partners=args.day_partners, ppr_positives=args.ppr_positives,
                         board_partners=args.board_partners, history=(args.history_queries, args.history_copies),
                         text_dim=args.text_dim, weight_power=args.weight_power, development=development,
                         refresh=refresh, refit=refit)


def baseline_methods(evaluator: Evaluator, inputs: Inputs) -> dict[str, list[MethodResult]]:
    """Content features alone, item-kNN, Pixie and popularity on HetRec, their settings tuned on VALID; under
    ``evaluator.refit_before_test`` TEST is scored with the refreshed graph (``inputs.refreshed``) and fits."""
    refreshed = evaluator.refit_before_test
    if refreshed and inputs.refreshed is None:
        raise ValueError("the refreshed protocol needs the graph of every save before TEST: "
                         "public_inputs(refresh=True)")
    features = inputs.graph.features
    test_graph = (inputs.refreshed.csr, np.arange(inputs.refreshed.csr.num_pins)) if refreshed else None
    return {"content features": [evaluator.embeddings("content features", features, HETREC_USER_SETTINGS,
                                                      test_vectors=features if refreshed else None)],
            "item-kNN": [evaluator.item_knn("item-kNN", HETREC_KNN_NEIGHBORS)],
            "Pixie": [evaluator.pixie(inputs.csr, np.arange(inputs.csr.num_pins), "Pixie",
                                      latest=HETREC_PIXIE_LATEST, test_graph=test_graph)],
            "popularity": [evaluator.popularity("popularity")]}


def refreshed_baselines(served: Evaluator, inputs: Inputs) -> dict[str, list[MethodResult]]:
    """``baseline_methods`` under the refreshed protocol (``served.refit_before_test``), named ``<method>, refreshed``
    (``REFRESHED``), as the bench's refreshed rows are."""
    return {name + REFRESHED: [dataclasses.replace(r, name=r.name + REFRESHED) for r in runs]
            for name, runs in baseline_methods(served, inputs).items()}

def bench_hetrec(args: argparse.Namespace, variants: Sequence[Variant], options: TrainingOptions,
                 workdir: Path, resume: bool = False) -> tuple[dict, pd.DataFrame, dict]:
    """Every variant's seeds and the baselines on HetRec, tuned on VALID, TEST scored once: (summaries, table,
    data stats). ``args.refreshed`` adds every method again under the refreshed protocol (``REFRESHED`` rows: the
    same trained models, TEST ranked over the graph and fits of every save before it, as a nightly rebuild serves
    it); a refreshed row's paired differences are against the refreshed primary model."""
    inputs, data = hetrec_inputs(args, refresh=args.refreshed)
    evaluator = Evaluator(data)
    served = Evaluator(data, refit_before_test=True) if args.refreshed else None
    methods: dict[str, list[MethodResult]] = {}
    training: dict[str, list[dict]] = {}
    for variant in variants:
        for seed in variant.seeds:
            model, summary = train_variant(inputs, variant, seed, options, (args.hidden_dim, args.embedding_dim),
                                           workdir, resume=resume, id_dim=args.id_dim)
            vectors = embed_variant(model, inputs.graph, variant)
            training.setdefault(variant.name, []).append(summary)
            name = f"{variant.name} seed {seed}"
            methods.setdefault(variant.name, []).append(evaluator.embeddings(name, vectors, HETREC_USER_SETTINGS))
            if served is not None:
                methods.setdefault(variant.name + REFRESHED, []).append(served.embeddings(
                    name + REFRESHED, vectors, HETREC_USER_SETTINGS,
                    test_vectors=embed_variant(model, inputs.refreshed.graph, variant)))
            log.info("%s seed %d: test user hr@10 %.4f, item hr@10 %.4f", variant.name, seed,
                     methods[variant.name][-1].results[(USER_TASK, "test")].metric("hr@10").mean(),
                     methods[variant.name][-1].results[(ITEM_TASK, "test")].metric("hr@10").mean())
    methods.update(baseline_methods(evaluator, inputs))
    frozen = {name: runs for name, runs in methods.items() if not name.endswith(REFRESHED)}
    if served is not None:
        methods.update(refreshed_baselines(served, inputs))
    table = results_table([m for runs in methods.values() for m in runs])
    summaries = {name: summarize(name, runs) for name, runs in methods.items()}
    for name, runs in training.items():
        summaries[name]["training"] = runs
    for name, row in paired_differences(frozen, set(training)).items():
        summaries[name][f"{PRIMARY} minus this"] = row
    if served is not None:
        refreshed = {name: runs for name, runs in methods.items() if name.endswith(REFRESHED)}
        for name, row in paired_differences(refreshed, {n + REFRESHED for n in training},
                                            PRIMARY + REFRESHED).items():
            summaries[name][f"{PRIMARY} minus this"] = row
    return summaries, table, inputs.stats


# ---- synthetic ------------------------------------------------------------------------------------


def bench_synthetic(args: argparse.Namespace, options: TrainingOptions, workdir: Path, resume: bool = False) -> dict:
    """Planted-topic precision@10 of PinSage vs content features on the ``demo`` world (seed 0)."""
    started = time.perf_counter()
    params = synthetic.make_params(args.synthetic_scale)
    ds = dt.date(2026, 11, 1)
    world = synthetic.generate_world(params, seed=0, start=ds - dt.timedelta(days=params.num_days - 1))
    events = pa.concat_tables([day.events for day in synthetic.generate_days(world)])
    pins = synthetic.pins_table(world)
    topics = synthetic.pin_topics_table(world)
    pin_ids = pins.column("pin_id").to_numpy().astype(np.int64)
    if not (np.diff(pin_ids) > 0).all():
        raise ValueError("synthetic pins are expected sorted by pin_id")
    primary = topics.column("primary_topic").to_numpy()[rows_of(topics.column("pin_id").to_numpy(), pin_ids)]
    generated_s = time.perf_counter() - started

    holdout = min(7, params.num_days // 4)  # 7 days each at demo scale; fewer in a short (tiny) world
    split = TimeSplit(ds=world.end, window_days=params.num_days, valid_days=holdout, test_days=holdout)
    actions = events.column("action").to_numpy(zero_copy_only=False)
    day = events.column("ts").to_numpy().astype("datetime64[us]").astype("datetime64[D]")
    saves = (actions == "save") & (day < np.datetime64(split.test_start))
    csr = train_graph(rows_of(pin_ids, events.column("pin_id").to_numpy()[saves]),
                      events.column("board_id").to_numpy()[saves], pin_ids)
    neighbors, weights, band, ppr_s = neighborhoods(csr, walk_config(args))
    weights = sharpen(weights, args.weight_power)
    features = content_features(pin_ids, pins.column("text").to_pylist(), text_dim=args.text_dim)
    graph = PinGraph(pin_ids, features, neighbors, weights, band)
    pairs = positive_pairs(events, pin_ids, split, args.synthetic_gap_s)
    pairs = PositivePairs(cap_pairs(pairs.train, args.synthetic_train_pairs, seed=0), pairs.valid, pairs.stats)
    inputs = Inputs(graph, csr, pairs, {})
    syn_options = dataclasses.replace(options, num_epochs=args.synthetic_epochs)
    k, queries = 10, args.synthetic_queries
    # The primary loss, and the paper's max-margin loss beside it when the primary is another one.
    with_max_margin = args.loss != "max_margin" and "max-margin" in args.ablations
    losses = [args.loss] + (["max_margin"] if with_max_margin else [])
    precision, summaries = {}, {}
    for loss in losses:
        variant = Variant("pinsage importance", "importance", True, (0,), loss)
        vectors, summaries[loss] = train_and_embed(inputs, variant, 0, syn_options,
                                                   (args.hidden_dim, args.embedding_dim), workdir,
                                                   resume=resume)
        precision[loss] = synthetic.knn_label_precision(vectors, primary, k=k, num_queries=queries, seed=0)
    pinsage_p = precision[args.loss]
    content_p = synthetic.knn_label_precision(features, primary, k=k, num_queries=queries, seed=0)
    result = {
        "world": {"scale": args.synthetic_scale, "seed": 0, "window": f"{world.start}..{world.end}",
                  "pins": len(pin_ids), "topics": params.num_topics,
                  "topic_word_fraction": params.topic_word_fraction, "events": events.num_rows,
                  "generation_seconds": round(generated_s, 1)},
        "graph": {"saves_used": int(saves.sum()), "before": str(split.test_start),
                  "pins_with_boards": int((csr.pin_degree() > 0).sum()), "edges": csr.num_edges,
                  "ppr_seconds": round(ppr_s, 1)},
        "pairs": {"train_available": int(pairs.stats.get("train_pairs", len(pairs.train))),
                  "train_used": len(pairs.train), "valid": len(pairs.valid), "max_gap_s": args.synthetic_gap_s},
        "protocol": f"precision@{k} of the planted primary topic (synthetic_pin_topics) among each query pin's "
                    f"{k} cosine nearest neighbors (itself excluded), {queries} query pins sampled with seed 0",
        "precision_at_10": {"pinsage": round(pinsage_p, 4), "content features": round(content_p, 4),
                            **{f"pinsage {loss}": round(value, 4) for loss, value in precision.items()}},
        "primary_loss": args.loss,
        "gain": round(pinsage_p - content_p, 4),
        "bar": "PinSage >= content + 0.15",
        "bar_met": bool(pinsage_p >= content_p + 0.15),
        "training": summaries[args.loss],
        "training_by_loss": summaries,
    }
    log.info("synthetic precision@10: PinSage %s, content %.4f (gain of %s %+.4f)", precision, content_p, args.loss,
             pinsage_p - content_p)
    return result


# ---- main -----------------------------------------------------------------------------------------


def bars(hetrec: dict, syn: dict) -> dict[str, bool]:
    """The issue's quality bars, checked on the TEST means."""
    m = lambda name, key: hetrec[name][key]["mean"]  # noqa: E731
    out = {}
    for rival in ("content features", "Pixie", "item-kNN"):
        keys = [f"{USER_TASK}/hr@10"] + [f"{ITEM_TASK}/hr@{k}" for k in (10, 50, 100, 500)]
        out[f"pinsage beats {rival} on user hr@10 and i2i hit-rate@K"] = all(
            m("pinsage importance", key) > m(rival, key) for key in keys)
    if "pinsage mean" in hetrec:
        # On the seeds both pooling variants ran (the ablation may run fewer seeds than the primary model).
        shared = lambda name, key, n: float(np.mean(hetrec[name][key]["per_seed"][:n]))  # noqa: E731
        n = hetrec["pinsage mean"]["runs"]
        out["importance >= mean pooling (user hr@10, i2i hr@10; same seeds)"] = all(
            shared("pinsage importance", key, n) >= shared("pinsage mean", key, n)
            for key in (f"{USER_TASK}/hr@10", f"{ITEM_TASK}/hr@10"))
    out["synthetic: pinsage >= content + 0.15"] = syn["bar_met"]
    return out


def record_name(args: argparse.Namespace) -> str:
    """``pinsage`` for the full table; a run without some default ablation, from a later seed, with id vectors or
    with history queries gets its own name (``pinsage_ablations_<names>[_seed<S>][_id<N>][_history<H>x<C>]``), so
    it never replaces the full table."""
    partial = not set(DEFAULT_ABLATIONS) <= set(args.ablations)
    name = "pinsage_ablations_" + ("_".join(args.ablations) or "none") if partial else "pinsage"
    name += f"_seed{args.first_seed}" if args.first_seed else ""
    name += f"_id{args.id_dim}" if args.id_dim else ""
    return name + (f"_history{args.history_queries}x{args.history_copies}" if args.history_queries else "")


def build_parser() -> argparse.ArgumentParser:
    """The bench's flags (bench/diagnostics/pinsage_user_valid.py takes them too)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, fewer pairs; records nothing")
    parser.add_argument("--hetrec-path", default=str(HETREC_PATH))
    parser.add_argument("--seeds", type=int, default=3, help="seeds of importance and mean pooling")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the seeds are first-seed .. first-seed + seeds - 1 (a later seed of an earlier record)")
    parser.add_argument("--epochs", type=int, default=10,
                        help="epoch cap (early stopping may end sooner); 10 epochs of the default pairs hold about "
                             "as many training examples as the 20 epochs of the pairs before the board partners")
    parser.add_argument("--patience", type=int, default=10,
                        help="epochs without a better validation hit-rate (default 10, the default --epochs, so every "
                             "run trains to the cap and keeps its best validation epoch; chosen on VALID, "
                             "docs/PINSAGE.md)")
    parser.add_argument("--valid-pairs", type=int, default=20_000, help="validation pairs scored each epoch")
    parser.add_argument("--loss", default="sampled_softmax", choices=("sampled_softmax", "max_margin"),
                        help="the primary model's loss (chosen on HetRec's validation slice, docs/PINSAGE.md)")
    parser.add_argument("--temperature", type=float, default=TrainingOptions.temperature,
                        help="the sampled softmax's temperature (TrainingOptions' default)")
    parser.add_argument("--log-q-weight", type=float, default=TrainingOptions.log_q_weight,
                        help="scales the sampled softmax's logQ correction (TrainingOptions' default, 1: unbiased)")
    parser.add_argument("--learning-rate", type=float, default=TrainingOptions.learning_rate,
                        help="Adam's learning rate (TrainingOptions' default)")
    parser.add_argument("--weight-decay", type=float, default=TrainingOptions.weight_decay,
                        help="Adam's weight decay, an L2 term in the gradient (TrainingOptions' default: none)")
    parser.add_argument("--shared-negatives", type=int, default=TrainingOptions.num_shared_negatives,
                        help="uniform negatives shared by each minibatch (TrainingOptions' default, the paper's)")
    parser.add_argument("--batch-size", type=int, default=TrainingOptions.batch_size,
                        help="positive pairs per minibatch, each the others' negative (TrainingOptions' default)")
    parser.add_argument("--ablation-seeds", type=int, default=3,
                        help="seeds of the mean-pooling ablation (the bar compares it on these seeds)")
    parser.add_argument("--ablations", type=ablation_list, default=DEFAULT_ABLATIONS,
                        help=f"comma-separated subset of {ABLATIONS} or 'none' (default: "
                             f"{','.join(DEFAULT_ABLATIONS)}; max pooling trains about 2x slower on CPU)")
    parser.add_argument("--max-gap-days", type=float, default=31.0, help="pair gap in days (<= 0: no limit)")
    parser.add_argument("--day-partners", type=int, default=4,
                        help="add to the training pairs each pin's N same-day partners (same_day_pairs; 0: none; "
                             "4 chosen on VALID, docs/PINSAGE.md)")
    parser.add_argument("--ppr-positives", type=int, default=0,
                        help="add to the training pairs each pin's N nearest PPR neighbors (ppr_pairs; 0: none)")
    parser.add_argument("--board-partners", type=int, default=4,
                        help="add to the training pairs each (board, pin)'s N board partners (board_pairs; 0: none; "
                             "4 chosen on VALID, docs/PINSAGE.md)")
    parser.add_argument("--history-queries", type=int, default=0, metavar="H",
                        help="add the user task as training examples, queried by the latest H pins (0: off)")
    parser.add_argument("--history-copies", type=int, default=1,
                        help="copies of each --history-queries example among the training examples")
    parser.add_argument("--max-train-pairs", type=int, default=0, help="seeded sample of training pairs (0: all)")
    parser.add_argument("--ppr-steps", type=int, default=5_000)
    parser.add_argument("--num-neighbors", type=int, default=50)
    parser.add_argument("--text-dim", type=int, default=DEFAULT_TEXT_DIM,
                        help="width of the hashed pin text in the content features, both datasets (content_features)")
    parser.add_argument("--weight-power", type=float, default=1.0,
                        help="raise the PPR visit weights to this power before pooling (sharpen; 1: as walked)")
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--id-dim", type=int, default=0,
                        help="HetRec only: append a learned per-pin id vector of this width to the features (0: none)")
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument("--refreshed", action=argparse.BooleanOptionalAction, default=True,
                        help="HetRec: also score TEST by the refreshed protocol (graph, PPR neighborhoods, walks "
                             "and fits rebuilt from every save before TEST; the same trained models), as extra rows "
                             "(default on since the development split's check, docs/PINSAGE.md)")
    parser.add_argument("--synthetic-scale", default="demo")
    parser.add_argument("--synthetic-epochs", type=int, default=5)
    parser.add_argument("--synthetic-train-pairs", type=int, default=60_000)
    parser.add_argument("--synthetic-gap-s", type=float, default=1800.0)
    parser.add_argument("--synthetic-queries", type=int, default=2000)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep every training's checkpoint here and resume from them: a rerun after an "
                             "interruption retrains nothing that finished (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.synthetic_epochs, args.valid_pairs = 1, 1, 1, 1000
        args.max_train_pairs, args.synthetic_train_pairs = 10_000, 10_000
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_threads(args, 2)
    started = time.perf_counter()
    command = " ".join([".venv/bin/python", "bench/pinsage_quality.py", *(argv if argv is not None else sys.argv[1:])])
    seeds = tuple(range(args.first_seed, args.first_seed + args.seeds))
    variants = ablation_variants(args.ablations, seeds, args.ablation_seeds, args.loss, args.num_neighbors)
    options = training_options(args)

    with contextlib.ExitStack() as stack:
        root = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pinsage-quality-")))
        (root / "hetrec").mkdir(parents=True, exist_ok=True)
        (root / "synthetic").mkdir(parents=True, exist_ok=True)
        resume = args.workdir is not None
        hetrec, table, stats = bench_hetrec(args, variants, options, root / "hetrec", resume)
        hetrec_s = time.perf_counter() - started
        syn = bench_synthetic(args, options, root / "synthetic", resume)
    wall_s = time.perf_counter() - started

    checks = bars(hetrec, syn)
    test = table[table["split"] == "test"]
    print("\nHetRec Last.fm, every run, TEST (settings chosen on VALID):\n")
    print(test.pivot_table(index=["model", "setting"], columns="metric", values="value").round(4).to_string())
    summary_md = format_summary(hetrec)
    print("\nHetRec Last.fm, TEST, x100, mean ± std [min, max] over seeds:\n")
    print(summary_md)
    paired = {name: s[f"{PRIMARY} minus this"] for name, s in hetrec.items()
              if name not in (PRIMARY, PRIMARY + REFRESHED)}
    paired_md = format_paired(paired)
    print(f"\n{PRIMARY} minus each method, TEST, x100 [95% paired bootstrap interval over queries; a "
          f"'{REFRESHED[2:]}' row: the refreshed {PRIMARY} minus it]:\n")
    print(paired_md)
    print(f"\nSynthetic ({args.synthetic_scale}) planted-topic precision@10: {syn['precision_at_10']} "
          f"(gain {syn['gain']:+.4f}, bar +0.15)")
    print("\nBars:\n" + "\n".join(f"  {'MET    ' if ok else 'NOT MET'}  {name}" for name, ok in checks.items()))
    print(f"\nwall {wall_s:.0f} s (HetRec {hetrec_s:.0f} s)")
    if args.quick:
        print("--quick: nothing recorded")
        return

    speed = json.loads(SPEED_RESULTS.read_text()) if SPEED_RESULTS.exists() else None
    metrics = {
        "hetrec_lastfm": {"data": stats, "methods": hetrec},
        "synthetic": syn,
        "bars": checks,
        "speed": ({"measured_by": "bench/pinsage_speed.py (copied from bench/results/pinsage_speed.json, not "
                                  "re-run here)", "date": speed["date"], "commit": speed["commit"],
                   "command": speed["command"], "metrics": speed["metrics"]} if speed else None),
        "wall_seconds": round(wall_s, 1),
    }
    config = {"epochs_cap": args.epochs, "patience": options.patience, "primary_loss": args.loss,
              "workdir": str(args.workdir) if args.workdir else None,  # runs resumed from it say so ("resumed")
              "ablations": list(args.ablations), "seeds": list(seeds), "refreshed": args.refreshed,
              "variants": [dataclasses.asdict(v) for v in variants],
              "training": shared_options(options),
              "hetrec_grids": {"user_settings": [list(x) for x in HETREC_USER_SETTINGS],
                               "item_knn_neighbors": list(HETREC_KNN_NEIGHBORS),
                               "pixie_latest": list(HETREC_PIXIE_LATEST)},
              "model": {"text_dim": args.text_dim, "hidden_dim": args.hidden_dim,
                        "embedding_dim": args.embedding_dim, "num_layers": 2,
                        "num_neighbors": args.num_neighbors, "id_dim": args.id_dim},
              "hetrec_pairs": {"max_gap_days": args.max_gap_days, "day_partners": args.day_partners,
                               "ppr_positives": args.ppr_positives, "board_partners": args.board_partners,
                               "max_train_pairs": args.max_train_pairs},
              "walk": {"num_steps": args.ppr_steps, "top_t": args.num_neighbors, "band": [200, 500],
                       "weight_power": args.weight_power,
                       "num_band_samples": 20},
              "synthetic": {"scale": args.synthetic_scale, "epochs_cap": args.synthetic_epochs,
                            "train_pairs": args.synthetic_train_pairs, "max_gap_s": args.synthetic_gap_s}}
    lines = [f"HetRec Last.fm, TEST (x100; mean ± std [min, max] over seeds; settings tuned on VALID):\n\n"
             + summary_md + "\n",
             f"{PRIMARY} minus each method, TEST, x100, per-query values averaged over seeds [95% paired "
             f"bootstrap interval over the TEST users / item pairs; seed spread is the ± above]:\n\n"
             + paired_md + "\n",
             f"synthetic {args.synthetic_scale}: planted-topic precision@10 PinSage "
             f"{syn['precision_at_10']['pinsage']:.4f} vs content {syn['precision_at_10']['content features']:.4f} "
             f"(gain {syn['gain']:+.4f}; bar +0.15)",
             "bars: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks.items()),
             f"wall time {wall_s / 60:.1f} min"]
    if speed:
        t = speed["metrics"]["training"]["workers=1"]
        lines.append(f"speed (bench/pinsage_speed.py, {speed['date'][:10]}): training {t['examples_per_s']} "
                     f"examples/s, data wait {t['data_wait_share']:.1%}; inference "
                     f"{speed['metrics'].get('inference_1m', {}).get('pins_per_s_compute', 'n/a')} pins/s")
    record(name=record_name(args),
           command=command,
           dataset=f"HetRec 2011 Last.fm 2k ({stats['users']} users, {stats['pins']} artists, {stats['saves']} "
                   f"saves) via embeddings.data.importers; synthetic {args.synthetic_scale} world (seed 0)",
           protocol="per-user split (last 20% of a user's saves test, 20% before valid); graph, neighborhoods, "
                    "pairs, item-kNN, popularity from TRAIN only; every method tuned on VALID, TEST scored once "
                    "(embeddings.pinsage.evaluation); full ranking over all pins, seen/query masked",
           config=config, metrics=metrics, summary=lines)


if __name__ == "__main__":
    main()
