"""pysnn.learning: TripletSTDP and Hebbian against per-synapse NumPy references.

The networks, the random drive and the per-synapse view of the delayed presynaptic spikes come
from ``test_learning`` (its ``Observer`` rebuilds them in NumPy with explicit delay loops). The
references below are written independently of the rules: float64 arrays of the full synapse
shape ``(B, O, K, L)`` (linear: K = I, L = 1), updated per synapse, averaged over batch and
positions at the end. The pairing protocol of Pfister & Gerstner (2006, Fig. 4) is checked
against an event-driven reference that never sees a time step: it jumps from spike to spike
with exact exponential decays.
"""

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

from pysnn import native
from pysnn.learning import PFISTER_GERSTNER_2006, Hebbian, TripletSTDP
from reference import as_np
from test_learning import ATOL, B, CB, DELAYS, KINDS, Observer, drive, make_net, weight_np

VISUAL = PFISTER_GERSTNER_2006["visual_cortex"]
# a set where every term matters within the 24 steps of the random drive (dt = 1 ms)
FAST = dict(
    a2_plus=0.02, a3_plus=0.015, a2_minus=0.025, a3_minus=0.01,
    tau_plus=3.0, tau_minus=4.0, tau_x=8.0, tau_y=6.0,
)  # fmt: skip


# -- per-synapse references --------------------------------------------------------------------
def triplet_ref(params, dt, w_min=None, w_max=None):
    """One step of the all-to-all triplet rule on per-synapse arrays (float64)."""
    lam = {k: math.exp(-dt / params["tau_" + k]) for k in ("plus", "minus", "x", "y")}
    state = {}

    def step(w, obs):
        s_pre, _, s_post, _ = obs  # (B, O, K, L), (B, O, L)
        if not state:
            state.update(r1=np.zeros(s_pre.shape), r2=np.zeros(s_pre.shape))
            state.update(o1=np.zeros(s_post.shape), o2=np.zeros(s_post.shape))
        r1, r2, o1, o2 = (state[k] for k in ("r1", "r2", "o1", "o2"))
        r1 *= lam["plus"]
        r2 *= lam["x"]
        o1 *= lam["minus"]
        o2 *= lam["y"]
        dw = np.zeros(s_pre.shape)
        batch, n_post, fan_in, positions = s_pre.shape
        for b in range(batch):
            for o in range(n_post):
                for l in range(positions):
                    post, post_o1, post_o2 = s_post[b, o, l], o1[b, o, l], o2[b, o, l]
                    for k in range(fan_in):
                        # post spike: + r1·(A2+ + A3+·o2); pre spike: − o1·(A2− + A3−·r2)
                        change = (
                            post
                            * r1[b, o, k, l]
                            * (params["a2_plus"] + params["a3_plus"] * post_o2)
                        )
                        change -= (
                            s_pre[b, o, k, l]
                            * post_o1
                            * (params["a2_minus"] + params["a3_minus"] * r2[b, o, k, l])
                        )
                        dw[b, o, k, l] = change
        w = w + dw.mean(axis=(0, 3))
        if w_min is not None or w_max is not None:
            w = np.clip(w, w_min, w_max)
        r1 += s_pre
        r2 += s_pre
        o1 += s_post
        o2 += s_post
        return w

    return step


def hebbian_ref(lr, decay, w_min=None, w_max=None):
    def step(w, obs):
        s_pre, x_pre, s_post, x_post = obs
        ltp = x_pre * s_post[:, :, None, :] + s_pre * x_post[:, :, None, :]
        w = (1.0 - decay) * w + lr * ltp.mean(axis=(0, 3))
        if w_min is not None or w_max is not None:
            w = np.clip(w, w_min, w_max)
        return w

    return step


