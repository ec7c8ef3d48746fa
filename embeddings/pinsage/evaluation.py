"""PinSage's offline evaluation with its baselines, all scored by the same ranking code.

Two tasks on a held-out slice of positive engagements (docs/EVALUATION.md):

* **item-to-item**: query = a pin, target = the pin its user engaged with next (``engagement_pairs``),
  ranked by the method among all pins, the query masked: ``hr@K`` (PinSage's hit-rate@K) and MRR.
* **user next-save**: the user's first new pin in the slice, ranked among all pins with the history
  masked; the user is represented by their latest history pins: ``hr@10`` / ``ndcg@10``.

Methods: any pin embedding (PinSage, or content features alone) scored by cosine; item-kNN on
co-engagement (cosine over the binarized training user x pin matrix); Pixie walks on the pin-board graph;
popularity. Each method's settings (the number of latest pins a user is represented by and how their
scores blend; item-kNN's neighbor count; Pixie's query pins) are chosen on the validation slice and the
test slice is scored once with the choice. Item-kNN and popularity are fitted on the training slice only,
the same engagement PinSage trains on.

``Evaluator(refit_before_test=True)`` scores the test slice by the *refreshed* protocol instead, as a nightly
rebuild would serve it: settings are still tuned on validation with the training-slice inputs, then item-kNN and
popularity are refitted on every engagement before the test slice, and embeddings and Pixie score it with the
test inputs their callers pass (vectors inferred over, and walks on, the graph rebuilt from those engagements).

The data are labelled positive events (train / valid / test), so one evaluator serves the nightly time
split (``load_time_split``) and a per-user split of a public dataset alike.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from embeddings.data.engagement import TEST, TRAIN, VALID, TimeSplit, positive_mask
from embeddings.data.schemas import EVENTS
from embeddings.eval.baselines import fit_item_knn, item_popularity, tune_on_validation
from embeddings.eval.metrics import RankingMetrics
from embeddings.eval.protocols import (
    Protocol,
    Sequences,
    UserTargets,
    USER_NEXT,
    evaluate_item_to_item,
    evaluate_users,
    evaluation_table,
    user_targets,
)
from embeddings.eval.scorers import DEFAULT_BLEND_TEMPERATURE, CandidateScorer, EmbeddingScorer, ItemScoresScorer, MultiVectorScorer, SparseScorer
from embeddings.graph.csr import BipartiteCSR
from embeddings.graph.pixie import pixie_candidates
from embeddings.graph.walks import WalkConfig
from embeddings.lake import Lake
from embeddings.pinsage.data import engagement_pairs, rows_of

log = logging.getLogger(__name__)

ITEM_TASK, USER_TASK = "item_to_item", "user_next"
SLICES = {"valid": VALID, "test": TEST}
ITEM_KS = (1, 10, 50, 100, 500)
USER_KS = (10, 50)
# (number of latest history pins, blend[, softmax temperature]) tried for a user represented by pin vectors
# (``MultiVectorScorer``): the nearest neighbours of the latest pin, of any of the latest few, or the soft
# maximum over a longer history, which boosts pins near several of the user's pins.
USER_QUERY_SETTINGS: tuple[tuple, ...] = ((1, "max"), (5, "max"), (20, "max"), (20, "sum"),
                                          (50, "softmax", 0.05), (200, "softmax", 0.05), (200, "softmax", 0.1))
KNN_NEIGHBORS = (20, 100, 400)
PIXIE_LATEST = (5, 20)
PIXIE_ITEM_STEPS, PIXIE_USER_STEPS, PIXIE_CANDIDATES = 5000, 20000, 1000
TUNING_METRIC = {ITEM_TASK: "hr@10", USER_TASK: "ndcg@10"}


@dataclass(frozen=True)
class EvaluationData:
    """Labelled positive engagements over the pins of one embedding table.

    Attributes:
        num_items: N (pins are rows ``0..N-1`` of the embedding tables compared).
        users, items, ts, labels: (E,) positive events: user row, pin row, timestamp, TRAIN/VALID/TEST.
        pairs: slice name -> (n, 2) [query row, next row] item-to-item pairs of that slice.
        split: how the labels were made (goes into every protocol string), per slice name.
        max_users: users scored per slice at most (a seeded sample of those with a target), 0 = all.
        seed: seeds the user sample.
    """

    num_items: int
    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    labels: np.ndarray
    pairs: Mapping[str, np.ndarray]
    split: Mapping[str, str]
    max_users: int = 2000
    seed: int = 0
    num_users: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_users", int(self.users.max()) + 1 if len(self.users) else 0)
        for name in SLICES:
            if name not in self.pairs or name not in self.split:
                raise ValueError(f"evaluation data needs pairs and a split description for slice {name!r}")

    def train_matrix(self) -> sp.csr_matrix:
        """(U, N) 0/1 training-slice engagement (item-kNN and popularity are fitted on it)."""
        return self.engagement_matrix((TRAIN,))

    def engagement_matrix(self, labels: Sequence[int]) -> sp.csr_matrix:
        """(U, N) 0/1 engagement of the slices ``labels`` (TRAIN, VALID, TEST) together."""
        kept = np.isin(self.labels, labels)
        return Sequences.from_events(self.users[kept], self.items[kept], self.ts[kept], self.num_users,
                                     self.num_items).matrix()

    def user_targets(self, slice_name: str) -> UserTargets:
        """History before the slice and each sampled user's first new pin in it."""
        data = user_targets(self.users, self.items, self.ts, self.labels, target_label=SLICES[slice_name],
                            num_users=self.num_users, num_items=self.num_items, mode="next")
        with_target = np.flatnonzero(np.diff(data.targets.indptr) > 0)
        if self.max_users and len(with_target) > self.max_users:
            keep = np.sort(np.random.default_rng(self.seed).choice(with_target, self.max_users, replace=False))
            mask = np.zeros(self.num_users)
            mask[keep] = 1.0
            data = UserTargets(data.history, sp.csr_matrix(sp.diags(mask) @ data.targets))
            data.targets.eliminate_zeros()
        return data

    def protocol(self, task: str, slice_name: str) -> Protocol:
        if task == USER_TASK:
            return Protocol(task=USER_NEXT, split=self.split[slice_name], masking="history masked")
        return Protocol(task="item-to-item next engagement", split=self.split[slice_name], masking="query masked")


