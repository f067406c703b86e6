"""pysnn.distributed and the rules' ``process_group``: 2 processes on gloo against one process.

One pair of processes (``python tests/test_distributed.py --worker``, launched with
:mod:`subprocess`, rendezvous through a file store in ``tmp_path``: localhost only, no port to
pick) runs every case; each rank also simulates the single-process reference with the
concatenated batch (the same thread count, one thread, so the same BLAS code) and reports, per
case, the largest difference of its weights (and eligibility traces, theta) from the
reference, relative to the reference's largest magnitude, whether they are equal bit for bit,
and whether both ranks hold the same weights. The tests below read that report.

Bit-exact by construction (the stacked factors or the batch are all-gathered, and every rank
computes the very product of one process): every rule with compact factors (int delays) on
Linear and Conv2d, STDP both weight dependences, MSTDP (shared and per-sample reward),
MSTDPET with a shared reward, TripletSTDP and Hebbian (given the group through the settable
``rule.process_group``), FedeSTDP (plain and gated, any delay), and theta of
``DiehlCook2015``. Each step makes one collective per layer and reads no tensor value back to
the host (profiler: no ``aten::item``).
Within float rounding (an all-reduce of sums, another summation order): per-synapse (tensor)
delays, and the weight step of ``MSTDPET(per_sample_reward=True)``; held to ``RTOL_REDUCED``.
The per-sample eligibility traces of that rule come from a batched product over each rank's
samples, which the BLAS may block differently for another batch size: held to ``RTOL``.

Never hangs: the process group has a 30 s timeout, the pair is killed at ``PAIR_TIMEOUT`` and
as soon as one rank fails.
"""

import json
import os
import subprocess
import sys
import time
import traceback
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
B_LOCAL = 2
B_TOTAL = WORLD * B_LOCAL
STEPS = 10
RTOL = 1e-6  # float32, relative to the largest |weight|
# An all-reduce sums in another order than one process: each of the STEPS updates may differ by
# a few float32 eps of the largest weight (1.06e-6 after 10 steps seen on an AMD EPYC with MKL).
RTOL_REDUCED = STEPS * 8 * torch.finfo(torch.float32).eps
HOST_READS = {"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero"}
PAIR_TIMEOUT = 120.0

RULES = [
    "stdp",
    "stdp-multiplicative",
    "mstdp",
    "mstdp-per-sample",
    "mstdpet",
    "mstdpet-per-sample",
    "fede",
    "fede-gated",
    "triplet",
    "hebbian",
]
KINDS = ["linear", "conv2d", "two-linear"]  # two-linear: 12 -> 6 -> 4, the second delayed
DELAYS = ["int", "tensor"]
CASES = [f"{r}/{k}/{d}" for r in RULES for k in KINDS for d in DELAYS]
# Rules whose layers share one all-gather per step (LearningRule._gather_layers); the others
# make one collective per layer and step.
COALESCED = {"stdp", "stdp-multiplicative", "mstdp", "mstdp-per-sample", "mstdpet"}


def expected_collectives(case):
    """Per step: one per layer at most, one for all the gathered layers of a coalescing rule."""
    name, kind, delay_kind = case.split("/")
    if kind != "two-linear":
        return 1
    return 1 if name in COALESCED and delay_kind == "int" else 2


# Paths that all-reduce sums (not bit-exact, within RTOL): per-synapse delays of the stacked
# rules, and the per-sample MSTDPET weight step.
ALL_REDUCED = {c for c in CASES if c.endswith("/tensor") and not c.startswith("fede")} | {
    c for c in CASES if c.startswith("mstdpet-per-sample")
}


