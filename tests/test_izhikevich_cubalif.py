"""IzhikevichNeuron and CubaLIFNeuron against NumPy loops written from their equations, their
module behaviour (shapes, dtypes, devices, reset, state_dict, ``.to``, history, backends, bad
inputs), the firing patterns of Izhikevich's presets, and CubaLIF against the NIR importers of
Norse, SpikingJelly and snnTorch (when installed)."""

import contextlib
import io

import numpy as np
import pytest
import torch

from pysnn import native
from pysnn._backend import NativeUnavailableError
from pysnn.connection import Linear
from pysnn.learning import MSTDPET, STDP
from pysnn.network import SNNNetwork
from pysnn.neuron import CubaLIFNeuron, Input, IzhikevichNeuron

DTYPES = {torch.float64: np.float64, torch.float32: np.float32}
PRESETS = {  # Izhikevich (2003), Fig. 2: a, b, c, d
    "RS": (0.02, 0.2, -65.0, 8.0),
    "IB": (0.02, 0.2, -55.0, 4.0),
    "CH": (0.02, 0.2, -50.0, 2.0),
    "FS": (0.1, 0.2, -65.0, 2.0),
}


# -- NumPy references ---------------------------------------------------------------------------
def izhikevich_reference(current, dt, a, b, c, d, alpha_t, tau_t, v_peak, linear, dtype):
    """``current`` (T, N): folded input per step. Returns spikes, v, u, trace, each (T, N)."""
    f = np.dtype(dtype).type
    a, b, c, d, alpha_t, tau_t, v_peak = (
        np.broadcast_to(np.asarray(p, dtype), current.shape[1:])
        for p in (a, b, c, d, alpha_t, tau_t, v_peak)
    )
    dt = f(dt)
    v = c.copy()
    u = b * c
    trace = np.zeros_like(v)
    out = {"s": [], "v": [], "u": [], "trace": []}
    for x in current.astype(dtype):
        v_old, u_old = v, u
        v = v_old + dt * (f(0.04) * v_old * v_old + f(5) * v_old + f(140) - u_old + x)
        u = u_old + (dt * a) * (b * v_old - u_old)
        s = v >= v_peak
        sf = s.astype(dtype)
        trace = (
            trace * tau_t + alpha_t * sf
            if linear
            else trace + (dt / tau_t) * (alpha_t * sf - trace)
        )
        v = np.where(s, c, v)
        u = u + sf * d
        for key, value in zip(out, (s, v, u, trace)):
            out[key].append(value.copy())
    return {key: np.array(value) for key, value in out.items()}


def cuba_reference(x_in, thresh, v_rest, alpha_v, alpha_i, alpha_t, dt, n_refrac, tau_v, tau_i,
                   tau_t, linear, dtype):  # fmt: skip
    """``x_in`` (T, ...): folded input per step. Returns spikes, v, i, trace per step."""
    shape = x_in.shape[1:]
    f = np.dtype(dtype).type
    thresh, alpha_v, alpha_i, alpha_t, tau_v, tau_i, tau_t = (
        np.broadcast_to(np.asarray(p, dtype), shape)
        for p in (thresh, alpha_v, alpha_i, alpha_t, tau_v, tau_i, tau_t)
    )
    v_rest, dt = f(v_rest), f(dt)
    v = np.full(shape, v_rest, dtype)
    i = np.zeros(shape, dtype)
    trace = np.zeros(shape, dtype)
    counts = np.zeros(shape, np.int64)
    out = {"s": [], "v": [], "i": [], "trace": []}
    for x in x_in.astype(dtype):
        free = counts == 0
        if linear:
            i = tau_i * i + alpha_i * x
            v = np.where(free, v_rest + tau_v * (v - v_rest) + alpha_v * i, v_rest)
        else:
            i = i + (dt / tau_i) * (alpha_i * x - i)
            v = np.where(free, v + (dt / tau_v) * (alpha_v * i - (v - v_rest)), v)
        s = v >= thresh
        sf = s.astype(dtype)
        trace = (
            trace * tau_t + alpha_t * sf
            if linear
            else trace + (dt / tau_t) * (alpha_t * sf - trace)
        )
        counts = np.maximum(counts - 1, 0) + s * n_refrac
        v = np.where(s, v_rest, v)
        for key, value in zip(out, (s, v, i, trace)):
            out[key].append(value.copy())
    return {key: np.array(value) for key, value in out.items()}


