"""Pure update equations of the neuron models (no state, no modules).

Every function updates its first argument **in place** and returns it, so that modules can keep
stable buffer identities (code holding a reference to a buffer sees live values). All arguments
are tensors broadcastable to the first argument, or Python numbers. Times (``dt``, ``tau_*``) are
in milliseconds; ``*_decay`` arguments are dimensionless factors in [0, 1].

``refrac_counts`` holds the number of remaining refractory **steps** per cell (an integer
tensor); a cell integrates input only where its count is zero. ``None`` means "no cell is
refractory" and skips the masking, which is what neurons without a refractory period use.
"""

from typing import NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
import torch.utils._python_dispatch
from torch import Tensor

Scalar = Union[float, Tensor]

__all__ = [
    "exponential_trace_update",
    "linear_trace_update",
    "exponential_thresh_update",
    "linear_thresh_update",
    "if_voltage_update",
    "lif_linear_voltage_update",
    "lif_exponential_voltage_update",
    "fede_voltage_update",
    "REFRAC_MAX_STEPS",
    "refractory_steps",
    "input_step",
    "if_step",
    "lif_step",
    "adaptive_lif_step",
    "fede_step",
    "linear_step",
    "pairwise_sum",
    "trace_sum",
    "InputPair",
    "fold_pair",
    "izhikevich_voltage_update",
    "izhikevich_reset",
    "izhikevich_step",
    "cuba_lif_voltage_update",
    "cuba_lif_step",
]

#: The longest refractory period, in steps (``duration_refrac / dt`` is clamped to it).
REFRAC_MAX_STEPS = 2**29


def exponential_trace_update(
    trace: Tensor, x: Tensor, alpha_t: Scalar, tau_t: Scalar, dt: Scalar
) -> Tensor:
    r"""Euler step of an exponentially decaying trace driven by spikes.

    :math:`x \leftarrow x + \frac{\Delta t}{\tau_t}(-x + \alpha_t s)`

    :param trace: trace to update in place, any shape.
    :param x: spikes (or graded input) broadcastable to ``trace``; bool is cast to the trace dtype.
    :param alpha_t: increment per spike (dimensionless).
    :param tau_t: time constant in ms.
    :param dt: time step in ms.
    :returns: ``trace``, updated in place.
    """
    x = x.to(trace.dtype)
    trace.add_((dt / tau_t) * (alpha_t * x - trace))
    return trace


def linear_trace_update(
    trace: Tensor, x: Tensor, alpha_t: Scalar, trace_decay: Scalar, dt: Optional[Scalar] = None
) -> Tensor:
    r"""Multiplicative decay of a trace plus a jump per spike.

    :math:`x \leftarrow \lambda_t x + \alpha_t s`

    :param trace: trace to update in place, any shape.
    :param x: spikes broadcastable to ``trace``; bool is cast to the trace dtype.
    :param alpha_t: increment per spike.
    :param trace_decay: decay factor per step, in [0, 1].
    :param dt: unused (kept for PySNN's signature).
    :returns: ``trace``, updated in place.
    """
    x = x.to(trace.dtype)
    trace.mul_(trace_decay)
    if isinstance(alpha_t, Tensor):
        trace.addcmul_(alpha_t, x)
    else:
        trace.add_(x, alpha=alpha_t)
    return trace


def exponential_thresh_update(
    thresh: Tensor, x: Tensor, alpha_thresh: Scalar, tau_thresh: Scalar, dt: Scalar
) -> Tensor:
    r"""Euler step of an adaptive threshold relaxing towards zero.

    :math:`\theta \leftarrow \theta + \frac{\Delta t}{\tau_\theta}(-\theta + \alpha_\theta s)`

    Same equation as :func:`exponential_trace_update`; ``tau_thresh`` and ``dt`` in ms.
    """
    return exponential_trace_update(thresh, x, alpha_thresh, tau_thresh, dt)


def linear_thresh_update(
    thresh: Tensor,
    x: Tensor,
    alpha_thresh: Scalar,
    thresh_decay: Scalar,
    dt: Optional[Scalar] = None,
) -> Tensor:
    r"""Multiplicative decay of an adaptive threshold plus a jump per spike.

    :math:`\theta \leftarrow \lambda_\theta \theta + \alpha_\theta s`

    Same equation as :func:`linear_trace_update`; ``thresh_decay`` in [0, 1].
    """
    return linear_trace_update(thresh, x, alpha_thresh, thresh_decay, dt)


def _integrating(v_cur: Tensor, refrac_counts: Optional[Tensor]) -> Union[float, Tensor]:
    """1 where a cell integrates input (count zero), 0 where refractory, in the voltage dtype."""
    if refrac_counts is None:
        return 1.0
    return (refrac_counts == 0).to(v_cur.dtype)


