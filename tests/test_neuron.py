"""pysnn.neuron against the NumPy reference of tests/reference.py, plus PySNN's pinned values."""

import numpy as np
import pytest
import torch

from pysnn.neuron import (
    AdaptiveLIFNeuron,
    BaseNeuron,
    FedeNeuron,
    IFNeuron,
    Input,
    LIFNeuron,
)
from reference import NeuronRef, as_np, f32, input_trace_ref

T_STEPS = 40
B, N = 2, 6


def per_neuron(rng, low, high, shape):
    """A tensor of random per-neuron values (float64: the module rounds it to its dtype)."""
    return torch.from_numpy(rng.uniform(low, high, shape))


def build(model, update_type, cells_shape, rng, dt, duration_refrac, store_trace=False):
    """A neuron module (float64) and its NumPy reference with the same per-neuron parameters."""
    n_shape = cells_shape[1:]  # broadcast over the batch: a different value per neuron
    linear = update_type == "linear"
    p = {
        "thresh": per_neuron(rng, 0.8, 1.2, n_shape),
        "v_rest": -0.125,
        "alpha_v": per_neuron(rng, 1.0, 2.0, (1,) + n_shape),
        "alpha_t": per_neuron(rng, 0.5, 1.5, n_shape),
        "tau_v": per_neuron(rng, 0.6, 0.95, n_shape) if linear else per_neuron(rng, 2, 6, n_shape),
        "tau_t": per_neuron(rng, 0.5, 0.9, n_shape) if linear else per_neuron(rng, 2, 8, n_shape),
        "alpha_thresh": per_neuron(rng, 0.1, 0.4, n_shape),
        "tau_thresh": per_neuron(rng, 0.8, 0.99, n_shape) if linear else 7.0,
    }
    common = (cells_shape, p["thresh"], p["v_rest"], p["alpha_v"], p["alpha_t"], dt)
    if model == "if":
        module = IFNeuron(*common, duration_refrac, p["tau_t"], update_type, store_trace)
    elif model == "lif":
        module = LIFNeuron(
            *common, duration_refrac, p["tau_v"], p["tau_t"], update_type, store_trace
        )
    elif model.startswith("adaptive"):
        module = AdaptiveLIFNeuron(
            *common,
            duration_refrac,
            p["tau_v"],
            p["tau_t"],
            p["alpha_thresh"],
            p["tau_thresh"],
            update_type,
            store_trace,
            relax_to_center=model == "adaptive_relax",
        )
    else:
        module = FedeNeuron(*common, duration_refrac, p["tau_v"], p["tau_t"], store_trace)
    ref = NeuronRef(
        "adaptive" if model.startswith("adaptive") else model,
        cells_shape,
        p["thresh"].numpy(),
        p["v_rest"],
        p["alpha_v"].numpy(),
        p["alpha_t"].numpy(),
        dt,
        round(duration_refrac / dt),
        p["tau_t"].numpy(),
        None if model == "if" else p["tau_v"].numpy(),
        update_type,
        p["alpha_thresh"].numpy(),
        np.asarray(p["tau_thresh"]),
        relax_to_center=model == "adaptive_relax",
    )
    return module.double(), ref


CASES = [
    (model, update_type, refrac)
    for model in ["if", "lif", "adaptive", "adaptive_relax", "fede"]
    for update_type in ["linear", "exponential"]
    for refrac in [0.0, 1.0]
    if not (model == "fede" and update_type == "linear")
]


