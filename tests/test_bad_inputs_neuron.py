"""Bad constructor arguments and bad forward inputs of pysnn.neuron → clear errors.

Each case is class × parameter (or input) × bad value → error type and a regex that names the
parameter. Forward cases also check that every buffer (and the threshold parameter and the spike
history) is unchanged after the error, on ``backend="torch"`` and, where the C kernels are
available and enabled, ``backend="native"`` (FedeNeuron has the PyTorch backend only).

Case counts (see CONSTRUCTOR_CASES / FORWARD_CASES below; test ids ``<class>-<param>-<value>``):

* constructor: 22 shared cases × 5 classes (110) + 19 shared neuron cases × 4 neurons (76)
  + 6 Input-only + 9 (IF/LIF/adaptive: update_type, backend, exponential tau_t, × 3)
  + 8 LIF/adaptive tau_v (4 × 2) + 6 adaptive-only + 5 Fede-only = 220 cases;
* forward: 3 Input + 10 × 3 neurons (IF, LIF, adaptive) + 9 Fede = 42 inputs, run on 2 backends
  where one applies (Fede: torch only) → 75 parametrisations (skipped on native when the
  kernels are off);
* accepted values: 5 (numpy integers in cells_shape, one per class).
"""

import math

import numpy as np
import pytest
import torch

from pysnn import native
from pysnn.neuron import AdaptiveLIFNeuron, FedeNeuron, IFNeuron, Input, LIFNeuron

CELLS = (1, 1, 3)  # batch 1: the case where a missing fan-in axis used to go unnoticed

DEFAULTS = {
    Input: dict(cells_shape=CELLS, dt=1.0, alpha_t=1.0, tau_t=0.8),
    IFNeuron: dict(
        cells_shape=CELLS,
        thresh=1.0,
        v_rest=0.0,
        alpha_v=0.6,
        alpha_t=1.0,
        dt=1.0,
        duration_refrac=1.0,
        tau_t=0.8,
    ),
    LIFNeuron: dict(
        cells_shape=CELLS,
        thresh=1.0,
        v_rest=0.0,
        alpha_v=0.6,
        alpha_t=1.0,
        dt=1.0,
        duration_refrac=1.0,
        tau_v=0.9,
        tau_t=0.8,
    ),
    AdaptiveLIFNeuron: dict(
        cells_shape=CELLS,
        thresh=1.0,
        v_rest=0.0,
        alpha_v=0.6,
        alpha_t=1.0,
        dt=1.0,
        duration_refrac=1.0,
        tau_v=0.9,
        tau_t=0.8,
        alpha_thresh=0.2,
        tau_thresh=0.9,
    ),
    FedeNeuron: dict(
        cells_shape=CELLS,
        thresh=0.5,
        v_rest=0.0,
        alpha_v=1.0,
        alpha_t=1.0,
        dt=1.0,
        duration_refrac=1.0,
        tau_v=2.0,
        tau_t=2.0,
    ),
}
ALL = list(DEFAULTS)
NEURONS = [IFNeuron, LIFNeuron, AdaptiveLIFNeuron, FedeNeuron]
UPDATE_TYPED = [IFNeuron, LIFNeuron, AdaptiveLIFNeuron]  # update_type and backend arguments
EXPONENTIAL = dict(update_type="exponential", tau_v=4.0, tau_t=4.0, tau_thresh=4.0)