def _run(cell, inputs):
    """Step ``cell`` with each input; collect spikes and state as NumPy arrays."""
    names = ["v_cell", "trace"] + [n for n in ("u_cell", "i_syn") if hasattr(cell, n)]
    out = {"s": [], **{n: [] for n in names}}
    for x in inputs:
        spikes, _ = cell(x)
        out["s"].append(spikes.numpy().copy())
        for n in names:
            out[n].append(getattr(cell, n).double().numpy().copy())
    return {key: np.array(value) for key, value in out.items()}


def _tol(dtype):
    return (
        {"rtol": 1e-12, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-3}
    )


# -- Izhikevich: equations ----------------------------------------------------------------------
def _izh_params(n):
    """Per-cell presets, cycled over ``n`` cells."""
    rows = [PRESETS[k] for k in ("RS", "IB", "CH", "FS")]
    return [np.array([rows[j % 4][k] for j in range(n)]) for k in range(4)]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("update_type", ["linear", "exponential"])
def test_izhikevich_matches_numpy(rng, dtype, update_type):
    batch, n, fan_in, steps, dt = 2, 8, 3, 400, 0.5
    a, b, c, d = _izh_params(n)
    alpha_t = rng.uniform(0.5, 1.5, n)
    tau_t = rng.uniform(0.5, 0.9, n) if update_type == "linear" else rng.uniform(2.0, 8.0, n)
    v_peak = np.where(np.arange(n) % 2 == 0, 30.0, 25.0)
    t = lambda p: torch.tensor(p, dtype=dtype)  # noqa: E731
    cell = IzhikevichNeuron(
        (batch, 1, n), dt, t(a), t(b), t(c), t(d), t(alpha_t), t(tau_t), t(v_peak), update_type,
        dtype=dtype,
    )  # fmt: skip
    x = rng.integers(0, 384, (steps, batch, 1, n, fan_in)) / 64  # exact sums in float32
    got = _run(cell, [torch.tensor(step, dtype=dtype) for step in x])
    ref = izhikevich_reference(
        x.sum(-1).astype(DTYPES[dtype]), dt, a, b, c, d, alpha_t, tau_t, v_peak,
        update_type == "linear", DTYPES[dtype],
    )  # fmt: skip
    assert ref["s"].sum() > 100  # every preset fires, many times
    np.testing.assert_array_equal(got["s"], ref["s"])
    for mine, theirs in (("v_cell", "v"), ("u_cell", "u"), ("trace", "trace")):
        np.testing.assert_allclose(got[mine], ref[theirs], **_tol(dtype), err_msg=mine)


def test_izhikevich_first_step_by_hand():
    """One step from rest with I = 10, dt = 1: v = c + (0.04c² + 5c + 140 − bc + 10)."""
    cell = IzhikevichNeuron((1, 1, 1), 1.0, 0.02, 0.2, -65.0, 8.0, 1.0, 0.5, dtype=torch.float64)
    assert cell.v_cell.item() == -65.0 and cell.u_cell.item() == -13.0
    cell(torch.full((1, 1, 1, 1), 10.0, dtype=torch.float64))
    assert cell.v_cell.item() == pytest.approx(-65 + (0.04 * 65**2 - 325 + 140 + 13 + 10))
    assert cell.u_cell.item() == pytest.approx(-13.0 + 0.02 * (0.2 * -65 + 13))  # old v: no change


def test_izhikevich_spike_resets_v_to_c_and_adds_d():
    cell = IzhikevichNeuron((1, 1, 2), 1.0, 0.02, 0.2, torch.tensor([-65.0, -50.0]), 8.0, 1.0, 0.5)
    cell.v_cell.fill_(29.0)
    u_before = cell.u_cell.clone()
    v_old = cell.v_cell.clone()
    spikes, trace = cell(torch.zeros(1, 1, 2, 1))
    assert spikes.all() and trace.eq(1.0).all()
    assert cell.v_cell.flatten().tolist() == [-65.0, -50.0]
    expected_u = u_before + 0.02 * (0.2 * v_old - u_before) + 8.0
    torch.testing.assert_close(cell.u_cell, expected_u)


