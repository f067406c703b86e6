"""PySNN 0.1.1's own test suite, restated against pysnn.

Read from PySNN 0.1.1's repository (commit 4f346cf, ``tests/test_connection.py``,
``tests/test_functional.py``, ``tests/test_learning.py``, ``tests/test_neuron.py``) and rewritten here
in our own words: each test below performs the same calls with the same arguments and checks the same
properties (shapes, values, timings) as the PySNN test named in its docstring. Parametrised cases are
kept one-for-one, so this module collects the same 36 test cases that PySNN's suite collects.

PySNN's suite also *defines* three tests that never run there: its IF-neuron forward test is shadowed by
a later function of the same name (``test_lif_forward``), and both learning-rule step tests are hidden
because ``test_mstdpet_step`` is redefined as a fixture with no parameters (reference B31). They are not
part of the 36 and are not mirrored here; pysnn's learning rules are covered in ``test_learning.py``.
"""

from collections import OrderedDict

import pytest
import torch
from torch.nn import Parameter

from pysnn.connection import Connection, Conv2d, Linear
from pysnn.functional import (
    exponential_thresh_update,
    exponential_trace_update,
    fede_voltage_update,
    if_voltage_update,
    lif_exponential_voltage_update,
    lif_linear_voltage_update,
    linear_thresh_update,
    linear_trace_update,
)
from pysnn.learning import LearningRule
from pysnn.neuron import AdaptiveLIFNeuron, BaseNeuron, FedeNeuron, Input, LIFNeuron


def _full(shape, value, dtype=torch.float):
    return torch.full(shape, value, dtype=dtype)


# ---------------------------------------------------------------------------------------------------
# pysnn.connection  (PySNN tests/test_connection.py)
# ---------------------------------------------------------------------------------------------------
# Connection(shape, dt, delay); PySNN labels the shape "(in feat, out feat, batch)".
SYNAPSE_SHAPE = (1, 4, 2)

# (spikes fed in, spikes expected out) -- the three cases PySNN uses for both propagation tests.
PROPAGATION_CASES = [
    pytest.param(torch.zeros(1, 1, 2, dtype=torch.bool), torch.zeros(1, 4, 2), id="silent"),
    pytest.param(torch.ones(1, 1, 2, dtype=torch.bool), torch.ones(1, 4, 2), id="all"),
    pytest.param(
        torch.tensor([[[True, False]]]),
        torch.tensor([[[1.0, 0.0]] * 4]),
        id="first-only",
    ),
]


def _bare_connection(delay):
    """A base Connection given a (4, 1) weight Parameter by hand, as PySNN's fixtures do."""
    conn = Connection(SYNAPSE_SHAPE, 1.0, delay)
    conn.weight = Parameter(torch.empty(SYNAPSE_SHAPE[1], SYNAPSE_SHAPE[0]))
    conn.init_connection()
    return conn


@pytest.mark.parametrize("spikes_in, spikes_out", PROPAGATION_CASES)
def test_propagate_delayed(spikes_in, spikes_out):
    """Mirrors PySNN ``test_connection.py::test_propagate_delayed``.

    Connection((1, 4, 2), dt=1.0, delay=3): the spike fed at the first call is not seen then; after
    ``delay_init - 1`` further empty calls it comes out exactly as expected; the call after that is
    silent again (no duplicate arrival).
    """
    conn = _bare_connection(3)
    silence = torch.zeros_like(spikes_out)

    fed = conn.convert_spikes(spikes_in)
    assert (conn.propagate_spike(fed) == silence).all()

    no_input = torch.zeros_like(fed)
    n_waits = int(conn.delay_init.reshape(-1)[0]) - 1
    assert n_waits == 3
    out = None
    for _ in range(n_waits):
        out = conn.propagate_spike(no_input)
    assert (out == spikes_out).all()

    assert (conn.propagate_spike(no_input) == silence).all()


