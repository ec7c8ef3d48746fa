"""A seeded synthetic Pinterest with planted structure, so every stage can be checked against the truth.

What is planted (docs/SYNTHETIC.md has the full story and the knobs):

* **Topics** ``0..T-1`` with a skewed prior (some topics are bigger and more followed than others).
* **Pins** belong to a primary topic (weight 0.6-0.9) and, for some, a secondary one. Their text mixes
  words of their topics' vocabularies with *distractor* words of one unrelated topic and with shared
  noise words, so text alone is ambiguous: exact cosine kNN on ``content_features`` finds a pin's primary
  topic with precision@10 of about 0.45 at the default ``topic_word_fraction``. Pin popularity is
  Pareto-distributed (the top 1% of pins draw a large share of events). Some pins are created during the
  window and can be engaged with only from the day after they are created.
* **Users** have a planted number of interests (1-8), each a topic with a weight; interests drift: every
  day each one is replaced by a new topic with a small probability and the weights random-walk. User
  activity (events per day) is Pareto-distributed too.
* **Boards** belong to users and are focused on one or two of their owner's topics (every topic the user
  is interested in at any time of the window has exactly one board).
* **Events**: a user's day is a few sessions; within a session the topic sticks (consecutive actions are
  topically related, which is what PinSage's positives and PinnerFormer's sequences learn from), else it is
  redrawn from the user's interests of that day. Pins are drawn from the topic by popularity. In-interest
  actions are saves (to the user's board for that topic), clicks and closeups with long-ish durations;
  a share of off-interest impressions give hides and short clicks. So co-engagement carries the topic
  signal that the noisy text lacks.

Everything is a pure function of ``(params, seed, start)``: random streams are derived per purpose and per
day from the seed (``numpy.random.SeedSequence``), so a day can be regenerated without the days before it
(interest drift is replayed, which is cheap). Nothing here touches the lake; ``jobs.generate_synthetic``
writes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embeddings.data.schemas import (
    ACTION_VALUES,
    BOARDS,
    EVENTS,
    PINS,
    SYNTHETIC_BOARD_TOPICS,
    SYNTHETIC_PIN_TOPICS,
    SYNTHETIC_TOPICS,
    SYNTHETIC_USER_INTERESTS,
    SYNTHETIC_USERS,
    Action,
    TableSpec,
)

# Disjoint id ranges, so that a pin id used as a board id (or the reverse) is an obvious bug downstream.
USER_ID_BASE = 1_000_000_000
BOARD_ID_BASE = 2_000_000_000
PIN_ID_BASE = 3_000_000_000

SURFACES: tuple[str, ...] = ("homefeed", "search", "related")
MAX_INTERESTS = 8  # width of the per-user interest slots; params.max_interests may not exceed it

_DAY_US = 86_400 * 1_000_000
_SAVE, _CLICK, _CLOSEUP, _HIDE = (a.code for a in (Action.SAVE, Action.CLICK, Action.CLOSEUP, Action.HIDE))

# Random streams: one SeedSequence per purpose (and per day), so changing one part of the generator does
# not reshuffle the others.
_STREAM_VOCAB, _STREAM_PINS, _STREAM_USERS, _STREAM_DRIFT, _STREAM_EVENTS, _STREAM_BOARDS = range(6)


@dataclass(frozen=True)
class SyntheticParams:
    """Sizes and the planted structure of a synthetic world (presets in ``PRESETS``).

    The difficulty knob is ``topic_word_fraction``: the share of a pin's words drawn from its own topics'
    vocabularies. Lower is harder for text-only models (docs/SYNTHETIC.md has the measured curve).
    """

    num_pins: int
    num_users: int
    num_topics: int
    num_days: int
    events_per_user_day: float = 3.0
    # ---- text (difficulty) ----
    topic_word_fraction: float = 0.44  # the demo preset's
    distractor_word_fraction: float = 0.3  # of the remaining words: from one unrelated topic, else shared
    words_per_topic: int = 40
    num_shared_words: int = 3000
    mean_words_per_pin: float = 10.0
    secondary_topic_prob: float = 0.3
    # ---- users and boards ----
    min_interests: int = 1
    max_interests: int = MAX_INTERESTS
    interest_drift_per_day: float = 0.02  # per interest per day: probability it is replaced
    interest_weight_sigma: float = 0.1  # daily random walk of log weights
    paired_board_prob: float = 0.3  # a board covers two of its owner's topics instead of one
    # ---- behaviour ----
    pin_popularity_alpha: float = 1.2  # Pareto tail index of pin popularity (lower: more skewed)
    user_activity_alpha: float = 1.5  # Pareto tail index of events per user per day
    max_activity_ratio: float = 50.0  # cap of a user's activity relative to the mean
    new_pin_fraction: float = 0.15  # pins created during the window (the rest before it)
    pre_window_days: int = 365  # how far back the older pins were created
    off_interest_prob: float = 0.12  # impressions outside the user's interests (hides, short clicks)
    topic_stickiness: float = 0.8  # within a session, the next action keeps the topic
    events_per_session: float = 8.0

    def __post_init__(self) -> None:
        positive_ints = ("num_pins", "num_users", "num_topics", "num_days", "words_per_topic",
                         "num_shared_words", "min_interests", "max_interests")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"synthetic params: {name} must be a positive integer, got {value!r}")
        probabilities = ("topic_word_fraction", "distractor_word_fraction", "secondary_topic_prob",
                         "interest_drift_per_day", "paired_board_prob", "new_pin_fraction",
                         "off_interest_prob", "topic_stickiness")
        for name in probabilities:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"synthetic params: {name} must be in [0, 1], got {value!r}")
        positive_floats = ("events_per_user_day", "mean_words_per_pin", "pin_popularity_alpha",
                           "user_activity_alpha", "events_per_session")
        for name in positive_floats:
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"synthetic params: {name} must be positive, got {value!r}")
        if self.max_activity_ratio < 1:
            raise ValueError(f"synthetic params: max_activity_ratio must be >= 1, got {self.max_activity_ratio}")
        if self.interest_weight_sigma < 0 or self.pre_window_days < 1:
            raise ValueError("synthetic params: interest_weight_sigma must be >= 0 and pre_window_days >= 1, "
                             f"got {self.interest_weight_sigma} and {self.pre_window_days}")
        if not self.min_interests <= self.max_interests <= MAX_INTERESTS:
            raise ValueError(
                f"synthetic params: need 1 <= min_interests <= max_interests <= {MAX_INTERESTS}, "
                f"got min_interests={self.min_interests}, max_interests={self.max_interests}"
            )
        if self.num_topics < self.max_interests + 2:
            raise ValueError(
                f"synthetic params: num_topics ({self.num_topics}) must exceed max_interests "
                f"({self.max_interests}) by at least 2, so off-interest topics and drift exist"
            )
        if self.num_pins < self.num_topics:
            raise ValueError(
                f"synthetic params: num_pins ({self.num_pins}) must be at least num_topics ({self.num_topics})"
            )


# kNN precision rises with pins per topic and falls with the number of topics (256 hashed text buckets
# collide more), so each preset's topic_word_fraction is calibrated to land its own corpus at ~0.45
# (docs/SYNTHETIC.md, "Difficulty").
PRESETS: dict[str, SyntheticParams] = {
    # Unit tests: well under a second.
    "tiny": SyntheticParams(num_pins=1_000, num_users=200, num_topics=16, num_days=14,
                            topic_word_fraction=0.47),
    # `make demo`: about a second.
    "demo": SyntheticParams(num_pins=20_000, num_users=5_000, num_topics=64, num_days=30,
                            topic_word_fraction=0.44),
    # Scale test: 1M pins, ~25M events in about a minute and a few GiB.
    "large": SyntheticParams(num_pins=1_000_000, num_users=250_000, num_topics=256, num_days=60,
                             events_per_user_day=1.6, topic_word_fraction=0.41),
}


def make_params(scale: str, overrides: Mapping[str, Any] | None = None) -> SyntheticParams:
    """A preset with some fields replaced.

    Args:
        scale: a key of ``PRESETS`` ("tiny", "demo", "large").
        overrides: field name -> value; strings are converted to the field's type (for the CLI).

    Raises:
        ValueError: unknown scale, unknown field, or a value that does not convert or validate.
    """
    if scale not in PRESETS:
        raise ValueError(f"unknown synthetic scale {scale!r}; expected one of {sorted(PRESETS)}")
    base = PRESETS[scale]
    fields = {f.name: f for f in dataclasses.fields(SyntheticParams)}
    changes: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        if name not in fields:
            raise ValueError(f"unknown synthetic parameter {name!r}; expected one of {sorted(fields)}")
        kind = type(getattr(base, name))
        try:
            changes[name] = kind(value) if isinstance(value, str) else value
        except ValueError:
            raise ValueError(
                f"synthetic parameter {name} must be of type {kind.__name__}, got {value!r}"
            ) from None
    return dataclasses.replace(base, **changes)


# ---- the world: everything that does not change from day to day ---------------------------------------
@dataclass(frozen=True, eq=False)
class SyntheticWorld:
    """Catalogue and planted truth of one generated world (arrays indexed by pin/user/board position).

    Shapes: N pins, U users, B boards, T topics, K = MAX_INTERESTS interest slots.
    """

    params: SyntheticParams
    seed: int
    start: dt.date  # first day of the window; the window is start .. start + num_days - 1
    vocabulary: np.ndarray  # (T * words_per_topic + num_shared_words,) str: topic words first
    topic_prior: np.ndarray  # (T,) float64, sums to 1
    pin_ids: np.ndarray  # (N,) int64, increasing with created_ts
    pin_created_us: np.ndarray  # (N,) int64 microseconds since the epoch (UTC)
    pin_created_day: np.ndarray  # (N,) int64 window day index of creation; negative: before the window
    pin_primary: np.ndarray  # (N,) int32
    pin_secondary: np.ndarray  # (N,) int32, -1 where none
    pin_primary_weight: np.ndarray  # (N,) float32, 1.0 where no secondary topic
    pin_popularity: np.ndarray  # (N,) float64 Pareto weights
    pin_text: pa.StringArray  # (N,)
    user_ids: np.ndarray  # (U,) int64
    user_num_interests: np.ndarray  # (U,) int32, planted interest count
    user_activity: np.ndarray  # (U,) float64 expected events per (weekday) day
    initial_topics: np.ndarray  # (U, K) int32, -1 in unused slots
    initial_log_weights: np.ndarray  # (U, K) float64
    board_ids: np.ndarray  # (B,) int64
    board_user: np.ndarray  # (B,) int64 user position
    board_topics: np.ndarray  # (B, 2) int32, second column -1 for single-topic boards
    board_names: pa.StringArray  # (B,)
    board_lookup_keys: np.ndarray  # (M,) int64 sorted user_position * T + topic
    board_lookup_index: np.ndarray  # (M,) int64 board position for that key

    @functools.cached_property
    def topic_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pins listed under each of their topics, for sampling a pin given a topic.

        Returns:
            (entry_pin, bounds, entry_weight): (M,) pin positions grouped by topic, with topic i at
            ``bounds[i]:bounds[i + 1]`` ((T + 1,) int64), and (M,) float64 membership weight x popularity.
        """
        has_secondary = self.pin_secondary >= 0
        entry_pin = np.concatenate([np.arange(len(self.pin_ids)), np.flatnonzero(has_secondary)])
        entry_topic = np.concatenate([self.pin_primary, self.pin_secondary[has_secondary]])
        entry_weight = np.concatenate([self.pin_primary_weight, 1.0 - self.pin_primary_weight[has_secondary]])
        order = np.argsort(entry_topic, kind="stable")
        bounds = np.searchsorted(entry_topic[order], np.arange(self.params.num_topics + 1))
        return entry_pin[order], bounds, (entry_weight * self.pin_popularity[entry_pin])[order]

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.params.num_days)]

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.params.num_days - 1)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _pareto(rng: np.random.Generator, alpha: float, size: int) -> np.ndarray:
    """Pareto(alpha) samples with minimum 1: survival x^-alpha."""
    return (1.0 - rng.random(size)) ** (-1.0 / alpha)


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return np.cumsum(p / p.sum())


