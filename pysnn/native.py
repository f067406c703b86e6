"""Fused CPU kernels for one simulation step (optional, on by default where built).

On a CPU, eager PyTorch spends 3–8 µs on every elementwise operation whatever the tensor size,
and one neuron step is a dozen of them: at batch 32 that costs several times the matrix product
of the connection. pysnn therefore ships a small C extension, ``pysnn._native`` (built by
``setup.py`` when a C compiler is present; the package works without it), that performs the
step of :class:`~pysnn.neuron.Input`, :class:`~pysnn.neuron.IFNeuron`,
:class:`~pysnn.neuron.LIFNeuron`, :class:`~pysnn.neuron.AdaptiveLIFNeuron` and the presynaptic
side of :class:`~pysnn.connection.Linear` (trace copy, delay line, spike store, trace sums)
in one pass over the cells, with the same arithmetic in the same order and precision as the
eager code in :mod:`pysnn.functional` (the results are equal bit for bit; the tests check it).
The learning rules of :mod:`pysnn.learning` use it to fill the factors of their matrix product.

The fused path is taken only when every tensor involved is a contiguous ``float32`` or
``float64`` CPU tensor of the expected shape, the module is one of the classes above (not a
subclass, which may override a step), and no input requires a gradient. Anything else — CUDA,
``float16``, broadcast inputs, subclasses, :class:`~pysnn.neuron.FedeNeuron`,
:class:`~pysnn.connection.Conv2d` — runs the eager PyTorch code, which gives the same numbers.

Each module keeps its checked kernel arguments between steps and only verifies, at every step,
that its buffers are the same memory, that the settings the kernel reads (``update_type``,
the refractory period, ``relax_to_center``) are unchanged, and that no parameter was modified in
place (version counters). A parameter that holds one value for every cell is passed to the
kernel as that value; so change parameters in place (``neuron.tau_v.fill_(0.8)``, indexing,
``load_state_dict``) or by assigning a new tensor, not through ``.data``, which PyTorch does not
count as a modification. The threshold is always read per cell.

With ``reduction="sum"`` the fused :class:`~pysnn.connection.Linear` returns the same live
output buffers at every step (as the traces always are): clone them to keep them.

Where the extension is built with OpenMP, steps of more than 8192 values are split over
PyTorch's threads (``torch.set_num_threads``); each value is computed the same way whatever the
number of threads. ``Linear`` with ``"sum"`` then runs its presynaptic kernel and its product in
one parallel region in which every thread keeps its own copy of the spikes (and of the delay
line) and takes its block of rows of ``W @ sᵀ`` with the BLAS ``?gemm_`` that ``torch.mm`` uses,
so that no spikes travel between cores (see ``docs/performance.rst``); the product equals
``torch.mm``'s bit for bit. Without that BLAS (PyTorch builds without MKL) ``torch.mm`` is used.

Set the environment variable ``PYSNN_NATIVE=0`` before importing pysnn, call
:func:`set_enabled` ``(False)``, or use the :func:`disabled` context manager to force the eager
code (e.g. to compare both).
"""

import ctypes
import os
import struct
import sys
from contextlib import contextmanager
from operator import attrgetter, itemgetter
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor

try:  # the extension is optional: setup.py builds it when a compiler is available
    from pysnn import _native as _extension
except ImportError:  # pragma: no cover - exercised only where the build was skipped
    _extension = None

__all__ = ["available", "enabled", "set_enabled", "disabled"]

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}
_enabled = _extension is not None and os.environ.get("PYSNN_NATIVE", "1") != "0"

# Model codes shared with _native.c.
_MODEL_IF, _MODEL_LIF_LINEAR, _MODEL_LIF_EXPONENTIAL = 0, 1, 2
_UPDATE_LINEAR, _UPDATE_EXPONENTIAL, _THRESH_FIXED = 0, 1, 2


def available() -> bool:
    """Whether the compiled extension ``pysnn._native`` could be imported."""
    return _extension is not None


def enabled() -> bool:
    """Whether steps currently use the fused kernels where they apply."""
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