def run_against(kind, delay_kind, rng, make_rule, ref_step):
    net, delay = make_net(kind, delay_kind, rng)
    rule = make_rule(net)
    w = w0 = weight_np(net)
    for t, obs in drive(net, kind, Observer(kind, delay), rng):
        rule.update_state()
        rule.step()
        w = ref_step(w, obs)
        np.testing.assert_allclose(weight_np(net), w, rtol=0, atol=ATOL, err_msg=f"step {t}")
    assert np.abs(w - w0).max() > 1e-2  # the weights did move
    return net, rule


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delay_kind", DELAYS)
@pytest.mark.parametrize("bounds", [(None, None), (0.2, 0.8)])
def test_triplet_matches_reference(rng, kind, delay_kind, bounds):
    net, rule = run_against(
        kind,
        delay_kind,
        rng,
        lambda net: TripletSTDP(net.layers, **FAST, w_min=bounds[0], w_max=bounds[1]),
        triplet_ref(FAST, 1.0, *bounds),
    )
    layer = rule.layers[next(iter(rule.layers))]
    batch = B if kind == "linear" else CB
    # the rule's own traces: compact (B, 1, ...) with an int delay, per synapse otherwise
    assert layer["r1"].shape[:2] == (
        (batch, 1) if delay_kind == "int" else (batch, net.con.weight.shape[0])
    )
    assert layer["o1"].shape == net.neuron.spikes.shape
    assert all(bool(layer[key].gt(0).any()) for key in ("r1", "r2", "o1", "o2"))
    rule.reset_state()
    assert all(not bool(layer[key].any()) for key in ("r1", "r2", "o1", "o2"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delay_kind", DELAYS)
def test_hebbian_matches_reference(rng, kind, delay_kind):
    lr, decay = 0.05, 0.02
    run_against(
        kind, delay_kind, rng,
        lambda net: Hebbian(net.layers, lr, decay=decay, w_min=0.0, w_max=1.5),
        hebbian_ref(lr, decay, 0.0, 1.5),
    )  # fmt: skip


def test_hebbian_without_decay_or_bounds_only_grows(rng):
    net, rule = run_against(
        "linear", "int", rng, lambda net: Hebbian(net.layers, 0.05), hebbian_ref(0.05, 0.0)
    )


# -- pairing protocol (Pfister & Gerstner 2006, Fig. 4; Sjöström et al. 2001) --------------------
FREQUENCIES = (1, 2, 5, 10, 20, 25, 40, 50)  # Hz: whole periods in ms (dt = 1 ms)
N_PAIRS, LAG = 60, 10  # 60 pairings, |Δt| = 10 ms


def pairing_event_ref(period, lag, params, n_pairs=N_PAIRS):
    """Δw of one synapse for ``n_pairs`` pairings, post − pre = ``lag`` ms, event by event."""
    pre = [k * period + max(0, -lag) for k in range(n_pairs)]
    events = sorted([(t, "pre") for t in pre] + [(t + lag, "post") for t in pre])
    r1 = r2 = o1 = o2 = 0.0
    w, last = 0.0, 0.0
    for t, kind in events:
        gap, last = t - last, t
        r1 *= math.exp(-gap / params["tau_plus"])
        r2 *= math.exp(-gap / params["tau_x"])
        o1 *= math.exp(-gap / params["tau_minus"])
        o2 *= math.exp(-gap / params["tau_y"])
        if kind == "pre":
            w -= o1 * (params["a2_minus"] + params["a3_minus"] * r2)  # r2 before its jump
            r1, r2 = r1 + 1.0, r2 + 1.0
        else:
            w += r1 * (params["a2_plus"] + params["a3_plus"] * o2)  # o2 before its jump
            o1, o2 = o1 + 1.0, o2 + 1.0
    return w


def pairing_with_rule(params, dtype=torch.float64):
    """Every (frequency, ±Δt) protocol at once: pre i and post i pair with protocol i (the
    diagonal synapses); the layer is a state-dict source whose spikes are set step by step."""
    protocols = [(f, lag) for lag in (LAG, -LAG) for f in FREQUENCIES]
    n = len(protocols)
    steps = N_PAIRS * 1000 // min(FREQUENCIES) + LAG + 1
    pre = torch.zeros(steps, n, dtype=torch.bool)
    post = torch.zeros(steps, n, dtype=torch.bool)
    for i, (freq, lag) in enumerate(protocols):
        period = 1000 // freq
        times = torch.arange(N_PAIRS) * period + max(0, -lag)
        pre[times, i] = True
        post[times + lag, i] = True
    compact = torch.zeros(1, 1, n, dtype=torch.bool)
    neuron = {"spikes": torch.zeros(1, 1, n, dtype=torch.bool), "trace": torch.zeros(1, 1, n)}
    connection = {
        "weight": torch.zeros(n, n, dtype=dtype),
        "spikes": compact.expand(1, n, n),
        "trace": torch.zeros(1, n, n, dtype=dtype),
        "dt": torch.tensor(1.0),
    }
    layers = OrderedDict(pair={"connection": connection, "neuron": neuron, "type": "linear"})
    rule = TripletSTDP(layers, **params)
    last = int(torch.nonzero(pre.any(1) | post.any(1)).max()) + 1
    for t in range(last):
        compact.view(-1).copy_(pre[t])
        neuron["spikes"].view(-1).copy_(post[t])
        rule.step()
    dw = torch.diagonal(connection["weight"]).tolist()
    return {protocol: value for protocol, value in zip(protocols, dw)}


def crossover(freqs, values):
    """Frequency of the first sign change from − to +, by linear interpolation."""
    for (f0, v0), (f1, v1) in zip(zip(freqs, values), zip(freqs[1:], values[1:])):
        if v0 < 0 <= v1:
            return f0 + (f1 - f0) * (-v0) / (v1 - v0)
    return None


def test_triplet_frequency_dependence_of_the_pairing_protocol():
    dw = pairing_with_rule(VISUAL)
    for (freq, lag), value in dw.items():
        expected = pairing_event_ref(1000 // freq, lag, VISUAL)
        assert value == pytest.approx(expected, rel=1e-9, abs=1e-12), (freq, lag)
    plus = [dw[(f, LAG)] for f in FREQUENCIES]
    minus = [dw[(f, -LAG)] for f in FREQUENCIES]
    # Δt = −10 ms (post before pre): depression at 1 Hz, potentiation at 50 Hz, rising from
    # 20 Hz on, crossing zero between 30 and 40 Hz (the event reference's crossover: 34.6 Hz)
    assert minus[0] == pytest.approx(-0.3166, abs=1e-3)
    assert minus[-1] == pytest.approx(0.8848, abs=1e-3)
    i20 = FREQUENCIES.index(20)
    assert all(a < b for a, b in zip(minus[i20:], minus[i20 + 1 :]))
    assert 30.0 < crossover(FREQUENCIES, minus) < 40.0
    # Δt = +10 ms (pre before post): no pair potentiation (A2+ = 0), so only the triplet term:
    # about 0 at 1 Hz, growing with the frequency to the largest change at 50 Hz
    assert 0.0 < plus[0] < 1e-3
    assert plus[-1] == pytest.approx(0.8984, abs=1e-3)
    assert all(a < b for a, b in zip(plus, plus[1:]))
    # at high frequency the order within a pair hardly matters: both orders potentiate alike
    assert abs(plus[-1] - minus[-1]) < 0.05


def test_parameter_sets_are_the_minimal_all_to_all_fits():
    for name, params in PFISTER_GERSTNER_2006.items():
        assert params["a3_minus"] == 0.0, name  # minimal model: no triplet depression
        assert (params["tau_plus"], params["tau_minus"]) == (16.8, 33.7)
    assert PFISTER_GERSTNER_2006["visual_cortex"]["a2_plus"] == 0.0


# -- state, dtype, backends, errors ------------------------------------------------------------
def test_triplet_traces_follow_the_network_to_float64(rng):
    net, _ = make_net("linear", "int", rng)
    rule = TripletSTDP(net.layers, **FAST)
    x = torch.from_numpy(rng.random((B, 1, 6)) < 0.5)
    for _ in range(3):
        net(x)
        rule.step()
    net.double()
    net(x)
    rule.step()
    layer = rule.layers["fc"]
    assert all(layer[key].dtype == torch.float64 for key in ("r1", "r2", "o1", "o2"))
    assert net.con.weight.dtype == torch.float64


def test_triplet_dt_from_each_connection_or_given(rng):
    net, _ = make_net("linear", "int", rng)
    rule = TripletSTDP(net.layers, **FAST)
    assert rule._decays["fc"][0] == pytest.approx(math.exp(-1.0 / FAST["tau_plus"]))
    rule = TripletSTDP(net.layers, **FAST, dt=0.5)
    assert rule._decays["fc"][0] == pytest.approx(math.exp(-0.5 / FAST["tau_plus"]))
    assert "TripletSTDP(" in repr(rule) and "dt=0.5" in repr(rule)


@pytest.mark.skipif(not native.enabled(), reason="the native kernels are not built")
@pytest.mark.parametrize(
    "make", [lambda l: TripletSTDP(l, **FAST), lambda l: Hebbian(l, 0.05, decay=0.01)]
)
def test_backends_agree(rng, make):
    seed = int(rng.integers(1 << 30))
    weights = []
    for backend in ("torch", "native"):
        net, _ = make_net("linear", "int", np.random.default_rng(seed))
        rule = make(net.layers)
        rule.backend = backend
        inputs = np.random.default_rng(seed + 1)
        for _ in range(20):
            net(torch.from_numpy(inputs.random((B, 1, 6)) < 0.4))
            rule.step()
        weights.append(as_np(net.con.weight))
    np.testing.assert_allclose(weights[0], weights[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(a2_plus=-1e-3), ValueError, "a2_plus"),
        (dict(a3_minus=float("nan")), ValueError, "a3_minus"),
        (dict(tau_x=0.0), ValueError, "tau_x"),
        (dict(tau_y="125"), TypeError, "tau_y"),
        (dict(dt=-1.0), ValueError, "dt"),
        (dict(w_min=1.0, w_max=0.0), ValueError, "w_min"),
    ],
)
def test_triplet_errors(rng, kwargs, error, words):
    net, _ = make_net("linear", "int", rng)
    with pytest.raises(error, match=f"TripletSTDP: {words}"):
        TripletSTDP(net.layers, **{**FAST, **kwargs})


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(lr=0.0), ValueError, "lr"),
        (dict(decay=1.5), ValueError, "decay"),
        (dict(decay=True), TypeError, "decay"),
    ],
)
def test_hebbian_errors(rng, kwargs, error, words):
    net, _ = make_net("linear", "int", rng)
    with pytest.raises(error, match=f"Hebbian: {words}"):
        Hebbian(net.layers, **{"lr": 0.1, **kwargs})


