"""infra/local/env.sh: the embedded default environment, sourced once or twice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ENV_SH = Path(__file__).resolve().parents[2] / "infra" / "local" / "env.sh"


def sourced(times: int) -> dict[str, str]:
    script = "; ".join([f"source {ENV_SH}"] * times) + "; env -0"
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def test_spark_connection_is_valid_json_even_when_sourced_twice():
    once, twice = sourced(1), sourced(2)
    for env in (once, twice):
        assert json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"]) == {"conn_type": "spark", "host": "local[*]"}
    for name in ("EMB_VAR_DIR", "EMB_LAKE_URI", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME", "PYSPARK_PYTHON"):
        assert once[name] == twice[name]
    assert twice["MLFLOW_TRACKING_URI"].startswith("sqlite:///")
