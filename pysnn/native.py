"""Fused CPU kernels: the C twins of the whole-step functions of :mod:`pysnn.functional`.

On a CPU, eager PyTorch spends 3–8 µs on every elementwise operation whatever the tensor size,
and one neuron step is a dozen of them: at batch 32 that costs several times the matrix product
of the connection. pysnn therefore ships a small C extension, ``pysnn._native`` (built by
``setup.py`` when a C compiler is present; the package works without it). Each function here
has the signature and the results of the whole-step function of the same name in
:mod:`pysnn.functional` — :func:`input_step`, :func:`if_step`, :func:`lif_step`,
:func:`adaptive_lif_step` and :func:`linear_step` — and performs its arithmetic in one pass over
the cells, in the same order and precision, so that both give the same numbers bit for bit.
The learning rules of :mod:`pysnn.learning` use :func:`stack_terms` and
:func:`product_bounded` for the factors and the product of their weight update, and the random
encoders of :mod:`pysnn.encoding` use :func:`bernoulli_draws`.

Which one runs is the module's ``backend`` (see :mod:`pysnn._backend`): ``"native"`` runs these
twins and raises :class:`~pysnn._backend.NativeUnavailableError` when one cannot run the step
(``strict=True``); ``"auto"`` runs them where they apply and the PyTorch function elsewhere. A
twin applies when every tensor is a contiguous ``float32``/``float64`` CPU tensor of the
expected shape (the spikes bool, the refractory counters int32) and no input requires a
gradient. Nothing a user can edit is cached: every parameter, ``update_type``, ``dt`` and
``duration_refrac`` is read at every step. What is kept between steps (``cache``) is the
argument struct of the kernel, valid while the data pointers, shapes and layouts of the
tensors it points to are those it was built for; these are compared at every step.

Where the extension is built with OpenMP, steps of more than 8192 values are split over
PyTorch's threads (``torch.set_num_threads``); each value is computed the same way whatever the
number of threads. The one exception is the product of ``Linear(reduction="sum")`` on several
threads (split when ``W @ sᵀ`` has more than 8192 products, ``B·O·I``, at batch 1 too, so that
each core keeps the rows of ``W`` that the learning update and PyTorch's passes over ``W`` give
it): each thread takes its block of rows of ``W @ sᵀ`` with the BLAS ``?gemm_`` that
``torch.mm`` calls, which may round differently from one call for the whole product (MKL does
not promise equality across row partitions); the tests hold it to the rounding bound of a dot
product of length I: ``|error| <= I·eps·(|W| @ |s|)`` elementwise, which no summation order
can exceed (in practice the two differ by a few units in the last place).

Set the environment variable ``PYSNN_NATIVE=0`` before importing pysnn, call
:func:`set_enabled` ``(False)``, or use the :func:`disabled` context manager to force the PyTorch
code in every module whose backend is ``"auto"`` (``"native"`` then raises).
"""

import ctypes
import operator
import os
import sys
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor

from pysnn import functional as sf
from pysnn._backend import NativeUnavailableError, eager_step

try:  # the extension is optional: setup.py builds it when a compiler is available
    from pysnn import _native as _extension
except ImportError:  # pragma: no cover - exercised only where the build was skipped
    _extension = None
# the deepest ordered update the C twin takes (learning.ORDERED_DEPTH)
_ORDERED_MAX_DEPTH = 0 if _extension is None else _extension.constants()["ORDERED_MAX_DEPTH"]
# the size of a CPU generator's get_state() that bernoulli_draws reads
_MT_STATE_BYTES = 0 if _extension is None else _extension.constants()["MT_STATE_BYTES"]

__all__ = [
    "available",
    "enabled",
    "set_enabled",
    "disabled",
    "input_step",
    "if_step",
    "lif_step",
    "adaptive_lif_step",
    "linear_step",
]

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}
_enabled = _extension is not None and os.environ.get("PYSNN_NATIVE", "1") != "0"


def available() -> bool:
    """Whether the compiled extension ``pysnn._native`` could be imported."""
    return _extension is not None


def enabled() -> bool:
    """Whether modules with ``backend="auto"`` currently use the kernels where they apply."""
    return _enabled


def set_enabled(flag: bool) -> None:
    """Switch the fused kernels on or off for the whole process.

    :param flag: ``True`` to use the kernels where they apply, ``False`` for eager PyTorch.
    :raises TypeError: if ``flag`` is not a bool.
    :raises RuntimeError: when enabling while the extension is not built.
    """
    global _enabled
    if not isinstance(flag, bool):
        raise TypeError(f"set_enabled: flag must be a bool, got {type(flag).__name__}")
    if flag and _extension is None:
        raise RuntimeError(
            "set_enabled: the extension pysnn._native is not built (reinstall pysnn with a C "
            "compiler available); the eager PyTorch code is used"
        )
    _enabled = flag


@contextmanager
def disabled() -> Iterator[None]:
    """Context manager running its body with the fused kernels switched off."""
    previous = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(previous)


# -- the kernels' argument structs (struct input_args, ingest_args, neuron_args in _native.c) --
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p


class _InputArgs(ctypes.Structure):
    _fields_ = [(name, _I64) for name in ("n", "is_double", "x_is_bool", "linear")] + [
        (name, _PTR) for name in ("x", "trace", "alpha_t", "tau_t", "dt", "spikes")
    ]


