"""A newcomer's first hour with the neurons: short keyword construction with documented
defaults, a repr that shows the parameters, self-contained docstrings, and errors that say what
to do (a time constant for a decay factor, another batch size than the one built for).

PySNN's positional calls must keep building exactly the modules they built before.
"""

import inspect
import math

import pytest
import torch

from pysnn import neuron as neuron_module
from pysnn.neuron import (
    DEFAULT_TIME_CONSTANTS_MS,
    AdaptiveLIFNeuron,
    FedeNeuron,
    IFNeuron,
    Input,
    LIFNeuron,
)

CELLS = (2, 1, 3)

# PySNN 0.1.1's positional signatures (SPEC.md), keyword-only arguments left out
PYSNN_ORDER = {
    Input: ("cells_shape", "dt", "alpha_t", "tau_t", "update_type"),
    IFNeuron: (
        "cells_shape", "thresh", "v_rest", "alpha_v", "alpha_t", "dt", "duration_refrac",
        "tau_t", "update_type", "store_trace",
    ),
    LIFNeuron: (
        "cells_shape", "thresh", "v_rest", "alpha_v", "alpha_t", "dt", "duration_refrac",
        "tau_v", "tau_t", "update_type", "store_trace",
    ),
    AdaptiveLIFNeuron: (
        "cells_shape", "thresh", "v_rest", "alpha_v", "alpha_t", "dt", "duration_refrac",
        "tau_v", "tau_t", "alpha_thresh", "tau_thresh", "update_type", "store_trace",
    ),
    FedeNeuron: (
        "cells_shape", "thresh", "v_rest", "alpha_v", "alpha_t", "dt", "duration_refrac",
        "tau_v", "tau_t", "store_trace",
    ),
}  # fmt: skip

# PySNN-style positional calls with distinct values (dt = 0.5 ms)
POSITIONAL = {
    Input: (CELLS, 0.5, 0.3, 0.9),
    IFNeuron: (CELLS, 1.25, 0.1, 0.3, 0.7, 0.5, 1.0, 0.9),
    LIFNeuron: (CELLS, 1.25, 0.1, 0.3, 0.7, 0.5, 1.0, 0.85, 0.8),
    AdaptiveLIFNeuron: (CELLS, 1.25, 0.1, 0.3, 0.7, 0.5, 1.0, 0.85, 0.8, 0.2, 0.95),
    FedeNeuron: (CELLS, 1.25, 0.1, 0.3, 0.7, 0.5, 1.0, 3.0, 2.0),
}
CLASSES = list(POSITIONAL)
SPIKING = [cls for cls in CLASSES if cls is not Input]


def _state(module):
    return {key: value.clone() for key, value in module.state_dict().items()}


def _assert_same_module(a, b):
    sa, sb = _state(a), _state(b)
    assert list(sa) == list(sb)  # same buffers, same (PySNN's state_dict) order
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key
    assert a.update_type == b.update_type and a.backend == b.backend
    assert repr(a) == repr(b)


def _input_for(module, batch=None):
    shape = list(module.cells_shape)
    if batch is not None:
        shape[0] = batch
    if isinstance(module, Input):
        return (torch.ones(shape),)
    x = torch.ones(shape + [2])
    return (x, torch.zeros_like(x)) if isinstance(module, FedeNeuron) else (x,)


# -- defaults ------------------------------------------------------------------------------------


def test_the_issue_example_constructs():
    neuron = LIFNeuron(cells_shape=(1, 1, 100), thresh=1.0, tau_v=0.9)
    assert neuron.cells_shape == (1, 1, 100) and neuron.update_type == "linear"
    assert torch.equal(neuron.tau_v, torch.full((1, 1, 100), 0.9))


@pytest.mark.parametrize("cls", SPIKING)
def test_cells_shape_and_thresh_stay_required(cls):
    with pytest.raises(TypeError, match="thresh"):
        cls((1, 1, 3))
    with pytest.raises(TypeError, match="cells_shape"):
        cls()
    with pytest.raises(TypeError, match="cells_shape"):
        Input()


