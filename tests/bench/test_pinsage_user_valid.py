"""bench/diagnostics/pinsage_user_valid.py: the Pixie-style blend of cosine neighbours on literal vectors."""

from __future__ import annotations

import numpy as np
import pytest

from bench.diagnostics.pinsage_user_valid import TransitionScorer, parse_setting, parse_walk

# pins 0-2 point one way, 3-5 the other; pin 1 sits nearest to pin 0
ITEMS = np.array([[1, 0], [0.99, 0.14], [0.9, 0.44], [0, 1], [0.14, 0.99], [0.44, 0.9]], dtype=np.float32)
ITEMS /= np.linalg.norm(ITEMS, axis=1, keepdims=True)


def test_each_pin_spreads_one_unit_over_its_top_neighbours() -> None:
    # user 0 holds pins [0]; user 1 holds [3, 0] (newest first)
    ptr, rows = np.array([0, 1, 3]), np.array([0, 3, 0])
    plain = TransitionScorer(ITEMS, ptr, rows, neighbors=3, temperature=0.05, boost="sum", recency=False)
    out = plain(np.array([0, 1]))
    assert np.isfinite(out[0]).sum() == 3  # pin 0's top 3 neighbours, its own side
    assert np.isclose(out[0][np.isfinite(out[0])].sum(), 1.0)  # one query pin, one unit of probability
    assert np.isclose(out[1][np.isfinite(out[1])].sum(), 2.0)
    assert np.isinf(out[0][3:]).all()
    # recency: the newest pin (3) weighs 1, the next 1/2, so pin 3's side outscores pin 0's side
    recent = TransitionScorer(ITEMS, ptr, rows, neighbors=3, temperature=0.05, boost="sum", recency=True)(
        np.array([1]))[0]
    assert recent[3:].sum() == pytest.approx(1.0) and recent[:3].sum() == pytest.approx(0.5)


def test_sqrt_boosting_favours_pins_reached_from_several_queries() -> None:
    items = np.array([[1, 0], [0, 1], [0.7071, 0.7071]], dtype=np.float32)
    ptr, rows = np.array([0, 2]), np.array([0, 1])
    summed = TransitionScorer(items, ptr, rows, 2, 1.0, "sum", False)(np.array([0]))[0]
    boosted = TransitionScorer(items, ptr, rows, 2, 1.0, "sqrt", False)(np.array([0]))[0]
    # pin 2 is each query's second neighbour; boosting lifts it relative to the queries themselves
    assert boosted[2] / boosted[0] > summed[2] / summed[0]


def test_settings_parse_from_the_command_line() -> None:
    assert parse_setting("200:softmax:0.1") == (200, "softmax", 0.1)
    assert parse_setting("20:sum") == (20, "sum")
    assert parse_walk("20:100:0.05:sqrt:1") == (20, 100, 0.05, "sqrt", True)
