"""pysnn: spiking neural networks with correlation-based learning on PyTorch.

A faithful, faster reimplementation of PySNN 0.1.1. Import the submodules directly, as with PySNN:
``from pysnn.neuron import LIFNeuron``.
"""

__version__ = "1.0.0.dev0"

_NIR = ("to_nir", "from_nir")


def __getattr__(name: str):
    """``pysnn.to_nir`` / ``pysnn.from_nir``: import :mod:`pysnn.nir_io` on first use only, so
    that ``import pysnn`` stays light (and needs no ``nir``)."""
    if name in _NIR:
        from pysnn import nir_io

        return getattr(nir_io, name)
    raise AttributeError(f"module 'pysnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_NIR))
