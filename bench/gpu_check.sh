#!/usr/bin/env bash
# The GPU check, under 5 minutes on a machine with a CUDA GPU:
#   1. the test suite's GPU tests (-m needs_cuda): fp16 on CUDA, agreement with the CPU;
#   2. frames/s per GPU at fp16 with batch sizes 1, 8, 32 (detector alone and decode → lake),
#      and one end-to-end CLI run (Prefect + Ray) at the CUDA default batch.
# Usage: bench/gpu_check.sh  (PYTHON=... to choose the interpreter; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
timeout 150 "$PY" -m pytest -q -m needs_cuda tests/pipeline
timeout 150 "$PY" bench/gpu_bench.py --imgsz 640 --seconds 60 --batches 1 8 32
