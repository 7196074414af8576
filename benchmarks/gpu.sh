#!/usr/bin/env bash
# GPU measurements in one run, for a machine with one CUDA GPU and PyTorch, transformers,
# peft and accelerate installed (no Snakemake, no weights, no network needed): random
# weights of the real architectures (benchmarks/_runner.py RANDOM_ARCHS) give the real
# cost per token and per edit. Edit success on random weights means nothing.
#
#   TOK=<folder with tokenizer.json> OUT=<results folder> bash benchmarks/gpu.sh
#
# TOK defaults to the default study's prepared model; its tokenizer files (a few MB) are
# all that is read from it. Each step is capped by `timeout` so that one slow step cannot
# use up the rest; a capped or failed step is reported and the next one runs.
set -uo pipefail
TOK=${TOK:-data/models/smollm2-135m/base}
OUT=${OUT:-/tmp/gpu-bench}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
step() {   # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: rc=$rc, $((SECONDS - t0)) s"
    tail -n 6 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
# the memory estimate behind "auto" against torch.cuda.max_memory_allocated
step memory 120 $PY benchmarks/bench_memory.py --model "random:smollm2-135m@$TOK" --device cuda \
    --batch-size 32 --seq-len 256 --micro 4 8 16 32 --steps 3 --json "$OUT/memory.json"
# fine-tuning tokens/s: the default model (full, LoRA) and Llama-3-8B (LoRA; its full
# fine-tuning needs ~133 GB of float32 weights, gradients and AdamW state)
step finetune_small 120 $PY benchmarks/bench_finetune.py --model "random:smollm2-135m@$TOK" --device cuda \
    --configs full lora --precision bf16 --steps 20 --batch-size 16 --seq-len 256 --json "$OUT/finetune_small.json"
step finetune_8b 180 $PY benchmarks/bench_finetune.py --model "random:llama3-8b@$TOK" --device cuda \
    --configs lora --precision bf16 --steps 10 --batch-size 8 --seq-len 512 --edited-layer 4 \
    --json "$OUT/finetune_8b.json"
# MEMIT edits/s at 100 and 1,000 edits (the decay study's sizes), GPT-2 XL layers 13-17
for n in 100 1000; do
    step "memit_$n" 180 $PY benchmarks/bench_editors.py --model "random:gpt2-xl@$TOK" --device cuda \
        --editors memit --layer-sets 13-17 --hparams-set gpt2-xl --n "$n" --stats-passages 1000 \
        --stats-cache "$OUT/stats_gpt2xl.safetensors" --json "$OUT/memit_$n.json"
done
rm -f "$OUT/stats_gpt2xl.safetensors"
