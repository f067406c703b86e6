"""pysnn.learning: every rule against a per-synapse NumPy reference, the STDP window, bounds,
layer sources (modules / state dicts), shared neurons, rewards, PySNN's helpers and errors.

The reference builds the full per-synapse arrays ``(B, O, K, L)`` (linear: K = I, L = 1) with
explicit broadcasting: the delayed presynaptic spikes come from a NumPy history of the inputs and
NumPy delays (explicit loops), the presynaptic trace from a NumPy trace of the inputs, unfolded
with the loop im2col of ``reference.py``. The postsynaptic spikes and traces are read from the
neuron each step (the neuron itself is tested in test_neuron.py). Weight updates are computed
independently in float64 and compared with the module's float32 weights after every step.
"""

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import Tensor

from pysnn import native
from pysnn.connection import Conv2d, Linear
from pysnn.learning import FedeSTDP, LearningRule, MSTDP, MSTDPET, STDP
from pysnn.network import SNNNetwork
from pysnn.neuron import IFNeuron, Input, LIFNeuron
from reference import as_np, conv_out_shape, f32, unfold_ref

T_STEPS = 24
B, I, O = 3, 6, 4  # linear
CB, C_IN, C_OUT, IM, KERNEL, STRIDE, PAD = 2, 2, 3, (6, 5), (3, 3), (2, 2), (1, 1)
H_OUT, W_OUT = conv_out_shape(IM, KERNEL, STRIDE, PAD, (1, 1))
K, L = C_IN * KERNEL[0] * KERNEL[1], H_OUT * W_OUT
IN_DECAY, IN_ALPHA = 0.8, 1.0
ATOL = 1e-5


class LinearNet(SNNNetwork):
    """Input → Linear → IF neuron (linear traces)."""

    def __init__(self, delay, batch=B, n_in=I, n_out=O, thresh=1.2):
        super().__init__()
        self.input = Input((batch, 1, n_in), 1.0, IN_ALPHA, IN_DECAY)
        self.con = Linear(n_in, n_out, batch, 1.0, delay)
        self.neuron = IFNeuron((batch, 1, n_out), thresh, 0.0, 1.0, 0.7, 1.0, 0.0, 0.6)
        self.add_layer("fc", self.con, self.neuron)

    def forward(self, x):
        x, trace = self.input(x)
        activation, trace = self.con(x, trace)
        return self.neuron(activation)


class ConvNet(SNNNetwork):
    """Input → Conv2d (C_in > 1, padding, stride 2) → IF neuron."""

    def __init__(self, delay):
        super().__init__()
        self.input = Input((CB, C_IN) + IM, 1.0, IN_ALPHA, IN_DECAY)
        self.con = Conv2d(C_IN, C_OUT, KERNEL, IM, CB, 1.0, delay, STRIDE, PAD)
        self.neuron = IFNeuron((CB, C_OUT, H_OUT, W_OUT), 1.5, 0.0, 1.0, 0.7, 1.0, 0.0, 0.6)
        self.add_layer("conv", self.con, self.neuron)

    def forward(self, x):
        x, trace = self.input(x)
        activation, trace = self.con(x, trace)
        return self.neuron(activation)


class Observer:
    """Per-synapse NumPy view of one layer, step by step: ``(B, O, K, L)`` presynaptic arrays
    (delayed spikes, trace) and ``(B, O, L)`` postsynaptic arrays."""

    def __init__(self, kind, delay, shape=None, decay=IN_DECAY):
        self.kind = kind
        self.decay = decay  # of the input trace (f32(IN_DECAY) for a network made float64)
        self.history = []  # presynaptic spikes per step, (B, K, L)
        self.trace = None
        if shape is None:
            shape = (O, I, 1) if kind == "linear" else (C_OUT, K, L)
        n_post, fan_in, positions = self.shape = shape
        delay = np.asarray(delay)
        self.delay = np.broadcast_to(
            delay.reshape(delay.shape + (1,) * (3 - delay.ndim)), self.shape
        )

    def columns(self, x):
        if self.kind == "linear":
            return x.reshape(x.shape[0], -1, 1)
        return unfold_ref(x, KERNEL, STRIDE, PAD, (1, 1))

    def observe(self, x, neuron):
        """Feed this step's input ``x`` (NumPy, the network input); return the four arrays."""
        cols = self.columns(x.astype(np.float64))
        self.history.append(cols)
        self.trace = cols * IN_ALPHA if self.trace is None else self.trace * self.decay + cols
        batch = cols.shape[0]
        n_post, fan_in, positions = self.shape
        t = len(self.history) - 1
        spikes = np.zeros((batch, n_post, fan_in, positions))
        for o in range(n_post):
            for k in range(fan_in):
                for l in range(positions):
                    src = t - int(self.delay[o, k, l])
                    if src >= 0:
                        spikes[:, o, k, l] = self.history[src][:, k, l]
        trace = np.broadcast_to(self.trace[:, None], spikes.shape)
        post_spikes = as_np(neuron.spikes).reshape(batch, n_post, positions)
        post_trace = as_np(neuron.trace).reshape(batch, n_post, positions)
        return spikes, trace, post_spikes, post_trace


def corr(pre, post):
    """Mean over batch and positions of ``pre[b,o,k,l]·post[b,o,l]`` → ``(O, K)``."""
    return (pre * post[:, :, None, :]).mean(axis=(0, 3))


def make_net(kind, delay_kind, rng):
    """A network with random weights and its delay (int 2 or a per-synapse tensor 0..3)."""
    torch.manual_seed(int(rng.integers(1 << 30)))
    shape = (O, I) if kind == "linear" else (C_OUT, K, L)
    delay = 2 if delay_kind == "int" else torch.from_numpy(rng.integers(0, 4, size=shape))
    net = LinearNet(delay) if kind == "linear" else ConvNet(delay)
    return net, (delay if isinstance(delay, int) else delay.numpy())


def random_input(kind, rng, p=0.4):
    shape = (B, 1, I) if kind == "linear" else (CB, C_IN) + IM
    return rng.random(shape) < p