class _IngestArgs(ctypes.Structure):
    _fields_ = (
        [(name, _I64) for name in ("rows", "cols", "is_double", "x_is_bool")]
        + [(name, _PTR) for name in ("x", "trace_in", "pre_trace", "slot", "out", "pre_spikes")]
        + [("gemm", _PTR), ("weight", _PTR), ("n_out", _I64), ("product", _PTR)]
        + [("operands", _PTR), ("capacity", _I64)]
        + [("trace_sums", _PTR), ("sum_scratch", _PTR), ("sum_length", _I64)]
        + [
            (name, _I64)
            for name in ("weight_stride_o", "weight_stride_i", "spike_line", "spike_work")
        ]
    )


class _NeuronArgs(ctypes.Structure):
    _fields_ = (
        [
            (name, _I64)
            for name in ("rows", "cols", "is_double", "model", "linear", "relax")
            + ("center_per_cell",)
        ]
        + [("input", _PTR), ("in_row_stride", _I64), ("in_col_stride", _I64)]
        + [("input2", _PTR), ("in2_row_stride", _I64), ("in2_col_stride", _I64)]
        + [
            (name, _PTR)
            for name in (
                "v",
                "thresh",
                "v_rest",
                "alpha_v",
                "tau_v",
                "dt",
                "duration_refrac",
                "counts",
                "spikes",
                "fired",
                "trace",
                "alpha_t",
                "tau_t",
                "alpha_thresh",
                "tau_thresh",
                "thresh_center",
                "scratch",
            )
        ]
    )


_STRUCTS = {"input_args": _InputArgs, "ingest_args": _IngestArgs, "neuron_args": _NeuronArgs}
_MODEL_IF, _MODEL_LIF, _MODEL_ADAPTIVE_LIF = 0, 1, 2


def _layouts() -> Dict[str, Tuple[int, Dict[str, int]]]:
    """Size and field offsets of the ctypes mirrors, as ``_native.layout()`` gives the C ones."""
    return {
        name: (ctypes.sizeof(struct), {f: getattr(struct, f).offset for f, _ in struct._fields_})
        for name, struct in _STRUCTS.items()
    }


_GEMM_SYMBOLS = {torch.float32: "sgemm_", torch.float64: "dgemm_"}
_gemm_cache: Dict[torch.dtype, Optional[int]] = {}


def _blas_gemm(dtype: torch.dtype) -> Optional[int]:
    """Address of the BLAS ``?gemm_`` PyTorch calls for ``torch.mm`` on the CPU (the MKL that
    x86-64 Linux wheels link and export), or None where it cannot be found: then the product is
    taken with ``torch.mm``."""
    if dtype not in _gemm_cache:
        address = None
        if torch.backends.mkl.is_available() and sys.platform.startswith("linux"):
            library = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
            try:
                address = ctypes.cast(
                    getattr(ctypes.CDLL(library), _GEMM_SYMBOLS[dtype]), ctypes.c_void_p
                ).value
            except (OSError, AttributeError):
                address = None
        _gemm_cache[dtype] = address
    return _gemm_cache[dtype]


_DATA_POINTER = Tensor.data_ptr
_STRIDE = Tensor.stride
_NUMEL = Tensor.numel
_DTYPE = operator.attrgetter("dtype")
_empty_like, _mm, _BOOL = torch.empty_like, torch.mm, torch.bool
_get_num_threads = torch.get_num_threads


def layout_key(tensors: Sequence[Tensor]) -> tuple:
    """What an argument struct depends on: the tensors' data pointers, sizes, strides and dtypes
    (the memory each one covers and how its bits are read; a tensor whose pointer, size,
    strides and dtype are unchanged covers the same memory in the same layout and type, which
    the struct was checked against; ``x.data = x.data.view(torch.int32)`` keeps all but the
    dtype).

    :param tensors: the tensors a kernel's arguments point into (a fixed number per kernel).
    :returns: a flat tuple, equal for two calls exactly when every one of those four is.
    """
    # one flat tuple (the number of tensors is fixed per kernel): cheaper to build and compare
    return (
        *map(_DATA_POINTER, tensors),
        *map(_NUMEL, tensors),
        *map(_STRIDE, tensors),
        *map(_DTYPE, tensors),
    )


def _decline(strict: bool, reason: str) -> None:
    if strict:
        raise NativeUnavailableError(f"backend='native' cannot run this step: {reason}")


def _state_obstacle(tensors: Sequence[Tensor], dtype: torch.dtype, numel: int) -> Optional[str]:
    """Why ``tensors`` cannot be read by a kernel as ``numel`` values of ``dtype`` (or None)."""
    for tensor in tensors:
        if tensor.dtype != dtype:
            return f"a tensor of dtype {tensor.dtype} where {dtype} is needed"
        if not tensor.is_cpu:
            return f"a tensor on {tensor.device} (the kernels run on the CPU)"
        if tensor.numel() != numel or not tensor.is_contiguous():
            return "a parameter or state tensor that is not contiguous with one value per cell"
    return None


def _x_code(x: Tensor, dtype: torch.dtype, shape) -> Optional[int]:
    """1 for a bool input, 0 for one of ``dtype``, None when the kernel cannot read it."""
    is_bool = x.dtype is _BOOL
    if (is_bool or x.dtype is dtype) and x.shape == shape and x.is_contiguous() and x.is_cpu:
        return int(is_bool)
    return None


