"""Tiny synthetic timelines for the PinnerFormer tests (built here, never read from ../shared/data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.data.schemas import Action
from embeddings.pinnerformer.data import SequenceOptions, build_user_sequences
from embeddings.pinnerformer.model import PinnerFormerConfig

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR = 3600
NOW = T0 + 10_000 * HOUR


@pytest.fixture
def one_torch_thread():
    """Tiny tensors run fastest on one thread; two threads crawl when other processes hold a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(num_items: int = 40, **overrides) -> PinnerFormerConfig:
    """A small id-only model (fast on one CPU thread)."""
    values = dict(num_items=num_items, item_dim=16, model_dim=16, embedding_dim=16, num_heads=2, ff_dim=32,
                  max_length=16, pin_hidden_dim=16, dropout=0.0, action_dim=4, surface_dim=4)
    values.update(overrides)
    return PinnerFormerConfig(**values)


def cycle_events(num_users: int = 48, length: int = 20, num_topics: int = 4, pins_per_topic: int = 10,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Saves where each user walks its topic's pins in a cycle: the next pin follows from the latest one.

    User ``u`` has topic ``u % num_topics`` and a random start; action i is on pin
    ``topic * pins_per_topic + (start + i) % pins_per_topic``, one hour after action i-1.
    """
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), length)
    step = np.tile(np.arange(length), num_users)
    start = rng.integers(0, pins_per_topic, num_users)
    topic = np.arange(num_users) % num_topics
    pins = topic[users] * pins_per_topic + (start[users] + step) % pins_per_topic
    return {
        "user_ids": users + 100,
        "pins": pins,
        "actions": np.full(len(users), Action.SAVE.code),
        "surfaces": np.ones(len(users), dtype=np.int64),
        "duration_s": np.full(len(users), np.nan),
        "ts": T0 + (users * 7 + step) * HOUR,
        "num_pins": num_topics * pins_per_topic,
    }


def cycle_sequences(cutoff_step: int | None = None, options: SequenceOptions = SequenceOptions(max_length=16),
                    **kwargs):
    """``cycle_events`` as sequences; with ``cutoff_step`` the steps after it are future labels."""
    ev = cycle_events(**kwargs)
    cutoff = None
    if cutoff_step is not None:
        user_rows = ev["user_ids"] - 100
        cutoff = T0 + (user_rows * 7 + cutoff_step) * HOUR
    return build_user_sequences(ev["user_ids"], ev["pins"], ev["actions"], ev["surfaces"], ev["duration_s"], ev["ts"],
                                num_pins=ev["num_pins"], now_ts=NOW, cutoff_ts=cutoff, options=options)
