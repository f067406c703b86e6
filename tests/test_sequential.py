"""pysnn.network.Sequential: a chain gives the hand-written network's spikes, learns, records."""

from collections import OrderedDict

import pytest
import torch

from pysnn.connection import AdaptiveMaxPool2d, Conv2d, Linear, MaxPool2d
from pysnn.encoding import poisson_encoding
from pysnn.learning import MSTDP, MSTDPET, STDP, FedeSTDP
from pysnn.monitor import Monitor
from pysnn.network import Flatten, Sequential, SNNNetwork
from pysnn.neuron import FedeNeuron, Input, LIFNeuron
from pysnn.simulation import run

B, I, H, O = 2, 6, 5, 3
T_STEPS = 60


def lif(shape):
    # cells_shape, thresh, v_rest, alpha_v, alpha_t, dt, duration_refrac, tau_v, tau_t
    return LIFNeuron(shape, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.8)


def fede(shape):
    # cells_shape, thresh, v_rest, alpha_v, alpha_t, dt, duration_refrac, tau_v, tau_t
    return FedeNeuron(shape, 0.1, 0.0, 1.0, 0.2, 1.0, 1.0, 5.0, 5.0)


def input_for(neuron):
    """A FedeNeuron integrates w·s − x: its input's traces are small (alpha_t 0.2)."""
    if neuron is fede:
        return Input((B, 1, I), 1.0, 0.2, 5.0, "exponential")
    return Input((B, 1, I), 1.0, 1.0, 0.8)


def spikes_in(shape=(B, 1, I), rate=300.0, seed=0):
    torch.manual_seed(seed)
    return poisson_encoding(torch.full(shape, rate), T_STEPS, 1.0).float()


class HandMLP(SNNNetwork):
    """Input → Linear(delay 2) → neuron → Linear → neuron, written by hand."""

    def __init__(self, neuron):
        super().__init__()
        self.input = input_for(neuron)
        self.linear1 = Linear(I, H, B, 1.0, 2)
        self.neuron1 = neuron((B, 1, H))
        self.linear2 = Linear(H, O, B, 1.0, 0)
        self.neuron2 = neuron((B, 1, O))
        self.add_layer("fc1", self.linear1, self.neuron1)
        self.add_layer("fc2", self.linear2, self.neuron2)
        self.fede = neuron is fede

    def forward(self, x):
        x, trace = self.input(x)
        x, trace = self.linear1(x, trace)
        x, trace = self.neuron1(x, trace) if self.fede else self.neuron1(x)
        x, trace = self.linear2(x, trace)
        return self.neuron2(x, trace) if self.fede else self.neuron2(x)


def sequential_mlp(neuron):
    return Sequential(
        input_for(neuron),
        Linear(I, H, B, 1.0, 2),
        neuron((B, 1, H)),
        Linear(H, O, B, 1.0, 0),
        neuron((B, 1, O)),
    )


def same_weights(hand, seq, high=1.0):
    torch.manual_seed(1)
    for name in ("fc1", "fc2"):
        connection = hand.layers[name]["connection"]
        connection.reset_weights("uniform", a=0.0, b=high)
        seq.layers[name]["connection"].weight.data.copy_(connection.weight)


def record_all(net, inputs, rule=None, reward=None):
    neurons = [layer["neuron"] for layer in net.layers.values()]
    monitors = [Monitor(neuron, ["spikes", "v_cell"]) for neuron in neurons]
    out = run(net, inputs, rule, reward)
    recorded = [(m.get("spikes"), m.get("v_cell")) for m in monitors]
    for m in monitors:
        m.remove()
    return out, recorded


@pytest.mark.parametrize("neuron", [lif, fede], ids=["LIFNeuron", "FedeNeuron"])
def test_same_spikes_as_the_hand_written_network(neuron):
    hand, seq = HandMLP(neuron), sequential_mlp(neuron)
    # a FedeNeuron integrates w·s − x (x: the presynaptic trace): it needs larger weights
    same_weights(hand, seq, high=1.0 if neuron is lif else 3.0)
    inputs = spikes_in()
    out_hand, rec_hand = record_all(hand, inputs)
    out_seq, rec_seq = record_all(seq, inputs)
    assert out_hand.any(), "the test is void: the output never fires"
    assert torch.equal(out_hand, out_seq)
    for (s_hand, v_hand), (s_seq, v_seq) in zip(rec_hand, rec_seq):
        assert torch.equal(s_hand, s_seq)
        assert torch.equal(v_hand, v_seq)


