r"""``normalize_weights`` on both backends against a NumPy loop of its definition.

On the CPU each neuron's weights are summed by the tree of :func:`pysnn.functional.pairwise_sum`
(padded with +0 to a power of two, then halved), the scale is ``total / sum`` as PyTorch
divides a number by a tensor (the reciprocal of the sum times the number, each rounded in the
weight's dtype), and each weight is multiplied by it; a neuron whose weights sum to 0 is left
as it is. The C twin (``native.normalize_rows``) runs for a number ``total`` and a contiguous
weight summed over its trailing axes (or a 2-D one stored transposed), the PyTorch code
elsewhere. Both are checked here bit
for bit against :func:`numpy_normalize`, on one and two threads, float32 and float64, with
zero rows, -0, NaN, infinite and negative weights, a Conv2d-shaped weight, a non-trailing axis
and per-neuron totals — and that the kernel ran where it applies.
"""

import numpy as np
import pytest
import torch

from pysnn import native
from pysnn.models import normalize_weights
from helpers import assert_same_bits, kernel_results, torch_threads

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
needs_native = pytest.mark.skipif(
    not native.enabled(), reason="the native kernels are not built or are switched off"
)


def numpy_pairwise(row: np.ndarray) -> np.generic:
    """The tree of functional.pairwise_sum, one scalar addition at a time in the row's dtype."""
    kind = row.dtype.type
    length = 1
    while length < len(row):
        length *= 2
    work = [kind(v) for v in row] + [kind(0.0)] * (length - len(row))
    while len(work) > 1:
        half = len(work) // 2
        work = [kind(work[j] + work[j + half]) for j in range(half)]
    return work[0]


def numpy_normalize(weight: np.ndarray, total, summed_axes) -> np.ndarray:
    """The definition: the summed axes moved last (in order) and flattened, each neuron's sum
    by the tree, then each weight times ``(1 / sum) · total`` (a number) or ``total / sum``
    (per-neuron totals), where the sum is not 0."""
    kind = weight.dtype.type
    last = tuple(range(weight.ndim - len(summed_axes), weight.ndim))
    moved = np.moveaxis(weight, summed_axes, last)
    kept = moved.shape[: weight.ndim - len(summed_axes)]
    rows = moved.reshape(int(np.prod(kept, dtype=np.int64)), -1)
    totals = np.broadcast_to(np.asarray(total, dtype=weight.dtype), kept).reshape(-1)
    out = rows.copy()
    with np.errstate(invalid="ignore"):  # inf · 0 is NaN, as it should be
        _scale_rows(rows, out, total, totals, kind)
    return np.moveaxis(out.reshape(moved.shape), last, summed_axes)


def _scale_rows(rows, out, total, totals, kind):
    for r in range(rows.shape[0]):
        s = numpy_pairwise(rows[r])
        if s == 0:
            continue
        if np.isscalar(total):
            scale = kind(kind(kind(1.0) / s) * kind(total))
        else:
            scale = kind(totals[r] / s)
        out[r] = [kind(v * scale) for v in rows[r]]


def hostile_weight(shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.rand(shape, generator=gen, dtype=dtype) * 0.3
    flat = weight.view(shape[0], -1)
    flat[0] = 0.0  # sums to 0: unchanged
    flat[1, ::3] = -0.0
    if shape[0] > 4:
        flat[2, -1] = float("nan")  # a NaN sum: the row becomes NaN
        flat[3, 0] = float("inf")  # an infinite sum: scale 0, inf · 0 = NaN, the rest 0
        flat[4] = -flat[4]  # a negative sum
    return weight


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["native", "torch"])
@pytest.mark.parametrize(
    "shape, dim",
    [
        ((400, 784), 1),
        ((7, 1), 1),
        ((6, 3), 1),
        ((5, 1025), 1),
        ((8, 3, 5, 5), (1, 2, 3)),
        ((6, 7), (0, 1)),  # every axis: one neuron
        ((9,), 0),
    ],
    ids=["400x784", "7x1", "6x3", "5x1025", "conv", "all-axes", "1d"],
)
def test_normalize_weights_is_the_numpy_definition(
    monkeypatch, shape, dim, backend, dtype, threads
):
    if backend == "native" and not native.enabled():
        pytest.skip("the native kernels are not built or are switched off")
    summed = (dim,) if isinstance(dim, int) else dim
    if len(summed) == len(shape):  # one neuron: finite weights, one of them -0
        weight = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        weight.view(-1)[1] = -0.0
    else:
        weight = hostile_weight(shape, dtype, seed=sum(shape))
    expected = numpy_normalize(weight.numpy(), 78.4, summed)
    calls = kernel_results(monkeypatch, "normalize_rows") if native.available() else None
    with torch_threads(threads):
        if backend == "torch":
            with native.disabled():
                result = normalize_weights(weight, 78.4, dim=dim)
        else:
            result = normalize_weights(weight, 78.4, dim=dim)
    assert result is weight
    assert_same_bits(weight, torch.from_numpy(expected), f"{backend}, {threads} threads")
    if calls is not None:
        assert sum(calls.values()) == (1 if backend == "native" else 0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["native", "torch"])
