"""Pixie random walks on the pin-board graph: PPR neighborhoods of seed pins (numba, over a memory-mapped CSR).

A walk from seed ``s`` repeats: at pin ``p`` pick a random board of ``p``, then a random pin ``q`` of that
board (one pin->board->pin *step*); count a visit to ``q`` unless ``q == s``; then restart at ``s`` with
probability ``alpha``, else continue from ``q``. Visit counts approximate personalized PageRank (PPR)
from ``s`` (REFERENCE.md, Pixie). Each seed gets ``num_steps`` steps.

Randomness is a counter-based hash (splitmix64) of ``(seed, pin, walk, step)``: no RNG state, so the
result for a pin is identical across reruns, chunkings of the seed list, Spark partitionings and task
retries. Several walks of one seed run interleaved ("lanes") so that the processor overlaps their memory
misses; lanes take walk ids in a fixed round-robin order, so interleaving does not break determinism.

Outputs per seed: the top-T neighbors by visits (ties by pin index, which the graph job assigns in
pin_id order) with weights normalized over the top-T, and a deterministic sample of pins from a lower
rank band for PinSage's hard negatives (the band itself is never materialized).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from embeddings.graph.csr import BipartiteCSR

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_WALK = np.uint64(0xD1B54A32D192ED03)
_RESTART = np.uint64(0xA0761D6478BD642F)
_BAND = np.uint64(0xE7037ED1A0B428DB)
_MASK32 = np.uint64(0xFFFFFFFF)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53
LANES = 4


@dataclass(frozen=True)
class WalkConfig:
    """Walk settings. ``num_steps`` is the per-seed budget of pin->board->pin steps.

    The default budget, 5,000, meets the correctness bar (exact-PPR top-10 mass ratio >= 0.9 on a
    10k-pin topical graph; docs/PPR.md) and keeps 1M pins within ~20 minutes on 2 cores.
    """

    alpha: float = 0.5
    num_steps: int = 5_000
    top_t: int = 50
    band: tuple[int, int] = (200, 500)
    num_band_samples: int = 20
    seed: int = 0
    early_stop: tuple[int, int] | None = None  # (n_p, n_v): stop once n_p pins have >= n_v visits

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.num_steps <= 0:
            raise ValueError(f"num_steps must be positive, got {self.num_steps}")
        if self.top_t <= 0:
            raise ValueError(f"top_t must be positive, got {self.top_t}")
        lo, hi = self.band
        if not 0 <= lo < hi:
            raise ValueError(f"band must be (lo, hi) with 0 <= lo < hi, got {self.band}")
        if self.num_band_samples < 0:
            raise ValueError(f"num_band_samples must be >= 0, got {self.num_band_samples}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.early_stop is not None and (self.early_stop[0] <= 0 or self.early_stop[1] <= 0):
            raise ValueError(f"early_stop (n_p, n_v) must be positive, got {self.early_stop}")


@dataclass(frozen=True)
class NeighborhoodResult:
    seeds: np.ndarray  # (S,) int32 pin indices
    neighbors: np.ndarray  # (S, T) int32 pin indices, -1 padded, by visits desc, ties by index
    weights: np.ndarray  # (S, T) float32, rows sum to 1 over returned neighbors, 0 padded
    band_samples: np.ndarray  # (S, K) int32 pin indices from ranks [band[0], band[1]), -1 padded
    steps: np.ndarray  # (S,) int64 pin->board->pin steps taken


# ---- kernels -------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def _walk_seed(pin_indptr, pin_indices, board_indptr, board_indices, s, num_steps, alpha, seed,
               n_p, n_v, counts, touched):
    """Walk from pin ``s``; fills ``counts`` (visits) and ``touched`` (distinct visited pins).

    Returns (number of touched pins, steps taken). ``counts`` must be all-zero on entry.
    """
    if pin_indptr[s + 1] == pin_indptr[s]:
        return 0, 0
    base = _mix(np.uint64(seed) ^ (np.uint64(s) * _GOLDEN))
    cur = np.empty(LANES, np.int64)
    step = np.zeros(LANES, np.uint64)
    wkey = np.empty(LANES, np.uint64)
    for lane in range(LANES):
        cur[lane] = s
        wkey[lane] = _mix(base + np.uint64(lane) * _WALK)
    next_walk = LANES
    taken = 0
    n_touched = 0
    n_hit = 0
    early = n_p > 0
    while taken < num_steps:
        for lane in range(LANES):
            if taken >= num_steps:
                break
            p = cur[lane]
            h = _mix(wkey[lane] + step[lane] * _GOLDEN)
            start = pin_indptr[p]
            deg = np.uint64(pin_indptr[p + 1] - start)
            b = pin_indices[start + np.int64((h & _MASK32) % deg)]
            bstart = board_indptr[b]
            bdeg = np.uint64(board_indptr[b + 1] - bstart)
            q = board_indices[bstart + np.int64((h >> np.uint64(32)) % bdeg)]
            taken += 1
            if q != s:
                c = counts[q]
                if c == 0:
                    touched[n_touched] = q
                    n_touched += 1
                counts[q] = c + 1
                if early and c + 1 == n_v:
                    n_hit += 1
            u = np.float64(_mix(h ^ _RESTART) >> np.uint64(11)) * _TO_UNIT
            if u < alpha:
                wkey[lane] = _mix(base + np.uint64(next_walk) * _WALK)
                next_walk += 1
                step[lane] = np.uint64(0)
                cur[lane] = s
            else:
                cur[lane] = q
                step[lane] += np.uint64(1)
        if early and n_hit >= n_p:
            break
    return n_touched, taken


@njit(cache=True)
def _rank_touched(counts, touched, n_touched, num_pins):
    """Touched pins ordered by visits descending, ties by pin index. Returns (pins, visits)."""
    pins = touched[:n_touched].astype(np.int64)
    visits = np.empty(n_touched, np.int64)
    max_c = 0
    for i in range(n_touched):
        visits[i] = counts[pins[i]]
        if visits[i] > max_c:
            max_c = visits[i]
    keys = (max_c - visits) * np.int64(num_pins) + pins
    order = np.argsort(keys)
    return pins[order], visits[order]


@njit(cache=True)
def _neighborhoods_chunk(pin_indptr, pin_indices, board_indptr, board_indices, seeds, num_steps, alpha,
                         seed, n_p, n_v, top_t, band_lo, band_hi, num_band, out_nb, out_w, out_band,
                         out_steps):
    num_pins = pin_indptr.shape[0] - 1
    counts = np.zeros(num_pins, np.int32)
    touched = np.empty(min(num_steps, num_pins), np.int32)
    for i in range(seeds.shape[0]):
        s = seeds[i]
        n_touched, taken = _walk_seed(pin_indptr, pin_indices, board_indptr, board_indices, s, num_steps,
                                      alpha, seed, n_p, n_v, counts, touched)
        out_steps[i] = taken
        if n_touched == 0:
            continue
        pins, visits = _rank_touched(counts, touched, n_touched, num_pins)
        t = min(top_t, n_touched)
        total = 0.0
        for j in range(t):
            total += visits[j]
        for j in range(t):
            out_nb[i, j] = pins[j]
            out_w[i, j] = visits[j] / total
        hi = min(band_hi, n_touched)
        m = hi - band_lo
        if m > 0 and num_band > 0:
            base = _mix(np.uint64(seed) ^ (np.uint64(s) * _GOLDEN) ^ _BAND)
            keys = np.empty(m, np.uint64)
            for r in range(m):
                keys[r] = _mix(base + np.uint64(r))
            chosen = np.sort(np.argsort(keys)[: min(num_band, m)])
            for j in range(chosen.shape[0]):
                out_band[i, j] = pins[band_lo + chosen[j]]
        for j in range(n_touched):
            counts[touched[j]] = 0


@njit(cache=True, parallel=True)
def _neighborhoods_parallel(pin_indptr, pin_indices, board_indptr, board_indices, seeds, bounds, num_steps,
                            alpha, seed, n_p, n_v, top_t, band_lo, band_hi, num_band, out_nb, out_w,
                            out_band, out_steps):
    for c in prange(bounds.shape[0] - 1):
        lo, hi = bounds[c], bounds[c + 1]
        _neighborhoods_chunk(pin_indptr, pin_indices, board_indptr, board_indices, seeds[lo:hi], num_steps,
                             alpha, seed, n_p, n_v, top_t, band_lo, band_hi, num_band, out_nb[lo:hi],
                             out_w[lo:hi], out_band[lo:hi], out_steps[lo:hi])


# ---- public API -----------------------------------------------------------------------------------------
def _arrays(graph: BipartiteCSR):
    return graph.pin_indptr, graph.pin_indices, graph.board_indptr, graph.board_indices


def ppr_neighborhoods(
    graph: BipartiteCSR, seeds: np.ndarray, config: WalkConfig, num_threads: int = 1
) -> NeighborhoodResult:
    """Top-T PPR neighbors and rank-band samples of each seed pin.

    Args:
        graph: the pin-board CSR (memory-mapped is fine).
        seeds: (S,) pin indices.
        config: walk settings.
        num_threads: >1 splits the seeds across numba threads (same result as 1).

    Returns:
        NeighborhoodResult; isolated seeds (no boards) get an all -1 row and 0 steps.

    Raises:
        ValueError: a seed index outside ``0..P-1``.
    """
    seeds = np.ascontiguousarray(seeds, dtype=np.int32)
    if len(seeds) and (seeds.min() < 0 or seeds.max() >= graph.num_pins):
        raise ValueError(f"seed pin indices must be in 0..{graph.num_pins - 1}")
    num_seeds, top_t, num_band = len(seeds), config.top_t, config.num_band_samples
    out_nb = np.full((num_seeds, top_t), -1, np.int32)
    out_w = np.zeros((num_seeds, top_t), np.float32)
    out_band = np.full((num_seeds, num_band), -1, np.int32)
    out_steps = np.zeros(num_seeds, np.int64)
    n_p, n_v = config.early_stop or (0, 0)
    args = (config.num_steps, config.alpha, config.seed, n_p, n_v, top_t, config.band[0], config.band[1], num_band,
            out_nb, out_w, out_band, out_steps)
    if num_threads > 1 and num_seeds > 1:
        numba.set_num_threads(min(num_threads, numba.config.NUMBA_NUM_THREADS))
        num_chunks = min(num_seeds, num_threads * 8)
        bounds = np.linspace(0, num_seeds, num_chunks + 1).astype(np.int64)
        _neighborhoods_parallel(*_arrays(graph), seeds, bounds, *args)
    else:
        _neighborhoods_chunk(*_arrays(graph), seeds, *args)
    return NeighborhoodResult(seeds, out_nb, out_w, out_band, out_steps)


def visit_counts(graph: BipartiteCSR, seed_pin: int, config: WalkConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """All visit counts of one seed's walks: (pin indices by visits desc, visits, steps taken)."""
    counts = np.zeros(graph.num_pins, np.int32)
    touched = np.empty(min(config.num_steps, graph.num_pins), np.int32)
    n_p, n_v = config.early_stop or (0, 0)
    n, taken = _walk_seed(*_arrays(graph), np.int64(seed_pin), config.num_steps, config.alpha, config.seed,
                          n_p, n_v, counts, touched)
    pins, visits = _rank_touched(counts, touched, n, graph.num_pins)
    return pins, visits, int(taken)


def warm_up() -> None:
    """Compile the kernels (a few seconds the first time; cached on disk afterwards)."""
    graph = BipartiteCSR.from_edges(np.array([0, 1]), np.array([0, 0]), np.array([1, 2]), np.array([7]))
    ppr_neighborhoods(graph, np.array([0, 1], np.int32), WalkConfig(num_steps=10, top_t=1, band=(0, 1)))


def degree_allocation_weight(degree: np.ndarray, max_log_degree: float) -> np.ndarray:
    """Pixie's sub-linear scaling ``C_q = deg(q) * (C - log deg(q))`` (Pixie, section 3.2)."""
    degree = np.asarray(degree, dtype=np.float64)
    return degree * np.maximum(max_log_degree - np.log(np.maximum(degree, 1.0)), 0.0) + (degree > 0) * 1e-9


def max_log_degree(graph: BipartiteCSR) -> float:
    deg = graph.pin_degree()
    return float(math.log(max(int(deg.max()) if len(deg) else 1, 1))) + 1.0