@dataclass(frozen=True)
class MethodResult:
    """One method's tuned settings and its results per (task, slice)."""

    name: str
    settings: dict[str, Hashable]
    results: dict[tuple[str, str], RankingMetrics]
    seconds: float


UserScorerFactory = Callable[[UserTargets, Hashable], Callable[[np.ndarray], np.ndarray]]


class Evaluator:
    """Evaluates methods on ``EvaluationData``; builds each slice's targets once."""

    def __init__(self, data: EvaluationData, *, chunk_size: int | None = None,
                 refit_before_test: bool = False) -> None:
        self.data = data
        self.chunk_size = chunk_size
        self.refit_before_test = refit_before_test
        self._users = {name: data.user_targets(name) for name in SLICES}
        self._knn: dict[tuple[int, str], sp.csr_matrix] = {}
        for name, targets in self._users.items():
            log.info("%s slice: %d item-to-item pairs, %d users with a next-save target (%s)", name,
                     len(data.pairs[name]), int((np.diff(targets.targets.indptr) > 0).sum()), data.split[name])

    def user_targets(self, slice_name: str) -> UserTargets:
        """The slice's history and user targets (built once)."""
        return self._users[slice_name]

    def refreshed(self, slice_name: str) -> bool:
        """Whether ``slice_name`` is scored by the refreshed protocol (the test slice with ``refit_before_test``)."""
        return self.refit_before_test and slice_name == "test"

    def split(self, slice_name: str) -> str:
        """The slice's split description, naming the refreshed protocol where it applies."""
        refit = "; graph and fits refreshed with every engagement before it" if self.refreshed(slice_name) else ""
        return self.data.split[slice_name] + refit

    def item_to_item(self, scorer, slice_name: str) -> RankingMetrics:
        pairs = self.data.pairs[slice_name]
        return evaluate_item_to_item(scorer, pairs[:, 0], pairs[:, 1], self.data.num_items,
                                     split=self.split(slice_name), ks=ITEM_KS, mrr_scale=100,
                                     chunk_size=self.chunk_size)

    def users(self, make_scorer: UserScorerFactory, setting: Hashable, slice_name: str) -> RankingMetrics:
        targets = self.user_targets(slice_name)
        protocol = self.data.protocol(USER_TASK, slice_name)
        protocol = replace(protocol, split=self.split(slice_name))
        return evaluate_users(make_scorer(targets, setting), targets, protocol, ks=USER_KS,
                              chunk_size=self.chunk_size)

    def _run(self, name: str, item_scorers: Callable[[Hashable], object], item_settings: Sequence[Hashable],
             user_scorers: UserScorerFactory, user_settings: Sequence[Hashable],
             test_item_scorers: Callable[[Hashable], object] | None = None,
             test_user_scorers: UserScorerFactory | None = None) -> MethodResult:
        """Tune on validation, then score the test slice with the chosen settings (by the ``test_*`` scorers
        where given: the refreshed protocol's)."""
        started = time.perf_counter()
        results: dict[tuple[str, str], RankingMetrics] = {}
        item = tune_on_validation(item_settings, lambda s: self.item_to_item(item_scorers(s), "valid"),
                                  TUNING_METRIC[ITEM_TASK])
        results[(ITEM_TASK, "valid")] = item.results[item_settings.index(item.best)]
        results[(ITEM_TASK, "test")] = self.item_to_item((test_item_scorers or item_scorers)(item.best), "test")
        user = tune_on_validation(user_settings, lambda s: self.users(user_scorers, s, "valid"),
                                  TUNING_METRIC[USER_TASK])
        results[(USER_TASK, "valid")] = user.results[user_settings.index(user.best)]
        results[(USER_TASK, "test")] = self.users(test_user_scorers or user_scorers, user.best, "test")
        seconds = time.perf_counter() - started
        log.info("%s evaluated in %.1f s (item setting %r, user setting %r)", name, seconds, item.best, user.best)
        return MethodResult(name, {ITEM_TASK: item.best, USER_TASK: user.best}, results, seconds)

    def embeddings(self, name: str, vectors: np.ndarray,
                   user_settings: Sequence[tuple] = USER_QUERY_SETTINGS,
                   test_vectors: np.ndarray | None = None) -> MethodResult:
        """Cosine over pin vectors (a model's embeddings, or content features).

        ``test_vectors``: the vectors that score the test slice under ``refit_before_test`` (required there: a
        model's inference over the refreshed graph, or ``vectors`` again where nothing is refreshed)."""
        if self.refit_before_test and test_vectors is None:
            raise ValueError(f"{name}: the refreshed protocol (refit_before_test) needs the vectors that score "
                             "the test slice (test_vectors)")
        scorer = EmbeddingScorer(vectors)
        test = None if test_vectors is None else EmbeddingScorer(test_vectors)
        return self._run(name, lambda _: scorer, ["cosine"], embedding_users(scorer.items), list(user_settings),
                         test_item_scorers=None if test is None else lambda _: test,
                         test_user_scorers=None if test is None else embedding_users(test.items))

    def item_knn(self, name: str = "item_knn", neighbor_counts: Sequence[int] = KNN_NEIGHBORS) -> MethodResult:
        """Item-kNN on co-engagement, the neighbor count chosen on validation (per task); refitted on every
        engagement before the test slice to score it under ``refit_before_test``."""
        identity = sp.identity(self.data.num_items, format="csr")

        def items(fit: str) -> Callable[[int], SparseScorer]:
            return lambda k: SparseScorer(identity, self.item_knn_similarity(k, fit))

        def users(fit: str) -> UserScorerFactory:
            return lambda targets, k: self.item_knn_users(targets, k, fit)

        refit = "before_test" if self.refit_before_test else "train"
        return self._run(name, items("train"), list(neighbor_counts), users("train"), list(neighbor_counts),
                         test_item_scorers=items(refit), test_user_scorers=users(refit))

    def fit_matrix(self, fit: str) -> sp.csr_matrix:
        """The engagement item-kNN and popularity are fitted on: ``"train"`` (the training slice) or
        ``"before_test"`` (training and validation slices, the refreshed protocol's)."""
        if fit not in ("train", "before_test"):
            raise ValueError(f"fit must be 'train' or 'before_test', not {fit!r}")
        return self.data.engagement_matrix((TRAIN,) if fit == "train" else (TRAIN, VALID))

    def item_knn_similarity(self, k: int, fit: str = "train") -> sp.csr_matrix:
        """Item-kNN similarity with ``k`` neighbors over ``fit_matrix(fit)`` (fitted once per k and fit)."""
        if (k, fit) not in self._knn:
            self._knn[(k, fit)] = fit_item_knn(self.fit_matrix(fit), k)
        return self._knn[(k, fit)]

    def item_knn_users(self, targets: UserTargets, k: int, fit: str = "train") -> SparseScorer:
        """A user scores the sum of their history pins' ``k``-neighbor similarities (over ``fit_matrix(fit)``)."""
        return SparseScorer(targets.history.matrix(), self.item_knn_similarity(k, fit))

    def popularity(self, name: str = "popularity") -> MethodResult:
        """Distinct users per pin (training slice; every engagement before the test slice to score it under
        ``refit_before_test``); the same list for every query."""
        scorer = ItemScoresScorer(item_popularity(self.fit_matrix("train")))
        test = ItemScoresScorer(item_popularity(self.fit_matrix("before_test"))) if self.refit_before_test else scorer
        return self._run(name, lambda _: scorer, ["distinct users"], lambda _t, _s: scorer, ["distinct users"],
                         test_item_scorers=lambda _: test, test_user_scorers=lambda _t, _s: test)

    def pixie(self, graph: BipartiteCSR, row_of_graph_pin: np.ndarray, name: str = "pixie",
              item_steps: int = PIXIE_ITEM_STEPS, user_steps: int = PIXIE_USER_STEPS,
              num_candidates: int = PIXIE_CANDIDATES,
              latest: Sequence[int] = PIXIE_LATEST, seed: int = 0,
              test_graph: tuple[BipartiteCSR, np.ndarray] | None = None) -> MethodResult:
        """Pixie walk candidates (``embeddings.graph.pixie``); pins outside the candidates rank last.

        Args:
            graph: the pin-board CSR the walks run on (built without the evaluated slices).
            row_of_graph_pin: (graph.num_pins,) the evaluation row of each graph pin.
            item_steps / user_steps: the walk budget for one query pin / for a user's query pins.
            num_candidates: candidates kept per query.
            latest: the numbers of latest history pins tried as a user's (recency-weighted) queries.
            test_graph: (CSR, row_of_graph_pin) the test slice's walks run on under ``refit_before_test``
                (required there: the graph rebuilt from every engagement before the test slice).
        """
        if self.refit_before_test and test_graph is None:
            raise ValueError(f"{name}: the refreshed protocol (refit_before_test) needs the graph its test walks "
                             "run on (test_graph)")

        def scorers(csr: BipartiteCSR, rows: np.ndarray) -> tuple[Callable, UserScorerFactory]:
            generate = pixie_generator(csr, rows, self.data.num_items, num_candidates, seed)
            identity = sp.identity(self.data.num_items, format="csr")
            item_scorer = CandidateScorer(generate(item_steps), identity, self.data.num_items)
            return lambda _: item_scorer, pixie_users(generate(user_steps), self.data.num_items)

        items, users = scorers(graph, row_of_graph_pin)
        test_items, test_users = (items, users) if test_graph is None else scorers(*test_graph)
        return self._run(name, items, [f"{item_steps} steps"], users, list(latest),
                         test_item_scorers=test_items, test_user_scorers=test_users)


