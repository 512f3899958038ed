#!/usr/bin/env bash
# Evaluate one model on ImageNet val as a Slurm job array, one task per shard:
#
#   sbatch deploy/slurm-array.sh
#
# Task i evaluates the samples whose index satisfies index % SHARDS == i into its own
# directory. A requeued or re-submitted task resumes from its last complete record
# (--resume), so nothing is lost or counted twice. Merge afterwards (deploy/README.md), e.g.
# as a dependent job:
#
#   sbatch --dependency=afterok:<array job id> --wrap \
#     'imagenet-eval merge results/fasternet-t0/shard-* --out results/fasternet-t0/merged'
#
# Keep SHARDS equal to the number of array tasks (0-7 is 8 tasks).
#SBATCH --job-name=imagenet-eval
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --mem=4G
#SBATCH --time=02:00:00
#SBATCH --requeue
#SBATCH --output=logs/imagenet-eval-%A_%a.out
set -euo pipefail

SHARDS=8
MODEL=${MODEL:-models/fasternet_t0.onnx}
DATA=${DATA:-/datasets/imagenet/ILSVRC2012_img_val.tar}
LABELS=${LABELS:-/datasets/imagenet/caffe_val.txt}
OUT=${OUT:-results/fasternet-t0}

exec imagenet-eval run \
  --model "$MODEL" \
  --data "$DATA" \
  --labels "$LABELS" \
  --preset timm \
  --shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}" \
  --resume \
  --out "${OUT}/shard-${SLURM_ARRAY_TASK_ID}"
