/*
 * The step kernels of pysnn/_native.c, written once and instantiated per dtype: _native.c
 * includes this file twice, with T the element type, SUFFIX the name suffix (f32, f64) and FMA
 * the fused multiply-add of that type.
 *
 * Each kernel is the twin of a whole-step function of pysnn/functional.py and performs the same
 * arithmetic in the same order and precision, one cell at a time: products and sums are rounded
 * separately (the file is compiled with -ffp-contract=off) except where torch's addcmul_ rounds a
 * multiply-add once (FMA). Every parameter is read from its array at every step: nothing is
 * cached between calls.
 */
#define KERNEL_NAME2(name, suffix) name##_##suffix
#define KERNEL_NAME(name, suffix) KERNEL_NAME2(name, suffix)
#define KERNEL(name) KERNEL_NAME(name, SUFFIX)

/* Input: trace update from the input as given, spikes = input != 0 (functional.input_step). */
static ALWAYS_INLINE void KERNEL(input_loop)(const int x_is_bool, const int linear, Py_ssize_t n,
                                             const void *restrict x, T *restrict trace,
                                             const T *restrict alpha_t, const T *restrict tau_t,
                                             const T step, uint8_t *restrict spikes)
{
    for (Py_ssize_t i = 0; i < n; ++i) {
        const T xi = x_is_bool ? (T)((const uint8_t *)x)[i] : ((const T *)x)[i];
        if (linear) {
            const T decayed = trace[i] * tau_t[i];
            trace[i] = FMA(alpha_t[i], xi, decayed); /* torch's addcmul_ rounds once */
        } else {
            const T ratio = step / tau_t[i];
            const T drive = alpha_t[i] * xi - trace[i];
            trace[i] = trace[i] + ratio * drive;
        }
        spikes[i] = xi != (T)0;
    }
}

TARGET_CLONES static void KERNEL(input_block)(const struct input_args *a, Py_ssize_t begin,
                                              Py_ssize_t count)
{
    const Py_ssize_t size = sizeof(T), x_size = a->x_is_bool ? 1 : size;
    const void *x = (const char *)a->x + begin * x_size;
    T *trace = (T *)a->trace + begin;
    const T *alpha_t = (const T *)a->alpha_t + begin, *tau_t = (const T *)a->tau_t + begin;
    const T step = *(const T *)a->dt;
    uint8_t *spikes = a->spikes + begin;
    if (a->x_is_bool && a->linear)
        KERNEL(input_loop)(1, 1, count, x, trace, alpha_t, tau_t, step, spikes);
    else if (a->x_is_bool)
        KERNEL(input_loop)(1, 0, count, x, trace, alpha_t, tau_t, step, spikes);
    else if (a->linear)
        KERNEL(input_loop)(0, 1, count, x, trace, alpha_t, tau_t, step, spikes);
    else
        KERNEL(input_loop)(0, 0, count, x, trace, alpha_t, tau_t, step, spikes);
}

/* Linear's presynaptic side (functional.linear_presynaptic_step): pre_trace = trace_in; the
 * input enters the delay-line slot and what leaves it (or the input itself without a delay) is
 * stored as bool in pre_spikes and, when `out` is set, as T in out. */
TARGET_CLONES static void KERNEL(ingest_block)(const struct ingest_args *a, Py_ssize_t begin,
                                               Py_ssize_t count)
{
    const int x_is_bool = (int)a->x_is_bool;
    const uint8_t *xb = (const uint8_t *)a->x + begin;
    const T *xt = (const T *)a->x + begin;
    const T *trace_in = (const T *)a->trace_in + begin;
    T *pre_trace = (T *)a->pre_trace + begin;
    T *slot = a->slot == NULL ? NULL : (T *)a->slot + begin;
    T *out = a->out == NULL ? NULL : (T *)a->out + begin;
    uint8_t *pre_spikes = a->pre_spikes + begin;
    for (Py_ssize_t i = 0; i < count; ++i) {
        const T xi = x_is_bool ? (T)xb[i] : xt[i];
        pre_trace[i] = trace_in[i];
        T leaving = xi;
        if (slot != NULL) {
            leaving = slot[i];
            slot[i] = xi;
        }
        if (out != NULL)
            out[i] = leaving;
        pre_spikes[i] = leaving != (T)0;
    }
}

/* functional.pairwise_sum of one row of `cols` values: padded with +0 to `length` values (the
 * least power of two >= cols), then halved level by level, element j taking element j + h, so
 * every addition is the one PyTorch makes, in the same order. `scratch` holds length / 2. */
