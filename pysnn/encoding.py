r"""Spike encoders: turn non-negative intensities into boolean spike trains with time **last**.

Every encoder returns a ``torch.bool`` tensor of shape ``intensities.shape + (T,)`` on the device
of ``intensities``, where ``T`` is the number of time steps of length ``dt`` (ms) in ``duration``
(ms): ``T = duration / dt``, rounded to the nearest integer when the quotient is within
:math:`10^{-9}` (relative) of one (so ``duration=1, dt=0.1`` gives 10 steps, not 9) and rounded down
otherwise. ``T`` must be at least 1.

* :func:`poisson_encoding` / :class:`PoissonEncoder`: intensities are **firing rates in Hz** (with
  ``dt`` in ms). Each step is an independent Bernoulli trial with spike probability
  :math:`p = f \cdot dt / 1000`, so the expected number of spikes is
  :math:`f \cdot T \cdot dt / 1000` and the empirical rate converges to ``f`` exactly. This is the
  Bernoulli (at most one spike per step) approximation of a Poisson process of rate ``f``;
  ``f · dt / 1000 > 1`` cannot be represented and raises :class:`ValueError`.
* :func:`bernoulli_encoding` / :class:`BernoulliEncoder`: intensities are **spike probabilities per
  step** in [0, 1].
* :func:`latency_encoding` / :class:`LatencyEncoder`: one spike per input at most; stronger inputs
  spike earlier (deterministic time-to-first-spike code).

The random encoders draw from ``generator`` (a :class:`torch.Generator` on the device of the
intensities) when one is given, else from torch's global generator: the same seed gives the same
spikes. Random numbers are drawn in float32 (float64 for float64 intensities), whatever the
floating dtype of the intensities (float16/bfloat16 included).

PySNN 0.1.1 documented a "rate" but used it as a mean inter-spike interval, was biased low at high
rates, allocated on the CPU and accepted only float32 (defect B29); these encoders fix all four.
"""

import math
from typing import Optional

import torch
from torch import Tensor

from pysnn import native
from pysnn.utils import _check_positive_real

__all__ = [
    "poisson_encoding",
    "bernoulli_encoding",
    "latency_encoding",
    "PoissonEncoder",
    "BernoulliEncoder",
    "LatencyEncoder",
]


def _positive(value: float, name: str, owner: str, unit: str = " (ms)") -> float:
    """``value`` as a finite float > 0, else a clear error naming ``name``."""
    return _check_positive_real(value, name, owner, unit=unit)


def _n_steps(duration: float, dt: float, owner: str, names=("duration", "dt")) -> int:
    """Number of steps of length ``dt`` in ``duration`` (both > 0), robust to float rounding.

    ``duration / dt`` within 1e-9 (relative) of an integer counts as that integer; otherwise it is
    rounded down. Raises :class:`ValueError` when fewer than one step fits.
    """
    duration = _positive(duration, names[0], owner)
    dt = _positive(dt, names[1], owner)
    ratio = duration / dt
    nearest = round(ratio)
    steps = nearest if abs(ratio - nearest) <= 1e-9 * max(1.0, ratio) else math.floor(ratio)
    if steps < 1:
        raise ValueError(
            f"{owner}: {names[0]} must be at least one {names[1]} long, "
            f"got {names[0]}={duration:g} and {names[1]}={dt:g}"
        )
    return int(steps)


def _check_intensities(intensities: Tensor, owner: str, name: str = "intensities") -> None:
    """Tensor of a floating dtype, no NaN, no negative value."""
    if not isinstance(intensities, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(intensities).__name__}")
    if not intensities.is_floating_point():
        raise TypeError(
            f"{owner}: {name} must have a floating dtype, got {intensities.dtype} "
            "(convert with .float())"
        )
    if intensities.numel() == 0:
        return
    if bool(torch.isnan(intensities).any()):
        raise ValueError(f"{owner}: {name} must not contain NaN")
    low = float(intensities.min())
    if low < 0:
        raise ValueError(f"{owner}: {name} must be non-negative, got min {low:g}")