def test_positional_names_and_registration():
    seq = sequential_mlp(lif)
    assert isinstance(seq, SNNNetwork)
    assert list(seq.layers) == ["fc1", "fc2"]
    assert seq.fc1_connection is seq.layers["fc1"]["connection"]
    assert seq.fc2_neuron is seq.layers["fc2"]["neuron"]
    assert isinstance(seq.input, Input)
    assert seq.output_shape == (B, 1, O)
    names = [name for name, _ in seq.named_children()]
    assert names == ["input", "fc1_connection", "fc1_neuron", "fc2_connection", "fc2_neuron"]
    assert "fc1_connection.weight" in seq.state_dict()


def test_keyword_and_ordered_dict_names():
    def parts():
        return dict(
            inp=Input((B, 1, I), 1.0, 1.0, 0.8),
            hidden=Linear(I, H, B, 1.0, 1),
            lif1=lif((B, 1, H)),
            readout=Linear(H, O, B, 1.0, 0),
            lif2=lif((B, 1, O)),
        )

    by_keyword = Sequential(**parts())
    by_dict = Sequential(OrderedDict(parts()))
    for seq in (by_keyword, by_dict):
        assert list(seq.layers) == ["hidden", "readout"]
        assert seq.layers["hidden"]["neuron"] is seq.lif1
        assert [name for name, _ in seq.named_children()] == list(parts())


def test_conv_pool_flatten_linear_matches_hand_written():
    class HandCNN(SNNNetwork):
        def __init__(self):
            super().__init__()
            self.input = Input((B, 2, 8, 8), 1.0, 1.0, 0.8)
            self.conv = Conv2d(2, 3, 3, (8, 8), B, 1.0, 1)
            self.n1 = lif((B, 3, 6, 6))
            self.pool = MaxPool2d(2)
            self.fc = Linear(3 * 3 * 3, 4, B, 1.0, 0)
            self.n2 = lif((B, 1, 4))
            self.add_layer("conv1", self.conv, self.n1)
            self.add_layer("fc1", self.fc, self.n2)

        def forward(self, x):
            x, trace = self.input(x)
            x, trace = self.conv(x, trace)
            x, trace = self.n1(x)
            x, trace = self.pool(x, trace)
            x, trace = x.reshape(B, 1, -1), trace.reshape(B, 1, -1)
            x, trace = self.fc(x, trace)
            return self.n2(x)

    hand = HandCNN()
    seq = Sequential(
        Input((B, 2, 8, 8), 1.0, 1.0, 0.8),
        Conv2d(2, 3, 3, (8, 8), B, 1.0, 1),
        lif((B, 3, 6, 6)),
        MaxPool2d(2),
        Linear(27, 4, B, 1.0, 0),  # the flatten is inserted
        lif((B, 1, 4)),
    )
    assert list(seq.layers) == ["conv1", "fc1"]
    assert isinstance(seq.flatten1, Flatten) and isinstance(seq.pool1, MaxPool2d)
    torch.manual_seed(2)
    for name in ("conv1", "fc1"):
        hand.layers[name]["connection"].reset_weights("uniform", a=0.0, b=1.0)
        seq.layers[name]["connection"].weight.data.copy_(hand.layers[name]["connection"].weight)
    inputs = spikes_in((B, 2, 8, 8), rate=200.0)
    out_hand, rec_hand = record_all(hand, inputs)
    out_seq, rec_seq = record_all(seq, inputs)
    assert out_hand.any()
    assert torch.equal(out_hand, out_seq)
    for (s_hand, _), (s_seq, _) in zip(rec_hand, rec_seq):
        assert torch.equal(s_hand, s_seq)


