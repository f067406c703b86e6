r"""Reusable pieces of unsupervised spiking classifiers, and the Diehl & Cook (2015) network.

The network of Diehl & Cook (2015, *Unsupervised learning of digit recognition using
spike-timing-dependent plasticity*) learns without labels: Poisson inputs drive excitatory
neurons with an adaptive threshold through plastic synapses (STDP), lateral inhibition makes the
neurons compete, each neuron's incoming weights are normalised to a fixed sum, and the neurons
become prototypes of the input classes. Labels are used only afterwards, to name each neuron
after the class it answers most (:func:`assign_labels`) and to classify a sample by the vote of
the neurons (:func:`vote`).

The helpers work on any network:

* :func:`normalize_weights` — per-neuron sum of incoming weights set to a constant, in place;
* :func:`lateral_inhibition` — a :class:`~pysnn.connection.Linear` connection from a layer to
  itself with negative off-diagonal weights (winner-take-all competition);
* :func:`present` — Poisson presentation loop with optional learning, returning spike counts;
* :func:`assign_labels`, :func:`vote`, :func:`confusion_matrix` — the label-free evaluation;
* :class:`DiehlCook2015` — the network itself, batched: each sample of the batch is an
  independent network state (inhibition acts within a sample), the adaptive thresholds and the
  weights are shared by the batch.

Times are in ms, rates in Hz, voltages and weights in arbitrary units (the rest voltage is 0).
"""

import math
from collections import OrderedDict
from numbers import Integral, Real
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from pysnn import functional as sf
from pysnn import native
from pysnn.connection import Linear
from pysnn.distributed import _check_group, gather_batch
from pysnn.encoding import _poisson_trains
from pysnn.network import SNNNetwork
from pysnn.neuron import AdaptiveLIFNeuron, Input
from pysnn.utils import _check_positive_int, _check_positive_real, _check_real

__all__ = [
    "normalize_weights",
    "lateral_inhibition",
    "present",
    "assign_labels",
    "vote",
    "confusion_matrix",
    "DiehlCook2015",
]

Dims = Union[int, Sequence[int]]


def _check_tensor(value: Any, name: str, owner: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _check_n_classes(n_classes: Any, owner: str) -> int:
    return _check_positive_int(n_classes, "n_classes", owner)


def _counts_matrix(spike_counts: Any, owner: str) -> Tensor:
    """Spike counts ``(S, ...)`` as a float ``(S, N)`` matrix (neurons flattened)."""
    counts = _check_tensor(spike_counts, "spike_counts", owner)
    if counts.dim() < 2:
        raise ValueError(
            f"{owner}: spike_counts must be (S, N) or (S, ..., N) with the samples first, "
            f"got shape {tuple(counts.shape)}"
        )
    if counts.dtype == torch.bool or counts.is_complex():
        raise TypeError(f"{owner}: spike_counts must be real numbers, got {counts.dtype}")
    counts = counts.reshape(counts.shape[0], -1)
    return counts if counts.is_floating_point() else counts.to(torch.get_default_dtype())


def _class_indices(labels: Any, name: str, n: int, n_classes: int, owner: str, low: int) -> Tensor:
    """An integer vector of ``n`` values in ``[low, n_classes)``, as int64."""
    labels = _check_tensor(labels, name, owner)
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"{owner}: {name} must hold integers, got {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{owner}: {name} must have shape ({n},), got {tuple(labels.shape)}")
    labels = labels.to(torch.int64)
    if n and (int(labels.min()) < low or int(labels.max()) >= n_classes):
        lowest = "-1 (no class)" if low < 0 else "0"
        raise ValueError(
            f"{owner}: {name} must lie in [{lowest}, n_classes - 1 = {n_classes - 1}], got "
            f"values from {int(labels.min())} to {int(labels.max())}"
        )
    return labels


