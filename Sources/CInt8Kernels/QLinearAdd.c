#include "QLinearAdd.h"

// Every product and sum rounded as written (the fused ones by explicit fma).
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

int ie_int8_has_avx2_fma(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// Eight codes per step: widen to int32, convert to float (exact), two fused multiply-adds,
// clamp to [0, 255] in float (the bounds are integers, so clamping before rounding is the
// same), round half to even (the default MXCSR mode of cvtps2dq), narrow.
__attribute__((target("avx2,fma"))) void ie_int8_qlinear_add_avx2(const uint8_t *a,
                                                                   const uint8_t *b,
                                                                   uint8_t *out, size_t count,
                                                                   float ra, float rb, float k,
                                                                   uint8_t flip) {
  const __m256 vra = _mm256_set1_ps(ra);
  const __m256 vrb = _mm256_set1_ps(rb);
  const __m256 vk = _mm256_set1_ps(k);
  const __m256 low = _mm256_setzero_ps();
  const __m256 high = _mm256_set1_ps(255.0f);
  const __m128i vflip = _mm_set1_epi8((char)flip);
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i qa = _mm_xor_si128(_mm_loadl_epi64((const __m128i *)(a + i)), vflip);
    const __m128i qb = _mm_xor_si128(_mm_loadl_epi64((const __m128i *)(b + i)), vflip);
    const __m256 fa = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(qa));
    const __m256 fb = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(qb));
    __m256 y = _mm256_fmadd_ps(fa, vra, _mm256_fmadd_ps(fb, vrb, vk));
    y = _mm256_min_ps(_mm256_max_ps(y, low), high);
    const __m256i r = _mm256_cvtps_epi32(y);
    const __m128i r16 =
        _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    const __m128i r8 = _mm_xor_si128(_mm_packus_epi16(r16, r16), vflip);
    _mm_storel_epi64((__m128i *)(out + i), r8);
  }
  for (; i < count; i++) {
    float y = fmaf((float)(uint8_t)(a[i] ^ flip), ra, fmaf((float)(uint8_t)(b[i] ^ flip), rb, k));
    y = y < 0.0f ? 0.0f : (y > 255.0f ? 255.0f : y);
    out[i] = (uint8_t)((uint8_t)_mm_cvtss_si32(_mm_set_ss(y)) ^ flip);
  }
}

#else

int ie_int8_has_avx2_fma(void) { return 0; }

void ie_int8_qlinear_add_avx2(const uint8_t *a, const uint8_t *b, uint8_t *out, size_t count,
                              float ra, float rb, float k, uint8_t flip) {
  (void)a, (void)b, (void)out, (void)count, (void)ra, (void)rb, (void)k, (void)flip;
}

#endif

// One definition for every target: on x86-64 the FMA instructions (callers check
// `ie_int8_has_avx2_fma()`), elsewhere the C library's fmaf, rounded once all the same.
#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
#endif
float ie_float_mlas_blocked_dot_fma(const float *row, const float *x, size_t count,
                                    size_t strideK) {
  float sum = 0;
  for (size_t start = 0; start < count; start += strideK) {
    const size_t end = start + strideK < count ? start + strideK : count;
    float acc = 0;
    for (size_t k = start; k < end; k++) acc = __builtin_fmaf(row[k], x[k], acc);
    sum = start == 0 ? acc : acc + sum;
  }
  return sum;
}
