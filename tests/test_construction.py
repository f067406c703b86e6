"""Construction follows torch.nn: keyword-only ``device=``/``dtype=`` factory arguments create the
state where it belongs, and ``m.load_state_dict(m.state_dict())`` works for every module and
network, with state dicts that hold tensors only."""

import copy

import pytest
import torch

from pysnn.connection import AdaptiveMaxPool2d, Conv2d, Linear, MaxPool2d
from pysnn.models import DiehlCook2015
from pysnn.network import SNNNetwork
from pysnn.neuron import AdaptiveLIFNeuron, FedeNeuron, IFNeuron, Input, LIFNeuron

CELLS = (2, 1, 4)


def _modules(**factory):
    """One of every stateful module, built with the given factory arguments."""
    return {
        "Input": Input(CELLS, 0.5, 0.3, 0.9, **factory),
        "IFNeuron": IFNeuron(CELLS, 1.0, 0.0, 0.3, 0.7, 0.5, 1.0, 0.9, **factory),
        "LIFNeuron": LIFNeuron(CELLS, 1.0, 0.1, 0.3, 0.7, 0.5, 1.0, 0.9, 0.8, **factory),
        "AdaptiveLIFNeuron": AdaptiveLIFNeuron(
            CELLS, 1.0, 0.0, 0.3, 0.7, 0.5, 1.0, 0.9, 0.8, 0.2, 0.95, **factory
        ),
        "FedeNeuron": FedeNeuron(CELLS, 1.0, 0.0, 0.3, 0.7, 0.5, 1.0, 3.0, 2.0, **factory),
        "Linear": Linear(4, 3, 2, 0.5, 2, **factory),
        "Linear sum": Linear(4, 3, 2, 0.5, 0, reduction="sum", **factory),
        "Linear per-synapse delay": Linear(
            4, 3, 2, 0.5, torch.arange(12).view(3, 4) % 3, **factory
        ),
        "Conv2d": Conv2d(2, 3, 3, (5, 5), 2, 0.5, 1, **factory),
    }


@pytest.mark.parametrize("name", list(_modules()))
def test_dtype_creates_the_state_in_that_dtype(name):
    module = _modules(dtype=torch.float64)[name]
    tensors = dict(module.named_buffers())
    tensors.update(module.named_parameters())
    for key, tensor in tensors.items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float64, key
        else:
            assert tensor.dtype in (torch.bool, torch.int32, torch.int64), key


def test_dtype_keeps_float64_values_exactly():
    """0.9 and 0.3 are not float32 numbers: built in float64 they are exact, converted from
    float32 they would not be."""
    neuron = LIFNeuron(CELLS, 1.0, 0.1, 0.3, 0.7, 0.5, 1.0, 0.9, 0.8, dtype=torch.float64)
    assert torch.equal(neuron.tau_v, torch.full(CELLS, 0.9, dtype=torch.float64))
    assert neuron.v_rest.item() == 0.1 and neuron.dt.item() == 0.5
    converted = LIFNeuron(CELLS, 1.0, 0.1, 0.3, 0.7, 0.5, 1.0, 0.9, 0.8).double()
    assert not torch.equal(converted.tau_v, neuron.tau_v)


@pytest.mark.parametrize("name", list(_modules()))
def test_device_creates_the_state_on_that_device(name):
    """The meta device holds no data: a module that built its state on the CPU and then moved
    it would fail or leave CPU tensors behind."""
    module = _modules(device="meta")[name]
    tensors = list(module.buffers()) + list(module.parameters())
    assert tensors and all(t.is_meta for t in tensors)


@pytest.mark.parametrize(
    "factory, error, match",
    [
        ({"dtype": torch.int32}, TypeError, "dtype must be a floating-point torch.dtype"),
        ({"dtype": "float64"}, TypeError, "dtype must be a floating-point torch.dtype"),
        ({"device": "nowhere"}, ValueError, "device must name a torch device"),
    ],
)
def test_bad_factory_arguments_are_rejected(factory, error, match):
    with pytest.raises(error, match=match):
        LIFNeuron(CELLS, 1.0, 0.0, 0.3, 0.7, 0.5, 1.0, 0.9, 0.8, **factory)
    with pytest.raises(error, match=match):
        Linear(4, 3, 2, 0.5, 0, **factory)


def test_factory_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        Input(CELLS, 0.5, 0.3, 0.9, "linear", "auto", "cpu")


