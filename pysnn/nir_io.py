"""Export to and import from NIR, the Neuromorphic Intermediate Representation (PyPI ``nir``).

:func:`to_nir` turns a pysnn network into a ``nir.NIRGraph``; :func:`from_nir` builds a pysnn
network from a graph (or a file written by ``nir.write``). Both are reachable as
``pysnn.to_nir`` / ``pysnn.from_nir``; ``nir`` is imported on first use
(``pip install "pysnn[nir]"``).

NIR describes continuous-time dynamics: time constants and delays are in **seconds**, there is no
time step in the graph (pysnn writes its ``dt`` into the graph's metadata as a hint). pysnn's
equations are forward-Euler steps of NIR's, so the mapping is exact:

* ``Input`` → ``Input``; ``Linear`` → ``Linear``; ``Conv2d`` → ``Conv2d`` (zero bias), the
  target neuron's gain ``f`` folded into the weights; a reshape before a Linear → ``Flatten``;
* a delay of ``d`` steps → ``Delay(d·dt)`` (per-synapse delays: one branch per distinct value);
  a connection reading a neuron's spikes of the previous step → one more step of ``Delay``;
* ``MaxPool2d`` on spikes → ``SumPool2d`` → ``Threshold(0)``;
* exponential ``LIFNeuron`` → ``LIF(tau=τ_v, r=1)``, ``f = α_v``; linear (decay ``λ < 1``) →
  ``LIF(tau=dt/(1-λ), r=1)``, ``f = α_v/(1-λ)``; ``IFNeuron`` (or ``λ = 1``) →
  ``IF(r=1/dt)``, ``f = α_v``; ``CubaLIFNeuron`` → ``CubaLIF`` with unit gains
  (``w_in = tau_syn/dt``, ``r = tau_mem/dt``).

Voltages are shifted by ``-v_rest`` (so ``v_leak = v_reset = 0``) and pysnn's ``v >= θ`` becomes
NIR's strict ``v > θ'`` with ``θ' = nextafter(θ - v_rest, -inf)`` in the state's dtype, exact on
ties. ``canonical=False`` writes the literal mapping instead (``r = α_v``,
``v_leak = v_reset = v_rest``). Refractory periods, adaptive thresholds, FedeNeurons and traces
have no NIR counterpart (see :func:`to_nir`); learning-rule state is never part of a graph.
"""

import math
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from numbers import Real
from os import PathLike
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from pysnn import neuron as _neuron
from pysnn.connection import AdaptiveMaxPool2d, Conv2d, Linear, MaxPool2d
from pysnn.network import SNNNetwork
from pysnn.neuron import (
    AdaptiveLIFNeuron,
    BaseInput,
    BaseNeuron,
    FedeNeuron,
    IFNeuron,
    Input,
    LIFNeuron,
)

__all__ = ["to_nir", "from_nir", "NIRNetwork"]

_INSTALL = 'pip install "pysnn[nir]"'
# Operations a network's forward may apply to a module's output before the next module:
# reshapes and casts (anything else changes values and has no NIR node here).
_PASS_THROUGH = frozenset(
    (
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "flatten",
        "unsqueeze",
        "squeeze",
        "contiguous",
        "clone",
        "detach",
        "to",
        "type",
        "type_as",
        "float",
        "double",
        "half",
        "bfloat16",
        "bool",
        "cpu",
        "cuda",
    )
)


def _nir():
    """The ``nir`` package, or an ImportError that says how to install it."""
    try:
        import nir
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"NIR export and import need the nir package: {_INSTALL}") from error
    return nir


def _ms_to_s(value):
    """Milliseconds to seconds (a division, so that dyadic values stay exact)."""
    return np.asarray(value, dtype=np.float64) / 1000.0


def _s_to_ms(value):
    return np.asarray(value, dtype=np.float64) * 1000.0