def test_adaptive_pool_and_explicit_flatten():
    seq = Sequential(
        Input((1, 1, 6, 6), 1.0, 1.0, 0.8),
        Conv2d(1, 2, 3, (6, 6), 1, 1.0, 0),
        lif((1, 2, 4, 4)),
        AdaptiveMaxPool2d(2),
        Flatten(),
        Linear(8, 2, 1, 1.0, 0),
        lif((1, 1, 2)),
    )
    out = run(seq, torch.ones(1, 1, 6, 6, 5))
    assert out.shape == (1, 1, 2, 5)


@pytest.mark.parametrize(
    "make_rule, reward",
    [
        (lambda layers: STDP(layers, 0.05, 1.0, 1.0), None),
        (lambda layers: MSTDP(layers, 1.0, 1.0, 0.05), 1.0),
        (lambda layers: MSTDPET(layers, 1.0, 1.0, 0.05, 0.9), -1.0),
    ],
    ids=["STDP", "MSTDP", "MSTDPET"],
)
def test_learning_rules_train_it_as_the_hand_written_network(make_rule, reward):
    hand, seq = HandMLP(lif), sequential_mlp(lif)
    same_weights(hand, seq)
    inputs = spikes_in()
    w_start = seq.fc1_connection.weight.clone()
    out_hand, _ = record_all(hand, inputs, make_rule(hand.layer_state_dict()), reward)
    out_seq, _ = record_all(seq, inputs, make_rule(seq.layers), reward)
    assert torch.equal(out_hand, out_seq)
    for name in ("fc1", "fc2"):
        w_hand = hand.layers[name]["connection"].weight
        w_seq = seq.layers[name]["connection"].weight
        assert torch.equal(w_hand, w_seq)
    assert not torch.equal(seq.fc1_connection.weight, w_start), "the rule changed nothing"


def test_fede_stdp_trains_a_fede_chain():
    seq = sequential_mlp(fede)
    for layer in seq.layers.values():
        layer["connection"].reset_weights("constant", gain=1.0)
    w_start = seq.fc1_connection.weight.clone()
    run(seq, spikes_in(), FedeSTDP(seq.layer_state_dict(), 0.01, 1.0, 0.5))
    assert not torch.equal(seq.fc1_connection.weight, w_start)


def test_monitor_hook_and_stepped_monitor_with_run():
    seq = sequential_mlp(lif)
    torch.manual_seed(3)
    seq.fc1_connection.reset_weights("uniform", a=0.5, b=1.0)
    seq.fc2_connection.reset_weights("uniform", a=0.5, b=1.0)
    hooked = Monitor(seq.fc1_neuron, "spikes")
    stepped = Monitor(seq.fc2_connection, "weight", hook=False)
    out = run(seq, spikes_in(), monitors=(stepped,))
    assert hooked.get("spikes").shape == (T_STEPS, B, 1, H)
    assert stepped.get("weight").shape == (T_STEPS, O, H)
    # the last layer's recorded spikes are the output of run(), time moved last
    assert out.shape == (B, 1, O, T_STEPS)


def test_network_run_method_and_reset():
    seq = sequential_mlp(lif)
    seq.fc1_connection.reset_weights("constant", gain=1.0)
    seq.fc2_connection.reset_weights("constant", gain=1.0)
    inputs = spikes_in()
    first = seq.run(inputs)
    again = seq.run(inputs)  # reset=True: the same spikes from the same start
    assert torch.equal(first, again)


# -- errors: each names the position and what was expected ------------------------------------


def test_connection_not_followed_by_a_neuron():
    with pytest.raises(TypeError, match=r"position 1: the Linear must be followed by its "):
        Sequential(
            Input((1, 1, 3), 1.0, 1.0, 0.8),
            Linear(3, 2, 1, 1.0, 0),
            Linear(2, 2, 1, 1.0, 0),
            lif((1, 1, 2)),
        )
    with pytest.raises(TypeError, match=r"position 1: the Linear at the end of the chain"):
        Sequential(Input((1, 1, 3), 1.0, 1.0, 0.8), Linear(3, 2, 1, 1.0, 0))


def test_neuron_without_its_connection():
    with pytest.raises(TypeError, match=r"position 1: a LIFNeuron must follow a connection"):
        Sequential(Input((1, 1, 3), 1.0, 1.0, 0.8), lif((1, 1, 3)))
    with pytest.raises(TypeError, match=r"position 3: a LIFNeuron must follow a connection"):
        Sequential(
            Input((1, 1, 3), 1.0, 1.0, 0.8), Linear(3, 2, 1, 1.0, 0), lif((1, 1, 2)), lif((1, 1, 2))
        )


