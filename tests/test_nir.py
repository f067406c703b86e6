"""NIR export (:func:`pysnn.to_nir`) and import (:func:`pysnn.from_nir`): exact spikes.

(a) pysnn → NIR file → pysnn gives the same spikes at every step (MLP, conv, delays, feedback,
    CubaLIF), and the export leaves the network's state exactly as it was.
(b) A pysnn export, read back from its file by Norse and by SpikingJelly, gives pysnn's spikes on
    every cell. Nothing is compensated: the canonical export (gains folded into the weights,
    ``r = 1``, ``v_leak = v_reset = 0``, ``θ' = nextafter(θ - v_rest, -inf)``) is what both
    reproduce; the tie test shows that the literal threshold would not be.
(c) A graph that Norse, snnTorch or SpikingJelly export from their own modules, imported by
    ``from_nir``, reproduces their spikes. What each test compensates is written at the test.

Parameters are dyadic (weights in 1/32, ``dt/τ`` powers of two) so that every peer's arithmetic is
exact whatever its order of operations: a mismatch is a mapping error, not a rounding one.
"""

import contextlib
import copy
import io
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
# nirtorch 2.x warns that the entry points Norse and snnTorch 1.x call are deprecated
pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.*deprecated:DeprecationWarning")

import pysnn  # noqa: E402
from pysnn.connection import AdaptiveMaxPool2d, Conv2d, Linear, MaxPool2d  # noqa: E402
from pysnn.network import SNNNetwork  # noqa: E402
from pysnn.neuron import (  # noqa: E402
    AdaptiveLIFNeuron,
    CubaLIFNeuron,
    FedeNeuron,
    IFNeuron,
    Input,
    LIFNeuron,
)
from pysnn.nir_io import NIRNetwork, from_nir, to_nir  # noqa: E402

DT_S = 2.0**-10  # the time step in seconds: a power of two, so dt/τ is exact everywhere
DT = 1000 * DT_S  # in ms, pysnn's unit (0.9765625, exactly representable)


# -- networks ------------------------------------------------------------------------------------
def dyadic_(module, low=-8, high=24, scale=32.0):
    """Weights in multiples of 1/scale."""
    with torch.no_grad():
        module.weight.copy_(torch.randint(low, high, module.weight.shape).float() / scale)
    return module


class MLP(SNNNetwork):
    """Input → Linear → LIF (or IF), optionally with a lateral connection and delays."""

    def __init__(
        self,
        batch,
        n_in,
        n_out,
        update_type="exponential",
        *,
        neuron="lif",
        v_rest=0.0,
        alpha=1.0,
        delay=0,
        lateral=False,
    ):
        super().__init__()
        linear = update_type == "linear"
        trace = (0.5, 0.8) if linear else (0.5, 5.0)
        self.input = Input((batch, 1, n_in), DT, *trace, update_type)
        self.fc = dyadic_(Linear(n_in, n_out, batch, DT, delay), -4, 32)
        cells = (batch, 1, n_out)
        if neuron == "if":
            self.lif = IFNeuron(
                cells, 1.0 + v_rest, v_rest, alpha, trace[0], DT, 0.0, trace[1], update_type
            )
        else:
            tau_v = 0.75 if linear else 4 * DT
            self.lif = LIFNeuron(
                cells, 1.0 + v_rest, v_rest, alpha, trace[0], DT, 0.0, tau_v, trace[1], update_type
            )
        self.add_layer("fc", self.fc, self.lif)
        self.lateral = None
        if lateral:
            self.lateral = dyadic_(Linear(n_out, n_out, batch, DT, 0), -16, 4)
            self.add_layer("lateral", self.lateral, self.lif)

    def forward(self, x):
        x, trace = self.input(x)
        a, _ = self.fc(x, trace)
        if self.lateral is None:
            return self.lif(a)
        # the neuron has not stepped yet: its buffer holds the previous step's spikes
        b, _ = self.lateral(self.lif.spikes, self.lif.trace)
        return self.lif([a, b])


