"""Cost of recording and of the run() loop, side by side with the bare hand-written loop.

Usage: ``python benchmarks/monitor_overhead.py [--quick] [--threads N] [--steps T] [--rounds R]``

Workload: Input(784) → Linear(784, 400, reduction="sum") → LIFNeuron at batch 32, Bernoulli input
spikes (p = 0.2). A block is one "sample" of ``--steps`` steps. Each variant has its own copy of
the network (same weights) with its monitors attached throughout; the variants are interleaved
block by block, so they see the same machine state, and each overhead is the median over rounds
of (variant block time / reference block time of the same round) − 1. Variants:

* bare loop — ``net(x[..., t])`` and nothing else (the reference), and the same loop on another
  copy of the network: its "overhead" shows the noise floor of the measurement;
* ``Monitor(neuron, ["spikes"])``: growing storage reset per sample (storage reused), a ring of
  1000 rows, and a new monitor per sample (its fresh memory is paged in while recording);
* ``Monitor(neuron, ["spikes", "v_cell", "trace"])`` + ``Monitor(connection, ["trace"])``
  (the connection trace is a per-synapse (B, O, I) broadcast view, recorded compactly);
* ``NetworkMonitor(net)`` (spikes of the input and of the LIF layer);
* the BindsNET-style alternative: each step, copy the spikes to the CPU and grow the record with
  ``torch.cat`` (quadratic in the number of steps);
* ``run(net, x)`` against the same loop written by hand (reset, collect the outputs,
  ``torch.stack``), which is its reference;
* ``Monitor.record()`` alone (warm ring storage, no step around it), as a fraction of a bare
  step: the recording cost without the noise of the step.
"""

import argparse
import statistics
import time

import torch

from pysnn.connection import Linear
from pysnn.monitor import Monitor, NetworkMonitor
from pysnn.network import SNNNetwork
from pysnn.neuron import Input, LIFNeuron
from pysnn.simulation import run

BATCH, N_IN, N_OUT = 32, 784, 400