# -- Input ---------------------------------------------------------------------------------
def input_step(
    x: Tensor,
    trace: Tensor,
    spikes: Tensor,
    alpha_t: Tensor,
    tau_t: Tensor,
    dt: Tensor,
    update_type: str,
    *,
    cache: dict,
    strict: bool = False,
) -> Tensor:
    """C twin of :func:`pysnn.functional.input_step`.

    :param cache: a dict kept by the module between steps (the kernel's argument struct).
    :param strict: raise :class:`~pysnn._backend.NativeUnavailableError` instead of running
        the PyTorch function when the kernel does not apply.
    """
    tensors = (trace, spikes, alpha_t, tau_t, dt)
    args, address, reason = _cached(cache, "input", tensors, _input_args)
    if reason is None:
        code = _x_code(x, *args._cells)
        if code is not None:
            args.x, args.x_is_bool, args.linear = x.data_ptr(), code, update_type == "linear"
            _extension.input_step(address)
            return trace
        reason = "an input that is not a contiguous CPU tensor of the cells' shape"
    _decline(strict, reason)
    return eager_step(sf.input_step, x, trace, spikes, alpha_t, tau_t, dt, update_type)


def _cached(cache: dict, name: str, tensors: Sequence[Tensor], build, *settings) -> tuple:
    """``(struct, its address, None)`` for the kernel ``name`` over ``tensors``, rebuilt by
    ``build(tensors, *settings)`` when their data pointers, shapes or layouts (or the settings)
    changed; ``(None, 0, reason)`` when the kernel cannot run them."""
    key = (layout_key(tensors), settings)
    entry = cache.get(name)
    if entry is None or entry[0] != key:
        entry = (key, *build(tensors, *settings))
        cache[name] = entry
    if entry[3] is None and not _enabled:
        return None, 0, "the kernels are switched off process-wide"
    return entry[1:]


def _input_args(tensors: Sequence[Tensor]) -> tuple:
    trace, spikes, alpha_t, tau_t, dt = tensors
    reason = None
    if _extension is None:
        reason = "the extension pysnn._native is not built"
    elif trace.dtype not in _DTYPE_CODES:
        reason = f"dtype {trace.dtype} (the kernels take float32 and float64)"
    else:
        n = trace.numel()
        reason = _state_obstacle((trace, alpha_t, tau_t), trace.dtype, n) or _state_obstacle(
            (dt,), trace.dtype, 1
        )
        if reason is None and not (spikes.dtype == _BOOL and spikes.shape == trace.shape):
            reason = "a spikes buffer that is not bool of the cells' shape"
        if reason is None and (alpha_t.shape != trace.shape or tau_t.shape != trace.shape):
            reason = "a parameter whose shape is not the cells' shape"
        if reason is None and (dt.dim() != 0 or not spikes.is_contiguous()):
            reason = "a dt that is not a 0-d tensor, or non-contiguous spikes"
    if reason is not None:
        return None, 0, reason
    args = _InputArgs(
        n=trace.numel(),
        is_double=_DTYPE_CODES[trace.dtype],
        trace=trace.data_ptr(),
        alpha_t=alpha_t.data_ptr(),
        tau_t=tau_t.data_ptr(),
        dt=dt.data_ptr(),
        spikes=spikes.data_ptr(),
    )
    args._cells = (trace.dtype, trace.shape)  # fixed while the layout key is
    return args, ctypes.addressof(args), None


# -- neurons -------------------------------------------------------------------------------
def _neuron(model: int, x: Tensor, arguments: tuple, cache: dict, strict: bool):
    """Run the neuron kernel on the arguments of the model's whole-step function (after
    ``x``); None (nothing done) when it does not apply."""
    if model == _MODEL_IF:  # no tau_v: alpha_v stands in its slot (the kernel does not read it)
        tensors, update_type, relax = arguments[:7] + arguments[6:11], arguments[11], False
    elif model == _MODEL_LIF:
        tensors, update_type, relax = arguments[:12], arguments[12], False
    else:
        tensors, update_type = arguments[:12] + arguments[13:16], arguments[12]
        relax = bool(arguments[16])
    args, address, reason = _cached(cache, "neuron", tensors, _neuron_args, model, 12, relax)
    dtype, shape = args._cells if reason is None else (None, None)
    if type(x) is sf.InputPair:  # the kernel folds the two inputs itself
        first, second = inputs = (x.first, x.second)
        if reason is None:
            n = args.rows * args.cols
            if not (
                first.dtype is dtype
                and second.dtype is dtype
                and first.is_cpu
                and second.is_cpu
                and first.numel() == n
                and second.numel() == n
            ):
                reason = "inputs that are not CPU tensors of the cells' shape and dtype"
    else:
        inputs = (x,)
        if reason is None and not (
            isinstance(x, Tensor) and x.dtype is dtype and x.shape == shape and x.is_cpu
        ):
            reason = "an input that is not a CPU tensor of the cells' shape and dtype"
    if reason is not None:
        _decline(strict, reason)
        return None
    args.input, args.in_row_stride, args.in_col_stride = _rows_of(cache, 0, inputs[0], args.rows)
    if len(inputs) == 2:
        args.input2, args.in2_row_stride, args.in2_col_stride = _rows_of(
            cache, 1, inputs[1], args.rows
        )
    else:
        args.input2 = None
    fired = _empty_like(tensors[2])
    args.fired, args.linear = fired.data_ptr(), update_type == "linear"
    _extension.neuron_step(address)
    return fired


