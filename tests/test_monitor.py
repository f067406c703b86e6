"""Monitor and NetworkMonitor: records equal hand-collected values, bounded memory, dtypes."""

import numpy as np
import pytest
import torch

from pysnn.connection import Conv2d, Linear
from pysnn.monitor import Monitor, NetworkMonitor
from pysnn.network import SNNNetwork
from pysnn.neuron import AdaptiveLIFNeuron, IFNeuron, Input, LIFNeuron

B, I, O = 3, 6, 4


class Net(SNNNetwork):
    """Input → Linear → adaptive LIF → Linear(sum) → LIF."""

    def __init__(self, delay=1):
        super().__init__()
        self.input = Input((B, 1, I), 1.0, 1.0, 0.8)
        self.con1 = Linear(I, O, B, 1.0, delay)
        self.con1.reset_weights("uniform", a=0.0, b=0.6)
        self.neuron1 = AdaptiveLIFNeuron(
            (B, 1, O), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.9, 0.7, 0.2, 0.9, relax_to_center=True
        )
        self.con2 = Linear(O, 2, B, 1.0, 0, reduction="sum")
        self.neuron2 = LIFNeuron((B, 1, 2), 0.5, 0.0, 1.0, 1.0, 1.0, 0.0, 0.8, 0.7)
        self.add_layer("fc1", self.con1, self.neuron1)
        self.add_layer("fc2", self.con2, self.neuron2)

    def forward(self, x):
        x, trace = self.input(x)
        x, trace = self.con1(x, trace)
        x, trace = self.neuron1(x)
        x, trace = self.con2(x, trace)
        return self.neuron2(x)


