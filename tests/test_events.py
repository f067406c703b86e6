r"""The ordered weight update of the learning rules and its event-driven C twin.

Up to :data:`pysnn.learning.ORDERED_DEPTH` stacked factor rows (terms × samples × positions:
pair STDP on a Linear layer at batch ≤ 4), a rule updates its ``(O, K)`` weight (or eligibility
trace) with :func:`pysnn.learning.ordered_update` instead of one BLAS product::

    out ← 0 (beta == 0) or out·beta (beta != 1)
    s[o, i] ← p[0, o]·q[0, i];  for j in 1 .. depth-1:  s[o, i] ← s[o, i] + p[j, o]·q[j, i]
    out ← out + s·alpha   (·alpha if != 1; nothing at depth 0)
    out[out < w_min] ← w_min;  out[out > w_max] ← w_max

every operation rounded once in the dtype of ``out``, so that the numbers do not depend on the
BLAS, the CPU or the number of threads. :func:`pysnn.native.ordered_update` is its C twin; where
few factors are nonzero (few spikes) it takes only the products of two nonzero factors
(event-driven, return value 2) — a skipped product is ±0, adding ±0 to a sum with a nonzero
term leaves it unchanged, and adding a sum of ±0 leaves a value that is not -0 unchanged — and
otherwise the dense pass (return value 1). It may take the event path
only where that gives the same numbers: finite factors (0·inf is NaN in the dense pass) and, after
the beta pass, every value within the bounds and none -0 (the clamp runs on the changed rows
only, and -0 + 0 = +0).

What is checked here, always against numbers computed independently of the code under test:

* the eager function against a NumPy loop that implements the definition op by op in the same
  dtype (bit for bit), and against the float64 product ``beta·out + alpha·pᵀq`` (within the
  rounding bound of a dot product of length ``depth``);
* the C twin against the eager function, bit for bit (values, signs of zeros, NaN positions),
  over densities from all-zero to full, depths 1, 2 and 8, one and two threads, small weights
  and a (400, 784) one that the dense pass splits over the threads, with the event path forced
  (``crossover = inf``), forbidden (``-1``) and at the default crossover — and which path ran,
  where the rules above determine it;
* the fallbacks: weights out of bounds (also made so by ``beta``), -0, NaN and inf weights,
  non-finite factors — the same numbers as the eager function whichever path ran, and the dense
  path wherever the event path would differ;
* the rules (STDP, MSTDP, MSTDPET) end to end on a small network at batch 1 and 4: the same
  weights and eligibility traces bit for bit with the event path forced, forbidden, and with
  ``backend="torch"``; the event path did run; one STDP step against the STDP formula in NumPy;
* what the C twin cannot read (non-contiguous, float16, mixed dtypes) is left untouched (0).
"""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from pysnn import native
from pysnn.learning import MSTDP, MSTDPET, ORDERED_DEPTH, STDP, ordered_update
from helpers import Chain, assert_same_bits, torch_threads

needs_native = pytest.mark.skipif(
    not native.enabled(), reason="the native kernels are not built or are switched off"
)
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
ALPHAS = [1.0, 0.25, 1.0 / 3.0]
BETAS = [1.0, 0.0, 0.5]
BOUNDS = [(0.0, 1.0), (None, None), (-0.5, None)]
EVENT, DENSE = math.inf, -1.0  # crossovers that force / forbid the event-driven path


def sparse(shape, density: float, dtype, gen: torch.Generator, low=-1.0, high=1.0):
    """Values uniform in [low, high) where a draw is below ``density``, exact zeros elsewhere."""
    values = low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)
    keep = torch.rand(shape, generator=gen, dtype=torch.float64) < density
    return torch.where(keep, values, torch.zeros((), dtype=torch.float64)).to(dtype)


