"""Time per simulation step of Input → Linear → LIFNeuron, side by side with the bare matmul.

Usage: ``python benchmarks/step_time.py [--quick] [--threads N] [--compare DIR]``
or, on a GPU, ``python benchmarks/step_time.py --device cuda [--rule stdp|mstdpet] [--compile]``

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

``--device cuda`` measures every configuration in this one process (CUDA's start-up costs
seconds per process), timing blocks between ``torch.cuda.synchronize()`` calls: the eager step,
the same step replayed from a CUDA graph (:class:`pysnn.cuda_graph.CapturedStep`), the bare
matmul and, with ``--compile``, ``torch.compile(step, mode="reduce-overhead")`` (a failure is
reported in the table, not raised). ``--rule stdp`` / ``--rule mstdpet`` adds the learning step
(``update_state()`` + ``step()``) to each timed step; peak memory comes from
``torch.cuda.max_memory_allocated``. ``--delays`` and ``--reductions`` select configurations.
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


def _cuda_block_ms(fn, steps: int) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e3


def measure_cuda(
    batch: int,
    n_in: int,
    n_out: int,
    delay: int,
    reduction: str,
    quick: bool,
    rule_name: str,
    compile_step: bool,
    device: str,
) -> dict:
    """Eager, CUDA-graph (and compiled) step times of one configuration on a CUDA device."""
    import copy

    from pysnn.connection import Linear
    from pysnn.cuda_graph import CapturedStep
    from pysnn.learning import MSTDPET, STDP
    from pysnn.network import SNNNetwork
    from pysnn.neuron import Input, LIFNeuron

    class Chain(SNNNetwork):
        def __init__(self):
            super().__init__()
            self.input = Input((batch, 1, n_in), 1.0, 1.0, 0.9)
            self.con = Linear(n_in, n_out, batch, 1.0, delay, reduction=reduction)
            self.lif = LIFNeuron((batch, 1, n_out), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.9, 0.9)
            self.add_layer("fc", self.con, self.lif)
            self.con.reset_weights("uniform", a=0.0, b=0.02)

        def forward(self, x):
            x, trace = self.input(x)
            activation, _ = self.con(x, trace)
            return self.lif(activation)

    def make_rule(net):
        if rule_name == "stdp":
            return STDP(net.layers, 1e-4, 1.0, 1.0, 0.0, 1.0), None
        if rule_name == "mstdpet":
            return MSTDPET(net.layers, 1.0, 1.0, 1e-4, 0.9), torch.tensor(0.5, device=device)
        return None, None

    torch.manual_seed(0)
    n_steps = 64
    spikes = torch.rand(n_steps, batch, 1, n_in, device=device) < 0.2
    dense = torch.rand(batch, n_in, device=device)
    weight_t = torch.rand(n_in, n_out, device=device)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.max_memory_allocated()
    template = Chain().to(device)
    nets = {kind: copy.deepcopy(template) for kind in ("eager", "graph", "compiled")}
    rules = {kind: make_rule(net) for kind, net in nets.items()}
    index = [0]

    def eager_step():
        net = nets["eager"]
        rule, reward = rules["eager"]
        with torch.no_grad():
            net(spikes[index[0] % n_steps])
            if rule is not None:
                rule.update_state()
                rule.step() if reward is None else rule.step(reward)
        index[0] += 1

    rule, reward = rules["graph"]
    captured = CapturedStep(nets["graph"], spikes[0], rule, reward)

    def graph_step():
        if reward is None:
            captured(spikes[index[0] % n_steps])
        else:
            captured(spikes[index[0] % n_steps], reward=reward)
        index[0] += 1

    def matmul():
        torch.matmul(dense, weight_t)

    timed = {"eager": eager_step, "graph": graph_step, "matmul": matmul}
    compile_error = None
    if compile_step:
        compiled_net = nets["compiled"]
        compiled_rule, compiled_reward = rules["compiled"]

        def plain(x):
            with torch.no_grad():
                out = compiled_net(x)
                if compiled_rule is not None:
                    compiled_rule.update_state()
                    if compiled_reward is None:
                        compiled_rule.step()
                    else:
                        compiled_rule.step(compiled_reward)
            return out

        try:
            compiled = torch.compile(plain, mode="reduce-overhead")
            for t in range(5):
                compiled(spikes[t])
            torch.cuda.synchronize()

            def compiled_step():
                compiled(spikes[index[0] % n_steps])
                index[0] += 1

            timed["compiled"] = compiled_step
        except Exception as error:  # reported, not raised: the point is to learn what breaks
            compile_error = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    for _ in range(10):
        for fn in timed.values():
            fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    eager_step()
    torch.cuda.synchronize()
    one = max(time.perf_counter() - start, 1e-5)
    steps = max(5, min(2000, int(0.02 / one)))
    blocks = 3 if quick else 9
    times = {name: [] for name in timed}
    for _ in range(blocks):  # interleaved: every variant sees the same machine state
        for name, fn in timed.items():
            times[name].append(_cuda_block_ms(fn, steps if name != "matmul" else max(steps, 50)))
    result = {name: statistics.median(values) for name, values in times.items()}
    result["graphs"] = captured.n_graphs
    result["captured"] = captured.captured
    result["compile_error"] = compile_error
    result["peak_mib"] = (torch.cuda.max_memory_allocated() - baseline) / 2**20
    return result


def main_cuda(args) -> None:
    """``--device cuda``: every configuration in this process, one table."""
    device = args.device
    name = torch.cuda.get_device_name(torch.device(device))
    rule = args.rule or "none"
    print(f"torch {torch.__version__}, {name}; learning rule: {rule}\n")
    print(
        "| B | layer | delay | reduction | eager ms/step | matmul ms | eager ratio | "
        "graph ms/step | graph ratio | graph speed-up | compiled ms/step | peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for config in _selected(args):
        batch, n_in, n_out, delay, reduction = config
        try:
            r = measure_cuda(*config, args.quick, rule, args.compile, device)
        except Exception as error:  # one failing row must not hide the others
            print(
                f"| {batch} | {n_in}→{n_out} | {delay} | {reduction} | failed: "
                f"{type(error).__name__}: {str(error).splitlines()[0][:200]} |",
                flush=True,
            )
            continue
        if not args.compile:
            compiled = "—"
        elif r["compile_error"]:
            compiled = f"failed: {r['compile_error']}"
        else:
            compiled = f"{r['compiled']:.4f}"
        print(
            f"| {batch} | {n_in}→{n_out} | {delay} | {reduction} | {r['eager']:.4f} | "
            f"{r['matmul']:.4f} | {r['eager'] / r['matmul']:.1f}× | {r['graph']:.4f} | "
            f"{r['graph'] / r['matmul']:.1f}× | {r['eager'] / r['graph']:.1f}× | {compiled} | "
            f"{r['peak_mib']:.0f} |",
            flush=True,
        )


def _selected(args):
    batches = None if args.batches is None else {int(b) for b in args.batches.split(",")}
    delays = None if args.delays is None else {int(d) for d in args.delays.split(",")}
    reductions = None if args.reductions is None else set(args.reductions.split(","))
    for config in CONFIGS:
        batch, _, _, delay, reduction = config
        if batches is not None and batch not in batches:
            continue
        if delays is not None and delay not in delays:
            continue
        if reductions is not None and reduction not in reductions:
            continue
        yield config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--compare", type=str, default=None, help="another pysnn checkout")
    parser.add_argument("--batches", type=str, default=None, help="e.g. 1,32: only these B")
    parser.add_argument("--delays", type=str, default=None, help="e.g. 0: only these delays")
    parser.add_argument("--reductions", type=str, default=None, help="e.g. sum: only these")
    parser.add_argument("--device", type=str, default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--rule", choices=("none", "stdp", "mstdpet"), default=None, help="CUDA: learning too"
    )
    parser.add_argument(
        "--compile", action="store_true", help='CUDA: also torch.compile(mode="reduce-overhead")'
    )
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device != "cpu":
        if not args.device.startswith("cuda"):
            parser.error(f"--device must be cpu or cuda, got {args.device!r}")
        if not torch.cuda.is_available():
            parser.error("--device cuda: torch.cuda.is_available() is False")
        if args.compare:
            parser.error("--compare is for CPU measurements")
        main_cuda(args)
        return
    if args.rule not in (None, "none") or args.compile:
        parser.error("--rule and --compile are for --device cuda")
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
    for config in _selected(args):
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