static ALWAYS_INLINE T KERNEL(pairwise_row)(const T *restrict row, Py_ssize_t cols,
                                            Py_ssize_t length, T *restrict scratch)
{
    if (length == 1)
        return row[0]; /* a single value is its own sum */
    const Py_ssize_t half = length / 2; /* cols > half: the row fills the lower half */
    /* the first halving reads the row itself; the padding is +0 (x + 0 is x, but -0 + 0 is +0,
     * as in the padded tree) */
    for (Py_ssize_t j = 0; j < cols - half; ++j)
        scratch[j] = row[j] + row[j + half];
    for (Py_ssize_t j = cols - half; j < half; ++j)
        scratch[j] = row[j] + (T)0;
    for (Py_ssize_t step = half / 2; step >= 1; step /= 2) {
        T *restrict low = scratch;
        const T *restrict high = scratch + step;
        for (Py_ssize_t j = 0; j < step; ++j)
            low[j] = low[j] + high[j];
    }
    return scratch[0];
}

/* The trace sums of rows [first, first + count) (functional.pairwise_sum). */
static void KERNEL(trace_sums)(const struct ingest_args *a, Py_ssize_t first, Py_ssize_t count,
                               int part)
{
    const Py_ssize_t cols = (Py_ssize_t)a->cols, length = (Py_ssize_t)a->sum_length;
    T *restrict scratch = (T *)a->sum_scratch + part * length;
    const T *trace = (const T *)a->pre_trace;
    T *sums = (T *)a->trace_sums;
    for (Py_ssize_t r = first; r < first + count; ++r)
        sums[r] = KERNEL(pairwise_row)(trace + r * cols, cols, length, scratch);
}

/* models.normalize_weights over rows [first, first + count) of a contiguous (rows, cols)
 * weight: each row's sum by the tree of functional.pairwise_sum (in `scratch`, `length` values,
 * a power of two), then the row times (1 / sum) * total — torch's `total / sums` with a number
 * total — in place. A row whose scale is exactly 1 (a row normalised before and not changed
 * since, about half of Diehl & Cook's at batch 1), or whose sum is 0 (times 1 in the PyTorch
 * function), is not written: x * 1 is x, bit for bit, and a NaN in the row makes the scale
 * NaN. */
TARGET_CLONES static void KERNEL(normalize_rows)(T *restrict weight, Py_ssize_t first,
                                                 Py_ssize_t count, Py_ssize_t cols,
                                                 Py_ssize_t length, const T total,
                                                 T *restrict scratch)
{
    for (Py_ssize_t r = first; r < first + count; ++r) {
        T *restrict row = weight + r * cols;
        const T sum = KERNEL(pairwise_row)(row, cols, length, scratch);
        const T scale = sum != (T)0 ? ((T)1 / sum) * total : (T)1;
        if (scale != (T)1)
            for (Py_ssize_t c = 0; c < cols; ++c)
                row[c] = row[c] * scale;
    }
}

/* normalize_rows for a weight stored transposed: neuron o's `cols` weights are column o of
 * the contiguous (cols, rows) memory `weight`, for the neurons [first, first + count). The
 * trees of NORMALIZE_BLOCK_BYTES' worth of neurons are built side by side, one lane each (runs
 * of whole cache lines of each memory row: a strided column would load each line once per
 * neuron), each level the additions of pairwise_row in its order, so the same sums; `scratch`
 * holds length / 2 rows of lanes. */
