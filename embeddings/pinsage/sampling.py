"""Computation graphs for PinSage, built in numpy from padded neighbor tables.

A pin's neighborhood is a row of two (P, T) arrays: ``neighbors`` (row indices of the top-T PPR
neighbors, best first, ``-1`` padding) and ``weights`` (their visit weights, 0 at padding). For a
minibatch, ``build_blocks`` walks K hops back from the targets (targets -> their neighbors -> their
neighbors' neighbors) and returns one ``BlockArrays`` per layer, input side first. Everything here is
numpy so that loader workers can build the next batches while the current one trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from embeddings.pinsage.model import POOLINGS, Block, csr_matrix


def pooling_weights(weights: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Per-edge pooling weights of padded neighborhoods.

    Args:
        weights: (N, T) visit weights (>= 0).
        mask: (N, T) bool, which slots hold a neighbor.
        pooling: ``importance``: weights normalized to sum to 1 per row (uniform when a row's weights
            are all zero); ``mean``: ``1/deg``; ``max``: ones (max pooling ignores weights).

    Returns:
        (N, T) float32, 0 where ``mask`` is False; rows without neighbors are all zero.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    mask_f = mask.astype(np.float32)
    if pooling == "max":
        return mask_f
    degree = mask_f.sum(axis=1, keepdims=True)
    uniform = mask_f / np.maximum(degree, 1.0)
    if pooling == "mean":
        return uniform
    w = np.where(mask, weights, 0.0).astype(np.float32)
    total = w.sum(axis=1, keepdims=True)
    return np.where(total > 0, w / np.where(total > 0, total, 1.0), uniform).astype(np.float32)


@dataclass(frozen=True)
class BlockArrays:
    """One layer of a computation graph in numpy (see ``model.Block`` for the torch side).

    The dst nodes are the first ``num_dst`` src nodes. Edges are grouped by dst (CSR order).

    Attributes:
        dst_ptr: (num_dst + 1,) int64 CSR row pointer over edges.
        src_index: (E,) int64 local src index of each edge.
        edge_weight: (E,) float32 pooling weights.
        src_ptr, src_order: (num_src + 1,) and (E,) int64: the same edges grouped by src (the transpose),
            as a row pointer and the permutation of edges; used for the gradient.
    """

    num_src: int
    num_dst: int
    dst_ptr: np.ndarray
    src_index: np.ndarray
    edge_weight: np.ndarray
    src_ptr: np.ndarray
    src_order: np.ndarray

    @property
    def dst_index(self) -> np.ndarray:
        """(E,) local dst index of each edge."""
        return np.repeat(np.arange(self.num_dst, dtype=np.int64), np.diff(self.dst_ptr))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The arrays as CPU tensors sharing memory (what a loader worker ships to the trainer)."""
        return {
            "sizes": torch.tensor([self.num_src, self.num_dst]),
            "dst_ptr": torch.from_numpy(self.dst_ptr),
            "src_index": torch.from_numpy(self.src_index),
            "dst_index": torch.from_numpy(self.dst_index),
            "edge_weight": torch.from_numpy(self.edge_weight),
            "src_ptr": torch.from_numpy(self.src_ptr),
            "src_order": torch.from_numpy(self.src_order),
        }

    def to_torch(self, device: torch.device | str = "cpu") -> Block:
        """The block as tensors on ``device`` (see ``block_from_tensors``)."""
        return block_from_tensors(self.to_tensors(), device)