# -- weights and connections ---------------------------------------------------------------------
def normalize_weights(weight: Tensor, total: Union[float, Tensor], dim: Dims = 1) -> Tensor:
    r"""Scale each neuron's incoming weights so that they sum to ``total``, in place.

    :math:`W_{o\cdot} \leftarrow W_{o\cdot} \cdot \mathrm{total} / \sum_i W_{oi}` — Diehl & Cook's
    normalisation, which keeps competition fair: no neuron wins merely by having grown larger
    weights. A neuron whose weights sum to 0 is left unchanged (nothing to scale). Runs on the
    weight's device without host synchronisation.

    On the CPU each neuron's sum is :func:`pysnn.functional.pairwise_sum` over its weights
    (the summed axes flattened in their order), an order fixed here, so that the C twin
    (:func:`pysnn.native.normalize_rows`, for a number ``total`` and a contiguous weight summed
    over its trailing axes, or a 2-D one stored transposed) gives the same numbers in one pass
    over the weight; on other
    devices it is ``Tensor.sum``. The scale is ``total / sum`` as PyTorch divides a number by a
    tensor.

    :param weight: weights to normalise, e.g. a Linear weight ``(O, I)`` (``dim=1``) or a Conv2d
        weight ``(C_out, C_in, kh, kw)`` (``dim=(1, 2, 3)``); a ``Parameter`` is fine.
    :param total: the sum each neuron gets (weight units): a number, or a tensor broadcastable
        to the summed shape (one total per neuron).
    :param dim: the axis or axes summed per neuron (the fan-in).
    :returns: ``weight``, normalised in place.
    :raises TypeError: ``weight`` is not a floating tensor, ``dim`` not an int/sequence of ints.
    :raises ValueError: ``total`` is not finite and > 0, ``dim`` out of range or repeated.
    """
    owner = "normalize_weights"
    weight = _check_tensor(weight, "weight", owner)
    if not weight.is_floating_point():
        raise TypeError(f"{owner}: weight must be a floating tensor, got {weight.dtype}")
    if isinstance(dim, Integral) and not isinstance(dim, bool):
        dims: Tuple[int, ...] = (int(dim),)
    elif (
        isinstance(dim, (tuple, list))
        and dim
        and all(isinstance(d, Integral) and not isinstance(d, bool) for d in dim)
    ):
        dims = tuple(int(d) for d in dim)
    else:
        raise TypeError(f"{owner}: dim must be an int or a non-empty sequence of ints, got {dim!r}")
    if any(not -weight.dim() <= d < weight.dim() for d in dims):
        raise ValueError(
            f"{owner}: dim {dims} out of range for a weight of shape {tuple(weight.shape)}"
        )
    summed = tuple(sorted({d % weight.dim() for d in dims}))
    if len(summed) != len(dims):
        raise ValueError(f"{owner}: dim {dims} names an axis more than once")
    if isinstance(total, Tensor) and total.numel() > 1:
        if not bool((torch.isfinite(total) & (total > 0)).all()):
            raise ValueError(f"{owner}: total must be finite and > 0 everywhere")
        total = total.to(device=weight.device, dtype=weight.dtype)
    else:
        total = _check_real(total, "total", owner, low=0.0, low_open=True)
    values = weight.detach()  # the same memory, scaled in place without autograd
    n_kept = weight.dim() - len(summed)
    if (
        summed == tuple(range(n_kept, weight.dim()))  # the trailing axes
        and isinstance(total, float)
        and values.numel() > 0
    ):
        if values.is_contiguous():
            neurons = math.prod(values.shape[:n_kept])  # 1 when every axis is summed
            if native.normalize_rows(values.view(neurons, -1), total):
                return weight
        elif values.dim() == 2 and n_kept == 1 and native.normalize_rows(values, total):
            return weight  # stored transposed, read in place
    sums = _neuron_sums(values, summed)
    values.mul_(torch.where(sums != 0, total / sums, torch.ones_like(sums)))
    return weight


