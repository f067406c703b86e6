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
from numbers import Integral
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pysnn import functional as sf
from pysnn import native
from pysnn._backend import BackendMixin, KernelCache, StateMixin
from pysnn._checks import _check_reduction, _check_same_shape
from pysnn.utils import (
    IntOrPair,
    _check_positive_int,
    _check_positive_real,
    _factory_kwargs,
    _pair,
    _set_no_grad,
    conv2d_output_shape,
)

__all__ = ["Connection", "Linear", "Conv2d", "MaxPool2d", "AdaptiveMaxPool2d"]

Delay = Union[int, Tensor]
# Buffers that are broadcast views of compact state: rebuilt after .to()/load, never copied.
_VIEW_BUFFERS = ("trace", "spikes", "delay")


class Connection(StateMixin, nn.Module):
    """Base class of connections: synaptic delays and per-synapse state.

    :param shape: synapse shape, batch first: ``(B, O, I)`` (linear) or ``(B, C_out, K, L)``
        (convolution, K the fan-in and L the output positions).
    :param dt: time step in ms.
    :param delay: synaptic delay in **steps**: an int (the same for every synapse; 0 means no
        delay) or an integer tensor of per-synapse delays broadcastable to ``shape[1:]``.

    Buffers: ``delay_init`` (the delay as given, int64), ``dt`` (scalar), ``trace`` (float),
    ``delay`` (per-synapse delay in steps, int64) and ``spikes`` (bool, the delayed spikes that
    reach each synapse this step), all of the synapse shape except ``delay_init`` and ``dt``.
    Subclasses register the ``weight`` parameter.
    """

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
        device = factory["device"]
        self.synapse_shape = tuple(int(n) for n in shape)
        compact_shape = (self.synapse_shape[0], 1) + self.synapse_shape[2:]
        dt = _check_positive_real(dt, "dt", owner)
        delay_steps = self._check_delay(delay, owner)
        self.uniform_delay = delay_steps.dim() == 0
        self.max_delay = int(delay_steps.max().item()) if delay_steps.numel() else 0
        self._cursor = 0
        self._activation: Optional[Tensor] = None
        self._sum_out: Optional[sf.SumBuffers] = None
        self._gathered: Optional[Tensor] = None

        self.register_buffer("delay_init", delay_steps.to(device))
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
        self._rebuild_views()

    # -- construction helpers -----------------------------------------------------------------
    def _check_delay(self, delay, owner: str) -> Tensor:
        if isinstance(delay, Integral) and not isinstance(delay, bool):
            if delay < 0:
                raise ValueError(f"{owner}: delay must be >= 0 steps, got {delay}")
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
                torch.broadcast_shapes(steps.shape, self.synapse_shape[1:])
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
        self._buffers["delay"] = self.delay_init.expand(self.synapse_shape)

    def _apply(self, fn, recurse=True):
        # the kernels' argument structs point to the old tensors (they would be rebuilt anyway)
        self.__dict__["_native_cache"] = KernelCache()
        # Converting an expanded view would materialise it; convert the compact state only.
        for name in _VIEW_BUFFERS:
            self._buffers.pop(name, None)
        try:
            result = super()._apply(fn, recurse)
        finally:
            self._rebuild_views()
        return result

    def __setstate__(self, state) -> None:
        # unpickled tensors no longer share memory with the compact state: view it again
        super().__setstate__(state)
        self._rebuild_views()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, *args):
        saved_delay = state_dict.get(prefix + "delay_init")
        if saved_delay is not None and not torch.equal(saved_delay.cpu(), self.delay_init.cpu()):
            # The delay line's depth and routing are fixed at construction.
            raise ValueError(
                f"{type(self).__name__}: {prefix}delay_init in the state dict differs from this "
                f"connection's delays; construct the connection with the saved delays"
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
            if value is None or name == "delay":
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
            raise ValueError(
                f"{type(self).__name__}: {name} must have shape {expected}, got {tuple(x.shape)}"
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

    :param in_features: number of presynaptic neurons I.
    :param out_features: number of postsynaptic neurons O.
    :param batch_size: batch size B.
    :param dt: time step in ms.
    :param delay: delay in steps (int, or tensor broadcastable to ``(O, I)``).
    :param reduction: keyword-only, ``"none"`` (PySNN layout) or ``"sum"``.
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :mod:`pysnn._backend`); the C twin covers one delay for every synapse.
    :param device: keyword-only, where the weight and the state are created.
    :param dtype: keyword-only, their floating-point dtype (default: torch's default dtype).

    ``weight`` has shape ``(O, I)``; synapse buffers ``(B, O, I)``.

    Outputs: views of buffers the connection keeps and overwrites at the next step — the
    ``"none"`` activation buffer and the live presynaptic trace, or the ``"sum"`` product and
    trace sum (the same view objects at every step) — on both backends; clone what you keep.
    """

    _step_methods = ("forward", "propagate_spike", "activation_potential", "convert_spikes")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        batch_size: int,
        dt: float,
        delay: Delay,
        *,
        reduction: str = "none",
        backend: str = "auto",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        owner = type(self).__name__
        self.in_features = _check_positive_int(in_features, "in_features", owner)
        self.out_features = _check_positive_int(out_features, "out_features", owner)
        self.batch_size = _check_positive_int(batch_size, "batch_size", owner)
        self.reduction = _check_reduction(reduction, owner)
        shape = (batch_size, out_features, in_features)
        super().__init__(shape, dt, delay, device=device, dtype=dtype)
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features, **self._factory), requires_grad=False
        )
        self._input_shape = torch.Size((batch_size, 1, in_features))
        self._weight_shape = torch.Size((out_features, in_features))
        self._init_backend(backend)
        self.init_connection()

    def fold(self, x: Tensor) -> Tensor:
        """Reshape a synapse-shaped tensor ``(B, O, I)`` to ``(B, -1, O, I)``."""
        return x.view(self.batch_size, -1, self.out_features, x.shape[-1])

    def activation_potential(self, x: Tensor) -> Tensor:
        """Weight the (delayed) spikes per synapse: ``fold(x · W)`` of shape ``(B, 1, O, I)``.

        The result is written into a buffer reused at every step (see :meth:`_output_buffer`).
        """
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
        trace_sum = self.pre_trace.sum(-1, keepdim=True).expand(-1, -1, self.out_features)
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
            f"delay={self.delay_init.tolist() if self.uniform_delay else 'per-synapse'}, "
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
    :param batch_size: B.
    :param dt: time step in ms.
    :param delay: delay in steps (int, or tensor broadcastable to ``(C_out, K, L)``).
    :param stride: int or pair.
    :param padding: int or pair.
    :param dilation: int or pair.
    :param reduction: keyword-only, ``"none"`` or ``"sum"``.
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
        batch_size: int,
        dt: float,
        delay: Delay,
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
        self.kernel_size = _pair(kernel_size, "kernel_size", owner)
        self.stride = _pair(stride, "stride", owner)
        self.padding = _pair(padding, "padding", owner)
        self.dilation = _pair(dilation, "dilation", owner)
        self.reduction = _check_reduction(reduction, owner)
        if not isinstance(im_dims, (tuple, list)) or not all(
            isinstance(n, Integral) and not isinstance(n, bool) for n in im_dims
        ):
            raise TypeError(f"{owner}: im_dims must be a tuple of ints (H, W), got {im_dims!r}")
        if len(im_dims) != 2:
            raise NotImplementedError(
                f"{owner}: only 2-D images are supported, got im_dims of length {len(im_dims)}"
            )
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
            torch.empty(out_channels, in_channels, *self.kernel_size, **self._factory),
            requires_grad=False,
        )
        self.init_connection()

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


def _select_by_max(spikes: Tensor, trace: Tensor, indices: Tensor) -> Tuple[Tensor, Tensor]:
    """Gather spikes and traces at per-plane flat ``indices`` of shape ``(B, C, h, w)``."""
    flat_index = indices.flatten(2)
    pooled_spikes = spikes.flatten(2).gather(2, flat_index).view_as(indices)
    pooled_trace = trace.flatten(2).gather(2, flat_index).view_as(indices)
    return pooled_spikes, pooled_trace


def _pool_key(spikes: Tensor, trace: Tensor) -> Tensor:
    """Ranking that puts any spiking element first, then the largest trace.

    ``trace + spike · (2·max|trace| + 1)``: a spiking element always outranks a silent one.
    """
    trace = trace.to(torch.promote_types(trace.dtype, torch.float32))
    offset = trace.abs().amax() * 2 + 1
    return trace + spikes.to(trace.dtype) * offset


class MaxPool2d(nn.Module):
    """Spike max-pooling: a window spikes if any of its inputs spikes.

    The trace passed on is the one of the selected element: among spiking elements the one with
    the largest trace; in a window without spikes, the largest trace. Batches and channels are
    pooled independently. Arguments as :func:`torch.nn.functional.max_pool2d`.
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
        self.kernel_size = _pair(kernel_size, "kernel_size", owner)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", owner)
        self.padding = _pair(padding, "padding", owner)
        self.dilation = _pair(dilation, "dilation", owner)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: Tensor, trace: Tensor) -> Tuple[Tensor, Tensor]:
        """Pool spikes ``(B, C, H, W)`` and their traces (same shape).

        :returns: ``(spikes, trace)``: bool pooled spikes and the selected traces.
        """
        _check_same_shape(x, trace, type(self).__name__)
        _, indices = F.max_pool2d(
            _pool_key(x, trace),
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            return_indices=True,
        )
        spikes, pooled_trace = _select_by_max(x, trace, indices)
        return spikes.to(torch.bool), pooled_trace

    def reset_state(self) -> None:
        """Pooling keeps no state."""

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveMaxPool2d(nn.Module):
    """Adaptive spike max-pooling to a fixed output size; selection as :class:`MaxPool2d`.

    :param output_size: int or (h, w).
    """

    def __init__(self, output_size: IntOrPair) -> None:
        super().__init__()
        self.output_size = _pair(output_size, "output_size", type(self).__name__)

    def forward(self, x: Tensor, trace: Tensor) -> Tuple[Tensor, Tensor]:
        """Pool spikes ``(B, C, H, W)`` and their traces to ``(B, C, *output_size)``."""
        _check_same_shape(x, trace, type(self).__name__)
        _, indices = F.adaptive_max_pool2d(
            _pool_key(x, trace), self.output_size, return_indices=True
        )
        spikes, pooled_trace = _select_by_max(x, trace, indices)
        return spikes.to(torch.bool), pooled_trace

    def reset_state(self) -> None:
        """Pooling keeps no state."""

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
