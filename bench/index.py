"""HNSW index benchmark (index issue): faiss (the published index) vs hnswlib, recall-QPS, build time, memory.

Dataset: deterministic synthetic "pin embeddings" with planted topic structure (no lake needed):

* ``num_topics`` (256) topic centres, standard Gaussian directions in R^d scaled to unit norm; topic
  popularity is a Gamma(4)-distributed prior, normalized (a few topics are ~3x the median, none is empty).
* each pin draws a primary topic from the prior and, with probability 0.3, a secondary topic (also from the
  prior; it may coincide with the primary); its weights are ``w ~ U(0.6, 0.9)`` and ``1 - w``;
* vector = normalize(sum_t w_t * centre_t + noise), noise ~ N(0, noise_scale^2 / d * I), so the expected
  noise norm is ``noise_scale`` (0.5) against a topic signal of norm ~1;
* d = 64 by default (the PinnerFormer pin tower's output), n = 1,000,000 pins with int64 ids
  ``10^9 + position``; queries are ``num_queries`` (10,000) further vectors from the same distribution, not
  indexed (held out). Every block of 100k vectors has its own seeded generator, so the data depend only on
  the seed, never on the block that a run happens to stop at.

Ground truth: the exact top-10 of each query by inner product (``faiss.IndexFlatIP``, one batch).

In one run, on the same vectors and the same thread count T (``faiss.omp_set_num_threads(T)``, hnswlib's
``num_threads=T``), with the same M and efConstruction (the nightly job's: 32, 200):

1. build: the published index by ``embeddings.index.build`` (``IndexIDMap2(IndexHNSWFlat(d, M, inner
   product))``, then its nodes renumbered for cache locality, ``reorder_for_locality``) and
   ``hnswlib.Index(space="ip")`` (``add_items`` in blocks of 100k so progress can be logged); wall seconds
   of each. The faiss index is built once with ``reorder="none"`` and kept as a third contender,
   "faiss, insertion order" (the same graph before renumbering; what the published index was before
   the reorder); a copy is renumbered, timed apart: the published index's build time is the sum, exactly
   what ``build_hnsw_index`` with the default ``reorder="rcm"`` does.
2. recall-QPS: efSearch swept over a grid (10..1024); after one untimed warm-up batch each, at each point
   every query goes in ONE batch, timed best of ``repeats`` (3), the contenders interleaved so machine noise hits all alike; recall@10 against the
   exact top-10. A library stops sweeping once its recall reaches ``stop_recall`` (0.999): further points
   cannot move the comparison. At equal recall (0.95, 0.97, 0.99, where both reach it) each library's QPS
   is interpolated between the two sweep points around the target, log-QPS linear in recall; the bar is
   faiss / hnswlib >= 0.75 at recall 0.95 for the published index (the insertion-order ratio is reported
   next to it). The ratio at equal efSearch is reported as well.
3. memory: the faiss index is written with ``faiss.write_index``; a FRESH interpreter
   (``python bench/index.py --measure-load PATH``) imports faiss and numpy, reads VmRSS, calls
   ``faiss.read_index``, reads VmRSS again: the delta is compared with the issue's formula
   ``expected_memory_bytes`` = n * (4d + 8M) * 1.1 + 16n (bar: within 10%). Reported with the on-disk size
   and faiss' own breakdown (vectors, links, offsets and levels, the id map's vector and its hash map).

Out: bench/results/index.json and an entry in docs/BENCHMARKS.md (``bench.common.record``), and the
recall-QPS plot bench/results/index_recall_qps.png. The index file goes under --work-dir (var/, ignored).

Usage: python bench/index.py [--num-pins N] [--num-queries Q] [--dim D] [--m M] [--ef-construction E]
                             [--threads T] [--quick] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import record  # noqa: E402

log = logging.getLogger("bench.index")

BLOCK = 100_000  # vectors per generated block and per hnswlib add_items call
ID_OFFSET = 1_000_000_000  # pin ids are 10^9 + position: int64 ids unlike positions, as in the lake
TARGETS = (0.95, 0.97, 0.99)
BAR_RECALL = 0.95
BAR_RATIO = 0.75
BAR_MEMORY = 0.10


@dataclass(frozen=True)
class IndexBenchConfig:
    """Sizes of the synthetic corpus and the graph / search parameters compared."""

    num_pins: int = 1_000_000
    num_queries: int = 10_000
    dim: int = 64
    num_topics: int = 256
    secondary_prob: float = 0.3
    noise_scale: float = 0.5
    m: int = 32
    ef_construction: int = 200
    k: int = 10
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    ef_grid: tuple[int, ...] = (10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
    repeats: int = 3
    stop_recall: float = 0.999
    seed: int = 0
    work_dir: str = str(REPO / "var" / "bench" / "index")

    def __post_init__(self) -> None:
        for name in ("num_pins", "num_queries", "dim", "num_topics", "m", "k", "threads", "repeats"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive (got {getattr(self, name)})")
        if self.num_pins <= self.k:
            raise ValueError(f"num_pins must exceed k={self.k} (got {self.num_pins})")
        if self.ef_construction < self.m:
            raise ValueError(f"ef_construction must be at least m={self.m} (got {self.ef_construction})")
        if not self.ef_grid or list(self.ef_grid) != sorted(set(self.ef_grid)) or self.ef_grid[0] < self.k:
            raise ValueError(f"ef_grid must be increasing, non-empty and start at >= k={self.k} (got {self.ef_grid})")
        if not 0 <= self.secondary_prob <= 1 or self.noise_scale < 0:
            raise ValueError(f"secondary_prob must be in [0, 1] and noise_scale >= 0 "
                             f"(got {self.secondary_prob}, {self.noise_scale})")


# --- data ---------------------------------------------------------------------------------------------


def topic_model(config: IndexBenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """(num_topics, d) unit-norm topic centres and (num_topics,) topic probabilities (Gamma(4) prior)."""
    rng = np.random.default_rng([config.seed, 0])
    centres = rng.standard_normal((config.num_topics, config.dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    prior = rng.gamma(4.0, size=config.num_topics)
    return centres, prior / prior.sum()


def synthetic_vectors(config: IndexBenchConfig, count: int, stream: int) -> np.ndarray:
    """(count, d) float32 unit-norm pin embeddings of the topic model; ``stream`` 1 = corpus, 2 = queries."""
    from embeddings.index.build import normalize

    centres, probs = topic_model(config)
    out = np.empty((count, config.dim), dtype=np.float32)
    for block, lo in enumerate(range(0, count, BLOCK)):
        size = min(BLOCK, count - lo)
        rng = np.random.default_rng([config.seed, stream, block])
        primary = rng.choice(config.num_topics, size=size, p=probs)
        secondary = rng.choice(config.num_topics, size=size, p=probs)
        weight = np.where(rng.random(size) < config.secondary_prob, rng.uniform(0.6, 0.9, size), 1.0)
        vectors = weight[:, None] * centres[primary] + (1.0 - weight)[:, None] * centres[secondary]
        vectors += rng.standard_normal((size, config.dim)) * (config.noise_scale / math.sqrt(config.dim))
        out[lo:lo + size] = normalize(vectors)
    return out


def exact_top_k(corpus: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) ids of each query's k largest inner products (brute force, faiss.IndexFlatIP, one batch)."""
    import faiss

    flat = faiss.IndexFlatIP(corpus.shape[1])
    flat.add(corpus)
    _, positions = flat.search(queries, k)
    return ids[positions]


