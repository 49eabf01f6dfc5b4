#!/bin/bash
# Reproduces benchmarks/results/bench.{md,json} and scaling.{md,json}: one thread, real RTE batches
# when ../shared/data/glue is there (random ids otherwise). Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
GLUE_DIR=${GLUE_DIR:-../shared/data/glue}
export OMP_NUM_THREADS=1
.venv/bin/smartft bench --models tiny,all-MiniLM-L6-v2 --seq_lengths 64,128 \
    --data_dir "$GLUE_DIR" --out benchmarks/results --name bench
.venv/bin/smartft bench --models all-MiniLM-L6-v2 --seq_lengths 128 --variants plain,smart \
    --scaling --no_memory --data_dir "$GLUE_DIR" --out benchmarks/results --name scaling
# every method of the toolkit against plain (step time only; FreeLB from the first update)
.venv/bin/smartft bench --models all-MiniLM-L6-v2 --seq_lengths 64 --no_memory \
    --variants "plain,smart,alice,r3f,r4f,freelb:freelb_start_step=0,child_tuning,mixout,l2sp,lnsr,dps" \
    --warmup 1 --steps 2 --repeats 5 --data_dir "$GLUE_DIR" --out benchmarks/results --name methods
# R4F and LNSR again after their fixes (spectral normalisation; dropout replay), against plain and R3F
.venv/bin/smartft bench --models all-MiniLM-L6-v2 --seq_lengths 64 --no_memory \
    --variants "plain,r3f,r4f,lnsr" --warmup 1 --steps 2 --repeats 5 \
    --data_dir "$GLUE_DIR" --out benchmarks/results --name methods-r4f-lnsr
# bf16 against float32 on this CPU (a CPU with AVX-512 BF16 or AMX: precision-avx512bf16; an
# AVX2-only one: precision), then the CPU table in docs/precision.md
.venv/bin/smartft bench --models all-MiniLM-L6-v2 --seq_lengths 64 --no_memory \
    --variants plain,smart,smart-fast --precisions float32,bf16 --warmup 1 --steps 2 --repeats 5 \
    --data_dir "$GLUE_DIR" --out benchmarks/results \
    --name "$(grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo precision-avx512bf16 || echo precision)"
.venv/bin/python benchmarks/precision_cpus.py
# the 110 M-parameter model of the MPNet study (needs `make mpnet`): what a step costs there
if [ -f models/all-mpnet-base-v2/model.safetensors ]; then
  .venv/bin/smartft bench --models all-mpnet-base-v2 --seq_lengths 128 --no_memory \
      --variants plain,smart,smart-fast --warmup 1 --steps 2 --repeats 2 \
      --data_dir "$GLUE_DIR" --out benchmarks/results --name mpnet
fi
# multiple choice and extractive QA (the parts scripts/split_mc_qa.py writes): a step of plain,
# SMART and ALICE on MiniLM, 4 answers x 128 tokens per question and windows of 256 tokens
[ -d data/splits/SQuAD ] || .venv/bin/python scripts/split_mc_qa.py
for task in cosmosqa:128 squad:256; do
  .venv/bin/smartft bench --models all-MiniLM-L6-v2 --task_name "${task%%:*}" \
      --seq_lengths "${task##*:}" --variants plain,smart,alice --warmup 1 --steps 2 --repeats 3 \
      --data_dir data/splits --out benchmarks/results --name "${task%%:*}"
done
