"""One fixed-shape simulation step recorded once in a CUDA graph and replayed at every call.

On a GPU a pysnn step is a few dozen small kernels, so at small batches its time is the time
the host takes to launch them, not the time the device takes to run them. A CUDA graph
(:class:`torch.cuda.CUDAGraph`) records the kernels of one step once; each replay launches
them all with one call. :class:`CapturedStep` wraps that recipe for a network, its learning
rule and an optional per-step callable::

    step = CapturedStep(net, torch.zeros(B, 1, I, dtype=torch.bool, device="cuda"),
                        learning_rule=rule, reward=0.0)
    for t in range(T):
        spikes, trace = step(inputs[..., t], reward=r[t])

Each call copies the inputs into static input buffers, then runs ``network(*inputs)``,
``learning_rule.update_state()``, ``learning_rule.step(reward)`` (``step()`` when built without
a reward) and ``after_step()`` — as a replay of the graph on CUDA, eagerly everywhere else —
and copies the outputs into static output tensors. The results are those of the plain loop.

What the same API guarantees on every device (the CPU tests check it):

* the returned tensors are the same objects at every call, overwritten by the next call
  (clone them to keep them); ``inputs`` are the static input buffers (write into them and call
  ``step(*step.inputs)`` to skip the copy);
* inputs must match ``example_input`` exactly: shape and device (``ValueError``), dtype
  (``TypeError``);
* the first ``warmup`` calls run eagerly (on a side stream on CUDA, as PyTorch's CUDA graph
  documentation asks); they are real steps of the simulation, not discarded trial runs;
* what a graph would freeze is refused, on every device: forward hooks (a
  :class:`~pysnn.monitor.Monitor` with ``hook=True``; use ``hook=False`` and call
  ``monitor.record()`` after each call), neurons with ``store_trace=True``, and any other
  Python attribute that the step changes from call to call;
* tensors replaced after the step was built (``network.to(...)``, ``weight.data = ...``)
  raise a ``RuntimeError`` at the next call instead of replaying stale memory.

Synaptic delays: a connection with a delay keeps the position in its ring buffer as a Python
integer, which advances every step. A graph records one position, so one graph is recorded
per combination of positions met (at most the least common multiple of the ring depths) and
the one matching the connections' current positions is replayed; ``reset_state`` and
``load_state_dict`` between calls therefore keep working.

Host synchronisations (``.item()``, ``if tensor:``, a number read from a device tensor) cannot
be recorded; pysnn's steps and rules have none (``tests/test_no_host_sync.py``). A number
reward is never baked into the graph: it is written into the static ``reward`` tensor, which the
rule reads on the device. The rule therefore takes its path for tensor rewards, whose rounding
may differ in the last bit from its path for a Python number (MSTDPET: ``addcmul_`` instead of
``add_(alpha=lr * r)``); the plain loop given the same rewards as 0-dim tensors agrees exactly.
"""

import inspect
import math
from numbers import Real
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["CapturedStep", "capture_obstacles"]

Inputs = Union[Tensor, Sequence[Tensor]]
_SCALARS = (bool, int, float, str, type(None))
# Python attributes that may change between calls: ``training`` only by the user (.train()),
# ``_cursor`` (a delay line's position) is handled by recording one graph per position.
_IGNORED_ATTRIBUTES = {"training", "_cursor"}


# Operators that read values back to the host or whose output shape depends on the values:
# they synchronise with a CUDA device and cannot be recorded in a graph.
_HOST_READS = frozenset(
    {
        "aten.item",
        "aten._local_scalar_dense",
        "aten.is_nonzero",
        "aten.equal",
        "aten.allclose",
        "aten.nonzero",
        "aten.masked_select",
        "aten._unique",
        "aten._unique2",
        "aten.unique_dim",
        "aten.unique_consecutive",
        "aten.bincount",
        "aten.histc",
        "aten.repeat_interleave",
        "aten._assert_async",
    }
)


