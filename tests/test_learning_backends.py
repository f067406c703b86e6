r"""pysnn.learning: the ``backend`` of the learning rules, ``"torch"`` against ``"native"``.

Every rule (STDP additive and multiplicative, MSTDP with shared and per-sample rewards, MSTDPET
with a shared and a per-sample eligibility trace, FedeSTDP) trains Linear layers with
``backend="torch"`` (eager PyTorch, no call into :mod:`pysnn.native`) and ``backend="native"``
(the stacking kernel :func:`pysnn.native.stack_terms` and the threaded product
:func:`pysnn.native.product_bounded`), on the same inputs:

* on one thread the weights are equal bit for bit (four samples: a stacked depth of 8, which
  both backends take in the fixed order of :func:`pysnn.learning.ordered_update`, on factors
  that the kernel fills exactly as PyTorch; tests/test_events.py covers that order on any
  number of threads);
* on two threads, with a weight of more than 8192 values, ``product_bounded`` gives each thread
  a block of rows of the product with the BLAS ``?gemm_``, which may sum the stacked terms in
  another order than ``addmm_`` (MKL does not promise equal results across row partitions; it
  does differ on AMD CPUs), so the weights are held to the rounding bound of a dot product of
  length ``k = T·B`` (``T`` stacked terms, ``B`` samples). One product
  ``out ← clamp(beta·out + alpha·PᵀQ)`` computed two ways differs, per element, by at most

  .. math::

      2\,k\,\epsilon\,\big(|\beta\,W_{prev}| + |\alpha|\,(|P|^T|Q|)\big) + \text{tiny}

  with :math:`\epsilon` = ``torch.finfo(dtype).eps`` :math:`= 2u`: each result is within
  :math:`\gamma_{k+2} \approx (k+2)u` of the exact value (``k`` products and sums, the
  ``alpha`` and ``beta`` roundings) and :math:`2(k+2)u \le 2k\epsilon` for :math:`k \ge 2`;
  tiny = ``(k + 2)·finfo.tiny`` covers underflow. :math:`|P|^T|Q|` is computed here, in
  float64, from the stacked factors ``p_t = c_t·post_t`` (rounded to the dtype as the kernel
  rounds them) and ``q_t = pre_t`` read from the layer. Over the steps the bounds add up
  (:math:`|\beta| \le 1` and the clamp, 1-Lipschitz, do not enlarge a difference), with
  :math:`|W_{prev}|` the larger of the two weights. The multiplicative STDP step propagates the
  two products' bounds through its elementwise update (see :func:`soft_bound_step_bound`).
  MSTDPET and FedeSTDP do not use ``product_bounded`` (their weight update is elementwise or a
  batched product run by PyTorch on both backends): their bound is 0.

Both rules of the two-thread test read the same network state (the native rule trains a
shadow copy of the weight through a live mapping), so the factors ``P`` and ``Q`` of both are
the same numbers and only the products' rounding differs; the one-thread test runs two
identical networks end to end. This replaces the bit-equality test of test_native.py, which
failed on AMD CPUs.
"""

import math
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from pysnn import native
from pysnn._backend import NativeUnavailableError
from pysnn.connection import Conv2d
from pysnn.learning import MSTDP, MSTDPET, STDP, FedeSTDP, LearningRule
from pysnn.network import SNNNetwork
from pysnn.neuron import IFNeuron
from helpers import Chain, torch_threads

needs_native = pytest.mark.skipif(
    not native.enabled(), reason="the native kernels are not built or are switched off"
)
RULES = [
    "stdp",
    "stdp-multiplicative",
    "mstdp",
    "mstdp-per-sample",
    "mstdpet",
    "mstdpet-per-sample",
    "fede",
]
A_PLUS, A_MINUS, W_MIN, DECAY = 1.0, 0.8, 0.0, 0.5
# (n_in, initial weights U(0, w_high), upper bound w_max, learning rate) of the two tests
SMALL = (300, 0.006, 0.0063, 0.0006)
BIG = (2048, 0.002, 0.0021, 0.0002)


def make_rule(name, layers, backend, w_max=SMALL[2], lr=SMALL[3]):
    """The rule ``name`` on ``layers`` with weight bounds that bind (where it has bounds)."""
    bounds = dict(w_min=W_MIN, w_max=w_max)
    if name == "stdp":
        return STDP(layers, lr, A_PLUS, A_MINUS, W_MIN, w_max, backend=backend)
    if name == "stdp-multiplicative":
        return STDP(layers, lr, A_PLUS, A_MINUS, W_MIN, w_max, "multiplicative", backend=backend)
    if name.startswith("mstdpet"):
        per_sample = name.endswith("per-sample")
        return MSTDPET(
            layers,
            A_PLUS,
            A_MINUS,
            lr,
            DECAY,
            per_sample_reward=per_sample,
            **bounds,
            backend=backend,
        )
    if name.startswith("mstdp"):
        return MSTDP(layers, A_PLUS, A_MINUS, lr, **bounds, backend=backend)
    return FedeSTDP(layers, lr, w_max / 2, 0.5, backend=backend)


