"""The same network and learning rule give the same results on CUDA as on the CPU.

Skipped where no GPU is present (CI has none); run on a machine with one to check the device paths.
"""

import copy
from collections import OrderedDict

import pytest
import torch

from pysnn import native
from pysnn._backend import NativeUnavailableError
from pysnn.learning import MSTDP, MSTDPET, STDP, FedeSTDP
from pysnn.models import DiehlCook2015
from pysnn.neuron import LIFNeuron
from test_no_host_sync import B, Mixed

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("rule_name", ["stdp", "mstdpet"])
def test_cuda_matches_cpu(reduction, rule_name):
    torch.manual_seed(0)
    cpu_net = Mixed(reduction).double()
    cuda_net = copy.deepcopy(cpu_net).to("cuda")
    make_rule = {
        "stdp": lambda layers: STDP(layers, 0.01, 1.0, 1.0),
        "mstdpet": lambda layers: MSTDPET(layers, 1.0, 1.0, 0.01, 0.9),
    }[rule_name]
    rules = {"cpu": make_rule(cpu_net.layers), "cuda": make_rule(cuda_net.layers)}
    generator = torch.Generator().manual_seed(1)
    for step in range(20):
        x = torch.rand(B, 1, 6, generator=generator) < 0.5
        image = torch.rand(B, 2, 6, 6, generator=generator) < 0.5
        for device, net in (("cpu", cpu_net), ("cuda", cuda_net)):
            net(x.to(device), image.to(device))
            rules[device].update_state()
            if rule_name == "stdp":
                rules[device].step()
            else:
                rules[device].step(torch.tensor(1.0 if step < 10 else -1.0, device=device))
    for name, tensor in cpu_net.state_dict().items():
        if isinstance(tensor, torch.Tensor):
            other = cuda_net.state_dict()[name].cpu()
            if tensor.dtype == torch.bool or not tensor.is_floating_point():
                assert torch.equal(tensor, other), name
            else:
                torch.testing.assert_close(tensor, other, rtol=1e-9, atol=1e-9, msg=name)


class _NoPool(Mixed):
    """``Mixed`` without the pooling (whose trace selection ranks with ``torch.unique``)."""

    def forward(self, x, image):
        x, trace = self.input(x)
        self.alif(self.fc(x, trace)[0])
        self.fede(*self.fc_fede(x, trace))
        image, image_trace = self.image(image)
        return self.conv_if(self.conv(image, image_trace)[0])


def _frames(device, n=4):
    generator = torch.Generator().manual_seed(1)
    return [
        (
            (torch.rand(B, 1, 6, generator=generator) < 0.5).to(device),
            (torch.rand(B, 2, 6, 6, generator=generator) < 0.5).to(device),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize(
    "make_rule, reward",
    [
        (None, None),
        (lambda layers: STDP(layers, 0.01, 1.0, 1.0), None),
        (lambda layers: STDP(layers, 0.01, 1.0, 1.0, 0.0, 1.0, "multiplicative"), None),
        (lambda layers: MSTDP(layers, 1.0, 1.0, 0.01), "tensor"),
        (lambda layers: MSTDPET(layers, 1.0, 1.0, 0.01, 0.9), 0.5),
        (lambda layers: MSTDPET(layers, 1.0, 1.0, 0.01, 0.9), "tensor"),
        (lambda layers: MSTDPET(layers, 1.0, 1.0, 0.01, 0.9, per_sample_reward=True), "batch"),
        (lambda layers: FedeSTDP(layers, 0.01, 0.5, 0.5), None),
    ],
)
def test_cuda_steps_never_synchronise(reduction, make_rule, reward):
    """``torch.cuda.set_sync_debug_mode("error")`` raises at any synchronising CUDA call (a
    read-back, a device-to-host copy): the CUDA version of tests/test_no_host_sync.py."""
    torch.manual_seed(0)
    net = _NoPool(reduction).to("cuda")
    rule = make_rule(net.layers) if make_rule else None
    if reward == "tensor":
        reward = torch.tensor(-0.5, device="cuda")
    elif reward == "batch":
        reward = torch.linspace(-1.0, 1.0, B, device="cuda")
    frames = _frames("cuda")

    def step(x, image):
        net(x, image)
        if rule is not None:
            rule.update_state()
            rule.step() if reward is None else rule.step(reward)

    with torch.no_grad():
        step(*frames[0])  # the first step allocates the reused buffers
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for x, image in frames[1:]:
                step(x, image)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_cuda_diehl_cook_step_never_synchronises():
    model = DiehlCook2015(64, 20, 2).to("cuda")
    rule = STDP(model.plastic_layers(), 0.01, 1.0, 1.0, 0.0, 1.0)
    trains = (torch.rand(5, 2, 1, 64) < 0.3).to("cuda")
    with torch.no_grad():
        for t, x in enumerate(trains):
            if t == 1:
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
            try:
                model(x)
                rule.update_state()
                rule.step()
                model.normalize()
            finally:
                torch.cuda.set_sync_debug_mode("default")


def test_native_backend_refuses_cuda_tensors_and_auto_runs_pytorch():
    neuron = LIFNeuron((B, 1, 5), 0.5, 0.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9).to("cuda")
    x = torch.rand(B, 1, 5, 2, device="cuda")
    spikes, trace = neuron(x)  # "auto": the PyTorch step on CUDA
    assert spikes.is_cuda and trace.is_cuda
    if not native.enabled():
        pytest.skip("the C kernels are not built or switched off: backend='native' is refused")
    neuron.backend = "native"
    with pytest.raises(NativeUnavailableError, match="cuda"):
        neuron(x)
    net = _NoPool("sum").to("cuda")
    net(*_frames("cuda", 1)[0])
    fc_only = OrderedDict(fc=net.layers["fc"])  # the stacking kernel takes Linear layers
    rule = STDP(fc_only, 0.01, 1.0, 1.0, backend="native")
    with pytest.raises(NativeUnavailableError, match="cuda"):
        rule.update_state()
        rule.step()
