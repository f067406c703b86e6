"""Plots: the drawn data equal the inputs, and the saved images are not blank."""

import sys

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from pysnn.connection import Conv2d, Linear  # noqa: E402
from pysnn.plotting import raster_plot, receptive_fields, trace_plot, weight_plot  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _assert_image_not_blank(path):
    assert path.exists() and path.stat().st_size > 0
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert image.std() > 0.01  # not uniform


def test_raster_plot_marks_every_spike_at_its_time(tmp_path):
    generator = torch.Generator().manual_seed(0)
    spikes = torch.rand(30, 4, 1, 12, generator=generator) < 0.2  # (T, B, 1, N)
    path = tmp_path / "raster.png"
    fig = raster_plot(spikes, dt=0.5, sample=2, save_path=path)
    expected = []
    for t in range(30):
        for n in range(12):
            if spikes[t, 2, 0, n]:
                expected.append((t * 0.5, n))
    points = fig.axes[0].collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(points).tolist())) == sorted(expected)
    assert fig.axes[0].get_xlabel() == "time (ms)"
    _assert_image_not_blank(path)


def test_raster_plot_accepts_numpy_times_and_an_axes():
    spikes = np.zeros((5, 3), dtype=bool)
    spikes[1, 2] = spikes[4, 0] = True
    fig, ax = plt.subplots()
    returned = raster_plot(spikes, times=np.array([0, 3, 6, 9, 12]), ax=ax, title="r")
    assert returned is fig
    assert np.asarray(ax.collections[0].get_offsets()).tolist() == [[3.0, 2.0], [12.0, 0.0]]
    assert ax.get_title() == "r"


def test_trace_plot_draws_values_and_thresholds(tmp_path):
    steps = 40
    time = np.arange(steps)
    values = np.stack([np.sin(time / 5.0), np.cos(time / 7.0), time / 40.0], axis=1)
    batched = torch.tensor(np.stack([values * 0, values]), dtype=torch.float32)  # (B, T, N)
    batched = batched.permute(1, 0, 2).unsqueeze(2)  # (T, B, 1, N)
    path = tmp_path / "trace.png"
    fig = trace_plot(batched, 0.8, dt=2.0, sample=1, neurons=[0, 2], save_path=path)
    ax = fig.axes[0]
    curves = [line for line in ax.lines if line.get_label().startswith("neuron")]
    assert [line.get_label() for line in curves] == ["neuron 0", "neuron 2"]
    np.testing.assert_allclose(curves[0].get_xdata(), time * 2.0)
    np.testing.assert_allclose(curves[0].get_ydata(), values[:, 0], rtol=1e-6)
    np.testing.assert_allclose(curves[1].get_ydata(), values[:, 2], rtol=1e-6)
    threshold = [line for line in ax.lines if line.get_label() == "threshold"]
    assert len(threshold) == 1 and np.allclose(threshold[0].get_ydata(), 0.8)
    _assert_image_not_blank(path)


def test_trace_plot_per_neuron_and_moving_thresholds():
    values = torch.arange(12.0).reshape(4, 1, 1, 3)  # (T, B, 1, N)
    fig = trace_plot(values, torch.tensor([[[1.0, 2.0, 3.0]]]))  # cells shape (B, 1, N)
    levels = sorted(line.get_ydata()[0] for line in fig.axes[0].lines[3:])
    assert levels == [1.0, 2.0, 3.0]
    moving = values * 0.5 + 1.0
    fig = trace_plot(values, moving)
    np.testing.assert_allclose(fig.axes[0].lines[4].get_ydata(), moving[:, 0, 0, 1].numpy())
    with pytest.raises(ValueError, match="thresh must be a number, one value per neuron"):
        trace_plot(values, torch.ones(5))


def test_weight_plot_shows_the_matrix(tmp_path):
    torch.manual_seed(0)
    con = Linear(20, 6, 1, 1.0, 0)
    path = tmp_path / "weights.png"
    fig = weight_plot(con, save_path=path, title="w")
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), con.weight.numpy(), rtol=1e-6)
    assert len(fig.axes) == 2  # with a colour bar
    _assert_image_not_blank(path)
    with pytest.raises(ValueError, match="use receptive_fields for Conv2d"):
        weight_plot(torch.zeros(2, 1, 3, 3))