def reward_for(name, gen, batch, dtype):
    """No reward, a Python number shared by the batch, or a ``(B,)`` tensor per sample."""
    if not name.startswith("mstdp"):
        return ()
    if name.endswith("per-sample"):
        return (torch.randn(batch, generator=gen, dtype=torch.float64).to(dtype),)
    return (float(torch.randn((), generator=gen, dtype=torch.float64)),)


@pytest.fixture
def calls(monkeypatch):
    """Count the calls of the native helpers, per ``calls.owner`` (the rule being stepped)."""
    counter = Counter()
    counter.owner = None
    counter.threaded = 0  # product_bounded calls that did the product (returned True)
    for helper in ("stack_arguments", "stack_terms", "product_bounded"):
        original = getattr(native, helper)

        def wrapper(*args, _original=original, _helper=helper, **kwargs):
            counter[(counter.owner, _helper)] += 1
            result = _original(*args, **kwargs)
            if _helper == "product_bounded" and result:
                counter.threaded += 1
            return result

        monkeypatch.setattr(native, helper, wrapper)
    return counter


def step(rule, arguments, calls, owner):
    calls.owner = owner
    rule.update_state()
    rule.step(*arguments)
    calls.owner = None


def uses_stacking(name):
    return name not in ("mstdpet-per-sample", "fede")


def uses_product_bounded(name):
    return name in ("stdp", "stdp-multiplicative", "mstdp", "mstdp-per-sample")


# -- one thread: bit for bit --------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", RULES)
def test_backends_give_equal_weights_on_one_thread(calls, name, dtype):
    """Two identical networks, one rule per backend, the same inputs: equal weights after every
    step; the torch rule never calls a native helper, the native rule fills its factors with
    the kernel (rules with stacked products)."""
    (n_in, w_high, w_max, lr), batch, n_out = SMALL, 4, 20
    with torch_threads(1):
        nets = [Chain(batch, n_in, n_out, 3, w_high, 0.6).to(dtype) for _ in range(2)]
        rules = [
            make_rule(name, net.layers, backend, w_max, lr)
            for net, backend in zip(nets, ("torch", "native"))
        ]
        before = nets[0].con.weight.clone()
        gen = torch.Generator().manual_seed(5)
        spiked = 0.0
        for t in range(12):
            x = torch.rand((batch, 1, n_in), generator=gen) < 0.3
            arguments = reward_for(name, gen, batch, dtype)
            for net, rule, owner in zip(nets, rules, ("torch", "native")):
                net(x)
                step(rule, arguments, calls, owner)
            spiked += float(nets[0].neuron.spikes.float().mean())
            assert torch.equal(nets[0].con.weight, nets[1].con.weight), f"step {t}"
            assert torch.equal(nets[0].neuron.trace, nets[1].neuron.trace), f"step {t}"
    assert 0.02 < spiked / 12 < 0.9  # neurons both spike and stay silent
    assert not torch.equal(nets[0].con.weight, before)  # the weights did move
    assert not any(count for (owner, _), count in calls.items() if owner == "torch")
    assert (calls[("native", "stack_terms")] > 0) == uses_stacking(name)
    assert calls.threaded == 0  # one thread: product_bounded declines, addmm_ runs


@needs_native
@pytest.mark.parametrize("source", ["neuron.trace", "neuron.spikes", "con.trace"])
@pytest.mark.parametrize("name", ["stdp", "mstdp"])
def test_stacking_sees_a_factor_read_as_another_dtype(name, source):
    """A rule's factor source given the same memory as another dtype of the same size
    (``x.data = x.data.view(torch.int32)``: pointer, sizes and strides unchanged) between two
    steps: the "auto" rule refills its factors as the "torch" rule does (the kernel's cached
    arguments are checked again), and the "native" rule refuses, naming the dtype."""
    (n_in, w_high, w_max, lr), batch, n_out = SMALL, 4, 20
    same_size = {torch.float32: torch.int32, torch.bool: torch.uint8}
    with torch_threads(1):
        nets = [Chain(batch, n_in, n_out, 3, w_high, 0.6) for _ in range(3)]
        rules = [
            make_rule(name, net.layers, backend, w_max, lr)
            for net, backend in zip(nets, ("torch", "auto", "native"))
        ]
        gen = torch.Generator().manual_seed(5)
        for t in range(6):
            x = torch.rand((batch, 1, n_in), generator=gen) < 0.3
            arguments = reward_for(name, gen, batch, torch.float32)
            for net, rule in zip(nets, rules):
                net(x)
                if t == 5:  # after the network's step, before the rule's
                    module, buffer = source.split(".")
                    tensor = getattr(getattr(net, module), buffer)
                    dtype = same_size[tensor.dtype]
                    tensor.data = tensor.data.view(dtype)
                if t < 5 or rule.backend != "native":
                    rule.update_state()
                    rule.step(*arguments)
            assert torch.equal(nets[0].con.weight, nets[1].con.weight), f"step {t}"
        assert not torch.equal(nets[0].con.weight, nets[2].con.weight)  # the last step moved
        with pytest.raises(NativeUnavailableError, match="not contiguous CPU tensors"):
            rules[2].update_state()
            rules[2].step(*arguments)