TARGET_CLONES static void KERNEL(normalize_columns)(T *restrict weight, Py_ssize_t rows,
                                                    Py_ssize_t first, Py_ssize_t count,
                                                    Py_ssize_t cols, Py_ssize_t length,
                                                    const T total, T *restrict scratch)
{
    enum { lanes = NORMALIZE_BLOCK_BYTES / sizeof(T) };
    T (*restrict work)[lanes] = (T(*)[lanes])scratch;
    T sum[lanes], scale[lanes];
    for (Py_ssize_t o0 = first; o0 < first + count; o0 += lanes) {
        const Py_ssize_t n = first + count - o0 < lanes ? first + count - o0 : lanes;
        const T *restrict top = weight + o0;
        if (length == 1) {
            for (Py_ssize_t l = 0; l < n; ++l)
                sum[l] = top[l];
        } else {
            const Py_ssize_t half = length / 2;
            for (Py_ssize_t j = 0; j < cols - half; ++j)
                for (Py_ssize_t l = 0; l < n; ++l)
                    work[j][l] = top[j * rows + l] + top[(j + half) * rows + l];
            for (Py_ssize_t j = cols - half; j < half; ++j)
                for (Py_ssize_t l = 0; l < n; ++l)
                    work[j][l] = top[j * rows + l] + (T)0;
            for (Py_ssize_t step = half / 2; step >= 1; step /= 2)
                for (Py_ssize_t j = 0; j < step; ++j)
                    for (Py_ssize_t l = 0; l < n; ++l)
                        work[j][l] = work[j][l] + work[j + step][l];
            for (Py_ssize_t l = 0; l < n; ++l)
                sum[l] = work[0][l];
        }
        /* a neuron that sums to 0 is left as it is: times 1 (-0 stays -0, NaN stays NaN) */
        for (Py_ssize_t l = 0; l < n; ++l)
            scale[l] = sum[l] != (T)0 ? ((T)1 / sum[l]) * total : (T)1;
        for (Py_ssize_t j = 0; j < cols; ++j) {
            T *restrict line = weight + j * rows + o0;
            for (Py_ssize_t l = 0; l < n; ++l)
                line[l] = line[l] * scale[l];
        }
    }
}

/* The spike-driven product of Linear(reduction="sum") (functional.sum_product), rows
 * [first, last) of product (O, B): product[o][b] is the pairwise tree of functional.pairwise_sum,
 * over SPIKE_PRODUCT_MAX_LENGTH values, of W[o][i]·x[b][i] for the nonzero inputs i of sample b
 * in ascending order (idx[b], counts[b] of them), padded with +0. W is read through its strides;
 * x is bool (a nonzero input is 1) or T.
 *
 * The tree over `length` values pads with +0, and x + (+0) is x but for x = -0 (which becomes
 * +0): so the tree over the first power of two `span` >= k values, then one +0 where there was
 * padding, gives the same number with far fewer additions (a sample with 2 spikes: 2 instead
 * of 63). The trees of 32 bytes' worth of consecutive rows (8 floats, 4 doubles) are built
 * side by side, one lane per row: each level is then one vector addition, and those rows of W
 * stay in the L1 cache while every sample reads them (8 rows against 16: 42 against 56 µs for
 * 784 -> 400 at batch 16 with 30 spikes per sample, on 2 cores of an AMD EPYC). */
TARGET_CLONES static void KERNEL(spike_rows)(const T *restrict weight, Py_ssize_t stride_o,
                                             Py_ssize_t stride_i, Py_ssize_t first,
                                             Py_ssize_t last, Py_ssize_t n_in, Py_ssize_t batch,
                                             const void *restrict x, const int x_is_bool,
                                             const int32_t *restrict idx,
                                             const Py_ssize_t *restrict counts, Py_ssize_t width,
                                             T *restrict product)
{
    enum { lanes = 32 / sizeof(T), length = SPIKE_PRODUCT_MAX_LENGTH };
    T work[SPIKE_PRODUCT_MAX_LENGTH][lanes];
    for (Py_ssize_t o0 = first; o0 < last; o0 += lanes) {
        /* the last block may have fewer rows: its lanes past `last` repeat row last - 1 */
        Py_ssize_t row[lanes];
        for (Py_ssize_t l = 0; l < lanes; ++l)
            row[l] = (o0 + l < last ? o0 + l : last - 1) * stride_o;
        const Py_ssize_t rows = last - o0 < lanes ? last - o0 : lanes;
        /* W stored transposed (its rows' values of one input side by side): one vector load */
        const int side_by_side = stride_o == 1 && rows == lanes;
        for (Py_ssize_t b = 0; b < batch; ++b) {
            const int32_t *restrict ib = idx + b * width;
            const T *restrict xb = x_is_bool ? NULL : (const T *)x + b * n_in;
            const Py_ssize_t k = counts[b];
            if (k == 0) { /* the tree over +0 alone */
                for (Py_ssize_t l = 0; l < rows; ++l)
                    product[(o0 + l) * batch + b] = (T)0;
                continue;
            }
            Py_ssize_t span = 1;
            while (span < k)
                span *= 2;
            for (Py_ssize_t t = 0; t < k; ++t) {
                const T *restrict column = weight + ib[t] * stride_i;
                const T factor = xb == NULL ? (T)1 : xb[ib[t]];
                if (side_by_side)
                    for (Py_ssize_t l = 0; l < lanes; ++l)
                        work[t][l] = column[o0 + l] * factor;
                else
                    for (Py_ssize_t l = 0; l < lanes; ++l)
                        work[t][l] = column[row[l]] * factor;
            }
            for (Py_ssize_t t = k; t < span; ++t)
                for (Py_ssize_t l = 0; l < lanes; ++l)
                    work[t][l] = (T)0;
            for (Py_ssize_t half = span / 2; half >= 1; half /= 2)
                for (Py_ssize_t j = 0; j < half; ++j)
                    for (Py_ssize_t l = 0; l < lanes; ++l)
                        work[j][l] = work[j][l] + work[j + half][l];
            if (k < length)
                for (Py_ssize_t l = 0; l < lanes; ++l)
                    work[0][l] = work[0][l] + (T)0;
            for (Py_ssize_t l = 0; l < rows; ++l)
                product[(o0 + l) * batch + b] = work[0][l];
        }
    }
}