@pytest.mark.parametrize("spikes_in, spikes_out", PROPAGATION_CASES)
def test_propagate_instant(spikes_in, spikes_out):
    """Mirrors PySNN ``test_connection.py::test_propagate_instant``.

    Connection((1, 4, 2), dt=1.0, delay=0) emits the converted spikes in the same call.
    """
    conn = _bare_connection(0)
    out = conn.propagate_spike(conn.convert_spikes(spikes_in))
    assert (out == spikes_out).all()


# Linear(in_features=5, out_features=10, batch_size=2, dt=1.0, delay=0), constant weight 0.5.
LIN_IN, LIN_OUT, LIN_BATCH = 5, 10, 2
LIN_IN_SHAPE = (LIN_BATCH, 1, LIN_IN)
LIN_OUT_SHAPE = (LIN_BATCH, 1, LIN_OUT, LIN_IN)


def _linear():
    conn = Linear(LIN_IN, LIN_OUT, LIN_BATCH, 1.0, 0)
    conn.reset_weights("constant", 0.5)
    return conn


@pytest.mark.parametrize("weight", [0.5, 1.0, 2.0, 3.0])
def test_linear_activation_potential(weight):
    """Mirrors PySNN ``test_connection.py::test_linear_activation_potential``.

    With constant weights ``w`` (set through ``reset_weights("constant", w)``), an all-ones
    (2, 1, 10, 5) input gives an activation potential equal to ``w`` everywhere.
    """
    conn = _linear()
    conn.reset_weights("constant", weight)
    potential = conn.activation_potential(torch.ones(*LIN_OUT_SHAPE))
    assert (potential == _full(LIN_OUT_SHAPE, weight)).all()


def test_linear_forward():
    """Mirrors PySNN ``test_connection.py::test_linear_forward``.

    All-ones spikes and trace of shape (2, 1, 5) through the weight-0.5 layer: the activation is 0.5
    and the trace is 1 everywhere, compared against (2, 1, 10, 5) tensors.
    """
    conn = _linear()
    activation, trace = conn.forward(
        torch.ones(*LIN_IN_SHAPE, dtype=torch.bool), torch.ones(*LIN_IN_SHAPE)
    )
    assert (activation == _full(LIN_OUT_SHAPE, 0.5)).all()
    assert (trace == torch.ones(*LIN_OUT_SHAPE)).all()


# Conv2d(in_channels=1, out_channels=2, kernel_size=(3, 3), im_dims=(10, 10), batch_size=2, dt=1.0,
# delay=0), constant weight 0.5.
CONV_C_IN, CONV_C_OUT, CONV_K, CONV_IM, CONV_BATCH, CONV_OUT_IM = 1, 2, (3, 3), (10, 10), 2, (8, 8)
CONV_FAN_IN = CONV_K[0] * CONV_K[1]
CONV_IN_SHAPE = (CONV_BATCH, CONV_C_IN, *CONV_IM)
# PySNN's expected tensors put C_in (1) in the channel slot and rely on broadcasting against the real
# C_out (2) channels (reference §12 / B31); the comparisons below keep that, and the true shape is
# checked separately.
CONV_EXPECTED_SHAPE = (CONV_BATCH, CONV_C_IN, *CONV_OUT_IM, CONV_FAN_IN)
CONV_TRUE_SHAPE = (CONV_BATCH, CONV_C_OUT, *CONV_OUT_IM, CONV_FAN_IN)


def _conv2d():
    conn = Conv2d(CONV_C_IN, CONV_C_OUT, CONV_K, CONV_IM, CONV_BATCH, 1.0, 0)
    conn.reset_weights("constant", 0.5)
    return conn


def test_conv2d_activation_potential():
    """Mirrors PySNN ``test_connection.py::test_conv2d_activation_potential``.

    Weight data replaced by a (2, 1, 3, 3) tensor of 0.5; an all-ones unfolded input of shape
    (2, 1, 9, 64) gives an activation potential that equals 0.5 everywhere (compared, as in PySNN,
    with a (2, 1, 8, 8, 9) tensor by broadcasting).
    """
    conn = _conv2d()
    conn.weight.data = _full((CONV_C_OUT, CONV_C_IN, *CONV_K), 0.5)
    unfolded = torch.ones(CONV_BATCH, CONV_C_IN, CONV_FAN_IN, CONV_OUT_IM[0] * CONV_OUT_IM[1])
    potential = conn.activation_potential(unfolded)
    assert (potential == _full(CONV_EXPECTED_SHAPE, 0.5)).all()