def latest_queries(history: Sequences, num_latest: int,
                   query_pins: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each user's ``num_latest`` latest pins, newest first (``Sequences.latest``); with ``query_pins`` (an (N,)
    bool), the latest among those pins only, and a user with none of them keeps their latest pins of any kind."""
    ptr, rows = history.latest(num_latest)
    if query_pins is None:
        return ptr, rows
    kept_ptr, kept_rows = history.subset(np.asarray(query_pins, dtype=bool)[history.items]).latest(num_latest)
    use_kept = np.diff(kept_ptr) > 0
    users = np.arange(len(use_kept))
    kept_owner, owner = np.repeat(users, np.diff(kept_ptr)), np.repeat(users, np.diff(ptr))
    rest = ~use_kept[owner]
    merged_owner = np.concatenate([kept_owner, owner[rest]])
    order = np.argsort(merged_owner, kind="stable")  # per user: newest first, as both lists are
    counts = np.bincount(merged_owner, minlength=len(users))
    return (np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            np.concatenate([kept_rows, rows[rest]])[order].astype(np.int64))


def embedding_users(items: np.ndarray, query_pins: np.ndarray | None = None) -> UserScorerFactory:
    """Users by pin vectors: setting ``(num_latest, blend[, temperature])`` of ``USER_QUERY_SETTINGS``, the
    latest pins among ``query_pins`` when given (``latest_queries``)."""

    def users(targets: UserTargets, setting) -> MultiVectorScorer:
        num_latest, blend = setting[:2]
        temperature = setting[2] if len(setting) > 2 else DEFAULT_BLEND_TEMPERATURE
        ptr, rows = latest_queries(targets.history, num_latest, query_pins)
        return MultiVectorScorer(items, ptr, rows, blend=blend, temperature=temperature)

    return users


def pixie_generator(graph: BipartiteCSR, row_of_graph_pin: np.ndarray, num_items: int, num_candidates: int,
                    seed: int) -> Callable[[int], Callable]:
    """``steps -> generate(pins, weights)``: Pixie candidates as evaluation rows (pins off the graph skipped)."""
    graph_row = np.full(num_items, -1, dtype=np.int64)
    graph_row[row_of_graph_pin] = np.arange(graph.num_pins)

    def generator(steps: int):
        config = WalkConfig(num_steps=steps, seed=seed)

        def generate(pins: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            in_graph = graph_row[pins] >= 0
            if not in_graph.any():
                return np.zeros(0, np.int64), np.zeros(0)
            found, scores = pixie_candidates(graph, graph_row[pins][in_graph], weights[in_graph], config,
                                             num_candidates)
            return row_of_graph_pin[found], scores

        return generate

    return generator


def pixie_users(generate: Callable, num_items: int, query_pins: np.ndarray | None = None) -> UserScorerFactory:
    """Users by one Pixie walk from their ``num_latest`` latest pins (among ``query_pins`` when given,
    ``latest_queries``), weighted 1, 1/2, 1/3, ... newest first."""

    def users(targets: UserTargets, num_latest: int) -> CandidateScorer:
        ptr, rows = latest_queries(targets.history, num_latest, query_pins)
        position = np.arange(len(rows)) - np.repeat(ptr[:-1], np.diff(ptr))
        weights = 1.0 / (1.0 + position)
        owner = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
        queries = sp.csr_matrix((weights, (owner, rows)), shape=(len(ptr) - 1, num_items))
        return CandidateScorer(generate, queries, num_items)

    return users


def results_table(methods: Sequence[MethodResult], *, ci_samples: int = 0, seed: int = 0) -> pd.DataFrame:
    """``evaluation_table`` of every method, task and slice, with each method's tuned setting."""
    rows = [(m.name, slice_name, result, repr(m.settings[task])) for m in methods
            for (task, slice_name), result in m.results.items()]
    return evaluation_table([r[:3] for r in rows], ci_samples=ci_samples, seed=seed, settings=[r[3] for r in rows])


