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
if ! command -v "$PYTHON" >/dev/null 2>&1; then  # a path or a command name on PATH
    echo "gpu_check.sh: PYTHON=$PYTHON not found, using python3" >&2
    PYTHON=python3
fi
export PYTHONUNBUFFERED=1  # every table row reaches the log even if the time limit stops the run
echo "gpu_check.sh: $("$PYTHON" -c 'import sys; print(sys.executable)')"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
start=$(date +%s)
# 280 s for the whole check: the stages take seconds on a GPU; compare --quick gets at most 180 s and
# never more than what is left of --budget; SIGINT first (Python reports it), SIGKILL 10 s later
rc=0
timeout -s INT -k 10 280 "$PYTHON" benchmarks/gpu_check.py --budget 270 --compare-timeout 180 "$@" || rc=$?
echo "gpu_check.sh: $(( $(date +%s) - start )) s wall, exit status $rc"
exit "$rc"