def _rows_of(cache: dict, slot: int, x: Tensor, rows: int) -> tuple:
    """``(data pointer, row stride, column stride)`` of ``x`` read as ``(rows, -1)``: kept
    between steps while the input has the same data pointer, strides and shape (a connection's
    live output, seen through a new view at every step, is read through the same view), else
    recomputed (a view whenever the layout allows, else a copy kept alive until the kernel has
    run). The view ``reshape`` makes depends only on those three."""
    name = _INPUT_SLOTS[slot]
    layout = (x.data_ptr(), x.stride(), x.shape)
    tail = cache.get(name)
    if tail is None or tail[0] != layout:
        current = x.reshape(rows, -1)  # a view whenever the layout allows
        tail = (layout, current.data_ptr(), *current.stride())
        if tail[1] == layout[0]:  # a view: the same memory at the next step
            cache[name] = tail
        else:
            cache[name] = None
            cache["neuron_copy%d" % slot] = current  # alive until the next step
    return tail[1:]


_INPUT_SLOTS = ("neuron_input", "neuron_input2")


def _neuron_args(tensors, model: int, n_state: int, relax: bool) -> tuple:
    state, adaptive = tensors[:n_state], tensors[n_state:]
    v_cell, thresh, spikes, trace, counts, v_rest, alpha_v, tau_v, alpha_t, tau_t, dt, refrac = (
        state
    )
    dtype, n = v_cell.dtype, v_cell.numel()
    reason = None
    if _extension is None:
        reason = "the extension pysnn._native is not built"
    elif dtype not in _DTYPE_CODES:
        reason = f"dtype {dtype} (the kernels take float32 and float64)"
    else:
        per_cell = (v_cell, thresh, trace, alpha_v, tau_v, alpha_t, tau_t) + adaptive[:2]
        reason = _state_obstacle(per_cell, dtype, n) or _state_obstacle(
            (v_rest, dt, refrac), dtype, 1
        )
        if reason is None and any(t.shape != v_cell.shape for t in per_cell):
            reason = "a parameter whose shape is not the cells' shape"
        if reason is None and any(t.dim() != 0 for t in (v_rest, dt, refrac)):
            reason = "v_rest, dt or duration_refrac is not a 0-d tensor"
        if reason is None and not (
            spikes.dtype == _BOOL and spikes.shape == v_cell.shape and spikes.is_contiguous()
        ):
            reason = "a spikes buffer that is not bool of the cells' shape"
        if reason is None and not (
            counts.dtype == torch.int32 and counts.shape == v_cell.shape and counts.is_contiguous()
        ):
            reason = "refrac_counts that are not int32 of the cells' shape"
        if reason is None and adaptive:
            center = adaptive[2]
            if relax and not (
                _state_obstacle((center,), dtype, center.numel()) is None
                and (center.dim() == 0 or center.shape == v_cell.shape)
            ):
                reason = "a thresh_center that is neither 0-d nor of the cells' shape"
    if reason is not None:
        return None, 0, reason
    rows = v_cell.shape[0]
    scratch = torch.empty(n, dtype=dtype)
    center = adaptive[2] if adaptive else v_rest
    args = _NeuronArgs(
        rows=rows,
        cols=n // rows,
        is_double=_DTYPE_CODES[dtype],
        model=model,
        relax=int(relax),
        center_per_cell=int(center.numel() == n and center.dim() > 0),
        v=v_cell.data_ptr(),
        thresh=thresh.data_ptr(),
        v_rest=v_rest.data_ptr(),
        alpha_v=alpha_v.data_ptr(),
        tau_v=tau_v.data_ptr(),
        dt=dt.data_ptr(),
        duration_refrac=refrac.data_ptr(),
        counts=counts.data_ptr(),
        spikes=spikes.data_ptr(),
        trace=trace.data_ptr(),
        alpha_t=alpha_t.data_ptr(),
        tau_t=tau_t.data_ptr(),
        alpha_thresh=(adaptive[0] if adaptive else alpha_t).data_ptr(),
        tau_thresh=(adaptive[1] if adaptive else tau_t).data_ptr(),
        thresh_center=center.data_ptr(),
        scratch=scratch.data_ptr(),
    )
    args._scratch = scratch  # kept alive with the struct that points to it
    # the cells' dtype and shape, fixed while the layout key is (it pins v_cell's dtype, size
    # and strides, which give the shape of a contiguous tensor)
    args._cells = (dtype, v_cell.shape)
    return args, ctypes.addressof(args), None


def if_step(x: Tensor, *arguments, cache: dict, strict: bool = False) -> Tensor:
    """C twin of :func:`pysnn.functional.if_step`: the same positional arguments and result.

    :param cache: a dict kept by the module between steps (see :func:`input_step`).
    :param strict: raise instead of running the PyTorch function where the kernel does not
        apply.
    """
    fired = _neuron(_MODEL_IF, x, arguments, cache, strict)
    return eager_step(sf.if_step, sf.folded(x), *arguments) if fired is None else fired


def lif_step(x: Tensor, *arguments, cache: dict, strict: bool = False) -> Tensor:
    """C twin of :func:`pysnn.functional.lif_step` (arguments as :func:`if_step`)."""
    fired = _neuron(_MODEL_LIF, x, arguments, cache, strict)
    return eager_step(sf.lif_step, sf.folded(x), *arguments) if fired is None else fired


def adaptive_lif_step(x: Tensor, *arguments, cache: dict, strict: bool = False) -> Tensor:
    """C twin of :func:`pysnn.functional.adaptive_lif_step` (arguments as :func:`if_step`)."""
    fired = _neuron(_MODEL_ADAPTIVE_LIF, x, arguments, cache, strict)
    return eager_step(sf.adaptive_lif_step, sf.folded(x), *arguments) if fired is None else fired


