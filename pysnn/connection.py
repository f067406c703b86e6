"""Connections: weights, synaptic delays, presynaptic traces and pooling.

A connection turns presynaptic spikes and traces into the input of the postsynaptic neurons.
Two output forms share one layout (the fan-in axis R last, as PySNN):

* ``reduction="none"`` (default, PySNN's form): one entry per synapse — ``(B, 1, O, I)`` for
  :class:`Linear`, ``(B, C_out, H_out, W_out, K)`` for :class:`Conv2d` — where each entry is the
  weight times the (delayed) presynaptic spike; the matching presynaptic traces come alongside.
* ``reduction="sum"`` (keyword-only): the fan-in axis is summed inside the connection by a matrix
  product, and kept with size 1 — ``(B, 1, O, 1)`` or ``(B, C_out, H_out, W_out, 1)``. The trace
  output is the sum of the presynaptic traces over the fan-in. Every neuron sums the last axis,
  so both forms give the same spikes; ``"sum"`` is much faster and uses far less memory.

State is compact: when every synapse has the same delay, the per-synapse buffers ``trace``,
``spikes`` and ``delay`` (synapse shape ``(B, O, I)`` or ``(B, C_out, K, L)``) are broadcast
*views* of per-input state (no copy). Delays are exact and lossless: a spike entering a synapse
at step ``t`` leaves it at step ``t + delay``, whatever else is in flight (a ring buffer of past
inputs). Traces are not delayed (as in PySNN).
"""

import math
import os
from numbers import Integral
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pysnn import functional as sf
from pysnn import native
from pysnn._backend import BackendMixin, KernelCache, StateMixin
from pysnn._checks import _check_reduction, _check_same_shape, broadcast_shape
from pysnn.utils import (
    IntOrPair,
    _check_positive_int,
    _check_positive_real,
    _factory_kwargs,
    _pair,
    _set_no_grad,
    conv2d_output_shape,
)

__all__ = ["Connection", "Linear", "Conv2d", "MaxPool2d", "AdaptiveMaxPool2d", "random_mask"]

Delay = Union[int, Tensor]
# Buffers that are broadcast views of compact state: rebuilt after .to()/load, never copied.
_VIEW_BUFFERS = ("trace", "spikes", "delay", "delay_init")
# Largest int delay accepted before any size is computed (beyond int64 a tensor cannot hold it).
_MAX_DELAY = 2**62


def _nbytes(n: int) -> str:
    """``n`` bytes in readable units."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _device_memory(device: torch.device) -> Optional[int]:
    """Total memory of ``device`` in bytes, or ``None`` where it is not known."""
    try:
        if device.type == "cpu":
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if device.type == "cuda" and torch.cuda.is_available():
            return torch.cuda.get_device_properties(device).total_memory
    except (ValueError, OSError, RuntimeError, AttributeError):
        pass
    return None


def _check_pair(value: IntOrPair, name: str, owner: str, minimum: int) -> Tuple[int, int]:
    """``_pair`` plus a lower bound: a clear ``ValueError`` naming ``name`` below ``minimum``."""
    pair = _pair(value, name, owner)
    if min(pair) < minimum:
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{owner}: {name} must be {bound}, got {value!r}")
    return pair


def _allocate(shape: Tuple[int, ...], factory, name: str, owner: str) -> Tensor:
    """``torch.empty(shape)``, turning the allocator's error into one naming ``name``."""
    try:
        return torch.empty(shape, **factory)
    except (RuntimeError, MemoryError) as error:
        raise MemoryError(f"{owner}: could not allocate the {name} of shape {shape} ({error})")


# Integer types of the same width as each float type: masking multiplies the weight's bit pattern
_BITS = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def _zero_masked(weight: Tensor, mask: Optional[Tensor]) -> None:
    """Set ``weight`` to exactly ``+0.0`` where the bool ``mask`` is False, in place.

    The weight's bit pattern is multiplied, as an integer of the same width, by the mask (1 or
    0): kept weights keep every bit, masked ones become the pattern of ``+0.0`` — also where a
    NaN, an infinity or ``-0.0`` was written (a float product would leave NaN or ``-0.0``). It
    reads the bool mask itself, so nothing derived from it is kept that could go stale, and it
    is several times faster on the CPU than ``masked_fill_`` with a bool mask (one pass, no
    ``~mask`` temporary). ``mask=None`` does nothing.
    """
    if mask is None:
        return
    bits = _BITS.get(weight.dtype)
    if bits is None:  # pragma: no cover (weights are float16/bfloat16/float32/float64)
        weight.masked_fill_(mask.logical_not(), 0)
    else:
        # the bool mask's bytes read as int8 (0 or 1): the same product, without the slower
        # bool-to-int conversion of a mixed-type multiplication (1.7x faster on this CPU)
        weight.view(bits).mul_(mask.view(torch.int8))


def random_mask(
    out_features: int,
    in_features: int,
    p: float,
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> Tensor:
    """A random connectivity mask for :class:`Linear`: each synapse exists with probability ``p``.

    ``mask[o, i] = u[o, i] < p`` with ``u`` uniform in [0, 1) (float64), drawn from
    ``generator`` (torch's global generator by default) **on the generator's device** and then
    moved to ``device``: one seed gives the same mask on every device. ``p = 0`` gives no
    synapse, ``p = 1`` all of them; the number of synapses is binomial(O·I, p).

    :param out_features: O, number of postsynaptic neurons.
    :param in_features: I, number of presynaptic neurons.
    :param p: connection probability in [0, 1].
    :param generator: keyword-only, a seeded :class:`torch.Generator` for a reproducible mask.
    :param device: keyword-only, where the mask is returned (default: the generator's device,
        the CPU without a generator).
    :returns: a bool tensor of shape ``(out_features, in_features)``, for ``Linear(...,
        mask=...)``.
    :raises TypeError: non-int sizes, a ``p`` that is not a real number, a ``generator`` that
        is not a ``torch.Generator``.
    :raises ValueError: sizes below 1, ``p`` outside [0, 1] or NaN.
    """
    owner = "random_mask"
    out_features = _check_positive_int(out_features, "out_features", owner)
    in_features = _check_positive_int(in_features, "in_features", owner)
    if isinstance(p, bool) or not isinstance(p, (Integral, float, np.floating)):
        if not (isinstance(p, Tensor) and p.numel() == 1 and p.is_floating_point()):
            raise TypeError(f"{owner}: p must be a real number in [0, 1], got {p!r}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{owner}: p must lie in [0, 1], got {p}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{owner}: generator must be a torch.Generator, got {type(generator).__name__}"
        )
    where = generator.device if generator is not None else torch.device("cpu")
    draws = torch.rand(
        (out_features, in_features), generator=generator, dtype=torch.float64, device=where
    )
    mask = draws < p
    return mask if device is None else mask.to(device)


def _check_mask(mask, shape: Tuple[int, ...], owner: str) -> Tensor:
    """A bool tensor of exactly ``shape`` (the weight's), detached."""
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{owner}: mask must be a bool tensor of shape {shape} or None, "
            f"got {type(mask).__name__}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{owner}: mask must be a bool tensor (True = synapse exists), got {mask.dtype}"
        )
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"{owner}: mask must have the weight's shape {tuple(shape)}, got {tuple(mask.shape)}"
        )
    return mask.detach()


