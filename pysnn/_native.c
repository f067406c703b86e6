/*
 * Fused CPU kernels for one simulation step of pysnn's inputs, neurons and Linear connections.
 *
 * Why this exists: on a CPU, eager PyTorch pays 3-8 us per elementwise operation whatever the
 * tensor size, and one neuron step is a dozen of them, each a separate pass over memory. These
 * kernels do the same arithmetic, in the same order and precision as the eager code in
 * pysnn/functional.py, in one pass over the cells: products and sums are rounded separately
 * (-ffp-contract=off), except where torch's addcmul_ rounds a multiply-add once (fma()). They
 * receive raw data pointers; pysnn/native.py checks every dtype, shape, device and layout before
 * calling, and falls back to the eager code for anything these kernels do not cover.
 *
 * Parameters that hold one value for every cell (the usual case) are passed as scalars
 * (`uniform` = 1, values in `scalars`) so that the kernel does not stream them from memory.
 *
 * Built as an optional extension by setup.py; nothing here links against libtorch.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Voltage models (neuron_step `model`). */
#define MODEL_IF 0
#define MODEL_LIF_LINEAR 1
#define MODEL_LIF_EXPONENTIAL 2
/* Trace and threshold updates (`trace_mode`, `thresh_mode`). */
#define UPDATE_LINEAR 0
#define UPDATE_EXPONENTIAL 1
#define THRESH_FIXED 2
/* Order of the values in `scalars` when `uniform` is set. */
#define S_ALPHA_V 0
#define S_TAU_V 1
#define S_ALPHA_T 2
#define S_TAU_T 3
#define S_ALPHA_THRESH 4
#define S_TAU_THRESH 5
#define S_CENTER 6
#define N_SCALARS 7 /* length of `scalars` */

#if defined(_MSC_VER)
#define restrict __restrict
#endif
#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif
/* One build runs on every x86-64 CPU and uses AVX2 + FMA (x86-64-v3) where the CPU has them (GCC
 * picks the clone when the module loads); elsewhere the portable build is used. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define TARGET_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TARGET_CLONES
#endif

/* A per-cell parameter: the scalar (hoisted out of the loop) when uniform, else the cell's own
 * value. */
#define PARAM(uniform, hoisted, slot, array, i) ((uniform) ? (hoisted)[slot] : (array)[i])
/* Copy the scalars to a local array before the loop so the compiler sees loop invariants. */
#define HOIST_SCALARS(T, uniform, scalars, hoisted)                                               \
    T hoisted[N_SCALARS] = {0, 0, 0, 0, 0, 0, 0};                                                 \
    if (uniform)                                                                                  \
        for (int k = 0; k < N_SCALARS; ++k)                                                       \
            hoisted[k] = (scalars)[k];

