"""Shared fixtures. ``tests/reference.py`` (NumPy references) and ``tests/helpers.py`` (shared test
helpers) are importable as ``reference`` and ``helpers``."""

import importlib.util

import numpy as np
import pytest
import torch

# Test modules that import an optional package at module level are not collected where it is
# missing (e.g. a GPU machine with torch and pytest only); the report header names them.
_IMPORTS_AT_MODULE_LEVEL = {"test_properties.py": "hypothesis"}
collect_ignore = [
    name
    for name, package in _IMPORTS_AT_MODULE_LEVEL.items()
    if importlib.util.find_spec(package) is None
]


def pytest_report_header(config):
    if collect_ignore:
        missing = ", ".join(f"{name} ({_IMPORTS_AT_MODULE_LEVEL[name]})" for name in collect_ignore)
        return [f"not collected, optional package missing: {missing}"]
    return []


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed, so a failing test fails the same way every run."""
    return np.random.default_rng(20191128)


@pytest.fixture
def seeded() -> None:
    """Seed torch's global generator (module constructors draw their initial weights from it)."""
    torch.manual_seed(1234)


_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=_CUDA)]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each device a test can run on: the CPU, and CUDA where a GPU is present (skipped
    elsewhere). A test's own ``@pytest.mark.parametrize("device", ...)`` takes precedence."""
    return torch.device(request.param)