# (change, error type, regex naming the parameter)
SHARED = [
    (dict(cells_shape=3), TypeError, "cells_shape"),
    (dict(cells_shape=()), TypeError, "cells_shape"),
    (dict(cells_shape="abc"), TypeError, "cells_shape"),
    (dict(cells_shape=(1, 0, 3)), ValueError, "cells_shape"),
    (dict(cells_shape=(1, -1, 3)), ValueError, "cells_shape"),
    (dict(cells_shape=(1, 1.5, 3)), ValueError, "cells_shape"),
    (dict(cells_shape=(1, True, 3)), ValueError, "cells_shape"),
    (dict(dt=0.0), ValueError, "dt"),
    (dict(dt=-1.0), ValueError, "dt"),
    (dict(dt=math.nan), ValueError, "dt"),
    (dict(dt=math.inf), ValueError, "dt"),
    (dict(dt=True), TypeError, "dt"),
    (dict(dt="1"), TypeError, "dt"),
    (dict(dt=1e-300), ValueError, r"dt = 1e-300 ms becomes 0.0 in torch.float32"),
    (dict(dt=1e300), ValueError, r"dt = 1e\+300 ms becomes inf in torch.float32"),
    (dict(alpha_t="1"), TypeError, "alpha_t"),
    (dict(alpha_t=math.nan), ValueError, "alpha_t must be finite"),
    (dict(alpha_t=torch.ones(4)), ValueError, "alpha_t of shape"),
    (dict(alpha_t=1e300), ValueError, "alpha_t must be finite"),
    (dict(alpha_t=torch.tensor(1 + 1j)), TypeError, "alpha_t must be real"),
    (dict(tau_t=math.nan), ValueError, "tau_t"),
    (dict(tau_t="0.5"), TypeError, "tau_t"),
]
NEURON_SHARED = [
    (dict(thresh="1"), TypeError, "thresh"),
    (dict(thresh=True), TypeError, "thresh"),
    (dict(thresh=math.inf), ValueError, "thresh must be finite"),
    (dict(thresh=torch.ones(4)), ValueError, "thresh of shape"),
    (dict(v_rest=math.nan), ValueError, "v_rest must be finite"),
    (dict(v_rest=math.inf), ValueError, "v_rest must be finite"),
    (dict(v_rest=-math.inf), ValueError, "v_rest must be finite"),
    (dict(v_rest=1e300), ValueError, r"v_rest must be finite \(in torch.float32\)"),
    (dict(v_rest=True), TypeError, "v_rest"),
    (dict(v_rest="0"), TypeError, "v_rest"),
    (dict(alpha_v=math.nan), ValueError, "alpha_v must be finite"),
    (dict(alpha_v=None), TypeError, "alpha_v"),
    (dict(duration_refrac=-1.0), ValueError, "duration_refrac"),
    (dict(duration_refrac=0.5), ValueError, "duration_refrac must be an integer multiple"),
    (dict(duration_refrac=math.inf), ValueError, "duration_refrac"),
    (dict(duration_refrac="1"), TypeError, "duration_refrac"),
    (dict(store_trace=1), TypeError, "store_trace must be a bool"),
    (dict(store_trace="False"), TypeError, "store_trace must be a bool"),
    (dict(store_trace=None), TypeError, "store_trace must be a bool"),
]
INPUT_ONLY = [
    (dict(tau_t=1.5), ValueError, r"tau_t must lie in \[0, 1\]"),
    (dict(tau_t=-0.1), ValueError, r"tau_t must lie in \[0, 1\]"),
    (dict(update_type="exponential", tau_t=0.5), ValueError, "tau_t must be >= dt = 1 ms"),
    (dict(update_type="exponential", tau_t=0.0), ValueError, "tau_t must be > 0"),
    (dict(update_type="exp"), ValueError, "update_type"),
    (dict(backend="gpu"), ValueError, "backend"),
]
UPDATE_TYPED_ONLY = [
    (dict(update_type="exp"), ValueError, "update_type"),
    (dict(backend="gpu"), ValueError, "backend"),
    (dict(EXPONENTIAL, tau_t=0.5), ValueError, "tau_t must be >= dt = 1 ms"),
]
LIF_ONLY = [  # LIF and adaptive LIF
    (dict(tau_v=1.5), ValueError, r"tau_v must lie in \[0, 1\]"),
    (dict(tau_v=-0.5), ValueError, r"tau_v must lie in \[0, 1\]"),
    (dict(EXPONENTIAL, tau_v=0.5), ValueError, "tau_v must be >= dt = 1 ms"),
    (dict(EXPONENTIAL, tau_v=torch.tensor([4.0, 0.9, 4.0])), ValueError, "tau_v must be >= dt"),
]
ADAPTIVE_ONLY = [
    (dict(tau_thresh=1.5), ValueError, r"tau_thresh must lie in \[0, 1\]"),
    (dict(EXPONENTIAL, tau_thresh=0.5), ValueError, "tau_thresh must be >= dt = 1 ms"),
    (dict(alpha_thresh=math.nan), ValueError, "alpha_thresh must be finite"),
    (dict(relax_to_center="False"), TypeError, "relax_to_center must be a bool"),
    (dict(relax_to_center=1), TypeError, "relax_to_center must be a bool"),
    (dict(relax_to_center=None), TypeError, "relax_to_center must be a bool"),
]
FEDE_ONLY = [
    (dict(tau_v=0.5), ValueError, "tau_v must be >= dt = 1 ms for update_type='exponential'"),
    (dict(tau_v=0.0), ValueError, "tau_v must be > 0"),
    (dict(tau_t=0.5), ValueError, "tau_t must be >= dt = 1 ms for update_type='exponential'"),
    (dict(dt=4.0, duration_refrac=4.0), ValueError, "tau_v must be >= dt = 4 ms"),
    (dict(tau_v=-1.0), ValueError, "tau_v must be > 0"),
]