# -- Linear --------------------------------------------------------------------------------
def linear_step(
    x: Tensor,
    trace_in: Tensor,
    weight: Tensor,
    pre_trace: Tensor,
    pre_spikes: Tensor,
    spike_queue: Tensor,
    cursor: int,
    reduction: str,
    out,
    *,
    cache: dict,
    strict: bool = False,
) -> Tuple[Tensor, Tensor]:
    """C twin of :func:`pysnn.functional.linear_step` (``cache`` and ``strict`` as
    :func:`input_step`).

    One kernel copies ``trace_in`` into ``pre_trace``, pushes ``x`` into the delay line and
    stores the spikes leaving it; ``"sum"`` then takes ``W @ sᵀ`` (on several threads in the
    same parallel region, each thread taking its rows of W: ``ingest_product`` in
    ``_native.c``). The trace sum is taken by PyTorch, as in the PyTorch function.
    """
    tensors = (weight, pre_trace, pre_spikes, spike_queue)
    # the caller checked the inputs' shapes and that nothing requires grad
    settings = (reduction, _get_num_threads())
    args, address, reason = _cached(cache, "linear", tensors, _linear_args, *settings)
    if reason is None:
        dtype, batch, n_out, delayed = args._facts
        code = 1 if x.dtype is _BOOL else 0 if x.dtype is dtype else None
        if not (
            code is not None
            and trace_in.dtype is dtype
            and x.is_contiguous()
            and trace_in.is_contiguous()
            and x.is_cpu
            and trace_in.is_cpu
        ):
            reason = "inputs that are not contiguous CPU tensors of the weight's dtype"
    if reason is not None:
        _decline(strict, reason)
        return eager_step(
            sf.linear_step,
            x,
            trace_in,
            weight,
            pre_trace,
            pre_spikes,
            spike_queue,
            cursor,
            reduction,
            out,
        )
    spikes_f, operands, _ = args._kept
    slot = spike_queue[cursor] if delayed else None
    args.x, args.x_is_bool, args.trace_in = x.data_ptr(), code, trace_in.data_ptr()
    args.slot = slot.data_ptr() if delayed else None
    if reduction == "none":
        args.out = spikes_f.data_ptr()
        _extension.ingest(address)
        activation = torch.mul(spikes_f, weight, out=out)
        shape = (batch, 1, n_out, pre_trace.shape[-1])
        return activation.view(shape), pre_trace.unsqueeze(2).expand(shape)
    product = out.product  # (O, B), the module's buffer
    contiguous = product.is_contiguous()
    # (B, 1, 1), made by functional.sum_buffers in the weight's (= the state's) dtype
    args.trace_sums = out.trace_sum.data_ptr()
    # the spike-driven product where it applies (spike_ingest counts the spikes first)
    target = product if contiguous else torch.empty(product.shape, dtype=product.dtype)
    args.product, args.out = target.data_ptr(), None
    if _extension.spike_ingest(address):
        if target is not product:
            product.copy_(target)
        return out.activation, out.trace
    if contiguous:
        args.product = product.data_ptr()
    if operands is not None and contiguous and _extension.ingest_product(address):
        pass  # ingest and product on all threads (see _native.c)
    else:
        # the spikes reaching the synapses are copied into the module's own buffer, as the
        # PyTorch function copies them: the BLAS may round a mat-vec differently for an operand
        # at another alignment (MKL does), and a delay-line slot lies wherever its step puts it
        args.out = spikes_f.data_ptr()
        _extension.ingest(address)
        _mm(weight, spikes_f.view(batch, -1).t(), out=product)
    return out.activation, out.trace


def _linear_args(tensors, reduction: str, threads: int) -> tuple:
    weight, pre_trace, pre_spikes, spike_queue = tensors
    dtype = pre_trace.dtype
    reason = None
    if _extension is None:
        reason = "the extension pysnn._native is not built"
    elif dtype not in _DTYPE_CODES:
        reason = f"dtype {dtype} (the kernels take float32 and float64)"
    elif weight.requires_grad:
        reason = "a weight that requires grad"
    else:
        batch, n_in = pre_trace.shape[0], pre_trace.shape[-1]
        n = pre_trace.numel()
        reason = _state_obstacle((pre_trace,), dtype, n) or _state_obstacle(
            (spike_queue,), dtype, spike_queue.shape[0] * n
        )
        if reason is None and not (
            weight.dtype == dtype
            and weight.is_cpu
            and weight.dim() == 2
            and weight.shape[1] == n_in
        ):
            reason = "a weight that is not an (O, I) CPU tensor of the state's dtype"
        if reason is None and not (pre_spikes.dtype == _BOOL and pre_spikes.is_contiguous()):
            reason = "a pre_spikes buffer that is not contiguous bool"
    if reason is not None:
        return None, 0, reason
    n_out = weight.shape[0]
    spikes_f = torch.empty(batch, 1, n_in, dtype=dtype)
    args = _IngestArgs(
        rows=batch,
        cols=n // batch,
        is_double=_DTYPE_CODES[dtype],
        pre_trace=pre_trace.data_ptr(),
        pre_spikes=pre_spikes.data_ptr(),
        weight=weight.data_ptr(),
        n_out=n_out,
        weight_stride_o=weight.stride(0),
        weight_stride_i=weight.stride(1),
        spike_line=sf.SPIKE_PRODUCT_LINE,
        spike_work=sf.SPIKE_PRODUCT_WORK,
    )
    operands = sum_scratch = None
    gemm = _blas_gemm(dtype) if reduction == "sum" else None
    capacity = max(threads, 1)  # PyTorch sets the OpenMP team size the kernels use
    args.capacity = capacity
    if reduction == "sum":  # each thread's row of functional.pairwise_sum
        length = 1 << (n_in - 1).bit_length()
        sum_scratch = torch.empty(capacity, length, dtype=dtype)
        args.sum_scratch, args.sum_length = sum_scratch.data_ptr(), length
    # the threads' BLAS calls read W as a row-major (O, I) array; any other layout (a
    # transposed or expanded weight) takes torch.mm, as the PyTorch function does
    if gemm is not None and capacity > 1 and _extension.openmp and weight.is_contiguous():
        operands = torch.empty(capacity, n, dtype=dtype)  # each thread's copy of the input
        args.gemm, args.operands, args.capacity = gemm, operands.data_ptr(), capacity
    args._kept = (spikes_f, operands, sum_scratch)  # kept alive with the struct
    # fixed while the layout key is (pre_trace and spike_queue are contiguous, so their dtype,
    # size and strides give their shapes; the caller checked the weight's shape)
    args._facts = (dtype, batch, n_out, spike_queue.shape[0] > 0)
    return args, ctypes.addressof(args), None