# --- builds and searches ---------------------------------------------------------------------------------


def build_faiss(ids: np.ndarray, vectors: np.ndarray, config: IndexBenchConfig):
    """(published index, insertion-order index, build seconds, reorder seconds), built by the library.

    The insertion-order index is ``build_hnsw_index(reorder="none")``; the published one is a copy of it
    renumbered by ``reorder_for_locality``, which is what ``build_hnsw_index``'s default ``reorder="rcm"``
    runs after the adds.
    """
    import faiss

    from embeddings.index.build import IndexConfig, build_hnsw_index, reorder_for_locality

    start = time.perf_counter()
    plain = build_hnsw_index(ids, vectors, IndexConfig(m=config.m, ef_construction=config.ef_construction,
                                                       reorder="none"), what="faiss")
    build_s = time.perf_counter() - start
    published = faiss.deserialize_index(faiss.serialize_index(plain))
    start = time.perf_counter()
    reorder_for_locality(published)
    return published, plain, build_s, time.perf_counter() - start


def build_hnswlib(ids: np.ndarray, vectors: np.ndarray, config: IndexBenchConfig):
    """``hnswlib.Index(space="ip")`` with the same M / efConstruction / threads; returns (index, wall seconds)."""
    import hnswlib

    n, dim = vectors.shape
    start = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=config.m, ef_construction=config.ef_construction, random_seed=config.seed)
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
        index.add_items(vectors[lo:hi], ids[lo:hi], num_threads=config.threads)
        elapsed = time.perf_counter() - start
        rate = hi / elapsed if elapsed > 0 else float("inf")
        log.info("hnswlib: added %d/%d vectors (%.0f/s, ETA %.0f s)", hi, n, rate, (n - hi) / rate)
    return index, time.perf_counter() - start


