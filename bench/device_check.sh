#!/usr/bin/env bash
# The GPU figures of the PinSage and PinnerFormer issues in one prepared run, sized for one device call
# (estimated at about 6 minutes of an H200, machine start not counted; never run on one yet). From a session
# that has a GPU machine, in the repo root:
#
#   run(command="EMB_CODE_VERSION=<commit> bash bench/device_check.sh", timeout_s=540)
#
# then copy $OUT's *_cuda.json into bench/results/ and append $OUT/BENCHMARKS_entries.md to docs/BENCHMARKS.md
# (docs/BENCHMARKS.md, "GPU runs", says how). It uses the GPU machine's own python3 (torch, torch-geometric,
# numpy, pyarrow, scipy: what the speed benches import; tests/bench/test_speed_benches.py keeps it so).
#
#   DEVICE=cpu QUICK=1 OUT=/tmp/dc bash bench/device_check.sh   # the same steps on tiny inputs, on CPU (tested)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-bench/results/device}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n "${QUICK:-}" ]]; then
    pinsage=(--training-pins 2000 --training-steps 3 --comparison-pins 2000 --per-pin-sample 20 --inference-pins 5000)
    pinnerformer=(--users 200 --pins 2000 --steps 2 --warmup-steps 1 --batch-size 32 --threads 2)
else
    pinsage=()
    pinnerformer=(--users 50000 --batch-size 512 --steps 40 --warmup-steps 3 --threads 8)
fi
record=(--device "$DEVICE" --results-dir "$OUT" --markdown "$OUT/BENCHMARKS_entries.md")

{
    date -u +%FT%TZ
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    fi
    "$PYTHON" -c "import torch, torch_geometric as pyg; print('torch', torch.__version__, 'pyg', pyg.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/environment.txt"

status=0
timeout "${PINSAGE_TIMEOUT:-270}" "$PYTHON" bench/pinsage_speed.py "${record[@]}" "${pinsage[@]}" \
    >"$OUT/pinsage_speed.log" 2>&1 || { status=$?; echo "pinsage_speed failed ($status)"; }
tail -n 25 "$OUT/pinsage_speed.log"
timeout "${PINNERFORMER_TIMEOUT:-200}" "$PYTHON" bench/pinnerformer_speed.py "${record[@]}" "${pinnerformer[@]}" \
    >"$OUT/pinnerformer_speed.log" 2>&1 || { status=$?; echo "pinnerformer_speed failed ($status)"; }
tail -n 6 "$OUT/pinnerformer_speed.log"
ls -l "$OUT"
exit "$status"