@pytest.mark.parametrize("shape", [(400, 784), (13, 5), (9, 1), (21, 1025), (3000, 64)])
def test_a_weight_stored_transposed_is_the_numpy_definition(
    monkeypatch, shape, backend, dtype, threads
):
    """A ``(O, I)`` weight whose memory is ``(I, O)`` (strides ``(1, O)``, as one built
    ``torch.empty(I, O).t()``): the kernel reads it in place, the trees of 32 neurons (16 in
    float64) side by side, including a last block of fewer; the same bits as the definition,
    and the layout kept."""
    if backend == "native" and not native.enabled():
        pytest.skip("the native kernels are not built or are switched off")
    values = hostile_weight(shape, dtype, seed=sum(shape) + 1)
    weight = torch.empty(shape[::-1], dtype=dtype).t()
    weight.copy_(values)
    expected = numpy_normalize(values.numpy(), 78.4, (1,))
    calls = kernel_results(monkeypatch, "normalize_rows") if native.available() else None
    with torch_threads(threads):
        if backend == "torch":
            with native.disabled():
                normalize_weights(weight, 78.4, dim=1)
        else:
            normalize_weights(weight, 78.4, dim=1)
    assert weight.stride() == (1, shape[0])
    assert_same_bits(weight, torch.from_numpy(expected), f"{backend}, {threads} threads")
    if calls is not None:
        assert sum(calls.values()) == (1 if backend == "native" else 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_axes_and_per_neuron_totals_take_the_pytorch_code(monkeypatch, dtype):
    """A leading axis summed, a weight that is neither contiguous nor stored transposed,
    per-neuron totals: the same definition, without the kernel."""
    calls = kernel_results(monkeypatch, "normalize_rows") if native.available() else None
    weight = hostile_weight((6, 9, 4), dtype, seed=3)
    expected = numpy_normalize(weight.numpy(), 2.5, (0, 2))
    normalize_weights(weight, 2.5, dim=(2, 0))  # the order given does not matter
    assert_same_bits(weight, torch.from_numpy(expected), "dim (0, 2)")
    base = hostile_weight((6, 18), dtype, seed=4)
    strided = base[:, ::2]  # (6, 9), neither contiguous nor stored transposed
    expected = numpy_normalize(strided.numpy(), 2.5, (1,))
    normalize_weights(strided, 2.5)
    assert_same_bits(strided, torch.from_numpy(expected), "every other column")
    assert_same_bits(base[:, 1::2], hostile_weight((6, 18), dtype, seed=4)[:, 1::2])
    totals = torch.linspace(0.5, 3.0, 6, dtype=dtype).view(6, 1)
    weight = hostile_weight((6, 9), dtype, seed=5)
    expected = numpy_normalize(weight.numpy(), totals.view(6).numpy(), (1,))
    normalize_weights(weight, totals)
    assert_same_bits(weight, torch.from_numpy(expected), "per-neuron totals")
    if calls is not None:
        assert sum(calls.values()) == 0


@needs_native
def test_a_parameter_is_normalised_in_place_by_the_kernel(monkeypatch):
    calls = kernel_results(monkeypatch, "normalize_rows")
    weight = torch.nn.Parameter(torch.rand(5, 12))
    expected = numpy_normalize(weight.detach().numpy(), 3.0, (1,))
    address = weight.data_ptr()
    assert normalize_weights(weight, 3.0) is weight
    assert weight.data_ptr() == address and weight.requires_grad and weight.grad_fn is None
    assert_same_bits(weight.detach(), torch.from_numpy(expected))
    assert sum(calls.values()) == 1


def test_a_repeated_axis_is_rejected():
    weight = torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"normalize_weights: dim \(1, -1\) names an axis more"):
        normalize_weights(weight, 1.0, dim=(1, -1))
    assert torch.equal(weight, torch.ones(2, 3))


def test_compiled_normalisation_is_the_definition():
    """Under torch.compile the kernel declines (dynamo traces the PyTorch code): the same
    numbers."""
    weight = hostile_weight((12, 40), torch.float32, seed=8)
    expected = numpy_normalize(weight.numpy(), 3.0, (1,))
    compiled = torch.compile(lambda w: normalize_weights(w, 3.0), backend="aot_eager")
    compiled(weight)
    assert_same_bits(weight, torch.from_numpy(expected))
