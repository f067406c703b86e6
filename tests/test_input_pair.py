"""A neuron given two inputs as a list (excitation and inhibition, as in Diehl & Cook): the C
kernel folds them itself, ``(first + second) + 0``, reading both where they lie (the
transposed ``(O, B)`` product of a ``reduction="sum"`` Linear included).

The reference is independent of the code under test: the fold taken in NumPy (float32 or
float64 additions, then ``+ 0``) and given as one tensor to a neuron on the PyTorch backend.
Both backends given the pair must match it bit for bit, signs of zeros included; where the
kernel cannot take the pair (dtypes that differ from the cells'), ``"auto"`` falls back to the
same numbers and ``"native"`` raises before any state changes. Parameters and state edited
between paired steps (``.data``, reassigned, ``load_state_dict``) and a live input given a new
layout are read the same way by both backends.
"""

import numpy as np
import pytest
import torch

from pysnn import functional as sf
from pysnn import native
from pysnn._backend import NativeUnavailableError
from pysnn.neuron import (
    AdaptiveLIFNeuron,
    CubaLIFNeuron,
    IFNeuron,
    IzhikevichNeuron,
    LIFNeuron,
)
from helpers import addcmul_rounds_once, assert_same_bits, torch_threads

needs_native = pytest.mark.skipif(
    not (native.available() and native.enabled()),
    reason="needs the built extension with the kernels enabled",
)

DT = 1.0
STEPS = 12
SMALL = (3, 1, 7)  # 21 cells: not a multiple of the vector width
BIG = (4, 1, 3000)  # 12000 cells: the kernel splits them over threads
STATE = ("v_cell", "trace", "thresh", "spikes", "refrac_counts")
MODELS = ["if", "lif-exponential", "lif-linear", "adaptive", "adaptive-relax"]
FUSED = all(addcmul_rounds_once(dtype) for dtype in (torch.float32, torch.float64))


def make(model, cells, backend, dtype=torch.float32):
    """A neuron that spikes and goes refractory under the inputs below; v_rest is -0, so that
    the sign of a zero input shows in the voltage (v = -0 + x)."""
    common = dict(backend=backend)
    if model == "if":
        neuron = IFNeuron(cells, 0.9, -0.0, 1.0, 0.5, DT, 2 * DT, 0.8, **common)
    elif model.startswith("lif"):
        update_type = model.split("-")[1]
        tau_v, tau_t = (0.8, 0.7) if update_type == "linear" else (3.0, 4.0)
        neuron = LIFNeuron(
            cells, 0.9, -0.0, 1.25, 0.5, DT, 2 * DT, tau_v, tau_t, update_type, **common
        )
    else:
        neuron = AdaptiveLIFNeuron(
            cells,
            0.9,
            -0.0,
            1.25,
            0.5,
            DT,
            2 * DT,
            3.0,
            4.0,
            0.25,
            6.0,
            "exponential",
            relax_to_center=model == "adaptive-relax",
            **common,
        )
    return neuron.to(dtype)


def pair_inputs(gen, cells, dtype):
    """``first``: the ``(B, 1, O, 1)`` transposed view of an ``(O, B)`` product (what a "sum"
    Linear returns); ``second``: a contiguous ``(B, 1, O, 1)`` tensor. Some cells get -0 + -0
    and x + (-x), whose fold is +0."""
    batch, _, n = cells
    product = (torch.rand(n, batch, generator=gen, dtype=torch.float64) * 1.2 - 0.2).to(dtype)
    second = (torch.rand(batch, 1, n, 1, generator=gen, dtype=torch.float64) * 0.6 - 0.3).to(dtype)
    first = product.t().unsqueeze(1).unsqueeze(-1)
    product[0, :] = -0.0
    second[:, 0, 0, 0] = -0.0
    second[:, 0, 1, 0] = -product[1, :]
    return first, second


def numpy_fold(first, second):
    """(first + second) + 0 in the inputs' dtype, computed by NumPy: ``cells_shape + (1,)``."""
    a = first.squeeze(-1).numpy()
    b = second.squeeze(-1).numpy()
    zero = np.zeros((), dtype=a.dtype)
    return torch.from_numpy((a + b) + zero).unsqueeze(-1)