class CNN(SNNNetwork):
    """Input → Conv2d → LIF → Conv2d (stride 2) → LIF, optionally → MaxPool → Linear → LIF."""

    def __init__(self, batch, *, pool=False, delay=0):
        super().__init__()
        self.input = Input((batch, 2, 10, 10), DT, 0.5, 0.8)
        self.conv1 = dyadic_(Conv2d(2, 4, 3, (10, 10), batch, DT, delay, padding=1))
        self.n1 = LIFNeuron(
            (batch, 4, 10, 10), 1.0, 0.0, 1.0, 0.5, DT, 0.0, 2 * DT, 5.0, "exponential"
        )
        self.conv2 = dyadic_(Conv2d(4, 3, 3, (10, 10), batch, DT, 0, stride=2))
        self.n2 = LIFNeuron((batch, 3, 4, 4), 1.0, 0.0, 1.0, 0.5, DT, 0.0, 0.5, 0.8, "linear")
        self.add_layer("conv1", self.conv1, self.n1)
        self.add_layer("conv2", self.conv2, self.n2)
        self.pool = None
        if pool:
            self.pool = MaxPool2d(2)
            self.fc = dyadic_(Linear(12, 5, batch, DT, 1))
            self.n3 = IFNeuron((batch, 1, 5), 1.0, 0.0, 0.5, 0.5, DT, 0.0, 0.8)
            self.add_layer("fc", self.fc, self.n3)

    def forward(self, x):
        x, trace = self.input(x)
        x, trace = self.conv1(x, trace)
        x, trace = self.n1(x)
        x, trace = self.conv2(x, trace)
        x, trace = self.n2(x)
        if self.pool is None:
            return x, trace
        x, trace = self.pool(x, trace)
        batch = x.shape[0]
        x, trace = self.fc(x.view(batch, 1, -1), trace.reshape(batch, 1, -1))
        return self.n3(x)


class Feedback(SNNNetwork):
    """Two LIF layers with per-synapse delays forward and a delayed feedback from layer 2."""

    def __init__(self, batch, n_in=8, n_hid=6, n_out=4):
        super().__init__()
        self.input = Input((batch, 1, n_in), DT, 0.5, 0.8)
        delays = torch.randint(0, 4, (n_hid, n_in))
        self.fc1 = dyadic_(Linear(n_in, n_hid, batch, DT, delays))
        self.hid = LIFNeuron((batch, 1, n_hid), 1.0, 0.0, 1.0, 0.5, DT, 0.0, 0.5, 0.8)
        self.fc2 = dyadic_(Linear(n_hid, n_out, batch, DT, 2))
        self.out = LIFNeuron((batch, 1, n_out), 0.75, 0.0, 1.0, 0.5, DT, 0.0, 0.75, 0.8)
        self.back = dyadic_(Linear(n_out, n_hid, batch, DT, 1), -8, 16)
        self.add_layer("fc1", self.fc1, self.hid)
        self.add_layer("fc2", self.fc2, self.out)
        self.add_layer("back", self.back, self.hid)

    def forward(self, x):
        x, trace = self.input(x)
        a, _ = self.fc1(x, trace)
        b, _ = self.back(self.out.spikes, self.out.trace)  # layer 2 of the previous step
        x, trace = self.hid([a, b])
        x, trace = self.fc2(x, trace)
        return self.out(x)