def test_receptive_fields_of_linear_rows(tmp_path):
    weight = torch.arange(5 * 12, dtype=torch.float32).reshape(5, 12)  # 5 fields of 3×4
    path = tmp_path / "fields.png"
    fig = receptive_fields(weight, (3, 4), n_cols=2, save_path=path)
    mosaic = fig.axes[0].images[0].get_array()
    # 3 rows × 2 columns of 3×4 images with one blank line between them
    assert mosaic.shape == (3 * 4 - 1, 2 * 5 - 1)
    for index in range(5):
        row, col = divmod(index, 2)
        block = mosaic[row * 4 : row * 4 + 3, col * 5 : col * 5 + 4]
        np.testing.assert_array_equal(block, weight[index].reshape(3, 4).numpy())
    assert mosaic.mask[3].all() and mosaic.mask[:, 4].all()  # the gaps are blank
    assert mosaic.mask[8:, 5:].all()  # the missing sixth field is blank
    _assert_image_not_blank(path)


def test_receptive_fields_of_conv_kernels_with_channels(tmp_path):
    torch.manual_seed(0)
    con = Conv2d(2, 3, 3, (6, 6), 1, 1.0, 0)
    path = tmp_path / "kernels.png"
    fig = receptive_fields(con, save_path=path)
    mosaic = fig.axes[0].images[0].get_array()
    kernels = con.weight.numpy()
    # 2×2 grid; each field shows its two input channels side by side (3 + 1 + 3 wide)
    for index in range(3):
        row, col = divmod(index, 2)
        for channel in range(2):
            left = col * 8 + channel * 4
            block = mosaic[row * 4 : row * 4 + 3, left : left + 3]
            np.testing.assert_allclose(block, kernels[index, channel], rtol=1e-6)
    _assert_image_not_blank(path)


def test_receptive_fields_errors():
    with pytest.raises(ValueError, match="image_shape .* is required"):
        receptive_fields(torch.zeros(4, 9))
    with pytest.raises(ValueError, match="as many pixels as the 9 inputs"):
        receptive_fields(torch.zeros(4, 9), (2, 2))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        receptive_fields("weights", (3, 3))
    with pytest.raises(ValueError, match="sample must index the batch axis of size 2"):
        raster_plot(torch.zeros(3, 2, 4), sample=5)
    with pytest.raises(ValueError, match="dt must be a number > 0"):
        raster_plot(torch.zeros(3, 4), dt=0)


def test_missing_matplotlib_names_the_plot_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'pysnn\[plot\]'"):
        raster_plot(np.zeros((3, 2)))


def _gif_frames(path):
    from PIL import Image

    with Image.open(path) as gif:
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB"), dtype=np.int64))
    return frames


def _count(frame, colour):
    red, green, blue = frame[..., 0], frame[..., 1], frame[..., 2]
    strong, weak = lambda c: c > 180, lambda c: c < 80
    if colour == "red":
        return int((strong(red) & weak(green) & weak(blue)).sum())
    return int((weak(red) & weak(green) & strong(blue)).sum())


def test_event_animation_frames_show_polarity_per_window(tmp_path):
    from pysnn.file_io import Events
    from pysnn.plotting import event_animation

    # windows of 10 ms from 0: ON event in window 0, OFF event in window 1, ON + OFF in window 3
    events = Events(
        x=np.array([1, 4, 0, 5]),
        y=np.array([2, 3, 1, 0]),
        p=np.array([1, 0, 1, 0]),
        t=np.array([2.0, 15.0, 31.0, 39.5]),
    )
    path = tmp_path / "events.gif"
    anim = event_animation(events, 10.0, height=6, width=6, save_path=path, title="N")
    assert type(anim).__name__ == "FuncAnimation"
    frames = _gif_frames(path)
    assert len(frames) == 4
    expected = [(True, False), (False, True), (False, False), (True, True)]  # (red, blue)
    for frame, (red, blue) in zip(frames, expected):
        assert (_count(frame, "red") > 0) == red
        assert (_count(frame, "blue") > 0) == blue
        assert frame.std() > 1  # not uniform


def test_event_animation_of_given_frames(tmp_path):
    from pysnn.plotting import event_animation

    frames = torch.zeros(5, 4, 4)
    for k in range(5):
        frames[k, k % 4, k % 4] = 1.0
    path = tmp_path / "frames.gif"
    event_animation(frames, 2.0, fps=10, save_path=path)
    assert len(_gif_frames(path)) == 5
    with pytest.raises(ValueError, match=r"frames must be \(n, H, W\) or \(n, H, W, 3\)"):
        event_animation(torch.zeros(5, 4), 2.0)
    with pytest.raises(ValueError, match="frame_duration_ms must be > 0"):
        event_animation(frames, 0.0)
    with pytest.raises(ValueError, match="nothing to animate"):
        event_animation(torch.zeros(0, 4, 4), 1.0)