def _draw_from_cdf(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def make_vocabulary(num_words: int, seed: int) -> np.ndarray:
    """(num_words,) distinct pronounceable pseudo-words (2-4 syllables), deterministic in ``seed``."""
    rng = _rng(seed, _STREAM_VOCAB)
    consonants = np.array(list("bcdfghjklmnprstvz"))
    vowels = np.array(["a", "e", "i", "o", "u", "ai", "ou", "y"])
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < num_words:
        batch = 2 * (num_words - len(words)) + 16
        syllables = rng.integers(2, 5, size=batch)
        c = consonants[rng.integers(0, len(consonants), size=(batch, 4))]
        v = vowels[rng.integers(0, len(vowels), size=(batch, 4))]
        parts = np.char.add(c, v)
        for row, n in zip(parts, syllables, strict=True):
            word = "".join(row[:n])
            if word not in seen:
                seen.add(word)
                words.append(word)
                if len(words) == num_words:
                    break
    return np.array(words, dtype=object)


def generate_world(params: SyntheticParams, seed: int, start: dt.date) -> SyntheticWorld:
    """Generate the catalogue (topics, pins, users, boards) of a world whose window begins at ``start``.

    Args:
        params: sizes and planted structure.
        seed: any non-negative integer; same seed, params and start give an identical world.
        start: first day of the window (UTC).

    Returns:
        The world; events are generated per day by ``generate_day``.
    """
    if seed < 0:
        raise ValueError(f"synthetic seed must be a non-negative integer, got {seed}")
    p = params
    t = p.num_topics
    vocabulary = make_vocabulary(t * p.words_per_topic + p.num_shared_words, seed)
    topic_prior = _rng(seed, _STREAM_USERS, 0).gamma(4.0, size=t)
    topic_prior /= topic_prior.sum()

    pins = _generate_pins(p, seed, start, topic_prior, vocabulary)
    users = _generate_users(p, seed, topic_prior)
    boards = _generate_boards(p, seed, users["user_ids"], users["topics"], users["log_weights"],
                              topic_prior, vocabulary)
    return SyntheticWorld(
        params=p, seed=seed, start=start, vocabulary=vocabulary, topic_prior=topic_prior,
        pin_ids=pins["pin_ids"], pin_created_us=pins["created_us"], pin_created_day=pins["created_day"],
        pin_primary=pins["primary"], pin_secondary=pins["secondary"], pin_primary_weight=pins["weight"],
        pin_popularity=pins["popularity"], pin_text=pins["text"],
        user_ids=users["user_ids"], user_num_interests=users["num_interests"], user_activity=users["activity"],
        initial_topics=users["topics"], initial_log_weights=users["log_weights"],
        board_ids=boards["board_ids"], board_user=boards["user"], board_topics=boards["topics"],
        board_names=boards["names"], board_lookup_keys=boards["keys"], board_lookup_index=boards["index"],
    )


def _generate_pins(
    p: SyntheticParams, seed: int, start: dt.date, topic_prior: np.ndarray, vocabulary: np.ndarray
) -> dict[str, Any]:
    rng = _rng(seed, _STREAM_PINS)
    n, t = p.num_pins, p.num_topics
    primary = _draw_from_cdf(rng, np.cumsum(topic_prior), n).astype(np.int32)
    primary[:t] = np.arange(t)  # every topic has pins, and (below) some created before the window
    has_secondary = rng.random(n) < p.secondary_topic_prob
    secondary = ((primary + rng.integers(1, t, size=n)) % t).astype(np.int32)  # != primary
    secondary[~has_secondary] = -1
    weight = np.where(has_secondary, rng.uniform(0.6, 0.9, size=n), 1.0).astype(np.float32)
    popularity = _pareto(rng, p.pin_popularity_alpha, n)

    # Creation: the older pins uniformly over pre_window_days before the window, the new ones during it.
    start_us = _date_us(start)
    is_new = rng.random(n) < p.new_pin_fraction
    is_new[:t] = False
    created_us = np.where(
        is_new,
        start_us + (rng.random(n) * p.num_days * _DAY_US).astype(np.int64),
        start_us - 1 - (rng.random(n) * p.pre_window_days * _DAY_US).astype(np.int64),
    )
    text = _generate_texts(p, rng, primary, secondary, weight, vocabulary)

    # Pin ids increase with creation time (as real ids do); topics are independent of the id.
    order = np.argsort(created_us, kind="stable")
    created_us = created_us[order]
    return {
        "pin_ids": PIN_ID_BASE + np.arange(n, dtype=np.int64),
        "created_us": created_us,
        "created_day": np.floor_divide(created_us - start_us, _DAY_US),
        "primary": primary[order],
        "secondary": secondary[order],
        "weight": weight[order],
        "popularity": popularity[order],
        "text": text.take(pa.array(order)),
    }


def _generate_texts(
    p: SyntheticParams, rng: np.random.Generator, primary: np.ndarray, secondary: np.ndarray,
    weight: np.ndarray, vocabulary: np.ndarray,
) -> pa.StringArray:
    """Pin texts: each word is a topic word (probability topic_word_fraction, from the primary topic with
    the pin's primary weight, else the secondary), else a distractor word of one unrelated topic, else a
    shared Zipf-distributed noise word."""
    n, t, w = len(primary), p.num_topics, p.words_per_topic
    num_words = 3 + rng.poisson(max(p.mean_words_per_pin - 3.0, 0.0), size=n)
    total = int(num_words.sum())
    pin = np.repeat(np.arange(n), num_words)
    kind = rng.random(total)
    is_topic = kind < p.topic_word_fraction
    is_distractor = ~is_topic & (kind < p.topic_word_fraction
                                 + (1.0 - p.topic_word_fraction) * p.distractor_word_fraction)
    use_secondary = (secondary[pin] >= 0) & (rng.random(total) >= weight[pin])
    source = np.where(use_secondary, secondary[pin], primary[pin])
    distractor_topic = (primary + rng.integers(1, t, size=n)) % t
    source = np.where(is_distractor, distractor_topic[pin], source)
    in_topic = _draw_from_cdf(rng, _zipf_cdf(w, 0.8), total)
    shared = t * w + _draw_from_cdf(rng, _zipf_cdf(p.num_shared_words, 1.0), total)
    word = np.where(is_topic | is_distractor, source.astype(np.int64) * w + in_topic, shared)
    offsets = np.concatenate([[0], np.cumsum(num_words)]).astype(np.int32)
    words = pa.array(vocabulary, pa.string()).take(pa.array(word))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), words), " ")


