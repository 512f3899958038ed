#ifndef IMAGENET_EVAL_CFLOATKERNELS_H
#define IMAGENET_EVAL_CFLOATKERNELS_H

#include <stddef.h>

/// Whether this CPU runs `ie_float_gelu_avx512` (AVX-512 F; checked once, at run time: the rest
/// of the binary is built for baseline x86-64).
int ie_float_has_avx512f(void);

/// `output[i] = GELU(input[i]) = input[i] * Phi(input[i])` (the erf form) for `count` floats,
/// 16 at a time. Within 2.5e-7 * max(1, |x|) of the exact value for finite x; NaN stays NaN,
/// +inf gives +inf and -inf gives NaN, as `x * (1 + erf(x / sqrt 2)) / 2` does. `output` may
/// equal `input`. Only call it when `ie_float_has_avx512f()` returns 1.
void ie_float_gelu_avx512(const float *input, float *output, size_t count);

/// A 3x3 convolution, stride 1, padding 1, `channels` inputs to `channels` outputs, over the first
/// `channels` of the `totalChannels` channels of a channels-last (NHWC) tensor, written back over
/// those same channels (FasterNet's partial convolution). Rows are all images' rows, `images *
/// height`, so that a team can split them. A run is: every thread gathers its rows into the
/// padded copy, a barrier, every thread convolves its rows; the copy then keeps the original
/// channels until `ie_float_conv3x3_scatter_avx512` puts them back. Only call the `_avx512`
/// functions when `ie_float_has_avx512f()` returns 1.

/// Floats of the packed weights for `channels` input and output channels.
size_t ie_float_conv3x3_packed_count(int channels);

/// Packs ONNX-order weights [out][in][3][3] for the kernel (blocks of 16 output channels).
void ie_float_conv3x3_pack(const float *weights, int channels, float *packed);

/// Floats of the zero-padded copy: `images` images of (height + 2) x (width + 2) pixels of
/// `channels` floats. Its border must be zero (it is never written).
size_t ie_float_conv3x3_padded_count(int images, int height, int width, int channels);

/// Copies channels 0..<channels of rows firstRow..<endRow of `source` into the padded copy.
void ie_float_conv3x3_gather_avx512(const float *source, int height, int width, int totalChannels,
                                    int channels, size_t firstRow, size_t endRow, float *padded);

/// Copies rows firstRow..<endRow of the padded copy back into channels 0..<channels of
/// `destination`.
void ie_float_conv3x3_scatter_avx512(const float *padded, int height, int width,
                                     int totalChannels, int channels, size_t firstRow,
                                     size_t endRow, float *destination);

/// Output rows firstRow..<endRow of the convolution of the padded copy (plus `bias`, which may be
/// null), into channels 0..<channels of `destination`. Reads the rows above and below the range
/// from the copy: gather them all first.
void ie_float_conv3x3_rows_avx512(const float *padded, const float *packed, const float *bias,
                                  int height, int width, int totalChannels, int channels,
                                  size_t firstRow, size_t endRow, float *destination);

/// A 1x1 convolution (stride 1, no padding, one group) of `pixels` channels-last pixels of
/// `inputs` channels to `outputs` channels (a multiple of 16): output blocks of 16 channels
/// `firstBlock..<endBlock` of every pixel, so that a team can split the blocks. Each value is
/// the sum over inputs plus `bias` (may be null), plus the destination's previous value when
/// `accumulate` is 1 (a fused residual sum), then bounded to [lower, upper] (ReLU: 0, +inf;
/// none: -inf, +inf); NaN stays NaN. A team may also split the pixels (each thread passing its
/// rows of `source` and `destination` and every block). Only call it when
/// `ie_float_has_avx512f()` returns 1; `packed` must be 64-byte aligned.

/// Pixels per tile of `ie_float_conv1x1_avx512`: a team splitting pixels splits whole tiles.
enum { ie_float_conv1x1_tile_pixels = 7 };

/// Floats of the packed weights.
size_t ie_float_conv1x1_packed_count(int inputs, int outputs);

/// Packs ONNX-order weights [out][in] (blocks of 16 output channels).
void ie_float_conv1x1_pack(const float *weights, int inputs, int outputs, float *packed);

void ie_float_conv1x1_avx512(const float *source, size_t pixels, int inputs, const float *packed,
                             const float *bias, int outputs, int firstBlock, int endBlock,
                             float lower, float upper, int accumulate, float *destination);

#endif