def if_voltage_update(
    v_cur: Tensor, v_in: Tensor, alpha: Scalar, refrac_counts: Optional[Tensor]
) -> Tensor:
    r"""Integrate-and-fire: add the (folded) input where the cell is not refractory.

    :math:`v \leftarrow v + [r = 0]\,\alpha_v I`

    :param v_cur: membrane voltage, updated in place, shape ``cells_shape``.
    :param v_in: folded input current, broadcastable to ``v_cur``.
    :param alpha: input gain.
    :param refrac_counts: remaining refractory steps per cell, or ``None``.
    :returns: ``v_cur``.
    """
    v_cur.add_(_integrating(v_cur, refrac_counts) * alpha * v_in)
    return v_cur


def lif_linear_voltage_update(
    v_cur: Tensor,
    v_rest: Scalar,
    v_in: Tensor,
    alpha_v: Scalar,
    v_decay: Scalar,
    dt: Optional[Scalar],
    refrac_counts: Optional[Tensor],
) -> Tensor:
    r"""Leaky integrate-and-fire with a multiplicative decay towards rest.

    :math:`v \leftarrow v_{rest} + [r = 0]\big((v - v_{rest})\lambda_v + \alpha_v I\big)`

    Refractory cells are set to exactly ``v_rest`` (PySNN's behaviour).

    :param v_cur: membrane voltage, updated in place.
    :param v_rest: resting voltage.
    :param v_in: folded input, broadcastable to ``v_cur``.
    :param alpha_v: input gain.
    :param v_decay: decay factor per step, in [0, 1].
    :param dt: unused (kept for PySNN's signature).
    :param refrac_counts: remaining refractory steps per cell, or ``None``.
    :returns: ``v_cur``.
    """
    v_cur.sub_(v_rest).mul_(v_decay)
    if isinstance(alpha_v, Tensor):
        v_cur.addcmul_(alpha_v, v_in)
    else:
        v_cur.add_(v_in, alpha=alpha_v)
    if refrac_counts is not None:
        v_cur.masked_fill_(refrac_counts != 0, 0.0)
    v_cur.add_(v_rest)
    return v_cur


def lif_exponential_voltage_update(
    v_cur: Tensor,
    v_rest: Scalar,
    v_in: Tensor,
    alpha_v: Scalar,
    tau_v: Scalar,
    dt: Scalar,
    refrac_counts: Optional[Tensor],
) -> Tensor:
    r"""Leaky integrate-and-fire, forward-Euler step of :math:`\tau_v \dot v = -(v - v_{rest}) + \alpha_v I`.

    :math:`v \leftarrow v + [r = 0]\frac{\Delta t}{\tau_v}\big(-(v - v_{rest}) + \alpha_v I\big)`

    Refractory cells keep their voltage.

    :param tau_v: membrane time constant in ms.
    :param dt: time step in ms.
    :returns: ``v_cur``, updated in place.
    """
    drive = (alpha_v * v_in - (v_cur - v_rest)) * (dt / tau_v)
    v_cur.add_(_integrating(v_cur, refrac_counts) * drive)
    return v_cur


def fede_voltage_update(
    v_cur: Tensor,
    v_rest: Scalar,
    v_in: Tensor,
    alpha_v: Scalar,
    tau_v: Scalar,
    dt: Scalar,
    refrac_counts: Optional[Tensor],
    pre_trace: Tensor,
) -> Tensor:
    r"""Voltage update of Paredes-Vallés et al.'s neuron: input minus presynaptic trace.

    :math:`v \leftarrow v + [r = 0]\frac{\Delta t}{\tau_v}\big(-(v - v_{rest}) + \alpha_v \sum_R (a - x)\big)`

    where :math:`a` are the weighted activations and :math:`x` the *unweighted* presynaptic
    traces, both with the fan-in axis R last (shape ``cells_shape + (R,)``); R is summed here.

    :returns: ``v_cur``, updated in place.
    """
    forcing = (v_in - pre_trace).sum(-1)
    return lif_exponential_voltage_update(v_cur, v_rest, forcing, alpha_v, tau_v, dt, refrac_counts)


# -- whole steps ------------------------------------------------------------------------------
# One function per model: the module calls it with its buffers, and pysnn.native has a C twin
# with the same arguments and results. State tensors are updated in place; every parameter is
# read at every call (nothing is cached), so any edit of a buffer takes effect on the next step.


def refractory_steps(duration_refrac: Tensor, dt: Tensor) -> Tensor:
    r"""The refractory period in steps: :math:`\mathrm{round}(d_{refrac} / \Delta t)`.

    Rounded half to even; a NaN gives 0 and the result is clamped to
    ``[0, REFRAC_MAX_STEPS]``, so an edited ``duration_refrac`` or ``dt`` can never make the
    counters overflow.

    :param duration_refrac: refractory period in ms, a 0-d tensor.
    :param dt: time step in ms, a 0-d tensor.
    :returns: a 0-d int32 tensor on the same device (no host synchronisation).
    """
    # float64 holds every float16/float32 quotient exactly (and float16 cannot hold the bound)
    steps = torch.round(duration_refrac / dt).to(torch.float64)
    steps = torch.nan_to_num(steps, nan=0.0).clamp_(0, REFRAC_MAX_STEPS)
    return steps.to(torch.int32)