@pytest.mark.parametrize("model, update_type, duration_refrac", CASES)
def test_neuron_matches_numpy_reference(rng, model, update_type, duration_refrac):
    """Random inputs from two 'connections' (a list), per-neuron parameters, dt=0.5, 40 steps."""
    cells_shape = (B, 1, N)
    dt = 0.5
    neuron, ref = build(model, update_type, cells_shape, rng, dt, duration_refrac)
    n_spikes = 0
    for _ in range(T_STEPS):
        x = [
            rng.uniform(-0.1, 0.35, cells_shape + (3,)),
            rng.uniform(-0.1, 0.35, cells_shape + (2,)),
        ]
        if model == "fede":
            x = [a + 0.15 for a in x]  # Fede subtracts the presynaptic trace
            pre = [rng.uniform(0, 0.1, cells_shape + (3,)), rng.uniform(0, 0.1, cells_shape + (2,))]
            spikes, trace = neuron(
                [torch.from_numpy(a) for a in x], [torch.from_numpy(a) for a in pre]
            )
            exp_spikes, exp_trace = ref.step(x, pre)
        else:
            spikes, trace = neuron([torch.from_numpy(a) for a in x])
            exp_spikes, exp_trace = ref.step(x)
        assert spikes.dtype == torch.bool
        np.testing.assert_array_equal(spikes.numpy(), exp_spikes)
        np.testing.assert_allclose(as_np(trace), exp_trace, rtol=0, atol=1e-10)
        np.testing.assert_allclose(as_np(neuron.v_cell), ref.v, rtol=0, atol=1e-10)
        np.testing.assert_allclose(as_np(neuron.thresh), ref.thresh, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(neuron.refrac_counts.numpy(), ref.counts)
        n_spikes += int(exp_spikes.sum())
    # the comparison means something only if cells both spiked and stayed silent
    assert 0 < n_spikes < T_STEPS * B * N


@pytest.mark.parametrize("model", ["lif", "adaptive_relax"])
def test_neuron_matches_reference_on_conv_shape(rng, model):
    """cells_shape (B, C, H, W) with per-(C, H, W) parameters and a single fan-in tensor."""
    cells_shape = (2, 2, 3, 3)
    neuron, ref = build(model, "exponential", cells_shape, rng, 1.0, 2.0)
    for _ in range(T_STEPS):
        x = rng.uniform(-0.2, 0.5, cells_shape + (4,))
        spikes, trace = neuron(torch.from_numpy(x))
        exp_spikes, exp_trace = ref.step(x)
        np.testing.assert_array_equal(spikes.numpy(), exp_spikes)
        np.testing.assert_allclose(as_np(trace), exp_trace, rtol=0, atol=1e-10)
        np.testing.assert_allclose(as_np(neuron.thresh), ref.thresh, rtol=0, atol=1e-10)


@pytest.mark.parametrize("update_type", ["linear", "exponential"])
def test_input_matches_reference(rng, update_type):
    """Input: trace from the graded input (2.0 counts double), x returned as given."""
    shape = (B, 1, N)
    alpha_t = torch.from_numpy(rng.uniform(0.5, 1.5, (N,)))
    tau_t = 0.8 if update_type == "linear" else 3.0
    inp = Input(shape, 0.5, alpha_t, tau_t, update_type).double()
    xs = [rng.choice([0.0, 1.0, 2.0], size=shape) for _ in range(T_STEPS)]
    expected = input_trace_ref(xs, alpha_t.numpy(), tau_t, 0.5, update_type)
    for x, exp_trace in zip(xs, expected):
        x_t = torch.from_numpy(x)
        out, trace = inp(x_t)
        assert out is x_t
        assert trace is inp.trace
        np.testing.assert_allclose(as_np(trace), exp_trace, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(inp.spikes.numpy(), x != 0)


# -- refractory periods -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "dt, duration_refrac, steps", [(0.1, 0.4, 4), (0.1, 0.5, 5), (1.0, 3.0, 3), (0.5, 0.0, 0)]
)
@pytest.mark.parametrize("cls", [IFNeuron, LIFNeuron])
def test_refractory_dormant_for_exactly_k_steps(cls, dt, duration_refrac, steps):
    """Strong constant input: a spike, then exactly k dormant steps, then the next spike.

    PySNN 0.1.1 counted in float ms, so dt=0.1 / duration_refrac=0.4 left a counter at -0.1 and
    the neuron never integrated again; dt=0.1 / 0.5 was rejected by a float modulo check.
    """
    shape = (1, 1, 1)
    if cls is IFNeuron:
        neuron = cls(shape, 1.0, 0.0, 1.0, 1.0, dt, duration_refrac, 0.5)
    else:
        neuron = cls(shape, 1.0, 0.0, 1.0, 1.0, dt, duration_refrac, 0.5, 0.5)
    fired, counts = [], []
    for _ in range(30):
        spikes, _ = neuron(torch.full((1, 1, 1, 1), 5.0))
        fired.append(bool(spikes))
        counts.append(int(neuron.refrac_counts))
    assert fired == [t % (steps + 1) == 0 for t in range(30)]
    assert counts[: steps + 2] == list(range(steps, -1, -1)) + ([steps] if steps else [0])
    assert neuron.refrac_counts.dtype == torch.int32


def test_pinned_refrac_counts_positive_for_three_calls():
    """PySNN test: D=3, dt=1: after refrac(spike) the counter is positive for exactly 3 calls."""
    neuron = LIFNeuron((1, 1, 2), 1.0, 0.25, 1.0, 1.0, 1.0, 3.0, 0.5, 0.5)
    neuron.v_cell.fill_(2.0)
    neuron.refrac(torch.tensor([[[True, False]]]))
    assert neuron.v_cell.tolist() == [[[0.25, 2.0]]], "refrac resets spiking cells to v_rest"
    positive = [int(neuron.refrac_counts[0, 0, 0]) > 0]
    for _ in range(4):
        neuron.refrac(torch.zeros(1, 1, 2, dtype=torch.bool))
        positive.append(int(neuron.refrac_counts[0, 0, 0]) > 0)
    assert positive == [True, True, True, False, False]
    assert int(neuron.refrac_counts[0, 0, 1]) == 0


def test_zero_refractory_allows_consecutive_spikes():
    neuron = IFNeuron((1, 1, 1), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5)
    assert all(bool(neuron(torch.full((1, 1, 1, 1), 1.0))[0]) for _ in range(5))


# -- PySNN's pinned neuron behaviours ------------------------------------------------------------
def test_pinned_voltage_equal_to_threshold_spikes():
    neuron = LIFNeuron((1, 1, 3), 0.5, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5)
    neuron.v_cell.copy_(torch.tensor([[[0.5, 0.4999, 0.6]]]))
    assert neuron.spiking().tolist() == [[[True, False, True]]]


def test_pinned_lif_input_two_spikes_and_trace_is_alpha_t():
    neuron = LIFNeuron((1, 1, 1), 1.0, 0.0, 1.0, 0.75, 1.0, 0.0, 0.5, 0.5)
    spikes, trace = neuron(torch.full((1, 1, 1, 1), 2.0))
    assert bool(spikes) and trace.item() == 0.75


def test_pinned_adaptive_thresh_after_one_spike():
    center, tau_thresh, alpha_thresh = 1.0, 0.5, 0.25
    neuron = AdaptiveLIFNeuron(
        (1, 1, 1), center, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5, alpha_thresh, tau_thresh
    )
    spikes, _ = neuron(torch.full((1, 1, 1, 1), 2.0))
    assert bool(spikes)
    assert neuron.thresh.item() == center * tau_thresh + alpha_thresh


def test_pinned_input_returns_input_and_trace_x_alpha():
    inp = Input((1, 1, 3), 1.0, 0.5, 0.8)
    x = torch.tensor([[[0.0, 1.0, 2.0]]])
    out, trace = inp(x)
    assert out is x
    assert trace.tolist() == [[[0.0, 0.5, 1.0]]]


def test_pinned_fede_spikes():
    neuron = FedeNeuron((1, 1, 2), 0.5, 0.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0)
    spikes, _ = neuron(torch.full((1, 1, 2, 3), 1.0), torch.zeros(1, 1, 2, 3))
    assert spikes.all()


def test_relax_to_center_versus_pysnn_threshold():
    """Linear threshold without spikes: PySNN decays to 0, relax_to_center decays to center."""
    kwargs = dict(alpha_thresh=0.5, tau_thresh=0.5)
    plain = AdaptiveLIFNeuron((1, 1, 1), 2.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5, **kwargs)
    relax = AdaptiveLIFNeuron(
        (1, 1, 1), 2.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5, **kwargs, relax_to_center=True
    )
    relax.thresh.data.fill_(3.0)
    for _ in range(2):
        plain(torch.zeros(1, 1, 1, 1))
        relax(torch.zeros(1, 1, 1, 1))
    assert plain.thresh.item() == 0.5  # 2 → 1 → 0.5
    assert relax.thresh.item() == 2.25  # 3 → 2.5 → 2.25


# -- history (store_trace) ---------------------------------------------------------------------
def test_store_trace_history(rng):
    """complete_trace: a leading zero column, then one column per step (T=100 > first chunk)."""
    shape = (B, 1, N)
    neuron, ref = build("lif", "linear", shape, rng, 1.0, 1.0, store_trace=True)
    assert neuron.complete_trace.shape == shape + (1,)
    for _ in range(100):
        x = rng.uniform(-0.1, 0.35, shape + (4,))
        neuron(torch.from_numpy(x))
        ref.step(x)
    history = neuron.complete_trace
    assert history.dtype == torch.bool and history.shape == shape + (101,)
    np.testing.assert_array_equal(history.numpy(), np.stack(ref.history, axis=-1))
    assert not history[..., 0].any()
    neuron.reset_state()
    assert neuron.complete_trace.shape == shape + (1,) and not neuron.complete_trace.any()
    neuron.v_cell.fill_(5.0)
    neuron(torch.zeros(shape + (1,), dtype=torch.float64))
    assert neuron.complete_trace.shape == shape + (2,) and neuron.complete_trace[..., 1].all()


def test_no_store_trace_has_no_history():
    neuron = IFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5)
    neuron(torch.ones(1, 1, 2, 1))
    assert neuron.complete_trace is None