def test_regular_spiking_is_tonic_under_constant_input():
    """RS under I = 10: the spike times of the NumPy loop, and tonic firing with adaptation (the
    first interval is the shortest, the last ten are equal, ~20 Hz)."""
    dt, steps = 0.5, 2000
    cell = IzhikevichNeuron((1, 1, 1), dt, *PRESETS["RS"], 1.0, 0.9, dtype=torch.float64)
    got = _run(cell, [torch.full((1, 1, 1, 1), 10.0, dtype=torch.float64)] * steps)
    ref = izhikevich_reference(
        np.full((steps, 1), 10.0), dt, *PRESETS["RS"], 1.0, 0.9, 30.0, True, np.float64
    )
    times = np.flatnonzero(got["s"].ravel()) * dt
    np.testing.assert_array_equal(times, np.flatnonzero(ref["s"].ravel()) * dt)
    isi = np.diff(times)
    assert 15 <= len(times) <= 30
    assert isi[0] < 0.7 * isi[-1]  # adaptation
    assert np.ptp(isi[-10:]) <= dt  # settled: a regular train


def _preset_isis(name, current=10.0, dt=0.5, duration=1000.0):
    cell = IzhikevichNeuron((1, 1, 1), dt, *PRESETS[name], 1.0, 0.9, dtype=torch.float64)
    x = torch.full((1, 1, 1, 1), current, dtype=torch.float64)
    spikes = np.array([bool(cell(x)[0]) for _ in range(int(duration / dt))])
    return np.diff(np.flatnonzero(spikes) * dt)


def test_presets_fire_distinctly():
    isi = {name: _preset_isis(name) for name in PRESETS}
    rate = {name: len(v) + 1 for name, v in isi.items()}  # spikes per second
    # regular spiking: tonic, settled, adapting
    assert np.ptp(isi["RS"][-10:]) <= 0.5 and isi["RS"][0] < isi["RS"][-1]
    # fast spiking: tonic at several times the RS rate, never a long pause
    assert rate["FS"] > 3 * rate["RS"] and isi["FS"].max() < 15.0
    # intrinsically bursting: an initial burst, then tonic single spikes
    assert isi["IB"][0] < 10.0 and (isi["IB"][1:] > 25.0).all()
    assert np.ptp(isi["IB"][-10:]) <= 0.5
    # chattering: repeated bursts, a bimodal interval distribution (nothing in between)
    short, long = isi["CH"] < 10.0, isi["CH"] > 40.0
    assert (short | long).all() and short.sum() >= 3 * long.sum() and long.sum() >= 10
    assert not (isi["RS"] < 10.0).any()  # RS never bursts


# -- CubaLIF: equations -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("update_type", ["linear", "exponential"])
@pytest.mark.parametrize("refrac", [0.0, 2.0])
def test_cuba_lif_matches_numpy(rng, dtype, update_type, refrac):
    batch, n, fan_in, steps, dt = 3, 7, 4, 300, 1.0
    linear = update_type == "linear"
    thresh = rng.uniform(0.8, 1.2, n)
    alpha_v, alpha_i = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, n)
    alpha_t = rng.uniform(0.5, 1.5, n)
    if linear:
        tau_v, tau_i, tau_t = (rng.uniform(0.2, 0.95, n) for _ in range(3))
    else:
        tau_v, tau_i, tau_t = (rng.uniform(1.0, 10.0, n) for _ in range(3))
    v_rest = -0.25
    t = lambda p: torch.tensor(p, dtype=dtype)  # noqa: E731
    cell = CubaLIFNeuron(
        (batch, 1, n), t(thresh), v_rest, t(alpha_v), t(alpha_i), t(alpha_t), dt, refrac,
        t(tau_v), t(tau_i), t(tau_t), update_type, dtype=dtype,
    )  # fmt: skip
    size = (steps, batch, 1, n, fan_in)
    top = 32 if linear else 128  # inputs in [0, 0.5) or [0, 2): multiples of 1/64, exact sums
    x = (rng.random(size) < 0.3) * rng.integers(0, top, size) / 64
    got = _run(cell, [torch.tensor(step, dtype=dtype) for step in x])
    ref = cuba_reference(
        x.sum(-1).astype(DTYPES[dtype]), thresh, v_rest, alpha_v, alpha_i, alpha_t, dt,
        round(refrac / dt), tau_v, tau_i, tau_t, linear, DTYPES[dtype],
    )  # fmt: skip
    assert 50 < ref["s"].sum() < 0.5 * ref["s"].size
    np.testing.assert_array_equal(got["s"], ref["s"])
    for mine, theirs in (("v_cell", "v"), ("i_syn", "i"), ("trace", "trace")):
        np.testing.assert_allclose(got[mine], ref[theirs], **_tol(dtype), err_msg=mine)