def _check_bool(value, name: str, owner: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a bool, got {value!r}")
    return bool(value)


class Connection(StateMixin, nn.Module):
    """Base class of connections: synaptic delays and per-synapse state.

    :param shape: synapse shape, batch first: ``(B, O, I)`` (linear) or ``(B, C_out, K, L)``
        (convolution, K the fan-in and L the output positions).
    :param dt: time step in ms.
    :param delay: synaptic delay in **steps**: an int (the same for every synapse; 0 means no
        delay) or an integer tensor of per-synapse delays broadcastable to ``shape[1:]``.

    Buffers: ``delay_init`` (PySNN's value, ``delay + 1`` per synapse: for an int delay ``d``
    a tensor of the synapse shape full of ``d + 1`` in the weight dtype, as PySNN's
    ``ones(shape) * (d + 1)`` — also for ``d = 0``, where PySNN had ``None``; for a tensor delay
    ``delay + 1``, int64, of the delay's shape), ``dt`` (scalar), ``trace`` (float), ``delay``
    (per-synapse delay in steps, int64) and ``spikes`` (bool, the delayed spikes that reach each
    synapse this step), all of the synapse shape except ``dt`` (and a tensor ``delay_init``).
    Subclasses register the ``weight`` parameter.

    :raises MemoryError: when the state and the weight asked for exceed the device's memory (the
        message names the sizes and the bytes).
    """

    # 2: delay_init holds delay + 1 (PySNN's value); version 1 state dicts held the delay.
    _version = 2

    def __init__(
        self,
        shape: Sequence[int],
        dt: float,
        delay: Delay,
        *,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self._factory = factory = _factory_kwargs(device, dtype, owner)
        self.synapse_shape = tuple(int(n) for n in shape)
        dt = _check_positive_real(dt, "dt", owner)
        delay_steps = self._check_delay(delay, owner)
        self.uniform_delay = delay_steps.dim() == 0
        self.max_delay = int(delay_steps.max().item()) if delay_steps.numel() else 0
        self._check_memory(delay, owner)
        self._cursor = 0
        self._activation: Optional[Tensor] = None
        self._sum_out: Optional[sf.SumBuffers] = None
        self._gathered: Optional[Tensor] = None

        try:
            self._allocate_state(delay_steps, dt, factory)
        except (RuntimeError, MemoryError) as error:
            raise MemoryError(
                f"{owner}: could not allocate the state of synapse shape {self.synapse_shape} "
                f"with delay up to {self.max_delay} steps ({error})"
            ) from None
        self._rebuild_views()

    def _allocate_state(self, delay_steps: Tensor, dt: float, factory) -> None:
        device = factory["device"]
        compact_shape = (self.synapse_shape[0], 1) + self.synapse_shape[2:]
        # The delay in steps (compact); ``delay`` and ``delay_init`` are views/functions of it.
        self._buffers["delay_init"] = None  # set by _rebuild_views; first, as in PySNN
        self.register_buffer("_delay_steps", delay_steps.to(device), persistent=False)
        self.register_buffer("dt", torch.tensor(dt, **factory))
        self.register_state("pre_trace", torch.zeros(compact_shape, **factory), 0, False)
        spikes = {"dtype": torch.bool, "device": device}
        if self.uniform_delay:
            self.register_state("pre_spikes", torch.zeros(compact_shape, **spikes), 0, False)
            queue_shape = (self.max_delay,) + compact_shape
        else:
            self.register_state("pre_spikes", torch.zeros(self.synapse_shape, **spikes), 0, False)
            n_inputs = math.prod(compact_shape[2:])
            queue_shape = (compact_shape[0], self.max_delay + 1, n_inputs)
            delays_flat = delay_steps.expand(self.synapse_shape[1:]).reshape(
                self.synapse_shape[1], n_inputs
            )
            # slot(t) = (cursor - d) mod depth, so keep depth - d and add the cursor each step
            self.register_buffer(
                "_delay_offsets",
                ((self.max_delay + 1 - delays_flat) % (self.max_delay + 1)).to(device),
                persistent=False,
            )
            self.register_buffer(
                "_input_index", torch.arange(n_inputs, device=device), persistent=False
            )
        # In-flight spikes; persistent so a saved network resumes exactly where it stopped.
        self.register_state("spike_queue", torch.zeros(queue_shape, **factory), 0)

    def _weight_numel(self) -> int:
        """Number of weights the subclass will allocate (for the memory check)."""
        return 0

    def _size_arguments(self) -> str:
        """The constructor's size arguments, for error messages."""
        return f"synapse shape {self.synapse_shape}"

    def _check_memory(self, delay, owner: str) -> None:
        """Refuse, before allocating anything, state that cannot fit on the device."""
        factory = self._factory
        dtype = factory["dtype"] if factory["dtype"] is not None else torch.get_default_dtype()
        element = torch.empty((), dtype=dtype).element_size()
        batch = self.synapse_shape[0]
        n_inputs = math.prod(self.synapse_shape[2:])
        n_synapses = math.prod(self.synapse_shape)
        parts = {
            "weight": self._weight_numel() * element,
            "trace": batch * n_inputs * element,
        }
        if self.uniform_delay:
            parts["spikes"] = batch * n_inputs
            parts["delay line"] = self.max_delay * batch * n_inputs * element
        else:
            parts["spikes"] = n_synapses
            parts["delay line"] = (self.max_delay + 1) * batch * n_inputs * element
            parts["delay routing"] = 2 * 8 * n_synapses // batch
        if getattr(self, "reduction", "none") == "none":
            parts["activation (reduction='none')"] = n_synapses * element
        total = sum(parts.values())
        available = _device_memory(torch.device(factory["device"] or "cpu"))
        if available is not None and total > available:
            detail = ", ".join(f"{name} {_nbytes(n)}" for name, n in parts.items() if n)
            delay_text = delay if not isinstance(delay, Tensor) else f"up to {self.max_delay}"
            raise MemoryError(
                f"{owner}: {self._size_arguments()} with delay={delay_text} steps need "
                f"{_nbytes(total)} ({total} bytes: {detail}), more than the "
                f"{_nbytes(available)} of the device; use smaller sizes or delays"
                + (" or reduction='sum'" if "activation (reduction='none')" in parts else "")
            )

    # -- construction helpers -----------------------------------------------------------------
    def _check_delay(self, delay, owner: str) -> Tensor:
        if isinstance(delay, Integral) and not isinstance(delay, bool):
            if delay < 0:
                raise ValueError(f"{owner}: delay must be >= 0 steps, got {delay}")
            if delay > _MAX_DELAY:
                raise ValueError(f"{owner}: delay={delay} steps is too large (at most 2**62)")
            return torch.tensor(int(delay), dtype=torch.int64)
        if isinstance(delay, Tensor):
            if delay.is_floating_point():
                if not bool((delay == delay.round()).all()):
                    raise ValueError(
                        f"{owner}: delay counts time steps and must hold whole numbers, "
                        f"got non-integer values"
                    )
            elif delay.dtype == torch.bool or delay.is_complex():
                raise TypeError(f"{owner}: delay tensor must be integer, got {delay.dtype}")
            steps = delay.detach().cpu().round().to(torch.int64)
            if steps.numel() and int(steps.min()) < 0:
                raise ValueError(f"{owner}: delay must be >= 0 steps, got {int(steps.min())}")
            if steps.dim() == len(self.synapse_shape):
                if not bool((steps == steps[:1]).all()):
                    raise ValueError(
                        f"{owner}: delays must be the same for every batch element; give a "
                        f"tensor of shape {self.synapse_shape[1:]}"
                    )
                steps = steps[0]
            try:
                steps.expand(self.synapse_shape[1:])
            except RuntimeError:
                raise ValueError(
                    f"{owner}: delay of shape {tuple(delay.shape)} does not broadcast to the "
                    f"synapses {self.synapse_shape[1:]}"
                ) from None
            return steps.clone()
        raise TypeError(
            f"{owner}: delay must be an int or an integer tensor of steps, "
            f"got {type(delay).__name__}"
        )

    def _rebuild_views(self) -> None:
        """(Re)create the per-synapse buffers as broadcast views of the compact state."""
        self._buffers["trace"] = self.pre_trace.expand(self.synapse_shape)
        if self.uniform_delay:
            self._buffers["spikes"] = self.pre_spikes.expand(self.synapse_shape)
        else:
            self._buffers["spikes"] = self.pre_spikes
        steps = self._delay_steps
        self._buffers["delay"] = steps.expand(self.synapse_shape)
        if self.uniform_delay:  # PySNN: ones(shape) * (delay + 1), in the weight dtype
            init = torch.full(
                (), self.max_delay + 1, dtype=self.pre_trace.dtype, device=steps.device
            )
            self._buffers["delay_init"] = init.expand(self.synapse_shape)
        else:  # PySNN: delay + 1
            self._buffers["delay_init"] = steps + 1

    def _apply(self, fn, recurse=True):
        # the kernels' argument structs point to the old tensors (they would be rebuilt anyway)
        self.__dict__["_native_cache"] = KernelCache()
        # Converting an expanded view would materialise it; convert the compact state only.
        for name in _VIEW_BUFFERS:
            if name in self._buffers:
                self._buffers[name] = None  # skipped by nn.Module._apply; keeps the key order
        try:
            result = super()._apply(fn, recurse)
        finally:
            self._rebuild_views()
        return result

    def __setstate__(self, state) -> None:
        # unpickled tensors no longer share memory with the compact state: view it again
        super().__setstate__(state)
        self._rebuild_views()

    def _saved_delay_matches(self, saved, version) -> bool:
        """Whether a saved ``delay_init`` holds this connection's delays.

        Version 2 (this format) holds ``delay + 1`` (PySNN's value); version 1 (pysnn before
        delay_init followed PySNN) held the delay itself: 0-d for an int delay, the tensor's
        shape for a tensor delay. Without version metadata (a plain dict) both are tried.
        """
        if not isinstance(saved, Tensor):
            return False
        saved = saved.detach().cpu()
        if saved.is_complex() or saved.dtype == torch.bool:
            return False
        steps = self._delay_steps.cpu()
        formats = []
        if version is None or version >= 2:
            shape = self.synapse_shape if self.uniform_delay else tuple(steps.shape)
            formats.append((shape, steps + 1))
        if version is None or version < 2:
            formats.append((tuple(steps.shape), steps))
        for shape, expected in formats:
            if tuple(saved.shape) == shape and bool(
                (saved.to(torch.float64) == expected.to(torch.float64)).all()
            ):
                return True
        return False

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, *args):
        if prefix + "delay_init" in state_dict:
            saved_delay = state_dict[prefix + "delay_init"]
            if not self._saved_delay_matches(saved_delay, local_metadata.get("version")):
                # The delay line's depth and routing are fixed at construction.
                raise ValueError(
                    f"{type(self).__name__}: {prefix}delay_init in the state dict differs from "
                    f"this connection's delays (delay_init = delay + 1); construct the "
                    f"connection with the saved delays"
                )
        cursor = state_dict.pop(prefix + "cursor", None)
        if cursor is not None:
            depth = self.spike_queue.shape[0 if self.uniform_delay else 1]
            if not isinstance(cursor, Tensor) or cursor.numel() != 1 or not 0 <= cursor < depth:
                raise ValueError(
                    f"{type(self).__name__}: {prefix}cursor must be a 0-d integer tensor in "
                    f"[0, {depth}), got {cursor!r}"
                )
        compact = {"trace": self.pre_trace, "spikes": self.pre_spikes}
        for name in _VIEW_BUFFERS:
            value = state_dict.pop(prefix + name, None)
            if value is None or name in ("delay", "delay_init"):
                continue
            target = compact[name]
            if value.shape != torch.Size(self.synapse_shape):
                raise ValueError(
                    f"{type(self).__name__}: {prefix}{name} has shape {tuple(value.shape)}, "
                    f"expected {self.synapse_shape}"
                )
            source = value.narrow(1, 0, 1) if target.shape[1] == 1 else value
            if source.data_ptr() == target.data_ptr() and source.stride() == target.stride():
                continue  # the module's own state dict: already in place
            with torch.no_grad():
                target.copy_(source.clone())  # the source may be a view of the target
        hidden = set(_VIEW_BUFFERS) - self._non_persistent_buffers_set
        self._non_persistent_buffers_set |= hidden
        try:
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args)
        finally:
            self._non_persistent_buffers_set -= hidden
        if cursor is not None:
            self._cursor = int(cursor)
        self.apply_mask()  # a saved weight with values at masked synapses loads masked

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.max_delay:
            # the delay line's position, as a tensor like everything else in a state dict
            destination[prefix + "cursor"] = torch.tensor(self._cursor, dtype=torch.int64)

    # -- public API ---------------------------------------------------------------------------
    def convert_spikes(self, x: Tensor) -> Tensor:
        """Cast spikes to the weight dtype."""
        return x.to(self.weight.dtype)

    def no_grad(self) -> None:
        """Switch off gradients of every parameter."""
        _set_no_grad(self)

    def reset_state(self) -> None:
        """Zero the traces, the spikes and every spike in flight."""
        self.reset_declared_state()
        self._cursor = 0

    def apply_mask(self) -> None:
        """Set the weights of masked synapses (``mask`` False) to exactly 0, in place.

        The connection does it itself after :meth:`reset_weights` and ``load_state_dict``, and
        every rule of :mod:`pysnn.learning` after each weight update; call it after writing
        weights yourself (``weight.data[...] = ...``), which takes effect at masked synapses
        until then. Nothing to do without a mask.
        """
        mask = self._buffers.get("mask")
        if mask is not None:
            _zero_masked(self.weight.data, mask)

    def init_connection(self) -> None:
        """Switch off gradients, reset the state and draw the weights from U(0, 1)."""
        if not isinstance(getattr(self, "weight", None), nn.Parameter):
            raise TypeError(f"{type(self).__name__}: weight must be a torch.nn.Parameter")
        self.no_grad()
        self.reset_state()
        self.reset_weights()

    def propagate_spike(self, x: Tensor) -> Tensor:
        """Push this step's presynaptic input into the delay line; return what leaves it now.

        :param x: presynaptic input in the weight dtype, compact shape ``(B, 1, ...)``.
        :returns: the input that entered ``delay`` steps ago, in the weight dtype: compact shape
            with a uniform delay, synapse shape with per-synapse delays. It is also stored (as
            bool) in ``spikes``.
        """
        if self.uniform_delay:
            if self.max_delay == 0:
                out = x
            else:
                slot = self.spike_queue[self._cursor]
                out = slot.clone()
                slot.copy_(x)
                self._cursor = (self._cursor + 1) % self.max_delay
        else:
            history = self.spike_queue  # (B, depth, n_inputs)
            depth = history.shape[1]
            history[:, self._cursor].copy_(x.reshape(history.shape[0], -1))
            flat_index = ((self._delay_offsets + self._cursor) % depth) * history.shape[2]
            flat_index += self._input_index
            gathered = self._reused("_gathered", (history.shape[0], flat_index.numel()), history)
            history = history.view(history.shape[0], -1)
            out = torch.index_select(history, 1, flat_index.view(-1), out=gathered)
            out = out.view(self.synapse_shape)
            self._cursor = (self._cursor + 1) % depth
        self.pre_spikes.copy_(out)
        return out

    def reset_weights(
        self, distribution: str = "uniform", gain: float = 1.0, a: float = 0.0, b: float = 1.0
    ) -> None:
        """Draw new weights in place.

        :param distribution: ``"uniform"`` (U(a, b)), ``"neuron_scaled_uniform"``
            (U(a, b) / sqrt(fan-in), fan-in = inputs per output neuron), ``"normal"``
            (N(0, 1)), ``"xavier_normal"``, ``"xavier_uniform"`` (with ``gain``),
            ``"kaiming_normal"``, ``"kaiming_uniform"`` (with negative slope ``a``) or
            ``"constant"`` (every weight equal to ``gain``).
        :raises ValueError: for any other name.

        With a ``mask`` (:class:`Linear`) the weights of masked synapses are set to 0 after the
        draw; the fan-ins of the scaled and Xavier/Kaiming distributions count every synapse.
        """
        weight = self.weight.data
        if distribution == "uniform":
            nn.init.uniform_(weight, a=a, b=b)
        elif distribution == "neuron_scaled_uniform":
            fan_in = math.prod(weight.shape[1:])
            nn.init.uniform_(weight, a=a / math.sqrt(fan_in), b=b / math.sqrt(fan_in))
        elif distribution == "normal":
            nn.init.normal_(weight)
        elif distribution == "xavier_normal":
            nn.init.xavier_normal_(weight, gain=gain)
        elif distribution == "xavier_uniform":
            nn.init.xavier_uniform_(weight, gain=gain)
        elif distribution == "kaiming_normal":
            nn.init.kaiming_normal_(weight, a=a)
        elif distribution == "kaiming_uniform":
            nn.init.kaiming_uniform_(weight, a=a)
        elif distribution == "constant":
            nn.init.constant_(weight, gain)
        else:
            raise ValueError(
                f"{type(self).__name__}: unknown distribution {distribution!r}; expected one of "
                "'uniform', 'neuron_scaled_uniform', 'normal', 'xavier_normal', "
                "'xavier_uniform', 'kaiming_normal', 'kaiming_uniform', 'constant'"
            )
        self.apply_mask()  # masked synapses stay 0 (fan-ins above count every synapse)

    def _output_buffer(self, shape: Tuple[int, ...]) -> Tensor:
        """Per-synapse output tensor, allocated once and reused at every step.

        Allocating a fresh (B, O, I) tensor each step costs more than computing it (the memory
        has to be mapped anew every time), so ``reduction="none"`` outputs are overwritten by the
        next step, like the traces: clone an activation to keep it.
        """
        return self._reused("_activation", shape, self.weight)

    def _reused(self, attribute: str, shape: Tuple[int, ...], like: Tensor) -> Tensor:
        """The scratch tensor kept in ``attribute``, (re)allocated when the shape, the dtype or
        the device of ``like`` changes (e.g. after ``.to()``)."""
        buffer = getattr(self, attribute)
        if (
            buffer is None
            or buffer.shape != shape
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = torch.empty(shape, dtype=like.dtype, device=like.device)
            setattr(self, attribute, buffer)
        return buffer

    def _check_input(self, x: Tensor, expected: Tuple[int, ...], name: str) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(
                f"{type(self).__name__}: {name} must be a torch.Tensor, got {type(x).__name__}"
            )
        if x.shape != expected:
            hint = ""
            if x.dim() == len(expected) and x.dim() > 0 and x.shape[1:] == expected[1:]:
                hint = (
                    f": its batch size is {x.shape[0]}, but this connection was built for "
                    f"batch_size={expected[0]}. The batch size is fixed at construction because "
                    "the state (traces, delay lines) is kept per sample; construct the modules "
                    f"again with batch_size={x.shape[0]} (and cells_shape[0] = {x.shape[0]} for "
                    "the neurons), or drop or pad a last, smaller batch"
                )
            raise ValueError(
                f"{type(self).__name__}: {name} must have shape {expected}, got "
                f"{tuple(x.shape)}{hint}"
            )
        if x.requires_grad and torch.is_grad_enabled():
            raise TypeError(
                f"{type(self).__name__}: {name} requires grad; pysnn keeps no autograd graph in "
                f"its state (pass {name}.detach())"
            )


class Linear(BackendMixin, Connection, native_twin=True):
    r"""All-to-all connection between a layer of I and a layer of O neurons.

    ``activation[b, 0, o, i] = W[o, i] · s[b, i](t - d[o, i])`` with ``reduction="none"``;
    ``activation[b, 0, o, 0] = Σ_i W[o, i] · s[b, i](t - d[o, i])`` with ``reduction="sum"``.

    :param in_features: number of presynaptic neurons I (>= 1).
    :param out_features: number of postsynaptic neurons O (>= 1).
    :param batch_size: batch size B (>= 1, default 1): fixed at construction, it must equal
        the batch of the neurons on either side (``cells_shape[0]``).
    :param dt: time step in ms (> 0, default 1).
    :param delay: synaptic delay in time steps (default 0: the spikes of this step arrive in
        this step): an int >= 0, or an int tensor broadcastable to ``(O, I)`` (one delay per
        synapse).
    :param reduction: keyword-only, ``"none"`` (PySNN's layout: one activation per synapse,
        ``(B, 1, O, I)``) or ``"sum"`` (the fan-in summed by a matrix product, ``(B, 1, O,
        1)``; much faster, the same neuron input).
    :param mask: keyword-only, optional bool tensor ``(O, I)``: the synapses that exist (True).
        Masked synapses (False) carry nothing: their weight is kept at exactly 0 (see
        :meth:`set_mask`), so every backend computes the dense product of the same numbers.
        Saved in ``state_dict`` as the buffer ``mask``; :func:`random_mask` draws one.
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :mod:`pysnn._backend`); the C twin covers one delay for every synapse.
    :param device: keyword-only, where the weight and the state are created.
    :param dtype: keyword-only, their floating-point dtype (default: torch's default dtype).

    ``weight`` has shape ``(O, I)``; synapse buffers ``(B, O, I)``. Initial weights are
    U(0, 1), PySNN's default, kept so that a seeded PySNN script starts from the same weights.
    For a new network prefer weights scaled to the fan-in, ``reset_weights(
    "neuron_scaled_uniform")`` (U(0, 1)/√I): with U(0, 1) each output neuron receives about
    I/2 per step from a fully active input, so a first layer of a hundred inputs fires near its
    refractory limit whatever it is shown.

    Outputs: views of buffers the connection keeps and overwrites at the next step — the
    ``"none"`` activation buffer and the live presynaptic trace, or the ``"sum"`` product and
    trace sum (the same view objects at every step) — on both backends; clone what you keep.
    """

    _step_methods = ("forward", "propagate_spike", "activation_potential", "convert_spikes")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        batch_size: int = 1,
        dt: float = 1.0,
        delay: Delay = 0,
        *,
        reduction: str = "none",
        mask: Optional[Tensor] = None,
        backend: str = "auto",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        owner = type(self).__name__
        self.in_features = _check_positive_int(in_features, "in_features", owner)
        self.out_features = _check_positive_int(out_features, "out_features", owner)
        self.batch_size = _check_positive_int(batch_size, "batch_size", owner)
        self.reduction = _check_reduction(reduction, owner)
        if mask is not None:
            mask = _check_mask(mask, (out_features, in_features), owner)
        shape = (batch_size, out_features, in_features)
        super().__init__(shape, dt, delay, device=device, dtype=dtype)
        self.weight = nn.Parameter(
            _allocate((out_features, in_features), self._factory, "weight", owner),
            requires_grad=False,
        )
        self._input_shape = torch.Size((batch_size, 1, in_features))
        self._weight_shape = torch.Size((out_features, in_features))
        # None (no buffer in the state dict) without a mask: the hot path never looks at it
        self.register_buffer(
            "mask", None if mask is None else mask.to(self.weight.device, copy=True)
        )
        self._init_backend(backend)
        self.init_connection()

    def set_mask(self, mask: Optional[Tensor]) -> None:
        """Replace the connectivity mask (``None``: every synapse exists) and zero the weights
        of the masked synapses.

        The mask lives in the weight: masked synapses hold exactly 0, which the forward pass
        multiplies like any weight (so ``mask=None`` and a mask cost the same per step, on
        every backend, and need no kernel of their own). Everything that writes weights keeps
        them 0: :meth:`reset_weights`, ``load_state_dict`` and each step of the rules of
        :mod:`pysnn.learning` (also :func:`pysnn.models.normalize_weights`, which scales). A
        weight you write yourself at a masked synapse (``weight.data[...] = ...``) counts
        until the next of these, or until :meth:`apply_mask`. Removing the mask leaves the
        weights as they are (the formerly masked ones at 0, free to learn).

        :param mask: bool tensor ``(O, I)``, True where a synapse exists, or ``None``.
        :raises TypeError: not a bool tensor. :raises ValueError: another shape.
        """
        owner = type(self).__name__
        if mask is None:
            self._buffers["mask"] = None
            return
        mask = _check_mask(mask, (self.out_features, self.in_features), owner)
        self._buffers["mask"] = mask.to(self.weight.device, copy=True)
        self.apply_mask()

    def _weight_numel(self) -> int:
        return self.out_features * self.in_features

    def _size_arguments(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"batch_size={self.batch_size}"
        )

    def fold(self, x: Tensor) -> Tensor:
        """Reshape a synapse-shaped tensor ``(B, O, I)`` to ``(B, -1, O, I)``."""
        return x.view(self.batch_size, -1, self.out_features, x.shape[-1])

    def activation_potential(self, x: Tensor) -> Tensor:
        """Weight the (delayed) spikes per synapse: ``fold(x · W)`` of shape ``(B, 1, O, I)``.

        The result is written into a buffer reused at every step (see :meth:`_output_buffer`)
        when ``x`` has the compact ``(B, 1, I)`` or synapse shape; other shapes that broadcast
        with the weight (PySNN's own tests pass ``(B, 1, O, I)``) get a new tensor.
        """
        if broadcast_shape(x.shape, self.weight.shape) != self.synapse_shape:
            return self.fold(x * self.weight)
        out = self._output_buffer(self.synapse_shape)
        return self.fold(torch.mul(x, self.weight, out=out))

    def forward(self, x: Tensor, trace_in: Tensor) -> Tuple[Tensor, Tensor]:
        """One time step.

        :param x: presynaptic spikes, ``(B, 1, I)`` (bool or float).
        :param trace_in: presynaptic traces, ``(B, 1, I)``.
        :returns: ``(activation, trace)``, each ``(B, 1, O, I)`` with ``reduction="none"`` or
            ``(B, 1, O, 1)`` with ``"sum"``. The trace is a live view: clone it to keep it.
        """
        expected = self._input_shape
        weight = self._parameters["weight"]
        if not (  # the usual case in one test; anything else gets the full checks and errors
            type(x) is Tensor
            and type(trace_in) is Tensor
            and x.shape == expected
            and trace_in.shape == expected
            and weight.shape == self._weight_shape
            and not (x.requires_grad or trace_in.requires_grad or weight.requires_grad)
        ):
            self._check_input(x, tuple(expected), "x")
            self._check_input(trace_in, tuple(expected), "trace_in")
            self._check_weight(weight)
        if self.uniform_delay and not self._overrides_step_flag:
            buffers = self._buffers
            if self.reduction == "none":
                out = self._output_buffer(self.synapse_shape)
            else:
                out = self._sum_out
                if (
                    out is None
                    or out.product.dtype != weight.dtype
                    or out.product.device != weight.device
                ):
                    out = sf.sum_buffers(
                        self.out_features, self.batch_size, weight.dtype, weight.device
                    )
                    self._sum_out = out
            cursor = self._cursor
            result = self._dispatch(
                sf.linear_step,
                native.linear_step,
                x,
                trace_in,
                weight,
                buffers["pre_trace"],
                buffers["pre_spikes"],
                buffers["spike_queue"],
                cursor,
                self.reduction,
                out,
            )
            if self.max_delay:
                # a plain attribute: nn.Module.__setattr__ costs microseconds per step
                self.__dict__["_cursor"] = (cursor + 1) % self.max_delay
            return result
        if self._backend == "native":
            self._native_failed(
                "per-synapse delay tensors"
                if not self.uniform_delay
                else self._static_native_obstacle()
            )
        self.pre_trace.copy_(trace_in)
        spikes = self.propagate_spike(self.convert_spikes(x))
        if self.reduction == "none":
            return self.activation_potential(spikes), self.fold(self.trace)
        if self.uniform_delay:
            summed = self._weigh_and_sum(spikes)
        else:
            summed = torch.einsum("boi,oi->bo", spikes, self.weight).unsqueeze(1)
        # the same sum as the whole-step function's, whichever path runs
        trace_sum = sf.trace_sum(self.pre_trace).expand(-1, -1, self.out_features)
        return summed.unsqueeze(-1), trace_sum.unsqueeze(-1)

    def _check_weight(self, weight: Tensor) -> None:
        expected = (self.out_features, self.in_features)
        if not isinstance(weight, Tensor) or weight.shape != expected:
            shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise ValueError(f"Linear: weight must have shape {expected}, got {shape}")
        if weight.requires_grad:
            raise TypeError(
                "Linear: weight requires grad; pysnn's weights are updated by learning rules, "
                "not autograd (set weight.requires_grad_(False))"
            )

    def _weigh_and_sum(self, spikes: Tensor) -> Tensor:
        """Σ_i W[o, i] · s[b, i] for compact spikes ``(B, 1, I)``, as ``(B, 1, O)``."""
        # W @ xᵀ reads the (O, I) weight contiguously: faster than F.linear's x @ Wᵀ.
        summed = torch.matmul(self.weight, spikes.view(self.batch_size, -1).t()).t()
        return summed.unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"batch_size={self.batch_size}, dt={self.dt.item():g}, "
            f"delay={self.max_delay if self.uniform_delay else 'per-synapse'}, "
            f"reduction={self.reduction!r}, backend={self.backend!r}"
        )