# -- state -------------------------------------------------------------------------------------
def test_forward_returns_spike_copy_and_live_trace():
    neuron = LIFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5)
    spikes, trace = neuron(torch.tensor([[[[2.0], [0.0]]]]))
    assert trace is neuron.trace
    assert spikes.data_ptr() != neuron.spikes.data_ptr()
    spikes.fill_(False)
    assert neuron.spikes.tolist() == [[[True, False]]]
    kept = trace.clone()
    neuron(torch.zeros(1, 1, 2, 1))
    assert not torch.equal(trace, kept), "the returned trace is the live buffer"


def test_state_dtypes_and_keys():
    neuron = LIFNeuron((2, 1, 3), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.5, 0.5).double()
    assert isinstance(neuron.thresh, torch.nn.Parameter) and not neuron.thresh.requires_grad
    assert neuron.spikes.dtype == torch.bool
    assert neuron.refrac_counts.dtype == torch.int32, "counts are integer steps"
    assert neuron.v_cell.dtype == neuron.trace.dtype == torch.float64
    assert list(neuron.state_dict()) == [
        "thresh",
        "v_rest",
        "dt",
        "duration_refrac",
        "thresh_center",
        "spikes",
        "v_cell",
        "trace",
        "refrac_counts",
        "alpha_v",
        "alpha_t",
        "tau_v",
        "tau_t",
    ]
    assert list(Input((1, 1, 2), 1.0, 1.0, 0.5).state_dict()) == [
        "trace",
        "dt",
        "spikes",
        "alpha_t",
        "tau_t",
    ]
    adaptive = AdaptiveLIFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5, 0.1, 0.9)
    # PySNN 0.1.1's order for the adaptive neuron's own buffers
    assert list(adaptive.state_dict())[-6:] == [
        "alpha_v",
        "alpha_t",
        "alpha_thresh",
        "tau_v",
        "tau_t",
        "tau_thresh",
    ]


