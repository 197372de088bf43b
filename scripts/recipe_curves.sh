#!/usr/bin/env bash
# The recipe comparison of checkpoints/README.md ("Quality per CPU-hour"): each candidate trains Starry
# Night on coco128 for the same time on one CPU thread (two candidates at a time on a 2-core
# machine), saving a checkpoint every 250 steps; benchmarks.learning_curve then scores every
# checkpoint against L-BFGS from white noise on the five photos of ../shared/data/content.
#   scripts/recipe_curves.sh [NAME ...]      (default: every candidate below; runs in $RUNS)
# MINUTES sets each run's training time (default 25; the one-cycle run stops at its 1000 steps or
# after MINUTES + 5), RUNS the folder (default runs/curves).
# Needs ../shared (coco128, the style images, the VGG16-BN stand-in weights) beside the project.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
RUNS=${RUNS:-runs/curves}
MINUTES=${MINUTES:-25}
PYTHON=${PYTHON:-python}
declare -A CANDIDATES=(
    [base]=""                                                   # the recipe of experiment=cpu_demo
    [skip]="model.skip=true"                                    # start from the identity
    [skip_full]="model.skip=true model.channels=[32,64,128]"    # + full width
    [skip_crop192]="model.skip=true data.image_size=192"        # + 192 px crops
    [skip_crop256]="model.skip=true data.image_size=256"        # + 256 px crops
    # a one-cycle schedule needs the run's length: 1000 steps took about 25 minutes here
    [skip_crop192_onecycle]="model.skip=true data.image_size=192 scheduler=onecycle trainer.max_steps=1000"
    [skip_crop192_b2]="model.skip=true data.image_size=192 data.batch_size=2"          # + batch 2
    [skip_crop192_c33]="model.skip=true data.image_size=192 loss.content_layers=[relu3_3]"  # another loss
)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(base skip skip_full skip_crop192 skip_crop256 skip_crop192_onecycle skip_crop192_b2 skip_crop192_c33)
mkdir -p "$RUNS"
for name in "${names[@]}"; do
    [ -n "${CANDIDATES[$name]+set}" ] || { echo "unknown candidate $name" >&2; exit 2; }
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
    minutes=$MINUTES
    [[ $name == *onecycle ]] && minutes=$(( MINUTES + 5 ))
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 "$PYTHON" -m fast_style.cli.main train experiment=cpu_demo \
        style_image="$SHARED/data/styles/starry_night.jpg" data.root="$SHARED/data/coco128" \
        loss.network=vgg16_bn loss.weights="$SHARED/weights/vgg16_bn_features_offline.pt" \
        trainer.max_steps=1000000 +trainer.max_time="00:00:$minutes:00" \
        trainer.enable_progress_bar=false \
        callbacks.model_checkpoint.every_n_train_steps=250 hydra.run.dir="$RUNS/$name" \
        ${CANDIDATES[$name]} > "$RUNS/$name.log" 2>&1 &
done
wait
runs=()
for name in "${names[@]}"; do runs+=("$RUNS/$name"); done
"$PYTHON" -m benchmarks.learning_curve "${runs[@]}" --content "$SHARED/data/content" \
    --styles "$SHARED/data/styles" --weights "$SHARED/weights/vgg16_bn_features_offline.pt" \
    --max-steps 150 --out "$RUNS/learning_curve" --no-progress \
    --loss-of checkpoints/starry_night.safetensors  # one yardstick: the shipped files' loss
