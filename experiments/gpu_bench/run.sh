#!/usr/bin/env bash
# bash experiments/gpu_bench/run.sh   (one command for the device tool; parts capped at 550 s on one H200)
# Qwen2-VL-2B-shape (random weights, no download) LoRA SFT at bf16 with and without gradient checkpointing,
# at fp8 (torchao), QLoRA (bitsandbytes NF4), and GRPO, each through python -m medvqa.bench train_step, then
# python -m medvqa.bench vision_reuse (the vision cache, 2B / 3B / PaliGemma shapes at full depth, bf16);
# JSON per configuration, one log and the markdown table under $OUT. A configuration that fails or runs out
# of its time is logged and the others still run. Knobs: BS (micro-batch, 16), IMG (image side, 448 px:
# 1024 patches, 256 image tokens), STEPS (timed, 6), WARMUP (3).
# The device machine lacks hydra-core, omegaconf, antlr4, torchao and albumentations (+ its dependencies;
# and bitsandbytes): `make gpu-wheelhouse` puts them in .whl (git-ignored, ~12 MB), carried with
# carry=[".whl"]; they are installed first, offline, when present.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-bench-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
LOG=$OUT/bench.log
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$LOG" 2>&1
COMMON=(model=qwen2_vl_2b_shape model.device=cuda trainer=gpu peft=lora "data.batch_size=${BS:-16}"
        paths.data_dir=/tmp/medvqa-data data.reader.n_patients=40 data.reader.images_per_patient=2
        "data.reader.image_size=${IMG:-448}" data.num_workers=4 "bench.steps=${STEPS:-6}" "bench.warmup=${WARMUP:-3}")
bench() {  # name, seconds, overrides...
  local name=$1 limit=$2; shift 2
  echo "== $name: ${COMMON[*]} $*" >>"$LOG"
  timeout "$limit" python3 -m medvqa.bench train_step "${COMMON[@]}" "$@" "bench.out=$OUT/$name.json" >>"$LOG" 2>&1 \
    || echo "== $name FAILED (exit $?)" >>"$LOG"
}
started=$(date +%s)
bench sft_bf16 130 precision=bf16 bench.stages=sft bench.checkpointing=false,true
bench sft_fp8 90 precision=fp8 bench.stages=sft bench.checkpointing=false
bench qlora 120 peft=qlora precision=bf16 bench.stages=sft bench.checkpointing=false
bench grpo_bf16 120 precision=bf16 bench.stages=grpo bench.checkpointing=false stage.max_completion_length=32
# the vision tower once per distinct image, shared vs unshared alternating, full depth, VQA-RAD's image size
echo "== vision_reuse" >>"$LOG"
timeout 90 python3 -m medvqa.bench vision_reuse dtype=bf16 depth_factor=1 max_pixels=401408 image_side=512 \
  repeats=2 new_tokens=8 >"$OUT/vision_reuse.json" 2>>"$LOG" || echo "== vision_reuse FAILED (exit $?)" >>"$LOG"
echo "== total $(( $(date +%s) - started )) s" >>"$LOG"
STEP_JSON=$(ls "$OUT"/*.json 2>/dev/null | grep -v /vision_reuse.json)  # train_step results only
[ -n "$STEP_JSON" ] && python3 -m medvqa.bench.table $STEP_JSON >"$OUT/table.md" 2>>"$LOG"
tail -n 5 "$LOG"