class Cuba(SNNNetwork):
    """Input → Linear → CubaLIF with a recurrent connection."""

    def __init__(self, batch, n_in, n_out, update_type):
        super().__init__()
        linear = update_type == "linear"
        trace = (0.5, 0.8) if linear else (0.5, 5.0)
        self.input = Input((batch, 1, n_in), DT, *trace, update_type)
        self.fc = dyadic_(Linear(n_in, n_out, batch, DT, 0))
        taus = (0.75, 0.5) if linear else (4 * DT, 2 * DT)
        self.cuba = CubaLIFNeuron(
            (batch, 1, n_out), 1.0, 0.0, 1.0, 0.5, 0.5, DT, 0.0, *taus, trace[1], update_type
        )
        self.rec = dyadic_(Linear(n_out, n_out, batch, DT, 0), -8, 8)
        self.add_layer("fc", self.fc, self.cuba)
        self.add_layer("rec", self.rec, self.cuba)

    def forward(self, x):
        x, trace = self.input(x)
        a, _ = self.fc(x, trace)
        b, _ = self.rec(self.cuba.spikes, self.cuba.trace)
        return self.cuba([a, b])


def spikes_in(shape, steps, p=0.3):
    """Bernoulli spikes with time last."""
    return torch.rand(*shape, steps) < p


def round_trip(net, sample_shape, tmp_path, **export):
    graph = to_nir(net, torch.zeros(sample_shape), DT, **export)
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    return from_nir(path, batch_size=sample_shape[0]), graph


# ==============================================================================================
# (a) round trips
# ==============================================================================================
@pytest.mark.parametrize("update_type", ["exponential", "linear"])
@pytest.mark.parametrize("neuron", ["lif", "if"])
def test_round_trip_mlp(seeded, tmp_path, update_type, neuron):
    net = MLP(3, 12, 8, update_type, neuron=neuron, v_rest=-0.5, alpha=0.5, lateral=True)
    copy, graph = round_trip(net, (3, 1, 12), tmp_path)
    x = spikes_in((3, 1, 12), 200, 0.4)
    expected = net.run(x)
    assert expected.any() and not expected.all()
    assert torch.equal(copy.run(x), expected)
    assert isinstance(copy, NIRNetwork) and graph.metadata["dt"] == DT_S


def test_round_trip_conv_pool_flatten(seeded, tmp_path):
    net = CNN(2, pool=True, delay=1)
    copy, graph = round_trip(net, (2, 2, 10, 10), tmp_path)
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    assert {"Conv2d", "SumPool2d", "Threshold", "Flatten", "Delay", "IF", "LIF"} <= kinds
    x = spikes_in((2, 2, 10, 10), 60)
    expected = net.run(x)
    assert expected.any()
    assert torch.equal(copy.run(x), expected)
    assert isinstance(copy.pool, MaxPool2d)


def test_round_trip_sequential_with_its_flatten(seeded, tmp_path):
    from pysnn.network import Sequential

    net = Sequential(
        input=Input((2, 2, 8, 8), DT, 1.0, 0.8),
        conv=dyadic_(Conv2d(2, 3, 3, (8, 8), 2, DT, 0, padding=1)),
        n1=LIFNeuron((2, 3, 8, 8), 1.0, 0.0, 1.0, 1.0, DT, 0.0, 0.75, 0.8),
        pool=MaxPool2d(2),
        fc=dyadic_(Linear(48, 5, 2, DT, 1)),  # Sequential flattens (B, 3, 4, 4) by itself
        n2=IFNeuron((2, 1, 5), 1.0, 0.0, 1.0, 1.0, DT, 0.0, 0.8),
    )
    copy, graph = round_trip(net, (2, 2, 8, 8), tmp_path)
    assert any(isinstance(node, nir.Flatten) for node in graph.nodes.values())
    x = spikes_in((2, 2, 8, 8), 60)
    expected = net.run(x)
    assert expected.any()
    assert torch.equal(copy.run(x), expected)


