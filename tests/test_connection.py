"""pysnn.connection: values, layouts, delays, pooling, weights, dtypes and saved state."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pysnn.connection import AdaptiveMaxPool2d, Conv2d, Linear, MaxPool2d
from reference import (
    adaptive_maxpool_ref,
    as_np,
    conv_out_shape,
    delayed_linear,
    dyadic,
    maxpool_ref,
    unfold_ref,
)

T_STEPS = 30
B, I, O = 2, 5, 4


def random_linear(rng, delay, reduction="none", in_features=I, out_features=O, batch=B):
    conn = Linear(in_features, out_features, batch, 1.0, delay, reduction=reduction).double()
    conn.weight.data.copy_(torch.from_numpy(rng.normal(size=(out_features, in_features))))
    return conn


def per_synapse_delays(rng, shape, max_delay=4):
    return torch.from_numpy(rng.integers(0, max_delay + 1, size=shape))


# -- Linear ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("delay_kind", ["0", "1", "3", "tensor"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_linear_matches_reference(rng, delay_kind, reduction):
    delay = per_synapse_delays(rng, (O, I)) if delay_kind == "tensor" else int(delay_kind)
    conn = random_linear(rng, delay, reduction)
    weight = conn.weight.numpy().copy()
    delay_np = delay.numpy() if isinstance(delay, torch.Tensor) else delay
    history = []
    for _ in range(T_STEPS):
        spikes = rng.random((B, I)) < 0.5
        trace_in = rng.random((B, I))
        history.append(spikes.astype(np.float64))
        act, trace = conn(
            torch.from_numpy(spikes).view(B, 1, I), torch.from_numpy(trace_in).view(B, 1, I)
        )
        arrived = delayed_linear(history, delay_np, O)  # (B, O, I)
        np.testing.assert_array_equal(conn.spikes.numpy(), arrived > 0)
        assert conn.spikes.shape == (B, O, I) and conn.spikes.dtype == torch.bool
        if reduction == "none":
            assert act.shape == trace.shape == (B, 1, O, I)
            expected_act = np.empty((B, 1, O, I))
            expected_trace = np.empty((B, 1, O, I))
            for b in range(B):
                for o in range(O):
                    for i in range(I):
                        expected_act[b, 0, o, i] = weight[o, i] * arrived[b, o, i]
                        expected_trace[b, 0, o, i] = trace_in[b, i]  # traces are not delayed
            np.testing.assert_array_equal(act.numpy(), expected_act)
            np.testing.assert_array_equal(trace.numpy(), expected_trace)
        else:
            assert act.shape == trace.shape == (B, 1, O, 1)
            expected_act = (weight[None] * arrived).sum(-1)
            np.testing.assert_allclose(act[:, 0, :, 0].numpy(), expected_act, rtol=0, atol=1e-12)
            expected_trace = np.broadcast_to(trace_in.sum(-1)[:, None], (B, O))
            np.testing.assert_allclose(trace[:, 0, :, 0].numpy(), expected_trace, atol=1e-12)


def run_delay_line(conn, pattern):
    """Feed a single-synapse connection the 0/1 ``pattern``; return the steps it emits."""
    emitted = []
    for t, spike in enumerate(pattern):
        x = torch.full((1, 1, 1), bool(spike))
        act, _ = conn(x, torch.zeros(1, 1, 1))
        if act.sum().item() != 0:
            emitted.append(t)
    return emitted


@pytest.mark.parametrize("as_tensor", [False, True])
def test_overlapping_spikes_all_arrive(as_tensor):
    """A spike every step with delay 3 arrives every step from step 3 (PySNN merged them)."""
    delay = torch.tensor([[3]]) if as_tensor else 3
    conn = Linear(1, 1, 1, 1.0, delay)
    conn.reset_weights("constant", gain=1.0)
    assert run_delay_line(conn, [1] * 12) == list(range(3, 12))
    conn.reset_state()
    # PySNN 0.1.1 emitted one spike at t=5 for [1, 1, 0, ...] and t=2, 5 for [1, 0, 1, ...]
    conn2 = Linear(1, 1, 1, 1.0, torch.tensor([[2]]) if as_tensor else 2)
    conn2.reset_weights("constant", gain=1.0)
    assert run_delay_line(conn2, [1, 1, 0, 0, 0, 0, 0]) == [2, 3]
    conn2.reset_state()
    assert run_delay_line(conn2, [1, 0, 1, 0, 0, 0, 0]) == [2, 4]


def test_pinned_delay_three():
    """PySNN test: spike fed at t=0; t=0, 1, 2 silent, t=3 emits, t=4 silent."""
    conn = Linear(1, 1, 1, 1.0, 3)
    assert run_delay_line(conn, [1, 0, 0, 0, 0]) == [3]


def test_pinned_delay_three_through_propagate_spike():
    """PySNN's own test: one spike through ``propagate_spike``, then ``delay_init - 1`` empty
    calls; the spike leaves on the last of them (and on no earlier one)."""
    conn = Linear(1, 1, 1, 1.0, 3)
    assert conn.delay_init.shape == (1, 1, 1) and conn.delay_init.tolist() == [[[4.0]]]
    assert conn.propagate_spike(torch.ones(1, 1, 1)).tolist() == [[[0.0]]]
    outputs = [
        conn.propagate_spike(torch.zeros(1, 1, 1)).tolist()
        for _ in range(int(conn.delay_init[0, 0, 0]) - 1)
    ]
    assert outputs == [[[[0.0]]], [[[0.0]]], [[[1.0]]]]
    assert conn.spikes.tolist() == [[[True]]]


@pytest.mark.parametrize("d", [0, 1, 3])
def test_delay_init_holds_pysnn_values_for_int_delays(d):
    """PySNN: ``delay_init = ones(shape) * (d + 1)`` of the synapse shape, weight dtype."""
    conn = Linear(3, 2, 4, 1.0, d)
    assert conn.delay_init.shape == (4, 2, 3) and conn.delay_init.dtype == torch.float32
    assert torch.equal(conn.delay_init, torch.ones(4, 2, 3) * (d + 1))
    assert conn.delay.dtype == torch.int64 and (conn.delay == d).all()  # unchanged
    assert conn.max_delay == d and f"delay={d}," in repr(conn)
    conv = Conv2d(2, 3, 2, (4, 4), 2, 1.0, d).double()
    assert conv.delay_init.shape == conv.synapse_shape == (2, 3, 8, 9)
    assert conv.delay_init.dtype == torch.float64 and (conv.delay_init == d + 1).all()
    state = conn.state_dict()
    assert torch.equal(state["delay_init"], torch.full((4, 2, 3), d + 1.0))


def test_delay_init_holds_delay_plus_one_for_tensor_delays():
    delays = torch.tensor([[0, 1, 2], [3, 0, 5]])
    conn = Linear(3, 2, 2, 1.0, delays)
    assert conn.delay_init.tolist() == [[1, 2, 3], [4, 1, 6]]
    assert conn.delay.shape == (2, 2, 3) and torch.equal(conn.delay[1], delays)
    assert conn.max_delay == 5 and "delay=per-synapse" in repr(conn)
    fresh = Linear(3, 2, 2, 1.0, delays)
    fresh.load_state_dict(conn.state_dict())  # delay_init of the same delays: accepted


@pytest.mark.parametrize("delay_kind", ["int", "tensor"])
def test_state_dict_of_the_previous_format_loads(rng, delay_kind):
    """Version 1 state dicts held the delay itself in delay_init; they still load (checked
    against the delays) and resume the delay line where it stopped."""
    delay = 2 if delay_kind == "int" else torch.tensor([[0, 1, 2, 2]] * 3)
    conn = random_linear(rng, delay, in_features=4, out_features=3)
    for _ in range(3):
        conn(
            torch.from_numpy(rng.random((B, 1, 4)) < 0.5), torch.zeros(B, 1, 4, dtype=torch.float64)
        )
    old = conn.state_dict()
    old["delay_init"] = torch.tensor(2) if delay_kind == "int" else delay.clone()
    old._metadata[""]["version"] = 1
    fresh = random_linear(rng, delay, in_features=4, out_features=3)
    fresh.load_state_dict(old)
    x = torch.ones(B, 1, 4, dtype=torch.bool)
    act_a, _ = conn(x, torch.zeros(B, 1, 4, dtype=torch.float64))
    act_b, _ = fresh(x, torch.zeros(B, 1, 4, dtype=torch.float64))
    assert torch.equal(act_a, act_b) and torch.equal(conn.spikes, fresh.spikes)
    # version 1 with other delays, and the version-2 values under version 1: refused
    old["delay_init"] = torch.tensor(3) if delay_kind == "int" else delay + 1
    with pytest.raises(ValueError, match=r"Linear: delay_init in the state dict differs"):
        random_linear(rng, delay, in_features=4, out_features=3).load_state_dict(old)


def test_state_dict_without_metadata_loads_either_format():
    conn = Linear(4, 3, 2, 1.0, 2)
    plain = dict(conn.state_dict())  # no _metadata: no version
    Linear(4, 3, 2, 1.0, 2).load_state_dict(plain)
    plain["delay_init"] = torch.tensor(2)
    Linear(4, 3, 2, 1.0, 2).load_state_dict(plain)
    plain["delay_init"] = torch.tensor(1)
    with pytest.raises(ValueError, match=r"delay_init in the state dict differs"):
        Linear(4, 3, 2, 1.0, 2).load_state_dict(plain)


def test_zero_delay_is_instantaneous_including_tensor_zero():
    conn = Linear(2, 1, 1, 1.0, torch.tensor([[0, 1]]))
    conn.reset_weights("constant", gain=1.0)
    act, _ = conn(torch.ones(1, 1, 2, dtype=torch.bool), torch.zeros(1, 1, 2))
    assert act.tolist() == [[[[1.0, 0.0]]]], "a tensor delay of 0 emits now (PySNN never did)"
    act, _ = conn(torch.zeros(1, 1, 2, dtype=torch.bool), torch.zeros(1, 1, 2))
    assert act.tolist() == [[[[0.0, 1.0]]]]
    assert run_delay_line(Linear(1, 1, 1, 1.0, 0), [0, 1, 1, 0]) == [1, 2]


def test_pinned_linear_activation_equals_constant_weight():
    conn = Linear(5, 10, 2, 1.0, 0)
    conn.reset_weights("constant", gain=0.5)
    act, trace = conn(torch.ones(2, 1, 5), torch.full((2, 1, 5), 0.25))
    assert act.shape == trace.shape == (2, 1, 10, 5)
    assert (act == 0.5).all() and (trace == 0.25).all()


def test_graded_input_passes_through_the_delay():
    """Input neurons pass graded values (2.0); the connection weights them as given."""
    conn = Linear(2, 1, 1, 1.0, 1, reduction="sum").double()
    conn.reset_weights("constant", gain=0.5)
    conn(torch.tensor([[[2.0, 1.0]]], dtype=torch.float64), torch.zeros(1, 1, 2))
    act, _ = conn(torch.zeros(1, 1, 2, dtype=torch.float64), torch.zeros(1, 1, 2))
    assert act.item() == 1.5


# -- Conv2d ---------------------------------------------------------------------------------------
CONV = dict(c_in=2, c_out=3, kernel=(3, 2), im=(7, 6), stride=(2, 1), padding=(1, 1))


def make_conv(rng, delay, reduction="none", dilation=1):
    conn = Conv2d(
        CONV["c_in"],
        CONV["c_out"],
        CONV["kernel"],
        CONV["im"],
        B,
        1.0,
        delay,
        CONV["stride"],
        CONV["padding"],
        dilation,
        reduction=reduction,
    ).double()
    conn.weight.data.copy_(torch.from_numpy(rng.normal(size=conn.weight.shape)))
    return conn


@pytest.mark.parametrize("delay", [0, 2])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv2d_none_reduction_is_a_convolution(rng, delay, dilation):
    """activation.sum(-1) == F.conv2d of the spikes that entered `delay` steps ago."""
    conn = make_conv(rng, delay, dilation=dilation)
    shape = (B, CONV["c_in"]) + CONV["im"]
    inputs = []
    for t in range(8):
        x = torch.from_numpy(rng.random(shape) < 0.4)
        inputs.append(x)
        act, _ = conn(x, torch.from_numpy(rng.random(shape)))
        delayed = inputs[t - delay].double() if t >= delay else torch.zeros(shape).double()
        expected = F.conv2d(
            delayed, conn.weight, stride=CONV["stride"], padding=CONV["padding"], dilation=dilation
        )
        assert act.shape[:4] == expected.shape
        torch.testing.assert_close(act.sum(-1), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("delay_kind", ["int", "tensor"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_conv2d_layout_matches_reference(rng, delay_kind, reduction):
    """activation[b,o,h,w,k] = W[o,k]·unfold(x)[b,k,h·W_out+w]; trace likewise, from an im2col loop."""
    kernel, stride, padding = CONV["kernel"], CONV["stride"], CONV["padding"]
    h_out, w_out = conv_out_shape(CONV["im"], kernel, stride, padding, (1, 1))
    fan_in = CONV["c_in"] * kernel[0] * kernel[1]
    n_pos = h_out * w_out
    delay = (
        per_synapse_delays(rng, (CONV["c_out"], fan_in, n_pos), 3) if delay_kind == "tensor" else 2
    )
    conn = make_conv(rng, delay, reduction)
    w_flat = conn.weight.numpy().reshape(CONV["c_out"], fan_in)
    d = np.broadcast_to(np.asarray(delay), (CONV["c_out"], fan_in, n_pos))
    shape = (B, CONV["c_in"]) + CONV["im"]
    unfolded = []
    for _ in range(12):
        x = rng.random(shape) < 0.4
        trace_in = rng.random(shape)
        act, trace = conn(torch.from_numpy(x), torch.from_numpy(trace_in))
        unfolded.append(unfold_ref(x.astype(np.float64), kernel, stride, padding, (1, 1)))
        u_trace = unfold_ref(trace_in, kernel, stride, padding, (1, 1))
        t = len(unfolded) - 1
        arrived = np.zeros((B, CONV["c_out"], fan_in, n_pos))
        for o in range(CONV["c_out"]):
            for k in range(fan_in):
                for p in range(n_pos):
                    if t - d[o, k, p] >= 0:
                        arrived[:, o, k, p] = unfolded[t - d[o, k, p]][:, k, p]
        np.testing.assert_array_equal(conn.spikes.numpy(), arrived > 0)
        exp_act = np.zeros((B, CONV["c_out"], h_out, w_out, fan_in))
        exp_trace = np.zeros_like(exp_act)
        for o in range(CONV["c_out"]):
            for h in range(h_out):
                for w in range(w_out):
                    for k in range(fan_in):
                        exp_act[:, o, h, w, k] = w_flat[o, k] * arrived[:, o, k, h * w_out + w]
                        exp_trace[:, o, h, w, k] = u_trace[:, k, h * w_out + w]
        if reduction == "none":
            assert act.shape == trace.shape == exp_act.shape
            np.testing.assert_array_equal(act.numpy(), exp_act)
            np.testing.assert_array_equal(trace.numpy(), exp_trace)
        else:
            assert act.shape == trace.shape == exp_act.shape[:4] + (1,)
            np.testing.assert_allclose(act.numpy(), exp_act.sum(-1, keepdims=True), atol=1e-12)
            np.testing.assert_allclose(trace.numpy(), exp_trace.sum(-1, keepdims=True), atol=1e-12)


def test_pinned_conv2d_activation_and_trace_constant():
    """PySNN test, with the real output shape (B, C_out, H_out, W_out, K)."""
    conn = Conv2d(2, 4, 3, (10, 10), 2, 1.0, 0, padding=1)
    conn.reset_weights("constant", gain=0.5)
    act, trace = conn(torch.ones(2, 2, 10, 10), torch.full((2, 2, 10, 10), 0.25))
    assert act.shape == trace.shape == (2, 4, 10, 10, 18)
    assert (act[:, :, 1:-1, 1:-1] == 0.5).all() and (trace[:, :, 1:-1, 1:-1] == 0.25).all()


# -- pooling --------------------------------------------------------------------------------------
POOLS = [
    (MaxPool2d(2), lambda s, t: maxpool_ref(s, t, (2, 2), (2, 2), (0, 0))),
    (MaxPool2d(3, 2, 1), lambda s, t: maxpool_ref(s, t, (3, 3), (2, 2), (1, 1))),
    (
        MaxPool2d((2, 3), (2, 2), ceil_mode=True),
        lambda s, t: maxpool_ref(s, t, (2, 3), (2, 2), (0, 0), True),
    ),
    (AdaptiveMaxPool2d((3, 2)), lambda s, t: adaptive_maxpool_ref(s, t, (3, 2))),
    (AdaptiveMaxPool2d(4), lambda s, t: adaptive_maxpool_ref(s, t, (4, 4))),
]


@pytest.mark.parametrize("pool, ref", POOLS)
def test_pooling_matches_reference(rng, pool, ref):
    """Batch and channels > 1: each image/channel pools its own spikes and traces."""
    spikes = rng.random((3, 4, 7, 6)) < 0.15
    trace = rng.random((3, 4, 7, 6))
    out_s, out_t = pool(torch.from_numpy(spikes), torch.from_numpy(trace))
    exp_s, exp_t = ref(spikes, trace)
    assert out_s.dtype == torch.bool and out_t.dtype == torch.float64
    assert out_s.shape == exp_s.shape
    # both kinds of windows must occur for the check to mean something
    assert exp_s.any() and not exp_s.all()
    np.testing.assert_array_equal(out_s.numpy(), exp_s)
    np.testing.assert_array_equal(out_t.numpy(), exp_t)


def test_pooling_picks_trace_of_its_own_plane():
    """PySNN read batch/channel 0's trace for every plane (3.0 instead of 7.0)."""
    spikes = torch.zeros(2, 2, 2, 2, dtype=torch.bool)
    trace = torch.zeros(2, 2, 2, 2)
    spikes[1, 1, 1, 0] = True
    trace[1, 1, 1, 0] = 7.0
    trace[1, 1, 0, 1] = 9.0  # larger but silent: the spiking element wins
    trace[0, 0, 1, 0] = 3.0
    for pool in (MaxPool2d(2), AdaptiveMaxPool2d(1)):
        s, t = pool(spikes, trace)
        assert s.flatten().tolist() == [False, False, False, True]
        assert t.flatten().tolist() == [3.0, 0.0, 0.0, 7.0]


