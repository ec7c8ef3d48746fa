# Environment of the embedded default (sourced by `make demo`, `make test` and the UI targets).
# Everything lives under ./var: the lake, indexes, MLflow's SQLite store, Airflow home (SQLite).
# Production sets the same variables to PostgreSQL, object storage and a Spark cluster (infra/README.md).
_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export EMB_VAR_DIR="${EMB_VAR_DIR:-$_repo/var}"
export EMB_LAKE_URI="${EMB_LAKE_URI:-$EMB_VAR_DIR/lake}"
export EMB_INDEX_URI="${EMB_INDEX_URI:-$EMB_VAR_DIR/indexes}"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$EMB_VAR_DIR/mlflow.db}"
export EMB_MLFLOW_ARTIFACTS="${EMB_MLFLOW_ARTIFACTS:-$EMB_VAR_DIR/mlartifacts}"
export EMB_SPARK_MASTER="${EMB_SPARK_MASTER:-local[*]}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$EMB_VAR_DIR/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$_repo/dags}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
# (The JSON goes through a variable: inside ${VAR:-...} its closing brace would end the expansion early,
# and a second `source` would append a stray "}".)
_spark_conn="{\"conn_type\": \"spark\", \"host\": \"$EMB_SPARK_MASTER\"}"
export AIRFLOW_CONN_SPARK_DEFAULT="${AIRFLOW_CONN_SPARK_DEFAULT:-$_spark_conn}"
# Spark's Python workers must run this environment's interpreter (STACK_NOTES.md).
export PATH="$_repo/.venv/bin:$PATH"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$_repo/.venv/bin/python}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$_repo/.venv/bin/python}"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
unset _repo _spark_conn
