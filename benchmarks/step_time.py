"""Time per simulation step of Input → Linear → LIFNeuron, side by side with the bare matmul.

Usage: ``python benchmarks/step_time.py [--quick] [--threads N] [--compare DIR]``

For each configuration (batch B, 784 → O, delay, reduction) one child process builds the network,
runs warm-up steps, then times blocks of steps and the bare ``torch.matmul`` of the same size
(B × 784 by 784 × O) interleaved, and reports medians; its peak resident memory (minus that of a
process that only imported torch and built the inputs) is reported as the memory cost. The ratio
column is step time / matmul time, measured in the same process at the same moment. Each
configuration runs twice: with pysnn's fused CPU kernels (the default, see ``pysnn.native``) and
with ``PYSNN_NATIVE=0`` (eager PyTorch only, the "eager" columns). ``--compare DIR`` adds
the same measurement of another checkout of pysnn (e.g. ``git worktree add /tmp/old <commit>``
and ``python setup.py build_ext --inplace`` there), run right after each of this checkout's,
for before/after tables measured in one run.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

CONFIGS = [
    (batch, 784, out, delay, reduction)
    for batch, outs in ((1, (400,)), (32, (400,)), (128, (400, 1000)))
    for out in outs
    for delay in (0, 3)
    for reduction in ("sum", "none")
]


def _median_block_ms(fn, steps: int, blocks: int) -> float:
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        times.append((time.perf_counter() - start) / steps * 1e3)
    return statistics.median(times)


def measure(batch: int, n_in: int, n_out: int, delay: int, reduction: str, quick: bool) -> dict:
    """Build one network and return its timings (ms) and peak memory (MiB)."""
    from pysnn.connection import Linear
    from pysnn.neuron import Input, LIFNeuron

    torch.manual_seed(0)
    n_steps = 64
    spikes = torch.rand(n_steps, batch, 1, n_in) < 0.2
    dense = torch.rand(batch, n_in)
    weight_t = torch.rand(n_in, n_out)
    baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    inp = Input((batch, 1, n_in), 1.0, 1.0, 0.9)
    con = Linear(n_in, n_out, batch, 1.0, delay, reduction=reduction)
    con.reset_weights("uniform", a=0.0, b=0.02)
    lif = LIFNeuron((batch, 1, n_out), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.9, 0.9)
    step_index = [0]

    def step():
        x, trace = inp(spikes[step_index[0] % n_steps])
        activation, trace = con(x, trace)
        lif(activation)
        step_index[0] += 1

    def matmul():
        torch.matmul(dense, weight_t)

    for _ in range(10):
        step()
        matmul()
    # Calibrate the block length so a block lasts about 50 ms.
    start = time.perf_counter()
    step()
    one = max(time.perf_counter() - start, 1e-5)
    steps = max(3, min(2000, int(0.05 / one)))
    blocks = 3 if quick else 9
    step_ms, matmul_ms = [], []
    for _ in range(blocks):  # interleave so both see the same machine state
        step_ms.append(_median_block_ms(step, steps, 1))
        matmul_ms.append(_median_block_ms(matmul, max(steps, 50), 1))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "step_ms": statistics.median(step_ms),
        "matmul_ms": statistics.median(matmul_ms),
        "peak_mib": peak_mib - baseline_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--compare", type=str, default=None, help="another pysnn checkout")
    parser.add_argument("--batches", type=str, default=None, help="e.g. 1,32: only these B")
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        batch, n_in, n_out, delay, reduction = json.loads(args.child)
        print(json.dumps(measure(batch, n_in, n_out, delay, reduction, args.quick)))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    header = (
        "| B | layer | delay | reduction | ms/step | matmul ms | ratio | eager ms/step "
        "| eager ratio | peak MiB |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|"
    if args.compare:
        header += " before ms/step | before ratio | before eager ratio |"
        rule += "---|---|---|"
    print(header)
    print(rule)
    batches = None if args.batches is None else {int(b) for b in args.batches.split(",")}
    for config in CONFIGS:
        if batches is not None and config[0] not in batches:
            continue
        command = [sys.executable, __file__, "--child", json.dumps(config)]
        if args.quick:
            command.append("--quick")
        if args.threads:
            command += ["--threads", str(args.threads)]
        fused = _run_child(command, native=True)
        eager = _run_child(command, native=False)
        batch, n_in, n_out, delay, reduction = config
        line = (
            f"| {batch} | {n_in}→{n_out} | {delay} | {reduction} | {fused['step_ms']:.3f} | "
            f"{fused['matmul_ms']:.3f} | {fused['step_ms'] / fused['matmul_ms']:.1f}× | "
            f"{eager['step_ms']:.3f} | {eager['step_ms'] / eager['matmul_ms']:.1f}× | "
            f"{fused['peak_mib']:.0f} |"
        )
        if args.compare:
            before = _run_child(command, native=True, path=args.compare)
            before_eager = _run_child(command, native=False, path=args.compare)
            line += (
                f" {before['step_ms']:.3f} | {before['step_ms'] / before['matmul_ms']:.1f}× | "
                f"{before_eager['step_ms'] / before_eager['matmul_ms']:.1f}× |"
            )
        print(line, flush=True)


def _run_child(command, native: bool, path=None) -> dict:
    """Run one measurement in a fresh process, with or without pysnn's fused kernels, with
    the pysnn of ``path`` first on the import path when given."""
    environment = dict(os.environ, PYSNN_NATIVE="1" if native else "0")
    if path:
        environment["PYTHONPATH"] = os.path.abspath(path)
    completed = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
    return json.loads(completed.stdout)


if __name__ == "__main__":
    main()
