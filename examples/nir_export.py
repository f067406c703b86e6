"""Train with STDP in pysnn, export to NIR, and run the trained network in Norse.

The network is ``Input(64) → Linear → LIFNeuron`` on scikit-learn's bundled 8x8 digits (no
download), each pixel a Poisson spike train whose rate is proportional to its value. Its weights
learn without labels by pair STDP (:class:`pysnn.learning.STDP`, soft bounds in [0, 1]), each
neuron's weights renormalised to a fixed sum after every step. Then :func:`pysnn.to_nir` exports
it, ``nir.write`` saves the graph (``OUT/digits_lif.nir``), and the file is run

* in Norse (``norse.torch.from_nir``), when Norse is installed;
* back in pysnn (``pysnn.from_nir``), always;

on the same test spikes as the pysnn network. The script prints the agreement of the spike rasters
(cells = samples x neurons x steps) and ``CHECK PASSED`` when every cell agrees; otherwise it exits
with status 1.

The time step is 2^-10 s (0.9765625 ms), a power of two, and the membrane time constant four
steps: Norse computes ``dt * (1/tau)`` where pysnn computes ``dt / tau``, and with these values
both are exactly 1/4. The neurons have no refractory period and a fixed threshold (NIR has
neither refractory periods nor adaptive thresholds); the STDP rule's state is not part of the
graph, only the weights it learned.

Run: ``python examples/nir_export.py [--quick] [--out DIR] [--device cpu|cuda] [--seed N]``
"""

import logging
import sys
import time

import torch
from torch import Tensor

from _common import make_parser, progress, setup
from pysnn.connection import Linear
from pysnn.learning import STDP
from pysnn.network import SNNNetwork
from pysnn.neuron import Input, LIFNeuron

DT_S = 2.0**-10  # the time step in seconds (NIR's unit)
DT = 1000 * DT_S  # in ms (pysnn's unit)
TAU_V = 4 * DT  # membrane time constant, ms: dt/tau = 1/4 exactly
THRESH = 1.0
N_INPUTS = 64
MAX_RATE = 300.0  # Hz of a full pixel (16)


class DigitsLIF(SNNNetwork):
    """Input(64) → Linear → exponential LIF neurons (no refractory period, fixed threshold).

    :param batch: batch size B.
    :param n_neurons: number of LIF neurons.
    """

    def __init__(self, batch: int, n_neurons: int) -> None:
        super().__init__()
        # cells_shape, dt, alpha_t, tau_t (ms)
        self.input = Input((batch, 1, N_INPUTS), DT, 1.0, 20.0, "exponential")
        self.fc = Linear(N_INPUTS, n_neurons, batch, DT, 0, reduction="sum")
        # cells_shape, thresh, v_rest, alpha_v, alpha_t, dt, duration_refrac, tau_v, tau_t
        self.lif = LIFNeuron(
            (batch, 1, n_neurons), THRESH, 0.0, 1.0, 1.0, DT, 0.0, TAU_V, 20.0, "exponential"
        )
        self.add_layer("fc", self.fc, self.lif)
        self.fc.reset_weights("uniform", a=0.0, b=0.5)

    def forward(self, x: Tensor):
        """One step: input spikes ``(B, 1, 64)`` → the LIF spikes and trace ``(B, 1, N)``."""
        x, trace = self.input(x)
        x, trace = self.fc(x, trace)
        return self.lif(x)

    def normalize(self, total: float) -> None:
        """Scale each neuron's weights to sum to ``total``."""
        weight = self.fc.weight.data
        weight.mul_(total / weight.sum(1, keepdim=True).clamp_min(1e-12))