def _explicit_defaults(cls, dt, update_type):
    """The positional call that spells every default out (tau_* as exp(-dt/tau) or tau)."""

    def tau(name):
        t = DEFAULT_TIME_CONSTANTS_MS[name]
        return math.exp(-dt / t) if update_type == "linear" else t

    if cls is Input:
        return (CELLS, dt, 1.0, tau("tau_t"), update_type)
    head = (CELLS, 1.0, 0.0, 1.0, 1.0, dt, 0.0)
    if cls is IFNeuron:
        return head + (tau("tau_t"), update_type)
    if cls is LIFNeuron:
        return head + (tau("tau_v"), tau("tau_t"), update_type)
    if cls is AdaptiveLIFNeuron:
        return head + (tau("tau_v"), tau("tau_t"), 0.05, tau("tau_thresh"), update_type)
    return head + (tau("tau_v"), tau("tau_t"))  # FedeNeuron: always exponential


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dt", [1.0, 0.25])
@pytest.mark.parametrize(
    "cls, update_type",
    [
        (cls, kind)
        for cls in CLASSES
        for kind in ("linear", "exponential")
        if not (cls is FedeNeuron and kind == "linear")  # FedeNeuron is always exponential
    ],
)
def test_keyword_defaults_equal_the_explicit_positional_call(cls, update_type, dt, dtype):
    kwargs = {"dt": dt, "dtype": dtype}
    if cls is not FedeNeuron:
        kwargs["update_type"] = update_type
    if cls is not Input:
        kwargs["thresh"] = 1.0
    short = cls(CELLS, **kwargs)
    explicit = cls(*_explicit_defaults(cls, dt, update_type), dtype=dtype)
    _assert_same_module(short, explicit)
    # and they step alike
    for _ in range(3):
        out_short, out_explicit = short(*_input_for(short)), explicit(*_input_for(explicit))
        assert all(torch.equal(a, b) for a, b in zip(out_short, out_explicit))
    _assert_same_module(short, explicit)


def test_default_taus_are_documented_time_constants():
    assert DEFAULT_TIME_CONSTANTS_MS == {"tau_v": 20.0, "tau_t": 20.0, "tau_thresh": 100.0}
    lin = AdaptiveLIFNeuron(CELLS, 1.0, dt=0.5, dtype=torch.float64)
    assert torch.all(lin.tau_v == math.exp(-0.5 / 20)) and torch.all(lin.tau_t == lin.tau_v)
    assert torch.all(lin.tau_thresh == math.exp(-0.5 / 100))
    exp = AdaptiveLIFNeuron(CELLS, 1.0, dt=0.5, update_type="exponential")
    assert torch.all(exp.tau_v == 20) and torch.all(exp.tau_t == 20)
    assert torch.all(exp.tau_thresh == 100)
    assert torch.all(FedeNeuron(CELLS, 1.0).tau_v == 20)


@pytest.mark.parametrize("cls", CLASSES)
def test_signature_defaults(cls):
    params = inspect.signature(cls).parameters
    expected = {
        "v_rest": 0.0,
        "alpha_v": 1.0,
        "alpha_t": 1.0,
        "dt": 1.0,
        "duration_refrac": 0.0,
        "tau_v": None,
        "tau_t": None,
        "alpha_thresh": 0.05,
        "tau_thresh": None,
        "update_type": "linear",
        "store_trace": False,
    }
    for name, param in params.items():
        if name in expected:
            assert param.default == expected[name], name
    for name in ("cells_shape", "thresh"):
        if name in params:
            assert params[name].default is inspect.Parameter.empty, name


def test_default_refractory_period_zero_lets_a_cell_fire_on_consecutive_steps():
    neuron = IFNeuron((1, 1, 1), 1.0)  # duration_refrac=0.0
    fired = [bool(neuron(torch.full((1, 1, 1, 1), 2.0))[0]) for _ in range(4)]
    assert fired == [True] * 4 and neuron.refrac_steps == 0
    assert neuron.v_cell.item() == 0.0  # reset to v_rest all the same


def test_a_default_time_constant_below_dt_names_the_parameter_and_the_default():
    with pytest.raises(ValueError) as error:
        LIFNeuron(CELLS, 1.0, dt=25.0, update_type="exponential", tau_t=30.0)
    message = str(error.value)
    assert message.startswith("LIFNeuron: tau_v must be >= dt = 25 ms")
    assert "its default, 20 ms" in message and "pass tau_v explicitly" in message


# -- PySNN's positional calls --------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_pysnn_positional_order_is_kept(cls):
    names = list(inspect.signature(cls).parameters)
    order = PYSNN_ORDER[cls]
    assert names[: len(order)] == list(order)
    kinds = [inspect.signature(cls).parameters[n].kind for n in order]
    assert all(kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for kind in kinds)


