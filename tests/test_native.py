"""pysnn.native: the fused C kernels give the same numbers as the eager PyTorch code.

Every equivalence test builds two identical modules, runs one with the fused kernels (the
default) and the other inside ``native.disabled()`` (eager PyTorch) on the same random inputs,
and compares every state buffer bit for bit after every step. A wrapper around the extension
counts its calls, so each test also checks that the fused path was (or was not) taken.
"""

import copy
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch

from pysnn import functional as sf
from pysnn import native
from pysnn.connection import Conv2d, Linear
from pysnn.neuron import AdaptiveLIFNeuron, FedeNeuron, IFNeuron, Input, LIFNeuron
from helpers import (
    addcmul_rounds_once,
    assert_within_split_product_bound,
    leaving_delay_line,
    torch_threads,
)

needs_native = pytest.mark.skipif(
    not native.available(), reason="the extension pysnn._native is not built"
)

B, N = 3, 13  # 39 cells: not a multiple of the vector width
CELLS = (B, 1, N)
STEPS = 30
NEURON_STATE = ("v_cell", "trace", "thresh", "spikes", "refrac_counts")
INPUT_STATE = ("trace", "spikes")
LINEAR_STATE = ("pre_trace", "pre_spikes", "spike_queue", "trace", "spikes")


ADDCMUL_FUSED = {dtype: addcmul_rounds_once(dtype) for dtype in (torch.float32, torch.float64)}


def addcmul_exact_only(dtype):
    """Bit-exact comparison of a multiply-add only where torch's addcmul_ rounds once, as the
    kernel's fma() does; elsewhere the ``*_to_rounding`` tests compare these paths."""
    return pytest.mark.skipif(
        not ADDCMUL_FUSED[dtype],
        reason="torch's addcmul_ rounds twice on this CPU, the kernel's fma() once",
    )


# -- fixtures and helpers ---------------------------------------------------------------------
@pytest.fixture(autouse=True)
def native_on():
    """Each test starts with the kernels on (where built), whatever PYSNN_NATIVE says."""
    previous = native.enabled()
    if native.available():
        native.set_enabled(True)
    yield
    native._enabled = previous


class CountingExtension:
    """Stands in for ``pysnn._native`` and counts the calls of each kernel."""

    def __init__(self, extension):
        self._extension = extension
        self.calls = Counter()

    def __getattr__(self, name):
        kernel = getattr(self._extension, name)

        def counted(*args):
            self.calls[name] += 1
            result = kernel(*args)
            if result is True:  # e.g. spike_ingest and ingest_product when they took the step
                self.calls[name + ":done"] += 1
            return result

        return counted


def linear_steps(calls) -> int:
    """The Linear steps the kernels took: ``ingest`` alone, or the product with the presynaptic
    step (``spike_ingest`` or ``ingest_product`` where they took it)."""
    return calls["ingest"] + calls["spike_ingest:done"] + calls["ingest_product:done"]


@pytest.fixture
def calls(monkeypatch):
    """Counter of the kernel calls made during the test (``calls["neuron_step"]`` ...)."""
    counting = CountingExtension(native._extension)
    monkeypatch.setattr(native, "_extension", counting)
    return counting.calls


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def uniform(gen, low, high, shape, dtype=torch.float32):
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=dtype)


def describe_mismatch(got, expected):
    """Where two tensors first differ, with full-precision values."""
    differs = (got != expected).nonzero()
    if differs.numel() == 0:
        return "no elementwise difference"
    index = tuple(differs[0].tolist())
    return (
        f"{differs.shape[0]} elements differ, first at {index}: native "
        f"{got[index].item()!r} vs eager {expected[index].item()!r}"
    )


def assert_same(got, expected, what):
    assert got.dtype == expected.dtype, what
    assert got.shape == expected.shape, what
    assert torch.equal(got, expected), f"{what}: {describe_mismatch(got, expected)}"


def assert_same_state(native_module, eager_module, names, step=None):
    for name in names:
        got, expected = getattr(native_module, name), getattr(eager_module, name)
        assert_same(got, expected, f"step {step}: {name}")


def neuron_params(kind, update_type, per_cell, cells=CELLS, seed=1, thresh_per_cell=None):
    """Constructor parameters: one value for all cells, or a random value per cell."""
    gen = generator(seed)
    linear = update_type == "linear"
    thresh_per_cell = per_cell if thresh_per_cell is None else thresh_per_cell

    def value(scalar, low, high, random=per_cell):
        return uniform(gen, low, high, cells, torch.float64) if random else scalar

    params = {
        "thresh": value(1.0, 0.8, 1.2, thresh_per_cell),
        "v_rest": -0.125,
        "alpha_v": value(1.25, 1.0, 1.5),
        "alpha_t": value(0.75, 0.5, 1.5),
        "tau_v": value(0.8, 0.6, 0.95) if linear else value(3.0, 2.0, 6.0),
        "tau_t": value(0.7, 0.5, 0.9) if linear else value(4.0, 2.0, 8.0),
        "alpha_thresh": value(0.25, 0.1, 0.4),
        "tau_thresh": value(0.9, 0.8, 0.99) if linear else value(6.0, 4.0, 9.0),
    }
    if kind == "adaptive_relax":
        params["alpha_thresh"] = value(0.1, 0.05, 0.15)
    return params


def make_neuron(kind, update_type="linear", per_cell=False, refrac_steps=0, dt=0.5, **kwargs):
    """An IF, LIF or adaptive LIF neuron (``kind`` "if", "lif", "adaptive", "adaptive_relax")."""
    cells = kwargs.pop("cells", CELLS)
    cls = kwargs.pop("cls", None)
    p = neuron_params(kind, update_type, per_cell, cells, **kwargs)
    common = (cells, p["thresh"], p["v_rest"], p["alpha_v"], p["alpha_t"], dt)
    duration_refrac = refrac_steps * dt
    if kind == "if":
        return (cls or IFNeuron)(*common, duration_refrac, p["tau_t"], update_type)
    if kind == "lif":
        return (cls or LIFNeuron)(*common, duration_refrac, p["tau_v"], p["tau_t"], update_type)
    return (cls or AdaptiveLIFNeuron)(
        *common,
        duration_refrac,
        p["tau_v"],
        p["tau_t"],
        p["alpha_thresh"],
        p["tau_thresh"],
        update_type,
        relax_to_center=kind == "adaptive_relax",
    )


