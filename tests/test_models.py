"""pysnn.models: weight normalisation, lateral inhibition, presentation loop, label assignment,
voting, confusion matrix and the Diehl & Cook (2015) network.

Expected values are worked out by hand in the comments or by plain NumPy loops written here.
"""

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

from pysnn.connection import Linear
from pysnn.encoding import poisson_encoding
from pysnn.learning import STDP
from pysnn.models import (
    DiehlCook2015,
    assign_labels,
    confusion_matrix,
    lateral_inhibition,
    normalize_weights,
    present,
    vote,
)
from pysnn.neuron import AdaptiveLIFNeuron


# -- normalize_weights ---------------------------------------------------------------------------
def test_normalize_weights_rows_sum_to_total_in_place():
    weight = torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 0.0]])
    result = normalize_weights(weight, 2.0)
    assert result is weight
    # [1, 3] sums to 4 → ×0.5; [2, 2] → ×0.5; an all-zero row has nothing to scale
    expected = torch.tensor([[0.5, 1.5], [1.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(weight, expected, rtol=0, atol=0)


def test_normalize_weights_over_several_dims_and_per_neuron_totals():
    # a Conv2d weight (C_out=2, C_in=1, 2, 2): each kernel normalised as a whole
    weight = torch.arange(1.0, 9.0).reshape(2, 1, 2, 2)  # kernel sums 10 and 26
    normalize_weights(weight, torch.tensor([5.0, 13.0]).view(2, 1, 1, 1), dim=(1, 2, 3))
    expected = torch.arange(1.0, 9.0).reshape(2, 1, 2, 2) / 2  # 5/10 and 13/26 are both 1/2
    torch.testing.assert_close(weight, expected)
    # dim=0 normalises columns instead
    weight = torch.tensor([[1.0, 1.0], [3.0, 4.0]])
    normalize_weights(weight, 1.0, dim=0)
    torch.testing.assert_close(weight, torch.tensor([[0.25, 0.2], [0.75, 0.8]]))


def test_normalize_weights_of_a_parameter_and_of_a_linear_connection():
    connection = Linear(4, 3, 1, 1.0, 0)
    normalize_weights(connection.weight, 1.5)
    np.testing.assert_allclose(connection.weight.sum(1).numpy(), [1.5] * 3, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(total=0.0), ValueError, "total must be > 0"),
        (dict(total=float("nan")), ValueError, "total must be finite"),
        (dict(total="1"), TypeError, "total must be a real number"),
        (dict(total=1.0, dim=2), ValueError, "dim (2,) out of range"),
        (dict(total=1.0, dim=1.0), TypeError, "dim must be an int"),
        (dict(total=torch.tensor([1.0, -1.0])), ValueError, "total must be finite and > 0"),
    ],
)
def test_normalize_weights_errors(kwargs, error, words):
    with pytest.raises(error, match=f"normalize_weights: {re_escape(words)}"):
        normalize_weights(torch.ones(2, 2), **kwargs)


def test_normalize_weights_needs_a_float_tensor():
    with pytest.raises(TypeError, match="weight must be a floating tensor"):
        normalize_weights(torch.ones(2, 2, dtype=torch.int64), 1.0)
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        normalize_weights([[1.0]], 1.0)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


# -- lateral_inhibition --------------------------------------------------------------------------
def test_lateral_inhibition_weights_and_output():
    connection = lateral_inhibition(3, 2.0, 2, 1.0)
    expected = [[0.0, -2.0, -2.0], [-2.0, 0.0, -2.0], [-2.0, -2.0, 0.0]]
    np.testing.assert_array_equal(connection.weight.numpy(), expected)
    spikes = torch.tensor([[[True, False, True]], [[False, True, False]]])
    out, _ = connection(spikes, torch.zeros(2, 1, 3))
    assert out.shape == (2, 1, 3, 1)  # reduction "sum" by default
    # sample 0: neurons 0 and 2 spiked → neuron 0 gets -2 (from 2), 1 gets -4, 2 gets -2;
    # sample 1: neuron 1 spiked → -2 for 0 and 2, nothing for itself
    np.testing.assert_array_equal(out[..., 0].numpy(), [[[-2.0, -4.0, -2.0]], [[-2.0, 0.0, -2.0]]])


def test_lateral_inhibition_options_and_errors():
    connection = lateral_inhibition(2, 1.0, 1, 1.0, delay=3, reduction="none")
    assert (
        connection.reduction == "none"
        and connection.max_delay == 3
        and bool((connection.delay_init == 4).all())
    )
    with pytest.raises(ValueError, match="lateral_inhibition: strength must be >= 0.0, got -1.0"):
        lateral_inhibition(2, -1.0, 1, 1.0)
    with pytest.raises(TypeError, match="lateral_inhibition: n must be an int"):
        lateral_inhibition(2.0, 1.0, 1, 1.0)


# -- present -------------------------------------------------------------------------------------
class PassThrough(torch.nn.Module):
    """Returns its input spikes: the counts are the input spike counts. Records resets."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def forward(self, x):
        self.log.append("step")
        return x, x

    def reset_state(self):
        self.log.append("reset")


class RecordingRule:
    def __init__(self, log):
        self.log = log

    def update_state(self):
        self.log.append("update_state")

    def step(self):
        self.log.append("rule_step")


def test_present_counts_and_call_order():
    log = []
    # 1000 Hz at dt = 1 ms is a spike every step, 0 Hz never: deterministic counts
    rates = torch.tensor([[[1000.0, 0.0, 1000.0]], [[0.0, 1000.0, 0.0]]])
    counts = present(
        PassThrough(log),
        rates,
        4.0,
        1.0,
        learning_rule=RecordingRule(log),
        after_step=lambda: log.append("after"),
    )
    assert counts.dtype == torch.get_default_dtype()
    np.testing.assert_array_equal(counts.numpy(), [[[4.0, 0.0, 4.0]], [[0.0, 4.0, 0.0]]])
    assert log == ["reset"] + ["step", "update_state", "rule_step", "after"] * 4


@pytest.mark.parametrize("steps", [1, 254, 255, 256, 510, 511, 600])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_present_counts_every_spike_over_long_presentations(steps, dtype):
    """Counts past 255 steps (a byte's range) are exact: 1000 Hz at 1 ms is a spike every step,
    500 Hz every other step on average; the counts are the spikes of the encoded trains."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        rates = torch.tensor([[[1000.0, 0.0, 500.0]]])
        generator = torch.Generator().manual_seed(steps)
        counts = present(PassThrough([]), rates, float(steps), 1.0, generator=generator)
        trains = poisson_encoding(
            rates, float(steps), 1.0, generator=torch.Generator().manual_seed(steps)
        )
    finally:
        torch.set_default_dtype(previous)
    assert counts.dtype == dtype and counts.shape == (1, 1, 3)
    expected = trains.sum(-1, dtype=torch.int64).double().numpy()
    assert expected[0, 0, 0] == steps and expected[0, 0, 1] == 0
    np.testing.assert_array_equal(counts.double().numpy(), expected)


class SwitchesOutputs(torch.nn.Module):
    """Bool spikes for three steps, then graded floats: the counts add both kinds."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def forward(self, x):
        self.steps += 1
        return x if self.steps <= 3 else x.float() * 0.25


def test_present_counts_a_network_whose_outputs_change_kind():
    counts = present(SwitchesOutputs(), torch.full((1, 2), 1000.0), 6.0, 1.0)
    np.testing.assert_array_equal(counts.numpy(), [[3 + 3 * 0.25] * 2])


def test_present_without_reset_or_rule():
    log = []
    counts = present(PassThrough(log), torch.full((1, 2), 2000.0), 2.5, 0.5, reset=False)
    np.testing.assert_array_equal(
        counts.numpy(), [[5.0, 5.0]]
    )  # p = 2000 Hz · 0.5 ms = 1, 2.5 / 0.5 = 5 steps
    assert log == ["step"] * 5


def test_present_equals_the_hand_written_loop():
    """Same Poisson draws, same network, same rule: the same counts and weights."""
    torch.manual_seed(0)
    rates = torch.rand(3, 1, 6) * 200
    nets, rules = [], []
    for _ in range(2):
        torch.manual_seed(1)
        net = DiehlCook2015(6, 4, 3, thresh=2.0, theta_plus=0.5, inhibition=3.0)
        nets.append(net)
        rules.append(STDP(net.plastic_layers(), 0.05, 1.0, 0.5, 0.0, 1.0))
    generator = torch.Generator().manual_seed(7)
    counts = present(
        nets[0],
        rates,
        30.0,
        1.0,
        learning_rule=rules[0],
        after_step=nets[0].normalize,
        generator=generator,
    )
    spikes = poisson_encoding(rates, 30.0, 1.0, generator=torch.Generator().manual_seed(7))
    net, rule = nets[1], rules[1]
    net.reset_state()
    manual = torch.zeros(3, 1, 4)
    with torch.no_grad():
        for t in range(spikes.shape[-1]):
            out, _ = net(spikes[..., t])
            manual += out
            rule.update_state()
            rule.step()
            net.normalize()
    assert manual.sum() > 0
    torch.testing.assert_close(counts, manual, rtol=0, atol=0)
    torch.testing.assert_close(nets[0].exc.weight, net.exc.weight, rtol=0, atol=0)


def test_present_errors():
    log = []
    rates = torch.ones(1, 2)
    with pytest.raises(TypeError, match="present: learning_rule must have update_state"):
        present(PassThrough(log), rates, 2.0, 1.0, learning_rule=object())
    with pytest.raises(TypeError, match="present: after_step must be callable"):
        present(PassThrough(log), rates, 2.0, 1.0, after_step=1)
    with pytest.raises(TypeError, match="present: rates must be a torch.Tensor"):
        present(PassThrough(log), [1.0], 2.0, 1.0)
    with pytest.raises(TypeError, match="present: network must be a callable"):
        present(None, rates, 2.0, 1.0)


# -- assign_labels, vote, confusion_matrix -------------------------------------------------------
def test_assign_labels_by_hand():
    counts = torch.tensor(
        [
            [2.0, 0.0, 1.0],  # class 0
            [4.0, 0.0, 1.0],  # class 0
            [1.0, 0.0, 5.0],  # class 1
            [0.0, 0.0, 3.0],  # class 2
        ]
    )
    labels = torch.tensor([0, 0, 1, 2])
    # mean per class: class 0 [3, 0, 1], class 1 [1, 0, 5], class 2 [0, 0, 3], class 3: none
    # neuron 0 → 0; neuron 1 never spiked → -1; neuron 2 → 1
    result = assign_labels(counts, labels, 4)
    assert result.dtype == torch.int64
    assert result.tolist() == [0, -1, 1]
    # (S, 1, N) counts, as present() returns them, are flattened after the sample axis
    assert assign_labels(counts.unsqueeze(1), labels, 4).tolist() == [0, -1, 1]


def test_assign_labels_ties_and_absent_classes():
    # equal means for classes 1 and 2 → the lower class; class 0 has no sample and never wins
    counts = torch.tensor([[2.0], [2.0]])
    assert assign_labels(counts, torch.tensor([2, 1]), 3).tolist() == [1]
    # integer counts are accepted
    assert assign_labels(torch.tensor([[0], [3]]), torch.tensor([0, 1]), 2).tolist() == [1]


def reference_assign(counts: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    result = []
    for n in range(counts.shape[1]):
        if counts[:, n].sum() == 0:
            result.append(-1)
            continue
        best, best_mean = -1, -np.inf
        for c in range(n_classes):
            members = counts[labels == c, n]
            if len(members) and members.mean() > best_mean:
                best, best_mean = c, members.mean()
        result.append(best)
    return np.array(result)


def reference_vote(counts: np.ndarray, assignments: np.ndarray, n_classes: int) -> np.ndarray:
    result = []
    for row in counts:
        best, best_score, any_vote = -1, -np.inf, False
        for c in range(n_classes):
            members = row[assignments == c]
            if len(members) == 0:
                continue
            any_vote |= members.sum() > 0
            if members.mean() > best_score:
                best, best_score = c, members.mean()
        result.append(best if any_vote else -1)
    return np.array(result)


def test_assign_labels_and_vote_match_numpy_loops(rng):
    counts = rng.poisson(1.0, size=(40, 12)).astype(np.float64)
    counts[:, 3] = 0  # a silent neuron
    counts[5] = 0  # a sample without any spike
    labels = rng.integers(0, 5, size=40)
    assignments = assign_labels(torch.tensor(counts), torch.tensor(labels), 5)
    expected = reference_assign(counts, labels, 5)
    np.testing.assert_array_equal(assignments.numpy(), expected)
    predictions = vote(torch.tensor(counts), assignments, 5)
    np.testing.assert_array_equal(predictions.numpy(), reference_vote(counts, expected, 5))
    assert predictions[5] == -1


def test_vote_by_hand():
    assignments = torch.tensor([0, -1, 1, 1])
    counts = torch.tensor(
        [
            [3.0, 9.0, 1.0, 2.0],  # class 0: 3, class 1: mean(1, 2) = 1.5, class 2: no neuron
            [1.0, 0.0, 4.0, 2.0],  # class 0: 1, class 1: 3
            [0.0, 5.0, 0.0, 0.0],  # only the unlabelled neuron spiked: no vote
            [2.0, 0.0, 3.0, 1.0],  # class 0: 2, class 1: 2 → tie → the lower class
        ]
    )
    assert vote(counts, assignments, 3).tolist() == [0, 1, -1, 0]


def test_confusion_matrix_by_hand():
    pred = torch.tensor([0, 1, 1, -1, 2])
    true = torch.tensor([0, 1, 2, 2, 2])
    matrix = confusion_matrix(pred, true, 3)
    assert matrix.dtype == torch.int64
    # rows: true, columns: predicted; the -1 (no vote) of sample 3 is not counted
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


@pytest.mark.parametrize(
    "call, error, words",
    [
        (
            lambda: assign_labels(torch.ones(2, 3), torch.tensor([0, 3]), 3),
            ValueError,
            "assign_labels: labels must lie in [0, n_classes - 1 = 2]",
        ),
        (
            lambda: assign_labels(torch.ones(2, 3), torch.tensor([0.0, 1.0]), 3),
            TypeError,
            "assign_labels: labels must hold integers",
        ),
        (
            lambda: assign_labels(torch.ones(2, 3), torch.tensor([0, 1, 1]), 3),
            ValueError,
            "assign_labels: labels must have shape (2,)",
        ),
        (
            lambda: assign_labels(torch.ones(3), torch.tensor([0, 1, 1]), 3),
            ValueError,
            "assign_labels: spike_counts must be (S, N)",
        ),
        (
            lambda: assign_labels(torch.ones(2, 3), torch.tensor([0, 1]), 0),
            ValueError,
            "assign_labels: n_classes must be > 0",
        ),
        (
            lambda: vote(torch.ones(2, 3), torch.tensor([0, 1]), 2),
            ValueError,
            "vote: assignments must have shape (3,)",
        ),
        (
            lambda: vote(torch.ones(2, 3), torch.tensor([0, 1, -2]), 2),
            ValueError,
            "vote: assignments must lie in [-1 (no class), n_classes - 1 = 1]",
        ),
        (
            lambda: vote(torch.ones(2, 3, dtype=torch.bool), torch.tensor([0, 1, 1]), 2),
            TypeError,
            "vote: spike_counts must be real numbers",
        ),
        (
            lambda: confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, -1]), 2),
            ValueError,
            "confusion_matrix: true must lie in [0, n_classes - 1 = 1]",
        ),
        (
            lambda: confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2),
            ValueError,
            "confusion_matrix: pred must lie in [-1 (no class), n_classes - 1 = 1]",
        ),
        (
            lambda: confusion_matrix(torch.tensor([0]), torch.tensor([0, 1]), 2),
            ValueError,
            "confusion_matrix: pred must have shape (2,)",
        ),
    ],
)
def test_label_function_errors(call, error, words):
    with pytest.raises(error, match=re_escape(words)):
        call()


# -- DiehlCook2015 -------------------------------------------------------------------------------
def test_diehl_cook_structure():
    torch.manual_seed(0)
    net = DiehlCook2015(6, 4, 2, 0.5, inhibition=3.0, w_total=1.5, tau_v=50.0, tau_pre=10.0)
    np.testing.assert_allclose(net.exc.weight.sum(1).numpy(), [1.5] * 4, rtol=1e-6)
    assert (net.exc.weight >= 0).all()
    inh = net.inh.weight.numpy()
    np.testing.assert_array_equal(np.diag(inh), 0.0)
    np.testing.assert_array_equal(inh[~np.eye(4, dtype=bool)], -3.0)
    assert isinstance(net.neuron, AdaptiveLIFNeuron) and net.neuron.relax_to_center
    # decays per step from the time constants: exp(-dt / tau)
    assert float(net.neuron.tau_v[0, 0, 0]) == pytest.approx(math.exp(-0.5 / 50.0))
    assert float(net.input.tau_t[0, 0, 0]) == pytest.approx(math.exp(-0.5 / 10.0))
    assert list(net.plastic_layers()) == ["exc"]
    assert net.plastic_layers()["exc"]["connection"] is net.exc
    assert net.theta.shape == (4,) and not net.theta.any()
    # the default weight sum is n_inputs / 8
    assert float(DiehlCook2015(16, 2, 1).exc.weight.sum(1)[0]) == pytest.approx(2.0)


def test_diehl_cook_step_with_lateral_inhibition():
    """One input, two neurons: neuron 0 fires at once and inhibits neuron 1 in the next step."""
    net = DiehlCook2015(1, 2, 1, thresh=1.0, theta_plus=0.0, inhibition=10.0, duration_refrac=0.0)
    with torch.no_grad():
        net.exc.weight.copy_(torch.tensor([[5.0], [0.5]]))
    spike = torch.ones(1, 1, 1, dtype=torch.bool)
    decay = math.exp(-1.0 / 100.0)  # tau_v = 100 ms, dt = 1 ms
    out, _ = net(spike)
    assert out.tolist() == [[[True, False]]]
    np.testing.assert_allclose(net.neuron.v_cell.numpy().ravel(), [0.0, 0.5], rtol=1e-6)
    out, _ = net(spike)
    # neuron 0: reset to 0, +5 → spikes again (it does not inhibit itself);
    # neuron 1: 0.5·decay + 0.5 − 10 (neuron 0's spike of the previous step)
    assert out.tolist() == [[[True, False]]]
    np.testing.assert_allclose(
        net.neuron.v_cell.numpy().ravel(), [0.0, 0.5 * decay + 0.5 - 10.0], rtol=1e-6
    )


def test_diehl_cook_thresholds_fold_into_theta():
    net = DiehlCook2015(2, 3, 2, thresh=1.0)
    thresh = net.neuron.thresh.data
    thresh[0, 0] += torch.tensor([0.5, 0.0, 0.25])
    thresh[1, 0] += torch.tensor([0.25, 0.0, 1.0])
    net.reset_state()
    # theta is the sum of the samples' changes; every sample restarts from 1 + theta
    np.testing.assert_allclose(net.theta.numpy(), [0.75, 0.0, 1.25])
    np.testing.assert_allclose(thresh.numpy(), [[[1.75, 1.0, 2.25]]] * 2)
    net.reset_state()  # nothing pending: nothing changes
    np.testing.assert_allclose(net.theta.numpy(), [0.75, 0.0, 1.25])
    # evaluation: changes are discarded at reset, theta stays
    net.eval()
    thresh[0, 0, 0] = 5.0
    net.reset_state()
    np.testing.assert_allclose(net.theta.numpy(), [0.75, 0.0, 1.25])
    np.testing.assert_allclose(thresh.numpy(), [[[1.75, 1.0, 2.25]]] * 2)
    # switching to evaluation keeps what training changed, once
    net.train()
    thresh[1, 0, 1] += 2.0
    net.eval()
    net.train()
    net.reset_state()
    np.testing.assert_allclose(net.theta.numpy(), [0.75, 2.0, 1.25])


def test_diehl_cook_theta_counts_spikes_in_training_and_is_frozen_in_evaluation():
    torch.manual_seed(3)
    net = DiehlCook2015(8, 5, 3, thresh=1.0, theta_plus=0.25, tau_theta=math.inf, inhibition=0.5)
    rates = torch.full((3, 1, 8), 300.0)
    counts = present(net, rates, 40.0, 1.0)
    net.reset_state()
    assert counts.sum() > 0
    # no decay: each spike of any sample adds theta_plus to its neuron's theta
    np.testing.assert_allclose(net.theta.numpy(), 0.25 * counts.sum(dim=(0, 1)).numpy(), rtol=1e-5)
    net.eval()
    before = net.neuron.thresh.clone()
    counts = present(net, rates, 40.0, 1.0)
    assert counts.sum() > 0
    torch.testing.assert_close(net.neuron.thresh, before, rtol=0, atol=0)
    theta = net.theta.clone()
    net.reset_state()
    torch.testing.assert_close(net.theta, theta, rtol=0, atol=0)
    # back to training: adaptation resumes with the original increment
    net.train()
    assert float(net.neuron.alpha_thresh[0, 0, 0]) == 0.25


def test_diehl_cook_learns_two_patterns_without_labels():
    """Two disjoint input patterns: after STDP, different neurons answer them and the vote
    tells them apart perfectly."""
    torch.manual_seed(0)
    n_inputs, batch = 8, 4
    patterns = torch.zeros(2, n_inputs)
    patterns[0, :4] = 200.0
    patterns[1, 4:] = 200.0
    net = DiehlCook2015(n_inputs, 4, batch, thresh=2.0, theta_plus=0.1, inhibition=8.0, w_total=2.0)
    rule = STDP(net.plastic_layers(), 0.02 * batch, 1.0, 1.0, 0.0, 1.0)
    labels = torch.tensor([0, 1, 0, 1])
    rates = patterns[labels].unsqueeze(1)
    for _ in range(15):
        present(net, rates, 40.0, 1.0, learning_rule=rule, after_step=net.normalize)
    net.eval()
    counts = present(net, rates, 100.0, 1.0)
    assignments = assign_labels(counts, labels, 2)
    assert set(assignments.tolist()) >= {0, 1}
    assert vote(counts, assignments, 2).tolist() == labels.tolist()
    # the neurons labelled 0 put most of their weight on the first half of the inputs
    weight = net.exc.weight
    for neuron, label in enumerate(assignments.tolist()):
        if label == 0:
            assert weight[neuron, :4].sum() > 0.8 * weight[neuron].sum()
        elif label == 1:
            assert weight[neuron, 4:].sum() > 0.8 * weight[neuron].sum()


def test_diehl_cook_state_dict_round_trip_keeps_theta():
    net = DiehlCook2015(4, 3, 2)
    net.neuron.thresh.data[0, 0, 1] += 0.5
    net.reset_state()
    copy = DiehlCook2015(4, 3, 2)
    copy.load_state_dict(net.state_dict())
    torch.testing.assert_close(copy.theta, net.theta)
    torch.testing.assert_close(copy.exc.weight, net.exc.weight)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(n_neurons=0), ValueError, "DiehlCook2015: n_neurons must be > 0"),
        (dict(inhibition=-1.0), ValueError, "DiehlCook2015: inhibition must be >= 0"),
        (dict(theta_plus=-0.1), ValueError, "DiehlCook2015: theta_plus must be >= 0"),
        (dict(tau_theta=0.0), ValueError, "DiehlCook2015: tau_theta must be > 0 ms"),
        (dict(thresh=0.0), ValueError, "DiehlCook2015: thresh must be > 0"),
        (dict(tau_v=-5.0), ValueError, "DiehlCook2015: tau_v must be > 0.0, got -5.0"),
        (dict(w_total=0.0), ValueError, "DiehlCook2015: w_total must be > 0"),
        (dict(batch_size=1.5), TypeError, "DiehlCook2015: batch_size must be an int"),
    ],
)
def test_diehl_cook_errors(kwargs, error, words):
    arguments = dict(n_inputs=4, n_neurons=3, batch_size=2)
    arguments.update(kwargs)
    with pytest.raises(error, match=re_escape(words)):
        DiehlCook2015(**arguments)