def _trace_step(trace: Tensor, s: Tensor, alpha: Tensor, tau: Tensor, dt: Tensor, linear: bool):
    if linear:
        linear_trace_update(trace, s, alpha, tau, dt)
    else:
        exponential_trace_update(trace, s, alpha, tau, dt)


def _lif_voltage(v_cell, v_rest, x, alpha_v, tau_v, dt, refrac_counts, linear: bool) -> None:
    if linear:
        lif_linear_voltage_update(v_cell, v_rest, x, alpha_v, tau_v, dt, refrac_counts)
    else:
        lif_exponential_voltage_update(v_cell, v_rest, x, alpha_v, tau_v, dt, refrac_counts)


def _fire(v_cell: Tensor, thresh: Tensor, spikes: Tensor) -> Tuple[Tensor, Tensor]:
    """Spikes where ``v_cell >= thresh``: stored in ``spikes``; returns a copy and its floats."""
    torch.ge(v_cell, thresh, out=spikes)
    return spikes.clone(), spikes.to(v_cell.dtype)


def _refractory_reset(
    v_cell: Tensor,
    spikes: Tensor,
    refrac_counts: Tensor,
    v_rest: Tensor,
    dt: Tensor,
    duration_refrac: Tensor,
) -> None:
    """Counters count down to zero, grow by the period where a cell spiked; spiking cells reset."""
    # clamp before subtracting: a count edited to INT32_MIN must not wrap to INT32_MAX
    refrac_counts.clamp_(min=1).sub_(1)
    refrac_counts.add_(spikes * refractory_steps(duration_refrac, dt))
    # torch.where keeps v_rest on the device (masked_fill_ with a tensor value calls .item())
    torch.where(spikes, v_rest, v_cell, out=v_cell)


def input_step(
    x: Tensor,
    trace: Tensor,
    spikes: Tensor,
    alpha_t: Tensor,
    tau_t: Tensor,
    dt: Tensor,
    update_type: str,
) -> Tensor:
    r"""One step of :class:`~pysnn.neuron.Input`: the trace follows the input *as given*.

    ``"linear"``: :math:`x \leftarrow \lambda_t x + \alpha_t s`; ``"exponential"``:
    :math:`x \leftarrow x + \frac{\Delta t}{\tau_t}(-x + \alpha_t s)`; then
    ``spikes = s != 0``.

    :param x: input of the cells' shape (bool spikes or graded values).
    :param trace: presynaptic trace, updated in place.
    :param spikes: bool buffer, overwritten.
    :returns: ``trace``.
    """
    _trace_step(trace, x.to(trace.dtype), alpha_t, tau_t, dt, update_type == "linear")
    spikes.copy_(x)
    return trace


def if_step(
    x: Tensor,
    v_cell: Tensor,
    thresh: Tensor,
    spikes: Tensor,
    trace: Tensor,
    refrac_counts: Tensor,
    v_rest: Tensor,
    alpha_v: Tensor,
    alpha_t: Tensor,
    tau_t: Tensor,
    dt: Tensor,
    duration_refrac: Tensor,
    update_type: str,
) -> Tensor:
    r"""One step of :class:`~pysnn.neuron.IFNeuron`.

    :math:`v \leftarrow v + [r = 0]\,\alpha_v I`; spikes :math:`s = [v \ge \theta]`; the
    trace update of ``update_type`` from :math:`s`; counters
    :math:`r \leftarrow \max(r - 1, 0) + s \cdot n_{refrac}` with :math:`n_{refrac}` from
    :func:`refractory_steps`; :math:`v \leftarrow v_{rest}` where :math:`s`.

    :param x: folded input current of the cells' shape.
    :param v_cell, thresh, spikes, trace, refrac_counts: state, updated in place.
    :returns: a new bool tensor with this step's spikes.
    """
    if_voltage_update(v_cell, x, alpha_v, refrac_counts)
    fired, s = _fire(v_cell, thresh, spikes)
    _trace_step(trace, s, alpha_t, tau_t, dt, update_type == "linear")
    _refractory_reset(v_cell, fired, refrac_counts, v_rest, dt, duration_refrac)
    return fired


def lif_step(
    x: Tensor,
    v_cell: Tensor,
    thresh: Tensor,
    spikes: Tensor,
    trace: Tensor,
    refrac_counts: Tensor,
    v_rest: Tensor,
    alpha_v: Tensor,
    tau_v: Tensor,
    alpha_t: Tensor,
    tau_t: Tensor,
    dt: Tensor,
    duration_refrac: Tensor,
    update_type: str,
) -> Tensor:
    r"""One step of :class:`~pysnn.neuron.LIFNeuron`: the voltage update of ``update_type``
    (:func:`lif_linear_voltage_update` or :func:`lif_exponential_voltage_update`), then as
    :func:`if_step`.

    :returns: a new bool tensor with this step's spikes.
    """
    _lif_voltage(v_cell, v_rest, x, alpha_v, tau_v, dt, refrac_counts, update_type == "linear")
    fired, s = _fire(v_cell, thresh, spikes)
    _trace_step(trace, s, alpha_t, tau_t, dt, update_type == "linear")
    _refractory_reset(v_cell, fired, refrac_counts, v_rest, dt, duration_refrac)
    return fired