/* p = coef * src (scaled) or p = src, bool or T source (learning rules' stacked factors). */
static void KERNEL(stack_term)(Py_ssize_t count, T *restrict out, const void *restrict src,
                               int src_is_bool, T coef, int scaled)
{
    if (src_is_bool) {
        const uint8_t *restrict bits = (const uint8_t *)src;
        for (Py_ssize_t i = 0; i < count; ++i)
            out[i] = scaled ? (T)bits[i] * coef : (T)bits[i];
    } else {
        const T *restrict values = (const T *)src;
        for (Py_ssize_t i = 0; i < count; ++i)
            out[i] = scaled ? values[i] * coef : values[i];
    }
}

/* The neuron step (functional.if_step / lif_step / adaptive_lif_step) over `n` cells; the model
 * choices are arguments so that the dispatcher below, which passes literal constants, gets one
 * branch-free, vectorisable loop per combination. */
static ALWAYS_INLINE void KERNEL(neuron_loop)(
    const int model, const int linear, const int adaptive, const int relax, Py_ssize_t n,
    const T *restrict in, T *restrict v, T *restrict thresh, const T *restrict alpha_v,
    const T *restrict tau_v, const T *restrict alpha_t, const T *restrict tau_t,
    const T *restrict alpha_th, const T *restrict tau_th, const T *restrict center,
    Py_ssize_t center_step, int32_t *restrict counts, uint8_t *restrict spikes,
    uint8_t *restrict fired, T *restrict trace, const T rest, const T step, const int32_t period)
{
    for (Py_ssize_t i = 0; i < n; ++i) {
        const T current = in[i];
        const int32_t count_now = counts[i];
        const T integrating = count_now == 0 ? (T)1 : (T)0;
        T volt = v[i];
        if (model == MODEL_IF) {
            volt = volt + integrating * alpha_v[i] * current;
        } else if (linear) {
            T u = (volt - rest) * tau_v[i];
            u = FMA(alpha_v[i], current, u); /* torch's addcmul_ rounds once */
            u = count_now != 0 ? (T)0 : u;
            volt = u + rest;
        } else {
            const T ratio = step / tau_v[i];
            const T drive = (alpha_v[i] * current - (volt - rest)) * ratio;
            volt = volt + integrating * drive;
        }
        T th = thresh[i];
        const T s = volt >= th ? (T)1 : (T)0;
        spikes[i] = (uint8_t)(s != (T)0);
        fired[i] = (uint8_t)(s != (T)0);
        if (linear) {
            const T decayed = trace[i] * tau_t[i];
            trace[i] = decayed + alpha_t[i] * s;
        } else {
            const T ratio = step / tau_t[i];
            const T drive = alpha_t[i] * s - trace[i];
            trace[i] = trace[i] + ratio * drive;
        }
        if (adaptive) {
            const T c = relax ? center[i * center_step] : (T)0;
            if (relax)
                th = th - c;
            if (linear) {
                const T decayed = th * tau_th[i];
                th = decayed + alpha_th[i] * s;
            } else {
                const T ratio = step / tau_th[i];
                const T drive = alpha_th[i] * s - th;
                th = th + ratio * drive;
            }
            if (relax)
                th = th + c;
            thresh[i] = th;
        }
        /* torch: counts.clamp_(min=1).sub_(1).add_(spikes * period), wrapping like int32 */
        const int32_t left = count_now > 0 ? count_now - 1 : 0;
        counts[i] = (int32_t)((uint32_t)left + (uint32_t)(s != (T)0 ? period : 0));
        v[i] = s != (T)0 ? rest : volt;
    }
}