def _fits(tensor: Tensor, dtype: torch.dtype, numel: int) -> bool:
    """A contiguous CPU tensor of ``dtype`` with ``numel`` elements, without gradient."""
    return (
        tensor.dtype == dtype
        and tensor.numel() == numel
        and tensor.is_contiguous()
        and tensor.is_cpu
        and not tensor.requires_grad
    )


def _spike_input(x: Tensor, dtype: torch.dtype, numel: int) -> Optional[int]:
    """1 for a bool input, 0 for one of ``dtype``, None when the kernel cannot read it."""
    is_bool = x.dtype == torch.bool
    return int(is_bool) if _fits(x, torch.bool if is_bool else dtype, numel) else None


# -- learning rules --------------------------------------------------------------------------
def stack_arguments(p: Tensor, q: Tensor, terms: Sequence[tuple]) -> Optional[list]:
    """Check the operands of :func:`stack_terms` once and return its argument list (the
    coefficients are at positions ``11 + 5·t``), or None when the kernel does not apply.

    :param p: ``(T, B, 1, O)`` contiguous scratch; ``p[t] = c_t · post_t``.
    :param q: ``(T, B, 1, I)`` contiguous scratch; ``q[t] = pre_t``.
    :param terms: ``T`` tuples ``(pre, post, c)``: ``pre`` ``(B, I)`` and ``post`` ``(B, O)``
        contiguous, bool or of ``p``'s dtype; ``c`` a number.
    """
    code = _DTYPE_CODES.get(p.dtype)
    n_terms, rows, _, n_post = p.shape
    n_pre = q.shape[-1]
    if code is None or not (
        _fits(p, p.dtype, n_terms * rows * n_post) and _fits(q, p.dtype, n_terms * rows * n_pre)
    ):
        return None
    arguments = [n_terms, rows, n_post, n_pre, code, p.data_ptr(), q.data_ptr()]
    for pre, post, coef in terms:
        pre_is_bool = _spike_input(pre, p.dtype, rows * n_pre)
        post_is_bool = _spike_input(post, p.dtype, rows * n_post)
        if pre_is_bool is None or post_is_bool is None:
            return None
        arguments += [pre.data_ptr(), pre_is_bool, post.data_ptr(), post_is_bool, float(coef)]
    return arguments


def product_bounded(
    out: Tensor,
    p: Tensor,
    q: Tensor,
    alpha: float,
    beta: float,
    w_min: Optional[float],
    w_max: Optional[float],
    crossover: Optional[float] = None,
    blas_fixed_terms: Optional[float] = None,
) -> int:
    """``out ← clamp(beta·out + alpha·pᵀq, w_min, w_max)`` on all threads, each clamping its
    block of rows of ``out`` right after its BLAS product (no second pass over the weight).

    A term (a row of ``p`` and of ``q``: one sample of one factor pair) whose products of two
    nonzero factors number at most ``crossover · O · I`` (few spikes) is taken event-driven
    instead, only those products; one BLAS call takes the other terms (their rows of ``p`` and
    ``q`` copied into contiguous factors where they are not consecutive, so that one crowded
    term does not take the sparse terms next to it to the BLAS; where the sparse terms between
    the BLAS's first and last number under 1/8 of its own, the BLAS takes them too, which costs
    it less than the copy). Where the terms over the crossover number ``n`` and hold at most
    ``(n + blas_fixed_terms) · crossover · O · I`` products in all, the events take them too:
    the BLAS costs about that many terms before its first (its pass over the weight), more than
    the events of a term or two just over the crossover. Each value is then a sum of the same
    products in another order,
    held to the same rounding bound against ``addmm_`` as the split BLAS product (see
    :meth:`pysnn.learning.LearningRule.product`). Factors that are not finite leave every term
    to the BLAS (``0·inf`` is NaN there).

    :param out: ``(O, I)`` weight, contiguous or stored transposed (strides ``(1, O)``).
    :param p: ``(T, B, 1, O)`` contiguous, read as ``(T·B, O)``.
    :param q: ``(T, B, 1, I)`` contiguous, read as ``(T·B, I)``.
    :param crossover: a term is event-driven when its products number at most this fraction
        of ``O · I`` (default :data:`PRODUCT_EVENT_CROSSOVER`); ``-1`` never, ``math.inf``
        wherever the factors are finite.
    :param blas_fixed_terms: the BLAS's fixed cost in terms (default
        :data:`PRODUCT_BLAS_FIXED_TERMS`); ``-math.inf``: the BLAS takes every term over the
        crossover, however few.
    :returns: 0 (False), with nothing done, when this path does not apply (no OpenMP or BLAS,
        one thread, a small product, other dtypes or layouts): use ``addmm_`` and ``clamp_``;
        else 1 + the number of terms taken event-driven.
    """
    if not _extension.openmp or torch.get_num_threads() < 2:
        return 0
    if out.dim() == 2 and not out.is_contiguous() and out.t().is_contiguous():
        # stored transposed: outᵀ ← clamp(beta·outᵀ + alpha·qᵀp) is the same update of its
        # contiguous memory, each value the same terms in the same order (each product rounded
        # as (q·alpha)·p instead of (p·alpha)·q)
        out, p, q = out.t(), q, p
    operands = _stacked_operands(out, p, q)
    gemm = None if operands is None else _blas_gemm(out.dtype)
    if gemm is None:
        return 0
    return int(
        _extension.product_bounded(
            gemm,
            *operands,
            float(alpha),
            float(beta),
            _optional_float(w_min),
            _optional_float(w_max),
            float(PRODUCT_EVENT_CROSSOVER if crossover is None else crossover),
            float(PRODUCT_BLAS_FIXED_TERMS if blas_fixed_terms is None else blas_fixed_terms),
        )
    )


