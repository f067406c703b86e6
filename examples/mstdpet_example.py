"""Reward-modulated STDP with an eligibility trace (MSTDPET, Florian 2007) on a single synapse.

One presynaptic neuron fires Poisson spikes into one LIF neuron through one synapse (delay 1
step). The rule accumulates pre-before-post coincidences in an eligibility trace ``e`` and moves
the weight by ``lr · reward · e``. The reward is +1 during the first half of the run and -1 during
the second, so the weight must rise, then fall. The script records every variable with
:class:`pysnn.monitor.Monitor`, saves an 8-panel figure (pre spikes, pre trace, post spikes, post
trace, eligibility trace, reward, weight, post voltage), checks the rise and fall, prints
``CHECK PASSED`` or ``CHECK FAILED`` and exits with status 1 on failure.

Run: ``python examples/mstdpet_example.py [--quick] [--out DIR] [--device cpu|cuda] [--seed N]``
"""

import sys
from typing import Tuple

import torch
from torch import Tensor, nn

from _common import make_parser, require_matplotlib, save_figure, setup
from pysnn.connection import Linear
from pysnn.encoding import poisson_encoding
from pysnn.learning import MSTDPET
from pysnn.monitor import Monitor
from pysnn.network import SNNNetwork
from pysnn.neuron import Input, LIFNeuron
from pysnn.plotting import raster_plot, trace_plot
from pysnn.simulation import run

DT = 1.0  # ms
PRE_RATE = 100.0  # Hz: one presynaptic spike every 10 steps on average
W_START = 0.7  # two pre spikes within 3 steps reach the threshold of 1


class SingleSynapse(SNNNetwork):
    """Input neuron → Linear(1, 1, delay 1) → LIF neuron, batch size 1.

    :param dt: time step in ms.
    """

    def __init__(self, dt: float) -> None:
        super().__init__()
        # cells_shape, dt, alpha_t, trace decay
        self.input = Input((1, 1, 1), dt, 1.0, 0.9)
        # in, out, batch, dt, delay in steps: the post spike comes a step after the pre spike,
        # so the pair counts as causal (pre before post) for the eligibility trace
        self.linear = Linear(1, 1, 1, dt, 1)
        # cells_shape, thresh, v_rest, alpha_v, alpha_t, dt, duration_refrac, v decay, trace decay
        self.neuron = LIFNeuron((1, 1, 1), 1.0, 0.0, 1.0, 1.0, dt, 2.0, 0.8, 0.9)
        self.add_layer("synapse", self.linear, self.neuron)

    def forward(self, spikes: Tensor) -> Tuple[Tensor, Tensor]:
        """One step: ``spikes`` of shape (1, 1, 1) → post spikes and trace (1, 1, 1)."""
        x, trace = self.input(spikes)
        x, trace = self.linear(x, trace)
        return self.neuron(x)


class _TensorProbe(nn.Module):
    """Exposes a tensor kept outside any module (the rule's eligibility trace) to a Monitor."""

    def __init__(self, **tensors: Tensor) -> None:
        super().__init__()
        for name, tensor in tensors.items():
            setattr(self, name, tensor)


def main() -> int:
    """Run the experiment; returns the exit status (0 when the weight rose, then fell)."""
    parser = make_parser(__doc__.split("\n\n")[0])
    args = setup(parser)
    n_steps = 1000 if args.quick else 2000
    half = n_steps // 2
    device = args.device

    net = SingleSynapse(DT).to(device)
    net.linear.reset_weights("constant", gain=W_START)
    # Built after .to(device): the rule keeps the live tensors of the layers.
    rule = MSTDPET(net.layer_state_dict(), 1.0, 0.5, 0.01, 0.9)  # a_pre, a_post, lr, e decay
    eligibility = _eligibility_tensor(rule)

    pre_spikes = poisson_encoding(torch.full((1, 1, 1), PRE_RATE, device=device), n_steps, DT)
    reward = torch.ones(n_steps, device=device)
    reward[half:] = -1.0

    pre_mon = Monitor(net.input, ["spikes", "trace"])
    post_mon = Monitor(net.neuron, ["spikes", "trace", "v_cell"])
    # Weights and eligibility are recorded by run() after the rule's step (hook=False).
    weight_mon = Monitor(net.linear, ["weight"], hook=False)
    probe = _TensorProbe(e_trace=eligibility)
    trace_mon = Monitor(probe, ["e_trace"], hook=False)
    run(net, pre_spikes.float(), rule, reward, monitors=(weight_mon, trace_mon))

    weight = weight_mon.get("weight").flatten().cpu()
    w_start, w_middle, w_end = W_START, float(weight[half - 1]), float(weight[-1])
    n_pre = int(pre_mon.get("spikes").sum())
    n_post_first = int(post_mon.get("spikes")[:half].sum())
    n_post_second = int(post_mon.get("spikes")[half:].sum())
    print(f"steps: {n_steps} (dt {DT} ms), presynaptic spikes: {n_pre}")
    print(f"postsynaptic spikes: {n_post_first} in the first half, {n_post_second} in the second")
    print(f"weight: start {w_start:.3f} -> middle {w_middle:.3f} -> end {w_end:.3f}")

    _save_figure(pre_mon, post_mon, weight_mon, trace_mon, reward, args.out)

    if w_middle > w_start and w_end < w_middle:
        print("CHECK PASSED: the weight rose while the reward was +1 and fell while it was -1")
        return 0
    print(
        "CHECK FAILED: expected the weight to rise during the first half (reward +1) and fall "
        f"during the second (reward -1), got {w_start:.3f} -> {w_middle:.3f} -> {w_end:.3f}"
    )
    return 1


def _eligibility_tensor(rule: MSTDPET) -> Tensor:
    """The rule's eligibility trace of the single layer (updated in place every step)."""
    layer = next(iter(rule.layers.values()))
    return layer["e_trace"]


def _save_figure(pre_mon, post_mon, weight_mon, trace_mon, reward: Tensor, out) -> None:
    """The 8-panel figure ``mstdpet.png`` from the recordings."""
    plt = require_matplotlib()
    fig, axes = plt.subplots(8, 1, figsize=(10, 14), sharex=True)
    raster_plot(pre_mon.get("spikes"), DT, ax=axes[0], title="presynaptic spikes")
    curves = (
        (pre_mon.get("trace"), "trace", "presynaptic trace"),
        (post_mon.get("spikes"), None, "postsynaptic spikes"),
        (post_mon.get("trace"), "trace", "postsynaptic trace"),
        (trace_mon.get("e_trace"), "e", "eligibility trace"),
        (reward, "reward", "reward"),
        (weight_mon.get("weight"), "w", "weight"),
    )
    for ax, (values, ylabel, title) in zip(axes[1:7], curves):
        if ylabel is None:
            raster_plot(values, DT, ax=ax, title=title)
        else:
            trace_plot(values, dt=DT, ax=ax, ylabel=ylabel, legend=False, title=title)
    trace_plot(
        post_mon.get("v_cell"),
        thresh=1.0,
        dt=DT,
        ax=axes[7],
        ylabel="v",
        legend=False,
        title="postsynaptic voltage (dashed: threshold)",
    )
    axes[7].set_xlabel("time (ms)")
    fig.tight_layout()
    save_figure(fig, out, "mstdpet.png")


if __name__ == "__main__":
    sys.exit(main())