/* The arguments of neuron_loop for the cells [begin, begin + n) of the struct's arrays. */
#define NEURON_LOOP(MODEL, LINEAR, ADAPTIVE, RELAX)                                               \
    KERNEL(neuron_loop)(MODEL, LINEAR, ADAPTIVE, RELAX, n, in, (T *)a->v + begin,                 \
                        (T *)a->thresh + begin, (const T *)a->alpha_v + begin,                    \
                        (const T *)a->tau_v + begin, (const T *)a->alpha_t + begin,               \
                        (const T *)a->tau_t + begin, (const T *)a->alpha_thresh + begin,          \
                        (const T *)a->tau_thresh + begin, center, center_step,                    \
                        a->counts + begin, a->spikes + begin, a->fired + begin,                   \
                        (T *)a->trace + begin, rest, step, period)

/* round(duration_refrac / dt), half to even; NaN gives 0; clamped to [0, REFRAC_MAX_STEPS]
 * (functional.refractory_steps). */
static int32_t KERNEL(refractory_steps)(const struct neuron_args *a)
{
    T steps = NEARBYINT(*(const T *)a->duration_refrac / *(const T *)a->dt);
    if (!(steps >= (T)0))
        steps = (T)0;
    if (steps > (T)REFRAC_MAX_STEPS)
        steps = (T)REFRAC_MAX_STEPS;
    return (int32_t)steps;
}

TARGET_CLONES static void KERNEL(neuron_block)(const struct neuron_args *a, const T *in,
                                               Py_ssize_t begin, Py_ssize_t n)
{
    const int32_t period = KERNEL(refractory_steps)(a);
    const T rest = *(const T *)a->v_rest, step = *(const T *)a->dt;
    const Py_ssize_t center_step = a->center_per_cell ? 1 : 0;
    const T *center = (const T *)a->thresh_center + begin * center_step;
    const int linear = a->linear != 0, relax = a->relax != 0;
    in += begin;
    switch (a->model) {
    case MODEL_IF:
        if (linear)
            NEURON_LOOP(MODEL_IF, 1, 0, 0);
        else
            NEURON_LOOP(MODEL_IF, 0, 0, 0);
        break;
    case MODEL_LIF:
        if (linear)
            NEURON_LOOP(MODEL_LIF, 1, 0, 0);
        else
            NEURON_LOOP(MODEL_LIF, 0, 0, 0);
        break;
    default: /* MODEL_ADAPTIVE_LIF */
        if (linear && relax)
            NEURON_LOOP(MODEL_LIF, 1, 1, 1);
        else if (linear)
            NEURON_LOOP(MODEL_LIF, 1, 1, 0);
        else if (relax)
            NEURON_LOOP(MODEL_LIF, 0, 1, 1);
        else
            NEURON_LOOP(MODEL_LIF, 0, 1, 0);
    }
}
#undef NEURON_LOOP

/* Copy rows [first, first + rows) of a strided input into `target` (contiguous), then the
 * neuron loop reads it contiguously. The inner loop runs along the smaller stride, so that the
 * transposed output of W @ sᵀ (column stride B, row stride 1) is read in order. */
static void KERNEL(gather)(const struct neuron_args *a, T *target, Py_ssize_t first,
                           Py_ssize_t rows)
{
    const T *in = (const T *)a->input;
    const Py_ssize_t cols = (Py_ssize_t)a->cols;
    const Py_ssize_t row_stride = (Py_ssize_t)a->in_row_stride;
    const Py_ssize_t col_stride = (Py_ssize_t)a->in_col_stride;
    if (a->input2 != NULL) {
        /* two inputs folded as torch.cat(...).sum(-1) folds them: (x + y) + 0, which turns
         * only a -0 sum into +0 */
        const T *in2 = (const T *)a->input2;
        const Py_ssize_t row_stride2 = (Py_ssize_t)a->in2_row_stride;
        const Py_ssize_t col_stride2 = (Py_ssize_t)a->in2_col_stride;
        for (Py_ssize_t r = first; r < first + rows; ++r)
            for (Py_ssize_t c = 0; c < cols; ++c)
                target[r * cols + c] =
                    (in[r * row_stride + c * col_stride] + in2[r * row_stride2 + c * col_stride2]) +
                    (T)0;
    } else if (row_stride < col_stride) {
        for (Py_ssize_t c = 0; c < cols; ++c)
            for (Py_ssize_t r = first; r < first + rows; ++r)
                target[r * cols + c] = in[r * row_stride + c * col_stride];
    } else {
        for (Py_ssize_t r = first; r < first + rows; ++r)
            for (Py_ssize_t c = 0; c < cols; ++c)
                target[r * cols + c] = in[r * row_stride + c * col_stride];
    }
}

