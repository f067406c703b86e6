"""pysnn.network.SNNNetwork: registration, live layer state, reset, saving, a cyclic graph."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from pysnn.connection import Connection, Conv2d, Linear, MaxPool2d
from pysnn.network import SNNNetwork
from pysnn.neuron import AdaptiveLIFNeuron, Input, LIFNeuron
from reference import NeuronRef, as_np, delayed_linear, f32

B, I, H, O = 2, 4, 5, 3
T_STEPS = 40


def lif(n, update_type="linear", refrac=0.0):
    tau = 0.8 if update_type == "linear" else 4.0
    return LIFNeuron((B, 1, n), 1.0, 0.0, 1.0, 1.0, 1.0, refrac, tau, tau, update_type)


class CyclicNet(SNNNetwork):
    """PySNN's README graph: input → n1 → n2, and n2 → n1 through a feedback connection that
    carries the previous step's spikes and trace of n2."""

    def __init__(self, back_delay=0):
        super().__init__()
        self.input = Input((B, 1, I), 1.0, 1.0, 0.8)
        self.fwd1 = Linear(I, H, B, 1.0, 1)
        self.fwd2 = Linear(H, O, B, 1.0, 0)
        self.back = Linear(O, H, B, 1.0, back_delay)
        self.n1 = LIFNeuron((B, 1, H), 1.0, 0.0, 1.5, 1.0, 1.0, 1.0, 0.75, 0.8, "linear")
        self.n2 = AdaptiveLIFNeuron(
            (B, 1, O), 0.9, -0.1, 2.0, 0.5, 1.0, 0.0, 3.0, 4.0, 0.2, 5.0, "exponential"
        )
        self.add_layer("fc1", self.fwd1, self.n1)
        self.add_layer("fc2", self.fwd2, self.n2)
        self.add_layer("fc_back", self.back, self.n1)

    def forward(self, x):
        x, trace = self.input(x)
        a1, t1 = self.fwd1(x, trace)
        a_back, _ = self.back(self.n2.spikes, self.n2.trace)  # previous step's output
        s1, t1 = self.n1([a1, a_back])
        a2, t2 = self.fwd2(s1, t1)
        return self.n2(a2)


def build_cyclic(rng, back_delay=0):
    net = CyclicNet(back_delay).double()
    for conn, scale in ((net.fwd1, 1.0), (net.fwd2, 1.0), (net.back, -0.7)):
        shape = conn.weight.shape
        conn.weight.data.copy_(torch.from_numpy(scale * rng.uniform(0.0, 0.8, shape)))
    return net


@pytest.mark.parametrize("back_delay", [0, 2])
def test_cyclic_network_matches_numpy(rng, back_delay):
    net = build_cyclic(rng, back_delay)
    w1, w2, wb = (c.weight.numpy().copy() for c in (net.fwd1, net.fwd2, net.back))
    ref1 = NeuronRef("lif", (B, 1, H), 1.0, 0.0, 1.5, 1.0, 1.0, 1, 0.8, 0.75, "linear")
    ref2 = NeuronRef(
        "adaptive", (B, 1, O), 0.9, -0.1, 2.0, 0.5, 1.0, 0, 4.0, 3.0, "exponential", 0.2, 5.0
    )
    in_trace = np.zeros((B, I))
    hist_in, hist_back = [], []
    n1_spikes = n2_spikes = 0
    for _ in range(T_STEPS):
        x = (rng.random((B, 1, I)) < 0.5).astype(np.float64)
        spikes, trace = net(torch.from_numpy(x))

        in_trace = in_trace * f32(0.8) + x[:, 0]
        hist_in.append(x[:, 0])
        a1 = w1[None] * delayed_linear(hist_in, 1, H)  # (B, H, I)
        hist_back.append(ref2.history[-1][:, 0].astype(np.float64))  # n2's previous spikes
        a_back = wb[None] * delayed_linear(hist_back, back_delay, H)  # (B, H, O)
        s1, tr1 = ref1.step([a1[:, None], a_back[:, None]])
        a2 = w2[None] * s1[:, 0][:, None, :]  # (B, O, H), no delay
        s2, tr2 = ref2.step(a2[:, None])

        np.testing.assert_allclose(as_np(net.input.trace)[:, 0], in_trace, atol=1e-12)
        np.testing.assert_array_equal(net.n1.spikes.numpy(), s1)
        np.testing.assert_array_equal(spikes.numpy(), s2)
        np.testing.assert_allclose(as_np(trace), tr2, rtol=0, atol=1e-10)
        np.testing.assert_allclose(as_np(net.n1.v_cell), ref1.v, rtol=0, atol=1e-10)
        np.testing.assert_allclose(as_np(net.n2.thresh), ref2.thresh, rtol=0, atol=1e-10)
        n1_spikes += int(s1.sum())
        n2_spikes += int(s2.sum())
    assert 0 < n1_spikes < T_STEPS * B * H and 0 < n2_spikes < T_STEPS * B * O


