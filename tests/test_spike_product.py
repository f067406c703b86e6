r"""The spike-driven product of ``Linear(reduction="sum")`` and its C twin.

Where every sample has at most :data:`pysnn.functional.SPIKE_PRODUCT_MAX_SPIKES` (16) nonzero
inputs and all samples together at most ``max(I / 16, B·I / 128)``, the product ``W @ sᵀ`` is
taken from the nonzero inputs alone, by a fixed pairwise tree of 16 values: ``W[o, i]·s[b, i]``
in ascending ``i``, then +0. Elsewhere it is ``torch.mm``'s. Checked here against numbers
computed independently of the code under test:

* :func:`pysnn.functional.sum_product` against a NumPy loop implementing the definition, bit
  for bit (both dtypes, bool-valued and graded inputs, 0 to 64 spikes per sample), against the
  float64 product within the rounding bound of the tree, and ``torch.mm``'s numbers beyond the
  limits (a 65th spike in a sample, too many spikes in all);
* a Linear layer with the kernels on against the same layer on PyTorch: the same activation and
  state bit for bit (the one crowded step, a BLAS product that two threads may split, within
  its rounding bound), for delay 0 and 2, bool and graded inputs, one and two threads, a transposed
  and an expanded weight, a NaN weight on a silent input — and the spike-driven product ran;
* a Diehl & Cook network: the same spikes and voltages on both backends over 100 steps.
"""

import numpy as np
import pytest
import torch

from pysnn import functional as sf
from pysnn import native
from pysnn.connection import Linear
from pysnn.models import DiehlCook2015
from helpers import (
    assert_same_bits,
    assert_within_split_product_bound,
    kernel_results,
    leaving_delay_line,
    torch_threads,
)

needs_native = pytest.mark.skipif(
    not native.enabled(), reason="the native kernels are not built or are switched off"
)
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


def numpy_spike_product(weight: np.ndarray, spikes: np.ndarray) -> np.ndarray:
    """The definition, one scalar operation at a time in the arrays' dtype."""
    kind = weight.dtype.type
    n_out, batch = weight.shape[0], spikes.shape[0]
    nonzero = [np.flatnonzero(spikes[b]) for b in range(batch)]
    length = sf.SPIKE_PRODUCT_MAX_SPIKES  # 64
    product = np.empty((n_out, batch), dtype=weight.dtype)
    for o in range(n_out):
        for b in range(batch):
            work = [kind(weight[o, i] * spikes[b, i]) for i in nonzero[b]]
            work += [kind(0.0)] * (length - len(work))
            half = length // 2
            while half >= 1:
                work = [kind(work[j] + work[j + half]) for j in range(half)] + work[2 * half :]
                half //= 2
            product[o, b] = work[0]
    return product


def sparse_spikes(gen, batch, n_in, counts, dtype, graded):
    spikes = torch.zeros(batch, n_in, dtype=dtype)
    for b, k in enumerate(counts):
        where = torch.randperm(n_in, generator=gen)[:k]
        values = 0.5 + 1.5 * torch.rand(k, generator=gen, dtype=dtype) if graded else 1.0
        spikes[b, where] = values
    return spikes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("graded", [False, True], ids=["ones", "graded"])
@pytest.mark.parametrize(
    "counts",
    [(0,), (1,), (2,), (3,), (7,), (16,), (17,), (33,), (64,), (5, 0, 2), (16, 1), (40, 0, 9)]
    # larger batches: the tree is taken over the samples with spikes only
    + [(0,) * 15 + (3,), (1, 0) * 8, (0,) * 32, (0, 2, 0, 0, 16) + (0,) * 27],
    ids=lambda counts: "-".join(map(str, counts)) if len(counts) <= 3 else f"B{len(counts)}",
)
def test_spike_product_is_the_tree_over_the_nonzero_inputs(counts, graded, dtype):
    gen = torch.Generator().manual_seed(sum(counts) + 7 * len(counts))
    n_in = 12 * max(sum(counts), 1)  # within the line limit
    weight = torch.randn(9, n_in, generator=gen, dtype=dtype)
    weight[0, :] = -0.0  # an all -0 row: the +0 padding decides the sign
    spikes = sparse_spikes(gen, len(counts), n_in, counts, dtype, graded)
    product = torch.full((9, len(counts)), 7.0, dtype=dtype)
    assert sf.sum_product(weight, spikes, product) is product
    expected = torch.from_numpy(numpy_spike_product(weight.numpy(), spikes.numpy()))
    assert_same_bits(product, expected)
    exact = weight.double() @ spikes.double().t()
    k = max(max(counts), 1)
    bound = k * torch.finfo(dtype).eps * (weight.double().abs() @ spikes.double().abs().t())
    assert bool(((product.double() - exact).abs() <= bound).all())