def search_faiss(index, queries: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, float]:
    """(Q, k) ids and wall seconds of one batch at efSearch ``ef``."""
    from embeddings.index.build import set_ef_search

    set_ef_search(index, ef)
    start = time.perf_counter()
    _, found = index.search(queries, k)
    return found, time.perf_counter() - start


def search_hnswlib(index, queries: np.ndarray, k: int, ef: int, threads: int) -> tuple[np.ndarray, float]:
    index.set_ef(ef)
    start = time.perf_counter()
    labels, _ = index.knn_query(queries, k=k, num_threads=threads)
    return labels.astype(np.int64), time.perf_counter() - start


PLAIN = "faiss_insertion_order"
LABELS = {"faiss": "faiss, published (nodes renumbered)", PLAIN: "faiss, the same graph in insertion order"}


def sweep(faiss_index, plain_index, hnsw_index, queries: np.ndarray, exact: np.ndarray,
          config: IndexBenchConfig) -> dict[str, list[dict]]:
    """Recall@k and QPS (best of ``repeats`` one-batch runs) per efSearch, the contenders interleaved."""
    from embeddings.index.evaluate import recall_at_k

    curves: dict[str, list[dict]] = {"faiss": [], PLAIN: [], "hnswlib": []}
    searchers = {
        "faiss": lambda ef: search_faiss(faiss_index, queries, config.k, ef),
        PLAIN: lambda ef: search_faiss(plain_index, queries, config.k, ef),
        "hnswlib": lambda ef: search_hnswlib(hnsw_index, queries, config.k, ef, config.threads),
    }
    for lib in curves:  # one untimed batch each first: page the graph in, start the thread pools
        searchers[lib](config.ef_grid[0])
    for ef in config.ef_grid:
        active = [lib for lib in curves if not curves[lib] or curves[lib][-1]["recall"] < config.stop_recall]
        if not active:
            break
        seconds: dict[str, list[float]] = {lib: [] for lib in active}
        found: dict[str, np.ndarray] = {}
        for _ in range(config.repeats):
            for lib in active:
                found[lib], elapsed = searchers[lib](ef)
                seconds[lib].append(elapsed)
        for lib in active:
            point = {"ef_search": int(ef), "recall": float(recall_at_k(found[lib], exact)),
                     "qps": len(queries) / max(min(seconds[lib]), 1e-9), "seconds": seconds[lib]}
            curves[lib].append(point)
        print("  efSearch %5d: " % ef + "   ".join(
            f"{lib} r@{config.k} {curves[lib][-1]['recall']:.4f} {curves[lib][-1]['qps']:>9,.0f} q/s"
            for lib in active), flush=True)
    return curves


def qps_at_recall(curve: Sequence[dict], target: float) -> dict | None:
    """QPS at ``target`` recall: log-QPS linear in recall between the sweep points around it.

    Returns None when the curve never reaches the target; ``bounded`` is True when the first (smallest)
    efSearch already reaches it, and its QPS is then a lower bound of the QPS at the target.
    """
    for i, point in enumerate(curve):
        if point["recall"] >= target:
            if i == 0:
                return {"qps": point["qps"], "bounded": True, "between_ef": [point["ef_search"]]}
            lo = curve[i - 1]
            share = (target - lo["recall"]) / (point["recall"] - lo["recall"])
            qps = math.exp(math.log(lo["qps"]) + share * (math.log(point["qps"]) - math.log(lo["qps"])))
            return {"qps": qps, "bounded": False, "between_ef": [lo["ef_search"], point["ef_search"]]}
    return None


