"""pysnn: spiking neural networks with correlation-based learning on PyTorch.

A faithful, faster reimplementation of PySNN 0.1.1. Import the submodules directly, as with PySNN:
``from pysnn.neuron import LIFNeuron``.
"""

__version__ = "1.0.0.dev0"
