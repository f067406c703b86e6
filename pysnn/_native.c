/*
 * Fused CPU kernels for one simulation step of pysnn's inputs, neurons and Linear connections,
 * and the factor stacking and bounded product of its learning rules.
 *
 * Why this exists: on a CPU, eager PyTorch pays 3-8 us per elementwise operation whatever the
 * tensor size, and one neuron step is a dozen of them, each a separate pass over memory. Each
 * kernel here (written once in _native_kernels.h, instantiated for float and double) is the twin
 * of a whole-step function of pysnn/functional.py: the same arithmetic in the same order and
 * precision, in one pass over the cells.
 *
 * Arguments arrive as one named struct per kernel (input_args, ingest_args, neuron_args below),
 * filled by pysnn/native.py through ctypes structures with the same fields; `layout()` returns
 * the sizes and offsets of these structs, which the tests compare with the ctypes mirrors. The
 * kernels read every parameter from its array at every call: nothing a user can edit is
 * cached. pysnn/native.py checks dtypes, shapes, devices and layouts before each call.
 *
 * Built as an optional extension by setup.py; nothing here links against libtorch.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Neuron models (neuron_args.model); pysnn/native.py reads them from constants(). */
#define MODEL_IF 0
#define MODEL_LIF 1
#define MODEL_ADAPTIVE_LIF 2
/* The longest refractory period in steps (functional.REFRAC_MAX_STEPS, checked by a test). */
#define REFRAC_MAX_STEPS (1 << 29)

#if defined(_MSC_VER)
#define restrict __restrict
#endif
#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif
/* The most spikes per sample of the spike-driven product, a power of two
 * (functional.SPIKE_PRODUCT_MAX_SPIKES; tests/test_native.py checks they agree) */
#define SPIKE_PRODUCT_MAX_LENGTH 64
/* normalize_rows' blocks of neurons of a weight stored transposed: 2 cache lines of each row
 * of its memory (a 1024-value tree's scratch is then 64 KiB, in L2). Side by side on a 784 x 400
 * float32 weight: 128 bytes 55 us, 256 bytes 60, 512 bytes 82, 1024 bytes 66 (contiguous:
 * 40-48 us). */
#define NORMALIZE_BLOCK_BYTES 128

/* The deepest ordered update (learning.ORDERED_DEPTH; tests/test_native.py checks they agree) */
#define ORDERED_MAX_DEPTH 8
/* One build runs on every x86-64 CPU and uses AVX2 + FMA (x86-64-v3) where the CPU has them (GCC
 * picks the clone when the module loads); elsewhere the portable build is used. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define TARGET_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TARGET_CLONES
#endif

/* Input.forward: trace update and spike store. Fields the caller refreshes each step: x,
 * x_is_bool. */
struct input_args {
    int64_t n;         /* cells */
    int64_t is_double; /* float64 (1) or float32 (0) */
    int64_t x_is_bool;
    int64_t linear; /* update_type: "linear" (1) or "exponential" (0) */
    const void *x;
    void *trace;
    const void *alpha_t;
    const void *tau_t;
    const void *dt;
    uint8_t *spikes;
};

/* Linear.forward's presynaptic side and, with reduction="sum", product = W @ sᵀ ((O, B)). */
struct ingest_args {
    int64_t rows; /* batch */
    int64_t cols; /* inputs */
    int64_t is_double;
    int64_t x_is_bool;
    const void *x;
    const void *trace_in;
    void *pre_trace;
    void *slot; /* the delay line's slot at the cursor, NULL without a delay */
    void *out;  /* the leaving spikes as floats (rows x cols), or NULL */
    uint8_t *pre_spikes;
    void *gemm; /* the BLAS ?gemm_ (ingest_product only) */
    const void *weight;
    int64_t n_out;
    void *product;
    void *operands; /* capacity x rows x cols: each thread's own copy of the input */
    int64_t capacity; /* the most threads that may share the work (scratch copies) */
    void *trace_sums; /* rows values: each row's trace sum (reduction="sum"), or NULL */
    void *sum_scratch; /* capacity x sum_length values */
    int64_t sum_length; /* the power of two >= cols of functional.pairwise_sum */
    int64_t weight_stride_o; /* W's strides, in values (spike_ingest reads W through them) */
    int64_t weight_stride_i;
    int64_t spike_line; /* functional.SPIKE_PRODUCT_LINE */
    int64_t spike_work; /* functional.SPIKE_PRODUCT_WORK */
};

/* IF / LIF / adaptive LIF step. Fields the caller refreshes each step: input, in_row_stride,
 * in_col_stride, input2, in2_row_stride, in2_col_stride, fired, linear. */
struct neuron_args {
    int64_t rows; /* batch */
    int64_t cols; /* cells per batch element */
    int64_t is_double;
    int64_t model;
    int64_t linear;
    int64_t relax;           /* adaptive threshold relaxes to thresh_center */
    int64_t center_per_cell; /* thresh_center holds one value per cell (else one) */
    const void *input;       /* folded input, rows x cols with the strides below */
    int64_t in_row_stride;
    int64_t in_col_stride;
    const void *input2; /* NULL, or a second input: the kernel folds (input + input2) + 0 */
    int64_t in2_row_stride;
    int64_t in2_col_stride;
    void *v;
    void *thresh;
    const void *v_rest;
    const void *alpha_v;
    const void *tau_v;
    const void *dt;
    const void *duration_refrac;
    int32_t *counts;
    uint8_t *spikes;
    uint8_t *fired; /* the returned copy of the spikes */
    void *trace;
    const void *alpha_t;
    const void *tau_t;
    const void *alpha_thresh;
    const void *tau_thresh;
    const void *thresh_center;
    void *scratch; /* rows x cols values: a strided input is gathered here */
};

#define T float
#define SUFFIX f32
#define FMA fmaf
#define NEARBYINT nearbyintf
#define BITS uint32_t
#define MINUS_ZERO UINT32_C(0x80000000)
#include "_native_kernels.h"
#undef T
#undef SUFFIX
#undef FMA
#undef NEARBYINT
#undef BITS
#undef MINUS_ZERO

#define T double
#define SUFFIX f64
#define FMA fma
#define NEARBYINT nearbyint
#define BITS uint64_t
#define MINUS_ZERO UINT64_C(0x8000000000000000)
#include "_native_kernels.h"
#undef T
#undef SUFFIX
#undef FMA
#undef NEARBYINT
#undef BITS
#undef MINUS_ZERO

/* ---------------------------------------------------------------------------------------------
 * Python bindings (METH_FASTCALL). The step kernels take the address of their argument struct
 * (a Python int); the learning helpers take ints (pointers, sizes, flags; None for NULL).
 * ------------------------------------------------------------------------------------------- */
