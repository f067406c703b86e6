"""Connections for newcomers: PySNN's trailing parameters have defaults, a wrong batch size is
explained, and the weight initialisation recommendation holds."""

import pytest
import torch

from pysnn.connection import Conv2d, Linear
from pysnn.neuron import LIFNeuron


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def test_linear_defaults_equal_the_explicit_positional_call():
    torch.manual_seed(0)
    short = Linear(5, 3)
    torch.manual_seed(0)
    explicit = Linear(5, 3, 1, 1.0, 0)
    _same_state(short, explicit)
    assert (short.batch_size, float(short.dt), short.max_delay) == (1, 1.0, 0)


def test_conv2d_defaults_equal_the_explicit_positional_call():
    torch.manual_seed(0)
    short = Conv2d(2, 4, 3, (6, 6))
    torch.manual_seed(0)
    explicit = Conv2d(2, 4, 3, (6, 6), 1, 1.0, 0, 1, 0, 1)
    _same_state(short, explicit)


@pytest.mark.parametrize("name", ["x", "trace_in"])
def test_a_wrong_batch_size_is_explained_before_any_state_changes(name):
    lin = Linear(4, 3, 2, 1.0, 2)
    before = {k: v.clone() for k, v in lin.state_dict().items()}
    good = (torch.zeros(2, 1, 4, dtype=torch.bool), torch.zeros(2, 1, 4))
    bad = (torch.zeros(5, 1, 4, dtype=torch.bool), torch.zeros(5, 1, 4))
    args = (bad[0], good[1]) if name == "x" else (good[0], bad[1])
    with pytest.raises(ValueError) as info:
        lin(*args)
    message = str(info.value)
    assert message.startswith(f"Linear: {name} must have shape (2, 1, 4), got (5, 1, 4)")
    assert "its batch size is 5, but this connection was built for batch_size=2" in message
    assert "fixed at construction" in message and "batch_size=5" in message
    for key, value in lin.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_other_shape_errors_get_no_batch_hint():
    lin = Linear(4, 3, 2)
    with pytest.raises(ValueError) as info:
        lin(torch.zeros(2, 1, 5, dtype=torch.bool), torch.zeros(2, 1, 5))
    assert "batch size" not in str(info.value)


def _rate(distribution, input_rate, n_in=100, n_out=50, steps=200):
    """Spikes per neuron per step of Linear(n_in, n_out) -> LIF driven at ``input_rate``."""
    torch.manual_seed(0)
    lin = Linear(n_in, n_out, 1, 1.0, 0, reduction="sum")
    lin.reset_weights(distribution)
    neuron = LIFNeuron((1, 1, n_out), thresh=1.0, duration_refrac=1.0, tau_v=0.9)
    generator = torch.Generator().manual_seed(1)
    fired = 0
    for _ in range(steps):
        x = torch.rand(1, 1, n_in, generator=generator) < input_rate
        activation, _ = lin(x, x.float())
        fired += int(neuron(activation)[0].sum())
    return fired / (steps * n_out)


def test_fan_in_scaled_weights_let_a_first_layer_respond_to_its_input():
    """The docstring's recommendation: with U(0, 1) weights a layer of 100 inputs fires at its
    refractory limit (1 ms at dt = 1 ms: 0.5 spikes per step) whether 5 % or 20 % of the
    inputs are active; with weights scaled by 1/sqrt(fan-in) its rate follows the input."""
    assert 0.45 < _rate("uniform", 0.05) <= _rate("uniform", 0.2) == 0.5
    low, high = _rate("neuron_scaled_uniform", 0.05), _rate("neuron_scaled_uniform", 0.2)
    assert 0 < low < 0.5 * high
    assert high < 0.5