def test_reset_state_and_reset_thresh(rng):
    neuron, _ = build("adaptive", "linear", (B, 1, N), rng, 1.0, 2.0)
    lif, _ = build("lif", "linear", (B, 1, N), rng, 1.0, 2.0)
    for _ in range(5):
        x = torch.from_numpy(rng.uniform(0.5, 1.0, (B, 1, N, 2)))
        neuron(x)
        lif(x)
    assert (neuron.refrac_counts > 0).any() and (lif.trace > 0).any()
    lif.thresh.data.fill_(9.0)
    for module in (neuron, lif):
        module.reset_state()
        assert (module.v_cell == module.v_rest).all()
        assert not module.spikes.any()
        assert not module.refrac_counts.any()
        assert not module.trace.any()
    center = neuron.thresh_center.expand_as(neuron.thresh)
    assert torch.equal(neuron.thresh, center), "adaptive reset_state resets the threshold"
    assert (lif.thresh == 9.0).all(), "reset_state leaves a non-adaptive threshold alone"
    lif.reset_thresh()
    assert torch.equal(lif.thresh, lif.thresh_center.expand_as(lif.thresh))


def test_per_neuron_parameter_broadcasting():
    thresh = torch.tensor([0.5, 1.0, 1.5])
    neuron = IFNeuron((2, 1, 3), thresh, 0.0, torch.tensor([[[1.0, 2.0, 3.0]]]), 1.0, 1.0, 0.0, 0.5)
    assert neuron.thresh.shape == (2, 1, 3) and neuron.alpha_v.shape == (2, 1, 3)
    spikes, _ = neuron(torch.full((2, 1, 3, 1), 0.5))
    assert spikes.tolist() == [[[True, True, True]]] * 2  # 0.5·[1, 2, 3] >= [0.5, 1, 1.5]
    spikes, _ = neuron(torch.full((2, 1, 3, 1), 0.3))
    assert spikes.tolist() == [[[False, False, False]]] * 2


