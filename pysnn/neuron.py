"""Neuron models: state buffers and the order of one simulation step.

The maths of every update lives in :mod:`pysnn.functional`; a neuron owns its state (registered
buffers, so ``.to(device/dtype)``, ``state_dict`` and ``load_state_dict`` work) and calls the
update functions in PySNN's step order:

fold input → update voltage → spike (``v >= thresh``) → update trace (and threshold) from the new
spikes → refractory bookkeeping and reset → append history → return ``(spikes, trace)``.

Shapes: ``cells_shape`` has the batch first, e.g. ``(B, 1, N)`` for a layer of N neurons or
``(B, C, H, W)`` for a convolutional layer. Inputs to a neuron carry one more axis, the fan-in
("trace") axis R, last: ``cells_shape + (R,)``; it is summed away (see :meth:`BaseNeuron.fold`).
Times (``dt``, ``duration_refrac``, exponential time constants) are in milliseconds.
"""

import math
from numbers import Integral, Real
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from pysnn import functional as sf
from pysnn import native
from pysnn._backend import BackendMixin, KernelCache, StateMixin
from pysnn._checks import (
    broadcast_shape,
    _check_cells_shape,
    _check_input_shape,
    _check_positive_real,
    _check_step_input,
    _check_tau_values,
    _check_update_type,
    _factory_kwargs,
)
from pysnn.utils import _set_no_grad

ParamValue = Union[float, Tensor]
Inputs = Union[Tensor, Sequence[Tensor]]

__all__ = [
    "BaseInput",
    "Input",
    "BaseNeuron",
    "IFNeuron",
    "LIFNeuron",
    "AdaptiveLIFNeuron",
    "FedeNeuron",
    "IzhikevichNeuron",
    "CubaLIFNeuron",
    "DEFAULT_TIME_CONSTANTS_MS",
]

_HISTORY_START_CAPACITY = 64
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)

#: Time constants (ms) used when ``tau_v``, ``tau_t`` or ``tau_thresh`` is not given (``None``):
#: a 20 ms membrane time constant and a 20 ms trace (the STDP window of Bi & Poo 1998 and Song,
#: Miller & Abbott 2000), and a 100 ms threshold adaptation. Under ``update_type="exponential"``
#: the parameter is this time constant; under ``"linear"`` it is the decay factor per step
#: ``exp(-dt / tau)``, the exact decay of that time constant over one step (0.951229 for ``tau_v``
#: at ``dt=1``), so the default means the same dynamics for every ``dt`` and update type.
DEFAULT_TIME_CONSTANTS_MS = {"tau_v": 20.0, "tau_t": 20.0, "tau_thresh": 100.0}


def _tau_or_default(value, name: str, dt, update_type: str, owner: str):
    """``value``, or for ``None`` the default of ``name`` (:data:`DEFAULT_TIME_CONSTANTS_MS`) in
    the form ``update_type`` reads: the time constant in ms, or the decay ``exp(-dt / tau)``.

    ``dt`` is the constructor's argument, already checked (a number or a one-element tensor).
    """
    if value is not None:
        return value
    tau = DEFAULT_TIME_CONSTANTS_MS[name]
    dt = dt.item() if isinstance(dt, Tensor) else float(dt)
    if update_type == "linear":
        return math.exp(-dt / tau)
    if tau < dt:
        raise ValueError(
            f"{owner}: {name} must be >= dt = {dt:g} ms for update_type='exponential', and "
            f"its default, {tau:g} ms, is smaller: pass {name} explicitly"
        )
    return tau


def _summary(tensor: Tensor) -> str:
    """A parameter for ``repr``: its value when every cell shares it, else its range.

    Reads the values (a host sync on an accelerator): for ``repr`` only, never for a step.
    """
    if tensor.is_meta or tensor.numel() == 0:  # no values to show
        return f"tensor of shape {tuple(tensor.shape)} on {tensor.device}"
    low, high = tensor.detach().min().item(), tensor.detach().max().item()
    if low == high:
        return f"{low:g}"
    return f"[{low:g}..{high:g}] (per cell)"


def _batch_hint(shape: Tuple[int, ...], cells_shape: Tuple[int, ...]) -> str:
    """What to say when an input's batch (axis 0) differs from ``cells_shape[0]``, else ``""``."""
    if len(shape) < len(cells_shape) or shape[0] in (1, cells_shape[0]):
        return ""  # no batch axis of its own, or one that broadcasts
    cells = tuple(shape[1 : len(cells_shape)])
    if broadcast_shape(cells, cells_shape[1:]) != tuple(cells_shape[1:]):
        return ""  # the cell axes do not fit either: not only a matter of batch size
    batch, built = shape[0], cells_shape[0]
    return (
        f": its batch size is {batch}, but this layer was built for batch size {built}. The "
        f"batch size is fixed at construction (cells_shape[0] = {built}) because the state "
        "(voltage, trace, spikes, ...) is kept per sample. To run batches of "
        f"{batch}, construct the modules again with cells_shape[0] = {batch} (and "
        f"batch_size={batch} for the connections); a last, smaller batch can instead be "
        "dropped (DataLoader(..., drop_last=True)) or padded to the full size"
    )


def _concat_fan_in(x: Sequence[Tensor], name: str, owner: str) -> Tensor:
    """Concatenate a list of inputs along the fan-in axis, naming the argument on a mismatch."""
    if len(x) == 0:
        raise ValueError(f"{owner}: the {name} list is empty; pass at least one tensor")
    for item in x:
        if not isinstance(item, Tensor):
            raise TypeError(
                f"{owner}: the {name} list must hold tensors only, got {type(item).__name__}"
            )
    try:
        return torch.cat(list(x), dim=-1)
    except (RuntimeError, TypeError) as err:
        shapes = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in x]
        raise ValueError(
            f"{owner}: the tensors of the {name} list must match in all but the last (fan-in) "
            f"axis, got {shapes}"
        ) from err


def _cells_shape(cells_shape, owner: str) -> Tuple[int, ...]:
    """``_check_cells_shape`` that also accepts numpy (any ``numbers.Integral``) integers."""
    if isinstance(cells_shape, (tuple, list)):
        cells_shape = tuple(
            int(n) if isinstance(n, Integral) and not isinstance(n, bool) else n
            for n in cells_shape
        )
    return _check_cells_shape(cells_shape, owner)


def _check_dt(dt, dtype: torch.dtype, owner: str, name: str = "dt") -> float:
    """A positive finite ``dt`` that stays positive and finite in the state's ``dtype``."""
    dt = _check_positive_real(dt, name, owner, unit=" (ms)")
    stored = torch.tensor(dt, dtype=dtype).item()
    if not (math.isfinite(stored) and stored > 0):
        raise ValueError(
            f"{owner}: {name} = {dt!r} ms becomes {stored} in {dtype}; it must stay a positive "
            "finite number in the state's dtype"
        )
    return dt