static int parse_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected,
                      const char *name, void **out)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s expects %zd arguments, got %zd", name, expected, nargs);
        return -1;
    }
    for (Py_ssize_t k = 0; k < nargs; ++k) {
        if (args[k] == Py_None) {
            out[k] = NULL;
            continue;
        }
        if (!PyLong_Check(args[k])) {
            PyErr_Format(PyExc_TypeError, "%s: argument %zd must be an int", name, k);
            return -1;
        }
        out[k] = PyLong_AsVoidPtr(args[k]);
        if (out[k] == NULL && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* count arguments as doubles into value (0 for None), whether each was given into has; -1 with
 * the exception set on a value that is not a number. */
static int parse_floats(PyObject *const *args, int count, double *value, int *has)
{
    for (int k = 0; k < count; ++k) {
        has[k] = args[k] != Py_None;
        value[k] = has[k] ? PyFloat_AsDouble(args[k]) : 0.0;
        if (value[k] == -1.0 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Threads. When built with OpenMP (setup.py links the libgomp that PyTorch itself loads, so
 * both share one warm thread team), a large step is split into contiguous blocks of rows, one
 * per thread. Each value is computed by the same arithmetic whichever thread runs it, so the
 * results do not depend on the number of threads. Below PARALLEL_GRAIN values per thread the
 * hand-off costs more than it saves and the caller's thread does all the work. The team size
 * follows torch.set_num_threads (PyTorch sets OpenMP's maximum).
 * ------------------------------------------------------------------------------------------- */
#define PARALLEL_GRAIN 4096
#define NEURON_WORK 4

static int team_size(Py_ssize_t values, Py_ssize_t rows)
{
#ifdef _OPENMP
    if (omp_in_parallel())
        return 1;
    Py_ssize_t threads = omp_get_max_threads();
    if (threads > values / PARALLEL_GRAIN)
        threads = values / PARALLEL_GRAIN;
    if (threads > rows)
        threads = rows;
    return threads < 1 ? 1 : (int)threads;
#else
    (void)values;
    (void)rows;
    return 1;
#endif
}

#ifdef _OPENMP
#define THREAD_INDEX() omp_get_thread_num()
#define THREAD_COUNT() omp_get_num_threads()
#else
#define THREAD_INDEX() 0
#define THREAD_COUNT() 1
#endif

/* The first row of block `part` of `parts` over `rows` rows, rounded down to a multiple of
 * `align` rows (so that blocks do not share cache lines of byte-sized arrays). */
static Py_ssize_t block_start(Py_ssize_t rows, int part, int parts, Py_ssize_t align)
{
    if (part >= parts)
        return rows;
    Py_ssize_t start = (Py_ssize_t)((double)rows * part / parts);
    return start - start % align;
}

/* The struct at the address given as the only argument. */
static void *struct_argument(PyObject *const *args, Py_ssize_t nargs, const char *name)
{
    if (nargs != 1 || !PyLong_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s expects the address of its argument struct", name);
        return NULL;
    }
    void *address = PyLong_AsVoidPtr(args[0]);
    if (address == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "%s: NULL argument struct", name);
    return address;
}

/* input_step(address of struct input_args) */
static PyObject *py_input_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    const struct input_args *a = struct_argument(args, nargs, "input_step");
    if (a == NULL)
        return NULL;
    const Py_ssize_t n = (Py_ssize_t)a->n;
    const int threads = team_size(n, n / 64);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        const Py_ssize_t begin = block_start(n, part, parts, 64);
        const Py_ssize_t count = block_start(n, part + 1, parts, 64) - begin;
        if (a->is_double)
            input_block_f64(a, begin, count);
        else
            input_block_f32(a, begin, count);
    }
    Py_RETURN_NONE;
}

/* One thread's block of rows of the presynaptic step, and their trace sums. */
static void ingest_rows(const struct ingest_args *a, int part, int parts)
{
    const Py_ssize_t first = block_start((Py_ssize_t)a->rows, part, parts, 1);
    const Py_ssize_t count = block_start((Py_ssize_t)a->rows, part + 1, parts, 1) - first;
    if (a->is_double) {
        ingest_block_f64(a, first * a->cols, count * a->cols);
        if (a->trace_sums != NULL)
            trace_sums_f64(a, first, count, part);
    } else {
        ingest_block_f32(a, first * a->cols, count * a->cols);
        if (a->trace_sums != NULL)
            trace_sums_f32(a, first, count, part);
    }
}

/* Scratch memory of the kernels, kept between calls and grown as needed: they run one at a time,
 * with the GIL held, and none keeps a pointer into it after it returns. NULL when out of memory. */
static char *kernel_scratch(size_t bytes)
{
    static char *memory = NULL;
    static size_t capacity = 0;
    if (bytes > capacity) {
        char *grown = realloc(memory, bytes);
        if (grown == NULL)
            return NULL;
        memory = grown;
        capacity = bytes;
    }
    return memory;
}

/* The presynaptic step of all rows, on as many threads as it is worth (at most `capacity`). */
static void ingest_all(const struct ingest_args *a)
{
    int threads = team_size((Py_ssize_t)(a->rows * a->cols), (Py_ssize_t)a->rows);
    if (threads > a->capacity)
        threads = (int)a->capacity;
#pragma omp parallel num_threads(threads) if (threads > 1)
    ingest_rows(a, THREAD_INDEX(), THREAD_COUNT());
}

/* ingest(address of struct ingest_args): the presynaptic step alone. */
static PyObject *py_ingest(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    const struct ingest_args *a = struct_argument(args, nargs, "ingest");
    if (a == NULL)
        return NULL;
    ingest_all(a);
    Py_RETURN_NONE;
}

/* The Fortran BLAS ?gemm_ PyTorch itself calls (column-major; the two trailing lengths of the
 * character arguments are ignored by BLAS builds that do not expect them). Its integer
 * arguments are passed as pointers to 64-bit values below 2^31: a 32-bit-integer BLAS (LP64,
 * PyTorch's) reads their low half, which on a little-endian CPU is the value, and a 64-bit
 * one (ILP64) reads the whole value. */
typedef int64_t blas_int_slot;
typedef void (*sgemm_function)(const char *, const char *, const blas_int_slot *,
                               const blas_int_slot *, const blas_int_slot *, const float *,
                               const float *, const blas_int_slot *, const float *,
                               const blas_int_slot *, const float *, float *,
                               const blas_int_slot *, size_t, size_t);
typedef void (*dgemm_function)(const char *, const char *, const blas_int_slot *,
                               const blas_int_slot *, const blas_int_slot *, const double *,
                               const double *, const blas_int_slot *, const double *,
                               const blas_int_slot *, const double *, double *,
                               const blas_int_slot *, size_t, size_t);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#define BLAS_CALLS 0 /* big-endian: the callers return False and PyTorch takes the products */
#else
#define BLAS_CALLS 1
#endif

/* c ← alpha·op(a) @ op(b) + beta·c (column-major) with the BLAS ?gemm_ at `gemm`: dgemm_ when
 * `is_double`, else sgemm_ (alpha and beta then rounded to float, as torch does). */
static void blas_gemm(void *gemm, int is_double, const char *transa, const char *transb,
                      blas_int_slot m, blas_int_slot n, blas_int_slot k, double alpha,
                      const void *a, blas_int_slot lda, const void *b, blas_int_slot ldb,
                      double beta, void *c, blas_int_slot ldc)
{
    if (is_double) {
        ((dgemm_function)gemm)(transa, transb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c,
                               &ldc, 1, 1);
    } else {
        const float alpha_f = (float)alpha, beta_f = (float)beta;
        ((sgemm_function)gemm)(transa, transb, &m, &n, &k, &alpha_f, a, &lda, b, &ldb, &beta_f,
                               c, &ldc, 1, 1);
    }
}

/* Convert `values` spikes (bool, or already of the float type) into `operand`. */
static void store_operand(char *operand, const void *x, int x_is_bool, int is_double,
                          Py_ssize_t values)
{
    if (!x_is_bool)
        memcpy(operand, x, (size_t)(values * (is_double ? 8 : 4)));
    else if (is_double)
        for (Py_ssize_t i = 0; i < values; ++i)
            ((double *)operand)[i] = (double)((const uint8_t *)x)[i];
    else
        for (Py_ssize_t i = 0; i < values; ++i)
            ((float *)operand)[i] = (float)((const uint8_t *)x)[i];
}

/* ingest_product(address of struct ingest_args)
 *
 * The whole "sum" step of a Linear connection on all threads at once: the presynaptic step and
 * product = W @ sᵀ ((O, B), row-major; W (O, I); s the spikes leaving the delay line, (B, I)).
 * Why: when one thread writes the spikes and the BLAS threads then read them, every core but the
 * writer's fetches them from another core's cache. Without a delay each thread converts this
 * step's input into its own operand (made anew at every step, so nothing can go stale); with a
 * delay every thread reads the delay line's slot itself, and the slot takes the new input after
 * all threads have read it. Each thread takes its own block of rows of W, so a product value is
 * one BLAS dot product, as in a single call; the BLAS may round a block's dot products
 * differently from a call for the whole product (MKL does not promise equality across row
 * partitions or CPUs), which is why the split product is held to a rounding bound, not to
 * equality, in the tests. Returns False, with nothing done, when the step is too small to split. */
static PyObject *py_ingest_product(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    const struct ingest_args *a = struct_argument(args, nargs, "ingest_product");
    if (a == NULL)
        return NULL;
    const Py_ssize_t rows = (Py_ssize_t)a->rows, cols = (Py_ssize_t)a->cols;
    const Py_ssize_t n_out = (Py_ssize_t)a->n_out, values = rows * cols;
    const int is_double = (int)a->is_double;
    const Py_ssize_t size = is_double ? 8 : 4;
    const int delayed = a->slot != NULL;
    /* split by the product's work, at every batch size: each thread takes the same block of
     * W's rows as the learning rule's update and PyTorch's passes over W (halves of its rows on
     * two threads), so each core keeps its rows of W in its own cache from pass to pass */
    int threads = team_size(values * n_out, n_out);
    if (threads > a->capacity)
        threads = (int)a->capacity;
    if (!BLAS_CALLS || threads < 2 || rows > INT_MAX || cols > INT_MAX || n_out > INT_MAX)
        Py_RETURN_FALSE;
#pragma omp parallel num_threads(threads)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        char *operand = delayed ? (char *)a->slot : (char *)a->operands + part * values * size;
        if (!delayed) {
            store_operand(operand, a->x, (int)a->x_is_bool, is_double, values);
            ingest_rows(a, part, parts);
        }
        const Py_ssize_t first = block_start(n_out, part, parts, 1);
        const Py_ssize_t n = block_start(n_out, part + 1, parts, 1) - first;
        /* column-major: productᵀ (B x n) = operandᵀᵀ (B x I) @ W[first:first + n]ᵀ (I x n) */
        if (n > 0)
            blas_gemm(a->gemm, is_double, "T", "N", rows, n, cols, 1.0, operand, cols,
                      (const char *)a->weight + first * cols * size, cols, 0.0,
                      (char *)a->product + first * rows * size, rows);
        if (delayed) {
#pragma omp barrier
            ingest_rows(a, part, parts); /* the slot now takes this step's input */
        }
    }
    Py_RETURN_TRUE;
}

/* neuron_step(address of struct neuron_args) */
static PyObject *py_neuron_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    const struct neuron_args *a = struct_argument(args, nargs, "neuron_step");
    if (a == NULL)
        return NULL;
    const Py_ssize_t rows = (Py_ssize_t)a->rows, cols = (Py_ssize_t)a->cols;
    const int strided =
        a->in_col_stride != 1 || a->in_row_stride != a->cols || a->input2 != NULL;
    /* a neuron's update is some twenty operations per cell, about NEURON_WORK times an
     * elementwise pass's: threads pay from a quarter of PARALLEL_GRAIN cells per thread on */
    const int threads = team_size(rows * cols * NEURON_WORK, rows);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        const Py_ssize_t first = block_start(rows, part, parts, 1);
        const Py_ssize_t count = block_start(rows, part + 1, parts, 1) - first;
        if (a->is_double) {
            /* e.g. the transposed output of W @ sᵀ: gathered into the scratch rows first */
            if (strided)
                gather_f64(a, (double *)a->scratch, first, count);
            neuron_block_f64(a, strided ? (const double *)a->scratch : (const double *)a->input,
                             first * cols, count * cols);
        } else {
            if (strided)
                gather_f32(a, (float *)a->scratch, first, count);
            neuron_block_f32(a, strided ? (const float *)a->scratch : (const float *)a->input,
                             first * cols, count * cols);
        }
    }
    Py_RETURN_NONE;
}

#define AS_SIZE(p) ((Py_ssize_t)(intptr_t)(p))
#define AS_INT(p) ((int)(intptr_t)(p))

/* What event_form did: nothing (the caller takes the dense form), the whole update, or only the
 * beta pass (a value of `out` was not clean: the caller's dense form takes the rest, beta 1). */
enum { EVENT_DECLINED = 0, EVENT_DONE = 2, EVENT_DIRTY = 3 };

/* nonzero_f32/nonzero_f64 of the `n` values at `x`, of either dtype. */
static Py_ssize_t nonzero_values(int is_double, const char *x, Py_ssize_t n, int32_t *idx)
{
    return is_double ? nonzero_f64((const double *)x, n, idx) : nonzero_f32((const float *)x, n, idx);
}

/* The event-driven form of a learning rule's update of `out` (O, I) from stacked factors p
 * (depth, O) and q (depth, I): out ← beta·out, then only the products of two nonzero factors
 * (event_update), then the bounds on what changed. value = (alpha, beta, w_min, w_max) with
 * has[2], has[3] for the bounds. Taken when those products number at most `crossover` times the
 * dense ones and the factors are finite; after the beta pass, only where every value of `out`
 * is clean (clean_rows). Returns an EVENT_* code, or -1 with MemoryError set. */
static int event_form(int is_double, char *out, Py_ssize_t n_out, Py_ssize_t n_in,
                      Py_ssize_t depth, const char *p, const char *q, const double *value,
                      const int *has, int beta_zero, double crossover)
{
    const Py_ssize_t n = n_out * n_in, size = is_double ? 8 : 4;
    const int threads = team_size(n, n);
    /* the factors' counts, the columns listed per term, and each thread's sums (n_in values of
     * 8 bytes at most), seen and touched columns, and active terms (depth values) */
    const size_t listed = ((size_t)depth * (size_t)n_in * 4 + 7) / 8 * 8;
    const size_t per_thread = (size_t)n_in * 16 + (size_t)depth * sizeof(Py_ssize_t);
    char *memory = kernel_scratch(16 * (size_t)depth + listed + (size_t)threads * per_thread);
    if (memory == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t *const n_rows = (Py_ssize_t *)memory, *const n_cols = n_rows + depth;
    int32_t *const cols = (int32_t *)(memory + 16 * depth); /* rows: found by event_update */
    char *const sums = memory + 16 * depth + listed;
    double work = 0;
    for (Py_ssize_t j = 0; j < depth; ++j) {
        n_rows[j] = nonzero_values(is_double, p + j * n_out * size, n_out, NULL);
        n_cols[j] = nonzero_values(is_double, q + j * n_in * size, n_in, NULL);
        if (n_rows[j] < 0 || n_cols[j] < 0)
            return EVENT_DECLINED; /* a factor that is not finite */
        work += (double)n_rows[j] * (double)n_cols[j];
    }
    if (work > crossover * (double)depth * (double)n_out * (double)n_in)
        return EVENT_DECLINED;
    /* the columns of a term are listed only where it has rows (the others add 0), and only
     * once the event form is taken: listing is a dependent chain, counting is vectorised */
    for (Py_ssize_t j = 0; j < depth; ++j)
        if (n_rows[j] > 0)
            nonzero_values(is_double, q + j * n_in * size, n_in, cols + j * n_in);
    int dirty = 0;
    /* one team: each thread's beta pass and scan, then (all clean) its rows' events */
#pragma omp parallel num_threads(threads)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        /* blocks of whole cache lines (16 floats, 8 doubles) */
        const Py_ssize_t first = block_start(n, part, parts, 64 / size);
        const Py_ssize_t count = block_start(n, part + 1, parts, 64 / size) - first;
        const int clean =
            is_double ? clean_rows_f64((double *)out + first, count, value[1], beta_zero, has[2],
                                       value[2], has[3], value[3])
                      : clean_rows_f32((float *)out + first, count, (float)value[1], beta_zero,
                                       has[2], (float)value[2], has[3], (float)value[3]);
        if (!clean) {
#pragma omp atomic write
            dirty = 1;
        }
#pragma omp barrier
        int any_dirty;
#pragma omp atomic read
        any_dirty = dirty;
        if (!any_dirty) {
            const Py_ssize_t row = block_start(n_out, part, parts, 1);
            const Py_ssize_t end = block_start(n_out, part + 1, parts, 1);
            char *const mine = sums + (size_t)part * per_thread;
            int32_t *const seen = (int32_t *)(mine + n_in * 8);
            int32_t *const touched = seen + n_in;
            Py_ssize_t *const terms = (Py_ssize_t *)(mine + n_in * 16);
            if (is_double)
                event_update_f64((double *)out, row, end, n_out, n_in, depth, (const double *)p,
                                 (const double *)q, value[0], cols, n_cols, has[2], value[2],
                                 has[3], value[3], (double *)mine, seen, touched, terms);
            else
                event_update_f32((float *)out, row, end, n_out, n_in, depth, (const float *)p,
                                 (const float *)q, (float)value[0], cols, n_cols, has[2],
                                 (float)value[2], has[3], (float)value[3], (float *)mine, seen,
                                 touched, terms);
        }
    }
    return dirty ? EVENT_DIRTY : EVENT_DONE;
}

/* product_bounded's listing of event-driven term j: the nonzero columns of q[j] into cols[j]
 * (ascending) and their values, in the same order, into values[j]. */
static void list_term(int is_double, const char *q, Py_ssize_t n_in, Py_ssize_t j, int32_t *cols,
                      char *values)
{
    const Py_ssize_t size = is_double ? 8 : 4;
    int32_t *const listed = cols + j * n_in;
    const Py_ssize_t n_listed = nonzero_values(is_double, q + j * n_in * size, n_in, listed);
    if (is_double) {
        const double *qj = (const double *)q + j * n_in;
        double *vj = (double *)values + j * n_in;
        for (Py_ssize_t c = 0; c < n_listed; ++c)
            vj[c] = qj[listed[c]];
    } else {
        const float *qj = (const float *)q + j * n_in;
        float *vj = (float *)values + j * n_in;
        for (Py_ssize_t c = 0; c < n_listed; ++c)
            vj[c] = qj[listed[c]];
    }
}

/* product_bounded's BLAS also takes the terms between its first and last where they number
 * under 1/BLAS_ABSORBS_BELOW of its own: the BLAS spends about as long on one term as copying
 * the factors of ten terms into contiguous memory takes (O = 400, I = 784, two threads). */
#define BLAS_ABSORBS_BELOW 8


/* product_bounded(gemm, is_double, out, n_out, n_in, depth, p, q, alpha, beta, w_min, w_max,
 *                 crossover, blas_fixed_terms)
 *
 * out ← clamp(beta·out + alpha·pᵀ q, w_min, w_max), out (O, I), p (depth, O) and q (depth, I)
 * row-major; w_min / w_max a float or None (no bound). A learning rule's weight update: each
 * thread takes its block of rows of `out` with the BLAS (as torch's addmm_ would split it) and
 * applies the bounds to that block while it is still in its core's cache, instead of a second
 * pass over the whole weight. The clamp is torch.clamp's: max with w_min, then min with w_max,
 * NaN kept.
 *
 * Few spikes make most factors zero: a term j (a row of p and of q) whose products of two
 * nonzero factors number at most `crossover` · O · I is taken event-driven (term_events: only
 * those products, added one by one); one BLAS call takes the others (their rows of p and q
 * gathered into contiguous factors where they are not consecutive; terms without a nonzero
 * product are skipped). Each value of `out` is then a sum of the same products as the BLAS's,
 * in another order: within the rounding bound of addmm_'s that the split BLAS product is held
 * to (see learning.py). Where the terms above the crossover number n and hold at most
 * (n + blas_fixed_terms) · crossover · O · I products in all, every term is event-driven: the
 * BLAS costs about blas_fixed_terms terms before its first (its pass over the weight and its
 * setup), so a BLAS call for a term or two just over the crossover, while the others are
 * event-driven (Diehl & Cook at batch 16), would cost more than their events. Factors or an alpha that are not finite (0·inf is NaN) leave every
 * term to the BLAS; crossover < 0 too. Returns False, with nothing done, when the product is
 * too small to split; else the number of terms taken event-driven plus one. */
static PyObject *py_product_bounded(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *a[8];
    double value[6];
    int has[6];
    (void)self;
    if (nargs != 14) {
        PyErr_Format(PyExc_TypeError, "product_bounded expects 14 arguments, got %zd", nargs);
        return NULL;
    }
    if (parse_args(args, 8, 8, "product_bounded", a) < 0)
        return NULL;
    if (parse_floats(args + 8, 6, value, has) < 0)
        return NULL;
    if (!has[0] || !has[1] || !has[4] || !has[5]) {
        PyErr_SetString(PyExc_TypeError, "product_bounded: alpha, beta, crossover and "
                                         "blas_fixed_terms must be floats");
        return NULL;
    }
    const int is_double = AS_INT(a[1]);
    const Py_ssize_t n_out = AS_SIZE(a[3]), n_in = AS_SIZE(a[4]), depth = AS_SIZE(a[5]);
    void *const gemm = a[0];
    char *const out = a[2];
    const char *const p = a[6], *const q = a[7];
    const Py_ssize_t size = is_double ? 8 : 4;
    const int threads = team_size(n_out * n_in, n_out);
    if (!BLAS_CALLS || threads < 2 || n_out > INT_MAX || n_in > INT_MAX || depth > INT_MAX)
        Py_RETURN_FALSE;
    /* each term's nonzero rows and columns, the terms taken event-driven and those the BLAS
     * takes, and room for the BLAS's terms gathered into contiguous factors */
    const size_t listed = (size_t)depth * (32 + 4 * (size_t)n_in);
    const size_t gathered_at = (listed + 63) & ~(size_t)63;
    const size_t values_at =
        (gathered_at + (size_t)depth * (size_t)(n_out + n_in) * size + 63) & ~(size_t)63;
    char *memory = kernel_scratch(values_at + (size_t)depth * (size_t)n_in * size);
    if (memory == NULL)
        return PyErr_NoMemory();
    Py_ssize_t *const n_rows = (Py_ssize_t *)memory, *const n_cols = n_rows + depth;
    Py_ssize_t *const event_terms = n_cols + depth, *const blas_terms = event_terms + depth;
    int32_t *const cols = (int32_t *)(blas_terms + depth);
    const int alpha_finite = is_double ? isfinite(value[0]) : isfinite((float)value[0]);
    /* classified: each term went to the events or the BLAS (else the BLAS takes them all) */
    Py_ssize_t n_event_terms = 0, n_blas_terms = 0;
    int classified = 0;
    if (value[4] >= 0 && alpha_finite && depth > 0) {
        const double limit = value[4] * (double)n_out * (double)n_in;
        int finite = 1;
        for (Py_ssize_t j = 0; j < depth && finite; ++j) {
            n_rows[j] = nonzero_values(is_double, p + j * n_out * size, n_out, NULL);
            n_cols[j] = nonzero_values(is_double, q + j * n_in * size, n_in, NULL);
            finite = n_rows[j] >= 0 && n_cols[j] >= 0;
            if ((double)n_rows[j] * (double)n_cols[j] > limit)
                blas_terms[n_blas_terms++] = j;
            else if (n_rows[j] > 0 && n_cols[j] > 0)
                event_terms[n_event_terms++] = j;
        }
        classified = finite;
        if (classified && n_blas_terms > 0) {
            double blas_products = 0;
            for (Py_ssize_t t = 0; t < n_blas_terms; ++t)
                blas_products += (double)n_rows[blas_terms[t]] * (double)n_cols[blas_terms[t]];
            if (blas_products <= ((double)n_blas_terms + value[5]) * limit) {
                n_event_terms = n_blas_terms = 0;
                for (Py_ssize_t j = 0; j < depth; ++j)
                    if (n_rows[j] > 0 && n_cols[j] > 0)
                        event_terms[n_event_terms++] = j;
            }
        }
    }
    if (!classified) {
        n_event_terms = 0;
        n_blas_terms = depth;
    }
    /* The BLAS's terms as contiguous factors. Where they are consecutive, the rows of p and q
     * themselves. Where the terms between the BLAS's first and last number under
     * 1/BLAS_ABSORBS_BELOW of its own, the BLAS takes those too (one more term costs it less
     * than copying the factors of every term it has) and the event-driven terms are those
     * outside that range. Else the BLAS's rows are copied one after the other, so that a few
     * crowded terms do not take every sparse term between them to the BLAS. */
    const char *p_blas = p, *q_blas = q;
    if (classified && n_blas_terms > 0) {
        const Py_ssize_t first_term = blas_terms[0], last_term = blas_terms[n_blas_terms - 1];
        const Py_ssize_t between = last_term - first_term + 1 - n_blas_terms;
        p_blas = p + first_term * n_out * size;
        q_blas = q + first_term * n_in * size;
        if (between > 0 && between * BLAS_ABSORBS_BELOW < n_blas_terms) {
            Py_ssize_t kept = 0;
            for (Py_ssize_t t = 0; t < n_event_terms; ++t)
                if (event_terms[t] < first_term || event_terms[t] > last_term)
                    event_terms[kept++] = event_terms[t];
            n_event_terms = kept;
            n_blas_terms = last_term - first_term + 1;
        } else if (between > 0) {
            char *const p_gathered = memory + gathered_at;
            char *const q_gathered = p_gathered + (size_t)n_blas_terms * (size_t)n_out * size;
            for (Py_ssize_t t = 0; t < n_blas_terms; ++t) {
                memcpy(p_gathered + t * n_out * size, p + blas_terms[t] * n_out * size,
                       (size_t)(n_out * size));
                memcpy(q_gathered + t * n_in * size, q + blas_terms[t] * n_in * size,
                       (size_t)(n_in * size));
            }
            p_blas = p_gathered;
            q_blas = q_gathered;
        }
    }
    char *const values = memory + values_at;
    const int blas = n_blas_terms > 0, beta_zero = value[1] == 0.0;
#pragma omp parallel num_threads(threads)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        const Py_ssize_t first = block_start(n_out, part, parts, 1);
        const Py_ssize_t rows_here = block_start(n_out, part + 1, parts, 1) - first;
        const Py_ssize_t begin = first * n_in;
        /* Only the event-driven terms' columns are listed (a dependent chain per value, where
         * counting them is vectorised: a crowded term's would be listed for nothing), each
         * thread listing every parts-th term, and their q values packed next to them, so that
         * each row's events read them in order instead of gathering them from q again for
         * every row. Every thread's rows read every list: a barrier before the events. */
        for (Py_ssize_t t = part; t < n_event_terms; t += parts)
            list_term(is_double, q, n_in, event_terms[t], cols, values);
        /* column-major: out[first:]ᵀ (I x n) = beta·out[first:]ᵀ + alpha·qᵀ (I x k) @ p[:, first:] */
        if (blas && rows_here > 0)
            blas_gemm(gemm, is_double, "N", "T", n_in, rows_here, n_blas_terms, value[0],
                      q_blas, n_in, p_blas + first * size, n_out, value[1], out + begin * size,
                      n_in);
#pragma omp barrier
        if (is_double)
            term_events_f64((double *)out, first, first + rows_here, n_out, n_in,
                            (const double *)p, (const double *)values, value[0], event_terms,
                            n_event_terms, cols, n_cols, !blas, value[1], beta_zero, has[2],
                            value[2], has[3], value[3]);
        else
            term_events_f32((float *)out, first, first + rows_here, n_out, n_in, (const float *)p,
                            (const float *)values, (float)value[0], event_terms, n_event_terms,
                            cols, n_cols, !blas, (float)value[1], beta_zero, has[2],
                            (float)value[2], has[3], (float)value[3]);
    }
    return PyLong_FromSsize_t(n_event_terms + 1);
}

