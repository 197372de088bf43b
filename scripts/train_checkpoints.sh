#!/usr/bin/env bash
# Retrain the shipped checkpoints in checkpoints/ with the CPU recipe (fast_style/configs/experiment/cpu_demo.yaml)
# and export them. Usage: scripts/train_checkpoints.sh [STYLE...]   (default: all three)
# Expects the data folder beside the project (../shared); set SHARED to point elsewhere.
# FAST=1 trains the slim `fast` network instead (experiment=cpu_demo_fast) into STYLE_fast.safetensors.
# CROP=192 trains on 192 px crops; MINUTES=75 trains for that long instead of 2000 steps, with a
# checkpoint every 250 steps (the retrained starry_night: CROP=192 MINUTES=75, checkpoints/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SHARED:-../shared}"
PYTHON="${PYTHON:-python}"
experiment=cpu_demo suffix=""
if [ "${FAST:-0}" = 1 ]; then experiment=cpu_demo_fast suffix=_fast; fi
extra=()
if [ -n "${CROP:-}" ]; then extra+=("data.image_size=$CROP"); fi
if [ -n "${MINUTES:-}" ]; then
    extra+=(trainer.max_steps=1000000 "+trainer.max_time=00:$(printf %02d:%02d $((MINUTES / 60)) $((MINUTES % 60))):00"
        callbacks.model_checkpoint.every_n_train_steps=250)
fi
styles=("$@")
[ ${#styles[@]} -gt 0 ] || styles=(starry_night great_wave_crop composition_vii)
for style in "${styles[@]}"; do
    name="$style$suffix"
    run="runs/checkpoints/$name"
    start=$(date +%s)
    "$PYTHON" -m fast_style.cli.main train "experiment=$experiment" \
        "style_image=$SHARED/data/styles/$style.jpg" "data.root=$SHARED/data/coco128" \
        loss.network=vgg16_bn "loss.weights=$SHARED/weights/vgg16_bn_features_offline.pt" \
        "hydra.run.dir=$run" overwrite=true trainer.enable_progress_bar=false ${extra[@]+"${extra[@]}"}
    seconds=$(( $(date +%s) - start ))
    "$PYTHON" -m fast_style.cli.main export "$run/checkpoints/last.ckpt" -o "checkpoints/$name.safetensors" --overwrite
    echo "$name: trained in ${seconds} s" | tee -a runs/checkpoints/timings.txt
done
