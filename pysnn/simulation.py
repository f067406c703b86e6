"""A simulation loop: drive a network over the time axis of an input, with optional learning.

:func:`run` is the loop PySNN users write by hand::

    for t in range(inputs.shape[-1]):
        out = network(inputs[..., t])
        rule.update_state()
        rule.step(reward)

plus resetting, collecting the outputs and recording; it adds nothing per step beyond one copy
of the output into a preallocated buffer (see ``benchmarks/monitor_overhead.py``).
"""

import inspect
import math
import warnings
from numbers import Real
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from pysnn.monitor import Monitor, NetworkMonitor

__all__ = ["run"]

Reward = Union[None, float, Tensor, Sequence[float], np.ndarray, Callable[[int, Any], Any]]


def _reward_getter(reward: Reward, n_steps: int) -> Optional[Callable[[int, Any], Any]]:
    """Turn the ``reward`` argument into ``f(t, output) -> reward of step t`` (None: no reward)."""
    if reward is None:
        return None
    if callable(reward) and not isinstance(reward, Tensor):
        return reward
    if isinstance(reward, Real) and not isinstance(reward, bool):
        return lambda t, output: reward
    if isinstance(reward, Tensor):
        if reward.dim() == 0:
            return lambda t, output: reward
        if reward.shape[-1] != n_steps:
            raise ValueError(
                f"run: a reward tensor must be 0-dim or have the time axis last with "
                f"{n_steps} steps (like the inputs), got shape {tuple(reward.shape)}"
            )
        return lambda t, output: reward[..., t]
    if isinstance(reward, (list, tuple, np.ndarray)):
        try:
            values = np.asarray(reward, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"run: a reward sequence must hold numbers, one per step, got {error}"
            ) from None
        if values.shape != (n_steps,):
            raise ValueError(
                f"run: a reward sequence must have one value per step ({n_steps}), "
                f"got shape {values.shape}"
            )
        floats = [float(v) for v in values]
        return lambda t, output: floats[t]
    raise TypeError(
        f"run: reward must be None, a number, a tensor, a sequence of numbers or a callable "
        f"(t, output) -> reward, got {type(reward).__name__}"
    )


def _non_finite(name: str, detail: str) -> ValueError:
    return ValueError(
        f"run: {name} must be finite (no NaN or inf), got {detail}; nothing was learnt from it"
    )