NAN, INF = float("nan"), float("inf")


def nonfinite_pool_ref(spikes, trace, kernel):
    """Windows of ``kernel`` (stride = kernel): spike iff any spike; trace among the finite
    traces, spiking first, then the largest; else non-finite ranked spiking, +inf, -inf, NaN."""
    b, c, h, w = spikes.shape
    kh, kw = kernel
    out_s = np.zeros((b, c, h // kh, w // kw), dtype=bool)
    out_t = np.zeros((b, c, h // kh, w // kw))
    for n in range(b):
        for ch in range(c):
            for y in range(h // kh):
                for x in range(w // kw):
                    s = spikes[n, ch, y * kh : (y + 1) * kh, x * kw : (x + 1) * kw].ravel()
                    t = trace[n, ch, y * kh : (y + 1) * kh, x * kw : (x + 1) * kw].ravel()
                    out_s[n, ch, y, x] = s.any()

                    def rank(k):
                        if np.isfinite(t[k]):
                            return (2, s[k], t[k])
                        return (0, s[k], 0 if np.isnan(t[k]) else 1 + (t[k] > 0))

                    best = max(range(len(t)), key=rank)  # first maximum on ties, as torch
                    out_t[n, ch, y, x] = t[best]
    return out_s, out_t


@pytest.mark.parametrize("make", [lambda: MaxPool2d(2), lambda: AdaptiveMaxPool2d((2, 3))])
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_pooling_one_nonfinite_trace_changes_nothing_else(make, bad):
    """One NaN/±inf trace anywhere made every window drop its spikes (max|trace| = inf)."""
    spikes = torch.zeros(2, 3, 4, 6, dtype=torch.bool)
    spikes[:, :, 0, 0] = spikes[:, :, 3, 5] = spikes[1, 2, 2, 2] = True
    trace = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).view(2, 3, 4, 6) / 100
    reference = make()(spikes, trace)
    trace[0, 1, 1, 3] = bad  # a window without spikes
    out_s, out_t = make()(spikes, trace)
    assert torch.equal(out_s, reference[0]) and out_s.sum() == 2 * 3 * 2 + 1
    # the window holding the bad trace passes on its largest finite trace, all others unchanged
    assert out_t[0, 1, 0, 1].item() == 0.32  # 0.33 replaced: the largest finite of 0.26 … 0.32
    mask = torch.ones_like(out_t, dtype=torch.bool)
    mask[0, 1, 0, 1] = False
    assert torch.equal(out_t[mask], reference[1][mask])


def test_pooling_two_spiking_windows_with_nonfinite_traces():
    """The issue's case: ``[True, True]`` became ``[False, False]``."""
    spikes = torch.tensor([[[[True, False, True, False]]]])
    for bad in (NAN, INF, -INF):
        trace = torch.tensor([[[[bad, 1.0, 2.0, 3.0]]]])
        for pool in (MaxPool2d((1, 2)), AdaptiveMaxPool2d((1, 2))):
            s, t = pool(spikes, trace)
            assert s.tolist() == [[[[True, True]]]]
            # left window: the only finite trace is the silent 1.0; right: the spiking 2.0
            assert t.tolist() == [[[[1.0, 2.0]]]]


@pytest.mark.parametrize("pool", [MaxPool2d(2), AdaptiveMaxPool2d((2, 2))])
def test_pooling_nonfinite_traces_in_several_windows_matches_reference(rng, pool):
    spikes = rng.random((3, 2, 4, 4)) < 0.3
    trace = rng.random((3, 2, 4, 4)) * 10 - 5
    flat = trace.reshape(-1)
    flat[rng.choice(flat.size, 30, replace=False)] = rng.choice([NAN, INF, -INF], 30)
    trace[0, 0, :2, :2] = NAN  # a window of NaN traces only: NaN
    trace[0, 1, :2, :2] = [[NAN, -INF], [INF, NAN]]  # no finite trace: the spiking one (NaN)
    spikes[0, 1, :2, :2] = [[True, False], [False, False]]
    trace[1, 0, 2:, 2:] = [[-INF, -INF], [NAN, -INF]]
    spikes[1, 0, 2:, 2:] = False
    out_s, out_t = pool(torch.from_numpy(spikes), torch.from_numpy(trace))
    exp_s, exp_t = nonfinite_pool_ref(spikes, trace, (2, 2))
    np.testing.assert_array_equal(out_s.numpy(), exp_s)
    np.testing.assert_array_equal(out_t.numpy(), exp_t)  # NaN == NaN for this assertion
    assert exp_s.any() and not exp_s.all()
    assert math.isnan(out_t[0, 0, 0, 0]) and math.isnan(out_t[0, 1, 0, 0])
    assert out_t[1, 0, 1, 1] == -INF


def test_pooling_tiny_trace_differences_are_kept():
    """Dense ranks: a trace 1e-30 above another wins next to large traces (no offset)."""
    spikes = torch.tensor([[[[True, True, False, False]]]])
    trace = torch.tensor([[[[1e-30, 2e-30, 1e30, -1e30]]]], dtype=torch.float64)
    s, t = MaxPool2d((1, 2))(spikes, trace)
    assert s.tolist() == [[[[True, False]]]] and t.tolist() == [[[[2e-30, 1e30]]]]


# -- huge sizes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Linear(10**6, 10**6, 1, 1.0, 0), r"in_features=1000000, out_features=1000000"),
        (lambda: Linear(1, 1, 1, 1.0, 10**12), r"delay=1000000000000 steps need .*delay line"),
        (
            lambda: Linear(10, 10, 1, 1.0, torch.tensor(10**12)),
            r"delay=up to 1000000000000 steps",
        ),
        (lambda: Conv2d(10**4, 10**4, 3, (8, 8), 100, 1.0, 0), r"in_channels=10000"),
    ],
)
def test_huge_sizes_are_refused_at_construction(make, match):
    with pytest.raises(MemoryError, match=match) as info:
        make()
    assert re.search(r"need [\d.]+ [KMGTP]iB \(\d+ bytes", str(info.value))


def test_delay_beyond_int64_is_refused():
    with pytest.raises(ValueError, match=r"delay=\d+ steps is too large"):
        Linear(1, 1, 1, 1.0, 10**30)


# -- weights ---------------------------------------------------------------------------------------
def test_reset_weights_distributions(seeded):
    conn = Linear(200, 100, 1, 1.0, 0)
    w = conn.weight
    assert 0.0 <= w.min() and w.max() <= 1.0 and abs(w.mean().item() - 0.5) < 0.02  # default
    fan_in, fan_out = 200, 100
    conn.reset_weights("uniform", a=-0.5, b=2.0)
    assert -0.5 <= w.min() < -0.45 and 1.95 < w.max() <= 2.0 and abs(w.mean() - 0.75) < 0.03
    conn.reset_weights("neuron_scaled_uniform", a=0.0, b=1.0)
    assert 0.0 <= w.min() and w.max() <= 1 / math.sqrt(fan_in)
    assert abs(w.mean() - 0.5 / math.sqrt(fan_in)) < 0.002
    conn.reset_weights("normal")
    assert abs(w.mean()) < 0.03 and abs(w.std() - 1.0) < 0.03
    conn.reset_weights("xavier_normal", gain=2.0)
    assert abs(w.std() / (2.0 * math.sqrt(2.0 / (fan_in + fan_out))) - 1) < 0.05
    bound = 2.0 * math.sqrt(6.0 / (fan_in + fan_out))
    conn.reset_weights("xavier_uniform", gain=2.0)
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    conn.reset_weights("kaiming_normal")
    assert abs(w.std() / math.sqrt(2.0 / fan_in) - 1) < 0.05
    bound = math.sqrt(6.0 / fan_in)
    conn.reset_weights("kaiming_uniform")
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    conn.reset_weights("constant", gain=0.3)
    assert (w == torch.tensor(0.3)).all()
    assert isinstance(w, torch.nn.Parameter) and not w.requires_grad


def test_reset_weights_conv_fan_in(seeded):
    """Conv2d: neuron_scaled_uniform scales by the fan-in of an output neuron, C_in·kh·kw."""
    conn = Conv2d(4, 8, 5, (9, 9), 1, 1.0, 0)
    conn.reset_weights("neuron_scaled_uniform", a=0.0, b=1.0)
    assert conn.weight.max() <= 1 / math.sqrt(100) and conn.weight.max() > 0.9 / math.sqrt(100)
    conn.reset_weights("constant", gain=-1.5)
    assert (conn.weight == -1.5).all()


@pytest.mark.parametrize("name", ["Uniform", "gaussian", "", "xavier"])
def test_reset_weights_unknown_name(name):
    conn = Linear(3, 2, 1, 1.0, 0)
    before = conn.weight.clone()
    with pytest.raises(ValueError, match="distribution"):
        conn.reset_weights(name)
    assert torch.equal(conn.weight, before)


# -- state ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("delay", [3, "tensor"])
def test_reset_state_clears_spikes_in_flight(rng, delay):
    delay = per_synapse_delays(rng, (O, I), 3) + 1 if delay == "tensor" else delay
    conn = random_linear(rng, delay)
    for _ in range(5):
        conn(torch.ones(B, 1, I, dtype=torch.bool), torch.ones(B, 1, I))
    assert conn.spikes.any() and conn.trace.any()
    conn.reset_state()
    assert not conn.spikes.any() and not conn.trace.any()
    for _ in range(6):
        act, _ = conn(torch.zeros(B, 1, I, dtype=torch.bool), torch.zeros(B, 1, I))
        assert not act.any(), "no spike survives reset_state"


def assert_views_of_compact_state(conn):
    for name, compact in (("trace", conn.pre_trace), ("spikes", conn.pre_spikes)):
        view = getattr(conn, name)
        assert view.shape == conn.synapse_shape
        assert view.stride(1) == 0, f"{name} must stay a broadcast view"
        assert view.data_ptr() == compact.data_ptr()
        assert view.dtype == compact.dtype


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_dtype_conversion_keeps_views_and_works(rng, dtype):
    """Dyadic weights and few inputs: every sum is exact even in float16."""
    conn = Linear(I, O, B, 1.0, 2, reduction="sum")
    conn.reset_weights("constant", gain=1.0)
    conn = conn.to(dtype) if dtype == torch.float64 else conn.half()
    assert conn.weight.dtype == conn.spike_queue.dtype == conn.trace.dtype == dtype
    assert conn.spikes.dtype == torch.bool
    assert_views_of_compact_state(conn)
    weight = dyadic(rng, (O, I))
    conn.weight.data.copy_(torch.from_numpy(weight))
    conv = Conv2d(2, 3, 3, (5, 5), B, 1.0, 1, 2, 1).to(dtype)
    assert_views_of_compact_state(conv)
    history = []
    for _ in range(10):
        spikes = rng.random((B, I)) < 0.5
        trace_in = dyadic(rng, (B, I), 0, 16)
        history.append(spikes.astype(np.float64))
        act, trace = conn(
            torch.from_numpy(spikes).view(B, 1, I),
            torch.from_numpy(trace_in).view(B, 1, I).to(dtype),
        )
        assert act.dtype == dtype
        expected = (weight[None] * delayed_linear(history, 2, O)).sum(-1)
        np.testing.assert_array_equal(as_np(act[:, 0, :, 0]), expected)
        np.testing.assert_array_equal(
            as_np(trace[:, 0, :, 0]), np.repeat(trace_in.sum(-1, keepdims=True), O, 1)
        )
        conv(torch.ones(B, 2, 5, 5), torch.ones(B, 2, 5, 5, dtype=dtype))
    assert_views_of_compact_state(conn)


def step_inputs(rng, shape, n):
    return [
        (torch.from_numpy(rng.random(shape) < 0.5), torch.from_numpy(rng.random(shape)))
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda d: Linear(I, O, B, 1.0, d).double(), (B, 1, I)),
        (lambda d: Linear(I, O, B, 1.0, d, reduction="sum").double(), (B, 1, I)),
        (lambda d: Conv2d(2, 3, 3, (5, 5), B, 1.0, d, 2, 1).double(), (B, 2, 5, 5)),
    ],
)
@pytest.mark.parametrize("delay_kind", ["int", "tensor"])
def test_state_dict_round_trip_mid_run(rng, tmp_path, make, shape, delay_kind):
    """Save mid-run with spikes in flight, load into a fresh module: identical continuation."""
    probe = make(0)
    delay = 3 if delay_kind == "int" else per_synapse_delays(rng, probe.synapse_shape[1:], 3) + 1
    conn = make(delay)
    first, second = step_inputs(rng, shape, 5), step_inputs(rng, shape, 8)
    for x, trace in first:
        conn(x, trace)
    assert conn.spike_queue.any(), "spikes must be in flight when saving"
    path = tmp_path / "conn.pt"
    torch.save(conn.state_dict(), path)
    fresh = make(delay)
    assert not torch.equal(fresh.weight, conn.weight)
    fresh.load_state_dict(torch.load(path))
    assert torch.equal(fresh.weight, conn.weight)
    if delay_kind == "int":
        assert_views_of_compact_state(fresh)
    for x, trace in second:
        act_a, trace_a = conn(x, trace)
        act_b, trace_b = fresh(x, trace)
        assert torch.equal(act_a, act_b) and torch.equal(trace_a, trace_b)
        assert torch.equal(conn.spikes, fresh.spikes)


def test_state_dict_has_pysnn_keys():
    keys = set(Linear(3, 2, 1, 1.0, 2).state_dict())
    assert {"weight", "dt", "trace", "delay", "spikes", "delay_init"} <= keys
    state = Linear(3, 2, 4, 1.0, 2).state_dict()
    assert state["trace"].shape == state["delay"].shape == state["spikes"].shape == (4, 2, 3)
    assert (state["delay"] == 2).all()


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(delay=1.5), TypeError, "delay"),
        (dict(delay=True), TypeError, "delay"),
        (dict(delay="3"), TypeError, "delay"),
        (dict(delay=-1), ValueError, "delay must be >= 0"),
        (dict(delay=torch.tensor([[1, -1, 0]] * 2)), ValueError, "delay must be >= 0"),
        (dict(delay=torch.full((2, 3), 0.5)), ValueError, "delay.*whole numbers"),
        (dict(delay=torch.ones(2, 3, dtype=torch.bool)), TypeError, "delay"),
        (dict(delay=torch.ones(3, 2, dtype=torch.int64)), ValueError, "delay of shape"),
        (dict(dt=0.0), ValueError, "dt"),
        (dict(dt=-0.5), ValueError, "dt"),
        (dict(dt=True), TypeError, "dt"),
        (dict(in_features=0), ValueError, "in_features"),
        (dict(in_features=3.0), TypeError, "in_features"),
        (dict(batch_size=True), TypeError, "batch_size"),
        (dict(out_features=-2), ValueError, "out_features"),
        (dict(reduction="mean"), ValueError, "reduction"),
    ],
)
def test_linear_constructor_errors(kwargs, error, match):
    args = dict(in_features=3, out_features=2, batch_size=1, dt=1.0, delay=0)
    with pytest.raises(error, match=match):
        Linear(**{**args, **kwargs})


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(im_dims=5), TypeError, "im_dims"),
        (dict(im_dims=(5.0, 5)), TypeError, "im_dims"),
        (dict(im_dims=(5, 5, 5)), NotImplementedError, "2-D"),
        (dict(kernel_size=7), ValueError, "does not fit"),
        (dict(kernel_size=2.5), TypeError, "kernel_size"),
        (dict(stride=(1, 2, 3)), TypeError, "stride"),
        (dict(padding=True), TypeError, "padding"),
        (dict(in_channels=0), ValueError, "in_channels"),
        (dict(delay=torch.ones(2, 9, 5)), ValueError, "delay of shape"),
    ],
)
def test_conv2d_constructor_errors(kwargs, error, match):
    args = dict(
        in_channels=1, out_channels=2, kernel_size=3, im_dims=(5, 5), batch_size=1, dt=1.0, delay=0
    )
    with pytest.raises(error, match=match):
        Conv2d(**{**args, **kwargs})