def digits(device: torch.device):
    """sklearn's digits as pixel rates in Hz, ``(S, 64)``, and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "this example reads scikit-learn's digits: pip install scikit-learn"
        ) from error
    images, labels = load_digits(return_X_y=True)
    rates = torch.tensor(images / 16.0 * MAX_RATE, dtype=torch.float32, device=device)
    return rates, torch.tensor(labels)


def encode(rates: Tensor, steps: int) -> Tensor:
    """Bernoulli spikes with probability rate·dt per step: ``(B, 1, 64, T)``, time last."""
    p = (rates * DT_S).unsqueeze(1).unsqueeze(-1)
    return torch.rand(*rates.shape[:1], 1, rates.shape[1], steps, device=rates.device) < p


def norse_raster(path, x: Tensor):
    """Run the NIR file in Norse on ``(B, 1, 64, T)`` spikes; ``(B, 1, N, T)`` bool or None."""
    try:
        import nir
        import norse.torch as norse
    except ImportError:
        return None
    logging.disable(logging.WARNING)  # Norse logs the parameters it ignores (none here)
    model = norse.from_nir(nir.read(path), dt=DT_S)
    state, out = None, []
    with torch.no_grad():
        for t in range(x.shape[-1]):
            spikes, state = model(x[:, 0, :, t].float().cpu(), state)
            out.append(spikes)
    return (torch.stack(out, -1) > 0).unsqueeze(1)


def main() -> int:
    """Train, export, compare; returns the exit status."""
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--neurons", type=int, default=40, help="number of LIF neurons")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training samples")
    args = setup(parser)
    try:
        import nir

        import pysnn
    except ImportError:
        print('this example needs the nir package: pip install "pysnn[nir]"')
        return 1
    torch.set_num_threads(1)
    started = time.perf_counter()
    batch = 16
    n_train, n_test, steps = (96, 32, 100) if args.quick else (1024, 256, 200)
    neurons = 16 if args.quick else args.neurons
    rates, _ = digits(args.device)
    order = torch.randperm(rates.shape[0])
    train, test = rates[order[:n_train]], rates[order[n_train : n_train + n_test]]

    net = DigitsLIF(batch, neurons).to(args.device)
    total = float(net.fc.weight.sum(1).mean())
    net.normalize(total)
    # STDP averages over the batch: lr·B makes each sample count as if shown alone
    rule = STDP(net.layer_state_dict(), 0.002 * batch, 1.0, 1.05, 0.0, 1.0, "multiplicative")
    before = net.fc.weight.clone()
    for epoch in range(args.epochs):
        for start in progress(range(0, n_train, batch), f"STDP epoch {epoch + 1}"):
            x = encode(train[start : start + batch], steps)
            if x.shape[0] < batch:
                continue
            net.reset_state()
            with torch.no_grad():
                for t in range(steps):
                    net(x[..., t])
                    rule.step()
                    net.normalize(total)
    change = float((net.fc.weight - before).abs().mean())
    print(
        f"trained {neurons} LIF neurons by STDP on {n_train} digits ({args.epochs} epoch(s), "
        f"{steps} steps of {DT:g} ms): mean |weight change| {change:.4f}"
    )

    graph = pysnn.to_nir(net, torch.zeros(batch, 1, N_INPUTS, device=args.device), DT)
    path = args.out / "digits_lif.nir"
    nir.write(path, graph)
    kinds = ", ".join(f"{name}: {type(node).__name__}" for name, node in graph.nodes.items())
    print(f"exported {path} ({kinds}; dt hint {graph.metadata['dt']:g} s)")

    test_spikes = torch.cat(
        [encode(test[s : s + batch], steps) for s in range(0, n_test - batch + 1, batch)]
    )
    rasters = {}
    for start in range(0, test_spikes.shape[0], batch):
        x = test_spikes[start : start + batch]
        rasters.setdefault("pysnn", []).append(net.run(x).cpu())
    ours = torch.cat(rasters["pysnn"])

    imported = pysnn.from_nir(path, batch_size=batch)  # dt from the file's metadata
    back = torch.cat(
        [imported.run(test_spikes[s : s + batch].cpu()) for s in range(0, len(ours), batch)]
    )
    results = [("pysnn.from_nir", back)]
    theirs = norse_raster(path, test_spikes)
    if theirs is None:
        print("Norse is not installed (pip install norse): compared with pysnn.from_nir only")
    else:
        results.insert(0, ("Norse", theirs))

    passed = True
    for name, raster in results:
        agree = int((raster == ours).sum())
        cells = ours.numel()
        print(
            f"{name} vs pysnn: {agree}/{cells} cells agree ({100.0 * agree / cells:.2f} %), "
            f"spikes {int(raster.sum())} vs {int(ours.sum())}"
        )
        passed &= agree == cells
    print(f"time: {time.perf_counter() - started:.1f} s")
    if not passed or not ours.any():
        print("CHECK FAILED: the exported network does not give pysnn's spikes")
        return 1
    print("CHECK PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
