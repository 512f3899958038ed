// The machine's fp32 FMA peak, measured the way a convolution kernel can at best use it:
// independent vector FMA chains (enough to cover the FMA latency on both FMA ports) on every
// thread at once. bench/engine/run.sh runs it before and after its rounds so that engines'
// GFLOP/s can be read as a fraction of what the cores delivered during that run (a VM's clock
// and neighbours move it by 5-10 % between sessions).
//
// Usage: fma_peak THREADS [SECONDS] -> one line: "fma_peak threads=T isa=avx512|avx2
// gflops=G" (G summed over the threads).
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { chains = 12, chunk = 1 << 20 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
  double seconds;
  double flops;
  float sink;
} Job;

// Each iteration is one FMA on each of the 12 accumulators; the accumulators never depend on
// each other, so throughput, not latency, bounds the loop.
#define FMA_LOOP(vec, set1, fmadd, reduce, lanes)                                              \
  vec a[chains];                                                                               \
  for (int i = 0; i < chains; i++) a[i] = set1(1e-3f * i);                                     \
  const vec b = set1(0.999999f), c = set1(1e-7f);                                              \
  long iterations = 0;                                                                         \
  const double start = now();                                                                  \
  do {                                                                                         \
    for (long n = 0; n < chunk; n++)                                                           \
      for (int i = 0; i < chains; i++) a[i] = fmadd(a[i], b, c);                               \
    iterations += chunk;                                                                       \
  } while (now() - start < job->seconds);                                                      \
  job->seconds = now() - start;                                                                \
  job->flops = 2.0 * lanes * chains * (double)iterations;                                      \
  for (int i = 0; i < chains; i++) job->sink += reduce(a[i]);

__attribute__((target("avx512f"))) static void runAVX512(Job *job) {
  FMA_LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps, 16)
}

__attribute__((target("avx2,fma"))) static float sum256(__m256 v) {
  float lanes[8];
  _mm256_storeu_ps(lanes, v);
  float sum = 0;
  for (int i = 0; i < 8; i++) sum += lanes[i];
  return sum;
}

__attribute__((target("avx2,fma"))) static void runAVX2(Job *job) {
  FMA_LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps, sum256, 8)
}

static int hasAVX512;

static void *run(void *argument) {
  Job *job = argument;
  if (hasAVX512)
    runAVX512(job);
  else
    runAVX2(job);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || atoi(argv[1]) < 1) {
    fprintf(stderr, "usage: fma_peak THREADS [SECONDS]\n");
    return 2;
  }
  const int threads = atoi(argv[1]);
  const double seconds = argc > 2 ? atof(argv[2]) : 1.0;
  __builtin_cpu_init();
  hasAVX512 = __builtin_cpu_supports("avx512f");
  if (!hasAVX512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
    fprintf(stderr, "fma_peak: this CPU has neither AVX-512F nor AVX2+FMA\n");
    return 1;
  }
  pthread_t *ids = calloc(threads, sizeof *ids);
  Job *jobs = calloc(threads, sizeof *jobs);
  for (int t = 0; t < threads; t++) {
    jobs[t].seconds = seconds;
    if (pthread_create(&ids[t], NULL, run, &jobs[t]) != 0) {
      perror("fma_peak: pthread_create");
      return 1;
    }
  }
  double gflops = 0, sink = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(ids[t], NULL);
    gflops += jobs[t].flops / jobs[t].seconds / 1e9;
    sink += jobs[t].sink;
  }
  // The sums keep the compiler from discarding the loops; they are never near this bound.
  if (sink == 1e30) puts("");
  printf("fma_peak threads=%d isa=%s gflops=%.1f\n", threads, hasAVX512 ? "avx512" : "avx2",
         gflops);
  free(ids);
  free(jobs);
  return 0;
}