# Buffers each kernel reads or writes, by module kind; their data pointers key the cached plan.
_BASE_NEURON_BUFFERS = ("v_cell", "v_rest", "alpha_v", "dt", "refrac_counts", "spikes", "trace")
_NEURON_BUFFERS = {
    "if": _BASE_NEURON_BUFFERS + ("alpha_t", "tau_t", "thresh_center"),
    "lif": _BASE_NEURON_BUFFERS + ("tau_v", "alpha_t", "tau_t", "thresh_center"),
    "adaptive_lif": _BASE_NEURON_BUFFERS
    + ("tau_v", "alpha_t", "tau_t", "alpha_thresh", "tau_thresh", "thresh_center"),
}
# Per-cell parameters in the order of the kernels' `scalars` (S_ALPHA_V ... S_CENTER in
# _native.c). The threshold is always read per cell: it adapts in some models, and code that
# sets it through ``thresh.data`` bypasses the version counter the plan relies on.
_SCALAR_SLOTS = (
    "alpha_v",
    "tau_v",
    "alpha_t",
    "tau_t",
    "alpha_thresh",
    "tau_thresh",
    "thresh_center",
)
_INPUT_BUFFERS = ("trace", "alpha_t", "tau_t", "dt", "spikes")


def _pack(*values: Optional[int]) -> bytes:
    """A kernel's fixed arguments as one bytes object of native int64 values (None as 0): the
    extension reads them without touching one Python int per argument at every step."""
    return struct.pack(f"{len(values)}q", *(0 if value is None else value for value in values))


def _fits(tensor: Tensor, dtype: torch.dtype, numel: int) -> bool:
    """A contiguous CPU tensor of ``dtype`` with ``numel`` elements, without gradient."""
    return (
        tensor.dtype == dtype
        and tensor.numel() == numel
        and tensor.is_contiguous()
        and tensor.is_cpu
        and not tensor.requires_grad
    )


class _Plan:
    """Validated kernel arguments of one module, reused while its buffers stay the same.

    Validating dtypes, shapes and layouts costs more than the kernel, so it runs again only
    when the plan's ``key`` changes: the data pointers of the module's buffers (``.to()``,
    ``.double()``, a buffer or ``.data`` replaced), settings the kernel reads, and the version
    counters of the parameters (modified in place). ``args`` are the kernel's fixed leading
    arguments, packed by :func:`_pack`; None means "use the eager code" for this module as it
    is.

    When every parameter holds a single value for all cells, ``scalars`` carries the values and
    the kernel reads no parameter array.
    """

    __slots__ = (
        "key",
        "names",
        "parameters",
        "args",
        "dtype",
        "shape",
        "numel",
        "rows",
        "cols",
        "scalars",
        "scratch",
        "extra",
        "last_input",
        "last_input_pointer",
        "last_tail",
    )

    def __init__(self, names: Sequence[str], parameters: Sequence[Tensor]) -> None:
        self.names = itemgetter(*names)
        self.parameters = tuple(parameters)
        self.key: Optional[tuple] = None
        self.args: Optional[tuple] = None
        self.scalars: Optional[Tensor] = None
        self.scratch: Optional[Tensor] = None
        self.extra: Any = None
        self.last_input: Optional[Tensor] = None
        self.last_input_pointer = 0
        self.last_tail: tuple = ()

    def uniform_scalars(self, named: Dict[str, Tensor], dtype: torch.dtype) -> Tuple[int, Any]:
        """``(uniform, scalars pointer)`` for the kernel: the parameters as scalars (in
        ``_SCALAR_SLOTS`` order) when each is uniform and in-place edits can be seen."""
        if _versions(self.parameters) is None:  # inference tensors: edits cannot be seen
            return 0, None
        values = [_uniform_value(named[name]) if name in named else 0.0 for name in _SCALAR_SLOTS]
        if None in values:
            return 0, None
        self.scalars = torch.tensor(values, dtype=dtype)
        return 1, self.scalars.data_ptr()