def test_beyond_its_limits_the_product_is_torch_mm():
    gen = torch.Generator().manual_seed(3)
    limit = sf.SPIKE_PRODUCT_MAX_SPIKES
    weight = torch.randn(4, 16 * (limit + 1), generator=gen)
    product = torch.full((4, 1), 7.0)
    too_many = sparse_spikes(gen, 1, weight.shape[1], [limit + 1], torch.float32, False)
    sf.sum_product(weight, too_many, product)
    assert torch.equal(product, torch.mm(weight, too_many.t()))
    # within the per-sample limit, but more spikes in all than I / SPIKE_PRODUCT_LINE (batch 1)
    weight = torch.randn(4, 48, generator=gen)
    crowded = torch.zeros(1, 48)  # 5 spikes in all: one more than 48 / 12
    crowded[0, [5, 9, 7, 30, 41]] = 1.0
    product = torch.empty(4, 1)
    sf.sum_product(weight, crowded, product)
    assert torch.equal(product, torch.mm(weight, crowded.t()))
    weight[:, 0] = float("nan")  # and there a NaN weight of a silent input counts
    assert bool(torch.isnan(sf.sum_product(weight, crowded, product)).all())


def spread(total, batch, most=64):
    """Per-sample spike counts (each at most ``most``) that add up to ``total``."""
    counts = [0] * batch
    for k in range(total):
        counts[k % batch] += 1
    assert max(counts) <= most
    return counts