# -- two threads: within the rounding bound of the threaded product -----------------------------
class LiveConnection(Mapping):
    """A connection's live state, but with another weight: a second rule trains ``weight``
    from exactly the spikes and traces the network's own rule reads."""

    def __init__(self, connection, weight):
        self.connection, self.weight = connection, weight

    def __getitem__(self, key):
        return self.weight if key == "weight" else getattr(self.connection, key)

    def __iter__(self):
        return iter(("weight", "spikes", "trace"))

    def __len__(self):
        return 3


def factors(net, terms, dtype, reward=None):
    """``|P| (k, O)`` and ``|Q| (k, I)`` in float64, the stacked factors of ``terms``
    ``(pre_key, post_key, c)``: ``p_t = c·post`` in ``dtype`` (times a per-sample reward)."""
    batch, n_out = net.neuron.spikes.shape[0], net.con.weight.shape[0]
    p, q = [], []
    for pre_key, post_key, coef in terms:
        post = getattr(net.neuron, post_key).reshape(batch, n_out).to(dtype) * coef
        if reward is not None:
            post = post * reward.view(-1, 1)
        p.append(post.double().abs())
        q.append(getattr(net.con, pre_key)[:, 0].double().abs())
    return torch.cat(p).numpy(), torch.cat(q).numpy()


def product_bound(w_prev_abs, beta, alpha, p_abs, q_abs, eps, tiny):
    """Bound on the difference of two computations of ``beta·W + alpha·PᵀQ`` (module doc)."""
    k = p_abs.shape[0]
    return 2 * k * eps * (abs(beta) * w_prev_abs + abs(alpha) * (p_abs.T @ q_abs)) + (k + 2) * tiny


def assert_within_product_bound(got, expected, w, p, q, alpha, beta):
    """``got`` and ``expected`` (two computations of ``beta·w + alpha·pᵀq``, clamped or not)
    differ by at most :func:`product_bound` everywhere; returns the bound (a NumPy array)."""
    eps, tiny = torch.finfo(w.dtype).eps, torch.finfo(w.dtype).tiny
    w_abs, p_abs, q_abs = (t.double().abs().numpy() for t in (w, p, q))
    bound = product_bound(w_abs, beta, alpha, p_abs, q_abs, eps, tiny)
    error = (got.double() - expected.double()).abs().numpy()
    assert (error <= bound).all(), float((error / np.maximum(bound, tiny)).max())
    return bound


