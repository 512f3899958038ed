#ifndef IMAGENET_EVAL_CINT8KERNELS_H
#define IMAGENET_EVAL_CINT8KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "QLinearAdd.h"

/// Whether this CPU runs the AVX-512 BW kernels below (checked once, at run time: the rest of the
/// binary is built for baseline x86-64).
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

#endif
