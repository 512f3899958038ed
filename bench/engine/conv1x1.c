// One 1x1 convolution (channels-last, ReLU) by the float engine's AVX-512 kernel
// (Sources/CFloatKernels/PointwiseConvolution.c, compiled into this program) and by oneDNN's
// convolution primitive (the engine's other choice), interleaved run by run, with the weights
// cold as in a model: each run uses the next of COPIES copies of weights and input (more bytes
// than L2 holds), so every run reads its weights from L3 or memory.
//
// Usage: conv1x1 INPUTS OUTPUTS SIDE [IMAGES] (pixels = IMAGES * SIDE * SIDE); THREADS in the
// environment (default 2) sets both sides' threads. Prints p10/p50 milliseconds of each side,
// the p50 ratio, and each side's max |difference| from a double-precision reference.
#include <dnnl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../Sources/CFloatKernels/PointwiseConvolution.c"

// The kernel runs on the same libgomp team oneDNN uses, as in the engine (KernelTeam).
extern void GOMP_parallel(void (*)(void *), void *, unsigned, unsigned);
extern int omp_get_thread_num(void);
extern int omp_get_num_threads(void);

enum { copies = 24, runs = 300 };

#define CHECK(call)                                                                              \
  do {                                                                                           \
    dnnl_status_t status = (call);                                                               \
    if (status != dnnl_success) {                                                                \
      fprintf(stderr, "%s:%d: oneDNN status %d\n", __FILE__, __LINE__, (int)status);            \
      exit(1);                                                                                   \
    }                                                                                            \
  } while (0)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int ascending(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

struct job {
  const float *source, *packed, *bias;
  float *destination;
  size_t pixels;
  int inputs, outputs;
};

static void share(void *raw) {
  const struct job *j = raw;
  int blocks = j->outputs / 16, me = omp_get_thread_num(), team = omp_get_num_threads();
  ie_float_conv1x1_avx512(j->source, j->pixels, j->inputs, j->packed, j->bias, j->outputs,
                          blocks * me / team, blocks * (me + 1) / team, 0.f, INFINITY, 0,
                          j->destination);
}

static float *floats(size_t count) { return aligned_alloc(64, (count * 4 + 63) / 64 * 64); }

static double maxDifference(const float *a, const double *b, size_t count) {
  double worst = 0;
  for (size_t i = 0; i < count; i++) worst = fmax(worst, fabs(a[i] - b[i]));
  return worst;
}

int main(int argc, char **argv) {
  if (argc < 4 || !__builtin_cpu_supports("avx512f")) {
    fprintf(stderr, "usage: conv1x1 INPUTS OUTPUTS SIDE [IMAGES] (needs AVX-512 F)\n");
    return 2;
  }
  const int inputs = atoi(argv[1]), outputs = atoi(argv[2]), side = atoi(argv[3]);
  const int images = argc > 4 ? atoi(argv[4]) : 1;
  const int threads = getenv("THREADS") ? atoi(getenv("THREADS")) : 2;
  const size_t pixels = (size_t)images * side * side;
  if (outputs % 16 != 0) {
    fprintf(stderr, "OUTPUTS must be a multiple of 16\n");
    return 2;
  }

  float *source[copies], *weights[copies], *packed[copies];
  float *bias = floats(outputs), *destination = floats(pixels * outputs);
  srand(1);
  for (int o = 0; o < outputs; o++) bias[o] = rand() / (float)RAND_MAX - 0.5f;
  for (int c = 0; c < copies; c++) {
    source[c] = floats(pixels * inputs);
    weights[c] = floats((size_t)inputs * outputs);
    packed[c] = floats(ie_float_conv1x1_packed_count(inputs, outputs));
    for (size_t i = 0; i < pixels * inputs; i++) source[c][i] = rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < (size_t)inputs * outputs; i++)
      weights[c][i] = rand() / (float)RAND_MAX - 0.5f;
    ie_float_conv1x1_pack(weights[c], inputs, outputs, packed[c]);
  }
  double *reference = malloc(pixels * outputs * sizeof(double));
  for (size_t p = 0; p < pixels; p++) {
    for (int o = 0; o < outputs; o++) {
      double sum = bias[o];
      for (int i = 0; i < inputs; i++)
        sum += (double)source[0][p * inputs + i] * weights[0][(size_t)o * inputs + i];
      reference[p * outputs + o] = sum > 0 ? sum : 0;
    }
  }

  // oneDNN: the engine's convolution (NHWC activations, weights in the layout it picks).
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
  CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
  dnnl_memory_desc_t sourceDesc, weightsAny, weightsPlain, biasDesc, destinationDesc;
  dnnl_dims_t sourceDims = {images, inputs, side, side}, weightDims = {outputs, inputs, 1, 1};
  dnnl_dims_t destinationDims = {images, outputs, side, side}, biasDims = {outputs};
  CHECK(dnnl_memory_desc_init_by_tag(&sourceDesc, 4, sourceDims, dnnl_f32, dnnl_nhwc));
  CHECK(dnnl_memory_desc_init_by_tag(&destinationDesc, 4, destinationDims, dnnl_f32, dnnl_nhwc));
  CHECK(dnnl_memory_desc_init_by_tag(&weightsAny, 4, weightDims, dnnl_f32, dnnl_format_tag_any));
  CHECK(dnnl_memory_desc_init_by_tag(&weightsPlain, 4, weightDims, dnnl_f32, dnnl_oihw));
  CHECK(dnnl_memory_desc_init_by_tag(&biasDesc, 1, biasDims, dnnl_f32, dnnl_x));
  dnnl_convolution_desc_t convolution;
  dnnl_dims_t strides = {1, 1}, padding = {0, 0};
  CHECK(dnnl_convolution_forward_desc_init(&convolution, dnnl_forward_inference,
                                           dnnl_convolution_direct, &sourceDesc, &weightsAny,
                                           &biasDesc, &destinationDesc, strides, padding,
                                           padding));
  dnnl_post_ops_t postOps;
  dnnl_primitive_attr_t attributes;
  CHECK(dnnl_post_ops_create(&postOps));
  CHECK(dnnl_post_ops_append_eltwise(postOps, 1, dnnl_eltwise_relu, 0, 0));
  CHECK(dnnl_primitive_attr_create(&attributes));
  CHECK(dnnl_primitive_attr_set_post_ops(attributes, postOps));
  dnnl_primitive_desc_t descriptor;
  CHECK(dnnl_primitive_desc_create(&descriptor, &convolution, attributes, engine, NULL));
  const char *implementation;
  CHECK(dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &implementation));
  const dnnl_memory_desc_t *weightsDesc =
      dnnl_primitive_desc_query_md(descriptor, dnnl_query_weights_md, 0);
  dnnl_primitive_t primitive;
  CHECK(dnnl_primitive_create(&primitive, descriptor));
  dnnl_memory_t sourceMemory[copies], weightsMemory[copies], destinationMemory, biasMemory;
  for (int c = 0; c < copies; c++) {
    dnnl_memory_t plain;
    dnnl_primitive_desc_t reorderDesc;
    dnnl_primitive_t reorder;
    CHECK(dnnl_memory_create(&sourceMemory[c], &sourceDesc, engine, source[c]));
    CHECK(dnnl_memory_create(&plain, &weightsPlain, engine, weights[c]));
    CHECK(dnnl_memory_create(&weightsMemory[c], weightsDesc, engine, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_reorder_primitive_desc_create(&reorderDesc, &weightsPlain, engine, weightsDesc,
                                             engine, NULL));
    CHECK(dnnl_primitive_create(&reorder, reorderDesc));
    dnnl_exec_arg_t arguments[2] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, weightsMemory[c]}};
    CHECK(dnnl_primitive_execute(reorder, stream, 2, arguments));
    CHECK(dnnl_stream_wait(stream));
  }
  CHECK(dnnl_memory_create(&destinationMemory, &destinationDesc, engine, destination));
  CHECK(dnnl_memory_create(&biasMemory, &biasDesc, engine, bias));

  double kernelTimes[runs], onednnTimes[runs], kernelError = 0, onednnError = 0;
  for (int run = 0; run < runs; run++) {
    const int c = run % copies;
    struct job job = {source[c], packed[c], bias, destination, pixels, inputs, outputs};
    double start = now();
    GOMP_parallel(share, &job, threads, 0);
    kernelTimes[run] = now() - start;
    if (run == 0) kernelError = maxDifference(destination, reference, pixels * outputs);

    dnnl_exec_arg_t arguments[4] = {{DNNL_ARG_SRC, sourceMemory[c]},
                                    {DNNL_ARG_WEIGHTS, weightsMemory[c]},
                                    {DNNL_ARG_BIAS, biasMemory},
                                    {DNNL_ARG_DST, destinationMemory}};
    start = now();
    CHECK(dnnl_primitive_execute(primitive, stream, 4, arguments));
    CHECK(dnnl_stream_wait(stream));
    onednnTimes[run] = now() - start;
    if (run == 0) onednnError = maxDifference(destination, reference, pixels * outputs);
  }
  // The first pass over the copies warms up both sides (page faults, JIT).
  const int timed = runs - copies;
  qsort(kernelTimes + copies, timed, sizeof(double), ascending);
  qsort(onednnTimes + copies, timed, sizeof(double), ascending);
  const double *k = kernelTimes + copies, *d = onednnTimes + copies;
  printf("%5d->%-5d %4zu px %d thr | kernel p10 %.3f p50 %.3f ms (err %.1e) | %s p10 %.3f p50 "
         "%.3f ms (err %.1e) | oneDNN/kernel %.2f\n",
         inputs, outputs, pixels, threads, k[timed / 10] * 1e3, k[timed / 2] * 1e3, kernelError,
         implementation, d[timed / 10] * 1e3, d[timed / 2] * 1e3, onednnError,
         d[timed / 2] / k[timed / 2]);
  return 0;
}