def compare(curves: dict[str, list[dict]], lib: str = "faiss") -> tuple[dict, list[dict]]:
    """Ratios ``lib`` / hnswlib at equal recall (per target) and at equal efSearch."""
    at_recall = {}
    for target in TARGETS:
        f, h = qps_at_recall(curves[lib], target), qps_at_recall(curves["hnswlib"], target)
        at_recall[f"{target:.2f}"] = {"faiss": f, "hnswlib": h,
                                      "ratio": f["qps"] / h["qps"] if f and h else None}
    hnsw_by_ef = {p["ef_search"]: p for p in curves["hnswlib"]}
    at_ef = [{"ef_search": p["ef_search"], "faiss_recall": p["recall"], "hnswlib_recall": hnsw_by_ef[p["ef_search"]]["recall"],
              "ratio": p["qps"] / hnsw_by_ef[p["ef_search"]]["qps"]}
             for p in curves[lib] if p["ef_search"] in hnsw_by_ef]
    return at_recall, at_ef


# --- memory ------------------------------------------------------------------------------------------------


def vm_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line in /proc/self/status (not Linux?)")


def measure_load(path: str) -> dict:
    """In THIS process (meant to be a fresh one): RSS before and after ``faiss.read_index(path)``."""
    import faiss  # noqa: F401  (imported before the first reading, as the measure says)

    before = vm_rss_bytes()
    start = time.perf_counter()
    index = faiss.read_index(path)
    load_s = time.perf_counter() - start
    after = vm_rss_bytes()
    return {"rss_before": before, "rss_after": after, "rss_delta": after - before, "load_s": load_s,
            "ntotal": int(index.ntotal)}