def soft_bound_step_bound(diff, w_abs, pot_pq, dep_pq, alpha, w_max, eps, tiny):
    """Bound after multiplicative STDP, ``W ← W − W·S + (w_max − w_min)·pot + w_min·S`` with
    ``pot``, ``dep`` products (beta 0, bounds ``e_pot``, ``e_dep``) and ``S = pot + dep``
    (``e_S = e_pot + e_dep + eps·|S|``): to first order the difference becomes
    ``|1 − S|·diff + (|W| + |w_min|)·e_S + (w_max − w_min)·e_pot`` plus the rounding of the
    three elementwise operations on both sides, ``≤ 4·eps·(|W| + |W·S| + (w_max −
    w_min)·|pot| + |w_min·S|)``; ``|pot| ≤ alpha·|P|ᵀ|Q|``, likewise ``|S|``."""
    pot = alpha * (pot_pq[0].T @ pot_pq[1])
    dep = alpha * (dep_pq[0].T @ dep_pq[1])
    e_pot = product_bound(0.0, 0.0, alpha, *pot_pq, eps, tiny)
    e_dep = product_bound(0.0, 0.0, alpha, *dep_pq, eps, tiny)
    s = pot + dep
    e_s = e_pot + e_dep + eps * s
    span = w_max - W_MIN
    rounding = 4 * eps * (w_abs + w_abs * s + span * pot + abs(W_MIN) * s)
    one_minus_s = np.maximum(1.0, s - 1.0)  # |1 − S| for S ≥ 0
    return one_minus_s * diff + (w_abs + abs(W_MIN)) * e_s + span * e_pot + rounding + tiny


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", RULES)
def test_backends_agree_within_the_rounding_bound_on_two_threads(calls, name, dtype):
    """A weight of 2048 × 7 = 14336 values on two threads, nine samples: ``|W_native − W_torch|`` stays
    within the accumulated rounding bound of the module docstring at every step; the bounds
    of the rule bind; the torch rule never calls a native helper."""
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    # B = 9: a depth of 9 per term > ORDERED_DEPTH, so the threaded BLAS product runs
    (n_in, w_high, w_max, lr), batch, n_out = BIG, 9, 7
    potentiate, depress = lr * A_PLUS, lr * A_MINUS
    with torch_threads(2):
        net = Chain(batch, n_in, n_out, 44, w_high, 0.6).to(dtype)
        shadow = net.con.weight.detach().clone()
        rule_torch = make_rule(name, net.layers, "torch", w_max, lr)
        connection = LiveConnection(net.con, shadow)
        shadow_layers = {"fc": {"connection": connection, "neuron": net.neuron, "type": "linear"}}
        rule_native = make_rule(name, shadow_layers, "native", w_max, lr)
        before = shadow.clone()
        diff = np.zeros((n_out, n_in))
        gen = torch.Generator().manual_seed(45)
        for t in range(12):
            x = torch.rand((batch, 1, n_in), generator=gen) < 0.3
            arguments = reward_for(name, gen, batch, dtype)
            net(x)
            w_abs = np.maximum(net.con.weight.double().abs().numpy(), shadow.double().abs().numpy())
            alpha = 1.0 / batch
            if name in ("stdp", "mstdp", "mstdp-per-sample"):
                gain, reward = lr, None
                if name == "mstdp":
                    gain = lr * arguments[0]
                elif name == "mstdp-per-sample":
                    reward = arguments[0]
                if name == "stdp":
                    terms = [("trace", "spikes", potentiate), ("spikes", "trace", -depress)]
                else:
                    terms = [
                        ("trace", "spikes", gain * A_PLUS),
                        ("spikes", "trace", -gain * A_MINUS),
                    ]
                pq = factors(net, terms, dtype, reward)
                diff = diff + product_bound(w_abs, 1.0, alpha, *pq, eps, tiny)
            elif name == "stdp-multiplicative":
                pot_pq = factors(net, [("trace", "spikes", potentiate)], dtype)
                dep_pq = factors(net, [("spikes", "trace", depress)], dtype)
                diff = soft_bound_step_bound(diff, w_abs, pot_pq, dep_pq, alpha, w_max, eps, tiny)
            step(rule_torch, arguments, calls, "torch")
            step(rule_native, arguments, calls, "native")
            error = (net.con.weight.double() - shadow.double()).abs().numpy()
            assert (error <= diff).all(), (
                f"step {t}: |W_native - W_torch| up to {error.max():.3g}, "
                f"{(error > diff).sum()} elements above the bound"
            )
    moved = (shadow.double() - before.double()).abs().max().item()
    assert moved > 0  # the weights did move
    assert diff.max() < 1e-3 * max(moved, w_max)  # and the bound is far below the changes
    if name != "fede" and name != "stdp-multiplicative":
        assert bool((shadow == w_max).any() or (shadow == W_MIN).any())  # the bounds bind
    assert not any(count for (owner, _), count in calls.items() if owner == "torch")
    assert (calls[("native", "product_bounded")] > 0) == uses_product_bounded(name)
    assert (calls[("native", "stack_terms")] > 0) == uses_stacking(name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("k", [2, 8, 64])
def test_rounding_bound_covers_another_summation_order(dtype, k):
    """The bound of :func:`product_bound` holds between ``addmm_`` and the same product summed
    term by term in reverse order (what a BLAS with another blocking may do), and is not
    vacuous: the two differ somewhere, by less than the bound."""
    gen = torch.Generator().manual_seed(k)
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    n_out, n_in, alpha, beta = 16, 512, 1.0 / 3.0, 1.0
    p = torch.randn(k, n_out, generator=gen, dtype=torch.float64).to(dtype)
    q = torch.rand(k, n_in, generator=gen, dtype=torch.float64).to(dtype)
    w = torch.randn(n_out, n_in, generator=gen, dtype=torch.float64).to(dtype) * 1e-2
    with torch_threads(1):
        expected = w.clone().addmm_(p.t(), q, beta=beta, alpha=alpha)
    acc = torch.zeros_like(w)
    for j in reversed(range(k)):
        acc += torch.outer(p[j], q[j])
    reordered = w * beta + acc * alpha
    error = (expected.double() - reordered.double()).abs().numpy()
    w_abs, p_abs, q_abs = (t.double().abs().numpy() for t in (w, p, q))
    bound = product_bound(w_abs, beta, alpha, p_abs, q_abs, eps, tiny)
    assert (error <= bound).all(), float((error / bound).max())
    assert error.max() > 0


# -- the backend attribute and its errors -------------------------------------------------------
def linear_layers(batch=3, n_in=6, n_out=4, delay=1):
    return Chain(batch, n_in, n_out, 1, 0.5, 0.6, delay).layers


class ConvChain(SNNNetwork):
    def __init__(self):
        super().__init__()
        self.con = Conv2d(2, 3, (3, 3), (6, 5), 2, 1.0, 1, (2, 2), (1, 1))
        self.neuron = IFNeuron((2, 3, 3, 3), 1.5, 0.0, 1.0, 0.7, 1.0, 0.0, 0.6)
        self.add_layer("conv", self.con, self.neuron)


@pytest.mark.parametrize("name", RULES)
def test_backend_is_validated_settable_and_in_the_repr(name):
    rule = make_rule(name, linear_layers(), "torch")
    assert rule.backend == "torch"
    assert "backend='torch'" in repr(rule)
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'torch', 'native'"):
        make_rule(name, linear_layers(), "cuda")
    with pytest.raises(ValueError, match="got 'Native'"):
        rule.backend = "Native"
    with pytest.raises(ValueError, match="got None"):
        rule.backend = None
    assert rule.backend == "torch"  # unchanged by a rejected value
    rule.backend = "auto"
    assert rule.backend == "auto" and "backend='auto'" in repr(rule)
    assert make_rule(name, linear_layers(), "auto").backend == "auto"


def test_default_backend_is_auto_and_keyword_only():
    layers = linear_layers()
    assert STDP(layers, 0.1, 1.0, 0.5).backend == "auto"
    assert LearningRule(layers, {}).backend == "auto"
    with pytest.raises(TypeError):
        STDP(layers, 0.1, 1.0, 0.5, 0.0, 1.0, "additive", "torch")
    with pytest.raises(ValueError, match="LearningRule: backend must be"):
        LearningRule(layers, {}, backend="numpy")


@needs_native
@pytest.mark.parametrize("name", ["stdp", "stdp-multiplicative", "mstdp", "mstdpet"])
def test_native_backend_rejects_conv2d_layers(name):
    net = ConvChain()
    with pytest.raises(NativeUnavailableError, match="layer 'conv' is a Conv2d connection"):
        make_rule(name, net.layers, "native")
    rule = make_rule(name, net.layers, "auto")
    with pytest.raises(NativeUnavailableError, match=r"backend='native' cannot run.*Conv2d"):
        rule.backend = "native"
    assert rule.backend == "auto"


@pytest.mark.parametrize("name", RULES)
def test_native_backend_raises_when_the_kernels_are_off(name):
    """Switched off process-wide (``native.disabled()``, or ``PYSNN_NATIVE=0``, or not built):
    a native rule cannot be made, and one made before raises at its next step."""
    message = "switched off process-wide|is not built"
    if native.enabled():
        layers = linear_layers()
        rule = make_rule(name, layers, "native")
        arguments = reward_for(name, torch.Generator().manual_seed(0), 3, torch.float32)
        with native.disabled():
            with pytest.raises(NativeUnavailableError, match=message):
                make_rule(name, layers, "native")
            with pytest.raises(NativeUnavailableError, match=message):
                rule.update_state()
                rule.step(*arguments)
        rule.update_state()  # works again once the kernels are back
        rule.step(*arguments)
    else:
        with pytest.raises(NativeUnavailableError, match=message):
            make_rule(name, linear_layers(), "native")
    make_rule(name, linear_layers(), "torch").step(
        *reward_for(name, torch.Generator().manual_seed(0), 3, torch.float32)
    )


@needs_native
@pytest.mark.parametrize("name", ["stdp", "mstdp", "mstdpet"])
def test_native_backend_rejects_per_synapse_delays(name):
    layers = linear_layers(delay=torch.randint(0, 3, (4, 6), generator=torch.Generator()))
    rule = make_rule(name, layers, "native")
    arguments = reward_for(name, torch.Generator().manual_seed(0), 3, torch.float32)
    with pytest.raises(NativeUnavailableError, match="layer 'fc'.*per-synapse delays"):
        rule.update_state()
        rule.step(*arguments)


@needs_native
@pytest.mark.parametrize("name", ["stdp", "mstdp"])
def test_native_backend_rejects_float16(name):
    """State-dict layers of float16 tensors: the kernels take float32 and float64 only;
    "auto" runs PyTorch."""
    batch, n_in, n_out = 2, 5, 3

    def layers():
        options = dict(dtype=torch.float16)
        pre = (torch.rand(batch, 1, n_in) < 0.5).expand(batch, n_out, n_in)
        trace = torch.rand(batch, 1, n_in).to(**options).expand(batch, n_out, n_in)
        connection = {"weight": torch.rand(n_out, n_in, **options), "spikes": pre, "trace": trace}
        neuron = {
            "spikes": torch.rand(batch, 1, n_out) < 0.5,
            "trace": torch.rand(batch, 1, n_out).to(**options),
        }
        return {"fc": {"connection": connection, "neuron": neuron, "type": "linear"}}

    arguments = (0.5,) if name == "mstdp" else ()
    rule = make_rule(name, layers(), "native")
    with pytest.raises(NativeUnavailableError, match="layer 'fc'.*float16"):
        rule.step(*arguments)
    make_rule(name, layers(), "torch").step(*arguments)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@needs_native
def test_native_backend_rejects_cuda():
    net = Chain(3, 6, 4, 1, 0.5, 0.6).cuda()
    rule = STDP(net.layers, 0.1, 1.0, 0.5, backend="native")
    net(torch.rand(3, 1, 6, device="cuda") < 0.5)
    with pytest.raises(NativeUnavailableError, match="layer 'fc'.*cuda"):
        rule.step()


@needs_native
def test_auto_backend_uses_the_kernels_where_they_apply(calls):
    net = Chain(3, 6, 4, 1, 0.5, 0.6)
    rule = STDP(net.layers, 0.1, 1.0, 0.5)
    net(torch.rand(3, 1, 6) < 0.5)
    step(rule, (), calls, "auto")
    assert calls[("auto", "stack_terms")] == 1
    conv = ConvChain()
    rule = STDP(conv.layers, 0.1, 1.0, 0.5)  # Conv2d: PyTorch, no error
    calls.clear()
    rule.step()
    assert not calls


# -- the event-driven terms of the threaded product ------------------------------------------
def sparse_factors(gen, depth, n, density, dtype, kind):
    """``(depth, n)`` factors with about ``density`` of them nonzero: traces in (0, 1), spikes 1,
    or signed values."""
    values = torch.rand(depth, n, generator=gen, dtype=torch.float64)
    if kind == "signed":
        values = values - 0.5
    elif kind == "spikes":
        values = torch.ones(depth, n, dtype=torch.float64)
    keep = torch.rand(depth, n, generator=gen) < density
    return (values * keep).to(dtype)


def addmm_reference(w, p, q, alpha, beta, low, high):
    with torch_threads(1):
        expected = w.clone().addmm_(p.t(), q, beta=beta, alpha=alpha)
    return expected.clamp_(low, high) if low is not None else expected


needs_threaded_product = pytest.mark.skipif(
    not (native.enabled() and native._extension.openmp and native._blas_gemm(torch.float32)),
    reason="the threaded product needs the kernels, OpenMP and the BLAS",
)


@needs_threaded_product
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("density", [0.0, 0.01, 0.05, 0.2])
@pytest.mark.parametrize("crossover", [math.inf, None, -1.0], ids=["events", "default", "blas"])
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_event_driven_terms_are_within_the_rounding_bound(dtype, density, crossover, beta):
    """``product_bounded`` with its terms taken event-driven (all of them, those its crossover
    picks, none) gives ``clamp(beta·W + alpha·PᵀQ)`` of ``addmm_`` within the rounding bound of
    the threaded product, for factor densities 0–20 % (pair STDP at batch 16: 32 terms); the
    values that the bounds clip are exactly the bounds."""
    gen = torch.Generator().manual_seed(int(density * 100) + 3)
    depth, n_out, n_in, alpha, low, high = 32, 120, 300, 1.0 / 16, 0.0, 0.5
    # a pair-STDP mix: 16 rows of spikes ⊗ traces, then 16 of traces ⊗ spikes
    p = torch.cat(
        [
            sparse_factors(gen, 16, n_out, density / 4, dtype, "spikes"),
            sparse_factors(gen, 16, n_out, 4 * density, dtype, "signed"),
        ]
    )
    q = torch.cat(
        [
            sparse_factors(gen, 16, n_in, 4 * density, dtype, "traces"),
            sparse_factors(gen, 16, n_in, density, dtype, "spikes"),
        ]
    )
    w = (torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) * 0.6 - 0.05).to(dtype)
    w[3, 7], w[5, 9] = 1.5, -0.2  # out of bounds where no event lands: clamped all the same
    p[:, 3], p[:, 5] = 0.0, 0.0
    expected = addmm_reference(w, p, q, alpha, beta, low, high)
    got = w.clone()
    with torch_threads(2):
        taken = native.product_bounded(got, p, q, alpha, beta, low, high, crossover)
    nonzero_terms = int((((p != 0).sum(1) > 0) & ((q != 0).sum(1) > 0)).sum())
    if crossover == -1.0:
        assert taken == 1
    elif crossover == math.inf:
        assert taken == 1 + nonzero_terms  # every term with a product, event-driven
    bound = assert_within_product_bound(got, expected, w, p, q, alpha, beta)
    assert float(got.min()) >= low and float(got.max()) <= high
    assert got[3, 7] == high and got[5, 9] == low
    clipped = (expected == low) | (expected == high)
    inside = (got > low) & (got < high)
    # a value the reference clips may land a rounding away inside; none lands far inside
    assert bool(
        (got[clipped & inside].double() - expected[clipped & inside].double())
        .abs()
        .le(torch.from_numpy(bound)[clipped & inside])
        .all()
    )


