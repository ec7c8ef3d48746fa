"""Pinterest's representation-learning stack as a batch library (no Airflow, no argparse here)."""

__version__ = "0.1.0"
