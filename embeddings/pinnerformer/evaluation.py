"""PinnerFormer's offline evaluation: the future-window protocol on held-out users, one ranking code.

Protocol (PinnerFormer, KDD'22, 4.1; ``../shared/REFERENCE.md``): each user held out from training (split
``valid`` or ``test`` of ``user_sequences``) is represented at the cutoff (the end of ds minus
``label_days``) from the input actions before it; every positive engagement of the next ``label_days``
(14) days is a target (all of them, re-engagements included, one per distinct pin); every pin of the
PinSage table is ranked by cosine and the pins of the user's input history are masked (a target is never
masked). Per user: ``recall@K`` (the share of the user's targets in the top K), ``hr@K``, ``ndcg@K`` for
K = 10, 50, 100 (``embeddings.eval.metrics``). The same targets and masks score every method, so the
per-user values of two methods pair up for a bootstrap (``embeddings.registry.promotion``). This is the
protocol of ``training.evaluate_future`` (the early-stopping metric), with more cut-offs.

Methods (each a scorer over the same pins, ``FutureWindowEvaluator``):

* **PinnerFormer** (``user_embeddings``): the user tower's output at the latest input token against the
  pin tower's embeddings.
* **Popularity** (``popularity``): distinct users with a positive input action on the pin in the last
  ``d`` days before the cutoff (all users' inputs; nothing after the cutoff), ``d`` chosen on ``valid``.
* **PinSage last pin** (``last_pin``): the PinSage embedding of the user's latest input pin (the latest
  positive engagement, or the latest action of any kind: chosen on ``valid``).
* **PinSage time-decayed average** (``decayed_average``): ``sum_i exp(-lam * age_days_i) unit(x_i)`` over
  the positive input actions (``embeddings.pinnersage.evaluation.decayed_average_vectors``), ``lam`` chosen
  on ``valid``.
* **PinnerSage** (``pinnersage``): ``embeddings.pinnersage.medoids.user_medoids`` on the positive input
  actions before the cutoff (computed here: the ``user_medoids`` table saw the future), the top 3
  medoids by importance, their nearest pins interleaved by importance (PinnerSage's retrieval), Ward's
  alpha chosen on ``valid``.

Every setting is chosen on ``valid`` by ``recall@10`` (``tune_on_validation``) and ``test`` is scored once.
On synthetic lakes ``topic_entropy@50`` (the entropy, in bits, of the planted topics of each user's top 50)
is added per user, and every method gets ``p90_coverage@10``: the smallest share of the pins that accounts
for 90% of all top-10 recommendations (PinnerFormer, 4.1; low = every user gets the same pins).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure

from embeddings.eval.baselines import tune_on_validation
from embeddings.eval.metrics import RankingMetrics, Scorer, evaluate_ranking, top_k
from embeddings.eval.protocols import USER_WINDOW, Protocol, evaluation_table
from embeddings.eval.scorers import EmbeddingScorer, ItemScoresScorer, unit_rows
from embeddings.pinnerformer.data import DAY_S, UserSequences
from embeddings.pinnersage.evaluation import (
    DEFAULT_BLEND,
    UserHistory,
    WardSetting,
    decayed_average_vectors,
    last_pin_vectors,
    pinnersage_vectors,
    topic_entropy,
    ward_user_clusters,
)

log = logging.getLogger(__name__)

SPLITS = ("valid", "test")
EVAL_KS: tuple[int, ...] = (10, 50, 100)
CURVE_KS: tuple[int, ...] = (1, 5, 10, 20, 50, 100)
TUNING_METRIC = "recall@10"
DIVERSITY_K = 50
COVERAGE_K = 10
COVERAGE_SHARE = 0.9
POPULARITY_DAYS: tuple[int, ...] = (1, 7, 28)
LAST_PIN_HISTORIES: tuple[str, ...] = ("positive", "any")
DECAY_LAMS: tuple[float, ...] = (0.01, 0.1, 1.0)
PINNERSAGE_ALPHAS: tuple[float, ...] = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
NUM_MEDOIDS = 3


# ---- metrics beyond the ranking -----------------------------------------------------------------


def p90_coverage(top_items: np.ndarray, num_items: int, share: float = COVERAGE_SHARE) -> float:
    """The smallest share of the catalog that accounts for ``share`` of all recommended slots.

    Pins are counted over every list (a pin in 30 lists counts 30 times), sorted by count, and the fewest
    pins whose counts reach ``share`` of all slots are taken (PinnerFormer's P90 coverage@k with k the
    lists' length).

    Args:
        top_items: (Q, k) pin rows, best first; -1 marks an empty slot (not counted).
        num_items: N, the catalog size (the denominator).
        share: the share of slots to account for (0.9).

    Returns:
        The number of such pins divided by ``num_items``; NaN when no slot is filled.

    Raises:
        ValueError: not (Q, k), rows outside ``[-1, num_items)``, or ``share`` outside (0, 1].
    """
    top_items = np.asarray(top_items, dtype=np.int64)
    if top_items.ndim != 2:
        raise ValueError(f"top_items must be a (queries, k) array, got shape {top_items.shape}")
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if top_items.size and (top_items.min() < -1 or top_items.max() >= num_items):
        raise ValueError(f"top_items must hold pin rows in [0, {num_items}) or -1")
    filled = top_items[top_items >= 0]
    if not len(filled):
        return float("nan")
    counts = np.sort(np.bincount(filled, minlength=num_items))[::-1]
    needed = int(np.searchsorted(np.cumsum(counts), share * len(filled) - 1e-9, side="left")) + 1
    return needed / num_items


# ---- the evaluated slices -----------------------------------------------------------------------


@dataclass(frozen=True)
class FutureWindowSlice:
    """One split of held-out users at the cutoff: what is ranked, what is masked, the protocol.

    Attributes:
        name: ``"valid"`` or ``"test"``.
        seqs: the users' sequences (``sequences_from_table`` mode ``"eval"``, K = the label window).
        user_ids: (U,) their ids, aligned with the rows of ``seqs``.
        targets: (U, N) 0/1 future positives of the evaluated users (others: empty rows, not scored).
        history: (U, N) 0/1 pins of each user's input (masked).
        protocol: how the numbers are measured.
    """

    name: str
    seqs: UserSequences
    user_ids: np.ndarray
    targets: sp.csr_matrix
    history: sp.csr_matrix
    protocol: Protocol

    def users(self) -> np.ndarray:
        """(R,) rows of the evaluated users (at least one target), ascending."""
        return np.flatnonzero(np.diff(self.targets.indptr) > 0).astype(np.int64)

    def input_history(self, positive_only: bool = True) -> UserHistory:
        return input_history(self.seqs, positive_only)


def input_history(seqs: UserSequences, positive_only: bool = True) -> UserHistory:
    """Each user's input actions on known pins (only the positive ones with ``positive_only``) with their
    times, user rows = rows of ``seqs``: what the PinSage and PinnerSage baselines build their users from."""
    event_user = np.repeat(np.arange(seqs.num_users), np.diff(seqs.ptr))
    keep = np.arange(len(seqs.pins)) < np.repeat(seqs.input_end, np.diff(seqs.ptr))
    keep &= seqs.positive if positive_only else seqs.pins >= 0
    return UserHistory.from_events(event_user[keep], seqs.pins[keep], seqs.ts[keep] * 1_000_000,
                                   seqs.num_users, seqs.num_pins)


def future_window_slice(name: str, seqs: UserSequences, user_ids: np.ndarray, *, description: str,
                        max_users: int = 0, seed: int = 0) -> FutureWindowSlice:
    """The slice of ``seqs`` (built with a cutoff): targets = the future positives, history = the input.

    Args:
        name: the split (named in the protocol).
        seqs: held-out users' sequences with future positives.
        user_ids: (U,) their ids.
        description: how the split and window were made (goes into the protocol string).
        max_users: evaluate a seeded sample of this many users with targets (0 = all).
        seed: seeds the sample.

    Raises:
        ValueError: ``user_ids`` not aligned with ``seqs``.
    """
    if len(user_ids) != seqs.num_users:
        raise ValueError(f"{len(user_ids)} user ids for {seqs.num_users} sequences")
    targets = seqs.future_matrix("window")
    with_target = np.flatnonzero(np.diff(targets.indptr) > 0)
    if max_users and len(with_target) > max_users:
        keep = np.zeros(seqs.num_users)
        keep[np.random.default_rng(seed).choice(with_target, max_users, replace=False)] = 1.0
        targets = sp.csr_matrix(sp.diags(keep) @ targets)
        targets.eliminate_zeros()
    protocol = Protocol(task=USER_WINDOW, split=f"held-out users {name}, {description}",
                        masking="input history masked", candidates="all pins of the PinSage table")
    return FutureWindowSlice(name, seqs, np.asarray(user_ids, np.int64), sp.csr_matrix(targets),
                             seqs.history_matrix(), protocol)


def describe_window(cutoff: dt.datetime, label_days: float) -> str:
    """``"embedded at 2026-03-18T00:00Z, positives in the next 14 days"``, for the protocol string."""
    return f"embedded at {cutoff:%Y-%m-%dT%H:%MZ} from the actions before, positives in the next {label_days:g} days"


# ---- the evaluator ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodResult:
    """One method: its setting chosen on ``valid``, the ``valid`` scores of every candidate, its results and
    its P90 coverage@10 per split (``"valid"`` at the chosen setting, ``"test"`` scored once)."""

    name: str
    setting: Hashable
    tuning: list[tuple[Hashable, float]]
    results: dict[str, RankingMetrics]
    coverage: dict[str, float]
    seconds: float


ScorerBuilder = Callable[[FutureWindowSlice, Hashable], Scorer]
"""``(slice, setting) -> scorer`` whose row ``u`` scores every pin for user row ``u`` of the slice."""


class FutureWindowEvaluator:
    """Scores methods on the ``valid`` and ``test`` slices of held-out users (module docstring).

    Args:
        slices: ``{"valid": ..., "test": ...}`` (``future_window_slice``); both over the same N pins.
        pin_vectors: (N, d) PinSage embeddings (the baselines' vectors; rows = pin rows).
        item_topics: (N,) planted topic per pin (synthetic lakes): adds ``topic_entropy@50``.
        ks: cut-offs of ``recall@K`` / ``hr@K`` / ``ndcg@K`` in the table; the recall@K curve also uses
            ``CURVE_KS``.
        tuning_metric: maximized on ``valid``.
        chunk_size: queries scored at once (``embeddings.eval.metrics``).
    """

    def __init__(self, slices: Mapping[str, FutureWindowSlice], pin_vectors: np.ndarray, *,
                 item_topics: np.ndarray | None = None, ks: Sequence[int] = EVAL_KS,
                 tuning_metric: str = TUNING_METRIC, chunk_size: int | None = None) -> None:
        missing = set(SPLITS) - set(slices)
        if missing:
            raise ValueError(f"the evaluation needs the slices {SPLITS}, missing {sorted(missing)}")
        self.pin_vectors = unit_rows(pin_vectors, "PinSage pin vectors")
        num_items = len(self.pin_vectors)
        for s in slices.values():
            if s.targets.shape[1] != num_items:
                raise ValueError(f"slice {s.name} ranks {s.targets.shape[1]} pins but there are {num_items} pin "
                                 f"vectors")
        if item_topics is not None and len(item_topics) != num_items:
            raise ValueError(f"item_topics has {len(item_topics)} entries but there are {num_items} pins")
        self.slices = dict(slices)
        self.item_topics = item_topics
        self.ks = tuple(ks)
        self.tuning_metric = tuning_metric
        self.chunk_size = chunk_size
        self.num_items = num_items
        self._histories: dict[tuple[str, bool], UserHistory] = {}
        for s in self.slices.values():
            log.info("%s slice: %d users, %d with targets, %d targets (%s)", s.name, s.seqs.num_users,
                     len(s.users()), s.targets.nnz, s.protocol)

    def history(self, s: FutureWindowSlice, positive_only: bool = True) -> UserHistory:
        key = (s.name, positive_only)
        if key not in self._histories:
            self._histories[key] = s.input_history(positive_only)
        return self._histories[key]

    def evaluate(self, scorer: Scorer, split: str, *, diversity: bool = False) -> tuple[RankingMetrics, float]:
        """Full ranking of the split's targets (input history masked); with ``diversity``, the P90
        coverage@10 and, with planted topics, ``topic_entropy@50`` per user.

        Returns:
            ``(per-user metrics, P90 coverage@10 or NaN without diversity)``.
        """
        s = self.slices[split]
        ks = tuple(sorted(set(self.ks) | set(CURVE_KS)))
        result = evaluate_ranking(scorer, s.targets, seen=s.history, protocol=str(s.protocol), ks=ks,
                                  ties=s.protocol.ties, chunk_size=self.chunk_size)
        coverage = float("nan")
        if diversity:
            depth = max(COVERAGE_K, DIVERSITY_K if self.item_topics is not None else 0)
            items, _ = top_k(scorer, result.query_ids, depth, self.num_items, seen=s.history,
                             chunk_size=self.chunk_size)
            coverage = p90_coverage(items[:, :COVERAGE_K], self.num_items)
            if self.item_topics is not None:
                entropy = topic_entropy(items[:, :DIVERSITY_K], self.item_topics)
                result = replace(result, values={**result.values, f"topic_entropy@{DIVERSITY_K}": entropy})
        return result, coverage

    def run(self, name: str, build: ScorerBuilder, settings: Sequence[Hashable]) -> MethodResult:
        """Tune ``settings`` on ``valid`` (``tuning_metric``), then score ``test`` once with the choice."""
        started = time.perf_counter()
        settings = list(settings)
        built: dict[Hashable, Scorer] = {}

        def on_valid(setting: Hashable) -> RankingMetrics:
            built[setting] = build(self.slices["valid"], setting)
            return self.evaluate(built[setting], "valid")[0]

        tuning = tune_on_validation(settings, on_valid, self.tuning_metric)
        results, coverage = {}, {}
        for split in SPLITS:
            scorer = built[tuning.best] if split == "valid" else build(self.slices[split], tuning.best)
            results[split], coverage[split] = self.evaluate(scorer, split, diversity=True)
        seconds = time.perf_counter() - started
        log.info("%s: test %s %.4f (setting %r chosen on valid: %s) in %.1f s", name, self.tuning_metric,
                 float(results["test"].metric(self.tuning_metric).mean()) if results["test"].num_queries
                 else float("nan"), tuning.best, tuning.scores, seconds)
        return MethodResult(name, tuning.best, tuning.scores, results, coverage, seconds)

    # ---- the methods ----

    def user_embeddings(self, name: str, users: Mapping[str, np.ndarray], pins: np.ndarray,
                        setting: str = "-", similarity: str = "cosine") -> MethodResult:
        """A model's user embeddings ``users[split]`` (U, E) (rows = the slice's users) against its pin
        embeddings ``pins`` (N, E) by ``similarity`` (PinnerFormer: user tower vs pin tower, by the
        model's ``similarity``)."""
        for split in SPLITS:
            if len(users[split]) != self.slices[split].seqs.num_users:
                raise ValueError(f"{name}: {len(users[split])} user embeddings for the {split} slice's "
                                 f"{self.slices[split].seqs.num_users} users")
        if len(pins) != self.num_items:
            raise ValueError(f"{name}: {len(pins)} pin embeddings for {self.num_items} pins")
        return self.run(name, lambda s, _: EmbeddingScorer(pins, users[s.name], similarity), [setting])

    def popularity(self, source: UserHistory, cutoff_s: int, days: Sequence[int] = POPULARITY_DAYS,
                   name: str = "popularity") -> MethodResult:
        """Pins by distinct users with a positive action on them in the last ``d`` days before the cutoff.

        Args:
            source: positive input actions of all users (every split; all before the cutoff).
            cutoff_s: the cutoff, UTC seconds.
            days: the windows tried on ``valid``.
        """
        if source.num_items != self.num_items:
            raise ValueError(f"popularity source has {source.num_items} pins, the evaluation {self.num_items}")
        users = np.repeat(np.arange(source.num_users), np.diff(source.ptr))

        def build(_: FutureWindowSlice, d: int) -> Scorer:
            recent = source.ts_us >= (cutoff_s - int(d) * DAY_S) * 1_000_000
            pairs = np.unique(np.stack([users[recent], source.items[recent]]), axis=1)
            return ItemScoresScorer(np.bincount(pairs[1], minlength=self.num_items).astype(np.float64))

        return self.run(name, build, [int(d) for d in days])

    def last_pin(self, histories: Sequence[str] = LAST_PIN_HISTORIES, name: str = "pinsage_last_pin") -> MethodResult:
        """The PinSage vector of the latest positive input pin (``"positive"``) or latest input action."""
        def build(s: FutureWindowSlice, which: str) -> Scorer:
            vectors = last_pin_vectors(self.history(s, which == "positive"), self.pin_vectors, s.users())
            return vectors.scorer(self.pin_vectors, "max")

        return self.run(name, build, list(histories))

    def decayed_average(self, lams: Sequence[float] = DECAY_LAMS,
                        name: str = "pinsage_decayed_average") -> MethodResult:
        """``sum exp(-lam * age_days) unit(x)`` over the positive input actions, ``lam`` chosen on ``valid``."""
        def build(s: FutureWindowSlice, lam: float) -> Scorer:
            vectors = decayed_average_vectors(self.history(s), self.pin_vectors, s.users(), lam=float(lam))
            return vectors.scorer(self.pin_vectors, "max")

        return self.run(name, build, list(lams))

    def pinnersage(self, alphas: Sequence[float] = PINNERSAGE_ALPHAS, blend: str = DEFAULT_BLEND,
                   num_medoids: int = NUM_MEDOIDS, name: str = f"pinnersage_{NUM_MEDOIDS}_medoids",
                   lams: Sequence[float] = DECAY_LAMS) -> MethodResult:
        """PinnerSage's top ``num_medoids`` medoids of the positive input actions, ``WardSetting(alpha, lam)``
        chosen on ``valid`` (the importance decay over the decayed average's grid, so the two are tuned
        alike); their candidate lists interleaved by importance (``blend``). Each alpha is clustered once."""
        clustered: dict[tuple, dict] = {}

        def build(s: FutureWindowSlice, setting: WardSetting) -> Scorer:
            history = self.history(s)
            key = (s.name, setting.alpha)
            if key not in clustered:
                clustered.clear()  # alpha-major: the previous alpha's clusters are not asked again
                clustered[key] = ward_user_clusters(history, self.pin_vectors, s.users(), alpha=setting.alpha)
            vectors = pinnersage_vectors(history, self.pin_vectors, s.users(), alpha=setting.alpha, lam=setting.lam,
                                         num_vectors=num_medoids, clusters=clustered[key])
            return vectors.scorer(self.pin_vectors, blend, seen=s.history, depth=max(*self.ks, DIVERSITY_K))

        return self.run(name, build, [WardSetting(float(a), float(lam)) for a in alphas for lam in lams])


# ---- the table and the figure -------------------------------------------------------------------


def results_table(methods: Sequence[MethodResult], *, ks: Sequence[int] = EVAL_KS, ci_samples: int = 0,
                  seed: int = 0) -> pd.DataFrame:
    """``evaluation_table`` rows (model, split, setting, metric, value, ci, num_queries, protocol) of every
    method and split for the metrics at ``ks`` (and ``mrr``, ``topic_entropy@50``), plus one
    ``p90_coverage@10`` row per method and split (a population value: no interval)."""
    keep = {f"{kind}@{k}" for kind in ("recall", "hr", "ndcg") for k in ks} | {"mrr", f"topic_entropy@{DIVERSITY_K}"}
    rows = []
    for m in methods:
        for split, result in m.results.items():
            values = {k: v for k, v in result.values.items() if k in keep}
            rows.append((m.name, split, replace(result, values=values), repr(m.setting)))
    table = evaluation_table([r[:3] for r in rows], ci_samples=ci_samples, seed=seed, settings=[r[3] for r in rows])
    coverage = pd.DataFrame([
        {"model": m.name, "split": split, "setting": repr(m.setting), "metric": f"p90_coverage@{COVERAGE_K}",
         "value": value, "ci_low": float("nan"), "ci_high": float("nan"),
         "num_queries": m.results[split].num_queries, "protocol": m.results[split].protocol}
        for m in methods for split, value in m.coverage.items() if np.isfinite(value)
    ], columns=table.columns)
    return pd.concat([table, coverage], ignore_index=True) if len(coverage) else table


def recall_curve(result: RankingMetrics, ks: Sequence[int] = CURVE_KS) -> np.ndarray:
    """(len(ks),) mean ``recall@K`` for each K that was computed (NaN for the others or without queries)."""
    return np.array([float(result.values[f"recall@{k}"].mean()) if f"recall@{k}" in result.values and
                     result.num_queries else float("nan") for k in ks])


def plot_recall_at_k(results: Mapping[str, RankingMetrics], path: str | Path, *,
                     ks: Sequence[int] = CURVE_KS) -> Path:
    """Recall@K against K (log x axis), one line per method; all results must share one protocol.

    Raises:
        ValueError: no results, or results measured under different protocols.
    """
    if not results:
        raise ValueError("plot_recall_at_k needs at least one result")
    protocols = {r.protocol for r in results.values()}
    if len(protocols) != 1:
        raise ValueError(f"recall curves must share one protocol, got {sorted(protocols)}")
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, result in results.items():
        ax.plot(list(ks), recall_curve(result, ks), marker="o", label=f"{name} ({result.num_queries} users)")
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K (all future positives)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(protocols.pop(), fontsize=7, wrap=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