/* The number of nonzero values of x[start .. start + n) (bool bytes, doubles or floats; NaN
 * counts as nonzero, as in `spikes != 0`), and, where it is at most `limit`, their indices in
 * ascending order into idx (limit + 1 slots). Branch-free loops, so that they vectorise: a silent
 * sample (most of them, for an inhibitory layer's input) costs one pass over its values. */
TARGET_CLONES static Py_ssize_t sample_nonzero(const char *x, int x_is_bool, int is_double,
                                               Py_ssize_t start, Py_ssize_t n, Py_ssize_t limit,
                                               int32_t *restrict idx)
{
    Py_ssize_t count = 0;
    if (x_is_bool) {
        const uint8_t *restrict v = (const uint8_t *)x + start;
        for (Py_ssize_t i = 0; i < n; ++i)
            count += v[i] != 0;
        if (count > 0 && count <= limit)
            for (Py_ssize_t i = 0, k = 0; i < n; ++i) {
                idx[k] = (int32_t)i;
                k += v[i] != 0;
            }
    } else if (is_double) {
        const double *restrict v = (const double *)x + start;
        for (Py_ssize_t i = 0; i < n; ++i)
            count += v[i] != 0;
        if (count > 0 && count <= limit)
            for (Py_ssize_t i = 0, k = 0; i < n; ++i) {
                idx[k] = (int32_t)i;
                k += v[i] != 0;
            }
    } else {
        const float *restrict v = (const float *)x + start;
        for (Py_ssize_t i = 0; i < n; ++i)
            count += v[i] != 0;
        if (count > 0 && count <= limit)
            for (Py_ssize_t i = 0, k = 0; i < n; ++i) {
                idx[k] = (int32_t)i;
                k += v[i] != 0;
            }
    }
    return count;
}

