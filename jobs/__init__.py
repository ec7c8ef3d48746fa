"""One module per process: `python -m jobs.<name>` (Spark jobs also run under spark-submit)."""
