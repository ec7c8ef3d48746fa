"""bench/pinnersage.py's choice of the synthetic world: `make demo`'s lake, or the 90-day world built once
by the nightly stages (reused when complete; a failing stage names its command and log)."""

from __future__ import annotations

import argparse
import datetime as dt

import pyarrow as pa
import pytest

from bench import pinnersage as bench
from embeddings.data.schemas import PIN_EMBEDDINGS
from embeddings.lake import Lake

DS = "2026-11-01"


def _args(tmp_path, **overrides) -> argparse.Namespace:
    values = dict(world="90d", world_dir=str(tmp_path / "world"), lake=str(tmp_path / "demo-lake"), ds=DS)
    values.update(overrides)
    return argparse.Namespace(**values)


def test_the_demo_world_is_the_given_lake(tmp_path):
    assert bench.world_lake(_args(tmp_path, world="demo")) == str(tmp_path / "demo-lake")


def test_a_complete_90_day_world_is_reused_without_running_a_stage(tmp_path):
    lake = Lake(str(tmp_path / "world" / "lake"))
    lake.write(PIN_EMBEDDINGS, pa.table({"pin_id": [1], "embedding": [[1.0, 0.0]], "model_version": ["pinsage/1"]},
                                        schema=PIN_EMBEDDINGS.schema), dt.date(2026, 11, 1))
    assert bench.world_lake(_args(tmp_path)) == str(tmp_path / "world" / "lake")
    assert not (tmp_path / "world" / "world-build.log").exists()


def test_a_failing_stage_names_its_command_and_log(tmp_path):
    failed = r"failed at `python -m jobs.generate_synthetic --ds 2026-13-01.*world-build.log"
    with pytest.raises(RuntimeError, match=failed):
        bench.world_lake(_args(tmp_path, ds="2026-13-01"))
    assert "2026-13-01" in (tmp_path / "world" / "world-build.log").read_text()
