#!/usr/bin/env bash
# A study's sweep, resumable across stopped sessions: this checkout's sweep driver (an interrupted
# run continues from its newest complete checkpoint) with the study's frozen training code (every
# `smartft train` child imports smartft from CODE/src, the worktree at the commit the study's YAML
# names; the driver only orders runs and launches them, it computes nothing that is measured).
#   bash results/sweep_frozen.sh ../study-src results/smart-study/selection-a.yaml [sweep flags]
# PYTHON names the interpreter (default .venv/bin/python; the GPU machine's is python3).
set -euo pipefail
cd "$(dirname "$0")/.."
code=$1
shift
[ -d "$code/src/smartft" ] || { echo "sweep_frozen: no smartft in $code/src" >&2; exit 2; }
export PYTHONPATH="$(cd "$code" && pwd)/src" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "${PYTHON:-.venv/bin/python}" -c \
  'import sys; sys.path.insert(0, "src"); from smartft.cli import main; main()' sweep --config "$@"
