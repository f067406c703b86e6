"""Where the event-driven weight update stops paying: the crossovers behind ``EVENT_CROSSOVER``
and ``PRODUCT_EVENT_CROSSOVER``.

Usage: ``python benchmarks/event_crossover.py [--threads 2] [--depth 2] [--fixed] [--spike-product]
[--quick]``

:func:`pysnn.native.ordered_update` (depth at most ``learning.ORDERED_DEPTH``, 8) takes only
the products of two nonzero factors when they number at most ``pysnn.native.EVENT_CROSSOVER``
times the dense ones; :func:`pysnn.native.product_bounded` (deeper updates, e.g. ``--depth 32``
for pair STDP at batch 16; two threads or more) does the same against its BLAS product with
``PRODUCT_EVENT_CROSSOVER``. This script times the one the depth selects on
a (400, 784) weight (Diehl & Cook's input layer) with the event path forced (crossover
``inf``) and forbidden (``-1``), interleaved, for factors of growing density, and prints the
work fraction (products taken by the event path / dense products) and both times. Where the
event time passes the dense one is the crossover. Each factor row ``j`` has the same density
in ``p`` and ``q``, so the work fraction is about the density squared.

``--fixed`` times ``product_bounded``'s BLAS instead (``-1``: every term to it) on 1–32 dense
terms, and the bounds pass alone (no term with a product), and prints the BLAS's cost before
its first term in terms (:data:`pysnn.native.PRODUCT_BLAS_FIXED_TERMS`): the intercept of a
least-squares line through the BLAS times, less the bounds pass, over its slope.

``--spike-product`` times one step of ``Linear(I → 400, reduction="sum")`` (784 and 400 inputs,
batch 1, 16 and 32) with its spike-driven product forced and forbidden, for 2 to 64 spikes per
sample, and prints the limits that ``pysnn.functional.SPIKE_PRODUCT_LINE`` and
``SPIKE_PRODUCT_WORK`` set there: the spike-driven product applies up to ``I / LINE`` spikes in
all at small batches and ``B·I / WORK`` at large ones.
"""

import argparse
import math
import statistics
import time

import torch

from pysnn import native
from pysnn.learning import ORDERED_DEPTH


def time_update(out: torch.Tensor, p, q, crossover: float, repeats: int) -> float:
    update = native.ordered_update if len(p) <= ORDERED_DEPTH else native.product_bounded
    start = time.perf_counter()
    for _ in range(repeats):
        if not update(out, p, q, 1e-4, 1.0, 0.0, 1.0, crossover):
            raise SystemExit(f"{update.__name__} declined (it needs two threads or more)")
    return (time.perf_counter() - start) / repeats * 1e3


def blas_fixed_cost(out: torch.Tensor, gen: torch.Generator, repeats: int, rounds: int) -> None:
    """Print the BLAS's time per number of dense terms and its fixed cost in terms."""
    depths = (1, 2, 4, 8, 16, 32)
    factors = {
        k: (torch.rand(k, 400, generator=gen), torch.rand(k, 784, generator=gen)) for k in depths
    }
    silent = (torch.zeros(1, 400), torch.zeros(1, 784))
    blas = {k: [] for k in depths}
    bounds = []
    for _ in range(rounds):  # interleaved
        for k in depths:
            blas[k].append(time_update(out, *factors[k], -1.0, repeats))
        bounds.append(time_update(out, *silent, math.inf, repeats))
    print("| dense terms | BLAS ms |")
    print("|---|---|")
    medians = [statistics.median(blas[k]) for k in depths]
    for k, ms in zip(depths, medians):
        print(f"| {k} | {ms:.4f} |")
    mean_k, mean_t = statistics.mean(depths), statistics.mean(medians)
    slope = sum((k - mean_k) * (t - mean_t) for k, t in zip(depths, medians)) / sum(
        (k - mean_k) ** 2 for k in depths
    )
    intercept, alone = mean_t - slope * mean_k, statistics.median(bounds)
    print(f"\nbounds pass alone {alone:.4f} ms; per term {slope:.4f} ms; before the first term")
    print(f"{intercept - alone:.4f} ms = {(intercept - alone) / slope:.1f} terms")
    print(f"PRODUCT_BLAS_FIXED_TERMS = {native.PRODUCT_BLAS_FIXED_TERMS}")


