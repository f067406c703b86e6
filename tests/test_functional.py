"""pysnn.functional: every equation of SPEC.md against numbers computed here, independently."""

import numpy as np
import pytest
import torch

from pysnn import functional as sf

T_STEPS = 40
SHAPE = (2, 3, 4)


def t64(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.float64)


def zeros_counts(shape=(1,)) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.int32)


# -- the exact small values PySNN 0.1.1's own tests pinned (REFERENCE §12) ---------------------
def test_pinned_exponential_trace():
    trace = torch.zeros(1)
    values = [sf.exponential_trace_update(trace, torch.ones(1), 1.0, 2.0, 1.0).item() for _ in "ab"]
    assert values == [0.5, 0.75]


def test_pinned_linear_trace():
    trace = torch.zeros(1)
    values = [sf.linear_trace_update(trace, torch.ones(1), 1.0, 0.5, 1.0).item() for _ in "ab"]
    assert values == [1.0, 1.5]


def test_pinned_exponential_thresh():
    thresh = torch.ones(1, dtype=torch.float64)
    spikes = torch.ones(1, dtype=torch.float64)
    values = [sf.exponential_thresh_update(thresh, spikes, 0.9, 2.0, 1.0).item() for _ in "ab"]
    assert values == pytest.approx([0.95, 0.925], abs=1e-15)


def test_pinned_linear_thresh():
    thresh = torch.ones(1, dtype=torch.float64)
    spikes = torch.ones(1, dtype=torch.float64)
    values = [sf.linear_thresh_update(thresh, spikes, 0.9, 0.5, 1.0).item() for _ in "ab"]
    assert values == pytest.approx([1.4, 1.6], abs=1e-15)


def test_pinned_if_voltage():
    v = torch.zeros(1)
    values = [sf.if_voltage_update(v, torch.ones(1), 1.0, zeros_counts()).item() for _ in "ab"]
    assert values == [1.0, 2.0]


def test_pinned_lif_linear_voltage():
    v = torch.zeros(1)
    i_in = torch.full((1,), 2.0)
    values = [
        sf.lif_linear_voltage_update(v, 0.0, i_in, 1.0, 0.5, 1.0, zeros_counts()).item()
        for _ in "ab"
    ]
    assert values == [2.0, 3.0]


def test_pinned_lif_exponential_voltage():
    v = torch.zeros(1)
    i_in = torch.full((1,), 2.0)
    values = [
        sf.lif_exponential_voltage_update(v, 0.0, i_in, 1.0, 2.0, 1.0, zeros_counts()).item()
        for _ in "ab"
    ]
    assert values == [1.0, 1.5]


def test_pinned_fede_voltage():
    v = torch.zeros(1)
    activation = torch.full((1, 2), 2.0)  # two synapses
    pre_trace = torch.ones(1, 2)
    values = [
        sf.fede_voltage_update(v, 0.0, activation, 1.0, 2.0, 1.0, zeros_counts(), pre_trace).item()
        for _ in "ab"
    ]
    assert values == [1.0, 1.5]


