#include "CFloatKernels.h"

#include <stddef.h>

// A 1x1 convolution over channels-last pixels is a matrix product. Two cases make oneDNN's
// kernel wait, on this project's CPU: weights larger than the pixels (1-8 MB in FasterNet's
// stages 3 and 4 at batch 1), read from L3 once per image; and, on a team, pixels whose
// channels the other core wrote: a convolution split by output channels leaves every pixel
// half in each core's L2, and the next one, needing all of a pixel's channels, pulls half its
// input across (chains of oneDNN's convolutions measure like that). Here a thread takes
// either a range of 16-channel output blocks over all pixels (for the first case) or a range
// of pixels over all blocks (for the second: every such convolution then reads the pixels its
// own thread wrote). Either way it walks its blocks three at a time;
// while the pixels are multiplied by one group's weights (then in L2), the next group's weights
// are prefetched into L2, one cache line per input channel step.

enum { lanes = 16, groupBlocks = 3, tileRows = ie_float_conv1x1_tile_pixels };

size_t ie_float_conv1x1_packed_count(int inputs, int outputs) {
  return (size_t)inputs * (size_t)outputs;
}

// Block b of 16 output channels, input channel i: the 16 weights of b's channels, contiguous.
void ie_float_conv1x1_pack(const float *weights, int inputs, int outputs, float *packed) {
  for (int o = 0; o < outputs; o++) {
    for (int i = 0; i < inputs; i++) {
      packed[((size_t)(o / lanes) * (size_t)inputs + (size_t)i) * lanes + (size_t)(o % lanes)] =
          weights[(size_t)o * (size_t)inputs + (size_t)i];
    }
  }
}

#if defined(__x86_64__)
#include <immintrin.h>

// One tile: `rows` pixels by `blocks` blocks of 16 output channels, all accumulators in
// registers (always inlined with constant `rows` and `blocks`). Issues `prefetchLines`
// prefetches of consecutive cache lines from `prefetch`, one per input channel, then any left.
__attribute__((target("avx512f"), always_inline)) static inline void
tile(const float *source, int inputs, const float *weights, const float *bias, float *output,
     int outputs, float lower, float upper, int accumulate, const char *prefetch,
     int prefetchLines, const int rows, const int blocks) {
  __m512 sums[tileRows][groupBlocks];
  const size_t blockStride = (size_t)inputs * lanes;
#pragma clang loop unroll(full)
  for (int b = 0; b < blocks; b++) {
    const __m512 initial = bias ? _mm512_loadu_ps(bias + b * lanes) : _mm512_setzero_ps();
#pragma clang loop unroll(full)
    for (int r = 0; r < rows; r++) {
      float *target = output + (size_t)r * (size_t)outputs + b * lanes;
      sums[r][b] = accumulate ? _mm512_add_ps(initial, _mm512_loadu_ps(target)) : initial;
    }
  }
  int i = 0;
  for (; i < inputs; i++) {
    if (i < prefetchLines) _mm_prefetch(prefetch + (size_t)i * 64, _MM_HINT_T1);
    __m512 w[groupBlocks];
#pragma clang loop unroll(full)
    for (int b = 0; b < blocks; b++) w[b] = _mm512_load_ps(weights + b * blockStride + i * lanes);
#pragma clang loop unroll(full)
    for (int r = 0; r < rows; r++) {
      const __m512 x = _mm512_set1_ps(source[(size_t)r * (size_t)inputs + (size_t)i]);
#pragma clang loop unroll(full)
      for (int b = 0; b < blocks; b++) sums[r][b] = _mm512_fmadd_ps(x, w[b], sums[r][b]);
    }
  }
  for (; i < prefetchLines; i++) _mm_prefetch(prefetch + (size_t)i * 64, _MM_HINT_T1);
  const __m512 low = _mm512_set1_ps(lower), high = _mm512_set1_ps(upper);
#pragma clang loop unroll(full)
  for (int r = 0; r < rows; r++) {
#pragma clang loop unroll(full)
    for (int b = 0; b < blocks; b++) {
      float *target = output + (size_t)r * (size_t)outputs + b * lanes;
      // Bound first, value second: a NaN stays NaN, as in oneDNN's eltwise post-ops.
      _mm512_storeu_ps(target, _mm512_min_ps(high, _mm512_max_ps(low, sums[r][b])));
    }
  }
}

#define TILE(R, B)                                                                               \
  tile(source, inputs, weights, bias, output, outputs, lower, upper, accumulate, prefetch,     \
       prefetchLines, R, B)