def test_conv2d_forward():
    """Mirrors PySNN ``test_connection.py::test_conv2d_forward``.

    All-ones (2, 1, 10, 10) spikes and trace: activation 0.5 and trace 1 everywhere. PySNN compares
    against (2, 1, 8, 8, 9) tensors by broadcasting; we keep that comparison and also pin the real
    output shape (2, C_out=2, 8, 8, 9) (reference B31). The values are uniform, so PySNN's scrambled
    Conv2d layout (SPEC defect 7 / B1, fixed in pysnn) does not change what is asserted.
    """
    conn = _conv2d()
    activation, trace = conn.forward(
        torch.ones(*CONV_IN_SHAPE, dtype=torch.bool), torch.ones(*CONV_IN_SHAPE)
    )
    assert activation.shape == CONV_TRUE_SHAPE
    assert trace.shape == CONV_TRUE_SHAPE
    assert (activation == _full(CONV_EXPECTED_SHAPE, 0.5)).all()
    assert (trace == torch.ones(*CONV_EXPECTED_SHAPE)).all()


# ---------------------------------------------------------------------------------------------------
# pysnn.functional  (PySNN tests/test_functional.py)
# ---------------------------------------------------------------------------------------------------
CELLS = (1, 2, 2, 2)
V_REST = 0.0
ALPHA_V = 1.0
ALPHA_T = 1.0
ALPHA_THRESH = 0.9
DT = 1.0
TAU = 2.0  # tau_v, tau_t and tau_thresh for the exponential updates
DECAY = 0.5  # v_decay, trace_decay and thresh_decay for the linear updates


def _cells(value):
    return _full(CELLS, value)


def _no_refrac():
    return torch.zeros(*CELLS)


def test_exponential_trace_update():
    """Mirrors PySNN ``test_functional.py::test_exponential_trace_update``.

    alpha_t=1, tau_t=2, dt=1, constant input 1: the trace goes 0 -> 0.5 -> 0.75 (exact equality).
    """
    trace = _cells(0.0)
    for expected in (0.5, 0.75):
        trace = exponential_trace_update(trace, _cells(1.0), ALPHA_T, TAU, DT)
        assert (trace == _cells(expected)).all()


def test_linear_trace_update():
    """Mirrors PySNN ``test_functional.py::test_linear_trace_update``.

    alpha_t=1, trace_decay=0.5, dt=1, constant input 1: the trace goes 0 -> 1 -> 1.5 (exact).
    """
    trace = _cells(0.0)
    for expected in (1.0, 1.5):
        trace = linear_trace_update(trace, _cells(1.0), ALPHA_T, DECAY, DT)
        assert (trace == _cells(expected)).all()


def test_exponential_thresh_update():
    """Mirrors PySNN ``test_functional.py::test_exponential_thresh_update``.

    alpha_thresh=0.9, tau_thresh=2, dt=1, spikes 1: the threshold goes 1 -> 0.95 -> 0.925 (allclose).
    """
    thresh = _cells(1.0)
    for expected in (0.95, 0.925):
        thresh = exponential_thresh_update(thresh, _cells(1.0), ALPHA_THRESH, TAU, DT)
        assert thresh.allclose(_cells(expected))


def test_linear_thresh_update():
    """Mirrors PySNN ``test_functional.py::test_linear_thresh_update``.

    alpha_thresh=0.9, thresh_decay=0.5, dt=1, spikes 1: the threshold goes 1 -> 1.4 -> 1.6 (allclose).
    """
    thresh = _cells(1.0)
    for expected in (1.4, 1.6):
        thresh = linear_thresh_update(thresh, _cells(1.0), ALPHA_THRESH, DECAY, DT)
        assert thresh.allclose(_cells(expected))


