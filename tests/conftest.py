"""Shared fixtures. ``tests/reference.py`` (NumPy references) is importable as ``reference``."""

import numpy as np
import pytest
import torch


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed, so a failing test fails the same way every run."""
    return np.random.default_rng(20191128)


@pytest.fixture
def seeded() -> None:
    """Seed torch's global generator (module constructors draw their initial weights from it)."""
    torch.manual_seed(1234)
