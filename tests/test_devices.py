"""Every module kind on every device gives the CPU's eager results, and keeps its state there.

For each ``device`` (the CPU, and CUDA where a GPU is present; see ``conftest.py``) a module is
built on the CPU with the eager PyTorch backend (the reference, independent of
``PYSNN_NATIVE``), deep-copied, moved with ``.to(device)`` (default backend: the C kernels on
the CPU where built, PyTorch on CUDA) and both are run on the same inputs, generated on the CPU
and moved. Spikes and integer state must be equal; float64 state equal to 1e-9. Every state
tensor must be on the device after ``.to(device)``, ``reset_state()`` and ``load_state_dict``
of a CPU state dict. On a CPU-only machine the CPU rows run, so the comparison code is exercised
everywhere; the CUDA rows are the point where a GPU is present.
"""

import copy

import pytest
import torch

from pysnn import encoding
from pysnn.connection import AdaptiveMaxPool2d, Conv2d, Linear, MaxPool2d
from pysnn.learning import MSTDP, MSTDPET, STDP, FedeSTDP
from pysnn.models import DiehlCook2015, present
from pysnn.monitor import Monitor, NetworkMonitor
from pysnn.neuron import AdaptiveLIFNeuron, FedeNeuron, IFNeuron, Input, LIFNeuron
from test_no_host_sync import B, Mixed

F64 = torch.float64


# -- helpers ------------------------------------------------------------------------------------
def _on(tensor: torch.Tensor, device: torch.device) -> bool:
    return tensor.device.type == device.type and (
        device.index is None or tensor.device.index == device.index
    )


def assert_on_device(module: torch.nn.Module, device: torch.device, when: str) -> None:
    """Every parameter and buffer (views included) of ``module`` lives on ``device``."""
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    for name, tensor in tensors:
        assert _on(tensor, device), f"{when}: {name} is on {tensor.device}, expected {device}"


def assert_same(reference, other, what: str) -> None:
    """``other`` (any device) equals the CPU ``reference``: exactly for bool/int, to 1e-9."""
    if isinstance(reference, (tuple, list)):
        assert len(reference) == len(other), what
        for index, (a, b) in enumerate(zip(reference, other)):
            assert_same(a, b, f"{what}[{index}]")
        return
    assert isinstance(other, torch.Tensor), what
    assert other.shape == reference.shape and other.dtype == reference.dtype, what
    other = other.detach().cpu()
    if reference.dtype == torch.bool or not reference.is_floating_point():
        assert torch.equal(reference, other), what
    else:
        torch.testing.assert_close(other, reference, rtol=1e-9, atol=1e-9, msg=what)


def assert_same_state(reference: torch.nn.Module, other: torch.nn.Module, when: str) -> None:
    theirs = other.state_dict()
    mine = reference.state_dict()
    assert list(mine) == list(theirs), when
    for name, tensor in mine.items():
        if isinstance(tensor, torch.Tensor):
            assert_same(tensor, theirs[name], f"{when}: state_dict[{name!r}]")