class _OperatorLog(TorchDispatchMode):
    """Names of the operators run, and those a CUDA graph cannot record (with the reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.obstacles: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        if name in _HOST_READS:
            self.obstacles.append(f"{name} (reads values back to the host)")
        elif name in ("aten.lift_fresh", "aten.lift_fresh_copy"):
            self.obstacles.append(f"{name} (a tensor made from Python data: a host copy on CUDA)")
        elif name in ("aten.index", "aten.index_put", "aten.index_put_"):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(
                isinstance(index, Tensor) and index.dtype in (torch.bool, torch.uint8)
                for index in indices or ()
            ):
                self.obstacles.append(f"{name} with a boolean mask (reads the mask back)")
        return func(*args, **kwargs)


def capture_obstacles(fn: Callable[[], Any]) -> List[str]:
    """Run ``fn()`` once and list the operators it called that a CUDA graph cannot record.

    Works on any device (the CPU included), so a step can be checked where no GPU is present:
    the listed operators (``.item()``, ``torch.unique``, ``nonzero``, boolean-mask indexing,
    ...) synchronise the host with a CUDA device, and recording them fails. ``fn`` really runs
    (a simulation step advances): call it on a copy of the network to keep the state.

    :returns: one description per offending call, in call order (empty: nothing found).
    """
    if not callable(fn):
        raise TypeError(f"capture_obstacles: fn must be callable, got {type(fn).__name__}")
    with _OperatorLog() as log:
        fn()
    return log.obstacles


def _flatten(value: Any, where: str) -> Tuple[List[Tensor], Any]:
    """Tensors of a (nested) tuple/list of tensors, and the structure to rebuild it."""
    if isinstance(value, Tensor):
        return [value], None
    if value is None:
        return [], "none"
    if isinstance(value, (tuple, list)):
        leaves: List[Tensor] = []
        specs = []
        for item in value:
            item_leaves, spec = _flatten(item, where)
            specs.append((len(item_leaves), spec))
            leaves += item_leaves
        return leaves, (type(value), specs)
    raise TypeError(
        f"CapturedStep: {where} must return None, a tensor or a (nested) tuple/list of tensors, got "
        f"{type(value).__name__}"
    )


def _unflatten(spec: Any, leaves: Sequence[Tensor]) -> Any:
    if spec is None:
        return leaves[0]
    if spec == "none":
        return None
    kind, specs = spec
    items, start = [], 0
    for count, item_spec in specs:
        items.append(_unflatten(item_spec, leaves[start : start + count]))
        start += count
    return kind(items)


class CapturedStep:
    """A network step (plus learning) recorded in a CUDA graph; eager off CUDA, same API.

    :param network: the network (any :class:`torch.nn.Module` whose forward takes the inputs),
        with all its parameters and buffers on the inputs' device.
    :param example_input: a tensor, or a tuple/list of tensors for a forward with several
        inputs: the shape, dtype and device every call must give. Its values are copied into the
        static input buffers; nothing runs at construction.
    :param learning_rule: ``None`` or an object with ``update_state()`` and ``step(...)`` (the
        rules of :mod:`pysnn.learning`), built for ``network``'s layers.
    :param reward: ``None`` (the rule's ``step()`` takes no reward, e.g. STDP) or an example
        reward for ``step(reward)``: a number or a 0-dim tensor (one reward for the batch), or a
        ``(B,)`` tensor (per sample). It sets the shape of the static :attr:`reward` tensor
        (the rule's weight dtype, on the network's device); every call must then give one.
    :param after_step: keyword-only; ``None`` or a callable without arguments run after the
        rule, inside the step (e.g. ``model.normalize`` for Diehl & Cook).
    :param capture: keyword-only; ``None`` (default): record a CUDA graph when the inputs are
        on a CUDA device, run eagerly otherwise. ``True`` requires CUDA; ``False`` always runs
        eagerly (same checks and copies: for comparisons and debugging).
    :param warmup: keyword-only; number of eager calls (at least 2) before the graph is
        recorded; on CUDA they run on a side stream.

    :raises TypeError: arguments of the wrong kind.
    :raises ValueError: tensors on several devices, forward hooks, ``store_trace=True`` neurons,
        ``capture=True`` without CUDA, a rule whose ``step`` does not match ``reward``.
    """

    def __init__(
        self,
        network: nn.Module,
        example_input: Inputs,
        learning_rule: Any = None,
        reward: Any = None,
        *,
        after_step: Optional[Callable[[], Any]] = None,
        capture: Optional[bool] = None,
        warmup: int = 3,
    ) -> None:
        owner = type(self).__name__
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"{owner}: network must be a torch.nn.Module, got {type(network).__name__}"
            )
        single = isinstance(example_input, Tensor)
        examples = (example_input,) if single else example_input
        if not isinstance(examples, (tuple, list)) or not examples:
            raise TypeError(
                f"{owner}: example_input must be a tensor or a non-empty tuple/list of tensors, "
                f"got {type(example_input).__name__}"
            )
        for index, example in enumerate(examples):
            if not isinstance(example, Tensor):
                raise TypeError(
                    f"{owner}: example_input[{index}] must be a tensor, got "
                    f"{type(example).__name__}"
                )
        device = examples[0].device
        for index, example in enumerate(examples):
            if example.device != device:
                raise ValueError(
                    f"{owner}: every example_input must be on one device, got {device} and "
                    f"{example.device} (example_input[{index}])"
                )
        if learning_rule is not None and not all(
            callable(getattr(learning_rule, name, None)) for name in ("update_state", "step")
        ):
            raise TypeError(
                f"{owner}: learning_rule must have update_state() and step() methods, got "
                f"{type(learning_rule).__name__}"
            )
        if after_step is not None and not callable(after_step):
            raise TypeError(
                f"{owner}: after_step must be callable, got {type(after_step).__name__}"
            )
        if capture is not None and not isinstance(capture, bool):
            raise TypeError(f"{owner}: capture must be None or a bool, got {capture!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 2:
            raise ValueError(f"{owner}: warmup must be an int >= 2 (eager calls), got {warmup!r}")
        on_cuda = device.type == "cuda"
        if capture and not (on_cuda and torch.cuda.is_available()):
            raise ValueError(
                f"{owner}: capture=True needs inputs on a CUDA device, got {device} "
                f"(CUDA available: {torch.cuda.is_available()}); use capture=None to run "
                f"eagerly there"
            )
        self.network = network
        self.learning_rule = learning_rule
        self.after_step = after_step
        self.device = device
        self.warmup = warmup
        self._captured = on_cuda if capture is None else capture
        self._single = single
        self._check_network(network, device)
        self._reward_arg = self._check_rule_reward(learning_rule, reward)
        with torch.no_grad():
            self.inputs: Tuple[Tensor, ...] = tuple(
                example.detach().clone() for example in examples
            )
        self.reward: Optional[Tensor] = self._static_reward(reward)
        self._delayed = [
            module
            for module in network.modules()
            if isinstance(getattr(module, "_cursor", None), int) and getattr(module, "max_delay", 0)
        ]
        self._calls = 0
        self._outputs: Optional[List[Tensor]] = None
        self._output_spec: Any = None
        self._graphs: Dict[Tuple[int, ...], "torch.cuda.CUDAGraph"] = {}
        self._containers: List[dict] = []
        self._pointers: Optional[Tuple[int, ...]] = None
        self._attributes: Optional[Dict[Tuple[str, str], Any]] = None
        self._stream = torch.cuda.Stream(device) if self._captured else None

    # -- construction checks -------------------------------------------------------------------
    @staticmethod
    def _check_network(network: nn.Module, device: torch.device) -> None:
        owner = "CapturedStep"
        global_hooks = [
            getattr(torch.nn.modules.module, name, {})
            for name in ("_global_forward_hooks", "_global_forward_pre_hooks")
        ]
        if any(global_hooks):
            raise ValueError(
                f"{owner}: global module forward hooks are registered; a CUDA graph replay "
                f"would not run them"
            )
        for name, module in network.named_modules():
            label = name or type(network).__name__
            if module._forward_hooks or module._forward_pre_hooks:
                raise ValueError(
                    f"{owner}: module {label!r} ({type(module).__name__}) has forward hooks "
                    f"(a Monitor with hook=True?); a CUDA graph replay would not run them. "
                    f"Use Monitor(..., hook=False) and call monitor.record() after each step"
                )
            if getattr(module, "store_trace", False):
                raise ValueError(
                    f"{owner}: module {label!r} ({type(module).__name__}) has "
                    f"store_trace=True; its growing spike history cannot be recorded in a "
                    f"graph. Build it with store_trace=False and record spikes with a Monitor "
                    f"(hook=False)"
                )
            tensors = list(module.named_parameters(recurse=False))
            tensors += list(module.named_buffers(recurse=False))
            for tensor_name, tensor in tensors:
                if tensor is not None and tensor.device != device:
                    raise ValueError(
                        f"{owner}: {label}.{tensor_name} is on {tensor.device}, the inputs on "
                        f"{device}; move the network first (network.to({str(device)!r}))"
                    )

    @staticmethod
    def _check_rule_reward(learning_rule: Any, reward: Any) -> bool:
        """Whether the rule's ``step`` gets the reward; checks that it takes one iff given."""
        owner = "CapturedStep"
        if learning_rule is None:
            if reward is not None:
                raise ValueError(f"{owner}: reward was given without a learning_rule")
            return False
        try:
            parameters = inspect.signature(learning_rule.step).parameters.values()
        except (TypeError, ValueError):  # no signature (a builtin): trust the caller
            return reward is not None
        positional = [
            p
            for p in parameters
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        required = [
            p for p in positional if p.default is p.empty and p.kind is not p.VAR_POSITIONAL
        ]
        rule = type(learning_rule).__name__
        if reward is None and required:
            raise TypeError(
                f"{owner}: {rule}.step needs a reward; pass reward= (an example: a number, a "
                f"0-dim tensor or a (B,) tensor) and give one at every call"
            )
        if reward is not None and not positional:
            raise TypeError(f"{owner}: {rule}.step takes no reward; build the step without reward=")
        return reward is not None

    def _static_reward(self, reward: Any) -> Optional[Tensor]:
        if reward is None:
            return None
        owner = type(self).__name__
        dtype = self._reward_dtype()
        if isinstance(reward, Real) and not isinstance(reward, bool):
            shape: Tuple[int, ...] = ()
        elif isinstance(reward, Tensor):
            if reward.dtype == torch.bool or reward.is_complex():
                raise TypeError(f"{owner}: reward must be real numbers, got {reward.dtype}")
            if reward.dim() > 1:
                raise ValueError(
                    f"{owner}: reward must be a number, a 0-dim or a (B,) tensor, got shape "
                    f"{tuple(reward.shape)}"
                )
            shape = tuple(reward.shape)
        else:
            raise TypeError(
                f"{owner}: reward must be None, a number or a tensor, got {type(reward).__name__}"
            )
        static = torch.zeros(shape, dtype=dtype, device=self.device)
        self._write_reward(static, reward)
        return static

    def _reward_dtype(self) -> torch.dtype:
        """The dtype the rule computes in (its first layer's weight), else the network's."""
        layers = getattr(self.learning_rule, "layers", None)
        if isinstance(layers, dict):
            for layer in layers.values():
                weight = getattr(layer, "weight", None)
                if isinstance(weight, Tensor) and weight.is_floating_point():
                    return weight.dtype
        for tensor in self.network.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.get_default_dtype()

    def _write_reward(self, static: Tensor, reward: Any) -> None:
        """Check ``reward`` (numbers and CPU tensors only: no device read) and copy it in."""
        owner = type(self).__name__
        if isinstance(reward, Real) and not isinstance(reward, bool):
            try:
                value = float(reward)
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                raise ValueError(f"{owner}: reward must be finite, got {reward!r}")
            static.fill_(value)
            return
        if not isinstance(reward, Tensor):
            raise TypeError(
                f"{owner}: reward must be a number or a tensor, got {type(reward).__name__}"
            )
        if reward.dtype == torch.bool or reward.is_complex():
            raise TypeError(f"{owner}: reward must be real numbers, got {reward.dtype}")
        if tuple(reward.shape) != tuple(static.shape) and not (
            static.dim() == 0 and reward.numel() == 1
        ):
            raise ValueError(
                f"{owner}: reward must have shape {tuple(static.shape)} (the example reward's), "
                f"got {tuple(reward.shape)}"
            )
        if reward.device.type == "cpu" and not bool(torch.isfinite(reward).all()):
            raise ValueError(f"{owner}: reward must be finite, got a tensor holding NaN or inf")
        if reward is not static:
            static.copy_(reward.detach().reshape(static.shape))

    # -- properties ----------------------------------------------------------------------------
    @property
    def captured(self) -> bool:
        """Whether the step is replayed from a CUDA graph (False: eager; see ``capture``)."""
        return self._captured

    @property
    def n_graphs(self) -> int:
        """Number of graphs recorded so far (one per combination of delay-line positions)."""
        return len(self._graphs)

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(x.shape)) for x in self.inputs)
        return (
            f"{type(self).__name__}({type(self.network).__name__}, inputs=[{shapes}], "
            f"device={self.device}, captured={self.captured}, "
            f"rule={type(self.learning_rule).__name__ if self.learning_rule else None}, "
            f"calls={self._calls}, graphs={self.n_graphs})"
        )

    # -- the step ------------------------------------------------------------------------------
    def _check_inputs(self, inputs: Tuple[Any, ...]) -> None:
        owner = type(self).__name__
        statics = self.inputs
        if len(inputs) != len(statics):
            raise TypeError(
                f"{owner}: expected {len(statics)} input tensor(s), as example_input, got "
                f"{len(inputs)}"
            )
        for index, (x, static) in enumerate(zip(inputs, statics)):
            name = "x" if self._single else f"x[{index}]"
            if x is static:
                continue
            if not isinstance(x, Tensor):
                raise TypeError(f"{owner}: {name} must be a tensor, got {type(x).__name__}")
            if x.shape != static.shape:
                raise ValueError(
                    f"{owner}: {name} must have shape {tuple(static.shape)} (the example_input's), "
                    f"got {tuple(x.shape)}"
                )
            if x.dtype != static.dtype:
                raise TypeError(
                    f"{owner}: {name} must be {static.dtype} (the example_input's), got {x.dtype}"
                )
            if x.device != static.device:
                raise ValueError(
                    f"{owner}: {name} must be on {static.device} (the example_input's), got "
                    f"{x.device}; move it first"
                )

    def _tensor_containers(self) -> List[dict]:
        """The dicts that hold the network's parameters and buffers and the rule's state."""
        containers = []
        for module in self.network.modules():
            containers += [module._parameters, module._buffers]
        layers = getattr(self.learning_rule, "layers", None)
        if isinstance(layers, dict):
            for layer in layers.values():
                state = getattr(layer, "state", None)
                if isinstance(state, dict):
                    containers.append(state)
        return [container for container in containers if container]

    def _tensor_pointers(self) -> Tuple[int, ...]:
        """Where every parameter, buffer and rule state tensor lives now."""
        return tuple(
            tensor.data_ptr()
            for container in self._containers
            for tensor in container.values()
            if isinstance(tensor, Tensor)
        )

    def _python_attributes(self) -> Dict[Tuple[str, str], Any]:
        """The plain Python values (numbers, strings, None) of every module and of the rule."""
        owners = [
            (name or type(self.network).__name__, module)
            for name, module in self.network.named_modules()
        ]
        if self.learning_rule is not None:
            owners.append((type(self.learning_rule).__name__, self.learning_rule))
        values = {}
        for label, owner in owners:
            for key, value in vars(owner).items():
                if isinstance(value, _SCALARS) and key not in _IGNORED_ATTRIBUTES:
                    values[(label, key)] = value
        return values

    def _run(self) -> List[Tensor]:
        """The step itself: network, rule, after_step; returns the output tensors."""
        result = self.network(*self.inputs)
        rule = self.learning_rule
        if rule is not None:
            rule.update_state()
            if self._reward_arg:
                rule.step(self.reward)
            else:
                rule.step()
        if self.after_step is not None:
            self.after_step()
        leaves, spec = _flatten(result, f"{type(self.network).__name__}.forward")
        if self._outputs is None:
            self._outputs = [torch.empty_like(leaf) for leaf in leaves]
            self._output_spec = spec
        elif (
            spec != self._output_spec
            or any(
                leaf.shape != out.shape or leaf.dtype != out.dtype
                for leaf, out in zip(leaves, self._outputs)
            )
            or len(leaves) != len(self._outputs)
        ):
            raise ValueError(
                f"CapturedStep: {type(self.network).__name__}.forward returned outputs of another "
                f"structure, shape or dtype than at the first call"
            )
        for leaf, out in zip(leaves, self._outputs):
            out.copy_(leaf)
        return self._outputs

    def _phase(self) -> Tuple[int, ...]:
        return tuple(module._cursor for module in self._delayed)

    def _set_phase(self, phase: Tuple[int, ...]) -> None:
        for module, cursor in zip(self._delayed, phase):
            module._cursor = cursor

    def _next_phase(self, phase: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(
            (cursor + 1) % (module.max_delay if module.uniform_delay else module.max_delay + 1)
            for module, cursor in zip(self._delayed, phase)
        )

    def _warmup_call(self) -> None:
        before = self._attributes
        if self._captured:
            stream = self._stream
            current = torch.cuda.current_stream(self.device)
            stream.wait_stream(current)
            with torch.cuda.stream(stream):
                if self._calls + 1 == self.warmup:  # the last eager call: check what it runs
                    obstacles = capture_obstacles(self._run)
                    if obstacles:
                        raise ValueError(
                            f"CapturedStep: the step of {type(self.network).__name__} calls "
                            f"{', '.join(sorted(set(obstacles)))}, which a CUDA graph cannot "
                            f"record; CapturedStep(..., capture=False) runs it eagerly"
                        )
                else:
                    self._run()
            current.wait_stream(stream)
        else:
            self._run()
        after = self._python_attributes()
        if before is not None:
            changed = [
                f"{label}.{key}: {before[(label, key)]!r} -> {after.get((label, key))!r}"
                for (label, key) in before
                if after.get((label, key), before[(label, key)]) != before[(label, key)]
            ]
            if changed:
                raise ValueError(
                    "CapturedStep: the step changes Python attributes at every call ("
                    + "; ".join(changed[:5])
                    + "); a CUDA graph would replay the values of one call. Keep such state "
                    "in tensors, or run the step without CapturedStep"
                )
        self._attributes = after

    def _capture(self, phase: Tuple[int, ...]) -> "torch.cuda.CUDAGraph":
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._run()
        except Exception as error:
            self._set_phase(phase)
            raise RuntimeError(
                f"CapturedStep: recording the step of {type(self.network).__name__} in a CUDA "
                f"graph failed ({type(error).__name__}: {error}); the step must not read tensor "
                f"values back to the host nor copy host data to the device. "
                f"CapturedStep(..., capture=False) runs it eagerly"
            ) from error
        self._graphs[phase] = graph
        return graph

    def __call__(self, *x: Tensor, reward: Any = None) -> Any:
        """One step: copy ``x`` (and ``reward``) in, run or replay, return the static outputs.

        :param x: the inputs, as ``example_input`` (same shapes, dtypes and device).
        :param reward: keyword-only; required when the step was built with a reward, refused
            otherwise: a number, or a tensor of the example reward's shape (any device).
        :returns: the network's output structure holding the static output tensors (the same
            objects at every call, overwritten by the next call).
        """
        owner = type(self).__name__
        self._check_inputs(x)
        if self.reward is None:
            if reward is not None:
                raise TypeError(f"{owner}: this step was built without a reward; got reward=")
        elif reward is None:
            raise TypeError(
                f"{owner}: this step was built with a reward; pass reward= at every call"
            )
        if self._pointers is not None and self._tensor_pointers() != self._pointers:
            raise RuntimeError(
                f"{owner}: the tensors of {type(self.network).__name__} (or of its rule) were "
                f"replaced since the step was built (network.to(), an assignment to .data, "
                f"...); build a new CapturedStep"
            )
        with torch.no_grad():
            if reward is not None:
                self._write_reward(self.reward, reward)
            for static, value in zip(self.inputs, x):
                if value is not static:
                    static.copy_(value)
            if self._calls < self.warmup:
                self._warmup_call()
                if self._calls + 1 == self.warmup:
                    self._containers = self._tensor_containers()
                    self._pointers = self._tensor_pointers()
            elif not self._captured:
                self._run()
            else:
                phase = self._phase()
                graph = self._graphs.get(phase)
                if graph is None:
                    graph = self._capture(phase)  # records, runs nothing
                graph.replay()
                self._set_phase(self._next_phase(phase))
        self._calls += 1
        return _unflatten(self._output_spec, self._outputs)