def test_half_precision_neuron_runs():
    neuron = LIFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 0.5, 1.0, 1.0, 0.5, 0.5).half()
    spikes, trace = neuron(torch.tensor([[[[1.5], [0.25]]]], dtype=torch.float16))
    assert spikes.tolist() == [[[True, False]]]
    assert trace.dtype == torch.float16 and trace.tolist() == [[[0.5, 0.0]]]


# -- bad input -----------------------------------------------------------------------------------
LIF_ARGS = dict(
    cells_shape=(1, 1, 3),
    thresh=1.0,
    v_rest=0.0,
    alpha_v=1.0,
    alpha_t=1.0,
    dt=1.0,
    duration_refrac=0.0,
    tau_v=0.5,
    tau_t=0.5,
)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(cells_shape=3), TypeError, "cells_shape"),
        (dict(cells_shape="abc"), TypeError, "cells_shape"),
        (dict(cells_shape=(1, 0, 3)), ValueError, "cells_shape"),
        (dict(cells_shape=(1, 1.5, 3)), ValueError, "cells_shape"),
        (dict(thresh=True), TypeError, "thresh"),
        (dict(thresh="1"), TypeError, "thresh"),
        (dict(thresh=torch.ones(4)), ValueError, "thresh"),
        (dict(v_rest=True), TypeError, "v_rest"),
        (dict(alpha_v=False), TypeError, "alpha_v"),
        (dict(alpha_t=float("nan")), ValueError, "alpha_t"),
        (dict(dt=0.0), ValueError, "dt"),
        (dict(dt=-1.0), ValueError, "dt"),
        (dict(dt=True), TypeError, "dt"),
        (dict(duration_refrac=-1.0), ValueError, "duration_refrac"),
        (dict(duration_refrac=True), TypeError, "duration_refrac"),
        (dict(dt=0.1, duration_refrac=0.25), ValueError, "multiple of dt"),
        (dict(tau_v=1.5), ValueError, r"tau_v must lie in \[0, 1\]"),
        (dict(tau_t=-0.1), ValueError, r"tau_t must lie in \[0, 1\]"),
        (dict(tau_v=torch.tensor([0.5, 1.2, 0.5])), ValueError, "tau_v"),
        (dict(update_type="exponential", tau_v=0.0), ValueError, "tau_v must be > 0"),
        (dict(update_type="exponential", tau_v=2.0, tau_t=-2.0), ValueError, "tau_t must be > 0"),
        (dict(update_type="exponential", tau_v=2.0, tau_t=0.5), ValueError, "tau_t must be >= dt"),
        (dict(update_type="exp"), ValueError, "update_type"),
        (dict(store_trace=1), TypeError, "store_trace"),
    ],
)
def test_lif_constructor_errors(change, error, match):
    with pytest.raises(error, match=match):
        LIFNeuron(**{**LIF_ARGS, **change})