class Net(SNNNetwork):
    def __init__(self):
        super().__init__()
        self.input = Input((BATCH, 1, N_IN), 1.0, 1.0, 0.9)
        self.con = Linear(N_IN, N_OUT, BATCH, 1.0, 0, reduction="sum")
        self.con.reset_weights("uniform", a=0.0, b=0.02)
        self.neuron = LIFNeuron((BATCH, 1, N_OUT), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.9, 0.9)
        self.add_layer("fc", self.con, self.neuron)

    def forward(self, x):
        x, trace = self.input(x)
        x, trace = self.con(x, trace)
        return self.neuron(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--steps", type=int, default=100, help="time steps per block (sample)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 31, quick 7)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps
    rounds = args.rounds or (7 if args.quick else 31)
    inputs = torch.rand(BATCH, 1, N_IN, steps, generator=torch.Generator().manual_seed(0)) < 0.2

    def make_net():
        torch.manual_seed(0)
        return Net()

    def plain_block(net, monitors=()):
        def block():
            for monitor in monitors:
                monitor.reset()  # a new sample: records restart, storage is reused
            for t in range(steps):
                net(inputs[..., t])

        return block

    def fresh_monitor_block(net):
        def block():
            with Monitor(net.neuron, ["spikes"]):
                for t in range(steps):
                    net(inputs[..., t])

        return block

    def bindsnet_block(net):
        def block():
            record = torch.empty((0, BATCH, 1, N_OUT), dtype=torch.bool)
            for t in range(steps):
                net(inputs[..., t])
                record = torch.cat((record, net.neuron.spikes.cpu().unsqueeze(0)))

        return block

    # One network per variant (same weights), its monitors attached for the whole benchmark.
    nets = [make_net() for _ in range(8)]
    variants = {
        "bare loop": plain_block(nets[0]),
        "bare loop on another copy of the network (noise floor)": plain_block(nets[7]),
        "Monitor(spikes), growing, reset per sample": plain_block(
            nets[1], [Monitor(nets[1].neuron, ["spikes"])]
        ),
        "Monitor(spikes), ring of 1000 rows": plain_block(
            nets[2], [Monitor(nets[2].neuron, ["spikes"], max_steps=1000)]
        ),
        "Monitor(spikes), new monitor per sample (first touch of new memory)": (
            fresh_monitor_block(nets[3])
        ),
        "Monitor(spikes, v_cell, trace) + Monitor(connection trace, a (B,O,I) view)": (
            plain_block(
                nets[4],
                [
                    Monitor(nets[4].neuron, ["spikes", "v_cell", "trace"]),
                    Monitor(nets[4].con, ["trace"]),
                ],
            )
        ),
        "NetworkMonitor(net): input + LIF spikes": plain_block(nets[5], [NetworkMonitor(nets[5])]),
        "BindsNET-style: .cpu() + torch.cat per step": bindsnet_block(nets[6]),
    }
    loop_net = make_net()

    def hand_loop():
        loop_net.reset_state()
        outputs = []
        for t in range(steps):
            outputs.append(loop_net(inputs[..., t])[0])
        return torch.stack(outputs, -1)

    def run_loop():
        return run(loop_net, inputs)

    loops = {"hand-written loop": hand_loop, "run()": run_loop}

    # The recording work alone, without the step around it: a precise, low-noise estimate.
    probe_net = make_net()
    probe_net(inputs[..., 0])
    probes = {
        "spikes": Monitor(probe_net.neuron, ["spikes"], max_steps=steps, hook=False),
        "spikes, v_cell, trace + connection trace": (
            Monitor(probe_net.neuron, ["spikes", "v_cell", "trace"], max_steps=steps, hook=False),
            Monitor(probe_net.con, ["trace"], max_steps=steps, hook=False),
        ),
    }

    def record_block(monitors):
        monitors = monitors if isinstance(monitors, tuple) else (monitors,)

        def block():
            for _ in range(steps):
                for monitor in monitors:
                    monitor.record()

        return block

    for name, monitors in probes.items():
        loops[f"record() alone: {name}"] = record_block(monitors)

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    assert torch.equal(hand_loop(), run_loop())
    for fn in list(variants.values()) + list(loops.values()):  # warm-up
        fn()
    times = {name: [] for name in list(variants) + list(loops)}
    order = list(variants.items()) + list(loops.items())
    for index in range(rounds):  # interleaved: every variant sees the same machine state
        # alternate the order so that drift within a round favours no variant
        for name, fn in order if index % 2 == 0 else order[::-1]:
            times[name].append(timed(fn))

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; B={BATCH}, "
        f"Input({N_IN}) → Linear({N_IN}, {N_OUT}, sum) → LIF; {steps} steps per sample, "
        f"{rounds} rounds, medians of per-round ratios\n"
    )
    print("| variant | ms/step | overhead |")
    print("|---|---|---|")
    bare = times["bare loop"]
    for name in variants:
        ratio = statistics.median(v / b for v, b in zip(times[name], bare))
        ms = statistics.median(times[name]) / steps * 1e3
        print(f"| {name} | {ms:.3f} | {100 * (ratio - 1):+.1f} % |")
    hand = times["hand-written loop"]
    for name in ("hand-written loop", "run()"):
        ratio = statistics.median(v / h for v, h in zip(times[name], hand))
        ms = statistics.median(times[name]) / steps * 1e3
        print(
            f"| {name} (reset, {steps} steps, stacked outputs) | {ms:.3f} | "
            f"{100 * (ratio - 1):+.1f} % vs hand-written |"
        )
    for name in probes:
        key = f"record() alone: {name}"
        ratio = statistics.median(r / b for r, b in zip(times[key], bare))
        us = statistics.median(times[key]) / steps * 1e6
        print(f"| {key} | {us / 1e3:.4f} ({us:.1f} µs) | {100 * ratio:.1f} % of a bare step |")


if __name__ == "__main__":
    main()