def test_round_trip_adaptive_pool_and_per_kernel_conv_delays(seeded, tmp_path):
    net = CNN(2, pool=True)
    # delays per (output channel, kernel element), the same at every position: one branch each
    delays = torch.randint(0, 3, (4, 18, 1))
    net.conv1 = dyadic_(Conv2d(2, 4, 3, (10, 10), 2, DT, delays, padding=1))
    net.pool = AdaptiveMaxPool2d((2, 2))  # 4x4 → 2x2: kernel = stride = 2
    copy, graph = round_trip(net, (2, 2, 10, 10), tmp_path)
    assert sum(isinstance(n, nir.Conv2d) for n in graph.nodes.values()) == 4  # 3 branches + 1
    x = spikes_in((2, 2, 10, 10), 60)
    expected = net.run(x)
    assert expected.any()
    assert torch.equal(copy.run(x), expected)
    varying = torch.randint(0, 3, (4, 18, 100))  # differs between positions: no NIR Conv2d
    net.conv1 = Conv2d(2, 4, 3, (10, 10), 2, DT, varying, padding=1)
    with pytest.raises(ValueError, match="conv1 .Conv2d.: its per-synapse delays vary over"):
        to_nir(net, torch.zeros(2, 2, 10, 10), DT)


def test_round_trip_delays_and_feedback(seeded, tmp_path):
    net = Feedback(2)
    copy, graph = round_trip(net, (2, 1, 8), tmp_path)
    # one branch per distinct per-synapse delay (0-3 steps) of fc1; fc2's 2 steps; the
    # feedback's 1 step plus the one made explicit because it reads the previous step
    steps = sorted(
        round(float(node.delay.flat[0]) / DT_S)
        for node in graph.nodes.values()
        if isinstance(node, nir.Delay)
    )
    assert steps == [1, 2, 2, 2, 3]
    x = spikes_in((2, 1, 8), 300, 0.5)
    expected = net.run(x)
    assert expected.any()
    assert torch.equal(copy.run(x), expected)
    assert len(copy.layers) == 6  # fc1's four delay branches, fc2, the feedback


@pytest.mark.parametrize("update_type", ["exponential", "linear"])
def test_round_trip_cuba_lif(seeded, tmp_path, update_type):
    net = Cuba(2, 10, 6, update_type)
    copy, graph = round_trip(net, (2, 1, 10), tmp_path)
    assert any(isinstance(n, nir.CubaLIF) for n in graph.nodes.values())
    x = spikes_in((2, 1, 10), 200, 0.4)
    expected = net.run(x)
    assert expected.any() and not expected.all()
    assert torch.equal(copy.run(x), expected)


@pytest.mark.parametrize("update_type", ["exponential", "linear"])
def test_literal_round_trip_is_bitwise_for_any_parameters(tmp_path, update_type):
    """canonical=False keeps r = α and v_leak = v_rest: the same parameters come back, so the
    spikes agree for arbitrary (non-dyadic) values too."""
    torch.manual_seed(3)
    linear = update_type == "linear"
    net = MLP(2, 10, 7, update_type, v_rest=0.3, alpha=0.7)
    with torch.no_grad():  # one value per neuron, the same in every batch element
        net.fc.weight.uniform_(-0.3, 0.9)
        for value, (low, high) in (
            (net.lif.thresh, (0.8, 1.3)),
            (net.lif.tau_v, (0.6, 0.9) if linear else (2.0, 9.0)),
        ):
            value.copy_(torch.empty(value.shape[-1]).uniform_(low, high).expand_as(value))
    copy, graph = round_trip(net, (2, 1, 10), tmp_path, canonical=False)
    assert graph.metadata["form"] == "literal"
    for name in ("thresh", "alpha_v", "tau_v"):
        assert torch.equal(getattr(copy.lif, name), getattr(net.lif, name)), name
    assert copy.lif.v_rest.item() == net.lif.v_rest.item()
    x = spikes_in((2, 1, 10), 300, 0.5)
    assert torch.equal(copy.run(x), net.run(x))


def test_export_restores_the_state_exactly(seeded):
    net = Feedback(2)
    x = spikes_in((2, 1, 8), 40, 0.5)
    twin = copy.deepcopy(net)
    net.run(x)
    twin.run(x)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cursors = [m._cursor for m in net.modules() if hasattr(m, "_cursor")]
    to_nir(net, torch.ones(2, 1, 8), DT)
    after = net.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert cursors == [m._cursor for m in net.modules() if hasattr(m, "_cursor")]
    more = spikes_in((2, 1, 8), 30, 0.5)
    assert torch.equal(net.run(more, reset=False), twin.run(more, reset=False))


