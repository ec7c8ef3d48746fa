"""Deterministic clustered unit vectors with known neighbours (faiss' SyntheticDataset idea, smaller)."""

from __future__ import annotations

import numpy as np


def clustered_vectors(num: int, dim: int = 16, num_clusters: int = 20, noise: float = 0.35,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors): ``num`` float32 vectors around ``num_clusters`` random centres, ids from 3e9 up
    (the synthetic pins' range) in a shuffled order, so that ids are not positions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_clusters, dim))
    vectors = centres[rng.integers(num_clusters, size=num)] + noise * rng.normal(size=(num, dim))
    ids = 3_000_000_000 + rng.permutation(num * 3)[:num].astype(np.int64)
    return ids, vectors.astype(np.float32)