@pytest.mark.parametrize(
    "batch, n_in, limit",
    # all samples together at most max(I / 12, B·I / 16) spikes, worked out by hand
    [(1, 240, 20), (1, 400, 33), (2, 200, 25), (4, 320, 80), (16, 400, 400), (32, 400, 800)],
)
def test_the_total_limit_grows_with_the_batch_from_two_samples_on(batch, n_in, limit):
    gen = torch.Generator().manual_seed(batch)
    weight = torch.randn(7, n_in, generator=gen)
    product = torch.empty(7, batch)
    at_limit = sparse_spikes(gen, batch, n_in, spread(limit, batch), torch.float32, True)
    sf.sum_product(weight, at_limit, product)
    expected = torch.from_numpy(numpy_spike_product(weight.numpy(), at_limit.numpy()))
    assert_same_bits(product, expected)
    beyond = sparse_spikes(gen, batch, n_in, spread(limit + 1, batch), torch.float32, True)
    sf.sum_product(weight, beyond, product)
    assert_same_bits(product, torch.mm(weight, beyond.t()))


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("graded", [False, True], ids=["bool", "graded"])
def test_c_twin_gives_the_tree_for_every_spike_count(spike_calls, graded, dtype):
    """Samples with 0, 1, ..., 64 spikes (the C twin writes the short trees out: the tree over
    the first power of two of values, then +0), weights that are -0, that cancel to ±0, huge
    and tiny: the Linear's activation is the NumPy definition's, bit for bit, on both backends,
    and 64 +0-padded values give the sign of zero that the tree of 64 gives."""
    batch, n_in, n_out = 65, 600, 6  # 2080 spikes in all, within 65·600 / 16
    gen = torch.Generator().manual_seed(21)
    counts = list(range(batch))
    spikes = sparse_spikes(gen, batch, n_in, counts, dtype, graded)
    layers = linear_pair(0, dtype, "contiguous", batch, n_in, n_out)
    weight = torch.randn(n_out, n_in, generator=gen, dtype=dtype)
    weight[0] = -0.0  # every term -0: +0 from the padding, -0 for 64 terms
    weight[1] = torch.where(torch.rand(n_in, generator=gen) < 0.5, -0.0, 0.0).to(dtype)
    weight[2, ::2], weight[2, 1::2] = 1e30, -1e30  # cancellations to +0, and large sums
    weight[3] *= 1e-40 if dtype == torch.float64 else 1e-39  # subnormal terms
    for layer in layers:
        layer.weight.data.copy_(weight)
    x = (spikes != 0) if not graded else spikes
    x = x.unsqueeze(1)
    trace = torch.zeros(batch, 1, n_in, dtype=dtype)
    with torch_threads(1), torch.no_grad():
        native_out = layers[0](x, trace)[0].clone()
        with native.disabled():
            eager_out = layers[1](x, trace)[0]
    expected = torch.from_numpy(numpy_spike_product(weight.numpy(), spikes.numpy()))
    assert_same_bits(eager_out, expected.t().reshape(eager_out.shape))
    assert_same_bits(native_out, eager_out)
    assert spike_calls[1] == 1
    # the all -0 row: +0 wherever values were padded, -0 for the 64-spike sample
    signs = torch.signbit(native_out.reshape(batch, n_out)[:, 0])
    assert signs.tolist() == [False] * 64 + [True]


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_counts_are_of_nonzero_values_in_every_sample(dtype):
    """The limits are checked on every sample, not only the first (which alone may decide that
    the product is torch.mm's); -0 is no spike, NaN is one, as ``!= 0`` says."""
    gen = torch.Generator().manual_seed(5)
    limit = sf.SPIKE_PRODUCT_MAX_SPIKES
    weight = torch.randn(5, 16 * 40, generator=gen, dtype=dtype)
    product = torch.full((5, 3), 7.0, dtype=dtype)
    # the first sample within the limit, the last one beyond it (66 spikes in all <= 3·I / 16)
    mixed = sparse_spikes(gen, 3, weight.shape[1], [1, 0, limit + 1], dtype, True)
    sf.sum_product(weight, mixed, product)
    assert_same_bits(product, torch.mm(weight, mixed.t()))
    # about 80 inputs at -0 and two spikes per sample: the tree over the two, so a NaN weight
    # of a -0 input stays out (were -0 a spike, it would be in the tree or in torch.mm)
    signed = sparse_spikes(gen, 3, weight.shape[1], [2, 2, 0], dtype, True)
    silent = torch.randperm(weight.shape[1], generator=gen)[:80]
    silent = silent[(signed[:, silent] == 0).all(0)]
    assert silent.numel() > limit
    signed[:, silent] = -0.0
    weight[:, silent[0]] = float("nan")
    sf.sum_product(weight, signed, product)
    expected = torch.from_numpy(numpy_spike_product(weight.numpy(), signed.numpy()))
    assert_same_bits(product, expected)
    assert not bool(torch.isnan(product).any())
    # a NaN input is nonzero: within the limits, the tree carries it into every output
    signed[2, 0] = float("nan")
    sf.sum_product(weight, signed, product)
    assert bool(torch.isnan(product[:, 2]).all()) and not bool(torch.isnan(product[:, :2]).any())