@pytest.mark.parametrize("cls", CLASSES)
def test_pysnn_positional_calls_build_the_same_modules(cls):
    """Each positional value lands in the buffer of its PySNN name, and the keyword call with
    the same values builds an identical module."""
    args = POSITIONAL[cls]
    positional = cls(*args, dtype=torch.float64)
    keywords = cls(**dict(zip(PYSNN_ORDER[cls], args)), dtype=torch.float64)
    _assert_same_module(positional, keywords)
    for name, value in zip(PYSNN_ORDER[cls][1:], args[1:]):
        stored = {**dict(positional.named_buffers()), **dict(positional.named_parameters())}
        tensor = stored[name]
        assert torch.all(tensor == value), name
        if name not in ("v_rest", "dt", "duration_refrac"):
            assert tensor.shape == CELLS, name
    assert positional.update_type == ("exponential" if cls is FedeNeuron else "linear")


def test_pysnn_positional_flags_still_work():
    neuron = LIFNeuron(CELLS, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 4.0, 3.0, "exponential", True)
    assert neuron.update_type == "exponential" and neuron.store_trace
    adaptive = AdaptiveLIFNeuron(
        CELLS, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.9, 0.8, 0.2, 0.95, "linear", True
    )
    assert adaptive.store_trace and torch.all(adaptive.alpha_thresh == 0.2)
    assert Input(CELLS, 1.0, 1.0, 5.0, "exponential").update_type == "exponential"
    assert FedeNeuron(CELLS, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 3.0, 2.0, True).store_trace


# -- repr ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_repr_shows_every_parameter_with_its_shared_value(cls):
    text = repr(cls(*POSITIONAL[cls]))
    assert text.startswith(f"{cls.__name__}(cells_shape={CELLS}, ")
    args = dict(zip(PYSNN_ORDER[cls], POSITIONAL[cls]))
    for name, value in args.items():
        if name != "cells_shape":
            assert f"{name}={value:g}," in text or f"{name}={value:g})" in text, (name, text)
    assert "update_type='" in text and "backend='" in text
    if cls is AdaptiveLIFNeuron:
        assert "relax_to_center=False" in text


def test_repr_of_the_issue_example():
    assert repr(LIFNeuron(cells_shape=(1, 1, 100), thresh=1.0, tau_v=0.9)) == (
        "LIFNeuron(cells_shape=(1, 1, 100), thresh=1, v_rest=0, dt=1, duration_refrac=0, "
        "alpha_v=1, alpha_t=1, tau_v=0.9, tau_t=0.951229, update_type='linear', backend='auto')"
    )


def test_repr_summarises_per_cell_parameters():
    neuron = AdaptiveLIFNeuron(
        CELLS,
        torch.tensor([1.0, 1.5, 2.0]),
        tau_v=torch.tensor([0.8, 0.9, 0.95]),
        alpha_thresh=torch.tensor([[[0.1, 0.2, 0.3]], [[0.4, 0.5, 0.6]]]),
        store_trace=True,
    )
    text = repr(neuron)
    assert "thresh=[1..2] (per cell)" in text
    assert "tau_v=[0.8..0.95] (per cell)" in text
    assert "alpha_thresh=[0.1..0.6] (per cell)" in text
    assert "tau_t=0.951229," in text and "store_trace=True" in text
    inp = Input(CELLS, alpha_t=torch.tensor([1.0, 2.0, 3.0]))
    assert "alpha_t=[1..3] (per cell)" in repr(inp) and "tau_t=0.951229" in repr(inp)


def test_repr_follows_the_live_values():
    neuron = LIFNeuron(CELLS, 1.0)
    neuron.tau_v[0, 0, 0] = 0.5
    assert "tau_v=[0.5..0.951229] (per cell)" in repr(neuron)
    neuron.backend = "torch"
    assert "backend='torch'" in repr(neuron)


@pytest.mark.parametrize("cls", CLASSES)
def test_repr_on_the_meta_device_shows_shapes(cls):
    text = repr(cls(*POSITIONAL[cls], device="meta"))
    assert "tensor of shape (2, 1, 3) on meta" in text and "update_type=" in text


# -- docstrings ----------------------------------------------------------------------------------

PUBLIC_CLASSES = [
    getattr(neuron_module, name)
    for name in neuron_module.__all__
    if inspect.isclass(getattr(neuron_module, name))
]


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda cls: cls.__name__)
def test_docstring_documents_every_parameter(cls):
    doc = inspect.getdoc(cls)
    for name in inspect.signature(cls).parameters:
        assert f":param {name}:" in doc, f"{cls.__name__} does not document {name}"
    assert "as :class:`IFNeuron`" not in doc and "Parameters as" not in doc


