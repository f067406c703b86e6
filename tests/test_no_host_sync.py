"""A simulation or learning step must not read tensor values back to Python.

On CUDA such a read (``.item()``, ``bool(tensor)``, a tensor used as a Python scalar) stalls the
host until the device catches up. On the CPU the same reads show up in the profiler as
``aten::item`` / ``aten::_local_scalar_dense``, which is what these tests look for. (Code that
runs only on CPU tensors, such as the spike counts of :func:`pysnn.functional.sum_product`,
may read host memory in place through NumPy: no device is involved.)
"""

import pytest
import torch
from torch.profiler import profile

from pysnn.connection import Conv2d, Linear, MaxPool2d
from pysnn.learning import MSTDP, MSTDPET, STDP, FedeSTDP
from pysnn.monitor import Monitor
from pysnn.network import SNNNetwork
from pysnn.neuron import AdaptiveLIFNeuron, FedeNeuron, IFNeuron, Input, LIFNeuron

HOST_READS = {"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero"}
B = 3


def host_reads(step, n_steps: int = 3) -> list:
    step()  # first call may allocate reused buffers
    with profile() as prof:
        for _ in range(n_steps):
            step()
    return sorted({event.key for event in prof.key_averages() if event.key in HOST_READS})


class Mixed(SNNNetwork):
    """Linear with a delay into an adaptive LIF, Conv2d + pooling into IF, and Fede neurons."""

    def __init__(self, reduction: str) -> None:
        super().__init__()
        self.input = Input((B, 1, 6), 1.0, 1.0, 0.8)
        self.fc = Linear(6, 5, B, 1.0, 2, reduction=reduction)
        self.alif = AdaptiveLIFNeuron((B, 1, 5), 0.5, 0.0, 1.0, 1.0, 1.0, 2.0, 0.9, 0.8, 0.1, 0.9)
        self.fc_fede = Linear(6, 4, B, 1.0, torch.randint(0, 3, (4, 6)), reduction=reduction)
        self.fede = FedeNeuron((B, 1, 4), 0.2, 0.0, 1.0, 1.0, 1.0, 1.0, 4.0, 4.0)
        self.image = Input((B, 2, 6, 6), 1.0, 1.0, 0.8)
        self.conv = Conv2d(2, 3, 3, (6, 6), B, 1.0, 1, padding=1, reduction=reduction)
        self.pool = MaxPool2d(2)
        self.conv_if = IFNeuron((B, 3, 6, 6), 0.5, 0.0, 1.0, 1.0, 1.0, 1.0, 0.8)
        self.add_layer("fc", self.fc, self.alif)
        self.add_layer("fc_fede", self.fc_fede, self.fede)
        self.add_layer("conv", self.conv, self.conv_if)

    def forward(self, x, image):
        x, trace = self.input(x)
        self.alif(self.fc(x, trace)[0])
        self.fede(*self.fc_fede(x, trace))
        image, image_trace = self.image(image)
        spikes, trace = self.conv_if(self.conv(image, image_trace)[0])
        return self.pool(spikes, trace)


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_network_step_reads_nothing_back(reduction):
    torch.manual_seed(0)
    net = Mixed(reduction)
    monitor = Monitor(net.alif, ["spikes", "v_cell", "thresh"])
    x = torch.rand(B, 1, 6) < 0.5
    image = torch.rand(B, 2, 6, 6) < 0.5
    assert host_reads(lambda: net(x, image)) == []
    assert len(monitor) > 0


@pytest.mark.parametrize(
    "make_rule, reward",
    [
        (lambda layers: STDP(layers, 0.01, 1.0, 1.0), None),
        (lambda layers: STDP(layers, 0.01, 1.0, 1.0, weight_dependence="multiplicative"), None),
        (lambda layers: MSTDP(layers, 1.0, 1.0, 0.01), torch.tensor(0.5)),
        (lambda layers: MSTDPET(layers, 1.0, 1.0, 0.01, 0.9), torch.tensor(-1.0)),
        (lambda layers: MSTDPET(layers, 1.0, 1.0, 0.01, 0.9), 1.0),
        (lambda layers: FedeSTDP(layers, 0.01, 0.5, 0.5), None),
    ],
)
def test_learning_step_reads_nothing_back(make_rule, reward):
    torch.manual_seed(0)
    net = Mixed("sum")
    layers = net.layers
    rule = make_rule(layers)
    x = torch.rand(B, 1, 6) < 0.5
    image = torch.rand(B, 2, 6, 6) < 0.5

    def step():
        net(x, image)
        rule.update_state()
        rule.step() if reward is None else rule.step(reward)

    assert host_reads(step) == []
