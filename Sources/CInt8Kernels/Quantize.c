#include "CInt8Kernels.h"

#include <string.h>

// No contraction into FMAs anywhere in this file: every product and sum is rounded to float32
// on its own, like the Swift definitions these kernels reproduce.
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include <immintrin.h>

#define IE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

// Sixteen codes: `v = x / scale` (a true IEEE division, not a reciprocal product), v clamped to
// [low, high] (the code range minus the zero point), NaN to 0, rounded half to even, plus the
// zero point. The int32 result lies inside the code type's range, so its low byte is the code's
// bit pattern for int8 and uint8 alike.
IE_AVX512 static inline __m128i codes16(__m512 v, __m512 low, __m512 high, __m512i zeroPoint) {
  __m512 c = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, low, _CMP_LT_OQ), low);
  c = _mm512_mask_mov_ps(c, _mm512_cmp_ps_mask(c, high, _CMP_GT_OQ), high);
  c = _mm512_mask_mov_ps(c, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_setzero_ps());
  const __m512i rounded =
      _mm512_cvt_roundps_epi32(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_cvtepi32_epi8(_mm512_add_epi32(rounded, zeroPoint));
}

IE_AVX512 static inline __m128i quantize16(__m512 x, __m512 scale, __m512 low, __m512 high,
                                           __m512i zeroPoint) {
  return codes16(_mm512_div_ps(x, scale), low, high, zeroPoint);
}

IE_AVX512 void ie_int8_store_codes_avx512(const float *values, size_t first, size_t last,
                                          int32_t zeroPoint, float low, float high,
                                          uint8_t *codes) {
  const __m512 lows = _mm512_set1_ps(low), highs = _mm512_set1_ps(high);
  const __m512i zeroPoints = _mm512_set1_epi32(zeroPoint);
  size_t i = first;
  for (; i + 16 <= last; i += 16) {
    _mm_storeu_si128((__m128i *)(codes + i),
                     codes16(_mm512_loadu_ps(values + i), lows, highs, zeroPoints));
  }
  if (i < last) {
    const __mmask16 tail = (__mmask16)((1U << (last - i)) - 1);
    _mm_mask_storeu_epi8(codes + i, tail,
                         codes16(_mm512_maskz_loadu_ps(tail, values + i), lows, highs,
                                 zeroPoints));
  }
}

IE_AVX512 void ie_int8_quantize_avx512(const float *planes, size_t channels, size_t planeStride,
                                       size_t first, size_t last, float scale, int32_t zeroPoint,
                                       float low, float high, uint8_t *codes) {
  if (first >= last || channels == 0) return;
  const __m512 scales = _mm512_set1_ps(scale);
  const __m512 lows = _mm512_set1_ps(low);
  const __m512 highs = _mm512_set1_ps(high);
  const __m512i zeroPoints = _mm512_set1_epi32(zeroPoint);
  size_t p = first;
  if (channels == 1) {
    for (; p + 16 <= last; p += 16) {
      _mm_storeu_si128((__m128i *)(codes + p),
                       quantize16(_mm512_loadu_ps(planes + p), scales, lows, highs, zeroPoints));
    }
    if (p < last) {
      const __mmask16 tail = (__mmask16)((1U << (last - p)) - 1);
      _mm_mask_storeu_epi8(codes + p, tail,
                           quantize16(_mm512_maskz_loadu_ps(tail, planes + p), scales, lows,
                                      highs, zeroPoints));
    }
    return;
  }
  if (channels == 3) {
    // RGB: sixteen codes of each plane interleave into 48 bytes with nine byte shuffles.
    // Output byte j of block b comes from plane (16b + j) % 3, pixel (16b + j) / 3; a
    // shuffle index with bit 7 set writes 0, so the three planes' shuffles are ORed.
    __m128i interleave[3][3];
    for (int b = 0; b < 3; b++) {
      for (int plane = 0; plane < 3; plane++) {
        uint8_t index[16];
        for (int j = 0; j < 16; j++) {
          const int position = 16 * b + j;
          index[j] = position % 3 == plane ? (uint8_t)(position / 3) : 0x80;
        }
        interleave[b][plane] = _mm_loadu_si128((const __m128i *)index);
      }
    }
    const float *r = planes, *g = planes + planeStride, *bl = planes + 2 * planeStride;
    for (; p + 16 <= last; p += 16) {
      const __m128i cr = quantize16(_mm512_loadu_ps(r + p), scales, lows, highs, zeroPoints);
      const __m128i cg = quantize16(_mm512_loadu_ps(g + p), scales, lows, highs, zeroPoints);
      const __m128i cb = quantize16(_mm512_loadu_ps(bl + p), scales, lows, highs, zeroPoints);
      uint8_t *out = codes + 3 * p;
      for (int b = 0; b < 3; b++) {
        const __m128i block =
            _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(cr, interleave[b][0]),
                                      _mm_shuffle_epi8(cg, interleave[b][1])),
                         _mm_shuffle_epi8(cb, interleave[b][2]));
        _mm_storeu_si128((__m128i *)(out + 16 * b), block);
      }
    }
  }
  // Any other channel count, and the last pixels of three: codes of each plane through a
  // small buffer into their channel slots.
  uint8_t buffer[16];
  while (p < last) {
    const size_t n = last - p < 16 ? last - p : 16;
    const __mmask16 lanes = (__mmask16)((1U << n) - 1);
    for (size_t ch = 0; ch < channels; ch++) {
      const __m512 x = _mm512_maskz_loadu_ps(lanes, planes + ch * planeStride + p);
      _mm_storeu_si128((__m128i *)buffer, quantize16(x, scales, lows, highs, zeroPoints));
      uint8_t *out = codes + p * channels + ch;
      for (size_t j = 0; j < n; j++) out[j * channels] = buffer[j];
    }
    p += n;
  }
}

