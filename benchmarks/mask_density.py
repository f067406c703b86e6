"""Masked connectivity: does a sparse product pay off, and at which density?

Usage: ``python benchmarks/mask_density.py [--quick] [--threads N]``

For each layer (784 → 400, 1000 → 1000), batch (1, 32) and connection probability p, in one
process, interleaved block by block (many short blocks, in turn) and repeated (medians):

* ``dense``: the product a ``Linear(reduction="sum")`` computes, ``W @ s`` with the masked
  weight ``W`` (zeros at masked synapses) and spikes ``s`` ``(I, B)``: the dense product's speed
  does not depend on p;
* ``csr``: ``torch.sparse`` CSR ``W_csr @ s`` with the CSR built once (static weights, the best
  case for sparse);
* ``csr+sync``: the same plus refreshing the CSR values from the dense weight (an
  ``index_select`` of the nnz kept weights), the cost whenever a rule changes weights in place.

Ratios are ``csr / dense`` (below 1: sparse is faster). The exactness column is the largest
``|csr − dense|`` over the bound ``I·eps·(|W| @ |s|)`` of two summation orders (≤ 1 means within
the bound; 0 means equal bit for bit). Then, at p = 0.1: one whole ``Linear`` step, masked
against dense (both ``reduction="sum"``, the default backend), and one ``STDP`` step (the mask
costs one pass over the weight after the update).
"""

import argparse
import statistics
import time

import torch

from pysnn.connection import Linear, random_mask
from pysnn.learning import STDP
from pysnn.neuron import LIFNeuron

LAYERS = ((784, 400), (1000, 1000))
BATCHES = (1, 32)
DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def interleaved(fns: dict, steps: int, blocks: int) -> dict:
    """Median time per call in µs of each function, timed block by block in turn."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    times = {name: [] for name in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - start) / steps * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def products(n_in: int, n_out: int, batch: int, p: float, steps: int, blocks: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    mask = random_mask(n_out, n_in, p, generator=generator)
    weight = torch.rand(n_out, n_in, generator=generator) * mask
    spikes = (torch.rand(n_in, batch, generator=generator) < 0.2).float()
    csr = weight.to_sparse_csr()
    # flat positions of the kept weights in CSR order (row-major, as to_sparse_csr keeps them)
    flat = mask.view(-1).nonzero().view(-1)
    values = csr.values()

    def dense():
        return torch.matmul(weight, spikes)

    def sparse():
        return torch.matmul(csr, spikes)

    def sparse_sync():
        torch.index_select(weight.view(-1), 0, flat, out=values)
        return torch.matmul(csr, spikes)

    times = interleaved({"dense": dense, "csr": sparse, "csr+sync": sparse_sync}, steps, blocks)
    bound = n_in * torch.finfo(weight.dtype).eps * (weight.abs() @ spikes.abs())
    diff = (sparse() - dense()).abs()
    exact = float((diff / bound.clamp(min=torch.finfo(weight.dtype).tiny)).max())
    return dict(times, exact=exact, equal=bool(torch.equal(sparse(), dense())))


def layer_step(n_in: int, n_out: int, batch: int, steps: int, blocks: int) -> dict:
    """One Linear step and one STDP step, masked at p = 0.1 and dense."""
    generator = torch.Generator().manual_seed(1)
    mask = random_mask(n_out, n_in, 0.1, generator=generator)
    x = torch.rand(batch, 1, n_in, generator=generator) < 0.2
    trace = torch.rand(batch, 1, n_in, generator=generator)
    fns, rules = {}, {}
    for name, layer_mask in (("dense", None), ("masked", mask)):
        con = Linear(n_in, n_out, batch, 1.0, 0, reduction="sum", mask=layer_mask)
        neuron = LIFNeuron((batch, 1, n_out), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.8, 0.7)
        layers = {"fc": {"connection": con, "neuron": neuron, "type": "linear"}}
        rule = STDP(layers, 1e-4, 1.0, 1.0, 0.0, 1.0)
        neuron(con(x, trace)[0])
        fns[f"linear {name}"] = lambda con=con: con(x, trace)
        rules[f"stdp {name}"] = rule.step
    return interleaved({**fns, **rules}, steps, blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # many short blocks, taken in turn: a burst of load on this shared VM spoils a few blocks of
    # every column alike instead of one column's whole measurement
    steps, blocks = (5, 41) if args.quick else (5, 151)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32\n")
    print("| layer | B | p | dense µs | csr µs | csr+sync µs | csr/dense | csr+sync/dense |"
          " exactness (≤1: in bound) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for n_in, n_out in LAYERS:
        for batch in BATCHES:
            for p in DENSITIES:
                r = products(n_in, n_out, batch, p, steps, blocks)
                exact = "equal" if r["equal"] else f"{r['exact']:.2g}"
                print(
                    f"| {n_in}→{n_out} | {batch} | {p:g} | {r['dense']:.1f} | {r['csr']:.1f} | "
                    f"{r['csr+sync']:.1f} | {r['csr'] / r['dense']:.2f} | "
                    f"{r['csr+sync'] / r['dense']:.2f} | {exact} |"
                )
    print("\nWhole steps at p = 0.1 (reduction='sum', default backend):\n")
    print("| layer | B | Linear dense µs | Linear masked µs | ratio | STDP dense µs |"
          " STDP masked µs | ratio |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for n_in, n_out in LAYERS:
        for batch in BATCHES:
            r = layer_step(n_in, n_out, batch, steps, blocks)
            print(
                f"| {n_in}→{n_out} | {batch} | {r['linear dense']:.1f} | "
                f"{r['linear masked']:.1f} | {r['linear masked'] / r['linear dense']:.2f} | "
                f"{r['stdp dense']:.1f} | {r['stdp masked']:.1f} | "
                f"{r['stdp masked'] / r['stdp dense']:.2f} |"
            )


if __name__ == "__main__":
    main()