# -- the worker (runs in each spawned process) --------------------------------------------------
def _networks(kind, delay_kind, device):
    """The reference (batch B_TOTAL) and this rank's network (batch B_LOCAL), equal weights."""
    from pysnn.connection import Conv2d, Linear
    from pysnn.network import SNNNetwork
    from pysnn.neuron import IFNeuron, Input

    gen = torch.Generator().manual_seed(10 * KINDS.index(kind) + DELAYS.index(delay_kind))
    if kind == "linear":
        n_in, n_out = 12, 5
        shape = (n_out, n_in)
    elif kind == "two-linear":
        n_in, n_mid, n_out = 12, 6, 4
        shape = (n_out, n_mid)
    else:
        c_in, c_out, im, kernel, stride, pad = 2, 3, (6, 5), (3, 3), (2, 2), (1, 1)
        h_out = (im[0] + 2 * pad[0] - kernel[0]) // stride[0] + 1
        w_out = (im[1] + 2 * pad[1] - kernel[1]) // stride[1] + 1
        shape = (c_out, c_in * kernel[0] * kernel[1], h_out * w_out)
    delay = 2 if delay_kind == "int" else torch.randint(0, 4, shape, generator=gen)

    class Net(SNNNetwork):
        def __init__(self, batch):
            super().__init__()
            self.con2 = None
            if kind == "linear":
                self.input = Input((batch, 1, n_in), 1.0, 1.0, 0.8)
                self.con = Linear(n_in, n_out, batch, 1.0, delay)
                self.neuron = IFNeuron((batch, 1, n_out), 0.8, 0.0, 1.0, 0.7, 1.0, 0.0, 0.6)
            elif kind == "two-linear":
                self.input = Input((batch, 1, n_in), 1.0, 1.0, 0.8)
                self.con = Linear(n_in, n_mid, batch, 1.0, 1)
                self.neuron = IFNeuron((batch, 1, n_mid), 0.8, 0.0, 1.0, 0.7, 1.0, 0.0, 0.6)
                self.con2 = Linear(n_mid, n_out, batch, 1.0, delay)
                self.neuron2 = IFNeuron((batch, 1, n_out), 0.5, 0.0, 1.0, 0.7, 1.0, 0.0, 0.6)
            else:
                self.input = Input((batch, c_in) + im, 1.0, 1.0, 0.8)
                self.con = Conv2d(c_in, c_out, kernel, im, batch, 1.0, delay, stride, pad)
                self.neuron = IFNeuron(
                    (batch, c_out, h_out, w_out), 0.8, 0.0, 1.0, 0.7, 1.0, 0.0, 0.6
                )
            self.add_layer("layer", self.con, self.neuron)
            if self.con2 is not None:
                self.add_layer("layer2", self.con2, self.neuron2)

        def forward(self, x):
            x, trace = self.input(x)
            activation, _ = self.con(x, trace)
            out = self.neuron(activation)
            if self.con2 is None:
                return out
            activation, _ = self.con2(*out)
            return self.neuron2(activation)

    ref, local = Net(B_TOTAL).to(device), Net(B_LOCAL).to(device)
    with torch.no_grad():
        for name in ref.layers:
            weight = torch.rand(ref.layers[name]["connection"].weight.shape, generator=gen)
            ref.layers[name]["connection"].weight.copy_(weight * 0.5 + 0.25)
            local.layers[name]["connection"].weight.copy_(weight * 0.5 + 0.25)
    in_shape = tuple(ref.input.trace.shape[1:])
    inputs = (torch.rand((STEPS, B_TOTAL) + in_shape, generator=gen) < 0.4).float().to(device)
    rewards = torch.randn(STEPS, B_TOTAL, generator=gen, dtype=torch.float64).float().to(device)
    return ref, local, inputs, rewards


def _rule(name, layers, group):
    from pysnn.learning import MSTDP, MSTDPET, STDP, FedeSTDP, Hebbian, TripletSTDP

    key = dict(process_group=group)
    if name == "triplet":
        return TripletSTDP(layers, 0.02, 0.02, 0.02, 0.01, w_min=0.0, w_max=1.0, **key)
    if name == "hebbian":  # through the settable attribute of LearningRule
        rule = Hebbian(layers, 0.05, decay=0.01, w_min=0.0, w_max=1.0)
        rule.process_group = group
        return rule
    if name == "stdp":
        return STDP(layers, 0.05, 1.0, 0.8, 0.0, 1.0, **key)
    if name == "stdp-multiplicative":
        return STDP(layers, 0.05, 1.0, 0.8, 0.0, 1.0, "multiplicative", **key)
    if name.startswith("mstdpet"):
        per_sample = name.endswith("per-sample")
        return MSTDPET(layers, 1.0, 0.8, 0.05, 0.7, per_sample_reward=per_sample, **key)
    if name.startswith("mstdp"):
        return MSTDP(layers, 1.0, 0.8, 0.05, w_min=0.0, w_max=1.0, **key)
    return FedeSTDP(layers, 0.05, 0.5, 0.5, post_spike_gated=name == "fede-gated", **key)


