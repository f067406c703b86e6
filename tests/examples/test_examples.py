"""The ported PySNN examples run offline with ``--quick`` and report sensible numbers.

Each example runs in a subprocess (``sys.executable``), as a user would start it, with its output
folder in ``tmp_path``; the tests read what it prints and check the PNG files it saves.
"""

import re

import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from example_runner import EXAMPLES, assert_pngs, run_example

NUMBER = r"([-+]?\d+(?:\.\d+)?)"
READOUT = (
    rf"test accuracy: {NUMBER} before training, {NUMBER} after \((\d+) classes, chance {NUMBER}\)"
)


def numbers(pattern: str, text: str) -> List[float]:
    match = re.search(pattern, text)
    assert match is not None, f"no line matching {pattern!r} in:\n{text}"
    return [float(g) for g in match.groups()]


def class_rates(text: str, when: str) -> List[float]:
    """The per-class output rates of the ``before``/``after`` line of the MLP examples."""
    return numbers(rf"{when} \|.*per class: label 0: +{NUMBER} Hz, label 1: +{NUMBER} Hz", text)


def test_mstdpet_weight_rises_then_falls(tmp_path):
    out = run_example("mstdpet_example.py", tmp_path)
    assert "CHECK PASSED" in out
    start, middle, end = numbers(rf"weight: start {NUMBER} -> middle {NUMBER} -> end {NUMBER}", out)
    assert start == pytest.approx(0.7)  # the constant initial weight of the script
    assert middle > start and end < middle
    (n_pre,) = numbers(r"presynaptic spikes: (\d+)", out)
    # 1000 steps of a 100 Hz Poisson train at dt = 1 ms: 100 expected, 5 sigma is 50
    assert 50 <= n_pre <= 150
    first, second = numbers(
        r"postsynaptic spikes: (\d+) in the first half, (\d+) in the second", out
    )
    assert first > 0 and second > 0
    assert_pngs(tmp_path, ["mstdpet.png"])


def test_mstdpet_check_fails_when_the_weight_does_not_follow_the_reward(
    tmp_path, monkeypatch, capsys
):
    """The script's own check can fail: with only the post-before-pre term (a_pre = 0) the
    eligibility is never positive, so the weight cannot rise while the reward is +1."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import mstdpet_example
    from pysnn.learning import MSTDPET

    def depressing_rule(layers, a_pre, a_post, lr, e_trace_decay):
        return MSTDPET(layers, 0.0, a_post, lr, e_trace_decay)

    monkeypatch.setattr(mstdpet_example, "MSTDPET", depressing_rule)
    monkeypatch.setattr(sys, "argv", ["mstdpet_example.py", "--quick", "--out", str(tmp_path)])
    assert mstdpet_example.main() == 1
    printed = capsys.readouterr().out
    assert "CHECK FAILED" in printed and "CHECK PASSED" not in printed


def test_mstdpet_plotted_eligibility_is_the_rule_recomputed_per_step(monkeypatch):
    """The eligibility panel equals E_t = γ·E_(t-1) + a_pre·x_pre·s_post − a_post·s_pre·x_post,
    recomputed in NumPy from the recorded (delayed) presynaptic and postsynaptic spikes and
    traces, and the weight panel W_t = W_(t-1) + lr·r_t·E_t."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import mstdpet_example

    torch.manual_seed(0)
    rec = mstdpet_example.experiment(400, torch.device("cpu"))
    panels = {title: values for values, _, title in mstdpet_example.figure_panels(rec)}
    plotted = panels["eligibility trace"].numpy().astype(np.float64).reshape(-1)
    p = mstdpet_example.RULE
    pre_s, pre_x, post_s, post_x, reward = (
        rec[k].numpy().astype(np.float64).reshape(400)
        for k in ("pre_spikes", "pre_trace", "post_spikes", "post_trace", "reward")
    )
    assert post_s.sum() > 5 and pre_s.sum() > 5  # the run has pairs to correlate
    expected = np.empty(400)
    weights = np.empty(400)
    e, w = 0.0, mstdpet_example.W_START
    for t in range(400):
        e = (
            p["e_trace_decay"] * e
            + p["a_pre"] * pre_x[t] * post_s[t]
            - p["a_post"] * (pre_s[t] * post_x[t])
        )
        w = w + p["lr"] * reward[t] * e
        expected[t], weights[t] = e, w
    np.testing.assert_allclose(plotted, expected, rtol=1e-5, atol=1e-6)
    plotted_w = panels["weight"].numpy().astype(np.float64).reshape(-1)
    np.testing.assert_allclose(plotted_w, weights, rtol=1e-5, atol=1e-6)
    # the scale of the traces, not of a stale or accumulated tensor
    assert np.abs(plotted).max() < 10


