#!/usr/bin/env bash
# GPU check of the training and inference path, for a machine with a CUDA GPU:
#   1. a 200-step training run with the auto speed settings (bf16 mixed precision on Ampere or newer,
#      channels-last, fused Adam, cuDNN autotuning), on a folder of photos;
#   2. export of its last checkpoint, and `fast-style stylize` of one photo on the GPU;
#   3. benchmarks/train_step.py on CUDA: images/s of the defaults against the plain fp32 loop.
# Usage: benchmarks/gpu_check.sh PHOTOS_DIR STYLE_IMAGE VGG_WEIGHTS [NETWORK]
#   e.g. benchmarks/gpu_check.sh ../shared/data/coco128 ../shared/data/styles/starry_night.jpg \
#        ../shared/weights/vgg16_bn_features_offline.pt vgg16_bn
# VGG_WEIGHTS may be `imagenet` where torchvision's weights are cached. Results go to runs/gpu_check/.
set -euo pipefail
cd "$(dirname "$0")/.."
photos=${1:?photos folder}; style=${2:?style image}; weights=${3:?loss-network weights}; network=${4:-vgg16}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU here')"
out=runs/gpu_check
rm -rf "$out"
start=$(date +%s)
fast-style train style_image="$style" data.root="$photos" loss.network="$network" loss.weights="$weights" \
    trainer.accelerator=gpu trainer.max_steps=200 trainer.max_epochs=-1 data.image_size=256 data.batch_size=4 \
    trainer.enable_progress_bar=false log_images_every_n_steps=100 hydra.run.dir="$out/train"
echo "training: 200 steps in $(( $(date +%s) - start )) s (start-up included)"
fast-style export "$out/train/checkpoints/last.ckpt" -o "$out/model.safetensors"
first=$(find "$photos" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.png' \) | sort | head -n 1)
fast-style stylize "$first" -m "$out/model.safetensors" -o "$out/stylized.png" --device cuda
python -m benchmarks.train_step --device cuda --size 256 --batches 4 16 --steps 20 --warmup 3 --rounds 3 \
    --network "$network" --weights "$weights"