def test_forward_input_errors():
    conn = Linear(3, 2, 2, 1.0, 0)
    with pytest.raises(ValueError, match=r"x must have shape \(2, 1, 3\), got \(2, 3\)"):
        conn(torch.ones(2, 3), torch.ones(2, 1, 3))
    with pytest.raises(ValueError, match=r"trace_in must have shape \(2, 1, 3\)"):
        conn(torch.ones(2, 1, 3), torch.ones(1, 1, 3))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        conn([[1.0, 0.0, 1.0]], torch.ones(2, 1, 3))
    conv = Conv2d(2, 1, 3, (5, 5), 1, 1.0, 0)
    with pytest.raises(ValueError, match=r"x must have shape \(1, 2, 5, 5\)"):
        conv(torch.ones(1, 1, 5, 5), torch.ones(1, 2, 5, 5))
    with pytest.raises(ValueError, match="trace_in"):
        conv(torch.ones(1, 2, 5, 5), torch.ones(1, 2, 4, 5))
    for pool in (MaxPool2d(2), AdaptiveMaxPool2d(2)):
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            pool(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 5))
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            pool(torch.ones(2, 4, 4), torch.ones(2, 4, 4))
        with pytest.raises(TypeError, match="tensors"):
            pool(np.ones((1, 1, 4, 4)), torch.ones(1, 1, 4, 4))
    with pytest.raises(TypeError, match="kernel_size"):
        MaxPool2d(1.5)
    with pytest.raises(TypeError, match="output_size"):
        AdaptiveMaxPool2d("3")


def test_loading_a_state_dict_with_other_delays_is_refused():
    saved = Linear(4, 3, 2, 1.0, 2).state_dict()
    with pytest.raises(ValueError, match=r"Linear: delay_init in the state dict differs"):
        Linear(4, 3, 2, 1.0, 3).load_state_dict(saved)
    per_synapse = torch.tensor([[0, 1, 2, 3]] * 3)
    saved = Linear(4, 3, 2, 1.0, per_synapse).state_dict()
    with pytest.raises(ValueError, match=r"Linear: delay_init in the state dict differs"):
        Linear(4, 3, 2, 1.0, per_synapse.flip(1)).load_state_dict(saved)
    same = Linear(4, 3, 2, 1.0, per_synapse)
    same.load_state_dict(saved)
    assert torch.equal(same.delay[0], per_synapse)