#define DEFINE_KERNELS(T, SUFFIX, FMA)                                                            \
    static ALWAYS_INLINE void input_loop_##SUFFIX(                                                \
        const int x_is_bool, const int mode, const int uniform, Py_ssize_t n,                     \
        const void *restrict x, T *restrict trace, const T *restrict alpha,                       \
        const T *restrict tau, const T *restrict dt, uint8_t *restrict spikes,                    \
        const T *restrict scalars)                                                                \
    {                                                                                             \
        const T step = *dt;                                                                       \
        HOIST_SCALARS(T, uniform, scalars, hoisted)                                               \
        for (Py_ssize_t i = 0; i < n; ++i) {                                                      \
            const T xi = x_is_bool ? (T)((const uint8_t *)x)[i] : ((const T *)x)[i];             \
            const T a = PARAM(uniform, hoisted, S_ALPHA_T, alpha, i);                             \
            const T decay = PARAM(uniform, hoisted, S_TAU_T, tau, i);                             \
            if (mode == UPDATE_LINEAR) {                                                          \
                const T t = trace[i] * decay;                                                     \
                trace[i] = FMA(a, xi, t); /* torch's addcmul_ rounds once */                      \
            } else {                                                                              \
                const T ratio = step / decay;                                                     \
                const T drive = a * xi - trace[i];                                                \
                trace[i] = trace[i] + ratio * drive;                                              \
            }                                                                                     \
            spikes[i] = xi != (T)0;                                                               \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    TARGET_CLONES static void input_step_##SUFFIX(Py_ssize_t n, const void *x, int x_is_bool,     \
                                                  T *trace, const T *alpha, const T *tau,         \
                                                  const T *dt, uint8_t *spikes, int mode,         \
                                                  int uniform, const T *scalars)                  \
    {                                                                                             \
        if (x_is_bool == 0 && mode == 0 && uniform == 0)                                          \
            input_loop_##SUFFIX(0, 0, 0, n, x, trace, alpha, tau, dt, spikes, scalars);           \
        else if (x_is_bool == 0 && mode == 0 && uniform == 1)                                     \
            input_loop_##SUFFIX(0, 0, 1, n, x, trace, alpha, tau, dt, spikes, scalars);           \
        else if (x_is_bool == 0 && mode == 1 && uniform == 0)                                     \
            input_loop_##SUFFIX(0, 1, 0, n, x, trace, alpha, tau, dt, spikes, scalars);           \
        else if (x_is_bool == 0 && mode == 1 && uniform == 1)                                     \
            input_loop_##SUFFIX(0, 1, 1, n, x, trace, alpha, tau, dt, spikes, scalars);           \
        else if (x_is_bool == 1 && mode == 0 && uniform == 0)                                     \
            input_loop_##SUFFIX(1, 0, 0, n, x, trace, alpha, tau, dt, spikes, scalars);           \
        else if (x_is_bool == 1 && mode == 0 && uniform == 1)                                     \
            input_loop_##SUFFIX(1, 0, 1, n, x, trace, alpha, tau, dt, spikes, scalars);           \
        else if (x_is_bool == 1 && mode == 1 && uniform == 0)                                     \
            input_loop_##SUFFIX(1, 1, 0, n, x, trace, alpha, tau, dt, spikes, scalars);           \
        else if (x_is_bool == 1 && mode == 1 && uniform == 1)                                     \
            input_loop_##SUFFIX(1, 1, 1, n, x, trace, alpha, tau, dt, spikes, scalars);           \
    }                                                                                             \
                                                                                                  \
    static ALWAYS_INLINE void ingest_loop_##SUFFIX(                                               \
        const int x_is_bool, const int delayed, const int has_out, Py_ssize_t rows,               \
        Py_ssize_t cols,                                                                          \
        const void *restrict x, const T *restrict trace_in, T *restrict pre_trace,                \
        T *restrict slot, T *restrict out, uint8_t *restrict pre_spikes, T *restrict trace_sums)  \
    {                                                                                             \
        for (Py_ssize_t r = 0; r < rows; ++r) {                                                   \
            const Py_ssize_t base = r * cols;                                                     \
            for (Py_ssize_t c = 0; c < cols; ++c) {                                               \
                const Py_ssize_t i = base + c;                                                    \
                const T xi = x_is_bool ? (T)((const uint8_t *)x)[i] : ((const T *)x)[i];         \
                pre_trace[i] = trace_in[i];                                                       \
                T leaving = xi;                                                                   \
                if (delayed) {                                                                    \
                    leaving = slot[i];                                                            \
                    slot[i] = xi;                                                                 \
                }                                                                                 \
                if (has_out) /* without: the caller read the slot before this call */           \
                    out[i] = leaving;                                                             \
                pre_spikes[i] = leaving != (T)0;                                                  \
            }                                                                                     \
            if (trace_sums) {                                                                     \
                /* eight independent partial sums in double: vectorisable, and at least as     \
                 * accurate as torch's float32 sum */                                             \
                double partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                     \
                Py_ssize_t c = 0;                                                                 \
                for (; c + 8 <= cols; c += 8)                                                     \
                    for (int k = 0; k < 8; ++k)                                                   \
                        partial[k] += (double)trace_in[base + c + k];                             \
                for (; c < cols; ++c)                                                             \
                    partial[0] += (double)trace_in[base + c];                                     \
                trace_sums[r] = (T)(((partial[0] + partial[1]) + (partial[2] + partial[3])) +     \
                                    ((partial[4] + partial[5]) + (partial[6] + partial[7])));     \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    TARGET_CLONES static void ingest_##SUFFIX(Py_ssize_t rows, Py_ssize_t cols, const void *x,    \
                                              int x_is_bool, const T *trace_in, T *pre_trace,     \
                                              T *slot, T *out, uint8_t *pre_spikes,               \
                                              T *trace_sums)                                      \
    {                                                                                             \
        if (x_is_bool == 0 && (slot != NULL) == 0 && (out != NULL) == 0)                          \
            ingest_loop_##SUFFIX(0, 0, 0, rows, cols, x, trace_in, pre_trace, slot, out,          \
                                 pre_spikes, trace_sums);                                         \
        else if (x_is_bool == 0 && (slot != NULL) == 0 && (out != NULL) == 1)                     \
            ingest_loop_##SUFFIX(0, 0, 1, rows, cols, x, trace_in, pre_trace, slot, out,          \
                                 pre_spikes, trace_sums);                                         \
        else if (x_is_bool == 0 && (slot != NULL) == 1 && (out != NULL) == 0)                     \
            ingest_loop_##SUFFIX(0, 1, 0, rows, cols, x, trace_in, pre_trace, slot, out,          \
                                 pre_spikes, trace_sums);                                         \
        else if (x_is_bool == 0 && (slot != NULL) == 1 && (out != NULL) == 1)                     \
            ingest_loop_##SUFFIX(0, 1, 1, rows, cols, x, trace_in, pre_trace, slot, out,          \
                                 pre_spikes, trace_sums);                                         \
        else if (x_is_bool == 1 && (slot != NULL) == 0 && (out != NULL) == 0)                     \
            ingest_loop_##SUFFIX(1, 0, 0, rows, cols, x, trace_in, pre_trace, slot, out,          \
                                 pre_spikes, trace_sums);                                         \
        else if (x_is_bool == 1 && (slot != NULL) == 0 && (out != NULL) == 1)                     \
            ingest_loop_##SUFFIX(1, 0, 1, rows, cols, x, trace_in, pre_trace, slot, out,          \
                                 pre_spikes, trace_sums);                                         \
        else if (x_is_bool == 1 && (slot != NULL) == 1 && (out != NULL) == 0)                     \
            ingest_loop_##SUFFIX(1, 1, 0, rows, cols, x, trace_in, pre_trace, slot, out,          \
                                 pre_spikes, trace_sums);                                         \
        else if (x_is_bool == 1 && (slot != NULL) == 1 && (out != NULL) == 1)                     \
            ingest_loop_##SUFFIX(1, 1, 1, rows, cols, x, trace_in, pre_trace, slot, out,          \
                                 pre_spikes, trace_sums);                                         \
    }                                                                                             \
                                                                                                  \
    static void stack_term_##SUFFIX(Py_ssize_t count, T *restrict out, const void *restrict src, \
                                    int src_is_bool, T coef, int scaled)                          \
    {                                                                                             \
        if (src_is_bool) {                                                                        \
            const uint8_t *restrict bits = (const uint8_t *)src;                                  \
            for (Py_ssize_t i = 0; i < count; ++i)                                                \
                out[i] = scaled ? (T)bits[i] * coef : (T)bits[i];                                 \
        } else {                                                                                  \
            const T *restrict values = (const T *)src;                                            \
            for (Py_ssize_t i = 0; i < count; ++i)                                                \
                out[i] = scaled ? values[i] * coef : values[i];                                   \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* The loop body with the model choices as arguments: the dispatcher below calls it with   \
     * literal constants, so each combination becomes its own branch-free, vectorisable loop. */ \
    static ALWAYS_INLINE void neuron_loop_##SUFFIX(                                               \
        const int model, const int trace_mode, const int thresh_mode, const int relax,           \
        const int uniform, Py_ssize_t rows, Py_ssize_t cols, const T *restrict in,               \
        Py_ssize_t in_row_stride, Py_ssize_t in_col_stride, long refrac_steps, T *restrict v,    \
        T *restrict thresh, const T *restrict v_rest, const T *restrict alpha_v,                 \
        const T *restrict tau_v, const T *restrict dt, int32_t *restrict counts,                 \
        uint8_t *restrict spikes, uint8_t *restrict spikes_copy, T *restrict trace,              \
        const T *restrict alpha_t,                                                               \
        const T *restrict tau_t, const T *restrict alpha_thresh, const T *restrict tau_thresh,   \
        const T *restrict thresh_center, int center_is_scalar, const T *restrict scalars)        \
    {                                                                                             \
        const T rest = *v_rest;                                                                   \
        const T step = *dt;                                                                       \
        (void)in_row_stride;                                                                      \
        (void)in_col_stride;                                                                      \
        HOIST_SCALARS(T, uniform, scalars, hoisted)                                               \
        const int32_t refractory = refrac_steps > 0;                                              \
        const int32_t period = (int32_t)refrac_steps;                                             \
        const Py_ssize_t center_step = center_is_scalar ? 0 : 1;                                  \
        const Py_ssize_t n = rows * cols;                                                         \
        for (Py_ssize_t i = 0; i < n; ++i) {                                                      \
            {                                                                                     \
                const T current = in[i];                                                          \
                const int32_t count = refractory ? counts[i] : 0;                                 \
                const T a_v = PARAM(uniform, hoisted, S_ALPHA_V, alpha_v, i);                     \
                T volt = v[i];                                                                    \
                if (model == MODEL_IF) {                                                          \
                    const T integrating = count == 0 ? (T)1 : (T)0;                               \
                    volt = volt + integrating * a_v * current;                                    \
                } else if (model == MODEL_LIF_LINEAR) {                                           \
                    T u = (volt - rest) * PARAM(uniform, hoisted, S_TAU_V, tau_v, i);             \
                    u = FMA(a_v, current, u); /* torch's addcmul_ rounds once */                  \
                    u = count != 0 ? (T)0 : u;                                                    \
                    volt = u + rest;                                                              \
                } else {                                                                          \
                    const T integrating = count == 0 ? (T)1 : (T)0;                               \
                    const T ratio = step / PARAM(uniform, hoisted, S_TAU_V, tau_v, i);            \
                    const T drive = (a_v * current - (volt - rest)) * ratio;                      \
                    volt = volt + integrating * drive;                                            \
                }                                                                                 \
                T th = thresh[i];                                                                 \
                const T s = volt >= th ? (T)1 : (T)0;                                             \
                spikes[i] = (uint8_t)(s != (T)0);                                                 \
                spikes_copy[i] = (uint8_t)(s != (T)0);                                            \
                const T a_t = PARAM(uniform, hoisted, S_ALPHA_T, alpha_t, i);                     \
                const T tau_trace = PARAM(uniform, hoisted, S_TAU_T, tau_t, i);                   \
                if (trace_mode == UPDATE_LINEAR) {                                                \
                    const T t = trace[i] * tau_trace;                                             \
                    trace[i] = t + a_t * s;                                                       \
                } else {                                                                          \
                    const T ratio = step / tau_trace;                                             \
                    const T drive = a_t * s - trace[i];                                           \
                    trace[i] = trace[i] + ratio * drive;                                          \
                }                                                                                 \
                if (thresh_mode != THRESH_FIXED) {                                                \
                    const T a_th = PARAM(uniform, hoisted, S_ALPHA_THRESH, alpha_thresh, i);      \
                    const T tau_th = PARAM(uniform, hoisted, S_TAU_THRESH, tau_thresh, i);        \
                    const T center = relax ? PARAM(uniform, hoisted, S_CENTER, thresh_center,     \
                                                   i * center_step)                               \
                                           : (T)0;                                                \
                    if (relax)                                                                    \
                        th = th - center;                                                         \
                    if (thresh_mode == UPDATE_LINEAR) {                                           \
                        const T t = th * tau_th;                                                  \
                        th = t + a_th * s;                                                        \
                    } else {                                                                      \
                        const T ratio = step / tau_th;                                            \
                        const T drive = a_th * s - th;                                            \
                        th = th + ratio * drive;                                                  \
                    }                                                                             \
                    if (relax)                                                                    \
                        th = th + center;                                                         \
                    thresh[i] = th;                                                               \
                }                                                                                 \
                /* without a refractory period the counters stay as they are */                 \
                const int32_t left = count > 0 ? count - 1 : 0;                                   \
                const int32_t next = left + (s != (T)0 ? period : 0);                             \
                counts[i] = refractory ? next : counts[i];                                        \
                v[i] = s != (T)0 ? rest : volt;                                                   \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    TARGET_CLONES static int neuron_step_##SUFFIX(                                               \
        Py_ssize_t rows, Py_ssize_t cols, const T *in, Py_ssize_t in_row_stride,                  \
        Py_ssize_t in_col_stride, int model, int trace_mode, int thresh_mode, int relax,          \
        long refrac_steps, T *v, T *thresh, const T *v_rest, const T *alpha_v, const T *tau_v,    \
        const T *dt, int32_t *counts, uint8_t *spikes, uint8_t *spikes_copy, T *trace,            \
        const T *alpha_t,                                                                         \
        const T *tau_t, const T *alpha_thresh, const T *tau_thresh, const T *thresh_center,       \
        int center_is_scalar, int uniform, const T *scalars, T *scratch)                          \
    {                                                                                             \
        /* pysnn shares one update_type between voltage, trace and threshold, so the trace and \
         * threshold modes follow the model; only the used combinations are instantiated. */   \
        const int linear = trace_mode == UPDATE_LINEAR;                                           \
        const int adaptive = thresh_mode != THRESH_FIXED;                                         \
        T *gathered = NULL;                                                                       \
        if (in_col_stride != 1 || in_row_stride != cols) {                                        \
            /* e.g. the transposed output of W @ xT: one cache-friendly copy (into the        \
             * caller's scratch when given), then a contiguous loop the compiler vectorises */    \
            T *target = scratch;                                                                  \
            if (target == NULL) {                                                                 \
                gathered = (T *)malloc((size_t)(rows * cols) * sizeof(T));                        \
                if (gathered == NULL)                                                             \
                    return -1;                                                                    \
                target = gathered;                                                                \
            }                                                                                     \
            for (Py_ssize_t c = 0; c < cols; ++c)                                                 \
                for (Py_ssize_t r = 0; r < rows; ++r)                                             \
                    target[r * cols + c] = in[r * in_row_stride + c * in_col_stride];             \
            in = target;                                                                          \
        }                                                                                         \
        if (uniform == 1 && model == MODEL_IF && linear)                                          \
            NEURON_CALL(SUFFIX, MODEL_IF, UPDATE_LINEAR, THRESH_FIXED, 0, 1);                     \
        else if (uniform == 1 && model == MODEL_IF)                                               \
            NEURON_CALL(SUFFIX, MODEL_IF, UPDATE_EXPONENTIAL, THRESH_FIXED, 0, 1);                \
        else if (uniform == 1 && linear && !adaptive)                                             \
            NEURON_CALL(SUFFIX, MODEL_LIF_LINEAR, UPDATE_LINEAR, THRESH_FIXED, 0, 1);             \
        else if (uniform == 1 && !adaptive)                                                       \
            NEURON_CALL(SUFFIX, MODEL_LIF_EXPONENTIAL, UPDATE_EXPONENTIAL, THRESH_FIXED, 0, 1);   \
        else if (uniform == 1 && linear && !relax)                                                \
            NEURON_CALL(SUFFIX, MODEL_LIF_LINEAR, UPDATE_LINEAR, UPDATE_LINEAR, 0, 1);            \
        else if (uniform == 1 && linear)                                                          \
            NEURON_CALL(SUFFIX, MODEL_LIF_LINEAR, UPDATE_LINEAR, UPDATE_LINEAR, 1, 1);            \
        else if (uniform == 1 && !relax)                                                          \
            NEURON_CALL(SUFFIX, MODEL_LIF_EXPONENTIAL, UPDATE_EXPONENTIAL,                        \
                        UPDATE_EXPONENTIAL, 0, 1);                                                \
        else if (uniform == 1)                                                                    \
            NEURON_CALL(SUFFIX, MODEL_LIF_EXPONENTIAL, UPDATE_EXPONENTIAL,                        \
                        UPDATE_EXPONENTIAL, 1, 1);                                                \
        else if (uniform == 0 && model == MODEL_IF && linear)                                     \
            NEURON_CALL(SUFFIX, MODEL_IF, UPDATE_LINEAR, THRESH_FIXED, 0, 0);                     \
        else if (uniform == 0 && model == MODEL_IF)                                               \
            NEURON_CALL(SUFFIX, MODEL_IF, UPDATE_EXPONENTIAL, THRESH_FIXED, 0, 0);                \
        else if (uniform == 0 && linear && !adaptive)                                             \
            NEURON_CALL(SUFFIX, MODEL_LIF_LINEAR, UPDATE_LINEAR, THRESH_FIXED, 0, 0);             \
        else if (uniform == 0 && !adaptive)                                                       \
            NEURON_CALL(SUFFIX, MODEL_LIF_EXPONENTIAL, UPDATE_EXPONENTIAL, THRESH_FIXED, 0, 0);   \
        else if (uniform == 0 && linear && !relax)                                                \
            NEURON_CALL(SUFFIX, MODEL_LIF_LINEAR, UPDATE_LINEAR, UPDATE_LINEAR, 0, 0);            \
        else if (uniform == 0 && linear)                                                          \
            NEURON_CALL(SUFFIX, MODEL_LIF_LINEAR, UPDATE_LINEAR, UPDATE_LINEAR, 1, 0);            \
        else if (uniform == 0 && !relax)                                                          \
            NEURON_CALL(SUFFIX, MODEL_LIF_EXPONENTIAL, UPDATE_EXPONENTIAL,                        \
                        UPDATE_EXPONENTIAL, 0, 0);                                                \
        else                                                                                      \
            NEURON_CALL(SUFFIX, MODEL_LIF_EXPONENTIAL, UPDATE_EXPONENTIAL,                        \
                        UPDATE_EXPONENTIAL, 1, 0);                                                \
        free(gathered);                                                                           \
        return 0;                                                                                 \
    }

#define NEURON_CALL(SUFFIX, MODEL, TRACE, THRESH, RELAX, UNIFORM)                                 \
    neuron_loop_##SUFFIX(MODEL, TRACE, THRESH, RELAX, UNIFORM, rows, cols, in, in_row_stride,     \
                         in_col_stride, refrac_steps, v, thresh, v_rest, alpha_v, tau_v, dt,      \
                         counts, spikes, spikes_copy, trace, alpha_t, tau_t, alpha_thresh,        \
                         tau_thresh,                                                              \
                         thresh_center, center_is_scalar, scalars)

DEFINE_KERNELS(float, f32, fmaf)
DEFINE_KERNELS(double, f64, fma)

/* ---------------------------------------------------------------------------------------------
 * Python bindings (METH_FASTCALL). Every argument is a Python int: a data pointer, a size, a
 * stride or a flag; None stands for a NULL pointer. The step kernels take their fixed
 * arguments packed once by the caller into a bytes object of native int64 values (0 for NULL;
 * see parse_packed): reading 30 separate int objects at every step costs cache misses.
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

/* ---------------------------------------------------------------------------------------------
 * Threads. When built with OpenMP (setup.py links the libgomp that PyTorch itself loads, so
 * both share one warm thread team), a large step is split into contiguous blocks of rows, one
 * per thread. Each value is computed by the same arithmetic whichever thread runs it, so the
 * results do not depend on the number of threads. Below PARALLEL_GRAIN values per thread the
 * hand-off costs more than it saves and the caller's thread does all the work. The team size
 * follows torch.set_num_threads (PyTorch sets OpenMP's maximum).
 * ------------------------------------------------------------------------------------------- */
#define PARALLEL_GRAIN 4096

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

/* A pointer moved by `count` elements of `size` bytes (NULL stays NULL). */
static void *advance(void *pointer, Py_ssize_t count, Py_ssize_t size)
{
    return pointer == NULL ? NULL : (void *)((char *)pointer + count * size);
}

/* args[0]: a bytes object of `fixed` int64 values, stored into out[0 .. fixed); then `varying`
 * ints (or None) into out[fixed ...]. */
static int parse_packed(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t fixed,
                        Py_ssize_t varying, const char *name, void **out)
{
    if (nargs != 1 + varying) {
        PyErr_Format(PyExc_TypeError, "%s expects %zd arguments, got %zd", name, 1 + varying,
                     nargs);
        return -1;
    }
    if (!PyBytes_Check(args[0]) || PyBytes_GET_SIZE(args[0]) != fixed * 8) {
        PyErr_Format(PyExc_TypeError, "%s: argument 0 must be %zd packed int64 values", name,
                     fixed);
        return -1;
    }
    const char *packed = PyBytes_AS_STRING(args[0]);
    for (Py_ssize_t k = 0; k < fixed; ++k) {
        int64_t value;
        memcpy(&value, packed + 8 * k, sizeof value); /* bytes data need not be aligned */
        out[k] = (void *)(intptr_t)value;
    }
    return parse_args(args + 1, nargs - 1, varying, name, out + fixed);
}

#define AS_SIZE(p) ((Py_ssize_t)(intptr_t)(p))
#define AS_INT(p) ((int)(intptr_t)(p))
#define AS_LONG(p) ((long)(intptr_t)(p))

/* The arguments that change from step to step (input pointers) come last, after the fixed
 * ones that Python packs once (parse_packed). */

/* input_step(packed(n, is_double, trace, alpha, tau, dt, spikes, mode, uniform, scalars),
 *            x, x_is_bool) */
static PyObject *py_input_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *a[12];
    (void)self;
    if (parse_packed(args, nargs, 10, 2, "input_step", a) < 0)
        return NULL;
    const Py_ssize_t n = AS_SIZE(a[0]);
    const int is_double = AS_INT(a[1]), x_is_bool = AS_INT(a[11]);
    const Py_ssize_t size = is_double ? 8 : 4, x_size = x_is_bool ? 1 : size;
    const int threads = team_size(n, n / 64);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        const Py_ssize_t begin = block_start(n, part, parts, 64);
        const Py_ssize_t count = block_start(n, part + 1, parts, 64) - begin;
        /* alpha and tau hold one value per cell unless `uniform` (then unread) */
        void *x = advance(a[10], begin, x_size), *trace = advance(a[2], begin, size);
        void *alpha = advance(a[3], begin, size), *tau = advance(a[4], begin, size);
        void *spikes = advance(a[6], begin, 1);
        if (is_double)
            input_step_f64(count, x, x_is_bool, trace, alpha, tau, a[5], spikes, AS_INT(a[7]),
                           AS_INT(a[8]), a[9]);
        else
            input_step_f32(count, x, x_is_bool, trace, alpha, tau, a[5], spikes, AS_INT(a[7]),
                           AS_INT(a[8]), a[9]);
    }
    Py_RETURN_NONE;
}

