"""Reward-modulated STDP with an eligibility trace (MSTDPET, Florian 2007) on a single synapse.

One presynaptic neuron fires Poisson spikes into one LIF neuron through one synapse (delay 1
step). The rule accumulates pre-before-post coincidences in an eligibility trace ``e`` and moves
the weight by ``lr · reward · e``. The reward is +1 during the first half of the run and -1 during
the second, so the weight must rise, then fall. The script records every variable with
:class:`pysnn.monitor.Monitor`, saves an 8-panel figure (pre spikes, pre trace, post spikes, post
trace, eligibility trace, reward, weight, post voltage), checks the rise and fall, prints
``CHECK PASSED`` or ``CHECK FAILED`` and exits with status 1 on failure.

The eligibility panel is the rule's own trace, read from ``rule.layers["synapse"]["e_trace"]``
after every step (``tests/examples`` recomputes it step by step from the recorded spikes and
traces of the synapse and the neuron:
``E_t = e_trace_decay·E_(t-1) + a_pre·x_pre·s_post - a_post·s_pre·x_post``).

Run: ``python examples/mstdpet_example.py [--quick] [--out DIR] [--device cpu|cuda] [--seed N]``
"""

import sys
from typing import Dict, List, Optional, Tuple

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
# MSTDPET: a_pre, a_post, lr, e_trace_decay
RULE = dict(a_pre=1.0, a_post=0.5, lr=0.01, e_trace_decay=0.9)


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


class _EligibilityProbe(nn.Module):
    """Exposes the rule's eligibility trace to a Monitor, read from the rule at every record.

    The rule owns the tensor (``rule.layers[name]["e_trace"]``); reading it through the rule
    each time follows it even if the rule replaces it (e.g. after the network moved device).
    """

    def __init__(self, rule: MSTDPET, layer: str) -> None:
        super().__init__()
        self._rule = rule
        self._layer = layer

    @property
    def e_trace(self) -> Tensor:
        return self._rule.layers[self._layer]["e_trace"]


def experiment(n_steps: int, device: torch.device) -> Dict[str, Tensor]:
    """Simulate the synapse for ``n_steps`` with reward +1, then -1; record everything.

    :returns: on the CPU, each with time first: ``input_spikes``/``input_trace`` (the Input),
        ``pre_spikes``/``pre_trace`` (the connection's delayed ones, which the rule reads),
        ``post_spikes``/``post_trace``/``v_cell`` (the neuron), ``e_trace`` (the rule's
        eligibility after each step), ``weight`` (after each step) and ``reward`` ``(T,)``.
    """
    half = n_steps // 2
    net = SingleSynapse(DT).to(device)
    net.linear.reset_weights("constant", gain=W_START)
    # Built after .to(device): the rule keeps the live tensors of the layers.
    rule = MSTDPET(net.layer_state_dict(), *RULE.values())

    pre_spikes = poisson_encoding(torch.full((1, 1, 1), PRE_RATE, device=device), n_steps, DT)
    reward = torch.ones(n_steps, device=device)
    reward[half:] = -1.0

    input_mon = Monitor(net.input, ["spikes", "trace"])
    pre_mon = Monitor(net.linear, ["spikes", "trace"])
    post_mon = Monitor(net.neuron, ["spikes", "trace", "v_cell"])
    # Weights and eligibility are recorded by run() after the rule's step (hook=False).
    weight_mon = Monitor(net.linear, ["weight"], hook=False)
    trace_mon = Monitor(_EligibilityProbe(rule, "synapse"), ["e_trace"], hook=False)
    run(net, pre_spikes.float(), rule, reward, monitors=(weight_mon, trace_mon))
    recorded = {
        "input_spikes": input_mon.get("spikes"),
        "input_trace": input_mon.get("trace"),
        "pre_spikes": pre_mon.get("spikes"),
        "pre_trace": pre_mon.get("trace"),
        "post_spikes": post_mon.get("spikes"),
        "post_trace": post_mon.get("trace"),
        "v_cell": post_mon.get("v_cell"),
        "e_trace": trace_mon.get("e_trace"),
        "weight": weight_mon.get("weight"),
        "reward": reward,
    }
    return {key: value.cpu() for key, value in recorded.items()}


def main() -> int:
    """Run the experiment; returns the exit status (0 when the weight rose, then fell)."""
    parser = make_parser(__doc__.split("\n\n")[0])
    args = setup(parser)
    n_steps = 1000 if args.quick else 2000
    half = n_steps // 2
    rec = experiment(n_steps, args.device)

    weight = rec["weight"].flatten()
    w_start, w_middle, w_end = W_START, float(weight[half - 1]), float(weight[-1])
    n_pre = int(rec["input_spikes"].sum())
    n_post_first = int(rec["post_spikes"][:half].sum())
    n_post_second = int(rec["post_spikes"][half:].sum())
    e_trace = rec["e_trace"].flatten()
    print(f"steps: {n_steps} (dt {DT} ms), presynaptic spikes: {n_pre}")
    print(f"postsynaptic spikes: {n_post_first} in the first half, {n_post_second} in the second")
    print(f"eligibility trace in [{float(e_trace.min()):.3f}, {float(e_trace.max()):.3f}]")
    print(f"weight: start {w_start:.3f} -> middle {w_middle:.3f} -> end {w_end:.3f}")

    _save_figure(rec, args.out)

    if w_middle > w_start and w_end < w_middle:
        print("CHECK PASSED: the weight rose while the reward was +1 and fell while it was -1")
        return 0
    print(
        "CHECK FAILED: expected the weight to rise during the first half (reward +1) and fall "
        f"during the second (reward -1), got {w_start:.3f} -> {w_middle:.3f} -> {w_end:.3f}"
    )
    return 1


def figure_panels(rec: Dict[str, Tensor]) -> List[Tuple[Tensor, Optional[str], str]]:
    """The first seven panels of ``mstdpet.png``: ``(values, ylabel, title)``, ``ylabel``
    ``None`` for a spike raster (the eighth is the voltage with its threshold)."""
    return [
        (rec["input_spikes"], None, "presynaptic spikes"),
        (rec["input_trace"], "trace", "presynaptic trace"),
        (rec["post_spikes"], None, "postsynaptic spikes"),
        (rec["post_trace"], "trace", "postsynaptic trace"),
        (rec["e_trace"], "e", "eligibility trace"),
        (rec["reward"], "reward", "reward"),
        (rec["weight"], "w", "weight"),
    ]


def _save_figure(rec: Dict[str, Tensor], out) -> None:
    """The 8-panel figure ``mstdpet.png`` from the recordings of :func:`experiment`."""
    plt = require_matplotlib()
    fig, axes = plt.subplots(8, 1, figsize=(10, 14), sharex=True)
    for ax, (values, ylabel, title) in zip(axes[:7], figure_panels(rec)):
        if ylabel is None:
            raster_plot(values, DT, ax=ax, title=title)
        else:
            trace_plot(values, dt=DT, ax=ax, ylabel=ylabel, legend=False, title=title)
    trace_plot(
        rec["v_cell"],
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