def adaptive_lif_step(
    x: Tensor,
    v_cell: Tensor,
    thresh: Tensor,
    spikes: Tensor,
    trace: Tensor,
    refrac_counts: Tensor,
    v_rest: Tensor,
    alpha_v: Tensor,
    tau_v: Tensor,
    alpha_t: Tensor,
    tau_t: Tensor,
    dt: Tensor,
    duration_refrac: Tensor,
    update_type: str,
    alpha_thresh: Tensor,
    tau_thresh: Tensor,
    thresh_center: Tensor,
    relax_to_center: bool,
) -> Tensor:
    r"""One step of :class:`~pysnn.neuron.AdaptiveLIFNeuron`: as :func:`lif_step`, with the
    threshold updated from the spikes after the trace, before the refractory reset:
    :math:`\theta \leftarrow \theta_c + f(\theta - \theta_c)` where :math:`f` is the trace
    update of ``update_type`` with ``alpha_thresh``/``tau_thresh`` and :math:`\theta_c` is
    ``thresh_center`` with ``relax_to_center``, else 0.

    :returns: a new bool tensor with this step's spikes.
    """
    linear = update_type == "linear"
    _lif_voltage(v_cell, v_rest, x, alpha_v, tau_v, dt, refrac_counts, linear)
    fired, s = _fire(v_cell, thresh, spikes)
    _trace_step(trace, s, alpha_t, tau_t, dt, linear)
    if relax_to_center:
        thresh.sub_(thresh_center)
    _trace_step(thresh, s, alpha_thresh, tau_thresh, dt, linear)
    if relax_to_center:
        thresh.add_(thresh_center)
    _refractory_reset(v_cell, fired, refrac_counts, v_rest, dt, duration_refrac)
    return fired


def fede_step(
    x: Tensor,
    pre_trace: Tensor,
    v_cell: Tensor,
    thresh: Tensor,
    spikes: Tensor,
    trace: Tensor,
    refrac_counts: Tensor,
    v_rest: Tensor,
    alpha_v: Tensor,
    tau_v: Tensor,
    alpha_t: Tensor,
    tau_t: Tensor,
    dt: Tensor,
    duration_refrac: Tensor,
) -> Tensor:
    r"""One step of :class:`~pysnn.neuron.FedeNeuron`: :func:`fede_voltage_update` (the fan-in
    axis of ``x`` and ``pre_trace`` summed), then as :func:`if_step` with exponential traces.

    :returns: a new bool tensor with this step's spikes.
    """
    fede_voltage_update(v_cell, v_rest, x, alpha_v, tau_v, dt, refrac_counts, pre_trace)
    fired, s = _fire(v_cell, thresh, spikes)
    _trace_step(trace, s, alpha_t, tau_t, dt, False)
    _refractory_reset(v_cell, fired, refrac_counts, v_rest, dt, duration_refrac)
    return fired


def linear_step(
    x: Tensor,
    trace_in: Tensor,
    weight: Tensor,
    pre_trace: Tensor,
    pre_spikes: Tensor,
    spike_queue: Tensor,
    cursor: int,
    reduction: str,
    out: Union[Tensor, "SumBuffers"],
) -> Tuple[Tensor, Tensor]:
    r"""One step of :class:`~pysnn.connection.Linear` with one delay for every synapse.

    ``pre_trace = trace_in``; ``x`` enters the delay line (``spike_queue``, ``d`` slots, the
    one at ``cursor`` holds the input of ``d`` steps ago) and what leaves it, :math:`s`, is
    stored in ``pre_spikes``. ``"none"``: ``activation[b, 0, o, i] = W[o, i] s[b, i]``,
    written into ``out`` ``(B, O, I)``, and the trace is ``pre_trace`` broadcast to
    ``(B, 1, O, I)``. ``"sum"``: :math:`W s^T` written into ``out.product`` ``(O, B)`` and
    the trace sum over the inputs into ``out.trace_sum`` ``(B, 1, 1)``, returned as the
    ``(B, 1, O, 1)`` views ``out.activation`` and ``out.trace`` (see :class:`SumBuffers`).
    Either way the outputs are views of buffers that the next step overwrites.

    :param x: presynaptic spikes ``(B, 1, I)``, bool or of the weight's dtype.
    :param trace_in: presynaptic traces ``(B, 1, I)``.
    :returns: ``(activation, trace)``.
    """
    batch, n_out = pre_trace.shape[0], weight.shape[0]
    pre_trace.copy_(trace_in)
    if spike_queue.shape[0] == 0:
        # a fresh (aligned) copy on the CPU, as the C twin's: the BLAS may round a mat-vec
        # differently for an operand at another alignment (MKL does)
        leaving = x.to(pre_trace.dtype, copy=x.is_cpu)
    else:
        slot = spike_queue[cursor]
        leaving = slot.clone()
        slot.copy_(x)
    pre_spikes.copy_(leaving)
    if reduction == "none":
        activation = torch.mul(leaving, weight, out=out)
        shape = (batch, 1, n_out, pre_trace.shape[-1])
        return activation.view(shape), pre_trace.unsqueeze(2).expand(shape)
    flat = leaving.view(batch, -1)
    if flat.is_cpu and weight.is_cpu:
        sum_product(weight, flat, out.product)
    else:  # W @ sᵀ reads the (O, I) weight contiguously: faster than F.linear's s @ Wᵀ
        torch.mm(weight, flat.t(), out=out.product)
    return _sum_outputs(pre_trace, out)


