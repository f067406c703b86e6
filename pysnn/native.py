"""Fused CPU kernels for one simulation step (optional, on by default where built).

On a CPU, eager PyTorch spends 3–8 µs on every elementwise operation whatever the tensor size,
and one neuron step is a dozen of them: at batch 32 that costs several times the matrix product
of the connection. pysnn therefore ships a small C extension, ``pysnn._native`` (built by
``setup.py`` when a C compiler is present; the package works without it), that performs the
step of :class:`~pysnn.neuron.Input`, :class:`~pysnn.neuron.IFNeuron`,
:class:`~pysnn.neuron.LIFNeuron`, :class:`~pysnn.neuron.AdaptiveLIFNeuron` and the presynaptic
side of :class:`~pysnn.connection.Linear` (trace copy, delay line, spike store) in one pass over
the cells, with the same arithmetic in the same order and precision as the eager code in
:mod:`pysnn.functional`.

The fused path is taken only when every tensor involved is a contiguous ``float32`` or
``float64`` CPU tensor of the expected shape, the module is one of the classes above (not a
subclass, which may override a step), and no input requires a gradient. Anything else — CUDA,
``float16``, broadcast inputs, subclasses, :class:`~pysnn.neuron.FedeNeuron`,
:class:`~pysnn.connection.Conv2d` — runs the eager PyTorch code, which gives the same numbers.

Set the environment variable ``PYSNN_NATIVE=0`` before importing pysnn, call
:func:`set_enabled` ``(False)``, or use the :func:`disabled` context manager to force the eager
code (e.g. to compare both).
"""