@needs_threaded_product
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("bounds", [(0.0, 0.5), (None, None)], ids=["clamped", "unbounded"])
def test_crowded_terms_among_sparse_ones_go_to_the_blas_alone(dtype, bounds):
    """Crowded terms (1, 4, 5 and 9 of 12) among sparse ones: the BLAS takes those four alone
    (their factors gathered), every sparse term with a product is event-driven, even between
    crowded ones, and the update is ``addmm_``'s within the rounding bound."""
    gen = torch.Generator().manual_seed(17)
    n_out, n_in, alpha, beta = 100, 300, -1.0 / 8, 1.0
    crowded = {1, 4, 5, 9}
    p_rows, q_rows = [], []
    for term in range(12):
        density = 0.6 if term in crowded else 0.03
        p_rows.append(sparse_factors(gen, 1, n_out, density, dtype, "traces"))
        q_rows.append(sparse_factors(gen, 1, n_in, density, dtype, "spikes"))
    p_rows[7].zero_()  # a term without a product: neither path takes it
    p, q = torch.cat(p_rows), torch.cat(q_rows)
    products = (p != 0).sum(1) * (q != 0).sum(1)
    limit = native.PRODUCT_EVENT_CROSSOVER * n_out * n_in
    assert {int(j) for j in torch.nonzero(products > limit)} == crowded
    sparse_with_products = int(((products > 0) & (products <= limit)).sum())
    assert sparse_with_products == 7
    w = (torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) * 0.6 - 0.05).to(dtype)
    expected = addmm_reference(w, p, q, alpha, beta, *bounds)
    got = w.clone()
    with torch_threads(2):
        taken = native.product_bounded(got, p, q, alpha, beta, *bounds)
    assert taken == 1 + sparse_with_products
    assert_within_product_bound(got, expected, w, p, q, alpha, beta)