def test_if_voltage_update():
    """Mirrors PySNN ``test_functional.py::test_if_voltage_update``.

    alpha_v=1, input 1, no refractory cells: the voltage goes 0 -> 1 -> 2 (exact).
    """
    v = _cells(0.0)
    for expected in (1.0, 2.0):
        v = if_voltage_update(v, _cells(1.0), ALPHA_V, _no_refrac())
        assert (v == _cells(expected)).all()


def test_lif_linear_voltage_update():
    """Mirrors PySNN ``test_functional.py::test_lif_linear_voltage_update``.

    v_rest=0, alpha_v=1, v_decay=0.5, dt=1, input 2: the voltage goes 0 -> 2 -> 3 (exact).
    """
    v = _cells(0.0)
    for expected in (2.0, 3.0):
        v = lif_linear_voltage_update(v, V_REST, _cells(2.0), ALPHA_V, DECAY, DT, _no_refrac())
        assert (v == _cells(expected)).all()


def test_lif_exponential_voltage_update():
    """Mirrors PySNN ``test_functional.py::test_lif_exponential_voltage_update``.

    v_rest=0, alpha_v=1, tau_v=2, dt=1, input 2: the voltage goes 0 -> 1 -> 1.5 (exact).
    """
    v = _cells(0.0)
    for expected in (1.0, 1.5):
        v = lif_exponential_voltage_update(v, V_REST, _cells(2.0), ALPHA_V, TAU, DT, _no_refrac())
        assert (v == _cells(expected)).all()


def test_fede_voltage_update():
    """Mirrors PySNN ``test_functional.py::test_fede_voltage_update``.

    Two synapses per cell (shape (1, 2, 2, 2, 2)) with activation 2 and pre-trace 1, v_rest=0,
    alpha_v=1, tau_v=2, dt=1: the voltage goes 0 -> 1 -> 1.5 (exact).
    """
    v = _cells(0.0)
    activation = _full(CELLS + (2,), 2.0)
    pre_trace = torch.ones(*CELLS, 2)
    for expected in (1.0, 1.5):
        v = fede_voltage_update(v, V_REST, activation, ALPHA_V, TAU, DT, _no_refrac(), pre_trace)
        assert (v == _cells(expected)).all()


# ---------------------------------------------------------------------------------------------------
# pysnn.learning  (PySNN tests/test_learning.py)
# ---------------------------------------------------------------------------------------------------
def _empty_rule():
    """LearningRule(OrderedDict(), {}) -- PySNN's fixture: no layers, no defaults."""
    return LearningRule(OrderedDict(), {})


@pytest.mark.parametrize(
    "pre, post, con_type, expected",
    [
        pytest.param(
            torch.tensor([[[0, 1, 1, 0]], [[1, 0, 0, 1]]], dtype=torch.bool),
            torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]]),
            "linear",
            torch.tensor(
                [
                    [[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]],
                    [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]],
                ]
            ),
            id="linear",
        ),
        pytest.param(
            torch.ones(2, 4, 50, 1024, dtype=torch.bool),
            torch.ones(2, 4, 32, 32),
            "conv2d",
            torch.ones(2, 4, 50, 1024),
            id="conv2d",
        ),
    ],
)
def test_pre_mult_post(pre, post, con_type, expected):
    """Mirrors PySNN ``test_learning.py::test_pre_mult_post``.

    Linear: bool pre (2, 1, 4) times float post (2, 1, 2) is the per-sample outer product (2, 2, 4).
    Conv2d: all-ones bool pre (2, 4, 50, 1024) times float post (2, 4, 32, 32) is all ones.
    """
    out = _empty_rule().pre_mult_post(pre, post, con_type)
    assert (out == expected).all()


