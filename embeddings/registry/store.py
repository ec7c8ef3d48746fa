"""The MLflow tracking and registry store: reach it (and create an embedded one) before any long work."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class TrackingStoreUnavailable(RuntimeError):
    """The MLflow store cannot be reached; raised before training rather than after hours."""


def check_tracking_store(tracking_uri: str) -> int:
    """Open the tracking store (creating the schema of an embedded SQLite store) and list experiments.

    Returns:
        The number of experiments in the store.

    Raises:
        TrackingStoreUnavailable: naming the URI and the underlying error.
    """
    from mlflow.tracking import MlflowClient  # heavy import, only in the processes that need it

    try:
        experiments = MlflowClient(tracking_uri=tracking_uri).search_experiments()
    except Exception as exc:  # noqa: BLE001 - any failure means the store is unusable
        raise TrackingStoreUnavailable(f"MLflow tracking store {tracking_uri} is unreachable: {exc}") from exc
    log.info("MLflow store %s is reachable (%d experiments)", tracking_uri, len(experiments))
    return len(experiments)
