"""PySNN's MLP example: a two-layer FedeNeuron network trained by FedeSTDP on the OR data set.

The four OR samples ``[0,0], [1,0], [0,1], [1,1]`` (each input repeated to give ``N_IN`` input
neurons) are Poisson-encoded (an input of 1 fires at ``RATE`` Hz) and presented together as one
batch of 4. Network: Input → Linear(delay 3) → FedeNeuron → Linear → FedeNeuron. FedeSTDP
(Paredes-Vallés et al.) is unsupervised: at every step it moves each weight towards an
equilibrium above ``w_init`` where the presynaptic trace is high (relative to the layer's largest)
and below it where the trace is low.

The weights start random (seeded), uniform in ``[0, 1/sqrt(fan-in))``, so the hidden neurons do
not fire in lockstep and the network starts too weak to answer most OR samples. The measure
that learning changes is the accuracy of an any-spike readout: the network answers 1 for a
sample when an output neuron fires during its presentation (``[0,0]`` sends no spike, so it is
always answered 0). The script prints it before and after training (over several fresh
encodings of the four samples), checks that FedeSTDP raised it to 1 (``CHECK PASSED``; exit
status 1 with ``CHECK FAILED`` otherwise), and prints the output rate per OR class (label 0:
``[0,0]``; label 1: the other three) and per sample, and how many distinct spike trains the
hidden layer fires. FedeSTDP has no postsynaptic term: every neuron of a layer is pulled to the
same equilibrium weights, so after long training the hidden (and the two output) neurons fire
alike again; that is the rule, not the start. Spike rasters and weight matrices are saved.

Run: ``python examples/mlp_example.py [--quick] [--out DIR] [--device cpu|cuda] [--seed N]``
"""

import sys
from typing import Callable, Tuple

import torch
from torch import Tensor

from _common import make_parser, progress, require_matplotlib, save_figure, setup
from pysnn.connection import Linear
from pysnn.datasets import OR, Intensity
from pysnn.encoding import PoissonEncoder
from pysnn.learning import FedeSTDP
from pysnn.monitor import Monitor
from pysnn.network import SNNNetwork
from pysnn.neuron import FedeNeuron, Input
from pysnn.plotting import raster_plot, weight_plot
from pysnn.simulation import run

DT = 1.0  # ms
N_IN, N_HIDDEN, N_OUT = 6, 10, 2
BATCH = 4  # the whole OR data set at once
RATE = 200.0  # Hz for an input of 1
# A FedeNeuron integrates Σ(w·s − x), weighted spikes minus presynaptic traces (x ≈ alpha_t ×
# spikes per step): only weights above alpha_t excite. FedeSTDP moves the weights towards
# w_init ± 0.75 (a = 0.5); with w_init = 1 they stay above alpha_t = 0.2 and the network keeps
# firing (with PySNN's U(0, 1) scale, w_init = 0.5, they sink below it and the network falls
# silent after a few epochs).
# FedeNeuron: thresh, v_rest, alpha_v, alpha_t, dt, duration_refrac (ms), tau_v (ms), tau_t (ms)
NEURON = (0.1, 0.0, 1.0, 0.2, DT, 2.0, 5.0, 5.0)
INPUT_TRACE = (0.2, 5.0)  # Input: alpha_t, tau_t (ms)
# FedeSTDP: lr, w_init, a
STDP = (0.001, 1.0, 0.5)
PROBES = 5  # fresh encodings of the four samples on which the readout accuracy is measured


def init_weights(net: SNNNetwork) -> None:
    """Seeded random weights, U(0, 1) / sqrt(fan-in): every neuron of a layer starts different."""
    for layer in net.layers.values():
        layer["connection"].reset_weights("neuron_scaled_uniform", a=0.0, b=1.0)