/* spike_ingest(address of struct ingest_args)
 *
 * Linear(reduction="sum")'s product (O, B) = W @ sᵀ taken from the nonzero inputs alone, as
 * functional.sum_product, then the presynaptic step (ingest; the caller has set `out` to NULL):
 * s is the slot leaving the delay line, or this step's input without a delay. It applies where
 * every sample has at most SPIKE_PRODUCT_MAX_LENGTH nonzero inputs and all samples together at
 * most max(cols / spike_line, rows * cols / spike_work) (each read of a weight column costs a
 * cache line per output; the dense product one pass over W and rows * cols multiply-adds per
 * output). Returns True (done), or False with nothing done (the caller takes the BLAS
 * product). */
static PyObject *py_spike_ingest(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    const struct ingest_args *a = struct_argument(args, nargs, "spike_ingest");
    if (a == NULL)
        return NULL;
    const int is_double = (int)a->is_double;
    const int x_is_bool = a->slot != NULL ? 0 : (int)a->x_is_bool;
    const char *const x = a->slot != NULL ? (const char *)a->slot : (const char *)a->x;
    const Py_ssize_t stride_o = (Py_ssize_t)a->weight_stride_o;
    const Py_ssize_t stride_i = (Py_ssize_t)a->weight_stride_i;
    const Py_ssize_t n_out = (Py_ssize_t)a->n_out, n_in = (Py_ssize_t)a->cols;
    const Py_ssize_t batch = (Py_ssize_t)a->rows, line = (Py_ssize_t)a->spike_line;
    const Py_ssize_t work = (Py_ssize_t)a->spike_work;
    const Py_ssize_t max_spikes = SPIKE_PRODUCT_MAX_LENGTH, width = max_spikes + 1;
    if (a->product == NULL || a->out != NULL || line < 1 || work < 1 || n_in > INT32_MAX ||
        batch < 1)
        Py_RETURN_FALSE;
    char *memory = kernel_scratch((sizeof(Py_ssize_t) + sizeof(int32_t) * (size_t)width) *
                                  (size_t)batch);
    if (memory == NULL)
        return PyErr_NoMemory();
    Py_ssize_t *const counts = (Py_ssize_t *)memory;
    int32_t *const idx = (int32_t *)(memory + sizeof(Py_ssize_t) * (size_t)batch);
    Py_ssize_t total = 0;
    int fits = 1;
    for (Py_ssize_t b = 0; b < batch && fits; ++b) {
        const Py_ssize_t k = sample_nonzero(x, x_is_bool, is_double, b * n_in, n_in, max_spikes,
                                            idx + b * width);
        fits = k <= max_spikes;
        counts[b] = k;
        total += k;
    }
    if (!fits || (total * line > n_in && total * work > batch * n_in))
        Py_RETURN_FALSE;
    /* the presynaptic step in the same parallel region (ingest_rows: at most `capacity`
     * parts) */
    int threads = team_size(n_out * 64, n_out);
    if (threads > a->capacity)
        threads = (int)a->capacity;
    const int delayed = a->slot != NULL;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        const Py_ssize_t first = block_start(n_out, part, parts, 1);
        const Py_ssize_t last = block_start(n_out, part + 1, parts, 1);
        if (is_double)
            spike_rows_f64((const double *)a->weight, stride_o, stride_i, first, last, n_in,
                           batch, x, x_is_bool, idx, counts, width, (double *)a->product);
        else
            spike_rows_f32((const float *)a->weight, stride_o, stride_i, first, last, n_in,
                           batch, x, x_is_bool, idx, counts, width, (float *)a->product);
        /* with a delay, the product reads the leaving spikes, which the slot then loses to the
         * input: every thread's rows first */
        if (delayed) {
#pragma omp barrier
        }
        ingest_rows(a, part, parts);
    }
    Py_RETURN_TRUE;
}