def fold_pair(first: Tensor, second: Tensor, out: Tensor) -> Tensor:
    """Fold two inputs of a neuron's cells as ``torch.cat([first, second], -1).sum(-1)`` does,
    without the concatenated copy: ``(first + second) + 0`` (the sum of the two starts from
    +0, which turns only a -0 result into +0), written into ``out``.

    :param first: ``cells_shape + (1,)`` (e.g. a ``reduction="sum"`` connection's activation).
    :param second: the same shape and dtype.
    :param out: ``cells_shape``, the result.
    :returns: ``out``.
    """
    torch.add(first.squeeze(-1), second.squeeze(-1), out=out)
    return out.add_(0.0)


class InputPair(NamedTuple):
    """Two inputs of a neuron's whole step (e.g. excitation and inhibition) that the step folds
    with :func:`fold_pair` itself: the C twin of the neuron reads both where they are, and the
    PyTorch path folds them into ``out`` first (:func:`folded`)."""

    first: Tensor
    second: Tensor
    out: Tensor


def folded(x: Union[Tensor, InputPair]) -> Tensor:
    """``x``, or the fold (:func:`fold_pair`) of an :class:`InputPair`."""
    if type(x) is InputPair:
        return fold_pair(x.first, x.second, x.out)
    return x


class SumBuffers(NamedTuple):
    """Output buffers of ``Linear(reduction="sum")``, kept by the module and reused each step.

    Made by :func:`sum_buffers`; ``activation`` and ``trace`` are ``(B, 1, O, 1)`` views of
    ``product`` ``(O, B)`` and ``trace_sum`` ``(B, 1, 1)``, made once.
    """

    product: Tensor
    trace_sum: Tensor
    activation: Tensor
    trace: Tensor


def sum_buffers(n_out: int, batch: int, dtype: torch.dtype, device=None) -> SumBuffers:
    """New :class:`SumBuffers` for ``O = n_out`` outputs and batch ``B``."""
    product = torch.empty(n_out, batch, dtype=dtype, device=device)
    trace_sum = torch.empty(batch, 1, 1, dtype=dtype, device=device)
    activation = product.t().unsqueeze(1).unsqueeze(-1)
    return SumBuffers(product, trace_sum, activation, trace_sum.expand(-1, -1, n_out).unsqueeze(-1))


def pairwise_sum(x: Tensor) -> Tensor:
    """Sum over the last axis by a fixed tree: padded with zeros to a power of two ``P``, then
    halved ``log2(P)`` times, element ``j`` taking element ``j + P/2``.

    Every addition is an elementwise IEEE addition in ``x``'s dtype in an order fixed here, so
    the C kernel of :func:`pysnn.native.linear_step` reproduces it bit for bit (a reduction
    like ``Tensor.sum`` leaves its order to the implementation). Pairwise summation is also
    more accurate than a running sum.

    :param x: any shape ``(..., n)``.
    :returns: ``(..., 1)``.
    """
    n = x.shape[-1]
    length = 1 << (n - 1).bit_length()
    work = x.new_zeros(x.shape[:-1] + (length,))
    work[..., :n] = x
    half = length // 2
    while half >= 1:
        work[..., :half].add_(work[..., half : 2 * half])
        half //= 2
    return work[..., :1]


def trace_sum(pre_trace: Tensor) -> Tensor:
    """A ``reduction="sum"`` connection's trace sum over its last (input) axis, kept as size 1.

    On the CPU, where the C twin runs, it is :func:`pairwise_sum`, which the kernel reproduces
    bit for bit; elsewhere (CUDA, where only PyTorch runs) it is ``Tensor.sum``, one kernel
    instead of ``log2(I)``.
    """
    if pre_trace.is_cpu:
        return pairwise_sum(pre_trace)
    return pre_trace.sum(-1, keepdim=True)


def _sum_outputs(pre_trace: Tensor, out: SumBuffers) -> Tuple[Tensor, Tensor]:
    """Take the trace sum (:func:`trace_sum`) and return the outputs' views."""
    out.trace_sum.copy_(trace_sum(pre_trace))
    return out.activation, out.trace


