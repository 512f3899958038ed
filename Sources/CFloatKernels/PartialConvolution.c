#include "CFloatKernels.h"

#include <string.h>

// FasterNet's partial convolution (a 3x3 convolution over the first p of C channels, the rest
// passed through) costs oneDNN four primitives per block at batch 1: a reorder of the strided
// channel slice to a dense buffer (a convolution reading the slice in place runs oneDNN's
// reference kernel), the convolution, a reorder writing the result back, and a reorder
// restoring the original channels for the residual sum. Each is a parallel region with its own
// fork and join. Here the slice is copied once into a zero-padded dense buffer (which then also
// serves as the saved copy), and the convolution reads that buffer and writes straight into the
// strided slice: two phases of one parallel region, plus the restore.

enum { lanes = 16, taps = 9 };

static int blockCount(int channels) { return (channels + lanes - 1) / lanes; }

size_t ie_float_conv3x3_packed_count(int channels) {
  return (size_t)blockCount(channels) * taps * (size_t)channels * lanes;
}

// Block b of 16 output channels, tap t, input channel i: the 16 weights of b's channels, zero
// past the last channel, so that every block loads whole vectors.
void ie_float_conv3x3_pack(const float *weights, int channels, float *packed) {
  const size_t count = ie_float_conv3x3_packed_count(channels);
  memset(packed, 0, count * sizeof(float));
  for (int o = 0; o < channels; o++) {
    for (int i = 0; i < channels; i++) {
      for (int t = 0; t < taps; t++) {
        const size_t block = (size_t)(o / lanes);
        packed[((block * taps + (size_t)t) * (size_t)channels + (size_t)i) * lanes
               + (size_t)(o % lanes)] = weights[((size_t)o * (size_t)channels + (size_t)i) * taps
                                                + (size_t)t];
      }
    }
  }
}


#if defined(__x86_64__)
#include <immintrin.h>

// One tile: `pixels` output pixels of one row by `blocks` blocks of 16 output channels, all
// accumulators in registers. `rows` holds the three padded input rows (pixel-major, `channels`
// floats per pixel, `rowStride` floats per row) from the tile's first column; `weights` is the
// tile's first block; `last` masks the final block's store. Always inlined with constant
// `pixels` and `blocks` so that the accumulator array becomes registers.
__attribute__((target("avx512f"), always_inline)) static inline void
tile(const float *rows, size_t rowStride, int channels, const float *weights,
     const float *bias, float *output, size_t pixelStride, __mmask16 last, const int pixels,
     const int blocks) {
  __m512 sums[14][4];
  const size_t blockStride = (size_t)taps * (size_t)channels * lanes;
#pragma clang loop unroll(full)
  for (int b = 0; b < blocks; b++) {
    const __m512 initial =
        bias ? _mm512_maskz_loadu_ps(b == blocks - 1 ? last : 0xFFFF, bias + b * lanes)
             : _mm512_setzero_ps();
#pragma clang loop unroll(full)
    for (int p = 0; p < pixels; p++) sums[p][b] = initial;
  }
  for (int t = 0; t < taps; t++) {
    const float *source = rows + (size_t)(t / 3) * rowStride + (size_t)(t % 3) * (size_t)channels;
    const float *w = weights + (size_t)t * (size_t)channels * lanes;
    for (int i = 0; i < channels; i++) {
      __m512 column[4];
#pragma clang loop unroll(full)
      for (int b = 0; b < blocks; b++) column[b] = _mm512_loadu_ps(w + b * blockStride + i * lanes);
#pragma clang loop unroll(full)
      for (int p = 0; p < pixels; p++) {
        const __m512 x = _mm512_set1_ps(source[p * channels + i]);
#pragma clang loop unroll(full)
        for (int b = 0; b < blocks; b++) sums[p][b] = _mm512_fmadd_ps(x, column[b], sums[p][b]);
      }
    }
  }
#pragma clang loop unroll(full)
  for (int p = 0; p < pixels; p++) {
#pragma clang loop unroll(full)
    for (int b = 0; b < blocks; b++) {
      _mm512_mask_storeu_ps(output + (size_t)p * pixelStride + b * lanes,
                            b == blocks - 1 ? last : 0xFFFF, sums[p][b]);
    }
  }
}

// Most pixels per tile for 1...4 blocks: accumulators plus one weight vector per block stay
// within the 32 vector registers.
static const int maximumPixels[5] = {0, 14, 12, 8, 6};

#define TILE_CASE(P, B)                                                                        \
  case P:                                                                                      \
    tile(rows, rowStride, channels, weights, bias, output, pixelStride, last, P, B);           \
    break;

#define TILES_UP_TO_6(B)                                                                       \
  TILE_CASE(1, B) TILE_CASE(2, B) TILE_CASE(3, B) TILE_CASE(4, B) TILE_CASE(5, B) TILE_CASE(6, B)

__attribute__((target("avx512f"))) static void
anyTile(const float *rows, size_t rowStride, int channels, const float *weights,
        const float *bias, float *output, size_t pixelStride, __mmask16 last, int pixels,
        int blocks) {
  switch (blocks) {
  case 1:
    switch (pixels) {
      TILES_UP_TO_6(1)
      TILE_CASE(7, 1)
      TILE_CASE(8, 1)
      TILE_CASE(9, 1)
      TILE_CASE(10, 1)
      TILE_CASE(11, 1)
      TILE_CASE(12, 1)
      TILE_CASE(13, 1)
      TILE_CASE(14, 1)
    }
    break;
  case 2:
    switch (pixels) {
      TILES_UP_TO_6(2)
      TILE_CASE(7, 2)
      TILE_CASE(8, 2)
      TILE_CASE(9, 2)
      TILE_CASE(10, 2)
      TILE_CASE(11, 2)
      TILE_CASE(12, 2)
    }
    break;
  case 3:
    switch (pixels) {
      TILES_UP_TO_6(3)
      TILE_CASE(7, 3)
      TILE_CASE(8, 3)
    }
    break;
  case 4:
    switch (pixels) { TILES_UP_TO_6(4) }
    break;
  }
}

