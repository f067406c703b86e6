"""pysnn side by side with BindsNET 0.3.4: Diehl & Cook training and single steps, in one run.

Usage::

    python benchmarks/peers.py --bindsnet-python /tmp/bindsnet-venv/bin/python [--rounds 3]
        [--threads 2] [--quick] [--only dc,step,dc6400]

BindsNET lives in its own virtual environment (its declared ``torch>=2.14`` is not installable
here, and its ``__init__`` imports torchvision, whose wheels here are CUDA builds)::

    python3 -m venv /tmp/bindsnet-venv
    /tmp/bindsnet-venv/bin/pip install torch==2.13.0
    /tmp/bindsnet-venv/bin/pip install --no-deps bindsnet==0.3.4 scipy tqdm numpy

Its child processes import ``bindsnet.network``, ``.learning``, ``.encoding`` and ``.models``
through a package object made from the installed path (see :func:`_import_bindsnet`), which
leaves BindsNET unmodified.

Workloads (every measurement runs in a fresh child process with ``--threads`` torch threads;
the libraries alternate, configuration by configuration, over ``--rounds`` rounds, and the
tables give medians):

* **dc** — unsupervised Diehl & Cook (2015) training: scikit-learn's 8×8 digits upsampled
  bilinearly to 28×28 (784 inputs, pixels in [0, 1]), Poisson spikes at 128 Hz × pixel, 400
  excitatory neurons, 250 steps of 1 ms per sample, at batch 1 and batch 16. pysnn:
  :class:`pysnn.models.DiehlCook2015` with :class:`pysnn.learning.STDP` through
  :func:`pysnn.models.present`, its weights normalised in two ways: once per sample, after the
  presentation (what Diehl & Cook's code and BindsNET do: ``Network.run`` normalises after its
  loop; the like-for-like comparison), and after every step (what ``examples/digits_stdp.py``
  does by default). BindsNET: ``bindsnet.models.DiehlAndCook2015`` (pair STDP ``PostPre``, its
  weight normalisation) with a spike monitor on the excitatory layer, run as in its
  ``eth_mnist.py`` example. Reported: samples/s, excitatory spikes per sample, peak RSS.
* **step** — one step of Input(784) → Linear(784 → 400) → LIF at B = 1, 32, 128, without and
  with pair STDP (pysnn :class:`~pysnn.learning.STDP` with ``reduction="sum"``; BindsNET
  ``Connection`` with ``PostPre``, ``network.run`` over 100 steps). Reported: ms per step.
  Both run BindsNET's parameters (``DC_PARAMETERS``; pysnn's STDP with BindsNET's learning
  rates ``nu = (1e-4, 1e-2)``).
* **dc6400** — pysnn's Diehl & Cook with 6400 excitatory neurons (the size of the 95 % MNIST
  result) at batch 1, normalised once per sample: samples/s and peak RSS.

``--device cuda`` runs pysnn's workloads on a GPU (BindsNET stays on the CPU and is skipped
unless ``--bindsnet-python`` is given); times are taken after ``torch.cuda.synchronize()``
and the peak memory is ``torch.cuda.max_memory_allocated``. ``--cuda-graph`` (with
``--device cuda``) also runs pysnn's Diehl & Cook step (network, STDP, normalisation) replayed
from a CUDA graph (:class:`pysnn.cuda_graph.CapturedStep`), reported as extra rows.
"""

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types

import torch

N_IN, N_EXC, STEPS, RATE = 784, 400, 250, 128.0
# BindsNET's DiehlAndCook2015 defaults in pysnn's terms (voltages above the rest of -65 mV):
# threshold -52 mV, theta_plus 0.05 mV, inhibition 120 per spike, 100 ms membrane, 20 ms traces,
# 5 ms refractory, each neuron's input weights normalised to 78.4. What still differs: pysnn
# resets to the rest voltage (BindsNET 5 mV above), adds spikes to its traces (BindsNET sets them
# to 1) and inhibits directly (BindsNET through one inhibitory neuron per excitatory one).
DC_PARAMETERS = dict(
    thresh=13.0,
    theta_plus=0.05,
    tau_theta=1e7,
    inhibition=120.0,
    tau_v=100.0,
    tau_pre=20.0,
    tau_post=20.0,
    duration_refrac=5.0,
    w_total=78.4,
)