def neuron_input(gen, layout, dtype, cells=CELLS):
    """Random input currents ``cells + (R,)`` in one of several memory layouts."""
    b, rest = cells[0], cells[1:]
    n = 1
    for size in rest:
        n *= size
    if layout == "contiguous":
        return uniform(gen, -0.3, 1.6, cells + (1,), dtype)
    if layout == "transposed":  # e.g. the (B, O) transpose of W @ xT
        x = uniform(gen, -0.3, 1.6, (n, b), dtype).t().reshape(cells + (1,))
        assert not x.is_contiguous()
        return x
    if layout == "fan_in":  # summed over R=3 by the neuron
        return uniform(gen, -0.1, 0.55, cells + (3,), dtype)
    if layout == "strided":  # every other element of a wider tensor
        x = uniform(gen, -0.3, 1.6, cells[:-1] + (2 * cells[-1], 1), dtype)[..., ::2, :]
        assert not x.is_contiguous()
        return x
    if layout == "expanded":  # the same current for every batch element, full shape
        x = uniform(gen, -0.3, 1.6, (1,) + rest + (1,), dtype).expand(cells + (1,))
        assert not x.is_contiguous()
        return x
    raise ValueError(layout)


def assert_close_state(native_module, eager_module, names, step=None):
    """Floating-point state equal to rounding (rtol 1e-6, atol 1e-7); the rest bit for bit."""
    for name in names:
        got, expected = getattr(native_module, name), getattr(eager_module, name)
        if got.is_floating_point():
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7, msg=f"{step} {name}")
        else:
            assert_same(got, expected, f"step {step}: {name}")


def run_neuron_pair(native_neuron, eager_neuron, make_x, steps=STEPS, close=False):
    """Step both neurons on the same inputs; compare outputs and state after every step.

    :param close: compare floating-point state to rounding instead of bit for bit.
    :returns: the number of spikes fired over the run.
    """
    fired = 0
    for step in range(steps):
        x = make_x(step)
        spikes, trace = native_neuron(x)
        with native.disabled():
            exp_spikes, exp_trace = eager_neuron(x)
        assert_same(spikes, exp_spikes, f"step {step}: returned spikes")
        if close:
            torch.testing.assert_close(trace, exp_trace, rtol=1e-6, atol=1e-7)
            assert_close_state(native_neuron, eager_neuron, NEURON_STATE, step)
        else:
            assert_same(trace, exp_trace, f"step {step}: returned trace")
            assert_same_state(native_neuron, eager_neuron, NEURON_STATE, step)
        fired += int(exp_spikes.sum())
    return fired


# -- switches -----------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", [1, 0, None, "yes", 1.0])
def test_set_enabled_rejects_non_bool(flag):
    before = native.enabled()
    with pytest.raises(TypeError, match="bool"):
        native.set_enabled(flag)
    assert native.enabled() is before


def test_set_enabled_true_without_extension_raises(monkeypatch):
    monkeypatch.setattr(native, "_extension", None)
    monkeypatch.setattr(native, "_enabled", False)
    assert not native.available()
    with pytest.raises(RuntimeError, match="not built"):
        native.set_enabled(True)
    assert native.enabled() is False
    native.set_enabled(False)  # switching off is always allowed
    with native.disabled():
        assert native.enabled() is False
    assert native.enabled() is False


def test_disabled_keeps_a_disabled_state_after_an_exception():
    native.set_enabled(False)
    with pytest.raises(ValueError):
        with native.disabled():
            assert native.enabled() is False
            raise ValueError("inside")
    assert native.enabled() is False


@needs_native
def test_disabled_restores_enabled_after_exception_and_nests():
    assert native.enabled() is True
    with pytest.raises(KeyError):
        with native.disabled():
            assert native.enabled() is False
            with native.disabled():
                assert native.enabled() is False
            assert native.enabled() is False
            raise KeyError("inside")
    assert native.enabled() is True
    native.set_enabled(False)
    assert native.enabled() is False
    native.set_enabled(True)
    assert native.enabled() is True