/* ordered_update(is_double, out, n_out, n_in, depth, p, q, alpha, beta, w_min, w_max, crossover)
 *
 * A learning rule's update of `out` (O, I) from its stacked factors p (depth, O) and q
 * (depth, I), in the fixed order of learning.ordered_update (see ordered_rows): the same
 * numbers on every CPU, thread count and backend. Most factors are zero when few neurons spike
 * (a neuron's spike and trace are both 0 until it first fires), so when the products with two
 * nonzero factors number at most `crossover` times the dense ones, and the factors are finite
 * and `out` is clean after the beta pass, only those are taken (event_update): the same numbers
 * again. crossover < 0: always dense; inf: event-driven wherever it gives the same numbers.
 * Returns 1 (dense) or 2 (event-driven). */
static PyObject *py_ordered_update(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *a[7];
    double value[5];
    int has[5];
    (void)self;
    if (nargs != 12) {
        PyErr_Format(PyExc_TypeError, "ordered_update expects 12 arguments, got %zd", nargs);
        return NULL;
    }
    if (parse_args(args, 7, 7, "ordered_update", a) < 0)
        return NULL;
    if (parse_floats(args + 7, 5, value, has) < 0)
        return NULL;
    if (!has[0] || !has[1] || !has[4]) {
        PyErr_SetString(PyExc_TypeError, "ordered_update: alpha, beta and crossover are floats");
        return NULL;
    }
    const int is_double = AS_INT(a[0]);
    const Py_ssize_t n_out = AS_SIZE(a[2]), n_in = AS_SIZE(a[3]), depth = AS_SIZE(a[4]);
    if (n_out > INT32_MAX || n_in > INT32_MAX || depth < 0 || depth > ORDERED_MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError, "ordered_update: sizes out of range (depth at most %d)",
                     ORDERED_MAX_DEPTH);
        return NULL;
    }
    char *const out = a[1];
    const char *const p = a[5], *const q = a[6];
    const double crossover = value[4];
    /* the eager function clears `out` for a beta of 0 and multiplies by any other (rounded) */
    int beta_zero = value[1] == 0.0;
    /* an alpha that is not finite (in the dtype) makes 0·alpha NaN: only the dense form has it */
    const int alpha_finite = is_double ? isfinite(value[0]) : isfinite((float)value[0]);
    int path = 1;
    if (crossover >= 0 && depth > 0 && alpha_finite) {
        const int taken = event_form(is_double, out, n_out, n_in, depth, p, q, value, has,
                                     beta_zero, crossover);
        if (taken < 0)
            return NULL;
        if (taken == EVENT_DONE)
            path = 2;
        else if (taken == EVENT_DIRTY) {
            value[1] = 1.0; /* the beta pass is done: the dense form takes the rest */
            beta_zero = 0;
        }
    }
    if (path != 2) {
        const int threads = team_size(n_out * n_in * (depth > 0 ? depth : 1), n_out);
#pragma omp parallel num_threads(threads)
        {
            const int part = THREAD_INDEX(), parts = THREAD_COUNT();
            const Py_ssize_t first = block_start(n_out, part, parts, 1);
            const Py_ssize_t last = block_start(n_out, part + 1, parts, 1);
            if (is_double)
                ordered_rows_f64((double *)out, first, last, n_out, n_in, depth,
                                 (const double *)p, (const double *)q, value[0], value[1],
                                 beta_zero, has[2], value[2], has[3], value[3]);
            else
                ordered_rows_f32((float *)out, first, last, n_out, n_in, depth,
                                 (const float *)p, (const float *)q, (float)value[0],
                                 (float)value[1], beta_zero, has[2], (float)value[2], has[3],
                                 (float)value[3]);
        }
        path = 1;
    }
    return PyLong_FromLong(path);
}