def _check_generator(generator: Optional[torch.Generator], device: torch.device, owner: str):
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{owner}: generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    if generator.device.type != device.type:
        raise ValueError(
            f"{owner}: generator must live on the device of intensities ({device.type}), "
            f"got a generator on {generator.device.type}"
        )


def _bernoulli(
    probabilities: Tensor,
    n_steps: int,
    generator: Optional[torch.Generator],
    time_first: bool = False,
) -> Tensor:
    """``probabilities.shape + (n_steps,)`` bool spikes, each True with its probability
    (``(n_steps,) + probabilities.shape`` with ``time_first``: the same spikes, time first).

    The draws are ``torch.rand``'s, value by value in C order of the time-last shape; on the
    CPU the C twin :func:`pysnn.native.bernoulli_draws` makes them from the same generator
    state without materialising them, which gives the same spikes and leaves the generator
    where ``torch.rand`` leaves it."""
    dtype = torch.promote_types(probabilities.dtype, torch.float32)
    probabilities = probabilities.to(dtype)
    spikes = native.bernoulli_draws(probabilities.contiguous(), n_steps, generator, time_first)
    if spikes is not None:
        return spikes
    draws = torch.rand(
        (*probabilities.shape, n_steps),
        generator=generator,
        device=probabilities.device,
        dtype=dtype,
    )
    # rand lies in [0, 1): p = 0 never spikes, p = 1 always does.
    spikes = draws < probabilities.unsqueeze(-1)
    return spikes.movedim(-1, 0).contiguous() if time_first else spikes


