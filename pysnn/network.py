"""SNNNetwork: a container of layers, each a (connection, postsynaptic neuron) pair."""

from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

from torch import nn

from pysnn.connection import Connection, Conv2d, Linear
from pysnn.neuron import BaseNeuron

__all__ = ["SNNNetwork"]


def _output_cells(connection: Connection) -> Tuple[int, ...]:
    """The cells a connection feeds: ``(B, 1, O)`` (Linear) or ``(B, C_out, H_out, W_out)``."""
    if isinstance(connection, Linear):
        return (connection.batch_size, 1, connection.out_features)
    return (connection.batch_size, connection.out_channels) + tuple(connection.image_out_shape)


class SNNNetwork(nn.Module):
    """Base class of spiking networks.

    Subclass it, create connections and neurons in ``__init__``, register each connection with
    its postsynaptic neuron by :meth:`add_layer`, and write the time step in ``forward`` — as in
    PySNN. Several connections may target the same neuron (recurrent and cyclic graphs).
    :meth:`add_layer` also registers the modules, so ``.to()``, ``state_dict()`` and
    :meth:`reset_state` reach them even when they are not assigned as attributes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._layers: "OrderedDict[str, Dict]" = OrderedDict()

    def add_layer(self, name: str, connection: Connection, neuron: BaseNeuron) -> None:
        """Register a layer: a connection and the neuron it feeds.

        :param name: unique, non-empty name without ``'.'``.
        :param connection: a :class:`~pysnn.connection.Linear` or
            :class:`~pysnn.connection.Conv2d`.
        :param neuron: the postsynaptic neuron (any :class:`~pysnn.neuron.BaseNeuron`).
        :raises TypeError: wrong module types.
        :raises KeyError: empty, dotted or duplicate name, or a name whose
            ``<name>_connection`` / ``<name>_neuron`` attribute already holds something else.
        :raises ValueError: the neuron's ``cells_shape`` differs from the connection's output
            cells: ``(B, 1, O)`` for ``Linear``, ``(B, C_out, H_out, W_out)`` for ``Conv2d``.

        Nothing is registered when it raises.
        """
        if not isinstance(connection, Connection):
            raise TypeError(
                f"SNNNetwork.add_layer: connection must be a pysnn Connection, "
                f"got {type(connection).__name__}"
            )
        if not isinstance(neuron, BaseNeuron):
            raise TypeError(
                f"SNNNetwork.add_layer: neuron must be a pysnn BaseNeuron (not an Input), "
                f"got {type(neuron).__name__}"
            )
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(
                f"SNNNetwork.add_layer: name must be a non-empty str without '.', got {name!r}"
            )
        if name in self._layers:
            raise KeyError(f"SNNNetwork.add_layer: a layer named {name!r} already exists")
        if isinstance(connection, Linear):
            layer_type = "linear"
        elif isinstance(connection, Conv2d):
            layer_type = "conv2d"
        else:
            raise TypeError(
                f"SNNNetwork.add_layer: connection must be Linear or Conv2d, "
                f"got {type(connection).__name__}"
            )
        expected = _output_cells(connection)
        cells = getattr(neuron, "cells_shape", None)
        if cells is not None and tuple(cells) != expected:
            raise ValueError(
                f"SNNNetwork.add_layer: layer {name!r}: the neuron's cells_shape {tuple(cells)} "
                f"does not match the {type(connection).__name__}'s output shape {expected}"
            )
        known = {id(module) for module in self.modules()}
        to_add = []
        for role, module in (("connection", connection), ("neuron", neuron)):
            if id(module) in known:
                continue
            attribute = f"{name}_{role}"
            if hasattr(self, attribute) or attribute in self._modules:
                raise KeyError(
                    f"SNNNetwork.add_layer: cannot register layer {name!r}: the attribute "
                    f"{attribute!r} already exists and holds another object"
                )
            to_add.append((attribute, module))
            known.add(id(module))
        self._layers[name] = {"connection": connection, "neuron": neuron, "type": layer_type}
        for attribute, module in to_add:
            self.add_module(attribute, module)

    @property
    def layers(self) -> "OrderedDict[str, Dict]":
        """The registered layers: name → ``{"connection", "neuron", "type"}`` (the modules)."""
        return self._layers

    def layer_state_dict(self) -> "OrderedDict[str, Dict]":
        """Per layer, the live state of its connection and neuron.

        :returns: ``OrderedDict`` name → ``{"connection": state, "neuron": state, "type":
            "linear" | "conv2d"}``; the tensors share memory with the modules' buffers, so
            whoever keeps them sees every step's values (until the network is moved with
            ``.to()``, which replaces the buffers).
        """
        return OrderedDict(
            (
                name,
                {
                    "connection": layer["connection"].state_dict(),
                    "neuron": layer["neuron"].state_dict(),
                    "type": layer["type"],
                },
            )
            for name, layer in self._layers.items()
        )

    def reset_state(self) -> None:
        """Reset the state (voltages, traces, spikes in flight) of every submodule that has one."""
        for module in self.modules():
            if module is not self and not isinstance(module, SNNNetwork):
                reset = getattr(module, "reset_state", None)
                if callable(reset):
                    reset()

    def run(
        self,
        inputs: "torch.Tensor",
        learning_rule: object = None,
        reward: object = None,
        monitors: tuple = (),
        reset: bool = True,
        *,
        progress: bool = False,
    ) -> "Optional[torch.Tensor]":
        """Simulate over the last (time) axis of ``inputs``; see :func:`pysnn.simulation.run`.

        :param inputs: input with time last, e.g. ``(B, 1, I, T)``.
        :param learning_rule: ``None`` or a rule with ``update_state()`` and ``step(...)``.
        :param reward: per-step reward for the rule (number, tensor with time last, sequence or
            callable ``(t, result)``), see :func:`pysnn.simulation.run`.
        :param monitors: monitors stepped by the loop (those created with ``hook=False``).
        :param reset: reset the network (and the rule) first.
        :param progress: keyword-only; tqdm progress bar.
        :returns: the outputs stacked with time last, ``(*out_shape, T)``.
        """
        from pysnn.simulation import run  # late import: simulation imports the neuron modules

        return run(self, inputs, learning_rule, reward, monitors, reset, progress=progress)
