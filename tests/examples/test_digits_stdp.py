"""examples/digits_stdp.py runs with --quick, reports an accuracy and saves its two figures."""

import re

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

NUMBER = r"(\d+(?:\.\d+)?)"


def test_digits_stdp_quick_run(quick_example, png_files_ok, tmp_path):
    out = quick_example("digits_stdp.py")
    match = re.search(rf"test accuracy {NUMBER} \((\d+)/(\d+), chance 0\.1, no vote (\d+)\)", out)
    assert match is not None, f"no accuracy line in:\n{out}"
    accuracy = float(match.group(1))
    correct, total, no_vote = (int(g) for g in match.groups()[1:])
    assert 0.0 <= accuracy <= 1.0
    assert 0 <= correct <= total and no_vote <= total - correct
    assert accuracy == pytest.approx(correct / total, abs=1e-4)
    sizes = re.search(r"digits: (\d+) training and (\d+) test samples", out)
    assert sizes is not None and int(sizes.group(2)) == total
    assert re.search(rf"time: {NUMBER} s", out)
    neurons = re.search(r"neurons per class: \[([\d, ]+)\], silent: (\d+)", out)
    assert neurons is not None
    per_class = [int(n) for n in neurons.group(1).split(",")]
    assert len(per_class) == 10
    png_files_ok(tmp_path, ["digits_receptive_fields.png", "digits_confusion.png"])


def test_digits_stdp_quick_run_on_two_processes(tmp_path):
    """``torchrun --standalone --nproc-per-node 2 digits_stdp.py --distributed --quick``: the
    same report from rank 0; the whole process tree is killed if it overruns."""
    import os
    import signal
    import subprocess
    import sys

    from example_runner import EXAMPLES

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", str(EXAMPLES / "digits_stdp.py"), "--distributed"]
    command += ["--quick", "--out", str(tmp_path), "--seed", "0"]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the distributed run overran 150 s:\n{out}\n{err[-3000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err[-3000:]}"
    assert "distributed: 2 processes (gloo), batch 8 each" in out
    match = re.search(rf"test accuracy {NUMBER} \((\d+)/(\d+), chance 0\.1", out)
    assert match is not None, out
    assert int(match.group(3)) == 96 and float(match.group(1)) > 0.4
    assert out.count("test accuracy") == 1  # rank 0 reports, rank 1 is silent