def poisson_encoding(
    intensities: Tensor,
    duration: float,
    dt: float,
    *,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Rate code: independent spikes with probability :math:`f \cdot dt / 1000` per step.

    ``intensities`` are firing rates :math:`f` in **Hz** and ``dt`` is in **ms**, so a step of
    length ``dt`` spikes with probability :math:`p = f \cdot dt / 1000` (Bernoulli approximation of
    a Poisson process; at most one spike per step). The expected spike count over ``T`` steps is
    :math:`p T`, i.e. the empirical rate ``spikes.sum(-1) / (T * dt / 1000)`` converges to ``f``.
    Zero intensity never spikes; :math:`p = 1` (``f = 1000 / dt``) spikes every step.

    The spikes are ``torch.rand(intensities.shape + (T,), generator=generator) < p`` (float64
    draws for float64 intensities, float32 otherwise), and the generator ends where that call
    leaves it; on the CPU a C twin makes the same draws faster (:func:`pysnn.native.bernoulli_draws`).

    :param intensities: firing rates in Hz, any shape, any floating dtype and device, all >= 0.
    :param duration: length of the spike train in ms (> 0).
    :param dt: time step in ms (> 0); ``T = duration / dt`` steps (see the module docs).
    :param generator: keyword-only; :class:`torch.Generator` on the device of ``intensities`` to
        draw from (``None``: torch's global generator).
    :returns: ``torch.bool`` spikes of shape ``intensities.shape + (T,)`` (time last), on the
        device of ``intensities``.
    :raises TypeError: ``intensities`` is not a floating-point tensor, or a bad ``generator``.
    :raises ValueError: a negative or NaN intensity, ``duration``/``dt`` not > 0, ``duration < dt``,
        or a rate with ``f · dt / 1000 > 1``.
    """
    return _poisson_trains(intensities, duration, dt, generator, time_first=False)


def _poisson_trains(
    intensities: Tensor,
    duration: float,
    dt: float,
    generator: Optional[torch.Generator],
    time_first: bool,
) -> Tensor:
    """:func:`poisson_encoding`, time last, or with ``time_first`` the same spikes as
    ``(T, *intensities.shape)`` (what :func:`pysnn.models.present` steps through), without a
    transposed copy."""
    owner = "poisson_encoding"
    _check_intensities(intensities, owner)
    n_steps = _n_steps(duration, dt, owner)
    dt = float(dt)
    _check_generator(generator, intensities.device, owner)
    probabilities = intensities.to(torch.promote_types(intensities.dtype, torch.float32))
    probabilities = probabilities * (dt / 1000.0)
    # 1e-6 of slack: e.g. 10 kHz at dt = 0.1 ms is p = 1 up to float32 rounding.
    if probabilities.numel() and float(probabilities.max()) > 1.0 + 1e-6:
        rate = float(intensities.max())
        raise ValueError(
            f"{owner}: intensities (rates in Hz) times dt / 1000 must be <= 1 (one spike per step "
            f"at most), got max rate {rate:g} Hz with dt={dt:g} ms, i.e. p={rate * dt / 1000:g}; "
            f"use rates <= {1000.0 / dt:g} Hz or a smaller dt"
        )
    return _bernoulli(probabilities, n_steps, generator, time_first)


def bernoulli_encoding(
    intensities: Tensor,
    duration: float,
    dt: float,
    *,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Independent spikes with probability ``intensities`` in every step.

    Step ``t`` of input ``i`` spikes with probability ``intensities[i]`` (dimensionless, in
    [0, 1]), independently of every other step and input; the expected spike count is
    ``intensities * T``. Equivalent to :func:`poisson_encoding` with rates
    ``intensities * 1000 / dt`` Hz.

    :param intensities: spike probabilities per step in [0, 1], any shape, floating dtype, device.
    :param duration: length of the spike train in ms (> 0).
    :param dt: time step in ms (> 0); ``T = duration / dt`` steps.
    :param generator: keyword-only; :class:`torch.Generator` on the device of ``intensities``
        (``None``: torch's global generator).
    :returns: ``torch.bool`` spikes of shape ``intensities.shape + (T,)`` on the device of
        ``intensities``.
    :raises TypeError: ``intensities`` is not a floating-point tensor, or a bad ``generator``.
    :raises ValueError: an intensity outside [0, 1] or NaN, ``duration``/``dt`` not > 0, or
        ``duration < dt``.
    """
    owner = "bernoulli_encoding"
    _check_intensities(intensities, owner)
    n_steps = _n_steps(duration, dt, owner)
    _check_generator(generator, intensities.device, owner)
    if intensities.numel() and float(intensities.max()) > 1.0:
        raise ValueError(
            f"{owner}: intensities are spike probabilities per step and must be <= 1, "
            f"got max {float(intensities.max()):g}"
        )
    return _bernoulli(intensities, n_steps, generator)


def latency_encoding(
    intensities: Tensor,
    duration: float,
    dt: float,
    *,
    max_intensity: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Time-to-first-spike code: one spike per input, earlier for stronger inputs.

    Intensities are normalised to :math:`x = \mathrm{intensities} / \mathrm{max\_intensity}` in [0, 1]
    (``max_intensity`` defaults to the largest value in ``intensities``, over the whole tensor).
    An input with :math:`x > 0` spikes exactly once, at step
    :math:`\lfloor (1 - x)(T - 1) + 1/2 \rfloor` (linear in :math:`x`, rounded half up): the
    strongest input spikes at step 0, an input of half the maximum at the middle step. Zero
    intensity never spikes. Deterministic: ``generator`` is accepted for a uniform signature and
    ignored.

    :param intensities: non-negative intensities (any unit), any shape, floating dtype, device.
    :param duration: length of the spike train in ms (> 0).
    :param dt: time step in ms (> 0); ``T = duration / dt`` steps.
    :param max_intensity: keyword-only; the intensity that spikes at step 0 (> 0, in the unit of
        ``intensities``); ``None``: ``intensities.max()``.
    :param generator: keyword-only; ignored (the code is deterministic).
    :returns: ``torch.bool`` spikes of shape ``intensities.shape + (T,)`` with at most one spike
        along the last axis, on the device of ``intensities``.
    :raises TypeError: ``intensities`` is not a floating-point tensor.
    :raises ValueError: a negative or NaN intensity, an intensity above ``max_intensity``, a
        ``max_intensity`` that is not > 0, ``duration``/``dt`` not > 0, or ``duration < dt``.
    """
    owner = "latency_encoding"
    _check_intensities(intensities, owner)
    if intensities.numel() and bool(torch.isinf(intensities).any()):
        # the latencies scale with the largest intensity: one inf would silence every input
        raise ValueError(f"{owner}: intensities must be finite, got inf")
    n_steps = _n_steps(duration, dt, owner)
    dtype = torch.promote_types(intensities.dtype, torch.float32)
    values = intensities.to(dtype)
    if max_intensity is None:
        scale = float(values.max()) if values.numel() else 0.0
    else:
        scale = _positive(max_intensity, "max_intensity", owner, "")
        if values.numel() and float(values.max()) > scale:
            raise ValueError(
                f"{owner}: intensities must be <= max_intensity={scale:g}, "
                f"got max {float(values.max()):g}"
            )
    steps = torch.arange(n_steps, device=intensities.device)
    if scale == 0.0:
        return torch.zeros((*intensities.shape, n_steps), dtype=torch.bool, device=values.device)
    x = values / scale
    spike_step = torch.floor((1.0 - x) * (n_steps - 1) + 0.5).long()
    return (steps == spike_step.unsqueeze(-1)) & (x > 0).unsqueeze(-1)


class _Encoder:
    """Shared plumbing: validated ``duration``/``dt`` and a default generator."""

    _function = None  # set by subclasses: the encoding function

    def __init__(
        self, duration: float, dt: float, *, generator: Optional[torch.Generator] = None
    ) -> None:
        owner = type(self).__name__
        _n_steps(duration, dt, owner)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{owner}: generator must be a torch.Generator or None, "
                f"got {type(generator).__name__}"
            )
        self.duration = float(duration)
        self.dt = float(dt)
        self.generator = generator

    @property
    def n_steps(self) -> int:
        """Number of time steps ``T`` of every encoding (``duration / dt``)."""
        return _n_steps(self.duration, self.dt, type(self).__name__)

    def _kwargs(self) -> dict:
        return {}

    def __call__(self, intensities: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Encode ``intensities`` (see the class docs); ``generator`` overrides the default."""
        generator = self.generator if generator is None else generator
        return type(self)._function(
            intensities, self.duration, self.dt, generator=generator, **self._kwargs()
        )

    def __repr__(self) -> str:
        extra = "".join(f", {key}={value!r}" for key, value in self._kwargs().items())
        return f"{type(self).__name__}(duration={self.duration:g}, dt={self.dt:g}{extra})"


class PoissonEncoder(_Encoder):
    """Callable form of :func:`poisson_encoding`: rates in Hz → bool spikes, time last.

    ``PoissonEncoder(duration, dt)(intensities)`` equals
    ``poisson_encoding(intensities, duration, dt)``.

    :param duration: length of every spike train in ms (> 0).
    :param dt: time step in ms (> 0).
    :param generator: keyword-only; default :class:`torch.Generator` for calls that pass none
        (``None``: torch's global generator). Useful when a dataset calls the encoder.
    """

    _function = staticmethod(poisson_encoding)


class BernoulliEncoder(_Encoder):
    """Callable form of :func:`bernoulli_encoding`: probabilities per step → bool spikes.

    :param duration: length of every spike train in ms (> 0).
    :param dt: time step in ms (> 0).
    :param generator: keyword-only; default :class:`torch.Generator` for calls that pass none.
    """

    _function = staticmethod(bernoulli_encoding)


class LatencyEncoder(_Encoder):
    """Callable form of :func:`latency_encoding`: one spike per input, earlier when stronger.

    :param duration: length of every spike train in ms (> 0).
    :param dt: time step in ms (> 0).
    :param max_intensity: keyword-only; intensity that spikes at step 0 (``None``: the maximum
        of each call's intensities).
    :param generator: keyword-only; ignored (deterministic), accepted for a uniform interface.
    """

    _function = staticmethod(latency_encoding)

    def __init__(
        self,
        duration: float,
        dt: float,
        *,
        max_intensity: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__(duration, dt, generator=generator)
        if max_intensity is not None:
            max_intensity = _positive(max_intensity, "max_intensity", "LatencyEncoder", "")
        self.max_intensity = max_intensity

    def _kwargs(self) -> dict:
        return {"max_intensity": self.max_intensity}