# -- random per-element parameters over many steps against NumPy --------------------------------
@pytest.mark.parametrize("kind", ["trace", "thresh"])
@pytest.mark.parametrize("update", ["linear", "exponential"])
def test_trace_and_thresh_equations_random(rng, kind, update):
    alpha = rng.uniform(0.2, 1.5, SHAPE)
    if update == "linear":
        tau = rng.uniform(0.0, 1.0, SHAPE)
        fn = sf.linear_trace_update if kind == "trace" else sf.linear_thresh_update
    else:
        tau = rng.uniform(1.5, 20.0, SHAPE)
        fn = sf.exponential_trace_update if kind == "trace" else sf.exponential_thresh_update
    dt = 0.7
    state = torch.zeros(SHAPE, dtype=torch.float64)
    expected = np.zeros(SHAPE)
    for _ in range(T_STEPS):
        spikes = rng.random(SHAPE) < 0.4
        out = fn(state, torch.from_numpy(spikes), t64(alpha), t64(tau), dt)  # bool input
        for idx in np.ndindex(SHAPE):
            s = float(spikes[idx])
            if update == "linear":
                expected[idx] = expected[idx] * tau[idx] + alpha[idx] * s
            else:
                expected[idx] += dt / tau[idx] * (-expected[idx] + alpha[idx] * s)
        assert out is state, "updates are in place (modules rely on stable buffer identity)"
        np.testing.assert_allclose(state.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("model", ["if", "lif_linear", "lif_exponential", "fede"])
@pytest.mark.parametrize("with_counts", [True, False])
def test_voltage_equations_random(rng, model, with_counts):
    n_syn = 5
    alpha = rng.uniform(0.2, 1.5, SHAPE)
    v_rest = -0.3
    dt = 0.5
    tau = rng.uniform(0.0, 1.0, SHAPE) if model == "lif_linear" else rng.uniform(1.0, 10.0, SHAPE)
    v = torch.from_numpy(rng.normal(size=SHAPE))
    expected = v.numpy().copy()
    for _ in range(T_STEPS):
        counts = rng.integers(0, 3, SHAPE) * (rng.random(SHAPE) < 0.3)
        counts_t = torch.from_numpy(counts).to(torch.int32) if with_counts else None
        if model == "fede":
            act = rng.normal(size=SHAPE + (n_syn,))
            pre = rng.random(SHAPE + (n_syn,))
            out = sf.fede_voltage_update(
                v, v_rest, t64(act), t64(alpha), t64(tau), dt, counts_t, t64(pre)
            )
        else:
            i_in = rng.normal(size=SHAPE)
            if model == "if":
                out = sf.if_voltage_update(v, t64(i_in), t64(alpha), counts_t)
            elif model == "lif_linear":
                out = sf.lif_linear_voltage_update(
                    v, v_rest, t64(i_in), t64(alpha), t64(tau), dt, counts_t
                )
            else:
                out = sf.lif_exponential_voltage_update(
                    v, v_rest, t64(i_in), t64(alpha), t64(tau), dt, counts_t
                )
        for idx in np.ndindex(SHAPE):
            free = counts[idx] == 0 or not with_counts
            old = expected[idx]
            if model == "if":
                new = old + alpha[idx] * i_in[idx]
            elif model == "lif_linear":
                new = v_rest + (old - v_rest) * tau[idx] + alpha[idx] * i_in[idx]
            elif model == "lif_exponential":
                new = old + dt / tau[idx] * (-(old - v_rest) + alpha[idx] * i_in[idx])
            else:
                forcing = sum(act[idx + (r,)] - pre[idx + (r,)] for r in range(n_syn))
                new = old + dt / tau[idx] * (-(old - v_rest) + alpha[idx] * forcing)
            if free:
                expected[idx] = new
            elif model == "lif_linear":
                expected[idx] = v_rest  # the linear LIF holds refractory cells at rest
        assert out is v
        np.testing.assert_allclose(v.numpy(), expected, rtol=0, atol=1e-12)


def test_refractory_masking_per_model():
    """Refractory cells: linear LIF → exactly v_rest; IF, exponential LIF, Fede → unchanged."""
    counts = torch.tensor([0, 2], dtype=torch.int32)
    i_in = torch.tensor([1.0, 1.0], dtype=torch.float64)
    start = torch.tensor([0.25, 0.75], dtype=torch.float64)

    v = start.clone()
    sf.if_voltage_update(v, i_in, 1.0, counts)
    assert v.tolist() == [1.25, 0.75]
    v = start.clone()
    sf.lif_linear_voltage_update(v, -0.5, i_in, 1.0, 0.5, 1.0, counts)
    assert v.tolist() == [-0.5 + 0.75 * 0.5 + 1.0, -0.5]
    v = start.clone()
    sf.lif_exponential_voltage_update(v, 0.0, i_in, 1.0, 2.0, 1.0, counts)
    assert v.tolist() == [0.25 + 0.5 * (-0.25 + 1.0), 0.75]
    v = start.clone()
    act = torch.ones(2, 3, dtype=torch.float64)
    sf.fede_voltage_update(v, 0.0, act, 1.0, 2.0, 1.0, counts, torch.zeros(2, 3).double())
    assert v.tolist() == [0.25 + 0.5 * (-0.25 + 3.0), 0.75]


def test_trace_update_graded_input_not_binarised():
    """An input of 2.0 adds 2·alpha (Input neurons rely on it)."""
    trace = torch.zeros(2, dtype=torch.float64)
    sf.linear_trace_update(trace, torch.tensor([2.0, 0.5], dtype=torch.float64), 0.5, 0.9, 1.0)
    assert trace.tolist() == [1.0, 0.25]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 784, 1000])
def test_pairwise_sum_is_the_fixed_tree(n):
    """``pairwise_sum`` adds in a fixed order (zero padding to a power of two, then halving):
    the same float32 additions done one by one in NumPy give the same bits, and the result is
    within the pairwise rounding bound of the exact sum."""
    import math

    import numpy as np

    gen = torch.Generator().manual_seed(n)
    x = torch.rand(3, 1, n, generator=gen) * 10 - 3
    got = sf.pairwise_sum(x)
    assert got.shape == (3, 1, 1) and got.dtype == torch.float32
    length = 1 << (n - 1).bit_length()
    for row, value in zip(x.reshape(3, n).numpy(), got.reshape(3)):
        work = np.zeros(length, dtype=np.float32)
        work[:n] = row
        half = length // 2
        while half >= 1:
            for j in range(half):
                work[j] = np.float32(work[j] + work[j + half])
            half //= 2
        assert value.item() == float(work[0])
        exact = math.fsum(float(v) for v in row)
        bound = (
            max(1, math.log2(length)) * float(np.finfo(np.float32).eps) * float(np.abs(row).sum())
        )
        assert abs(value.item() - exact) <= bound