def _next_down(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``nextafter(value, -inf)`` in ``dtype``: ``v >= θ`` ⟺ ``v > _next_down(θ)``."""
    value = np.asarray(value, dtype=dtype)
    return np.nextafter(value, np.array(-np.inf, dtype=dtype))


def _next_up(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``nextafter(value, +inf)`` in ``dtype``: ``v > θ`` ⟺ ``v >= _next_up(θ)``."""
    value = np.asarray(value, dtype=dtype)
    return np.nextafter(value, np.array(np.inf, dtype=dtype))


# ==============================================================================================
# Tracing one step of a network
# ==============================================================================================


@dataclass(frozen=True)
class _Source:
    """Where a tensor came from: the network's input, a module call's output, a module's buffer
    read between calls (``state``), or an operation that is not a reshape (``opaque``)."""

    kind: str  # "input" | "output" | "state" | "opaque"
    index: int = -1  # input position or call index
    slot: int = -1  # output position
    module: Optional[nn.Module] = None
    name: str = ""  # buffer name, or the operation for "opaque"


@dataclass
class _Call:
    index: int
    module: nn.Module
    args: List[Any]  # per positional argument: a _Source, a list of them, or None
    arg_shapes: List[Any]
    outputs: List[Any] = field(default_factory=list)  # (tensor shape) per output slot


def _tensors(value) -> List[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


class _Tracer(TorchFunctionMode):
    """Records which module's output feeds which module during one step.

    Forward pre/post hooks on the pysnn modules record each call and register its outputs; the
    torch-function mode follows the tensors the network's own ``forward`` derives from them
    between calls (only reshapes and casts keep a source; anything else is marked opaque).
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.known = {id(m) for m in modules}
        self.sources: Dict[int, Tuple[_Source, Tensor]] = {}
        self.calls: List[_Call] = []
        self.depth = 0
        self.keep: List[Tensor] = []  # holds every tracked tensor, so ids are not reused

    def mark(self, tensor: Tensor, source: _Source) -> None:
        self.sources[id(tensor)] = (source, tensor)
        self.keep.append(tensor)

    def lookup(self, value) -> Any:
        if isinstance(value, (list, tuple)):
            return [self.lookup(item) for item in value]
        if not isinstance(value, Tensor):
            return None
        entry = self.sources.get(id(value))
        if entry is not None and entry[1] is value:
            return entry[0]
        return _Source("opaque", name="a tensor that no pysnn module produced")

    @staticmethod
    def _shapes(value) -> Any:
        if isinstance(value, (list, tuple)):
            return [_Tracer._shapes(item) for item in value]
        return tuple(value.shape) if isinstance(value, Tensor) else None

    def pre_hook(self, module, args, kwargs):
        if self.depth == 0:
            values = list(args) + list(kwargs.values())
            call = _Call(
                len(self.calls),
                module,
                [self.lookup(v) for v in values],
                [self._shapes(v) for v in values],
            )
            self.calls.append(call)
        self.depth += 1

    def post_hook(self, module, args, kwargs, output):
        self.depth -= 1
        if self.depth:
            return
        call = self.calls[-1]
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        for slot, value in enumerate(outputs):
            if isinstance(value, Tensor):
                self.mark(value, _Source("output", call.index, slot, module))
                call.outputs.append(tuple(value.shape))
            else:
                call.outputs.append(None)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.depth:
            return result
        inputs = [
            self.sources[id(t)][0]
            for t in _tensors(list(args)) + _tensors(kwargs)
            if id(t) in self.sources and self.sources[id(t)][1] is t
        ]
        if not inputs:
            return result
        name = getattr(func, "__name__", str(func))
        outs = _tensors(result)
        if name in _PASS_THROUGH and len(inputs) == 1 and len(outs) == 1:
            if outs[0] is not args[0]:
                self.mark(outs[0], inputs[0])
        else:
            for out in outs:
                self.mark(out, _Source("opaque", name=f"torch operation {name!r}"))
        return result


def _snapshot(network: nn.Module) -> List[Tuple[nn.Module, Dict[str, Any], List[Tuple]]]:
    """Every parameter and buffer (the object and a copy) and every plain attribute (numbers,
    tuples, ``None``) of every module. Broadcast views of other buffers are restored through
    their base."""
    saved = []
    for module in network.modules():
        tensors = []
        for store in (module._parameters, module._buffers):
            for name, value in store.items():
                if isinstance(value, Tensor) and value._base is None:
                    tensors.append((store, name, value, value.detach().clone()))
        plain = {
            key: value
            for key, value in module.__dict__.items()
            if isinstance(value, (bool, int, float, tuple, type(None))) and key != "training"
        }
        saved.append((module, plain, tensors))
    return saved


def _restore(saved) -> None:
    with torch.no_grad():
        for module, plain, tensors in saved:
            for store, name, live, copy in tensors:
                store[name] = live  # the same object, even where the step replaced it
                live.copy_(copy)
            module.__dict__.update(plain)


def _module_kind(module: nn.Module) -> Optional[str]:
    if isinstance(module, BaseInput):
        return "input"
    if isinstance(module, BaseNeuron):
        return "neuron"
    if isinstance(module, (Linear, Conv2d)):
        return "connection"
    if isinstance(module, (MaxPool2d, AdaptiveMaxPool2d)):
        return "pool"
    return None


def _trace(network: nn.Module, sample_input) -> Tuple[_Tracer, List[Any], Any]:
    modules = [m for m in network.modules() if _module_kind(m) is not None]
    tracer = _Tracer(modules)
    inputs = sample_input if isinstance(sample_input, (tuple, list)) else (sample_input,)
    for position, value in enumerate(inputs):
        if not isinstance(value, Tensor):
            raise TypeError(
                f"to_nir: sample_input must be a tensor (or a tuple of tensors), got "
                f"{type(value).__name__}"
            )
        tracer.mark(value, _Source("input", position))
    for module in modules:
        for name, buffer in module._buffers.items():
            if isinstance(buffer, Tensor) and _module_kind(module) in ("input", "neuron"):
                tracer.mark(buffer, _Source("state", module=module, name=name))
    handles = []
    saved = _snapshot(network)
    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(tracer.pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(tracer.post_hook, with_kwargs=True))
        with torch.no_grad(), tracer:
            result = network(*inputs)
        returned = [tracer.lookup(t) for t in _tensors(result)]
        shapes = [tuple(t.shape) for t in _tensors(result)]
    finally:
        for handle in handles:
            handle.remove()
        _restore(saved)
    return tracer, list(zip(returned, shapes)), inputs


# ==============================================================================================
# Export
# ==============================================================================================


def _sanitize(name: str) -> str:
    name = re.sub(r"\W", "_", name) or "node"
    return "n_" + name if name[0].isdigit() else name


def _nir_shape(shape: Sequence[int]) -> Tuple[int, ...]:
    """A pysnn population shape ``(B, 1, N)`` / ``(B, C, H, W)`` without batch: ``(N,)`` /
    ``(C, H, W)``."""
    shape = tuple(int(n) for n in shape[1:])
    if len(shape) == 2 and shape[0] == 1:
        return shape[1:]
    return shape


class _Exporter:
    def __init__(self, network, dt: float, lossy: bool, canonical: bool) -> None:
        self.nir = _nir()
        self.network = network
        self.dt = dt
        self.dt_s = float(_ms_to_s(dt))
        self.lossy = lossy
        self.canonical = canonical
        self.issues: List[str] = []
        self.names: Dict[int, str] = {}
        used: set = set()
        for qualified, module in network.named_modules():
            if id(module) in self.names or _module_kind(module) is None:
                continue
            base = _sanitize(qualified)
            name, k = base, 1
            while name in used:
                name, k = f"{base}_{k}", k + 1
            used.add(name)
            self.names[id(module)] = name
        self.used = used
        self.nodes: "OrderedDict[str, Any]" = OrderedDict()
        self.edges: List[Tuple[str, str]] = []

    # -- helpers --------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.used or name in self.nodes:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def name(self, module) -> str:
        return self.names[id(module)]

    def issue(self, module, reason: str) -> None:
        self.issues.append(f"{self.name(module)} ({type(module).__name__}): {reason}")

    def fail(self, module, reason: str):
        where = f"{self.name(module)} ({type(module).__name__})" if module is not None else ""
        raise ValueError(f"to_nir: {where + ': ' if where else ''}{reason}")

    def per_cell(self, module, tensor: Tensor, what: str) -> np.ndarray:
        """A per-cell parameter without its batch axis (checked equal over the batch)."""
        cells = tuple(module.cells_shape)
        value = tensor.detach().to("cpu").expand(cells)
        first = value[:1]
        if not bool((value == first).all()):
            self.issue(module, f"{what} differs between batch elements (NIR has no batch axis)")
        return first[0].numpy().reshape(_nir_shape(cells))

    def check_dt(self, module) -> None:
        dt = getattr(module, "dt", None)
        if isinstance(dt, Tensor) and not math.isclose(dt.item(), self.dt, rel_tol=1e-6):
            self.fail(module, f"its dt is {dt.item():g} ms but to_nir was given dt={self.dt:g} ms")

    @staticmethod
    def plain(module, cls) -> bool:
        """``module`` is a ``cls`` that does not redefine its step."""
        methods = getattr(cls, "_step_methods", ()) or ("forward",)
        methods = set(methods) | {"forward"}
        return isinstance(module, cls) and all(
            getattr(type(module), n, None) is getattr(cls, n, None) for n in methods
        )

    # -- neurons ----------------------------------------------------------------------------
    def neuron_params(self, module) -> Dict[str, Any]:
        """The neuron's NIR form before any gain is folded: kind, per-cell arrays, fold factor."""
        cuba = getattr(_neuron, "CubaLIFNeuron", None)
        if cuba is not None and isinstance(module, cuba):
            return self.cuba_params(module)
        if isinstance(module, FedeNeuron):
            self.issue(
                module,
                "its input is weighted spikes minus presynaptic traces; NIR has no such neuron "
                "(lossy: exported as an exponential LIF without the trace term)",
            )
        elif isinstance(module, AdaptiveLIFNeuron):
            if not self.plain(module, AdaptiveLIFNeuron):
                self.fail(module, "a subclass that redefines the step cannot be exported")
            self.issue(
                module,
                "adaptive threshold (alpha_thresh, tau_thresh) has no NIR counterpart "
                "(lossy: exported as a LIF with the initial threshold thresh_center)",
            )
        elif isinstance(module, LIFNeuron):
            if not self.plain(module, LIFNeuron):
                self.fail(module, "a subclass that redefines the step cannot be exported")
        elif isinstance(module, IFNeuron):
            if not self.plain(module, IFNeuron):
                self.fail(module, "a subclass that redefines the step cannot be exported")
        else:
            self.fail(module, "this neuron model has no NIR mapping")
        if float(module.duration_refrac.item()) > 0:
            self.issue(
                module,
                f"refractory period of {module.duration_refrac.item():g} ms has no NIR "
                "counterpart (lossy: dropped)",
            )
        if isinstance(module, AdaptiveLIFNeuron):
            thresh = module.thresh_center.expand(module.cells_shape)
        else:
            thresh = module.thresh
        theta = self.per_cell(module, thresh, "thresh")
        alpha = self.per_cell(module, module.alpha_v, "alpha_v").astype(np.float64)
        v_rest = float(module.v_rest.item())
        dtype = np.dtype(str(module.v_cell.dtype).replace("torch.", ""))
        out = {"theta": theta, "v_rest": v_rest, "dtype": dtype, "alpha": alpha}
        out["update_type"] = module.update_type  # the trace's, for IF
        if isinstance(module, IFNeuron):
            out.update(kind="IF", fold=alpha, r_literal=alpha / self.dt_s)
            return out
        tau_v = self.per_cell(module, module.tau_v, "tau_v").astype(np.float64)
        if module.update_type != "linear":
            out.update(kind="LIF", tau=_ms_to_s(tau_v), fold=alpha, r_literal=alpha)
            return out
        decay = tau_v
        if np.all(decay == 1.0):
            out.update(kind="IF", fold=alpha, r_literal=alpha / self.dt_s)
            return out
        if np.any(decay == 1.0):
            self.fail(
                module,
                "a linear decay of exactly 1 (no leak) for some cells and below 1 for others "
                "cannot be one NIR node",
            )
        gain = alpha / (1.0 - decay)
        out.update(kind="LIF", tau=self.dt_s / (1.0 - decay), fold=gain, r_literal=gain)
        return out

    def cuba_params(self, module) -> Dict[str, Any]:
        """CubaLIF: ``i' = (1-a)·i + a·w_in·x``, ``v' = (1-b)·v + b·r·i'`` with ``a = dt/τ_syn``,
        ``b = dt/τ_mem``. Canonical: ``w_in = 1/a``, ``r = 1/b`` (unit gains, the form
        SpikingJelly and snnTorch require) and the gain ``a·b·α_i·α_v`` (exponential) or
        ``α_i·α_v`` (linear) folded into the weights."""
        cuba = _neuron.CubaLIFNeuron
        if not self.plain(module, cuba):
            self.fail(module, "a subclass that redefines the step cannot be exported")
        if float(module.duration_refrac.item()) > 0:
            self.issue(
                module,
                f"refractory period of {module.duration_refrac.item():g} ms has no NIR "
                "counterpart (lossy: dropped)",
            )
        get = lambda name: self.per_cell(module, getattr(module, name), name).astype(np.float64)
        alpha_v, alpha_i, tau_v, tau_i = (get(n) for n in ("alpha_v", "alpha_i", "tau_v", "tau_i"))
        if module.update_type == "linear":
            if np.any(tau_v == 1.0) or np.any(tau_i == 1.0):
                self.fail(module, "a decay factor of 1 (no leak) has no NIR CubaLIF form")
            a, b = 1.0 - tau_i, 1.0 - tau_v
            w_in, r, fold = alpha_i / a, alpha_v / b, alpha_i * alpha_v
        else:
            a, b = self.dt / tau_i, self.dt / tau_v
            w_in, r, fold = alpha_i, alpha_v, a * b * alpha_i * alpha_v
        dtype = np.dtype(str(module.v_cell.dtype).replace("torch.", ""))
        return {
            "kind": "CubaLIF",
            "theta": self.per_cell(module, module.thresh, "thresh"),
            "v_rest": float(module.v_rest.item()),
            "dtype": dtype,
            "update_type": module.update_type,
            "tau_syn": self.dt_s / a,
            "tau_mem": self.dt_s / b,
            "w_in_literal": w_in,
            "r_literal": r,
            "w_in_unit": 1.0 / a,
            "r_unit": 1.0 / b,
            "fold": fold,
        }

    def neuron_node(self, module, params, folded: bool):
        nir = self.nir
        dtype = params["dtype"]
        shape = params["theta"].shape
        shift = self.canonical or params["kind"] == "IF"
        theta = params["theta"].astype(np.float64) - (params["v_rest"] if shift else 0.0)
        threshold = _next_down(theta, dtype)
        rest = 0.0 if shift else params["v_rest"]
        r = np.ones(shape) if folded else params["r_literal"]
        meta = {
            "pysnn": {
                "module": type(module).__name__,
                "update_type": params.get("update_type", "linear"),
                "form": "canonical" if (folded and shift) else "literal",
            }
        }
        if params["kind"] == "CubaLIF":
            unit = "unit" if folded else "literal"
            return nir.CubaLIF(
                tau_syn=np.asarray(params["tau_syn"], np.float64),
                tau_mem=np.asarray(params["tau_mem"], np.float64),
                r=np.asarray(params["r_" + unit], np.float64),
                v_leak=np.full(shape, rest, dtype),
                v_threshold=threshold,
                v_reset=np.full(shape, rest, dtype),
                w_in=np.asarray(params["w_in_" + unit], np.float64),
                metadata=meta,
            )
        if params["kind"] == "IF":
            r = (np.ones(shape) / self.dt_s) if folded else params["r_literal"]
            return nir.IF(
                r=np.asarray(r, np.float64),
                v_threshold=threshold,
                v_reset=np.zeros(shape, dtype),
                metadata=meta,
            )
        return nir.LIF(
            tau=np.asarray(params["tau"], np.float64),
            r=np.asarray(r, np.float64),
            v_leak=np.full(shape, rest, dtype),
            v_threshold=threshold,
            v_reset=np.full(shape, rest, dtype),
            metadata=meta,
        )

    # -- the graph ------------------------------------------------------------------------
    def build(self, tracer: _Tracer, returned, inputs):
        nir = self.nir
        calls = tracer.calls
        seen: Dict[int, _Call] = {}
        for call in calls:
            kind = _module_kind(call.module)
            if id(call.module) in seen:
                self.fail(call.module, "is called more than once in one step")
            seen[id(call.module)] = call
            self.check_dt(call.module)
            if kind == "connection":
                conn = call.module
                if not (self.plain(conn, Linear) or self.plain(conn, Conv2d)):
                    self.fail(conn, "a subclass that redefines the step cannot be exported")
        self.calls_by_module = seen

        # populations: node name and NIR shape of each spike source
        population: Dict[Tuple, Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = {}
        raw_inputs: Dict[int, str] = {}

        def source_node(src: _Source, consumer: _Call) -> Tuple[str, Tuple[int, ...], int]:
            """(node, pysnn shape, extra delay) of the spikes ``src`` refers to."""
            if src is None or src.kind == "opaque":
                what = src.name if src is not None else "something that is not a tensor"
                self.fail(
                    consumer.module,
                    f"its input is {what}; between modules the network's forward may only "
                    "reshape or cast (to_nir follows module outputs, reshapes and buffers)",
                )
            if src.kind == "input":
                if src.index not in raw_inputs:
                    shape = tuple(inputs[src.index].shape)
                    name = self.fresh("input" if src.index == 0 else f"input_{src.index}")
                    self.nodes[name] = nir.Input(input_type={"input": np.array(_nir_shape(shape))})
                    raw_inputs[src.index] = name
                    population[("raw", src.index)] = (name, _nir_shape(shape), shape)
                name, _, shape = population[("raw", src.index)]
                return name, shape, 0
            if src.kind == "state":
                producer = self.calls_by_module.get(id(src.module))
                if src.name != "spikes":
                    self.fail(
                        consumer.module,
                        f"its input is the buffer {src.name!r} of {self.name(src.module)}; "
                        "only spikes can be exported",
                    )
                if producer is None:
                    self.fail(
                        consumer.module,
                        f"it reads the spikes of {self.name(src.module)}, which is not called "
                        "in the network's step",
                    )
                extra = 1 if producer.index > consumer.index else 0
                name, _, shape = population[("module", id(src.module))]
                return name, shape, extra
            producer = calls[src.index]
            kind = _module_kind(producer.module)
            if kind == "connection":
                self.fail(
                    consumer.module,
                    f"it is fed by the connection {self.name(producer.module)} directly",
                )
            if src.slot != 0:
                self.fail(
                    consumer.module,
                    f"its spike input is output {src.slot} (a trace) of "
                    f"{self.name(producer.module)}",
                )
            name, _, shape = population[("module", id(producer.module))]
            return name, shape, 0

        # 1. populations in call order (inputs, pools, neurons) -------------------------------
        neuron_calls = []
        for call in calls:
            kind = _module_kind(call.module)
            module = call.module
            if kind == "input":
                if not self.plain(module, Input):
                    self.fail(module, "a subclass that redefines the step cannot be exported")
                src = call.args[0] if call.args else None
                if src is None or src.kind != "input":
                    self.fail(module, "its input must be the network's input")
                shape = tuple(module.cells_shape)
                name = self.name(module)
                self.nodes[name] = nir.Input(input_type={"input": np.array(_nir_shape(shape))})
                population[("module", id(module))] = (name, _nir_shape(shape), shape)
                raw_inputs.setdefault(src.index, name)
                population.setdefault(("raw", src.index), (name, _nir_shape(shape), shape))
            elif kind == "neuron":
                shape = tuple(module.cells_shape)
                population[("module", id(module))] = (self.name(module), _nir_shape(shape), shape)
                neuron_calls.append(call)
        for call in calls:
            if _module_kind(call.module) == "pool":
                self.pool(call, source_node, population)

        # 2. neurons and their incoming connections -------------------------------------------
        for call in neuron_calls:
            module = call.module
            params = self.neuron_params(module)
            activations = call.args[0] if call.args else None
            activations = activations if isinstance(activations, list) else [activations]
            incoming = []
            for src in activations:
                if (
                    src is None
                    or src.kind != "output"
                    or (_module_kind(calls[src.index].module) != "connection")
                ):
                    self.fail(module, "its input is not the output of a pysnn connection")
                if src.slot != 0:
                    self.fail(module, "its input is a connection's trace, not its activation")
                incoming.append(calls[src.index])
            folds = [self.fold_for(c.module, params) for c in incoming]
            folded = all(f is not None for f in folds)
            self.nodes[self.name(module)] = self.neuron_node(module, params, folded)
            for conn_call, fold in zip(incoming, folds):
                self.connection(conn_call, module, fold if folded else None, source_node)

        # 3. outputs ------------------------------------------------------------------------
        outputs = []
        for src, _ in returned:
            if src is None or src.kind == "opaque":
                continue
            if src.kind == "output" and src.slot != 0:
                continue  # a trace
            if src.kind == "state" and src.name != "spikes":
                continue
            if src.kind == "output" and _module_kind(calls[src.index].module) == "connection":
                continue
            fake = _Call(len(calls), None, [], [])
            try:
                name, shape, _ = source_node(src, fake)
            except ValueError:
                continue
            if name not in outputs:
                outputs.append(name)
        if not outputs:
            raise ValueError(
                "to_nir: the network's forward returns no spikes of a pysnn module (return "
                "the (spikes, trace) of the output neurons, as every pysnn network does)"
            )
        for k, name in enumerate(outputs):
            out_name = self.fresh("output" if k == 0 else f"output_{k}")
            shape = self.nodes[name].output_type["output"]
            self.nodes[out_name] = nir.Output(output_type={"output": np.array(shape)})
            self.edges.append((name, out_name))

        if self.issues:
            listing = "; ".join(self.issues)
            if not self.lossy:
                raise ValueError(
                    f"to_nir: not exactly representable in NIR: {listing}. Pass lossy=True to "
                    "export anyway without these features"
                )
            warnings.warn(f"to_nir (lossy=True) dropped: {listing}", UserWarning, stacklevel=3)
        metadata = {
            "source": "pysnn",
            "pysnn_version": _version(),
            "dt": self.dt_s,
            "dt_unit": "s",
            "form": "canonical" if self.canonical else "literal",
        }
        if self.issues:
            metadata["dropped"] = list(self.issues)
        # nodes in data-flow order (breadth first from the inputs), for whoever reads the graph
        order = [n for n, node in self.nodes.items() if isinstance(node, nir.Input)]
        for name in order:
            order.extend(d for s, d in self.edges if s == name and d not in order)
        order += [n for n in self.nodes if n not in order]
        nodes = {name: self.nodes[name] for name in order}
        return nir.NIRGraph(nodes=nodes, edges=self.edges, metadata=metadata)

    def fold_for(self, conn, params) -> Optional[np.ndarray]:
        """The gain folded into ``conn``'s weights: per output row (Linear) or channel (Conv2d);
        ``None`` when it cannot be folded (a Conv2d whose gain varies over positions) or when
        the literal form was asked for."""
        if not self.canonical:
            return None
        fold = np.asarray(params["fold"], np.float64)
        if isinstance(conn, Linear):
            return fold.reshape(-1)
        channels = fold.reshape(fold.shape[0], -1)
        if not np.all(channels == channels[:, :1]):
            return None
        return channels[:, 0]

    def connection(self, call: _Call, target, fold, source_node) -> None:
        nir = self.nir
        conn = call.module
        src_name, src_shape, extra = source_node(call.args[0], call)
        target_name = self.name(target)
        base = self.name(conn)
        if base in self.nodes:  # a second neuron reads the same connection
            base = f"{base}_to_{target_name}"
        weight = conn.weight.detach().to("cpu")
        w_dtype = np.dtype(str(weight.dtype).replace("torch.", ""))
        weight = weight.numpy().astype(np.float64)
        if fold is not None:
            shape = (-1,) + (1,) * (weight.ndim - 1)
            weight = weight * fold.reshape(shape)
        # input side: the presynaptic signal as the connection reads it
        node = src_name
        if isinstance(conn, Linear):
            in_shape = (conn.in_features,)
            if tuple(src_shape[1:]) != (1, conn.in_features):
                if math.prod(src_shape[1:]) != conn.in_features:
                    self.fail(conn, f"its input of shape {src_shape} does not match its weight")
                flat = self.fresh(f"{base}_flatten")
                self.nodes[flat] = nir.Flatten(
                    input_type={"input": np.array(_nir_shape(src_shape))},
                    start_dim=0,
                    end_dim=-1,
                )
                self.edges.append((node, flat))
                node = flat
        else:
            in_shape = (conn.in_channels,) + tuple(conn.im_dims)
            if tuple(src_shape[1:]) != in_shape:
                self.fail(conn, f"its input of shape {src_shape} is not (B, C_in, H, W)")
        # delays: one branch per distinct value
        steps = conn._delay_steps.detach().to("cpu")
        if conn.uniform_delay:
            branches = [(int(steps.item()) + extra, None)]
        else:
            full = steps.expand(conn.synapse_shape[1:])
            if isinstance(conn, Conv2d):  # (C_out, K, L): must not vary over positions L
                if not bool((full == full[..., :1]).all()):
                    self.fail(
                        conn,
                        "its per-synapse delays vary over output positions; a NIR Conv2d "
                        "shares one kernel over all positions",
                    )
                full = full[..., 0].reshape(weight.shape)
            values = sorted(int(v) for v in torch.unique(full))
            branches = [(v + extra, (full == v).numpy()) for v in values]
        for delay, mask in branches:
            name = base if len(branches) == 1 else f"{base}_d{delay}"
            name = self.fresh(name) if name in self.nodes else name
            head = node
            if delay:
                delay_name = self.fresh(f"{name}_delay")
                self.nodes[delay_name] = nir.Delay(delay=np.full(in_shape, delay * self.dt_s))
                self.edges.append((node, delay_name))
                head = delay_name
            w = weight if mask is None else weight * mask
            w = w.astype(w_dtype)
            if isinstance(conn, Linear):
                self.nodes[name] = nir.Linear(weight=w)
            else:
                self.nodes[name] = nir.Conv2d(
                    input_shape=tuple(conn.im_dims),
                    weight=w,
                    stride=tuple(conn.stride),
                    padding=tuple(conn.padding),
                    dilation=tuple(conn.dilation),
                    groups=1,
                    bias=np.zeros(conn.out_channels, w_dtype),
                )
            self.edges.append((head, name))
            self.edges.append((name, target_name))

    def pool(self, call: _Call, source_node, population) -> None:
        nir = self.nir
        pool = call.module
        src_name, src_shape, extra = source_node(call.args[0], call)
        if extra:
            self.fail(pool, "it pools the previous step's spikes; NIR pooling has no state")
        if len(src_shape) != 4:
            self.fail(pool, f"it pools an input of shape {src_shape}, not (B, C, H, W)")
        height, width = src_shape[2:]
        if isinstance(pool, MaxPool2d):
            if tuple(pool.dilation) != (1, 1):
                self.fail(pool, "dilated pooling has no NIR node (SumPool2d has no dilation)")
            if pool.ceil_mode:
                self.fail(pool, "ceil_mode=True has no NIR counterpart")
            kernel, stride, padding = pool.kernel_size, pool.stride, pool.padding
        else:
            out_h, out_w = pool.output_size
            if height % out_h or width % out_w:
                self.issue(
                    pool,
                    f"adaptive pooling of {height}x{width} to {out_h}x{out_w} has windows of "
                    "unequal size (lossy: the nearest fixed window)",
                )
                stride = (height // out_h, width // out_w)
                kernel = (height - (out_h - 1) * stride[0], width - (out_w - 1) * stride[1])
            else:
                kernel = stride = (height // out_h, width // out_w)
            padding = (0, 0)
        name = self.name(pool)
        sum_name, thr_name = name, self.fresh(f"{name}_threshold")
        out_shape = call.outputs[0]
        self.nodes[sum_name] = nir.SumPool2d(
            kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding)
        )
        self.nodes[thr_name] = nir.Threshold(threshold=np.zeros(_nir_shape(out_shape), np.float32))
        self.edges.append((src_name, sum_name))
        self.edges.append((sum_name, thr_name))
        population[("module", id(pool))] = (thr_name, _nir_shape(out_shape), out_shape)


def _version() -> str:
    from pysnn import __version__

    return __version__


def to_nir(
    network: nn.Module,
    sample_input: Union[Tensor, Tuple[Tensor, ...]],
    dt: float,
    *,
    lossy: bool = False,
    canonical: bool = True,
):
    """Export a pysnn network as a ``nir.NIRGraph``.

    The graph is found by running **one** step, ``network(sample_input)``, and recording which
    module's output feeds which module (forward hooks, plus the reshapes and casts the
    network's own ``forward`` applies between modules). Every parameter, buffer and step
    counter of the network is restored afterwards, so the export does not disturb a
    simulation. A connection that reads a neuron's ``spikes`` buffer before that neuron has
    stepped (feedback, recurrence) gets one more step of delay in the graph.

    :param network: an :class:`~pysnn.network.SNNNetwork` (or any module built from pysnn's
        Input, Linear, Conv2d, MaxPool2d, AdaptiveMaxPool2d, IF and LIF modules).
    :param sample_input: what ``forward`` takes for one step, e.g. ``(B, 1, I)`` spikes
        (a tuple for several arguments); its values do not matter.
    :param dt: the network's time step in **ms** (every module must have this ``dt``); it
        converts decay factors and delays into NIR's seconds, and is written into the graph's
        metadata (``"dt"``, in seconds) as a hint for importers.
    :param lossy: keyword-only. ``False``: raise for anything NIR cannot represent exactly.
        ``True``: export anyway, warn with the list of what was dropped (also in the graph's
        metadata under ``"dropped"``).
    :param canonical: keyword-only. ``True`` (default): fold each neuron's gain into its
        incoming weights (``r = 1``, or ``1/dt`` for IF) and shift voltages so that
        ``v_leak = v_reset = 0`` — the form every importer reproduces. ``False``: the literal
        mapping (``r = α_v``, ``v_leak = v_reset = v_rest``).
    :returns: the ``nir.NIRGraph`` (write it with ``nir.write(path, graph)``).
    :raises ValueError: naming the module and the reason, for what is not exactly
        representable (refractory period, adaptive threshold, FedeNeuron, parameters that
        differ between batch elements, adaptive pooling with unequal windows) unless
        ``lossy``; and always for what has no NIR form at all (values computed between
        modules, dilated or ``ceil_mode`` pooling, custom module subclasses, per-synapse
        Conv2d delays that vary over positions, a module called twice in one step).
    :raises ImportError: ``nir`` is not installed (``pip install "pysnn[nir]"``).

    Not part of the graph: traces (they feed learning rules only), learning-rule state
    (eligibility traces, rule parameters) and the network's current state — the graph
    describes the network from rest.
    """
    if not isinstance(network, nn.Module):
        raise TypeError(f"to_nir: network must be a torch.nn.Module, got {type(network).__name__}")
    if isinstance(dt, bool) or not isinstance(dt, Real) or not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"to_nir: dt must be a positive number of ms, got {dt!r}")
    for value, name in ((lossy, "lossy"), (canonical, "canonical")):
        if not isinstance(value, bool):
            raise TypeError(f"to_nir: {name} must be a bool, got {value!r}")
    exporter = _Exporter(network, float(dt), lossy, canonical)
    tracer, returned, inputs = _trace(network, sample_input)
    return exporter.build(tracer, returned, inputs)


# ==============================================================================================
# Import
# ==============================================================================================


@dataclass
class _Branch:
    connection: str  # attribute name of the pysnn connection
    source: str  # attribute name of the population it reads
    use_state: bool  # read the source's spikes buffer (last step) instead of this step's output
    flatten: bool  # reshape the source to (B, 1, N)


class NIRNetwork(SNNNetwork):
    """A pysnn network built by :func:`from_nir`: its ``forward`` follows the graph's edges.

    ``forward(*inputs)`` takes one tensor per NIR ``Input`` node (in the graph's order), of shape
    ``(B, 1, N)`` or ``(B, C, H, W)``, and returns ``(spikes, trace)`` of the population that
    feeds the ``Output`` node (a tuple of such pairs for several outputs). Its modules are
    ordinary pysnn modules, registered as layers (connection → neuron) by
    :meth:`~pysnn.network.SNNNetwork.add_layer`, so learning rules, monitors and
    :meth:`run` work as for any network. ``nir_nodes`` maps each NIR node name to the module
    attribute that implements it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._plan: List[Tuple] = []
        self._outputs: List[str] = []
        self._input_names: List[str] = []
        self.nir_nodes: Dict[str, str] = {}

    def forward(self, *inputs: Tensor):
        """One step: the populations in the graph's order, each connection reading this step's
        spikes of its source or, on an edge that closes a loop, the source's previous ones.

        :param inputs: one tensor per NIR Input node, ``(B, 1, N)`` or ``(B, C, H, W)``.
        :returns: ``(spikes, trace)`` of the population feeding the Output node (a tuple of such
            pairs for several Output nodes).
        """
        if len(inputs) != len(self._input_names):
            raise TypeError(
                f"NIRNetwork: forward takes {len(self._input_names)} input tensor(s) (one per "
                f"NIR Input node: {self._input_names}), got {len(inputs)}"
            )
        results: Dict[str, Tuple[Tensor, Tensor]] = {}
        modules = self._modules
        for entry in self._plan:
            kind, name = entry[0], entry[1]
            module = modules[name]
            if kind == "input":
                results[name] = module(inputs[entry[2]])
            elif kind == "pool":
                results[name] = module(*results[entry[2]])
            else:
                activations = []
                for branch in entry[2]:
                    if branch.use_state:
                        source = modules[branch.source]
                        spikes, trace = source.spikes, source.trace
                    else:
                        spikes, trace = results[branch.source]
                    if branch.flatten:
                        spikes = spikes.reshape(spikes.shape[0], 1, -1)
                        trace = trace.reshape(trace.shape[0], 1, -1)
                    activations.append(modules[branch.connection](spikes, trace)[0])
                results[name] = module(activations[0] if len(activations) == 1 else activations)
        if len(self._outputs) == 1:
            return results[self._outputs[0]]
        return tuple(results[name] for name in self._outputs)


_UNSUPPORTED = {
    "LI": "a leaky integrator does not spike; pysnn has no non-spiking neuron",
    "I": "a pure integrator does not spike; pysnn has no non-spiking neuron",
    "Scale": "pysnn has no elementwise scaling module",
    "Conv1d": "pysnn has no 1-D convolution",
    "NIRGraph": "nested graphs (subgraphs) are not supported; flatten the graph first",
}


def _array(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _pair(value, what: str, node: str) -> Tuple[int, int]:
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2:
        raise ValueError(f"from_nir: node {node!r}: {what} must be an int or a pair, got {value}")
    return int(arr[0]), int(arr[1])


class _Importer:
    def __init__(self, graph, dt: float, batch_size: int, options: Dict[str, Any]) -> None:
        self.nir = _nir()
        self.graph = graph
        self.dt = dt
        self.dt_s = float(_ms_to_s(dt))
        self.batch = batch_size
        self.options = options
        self.factory = {"device": options["device"], "dtype": options["dtype"]}
        dtype = options["dtype"] or torch.get_default_dtype()
        self.torch_dtype = dtype
        self.np_dtype = np.dtype(str(dtype).replace("torch.", ""))
        self.preds: Dict[str, List[str]] = {name: [] for name in graph.nodes}
        self.succs: Dict[str, List[str]] = {name: [] for name in graph.nodes}
        for src, dst in graph.edges:
            for name in (src, dst):
                if name not in graph.nodes:
                    raise ValueError(f"from_nir: an edge names the unknown node {name!r}")
            self.preds[dst].append(src)
            self.succs[src].append(dst)

    def kind(self, name: str) -> str:
        return type(self.graph.nodes[name]).__name__

    def fail(self, name: str, reason: str):
        raise ValueError(f"from_nir: node {name!r} ({self.kind(name)}): {reason}")

    def single_pred(self, name: str) -> str:
        preds = self.preds[name]
        if len(preds) != 1:
            self.fail(name, f"must have exactly one input edge, has {len(preds)}")
        return preds[0]

    # -- shapes and wiring ----------------------------------------------------------------
    def population_shape(self, name: str) -> Tuple[int, ...]:
        """NIR shape (no batch) of a spike population's output."""
        node = self.graph.nodes[name]
        kind = self.kind(name)
        if kind == "Input":
            shape = tuple(int(n) for n in np.asarray(node.input_type["input"]).reshape(-1))
            # NIR shapes exclude the batch; a 2-D or 4-D input carries one anyway (nirtorch-based
            # exporters such as Norse's write the sample's batch axis): drop it
            return shape[1:] if len(shape) in (2, 4) else shape
        if kind == "Threshold":
            shape = tuple(np.asarray(node.threshold).shape)
            if math.prod(shape) == 1:
                shape = self.pooled_shape(self.single_pred(name))
            return shape
        if kind in ("LIF", "IF", "CubaLIF"):
            shape = tuple(np.asarray(node.v_threshold).shape)
            if math.prod(shape) == 1 and self.preds[name]:
                # scalar parameters (Norse writes 0-d ones): the shape of what feeds the neurons
                shape = self.weight_output_shape(self.preds[name][0])
            return shape
        raise AssertionError(kind)  # pragma: no cover

    def weight_output_shape(self, name: str) -> Tuple[int, ...]:
        node = self.graph.nodes[name]
        kind = self.kind(name)
        if kind in ("Linear", "Affine"):
            return (int(np.asarray(node.weight).shape[0]),)
        if kind == "Conv2d":
            _, _, _, src_shape = self.trace_back(name)
            weight = np.asarray(node.weight)
            stride, dilation, padding = self.conv_geometry(name)
            out = [
                (n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, p, d, k, s in zip(
                    src_shape[1:], padding, dilation, weight.shape[-2:], stride
                )
            ]
            return (int(weight.shape[0]), *out)
        self.fail(name, "does not feed neurons (expected Linear, Affine or Conv2d)")

    def conv_geometry(self, name: str):
        node = self.graph.nodes[name]
        kernel = tuple(np.asarray(node.weight).shape[-2:])
        stride = _pair(node.stride, "stride", name)
        dilation = _pair(node.dilation, "dilation", name)
        padding = node.padding
        if isinstance(padding, (str, bytes)):
            padding = padding.decode() if isinstance(padding, bytes) else padding
            if padding == "valid":
                padding = (0, 0)
            elif padding == "same" and stride == (1, 1) and all(k % 2 for k in kernel):
                padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))
            else:
                self.fail(name, f"padding {padding!r} with stride {stride} is not supported")
        return stride, dilation, _pair(padding, "padding", name)

    def pooled_shape(self, name: str) -> Tuple[int, ...]:
        node = self.graph.nodes[name]
        channels, *size = self.population_shape(self.single_pred(name))
        kernel = _pair(node.kernel_size, "kernel_size", name)
        stride = _pair(node.stride, "stride", name)
        padding = _pair(node.padding, "padding", name)
        out = [(n + 2 * p - k) // s + 1 for n, p, k, s in zip(size, padding, kernel, stride)]
        return (channels, *out)

    def trace_back(self, name: str) -> Tuple[str, np.ndarray, bool, Tuple[int, ...]]:
        """Walk from a weight node back through Delay and Flatten nodes to the population.

        :returns: ``(population, delay_s per element of the weight's input, flattened,
            population shape)``.
        """
        delays: List[np.ndarray] = []
        flattened = False
        node = self.single_pred(name)
        while self.kind(node) in ("Delay", "Flatten"):
            if self.kind(node) == "Delay":
                delays.append(_array(self.graph.nodes[node].delay))
            else:
                flattened = True
            node = self.single_pred(node)
        if self.kind(node) not in ("Input", "LIF", "IF", "CubaLIF", "Threshold"):
            self.fail(name, f"is fed by {node!r} ({self.kind(node)}), not by spikes")
        shape = self.population_shape(node)
        total = np.zeros(math.prod(shape))
        for delay in delays:
            if delay.size not in (1, total.size):
                self.fail(name, f"a Delay of shape {delay.shape} does not match its input")
            total = total + delay.reshape(-1)
        return node, total, flattened, shape

    def steps(self, name: str, delay_s: np.ndarray) -> np.ndarray:
        steps = _s_to_ms(delay_s) / self.dt
        rounded = np.round(steps)
        if np.any(np.abs(steps - rounded) > 1e-6 * np.maximum(1.0, rounded)) or np.any(rounded < 0):
            self.fail(
                name,
                f"its input delay ({delay_s.min():g} to {delay_s.max():g} s) is not a whole "
                f"number of steps of dt = {self.dt:g} ms",
            )
        return rounded.astype(np.int64)

    # -- modules ----------------------------------------------------------------------------
    def cells(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        if len(shape) == 1:
            return (self.batch, 1, shape[0])
        if len(shape) == 3:
            return (self.batch,) + tuple(shape)
        raise ValueError(f"from_nir: a population of shape {shape} is neither (N,) nor (C, H, W)")

    def tensor(self, value, shape) -> Tensor:
        """A per-cell parameter as a tensor broadcastable to ``cells(shape)``."""
        arr = np.asarray(value, dtype=np.float64)
        if arr.size == 1:
            return torch.tensor(float(arr.reshape(-1)[0]), dtype=self.torch_dtype)
        arr = arr.reshape(shape)
        if len(shape) == 1:
            arr = arr.reshape(1, shape[0])
        return torch.tensor(arr, dtype=self.torch_dtype)

    def trace_params(self, linear: bool) -> Tuple[float, float]:
        alpha_t, tau_t = self.options["alpha_t"], self.options["tau_t"]
        return alpha_t, (math.exp(-self.dt / tau_t) if linear else tau_t)

    def threshold(self, theta) -> np.ndarray:
        return _next_up(np.asarray(theta, np.float64), self.np_dtype)

    def neuron(self, name: str):
        node = self.graph.nodes[name]
        kind = self.kind(name)
        shape = self.population_shape(name)
        cells = self.cells(shape)
        hint = (node.metadata or {}).get("pysnn", {}) if hasattr(node, "metadata") else {}
        update_type = self.options["update_type"] or hint.get("update_type") or "exponential"
        if update_type not in ("linear", "exponential"):
            raise ValueError(
                f"from_nir: update_type must be 'linear' or 'exponential', got {update_type!r}"
            )
        theta = _array(node.v_threshold)
        if kind == "CubaLIF":
            return self.cuba(name, node, shape, cells, update_type)
        if kind == "IF":
            v_reset = _array(node.v_reset)
            v_rest = float(v_reset.reshape(-1)[0])
            if not np.all(v_reset == v_rest):
                theta = theta - v_reset
                v_rest = 0.0
            alpha_v = _array(node.r) * self.dt_s
            alpha_t, tau_t = self.trace_params(update_type == "linear")
            return IFNeuron(
                cells,
                self.tensor(self.threshold(theta), shape),
                v_rest,
                self.tensor(alpha_v, shape),
                alpha_t,
                self.dt,
                0.0,
                tau_t,
                update_type,
                **self.factory,
            )
        v_leak, v_reset = _array(node.v_leak), _array(node.v_reset)
        if not np.allclose(v_leak, v_reset, rtol=1e-6, atol=1e-12):
            self.fail(
                name,
                "v_reset differs from v_leak; a pysnn neuron resets to its rest voltage",
            )
        v_rest = float(v_leak.reshape(-1)[0])
        if not np.all(v_leak == v_rest):  # per-neuron rest: shift each neuron to 0
            theta = theta - v_leak
            v_rest = 0.0
        tau_s, r = _array(node.tau), _array(node.r)
        if np.any(~np.isfinite(tau_s)) or np.any(tau_s <= 0):
            self.fail(name, "tau must be positive and finite")
        if np.any(tau_s < self.dt_s * (1 - 1e-9)):
            self.fail(
                name,
                f"tau ({tau_s.min():g} s) is shorter than dt = {self.dt_s:g} s: the Euler "
                "step would overshoot",
            )
        if update_type == "exponential":
            tau_v = _s_to_ms(tau_s)
            alpha_v = r
        else:
            ratio = self.dt_s / tau_s
            tau_v = np.clip(1.0 - ratio, 0.0, 1.0)
            alpha_v = r * ratio
        alpha_t, tau_t = self.trace_params(update_type == "linear")
        return LIFNeuron(
            cells,
            self.tensor(self.threshold(theta), shape),
            v_rest,
            self.tensor(alpha_v, shape),
            alpha_t,
            self.dt,
            0.0,
            self.tensor(tau_v, shape),
            tau_t,
            update_type,
            **self.factory,
        )

    def cuba(self, name, node, shape, cells, update_type):
        v_leak, v_reset = _array(node.v_leak), _array(node.v_reset)
        if not np.allclose(v_leak, v_reset, rtol=1e-6, atol=1e-12):
            self.fail(
                name, "v_reset differs from v_leak; a pysnn neuron resets to its rest voltage"
            )
        theta = _array(node.v_threshold)
        v_rest = float(v_leak.reshape(-1)[0])
        if not np.all(v_leak == v_rest):
            theta = theta - v_leak
            v_rest = 0.0
        tau_syn, tau_mem = _array(node.tau_syn), _array(node.tau_mem)
        for tau, what in ((tau_syn, "tau_syn"), (tau_mem, "tau_mem")):
            if np.any(~np.isfinite(tau)) or np.any(tau < self.dt_s * (1 - 1e-9)):
                self.fail(name, f"{what} must be finite and at least dt = {self.dt_s:g} s")
        w_in, r = _array(node.w_in), _array(node.r)
        if update_type == "exponential":
            tau_i, tau_v, alpha_i, alpha_v = _s_to_ms(tau_syn), _s_to_ms(tau_mem), w_in, r
        else:
            a, b = self.dt_s / tau_syn, self.dt_s / tau_mem
            tau_i, tau_v = np.clip(1.0 - a, 0.0, 1.0), np.clip(1.0 - b, 0.0, 1.0)
            alpha_i, alpha_v = w_in * a, r * b
        alpha_t, tau_t = self.trace_params(update_type == "linear")
        return _neuron.CubaLIFNeuron(
            cells,
            self.tensor(self.threshold(theta), shape),
            v_rest,
            self.tensor(alpha_v, shape),
            self.tensor(alpha_i, shape),
            alpha_t,
            self.dt,
            0.0,
            self.tensor(tau_v, shape),
            self.tensor(tau_i, shape),
            tau_t,
            update_type,
            **self.factory,
        )

    def connection(self, name: str, target_shape, flat_size, src_shape, delay_steps, flattened):
        node = self.graph.nodes[name]
        kind = self.kind(name)
        opts = {"reduction": self.options["reduction"], **self.factory}
        if kind in ("Linear", "Affine"):
            if kind == "Affine" and node.bias is not None and np.any(_array(node.bias) != 0):
                self.fail(name, "a non-zero bias (a constant input current) has no pysnn form")
            weight = np.asarray(node.weight)
            out_f, in_f = weight.shape
            if len(target_shape) != 1 or target_shape[0] != out_f:
                self.fail(name, f"its {out_f} outputs do not match the neurons {target_shape}")
            if flat_size != in_f:
                self.fail(name, f"its {in_f} inputs do not match its source of {src_shape}")
            delay = int(delay_steps[0]) if np.all(delay_steps == delay_steps[0]) else None
            if delay is None:
                delay = torch.tensor(delay_steps, dtype=torch.int64).reshape(1, in_f)
            conn = Linear(in_f, out_f, self.batch, self.dt, delay, **opts)
        else:
            if node.groups != 1:
                self.fail(name, f"groups = {node.groups}; pysnn's Conv2d has groups = 1")
            if node.bias is not None and np.any(_array(node.bias) != 0):
                self.fail(name, "a non-zero bias (a constant input current) has no pysnn form")
            if flattened or len(src_shape) != 3:
                self.fail(name, f"its input of shape {src_shape} is not (C, H, W)")
            if not np.all(delay_steps == delay_steps[0]):
                self.fail(
                    name,
                    "per-element delays before a Conv2d have no pysnn form (only one delay "
                    "for all its synapses)",
                )
            weight = np.asarray(node.weight)
            kernel = tuple(weight.shape[-2:])
            stride, dilation, padding = self.conv_geometry(name)
            if weight.shape[1] != src_shape[0]:
                self.fail(name, f"its {weight.shape[1]} input channels do not match {src_shape}")
            conn = Conv2d(
                weight.shape[1],
                weight.shape[0],
                kernel,
                tuple(src_shape[1:]),
                self.batch,
                self.dt,
                int(delay_steps[0]),
                stride,
                padding,
                dilation,
                **opts,
            )
            expected = (conn.out_channels,) + tuple(conn.image_out_shape)
            if tuple(target_shape) != expected:
                self.fail(name, f"its output {expected} does not match the neurons {target_shape}")
        with torch.no_grad():
            conn.weight.copy_(torch.as_tensor(np.asarray(weight, np.float64)))
        return conn

    def pool(self, name: str):
        """A SumPool2d/AvgPool2d → Threshold(0) pair (``name`` is the Threshold)."""
        node = self.graph.nodes[name]
        if np.any(_array(node.threshold) != 0):
            self.fail(name, "only Threshold(0) after a pooling node (spike max-pooling) maps")
        pool_name = self.single_pred(name)
        if self.kind(pool_name) not in ("SumPool2d", "AvgPool2d"):
            self.fail(name, "a Threshold must follow a SumPool2d or AvgPool2d (max-pooling)")
        pool = self.graph.nodes[pool_name]
        source = self.single_pred(pool_name)
        if self.kind(source) not in ("Input", "LIF", "IF", "CubaLIF", "Threshold"):
            self.fail(pool_name, f"pools {source!r} ({self.kind(source)}), not spikes")
        kernel = _pair(pool.kernel_size, "kernel_size", pool_name)
        stride = _pair(pool.stride, "stride", pool_name)
        padding = _pair(pool.padding, "padding", pool_name)
        return MaxPool2d(kernel, stride, padding), source

    # -- the network ------------------------------------------------------------------------
    def build(self) -> NIRNetwork:
        graph = self.graph
        for name, node in graph.nodes.items():
            kind = self.kind(name)
            if kind in _UNSUPPORTED:
                self.fail(name, _UNSUPPORTED[kind])
            if kind not in (
                "Input",
                "Output",
                "Linear",
                "Affine",
                "Conv2d",
                "Flatten",
                "Delay",
                "LIF",
                "IF",
                "CubaLIF",
                "SumPool2d",
                "AvgPool2d",
                "Threshold",
            ):
                self.fail(name, "this node type has no pysnn mapping")
            if kind in ("SumPool2d", "AvgPool2d"):
                succ = self.succs[name]
                if len(succ) != 1 or self.kind(succ[0]) != "Threshold":
                    self.fail(
                        name,
                        "pysnn pools spikes only (max-pooling = SumPool2d → Threshold(0)); "
                        "a pooled sum has no pysnn form",
                    )
        net = NIRNetwork()
        attrs: Dict[str, str] = {}
        taken = set(dir(net))

        def attribute(node_name: str) -> str:
            if node_name in attrs:
                return attrs[node_name]
            base = _sanitize(node_name)
            name, k = base, 1
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            taken.add(name)
            attrs[node_name] = name
            return name

        populations = [
            n for n in graph.nodes if self.kind(n) in ("Input", "LIF", "IF", "CubaLIF", "Threshold")
        ]
        for name in populations:  # a MaxPool2d is named after its pooling node
            if self.kind(name) == "Threshold":
                attrs[name] = attribute(self.single_pred(name))
        # incoming branches of every neuron, with delay and source
        branches: Dict[str, List[Tuple[str, str, np.ndarray, bool, Tuple[int, ...]]]] = {}
        deps: Dict[str, set] = {n: set() for n in populations}  # zero-delay sources
        soft: Dict[str, set] = {n: set() for n in populations}  # every source
        for name in populations:
            kind = self.kind(name)
            if kind in ("LIF", "IF", "CubaLIF"):
                branches[name] = []
                for pred in self.preds[name]:
                    if self.kind(pred) not in ("Linear", "Affine", "Conv2d"):
                        self.fail(
                            name,
                            f"is fed by {pred!r} ({self.kind(pred)}); pysnn neurons receive "
                            "input through Linear, Affine (zero bias) or Conv2d nodes",
                        )
                    source, delay_s, flattened, src_shape = self.trace_back(pred)
                    steps = self.steps(pred, delay_s)
                    branches[name].append((pred, source, steps, flattened, src_shape))
                    soft[name].add(source)
                    if int(steps.min()) == 0:  # this step's spikes: the source goes first
                        deps[name].add(source)
                if not branches[name]:
                    self.fail(name, "has no input")
            elif kind == "Threshold":
                _, source = self.pool(name)
                deps[name].add(source)
                soft[name].add(source)
            elif self.preds[name]:
                self.fail(name, "an Input node cannot have input edges")
        # order: zero-delay sources first (Kahn, stable in graph order); among the ready nodes,
        # those whose delayed sources are placed too, so that only loops read last step's state
        order: List[str] = []
        remaining = list(populations)
        while remaining:
            placed = set(order)
            ready = [n for n in remaining if not (deps[n] - placed)]
            if not ready:
                raise ValueError(
                    "from_nir: the graph has a loop without delay between "
                    f"{sorted(remaining)}; a loop needs a Delay node of at least one step"
                )
            preferred = [n for n in ready if not (soft[n] - placed - {n})]
            choice = (preferred or ready)[0]
            order.append(choice)
            remaining.remove(choice)
        position = {n: k for k, n in enumerate(order)}

        inputs = [n for n in graph.nodes if self.kind(n) == "Input"]
        net._input_names = list(inputs)
        for name in order:
            kind = self.kind(name)
            shape = self.population_shape(name)
            attr = attribute(name)
            if kind == "Input":
                alpha_t, tau_t = self.trace_params(True)
                module = Input(self.cells(shape), self.dt, alpha_t, tau_t, "linear", **self.factory)
                net.add_module(attr, module)
                net._plan.append(("input", attr, inputs.index(name)))
            elif kind == "Threshold":
                module, source = self.pool(name)
                net.add_module(attr, module)
                net._plan.append(("pool", attr, attribute(source)))
                net.nir_nodes[self.single_pred(name)] = attr  # SumPool2d/AvgPool2d → Threshold
            else:
                module = self.neuron(name)
                net.add_module(attr, module)
                plan = []
                for pred, source, steps, flattened, src_shape in branches[name]:
                    use_state = position[source] >= position[name]
                    if use_state:
                        if int(steps.min()) < 1:  # pragma: no cover - excluded by the order
                            self.fail(pred, "reads a later population without delay")
                        if self.kind(source) == "Threshold":
                            self.fail(
                                pred,
                                "a delayed edge back from a pooling node is not supported "
                                "(pooling keeps no state)",
                            )
                        steps = steps - 1
                    if not flattened and len(src_shape) == 3 and self.kind(pred) != "Conv2d":
                        flattened = True  # a Linear reading (C, H, W): flatten implicitly
                    conn = self.connection(
                        pred, shape, math.prod(src_shape), src_shape, steps, flattened
                    )
                    conn_attr = attribute(pred)
                    net.add_module(conn_attr, conn)
                    net.add_layer(conn_attr, conn, module)
                    plan.append(_Branch(conn_attr, attribute(source), use_state, flattened))
                net._plan.append(("neuron", attr, plan))
            net.nir_nodes[name] = attr
        for name, node_name in attrs.items():
            net.nir_nodes.setdefault(name, node_name)
        outputs = [n for n in graph.nodes if self.kind(n) == "Output"]
        if not outputs:
            raise ValueError("from_nir: the graph has no Output node")
        for name in outputs:
            source = self.single_pred(name)
            if source not in position:
                self.fail(name, f"is fed by {source!r} ({self.kind(source)}), not by spikes")
            net._outputs.append(attribute(source))
        return net


def from_nir(
    graph_or_path,
    dt: Optional[float] = None,
    batch_size: int = 1,
    *,
    update_type: Optional[str] = None,
    alpha_t: float = 1.0,
    tau_t: float = 20.0,
    reduction: str = "sum",
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> NIRNetwork:
    """Build a pysnn network from a NIR graph.

    :param graph_or_path: a ``nir.NIRGraph`` or the path of a file written by ``nir.write``.
    :param dt: the time step in **ms**; ``None`` takes the graph's ``metadata["dt"]`` (seconds,
        as :func:`to_nir` writes it) and raises when there is none. NIR has no time step:
        choose the one the graph was made for (snnTorch's exporter assumes 1e-4 s = 0.1 ms,
        Norse's 1e-3 s unless told otherwise).
    :param batch_size: the batch size B of the network's state.
    :param update_type: keyword-only, how LIF/IF neurons integrate: ``"exponential"``
        (``v += dt/τ·(v_leak - v + r·I)``, NIR's forward-Euler step, as Norse and SpikingJelly
        compute it) or ``"linear"`` (``v = λ·v + α·I`` with ``λ = 1 - dt/τ``,
        ``α = r·dt/τ``, as snnTorch computes it). ``None``: what a pysnn-exported node says in
        its metadata, else ``"exponential"``.
    :param alpha_t: keyword-only, the trace increment of every population (traces feed
        learning rules only; NIR has none).
    :param tau_t: keyword-only, the trace time constant in ms (a decay ``exp(-dt/tau_t)`` for
        linear populations).
    :param reduction: keyword-only, the connections' ``reduction`` (``"sum"``: fast;
        ``"none"``: PySNN's per-synapse layout; same spikes).
    :param device: keyword-only, where the modules are created.
    :param dtype: keyword-only, their floating-point dtype.
    :returns: a :class:`NIRNetwork`.
    :raises ValueError: for what pysnn cannot represent, naming the node: ``v_reset ≠ v_leak``
        (LIF), ``LI``/``I`` (non-spiking) nodes, ``groups ≠ 1``, a non-zero bias, a Scale
        node, a pooled sum without ``Threshold(0)``, delays that are not whole steps,
        per-element delays before a Conv2d, loops without a Delay, nested graphs,
        ``tau < dt``.

    Thresholds: NIR's ``v > θ`` becomes pysnn's ``v >= nextafter(θ, +inf)``. Neurons start at
    their rest voltage ``v_leak`` (IF: ``v_reset``). Connections read as pysnn delays the Delay
    nodes before them (whole steps of ``dt``), and an edge that closes a loop reads the
    source's spikes of the previous step.
    """
    nir = _nir()
    if isinstance(graph_or_path, (str, PathLike)):
        graph = nir.read(graph_or_path)
    elif isinstance(graph_or_path, nir.NIRGraph):
        graph = graph_or_path
    else:
        raise TypeError(
            f"from_nir: expected a nir.NIRGraph or a path, got {type(graph_or_path).__name__}"
        )
    if dt is None:
        hint = (graph.metadata or {}).get("dt") if isinstance(graph.metadata, dict) else None
        if hint is None:
            raise ValueError(
                "from_nir: the graph's metadata has no dt; pass dt (in ms): NIR graphs carry "
                "no time step"
            )
        dt = float(_s_to_ms(float(np.asarray(hint))))
    if isinstance(dt, bool) or not isinstance(dt, Real) or not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"from_nir: dt must be a positive number of ms, got {dt!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"from_nir: batch_size must be a positive int, got {batch_size!r}")
    if not (isinstance(tau_t, Real) and tau_t > 0):
        raise ValueError(f"from_nir: tau_t must be a positive number of ms, got {tau_t!r}")
    options = {
        "update_type": update_type,
        "alpha_t": float(alpha_t),
        "tau_t": float(tau_t),
        "reduction": reduction,
        "device": device,
        "dtype": dtype,
    }
    return _Importer(graph, float(dt), batch_size, options).build()