def test_cuba_lif_voltage_uses_the_new_current():
    """One input pulse: the voltage moves in the same step (it reads the updated current)."""
    cell = CubaLIFNeuron((1, 1, 1), 10.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5, 0.5)
    cell(torch.ones(1, 1, 1, 1))
    assert cell.i_syn.item() == 1.0 and cell.v_cell.item() == 1.0
    cell(torch.zeros(1, 1, 1, 1))
    assert cell.i_syn.item() == 0.5 and cell.v_cell.item() == 1.0  # 0.5·1 + 0.5
    cell.reset_state()
    assert cell.i_syn.item() == 0.0 and cell.v_cell.item() == 0.0


# -- module behaviour -----------------------------------------------------------------------------
def make_izh(shape=(2, 1, 5), update_type="linear", **kw):
    tau_t = 0.8 if update_type == "linear" else 4.0
    return IzhikevichNeuron(shape, 0.5, 0.02, 0.2, -65.0, 8.0, 1.0, tau_t, 30.0, update_type, **kw)


def make_cuba(shape=(2, 1, 5), update_type="linear", **kw):
    taus = (0.8, 0.7, 0.6) if update_type == "linear" else (4.0, 3.0, 2.0)
    return CubaLIFNeuron(shape, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, *taus, update_type, **kw)


MAKERS = {"izhikevich": (make_izh, 8.0), "cuba": (make_cuba, 0.6)}
STATE = {"izhikevich": ("v_cell", "u_cell", "trace", "spikes"),
         "cuba": ("v_cell", "i_syn", "trace", "spikes", "refrac_counts")}  # fmt: skip


