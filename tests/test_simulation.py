"""run(): the same numbers as the hand-written loop, bit for bit, with and without learning."""

import copy

import numpy as np
import pytest
import torch

from pysnn.connection import Linear
from pysnn.monitor import Monitor, NetworkMonitor
from pysnn.network import SNNNetwork
from pysnn.neuron import IFNeuron, Input, LIFNeuron
from pysnn.simulation import run

B, I, H, O = 2, 8, 5, 3


class Net(SNNNetwork):
    def __init__(self, delay=1):
        super().__init__()
        self.input = Input((B, 1, I), 1.0, 1.0, 0.8)
        self.con1 = Linear(I, H, B, 1.0, delay)
        self.con1.reset_weights("uniform", a=0.0, b=0.5)
        self.neuron1 = LIFNeuron((B, 1, H), 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.7)
        self.con2 = Linear(H, O, B, 1.0, 0, reduction="sum")
        self.con2.reset_weights("uniform", a=0.2, b=0.8)
        self.neuron2 = LIFNeuron((B, 1, O), 0.8, 0.0, 1.0, 1.0, 1.0, 0.0, 0.8, 0.7)
        self.add_layer("fc1", self.con1, self.neuron1)
        self.add_layer("fc2", self.con2, self.neuron2)

    def forward(self, x):
        x, trace = self.input(x)
        x, trace = self.con1(x, trace)
        x, trace = self.neuron1(x)
        x, trace = self.con2(x, trace)
        return self.neuron2(x)


class ToyRule:
    """Stand-in learning rule: a deterministic Hebbian update with an eligibility trace."""

    def __init__(self, net, lr=0.05):
        self.net, self.lr = net, lr
        self.eligibility = torch.zeros_like(net.con1.weight)
        self.calls = []

    def update_state(self):
        post = self.net.neuron1.spikes.to(self.eligibility.dtype)  # (B, 1, H)
        pre = self.net.con1.pre_trace  # (B, 1, I)
        outer = torch.einsum("bxo,bxi->oi", post, pre) / post.shape[0]
        self.eligibility.mul_(0.5).add_(outer)
        self.calls.append("update_state")

    def step(self, reward=1.0):
        self.net.con1.weight.data.add_(self.eligibility, alpha=self.lr * float(reward))
        self.calls.append(("step", float(reward)))

    def reset_state(self):
        self.eligibility.zero_()
        self.calls.append("reset_state")


