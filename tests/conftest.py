"""Shared fixtures. Tests never read ../shared/data; they build tiny data themselves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

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