def numpy_ordered_update(out, p, q, alpha, beta, w_min, w_max):
    """The definition in NumPy, one array operation (rounded once in the dtype) at a time."""
    kind = out.dtype.type
    out = out.copy()
    if beta == 0:
        out = np.zeros_like(out)  # +0 everywhere
    elif beta != 1:
        out = out * kind(beta)
    if p.shape[0] > 0:
        total = p[0][:, None] * q[0][None, :]
        for j in range(1, p.shape[0]):
            total = total + p[j][:, None] * q[j][None, :]
        if alpha != 1:
            total = total * kind(alpha)
        out = out + total
    if w_min is not None:  # strict comparisons: NaN stays NaN, -0 stays -0 at w_min = 0
        out = np.where(out < kind(w_min), kind(w_min), out)
    if w_max is not None:
        out = np.where(out > kind(w_max), kind(w_max), out)
    return out


def eager(out, p, q, alpha, beta, w_min, w_max):
    result = out.clone()
    ordered_update(result, p, q, alpha, beta, w_min, w_max)
    return result


def event_path_expected(p, q, n_out, n_in, crossover) -> int:
    """The path the C twin takes for finite factors and an ``out`` that is clean after the
    beta pass: 2 when the products of two nonzero factors number at most ``crossover`` times
    the dense ones, else 1."""
    if crossover < 0:
        return 1
    depth = p.shape[0]
    work = float(((p != 0).sum(1).double() * (q != 0).sum(1).double()).sum())
    return 2 if work <= crossover * depth * n_out * n_in else 1


# -- a. the eager function against the definition -----------------------------------------------
def random_case(dtype, gen, n_out=6, n_in=9, depth=5):
    """``out`` with signed zeros, factors with zeros and -0 sprinkled in."""
    out = sparse((n_out, n_in), 0.8, dtype, gen, -0.8, 1.2)
    out[0, :3] = torch.tensor([0.0, -0.0, 1.0])
    p = sparse((depth, n_out), 0.6, dtype, gen)
    q = sparse((depth, n_in), 0.6, dtype, gen)
    p[0, 0], q[1, 1] = -0.0, -0.0
    return out, p, q


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bounds", BOUNDS + [(0.1, 0.7)], ids=str)
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("alpha", ALPHAS, ids=["1", "0.25", "1/3"])
def test_eager_ordered_update_equals_numpy_definition_bit_for_bit(alpha, beta, bounds, dtype):
    gen = torch.Generator().manual_seed(11)
    for trial in range(3):
        out, p, q = random_case(dtype, gen)
        expected = numpy_ordered_update(out.numpy(), p.numpy(), q.numpy(), alpha, beta, *bounds)
        result = out.clone()
        returned = ordered_update(result, p, q, alpha, beta, *bounds)
        assert returned is result  # in place
        assert_same_bits(result, torch.from_numpy(expected), f"trial {trial}")


def test_eager_ordered_update_scratch_and_depth_zero():
    """A given scratch tensor gives the same numbers; depth 0 is the beta pass and the bounds."""
    gen = torch.Generator().manual_seed(12)
    out, p, q = random_case(torch.float32, gen)
    expected = eager(out, p, q, 0.25, 0.5, 0.0, 1.0)
    result = out.clone()
    scratch = torch.empty((2,) + tuple(out.shape), dtype=out.dtype)
    ordered_update(result, p, q, 0.25, 0.5, 0.0, 1.0, scratch=scratch)
    assert_same_bits(result, expected)
    empty = eager(out, p[:0], q[:0], 0.25, 0.5, 0.0, None)
    reference = numpy_ordered_update(out.numpy(), p[:0].numpy(), q[:0].numpy(), 0.25, 0.5, 0, None)
    assert_same_bits(empty, torch.from_numpy(reference))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("alpha", ALPHAS, ids=["1", "0.25", "1/3"])
