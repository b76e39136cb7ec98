#!/usr/bin/env bash
# The GPU check, one command, meant to end within 10 minutes on a machine with a CUDA GPU:
#   1. the suite's GPU tests (pytest -m needs_cuda): fp16 on CUDA, agreement with the CPU, GPU actors;
#   2. bench/gpu_bench.py: decode frames/s (software, 1 and N threads; NVDEC), the detector alone at
#      batch 32 fp16, and `videolake run` end to end with 1 and N decoders per GPU actor, with the
#      GPU's utilisation, on the bench set and on 1080p video: one Markdown table.
# The benchmark runs even when a GPU test fails; the exit status is non-zero if either failed.
# Usage: bench/gpu_check.sh [gpu_bench.py options]
#   PYTHON=...            the interpreter (default .venv/bin/python, else python3); it needs the project
#                         installed with its dependencies (pip install -e ".[dev]") and a CUDA torch
#   TESTS_TIMEOUT_S=150   BENCH_TIMEOUT_S=420   the two steps' time limits
# The output goes to the terminal and to $OUT/gpu_check.out (/tmp without OUT); its table goes into bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec > >(tee "${OUT:-/tmp}/gpu_check.out") 2>&1

"$PY" - <<'EOF' || exit 1
import importlib.util, sys

def found(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False

missing = [m for m in ("torch", "ray", "prefect", "av", "deltalake", "duckdb", "ultralytics", "videolake.pipeline")
           if not found(m)]
if missing:
    sys.exit(f"gpu_check: {sys.executable} lacks {', '.join(missing)}: install the project and its dependencies first")
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA GPU visible to torch")
import os
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CPU cores", os.cpu_count(), "|", sys.executable)
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

tests=0
bench=0
timeout "${TESTS_TIMEOUT_S:-150}" "$PY" -m pytest -q -p no:cacheprovider -m needs_cuda || tests=$?
timeout "${BENCH_TIMEOUT_S:-420}" "$PY" bench/gpu_bench.py "$@" || bench=$?
echo "gpu_check: GPU tests exit $tests, gpu_bench exit $bench (124: past its time limit)"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
