"""Tiny PinSage inputs with planted topics, built in the tests (never read from shared data).

Pins belong to one of ``num_topics`` topics; their features are a topic direction plus noise, their PPR
neighbors mostly pins of the same topic, and users save runs of same-topic pins a minute apart, so the
positive pairs carry the topic signal.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
import torch

from embeddings.data.schemas import EVENTS, PIN_FEATURES, PPR_NEIGHBORS
from embeddings.lake import Lake

DS = dt.date(2026, 3, 31)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors run fastest on one thread; two threads crawl when other processes hold a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
PIN_ID_BASE = 3_000_000_000


def random_neighbors(rng: np.random.Generator, num_pins: int, num_neighbors: int,
                     empty_share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A random (P, T) neighbor table (-1 padded, no self-loops) and positive weights."""
    neighbors = rng.integers(0, num_pins - 1, (num_pins, num_neighbors))
    neighbors = np.where(neighbors >= np.arange(num_pins)[:, None], neighbors + 1, neighbors).astype(np.int32)
    neighbors[rng.random((num_pins, num_neighbors)) < empty_share] = -1
    weights = np.where(neighbors >= 0, rng.random((num_pins, num_neighbors)) + 0.01, 0).astype(np.float32)
    return neighbors, weights


def planted(num_pins: int = 120, num_topics: int = 4, feature_dim: int = 12, num_neighbors: int = 6,
            seed: int = 0) -> dict[str, np.ndarray]:
    """Topics, features, neighbor ids/weights and hard-negative ids for ``num_pins`` pins."""
    rng = np.random.default_rng(seed)
    pin_ids = PIN_ID_BASE + np.arange(num_pins, dtype=np.int64) * 7
    topic = np.arange(num_pins) % num_topics
    centers = rng.normal(size=(num_topics, feature_dim))
    features = (centers[topic] + 1.5 * rng.normal(size=(num_pins, feature_dim))).astype(np.float32)
    neighbor_ids, neighbor_weights, hard_ids = [], [], []
    for i in range(num_pins):
        same = np.flatnonzero((topic == topic[i]) & (np.arange(num_pins) != i))
        other = np.flatnonzero(topic != topic[i])
        picked = np.concatenate([rng.choice(same, num_neighbors - 1, replace=False), rng.choice(other, 1)])
        w = np.sort(rng.random(num_neighbors))[::-1] + 0.05
        neighbor_ids.append(pin_ids[picked].tolist())
        neighbor_weights.append((w / w.sum()).astype(np.float32).tolist())
        hard_ids.append(pin_ids[rng.choice(same, 4, replace=False)].tolist())
    return {"pin_ids": pin_ids, "topic": topic, "features": features, "neighbor_ids": neighbor_ids,
            "neighbor_weights": neighbor_weights, "hard_negative_ids": hard_ids}


def features_table(pin_ids: np.ndarray, features: np.ndarray) -> pa.Table:
    return pa.table({"pin_id": pa.array(pin_ids, pa.int64()),
                     "features": pa.array(features.tolist(), pa.list_(pa.float32()))})


def neighbors_table(pin_ids, neighbor_ids, neighbor_weights, hard_negative_ids) -> pa.Table:
    return pa.table({
        "pin_id": pa.array(pin_ids, pa.int64()),
        "neighbor_ids": pa.array(neighbor_ids, pa.list_(pa.int64())),
        "neighbor_weights": pa.array(neighbor_weights, pa.list_(pa.float32())),
        "hard_negative_ids": pa.array(hard_negative_ids, pa.list_(pa.int64())),
        "num_steps": pa.array([1000] * len(pin_ids), pa.int64()),
    })


def events_for_day(rng: np.random.Generator, day: dt.date, pin_ids: np.ndarray, topic: np.ndarray,
                   num_users: int = 12, run_length: int = 6) -> pa.Table:
    """Each user saves a run of same-topic pins one minute apart, then clicks one pin briefly."""
    rows = {"user_id": [], "pin_id": [], "board_id": [], "action": [], "ts": [], "duration_ms": [], "surface": []}
    start = dt.datetime.combine(day, dt.time(12), dt.timezone.utc)
    for user in range(num_users):
        t = int(rng.integers(topic.max() + 1))
        run = rng.choice(np.flatnonzero(topic == t), run_length, replace=False)
        for k, pin in enumerate(run):
            rows["user_id"].append(1_000_000_000 + user)
            rows["pin_id"].append(int(pin_ids[pin]))
            rows["board_id"].append(2_000_000_000 + user)
            rows["action"].append("save")
            rows["ts"].append(start + dt.timedelta(minutes=k, seconds=user))
            rows["duration_ms"].append(None)
            rows["surface"].append("homefeed")
        rows["user_id"].append(1_000_000_000 + user)  # a short click: not a positive engagement
        rows["pin_id"].append(int(pin_ids[rng.integers(len(pin_ids))]))
        rows["board_id"].append(None)
        rows["action"].append("click")
        rows["ts"].append(start + dt.timedelta(minutes=run_length + 1))
        rows["duration_ms"].append(500)
        rows["surface"].append("search")
    return pa.Table.from_pydict(rows, schema=EVENTS.schema)


def write_tiny_lake(lake: Lake, ds: dt.date = DS, num_days: int = 10, seed: int = 0, **kwargs) -> dict:
    """pin_features and ppr_neighbors for ``ds`` and ``num_days`` of events ending at ``ds``."""
    data = planted(seed=seed, **kwargs)
    lake.write(PIN_FEATURES, features_table(data["pin_ids"], data["features"]), ds)
    lake.write(PPR_NEIGHBORS, neighbors_table(data["pin_ids"], data["neighbor_ids"], data["neighbor_weights"],
                                              data["hard_negative_ids"]), ds)
    rng = np.random.default_rng(seed + 1)
    for k in range(num_days):
        day = ds - dt.timedelta(days=k)
        lake.write(EVENTS, events_for_day(rng, day, data["pin_ids"], data["topic"]), day)
    return data


def planted_graph(data: dict, num_neighbors: int = 5, num_hard_negatives: int = 4, num_pins: int | None = None):
    """A ``PinGraph`` of the first ``num_pins`` planted pins (all by default)."""
    from embeddings.pinsage.data import PinGraph, neighborhoods_from_table

    n = len(data["pin_ids"]) if num_pins is None else num_pins
    pin_ids = data["pin_ids"][:n]
    table = neighbors_table(pin_ids, data["neighbor_ids"][:n], data["neighbor_weights"][:n],
                            data["hard_negative_ids"][:n])
    neighbors, weights, hard, stats = neighborhoods_from_table(table, pin_ids, num_neighbors, num_hard_negatives,
                                                               "planted")
    return PinGraph(pin_ids, data["features"][:n].copy(), neighbors, weights, hard, stats)


def same_topic_pairs(rng: np.random.Generator, topic: np.ndarray, num_pairs: int) -> np.ndarray:
    """(num_pairs, 2) random pairs of distinct pins of one topic (rows)."""
    query = rng.integers(0, len(topic), num_pairs)
    positive = np.array([rng.choice(np.flatnonzero((topic == topic[q]) & (np.arange(len(topic)) != q)))
                         for q in query])
    return np.stack([query, positive], axis=1)