#define ROWS(B)                                                                                  \
  switch (rows) {                                                                                \
  case 1: TILE(1, B); break;                                                                     \
  case 2: TILE(2, B); break;                                                                     \
  case 3: TILE(3, B); break;                                                                     \
  case 4: TILE(4, B); break;                                                                     \
  case 5: TILE(5, B); break;                                                                     \
  case 6: TILE(6, B); break;                                                                     \
  default: TILE(7, B); break;                                                                    \
  }

__attribute__((target("avx512f"))) static void
dispatch(const float *source, int inputs, const float *weights, const float *bias,
         float *output, int outputs, float lower, float upper, int accumulate,
         const char *prefetch, int prefetchLines, int rows, int blocks) {
  switch (blocks) {
  case 1: ROWS(1); break;
  case 2: ROWS(2); break;
  default: ROWS(3); break;
  }
}

// Pixels are walked in chunks whose source rows stay in L2 while every weight group passes over
// them, when the thread's weights are small enough to stay in L2 too; otherwise (stage 4's
// megabytes of weights) in one chunk, so that the weights are read once.
enum { chunkSourceBytes = 128 * 1024, residentWeightBytes = 1536 * 1024 };

__attribute__((target("avx512f"))) static void
blocksOverPixels(const float *source, size_t pixels, int inputs, const float *packed,
                 const float *bias, int outputs, int firstBlock, int endBlock, float lower,
                 float upper, int accumulate, float *destination) {
  const size_t blockFloats = (size_t)inputs * lanes;
  const size_t tiles = (pixels + tileRows - 1) / tileRows;
  for (int group = firstBlock; group < endBlock; group += groupBlocks) {
    const int blocks = endBlock - group < groupBlocks ? endBlock - group : groupBlocks;
    const float *weights = packed + (size_t)group * blockFloats;
    // The next group's weights follow this group's in `packed`: one line per 16 floats.
    const int nextBlocks = endBlock - (group + blocks) < groupBlocks ? endBlock - (group + blocks)
                                                                     : groupBlocks;
    const size_t nextLines = (size_t)nextBlocks * (size_t)inputs;
    const size_t linesPerTile = (nextLines + tiles - 1) / tiles;
    const char *next = (const char *)(weights + (size_t)blocks * blockFloats);
    for (size_t t = 0; t < tiles; t++) {
      const size_t row = t * tileRows;
      const int rows = pixels - row < tileRows ? (int)(pixels - row) : tileRows;
      const size_t firstLine = t * linesPerTile;
      const size_t lines = firstLine >= nextLines ? 0
                           : nextLines - firstLine < linesPerTile ? nextLines - firstLine
                                                                   : linesPerTile;
      dispatch(source + row * (size_t)inputs, inputs, weights,
               bias ? bias + (size_t)group * lanes : NULL,
               destination + row * (size_t)outputs + (size_t)group * lanes, outputs, lower,
               upper, accumulate, next + firstLine * 64, (int)lines, rows, blocks);
    }
  }
}

__attribute__((target("avx512f"))) void
ie_float_conv1x1_avx512(const float *source, size_t pixels, int inputs, const float *packed,
                        const float *bias, int outputs, int firstBlock, int endBlock,
                        float lower, float upper, int accumulate, float *destination) {
  const size_t weightBytes = (size_t)(endBlock - firstBlock) * (size_t)inputs * lanes * 4;
  size_t chunk = pixels;
  if (weightBytes <= residentWeightBytes) {
    const size_t rows = chunkSourceBytes / ((size_t)inputs * 4) / tileRows * tileRows;
    if (rows > 0 && rows < pixels) chunk = rows;
  }
  for (size_t first = 0; first < pixels; first += chunk) {
    const size_t count = pixels - first < chunk ? pixels - first : chunk;
    blocksOverPixels(source + first * (size_t)inputs, count, inputs, packed, bias, outputs,
                     firstBlock, endBlock, lower, upper, accumulate,
                     destination + first * (size_t)outputs);
  }
}

#else

void ie_float_conv1x1_avx512(const float *source, size_t pixels, int inputs, const float *packed,
                             const float *bias, int outputs, int firstBlock, int endBlock,
                             float lower, float upper, int accumulate, float *destination) {
  (void)source, (void)pixels, (void)inputs, (void)packed, (void)bias, (void)outputs;
  (void)firstBlock, (void)endBlock, (void)lower, (void)upper, (void)accumulate;
  (void)destination;
}

#endif
