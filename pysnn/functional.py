"""Pure update equations of the neuron models (no state, no modules).

Every function updates its first argument **in place** and returns it, so that modules can keep
stable buffer identities (code holding a reference to a buffer sees live values). All arguments
are tensors broadcastable to the first argument, or Python numbers. Times (``dt``, ``tau_*``) are
in milliseconds; ``*_decay`` arguments are dimensionless factors in [0, 1].

``refrac_counts`` holds the number of remaining refractory **steps** per cell (an integer
tensor); a cell integrates input only where its count is zero. ``None`` means "no cell is
refractory" and skips the masking, which is what neurons without a refractory period use.
"""

from typing import Optional, Union

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
]


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