def measure_load_fresh(path: Path, threads: int) -> dict:
    """``measure_load`` in a fresh interpreter (``python bench/index.py --measure-load PATH``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure-load", str(path)],
                         cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"measuring the load of {path} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def faiss_breakdown(index) -> dict:
    """Bytes of each part of the loaded IndexIDMap2(IndexHNSWFlat), from faiss' own arrays.

    The id map's hash map (``rev_map``, std::unordered_map<int64, int64>) is not visible from Python: it is
    estimated at 40 bytes an entry (a 24-byte node rounded to 32 by malloc, plus one 8-byte bucket pointer).
    """
    import faiss

    from embeddings.index.build import hnsw_of

    inner = hnsw_of(index)
    graph = inner.hnsw
    n = int(index.ntotal)
    m = int(graph.nb_neighbors(1))
    levels = faiss.vector_to_array(graph.levels)  # (n,) int32: 1 + the node's top level
    level0_links = n * int(graph.nb_neighbors(0)) * 4
    all_links = int(graph.neighbors.size()) * 4
    return {
        "vectors": int(faiss.downcast_index(inner.storage).codes.size()),
        "links_level0": level0_links,
        "links_upper": all_links - level0_links,
        "upper_level_nodes": int((levels > 1).sum()),
        "max_level": int(levels.max()) - 1,
        "offsets_and_levels": int(graph.offsets.size()) * 8 + int(graph.levels.size()) * 4,
        "id_map_vector": int(faiss.downcast_index(index).id_map.size()) * 8,
        "id_map_hash_estimate": 40 * n,
        "m": m,
    }


# --- plot ---------------------------------------------------------------------------------------------------


def plot_recall_qps(curves: dict[str, list[dict]], path: Path, title: str) -> Path:
    """Recall@k (x) against queries per second (y, log) for each library, efSearch written at each point."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (lib, curve) in enumerate(curves.items()):
        recall = [p["recall"] for p in curve]
        qps = [p["qps"] for p in curve]
        ax.plot(recall, qps, marker="o", color=f"C{i}", label=LABELS.get(lib, lib))
        for p in curve:
            ax.annotate(str(p["ef_search"]), (p["recall"], p["qps"]), fontsize=6, color=f"C{i}",
                        textcoords="offset points", xytext=(3, 3))
    ax.axvline(BAR_RECALL, color="grey", linestyle="--", linewidth=1, label=f"recall {BAR_RECALL}")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (one batch)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(title, fontsize=8, wrap=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


# --- the run -------------------------------------------------------------------------------------------------


def run(config: IndexBenchConfig) -> dict:
    """Generate the data, build both indexes, sweep, measure memory; returns every figure (nothing recorded)."""
    import faiss

    from embeddings.index.build import expected_memory_bytes

    faiss.omp_set_num_threads(config.threads)
    n, d = config.num_pins, config.dim
    print(f"== data: {n:,} synthetic pins + {config.num_queries:,} held-out queries, d={d}, "
          f"{config.num_topics} topics, {config.threads} thread(s)", flush=True)
    start = time.perf_counter()
    corpus = synthetic_vectors(config, n, stream=1)
    queries = synthetic_vectors(config, config.num_queries, stream=2)
    ids = np.arange(n, dtype=np.int64) + ID_OFFSET
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    exact = exact_top_k(corpus, ids, queries, config.k)
    exact_s = time.perf_counter() - start
    print(f"  generated in {data_s:.1f} s; exact top-{config.k} in {exact_s:.1f} s", flush=True)

    print(f"== 1. build, M={config.m}, efConstruction={config.ef_construction}", flush=True)
    faiss_index, plain_index, plain_build_s, reorder_s = build_faiss(ids, corpus, config)
    faiss_build_s = plain_build_s + reorder_s
    print(f"  faiss: {faiss_build_s:.1f} s ({n / faiss_build_s:,.0f} vectors/s): {plain_build_s:.1f} s adding, "
          f"{reorder_s:.1f} s renumbering", flush=True)
    hnsw_index, hnsw_build_s = build_hnswlib(ids, corpus, config)
    print(f"  hnswlib: {hnsw_build_s:.1f} s ({n / hnsw_build_s:,.0f} vectors/s)", flush=True)

    print(f"== 2. recall-QPS sweep, {config.num_queries:,} queries in one batch, best of {config.repeats}",
          flush=True)
    curves = sweep(faiss_index, plain_index, hnsw_index, queries, exact, config)
    at_recall, at_ef = compare(curves)
    plain_at_recall, plain_at_ef = compare(curves, PLAIN)
    for target, row in at_recall.items():
        if row["ratio"] is None:
            print(f"  recall {target}: not reached by " + " and ".join(lib for lib in ("faiss", "hnswlib")
                                                                      if row[lib] is None))
        else:
            plain = plain_at_recall[target]["ratio"]
            print(f"  recall {target}: faiss {row['faiss']['qps']:,.0f} q/s, hnswlib {row['hnswlib']['qps']:,.0f} "
                  f"q/s: ratio {row['ratio']:.2f} (insertion order: "
                  + (f"{plain:.2f})" if plain is not None else "not reached)"))
    del hnsw_index, plain_index

    print("== 3. memory of a fresh process that loads the faiss index", flush=True)
    path = Path(config.work_dir) / f"faiss_hnsw_n{n}_d{d}_m{config.m}.index"
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(faiss_index, str(path))
    breakdown = faiss_breakdown(faiss_index)
    del faiss_index
    load = measure_load_fresh(path, config.threads)
    if load["ntotal"] != n:
        raise RuntimeError(f"{path} holds {load['ntotal']} vectors, expected {n}")
    formula = expected_memory_bytes(n, d, config.m)
    memory = {
        "rss_delta_bytes": load["rss_delta"],
        "formula_bytes": formula,
        "measured_over_formula": load["rss_delta"] / formula,
        "file_bytes": path.stat().st_size,
        "load_s": load["load_s"],
        "rss_before_bytes": load["rss_before"],
        "rss_after_bytes": load["rss_after"],
        "breakdown_bytes": breakdown,
        "breakdown_total_bytes": sum(v for key, v in breakdown.items()
                                     if key not in ("m", "max_level", "upper_level_nodes")),
    }
    print(f"  RSS delta {load['rss_delta'] / 2**20:,.1f} MiB vs formula {formula / 2**20:,.1f} MiB "
          f"({memory['measured_over_formula']:.3f}x); file {memory['file_bytes'] / 2**20:,.1f} MiB; faiss parts "
          f"{memory['breakdown_total_bytes'] / 2**20:,.1f} MiB (id map's hash map estimated)", flush=True)
    for key, value in breakdown.items():
        if key.startswith(("vectors", "links", "offsets", "id_map")):
            print(f"    {key:<20} {value / 2**20:9.1f} MiB  {value / n:6.1f} B/vector")

    return {
        "data_s": data_s,
        "exact_s": exact_s,
        "build_s": {"faiss": faiss_build_s, "hnswlib": hnsw_build_s, "faiss_adding": plain_build_s,
                    "faiss_reorder": reorder_s},
        "curves": curves,
        "at_recall": at_recall,
        "at_ef": at_ef,
        "insertion_order_at_recall": plain_at_recall,
        "insertion_order_at_ef": plain_at_ef,
        "memory": memory,
    }


def summarize(config: IndexBenchConfig, result: dict) -> tuple[dict, list[str]]:
    """Headline metrics and the readable lines of the BENCHMARKS.md entry."""
    bar = result["at_recall"][f"{BAR_RECALL:.2f}"]
    mem = result["memory"]
    build = result["build_s"]
    ratio = bar["ratio"]
    met_speed = ratio is not None and ratio >= BAR_RATIO
    met_memory = abs(mem["measured_over_formula"] - 1) <= BAR_MEMORY
    metrics = {
        "qps_ratio_at_recall_0.95": ratio,
        "faiss_qps_at_recall_0.95": bar["faiss"]["qps"] if bar["faiss"] else None,
        "hnswlib_qps_at_recall_0.95": bar["hnswlib"]["qps"] if bar["hnswlib"] else None,
        "speed_bar_met": met_speed,
        "qps_ratio_at_recall_0.95_insertion_order": result["insertion_order_at_recall"][f"{BAR_RECALL:.2f}"]["ratio"],
        "faiss_build_s": build["faiss"],
        "faiss_reorder_s": build["faiss_reorder"],
        "hnswlib_build_s": build["hnswlib"],
        "memory_rss_delta_bytes": mem["rss_delta_bytes"],
        "memory_formula_bytes": mem["formula_bytes"],
        "memory_measured_over_formula": mem["measured_over_formula"],
        "memory_bar_met": met_memory,
        "index_file_bytes": mem["file_bytes"],
        **{k: v for k, v in result.items() if k != "build_s"},
    }
    lines = []
    if ratio is None:
        lines.append(f"equal recall {BAR_RECALL}: not reached by both within efSearch <= {config.ef_grid[-1]}; "
                     "speed bar NOT assessed")
    else:
        f, h = bar["faiss"], bar["hnswlib"]
        lines.append(
            f"at recall@{config.k} = {BAR_RECALL}: faiss {f['qps']:,.0f} q/s (efSearch {'-'.join(map(str, f['between_ef']))}), "
            f"hnswlib {h['qps']:,.0f} q/s (efSearch {'-'.join(map(str, h['between_ef']))}): ratio {ratio:.2f} "
            f"(bar {BAR_RATIO}): {'met' if met_speed else 'NOT met'}"
            + (" (a point at the grid's lowest efSearch: a bound)" if f["bounded"] or h["bounded"] else ""))
    others = [f"{t}: {row['ratio']:.2f}" for t, row in result["at_recall"].items()
              if t != f"{BAR_RECALL:.2f}" and row["ratio"] is not None]
    if others:
        lines.append("faiss/hnswlib QPS at other equal recalls: " + ", ".join(others))
    lines.append("faiss/hnswlib QPS at equal efSearch: " + ", ".join(
        f"{p['ef_search']}: {p['ratio']:.2f}" for p in result["at_ef"]))
    lines.append("the same faiss graph in insertion order (before renumbering), / hnswlib at equal recall: " + ", ".join(
        f"{t}: {row['ratio']:.2f}" for t, row in result["insertion_order_at_recall"].items() if row["ratio"] is not None))
    lines.append(f"build ({config.threads} thread(s)): faiss {build['faiss']:.1f} s ({build['faiss_adding']:.1f} s adding, "
                 f"{build['faiss_reorder']:.1f} s renumbering), hnswlib {build['hnswlib']:.1f} s "
                 f"({build['faiss'] / build['hnswlib']:.2f}x)")
    lines.append(
        f"memory of a fresh process loading the faiss index: {mem['rss_delta_bytes'] / 2**20:,.1f} MiB RSS delta vs "
        f"formula n*(4d+8M)*1.1+16n = {mem['formula_bytes'] / 2**20:,.1f} MiB: {mem['measured_over_formula']:.3f}x "
        f"(bar within {BAR_MEMORY:.0%}): {'met' if met_memory else 'NOT met'}; on disk "
        f"{mem['file_bytes'] / 2**20:,.1f} MiB; faiss parts {mem['breakdown_total_bytes'] / 2**20:,.1f} MiB, in bytes "
        "a vector: " + ", ".join(f"{k} {v / config.num_pins:.1f}" for k, v in mem["breakdown_bytes"].items()
                                 if k.startswith(("vectors", "links", "offsets", "id_map")))
        + " (the id map's hash map is an estimate)")
    return metrics, lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-pins", type=int, default=None, help="indexed vectors (default 1,000,000; 50,000 with --quick)")
    parser.add_argument("--num-queries", type=int, default=None, help="held-out queries (default 10,000; 1,000 with --quick)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ef-grid", default=None, help="comma-separated efSearch values (default 10..1024)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per point (the best counts)")
    parser.add_argument("--work-dir", default=str(REPO / "var" / "bench" / "index"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="50k pins, 1k queries (smoke run)")
    parser.add_argument("--no-record", action="store_true", help="print the figures, write no results")
    parser.add_argument("--measure-load", metavar="PATH", help=argparse.SUPPRESS)  # the fresh-process probe
    args = parser.parse_args(argv)
    if args.measure_load:
        print(json.dumps(measure_load(args.measure_load)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    extra = {"ef_grid": tuple(int(x) for x in args.ef_grid.split(","))} if args.ef_grid else {}
    config = IndexBenchConfig(
        num_pins=args.num_pins or (50_000 if args.quick else 1_000_000),
        num_queries=args.num_queries or (1_000 if args.quick else 10_000),
        dim=args.dim, m=args.m, ef_construction=args.ef_construction, threads=args.threads,
        repeats=args.repeats, seed=args.seed, work_dir=args.work_dir, **extra,
    )
    result = run(config)
    metrics, summary = summarize(config, result)
    dataset = (f"synthetic pin embeddings: {config.num_pins:,} pins + {config.num_queries:,} held-out queries, "
               f"d={config.dim}, {config.num_topics} Gamma(4)-prior topics, secondary topic p={config.secondary_prob}, "
               f"noise scale {config.noise_scale}, seed {config.seed}")
    title = (f"{config.num_pins:,} pins, d={config.dim}, M={config.m}, efC={config.ef_construction}, "
             f"{config.threads} thread(s), {config.num_queries:,} queries in one batch")
    for line in summary:
        print("  " + line)
    if args.no_record:
        return
    plot = plot_recall_qps(result["curves"], REPO / "bench" / "results" / "index_recall_qps.png", title)
    summary.append(f"plot: `{plot.relative_to(REPO)}`")
    import faiss
    import hnswlib

    record(
        name="index",
        command="python bench/index.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        dataset=dataset,
        protocol=(f"same vectors, M={config.m}, efConstruction={config.ef_construction}, {config.threads} thread(s) "
                  f"for all (faiss {faiss.__version__} via embeddings.index.build, hnswlib "
                  f"{getattr(hnswlib, '__version__', '0.8.0')}); recall@{config.k} vs exact inner-product top-{config.k}; "
                  f"QPS: all queries in one batch, best of {config.repeats}, contenders interleaved; equal-recall QPS "
                  "interpolated log-linearly between sweep points; memory: VmRSS delta of a fresh process around "
                  "faiss.read_index"),
        config=asdict(config),
        metrics=metrics,
        summary=summary,
    )


if __name__ == "__main__":
    main()
