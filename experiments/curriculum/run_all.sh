#!/usr/bin/env bash
# Runs the five curriculum experiments one after another; extra arguments are passed to every run.
set -euo pipefail
for exp in exp1_random exp2_reordered exp3_sequential exp4_curriculum exp5_sequential_cot; do
  python -m medvqa.run experiment="$exp" hydra.run.dir="outputs/curriculum/$exp" "$@"
done