def _drive(cell, steps=40, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    shape = cell.cells_shape + (3,)
    out = []
    for _ in range(steps):
        x = torch.rand(shape, generator=gen, dtype=torch.float64).to(cell.v_cell.dtype) * scale
        out.append(cell(x)[0].clone())
    return torch.stack(out)


@pytest.mark.parametrize("model", list(MAKERS))
def test_conv_shaped_population_and_list_inputs(model):
    make, scale = MAKERS[model]
    cell = make((2, 3, 4, 4))
    x = torch.rand(2, 3, 4, 4, 5) * scale
    spikes, trace = cell([x[..., :2], x[..., 2:]])
    assert spikes.shape == trace.shape == (2, 3, 4, 4) and spikes.dtype == torch.bool
    twin = make((2, 3, 4, 4))
    twin(x)
    for name in STATE[model]:
        torch.testing.assert_close(getattr(cell, name), getattr(twin, name))
    cell(torch.full((1, 3, 1, 1, 1), scale))  # size-1 axes broadcast


@pytest.mark.parametrize("model", list(MAKERS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_dtype_and_device(model, dtype):
    make, scale = MAKERS[model]
    cell = make(dtype=dtype, device="cpu")
    for name, tensor in list(cell.named_buffers()) + list(cell.named_parameters()):
        if tensor.is_floating_point():
            assert tensor.dtype == dtype, name
        assert tensor.device.type == "cpu"
    assert _drive(cell, scale=scale).any()
    assert cell.v_cell.isfinite().all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("model", list(MAKERS))
def test_cuda_matches_cpu(model):
    make, scale = MAKERS[model]
    cpu, gpu = make(dtype=torch.float64), make(dtype=torch.float64, device="cuda")
    gen = torch.Generator().manual_seed(3)
    for _ in range(30):
        x = torch.rand(cpu.cells_shape + (3,), generator=gen, dtype=torch.float64) * scale
        s_cpu, s_gpu = cpu(x)[0], gpu(x.cuda())[0]
        assert torch.equal(s_cpu, s_gpu.cpu())
    torch.testing.assert_close(cpu.v_cell, gpu.v_cell.cpu())


@pytest.mark.parametrize("model", list(MAKERS))
def test_reset_state(model):
    make, scale = MAKERS[model]
    cell = make(store_trace=True)
    fresh = {name: getattr(cell, name).clone() for name in STATE[model]}
    assert _drive(cell, scale=scale).any()
    cell.reset_state()
    for name, value in fresh.items():
        assert torch.equal(getattr(cell, name), value), name
    assert cell.complete_trace.shape == cell.cells_shape + (1,)
    if model == "izhikevich":
        assert (cell.v_cell == -65.0).all() and (cell.u_cell == 0.2 * -65.0).all()


@pytest.mark.parametrize("model", list(MAKERS))
def test_state_dict_round_trip(model):
    make, scale = MAKERS[model]
    cell = make()
    _drive(cell, steps=25, scale=scale)
    other = make()
    other.load_state_dict(cell.state_dict())
    assert set(cell.state_dict()) >= set(STATE[model])
    torch.testing.assert_close(
        _drive(cell, seed=5, scale=scale), _drive(other, seed=5, scale=scale)
    )
    for name in STATE[model]:
        assert torch.equal(getattr(cell, name), getattr(other, name)), name


@pytest.mark.parametrize("model", list(MAKERS))
def test_to_float64_continues_the_same_run(model):
    make, scale = MAKERS[model]
    cell, ref = make(), make(dtype=torch.float64)
    moved = cell.to(torch.float64)
    assert (
        moved is cell and cell.v_cell.dtype == torch.float64 and cell.thresh.dtype == torch.float64
    )
    for name, tensor in cell.named_buffers():
        assert not tensor.is_floating_point() or tensor.dtype == torch.float64, name
    torch.testing.assert_close(_drive(cell, scale=scale), _drive(ref, scale=scale))


@pytest.mark.parametrize("model", list(MAKERS))
def test_store_trace(model):
    make, scale = MAKERS[model]
    cell = make(store_trace=True)
    spikes = _drive(cell, steps=70, scale=scale)
    history = cell.complete_trace
    assert history.shape == cell.cells_shape + (71,)
    assert not history[..., 0].any()
    assert torch.equal(history[..., 1:], spikes.permute(1, 2, 3, 0))
    assert make().complete_trace is None


@pytest.mark.parametrize("model", list(MAKERS))
@pytest.mark.parametrize("kernels", ["on", "off"])
def test_backends(model, kernels):
    make, scale = MAKERS[model]
    with native.disabled() if kernels == "off" else contextlib.nullcontext():
        with pytest.raises(NativeUnavailableError, match="there is no C kernel for"):
            make(backend="native")
        auto, torch_cell = make(), make(backend="torch")
        assert auto.backend == "auto" and "backend='auto'" in repr(auto)
        assert torch.equal(_drive(auto, scale=scale), _drive(torch_cell, scale=scale))
        with pytest.raises(NativeUnavailableError, match="no C kernel"):
            auto.backend = "native"
        assert auto.backend == "auto"
        with pytest.raises(ValueError, match="backend must be one of"):
            make(backend="cuda")
    assert "native" not in type(auto).supported_backends


class _LoudIzhikevich(IzhikevichNeuron):
    """A subclass that overrides a step piece runs the pieces: the same numbers."""

    def update_voltage(self, x):
        super().update_voltage(x)


class _LoudCuba(CubaLIFNeuron):
    def update_voltage(self, x):
        super().update_voltage(x)


@pytest.mark.parametrize("model", list(MAKERS))
def test_step_pieces_match_the_whole_step(model):
    make, scale = MAKERS[model]
    cls = _LoudIzhikevich if model == "izhikevich" else _LoudCuba
    for update_type in ("linear", "exponential"):
        whole = make(update_type=update_type, dtype=torch.float64)
        pieces = make(update_type=update_type, dtype=torch.float64)
        pieces.__class__ = cls
        assert cls._overrides_step()
        assert torch.equal(_drive(whole, scale=scale), _drive(pieces, scale=scale))
        for name in STATE[model]:
            assert torch.equal(getattr(whole, name), getattr(pieces, name)), name


@pytest.mark.parametrize("model", list(MAKERS))
def test_in_a_network_with_learning_rules(model):
    """The post-synaptic trace and spikes feed the learning rules like any neuron's."""
    make, scale = MAKERS[model]
    net = SNNNetwork()
    inp = Input((2, 1, 6), 0.5, 1.0, 0.8)
    con = Linear(6, 5, 2, 0.5, 0)
    con.reset_weights("constant", gain=scale * 3)
    neuron = make()
    net.add_layer("layer", con, neuron)
    rules = [
        MSTDPET(net.layer_state_dict(), 1.0, 0.5, 0.1, 0.8),
        STDP(net.layer_state_dict(), 0.1, 1.0, 0.5, 0.0, 100.0),
    ]
    before = con.weight.clone()
    gen = torch.Generator().manual_seed(1)
    fired = 0
    for _ in range(60):
        s, trace = inp(torch.rand(2, 1, 6, generator=gen) < 0.5)
        spikes, _ = neuron(con(s, trace)[0])
        fired += int(spikes.sum())
        for rule in rules:
            rule.update_state()
        rules[0].step(1.0)
        rules[1].step()
    assert fired > 0 and not torch.equal(con.weight, before)


# -- bad inputs --------------------------------------------------------------------------------
IZH_ARGS = dict(cells_shape=(2, 1, 3), dt=0.5, a=0.02, b=0.2, c=-65.0, d=8.0, alpha_t=1.0,
                tau_t=0.8)  # fmt: skip
CUBA_ARGS = dict(cells_shape=(2, 1, 3), thresh=1.0, v_rest=0.0, alpha_v=1.0, alpha_i=1.0,
                 alpha_t=1.0, dt=1.0, duration_refrac=0.0, tau_v=0.8, tau_i=0.8,
                 tau_t=0.8)  # fmt: skip
BAD = [
    (IzhikevichNeuron, IZH_ARGS, {"a": "x"}, TypeError, "a must be"),
    (IzhikevichNeuron, IZH_ARGS, {"b": float("nan")}, ValueError, "b must be finite"),
    (IzhikevichNeuron, IZH_ARGS, {"c": torch.zeros(4)}, ValueError, "c of shape"),
    (IzhikevichNeuron, IZH_ARGS, {"d": True}, TypeError, "d must be"),
    (IzhikevichNeuron, IZH_ARGS, {"v_peak": float("inf")}, ValueError, "v_peak must be finite"),
    (IzhikevichNeuron, IZH_ARGS, {"v_peak": "30"}, TypeError, "v_peak must be"),
    (IzhikevichNeuron, IZH_ARGS, {"tau_t": 1.5}, ValueError, "tau_t must lie in"),
    (
        IzhikevichNeuron,
        IZH_ARGS,
        {"tau_t": 0.2, "update_type": "exponential"},
        ValueError,
        "tau_t must be >= dt",
    ),  # fmt: skip
    (IzhikevichNeuron, IZH_ARGS, {"dt": 0.0}, ValueError, "dt must be >"),
    (IzhikevichNeuron, IZH_ARGS, {"update_type": "euler"}, ValueError, "update_type must be"),
    (IzhikevichNeuron, IZH_ARGS, {"cells_shape": 3}, TypeError, "cells_shape must be"),
    (IzhikevichNeuron, IZH_ARGS, {"store_trace": 1}, TypeError, "store_trace must be"),
    (IzhikevichNeuron, IZH_ARGS, {"dtype": torch.int32}, TypeError, "dtype must be"),
    (CubaLIFNeuron, CUBA_ARGS, {"alpha_i": "x"}, TypeError, "alpha_i must be"),
    (CubaLIFNeuron, CUBA_ARGS, {"tau_i": 1.5}, ValueError, "tau_i must lie in"),
    (CubaLIFNeuron, CUBA_ARGS, {"tau_v": -0.1}, ValueError, "tau_v must lie in"),
    (
        CubaLIFNeuron,
        CUBA_ARGS,
        {"tau_i": 0.5, "tau_v": 2.0, "tau_t": 2.0, "update_type": "exponential"},
        ValueError,
        "tau_i must be >= dt",
    ),  # fmt: skip
    (CubaLIFNeuron, CUBA_ARGS, {"duration_refrac": 1.5}, ValueError, "duration_refrac must be"),
    (CubaLIFNeuron, CUBA_ARGS, {"thresh": torch.ones(5)}, ValueError, "thresh of shape"),
    (CubaLIFNeuron, CUBA_ARGS, {"v_rest": "0"}, TypeError, "v_rest must be"),
    (CubaLIFNeuron, CUBA_ARGS, {"alpha_v": float("nan")}, ValueError, "alpha_v must be finite"),
]


@pytest.mark.parametrize("cls, base, change, error, message", BAD)
def test_bad_constructor_arguments(cls, base, change, error, message):
    with pytest.raises(error, match=f"{cls.__name__}: {message}"):
        cls(**{**base, **change})


@pytest.mark.parametrize("model", list(MAKERS))
@pytest.mark.parametrize(
    "bad, error, message",
    [
        (torch.ones(2, 1, 5), ValueError, "fan-in axis last"),
        (torch.ones(2, 1, 4, 3), ValueError, "does not broadcast"),
        (torch.ones(2, 1, 5, 3, dtype=torch.complex64), TypeError, "must be real"),
        ([], ValueError, "list is empty"),
        ("spikes", TypeError, "must be a torch.Tensor"),
        (torch.ones(2, 1, 5, 3, requires_grad=True), TypeError, "requires grad"),
    ],
)
def test_bad_step_inputs_leave_the_state_alone(model, bad, error, message):
    make, scale = MAKERS[model]
    cell = make()
    _drive(cell, steps=5, scale=scale)
    before = {name: tensor.clone() for name, tensor in cell.state_dict().items()}
    with pytest.raises(error, match=message):
        cell(bad)
    for name, tensor in cell.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_update_type_setter_checks_the_taus():
    cell = make_cuba()
    with pytest.raises(ValueError, match="tau_v must be >= dt"):
        cell.update_type = "exponential"
    assert cell.update_type == "linear"


# -- CubaLIF against the NIR importers ----------------------------------------------------------
def _nir_cuba(tau_syn, tau_mem, r, w_in, v_threshold, n):
    nir = pytest.importorskip("nir")
    full = lambda value: np.broadcast_to(np.asarray(value, np.float64), (n,)).copy()  # noqa: E731
    return nir.CubaLIF(
        tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(r), v_leak=np.zeros(n),
        v_threshold=full(v_threshold), w_in=full(w_in), v_reset=np.zeros(n),
    )  # fmt: skip


def _pysnn_cuba(n, thresh, v_rest, alpha_v, alpha_i, dt, tau_v, tau_i, update_type):
    return CubaLIFNeuron(
        (1, 1, n), thresh, v_rest, torch.as_tensor(alpha_v), torch.as_tensor(alpha_i), 1.0, dt,
        0.0, torch.as_tensor(tau_v), torch.as_tensor(tau_i), 0.5 if update_type == "linear" else
        2 * dt, update_type, dtype=torch.float32,
    )  # fmt: skip


def _inputs(n, steps=400, seed=7, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (rng.random((steps, n)) < 0.3) * rng.uniform(0.0, scale, (steps, n))
    return torch.from_numpy(x).float()


def _compare(cell, step_importer, x):
    ours = torch.stack([cell(xt.view(1, 1, -1, 1))[0].view(-1) for xt in x])
    theirs = torch.stack([step_importer(xt) for xt in x])
    assert (ours.sum(0) >= 3).sum() >= 4 and ours.sum() > 50 and ours.float().mean() < 0.9
    assert torch.equal(ours, theirs), (ours != theirs).nonzero()[:5]


@pytest.mark.parametrize("update_type", ["linear", "exponential"])
def test_cuba_lif_runs_like_norse_nir_import(update_type):
    """Norse 1.1.0 imports NIR CubaLIF as i' = i + dt/τ_syn (v_leak − i + w_in x), then
    v' = v + dt/τ_mem (v_leak − v + r i') and z = v' > v_th, v ← v_reset: the forward-Euler
    step with the new current. (Its current also relaxes towards, and starts at, v_leak: the
    export uses v_leak = 0 and shifts the voltage by v_rest.)"""
    pytest.importorskip("norse")
    from norse.torch.utils.import_nir import _import_norse_module

    n, dt_ms, v_rest, thresh = 6, 1.0, -0.5, 0.25
    alpha_v = np.array([1.0, 1.5, 2.0, 0.5, 1.25, 1.0])
    alpha_i = np.array([1.5, 1.0, 0.5, 2.0, 1.0, 1.25])
    if update_type == "linear":  # λ = 1 − dt/τ: τ = dt/(1 − λ), gains divided by (1 − λ)
        tau_v = np.array([0.75, 0.5, 0.875, 0.5, 0.0, 0.8])
        tau_i = np.array([0.5, 0.75, 0.875, 0.0, 0.25, 0.9])
        nir_tau_mem, nir_tau_syn = dt_ms / (1 - tau_v), dt_ms / (1 - tau_i)
        r, w_in = alpha_v / (1 - tau_v), alpha_i / (1 - tau_i)
    else:
        tau_v = np.array([8.0, 16.0, 10.0, 20.0, 4.0, 30.0])
        tau_i = np.array([4.0, 8.0, 5.0, 10.0, 2.0, 20.0])
        nir_tau_mem, nir_tau_syn, r, w_in = tau_v, tau_i, alpha_v, alpha_i
    cell = _pysnn_cuba(n, thresh, v_rest, alpha_v, alpha_i, dt_ms, tau_v, tau_i, update_type)
    # NIR in seconds; the importer's dt in the same unit
    node = _nir_cuba(nir_tau_syn * 1e-3, nir_tau_mem * 1e-3, r, w_in, thresh - v_rest, n)
    module, state = _import_norse_module(node, dt=dt_ms * 1e-3), [None]

    def step(x):
        z, state[0] = module(x, state[0])
        return z.detach() > 0

    _compare(cell, step, _inputs(n, scale=0.6 if update_type == "linear" else 8.0))


def test_cuba_lif_runs_like_spikingjelly_nir_import():
    """SpikingJelly 2.0.0 maps CubaLIF to CUBALIFNode: c' = c·(1 − dt/τ_syn) + x,
    v' = v·(1 − dt/τ_mem) + c', spike v' ≥ v_th, v ← v_reset. It accepts only uniform
    parameters with w_in = τ_syn/dt, r = τ_mem/dt and v_leak = 0, so the export rescales the
    current and the voltage: v_th = (θ − v_rest)·τ_i τ_v / (dt² α_i α_v)."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based.nir_exchange.from_nir import _NodeMapper

    n, dt_ms, v_rest, thresh, alpha_v, alpha_i, tau_v, tau_i = (
        6,
        1.0,
        -0.5,
        0.25,
        2.0,
        1.5,
        8.0,
        4.0,
    )
    cell = _pysnn_cuba(n, thresh, v_rest, alpha_v, alpha_i, dt_ms, tau_v, tau_i, "exponential")
    scale = tau_i * tau_v / (dt_ms**2 * alpha_i * alpha_v)
    node = _nir_cuba(tau_i * 1e-3, tau_v * 1e-3, tau_v / dt_ms, tau_i / dt_ms,
                     (thresh - v_rest) * scale, n)  # fmt: skip
    module, state = _NodeMapper(dt_ms * 1e-3).map_cuba_lif(node), [None]

    def step(x):
        z, state[0] = module(x, state[0])
        return z.detach() > 0

    _compare(cell, step, _inputs(n))


def test_cuba_lif_runs_like_snntorch_nir_import():
    """snnTorch 1.0.0 maps CubaLIF to Synaptic(alpha = 1 − dt/τ_syn, beta = 1 − dt/τ_mem,
    reset to zero, spike mem > threshold) with dt fixed at 1e-4 s and the same constraints as
    SpikingJelly (w_in = τ_syn/dt, r = τ_mem/dt, v_leak = 0; v_reset ignored): the export's
    time constants are scaled so that dt maps to 1e-4."""
    pytest.importorskip("snntorch")
    from snntorch.import_nir import _nir_to_snntorch_module

    n, dt_ms, v_rest, thresh, alpha_v, alpha_i, tau_v, tau_i = (
        6,
        1.0,
        -0.5,
        0.25,
        2.0,
        1.5,
        8.0,
        4.0,
    )
    cell = _pysnn_cuba(n, thresh, v_rest, alpha_v, alpha_i, dt_ms, tau_v, tau_i, "exponential")
    scale = tau_i * tau_v / (dt_ms**2 * alpha_i * alpha_v)
    unit = 1e-4 / dt_ms
    node = _nir_cuba(tau_i * unit, tau_v * unit, tau_v / dt_ms, tau_i / dt_ms,
                     (thresh - v_rest) * scale, n)  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        module = _nir_to_snntorch_module(node)
    state = list(module.init_synaptic())

    def step(x):
        spk, state[0], state[1] = module(x, *state)
        return spk.detach() > 0

    _compare(cell, step, _inputs(n))
