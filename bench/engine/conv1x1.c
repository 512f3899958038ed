// One 1x1 convolution (channels-last, ReLU) by the float engine's AVX-512 kernel
// (Sources/CFloatKernels/PointwiseConvolution.c, compiled into this program) and by oneDNN's
// convolution primitive (the engine's other choice), interleaved run by run, with the weights
// cold as in a model: each run uses the next of COPIES copies of weights and input (more bytes
// than L2 holds), so every run reads its weights from L3 or memory.
//
// Usage: conv1x1 INPUTS OUTPUTS SIDE [IMAGES] (pixels = IMAGES * SIDE * SIDE); THREADS in the
// environment (default 2) sets both sides' threads, SPLIT=pixels makes the kernel's threads
// split the pixels instead of the output blocks. Prints p10/p50 milliseconds of each side, the
// p50 ratio, and each side's max |difference| from a double-precision reference.
//
// conv1x1 chain C SIDE: a FasterNet stage at batch 1 — 16 convolutions C -> 2C -> C -> ...
// (ReLU), each reading the previous one's output, four sets of weights in turn (cold) — run by
// oneDNN's primitives, by the kernel split by output blocks and by the kernel split by pixels,
// interleaved; p50 milliseconds per chain. oneDNN and the block split hand each convolution an
// input whose channels the other core wrote; the pixel split reads what its own thread wrote.
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

enum { copies = 24, runs = 300, chainDepth = 16, chainCopies = 4, chainRuns = 60 };

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

// The p-th fraction of the timed runs (after `skip` warm-up runs), in milliseconds.
static double percentile(double *times, int count, int skip, double p) {
  qsort(times + skip, count - skip, sizeof(double), ascending);
  return times[skip + (int)((count - skip) * p)] * 1e3;
}

static float *floats(size_t count) { return aligned_alloc(64, (count * 4 + 63) / 64 * 64); }

static float *randomFloats(size_t count, float scale) {
  float *values = floats(count);
  for (size_t i = 0; i < count; i++) values[i] = (rand() / (float)RAND_MAX - 0.5f) * scale;
  return values;
}

struct job {
  const float *source, *packed, *bias;
  float *destination;
  size_t pixels;
  int inputs, outputs, splitPixels;
};

// One thread's share, as PointwiseConvolutionKernel.run splits it.
static void share(void *raw) {
  const struct job *j = raw;
  const int me = omp_get_thread_num(), team = omp_get_num_threads();
  const int blocks = j->outputs / 16;
  if (j->splitPixels) {
    const size_t tiles = (j->pixels + tileRows - 1) / tileRows;
    const size_t first = tiles * me / team * tileRows, end = tiles * (me + 1) / team * tileRows;
    const size_t stop = end < j->pixels ? end : j->pixels;
    if (first < stop)
      ie_float_conv1x1_avx512(j->source + first * j->inputs, stop - first, j->inputs, j->packed,
                              j->bias, j->outputs, 0, blocks, 0.f, INFINITY, 0,
                              j->destination + first * j->outputs);
  } else {
    ie_float_conv1x1_avx512(j->source, j->pixels, j->inputs, j->packed, j->bias, j->outputs,
                            blocks * me / team, blocks * (me + 1) / team, 0.f, INFINITY, 0,
                            j->destination);
  }
}

// oneDNN's 1x1 convolution with ReLU as the engine builds it (NHWC activations, weights in the
// layout the primitive picks, reordered once per set of weights).
struct convolution {
  dnnl_primitive_t primitive;
  dnnl_memory_desc_t source, destination;
  dnnl_memory_t bias;
  const char *implementation;
  const dnnl_memory_desc_t *weights;
};

static struct convolution makeConvolution(dnnl_engine_t engine, int inputs, int outputs,
                                          int images, int side, float *bias) {
  struct convolution c;
  dnnl_memory_desc_t weightsAny, biasDesc;
  dnnl_dims_t sourceDims = {images, inputs, side, side}, weightDims = {outputs, inputs, 1, 1};
  dnnl_dims_t destinationDims = {images, outputs, side, side}, biasDims = {outputs};
  CHECK(dnnl_memory_desc_init_by_tag(&c.source, 4, sourceDims, dnnl_f32, dnnl_nhwc));
  CHECK(dnnl_memory_desc_init_by_tag(&c.destination, 4, destinationDims, dnnl_f32, dnnl_nhwc));
  CHECK(dnnl_memory_desc_init_by_tag(&weightsAny, 4, weightDims, dnnl_f32, dnnl_format_tag_any));
  CHECK(dnnl_memory_desc_init_by_tag(&biasDesc, 1, biasDims, dnnl_f32, dnnl_x));
  dnnl_convolution_desc_t convolution;
  dnnl_dims_t strides = {1, 1}, padding = {0, 0};
  CHECK(dnnl_convolution_forward_desc_init(&convolution, dnnl_forward_inference,
                                           dnnl_convolution_direct, &c.source, &weightsAny,
                                           &biasDesc, &c.destination, strides, padding,
                                           padding));
  dnnl_post_ops_t postOps;
  dnnl_primitive_attr_t attributes;
  CHECK(dnnl_post_ops_create(&postOps));
  CHECK(dnnl_post_ops_append_eltwise(postOps, 1, dnnl_eltwise_relu, 0, 0));
  CHECK(dnnl_primitive_attr_create(&attributes));
  CHECK(dnnl_primitive_attr_set_post_ops(attributes, postOps));
  dnnl_primitive_desc_t descriptor;
  CHECK(dnnl_primitive_desc_create(&descriptor, &convolution, attributes, engine, NULL));
  CHECK(dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &c.implementation));
  c.weights = dnnl_primitive_desc_query_md(descriptor, dnnl_query_weights_md, 0);
  CHECK(dnnl_primitive_create(&c.primitive, descriptor));
  CHECK(dnnl_memory_create(&c.bias, &biasDesc, engine, bias));
  return c;
}