def _inputs(steps=25, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(B, 1, I, steps, generator=generator) < 0.6


def _pair(delay=1):
    torch.manual_seed(1)
    net = Net(delay)
    return net, copy.deepcopy(net)


def test_run_equals_the_manual_loop_bit_for_bit():
    inputs = _inputs()
    net, twin = _pair()
    # dirty state first, so that reset=True matters
    net(inputs[..., 0])
    twin(inputs[..., 0])
    out = run(net, inputs)
    twin.reset_state()
    manual = []
    for t in range(inputs.shape[-1]):
        spikes, _ = twin(inputs[..., t])
        manual.append(spikes)
    expected = torch.stack(manual, dim=-1)
    assert out.shape == (B, 1, O, inputs.shape[-1]) and out.dtype == torch.bool
    assert torch.equal(out, expected)
    assert expected.any()  # the run produced output spikes
    assert torch.equal(net.neuron1.v_cell, twin.neuron1.v_cell)
    assert torch.equal(net.con1.spike_queue, twin.con1.spike_queue)


def test_run_output_matches_analytic_if_neuron():
    # one input spiking every step, weight 0.4, IF threshold 1: v = 0.4, 0.8, 1.2 → spike, reset
    class Tiny(SNNNetwork):
        def __init__(self):
            super().__init__()
            self.input = Input((1, 1, 1), 1.0, 1.0, 0.5)
            self.con = Linear(1, 1, 1, 1.0, 0)
            self.con.reset_weights("constant", gain=0.4)
            self.neuron = IFNeuron((1, 1, 1), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5)
            self.add_layer("l", self.con, self.neuron)

        def forward(self, x):
            return self.neuron(self.con(*self.input(x))[0])

    out = run(Tiny(), torch.ones(1, 1, 1, 9, dtype=torch.bool))
    assert out.flatten().tolist() == [False, False, True] * 3


@pytest.mark.parametrize(
    "reward, per_step",
    [
        (None, lambda t: 1.0),
        (0.5, lambda t: 0.5),
        (torch.tensor(-1.0), lambda t: -1.0),
        (torch.linspace(-1.0, 1.0, 25), lambda t: float(torch.linspace(-1.0, 1.0, 25)[t])),
        ([float(t % 3 - 1) for t in range(25)], lambda t: float(t % 3 - 1)),
        (np.arange(25) / 10.0, lambda t: t / 10.0),
    ],
)
def test_run_with_learning_rule_equals_manual_loop(reward, per_step):
    inputs = _inputs()
    net, twin = _pair()
    rule, twin_rule = ToyRule(net), ToyRule(twin)
    weight_before = net.con1.weight.clone()
    out = run(net, inputs, rule, reward)
    twin.reset_state()
    twin_rule.reset_state()
    manual = []
    for t in range(inputs.shape[-1]):
        manual.append(twin(inputs[..., t])[0])
        twin_rule.update_state()
        if reward is None:
            twin_rule.step()
        else:
            twin_rule.step(per_step(t))
    assert torch.equal(out, torch.stack(manual, -1))
    assert torch.equal(net.con1.weight, twin.con1.weight)
    assert not torch.equal(net.con1.weight, weight_before)  # learning happened
    assert rule.calls == twin_rule.calls
    assert rule.calls[:3] == ["reset_state", "update_state", ("step", per_step(0))]


def test_callable_reward_sees_step_and_output():
    inputs = _inputs(10)
    net, twin = _pair()
    seen = []

    def reward(t, result):
        seen.append((t, result[0].clone()))
        return None if t % 2 else float(result[0].sum()) - 1.0

    rule, twin_rule = ToyRule(net), ToyRule(twin)
    out = run(net, inputs, rule, reward)
    twin.reset_state()
    twin_rule.reset_state()
    for t in range(10):
        spikes, _ = twin(inputs[..., t])
        twin_rule.update_state()
        if t % 2:
            twin_rule.step()
        else:
            twin_rule.step(float(spikes.sum()) - 1.0)
    assert [t for t, _ in seen] == list(range(10))
    assert torch.equal(torch.stack([s for _, s in seen], -1), out)
    assert torch.equal(net.con1.weight, twin.con1.weight)
    assert rule.calls == twin_rule.calls


def test_batched_reward_tensor_is_indexed_on_its_last_axis():
    received = []

    class Recorder:
        def update_state(self):
            pass

        def step(self, reward):
            received.append(reward.clone())

    reward = torch.arange(2 * 6, dtype=torch.float32).reshape(2, 6)
    net, _ = _pair()
    torch_inputs = _inputs(6)
    run(net, torch_inputs, Recorder(), reward)
    assert torch.equal(torch.stack(received, -1), reward)


def test_reset_false_continues_where_the_last_run_stopped():
    inputs = _inputs(20)
    net, twin = _pair()
    rule, twin_rule = ToyRule(net), ToyRule(twin)
    first = run(net, inputs[..., :8], rule, 1.0)
    second = run(net, inputs[..., 8:], rule, 1.0, reset=False)
    whole = run(twin, inputs, twin_rule, 1.0)
    assert torch.equal(torch.cat([first, second], -1), whole)
    assert torch.equal(net.con1.weight, twin.con1.weight)
    assert rule.calls.count("reset_state") == 1


def test_rule_whose_reset_state_is_not_implemented_is_tolerated():
    class NoReset(ToyRule):
        def reset_state(self):
            raise NotImplementedError

    net, twin = _pair()
    inputs = _inputs(5)
    run(net, inputs, NoReset(net))
    run(twin, inputs, ToyRule(twin))
    assert torch.equal(net.con1.weight, twin.con1.weight)


def test_snnnetwork_run_method_delegates():
    inputs = _inputs(12)
    net, twin = _pair()
    rule, twin_rule = ToyRule(net), ToyRule(twin)
    assert torch.equal(net.run(inputs, rule, 0.3), run(twin, inputs, twin_rule, 0.3))
    assert torch.equal(net.con1.weight, twin.con1.weight)


def test_monitors_hooked_and_stepped_by_run():
    inputs = _inputs(10)
    net, twin = _pair()
    rule, twin_rule = ToyRule(net), ToyRule(twin)
    spikes_monitor = NetworkMonitor(net)
    weight_monitor = Monitor(net.con1, ["weight"], hook=False, every=2)
    out = run(net, inputs, rule, 1.0, monitors=[spikes_monitor, weight_monitor])
    weights = []
    twin.reset_state()
    twin_rule.reset_state()
    for t in range(10):
        twin(inputs[..., t])
        twin_rule.update_state()
        twin_rule.step(1.0)
        weights.append(twin.con1.weight.clone())
    assert torch.equal(spikes_monitor.get("neuron2").movedim(0, -1), out)
    # stepped monitors record after the learning rule, every second step
    assert weight_monitor.steps.tolist() == [1, 3, 5, 7, 9]
    assert torch.equal(weight_monitor.get("weight"), torch.stack(weights)[1::2])


def test_tensor_and_none_outputs():
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x.float() * 2

    class Silent(torch.nn.Module):
        def forward(self, x):
            return None

    x = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(run(Plain(), x), x * 2)
    assert run(Silent(), x) is None


def test_progress_bar_runs(capsys):
    net, twin = _pair()
    inputs = _inputs(4)
    assert torch.equal(run(net, inputs, progress=True), run(twin, inputs))


def test_bad_arguments():
    net, _ = _pair()
    inputs = _inputs(5)
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor"):
        run(net, inputs.numpy())
    with pytest.raises(ValueError, match="at least one step"):
        run(net, inputs[..., :0])
    with pytest.raises(ValueError, match="reward was given without a learning_rule"):
        run(net, inputs, None, 1.0)
    with pytest.raises(ValueError, match="5 steps"):
        run(net, inputs, ToyRule(net), torch.ones(4))
    with pytest.raises(ValueError, match=r"one value per step \(5\)"):
        run(net, inputs, ToyRule(net), [1.0, 2.0])
    with pytest.raises(TypeError, match="reward must be"):
        run(net, inputs, ToyRule(net), "high")
    with pytest.raises(TypeError, match="learning_rule must have an update_state"):
        run(net, inputs, object())
    with pytest.raises(TypeError, match="monitors must be Monitor"):
        run(net, inputs, monitors=[object()])


def _manual(net, rule, inputs, reward_at):
    net.reset_state()
    rule.reset_state()
    outputs = []
    for t in range(inputs.shape[-1]):
        outputs.append(net(inputs[..., t])[0])
        rule.update_state()
        reward = reward_at(t)
        rule.step() if reward is None else rule.step(reward)
    return torch.stack(outputs, -1)


@pytest.mark.parametrize("per_sample", [False, True])
def test_run_with_mstdpet_equals_manual_loop(per_sample):
    from pysnn.learning import MSTDPET

    inputs = _inputs(30)
    net, twin = _pair()
    kwargs = {"per_sample_reward": per_sample}
    rule = MSTDPET(net.layers, 1.0, 0.6, 0.05, 0.8, **kwargs)
    twin_rule = MSTDPET(twin.layers, 1.0, 0.6, 0.05, 0.8, **kwargs)
    generator = torch.Generator().manual_seed(3)
    shape = (B, 30) if per_sample else (30,)
    reward = torch.randn(shape, generator=generator)
    weights_before = [net.con1.weight.clone(), net.con2.weight.clone()]
    out = run(net, inputs, rule, reward)
    expected = _manual(twin, twin_rule, inputs, lambda t: reward[..., t])
    assert torch.equal(out, expected)
    assert torch.equal(net.con1.weight, twin.con1.weight)
    assert torch.equal(net.con2.weight, twin.con2.weight)
    assert not torch.equal(net.con1.weight, weights_before[0])
    assert not torch.equal(net.con2.weight, weights_before[1])


def test_run_with_stdp_and_no_reward_equals_manual_loop():
    from pysnn.learning import STDP

    inputs = _inputs(30)
    net, twin = _pair()
    rule = STDP(net.layers, 0.05, 1.0, 0.5, 0.0, 1.0, "multiplicative")
    twin_rule = STDP(twin.layers, 0.05, 1.0, 0.5, 0.0, 1.0, "multiplicative")
    before = net.con1.weight.clone()
    out = run(net, inputs, rule)
    expected = _manual(twin, twin_rule, inputs, lambda t: None)
    assert torch.equal(out, expected)
    assert torch.equal(net.con1.weight, twin.con1.weight)
    assert not torch.equal(net.con1.weight, before)


class Shrinking(torch.nn.Module):
    """Returns ``(B, 3)`` until step ``k``, then another shape or dtype."""

    def __init__(self, k, late):
        super().__init__()
        self.k, self.late, self.calls = k, late, 0

    def forward(self, x):
        self.calls += 1
        return self.late if self.calls > self.k else torch.zeros(2, 3, dtype=torch.bool)


@pytest.mark.parametrize(
    "late, error, pattern",
    [
        (
            torch.zeros(2, 1, dtype=torch.bool),
            ValueError,
            r"changed shape at step 2: \(2, 1\).*\(2, 3\)",
        ),
        (
            torch.zeros(3, dtype=torch.bool),
            ValueError,
            r"changed shape at step 2: \(3,\).*\(2, 3\)",
        ),
        (torch.zeros(2, 4, dtype=torch.bool), ValueError, r"changed shape at step 2: \(2, 4\)"),
        (torch.full((2, 3), 0.7), TypeError, r"changed dtype at step 2: torch.float32.*torch.bool"),
        (torch.zeros(2, 3, dtype=torch.int64), TypeError, r"changed dtype at step 2: torch.int64"),
    ],
)
def test_run_rejects_an_output_that_changes_shape_or_dtype(late, error, pattern):
    with pytest.raises(error, match=rf"run: the network's output {pattern}"):
        run(Shrinking(2, late), torch.zeros(2, 5))


def _weights(net):
    return [net.con1.weight.clone(), net.con2.weight.clone()]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("form", ["list", "tuple", "array", "tensor", "number"])
def test_a_non_finite_reward_raises_before_any_weight_changes(bad, form):
    from pysnn.learning import MSTDPET

    net = Net()
    rule = MSTDPET(net.layers, 1.0, 0.6, 0.05, 0.8)
    T = 6
    values = [1.0] * T
    values[3] = bad
    reward = {
        "list": values,
        "array": np.array(values),
        "tensor": torch.tensor(values),
        "tuple": tuple(values),
        "number": bad,
    }[form]
    before = _weights(net)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"run: reward must be finite \(no NaN or inf\)"):
        run(net, _inputs(T), rule, reward)
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(net)))
    # Nothing ran: not even the network's state moved.
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())


def test_a_callable_non_finite_reward_stops_before_that_steps_update():
    from pysnn.learning import MSTDPET

    net, twin = _pair()
    rule = MSTDPET(net.layers, 1.0, 0.6, 0.05, 0.8)
    twin_rule = MSTDPET(twin.layers, 1.0, 0.6, 0.05, 0.8)
    inputs = _inputs(6)
    with pytest.raises(ValueError, match=r"run: reward \(the callable's value at step 3\)"):
        run(net, inputs, rule, lambda t, out: float("nan") if t == 3 else 1.0)
    _manual(twin, twin_rule, inputs[..., :3], lambda t: 1.0)
    assert torch.equal(net.con1.weight, twin.con1.weight)
    assert torch.equal(net.con2.weight, twin.con2.weight)