def _check_rewards(reward: Reward) -> None:
    """Refuse non-finite rewards before the first step (so no weight changes first).

    Numbers, sequences and CPU tensors are checked here; tensors on other devices are not
    (that would synchronise with the device): the learning rule sees them as they are.
    """
    if isinstance(reward, Real) and not isinstance(reward, bool):
        if not math.isfinite(float(reward)):
            raise _non_finite("reward", repr(reward))
    elif isinstance(reward, Tensor):
        if reward.device.type == "cpu" and reward.is_floating_point():
            finite = torch.isfinite(reward)
            if not bool(finite.all()):
                bad = (~finite).nonzero()[0].tolist()
                raise _non_finite("reward", f"{reward[tuple(bad)].item()!r} at index {bad}")
    elif isinstance(reward, (list, tuple, np.ndarray)):
        values = np.asarray(reward, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise _non_finite("reward", f"{float(values[bad[0]])!r} at step {int(bad[0])}")


def _check_reward_value(value: Any, t: int) -> None:
    """A callable's reward of step ``t``: must be finite (host numbers and CPU tensors only)."""
    if isinstance(value, Real) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise _non_finite(f"reward (the callable's value at step {t})", repr(value))
    elif isinstance(value, Tensor) and value.device.type == "cpu" and value.is_floating_point():
        if not bool(torch.isfinite(value).all()):
            raise _non_finite(f"reward (the callable's value at step {t})", "a non-finite tensor")


def _changed_output(t: int, out: Tensor, shape: torch.Size, dtype: torch.dtype) -> None:
    """Raise for an output of step ``t`` that differs in shape or dtype from step 0's."""
    if out.shape != shape:
        raise ValueError(
            f"run: the network's output changed shape at step {t}: {tuple(out.shape)}, "
            f"but step 0 gave {tuple(shape)} (every step must return the same shape; it is "
            f"not broadcast)"
        )
    raise TypeError(
        f"run: the network's output changed dtype at step {t}: {out.dtype}, but step 0 gave "
        f"{dtype} (every step must return the same dtype; it is not cast)"
    )


def _reward_use(learning_rule: Any) -> "tuple[bool, bool]":
    """``(takes_reward, needs_reward)`` of ``learning_rule.step``, read from its signature.

    A signature that cannot be read (a builtin, ``*args``) counts as taking an optional reward.
    """
    try:
        signature = inspect.signature(learning_rule.step)
    except (TypeError, ValueError):
        return True, False
    takes = needs = True
    try:
        signature.bind(1.0)
    except TypeError:
        takes = False
    try:
        signature.bind()
        needs = False
    except TypeError:
        pass
    return takes, needs


_REWARD_KINDS = (
    "a number, a tensor or sequence with one value per step (time last), or a callable "
    "(t, output) -> reward"
)


def _check_reward_use(learning_rule: Any, reward: Reward) -> bool:
    """Refuse, before the first step, a reward the rule cannot take or a missing one it needs.

    :returns: whether the rule's ``step`` needs a reward (then a callable that returns ``None``
        is an error too, raised at that step).
    """
    takes, needs = _reward_use(learning_rule)
    name = type(learning_rule).__name__
    if reward is not None and not takes:
        raise TypeError(
            f"run: {name} takes no reward ({name}.step() has no reward argument): it is not "
            f"reward-modulated. Drop reward=..., or use a reward-modulated rule such as "
            f"pysnn.learning.MSTDP or MSTDPET"
        )
    if reward is None and needs:
        raise TypeError(
            f"run: {name} needs a reward ({name}.step(reward)): it is reward-modulated. Pass "
            f"reward=...: {_REWARD_KINDS}"
        )
    return needs


def _input_shapes(network: Any) -> list:
    """The ``cells_shape`` of each input module (:class:`pysnn.neuron.BaseInput`) of a network."""
    from pysnn.neuron import BaseInput  # late import: the neuron module is heavy

    if not isinstance(network, nn.Module):
        return []
    return [tuple(m.cells_shape) for m in network.modules() if isinstance(m, BaseInput)]


def _fits(shape: "tuple[int, ...]", cells: "tuple[int, ...]") -> bool:
    """Whether a step's input of ``shape`` broadcasts to ``cells`` without growing it."""
    try:
        return tuple(torch.broadcast_shapes(shape, cells)) == cells
    except RuntimeError:
        return False


def _time_axis_hint(network: Any, inputs: Tensor) -> Optional[str]:
    """A hint when the inputs' slices ``inputs[..., t]`` do not fit the network's Input.

    ``None`` when the network has no single Input or the slices fit it (the error is another).
    """
    shapes = _input_shapes(network)
    if len(shapes) != 1:
        return None
    cells = shapes[0]
    step = tuple(inputs.shape[:-1])
    if _fits(step, cells):
        return None
    n_steps = inputs.shape[-1]
    hint = (
        f"run: inputs of shape {tuple(inputs.shape)} give {n_steps} step"
        f"{'' if n_steps == 1 else 's'} inputs[..., t] of shape {step} (time is the last axis), "
        f"which do not fit the network's Input of cells_shape {cells}"
    )
    # An axis that could be time: moved last, the slices are the Input's shape (the Input
    # passes its input on as given, so the connections need the exact shape), or as many
    # values, which a reshape fixes.
    fixes = []
    for axis in range(inputs.dim() - 1):
        moved = tuple(inputs.movedim(axis, -1).shape)
        steps = inputs.shape[axis]
        if moved[:-1] == cells:
            fixes.append((0, axis, f"x.movedim({axis}, -1)", moved))
        elif math.prod(moved[:-1]) == math.prod(cells):
            target = cells + (steps,)
            shape = ", ".join(str(n) for n in target)
            fixes.append((1, axis, f"x.movedim({axis}, -1).reshape({shape})", target))
    if fixes:
        _, axis, fix, shape = min(fixes)
        return (
            f"{hint}. If axis {axis} is time ({inputs.shape[axis]} steps), move it last: "
            f"run(network, {fix}, ...) (shape {shape})"
        )
    return f"{hint}: give inputs of shape {cells} + (T,)"


def _reset_rule(learning_rule: Any) -> None:
    reset = getattr(learning_rule, "reset_state", None)
    if callable(reset):
        try:
            reset()
        except NotImplementedError:
            pass


def _progress(iterable, enabled: bool, total: int):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("run: progress=True needs tqdm (pip install tqdm); running without a bar")
        return iterable
    return tqdm(iterable, total=total, unit="step")


def _check_cuda_graph(cuda_graph: Any, network: Any, learning_rule: Any, reward: Any) -> Any:
    """The :class:`~pysnn.cuda_graph.CapturedStep` given to :func:`run` (None for ``False`` or
    ``True``, which builds one later); clear errors for what a graph cannot run."""
    from pysnn.cuda_graph import CapturedStep

    if isinstance(cuda_graph, CapturedStep):
        if cuda_graph.network is not network or cuda_graph.learning_rule is not learning_rule:
            raise ValueError(
                "run: the CapturedStep given as cuda_graph was built for another network or "
                "learning rule"
            )
    elif not isinstance(cuda_graph, bool):
        raise TypeError(
            f"run: cuda_graph must be a bool or a pysnn.cuda_graph.CapturedStep, "
            f"got {type(cuda_graph).__name__}"
        )
    if cuda_graph is not False and callable(reward) and not isinstance(reward, Tensor):
        raise ValueError(
            "run: a reward callable cannot be used with cuda_graph (it needs the step's output "
            "before learning, inside one recorded step); pass the rewards as a tensor (..., T)"
        )
    return cuda_graph if isinstance(cuda_graph, CapturedStep) else None


def run(
    network: nn.Module,
    inputs: Tensor,
    learning_rule: Any = None,
    reward: Reward = None,
    monitors: Sequence[Union[Monitor, NetworkMonitor]] = (),
    reset: bool = True,
    *,
    progress: bool = False,
    cuda_graph: Any = False,
) -> Optional[Tensor]:
    """Simulate ``network`` over the last (time) axis of ``inputs``.

    Each step ``t``: ``out = network(inputs[..., t])``; then, with a learning rule,
    ``learning_rule.update_state()`` and ``learning_rule.step(r_t)`` (``step()`` when there is
    no reward); then monitors created with ``hook=False`` count the step (and record, honouring
    their ``every``). Monitors with a hook (the default) record by themselves after their
    module's forward, whether or not they are listed here. Everything runs under
    :func:`torch.no_grad`. The result is bit for bit that of the hand-written loop.

    :param network: the network (any module whose forward takes one time slice).
    :param inputs: input with time **last**, e.g. ``(B, 1, I, T)`` bool spikes from
        :func:`pysnn.encoding.poisson_encoding`.
    :param learning_rule: ``None`` or an object with ``update_state()`` and ``step(...)``, e.g.
        :class:`pysnn.learning.MSTDPET`.
    :param reward: for the learning rule, ``r_t`` of step ``t``:

        * ``None``: ``step()`` is called without argument;
        * a number or 0-dim tensor: the same reward every step;
        * a tensor with the time axis last, ``(T,)`` or e.g. ``(B, T)``: ``reward[..., t]``
          (a tensor, stays on its device: no host synchronisation);
        * a list/tuple/1-D array of T numbers: ``float(reward[t])``;
        * a callable ``reward(t, result)`` with ``result`` what the network's forward returned
          at step ``t`` (e.g. the ``(spikes, trace)`` tuple): its return value (``None`` →
          ``step()`` without argument).
    :param monitors: :class:`~pysnn.monitor.Monitor` / :class:`~pysnn.monitor.NetworkMonitor`
        objects; those without a hook are stepped by the loop, after the learning rule.
        Monitors are not reset by :func:`run`.
    :param reset: call ``network.reset_state()`` and ``learning_rule.reset_state()`` (when it
        has one that does not raise ``NotImplementedError``) before the first step.
    :param progress: keyword-only; show a tqdm progress bar (if tqdm is installed).
    :param cuda_graph: keyword-only; ``True`` runs each step (forward, ``update_state()``,
        ``step(r_t)``) as a replay of a CUDA graph recorded once
        (:class:`pysnn.cuda_graph.CapturedStep`, built after the reset from ``inputs[..., 0]``),
        or an existing :class:`~pysnn.cuda_graph.CapturedStep` of this network and rule to
        reuse across calls. Off CUDA the step runs eagerly, so a script runs everywhere. A
        reward callable cannot be used (it needs the step's output before learning, inside one
        graph), nor monitors with a hook (use ``hook=False``). Rewards go through the rule's
        tensor path: the same numbers as this loop given 0-dim tensor rewards.
    :returns: the network's outputs stacked along a new **last** axis (time last, like the
        input): ``(*out_shape, T)``. When the forward returns a tuple, its first element (the
        output spikes) is stacked. ``None`` if the forward returns ``None``.
    :raises TypeError: wrong argument types, a ``reward`` for a rule whose ``step()`` takes
        none (e.g. :class:`~pysnn.learning.STDP`) or none for a rule that needs one (e.g.
        :class:`~pysnn.learning.MSTDPET`; both before the first step), or an output whose dtype differs from step 0's
        (it is not cast into the output buffer; the message names the step and both dtypes).
    :raises ValueError: ``inputs`` without a time step, inputs whose slices ``inputs[..., t]``
        do not fit the network's ``Input`` (the message says that time is the last axis and,
        where another axis could be time, which ``movedim`` fixes it), reward of the wrong length, a reward
        without learning rule, a non-finite ``reward`` (numbers, sequences and CPU tensors are
        checked before the first step, so no weight changes; a callable's host values before
        each step's update), an output whose shape differs from step 0's (it is not
        broadcast; the message names the step and both shapes), or a monitored variable that
        is no longer a tensor.
    """
    if not callable(network):
        raise TypeError(f"run: network must be a callable module, got {type(network).__name__}")
    if not isinstance(inputs, Tensor):
        raise TypeError(f"run: inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() == 0 or inputs.shape[-1] == 0:
        raise ValueError(
            f"run: inputs must have a time axis last with at least one step, "
            f"got shape {tuple(inputs.shape)}"
        )
    n_steps = inputs.shape[-1]
    if learning_rule is not None:
        for method in ("update_state", "step"):
            if not callable(getattr(learning_rule, method, None)):
                raise TypeError(
                    f"run: learning_rule must have an {method}() method, "
                    f"got {type(learning_rule).__name__}"
                )
    elif reward is not None:
        raise ValueError("run: reward was given without a learning_rule")
    needs_reward = learning_rule is not None and _check_reward_use(learning_rule, reward)
    reward_at = _reward_getter(reward, n_steps)
    _check_rewards(reward)
    # A callable's values are checked as they come (host numbers and CPU tensors only).
    check_each = callable(reward) and not isinstance(reward, Tensor)
    if isinstance(monitors, (Monitor, NetworkMonitor)):
        monitors = (monitors,)
    for monitor in monitors:
        if not isinstance(monitor, (Monitor, NetworkMonitor)):
            raise TypeError(
                f"run: monitors must be Monitor or NetworkMonitor objects, "
                f"got {type(monitor).__name__}"
            )
    if not isinstance(reset, bool):
        raise TypeError(f"run: reset must be a bool, got {reset!r}")
    stepped = [monitor for monitor in monitors if not monitor.attached]
    captured = _check_cuda_graph(cuda_graph, network, learning_rule, reward)
    for monitor in monitors:
        # A monitored variable set to None: a clear error now, not one from deep in a forward.
        monitor._check_sources()

    if reset:
        reset_state = getattr(network, "reset_state", None)
        if callable(reset_state):
            reset_state()
        if learning_rule is not None:
            _reset_rule(learning_rule)

    outputs: Optional[Tensor] = None
    returns_none = False
    if cuda_graph is True:
        from pysnn.cuda_graph import CapturedStep

        first = None if reward_at is None else reward_at(0, None)
        captured = CapturedStep(network, inputs[..., 0], learning_rule, first)
    with torch.no_grad():
        for t in _progress(range(n_steps), progress, n_steps):
            if captured is not None:
                # forward, update_state() and step(r_t) in one replay
                value = None if reward_at is None else reward_at(t, None)
                result = captured(inputs[..., t], reward=value)
            elif t == 0:
                try:
                    result = network(inputs[..., t])
                except ValueError as error:
                    hint = _time_axis_hint(network, inputs)
                    if hint is None:
                        raise
                    raise ValueError(f"{hint} ({error})") from error
            else:
                result = network(inputs[..., t])
            out = result[0] if isinstance(result, (tuple, list)) else result
            if out is None:
                returns_none = True
            elif not isinstance(out, Tensor):
                raise TypeError(
                    f"run: the network's forward must return a tensor or a tuple starting with "
                    f"one, got {type(out).__name__}"
                )
            else:
                if outputs is None:
                    # Time first while filling (contiguous row copies), moved last at the end.
                    outputs = out.new_empty((n_steps,) + tuple(out.shape))
                    out_shape = out.shape
                    out_dtype = out.dtype
                elif out.shape != out_shape or out.dtype != out_dtype:
                    _changed_output(t, out, out_shape, out_dtype)
                outputs[t].copy_(out)
            if learning_rule is not None and captured is None:
                learning_rule.update_state()
                if reward_at is None:
                    learning_rule.step()
                else:
                    value = reward_at(t, result)
                    if value is None:
                        if needs_reward:
                            raise TypeError(
                                f"run: the reward callable returned None at step {t}, but "
                                f"{type(learning_rule).__name__}.step() needs a reward"
                            )
                        learning_rule.step()
                    else:
                        if check_each:
                            _check_reward_value(value, t)
                        learning_rule.step(value)
            for monitor in stepped:
                monitor._count_step()
    if returns_none or outputs is None:
        return None
    return outputs.movedim(0, -1).contiguous()
