"""SNNNetwork: a container of layers, each a (connection, postsynaptic neuron) pair."""

import inspect
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch

from torch import Tensor, nn

from pysnn.connection import AdaptiveMaxPool2d, Connection, Conv2d, Linear, MaxPool2d
from pysnn.neuron import BaseInput, BaseNeuron

__all__ = ["SNNNetwork", "Sequential", "Flatten"]


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


class Flatten(nn.Module):
    """Flatten feature maps ``(B, C, H, W)`` into a row ``(B, 1, C·H·W)``, spikes and traces
    alike, so that a :class:`~pysnn.connection.Linear` can follow a convolutional layer.

    :class:`Sequential` inserts one by itself where a 4-D output feeds a ``Linear`` whose
    ``in_features`` is ``C·H·W``; it can also be given explicitly. It keeps no state.
    """

    def forward(self, x: Tensor, trace: Tensor) -> Tuple[Tensor, Tensor]:
        """``(spikes, trace)`` of shape ``(B, ...)`` → both reshaped to ``(B, 1, N)``."""
        batch = x.shape[0]
        return x.reshape(batch, 1, -1), trace.reshape(batch, 1, -1)

    def reset_state(self) -> None:
        """Flattening keeps no state."""


_POOLS = (MaxPool2d, AdaptiveMaxPool2d)
_Chain = Union[nn.Module, "Mapping[str, nn.Module]"]


def _describe(position: int, name: str, module: nn.Module) -> str:
    return f"position {position} ({type(module).__name__} {name!r})"


def _takes_trace(neuron: BaseNeuron) -> bool:
    """Whether the neuron's forward takes the presynaptic trace too (e.g. ``FedeNeuron``)."""
    try:
        parameters = inspect.signature(neuron.forward).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the plain neuron call
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in parameters if p.kind in positional) >= 2


