"""Bad arguments for the connections, the pooling layers and SNNNetwork.add_layer.

Each case: class × parameter × bad value → error type and a regex naming the parameter. Errors
are raised before any state changes (checked for every forward case).

Cases: Linear constructor 42, Conv2d constructor 40, MaxPool2d constructor 20,
AdaptiveMaxPool2d constructor 10, forward 14, add_layer 10 — 136 in all.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from pysnn.connection import AdaptiveMaxPool2d, Connection, Conv2d, Linear, MaxPool2d
from pysnn.network import SNNNetwork
from pysnn.neuron import Input, LIFNeuron

NAN, INF = float("nan"), float("inf")

LINEAR = dict(in_features=3, out_features=2, batch_size=1, dt=1.0, delay=0)
CONV = dict(in_channels=1, out_channels=2, kernel_size=3, im_dims=(5, 5), batch_size=1, dt=1.0)
CONV["delay"] = 0

# (parameter, bad value, error, regex)
LINEAR_CASES = [
    *[
        (p, v, ValueError, p)
        for p in ("in_features", "out_features", "batch_size")
        for v in (0, -1)
    ],
    *[
        (p, v, TypeError, p)
        for p in ("in_features", "out_features", "batch_size")
        for v in (1.5, True, "3", None)
    ],
    ("dt", 0.0, ValueError, "dt"),
    ("dt", -0.5, ValueError, "dt"),
    ("dt", NAN, ValueError, "dt"),
    ("dt", INF, ValueError, "dt"),
    ("dt", True, TypeError, "dt"),
    ("dt", "1", TypeError, "dt"),
    ("delay", -1, ValueError, r"delay must be >= 0"),
    ("delay", 1.5, TypeError, "delay"),
    ("delay", True, TypeError, "delay"),
    ("delay", "3", TypeError, "delay"),
    ("delay", None, TypeError, "delay"),
    ("delay", 10**30, ValueError, r"delay=\d+ steps is too large"),
    ("delay", 10**12, MemoryError, r"delay=1000000000000 steps need .* bytes"),
    ("delay", torch.tensor([[1, -1, 0]] * 2), ValueError, r"delay must be >= 0"),
    ("delay", torch.full((2, 3), 0.5), ValueError, r"delay.*whole numbers"),
    ("delay", torch.ones(2, 3, dtype=torch.bool), TypeError, "delay"),
    ("delay", torch.ones(2, 3, dtype=torch.complex64), TypeError, "delay"),
    ("delay", torch.ones(3, 2, dtype=torch.int64), ValueError, "delay of shape"),
    ("delay", torch.tensor(10**12), MemoryError, r"delay=up to 1000000000000 steps"),
    ("reduction", "mean", ValueError, "reduction"),
    ("reduction", None, (TypeError, ValueError), "reduction"),
    ("backend", "gpu", ValueError, "backend"),
]
LINEAR_SIZE_CASES = [
    (dict(in_features=10**6, out_features=10**6), MemoryError, r"in_features=1000000, out"),
    (dict(in_features=10**5, out_features=10**5, batch_size=10**3), MemoryError, "batch_size"),
]

CONV_CASES = [
    *[
        (p, v, ValueError, p)
        for p in ("in_channels", "out_channels", "batch_size")
        for v in (0, -1)
    ],
    *[(p, v, TypeError, p) for p in ("in_channels", "out_channels", "batch_size") for v in (1.5,)],
    *[(p, v, ValueError, p) for p in ("kernel_size",) for v in (0, -1, (3, 0), (-1, 3))],
    ("kernel_size", 2.5, TypeError, "kernel_size"),
    ("kernel_size", (1, 2, 3), TypeError, "kernel_size"),
    ("kernel_size", 7, ValueError, "does not fit"),
    *[(p, v, ValueError, p) for p in ("stride",) for v in (0, -1, (1, 0))],
    ("stride", True, TypeError, "stride"),
    ("stride", (1, 2, 3), TypeError, "stride"),
    *[(p, v, ValueError, p) for p in ("padding",) for v in (-1, (0, -1))],
    ("padding", True, TypeError, "padding"),
    ("padding", 1.0, TypeError, "padding"),
    *[(p, v, ValueError, p) for p in ("dilation",) for v in (0, -2, (1, 0))],
    ("dilation", 3, ValueError, "does not fit"),
    ("im_dims", 5, TypeError, "im_dims"),
    ("im_dims", (5.0, 5), TypeError, "im_dims"),
    ("im_dims", (0, 5), ValueError, "im_dims"),
    ("im_dims", (5, -1), ValueError, "im_dims"),
    ("im_dims", (5, 5, 5), NotImplementedError, "2-D"),
    ("dt", 0.0, ValueError, "dt"),
    ("delay", -1, ValueError, "delay"),
    ("delay", torch.ones(2, 9, 5), ValueError, "delay of shape"),
    ("delay", 10**12, MemoryError, r"delay=1000000000000 steps need"),
    ("reduction", "mean", ValueError, "reduction"),
]
CONV_SIZE_CASES = [
    (dict(in_channels=10**4, out_channels=10**4, batch_size=100), MemoryError, "in_channels"),
]

MAXPOOL_CASES = [
    *[("kernel_size", v, ValueError, "kernel_size") for v in (0, -1, (2, 0))],
    ("kernel_size", 1.5, TypeError, "kernel_size"),
    ("kernel_size", "2", TypeError, "kernel_size"),
    *[("stride", v, ValueError, "stride") for v in (0, -1, (2, 0))],
    ("stride", 1.0, TypeError, "stride"),
    *[("padding", v, ValueError, "padding") for v in (-1, 2, (0, 2))],
    ("padding", True, TypeError, "padding"),
    *[("dilation", v, ValueError, "dilation") for v in (0, -1)],
    ("dilation", 0.5, TypeError, "dilation"),
    *[("ceil_mode", v, TypeError, "ceil_mode") for v in ("no", 1, None, 0.0)],
]
ADAPTIVE_CASES = [
    *[("output_size", v, ValueError, "output_size") for v in (0, -1, (2, 0), (0, 0), (-3, 2))],
    *[("output_size", v, TypeError, "output_size") for v in ("3", 1.5, None, (2, 2, 2), True)],
]


def _id(case):
    return f"{case[0]}={case[1]!r}"[:40]


@pytest.mark.parametrize("case", LINEAR_CASES, ids=_id)
def test_linear_constructor(case):
    name, value, error, match = case
    with pytest.raises(error, match=f"Linear: .*{match}"):
        Linear(**{**LINEAR, name: value})


@pytest.mark.parametrize("kwargs, error, match", LINEAR_SIZE_CASES)
def test_linear_huge_sizes(kwargs, error, match):
    with pytest.raises(error, match=f"Linear: .*{match}.* bytes"):
        Linear(**{**LINEAR, **kwargs})


@pytest.mark.parametrize("case", CONV_CASES, ids=_id)
def test_conv2d_constructor(case):
    name, value, error, match = case
    with pytest.raises(error, match=f"Conv2d: .*{match}"):
        Conv2d(**{**CONV, name: value})


@pytest.mark.parametrize("kwargs, error, match", CONV_SIZE_CASES)
def test_conv2d_huge_sizes(kwargs, error, match):
    with pytest.raises(error, match=f"Conv2d: .*{match}.* bytes"):
        Conv2d(**{**CONV, **kwargs})


@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=_id)
def test_maxpool2d_constructor(case):
    name, value, error, match = case
    kwargs = {"kernel_size": 2, name: value}
    with pytest.raises(error, match=f"MaxPool2d: .*{match}"):
        MaxPool2d(**kwargs)


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=_id)
def test_adaptive_maxpool2d_constructor(case):
    _, value, error, match = case
    with pytest.raises(error, match=f"AdaptiveMaxPool2d: .*{match}"):
        AdaptiveMaxPool2d(value)


# -- forward -----------------------------------------------------------------------------------
def _linear():
    return Linear(3, 2, 2, 1.0, 2)


def _conv():
    return Conv2d(2, 1, 3, (5, 5), 1, 1.0, 1)


ONES = torch.ones
FORWARD_CASES = [
    # (make, x, trace, error, regex)
    (_linear, ONES(2, 3), ONES(2, 1, 3), ValueError, r"x must have shape \(2, 1, 3\)"),
    (_linear, ONES(2, 1, 3), ONES(1, 1, 3), ValueError, r"trace_in must have shape \(2, 1, 3\)"),
    (_linear, [[1.0, 0.0, 1.0]], ONES(2, 1, 3), TypeError, "x must be a torch.Tensor"),
    (_linear, ONES(2, 1, 3), 0.5, TypeError, "trace_in must be a torch.Tensor"),
    (_linear, ONES(2, 1, 3, requires_grad=True), ONES(2, 1, 3), TypeError, "x requires grad"),
    (_conv, ONES(1, 1, 5, 5), ONES(1, 2, 5, 5), ValueError, r"x must have shape \(1, 2, 5, 5\)"),
    (_conv, ONES(1, 2, 5, 5), ONES(1, 2, 4, 5), ValueError, "trace_in must have shape"),
    (_conv, np.ones((1, 2, 5, 5)), ONES(1, 2, 5, 5), TypeError, "x must be a torch.Tensor"),
    (lambda: MaxPool2d(2), ONES(1, 2, 4, 4), ONES(1, 2, 4, 5), ValueError, r"\(B, C, H, W\)"),
    (lambda: MaxPool2d(2), ONES(2, 4, 4), ONES(2, 4, 4), ValueError, r"\(B, C, H, W\)"),
    (lambda: MaxPool2d(2), np.ones((1, 1, 4, 4)), ONES(1, 1, 4, 4), TypeError, "tensors"),
    (lambda: AdaptiveMaxPool2d(2), ONES(1, 2, 4, 4), ONES(1, 1, 4, 4), ValueError, r"\(B, C"),
    (lambda: AdaptiveMaxPool2d(2), ONES(4, 4), ONES(4, 4), ValueError, r"\(B, C, H, W\)"),
    (lambda: AdaptiveMaxPool2d(2), ONES(1, 1, 4, 4), None, TypeError, "tensors"),
]


@pytest.mark.parametrize("case", FORWARD_CASES, ids=lambda c: c[4][:30])
def test_forward_errors_change_no_state(case):
    make, x, trace, error, match = case
    module = make()
    if isinstance(module, Connection):  # some state in flight first
        shape = module._input_shape if isinstance(module, Linear) else (1, 2, 5, 5)
        module(torch.ones(shape, dtype=torch.bool), torch.full(tuple(shape), 0.5))
    before = copy.deepcopy(module.state_dict())
    cursor = getattr(module, "_cursor", None)
    with pytest.raises(error, match=f"{type(module).__name__}: .*{match}"):
        module(x, trace)
    after = module.state_dict()
    assert list(before) == list(after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert getattr(module, "_cursor", None) == cursor


# -- add_layer ---------------------------------------------------------------------------------
B = 2


def _lif(cells):
    return LIFNeuron(cells, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5)


def _taken(attribute):
    def make():
        net = SNNNetwork()
        setattr(net, attribute, torch.zeros(1))
        return net

    return make


ADD_LAYER_CASES = [
    # (make net, name, connection, neuron, error, regex)
    (SNNNetwork, "a", lambda: nn.Linear(3, 4), lambda: _lif((B, 1, 4)), TypeError, "connection"),
    (SNNNetwork, "a", lambda: MaxPool2d(2), lambda: _lif((B, 1, 4)), TypeError, "connection"),
    (
        SNNNetwork,
        "a",
        lambda: Linear(3, 4, B, 1.0, 0),
        lambda: Input((B, 1, 4), 1.0, 1.0, 0.5),
        TypeError,
        "neuron",
    ),
    (SNNNetwork, "", lambda: Linear(3, 4, B, 1.0, 0), lambda: _lif((B, 1, 4)), KeyError, "name"),
    (SNNNetwork, "a.b", lambda: Linear(3, 4, B, 1.0, 0), lambda: _lif((B, 1, 4)), KeyError, "name"),
    (SNNNetwork, 3, lambda: Linear(3, 4, B, 1.0, 0), lambda: _lif((B, 1, 4)), KeyError, "name"),
    (
        SNNNetwork,
        "a",
        lambda: Linear(3, 4, B, 1.0, 0),
        lambda: _lif((B, 1, 5)),
        ValueError,
        r"cells_shape \(2, 1, 5\) does not match the Linear's output shape \(2, 1, 4\)",
    ),
    (
        SNNNetwork,
        "a",
        lambda: Conv2d(1, 2, 3, (5, 5), B, 1.0, 0),
        lambda: _lif((B, 2, 5, 5)),
        ValueError,
        r"cells_shape \(2, 2, 5, 5\) does not match the Conv2d's output shape \(2, 2, 3, 3\)",
    ),
    (
        _taken("a_connection"),
        "a",
        lambda: Linear(3, 4, B, 1.0, 0),
        lambda: _lif((B, 1, 4)),
        KeyError,
        "'a_connection' already exists",
    ),
    (
        _taken("a_neuron"),
        "a",
        lambda: Linear(3, 4, B, 1.0, 0),
        lambda: _lif((B, 1, 4)),
        KeyError,
        "'a_neuron' already exists",
    ),
]


@pytest.mark.parametrize("case", ADD_LAYER_CASES, ids=lambda c: c[5][:30])
def test_add_layer_errors_register_nothing(case):
    make_net, name, make_conn, make_neuron, error, match = case
    net = make_net()
    children = list(net.children())
    with pytest.raises(error, match=f"SNNNetwork.add_layer: .*{match}"):
        net.add_layer(name, make_conn(), make_neuron())
    assert len(net.layers) == 0 and list(net.children()) == children


def test_case_count_matches_the_header():
    counts = {
        "Linear constructor": len(LINEAR_CASES) + len(LINEAR_SIZE_CASES),
        "Conv2d constructor": len(CONV_CASES) + len(CONV_SIZE_CASES),
        "MaxPool2d constructor": len(MAXPOOL_CASES),
        "AdaptiveMaxPool2d constructor": len(ADAPTIVE_CASES),
        "forward": len(FORWARD_CASES),
        "add_layer": len(ADD_LAYER_CASES),
    }
    header = __doc__.replace("\n", " ")
    for label, n in counts.items():
        assert f"{label} {n}" in header, (label, n)
    assert f"{sum(counts.values())} in all" in header
