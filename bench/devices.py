"""Which device a speed benchmark ran on, and how busy a CUDA GPU was while it ran.

    device = resolve_device("auto")                   # embeddings.pinsage.training's: "cuda" without one fails
    with GpuMonitor(device) as gpu:
        ...                                           # the timed work
    gpu.summary()  # {"utilization_mean_pct": ..., "utilization_max_pct": ..., "memory_used_max_mib": ..., ...}

Utilization is what ``nvidia-smi`` reports (the share of time a kernel was running), sampled every
``interval_ms`` while the block runs; on CPU, or where ``nvidia-smi`` is missing, the summary says so instead
of inventing a figure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import torch

QUERY = "utilization.gpu,memory.used"


def describe_device(device: torch.device) -> str:
    """The device in words, as a record names it: the GPU's model and memory, or the CPU's threads."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"cuda: {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
                f"torch {torch.__version__} (CUDA {torch.version.cuda})")
    return f"cpu: {torch.get_num_threads()} torch threads of {os.cpu_count()} cores, torch {torch.__version__}"


def parse_gpu_samples(text: str) -> list[tuple[float, float]]:
    """``nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits`` lines ->
    (utilization %, memory MiB) pairs; lines that are not two numbers ("[N/A]", a partial last line) are skipped."""
    samples = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2:
            continue
        try:
            samples.append((float(parts[0]), float(parts[1])))
        except ValueError:
            continue
    return samples


def summarize_gpu_samples(samples: list[tuple[float, float]]) -> dict:
    if not samples:
        return {"gpu_samples": 0, "utilization": "no nvidia-smi samples"}
    util = [u for u, _ in samples]
    return {"gpu_samples": len(samples), "utilization_mean_pct": round(sum(util) / len(util), 1),
            "utilization_max_pct": max(util), "memory_used_max_mib": max(m for _, m in samples)}


class GpuMonitor:
    """Samples ``nvidia-smi`` in the background while the ``with`` block runs (CUDA devices only)."""

    def __init__(self, device: torch.device, interval_ms: int = 100) -> None:
        self.device, self.interval_ms = device, interval_ms
        self._proc: subprocess.Popen | None = None
        self._samples: list[tuple[float, float]] = []
        self._reason = "cpu run" if device.type != "cuda" else None
        self.seconds = 0.0

    def __enter__(self) -> GpuMonitor:
        self._started = time.perf_counter()
        if self.device.type != "cuda":
            return self
        torch.cuda.reset_peak_memory_stats(self.device)
        exe = shutil.which("nvidia-smi")
        if exe is None:
            self._reason = "nvidia-smi not found"
            return self
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self._proc = subprocess.Popen(
            [exe, f"--id={index}", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits",
             f"--loop-ms={self.interval_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self._started
        if self._proc is not None:
            self._proc.terminate()
            try:
                out, _ = self._proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                out, _ = self._proc.communicate()
            self._samples = parse_gpu_samples(out)

    def summary(self) -> dict:
        if self._reason is not None:
            return {"utilization": self._reason}
        out = summarize_gpu_samples(self._samples)
        out["torch_max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20)
        return out
