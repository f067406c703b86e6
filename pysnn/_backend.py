"""Per-module backend choice: ``"auto"``, ``"torch"`` or ``"native"``.

Modules that have a fused C twin of their step (:class:`~pysnn.neuron.Input`, the IF/LIF/
adaptive LIF neurons, :class:`~pysnn.connection.Linear` and the learning rules of
:mod:`pysnn.learning`) take a keyword-only ``backend`` argument and expose it as a validated,
settable ``backend`` attribute that appears in their ``repr`` (SpikingJelly's
``MemoryModule.backend`` is the anchor):

* ``"torch"``: the whole-step function of :mod:`pysnn.functional`, in eager PyTorch (any
  device, any dtype, differentiable tensors rejected the same way);
* ``"native"``: its C twin of :mod:`pysnn.native`; a step that the twin cannot run raises a
  :class:`NativeUnavailableError` that says why (extension not built, kernels switched off
  process-wide, a CUDA tensor, ``float16``, a subclass that overrides the step, ...);
* ``"auto"`` (default): the C twin where it applies, PyTorch elsewhere.

Both backends compute the same arithmetic in the same order and precision and read every
parameter from its buffer at every step (nothing is cached that an edit could make stale), so
they give the same numbers bit for bit; ``tests/test_backends.py`` checks it as a matrix of
models, parameters, mutations and thread counts.
"""

from typing import Callable, Tuple

import torch

__all__ = ["BACKENDS", "NativeUnavailableError", "check_backend", "BackendMixin"]

from pysnn._checks import BACKENDS, check_backend  # noqa: F401 (part of this module's API)

_grad_enabled = torch.is_grad_enabled


class NativeUnavailableError(RuntimeError):
    """Raised when ``backend="native"`` was asked for and the C twin cannot run this step."""


class KernelCache(dict):
    """A module's kernel argument structs (see :mod:`pysnn.native`): rebuilt on demand, so a
    copy or a pickle of the module starts with an empty one (ctypes structs cannot be copied)."""

    def __deepcopy__(self, memo) -> "KernelCache":
        return KernelCache()

    def __reduce__(self):
        return (KernelCache, ())


_OPAQUE: dict = {}


def _opaque(function: Callable) -> Callable:
    """``function`` hidden from dynamo (a C kernel it cannot trace): run as a graph break."""
    if function not in _OPAQUE:
        _OPAQUE[function] = torch.compiler.disable(function)
    return _OPAQUE[function]


def eager_step(step: Callable, *args):
    """``step(*args)`` (a whole-step function of :mod:`pysnn.functional`) without autograd
    where grad mode is on: the step works in place on the module's state, as its C twin does,
    which autograd does not follow (a leaf that requires grad cannot be changed in place, and
    any other state would grow a graph)."""
    if _grad_enabled():
        with torch.no_grad():
            return step(*args)
    return step(*args)


class BackendMixin:
    """The ``backend`` attribute of modules with a native twin.

    Subclasses list in ``_step_methods`` the methods that make up their step: a subclass of
    theirs that overrides one of them runs its own code on the ``"torch"`` backend (``"auto"``
    falls back to it, ``"native"`` raises), so an override is never skipped silently.
    """

    supported_backends: Tuple[str, ...] = ("torch", "native")
    _step_methods: Tuple[str, ...] = ()
    _native_owner: type = object  # the class whose step the C twin implements
    _backend: str = "auto"

    def __init_subclass__(cls, native_twin: bool = False, **kwargs) -> None:
        # ``class LIFNeuron(BaseNeuron, native_twin=True)``: the library class whose step the
        # C twin implements; its subclasses keep the twin unless they override a step method
        super().__init_subclass__(**kwargs)
        if native_twin:
            cls._native_owner = cls
        owner = cls._native_owner
        cls._overrides_step_flag = (
            owner is object
            or not issubclass(cls, owner)
            or any(getattr(cls, name) is not getattr(owner, name) for name in cls._step_methods)
        )

    @property
    def backend(self) -> str:
        """``"auto"``, ``"torch"`` or ``"native"`` (see :mod:`pysnn._backend`)."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        value = check_backend(value, type(self).__name__)
        if value == "native":
            reason = self._static_native_obstacle()
            if reason is not None:
                raise NativeUnavailableError(
                    f"{type(self).__name__}: backend='native' cannot run: {reason}"
                )
        object.__setattr__(self, "_backend", value)

    _overrides_step_flag: bool = True  # set for every subclass when it is created

    @classmethod
    def _overrides_step(cls) -> bool:
        """Whether ``cls`` redefines a step method of the class its C twin implements."""
        return cls._overrides_step_flag

    def _static_native_obstacle(self):
        """Why the C twin can never run for this module (None when it may)."""
        from pysnn import native

        if not native.available():
            return "the extension pysnn._native is not built (install pysnn with a C compiler)"
        if not native.enabled():
            return "the kernels are switched off process-wide (PYSNN_NATIVE=0 or set_enabled)"
        if self._overrides_step():
            return (
                f"{type(self).__name__} overrides a step method of "
                f"{self._native_owner.__name__} ({', '.join(self._step_methods)}), which the "
                "C kernel would skip"
            )
        return None

    def _native_failed(self, reason: str) -> None:
        """Raise for ``backend="native"`` when the twin cannot run this step."""
        raise NativeUnavailableError(
            f"{type(self).__name__}: backend='native' cannot run: {reason}"
        )

    def _dispatch(self, torch_step: Callable, native_step: Callable, *args):
        """Run a whole step on this module's backend (see :mod:`pysnn._backend`).

        The step works in place on the module's state, which autograd does not follow: the
        PyTorch step runs without autograd (:func:`eager_step`), as the C twin does, so a state
        or parameter buffer that requires grad (``v_cell.requires_grad_()``) is updated alike on
        both, and no autograd graph grows in the state.
        """
        backend = self._backend
        if backend == "torch":
            return eager_step(torch_step, *args)
        if backend == "auto" and isinstance(args[0], torch.Tensor) and not args[0].is_cpu:
            return eager_step(torch_step, *args)  # CUDA: no C twin, and no per-step checks
        if torch.compiler.is_compiling():
            if backend == "auto":
                return eager_step(torch_step, *args)  # traced and compiled by dynamo
            native_step = _opaque(native_step)
        return native_step(*args, cache=self.__dict__["_native_cache"], strict=backend == "native")

    def _init_backend(self, backend: str) -> None:
        self.__dict__["_native_cache"] = KernelCache()
        self.backend = check_backend(backend, type(self).__name__)


class StateMixin:
    """State declared once: each state buffer with its reset value, and one generic reset.

    ``register_state(name, tensor, reset)`` registers ``tensor`` as a buffer and records what
    :meth:`reset_declared_state` sets it to: a number, or the name of another buffer whose value
    is broadcast into it (a neuron's ``v_cell`` resets to ``v_rest``). SpikingJelly's
    ``register_memory`` is the anchor.
    """

    def register_state(
        self, name: str, tensor: "torch.Tensor", reset, persistent: bool = True
    ) -> None:
        """Register a state buffer and its reset value (a number or a buffer's name)."""
        self.register_buffer(name, tensor, persistent=persistent)
        self.__dict__.setdefault("_state_resets", {})[name] = reset

    def reset_declared_state(self) -> None:
        """Set every declared state buffer to its reset value, in place."""
        buffers = self._buffers
        for name, reset in self.__dict__.get("_state_resets", {}).items():
            buffer = buffers[name]
            if isinstance(reset, str):
                buffer.copy_(buffers[reset].expand_as(buffer))
            else:
                buffer.fill_(reset)
