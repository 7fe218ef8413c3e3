#!/usr/bin/env bash
# The GPU check on a GPU machine, from the repository root (see bench/gpu_check.py and bench/README.md):
#   bash bench/gpu_check.sh [--only env,asr_decode]
# Where the machine's Python lacks Ray and the other services' dependencies (a bare CUDA image without
# internet), the wheels of bench/gpu_wheels.py in .whl/ are installed into /tmp/site first.
set -euo pipefail
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if ! "$PY" -c "import ray, gymnasium, ale_py, tyro, jiwer, soundfile" 2>/dev/null; then
  ls .whl/*.whl >/dev/null 2>&1 || { echo "gpu_check: Ray & co. are missing and .whl/ holds no wheels: run bench/gpu_wheels.py"; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
export RAY_DEDUP_LOGS=0
exec "$PY" bench/gpu_check.py "$@"