// ONNX-order weights [outputs][inputs] in the convolution's own layout.
static dnnl_memory_t reorderedWeights(dnnl_engine_t engine, dnnl_stream_t stream,
                                      const struct convolution *c, int inputs, int outputs,
                                      float *weights) {
  dnnl_memory_desc_t plainDesc;
  dnnl_dims_t weightDims = {outputs, inputs, 1, 1};
  CHECK(dnnl_memory_desc_init_by_tag(&plainDesc, 4, weightDims, dnnl_f32, dnnl_oihw));
  dnnl_memory_t plain, reordered;
  dnnl_primitive_desc_t reorderDesc;
  dnnl_primitive_t reorder;
  CHECK(dnnl_memory_create(&plain, &plainDesc, engine, weights));
  CHECK(dnnl_memory_create(&reordered, c->weights, engine, DNNL_MEMORY_ALLOCATE));
  CHECK(dnnl_reorder_primitive_desc_create(&reorderDesc, &plainDesc, engine, c->weights, engine,
                                           NULL));
  CHECK(dnnl_primitive_create(&reorder, reorderDesc));
  dnnl_exec_arg_t arguments[2] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, reordered}};
  CHECK(dnnl_primitive_execute(reorder, stream, 2, arguments));
  CHECK(dnnl_stream_wait(stream));
  return reordered;
}

static void execute(dnnl_stream_t stream, const struct convolution *c, dnnl_memory_t source,
                    dnnl_memory_t weights, dnnl_memory_t destination) {
  dnnl_exec_arg_t arguments[4] = {{DNNL_ARG_SRC, source},
                                  {DNNL_ARG_WEIGHTS, weights},
                                  {DNNL_ARG_BIAS, c->bias},
                                  {DNNL_ARG_DST, destination}};
  CHECK(dnnl_primitive_execute(c->primitive, stream, 4, arguments));
  CHECK(dnnl_stream_wait(stream));
}

static double maxDifference(const float *a, const double *b, size_t count) {
  double worst = 0;
  for (size_t i = 0; i < count; i++) worst = fmax(worst, fabs(a[i] - b[i]));
  return worst;
}

static int chain(int channels, int side, int threads, dnnl_engine_t engine,
                 dnnl_stream_t stream) {
  const size_t pixels = (size_t)side * side;
  const int wide = 2 * channels;
  float *bias = randomFloats(wide, 0.1f);
  // Two activation buffers of the wider shape, the chain alternating between them.
  float *activations[2] = {randomFloats(pixels * wide, 2.f), floats(pixels * wide)};
  struct convolution expand = makeConvolution(engine, channels, wide, 1, side, bias);
  struct convolution project = makeConvolution(engine, wide, channels, 1, side, bias);
  float *packed[chainCopies][chainDepth];
  dnnl_memory_t weights[chainCopies][chainDepth];
  for (int c = 0; c < chainCopies; c++) {
    for (int l = 0; l < chainDepth; l++) {
      const int inputs = l % 2 ? wide : channels, outputs = l % 2 ? channels : wide;
      float *plain = randomFloats((size_t)inputs * outputs, 2.f / inputs);
      packed[c][l] = floats(ie_float_conv1x1_packed_count(inputs, outputs));
      ie_float_conv1x1_pack(plain, inputs, outputs, packed[c][l]);
      weights[c][l] = reorderedWeights(engine, stream, l % 2 ? &project : &expand, inputs,
                                       outputs, plain);
      free(plain);
    }
  }
  dnnl_memory_t memories[2][2]; // [buffer][0: C channels, 1: 2C channels]
  for (int b = 0; b < 2; b++) {
    CHECK(dnnl_memory_create(&memories[b][0], &expand.source, engine, activations[b]));
    CHECK(dnnl_memory_create(&memories[b][1], &expand.destination, engine, activations[b]));
  }
  double times[3][chainRuns];
  for (int run = 0; run < chainRuns; run++) {
    const int c = run % chainCopies;
    for (int way = 0; way < 3; way++) {
      const double start = now();
      for (int l = 0; l < chainDepth; l++) {
        const int inputs = l % 2 ? wide : channels, outputs = l % 2 ? channels : wide;
        const int in = l % 2, out = 1 - in;
        if (way == 0) {
          execute(stream, l % 2 ? &project : &expand, memories[in][l % 2], weights[c][l],
                  memories[out][1 - l % 2]);
        } else {
          struct job job = {activations[in], packed[c][l], bias,    activations[out],
                            pixels,          inputs,       outputs, way == 2};
          GOMP_parallel(share, &job, threads, 0);
        }
      }
      times[way][run] = now() - start;
    }
  }
  const double onednn = percentile(times[0], chainRuns, chainCopies, 0.5);
  const double blocks = percentile(times[1], chainRuns, chainCopies, 0.5);
  const double split = percentile(times[2], chainRuns, chainCopies, 0.5);
  printf("chain %d->%d->%d x%d, %zu px, %d thr | %s %.3f ms | kernel, output blocks %.3f ms | "
         "kernel, pixels %.3f ms | oneDNN/pixels %.2f, blocks/pixels %.2f\n",
         channels, wide, channels, chainDepth / 2, pixels, threads, expand.implementation,
         onednn, blocks, split, onednn / split, blocks / split);
  return 0;
}