# -- add_layer --------------------------------------------------------------------------------------
def test_add_layer_type_errors():
    net = SNNNetwork()
    conn, neuron = Linear(I, H, B, 1.0, 0), lif(H)
    with pytest.raises(TypeError, match="connection"):
        net.add_layer("a", nn.Linear(I, H), neuron)
    with pytest.raises(TypeError, match="connection"):
        net.add_layer("a", MaxPool2d(2), neuron)
    with pytest.raises(TypeError, match="Linear or Conv2d"):
        net.add_layer("a", Connection((B, H, I), 1.0, 0), neuron)
    with pytest.raises(TypeError, match="neuron.*Input"):
        net.add_layer("a", conn, Input((B, 1, H), 1.0, 1.0, 0.5))
    with pytest.raises(TypeError, match="neuron"):
        net.add_layer("a", conn, nn.ReLU())
    assert len(net.layers) == 0 and len(list(net.children())) == 0


@pytest.mark.parametrize("name", ["", "fc.1", 3, None])
def test_add_layer_bad_names(name):
    net = SNNNetwork()
    with pytest.raises(KeyError, match="name"):
        net.add_layer(name, Linear(I, H, B, 1.0, 0), lif(H))


def test_add_layer_duplicate_name():
    net = SNNNetwork()
    net.add_layer("fc", Linear(I, H, B, 1.0, 0), lif(H))
    with pytest.raises(KeyError, match="fc"):
        net.add_layer("fc", Linear(H, H, B, 1.0, 0), lif(H))
    assert len(net.layers) == 1


@pytest.mark.parametrize(
    "make_conn, cells, expected",
    [
        (lambda: Linear(I, H, B, 1.0, 0), (B, 1, H + 1), (B, 1, H)),
        (lambda: Linear(I, H, B, 1.0, 0), (B + 1, 1, H), (B, 1, H)),
        (lambda: Linear(I, H, B, 1.0, 0), (B, H), (B, 1, H)),
        (lambda: Conv2d(1, 2, 3, (5, 5), B, 1.0, 0), (B, 2, 5, 5), (B, 2, 3, 3)),
        (lambda: Conv2d(1, 2, 3, (5, 5), B, 1.0, 0, stride=2), (B, 2, 3, 3), (B, 2, 2, 2)),
    ],
)
def test_add_layer_refuses_a_neuron_of_another_shape(make_conn, cells, expected):
    net = SNNNetwork()
    conn = make_conn()
    neuron = LIFNeuron(cells, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5)
    message = rf"cells_shape \({', '.join(map(str, cells))}\) does not match the \w+'s output "
    message += rf"shape \({', '.join(map(str, expected))}\)"
    with pytest.raises(ValueError, match=message):
        net.add_layer("a", conn, neuron)
    assert len(net.layers) == 0 and len(list(net.children())) == 0  # nothing registered
    net.add_layer("a", conn, LIFNeuron(expected, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5))


@pytest.mark.parametrize("role", ["connection", "neuron"])
@pytest.mark.parametrize("existing", ["module", "tensor", "int"])
def test_add_layer_does_not_clobber_an_attribute(role, existing):
    net = SNNNetwork()
    other = {"module": lambda: lif(H), "tensor": lambda: torch.zeros(1), "int": lambda: 7}
    old = other[existing]()
    setattr(net, f"fc_{role}", old)
    conn, neuron = Linear(I, H, B, 1.0, 0), lif(H)
    with pytest.raises(KeyError, match=rf"'fc_{role}' already exists"):
        net.add_layer("fc", conn, neuron)
    assert getattr(net, f"fc_{role}") is old and len(net.layers) == 0
    assert not any(m is conn or m is neuron for m in net.modules())  # nothing registered
    net.add_layer("fc2", Linear(I, H, B, 1.0, 0), lif(H))  # another name is fine


def test_add_layer_accepts_the_attribute_holding_the_same_module():
    net = SNNNetwork()
    conn, neuron = Linear(I, H, B, 1.0, 0), lif(H)
    net.fc_connection = conn
    net.add_layer("fc", conn, neuron)
    assert net.fc_connection is conn and net.fc_neuron is neuron