def test_chain_must_start_with_an_input():
    with pytest.raises(TypeError, match=r"position 0 must be the Input"):
        Sequential(Linear(3, 2, 1, 1.0, 0), lif((1, 1, 2)))
    with pytest.raises(TypeError, match=r"position 3: an Input can only be the first"):
        Sequential(
            Input((1, 1, 3), 1.0, 1.0, 0.8),
            Linear(3, 2, 1, 1.0, 0),
            lif((1, 1, 2)),
            Input((1, 1, 2), 1.0, 1.0, 0.8),
        )


def test_shapes_that_do_not_match():
    with pytest.raises(ValueError, match=r"position 1 \(Linear 'fc1'\) expects inputs of shape "):
        Sequential(Input((1, 1, 4), 1.0, 1.0, 0.8), Linear(3, 2, 1, 1.0, 0), lif((1, 1, 2)))
    with pytest.raises(ValueError, match=r"\(2, 1, 3\).*position 0 \(Input 'input'\) gives"):
        Sequential(Input((1, 1, 3), 1.0, 1.0, 0.8), Linear(3, 2, 2, 1.0, 0), lif((2, 1, 2)))
    # the neuron's shape: add_layer's check, with the positions
    with pytest.raises(ValueError, match=r"positions 1-2 \(layer 'fc1'\).*cells_shape"):
        Sequential(Input((1, 1, 3), 1.0, 1.0, 0.8), Linear(3, 2, 1, 1.0, 0), lif((1, 1, 5)))
    with pytest.raises(
        ValueError, match=r"Conv2d 'conv1'\) expects inputs of shape \(1, 2, 8, 8\)"
    ):
        Sequential(
            Input((1, 1, 8, 8), 1.0, 1.0, 0.8),
            Conv2d(2, 1, 3, (8, 8), 1, 1.0, 0),
            lif((1, 1, 6, 6)),
        )
    with pytest.raises(ValueError, match=r"flattened, that is 72 in_features"):
        Sequential(Input((1, 2, 6, 6), 1.0, 1.0, 0.8), Linear(70, 2, 1, 1.0, 0), lif((1, 1, 2)))


def test_pool_errors():
    with pytest.raises(ValueError, match=r"position 1 \(MaxPool2d 'pool1'\) pools \(B, C, H, W\)"):
        Sequential(
            Input((1, 1, 4), 1.0, 1.0, 0.8), MaxPool2d(2), Linear(2, 2, 1, 1.0, 0), lif((1, 1, 2))
        )
    with pytest.raises(TypeError, match=r"position 1: the Conv2d must be followed by its"):
        Sequential(
            Input((1, 1, 6, 6), 1.0, 1.0, 0.8),
            Conv2d(1, 1, 3, (6, 6), 1, 1.0, 0),
            MaxPool2d(2),
            lif((1, 1, 2, 2)),
        )


def test_other_errors():
    with pytest.raises(ValueError, match=r"the chain is empty"):
        Sequential()
    with pytest.raises(ValueError, match=r"no layer"):
        Sequential(Input((1, 1, 3), 1.0, 1.0, 0.8))
    with pytest.raises(TypeError, match=r"not both"):
        Sequential(Input((1, 1, 3), 1.0, 1.0, 0.8), fc=Linear(3, 2, 1, 1.0, 0))
    with pytest.raises(TypeError, match=r"position 1: cannot chain a ReLU"):
        Sequential(Input((1, 1, 3), 1.0, 1.0, 0.8), torch.nn.ReLU())
    with pytest.raises(TypeError, match=r"position 1: expected a pysnn module"):
        Sequential(Input((1, 1, 3), 1.0, 1.0, 0.8), "Linear")
    with pytest.raises(KeyError, match=r"position 0"):
        Sequential(
            forward=Input((1, 1, 3), 1.0, 1.0, 0.8), fc=Linear(3, 2, 1, 1.0, 0), n=lif((1, 1, 2))
        )
