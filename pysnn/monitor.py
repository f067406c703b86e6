"""Recording of neuron and connection state over time.

A :class:`Monitor` copies named tensors of one module (buffers such as ``spikes``, ``v_cell``,
``trace``, or tensor attributes such as ``thresh`` and ``weight``) into storage that lives on the
module's device, after every forward call of the module (a forward hook) or whenever
:meth:`Monitor.record` is called. A step costs one device copy per variable: no host
synchronisation, no transfer to the CPU, no concatenation.

**Time comes first** in recordings: :meth:`Monitor.get` returns ``(T, *shape)``, row ``k`` the
``k``-th record. This differs on purpose from PySNN's *inputs*, which carry time last
(``(B, 1, I, T)``): a recording grows along time, and ``(T, ...)`` rows are contiguous.

Storage is either

* a ring of exactly ``max_steps`` rows, allocated once, that keeps the last ``max_steps``
  records (bounded memory for long runs), or
* with ``max_steps=None``, a growing buffer whose capacity doubles when full (amortised O(1) per
  record, O(T) in total — not the O(T²) of growing by concatenation).

Per-synapse buffers of connections (``trace`` and, with a uniform delay, ``spikes`` and ``delay``)
are broadcast views: stride 0 along the postsynaptic axis. They are recorded **compactly**: only
the distinct values (the ``(B, 1, I)`` presynaptic state) are copied each step, and
:meth:`Monitor.get` returns a broadcast view of shape ``(T, B, O, I)`` over them (call
``get(name, compact=True)`` for the stored ``(T, B, 1, I)`` tensor). No per-synapse tensor is ever
materialised for them.
"""

from collections import OrderedDict, deque
from numbers import Integral
from typing import Deque, Dict, Iterator, KeysView, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from pysnn.neuron import BaseInput, BaseNeuron

__all__ = ["Monitor", "NetworkMonitor"]

_GROWING_START_ROWS = 16


def _compact_view(tensor: Tensor) -> Tensor:
    """Narrow every broadcast (stride-0) dimension of ``tensor`` to size 1: a view, no copy."""
    for dim, (size, stride) in enumerate(zip(tensor.shape, tensor.stride())):
        if stride == 0 and size > 1:
            tensor = tensor.narrow(dim, 0, 1)
    return tensor


