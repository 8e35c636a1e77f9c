#!/usr/bin/env bash
# Device check of issue 12: images/s per stage of the bridge (segmentation, graph building, CNN node
# features, also with the backbone's BatchNorm folded, GNN forward), `pixgraph compare --quick` end to
# end, and peak GPU memory, on one GPU.
# Finishes in under 5 minutes on one GPU (each part has its own limit below).
#
# Usage (from anywhere):   benchmarks/gpu_check.sh [--device cuda:1] [other gpu_check.py options]
# Environment:             PYTHON (default: the repository's .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [[ ! -x "$PYTHON" ]]; then
    PYTHON=python3
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
start=$(date +%s)
# 280 s for the whole check: the stages take seconds on a GPU; compare --quick has 180 s of its own
timeout 280 "$PYTHON" benchmarks/gpu_check.py --compare-timeout 180 "$@"
echo "gpu_check.sh: $(( $(date +%s) - start )) s wall"