#: The spike-driven product of a ``reduction="sum"`` Linear runs where every sample has at most
#: this many nonzero inputs (a power of two: the length of its summation tree) ...
SPIKE_PRODUCT_MAX_SPIKES = 64
#: ... and all samples together at most ``max(I / SPIKE_PRODUCT_LINE,
#: B·I / SPIKE_PRODUCT_WORK)``: at small batches the dense product is one pass over the
#: weight, and a gathered weight costs about as much as 12 weights streamed ...
SPIKE_PRODUCT_LINE = 12
#: ... and at large batches its ``B·I`` multiply-adds per output weigh more, of which a
#: gathered weight costs about 16. ``benchmarks/event_crossover.py --spike-product`` measures
#: both (a 2-core AMD EPYC, session 15: one ``Linear(784 → 400)`` step at batch 16 and 32 spikes
#: per sample 0.083 ms spike-driven against 0.116 ms with the BLAS; the two break even near
#: 56 spikes per sample at batch 16, 50 at batch 32, and beyond 64 at batch 1).
SPIKE_PRODUCT_WORK = 16


def _traced() -> bool:
    """Whether the ops run under a tracer (``torch.compile``, or a Python dispatch mode such as
    ``make_fx`` or :func:`pysnn.cuda_graph.capture_obstacles`), which must see no branch on a
    tensor's value."""
    if torch.compiler.is_compiling():
        return True
    current_mode = getattr(torch.utils._python_dispatch, "_get_current_dispatch_mode", None)
    return current_mode is not None and current_mode() is not None


def _spike_product_applies(counts: Tensor, n_in: int) -> Tensor:
    """0-d bool: every sample's count of nonzero inputs ``counts`` ``(B,)`` is within
    :data:`SPIKE_PRODUCT_MAX_SPIKES` and their total within :func:`_spike_product_total`."""
    return (counts.max() <= SPIKE_PRODUCT_MAX_SPIKES) & (
        counts.sum() <= _spike_product_total(counts.shape[0], n_in)
    )