def _generate_users(p: SyntheticParams, seed: int, topic_prior: np.ndarray) -> dict[str, Any]:
    rng = _rng(seed, _STREAM_USERS, 1)
    u, k = p.num_users, MAX_INTERESTS
    num_interests = rng.integers(p.min_interests, p.max_interests + 1, size=u).astype(np.int32)
    activity = _pareto(rng, p.user_activity_alpha, u)
    activity = np.minimum(activity, p.max_activity_ratio * activity.mean())
    activity *= p.events_per_user_day / activity.mean()
    # k distinct topics per user by the prior: Gumbel top-k, in chunks to bound memory (U x T floats).
    topics = np.empty((u, k), dtype=np.int32)
    log_prior = np.log(topic_prior)
    for lo in range(0, u, 8192):
        hi = min(lo + 8192, u)
        keys = log_prior[None, :] + rng.gumbel(size=(hi - lo, p.num_topics))
        top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
        topics[lo:hi] = np.take_along_axis(top, order, axis=1)
    unused = np.arange(k)[None, :] >= num_interests[:, None]
    topics[unused] = -1
    log_weights = rng.normal(0.0, 0.7, size=(u, k))
    return {"user_ids": USER_ID_BASE + np.arange(u, dtype=np.int64), "num_interests": num_interests,
            "activity": activity, "topics": topics, "log_weights": log_weights}