@needs_threaded_product
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_a_few_sparse_terms_between_crowded_ones_go_to_the_blas_with_them(dtype):
    """Terms 2-19 of 20 crowded but for term 10: under 1/``BLAS_ABSORBS_BELOW`` (1/8) of the
    BLAS's terms lie between its first and last, so the BLAS takes the whole range (term 10
    included, no factors copied) and only terms 0 and 1, outside it, are event-driven; the
    update is ``addmm_``'s within the rounding bound."""
    gen = torch.Generator().manual_seed(23)
    n_out, n_in, alpha, beta, depth = 100, 300, 1.0 / 16, 1.0, 20
    sparse = {0, 1, 10}
    p_rows, q_rows = [], []
    for term in range(depth):
        density = 0.03 if term in sparse else 0.6
        p_rows.append(sparse_factors(gen, 1, n_out, density, dtype, "traces"))
        q_rows.append(sparse_factors(gen, 1, n_in, density, dtype, "spikes"))
    p, q = torch.cat(p_rows), torch.cat(q_rows)
    products = (p != 0).sum(1) * (q != 0).sum(1)
    limit = native.PRODUCT_EVENT_CROSSOVER * n_out * n_in
    assert {int(j) for j in torch.nonzero((products > 0) & (products <= limit))} == sparse
    assert 1 * native._extension.constants()["BLAS_ABSORBS_BELOW"] < depth - len(
        sparse
    )  # term 10 absorbed
    w = (torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) * 0.6).to(dtype)
    expected = addmm_reference(w, p, q, alpha, beta, 0.0, 1.0)
    got = w.clone()
    with torch_threads(2):
        taken = native.product_bounded(got, p, q, alpha, beta, 0.0, 1.0)
    assert taken == 1 + 2  # terms 0 and 1
    assert_within_product_bound(got, expected, w, p, q, alpha, beta)


