"""Embedding every pin without repeated computation (the paper's Sec. 3.4, "Node embeddings via MapReduce").

Per-pin computation embeds each target through its own K-hop computation graph, so a pin that is a
neighbor of many targets has its lower layers recomputed for each of them (T^K work per target).
``embed_all`` instead goes layer by layer over all pins: every pin's neighbor message ``ReLU(Q h + q)``
is computed once, then every pin's layer output from its neighbors' messages (a sparse matrix product),
then the next layer from those outputs. Pins are processed in chunks of ``chunk_size`` targets, so
memory is a few (P, hidden) arrays plus one chunk's edges. ``embed_per_pin`` is the per-target
reference: the same model through ``build_blocks``, one pin at a time.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from embeddings.pinsage.model import PinSage, csr_matrix
from embeddings.pinsage.sampling import build_blocks, neighborhood_edges

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 16384
# Max pooling gathers a (chunk * T, hidden) array of messages: cap it at this many floats (512 MiB).
MAX_GATHERED_FLOATS = 1 << 27


class _Progress:
    """Logs done/total, rate and ETA at most every ``every_s`` seconds."""

    def __init__(self, what: str, total: int, every_s: float = 10.0) -> None:
        self.what, self.total, self.every_s = what, total, every_s
        self.started = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        log.info("%s: %d/%d (%.0f/s, ETA %.0f s)", self.what, done, self.total, rate, eta)


def _chunks(num: int, chunk_size: int):
    for start in range(0, num, chunk_size):
        yield start, min(start + chunk_size, num)


def _check_id_rows(model: PinSage, features: np.ndarray) -> None:
    """A model with id vectors embeds only the feature matrix it was trained on (its rows are the ids)."""
    if model.config.num_ids and features.shape[0] != model.config.num_ids:
        raise ValueError(f"the model learned id vectors for {model.config.num_ids} pins but got features of "
                         f"{features.shape[0]} pins: it embeds only the pins it was trained on, in the same rows")


@torch.no_grad()
def embed_all(
    model: PinSage,
    features: np.ndarray,
    neighbors: np.ndarray,
    weights: np.ndarray,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    device: torch.device | str = "cpu",
    log_every_s: float = 10.0,
) -> np.ndarray:
    """Embed every pin, layer by layer.

    Args:
        model: a PinSage model (switched to eval mode here).
        features: (P, in_dim) float32.
        neighbors: (P, T) int32 neighbor rows, -1 padding.
        weights: (P, T) float32 visit weights.
        chunk_size: targets per chunk (bounds memory: about chunk_size * T edges at a time; with max
            pooling also at most ``MAX_GATHERED_FLOATS`` gathered message values).
        device: where to compute.
        log_every_s: progress logging interval.

    Returns:
        (P, embedding_dim) float32 unit-norm embeddings, row-aligned with ``features``.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if features.shape[1] != model.config.in_dim:
        raise ValueError(f"features have {features.shape[1]} columns but the model expects in_dim="
                         f"{model.config.in_dim}")
    _check_id_rows(model, features)
    model.eval()
    device = torch.device(device)
    num_pins = features.shape[0]
    pooling = model.config.pooling
    if pooling == "max":
        chunk_size = min(chunk_size, max(1, MAX_GATHERED_FLOATS // (neighbors.shape[1] * model.config.hidden_dim)))
    h = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
    h = model.inputs(h, torch.arange(num_pins, device=device))  # the features, with id vectors if it has them
    for layer, conv in enumerate(model.convs, start=1):
        progress = _Progress(f"embed_all layer {layer}/{len(model.convs)} (pins)", num_pins, log_every_s)
        # Every pin's neighbor message, once (never once per target that has it as a neighbor).
        messages = torch.empty((num_pins, conv.neighbor_linear.out_features), dtype=h.dtype, device=device)
        for a, b in _chunks(num_pins, chunk_size):
            messages[a:b] = conv.neighbor_messages(h[a:b])
        out = torch.empty((num_pins, conv.update_linear.out_features), dtype=h.dtype, device=device)
        for a, b in _chunks(num_pins, chunk_size):
            dst_ptr, src_rows, edge_weight = neighborhood_edges(np.arange(a, b), neighbors, weights, pooling)
            src = torch.from_numpy(src_rows).to(device)
            adj = csr_matrix(torch.from_numpy(dst_ptr).to(device), src,
                             torch.from_numpy(edge_weight).to(device), (b - a, num_pins))
            pooled = conv.pool(messages, adj, None, num_dst=b - a)
            out[a:b] = conv.combine(h[a:b], pooled)
            progress.update(b)
        del messages
        h = out
    result = np.empty((num_pins, model.config.embedding_dim), dtype=np.float32)
    for a, b in _chunks(num_pins, chunk_size):
        result[a:b] = model.head(h[a:b]).float().cpu().numpy()
    return result


@torch.no_grad()
def embed_per_pin(
    model: PinSage,
    rows: np.ndarray,
    features: np.ndarray,
    neighbors: np.ndarray,
    weights: np.ndarray,
    device: torch.device | str = "cpu",
    targets_per_graph: int = 1,
) -> np.ndarray:
    """The reference: embed ``rows`` through their own computation graphs (``build_blocks``).

    With ``targets_per_graph=1`` every pin gets its own K-hop graph (what ``embed_all`` must equal);
    larger values embed minibatches of targets (how training computes embeddings).

    Returns:
        (len(rows), embedding_dim) float32.
    """
    _check_id_rows(model, features)
    model.eval()
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), model.config.embedding_dim), dtype=np.float32)
    for a, b in _chunks(len(rows), targets_per_graph):
        targets, inverse = np.unique(rows[a:b], return_inverse=True)
        input_rows, blocks = build_blocks(targets, neighbors, weights, len(model.convs), model.config.pooling)
        x = torch.from_numpy(features[input_rows]).to(device)
        ids = torch.from_numpy(input_rows.astype(np.int64)).to(device)
        z = model(x, [blk.to_torch(device) for blk in blocks], ids)
        out[a:b] = z.float().cpu().numpy()[inverse]
    return out
