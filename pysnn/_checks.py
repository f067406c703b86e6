"""Argument checks shared by every module: one place for the clear errors pysnn raises.

Each helper raises a ``TypeError`` or ``ValueError`` whose message names the class (``owner``),
the parameter and what was expected, e.g.
``ValueError: LIFNeuron: tau_v must lie in [0, 1] for update_type='linear', got 1.5``, and does
so before any state is changed.
"""

import math
from numbers import Integral, Real
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

IntOrPair = Union[int, Sequence[int]]
_UPDATE_TYPES = ("linear", "exponential")
_REDUCTIONS = ("none", "sum")
BACKENDS = ("auto", "torch", "native")


def _pair(value: IntOrPair, name: str, owner: str) -> Tuple[int, int]:
    """Return ``value`` as a pair of ints, raising a clear error otherwise."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, Integral) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")


def _check_positive_int(value, name: str, owner: str, allow_zero: bool = False) -> int:
    """Validate an integer argument and return it as a Python int."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: {name} must be {bound}, got {value}")
    return int(value)


def _check_real(
    value,
    name: str,
    owner: str,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    allow_inf: bool = False,
    unit: str = "",
) -> float:
    """Validate a real number (a Python number or a one-element tensor) and return it as a float.

    :param low: smallest allowed value (excluded when ``low_open``), or ``None``.
    :param high: largest allowed value, or ``None``.
    :param allow_inf: accept ``±inf`` (never NaN).
    :param unit: text appended to the expected range in messages, e.g. ``" (ms)"``.
    :raises TypeError: not a real number (bools are rejected).
    :raises ValueError: NaN, infinite (unless allowed) or out of range; the message names ``name``.
    """
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a real number{unit}, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{owner}: {name} must be finite{unit}, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = ">" if low_open else ">="
        raise ValueError(f"{owner}: {name} must be {bound} {low}{unit}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{owner}: {name} must be <= {high}{unit}, got {value}")
    return value


def _check_positive_real(value, name: str, owner: str, unit: str = "") -> float:
    """A finite real number > 0 (e.g. ``dt``), as a float."""
    return _check_real(value, name, owner, low=0.0, low_open=True, unit=unit)


def _factory_kwargs(device, dtype, owner: str) -> dict:
    """``torch.nn``'s factory arguments, checked: where and in which dtype state is created."""
    if dtype is None:
        dtype = torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{owner}: dtype must be a floating-point torch.dtype, got {dtype!r}")
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"{owner}: device must name a torch device, got {device!r}") from err
    return {"device": device, "dtype": dtype}


def _check_cells_shape(cells_shape, owner: str) -> Tuple[int, ...]:
    if not isinstance(cells_shape, (tuple, list, torch.Size)) or len(cells_shape) == 0:
        raise TypeError(
            f"{owner}: cells_shape must be a non-empty tuple of ints with the batch first, "
            f"got {cells_shape!r}"
        )
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in cells_shape):
        raise ValueError(
            f"{owner}: cells_shape must contain positive ints only, got {tuple(cells_shape)}"
        )
    return tuple(int(n) for n in cells_shape)


def _check_update_type(update_type, owner: str) -> str:
    if update_type not in _UPDATE_TYPES:
        raise ValueError(
            f"{owner}: update_type must be 'linear' or 'exponential', got {update_type!r}"
        )
    return update_type


def broadcast_shape(*shapes: Sequence[int]) -> Optional[Tuple[int, ...]]:
    """The shape ``shapes`` broadcast to, or None when they do not broadcast.

    Plain Python: ``torch.broadcast_shapes`` imports ``torch._refs`` and the symbolic-shapes
    machinery on its first call (half a second and ~35 MB), which a neuron's first step should
    not pay.
    """
    length = max(map(len, shapes))
    result = [1] * length
    for shape in shapes:
        for axis, size in enumerate(shape, length - len(shape)):
            if size != 1:
                if result[axis] not in (1, size):
                    return None
                result[axis] = size
    return tuple(result)


def _check_input_shape(x: Tensor, expected: Tuple[int, ...], name: str, owner: str) -> None:
    """Raise a clear error unless ``x`` broadcasts to ``expected`` without growing it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.shape == expected:
        return
    if broadcast_shape(x.shape, expected) != tuple(expected):
        raise ValueError(
            f"{owner}: {name} of shape {tuple(x.shape)} does not broadcast to the cells' "
            f"shape {expected}"
        )


def _check_tau_values(tensor: Tensor, name: str, update_type: str, owner: str) -> None:
    low, high = tensor.min().item(), tensor.max().item()
    if update_type == "linear" and (low < 0 or high > 1):
        bad = low if low < 0 else high
        hint = ""
        if bad > 1:  # most often a time constant in ms given to the default update type
            hint = (
                f" (with update_type='linear', tau_* are decay factors per step; for a time "
                f"constant in ms, such as {bad:g}, pass update_type='exponential')"
            )
        raise ValueError(
            f"{owner}: {name} must lie in [0, 1] for update_type='linear', got {bad}{hint}"
        )
    if update_type == "exponential" and low <= 0:
        raise ValueError(
            f"{owner}: {name} must be > 0 (a time constant in ms) for "
            f"update_type='exponential', got {low}"
        )


def _check_step_input(x: Tensor, name: str, owner: str) -> None:
    """Inputs that would let an autograd graph grow inside the state are refused."""
    if x.requires_grad and torch.is_grad_enabled():
        raise TypeError(
            f"{owner}: {name} requires grad; pysnn does not train by autograd and keeps no "
            "graph in its state (pass x.detach())"
        )


def _check_reduction(reduction, owner: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be 'none' or 'sum', got {reduction!r}")
    return reduction


def _check_same_shape(x: Tensor, trace: Tensor, owner: str) -> None:
    if not isinstance(x, Tensor) or not isinstance(trace, Tensor):
        raise TypeError(f"{owner}: spikes and trace must be tensors")
    if x.dim() != 4 or x.shape != trace.shape:
        raise ValueError(
            f"{owner}: spikes and trace must both have shape (B, C, H, W), got "
            f"{tuple(x.shape)} and {tuple(trace.shape)}"
        )


def _check_bounds(
    w_min: Optional[float], w_max: Optional[float], owner: str, allow_inf: bool = True
) -> Tuple[Optional[float], Optional[float]]:
    if w_min is not None:
        w_min = _check_real(w_min, "w_min", owner, allow_inf=allow_inf)
    if w_max is not None:
        w_max = _check_real(w_max, "w_max", owner, allow_inf=allow_inf)
    if w_min is not None and w_max is not None and not w_min < w_max:
        raise ValueError(f"{owner}: w_min must be < w_max, got {w_min} and {w_max}")
    return w_min, w_max


def check_backend(value, owner: str) -> str:
    """Return ``value`` if it names a backend, else raise a ``ValueError`` naming the choices."""
    if not isinstance(value, str) or value not in BACKENDS:
        raise ValueError(
            f"{owner}: backend must be one of 'auto', 'torch', 'native', got {value!r}"
        )
    return value
