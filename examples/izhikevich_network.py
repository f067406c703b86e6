"""Izhikevich's (2003) random network of 1000 spiking neurons, built from pysnn modules.

800 excitatory cells, regular spiking with some heterogeneity (``a = 0.02, b = 0.2,
c = -65 + 15 r², d = 8 - 6 r²``, ``r`` uniform in [0, 1) per cell), and 200 inhibitory cells,
fast spiking to low-threshold spiking (``a = 0.02 + 0.08 r, b = 0.25 - 0.05 r, c = -65,
d = 2``), in one :class:`pysnn.neuron.IzhikevichNeuron` population with per-cell parameters. Each
cell receives a random thalamic input every millisecond (``5·N(0, 1)`` excitatory, ``2·N(0, 1)``
inhibitory) plus the spikes of the previous millisecond through two
:class:`pysnn.connection.Linear` connections: from the excitatory cells with weights
``0.5·U(0, 1)``, from the inhibitory cells with weights ``-U(0, 1)``, each synapse present with
probability ``--p`` (:func:`pysnn.connection.random_mask`; ``--p 1``, the default, is the paper's
all-to-all network). Forward Euler with ``dt = 1 ms`` (the model of
:class:`~pysnn.neuron.IzhikevichNeuron`; the paper's MATLAB code splits the voltage step in two
halves).

It saves the spike raster and the population rate (``izhikevich_raster.png``, the paper's
Fig. 3) into ``--out`` and prints the mean firing rate, the peak frequency of the spectrum of the
population rate (Welch's method, the first 100 ms left out) and whether a rhythm is present: the
paper reports alpha (~10 Hz) and gamma (~40 Hz) rhythms. ``CHECK PASSED`` when the largest power
in 5–60 Hz stands at least ``RHYTHM_RATIO`` (5) times above the floor, the median power of
150–500 Hz (spikes of independent cells give about 1.5; this network 25–65 over seeds 0–3),
``CHECK FAILED`` and exit status 1 otherwise (e.g. ``--p 0.1``: too few synapses to
synchronise, about 2). It also prints the wall time: 1000 ms of simulated time (1000 steps) take
0.2–0.4 s on two CPU cores (up to 5 s when other processes compete for the cores).

Run: ``python examples/izhikevich_network.py [--quick] [--duration MS] [--p P] [--out DIR]
[--device cpu|cuda] [--seed N]``
"""

import sys
import time
from typing import Dict, Tuple

import numpy as np
import torch
from torch import Tensor

from _common import make_parser, require_matplotlib, save_figure, setup
from pysnn.connection import Linear, random_mask
from pysnn.neuron import IzhikevichNeuron

N_EXC, N_INH = 800, 200
DT = 1.0  # ms
TRANSIENT = 100.0  # ms left out of the spectrum: the synchronous first volley
SEGMENT = 256  # steps per Welch segment (3.9 Hz resolution at dt = 1 ms)
BAND = (5.0, 60.0)  # Hz: where the rhythm's peak is looked for (alpha to gamma)
ALPHA, GAMMA = (8.0, 13.0), (30.0, 50.0)  # Hz
FLOOR_BAND = (150.0, 500.0)  # Hz: its median power is the floor (500 Hz: Nyquist at 1 ms)
RHYTHM_RATIO = 5.0  # a rhythm's peak stands at least this many times above the floor


