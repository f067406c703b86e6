"""examples/izhikevich_network.py: the 1000-neuron network of Izhikevich (2003) runs with --quick,
finds its population rhythm, saves the raster, and its check can fail."""

import re

import numpy as np
import pytest
import torch
from example_runner import EXAMPLES, run_example

pytest.importorskip("matplotlib")

NUMBER = r"([-+]?\d+(?:\.\d+)?)"


def numbers(pattern, text):
    match = re.search(pattern, text)
    assert match is not None, f"no line matching {pattern!r} in:\n{text}"
    return [float(g) for g in match.groups()]


def test_quick_run_finds_the_rhythm(quick_example, png_files_ok, tmp_path):
    out = quick_example("izhikevich_network.py")
    assert "CHECK PASSED" in out
    rate, exc, inh = numbers(
        rf"mean rate: {NUMBER} Hz \(excitatory {NUMBER} Hz, inhibitory {NUMBER} Hz\)", out
    )
    assert 3.0 < rate < 20.0 and exc > 0 and inh > 0  # the paper's network fires at ~8 Hz
    peak, ratio = numbers(rf"peak at {NUMBER} Hz in 5-60 Hz, {NUMBER}x the floor", out)
    assert 5.0 <= peak <= 60.0 and ratio >= 5.0
    assert re.search(r"(alpha|gamma) rhythm \([\d-]+ Hz\): [\d.]+x the floor, present", out)
    (wall,) = numbers(rf"wall time: {NUMBER} s for 500 ms", out)
    assert wall < 60.0
    png_files_ok(tmp_path, ["izhikevich_raster.png"])


def test_check_fails_without_enough_synapses(tmp_path):
    """With 10 % of the synapses (weights unchanged) the cells no longer synchronise."""
    out = run_example("izhikevich_network.py", tmp_path, "--p", "0.1", expect_rc=1)
    assert "CHECK FAILED" in out and "CHECK PASSED" not in out


def test_criterion_rejects_independent_spikes(monkeypatch):
    """The same spikes with each cell's train shifted in time (rates kept, synchrony gone) stay
    near the spectral floor; so do Poisson trains of the same rate."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import izhikevich_network as example

    raster = example.simulate(500, 1.0, torch.device("cpu"), 0)
    assert example.analyse(raster)["ratio"] >= example.RHYTHM_RATIO
    rng = np.random.default_rng(0)
    shifted = torch.stack(
        [torch.roll(raster[:, j], int(rng.integers(500))) for j in range(raster.shape[1])], 1
    )
    poisson = torch.from_numpy(rng.random(raster.shape) < raster.float().mean().item())
    for null in (shifted, poisson):
        assert example.analyse(null)["ratio"] < example.RHYTHM_RATIO
