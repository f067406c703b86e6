"""``backend="torch"`` and ``backend="native"`` give the same numbers, bit for bit.

Every test builds two identical modules (same constructor arguments, same seed), one on each
backend, drives them with the same random inputs (bool spikes and graded or summed float
currents, chosen so that cells spike and go refractory: ``duration_refrac = 2·dt``), edits a
parameter or state buffer of both the same way mid-run, and compares every output and state
buffer after every step. Nothing is ever compared with a module on its own backend: the
reference is always the other backend (or, in the locality test, the unedited module of the other
backend).

The matrix (``test_edit_matrix``) is model kind × every parameter or state buffer the model
reads × mutation method × threads:

* model kinds: Input, IF, LIF (each linear / exponential), adaptive LIF (linear / exponential ×
  relax_to_center False / True) — 10 kinds; Linear (reduction none / sum × delay 0 / 2, and
  "sum" with sparse inputs, which take the spike-driven product) in ``test_linear_edit_matrix``;
* mutations: ``.data.fill_``, ``.data[idx] =``, ``.numpy()[idx] =``, ``mul_``, ``p[idx] =``,
  ``load_state_dict`` (one cell changed), reassigning the attribute to a new tensor; plus
  ``.to(torch.float64)`` of the whole module (followed by per-cell edits), and the same memory
  read as another dtype of the same size (``x.data = x.data.view(torch.int32)``: data pointer,
  sizes and strides unchanged; ``test_memory_seen_as_another_dtype``), and ``requires_grad_()``
  on a state or parameter tensor (``test_state_requiring_grad``);
* threads: ``torch.set_num_threads(1)`` and ``(2)``; the cells of ``BIG_CELLS`` (12000 values)
  make the C kernels split over threads (``test_edit_matrix_threaded``).

The module is skipped where the extension is not built or the kernels are switched off
(``PYSNN_NATIVE=0``): there ``backend="native"`` cannot run at all.
"""

# Matrix size (parametrised cases, threads included): test_edit_matrix 1540 (10 model kinds,
# 110 model/parameter pairs × 7 mutations × 2 thread counts), test_edit_matrix_per_cell_init 220,
# test_edit_matrix_threaded 220 (12000 cells), test_to_float64_matrix 20, test_linear_edit_matrix
# 126, test_linear_to_float64 12, test_memory_seen_as_another_dtype 120,
# test_linear_memory_seen_as_another_dtype 8, test_state_requiring_grad 204 (grad mode on and
# off), test_linear_state_requiring_grad 8: 2478 matrix cases. The whole file collects 3111
# cases (10 of them skipped without CUDA).

import math

import pytest
import torch
from torch import nn

from pysnn import native

if not (native.available() and native.enabled()):
    pytest.skip(
        "backend='native' needs the built extension pysnn._native with the kernels enabled",
        allow_module_level=True,
    )

from pysnn._backend import NativeUnavailableError  # noqa: E402
from pysnn.connection import Linear  # noqa: E402
from pysnn.neuron import AdaptiveLIFNeuron, IFNeuron, Input, LIFNeuron  # noqa: E402
from helpers import (  # noqa: E402
    addcmul_rounds_once,
    assert_within_split_product_bound,
    cursor,
    leaving_delay_line,
    torch_threads,
)

SEED = 20240607
DT = 0.5
DURATION_REFRAC = 2 * DT  # two refractory steps
CELLS = (2, 1, 5)
EDIT_INDEX = (1, 0, 3)
BIG_CELLS = (4, 1, 3000)  # 12000 values: the kernels split them over threads
BIG_EDIT_INDEX = (3, 0, 2999)  # the last cell: the second thread's half
WARMUP_STEPS = 4
STEPS_AFTER = 6
MAX_REFRAC = 2**29

MODELS = [
    f"{kind}-{update_type}"
    for kind in ("input", "if", "lif", "adaptive", "adaptive_relax")
    for update_type in ("linear", "exponential")
]
NEURON_MODELS = [model for model in MODELS if not model.startswith("input")]

_NEURON_PARAMS = (
    "thresh",
    "v_rest",
    "alpha_v",
    "alpha_t",
    "tau_t",
    "dt",
    "duration_refrac",
    "thresh_center",
    "v_cell",
    "trace",
    "refrac_counts",
)
PARAMS = {
    "input": ("alpha_t", "tau_t", "dt", "trace"),
    "if": _NEURON_PARAMS,
    "lif": _NEURON_PARAMS + ("tau_v",),
    "adaptive": _NEURON_PARAMS + ("tau_v", "alpha_thresh", "tau_thresh"),
    "adaptive_relax": _NEURON_PARAMS + ("tau_v", "alpha_thresh", "tau_thresh"),
}
MUTATIONS = ("fill", "data_index", "numpy_index", "mul_", "setitem", "load_state_dict", "reassign")
NEURON_STATE = ("v_cell", "trace", "thresh", "spikes", "refrac_counts")
INPUT_STATE = ("trace", "spikes")
LINEAR_STATE = ("pre_trace", "pre_spikes", "spike_queue")
# parameters that hold one value per cell (the others are 0-d buffers)
PER_CELL = {
    "thresh",
    "alpha_v",
    "tau_v",
    "alpha_t",
    "tau_t",
    "alpha_thresh",
    "tau_thresh",
    "v_cell",
    "trace",
    "refrac_counts",
}


def split(model):
    kind, update_type = model.rsplit("-", 1)
    return kind, update_type


# -- torch's multiply-add ---------------------------------------------------------------------
ADDCMUL_FUSED = all(addcmul_rounds_once(dtype) for dtype in (torch.float32, torch.float64))


def needs_fused_addcmul(model):
    """Marks for a model whose bit-exact comparison relies on torch's addcmul_ being an FMA."""
    kind, update_type = split(model)
    if update_type == "linear" and kind != "if" and not ADDCMUL_FUSED:
        return [pytest.mark.skip(reason="torch's addcmul_ rounds twice on this CPU")]
    return []


# -- fixtures and helpers ---------------------------------------------------------------------
@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
def threads(request):
    """Run the test with torch.set_num_threads(1) and (2), restored afterwards."""
    with torch_threads(request.param) as count:
        yield count


def generator(seed=SEED):
    return torch.Generator().manual_seed(seed)


def uniform(gen, low, high, shape, dtype=torch.float32):
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=dtype)


def describe_mismatch(got, expected):
    if got.shape != expected.shape:
        return f"shapes {tuple(got.shape)} vs {tuple(expected.shape)}"
    differs = (got != expected).nonzero()
    if differs.numel() == 0:
        return "no elementwise difference"
    index = tuple(differs[0].tolist())
    return (
        f"{differs.shape[0]} elements differ, first at {index}: native "
        f"{got[index].item()!r} vs torch {expected[index].item()!r}"
    )