def test_other_constructor_errors():
    with pytest.raises(ValueError, match="tau_thresh"):
        AdaptiveLIFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5, 0.1, 2.0)
    with pytest.raises(ValueError, match="tau_t"):
        IFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.01)
    with pytest.raises(ValueError, match="tau_v"):
        FedeNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 2.0)
    with pytest.raises(ValueError, match="update_type"):
        Input((1, 1, 2), 1.0, 1.0, 0.5, "Linear")
    with pytest.raises(ValueError, match="tau_t"):
        Input((1, 1, 2), 1.0, 1.0, 2.0, "linear")
    with pytest.raises(TypeError, match="cells_shape"):
        Input(None, 1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="dt"):
        Input((1, 1, 2), 0.0, 1.0, 0.5)


def test_forward_shape_and_type_errors():
    neuron = LIFNeuron(**LIF_ARGS)
    with pytest.raises(ValueError, match=r"input.*\(1, 1, 4\).*\(1, 1, 3\)"):
        neuron(torch.ones(1, 1, 4, 2))
    with pytest.raises(ValueError, match="input"):
        neuron([torch.ones(1, 1, 3, 2), torch.ones(2, 1, 3, 1)])
    with pytest.raises(TypeError, match="tensor"):
        neuron(np.ones((1, 1, 3, 2)))
    inp = Input((1, 1, 3), 1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match=r"x of shape \(1, 1, 4\)"):
        inp(torch.ones(1, 1, 4))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        inp([[[1.0, 0.0, 1.0]]])
    fede = FedeNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="pre_trace"):
        fede(torch.ones(1, 1, 2, 3), torch.ones(1, 1, 2, 4))
    with pytest.raises(ValueError, match="x"):
        fede(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3))


def test_f32_helper_rounds_like_the_modules():
    """The reference rounds parameters to float32 exactly as the modules store them."""
    neuron = LIFNeuron(**{**LIF_ARGS, "tau_v": 0.9}).double()
    assert neuron.tau_v[0, 0, 0].item() == float(f32(0.9)) != 0.9


def test_input_list_errors_name_the_argument():
    fede = FedeNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0)
    good = torch.ones(1, 1, 2, 3)
    with pytest.raises(ValueError, match="pre_trace list"):
        fede([good, good], [good, torch.ones(1, 1, 3, 3)])
    with pytest.raises(ValueError, match="x list"):
        fede([good, torch.ones(2, 1, 2, 3)], [good, good])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        fede(np.ones((1, 1, 2, 3)), good)
    lif = LIFNeuron(**LIF_ARGS)
    with pytest.raises(ValueError, match="input list"):
        lif([torch.ones(1, 1, 3, 2), torch.ones(1, 1, 2, 1)])


def test_base_neuron_step_is_not_implemented():
    neuron = BaseNeuron((1, 1, 2), 1.0, 0.0, 1.0, 0.0)
    with pytest.raises(NotImplementedError, match="BaseNeuron does not define update_voltage"):
        neuron(torch.zeros(1, 1, 2, 1))