def test_eager_ordered_update_is_the_product_within_rounding(alpha, beta, dtype):
    """Sanity: the definition is ``clamp(beta·out + alpha·pᵀq)`` up to the rounding of a dot
    product of length ``depth`` (plus the alpha and beta roundings), and not farther."""
    gen = torch.Generator().manual_seed(13)
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    depth = 8
    out = sparse((20, 30), 0.9, dtype, gen)
    p = sparse((depth, 20), 0.5, dtype, gen, 0.0, 1.0)
    q = sparse((depth, 30), 0.5, dtype, gen, -1.0, 1.0)
    result = eager(out, p, q, alpha, beta, -0.5, 0.8).double().numpy()
    w, pn, qn = (t.double().numpy() for t in (out, p, q))
    exact = np.clip(beta * w + alpha * (pn.T @ qn), -0.5, 0.8)
    magnitude = abs(beta) * np.abs(w) + abs(alpha) * (np.abs(pn).T @ np.abs(qn))
    bound = 2 * (depth + 2) * eps * magnitude + (depth + 2) * tiny
    error = np.abs(result - exact)
    assert (error <= bound).all(), float((error / bound).max())
    assert np.abs(result - w).max() > 0.1  # the update is not trivial


# -- b. the C twin against the eager function on random matrices ---------------------------------
DENSITIES = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.01, 0.01), (0.1, 0.1), (0.1, 0.5)]
DENSITIES += [(0.5, 0.5), (1.0, 1.0)]


def run_grid(dtype, densities, depth, n_out, n_in, seed, crossovers, alphas, betas, bounds_list):
    """Native against eager for every combination; asserts bit identity and the path."""
    gen = torch.Generator().manual_seed(seed)
    p = sparse((depth, n_out), densities[0], dtype, gen)
    q = sparse((depth, n_in), densities[1], dtype, gen, 0.0, 1.0)
    # within every bound tried and never -0 (also after beta): the path is determined
    out = (0.05 + 0.9 * torch.rand((n_out, n_in), generator=gen, dtype=torch.float64)).to(dtype)
    paths = Counter()
    for crossover in crossovers:
        expected_path = event_path_expected(p, q, n_out, n_in, crossover)
        for alpha in alphas:
            for beta in betas:
                for bounds in bounds_list:
                    context = f"crossover={crossover} alpha={alpha} beta={beta} bounds={bounds}"
                    expected = eager(out, p, q, alpha, beta, *bounds)
                    result = out.clone()
                    path = native.ordered_update(result, p, q, alpha, beta, *bounds, crossover)
                    assert path == expected_path, context
                    assert_same_bits(result, expected, context)
                    paths[path] += 1
    return paths


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("depth", [1, 2, ORDERED_DEPTH])
@pytest.mark.parametrize("densities", DENSITIES, ids=lambda d: f"p{d[0]}-q{d[1]}")
def test_native_ordered_update_equals_eager_on_random_matrices(densities, depth, dtype, threads):
    """(37, 300): 11100 values, enough for two threads in the dense and beta passes."""
    crossovers = (EVENT, DENSE, native.EVENT_CROSSOVER)
    with torch_threads(threads):
        paths = run_grid(dtype, densities, depth, 37, 300, depth, crossovers, ALPHAS, BETAS, BOUNDS)
    assert paths[1] > 0 and paths[2] > 0  # both paths ran (inf always events, -1 never)


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("densities", [(0.01, 0.01), (0.1, 0.5), (1.0, 1.0)], ids=str)
def test_native_ordered_update_of_a_weight_stored_transposed(densities, dtype, threads):
    """A ``(37, 300)`` weight whose memory is ``(300, 37)`` (Diehl & Cook's input weight):
    the C twin takes its memory (it declined before), the same path and the same bits as the
    eager function on a contiguous copy, and the layout is kept."""
    gen = torch.Generator().manual_seed(41)
    p = sparse((2, 37), densities[0], dtype, gen)
    q = sparse((2, 300), densities[1], dtype, gen, 0.0, 1.0)
    out = (0.05 + 0.9 * torch.rand((37, 300), generator=gen, dtype=torch.float64)).to(dtype)
    for crossover in (EVENT, DENSE, native.EVENT_CROSSOVER):
        for bounds in BOUNDS:
            expected = eager(out, p, q, 0.25, 1.0, *bounds)
            result = torch.empty(300, 37, dtype=dtype).t()
            result.copy_(out)
            with torch_threads(threads):
                path = native.ordered_update(result, p, q, 0.25, 1.0, *bounds, crossover)
            context = f"crossover={crossover} bounds={bounds}"
            assert path == event_path_expected(p, q, 37, 300, crossover), context
            assert result.stride() == (1, 37)
            assert_same_bits(result, expected, context)