def test_triplet_on_a_state_dict_without_dt_asks_for_it():
    connection = {"weight": torch.zeros(2, 3), "spikes": torch.zeros(1, 2, 3, dtype=torch.bool)}
    connection["trace"] = torch.zeros(1, 2, 3)
    neuron = {"spikes": torch.zeros(1, 1, 2, dtype=torch.bool), "trace": torch.zeros(1, 1, 2)}
    layers = {"l": {"connection": connection, "neuron": neuron, "type": "linear"}}
    with pytest.raises(ValueError, match="TripletSTDP: .*pass dt="):
        TripletSTDP(layers, **FAST)
    TripletSTDP(layers, **FAST, dt=1.0).step()


@pytest.mark.parametrize(
    "make",
    [lambda layers: TripletSTDP(layers, **FAST), lambda layers: Hebbian(layers, 0.1, decay=0.1)],
    ids=["triplet", "hebbian"],
)
def test_steady_state_step_allocates_less_than_one_weight_matrix(rng, make):
    """With an int delay a step allocates no (B, O, I) tensor, nor even an (O, I) one."""
    from torch.profiler import ProfilerActivity, profile

    from test_learning import LinearNet

    batch, n_in, n_out = 4, 300, 200
    net = LinearNet(1, batch=batch, n_in=n_in, n_out=n_out, thresh=0.5)
    rule = make(net.layers)
    for _ in range(3):  # scratch buffers are allocated once, at the first step
        net(torch.from_numpy(rng.random((batch, 1, n_in)) < 0.3))
        rule.step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        rule.step()
    allocated = sum(max(event.self_cpu_memory_usage, 0) for event in prof.events())
    assert allocated < n_out * n_in * 4 / 2, allocated
