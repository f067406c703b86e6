"""Shared helper of the example tests: run a script of ``examples/`` with ``--quick``.

The script runs in a subprocess (``sys.executable``), as a user would start it, with ``--out``
in the test's ``tmp_path`` and a fixed ``--seed``; the test then checks what it printed and the
files it saved.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def quick_example(tmp_path: Path) -> Callable[..., str]:
    """``quick_example(script, *extra_args, timeout=120)`` → the script's stdout.

    Runs ``examples/<script> --quick --out <tmp_path> --seed 0 <extra_args>`` with the ``Agg``
    matplotlib backend and fails the test, showing both streams, if it exits with an error.
    """

    def run(script: str, *extra: str, timeout: float = 120.0) -> str:
        command = [sys.executable, str(EXAMPLES_DIR / script), "--quick", "--out", str(tmp_path)]
        command += ["--seed", "0", *extra]
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        assert done.returncode == 0, (
            f"{script} exited with {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        return done.stdout

    return run


def _png_files_ok(folder: Path, names: List[str]) -> None:
    for name in names:
        path = folder / name
        assert path.is_file(), f"{name} was not saved in {folder}"
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), f"{name} is not a PNG file"
        assert len(data) > 1000, f"{name} is suspiciously small ({len(data)} bytes)"


@pytest.fixture
def png_files_ok() -> Callable[[Path, List[str]], None]:
    """``png_files_ok(folder, names)`` asserts that each file exists, is a PNG and is not empty."""
    return _png_files_ok