/* torch.clamp's bounds on one row: max with low, then min with high, NaN kept. */
static ALWAYS_INLINE void KERNEL(clamp_row)(T *restrict row, Py_ssize_t n, const int has_low,
                                            const T low, const int has_high, const T high)
{
    if (!has_low && !has_high)
        return;
    const T lowest = has_low ? low : -INFINITY, highest = has_high ? high : INFINITY;
    /* one branch-free pass (it vectorises): a value within the bounds, or NaN (both
     * comparisons false), is written back as it is */
    for (Py_ssize_t i = 0; i < n; ++i) {
        const T raised = row[i] < lowest ? lowest : row[i];
        row[i] = raised > highest ? highest : raised;
    }
}

/* part[i] ← part[i] + (Σ_j pv[j]·q[j·n_in + i])·alpha for i < n, the sum in order of j: the
 * depth is a constant where ordered_rows calls it, so the loop over j unrolls and each sum is
 * kept in a register across the terms (one load and store of part per value). */
static ALWAYS_INLINE void KERNEL(add_terms)(T *restrict part, Py_ssize_t n, const Py_ssize_t depth,
                                            const T *restrict pv, const T *restrict q,
                                            Py_ssize_t n_in, const T alpha, const int scale)
{
    for (Py_ssize_t i = 0; i < n; ++i) {
        T sum = pv[0] * q[i];
        for (Py_ssize_t j = 1; j < depth; ++j)
            sum = sum + pv[j] * q[j * n_in + i];
        part[i] = scale ? part[i] + sum * alpha : part[i] + sum;
    }
}

/* x ← beta·x for n values: zeros where `beta_zero` (beta is 0 before rounding to T: a beta that
 * only rounds to 0 multiplies, as torch's mul_ does), nothing for a beta of 1. */
static ALWAYS_INLINE void KERNEL(beta_pass)(T *restrict x, Py_ssize_t n, const T beta,
                                            const int beta_zero)
{
    if (beta_zero) {
        for (Py_ssize_t i = 0; i < n; ++i)
            x[i] = 0;
    } else if (beta != 1) {
        for (Py_ssize_t i = 0; i < n; ++i)
            x[i] = x[i] * beta;
    }
}

/* row ← row + (Σ_j p[j][o]·q[j])·alpha over the whole row (add_terms with a constant depth). */
static ALWAYS_INLINE void KERNEL(add_row_terms)(T *restrict row, Py_ssize_t o, Py_ssize_t n_out,
                                                Py_ssize_t n_in, Py_ssize_t depth,
                                                const T *restrict p, const T *restrict q, T alpha)
{
    T pv[ORDERED_MAX_DEPTH];
    const int scale = alpha != 1;
    for (Py_ssize_t j = 0; j < depth; ++j)
        pv[j] = p[j * n_out + o];
    switch (depth) {
#define ORDERED_CASE(d)                                                                            \
    case d:                                                                                        \
        KERNEL(add_terms)(row, n_in, d, pv, q, n_in, alpha, scale);                                \
        break;
        ORDERED_CASE(1)
        ORDERED_CASE(2)
        ORDERED_CASE(3)
        ORDERED_CASE(4)
        ORDERED_CASE(5)
        ORDERED_CASE(6)
        ORDERED_CASE(7)
        ORDERED_CASE(8)
#undef ORDERED_CASE
    default: /* depth 0: nothing to add */
        break;
    }
}

/* The ordered update of a learning rule's weights (learning.ordered_update), rows [first, last):
 * row ← beta·row (beta_pass), then, for depth > 0,
 * s[i] = p[0][o]·q[0][i], s[i] ← s[i] + p[j][o]·q[j][i] for j = 1 .. depth-1 in order and
 * row[i] ← row[i] + s[i]·alpha (alpha 1: not applied), each operation rounded once, then the
 * bounds. The eager function takes the same operations on whole matrices. */