# -- regressions of the bad-input review (see also tests/test_bad_inputs_neuron.py) ------------
def test_batch_one_input_without_fan_in_axis_is_rejected():
    """Used to sum over the neurons: v became [0.5, 0.5, 0.5] instead of an error."""
    x = torch.tensor([[[0.5, 0.0, 0.0]]])
    for batch in (1, 2):
        neuron = LIFNeuron(**{**LIF_ARGS, "cells_shape": (batch, 1, 3)})
        with pytest.raises(ValueError, match=r"input of shape \(\d, 1, 3\).*fan-in axis"):
            neuron(x.expand(batch, 1, 3))
        assert neuron.v_cell.tolist() == [[[0.0] * 3]] * batch
    fede = FedeNeuron((1, 1, 3), 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0)
    with pytest.raises(ValueError, match=r"x of shape \(1, 1, 3\).*fan-in"):
        fede(x, x)
    with pytest.raises(ValueError, match=r"pre_trace of shape \(1, 1, 3\).*fan-in"):
        fede(x.unsqueeze(-1), x)
    # with the fan-in axis the same input reaches one neuron only (reference: v = alpha_v·x·λ⁰)
    neuron = LIFNeuron(**LIF_ARGS)
    neuron(x.unsqueeze(-1))
    assert neuron.v_cell.tolist() == [[[0.5, 0.0, 0.0]]]


@pytest.mark.parametrize("tau", ["tau_v", "tau_t", "tau_thresh"])
def test_exponential_time_constant_below_dt_is_rejected(tau):
    """dt/tau >= 2 made the forward-Euler trace oscillate and diverge."""
    args = dict(LIF_ARGS, tau_v=4.0, tau_t=4.0, update_type="exponential")
    extra = dict(alpha_thresh=0.1, tau_thresh=4.0)
    with pytest.raises(ValueError, match=rf"{tau} must be >= dt = 1 ms for update_type='exp"):
        AdaptiveLIFNeuron(**{**args, **extra, tau: 0.5})
    ok = AdaptiveLIFNeuron(**{**args, **extra, tau: 1.0})  # dt/tau = 1 is allowed
    # the trace of tau = dt jumps to alpha·s and is back at 0 one step later (reference)
    assert ok.update_type == "exponential"


def test_input_and_fede_time_constants_below_dt_are_rejected():
    with pytest.raises(ValueError, match="tau_t must be >= dt = 1 ms"):
        Input((1, 1, 2), 1.0, 1.0, 0.5, "exponential")
    with pytest.raises(ValueError, match="tau_v must be >= dt = 2 ms"):
        FedeNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 2.0, 0.0, 1.0, 4.0)
    with pytest.raises(ValueError, match="tau_t must be >= dt = 2 ms"):
        FedeNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 2.0, 0.0, 4.0, 1.0)


def test_switching_to_exponential_checks_time_constants_against_dt():
    neuron = LIFNeuron(**{**LIF_ARGS, "dt": 0.25, "tau_v": 0.5, "tau_t": 0.2})
    with pytest.raises(ValueError, match="tau_t must be >= dt = 0.25 ms"):
        neuron.update_type = "exponential"
    assert neuron.update_type == "linear"
    inp = Input((1, 1, 2), 2.0, 1.0, 0.9)
    with pytest.raises(ValueError, match="tau_t must be >= dt = 2 ms"):
        inp.update_type = "exponential"
    assert inp.update_type == "linear"