def _import_bindsnet():
    """Import BindsNET's submodules without running its ``__init__`` (which imports
    torchvision)."""
    spec = importlib.util.find_spec("bindsnet")
    if spec is None:
        raise ImportError("bindsnet is not installed in this interpreter")
    package = types.ModuleType("bindsnet")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["bindsnet"] = package
    # network first: importing bindsnet.learning first runs into a circular import
    import bindsnet.network  # noqa: F401
    import bindsnet.learning  # noqa: F401
    import bindsnet.encoding  # noqa: F401
    import bindsnet.models  # noqa: F401

    return package


def _peak_mib(device: str = "cpu") -> float:
    """Peak memory of this process: GPU memory allocated on CUDA, else the peak resident set
    size (``VmHWM``; ``ru_maxrss`` would report the parent's peak, which Linux keeps across the
    ``exec`` that started this child)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -- Diehl & Cook --------------------------------------------------------------------------------
def dc_pysnn(
    images: torch.Tensor,
    batch: int,
    n_neurons: int,
    samples: int,
    device: str = "cpu",
    graph: bool = False,
    normalize: str = "step",
) -> dict:
    """``normalize``: ``"step"`` (after every step) or ``"sample"`` (after each presentation)."""
    from pysnn.learning import STDP
    from pysnn.models import DiehlCook2015, present

    model = DiehlCook2015(N_IN, n_neurons, batch, 1.0, **DC_PARAMETERS).to(device)
    # BindsNET's nu = (1e-4, 1e-2) summed over the batch; pysnn's STDP takes the batch mean
    rule = STDP(model.plastic_layers(), 1e-2 * batch, 1.0, 1e-2, 0.0, 1.0)
    rates = images.to(device) * RATE
    if graph:
        show = _captured_presenter(model, rule, batch, device)
    elif normalize == "step":

        def show(chunk, duration):
            return present(
                model, chunk, duration, 1.0, learning_rule=rule, after_step=model.normalize
            )

    else:

        def show(chunk, duration):
            counts = present(model, chunk, duration, 1.0, learning_rule=rule)
            model.normalize()
            return counts

    warm = rates[:batch].unsqueeze(1)
    show(warm, 20.0)
    spikes, shown = 0.0, 0
    _sync(device)
    start = time.perf_counter()
    while shown < samples:
        chunk = rates[shown % len(rates) :][:batch]
        if len(chunk) < batch:
            chunk = rates[:batch]
        counts = show(chunk.unsqueeze(1), float(STEPS))
        spikes += float(counts.sum())
        shown += batch
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"samples_s": shown / elapsed, "spikes": spikes / shown, "peak_mib": _peak_mib(device)}


def _captured_presenter(model, rule, batch: int, device: str):
    """``present`` with the step (network, STDP, normalisation) replayed from a CUDA graph."""
    from pysnn.cuda_graph import CapturedStep
    from pysnn.encoding import poisson_encoding

    example = torch.zeros(batch, 1, N_IN, dtype=torch.bool, device=device)
    step = CapturedStep(model, example, rule, after_step=model.normalize)

    def show(chunk, duration):
        trains = poisson_encoding(chunk, duration, 1.0).movedim(-1, 0).contiguous()
        model.reset_state()
        counts = torch.zeros(batch, 1, model.n_neurons, device=device)
        for spikes_t in trains:
            counts.add_(step(spikes_t)[0])
        return counts

    return show


def dc_bindsnet(images: torch.Tensor, batch: int, n_neurons: int, samples: int) -> dict:
    bindsnet = _import_bindsnet()
    from bindsnet.encoding import poisson
    from bindsnet.models import DiehlAndCook2015
    from bindsnet.network.monitors import Monitor

    network = DiehlAndCook2015(
        n_inpt=N_IN,
        n_neurons=n_neurons,
        exc=22.5,
        inh=120.0,
        dt=1.0,
        norm=78.4,
        theta_plus=0.05,
        inpt_shape=(1, 28, 28),
        batch_size=batch,
    )
    monitor = Monitor(network.layers["Ae"], ["s"], time=STEPS)
    network.add_monitor(monitor, name="Ae_spikes")
    rates = images * RATE

    def show(chunk: torch.Tensor, steps: int) -> float:
        trains = torch.stack([poisson(datum=rate, time=steps, dt=1.0) for rate in chunk], dim=1)
        network.run(inputs={"X": trains.view(steps, batch, 1, 28, 28)}, time=steps)
        counted = float(monitor.get("s").sum())
        network.reset_state_variables()
        return counted

    show(rates[:batch], 20)
    del bindsnet
    spikes, shown = 0.0, 0
    start = time.perf_counter()
    while shown < samples:
        chunk = rates[shown % len(rates) :][:batch]
        if len(chunk) < batch:
            chunk = rates[:batch]
        spikes += show(chunk, STEPS)
        shown += batch
    elapsed = time.perf_counter() - start
    return {"samples_s": shown / elapsed, "spikes": spikes / shown, "peak_mib": _peak_mib()}


# -- one step ------------------------------------------------------------------------------------
def step_pysnn(batch: int, stdp: bool, steps: int, device: str = "cpu") -> dict:
    from pysnn.connection import Linear
    from pysnn.learning import STDP
    from pysnn.network import SNNNetwork
    from pysnn.neuron import Input, LIFNeuron

    class Network(SNNNetwork):
        def __init__(self):
            super().__init__()
            self.input = Input((batch, 1, N_IN), 1.0, 1.0, 0.95)
            self.linear = Linear(N_IN, N_EXC, batch, 1.0, 0, reduction="sum")
            self.neuron = LIFNeuron((batch, 1, N_EXC), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.95, 0.95)
            self.add_layer("fc", self.linear, self.neuron)
            self.linear.reset_weights("uniform", a=0.0, b=0.02)

        def forward(self, x):
            x, trace = self.input(x)
            x, trace = self.linear(x, trace)
            return self.neuron(x)

    network = Network().to(device)
    rule = STDP(network.layers, 1e-4, 1.0, 1.0) if stdp else None
    trains = (torch.rand(steps, batch, 1, N_IN) < 0.1).to(device)

    def run() -> None:
        with torch.no_grad():
            for x in trains:
                network(x)
                if rule is not None:
                    rule.update_state()
                    rule.step()

    run()
    times = []
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        times.append((time.perf_counter() - start) / steps * 1e3)
    return {"ms_step": statistics.median(times), "peak_mib": _peak_mib(device)}


def step_bindsnet(batch: int, stdp: bool, steps: int) -> dict:
    _import_bindsnet()
    from bindsnet.learning import PostPre
    from bindsnet.network import Network
    from bindsnet.network.nodes import Input, LIFNodes
    from bindsnet.network.topology import Connection

    network = Network(dt=1.0, batch_size=batch)
    source = Input(n=N_IN, traces=True)
    target = LIFNodes(n=N_EXC, traces=True)
    weight = 0.02 * torch.rand(N_IN, N_EXC)
    if stdp:
        connection = Connection(source, target, w=weight, update_rule=PostPre, nu=(1e-4, 1e-4))
    else:
        connection = Connection(source, target, w=weight)
    network.add_layer(source, name="X")
    network.add_layer(target, name="Y")
    network.add_connection(connection, source="X", target="Y")
    trains = torch.rand(steps, batch, N_IN) < 0.1

    network.run(inputs={"X": trains}, time=steps)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        network.run(inputs={"X": trains}, time=steps)
        times.append((time.perf_counter() - start) / steps * 1e3)
    return {"ms_step": statistics.median(times), "peak_mib": _peak_mib()}


def child(config: dict, quick: bool) -> dict:
    """Run one measurement described by ``config`` in this process."""
    torch.manual_seed(0)
    if config["workload"] in ("dc", "dc6400"):
        images = torch.load(config["images"])
        n_neurons = 6400 if config["workload"] == "dc6400" else N_EXC
        batch = config["batch"]
        samples = max(batch, (2 if quick else 8) * batch) if batch > 1 else (3 if quick else 12)
        if config["lib"] == "pysnn":
            device, graph = config.get("device", "cpu"), config.get("graph", False)
            normalize = config.get("normalize", "step")
            return dc_pysnn(images, batch, n_neurons, samples, device, graph, normalize)
        return dc_bindsnet(images, batch, n_neurons, samples)
    if config["lib"] == "pysnn":
        steps = 20 if quick else 100
        return step_pysnn(config["batch"], config["stdp"], steps, config.get("device", "cpu"))
    return step_bindsnet(config["batch"], config["stdp"], 20 if quick else 100)


def digits_28() -> torch.Tensor:
    """scikit-learn's digits, upsampled bilinearly to 28×28: ``(1797, 784)`` in [0, 1]."""
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images / 16.0, dtype=torch.float32).unsqueeze(1)
    upsampled = torch.nn.functional.interpolate(
        images, size=(28, 28), mode="bilinear", align_corners=False
    )
    return upsampled.clamp(0.0, 1.0).reshape(len(images), N_IN)