class MLP(SNNNetwork):
    """Input → Linear(delay 3) → FedeNeuron → Linear → FedeNeuron, as PySNN's MLP example.

    :param batch: batch size B.
    :param n_in: input neurons.
    :param n_hidden: hidden FedeNeurons.
    :param n_out: output FedeNeurons.
    """

    def __init__(self, batch: int, n_in: int, n_hidden: int, n_out: int) -> None:
        super().__init__()
        # cells_shape, dt, alpha_t, tau_t (ms) with exponential traces, like the FedeNeurons
        self.input = Input((batch, 1, n_in), DT, *INPUT_TRACE, update_type="exponential")
        # in, out, batch_size, dt, delay (steps)
        self.linear1 = Linear(n_in, n_hidden, batch, DT, 3)
        self.neuron1 = FedeNeuron((batch, 1, n_hidden), *NEURON)
        self.linear2 = Linear(n_hidden, n_out, batch, DT, 0)
        self.neuron2 = FedeNeuron((batch, 1, n_out), *NEURON)
        self.add_layer("fc1", self.linear1, self.neuron1)
        self.add_layer("fc2", self.linear2, self.neuron2)

    def forward(self, spikes: Tensor) -> Tuple[Tensor, Tensor]:
        """One step: input spikes ``(B, 1, n_in)`` → output spikes and trace ``(B, 1, n_out)``."""
        x, trace = self.input(spikes)
        x, trace = self.linear1(x, trace)
        x, trace = self.neuron1(x, trace)
        x, trace = self.linear2(x, trace)
        return self.neuron2(x, trace)