TARGET_CLONES static void KERNEL(ordered_rows)(T *restrict out, Py_ssize_t first, Py_ssize_t last,
                                               Py_ssize_t n_out, Py_ssize_t n_in,
                                               Py_ssize_t depth, const T *restrict p,
                                               const T *restrict q, T alpha, T beta,
                                               const int beta_zero, const int has_low, const T low,
                                               const int has_high, const T high)
{
    for (Py_ssize_t o = first; o < last; ++o) {
        T *restrict row = out + o * n_in;
        KERNEL(beta_pass)(row, n_in, beta, beta_zero);
        KERNEL(add_row_terms)(row, o, n_out, n_in, depth, p, q, alpha);
        KERNEL(clamp_row)(row, n_in, has_low, low, has_high, high);
    }
}

/* The event-driven form of ordered_rows after its beta pass, for the rows [first, last) (a
 * thread's block: rows are independent). A row whose p factors are all zero is left as it is:
 * ordered_rows would add a sum of ±0 products, which leaves a value that is not -0 unchanged.
 * A row with one nonzero p factor, term j, takes only the columns where q[j] is nonzero (a sum
 * with one nonzero product is that product). A row with several takes, for each column where
 * one of their q is nonzero, the sum of those products alone, in the order of the terms: the
 * products left out are ±0 (q is finite), which change no nonzero partial sum, and a sum that
 * ends as ±0 leaves the (clean) value as it is. Then the bounds on what changed: every other
 * value is within them (checked by clean_rows). cols[j] lists the nonzero indices of q[j]
 * (n_cols[j] of them) for the terms with a nonzero p; `sums`, `seen` and `touched` are the
 * thread's scratch of n_in values each, `terms` of depth values. */
TARGET_CLONES static void KERNEL(event_update)(T *restrict out, Py_ssize_t first, Py_ssize_t last,
                                               Py_ssize_t n_out, Py_ssize_t n_in,
                                               Py_ssize_t depth, const T *restrict p,
                                               const T *restrict q, T alpha,
                                               const int32_t *cols, const Py_ssize_t *n_cols,
                                               const int has_low, const T low, const int has_high,
                                               const T high, T *restrict sums,
                                               int32_t *restrict seen, int32_t *restrict touched,
                                               Py_ssize_t *restrict terms)
{
    for (Py_ssize_t i = 0; i < n_in; ++i)
        seen[i] = -1;
    for (Py_ssize_t o = first; o < last; ++o) {
        T *restrict row = out + o * n_in;
        Py_ssize_t active = 0, n_touched = 0;
        for (Py_ssize_t j = 0; j < depth; ++j)
            if (p[j * n_out + o] != 0)
                terms[active++] = j;
        if (active == 0)
            continue;
        if (active == 1) { /* the sum of one product: update the row in place */
            const Py_ssize_t j = terms[0];
            const T pj = p[j * n_out + o];
            const int32_t *cj = cols + j * n_in;
            const T *restrict qj = q + j * n_in;
            for (Py_ssize_t c = 0; c < n_cols[j]; ++c) {
                const int32_t i = cj[c];
                T value = alpha != 1 ? row[i] + (pj * qj[i]) * alpha : row[i] + pj * qj[i];
                if (has_low && value < low)
                    value = low;
                if (has_high && value > high)
                    value = high;
                row[i] = value;
            }
            continue;
        }
        /* several terms: each column's sum over the terms whose q is nonzero there, in order */
        for (Py_ssize_t t = 0; t < active; ++t) {
            const Py_ssize_t j = terms[t];
            const T pj = p[j * n_out + o];
            const int32_t *cj = cols + j * n_in;
            const T *restrict qj = q + j * n_in;
            for (Py_ssize_t c = 0; c < n_cols[j]; ++c) {
                const int32_t i = cj[c];
                if (seen[i] != (int32_t)o) {
                    seen[i] = (int32_t)o;
                    touched[n_touched++] = i;
                    sums[i] = pj * qj[i];
                } else {
                    sums[i] = sums[i] + pj * qj[i];
                }
            }
        }
        for (Py_ssize_t c = 0; c < n_touched; ++c) {
            const int32_t i = touched[c];
            T value = alpha != 1 ? row[i] + sums[i] * alpha : row[i] + sums[i];
            if (has_low && value < low)
                value = low;
            if (has_high && value > high)
                value = high;
            row[i] = value;
        }
    }
}