def assert_same(got, expected, what):
    """``got`` (native) equals ``expected`` (torch) bit for bit, dtype and shape included."""
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} vs {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: {describe_mismatch(got, expected)}"
    assert torch.equal(got, expected), f"{what}: {describe_mismatch(got, expected)}"


def assert_same_state(native_module, torch_module, names, what):
    for name in names:
        assert_same(getattr(native_module, name), getattr(torch_module, name), f"{what}: {name}")


def model_params(kind, update_type, cells=CELLS, per_cell=False):
    """Constructor parameters: one value for all cells, or a seeded random value per cell."""
    gen = generator(SEED + 1)
    linear = update_type == "linear"

    def value(scalar, low, high):
        return uniform(gen, low, high, cells, torch.float64) if per_cell else scalar

    params = {
        "dt": DT,
        "duration_refrac": DURATION_REFRAC,
        "thresh": value(1.0, 0.8, 1.2),
        "v_rest": -0.125,
        "alpha_v": value(1.25, 1.0, 1.5),
        "alpha_t": value(0.75, 0.5, 1.0),
        "tau_v": value(0.8, 0.6, 0.95) if linear else value(3.0, 2.0, 4.0),
        "tau_t": value(0.7, 0.5, 0.9) if linear else value(4.0, 2.0, 6.0),
        "alpha_thresh": value(0.25, 0.1, 0.4),
        "tau_thresh": value(0.9, 0.8, 0.99) if linear else value(6.0, 4.0, 8.0),
    }
    if kind == "adaptive_relax":
        params["alpha_thresh"] = value(0.1, 0.05, 0.15)
    return params


def build(model, backend, cells=CELLS, per_cell=False, cls=None, **overrides):
    """A module of ``model`` (e.g. ``"lif-exponential"``) on ``backend`` (of class ``cls``, a
    subclass, if given)."""
    kind, update_type = split(model)
    p = model_params(kind, update_type, cells, per_cell)
    p.update(overrides)
    torch.manual_seed(SEED)
    if kind == "input":
        cls = cls or Input
        return cls(cells, p["dt"], p["alpha_t"], p["tau_t"], update_type, backend=backend)
    common = (
        cells,
        p["thresh"],
        p["v_rest"],
        p["alpha_v"],
        p["alpha_t"],
        p["dt"],
        p["duration_refrac"],
    )
    if kind == "if":
        return (cls or IFNeuron)(*common, p["tau_t"], update_type, backend=backend)
    if kind == "lif":
        return (cls or LIFNeuron)(*common, p["tau_v"], p["tau_t"], update_type, backend=backend)
    return (cls or AdaptiveLIFNeuron)(
        *common,
        p["tau_v"],
        p["tau_t"],
        p["alpha_thresh"],
        p["tau_thresh"],
        update_type,
        relax_to_center=kind == "adaptive_relax",
        backend=backend,
    )


def build_pair(model, **kwargs):
    """``(torch module, native module)``, identical but for the backend."""
    return build(model, "torch", **kwargs), build(model, "native", **kwargs)


def make_inputs(model, steps, cells=CELLS, dtype=torch.float32, seed=SEED + 2):
    """Inputs for ``steps`` steps: for Input, bool spikes and graded spikes in turn; for
    neurons, currents with one fan-in entry and currents summed over three in turn."""
    gen = generator(seed)
    inputs = []
    for step in range(steps):
        if model.startswith("input"):
            mask = torch.rand(cells, generator=gen) < 0.4
            x = mask if step % 2 == 0 else mask.to(dtype) * uniform(gen, 0.5, 2.5, cells, dtype)
        elif step % 2 == 0:
            x = uniform(gen, -0.3, 2.0, cells + (1,), dtype)
        else:
            x = uniform(gen, -0.1, 0.7, cells + (3,), dtype)
        inputs.append(x)
    return inputs


def state_names(model):
    return INPUT_STATE if model.startswith("input") else NEURON_STATE


def step_and_compare(torch_module, native_module, model, inputs, what):
    """Step both modules on ``inputs``; compare outputs and state after each step.

    :returns: ``(spikes fired, largest refractory count seen)`` by the torch module.
    """
    fired, longest = 0, 0
    is_input = model.startswith("input")
    for step, x in enumerate(inputs):
        where = f"{what}, step {step}"
        out_t, trace_t = torch_module(x)
        assert not is_input or out_t is x, f"{where}: Input returns its input"
        out_t, trace_t = out_t.clone(), trace_t.clone()
        out_n, trace_n = native_module(x)
        if is_input:
            assert out_n is x, f"{where}: Input returns its input"
        else:
            assert_same(out_n, out_t, f"{where}: returned spikes")
            fired += int(out_t.sum())
            longest = max(longest, int(torch_module.refrac_counts.max()))
        assert_same(trace_n, trace_t, f"{where}: returned trace")
        assert_same_state(native_module, torch_module, state_names(model), where)
    return fired, longest


def edit_value(name, update_type):
    """A legal new value for ``name`` that changes the dynamics."""
    linear = update_type == "linear"
    return {
        "thresh": 0.6,
        "v_rest": 0.25,
        "alpha_v": 2.0,
        "alpha_t": 0.3,
        "tau_v": 0.5 if linear else 1.5,
        "tau_t": 0.4 if linear else 2.0,
        "alpha_thresh": 0.6,
        "tau_thresh": 0.5 if linear else 2.5,
        "thresh_center": 0.7,
        "dt": 0.25,  # four refractory steps
        "duration_refrac": 1.5,  # three refractory steps
        "v_cell": 0.95,
        "trace": 0.5,
        "refrac_counts": 3,
        "weight": 0.5,
        "spike_queue": 1.0,
    }[name]


FACTORS = {
    "thresh": 0.75,
    "v_rest": 2.0,
    "alpha_v": 1.5,
    "alpha_t": 0.5,
    "tau_v": 0.5,
    "tau_t": 0.5,
    "alpha_thresh": 2.0,
    "tau_thresh": 0.5,
    "thresh_center": 0.5,
    "dt": 0.5,
    "duration_refrac": 1.5,
    "v_cell": 0.5,
    "trace": 2.0,
    "refrac_counts": 2,
    "weight": 1.5,
    "spike_queue": 2.0,
}


def mutate(module, name, how, value, index):
    """Edit ``module.<name>`` in one of the ways of ``MUTATIONS`` (``index`` for per-cell ones;
    ``()`` for 0-d buffers, where a per-cell edit is a whole edit)."""
    tensor = getattr(module, name)
    index = index if tensor.dim() else ()
    if how == "fill":
        tensor.data.fill_(value)
    elif how == "data_index":
        tensor.data[index] = value
    elif how == "numpy_index":
        tensor.numpy()[index] = value
    elif how == "mul_":
        tensor.mul_(FACTORS[name])
    elif how == "setitem":
        tensor[index] = value
    elif how == "load_state_dict":
        state = module.state_dict()
        state[name] = state[name].clone()
        state[name][index] = value
        module.load_state_dict(state)
    elif how == "reassign":
        new = torch.full_like(tensor.detach(), value)
        if isinstance(tensor, nn.Parameter):
            new = nn.Parameter(new, requires_grad=False)
        setattr(module, name, new)
    else:
        raise AssertionError(how)


def run_edit_case(
    model, name, how, cells=CELLS, index=EDIT_INDEX, per_cell=False, warmup=WARMUP_STEPS
):
    torch_module, native_module = build_pair(model, cells=cells, per_cell=per_cell)
    inputs = make_inputs(model, warmup + STEPS_AFTER, cells)
    step_and_compare(torch_module, native_module, model, inputs[:warmup], "before edit")
    value = edit_value(name, split(model)[1])
    for module in (torch_module, native_module):
        mutate(module, name, how, value, index)
    assert_same(getattr(native_module, name), getattr(torch_module, name), f"edited {name}")
    step_and_compare(torch_module, native_module, model, inputs[warmup:], f"after {how} of {name}")


def matrix_cases(models=MODELS, mutations=MUTATIONS):
    return [
        pytest.param(model, name, how, marks=needs_fused_addcmul(model), id=f"{model}-{name}-{how}")
        for model in models
        for name in PARAMS[split(model)[0]]
        for how in mutations
    ]


# -- the matrix -------------------------------------------------------------------------------
@pytest.mark.parametrize("model, name, how", matrix_cases())
def test_edit_matrix(model, name, how, threads):
    """Every parameter is read from its buffer at every step, on both backends alike."""
    run_edit_case(model, name, how)


@pytest.mark.parametrize("model, name, how", matrix_cases(mutations=("fill", "data_index")))
def test_edit_matrix_per_cell_init(model, name, how):
    """As the matrix, with parameters that differ from cell to cell from the start."""
    run_edit_case(model, name, how, per_cell=True)


@pytest.mark.parametrize("model, name, how", matrix_cases(mutations=("data_index",)))
def test_edit_matrix_threaded(model, name, how, threads):
    """More than 8192 values: the C kernels split the cells over the threads; the edited cell
    is the last one (the second thread's)."""
    run_edit_case(model, name, how, cells=BIG_CELLS, index=BIG_EDIT_INDEX, warmup=2)


@pytest.mark.parametrize(
    "model", [pytest.param(model, marks=needs_fused_addcmul(model)) for model in MODELS]
)
def test_to_float64_matrix(model, threads):
    """``.to(torch.float64)`` of the whole module mid-run, then per-cell edits of every
    per-cell parameter in float64."""
    kind, update_type = split(model)
    torch_module, native_module = build_pair(model)
    inputs32 = make_inputs(model, WARMUP_STEPS)
    inputs64 = make_inputs(model, 2 * STEPS_AFTER, dtype=torch.float64, seed=SEED + 3)
    step_and_compare(torch_module, native_module, model, inputs32, "float32")
    for module in (torch_module, native_module):
        assert module.to(torch.float64) is module
        assert module.trace.dtype == torch.float64
    step_and_compare(torch_module, native_module, model, inputs64[:STEPS_AFTER], "float64")
    for module in (torch_module, native_module):
        for name in PARAMS[kind]:
            if name in PER_CELL:
                mutate(module, name, "data_index", edit_value(name, update_type), EDIT_INDEX)
    step_and_compare(
        torch_module, native_module, model, inputs64[STEPS_AFTER:], "float64 after edits"
    )


@pytest.mark.parametrize("model", NEURON_MODELS)
def test_inputs_make_cells_spike_and_go_refractory(model):
    """The matrix compares something: cells both spike and stay silent, and go refractory."""
    torch_module, native_module = build_pair(model)
    steps = WARMUP_STEPS + STEPS_AFTER
    fired, longest = step_and_compare(
        torch_module, native_module, model, make_inputs(model, steps), "run"
    )
    assert 0 < fired < steps * math.prod(CELLS)
    assert longest == 2


LOCALITY_STEPS = 16  # enough for the edited cell to spike, and to leak from off rest


@pytest.mark.parametrize(
    "model, name",
    [
        pytest.param(model, name, marks=needs_fused_addcmul(model), id=f"{model}-{name}")
        for model in MODELS
        for name in PARAMS[split(model)[0]]
        if name in PER_CELL
    ],
)
def test_per_cell_edit_acts_on_that_cell_only(model, name):
    """A per-cell edit on the native backend changes that cell only: every other cell follows
    the unedited module of the torch backend bit for bit, the edited cell follows the edited
    torch module and departs from the unedited one."""
    edited_torch, edited_native = build_pair(model)
    plain_torch = build(model, "torch")
    inputs = make_inputs(model, WARMUP_STEPS + LOCALITY_STEPS)
    # the edited cell must both spike (for the trace and threshold parameters to matter) and
    # spend steps off rest without spiking (for the leak to matter): a weaker input there where
    # the linear models fire at every chance, a stronger one for the slower exponential models
    scale = 0.7 if split(model)[1] == "linear" else 1.6
    for x in inputs:
        if x.is_floating_point():
            x[EDIT_INDEX] *= scale
    for x in inputs[:WARMUP_STEPS]:
        for module in (edited_torch, edited_native, plain_torch):
            module(x)
    for module in (edited_torch, edited_native):
        mutate(module, name, "data_index", edit_value(name, split(model)[1]), EDIT_INDEX)
    others = torch.ones(CELLS, dtype=torch.bool)
    others[EDIT_INDEX] = False
    departed = False
    for step, x in enumerate(inputs[WARMUP_STEPS:]):
        for module in (edited_torch, edited_native, plain_torch):
            module(x)
        for state in state_names(model):
            got = getattr(edited_native, state)
            assert_same(got, getattr(edited_torch, state), f"step {step}: {state}")
            assert_same(got[others], getattr(plain_torch, state)[others], f"step {step}: {state}")
            departed |= bool(got[EDIT_INDEX] != getattr(plain_torch, state)[EDIT_INDEX])
    assert departed, f"editing one cell of {name} changed nothing in that cell"


# -- backend attribute ------------------------------------------------------------------------
def test_native_unavailable_error_is_a_runtime_error():
    assert issubclass(NativeUnavailableError, RuntimeError)


@pytest.mark.parametrize("model", MODELS)
def test_backend_attribute(model):
    module = build(model, "auto")
    assert module.backend == "auto"
    module.backend = "native"
    assert module.backend == "native"
    assert "backend='native'" in repr(module)
    module.backend = "torch"
    assert module.backend == "torch"
    assert "backend='torch'" in repr(module)
    for bad in ("bogus", "Native", None, 1):
        with pytest.raises(ValueError):
            module.backend = bad
        assert module.backend == "torch"
    with pytest.raises(ValueError):
        build(model, "cuda")


def test_linear_backend_attribute():
    torch.manual_seed(SEED)
    lin = Linear(5, 3, 2, DT, 0, reduction="sum", backend="native")
    assert lin.backend == "native"
    assert "backend='native'" in repr(lin)
    with pytest.raises(ValueError):
        lin.backend = "bogus"
    assert lin.backend == "native"
    with pytest.raises(ValueError):
        Linear(5, 3, 2, DT, 0, backend="bogus")


def test_backend_is_keyword_only():
    with pytest.raises(TypeError):
        Input(CELLS, DT, 0.75, 0.7, "linear", "native")
    with pytest.raises(TypeError):
        IFNeuron(CELLS, 1.0, 0.0, 1.0, 1.0, DT, 0.0, 0.7, "linear", False, "native")


@pytest.mark.parametrize("model", MODELS)
def test_switching_backend_mid_run(model):
    """A module switched between the backends mid-run follows a torch-only module."""
    torch_module, switched = build_pair(model)
    inputs = make_inputs(model, 12)
    for start in range(0, 12, 3):
        switched.backend = ("native", "torch")[(start // 3) % 2]
        step_and_compare(torch_module, switched, model, inputs[start : start + 3], switched.backend)


@pytest.mark.parametrize("model", MODELS)
def test_native_rejects_float16(model):
    module = build(model, "native")
    x = make_inputs(model, 1)[0]
    with pytest.raises(NativeUnavailableError, match="float16"):
        module.half()
        module(x.half() if x.is_floating_point() else x)


@pytest.mark.parametrize("model", MODELS)
def test_auto_runs_float16_as_torch_does(model):
    """``"auto"`` falls back to PyTorch where the kernels do not apply (float16)."""
    auto, reference = build(model, "auto").half(), build(model, "torch").half()
    inputs = [x.half() if x.is_floating_point() else x for x in make_inputs(model, 6)]
    step_and_compare(reference, auto, model, inputs, "float16")


NEURON_CLASSES = {"if": IFNeuron, "lif": LIFNeuron, "adaptive": AdaptiveLIFNeuron}


@pytest.mark.parametrize("model", NEURON_MODELS)
def test_native_rejects_subclass_overriding_a_step_method(model):
    """A subclass overriding a step method: "native" raises (its override would be skipped),
    "torch" and "auto" run the override."""
    parent = NEURON_CLASSES[split(model)[0].replace("_relax", "")]

    class Custom(parent):
        def update_voltage(self, x):
            super().update_voltage(2 * x)

    x = make_inputs(model, 1)[0]
    with pytest.raises(NativeUnavailableError):
        build(model, "native", cls=Custom)(x)
    module = build(model, "auto", cls=Custom)
    with pytest.raises(NativeUnavailableError):
        module.backend = "native"
        module(x)
    # the override runs on the torch backend: twice the input, against a parent module fed so
    custom, parent_module = build(model, "torch", cls=Custom), build(model, "native")
    for step, x in enumerate(make_inputs(model, 6)):
        assert_same(custom(x)[0], parent_module(2 * x)[0], f"step {step}: spikes")
        assert_same_state(custom, parent_module, NEURON_STATE, f"step {step}")


@pytest.mark.parametrize("model", MODELS)
def test_native_raises_while_kernels_are_disabled(model):
    module = build(model, "native")
    x = make_inputs(model, 1)[0]
    with native.disabled():
        with pytest.raises(NativeUnavailableError):
            module(x)
        with pytest.raises(NativeUnavailableError):
            build(model, "native")(x)
        torch_module = build(model, "torch")
        torch_module(x)  # the torch backend does not need the kernels
    assert native.enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", MODELS)
def test_native_rejects_cuda(model):
    module = build(model, "native")
    x = make_inputs(model, 1)[0]
    with pytest.raises(NativeUnavailableError):
        module.cuda()
        module(x.cuda())


# -- point 2: update_type after construction ---------------------------------------------------
IN_RANGE_TAUS = {"tau_v": 0.9, "tau_t": 0.8, "tau_thresh": 0.95}  # decays and time constants


def tau_names(model):
    return [name for name in PARAMS[split(model)[0]] if name.startswith("tau")]


@pytest.mark.parametrize(
    "model", [pytest.param(model, marks=needs_fused_addcmul(model)) for model in MODELS]
)
def test_update_type_can_be_set_after_construction(model):
    kind, update_type = split(model)
    other = "exponential" if update_type == "linear" else "linear"
    overrides = {name: IN_RANGE_TAUS[name] for name in tau_names(model)}
    torch_module, native_module = build_pair(model, **overrides)
    inputs = make_inputs(model, 12)
    step_and_compare(torch_module, native_module, model, inputs[:6], update_type)
    for module in (torch_module, native_module):
        module.update_type = other
        assert module.update_type == other
    fired, _ = step_and_compare(torch_module, native_module, model, inputs[6:], other)
    # the switch changed the dynamics (compared with a torch module that kept update_type)
    kept = build(model, "torch", **overrides)
    for x in inputs:
        kept(x)
    assert not torch.equal(kept.trace, native_module.trace)


def snapshot(module):
    """Copies of every buffer and parameter, with the settings a step reads."""
    state = {name: t.detach().clone() for name, t in module.named_buffers()}
    state.update({name: t.detach().clone() for name, t in module.named_parameters()})
    for attribute in ("update_type", "backend", "relax_to_center"):
        if hasattr(module, attribute):
            state[attribute] = getattr(module, attribute)
    if isinstance(module, Linear):
        state["cursor"] = cursor(module)
    return state


def assert_unchanged(module, before, what):
    after = snapshot(module)
    assert after.keys() == before.keys(), what
    for name, value in before.items():
        if isinstance(value, torch.Tensor):
            assert after[name].dtype == value.dtype, f"{what}: {name}"
            assert torch.equal(after[name], value), f"{what}: {name} changed"
        else:
            assert after[name] == value, f"{what}: {name} changed"


def check_failed_call_changes_nothing(model, attempt, inputs, exception):
    """``attempt(module)`` raises ``exception`` on both backends and changes nothing: each
    module then follows an untouched module of the other backend."""
    tried = build_pair(model)
    untouched = build_pair(model)
    for pair in (tried, untouched):
        step_and_compare(*pair, model, inputs[:3], "before")
    for module in tried:
        before = snapshot(module)
        with pytest.raises(exception):
            attempt(module)
        assert_unchanged(module, before, f"{module.backend}: after the failed call")
    step_and_compare(tried[0], untouched[1], model, inputs[3:], "tried torch vs native")
    step_and_compare(untouched[0], tried[1], model, inputs[3:], "torch vs tried native")


@pytest.mark.parametrize(
    "model", [pytest.param(model, marks=needs_fused_addcmul(model)) for model in MODELS]
)
@pytest.mark.parametrize("bad", ["bogus", "Linear", None, 0])
def test_invalid_update_type_raises_and_changes_nothing(model, bad):
    check_failed_call_changes_nothing(
        model, lambda m: setattr(m, "update_type", bad), make_inputs(model, 9), ValueError
    )


@pytest.mark.parametrize("where", ["whole", "one_cell"])
@pytest.mark.parametrize(
    "model, name",
    [
        (f"{kind}-exponential", name)
        for kind in ("input", "if", "lif", "adaptive", "adaptive_relax")
        for name in tau_names(f"{kind}-exponential")
    ],
)
def test_linear_update_type_rejects_tau_outside_unit_interval(model, name, where):
    """Switching to "linear" while a tau (a time constant) lies outside [0, 1] raises."""
    overrides = {tau: IN_RANGE_TAUS[tau] for tau in tau_names(model)}
    if where == "whole":
        overrides[name] = 4.0
    torch_module, native_module = build_pair(model, **overrides)
    inputs = make_inputs(model, 9)
    step_and_compare(torch_module, native_module, model, inputs[:3], "before")
    for module in (torch_module, native_module):
        if where == "one_cell":
            getattr(module, name)[EDIT_INDEX] = 1.5
        before = snapshot(module)
        with pytest.raises(ValueError):
            module.update_type = "linear"
        assert module.update_type == "exponential"
        assert_unchanged(module, before, f"{module.backend}: after the failed switch")
    step_and_compare(torch_module, native_module, model, inputs[3:], "after")


# -- point 3: refractory period read at every step ---------------------------------------------
def refractory_length_after_spike(module):
    """Step with a huge current (every non-refractory cell spikes); the counters then hold
    the refractory length of the spiking cells."""
    huge = torch.full(module.cells_shape + (1,), 100.0, dtype=module.v_cell.dtype)
    spikes, _ = module(huge)
    return spikes, module.refrac_counts.clone()


@pytest.mark.parametrize("model", NEURON_MODELS)
@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("duration_refrac", 1.0, 2),
        ("duration_refrac", 1.25, 2),  # 2.5 rounds half to even
        ("duration_refrac", 1.75, 4),  # 3.5 rounds half to even
        ("duration_refrac", 0.75, 2),  # 1.5
        ("duration_refrac", 0.25, 0),  # 0.5
        ("duration_refrac", 0.0, 0),
        ("duration_refrac", float("nan"), 0),
        ("duration_refrac", -1.0, 0),
        ("duration_refrac", 1e12, MAX_REFRAC),
        ("duration_refrac", float("inf"), MAX_REFRAC),
        ("dt", 0.25, 4),
        ("dt", 0.4, 2),  # 2.5 (2.4999999 in float32) -> 2
        ("dt", 2.0, 0),
        ("dt", 1.0 / 3.0, 3),
    ],
)
@pytest.mark.parametrize("how", ["fill", "load_state_dict"])
def test_refractory_length_follows_duration_and_dt(model, name, value, expected, how):
    """``round(duration_refrac / dt)`` steps (half to even, NaN -> 0, clamped to [0, 2**29]),
    read at the next step after an edit, on both backends alike."""
    torch_module, native_module = build_pair(model)
    zeros = torch.zeros(CELLS + (1,))
    for module in (torch_module, native_module):
        spikes, _ = module(zeros)  # a first step: nothing spikes
        assert not bool(spikes.any())
        if how == "fill":
            getattr(module, name).fill_(value)
        else:
            state = module.state_dict()
            state[name] = torch.full_like(state[name], value)
            module.load_state_dict(state)
        spikes, counts = refractory_length_after_spike(module)
        assert bool(spikes.all()), f"{module.backend}: every cell spikes"
        assert bool((counts == expected).all()), f"{module.backend}: {counts.flatten()[:3]}"
    assert_same_state(native_module, torch_module, NEURON_STATE, "after the spike")
    # the counters run down one step at a time from there, alike
    for step in range(3):
        torch_module(zeros)
        native_module(zeros)
        assert_same_state(native_module, torch_module, NEURON_STATE, f"step {step}")
    assert bool((native_module.refrac_counts == max(expected - 3, 0)).all())


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("model", NEURON_MODELS)
def test_refractory_period_above_the_limit_is_rejected(model, backend):
    with pytest.raises(ValueError):
        build(model, backend, duration_refrac=DT * 2.0**30)
    module = build(model, backend, duration_refrac=DT * MAX_REFRAC)  # the limit itself
    _, counts = refractory_length_after_spike(module)
    assert bool((counts == MAX_REFRAC).all())


# -- point 4: bad inputs ------------------------------------------------------------------------
def bad_neuron_input(bad, cells=CELLS):
    b, c, n = cells
    return {
        "none": None,
        "requires_grad": torch.rand(cells + (1,), requires_grad=True),
        "wrong_batch": torch.rand((b + 1, c, n, 1)),
        "wrong_cells": torch.rand((b, c, n + 1, 1)),
        "extra_axis": torch.rand(cells + (1, 2)),
    }[bad]


def bad_input_input(bad, cells=CELLS):
    b, c, n = cells
    return {
        "none": None,
        "requires_grad": torch.rand(cells, requires_grad=True),
        "wrong_batch": torch.rand((b + 1, c, n)),
        "wrong_cells": torch.rand((b, c, n + 1)),
        "extra_axis": torch.rand(cells + (2,)),
    }[bad]


ERRORS = {
    "none": TypeError,
    "requires_grad": TypeError,
    "wrong_batch": ValueError,
    "wrong_cells": ValueError,
    "extra_axis": ValueError,
}


@pytest.mark.parametrize(
    "model, bad",
    [
        pytest.param(model, bad, marks=needs_fused_addcmul(model))
        for model in MODELS
        for bad in ERRORS
    ],
)
def test_bad_input_is_rejected_before_any_state_changes(model, bad):
    make_bad = bad_input_input if model.startswith("input") else bad_neuron_input
    check_failed_call_changes_nothing(
        model, lambda m: m(make_bad(bad)), make_inputs(model, 9), ERRORS[bad]
    )


# -- Linear -------------------------------------------------------------------------------------
LIN_B, LIN_I, LIN_O = 2, 5, 3
# sparse inputs: at most 2 spikes per sample of 64 inputs, so that a "sum" layer takes the
# spike-driven product (functional.sum_product: at most max(64 / 12, 2·64 / 16) = 8 in all)
SPARSE_LIN_I = 64
LIN_EDIT_INDEX = {"weight": (1, 2), "spike_queue": (1, 0, 0, 3)}
BIG_LIN_B, BIG_LIN_I, BIG_LIN_O = 4, 3000, 16  # 12000 presynaptic values


def build_linear(backend, delay, reduction, batch=LIN_B, n_in=LIN_I, n_out=LIN_O):
    torch.manual_seed(SEED)  # the constructor draws the weights
    return Linear(n_in, n_out, batch, DT, delay, reduction=reduction, backend=backend)


def build_linear_pair(delay, reduction, **kwargs):
    pair = build_linear("torch", delay, reduction, **kwargs), build_linear(
        "native", delay, reduction, **kwargs
    )
    assert torch.equal(pair[0].weight, pair[1].weight)  # same seed
    return pair


def linear_inputs(steps, batch=LIN_B, n_in=LIN_I, dtype=torch.float32, seed=SEED + 4):
    """Bool spikes and graded float spikes in turn, with random presynaptic traces."""
    gen = generator(seed)
    shape = (batch, 1, n_in)
    inputs = []
    for step in range(steps):
        mask = torch.rand(shape, generator=gen) < 0.4
        x = mask if step % 2 == 0 else mask.to(dtype) * uniform(gen, 0.5, 2.0, shape, dtype)
        inputs.append((x, uniform(gen, 0.0, 3.0, shape, dtype)))
    return inputs


def sparse_linear_inputs(steps, batch=LIN_B, n_in=SPARSE_LIN_I, dtype=torch.float32, seed=SEED + 6):
    """0, 1 or 2 spikes per sample (bool and graded in turn), with random presynaptic traces."""
    gen = generator(seed)
    shape = (batch, 1, n_in)
    inputs = []
    for step in range(steps):
        mask = torch.zeros(shape, dtype=torch.bool)
        for b in range(batch):
            mask[b, 0, torch.randperm(n_in, generator=gen)[: (step + b) % 3]] = True
        x = mask if step % 2 == 0 else mask.to(dtype) * uniform(gen, 0.5, 2.0, shape, dtype)
        inputs.append((x, uniform(gen, 0.0, 3.0, shape, dtype)))
    return inputs


def linear_case(inputs, delay, reduction):
    """The pair of connections and the input maker of a ``LINEAR_CONFIGS`` case."""
    if inputs == "sparse":
        return build_linear_pair(delay, reduction, n_in=SPARSE_LIN_I), sparse_linear_inputs
    return build_linear_pair(delay, reduction), linear_inputs


def product_split_over_threads(lin):
    return lin.reduction == "sum" and torch.get_num_threads() > 1


def assert_activation(got, expected, weight, delayed, split_product, what):
    """Bit for bit, or where the product may be split over threads within its rounding bound."""
    if split_product:
        assert_within_split_product_bound(got, expected, weight, delayed, what)
    else:
        assert_same(got, expected, what)


def linear_step_and_compare(torch_lin, native_lin, inputs, what):
    """Step both connections; compare outputs and state after every step."""
    outputs = []
    for step, (x, trace_in) in enumerate(inputs):
        where = f"{what}, step {step}"
        delayed = leaving_delay_line(torch_lin, x)
        act_t, trace_t = (t.clone() for t in torch_lin(x, trace_in))
        act_n, trace_n = (t.clone() for t in native_lin(x, trace_in))
        split_product = product_split_over_threads(torch_lin)
        assert_activation(act_n, act_t, torch_lin.weight, delayed, split_product, where)
        assert_same(trace_n, trace_t, f"{where}: trace")
        assert_same_state(native_lin, torch_lin, LINEAR_STATE, where)
        assert cursor(native_lin) == cursor(torch_lin), f"{where}: cursor"
        outputs.append((act_t, act_n))
    return outputs


LINEAR_CONFIGS = [
    (reduction, delay, "dense") for reduction in ("none", "sum") for delay in (0, 2)
] + [("sum", delay, "sparse") for delay in (0, 2)]


@pytest.mark.parametrize(
    "reduction, delay, inputs, name, how",
    [
        pytest.param(
            reduction,
            delay,
            inputs,
            name,
            how,
            id=f"{reduction}-delay{delay}-{name}-{how}" + ("-sparse" if inputs == "sparse" else ""),
        )
        for reduction, delay, inputs in LINEAR_CONFIGS
        for name in (("weight", "spike_queue") if delay else ("weight",))
        for how in MUTATIONS
    ],
)
def test_linear_edit_matrix(reduction, delay, inputs, name, how, threads):
    """Weight and delay-line edits are seen by both backends alike (with sparse inputs also on
    the spike-driven product)."""
    (torch_lin, native_lin), make_inputs = linear_case(inputs, delay, reduction)
    inputs = make_inputs(WARMUP_STEPS + STEPS_AFTER)
    linear_step_and_compare(torch_lin, native_lin, inputs[:WARMUP_STEPS], "before edit")
    for lin in (torch_lin, native_lin):
        mutate(lin, name, how, edit_value(name, "linear"), LIN_EDIT_INDEX[name])
    assert_same(getattr(native_lin, name), getattr(torch_lin, name), f"edited {name}")
    linear_step_and_compare(torch_lin, native_lin, inputs[WARMUP_STEPS:], f"after {how}")


@pytest.mark.parametrize("reduction, delay, inputs", LINEAR_CONFIGS)
def test_linear_to_float64(reduction, delay, inputs, threads):
    (torch_lin, native_lin), make_inputs = linear_case(inputs, delay, reduction)
    linear_step_and_compare(torch_lin, native_lin, make_inputs(WARMUP_STEPS), "float32")
    for lin in (torch_lin, native_lin):
        assert lin.to(torch.float64) is lin
        assert lin.weight.dtype == lin.spike_queue.dtype == torch.float64
    inputs = make_inputs(2 * STEPS_AFTER, dtype=torch.float64, seed=SEED + 5)
    linear_step_and_compare(torch_lin, native_lin, inputs[:STEPS_AFTER], "float64")
    for lin in (torch_lin, native_lin):
        lin.weight.data[1, 2] = 0.25
        if delay:
            lin.spike_queue.data[1, 0, 0, 3] = 2.0
    linear_step_and_compare(torch_lin, native_lin, inputs[STEPS_AFTER:], "float64 after edits")


# -- point 5: weight layouts and delay-line edits ----------------------------------------------
def transposed_weight(lin):
    weight = lin.weight.detach()
    return nn.Parameter(weight.t().contiguous().t() * 0.75, requires_grad=False)


def expanded_weight(lin):
    row = lin.weight.detach()[:1] * 0.5
    return nn.Parameter(row.expand(lin.out_features, lin.in_features), requires_grad=False)


WEIGHT_LAYOUTS = {
    "transposed": lambda lin: setattr(lin, "weight", transposed_weight(lin)),
    "expanded": lambda lin: setattr(lin, "weight", expanded_weight(lin)),
    "data_transposed": lambda lin: setattr(lin.weight, "data", transposed_weight(lin).data),
    "strided": lambda lin: setattr(
        lin,
        "weight",
        nn.Parameter(
            torch.rand(lin.out_features, 2 * lin.in_features)[:, ::2], requires_grad=False
        ),
    ),
}


@pytest.mark.parametrize("layout", list(WEIGHT_LAYOUTS))
@pytest.mark.parametrize("reduction, delay, inputs", LINEAR_CONFIGS)
def test_linear_weight_layouts(reduction, delay, inputs, layout, threads):
    """Non-contiguous and expanded weights give the same result on both backends (bit for bit
    unless the product is split over threads)."""
    (torch_lin, native_lin), make_inputs = linear_case(inputs, delay, reduction)
    inputs = make_inputs(WARMUP_STEPS + STEPS_AFTER)
    linear_step_and_compare(torch_lin, native_lin, inputs[:WARMUP_STEPS], "contiguous")
    for lin in (torch_lin, native_lin):
        torch.manual_seed(SEED + 6)
        WEIGHT_LAYOUTS[layout](lin)
        assert not lin.weight.is_contiguous()
    assert_same(native_lin.weight, torch_lin.weight, "weight")
    linear_step_and_compare(torch_lin, native_lin, inputs[WARMUP_STEPS:], layout)


def outcome(action):
    """The type of the exception ``action()`` raises, or None."""
    try:
        action()
    except Exception as error:  # noqa: BLE001 - compared between the backends
        return type(error)
    return None


@pytest.mark.parametrize(
    "shape", [(LIN_I, LIN_O), (LIN_O, LIN_I + 1), (LIN_O * LIN_I,), (1, LIN_O, LIN_I)]
)
@pytest.mark.parametrize(
    "reduction, delay", [(r, d) for r, d, inputs in LINEAR_CONFIGS if inputs == "dense"]
)
def test_linear_wrongly_shaped_weight_raises_on_both(reduction, delay, shape):
    results = []
    for backend in ("torch", "native"):
        lin = build_linear(backend, delay, reduction)
        x, trace_in = linear_inputs(1)[0]
        lin(x, trace_in)

        def action():
            lin.weight = nn.Parameter(torch.rand(shape), requires_grad=False)
            lin(x, trace_in)

        results.append(outcome(action))
    assert results[0] is not None, "the torch backend accepted a wrongly shaped weight"
    assert results[1] is results[0]


@pytest.mark.parametrize("how", ["data_index", "fill", "setitem", "mul_"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_delay_line_edits_are_seen(reduction, how, threads):
    """Spikes written into the delay line come out ``delay`` steps later on both backends."""
    torch_lin, native_lin = build_linear_pair(3, reduction)
    inputs = linear_inputs(10)
    linear_step_and_compare(torch_lin, native_lin, inputs[:4], "before")
    for lin in (torch_lin, native_lin):
        if how == "mul_":
            lin.spike_queue.mul_(3.0)
        else:
            mutate(lin, "spike_queue", how, 1.0, (2, 1, 0, 4))
    linear_step_and_compare(torch_lin, native_lin, inputs[4:], how)


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_large_delay_line_edits_are_seen(reduction, threads):
    """The threads' own copies of the delay line (2 threads, "sum") follow outside edits."""
    shape = dict(batch=BIG_LIN_B, n_in=BIG_LIN_I, n_out=BIG_LIN_O)
    torch_lin, native_lin = build_linear_pair(2, reduction, **shape)
    inputs = linear_inputs(12, BIG_LIN_B, BIG_LIN_I)
    linear_step_and_compare(torch_lin, native_lin, inputs[:4], "before")
    for lin in (torch_lin, native_lin):
        lin.spike_queue.data[1, 3, 0, 2999] = 5.0
        lin.spike_queue.data[0, 0, 0, 0] = 7.0
    linear_step_and_compare(torch_lin, native_lin, inputs[4:8], "data_index")
    for lin in (torch_lin, native_lin):
        lin.spike_queue.fill_(1.0)
        lin.weight.data[BIG_LIN_O - 1, BIG_LIN_I - 1] = 3.0
    linear_step_and_compare(torch_lin, native_lin, inputs[8:], "fill")


# -- point 6: aliasing --------------------------------------------------------------------------
def shares_memory(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@pytest.mark.parametrize("delay", [0, 2])
@pytest.mark.parametrize("backend", ["torch", "native"])
def test_linear_sum_returns_live_buffers(backend, delay, threads):
    """The aliasing rule, the same on both backends: ``reduction="sum"`` returns views of
    buffers that the module keeps (like the traces and the ``"none"`` activation), so each
    step's output is overwritten by the next step, in place; a clone keeps it."""
    lin = build_linear(backend, delay, "sum")
    inputs = linear_inputs(4)
    kept = []
    for x, trace_in in inputs:
        activation, trace = lin(x, trace_in)
        kept.append((activation, trace, activation.clone(), trace.clone()))
    last_activation, last_trace = kept[-1][2], kept[-1][3]
    for step, (activation, trace, activation_copy, trace_copy) in enumerate(kept):
        assert activation is kept[0][0] and trace is kept[0][1], f"step {step}: new views"
        # every returned view now holds the last step's values
        assert torch.equal(activation, last_activation), f"step {step}: activation not live"
        assert torch.equal(trace, last_trace), f"step {step}: trace not live"
        assert not shares_memory(trace, lin.pre_trace)
    changed = [not torch.equal(a, b) for (_, _, a, _), (_, _, b, _) in zip(kept, kept[1:])]
    assert any(changed), "the inputs must change the output for this test to mean anything"


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("model", MODELS)
def test_neurons_return_fresh_spikes_and_the_live_trace(model, backend):
    module = build(model, backend)
    inputs = make_inputs(model, 4)
    kept = []
    for x in inputs:
        out, trace = module(x)
        assert trace is module.trace, "the live trace buffer"
        if model.startswith("input"):
            assert out is x, "Input returns its input"
        else:
            assert out.dtype == torch.bool and out.shape == CELLS
            assert not shares_memory(out, module.spikes)
            kept.append((out, out.clone()))
    for step, (spikes, copy) in enumerate(kept):
        assert torch.equal(spikes, copy), f"step {step}: returned spikes changed later"


# -- point 7: threads, a whole chain -------------------------------------------------------------
@pytest.mark.parametrize("delay", [0, 2])
def test_large_chain_on_threads(delay, threads):
    """Input -> Linear(reduction="sum") -> LIF with 12000 presynaptic values. Input and
    connection state are equal bit for bit on any number of threads; the activation within
    ``8·eps·(|W| @ |s|)`` where the product may be split (2 threads), bit for bit on one thread,
    where the downstream neuron is compared too."""
    cells_in = (BIG_LIN_B, 1, BIG_LIN_I)
    cells_out = (BIG_LIN_B, 1, BIG_LIN_O)
    chains = []
    for backend in ("torch", "native"):
        torch.manual_seed(SEED)
        inp = Input(cells_in, DT, 0.75, 0.7, "linear", backend=backend)
        lin = Linear(BIG_LIN_I, BIG_LIN_O, BIG_LIN_B, DT, delay, reduction="sum", backend=backend)
        lin.reset_weights("neuron_scaled_uniform")
        neuron = LIFNeuron(
            cells_out,
            4.0,
            0.0,
            1.0,
            0.75,
            DT,
            DURATION_REFRAC,
            3.0,
            4.0,
            "exponential",
            backend=backend,
        )
        chains.append((inp, lin, neuron))
    (inp_t, lin_t, neuron_t), (inp_n, lin_n, neuron_n) = chains
    assert torch.equal(lin_t.weight, lin_n.weight)
    gen = generator(SEED + 7)
    fired = 0
    for step in range(10):
        where = f"step {step}"
        x = torch.rand(cells_in, generator=gen) < 0.3
        if step == 5:  # a mid-run edit of the weights and of the input trace decay
            for inp, lin in ((inp_t, lin_t), (inp_n, lin_n)):
                lin.weight.data[0, :100] = 0.5
                inp.tau_t.data[2, 0, 1500] = 0.1
        outs = []
        for inp, lin, neuron in chains:
            spikes_in, trace_in = inp(x)
            delayed = leaving_delay_line(lin, spikes_in)
            activation, trace = (t.clone() for t in lin(spikes_in, trace_in))
            spikes, post_trace = neuron(activation)
            outs.append((delayed, activation, trace, spikes, post_trace.clone()))
        (delayed, act_t, tr_t, sp_t, ptr_t), (_, act_n, tr_n, sp_n, ptr_n) = outs
        assert_same_state(inp_n, inp_t, INPUT_STATE, where)
        assert_same_state(lin_n, lin_t, LINEAR_STATE, where)
        assert_same(tr_n, tr_t, f"{where}: summed trace")
        assert_activation(act_n, act_t, lin_t.weight, delayed, threads > 1, where)
        if threads == 1:
            assert_same(sp_n, sp_t, f"{where}: neuron spikes")
            assert_same(ptr_n, ptr_t, f"{where}: neuron trace")
            assert_same_state(neuron_n, neuron_t, NEURON_STATE, where)
        fired += int(sp_t.sum())
    assert fired > 0


# -- a live connection output given a new layout on the same memory ------------------------------
@pytest.mark.parametrize("backend", ["torch", "native"])
def test_neuron_sees_relayout_of_a_live_connection_output(backend):
    """A neuron keeps the folded view of the connection output it saw last. If that tensor
    object is given another layout over the same first address (``x.data = ...``), the neuron
    must read it in its new layout: its result equals that of a neuron fed a copy."""
    batch, n_in, n_out = 2, 6, 5
    torch.manual_seed(SEED)
    lin = Linear(n_in, n_out, batch, DT, 0, reduction="sum", backend=backend)
    lin.reset_weights("uniform", a=0.0, b=0.5)
    params = (1.0, 0.0, 1.0, 1.0, DT, DURATION_REFRAC, 0.8, 0.7)
    fed_view = LIFNeuron((batch, 1, n_out), *params, backend=backend)
    fed_copy = LIFNeuron((batch, 1, n_out), *params, backend=backend)
    gen = generator(SEED + 11)
    for step in range(6):
        x = torch.rand(batch, 1, n_in, generator=gen) < 0.5
        activation, _ = lin(x, torch.zeros(batch, 1, n_in))
        if step == 3:  # same first address, row-major strides instead of the product's
            relaid = activation.data.as_strided(activation.shape, (n_out, n_out, 1, 1))
            assert relaid.data_ptr() == activation.data_ptr()
            assert relaid.stride() != activation.stride()
            activation.data = relaid
        expected = activation.clone()
        spikes_view, _ = fed_view(activation)
        spikes_copy, _ = fed_copy(expected)
        assert_same(spikes_view, spikes_copy, f"step {step}: spikes")
        assert_same(fed_view.v_cell, fed_copy.v_cell, f"step {step}: v_cell")


# -- the same memory read as another dtype ----------------------------------------------------
#: A dtype of the same size, for ``x.data = x.data.view(dtype)``: the data pointer, sizes and
#: strides stay; only how the bits are read changes.
SAME_SIZE_DTYPE = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.int32: torch.float32,
    torch.int64: torch.float64,
    torch.bool: torch.uint8,
    torch.uint8: torch.bool,
}


def reinterpret(module, name):
    tensor = getattr(module, name)
    tensor.data = tensor.data.view(SAME_SIZE_DTYPE[tensor.dtype])


def step_outcome(module, step, grad_mode=False):
    """What a step does: ``("raised", type, message)`` or ``("ran", outputs, state)``."""
    try:
        with torch.set_grad_enabled(grad_mode):
            outputs = tuple(t.detach().clone() for t in step(module))
    except Exception as error:  # compared, type and message, between the backends
        return ("raised", type(error), str(error))
    state = {name: t.detach().clone() for name, t in module.state_dict().items()}
    return ("ran", outputs, state)


def assert_same_outcome(got, expected, what):
    assert got[0] == expected[0], f"{what}: {got[:2]} vs {expected[:2]}"
    if got[0] == "raised":
        assert got[1:] == expected[1:], what
        return
    for index, (g, e) in enumerate(zip(got[1], expected[1])):
        assert_same(g, e, f"{what}: output {index}")
    assert got[2].keys() == expected[2].keys()
    for name in expected[2]:
        assert_same(got[2][name], expected[2][name], f"{what}: {name}")


def assert_reinterpreted_alike(modules, step, what):
    """After the same reinterpretation: "native" raises NativeUnavailableError where its kernel
    reads the tensor (a clear reason) or runs what "torch" runs; "auto" runs what "torch" runs
    (the same numbers, or the same error)."""
    expected = step_outcome(modules["torch"], step)
    native_outcome = step_outcome(modules["native"], step)
    if native_outcome[0] == "raised" and native_outcome[1] is NativeUnavailableError:
        assert "cannot run this step: " in native_outcome[2], what
    else:
        assert_same_outcome(native_outcome, expected, f"{what} (native)")
    assert_same_outcome(step_outcome(modules["auto"], step), expected, f"{what} (auto)")
    return native_outcome


@pytest.mark.filterwarnings("ignore:where received a uint8 condition")  # torch, on uint8 spikes
@pytest.mark.parametrize(
    "model, name",
    [
        pytest.param(model, name, marks=needs_fused_addcmul(model), id=f"{model}-{name}")
        for model in MODELS
        for name in dict.fromkeys(PARAMS[split(model)[0]] + state_names(model))
    ],
)
def test_memory_seen_as_another_dtype(model, name):
    """``x.data = x.data.view(<a dtype of the same size>)`` keeps the data pointer, sizes and
    strides, and changes only how the bits are read: the backends still agree (see
    :func:`assert_reinterpreted_alike`), and "native" refuses every tensor its kernel reads
    (thresh_center is read only with ``relax_to_center=True``)."""
    x = make_inputs(model, 1)[0]
    modules = {backend: build(model, backend) for backend in ("torch", "auto", "native")}
    for module in modules.values():
        with torch.no_grad():
            module(x)
        reinterpret(module, name)
    native_outcome = assert_reinterpreted_alike(modules, lambda m: m(x), name)
    read_by_kernel = name != "thresh_center" or split(model)[0] == "adaptive_relax"
    assert (native_outcome[0] == "raised") == read_by_kernel


@pytest.mark.parametrize("name", ["weight", "pre_trace", "pre_spikes", "spike_queue"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_linear_memory_seen_as_another_dtype(reduction, name):
    """The same for a connection's weight, presynaptic state and delay line, each of which the
    kernels read: "native" refuses them all."""
    x, trace_in = linear_inputs(1)[0]
    modules = {
        backend: build_linear(backend, 2, reduction) for backend in ("torch", "auto", "native")
    }
    for module in modules.values():
        with torch.no_grad():
            module(x, trace_in)
        reinterpret(module, name)
    native_outcome = assert_reinterpreted_alike(modules, lambda m: m(x, trace_in), name)
    assert native_outcome[0] == "raised"


# -- a state or parameter tensor that requires grad ---------------------------------------------
FLOAT_NAMES = {
    kind: tuple(name for name in names if name not in ("refrac_counts", "spikes"))
    for kind, names in PARAMS.items()
}


def assert_no_graph_in(module, what):
    """Every state and parameter tensor is a leaf: no autograd graph grew in the state (a
    connection's per-synapse buffers are views of its compact state, whose grad_fn is the
    view's own)."""
    for key, value in module.state_dict(keep_vars=True).items():
        if not value._is_view():
            assert value.grad_fn is None, f"{what}: {key} has grad_fn {value.grad_fn}"


@pytest.mark.parametrize("grad_mode", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize(
    "model, name",
    [
        pytest.param(model, name, marks=needs_fused_addcmul(model), id=f"{model}-{name}")
        for model in MODELS
        for name in FLOAT_NAMES[split(model)[0]]
    ],
)
def test_state_requiring_grad(model, name, grad_mode):
    """``<name>.requires_grad_()`` after some steps, then steps with grad enabled or under
    ``torch.no_grad()``: the step works in place on the state without autograd on every
    backend, so "torch", "auto" and "native" give the same numbers, the tensor stays a leaf
    that requires grad and no graph grows in the state. The threshold, a Parameter, is refused
    with the same TypeError on all three (as before)."""
    inputs = make_inputs(model, 4)
    modules = {backend: build(model, backend) for backend in ("torch", "auto", "native")}
    for module in modules.values():
        with torch.no_grad():
            module(inputs[0])
        getattr(module, name).requires_grad_(True)
    with torch.set_grad_enabled(grad_mode):
        if name == "thresh":
            for module in modules.values():
                with pytest.raises(TypeError, match="thresh requires grad"):
                    module(inputs[1])
            return
        for x in inputs[1:]:
            expected = step_outcome(modules["torch"], lambda m: m(x), grad_mode)
            assert expected[0] == "ran", expected[:3]
            for backend in ("auto", "native"):
                got = step_outcome(modules[backend], lambda m: m(x), grad_mode)
                assert_same_outcome(got, expected, backend)
    for backend, module in modules.items():
        assert getattr(module, name).requires_grad and getattr(module, name).is_leaf
        assert_no_graph_in(module, backend)


@pytest.mark.parametrize("grad_mode", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("name", ["pre_trace", "spike_queue"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_linear_state_requiring_grad(reduction, name, grad_mode):
    """The same for a connection's presynaptic trace and delay line."""
    inputs = linear_inputs(4)
    modules = {
        backend: build_linear(backend, 2, reduction) for backend in ("torch", "auto", "native")
    }
    for module in modules.values():
        with torch.no_grad():
            module(*inputs[0])
        getattr(module, name).requires_grad_(True)
    with torch.set_grad_enabled(grad_mode):
        for x, trace_in in inputs[1:]:
            expected = step_outcome(modules["torch"], lambda m: m(x, trace_in), grad_mode)
            assert expected[0] == "ran", expected[:3]
            for backend in ("auto", "native"):
                got = step_outcome(modules[backend], lambda m: m(x, trace_in), grad_mode)
                assert_same_outcome(got, expected, backend)
    for backend, module in modules.items():
        assert getattr(module, name).requires_grad
        assert_no_graph_in(module, backend)