class Conv2d(Connection):
    r"""2-D convolution between spiking feature maps.

    The input ``(B, C_in, H, W)`` is unfolded into ``(B, 1, K, L)`` columns (K = C_in·kh·kw fan-in,
    L = H_out·W_out positions). With ``reduction="none"``:
    ``activation[b, o, h, w, k] = W[o, k] · u[b, k, (h, w)]`` so that ``activation.sum(-1)`` equals
    ``torch.nn.functional.conv2d`` of the (delayed) spikes. With ``"sum"`` the fan-in is summed by
    a matrix product and kept with size 1.

    :param in_channels: C_in.
    :param out_channels: C_out.
    :param kernel_size: int or (kh, kw).
    :param im_dims: input image size (H, W).
    :param batch_size: B (>= 1, default 1), fixed at construction: the batch of the neurons on
        either side.
    :param dt: time step in ms (> 0, default 1).
    :param delay: delay in time steps (default 0): an int >= 0, or an int tensor broadcastable
        to ``(C_out, K, L)``.
    :param stride: int or pair, >= 1 (default 1).
    :param padding: int or pair, >= 0 (default 0).
    :param dilation: int or pair, >= 1 (default 1).
    :param reduction: keyword-only, ``"none"`` (one activation per synapse, PySNN's layout) or
        ``"sum"`` (the fan-in summed by a matrix product).
    :param device: keyword-only, where the weight and the state are created (``torch.nn``'s
        factory argument).
    :param dtype: keyword-only, their floating-point dtype (default: torch's default dtype).

    ``weight``: ``(C_out, C_in, kh, kw)``; synapse buffers ``(B, C_out, K, L)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        im_dims: Sequence[int],
        batch_size: int = 1,
        dt: float = 1.0,
        delay: Delay = 0,
        stride: IntOrPair = 1,
        padding: IntOrPair = 0,
        dilation: IntOrPair = 1,
        *,
        reduction: str = "none",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        owner = type(self).__name__
        self.in_channels = _check_positive_int(in_channels, "in_channels", owner)
        self.out_channels = _check_positive_int(out_channels, "out_channels", owner)
        self.batch_size = _check_positive_int(batch_size, "batch_size", owner)
        self.kernel_size = _check_pair(kernel_size, "kernel_size", owner, 1)
        self.stride = _check_pair(stride, "stride", owner, 1)
        self.padding = _check_pair(padding, "padding", owner, 0)
        self.dilation = _check_pair(dilation, "dilation", owner, 1)
        self.reduction = _check_reduction(reduction, owner)
        if not isinstance(im_dims, (tuple, list)) or not all(
            isinstance(n, Integral) and not isinstance(n, bool) for n in im_dims
        ):
            raise TypeError(f"{owner}: im_dims must be a tuple of ints (H, W), got {im_dims!r}")
        if len(im_dims) != 2:
            raise NotImplementedError(
                f"{owner}: only 2-D images are supported, got im_dims of length {len(im_dims)}"
            )
        if min(im_dims) <= 0:
            raise ValueError(f"{owner}: im_dims must be positive, got {tuple(im_dims)}")
        self.im_dims = (int(im_dims[0]), int(im_dims[1]))
        self.image_out_shape = conv2d_output_shape(
            *self.im_dims, self.kernel_size, self.stride, self.padding, self.dilation
        )
        if min(self.image_out_shape) <= 0:
            raise ValueError(
                f"{owner}: kernel {self.kernel_size} with padding {self.padding} and dilation "
                f"{self.dilation} does not fit images of size {self.im_dims}"
            )
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        positions = self.image_out_shape[0] * self.image_out_shape[1]
        shape = (batch_size, out_channels, fan_in, positions)
        super().__init__(shape, dt, delay, device=device, dtype=dtype)
        self.weight = nn.Parameter(
            _allocate(
                (out_channels, in_channels) + self.kernel_size, self._factory, "weight", owner
            ),
            requires_grad=False,
        )
        self.init_connection()

    def _weight_numel(self) -> int:
        return self.out_channels * self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def _size_arguments(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, im_dims={self.im_dims}, "
            f"batch_size={self.batch_size}"
        )

    def unfold(self, x: Tensor) -> Tensor:
        """Unfold ``(B, C_in, H, W)`` into columns ``(B, 1, K, L)``."""
        columns = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        return columns.unsqueeze(1)

    def fold(self, x: Tensor) -> Tensor:
        """Move positions before the fan-in: ``(B, C, K, L)`` → ``(B, C, H_out, W_out, K)``."""
        return self._positions_first(x.transpose(-1, -2))

    def _positions_first(self, x: Tensor) -> Tensor:
        """Split the positions of ``(B, C, L, K)`` into ``(B, C, H_out, W_out, K)``."""
        return x.reshape(x.shape[0], x.shape[1], *self.image_out_shape, x.shape[-1])

    def activation_potential(self, x: Tensor) -> Tensor:
        """Weight unfolded spikes ``(B, ·, K, L)`` per synapse; returns ``(B, C_out, H, W, K)``."""
        kernel = self.weight.view(self.out_channels, 1, -1)
        batch, channels, fan_in, positions = self.synapse_shape
        out = self._output_buffer((batch, channels, positions, fan_in))
        # Multiply in the (L, K) layout directly so the result needs no transposing copy.
        return self._positions_first(torch.mul(kernel, x.transpose(-1, -2), out=out))

    def forward(self, x: Tensor, trace_in: Tensor) -> Tuple[Tensor, Tensor]:
        """One time step.

        :param x: presynaptic spikes ``(B, C_in, H, W)``.
        :param trace_in: presynaptic traces ``(B, C_in, H, W)``.
        :returns: ``(activation, trace)`` of shape ``(B, C_out, H_out, W_out, K)`` with
            ``reduction="none"``, ``(B, C_out, H_out, W_out, 1)`` with ``"sum"``.
        """
        expected = (self.batch_size, self.in_channels) + self.im_dims
        self._check_input(x, expected, "x")
        self._check_input(trace_in, expected, "trace_in")
        self.pre_trace.copy_(self.unfold(trace_in.to(self.pre_trace.dtype)))
        spikes = self.propagate_spike(self.unfold(self.convert_spikes(x)))
        if self.reduction == "none":
            return self.activation_potential(spikes), self.fold(self.trace)
        kernel = self.weight.view(self.out_channels, -1)
        if self.uniform_delay:
            summed = torch.matmul(kernel, spikes.squeeze(1))  # (B, C_out, L)
        else:
            summed = torch.einsum("bokl,ok->bol", spikes, kernel)
        trace_sum = self.pre_trace.sum(2).expand(-1, self.out_channels, -1)  # (B, C_out, L)
        out_shape = (self.batch_size, self.out_channels) + self.image_out_shape + (1,)
        return summed.reshape(out_shape), trace_sum.reshape(out_shape)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"im_dims={self.im_dims}, batch_size={self.batch_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, reduction={self.reduction!r}"
        )


def _select_by_max(trace: Tensor, indices: Tensor) -> Tensor:
    """Gather the traces at per-plane flat ``indices`` of shape ``(B, C, h, w)``."""
    return trace.flatten(2).gather(2, indices.flatten(2)).view_as(indices)


def _pool_key(spikes: Tensor, trace: Tensor) -> Tensor:
    """Exact float64 ranking of the elements for the trace selection of a pooling window.

    From highest to lowest: finite traces of spiking elements, finite traces of silent elements
    (each group by trace value, equal traces equal keys), then non-finite traces: spiking before
    silent, and within each ``+inf`` > ``-inf`` > NaN. Keys are dense ranks (small integers), so
    no trace value, however large, small or non-finite, can disturb the order of the others.
    """
    spiking = (spikes != 0).to(torch.float64)
    finite = torch.isfinite(trace)
    # dense ranks of the finite traces (non-finite ones ranked as 0.0, then overwritten)
    clean = torch.where(finite, trace, torch.zeros((), dtype=trace.dtype, device=trace.device))
    _, rank = torch.unique(clean.to(torch.float64), sorted=True, return_inverse=True)
    n_ranks = float(trace.numel())  # an upper bound of the number of distinct ranks
    finite_key = 6.0 + rank.to(torch.float64) + n_ranks * spiking
    # non-finite: NaN 0, -inf 1, +inf 2; + 3 when spiking → keys 0 … 5
    code = torch.where(trace > 0, 2.0, 1.0).to(torch.float64).masked_fill_(trace != trace, 0.0)
    key = torch.where(finite, finite_key, code + 3.0 * spiking)
    return key


class MaxPool2d(nn.Module):
    """Spike max-pooling: a window spikes iff any of its inputs spikes (nonzero), whatever the
    traces.

    The trace passed on is selected among the window's **finite** traces: the largest trace of a
    spiking element; in a window without a spiking element with a finite trace, the largest
    finite trace. Equal traces: the first element in the window (row-major), as torch. A window
    whose traces are all non-finite passes on one of them, ranked the same way (spiking first,
    then ``+inf``, ``-inf``, NaN): a window of NaN traces passes on NaN. Batches and channels
    are pooled independently. Arguments as :func:`torch.nn.functional.max_pool2d`.

    :raises ValueError: kernel_size, stride or dilation below 1, padding below 0 or larger
        than half the kernel.
    :raises TypeError: non-int sizes, a ``ceil_mode`` that is not a bool.
    """

    def __init__(
        self,
        kernel_size: IntOrPair,
        stride: Optional[IntOrPair] = None,
        padding: IntOrPair = 0,
        dilation: IntOrPair = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.kernel_size = _check_pair(kernel_size, "kernel_size", owner, 1)
        if stride is None:
            self.stride = self.kernel_size
        else:
            self.stride = _check_pair(stride, "stride", owner, 1)
        self.padding = _check_pair(padding, "padding", owner, 0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(
                f"{owner}: padding must be at most half the kernel size {self.kernel_size}, "
                f"got {padding!r}"
            )
        self.dilation = _check_pair(dilation, "dilation", owner, 1)
        self.ceil_mode = _check_bool(ceil_mode, "ceil_mode", owner)

    def forward(self, x: Tensor, trace: Tensor) -> Tuple[Tensor, Tensor]:
        """Pool spikes ``(B, C, H, W)`` and their traces (same shape).

        :returns: ``(spikes, trace)``: bool pooled spikes and the selected traces.
        """
        _check_same_shape(x, trace, type(self).__name__)
        args = (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        spikes = F.max_pool2d((x != 0).to(torch.float32), *args)
        _, indices = F.max_pool2d(_pool_key(x, trace), *args, return_indices=True)
        return spikes > 0, _select_by_max(trace, indices)

    def reset_state(self) -> None:
        """Pooling keeps no state."""

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveMaxPool2d(nn.Module):
    """Adaptive spike max-pooling to a fixed output size; spikes and trace selection (finite
    traces, non-finite ones last) as :class:`MaxPool2d`.

    :param output_size: int or (h, w), each at least 1 (``ValueError`` otherwise).
    """

    def __init__(self, output_size: IntOrPair) -> None:
        super().__init__()
        self.output_size = _check_pair(output_size, "output_size", type(self).__name__, 1)

    def forward(self, x: Tensor, trace: Tensor) -> Tuple[Tensor, Tensor]:
        """Pool spikes ``(B, C, H, W)`` and their traces to ``(B, C, *output_size)``."""
        _check_same_shape(x, trace, type(self).__name__)
        spikes = F.adaptive_max_pool2d((x != 0).to(torch.float32), self.output_size)
        _, indices = F.adaptive_max_pool2d(
            _pool_key(x, trace), self.output_size, return_indices=True
        )
        return spikes > 0, _select_by_max(trace, indices)

    def reset_state(self) -> None:
        """Pooling keeps no state."""

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