_DATA_POINTER = Tensor.data_ptr
_VERSION = attrgetter("_version")
_empty_like, _mm, _BOOL = torch.empty_like, torch.mm, torch.bool
_get_num_threads = torch.get_num_threads


def _versions(tensors: Sequence[Tensor]) -> Optional[tuple]:
    try:
        return tuple(map(_VERSION, tensors))
    except RuntimeError:  # inference tensors keep no version counter
        return None


def _key(module, plan: _Plan, settings: tuple) -> tuple:
    """What the plan's validity depends on (see :class:`_Plan`), read without Python loops."""
    pointers = tuple(map(_DATA_POINTER, plan.names(module._buffers)))
    return pointers, settings, _versions(plan.parameters)


def _current_plan(module, settings: tuple, build, *arguments) -> Optional[_Plan]:
    """The module's cached plan if still valid, else a new one from ``build(*arguments)``."""
    plan = module.__dict__.get("_native_plan")
    if plan is None or plan.key != _key(module, plan, settings):
        plan = build(*arguments)
        plan.key = _key(module, plan, settings)
        module.__dict__["_native_plan"] = plan
    return plan if plan.args is not None else None


def _uniform_value(tensor: Tensor) -> Optional[float]:
    """The value of a tensor whose elements are all equal, else None."""
    flat = tensor.reshape(-1)
    first = flat[:1]
    if flat.numel() == 0 or not bool((flat == first).all()):
        return None
    return float(first.item())


def _spike_input(x: Tensor, dtype: torch.dtype, numel: int) -> Optional[int]:
    """1 for a bool input, 0 for one of ``dtype``, None when the kernel cannot read it."""
    is_bool = x.dtype == torch.bool
    return int(is_bool) if _fits(x, torch.bool if is_bool else dtype, numel) else None


def input_step(layer, x: Tensor) -> bool:
    """Fused :meth:`pysnn.neuron.Input.forward` body; returns False when it does not apply."""
    plan = _current_plan(layer, (layer.__dict__["update_type"],), _input_plan, layer)
    if plan is None or not isinstance(x, Tensor):
        return False
    is_bool = x.dtype is _BOOL
    if not (
        (is_bool or x.dtype is plan.dtype)
        and x.shape == plan.shape  # an input that only broadcasts to the cells: eager code
        and x.is_contiguous()
        and x.is_cpu
        and not x.requires_grad
    ):
        return False
    _extension.input_step(plan.args, x.data_ptr(), is_bool)
    return True


def _input_plan(layer) -> _Plan:
    buffers = layer._buffers
    trace, alpha_t, tau_t = buffers["trace"], buffers["alpha_t"], buffers["tau_t"]
    plan = _Plan(_INPUT_BUFFERS, (alpha_t, tau_t))
    code = _DTYPE_CODES.get(trace.dtype)
    n = trace.numel()
    if code is None or not (
        all(_fits(t, trace.dtype, n) for t in (trace, alpha_t, tau_t))
        and _fits(buffers["dt"], trace.dtype, 1)
        and _fits(buffers["spikes"], torch.bool, n)
    ):
        return plan
    mode = _UPDATE_LINEAR if layer.update_type == "linear" else _UPDATE_EXPONENTIAL
    uniform, scalars = plan.uniform_scalars({"alpha_t": alpha_t, "tau_t": tau_t}, trace.dtype)
    pointers = [buffers[name].data_ptr() for name in _INPUT_BUFFERS]
    plan.args = _pack(n, code, *pointers, mode, uniform, scalars)
    plan.dtype, plan.numel, plan.shape = trace.dtype, n, trace.shape
    return plan


_LINEAR_BUFFERS = itemgetter("pre_trace", "pre_spikes", "spike_queue")