def _neuron_sums(weight: Tensor, summed: Tuple[int, ...]) -> Tensor:
    """``weight`` summed over the axes ``summed`` (ascending), kept as size 1: on the CPU
    :func:`~pysnn.functional.pairwise_sum` over them flattened in order, elsewhere
    ``Tensor.sum``."""
    if not weight.is_cpu:
        return weight.sum(dim=summed, keepdim=True)
    last = tuple(range(weight.dim() - len(summed), weight.dim()))
    moved = weight.movedim(summed, last)
    kept = moved.shape[: weight.dim() - len(summed)]
    sums = sf.pairwise_sum(moved.reshape(*kept, -1))  # kept + (1,)
    return sums.view(*kept, *(1,) * len(summed)).movedim(last, summed)


def lateral_inhibition(
    n: int,
    strength: float,
    batch_size: int,
    dt: float,
    *,
    delay: int = 0,
    reduction: str = "sum",
) -> Linear:
    r"""A connection from a layer of ``n`` neurons to itself: every neuron inhibits all others.

    ``W = -strength · (1 - I)``: a spike of neuron :math:`j` lowers the input of every other
    neuron by ``strength`` and leaves its own untouched. Feed it the layer's spikes of the
    previous step (its ``spikes`` buffer, before the layer's step) and give both this
    connection's output and the excitatory input to the neuron as a list (see
    :meth:`pysnn.neuron.BaseNeuron.fold`). A strength several times the threshold gap gives a
    winner-take-all layer. The weights are ordinary: train them or not as you like.

    :param n: number of neurons of the layer.
    :param strength: inhibition per spike (voltage units, >= 0).
    :param batch_size: B; each sample inhibits only within itself.
    :param dt: time step in ms.
    :param delay: keyword-only, synaptic delay in steps (int >= 0).
    :param reduction: keyword-only, ``"sum"`` (default: output ``(B, 1, n, 1)``, fast) or
        ``"none"`` (``(B, 1, n, n)``, PySNN's layout).
    :returns: a :class:`~pysnn.connection.Linear` ``(n → n)`` with weight ``(n, n)``.
    :raises ValueError: ``strength`` < 0 or not finite (other arguments as ``Linear``).
    """
    owner = "lateral_inhibition"
    n = _check_positive_int(n, "n", owner)
    strength = _check_real(strength, "strength", owner, low=0.0)
    connection = Linear(n, n, batch_size, dt, delay, reduction=reduction)
    with torch.no_grad():
        connection.weight.fill_(-strength).fill_diagonal_(0.0)
    return connection