def on_device(reference: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A deep copy of the CPU reference, moved to ``device``, on its default backend."""
    moved = copy.deepcopy(reference).to(device)
    for module in moved.modules():
        if "torch" in getattr(module, "supported_backends", ()) and hasattr(module, "_backend"):
            if "native" in module.supported_backends:
                module.backend = "auto"
    return moved


def eager(module: torch.nn.Module) -> torch.nn.Module:
    """Put every module (or the rule) with a backend on eager PyTorch (the reference's)."""
    for sub in module.modules() if isinstance(module, torch.nn.Module) else (module,):
        if hasattr(sub, "_backend"):
            sub.backend = "torch"
    return module


def check_lifecycle(reference, moved, device) -> None:
    """Devices after ``reset_state`` and after loading a CPU state dict; same state as the CPU."""
    moved.reset_state()
    reference.reset_state()
    assert_on_device(moved, device, "after reset_state")
    assert_same_state(reference, moved, "after reset_state")
    moved.load_state_dict(reference.state_dict())
    assert_on_device(moved, device, "after load_state_dict")
    assert_same_state(reference, moved, "after load_state_dict")


# -- neurons ------------------------------------------------------------------------------------
CELLS = (B, 2, 5)
NEURONS = {
    "Input": lambda: Input(CELLS, 1.0, 0.7, 0.8, dtype=F64),
    "Input exponential": lambda: Input(CELLS, 1.0, 0.7, 3.0, "exponential", dtype=F64),
    "IFNeuron": lambda: IFNeuron(CELLS, 0.8, 0.0, 1.0, 0.5, 1.0, 2.0, 0.8, dtype=F64),
    "LIFNeuron linear": lambda: LIFNeuron(
        CELLS, 0.8, 0.1, 1.0, 0.5, 1.0, 1.0, 0.9, 0.8, "linear", dtype=F64
    ),
    "LIFNeuron exponential": lambda: LIFNeuron(
        CELLS, 0.8, 0.1, 1.0, 0.5, 1.0, 2.0, 4.0, 3.0, "exponential", dtype=F64
    ),
    "AdaptiveLIFNeuron": lambda: AdaptiveLIFNeuron(
        CELLS, 0.8, 0.0, 1.0, 0.5, 1.0, 1.0, 0.9, 0.8, 0.2, 0.9, dtype=F64
    ),
    "AdaptiveLIFNeuron relax_to_center": lambda: AdaptiveLIFNeuron(
        CELLS,
        0.8,
        0.0,
        1.0,
        0.5,
        1.0,
        1.0,
        4.0,
        3.0,
        0.2,
        5.0,
        "exponential",
        relax_to_center=True,
        dtype=F64,
    ),
    "FedeNeuron": lambda: FedeNeuron(CELLS, 0.3, 0.0, 1.0, 0.5, 1.0, 1.0, 4.0, 3.0, dtype=F64),
}


@pytest.mark.parametrize("kind", list(NEURONS))
def test_neuron_on_device_matches_cpu(kind, device):
    torch.manual_seed(0)
    reference = eager(NEURONS[kind]())
    moved = on_device(reference, device)
    assert_on_device(moved, device, "after .to(device)")
    generator = torch.Generator().manual_seed(1)
    for step in range(8):
        if kind.startswith("Input"):
            x = torch.rand(CELLS, generator=generator) < 0.5
            args = (x,)
        else:
            x = torch.rand(CELLS + (3,), generator=generator, dtype=F64)
            args = (x, torch.rand(CELLS + (3,), generator=generator, dtype=F64) * 0.5)
            args = args if kind == "FedeNeuron" else args[:1]
        expected = reference(*args)
        got = moved(*(a.to(device) for a in args))
        assert all(_on(t, device) for t in got)
        assert_same(expected, got, f"{kind} step {step}")
    assert_same_state(reference, moved, kind)
    check_lifecycle(reference, moved, device)


# -- connections and pooling --------------------------------------------------------------------
def _delay_tensor():
    return torch.randint(0, 4, (4, 6), generator=torch.Generator().manual_seed(5))


CONNECTIONS = {
    f"Linear {reduction} delay {delay}": (
        lambda reduction=reduction, delay=delay: Linear(
            6,
            4,
            B,
            1.0,
            _delay_tensor() if delay == "tensor" else delay,
            reduction=reduction,
            dtype=F64,
        ),
        (B, 1, 6),
    )
    for reduction in ("sum", "none")
    for delay in (0, 3, "tensor")
}
CONNECTIONS.update(
    {
        f"Conv2d {reduction} delay {delay}": (
            lambda reduction=reduction, delay=delay: Conv2d(
                2, 3, 3, (5, 5), B, 1.0, delay, padding=1, reduction=reduction, dtype=F64
            ),
            (B, 2, 5, 5),
        )
        for reduction in ("sum", "none")
        for delay in (0, 2)
    }
)


@pytest.mark.parametrize("kind", list(CONNECTIONS))
def test_connection_on_device_matches_cpu(kind, device):
    make, in_shape = CONNECTIONS[kind]
    torch.manual_seed(0)
    reference = eager(make())
    moved = on_device(reference, device)
    assert_on_device(moved, device, "after .to(device)")
    generator = torch.Generator().manual_seed(1)
    for step in range(6):
        x = torch.rand(in_shape, generator=generator) < 0.5
        trace = torch.rand(in_shape, generator=generator, dtype=F64)
        expected = reference(x, trace)
        got = moved(x.to(device), trace.to(device))
        assert_same(expected, got, f"{kind} step {step}")
    assert_same_state(reference, moved, kind)
    check_lifecycle(reference, moved, device)


@pytest.mark.parametrize(
    "pool", [MaxPool2d(2), MaxPool2d(3, 2, 1), AdaptiveMaxPool2d((2, 3))], ids=repr
)
def test_pooling_on_device_matches_cpu(pool, device):
    generator = torch.Generator().manual_seed(1)
    for step in range(4):
        x = torch.rand(B, 2, 6, 7, generator=generator) < 0.4
        trace = torch.rand(B, 2, 6, 7, generator=generator, dtype=F64)
        trace[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        expected = pool(x, trace)
        got = copy.deepcopy(pool).to(device)(x.to(device), trace.to(device))
        assert all(_on(t, device) for t in got)
        assert_same(expected, got, f"{pool!r} step {step}")


# -- learning rules -----------------------------------------------------------------------------
RULES = {
    "STDP": (lambda layers: STDP(layers, 0.01, 1.0, 1.0, 0.0, 1.0), None),
    "STDP multiplicative": (
        lambda layers: STDP(layers, 0.01, 1.0, 1.0, 0.0, 1.0, "multiplicative"),
        None,
    ),
    "MSTDP": (lambda layers: MSTDP(layers, 1.0, 1.0, 0.01), "scalar"),
    "MSTDPET": (lambda layers: MSTDPET(layers, 1.0, 1.0, 0.01, 0.9), "scalar"),
    "MSTDPET per sample": (
        lambda layers: MSTDPET(layers, 1.0, 1.0, 0.01, 0.9, per_sample_reward=True),
        "batch",
    ),
    "FedeSTDP": (lambda layers: FedeSTDP(layers, 0.01, 0.5, 0.5), None),
}


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("kind", list(RULES))
def test_learning_rule_on_device_matches_cpu(kind, reduction, device):
    """Linear with a delay, Linear with per-synapse delays into Fede neurons, Conv2d into IF,
    pooling (``test_no_host_sync.Mixed``), trained by each rule."""
    torch.manual_seed(0)
    reference = eager(Mixed(reduction).double())
    moved = on_device(reference, device)
    make_rule, reward_kind = RULES[kind]
    rules = {"cpu": eager(make_rule(reference.layers)), "device": make_rule(moved.layers)}
    if hasattr(rules["device"], "_backend"):
        rules["device"].backend = "auto"
    generator = torch.Generator().manual_seed(1)
    for step in range(10):
        x = torch.rand(B, 1, 6, generator=generator) < 0.5
        image = torch.rand(B, 2, 6, 6, generator=generator) < 0.5
        reward = None
        if reward_kind == "scalar":
            reward = torch.tensor(1.0 if step < 5 else -0.5, dtype=F64)
        elif reward_kind == "batch":
            reward = torch.linspace(-1.0, 1.0, B, dtype=F64)
        for where, net in (("cpu", reference), ("device", moved)):
            target = torch.device("cpu") if where == "cpu" else device
            out = net(x.to(target), image.to(target))
            rules[where].update_state()
            rules[where].step() if reward is None else rules[where].step(reward.to(target))
            if where == "cpu":
                expected = out
        assert_same(expected, out, f"{kind} step {step}")
    assert_on_device(moved, device, "after learning")
    assert_same_state(reference, moved, kind)
    for name, layer in rules["cpu"].layers.items():
        for key, tensor in layer.state.items():
            other = rules["device"].layers[name].state[key]
            assert _on(other, device), f"rule state {name}.{key} on {other.device}"
            assert_same(tensor, other, f"rule state {name}.{key}")


# -- monitors -----------------------------------------------------------------------------------
def test_monitors_record_on_device(device):
    torch.manual_seed(0)
    reference = eager(Mixed("sum").double())
    moved = on_device(reference, device)
    monitors = {
        "cpu": (
            Monitor(reference.alif, ["spikes", "v_cell", "thresh"], max_steps=4),
            NetworkMonitor(reference, ["spikes", "trace"]),
        ),
        "device": (
            Monitor(moved.alif, ["spikes", "v_cell", "thresh"], max_steps=4),
            NetworkMonitor(moved, ["spikes", "trace"]),
        ),
    }
    generator = torch.Generator().manual_seed(1)
    for _ in range(7):
        x = torch.rand(B, 1, 6, generator=generator) < 0.5
        image = torch.rand(B, 2, 6, 6, generator=generator) < 0.5
        reference(x, image)
        moved(x.to(device), image.to(device))
    (ref_monitor, ref_net), (monitor, net_monitor) = monitors["cpu"], monitors["device"]
    for name in ("spikes", "v_cell", "thresh"):
        record = monitor.get(name)
        assert _on(record, device) and record.shape[0] == 4
        assert_same(ref_monitor.get(name), record, f"Monitor {name}")
    assert list(net_monitor) == list(ref_net)
    for layer in ref_net:
        for name in ref_net[layer].variables:
            record = net_monitor.get(layer, name)
            assert _on(record, device)
            assert_same(ref_net.get(layer, name), record, f"NetworkMonitor {layer}.{name}")
    for monitors_of in monitors.values():
        monitors_of[0].remove()
        monitors_of[1].remove()


# -- Diehl & Cook -------------------------------------------------------------------------------
def test_diehl_cook_present_on_device(device):
    """Rates of 0 and 1000 Hz at dt = 1 ms spike with probability 0 or 1: the same trains on
    every device whatever its random generator, so the counts must agree exactly."""
    torch.manual_seed(0)
    reference = eager(DiehlCook2015(40, 12, 2).double())
    moved = on_device(reference, device)
    assert_on_device(moved, device, "after .to(device)")
    rules = {
        "cpu": eager(STDP(reference.plastic_layers(), 0.02, 1.0, 1.0, 0.0, 1.0)),
        "device": STDP(moved.plastic_layers(), 0.02, 1.0, 1.0, 0.0, 1.0),
    }
    rules["device"].backend = "auto"
    generator = torch.Generator().manual_seed(3)
    for sample in range(3):
        rates = (torch.rand(2, 1, 40, generator=generator) < 0.3).to(F64) * 1000.0
        counts = {}
        for where, model in (("cpu", reference), ("device", moved)):
            target = torch.device("cpu") if where == "cpu" else device
            counts[where] = present(
                model,
                rates.to(target),
                12.0,
                1.0,
                learning_rule=rules[where],
                after_step=model.normalize,
            )
        assert _on(counts["device"], device)
        assert counts["cpu"].sum() > 0
        assert_same(counts["cpu"], counts["device"], f"counts of sample {sample}")
    assert_same_state(reference, moved, "DiehlCook2015")
    moved.eval()
    reference.eval()
    check_lifecycle(reference, moved, device)


# -- encoders -----------------------------------------------------------------------------------
ENCODERS = {
    "poisson_encoding": (encoding.poisson_encoding, 1000.0),
    "bernoulli_encoding": (encoding.bernoulli_encoding, 1.0),
    "latency_encoding": (encoding.latency_encoding, 1.0),
    "PoissonEncoder": (lambda x, d, dt, **kw: encoding.PoissonEncoder(d, dt)(x, **kw), 1000.0),
    "BernoulliEncoder": (lambda x, d, dt, **kw: encoding.BernoulliEncoder(d, dt)(x, **kw), 1.0),
    "LatencyEncoder": (lambda x, d, dt, **kw: encoding.LatencyEncoder(d, dt)(x, **kw), 1.0),
}


@pytest.mark.parametrize("kind", list(ENCODERS))
def test_encoder_on_device(kind, device):
    encode, full = ENCODERS[kind]
    generator = torch.Generator().manual_seed(0)
    # deterministic intensities (probability 0 or 1 per step; latency is deterministic anyway)
    certain = (torch.rand(B, 1, 8, generator=generator) < 0.5).to(torch.float32) * full
    expected = encode(certain, 5.0, 1.0)
    got = encode(certain.to(device), 5.0, 1.0)
    assert _on(got, device) and got.dtype == torch.bool and got.shape == (B, 1, 8, 5)
    assert torch.equal(got.cpu(), expected)
    if "latency" in kind.lower():
        graded = torch.rand(B, 1, 8, generator=generator)
        assert torch.equal(encode(graded.to(device), 5.0, 1.0).cpu(), encode(graded, 5.0, 1.0))
        return
    # random intensities: reproducible with a generator on the device, right mean rate
    half = torch.full((64, 64), full / 2, dtype=F64, device=device)
    draws = [
        encode(half, 10.0, 1.0, generator=torch.Generator(device=device).manual_seed(9))
        for _ in range(2)
    ]
    assert torch.equal(draws[0], draws[1]) and _on(draws[0], device)
    assert abs(draws[0].double().mean().item() - 0.5) < 0.02
