#!/usr/bin/env bash
# The GPU check, one command, under 10 minutes on a machine with a CUDA GPU:
#   1. the suite's GPU tests (-m needs_cuda): fp16 on CUDA, agreement with the CPU, GPU actors;
#   2. bench/gpu_bench.py: decode frames/s (software, 1 and N threads; NVDEC), the detector alone at
#      batch 32 fp16, and `videolake run` end to end with 1 and N decoders per GPU actor, with the
#      GPU's utilisation, on the bench set and on 1080p video: one Markdown table.
# Usage: bench/gpu_check.sh [gpu_bench.py options]   (PYTHON=... to choose the interpreter; default .venv/bin/python)
# The output goes to the terminal and to $OUT/gpu_check.out (/tmp without OUT); its table goes into bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
{
  "$PY" -c "import torch, os; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CPU cores', os.cpu_count())"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  timeout 200 "$PY" -m pytest -q -m needs_cuda tests/pipeline tests/workers
  timeout 420 "$PY" bench/gpu_bench.py "$@"
} 2>&1 | tee "${OUT:-/tmp}/gpu_check.out"