def _inputs(steps, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(B, 1, I, steps, generator=generator) < 0.5


def _net(delay=1, seed=0):
    torch.manual_seed(seed)
    return Net(delay)


def _hand_loop(net, inputs, getters):
    """Run the net step by step, cloning each getter's value after the step."""
    collected = {name: [] for name in getters}
    for t in range(inputs.shape[-1]):
        net(inputs[..., t])
        for name, getter in getters.items():
            collected[name].append(getter().clone())
    return {name: torch.stack(values) for name, values in collected.items()}


def test_if_neuron_voltage_and_spikes_match_analytic_values():
    # constant input 0.3 into an IF neuron with threshold 1: v = 0.3, 0.6, 0.9, then 1.2 spikes
    # and resets to 0; the pattern repeats every 4 steps.
    neuron = IFNeuron((1, 1, 1), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5)
    steps = 12
    with Monitor(neuron, ["v_cell", "spikes"]) as monitor:
        for _ in range(steps):
            neuron(torch.full((1, 1, 1, 1), 0.3))
    v_expected, s_expected, v = [], [], 0.0
    for _ in range(steps):
        v += 0.3
        spike = v >= 1.0
        v = 0.0 if spike else v
        v_expected.append(v)
        s_expected.append(spike)
    assert monitor.get("v_cell").shape == (steps, 1, 1, 1)
    np.testing.assert_allclose(monitor.get("v_cell").flatten().numpy(), v_expected, atol=1e-6)
    assert monitor.get("spikes").flatten().tolist() == s_expected
    assert monitor.get("spikes").dtype == torch.bool
    assert monitor.steps.tolist() == list(range(steps))


def test_records_equal_hand_collected_values_exactly():
    inputs = _inputs(20)
    net, twin = _net(), _net()
    neuron_mon = Monitor(net.neuron1, ["spikes", "v_cell", "trace", "thresh", "refrac_counts"])
    con_mon = Monitor(net.con1, ["trace", "spikes", "weight"])
    input_mon = Monitor(net.input, "spikes")
    for t in range(inputs.shape[-1]):
        net(inputs[..., t])
    hand = _hand_loop(
        twin,
        inputs,
        {
            "spikes": lambda: twin.neuron1.spikes,
            "v_cell": lambda: twin.neuron1.v_cell,
            "trace": lambda: twin.neuron1.trace,
            "thresh": lambda: twin.neuron1.thresh.data,
            "refrac_counts": lambda: twin.neuron1.refrac_counts,
            "con_trace": lambda: twin.con1.trace,
            "con_spikes": lambda: twin.con1.spikes,
            "weight": lambda: twin.con1.weight.data,
            "input": lambda: twin.input.spikes,
        },
    )
    for name in ("spikes", "v_cell", "trace", "thresh", "refrac_counts"):
        assert torch.equal(neuron_mon.get(name), hand[name]), name
    assert torch.equal(con_mon.get("trace"), hand["con_trace"])
    assert torch.equal(con_mon.get("spikes"), hand["con_spikes"])
    assert torch.equal(con_mon.get("weight"), hand["weight"])
    assert torch.equal(input_mon.get("spikes"), hand["input"])
    # the run was not trivial: spikes, threshold adaptation and refractoriness all happened
    assert hand["spikes"].any() and not hand["spikes"].all()
    assert (hand["thresh"] > 1.0).any()
    assert (hand["refrac_counts"] > 0).any()


def test_get_returns_a_copy_that_later_records_do_not_change():
    net = _net()
    inputs = _inputs(4)
    monitor = Monitor(net.neuron1, ["v_cell"], max_steps=2)
    net(inputs[..., 0])
    net(inputs[..., 1])
    first = monitor.get("v_cell")
    kept = first.clone()
    net(inputs[..., 2])
    net(inputs[..., 3])
    assert torch.equal(first, kept)


def test_ring_buffer_has_max_steps_rows_and_keeps_the_last_records():
    inputs = _inputs(13)
    net, twin = _net(), _net()
    monitor = Monitor(net.neuron1, ["v_cell", "spikes"], max_steps=5)
    assert monitor.capacity == 5
    for t in range(3):
        net(inputs[..., t])
    hand = _hand_loop(twin, inputs, {"v": lambda: twin.neuron1.v_cell})["v"]
    assert len(monitor) == 3
    assert torch.equal(monitor.get("v_cell"), hand[:3])
    for t in range(3, 13):
        net(inputs[..., t])
    assert monitor.capacity == 5  # no growth: the memory is bounded
    assert len(monitor) == 5
    assert monitor.get("v_cell").shape == (5, B, 1, O)
    assert torch.equal(monitor.get("v_cell"), hand[8:])
    assert monitor.steps.tolist() == [8, 9, 10, 11, 12]
    # wrap exactly at a multiple of max_steps too
    for t in range(2):
        net(inputs[..., t])
    assert monitor.steps.tolist() == [10, 11, 12, 13, 14]


def test_growing_storage_doubles_and_keeps_everything():
    inputs = _inputs(70)
    net, twin = _net(), _net()
    monitor = Monitor(net.neuron1, ["v_cell"])
    start = monitor.capacity
    for t in range(70):
        net(inputs[..., t])
    hand = _hand_loop(twin, inputs, {"v": lambda: twin.neuron1.v_cell})["v"]
    assert len(monitor) == 70
    assert torch.equal(monitor.get("v_cell"), hand)
    capacity = start
    while capacity < 70:
        capacity *= 2
    assert monitor.capacity == capacity


def test_every_k_records_every_kth_call():
    inputs = _inputs(10)
    net, twin = _net(), _net()
    monitor = Monitor(net.neuron1, ["v_cell"], every=3)
    for t in range(10):
        net(inputs[..., t])
    hand = _hand_loop(twin, inputs, {"v": lambda: twin.neuron1.v_cell})["v"]
    assert monitor.steps.tolist() == [2, 5, 8]
    assert torch.equal(monitor.get("v_cell"), hand[2::3])


def test_works_after_moving_to_float64():
    inputs = _inputs(8)
    net, twin = _net(), _net()
    monitor = Monitor(net.neuron1, ["v_cell", "spikes"])
    con_monitor = Monitor(net.con1, ["trace"])
    hand_v, hand_trace = [], []
    for t in range(8):
        if t == 4:
            net.to(torch.float64)
            twin.to(torch.float64)
        net(inputs[..., t])
        twin(inputs[..., t])
        hand_v.append(twin.neuron1.v_cell.clone().to(torch.float64))
        hand_trace.append(twin.con1.trace.clone().to(torch.float64))
    assert monitor.get("v_cell").dtype == torch.float64
    assert torch.equal(monitor.get("v_cell"), torch.stack(hand_v))
    assert torch.equal(con_monitor.get("trace"), torch.stack(hand_trace))
    assert monitor.get("spikes").dtype == torch.bool


def test_per_synapse_views_are_recorded_compactly():
    inputs = _inputs(6)
    net, twin = _net(delay=2), _net(delay=2)
    monitor = Monitor(net.con1, ["trace", "spikes", "delay"])
    for t in range(6):
        net(inputs[..., t])
    hand = _hand_loop(
        twin, inputs, {"trace": lambda: twin.con1.trace, "spikes": lambda: twin.con1.spikes}
    )
    full = monitor.get("trace")
    assert full.shape == (6, B, O, I) and full.stride(2) == 0
    assert monitor.get("trace", compact=True).shape == (6, B, 1, I)
    assert monitor.get("delay", compact=True).shape == (6, 1, 1, 1)
    assert torch.equal(monitor.get("delay"), torch.full((6, B, O, I), 2, dtype=torch.int64))
    assert torch.equal(full, hand["trace"])
    assert torch.equal(monitor.get("spikes"), hand["spikes"])
    arrays = monitor.to_numpy()
    assert arrays["trace"].shape == (6, B, O, I)
    assert not arrays["trace"].flags.writeable
    np.testing.assert_array_equal(arrays["trace"], hand["trace"].numpy())


def test_per_synapse_delay_spikes_are_recorded_in_full():
    delays = torch.arange(O * I).reshape(O, I) % 3
    torch.manual_seed(0)
    con = Linear(I, O, B, 1.0, delays)
    torch.manual_seed(0)
    twin = Linear(I, O, B, 1.0, delays)
    inputs = _inputs(7)
    monitor = Monitor(con, ["spikes"])
    hand = []
    for t in range(7):
        trace = torch.zeros(B, 1, I)
        con(inputs[..., t], trace)
        twin(inputs[..., t], trace)
        hand.append(twin.spikes.clone())
    assert monitor.get("spikes", compact=True).shape == (7, B, O, I)
    assert torch.equal(monitor.get("spikes"), torch.stack(hand))


def test_conv2d_trace_recorded_compactly():
    con = Conv2d(2, 3, 3, (5, 5), 2, 1.0, 0)
    monitor = Monitor(con, "trace")
    hand = []
    for step in range(3):
        spikes = torch.rand(2, 2, 5, 5) < 0.5
        trace = torch.rand(2, 2, 5, 5)
        con(spikes, trace)
        hand.append(con.trace.clone())
    assert monitor.get("trace", compact=True).shape == (3, 2, 1, 18, 9)
    assert torch.equal(monitor.get("trace"), torch.stack(hand))


def test_reset_remove_and_context_manager():
    inputs = _inputs(6)
    net = _net()
    monitor = Monitor(net.neuron1, ["v_cell"])
    for t in range(3):
        net(inputs[..., t])
    monitor.reset()
    assert len(monitor) == 0 and monitor.get("v_cell").shape == (0, B, 1, O)
    net(inputs[..., 3])
    assert torch.equal(monitor.get("v_cell")[0], net.neuron1.v_cell)
    assert monitor.steps.tolist() == [0]
    monitor.remove()
    monitor.remove()  # twice is harmless
    assert not monitor.attached
    net(inputs[..., 4])
    assert len(monitor) == 1
    with Monitor(net.neuron1, ["spikes"]) as scoped:
        net(inputs[..., 5])
    net(inputs[..., 0])
    assert len(scoped) == 1 and not scoped.attached
    assert len(net.neuron1._forward_hooks) == 0


def test_manual_record_without_hook_and_several_monitors():
    inputs = _inputs(4)
    net = _net()
    manual = Monitor(net.neuron1, ["v_cell"], hook=False)
    hooked_a = Monitor(net.neuron1, ["v_cell"])
    hooked_b = Monitor(net.neuron1, ["spikes", "v_cell"], max_steps=2)
    for t in range(4):
        net(inputs[..., t])
        if t % 2 == 1:
            manual.record()
    assert torch.equal(manual.get("v_cell"), hooked_a.get("v_cell")[1::2])
    assert torch.equal(hooked_b.get("v_cell"), hooked_a.get("v_cell")[2:])
    assert manual.steps.tolist() == [-1, -1]  # no step counted without a hook or run()


def test_network_monitor_records_every_neuron_by_name():
    inputs = _inputs(9)
    net, twin = _net(), _net()
    monitor = NetworkMonitor(net, ("spikes", "v_cell"), max_steps=6)
    assert list(monitor.keys()) == ["input", "neuron1", "neuron2"]
    assert monitor["input"].variables == ("spikes",)  # an Input has no voltage
    for t in range(9):
        net(inputs[..., t])
    hand = _hand_loop(
        twin,
        inputs,
        {
            "input": lambda: twin.input.spikes,
            "neuron1": lambda: twin.neuron1.spikes,
            "neuron2": lambda: twin.neuron2.spikes,
            "v2": lambda: twin.neuron2.v_cell,
        },
    )
    for name in ("input", "neuron1", "neuron2"):
        assert torch.equal(monitor.get(name), hand[name][3:]), name
    assert torch.equal(monitor.get("neuron2", "v_cell"), hand["v2"][3:])
    arrays = monitor.to_numpy()
    assert set(arrays) == {"input", "neuron1", "neuron2"}
    np.testing.assert_array_equal(arrays["neuron1"]["spikes"], hand["neuron1"][3:].numpy())
    monitor.remove()
    assert not monitor.attached


def test_network_monitor_names_modules_registered_only_by_add_layer():
    class Bare(SNNNetwork):
        def __init__(self):
            super().__init__()
            self.add_layer(
                "layer",
                Linear(2, 2, 1, 1.0, 0),
                LIFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.9, 0.9),
            )

    monitor = NetworkMonitor(Bare())
    assert list(monitor.keys()) == ["layer_neuron"]


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"variables": ["voltage"]}, ValueError, "'voltage'"),
        ({"variables": []}, TypeError, "variables"),
        ({"variables": ["v_cell", "v_cell"]}, ValueError, "unique"),
        ({"variables": ["v_cell"], "max_steps": 0}, ValueError, "max_steps must be >= 1, got 0"),
        ({"variables": ["v_cell"], "every": 0}, ValueError, "every must be >= 1, got 0"),
        ({"variables": ["v_cell"], "every": 1.5}, TypeError, "every must be an int"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, words):
    neuron = LIFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.9, 0.9)
    with pytest.raises(error, match=words):
        Monitor(neuron, **kwargs)
    assert len(neuron._forward_hooks) == 0


