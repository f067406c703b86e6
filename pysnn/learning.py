r"""Learning rules: correlation-based weight updates computed from the layers' live state.

A rule is built from the layers it trains, an ``OrderedDict`` name → ``{"connection",
"neuron", "type"}`` as given by :attr:`pysnn.network.SNNNetwork.layers` (the modules) or by
:meth:`pysnn.network.SNNNetwork.layer_state_dict` (their state dicts, PySNN's way); a subset of
either works, and layers may share a postsynaptic neuron (several incoming connections). After
each network step call :meth:`~LearningRule.update_state` and then
:meth:`~LearningRule.step` (``step(reward)`` for the reward-modulated rules).

What a rule sees of a layer, every step:

* presynaptic spikes :math:`s^{pre}`: the connection's ``spikes``, i.e. the *delayed* spikes that
  reach each synapse this step;
* presynaptic trace :math:`x^{pre}`: the connection's ``trace`` (traces are not delayed);
* postsynaptic spikes :math:`s^{post}` and trace :math:`x^{post}`: the neuron's ``spikes`` and
  ``trace``, updated in the same step (a neuron updates its trace in the step it spikes).

Outer products are averaged over the batch :math:`b` (and, for :class:`~pysnn.connection.Conv2d`,
over the output positions :math:`l` that share a kernel), written
:math:`\langle x^{pre} s^{post}\rangle_{oi} = \frac{1}{B}\sum_b x^{pre}_{bi} s^{post}_{bo}`
(convolution: :math:`\frac{1}{BL}\sum_{b,l} x^{pre}_{bkl} s^{post}_{bol}` with :math:`k` the
unfolded fan-in, reshaped to the kernel ``(C_out, C_in, kh, kw)``). They are computed as matrix
products of the compact per-input state, never as ``(B, O, I)`` tensors, except with per-synapse
delay tensors, where the delayed spikes themselves are ``(B, O, I)``.

Modules vs state dicts: with modules (``net.layers``) the rule reads the buffers through the
modules at every step, so it keeps working after ``net.to(device/dtype)``. State-dict tensors
are aliases of the buffers at the time they were taken (as in PySNN): build the rule after
``.to()``. The caller's dict is never modified (PySNN overwrote it).

Backends: every rule takes a keyword-only ``backend`` (``"auto"``, ``"torch"``, ``"native"``;
see :class:`LearningRule`), which picks the code that fills the stacked factors of its matrix
products (the C kernel :func:`pysnn.native.stack_terms` or PyTorch) and computes the weight
products (the threaded :func:`pysnn.native.product_bounded` or ``addmm_``). float32 and
float64 layers compute in their own dtype on both paths.

Small batches (a stacked depth ``terms · B · L`` of at most :data:`ORDERED_DEPTH`, e.g. pair STDP
on a Linear layer at B ≤ 4) take the fixed order of :func:`ordered_update` instead of a BLAS
product: the same numbers on every backend, CPU and thread count. Its C twin is event-driven
where few neurons spike: it takes only the products of two nonzero factors (the rows of neurons
that spiked or have a trace, the columns of inputs that spiked), which gives the same numbers bit
for bit, and falls back to the dense pass where that is faster (:data:`pysnn.native.EVENT_CROSSOVER`).
Deeper updates (e.g. batch 16) on two threads or more take the threaded product, which takes the
stacked terms with few nonzero products event-driven too and the others with the BLAS
(:data:`pysnn.native.PRODUCT_EVENT_CROSSOVER`), within the rounding bound of
:meth:`LearningRule.product`.
"""

import math
import operator
from collections import OrderedDict
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from pysnn import native
from pysnn.distributed import _all_gather_flat, _check_group, all_reduce_sum, world_size
from pysnn._backend import BackendMixin, NativeUnavailableError, check_backend
from pysnn.connection import Conv2d, Linear, _zero_masked
from pysnn._checks import _check_bounds as _checks_bounds, _check_real as _checks_real

__all__ = [
    "LearningRule",
    "STDP",
    "MSTDP",
    "MSTDPET",
    "FedeSTDP",
    "TripletSTDP",
    "Hebbian",
    "PFISTER_GERSTNER_2006",
]

Reward = Union[float, Tensor]
_LAYER_TYPES = {"linear": Linear, "conv2d": Conv2d}
_CONNECTION_KEYS = ("weight", "spikes", "trace")
_NEURON_KEYS = ("spikes", "trace")


def _check_not_huge(value: Any, name: str, owner: str) -> None:
    """A clear ``ValueError`` for an int too large for a float (``float(10**400)`` raises
    ``OverflowError``)."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            raise ValueError(
                f"{owner}: {name} must be finite, got an int too large for a float"
            ) from None


def _check_real(value: Any, name: str, owner: str, **limits: Any) -> float:
    """:func:`pysnn._checks._check_real`, plus :func:`_check_not_huge`."""
    _check_not_huge(value, name, owner)
    return _checks_real(value, name, owner, **limits)


def _check_bounds(
    w_min: Any, w_max: Any, owner: str, **options: Any
) -> Tuple[Optional[float], Optional[float]]:
    """:func:`pysnn._checks._check_bounds`, plus :func:`_check_not_huge`."""
    _check_not_huge(w_min, "w_min", owner)
    _check_not_huge(w_max, "w_max", owner)
    return _checks_bounds(w_min, w_max, owner, **options)


def _check_finite_product(owner: str, **factors: float) -> None:
    """Raise a ``ValueError`` naming the parameters when their product (a coefficient of the
    update) overflows to ``inf``: every weight would become ``inf`` or NaN at the first step."""
    if not math.isfinite(math.prod(factors.values())):
        names = " * ".join(factors)
        values = " * ".join(f"{value!r}" for value in factors.values())
        raise ValueError(f"{owner}: {names} must be finite, got {values} (overflows)")


class _AttrReader:
    """Read attributes as items: the fallback for modules that keep a tensor as a property."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __getitem__(self, key: str) -> Tensor:
        return getattr(self.obj, key)


def _reference(source: Any, key: str) -> Tuple[Any, str]:
    """``(container, key)`` such that ``container[key]`` is the live tensor at every step.

    A module's ``_parameters`` / ``_buffers`` dicts are updated when ``.to()`` replaces a
    tensor, so reading them each step follows the module (and is faster than ``getattr``).
    """
    if isinstance(source, nn.Module):
        for container in (source._parameters, source._buffers):
            if key in container:
                return container, key
        return _AttrReader(source), key
    return source, key


class _Stack:
    """Scratch matrices of :meth:`_Layer.stack` and their per-term views, made once.

    ``P`` is stored transposed, ``(T, B, L, O)``, so that filling it from the neuron's
    ``(B, O)`` state is a contiguous copy; the matrix product reads it as a transposed view.

    Synchronised over ``W > 1`` ranks (the rule's ``process_group``), ``p``/``q`` are sized for
    the gathered batch, ``(T, W·B, L, ·)``, and the terms are filled into this rank's
    ``p_local``/``q_local`` ``(T, B, L, ·)``, two views of one send buffer; :meth:`gather`
    all-gathers it (one collective for both factors) and lays the shards out rank-major inside
    each term, as one process with the concatenated batch would have filled them. ``n`` is
    the number of columns per term, ``W·B·L``: the divisor of the batch mean.
    """

    __slots__ = (
        "p",
        "q",
        "p_terms",
        "q_terms",
        "p_matrix",
        "q_matrix",
        "native",
        "obstacle",
        "n",
        "p_local",
        "q_local",
        "send",
        "recv",
        "ready",
    )

    def __init__(self, layer: "_Layer", n_terms: int, like: Tensor) -> None:
        n_post, batch, positions, fan_in = layer.n_post, layer.batch, layer.positions, layer.fan_in
        world = layer.world_size
        options = dict(dtype=like.dtype, device=like.device)
        self.p = torch.empty((n_terms, world * batch, positions, n_post), **options)
        self.q = torch.empty((n_terms, world * batch, positions, fan_in), **options)
        self.send: Optional[Tensor] = None
        self.recv: Optional[Tensor] = None
        if world == 1:
            self.p_local, self.q_local = self.p, self.q
        else:
            size_p = n_terms * batch * positions * n_post
            size_q = n_terms * batch * positions * fan_in
            self.send = torch.empty(size_p + size_q, **options)
            self.recv = torch.empty((world, size_p + size_q), **options)
            self.p_local = self.send[:size_p].view(n_terms, batch, positions, n_post)
            self.q_local = self.send[size_p:].view(n_terms, batch, positions, fan_in)
        if layer.type == "linear":  # L = 1: (B, O) and (B, I) views
            self.p_terms = [self.p_local[t, :, 0] for t in range(n_terms)]
            self.q_terms = [self.q_local[t, :, 0] for t in range(n_terms)]
        else:  # (B, L, C) and (B, L, K) views
            self.p_terms = [self.p_local[t] for t in range(n_terms)]
            self.q_terms = [self.q_local[t] for t in range(n_terms)]
        n = self.n = world * batch * positions
        self.p_matrix = self.p.view(n_terms * n, n_post).t()
        self.q_matrix = self.q.view(n_terms * n, fan_in)
        # (sources, their layout key, arguments) of the fused stacking kernel, see _Layer.stack
        self.native: Optional[tuple] = None
        self.obstacle: Optional[tuple] = None  # (native.enabled(), _Layer._stack_obstacle)
        # the round of LearningRule._gather_layers that filled and gathered it (None: not)
        self.ready: Optional[int] = None

    def gather(self, group: Any) -> None:
        """``p``, ``q`` ← every rank's ``p_local``, ``q_local``, the batch axis rank-major inside
        each term: ``(W, T, B, L, ·)`` → ``(T, W·B, L, ·)`` (one all-gather, then two copies)."""
        _all_gather_flat(self.recv, self.send, group)
        self.unpack(self.recv)

    def unpack(self, recv: Tensor) -> None:
        """``p``, ``q`` ← the gathered send buffers ``recv`` ``(W, size)`` (a view is fine)."""
        world, size_p = recv.shape[0], self.p_local.numel()
        for full, local, part in (
            (self.p, self.p_local, recv[:, :size_p]),
            (self.q, self.q_local, recv[:, size_p:]),
        ):
            n_terms, batch, positions, width = local.shape
            shards = part.view(world, n_terms, batch, positions, width).transpose(0, 1)
            full.view(n_terms, world, batch, positions, width).copy_(shards)