def _check_bool(value, name: str, owner: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, got {value!r}")
    return value


def _check_tau_dt(tensor: Tensor, name: str, dt: Tensor, owner: str) -> None:
    """Exponential time constants below ``dt`` make the forward-Euler step overshoot."""
    if tensor.is_meta or dt.is_meta or tensor.numel() == 0:
        return  # no values to compare
    low = tensor.min()
    if bool(low < dt.to(device=low.device, dtype=low.dtype)):
        hint = ""
        if 0 <= low.item() <= 1:
            hint = (
                f" (for a decay factor per step in [0, 1], such as {low.item():g}, use "
                "update_type='linear')"
            )
        raise ValueError(
            f"{owner}: {name} must be >= dt = {dt.item():g} ms for update_type='exponential' "
            f"(dt/{name} > 1 makes the forward-Euler update overshoot and oscillate), "
            f"got {low.item():g}{hint}"
        )


def _check_real_input(x, name: str, owner: str) -> None:
    """Inputs are bool, integer or floating-point tensors (no complex values)."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{owner}: {name} must be a torch.Tensor or a list of tensors, got {type(x).__name__}"
        )
    if x.is_complex():
        raise TypeError(f"{owner}: {name} must be real (bool, int or float), got {x.dtype}")


def _check_fan_in(x: Tensor, cells_shape: Tuple[int, ...], name: str, owner: str) -> None:
    """``x`` must carry the fan-in axis last: ``cells_shape + (R,)`` (size-1 axes broadcast)."""
    if x.dim() != len(cells_shape) + 1:
        raise ValueError(
            f"{owner}: {name} of shape {tuple(x.shape)} must have the fan-in axis last, "
            f"cells_shape + (R,) = ({', '.join(map(str, cells_shape))}, R); add it with "
            "x.unsqueeze(-1)"
        )
    if broadcast_shape(x.shape[:-1], cells_shape) != tuple(cells_shape):
        raise ValueError(
            f"{owner}: {name} of shape {tuple(x.shape)} (cell axes {tuple(x.shape[:-1])}, "
            f"fan-in R = {x.shape[-1]}) does not broadcast to cells_shape {cells_shape}"
            + _batch_hint(tuple(x.shape), cells_shape)
        )


class _StateMixin(StateMixin):
    """Per-cell parameter registration and validation shared by inputs and neurons."""

    cells_shape: Tuple[int, ...]

    def _register_cell_param(self, name: str, value: ParamValue, kind: str = "any") -> None:
        """Register ``value`` as a buffer of ``cells_shape`` (one value per cell).

        ``kind`` is ``"decay"`` (must lie in [0, 1]), ``"time_constant"`` (must be > 0) or
        ``"any"``.
        """
        owner = type(self).__name__
        if isinstance(value, bool) or not isinstance(value, (Real, Tensor)):
            raise TypeError(
                f"{owner}: {name} must be a number or a tensor, got {type(value).__name__}"
            )
        if isinstance(value, Tensor) and (
            value.is_complex()
            or not value.dtype.is_floating_point
            and value.dtype not in _INT_DTYPES
        ):
            raise TypeError(f"{owner}: {name} must be real, got a tensor of {value.dtype}")
        factory = self._factory
        tensor = torch.as_tensor(value, dtype=factory["dtype"]).detach()
        try:
            expanded = tensor.expand(self.cells_shape)
        except RuntimeError:
            raise ValueError(
                f"{owner}: {name} of shape {tuple(tensor.shape)} does not broadcast to "
                f"cells_shape {self.cells_shape}"
            ) from None
        # checked where the value is given, before the state is made on its device
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{owner}: {name} must be finite, got {value}")
        if kind != "any":
            _check_tau_values(tensor, name, "linear" if kind == "decay" else "exponential", owner)
        if kind == "time_constant":
            _check_tau_dt(tensor, name, self._buffers["dt"], owner)
        device = factory["device"]
        self.register_buffer(name, (expanded if device is None else expanded.to(device)).clone())

    def no_grad(self) -> None:
        """Switch off gradients of every parameter (nothing here trains by autograd)."""
        _set_no_grad(self)

    def _apply(self, fn, recurse=True):
        # the kernels' argument structs point to the old tensors (they would be rebuilt anyway)
        self.__dict__["_native_cache"] = KernelCache()
        return super()._apply(fn, recurse)

    # -- update type and backend ---------------------------------------------------------------
    _tau_parameters: Tuple[str, ...] = ()  # decays for "linear", time constants otherwise

    @property
    def update_type(self) -> str:
        """``"linear"`` (decay factors in [0, 1]) or ``"exponential"`` (time constants in ms).

        Settable: the step reads it at every call, and setting it checks that every decay or
        time constant fits the new type (nothing changes when one does not).
        """
        return self.__dict__["_update_type"]

    @update_type.setter
    def update_type(self, value: str) -> None:
        owner = type(self).__name__
        value = _check_update_type(value, owner)
        for name in self._tau_parameters:
            tensor = self._buffers.get(name)
            if tensor is not None:
                _check_tau_values(tensor, name, value, owner)
                if value == "exponential":
                    _check_tau_dt(tensor, name, self._buffers["dt"], owner)
        self.__dict__["_update_type"] = value

    # -- loading ---------------------------------------------------------------------------
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # the constructor's checks, on the incoming tensors, before anything is copied
        self._check_loaded_state(state_dict, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _check_loaded_state(self, state_dict, prefix: str) -> None:
        owner = type(self).__name__
        own = {**self._parameters, **self._buffers}
        incoming = {}
        for name, current in own.items():
            value = state_dict.get(prefix + name)
            if (
                not isinstance(value, Tensor)
                or value.is_meta
                or current is None
                or name == "duration_refrac"
            ):
                continue  # duration_refrac: rounded to steps at every step (NaN counts as 0)
            key = prefix + name
            if value.is_floating_point() or value.is_complex():
                if value.is_complex() and not current.is_complex():
                    raise TypeError(f"{owner}: {key} must be real, got {value.dtype}")
                value = value.detach().to(current.dtype)  # what the copy would store
                if not bool(torch.isfinite(value).all()):
                    raise ValueError(
                        f"{owner}: {key} in the state_dict must be finite (in {current.dtype})"
                    )
            incoming[name] = (key, value)
        dt = incoming.get("dt", ("dt", self._buffers.get("dt")))[1]
        if "dt" in incoming and dt.numel() == 1 and not bool(dt > 0):
            raise ValueError(
                f"{owner}: {prefix}dt in the state_dict must be > 0 (ms), got {dt.item()}"
            )
        update_type = self.update_type
        for name in self._tau_parameters:
            if name not in incoming:
                if update_type == "exponential" and "dt" in incoming and name in own:
                    _check_tau_dt(own[name], prefix + name, dt, owner)
                continue
            key, value = incoming[name]
            if value.numel() == 0:
                continue
            _check_tau_values(value, key, update_type, owner)
            if update_type == "exponential" and dt is not None and dt.numel() == 1:
                _check_tau_dt(value, key, dt, owner)


class BaseInput(BackendMixin, _StateMixin, nn.Module):
    """Base class of input neurons: they pass spikes on and keep a presynaptic trace.

    :param cells_shape: shape of the input population, batch first, e.g. ``(B, 1, I)``; a
        non-empty tuple of positive ints. The batch size ``cells_shape[0]`` is fixed at
        construction (the state is kept per sample).
    :param dt: simulation time step in ms, finite and > 0 (default 1.0).
    :param device: keyword-only, where the state is created (``torch.nn``'s factory argument).
    :param dtype: keyword-only, the floating-point dtype of the state (default: torch's).

    Buffers: ``trace`` (float, ``cells_shape``), ``dt`` (0-d, ms), ``spikes`` (bool,
    ``cells_shape``).
    """

    def __init__(
        self,
        cells_shape: Sequence[int],
        dt: float = 1.0,
        *,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.cells_shape = _cells_shape(cells_shape, owner)
        self._factory = factory = _factory_kwargs(device, dtype, owner)
        dt = _check_dt(dt, factory["dtype"], owner)
        self.register_state("trace", torch.zeros(self.cells_shape, **factory), 0)
        self.register_buffer("dt", torch.tensor(dt, **factory))
        spikes = torch.zeros(self.cells_shape, dtype=torch.bool, device=factory["device"])
        self.register_state("spikes", spikes, False)

    def convert_input(self, x: Tensor) -> Tensor:
        """Cast ``x`` to the trace's dtype (bool spikes become 0.0/1.0)."""
        return x.to(self.trace.dtype)

    def reset_state(self) -> None:
        """Zero the trace and the spikes."""
        self.reset_declared_state()

    def init_neuron(self) -> None:
        """Switch off gradients and reset the state."""
        self.no_grad()
        self.reset_state()

    def extra_repr(self) -> str:
        return f"cells_shape={self.cells_shape}, dt={_summary(self.dt)}"


class Input(BaseInput, native_twin=True):
    r"""Input layer: stores incoming spikes and keeps their trace.

    The trace is updated with the input **as given** (not binarised: an input of 2.0 adds
    ``2·alpha_t``), and the input is returned unchanged, as in PySNN. Trace update, with
    :math:`s` the input: ``update_type="linear"``: :math:`x \leftarrow \lambda_t x + \alpha_t s`;
    ``"exponential"``: :math:`x \leftarrow x + \frac{\Delta t}{\tau_t}(-x + \alpha_t s)`.

    Every parameter after ``cells_shape`` has a default, so ``Input((B, 1, I))`` works; PySNN's
    positional order ``(cells_shape, dt, alpha_t, tau_t, update_type)`` is kept.

    :param cells_shape: shape of the input, batch first, e.g. ``(B, 1, I)``; a non-empty tuple
        of positive ints. The batch size ``cells_shape[0]`` is fixed at construction (the state
        is kept per sample).
    :param dt: time step in ms, finite and > 0 (default 1.0).
    :param alpha_t: trace increment per unit of input (dimensionless, default 1.0); a finite
        number or a tensor broadcastable to ``cells_shape`` (one value per cell).
    :param tau_t: the trace's decay: a decay factor per step in [0, 1] under
        ``update_type="linear"``, a time constant in ms (>= ``dt``) under ``"exponential"``;
        number or tensor. Default (``None``): a 20 ms time constant, i.e. ``exp(-dt / 20)``
        (0.951229 at ``dt=1``) under ``"linear"``, 20.0 under ``"exponential"``
        (:data:`DEFAULT_TIME_CONSTANTS_MS`).
    :param update_type: ``"linear"`` (default: ``tau_t`` is a decay factor per step in [0, 1])
        or ``"exponential"`` (``tau_t`` is a time constant in ms); settable later (checked).
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :mod:`pysnn._backend`).
    :param device: keyword-only, where the state is created (``torch.nn``'s factory argument).
    :param dtype: keyword-only, the floating-point dtype of the state (default: torch's).

    State: buffers ``trace`` (float) and ``spikes`` (bool), both ``cells_shape``; parameter
    buffers ``alpha_t`` and ``tau_t`` (``cells_shape``) and ``dt`` (0-d, ms).
    """

    def __init__(
        self,
        cells_shape: Sequence[int],
        dt: float = 1.0,
        alpha_t: ParamValue = 1.0,
        tau_t: Optional[ParamValue] = None,
        update_type: str = "linear",
        *,
        backend: str = "auto",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(cells_shape, dt, device=device, dtype=dtype)
        self.update_type = update_type
        tau_kind = "decay" if update_type == "linear" else "time_constant"
        self._register_cell_param("alpha_t", alpha_t)
        self._register_cell_param(
            "tau_t",
            _tau_or_default(tau_t, "tau_t", dt, self.update_type, type(self).__name__),
            tau_kind,
        )
        self._init_backend(backend)
        self.init_neuron()

    _tau_parameters = ("tau_t",)
    _step_methods = ("forward", "convert_input")

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """One step (:func:`pysnn.functional.input_step`).

        :param x: input spikes (bool) or graded input, broadcastable to ``cells_shape``.
        :returns: ``(x, trace)``: the input as given and the live trace buffer.
        """
        if not (
            type(x) is Tensor
            and x.shape == self.cells_shape
            and not x.is_complex()
            and not (x.requires_grad and torch.is_grad_enabled())
        ):
            owner = type(self).__name__
            _check_real_input(x, "x", owner)
            hint = _batch_hint(tuple(x.shape), self.cells_shape)
            if hint and x.dim() == len(self.cells_shape):
                raise ValueError(
                    f"{owner}: x of shape {tuple(x.shape)} does not broadcast to the cells' "
                    f"shape {self.cells_shape}" + hint
                )
            _check_input_shape(x, self.cells_shape, "x", owner)
            _check_step_input(x, "x", owner)
        buffers = self._buffers
        if self._overrides_step_flag:  # a subclass's own conversion: PyTorch only
            if self._backend == "native":
                self._native_failed(self._static_native_obstacle())
            linear = self.update_type == "linear"
            sf._trace_step(
                self.trace, self.convert_input(x), self.alpha_t, self.tau_t, self.dt, linear
            )
            self.spikes.copy_(x)
            return x, self.trace
        self._dispatch(
            sf.input_step,
            native.input_step,
            x,
            buffers["trace"],
            buffers["spikes"],
            buffers["alpha_t"],
            buffers["tau_t"],
            buffers["dt"],
            self.__dict__["_update_type"],
        )
        return x, buffers["trace"]

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", alpha_t={_summary(self.alpha_t)}, tau_t={_summary(self.tau_t)}"
            + f", update_type={self.update_type!r}, backend={self.backend!r}"
        )


class BaseNeuron(BackendMixin, _StateMixin, nn.Module):
    """Base class of spiking neurons: voltage, threshold, refractory period and trace.

    :param cells_shape: shape of the population, batch first, e.g. ``(B, 1, N)``; a non-empty
        tuple of positive ints. The batch size ``cells_shape[0]`` is fixed at construction.
    :param thresh: firing threshold (voltage units), required; a finite number or a tensor
        broadcastable to ``cells_shape``.
    :param v_rest: resting and reset voltage, a finite number (default 0.0).
    :param dt: time step in ms, finite and > 0 (default 1.0).
    :param duration_refrac: refractory period in ms, >= 0 and an integer multiple of ``dt``
        (default 0.0: no refractory period). A cell that spikes ignores its input for
        ``duration_refrac / dt`` steps.
    :param store_trace: keep the history of spikes in ``complete_trace`` (a bool). The history
        is a recording, not state: it is not in ``state_dict`` (not saved, not restored by
        ``load_state_dict``) and ``reset_state`` restarts it.
    :param device: keyword-only, where the state is created (``torch.nn``'s factory argument).
    :param dtype: keyword-only, the floating-point dtype of the state (default: torch's).

    Subclasses with a C twin (IF, LIF, adaptive LIF) also take a keyword-only ``backend``
    (``"auto"``, ``"torch"`` or ``"native"``, see :mod:`pysnn._backend`), readable and settable
    as :attr:`backend`.

    State: parameter ``thresh`` (``cells_shape``, no gradient); buffers ``v_rest``, ``dt``,
    ``duration_refrac``, ``thresh_center`` (scalars or the threshold as given), ``spikes``
    (bool), ``v_cell``, ``trace`` and ``refrac_counts`` (remaining refractory **steps**, int32),
    all of ``cells_shape``.

    Inputs need the fan-in axis last, ``cells_shape + (R,)``, at every batch size; exponential
    time constants must be >= ``dt``; ``load_state_dict`` checks the incoming values first.
    """

    def __init__(
        self,
        cells_shape: Sequence[int],
        thresh: ParamValue,
        v_rest: float = 0.0,
        dt: float = 1.0,
        duration_refrac: float = 0.0,
        store_trace: bool = False,
        *,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self._factory = factory = _factory_kwargs(device, dtype, owner)
        self.cells_shape = _cells_shape(cells_shape, owner)
        dt = _check_dt(dt, factory["dtype"], owner)
        if isinstance(v_rest, Tensor) and v_rest.numel() == 1:
            v_rest = v_rest.item()
        if isinstance(v_rest, bool) or not isinstance(v_rest, Real):
            raise TypeError(f"{owner}: v_rest must be a real number, got {type(v_rest).__name__}")
        stored = torch.tensor(float(v_rest), dtype=factory["dtype"]).item()
        if not (math.isfinite(v_rest) and math.isfinite(stored)):
            raise ValueError(
                f"{owner}: v_rest must be finite (in {factory['dtype']}), got {v_rest!r}"
            )
        self._refrac_steps(duration_refrac, dt, owner)
        self.store_trace = _check_bool(store_trace, "store_trace", owner)

        self._register_cell_param("thresh", thresh)
        thresh_center = self._buffers.pop("thresh")
        self.thresh = nn.Parameter(thresh_center.clone(), requires_grad=False)
        center = torch.as_tensor(thresh, dtype=factory["dtype"]).detach().clone()
        device = factory["device"]
        self.register_buffer("v_rest", torch.tensor(float(v_rest), **factory))
        self.register_buffer("dt", torch.tensor(dt, **factory))
        self.register_buffer("duration_refrac", torch.tensor(float(duration_refrac), **factory))
        self.register_buffer("thresh_center", center.to(device))
        # the state, with what reset_state sets it to
        self.register_state(
            "spikes", torch.zeros(self.cells_shape, dtype=torch.bool, device=device), False
        )
        self.register_state("v_cell", torch.zeros(self.cells_shape, **factory), "v_rest")
        self.register_state("trace", torch.zeros(self.cells_shape, **factory), 0)
        counts = torch.zeros(self.cells_shape, dtype=torch.int32, device=device)
        self.register_state("refrac_counts", counts, 0)
        history = torch.zeros(
            self.cells_shape + (_HISTORY_START_CAPACITY if store_trace else 0,),
            dtype=torch.bool,
            device=device,
        )
        self.register_buffer("_history", history, persistent=False)
        self._history_length = 1

    @staticmethod
    def _refrac_steps(duration_refrac, dt: float, owner: str) -> int:
        if isinstance(duration_refrac, Tensor) and duration_refrac.numel() == 1:
            duration_refrac = duration_refrac.item()
        if isinstance(duration_refrac, bool) or not isinstance(duration_refrac, Real):
            raise TypeError(
                f"{owner}: duration_refrac must be a real number of ms, "
                f"got {type(duration_refrac).__name__}"
            )
        if not math.isfinite(duration_refrac) or duration_refrac < 0:
            raise ValueError(f"{owner}: duration_refrac must be >= 0, got {duration_refrac}")
        steps = round(duration_refrac / dt)
        if abs(duration_refrac / dt - steps) > 1e-6 * max(1, steps):
            raise ValueError(
                f"{owner}: duration_refrac must be an integer multiple of dt={dt}, "
                f"got {duration_refrac}"
            )
        if steps > sf.REFRAC_MAX_STEPS:
            raise ValueError(
                f"{owner}: duration_refrac / dt must be at most {sf.REFRAC_MAX_STEPS} steps, "
                f"got {steps}"
            )
        return int(steps)

    @property
    def refrac_steps(self) -> int:
        """The refractory period in steps, ``round(duration_refrac / dt)``, read from the
        buffers (see :func:`pysnn.functional.refractory_steps`)."""
        return int(sf.refractory_steps(self.duration_refrac, self.dt))

    # -- history ---------------------------------------------------------------------------
    @property
    def complete_trace(self) -> Optional[Tensor]:
        """Spike history, bool of shape ``cells_shape + (T,)`` (``None`` without store_trace).

        The first column is the all-zero column PySNN starts from after a reset; column ``k``
        holds the spikes of the ``k``-th step since. Stored in preallocated chunks that double
        in size, so recording ``T`` steps costs O(T) time.
        """
        if not self.store_trace:
            return None
        return self._history[..., : self._history_length]

    def concat_trace(self, spikes: Tensor) -> None:
        """Append this step's spikes to ``complete_trace`` (no-op without store_trace)."""
        if not self.store_trace:
            return
        if self._history_length == self._history.shape[-1]:
            grown = self._history.new_zeros(self.cells_shape + (2 * self._history.shape[-1],))
            grown[..., : self._history_length] = self._history
            self._history = grown
        self._history[..., self._history_length] = spikes
        self._history_length += 1

    # -- step pieces -----------------------------------------------------------------------
    def spiking(self) -> Tensor:
        """Cells with ``v_cell >= thresh`` spike; store them in ``spikes`` and return a copy."""
        torch.ge(self.v_cell, self.thresh, out=self.spikes)
        return self.spikes.clone()

    def refrac(self, spikes: Tensor) -> None:
        """Refractory bookkeeping, then reset the voltage of spiking cells to ``v_rest``.

        Counters (in steps) count down by one to zero, then grow by ``duration_refrac / dt``
        where a cell spiked.
        """
        sf._refractory_reset(
            self.v_cell, spikes, self.refrac_counts, self.v_rest, self.dt, self.duration_refrac
        )

    def _refrac_mask(self) -> Tensor:
        return self.refrac_counts

    def fold(self, x: Inputs) -> Tensor:
        """Sum the fan-in axis (last) of the input; a list/tuple is concatenated along it first.

        :param x: tensor of shape ``cells_shape + (R,)``, or a list of such tensors with
            different ``R`` (several incoming connections, e.g. in cyclic graphs).
        :returns: tensor broadcastable to ``cells_shape``.
        """
        owner = type(self).__name__
        if isinstance(x, (list, tuple)):
            summed = self._fold_pair(x) if len(x) == 2 else None
            if summed is not None:
                return summed
            x = _concat_fan_in(x, "input", owner)
        _check_real_input(x, "input", owner)
        _check_fan_in(x, self.cells_shape, "input", owner)
        return x.squeeze(-1) if x.shape[-1] == 1 else x.sum(-1)

    def _fold_pair(self, pair: Sequence[Tensor]) -> Optional[Tensor]:
        """Two ``cells_shape + (1,)`` float inputs (e.g. excitation and inhibition), folded as
        ``torch.cat(...).sum(-1)`` folds them (:func:`pysnn.functional.fold_pair`) into a buffer
        kept between steps. None where that does not apply."""
        operands = self._pair_operands(pair)
        return None if operands is None else sf.folded(operands)

    def _pair_operands(self, pair: Sequence[Tensor]) -> Optional[sf.InputPair]:
        """The :class:`~pysnn.functional.InputPair` of two inputs that
        :func:`~pysnn.functional.fold_pair` folds (see :meth:`_fold_pair`), with its buffer;
        None where that does not apply."""
        first, second = pair
        if type(first) is not Tensor or type(second) is not Tensor:
            return None
        shape = self._buffers["v_cell"].shape
        shapes = self.__dict__.get("_pair_shapes")  # (cells' shape, each input's shape)
        if shapes is None or shapes[0] != shape:
            shapes = self.__dict__["_pair_shapes"] = (shape, torch.Size((*shape, 1)))
        dtype = first.dtype
        if not (
            first.shape == shapes[1]
            and second.shape == shapes[1]
            and second.dtype is dtype
            and dtype.is_floating_point
            and ((first.is_cpu and second.is_cpu) or first.device == second.device)
            and not (first.requires_grad or second.requires_grad)
        ):
            return None
        # the last pair, reused where it holds the same tensors (a NamedTuple costs a call)
        last = self.__dict__.get("_pair")
        if last is not None and last.first is first and last.second is second:
            summed = last.out
            if summed.dtype is dtype and summed.device == first.device and summed.shape == shape:
                return last
        summed = self.__dict__.get("_fold_sum")
        if (
            summed is None
            or summed.dtype != dtype
            or summed.device != first.device
            or summed.shape != shape
        ):
            summed = torch.empty(shape, dtype=dtype, device=first.device)
            self.__dict__["_fold_sum"] = summed
        last = self.__dict__["_pair"] = sf.InputPair(first, second, summed)
        return last

    def unfold(self, x: Tensor) -> Tensor:
        """Reshape ``x`` to ``cells_shape + (R,)`` (the inverse of folding for ``R`` synapses)."""
        return x.reshape(*self.cells_shape, -1)

    def convert_spikes(self, spikes: Tensor) -> Tensor:
        """Cast spikes to the voltage dtype."""
        return spikes.to(self.v_cell.dtype)

    def update_voltage(self, x: Tensor) -> None:
        """Integrate the folded input into ``v_cell`` (defined by each neuron model)."""
        raise NotImplementedError(f"{type(self).__name__} does not define update_voltage")

    def update_trace(self, spikes: Tensor) -> None:
        """Update the postsynaptic trace from this step's spikes."""
        sf._trace_step(
            self.trace,
            self.convert_spikes(spikes),
            self.alpha_t,
            self.tau_t,
            self.dt,
            self.update_type == "linear",
        )

    def _after_spiking(self, spikes: Tensor) -> None:
        """Hook for models whose state depends on their own spikes (adaptive threshold)."""

    def _step(self, *voltage_inputs: Tensor) -> Tuple[Tensor, Tensor]:
        self.update_voltage(*voltage_inputs)
        spikes = self.spiking()
        self.update_trace(self.spikes)
        self._after_spiking(self.spikes)
        self.refrac(self.spikes)
        self.concat_trace(self.spikes)
        return spikes, self.trace

    _step_methods = (
        "forward",
        "update_voltage",
        "spiking",
        "update_trace",
        "_after_spiking",
        "refrac",
        "_step",
        "convert_spikes",
    )

    def _check_step_state(self, *inputs: Tensor) -> None:
        owner = type(self).__name__
        for value in inputs:
            _check_step_input(value, "input", owner)
        if self._parameters["thresh"].requires_grad:
            raise TypeError(f"{owner}: thresh requires grad; set thresh.requires_grad_(False)")

    def forward(self, x: Inputs) -> Tuple[Tensor, Tensor]:
        """One time step: the whole-step function of the model (e.g.
        :func:`pysnn.functional.lif_step`, or its C twin), then the history.

        :param x: input of shape ``cells_shape + (R,)`` or a list of such tensors.
        :returns: ``(spikes, trace)``: a new bool tensor of the spikes and the live trace
            buffer (updated in place on the next step; clone it to keep it).
        """
        if (
            type(x) in (list, tuple)
            and len(x) == 2
            and self._kernel_folds_pairs
            and self._backend != "torch"
            and not self._overrides_step_flag
        ):
            # the whole step folds the two inputs itself (its C twin without a copy)
            pair = self._pair_operands(x)
            if pair is not None and pair.first.is_cpu and not torch.compiler.is_compiling():
                if self._parameters["thresh"].requires_grad:
                    self._check_step_state(pair.first)  # raises the clear error
                fired = self._whole_step(pair)
                if self.store_trace:
                    self.concat_trace(fired)
                return fired, self._buffers["trace"]
        last = self.__dict__.get("_last_fold")
        if (
            last is not None
            and x is last[0]
            and x.data_ptr() == last[1]
            and x.stride() == last[2]
            and x.shape == last[3]
        ):
            current = last[4]  # a connection's live output view, folded at the last step
        else:
            current = self.fold(x)
            if isinstance(x, Tensor):
                # the same tensor object may be given new memory or a new layout (x.data = ...)
                self.__dict__["_last_fold"] = (x, x.data_ptr(), x.stride(), x.shape, current)
        if (current.requires_grad and torch.is_grad_enabled()) or self._parameters[
            "thresh"
        ].requires_grad:
            self._check_step_state(current)  # raises the clear error
        if self._overrides_step_flag:  # a subclass's own step pieces: PyTorch only
            if self._backend == "native":
                self._native_failed(self._static_native_obstacle())
            return self._step(current)
        fired = self._whole_step(current)
        if self.store_trace:
            self.concat_trace(fired)
        return fired, self._buffers["trace"]

    #: Whether the model's C kernel folds two inputs itself (its whole step then takes an
    #: :class:`~pysnn.functional.InputPair`).
    _kernel_folds_pairs = False

    def _whole_step(self, x: Tensor) -> Tensor:
        """The model's whole step on the folded input; returns the new spikes."""
        raise NotImplementedError(f"{type(self).__name__} does not define a whole step")

    def _common_state(self) -> tuple:
        buffers = self._buffers
        return (
            buffers["v_cell"],
            self._parameters["thresh"],
            buffers["spikes"],
            buffers["trace"],
            buffers["refrac_counts"],
            buffers["v_rest"],
            buffers["alpha_v"],
        )

    # -- state -----------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Voltage to ``v_rest``; spikes, refractory counters and trace to zero; history restarted."""
        self.reset_declared_state()
        if self.store_trace:
            self._history[..., 0] = False
            self._history_length = 1

    def reset_thresh(self) -> None:
        """Set the threshold back to its initial value (``thresh_center``) everywhere."""
        self.thresh.data.copy_(self.thresh_center.expand_as(self.thresh))

    def init_neuron(self) -> None:
        """Switch off gradients, reset the state and the threshold."""
        self.no_grad()
        self.reset_state()
        self.reset_thresh()

    def _init_dynamics(self, alpha_v, alpha_t, update_type: str) -> None:
        """Register the parameters every spiking model shares and choose the trace update."""
        self.update_type = update_type
        self._tau_kind = "decay" if update_type == "linear" else "time_constant"
        self._register_cell_param("alpha_v", alpha_v)
        self._register_cell_param("alpha_t", alpha_t)

    def extra_repr(self) -> str:
        # the parameters as values (one shared value) or ranges (per cell), then the gains and
        # decays of the model in registration (PySNN's state_dict) order
        buffers = self._buffers
        text = f"cells_shape={self.cells_shape}, thresh={_summary(self.thresh)}"
        for name in ("v_rest", "dt", "duration_refrac"):
            if buffers.get(name) is not None:
                text += f", {name}={_summary(buffers[name])}"
        for name, tensor in buffers.items():
            if tensor is not None and name.startswith(("alpha_", "tau_")):
                text += f", {name}={_summary(tensor)}"
        if "_update_type" in self.__dict__:
            text += f", update_type={self.update_type!r}"
        if self.store_trace:
            text += ", store_trace=True"
        return text + f", backend={self.backend!r}"


class IFNeuron(BaseNeuron, native_twin=True):
    r"""Integrate-and-fire neuron: :math:`v \leftarrow v + [r = 0]\,\alpha_v I`.

    No leak: the voltage changes only with input and at reset. :math:`I` is the folded input (the
    fan-in axis summed), :math:`[r = 0]` selects the cells that are not refractory.

    Only ``cells_shape`` and ``thresh`` are required: the rest have the defaults above, so
    ``IFNeuron((B, 1, 100), thresh=1.0)`` works, and PySNN's positional calls are
    unchanged (same order).

    :param cells_shape: population shape, batch first, e.g. ``(B, 1, N)``; a non-empty tuple of
        positive ints. The batch size ``cells_shape[0]`` is fixed at construction (the state is
        kept per sample).
    :param thresh: firing threshold :math:`\theta` (voltage units), required; a finite number
        or a tensor broadcastable to ``cells_shape`` (one value per cell).
    :param v_rest: resting and reset voltage, a finite number (default 0.0).
    :param alpha_v: input gain :math:`\alpha_v` (voltage per unit of input, default 1.0);
        finite number or tensor.
    :param alpha_t: trace increment per spike :math:`\alpha_t` (dimensionless, default 1.0);
        finite number or tensor.
    :param dt: time step in ms, finite and > 0 (default 1.0).
    :param duration_refrac: refractory period in ms, >= 0 and an integer multiple of ``dt``
        (default 0.0: no refractory period; a spiking cell is still reset to ``v_rest``).
    :param tau_t: the trace's decay: a decay factor per step in [0, 1] under
        ``update_type="linear"``, a time constant in ms (>= ``dt``) under ``"exponential"``;
        number or tensor. Default (``None``): a 20 ms time constant, i.e. ``exp(-dt / 20)``
        (0.951229 at ``dt=1``) under ``"linear"``, 20.0 under ``"exponential"``.
    :param update_type: ``"linear"`` (default: ``tau_t`` is a decay factor per step in [0, 1])
        or ``"exponential"`` (``tau_t`` is a time constant in ms): the trace update only;
        settable later (checked).
    :param store_trace: record the spike history in ``complete_trace`` (a bool, default
        False).
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :mod:`pysnn._backend`).
    :param device: keyword-only, where the state is created (``torch.nn``'s factory argument).
    :param dtype: keyword-only, the floating-point dtype of the state (default: torch's).

    State, all of ``cells_shape`` unless noted: parameter ``thresh`` (no gradient); buffers
    ``v_cell``, ``trace``, ``spikes`` (bool), ``refrac_counts`` (remaining refractory steps,
    int32); parameter buffers ``alpha_v``, ``alpha_t``, ``tau_t``; 0-d buffers ``v_rest``, ``dt``,
    ``duration_refrac``; ``thresh_center`` (the threshold as given). With ``store_trace``,
    ``complete_trace`` is bool of ``cells_shape + (T,)``. Input: ``cells_shape + (R,)`` (the
    fan-in axis last) or a list of such tensors.
    """

    _kernel_folds_pairs = True

    def __init__(
        self,
        cells_shape: Sequence[int],
        thresh: ParamValue,
        v_rest: float = 0.0,
        alpha_v: ParamValue = 1.0,
        alpha_t: ParamValue = 1.0,
        dt: float = 1.0,
        duration_refrac: float = 0.0,
        tau_t: Optional[ParamValue] = None,
        update_type: str = "linear",
        store_trace: bool = False,
        *,
        backend: str = "auto",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(
            cells_shape,
            thresh,
            v_rest,
            dt,
            duration_refrac,
            store_trace,
            device=device,
            dtype=dtype,
        )
        self._init_dynamics(alpha_v, alpha_t, update_type)
        tau_t = _tau_or_default(tau_t, "tau_t", dt, self.update_type, type(self).__name__)
        self._register_cell_param("tau_t", tau_t, self._tau_kind)
        self._init_backend(backend)
        self.init_neuron()

    _tau_parameters = ("tau_t",)

    def update_voltage(self, x: Tensor) -> None:
        sf.if_voltage_update(self.v_cell, x, self.alpha_v, self._refrac_mask())

    def _whole_step(self, x: Tensor) -> Tensor:
        buffers = self._buffers
        return self._dispatch(
            sf.if_step,
            native.if_step,
            x,
            *self._common_state(),
            buffers["alpha_t"],
            buffers["tau_t"],
            buffers["dt"],
            buffers["duration_refrac"],
            self.__dict__["_update_type"],
        )


class LIFNeuron(BaseNeuron, native_twin=True):
    r"""Leaky integrate-and-fire neuron.

    ``update_type="linear"``: :math:`v \leftarrow v_{rest} + [r=0]((v - v_{rest})\lambda_v + \alpha_v I)`
    with ``tau_v`` the decay factor :math:`\lambda_v \in [0, 1]` per step (a refractory cell is
    held at ``v_rest``).
    ``"exponential"``: :math:`v \leftarrow v + [r=0]\frac{\Delta t}{\tau_v}(-(v - v_{rest}) + \alpha_v I)`
    with ``tau_v`` the membrane time constant in ms (a refractory cell keeps its voltage).

    Only ``cells_shape`` and ``thresh`` are required: the rest have the defaults above, so
    ``LIFNeuron((B, 1, 100), thresh=1.0, tau_v=0.9)`` works, and PySNN's positional calls are
    unchanged (same order).

    :param cells_shape: population shape, batch first, e.g. ``(B, 1, N)``; a non-empty tuple of
        positive ints. The batch size ``cells_shape[0]`` is fixed at construction (the state is
        kept per sample).
    :param thresh: firing threshold :math:`\theta` (voltage units), required; a finite number
        or a tensor broadcastable to ``cells_shape`` (one value per cell).
    :param v_rest: resting and reset voltage, a finite number (default 0.0).
    :param alpha_v: input gain :math:`\alpha_v` (voltage per unit of input, default 1.0);
        finite number or tensor.
    :param alpha_t: trace increment per spike :math:`\alpha_t` (dimensionless, default 1.0);
        finite number or tensor.
    :param dt: time step in ms, finite and > 0 (default 1.0).
    :param duration_refrac: refractory period in ms, >= 0 and an integer multiple of ``dt``
        (default 0.0: no refractory period; a spiking cell is still reset to ``v_rest``).
    :param tau_v: the voltage's leak: a decay factor per step :math:`\lambda_v` in [0, 1] under
        ``update_type="linear"``, the membrane time constant in ms (>= ``dt``) under
        ``"exponential"``; number or tensor. Default (``None``): a 20 ms membrane time
        constant, i.e. ``exp(-dt / 20)`` (0.951229 at ``dt=1``) under ``"linear"``, 20.0 under
        ``"exponential"``.
    :param tau_t: the trace's decay: a decay factor per step in [0, 1] under
        ``update_type="linear"``, a time constant in ms (>= ``dt``) under ``"exponential"``;
        number or tensor. Default (``None``): a 20 ms time constant, i.e. ``exp(-dt / 20)``
        (0.951229 at ``dt=1``) under ``"linear"``, 20.0 under ``"exponential"``.
    :param update_type: ``"linear"`` (default: ``tau_v``, ``tau_t`` are decay factors per step
        in [0, 1]) or ``"exponential"`` (time constants in ms): the voltage and trace updates;
        settable later (checked).
    :param store_trace: record the spike history in ``complete_trace`` (a bool, default
        False).
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :mod:`pysnn._backend`).
    :param device: keyword-only, where the state is created (``torch.nn``'s factory argument).
    :param dtype: keyword-only, the floating-point dtype of the state (default: torch's).

    State, all of ``cells_shape`` unless noted: parameter ``thresh`` (no gradient); buffers
    ``v_cell``, ``trace``, ``spikes`` (bool), ``refrac_counts`` (remaining refractory steps,
    int32); parameter buffers ``alpha_v``, ``alpha_t``, ``tau_v``, ``tau_t``; 0-d buffers
    ``v_rest``, ``dt``, ``duration_refrac``; ``thresh_center`` (the threshold as given). With ``store_trace``,
    ``complete_trace`` is bool of ``cells_shape + (T,)``. Input: ``cells_shape + (R,)`` (the
    fan-in axis last) or a list of such tensors.

    .. doctest::

        >>> from pysnn.neuron import LIFNeuron
        >>> LIFNeuron((1, 1, 100), thresh=1.0, tau_v=0.9)  # doctest: +NORMALIZE_WHITESPACE
        LIFNeuron(cells_shape=(1, 1, 100), thresh=1, v_rest=0, dt=1, duration_refrac=0,
                  alpha_v=1, alpha_t=1, tau_v=0.9, tau_t=0.951229, update_type='linear',
                  backend='auto')
    """

    _kernel_folds_pairs = True

    def __init__(
        self,
        cells_shape: Sequence[int],
        thresh: ParamValue,
        v_rest: float = 0.0,
        alpha_v: ParamValue = 1.0,
        alpha_t: ParamValue = 1.0,
        dt: float = 1.0,
        duration_refrac: float = 0.0,
        tau_v: Optional[ParamValue] = None,
        tau_t: Optional[ParamValue] = None,
        update_type: str = "linear",
        store_trace: bool = False,
        *,
        backend: str = "auto",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(
            cells_shape,
            thresh,
            v_rest,
            dt,
            duration_refrac,
            store_trace,
            device=device,
            dtype=dtype,
        )
        self._init_dynamics(alpha_v, alpha_t, update_type)
        tau_v = _tau_or_default(tau_v, "tau_v", dt, self.update_type, type(self).__name__)
        tau_t = _tau_or_default(tau_t, "tau_t", dt, self.update_type, type(self).__name__)
        self._register_cell_param("tau_v", tau_v, self._tau_kind)
        self._register_cell_param("tau_t", tau_t, self._tau_kind)
        self._init_backend(backend)
        self.init_neuron()

    _tau_parameters = ("tau_v", "tau_t")

    def update_voltage(self, x: Tensor) -> None:
        update = (
            sf.lif_linear_voltage_update
            if self.update_type == "linear"
            else sf.lif_exponential_voltage_update
        )
        update(self.v_cell, self.v_rest, x, self.alpha_v, self.tau_v, self.dt, self._refrac_mask())

    def _lif_state(self) -> tuple:
        buffers = self._buffers
        return (
            *self._common_state(),
            buffers["tau_v"],
            buffers["alpha_t"],
            buffers["tau_t"],
            buffers["dt"],
            buffers["duration_refrac"],
            self.__dict__["_update_type"],
        )

    def _whole_step(self, x: Tensor) -> Tensor:
        return self._dispatch(sf.lif_step, native.lif_step, x, *self._lif_state())


class AdaptiveLIFNeuron(LIFNeuron, native_twin=True):
    r"""LIF neuron whose threshold rises with each of its spikes and relaxes between them.

    Threshold update (after the spikes of the step), ``update_type="linear"``:
    :math:`\theta \leftarrow \lambda_\theta \theta + \alpha_\theta s`; ``"exponential"``:
    :math:`\theta \leftarrow \theta + \frac{\Delta t}{\tau_\theta}(-\theta + \alpha_\theta s)`.
    Both relax towards 0, as in PySNN. With ``relax_to_center=True`` (new, keyword-only) the
    threshold relaxes towards its initial value ``thresh_center`` instead:
    :math:`\theta \leftarrow \theta_0 + f(\theta - \theta_0)` — the adaptive threshold of Diehl &
    Cook (2015). ``reset_state`` also resets the threshold.

    Only ``cells_shape`` and ``thresh`` are required: the rest have the defaults below, so
    ``AdaptiveLIFNeuron((B, 1, 100), thresh=1.0, alpha_thresh=0.1)`` works, and PySNN's
    positional calls are unchanged (same order).

    :param cells_shape: population shape, batch first, e.g. ``(B, 1, N)``; a non-empty tuple of
        positive ints. The batch size ``cells_shape[0]`` is fixed at construction (the state is
        kept per sample).
    :param thresh: firing threshold :math:`\theta` (voltage units), required; a finite number
        or a tensor broadcastable to ``cells_shape`` (one value per cell).
    :param v_rest: resting and reset voltage, a finite number (default 0.0).
    :param alpha_v: input gain :math:`\alpha_v` (voltage per unit of input, default 1.0);
        finite number or tensor.
    :param alpha_t: trace increment per spike :math:`\alpha_t` (dimensionless, default 1.0);
        finite number or tensor.
    :param dt: time step in ms, finite and > 0 (default 1.0).
    :param duration_refrac: refractory period in ms, >= 0 and an integer multiple of ``dt``
        (default 0.0: no refractory period; a spiking cell is still reset to ``v_rest``).
    :param tau_v: the voltage's leak: a decay factor per step :math:`\lambda_v` in [0, 1] under
        ``update_type="linear"``, the membrane time constant in ms (>= ``dt``) under
        ``"exponential"``; number or tensor. Default (``None``): a 20 ms membrane time
        constant, i.e. ``exp(-dt / 20)`` (0.951229 at ``dt=1``) under ``"linear"``, 20.0 under
        ``"exponential"``.
    :param tau_t: the trace's decay: a decay factor per step in [0, 1] under
        ``update_type="linear"``, a time constant in ms (>= ``dt``) under ``"exponential"``;
        number or tensor. Default (``None``): a 20 ms time constant, i.e. ``exp(-dt / 20)``
        (0.951229 at ``dt=1``) under ``"linear"``, 20.0 under ``"exponential"``.
    :param alpha_thresh: threshold increment :math:`\alpha_\theta` per spike (voltage units,
        default 0.05, Diehl & Cook's :math:`\theta^+`); finite number or tensor. Under
        ``"linear"`` each spike adds it to the threshold; under ``"exponential"`` it is the
        level the spikes drive the threshold towards, each spike adding
        ``(dt / tau_thresh) * alpha_thresh``.
    :param tau_thresh: the threshold's relaxation: a decay factor per step :math:`\lambda_\theta`
        in [0, 1] under ``update_type="linear"``, a time constant in ms (>= ``dt``) under
        ``"exponential"``; number or tensor. Default (``None``): a 100 ms time constant, i.e.
        ``exp(-dt / 100)`` (0.990050 at ``dt=1``) under ``"linear"``, 100.0 under
        ``"exponential"``.
    :param update_type: ``"linear"`` (default: ``tau_v``, ``tau_t``, ``tau_thresh`` are decay
        factors per step in [0, 1]) or ``"exponential"`` (time constants in ms): the voltage,
        trace and threshold updates; settable later (checked).
    :param store_trace: record the spike history in ``complete_trace`` (a bool, default
        False).
    :param relax_to_center: keyword-only, relax towards ``thresh_center`` instead of 0 (a
        bool, default False: PySNN's behaviour).
    :param backend: keyword-only, ``"auto"``, ``"torch"`` or ``"native"`` (see
        :mod:`pysnn._backend`).
    :param device: keyword-only, where the state is created (``torch.nn``'s factory argument).
    :param dtype: keyword-only, the floating-point dtype of the state (default: torch's).

    State, all of ``cells_shape`` unless noted: parameter ``thresh`` (no gradient; the adaptive
    threshold, changed at every step); buffers ``v_cell``, ``trace``, ``spikes`` (bool),
    ``refrac_counts`` (remaining refractory steps, int32); parameter buffers ``alpha_v``,
    ``alpha_t``, ``alpha_thresh``, ``tau_v``, ``tau_t``, ``tau_thresh``; 0-d buffers
    ``v_rest``, ``dt``, ``duration_refrac``; ``thresh_center`` (the threshold as given, where
    ``reset_state`` puts it back). With ``store_trace``, ``complete_trace`` is bool of
    ``cells_shape + (T,)``. Input: ``cells_shape + (R,)`` or a list of such tensors.
    """

    def __init__(
        self,
        cells_shape: Sequence[int],
        thresh: ParamValue,
        v_rest: float = 0.0,
        alpha_v: ParamValue = 1.0,
        alpha_t: ParamValue = 1.0,
        dt: float = 1.0,
        duration_refrac: float = 0.0,
        tau_v: Optional[ParamValue] = None,
        tau_t: Optional[ParamValue] = None,
        alpha_thresh: ParamValue = 0.05,
        tau_thresh: Optional[ParamValue] = None,
        update_type: str = "linear",
        store_trace: bool = False,
        *,
        relax_to_center: bool = False,
        backend: str = "auto",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(
            cells_shape,
            thresh,
            v_rest,
            alpha_v,
            alpha_t,
            dt,
            duration_refrac,
            tau_v,
            tau_t,
            update_type,
            store_trace,
            backend=backend,
            device=device,
            dtype=dtype,
        )
        self._register_cell_param("alpha_thresh", alpha_thresh)
        tau_thresh = _tau_or_default(
            tau_thresh, "tau_thresh", dt, self.update_type, type(self).__name__
        )
        self._register_cell_param("tau_thresh", tau_thresh, self._tau_kind)
        # PySNN's state_dict order: alpha_v, alpha_t, alpha_thresh, tau_v, tau_t, tau_thresh.
        for name in ("tau_v", "tau_t", "tau_thresh"):
            self._buffers[name] = self._buffers.pop(name)
        self.relax_to_center = _check_bool(relax_to_center, "relax_to_center", type(self).__name__)

    _tau_parameters = ("tau_v", "tau_t", "tau_thresh")
    _step_methods = BaseNeuron._step_methods + ("update_thresh",)

    def update_thresh(self, spikes: Tensor) -> None:
        """Update the threshold from this step's spikes (see the class docstring)."""
        thresh = self.thresh.data
        if self.relax_to_center:
            thresh.sub_(self.thresh_center)
        sf._trace_step(
            thresh,
            self.convert_spikes(spikes),
            self.alpha_thresh,
            self.tau_thresh,
            self.dt,
            self.update_type == "linear",
        )
        if self.relax_to_center:
            thresh.add_(self.thresh_center)

    def _whole_step(self, x: Tensor) -> Tensor:
        buffers = self._buffers
        return self._dispatch(
            sf.adaptive_lif_step,
            native.adaptive_lif_step,
            x,
            *self._lif_state(),
            buffers["alpha_thresh"],
            buffers["tau_thresh"],
            buffers["thresh_center"],
            self.__dict__["relax_to_center"],
        )

    def _after_spiking(self, spikes: Tensor) -> None:
        self.update_thresh(spikes)

    def reset_state(self) -> None:
        """Reset as :meth:`BaseNeuron.reset_state`, and the threshold to ``thresh_center``."""
        super().reset_state()
        self.reset_thresh()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", relax_to_center={self.relax_to_center}"


class FedeNeuron(BaseNeuron, native_twin=True):
    r"""Neuron of Paredes-Vallés et al. (2019), trained with :class:`pysnn.learning.FedeSTDP`.

    :math:`v \leftarrow v + [r = 0]\frac{\Delta t}{\tau_v}\big(-(v - v_{rest}) + \alpha_v \sum_R (a - x)\big)`
    with :math:`a` the weighted activations and :math:`x` the unweighted presynaptic traces;
    trace: :math:`x_{post} \leftarrow x_{post} + \frac{\Delta t}{\tau_t}(-x_{post} + \alpha_t s)`.
    Always exponential: ``tau_v`` and ``tau_t`` are time constants in ms (there is no
    ``update_type`` argument; the attribute reads ``"exponential"``).

    Only ``cells_shape`` and ``thresh`` are required: the rest have the defaults below, so
    ``FedeNeuron((B, 1, 100), thresh=1.0)`` works, and PySNN's positional calls are unchanged
    (same order).

    :param cells_shape: population shape, batch first, e.g. ``(B, 1, N)``; a non-empty tuple of
        positive ints. The batch size ``cells_shape[0]`` is fixed at construction (the state is
        kept per sample).
    :param thresh: firing threshold :math:`\theta` (voltage units), required; a finite number
        or a tensor broadcastable to ``cells_shape`` (one value per cell).
    :param v_rest: resting and reset voltage, a finite number (default 0.0).
    :param alpha_v: input gain :math:`\alpha_v` (voltage per unit of input, default 1.0);
        finite number or tensor.
    :param alpha_t: trace increment per spike :math:`\alpha_t` (dimensionless, default 1.0);
        finite number or tensor.
    :param dt: time step in ms, finite and > 0 (default 1.0).
    :param duration_refrac: refractory period in ms, >= 0 and an integer multiple of ``dt``
        (default 0.0: no refractory period; a spiking cell is still reset to ``v_rest``).
    :param tau_v: membrane time constant in ms, >= ``dt``; number or tensor (default 20.0).
    :param tau_t: trace time constant in ms, >= ``dt``; number or tensor (default 20.0).
    :param store_trace: record the spike history in ``complete_trace`` (a bool, default
        False).
    :param device: keyword-only, where the state is created (``torch.nn``'s factory argument).
    :param dtype: keyword-only, the floating-point dtype of the state (default: torch's).

    Runs in PyTorch only (``backend`` is ``"torch"``; no C kernel). State, all of
    ``cells_shape`` unless noted: parameter ``thresh`` (no gradient); buffers ``v_cell``,
    ``trace``, ``spikes`` (bool), ``refrac_counts`` (remaining refractory steps, int32);
    parameter buffers ``alpha_v``, ``alpha_t``, ``tau_v``, ``tau_t``; 0-d buffers ``v_rest``,
    ``dt``, ``duration_refrac``; ``thresh_center``. With ``store_trace``, ``complete_trace`` is
    bool of ``cells_shape + (T,)``. Inputs ``x`` and ``pre_trace``: ``cells_shape + (R,)`` each,
    or lists of such tensors.
    """

    def __init__(
        self,
        cells_shape: Sequence[int],
        thresh: ParamValue,
        v_rest: float = 0.0,
        alpha_v: ParamValue = 1.0,
        alpha_t: ParamValue = 1.0,
        dt: float = 1.0,
        duration_refrac: float = 0.0,
        tau_v: Optional[ParamValue] = None,
        tau_t: Optional[ParamValue] = None,
        store_trace: bool = False,
        *,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(
            cells_shape,
            thresh,
            v_rest,
            dt,
            duration_refrac,
            store_trace,
            device=device,
            dtype=dtype,
        )
        self._init_dynamics(alpha_v, alpha_t, "exponential")
        tau_v = _tau_or_default(tau_v, "tau_v", dt, "exponential", type(self).__name__)
        tau_t = _tau_or_default(tau_t, "tau_t", dt, "exponential", type(self).__name__)
        self._register_cell_param("tau_v", tau_v, self._tau_kind)
        self._register_cell_param("tau_t", tau_t, self._tau_kind)
        self._init_backend("torch")
        self.init_neuron()

    supported_backends = ("torch",)
    _tau_parameters = ("tau_v", "tau_t")

    def fold(self, x: Inputs, pre_trace: Inputs) -> Tuple[Tensor, Tensor]:
        """Concatenate lists of activations and of presynaptic traces along the fan-in axis.

        The fan-in axis is summed inside :func:`pysnn.functional.fede_voltage_update`.
        """
        owner = type(self).__name__
        if isinstance(x, (list, tuple)):
            x = _concat_fan_in(x, "x", owner)
        if isinstance(pre_trace, (list, tuple)):
            pre_trace = _concat_fan_in(pre_trace, "pre_trace", owner)
        _check_real_input(x, "x", owner)
        _check_real_input(pre_trace, "pre_trace", owner)
        _check_fan_in(x, self.cells_shape, "x", owner)
        _check_fan_in(pre_trace, self.cells_shape, "pre_trace", owner)
        _check_input_shape(pre_trace, self.cells_shape + (x.shape[-1],), "pre_trace", owner)
        return x, pre_trace

    def update_voltage(self, x: Tensor, pre_trace: Tensor) -> None:
        sf.fede_voltage_update(
            self.v_cell,
            self.v_rest,
            x,
            self.alpha_v,
            self.tau_v,
            self.dt,
            self._refrac_mask(),
            pre_trace,
        )

    def forward(self, x: Inputs, pre_trace: Inputs) -> Tuple[Tensor, Tensor]:
        """One time step.

        :param x: weighted activations, ``cells_shape + (R,)`` or a list of them.
        :param pre_trace: unweighted presynaptic traces of the same shape(s).
        :returns: ``(spikes, trace)``.
        """
        current, traces = self.fold(x, pre_trace)
        self._check_step_state(current, traces)
        if type(self).forward is not FedeNeuron.forward or self._overrides_step():
            return self._step(current, traces)
        buffers = self._buffers
        fired = sf.fede_step(
            current,
            traces,
            *self._common_state(),
            buffers["tau_v"],
            buffers["alpha_t"],
            buffers["tau_t"],
            buffers["dt"],
            buffers["duration_refrac"],
        )
        if self.store_trace:
            self.concat_trace(fired)
        return fired, buffers["trace"]

    @property
    def update_type(self) -> str:
        """Always ``"exponential"`` for this model."""
        return "exponential"

    @update_type.setter
    def update_type(self, value: str) -> None:
        if value != "exponential":
            raise ValueError(
                f"FedeNeuron: update_type is always 'exponential' for this model, got {value!r}"
            )
        self.__dict__["_update_type"] = value


# -- models without a C kernel ----------------------------------------------------------------


class _TorchOnly:
    """Mixin of the models that have no C kernel: their whole step runs in PyTorch.

    ``backend="auto"`` and ``"torch"`` run the whole-step function of
    :mod:`pysnn.functional`; ``"native"`` is refused, when given or set, with a
    :class:`~pysnn._backend.NativeUnavailableError` that says there is no kernel.
    """

    supported_backends: Tuple[str, ...] = ("torch",)

    def _static_native_obstacle(self) -> str:
        name = type(self).__name__
        return (
            f"there is no C kernel for {name} (it runs its PyTorch step on "
            "backend='torch' or 'auto')"
        )


class IzhikevichNeuron(_TorchOnly, BaseNeuron, native_twin=True):
    r"""Izhikevich's (2003) simple model: a quadratic voltage and a recovery variable.

    With :math:`v` in mV, :math:`u` the recovery variable (mV), time in ms and :math:`I` the
    folded input (the fan-in axis summed, see :meth:`BaseNeuron.fold`), one step of ``dt`` is
    the forward-Euler update of both variables from the old state (a simultaneous update,
    :func:`pysnn.functional.izhikevich_step`):

    .. math::

        v' &= v + \Delta t\,(0.04 v^2 + 5 v + 140 - u + I) \\
        u' &= u + \Delta t\,a\,(b v - u)

    then a spike :math:`s = [v' \ge v_{peak}]`, the trace update from :math:`s`, and where
    :math:`s`: :math:`v \leftarrow c`, :math:`u \leftarrow u + d`. There is no refractory
    period (the reset is the model's own). Initial and reset state: :math:`v = c`,
    :math:`u = b c`. Presets of the 2003 paper (``a, b, c, d``): regular spiking
    ``0.02, 0.2, -65, 8``; intrinsically bursting ``0.02, 0.2, -55, 4``; chattering
    ``0.02, 0.2, -50, 2``; fast spiking ``0.1, 0.2, -65, 2``.

    :param cells_shape: population shape, batch first, e.g. ``(B, 1, N)``.
    :param dt: time step in ms, > 0. The paper integrates with 0.5–1 ms; with large inputs a
        smaller step keeps the quadratic term from overshooting.
    :param a: time scale of the recovery variable in 1/ms (typically 0.02–0.1); a number or a
        tensor broadcastable to ``cells_shape`` (one value per cell); any finite value.
    :param b: sensitivity of :math:`u` to :math:`v` (dimensionless, typically 0.2–0.25);
        number or tensor, finite.
    :param c: after-spike reset voltage in mV (typically -65 to -50); number or tensor, finite.
    :param d: after-spike jump of :math:`u` in mV (typically 2–8); number or tensor, finite.
    :param alpha_t: trace increment per spike (dimensionless); number or tensor.
    :param tau_t: trace decay factor in [0, 1] (``update_type="linear"``) or time constant in
        ms, >= ``dt`` (``"exponential"``); number or tensor.
    :param v_peak: spike cutoff in mV (default 30); number or tensor, finite. Stored as the
        threshold parameter ``thresh``, as for every neuron (``reset_thresh`` restores it).
    :param update_type: ``"linear"`` or ``"exponential"``: the trace update only (the voltage
        follows the equations above either way); settable later (checked).
    :param store_trace: record the spike history in ``complete_trace`` (a bool).
    :param backend: keyword-only, ``"auto"`` or ``"torch"`` (both run PyTorch); ``"native"``
        raises :class:`~pysnn._backend.NativeUnavailableError`: this model has no C kernel.
    :param device: keyword-only, where the state is created.
    :param dtype: keyword-only, the floating-point dtype of the state (default: torch's).

    State: buffers ``v_cell`` and ``u_cell`` (the recovery variable), ``trace``, ``spikes``
    (bool), all of ``cells_shape``; parameter buffers ``a``, ``b``, ``c``, ``d``, ``alpha_t``,
    ``tau_t`` (``cells_shape``) and ``dt``; the cutoff in the parameter ``thresh`` (no
    gradient) and ``thresh_center``. Input: ``cells_shape + (R,)`` or a list of such tensors.

    .. doctest::

        >>> import torch
        >>> from pysnn.neuron import IzhikevichNeuron
        >>> cell = IzhikevichNeuron((1, 1, 1), 1.0, 0.02, 0.2, -65.0, 8.0, 1.0, 0.9)
        >>> current = torch.full((1, 1, 1, 1), 10.0)  # I = 10, fan-in axis last
        >>> spikes = [bool(cell(current)[0]) for _ in range(100)]
        >>> [t for t, s in enumerate(spikes) if s][:3]
        [4, 31, 78]
    """

    def __init__(
        self,
        cells_shape: Sequence[int],
        dt: float,
        a: ParamValue,
        b: ParamValue,
        c: ParamValue,
        d: ParamValue,
        alpha_t: ParamValue,
        tau_t: ParamValue,
        v_peak: ParamValue = 30.0,
        update_type: str = "linear",
        store_trace: bool = False,
        *,
        backend: str = "auto",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(cells_shape, 0.0, 0.0, dt, 0.0, store_trace, device=device, dtype=dtype)
        # no rest voltage and no refractory period: the reset is (c, d)
        for name in ("v_rest", "duration_refrac", "refrac_counts"):
            del self._buffers[name]
        del self.__dict__["_state_resets"]["refrac_counts"]
        self._register_cell_param("v_peak", v_peak)  # checked under its own name
        self.thresh.data.copy_(self._buffers.pop("v_peak"))
        self._buffers["thresh_center"] = self.thresh.data.clone()
        self.update_type = update_type
        for name, value in (("a", a), ("b", b), ("c", c), ("d", d), ("alpha_t", alpha_t)):
            self._register_cell_param(name, value)
        kind = "decay" if update_type == "linear" else "time_constant"
        self._register_cell_param("tau_t", tau_t, kind)
        self.register_state("v_cell", self._buffers["v_cell"], "c")
        self.register_state("u_cell", torch.zeros_like(self._buffers["v_cell"]), 0)
        self._init_backend(backend)
        self.init_neuron()

    _tau_parameters = ("tau_t",)

    @property
    def refrac_steps(self) -> int:
        """Always 0: this model has no refractory period."""
        return 0

    def update_voltage(self, x: Tensor) -> None:
        """Euler step of ``v`` and ``u`` (:func:`pysnn.functional.izhikevich_voltage_update`)."""
        buffers = self._buffers
        sf.izhikevich_voltage_update(
            buffers["v_cell"], buffers["u_cell"], x, buffers["a"], buffers["b"], buffers["dt"]
        )

    def refrac(self, spikes: Tensor) -> None:
        """After-spike reset: ``v = c`` and ``u += d`` where ``spikes``
        (:func:`pysnn.functional.izhikevich_reset`)."""
        buffers = self._buffers
        sf.izhikevich_reset(
            buffers["v_cell"], buffers["u_cell"], spikes, buffers["c"], buffers["d"]
        )

    def _whole_step(self, x: Tensor) -> Tensor:
        # no C twin: "auto" and "torch" both run the PyTorch step ("native" cannot be set)
        buffers = self._buffers
        return sf.izhikevich_step(
            x,
            buffers["v_cell"],
            buffers["u_cell"],
            self._parameters["thresh"],
            buffers["spikes"],
            buffers["trace"],
            buffers["a"],
            buffers["b"],
            buffers["c"],
            buffers["d"],
            buffers["alpha_t"],
            buffers["tau_t"],
            buffers["dt"],
            self.__dict__["_update_type"],
        )

    def reset_state(self) -> None:
        """``v = c``, ``u = b·c``; spikes and trace to zero; history restarted."""
        super().reset_state()
        torch.mul(self.b, self.c, out=self.u_cell)

    def extra_repr(self) -> str:
        return (
            f"cells_shape={self.cells_shape}, dt={self.dt.item():g}, "
            f"update_type={self.update_type!r}, backend={self.backend!r}"
        )


class CubaLIFNeuron(_TorchOnly, BaseNeuron, native_twin=True):
    r"""Current-based leaky integrate-and-fire neuron: the input feeds a synaptic current that
    decays, and the current drives the voltage.

    One step (:func:`pysnn.functional.cuba_lif_step`) updates the current first and then the
    voltage **from the new current** :math:`i'` (the order of Norse's, SpikingJelly's and
    snnTorch's NIR ``CubaLIF``), with :math:`x` the folded input and :math:`[r = 0]` the
    cells that are not refractory:

    ``update_type="linear"`` (``tau_i``, ``tau_v`` are decay factors :math:`\lambda` in [0, 1]):

    .. math::

        i' &= \lambda_i\, i + \alpha_i\, x \\
        v' &= v_{rest} + [r = 0]\big(\lambda_v (v - v_{rest}) + \alpha_v\, i'\big)

    ``"exponential"`` (time constants in ms), the forward-Euler step of
    :math:`\tau_i \dot i = -i + \alpha_i x` and :math:`\tau_v \dot v = (v_{rest} - v) + \alpha_v i`:

    .. math::

        i' &= i + \tfrac{\Delta t}{\tau_i}(\alpha_i\, x - i) \\
        v' &= v + [r = 0]\tfrac{\Delta t}{\tau_v}\big(\alpha_v\, i' - (v - v_{rest})\big)

    then spikes :math:`s = [v' \ge \theta]`, the trace update from :math:`s`, the refractory
    counters and :math:`v \leftarrow v_{rest}` where :math:`s`, exactly as
    :class:`LIFNeuron`. The current is not reset by a spike and keeps integrating during the
    refractory period; a refractory cell's voltage is held at ``v_rest`` (``"linear"``) or
    unchanged (``"exponential"``), as the LIF's.

    :param cells_shape: population shape, batch first, e.g. ``(B, 1, N)``.
    :param thresh: firing threshold (voltage units); number or tensor broadcastable to
        ``cells_shape``, finite.
    :param v_rest: resting and reset voltage, a finite number.
    :param alpha_v: gain from the current to the voltage (dimensionless); number or tensor.
    :param alpha_i: gain from the input to the current (dimensionless); number or tensor.
    :param alpha_t: trace increment per spike (dimensionless); number or tensor.
    :param dt: time step in ms, > 0.
    :param duration_refrac: refractory period in ms, >= 0 and an integer multiple of ``dt``.
    :param tau_v: voltage decay factor in [0, 1] (linear) or membrane time constant in ms,
        >= ``dt`` (exponential); number or tensor.
    :param tau_i: current decay factor in [0, 1] (linear) or synaptic time constant in ms,
        >= ``dt`` (exponential); number or tensor.
    :param tau_t: trace decay factor in [0, 1] (linear) or time constant in ms, >= ``dt``
        (exponential); number or tensor.
    :param update_type: ``"linear"`` or ``"exponential"`` (current, voltage and trace);
        settable later (checked).
    :param store_trace: record the spike history in ``complete_trace`` (a bool).
    :param backend: keyword-only, ``"auto"`` or ``"torch"`` (both run PyTorch); ``"native"``
        raises :class:`~pysnn._backend.NativeUnavailableError`: this model has no C kernel.
    :param device: keyword-only, where the state is created.
    :param dtype: keyword-only, the floating-point dtype of the state (default: torch's).

    State: as :class:`BaseNeuron` (``v_cell``, ``trace``, ``spikes``, ``refrac_counts``,
    ``thresh``, ...) plus the synaptic current ``i_syn`` (``cells_shape``, reset to 0);
    parameter buffers ``alpha_v``, ``alpha_i``, ``alpha_t``, ``tau_v``, ``tau_i``, ``tau_t``.

    .. doctest::

        >>> import torch
        >>> from pysnn.neuron import CubaLIFNeuron
        >>> cell = CubaLIFNeuron((1, 1, 1), 1.0, 0.0, 1.0, 0.5, 1.0, 1.0, 0.0, 0.5, 0.5, 0.8)
        >>> pulse = torch.ones(1, 1, 1, 1)
        >>> spikes, _ = cell(pulse)
        >>> cell.i_syn.item(), cell.v_cell.item()
        (0.5, 0.5)
        >>> spikes, _ = cell(pulse)  # i = 0.5·0.5 + 0.5, v = 0.5·0.5 + 0.75 = 1.0 ≥ 1: spike
        >>> bool(spikes), cell.v_cell.item()
        (True, 0.0)
    """

    def __init__(
        self,
        cells_shape: Sequence[int],
        thresh: ParamValue,
        v_rest: float,
        alpha_v: ParamValue,
        alpha_i: ParamValue,
        alpha_t: ParamValue,
        dt: float,
        duration_refrac: float,
        tau_v: ParamValue,
        tau_i: ParamValue,
        tau_t: ParamValue,
        update_type: str = "linear",
        store_trace: bool = False,
        *,
        backend: str = "auto",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(
            cells_shape,
            thresh,
            v_rest,
            dt,
            duration_refrac,
            store_trace,
            device=device,
            dtype=dtype,
        )
        self._init_dynamics(alpha_v, alpha_t, update_type)
        self._register_cell_param("alpha_i", alpha_i)
        for name, value in (("tau_v", tau_v), ("tau_i", tau_i), ("tau_t", tau_t)):
            self._register_cell_param(name, value, self._tau_kind)
        self.register_state("i_syn", torch.zeros_like(self._buffers["v_cell"]), 0)
        self._init_backend(backend)
        self.init_neuron()

    _tau_parameters = ("tau_v", "tau_i", "tau_t")

    def update_voltage(self, x: Tensor) -> None:
        """The current, then the voltage from it
        (:func:`pysnn.functional.cuba_lif_voltage_update`)."""
        buffers = self._buffers
        sf.cuba_lif_voltage_update(
            buffers["v_cell"],
            buffers["i_syn"],
            buffers["v_rest"],
            x,
            buffers["alpha_v"],
            buffers["tau_v"],
            buffers["alpha_i"],
            buffers["tau_i"],
            buffers["dt"],
            self._refrac_mask(),
            self.update_type,
        )

    def _whole_step(self, x: Tensor) -> Tensor:
        # no C twin: "auto" and "torch" both run the PyTorch step ("native" cannot be set)
        buffers = self._buffers
        return sf.cuba_lif_step(
            x,
            *self._common_state(),
            buffers["tau_v"],
            buffers["i_syn"],
            buffers["alpha_i"],
            buffers["tau_i"],
            buffers["alpha_t"],
            buffers["tau_t"],
            buffers["dt"],
            buffers["duration_refrac"],
            self.__dict__["_update_type"],
        )