# -- presentation --------------------------------------------------------------------------------
def present(
    network: nn.Module,
    rates: Tensor,
    duration: float,
    dt: float,
    *,
    learning_rule: Any = None,
    after_step: Optional[Callable[[], None]] = None,
    generator: Optional[torch.Generator] = None,
    reset: bool = True,
) -> Tensor:
    """Show Poisson spike trains of the given rates to a network and count its output spikes.

    Encodes ``rates`` with :func:`pysnn.encoding.poisson_encoding`, optionally calls
    ``network.reset_state()``, then for each of the ``T = duration / dt`` steps:
    ``out = network(spikes_t)`` (first element if it returns a tuple), adds ``out`` to the counts,
    then ``learning_rule.update_state()`` and ``learning_rule.step()`` if a rule is given, then
    ``after_step()`` (e.g. a weight normalisation). Everything runs under
    :func:`torch.no_grad`. Unlike :func:`pysnn.simulation.run`, the per-step outputs are not
    kept: only their running sum (no ``(..., T)`` output tensor). Bool outputs are tallied in
    bytes and added to the counts every 255 steps, which gives the same counts (integers) at a
    quarter of the cost per step.

    :param network: a module whose forward takes one time slice of shape ``rates.shape``.
    :param rates: firing rates in Hz, e.g. ``(B, 1, I)``, on the network's device.
    :param duration: presentation time in ms.
    :param dt: time step in ms.
    :param learning_rule: keyword-only; an object with ``update_state()`` and ``step()`` (e.g.
        :class:`pysnn.learning.STDP`), or ``None`` (no learning).
    :param after_step: keyword-only; called without arguments after each step (after learning).
    :param generator: keyword-only; :class:`torch.Generator` for the Poisson spikes.
    :param reset: keyword-only; call ``network.reset_state()`` first (a rest between samples).
    :returns: spike counts per output neuron, float, of the output's shape (e.g. ``(B, 1, N)``).
    :raises TypeError: a network that is not callable, a rule without the methods, an output
        that is not a tensor.
    """
    owner = "present"
    if not callable(network):
        raise TypeError(f"{owner}: network must be a callable module, got {type(network).__name__}")
    if learning_rule is not None and not all(
        callable(getattr(learning_rule, method, None)) for method in ("update_state", "step")
    ):
        raise TypeError(
            f"{owner}: learning_rule must have update_state() and step() methods, "
            f"got {type(learning_rule).__name__}"
        )
    if after_step is not None and not callable(after_step):
        raise TypeError(f"{owner}: after_step must be callable, got {type(after_step).__name__}")
    if not isinstance(reset, bool):
        raise TypeError(f"{owner}: reset must be a bool, got {reset!r}")
    # Time first and contiguous, so each step reads one contiguous slice.
    spikes = _poisson_trains(
        _check_tensor(rates, "rates", owner), duration, dt, generator, time_first=True
    )
    if reset:
        reset_state = getattr(network, "reset_state", None)
        if callable(reset_state):
            reset_state()
    counts: Optional[Tensor] = None
    # Bool spikes are tallied in bytes (a byte add is a quarter of the cost of adding bool to
    # float) and the tally added to the counts every 255 steps: integers, so the counts are
    # those of adding each step's spikes, exactly (up to 2**24 steps in float32).
    tally: Optional[Tensor] = None
    pending = 0
    with torch.no_grad():
        for spikes_t in spikes:
            result = network(spikes_t)
            out = result[0] if isinstance(result, (tuple, list)) else result
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"{owner}: the network's forward must return a tensor or a tuple starting "
                    f"with one, got {type(out).__name__}"
                )
            if counts is None:
                dtype = out.dtype if out.is_floating_point() else torch.get_default_dtype()
                counts = torch.zeros(out.shape, dtype=dtype, device=out.device)
                if out.dtype is torch.bool and dtype in _TALLIED and len(spikes) < 2**24:
                    tally = torch.zeros(out.shape, dtype=torch.uint8, device=out.device)
            if tally is not None and out.dtype is torch.bool and out.shape == tally.shape:
                tally.add_(out.view(torch.uint8))
                pending += 1
                if pending == _TALLY_STEPS:
                    counts.add_(tally)
                    tally.zero_()
                    pending = 0
            else:
                if pending:  # another kind of output: the tally ends here, the counts go on
                    counts.add_(tally)
                    pending = 0
                tally = None
                counts.add_(out)
            if learning_rule is not None:
                learning_rule.update_state()
                learning_rule.step()
            if after_step is not None:
                after_step()
    if pending:
        counts.add_(tally)
    return counts


#: The count dtypes in which :func:`present` tallies bool spikes in bytes first (integers up to
#: 2**24 are exact in both), and the most steps one byte holds.
_TALLIED = (torch.float32, torch.float64)
_TALLY_STEPS = 255