def block_from_tensors(tensors: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> Block:
    """A ``model.Block`` on ``device`` from ``BlockArrays.to_tensors()``.

    The block carries the sparse CSR matrix of pooling weights and its transpose, for the fused forward
    of every pooling and a fast gradient of the weighted sum.
    """
    t = {name: value.to(device, non_blocking=True) for name, value in tensors.items()}
    num_src, num_dst = (int(v) for v in tensors["sizes"])
    src, dst, weight = t["src_index"], t["dst_index"], t["edge_weight"]
    adj = csr_matrix(t["dst_ptr"], src, weight, (num_dst, num_src))
    order = t["src_order"]
    adj_transpose = csr_matrix(t["src_ptr"], dst[order], weight[order], (num_src, num_dst))
    return Block(num_src, num_dst, adj, adj_transpose)


def neighborhood_edges(
    rows: np.ndarray, neighbors: np.ndarray, weights: np.ndarray, pooling: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges into ``rows`` in CSR order, with pooling weights.

    Args:
        rows: (N,) row indices of the target pins.
        neighbors: (P, T) int32 neighbor rows, -1 padding.
        weights: (P, T) float32 visit weights.
        pooling: see ``pooling_weights``.

    Returns:
        dst_ptr (N + 1,) int64, src_rows (E,) int64 global neighbor rows, edge_weight (E,) float32.
    """
    nbr = neighbors[rows]  # (N, T)
    mask = nbr >= 0
    edge_weight = pooling_weights(weights[rows], mask, pooling)[mask]
    dst_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(mask.sum(axis=1), out=dst_ptr[1:])
    return dst_ptr, nbr[mask].astype(np.int64), edge_weight


def build_blocks(
    targets: np.ndarray, neighbors: np.ndarray, weights: np.ndarray, num_layers: int, pooling: str
) -> tuple[np.ndarray, list[BlockArrays]]:
    """The K-hop computation graph of ``targets`` (Algorithm 2's minibatch neighborhoods).

    Args:
        targets: (B,) unique row indices of the pins to embed.
        neighbors: (P, T) int32 neighbor rows, -1 padding.
        weights: (P, T) float32 visit weights.
        num_layers: K.
        pooling: see ``pooling_weights``.

    Returns:
        input_rows: (N_0,) global rows whose features feed the first block (targets first).
        blocks: K ``BlockArrays``, input side first; the last one's dst nodes are ``targets``.
    """
    dst = np.asarray(targets, dtype=np.int64)
    if len(np.unique(dst)) != len(dst):
        raise ValueError("build_blocks needs unique targets")
    lookup = np.full(neighbors.shape[0], -1, dtype=np.int64)  # global row -> local src index
    blocks: list[BlockArrays] = []
    for _ in range(num_layers):
        dst_ptr, src_rows, edge_weight = neighborhood_edges(dst, neighbors, weights, pooling)
        lookup[dst] = np.arange(len(dst))
        new = np.unique(src_rows[lookup[src_rows] < 0])
        lookup[new] = np.arange(len(dst), len(dst) + len(new))
        src_nodes = np.concatenate([dst, new])
        src_index = lookup[src_rows]
        # No reset needed: the next layer's dst nodes are these src nodes, with these same local indices.
        src_order = np.argsort(src_index, kind="stable")
        src_ptr = np.zeros(len(src_nodes) + 1, dtype=np.int64)
        np.cumsum(np.bincount(src_index, minlength=len(src_nodes)), out=src_ptr[1:])
        blocks.append(BlockArrays(len(src_nodes), len(dst), dst_ptr, src_index, edge_weight, src_ptr, src_order))
        dst = src_nodes
    blocks.reverse()
    return dst, blocks


def hard_negatives_for_epoch(epoch: int, max_hard_negatives: int) -> int:
    """The curriculum of the paper (Sec. 3.3): none in epoch 1, ``n - 1`` per query in epoch ``n``, capped.

    Args:
        epoch: 1-based epoch number.
        max_hard_negatives: the cap (0 disables hard negatives).
    """
    if epoch < 1:
        raise ValueError(f"epochs are numbered from 1, got {epoch}")
    return max(0, min(epoch - 1, max_hard_negatives))


def sample_hard_negatives(
    rng: np.random.Generator, queries: np.ndarray, pool: np.ndarray, num: int
) -> np.ndarray:
    """Draw ``num`` hard negatives per query from its PPR-band pool, without replacement where possible.

    Args:
        queries: (B,) query rows.
        pool: (P, H) int32 hard-negative rows per pin, -1 padding.
        num: how many per query.

    Returns:
        (B, num) int64 rows, -1 where a query's pool has fewer than ``num`` pins.
    """
    out = np.full((len(queries), num), -1, dtype=np.int64)
    if num == 0 or pool.shape[1] == 0:
        return out
    candidates = pool[queries]  # (B, H)
    valid = candidates >= 0
    # Random keys, invalid slots last: the first `num` columns of the argsort are a uniform sample.
    keys = np.where(valid, rng.random(candidates.shape), 2.0)
    order = np.argsort(keys, axis=1)[:, :num]
    picked = np.take_along_axis(candidates, order, axis=1)
    take = min(num, pool.shape[1])
    out[:, :take] = np.where(np.take_along_axis(valid, order, axis=1), picked, -1)
    return out
