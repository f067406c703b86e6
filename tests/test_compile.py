"""torch.compile of network steps gives the eager result, with the kernels on and off.

Dynamo traces the PyTorch whole-step functions of modules whose backend is ``"auto"`` or
``"torch"``; with ``"native"`` the C twin runs as an opaque call (a graph break). The
reference of every comparison is the same network run without compilation on the PyTorch
backend.
"""

import contextlib
import copy

import pytest
import torch

from pysnn import native
from pysnn.connection import Linear
from pysnn.models import DiehlCook2015
from pysnn.neuron import Input, LIFNeuron

B, I, O, STEPS = 4, 30, 12, 8


class Step(torch.nn.Module):
    def __init__(self, backend: str = "auto") -> None:
        super().__init__()
        self.input = Input((B, 1, I), 1.0, 1.0, 0.8, backend=backend)
        self.linear = Linear(I, O, B, 1.0, 2, reduction="sum", backend=backend)
        self.neuron = LIFNeuron((B, 1, O), 1.0, 0.0, 0.6, 1.0, 1.0, 2.0, 0.9, 0.8, backend=backend)

    def forward(self, x):
        spikes, trace = self.input(x)
        activation, trace = self.linear(spikes, trace)
        return self.neuron(activation)


def _inputs(seed: int, shape=(B, 1, I)):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=gen) < 0.4 for _ in range(STEPS)]


def _set_backend(model: torch.nn.Module, backend: str) -> None:
    for module in model.modules():
        if hasattr(module, "backend") and "native" in getattr(module, "supported_backends", ()):
            module.backend = backend


def _kernels(kernels: str):
    """``native.disabled()`` for ``"off"``, nothing for ``"on"``."""
    return native.disabled() if kernels == "off" else contextlib.nullcontext()


def _run(model, step, inputs):
    out = []
    for x in inputs:
        spikes, trace = step(x)
        out.append((spikes.clone(), trace.clone()))
    return out


def _assert_same_runs(got, expected, model, reference):
    for step, ((s, t), (s_ref, t_ref)) in enumerate(zip(got, expected)):
        assert torch.equal(s, s_ref), f"step {step}: spikes"
        torch.testing.assert_close(t, t_ref, rtol=1e-6, atol=1e-7, msg=f"step {step}: trace")
    for (name, value), (_, value_ref) in zip(
        model.state_dict().items(), reference.state_dict().items()
    ):
        torch.testing.assert_close(value, value_ref, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    "kernels, compile_backend", [("on", "aot_eager"), ("off", "aot_eager"), ("on", "inductor")]
)
def test_compiled_input_linear_lif_equals_eager(kernels, compile_backend):
    torch.manual_seed(0)
    reference = Step(backend="torch")
    model = copy.deepcopy(reference)
    _set_backend(model, "auto")
    inputs = _inputs(1)
    expected = _run(reference, reference, inputs)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=compile_backend)
    with _kernels(kernels):
        got = _run(model, compiled, inputs)
    _assert_same_runs(got, expected, model, reference)


@pytest.mark.skipif(not native.enabled(), reason="the kernels are switched off")
def test_compiled_step_with_native_backend_runs_the_kernels_opaquely():
    torch.manual_seed(0)
    reference = Step(backend="torch")
    model = copy.deepcopy(reference)
    _set_backend(model, "native")
    inputs = _inputs(2)
    expected = _run(reference, reference, inputs)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    got = _run(model, compiled, inputs)
    # the kernels and the eager code give the same bits: nothing is left to tolerance here
    for (s, t), (s_ref, t_ref) in zip(got, expected):
        assert torch.equal(s, s_ref) and torch.equal(t, t_ref)


@pytest.mark.parametrize("kernels", ["on", "off"])
def test_compiled_diehl_cook_forward_equals_eager(kernels):
    torch.manual_seed(0)
    reference = DiehlCook2015(16, 10, 2)
    _set_backend(reference, "torch")
    model = copy.deepcopy(reference)
    _set_backend(model, "auto")
    inputs = _inputs(3, (2, 1, 16))
    expected = _run(reference, reference, inputs)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    with _kernels(kernels):
        got = _run(model, compiled, inputs)
    _assert_same_runs(got, expected, model, reference)