def or_data(duration: float, device: torch.device) -> Tuple[Callable[[], Tensor], list, Tensor]:
    """The OR data set, Poisson-encoded.

    :param duration: presentation time in ms.
    :param device: where the spikes go.
    :returns: a function drawing a fresh encoding of the four samples as one batch
        ``(4, 1, N_IN, T)`` (float spikes), the four input patterns (e.g. ``[1, 0]``) and their
        labels ``(4,)``.
    """
    data = OR(PoissonEncoder(duration, DT), Intensity(RATE), repeats=N_IN // 2)
    plain = OR()  # the same samples without encoding, for the labels and figure titles
    patterns = [plain[i][0].flatten().int().tolist() for i in range(len(plain))]
    labels = torch.cat([plain[i][1] for i in range(len(plain))])

    def batch() -> Tensor:
        encoded = [data[i][0] for i in range(len(data))]
        return torch.stack(encoded).to(device).float()

    return batch, patterns, labels


def output_rates(net: SNNNetwork, inputs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Simulate without learning and measure firing rates.

    :param net: the network.
    :param inputs: ``(B, 1, n_in, T)`` spikes.
    :returns: output rate per sample ``(B,)`` in Hz (mean over output neurons), and the recorded
        hidden and output spikes ``(T, B, 1, n)``.
    """
    with Monitor(net.neuron1, "spikes") as hidden, Monitor(net.neuron2, "spikes") as out:
        run(net, inputs)
    out_spikes = out.get("spikes")
    duration_s = inputs.shape[-1] * DT / 1000.0
    rates = out_spikes.float().sum(0).mean(-1).flatten() / duration_s
    return rates.cpu(), hidden.get("spikes"), out_spikes


def or_accuracy(net: SNNNetwork, batch: Callable[[], Tensor], labels: Tensor) -> float:
    """Accuracy of the any-spike readout over ``PROBES`` fresh encodings, without learning.

    The answer for a sample is 1 when an output neuron fires during its presentation.
    """
    correct = 0
    for _ in range(PROBES):
        out = run(net, batch())  # (B, 1, n_out, T)
        answers = out.flatten(1).any(1).long().cpu()
        correct += int((answers == labels.long()).sum())
    return correct / (PROBES * len(labels))


def distinct_trains(spikes: Tensor) -> Tuple[int, int]:
    """``(distinct, active)``: distinct spike trains among the neurons that fire at all.

    :param spikes: recorded ``(T, B, 1, n)`` spikes; a neuron's train spans every sample.
    """
    trains = spikes.flatten(1, 2).permute(2, 0, 1).flatten(1).cpu()  # (n, T·B)
    active = [tuple(train.tolist()) for train in trains if train.any()]
    return len(set(active)), len(active)


def check(before: float, after: float) -> int:
    """Print ``CHECK PASSED`` or ``CHECK FAILED`` for the readout accuracy; the exit status."""
    if after == 1.0 and after > before:
        print(
            f"CHECK PASSED: FedeSTDP raised the OR accuracy of the any-spike readout from "
            f"{before:.2f} to {after:.2f}"
        )
        return 0
    print(
        f"CHECK FAILED: expected FedeSTDP to raise the OR accuracy of the any-spike readout to "
        f"1.00 from below, got {before:.2f} -> {after:.2f}"
    )
    return 1


def report(name: str, rates: Tensor, labels: Tensor) -> None:
    """Print the output rate per sample and per OR class."""
    per_sample = ", ".join(f"{r:6.1f}" for r in rates.tolist())
    per_class = ", ".join(
        f"label {c}: {rates[labels == c].mean():6.1f} Hz" for c in sorted(set(labels.tolist()))
    )
    print(f"{name:>6} | output rate per sample (Hz): {per_sample} | per class: {per_class}")


def main() -> int:
    """Train and report; returns the exit status."""
    parser = make_parser(__doc__.split("\n\n")[0])
    args = setup(parser)
    duration = 30.0 if args.quick else 100.0  # ms per presentation
    epochs = 8 if args.quick else 200
    device = args.device

    batch, patterns, labels = or_data(duration, device)
    net = MLP(BATCH, N_IN, N_HIDDEN, N_OUT).to(device)
    init_weights(net)
    # Built after .to(device): the rule keeps the live tensors of the layers.
    rule = FedeSTDP(net.layer_state_dict(), *STDP)
    probe = batch()
    before, hidden_before, _ = output_rates(net, probe)
    accuracy_before = or_accuracy(net, batch, labels)
    w_before = [net.linear1.weight.clone().cpu(), net.linear2.weight.clone().cpu()]

    for _ in progress(range(epochs), "FedeSTDP epochs"):
        run(net, batch(), rule)  # a FedeSTDP step after every time step

    after, hidden_spikes, out_spikes = output_rates(net, probe)
    accuracy_after = or_accuracy(net, batch, labels)
    print(
        f"OR data set, {N_IN} inputs at {RATE:g} Hz, {duration:g} ms per presentation, "
        f"{epochs} epochs of FedeSTDP"
    )
    report("before", before, labels)
    report("after", after, labels)
    for when, spikes in (("before", hidden_before), ("after", hidden_spikes)):
        distinct, active = distinct_trains(spikes)
        print(
            f"hidden layer {when} training: {distinct} distinct spike trains among {active} "
            f"firing neurons (of {N_HIDDEN})"
        )
    for name, old, new in zip(("fc1", "fc2"), w_before, (net.linear1.weight, net.linear2.weight)):
        change = (new.cpu() - old).abs().mean()
        print(
            f"{name}: mean |weight change| {change:.4f}, weights in [{new.min():.3f}, {new.max():.3f}]"
        )

    plt = require_matplotlib()
    fig, axes = plt.subplots(2, BATCH, figsize=(4 * BATCH, 5), sharex=True)
    for b in range(BATCH):
        title = f"input {patterns[b]}: hidden"
        raster_plot(hidden_spikes, DT, sample=b, ax=axes[0, b], title=title)
        raster_plot(out_spikes, DT, sample=b, ax=axes[1, b], title="output")
    fig.tight_layout()
    save_figure(fig, args.out, "mlp_spikes.png")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (name, conn) in zip(axes, (("fc1", net.linear1), ("fc2", net.linear2))):
        weight_plot(conn.weight, ax=ax, title=f"{name} weights after FedeSTDP")
        ax.set_yticks(range(conn.weight.shape[0]))
        ax.set_xticks(range(conn.weight.shape[1]))
    fig.tight_layout()
    save_figure(fig, args.out, "mlp_weights.png")
    print(
        f"OR accuracy of the any-spike readout ({PROBES} encodings): {accuracy_before:.2f} "
        f"before training, {accuracy_after:.2f} after"
    )
    return check(accuracy_before, accuracy_after)


if __name__ == "__main__":
    sys.exit(main())