def test_imported_network_learns_and_records(seeded, tmp_path):
    from pysnn.learning import STDP
    from pysnn.monitor import Monitor

    net = MLP(2, 12, 6, "linear")
    copy, _ = round_trip(net, (2, 1, 12), tmp_path)
    assert list(copy.layers) == ["fc"]
    rule = STDP(copy.layer_state_dict(), 0.01, 1.0, 1.0, -1.0, 1.0)
    before = copy.fc.weight.clone()
    with Monitor(copy.lif, "spikes") as monitor:
        copy.run(spikes_in((2, 1, 12), 50, 0.5), rule)
    assert not torch.equal(copy.fc.weight, before)
    assert monitor.get("spikes").shape[0] == 50


def test_top_level_access_is_lazy():
    code = (
        "import sys, pysnn; assert 'pysnn.nir_io' not in sys.modules; "
        "f = pysnn.to_nir; import pysnn.nir_io as m; assert f is m.to_nir; "
        "assert pysnn.from_nir is m.from_nir; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    with pytest.raises(AttributeError):
        pysnn.no_such_name


# -- what is refused ---------------------------------------------------------------------------
def test_refractory_period_is_refused_then_dropped_with_lossy(seeded):
    net = MLP(1, 4, 3)
    net.lif = LIFNeuron((1, 1, 3), 1.0, 0.0, 1.0, 0.5, DT, 2 * DT, 4 * DT, 5.0, "exponential")
    with pytest.raises(ValueError, match=r"lif \(LIFNeuron\): refractory period"):
        to_nir(net, torch.zeros(1, 1, 4), DT)
    with pytest.warns(UserWarning, match="refractory period"):
        graph = to_nir(net, torch.zeros(1, 1, 4), DT, lossy=True)
    assert "refractory" in graph.metadata["dropped"][0]


def test_adaptive_and_fede_neurons_are_refused(seeded):
    net = MLP(1, 4, 3)
    net.lif = AdaptiveLIFNeuron((1, 1, 3), 1.0, 0.0, 1.0, 0.5, DT, 0.0, 0.75, 0.8, 0.1, 0.9)
    with pytest.raises(ValueError, match="adaptive threshold"):
        to_nir(net, torch.zeros(1, 1, 4), DT)
    with pytest.warns(UserWarning, match="adaptive threshold"):
        graph = to_nir(net, torch.zeros(1, 1, 4), DT, lossy=True)
    assert isinstance(graph.nodes["lif"], nir.LIF)

    class Fede(SNNNetwork):
        def __init__(self):
            super().__init__()
            self.input = Input((1, 1, 4), DT, 0.5, 5.0, "exponential")
            self.fc = Linear(4, 3, 1, DT, 0)
            self.neuron = FedeNeuron((1, 1, 3), 1.0, 0.0, 1.0, 0.5, DT, 0.0, 4.0, 5.0)
            self.add_layer("fc", self.fc, self.neuron)

        def forward(self, x):
            x, t = self.input(x)
            return self.neuron(*self.fc(x, t))

    with pytest.raises(ValueError, match=r"neuron \(FedeNeuron\): its input is weighted spikes"):
        to_nir(Fede(), torch.zeros(1, 1, 4), DT)


def test_non_divisible_adaptive_pooling_is_lossy(seeded):
    class Net(CNN):
        def __init__(self):
            super().__init__(1, pool=True)
            self.pool = AdaptiveMaxPool2d((3, 3))  # 4x4 → 3x3: windows of unequal size
            self.fc = Linear(27, 5, 1, DT, 0)

    with pytest.raises(ValueError, match=r"pool \(AdaptiveMaxPool2d\): adaptive pooling"):
        to_nir(Net(), torch.zeros(1, 2, 10, 10), DT)
    with pytest.warns(UserWarning):
        to_nir(Net(), torch.zeros(1, 2, 10, 10), DT, lossy=True)


def test_values_computed_between_modules_are_refused(seeded):
    class Net(MLP):
        def forward(self, x):
            x, trace = self.input(x)
            a, _ = self.fc(x * 2, trace)  # not a reshape: no NIR node says "times two"
            return self.lif(a)

    with pytest.raises(ValueError, match=r"fc \(Linear\): its input is torch operation"):
        to_nir(Net(1, 4, 3), torch.zeros(1, 1, 4), DT)
    with pytest.raises(ValueError, match="dt is 0.976562 ms but to_nir was given dt=1 ms"):
        to_nir(MLP(1, 4, 3), torch.zeros(1, 1, 4), 1.0)


def _graph(neuron, weight=None, **linear):
    weight = np.eye(3, dtype=np.float32) if weight is None else weight
    edge = nir.Affine(weight=weight, **linear) if linear else nir.Linear(weight=weight)
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "w": edge,
            "n": neuron,
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "w"), ("w", "n"), ("n", "output")],
    )