def _spike_product_total(batch: int, n_in: int) -> int:
    """The most nonzero inputs, all ``batch`` samples together, that the spike-driven product
    takes: ``max(I / SPIKE_PRODUCT_LINE, B·I / SPIKE_PRODUCT_WORK)`` (rounded down)."""
    return max(n_in // SPIKE_PRODUCT_LINE, batch * n_in // SPIKE_PRODUCT_WORK)


def _spike_tree(
    weight: Tensor, spikes: Tensor, nonzero: Tensor, counts: Tensor, most: Optional[int] = None
) -> Tensor:
    """``(O, B)``: for each sample (row of ``spikes``), the pairwise tree over
    :data:`SPIKE_PRODUCT_MAX_SPIKES` values, ``W[o, i]·s[b, i]`` for its nonzero inputs in
    ascending order, then +0 (a NaN weight of a silent input stays out).

    ``most`` (the largest count, known on the host) shortens the tree to the first power of two
    ``span`` at least that: the tree over the full length pads with +0, and ``x + (+0)`` is
    ``x`` but for ``x = -0``, so the tree over ``span`` values, then +0 where the full tree had
    padding, is the same number (as the C twin computes it)."""
    length = SPIKE_PRODUCT_MAX_SPIKES
    span = length if most is None else 1 << max(int(most) - 1, 0).bit_length()
    width = min(span, spikes.shape[1])
    # each sample's nonzero inputs first, in ascending order (a stable sort of 0 before 1)
    order = torch.argsort(nonzero.logical_not(), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=spikes.device) < counts.view(-1, 1)  # (B, width)
    columns = torch.index_select(weight, 1, order.reshape(-1)).view(-1, *order.shape)
    terms = torch.where(valid, columns * spikes.gather(1, order), 0.0)  # (O, B, width)
    if width < span:
        padding = terms.new_zeros(terms.shape[:2] + (span - width,))
        terms = torch.cat([terms, padding], 2)
    # the pairwise tree over the span, as pairwise_sum
    half = span // 2
    while half >= 1:
        terms[..., :half].add_(terms[..., half : 2 * half])
        half //= 2
    tree = terms[..., 0]
    if span < length:  # every sample had padding in the full tree
        tree = tree + 0.0
    return tree


def sum_product(weight: Tensor, spikes: Tensor, product: Tensor) -> Tensor:
    r"""``product = W @ spikesᵀ`` of a ``reduction="sum"`` Linear on the CPU: spike-driven where
    there are few spikes, ``torch.mm`` elsewhere.

    :func:`linear_step` calls it at every batch size on the CPU. Where every sample has at most
    :data:`SPIKE_PRODUCT_MAX_SPIKES` nonzero inputs and all samples together at most
    ``max(I / SPIKE_PRODUCT_LINE, B·I / SPIKE_PRODUCT_WORK)``, ``product[o, b]`` is
    :func:`pairwise_sum` over :data:`SPIKE_PRODUCT_MAX_SPIKES` values: :math:`W_{oi} s_{bi}`
    for the nonzero inputs :math:`i` of sample ``b`` in ascending order, then +0 (+0 for a
    silent sample). That is work
    in proportion to the spikes (a few columns of ``W``) instead of a pass over all of ``W``, in
    an order fixed here, so that the C twin (:func:`pysnn.native.linear_step`), which takes only
    that work, gives the same numbers. Silent inputs then contribute nothing, not ``W·0`` (a NaN
    or inf weight of a silent input does not make the output NaN). Elsewhere ``product`` is
    ``torch.mm``'s.

    The tensors are on the CPU (only there does :func:`linear_step` call it), so the spike
    counts are read in place through NumPy, which is no device synchronisation: the function
    takes one form or the other, and the tree only over the samples that have spikes. Traced
    (by ``torch.compile``, which cannot branch on a tensor's value without a graph break, or
    under a dispatch mode such as :func:`pysnn.cuda_graph.capture_obstacles`), it computes both
    forms and selects.

    :param weight: ``(O, I)``.
    :param spikes: ``(B, I)`` presynaptic spikes (0/1, or graded values) of the weight's dtype.
    :param product: ``(O, B)`` output.
    :returns: ``product``.
    """
    if _traced():
        nonzero = spikes != 0
        counts = nonzero.sum(1)  # (B,)
        sparse = _spike_product_applies(counts, spikes.shape[1])
        tree = _spike_tree(weight, spikes, nonzero, counts)
        return torch.where(sparse, tree, torch.mm(weight, spikes.t()), out=product)
    host_counts = _host_spike_counts(spikes)
    if host_counts is None or not (
        host_counts.max(initial=0) <= SPIKE_PRODUCT_MAX_SPIKES
        and host_counts.sum() <= _spike_product_total(*spikes.shape)
    ):
        return torch.mm(weight, spikes.t(), out=product)
    product.zero_()  # the tree over sixteen +0 for a silent sample
    active_samples = np.flatnonzero(host_counts)
    if active_samples.size:
        active = torch.from_numpy(active_samples)
        active_spikes = spikes[active]
        active_counts = host_counts[active_samples]
        tree = _spike_tree(
            weight,
            active_spikes,
            active_spikes != 0,
            torch.from_numpy(active_counts),
            int(active_counts.max()),
        )
        product.index_copy_(1, active, tree)
    return product


def _host_spike_counts(spikes: Tensor) -> Optional[np.ndarray]:
    """Each sample's count of nonzero inputs of the CPU ``spikes`` ``(B, I)``, read in place
    through NumPy (whose ``count_nonzero`` is ``!= 0``: -0 is zero, NaN is not, as in the C
    twin), or ``None`` as soon as the first sample alone rules the spike-driven form out, which
    spares dense batches the count over every sample."""
    if spikes.dtype not in (torch.float32, torch.float64):
        return (spikes != 0).sum(1).numpy()
    host_spikes = spikes.numpy()
    if host_spikes.shape[0] and np.count_nonzero(host_spikes[0]) > SPIKE_PRODUCT_MAX_SPIKES:
        return None
    return np.count_nonzero(host_spikes, axis=1)


# -- models without a C twin (PyTorch only) ---------------------------------------------------


def izhikevich_voltage_update(
    v_cell: Tensor, u_cell: Tensor, v_in: Tensor, a: Scalar, b: Scalar, dt: Scalar
) -> Tensor:
    r"""Forward-Euler step of Izhikevich's (2003) model, both variables from the old state.

    :math:`v \leftarrow v + \Delta t\,(0.04 v^2 + 5 v + 140 - u + I)` and
    :math:`u \leftarrow u + \Delta t\,a\,(b v - u)` with the **old** :math:`v` and :math:`u`
    on both right-hand sides (a simultaneous update); :math:`v` in mV, :math:`t` in ms.

    :param v_cell: membrane voltage in mV, updated in place, shape ``cells_shape``.
    :param u_cell: recovery variable (mV), updated in place, same shape.
    :param v_in: folded input current :math:`I` (mV/ms), broadcastable to ``v_cell``.
    :param a: time scale of the recovery variable (1/ms).
    :param b: sensitivity of the recovery variable to the voltage (dimensionless).
    :param dt: time step in ms.
    :returns: ``v_cell``.
    """
    du = (dt * a) * (b * v_cell - u_cell)
    v_cell.add_(dt * (0.04 * v_cell * v_cell + 5.0 * v_cell + 140.0 - u_cell + v_in))
    u_cell.add_(du)
    return v_cell


def izhikevich_reset(
    v_cell: Tensor, u_cell: Tensor, spikes: Tensor, c: Tensor, d: Tensor
) -> Tensor:
    r"""After-spike reset of Izhikevich's model: :math:`v \leftarrow c`,
    :math:`u \leftarrow u + d` where ``spikes``; other cells unchanged.

    :param v_cell: membrane voltage in mV, updated in place.
    :param u_cell: recovery variable, updated in place.
    :param spikes: bool spikes of the cells' shape.
    :param c: reset voltage in mV (a tensor broadcastable to ``v_cell``).
    :param d: jump of the recovery variable per spike (tensor).
    :returns: ``v_cell``.
    """
    u_cell.add_(spikes.to(u_cell.dtype) * d)
    torch.where(spikes, c, v_cell, out=v_cell)
    return v_cell


def izhikevich_step(
    x: Tensor,
    v_cell: Tensor,
    u_cell: Tensor,
    thresh: Tensor,
    spikes: Tensor,
    trace: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
    alpha_t: Tensor,
    tau_t: Tensor,
    dt: Tensor,
    update_type: str,
) -> Tensor:
    r"""One step of :class:`~pysnn.neuron.IzhikevichNeuron`:
    :func:`izhikevich_voltage_update`; spikes :math:`s = [v \ge v_{peak}]` (``thresh`` holds
    :math:`v_{peak}`); the trace update of ``update_type`` from :math:`s`;
    :func:`izhikevich_reset`. No refractory period.

    :param x: folded input current of the cells' shape.
    :param v_cell, u_cell, thresh, spikes, trace: state, updated in place.
    :returns: a new bool tensor with this step's spikes.
    """
    izhikevich_voltage_update(v_cell, u_cell, x, a, b, dt)
    fired, s = _fire(v_cell, thresh, spikes)
    _trace_step(trace, s, alpha_t, tau_t, dt, update_type == "linear")
    izhikevich_reset(v_cell, u_cell, fired, c, d)
    return fired


def cuba_lif_voltage_update(
    v_cur: Tensor,
    i_syn: Tensor,
    v_rest: Scalar,
    v_in: Tensor,
    alpha_v: Scalar,
    tau_v: Scalar,
    alpha_i: Scalar,
    tau_i: Scalar,
    dt: Scalar,
    refrac_counts: Optional[Tensor],
    update_type: str,
) -> Tensor:
    r"""Current-based LIF: the input feeds a decaying synaptic current, the **new** current
    drives the voltage.

    ``"linear"`` (``tau_i``, ``tau_v`` decay factors :math:`\lambda_i, \lambda_v \in [0, 1]`):
    :math:`i \leftarrow \lambda_i i + \alpha_i x`, then
    :func:`lif_linear_voltage_update` with input :math:`i`:
    :math:`v \leftarrow v_{rest} + [r = 0]\big(\lambda_v (v - v_{rest}) + \alpha_v i\big)`.

    ``"exponential"`` (time constants in ms), the forward-Euler step of
    :math:`\tau_i \dot i = -i + \alpha_i x` and
    :math:`\tau_v \dot v = (v_{rest} - v) + \alpha_v i`:
    :math:`i \leftarrow i + \frac{\Delta t}{\tau_i}(\alpha_i x - i)`, then
    :func:`lif_exponential_voltage_update` with input :math:`i`:
    :math:`v \leftarrow v + [r = 0]\frac{\Delta t}{\tau_v}\big(\alpha_v i - (v - v_{rest})\big)`.

    The current integrates its input during the refractory period too; only the voltage is
    held (at exactly ``v_rest`` for ``"linear"``, unchanged for ``"exponential"``, as the LIF).

    :param v_cur: membrane voltage, updated in place.
    :param i_syn: synaptic current, updated in place, same shape.
    :param v_in: folded input :math:`x`, broadcastable to ``v_cur``.
    :returns: ``v_cur``.
    """
    linear = update_type == "linear"
    _trace_step(i_syn, v_in, alpha_i, tau_i, dt, linear)
    _lif_voltage(v_cur, v_rest, i_syn, alpha_v, tau_v, dt, refrac_counts, linear)
    return v_cur


def cuba_lif_step(
    x: Tensor,
    v_cell: Tensor,
    thresh: Tensor,
    spikes: Tensor,
    trace: Tensor,
    refrac_counts: Tensor,
    v_rest: Tensor,
    alpha_v: Tensor,
    tau_v: Tensor,
    i_syn: Tensor,
    alpha_i: Tensor,
    tau_i: Tensor,
    alpha_t: Tensor,
    tau_t: Tensor,
    dt: Tensor,
    duration_refrac: Tensor,
    update_type: str,
) -> Tensor:
    r"""One step of :class:`~pysnn.neuron.CubaLIFNeuron`: :func:`cuba_lif_voltage_update`
    (the current first, then the voltage from the new current), then as :func:`if_step`
    (spikes :math:`v \ge \theta`, trace, refractory counters, reset to ``v_rest``; the current
    is not reset).

    :returns: a new bool tensor with this step's spikes.
    """
    cuba_lif_voltage_update(
        v_cell, i_syn, v_rest, x, alpha_v, tau_v, alpha_i, tau_i, dt, refrac_counts, update_type
    )
    fired, s = _fire(v_cell, thresh, spikes)
    _trace_step(trace, s, alpha_t, tau_t, dt, update_type == "linear")
    _refractory_reset(v_cell, fired, refrac_counts, v_rest, dt, duration_refrac)
    return fired
