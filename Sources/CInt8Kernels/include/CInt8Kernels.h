#ifndef IMAGENET_EVAL_CINT8KERNELS_H
#define IMAGENET_EVAL_CINT8KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "QLinearAdd.h"

/// Whether this CPU runs the AVX-512 (F, BW, VL) kernels below (checked once, at run time: the
/// rest of the binary is built for baseline x86-64).
int ie_int8_has_avx512bw(void);

/// `output[i] = table[input[i]]` for `count` bytes, 64 at a time with AVX-512 BW byte shuffles.
/// Only call it when `ie_int8_has_avx512bw()` returns 1. `output` may equal `input`.
void ie_int8_lookup_avx512bw(const uint8_t *input, uint8_t *output, size_t count,
                             const uint8_t *table);

/// The same lookup on `rows` runs of `count` bytes: row r reads `input + r * inputStride` and
/// writes `output + r * outputStride` (a channel slice of channels-last codes).
void ie_int8_lookup_rows_avx512bw(const uint8_t *input, size_t inputStride, uint8_t *output,
                                  size_t outputStride, size_t rows, size_t count,
                                  const uint8_t *table);

/// Quantises pixels `first..<last` of one image of `channels` float planes (plane `ch` starts at
/// `planes + ch * planeStride`) into channels-last codes: the byte of pixel p, channel ch goes to
/// `codes[p * channels + ch]`. Each code is `clamp(x / scale, low, high)` (NaN to 0) rounded half
/// to even plus `zeroPoint`, stored as its low byte: `low`/`high` are the code type's bounds
/// minus the zero point, so the byte is the int8 or uint8 code's bit pattern. Only call it when
/// `ie_int8_has_avx512bw()` returns 1.
void ie_int8_quantize_avx512(const float *planes, size_t channels, size_t planeStride,
                             size_t first, size_t last, float scale, int32_t zeroPoint,
                             float low, float high, uint8_t *codes);

/// Codes `first..<last` of already scaled values (a kernel's float output): each is
/// `clamp(v, low, high)` (NaN to 0) rounded half to even plus `zeroPoint`, its low byte stored
/// at `codes[i]` — `ie_int8_quantize_avx512` of one plane without the division. Only call it
/// when `ie_int8_has_avx512bw()` returns 1.
void ie_int8_store_codes_avx512(const float *values, size_t first, size_t last,
                                int32_t zeroPoint, float low, float high, uint8_t *codes);

/// Codes `first..<last` of an Add of two code tensors as a model defines it in float32:
/// `((a - za)·sa + (b - zb)·sb) / so`, each operation rounded to float32 on its own, then
/// clamped to [low, high] (NaN to 0), rounded half to even, plus `outputZeroPoint`, the low
/// byte stored. `aSigned`/`bSigned`: the operand's bytes are int8 codes (else uint8). Only call
/// it when `ie_int8_has_avx512bw()` returns 1.
void ie_int8_add_float_avx512(const uint8_t *a, int aSigned, int32_t aZeroPoint, float aScale,
                              const uint8_t *b, int bSigned, int32_t bZeroPoint, float bScale,
                              float outputScale, int32_t outputZeroPoint, float low, float high,
                              uint8_t *out, size_t first, size_t last);

/// Writes to `indices` the index of every one of the `count` values whose distance from the
/// nearest `k + 1/2` is below `margin` (`|v - floor(v) - 1/2| < margin`, NaN and infinities
/// never), in order; returns how many. `indices` holds up to `count` entries. Only call it when
/// `ie_int8_has_avx512bw()` returns 1.
size_t ie_int8_near_ties_avx512(const float *values, size_t count, float margin,
                                uint32_t *indices);

#endif