def _pooled_shape(pool: nn.Module, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The output shape of a spike pooling module for ``(B, C, H, W)`` inputs."""
    dummy = torch.empty(shape, device="meta")
    if isinstance(pool, MaxPool2d):
        out = nn.functional.max_pool2d(
            dummy, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode
        )
    else:
        out = nn.functional.adaptive_max_pool2d(dummy, pool.output_size)
    return tuple(out.shape)


class Sequential(SNNNetwork):
    """A feed-forward :class:`SNNNetwork` built from a chain of modules: no ``forward`` to write.

    The chain starts with an :class:`~pysnn.neuron.Input`; each connection
    (:class:`~pysnn.connection.Linear` or :class:`~pysnn.connection.Conv2d`) must be followed by
    its postsynaptic neuron, and the pair becomes a layer (:meth:`SNNNetwork.add_layer`), so every
    learning rule, :class:`~pysnn.monitor.Monitor` and :func:`pysnn.simulation.run` work as with
    a hand-written network. Between a neuron (or the input) and the next connection there may be
    :class:`~pysnn.connection.MaxPool2d`, :class:`~pysnn.connection.AdaptiveMaxPool2d` and
    :class:`Flatten` modules; a ``Flatten`` is inserted by itself where ``(B, C, H, W)`` maps
    feed a ``Linear`` with ``in_features = C·H·W``.

    One step, :meth:`forward`, is what one writes by hand::

        x, trace = input(spikes)
        x, trace = fc1(x, trace)
        x, trace = neuron1(x)           # neuron1(x, trace) for a FedeNeuron
        ...                             # pooling: x, trace = pool(x, trace)
        return x, trace                 # the last neuron's spikes and trace

    :param modules: the chain, either as positional modules, as one ``OrderedDict`` (or dict)
        name → module, or as keyword arguments ``name=module`` (in order; not mixed with
        positional modules). Named modules are registered under their names and a layer is named
        after its connection. Positional modules get names: ``"input"``; layers ``"fc1"``,
        ``"fc2"``, … for ``Linear`` and ``"conv1"``, … for ``Conv2d`` (their modules registered as
        ``fc1_connection`` and ``fc1_neuron``, as :meth:`~SNNNetwork.add_layer` does); pooling
        ``"pool1"``, …; flattening ``"flatten1"``, ….
    :raises TypeError: a module of a kind the chain cannot hold, a chain that does not start with
        an ``Input``, a connection not followed by a neuron (or a neuron not after a
        connection), positional modules mixed with names.
    :raises ValueError: an empty chain or one without a layer, shapes (batch included) that do
        not match between neighbours, a pooling window that does not fit.
    :raises KeyError: a name that cannot be registered (see :meth:`~SNNNetwork.add_layer`).

    Every message names the position in the chain (0 is the input) and what was expected.

    >>> import torch
    >>> from pysnn.connection import Linear
    >>> from pysnn.network import Sequential
    >>> from pysnn.neuron import Input, LIFNeuron
    >>> net = Sequential(
    ...     input=Input((1, 1, 3), 1.0, alpha_t=1.0, tau_t=0.8),
    ...     fc1=Linear(3, 2, 1, 1.0, 1),
    ...     lif1=LIFNeuron((1, 1, 2), 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.8, 0.8),
    ... )
    >>> list(net.layers)
    ['fc1']
    """

    def __init__(self, *modules: _Chain, **named: nn.Module) -> None:
        super().__init__()
        if modules and named:
            raise TypeError(
                "Sequential: give the modules either positionally or as name=module keywords, "
                "not both"
            )
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            items = list(modules[0].items())
            given_names = True
        elif named:
            items = list(named.items())
            given_names = True
        else:
            items = [(None, module) for module in modules]
            given_names = False
        if not items:
            raise ValueError(
                "Sequential: the chain is empty; expected an Input, then a connection (Linear or "
                "Conv2d) and its neuron, e.g. Sequential(Input(...), Linear(...), LIFNeuron(...))"
            )
        # What forward runs after the input: (module, passes the trace to it)
        self._steps: List[Tuple[nn.Module, bool]] = []
        counts: Dict[str, int] = {}

        def auto_name(stem: str) -> str:
            counts[stem] = counts.get(stem, 0) + 1
            return f"{stem}{counts[stem]}"

        def register(name: str, module: nn.Module, where: str) -> None:
            try:
                self.add_module(name, module)
            except (KeyError, TypeError) as error:
                raise type(error)(f"Sequential: {where}: {_message(error)}") from None

        shape: Tuple[int, ...] = ()
        previous = ""  # the description of the module before, for the messages
        pending: Optional[Tuple[int, str, Connection]] = None  # a connection awaiting its neuron
        for position, (name, module) in enumerate(items):
            if given_names and not isinstance(name, str):
                raise TypeError(f"Sequential: position {position}: names must be str, got {name!r}")
            if not isinstance(module, nn.Module):
                raise TypeError(
                    f"Sequential: position {position}: expected a pysnn module (Input, Linear, "
                    f"Conv2d, a neuron, MaxPool2d, AdaptiveMaxPool2d or Flatten), got "
                    f"{type(module).__name__}"
                )
            kind = type(module).__name__
            if position == 0:
                if not isinstance(module, BaseInput):
                    raise TypeError(
                        f"Sequential: position 0 must be the Input (pysnn.neuron.Input) that "
                        f"takes the spikes of each step, got {kind}"
                    )
                name = name if given_names else "input"
                register(name, module, _describe(0, name, module))
                # Not a second registration: the module is registered under its name above.
                self.__dict__["_input"] = module
                shape = tuple(module.cells_shape)
                previous = _describe(0, name, module)
                continue
            if isinstance(module, BaseInput):
                raise TypeError(
                    f"Sequential: position {position}: an Input can only be the first module "
                    f"of the chain, got another {kind}"
                )
            if pending is not None and not isinstance(module, BaseNeuron):
                at, _, connection = pending
                raise TypeError(
                    f"Sequential: position {at}: the {type(connection).__name__} must be "
                    f"followed by its postsynaptic neuron (e.g. LIFNeuron), but position "
                    f"{position} is a {kind}"
                )
            if isinstance(module, Connection):
                if not isinstance(module, (Linear, Conv2d)):
                    raise TypeError(
                        f"Sequential: position {position}: connections must be Linear or Conv2d, "
                        f"got {kind}"
                    )
                stem = "fc" if isinstance(module, Linear) else "conv"
                name = name if given_names else auto_name(stem)
                where = _describe(position, name, module)
                if isinstance(module, Linear):
                    expected = (module.batch_size, 1, module.in_features)
                    flat = (shape[0], 1, int(torch.Size(shape[1:]).numel())) if shape else ()
                    if len(shape) == 4 and flat == expected:
                        flatten = Flatten()
                        register(auto_name("flatten"), flatten, where)
                        self._steps.append((flatten, True))
                        shape = flat
                else:
                    expected = (module.batch_size, module.in_channels) + tuple(module.im_dims)
                if shape != expected:
                    hint = ""
                    if isinstance(module, Linear) and len(shape) == 4:
                        hint = (
                            f" (flattened, that is {shape[1] * shape[2] * shape[3]} "
                            f"in_features)"
                        )
                    raise ValueError(
                        f"Sequential: {where} expects inputs of shape {expected} "
                        f"(batch_size, {'1, in_features' if stem == 'fc' else 'C_in, H, W'}), "
                        f"but {previous} gives {shape}{hint}"
                    )
                if given_names:
                    register(name, module, where)
                pending = (position, name, module)
                self._steps.append((module, True))
                previous = where
                continue
            if isinstance(module, BaseNeuron):
                if pending is None:
                    raise TypeError(
                        f"Sequential: position {position}: a {kind} must follow a connection "
                        f"(Linear or Conv2d) that feeds it, but {previous} comes before it"
                    )
                at, layer, connection = pending
                where = _describe(position, name if given_names else f"{layer}_neuron", module)
                if given_names:
                    register(name, module, where)
                try:
                    self.add_layer(layer, connection, module)
                except (TypeError, KeyError, ValueError) as error:
                    raise type(error)(
                        f"Sequential: positions {at}-{position} (layer {layer!r}): "
                        f"{_message(error)}"
                    ) from None
                self._steps.append((module, _takes_trace(module)))
                shape = tuple(module.cells_shape)
                pending = None
                previous = where
                continue
            if isinstance(module, _POOLS + (Flatten,)):
                stem = "flatten" if isinstance(module, Flatten) else "pool"
                name = name if given_names else auto_name(stem)
                where = _describe(position, name, module)
                if isinstance(module, Flatten):
                    shape = (shape[0], 1, int(torch.Size(shape[1:]).numel()))
                else:
                    if len(shape) != 4:
                        raise ValueError(
                            f"Sequential: {where} pools (B, C, H, W) feature maps, but "
                            f"{previous} gives {shape}"
                        )
                    try:
                        shape = _pooled_shape(module, shape)
                    except RuntimeError as error:
                        raise ValueError(
                            f"Sequential: {where} does not fit the {shape} maps of "
                            f"{previous}: {error}"
                        ) from None
                register(name, module, where)
                self._steps.append((module, True))
                previous = where
                continue
            raise TypeError(
                f"Sequential: position {position}: cannot chain a {kind}; expected a connection "
                f"(Linear, Conv2d) followed by a neuron, MaxPool2d, AdaptiveMaxPool2d or Flatten"
            )
        if pending is not None:
            at, _, connection = pending
            raise TypeError(
                f"Sequential: position {at}: the {type(connection).__name__} at the end of the "
                f"chain must be followed by its postsynaptic neuron (e.g. LIFNeuron)"
            )
        if not self._layers:
            raise ValueError(
                "Sequential: the chain has no layer; expected a connection (Linear or Conv2d) "
                "followed by its neuron after the Input"
            )
        self.output_shape: Tuple[int, ...] = shape

    def forward(self, spikes: Tensor) -> Tuple[Tensor, Tensor]:
        """One time step through the chain.

        :param spikes: the input of this step, broadcastable to the ``Input``'s ``cells_shape``.
        :returns: ``(spikes, trace)`` of the last module (``output_shape``).
        """
        x, trace = self._input(spikes)
        for module, with_trace in self._steps:
            if with_trace:
                x, trace = module(x, trace)
            else:  # a neuron that takes its input only: the trace is its own
                x, trace = module(x)
        return x, trace


def _message(error: Exception) -> str:
    """The text of an exception (a KeyError's without the quotes ``str`` adds)."""
    return str(error.args[0]) if error.args else str(error)