def _compare(ours, ref):
    """(largest |ours − ref| / largest |ref|, bit-exact)."""
    scale = float(ref.abs().max().clamp(min=1e-30))
    return float((ours.double() - ref.double()).abs().max()) / scale, bool(torch.equal(ours, ref))


def _same_on_all_ranks(tensor, group):
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl":  # NCCL gathers CUDA tensors only
        tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, tensor.contiguous(), group=group)
    return all(torch.equal(g, gathered[0]) for g in gathered)


class _Collectives(dict):
    """Counts of the collectives the rules call (through pysnn.distributed's two entry points),
    while active; :meth:`stop` undoes the wrapping."""

    def __init__(self):
        import pysnn.distributed as module

        super().__init__(all_gather=0, all_reduce=0)
        self.module = module
        self.originals = (module._ALL_GATHER, module.dist.all_reduce)
        module._ALL_GATHER = self._counted("all_gather", self.originals[0])
        module.dist.all_reduce = self._counted("all_reduce", self.originals[1])

    def _counted(self, name, function):
        def wrapper(*args, **kwargs):
            self[name] += 1
            return function(*args, **kwargs)

        return wrapper

    def stop(self):
        self.module._ALL_GATHER, self.module.dist.all_reduce = self.originals


def _run_case(case, rank, group, device):
    name, kind, delay_kind = case.split("/")
    ref, local, inputs, rewards = _networks(kind, delay_kind, device)
    ref_rule, rule = _rule(name, ref.layers, None), _rule(name, local.layers, group)
    names = list(ref.layers)
    weights = [
        (local.layers[n]["connection"].weight, ref.layers[n]["connection"].weight) for n in names
    ]
    start = [w_ref.clone() for _, w_ref in weights]
    part = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    calls = _Collectives()
    per_step = []
    shared = rewards[:, 0].tolist()  # Python numbers, read before the loop
    profiler = torch.profiler.profile()
    for t in range(STEPS):
        if t == 1:  # the first step allocates the scratch buffers; two steps are profiled
            profiler.start()
        elif t == 3:
            profiler.stop()
        before = sum(calls.values())
        for net, learner, x, r in (
            (ref, ref_rule, inputs[t], rewards[t]),
            (local, rule, inputs[t, part], rewards[t, part]),
        ):
            net(x)
            learner.update_state()
            if name.endswith("per-sample"):
                learner.step(r)
            elif name.startswith("mstdp"):
                learner.step(shared[t])  # shared by the batch: the same on each rank
            else:
                learner.step()
        per_step.append(sum(calls.values()) - before)
    calls.stop()
    result = {"collectives_per_step": max(per_step)}
    events = {event.key for event in profiler.key_averages()}
    result["host_reads"] = sorted(events & HOST_READS)
    compared = [_compare(ours, theirs) for ours, theirs in weights]
    result["weight"] = (max(d for d, _ in compared), all(e for _, e in compared))
    result["changed"] = min(float((w - w0).abs().max()) for (_, w), w0 in zip(weights, start))
    result["ranks_equal"] = all(_same_on_all_ranks(w.detach(), group) for w, _ in weights)
    if name.startswith("mstdpet"):
        compared = []
        for n in names:
            e_ref = ref_rule.layers[n]["e_trace"]
            if name.endswith("per-sample"):
                e_ref = e_ref[part]
            compared.append(_compare(rule.layers[n]["e_trace"], e_ref))
        result["e_trace"] = (max(d for d, _ in compared), all(e for _, e in compared))
    return result


