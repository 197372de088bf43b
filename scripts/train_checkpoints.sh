#!/usr/bin/env bash
# Retrain the shipped checkpoints in checkpoints/ with the CPU recipe (fast_style/configs/experiment/cpu_demo.yaml)
# and export them. Usage: scripts/train_checkpoints.sh [STYLE...]   (default: all three)
# Expects the data folder beside the project (../shared); set SHARED to point elsewhere.
# FAST=1 trains the slim `fast` network instead (experiment=cpu_demo_fast) into STYLE_fast.safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SHARED:-../shared}"
PYTHON="${PYTHON:-python}"
experiment=cpu_demo suffix=""
if [ "${FAST:-0}" = 1 ]; then experiment=cpu_demo_fast suffix=_fast; fi
styles=("$@")
[ ${#styles[@]} -gt 0 ] || styles=(starry_night great_wave_crop composition_vii)
for style in "${styles[@]}"; do
    name="$style$suffix"
    run="runs/checkpoints/$name"
    start=$(date +%s)
    "$PYTHON" -m fast_style.cli.main train "experiment=$experiment" \
        "style_image=$SHARED/data/styles/$style.jpg" "data.root=$SHARED/data/coco128" \
        loss.network=vgg16_bn "loss.weights=$SHARED/weights/vgg16_bn_features_offline.pt" \
        "hydra.run.dir=$run" overwrite=true trainer.enable_progress_bar=false
    seconds=$(( $(date +%s) - start ))
    "$PYTHON" -m fast_style.cli.main export "$run/checkpoints/last.ckpt" -o "checkpoints/$name.safetensors" --overwrite
    echo "$name: trained in ${seconds} s" | tee -a runs/checkpoints/timings.txt
done
