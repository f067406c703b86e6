"""Draw the four Izhikevich (2003) presets of docs/neurons.rst into
docs/_static/izhikevich_presets.png.

Each preset is one :class:`pysnn.neuron.IzhikevichNeuron` cell, at rest for 20 ms and then driven
by a constant input I = 10 (``dt = 0.25`` ms, float64). A spike is drawn at ``v_peak`` = 30 mV
on its step (the step itself resets the voltage to ``c``).

Run from the repository root: ``python docs/scripts/izhikevich_presets.py [OUTPUT.png]``.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pysnn.neuron import IzhikevichNeuron  # noqa: E402

PRESETS = {  # name: (a, b, c, d)
    "regular spiking (RS)": (0.02, 0.2, -65.0, 8.0),
    "intrinsically bursting (IB)": (0.02, 0.2, -55.0, 4.0),
    "chattering (CH)": (0.02, 0.2, -50.0, 2.0),
    "fast spiking (FS)": (0.1, 0.2, -65.0, 2.0),
}
DT, DURATION, ONSET, CURRENT = 0.25, 300.0, 20.0, 10.0
OUTPUT = Path(__file__).resolve().parents[1] / "_static" / "izhikevich_presets.png"


def voltage(a: float, b: float, c: float, d: float) -> np.ndarray:
    """The voltage trace (mV) of one cell, with spikes drawn at 30 mV."""
    cell = IzhikevichNeuron((1, 1, 1), DT, a, b, c, d, 1.0, 0.9, dtype=torch.float64)
    trace = []
    for k in range(int(DURATION / DT)):
        drive = CURRENT if k * DT >= ONSET else 0.0
        spikes, _ = cell(torch.full((1, 1, 1, 1), drive, dtype=torch.float64))
        trace.append(30.0 if bool(spikes) else cell.v_cell.item())
    return np.array(trace)


def main(output: Path = OUTPUT) -> None:
    time = np.arange(int(DURATION / DT)) * DT
    figure, axes = plt.subplots(2, 2, figsize=(8, 4.5), sharex=True, sharey=True)
    for ax, (name, params) in zip(axes.flat, PRESETS.items()):
        ax.plot(time, voltage(*params), color="k", linewidth=0.6)
        ax.set_title(f"{name}: a={params[0]:g}, b={params[1]:g}, c={params[2]:g}, d={params[3]:g}",
                     fontsize=8)  # fmt: skip
        ax.tick_params(labelsize=7)
    for ax in axes[1]:
        ax.set_xlabel("time (ms)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("v (mV)", fontsize=8)
    figure.suptitle(f"IzhikevichNeuron presets, I = {CURRENT:g} from t = {ONSET:g} ms", fontsize=9)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=90)
    print(f"saved {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT)