def _run_theta(rank, group, device):
    """DiehlCook2015: shared theta (folded at reset_state) and normalised weights, STDP."""
    from pysnn.learning import STDP
    from pysnn.models import DiehlCook2015

    torch.manual_seed(3)
    ref = DiehlCook2015(16, 10, B_TOTAL, thresh=2.0, theta_plus=0.5).to(device)
    local = DiehlCook2015(16, 10, B_LOCAL, thresh=2.0, theta_plus=0.5, process_group=group)
    local = local.to(device)
    with torch.no_grad():
        local.exc.weight.copy_(ref.exc.weight)
    gen = torch.Generator().manual_seed(4)
    rules = [
        STDP(ref.plastic_layers(), 0.05, 1.0, 0.8, 0.0, 1.0),
        STDP(local.plastic_layers(), 0.05, 1.0, 0.8, 0.0, 1.0, process_group=group),
    ]
    part = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    for presentation in range(3):
        inputs = (torch.rand(STEPS, B_TOTAL, 1, 16, generator=gen) < 0.5).float().to(device)
        for model, rule, x in ((ref, rules[0], inputs), (local, rules[1], inputs[:, part])):
            model.reset_state()
            for t in range(STEPS):
                model(x[t])
                rule.update_state()
                rule.step()
                model.normalize()
    ref.eval()
    local.eval()  # folds the last presentation's threshold changes
    return {
        "theta": _compare(local.theta, ref.theta),
        "changed": float(ref.theta.abs().max()),
        "weight": _compare(local.exc.weight, ref.exc.weight),
        "ranks_equal": _same_on_all_ranks(local.theta, group)
        and _same_on_all_ranks(local.exc.weight.detach(), group),
    }


def _run_helpers(rank, group, device):
    """broadcast_parameters, rank_generator, shard, gather_counts."""
    from pysnn.distributed import (
        broadcast_parameters,
        gather_counts,
        rank_generator,
        shard,
        single_process_draws,
        world_size,
    )

    module = torch.nn.Linear(3, 2).to(device)
    with torch.no_grad():
        module.weight.fill_(float(rank))
    broadcast_parameters(module, group)
    counts = torch.arange(6.0, device=device).view(3, 2) + 10 * rank
    gathered = gather_counts(counts, group)
    expected = torch.cat([torch.arange(6.0).view(3, 2) + 10 * r for r in range(WORLD)])
    draws = torch.rand(4, generator=rank_generator(7, group))
    shared = torch.Generator().manual_seed(5)
    with single_process_draws(3, group, shared):
        mine = torch.rand(3, generator=shared)
    after = torch.rand(2, generator=shared)
    alone = torch.rand(3 * WORLD + 2, generator=torch.Generator().manual_seed(5))
    return {
        "broadcast": bool((module.weight == 0).all()),
        "gather": bool(torch.equal(gathered.cpu(), expected)),
        "rank_generator_differs": not _same_on_all_ranks(draws, group),
        "shard": shard(torch.arange(8), group).tolist() == list(range(4 * rank, 4 * rank + 4)),
        "world_size": world_size(group) == WORLD,
        "single_process_draws": torch.equal(mine, alone[3 * rank : 3 * rank + 3])
        and torch.equal(after, alone[3 * WORLD :]),
    }


def worker(rank, world, store, out, backend):
    import torch.distributed as dist

    torch.set_num_threads(1)
    device = torch.device(f"cuda:{rank}" if backend == "nccl" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=30),
    )
    results, started = {}, time.perf_counter()
    try:
        group = dist.group.WORLD
        if os.environ.get("PYSNN_TEST_FAIL_RANK") == str(rank):
            raise RuntimeError(f"rank {rank} fails on purpose")
        for case in CASES:
            results[case] = _run_case(case, rank, group, device)
        results["theta"] = _run_theta(rank, group, device)
        results["helpers"] = _run_helpers(rank, group, device)
        results["seconds"] = time.perf_counter() - started
    except BaseException:
        Path(out).write_text(json.dumps(results))
        raise  # no barrier: the other rank may be in another collective; the caller exits
    Path(out).write_text(json.dumps(results))
    # Both ranks done before either tears gloo down (a rank that destroys its group while the
    # other still talks to it can abort in gloo's threads).
    dist.barrier()
    dist.destroy_process_group()