size_t ie_float_conv3x3_padded_count(int images, int height, int width, int channels) {
  return (size_t)images * (size_t)(height + 2) * (size_t)(width + 2) * (size_t)channels;
}

// Where row `row` (of all images' rows) starts in the padded copy: past its image's zero top
// row and the row's zero first column.
static size_t paddedRowOffset(int height, int width, int channels, size_t row) {
  const size_t image = row / (size_t)height, y = row % (size_t)height;
  return ((image * (size_t)(height + 2) + y + 1) * (size_t)(width + 2) + 1) * (size_t)channels;
}

__attribute__((target("avx512f"))) static void
copyChannels(const float *source, size_t sourceStride, float *target, size_t targetStride,
             int pixels, int channels) {
  for (int x = 0; x < pixels; x++) {
    for (int c = 0; c < channels; c += lanes) {
      const __mmask16 mask =
          channels - c >= lanes ? 0xFFFF : (__mmask16)((1u << (channels - c)) - 1);
      _mm512_mask_storeu_ps(target + c, mask, _mm512_maskz_loadu_ps(mask, source + c));
    }
    source += sourceStride;
    target += targetStride;
  }
}

__attribute__((target("avx512f"))) void
ie_float_conv3x3_gather_avx512(const float *source, int height, int width, int totalChannels,
                               int channels, size_t firstRow, size_t endRow, float *padded) {
  for (size_t row = firstRow; row < endRow; row++) {
    copyChannels(source + row * (size_t)width * (size_t)totalChannels, (size_t)totalChannels,
                 padded + paddedRowOffset(height, width, channels, row), (size_t)channels, width,
                 channels);
  }
}

__attribute__((target("avx512f"))) void
ie_float_conv3x3_scatter_avx512(const float *padded, int height, int width, int totalChannels,
                                int channels, size_t firstRow, size_t endRow, float *destination) {
  for (size_t row = firstRow; row < endRow; row++) {
    copyChannels(padded + paddedRowOffset(height, width, channels, row), (size_t)channels,
                 destination + row * (size_t)width * (size_t)totalChannels,
                 (size_t)totalChannels, width, channels);
  }
}

__attribute__((target("avx512f"))) void
ie_float_conv3x3_rows_avx512(const float *padded, const float *packed, const float *bias,
                             int height, int width, int totalChannels, int channels,
                             size_t firstRow, size_t endRow, float *destination) {
  const int blocks = blockCount(channels);
  // Balanced groups of at most four blocks, balanced tiles of at most maximumPixels pixels.
  const int groups = (blocks + 3) / 4;
  const size_t rowStride = (size_t)(width + 2) * (size_t)channels;
  const size_t blockStride = (size_t)taps * (size_t)channels * lanes;
  const int remainder = channels % lanes;
  const __mmask16 partial = remainder ? (__mmask16)((1u << remainder) - 1) : 0xFFFF;
  for (size_t row = firstRow; row < endRow; row++) {
    // The tap rows start one row up and one column left of the output pixel.
    const float *rows =
        padded + paddedRowOffset(height, width, channels, row) - rowStride - (size_t)channels;
    float *outputRow = destination + row * (size_t)width * (size_t)totalChannels;
    int firstBlock = 0;
    for (int g = 0; g < groups; g++) {
      const int groupBlocks = blocks / groups + (g < blocks % groups ? 1 : 0);
      const __mmask16 last = firstBlock + groupBlocks == blocks ? partial : 0xFFFF;
      const int tiles = (width + maximumPixels[groupBlocks] - 1) / maximumPixels[groupBlocks];
      int x = 0;
      for (int t = 0; t < tiles; t++) {
        const int pixels = width / tiles + (t < width % tiles ? 1 : 0);
        anyTile(rows + (size_t)x * (size_t)channels, rowStride, channels,
                packed + (size_t)firstBlock * blockStride, bias ? bias + firstBlock * lanes : 0,
                outputRow + (size_t)x * (size_t)totalChannels + (size_t)firstBlock * lanes,
                (size_t)totalChannels, last, pixels, groupBlocks);
        x += pixels;
      }
      firstBlock += groupBlocks;
    }
  }
}

#else

void ie_float_conv3x3_gather_avx512(const float *source, int height, int width, int totalChannels,
                                    int channels, size_t firstRow, size_t endRow, float *padded) {
  (void)source, (void)height, (void)width, (void)totalChannels, (void)channels;
  (void)firstRow, (void)endRow, (void)padded;
}

void ie_float_conv3x3_scatter_avx512(const float *padded, int height, int width,
                                     int totalChannels, int channels, size_t firstRow,
                                     size_t endRow, float *destination) {
  (void)padded, (void)height, (void)width, (void)totalChannels, (void)channels;
  (void)firstRow, (void)endRow, (void)destination;
}

void ie_float_conv3x3_rows_avx512(const float *padded, const float *packed, const float *bias,
                                  int height, int width, int totalChannels, int channels,
                                  size_t firstRow, size_t endRow, float *destination) {
  (void)padded, (void)packed, (void)bias, (void)height, (void)width, (void)totalChannels;
  (void)channels, (void)firstRow, (void)endRow, (void)destination;
}

#endif