def _cases():
    table = [(cls, case) for cls in ALL for case in SHARED]
    table += [(cls, case) for cls in NEURONS for case in NEURON_SHARED]
    table += [(Input, case) for case in INPUT_ONLY]
    table += [(cls, case) for cls in UPDATE_TYPED for case in UPDATE_TYPED_ONLY]
    table += [(cls, case) for cls in (LIFNeuron, AdaptiveLIFNeuron) for case in LIF_ONLY]
    table += [(AdaptiveLIFNeuron, case) for case in ADAPTIVE_ONLY]
    table += [(FedeNeuron, case) for case in FEDE_ONLY]
    return [
        pytest.param(cls, *case, id=f"{cls.__name__}-{'-'.join(case[0])}-{i}")
        for i, (cls, case) in enumerate(table)
    ]


CONSTRUCTOR_CASES = _cases()
assert len(CONSTRUCTOR_CASES) == 220


def make(cls, **change):
    args = {**DEFAULTS[cls], **change}
    if cls is IFNeuron:
        args.pop("tau_v", None)
    if cls in (IFNeuron, LIFNeuron):
        args.pop("tau_thresh", None)
    if cls is FedeNeuron:
        args.pop("tau_thresh", None)
    return cls(**args)


@pytest.mark.parametrize("cls, change, error, match", CONSTRUCTOR_CASES)
def test_bad_constructor_argument(cls, change, error, match):
    with pytest.raises(error, match=match):
        make(cls, **change)


@pytest.mark.parametrize("cls", ALL)
def test_numpy_integers_in_cells_shape_are_accepted(cls):
    module = make(cls, cells_shape=(np.int64(1), np.int32(1), np.int64(3)))
    assert module.cells_shape == CELLS and all(type(n) is int for n in module.cells_shape)


# -- forward inputs --------------------------------------------------------------------------
def good_input(cls):
    return torch.rand(CELLS) < 0.5 if cls is Input else torch.rand(CELLS + (2,))