@pytest.mark.parametrize("cls", CLASSES)
def test_docstring_says_what_tau_means_and_the_units(cls):
    doc = " ".join(inspect.getdoc(cls).split())
    assert "time constant in ms" in doc
    if cls is not FedeNeuron:
        assert "decay factor per step in [0, 1]" in doc
    assert "dt: time step in ms" in doc
    assert "State" in doc and "cells_shape" in doc


# -- errors --------------------------------------------------------------------------------------

TIME_CONSTANT_IN_LINEAR = [
    (Input, "tau_t"),
    (IFNeuron, "tau_t"),
    (LIFNeuron, "tau_v"),
    (LIFNeuron, "tau_t"),
    (AdaptiveLIFNeuron, "tau_thresh"),
]


@pytest.mark.parametrize("cls, name", TIME_CONSTANT_IN_LINEAR)
def test_a_time_constant_under_linear_suggests_exponential(cls, name):
    kwargs = {} if cls is Input else {"thresh": 1.0}
    with pytest.raises(ValueError) as error:
        cls(CELLS, **kwargs, **{name: 20.0})
    message = str(error.value)
    assert message.startswith(
        f"{cls.__name__}: {name} must lie in [0, 1] for update_type='linear', got 20"
    )
    assert "decay factors per step" in message and "time constant in ms" in message
    assert "update_type='exponential'" in message
    cls(CELLS, **kwargs, **{name: 20.0}, update_type="exponential")  # the suggestion works


def test_a_negative_decay_gets_no_suggestion():
    with pytest.raises(ValueError) as error:
        LIFNeuron(CELLS, 1.0, tau_v=-0.5)
    assert "exponential" not in str(error.value)


def test_switching_to_linear_with_time_constants_gets_the_suggestion_too():
    neuron = LIFNeuron(CELLS, 1.0, update_type="exponential")
    with pytest.raises(ValueError, match=r"tau_v must lie in \[0, 1\].*update_type='exponent"):
        neuron.update_type = "linear"
    assert neuron.update_type == "exponential"


@pytest.mark.parametrize("cls, name", TIME_CONSTANT_IN_LINEAR)
def test_a_decay_factor_under_exponential_suggests_linear(cls, name):
    kwargs = {} if cls is Input else {"thresh": 1.0}
    with pytest.raises(ValueError) as error:
        cls(CELLS, **kwargs, update_type="exponential", **{name: 0.9})
    message = str(error.value)
    assert message.startswith(f"{cls.__name__}: {name} must be >= dt = 1 ms")
    assert "decay factor per step in [0, 1]" in message and "update_type='linear'" in message


BATCH_WORDS = (
    "does not broadcast",
    "its batch size is 5",
    "built for batch size 2",
    "batch size is fixed at construction (cells_shape[0] = 2)",
    "kept per sample",
    "construct the modules again with cells_shape[0] = 5",
    "batch_size=5",
)


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("cls", CLASSES)
def test_another_batch_size_says_it_is_fixed_at_construction(cls, backend):
    kwargs = {} if cls is FedeNeuron else {"backend": backend}
    module = cls(*POSITIONAL[cls], **kwargs)
    module(*_input_for(module))
    before = _state(module)
    with pytest.raises(ValueError) as error:
        module(*_input_for(module, batch=5))
    message = str(error.value)
    name = {Input: "x", FedeNeuron: "x"}.get(cls, "input")
    assert message.startswith(f"{cls.__name__}: {name} of shape (5, 1, 3")
    for words in BATCH_WORDS:
        assert words in message, words
    after = _state(module)
    assert all(torch.equal(before[k], after[k]) for k in before)  # refused before any change
    module(*_input_for(module, batch=1))  # a batch of 1 still broadcasts


def test_a_smaller_last_batch_gets_the_hint_too():
    neuron = LIFNeuron((8, 1, 3), 1.0)
    with pytest.raises(ValueError, match=r"built for batch size 8.*drop_last=True"):
        neuron(torch.ones(3, 1, 3, 1))


def test_no_batch_hint_when_the_cell_axes_do_not_fit_either():
    neuron = LIFNeuron(CELLS, 1.0)
    with pytest.raises(ValueError) as error:
        neuron(torch.ones(5, 1, 4, 2))
    assert "does not broadcast to cells_shape" in str(error.value)
    assert "batch size" not in str(error.value)
    with pytest.raises(ValueError) as error:
        Input(CELLS)(torch.ones(5, 1, 4))
    assert "batch size" not in str(error.value)
