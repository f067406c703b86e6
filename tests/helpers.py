"""Helpers shared by the test modules (importable as ``helpers``, like ``reference``)."""

from collections import Counter
from contextlib import contextmanager
from typing import Iterator

import torch

from pysnn import native

from pysnn.connection import Linear
from pysnn.network import SNNNetwork
from pysnn.neuron import Input, LIFNeuron


@contextmanager
def torch_threads(count: int) -> Iterator[int]:
    """Run the block with ``count`` torch threads, then restore the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(previous)


def kernel_results(monkeypatch, name: str) -> Counter:
    """Count the calls of the C kernel ``name`` (``pysnn.native._extension.<name>``) by their
    result: ``counts[result] += 1`` at each call, for the rest of the test."""
    counts: Counter = Counter()
    extension = native._extension

    class Counting:
        def __getattr__(self, attribute):
            kernel = getattr(extension, attribute)
            if attribute != name:
                return kernel

            def counted(*args):
                result = kernel(*args)
                counts[result] += 1
                return result

            return counted

    monkeypatch.setattr(native, "_extension", Counting())
    return counts


def assert_same_bits(actual: torch.Tensor, expected: torch.Tensor, context: str = "") -> None:
    """Equal dtypes and shapes, equal values, equal signs (of zeros too), NaN in the same places."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, context
    nan = torch.isnan(expected)
    assert torch.equal(torch.isnan(actual), nan), f"{context}: NaN positions differ"
    a, e = actual[~nan], expected[~nan]
    assert torch.equal(a, e), f"{context}: values differ, up to {(a - e).abs().max().item():.3g}"
    assert torch.equal(torch.signbit(a), torch.signbit(e)), f"{context}: signs of zeros differ"


def cursor(lin):
    """The position of the delay line's ring buffer (saved in the state dict with a delay)."""
    return int(lin.state_dict().get("cursor", 0))


def leaving_delay_line(lin, x):
    """The input that reaches the synapses at this step (before the step), as floats."""
    if lin.max_delay == 0:
        return x.to(lin.weight.dtype)
    return lin.spike_queue[cursor(lin)].clone()


def assert_within_split_product_bound(
    actual: torch.Tensor,
    expected: torch.Tensor,
    weight: torch.Tensor,
    spikes: torch.Tensor,
    context: str = "",
) -> None:
    """``actual`` and ``expected`` are ``W @ sᵀ`` of a ``Linear(reduction="sum")`` (``spikes``
    the input reaching the synapses, ``(B, ..., I)``), each summed in some order: within the
    rounding bound of two summation orders of a length-I dot product, ``I·eps·(|W| @ |s|)``
    elementwise (each order is within ``(I - 1)·eps/2`` of the exact sum, relative to
    ``|W| @ |s|``), which no BLAS blocking or row partition can exceed on any CPU; NaN in the same places.
    """
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, context
    eps = torch.finfo(weight.dtype).eps
    scale = spikes.abs().double().view(spikes.shape[0], -1) @ weight.abs().double().t()
    bound = weight.shape[-1] * eps * scale.view(expected.shape)
    nan = torch.isnan(expected)
    assert torch.equal(torch.isnan(actual), nan), f"{context}: NaN positions differ"
    error = (actual.double() - expected.double()).abs()[~nan]
    assert bool((error <= bound[~nan]).all()), f"{context}: error {error.max()} over bound"


def addcmul_rounds_once(dtype: torch.dtype) -> bool:
    """Whether torch's CPU ``addcmul_`` is a fused multiply-add (one rounding) here.

    ATen's vectorised kernels use FMA instructions where the CPU has them; the eager linear
    voltage update (``v.addcmul_(alpha_v, current)``) and the linear trace update of a graded
    input (``trace.addcmul_(alpha_t, x)``) then round once, and so does pysnn/_native.c, which
    calls ``fma()`` there.
    """
    gen = torch.Generator().manual_seed(123)
    t, a, x = (torch.rand(256, generator=gen, dtype=dtype) for _ in range(3))
    return not torch.equal(t.clone().addcmul_(a, x), t + a * x)


class Chain(SNNNetwork):
    """Input → Linear (sum over the fan-in, ``delay`` steps) → LIF neuron, weights U(0, w_high),
    seeded with ``seed``: the learning rules' test network."""

    def __init__(self, batch, n_in, n_out, seed, w_high, thresh, delay=1):
        super().__init__()
        torch.manual_seed(seed)
        self.input = Input((batch, 1, n_in), 1.0, 0.5, 0.8, "linear")
        self.con = Linear(n_in, n_out, batch, 1.0, delay, reduction="sum")
        self.con.reset_weights("uniform", a=0.0, b=w_high)
        self.neuron = LIFNeuron((batch, 1, n_out), thresh, 0.0, 1.0, 1.0, 1.0, 0.0, 0.8, 0.7)
        self.add_layer("fc", self.con, self.neuron)

    def forward(self, x):
        x, trace = self.input(x)
        activation, _ = self.con(x, trace)
        return self.neuron(activation)