# -- labels, votes, scores -----------------------------------------------------------------------
def assign_labels(spike_counts: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    r"""Name each neuron after the class it answers most: Diehl & Cook's label assignment.

    For neuron :math:`n` and class :math:`c`, the mean response is
    :math:`r_{cn} = \frac{1}{|S_c|}\sum_{s \in S_c} \mathrm{counts}_{sn}` over the samples
    :math:`S_c` of class :math:`c`; the neuron's label is :math:`\arg\max_c r_{cn}` (the lowest
    class on ties). Classes without any sample are never chosen; a neuron that never spiked gets
    ``-1`` (no label) and is ignored by :func:`vote`.

    :param spike_counts: ``(S, N)`` spike counts (or ``(S, ..., N)``, flattened after the sample
        axis), e.g. the stacked outputs of :func:`present`.
    :param labels: ``(S,)`` integer classes in ``[0, n_classes)``.
    :param n_classes: number of classes C.
    :returns: ``(N,)`` int64 labels in ``[-1, C)``, on the device of ``spike_counts``.
    :raises TypeError: non-tensor or non-integer labels, bool counts.
    :raises ValueError: shapes that do not match, labels out of range.
    """
    owner = "assign_labels"
    n_classes = _check_n_classes(n_classes, owner)
    counts = _counts_matrix(spike_counts, owner)
    labels = _class_indices(labels, "labels", counts.shape[0], n_classes, owner, low=0)
    labels = labels.to(counts.device)
    one_hot = torch.zeros(counts.shape[0], n_classes, dtype=counts.dtype, device=counts.device)
    one_hot.scatter_(1, labels.unsqueeze(1), 1.0)
    totals = one_hot.t() @ counts  # (C, N)
    n_samples = one_hot.sum(0)  # (C,)
    mean = totals / n_samples.clamp(min=1).unsqueeze(1)
    # An absent class scores -1 < any mean count, so it never wins.
    mean = torch.where(n_samples.unsqueeze(1) > 0, mean, torch.full_like(mean, -1.0))
    assignments = mean.argmax(0)
    silent = counts.sum(0) == 0
    return torch.where(silent, torch.full_like(assignments, -1), assignments)


def vote(spike_counts: Tensor, assignments: Tensor, n_classes: int) -> Tensor:
    r"""Predict each sample's class by the mean response of the neurons labelled with it.

    Score of class :math:`c` for sample :math:`s`: the mean count of the neurons assigned to
    :math:`c`, :math:`\frac{1}{|N_c|}\sum_{n \in N_c} \mathrm{counts}_{sn}` (Diehl & Cook's vote);
    the prediction is the class with the highest score (the lowest class on ties). Classes
    without neurons never win. A sample for which no labelled neuron spiked gets ``-1``
    (no prediction: it counts as wrong in an accuracy).

    :param spike_counts: ``(S, N)`` spike counts (or ``(S, ..., N)``).
    :param assignments: ``(N,)`` labels from :func:`assign_labels` (``-1``: ignored).
    :param n_classes: number of classes C.
    :returns: ``(S,)`` int64 predictions in ``[-1, C)``.
    :raises TypeError: non-tensor or non-integer assignments, bool counts.
    :raises ValueError: shapes that do not match, assignments out of range.
    """
    owner = "vote"
    n_classes = _check_n_classes(n_classes, owner)
    counts = _counts_matrix(spike_counts, owner)
    assignments = _class_indices(
        assignments, "assignments", counts.shape[1], n_classes, owner, low=-1
    ).to(counts.device)
    classes = torch.arange(n_classes, device=counts.device)
    members = (assignments.unsqueeze(1) == classes).to(counts.dtype)  # (N, C)
    sums = counts @ members  # (S, C)
    sizes = members.sum(0)
    scores = torch.where(
        sizes > 0, sums / sizes.clamp(min=1), torch.full_like(sums, -1.0)
    )  # an empty class scores -1 < 0, so it never wins
    predictions = scores.argmax(1)
    no_vote = sums.sum(1) == 0
    return torch.where(no_vote, torch.full_like(predictions, -1), predictions)


def confusion_matrix(pred: Tensor, true: Tensor, n_classes: int) -> Tensor:
    """Count how often each true class was predicted as each class.

    ``matrix[t, p]`` is the number of samples of true class ``t`` predicted as ``p``: rows are
    true classes, columns predictions, the diagonal the correct ones. Predictions of ``-1``
    (no vote, see :func:`vote`) are not counted, so a row may sum to less than the number of
    samples of its class.

    :param pred: ``(S,)`` integer predictions in ``[-1, C)``.
    :param true: ``(S,)`` integer true classes in ``[0, C)``.
    :param n_classes: number of classes C.
    :returns: ``(C, C)`` int64 matrix on the device of ``true``.
    :raises TypeError: non-tensor or non-integer inputs.
    :raises ValueError: shapes that differ, values out of range.
    """
    owner = "confusion_matrix"
    n_classes = _check_n_classes(n_classes, owner)
    true = _check_tensor(true, "true", owner)
    if true.dim() != 1:
        raise ValueError(f"{owner}: true must be 1-D (S,), got shape {tuple(true.shape)}")
    true = _class_indices(true, "true", true.shape[0], n_classes, owner, low=0)
    pred = _class_indices(pred, "pred", true.shape[0], n_classes, owner, low=-1).to(true.device)
    voted = pred >= 0
    flat = true[voted] * n_classes + pred[voted]
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes)


