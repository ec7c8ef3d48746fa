#!/usr/bin/env bash
# `make demo`: the nightly DAG end to end on the embedded default (everything under ./var).
# Idempotent: a second run reuses the environment and the Airflow/MLflow stores and rewrites the same
# partitions with the same content.
#   DEMO_DS     the partition to process (default 2026-11-01)
#   DEMO_SCALE  synthetic preset: demo (~20k pins, default) or tiny (CI's small-scale check)
# PinSage trains for at most 3 epochs in the demo (EMB_PINSAGE_TRAIN_ARGS; the job's default is 10 with
# early stopping); the tiny preset's 14 days are split 8 train / 3 valid / 3 test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export DEMO_DS="${DEMO_DS:-2026-11-01}"
DEMO_SCALE="${DEMO_SCALE:-demo}"
LOGICAL_DATE="$(python -c "import datetime as d; print((d.date.fromisoformat('$DEMO_DS') + d.timedelta(days=1)).isoformat() + 'T02:00:00+00:00')")"
if [ "$DEMO_SCALE" = tiny ]; then
  export EMB_VALID_DAYS="${EMB_VALID_DAYS:-3}" EMB_TEST_DAYS="${EMB_TEST_DAYS:-3}"
  export EMB_PINSAGE_TRAIN_ARGS="${EMB_PINSAGE_TRAIN_ARGS:---num-epochs 2 --hidden-dim 64 --embedding-dim 64}"
  # PinnerFormer's future window (labels and evaluation targets): 3 of the 14 days.
  export EMB_SEQUENCES_ARGS="${EMB_SEQUENCES_ARGS:---label-days 3}"
  export EMB_PINNERFORMER_TRAIN_ARGS="${EMB_PINNERFORMER_TRAIN_ARGS:---num-epochs 2}"
else
  export EMB_PINSAGE_TRAIN_ARGS="${EMB_PINSAGE_TRAIN_ARGS:---num-epochs 3}"
fi
# PinnerSage's nightly evaluation on a smaller grid than the job's defaults (1,000 users, 4 alphas, 2 decays
# lam, k-means k in 2..3); at the defaults (2,000 users, 15 alphas, 5 lams, k in 2..8) it is the cost of
# bench/pinnersage.py's synthetic section.
export EMB_PINNERSAGE_EVAL_ARGS="${EMB_PINNERSAGE_EVAL_ARGS:---max-users 1000 --alphas 0.8 0.9 1.0 1.2 --lams 0.01 0.1 --pulls 0 0.35 --kmeans-ks 2 3 --ci-samples 100}"
mkdir -p "$EMB_VAR_DIR" "$AIRFLOW_HOME"
started=$SECONDS

step() { printf '\n== %s\n' "$*"; }

step "Airflow metadata (SQLite) in $AIRFLOW_HOME"
airflow db migrate > "$EMB_VAR_DIR/airflow-db-migrate.log" 2>&1 || { cat "$EMB_VAR_DIR/airflow-db-migrate.log"; exit 1; }
airflow dags reserialize > "$EMB_VAR_DIR/airflow-reserialize.log" 2>&1 || { cat "$EMB_VAR_DIR/airflow-reserialize.log"; exit 1; }

step "MLflow tracking and registry store: $MLFLOW_TRACKING_URI"
python -c "from embeddings.registry.store import check_tracking_store as c; import os; print(c(os.environ['MLFLOW_TRACKING_URI']), 'experiments')"

step "Synthetic data ($DEMO_SCALE preset) ending at ds=$DEMO_DS into $EMB_LAKE_URI"
python -m jobs.generate_synthetic --scale "$DEMO_SCALE" --ds "$DEMO_DS" --lake-uri "$EMB_LAKE_URI"

step "airflow dags test nightly_embeddings $LOGICAL_DATE (ds=$DEMO_DS)"
log="$EMB_VAR_DIR/demo-dag-run.log"
if ! EMB_TASK_RETRIES="${EMB_TASK_RETRIES:-0}" airflow dags test nightly_embeddings "$LOGICAL_DATE" \
    -c "{\"ds\": \"$DEMO_DS\"}" > "$log" 2>&1; then
  tail -n 60 "$log"; echo "The DAG run failed; full log: $log"; exit 1
fi
grep -q "state=success" "$log" || { tail -n 60 "$log"; echo "The DAG run did not succeed; full log: $log"; exit 1; }

step "What ran (from Airflow's metadata database)"
python - <<'PY'
import json, subprocess

def cli_json(*args):
    out = subprocess.run(["airflow", *args, "-o", "json"], capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("[")))

run = cli_json("dags", "list-runs", "nightly_embeddings")[0]
print(f"  run {run['run_id']}  logical_date={run['logical_date']}  state={run['state']}")
for ti in cli_json("tasks", "states-for-dag-run", "nightly_embeddings", run["run_id"]):
    print(f"  {ti['task_id']:<24} {ti['state']:<10} {ti.get('start_date') or ''}")
PY

step "Outputs in the lake for ds=$DEMO_DS"
python -m jobs.describe_lake --ds "$DEMO_DS" --lake-uri "$EMB_LAKE_URI"

step "Models in the MLflow registry ($MLFLOW_TRACKING_URI)"
python -m jobs.describe_registry --model pinsage
python -m jobs.describe_registry --model pinnerformer

step "Retrieval: one query of each kind against the published indexes in $EMB_INDEX_URI"
read -r PIN USER <<<"$(python - <<'PY'
import os
import pyarrow.compute as pc
from embeddings.data.schemas import PIN_EMBEDDINGS, PINNERFORMER_USER_EMBEDDINGS, USER_MEDOIDS
from embeddings.lake import Lake
lake, ds = Lake(os.environ["EMB_LAKE_URI"]), os.environ["DEMO_DS"]
pin = lake.read(PIN_EMBEDDINGS, ds, columns=["pin_id"])["pin_id"][0].as_py()
with_medoids = lake.read(USER_MEDOIDS, ds, columns=["user_id"])["user_id"]
users = lake.read(PINNERFORMER_USER_EMBEDDINGS, ds, columns=["user_id"])["user_id"]
print(pin, pc.min(users.filter(pc.is_in(users, with_medoids))).as_py())
PY
)"
python -m jobs.serve related --pin-id "$PIN" --k 5
python -m jobs.serve user --user-id "$USER" --k 5
python -m jobs.serve pinnersage --user-id "$USER" --k 5

cat <<MSG

Done in $((SECONDS - started)) s. Full DAG log: $log
Open the UIs (127.0.0.1 only):
  make airflow-ui   # Airflow on http://127.0.0.1:8080 (airflow standalone; login printed on start)
  make mlflow-ui    # MLflow on http://127.0.0.1:5000
Serve the published indexes:  source infra/local/env.sh && python -m jobs.serve http --port 8765
Rerun one day by hand:  source infra/local/env.sh && airflow dags test nightly_embeddings $LOGICAL_DATE -c '{"ds": "$DEMO_DS"}'
MSG
