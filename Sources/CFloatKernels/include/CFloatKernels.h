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

#endif