/* One thread's block of rows of the ingest step; `a` holds ingest's 11 arguments. */
static void ingest_block(void *const *a, int part, int parts)
{
    const Py_ssize_t rows = AS_SIZE(a[0]), cols = AS_SIZE(a[1]);
    const int is_double = AS_INT(a[2]), x_is_bool = AS_INT(a[9]);
    const Py_ssize_t size = is_double ? 8 : 4, x_size = x_is_bool ? 1 : size;
    const Py_ssize_t first = block_start(rows, part, parts, 1);
    const Py_ssize_t count = block_start(rows, part + 1, parts, 1) - first;
    const Py_ssize_t begin = first * cols;
    void *x = advance(a[8], begin, x_size), *trace_in = advance(a[10], begin, size);
    void *pre_trace = advance(a[3], begin, size), *slot = advance(a[7], begin, size);
    void *out = advance(a[4], begin, size), *pre_spikes = advance(a[5], begin, 1);
    void *sums = advance(a[6], first, size);
    if (is_double)
        ingest_f64(count, cols, x, x_is_bool, trace_in, pre_trace, slot, out, pre_spikes, sums);
    else
        ingest_f32(count, cols, x, x_is_bool, trace_in, pre_trace, slot, out, pre_spikes, sums);
}

/* ingest(packed(rows, cols, is_double, pre_trace, out, pre_spikes, trace_sums),
 *        slot, x, x_is_bool, trace_in) */