def test_other_errors():
    neuron = LIFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.9, 0.9)
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        Monitor("neuron", ["v_cell"])
    monitor = Monitor(neuron, ["v_cell"])
    with pytest.raises(KeyError, match="'spikes' is not recorded"):
        monitor.get("spikes")
    with pytest.raises(ValueError, match="no neuron of the network has a tensor 'weight_x'"):
        NetworkMonitor(_net(), ["weight_x"])
    with pytest.raises(ValueError, match="contains no pysnn neuron"):
        NetworkMonitor(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("hook", [True, False])
@pytest.mark.parametrize("variable", ["spikes", "v_cell"])
def test_a_variable_set_to_none_gives_an_error_naming_it_and_the_module(hook, variable):
    neuron = LIFNeuron((1, 1, 3), 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    monitor = Monitor(neuron, ["spikes", "v_cell"], hook=hook)
    neuron(torch.ones(1, 1, 3, 1))
    monitor.record()
    setattr(neuron, variable, None)
    pattern = rf"Monitor: the monitored variable '{variable}' of module LIFNeuron is no longer a "
    if hook:  # before the forward, which would fail with a 'data_ptr' descriptor error
        with pytest.raises(ValueError, match=pattern):
            neuron(torch.ones(1, 1, 3, 1))
    with pytest.raises(ValueError, match=pattern):
        monitor.record()
    from pysnn.simulation import run

    with pytest.raises(ValueError, match=pattern):
        run(neuron, torch.ones(1, 1, 3, 1, 4), monitors=[monitor], reset=False)
    held = 2 if hook else 1  # the earlier records are kept (the hook's and the manual one)
    assert len(monitor) == held
    assert monitor.get("spikes").shape == (held, 1, 1, 3)
    monitor.remove()
    assert len(neuron._forward_pre_hooks) == 0 and len(neuron._forward_hooks) == 0