def build(p: float, device: torch.device, generator: torch.Generator):
    """The population and its two incoming connections (from the E and from the I cells).

    :returns: ``(neuron, from_exc, from_inh)``.
    """
    n = N_EXC + N_INH
    r_exc = torch.rand(N_EXC, generator=generator, dtype=torch.float64)
    r_inh = torch.rand(N_INH, generator=generator, dtype=torch.float64)
    a = torch.cat([torch.full((N_EXC,), 0.02, dtype=torch.float64), 0.02 + 0.08 * r_inh])
    b = torch.cat([torch.full((N_EXC,), 0.2, dtype=torch.float64), 0.25 - 0.05 * r_inh])
    c = torch.cat([-65.0 + 15.0 * r_exc**2, torch.full((N_INH,), -65.0, dtype=torch.float64)])
    d = torch.cat([8.0 - 6.0 * r_exc**2, torch.full((N_INH,), 2.0, dtype=torch.float64)])
    per_cell = [x.float().view(1, 1, n) for x in (a, b, c, d)]
    neuron = IzhikevichNeuron((1, 1, n), DT, *per_cell, 1.0, 0.9, device=device)
    connections = []
    for n_in, low, high in ((N_EXC, 0.0, 0.5), (N_INH, -1.0, 0.0)):
        mask = random_mask(n, n_in, p, generator=generator)
        con = Linear(n_in, n, 1, DT, 0, reduction="sum", mask=mask, device=device)
        weight = low + (high - low) * torch.rand(n, n_in, generator=generator, dtype=torch.float64)
        con.weight.data.copy_(weight)
        con.apply_mask()  # masked synapses back to exactly 0
        connections.append(con)
    return neuron, connections[0], connections[1]


def simulate(steps: int, p: float, device: torch.device, seed: int) -> Tensor:
    """Run the network for ``steps`` steps of ``DT``; returns the bool raster ``(steps, 1000)``."""
    generator = torch.Generator().manual_seed(seed)
    neuron, from_exc, from_inh = build(p, device, generator)
    noise_scale = torch.cat([torch.full((N_EXC,), 5.0), torch.full((N_INH,), 2.0)]).to(device)
    noise = torch.randn(steps, 1, 1, N_EXC + N_INH, 1, generator=generator).to(device)
    noise.mul_(noise_scale.view(1, 1, 1, -1, 1))
    raster = torch.zeros(steps, N_EXC + N_INH, dtype=torch.bool, device=device)
    spikes, trace = neuron.spikes.clone(), neuron.trace
    with torch.no_grad():
        for t in range(steps):
            exc, _ = from_exc(spikes[..., :N_EXC], trace[..., :N_EXC])
            inh, _ = from_inh(spikes[..., N_EXC:], trace[..., N_EXC:])
            spikes, trace = neuron([exc, inh, noise[t]])  # fan-in axis: summed by the neuron
            raster[t] = spikes.view(-1)
    return raster.cpu()