# ---- interests over the days -----------------------------------------------------------------------
def _drift(
    p: SyntheticParams, rng: np.random.Generator, topics: np.ndarray, log_weights: np.ndarray,
    topic_cdf: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One day of drift: replace some interests by new topics, random-walk the weights. Returns copies."""
    topics, log_weights = topics.copy(), log_weights + rng.normal(0.0, p.interest_weight_sigma, topics.shape)
    used = topics >= 0
    rows, cols = np.nonzero(used & (rng.random(topics.shape) < p.interest_drift_per_day))
    new = _draw_from_cdf(rng, topic_cdf, len(rows)).astype(np.int32)
    for _ in range(16):  # redraw topics the user already has; the few left after that are not replaced
        clash = (topics[rows] == new[:, None]).any(axis=1)
        if not clash.any():
            break
        new[clash] = _draw_from_cdf(rng, topic_cdf, int(clash.sum()))
    ok = ~(topics[rows] == new[:, None]).any(axis=1)
    rows, cols, new = rows[ok], cols[ok], new[ok]
    # Two replacements in one row on the same day could pick the same topic: keep the first of them.
    key = rows.astype(np.int64) * p.num_topics + new
    _, first = np.unique(key, return_index=True)
    rows, cols, new = rows[first], cols[first], new[first]
    topics[rows, cols] = new
    log_weights[rows, cols] = rng.normal(0.0, 0.7, size=len(rows))
    return topics, log_weights


def iter_interests(
    p: SyntheticParams, seed: int, topics: np.ndarray, log_weights: np.ndarray, topic_prior: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Planted interests of every user for each window day, day 0 first.

    Yields:
        (topics, weights): (U, K) int32 topic per slot (-1 unused) and (U, K) float32 weights (0 in unused
        slots, each row sums to 1).
    """
    topic_cdf = np.cumsum(topic_prior)
    for day in range(p.num_days):
        if day > 0:
            topics, log_weights = _drift(p, _rng(seed, _STREAM_DRIFT, day), topics, log_weights, topic_cdf)
        yield topics, _softmax_used(topics, log_weights)


def world_interests(world: SyntheticWorld) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``iter_interests`` for a world: (topics, weights) per window day."""
    return iter_interests(world.params, world.seed, world.initial_topics, world.initial_log_weights,
                          world.topic_prior)


def _softmax_used(topics: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    logits = np.where(topics >= 0, log_weights, -np.inf)
    logits = logits - logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


# ---- boards -------------------------------------------------------------------------------------------
def _generate_boards(
    p: SyntheticParams, seed: int, user_ids: np.ndarray, topics: np.ndarray, log_weights: np.ndarray,
    topic_prior: np.ndarray, vocabulary: np.ndarray,
) -> dict[str, Any]:
    """One board per topic a user holds at any time of the window; pairs of topics share a board with
    probability paired_board_prob (so boards cover one or two topics)."""
    t = p.num_topics
    keys, previous = [], np.full_like(topics, -1)
    for day_topics, _ in iter_interests(p, seed, topics, log_weights, topic_prior):
        rows, cols = np.nonzero((day_topics >= 0) & (day_topics != previous))  # new (user, topic) pairs
        keys.append(rows.astype(np.int64) * t + day_topics[rows, cols])
        previous = day_topics
    keys = np.unique(np.concatenate(keys))  # (user, topic) pairs, sorted by user
    rng = _rng(seed, _STREAM_BOARDS)
    user = keys // t
    # Random order of a user's topics, then pair positions (0, 1), (2, 3), ... with some probability.
    order = np.lexsort((rng.random(len(keys)), user))
    keys, user = keys[order], user[order]
    topic = (keys % t).astype(np.int32)
    first_of_user = np.r_[True, user[1:] != user[:-1]]
    starts = np.flatnonzero(first_of_user)
    position = np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    has_partner = np.r_[user[1:] == user[:-1], False] & (position % 2 == 0)
    merged = has_partner & (rng.random(len(keys)) < p.paired_board_prob)
    board_start = ~np.r_[False, merged[:-1]]  # an element starts a board unless merged into the previous
    element_board = np.cumsum(board_start) - 1
    b = int(board_start.sum())
    board_topics = np.full((b, 2), -1, dtype=np.int32)
    board_topics[:, 0] = topic[board_start]
    second = np.flatnonzero(~board_start)
    board_topics[element_board[second], 1] = topic[second]
    board_user = user[board_start]

    # Names: a word of each topic plus a shared word ("kavo ... ideas"-like), so names are weakly topical.
    w = p.words_per_topic
    vocab = pa.array(vocabulary, pa.string())
    first_word = vocab.take(pa.array(board_topics[:, 0].astype(np.int64) * w + rng.integers(0, 3, size=b)))
    second_topic = np.where(board_topics[:, 1] >= 0, board_topics[:, 1], board_topics[:, 0])
    second_word = vocab.take(pa.array(second_topic.astype(np.int64) * w + rng.integers(3, 6, size=b)))
    shared_word = vocab.take(pa.array(t * w + rng.integers(0, 20, size=b)))
    names = pc.binary_join_element_wise(first_word, second_word, shared_word, " ")

    lookup_order = np.argsort(keys, kind="stable")
    return {
        "board_ids": BOARD_ID_BASE + np.arange(b, dtype=np.int64),
        "user": board_user,
        "topics": board_topics,
        "names": names,
        "keys": keys[lookup_order],
        "index": element_board[lookup_order],
    }


# ---- events -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticDay:
    """One window day: its events and the planted interests of that day."""

    ds: dt.date
    events: pa.Table  # conforms to schemas.EVENTS
    interests: pa.Table  # conforms to schemas.SYNTHETIC_USER_INTERESTS


def generate_days(world: SyntheticWorld) -> Iterator[SyntheticDay]:
    """Every window day in order (interest drift is sequential, so this is the cheap way to get them all)."""
    for index, (topics, weights) in enumerate(world_interests(world)):
        yield SyntheticDay(
            ds=world.start + dt.timedelta(days=index),
            events=generate_day_events(world, index, topics, weights),
            interests=interests_table(world, topics, weights),
        )


def generate_day_events(world: SyntheticWorld, day: int, topics: np.ndarray, weights: np.ndarray) -> pa.Table:
    """The events of window day ``day`` given that day's interests.

    Args:
        world: the catalogue.
        day: window day index, 0 <= day < num_days.
        topics: (U, K) int32 interest topics of that day (-1 unused), from ``world_interests``.
        weights: (U, K) float32 interest weights of that day.

    Returns:
        A table conforming to ``schemas.EVENTS``, sorted by (user_id, ts); every ts lies in the UTC day.
    """
    p = world.params
    if not 0 <= day < p.num_days:
        raise ValueError(f"synthetic day index must be in [0, {p.num_days}), got {day}")
    rng = _rng(world.seed, _STREAM_EVENTS, day)
    date = world.start + dt.timedelta(days=day)
    weekend_boost = 1.2 if date.weekday() >= 5 else 1.0
    per_user = rng.poisson(world.user_activity * weekend_boost)
    user = np.repeat(np.arange(len(per_user)), per_user)  # (E,) sorted by user
    e = len(user)

    # Sessions: each user's day splits into 1 + Poisson(n / events_per_session) sessions (at most n).
    num_sessions = np.minimum(1 + rng.poisson(per_user / p.events_per_session), np.maximum(per_user, 1))
    session_base = np.cumsum(num_sessions) - num_sessions
    session = session_base[user] + (rng.random(e) * num_sessions[user]).astype(np.int64)
    order = np.argsort(session, kind="stable")
    user, session = user[order], session[order]  # grouped by session (and so still by user)
    session_start = np.r_[True, session[1:] != session[:-1]] if e else np.zeros(0, bool)
    # Time: a session starts uniformly in the day; actions follow with exponential gaps (mean 40 s).
    starts_at = (rng.random(int(num_sessions.sum())) * (_DAY_US - 3_600_000_000)).astype(np.int64)
    gaps = (rng.exponential(40.0, size=e) * 1e6).astype(np.int64) + 1_000_000
    gaps[session_start] = 0
    elapsed = np.cumsum(gaps)
    elapsed -= np.maximum.accumulate(np.where(session_start, elapsed, 0))
    offset_us = np.minimum(starts_at[session] + elapsed, _DAY_US - 1)

    # Topics: a candidate from the day's interests per action; within a session the topic sticks.
    cum_weights = np.cumsum(weights, axis=1)
    draw = rng.random(e)
    slot = np.minimum((cum_weights[user] < draw[:, None]).sum(axis=1), MAX_INTERESTS - 1)
    candidate = topics[user, slot]
    slot_unused = candidate < 0  # only through float rounding at the top of the cumulative sum
    candidate[slot_unused] = topics[user[slot_unused], 0]
    reset = session_start | (rng.random(e) >= p.topic_stickiness)
    continued = ~reset
    topic = candidate[np.maximum.accumulate(np.where(reset, np.arange(e), 0))] if e else candidate

    # Off-interest impressions: a topic the user does not hold today.
    off = rng.random(e) < p.off_interest_prob
    off_topic = rng.integers(0, p.num_topics, size=e).astype(np.int32)
    clash = off & (topics[user] == off_topic[:, None]).any(axis=1)
    for _ in range(16):
        if not clash.any():
            break
        off_topic[clash] = rng.integers(0, p.num_topics, size=int(clash.sum()))
        clash = off & (topics[user] == off_topic[:, None]).any(axis=1)
    off &= ~clash
    topic = np.where(off, off_topic, topic).astype(np.int32)

    pin = _sample_pins(world, day, topic, rng)

    # Actions, durations and surfaces.
    action = np.where(
        off,
        _draw_from_cdf(rng, np.cumsum([0.0, 0.35, 0.15, 0.5]), e),  # save, click, closeup, hide
        _draw_from_cdf(rng, np.cumsum([0.25, 0.45, 0.30, 0.0]), e),
    )
    median_s = np.where(off, 3.0, np.where(action == _CLICK, 12.0, 9.0))
    duration = np.minimum(median_s * np.exp(rng.normal(0.0, 1.0, size=e)) * 1000.0, 3_600_000).astype(np.int32)
    has_duration = (action == _CLICK) | (action == _CLOSEUP)
    surface = np.where(
        off, _draw_from_cdf(rng, np.cumsum([0.9, 0.1, 0.0]), e),
        np.where(continued, _draw_from_cdf(rng, np.cumsum([0.4, 0.2, 0.4]), e),
                 _draw_from_cdf(rng, np.cumsum([0.7, 0.3, 0.0]), e)),
    )
    # Saves go to the user's board for the action's topic (one exists for every topic held in the window).
    is_save = action == _SAVE
    save_key = user[is_save].astype(np.int64) * p.num_topics + topic[is_save]
    where = np.searchsorted(world.board_lookup_keys, save_key)
    assert np.array_equal(world.board_lookup_keys[np.minimum(where, len(world.board_lookup_keys) - 1)],
                          save_key), "a save's topic has no board of its user"
    board = np.zeros(e, dtype=np.int64)
    board[is_save] = world.board_ids[world.board_lookup_index[where]]

    ts_us = _date_us(date) + offset_us
    final = np.lexsort((ts_us, user))
    return pa.table(
        {
            "user_id": pa.array(world.user_ids[user[final]]),
            "pin_id": pa.array(world.pin_ids[pin[final]]),
            "board_id": pa.array(board[final], mask=~is_save[final]),
            "action": pa.array(ACTION_VALUES, pa.string()).take(pa.array(action[final])),
            "ts": pa.array(ts_us[final], pa.int64()).cast(EVENTS.schema.field("ts").type),
            "duration_ms": pa.array(duration[final], mask=~has_duration[final]),
            "surface": pa.array(SURFACES, pa.string()).take(pa.array(surface[final])),
        },
        schema=EVENTS.schema,
    )


def _sample_pins(world: SyntheticWorld, day: int, topic: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each action's topic, a pin available on ``day`` (created before it) drawn from that topic by
    popularity x membership weight. (E,) int32 topics -> (E,) int64 pin positions."""
    entry_pin, bounds, entry_weight = world.topic_entries
    cum = np.cumsum(entry_weight * (world.pin_created_day[entry_pin] < day))
    before = np.r_[0.0, cum][bounds[:-1]]
    total = np.r_[0.0, cum][bounds[1:]] - before
    if (total[topic] <= 0).any():
        missing = np.unique(topic[total[topic] <= 0])[:5].tolist()
        raise AssertionError(f"synthetic topics {missing} have no pins available on day {day}")
    target = before[topic] + rng.random(len(topic)) * total[topic]
    index = np.searchsorted(cum, target, side="right")
    index = np.clip(index, bounds[topic], bounds[topic + 1] - 1)
    return entry_pin[index]


def _date_us(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000


# ---- tables ---------------------------------------------------------------------------------------------
def _ts_array(us: np.ndarray) -> pa.Array:
    return pa.array(us, pa.int64()).cast(PINS.schema.field("created_ts").type)


def pins_table(world: SyntheticWorld) -> pa.Table:
    """The ``pins`` snapshot: every pin of the world, including those created during the window."""
    n = len(world.pin_ids)
    return pa.table(
        {
            "pin_id": world.pin_ids,
            "text": world.pin_text,
            "features": pa.nulls(n, PINS.schema.field("features").type),
            "created_ts": _ts_array(world.pin_created_us),
        },
        schema=PINS.schema,
    )


def boards_table(world: SyntheticWorld) -> pa.Table:
    """The ``boards`` snapshot."""
    return pa.table(
        {"board_id": world.board_ids, "user_id": world.user_ids[world.board_user], "name": world.board_names},
        schema=BOARDS.schema,
    )


def _topic_lists(first: np.ndarray, second: np.ndarray, values: tuple[np.ndarray, np.ndarray] | None = None,
                 ) -> tuple[pa.Array, pa.Array | None]:
    """Lists [first] or [first, second] per row (second -1 means absent), and matching value lists."""
    has_second = second >= 0
    lengths = 1 + has_second.astype(np.int32)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    flat = np.empty(int(offsets[-1]), dtype=np.int32)
    flat[offsets[:-1]] = first
    flat[offsets[:-1][has_second] + 1] = second[has_second]
    topics = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
    if values is None:
        return topics, None
    flat_values = np.empty(int(offsets[-1]), dtype=np.float32)
    flat_values[offsets[:-1]] = values[0]
    flat_values[offsets[:-1][has_second] + 1] = values[1][has_second]
    return topics, pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_values))


