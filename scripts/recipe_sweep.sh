#!/usr/bin/env bash
# The CPU recipe sweep of checkpoints/README.md: short runs (600 steps) of experiment=cpu_demo on
# Starry Night with the style weight and crop size changed, scored by benchmarks/quality.py on two
# photos at 256 px.
#   scripts/recipe_sweep.sh [NAME ...]        (default: every run below; results in runs/sweep/)
# Needs ../shared (coco128, the style images, the VGG16-BN stand-in weights) beside the project.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
STEPS=${STEPS:-600}
declare -A RUNS=(
    [w10]="loss.style_weight=10"
    [w1]="loss.style_weight=1"
    [w3]="loss.style_weight=3"
    [w5]="loss.style_weight=5"
    [w3_crop192]="loss.style_weight=3 data.image_size=192"
    [w3_tv50]="loss.style_weight=3 loss.tv_weight=50"
)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(w10 w1 w3 w5 w3_crop192 w3_tv50)
mkdir -p runs/sweep/photos
cp "$SHARED/data/content/amber.jpg" "$SHARED/data/content/cornell.jpg" runs/sweep/photos/
for name in "${names[@]}"; do
    out=runs/sweep/$name
    [ -f "$out/model.safetensors" ] && continue
    start=$(date +%s)
    # shellcheck disable=SC2086
    fast-style train experiment=cpu_demo trainer.max_steps="$STEPS" \
        style_image="$SHARED/data/styles/starry_night.jpg" data.root="$SHARED/data/coco128" \
        loss.network=vgg16_bn loss.weights="$SHARED/weights/vgg16_bn_features_offline.pt" \
        trainer.enable_progress_bar=false hydra.run.dir="$out" ${RUNS[$name]}
    echo "$name: trained in $(( $(date +%s) - start )) s" | tee -a runs/sweep/times.txt
    fast-style export "$out/checkpoints/last.ckpt" -o "$out/model.safetensors"
    python -m benchmarks.quality "$out/model.safetensors" --content runs/sweep/photos \
        --styles "$SHARED/data/styles" --weights "$SHARED/weights/vgg16_bn_features_offline.pt" \
        --size 256 --max-steps 150 --out "$out/quality" --no-progress > "$out/quality.txt"
    tail -n 4 "$out/quality.txt"
done
