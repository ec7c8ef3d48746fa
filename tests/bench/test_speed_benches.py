"""The speed benches run on CPU and are ready for a GPU machine: device naming, nvidia-smi parsing, the
PinnerFormer speed bench end to end on a tiny random world, and imports a GPU machine's Python can satisfy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.devices import GpuMonitor, describe_device, parse_gpu_samples, summarize_gpu_samples
from bench.pinnerformer_speed import SHAPES, random_events, sequences
from embeddings.pinsage.training import resolve_device

REPO = Path(__file__).resolve().parents[2]


def test_parse_gpu_samples_reads_the_csv_and_skips_what_is_not_two_numbers() -> None:
    text = "87, 10240\n 92 ,10300\n[N/A], 10300\n100\n"
    assert parse_gpu_samples(text) == [(87.0, 10240.0), (92.0, 10300.0)]
    assert summarize_gpu_samples(parse_gpu_samples(text)) == {
        "gpu_samples": 2, "utilization_mean_pct": 89.5, "utilization_max_pct": 92.0, "memory_used_max_mib": 10300.0}
    assert summarize_gpu_samples([]) == {"gpu_samples": 0, "utilization": "no nvidia-smi samples"}


def test_cpu_device_is_named_and_monitored_without_inventing_a_utilization() -> None:
    device = resolve_device("cpu")
    assert describe_device(device).startswith("cpu: ")
    with GpuMonitor(device) as gpu:
        sum(range(1000))
    assert gpu.summary() == {"utilization": "cpu run"}
    assert gpu.seconds > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_cuda_without_one_fails_clearly() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_random_timelines_give_every_user_inputs_and_future_labels() -> None:
    events = random_events(50, 500, seed=0)
    assert 50 * 20 <= len(events["users"]) <= 50 * 400
    assert events["pins"].min() >= 0 and events["pins"].max() < 500
    train_seqs = sequences(events, 500, SHAPES["nightly"].max_length, serve=False)
    serve_seqs = sequences(events, 500, SHAPES["nightly"].max_length, serve=True)
    assert serve_seqs.num_users == 50
    assert train_seqs.num_users == 50  # 20+ actions over 56 days: every user has input before the cutoff
    assert train_seqs.counts.num_out_of_order == 0  # timelines come in time order, like build_sequences writes


@pytest.mark.slow
def test_pinnerformer_speed_bench_runs_end_to_end_on_cpu(capsys) -> None:
    from bench.pinnerformer_speed import main

    metrics = main(["--users", "60", "--pins", "400", "--steps", "2", "--warmup-steps", "1", "--batch-size", "16",
                    "--shapes", "nightly", "--threads", "1", "--no-record"])
    r = metrics["nightly"]
    assert r["training"]["steps"] == 2 and r["training"]["users_per_s"] > 0 and r["training"]["queries"] > 0
    assert 0 < r["training"]["batch_build_share"] < 1
    assert r["inference_users"]["users"] == 60 and r["inference_pins"]["pins"] == 400
    assert "device: cpu: 1 torch threads" in capsys.readouterr().out


def test_speed_benches_import_nothing_a_gpu_machine_lacks() -> None:
    """The GPU machine's Python has torch, torch-geometric, numpy, pyarrow, scipy, pandas, not our services."""
    code = ("import sys, json; import bench.pinsage_speed, bench.pinnerformer_speed; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'mlflow', 'pyspark', 'faiss', 'airflow', 'sklearn', 'matplotlib', 'psycopg2', 'redis'})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow
def test_device_check_script_runs_its_steps_on_cpu(tmp_path: Path) -> None:
    """bench/device_check.sh, as a GPU session would run it, on tiny inputs and the CPU: both records land in OUT."""
    out = tmp_path / "out"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DEVICE": "cpu", "QUICK": "1", "OUT": str(out),
           "PYTHON": sys.executable, "HOME": str(tmp_path)}
    run = subprocess.run(["bash", str(REPO / "bench" / "device_check.sh")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    pinsage = json.loads((out / "pinsage_speed.json").read_text())
    pinnerformer = json.loads((out / "pinnerformer_speed.json").read_text())
    assert pinsage["machine"]["device"].startswith("cpu: ") and pinsage["metrics"]["inference_1m"]["pins"] == 5000
    assert pinnerformer["config"]["device"].startswith("cpu: ")
    entries = (out / "BENCHMARKS_entries.md").read_text()
    assert "PinSage speed" in entries and "pinnerformer_speed" in entries
    assert "torch" in (out / "environment.txt").read_text()