def test_add_layer_registers_modules_without_attributes():
    """PySNN forgot unassigned modules: .to() and state_dict missed them."""
    net = SNNNetwork()
    conn, neuron = Linear(I, H, B, 1.0, 2), lif(H)
    conv = Conv2d(1, 2, 3, (5, 5), B, 1.0, 0)
    conv_neuron = LIFNeuron((B, 2, 3, 3), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5)
    net.add_layer("fc", conn, neuron)
    net.add_layer("conv", conv, conv_neuron)
    net.add_layer("rec", Linear(H, H, B, 1.0, 0), neuron)  # the same neuron again
    modules = list(net.modules())
    for module in (conn, neuron, conv, conv_neuron):
        assert sum(m is module for m in modules) == 1
    assert [layer["type"] for layer in net.layers.values()] == ["linear", "conv2d", "linear"]
    net.double()
    assert conn.weight.dtype == conv.weight.dtype == torch.float64
    assert neuron.v_cell.dtype == conv_neuron.thresh.dtype == torch.float64
    assert conn.trace.dtype == torch.float64 and conn.trace.stride(1) == 0
    assert any(k.endswith("weight") and "fc" in k for k in net.state_dict())


def test_attribute_and_add_layer_register_once(rng):
    net = build_cyclic(rng)
    n_keys = sum(len(m.state_dict()) for m in (net.input, net.fwd1, net.fwd2, net.back))
    n_keys += sum(len(m.state_dict()) for m in (net.n1, net.n2))
    assert len(net.state_dict()) == n_keys


# -- live state, reset, saving -----------------------------------------------------------------------
def test_layer_state_dict_is_live(rng):
    net = build_cyclic(rng, back_delay=1)
    state = net.layer_state_dict()
    assert isinstance(state, OrderedDict) and list(state) == ["fc1", "fc2", "fc_back"]
    assert (
        set(state["fc1"]) == {"connection", "neuron", "type"} and state["fc1"]["type"] == "linear"
    )
    v_cell = state["fc1"]["neuron"]["v_cell"]
    n2_trace = state["fc2"]["neuron"]["trace"]
    conn_trace = state["fc1"]["connection"]["trace"]
    thresh = state["fc2"]["neuron"]["thresh"]
    weight = state["fc1"]["connection"]["weight"]
    assert weight.data_ptr() == net.fwd1.weight.data_ptr()
    seen = []
    for _ in range(6):
        before = v_cell.clone()
        net(torch.from_numpy((rng.random((B, 1, I)) < 0.7).astype(np.float64)))
        seen.append(not torch.equal(before, v_cell))
        assert torch.equal(v_cell, net.n1.v_cell)
        assert torch.equal(n2_trace, net.n2.trace)
        assert torch.equal(thresh, net.n2.thresh)
        assert torch.equal(conn_trace, net.fwd1.trace)
    assert any(seen), "the tensor from layer_state_dict follows the steps"
    assert net.n2.trace.any() and net.fwd1.trace.any()


def run_net(net, inputs):
    return [tuple(t.clone() for t in net(x)) for x in inputs]


def test_reset_state_restarts_the_network(rng):
    net = build_cyclic(rng, back_delay=2)
    net.extra = nn.Identity()  # a plain module child must not break reset_state (PySNN raised)
    inputs = [torch.from_numpy((rng.random((B, 1, I)) < 0.6).astype(np.float64)) for _ in range(15)]
    first = run_net(net, inputs)
    net.reset_state()
    for module in (net.n1, net.n2):
        assert not module.spikes.any() and not module.trace.any()
        assert (module.v_cell == module.v_rest).all()
    assert not net.back.spike_queue.any() and not net.input.trace.any()
    second = run_net(net, inputs)
    for (s_a, t_a), (s_b, t_b) in zip(first, second):
        assert torch.equal(s_a, s_b) and torch.equal(t_a, t_b)
    assert any(s.any() for s, _ in first)


def test_network_state_dict_round_trip(rng, tmp_path):
    net = build_cyclic(rng, back_delay=2)
    steps = [torch.from_numpy((rng.random((B, 1, I)) < 0.6).astype(np.float64)) for _ in range(20)]
    run_net(net, steps[:7])
    assert net.fwd1.spike_queue.any() or net.back.spike_queue.any()
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    fresh = build_cyclic(np.random.default_rng(7), back_delay=2)
    fresh.load_state_dict(torch.load(path))
    expected = run_net(net, steps[7:])
    got = run_net(fresh, steps[7:])
    for (s_a, t_a), (s_b, t_b) in zip(expected, got):
        assert torch.equal(s_a, s_b) and torch.equal(t_a, t_b)
    assert any(s.any() for s, _ in expected)