def _run(python: str, config: dict, args) -> dict:
    command = [python, os.path.abspath(__file__), "--child", json.dumps(config)]
    command += ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    environment = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bindsnet-python", default=None, help="interpreter with BindsNET")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process")
    parser.add_argument("--quick", action="store_true", help="fewer samples and steps")
    parser.add_argument("--only", default="dc,step,dc6400", help="workloads to run")
    parser.add_argument("--device", default="cpu", help="pysnn's device: cpu (default) or cuda")
    parser.add_argument(
        "--cuda-graph", action="store_true", help="with --device cuda: also a CapturedStep D&C"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.quick)))
        return
    if args.cuda_graph and not args.device.startswith("cuda"):
        parser.error("--cuda-graph needs --device cuda")
    if args.device != "cpu":
        _main_device(args)
        return

    libraries = [("pysnn", sys.executable)]
    if args.bindsnet_python:
        libraries.append(("bindsnet", args.bindsnet_python))
    workloads = set(args.only.split(","))
    folder = tempfile.mkdtemp(prefix="pysnn-peers-")
    images_path = os.path.join(folder, "digits28.pt")
    torch.save(digits_28(), images_path)
    configs = []
    if "dc" in workloads:  # BindsNET normalises once per sample: one measurement per batch
        configs += [
            {"workload": "dc", "batch": b, "images": images_path, "normalize": n}
            for b in (1, 16)
            for n in ("sample", "step")
        ]
    if "step" in workloads:
        configs += [
            {"workload": "step", "batch": b, "stdp": stdp} for b in (1, 32, 128) for stdp in (0, 1)
        ]
    results = {}
    for round_index in range(args.rounds):
        for config in configs:
            for lib, python in libraries:
                if lib == "bindsnet" and config.get("normalize") == "step":
                    continue
                key = (json.dumps(config, sort_keys=True), lib)
                results.setdefault(key, []).append(_run(python, dict(config, lib=lib), args))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    dc6400 = {"workload": "dc6400", "batch": 1, "images": images_path, "normalize": "sample"}
    if "dc6400" in workloads:
        results[(json.dumps(dc6400, sort_keys=True), "pysnn")] = [
            _run(sys.executable, dict(dc6400, lib="pysnn"), args)
        ]

    def bindsnet_key(config: dict) -> dict:
        return dict(config, normalize="sample") if config["workload"] == "dc" else config

    def median(config: dict, lib: str, field: str) -> float:
        config = bindsnet_key(config) if lib == "bindsnet" else config
        runs = results.get((json.dumps(config, sort_keys=True), lib))
        return float("nan") if not runs else statistics.median(run[field] for run in runs)

    def spread(config: dict, lib: str, field: str) -> str:
        config = bindsnet_key(config) if lib == "bindsnet" else config
        runs = results.get((json.dumps(config, sort_keys=True), lib))
        if not runs:
            return "—"
        values = [run[field] for run in runs]
        return f"{min(values):.1f}–{max(values):.1f}"

    print(f"torch {torch.__version__}, {args.threads} threads per process, {args.rounds} rounds\n")
    if "dc" in workloads:
        print(
            "| Diehl & Cook training | pysnn samples/s | BindsNET samples/s | speed-up | pysnn "
            "spikes/sample | BindsNET spikes/sample | pysnn peak MiB | BindsNET peak MiB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for config in configs:
            if config["workload"] != "dc":
                continue
            ours, theirs = median(config, "pysnn", "samples_s"), median(
                config, "bindsnet", "samples_s"
            )
            when = "per sample" if config["normalize"] == "sample" else "every step"
            print(
                f"| batch {config['batch']}, pysnn normalises {when} | "
                f"{ours:.1f} ({spread(config, 'pysnn', 'samples_s')})"
                f" | {theirs:.1f} ({spread(config, 'bindsnet', 'samples_s')}) | "
                f"{ours / theirs:.1f}× | {median(config, 'pysnn', 'spikes'):.1f} | "
                f"{median(config, 'bindsnet', 'spikes'):.1f} | "
                f"{median(config, 'pysnn', 'peak_mib'):.0f} | "
                f"{median(config, 'bindsnet', 'peak_mib'):.0f} |"
            )
        print()
    if "step" in workloads:
        print("| step, 784 → 400 | pysnn ms/step | BindsNET ms/step | speed-up |")
        print("|---|---|---|---|")
        for config in configs:
            if config["workload"] != "step":
                continue
            ours, theirs = median(config, "pysnn", "ms_step"), median(config, "bindsnet", "ms_step")
            label = f"B={config['batch']}" + (", pair STDP" if config["stdp"] else "")
            print(f"| {label} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.1f}× |")
        print()
    if "dc6400" in workloads:
        print(
            f"pysnn Diehl & Cook, 6400 neurons, batch 1, normalised per sample: "
            f"{median(dc6400, 'pysnn', 'samples_s'):.2f} samples/s, "
            f"{median(dc6400, 'pysnn', 'spikes'):.1f} spikes/sample, "
            f"peak RSS {median(dc6400, 'pysnn', 'peak_mib'):.0f} MiB"
        )


def _main_device(args) -> None:
    """pysnn alone on ``--device`` (a GPU): Diehl & Cook and steps, eager (and captured)."""
    workloads = set(args.only.split(","))
    folder = tempfile.mkdtemp(prefix="pysnn-peers-")
    images_path = os.path.join(folder, "digits28.pt")
    torch.save(digits_28(), images_path)
    base = {"lib": "pysnn", "device": args.device, "images": images_path}
    graphs = (False, True) if args.cuda_graph else (False,)
    rows = []
    if "dc" in workloads:
        rows += [dict(base, workload="dc", batch=b, graph=g) for b in (1, 16) for g in graphs]
    if "dc6400" in workloads:
        rows += [dict(base, workload="dc6400", batch=1, graph=g) for g in graphs]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(f"torch {torch.__version__}, pysnn on {name}, {args.rounds} rounds\n")
    if rows:
        print(
            "| Diehl & Cook training | neurons | step | samples/s (min–max) | spikes/sample | peak MiB |"
        )
        print("|---|---|---|---|---|---|")
    for config in rows:
        runs = []
        for _ in range(args.rounds):
            try:
                runs.append(_run(sys.executable, config, args))
            except RuntimeError as error:
                print(f"| batch {config['batch']} | failed: {str(error)[-300:]!r} |", flush=True)
                break
        if not runs:
            continue
        rates = [run["samples_s"] for run in runs]
        neurons = 6400 if config["workload"] == "dc6400" else N_EXC
        print(
            f"| batch {config['batch']} | {neurons} | "
            f"{'CUDA graph' if config['graph'] else 'eager'} | {statistics.median(rates):.1f} "
            f"({min(rates):.1f}–{max(rates):.1f}) | "
            f"{statistics.median(run['spikes'] for run in runs):.1f} | "
            f"{statistics.median(run['peak_mib'] for run in runs):.0f} |",
            flush=True,
        )
    if "step" in workloads:
        print("\n| step, 784 → 400 | pysnn ms/step |")
        print("|---|---|")
        for batch in (1, 32, 128):
            for stdp in (0, 1):
                config = dict(base, workload="step", batch=batch, stdp=stdp)
                result = _run(sys.executable, config, args)
                label = f"B={batch}" + (", pair STDP" if stdp else "")
                print(f"| {label} | {result['ms_step']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
