"""PinnerFormer speed: training and inference throughput on CPU or a CUDA GPU, on random timelines.

    .venv/bin/python bench/pinnerformer_speed.py                     # CPU, both shapes (a few minutes on 2 cores)
    python3 bench/pinnerformer_speed.py --device cuda --users 50000  # a GPU; the record names the device

Inputs are random (speed does not depend on what the weights learned): ``--pins`` unit-norm 256-d vectors
stand in for PinSage, ``--users`` timelines of 20-400 actions spread over 56 days (actions, surfaces and
durations roughly as in the synthetic world), split 14 days before the end, so every objective has labels.
Two shapes: ``nightly`` (the nightly job's d=64, 2 layers, M=64) and ``paper`` (``PinnerFormerConfig``'s
defaults: d=256, 2 layers, 4 heads, M=256). For each: ``train`` with the dense all-action objective and
mixed negatives for ``--steps`` steps after ``--warmup-steps`` untimed ones (users/s and queries/s: one
query is one sampled position with its target), then ``embed_users`` over every user (serve mode, the
latest M actions; on CUDA after one untimed pass) and ``embed_all_pins``. On CUDA the forward passes run
under bf16 autocast (the library's rule) and ``nvidia-smi`` is sampled while each phase runs
(``bench/devices.py``).

Writes ``bench/results/pinnerformer_speed.json`` (``pinnerformer_speed_cuda.json`` on a GPU, so neither
replaces the other) and appends an entry to docs/BENCHMARKS.md, unless ``--no-record``. Needs numpy,
pyarrow, scipy and torch only (no MLflow or Spark), so it runs under a GPU machine's own Python.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import record  # noqa: E402
from bench.devices import GpuMonitor, describe_device  # noqa: E402
from embeddings.data.schemas import ACTION_VALUES  # noqa: E402
from embeddings.pinnerformer.data import DAY_S, SequenceOptions, UserSequences, build_user_sequences  # noqa: E402
from embeddings.pinnerformer.model import PinnerFormerConfig, build_model  # noqa: E402
from embeddings.pinnerformer.training import TrainingOptions, embed_all_pins, embed_users, train  # noqa: E402
from embeddings.pinsage.training import resolve_device  # noqa: E402
from jobs.train_pinnerformer import TrainPinnerFormerConfig  # noqa: E402

log = logging.getLogger("bench.pinnerformer_speed")
PIN_DIM = 256
# The nightly job's model (its config's defaults) and the library's defaults (the paper's sizes).
SHAPES = {
    "nightly": TrainPinnerFormerConfig(lake_uri="", ds=dt.date(2026, 1, 1), model_dir="").model_config(PIN_DIM),
    "paper": PinnerFormerConfig(pin_dim=PIN_DIM),
}
SHAPE_FIELDS = ("model_dim", "embedding_dim", "num_layers", "num_heads", "ff_dim", "max_length", "pin_hidden_dim")
END_TS = 1_790_000_000  # 2026-09-21; any fixed second will do
HISTORY_DAYS, FUTURE_DAYS = 56, 14


def random_events(num_users: int, num_pins: int, seed: int) -> dict[str, np.ndarray]:
    """``num_users`` timelines of 20-400 actions over the last 56 days before ``END_TS``, Zipf-ish pins."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 401, num_users)
    n = int(lengths.sum())
    users = np.repeat(np.arange(num_users, dtype=np.int64), lengths)
    pins = np.minimum(rng.pareto(1.2, n) * num_pins / 50, num_pins - 1).astype(np.int64)
    pins = rng.permutation(num_pins)[pins]  # popular pins spread over the table
    actions = rng.choice(len(ACTION_VALUES), n, p=[0.25, 0.45, 0.25, 0.05]).astype(np.int64)
    surfaces = rng.integers(1, 4, n).astype(np.int64)
    duration = np.where(actions == ACTION_VALUES.index("save"), np.nan, rng.lognormal(np.log(10.0), 1.0, n))
    ts = END_TS - rng.integers(0, HISTORY_DAYS * DAY_S, n)
    ts = ts[np.lexsort((ts, users))]  # each user's actions in time order, as build_sequences writes them
    return {"users": users, "pins": pins, "actions": actions, "surfaces": surfaces, "duration_s": duration, "ts": ts}


def sequences(events: dict[str, np.ndarray], num_pins: int, max_length: int, *, serve: bool) -> UserSequences:
    cutoff = None if serve else END_TS - FUTURE_DAYS * DAY_S
    return build_user_sequences(events["users"], events["pins"], events["actions"], events["surfaces"],
                                events["duration_s"], events["ts"], num_pins=num_pins, now_ts=END_TS,
                                cutoff_ts=cutoff, options=SequenceOptions(max_length=max_length, window_days=28))


def shape_summary(shape: str) -> dict:
    return {name: getattr(SHAPES[shape], name) for name in SHAPE_FIELDS}


def fresh_model(shape: str, pin_table: torch.Tensor):
    model = build_model(SHAPES[shape])
    model.attach_pin_table(pin_table)
    return model