def weight_np(net):
    return as_np(net.con.weight).reshape(net.con.weight.shape[0], -1)


def drive(net, kind, observer, rng, steps=T_STEPS):
    """Yield ``(t, observed arrays)`` after each network step with random input."""
    post_counts = []
    for t in range(steps):
        x = random_input(kind, rng)
        net(torch.from_numpy(x))
        observed = observer.observe(x, net.neuron)
        post_counts.append(observed[2].mean())
        yield t, observed
    # the comparison is only meaningful if the postsynaptic neurons both spike and stay silent
    assert 0.02 < np.mean(post_counts) < 0.9


KINDS = ["linear", "conv2d"]
DELAYS = ["int", "tensor"]


# -- STDP ----------------------------------------------------------------------------------------
def stdp_ref(w, obs, lr, a_plus, a_minus, w_min, w_max, dependence):
    spikes, trace, post_spikes, post_trace = obs
    pot, dep = corr(trace, post_spikes), corr(spikes, post_trace)
    if dependence == "additive":
        new = w + lr * (a_plus * pot - a_minus * dep)
    else:
        new = w + lr * (a_plus * (w_max - w) * pot - a_minus * (w - w_min) * dep)
    return new


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delay_kind", DELAYS)
@pytest.mark.parametrize("dependence", ["additive", "multiplicative"])
@pytest.mark.parametrize("bounds", [(0.1, 0.9), (0.0, 1.0)])
def test_stdp_matches_reference(rng, kind, delay_kind, dependence, bounds):
    net, delay = make_net(kind, delay_kind, rng)
    w_min, w_max = bounds
    lr, a_plus, a_minus = 0.3, 0.5, 0.4
    rule = STDP(net.layers, lr, a_plus, a_minus, w_min, w_max, dependence)
    w = weight_np(net)
    observer = Observer(kind, delay)
    clamped = 0
    for t, obs in drive(net, kind, observer, rng):
        rule.update_state()
        rule.step()
        unclamped = stdp_ref(w, obs, lr, a_plus, a_minus, w_min, w_max, dependence)
        w = np.clip(unclamped, w_min, w_max)
        if t > 0:  # the initial U(0, 1) weights may lie outside the bounds
            clamped += np.sum(unclamped != w)
            if dependence == "multiplicative":
                # soft bounds never push a weight out (here lr·a·trace < 1)
                assert (unclamped >= w_min - 1e-12).all() and (unclamped <= w_max + 1e-12).all()
        np.testing.assert_allclose(weight_np(net), w, rtol=0, atol=ATOL, err_msg=f"step {t}")
        assert (weight_np(net) >= w_min).all() and (weight_np(net) <= w_max).all()
    if dependence == "additive":
        assert clamped > 0  # the hard bounds were exercised


def window_pair(delta, update_type="linear", steps=60, t0=50):
    """One pre and one post neuron, each forced to spike once; returns the STDP Δw."""
    net = LinearNet(0, batch=1, n_in=1, n_out=1, thresh=0.5)
    if update_type == "exponential":
        net.input = Input((1, 1, 1), 1.0, 1.0, 5.0, "exponential")
        net.neuron = LIFNeuron((1, 1, 1), 0.5, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 8.0, "exponential")
        net._layers.clear()
        net.add_layer("fc", net.con, net.neuron)
    net.con.weight.data.fill_(0.0)  # no drive: the post neuron spikes only when forced
    rule = STDP(net.layers, 1.0, 0.01, 0.02, w_min=-1.0, w_max=1.0)
    t_pre = t0 - delta if delta > 0 else t0
    t_post = t_pre + delta
    for t in range(steps):
        pre = torch.tensor([[[t == t_pre]]])
        x, trace = net.input(pre)
        activation, trace = net.con(x, trace)
        forced = torch.full_like(activation, 1.0 if t == t_post else 0.0)
        net.neuron(forced)
        rule.step()
    return float(net.con.weight)


@pytest.mark.parametrize("update_type", ["linear", "exponential"])
def test_stdp_window(update_type):
    if update_type == "linear":
        lam_pre, x1_pre, lam_post, x1_post = 0.8, 1.0, 0.6, 0.7
    else:
        lam_pre, x1_pre = 1 - 1.0 / 5.0, 1.0 / 5.0
        lam_post, x1_post = 1 - 1.0 / 8.0, 1.0 / 8.0
    deltas = list(range(-40, 41))
    dw = np.array([window_pair(d, update_type) for d in deltas])
    for d, value in zip(deltas, dw):
        if d > 0:
            expected = 0.01 * x1_pre * lam_pre**d
        elif d < 0:
            expected = -0.02 * x1_post * lam_post ** (-d)
        else:
            expected = 0.01 * x1_pre - 0.02 * x1_post
        assert value == pytest.approx(expected, rel=1e-4, abs=1e-12), d
    # sign and exponential decay: log|Δw| is linear in Δt with slope -dt/τ± = ln λ
    pos = np.array(deltas) > 0
    slope_plus = np.polyfit(np.array(deltas)[pos][:15], np.log(dw[pos][:15]), 1)[0]
    neg = np.array(deltas) < 0
    slope_minus = np.polyfit(np.array(deltas)[neg][-15:], np.log(-dw[neg][-15:]), 1)[0]
    assert (dw[pos] > 0).all() and (dw[neg] < 0).all()
    assert slope_plus == pytest.approx(math.log(lam_pre), rel=1e-3)
    assert slope_minus == pytest.approx(-math.log(lam_post), rel=1e-3)
    tau_plus = -1.0 / slope_plus  # in steps (dt = 1 ms)
    assert 0.01 * x1_pre * math.exp(-3 / tau_plus) == pytest.approx(dw[deltas.index(3)], rel=1e-3)


# -- reward-modulated rules and FedeSTDP -------------------------------------------------------
REWARD_FORMS = ["float", "tensor0", "batch"]