R2 = CELLS + (2,)
INPUT_FORWARD = [
    ("shape", lambda: torch.ones(1, 1, 4), ValueError, r"x of shape \(1, 1, 4\)"),
    ("list", lambda: [[[1.0, 0.0, 1.0]]], TypeError, "x must be a torch.Tensor"),
    ("grad", lambda: torch.ones(CELLS, requires_grad=True), TypeError, "x requires grad"),
]
NEURON_FORWARD = [
    ("no-fan-in", lambda: torch.tensor([[[0.5, 0.0, 0.0]]]), ValueError, "input.*fan-in axis"),
    ("extra-axis", lambda: torch.ones(1, 1, 1, 3, 1), ValueError, "input.*fan-in axis"),
    ("cell-axes", lambda: torch.ones(1, 1, 4, 2), ValueError, r"input of shape \(1, 1, 4, 2\)"),
    ("complex", lambda: torch.ones(R2, dtype=torch.complex64), TypeError, "input must be real"),
    ("empty-list", lambda: [], ValueError, "input list is empty"),
    ("non-tensor-in-list", lambda: [torch.ones(R2), 1.0], TypeError, "input list.*float"),
    ("mismatched-list", lambda: [torch.ones(R2), torch.ones(2, 1, 3, 1)], ValueError, "input list"),
    ("numpy", lambda: np.ones(R2), TypeError, "input must be a torch.Tensor"),
    ("string", lambda: "spikes", TypeError, "input must be a torch.Tensor"),
    ("grad", lambda: torch.ones(R2, requires_grad=True), TypeError, "input requires grad"),
]
FEDE_FORWARD = [  # (name, (x, pre_trace), error, regex)
    ("x-no-fan-in", lambda: (torch.ones(CELLS), torch.ones(R2)), ValueError, "x of shape.*fan-in"),
    (
        "trace-no-fan-in",
        lambda: (torch.ones(R2), torch.ones(CELLS)),
        ValueError,
        "pre_trace of shape.*fan-in",
    ),
    (
        "x-complex",
        lambda: (torch.ones(R2, dtype=torch.cfloat), torch.ones(R2)),
        TypeError,
        "x must",
    ),
    (
        "trace-complex",
        lambda: (torch.ones(R2), torch.ones(R2, dtype=torch.cfloat)),
        TypeError,
        "pre_trace must be real",
    ),
    ("x-empty", lambda: ([], torch.ones(R2)), ValueError, "x list is empty"),
    ("trace-empty", lambda: (torch.ones(R2), []), ValueError, "pre_trace list is empty"),
    (
        "trace-R",
        lambda: (torch.ones(R2), torch.ones(CELLS + (3,))),
        ValueError,
        r"pre_trace of shape \(1, 1, 3, 3\)",
    ),
    ("x-numpy", lambda: (np.ones(R2), torch.ones(R2)), TypeError, "x must be a torch.Tensor"),
    (
        "grad",
        lambda: (torch.ones(R2, requires_grad=True), torch.ones(R2)),
        TypeError,
        "input requires grad",
    ),
]
NATIVE = native.available() and native.enabled()


def _forward_cases():
    table = [(Input, case) for case in INPUT_FORWARD]
    table += [
        (cls, case) for cls in (IFNeuron, LIFNeuron, AdaptiveLIFNeuron) for case in NEURON_FORWARD
    ]
    table += [(FedeNeuron, case) for case in FEDE_FORWARD]
    params = []
    for cls, (name, bad, error, match) in table:
        for backend in ("torch", "native") if cls is not FedeNeuron else ("torch",):
            marks = pytest.mark.skipif(
                backend == "native" and not NATIVE, reason="native kernels not available"
            )
            params.append(
                pytest.param(
                    cls,
                    backend,
                    bad,
                    error,
                    match,
                    marks=marks,
                    id=f"{cls.__name__}-{name}-{backend}",
                )
            )
    return params


FORWARD_CASES = _forward_cases()
assert len(FORWARD_CASES) == 75


def _snapshot(module) -> dict:
    state = {name: t.clone() for name, t in module.named_buffers()}
    state.update({name: p.detach().clone() for name, p in module.named_parameters()})
    if getattr(module, "complete_trace", None) is not None:
        state["complete_trace"] = module.complete_trace.clone()
    return state


@pytest.mark.parametrize("cls, backend, bad, error, match", FORWARD_CASES)
def test_bad_forward_input_changes_nothing(cls, backend, bad, error, match):
    torch.manual_seed(0)
    extra = {} if cls is FedeNeuron else {"backend": backend}
    if cls is not Input:
        extra["store_trace"] = True
    module = make(cls, **extra)
    for _ in range(3):  # a state that is not the reset state
        if cls is FedeNeuron:
            module(good_input(cls), torch.rand(R2))
        else:
            module(good_input(cls))
    before = _snapshot(module)
    with pytest.raises(error, match=match):
        if cls is FedeNeuron:
            module(*bad())
        else:
            module(bad())
    after = _snapshot(module)
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), f"{name} changed"
    # the module still steps normally afterwards
    if cls is FedeNeuron:
        module(good_input(cls), torch.rand(R2))
    else:
        module(good_input(cls))