import os
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

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
_NEURON_BUFFERS = {
    "if": (
        "v_cell",
        "v_rest",
        "alpha_v",
        "alpha_v",
        "dt",
        "refrac_counts",
        "spikes",
        "trace",
        "alpha_t",
        "tau_t",
        "alpha_t",
        "tau_t",
        "thresh_center",
    ),
    "lif": (
        "v_cell",
        "v_rest",
        "alpha_v",
        "tau_v",
        "dt",
        "refrac_counts",
        "spikes",
        "trace",
        "alpha_t",
        "tau_t",
        "alpha_t",
        "tau_t",
        "thresh_center",
    ),
    "adaptive_lif": (
        "v_cell",
        "v_rest",
        "alpha_v",
        "tau_v",
        "dt",
        "refrac_counts",
        "spikes",
        "trace",
        "alpha_t",
        "tau_t",
        "alpha_thresh",
        "tau_thresh",
        "thresh_center",
    ),
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


def _fits(tensor: Tensor, dtype: torch.dtype, numel: int) -> bool:
    """A contiguous CPU tensor of ``dtype`` with ``numel`` elements, without gradient."""
    return (
        tensor.dtype == dtype
        and tensor.numel() == numel
        and tensor.is_contiguous()
        and tensor.device.type == "cpu"
        and not tensor.requires_grad
    )


class _Plan:
    """Validated kernel arguments of one module, reused while its buffers stay the same.

    Validating dtypes, shapes and layouts costs more than the kernel, so it runs again only
    when a buffer's data pointer changes (``.to()``, ``.double()``, a buffer or ``.data``
    replaced) or a parameter is modified in place (its version counter moves).

    ``parameters`` are the tensors whose values the plan depends on; when each holds a single
    value for all cells, ``scalars`` carries those values and the kernel reads no array.
    """

    def __init__(self, pointers: tuple, parameters: Sequence[Tensor], static: Optional[tuple]):
        self.pointers = pointers
        self.parameters = tuple(parameters)
        self.versions = _versions(self.parameters)
        self.static = static
        self.uniform = 0
        self.scalars: Optional[Tensor] = None
        self.scalars_pointer: Optional[int] = None

    def use_scalars(self, values: Sequence[float], dtype: torch.dtype) -> None:
        """Pass these values (in ``_SCALAR_SLOTS`` order, missing ones zero) as scalars."""
        padded = list(values) + [0.0] * (len(_SCALAR_SLOTS) - len(values))
        self.scalars = torch.tensor(padded, dtype=dtype)
        self.scalars_pointer = self.scalars.data_ptr()
        self.uniform = 1

    def valid(self, pointers: tuple) -> bool:
        return pointers == self.pointers and _versions(self.parameters) == self.versions


def _versions(tensors: Sequence[Tensor]) -> Optional[tuple]:
    try:
        return tuple([tensor._version for tensor in tensors])
    except RuntimeError:  # inference tensors keep no version counter
        return None


def _uniform_value(tensor: Tensor) -> Optional[float]:
    """The value of a tensor whose elements are all equal, else None."""
    flat = tensor.reshape(-1)
    first = flat[:1]
    if flat.numel() == 0 or not bool((flat == first).all()):
        return None
    return float(first.item())


def _plan(module, pointers: tuple, build) -> Optional[_Plan]:
    """The plan cached on ``module`` for these pointers, rebuilt by ``build()`` when stale.

    ``build()`` returns a :class:`_Plan` whose ``static`` is None for "use the eager code".
    """
    cached = module.__dict__.get("_native_plan")
    if cached is None or not cached.valid(pointers):
        cached = build()
        if cached.versions is None:  # cannot tell later edits apart: never treat as uniform
            cached.uniform = 0
        module.__dict__["_native_plan"] = cached
    return cached if cached.static is not None else None


def _spike_input(x: Tensor, dtype: torch.dtype, numel: int) -> Optional[int]:
    """1 for a bool input, 0 for one of ``dtype``, None when the kernel cannot read it."""
    if not x.is_cpu or x.requires_grad or x.numel() != numel or not x.is_contiguous():
        return None
    if x.dtype == torch.bool:
        return 1
    return 0 if x.dtype == dtype else None


def input_step(layer, x: Tensor) -> bool:
    """Fused :meth:`pysnn.neuron.Input.forward` body; returns False when it does not apply."""
    buffers = layer._buffers
    # The update type is part of the key: code may change it between steps.
    pointers = tuple([buffers[name].data_ptr() for name in _INPUT_BUFFERS]) + (layer.update_type,)

    def build() -> _Plan:
        trace, alpha_t, tau_t = buffers["trace"], buffers["alpha_t"], buffers["tau_t"]
        plan = _Plan(pointers, (alpha_t, tau_t), None)
        code = _DTYPE_CODES.get(trace.dtype)
        n = trace.numel()
        if code is None or not (
            all(_fits(t, trace.dtype, n) for t in (trace, alpha_t, tau_t))
            and _fits(buffers["dt"], trace.dtype, 1)
            and _fits(buffers["spikes"], torch.bool, n)
        ):
            return plan
        mode = _UPDATE_LINEAR if layer.update_type == "linear" else _UPDATE_EXPONENTIAL
        plan.static = (n, code, trace.dtype, mode)
        values = (_uniform_value(alpha_t), _uniform_value(tau_t))
        if None not in values:
            # slots S_ALPHA_T and S_TAU_T of the kernel's scalars
            plan.use_scalars((0.0, 0.0) + values, trace.dtype)
        return plan

    plan = _plan(layer, pointers, build)
    if plan is None:
        return False
    n, code, dtype, mode = plan.static
    x_is_bool = _spike_input(x, dtype, n)
    if x_is_bool is None:
        return False
    trace, alpha_t, tau_t, dt, spikes, _ = pointers
    _extension.input_step(
        n,
        code,
        x.data_ptr(),
        x_is_bool,
        trace,
        alpha_t,
        tau_t,
        dt,
        spikes,
        mode,
        plan.uniform,
        plan.scalars_pointer,
    )
    return True


def ingest(
    connection,
    x: Tensor,
    trace_in: Tensor,
    slot: Optional[Tensor],
    out: Tensor,
    trace_sums: Optional[Tensor],
) -> bool:
    """Fused presynaptic side of :class:`pysnn.connection.Linear` with a uniform delay.

    Copies ``trace_in`` into ``pre_trace``; pushes ``x`` into the delay ``slot`` (None for no
    delay) and writes what leaves it into ``out``; stores those spikes (as bool) in
    ``pre_spikes``; writes the sum of each batch element's trace into ``trace_sums`` (shape
    ``(B,)``, or None to skip). Returns False (nothing done) when the kernel does not apply.
    """
    buffers = connection._buffers
    pre_trace, pre_spikes = buffers["pre_trace"], buffers["pre_spikes"]
    pointers = (
        pre_trace.data_ptr(),
        pre_spikes.data_ptr(),
        out.data_ptr(),
        None if slot is None else slot.data_ptr(),
        None if trace_sums is None else trace_sums.data_ptr(),
    )

    def build() -> _Plan:
        plan = _Plan(pointers, (), None)
        dtype = pre_trace.dtype
        code = _DTYPE_CODES.get(dtype)
        n = pre_trace.numel()
        rows = pre_trace.shape[0]
        if code is not None and (
            _fits(pre_trace, dtype, n)
            and _fits(out, dtype, n)
            and _fits(pre_spikes, torch.bool, n)
            and (slot is None or _fits(slot, dtype, n))
            and (trace_sums is None or _fits(trace_sums, dtype, rows))
        ):
            plan.static = (dtype, code, n, rows)
        return plan

    plan = _plan(connection, pointers, build)
    if plan is None:
        return False
    dtype, code, n, rows = plan.static
    if not (trace_in.dtype == dtype and _spike_input(trace_in, dtype, n) == 0):
        return False
    x_is_bool = _spike_input(x, dtype, n)
    if x_is_bool is None:
        return False
    pre_trace_pointer, pre_spikes_pointer, out_pointer, slot_pointer, sums_pointer = pointers
    _extension.ingest(
        rows,
        n // rows,
        code,
        x.data_ptr(),
        x_is_bool,
        trace_in.data_ptr(),
        pre_trace_pointer,
        slot_pointer,
        out_pointer,
        pre_spikes_pointer,
        sums_pointer,
    )
    return True


def neuron_step(neuron, current: Tensor, kind: str) -> Optional[Tensor]:
    """Fused voltage, spike, trace, threshold and refractory update of one IF/LIF/adaptive LIF
    step (everything :meth:`pysnn.neuron.BaseNeuron.forward` does but the spike history).

    :param neuron: an :class:`~pysnn.neuron.IFNeuron`, :class:`~pysnn.neuron.LIFNeuron` or
        :class:`~pysnn.neuron.AdaptiveLIFNeuron` (exact classes).
    :param current: folded input of shape ``cells_shape``.
    :param kind: ``"if"``, ``"lif"`` or ``"adaptive_lif"``.
    :returns: a new bool tensor with this step's spikes (the kernel writes it besides the
        ``spikes`` buffer), or None (nothing done) when the kernel does not apply.
    """
    buffers = neuron._buffers
    thresh = neuron._parameters["thresh"]
    # Settings read by the kernel are part of the key: code may change them between steps.
    settings = (neuron.update_type, neuron.refrac_steps, getattr(neuron, "relax_to_center", False))
    pointers = tuple([buffers[name].data_ptr() for name in _NEURON_BUFFERS[kind]]) + (
        thresh.data_ptr(),
        settings,
    )

    def build() -> _Plan:
        v_cell = buffers["v_cell"]
        dtype, n = v_cell.dtype, v_cell.numel()
        adaptive = kind == "adaptive_lif"
        relax = adaptive and neuron.relax_to_center
        center = buffers["thresh_center"]
        used = set(_NEURON_BUFFERS[kind]) - {"v_cell", "v_rest", "dt", "refrac_counts", "spikes"}
        if not relax:
            used.discard("thresh_center")
        tensors = {name: buffers[name] for name in _SCALAR_SLOTS if name in used}
        plan = _Plan(pointers, list(tensors.values()), None)
        code = _DTYPE_CODES.get(dtype)
        per_cell = [t for name, t in tensors.items() if name != "thresh_center"]
        if code is None or not (
            all(_fits(t, dtype, n) for t in per_cell)
            and _fits(v_cell, dtype, n)
            and _fits(buffers["trace"], dtype, n)
            and _fits(thresh.detach(), dtype, n)
            and _fits(buffers["v_rest"], dtype, 1)
            and _fits(buffers["dt"], dtype, 1)
            and _fits(center, dtype, center.numel())
            and (not relax or center.numel() in (1, n))
            and (not relax or center.numel() == 1 or center.shape == v_cell.shape)
            and _fits(buffers["refrac_counts"], torch.int32, n)
            and _fits(buffers["spikes"], torch.bool, n)
        ):
            return plan  # e.g. a threshold centre that only broadcasts: eager code
        linear = neuron.update_type == "linear"
        if kind == "if":
            model = _MODEL_IF
        else:
            model = _MODEL_LIF_LINEAR if linear else _MODEL_LIF_EXPONENTIAL
        thresh_mode = (
            (_UPDATE_LINEAR if linear else _UPDATE_EXPONENTIAL) if adaptive else _THRESH_FIXED
        )
        rows = v_cell.shape[0]
        flags = (
            model,
            _UPDATE_LINEAR if linear else _UPDATE_EXPONENTIAL,
            thresh_mode,
            int(relax),
            neuron.refrac_steps,
        )
        plan.static = (dtype, code, v_cell.shape, rows, n // rows, flags, int(center.numel() == 1))
        values = {name: _uniform_value(t) for name, t in tensors.items()}
        if None not in values.values():
            plan.use_scalars([values.get(name, 0.0) for name in _SCALAR_SLOTS], dtype)
        return plan

    plan = _plan(neuron, pointers, build)
    if plan is None or current.dtype != plan.static[0] or not current.is_cpu:
        return None
    dtype, code, shape, rows, cols, flags, center_is_scalar = plan.static
    if current.requires_grad or current.shape != shape:
        return None
    fired = torch.empty(shape, dtype=torch.bool)
    current = current.reshape(rows, cols)  # a view whenever the layout allows
    row_stride, col_stride = current.stride()
    v_cell, v_rest, alpha_v, tau_v, dt, counts, spikes, trace = pointers[:8]
    alpha_t, tau_t, alpha_thresh, tau_thresh, center, thresh_pointer, _ = pointers[8:]
    _extension.neuron_step(
        rows,
        cols,
        code,
        current.data_ptr(),
        row_stride,
        col_stride,
        *flags,
        v_cell,
        thresh_pointer,
        v_rest,
        alpha_v,
        tau_v,
        dt,
        counts,
        spikes,
        fired.data_ptr(),
        trace,
        alpha_t,
        tau_t,
        alpha_thresh,
        tau_thresh,
        center,
        center_is_scalar,
        plan.uniform,
        plan.scalars_pointer,
    )
    return fired


def stack_terms(p: Tensor, q: Tensor, terms: Sequence[tuple]) -> bool:
    """Fill the stacked factors of a learning rule's matrix product (Linear layers).

    :param p: ``(T, B, 1, O)`` contiguous scratch; ``p[t] = c_t · post_t``.
    :param q: ``(T, B, 1, I)`` contiguous scratch; ``q[t] = pre_t``.
    :param terms: ``T`` tuples ``(pre, post, c)``: ``pre`` ``(B, I)`` and ``post`` ``(B, O)``
        contiguous, bool or of ``p``'s dtype; ``c`` a number.
    :returns: False (nothing done) when the kernel does not apply.
    """
    code = _DTYPE_CODES.get(p.dtype)
    n_terms, rows, _, n_post = p.shape
    n_pre = q.shape[-1]
    if code is None or not (
        _fits(p, p.dtype, n_terms * rows * n_post) and _fits(q, p.dtype, n_terms * rows * n_pre)
    ):
        return False
    arguments = [n_terms, rows, n_post, n_pre, code, p.data_ptr(), q.data_ptr()]
    for pre, post, coef in terms:
        pre_is_bool = _spike_input(pre, p.dtype, rows * n_pre)
        post_is_bool = _spike_input(post, p.dtype, rows * n_post)
        if pre_is_bool is None or post_is_bool is None:
            return False
        arguments += [pre.data_ptr(), pre_is_bool, post.data_ptr(), post_is_bool, float(coef)]
    _extension.stack_terms(*arguments)
    return True