def rewards_for(rng, form, batch, steps=T_STEPS):
    """Rewards of both signs: ``(torch or Python reward, NumPy (batch,) array)`` per step."""
    values = rng.normal(size=(steps, batch if form == "batch" else 1))
    assert (values > 0).any() and (values < 0).any()
    out = []
    for row in values:
        if form == "float":
            out.append((float(row[0]), np.full(batch, row[0])))
        elif form == "tensor0":
            reward = torch.tensor(row[0], dtype=torch.float32)
            out.append((reward, np.full(batch, float(reward))))
        else:
            reward = torch.from_numpy(row).float()
            out.append((reward, as_np(reward)))
    return out


def check_rule(kind, delay_kind, rng, make_rule, ref_step, rewards=None):
    """Drive a network with a rule; compare its weights with ``ref_step`` after every step."""
    net, delay = make_net(kind, delay_kind, rng)
    rule = make_rule(net)
    w = weight_np(net)
    state = {}
    batch = B if kind == "linear" else CB
    if rewards is not None:
        rewards = rewards_for(rng, rewards, batch)
    for t, obs in drive(net, kind, Observer(kind, delay), rng):
        rule.update_state()
        if rewards is None:
            rule.step()
            w = ref_step(w, obs, state)
        else:
            rule.step(rewards[t][0])
            w = ref_step(w, obs, state, rewards[t][1])
        np.testing.assert_allclose(weight_np(net), w, rtol=0, atol=ATOL, err_msg=f"step {t}")
    assert np.abs(w - state["w0"]).max() > 1e-2  # the weights did move
    return net, rule


def mstdp_ref(a_pre, a_post, lr):
    def ref_step(w, obs, state, reward):
        state.setdefault("w0", w)
        spikes, trace, post_spikes, post_trace = obs
        r = reward[:, None, None]
        return w + lr * (
            a_pre * corr(trace, post_spikes * r) - a_post * corr(spikes, post_trace * r)
        )

    return ref_step


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delay_kind", DELAYS)
@pytest.mark.parametrize("form", REWARD_FORMS)
def test_mstdp_matches_reference(rng, kind, delay_kind, form):
    a_pre, a_post, lr = 0.5, 0.4, 0.1
    check_rule(
        kind,
        delay_kind,
        rng,
        lambda net: MSTDP(net.layers, a_pre, a_post, lr),
        mstdp_ref(a_pre, a_post, lr),
        form,
    )


def mstdpet_ref(a_pre, a_post, lr, decay):
    """PySNN's form: one eligibility trace per sample and synapse, (B, O, K, L)."""

    def ref_step(w, obs, state, reward):
        state.setdefault("w0", w)
        spikes, trace, post_spikes, post_trace = obs
        e = state.get("e", np.zeros(spikes.shape))
        e = (
            decay * e
            + a_pre * trace * post_spikes[:, :, None, :]
            - a_post * spikes * post_trace[:, :, None, :]
        )
        state["e"] = e
        return w + lr * (reward[:, None, None, None] * e).mean(axis=(0, 3))

    return ref_step


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delay_kind", DELAYS)
@pytest.mark.parametrize("form", REWARD_FORMS + ["float-per-sample"])
def test_mstdpet_matches_reference(rng, kind, delay_kind, form):
    a_pre, a_post, lr, decay = 0.5, 0.4, 0.05, 0.8
    per_sample = form in ("batch", "float-per-sample")
    net, rule = check_rule(
        kind,
        delay_kind,
        rng,
        lambda net: MSTDPET(
            net.layer_state_dict(), a_pre, a_post, lr, decay, per_sample_reward=per_sample
        ),
        mstdpet_ref(a_pre, a_post, lr, decay),
        form.replace("-per-sample", ""),
    )
    e_trace = rule.layers[next(iter(rule.layers))]["e_trace"]
    batch = B if kind == "linear" else CB
    assert e_trace.shape == ((batch,) if per_sample else ()) + tuple(net.con.weight.shape)
    rule.reset_state()
    assert not e_trace.any()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("decay", [0.3, 1e-39, 0.0])
def test_mstdpet_kept_e_trace_reference_is_live(rng, kind, decay):
    """A reference to ``layer["e_trace"]`` taken before the steps holds E after every step: the
    batch mean of the per-sample NumPy E of ``mstdpet_ref`` (float64, recomputed each step).
    Decay 1e-39 (subnormal, legal) used to fail with "value cannot be converted to type float
    without overflow"; the weights must follow the reference too."""
    a_pre, a_post, lr = 0.5, 0.4, 0.05
    net, delay = make_net(kind, "int", rng)
    rule = MSTDPET(net.layers, a_pre, a_post, lr, decay)
    kept = next(iter(rule.layers.values()))["e_trace"]
    ref_step = mstdpet_ref(a_pre, a_post, lr, decay)
    w, state = weight_np(net), {}
    batch = B if kind == "linear" else CB
    rewards = rewards_for(rng, "float", batch)
    for t, obs in drive(net, kind, Observer(kind, delay), rng):
        rule.update_state()
        rule.step(rewards[t][0])
        w = ref_step(w, obs, state, rewards[t][1])
        expected_e = state["e"].mean(axis=(0, 3)).reshape(net.con.weight.shape)
        np.testing.assert_allclose(as_np(kept), expected_e, atol=ATOL, rtol=1e-5, err_msg=f"{t}")
        np.testing.assert_allclose(weight_np(net), w, rtol=0, atol=ATOL, err_msg=f"step {t}")
    assert np.abs(expected_e).max() > 0.01  # the trace is not trivially zero
    assert kept is next(iter(rule.layers.values()))["e_trace"]


def test_mstdpet_subnormal_decay_batch_one(rng):
    """γ = 1e-39 with a batch of one: E ← γE + C, checked against NumPy for 10 steps."""
    net = LinearNet(0, batch=1)
    rule = MSTDPET(net.layers, 1.0, 0.5, 0.1, 1e-39)
    e = np.zeros((O, I))
    for t in range(10):
        net(torch.from_numpy(rng.random((1, 1, I)) < 0.6))
        pre_trace, pre_spikes = as_np(net.con.trace)[0], as_np(net.con.spikes)[0]
        post_spikes, post_trace = as_np(net.neuron.spikes)[0, 0], as_np(net.neuron.trace)[0, 0]
        e = (
            1e-39 * e
            + 1.0 * post_spikes[:, None] * pre_trace
            - 0.5 * post_trace[:, None] * pre_spikes
        )
        rule.update_state()
        np.testing.assert_allclose(as_np(rule.layers["fc"]["e_trace"]), e, atol=1e-6)