def bench_shape(shape: str, events: dict, pin_table: torch.Tensor, device: torch.device, args) -> dict:
    num_pins = pin_table.shape[0]
    m = SHAPES[shape].max_length
    train_seqs = sequences(events, num_pins, m, serve=False)
    serve_seqs = sequences(events, num_pins, m, serve=True)
    options = TrainingOptions(objective="dense_all_action", negatives="mixed", batch_size=args.batch_size,
                              num_epochs=1, log_every_s=30, seed=0)
    torch.manual_seed(0)  # untimed steps first: the allocator, autocast and kernel selection warm up
    train(fresh_model(shape, pin_table), train_seqs, replace(options, max_steps=args.warmup_steps), device=device)
    torch.manual_seed(0)
    with GpuMonitor(device) as gpu_train:
        out = train(fresh_model(shape, pin_table), train_seqs, replace(options, max_steps=args.steps), device=device)
    model = out.model.eval()
    if device.type == "cuda":  # warm the inference path once (untimed)
        embed_users(model, serve_seqs, device=device)
    with GpuMonitor(device) as gpu_users:
        users = embed_users(model, serve_seqs, device=device)
    with GpuMonitor(device) as gpu_pins:
        pins = embed_all_pins(model, device=device)
    result = {
        "config": shape_summary(shape),
        "training": {"steps": out.steps, "batch_size": args.batch_size, "users": out.users, "queries": out.queries,
                     "seconds": round(out.train_seconds, 2), "users_per_s": round(out.users_per_s, 1),
                     "queries_per_s": round(out.queries_per_s, 1),
                     "batch_build_share": round(out.batch_build_share, 4), "gpu": gpu_train.summary()},
        "inference_users": {"users": int(users.shape[0]), "max_length": m, "seconds": round(gpu_users.seconds, 2),
                            "users_per_s": round(users.shape[0] / gpu_users.seconds, 1), "gpu": gpu_users.summary()},
        "inference_pins": {"pins": int(pins.shape[0]), "seconds": round(gpu_pins.seconds, 2),
                           "pins_per_s": round(pins.shape[0] / gpu_pins.seconds, 1), "gpu": gpu_pins.summary()},
    }
    log.info("%s: %s", shape, result)
    return result


def summary_lines(metrics: dict, device_name: str) -> list[str]:
    lines = [f"device: {device_name}"]
    for shape, r in metrics.items():
        t, u, p = r["training"], r["inference_users"], r["inference_pins"]
        gpu = (f"; GPU utilization {t['gpu']['utilization_mean_pct']}% mean while training"
               if "utilization_mean_pct" in t["gpu"] else "")
        lines.append(f"{shape} (d={r['config']['model_dim']}, M={r['config']['max_length']}): training "
                     f"{t['users_per_s']:.0f} users/s, {t['queries_per_s']:.0f} queries/s ({t['steps']} steps of "
                     f"{t['batch_size']} users, {t['batch_build_share']:.0%} of step time building batches on "
                     f"the main thread){gpu}; user inference {u['users_per_s']:.0f} users/s "
                     f"({u['users']:,} users); pin tower {p['pins_per_s']:.0f} pins/s ({p['pins']:,} pins)")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (CUDA when present)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--pins", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-record", action="store_true", help="print only; write no JSON or Markdown")
    parser.add_argument("--results-dir", type=Path, help="write the JSON here instead of bench/results")
    parser.add_argument("--markdown", type=Path, help="append the entry here instead of docs/BENCHMARKS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    device_name = describe_device(device)
    started = time.perf_counter()
    events = random_events(args.users, args.pins, seed=0)
    generator = torch.Generator().manual_seed(1)
    pin_table = torch.nn.functional.normalize(torch.randn(args.pins, PIN_DIM, generator=generator), dim=1)
    log.info("%d random events for %d users over %d pins in %.1f s; device %s", len(events["users"]), args.users,
             args.pins, time.perf_counter() - started, device_name)
    metrics = {shape: bench_shape(shape, events, pin_table, device, args) for shape in args.shapes}
    lines = summary_lines(metrics, device_name)
    print("\n".join(lines))
    if not args.no_record:
        name = "pinnerformer_speed" + ("_cuda" if device.type == "cuda" else "")
        command = " ".join(["bench/pinnerformer_speed.py", *(argv if argv is not None else sys.argv[1:])])
        record(name, command, f"random: {args.users:,} users x 20-400 actions over 56 days, {args.pins:,} pins "
               f"({PIN_DIM}-d unit vectors)",
               "train(): dense all-action, mixed negatives, timed over --steps after --warmup-steps; embed_users "
               "over every user (serve mode; on CUDA after one untimed pass) and embed_all_pins",
               {"device": device_name, "threads": args.threads, "batch_size": args.batch_size, "steps": args.steps,
                "shapes": {s: shape_summary(s) for s in args.shapes}}, metrics, lines, args.results_dir, args.markdown)
    return metrics


if __name__ == "__main__":
    main()
