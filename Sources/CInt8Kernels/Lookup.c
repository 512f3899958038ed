#include "CInt8Kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

int ie_int8_has_avx512bw(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512f");
}

// A 256-entry byte table is sixteen 16-entry rows. `vpshufb` looks up the low nibble in one row
// (per 128-bit lane, so each row is broadcast to all four lanes), and a byte mask from comparing
// the high nibble with the row number picks which bytes take that row's result.
__attribute__((target("avx512f,avx512bw"))) static inline __m512i
lookup64(__m512i x, const __m512i rows[16]) {
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  const __m512i low = _mm512_and_si512(x, nibble);
  const __m512i high = _mm512_and_si512(_mm512_srli_epi16(x, 4), nibble);
  __m512i result = _mm512_setzero_si512();
  for (int row = 0; row < 16; row++) {
    const __mmask64 selected = _mm512_cmpeq_epi8_mask(high, _mm512_set1_epi8((char)row));
    result = _mm512_mask_shuffle_epi8(result, selected, rows[row], low);
  }
  return result;
}

__attribute__((target("avx512f,avx512bw"))) static inline void
loadRows(const uint8_t *table, __m512i rows[16]) {
  for (int row = 0; row < 16; row++) {
    rows[row] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(table + 16 * row)));
  }
}

__attribute__((target("avx512f,avx512bw"))) static inline void
lookupRun(const uint8_t *input, uint8_t *output, size_t count, const __m512i rows[16]) {
  size_t i = 0;
  for (; i + 64 <= count; i += 64) {
    const __m512i x = _mm512_loadu_si512((const void *)(input + i));
    _mm512_storeu_si512((void *)(output + i), lookup64(x, rows));
  }
  if (i < count) {
    const __mmask64 tail = (1ULL << (count - i)) - 1;  // count - i < 64
    const __m512i x = _mm512_maskz_loadu_epi8(tail, input + i);
    _mm512_mask_storeu_epi8(output + i, tail, lookup64(x, rows));
  }
}

__attribute__((target("avx512f,avx512bw"))) void
ie_int8_lookup_avx512bw(const uint8_t *input, uint8_t *output, size_t count,
                        const uint8_t *table) {
  __m512i rows[16];
  loadRows(table, rows);
  lookupRun(input, output, count, rows);
}

__attribute__((target("avx512f,avx512bw"))) void
ie_int8_lookup_rows_avx512bw(const uint8_t *input, size_t inputStride, uint8_t *output,
                             size_t outputStride, size_t rows, size_t count,
                             const uint8_t *table) {
  __m512i tableRows[16];
  loadRows(table, tableRows);
  for (size_t r = 0; r < rows; r++) {
    lookupRun(input + r * inputStride, output + r * outputStride, count, tableRows);
  }
}

#else

int ie_int8_has_avx512bw(void) { return 0; }

void ie_int8_lookup_avx512bw(const uint8_t *input, uint8_t *output, size_t count,
                             const uint8_t *table) {
  for (size_t i = 0; i < count; i++) output[i] = table[input[i]];
}

void ie_int8_lookup_rows_avx512bw(const uint8_t *input, size_t inputStride, uint8_t *output,
                                  size_t outputStride, size_t rows, size_t count,
                                  const uint8_t *table) {
  for (size_t r = 0; r < rows; r++) {
    ie_int8_lookup_avx512bw(input + r * inputStride, output + r * outputStride, count, table);
  }
}

#endif