def test_exponential_trace_with_tau_equal_dt_matches_reference():
    """tau = dt: x <- x + (−x + α s) = α s, the fastest update still allowed."""
    inp = Input((1, 1, 1), 1.0, 2.0, 1.0, "exponential", dtype=torch.float64)
    values = [inp(torch.tensor([[[s]]], dtype=torch.float64))[1].item() for s in (1.0, 0.0)]
    assert values == [2.0, 0.0]


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("tau_v", 20.0, r"tau_v must lie in \[0, 1\] for update_type='linear', got 20"),
        ("tau_t", -0.5, r"tau_t must lie in \[0, 1\]"),
        ("alpha_v", float("nan"), "alpha_v in the state_dict must be finite"),
        ("thresh", float("inf"), "thresh in the state_dict must be finite"),
        ("v_rest", float("nan"), "v_rest in the state_dict must be finite"),
        ("dt", 0.0, "dt in the state_dict must be > 0"),
        ("dt", 1e300, "dt in the state_dict must be finite"),
    ],
)
def test_load_state_dict_checks_values_before_changing_anything(key, value, match):
    neuron = LIFNeuron(**LIF_ARGS)
    before = {k: v.clone() for k, v in neuron.state_dict().items()}
    state = neuron.state_dict()
    state[key] = torch.full_like(state[key], value, dtype=torch.float64)
    state["v_cell"] = torch.full_like(state["v_cell"], 0.25)  # would change if loaded
    with pytest.raises(ValueError, match=match):
        neuron.load_state_dict(state)
    for k, v in neuron.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_load_state_dict_checks_exponential_time_constants_against_dt():
    neuron = LIFNeuron(**{**LIF_ARGS, "tau_v": 4.0, "tau_t": 4.0, "update_type": "exponential"})
    state = neuron.state_dict()
    state["tau_t"] = torch.full_like(state["tau_t"], 0.5)
    with pytest.raises(ValueError, match="tau_t must be >= dt = 1 ms"):
        neuron.load_state_dict(state)
    state = neuron.state_dict()
    state["dt"] = torch.tensor(8.0)  # a larger dt makes the stored tau_v = 4 too short
    with pytest.raises(ValueError, match="tau_v must be >= dt = 8 ms"):
        neuron.load_state_dict(state)
    assert neuron.dt.item() == 1.0
    prefixed = nn_wrap(LIFNeuron(**LIF_ARGS))
    state = prefixed.state_dict()
    state["layer.tau_v"] = torch.full((1, 1, 3), 20.0)
    with pytest.raises(ValueError, match=r"layer\.tau_v must lie in \[0, 1\]"):
        prefixed.load_state_dict(state)
    good = LIFNeuron(**{**LIF_ARGS, "tau_v": 0.25})
    neuron = LIFNeuron(**LIF_ARGS)
    neuron.load_state_dict(good.state_dict())  # valid values still load
    assert neuron.tau_v.tolist() == [[[0.25] * 3]]


def nn_wrap(module):
    wrapper = torch.nn.Module()
    wrapper.layer = module
    return wrapper


def test_spike_history_is_a_recording_not_state():
    """Documented choice: complete_trace is not in state_dict, survives load_state_dict as it
    is and is restarted by reset_state."""
    neuron = LIFNeuron(**{**LIF_ARGS, "tau_v": 1.0, "thresh": 0.5}, store_trace=True)
    for _ in range(10):
        neuron(torch.ones(1, 1, 3, 1))
    assert neuron.complete_trace.shape == (1, 1, 3, 11)
    state = neuron.state_dict()
    assert not any("history" in k or "complete_trace" in k for k in state)
    fresh = LIFNeuron(**{**LIF_ARGS, "tau_v": 1.0, "thresh": 0.5}, store_trace=True)
    fresh.load_state_dict(state)
    assert fresh.complete_trace.shape == (1, 1, 3, 1)  # a new recording
    assert torch.equal(fresh.v_cell, neuron.v_cell)  # the state itself is restored
    recorded = neuron.complete_trace.clone()
    neuron.load_state_dict(fresh.state_dict())
    assert torch.equal(neuron.complete_trace, recorded)  # loading leaves the recording alone
    neuron.reset_state()
    assert neuron.complete_trace.shape == (1, 1, 3, 1) and not neuron.complete_trace.any()


def test_input_rejects_a_complex_input_of_the_cells_shape():
    """A complex input of the right shape used to lose its imaginary part silently."""
    layer = Input((1, 1, 3), 1.0, 1.0, 0.5)
    with pytest.raises(TypeError, match="x must be real"):
        layer(torch.ones(1, 1, 3, dtype=torch.complex64))
    assert torch.equal(layer.trace, torch.zeros(1, 1, 3))
