"""Fixtures of the example tests: run a script of ``examples/`` with ``--quick``, check PNGs.

The script runs in a subprocess (``sys.executable``), as a user would start it, with ``--out``
in the test's ``tmp_path`` and a fixed ``--seed``; the test then checks what it printed and the
files it saved.
"""

from pathlib import Path
from typing import Callable, List

import pytest
from example_runner import assert_pngs, run_example


@pytest.fixture
def quick_example(tmp_path: Path) -> Callable[..., str]:
    """``quick_example(script, *extra_args, timeout=120)`` → the script's stdout."""

    def run(script: str, *extra: str, timeout: float = 120.0) -> str:
        return run_example(script, tmp_path, *extra, timeout=timeout)

    return run


@pytest.fixture
def png_files_ok() -> Callable[[Path, List[str]], None]:
    """``png_files_ok(folder, names)`` asserts that each file exists, is a PNG and is not empty."""
    return lambda folder, names: assert_pngs(folder, names, min_bytes=1000)