@pytest.mark.parametrize(
    "tensor, con_type, expected",
    [
        pytest.param(
            torch.tensor([[[0.0, 1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0, 1.0]]]),
            "linear",
            torch.tensor([[0.5, 0.5, 0.5, 0.5]]),
            id="linear",
        ),
        pytest.param(torch.ones(2, 4, 50, 1024), "conv2d", torch.ones(4, 50), id="conv2d"),
    ],
)
def test_reduce_connections(tensor, con_type, expected):
    """Mirrors PySNN ``test_learning.py::test_reduce_connections``.

    Linear: the batch mean of (2, 1, 4) is 0.5 everywhere, compared with a (1, 4) tensor. Conv2d:
    reducing all-ones (2, 4, 50, 1024) over batch and positions gives ones, compared with (4, 50).
    """
    out = _empty_rule().reduce_connections(tensor, con_type)
    assert (out == expected).all()


# ---------------------------------------------------------------------------------------------------
# pysnn.neuron  (PySNN tests/test_neuron.py)
# ---------------------------------------------------------------------------------------------------
def test_input_forward():
    """Mirrors PySNN ``test_neuron.py::test_input_forward``.

    Input((1, 2, 2, 2), dt=1.0, alpha_t=1.0, tau_t=0.5) fed 2s: it returns its input unchanged, the
    output cast to bool is all True and equals the stored ``spikes``, and the trace is x * alpha_t.
    """
    neuron = Input(CELLS, 1.0, 1.0, 0.5)
    x = _cells(2.0)
    out, trace = neuron.forward(x)
    assert (out == x).all()
    assert (out.bool() == torch.ones(*CELLS, dtype=torch.bool)).all()
    assert (out.bool() == neuron.spikes).all()
    assert (trace == x * neuron.alpha_t).all()


BASE_CELLS = (1, 2, 2)


def _base_neuron():
    """BaseNeuron((1, 2, 2), thresh=1.0, v_rest=0.0, dt=1.0, duration_refrac=3.0), initialised."""
    neuron = BaseNeuron(BASE_CELLS, 1.0, 0.0, 1.0, 3.0)
    neuron.init_neuron()
    return neuron


@pytest.mark.parametrize(
    "mask, voltage, n_spikes",
    [
        pytest.param(torch.ones(*BASE_CELLS, dtype=torch.bool), 2.0, 4, id="above"),
        pytest.param(torch.ones(*BASE_CELLS, dtype=torch.bool), 1.0, 4, id="at-thresh"),
        pytest.param(torch.ones(*BASE_CELLS, dtype=torch.bool), 0.0, 0, id="below"),
        pytest.param(torch.tensor([[[True, False], [False, True]]]), 2.0, 2, id="diagonal"),
        pytest.param(torch.tensor([[[True, False], [False, False]]]), 2.0, 1, id="single"),
    ],
)
def test_spiking(mask, voltage, n_spikes):
    """Mirrors PySNN ``test_neuron.py::test_spiking``.

    Setting the masked cells' voltage (in place) and calling ``spiking()`` gives the expected number
    of spikes; a voltage equal to the threshold spikes.
    """
    neuron = _base_neuron()
    neuron.v_cell.masked_fill_(mask, voltage)
    assert neuron.spiking().sum() == n_spikes


@pytest.mark.parametrize(
    "spikes",
    [
        pytest.param(torch.tensor([[[True, True], [True, True]]]), id="all"),
        pytest.param(torch.tensor([[[True, False], [False, True]]]), id="diagonal"),
    ],
)
def test_refrac(spikes):
    """Mirrors PySNN ``test_neuron.py::test_refrac``.

    Counters start at zero; ``refrac(spikes)`` resets the spiking cells' voltage (filled with 1) to 0;
    with duration_refrac=3 and dt=1 the spiking cells stay refractory through the next
    ``duration_refrac - 1`` calls with no spikes and are all out of refraction after one more.
    pysnn counts refractory time in integer steps (reference B24, fixed), which gives this same
    timing for D=3, dt=1.
    """
    neuron = _base_neuron()
    assert (neuron.refrac_counts == 0).all(), "refractory counters must start at zero"

    neuron.v_cell.fill_(1)
    assert (neuron.v_cell > 0).all()

    n_spiking = spikes.sum()
    neuron.refrac(spikes)
    assert (neuron.v_cell[spikes] == 0).all()

    quiet = torch.zeros_like(spikes)
    n_quiet_calls = int(neuron.duration_refrac) - 1
    assert n_quiet_calls == 2
    for _ in range(n_quiet_calls):
        neuron.refrac(quiet)
        assert (neuron.refrac_counts > 0).sum() == n_spiking

    neuron.refrac(quiet)
    assert (neuron.refrac_counts > 0).sum() == 0


