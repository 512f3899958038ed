#!/usr/bin/env bash
# The float engine's AVX-512 1x1 convolution kernel against oneDNN's convolution on the 1x1
# shapes of FasterNet T0/T1/T2/S at batch 1 (two threads) and in a batch-16 shard (eight
# images, one thread), weights cold as in a model; then chains of a stage's convolutions at
# batch 1 (see conv1x1.c). Needs clang (the Swift toolchain's: the kernel's loops are unrolled
# by clang pragmas) and libdnnl-dev. Each single-convolution row runs the kernel split as the
# engine would (PointwiseConvolutionKernel.split) and names the engine's choice: on two threads
# the kernel, split by pixels from four 7-pixel tiles a thread; on one, the kernel only with at
# least 10 KB of weights per pixel.
set -euo pipefail
cd "$(dirname "$0")"
binary=$(mktemp)
trap 'rm -f "$binary"' EXIT
clang -O3 -std=gnu11 -I../../Sources/CFloatKernels/include conv1x1.c -o "$binary" -ldnnl \
  -l:libgomp.so.1 -lm
run() { # INPUTS OUTPUTS SIDE IMAGES THREADS
  local pixels=$(($4 * $3 * $3)) choice=oneDNN split=blocks
  if (($5 > 1)); then
    choice=kernel
    ((((pixels + 6) / 7) >= 4 * $5)) && split=pixels
  elif (($1 * $2 * 4 >= 10240 * pixels)); then
    choice=kernel
  fi
  printf '%-6s ' "$choice"
  SPLIT=$split THREADS=$5 OMP_NUM_THREADS=$5 "$binary" "$1" "$2" "$3" "$4"
}
# Stage 3 (C channels, 14x14) and stage 4 (2C, 7x7) of T0, T1, T2 and S (C = 160, 256, 384,
# 512): each block's expansion C -> 2C and projection 2C -> C.
for c in 160 256 384 512; do
  run "$c" $((2 * c)) 14 1 2
  run $((2 * c)) "$c" 14 1 2
  run $((2 * c)) $((4 * c)) 7 1 2
  run $((4 * c)) $((2 * c)) 7 1 2
done
# The head's 1x1 convolution after global pooling (T2: 768 -> 1280).
run 768 1280 1 1 2
# A batch-16 shard: eight images on one thread (stage 4 of T2 and S, the T2 head).
run 768 1536 7 8 1
run 1536 768 7 8 1
run 1024 2048 7 8 1
run 768 1280 1 8 1
# Chains at batch 1, two threads: stage 2 (28x28) and stage 3 (14x14) of T0, T1, T2 and S.
for c in 80 128 192 256; do THREADS=2 OMP_NUM_THREADS=2 "$binary" chain "$c" 28; done
for c in 160 256 384 512; do THREADS=2 OMP_NUM_THREADS=2 "$binary" chain "$c" 14; done