def pin_topics_table(world: SyntheticWorld) -> pa.Table:
    """Planted pin topics (``synthetic_pin_topics``): primary topic and the (1-2 topic) mixture."""
    topics, weights = _topic_lists(world.pin_primary, world.pin_secondary,
                                   (world.pin_primary_weight, 1.0 - world.pin_primary_weight))
    return pa.table({"pin_id": world.pin_ids, "primary_topic": world.pin_primary, "topics": topics,
                     "weights": weights}, schema=SYNTHETIC_PIN_TOPICS.schema)


def board_topics_table(world: SyntheticWorld) -> pa.Table:
    """Planted board focus (``synthetic_board_topics``): the one or two topics of each board."""
    topics, _ = _topic_lists(world.board_topics[:, 0], world.board_topics[:, 1])
    return pa.table({"board_id": world.board_ids, "topics": topics}, schema=SYNTHETIC_BOARD_TOPICS.schema)


def users_table(world: SyntheticWorld) -> pa.Table:
    """Planted per-user facts (``synthetic_users``): interest count and expected events per day."""
    return pa.table({"user_id": world.user_ids, "num_interests": world.user_num_interests,
                     "activity": world.user_activity.astype(np.float32)}, schema=SYNTHETIC_USERS.schema)


def topics_table(world: SyntheticWorld) -> pa.Table:
    """The topics (``synthetic_topics``): id, a readable name (its two commonest words) and its prior."""
    w = world.params.words_per_topic
    vocab = pa.array(world.vocabulary, pa.string())
    index = np.arange(world.params.num_topics, dtype=np.int64) * w
    names = pc.binary_join_element_wise(vocab.take(pa.array(index)), vocab.take(pa.array(index + 1)), "-")
    return pa.table({"topic": np.arange(world.params.num_topics, dtype=np.int32), "name": names,
                     "prior": world.topic_prior.astype(np.float32)}, schema=SYNTHETIC_TOPICS.schema)