def skip_unfused(model):
    if model in ("lif-linear",) and not FUSED:
        pytest.skip("torch's addcmul_ rounds twice on this CPU, the kernel's fma() once")


def run_against_reference(model, cells, backend, steps=STEPS, container=list):
    reference = make(model, cells, "torch")
    paired = make(model, cells, backend)
    gen = torch.Generator().manual_seed(7)
    zero_cells = fired = refractory = 0
    for step in range(steps):
        first, second = pair_inputs(gen, cells, torch.float32)
        folded = numpy_fold(first, second)
        zero_cells += int((folded == 0).sum())
        assert not torch.signbit(folded[:, 0, 0, 0]).any()  # -0 + -0 folds to +0
        expected_spikes, _ = reference(folded)
        spikes, trace = paired(container([first, second]))
        fired += int(expected_spikes.sum())
        refractory = max(refractory, int(reference.refrac_counts.max()))
        assert_same_bits(spikes, expected_spikes, f"step {step}: spikes")
        assert trace is paired.trace
        for name in STATE:
            assert_same_bits(
                getattr(paired, name), getattr(reference, name), f"step {step}: {name}"
            )
    assert zero_cells > 0
    assert fired > 0 and refractory > 0  # cells spiked and went refractory


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_pair_equals_the_numpy_fold(model, backend):
    skip_unfused(model)
    run_against_reference(model, SMALL, backend)


@needs_native
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cells", [SMALL, BIG], ids=["small", "big"])
def test_native_kernel_folds_the_pair(monkeypatch, model, threads, cells):
    """backend="native": the kernel reads both inputs (PyTorch's fold never runs) and gives the
    NumPy fold's numbers, on one thread and split over two."""
    skip_unfused(model)
    calls = []
    original = sf.fold_pair

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(sf, "fold_pair", counted)
    with torch_threads(threads):
        run_against_reference(model, cells, "native")
    # the reference neuron gets one folded tensor: no fold_pair anywhere
    assert calls == []


@needs_native
def test_tuple_of_two_is_folded_by_the_kernel_too():
    run_against_reference("lif-exponential", SMALL, "native", container=tuple)


@needs_native
def test_pair_in_another_dtype_falls_back_or_raises():
    """float64 inputs to float32 cells: "auto" folds in float64 and runs PyTorch's step (as the
    torch backend does); "native" raises before any state changes."""
    gen = torch.Generator().manual_seed(3)
    on_torch = make("lif-exponential", SMALL, "torch")
    on_auto = make("lif-exponential", SMALL, "auto")
    strict = make("lif-exponential", SMALL, "native")
    for step in range(4):
        first, second = pair_inputs(gen, SMALL, torch.float64)
        expected, _ = on_torch([first, second])
        spikes, _ = on_auto([first, second])
        assert_same_bits(spikes, expected, f"step {step}: spikes")
        assert_same_bits(on_auto.v_cell, on_torch.v_cell, f"step {step}: v_cell")
    before = {name: getattr(strict, name).clone() for name in STATE}
    with pytest.raises(NativeUnavailableError, match="cells' shape and dtype"):
        strict([first, second])
    for name in STATE:
        assert_same_bits(getattr(strict, name), before[name], name)


@needs_native
def test_subclass_overriding_a_step_folds_in_pytorch():
    """A subclass that overrides a step method runs PyTorch: its pair is folded by fold_pair and
    gives the reference's numbers."""

    class Logged(LIFNeuron):
        def update_voltage(self, x):
            super().update_voltage(x)

    gen = torch.Generator().manual_seed(5)
    reference = make("lif-exponential", SMALL, "torch")
    params = (0.9, -0.0, 1.25, 0.5, DT, 2 * DT, 3.0, 4.0, "exponential")
    subclass = Logged(SMALL, *params)
    for step in range(5):
        first, second = pair_inputs(gen, SMALL, torch.float32)
        expected, _ = reference(numpy_fold(first, second))
        spikes, _ = subclass([first, second])
        assert_same_bits(spikes, expected, f"step {step}: spikes")
        assert_same_bits(subclass.v_cell, reference.v_cell, f"step {step}: v_cell")


