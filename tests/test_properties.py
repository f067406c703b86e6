"""Property: reduction="none" and reduction="sum" are the same network.

Random Input → Linear/Conv2d → IF/LIF/Fede networks with random int or per-synapse delays. The
weights are multiples of 1/16 and the input traces halve every step, so every sum is exact in
float64 whatever the summation order: spikes, traces and voltages must agree bit for bit.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pysnn.connection import Conv2d, Linear
from pysnn.neuron import FedeNeuron, IFNeuron, Input, LIFNeuron
from reference import dyadic

T_STEPS = 12
NEURONS = ["if", "lif_linear", "lif_exponential", "fede"]


@st.composite
def networks(draw, neuron: str, kind: str):
    """A network description: connection geometry, delays and a seed."""
    spec = {
        "batch": draw(st.integers(1, 3)),
        "neuron": neuron,
        "delay": draw(st.sampled_from(["int", "tensor"])),
        "max_delay": draw(st.integers(0, 3)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "input_update": draw(st.sampled_from(["linear", "exponential"])),
    }
    if kind == "linear":
        spec.update(kind="linear", n_in=draw(st.integers(1, 6)), n_out=draw(st.integers(1, 5)))
    else:
        height, width = draw(st.integers(3, 6)), draw(st.integers(3, 6))
        spec.update(
            kind="conv2d",
            c_in=draw(st.integers(1, 2)),
            c_out=draw(st.integers(1, 3)),
            im=(height, width),
            kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
            stride=draw(st.integers(1, 2)),
            padding=draw(st.integers(0, 1)),
        )
    return spec


def build(spec, reduction):
    """The network of ``spec`` with the given reduction; the same weights for both reductions."""
    rng = np.random.default_rng(spec["seed"])
    batch = spec["batch"]
    delay = spec["max_delay"]
    if spec["kind"] == "linear":
        in_shape = (batch, 1, spec["n_in"])
        probe = Linear(spec["n_in"], spec["n_out"], batch, 1.0, 0)
    else:
        in_shape = (batch, spec["c_in"]) + spec["im"]
        geometry = (spec["kernel"], spec["im"], batch, 1.0)
        probe = Conv2d(spec["c_in"], spec["c_out"], *geometry, 0, spec["stride"], spec["padding"])
    if spec["delay"] == "tensor":
        delay = torch.from_numpy(rng.integers(0, spec["max_delay"] + 1, probe.synapse_shape[1:]))
    if spec["kind"] == "linear":
        conn = Linear(spec["n_in"], spec["n_out"], batch, 1.0, delay, reduction=reduction)
        cells = (batch, 1, spec["n_out"])
    else:
        conn = Conv2d(
            spec["c_in"],
            spec["c_out"],
            *geometry,
            delay,
            spec["stride"],
            spec["padding"],
            reduction=reduction,
        )
        cells = (batch, spec["c_out"]) + conn.image_out_shape
    kind = spec["neuron"]
    # Fede subtracts the presynaptic traces: positive weights and small traces make it spike
    low, alpha_t = (0, 0.25) if kind == "fede" else (-16, 1.0)
    conn.weight.data.copy_(torch.from_numpy(dyadic(rng, tuple(conn.weight.shape), low, 24)))
    # alpha a power of 2 and decay 1/2 (or dt/tau = 1/2): traces stay on a dyadic grid
    tau_in = 0.5 if spec["input_update"] == "linear" else 2.0
    inp = Input(in_shape, 1.0, alpha_t, tau_in, spec["input_update"])
    if kind == "if":
        neuron = IFNeuron(cells, 0.5, 0.0, 1.0, 1.0, 1.0, 1.0, 0.5)
    elif kind == "lif_linear":
        neuron = LIFNeuron(cells, 0.5, -0.25, 1.0, 1.0, 1.0, 0.0, 0.8, 0.7)
    elif kind == "lif_exponential":
        neuron = LIFNeuron(cells, 0.5, 0.0, 1.5, 1.0, 1.0, 2.0, 3.0, 4.0, "exponential")
    else:
        neuron = FedeNeuron(cells, 0.25, 0.0, 2.0, 1.0, 1.0, 0.0, 2.0, 3.0)
    inputs = [torch.from_numpy(rng.random(in_shape) < 0.5) for _ in range(T_STEPS)]
    return inp.double(), conn.double(), neuron.double(), inputs


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
@pytest.mark.parametrize("neuron", NEURONS)
def test_none_and_sum_reductions_agree(neuron, kind):
    """Every neuron type with both connection types; 4 random networks each (32 in all)."""

    @settings(max_examples=4, deadline=None, database=None, derandomize=True)
    @given(spec=networks(neuron, kind))
    def check(spec):
        compare(spec)

    check()


def compare(spec):
    nets = [build(spec, "none"), build(spec, "sum")]
    for t in range(T_STEPS):
        outs = []
        for inp, conn, neuron, inputs in nets:
            x, trace = inp(inputs[t])
            act, pre_trace = conn(x, trace)
            if isinstance(neuron, FedeNeuron):
                spikes, post_trace = neuron(act, pre_trace)
            else:
                spikes, post_trace = neuron(act)
            outs.append((act, pre_trace, spikes, post_trace, neuron.v_cell))
        (act_n, pre_n, spk_n, post_n, v_n), (act_s, pre_s, spk_s, post_s, v_s) = outs
        assert act_s.shape == act_n.shape[:-1] + (1,)
        assert torch.equal(act_n.sum(-1, keepdim=True), act_s)
        assert torch.equal(pre_n.sum(-1, keepdim=True), pre_s)
        assert torch.equal(spk_n, spk_s)
        assert torch.equal(post_n, post_s)
        assert torch.equal(v_n, v_s)
