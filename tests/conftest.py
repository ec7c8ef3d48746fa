"""Shared fixtures. Tests never read ../shared/data; they build tiny data themselves."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# Tests never touch ./var: every location of the embedded default points into a throwaway directory,
# set before anything imports Airflow (which reads AIRFLOW_HOME once, at import).
_TEST_VAR = Path(tempfile.mkdtemp(prefix="emb-test-var-"))
atexit.register(shutil.rmtree, _TEST_VAR, ignore_errors=True)
os.environ["EMB_VAR_DIR"] = str(_TEST_VAR)
for _name in ("EMB_LAKE_URI", "EMB_INDEX_URI", "MLFLOW_TRACKING_URI", "EMB_MLFLOW_ARTIFACTS"):
    os.environ.pop(_name, None)
os.environ["AIRFLOW_HOME"] = str(_TEST_VAR / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["EMB_TASK_RETRIES"] = "0"

# Spark workers must run this interpreter (STACK_NOTES: otherwise "No module named 'pandas'").
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture
def lake_uri(tmp_path: Path) -> str:
    """An empty local lake for one test."""
    path = tmp_path / "lake"
    path.mkdir()
    return str(path)


@pytest.fixture
def lake(lake_uri: str):
    from embeddings.lake import Lake

    return Lake(lake_uri)