def test_all_zero_factors_take_the_event_path_at_inf_and_not_at_minus_one():
    if not native.enabled():
        pytest.skip("the native kernels are not built or are switched off")
    out = torch.rand(5, 7, dtype=torch.float64)
    p, q = torch.zeros(2, 5, dtype=torch.float64), torch.rand(2, 7, dtype=torch.float64)
    for crossover, path in ((EVENT, 2), (DENSE, 1), (0.0, 2)):
        result = out.clone()
        assert native.ordered_update(result, p, q, 0.5, 1.0, 0.0, 1.0, crossover) == path
        assert_same_bits(result, out)  # nothing to add, all within the bounds
    result = out.clone()  # one product: above the crossover 0, event-driven at 1
    p[1, 3] = 0.25
    assert native.ordered_update(result, p, q, 0.5, 1.0, 0.0, 1.0, 0.0) == 1
    result = out.clone()
    assert native.ordered_update(result, p, q, 0.5, 1.0, 0.0, 1.0, 1.0) == 2
    assert_same_bits(result, eager(out, p, q, 0.5, 1.0, 0.0, 1.0))


@needs_native
@pytest.mark.parametrize("crossover", [EVENT, DENSE, native.EVENT_CROSSOVER], ids=str)
@pytest.mark.parametrize("densities", [(0.01, 0.05), (0.5, 0.5)], ids=["sparse", "dense"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_native_ordered_update_equals_eager_on_a_large_weight_on_two_threads(
    dtype, densities, crossover
):
    """(400, 784) × depth 8: the dense pass splits its rows over two threads (and the event
    path its beta pass); the numbers are those of the eager function all the same."""
    with torch_threads(2):
        run_grid(dtype, densities, 8, 400, 784, 7, [crossover], [1.0 / 3.0], [0.5], [(0.0, 1.0)])
        run_grid(dtype, densities, 8, 400, 784, 8, [crossover], [1.0], [1.0], [(None, None)])


# -- c. fallbacks: what would make the event path wrong ------------------------------------------
def fallback_case(name, dtype):
    """``(out, p, q, alpha, beta, w_min, w_max, path at crossover inf or None)``: a clean base
    (out in [0.4, 0.9], finite factors with zeros) with one thing changed."""
    gen = torch.Generator().manual_seed(21)
    out = (0.4 + 0.5 * torch.rand((5, 7), generator=gen, dtype=torch.float64)).to(dtype)
    p = sparse((3, 5), 0.5, dtype, gen)
    q = sparse((3, 7), 0.5, dtype, gen, 0.0, 1.0)
    p[0, 0], p[0, 1], q[0, 2], q[0, 3] = 0.5, 0.0, 0.0, 0.75  # a zero of each in row 0
    alpha, beta, w_min, w_max, path = 0.5, 1.0, 0.0, 1.0, 2
    inf, nan = math.inf, math.nan
    if name == "clean":
        pass
    elif name == "above-w_max":
        out[1, 1], path = 1.5, 1
    elif name == "below-w_min":
        out[2, 2], path = -0.25, 1
    elif name == "minus-zero-at-w_min-0":
        out[3, 3], path = -0.0, 1
    elif name == "minus-zero-unbounded":
        out[3, 3], w_min, w_max, path = -0.0, None, None, 1
    elif name == "minus-zeros-cleared-by-beta-0":
        out[3, :], beta, path = -0.0, 0.0, 2  # beta 0 writes +0
    elif name == "minus-zero-made-by-negative-beta":
        out[0, 0], beta, w_min, w_max, path = 0.0, -1.0, None, None, 1
    elif name == "beta-0.5-below-w_min-0.3":
        beta, w_min, path = 0.5, 0.3, 1  # 0.5·[0.4, 0.9] is partly below 0.3
    elif name == "beta-0-below-w_min-0.3":
        beta, w_min, path = 0.0, 0.3, 1
    elif name == "empty-bounds":
        w_min, w_max, path = 0.6, 0.4, 1  # no value is clean; low then high, as eager
    elif name == "nan-weight-bounded":
        out[1, 2], out[0, 0], path = nan, nan, None  # NaN stays NaN either way
    elif name == "nan-weight-unbounded":
        out[1, 2], w_min, w_max, path = nan, None, None, None
    elif name == "inf-weight-bounded":
        out[1, 2], path = inf, 1
    elif name == "inf-weight-unbounded":
        out[1, 2], out[0, 0], w_min, w_max, path = inf, -inf, None, None, 2
    elif name == "minus-inf-weight-below-w_max-only":
        out[1, 2], w_min, path = -inf, None, 2
    elif name == "inf-in-p":
        p[0, 1], path = inf, 1  # meets the zero q[0, 2]: NaN in the dense pass
    elif name == "nan-in-p":
        p[0, 1], path = nan, 1
    elif name == "inf-in-q":
        q[0, 2], path = -inf, 1  # meets the zero p[0, 1]
    elif name == "nan-in-q":
        q[0, 2], path = nan, 1
    elif name == "minus-zero-factors":
        p[0, 1], q[0, 2], p[2, :] = -0.0, -0.0, -0.0
    elif name == "products-overflow":
        big = 2.0 * math.sqrt(torch.finfo(dtype).max)  # finite, its square is not
        p[0, 0], q[0, 3], w_min, w_max = big, big, None, None
        p[1, 0], q[1, 3] = -big, big  # then inf + -inf = NaN
    elif name == "products-underflow-to-minus-zero":
        small = 0.5 * math.sqrt(torch.finfo(dtype).tiny) * torch.finfo(dtype).eps
        out[0, 3], p[0, 0], q[0, 3] = 0.0, -small, small  # +0 + (-0) = +0
    else:  # pragma: no cover
        raise ValueError(name)
    return out, p, q, alpha, beta, w_min, w_max, path


FALLBACKS = [
    "clean",
    "above-w_max",
    "below-w_min",
    "minus-zero-at-w_min-0",
    "minus-zero-unbounded",
    "minus-zeros-cleared-by-beta-0",
    "minus-zero-made-by-negative-beta",
    "beta-0.5-below-w_min-0.3",
    "beta-0-below-w_min-0.3",
    "empty-bounds",
    "nan-weight-bounded",
    "nan-weight-unbounded",
    "inf-weight-bounded",
    "inf-weight-unbounded",
    "minus-inf-weight-below-w_max-only",
    "inf-in-p",
    "nan-in-p",
    "inf-in-q",
    "nan-in-q",
    "minus-zero-factors",
    "products-overflow",
    "products-underflow-to-minus-zero",
]


@needs_native
@pytest.mark.parametrize("crossover", [EVENT, DENSE, native.EVENT_CROSSOVER], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FALLBACKS)
def test_native_falls_back_to_the_same_numbers(name, dtype, crossover):
    out, p, q, alpha, beta, w_min, w_max, path_at_inf = fallback_case(name, dtype)
    expected = eager(out, p, q, alpha, beta, w_min, w_max)
    reference = numpy_ordered_update(out.numpy(), p.numpy(), q.numpy(), alpha, beta, w_min, w_max)
    with np.errstate(all="ignore"):  # overflow and inf - inf are part of the cases
        assert_same_bits(expected, torch.from_numpy(reference), "eager against NumPy")
    result = out.clone()
    path = native.ordered_update(result, p, q, alpha, beta, w_min, w_max, crossover)
    assert_same_bits(result, expected, f"path {path}")
    if crossover == DENSE:
        assert path == 1
    elif crossover == EVENT and path_at_inf is not None:
        assert path == path_at_inf
    else:
        assert path in (1, 2)


@needs_native
def test_nan_weights_may_take_the_event_path():
    """A NaN weight is neither below nor above a bound: the event path is allowed (NaN + 0 is
    NaN) and taken at crossover inf; the NaN stays where it was."""
    out, p, q, alpha, beta, w_min, w_max, _ = fallback_case("nan-weight-bounded", torch.float32)
    result = out.clone()
    assert native.ordered_update(result, p, q, alpha, beta, w_min, w_max, EVENT) == 2
    assert torch.equal(torch.isnan(result), torch.isnan(out))


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [math.inf, math.nan, 1e39], ids=["inf", "nan", "1e39"])
def test_non_finite_alpha_takes_the_dense_path_and_gives_the_eager_numbers(alpha, dtype):
    """0·alpha is NaN for an alpha that is not finite in the dtype (1e39 is inf in float32):
    the event path would skip those products, so the dense one runs."""
    out = torch.full((1, 2), 0.5, dtype=dtype)
    p = torch.tensor([[0.5]], dtype=dtype)
    q = torch.tensor([[1.0, 0.0]], dtype=dtype)  # 0.5·0·inf is NaN in eager
    expected = eager(out, p, q, alpha, 1.0, None, None)
    assert bool(torch.isnan(expected[0, 1])) == (alpha != 1e39 or dtype == torch.float32)
    result = out.clone()
    path = native.ordered_update(result, p, q, alpha, 1.0, None, None, EVENT)
    assert path == (2 if alpha == 1e39 and dtype == torch.float64 else 1)
    assert_same_bits(result, expected)


@needs_native
@pytest.mark.parametrize("crossover", [EVENT, DENSE], ids=str)
def test_beta_rounding_to_zero_in_float32_multiplies_as_eager(crossover):
    """beta = 1e-50 is 0 in float32 but not 0: ``out·beta`` (inf·0 = NaN, -1·0 = -0), not the
    zeros of beta = 0."""
    out = torch.tensor([[-1.0, math.inf, 2.0]])
    p, q = torch.zeros(0, 1), torch.zeros(0, 3)
    expected = eager(out, p, q, 1.0, 1e-50, None, None)
    with np.errstate(invalid="ignore"):
        assert_same_bits(expected, torch.from_numpy(out.numpy() * np.float32(1e-50)))
    assert bool(torch.signbit(expected[0, 0])) and bool(torch.isnan(expected[0, 1]))
    result = out.clone()
    native.ordered_update(result, p, q, 1.0, 1e-50, None, None, crossover)
    assert_same_bits(result, expected)


# -- f. what the C twin cannot read ---------------------------------------------------------------
@needs_native
def test_native_depth_limit_is_the_rules_and_deeper_updates_are_declined():
    """The C twin's deepest update is learning.ORDERED_DEPTH (one constant in two languages)."""
    assert native._extension.constants()["ORDERED_MAX_DEPTH"] == native._ORDERED_MAX_DEPTH
    assert native._ORDERED_MAX_DEPTH == ORDERED_DEPTH
    gen = torch.Generator().manual_seed(32)
    depth = ORDERED_DEPTH + 1
    out, p, q = torch.rand(3, 5, generator=gen), torch.rand(depth, 3), torch.rand(depth, 5)
    before = out.clone()
    assert native.ordered_update(out, p, q, 1.0, 1.0, None, None, EVENT) == 0
    assert torch.equal(out, before)


@needs_native
def test_native_declines_what_it_cannot_read_and_leaves_out_untouched():
    gen = torch.Generator().manual_seed(31)
    p, q = torch.rand(2, 4, generator=gen), torch.rand(2, 6, generator=gen)
    strided = torch.rand(4, 12, generator=gen)[:, ::2]  # (4, 6), nor stored transposed
    strided_before = strided.clone()
    assert native.ordered_update(strided, p, q, 1.0, 1.0, None, None, EVENT) == 0
    assert torch.equal(strided, strided_before)
    half = torch.rand(4, 6, generator=gen).half()
    before = half.clone()
    assert native.ordered_update(half, p.half(), q.half(), 1.0, 0.5, 0.0, 1.0) == 0
    assert torch.equal(half, before)
    mixed = torch.rand(4, 6, generator=gen, dtype=torch.float64)  # float32 factors
    before = mixed.clone()
    assert native.ordered_update(mixed, p, q, 1.0, 0.5, 0.0, 1.0, DENSE) == 0
    assert torch.equal(mixed, before)
    out = torch.rand(4, 6, generator=gen)
    before = out.clone()
    assert native.ordered_update(out, p.t().contiguous().t(), q, 1.0, 0.5, None, None) == 0
    assert torch.equal(out, before)  # non-contiguous p
    with native.disabled():
        assert native.ordered_update(out, p, q, 1.0, 0.5, None, None) == 0
    assert torch.equal(out, before)
    # and the eager function still runs them
    ordered_update(strided, p, q, 1.0, 1.0)
    assert not torch.equal(strided, strided_before)


# -- d. the rules end to end --------------------------------------------------------------------
N_IN, N_OUT, W_HIGH, THRESH, LR = 200, 12, 0.02, 0.3, 0.005


def make_rule(name, layers, backend):
    if name == "stdp":
        return STDP(layers, LR, 1.0, 0.6, 0.0, W_HIGH, backend=backend)
    if name == "mstdp":
        return MSTDP(layers, 1.0, 0.6, LR, w_min=0.0, w_max=W_HIGH, backend=backend)
    return MSTDPET(layers, 1.0, 0.6, LR, 0.5, backend=backend)  # no bounds


@pytest.fixture
def paths(monkeypatch):
    """Count the return values of ``native.ordered_update`` as the rules call it."""
    counter = Counter()
    original = native.ordered_update

    def counting(*args, **kwargs):
        path = original(*args, **kwargs)
        counter[path] += 1
        return path

    monkeypatch.setattr(native, "ordered_update", counting)
    return counter


def train(name, batch, rate, dtype, backend, steps=30):
    """Train a fresh network (same seed) for ``steps`` steps; the weights, the eligibility
    trace (MSTDPET) and the initial weights."""
    net = Chain(batch, N_IN, N_OUT, 3, W_HIGH, THRESH).to(dtype)
    rule = make_rule(name, net.layers, backend)
    before = net.con.weight.detach().clone()
    gen = torch.Generator().manual_seed(4)
    spiked = 0.0
    for _ in range(steps):
        x = torch.rand((batch, 1, N_IN), generator=gen) < rate
        reward = float(torch.randn((), generator=gen, dtype=torch.float64))
        net(x)
        spiked += float(net.neuron.spikes.float().mean())
        rule.update_state()
        rule.step() if name == "stdp" else rule.step(reward)
    e_trace = rule.layers["fc"]["e_trace"].clone() if name == "mstdpet" else None
    return net.con.weight.detach().clone(), e_trace, before, spiked / steps


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rate", [0.05, 0.3])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", ["stdp", "mstdp", "mstdpet"])
def test_rules_give_the_same_weights_dense_event_driven_and_eager(
    monkeypatch, paths, name, batch, rate, dtype
):
    assert 2 * batch <= ORDERED_DEPTH  # two stacked terms per sample: the ordered update
    results = {}
    with torch_threads(1):
        for label, crossover, backend in (
            ("dense", DENSE, "auto"),
            ("event", EVENT, "auto"),
            ("default", native.EVENT_CROSSOVER, "auto"),
            ("torch", native.EVENT_CROSSOVER, "torch"),
        ):
            monkeypatch.setattr(native, "EVENT_CROSSOVER", crossover)
            paths.clear()
            results[label] = train(name, batch, rate, dtype, backend)
            results[label] += (Counter(paths),)
    weight, e_trace, before, spiked, _ = results["torch"]
    for label in ("dense", "event", "default"):
        assert_same_bits(results[label][0], weight, f"{label}: weight")
        if e_trace is not None:
            assert_same_bits(results[label][1], e_trace, f"{label}: e_trace")
    assert 0.0 < spiked < 1.0  # neurons both spike and stay silent
    assert not torch.equal(weight, before)  # the weights did move
    if name == "stdp":  # a bound binds
        assert bool((weight == W_HIGH).any() or (weight == 0.0).any())
    steps = 30
    assert results["torch"][4] == Counter()  # the eager function, no native call
    assert results["dense"][4] == Counter({1: steps})
    assert results["event"][4][2] > 0  # the event path did run
    if rate == 0.05:  # few spikes: event-driven throughout
        assert results["event"][4] == Counter({2: steps})
    assert sum(results["default"][4].values()) == steps