# PySNN's neuron forward tests feed an input of exactly ``cells_shape`` (1, 2, 2, 2), with no fan-in
# axis R. PySNN 0.1.1 summed that tensor's last *cell* axis (giving (1, 2, 2), broadcast back), so
# every cell received 4 instead of 2; pysnn requires ``cells_shape + (R,)`` and raises ValueError
# (docs/neurons.rst, "The fan-in axis is required, whatever the batch size"). This is not one of the
# defects listed in SPEC.md or B1-B34, so it is reported as an incompatibility, not rewritten.
NO_FAN_IN_AXIS = pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason=(
        "incompatibility: pysnn rejects a neuron input of shape cells_shape (1, 2, 2, 2) without "
        "the trailing fan-in axis (ValueError from pysnn.neuron._check_fan_in); PySNN 0.1.1 "
        "accepted it and summed the last cell axis instead"
    ),
)


@NO_FAN_IN_AXIS
def test_lif_forward():
    """Mirrors PySNN ``test_neuron.py::test_lif_forward`` (the LIF version, the one that runs).

    LIFNeuron((1, 2, 2, 2), thresh=1.0, v_rest=0.0, alpha_v=1.0, alpha_t=1.0, dt=1.0,
    duration_refrac=1.0, tau_v=0.5, tau_t=0.5) fed 2s: every cell spikes and the trace equals
    alpha_t.
    """
    neuron = LIFNeuron(CELLS, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5)
    expected = torch.ones(*CELLS, dtype=torch.bool)
    spikes, trace = neuron.forward(_cells(2.0))
    assert (spikes == expected).all()
    assert (trace == expected.float() * neuron.alpha_t).all()


@NO_FAN_IN_AXIS
def test_adaptive_lif_forward():
    """Mirrors PySNN ``test_neuron.py::test_adaptive_lif_forward``.

    AdaptiveLIFNeuron((1, 2, 2, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, tau_v=0.5, tau_t=0.5,
    alpha_thresh=1.0, tau_thresh=0.5) fed 2s: every cell spikes, the trace equals alpha_t and the
    threshold becomes ``thresh_center * tau_thresh + alpha_thresh`` (PySNN's default threshold rule,
    kept by pysnn; reference B25).
    """
    neuron = AdaptiveLIFNeuron(CELLS, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 0.5)
    expected = torch.ones(*CELLS, dtype=torch.bool)
    spikes, trace = neuron.forward(_cells(2.0))
    assert (spikes == expected).all()
    assert (trace == expected.float() * neuron.alpha_t).all()
    assert (
        neuron.thresh
        == neuron.thresh_center * neuron.tau_thresh + expected.float() * neuron.alpha_thresh
    ).all()


@pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason=(
        "incompatibility: pysnn rejects FedeNeuron.forward's x of shape cells_shape (1, 2, 2, 2) "
        "without the trailing fan-in axis (ValueError from pysnn.neuron._check_fan_in); in PySNN "
        "0.1.1 x broadcast against the (1, 2, 2, 2, 1) pre-trace into R=2 synapses, which is what "
        "made the cells reach threshold (with x.unsqueeze(-1), v = 0.5 and nothing spikes)"
    ),
)
def test_fede_forward():
    """Mirrors PySNN ``test_neuron.py::test_fede_forward``.

    FedeNeuron((1, 2, 2, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, tau_v=2.0, tau_t=2.0) fed 2s with a
    (1, 2, 2, 2, 1) pre-trace of ones: every cell spikes.
    """
    neuron = FedeNeuron(CELLS, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0)
    spikes, _ = neuron.forward(_cells(2.0), torch.ones(*CELLS, 1))
    assert (spikes == torch.ones(*CELLS, dtype=torch.bool)).all()