static PyObject *py_ingest(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *a[11];
    (void)self;
    if (parse_packed(args, nargs, 7, 4, "ingest", a) < 0)
        return NULL;
    const int threads = team_size(AS_SIZE(a[0]) * AS_SIZE(a[1]), AS_SIZE(a[0]));
#pragma omp parallel num_threads(threads) if (threads > 1)
    ingest_block(a, THREAD_INDEX(), THREAD_COUNT());
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

/* ingest_product(packed(ingest's 7 fixed arguments with out None,
 *                       gemm, weight, n_out, product, operands, capacity, depth),
 *                slot, x, x_is_bool, trace_in, cursor)
 *
 * The whole "sum" step of a Linear connection on all threads at once: the ingest step, and
 * product = W @ sᵀ ((O, B), row-major; W (O, I); s the spikes leaving the delay line, (B, I)).
 * Why: when one thread writes the spikes and the BLAS threads then read them, every core but
 * the writer's fetches them from another core's cache, which costs as much as a sizeable part
 * of the product. Here every thread keeps its own copy of the spikes: without a delay,
 * `operands` holds one B x I operand for each of `capacity` threads (depth 1); with a delay,
 * thread 0 works on spike_queue itself and `operands` holds, for each other thread, a copy of
 * the delay line (`depth` slots, indexed by the same cursor) that the caller refills from
 * spike_queue whenever the latter changes outside these kernels. Each thread takes its
 * own block of rows of W, as the BLAS splits the product itself, so every output value is the
 * same BLAS dot product as in one call for the whole product; the ingest rows are split as in
 * ingest. Returns False, with nothing done, when the step is too small to split. */
static PyObject *py_ingest_product(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *a[19], *fixed[19];
    (void)self;
    /* packed: ingest's 7 fixed arguments, then gemm ... depth; varying: slot ... cursor */
    if (parse_packed(args, nargs, 14, 5, "ingest_product", fixed) < 0)
        return NULL;
    for (int k = 0; k < 7; ++k)
        a[k] = fixed[k];
    for (int k = 0; k < 5; ++k)
        a[7 + k] = fixed[14 + k];
    for (int k = 0; k < 7; ++k)
        a[12 + k] = fixed[7 + k];
    const Py_ssize_t rows = AS_SIZE(a[0]), cols = AS_SIZE(a[1]), n_out = AS_SIZE(a[14]);
    const int is_double = AS_INT(a[2]), x_is_bool = AS_INT(a[9]);
    const Py_ssize_t size = is_double ? 8 : 4, values = rows * cols;
    const Py_ssize_t cursor = AS_SIZE(a[11]), depth = AS_SIZE(a[18]);
    const int delayed = a[7] != NULL;
    void *const x = a[8], *const gemm = a[12];
    char *const product = a[15];
    const char *const weight = a[13];
    char *const operands = a[16];
    int threads = team_size(values, rows);
    if (threads > AS_INT(a[17]))
        threads = AS_INT(a[17]);
    if (!BLAS_CALLS || threads < 2 || rows > INT_MAX || cols > INT_MAX || n_out > INT_MAX)
        Py_RETURN_FALSE;
#pragma omp parallel num_threads(threads)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        /* this thread's spikes: with a delay, the slot of its copy of the delay line (thread
         * 0's copy is spike_queue itself), else its own operand */
        char *const operand =
            !delayed    ? operands + (Py_ssize_t)part * values * size
            : part == 0 ? (char *)a[7]
                        : operands + ((Py_ssize_t)(part - 1) * depth + cursor) * values * size;
        if (!delayed) {
            store_operand(operand, x, x_is_bool, is_double, values);
            ingest_block(a, part, parts);
        }
        const Py_ssize_t first = block_start(n_out, part, parts, 1);
        const Py_ssize_t n = block_start(n_out, part + 1, parts, 1) - first;
        /* column-major: productᵀ (B x n) = operandᵀᵀ (B x I) @ W[first:first + n]ᵀ (I x n) */
        if (n > 0)
            blas_gemm(gemm, is_double, "T", "N", rows, n, cols, 1.0, operand, cols,
                      weight + first * cols * size, cols, 0.0, product + first * rows * size,
                      rows);
        if (delayed) {
            /* the slot just read now takes this step's input: this thread's rows through
             * ingest (which reads what leaves from the same copy), the other rows here */
            void *own[11];
            memcpy(own, a, sizeof own);
            own[7] = operand;
            ingest_block(own, part, parts);
            const Py_ssize_t begin = block_start(rows, part, parts, 1) * cols;
            const Py_ssize_t end = block_start(rows, part + 1, parts, 1) * cols;
            const Py_ssize_t x_size = x_is_bool ? 1 : size;
            store_operand(operand, x, x_is_bool, is_double, begin);
            store_operand(operand + end * size, (const char *)x + end * x_size, x_is_bool,
                          is_double, values - end);
        }
    }
    Py_RETURN_TRUE;
}