def exact_factors(gen, counts, n, dtype):
    """``(len(counts), n)`` factors in (0.1, 1) with exactly ``counts[j]`` nonzero in row j."""
    rows = torch.zeros(len(counts), n, dtype=torch.float64)
    for j, count in enumerate(counts):
        where = torch.randperm(n, generator=gen)[:count]
        rows[j, where] = 0.1 + 0.9 * torch.rand(count, generator=gen, dtype=torch.float64)
    return rows.to(dtype)


@needs_threaded_product
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("crowded_columns", [20, 300], ids=["just_over", "dense"])
def test_terms_just_over_the_crossover_go_to_the_events_when_the_blas_would_cost_more(
    dtype, crowded_columns
):
    """Terms 5 and 6 of 16 over the crossover, the others sparse. Where the two hold at most
    ``(2 + PRODUCT_BLAS_FIXED_TERMS) · crossover · O · I`` products (20 columns each), the
    BLAS's fixed cost outweighs them and every term is event-driven; where they are dense (300
    columns), the BLAS takes those two alone. Both within ``addmm_``'s rounding bound."""
    gen = torch.Generator().manual_seed(29)
    n_out, n_in, alpha, beta = 100, 300, 1.0 / 16, 1.0
    crowded = {5, 6}
    p = exact_factors(gen, [80 if j in crowded else 4 for j in range(16)], n_out, dtype)
    q = exact_factors(gen, [crowded_columns if j in crowded else 6 for j in range(16)], n_in, dtype)
    products = (p != 0).sum(1) * (q != 0).sum(1)
    limit = native.PRODUCT_EVENT_CROSSOVER * n_out * n_in
    assert {int(j) for j in torch.nonzero(products > limit)} == crowded
    blas_products = float(products[sorted(crowded)].sum())
    fixed = native.PRODUCT_BLAS_FIXED_TERMS
    all_events = blas_products <= (len(crowded) + fixed) * limit
    assert all_events == (crowded_columns == 20)
    w = (torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) * 0.6).to(dtype)
    expected = addmm_reference(w, p, q, alpha, beta, 0.0, 1.0)
    got = w.clone()
    with torch_threads(2):
        taken = native.product_bounded(got, p, q, alpha, beta, 0.0, 1.0)
    assert taken == 1 + (16 if all_events else 16 - len(crowded))
    assert_within_product_bound(got, expected, w, p, q, alpha, beta)
    # without the fixed cost, the BLAS takes the terms over the crossover, however few
    got = w.clone()
    with torch_threads(2):
        taken = native.product_bounded(got, p, q, alpha, beta, 0.0, 1.0, None, -math.inf)
    assert taken == 1 + 16 - len(crowded)
    assert_within_product_bound(got, expected, w, p, q, alpha, beta)