def spike_product(repeats: int, rounds: int) -> None:
    """Print one Linear step's time, spike-driven against the BLAS, by spikes per sample."""
    from pysnn import functional as sf
    from pysnn.connection import Linear

    def layer(n_in: int, batch: int, line: int, work: int) -> Linear:
        # the limits are read when the kernel's argument struct is built (at the first step)
        saved = sf.SPIKE_PRODUCT_LINE, sf.SPIKE_PRODUCT_WORK
        sf.SPIKE_PRODUCT_LINE, sf.SPIKE_PRODUCT_WORK = line, work
        try:
            linear = Linear(n_in, 400, batch, 1.0, 0, reduction="sum")
            with torch.no_grad():
                linear.weight.uniform_(0.0, 0.3)
            linear(torch.zeros(batch, 1, n_in, dtype=torch.bool), torch.zeros(batch, 1, n_in))
        finally:
            sf.SPIKE_PRODUCT_LINE, sf.SPIKE_PRODUCT_WORK = saved
        return linear

    def step_ms(linear: Linear, x: torch.Tensor, trace: torch.Tensor) -> float:
        start = time.perf_counter()
        for _ in range(repeats):
            linear(x, trace)
        return (time.perf_counter() - start) / repeats * 1e3

    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, O = 400\n")
    print("| I | B | spikes per sample | spikes in all | spike-driven ms | BLAS ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    with torch.no_grad():
        for n_in in (784, 400):
            for batch in (1, 16, 32):
                forced = layer(n_in, batch, 1, 1)
                blas = layer(n_in, batch, 2**30, 2**30)
                trace = torch.rand(batch, 1, n_in, generator=gen)
                for k in (2, 4, 8, 16, 24, 32, 48, 64):
                    x = torch.zeros(batch, 1, n_in, dtype=torch.bool)
                    for b in range(batch):
                        x[b, 0, torch.randperm(n_in, generator=gen)[:k]] = True
                    spike, dense = [], []
                    for _ in range(rounds):  # interleaved
                        spike.append(step_ms(forced, x, trace))
                        dense.append(step_ms(blas, x, trace))
                    e, d = statistics.median(spike), statistics.median(dense)
                    print(
                        f"| {n_in} | {batch} | {k} | {k * batch} | {e:.4f} | {d:.4f} | {e / d:.2f} |"
                    )
    print(
        f"\nSPIKE_PRODUCT_MAX_SPIKES = {sf.SPIKE_PRODUCT_MAX_SPIKES}, SPIKE_PRODUCT_LINE = "
        f"{sf.SPIKE_PRODUCT_LINE}, SPIKE_PRODUCT_WORK = {sf.SPIKE_PRODUCT_WORK}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--depth", type=int, default=2, help="stacked factor rows (2 = batch 1)")
    parser.add_argument("--fixed", action="store_true", help="the BLAS's fixed cost instead")
    parser.add_argument(
        "--spike-product", action="store_true", help="Linear's spike-driven product instead"
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not native.enabled():
        raise SystemExit("the native kernels are not built or are switched off")
    torch.set_num_threads(args.threads)
    repeats, rounds = (50, 3) if args.quick else (200, 7)
    gen = torch.Generator().manual_seed(0)
    out = 0.2 + 0.6 * torch.rand(400, 784, generator=gen)
    if args.fixed:
        blas_fixed_cost(out, gen, repeats, rounds)
        return
    if args.spike_product:
        spike_product(repeats, rounds)
        return
    print(f"torch {torch.__version__}, {args.threads} threads, depth {args.depth}, (400, 784)\n")
    print("| density of p and q | work fraction | event ms | dense ms | event / dense |")
    print("|---|---|---|---|---|")
    for density in (0.01, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5):
        p = torch.rand(args.depth, 400, generator=gen) * (
            torch.rand(args.depth, 400, generator=gen) < density
        )
        q = torch.rand(args.depth, 784, generator=gen) * (
            torch.rand(args.depth, 784, generator=gen) < density
        )
        work = float(((p != 0).sum(1).double() * (q != 0).sum(1).double()).sum())
        fraction = work / (args.depth * 400 * 784)
        event, dense = [], []
        for _ in range(rounds):  # interleaved: the machine's noise hits both alike
            event.append(time_update(out, p, q, math.inf, repeats))
            dense.append(time_update(out, p, q, -1.0, repeats))
        e, d = statistics.median(event), statistics.median(dense)
        print(f"| {density:g} | {fraction:.4f} | {e:.4f} | {d:.4f} | {e / d:.2f} |")
    if args.depth <= ORDERED_DEPTH:
        print(f"\nEVENT_CROSSOVER = {native.EVENT_CROSSOVER}")
    else:
        print(f"\nPRODUCT_EVENT_CROSSOVER = {native.PRODUCT_EVENT_CROSSOVER}")


if __name__ == "__main__":
    main()