/* stack_terms(n_terms, rows, n_post, n_pre, is_double, p, q,
 *             then per term: pre, pre_is_bool, post, post_is_bool, coef (a float))
 * p[t] = coef_t * post_t (rows x n_post), q[t] = pre_t (rows x n_pre). */
static PyObject *py_stack_terms(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *head[7];
    (void)self;
    if (nargs < 7 || (nargs - 7) % 5 != 0) {
        PyErr_SetString(PyExc_TypeError, "stack_terms expects 7 + 5 * n_terms arguments");
        return NULL;
    }
    if (parse_args(args, 7, 7, "stack_terms", head) < 0)
        return NULL;
    const Py_ssize_t n_terms = AS_SIZE(head[0]), rows = AS_SIZE(head[1]);
    const Py_ssize_t n_post = AS_SIZE(head[2]), n_pre = AS_SIZE(head[3]);
    const int is_double = AS_INT(head[4]);
    if ((nargs - 7) / 5 != n_terms) {
        PyErr_SetString(PyExc_TypeError, "stack_terms: n_terms does not match the arguments");
        return NULL;
    }
    /* the terms' arguments first (Python objects), then their values on all threads, each
     * thread taking the same block of every term's rows */
    struct stacked_term {
        const void *pre, *post;
        int pre_is_bool, post_is_bool;
        double coef;
    } *terms = (struct stacked_term *)kernel_scratch(sizeof(struct stacked_term) *
                                                     (size_t)(n_terms > 0 ? n_terms : 1));
    if (terms == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t t = 0; t < n_terms; ++t) {
        void *term[4];
        PyObject *const *term_args = args + 7 + 5 * t;
        if (parse_args(term_args, 4, 4, "stack_terms", term) < 0)
            return NULL;
        terms[t].coef = PyFloat_AsDouble(term_args[4]);
        if (terms[t].coef == -1.0 && PyErr_Occurred())
            return NULL;
        terms[t].pre = term[0];
        terms[t].pre_is_bool = AS_INT(term[1]);
        terms[t].post = term[2];
        terms[t].post_is_bool = AS_INT(term[3]);
    }
    const Py_ssize_t size = is_double ? 8 : 4;
    const int threads = team_size(n_terms * rows * (n_post + n_pre), rows);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        const Py_ssize_t first = block_start(rows, part, parts, 1);
        const Py_ssize_t count = block_start(rows, part + 1, parts, 1) - first;
        for (Py_ssize_t t = 0; t < n_terms && count > 0; ++t) {
            const Py_ssize_t p_offset = (t * rows + first) * n_post;
            const Py_ssize_t q_offset = (t * rows + first) * n_pre;
            const char *post = (const char *)terms[t].post +
                               first * n_post * (terms[t].post_is_bool ? 1 : size);
            const char *pre = (const char *)terms[t].pre +
                              first * n_pre * (terms[t].pre_is_bool ? 1 : size);
            if (is_double) {
                stack_term_f64(count * n_post, (double *)head[5] + p_offset, post,
                               terms[t].post_is_bool, terms[t].coef, 1);
                stack_term_f64(count * n_pre, (double *)head[6] + q_offset, pre,
                               terms[t].pre_is_bool, 1.0, 0);
            } else {
                stack_term_f32(count * n_post, (float *)head[5] + p_offset, post,
                               terms[t].post_is_bool, (float)terms[t].coef, 1);
                stack_term_f32(count * n_pre, (float *)head[6] + q_offset, pre,
                               terms[t].pre_is_bool, 1.0f, 0);
            }
        }
    }
    Py_RETURN_NONE;
}


/* normalize_rows(weight, rows, cols, is_double, transposed, total): models.normalize_weights
 * over the trailing axes of a contiguous (rows, cols) weight, or of one stored transposed (its
 * memory (cols, rows), contiguous), each thread taking its block of rows (the rows it takes in
 * every other pass over a weight). */
