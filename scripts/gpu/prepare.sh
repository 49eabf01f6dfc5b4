#!/usr/bin/env bash
# Run HERE before a device session: puts what the GPU machine needs into .gpu/ (ignored by git,
# carried with `carry: [".gpu"]`, under the 64 MiB limit): MiniLM in float16 (~45 MB), the four
# GLUE folders of the studies, and pytest's wheels (the GPU machine has no pytest).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu && mkdir -p .gpu/glue .gpu/whl
.venv/bin/python - <<'PY'
import torch
from transformers import AutoModel, AutoTokenizer
from smartft.modeling import resolve_model_path
path = resolve_model_path("all-MiniLM-L6-v2")
AutoModel.from_pretrained(path, dtype=torch.float16).save_pretrained(".gpu/minilm")
AutoTokenizer.from_pretrained(path).save_pretrained(".gpu/minilm")
PY
for task in RTE MRPC CoLA STS-B; do
  mkdir -p ".gpu/glue/$task"
  cp ../shared/data/glue/$task/{train,dev}.tsv ".gpu/glue/$task/"
done
.venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 -d .gpu/whl \
  pytest==8.3.5 pluggy==1.5.0 iniconfig==2.0.0 hypothesis==6.131.0 sortedcontainers==2.4.0 \
  attrs==25.3.0 2>&1 | grep -v "is ignored" || true
# the SMART study's code, frozen where its CPU runs are (scripts/gpu/smart_study.sh runs it)
mkdir -p .gpu/study-src && git archive 857661d src | tar -x -C .gpu/study-src
du -sh .gpu