def spectrum(raster: Tensor) -> Tuple[np.ndarray, np.ndarray]:
    """Welch power spectrum of the population rate (spikes per step) after ``TRANSIENT`` ms:
    Hann-windowed segments of ``SEGMENT`` steps (fewer for short runs), half overlapping, the
    mean of each removed, their periodograms averaged (which keeps the peak of a noise-only
    spectrum near the floor: no false rhythm).

    :returns: ``(frequencies in Hz, power)``.
    """
    rate = raster[int(TRANSIENT / DT) :].sum(1).double().numpy()
    length = SEGMENT if len(rate) >= 2 * SEGMENT else SEGMENT // 2
    starts = range(0, len(rate) - length + 1, length // 2)
    window = np.hanning(length)
    power = np.mean(
        [np.abs(np.fft.rfft((rate[i : i + length] - rate[i : i + length].mean()) * window)) ** 2
         for i in starts],
        axis=0,
    )  # fmt: skip
    return np.fft.rfftfreq(length, d=DT * 1e-3), power


def band_ratio(freqs: np.ndarray, power: np.ndarray, band: Tuple[float, float]) -> float:
    """The largest power in ``band`` (widened by half a bin) over the median power of
    ``FLOOR_BAND``."""
    half_bin = (freqs[1] - freqs[0]) / 2
    in_band = (freqs >= band[0] - half_bin) & (freqs <= band[1] + half_bin)
    floor = (freqs >= FLOOR_BAND[0]) & (freqs <= FLOOR_BAND[1])
    return float(power[in_band].max() / np.median(power[floor]))


def analyse(raster: Tensor) -> Dict[str, float]:
    """Rates (Hz), the spectral peak in ``BAND`` and the alpha/gamma powers over the floor."""
    seconds = raster.shape[0] * DT * 1e-3
    freqs, power = spectrum(raster)
    in_band = (freqs >= BAND[0]) & (freqs <= BAND[1])
    peak = int(np.flatnonzero(in_band)[np.argmax(power[in_band])])
    return {
        "rate_hz": raster.sum().item() / raster.shape[1] / seconds,
        "exc_rate_hz": raster[:, :N_EXC].sum().item() / N_EXC / seconds,
        "inh_rate_hz": raster[:, N_EXC:].sum().item() / N_INH / seconds,
        "peak_hz": float(freqs[peak]),
        "ratio": band_ratio(freqs, power, BAND),
        "alpha": band_ratio(freqs, power, ALPHA),
        "gamma": band_ratio(freqs, power, GAMMA),
    }


def plot(raster: Tensor, result: Dict[str, float], out) -> None:
    plt = require_matplotlib()
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    times, cells = np.nonzero(raster.numpy())
    top.scatter(times * DT, cells, s=0.5, c="k", marker=".", linewidths=0)
    top.axhline(N_EXC - 0.5, color="tab:red", linewidth=0.5)
    top.set_ylabel("neuron (0–799 exc., 800–999 inh.)")
    top.set_ylim(-1, N_EXC + N_INH)
    top.set_title(
        f"Izhikevich (2003) network: {result['rate_hz']:.1f} Hz mean rate, "
        f"population rhythm at {result['peak_hz']:.0f} Hz"
    )
    bottom.plot(np.arange(raster.shape[0]) * DT, raster.sum(1).numpy(), "k", linewidth=0.5)
    bottom.set_xlabel("time (ms)")
    bottom.set_ylabel("spikes / ms")
    save_figure(figure, out, "izhikevich_raster.png")


def main(argv=None) -> int:
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1000.0, help="simulated time in ms")
    parser.add_argument("--p", type=float, default=1.0, help="connection probability")
    args = setup(parser, argv)
    duration = min(args.duration, 500.0) if args.quick else args.duration
    steps = int(round(duration / DT))
    start = time.perf_counter()
    raster = simulate(steps, args.p, args.device, args.seed)
    wall = time.perf_counter() - start
    result = analyse(raster)
    plot(raster, result, args.out)
    print(
        f"network: {N_EXC} excitatory + {N_INH} inhibitory Izhikevich neurons, "
        f"p = {args.p:g}, {duration:g} ms at dt = {DT:g} ms"
    )
    print(
        f"mean rate: {result['rate_hz']:.2f} Hz (excitatory {result['exc_rate_hz']:.2f} Hz, "
        f"inhibitory {result['inh_rate_hz']:.2f} Hz)"
    )
    print(
        f"population rate spectrum: peak at {result['peak_hz']:.1f} Hz in "
        f"{BAND[0]:g}-{BAND[1]:g} Hz, {result['ratio']:.1f}x the floor (median power of "
        f"{FLOOR_BAND[0]:g}-{FLOOR_BAND[1]:g} Hz)"
    )
    for name, band in (("alpha", ALPHA), ("gamma", GAMMA)):
        present = "present" if result[name] >= RHYTHM_RATIO else "absent"
        print(
            f"{name} rhythm ({band[0]:g}-{band[1]:g} Hz): {result[name]:.1f}x the floor, {present}"
        )
    print(f"wall time: {wall:.2f} s for {duration:g} ms of simulated time")
    if result["ratio"] >= RHYTHM_RATIO:
        print(
            f"CHECK PASSED: a population rhythm at {result['peak_hz']:.1f} Hz "
            f"({result['ratio']:.1f}x >= {RHYTHM_RATIO:g}x the floor)"
        )
        return 0
    print(
        f"CHECK FAILED: no population rhythm in {BAND[0]:g}-{BAND[1]:g} Hz (peak "
        f"{result['ratio']:.1f}x < {RHYTHM_RATIO:g}x the floor)"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