@needs_native
def test_environment_variable_decides_the_default():
    """Without PYSNN_NATIVE the kernels are on where built; PYSNN_NATIVE=0 switches them off."""
    env = {k: v for k, v in os.environ.items() if k != "PYSNN_NATIVE"}
    code = (
        "import importlib, os; import pysnn.native as n; "
        "print(n.available(), n.enabled()); "
        "os.environ['PYSNN_NATIVE'] = '0'; importlib.reload(n); print(n.enabled())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "True", "False"]


# -- Input ----------------------------------------------------------------------------------------
def make_input(update_type, per_cell, cells=CELLS, dt=0.5):
    gen = generator(2)
    if per_cell:
        alpha_t = uniform(gen, 0.5, 1.5, cells, torch.float64)
        if update_type == "linear":
            tau_t = uniform(gen, 0.5, 0.95, cells, torch.float64)
        else:
            tau_t = uniform(gen, 2.0, 8.0, cells, torch.float64)
    else:
        alpha_t, tau_t = 0.75, (0.8 if update_type == "linear" else 3.0)
    return Input(cells, dt, alpha_t, tau_t, update_type)


def input_spikes(gen, graded, dtype, cells=CELLS):
    mask = torch.rand(cells, generator=gen) < 0.3
    if not graded:
        return mask
    # graded input: 0, or 0.5 .. 2.5 (the trace takes the value as given)
    return mask.to(dtype) * uniform(gen, 0.5, 2.5, cells, dtype)


def run_input_pair(native_input, eager_input, make_x, steps=STEPS):
    for step in range(steps):
        x = make_x(step)
        out, trace = native_input(x)
        with native.disabled():
            exp_out, exp_trace = eager_input(x)
        assert out is x and exp_out is x
        assert trace is native_input.trace
        assert_same(trace, exp_trace, f"step {step}: trace")
        assert_same_state(native_input, eager_input, INPUT_STATE, step)


INPUT_CASES = [
    pytest.param(
        update_type,
        graded,
        per_cell,
        dtype,
        marks=[addcmul_exact_only(dtype)] if graded and update_type == "linear" else [],
        id="-".join(
            [
                update_type,
                "graded" if graded else "bool",
                "per_cell" if per_cell else "scalar",
                str(dtype)[6:],
            ]
        ),
    )
    for update_type in ["linear", "exponential"]
    for graded in [False, True]
    for per_cell in [False, True]
    for dtype in [torch.float32, torch.float64]
]


@needs_native
@pytest.mark.parametrize("update_type, graded, per_cell, dtype", INPUT_CASES)
def test_input_matches_eager(calls, update_type, graded, per_cell, dtype):
    a = make_input(update_type, per_cell).to(dtype)
    b = make_input(update_type, per_cell).to(dtype)
    gen = generator(3)
    run_input_pair(a, b, lambda _: input_spikes(gen, graded, dtype))
    assert calls["input_step"] == STEPS
    assert float(a.trace.abs().sum()) > 0


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("per_cell", [False, True], ids=["scalar", "per_cell"])
def test_input_linear_graded_matches_eager_to_rounding(calls, per_cell, dtype):
    """Linear trace update of a graded input, to rounding: eager ``trace.addcmul_(alpha_t, x)``
    rounds once where the CPU has FMA (as the kernel's fma() does) and twice elsewhere; the
    bit-exact check is in test_input_matches_eager, where torch fuses."""
    a = make_input("linear", per_cell).to(dtype)
    b = make_input("linear", per_cell).to(dtype)
    gen = generator(3)
    for step in range(STEPS):
        x = input_spikes(gen, True, dtype)
        out, trace = a(x)
        with native.disabled():
            _, exp_trace = b(x)
        assert out is x
        torch.testing.assert_close(trace, exp_trace, rtol=1e-6, atol=1e-7)
        assert_same(a.spikes, b.spikes, f"step {step}: spikes")
    assert calls["input_step"] == STEPS


# -- IF / LIF / adaptive LIF ----------------------------------------------------------------------
KINDS = ["if", "lif", "adaptive", "adaptive_relax"]


NEURON_CASES = [
    pytest.param(
        kind,
        update_type,
        per_cell,
        refrac_steps,
        dtype,
        layout,
        marks=[addcmul_exact_only(dtype)] if update_type == "linear" and kind != "if" else [],
        id="-".join(
            [
                kind,
                update_type,
                "per_cell" if per_cell else "scalar",
                f"refrac{refrac_steps}",
                str(dtype)[6:],
                layout,
            ]
        ),
    )
    for kind in KINDS
    for update_type in ["linear", "exponential"]
    for per_cell in [False, True]
    for refrac_steps in [0, 2]
    for dtype in [torch.float32, torch.float64]
    # both layouts for every kernel variant (the layout only changes how the input is read)
    for layout in [["contiguous", "transposed"][(refrac_steps == 2) ^ (dtype == torch.float64)]]
]


@needs_native
@pytest.mark.parametrize("kind, update_type, per_cell, refrac_steps, dtype, layout", NEURON_CASES)
def test_neuron_matches_eager(calls, kind, update_type, per_cell, refrac_steps, dtype, layout):
    a = make_neuron(kind, update_type, per_cell, refrac_steps).to(dtype)
    b = make_neuron(kind, update_type, per_cell, refrac_steps).to(dtype)
    gen = generator(4)
    fired = run_neuron_pair(a, b, lambda _: neuron_input(gen, layout, dtype))
    assert calls["neuron_step"] == STEPS
    # the comparison means something only if cells both spiked and stayed silent
    assert 0 < fired < STEPS * a.v_cell.numel()


@needs_native
@pytest.mark.parametrize(
    "update_type",
    [pytest.param("linear", marks=addcmul_exact_only(torch.float32)), "exponential"],
)
@pytest.mark.parametrize("kind", ["lif", "adaptive", "adaptive_relax"])
def test_neuron_per_cell_threshold_only(calls, kind, update_type):
    """A per-cell threshold (and threshold centre) with every other parameter uniform."""
    a = make_neuron(kind, update_type, False, 1, thresh_per_cell=True)
    b = make_neuron(kind, update_type, False, 1, thresh_per_cell=True)
    assert a.thresh_center.shape == CELLS
    gen = generator(5)
    fired = run_neuron_pair(a, b, lambda _: neuron_input(gen, "contiguous", torch.float32))
    assert calls["neuron_step"] == STEPS
    assert 0 < fired < STEPS * B * N


@needs_native
@pytest.mark.parametrize(
    "refrac_steps, dtype", [(0, torch.float32), (2, torch.float64)], ids=["f32", "f64-refrac"]
)
@pytest.mark.parametrize("per_cell", [False, True], ids=["scalar", "per_cell"])
@pytest.mark.parametrize("kind", ["lif", "adaptive", "adaptive_relax"])
def test_linear_lif_matches_eager_to_rounding(calls, kind, per_cell, refrac_steps, dtype):
    """The linear LIF voltage update: equal to rounding, spikes and counters exactly.

    Eager PyTorch computes ``v.addcmul_(alpha_v, current)``, a fused multiply-add on CPUs with
    FMA (the kernel calls fma()), separately rounded elsewhere, so v_cell may differ in the last
    bit on such CPUs (the bit-exact check is in test_neuron_matches_eager, where torch fuses).
    Everything else of the step is checked here.
    """
    a = make_neuron(kind, "linear", per_cell, refrac_steps).to(dtype)
    b = make_neuron(kind, "linear", per_cell, refrac_steps).to(dtype)
    gen = generator(4)
    fired = run_neuron_pair(a, b, lambda _: neuron_input(gen, "transposed", dtype), close=True)
    assert calls["neuron_step"] == STEPS
    assert 0 < fired < STEPS * a.v_cell.numel()


@needs_native
@pytest.mark.parametrize("per_cell", [False, True], ids=["scalar", "per_cell"])
@pytest.mark.parametrize("kind", ["lif", "adaptive"])
def test_linear_lif_bit_exact_when_products_are_exact(calls, kind, per_cell):
    """With alpha_v = 1 the product alpha_v * current is exact, so FMA or not, every bit agrees."""

    def make():
        neuron = make_neuron(kind, "linear", per_cell, 1)
        neuron.alpha_v.fill_(1.0)
        return neuron

    a, b = make(), make()
    gen = generator(40)
    fired = run_neuron_pair(a, b, lambda _: neuron_input(gen, "transposed", torch.float32))
    assert calls["neuron_step"] == STEPS
    assert 0 < fired < STEPS * a.v_cell.numel()


@needs_native
@pytest.mark.parametrize("layout", ["fan_in", "strided", "expanded"])
@pytest.mark.parametrize("kind", KINDS)
def test_neuron_other_layouts_and_conv_shape(calls, kind, layout):
    """Summed fan-in, strided and broadcast (full-shape) inputs on a (B, C, H, W) population."""
    cells = (2, 2, 3, 4)
    a = make_neuron(kind, "exponential", True, 1, cells=cells)
    b = make_neuron(kind, "exponential", True, 1, cells=cells)
    gen = generator(6)
    fired = run_neuron_pair(a, b, lambda _: neuron_input(gen, layout, torch.float32, cells))
    assert calls["neuron_step"] == STEPS
    assert 0 < fired < STEPS * a.v_cell.numel()


@needs_native
def test_neuron_list_input_matches_eager(calls):
    """A list of inputs (two incoming connections) is concatenated then summed."""
    a = make_neuron("lif", "exponential", True, 1)
    b = make_neuron("lif", "exponential", True, 1)
    gen = generator(7)

    def make_x(_):
        return [uniform(gen, -0.1, 0.8, CELLS + (2,)), uniform(gen, -0.1, 0.8, CELLS + (1,))]

    assert 0 < run_neuron_pair(a, b, make_x) < STEPS * B * N
    assert calls["neuron_step"] == STEPS


@needs_native
def test_neuron_store_trace_history_matches_eager(calls):
    a = LIFNeuron(CELLS, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.7, store_trace=True)
    b = LIFNeuron(CELLS, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.7, store_trace=True)
    gen = generator(8)
    run_neuron_pair(a, b, lambda _: neuron_input(gen, "contiguous", torch.float32), steps=70)
    assert calls["neuron_step"] == 70
    assert_same(a.complete_trace, b.complete_trace, "complete_trace")
    assert a.complete_trace.shape[-1] == 71


@needs_native
def test_switching_between_native_and_eager_mid_run(calls):
    """Steps may alternate between the kernels and the eager code on one module."""
    a = make_neuron("adaptive_relax", "exponential", True, 2)
    b = make_neuron("adaptive_relax", "exponential", True, 2)
    gen = generator(9)
    for step in range(STEPS):
        x = neuron_input(gen, "transposed", torch.float32)
        if step % 3 == 0:
            with native.disabled():
                spikes, _ = a(x)
        else:
            spikes, _ = a(x)
        with native.disabled():
            exp_spikes, _ = b(x)
        assert_same(spikes, exp_spikes, f"step {step}: spikes")
        assert_same_state(a, b, NEURON_STATE, step)
    assert calls["neuron_step"] == STEPS - len(range(0, STEPS, 3))


# -- Linear ---------------------------------------------------------------------------------------
IN, OUT = 37, 11


def make_linear(delay, reduction, seed=10, in_features=IN, out_features=OUT, batch=B):
    torch.manual_seed(seed)  # the constructor draws the weights from the global generator
    return Linear(in_features, out_features, batch, 1.0, delay, reduction=reduction)


def linear_inputs(gen, graded, dtype, batch=B, in_features=IN):
    shape = (batch, 1, in_features)
    mask = torch.rand(shape, generator=gen) < 0.3
    x = mask.to(dtype) * uniform(gen, 0.5, 2.0, shape, dtype) if graded else mask
    return x, uniform(gen, 0.0, 3.0, shape, dtype)


def compare_linear_outputs(out, expected, step, split=None):
    """The same activation and trace bit for bit; where ``split = (weight, arriving)`` is
    given (a "sum" product that two threads may split, ``arriving`` the input reaching the
    synapses), the activation within the split product's rounding bound."""
    activation, trace = out
    exp_activation, exp_trace = expected
    if split is not None:
        assert_within_split_product_bound(
            activation, exp_activation, *split, f"step {step}: activation"
        )
    else:
        assert_same(activation, exp_activation, f"step {step}: activation")
    # both backends sum each sample's traces by functional.pairwise_sum
    assert_same(trace, exp_trace, f"step {step}: trace")


def run_linear_pair(a, b, make_inputs, reduction, steps=STEPS):
    assert torch.equal(a.weight, b.weight)
    for step in range(steps):
        x, trace_in = make_inputs(step)
        arriving = leaving_delay_line(a, x)
        # the "sum" outputs of the kernel path are live buffers: clone before the next step
        out = tuple(t.clone() for t in a(x, trace_in))
        with native.disabled():
            expected = b(x, trace_in)
        threaded = reduction == "sum" and torch.get_num_threads() > 1
        split = (a.weight, arriving) if threaded else None
        compare_linear_outputs(out, expected, step, split)
        assert_same_state(a, b, LINEAR_STATE, step)
        assert a._cursor == b._cursor


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("graded", [False, True], ids=["bool", "graded"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("delay", [0, 3])
def test_linear_matches_eager(calls, delay, reduction, graded, dtype):
    a = make_linear(delay, reduction).to(dtype)
    b = make_linear(delay, reduction).to(dtype)
    gen = generator(11)
    run_linear_pair(a, b, lambda _: linear_inputs(gen, graded, dtype), reduction)
    assert linear_steps(calls) == STEPS
    if delay:
        assert bool(a.spike_queue.any())


@needs_native
def test_linear_delay_line_is_exact(calls):
    """A spike entering at step t leaves at step t + delay through the fused path."""
    conn = make_linear(3, "sum", in_features=1, out_features=1, batch=1)
    conn.weight.data.fill_(1.0)
    zeros = torch.zeros(1, 1, 1)
    got = []
    for step in range(8):
        activation, _ = conn(torch.full((1, 1, 1), step == 2), zeros)
        got.append(float(activation))
    assert got == [0, 0, 0, 0, 0, 1, 0, 0]
    assert linear_steps(calls) == 8


# -- a whole chain --------------------------------------------------------------------------------
def make_chain(reduction="sum", delay=2, seed=12):
    inp = Input((B, 1, IN), 1.0, 0.5, 0.8, "linear")
    conn = make_linear(delay, reduction, seed=seed)
    conn.reset_weights("neuron_scaled_uniform")
    # alpha_v = 1: the linear voltage update is then exact with or without FMA (see above)
    neuron = AdaptiveLIFNeuron(
        (B, 1, OUT), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.8, 0.7, 0.2, 0.9, relax_to_center=True
    )
    return inp, conn, neuron


def chain_step(chain, x):
    """One step of Input -> Linear -> neuron; copies of everything returned."""
    inp, conn, neuron = chain
    spikes, trace = inp(x)
    activation, pre_trace = conn(spikes, trace)
    # the "sum" outputs of the kernel path are live buffers: copy them before the next step
    activation, pre_trace = activation.clone(), pre_trace.clone()
    out_spikes, out_trace = neuron(activation)
    return spikes, trace.clone(), activation, pre_trace, out_spikes, out_trace.clone()


def assert_same_chain(a, b, step):
    assert_same_state(a[0], b[0], INPUT_STATE, step)
    assert_same_state(a[1], b[1], LINEAR_STATE, step)
    assert_same_state(a[2], b[2], NEURON_STATE, step)
    assert a[1]._cursor == b[1]._cursor


def run_chain_pair(a, b, gen, steps):
    fired = 0
    for step in range(steps):
        x = torch.rand((B, 1, IN), generator=gen) < 0.3
        got = chain_step(a, x)
        with native.disabled():
            expected = chain_step(b, x)
        assert_same(got[0], expected[0], f"step {step}: input spikes")
        assert_same(got[1], expected[1], f"step {step}: input trace")
        compare_linear_outputs(got[2:4], expected[2:4], step)
        assert_same(got[4], expected[4], f"step {step}: neuron spikes")
        assert_same(got[5], expected[5], f"step {step}: neuron trace")
        assert_same_chain(a, b, step)
        fired += int(expected[4].sum())
    return fired


@needs_native
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_input_linear_lif_chain_matches_eager(calls, reduction):
    a, b = make_chain(reduction), make_chain(reduction)
    fired = run_chain_pair(a, b, generator(13), STEPS)
    assert 0 < fired < STEPS * B * OUT
    assert calls["input_step"] == linear_steps(calls) == calls["neuron_step"] == STEPS


def make_trained_chain(rule_name, reduction):
    """A chain with a rule attached (the layer dict PySNN rules take, built by hand)."""
    from collections import OrderedDict

    from pysnn.learning import MSTDP, MSTDPET, STDP

    chain = make_chain(reduction)
    _, conn, neuron = chain
    layers = OrderedDict(fc={"connection": conn, "neuron": neuron, "type": "linear"})
    rule = {
        "stdp": lambda: STDP(layers, 0.05, 1.0, 0.8, 0.0, 1.0),
        "stdp_soft": lambda: STDP(layers, 0.05, 1.0, 0.8, 0.0, 1.0, "multiplicative"),
        "mstdp": lambda: MSTDP(layers, 1.0, 0.8, 0.05),
        "mstdpet": lambda: MSTDPET(layers, 1.0, 0.8, 0.05, 0.5),
    }[rule_name]()
    return chain, rule


@needs_native
@pytest.mark.parametrize("rule_name", ["stdp", "stdp_soft", "mstdp", "mstdpet"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_learning_rules_match_eager(calls, rule_name, reduction):
    """The rules' fused factor stacking gives the eager weights, bit for bit, over 30 steps of
    learning with rewards of both signs."""
    (chain_a, rule_a), (chain_b, rule_b) = (
        make_trained_chain(rule_name, reduction) for _ in range(2)
    )
    gen = generator(21)
    for step in range(STEPS):
        x = torch.rand((B, 1, IN), generator=gen) < 0.3
        reward = float(torch.randn((), generator=gen))
        arguments = () if rule_name.startswith("stdp") else (reward,)
        chain_step(chain_a, x)
        rule_a.update_state()
        rule_a.step(*arguments)
        with native.disabled():
            chain_step(chain_b, x)
            rule_b.update_state()
            rule_b.step(*arguments)
        assert_same(chain_a[1].weight, chain_b[1].weight, f"step {step}: weight")
    assert not torch.equal(chain_a[1].weight, make_chain(reduction)[1].weight)  # it learned
    assert calls["stack_terms"] == (2 if rule_name == "stdp_soft" else 1) * STEPS


@needs_native
def test_input_linear_lif_chain_float64(calls):
    a = [m.double() for m in make_chain("sum", 0)]
    b = [m.double() for m in make_chain("sum", 0)]
    fired = run_chain_pair(a, b, generator(14), STEPS)
    assert 0 < fired < STEPS * B * OUT
    assert calls["input_step"] == linear_steps(calls) == calls["neuron_step"] == STEPS


# -- the fused path is not taken where it does not apply ----------------------------------------
class MyLIF(LIFNeuron):
    """A user subclass that overrides a step method: it runs the eager code."""

    def update_voltage(self, x):
        super().update_voltage(x)


class MyInput(Input):
    def convert_input(self, x):
        return super().convert_input(x)


class MyLinear(Linear):
    def convert_spikes(self, x):
        return super().convert_spikes(x)


@needs_native
def test_subclasses_run_eager(calls):
    a = make_neuron("lif", "linear", True, 1, cls=MyLIF)
    b = make_neuron("lif", "linear", True, 1, cls=MyLIF)
    gen = generator(15)
    assert 0 < run_neuron_pair(a, b, lambda _: neuron_input(gen, "contiguous", torch.float32))
    assert calls["neuron_step"] == 0

    inp_a, inp_b = MyInput(CELLS, 1.0, 0.5, 0.8), MyInput(CELLS, 1.0, 0.5, 0.8)
    run_input_pair(inp_a, inp_b, lambda _: input_spikes(gen, False, torch.float32))
    assert calls["input_step"] == 0

    torch.manual_seed(0)
    lin_a = MyLinear(IN, OUT, B, 1.0, 1, reduction="sum")
    torch.manual_seed(0)
    lin_b = MyLinear(IN, OUT, B, 1.0, 1, reduction="sum")
    run_linear_pair(lin_a, lin_b, lambda _: linear_inputs(gen, False, torch.float32), "sum")
    assert calls["ingest"] == 0


@needs_native
def test_subclass_result_equals_fused_result(calls):
    """The eager subclass and the fused exact class agree step by step."""

    def update_thresh(self, spikes):
        AdaptiveLIFNeuron.update_thresh(self, spikes)

    sub_class = type("Sub", (AdaptiveLIFNeuron,), {"update_thresh": update_thresh})
    sub = make_neuron("adaptive", "exponential", True, 2, cls=sub_class)
    exact = make_neuron("adaptive", "exponential", True, 2)
    gen = generator(16)
    for step in range(STEPS):
        x = neuron_input(gen, "transposed", torch.float32)
        assert_same(exact(x)[0], sub(x)[0], f"step {step}")
        assert_same_state(exact, sub, NEURON_STATE, step)
    assert calls["neuron_step"] == STEPS


@needs_native
def test_fede_neuron_runs_eager(calls):
    def make():
        return FedeNeuron(CELLS, 1.0, 0.0, 1.0, 1.0, 0.5, 1.0, 3.0, 4.0)

    a, b = make(), make()
    gen = generator(17)
    for step in range(STEPS):
        x = uniform(gen, 0.0, 0.6, CELLS + (3,))
        pre = uniform(gen, 0.0, 0.1, CELLS + (3,))
        spikes, trace = a(x, pre)
        with native.disabled():
            exp_spikes, exp_trace = b(x, pre)
        assert_same(spikes, exp_spikes, f"step {step}")
        assert_same_state(a, b, NEURON_STATE, step)
    assert calls["neuron_step"] == 0


@needs_native
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_conv2d_runs_eager(calls, reduction):
    def make():
        torch.manual_seed(18)
        return Conv2d(2, 3, 3, (5, 5), 2, 1.0, 1, padding=1, reduction=reduction)

    a, b = make(), make()
    gen = generator(19)
    for step in range(10):
        x = torch.rand((2, 2, 5, 5), generator=gen) < 0.3
        trace_in = torch.rand((2, 2, 5, 5), generator=gen)
        got = a(x, trace_in)
        with native.disabled():
            expected = b(x, trace_in)
        assert_same(got[0], expected[0], f"step {step}: activation")
        assert_same(got[1], expected[1], f"step {step}: trace")
    assert calls["ingest"] == 0


@needs_native
def test_float16_runs_eager(calls):
    a = make_neuron("lif", "linear", False, 1).half()
    b = make_neuron("lif", "linear", False, 1).half()
    gen = generator(20)
    run_neuron_pair(a, b, lambda _: neuron_input(gen, "contiguous", torch.float16), steps=10)
    inp_a, inp_b = make_input("linear", False).half(), make_input("linear", False).half()
    run_input_pair(inp_a, inp_b, lambda _: input_spikes(gen, True, torch.float16), steps=10)
    lin_a, lin_b = make_linear(1, "none").half(), make_linear(1, "none").half()
    run_linear_pair(
        lin_a, lin_b, lambda _: linear_inputs(gen, False, torch.float16), "none", steps=10
    )
    assert sum(calls.values()) == 0


@needs_native
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_linear_per_synapse_delay_runs_eager(calls, reduction):
    delays = torch.randint(0, 3, (OUT, IN), generator=generator(21))
    a, b = make_linear(delays, reduction), make_linear(delays, reduction)
    gen = generator(22)
    run_linear_pair(a, b, lambda _: linear_inputs(gen, False, torch.float32), reduction)
    assert calls["ingest"] == 0


@needs_native
def test_input_requiring_grad_under_no_grad_matches_eager(calls):
    """Under no_grad, inputs that require a gradient grow no graph: the kernels run them and
    the numbers are those of the eager code."""
    inp, inp_ref = make_input("linear", True), make_input("linear", True)
    neuron, neuron_ref = make_neuron("lif", "exponential"), make_neuron("lif", "exponential")
    lin, lin_ref = make_linear(1, "sum"), make_linear(1, "sum")
    gen = generator(23)
    with torch.no_grad():
        for step in range(STEPS):
            x = input_spikes(gen, True, torch.float32).requires_grad_()
            current = neuron_input(gen, "contiguous", torch.float32).requires_grad_()
            spikes_in, trace_in = linear_inputs(gen, True, torch.float32)
            spikes_in.requires_grad_()
            _, trace = inp(x)
            spikes, _ = neuron(current)
            activation, _ = lin(spikes_in, trace_in)
            with native.disabled():
                _, exp_trace = inp_ref(x)
                exp_spikes, _ = neuron_ref(current)
                exp_activation, _ = lin_ref(spikes_in, trace_in)
            assert_same(trace, exp_trace, f"step {step}: input trace")
            assert_same(spikes, exp_spikes, f"step {step}: spikes")
            assert_same(activation, exp_activation, f"step {step}: activation")
            assert_same_state(neuron, neuron_ref, NEURON_STATE, step)
            assert_same_state(lin, lin_ref, LINEAR_STATE, step)
    assert calls["neuron_step"] == STEPS and calls["input_step"] == STEPS
    # the same modules take the fused path with inputs that need no gradient
    inp(input_spikes(gen, True, torch.float32))
    neuron(neuron_input(gen, "contiguous", torch.float32))
    lin(*linear_inputs(gen, True, torch.float32))
    assert calls["input_step"] == calls["neuron_step"] == STEPS + 1


@needs_native
def test_broadcast_and_noncontiguous_input_run_eager(calls):
    """An Input given one row for the whole batch, or a transposed view, uses the eager code."""
    a, b = make_input("exponential", True), make_input("exponential", True)
    gen = generator(24)
    run_input_pair(a, b, lambda _: torch.rand((1, 1, N), generator=gen) < 0.4)
    assert calls["input_step"] == 0
    run_input_pair(a, b, lambda _: uniform(gen, 0.0, 2.0, (N, 1, B)).permute(2, 1, 0), steps=STEPS)
    assert calls["input_step"] == 0
    run_input_pair(a, b, lambda _: input_spikes(gen, False, torch.float32), steps=5)
    assert calls["input_step"] == 5  # the same module takes the fused path again


@needs_native
def test_broadcast_neuron_input_runs_eager(calls):
    a, b = make_neuron("if", "linear", True, 1), make_neuron("if", "linear", True, 1)
    gen = generator(25)
    run_neuron_pair(a, b, lambda _: uniform(gen, -0.3, 1.6, (1, 1, N, 1)))
    assert calls["neuron_step"] == 0


@needs_native
def test_broadcast_threshold_center_runs_eager(calls):
    """relax_to_center with a per-neuron threshold of shape (N,): the centre only broadcasts."""

    def make():
        thresh = uniform(generator(26), 0.8, 1.2, (N,), torch.float64)
        return AdaptiveLIFNeuron(
            CELLS,
            thresh,
            0.0,
            1.0,
            1.0,
            0.5,
            1.0,
            3.0,
            4.0,
            0.1,
            6.0,
            "exponential",
            relax_to_center=True,
        )

    a, b = make(), make()
    gen = generator(27)
    assert 0 < run_neuron_pair(a, b, lambda _: neuron_input(gen, "contiguous", torch.float32))
    assert calls["neuron_step"] == 0


@needs_native
def test_mismatched_input_dtype_runs_eager(calls):
    """A float64 graded input into a float32 Input: the kernel does not read it."""
    a, b = make_input("linear", True), make_input("linear", True)
    gen = generator(28)
    run_input_pair(a, b, lambda _: input_spikes(gen, True, torch.float64))
    assert calls["input_step"] == 0


# -- cached plans follow parameter changes --------------------------------------------------------
def run_with_change(a, b, change, gen, steps=(12, 20)):
    """Run both, apply ``change`` to each, run on; returns the spikes fired after the change."""

    def make_x(_):
        return neuron_input(gen, "contiguous", a.v_cell.dtype)

    run_neuron_pair(a, b, make_x, steps=steps[0])
    change(a)
    change(b)
    return run_neuron_pair(a, b, make_x, steps=steps[1])


def set_item(name, index, value):
    def change(module):
        getattr(module, name)[index] = value

    return change


def load_tau_v(module):
    module.load_state_dict({"tau_v": torch.full(CELLS, 1.5)}, strict=False)


# (The exponential update is used so that only the plan is tested, not the FMA rounding of the
# linear voltage update; IF has no voltage product and runs linear.)
PLAN_CHANGES = {
    "tau_v_fill": ("lif", lambda m: m.tau_v.fill_(1.5)),
    "alpha_v_item": ("lif", set_item("alpha_v", (0, 0, 3), 2.0)),  # no longer uniform
    "thresh_fill": ("lif", lambda m: m.thresh.fill_(0.7)),
    "thresh_item": ("lif", set_item("thresh", (2, 0, 5), 0.3)),
    "if_alpha_t_mul": ("if", lambda m: m.alpha_t.mul_(2.0)),
    "alpha_thresh_fill": ("adaptive", lambda m: m.alpha_thresh.fill_(0.5)),
    "tau_thresh_item": ("adaptive", set_item("tau_thresh", (1, 0, 2), 2.0)),
    "thresh_center_fill": ("adaptive_relax", lambda m: m.thresh_center.fill_(1.3)),
    "v_rest_fill": ("lif", lambda m: m.v_rest.fill_(0.25)),
    "dt_fill": ("lif", lambda m: m.dt.fill_(0.25)),
    "tau_v_replaced": ("lif", lambda m: setattr(m, "tau_v", torch.full(CELLS, 1.5))),
    "tau_v_loaded": ("lif", load_tau_v),
}


@needs_native
@pytest.mark.parametrize("name", list(PLAN_CHANGES))
def test_plan_follows_in_place_changes(calls, name):
    kind, change = PLAN_CHANGES[name]
    update_type = "linear" if kind == "if" else "exponential"
    a = make_neuron(kind, update_type, False, 1)
    b = make_neuron(kind, update_type, False, 1)
    assert 0 < run_with_change(a, b, change, generator(29))
    assert calls["neuron_step"] == 32  # 12 + 20


@needs_native
def test_plan_follows_threshold_changed_through_data(calls):
    """``thresh.data.fill_()`` does not move the Parameter's version counter (``.data`` has its
    own), so a plan caching the threshold as a scalar would keep the old value."""
    a = make_neuron("lif", "exponential", False, 1)
    b = make_neuron("lif", "exponential", False, 1)
    run_with_change(a, b, lambda m: m.thresh.data.fill_(0.7), generator(30))


@needs_native
def test_plan_follows_reset_thresh(calls):
    """``reset_thresh()`` writes through ``thresh.data`` (no version bump) after an in-place
    threshold change: the kernel must see the reset threshold."""
    a = make_neuron("lif", "exponential", False, 1)
    b = make_neuron("lif", "exponential", False, 1)
    gen = generator(31)

    def make_x(_):
        return neuron_input(gen, "contiguous", torch.float32)

    run_neuron_pair(a, b, make_x, steps=5)
    for module in (a, b):
        module.thresh.fill_(0.6)
    run_neuron_pair(a, b, make_x, steps=5)  # a plan caching the threshold holds 0.6 now
    for module in (a, b):
        module.reset_thresh()  # back to 1.0, written through .data
    assert float(a.thresh.max()) == 1.0
    run_neuron_pair(a, b, make_x, steps=10)


@needs_native
def test_plan_follows_relax_to_center_attribute(calls):
    a = make_neuron("adaptive", "exponential", True, 1)
    b = make_neuron("adaptive", "exponential", True, 1)
    run_with_change(a, b, lambda m: setattr(m, "relax_to_center", True), generator(35))


@needs_native
@pytest.mark.parametrize("kind", ["lif", "adaptive_relax"])
def test_plan_follows_dtype_change(calls, kind):
    """``.double()`` mid-run: the kernels run in float64 with the converted state."""
    a = make_neuron(kind, "exponential", True, 1)
    b = make_neuron(kind, "exponential", True, 1)
    gen = generator(32)
    run_neuron_pair(a, b, lambda _: neuron_input(gen, "contiguous", torch.float32), steps=10)
    a.double()
    b.double()
    run_neuron_pair(a, b, lambda _: neuron_input(gen, "transposed", torch.float64), steps=20)
    assert a.v_cell.dtype == torch.float64
    assert calls["neuron_step"] == 30


@needs_native
def test_input_and_linear_plans_follow_changes(calls):
    a, b = make_input("exponential", False), make_input("exponential", False)
    gen = generator(33)
    run_input_pair(a, b, lambda _: input_spikes(gen, True, torch.float32), steps=8)
    for module in (a, b):
        module.alpha_t[0, 0, 1] = 3.0  # no longer uniform
        module.tau_t.fill_(2.0)
    run_input_pair(a, b, lambda _: input_spikes(gen, True, torch.float32), steps=8)
    a.double()
    b.double()
    run_input_pair(a, b, lambda _: input_spikes(gen, True, torch.float64), steps=8)
    assert calls["input_step"] == 24

    lin_a, lin_b = make_linear(2, "sum"), make_linear(2, "sum")

    def make_inputs(_):
        return linear_inputs(gen, False, lin_a.weight.dtype)

    run_linear_pair(lin_a, lin_b, make_inputs, "sum", steps=8)
    for module in (lin_a, lin_b):
        module.weight.data.mul_(0.5)
    run_linear_pair(lin_a, lin_b, make_inputs, "sum", steps=8)
    lin_a.double()
    lin_b.double()
    run_linear_pair(lin_a, lin_b, make_inputs, "sum", steps=8)
    assert lin_a.weight.dtype == torch.float64
    assert linear_steps(calls) == 24


# -- state_dict ---------------------------------------------------------------------------------
@needs_native
def test_state_dict_round_trip_mid_run(calls):
    """Save mid-run, load into fresh modules, continue: native == eager == uninterrupted run."""
    a, b = make_chain("sum", 2), make_chain("sum", 2)
    gen = generator(34)
    run_chain_pair(a, b, gen, 15)
    # state_dict tensors may alias live state: copy them before running on
    saved = [copy.deepcopy(module.state_dict()) for module in a]
    # fresh modules with other weights and parameters, then the saved state
    fresh_native, fresh_eager = make_chain("sum", 2, seed=99), make_chain("sum", 2, seed=98)
    for modules in (fresh_native, fresh_eager):
        modules[2].tau_v.fill_(0.5)  # overwritten by the load
        for module, state in zip(modules, saved):
            module.load_state_dict(state)
    assert_same_chain(fresh_native, a, "loaded")
    assert torch.equal(fresh_native[1].weight, a[1].weight)
    gen_state = gen.get_state()
    fired = run_chain_pair(fresh_native, fresh_eager, gen, 20)
    # the uninterrupted native run, on the same inputs, ends in the same state
    gen.set_state(gen_state)
    for _ in range(20):
        chain_step(a, torch.rand((B, 1, IN), generator=gen) < 0.3)
    assert_same_chain(fresh_native, a, "end")
    assert_same_chain(fresh_eager, a, "end")
    assert fired > 0
    assert calls["neuron_step"] == 15 + 20 + 20


# -- threads ------------------------------------------------------------------------------------
# A step of more than 2 × 4096 values is split into blocks of rows, one per OpenMP thread (when
# the extension is built with OpenMP). 9995 values: blocks of 2 and 3 batch rows, and an Input
# split that is not at a row boundary.
BIG_B, BIG_N = 5, 1999
BIG_CELLS = (BIG_B, 1, BIG_N)


@needs_native
def test_extension_reports_openmp():
    assert native._extension.openmp in (0, 1)
    if sys.platform.startswith("linux") and os.environ.get("CI"):
        assert native._extension.openmp == 1  # setup.py links libgomp on the CI machines


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_large_neuron_matches_eager_on_any_number_of_threads(calls, kind, threads):
    with torch_threads(threads):
        a = make_neuron(kind, "exponential", True, 2, cells=BIG_CELLS)
        b = make_neuron(kind, "exponential", True, 2, cells=BIG_CELLS)
        gen = generator(40)
        fired = run_neuron_pair(
            a, b, lambda _: neuron_input(gen, "transposed", torch.float32, BIG_CELLS), steps=12
        )
    assert calls["neuron_step"] == 12
    assert 0 < fired < 12 * a.v_cell.numel()


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("graded", [False, True], ids=["bool", "graded"])
def test_large_input_matches_eager_on_any_number_of_threads(calls, graded, threads):
    with torch_threads(threads):
        a, b = make_input("exponential", True, BIG_CELLS), make_input(
            "exponential", True, BIG_CELLS
        )
        gen = generator(41)
        run_input_pair(
            a, b, lambda _: input_spikes(gen, graded, torch.float32, BIG_CELLS), steps=12
        )
    assert calls["input_step"] == 12


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("delay", [0, 3])
@pytest.mark.parametrize("batch", [1, BIG_B])
def test_large_linear_matches_eager_on_any_number_of_threads(
    calls, batch, delay, reduction, threads, dtype
):
    """With "sum" on several threads, each thread takes its rows of W @ sᵀ with the BLAS
    (ingest_product), at batch 1 too (the product is split by its own size, B·O·I): the
    activation is torch.mm's within the split product's rounding bound (bit for bit on one
    thread), the rest of the state bit for bit."""
    with torch_threads(threads):
        a = make_linear(delay, reduction, in_features=BIG_N, out_features=7, batch=batch)
        b = make_linear(delay, reduction, in_features=BIG_N, out_features=7, batch=batch)
        a, b = a.to(dtype), b.to(dtype)
        gen = generator(42)
        run_linear_pair(
            a,
            b,
            lambda _: linear_inputs(gen, False, dtype, batch, BIG_N),
            reduction,
            steps=12,
        )
    threaded_product = (
        threads == 2
        and reduction == "sum"
        and native._extension.openmp
        and native._blas_gemm(dtype) is not None
    )
    # 30 % of the inputs spike: more than the spike-driven product takes (it counts, declines),
    # except while the delay line is still empty (no spikes at all: the product is +0)
    sparse = delay if reduction == "sum" else 0
    assert calls["spike_ingest"] == (12 if reduction == "sum" else 0)
    assert calls["spike_ingest:done"] == sparse
    assert calls["ingest_product"] == (12 - sparse if threaded_product else 0)
    assert calls["ingest"] == (0 if threaded_product else 12 - sparse)
    if delay:
        assert bool(a.spike_queue.any())


@needs_native
@pytest.mark.parametrize("delay", [0, 3])
def test_the_product_does_not_depend_on_where_the_input_lies(calls, delay):
    """On one thread both backends hand torch.mm the spikes in a buffer of their own: MKL's
    mat-vec rounds differently for an operand at another alignment (W of 7 x 1999 on an AMD
    EPYC), so graded inputs at every offset into a larger tensor, and a delay line whose slots
    lie at every offset, still give the same activation on both backends, bit for bit."""
    with torch_threads(1):
        a = make_linear(delay, "sum", in_features=BIG_N, out_features=7, batch=1)
        b = make_linear(delay, "sum", in_features=BIG_N, out_features=7, batch=1)
        gen = generator(44)
        storage = torch.zeros(BIG_N + 16)

        def make_inputs(step):
            x, trace_in = linear_inputs(gen, True, torch.float32, 1, BIG_N)
            offset = step % 16  # every alignment of a float within 64 bytes
            view = storage[offset : offset + BIG_N].view(1, 1, BIG_N)
            return view.copy_(x), trace_in

        run_linear_pair(a, b, make_inputs, "sum", steps=20)
    assert calls["ingest"] == 20 - delay  # the kernel path took every step with spikes


@needs_native
def test_threaded_product_uses_the_blas_of_torch_on_linux_ci():
    if (
        sys.platform.startswith("linux")
        and os.environ.get("CI")
        and torch.backends.mkl.is_available()
    ):
        assert native._blas_gemm(torch.float32) is not None
        assert native._blas_gemm(torch.float64) is not None


@needs_native
def test_threads_copies_of_the_delay_line_follow_outside_changes(calls):
    """The threads' own copies of the delay line (ingest_product) follow every change made to
    spike_queue outside the kernels: an eager step, reset_state, a loaded state."""
    with torch_threads(2):
        a = make_linear(3, "sum", in_features=BIG_N, out_features=7, batch=BIG_B)
        b = make_linear(3, "sum", in_features=BIG_N, out_features=7, batch=BIG_B)
        gen = generator(43)

        def make_inputs(_):
            return linear_inputs(gen, False, torch.float32, BIG_B, BIG_N)

        run_linear_pair(a, b, make_inputs, "sum", steps=5)
        x, trace_in = make_inputs(0)
        with native.disabled():  # one eager step on both
            a(x, trace_in)
            b(x, trace_in)
        run_linear_pair(a, b, make_inputs, "sum", steps=5)
        saved = copy.deepcopy(a.state_dict())
        run_linear_pair(a, b, make_inputs, "sum", steps=2)
        a.reset_state()
        b.reset_state()
        run_linear_pair(a, b, make_inputs, "sum", steps=5)
        a.load_state_dict(saved)
        b.load_state_dict(saved)
        run_linear_pair(a, b, make_inputs, "sum", steps=5)
    if native._extension.openmp and native._blas_gemm(torch.float32) is not None:
        # the spike-driven product (of nothing) only while the delay line is empty: 3 steps
        # at the start and 3 after reset_state; the threads' product at every other step
        assert calls["spike_ingest:done"] == 6
        assert calls["ingest_product"] == 16


# -- the C side's declarations -------------------------------------------------------------------
@needs_native
def test_argument_structs_match_their_ctypes_mirrors():
    """Every field of the C argument structs sits where native.py's ctypes mirror writes it."""
    assert native._extension.layout() == native._layouts()


@needs_native
def test_constants_are_shared_with_the_c_source():

    from pysnn.learning import ORDERED_DEPTH

    constants = native._extension.constants()
    assert constants["REFRAC_MAX_STEPS"] == sf.REFRAC_MAX_STEPS
    assert constants["ORDERED_MAX_DEPTH"] == ORDERED_DEPTH
    assert constants["SPIKE_PRODUCT_MAX_LENGTH"] == sf.SPIKE_PRODUCT_MAX_SPIKES
    assert (constants["MODEL_IF"], constants["MODEL_LIF"], constants["MODEL_ADAPTIVE_LIF"]) == (
        native._MODEL_IF,
        native._MODEL_LIF,
        native._MODEL_ADAPTIVE_LIF,
    )


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "duration, dt",
    [(2.5, 1.0), (3.5, 1.0), (0.4, 0.1), (float("nan"), 1.0), (float("inf"), 1.0), (-3.0, 1.0)]
    + [(2.0**40, 1.0), (1.0, 0.0)],
)
def test_refractory_steps_are_read_live_and_rounded_alike(dtype, duration, dt):
    """``duration_refrac``/``dt`` edited after construction: both backends count
    round-half-even(duration / dt) steps (NumPy's rounding), NaN as 0, clamped to 2**29."""
    import numpy as np

    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.round(np.float64(np_dtype(duration) / np_dtype(dt)))
    expected = 0 if np.isnan(expected) else int(min(max(expected, 0), 2**29))
    counts = {}
    for backend in ("torch", "native"):
        neuron = LIFNeuron((1, 1, 3), 0.5, 0.0, 1.0, 1.0, 1.0, 2.0, 0.5, 0.5, backend=backend)
        neuron.to(dtype)
        neuron.duration_refrac.fill_(duration)
        neuron.dt.data.fill_(dt)
        neuron(torch.ones(1, 1, 3, 1, dtype=dtype))
        counts[backend] = neuron.refrac_counts.clone()
    assert torch.equal(counts["torch"], counts["native"])
    assert counts["native"].tolist() == [[[expected] * 3]]