@pytest.mark.parametrize("model", ["izhikevich", "cuba"])
def test_models_without_a_kernel_fold_pairs_in_pytorch(model):
    """Models without a C kernel take a pair as they take a list: the same numbers as the
    NumPy fold given as one tensor."""

    def build():
        if model == "izhikevich":
            # dt, a, b, c, d, alpha_t, tau_t
            return IzhikevichNeuron(SMALL, DT, 0.02, 0.2, -65.0, 8.0, 1.0, 0.9)
        # thresh, v_rest, alpha_v, alpha_i, alpha_t, dt, duration_refrac, tau_v, tau_i, tau_t
        return CubaLIFNeuron(SMALL, 1.0, 0.0, 1.0, 1.0, 1.0, DT, 2 * DT, 0.9, 0.8, 0.9)

    gen = torch.Generator().manual_seed(9)
    reference, paired = build(), build()
    for step in range(5):
        first, second = pair_inputs(gen, SMALL, torch.float32)
        first, second = first * 20, second * 20
        expected, _ = reference(numpy_fold(first, second))
        spikes, _ = paired([first, second])
        assert_same_bits(spikes, expected, f"step {step}: spikes")
        assert_same_bits(paired.v_cell, reference.v_cell, f"step {step}: v_cell")


EDITS = ["data_fill", "reassign", "load_state_dict"]


@needs_native
@pytest.mark.parametrize("model", ["lif-exponential", "adaptive-relax"])
@pytest.mark.parametrize("name", ["thresh", "tau_v", "v_cell", "trace"])
@pytest.mark.parametrize("how", EDITS)
def test_state_edits_between_paired_steps_agree(model, name, how):
    """A parameter or state edited between two paired steps, the same way on a native and a
    torch neuron: the two keep giving the same numbers (the kernel reads the edit)."""
    on_native, on_torch = make(model, SMALL, "native"), make(model, SMALL, "torch")
    gen = torch.Generator().manual_seed(11)
    for step in range(8):
        if step == 4:
            for neuron in (on_native, on_torch):
                value = getattr(neuron, name).detach() * 0.75 + 0.05
                if how == "data_fill":
                    getattr(neuron, name).data.copy_(value)
                elif how == "reassign":
                    holder = neuron._parameters if name == "thresh" else neuron._buffers
                    kind = torch.nn.Parameter if name == "thresh" else torch.Tensor
                    replacement = value.clone()
                    if kind is torch.nn.Parameter:
                        replacement = torch.nn.Parameter(replacement, requires_grad=False)
                    holder[name] = replacement
                else:
                    state = neuron.state_dict()
                    state[name] = value.clone()
                    neuron.load_state_dict(state)
        first, second = pair_inputs(gen, SMALL, torch.float32)
        expected, _ = on_torch([first, second])
        spikes, _ = on_native([first, second])
        assert_same_bits(spikes, expected, f"step {step}: spikes")
        for state_name in STATE:
            assert_same_bits(
                getattr(on_native, state_name),
                getattr(on_torch, state_name),
                f"step {step}: {state_name}",
            )


@needs_native
def test_live_pair_input_given_a_new_layout_is_read_in_it():
    """The kernel keeps the row view of each paired input it saw last. If that tensor object
    gets another layout over the same first address (``x.data = ...``), the kernel must read it
    in the new layout: the result equals the NumPy fold's."""
    batch, _, n = SMALL
    reference = make("lif-exponential", SMALL, "torch")
    paired = make("lif-exponential", SMALL, "native")
    gen = torch.Generator().manual_seed(13)
    product = torch.empty(n, batch)
    first = product.t().unsqueeze(1).unsqueeze(-1)
    second = torch.empty(batch, 1, n, 1)
    for step in range(6):
        values_first, values_second = pair_inputs(gen, SMALL, torch.float32)
        if step == 3:  # the same first address, row-major strides instead of the product's
            relaid = first.data.as_strided(first.shape, (n, n, 1, 1))
            assert relaid.data_ptr() == first.data_ptr() and relaid.stride() != first.stride()
            first.data = relaid
        first.copy_(values_first)
        second.copy_(values_second)
        expected, _ = reference(numpy_fold(first, second))
        spikes, _ = paired([first, second])
        assert_same_bits(spikes, expected, f"step {step}: spikes")
        assert_same_bits(paired.v_cell, reference.v_cell, f"step {step}: v_cell")
