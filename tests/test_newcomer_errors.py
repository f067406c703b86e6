"""Errors a newcomer meets first say what to do: a reward for the wrong rule, time-first inputs."""

import pytest
import torch

from pysnn.connection import Linear
from pysnn.learning import MSTDP, MSTDPET, STDP, FedeSTDP
from pysnn.network import Sequential
from pysnn.neuron import Input, LIFNeuron
from pysnn.simulation import run


def network(batch=1, n_in=3):
    return Sequential(
        Input((batch, 1, n_in), 1.0, 1.0, 0.8),
        Linear(n_in, 2, batch, 1.0, 1),
        LIFNeuron((batch, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.8, 0.8),
    )


def test_a_reward_for_stdp_says_stdp_takes_none():
    net = network()
    w_start = net.fc1_connection.weight.clone()
    with pytest.raises(TypeError) as error:
        run(net, torch.ones(1, 1, 3, 5), STDP(net.layers, 0.1, 1.0, 1.0), reward=1.0)
    message = str(error.value)
    assert "STDP takes no reward" in message and "not reward-modulated" in message
    assert "Drop reward=" in message and "MSTDP" in message
    assert "positional argument" not in message
    assert torch.equal(net.fc1_connection.weight, w_start)  # refused before the first step


def test_a_reward_for_fede_stdp_is_refused_too():
    net = network()
    with pytest.raises(TypeError, match=r"FedeSTDP takes no reward"):
        run(net, torch.ones(1, 1, 3, 5), FedeSTDP(net.layers, 0.01, 1.0, 0.5), [1.0] * 5)


@pytest.mark.parametrize(
    "make_rule",
    [lambda layers: MSTDP(layers, 1.0, 1.0, 0.1), lambda layers: MSTDPET(layers, 1, 1, 0.1, 0.9)],
    ids=["MSTDP", "MSTDPET"],
)
def test_a_reward_rule_without_reward_says_to_pass_one(make_rule):
    net = network()
    rule = make_rule(net.layers)
    with pytest.raises(TypeError) as error:
        run(net, torch.ones(1, 1, 3, 5), rule)
    message = str(error.value)
    name = type(rule).__name__
    assert f"{name} needs a reward" in message and "reward-modulated" in message
    assert "Pass reward=" in message and "callable" in message
    assert "missing 1 required positional argument" not in message


def test_a_reward_callable_that_returns_none_for_a_reward_rule():
    net = network()
    rule = MSTDPET(net.layers, 1, 1, 0.1, 0.9)
    with pytest.raises(TypeError, match=r"returned None at step 0, but MSTDPET.step\(\) needs"):
        run(net, torch.ones(1, 1, 3, 5), rule, lambda t, output: None)


def test_rules_with_matching_reward_still_run():
    net = network()
    run(net, torch.ones(1, 1, 3, 5), STDP(net.layers, 0.1, 1.0, 1.0))
    run(net, torch.ones(1, 1, 3, 5), MSTDPET(net.layers, 1, 1, 0.1, 0.9), reward=1.0)


def test_time_first_inputs_say_time_is_last_and_how_to_move_it():
    net = network(batch=1, n_in=1)
    x = torch.ones(10, 1, 1)  # (T, B, I): time first
    with pytest.raises(ValueError) as error:
        run(net, x)
    message = str(error.value)
    assert "time is the last axis" in message
    assert "If axis 0 is time (10 steps)" in message
    assert "x.movedim(0, -1).reshape(1, 1, 1, 10)" in message
    # the suggestion works
    assert run(net, x.movedim(0, -1).reshape(1, 1, 1, 10)).shape == (1, 1, 2, 10)


def test_time_first_with_batch_and_features():
    net = network(batch=2, n_in=3)
    x = torch.ones(7, 2, 1, 3)  # (T, B, 1, I)
    with pytest.raises(ValueError, match=r"time is the last axis.*x\.movedim\(0, -1\), "):
        run(net, x)
    assert run(net, x.movedim(0, -1)).shape == (2, 1, 2, 7)


def test_inputs_that_fit_no_axis_say_the_shape_expected():
    net = network(batch=1, n_in=3)
    with pytest.raises(ValueError) as error:
        run(net, torch.ones(2, 1, 3, 4))  # a batch of 2 for a network of batch 1
    message = str(error.value)
    assert "time is the last axis" in message and "cells_shape (1, 1, 3)" in message
    assert "give inputs of shape (1, 1, 3) + (T,)" in message
    assert "movedim" not in message


# -- learning rules on a network without registered layers ---------------------------------------
@pytest.mark.parametrize("rule_name", ["STDP", "MSTDP", "MSTDPET", "FedeSTDP", "Hebbian"])
def test_a_rule_on_a_network_without_layers_mentions_add_layer(rule_name):
    from pysnn import learning
    from pysnn.network import SNNNetwork

    arguments = {
        "STDP": (0.01, 1.0, 1.0),
        "MSTDP": (1.0, 1.0, 0.01),
        "MSTDPET": (1.0, 1.0, 0.01, 0.9),
        "FedeSTDP": (0.01, 0.5, 0.5),
        "Hebbian": (0.01,),
    }[rule_name]
    with pytest.raises(ValueError) as info:
        getattr(learning, rule_name)(SNNNetwork().layers, *arguments)
    message = str(info.value)
    assert message.startswith(f"{rule_name}: layers is empty")
    assert "add_layer(name, connection, neuron)" in message and "Sequential" in message


def test_the_base_rule_may_still_be_built_empty_for_its_helpers():
    from collections import OrderedDict

    from pysnn.learning import LearningRule

    rule = LearningRule(OrderedDict(), {})
    assert len(rule.layers) == 0


def test_rules_take_every_parameter_by_name():
    """Keyword calls give the rules of the positional calls (PySNN's orders)."""
    import torch

    from pysnn.learning import MSTDPET, STDP
    from pysnn.network import Sequential
    from pysnn.connection import Linear
    from pysnn.neuron import Input, LIFNeuron

    def net():
        torch.manual_seed(0)
        return Sequential(Input((2, 1, 4)), Linear(4, 3, 2), LIFNeuron((2, 1, 3), thresh=1.0))

    by_position = STDP(net().layers, 0.01, 0.9, 0.8)
    by_name = STDP(layers=net().layers, lr=0.01, a_plus=0.9, a_minus=0.8)
    assert by_position.defaults == by_name.defaults
    by_position = MSTDPET(net().layers, 0.5, 0.6, 0.01, 0.9)
    by_name = MSTDPET(layers=net().layers, a_pre=0.5, a_post=0.6, lr=0.01, e_trace_decay=0.9)
    assert by_position.defaults == by_name.defaults


def test_stdp_amplitudes_default_to_one():
    import torch

    from pysnn.connection import Linear
    from pysnn.learning import STDP
    from pysnn.network import Sequential
    from pysnn.neuron import Input, LIFNeuron

    torch.manual_seed(0)
    net = Sequential(Input((2, 1, 4)), Linear(4, 3, 2), LIFNeuron((2, 1, 3), thresh=1.0))
    assert STDP(net.layers, 0.01).defaults == STDP(net.layers, 0.01, 1.0, 1.0).defaults