def interests_table(world: SyntheticWorld, topics: np.ndarray, weights: np.ndarray) -> pa.Table:
    """One day's planted interests (``synthetic_user_interests``): a row per (user, active interest).

    Args:
        topics: (U, K) int32, -1 in unused slots.
        weights: (U, K) float32.
    """
    rows, cols = np.nonzero(topics >= 0)  # row-major: grouped by user
    return pa.table({"user_id": world.user_ids[rows], "topic": topics[rows, cols],
                     "weight": weights[rows, cols]}, schema=SYNTHETIC_USER_INTERESTS.schema)


SNAPSHOT_SPECS: tuple[TableSpec, ...] = (
    PINS, BOARDS, SYNTHETIC_TOPICS, SYNTHETIC_PIN_TOPICS, SYNTHETIC_BOARD_TOPICS, SYNTHETIC_USERS,
)
DAILY_SPECS: tuple[TableSpec, ...] = (EVENTS, SYNTHETIC_USER_INTERESTS)


def snapshot_tables(world: SyntheticWorld) -> list[tuple[TableSpec, pa.Table]]:
    """Every snapshot table of the world with its spec (in ``SNAPSHOT_SPECS`` order): pins, boards and
    the planted truth."""
    return [
        (PINS, pins_table(world)),
        (BOARDS, boards_table(world)),
        (SYNTHETIC_TOPICS, topics_table(world)),
        (SYNTHETIC_PIN_TOPICS, pin_topics_table(world)),
        (SYNTHETIC_BOARD_TOPICS, board_topics_table(world)),
        (SYNTHETIC_USERS, users_table(world)),
    ]


