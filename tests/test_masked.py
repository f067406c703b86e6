"""pysnn.connection: masked connectivity (``Linear(..., mask=)``, ``random_mask``).

A masked synapse holds the weight 0 exactly, so the forward pass is the dense one on every
backend; these tests check that every writer of weights keeps it 0 (construction,
``reset_weights``, ``load_state_dict``, every learning rule, ``normalize_weights``), that the
mask travels with ``state_dict``/``.to()``/copies, and that a masked layer computes what a dense
layer computes with the same (zeroed) weights.
"""

import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from pysnn import native
from pysnn.connection import Linear, random_mask
from pysnn.learning import MSTDP, MSTDPET, STDP, FedeSTDP, Hebbian, TripletSTDP
from pysnn.models import normalize_weights
from pysnn.network import SNNNetwork
from pysnn.neuron import Input, LIFNeuron

BACKENDS = ["torch"] + (["native"] if native.enabled() else [])


# -- random_mask ---------------------------------------------------------------------------------
def test_random_mask_density_shape_and_seed():
    mask = random_mask(400, 784, 0.1, generator=torch.Generator().manual_seed(3))
    assert mask.dtype == torch.bool and mask.shape == (400, 784)
    assert abs(mask.float().mean().item() - 0.1) < 0.005  # binomial: sd 0.0005
    again = random_mask(400, 784, 0.1, generator=torch.Generator().manual_seed(3))
    other = random_mask(400, 784, 0.1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(mask, again) and not torch.equal(mask, other)
    assert not random_mask(3, 4, 0.0).any() and random_mask(3, 4, 1.0).all()
    assert random_mask(3, 4, 0.5, device="cpu").device.type == "cpu"
    torch.manual_seed(0)
    first = random_mask(5, 5, 0.5)
    torch.manual_seed(0)
    assert torch.equal(first, random_mask(5, 5, 0.5))  # the global generator by default


@pytest.mark.parametrize(
    "args, kwargs, error, words",
    [
        ((3, 4, 1.5), {}, ValueError, "p must lie in"),
        ((3, 4, -0.1), {}, ValueError, "p must lie in"),
        ((3, 4, float("nan")), {}, ValueError, "p must lie in"),
        ((3, 4, "0.5"), {}, TypeError, "p must be a real"),
        ((3, 4, True), {}, TypeError, "p must be a real"),
        ((0, 4, 0.5), {}, ValueError, "out_features"),
        ((3, 4.0, 0.5), {}, TypeError, "in_features"),
        ((3, 4, 0.5), {"generator": 7}, TypeError, "generator"),
    ],
)
def test_random_mask_errors(args, kwargs, error, words):
    with pytest.raises(error, match=f"random_mask: {words}"):
        random_mask(*args, **kwargs)


# -- construction, state, copies -------------------------------------------------------------
def masked_linear(o=5, i=7, batch=2, delay=0, p=0.4, seed=0, **kwargs):
    mask = random_mask(o, i, p, generator=torch.Generator().manual_seed(seed))
    return Linear(i, o, batch, 1.0, delay, mask=mask, **kwargs), mask


def test_masked_weights_are_zero_from_construction_and_after_reset_weights():
    con, mask = masked_linear()
    assert 0 < mask.sum() < mask.numel()
    assert torch.equal(con.mask, mask) and con.mask is not mask  # a copy
    assert (con.weight[~mask] == 0).all() and (con.weight[mask] > 0).all()
    for distribution in ("uniform", "normal", "xavier_uniform", "kaiming_normal", "constant"):
        con.reset_weights(distribution, gain=2.0)
        assert (con.weight[~mask] == 0).all() and (con.weight[mask] != 0).all()
        assert not torch.signbit(con.weight[~mask]).any()  # +0.0, not -0.0


def test_no_mask_registers_nothing():
    con = Linear(7, 5, 2, 1.0, 0)
    assert con.mask is None and "mask" not in con.state_dict()
    assert "mask" not in dict(con.named_buffers())


@pytest.mark.parametrize(
    "mask, error, words",
    [
        (torch.ones(5, 7), TypeError, "bool tensor"),
        ([[True] * 7] * 5, TypeError, "bool tensor"),
        (torch.ones(7, 5, dtype=torch.bool), ValueError, r"weight's shape \(5, 7\)"),
        (torch.ones(1, 7, dtype=torch.bool), ValueError, "weight's shape"),
    ],
)
def test_mask_errors(mask, error, words):
    with pytest.raises(error, match=f"Linear: mask must .*{words}"):
        Linear(7, 5, 2, 1.0, 0, mask=mask)
    con = Linear(7, 5, 2, 1.0, 0)
    with pytest.raises(error):
        con.set_mask(mask)


def test_state_dict_round_trip_and_load_zeroes_masked_weights():
    con, mask = masked_linear()
    state = con.state_dict()
    assert state["mask"].dtype == torch.bool and torch.equal(state["mask"], mask)
    other, other_mask = masked_linear(seed=1)
    assert not torch.equal(mask, other_mask)
    other.load_state_dict(state)
    assert torch.equal(other.mask, mask) and torch.equal(other.weight, con.weight)
    state = {k: v.clone() for k, v in state.items()}
    state["weight"].fill_(3.0)  # values at masked synapses in a saved weight
    other.load_state_dict(state)
    assert (other.weight[mask] == 3.0).all() and (other.weight[~mask] == 0).all()
    with pytest.raises(RuntimeError, match="mask"):  # strict: a dense layer has no mask
        Linear(7, 5, 2, 1.0, 0).load_state_dict(con.state_dict())


def test_mask_follows_to_and_copies():
    con, mask = masked_linear()
    con.to(torch.float64)
    assert con.mask.dtype == torch.bool and con.weight.dtype == torch.float64
    assert (con.weight[~mask] == 0).all()
    for clone in (copy.deepcopy(con), pickle.loads(pickle.dumps(con))):
        assert torch.equal(clone.mask, mask) and torch.equal(clone.weight, con.weight)


def test_set_mask_and_user_writes():
    con = Linear(7, 5, 2, 1.0, 0, reduction="sum")
    mask = random_mask(5, 7, 0.5, generator=torch.Generator().manual_seed(0))
    con.set_mask(mask)
    assert (con.weight[~mask] == 0).all()
    # a user's own write at a masked synapse counts until apply_mask (or a rule step)
    con.weight.data[~mask] = 1.0
    x = torch.ones(2, 1, 7, dtype=torch.bool)
    with_write = con(x, x.float())[0].clone()
    con.apply_mask()
    assert (con.weight[~mask] == 0).all()
    assert not torch.equal(with_write, con(x, x.float())[0])
    con.set_mask(None)
    assert con.mask is None and "mask" not in con.state_dict()
    assert (con.weight[~mask] == 0).all()  # removing the mask keeps the weights


def test_masking_zeroes_nan_inf_and_negative_zero():
    con, mask = masked_linear(p=0.5)
    con.weight.data[~mask] = torch.tensor([float("nan"), float("inf"), -0.0, -2.0]).repeat(
        int((~mask).sum()) // 4 + 1
    )[: int((~mask).sum())]
    kept = con.weight[mask].clone()
    con.apply_mask()
    assert torch.equal(con.weight[mask], kept)
    assert (con.weight[~mask] == 0).all() and not torch.signbit(con.weight[~mask]).any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_masking_in_other_dtypes(dtype):
    con, mask = masked_linear(dtype=dtype)
    con.weight.data.fill_(-1.5)
    con.apply_mask()
    assert (con.weight[mask] == -1.5).all() and (con.weight[~mask] == 0).all()


# -- forward: a masked layer is the dense layer with zeroed weights --------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("delay", ["int", "tensor"])
def test_forward_equals_dense_with_zeroed_weights(rng, backend, reduction, delay):
    if delay == "tensor" and backend == "native":
        pytest.skip("the native twin covers one delay for every synapse")
    o, i, batch = 6, 9, 3
    d = 2 if delay == "int" else torch.from_numpy(rng.integers(0, 3, size=(o, i)))
    mask = random_mask(o, i, 0.3, generator=torch.Generator().manual_seed(5))
    masked = Linear(i, o, batch, 1.0, d, reduction=reduction, mask=mask, backend=backend)
    dense = Linear(i, o, batch, 1.0, d, reduction=reduction, backend=backend)
    dense.weight.data.copy_(masked.weight)
    for _ in range(6):
        x = torch.from_numpy(rng.random((batch, 1, i)) < 0.5)
        trace = torch.from_numpy(rng.random((batch, 1, i))).float()
        a_m, t_m = masked(x, trace)
        a_d, t_d = dense(x, trace)
        assert torch.equal(a_m, a_d) and torch.equal(t_m, t_d)
    if reduction == "none":  # masked synapses deliver exactly nothing
        assert (a_m[:, 0][:, ~mask] == 0).all()


# -- learning rules ----------------------------------------------------------------------------
FAST_TRIPLET = dict(
    a2_plus=0.02, a3_plus=0.015, a2_minus=0.025, a3_minus=0.01,
    tau_plus=3.0, tau_minus=4.0, tau_x=8.0, tau_y=6.0, dt=1.0,
)  # fmt: skip
RULES = {
    "STDP-additive": (lambda l: STDP(l, 0.1, 0.5, 0.4, 0.0, 1.0), False),
    "STDP-multiplicative": (lambda l: STDP(l, 0.1, 0.5, 0.4, 0.0, 1.0, "multiplicative"), False),
    "MSTDP": (lambda l: MSTDP(l, 0.5, 0.4, 0.1, w_min=0.0), True),
    "MSTDPET": (lambda l: MSTDPET(l, 0.5, 0.4, 0.1, 0.8), True),
    "FedeSTDP": (lambda l: FedeSTDP(l, 0.05, 0.5, 0.5), False),
    "TripletSTDP": (lambda l: TripletSTDP(l, **FAST_TRIPLET, w_min=0.0), False),
    "Hebbian": (lambda l: Hebbian(l, 0.05, decay=0.01, w_max=2.0), False),
}


def layer_dict(weight, batch, delay, mask=None):
    """A state-dict layer whose spikes and traces the test sets at every step."""
    o, i = weight.shape
    pre = torch.zeros((batch, 1 if delay == "int" else o, i), dtype=torch.bool)
    trace = torch.zeros(batch, 1, i)
    connection = {
        "weight": weight,
        "spikes": pre.expand(batch, o, i),
        "trace": trace.expand(batch, o, i),
        "dt": torch.tensor(1.0),
    }
    if mask is not None:
        connection["mask"] = mask
    neuron = {
        "spikes": torch.zeros(batch, 1, o, dtype=torch.bool),
        "trace": torch.zeros(batch, 1, o),
    }
    layers = OrderedDict(fc={"connection": connection, "neuron": neuron, "type": "linear"})
    return layers, pre, trace


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("delay", ["int", "tensor"])
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_rules_keep_masked_synapses_at_zero(rng, name, delay, backend):
    """Masked and dense layers see the same activity; a masked weight stays +0.0 and every
    other weight is exactly the dense rule's (the rules are local to each synapse)."""
    make, rewarded = RULES[name]
    o, i, batch = 100, 120, 2  # > 8192 weights: the threaded native product runs on "auto"
    mask = random_mask(o, i, 0.1, generator=torch.Generator().manual_seed(1))
    w0 = torch.from_numpy(rng.random((o, i))).float()
    dense_layers, dense_pre, dense_trace = layer_dict(w0.clone(), batch, delay)
    masked_layers, masked_pre, masked_trace = layer_dict(w0 * mask, batch, delay, mask)
    rules = [make(dense_layers), make(masked_layers)]
    for rule in rules:
        rule.backend = backend
    dense_w = dense_layers["fc"]["connection"]["weight"]
    masked_w = masked_layers["fc"]["connection"]["weight"]
    for t in range(12):
        spikes = torch.from_numpy(rng.random(dense_pre.shape) < 0.3)
        pre_trace = torch.from_numpy(rng.random((batch, 1, i))).float()
        post = torch.from_numpy(rng.random((batch, 1, o)) < 0.3)
        post_trace = torch.from_numpy(rng.random((batch, 1, o))).float()
        reward = float(rng.normal())
        for layers, pre, trace in (
            (dense_layers, dense_pre, dense_trace),
            (masked_layers, masked_pre, masked_trace),
        ):
            pre.copy_(spikes)
            trace.copy_(pre_trace)
            layers["fc"]["neuron"]["spikes"].copy_(post)
            layers["fc"]["neuron"]["trace"].copy_(post_trace)
        for rule in rules:
            rule.update_state()
            rule.step(reward) if rewarded else rule.step()
        assert (masked_w[~mask] == 0).all() and not torch.signbit(masked_w[~mask]).any()
        expected = torch.where(mask, dense_w, torch.zeros(()))
        torch.testing.assert_close(masked_w, expected, rtol=0, atol=1e-6, msg=f"step {t}")
    assert (dense_w[~mask] != w0[~mask]).any()  # the dense rule did move those weights


class MaskedNet(SNNNetwork):
    def __init__(self, mask, batch=2):
        super().__init__()
        o, i = mask.shape
        self.input = Input((batch, 1, i), 1.0, 1.0, 0.8)
        self.con = Linear(i, o, batch, 1.0, 1, mask=mask, reduction="sum")
        self.neuron = LIFNeuron((batch, 1, o), 0.6, 0.0, 1.0, 1.0, 1.0, 0.0, 0.8, 0.7)
        self.add_layer("fc", self.con, self.neuron)

    def forward(self, x):
        x, trace = self.input(x)
        activation, _ = self.con(x, trace)
        return self.neuron(activation)


def test_rule_on_modules_follows_the_mask_live(rng):
    mask = random_mask(8, 10, 0.5, generator=torch.Generator().manual_seed(2))
    net = MaskedNet(mask)
    rule = TripletSTDP(net.layers, **FAST_TRIPLET)
    stdp = STDP(net.layers, 0.1, 0.5, 0.4, 0.0, 1.0)
    spikes = 0
    for t in range(30):
        spikes += int(net(torch.from_numpy(rng.random((2, 1, 10)) < 0.5))[0].sum())
        rule.step()
        stdp.step()
        assert (net.con.weight[~mask] == 0).all()
        if t == 10:  # PySNN-style write through the layer mapping: masked as well
            stdp.layers["fc"]["weight"] = torch.ones(8, 10)
            assert (net.con.weight[~mask] == 0).all() and (net.con.weight[mask] == 1).all()
        if t == 20:  # a new mask reaches the rules at their next step
            mask = ~mask
            net.con.set_mask(mask)
    assert spikes > 0
    assert (net.con.weight[~mask] == 0).all()


def test_normalize_weights_keeps_masked_zeros():
    con, mask = masked_linear(o=20, i=30, p=0.2)
    normalize_weights(con.weight, 2.0)
    assert (con.weight[~mask] == 0).all()
    rows = con.weight.sum(1)
    assert torch.allclose(rows[mask.any(1)], torch.full_like(rows[mask.any(1)], 2.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_masked_layer_and_rule_on_cuda():
    mask = random_mask(8, 10, 0.3, generator=torch.Generator().manual_seed(0), device="cuda")
    assert mask.device.type == "cuda"
    con = Linear(10, 8, 2, 1.0, 0, reduction="sum", mask=mask.cpu(), device="cuda")
    assert con.mask.device.type == "cuda" and (con.weight[~con.mask] == 0).all()
    neuron = LIFNeuron((2, 1, 8), 0.5, 0.0, 1.0, 1.0, 1.0, 0.0, 0.8, 0.7, device="cuda")
    layers = {"fc": {"connection": con, "neuron": neuron, "type": "linear"}}
    rule = TripletSTDP(layers, **FAST_TRIPLET, w_min=0.0)
    x = torch.ones(2, 1, 10, dtype=torch.bool, device="cuda")
    for _ in range(5):
        activation, _ = con(x, x.float())
        neuron(activation)
        rule.step()
    assert (con.weight[~con.mask] == 0).all() and not torch.signbit(con.weight).any()