def _check_count(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
    return int(value)


class _Recording:
    """Storage of one variable: the source tensor's compact view and the rows recorded so far."""

    __slots__ = ("name", "source", "compact", "full_shape", "storage")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source: Optional[Tensor] = None
        self.compact: Optional[Tensor] = None
        self.full_shape: Tuple[int, ...] = ()
        self.storage: Optional[Tensor] = None

    def refresh(self, value: Tensor, rows: int, length: int, owner: str) -> None:
        """Follow a new source tensor (first record, or the module was moved with ``.to()``)."""
        compact = _compact_view(value.detach())
        storage = self.storage
        if storage is not None and storage.shape[1:] != compact.shape:
            if length > 0:
                raise ValueError(
                    f"{owner}: {self.name!r} changed shape from {self.full_shape} to "
                    f"{tuple(value.shape)} during a recording; call reset() first"
                )
            storage = None
        if storage is None:
            # Zero-filled, not empty: the pages are touched now, once, instead of a page fault
            # per record the first time round the ring (several µs per 4 KiB page).
            storage = compact.new_zeros((rows,) + tuple(compact.shape))
        elif storage.dtype != compact.dtype or storage.device != compact.device:
            # Keep earlier records, converted like the module was (e.g. .to(torch.float64)).
            storage = storage.to(device=compact.device, dtype=compact.dtype)
        self.source = value
        self.compact = compact
        self.full_shape = tuple(value.shape)
        self.storage = storage


class Monitor:
    """Record named tensors of a module at every step.

    :param module: any neuron, connection or other :class:`torch.nn.Module`.
    :param variables: attribute names of ``module`` that hold tensors, e.g. ``["spikes",
        "v_cell"]`` for a neuron, ``["weight", "trace"]`` for a connection (a single str is one
        variable).
    :param max_steps: ``None`` to keep every record (growing storage, capacity doubling), or an
        int ≥ 1: a ring of exactly ``max_steps`` rows that keeps the last ``max_steps`` records.
    :param every: record every ``every``-th step only (steps ``every − 1``, ``2·every − 1``, …,
        counted from 0; i.e. the ``every``-th, ``2·every``-th, … forward call).
    :param hook: keyword-only. ``True`` (default): a forward hook on ``module`` counts the steps
        and records after the module's forward. ``False``: nothing is registered; call
        :meth:`record` yourself, or pass the monitor to :func:`pysnn.simulation.run`, which then
        counts a step (honouring ``every``) at the end of each time step, *after* the learning
        rule — the right moment to record weights.

    Records are copies taken on the module's device, in the variables' dtype; if the module is
    moved (``.to(torch.float64)``, ``.to("cuda")``) the monitor follows the new tensors and
    converts the records taken so far. A variable must keep its shape while it is recorded
    (record ``spikes`` rather than a neuron's growing ``complete_trace``). A monitor with a hook
    stays attached until :meth:`remove` (or the end of a ``with`` block); several monitors may
    watch the same module. A recorded variable that stops being a tensor (e.g. set to ``None``)
    raises :class:`ValueError` naming the variable and the module at the next record, and with
    a hook already before the module's next forward (a forward pre-hook checks it).

    Example::

        with Monitor(net.neuron1, ["spikes", "v_cell"], max_steps=1000) as mon:
            for t in range(inputs.shape[-1]):
                net(inputs[..., t])
        spikes = mon.get("spikes")  # (T, B, 1, N) bool, time first
    """

    def __init__(
        self,
        module: nn.Module,
        variables: Union[str, Sequence[str]],
        max_steps: Optional[int] = None,
        every: int = 1,
        *,
        hook: bool = True,
    ) -> None:
        owner = type(self).__name__
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"{owner}: module must be a torch.nn.Module, got {type(module).__name__}"
            )
        if isinstance(variables, str):
            variables = (variables,)
        if not isinstance(variables, (list, tuple)) or not variables:
            raise TypeError(
                f"{owner}: variables must be a str or a non-empty list of attribute names, "
                f"got {variables!r}"
            )
        for name in variables:
            if not isinstance(name, str):
                raise TypeError(f"{owner}: variable names must be str, got {name!r}")
            if not isinstance(getattr(module, name, None), Tensor):
                raise ValueError(
                    f"{owner}: {type(module).__name__} has no tensor attribute {name!r} "
                    f"(variables must name buffers, parameters or tensor attributes)"
                )
        if len(set(variables)) != len(variables):
            raise ValueError(f"{owner}: variables must be unique, got {list(variables)}")
        if max_steps is not None:
            max_steps = _check_count(max_steps, "max_steps", owner)
        if not isinstance(hook, bool):
            raise TypeError(f"{owner}: hook must be a bool, got {hook!r}")
        self.module = module
        self.variables: Tuple[str, ...] = tuple(variables)
        self.max_steps = max_steps
        self.every = _check_count(every, "every", owner)
        self._recordings = [_Recording(name) for name in self.variables]
        self._length = 0  # records since the last reset (may exceed max_steps)
        self._calls = 0  # steps counted since the last reset
        self._steps: Union[List[int], Deque[int]] = self._new_steps()
        self._handle = module.register_forward_hook(self._on_forward) if hook else None
        self._pre_handle = module.register_forward_pre_hook(self._before_forward) if hook else None
        # Allocate now so the memory cost shows at construction, not in the middle of a run.
        self._sync_sources()

    # -- recording -------------------------------------------------------------------------
    def _new_steps(self) -> Union[List[int], Deque[int]]:
        return [] if self.max_steps is None else deque(maxlen=self.max_steps)

    def _lost_source(self, name: str, value) -> ValueError:
        """The error for a monitored variable that is no longer a tensor (e.g. set to None)."""
        return ValueError(
            f"{type(self).__name__}: the monitored variable {name!r} of module "
            f"{type(self.module).__name__} is no longer a tensor (got "
            f"{type(value).__name__}); it was replaced after the monitor was created. "
            f"Call reset_state() on the module (or assign a tensor of the same shape) before "
            f"running it, or remove() this monitor"
        )

    def _check_sources(self) -> None:
        """Raise the clear error if a monitored variable is no longer a tensor (cheap)."""
        module = self.module
        for recording in self._recordings:
            value = getattr(module, recording.name, None)
            if value is not recording.source and not isinstance(value, Tensor):
                raise self._lost_source(recording.name, value)

    def _sync_sources(self) -> None:
        rows = self.max_steps if self.max_steps is not None else _GROWING_START_ROWS
        for recording in self._recordings:
            value = getattr(self.module, recording.name, None)
            if value is not recording.source:
                if not isinstance(value, Tensor):
                    raise self._lost_source(recording.name, value)
                recording.refresh(value, rows, self._length, type(self).__name__)

    def _before_forward(self, module: nn.Module, args) -> None:
        # A variable set to None would otherwise fail deep inside the module's forward (e.g.
        # "descriptor 'data_ptr' ... doesn't apply to a 'NoneType' object").
        self._check_sources()

    def _on_forward(self, module: nn.Module, args, output) -> None:
        self._count_step()

    def _count_step(self) -> None:
        """Count one time step; record if it is an ``every``-th one."""
        self._calls += 1
        if self._calls % self.every == 0:
            self.record()

    def record(self) -> None:
        """Record the current value of every variable now (regardless of ``every``).

        One device-to-device copy per variable (only the distinct values of broadcast views);
        no host synchronisation.
        """
        self._sync_sources()
        length = self._length
        if self.max_steps is None:
            row = length
            for recording in self._recordings:
                storage = recording.storage
                if row == storage.shape[0]:
                    grown = storage.new_empty((2 * row,) + tuple(storage.shape[1:]))
                    grown[:row].copy_(storage)
                    recording.storage = storage = grown
                storage[row].copy_(recording.compact)
        else:
            row = length % self.max_steps
            for recording in self._recordings:
                recording.storage[row].copy_(recording.compact)
        self._steps.append(self._calls - 1)
        self._length = length + 1

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of records held (at most ``max_steps``)."""
        if self.max_steps is None:
            return self._length
        return min(self._length, self.max_steps)

    @property
    def capacity(self) -> int:
        """Rows allocated per variable (``max_steps`` for a ring; grows by doubling otherwise)."""
        return int(self._recordings[0].storage.shape[0])

    @property
    def steps(self) -> Tensor:
        """0-based step index (forward call) of each record held, int64 of shape ``(T,)``.

        With ``every=k`` these are ``k − 1, 2k − 1, …``; a manual :meth:`record` gets the index
        of the last counted step (−1 before the first one).
        """
        return torch.tensor(list(self._steps), dtype=torch.int64)

    def _recording(self, name: str) -> _Recording:
        for recording in self._recordings:
            if recording.name == name:
                return recording
        raise KeyError(
            f"{type(self).__name__}: {name!r} is not recorded; recorded variables: "
            f"{list(self.variables)}"
        )

    def get(self, name: str, *, compact: bool = False) -> Tensor:
        """The records of one variable, oldest first, **time first**: ``(T, *shape)``.

        :param name: a recorded variable.
        :param compact: keyword-only; for broadcast (per-synapse) variables, return the stored
            tensor with size-1 broadcast axes instead of a broadcast view of the full shape.
        :returns: a new tensor (later records do not change it) on the module's device. For
            broadcast variables it is a broadcast view (stride 0) over the compact records:
            clone it before writing into it.
        :raises KeyError: ``name`` is not recorded.
        """
        recording = self._recording(name)
        storage = recording.storage
        held = len(self)
        if self.max_steps is not None and self._length > self.max_steps:
            cut = self._length % self.max_steps
            data = torch.cat((storage[cut:], storage[:cut]))
        else:
            data = storage[:held].clone()
        if compact:
            return data
        return data.expand((held,) + recording.full_shape)

    def to_numpy(self) -> Dict[str, np.ndarray]:
        """Every variable as a NumPy array ``(T, *shape)`` (copied to the CPU).

        Broadcast variables come as read-only broadcast arrays (stride 0), not materialised.

        :returns: dict name → ndarray.
        """
        arrays = {}
        for name in self.variables:
            compact = self.get(name, compact=True).cpu()
            if compact.dtype == torch.bfloat16:  # NumPy has no bfloat16
                compact = compact.float()
            full = (compact.shape[0],) + self._recording(name).full_shape
            array = compact.numpy()
            if tuple(array.shape) != full:
                array = np.broadcast_to(array, full)
            arrays[name] = array
        return arrays

    # -- life cycle ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every record and the step count (the storage is kept for reuse)."""
        self._length = 0
        self._calls = 0
        self._steps = self._new_steps()

    def remove(self) -> None:
        """Detach the forward hook (records are kept). Safe to call twice."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if getattr(self, "_pre_handle", None) is not None:
            self._pre_handle.remove()
            self._pre_handle = None

    @property
    def attached(self) -> bool:
        """Whether a forward hook is registered on the module."""
        return self._handle is not None

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.module).__name__}, {list(self.variables)}, "
            f"max_steps={self.max_steps}, every={self.every}, records={len(self)}, "
            f"attached={self.attached})"
        )


class NetworkMonitor:
    """Record the same variables of every neuron (and input) of a network.

    One :class:`Monitor` per neuron module, keyed by the module's name in the network
    (``network.named_modules()``, e.g. ``"input"``, ``"neuron1"``); each records after its own
    neuron's forward call.

    :param network: an :class:`~pysnn.network.SNNNetwork` (any module containing pysnn neurons).
    :param variables: variables to record; a neuron lacking one (e.g. an ``Input`` has no
        ``v_cell``) records only the others.
    :param max_steps: as :class:`Monitor`.
    :param every: as :class:`Monitor`.
    :param hook: keyword-only, as :class:`Monitor`.
    :raises ValueError: no neuron in ``network``, or no neuron has one of ``variables``.
    """

    def __init__(
        self,
        network: nn.Module,
        variables: Union[str, Sequence[str]] = ("spikes",),
        max_steps: Optional[int] = None,
        every: int = 1,
        *,
        hook: bool = True,
    ) -> None:
        owner = type(self).__name__
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"{owner}: network must be a torch.nn.Module, got {type(network).__name__}"
            )
        if isinstance(variables, str):
            variables = (variables,)
        if not isinstance(variables, (list, tuple)) or not variables:
            raise TypeError(f"{owner}: variables must be a non-empty list of names")
        neurons = [
            (name, module)
            for name, module in network.named_modules()
            if isinstance(module, (BaseNeuron, BaseInput))
        ]
        if not neurons:
            raise ValueError(f"{owner}: {type(network).__name__} contains no pysnn neuron")
        for variable in variables:
            if not any(isinstance(getattr(m, variable, None), Tensor) for _, m in neurons):
                raise ValueError(f"{owner}: no neuron of the network has a tensor {variable!r}")
        self.variables: Tuple[str, ...] = tuple(variables)
        self.monitors: "OrderedDict[str, Monitor]" = OrderedDict()
        for name, module in neurons:
            present = [v for v in variables if isinstance(getattr(module, v, None), Tensor)]
            if present:
                self.monitors[name] = Monitor(module, present, max_steps, every, hook=hook)

    def __getitem__(self, name: str) -> Monitor:
        """The :class:`Monitor` of the neuron called ``name``."""
        try:
            return self.monitors[name]
        except KeyError:
            raise KeyError(
                f"{type(self).__name__}: no monitored neuron {name!r}; monitored: "
                f"{list(self.monitors)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.monitors)

    def __len__(self) -> int:
        return len(self.monitors)

    def keys(self) -> KeysView[str]:
        """Names of the monitored neurons."""
        return self.monitors.keys()

    def get(self, name: str, variable: Optional[str] = None, *, compact: bool = False) -> Tensor:
        """Records of one neuron, time first: ``(T, *cells_shape)``.

        :param name: neuron module name.
        :param variable: defaults to the first of ``variables`` (``"spikes"`` by default).
        :param compact: as :meth:`Monitor.get`.
        """
        return self[name].get(variable or self.variables[0], compact=compact)

    def to_numpy(self) -> Dict[str, Dict[str, np.ndarray]]:
        """All records as NumPy arrays: ``{neuron name: {variable: (T, ...) array}}``."""
        return {name: monitor.to_numpy() for name, monitor in self.monitors.items()}

    def record(self) -> None:
        """Record every neuron now."""
        for monitor in self.monitors.values():
            monitor.record()

    def _count_step(self) -> None:
        for monitor in self.monitors.values():
            monitor._count_step()

    def _check_sources(self) -> None:
        for monitor in self.monitors.values():
            monitor._check_sources()

    @property
    def attached(self) -> bool:
        """Whether the monitors' forward hooks are registered."""
        return any(monitor.attached for monitor in self.monitors.values())

    def reset(self) -> None:
        """Forget all records."""
        for monitor in self.monitors.values():
            monitor.reset()

    def remove(self) -> None:
        """Detach every hook."""
        for monitor in self.monitors.values():
            monitor.remove()

    def __enter__(self) -> "NetworkMonitor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.monitors)}, variables={list(self.variables)})"
