"""A real MLflow store for registry tests: SQLite + local artifacts under pytest's tmp directory."""

from __future__ import annotations

import pytest

from embeddings.registry.tracking import connect


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """``(client, artifact_root)`` for one test module. MLflow's process-global tracking URI points at
    another database that must stay unused: everything goes through the client passed in."""
    root = tmp_path_factory.mktemp("mlflow")
    global_db = root / "global-must-stay-unused.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{global_db}")
        yield connect(f"sqlite:///{root / 'mlflow.db'}"), str(root / "artifacts")
    assert not global_db.exists()
