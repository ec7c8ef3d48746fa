"""Airflow DAG files (orchestration only; importable from the repo root for tests)."""