# ---- difficulty ---------------------------------------------------------------------------------------
def knn_label_precision(
    vectors: np.ndarray, labels: np.ndarray, k: int = 10, num_queries: int | None = None, seed: int = 0,
    batch_size: int = 1024,
) -> float:
    """Mean precision@k of exact cosine nearest neighbors at recovering a label.

    For each query row, the share of its ``k`` most cosine-similar other rows (itself excluded) that carry
    the query's label, averaged over queries.

    Args:
        vectors: (N, D) float; rows need not be normalized (all-zero rows score 0 against everything).
        labels: (N,) integer labels (e.g. planted primary topics).
        k: neighbors per query, 1 <= k < N.
        num_queries: evaluate a seeded random sample of this many query rows (all rows when None).
        seed: seed of that sample.
        batch_size: queries per matrix product (lowered so one (batch, N) block stays near 128 MiB).

    Returns:
        Precision in [0, 1].
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels)
    n = len(vectors)
    if len(labels) != n:
        raise ValueError(f"knn_label_precision: {n} vectors but {len(labels)} labels")
    if not 1 <= k < n:
        raise ValueError(f"knn_label_precision: k must be in [1, {n}) for {n} vectors, got {k}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    queries = np.arange(n)
    if num_queries is not None and num_queries < n:
        queries = np.sort(np.random.default_rng(seed).choice(n, size=num_queries, replace=False))
    batch_size = max(1, min(batch_size, (32 << 20) // n))
    hits = 0
    for lo in range(0, len(queries), batch_size):
        q = queries[lo:lo + batch_size]
        sims = unit[q] @ unit.T  # (B, N)
        sims[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        hits += int((labels[top] == labels[q][:, None]).sum())
    return hits / (len(queries) * k)
