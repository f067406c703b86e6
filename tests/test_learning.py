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

from pysnn.connection import Conv2d, Linear
from pysnn.learning import FedeSTDP, LearningRule, MSTDP, MSTDPET, STDP
from pysnn.network import SNNNetwork
from pysnn.neuron import IFNeuron, Input, LIFNeuron
from reference import as_np, conv_out_shape, unfold_ref

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

    def __init__(self, kind, delay, shape=None):
        self.kind = kind
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
        self.trace = cols * IN_ALPHA if self.trace is None else self.trace * IN_DECAY + cols
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
def test_stdp_matches_reference(rng, kind, delay_kind, dependence):
    net, delay = make_net(kind, delay_kind, rng)
    w_min, w_max = 0.1, 0.9
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


def fede_ref(lr, w_init, a):
    def ref_step(w, obs, state):
        state.setdefault("w0", w)
        trace = obs[1]
        normed = trace / max(trace.max(), np.finfo(np.float32).tiny)
        delta = (w - w_init)[None, :, :, None]
        change = np.exp(-delta) * (np.exp(normed) - a) - np.exp(delta) * (np.exp(1 - normed) - a)
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


def test_fede_stdp_zero_traces_give_no_nan():
    net = LinearNet(0)
    rule = FedeSTDP(net.layers, 0.1, 0.5, 0.25)
    w = weight_np(net)
    rule.step()  # all traces are zero: x̂ = 0, not 0/0
    delta = w - 0.5
    expected = w + 0.1 * (np.exp(-delta) * (1 - 0.25) - np.exp(delta) * (np.e - 0.25))
    assert np.isfinite(weight_np(net)).all()
    np.testing.assert_allclose(weight_np(net), expected, rtol=0, atol=1e-6)
