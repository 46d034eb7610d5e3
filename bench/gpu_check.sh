#!/usr/bin/env bash
# GPU verification in one prepared command (bench/gpu_check.py says what it runs): install from this
# working tree without network, versions, the CUDA tests, the pipeline on CPU and GPU, the CUDA
# benchmarks. Evidence goes to $OUT (default ./gpu-check-out). Exit: 0 passed, 1 a step failed,
# 3 no GPU here (one line; add --dry-run to run the steps that need none).
set -u
cd "$(dirname "$0")/.."
exec python3 bench/gpu_check.py "$@"