int main(int argc, char **argv) {
  const int threads = getenv("THREADS") ? atoi(getenv("THREADS")) : 2;
  const int splitPixels = getenv("SPLIT") && strcmp(getenv("SPLIT"), "pixels") == 0;
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  if (!__builtin_cpu_supports("avx512f")) {
    fprintf(stderr, "needs AVX-512 F\n");
    return 2;
  }
  srand(1);
  CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
  CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
  if (argc == 4 && strcmp(argv[1], "chain") == 0) {
    // Both C -> 2C and 2C -> C run on the kernel, whose outputs come in blocks of 16.
    if (atoi(argv[2]) % 16 != 0 || atoi(argv[2]) <= 0) {
      fprintf(stderr, "chain: C must be a positive multiple of 16\n");
      return 2;
    }
    return chain(atoi(argv[2]), atoi(argv[3]), threads, engine, stream);
  }
  if (argc < 4) {
    fprintf(stderr, "usage: conv1x1 INPUTS OUTPUTS SIDE [IMAGES] | conv1x1 chain C SIDE\n");
    return 2;
  }
  const int inputs = atoi(argv[1]), outputs = atoi(argv[2]), side = atoi(argv[3]);
  const int images = argc > 4 ? atoi(argv[4]) : 1;
  const size_t pixels = (size_t)images * side * side;
  if (outputs % 16 != 0) {
    fprintf(stderr, "OUTPUTS must be a multiple of 16\n");
    return 2;
  }

  float *source[copies], *weights[copies], *packed[copies];
  float *bias = randomFloats(outputs, 1.f), *destination = floats(pixels * outputs);
  for (int c = 0; c < copies; c++) {
    source[c] = randomFloats(pixels * inputs, 1.f);
    weights[c] = randomFloats((size_t)inputs * outputs, 1.f);
    packed[c] = floats(ie_float_conv1x1_packed_count(inputs, outputs));
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

  struct convolution convolution = makeConvolution(engine, inputs, outputs, images, side, bias);
  dnnl_memory_t sourceMemory[copies], weightsMemory[copies], destinationMemory;
  for (int c = 0; c < copies; c++) {
    CHECK(dnnl_memory_create(&sourceMemory[c], &convolution.source, engine, source[c]));
    weightsMemory[c] = reorderedWeights(engine, stream, &convolution, inputs, outputs, weights[c]);
  }
  CHECK(dnnl_memory_create(&destinationMemory, &convolution.destination, engine, destination));

  double kernelTimes[runs], onednnTimes[runs], kernelError = 0, onednnError = 0;
  for (int run = 0; run < runs; run++) {
    const int c = run % copies;
    struct job job = {source[c], packed[c], bias,   destination,
                      pixels,    inputs,    outputs, splitPixels};
    double start = now();
    GOMP_parallel(share, &job, threads, 0);
    kernelTimes[run] = now() - start;
    if (run == 0) kernelError = maxDifference(destination, reference, pixels * outputs);

    start = now();
    execute(stream, &convolution, sourceMemory[c], weightsMemory[c], destinationMemory);
    onednnTimes[run] = now() - start;
    if (run == 0) onednnError = maxDifference(destination, reference, pixels * outputs);
  }
  // The first pass over the copies warms up both sides (page faults, JIT).
  const double k10 = percentile(kernelTimes, runs, copies, 0.1);
  const double k50 = percentile(kernelTimes, runs, copies, 0.5);
  const double d10 = percentile(onednnTimes, runs, copies, 0.1);
  const double d50 = percentile(onednnTimes, runs, copies, 0.5);
  printf("%5d->%-5d %4zu px %d thr | kernel (%s) p10 %.3f p50 %.3f ms (err %.1e) | %s p10 %.3f "
         "p50 %.3f ms (err %.1e) | oneDNN/kernel %.2f\n",
         inputs, outputs, pixels, threads, splitPixels ? "pixels" : "blocks", k10, k50,
         kernelError, convolution.implementation, d10, d50, onednnError, d50 / k50);
  return 0;
}
