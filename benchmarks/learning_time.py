"""Time and memory of one learning step (``update_state()`` + ``step()``), side by side with the
bare matmul.

Usage: ``python benchmarks/learning_time.py [--quick] [--threads N] [--device cpu|cuda] [--compare DIR]``

Workload: Input → Linear(784 → 400, batch 32) → LIFNeuron, as in ``step_time.py``. Each rule
runs in its own child process: it builds the network, runs 20 warm-up steps (so traces and
spikes are realistic: the postsynaptic rate is printed), then times blocks of learning steps and
blocks of the bare ``torch.matmul`` of (32, 784) × (784, 400), interleaved, and reports medians.
The ratio column is the median over pairs of adjacent blocks of learning-step time / matmul
time (robust to the load changing during the run); "ratio of minima" divides the fastest
blocks. On a shared machine prefer ``--threads 1``: with several threads a busy neighbour
stalls every parallel kernel.

Memory, per rule: *held* is the size of the tensors the rule keeps between steps (eligibility
traces, scratch buffers); *peak extra* is the growth of the process's peak memory caused by
building the rule and running its steps after the network has run — on CUDA from
``torch.cuda.max_memory_allocated``, on CPU from the peak resident set size (``ru_maxrss``,
coarser: it includes allocator slack and the BLAS library's packing buffers, about 1 MiB). For scale: O·I·4 bytes = 1.2 MiB (one float weight
matrix), B·O·I·4 bytes = 38 MiB (one per-synapse float tensor, what PySNN 0.1.1 allocates
several times per step).

The "floor" row is the bare ``addmm_`` that every two-term rule needs for a batch of 32: an
(O, 2B) × (2B, I) product accumulated into the weight — twice the matmul's multiply-adds, and a
read and write of the whole (O, I) weight.

The "PySNN-style" row is MSTDPET written the way PySNN 0.1.1 computes it — a per-sample,
per-synapse eligibility trace updated with :meth:`~pysnn.learning.LearningRule.pre_mult_post` on
``(B, O, I)`` copies of the trace — for comparison only.
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

B, N_IN, N_OUT = 32, 784, 400
ROWS = [
    ("STDP additive", "stdp", {}),
    ("STDP multiplicative", "stdp_mult", {}),
    ("MSTDP, float reward", "mstdp", {}),
    ("MSTDP, (B,) reward", "mstdp_batch", {}),
    ("MSTDPET, float reward", "mstdpet", {}),
    ("MSTDPET, 0-dim tensor reward", "mstdpet_tensor", {}),
    ("MSTDPET, per_sample_reward=True, (B,) reward", "mstdpet_per_sample", {}),
    ("FedeSTDP", "fede", {}),
    ("MSTDPET, per-synapse delay tensor", "mstdpet", {"delay": "tensor"}),
    ("STDP additive, per-synapse delay tensor", "stdp", {"delay": "tensor"}),
    ("PySNN-style MSTDPET, (B, O, I) tensors", "pysnn_mstdpet", {}),
    ("floor: W.addmm_((400, 64), (64, 784)) alone", "floor", {}),
]


class _PySNNStyleMSTDPET:
    """MSTDPET as PySNN 0.1.1 computes it: per-synapse copies and products every step."""

    def __init__(self, rule, connection, neuron, a_pre, a_post, lr, decay):
        self.rule, self.con, self.neuron = rule, connection, neuron
        self.a_pre, self.a_post, self.lr, self.decay = a_pre, a_post, lr, decay
        self.e_trace = torch.zeros(connection.synapse_shape, device=connection.weight.device)

    def update_state(self):
        pre_trace = self.con.trace.clone()  # PySNN keeps a (B, O, I) trace per synapse
        pre_spikes = self.con.spikes.to(pre_trace.dtype).contiguous()
        self.e_trace.mul_(self.decay)
        self.e_trace += self.a_pre * self.rule.pre_mult_post(
            pre_trace, self.neuron.spikes, "linear"
        )
        self.e_trace -= self.a_post * self.rule.pre_mult_post(
            pre_spikes, self.neuron.trace, "linear"
        )

    def step(self, reward):
        update = self.rule.reduce_connections(self.e_trace, "linear")
        self.con.weight.data += self.lr * reward * update


class _Floor:
    """The one matrix product a two-term rule cannot avoid: W += P·Q with inner size 2B."""

    def __init__(self, weight):
        self.weight = weight
        self.p = torch.rand(weight.shape[0], 2 * B, device=weight.device)
        self.q = torch.rand(2 * B, weight.shape[1], device=weight.device)

    def update_state(self):
        pass

    def step(self):
        self.weight.addmm_(self.p, self.q, alpha=1e-9)


def _rule_bytes(rule) -> int:
    if isinstance(rule, _Floor):
        return 0
    if isinstance(rule, _PySNNStyleMSTDPET):
        return rule.e_trace.numel() * rule.e_trace.element_size()
    return sum(layer.held_bytes() for layer in rule.layers.values())


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _block_ms(fn, steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps * 1e3


def measure(kind: str, options: dict, quick: bool, device_name: str) -> dict:
    """Build the network and one rule; return timings (ms) and memory (bytes)."""
    from pysnn.connection import Linear
    from pysnn.learning import MSTDP, MSTDPET, STDP, FedeSTDP
    from pysnn.network import SNNNetwork
    from pysnn.neuron import Input, LIFNeuron

    device = torch.device(device_name)
    torch.manual_seed(0)
    delay = (
        torch.randint(0, 4, (N_OUT, N_IN)) if options.get("delay") == "tensor" else 1
    )  # an int delay or per-synapse delays

    class Net(SNNNetwork):
        def __init__(self):
            super().__init__()
            self.input = Input((B, 1, N_IN), 1.0, 1.0, 0.9)
            self.con = Linear(N_IN, N_OUT, B, 1.0, delay, reduction="sum")
            self.neuron = LIFNeuron((B, 1, N_OUT), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.9, 0.9)
            self.add_layer("fc", self.con, self.neuron)

        def forward(self, x):
            x, trace = self.input(x)
            activation, trace = self.con(x, trace)
            return self.neuron(activation)

    net = Net().to(device)
    net.con.reset_weights("uniform", a=0.0, b=0.03)
    n_steps = 64
    spikes = torch.rand(n_steps, B, 1, N_IN, device=device) < 0.1
    dense = torch.rand(B, N_IN, device=device)
    weight_t = torch.rand(N_IN, N_OUT, device=device)
    post_rate = 0.0
    with torch.no_grad():
        for t in range(20):
            net(spikes[t])
            post_rate += float(net.neuron.spikes.float().mean()) / 20
        for _ in range(10):
            torch.matmul(dense, weight_t)
    _sync(device)
    baseline = _peak_bytes(device)

    reward_float = 0.5
    reward_tensor = torch.tensor(0.5, device=device)
    reward_batch = torch.linspace(-1.0, 1.0, B, device=device)
    layers = net.layers
    rule, reward = {
        "stdp": lambda: (STDP(layers, 1e-3, 1.0, 1.0), None),
        "stdp_mult": lambda: (STDP(layers, 1e-3, 1.0, 1.0, 0.0, 1.0, "multiplicative"), None),
        "mstdp": lambda: (MSTDP(layers, 1.0, 1.0, 1e-3), reward_float),
        "mstdp_batch": lambda: (MSTDP(layers, 1.0, 1.0, 1e-3), reward_batch),
        "mstdpet": lambda: (MSTDPET(layers, 1.0, 1.0, 1e-3, 0.9), reward_float),
        "mstdpet_tensor": lambda: (MSTDPET(layers, 1.0, 1.0, 1e-3, 0.9), reward_tensor),
        "mstdpet_per_sample": lambda: (
            MSTDPET(layers, 1.0, 1.0, 1e-3, 0.9, per_sample_reward=True),
            reward_batch,
        ),
        "fede": lambda: (FedeSTDP(layers, 1e-4, 0.5, 0.5), None),
        "floor": lambda: (_Floor(net.con.weight.data), None),
        "pysnn_mstdpet": lambda: (
            _PySNNStyleMSTDPET(
                STDP(layers, 1e-3, 1.0, 1.0), net.con, net.neuron, 1.0, 1.0, 1e-3, 0.9
            ),
            reward_float,
        ),
    }[kind]()

    def learn():
        rule.update_state()
        if reward is None:
            rule.step()
        else:
            rule.step(reward)

    def matmul():
        torch.matmul(dense, weight_t)

    with torch.no_grad():
        for _ in range(5):
            learn()
        _sync(device)
        start = time.perf_counter()
        learn()
        _sync(device)
        one = max(time.perf_counter() - start, 1e-5)
        steps = max(3, min(500, int(0.01 / one)))
        blocks = 9 if quick else 31
        learn_ms, matmul_ms = [], []
        for _ in range(blocks):  # short blocks, interleaved: each pair sees the same load
            learn_ms.append(_block_ms(learn, steps, device))
            matmul_ms.append(_block_ms(matmul, max(steps, 20), device))
    peak_extra = max(_peak_bytes(device) - baseline, 0)
    ratios = [a / b for a, b in zip(learn_ms, matmul_ms)]
    return {
        "learn_ms": statistics.median(learn_ms),
        "matmul_ms": statistics.median(matmul_ms),
        "ratio": statistics.median(ratios),
        "learn_min_ms": min(learn_ms),
        "matmul_min_ms": min(matmul_ms),
        "held": _rule_bytes(rule),
        "peak_extra": peak_extra,
        "post_rate": post_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--compare", type=str, default=None, help="another pysnn checkout, measured after each row"
    )
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        kind, options = json.loads(args.child)
        print(json.dumps(measure(kind, options, args.quick, args.device)))
        return

    mib = 1024 * 1024
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads; "
        f"B={B}, {N_IN}→{N_OUT}; peak extra from "
        f"{'max_memory_allocated' if args.device.startswith('cuda') else 'ru_maxrss'}\n"
    )
    header = "| rule | ms/step | matmul ms | ratio | ratio of minima | held MiB | peak extra MiB |"
    rule = "|---|---|---|---|---|---|---|"
    if args.compare:
        header += " before ms/step | before ratio |"
        rule += "---|---|"
    print(header)
    print(rule)
    rates = []
    for label, kind, options in ROWS:
        command = [sys.executable, __file__, "--child", json.dumps([kind, options])]
        command += ["--device", args.device]
        if args.quick:
            command.append("--quick")
        if args.threads:
            command += ["--threads", str(args.threads)]
        result = _run_child(command)
        rates.append(result["post_rate"])
        ratio = result["ratio"]
        best = result["learn_min_ms"] / result["matmul_min_ms"]
        line = (
            f"| {label} | {result['learn_ms']:.3f} | {result['matmul_ms']:.3f} | {ratio:.1f}× | "
            f"{best:.1f}× | "
            f"{result['held'] / mib:.2f} | {result['peak_extra'] / mib:.1f} |"
        )
        if args.compare:
            before = _run_child(command, args.compare)
            line += f" {before['learn_ms']:.3f} | {before['ratio']:.1f}× |"
        print(line, flush=True)
    print(f"\npostsynaptic spike rate during warm-up: {statistics.mean(rates):.3f} per step")


def _run_child(command, path=None) -> dict:
    """One measurement in a fresh process, with the pysnn of ``path`` first on the import path
    when given (``--compare``)."""
    environment = dict(os.environ)
    if path:
        environment["PYTHONPATH"] = os.path.abspath(path)
    completed = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
    return json.loads(completed.stdout)


if __name__ == "__main__":
    main()