def _stacked_operands(out: Tensor, p: Tensor, q: Tensor) -> Optional[tuple]:
    """``(dtype code, out's address, O, K, depth, p's address, q's address)`` of a learning
    rule's update of ``out`` ``(O, K)`` from stacked factors ``p`` ``(depth, O)`` and ``q``
    ``(depth, K)`` (any leading shape, contiguous, one dtype), or None when a kernel cannot read
    them."""
    dtype = out.dtype
    code = _DTYPE_CODES.get(dtype)
    if code is None or out.dim() != 2:
        return None
    n_out, n_in = out.shape
    depth = p.numel() // max(n_out, 1)
    if not (
        _fits(out, dtype, n_out * n_in)
        and _fits(p, dtype, depth * n_out)
        and _fits(q, dtype, depth * n_in)
        and p.shape[-1] == n_out
        and q.shape[-1] == n_in
    ):
        return None
    return code, out.data_ptr(), n_out, n_in, depth, p.data_ptr(), q.data_ptr()


def _optional_float(bound: Optional[float]) -> Optional[float]:
    return None if bound is None else float(bound)


#: Event-driven ordered updates run when the products with two nonzero factors number at most
#: this fraction of the dense ones (benchmarks/event_crossover.py measures the crossover).
EVENT_CROSSOVER = 0.01
#: The same for each term of the threads' product of deeper updates (:func:`product_bounded`),
#: as a fraction of ``O · I``; its dense form is the BLAS (``benchmarks/event_crossover.py
#: --depth 32`` measures the crossover: 0.5–1 % on the 2-core Intel Xeon of session 9, with the
#: events added one term at a time; about 3.5 % on the 2-core AMD EPYC of session 12, with the
#: events added row by row, every term of a row while it is in the cache).
PRODUCT_EVENT_CROSSOVER = 0.035
#: What :func:`product_bounded`'s BLAS call costs before its first term, in terms: its pass over
#: the weight and its setup (``benchmarks/event_crossover.py --fixed``: 2.6–5.9 terms of about
#: 4 µs on the 2-core AMD EPYC of session 14, (400, 784); the lower end, so that only terms
#: close to the crossover change sides). Terms just over the crossover that hold fewer products
#: than the BLAS would cost with them are taken event-driven too.
PRODUCT_BLAS_FIXED_TERMS = 2.0


def ordered_update(
    out: Tensor,
    p: Tensor,
    q: Tensor,
    alpha: float,
    beta: float,
    w_min: Optional[float],
    w_max: Optional[float],
    crossover: float = EVENT_CROSSOVER,
) -> int:
    """C twin of :func:`pysnn.learning.ordered_update`: ``out ← beta·out``, then
    ``out ← out + (Σ_j p_j ⊗ q_j)·alpha`` with the terms summed in order, then the bounds.

    Where few factors are nonzero (few spikes), only the products of two nonzero factors are
    taken (event-driven), which gives the same numbers bit for bit (see ``ordered_update`` in
    ``_native.c`` for when it applies).

    :param out: ``(O, K)`` weight (or eligibility trace), contiguous or stored transposed.
    :param p: stacked factors read as ``(depth, O)``; ``q``: read as ``(depth, K)``.
    :param crossover: event-driven when its products number at most this fraction of the dense
        ones; ``-1`` never, ``math.inf`` wherever it gives the same numbers.
    :returns: 0 (not run: another dtype, device or layout), 1 (dense) or 2 (event-driven).
    """
    if _extension is None or not _enabled:
        return 0
    if out.dim() == 2 and not out.is_contiguous() and out.t().is_contiguous():
        # stored transposed: the same update of its memory, each value summing the same
        # products (p·q is q·p) in the same order, then times alpha: the same bits
        out, p, q = out.t(), q, p
    operands = _stacked_operands(out, p, q)
    if operands is None or operands[4] > _ORDERED_MAX_DEPTH:  # [4]: the depth
        return 0
    return _extension.ordered_update(
        *operands,
        float(alpha),
        float(beta),
        _optional_float(w_min),
        _optional_float(w_max),
        float(crossover),
    )