/* product_bounded's event-driven terms on rows [first, last) of `out` (a thread's block): for
 * each term j of event_terms and each row o where p[j][o] is nonzero,
 * out[o][i] ← out[o][i] + (p[j][o]·alpha)·q[j][i] for the nonzero columns i of q[j] (cols[j],
 * n_cols[j], ascending; their values q[j][i] packed in the same order in values[j]). Row by
 * row, every term adding to a row while it is in the cache (not one pass over the block per
 * term); each value still takes the terms in the order of event_terms. With beta_pass, each
 * row's beta pass comes first, and each row's bounds come last, while it is in the cache (not
 * a second pass over the block from L2). */
TARGET_CLONES static void KERNEL(term_events)(T *restrict out, Py_ssize_t first, Py_ssize_t last,
                                              Py_ssize_t n_out, Py_ssize_t n_in,
                                              const T *restrict p, const T *restrict values,
                                              T alpha, const Py_ssize_t *event_terms,
                                              Py_ssize_t n_event_terms, const int32_t *cols,
                                              const Py_ssize_t *n_cols, const int beta_pass,
                                              const T beta, const int beta_zero,
                                              const int has_low, const T low,
                                              const int has_high, const T high)
{
    for (Py_ssize_t o = first; o < last; ++o) {
        T *restrict row = out + o * n_in;
        if (beta_pass)
            KERNEL(beta_pass)(row, n_in, beta, beta_zero);
        for (Py_ssize_t t = 0; t < n_event_terms; ++t) {
            const Py_ssize_t j = event_terms[t];
            const T factor = p[j * n_out + o];
            if (factor == 0)
                continue;
            const T scale = alpha != 1 ? factor * alpha : factor;
            const int32_t *restrict cj = cols + j * n_in;
            const T *restrict vj = values + j * n_in;
            const Py_ssize_t count = n_cols[j];
            for (Py_ssize_t c = 0; c < count; ++c)
                row[cj[c]] += scale * vj[c];
        }
        KERNEL(clamp_row)(row, n_in, has_low, low, has_high, high);
    }
}

/* The beta pass of ordered_rows over all of `out`, and whether every value is then "clean":
 * within the bounds and not -0, so that the event-driven form gives ordered_rows' numbers. */
TARGET_CLONES static int KERNEL(clean_rows)(T *restrict out, Py_ssize_t n, T beta,
                                            const int beta_zero, const int has_low, const T low,
                                            const int has_high, const T high)
{
    KERNEL(beta_pass)(out, n, beta, beta_zero);
    /* -0 is the bit pattern of the sign alone; reading the values' bits as integers keeps the
     * loop vectorised (signbit() does not) */
    const BITS *restrict bits = (const BITS *)out;
    const T lowest = has_low ? low : -INFINITY, highest = has_high ? high : INFINITY;
    BITS flags = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        const T v = out[i];
        flags |= (BITS)(v < lowest) | (BITS)(v > highest) | (BITS)(bits[i] == MINUS_ZERO);
    }
    return !flags;
}

/* The nonzero indices of x[0 .. n) into idx (or only their number, for idx NULL); returns their
 * number, or -1 if a value is not finite (0·inf would then be NaN in the ordered product: only
 * the dense form gives it). Both loops are branch-free, so that they vectorise. */
TARGET_CLONES static Py_ssize_t KERNEL(nonzero)(const T *restrict x, Py_ssize_t n,
                                                int32_t *restrict idx)
{
    Py_ssize_t count = 0;
    int finite = 1;
    for (Py_ssize_t i = 0; i < n; ++i) {
        const T v = x[i];
        const T magnitude = v < 0 ? -v : v;
        finite &= magnitude < (T)INFINITY; /* false for inf and NaN */
        count += v != 0;
    }
    if (!finite)
        return -1;
    if (idx != NULL && count > 0) {
        /* in blocks of 16: a block without a nonzero value (most of them, for few spikes) costs
         * one vectorised test instead of 16 steps of the listing's dependent chain */
        Py_ssize_t k = 0;
        for (Py_ssize_t start = 0; start < n && k < count; start += 16) {
            const Py_ssize_t end = start + 16 < n ? start + 16 : n;
            int any = 0;
            for (Py_ssize_t i = start; i < end; ++i)
                any |= x[i] != 0;
            if (!any)
                continue;
            for (Py_ssize_t i = start; i < end; ++i) {
                idx[k] = (int32_t)i;
                k += x[i] != 0;
            }
        }
    }
    return count;
}

#undef KERNEL
#undef KERNEL_NAME
#undef KERNEL_NAME2