def fede_ref(lr, w_init, a, gated=False):
    """Paredes-Vallés et al.'s rule; ``gated``: applied only where the postsynaptic neuron
    spiked (B22)."""

    def ref_step(w, obs, state):
        state.setdefault("w0", w)
        _, trace, post_spikes, _ = obs
        normed = trace / max(trace.max(), np.finfo(np.float32).tiny)
        delta = (w - w_init)[None, :, :, None]
        change = np.exp(-delta) * (np.exp(normed) - a) - np.exp(delta) * (np.exp(1 - normed) - a)
        if gated:
            change = change * post_spikes[:, :, None, :]  # (B, O, K, L) · s[b, o, l]
        return w + lr * change.mean(axis=(0, 3))

    return ref_step


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delay_kind", DELAYS)
def test_fede_stdp_matches_reference(rng, kind, delay_kind):
    lr, w_init, a = 0.01, 0.5, 0.3
    check_rule(
        kind,
        delay_kind,
        rng,
        lambda net: FedeSTDP(net.layer_state_dict(), lr, w_init, a),
        fede_ref(lr, w_init, a),
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delay_kind", DELAYS)
def test_fede_stdp_gated_by_post_spikes_matches_reference(rng, kind, delay_kind):
    lr, w_init, a = 0.01, 0.5, 0.3
    net, rule = check_rule(
        kind,
        delay_kind,
        rng,
        lambda net: FedeSTDP(net.layers, lr, w_init, a, post_spike_gated=True),
        fede_ref(lr, w_init, a, gated=True),
    )
    assert rule.defaults["post_spike_gated"] is True


def test_fede_stdp_gated_leaves_silent_neurons_alone():
    net = LinearNet(1)
    rule = FedeSTDP(net.layers, 0.01, 0.5, 0.3, post_spike_gated=True)
    before = net.con.weight.detach().clone()
    net(torch.ones(B, 1, I, dtype=torch.bool))  # traces rise; the neurons cannot spike yet
    assert not net.neuron.spikes.any()
    rule.step()
    assert torch.equal(net.con.weight, before)
    with pytest.raises(TypeError, match="post_spike_gated must be a bool"):
        FedeSTDP(net.layers, 0.01, 0.5, 0.3, post_spike_gated=1)


def test_fede_stdp_zero_traces_give_no_nan():
    net = LinearNet(0)
    rule = FedeSTDP(net.layers, 0.1, 0.5, 0.25)
    w = weight_np(net)
    rule.step()  # all traces are zero: x̂ = 0, not 0/0
    delta = w - 0.5
    expected = w + 0.1 * (np.exp(-delta) * (1 - 0.25) - np.exp(delta) * (np.e - 0.25))
    assert np.isfinite(weight_np(net)).all()
    np.testing.assert_allclose(weight_np(net), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("rule_name", ["MSTDP", "MSTDPET"])
def test_reward_rules_clamp_to_optional_bounds(rng, rule_name):
    a_pre, a_post, lr, w_min, w_max = 0.5, 0.4, 0.3, 0.2, 0.7
    inner = (
        mstdp_ref(a_pre, a_post, lr)
        if rule_name == "MSTDP"
        else mstdpet_ref(a_pre, a_post, lr, 0.0)
    )

    def make(net):
        if rule_name == "MSTDP":
            return MSTDP(net.layers, a_pre, a_post, lr, w_min=w_min, w_max=w_max)
        return MSTDPET(net.layers, a_pre, a_post, lr, 0.0, w_min=w_min, w_max=w_max)

    def ref_step(w, obs, state, reward):
        new = inner(w, obs, state, reward)
        return np.clip(new, w_min, w_max)

    net, _ = check_rule("linear", "int", rng, make, ref_step, "float")
    assert weight_np(net).min() == pytest.approx(w_min) or weight_np(net).max() == pytest.approx(
        w_max
    )


# -- layer sources -------------------------------------------------------------------------------
class SharedNet(SNNNetwork):
    """Two inputs, two connections (int and per-synapse delays) into one shared neuron."""

    I2 = 3

    def __init__(self, delay2):
        super().__init__()
        self.in1 = Input((B, 1, I), 1.0, IN_ALPHA, IN_DECAY)
        self.in2 = Input((B, 1, self.I2), 1.0, IN_ALPHA, IN_DECAY)
        self.con1 = Linear(I, O, B, 1.0, 1)
        self.con2 = Linear(self.I2, O, B, 1.0, delay2)
        self.neuron = IFNeuron((B, 1, O), 1.5, 0.0, 1.0, 0.7, 1.0, 0.0, 0.6)
        self.add_layer("a", self.con1, self.neuron)
        self.add_layer("b", self.con2, self.neuron)

    def forward(self, x1, x2):
        a1, _ = self.con1(*self.in1(x1))
        a2, _ = self.con2(*self.in2(x2))
        return self.neuron([a1, a2])


@pytest.mark.parametrize("source", ["modules", "state_dict"])
def test_layers_sharing_a_neuron_are_trained_together(rng, source):
    torch.manual_seed(5)
    delay2 = rng.integers(0, 3, size=(O, SharedNet.I2))
    net = SharedNet(torch.from_numpy(delay2))
    layers = net.layers if source == "modules" else net.layer_state_dict()
    a_pre, a_post, lr, decay = 0.5, 0.4, 0.05, 0.7
    rule = MSTDPET(layers, a_pre, a_post, lr, decay)
    observers = {"a": Observer("linear", 1), "b": Observer("linear", delay2, (O, SharedNet.I2, 1))}
    refs = {name: mstdpet_ref(a_pre, a_post, lr, decay) for name in observers}
    cons = {"a": net.con1, "b": net.con2}
    w = {name: as_np(con.weight) for name, con in cons.items()}
    states = {name: {} for name in observers}
    for t in range(T_STEPS):
        x1, x2 = rng.random((B, 1, I)) < 0.4, rng.random((B, 1, SharedNet.I2)) < 0.4
        net(torch.from_numpy(x1), torch.from_numpy(x2))
        rule.update_state()
        reward = float(rng.normal())
        rule.step(reward)
        for name, x in (("a", x1), ("b", x2)):
            obs = observers[name].observe(x, net.neuron)
            w[name] = refs[name](w[name], obs, states[name], np.full(B, reward))
            np.testing.assert_allclose(as_np(cons[name].weight), w[name], rtol=0, atol=ATOL)
    for name in cons:
        assert np.abs(w[name] - states[name]["w0"]).max() > 1e-2


def test_state_dicts_and_modules_give_the_same_weights(rng):
    delay = torch.from_numpy(rng.integers(0, 3, size=(O, I)))
    nets = []
    for _ in range(2):
        torch.manual_seed(3)
        nets.append(LinearNet(delay))
    layer_dict = nets[0].layer_state_dict()
    kept = {name: set(layer) for name, layer in layer_dict.items()}
    rules = [
        STDP(layer_dict, 0.2, 0.5, 0.4, weight_dependence="multiplicative"),
        STDP(
            OrderedDict(fc=nets[1].layers["fc"]), 0.2, 0.5, 0.4, weight_dependence="multiplicative"
        ),
    ]
    assert {name: set(layer) for name, layer in layer_dict.items()} == kept  # not rewritten
    before = nets[0].con.weight.clone()
    for _ in range(T_STEPS):
        x = torch.from_numpy(random_input("linear", rng))
        for net, rule in zip(nets, rules):
            net(x)
            rule.update_state()
            rule.step()
    assert not torch.equal(nets[0].con.weight, before)
    assert torch.equal(nets[0].con.weight, nets[1].con.weight)


def test_rule_on_modules_follows_the_network_to_another_dtype(rng):
    inputs = [torch.from_numpy(random_input("linear", rng)) for _ in range(T_STEPS)]
    nets, rules = [], []
    for build_rule_first in (True, False):
        torch.manual_seed(11)
        net = LinearNet(1)
        if build_rule_first:
            rule = MSTDPET(net.layers, 0.5, 0.4, 0.05, 0.8)
            net = net.double()  # replaces every buffer and the weight
        else:
            net = net.double()
            rule = MSTDPET(net.layers, 0.5, 0.4, 0.05, 0.8)
        nets.append(net)
        rules.append(rule)
    before = nets[0].con.weight.clone()
    for x in inputs:
        for net, rule in zip(nets, rules):
            net(x)
            rule.update_state()
            rule.step(-0.5)
    assert rules[0].layers["fc"]["e_trace"].dtype == torch.float64
    assert not torch.equal(nets[0].con.weight, before)
    assert torch.equal(nets[0].con.weight, nets[1].con.weight)


def test_layer_mapping_reads_live_state():
    net = LinearNet(0)
    rule = MSTDPET(net.layers, 1.0, 1.0, 0.1, 0.5)
    layer = rule.layers["fc"]
    assert set(layer) == {
        "pre_spikes",
        "pre_trace",
        "post_spikes",
        "post_trace",
        "weight",
        "type",
        "e_trace",
    }
    assert layer["type"] == "linear"
    assert layer["e_trace"].shape == (O, I)
    net(torch.ones(B, 1, I, dtype=torch.bool))
    assert torch.equal(layer["pre_spikes"], net.con.spikes)
    assert torch.equal(layer["post_trace"], net.neuron.trace)
    layer["weight"].fill_(0.25)  # an alias of the parameter
    assert (net.con.weight == 0.25).all()


def test_custom_rule_written_pysnn_style():
    """A user rule that keeps its state in the layer dict and writes the weight through it."""

    class Hebb(LearningRule):
        def __init__(self, layers, lr):
            super().__init__(layers, {"lr": lr})
            for layer in self.layers.values():
                layer["e_trace"] = torch.zeros_like(layer["weight"])

        def update_state(self):
            for layer in self.layers.values():
                product = self.pre_mult_post(layer["pre_trace"], layer["post_spikes"], "linear")
                layer["e_trace"] = self.reduce_connections(product, layer["type"])

        def step(self):
            for layer in self.layers.values():
                layer["weight"] += self.defaults["lr"] * layer["e_trace"]

        def reset_state(self):
            for layer in self.layers.values():
                layer["e_trace"].zero_()

    net = LinearNet(0)
    rule = Hebb(net.layer_state_dict(), 0.5)
    w = as_np(net.con.weight)
    x = torch.ones(B, 1, I, dtype=torch.bool)
    net(x)
    rule.update_state()
    rule.step()
    expected = w + 0.5 * corr(
        np.broadcast_to(as_np(net.input.trace)[:, :, :, None], (B, O, I, 1)),
        as_np(net.neuron.spikes).reshape(B, O, 1),
    )
    np.testing.assert_allclose(as_np(net.con.weight), expected, rtol=0, atol=1e-6)
    assert as_np(net.neuron.spikes).any()
    rule.layers["fc"]["weight"] = torch.zeros(O, I)  # assigning copies into the live weight
    assert not net.con.weight.any()
    with pytest.raises(KeyError, match="'type' cannot be changed"):
        rule.layers["fc"]["type"] = "conv2d"


def test_subset_of_layers_trains_only_those(rng):
    net = SharedNet(1)
    rule = STDP(OrderedDict(b=net.layers["b"]), 0.5, 1.0, 0.5, 0.0, 1.0)
    w_a, w_b = net.con1.weight.clone(), net.con2.weight.clone()
    for _ in range(10):
        net(
            torch.from_numpy(rng.random((B, 1, I)) < 0.5),
            torch.from_numpy(rng.random((B, 1, SharedNet.I2)) < 0.5),
        )
        rule.step()
    assert torch.equal(net.con1.weight, w_a)
    assert not torch.equal(net.con2.weight, w_b)


@pytest.mark.parametrize("rule_name", ["STDP", "MSTDP", "MSTDPET", "FedeSTDP"])
def test_rules_run_in_the_simulation_loop(rng, rule_name):
    """run() calls update_state() and step()/step(r) for every rule, as the hand-written loop."""
    inputs = torch.from_numpy(rng.random((B, 1, I, 12)) < 0.4)
    weights = []
    for use_run in (True, False):
        torch.manual_seed(2)
        net = LinearNet(1)
        rule = {
            "STDP": lambda: STDP(net.layers, 0.1, 1.0, 0.5),
            "MSTDP": lambda: MSTDP(net.layers, 1.0, 0.5, 0.1),
            "MSTDPET": lambda: MSTDPET(net.layers, 1.0, 0.5, 0.1, 0.9),
            "FedeSTDP": lambda: FedeSTDP(net.layers, 0.01, 0.5, 0.5),
        }[rule_name]()
        reward = None if rule_name in ("STDP", "FedeSTDP") else -0.5
        if use_run:
            net.run(inputs, rule, reward)
        else:
            net.reset_state()
            with torch.no_grad():
                for t in range(inputs.shape[-1]):
                    net(inputs[..., t])
                    rule.update_state()
                    rule.step() if reward is None else rule.step(reward)
        weights.append(net.con.weight.clone())
    assert torch.equal(weights[0], weights[1])


# -- float64 --------------------------------------------------------------------------------------
F64_ATOL = 1e-12


@pytest.mark.parametrize("rule_name", ["STDP", "MSTDP", "MSTDPET"])
@pytest.mark.parametrize(
    "kind, backend", [("linear", "torch"), ("linear", "native"), ("conv2d", "torch")]
)
def test_float64_rules_compute_in_float64(rng, rule_name, kind, backend):
    """A float64 network (``.double()``) trained with coefficients that float32 cannot hold
    (0.1, 0.3, 0.7) has, after every step, the weights of the float64 NumPy reference to 1e-12,
    on both backends (Conv2d has no native kernel: its "native" raises, tested in
    test_learning_backends.py). Computing ``bool spikes × coefficient`` in float32, the defect
    this guards against, is off by about 1e-9 (checked below to be well above the tolerance)."""
    if backend == "native" and not native.enabled():
        pytest.skip("the native kernels are not available or switched off")
    net, delay = make_net(kind, "int", rng)
    net = net.double()
    lr, a_pre, a_post, decay = 0.7, 0.1, 0.3, 0.6
    layers = net.layers
    if rule_name == "STDP":  # unbounded: no clamp
        rule = STDP(layers, lr, a_pre, a_post, -math.inf, math.inf, backend=backend)
        refs = [
            lambda w, obs, state, a=a: stdp_ref(w, obs, lr, a, a_post, 0, 0, "additive")
            for a in (a_pre, f32(a_pre))
        ]
        rewards = None
    elif rule_name == "MSTDP":
        rule = MSTDP(layers, a_pre, a_post, lr, backend=backend)
        refs = [mstdp_ref(a, a_post, lr) for a in (a_pre, f32(a_pre))]
        rewards = rewards_for(rng, "float", B if kind == "linear" else CB)
    else:
        rule = MSTDPET(layers, a_pre, a_post, lr, decay, backend=backend)
        refs = [mstdpet_ref(a, a_post, lr, decay) for a in (a_pre, f32(a_pre))]
        rewards = rewards_for(rng, "float", B if kind == "linear" else CB)
    assert net.con.weight.dtype == torch.float64
    weights = [weight_np(net)] * 2  # exact reference, reference with a_pre rounded to float32
    states = [{}, {}]
    observer = Observer(kind, delay, decay=float(f32(IN_DECAY)))
    for t, obs in drive(net, kind, observer, rng):
        rule.update_state()
        rule.step() if rewards is None else rule.step(rewards[t][0])
        extra = () if rewards is None else (rewards[t][1],)
        weights = [ref(w, obs, state, *extra) for ref, w, state in zip(refs, weights, states)]
        np.testing.assert_allclose(
            weight_np(net), weights[0], rtol=0, atol=F64_ATOL, err_msg=f"step {t}"
        )
    assert np.abs(weights[0] - weight_np(net)).max() <= F64_ATOL
    assert np.abs(weights[1] - weight_np(net)).max() > 100 * F64_ATOL  # float32 would fail


# -- PySNN's helpers -----------------------------------------------------------------------------
def test_pre_mult_post_and_reduce_connections_linear(rng):
    rule = STDP(LinearNet(0).layers, 0.1, 1.0, 1.0)
    pre = rng.random((2, 3, 4)) < 0.5
    post = rng.random((2, 1, 3))
    product = rule.pre_mult_post(torch.from_numpy(pre), torch.from_numpy(post), "linear")
    assert product.dtype == torch.float64 and product.shape == (2, 3, 4)
    expected = np.zeros((2, 3, 4))
    for b in range(2):
        for o in range(3):
            for i in range(4):
                expected[b, o, i] = pre[b, o, i] * post[b, 0, o]
    np.testing.assert_array_equal(as_np(product), expected)
    reduced = rule.reduce_connections(product, "linear")
    np.testing.assert_allclose(as_np(reduced), expected.mean(0), rtol=1e-12)
    summed = rule.reduce_connections(product, "linear", torch.sum)
    np.testing.assert_allclose(as_np(summed), expected.sum(0), rtol=1e-12)
    # compact presynaptic input (B, 1, I) broadcasts over the outputs
    compact = rule.pre_mult_post(torch.from_numpy(pre[:, :1]), torch.from_numpy(post), "linear")
    np.testing.assert_array_equal(as_np(compact), pre[:, :1] * post[:, 0, :, None])


def test_pre_mult_post_and_reduce_connections_conv2d(rng):
    rule = STDP(LinearNet(0).layers, 0.1, 1.0, 1.0)
    pre = rng.random((2, 4, 50, 1024)).astype(np.float32)
    post = rng.random((2, 4, 32, 32)) < 0.3
    product = rule.pre_mult_post(torch.from_numpy(pre), torch.from_numpy(post), "conv2d")
    assert product.shape == (2, 4, 50, 1024) and product.dtype == torch.float32
    flat_post = post.reshape(2, 4, 1024)
    for b in range(2):
        for c in range(4):
            np.testing.assert_array_equal(as_np(product[b, c]), pre[b, c] * flat_post[b, c][None])
    reduced = rule.reduce_connections(product, "conv2d")
    assert reduced.shape == (4, 50)
    expected = (pre * flat_post[:, :, None, :]).astype(np.float64).mean(axis=(0, 3))
    np.testing.assert_allclose(as_np(reduced), expected, rtol=1e-5)


def test_helpers_reject_unknown_con_type():
    rule = STDP(LinearNet(0).layers, 0.1, 1.0, 1.0)
    with pytest.raises(ValueError, match="con_type must be 'linear' or 'conv2d', got 'dense'"):
        rule.pre_mult_post(torch.ones(1, 2, 3), torch.ones(1, 1, 2), "dense")
    with pytest.raises(ValueError, match="con_type"):
        rule.reduce_connections(torch.ones(1, 2, 3), "dense")


def test_empty_base_rule_constructs_and_does_nothing():
    """PySNN's tests build ``LearningRule(OrderedDict(), {})`` to call its helpers."""
    rule = LearningRule(OrderedDict(), {})
    assert len(rule.layers) == 0


@pytest.mark.parametrize("rule_type", [STDP, MSTDP, MSTDPET, FedeSTDP])
def test_an_empty_concrete_rule_is_refused(rule_type):
    """A concrete rule with no layers would silently train nothing (a network whose layers were
    never registered): it is refused, naming add_layer."""
    args = {
        STDP: (0.1, 1.0, 1.0),
        MSTDP: (1.0, 1.0, 0.1),
        MSTDPET: (1.0, 1.0, 0.1, 0.5),
        FedeSTDP: (0.1, 0.5, 0.5),
    }[rule_type]
    with pytest.raises(ValueError, match="layers is empty.*add_layer"):
        rule_type(OrderedDict(), *args)


def test_pysnn_helper_cases_on_an_empty_rule():
    """PySNN 0.1.1's tests/test_learning.py cases, on ``LearningRule(OrderedDict(), {})``."""
    rule = LearningRule(OrderedDict(), {})
    pre = torch.tensor([[[0, 1, 1, 0]], [[1, 0, 0, 1]]], dtype=torch.bool)
    post = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])
    out = rule.pre_mult_post(pre, post, "linear")
    expected = np.array(
        [[[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]]
    )
    assert out.shape == (2, 2, 4)
    np.testing.assert_array_equal(as_np(out), expected)
    out = rule.pre_mult_post(
        torch.ones(2, 4, 50, 1024, dtype=torch.bool), torch.ones(2, 4, 32, 32), "conv2d"
    )
    assert out.shape == (2, 4, 50, 1024) and bool((out == 1).all())
    tensor = torch.tensor([[[0.0, 1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0, 1.0]]])
    reduced = rule.reduce_connections(tensor, "linear")
    assert reduced.shape == (1, 4)
    np.testing.assert_array_equal(as_np(reduced), [[0.5, 0.5, 0.5, 0.5]])
    reduced = rule.reduce_connections(torch.ones(2, 4, 50, 1024), "conv2d")
    assert reduced.shape == (4, 50) and bool((reduced == 1).all())


def test_base_rule_methods_are_abstract():
    rule = LearningRule(LinearNet(0).layers, {"lr": 1.0})
    assert rule.defaults == {"lr": 1.0}
    for call in (rule.update_state, rule.step, rule.reset_state):
        with pytest.raises(NotImplementedError):
            call()


# -- errors --------------------------------------------------------------------------------------
def test_check_layers_errors():
    net = LinearNet(0)
    layer = net.layers["fc"]
    cases = [
        ([("fc", layer)], TypeError, "layers must be an OrderedDict"),
        (OrderedDict(fc=[layer]), TypeError, "layer 'fc' must be a dict"),
        (OrderedDict(fc={"connection": net.con}), ValueError, r"lacks the key\(s\) \['neuron'"),
        (OrderedDict(fc={**layer, "type": "dense"}), ValueError, "type 'dense'"),
        (OrderedDict(fc={**layer, "type": "conv2d"}), TypeError, "needs a Conv2d connection"),
        (OrderedDict(fc={**layer, "neuron": 3}), TypeError, "neuron of layer 'fc' must be"),
        (OrderedDict(fc={**layer, "neuron": {"spikes": net.neuron.spikes}}), ValueError, "trace"),
        (OrderedDict(fc={**layer, "neuron": ConvNet(0).neuron}), ValueError, "neuron spikes"),
    ]
    for layers, error, message in cases:
        with pytest.raises(error, match=message):
            STDP(layers, 0.1, 1.0, 1.0)


def test_hyperparameter_errors():
    layers = LinearNet(0).layers
    with pytest.raises(ValueError, match=r"^STDP: w_min must be < w_max, got 1.0 and 0.5$"):
        STDP(layers, 0.1, 1.0, 1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="weight_dependence must be 'additive' or 'multi"):
        STDP(layers, 0.1, 1.0, 1.0, weight_dependence="soft")
    with pytest.raises(ValueError, match="STDP: w_max must be finite"):
        STDP(layers, 0.1, 1.0, 1.0, 0.0, math.inf, "multiplicative")
    STDP(layers, 0.1, 1.0, 1.0, -math.inf, math.inf)  # unbounded additive STDP is fine
    with pytest.raises(ValueError, match="STDP: lr must be > 0.0, got 0.0"):
        STDP(layers, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="STDP: a_minus must be >= 0.0, got -1.0"):
        STDP(layers, 0.1, 1.0, -1.0)
    with pytest.raises(TypeError, match="STDP: a_plus must be a real number, got str"):
        STDP(layers, 0.1, "1", 1.0)
    with pytest.raises(ValueError, match="MSTDPET: e_trace_decay must be <= 1.0, got 1.5"):
        MSTDPET(layers, 1.0, 1.0, 0.1, 1.5)
    with pytest.raises(ValueError, match="MSTDP: a_pre must be finite, got nan"):
        MSTDP(layers, math.nan, 1.0, 0.1)
    with pytest.raises(ValueError, match="MSTDP: w_min must be < w_max"):
        MSTDP(layers, 1.0, 1.0, 0.1, w_min=1.0, w_max=1.0)
    with pytest.raises(ValueError, match="FedeSTDP: a must be <= 1.0, got 1.5"):
        FedeSTDP(layers, 0.1, 0.5, 1.5)
    with pytest.raises(ValueError, match="FedeSTDP: lr must be > 0.0, got -0.1"):
        FedeSTDP(layers, -0.1, 0.5, 0.5)


def test_reward_errors():
    layers = LinearNet(0).layers
    mstdpet = MSTDPET(layers, 1.0, 1.0, 0.1, 0.5)
    with pytest.raises(ValueError, match=r"per-sample reward of shape \(3,\) needs .*per_sample_"):
        mstdpet.step(torch.ones(B))
    with pytest.raises(ValueError, match=r"shape \(3,\) \(one per sample\).*got shape \(2, 3\)"):
        mstdpet.step(torch.ones(2, 3))
    with pytest.raises(TypeError, match="MSTDPET: reward must be a number or a tensor"):
        mstdpet.step("1")
    with pytest.raises(TypeError, match="reward must be a number or a tensor"):
        MSTDP(layers, 1.0, 1.0, 0.1).step(None)
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        MSTDP(layers, 1.0, 1.0, 0.1).step(torch.ones(4))
    mstdpet.step(torch.ones(1))  # a one-element tensor is a shared reward


def _two_layer_net():
    net = LinearNet(0)
    net.con2 = Linear(O, 2, B, 1.0, 0)
    net.neuron2 = IFNeuron((B, 1, 2), 1.2, 0.0, 1.0, 0.7, 1.0, 0.0, 0.6)
    net.add_layer("fc2", net.con2, net.neuron2)
    return net


@pytest.mark.parametrize(
    "make",
    [
        lambda layers: MSTDP(layers, 1.0, 1.0, 0.1),
        lambda layers: MSTDPET(layers, 1.0, 1.0, 0.1, 0.5),
        lambda layers: MSTDPET(layers, 1.0, 1.0, 0.1, 0.5, per_sample_reward=True),
    ],
    ids=["mstdp", "mstdpet", "mstdpet-per-sample"],
)
@pytest.mark.parametrize(
    "reward",
    [
        math.nan,
        math.inf,
        -math.inf,
        10**400,
        np.float64("nan"),
        torch.tensor(math.nan),
        torch.tensor([math.inf]),
        torch.tensor([1.0, math.nan, 1.0]),
        torch.tensor([1.0, 1.0, -math.inf], dtype=torch.float64),
        torch.tensor(1e300, dtype=torch.float64),  # finite, but inf in the float32 weights
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "huge-int",
        "np-nan",
        "0dim-nan",
        "1el-inf",
        "B-nan",
        "B-inf",
        "f64-overflow",
    ],
)
def test_non_finite_reward_is_rejected_before_any_change(rng, make, reward):
    net = _two_layer_net()
    rule = make(net.layers)
    if isinstance(reward, Tensor) and reward.numel() > 1 and isinstance(rule, MSTDPET):
        if not rule.per_sample_reward:
            pytest.skip("a (B,) reward needs per_sample_reward=True (another error)")
    for _ in range(3):
        net(torch.from_numpy(rng.random((B, 1, I)) < 0.6))
        rule.update_state()
        rule.step(0.5)
    weights = [net.con.weight.clone(), net.con2.weight.clone()]
    traces = [layer.state["e_trace"].clone() for layer in rule.layers.values() if layer.state]
    with pytest.raises(ValueError, match=f"{type(rule).__name__}: reward must be finite"):
        rule.step(reward)
    assert torch.equal(net.con.weight, weights[0]) and torch.equal(net.con2.weight, weights[1])
    kept = [layer.state["e_trace"] for layer in rule.layers.values() if layer.state]
    assert all(torch.equal(a, b) for a, b in zip(kept, traces))
    assert bool(torch.isfinite(net.con.weight).all())


# -- memory --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda layers: (STDP(layers, 0.1, 1.0, 1.0), ()),
        lambda layers: (STDP(layers, 0.1, 1.0, 1.0, weight_dependence="multiplicative"), ()),
        lambda layers: (MSTDP(layers, 1.0, 1.0, 0.1), (torch.linspace(-1, 1, 4),)),
        lambda layers: (MSTDPET(layers, 1.0, 1.0, 0.1, 0.9), (torch.tensor(0.5),)),
        lambda layers: (FedeSTDP(layers, 0.1, 0.5, 0.5), ()),
    ],
    ids=["stdp", "stdp-multiplicative", "mstdp-per-sample", "mstdpet", "fede"],
)
def test_steady_state_step_allocates_less_than_one_weight_matrix(rng, make):
    """With an int delay no step allocates a (B, O, I) tensor, nor even an (O, I) one."""
    from torch.profiler import ProfilerActivity, profile

    batch, n_in, n_out = 4, 300, 200
    net = LinearNet(1, batch=batch, n_in=n_in, n_out=n_out, thresh=0.5)
    rule, args = make(net.layers)
    for _ in range(3):  # scratch buffers are allocated once, at the first step
        net(torch.from_numpy(rng.random((batch, 1, n_in)) < 0.3))
        rule.update_state()
        rule.step(*args)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        rule.update_state()
        rule.step(*args)
    allocated = sum(max(event.self_cpu_memory_usage, 0) for event in prof.events())
    weight_bytes = n_out * n_in * 4
    assert allocated < weight_bytes / 2, allocated