// Sixteen codes of one operand as float32 real values: `(q - zeroPoint) · scale`.
IE_AVX512 static inline __m512 dequantize16(const uint8_t *codes, __mmask16 lanes, int isSigned,
                                            __m512i zeroPoint, __m512 scale) {
  const __m128i bytes = _mm_maskz_loadu_epi8(lanes, codes);
  const __m512i wide = isSigned ? _mm512_cvtepi8_epi32(bytes) : _mm512_cvtepu8_epi32(bytes);
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(wide, zeroPoint)), scale);
}

IE_AVX512 void ie_int8_add_float_avx512(const uint8_t *a, int aSigned, int32_t aZeroPoint,
                                        float aScale, const uint8_t *b, int bSigned,
                                        int32_t bZeroPoint, float bScale, float outputScale,
                                        int32_t outputZeroPoint, float low, float high,
                                        uint8_t *out, size_t first, size_t last) {
  const __m512i za = _mm512_set1_epi32(aZeroPoint), zb = _mm512_set1_epi32(bZeroPoint);
  const __m512 sa = _mm512_set1_ps(aScale), sb = _mm512_set1_ps(bScale);
  const __m512 so = _mm512_set1_ps(outputScale);
  const __m512 lows = _mm512_set1_ps(low), highs = _mm512_set1_ps(high);
  const __m512i zo = _mm512_set1_epi32(outputZeroPoint);
  for (size_t i = first; i < last; i += 16) {
    const __mmask16 lanes =
        last - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1U << (last - i)) - 1);
    const __m512 sum = _mm512_add_ps(dequantize16(a + i, lanes, aSigned, za, sa),
                                     dequantize16(b + i, lanes, bSigned, zb, sb));
    _mm_mask_storeu_epi8(out + i, lanes, codes16(_mm512_div_ps(sum, so), lows, highs, zo));
  }
}

IE_AVX512 size_t ie_int8_near_ties_avx512(const float *values, size_t count, float margin,
                                          uint32_t *indices) {
  const __m512 half = _mm512_set1_ps(0.5f), margins = _mm512_set1_ps(margin);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  size_t found = 0;
  for (size_t i = 0; i < count; i += 16) {
    const __mmask16 valid =
        count - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1U << (count - i)) - 1);
    const __m512 y = _mm512_maskz_loadu_ps(valid, values + i);
    // y - floor(y) and its distance from 1/2 are exact in float32, as in the Swift test.
    const __m512 fraction =
        _mm512_sub_ps(y, _mm512_roundscale_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
    const __m512 distance = _mm512_abs_ps(_mm512_sub_ps(fraction, half));
    const __mmask16 near = _mm512_mask_cmp_ps_mask(valid, distance, margins, _CMP_LT_OQ);
    if (near) {
      _mm512_mask_compressstoreu_epi32(indices + found, near,
                                       _mm512_add_epi32(lanes, _mm512_set1_epi32((int)i)));
      found += (size_t)__builtin_popcount(near);
    }
  }
  return found;
}

#else

size_t ie_int8_near_ties_avx512(const float *values, size_t count, float margin,
                                uint32_t *indices) {
  size_t found = 0;
  for (size_t i = 0; i < count; i++) {
    const float d = values[i] - __builtin_floorf(values[i]) - 0.5f;
    if ((d < 0 ? -d : d) < margin) indices[found++] = (uint32_t)i;
  }
  return found;
}

static uint8_t quantizeOne(float x, float scale, int32_t zeroPoint, float low, float high) {
  const float v = x / scale;
  const float c = v != v ? 0 : (v < low ? low : (v > high ? high : v));
  return (uint8_t)((int32_t)__builtin_rintf(c) + zeroPoint);
}

void ie_int8_add_float_avx512(const uint8_t *a, int aSigned, int32_t aZeroPoint, float aScale,
                              const uint8_t *b, int bSigned, int32_t bZeroPoint, float bScale,
                              float outputScale, int32_t outputZeroPoint, float low, float high,
                              uint8_t *out, size_t first, size_t last) {
  for (size_t i = first; i < last; i++) {
    const int32_t qa = aSigned ? (int8_t)a[i] : a[i], qb = bSigned ? (int8_t)b[i] : b[i];
    const float sum = (float)(qa - aZeroPoint) * aScale + (float)(qb - bZeroPoint) * bScale;
    out[i] = quantizeOne(sum, outputScale, outputZeroPoint, low, high);
  }
}

void ie_int8_store_codes_avx512(const float *values, size_t first, size_t last,
                                int32_t zeroPoint, float low, float high, uint8_t *codes) {
  for (size_t i = first; i < last; i++)
    codes[i] = quantizeOne(values[i], 1, zeroPoint, low, high);
}

void ie_int8_quantize_avx512(const float *planes, size_t channels, size_t planeStride,
                             size_t first, size_t last, float scale, int32_t zeroPoint,
                             float low, float high, uint8_t *codes) {
  for (size_t p = first; p < last; p++) {
    for (size_t ch = 0; ch < channels; ch++) {
      codes[p * channels + ch] =
          quantizeOne(planes[ch * planeStride + p], scale, zeroPoint, low, high);
    }
  }
}


#endif