static PyObject *py_normalize_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *a[5];
    double total;
    (void)self;
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "normalize_rows expects 6 arguments, got %zd", nargs);
        return NULL;
    }
    if (parse_args(args, 5, 5, "normalize_rows", a) < 0)
        return NULL;
    total = PyFloat_AsDouble(args[5]);
    if (total == -1.0 && PyErr_Occurred())
        return NULL;
    char *const weight = a[0];
    const Py_ssize_t rows = AS_SIZE(a[1]), cols = AS_SIZE(a[2]);
    const int is_double = AS_INT(a[3]), transposed = AS_INT(a[4]);
    if (weight == NULL || rows < 1 || cols < 1) {
        PyErr_SetString(PyExc_ValueError, "normalize_rows: an empty or NULL weight");
        return NULL;
    }
    Py_ssize_t length = 1;
    while (length < cols)
        length *= 2;
    const int threads = team_size(rows * cols, rows);
    const size_t size = is_double ? sizeof(double) : sizeof(float);
    /* transposed: length / 2 rows of NORMALIZE_BLOCK_BYTES of lanes per thread */
    const size_t per_thread = transposed
                                  ? (size_t)(length > 1 ? length / 2 : 1) * NORMALIZE_BLOCK_BYTES
                                  : (size_t)length * size;
    char *scratch = kernel_scratch((size_t)threads * per_thread);
    if (scratch == NULL)
        return PyErr_NoMemory();
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        /* transposed, blocks of whole lanes of neurons */
        const Py_ssize_t align = transposed ? (Py_ssize_t)(NORMALIZE_BLOCK_BYTES / size) : 1;
        const Py_ssize_t first = block_start(rows, part, parts, align);
        const Py_ssize_t count = block_start(rows, part + 1, parts, align) - first;
        char *own = scratch + (size_t)part * per_thread;
        if (transposed) {
            if (count > 0 && is_double)
                normalize_columns_f64((double *)weight, rows, first, count, cols, length, total,
                                      (double *)own);
            else if (count > 0)
                normalize_columns_f32((float *)weight, rows, first, count, cols, length,
                                      (float)total, (float *)own);
        } else if (is_double)
            normalize_rows_f64((double *)weight, first, count, cols, length, total,
                               (double *)own);
        else
            normalize_rows_f32((float *)weight, first, count, cols, length, (float)total,
                               (float *)own);
    }
    Py_RETURN_NONE;
}

/* bernoulli_draws(state, probabilities, n, steps, is_double, out, time_first)
 *
 * encoding._bernoulli without torch.rand's per-value overhead: the draws torch.rand((n, steps))
 * makes from a CPU torch.Generator — at::mt19937, one 32-bit output per float32 value
 * ((y & 0xffffff) · 2⁻²⁴) and two per float64 value (((y1 << 32 | y2) & (2⁵³ - 1)) · 2⁻⁵³),
 * value by value in C order — each compared with its probability (spike = draw < p), written as
 * bool bytes time-last (out[e·steps + t], torch's layout) or time-first (out[t·n + e], the
 * layout models.present steps through). `state` is the generator's state as get_state() lays it
 * out (CPUGeneratorImplStateLegacy, 5056 bytes: seed u64, left i32, seeded i32, next u64, 624
 * state words as u64, then the normal-sampling cache, untouched); the draws advance it in
 * place, for set_state. Returns False, with nothing written, for a state it cannot read (or
 * one whose remaining words would lie past the state's end). */
#define MT_N 624
#define MT_M 397
#define MT_STATE_BYTES 5056

/* at::mt19937's outputs of the 624 state words. */
static ALWAYS_INLINE void mt_temper(const uint32_t *restrict s, uint32_t *restrict out)
{
    for (Py_ssize_t i = 0; i < MT_N; ++i) {
        uint32_t y = s[i];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        out[i] = y;
    }
}

/* The next 624 words of the state, then all of them tempered into `out` (branch-free loops over
 * the whole state, which vectorise, instead of one tempering per draw). */
TARGET_CLONES static void mt_regenerate(uint32_t *restrict s, uint32_t *restrict out)
{
    for (Py_ssize_t i = 0; i < MT_N - MT_M; ++i) {
        const uint32_t y = (s[i] & 0x80000000u) | (s[i + 1] & 0x7fffffffu);
        s[i] = s[i + MT_M] ^ (y >> 1) ^ ((0u - (s[i + 1] & 1u)) & 0x9908b0dfu);
    }
    for (Py_ssize_t i = MT_N - MT_M; i < MT_N - 1; ++i) {
        const uint32_t y = (s[i] & 0x80000000u) | (s[i + 1] & 0x7fffffffu);
        s[i] = s[i + MT_M - MT_N] ^ (y >> 1) ^ ((0u - (s[i + 1] & 1u)) & 0x9908b0dfu);
    }
    const uint32_t last = (s[MT_N - 1] & 0x80000000u) | (s[0] & 0x7fffffffu);
    s[MT_N - 1] = s[MT_M - 1] ^ (last >> 1) ^ ((0u - (s[0] & 1u)) & 0x9908b0dfu);
    mt_temper(s, out);
}

/* at::mt19937's state: `left` counts down to the next regeneration, `next` indexes the word
 * drawn next; `tempered` holds the outputs of the current words (valid from `next` on). */
struct mt_stream {
    uint32_t s[MT_N];
    uint32_t tempered[MT_N];
    int32_t left;
    Py_ssize_t next;
};

static ALWAYS_INLINE uint32_t mt_draw(struct mt_stream *restrict m)
{
    if (--m->left == 0) {
        mt_regenerate(m->s, m->tempered);
        m->left = MT_N;
        m->next = 0;
    }
    return m->tempered[m->next++];
}

/* spikes[k] = draw k < p for `run` tempered words, as torch.rand's float32 values
 * ((y & 0xffffff) · 2⁻²⁴, exact in float). */
TARGET_CLONES static void draw_run_f32(const uint32_t *restrict words, Py_ssize_t run,
                                       const float p, uint8_t *restrict spikes)
{
    for (Py_ssize_t k = 0; k < run; ++k)
        spikes[k] = (float)(words[k] & 0xffffffu) * 0x1p-24f < p;
}

/* Elements are taken in blocks of 64: time-first, a block's spikes of one step are one cache
 * line of the output. */
#define DRAW_BLOCK 64

static PyObject *py_bernoulli_draws(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *a[7];
    (void)self;
    if (parse_args(args, nargs, 7, "bernoulli_draws", a) < 0)
        return NULL;
    unsigned char *const state = a[0];
    const char *const probabilities = a[1];
    const Py_ssize_t n = AS_SIZE(a[2]), steps = AS_SIZE(a[3]);
    const int is_double = AS_INT(a[4]), time_first = AS_INT(a[6]);
    uint8_t *const out = a[5];
    if (state == NULL || n < 0 || steps < 0 || (n > 0 && steps > 0 && (probabilities == NULL ||
                                                                          out == NULL)))
        Py_RETURN_FALSE;
    struct mt_stream m;
    int32_t seeded;
    uint64_t next, word;
    memcpy(&m.left, state + 8, 4);
    memcpy(&seeded, state + 12, 4);
    memcpy(&next, state + 16, 8);
    /* the words left before the next regeneration must lie within the state */
    if (seeded != 1 || m.left < 1 || m.left > MT_N || next > MT_N ||
        (m.left > 1 && next + (uint64_t)m.left - 1 > MT_N))
        Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i < MT_N; ++i) {
        memcpy(&word, state + 24 + 8 * i, 8);
        if (word >> 32)
            Py_RETURN_FALSE;
        m.s[i] = (uint32_t)word;
    }
    m.next = (Py_ssize_t)next;
    mt_temper(m.s, m.tempered);
    /* time-first, each block's spikes are drawn time-last into `tile`, then transposed */
    uint8_t *tile = NULL;
    if (time_first && n > 0 && steps > 0) {
        tile = (uint8_t *)kernel_scratch((size_t)DRAW_BLOCK * (size_t)steps);
        if (tile == NULL)
            return PyErr_NoMemory();
    }
    for (Py_ssize_t block = 0; block < n && steps > 0; block += DRAW_BLOCK) {
        const Py_ssize_t end = block + DRAW_BLOCK < n ? block + DRAW_BLOCK : n;
        for (Py_ssize_t e = block; e < end; ++e) {
            uint8_t *const target = time_first ? tile + (e - block) * steps : out + e * steps;
            if (is_double) {
                const double p = ((const double *)probabilities)[e];
                for (Py_ssize_t t = 0; t < steps; ++t) {
                    const uint64_t high = mt_draw(&m);
                    const uint64_t bits = ((high << 32) | mt_draw(&m)) & ((UINT64_C(1) << 53) - 1);
                    target[t] = (double)bits * 0x1p-53 < p;
                }
            } else {
                const float p = ((const float *)probabilities)[e];
                /* runs of the tempered words up to the next regeneration (one draw each) */
                for (Py_ssize_t t = 0; t < steps;) {
                    if (m.left == 1) { /* the next draw regenerates */
                        target[t++] = (float)(mt_draw(&m) & 0xffffffu) * 0x1p-24f < p;
                        continue;
                    }
                    Py_ssize_t run = m.left - 1;
                    run = run < steps - t ? run : steps - t;
                    draw_run_f32(m.tempered + m.next, run, p, target + t);
                    m.next += run;
                    m.left -= (int32_t)run;
                    t += run;
                }
            }
        }
        if (time_first)
            for (Py_ssize_t t = 0; t < steps; ++t)
                for (Py_ssize_t e = block; e < end; ++e)
                    out[t * n + e] = tile[(e - block) * steps + t];
    }
    memcpy(state + 8, &m.left, 4);
    next = (uint64_t)m.next;
    memcpy(state + 16, &next, 8);
    for (Py_ssize_t i = 0; i < MT_N; ++i) {
        word = m.s[i];
        memcpy(state + 24 + 8 * i, &word, 8);
    }
    Py_RETURN_TRUE;
}

