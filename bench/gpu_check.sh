#!/usr/bin/env bash
# One check a GPU host runs in one go (under 10 minutes): vLLM in-process and server mode next to transformers
# `generate` on the same prompts, tactics/s and the ratio printed. Needs `pip install '.[gpu]'` and a CUDA GPU.
#   bash bench/gpu_check.sh [--model ID_OR_PATH]     (default: a tiny LLaMA built from a config, no download)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1
status=0
timeout 420 "$PY" bench/gpu_check.py "$@" || status=$?
if [ "$status" -eq 0 ] && [ -z "${SKIP_GPU_TESTS:-}" ]; then
  timeout 150 "$PY" -m pytest -q -p no:xdist -m gpu tests/test_provers_gpu.py || status=$?
fi
exit "$status"