def _lif(**change):
    params = dict(
        tau=np.full(3, 0.01),
        r=np.ones(3),
        v_leak=np.zeros(3),
        v_threshold=np.ones(3),
        v_reset=np.zeros(3),
    )
    params.update(change)
    return nir.LIF(**params)


def test_from_nir_refuses_what_pysnn_cannot_represent():
    with pytest.raises(ValueError, match=r"node 'n' \(LIF\): v_reset differs from v_leak"):
        from_nir(_graph(_lif(v_reset=np.full(3, -0.5))), dt=1.0)
    li = nir.LI(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3))
    with pytest.raises(ValueError, match=r"node 'n' \(LI\): a leaky integrator does not spike"):
        from_nir(_graph(li), dt=1.0)
    with pytest.raises(ValueError, match=r"node 'w' \(Affine\): a non-zero bias"):
        from_nir(_graph(_lif(), bias=np.ones(3, np.float32)), dt=1.0)
    with pytest.raises(ValueError, match="metadata has no dt"):
        from_nir(_graph(_lif()))
    with pytest.raises(ValueError, match="shorter than dt"):
        from_nir(_graph(_lif()), dt=20.0)
    conv = nir.Conv2d(
        input_shape=(4, 4),
        weight=np.ones((2, 1, 3, 3), np.float32),
        stride=1,
        padding=0,
        dilation=1,
        groups=2,
        bias=np.zeros(2, np.float32),
    )
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2, 4, 4])}),
            "conv": conv,
            "n": nir.IF(r=np.ones((2, 2, 2)), v_threshold=np.ones((2, 2, 2))),
            "output": nir.Output(output_type={"output": np.array([2, 2, 2])}),
        },
        edges=[("input", "conv"), ("conv", "n"), ("n", "output")],
        type_check=False,
    )
    with pytest.raises(ValueError, match=r"node 'conv' \(Conv2d\): groups = 2"):
        from_nir(graph, dt=1.0)