def test_mlp_example_check_fails_without_learning(tmp_path, monkeypatch, capsys):
    """The MLP example's check can fail: a rule that never changes a weight leaves the readout
    accuracy where it started."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import mlp_example

    class NoLearning:
        def __init__(self, layers, *args):
            pass

        def update_state(self):
            pass

        def step(self):
            pass

    monkeypatch.setattr(mlp_example, "FedeSTDP", NoLearning)
    monkeypatch.setattr(sys, "argv", ["mlp_example.py", "--quick", "--out", str(tmp_path)])
    assert mlp_example.main() == 1
    printed = capsys.readouterr().out
    assert "CHECK FAILED" in printed and "CHECK PASSED" not in printed


@pytest.mark.parametrize(
    "script, figures",
    [
        ("mlp_example.py", ["mlp_spikes.png", "mlp_weights.png"]),
        ("mlp_example_cyclic.py", ["mlp_cyclic_spikes.png", "mlp_cyclic_weights.png"]),
    ],
)
def test_mlp_examples_report_rates_per_class(tmp_path, script, figures):
    out = run_example(script, tmp_path)
    # the check: learning raised the accuracy of the any-spike readout to 1, from below
    before, after = numbers(rf"readout.*: {NUMBER} before training, {NUMBER} after", out)
    assert before < 1.0 and after == 1.0
    assert f"CHECK PASSED: FedeSTDP raised the OR accuracy of the any-spike readout from " in out
    rates = {when: class_rates(out, when) for when in ("before", "after")}
    for when, (silent, active) in rates.items():
        # [0, 0] sends no spike at all, so nothing downstream can fire; a 2 ms refractory
        # period at dt = 1 ms allows one spike every 3 steps at most: 333.3 Hz
        assert silent == 0.0
        assert 0.0 <= active <= 1000.0 / 3 + 0.1
    # the random start is too weak to answer most samples; learning makes the network respond
    assert rates["after"][1] > rates["before"][1]
    per_sample = numbers(
        rf"after \| output rate per sample \(Hz\): +{NUMBER}, +{NUMBER}, +{NUMBER}, +{NUMBER}", out
    )
    assert per_sample[0] == 0.0 and min(per_sample[1:]) > 0.0
    if script == "mlp_example.py":
        # the random start: hidden neurons do not fire in lockstep
        distinct, active = numbers(
            r"hidden layer before training: (\d+) distinct spike trains among (\d+)", out
        )
        assert active == 0 or distinct > 1
    else:
        match = re.search(
            r"hidden spikes after training: (\d+) with the feedback, (\d+) without it \(same "
            r"input spikes\): the feedback (adds|removes|changes nothing:) (\d+) hidden spikes",
            out,
        )
        assert match is not None, out
        with_fb, without_fb, effect, count = match.groups()
        difference = int(with_fb) - int(without_fb)
        # the word says what the numbers show
        assert effect == (
            "adds" if difference > 0 else "removes" if difference < 0 else "changes nothing:"
        )
        assert int(count) == abs(difference)
    assert_pngs(tmp_path, figures)


def test_cnn_example_on_synthetic_nmnist(tmp_path):
    out = run_example("cnn_example.py", tmp_path)
    data = Path(re.search(r"wrote synthetic N-MNIST event files to (\S+) ", out).group(1))
    assert data.parent == tmp_path
    assert sorted(p.name for p in data.iterdir()) == ["Test", "Train"]
    assert len(list((data / "Train").rglob("*.bin"))) == 10  # --quick: one file per class
    n_train, n_test = numbers(r"(\d+) training and (\d+) test samples", out)
    assert (n_train, n_test) == (10, 10)
    before, after, n_classes, chance = numbers(READOUT, out)
    assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
    assert n_classes == 10 and chance == pytest.approx(0.1)
    for layer in (1, 2, 3):
        before, after = numbers(
            rf"layer {layer}: {NUMBER} spikes per sample before, {NUMBER} after", out
        )
        # the synthetic digits emit events, and every layer has positive initial weights
        assert before > 0 and after >= 0
    assert_pngs(tmp_path, ["cnn_kernels.png", "cnn_activity.png"])


def test_cnn_example_reads_the_data_folder_given(tmp_path):
    """``--data DIR`` reads that folder (here 3 classes) instead of generating one."""
    from pysnn.datasets import synthetic_nmnist

    data = synthetic_nmnist(tmp_path / "data", 2, 1, classes=3, duration_ms=20.0, seed=3)
    out_dir = tmp_path / "out"
    out = run_example("cnn_example.py", out_dir, "--data", str(data))
    assert "wrote synthetic" not in out
    assert not any(out_dir.glob("synthetic_nmnist*"))
    assert f"data: {data}, 6 training and 3 test samples" in out
    _, _, n_classes, chance = numbers(READOUT, out)
    assert n_classes == 3 and chance == pytest.approx(1 / 3, abs=1e-3)


def test_gym_example_reports_before_and_after(tmp_path):
    pytest.importorskip("gymnasium")
    out = run_example("gym_example.py", tmp_path)
    (before,) = numbers(rf"mean episode reward before learning: {NUMBER}", out)
    (after,) = numbers(rf"mean episode reward after learning: {NUMBER}", out)
    # CartPole gives +1 per step; --quick caps episodes at 100 steps; a pole never falls at once
    assert 5.0 <= before <= 100.0 and 5.0 <= after <= 100.0
    # the verdict follows from the numbers printed: a change above twice its standard error
    learned = re.search(
        rf"RESULT: the network learned: \+{NUMBER} .*standard error {NUMBER}\)", out
    )
    unclear = re.search(
        rf"RESULT: no clear learning: the change {NUMBER} is within twice the standard error "
        rf"{NUMBER} of the difference",
        out,
    )
    assert (learned is None) != (unclear is None)
    change, noise = (float(g) for g in (learned or unclear).groups())
    assert change == pytest.approx(after - before, abs=0.11)
    assert (change > 2 * noise) == (learned is not None)
    # --quick searches a grid of two configurations, each evaluated on the unseen episodes;
    # the chosen one's evaluation is the "after" number
    grid = re.findall(
        rf"lr=[\d.]+, e_trace_decay=[\d.]+: mean reward of the last \d+ training episodes "
        rf"{NUMBER}, of the 5 evaluation episodes {NUMBER}",
        out,
    )
    assert len(grid) == 2
    best = max(grid, key=lambda scores: float(scores[0]))
    assert float(best[1]) == pytest.approx(after, abs=0.051)
    assert_pngs(tmp_path, ["gym_training.png"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_gpu_is_a_clear_error(tmp_path):
    out = run_example("mstdpet_example.py", tmp_path, "--device", "cuda", expect_rc=2)
    assert "--device cuda" in out and "is_available" in out