/* neuron_step(packed(rows, cols, is_double, model, trace_mode, thresh_mode, relax_to_center,
 *                    refrac_steps, v, thresh, v_rest, alpha_v, tau_v, dt, counts, spikes,
 *                    trace, alpha_t, tau_t, alpha_thresh, tau_thresh, thresh_center,
 *                    center_is_scalar, uniform, scalars, scratch (rows*cols values, or 0)),
 *             in, in_row_stride, in_col_stride, spikes_copy) */
static PyObject *py_neuron_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *a[30];
    int status;
    (void)self;
    if (parse_packed(args, nargs, 26, 4, "neuron_step", a) < 0)
        return NULL;
    const Py_ssize_t rows = AS_SIZE(a[0]), cols = AS_SIZE(a[1]);
    const Py_ssize_t in_row_stride = AS_SIZE(a[27]);
    const int is_double = AS_INT(a[2]), center_is_scalar = AS_INT(a[22]);
    const Py_ssize_t size = is_double ? 8 : 4;
    const int threads = team_size(rows * cols, rows);
    status = 0;
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(| : status)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        const Py_ssize_t first = block_start(rows, part, parts, 1);
        const Py_ssize_t count = block_start(rows, part + 1, parts, 1) - first;
        const Py_ssize_t begin = first * cols;
        /* per-cell arrays (the parameters too: unread when `uniform`); v_rest and dt are
         * scalars, the threshold centre is one unless `center_is_scalar` is 0 */
