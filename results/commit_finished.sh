#!/usr/bin/env bash
# Stage the records of every finished run (a folder holding all_results.json) below the given
# runs folders, and nothing of a run still in progress:  bash results/commit_finished.sh DIR...
set -euo pipefail
find "$@" -name all_results.json -print0 | while IFS= read -r -d '' file; do
  git add "$(dirname "$file")"
done