@pytest.mark.parametrize("batch", [2, 16])
def test_compiled_spike_product_selects_the_same_numbers(batch):
    """Traced by torch.compile (no branch on the counts), the product is the eager one."""
    gen = torch.Generator().manual_seed(batch)
    n_in = 16 * 2 * batch
    weight = torch.randn(6, n_in, generator=gen)
    compiled = torch.compile(sf.sum_product, backend="aot_eager", dynamic=False)
    sparse = sparse_spikes(gen, batch, n_in, [2, 0] * (batch // 2), torch.float32, True)
    dense = (torch.rand(batch, n_in, generator=gen) < 0.5).float()
    for spikes in (sparse, dense):
        expected = sf.sum_product(weight, spikes, torch.empty(6, batch))
        got = compiled(weight, spikes, torch.full((6, batch), 7.0))
        assert_same_bits(got, expected)
    assert_same_bits(expected, torch.mm(weight, dense.t()))


@pytest.fixture
def spike_calls(monkeypatch):
    """How often the C twin took the spike-driven product (returned 1)."""
    return kernel_results(monkeypatch, "spike_ingest")


def linear_pair(delay, dtype, weight_kind, batch, n_in, n_out):
    layers = []
    for _ in range(2):
        torch.manual_seed(5)
        layer = Linear(n_in, n_out, batch, 1.0, delay, reduction="sum").to(dtype)
        if weight_kind == "transposed":  # a legal non-contiguous weight
            layer.weight = torch.nn.Parameter(layer.weight.detach().t().contiguous().t())
        elif weight_kind == "expanded":  # every output the same weights, stride 0
            row = layer.weight.detach()[:1].clone()
            layer.weight = torch.nn.Parameter(row.expand(n_out, n_in), requires_grad=False)
        elif weight_kind == "nan-on-a-silent-input":
            layer.weight.data[:, -1] = float("nan")
        layer.weight.requires_grad_(False)
        layers.append(layer)
    return layers


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("graded", [False, True], ids=["bool", "graded"])
@pytest.mark.parametrize("delay", [0, 2])
@pytest.mark.parametrize(
    "weight_kind", ["contiguous", "transposed", "expanded", "nan-on-a-silent-input"]
)
@pytest.mark.parametrize("batch", [3, 16])
def test_linear_with_sparse_spikes_gives_the_eager_numbers(
    spike_calls, batch, weight_kind, delay, graded, dtype, threads
):
    n_in, n_out, steps = 640, 50, 12
    a, b = linear_pair(delay, dtype, weight_kind, batch, n_in, n_out)
    gen = torch.Generator().manual_seed(11)
    with torch_threads(threads):
        for step in range(steps):
            # within max(640 / 12, B·640 / 16) spikes in all, and one step with more than 64
            # in a sample (the BLAS product)
            most = 10 if batch <= 4 else 3
            counts = [int(c) for c in torch.randint(0, most, (batch,), generator=gen)]
            if step == 5:
                counts = [70] * batch
            x = sparse_spikes(gen, batch, n_in - 1, counts, dtype, graded)
            x = torch.cat([x, torch.zeros(batch, 1, dtype=dtype)], 1).unsqueeze(1)
            if not graded:
                x = x != 0
            trace = torch.rand(batch, 1, n_in, generator=gen, dtype=dtype)
            arriving = leaving_delay_line(a, x)
            out = tuple(t.clone() for t in a(x, trace))
            with native.disabled():
                expected = b(x, trace)
            if step - delay == 5 and threads == 2:
                # the crowded step reaches the synapses: the BLAS product, which may be split
                # over the threads (ingest_product)
                assert_within_split_product_bound(
                    out[0], expected[0], a.weight, arriving, f"step {step}: activation"
                )
            else:
                assert_same_bits(out[0], expected[0], f"step {step}: activation")
            assert_same_bits(out[1], expected[1], f"step {step}: trace")
            assert torch.equal(a.spike_queue, b.spike_queue)
            assert torch.equal(a.pre_spikes, b.pre_spikes)
    assert spike_calls[1] >= steps - 2 - delay  # the spike-driven product ran
    assert spike_calls[0] >= 1  # and declined the crowded step
    if weight_kind == "nan-on-a-silent-input":
        assert not bool(torch.isnan(out[0]).any())


@needs_native
@pytest.mark.parametrize("batch", [2, 16])
def test_diehl_cook_network_is_the_same_on_both_backends(batch):
    """A Diehl & Cook step uses the spike-driven product for its inhibition (few spikes):
    spikes and voltages over 100 steps are those of the other backend bit for bit (on one
    thread: on two, the excitation's BLAS product may be split over the threads, within its
    rounding bound, and a spike near threshold may then differ)."""
    results = []
    for chosen in ("native", "torch"):
        torch.manual_seed(0)
        model = DiehlCook2015(64, 100, batch, 1.0, inhibition=5.0, thresh=2.0)
        for module in (model.input, model.exc, model.inh, model.neuron):
            module.backend = chosen
        gen = torch.Generator().manual_seed(1)
        spikes, voltages = [], []
        with torch.no_grad(), torch_threads(1):
            for _ in range(100):
                s, _ = model(torch.rand(batch, 1, 64, generator=gen) < 0.2)
                spikes.append(s.clone())
                voltages.append(model.neuron.v_cell.clone())
        results.append((torch.stack(spikes), torch.stack(voltages)))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert 0 < int(results[0][0].sum()) < results[0][0].numel() // 4  # sparse, not silent
