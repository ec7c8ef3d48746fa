"""PinSage speed: training throughput and data-wait share, layer-wise vs per-pin inference, 1M-pin inference.

    .venv/bin/python bench/pinsage_speed.py            # everything (the 1M-pin run takes a few minutes)
    .venv/bin/python bench/pinsage_speed.py --skip-1m  # training and the 10k-pin comparison only
    python3 bench/pinsage_speed.py --device cuda       # on a GPU: pinsage_speed_cuda.json, utilization sampled

Inputs are random (speed does not depend on what the weights learned): Gaussian 256-d features, a random
neighbor table with T=50 neighbors per pin and random visit weights, random positive pairs. A random
neighbor table is a worst case for locality (a minibatch's 2-hop graph touches most pins). Prints the
numbers, writes bench/results/pinsage_speed.json (``pinsage_speed_cuda.json`` with ``--device cuda``) and
appends a dated entry to docs/BENCHMARKS.md. On CUDA the training forward passes run under bf16 autocast (the
library's rule) and ``nvidia-smi`` is sampled while each phase runs (``bench/devices.py``). Needs numpy,
pyarrow, scipy, torch and torch-geometric only, so it runs under a GPU machine's own Python.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.devices import GpuMonitor, describe_device  # noqa: E402
from embeddings.data.schemas import PIN_FEATURES, PPR_NEIGHBORS  # noqa: E402
from embeddings.lake import Lake, code_version  # noqa: E402
from embeddings.pinsage.data import PinGraph, PositivePairs  # noqa: E402
from embeddings.pinsage.inference import embed_all, embed_per_pin  # noqa: E402
from embeddings.pinsage.model import PinSageConfig, build_model  # noqa: E402
from embeddings.pinsage.model_dir import save_model_dir  # noqa: E402
from embeddings.pinsage.training import TrainingOptions, resolve_device, train  # noqa: E402
from jobs.infer_pinsage import InferPinSageConfig  # noqa: E402
from jobs.infer_pinsage import run as infer_run  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "pinsage_speed.json"
BENCHMARKS_MD = REPO_ROOT / "docs" / "BENCHMARKS.md"
FEATURE_DIM, T, HIDDEN, EMBEDDING = 256, 50, 256, 256
log = logging.getLogger("bench.pinsage_speed")


def random_graph(num_pins: int, seed: int, hard_pool: int = 0) -> PinGraph:
    rng = np.random.default_rng(seed)
    neighbors = rng.integers(0, num_pins - 1, (num_pins, T), dtype=np.int32)
    neighbors += neighbors >= np.arange(num_pins, dtype=np.int32)[:, None]  # no self-loops
    weights = rng.random((num_pins, T), dtype=np.float32)
    weights /= weights.sum(axis=1, keepdims=True)
    features = rng.standard_normal((num_pins, FEATURE_DIM), dtype=np.float32)
    hard = rng.integers(0, num_pins, (num_pins, hard_pool), dtype=np.int32)
    return PinGraph(np.arange(num_pins, dtype=np.int64), features, neighbors, weights, hard)


def model_config() -> PinSageConfig:
    return PinSageConfig(in_dim=FEATURE_DIM, hidden_dim=HIDDEN, embedding_dim=EMBEDDING, num_neighbors=T)


def bench_training(num_pins: int, steps: int, threads: int, device: torch.device) -> dict:
    """Examples/s and data-wait share over ``steps`` steps of epoch 1, with and without a loader worker."""
    graph = random_graph(num_pins, seed=1, hard_pool=16)
    rng = np.random.default_rng(2)
    pairs = PositivePairs(rng.integers(0, num_pins, (200_000, 2)), rng.integers(0, num_pins, (100, 2)))
    out = {}
    torch.set_num_threads(threads)
    if device.type == "cuda":  # untimed steps first: CUDA context, allocator and kernels warm up
        train(build_model(model_config()), graph, pairs, TrainingOptions(batch_size=512, num_shared_negatives=500,
                                                                         max_steps=2), device)
    for workers in (1, 0):
        options = TrainingOptions(batch_size=512, num_shared_negatives=500, num_workers=workers, max_steps=steps,
                                  log_every_s=30)
        with GpuMonitor(device) as gpu:
            result = train(build_model(model_config()), graph, pairs, options, device)
        out[f"workers={workers}"] = {
            "examples_per_s": round(result.examples_per_s, 1),
            "data_wait_share": round(result.data_wait_share, 4),
            "steps": result.steps,
            "seconds": round(result.train_seconds, 2),
            "gpu": gpu.summary(),
        }
        log.info("training, %d loader worker(s): %s", workers, out[f"workers={workers}"])
    return out


def bench_layerwise_vs_per_pin(num_pins: int, per_pin_sample: int, device: torch.device) -> dict:
    graph = random_graph(num_pins, seed=3)
    torch.manual_seed(0)
    model = build_model(model_config()).eval().to(device)
    torch.set_num_threads(2)
    if device.type == "cuda":  # one untimed pass: CUDA context, allocator and kernels warm up
        embed_all(model, graph.features, graph.neighbors, graph.weights, device=device)
    with GpuMonitor(device) as gpu:
        layerwise = embed_all(model, graph.features, graph.neighbors, graph.weights, device=device)
    layerwise_s = gpu.seconds
    rows = np.random.default_rng(4).choice(num_pins, per_pin_sample, replace=False)
    per_pin = {}
    for threads in (1, 2):  # small per-pin graphs may run faster on one thread: take the baseline's best
        torch.set_num_threads(threads)
        started = time.perf_counter()
        reference = embed_per_pin(model, rows, graph.features, graph.neighbors, graph.weights, device=device)
        per_pin[threads] = (time.perf_counter() - started) / len(rows)
    torch.set_num_threads(2)
    started = time.perf_counter()
    minibatch = embed_per_pin(model, rows, graph.features, graph.neighbors, graph.weights, targets_per_graph=512,
                              device=device)
    minibatch_s = (time.perf_counter() - started) / len(rows)
    best_per_pin = min(per_pin.values())
    layerwise_per_pin = layerwise_s / num_pins
    result = {
        "layerwise_seconds_all_pins": round(layerwise_s, 3),
        "layerwise_ms_per_pin": round(1e3 * layerwise_per_pin, 4),
        "per_pin_ms_per_pin_1_thread": round(1e3 * per_pin[1], 3),
        "per_pin_ms_per_pin_2_threads": round(1e3 * per_pin[2], 3),
        "per_pin_sample": per_pin_sample,
        "speedup_vs_per_pin": round(best_per_pin / layerwise_per_pin, 1),
        "minibatch_512_targets_ms_per_pin": round(1e3 * minibatch_s, 4),
        "speedup_vs_minibatch_512": round(minibatch_s / layerwise_per_pin, 1),
        "max_abs_diff_vs_per_pin": float(np.abs(layerwise[rows] - reference).max()),
        "max_abs_diff_vs_minibatch": float(np.abs(layerwise[rows] - minibatch).max()),
        "gpu": gpu.summary(),
    }
    log.info("layer-wise vs per-pin on %d pins: %s", num_pins, result)
    return result


def write_random_lake(lake: Lake, ds: dt.date, graph: PinGraph) -> None:
    """pin_features and ppr_neighbors partitions for ``graph`` (pin ids = rows)."""
    num_pins = graph.num_pins
    features = pa.FixedSizeListArray.from_arrays(pa.array(graph.features.reshape(-1)), FEATURE_DIM)
    lake.write(PIN_FEATURES, pa.table({"pin_id": graph.pin_ids, "features": features.cast(pa.list_(pa.float32()))}),
               ds)
    offsets = pa.array(np.arange(0, num_pins * T + 1, T, dtype=np.int32))
    lake.write(PPR_NEIGHBORS, pa.table({
        "pin_id": graph.pin_ids,
        "neighbor_ids": pa.ListArray.from_arrays(offsets, pa.array(graph.neighbors.reshape(-1).astype(np.int64))),
        "neighbor_weights": pa.ListArray.from_arrays(offsets, pa.array(graph.weights.reshape(-1))),
        "hard_negative_ids": pa.array([[]] * num_pins, pa.list_(pa.int64())),
        "num_steps": pa.array(np.full(num_pins, 100_000, dtype=np.int64)),
    }), ds)


def bench_inference_job(num_pins: int, workdir: Path, device: torch.device) -> dict:
    """jobs.infer_pinsage.run end to end (read, embed, write) on ``num_pins`` random pins."""
    ds = dt.date(2026, 3, 31)
    lake = Lake(str(workdir / "lake"))
    started = time.perf_counter()
    graph = random_graph(num_pins, seed=5)
    write_random_lake(lake, ds, graph)
    del graph
    prepare_s = time.perf_counter() - started
    torch.manual_seed(0)
    config = model_config()
    model_dir = save_model_dir(workdir / "model", build_model(config), config)
    torch.set_num_threads(2)
    with GpuMonitor(device) as gpu:
        result = infer_run(InferPinSageConfig(lake_uri=str(workdir / "lake"), ds=ds, model_dir=str(model_dir),
                                              device=str(device)))
    out = {
        "pins": num_pins,
        "job_seconds": round(result.seconds, 1),
        "compute_seconds": round(result.compute_seconds, 1),
        "pins_per_s_compute": round(result.pins_per_s, 0),
        "pins_per_s_job": round(num_pins / result.seconds, 0),
        "input_preparation_seconds_not_counted": round(prepare_s, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "gpu": gpu.summary(),
    }
    log.info("inference job on %d pins: %s", num_pins, out)
    return out


def _machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def append_markdown(record: dict, markdown: Path = BENCHMARKS_MD) -> None:
    m = record["metrics"]
    lines = [f"\n## {record['date']} PinSage speed (`bench/pinsage_speed.py`)\n",
             f"Commit `{record['commit']}`; device {record['machine']['device']}; "
             f"{record['machine']['cpu_count']} cores ({record['machine']['cpu']}); "
             f"load average at start {record['machine']['load_average_at_start']} (shared machine). "
             f"Command: `{record['command']}`. Random inputs: {FEATURE_DIM}-d features, T={T} random neighbors, "
             f"hidden {HIDDEN}, embedding {EMBEDDING}, K=2, importance pooling.\n",
             "| measurement | value |", "|---|---|"]
    for name, values in m["training"].items():
        lines.append(f"| training, {record['dataset']['training_pins']:,} pins, batch 512, 500 shared negatives, "
                     f"{name}: examples/s | {values['examples_per_s']} |")
        lines.append(f"| training, {name}: share of step time waiting for data | {values['data_wait_share']:.1%} |")
        if "utilization_mean_pct" in values["gpu"]:
            lines.append(f"| training, {name}: GPU utilization, mean / max (nvidia-smi) | "
                         f"{values['gpu']['utilization_mean_pct']}% / {values['gpu']['utilization_max_pct']}% |")
    c = m["layerwise_vs_per_pin"]
    lines += [
        f"| layer-wise inference, {record['dataset']['comparison_pins']:,} pins: ms/pin | "
        f"{c['layerwise_ms_per_pin']} |",
        f"| per-pin computation (own 2-hop graph each, best of 1/2 threads): ms/pin | "
        f"{min(c['per_pin_ms_per_pin_1_thread'], c['per_pin_ms_per_pin_2_threads'])} |",
        f"| speed-up layer-wise vs per-pin (bar: >= 10x) | {c['speedup_vs_per_pin']}x |",
        f"| speed-up layer-wise vs minibatches of 512 targets | {c['speedup_vs_minibatch_512']}x |",
        f"| max abs difference layer-wise vs per-pin | {c['max_abs_diff_vs_per_pin']:.2e} |",
    ]
    if "inference_1m" in m:
        i = m["inference_1m"]
        lines += [
            f"| jobs.infer_pinsage on {i['pins']:,} pins, end to end (bar: <= 300 s) | {i['job_seconds']} s |",
            f"| of which embedding computation | {i['compute_seconds']} s ({i['pins_per_s_compute']:.0f} pins/s) |",
            f"| peak memory of the process | {i['peak_rss_gib']} GiB |",
        ]
    new_file = markdown == BENCHMARKS_MD and not markdown.exists()
    with markdown.open("a") as f:
        if new_file:
            f.write("# Benchmarks\n\nDated entries appended by the scripts in `bench/` (newest last). "
                    "Each names its protocol; compare numbers only within one protocol and machine.\n")
        f.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training-pins", type=int, default=20_000)
    parser.add_argument("--training-steps", type=int, default=20)
    parser.add_argument("--training-threads", type=int, default=2)
    parser.add_argument("--comparison-pins", type=int, default=10_000)
    parser.add_argument("--per-pin-sample", type=int, default=500)
    parser.add_argument("--inference-pins", type=int, default=1_000_000)
    parser.add_argument("--skip-1m", action="store_true", help="skip the end-to-end inference job")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (CUDA when present); a CUDA run is "
                        "recorded as bench/results/pinsage_speed_cuda.json, beside the CPU record")
    parser.add_argument("--no-record", action="store_true", help="print only; write no JSON or Markdown")
    parser.add_argument("--results-dir", type=Path, help="write the JSON here instead of bench/results")
    parser.add_argument("--markdown", type=Path, default=BENCHMARKS_MD,
                        help="append the entry here instead of docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = " ".join([".venv/bin/python", "bench/pinsage_speed.py", *(argv if argv is not None else sys.argv[1:])])
    machine = _machine() | {"device": describe_device(device)}
    metrics = {
        "training": bench_training(args.training_pins, args.training_steps, args.training_threads, device),
        "layerwise_vs_per_pin": bench_layerwise_vs_per_pin(args.comparison_pins, args.per_pin_sample, device),
    }
    if not args.skip_1m:
        with tempfile.TemporaryDirectory(prefix="pinsage-bench-") as workdir:
            metrics["inference_1m"] = bench_inference_job(args.inference_pins, Path(workdir), device)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    record = {
        "benchmark": "pinsage_speed",
        "commit": code_version(),  # git's, or EMB_CODE_VERSION where the tree has no .git (a GPU machine's copy)
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "command": command,
        "dataset": {"kind": "random", "feature_dim": FEATURE_DIM, "num_neighbors": T,
                    "training_pins": args.training_pins, "training_pairs": 200_000,
                    "comparison_pins": args.comparison_pins, "inference_pins": args.inference_pins},
        "protocol": {
            "training": f"train() for {args.training_steps} steps of epoch 1 on {device.type} with torch threads="
                        f"{args.training_threads}; examples/s = pairs / (step time incl. waiting for data); "
                        "data-wait share = time blocked on the loader / that time; validation excluded",
            "layerwise_vs_per_pin": "embed_all over all comparison pins (2 threads) vs embed_per_pin (each pin "
                                    "through its own 2-hop graph) on a random sample, best of 1 and 2 threads; "
                                    "time per pin",
            "inference_1m": "jobs.infer_pinsage.run end to end (read both partitions, embed, write "
                            f"pin_embeddings) on {device.type}, 2 CPU threads; writing the inputs is not counted",
            "gpu": "on CUDA, nvidia-smi utilization sampled every 100 ms during each timed phase (bench/devices.py)",
        },
        "config": {"model": model_config().to_dict(),
                   "training": {"batch_size": 512, "num_shared_negatives": 500, "loss": "max_margin"}},
        "metrics": metrics,
    }
    print(json.dumps(record, indent=2))
    if not args.no_record:
        results = (args.results_dir or RESULTS.parent) / (
            "pinsage_speed_cuda.json" if device.type == "cuda" else RESULTS.name)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(record, indent=2) + "\n")
        append_markdown(record, args.markdown)


if __name__ == "__main__":
    main()
