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