def events_reference(w, p, q, alpha, low, high, transposed=False):
    """A NumPy loop of the event-driven update: every term in order, each value of ``w`` with a
    nonzero row factor (``p[j, o]``; ``q[j, i]`` for a weight stored transposed) adding
    ``(row factor · alpha) · other factor`` in the dtype of ``w``, then the bounds."""
    out, p_np, q_np = w.numpy().copy(), p.numpy(), q.numpy()
    a = out.dtype.type(alpha)
    for j in range(p_np.shape[0]):
        if transposed:
            row_factor, other = q_np[j][None, :], p_np[j][:, None]
        else:
            row_factor, other = p_np[j][:, None], q_np[j][None, :]
        update = (row_factor * a) * other
        out = np.where(row_factor != 0, out + update, out)
    return np.minimum(np.maximum(out, out.dtype.type(low)), out.dtype.type(high))


@needs_threaded_product
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_event_driven_terms_match_a_numpy_loop_in_both_layouts(dtype, layout):
    """Every term event-driven (crossover inf), crowded ones (presynaptic traces, 60 % of their
    factors nonzero) and sparse ones (spikes, 3 %): the NumPy loop's numbers bit for bit; a
    weight stored transposed (strides (1, O)) takes the same kernel on its memory (it fell back
    to ``addmm_`` before), each value adding ``(q·alpha)·p``, also bit for bit."""
    gen = torch.Generator().manual_seed(23)
    n_out, n_in, alpha, low, high = 90, 210, -1.0 / 16, 0.0, 0.5
    p = torch.cat(
        [
            sparse_factors(gen, 8, n_out, 0.05, dtype, "spikes"),
            sparse_factors(gen, 8, n_out, 0.6, dtype, "traces"),
        ]
    )
    q = torch.cat(
        [
            sparse_factors(gen, 8, n_in, 0.6, dtype, "traces"),
            sparse_factors(gen, 8, n_in, 0.03, dtype, "spikes"),
        ]
    )
    w = (torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) * 0.4 + 0.05).to(dtype)
    w[4, 11] = 0.9  # out of bounds: clamped though no event may land there
    transposed = layout == "transposed"
    got = torch.empty(n_in, n_out, dtype=dtype).t() if transposed else torch.empty_like(w)
    got.copy_(w)
    with torch_threads(2):
        taken = native.product_bounded(got, p, q, alpha, 1.0, low, high, math.inf)
    assert taken == 1 + int((((p != 0).sum(1) > 0) & ((q != 0).sum(1) > 0)).sum())
    assert got.stride() == ((1, n_out) if transposed else (n_in, 1))
    expected = events_reference(w, p, q, alpha, low, high, transposed)
    assert np.array_equal(got.numpy(), expected)
    assert float(got[4, 11]) == high


@needs_threaded_product
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_event_driven_terms_keep_nan_and_leave_non_finite_factors_to_the_blas(dtype):
    gen = torch.Generator().manual_seed(9)
    depth, n_out, n_in = 32, 64, 200
    p = sparse_factors(gen, depth, n_out, 0.02, dtype, "traces")
    q = sparse_factors(gen, depth, n_in, 0.02, dtype, "spikes")
    w = torch.rand(n_out, n_in, generator=gen, dtype=dtype) * 0.5
    w[1, 2] = float("nan")
    got = w.clone()
    with torch_threads(2):
        assert native.product_bounded(got, p, q, 0.1, 1.0, 0.0, 1.0, math.inf) > 1
    assert bool(torch.isnan(got[1, 2])) and int(torch.isnan(got).sum()) == 1
    # an inf factor: 0·inf is NaN in addmm_, so the BLAS takes every term and gives it
    q[0, 5] = float("inf")
    got = w.clone()
    with torch_threads(2):
        assert native.product_bounded(got, p, q, 0.1, 1.0, None, None, math.inf) == 1
    expected = addmm_reference(w, p, q, 0.1, 1.0, None, None)
    assert torch.equal(torch.isnan(got), torch.isnan(expected))
    # beta 0 ignores what out held (NaN included), as the BLAS does
    got = w.clone()
    q[0, 5] = 0.0
    with torch_threads(2):
        assert native.product_bounded(got, p, q, 0.1, 0.0, None, None, math.inf) > 1
    expected = addmm_reference(torch.zeros_like(w), p, q, 0.1, 0.0, None, None)
    assert not bool(torch.isnan(got).any())
    torch.testing.assert_close(got, expected, rtol=4 * depth * torch.finfo(dtype).eps, atol=0)
