"""Run a script of ``examples/`` as a user would, and check the PNG files it saved.

Shared by ``conftest.py`` (fixtures) and the example tests.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import List

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_example(
    script: str, out: Path, *extra: str, expect_rc: int = 0, timeout: float = 120.0
) -> str:
    """Run ``examples/<script> --quick --out <out> --seed 0 [extra]`` in a subprocess.

    :returns: its stdout (plus stderr when a non-zero exit code is expected).
    """
    command = [sys.executable, str(EXAMPLES / script), "--quick", "--out", str(out), "--seed", "0"]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    done = subprocess.run(
        command + list(extra), capture_output=True, text=True, timeout=timeout, env=env
    )
    assert (
        done.returncode == expect_rc
    ), f"{script} exited with {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout + ("" if expect_rc == 0 else done.stderr)


def assert_pngs(out: Path, names: List[str], min_bytes: int = 5000) -> None:
    """Each named file exists in ``out``, is a PNG and holds at least ``min_bytes`` bytes."""
    for name in names:
        path = out / name
        assert path.is_file(), f"{name} was not saved in {out}"
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), f"{name} is not a PNG"
        assert len(data) > min_bytes, f"{name} is suspiciously small ({len(data)} bytes)"