# -- the tests (the parent process) -------------------------------------------------------------
def _launch_pair(tmp_path, backend, **extra_env):
    """Run the two ranks; return rank 0's and rank 1's reports. Kills both at the first
    failure or at PAIR_TIMEOUT."""
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", PYTHONPATH=str(ROOT), **extra_env)
    env.pop("RANK", None)
    outs = [tmp_path / f"rank{r}.json" for r in range(WORLD)]
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(r), str(WORLD), str(store), str(out)]
            + [backend],
            env=env,
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r, out in enumerate(outs)
    ]
    deadline = time.monotonic() + PAIR_TIMEOUT
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        logs = [p.communicate(timeout=10)[0].decode(errors="replace") for p in procs]
    failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode != 0]
    if failed:
        pytest.fail(f"ranks failed or timed out {failed}:\n" + "\n".join(logs)[-6000:])
    return [json.loads(out.read_text()) for out in outs]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    return _launch_pair(tmp_path_factory.mktemp("gloo"), "gloo")


@pytest.mark.parametrize("case", CASES)
def test_two_ranks_match_one_process_with_the_concatenated_batch(reports, case):
    for rank, report in enumerate(reports):
        result = report[case]
        assert result["changed"] > 1e-4, "the rule barely changed the weights: a weak test"
        assert result["ranks_equal"], f"rank {rank}: the ranks' weights differ"
        assert result["collectives_per_step"] == expected_collectives(case), result
        assert result["host_reads"] == [], "a step read a tensor value back to the host"
        diff, exact = result["weight"]
        if case in ALL_REDUCED:
            assert diff <= RTOL_REDUCED, (rank, diff)
        else:
            assert exact, (rank, diff)
        if "e_trace" in result:
            diff, exact = result["e_trace"]
            # per-sample traces: a batched product over this rank's samples, which MKL may
            # block differently from the reference's larger batch (seen on an AMD EPYC)
            per_sample = case.startswith("mstdpet-per-sample")
            assert diff <= RTOL and (exact or case.endswith("/tensor") or per_sample), (rank, diff)


def test_diehl_cook_theta_and_weights_stay_equal_across_ranks(reports):
    for report in reports:
        result = report["theta"]
        assert result["changed"] > 0
        assert result["ranks_equal"]
        assert result["theta"][1], result["theta"]
        assert result["weight"][1], result["weight"]


def test_helpers(reports):
    for report in reports:
        assert all(report["helpers"].values()), report["helpers"]


def test_a_failing_rank_ends_the_pair_without_waiting_for_the_timeout(tmp_path):
    """Rank 1 fails at once; rank 0 would wait in its first collective (30 s timeout): the
    launcher sees the failure and kills it."""
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="rank 1 fails on purpose"):
        _launch_pair(tmp_path, "gloo", PYSNN_TEST_FAIL_RANK="1")
    assert time.monotonic() - started < 25.0


def test_process_group_needs_an_initialised_default_group():
    import torch.distributed as dist

    from pysnn.learning import STDP
    from pysnn.models import DiehlCook2015

    if dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    ref, _, _, _ = _networks("linear", "int", "cpu")
    with pytest.raises(RuntimeError, match="STDP: process_group was given"):
        STDP(ref.layers, 0.05, 1.0, 0.8, process_group=object())
    with pytest.raises(RuntimeError, match="DiehlCook2015: process_group"):
        DiehlCook2015(4, 3, 2, process_group=object())


def test_process_group_none_is_the_default_and_settable():
    from pysnn.distributed import gather_batch, shard, world_size
    from pysnn.learning import STDP

    ref, _, _, _ = _networks("linear", "int", "cpu")
    rule = STDP(ref.layers, 0.05, 1.0, 0.8)
    assert rule.process_group is None
    rule.process_group = None
    assert world_size() == 1 and torch.equal(shard(torch.arange(4)), torch.arange(4))
    x = torch.ones(2, 3)
    assert gather_batch(x) is x


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="the NCCL test needs 2 GPUs",
)
def test_two_ranks_on_nccl(tmp_path):
    for report in _launch_pair(tmp_path, "nccl"):
        for case in CASES:
            assert report[case]["ranks_equal"], case
            assert report[case]["weight"][0] <= 1e-5, (case, report[case]["weight"])


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    import faulthandler

    faulthandler.enable()  # a crash in a collective prints where it happened
    _rank, _world, _store, _out, _backend = sys.argv[2:7]
    try:
        worker(int(_rank), int(_world), _store, _out, _backend)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    # Skip the interpreter's teardown: torch 2.13's gloo can abort in a C++ destructor at exit
    # ("terminate called without an active exception", about 1 run in 20) after all is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
