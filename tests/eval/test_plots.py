"""Figures are written as PNGs without touching pyplot's global state."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.eval.metrics import RankingMetrics
from embeddings.eval.plots import plot_embedding_projection, plot_hit_rate_curves, plot_loss_curves, project_2d

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def _result(protocol, ranks):
    ranks = np.asarray(ranks, dtype=float)
    ids = np.arange(len(ranks))
    return RankingMetrics(protocol, ids, {"mrr": 1 / (ranks + 1)}, ranks, np.ones(len(ranks)))


def test_loss_curves(tmp_path):
    path = plot_loss_curves({"train_loss": [1.0, 0.5, 0.4], "valid_loss": [1.1, 0.7, 0.6]}, tmp_path / "a" / "loss.png")
    assert _is_png(path)
    with pytest.raises(ValueError, match="series 'x' is empty"):
        plot_loss_curves({"x": []}, tmp_path / "bad.png")


def test_hit_rate_curves_need_one_protocol(tmp_path):
    path = plot_hit_rate_curves({"a": _result("p", [0, 3, 50]), "b": _result("p", [1, 1, 2])}, tmp_path / "hr.png")
    assert _is_png(path)
    with pytest.raises(ValueError, match="hit-rate curves must share one protocol"):
        plot_hit_rate_curves({"a": _result("p", [0]), "b": _result("q", [0])}, tmp_path / "x.png")


def test_embedding_projection_samples_and_colors_by_label(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 14, 500)  # more labels than colors: the rare ones are grey
    vectors = rng.normal(size=(14, 16))[labels] + 0.1 * rng.normal(size=(500, 16))
    path = plot_embedding_projection(vectors, labels, tmp_path / "proj.png", sample_size=200)
    assert _is_png(path)
    with pytest.raises(ValueError, match="must agree"):
        plot_embedding_projection(vectors, labels[:3], tmp_path / "bad.png")


def test_pca_keeps_the_main_direction():
    x = np.outer(np.arange(10.0), [3.0, 4.0, 0.0])
    points = project_2d(x)
    assert points.shape == (10, 2)
    np.testing.assert_allclose(np.abs(points[:, 0]), np.abs(np.arange(10.0) - 4.5) * 5, atol=1e-9)

