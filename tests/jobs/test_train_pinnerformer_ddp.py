"""``jobs.train_pinnerformer`` under torchrun: 2 CPU processes (gloo, one torch thread each) train on the tiny
lake of ``test_pinnerformer_jobs`` against a real MLflow registry (SQLite); rank 0 alone registers.

The processes are started with ``torch.multiprocessing.spawn`` and given the variables torchrun sets
(``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), then call ``main`` as
``torchrun --nproc_per_node 2 -m jobs.train_pinnerformer`` would.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from mlflow.tracking import MlflowClient

from embeddings.pinnerformer.model_dir import read_model_metadata
from jobs.train_pinnerformer import main
from tests.jobs.test_pinnerformer_jobs import DS, write_tiny_lake

pytestmark = [pytest.mark.slow, pytest.mark.mlflow]

WORLD = 2
FLAGS = ["--ds", DS.isoformat(), "--device", "cpu", "--num-threads", "1", "--embedding-dim", "8", "--model-dim", "8",
         "--num-layers", "1", "--num-heads", "2", "--ff-dim", "16", "--max-length", "16", "--batch-size", "8",
         "--num-random-negatives", "16", "--num-positions", "4", "--num-epochs", "2", "--patience", "3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, argv: list[str], port: int, out_dir: str) -> None:
    """One torchrun process: ``main(argv)``; what it returned (or raised) goes to ``rank<r>.json``."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank),
                      LOCAL_RANK=str(rank), EMB_VAR_DIR=str(Path(out_dir) / "var"),
                      EMB_MLFLOW_ARTIFACTS=str(Path(out_dir) / "artifacts"))
    try:
        result = main(argv)
        weights = hashlib.sha256()
        if result.model is not None:
            for name, value in sorted(result.model.state_dict().items()):
                weights.update(name.encode() + value.detach().cpu().numpy().tobytes())
        out = {"registered_version": result.registered_version, "run_id": result.run_id,
               "world_size": result.world_size, "epochs": len(result.history), "weights": weights.hexdigest(),
               "error": None}
    except Exception as exc:  # noqa: BLE001 - reported to the test
        out = {"error": f"{type(exc).__name__}: {exc}"}
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(out))


def _launch(argv: list[str], out_dir: Path, timeout_s: float = 120.0) -> list[dict]:
    """Run ``main(argv)`` on WORLD processes; fail (and end them) if they have not all finished in time."""
    for rank in range(WORLD):
        (out_dir / f"rank{rank}.json").unlink(missing_ok=True)
    context = mp.spawn(_worker, args=(argv, _free_port(), str(out_dir)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD} processes did not finish within {timeout_s} s (a rank waiting for another?)")
    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(WORLD)]


def test_two_processes_train_and_rank_0_alone_registers(lake, lake_uri, tmp_path):
    write_tiny_lake(lake)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model_dir = tmp_path / "model"
    argv = [*FLAGS, "--lake-uri", lake_uri, "--model-dir", str(model_dir), "--tracking-uri", tracking_uri]

    first, second = _launch(argv, tmp_path)
    assert first["error"] is None and second["error"] is None, (first, second)
    assert first["registered_version"] == "1" and first["world_size"] == 2
    assert second["registered_version"] is None and second["run_id"] is None and second["world_size"] == 2
    assert first["epochs"] == second["epochs"] == 2
    assert first["weights"] == second["weights"]  # DDP: every process ends with the weights rank 0 registered
    client = MlflowClient(tracking_uri)
    versions = client.search_model_versions("name = 'pinnerformer'")
    assert [str(v.version) for v in versions] == ["1"]
    params = client.get_run(first["run_id"]).data.params
    assert params["world_size"] == "2" and params["training.batch_size"] == "8"  # per process
    _, metadata = read_model_metadata(model_dir)
    assert metadata["world_size"] == 2
    assert len(client.search_runs([client.get_experiment_by_name("pinnerformer").experiment_id])) == 1

    # A rerun finds the fingerprint on rank 0, and every process skips training together.
    first, second = _launch(argv, tmp_path)
    assert first["error"] is None and second["error"] is None, (first, second)
    assert first["registered_version"] == "1" and first["epochs"] == 0
    assert second["registered_version"] is None and second["epochs"] == 0
    assert [str(v.version) for v in client.search_model_versions("name = 'pinnerformer'")] == ["1"]


def test_an_unreachable_store_stops_every_process_before_training(lake, lake_uri, tmp_path):
    write_tiny_lake(lake)
    model_dir = tmp_path / "model"
    argv = [*FLAGS, "--lake-uri", lake_uri, "--model-dir", str(model_dir), "--tracking-uri", "http://127.0.0.1:9/"]
    first, second = _launch(argv, tmp_path)
    assert first["error"].startswith("TrackingStoreUnavailable: MLflow tracking store http://127.0.0.1:9/ is "
                                     "unreachable")
    assert second["error"].startswith("RuntimeError: connecting to the MLflow store failed on rank(s) [0] of 2")
    assert not model_dir.exists()