class _LinearPlan:
    """Checked arguments and kept buffers of a :class:`~pysnn.connection.Linear`'s fused step.

    ``key``: the data pointers of the buffers the kernel writes and of the weight, whether the
    weight requires a gradient, and the settings read (reduction, delay). ``args`` are the
    ingest kernel's fixed leading arguments (None: eager code). With ``"sum"`` the product
    ``W @ xᵀ`` is written into ``product`` (O, B) and ``outputs`` are the live ``(B, 1, O, 1)``
    views returned at every step.
    """

    __slots__ = (
        "key",
        "args",
        "dtype",
        "input_shape",
        "numel",
        "slots",
        "slot_views",
        "spikes",
        "spikes_view",
        "product",
        "outputs",
        "summed",
        "max_delay",
        "gemm_args",
        "operands",
        "last_input",
        "last_input_pointer",
    )

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.args: Optional[tuple] = None
        self.gemm_args: Optional[tuple] = None
        self.last_input: Optional[Tensor] = None
        self.last_input_pointer = 0


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


def _linear_key(connection, weight: Tensor) -> tuple:
    attributes = connection.__dict__
    buffers = connection._buffers
    try:
        # in-place changes of the delay line outside the kernels (reset_state, loading a
        # state, eager steps) refresh the threads' copies of it
        queue_version = buffers["spike_queue"]._version
    except RuntimeError:  # an inference tensor keeps no version counter
        queue_version = None
    return (
        tuple(map(_DATA_POINTER, _LINEAR_BUFFERS(buffers))),
        queue_version,
        weight.data_ptr(),
        weight.requires_grad,
        attributes["reduction"],
        attributes["max_delay"],
        attributes["uniform_delay"],
        _get_num_threads(),  # the threads' copies of the spikes are made for this many
    )


def linear_step(connection, x: Tensor, trace_in: Tensor) -> Optional[Tuple[Tensor, Tensor]]:
    """Fused step of a :class:`~pysnn.connection.Linear` (exact class) with a uniform delay.

    One kernel copies ``trace_in`` into ``pre_trace``, pushes ``x`` into the delay line (the
    ``spike_queue`` slot at the cursor), stores the spikes leaving it in ``pre_spikes`` and, for
    ``"sum"``, each batch element's trace sum; ``"sum"`` then takes ``W @ xᵀ`` into a kept
    buffer (with a delay, from the delay-line slot in place, before the kernel overwrites it).
    On several threads, ``"sum"`` runs both in one parallel region in which each thread works
    on its own copy of the spikes (``ingest_product`` in ``_native.c``).

    :returns: the step's ``(activation, trace)``, or None (nothing done) when the fused path
        does not apply (then the eager code runs, and raises for bad input).
    """
    weight = connection._parameters["weight"]
    key = _linear_key(connection, weight)
    plan = connection.__dict__.get("_native_plan")
    if plan is None or plan.key != key:
        plan = _linear_plan(connection, weight, key)
        connection.__dict__["_native_plan"] = plan
    if plan.args is None:
        return None
    if not isinstance(x, Tensor):
        return None
    is_bool = x.dtype is _BOOL
    if not (
        (is_bool or x.dtype is plan.dtype)
        and x.shape == plan.input_shape
        and x.is_contiguous()
        and x.is_cpu
        and not x.requires_grad
    ):
        return None
    if trace_in is not plan.last_input or trace_in.data_ptr() != plan.last_input_pointer:
        # usually the presynaptic layer's own trace buffer: checked once, then recognised
        if not (
            isinstance(trace_in, Tensor)
            and trace_in.shape == plan.input_shape
            and _fits(trace_in, plan.dtype, plan.numel)
        ):
            return None
        plan.last_input, plan.last_input_pointer = trace_in, trace_in.data_ptr()
    cursor = connection._cursor
    slot = plan.slots[cursor] if plan.max_delay else None
    x_pointer, trace_pointer = x.data_ptr(), plan.last_input_pointer
    if plan.gemm_args is not None and _extension.ingest_product(
        plan.gemm_args, slot, x_pointer, is_bool, trace_pointer, cursor
    ):
        pass  # ingest and product on all threads (see _native.c)
    elif plan.summed and plan.max_delay:
        # the spikes leaving the delay line are read where they are, before the kernel
        # overwrites their slot with this step's input
        _mm(weight, plan.slot_views[cursor], out=plan.product)
        _extension.ingest(plan.args, slot, x_pointer, is_bool, trace_pointer)
    else:
        _extension.ingest(plan.args, slot, x_pointer, is_bool, trace_pointer)
        if plan.summed:
            _mm(weight, plan.spikes_view, out=plan.product)  # W @ xᵀ reads W contiguously
    if plan.max_delay:
        connection._cursor = (cursor + 1) % plan.max_delay
    if plan.summed:
        return plan.outputs
    return connection.activation_potential(plan.spikes), connection.fold(connection.trace)


