"""The clusters-per-user histogram logged with every PinnerSage run (drawn as ``embeddings.eval.plots``:
on a ``matplotlib.figure.Figure``, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

DPI = 110


def plot_clusters_per_user(series: Mapping[str, np.ndarray], path: str | Path, *,
                           title: str = "PinnerSage: clusters per user") -> Path:
    """Histogram (one bar per cluster count, log-scaled count axis past 64) of each series' clusters per user.

    Args:
        series: label -> (U,) int clusters per user (e.g. ``{"user_medoids ds=...": ..., "test users": ...}``).
        path: the PNG to write.

    Raises:
        ValueError: no series, or an empty one.
    """
    if not series:
        raise ValueError("plot_clusters_per_user needs at least one series")
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    top = 1
    for name, values in series.items():
        values = np.asarray(values, dtype=np.int64)
        if values.size == 0:
            raise ValueError(f"series {name!r} is empty")
        top = max(top, int(values.max()))
    if top <= 64:
        bins = np.arange(0.5, top + 1.5)
    else:
        bins = np.unique(np.geomspace(1, top + 1, 40).astype(int)) - 0.5
    for name, values in series.items():
        values = np.asarray(values, dtype=np.int64)
        ax.hist(values, bins=bins, alpha=0.6, label=f"{name} (n={len(values)}, median {np.median(values):g})")
    if top > 64:
        ax.set_xscale("log")
    ax.set_xlabel("clusters per user")
    ax.set_ylabel("users")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path
