"""Figures logged with every training run: loss curves, hit-rate@K curves, a 2-D embedding projection.

Drawn on ``matplotlib.figure.Figure`` (the Agg canvas) rather than pyplot, so nothing global (backend,
open figures) changes in the process that calls them. Every function writes a PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from embeddings.eval.metrics import RankingMetrics

DPI = 110


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def plot_loss_curves(history: Mapping[str, Sequence[float]], path: str | Path, *, title: str = "training") -> Path:
    """One line per series (e.g. ``{"train_loss": [...], "valid_loss": [...]}``) against the epoch.

    Raises:
        ValueError: no series, or an empty one.
    """
    if not history:
        raise ValueError("plot_loss_curves needs at least one series")
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, values in history.items():
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            raise ValueError(f"series {name!r} is empty")
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_hit_rate_curves(
    results: Mapping[str, RankingMetrics], path: str | Path, *, max_k: int = 100
) -> Path:
    """HR@K for K = 1..max_k (log x axis), one line per model; all results must share one protocol.

    Raises:
        ValueError: no results, or results measured under different protocols.
    """
    if not results:
        raise ValueError("plot_hit_rate_curves needs at least one result")
    protocols = {r.protocol for r in results.values()}
    if len(protocols) != 1:
        raise ValueError(f"hit-rate curves must share one protocol, got {sorted(protocols)}")
    ks = np.unique(np.geomspace(1, max_k, num=40).round().astype(int))
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for model, result in results.items():
        ax.plot(ks, result.hit_rate_curve(ks), label=f"{model} ({result.num_queries} queries)")
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("hit-rate@K")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(protocols.pop(), fontsize=7, wrap=True)
    return _save(fig, path)


def project_2d(vectors: np.ndarray) -> np.ndarray:
    """PCA to two dimensions (centered SVD): (n, D) -> (n, 2)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    centered = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    return centered @ vt[:2].T


def plot_embedding_projection(
    vectors: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    *,
    sample_size: int = 2000,
    seed: int = 0,
    title: str = "embeddings (PCA)",
) -> Path:
    """A 2-D PCA projection of a random sample of embeddings, colored by label (e.g. synthetic topic).

    Args:
        vectors: (n, D) embeddings.
        labels: (n,) integer labels (topics); the 10 most frequent get their own color, the rest are grey.
        path: the PNG to write.
        sample_size: points drawn (uniform sample without replacement, seeded).

    Raises:
        ValueError: shapes disagree or there are fewer than 2 vectors.
    """
    vectors = np.asarray(vectors)
    labels = np.asarray(labels)
    if vectors.ndim != 2 or len(vectors) != len(labels):
        raise ValueError(f"vectors (n, D) and labels (n,) must agree, got {vectors.shape} and {labels.shape}")
    if len(vectors) < 2:
        raise ValueError(f"need at least 2 vectors to project, got {len(vectors)}")
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(vectors), size=min(sample_size, len(vectors)), replace=False)
    points, point_labels = project_2d(vectors[sample]), labels[sample]
    values, counts = np.unique(point_labels, return_counts=True)
    top = values[np.argsort(-counts, kind="stable")[:10]]
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    other = ~np.isin(point_labels, top)
    if other.any():
        ax.scatter(points[other, 0], points[other, 1], s=4, c="lightgrey", label="other")
    for i, value in enumerate(top):
        sel = point_labels == value
        ax.scatter(points[sel, 0], points[sel, 1], s=6, color=f"C{i}", label=str(value))
    ax.set_title(f"{title}: {len(sample)} of {len(vectors)}")
    ax.legend(markerscale=3, fontsize=7, title="label", loc="best")
    return _save(fig, path)


def plot_recall_vs_ef(curve: Sequence[Mapping[str, float]], path: str | Path, *, target: float,
                      selected: int | None, title: str = "index gate") -> Path:
    """Recall@k and queries per second against efSearch (the publishing gate's sweep, one point each).

    Args:
        curve: ``{"ef_search", "recall", "qps"}`` per swept efSearch, in sweep order.
        target: the gate's recall target (a horizontal line).
        selected: the efSearch the gate selected (a vertical line), None when the gate failed.

    Raises:
        ValueError: an empty curve.
    """
    if not curve:
        raise ValueError("plot_recall_vs_ef needs at least one point")
    ef = np.array([p["ef_search"] for p in curve], dtype=np.float64)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(ef, [p["recall"] for p in curve], marker="o", color="C0", label="recall@k")
    ax.axhline(target, color="C0", linestyle=":", label=f"target {target}")
    if selected is not None:
        ax.axvline(selected, color="gray", linestyle="--", label=f"selected efSearch {selected}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("efSearch")
    ax.set_ylabel("recall@k against exact search")
    ax.grid(alpha=0.3, which="both")
    qps_ax = ax.twinx()
    qps_ax.plot(ef, [p["qps"] for p in curve], marker="s", color="C1", label="queries/s")
    qps_ax.set_ylabel("queries per second (one batch)")
    lines = ax.get_legend_handles_labels()
    more = qps_ax.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize=8)
    ax.set_title(title)
    return _save(fig, path)