# ---- the nightly time split ---------------------------------------------------------------------


def evaluation_data_from_events(
    events: pa.Table, pin_ids: np.ndarray, split: TimeSplit, max_gap_s: float, *,
    max_pairs: int = 5000, max_users: int = 2000, seed: int = 0,
) -> EvaluationData:
    """``EvaluationData`` for the time split at ``split.ds`` from raw ``events`` of its window.

    Args:
        events: columns user_id, pin_id, action, ts, duration_ms.
        pin_ids: (N,) sorted pin ids: the rows of every embedding table compared.
        split: the time split (train / valid / test days).
        max_gap_s: the item-to-item pair gap (as in training).
        max_pairs, max_users: per-slice sample sizes (seeded); 0 = all.
    """
    positive = positive_mask(events.column("action").to_numpy(zero_copy_only=False),
                             events.column("duration_ms").to_numpy(zero_copy_only=False))
    user_ids = events.column("user_id").to_numpy()[positive]
    pins = rows_of(pin_ids, events.column("pin_id").to_numpy()[positive])
    ts = events.column("ts").to_numpy()[positive].astype("datetime64[us]")
    known = pins >= 0
    if (~known).any():
        log.info("%d positive events on pins without features are left out of the evaluation", int((~known).sum()))
    _, users = np.unique(user_ids[known], return_inverse=True)
    labels = split.assign(ts[known].astype("datetime64[D]"))
    all_pairs, pair_labels, _ = engagement_pairs(events, pin_ids, split, max_gap_s)
    rng = np.random.default_rng(seed)
    pairs = {}
    for name, label in SLICES.items():
        chosen = all_pairs[pair_labels == label]
        if max_pairs and len(chosen) > max_pairs:
            chosen = chosen[np.sort(rng.choice(len(chosen), max_pairs, replace=False))]
        pairs[name] = chosen
    describe = {
        "valid": f"time split valid ({split.valid_start}..{split.test_start - dt.timedelta(days=1)})",
        "test": f"time split test ({split.test_start}..{split.ds})",
    }
    return EvaluationData(num_items=len(pin_ids), users=users.astype(np.int64), items=pins[known],
                          ts=ts[known], labels=labels, pairs=pairs, split=describe, max_users=max_users, seed=seed)


def load_time_split(lake: Lake, pin_ids: np.ndarray, split: TimeSplit, max_gap_s: float, **kwargs) -> EvaluationData:
    """Read the window's ``events`` and build ``evaluation_data_from_events``.

    Raises:
        ValueError: no events partition in the window.
    """
    columns = ["user_id", "pin_id", "action", "ts", "duration_ms"]
    events, days = lake.read_range(EVENTS, split.start, split.ds, columns=columns)
    if not days:
        raise ValueError(f"table events, ds {split.start}..{split.ds} under {lake.lake_uri}: no committed "
                         f"partitions to evaluate on")
    return evaluation_data_from_events(events, pin_ids, split, max_gap_s, **kwargs)

