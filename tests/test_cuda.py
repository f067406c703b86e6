"""The same network and learning rule give the same results on CUDA as on the CPU.

Skipped where no GPU is present (CI has none); run on a machine with one to check the device paths.
"""

import copy

import pytest
import torch

from pysnn.learning import MSTDPET, STDP
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
