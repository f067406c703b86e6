"""Small shared helpers: output shapes, inter-spike times, clamping, argument validation."""

import math
from numbers import Integral, Real
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

IntOrPair = Union[int, Sequence[int]]

__all__ = ["conv2d_output_shape", "interspike_time", "tensor_clamp"]


def _set_no_grad(module: nn.Module) -> None:
    """Switch off gradients of every parameter of ``module`` (nothing here trains by autograd)."""
    for param in module.parameters():
        param.requires_grad_(False)


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


def conv2d_output_shape(
    h_in: int,
    w_in: int,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> Tuple[int, int]:
    r"""Spatial output size of a 2-D convolution or pooling.

    :math:`\lfloor (h + 2p - d(k - 1) - 1)/s + 1 \rfloor` per dimension.

    :param h_in: input height in pixels.
    :param w_in: input width in pixels.
    :param kernel_size: kernel size (int or (kh, kw)).
    :param stride: stride (int or pair).
    :param padding: zero padding (int or pair).
    :param dilation: dilation (int or pair).
    :returns: ``(h_out, w_out)`` as ints.
    """
    owner = "conv2d_output_shape"
    kh, kw = _pair(kernel_size, "kernel_size", owner)
    sh, sw = _pair(stride, "stride", owner)
    ph, pw = _pair(padding, "padding", owner)
    dh, dw = _pair(dilation, "dilation", owner)
    h_out = math.floor((h_in + 2 * ph - dh * (kh - 1) - 1) / sh + 1)
    w_out = math.floor((w_in + 2 * pw - dw * (kw - 1) - 1) / sw + 1)
    return int(h_out), int(w_out)


def interspike_time(spike_array: Union[Tensor, np.ndarray]) -> List[int]:
    """Intervals, in steps, between consecutive spikes of a 1-D spike train.

    :param spike_array: 1-D tensor or NumPy array; nonzero entries are spikes.
    :returns: list of ints, one per pair of consecutive spikes (empty with fewer than two).
    """
    if isinstance(spike_array, Tensor):
        spike_array = spike_array.detach().cpu().numpy()
    array = np.asarray(spike_array)
    if array.ndim != 1:
        raise ValueError(f"interspike_time: spike_array must be 1-D, got shape {array.shape}")
    times = np.flatnonzero(array)
    return [int(d) for d in np.diff(times)]


def tensor_clamp(tensor: Tensor, min: Union[Real, Tensor], max: Union[Real, Tensor]) -> Tensor:
    """Elementwise clamp with tensor or scalar bounds: ``max(min(x, max), min)``.

    When ``min > max`` somewhere, the lower bound wins there (PySNN's behaviour).

    :param tensor: values to clamp.
    :param min: lower bound, broadcastable to ``tensor``.
    :param max: upper bound, broadcastable to ``tensor``.
    :returns: a new clamped tensor.
    """
    lower = torch.as_tensor(min, dtype=tensor.dtype, device=tensor.device)
    upper = torch.as_tensor(max, dtype=tensor.dtype, device=tensor.device)
    return torch.maximum(torch.minimum(tensor, upper), lower)


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
