#!/usr/bin/env bash
# Run ON the GPU machine (the device tool), after scripts/gpu/prepare.sh here:
#   run(command="bash scripts/gpu/check.sh", carry=[".gpu"], timeout_s=560)
# 1. the CUDA-relevant tests (fp16 with its scaler, bf16, SMART's options, the methods);
# 2. the bench's plain / SMART / fast-mode step times in float32, bf16 and fp16;
# 3. the mixed-precision accuracy check (results/precision-check/sweep.yaml), six sweeps at once.
# Everything it writes comes back under $OUT (logs, bench tables, the runs as one tar.gz).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=src OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl \
  && export PYTHONPATH=src:/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_precision.py \
  tests/test_smart_options.py tests/test_methods.py tests/test_smart.py 2>&1 | tail -30 \
  > "$OUT/tests.log" &
tests=$!
timeout 300 python3 -m smartft.cli bench --models .gpu/minilm --seq_lengths 128 \
  --variants plain,smart,smart-fast --precisions float32,bf16,fp16 --no_memory --warmup 3 \
  --steps 10 --repeats 3 --data_dir .gpu/glue --out "$OUT" --name gpu-precision \
  > "$OUT/bench.log" 2>&1 &
bench=$!
pids=()
for task in rte mrpc; do
  for seed in 1 2 3; do
    timeout 480 python3 -m smartft.cli sweep --config results/precision-check/sweep.yaml \
      --tasks "$task" --seeds "$seed" --set data_dir=.gpu/glue \
      --set model_name_or_path=.gpu/minilm > "$OUT/sweep-$task-$seed.log" 2>&1 &
    pids+=($!)
  done
done
wait "$tests" "$bench" "${pids[@]}"
cat "$OUT"/sweep-*.log > "$OUT/sweeps.log"; rm -f "$OUT"/sweep-*.log
tar czf "$OUT/precision-check-runs.tar.gz" results/precision-check/runs
tail -5 "$OUT/tests.log"; cat "$OUT/gpu-precision.md" 2>/dev/null; ls results/precision-check/runs/*/*