/* layout(): {struct name: (sizeof, {field: offset})}, to check the ctypes mirrors. */
#define FIELD(S, F)                                                                               \
    if (add_field(fields, #F, offsetof(struct S, F)) < 0)                                         \
        goto fail;

static int add_field(PyObject *fields, const char *name, size_t offset)
{
    PyObject *value = PyLong_FromSize_t(offset);
    if (value == NULL)
        return -1;
    const int status = PyDict_SetItemString(fields, name, value);
    Py_DECREF(value);
    return status;
}

static int add_layout(PyObject *result, const char *name, size_t size, PyObject *fields)
{
    PyObject *entry = Py_BuildValue("(nO)", (Py_ssize_t)size, fields);
    if (entry == NULL)
        return -1;
    const int status = PyDict_SetItemString(result, name, entry);
    Py_DECREF(entry);
    return status;
}

static PyObject *py_layout(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyObject *result = PyDict_New(), *fields = NULL;
    if (result == NULL)
        return NULL;
    if ((fields = PyDict_New()) == NULL)
        goto fail;
    FIELD(input_args, n) FIELD(input_args, is_double) FIELD(input_args, x_is_bool)
    FIELD(input_args, linear) FIELD(input_args, x) FIELD(input_args, trace)
    FIELD(input_args, alpha_t) FIELD(input_args, tau_t) FIELD(input_args, dt)
    FIELD(input_args, spikes)
    if (add_layout(result, "input_args", sizeof(struct input_args), fields) < 0)
        goto fail;
    Py_CLEAR(fields);
    if ((fields = PyDict_New()) == NULL)
        goto fail;
    FIELD(ingest_args, rows) FIELD(ingest_args, cols) FIELD(ingest_args, is_double)
    FIELD(ingest_args, x_is_bool) FIELD(ingest_args, x) FIELD(ingest_args, trace_in)
    FIELD(ingest_args, pre_trace) FIELD(ingest_args, slot) FIELD(ingest_args, out)
    FIELD(ingest_args, pre_spikes) FIELD(ingest_args, gemm) FIELD(ingest_args, weight)
    FIELD(ingest_args, n_out) FIELD(ingest_args, product) FIELD(ingest_args, operands)
    FIELD(ingest_args, capacity) FIELD(ingest_args, trace_sums) FIELD(ingest_args, sum_scratch)
    FIELD(ingest_args, sum_length) FIELD(ingest_args, weight_stride_o)
    FIELD(ingest_args, weight_stride_i) FIELD(ingest_args, spike_line)
    FIELD(ingest_args, spike_work)
    if (add_layout(result, "ingest_args", sizeof(struct ingest_args), fields) < 0)
        goto fail;
    Py_CLEAR(fields);
    if ((fields = PyDict_New()) == NULL)
        goto fail;
    FIELD(neuron_args, rows) FIELD(neuron_args, cols) FIELD(neuron_args, is_double)
    FIELD(neuron_args, model) FIELD(neuron_args, linear) FIELD(neuron_args, relax)
    FIELD(neuron_args, center_per_cell) FIELD(neuron_args, input) FIELD(neuron_args, in_row_stride)
    FIELD(neuron_args, in_col_stride) FIELD(neuron_args, input2)
    FIELD(neuron_args, in2_row_stride) FIELD(neuron_args, in2_col_stride) FIELD(neuron_args, v)
    FIELD(neuron_args, thresh)
    FIELD(neuron_args, v_rest) FIELD(neuron_args, alpha_v) FIELD(neuron_args, tau_v)
    FIELD(neuron_args, dt) FIELD(neuron_args, duration_refrac) FIELD(neuron_args, counts)
    FIELD(neuron_args, spikes) FIELD(neuron_args, fired) FIELD(neuron_args, trace)
    FIELD(neuron_args, alpha_t) FIELD(neuron_args, tau_t) FIELD(neuron_args, alpha_thresh)
    FIELD(neuron_args, tau_thresh) FIELD(neuron_args, thresh_center) FIELD(neuron_args, scratch)
    if (add_layout(result, "neuron_args", sizeof(struct neuron_args), fields) < 0)
        goto fail;
    Py_CLEAR(fields);
    return result;
fail:
    Py_XDECREF(fields);
    Py_DECREF(result);
    return NULL;
}
#undef FIELD

/* constants(): the values pysnn/native.py and pysnn/functional.py share with this file. */
static PyObject *py_constants(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "MODEL_IF", MODEL_IF, "MODEL_LIF",
                         MODEL_LIF, "MODEL_ADAPTIVE_LIF", MODEL_ADAPTIVE_LIF, "REFRAC_MAX_STEPS",
                         REFRAC_MAX_STEPS, "ORDERED_MAX_DEPTH", ORDERED_MAX_DEPTH,
                         "SPIKE_PRODUCT_MAX_LENGTH", SPIKE_PRODUCT_MAX_LENGTH, "MT_STATE_BYTES",
                         MT_STATE_BYTES, "BLAS_ABSORBS_BELOW", BLAS_ABSORBS_BELOW);
}

static PyMethodDef methods[] = {
    {"input_step", (PyCFunction)(void (*)(void))py_input_step, METH_FASTCALL,
     "Fused Input step (trace update and spike store)."},
    {"ingest", (PyCFunction)(void (*)(void))py_ingest, METH_FASTCALL,
     "Fused presynaptic side of a Linear connection (trace copy, delay slot, spikes)."},
    {"ingest_product", (PyCFunction)(void (*)(void))py_ingest_product, METH_FASTCALL,
     "Presynaptic step and W @ spikes on all threads."},
    {"product_bounded", (PyCFunction)(void (*)(void))py_product_bounded, METH_FASTCALL,
     "A learning rule's weight product and bounds, on all threads."},
    {"spike_ingest", (PyCFunction)(void (*)(void))py_spike_ingest, METH_FASTCALL,
     "Linear(reduction=\"sum\")'s product from the nonzero inputs alone, then ingest."},
    {"ordered_update", (PyCFunction)(void (*)(void))py_ordered_update, METH_FASTCALL,
     "A learning rule's ordered weight update, dense or event-driven."},
    {"stack_terms", (PyCFunction)(void (*)(void))py_stack_terms, METH_FASTCALL,
     "Fill the stacked factor matrices of a learning rule's matrix product."},
    {"normalize_rows", (PyCFunction)(void (*)(void))py_normalize_rows, METH_FASTCALL,
     "normalize_weights over the trailing axes of a weight, contiguous or stored transposed, "
     "on all threads."},
    {"bernoulli_draws", (PyCFunction)(void (*)(void))py_bernoulli_draws, METH_FASTCALL,
     "Bernoulli spikes from a torch CPU generator's state, as torch.rand draws them."},
    {"neuron_step", (PyCFunction)(void (*)(void))py_neuron_step, METH_FASTCALL,
     "Fused IF/LIF/adaptive LIF step."},
    {"layout", py_layout, METH_NOARGS, "Sizes and field offsets of the argument structs."},
    {"constants", py_constants, METH_NOARGS, "Constants shared with pysnn/native.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "Fused CPU step kernels of pysnn (optional).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *extension = PyModule_Create(&module);
#ifdef _OPENMP
    const long openmp = 1;
#else
    const long openmp = 0;
#endif
    /* whether large steps are split over threads (see team_size) */
    if (extension != NULL && PyModule_AddIntConstant(extension, "openmp", openmp) < 0) {
        Py_DECREF(extension);
        return NULL;
    }
    return extension;
}
