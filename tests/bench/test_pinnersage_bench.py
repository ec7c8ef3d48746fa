"""bench/pinnersage.py's choice of the synthetic world: `make demo`'s lake, or the 90-day world built once
by the nightly stages (reused when complete; a failing stage names its command and log)."""

from __future__ import annotations

import argparse
import datetime as dt

import pandas as pd
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


def _paired(diffs: dict[str, tuple[float, float]]):
    """A literal ``paired_comparison`` table: (diff, ci_low) per baseline, for the groups "all" and "3"."""
    return pd.DataFrame([{"group": g, "other": o, "users": 10, "reference_mean": 0.12, "other_mean": 0.12 - d,
                          "diff": d, "ci_low": low, "ci_high": d + 0.01, "beats": low > 0}
                         for g in ("all", "3") for o, (d, low) in diffs.items()])


def test_the_bar_is_on_the_means_and_beyond_noise_separately():
    ablation = pd.DataFrame({"method": ["pinnersage", "last_pin", "decayed_average"],
                             "test_recall@50": [0.12, 0.09, 0.11]})
    ahead_by_noise = bench.quality_bars(ablation, _paired({"last_pin": (0.03, 0.02),
                                                           "decayed_average": (0.01, -0.005)}))
    assert list(ahead_by_noise.values()) == [True, False]
    assert bench._verdict(ahead_by_noise) == "on the means only, not beyond noise"
    beyond = bench.quality_bars(ablation, _paired({"last_pin": (0.03, 0.02), "decayed_average": (0.01, 0.002)}))
    assert bench._verdict(beyond) == "yes, beyond noise"
    behind = ablation.assign(**{"test_recall@50": [0.10, 0.09, 0.11]})
    behind_paired = _paired({"last_pin": (0.01, 0.0), "decayed_average": (-0.01, -0.02)})
    assert bench._verdict(bench.quality_bars(behind, behind_paired)) == "no"


def test_the_paired_table_has_a_row_per_group_and_a_column_per_baseline():
    text = bench.format_paired(_paired({"last_pin": (0.03, 0.02), "decayed_average": (-0.01, -0.02)}),
                               coverage={"all": 0.9, "3": 1.0})
    lines = text.splitlines()
    assert lines[0] == ("| planted interests | test users | 3 medoids | minus last_pin [95% CI] | "
                        "minus decayed_average [95% CI] | targets in their top 3 topics |")
    assert lines[2] == "| all | 10 | 12.00 | +3.00 [+2.00, +4.00] (vs 9.00) | -1.00 [-2.00, +0.00] (vs 13.00) | 0.900 |"
    assert lines[3].startswith("| 3 | 10 |") and len(lines) == 4


def test_the_paired_table_of_public_data_is_headed_by_users_not_planted_interests():
    paired = _paired({"last_pin": (0.03, 0.02)})
    text = bench.format_paired(paired[paired["group"] == "all"], group_label="users")
    assert text.splitlines()[0].startswith("| users | test users | 3 medoids |") and len(text.splitlines()) == 3