def normalize_rows(weight: Tensor, total: float) -> bool:
    """C twin of :func:`pysnn.models.normalize_weights` over the trailing axes of ``weight``:
    each row (the leading axis, the neurons) summed by the tree of
    :func:`pysnn.functional.pairwise_sum`, then scaled by ``total / sum`` where the sum is not
    0, in place, each thread taking its block of rows. A 2-D weight stored transposed (strides
    ``(1, rows)``) is read in place, the trees of 32 neurons (16 in float64) side by side: the
    same sums.

    :param weight: float32/float64 CPU tensor, ``(rows, ...)`` contiguous or ``(rows, cols)``
        stored transposed: one row per neuron, its weights along the other axes.
    :param total: the sum each row gets.
    :returns: whether it ran (False: the extension is off or cannot read ``weight``, or the
        call is being traced).
    """
    if not (
        _extension is not None
        and _enabled
        and weight.dtype in _DTYPE_CODES
        and weight.is_cpu
        and weight.dim() >= 1
        and weight.numel() > 0
        and not sf._traced()  # torch.compile and dispatch modes trace the PyTorch code
    ):
        return False
    if weight.is_contiguous():
        transposed = False
    elif weight.dim() == 2 and weight.t().is_contiguous():
        transposed = True
    else:
        return False
    rows = weight.shape[0]
    _extension.normalize_rows(
        weight.data_ptr(),
        rows,
        weight.numel() // rows,
        _DTYPE_CODES[weight.dtype],
        int(transposed),
        float(total),
    )
    return True


def bernoulli_draws(
    probabilities: Tensor,
    n_steps: int,
    generator: Optional[torch.Generator],
    time_first: bool,
) -> Optional[Tensor]:
    """C twin of ``torch.rand(probabilities.shape + (n_steps,)) < probabilities[..., None]``
    (:func:`pysnn.encoding.poisson_encoding`'s draws): the same values of the same generator,
    in the same order, compared in one pass, without torch's per-value overhead of ``rand``
    (4–9 ns a value on a 2-core AMD EPYC) nor the ``(..., n_steps)`` float tensor of draws.

    It reads the state of the CPU generator (``generator``, or torch's default one), draws
    from it as ``torch.rand`` does (at::mt19937: one 32-bit output per float32 value, two per
    float64 value), and sets the advanced state back, so the next draw of the generator is the
    one that would follow ``torch.rand``. It runs only after it has reproduced ``torch.rand``
    on this build of torch (checked once per process, :func:`_draws_match_torch`). Reading and
    setting the state are two calls: unlike one ``torch.rand``, they are not atomic against
    another Python thread drawing from the same generator at the same moment (give each thread
    a generator of its own, which is what reproducible results need anyway).

    :param probabilities: contiguous float32/float64 CPU tensor, any shape ``S``.
    :param n_steps: ``T``, draws per value.
    :param generator: a CPU :class:`torch.Generator`, or ``None`` (the default generator).
    :param time_first: the spikes as ``(T, *S)`` (else ``(*S, T)``, torch's layout).
    :returns: the bool spikes, or ``None`` when the kernel does not apply (the extension is
        off, another device or dtype, a non-contiguous tensor, a traced call, a generator
        state it cannot read): then draw with ``torch.rand``.
    """
    if not (
        _extension is not None
        and _enabled
        and probabilities.dtype in _DTYPE_CODES
        and probabilities.is_cpu
        and probabilities.is_contiguous()
        and not probabilities.requires_grad
        and not sf._traced()
    ):
        return None
    if generator is None:
        generator = torch.default_generator
    if generator.device.type != "cpu" or not _draws_match_torch():
        return None
    state = generator.get_state()
    spikes = _draw(state, probabilities, n_steps, time_first)
    if spikes is None:
        return None
    generator.set_state(state)
    return spikes


def _draw(state: Tensor, probabilities: Tensor, n_steps: int, time_first: bool) -> Optional[Tensor]:
    """The kernel's spikes of ``probabilities`` drawn from the generator state ``state`` (a
    ``get_state()`` tensor, advanced in place), or ``None`` for a state it cannot read."""
    if state.numel() != _MT_STATE_BYTES:
        return None
    shape = tuple(probabilities.shape)
    spikes = torch.empty((n_steps,) + shape if time_first else shape + (n_steps,), dtype=torch.bool)
    done = _extension.bernoulli_draws(
        state.data_ptr(),
        probabilities.data_ptr(),
        probabilities.numel(),
        n_steps,
        _DTYPE_CODES[probabilities.dtype],
        spikes.data_ptr(),
        int(time_first),
    )
    return spikes if done else None


_draws_checked: Optional[bool] = None


def _draws_match_torch() -> bool:
    """Whether :func:`bernoulli_draws` gives ``torch.rand``'s spikes and generator state on this
    build of torch: float32 and float64, across a regeneration of the generator's state
    (624 words), from a generator of its own. Computed once per process."""
    global _draws_checked
    if _draws_checked is None:
        matches = True
        for dtype in (torch.float32, torch.float64):
            probabilities = torch.linspace(0.0, 1.0, 97, dtype=dtype)
            expected_generator = torch.Generator().manual_seed(20261203)
            torch.rand(5, generator=expected_generator)  # start off a regeneration boundary
            state = expected_generator.get_state()
            expected = torch.rand(
                (97, 13), generator=expected_generator, dtype=dtype
            ) < probabilities.unsqueeze(-1)
            spikes = _draw(state, probabilities, 13, time_first=False)
            matches = (
                matches
                and spikes is not None
                and torch.equal(spikes, expected)
                and torch.equal(state, expected_generator.get_state())
            )
        _draws_checked = matches
    return _draws_checked


def stack_terms(arguments: Sequence) -> None:
    """Fill the stacked factors of a learning rule's matrix product (Linear layers):
    ``p[t] = c_t · post_t``, ``q[t] = pre_t``, with arguments from :func:`stack_arguments`."""
    _extension.stack_terms(*arguments)
