#ifndef IMAGENET_EVAL_QLINEARADD_H
#define IMAGENET_EVAL_QLINEARADD_H

#include <stddef.h>
#include <stdint.h>

/// Whether this CPU runs `ie_int8_qlinear_add_avx2` (AVX2 and FMA, checked at run time).
int ie_int8_has_avx2_fma(void);

/// onnxruntime's QLinearAdd on uint8 codes: `out = clamp(round_half_even(fma(ua, ra, fma(ub,
/// rb, k))), 0, 255)` with `ua = a[i] ^ flip`, `ub = b[i] ^ flip`, and the result stored
/// `^ flip` (flip 0x80 maps int8 codes to their uint8 code + 128 and back). Each fma is
/// rounded once to float32, exactly as MLAS's kernel. Only call when
/// `ie_int8_has_avx2_fma()` returns 1.
void ie_int8_qlinear_add_avx2(const uint8_t *a, const uint8_t *b, uint8_t *out, size_t count,
                              float ra, float rb, float k, uint8_t flip);

/// MLAS's SGEMM sum of one output element: `count` products in blocks of `strideK`, each block
/// accumulated from 0 by fused multiply-adds in order (each rounded once), the blocks added in
/// order (`acc + sum`). Only call when `ie_int8_has_avx2_fma()` returns 1.
float ie_float_mlas_blocked_dot_fma(const float *row, const float *x, size_t count,
                                    size_t strideK);

#endif