class _Net(SNNNetwork):
    def __init__(self):
        super().__init__()
        self.input = Input(CELLS, 1.0, 1.0, 0.8)
        self.fc = Linear(4, 3, 2, 1.0, 2)
        self.neuron = LIFNeuron((2, 1, 3), 0.5, 0.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.8)
        self.pool = MaxPool2d(2)
        self.apool = AdaptiveMaxPool2d(1)
        self.add_layer("fc", self.fc, self.neuron)

    def forward(self, x):
        spikes, trace = self.input(x)
        return self.neuron(self.fc(spikes, trace)[0])


def _drive(module, steps=5):
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        if isinstance(module, (Input,)):
            module(torch.rand(CELLS, generator=gen) < 0.5)
        elif isinstance(module, Linear):
            module(torch.rand(2, 1, 4, generator=gen) < 0.5, torch.rand(2, 1, 4, generator=gen))
        elif isinstance(module, Conv2d):
            module(
                torch.rand(2, 2, 5, 5, generator=gen) < 0.5, torch.rand(2, 2, 5, 5, generator=gen)
            )
        elif isinstance(module, FedeNeuron):
            module(torch.rand(*CELLS, 3, generator=gen), torch.rand(*CELLS, 3, generator=gen))
        elif isinstance(module, DiehlCook2015):
            module(torch.rand(2, 1, 16, generator=gen) < 0.3)
        elif isinstance(module, _Net):
            module(torch.rand(CELLS, generator=gen) < 0.5)
        else:
            module(torch.rand(*CELLS, 2, generator=gen) * 2)


def _all_stateful():
    modules = dict(_modules())
    modules["network"] = _Net()
    modules["DiehlCook2015"] = DiehlCook2015(16, 6, 2)
    return modules


@pytest.mark.parametrize("name", list(_all_stateful()))
def test_load_own_state_dict_round_trip(name):
    """``m.load_state_dict(m.state_dict())`` works mid-run and changes nothing: the next steps
    equal those of an untouched copy."""
    module = _all_stateful()[name]
    _drive(module)
    reference = copy.deepcopy(module)
    state = module.state_dict()
    assert all(isinstance(value, torch.Tensor) for value in state.values()), name
    module.load_state_dict(module.state_dict())
    for key, value in module.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key
    _drive(module)
    _drive(reference)
    for key, value in module.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key


@pytest.mark.parametrize("name", list(_all_stateful()))
def test_state_dict_clones_into_a_fresh_module(name):
    """The PySNN idiom ``{k: v.clone() for k, v in sd.items()}`` works (tensors only) and
    restores the state exactly into a new module, the delay line's position included."""
    module = _all_stateful()[name]
    _drive(module)
    saved = {key: value.clone() for key, value in module.state_dict().items()}
    fresh = _all_stateful()[name]
    fresh.load_state_dict(saved)
    _drive(module)
    _drive(fresh)
    for key, value in module.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


@pytest.mark.parametrize("name", ["LIFNeuron", "Linear sum", "network"])
def test_pickled_module_runs_like_the_original(name):
    """The kernels' argument structs are not pickled (ctypes structs cannot be); the unpickled
    module rebuilds them and steps exactly like the original."""
    import pickle

    module = _all_stateful()[name]
    _drive(module)
    clone = pickle.loads(pickle.dumps(module))
    _drive(module)
    _drive(clone)
    for key, value in module.state_dict().items():
        assert torch.equal(value, clone.state_dict()[key]), key


@pytest.mark.parametrize(
    "shapes",
    [((2, 1, 4), (2, 3, 4)), ((4,), (2, 3, 1)), ((1,), ()), ((2, 3), (3, 2)), ((0, 1), (1, 5))],
)
def test_broadcast_shape_agrees_with_torch(shapes):
    from pysnn._checks import broadcast_shape

    try:
        expected = tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        expected = None
    assert broadcast_shape(*shapes) == expected


def test_a_neurons_first_step_imports_nothing_heavy():
    """``torch.broadcast_shapes`` imports torch's symbolic-shapes machinery on first use (half a
    second, ~35 MB); a step must not pull it in."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from pysnn.neuron import LIFNeuron\n"
        "n = LIFNeuron((1, 1, 4), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.9, 0.9)\n"
        "n(torch.rand(1, 1, 4, 1))\n"
        "print('torch.fx.experimental.symbolic_shapes' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