# -- e. one STDP step against the formula ---------------------------------------------------------
@needs_native
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(
    "backend, crossover", [("torch", None), ("auto", DENSE), ("auto", EVENT)], ids=str
)
def test_one_stdp_step_equals_the_formula_in_numpy(monkeypatch, paths, backend, crossover, batch):
    """``W ← clamp(W + (1/B)·Σ_b (lr·a+·x_pre ⊗ s_post − lr·a−·s_pre ⊗ x_post))`` on a hand-made
    state, with weights pushed past both bounds."""
    if crossover is not None:
        monkeypatch.setattr(native, "EVENT_CROSSOVER", crossover)
    rng = np.random.default_rng(batch)
    n_out, n_in, lr, a_plus, a_minus, w_min, w_max = 4, 6, 0.1, 1.0, 0.8, 0.0, 1.0
    w = rng.uniform(0.2, 0.8, (n_out, n_in))
    w[0, 0], w[1, 0] = 0.999, 0.001  # potentiated above w_max, depressed below w_min
    s_pre = rng.random((batch, n_in)) < 0.5
    s_pre[:, 0] = True
    x_pre = np.where(rng.random((batch, n_in)) < 0.7, rng.uniform(0.1, 1.0, (batch, n_in)), 0)
    x_pre[:, 0] = 0.5
    s_post = rng.random((batch, n_out)) < 0.5
    s_post[:, 0], s_post[:, 1] = True, False
    x_post = np.where(rng.random((batch, n_out)) < 0.7, rng.uniform(0.1, 1.0, (batch, n_out)), 0)
    x_post[:, 0], x_post[:, 1] = 0.1, 0.9
    delta = sum(
        lr * a_plus * np.outer(s_post[b], x_pre[b]) - lr * a_minus * np.outer(x_post[b], s_pre[b])
        for b in range(batch)
    )
    expected = np.clip(w + delta / batch, w_min, w_max)
    assert expected[0, 0] == w_max and expected[1, 0] == w_min  # both bounds bind

    def synapses(x):  # (B, K) → the (B, O, K) stride-0 view of a uniform delay
        return torch.from_numpy(x).unsqueeze(1).expand(batch, n_out, n_in)

    weight = torch.from_numpy(w.copy())
    layers = {
        "fc": {
            "connection": {"weight": weight, "spikes": synapses(s_pre), "trace": synapses(x_pre)},
            "neuron": {
                "spikes": torch.from_numpy(s_post).unsqueeze(1),
                "trace": torch.from_numpy(x_post).unsqueeze(1),
            },
            "type": "linear",
        }
    }
    STDP(layers, lr, a_plus, a_minus, w_min, w_max, backend=backend).step()
    np.testing.assert_allclose(weight.numpy(), expected, rtol=0, atol=1e-12)
    assert weight[0, 0] == w_max and weight[1, 0] == w_min
    if backend == "torch":
        assert paths == Counter()
    else:
        assert paths == Counter({1 if crossover == DENSE else 2: 1})