#define CELLS(k) advance(a[k], begin, size)
        void *center = center_is_scalar ? a[21] : CELLS(21);
        void *in = advance(a[26], first * in_row_stride, size);
#define NEURON_ARGS                                                                               \
    count, cols, in, in_row_stride, AS_SIZE(a[28]), AS_INT(a[3]), AS_INT(a[4]), AS_INT(a[5]),     \
        AS_INT(a[6]), AS_LONG(a[7]), CELLS(8), CELLS(9), a[10], CELLS(11), CELLS(12), a[13],      \
        advance(a[14], begin, 4), advance(a[15], begin, 1), advance(a[29], begin, 1), CELLS(16),  \
        CELLS(17), CELLS(18), CELLS(19), CELLS(20), center, center_is_scalar, AS_INT(a[23]),      \
        a[24], CELLS(25)
        if (is_double)
            status |= neuron_step_f64(NEURON_ARGS);
        else
            status |= neuron_step_f32(NEURON_ARGS);
#undef NEURON_ARGS
#undef CELLS
    }
    if (status != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* product_bounded(gemm, is_double, out, n_out, n_in, depth, p, q, alpha, beta, w_min, w_max)
 *
 * out ← clamp(beta·out + alpha·pᵀ q, w_min, w_max), out (O, I), p (depth, O) and q (depth, I)
 * row-major; w_min / w_max a float or None (no bound). A learning rule's weight update: each
 * thread takes its block of rows of `out` with the BLAS (as torch's addmm_ would split it) and
 * applies the bounds to that block while it is still in its core's cache, instead of a second
 * pass over the whole weight. The clamp is torch.clamp's: max with w_min, then min with w_max,
 * NaN kept. Returns False, with nothing done, when the product is too small to split. */
static PyObject *py_product_bounded(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *a[8];
    double value[4];
    int has[4] = {1, 1, 0, 0};
    (void)self;
    if (nargs != 12) {
        PyErr_Format(PyExc_TypeError, "product_bounded expects 12 arguments, got %zd", nargs);
        return NULL;
    }
    if (parse_args(args, 8, 8, "product_bounded", a) < 0)
        return NULL;
    for (int k = 0; k < 4; ++k) {
        if (args[8 + k] == Py_None) {
            has[k] = 0;
            continue;
        }
        has[k] = 1;
        value[k] = PyFloat_AsDouble(args[8 + k]);
        if (value[k] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    if (!has[0] || !has[1]) {
        PyErr_SetString(PyExc_TypeError, "product_bounded: alpha and beta must be floats");
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
#pragma omp parallel num_threads(threads)
    {
        const int part = THREAD_INDEX(), parts = THREAD_COUNT();
        const Py_ssize_t first = block_start(n_out, part, parts, 1);
        const Py_ssize_t rows = block_start(n_out, part + 1, parts, 1) - first;
        /* column-major: out[first:]ᵀ (I x n) = beta·out[first:]ᵀ + alpha·qᵀ (I x k) @ p[:, first:] */
        if (rows > 0)
            blas_gemm(gemm, is_double, "N", "T", n_in, rows, depth, value[0], q, n_in,
                      p + first * size, n_out, value[1], out + first * n_in * size, n_in);
        const Py_ssize_t begin = first * n_in, end = (first + rows) * n_in;
        if (is_double) {
            double *w = (double *)out;
            for (Py_ssize_t i = begin; has[2] && i < end; ++i)
                w[i] = w[i] < value[2] ? value[2] : w[i];
            for (Py_ssize_t i = begin; has[3] && i < end; ++i)
                w[i] = w[i] > value[3] ? value[3] : w[i];
        } else {
            float *w = (float *)out;
            const float low = (float)value[2], high = (float)value[3];
            for (Py_ssize_t i = begin; has[2] && i < end; ++i)
                w[i] = w[i] < low ? low : w[i];
            for (Py_ssize_t i = begin; has[3] && i < end; ++i)
                w[i] = w[i] > high ? high : w[i];
        }
    }
    Py_RETURN_TRUE;
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
    for (Py_ssize_t t = 0; t < n_terms; ++t) {
        void *term[4];
        PyObject *const *term_args = args + 7 + 5 * t;
        if (parse_args(term_args, 4, 4, "stack_terms", term) < 0)
            return NULL;
        const double coef = PyFloat_AsDouble(term_args[4]);
        if (coef == -1.0 && PyErr_Occurred())
            return NULL;
        const Py_ssize_t p_offset = t * rows * n_post, q_offset = t * rows * n_pre;
        if (is_double) {
            stack_term_f64(rows * n_post, (double *)head[5] + p_offset, term[2], AS_INT(term[3]),
                           coef, 1);
            stack_term_f64(rows * n_pre, (double *)head[6] + q_offset, term[0], AS_INT(term[1]),
                           1.0, 0);
        } else {
            stack_term_f32(rows * n_post, (float *)head[5] + p_offset, term[2], AS_INT(term[3]),
                           (float)coef, 1);
            stack_term_f32(rows * n_pre, (float *)head[6] + q_offset, term[0], AS_INT(term[1]),
                           1.0f, 0);
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"input_step", (PyCFunction)(void (*)(void))py_input_step, METH_FASTCALL,
     "Fused Input step (trace update and spike store)."},
    {"ingest", (PyCFunction)(void (*)(void))py_ingest, METH_FASTCALL,
     "Fused presynaptic side of a Linear connection (trace copy, delay slot, spikes)."},
    {"ingest_product", (PyCFunction)(void (*)(void))py_ingest_product, METH_FASTCALL,
     "Ingest and W @ spikes on all threads, each with its own copy of the spikes."},
    {"product_bounded", (PyCFunction)(void (*)(void))py_product_bounded, METH_FASTCALL,
     "A learning rule's weight product and bounds, on all threads."},
    {"stack_terms", (PyCFunction)(void (*)(void))py_stack_terms, METH_FASTCALL,
     "Fill the stacked factor matrices of a learning rule's matrix product."},
    {"neuron_step", (PyCFunction)(void (*)(void))py_neuron_step, METH_FASTCALL,
     "Fused IF/LIF/adaptive LIF step."},
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