def _linear_plan(connection, weight: Tensor, key: tuple) -> _LinearPlan:
    plan = _LinearPlan(key)
    buffers = connection._buffers
    pre_trace, pre_spikes, queue = _LINEAR_BUFFERS(buffers)
    dtype = pre_trace.dtype
    code = _DTYPE_CODES.get(dtype)
    n, rows = pre_trace.numel(), pre_trace.shape[0]
    if (
        code is None
        or not connection.uniform_delay
        or weight.requires_grad
        or weight.dtype != dtype
        or not weight.is_cpu
        or not (
            _fits(pre_trace, dtype, n)
            and _fits(pre_spikes, _BOOL, n)
            and _fits(queue, dtype, connection.max_delay * n)
        )
    ):
        return plan
    batch, n_out = connection.batch_size, connection.out_features
    spikes = torch.empty(batch, 1, connection.in_features, dtype=dtype)
    plan.spikes, plan.spikes_view = spikes, spikes.view(batch, -1).t()  # (I, B) operand
    plan.summed = connection.reduction == "sum"
    plan.max_delay = connection.max_delay
    # the delay line's slot for every cursor position, as pointers and as (I, B) operands
    plan.slots = tuple(queue[k].data_ptr() for k in range(plan.max_delay))
    plan.slot_views = tuple(slot.view(batch, -1).t() for slot in queue)
    trace_sums = None
    if plan.summed:
        trace_sums = torch.empty(batch, 1, 1, dtype=dtype)
        plan.product = torch.empty(n_out, batch, dtype=dtype)
        activation = plan.product.t().unsqueeze(1).unsqueeze(-1)  # (B, 1, O, 1)
        trace = trace_sums.expand(-1, -1, n_out).unsqueeze(-1)  # (B, 1, O, 1)
        plan.outputs = (activation, trace)
    # with "sum" and a delay the product reads the slot itself: the kernel stores no copy
    out = None if plan.summed and plan.max_delay else spikes.data_ptr()
    sums = None if trace_sums is None else trace_sums.data_ptr()
    arguments = (rows, n // rows, code, pre_trace.data_ptr(), out, pre_spikes.data_ptr(), sums)
    plan.args = _pack(*arguments)
    gemm = _blas_gemm(dtype) if plan.summed else None
    capacity = torch.get_num_threads()  # PyTorch sets the OpenMP team size the kernels use
    copies_follow = key[1] is not None or not plan.max_delay  # see _linear_key
    if gemm is not None and capacity > 1 and _extension.openmp and copies_follow:
        # each thread's own copy of the spikes or, with a delay, of the delay line (thread 0
        # works on spike_queue itself; see _native.c)
        depth = max(plan.max_delay, 1)
        copies = capacity - 1 if plan.max_delay else capacity
        plan.operands = torch.empty(copies, depth, n, dtype=dtype)
        if plan.max_delay:
            plan.operands.copy_(queue.view(1, depth, n).expand_as(plan.operands))
        head = arguments[:4] + (None,) + arguments[5:]  # the product reads its own copies
        tail = (gemm, weight.data_ptr(), n_out, plan.product.data_ptr())
        plan.gemm_args = _pack(*head, *tail, plan.operands.data_ptr(), capacity, depth)
    plan.dtype, plan.input_shape, plan.numel = dtype, tuple(pre_trace.shape), n
    return plan


def neuron_step(neuron, x: Any, kind: str) -> Optional[Tensor]:
    """Fused step of an IF/LIF/adaptive LIF neuron: folding of the input, voltage, spikes,
    trace, threshold and refractory update (everything :meth:`pysnn.neuron.BaseNeuron.forward`
    does but the spike history).

    :param neuron: an :class:`~pysnn.neuron.IFNeuron`, :class:`~pysnn.neuron.LIFNeuron` or
        :class:`~pysnn.neuron.AdaptiveLIFNeuron` (exact classes).
    :param x: the neuron's input as given to ``forward`` (``cells_shape + (R,)``).
    :param kind: ``"if"``, ``"lif"`` or ``"adaptive_lif"``.
    :returns: a new bool tensor with this step's spikes (the kernel writes it besides the
        ``spikes`` buffer), or None (nothing done) when the kernel does not apply.
    """
    attributes = neuron.__dict__  # plain attributes: nn.Module.__getattr__ is slow on misses
    settings = (
        neuron._parameters["thresh"].data_ptr(),
        attributes["update_type"],
        attributes["refrac_steps"],
        attributes.get("relax_to_center", False),
    )
    plan = _current_plan(neuron, settings, _neuron_plan, neuron, kind)
    if plan is None:
        return None
    current = None  # holds a folded input alive until the kernel has read it
    if x is plan.last_input and x.data_ptr() == plan.last_input_pointer:
        tail = plan.last_tail  # the same input tensor as last step (a connection's output view)
    else:
        current = _neuron_input(neuron, plan, x)
        if current is None:
            return None
        tail = (current.data_ptr(), *current.stride())
    fired = _empty_like(plan.extra)  # empty_like of the spikes buffer: the cheapest allocation
    _extension.neuron_step(plan.args, *tail, fired.data_ptr())
    return fired


def _neuron_input(neuron, plan: _Plan, x: Any) -> Optional[Tensor]:
    """Fold ``x`` into the kernel's ``(rows, cols)`` input; remember its arguments (pointer,
    row and column strides) for the next step when it is a view of ``x``."""
    try:
        current = neuron.fold(x)  # a tensor, or a list of them along the fan-in axis
    except (TypeError, ValueError, RuntimeError):  # the eager code raises it for the user
        return None
    if (
        current.dtype != plan.dtype
        or not current.is_cpu
        or current.requires_grad
        or current.shape != plan.shape  # e.g. an input that only broadcasts to the cells
    ):
        return None
    current = current.reshape(plan.rows, plan.cols)  # a view whenever the layout allows
    if isinstance(x, Tensor) and x.shape[-1] == 1 and current.data_ptr() == x.data_ptr():
        # folding only dropped the fan-in axis: the same memory at the next step
        plan.last_input, plan.last_input_pointer = x, x.data_ptr()
        plan.last_tail = (current.data_ptr(), *current.stride())
    return current


def _neuron_plan(neuron, kind: str) -> _Plan:
    names = _NEURON_BUFFERS[kind]
    buffers = neuron._buffers
    thresh = neuron._parameters["thresh"].detach()
    v_cell = buffers["v_cell"]
    dtype, n = v_cell.dtype, v_cell.numel()
    adaptive = kind == "adaptive_lif"
    relax = adaptive and neuron.relax_to_center
    center = buffers["thresh_center"]
    used = set(names) - {"v_cell", "v_rest", "dt", "refrac_counts", "spikes"}
    if not relax:
        used.discard("thresh_center")
    named = {name: buffers[name] for name in _SCALAR_SLOTS if name in used}
    plan = _Plan(names, list(named.values()))
    code = _DTYPE_CODES.get(dtype)
    per_cell = [t for name, t in named.items() if name != "thresh_center"]
    if code is None or not (
        all(_fits(t, dtype, n) for t in per_cell)
        and _fits(v_cell, dtype, n)
        and _fits(buffers["trace"], dtype, n)
        and _fits(thresh, dtype, n)
        and _fits(buffers["v_rest"], dtype, 1)
        and _fits(buffers["dt"], dtype, 1)
        and _fits(center, dtype, center.numel())
        and (not relax or center.numel() == 1 or center.shape == v_cell.shape)
        and _fits(buffers["refrac_counts"], torch.int32, n)
        and _fits(buffers["spikes"], torch.bool, n)
        and buffers["spikes"].shape == v_cell.shape
    ):
        return plan  # e.g. a threshold centre that only broadcasts: eager code
    linear = neuron.update_type == "linear"
    if kind == "if":
        model = _MODEL_IF
    else:
        model = _MODEL_LIF_LINEAR if linear else _MODEL_LIF_EXPONENTIAL
    thresh_mode = (_UPDATE_LINEAR if linear else _UPDATE_EXPONENTIAL) if adaptive else _THRESH_FIXED
    uniform, scalars = plan.uniform_scalars(named, dtype)
    plan.scratch = torch.empty(n, dtype=dtype)  # a non-contiguous input is gathered here
    plan.extra = buffers["spikes"]  # bool, contiguous, of the cells' shape
    pointer = {name: buffers[name].data_ptr() for name in names}
    rows = v_cell.shape[0]
    plan.args = _pack(
        rows,
        n // rows,
        code,
        model,
        _UPDATE_LINEAR if linear else _UPDATE_EXPONENTIAL,
        thresh_mode,
        int(relax),
        neuron.refrac_steps,
        pointer["v_cell"],
        thresh.data_ptr(),
        pointer["v_rest"],
        pointer["alpha_v"],
        buffers["tau_v"].data_ptr() if model != _MODEL_IF else pointer["alpha_v"],
        pointer["dt"],
        pointer["refrac_counts"],
        pointer["spikes"],
        pointer["trace"],
        pointer["alpha_t"],
        pointer["tau_t"],
        buffers["alpha_thresh"].data_ptr() if adaptive else pointer["alpha_t"],
        buffers["tau_thresh"].data_ptr() if adaptive else pointer["tau_t"],
        center.data_ptr(),
        int(center.numel() == 1),
        uniform,
        scalars,
        plan.scratch.data_ptr(),
    )
    plan.dtype, plan.shape, plan.numel = dtype, v_cell.shape, n
    plan.rows, plan.cols = rows, n // rows
    return plan


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
) -> bool:
    """``out ← clamp(beta·out + alpha·pᵀq, w_min, w_max)`` on all threads, each clamping its
    block of rows of ``out`` right after its BLAS product (no second pass over the weight).

    :param out: ``(O, I)`` contiguous weight.
    :param p: ``(T, B, 1, O)`` contiguous, read as ``(T·B, O)``.
    :param q: ``(T, B, 1, I)`` contiguous, read as ``(T·B, I)``.
    :returns: False, with nothing done, when this path does not apply (no OpenMP or BLAS, one
        thread, a small product, other dtypes or layouts): use ``addmm_`` and ``clamp_``.
    """
    dtype = out.dtype
    code = _DTYPE_CODES.get(dtype)
    if code is None or out.dim() != 2 or not _extension.openmp or torch.get_num_threads() < 2:
        return False
    n_out, n_in = out.shape
    depth = p.numel() // max(n_out, 1)
    gemm = _blas_gemm(dtype)
    if (
        gemm is None
        or not _fits(out, dtype, n_out * n_in)
        or not _fits(p, dtype, depth * n_out)
        or not _fits(q, dtype, depth * n_in)
        or p.shape[-1] != n_out
        or q.shape[-1] != n_in
    ):
        return False
    return _extension.product_bounded(
        gemm,
        code,
        out.data_ptr(),
        n_out,
        n_in,
        depth,
        p.data_ptr(),
        q.data_ptr(),
        float(alpha),
        float(beta),
        None if w_min is None else float(w_min),
        None if w_max is None else float(w_max),
    )


def stack_terms(arguments: Sequence) -> None:
    """Fill the stacked factors of a learning rule's matrix product (Linear layers):
    ``p[t] = c_t · post_t``, ``q[t] = pre_t``, with arguments from :func:`stack_arguments`."""
    _extension.stack_terms(*arguments)
