"""Small shared helpers: output shapes, inter-spike times, clamping, argument validation."""

import math
from numbers import Real
from typing import List, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from pysnn._checks import (  # noqa: F401 (re-exported: the helpers used to live here)
    IntOrPair,
    _check_positive_int,
    _check_positive_real,
    _check_real,
    _factory_kwargs,
    _pair,
)

__all__ = ["conv2d_output_shape", "interspike_time", "tensor_clamp"]


def _set_no_grad(module: nn.Module) -> None:
    """Switch off gradients of every parameter of ``module`` (nothing here trains by autograd)."""
    for param in module.parameters():
        param.requires_grad_(False)


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