class _Layer(Mapping):
    """One trained layer: live access to its state, plus the tensors the rule keeps for it.

    As a mapping it offers PySNN's keys — ``pre_spikes``, ``pre_trace``, ``post_spikes``,
    ``post_trace``, ``weight``, ``type`` — read live from the connection and neuron (modules or
    state dicts), plus the rule's own state (e.g. ``e_trace``).
    """

    def __init__(
        self, name: str, spec: Mapping, owner: str, rule: Optional["LearningRule"] = None
    ) -> None:
        self.name = name
        self.type = spec["type"]
        # the rule that trains this layer, whose ``backend`` picks the code of stack/accumulate
        self._rule = rule
        self.connection = spec["connection"]
        self.neuron = spec["neuron"]
        self.state: Dict[str, Tensor] = {}
        self._workspace: Dict[str, Tensor] = {}
        self._stacks: Dict[int, _Stack] = {}
        self._views: Dict[str, Tensor] = {}
        self._weight_ref = _reference(self.connection, "weight")
        self._pre_spikes_ref = _reference(self.connection, "spikes")
        self._pre_trace_ref = _reference(self.connection, "trace")
        self._post_spikes_ref = _reference(self.neuron, "spikes")
        self._post_trace_ref = _reference(self.neuron, "trace")
        weight, spikes, trace = self.weight, self.pre_spikes, self.pre_trace
        post_spikes, post_trace = self.post_spikes, self.post_trace
        where = f"{owner}: layer {name!r}"
        n_post = weight.shape[0]
        if self.type == "linear":
            if weight.dim() != 2:
                raise ValueError(
                    f"{where}: a linear weight must be (O, I), got {tuple(weight.shape)}"
                )
            synapse = (spikes.shape[0],) + tuple(weight.shape)
        else:
            if weight.dim() != 4:
                raise ValueError(
                    f"{where}: a conv2d weight must be (C_out, C_in, kh, kw), "
                    f"got {tuple(weight.shape)}"
                )
            if spikes.dim() != 4:
                raise ValueError(
                    f"{where}: conv2d connection spikes must be (B, C_out, K, L), "
                    f"got {tuple(spikes.shape)}"
                )
            synapse = (spikes.shape[0], n_post, math.prod(weight.shape[1:]), spikes.shape[-1])
        for key, tensor in (("spikes", spikes), ("trace", trace)):
            if tuple(tensor.shape) != synapse:
                raise ValueError(
                    f"{where}: connection {key} must have the synapse shape {synapse}, "
                    f"got {tuple(tensor.shape)}"
                )
        self.batch, self.n_post, self.fan_in = synapse[0], synapse[1], synapse[2]
        self.positions = synapse[3] if self.type == "conv2d" else 1
        cells = self.batch * self.n_post * self.positions
        for key, tensor in (("spikes", post_spikes), ("trace", post_trace)):
            if tensor.shape[0] != self.batch or tensor.numel() != cells:
                raise ValueError(
                    f"{where}: neuron {key} of shape {tuple(tensor.shape)} does not match the "
                    f"connection: expected batch {self.batch} and {self.n_post * self.positions} "
                    f"cells per sample"
                )

    # -- live state ----------------------------------------------------------------------------
    @property
    def weight(self) -> Tensor:
        """The weight (an alias: in-place updates reach the module)."""
        container, key = self._weight_ref
        weight = container[key]
        return weight.detach() if weight.requires_grad else weight

    @property
    def pre_spikes(self) -> Tensor:
        container, key = self._pre_spikes_ref
        return container[key]

    @property
    def pre_trace(self) -> Tensor:
        container, key = self._pre_trace_ref
        return container[key]

    @property
    def post_spikes(self) -> Tensor:
        container, key = self._post_spikes_ref
        return container[key]

    @property
    def post_trace(self) -> Tensor:
        container, key = self._post_trace_ref
        return container[key]

    @property
    def mask(self) -> Optional[Tensor]:
        """The connection's connectivity mask (bool, the weight's shape), or ``None``.

        Read live from the module's buffer (or the state dict's ``"mask"``), so a mask set or
        removed with :meth:`pysnn.connection.Linear.set_mask` is followed at the next step.
        """
        source = self.connection
        if isinstance(source, nn.Module):
            return source._buffers.get("mask")
        return source.get("mask") if isinstance(source, Mapping) else None

    def apply_mask(self) -> None:
        """Zero the weights of masked synapses (every rule calls it after its weight update)."""
        mask = self.mask
        if mask is not None:  # (most layers have none: the weight is not looked up)
            _zero_masked(self.weight, mask)

    def weight_matrix(self) -> Tensor:
        """The weight as ``(O, K)`` (conv: ``(C_out, C_in·kh·kw)``, the unfold row order)."""
        weight = self.weight
        return weight if self.type == "linear" else weight.view(self.n_post, self.fan_in)

    # -- Mapping interface (PySNN's layer dict) ------------------------------------------------
    _KEYS = ("pre_spikes", "pre_trace", "post_spikes", "post_trace", "weight", "type")

    def __getitem__(self, key: str) -> Any:
        if key in self._KEYS:
            return getattr(self, key)
        return self.state[key]

    def __setitem__(self, key: str, value: Any) -> None:
        """PySNN-style writes: ``layer["weight"] += dw`` updates the live tensor in place;
        other keys (e.g. ``layer["e_trace"] = ...``) store the rule's own state."""
        if key == "type":
            raise KeyError(f"layer {self.name!r}: 'type' cannot be changed")
        if key in self._KEYS:
            target = self[key]
            if value is not target:
                target.copy_(value)
            if key == "weight":
                self.apply_mask()  # a PySNN-style rule's update keeps masked synapses at 0
            return
        self.state[key] = value

    def __iter__(self) -> Iterator[str]:
        yield from self._KEYS
        yield from self.state

    def __len__(self) -> int:
        return len(self._KEYS) + len(self.state)

    def __repr__(self) -> str:
        return f"<layer {self.name!r} ({self.type}), rule state {sorted(self.state)}>"

    # -- helpers for the rules -----------------------------------------------------------------
    def buffer(self, key: str, like: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
        """A scratch tensor shaped like ``like`` (of ``dtype``, default ``like``'s), kept between
        steps (remade if ``like`` moved)."""
        buf = self._workspace.get(key)
        dtype = like.dtype if dtype is None else dtype
        if (
            buf is None
            or buf.shape != like.shape
            or buf.dtype != dtype
            or buf.device != like.device
        ):
            buf = torch.empty_like(like, dtype=dtype, memory_format=torch.contiguous_format)
            self._workspace[key] = buf
        return buf

    def held_bytes(self) -> int:
        """Bytes of the tensors kept for this layer between steps (state and scratch)."""
        tensors = list(self.state.values()) + list(self._workspace.values())
        tensors += [t for stack in self._stacks.values() for t in (stack.p, stack.q)]
        tensors += [
            t for stack in self._stacks.values() for t in (stack.send, stack.recv) if t is not None
        ]
        return sum(t.numel() * t.element_size() for t in tensors)

    def follow_weight(self, key: str, weight: Tensor) -> Tensor:
        """Rule state ``key`` as ``(..., O, K)``, moved to ``weight``'s device and dtype if the
        network moved (the view is made once, not at every step)."""
        view = self._views.get(key)
        if view is None or view.device != weight.device or view.dtype != weight.dtype:
            tensor = self.state[key].to(device=weight.device, dtype=weight.dtype)
            self.state[key] = tensor
            leading = tensor.shape[: tensor.dim() - (2 if self.type == "linear" else 4)]
            view = self._views[key] = tensor.view(leading + (self.n_post, self.fan_in))
        return view

    @staticmethod
    def _is_compact(tensor: Tensor) -> bool:
        """Whether a synapse tensor holds one row per input (a stride-0 view over outputs).

        The per-synapse buffers of a connection with a uniform delay are broadcast views of
        ``(B, 1, ...)`` state: only their first row is real, so the rules use that row.
        """
        return tensor.shape[1] == 1 or tensor.stride(1) == 0

    def _pre4(self, tensor: Tensor, dtype: Optional[torch.dtype]) -> Tuple[Tensor, bool]:
        """Synapse tensor as ``(B, O or 1, K, L)`` and whether it is compact."""
        if self.type == "linear":
            tensor = tensor.unsqueeze(-1)
        compact = self._is_compact(tensor)
        if compact:
            tensor = tensor.narrow(1, 0, 1)
        return (tensor if dtype is None else tensor.to(dtype)), compact

    def _post3(self, tensor: Tensor, dtype: torch.dtype) -> Tensor:
        """Neuron tensor as ``(B, O, L)``."""
        return tensor.reshape(self.batch, self.n_post, self.positions).to(dtype)

    def _flat_factors(self, pre4: Tensor, post3: Tensor) -> Tuple[Tensor, Tensor]:
        """The factors of a product summed over batch and positions (N = B·L): ``(p, q)``, the
        postsynaptic ``post3 (B, O, L)`` as ``(O, N)`` and the compact presynaptic ``pre4
        (B, 1, K, L)`` as ``(N, K)`` (B read from the tensors: a gathered batch works too)."""
        n = pre4.shape[0] * self.positions
        p = post3.transpose(0, 1).reshape(self.n_post, n)
        q = pre4[:, 0].transpose(1, 2).reshape(n, self.fan_in)
        return p, q

    def correlate(
        self,
        pre: Tensor,
        post: Tensor,
        out: Tensor,
        alpha: float,
        beta: float = 1.0,
        scale: Optional[Tensor] = None,
    ) -> Tensor:
        r"""``out ← beta·out + alpha·⟨pre ⊗ post⟩``, the mean over batch and positions, ``(O, K)``.

        :param pre: presynaptic synapse tensor (connection ``spikes`` or ``trace``).
        :param post: postsynaptic tensor (neuron ``spikes`` or ``trace``).
        :param out: ``(O, K)`` tensor updated in place (``beta=0`` ignores its content).
        :param scale: optional per-sample factor ``()`` or ``(B,)`` (a reward) applied to
            ``post`` before averaging.
        """
        dtype = out.dtype
        pre4, compact = self._pre4(pre, dtype)
        post3 = self._post3(post, dtype)
        if scale is not None:
            post3 = post3 * scale.view(-1, 1, 1)
        n = self.batch * self.positions
        if compact:
            # Σ_{b,l} post[b,o,l]·pre[b,k,l] is one matrix product over the (b, l) axis.
            p, q = self._flat_factors(pre4, post3)
            return out.addmm_(p, q, beta=beta, alpha=alpha / n)
        # Per-synapse delays: the delayed spikes are genuinely (B, O, K, L).
        prod = torch.einsum("bokl,bol->ok", pre4, post3)
        if beta == 0:
            return torch.mul(prod, alpha / n, out=out)
        if beta != 1:
            out.mul_(beta)
        return out.add_(prod, alpha=alpha / n)

    # -- backend -------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The ``backend`` of the rule that trains this layer (``"auto"`` without a rule)."""
        rule = self._rule
        return "auto" if rule is None else rule.backend

    @property
    def process_group(self) -> Any:
        """The process group the rule synchronises over, or ``None`` (alone, or one rank)."""
        rule = self._rule
        return None if rule is None else rule._sync_group

    @property
    def world_size(self) -> int:
        """Ranks whose batches this layer's updates combine (1 without a process group)."""
        rule = self._rule
        return 1 if rule is None else rule._sync_world

    def gather_batch(self, *tensors: Tensor) -> Tuple[Tensor, ...]:
        """Every rank's ``tensors`` (each ``(B, ...)``), concatenated along the batch axis in rank
        order, ``(W·B, ...)``: one all-gather for all of them, into buffers kept between steps.

        For rules whose batch means are not the stacked products of :meth:`stack` (e.g. a
        normalisation by a maximum over the batch); the means of the gathered tensors are then
        those of one process with the concatenated batch, bit for bit. Without a process group
        the tensors are returned as they are.
        """
        group = self.process_group
        if group is None:
            return tensors
        world = self.world_size
        like = tensors[0]
        sizes = [t.numel() for t in tensors]
        send = self._workspace.get("gather_send")
        if (
            send is None
            or send.numel() != sum(sizes)
            or send.dtype != like.dtype
            or send.device != like.device
        ):
            send = self._workspace["gather_send"] = like.new_empty(sum(sizes))
            self._workspace["gather_recv"] = like.new_empty((world, sum(sizes)))
        recv = self._workspace["gather_recv"]
        offset = 0
        for tensor, size in zip(tensors, sizes):
            send[offset : offset + size].view(tensor.shape).copy_(tensor)
            offset += size
        _all_gather_flat(recv, send, group)
        gathered, offset = [], 0
        for i, (tensor, size) in enumerate(zip(tensors, sizes)):
            shape = (world * tensor.shape[0],) + tuple(tensor.shape[1:])
            out = self._workspace.get(f"gathered{i}")
            if (
                out is None
                or out.shape != shape
                or out.dtype != tensor.dtype
                or out.device != tensor.device
            ):
                out = self._workspace[f"gathered{i}"] = tensor.new_empty(shape)
            out.view((world,) + tuple(tensor.shape)).copy_(
                recv[:, offset : offset + size].view((world,) + tuple(tensor.shape))
            )
            gathered.append(out)
            offset += size
        return tuple(gathered)

    def _native_failed(self, reason: str) -> None:
        """Raise the :class:`NativeUnavailableError` of ``backend="native"`` for this layer."""
        rule = self._rule
        owner = "LearningRule" if rule is None else type(rule).__name__
        raise NativeUnavailableError(
            f"{owner}: backend='native' cannot run for layer {self.name!r}: {reason}"
        )

    def _stack_obstacle(self, like: Tensor) -> Optional[str]:
        """Why the stacking kernel cannot fill this layer's factors (None when it may)."""
        if not native.available():
            return "the extension pysnn._native is not built (install pysnn with a C compiler)"
        if not native.enabled():
            return "the kernels are switched off process-wide (PYSNN_NATIVE=0 or set_enabled)"
        if self.type != "linear":
            return "it is a Conv2d connection (the stacking kernel handles Linear layers only)"
        if like.device.type != "cpu":
            return f"its tensors are on {like.device} (the kernels run on the CPU)"
        if like.dtype not in (torch.float32, torch.float64):
            return f"its weight is {like.dtype} (the kernels take float32 and float64)"
        return None

    def stack(
        self,
        terms: Sequence[Tuple[Tensor, Tensor, float]],
        like: Tensor,
        scale: Optional[Tensor] = None,
        *,
        defer: bool = False,
    ) -> Optional[_Stack]:
        r"""Fill ``P (O, T·N)`` and ``Q (T·N, K)`` with :math:`PQ/N = \sum_t c_t\langle pre_t
        \otimes post_t\rangle`, N = B·L, for terms ``(pre_t, post_t, c_t)``.

        With a process group the factors are then all-gathered (N = W·B·L); ``defer=True``
        fills this rank's part only, for :meth:`LearningRule._gather_layers`, which gathers
        several layers at once and marks their stacks ready: the next call then returns the
        ready stack as it is.

        Stacking the terms along the contracted axis turns a whole rule into one matrix product
        (one pass over the weight). ``scale`` (a reward, ``()`` or ``(B,)``) multiplies each
        sample's columns. Both are scratch buffers (dtype and device of ``like``) reused every
        step. Returns ``None`` when a presynaptic tensor is not compact (per-synapse delays).

        The rule's backend picks the filling code: ``"torch"`` eager PyTorch, ``"native"`` the
        fused kernel :func:`pysnn.native.stack_terms` (a :class:`NativeUnavailableError` says
        why it cannot run), ``"auto"`` the kernel where it applies. Both compute
        ``p_t = c_t·post_t`` in the dtype of ``like`` (bool spikes are cast first), so they
        give the same numbers bit for bit.
        """
        mode = self.backend
        for pre, _, _ in terms:
            if not self._is_compact(pre):
                if mode == "native":
                    self._native_failed(
                        "its connection has per-synapse delays (the delayed spikes are "
                        "(B, O, I) tensors, not the stacked factors the kernel fills)"
                    )
                return None
        n_terms = len(terms)
        stack = self._stacks.get(n_terms)
        if stack is None or stack.p.dtype != like.dtype or stack.p.device != like.device:
            stack = self._stacks[n_terms] = _Stack(self, n_terms, like)
        if stack.ready is not None:  # filled and gathered with the rule's other layers
            ready, stack.ready = stack.ready, None
            if not defer and ready == getattr(self._rule, "_sync_round", None):
                return stack
        filled = False
        if mode != "torch":
            # what _stack_obstacle checks is fixed for a stack (made for like's dtype and
            # device, on this layer) but for the process-wide switch: checked once per state of it
            enabled = native.enabled()
            obstacle = stack.obstacle
            if obstacle is None or obstacle[0] is not enabled:
                obstacle = stack.obstacle = (enabled, self._stack_obstacle(like))
            reason = obstacle[1]
            if reason is None:
                filled = self._stack_natively(stack, terms)
                if not filled:
                    reason = (
                        "its spikes and traces are not contiguous CPU tensors of the weight's "
                        "dtype (or bool) with the expected shapes (got "
                        + ", ".join(
                            f"{tuple(tensor.shape)} {tensor.dtype}"
                            for pre, post, _ in terms
                            for tensor in (pre, post)
                        )
                        + ")"
                    )
            if reason is not None and mode == "native":
                self._native_failed(reason)
        if not filled:
            linear = self.type == "linear"
            for (pre, post, coef), p_term, q_term in zip(terms, stack.p_terms, stack.q_terms):
                if linear:
                    post_view = post.reshape(self.batch, self.n_post)
                    pre_view = pre.select(1, 0)
                else:
                    post_view = post.reshape(self.batch, self.n_post, self.positions)
                    post_view = post_view.transpose(1, 2)
                    pre_view = pre.select(1, 0).transpose(1, 2)
                if post_view.dtype == p_term.dtype:
                    torch.mul(post_view, coef, out=p_term)
                else:
                    # Cast first: ``torch.mul(bool, coef, out=float64)`` would compute in the
                    # default dtype (float32) and round ``coef`` before widening it.
                    p_term.copy_(post_view).mul_(coef)
                q_term.copy_(pre_view)
        if scale is not None:  # this rank's samples: before the gather
            stack.p_local.mul_(scale.view(-1, 1, 1) if scale.dim() else scale)
        group = self.process_group
        if group is not None and not defer:
            stack.gather(group)
        return stack

    def _stack_natively(self, stack: _Stack, terms: Sequence[tuple]) -> bool:
        """Fill ``stack`` with the fused kernel (Linear layers); False when it does not apply.

        The kernel's arguments are checked once and kept while the same tensors are passed
        with the same memory, layout and dtype (:func:`pysnn.native.layout_key`: a tensor given
        new memory, a new layout or a new dtype in place, ``x.data = ...``, is checked again);
        only the coefficients change from step to step.
        """
        sources = tuple(tensor for pre, post, _ in terms for tensor in (pre, post))
        layout = native.layout_key(sources)
        cached = stack.native
        if (
            cached is None
            or len(cached[0]) != len(sources)
            or not all(map(operator.is_, cached[0], sources))
            or cached[1] != layout
        ):
            views = [
                (pre.select(1, 0), post.reshape(self.batch, self.n_post), coef)
                for pre, post, coef in terms
            ]
            arguments = native.stack_arguments(stack.p_local, stack.q_local, views)
            cached = stack.native = (sources, layout, arguments)
        arguments = cached[2]
        if arguments is None:
            return False
        for t, (_, _, coef) in enumerate(terms):
            arguments[11 + 5 * t] = float(coef)
        native.stack_terms(arguments)
        return True

    def product(
        self,
        out: Tensor,
        p: Tensor,
        q: Tensor,
        alpha: float,
        beta: float,
        bounds: Tuple[Optional[float], Optional[float]] = (None, None),
        *,
        threaded: bool = True,
    ) -> None:
        r"""``out ← clamp(beta·out + alpha·PᵀQ, *bounds)`` from stacked factors ``p`` (read as
        ``(depth, O)``) and ``q`` (``(depth, K)``): :func:`ordered_update` (or its C twin, dense or
        event-driven) up to :data:`ORDERED_DEPTH`, one BLAS product beyond (split over the
        threads by :func:`pysnn.native.product_bounded` unless ``threaded=False``)."""
        depth = p.numel() // self.n_post
        use_native = self.backend != "torch" and native.enabled()
        if depth <= ORDERED_DEPTH:
            if not (
                use_native
                and native.ordered_update(out, p, q, alpha, beta, *bounds, native.EVENT_CROSSOVER)
            ):
                ordered_update(
                    out,
                    p.reshape(depth, self.n_post),
                    q.reshape(depth, self.fan_in),
                    alpha,
                    beta,
                    *bounds,
                    scratch=self.buffer("ordered_terms", out.expand((2,) + tuple(out.shape))),
                    mask=(
                        self.buffer("ordered_mask", out, torch.bool)
                        if bounds != (None, None)
                        else None
                    ),
                )
            return
        # Native product (backends "auto" and "native", Linear layers): each thread takes a
        # block of rows of out with the BLAS ?gemm_ and clamps it. It returns False (one
        # thread, a small product, no OpenMP/BLAS) and addmm_ runs instead, which is the
        # documented behaviour of the native product, not an error. Split over threads, the
        # BLAS may sum the k = T·B stacked terms in another order than addmm_ (MKL does not
        # promise equal results across row partitions, e.g. on AMD CPUs), so the two can
        # differ in rounding, per element and step, by at most
        #     2·k·eps·(|beta·out_prev| + |alpha|·(|P|ᵀ|Q|)) + tiny,
        # with eps = torch.finfo(dtype).eps = 2u: each result is within γ_(k+2) ≈ (k+2)·u of
        # the exact value (a dot product of length k, plus the beta and alpha roundings),
        # so they differ by at most (k+2)·eps ≤ 2·k·eps for k ≥ 2. The terms it takes
        # event-driven (few spikes: only the products of two nonzero factors, added one by
        # one) are a sum of the same products in yet another order, within the same bound.
        # Over steps the differences add up (beta ≤ 1 and the clamp do not enlarge them);
        # tests/test_learning_backends.py checks this bound.
        if (
            threaded
            and self.type == "linear"
            and use_native
            and native.product_bounded(out, p, q, alpha, beta, *bounds)
        ):
            return  # product and bounds per block of rows, on all threads
        out.addmm_(
            p.reshape(depth, self.n_post).t(), q.reshape(depth, self.fan_in), beta=beta, alpha=alpha
        )
        _clamp_bounds(out, *bounds)

    def accumulate(
        self,
        out: Tensor,
        terms: Sequence[Tuple[Tensor, Tensor, float]],
        beta: float = 1.0,
        scale: Optional[Tensor] = None,
        bounds: Tuple[Optional[float], Optional[float]] = (None, None),
    ) -> Tensor:
        r"""``out ← clamp(beta·out + Σ_t c_t⟨pre_t ⊗ post_t⟩, *bounds)`` for ``(O, K)`` ``out``,
        in place (a bound of None is not applied)."""
        stack = self.stack(terms, out, scale)
        if stack is not None:
            # n = B·L, or W·B·L synchronised over W ranks (the factors are gathered)
            self.product(out, stack.p, stack.q, 1.0 / stack.n, beta, bounds)
            return out
        elif self.process_group is not None:
            # Per-synapse delays over W ranks: the (B, O, K, L) products cannot be gathered
            # cheaply; their (O, K) sums are all-reduced (within rounding of one process).
            total = self._summed_terms(terms, self.buffer("sync_sum", out), scale)
            all_reduce_sum(total, self.process_group)
            _scale_into(out, total, beta, 1.0 / (self.world_size * self.batch * self.positions))
        else:
            for t, (pre, post, coef) in enumerate(terms):
                self.correlate(pre, post, out, coef, beta if t == 0 else 1.0, scale)
        _clamp_bounds(out, *bounds)
        return out

    def accumulate_each(
        self, outs: Sequence[Tensor], terms: Sequence[Tuple[Tensor, Tensor, float]]
    ) -> Sequence[Tensor]:
        r"""``out_t ← c_t⟨pre_t ⊗ post_t⟩`` for each term into its own ``(O, K)`` tensor: the
        numbers of ``accumulate(out_t, [term_t], 0.0)`` for each ``t``, with one synchronisation
        (a single all-gather of all terms' factors) where the rule has a process group."""
        group = self.process_group
        if group is None:
            for out, term in zip(outs, terms):
                self.accumulate(out, [term], 0.0)
            return outs
        stack = self.stack(terms, outs[0])
        if stack is not None:
            for t, out in enumerate(outs):
                self.product(out, stack.p[t : t + 1], stack.q[t : t + 1], 1.0 / stack.n, 0.0)
            return outs
        like = outs[0]
        sums = self.buffer("sync_sums", like.expand((len(terms),) + tuple(like.shape)))
        for t, term in enumerate(terms):
            self._summed_terms([term], sums[t], None)
        all_reduce_sum(sums, group)
        for t, out in enumerate(outs):
            torch.mul(sums[t], 1.0 / (self.world_size * self.batch * self.positions), out=out)
        return outs

    def _summed_terms(
        self, terms: Sequence[Tuple[Tensor, Tensor, float]], out: Tensor, scale: Optional[Tensor]
    ) -> Tensor:
        """``out ← Σ_t c_t Σ_{b,l} pre_t ⊗ post_t`` (each sample scaled by ``scale``), not
        divided by the batch: this rank's part of a sum over the ranks."""
        dtype = out.dtype
        for t, (pre, post, coef) in enumerate(terms):
            pre4, compact = self._pre4(pre, dtype)
            post3 = self._post3(post, dtype)
            if scale is not None:
                post3 = post3 * scale.view(-1, 1, 1)
            if compact:
                p, q = self._flat_factors(pre4, post3)
                prod = p @ q
            else:
                prod = torch.einsum("bokl,bol->ok", pre4, post3)
            if t == 0:
                torch.mul(prod, coef, out=out)
            else:
                out.add_(prod, alpha=coef)
        return out

    def correlate_per_sample(
        self, pre: Tensor, post: Tensor, out: Tensor, alpha: float, beta: float = 1.0
    ) -> Tensor:
        """As :meth:`correlate` but per sample (mean over positions only): ``out`` is ``(B, O, K)``."""
        dtype = out.dtype
        pre4, compact = self._pre4(pre, dtype)
        post3 = self._post3(post, dtype)
        if compact:
            return out.baddbmm_(
                post3, pre4[:, 0].transpose(1, 2), beta=beta, alpha=alpha / self.positions
            )
        prod = torch.einsum("bokl,bol->bok", pre4, post3)
        if beta != 1:
            out.mul_(beta)
        return out.add_(prod, alpha=alpha / self.positions)


def _reward_value(
    reward: Any, layer: _Layer, weight: Tensor, owner: str, per_sample: bool
) -> Tuple[float, Optional[Tensor]]:
    """Split a reward into a Python factor and an optional tensor factor (no host sync).

    :returns: ``(factor, tensor)``: ``tensor`` is ``None`` for a number, else a 0-dim or
        ``(B,)`` tensor on the weight's device and dtype (``(B,)`` only when ``per_sample``).
    """
    if isinstance(reward, Real) and not isinstance(reward, bool):
        try:
            factor = float(reward)
        except OverflowError:
            factor = math.inf
        if not math.isfinite(factor):
            raise ValueError(f"{owner}: reward must be finite, got {reward!r}")
        return factor, None
    if not isinstance(reward, Tensor):
        raise TypeError(
            f"{owner}: reward must be a number or a tensor (0-dim, or (B,) per sample), "
            f"got {type(reward).__name__}"
        )
    if reward.numel() == 1:
        tensor = reward.reshape(())
    elif reward.shape == (layer.batch,):
        if not per_sample:
            raise ValueError(
                f"{owner}: a per-sample reward of shape ({layer.batch},) needs a rule built with "
                f"per_sample_reward=True (it keeps one eligibility trace per sample); give a "
                f"number or a 0-dim tensor to reward the whole batch"
            )
        tensor = reward
    else:
        raise ValueError(
            f"{owner}: reward must be a number, a 0-dim tensor or a tensor of shape "
            f"({layer.batch},) (one per sample) for layer {layer.name!r}, "
            f"got shape {tuple(reward.shape)}"
        )
    tensor = tensor.to(device=weight.device, dtype=weight.dtype)
    # CPU tensors are checked here, in the weight's dtype (a float64 reward may overflow a
    # float32 one), through NumPy: no aten read-back (``item``/``is_nonzero``) in the profiler.
    # A CUDA reward is not checked: reading the result would synchronise the host with the
    # device at every step.
    if tensor.device.type == "cpu" and not _all_finite(tensor):
        raise ValueError(
            f"{owner}: reward must be finite, got a tensor holding NaN or inf "
            f"(shape {tuple(reward.shape)})"
        )
    return 1.0, tensor


def _all_finite(tensor: Tensor) -> bool:
    """Whether a CPU tensor holds finite values only, read through NumPy where it can."""
    try:
        values = (tensor.detach() if tensor.requires_grad else tensor).numpy()
    except (TypeError, RuntimeError):  # e.g. bfloat16, which NumPy lacks
        return bool(torch.isfinite(tensor).all())
    return bool(np.isfinite(values).all())


def _reward_values(reward: Any, layers: Iterator[_Layer], owner: str, per_sample: bool) -> list:
    """``(layer, weight matrix, factor, tensor)`` per layer (see :func:`_reward_value`), all
    checked before the caller changes any weight."""
    values = []
    for layer in layers:
        weight = layer.weight_matrix()
        values.append((layer, weight) + _reward_value(reward, layer, weight, owner, per_sample))
    return values


class LearningRule(BackendMixin):
    """Base class of learning rules.

    :param layers: ``OrderedDict`` (or dict) name → ``{"connection", "neuron", "type"}``, where
        ``connection`` and ``neuron`` are modules (``net.layers``) or their state dicts
        (``net.layer_state_dict()``) and ``type`` is ``"linear"`` or ``"conv2d"``.
    :param defaults: the rule's hyperparameters (kept in :attr:`defaults`).
    :param backend: keyword-only, ``"auto"`` (default), ``"torch"`` or ``"native"``: which
        code fills the factors of the rules' matrix products and computes them (see
        :mod:`pysnn._backend`). ``"torch"`` never calls the kernels of :mod:`pysnn.native`;
        ``"native"`` fills the factors of every Linear layer with
        :func:`pysnn.native.stack_terms` and computes the weight products with its threaded
        ``product_bounded`` (which falls back to ``addmm_`` on one thread or for small products,
        by design), and raises a :class:`~pysnn._backend.NativeUnavailableError` naming the
        reason where the kernel cannot run (extension not built, kernels switched off, a Conv2d
        layer, per-synapse delays, CUDA or ``float16`` tensors); ``"auto"`` uses the kernels
        where they apply. Settable and validated (``ValueError``) as :attr:`backend`. On one
        thread all backends give the same weights bit for bit; threaded products may differ in
        rounding, within the bound stated in ``_Layer.accumulate``. Rules or modes without a native step
        (:class:`FedeSTDP`, ``MSTDPET(per_sample_reward=True)``) run the same PyTorch code on
        every backend; ``"native"`` still requires the kernels to be available and enabled.
    :param process_group: keyword-only, a :mod:`torch.distributed` process group
        (``torch.distributed.group.WORLD`` or a subgroup), or ``None`` (default: no
        communication). Given, each rank simulates its own shard of the batch and the rule
        combines its batch means over the ranks before every weight update, so that every rank
        applies the update of one process with the concatenated batch (ranks in order); see
        :mod:`pysnn.distributed`. Settable as :attr:`process_group`.

    :attr:`layers` is an ``OrderedDict`` name → layer mapping with PySNN's keys, read live:
    ``pre_spikes`` (connection ``spikes``), ``pre_trace`` (connection ``trace``),
    ``post_spikes``, ``post_trace`` (neuron), ``weight``, ``type``, plus the rule's own state
    such as ``e_trace``. Subclasses implement :meth:`update_state`, :meth:`step` and
    :meth:`reset_state`.

    An empty ``layers`` (``LearningRule(OrderedDict(), {})``, as PySNN's tests build it to call
    :meth:`pre_mult_post` and :meth:`reduce_connections`) is allowed: such a rule trains
    nothing, and its :meth:`update_state`, :meth:`step` and :meth:`reset_state` do nothing.

    :raises TypeError: ``layers`` is not a dict of dicts, or holds modules of the wrong type.
    :raises ValueError: an unknown ``type``, missing keys or shapes that do not match.
    """

    _native_owner: type = object  # set below to LearningRule: no step method is skipped

    def __init__(
        self,
        layers: "OrderedDict[str, Dict[str, Any]]",
        defaults: Dict[str, Any],
        *,
        backend: str = "auto",
        process_group: Any = None,
    ) -> None:
        owner = type(self).__name__
        check_backend(backend, owner)
        self.check_layers(layers)
        if type(self) is not LearningRule and isinstance(layers, Mapping) and not layers:
            # PySNN's tests build the base class empty to call its helpers; a concrete rule
            # with nothing to train is a network whose layers were never registered
            raise ValueError(
                f"{owner}: layers is empty, so the rule would train nothing. Register each "
                "trained connection with its postsynaptic neuron in the network's __init__: "
                "self.add_layer(name, connection, neuron), then pass network.layers (or use "
                "pysnn.network.Sequential, which registers them)"
            )
        self.defaults = defaults
        self.process_group = process_group
        self.layers: "OrderedDict[str, _Layer]" = OrderedDict(
            (name, _Layer(name, spec, owner, self)) for name, spec in layers.items()
        )
        self.backend = backend  # validated, and checked against the layers for "native"

    @property
    def process_group(self) -> Any:
        """The :mod:`torch.distributed` process group the batch means are combined over, or
        ``None``. Setting it (e.g. to ``torch.distributed.group.WORLD`` after building the rule)
        remakes the layers' scratch factors for the gathered batch at the next step."""
        return self._process_group

    @process_group.setter
    def process_group(self, group: Any) -> None:
        group = _check_group(group, type(self).__name__)
        self._process_group = group
        self._sync_world = 1 if group is None else world_size(group)
        # one rank: nothing to combine, the rule runs as without a group
        self._sync_group = group if self._sync_world > 1 else None
        for layer in getattr(self, "layers", {}).values():
            layer._stacks.clear()

    def _gather_layers(self, requests: Sequence[tuple]) -> None:
        """With a process group and several layers: fill the stacked factors of every layer,
        ``requests`` = ``(layer, terms, like, scale)`` as :meth:`_Layer.stack` takes them, and
        all-gather them in **one** collective; each layer's next ``stack`` call (in the rule's
        loop over its layers) then uses them as they are. Layers with per-synapse delays are
        left to their own all-reduce. Call it at the start of a step; it does nothing without
        a process group or with one layer (the per-layer gather is then the same single call).
        """
        group = self._sync_group
        if group is None or len(requests) < 2:
            return
        stacks = []
        for layer, terms, like, scale in requests:
            stack = layer.stack(terms, like, scale, defer=True)
            if stack is not None:
                stacks.append(stack)
        if not stacks:
            return
        self._sync_round = getattr(self, "_sync_round", 0) + 1
        first = stacks[0].send
        if len(stacks) == 1 or any(
            s.send.dtype != first.dtype or s.send.device != first.device for s in stacks
        ):
            for stack in stacks:  # mixed dtypes or devices: one gather each
                stack.gather(group)
                stack.ready = self._sync_round
            return
        sizes = [stack.send.numel() for stack in stacks]
        buffers = getattr(self, "_coalesced", None)
        if (
            buffers is None
            or buffers[0].numel() != sum(sizes)
            or buffers[0].dtype != first.dtype
            or buffers[0].device != first.device
        ):
            buffers = self._coalesced = (
                first.new_empty(sum(sizes)),
                first.new_empty((self._sync_world, sum(sizes))),
            )
        send, recv = buffers
        offset = 0
        for stack, size in zip(stacks, sizes):
            send[offset : offset + size].copy_(stack.send)
            offset += size
        _all_gather_flat(recv, send, group)
        offset = 0
        for stack, size in zip(stacks, sizes):
            stack.unpack(recv[:, offset : offset + size])
            stack.ready = self._sync_round
            offset += size

    def _uses_stacking(self) -> bool:
        """Whether the rule fills stacked factors (:meth:`_Layer.stack`) for its products."""
        return True

    def _static_native_obstacle(self) -> Optional[str]:
        """Why ``backend="native"`` can never run for this rule (None when it may)."""
        reason = super()._static_native_obstacle()
        if reason is None and self._uses_stacking():
            for name, layer in getattr(self, "layers", {}).items():
                if layer.type != "linear":
                    return (
                        f"layer {name!r} is a Conv2d connection (the stacking kernel handles "
                        "Linear layers only)"
                    )
        return reason

    def _check_native(self) -> None:
        """For ``backend="native"``: raise unless the kernels are available and enabled now
        (the rules call it at every step; :meth:`_Layer.stack` checks each layer)."""
        if self._backend == "native":
            reason = BackendMixin._static_native_obstacle(self)
            if reason is not None:
                self._native_failed(reason)

    def check_layers(self, layers: Any) -> None:
        """Validate the ``layers`` argument (see the class docstring).

        :raises TypeError: not a dict, a layer that is not a dict, a module of the wrong kind.
        :raises ValueError: missing keys, unknown ``type``.
        """
        owner = type(self).__name__
        if not isinstance(layers, dict):
            raise TypeError(
                f"{owner}: layers must be an OrderedDict name -> layer dict (e.g. "
                f"net.layers or net.layer_state_dict()), got {type(layers).__name__}"
            )
        for name, layer in layers.items():
            if not isinstance(layer, Mapping):
                raise TypeError(
                    f"{owner}: layer {name!r} must be a dict with 'connection', 'neuron' and "
                    f"'type', got {type(layer).__name__}"
                )
            missing = [key for key in ("connection", "neuron", "type") if key not in layer]
            if missing:
                raise ValueError(f"{owner}: layer {name!r} lacks the key(s) {missing}")
            layer_type = layer["type"]
            if layer_type not in _LAYER_TYPES:
                raise ValueError(
                    f"{owner}: layer {name!r} has type {layer_type!r}, expected 'linear' or "
                    f"'conv2d'"
                )
            self._check_source(layer["connection"], _CONNECTION_KEYS, "connection", name, owner)
            self._check_source(layer["neuron"], _NEURON_KEYS, "neuron", name, owner)
            connection = layer["connection"]
            if isinstance(connection, nn.Module) and not isinstance(
                connection, _LAYER_TYPES[layer_type]
            ):
                raise TypeError(
                    f"{owner}: layer {name!r} of type {layer_type!r} needs a "
                    f"{_LAYER_TYPES[layer_type].__name__} connection, "
                    f"got {type(connection).__name__}"
                )

    @staticmethod
    def _check_source(source: Any, keys: Tuple[str, ...], role: str, name: str, owner: str) -> None:
        if isinstance(source, nn.Module):
            found = {key: getattr(source, key, None) for key in keys}
        elif isinstance(source, Mapping):
            found = {key: source.get(key) for key in keys}
        else:
            raise TypeError(
                f"{owner}: the {role} of layer {name!r} must be a module or its state dict, "
                f"got {type(source).__name__}"
            )
        missing = [key for key, value in found.items() if not isinstance(value, Tensor)]
        if missing:
            raise ValueError(f"{owner}: the {role} of layer {name!r} has no tensor {missing}")

    def update_state(self) -> None:
        """Update the rule's state from the layers' current state (call after every step).

        Nothing to do without layers; otherwise subclasses implement it."""
        if self.layers:
            raise NotImplementedError(f"{type(self).__name__} does not implement update_state")

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Apply the weight update (nothing to do without layers)."""
        if self.layers:
            raise NotImplementedError(f"{type(self).__name__} does not implement step")

    def reset_state(self) -> None:
        """Reset the rule's state, e.g. eligibility traces (nothing to do without layers)."""
        if self.layers:
            raise NotImplementedError(f"{type(self).__name__} does not implement reset_state")

    def pre_mult_post(self, pre: Tensor, post: Tensor, con_type: str) -> Tensor:
        """Per-sample outer product of presynaptic and postsynaptic tensors, per synapse.

        * ``"linear"``: ``pre (B, O, I)`` (or ``(B, 1, I)``), ``post (B, 1, O)`` →
          ``R[b, o, i] = pre[b, o, i] · post[b, 0, o]``, shape ``(B, O, I)``;
        * ``"conv2d"``: ``pre (B, C, K, L)`` (or ``(B, 1, K, L)``), ``post (B, C, H, W)`` with
          ``H·W = L`` → ``R[b, c, k, l] = pre[b, c, k, l] · post[b, c, l]``.

        A bool operand is cast to the other's dtype (both bool: the default float dtype).
        This builds the full per-synapse tensor; the rules of this module avoid it.

        :raises ValueError: unknown ``con_type``.
        """
        if pre.dtype == torch.bool and post.dtype == torch.bool:
            pre = pre.to(torch.get_default_dtype())
        if pre.dtype == torch.bool:
            pre = pre.to(post.dtype)
        if post.dtype == torch.bool:
            post = post.to(pre.dtype)
        if con_type == "linear":
            return pre * post.reshape(post.shape[0], -1).unsqueeze(-1)
        if con_type == "conv2d":
            return pre * post.reshape(post.shape[0], post.shape[1], 1, -1)
        raise ValueError(
            f"{type(self).__name__}: con_type must be 'linear' or 'conv2d', got {con_type!r}"
        )

    def reduce_connections(
        self, tensor: Tensor, con_type: str, red_method: Callable[..., Tensor] = torch.mean
    ) -> Tensor:
        """Reduce a per-synapse tensor to the weight's layout.

        ``"linear"``: over the batch, ``(B, O, I)`` → ``(O, I)``; ``"conv2d"``: over the batch
        and the positions, ``(B, C, K, L)`` → ``(C, K)``.

        :param red_method: called as ``red_method(tensor, dim=...)`` with an int or a tuple of
            ints (``torch.mean``, ``torch.sum``, ``torch.amax``, ...).
        :raises ValueError: unknown ``con_type``.
        """
        if con_type == "linear":
            return red_method(tensor, dim=0)
        if con_type == "conv2d":
            return red_method(tensor, dim=(0, 3))
        raise ValueError(
            f"{type(self).__name__}: con_type must be 'linear' or 'conv2d', got {con_type!r}"
        )

    def __repr__(self) -> str:
        params = [f"{key}={value!r}" for key, value in self.defaults.items()]
        params += [f"layers={list(self.layers)}", f"backend={self.backend!r}"]
        return f"{type(self).__name__}({', '.join(params)})"


LearningRule._native_owner = LearningRule


class STDP(LearningRule):
    r"""Trace-based pair STDP (Song, Miller & Abbott 2000; Morrison et al. 2008).

    At every :meth:`step`, for each synapse (averaged over the batch, and over positions for
    convolutions, see the module docstring):

    .. math::

        \Delta W = \eta\,\big(a_+\,f_+(W)\,\langle x^{pre} s^{post}\rangle
                   - a_-\,f_-(W)\,\langle s^{pre} x^{post}\rangle\big),
        \qquad W \leftarrow \mathrm{clamp}(W + \Delta W,\ w_{min},\ w_{max})

    — potentiation by the presynaptic trace at each postsynaptic spike, depression by the
    postsynaptic trace at each (delayed) presynaptic spike. ``weight_dependence="additive"``:
    :math:`f_\pm = 1` (hard bounds, by the clamp); ``"multiplicative"``: soft bounds
    :math:`f_+ = w_{max} - W`, :math:`f_- = W - w_{min}` (both evaluated before the update).

    The window follows from the trace decays: for one pair with
    :math:`\Delta t = t_{post} - t_{pre} > 0` steps the change is
    :math:`\eta a_+ x^{pre}_1 \lambda_{pre}^{\Delta t}`, for :math:`\Delta t < 0` it is
    :math:`-\eta a_- x^{post}_1 \lambda_{post}^{|\Delta t|}`, where :math:`x_1` is the trace in the
    step of its spike (``alpha_t`` for linear traces, ``alpha_t·dt/tau_t`` for exponential
    ones) and :math:`\lambda` the decay per step (``tau_t`` for linear traces,
    ``1 − dt/tau_t`` for exponential ones), i.e. :math:`\tau_\pm = -dt/\ln\lambda`. Spikes in
    the same step (:math:`\Delta t = 0`) count both terms.  With a synaptic delay, depression happens when
    the spike *reaches* the synapse, while potentiation uses the presynaptic trace, which is
    not delayed (as in PySNN).

    :param layers: the layers to train (see :class:`LearningRule`).
    :param lr: learning rate :math:`\eta > 0` (weight units per unit of trace).
    :param a_plus: potentiation amplitude :math:`a_+ \ge 0` (default 1: ``lr`` sets the scale).
    :param a_minus: depression amplitude :math:`a_- \ge 0` (default 1, a balanced window;
        Diehl & Cook-style networks use values around 1).
    :param w_min: lower weight bound (``-inf`` allowed with ``"additive"``).
    :param w_max: upper weight bound, ``> w_min`` (``inf`` allowed with ``"additive"``).
    :param weight_dependence: ``"additive"`` or ``"multiplicative"``.
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :class:`LearningRule`).
    :param process_group: keyword-only, synchronise over these ranks (see
        :class:`LearningRule` and :mod:`pysnn.distributed`).

    The update is applied by each call of :meth:`step`; :meth:`update_state` and
    :meth:`reset_state` do nothing (the traces live in the neurons). Memory per layer: scratch
    matrices of ``O·2B + 2B·I`` values (conv: ``C_out·2BL + 2BL·K``), plus two ``(O, I)``
    tensors with ``"multiplicative"``.
    """

    def __init__(
        self,
        layers: "OrderedDict[str, Dict[str, Any]]",
        lr: float,
        a_plus: float = 1.0,
        a_minus: float = 1.0,
        w_min: float = 0.0,
        w_max: float = 1.0,
        weight_dependence: str = "additive",
        *,
        backend: str = "auto",
        process_group: Any = None,
    ) -> None:
        owner = type(self).__name__
        if weight_dependence not in ("additive", "multiplicative"):
            raise ValueError(
                f"{owner}: weight_dependence must be 'additive' or 'multiplicative', "
                f"got {weight_dependence!r}"
            )
        lr = _check_real(lr, "lr", owner, low=0.0, low_open=True)
        a_plus = _check_real(a_plus, "a_plus", owner, low=0.0)
        a_minus = _check_real(a_minus, "a_minus", owner, low=0.0)
        w_min, w_max = _check_bounds(w_min, w_max, owner, allow_inf=weight_dependence == "additive")
        if w_min is None or w_max is None:
            raise TypeError(f"{owner}: w_min and w_max must be numbers, got None")
        _check_finite_product(owner, lr=lr, a_plus=a_plus)
        _check_finite_product(owner, lr=lr, a_minus=a_minus)
        if weight_dependence == "multiplicative" and not math.isfinite(w_max - w_min):
            raise ValueError(
                f"{owner}: w_max - w_min must be finite, got {w_max} - {w_min} (overflows)"
            )
        defaults = dict(
            lr=lr,
            a_plus=a_plus,
            a_minus=a_minus,
            w_min=w_min,
            w_max=w_max,
            weight_dependence=weight_dependence,
        )
        super().__init__(layers, defaults, backend=backend, process_group=process_group)
        self.lr, self.a_plus, self.a_minus = lr, a_plus, a_minus
        self.w_min, self.w_max = w_min, w_max
        self.weight_dependence = weight_dependence

    def update_state(self) -> None:
        """Nothing to do: :meth:`step` reads the traces of the neurons and connections."""

    def reset_state(self) -> None:
        """Nothing to reset: the rule keeps no state between steps."""

    def step(self) -> None:
        """Apply one STDP update to every layer (see the class docstring)."""
        self._check_native()
        potentiate, depress = self.lr * self.a_plus, self.lr * self.a_minus
        if self._sync_group is not None:  # several layers: one all-gather for all of them
            sign = -1.0 if self.weight_dependence == "additive" else 1.0
            self._gather_layers(
                [
                    (
                        layer,
                        [
                            (layer.pre_trace, layer.post_spikes, potentiate),
                            (layer.pre_spikes, layer.post_trace, sign * depress),
                        ],
                        layer.weight_matrix(),
                        None,
                    )
                    for layer in self.layers.values()
                ]
            )
        for layer in self.layers.values():
            weight = layer.weight_matrix()
            if self.weight_dependence == "additive":
                terms = [
                    (layer.pre_trace, layer.post_spikes, potentiate),
                    (layer.pre_spikes, layer.post_trace, -depress),
                ]
                layer.accumulate(weight, terms, bounds=(self.w_min, self.w_max))
            else:
                self._soft_bound_step(layer, weight, potentiate, depress)
                weight.clamp_(self.w_min, self.w_max)
            layer.apply_mask()

    def _soft_bound_step(
        self, layer: _Layer, weight: Tensor, potentiate: float, depress: float
    ) -> None:
        # W + pot·(w_max − W) − dep·(W − w_min) = W − W·S + (w_max − w_min)·pot + w_min·S with
        # S = pot + dep: two matrix products and a few in-place passes, no temporaries.
        pot, total = layer.accumulate_each(
            (layer.buffer("pot", weight), layer.buffer("dep", weight)),
            [
                (layer.pre_trace, layer.post_spikes, potentiate),
                (layer.pre_spikes, layer.post_trace, depress),
            ],
        )  # one synchronisation for both products, with a process group
        total.add_(pot)
        weight.addcmul_(weight, total, value=-1.0)
        weight.add_(pot, alpha=self.w_max - self.w_min)
        if self.w_min != 0.0:
            weight.add_(total, alpha=self.w_min)


def _scale_into(out: Tensor, total: Tensor, beta: float, alpha: float) -> None:
    """``out ← beta·out + alpha·total`` in place (``beta = 0`` ignores the content of ``out``)."""
    if beta == 0:
        torch.mul(total, alpha, out=out)
        return
    if beta != 1:
        out.mul_(beta)
    out.add_(total, alpha=alpha)


def _clamp_bounds(weight: Tensor, w_min: Optional[float], w_max: Optional[float]) -> None:
    if w_min is not None or w_max is not None:
        weight.clamp_(w_min, w_max)


#: Stacked depths (terms × samples × positions) up to which a rule's matrix products take the
#: fixed order of :func:`ordered_update` (and its event-driven C twin) instead of one BLAS product.
ORDERED_DEPTH = 8


def ordered_update(
    out: Tensor,
    p: Tensor,
    q: Tensor,
    alpha: float,
    beta: float = 1.0,
    w_min: Optional[float] = None,
    w_max: Optional[float] = None,
    *,
    scratch: Optional[Tensor] = None,
    mask: Optional[Tensor] = None,
) -> Tensor:
    r"""``out ← clamp(beta·out + alpha·pᵀq)`` in a fixed order, in place.

    ``out ← beta·out`` (``beta = 1``: unchanged; ``0``: zeros); then, for a depth of at least 1,
    the sum of the terms in order, :math:`s_{oi} = p_{0o} q_{0i}`,
    :math:`s_{oi} \leftarrow s_{oi} + p_{jo} q_{ji}` for :math:`j = 1 \dots depth-1`, and
    :math:`out_{oi} \leftarrow out_{oi} + s_{oi}\cdot\alpha` (the multiplication by ``alpha``
    skipped when it is 1), every operation rounded once in the dtype of ``out``; then the bounds:
    a value below ``w_min`` becomes ``w_min``, one above ``w_max`` becomes ``w_max`` (NaN stays
    NaN). These are the numbers of the C twin :func:`pysnn.native.ordered_update`, dense or
    event-driven, on every CPU and thread count.

    :param out: ``(O, K)`` weight or eligibility trace.
    :param p: ``(depth, O)`` factors; :param q: ``(depth, K)`` factors.
    :param alpha: scale of the products (e.g. ``1/B`` for a batch mean).
    :param beta: scale of ``out`` before the products.
    :param w_min: lower bound or ``None``; :param w_max: upper bound or ``None``.
    :param scratch: keyword-only, a ``(2, O, K)`` tensor of ``out``'s dtype to hold the sum and
        each term (made if ``None``).
    :param mask: keyword-only, an ``(O, K)`` bool tensor to hold the bound tests (made if
        ``None``): a rule's step then allocates nothing.
    :returns: ``out``.
    """
    if beta == 0:
        out.zero_()
    elif beta != 1:
        out.mul_(beta)
    depth = p.shape[0]
    if depth > 0:
        if scratch is None:
            scratch = torch.empty((2,) + tuple(out.shape), dtype=out.dtype, device=out.device)
        total, term = scratch[0], scratch[1]
        torch.mul(p[0].unsqueeze(1), q[0].unsqueeze(0), out=total)
        for j in range(1, depth):
            total.add_(torch.mul(p[j].unsqueeze(1), q[j].unsqueeze(0), out=term))
        if alpha != 1:
            total.mul_(alpha)
        out.add_(total)
    # torch.clamp_ may turn -0 into +0 at a bound of 0; the comparisons keep it, as the C twin
    if (w_min is not None or w_max is not None) and mask is None:
        mask = torch.empty(out.shape, dtype=torch.bool, device=out.device)
    if w_min is not None:
        out.masked_fill_(torch.lt(out, w_min, out=mask), w_min)
    if w_max is not None:
        out.masked_fill_(torch.gt(out, w_max, out=mask), w_max)
    return out


class MSTDP(LearningRule):
    r"""Reward-modulated STDP without eligibility trace (Florian 2007).

    At every :meth:`step` with reward :math:`r`:

    .. math::

        W \leftarrow W + \eta\, r \big(a_{pre}\,\langle x^{pre} s^{post}\rangle
                                      - a_{post}\,\langle s^{pre} x^{post}\rangle\big)

    (means over the batch, and positions for convolutions; see the module docstring). With a
    per-sample reward :math:`r_b` of shape ``(B,)`` each sample's term is weighted by its own
    reward before the batch mean: :math:`\frac{1}{B}\sum_b r_b(\dots)_b`.

    :param layers: the layers to train (see :class:`LearningRule`).
    :param a_pre: amplitude of the pre-before-post term (presynaptic trace at postsynaptic
        spikes).
    :param a_post: amplitude of the post-before-pre term (postsynaptic trace at presynaptic
        spikes), subtracted.
    :param lr: learning rate :math:`\eta > 0`.
    :param w_min: keyword-only, optional lower weight bound (clamped after each step).
    :param w_max: keyword-only, optional upper weight bound.
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :class:`LearningRule`).
    :param process_group: keyword-only, synchronise over these ranks (see
        :class:`LearningRule` and :mod:`pysnn.distributed`).

    :meth:`update_state` and :meth:`reset_state` do nothing (no state between steps).
    """

    def __init__(
        self,
        layers: "OrderedDict[str, Dict[str, Any]]",
        a_pre: float,
        a_post: float,
        lr: float,
        *,
        w_min: Optional[float] = None,
        w_max: Optional[float] = None,
        backend: str = "auto",
        process_group: Any = None,
    ) -> None:
        owner = type(self).__name__
        a_pre = _check_real(a_pre, "a_pre", owner)
        a_post = _check_real(a_post, "a_post", owner)
        lr = _check_real(lr, "lr", owner, low=0.0, low_open=True)
        _check_finite_product(owner, lr=lr, a_pre=a_pre)
        _check_finite_product(owner, lr=lr, a_post=a_post)
        w_min, w_max = _check_bounds(w_min, w_max, owner)
        defaults = dict(a_pre=a_pre, a_post=a_post, lr=lr, w_min=w_min, w_max=w_max)
        super().__init__(layers, defaults, backend=backend, process_group=process_group)
        self.a_pre, self.a_post, self.lr = a_pre, a_post, lr
        self.w_min, self.w_max = w_min, w_max

    def update_state(self) -> None:
        """Nothing to do: :meth:`step` reads the current traces and spikes."""

    def reset_state(self) -> None:
        """Nothing to reset: the rule keeps no state between steps."""

    def step(self, reward: Reward) -> None:
        """Apply the reward-modulated update.

        :param reward: a number or 0-dim tensor (the whole batch), or a ``(B,)`` tensor (one
            reward per sample). Tensors stay on their device: no host synchronisation.
        :raises ValueError: a non-finite reward (NaN or inf would turn every weight into NaN).
            Numbers and CPU tensors are checked, before any weight changes; CUDA tensors are
            not (the check would synchronise the host with the device at every step).
        """
        owner = type(self).__name__
        self._check_native()
        requests = []
        for layer, weight, factor, scale in _reward_values(
            reward, self.layers.values(), owner, per_sample=True
        ):
            gain = self.lr * factor
            terms = [
                (layer.pre_trace, layer.post_spikes, gain * self.a_pre),
                (layer.pre_spikes, layer.post_trace, -gain * self.a_post),
            ]
            requests.append((layer, terms, weight, scale))
        self._gather_layers(requests)  # several layers: one all-gather for all of them
        for layer, terms, weight, scale in requests:
            layer.accumulate(weight, terms, scale=scale, bounds=(self.w_min, self.w_max))
            layer.apply_mask()


class MSTDPET(LearningRule):
    r"""Reward-modulated STDP with eligibility trace (Florian 2007), PySNN's ``MSTDPET``.

    :meth:`update_state` (every step) updates the eligibility trace, :meth:`step` applies it:

    .. math::

        E \leftarrow \gamma E + a_{pre}\,\langle x^{pre} s^{post}\rangle
                                 - a_{post}\,\langle s^{pre} x^{post}\rangle,
        \qquad W \leftarrow W + \eta\, r\, E

    with :math:`\gamma` = ``e_trace_decay``. PySNN keeps one trace per sample and synapse
    ``(B, O, I)`` and averages :math:`rE` over the batch; with a reward shared by the batch the
    mean commutes with the decay, so this rule keeps only the batch mean: ``e_trace`` has the
    weight's shape (same numbers, B times less memory and work). A per-sample reward
    :math:`r_b` needs one trace per sample: build the rule with ``per_sample_reward=True``, then
    ``e_trace`` is ``(B,) + weight.shape`` (convolutions still average over positions) and
    :math:`W \leftarrow W + \frac{\eta}{B}\sum_b r_b E_b`.

    :param layers: the layers to train (see :class:`LearningRule`).
    :param a_pre: amplitude of the pre-before-post term.
    :param a_post: amplitude of the post-before-pre term (subtracted).
    :param lr: learning rate :math:`\eta > 0`.
    :param e_trace_decay: decay factor :math:`\gamma \in [0, 1]` of the eligibility trace per
        step.
    :param per_sample_reward: keyword-only; keep one eligibility trace per sample so that
        :meth:`step` accepts ``(B,)`` rewards.
    :param w_min: keyword-only, optional lower weight bound (clamped after each step).
    :param w_max: keyword-only, optional upper weight bound.
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :class:`LearningRule`).
        With ``per_sample_reward=True`` the rule has no native step (its products are
        batched per sample): every backend runs the same PyTorch code.
    :param process_group: keyword-only, synchronise over these ranks (see
        :class:`LearningRule` and :mod:`pysnn.distributed`).

    ``layers[name]["e_trace"]`` is the live eligibility trace. :meth:`reset_state` zeroes it.
    """

    def __init__(
        self,
        layers: "OrderedDict[str, Dict[str, Any]]",
        a_pre: float,
        a_post: float,
        lr: float,
        e_trace_decay: float,
        *,
        per_sample_reward: bool = False,
        w_min: Optional[float] = None,
        w_max: Optional[float] = None,
        backend: str = "auto",
        process_group: Any = None,
    ) -> None:
        owner = type(self).__name__
        a_pre = _check_real(a_pre, "a_pre", owner)
        a_post = _check_real(a_post, "a_post", owner)
        lr = _check_real(lr, "lr", owner, low=0.0, low_open=True)
        e_trace_decay = _check_real(e_trace_decay, "e_trace_decay", owner, low=0.0, high=1.0)
        if not isinstance(per_sample_reward, bool):
            raise TypeError(f"{owner}: per_sample_reward must be a bool, got {per_sample_reward!r}")
        w_min, w_max = _check_bounds(w_min, w_max, owner)
        defaults = dict(
            a_pre=a_pre,
            a_post=a_post,
            lr=lr,
            e_trace_decay=e_trace_decay,
            per_sample_reward=per_sample_reward,
            w_min=w_min,
            w_max=w_max,
        )
        super().__init__(layers, defaults, backend=backend, process_group=process_group)
        self.a_pre, self.a_post, self.lr = a_pre, a_post, lr
        self.e_trace_decay = e_trace_decay
        self.per_sample_reward = per_sample_reward
        self.w_min, self.w_max = w_min, w_max
        for layer in self.layers.values():
            weight = layer.weight
            shape = ((layer.batch,) if per_sample_reward else ()) + tuple(weight.shape)
            layer.state["e_trace"] = torch.zeros(shape, dtype=weight.dtype, device=weight.device)

    def update_state(self) -> None:
        """Decay the eligibility traces and add this step's pre/post correlations.

        ``E ← γE + C`` is one matrix product accumulated into the stored trace with
        ``beta = γ``: the tensor ``layers[name]["e_trace"]`` holds :math:`E` itself after every
        step (a reference kept across steps stays exact).
        """
        self._check_native()
        if self._sync_group is not None and not self.per_sample_reward:
            self._gather_layers(  # several layers: one all-gather for all of them
                [
                    (
                        layer,
                        [
                            (layer.pre_trace, layer.post_spikes, self.a_pre),
                            (layer.pre_spikes, layer.post_trace, -self.a_post),
                        ],
                        layer.follow_weight("e_trace", layer.weight),
                        None,
                    )
                    for layer in self.layers.values()
                ]
            )
        for layer in self.layers.values():
            e_trace = layer.follow_weight("e_trace", layer.weight)
            if self.per_sample_reward:
                update = layer.correlate_per_sample
                update(layer.pre_trace, layer.post_spikes, e_trace, self.a_pre, self.e_trace_decay)
                update(layer.pre_spikes, layer.post_trace, e_trace, -self.a_post)
            else:
                terms = [
                    (layer.pre_trace, layer.post_spikes, self.a_pre),
                    (layer.pre_spikes, layer.post_trace, -self.a_post),
                ]
                stack = layer.stack(terms, e_trace)
                if stack is None:  # per-synapse delays
                    layer.accumulate(e_trace, terms, beta=self.e_trace_decay)
                    continue
                # n = W·B·L with a process group (the factors are gathered)
                layer.product(
                    e_trace, stack.p, stack.q, 1.0 / stack.n, self.e_trace_decay, threaded=False
                )

    def _uses_stacking(self) -> bool:
        return not self.defaults.get("per_sample_reward", False)

    def step(self, reward: Reward) -> None:
        """Apply :math:`W \\leftarrow W + \\eta r E`.

        :param reward: a number or 0-dim tensor shared by the batch; a ``(B,)`` tensor (one per
            sample) only with ``per_sample_reward=True``. Tensors stay on their device.
        :raises ValueError: a non-finite reward (NaN or inf would turn every weight into NaN).
            Numbers and CPU tensors are checked, before any weight changes; CUDA tensors are
            not (the check would synchronise the host with the device at every step).
        """
        owner = type(self).__name__
        self._check_native()
        for layer, weight, factor, scale in _reward_values(
            reward, self.layers.values(), owner, self.per_sample_reward
        ):
            e_trace = layer.follow_weight("e_trace", weight)
            if self.per_sample_reward:
                if scale is None:
                    scale = weight.new_full((layer.batch,), factor)
                else:
                    scale = scale.expand(layer.batch)
                # Σ_b r_b E_b is a (1, B) × (B, O·K) matrix product.
                if layer.process_group is None:
                    weight.view(1, -1).addmm_(
                        scale.view(1, -1),
                        e_trace.view(layer.batch, -1),
                        alpha=self.lr / layer.batch,
                    )
                else:  # each rank holds its samples' traces: all-reduce Σ_b r_b E_b
                    total = layer.buffer("sync_sum", weight)
                    torch.mm(
                        scale.view(1, -1), e_trace.view(layer.batch, -1), out=total.view(1, -1)
                    )
                    all_reduce_sum(total, layer.process_group)
                    weight.add_(total, alpha=self.lr / (layer.world_size * layer.batch))
            elif scale is None:
                weight.add_(e_trace, alpha=self.lr * factor)
            else:
                weight.addcmul_(e_trace, scale, value=self.lr)
            _clamp_bounds(weight, self.w_min, self.w_max)
            layer.apply_mask()

    def reset_state(self) -> None:
        """Zero the eligibility traces."""
        for layer in self.layers.values():
            layer.state["e_trace"].zero_()


class FedeSTDP(LearningRule):
    r"""STDP of Paredes-Vallés et al. (2019), PySNN's ``FedeSTDP``: no reward, no post spikes.

    At every :meth:`step`, with the presynaptic trace normalised by its maximum over the whole
    layer and batch, :math:`\hat x = x^{pre} / \max(\max x^{pre}, \epsilon)` (:math:`\epsilon`
    the smallest positive normal number of the dtype: all-zero traces give :math:`\hat x = 0`,
    not NaN), and :math:`\Delta = W - w_{init}`:

    .. math::

        W \leftarrow W + \eta\,\Big\langle e^{-\Delta}\big(e^{\hat x} - a\big)
                                   - e^{\Delta}\big(e^{1 - \hat x} - a\big)\Big\rangle

    averaged over the batch (PySNN) and, for convolutions, over the output positions that share
    a kernel (PySNN mixed positions into the kernel axes, defect B21). Since :math:`\Delta` does
    not depend on the sample, only :math:`e^{\hat x}` and :math:`e^{1-\hat x}` are averaged,
    per input: no per-synapse tensor. Every synapse is updated at every call, as in PySNN.

    With ``post_spike_gated=True`` (new, keyword-only; defect B22) a sample's term counts only
    where its postsynaptic neuron spiked, as in the paper's event-driven rule:

    .. math::

        W \leftarrow W + \eta\,\Big\langle s^{post}\Big(e^{-\Delta}\big(e^{\hat x} - a\big)
                                   - e^{\Delta}\big(e^{1 - \hat x} - a\big)\Big)\Big\rangle

    with the same means (silent neurons leave their weights unchanged); the averages
    :math:`\langle s^{post} e^{\hat x}\rangle` are one matrix product each.

    :param layers: the layers to train (see :class:`LearningRule`).
    :param lr: learning rate :math:`\eta > 0`.
    :param w_init: weight of equilibrium :math:`w_{init}` (weight units).
    :param a: :math:`a \in [0, 1]`, sets the balance of potentiation and depression.
    :param post_spike_gated: keyword-only; update a synapse only for the samples (and
        positions) where its postsynaptic neuron spiked at this step.
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :class:`LearningRule`).
        The rule has no native step (elementwise operations and, gated, plain products):
        every backend runs the same PyTorch code.
    :param process_group: keyword-only, synchronise over these ranks (see
        :class:`LearningRule` and :mod:`pysnn.distributed`).

    :meth:`update_state` and :meth:`reset_state` do nothing (PySNN raised
    ``NotImplementedError``; doing nothing lets :func:`pysnn.simulation.run` drive the rule).
    """

    def __init__(
        self,
        layers: "OrderedDict[str, Dict[str, Any]]",
        lr: float,
        w_init: float,
        a: float,
        *,
        post_spike_gated: bool = False,
        backend: str = "auto",
        process_group: Any = None,
    ) -> None:
        owner = type(self).__name__
        lr = _check_real(lr, "lr", owner, low=0.0, low_open=True)
        a = _check_real(a, "a", owner, low=0.0, high=1.0)
        w_init = _check_real(w_init, "w_init", owner)
        if not isinstance(post_spike_gated, bool):
            raise TypeError(f"{owner}: post_spike_gated must be a bool, got {post_spike_gated!r}")
        defaults = dict(lr=lr, w_init=w_init, a=a, post_spike_gated=post_spike_gated)
        super().__init__(layers, defaults, backend=backend, process_group=process_group)
        self.lr, self.w_init, self.a = lr, w_init, a
        self.post_spike_gated = post_spike_gated

    def update_state(self) -> None:
        """Nothing to do: :meth:`step` reads the current traces."""

    def reset_state(self) -> None:
        """Nothing to reset: the rule keeps no state between steps."""

    def step(self) -> None:
        """Apply one update to every layer (see the class docstring)."""
        self._check_native()
        for layer in self.layers.values():
            weight = layer.weight_matrix()
            trace, _ = layer._pre4(layer.pre_trace, weight.dtype)  # (B, O or 1, K, L)
            post3 = layer._post3(layer.post_spikes, weight.dtype) if self.post_spike_gated else None
            if layer.process_group is not None:  # the maximum and the means of all ranks' batch
                trace, *gated = layer.gather_batch(trace, *(() if post3 is None else (post3,)))
                post3 = gated[0] if gated else None
            tiny = torch.finfo(weight.dtype).tiny
            normed = trace / trace.amax().clamp(min=tiny)
            if self.post_spike_gated:
                ltp, ltd = self._gated_means(layer, normed, post3)  # (O, K) each
            else:
                ltp = normed.exp().mean(dim=(0, 3)).sub_(self.a)  # (O or 1, K)
                ltd = normed.neg_().add_(1.0).exp_().mean(dim=(0, 3)).sub_(self.a)
            grow = layer.buffer("exp_delta", weight)
            torch.sub(weight, self.w_init, out=grow).exp_()  # e^Δ, before W changes
            weight.addcdiv_(ltp, grow, value=self.lr)
            weight.addcmul_(grow, ltd, value=-self.lr)
            layer.apply_mask()

    def _uses_stacking(self) -> bool:
        return False

    def _gated_means(self, layer: _Layer, normed: Tensor, post3: Tensor) -> Tuple[Tensor, Tensor]:
        """⟨s·(e^x̂ − a)⟩ and ⟨s·(e^(1−x̂) − a)⟩ over batch and positions, ``(O, K)``: matrix
        products of the postsynaptic spikes ``post3 (B, O, L)`` as ``(O, N)`` and the per-input
        terms ``(N, K)``, N = B·L (B of the tensors: a gathered batch works too)."""
        n = normed.shape[0] * layer.positions
        p, q = layer._flat_factors(normed, post3)
        ltp = torch.mm(p, q.exp(), out=layer.buffer("gated_ltp", layer.weight_matrix()))
        ltd = torch.mm(p, q.neg().add_(1.0).exp_(), out=layer.buffer("gated_ltd", ltp))
        # the a-terms count the spikes only: a·⟨s⟩ per postsynaptic neuron
        rate = p.sum(dim=1, keepdim=True)
        ltp.sub_(rate, alpha=self.a).div_(n)
        ltd.sub_(rate, alpha=self.a).div_(n)
        return ltp, ltd


#: The minimal all-to-all fits of Pfister & Gerstner (2006), J. Neurosci. 26:9673, as keywords of
#: :class:`TripletSTDP`: ``"visual_cortex"`` (their Table 2, fitted to the pairing data of
#: Sjöström et al. 2001) and ``"hippocampus"`` (Table 4, the triplet data of Wang et al. 2005).
#: Amplitudes in weight units, time constants in ms.
PFISTER_GERSTNER_2006: Dict[str, Dict[str, float]] = {
    # Table 2: visual cortex slices (Sjöström et al. 2001), all-to-all, minimal model
    "visual_cortex": dict(
        a2_plus=0.0,
        a3_plus=6.5e-3,
        a2_minus=7.1e-3,
        a3_minus=0.0,
        tau_plus=16.8,
        tau_minus=33.7,
        tau_x=101.0,  # no effect here (a3_minus = 0); the value of the table's full model
        tau_y=125.0,
    ),
    # Table 4: hippocampal cultures (Wang et al. 2005), all-to-all, minimal model
    "hippocampus": dict(
        a2_plus=5.3e-3,
        a3_plus=8.0e-3,
        a2_minus=3.5e-3,
        a3_minus=0.0,
        tau_plus=16.8,
        tau_minus=33.7,
        tau_x=101.0,  # no effect here (a3_minus = 0)
        tau_y=40.0,
    ),
}


def _layer_dt(layer: _Layer, owner: str) -> float:
    """The time step of a layer's connection in ms (its ``dt`` buffer), read once."""
    source = layer.connection
    if isinstance(source, nn.Module):
        dt = source._buffers.get("dt")
    else:
        dt = source.get("dt") if isinstance(source, Mapping) else None
    if not isinstance(dt, Tensor) or dt.numel() != 1:
        raise ValueError(
            f"{owner}: the connection of layer {layer.name!r} has no scalar 'dt'; pass dt= (ms)"
        )
    return _check_real(float(dt), "dt", owner, low=0.0, low_open=True)


class TripletSTDP(LearningRule):
    r"""Triplet STDP, the all-to-all model of Pfister & Gerstner (2006).

    The rule keeps four traces of its own per layer, each decaying with its time constant
    between steps and jumping by 1 at every spike (all-to-all interaction): presynaptic
    :math:`r_1` (:math:`\tau_+`) and :math:`r_2` (:math:`\tau_x`) of the spikes reaching the
    synapses (delayed, the connection's ``spikes``), postsynaptic :math:`o_1` (:math:`\tau_-`)
    and :math:`o_2` (:math:`\tau_y`) of the neuron's ``spikes``. Each :meth:`step`, with
    :math:`\lambda = e^{-dt/\tau}` per trace:

    .. math::

        r_1 &\leftarrow \lambda_+ r_1, \quad r_2 \leftarrow \lambda_x r_2, \quad
        o_1 \leftarrow \lambda_- o_1, \quad o_2 \leftarrow \lambda_y o_2 \\
        W &\leftarrow \mathrm{clamp}\Big(W
            + \big\langle r_1 \otimes s^{post}(A_2^+ + A_3^+ o_2)\big\rangle
            - \big\langle s^{pre}(A_2^- + A_3^- r_2) \otimes o_1\big\rangle,
            \ w_{min},\ w_{max}\Big) \\
        r_{1,2} &\leftarrow r_{1,2} + s^{pre}, \qquad o_{1,2} \leftarrow o_{1,2} + s^{post}

    i.e. at a presynaptic spike :math:`w \leftarrow w - o_1(A_2^- + A_3^- r_2)` and at a
    postsynaptic spike :math:`w \leftarrow w + r_1(A_2^+ + A_3^+ o_2)`, with :math:`r_2` and
    :math:`o_2` taken before this spike's own increment (the paper's :math:`t - \epsilon`).
    Spike times on the step grid give the paper's continuous-time values exactly; a pre and a
    post spike in the same step do not see each other. Means over the batch (and positions
    for convolutions) as the other rules: two stacked matrix products of ``(B, ·)`` factors,
    no ``(B, O, I)`` tensor with an int delay.

    Own traces, not the layers': the neurons' and connections' traces have PySNN's own
    parameters (``alpha_t``, ``tau_t``, linear or exponential updates) and one time constant
    each, while the model needs two per side with unit jumps. They are
    ``layers[name]["r1"]``, ``["r2"]`` (the compact presynaptic shape, ``(B, 1, I)`` or
    ``(B, 1, K, L)``; with per-synapse delays ``(B, O, I)`` / ``(B, C_out, K, L)``),
    ``["o1"]`` and ``["o2"]`` (the neuron's shape), each holding the trace just after the last
    step's jumps; :meth:`reset_state` zeroes them. As for the other rules the rule is not an
    ``nn.Module``: its traces are not in a network's ``state_dict`` (save
    ``layers[name][key]`` yourself to resume mid-sequence).

    :param layers: the layers to train (see :class:`LearningRule`).
    :param a2_plus: pair potentiation amplitude :math:`A_2^+ \ge 0` (weight units per pair).
    :param a3_plus: triplet potentiation amplitude :math:`A_3^+ \ge 0` (weight units).
    :param a2_minus: pair depression amplitude :math:`A_2^- \ge 0` (weight units).
    :param a3_minus: triplet depression amplitude :math:`A_3^- \ge 0` (weight units).
    :param tau_plus: time constant of :math:`r_1` in ms (default 16.8).
    :param tau_minus: time constant of :math:`o_1` in ms (default 33.7).
    :param tau_x: time constant of :math:`r_2` in ms (default 101).
    :param tau_y: time constant of :math:`o_2` in ms (default 125).
    :param w_min: keyword-only, optional lower weight bound (hard, clamped after each step).
    :param w_max: keyword-only, optional upper weight bound.
    :param dt: keyword-only, the time step in ms; default: each connection's ``dt``, read
        when the rule is built.
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :class:`LearningRule`).
    :param process_group: keyword-only, synchronise over these ranks (see
        :class:`LearningRule` and :mod:`pysnn.distributed`).

    :data:`PFISTER_GERSTNER_2006` holds the paper's minimal all-to-all fits as keywords:
    ``TripletSTDP(net.layers, **PFISTER_GERSTNER_2006["visual_cortex"])``.
    :meth:`update_state` does nothing: :meth:`step` updates weights and traces.
    """

    _TRACES = ("r1", "r2", "o1", "o2")

    def __init__(
        self,
        layers: "OrderedDict[str, Dict[str, Any]]",
        a2_plus: float,
        a3_plus: float,
        a2_minus: float,
        a3_minus: float,
        tau_plus: float = 16.8,
        tau_minus: float = 33.7,
        tau_x: float = 101.0,
        tau_y: float = 125.0,
        *,
        w_min: Optional[float] = None,
        w_max: Optional[float] = None,
        dt: Optional[float] = None,
        backend: str = "auto",
        process_group: Any = None,
    ) -> None:
        owner = type(self).__name__
        amplitudes = dict(a2_plus=a2_plus, a3_plus=a3_plus, a2_minus=a2_minus, a3_minus=a3_minus)
        amplitudes = {k: _check_real(v, k, owner, low=0.0) for k, v in amplitudes.items()}
        taus = dict(tau_plus=tau_plus, tau_minus=tau_minus, tau_x=tau_x, tau_y=tau_y)
        taus = {k: _check_real(v, k, owner, low=0.0, low_open=True) for k, v in taus.items()}
        if dt is not None:
            dt = _check_real(dt, "dt", owner, low=0.0, low_open=True)
        w_min, w_max = _check_bounds(w_min, w_max, owner)
        defaults = dict(**amplitudes, **taus, w_min=w_min, w_max=w_max, dt=dt)
        super().__init__(layers, defaults, backend=backend, process_group=process_group)
        for key, value in {**amplitudes, **taus}.items():
            setattr(self, key, value)
        self.w_min, self.w_max, self.dt = w_min, w_max, dt
        # per layer: decay factors of r1, r2, o1, o2 over one step
        self._decays: Dict[str, Tuple[float, float, float, float]] = {}
        for name, layer in self.layers.items():
            step = dt if dt is not None else _layer_dt(layer, owner)
            self._decays[name] = tuple(
                math.exp(-step / taus[key]) for key in ("tau_plus", "tau_x", "tau_minus", "tau_y")
            )
            weight = layer.weight
            pre = layer.pre_spikes
            pre_shape = (pre.shape[0], 1) + tuple(pre.shape[2:])
            if not layer._is_compact(pre):
                pre_shape = tuple(pre.shape)
            options = dict(dtype=weight.dtype, device=weight.device)
            for key, shape in zip(
                self._TRACES, (pre_shape, pre_shape) + (layer.post_spikes.shape,) * 2
            ):
                layer.state[key] = torch.zeros(shape, **options)

    def update_state(self) -> None:
        """Nothing to do: :meth:`step` updates the weights, then the traces."""

    def reset_state(self) -> None:
        """Zero the rule's four traces."""
        for layer in self.layers.values():
            for key in self._TRACES:
                layer.state[key].zero_()

    @staticmethod
    def _follow(layer: _Layer, weight: Tensor, keys: Sequence[str]) -> List[Tensor]:
        """The rule's tensors ``keys``, moved to the weight's device and dtype if it moved."""
        tensors = []
        for key in keys:
            tensor = layer.state[key]
            if tensor.dtype != weight.dtype or tensor.device != weight.device:
                tensor = layer.state[key] = tensor.to(device=weight.device, dtype=weight.dtype)
            tensors.append(tensor)
        return tensors

    def step(self) -> None:
        """Decay the traces, update the weights, then add this step's spikes to the traces."""
        self._check_native()
        for name, layer in self.layers.items():
            weight = layer.weight_matrix()
            r1, r2, o1, o2 = self._follow(layer, weight, self._TRACES)
            pre = layer.pre_spikes
            if r1.shape[1] == 1:
                pre = pre.narrow(1, 0, 1)  # compact: the same spikes for every output
            post = layer.post_spikes
            for trace, decay in zip((r1, r2, o1, o2), self._decays[name]):
                trace.mul_(decay)
            # the factors that multiply the other side's fast trace, before the jumps
            ltp = layer.buffer("triplet_ltp", o2)  # s_post·(A2+ + A3+·o2)
            torch.mul(o2, self.a3_plus, out=ltp).add_(self.a2_plus).mul_(post)
            ltd = layer.buffer("triplet_ltd", r2)  # s_pre·(A2- + A3-·r2)
            torch.mul(r2, self.a3_minus, out=ltd).add_(self.a2_minus).mul_(pre)
            terms = [(r1, ltp, 1.0), (ltd, o1, -1.0)]
            layer.accumulate(weight, terms, bounds=(self.w_min, self.w_max))
            layer.apply_mask()
            for trace, spikes in ((r1, pre), (r2, pre), (o1, post), (o2, post)):
                trace.add_(spikes)


class Hebbian(LearningRule):
    r"""Trace-based Hebbian learning: every pre/post coincidence potentiates, in either order.

    At every :meth:`step` (means over the batch, and positions for convolutions):

    .. math::

        W \leftarrow \mathrm{clamp}\Big((1 - \delta)\,W + \eta\,\big(\langle x^{pre}
            s^{post}\rangle + \langle s^{pre} x^{post}\rangle\big),\ w_{min},\ w_{max}\Big)

    — the presynaptic trace at each postsynaptic spike plus the postsynaptic trace at each
    (delayed) presynaptic spike, with the layers' own traces (as :class:`STDP`; both terms
    count a pair in the same step). The weight decay :math:`\delta` = ``decay`` shrinks every
    weight by the fraction :math:`\delta` per step, :math:`\Delta W = -\delta W` (an L2 decay
    that alone relaxes :math:`W` to 0 with time constant :math:`-dt/\ln(1-\delta)`); it keeps
    the unbounded growth of pure Hebbian learning in check. It is applied in the same matrix
    product as the correlations (its ``beta``), so it costs no extra pass.

    :param layers: the layers to train (see :class:`LearningRule`).
    :param lr: learning rate :math:`\eta > 0` (weight units per unit of trace).
    :param decay: keyword-only, weight decay :math:`\delta \in [0, 1]` per step (0: none).
    :param w_min: keyword-only, optional lower weight bound (clamped after each step).
    :param w_max: keyword-only, optional upper weight bound.
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :class:`LearningRule`).
    :param process_group: keyword-only, synchronise over these ranks (see
        :class:`LearningRule` and :mod:`pysnn.distributed`).

    :meth:`update_state` and :meth:`reset_state` do nothing (no state between steps).
    """

    def __init__(
        self,
        layers: "OrderedDict[str, Dict[str, Any]]",
        lr: float,
        *,
        decay: float = 0.0,
        w_min: Optional[float] = None,
        w_max: Optional[float] = None,
        backend: str = "auto",
        process_group: Any = None,
    ) -> None:
        owner = type(self).__name__
        lr = _check_real(lr, "lr", owner, low=0.0, low_open=True)
        decay = _check_real(decay, "decay", owner, low=0.0, high=1.0)
        w_min, w_max = _check_bounds(w_min, w_max, owner)
        defaults = dict(lr=lr, decay=decay, w_min=w_min, w_max=w_max)
        super().__init__(layers, defaults, backend=backend, process_group=process_group)
        self.lr, self.decay = lr, decay
        self.w_min, self.w_max = w_min, w_max

    def update_state(self) -> None:
        """Nothing to do: :meth:`step` reads the current traces and spikes."""

    def reset_state(self) -> None:
        """Nothing to reset: the rule keeps no state between steps."""

    def step(self) -> None:
        """Apply one Hebbian update to every layer (see the class docstring)."""
        self._check_native()
        for layer in self.layers.values():
            weight = layer.weight_matrix()
            terms = [
                (layer.pre_trace, layer.post_spikes, self.lr),
                (layer.pre_spikes, layer.post_trace, self.lr),
            ]
            layer.accumulate(weight, terms, beta=1.0 - self.decay, bounds=(self.w_min, self.w_max))
            layer.apply_mask()