# -- the network ---------------------------------------------------------------------------------
def _decay(tau: float, dt: float) -> float:
    """Decay factor per step of an exponential with time constant ``tau`` (``inf``: no decay)."""
    return 1.0 if math.isinf(tau) else math.exp(-dt / tau)


class DiehlCook2015(SNNNetwork):
    r"""Diehl & Cook (2015): unsupervised STDP learning with competing adaptive neurons.

    Inputs (Poisson spikes, ``(B, 1, n_inputs)``) → :attr:`input` (:class:`~pysnn.neuron.Input`,
    presynaptic trace) → :attr:`exc` (plastic :class:`~pysnn.connection.Linear`) →
    :attr:`neuron` (:class:`~pysnn.neuron.AdaptiveLIFNeuron` with ``relax_to_center=True``), which
    also receives :attr:`inh` (:func:`lateral_inhibition` of its own spikes of the previous
    step). Diehl & Cook's separate inhibitory population, which fires one spike for each
    excitatory spike, is folded into this direct inhibition. Linear (decay-factor) updates,
    with the decays computed from the time constants in ms given here:

    * voltage :math:`v \leftarrow \lambda_v v + \sum_i W_{oi} s_i - \mathrm{inhibition}\sum_{j
      \ne o} s_j(t-1)`, spike when :math:`v \ge \vartheta + \theta_o`, reset to 0 and refractory
      for ``duration_refrac`` ms;
    * adaptive threshold :math:`\theta_o` (:attr:`theta`): ``+theta_plus`` per spike, decays with
      ``tau_theta``; it keeps growing for neurons that win often, which lets the others win too;
    * traces: presynaptic decay ``tau_pre`` (the potentiation by :class:`pysnn.learning.STDP`
      follows it), postsynaptic ``tau_post``.

    Batches: sample ``b`` of a batch is an independent network (its own voltages, traces and
    inhibition). The weights and :attr:`theta` are shared. During a presentation each sample's
    threshold (``neuron.thresh[b]``) adapts on its own; :meth:`reset_state` then adds the
    changes of all samples to :attr:`theta` (the sum: what presenting the samples one after
    the other would give) and restarts every sample from it. In evaluation mode
    (``model.eval()``) the thresholds are frozen: no adaptation, nothing added to
    :attr:`theta` — Diehl & Cook's test phase.

    Training step by step: ``present(model, rates, T, dt, learning_rule=STDP(
    model.plastic_layers(), ...), after_step=model.normalize)``.

    :param n_inputs: I, number of input neurons (e.g. 64 pixels, 128 with ON/OFF inputs).
    :param n_neurons: N, number of excitatory neurons.
    :param batch_size: B.
    :param dt: time step in ms.
    :param thresh: keyword-only, base threshold :math:`\vartheta` above the rest voltage 0.
    :param theta_plus: keyword-only, threshold increase per spike (>= 0).
    :param tau_theta: keyword-only, decay time constant of :attr:`theta` in ms (``math.inf``:
        no decay).
    :param inhibition: keyword-only, lateral inhibition per spike (>= 0).
    :param tau_v: keyword-only, membrane time constant in ms.
    :param tau_pre: keyword-only, presynaptic trace time constant in ms.
    :param tau_post: keyword-only, postsynaptic trace time constant in ms.
    :param duration_refrac: keyword-only, refractory period in ms (multiple of ``dt``).
    :param w_total: keyword-only, sum of each neuron's incoming weights kept by
        :meth:`normalize`; default ``n_inputs / 8`` (mean weight 0.125).
    :param process_group: keyword-only, a :mod:`torch.distributed` process group over which
        the batch is sharded (each rank builds the model with its own ``batch_size``), or
        ``None``. Given, :meth:`reset_state` (and switching to ``eval()``) adds the threshold
        changes of every rank's samples to :attr:`theta` (an all-gather, then the sum one
        process would take: the same :attr:`theta` on every rank, bit for bit), so every rank
        must call them together. See :mod:`pysnn.distributed`.

    Weights start uniform in [0, 0.3) and normalised. Outputs of :meth:`forward`:
    ``(spikes, trace)`` of shape ``(B, 1, N)``.
    """

    def __init__(
        self,
        n_inputs: int,
        n_neurons: int,
        batch_size: int,
        dt: float = 1.0,
        *,
        thresh: float = 12.0,
        theta_plus: float = 1.2,
        tau_theta: float = 1e7,
        inhibition: float = 32.0,
        tau_v: float = 100.0,
        tau_pre: float = 60.0,
        tau_post: float = 20.0,
        duration_refrac: float = 5.0,
        w_total: Optional[float] = None,
        process_group: Any = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        process_group = _check_group(process_group, owner)
        self.process_group = None  # set below: the first reset_state has nothing to fold
        n_inputs = _check_positive_int(n_inputs, "n_inputs", owner)
        n_neurons = _check_positive_int(n_neurons, "n_neurons", owner)
        batch_size = _check_positive_int(batch_size, "batch_size", owner)
        dt = _check_positive_real(dt, "dt", owner)
        thresh = _check_real(thresh, "thresh", owner, low=0.0, low_open=True)
        theta_plus = _check_real(theta_plus, "theta_plus", owner, low=0.0)
        inhibition = _check_real(inhibition, "inhibition", owner, low=0.0)
        if isinstance(tau_theta, bool) or not isinstance(tau_theta, Real) or not tau_theta > 0:
            raise ValueError(f"{owner}: tau_theta must be > 0 ms (or math.inf), got {tau_theta!r}")
        taus = {}
        for name, value in (("tau_v", tau_v), ("tau_pre", tau_pre), ("tau_post", tau_post)):
            taus[name] = _check_positive_real(value, name, owner)
        if w_total is None:
            w_total = n_inputs / 8.0
        self.w_total = _check_real(w_total, "w_total", owner, low=0.0, low_open=True)
        self.n_inputs, self.n_neurons, self.batch_size = n_inputs, n_neurons, batch_size
        self.theta_plus = theta_plus
        self._theta_decay = _decay(float(tau_theta), dt)

        # Input(cells_shape, dt, alpha_t, trace decay)
        self.input = Input((batch_size, 1, n_inputs), dt, 1.0, _decay(taus["tau_pre"], dt))
        self.exc = Linear(n_inputs, n_neurons, batch_size, dt, 0, reduction="sum")
        self.inh = lateral_inhibition(n_neurons, inhibition, batch_size, dt)
        self.neuron = AdaptiveLIFNeuron(
            (batch_size, 1, n_neurons),
            thresh,
            0.0,  # v_rest
            1.0,  # alpha_v: the weights carry the scale
            1.0,  # alpha_t
            dt,
            duration_refrac,
            _decay(taus["tau_v"], dt),
            _decay(taus["tau_post"], dt),
            theta_plus,
            self._theta_decay,
            "linear",
            relax_to_center=True,
        )
        self.add_layer("exc", self.exc, self.neuron)
        self.add_layer("inh", self.inh, self.neuron)
        self.register_buffer("theta", torch.zeros(n_neurons))
        with torch.no_grad():
            self.exc.weight.uniform_(0.0, 0.3)
        self.normalize()
        self.reset_state()
        self.process_group = process_group

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """One time step.

        :param x: input spikes ``(B, 1, n_inputs)`` (bool or 0/1 floats).
        :returns: ``(spikes, trace)`` of the excitatory neurons, ``(B, 1, n_neurons)``.
        """
        x, trace = self.input(x)
        excitation, _ = self.exc(x, trace)
        # The neuron's spikes buffer still holds the previous step's spikes here.
        inhibition, _ = self.inh(self.neuron.spikes, self.neuron.trace)
        return self.neuron([excitation, inhibition])

    def plastic_layers(self) -> "OrderedDict[str, Dict[str, Any]]":
        """The layers STDP should train: only ``"exc"`` (input → excitatory).

        :returns: an ``OrderedDict`` in the format of :attr:`layers`, for
            :class:`pysnn.learning.STDP`.
        """
        return OrderedDict(exc=self.layers["exc"])

    def normalize(self) -> None:
        """Set each neuron's incoming weights to sum to ``w_total`` (see :func:`normalize_weights`)."""
        normalize_weights(self.exc.weight, self.w_total, dim=1)

    def _fold_thresholds(self) -> None:
        """Add every sample's threshold change to :attr:`theta`; restart them all from it."""
        thresh = self.neuron.thresh.data
        center = self.neuron.thresh_center
        changes = thresh - center - self.theta  # (B, 1, N)
        if self.process_group is not None:  # every rank's samples, in rank order
            changes = gather_batch(changes, self.process_group)
        self.theta.add_(changes.sum(dim=(0, 1)))
        # Every sample now starts from the new theta, so folding again adds nothing.
        thresh.copy_((center + self.theta).expand_as(thresh))

    def reset_state(self) -> None:
        """Start a new presentation: voltages, traces, spikes in flight to rest.

        In training mode the threshold changes of the presentation that ends are first added to
        :attr:`theta`; every sample then starts from ``thresh + theta``. Calling it twice in a
        row changes nothing the second time.
        """
        if self.training:
            self._fold_thresholds()
        super().reset_state()  # also sets the neuron's threshold back to thresh_center
        self.neuron.thresh.data.add_(self.theta)

    def train(self, mode: bool = True) -> "DiehlCook2015":
        """Training mode (thresholds adapt) or evaluation mode (thresholds frozen).

        Switching from training to evaluation first adds the pending threshold changes to
        :attr:`theta` and restarts every sample's threshold from it.

        :param mode: ``True`` for training, ``False`` for evaluation (``model.eval()``).
        :returns: the model.
        """
        if not isinstance(mode, bool):
            raise TypeError(f"{type(self).__name__}: mode must be a bool, got {mode!r}")
        neuron = getattr(self, "neuron", None)
        if neuron is not None:
            if self.training and not mode:
                self._fold_thresholds()
            with torch.no_grad():
                neuron.alpha_thresh.fill_(self.theta_plus if mode else 0.0)
                neuron.tau_thresh.fill_(self._theta_decay if mode else 1.0)
        return super().train(mode)

    def extra_repr(self) -> str:
        return (
            f"n_inputs={self.n_inputs}, n_neurons={self.n_neurons}, batch_size={self.batch_size}, "
            f"w_total={self.w_total:g}, theta_plus={self.theta_plus:g}"
        )