# ==============================================================================================
# (b) pysnn's export run by Norse and SpikingJelly
# ==============================================================================================
@contextlib.contextmanager
def _quiet():
    """Norse logs a warning for each r != 1 (IF nodes), SpikingJelly a line per import."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def run_stateful(model, x):
    """Step a nirtorch/SpikingJelly module ``(out, state) = model(x_t, state)``; time last."""
    state, out = None, []
    with torch.no_grad():
        for t in range(x.shape[-1]):
            y, state = model(x[..., t].float(), state)
            out.append(y)
    return torch.stack(out, -1) > 0


def norse_spikes(path, x):
    norse = pytest.importorskip("norse.torch")
    pytest.importorskip("nirtorch")
    with _quiet():
        model = norse.from_nir(nir.read(path), dt=DT_S)
    return run_stateful(model, x)


def spikingjelly_spikes(path, x):
    exchange = pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    with _quiet():
        model = exchange.import_from_nir(path, dt=DT_S)
    return run_stateful(model, x)


PEERS = {"norse": norse_spikes, "spikingjelly": spikingjelly_spikes}


def exported(net, shape, tmp_path, steps, p=0.3, **export):
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(net, torch.zeros(shape), DT, **export))
    x = spikes_in(shape, steps, p)
    ours = net.run(x)
    if len(shape) == 3:  # peers take (B, N): drop pysnn's free axis
        x, ours = x.squeeze(1), ours.squeeze(1)
    return path, x, ours


@pytest.mark.parametrize("peer", sorted(PEERS))
@pytest.mark.parametrize(
    "update_type, v_rest, alpha, neuron",
    [("exponential", -0.5, 0.5, "lif"), ("linear", 0.25, 0.5, "lif"), ("linear", 0.0, 1.0, "if")],
)
def test_peer_runs_pysnn_mlp(seeded, tmp_path, peer, update_type, v_rest, alpha, neuron):
    net = MLP(4, 20, 10, update_type, neuron=neuron, v_rest=v_rest, alpha=alpha)
    path, x, ours = exported(net, (4, 1, 20), tmp_path, 300, 0.5)
    assert ours.any() and not ours.all()
    theirs = PEERS[peer](path, x)
    assert torch.equal(theirs, ours), f"{int((theirs != ours).sum())} of {ours.numel()} differ"


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_peer_runs_pysnn_conv(seeded, tmp_path, peer):
    path, x, ours = exported(CNN(2), (2, 2, 10, 10), tmp_path, 60)
    assert ours.any() and not ours.all()
    assert torch.equal(PEERS[peer](path, x), ours)


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_peer_agrees_on_ties(tmp_path, peer):
    """v lands exactly on θ: pysnn fires (v >= θ); NIR's strict v > θ' fires too because
    θ' = nextafter(θ, -inf). A literal θ' = θ would lose those spikes in Norse."""
    torch.manual_seed(5)
    net = MLP(3, 8, 6, "exponential", v_rest=-0.25)
    net.lif.tau_v.fill_(2 * DT)  # dt/τ = 1/2
    with torch.no_grad():
        net.fc.weight.copy_(torch.randint(0, 3, net.fc.weight.shape) / 4.0)
    path, x, ours = exported(net, (3, 1, 8), tmp_path, 200, 0.5)
    # ties happen: with the threshold one ulp higher the network fires less
    higher = MLP(3, 8, 6, "exponential", v_rest=-0.25)
    higher.load_state_dict(net.state_dict())
    higher.lif.thresh.copy_(torch.nextafter(net.lif.thresh, torch.tensor(np.inf)))
    ties = int(ours.sum() - higher.run(x.unsqueeze(1)).squeeze(1).sum())
    assert ties > 10
    assert torch.equal(PEERS[peer](path, x), ours)
    if peer == "norse":  # the threshold without nextafter misses them
        graph = nir.read(path)
        graph.nodes["lif"].v_threshold = np.full(6, 1.0, np.float32)
        nir.write(tmp_path / "literal.nir", graph)
        assert int((norse_spikes(tmp_path / "literal.nir", x) != ours).sum()) > 0


# ==============================================================================================
# (c) graphs the peers export from their own modules, run by pysnn
# ==============================================================================================
I, O, B, T = 12, 8, 3, 200


@pytest.fixture
def problem(seeded):
    weight = torch.randint(-8, 24, (O, I)).float() / 32
    x = (torch.rand(T, B, I) < 0.3).float()  # time first, as the peers loop
    return weight, x


def pysnn_spikes(net, x):
    """Run a from_nir network on (T, B, I) inputs; spikes (T, B, O)."""
    return net.run(x.permute(1, 2, 0).unsqueeze(1).bool()).squeeze(1).permute(2, 0, 1)


def test_norse_export_is_reproduced(problem):
    """Compensated: Norse 1.1.0's to_nir writes tau = dt/tau_mem_inv, so it is called with dt=1
    to get NIR's tau = 1/tau_mem_inv in seconds; its graph holds scalar parameters and an Input
    with the sample's batch axis (from_nir infers the shapes) and cannot be written to a file
    (h5py refuses the scalars), so the graph object is imported. Norse fires at v > v_th and
    resets to 0, as NIR says."""
    norse = pytest.importorskip("norse.torch")
    from norse.torch.functional.lif_box import LIFBoxParameters
    from norse.torch.module.lif_box import LIFBoxCell

    weight, x = problem
    linear = torch.nn.Linear(I, O, bias=False)
    linear.weight.data = weight.clone()
    params = LIFBoxParameters(
        tau_mem_inv=torch.tensor(256.0), v_th=torch.tensor(1.0), v_leak=torch.tensor(0.0)
    )
    model = norse.SequentialState(linear, LIFBoxCell(params, dt=DT_S))
    expected = run_stateful(model, x.permute(1, 2, 0)).permute(2, 0, 1)
    graph = norse.to_nir(model, x[0], dt=1.0)
    net = from_nir(graph, dt=DT, batch_size=B)
    assert expected.any()
    assert torch.equal(pysnn_spikes(net, x), expected)


def test_snntorch_export_is_reproduced(problem, tmp_path):
    """Compensated: snnTorch 1.0.0 assumes dt = 1e-4 s (so dt=0.1 ms here) and computes
    mem = beta·mem + input, pysnn's linear update (update_type="linear"). The neurons are built
    with reset_mechanism="zero" and reset_delay=False, NIR's reset; snnTorch fires at
    mem > threshold, as NIR says."""
    snn = pytest.importorskip("snntorch")
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    weight, x = problem
    linear = torch.nn.Linear(I, O, bias=False)
    linear.weight.data = weight.clone()
    leaky = snn.Leaky(
        beta=torch.full((O,), 0.75),
        threshold=torch.full((O,), 1.0),
        reset_mechanism="zero",
        reset_delay=False,
        init_hidden=True,
    )
    model = torch.nn.Sequential(linear, leaky)
    utils.reset(model)
    with torch.no_grad():
        expected = torch.stack([model(x[t]) for t in range(T)]) > 0
    with contextlib.redirect_stdout(io.StringIO()):  # snnTorch prints while exporting
        graph = export_to_nir(model, x[0, 0])
    nir.write(tmp_path / "snntorch.nir", graph)
    net = from_nir(tmp_path / "snntorch.nir", dt=0.1, batch_size=B, update_type="linear")
    assert expected.any()
    assert torch.equal(pysnn_spikes(net, x), expected)


def test_spikingjelly_export_is_reproduced(problem, tmp_path):
    """Compensated: SpikingJelly fires at v >= v_threshold where NIR says v > v_threshold, so
    its thresholds are lowered by one ulp before import (nextafter(θ, -inf)); dt is its
    default 1e-4 s. Its LIFNode(decay_input=True) is NIR's Euler step, pysnn's exponential
    update."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    weight, x = problem
    linear = layer.Linear(I, O, bias=False)
    linear.weight.data = weight.clone()
    lif = neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0)
    model = torch.nn.Sequential(linear, lif)
    functional.reset_net(model)
    with torch.no_grad():
        expected = torch.stack([model(x[t]) for t in range(T)]) > 0
    with _quiet():
        graph = export_to_nir(model, x[0], dt=1e-4)
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):  # SpikingJelly's >= as NIR's strict >
            theta = node.v_threshold.astype(np.float32)
            node.v_threshold = np.nextafter(theta, np.float32(-np.inf))
    nir.write(tmp_path / "sj.nir", graph)
    net = from_nir(tmp_path / "sj.nir", dt=0.1, batch_size=B)
    assert expected.any()
    assert torch.equal(pysnn_spikes(net, x), expected)
