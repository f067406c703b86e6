"""Plots of spikes, voltages/traces, weights, receptive fields and event streams.

matplotlib is optional (``pip install 'pysnn[plot]'``) and imported only when a function here is
called. Every function draws with the object-oriented API into a new figure (or into ``ax`` when
given), never calls ``plt.show()``, returns the :class:`matplotlib.figure.Figure` (the
:class:`~matplotlib.animation.FuncAnimation` for animations) and, with ``save_path``, saves it
(PNG, or any format matplotlib infers from the extension; animations as GIF). Close figures you
no longer need with ``plt.close(fig)``.

Inputs are tensors (any device) or NumPy arrays with **time first**, as recorded by
:class:`pysnn.monitor.Monitor`: ``(T, N)`` or ``(T, B, ..., N)``; for the latter one sample ``b``
is shown and its remaining axes are flattened into the neuron axis. Times are in ms: step ``t``
is drawn at ``t · dt`` unless explicit ``times`` are given (e.g. ``monitor.steps * dt``).
"""

import math
from os import PathLike
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from pysnn.file_io import Events

__all__ = ["raster_plot", "trace_plot", "weight_plot", "receptive_fields", "event_animation"]

ArrayLike = Union[Tensor, np.ndarray]
SavePath = Optional[Union[str, PathLike]]


def _pyplot():
    """Import ``matplotlib.pyplot`` or explain how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "pysnn.plotting needs matplotlib; install it with: pip install 'pysnn[plot]'"
        ) from error
    return plt


def _to_numpy(value: Any, name: str, owner: str) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    raise TypeError(
        f"{owner}: {name} must be a torch.Tensor or a numpy.ndarray, got {type(value).__name__}"
    )


def _time_major(values: np.ndarray, sample: int, name: str, owner: str) -> np.ndarray:
    """``(T,)``, ``(T, N)`` or ``(T, B, ..., N)`` → ``(T, N)`` (sample ``sample`` of the batch)."""
    if values.ndim == 0:
        raise ValueError(f"{owner}: {name} must have a time axis first, got a scalar")
    if values.ndim == 1:
        return values[:, None]
    if values.ndim == 2:
        return values
    if not -values.shape[1] <= sample < values.shape[1]:
        raise ValueError(
            f"{owner}: sample must index the batch axis of size {values.shape[1]}, got {sample}"
        )
    return values[:, sample].reshape(values.shape[0], -1)


def _time_axis(n_steps: int, dt: float, times: Optional[ArrayLike], owner: str) -> np.ndarray:
    if times is None:
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0:
            raise ValueError(f"{owner}: dt must be a number > 0 (ms), got {dt!r}")
        return np.arange(n_steps) * float(dt)
    times = _to_numpy(times, "times", owner).astype(np.float64).reshape(-1)
    if times.shape[0] != n_steps:
        raise ValueError(
            f"{owner}: times must have one entry per step ({n_steps}), got {times.shape[0]}"
        )
    return times


def _new_axes(ax, figsize: Tuple[float, float]):
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _finish(fig, ax, save_path: SavePath, title: Optional[str]):
    if title is not None:
        ax.set_title(title)
    if save_path is not None:
        fig.savefig(save_path, dpi=100, bbox_inches="tight")
    return fig


def raster_plot(
    spikes: ArrayLike,
    dt: float = 1.0,
    *,
    sample: int = 0,
    times: Optional[ArrayLike] = None,
    ax=None,
    title: Optional[str] = None,
    color: str = "k",
    marker_size: float = 20.0,
    save_path: SavePath = None,
):
    """Raster plot: a mark at (time, neuron) for every spike.

    :param spikes: ``(T, N)``, ``(T,)`` or ``(T, B, ..., N)`` (e.g. ``Monitor.get("spikes")``),
        bool or 0/1.
    :param dt: time step in ms (step ``t`` is drawn at ``t · dt``).
    :param sample: keyword-only; batch element shown when ``spikes`` has a batch axis.
    :param times: keyword-only; explicit time of each row in ms, overrides ``dt``.
    :param ax: keyword-only; axes to draw into (default: a new figure).
    :param title: keyword-only; axes title.
    :param color: keyword-only; marker colour.
    :param marker_size: keyword-only; marker size in points².
    :param save_path: keyword-only; save the figure there.
    :returns: the matplotlib Figure.
    """
    owner = "raster_plot"
    values = _time_major(_to_numpy(spikes, "spikes", owner), sample, "spikes", owner)
    n_steps, n_neurons = values.shape
    time_ms = _time_axis(n_steps, dt, times, owner)
    fig, ax = _new_axes(ax, (8.0, 4.0))
    step_index, neuron_index = np.nonzero(values)
    ax.scatter(time_ms[step_index], neuron_index, marker="|", s=marker_size, c=color)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron")
    if n_steps:
        pad = (time_ms[-1] - time_ms[0]) / max(n_steps - 1, 1) / 2 if n_steps > 1 else 0.5
        ax.set_xlim(time_ms[0] - pad, time_ms[-1] + pad)
    ax.set_ylim(-0.5, n_neurons - 0.5)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole neurons
    return _finish(fig, ax, save_path, title)


def trace_plot(
    values: ArrayLike,
    thresh: Optional[Union[float, ArrayLike]] = None,
    dt: float = 1.0,
    *,
    sample: int = 0,
    neurons: Optional[Sequence[int]] = None,
    times: Optional[ArrayLike] = None,
    ax=None,
    title: Optional[str] = None,
    ylabel: str = "voltage",
    legend: bool = True,
    save_path: SavePath = None,
):
    """Voltage or trace of some neurons over time, with their threshold.

    :param values: ``(T,)``, ``(T, N)`` or ``(T, B, ..., N)`` (e.g. ``Monitor.get("v_cell")``).
    :param thresh: ``None``; a number (one dashed line); per-neuron values of the cells' shape
        ``(B, ..., N)`` or ``(N,)`` (one dashed line per neuron, in its colour); or a recording
        of the same shape as ``values`` (an adaptive threshold, drawn as dashed curves).
    :param dt: time step in ms.
    :param sample: keyword-only; batch element shown.
    :param neurons: keyword-only; indices (into the flattened neuron axis) to draw; default all.
    :param times: keyword-only; explicit times in ms, overrides ``dt``.
    :param ax: keyword-only; axes to draw into.
    :param title: keyword-only; axes title.
    :param ylabel: keyword-only; y-axis label.
    :param legend: keyword-only; label the curves by neuron index (up to 10 neurons).
    :param save_path: keyword-only; save the figure there.
    :returns: the matplotlib Figure.
    """
    owner = "trace_plot"
    raw = _to_numpy(values, "values", owner)
    curves = _time_major(raw, sample, "values", owner).astype(np.float64)
    n_steps, n_neurons = curves.shape
    if neurons is None:
        selected = np.arange(n_neurons)
    else:
        selected = np.asarray(neurons, dtype=np.int64).reshape(-1)
        if selected.size == 0 or selected.min() < -n_neurons or selected.max() >= n_neurons:
            raise ValueError(
                f"{owner}: neurons must index the {n_neurons} neurons, got {list(selected)}"
            )
    time_ms = _time_axis(n_steps, dt, times, owner)
    fig, ax = _new_axes(ax, (8.0, 4.0))
    lines = []
    for index in selected:
        (line,) = ax.plot(time_ms, curves[:, index], label=f"neuron {int(index)}")
        lines.append(line)
    if thresh is not None:
        levels = _to_numpy(thresh, "thresh", owner) if not _is_number(thresh) else None
        if levels is None or levels.size == 1:
            level = float(thresh) if levels is None else float(levels.reshape(-1)[0])
            ax.axhline(level, color="r", linestyle="--", linewidth=1.0, label="threshold")
        elif levels.shape == raw.shape:
            moving = _time_major(levels, sample, "thresh", owner).astype(np.float64)
            for line, index in zip(lines, selected):
                ax.plot(time_ms, moving[:, index], linestyle="--", color=line.get_color())
        else:
            given = levels.shape
            if raw.ndim >= 3 and levels.shape == raw.shape[1:]:
                levels = levels[sample]
            levels = levels.reshape(-1).astype(np.float64)
            if levels.size != n_neurons:
                raise ValueError(
                    f"{owner}: thresh must be a number, one value per neuron ({n_neurons}) or a "
                    f"recording shaped like values {raw.shape}, got shape {given}"
                )
            for line, index in zip(lines, selected):
                ax.axhline(levels[index], linestyle="--", linewidth=1.0, color=line.get_color())
    ax.set_xlabel("time (ms)")
    ax.set_ylabel(ylabel)
    if legend and len(selected) <= 10:
        ax.legend(loc="best", fontsize="small")
    return _finish(fig, ax, save_path, title)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _weight_array(weight: Any, owner: str) -> np.ndarray:
    if isinstance(weight, nn.Module):
        if not isinstance(getattr(weight, "weight", None), Tensor):
            raise TypeError(f"{owner}: {type(weight).__name__} has no weight tensor")
        weight = weight.weight
    return _to_numpy(weight, "weight", owner).astype(np.float64)


def weight_plot(
    weight: Union[ArrayLike, nn.Module],
    *,
    ax=None,
    cmap: str = "viridis",
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    title: Optional[str] = None,
    colorbar: bool = True,
    save_path: SavePath = None,
):
    """Weight matrix of a :class:`~pysnn.connection.Linear` connection as an image.

    :param weight: ``(O, I)`` tensor/array, or the connection itself.
    :param ax: keyword-only; axes to draw into.
    :param cmap: keyword-only; colour map.
    :param vmin: keyword-only; lower end of the colour scale (default: the minimum).
    :param vmax: keyword-only; upper end (default: the maximum).
    :param title: keyword-only; axes title.
    :param colorbar: keyword-only; add a colour bar.
    :param save_path: keyword-only; save the figure there.
    :returns: the matplotlib Figure (row ``o`` = postsynaptic neuron, column ``i`` = input).
    """
    owner = "weight_plot"
    array = _weight_array(weight, owner)
    if array.ndim != 2:
        raise ValueError(
            f"{owner}: weight must be 2-D (O, I), got shape {array.shape}; use "
            f"receptive_fields for Conv2d kernels or to view rows as images"
        )
    fig, ax = _new_axes(ax, (8.0, 4.0))
    image = ax.imshow(
        array, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax
    )
    ax.set_xlabel("presynaptic neuron i")
    ax.set_ylabel("postsynaptic neuron o")
    if colorbar:
        fig.colorbar(image, ax=ax)
    return _finish(fig, ax, save_path, title)


def _fields(array: np.ndarray, image_shape: Optional[Sequence[int]], owner: str) -> np.ndarray:
    """Weights → ``(n_fields, C, H, W)``."""
    if array.ndim == 4:  # Conv2d kernels (C_out, C_in, kh, kw)
        if image_shape is not None and tuple(image_shape) not in (
            array.shape[1:],
            array.shape[2:] if array.shape[1] == 1 else None,
        ):
            raise ValueError(
                f"{owner}: image_shape {tuple(image_shape)} does not match the kernels "
                f"{array.shape[1:]}; leave it None for Conv2d weights"
            )
        return array
    if array.ndim != 2:
        raise ValueError(
            f"{owner}: weight must be (O, I) (Linear) or (C_out, C_in, kh, kw) (Conv2d), "
            f"got shape {array.shape}"
        )
    if image_shape is None:
        raise ValueError(f"{owner}: image_shape (H, W) or (C, H, W) is required for (O, I) weights")
    shape = tuple(int(n) for n in image_shape)
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3 or math.prod(shape) != array.shape[1]:
        raise ValueError(
            f"{owner}: image_shape must be (H, W) or (C, H, W) with as many pixels as the "
            f"{array.shape[1]} inputs, got {tuple(image_shape)}"
        )
    return array.reshape((array.shape[0],) + shape)


def receptive_fields(
    weight: Union[ArrayLike, nn.Module],
    image_shape: Optional[Sequence[int]] = None,
    *,
    neurons: Optional[Sequence[int]] = None,
    n_cols: Optional[int] = None,
    cmap: str = "hot_r",
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    title: Optional[str] = None,
    colorbar: bool = True,
    save_path: SavePath = None,
):
    """Grid of receptive fields: each postsynaptic neuron's weights drawn as an image.

    One image (a mosaic with grey lines between fields, so hundreds of fields draw fast): for
    :class:`~pysnn.connection.Linear` weights ``(O, I)`` each row reshaped to ``image_shape``;
    for :class:`~pysnn.connection.Conv2d` weights ``(C_out, C_in, kh, kw)`` each kernel. Input
    channels (``C > 1``) are drawn side by side within a field. One colour scale for all.

    :param weight: weights or the connection itself.
    :param image_shape: ``(H, W)`` or ``(C, H, W)`` with ``C·H·W = I`` for Linear weights;
        ``None`` for Conv2d kernels.
    :param neurons: keyword-only; which fields to draw (default all).
    :param n_cols: keyword-only; fields per row (default ``ceil(sqrt(n))``).
    :param cmap: keyword-only; colour map.
    :param vmin: keyword-only; colour scale minimum (default: minimum weight).
    :param vmax: keyword-only; colour scale maximum (default: maximum weight).
    :param title: keyword-only; title.
    :param colorbar: keyword-only; add a colour bar.
    :param save_path: keyword-only; save the figure there.
    :returns: the matplotlib Figure.
    """
    owner = "receptive_fields"
    fields = _fields(_weight_array(weight, owner), image_shape, owner)
    if neurons is not None:
        fields = fields[np.asarray(neurons, dtype=np.int64).reshape(-1)]
    n_fields, channels, height, width = fields.shape
    if n_fields == 0:
        raise ValueError(f"{owner}: no field to draw")
    if n_cols is None:
        n_cols = math.ceil(math.sqrt(n_fields))
    if isinstance(n_cols, bool) or not isinstance(n_cols, int) or n_cols < 1:
        raise ValueError(f"{owner}: n_cols must be an int >= 1, got {n_cols!r}")
    n_cols = min(n_cols, n_fields)
    n_rows = math.ceil(n_fields / n_cols)
    field_width = channels * (width + 1) - 1
    mosaic = np.full((n_rows * (height + 1) - 1, n_cols * (field_width + 1) - 1), np.nan)
    for index in range(n_fields):
        row, col = divmod(index, n_cols)
        top = row * (height + 1)
        for channel in range(channels):
            left = col * (field_width + 1) + channel * (width + 1)
            mosaic[top : top + height, left : left + width] = fields[index, channel]
    plt = _pyplot()
    scale = 6.0 / max(mosaic.shape)
    figsize = (max(3.0, mosaic.shape[1] * scale + 1.5), max(3.0, mosaic.shape[0] * scale))
    fig, ax = plt.subplots(figsize=figsize)
    colours = plt.get_cmap(cmap).with_extremes(bad="0.75")  # grey gaps
    image = ax.imshow(
        np.ma.masked_invalid(mosaic),
        cmap=colours,
        interpolation="nearest",
        vmin=np.nanmin(fields) if vmin is None else vmin,
        vmax=np.nanmax(fields) if vmax is None else vmax,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        fig.colorbar(image, ax=ax)
    return _finish(fig, ax, save_path, title)


def event_animation(
    events: Union["Events", ArrayLike],
    frame_duration_ms: float,
    *,
    height: Optional[int] = None,
    width: Optional[int] = None,
    t_start: Optional[float] = None,
    t_end: Optional[float] = None,
    fps: Optional[float] = None,
    repeat: bool = False,
    title: Optional[str] = None,
    save_path: SavePath = None,
):
    """Animate an event stream frame by frame.

    2-D :class:`~pysnn.file_io.Events` are binned into RGB frames by
    :func:`pysnn.file_io.events_to_frames` (the frames of :func:`pysnn.file_io.show_td`): one
    frame per ``frame_duration_ms`` window; a pixel with an event of polarity 1 in the window is
    red, 2 green, 0 blue, otherwise black. Frames computed already — ``(n, H, W, 3)`` RGB in
    [0, 1] or ``(n, H, W)`` intensities, time first — are animated as they are.

    :param events: 2-D ``Events`` (``t`` in ms), or a frames tensor/array.
    :param frame_duration_ms: length of the window of each frame in ms (> 0); with frames given,
        the time between them (used for the titles).
    :param height: keyword-only; frame height in pixels (default ``max(y) + 1``).
    :param width: keyword-only; frame width in pixels (default ``max(x) + 1``).
    :param t_start: keyword-only; start of the first frame in ms (default: the window holding the
        first event; 0 for given frames).
    :param t_end: keyword-only; end of the last frame in ms (default: the window holding the last
        event).
    :param fps: keyword-only; frames per second when played or saved (default real time,
        ``1000 / frame_duration_ms``).
    :param repeat: keyword-only; loop the animation when it is played.
    :param title: keyword-only; title prefix (each frame shows its start time in ms).
    :param save_path: keyword-only; save the animation there: ``.gif`` with Pillow, other
        extensions with matplotlib's writer for them (e.g. ffmpeg for ``.mp4``).
    :returns: the :class:`matplotlib.animation.FuncAnimation` (keep a reference while it plays).
    :raises ValueError: no frame to show, or a bad ``frame_duration_ms`` / ``fps``.
    """
    owner = "event_animation"
    from pysnn import file_io  # numpy only; imported here to keep pysnn.plotting light

    if isinstance(frame_duration_ms, bool) or not _is_number(frame_duration_ms):
        raise TypeError(f"{owner}: frame_duration_ms must be a number (ms)")
    if not (math.isfinite(frame_duration_ms) and frame_duration_ms > 0):
        raise ValueError(f"{owner}: frame_duration_ms must be > 0 (ms), got {frame_duration_ms}")
    if isinstance(events, file_io.Events):
        frames = file_io.events_to_frames(
            events, frame_duration_ms, height, width, t_start=t_start, t_end=t_end
        )
        if t_start is None:
            t_start = (
                math.floor(events.t.min() / frame_duration_ms) * frame_duration_ms
                if len(events)
                else 0.0
            )
    else:
        frames = _to_numpy(events, "events", owner)
        if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3):
            raise ValueError(
                f"{owner}: frames must be (n, H, W) or (n, H, W, 3), time first, got shape "
                f"{frames.shape}"
            )
        t_start = 0.0 if t_start is None else float(t_start)
    if frames.shape[0] == 0:
        raise ValueError(f"{owner}: nothing to animate (no events, or no frame in the window)")
    if fps is None:
        fps = 1000.0 / frame_duration_ms
    if isinstance(fps, bool) or not _is_number(fps) or not fps > 0:
        raise ValueError(f"{owner}: fps must be a number > 0, got {fps!r}")

    plt = _pyplot()
    import matplotlib.animation as animation

    fig, ax = plt.subplots(figsize=(4.0, 4.0 * frames.shape[1] / max(frames.shape[2], 1) + 0.5))
    if frames.ndim == 3:
        image = ax.imshow(frames[0], cmap="gray", vmin=0.0, vmax=max(float(frames.max()), 1e-12))
    else:
        image = ax.imshow(frames[0], vmin=0.0, vmax=1.0)
    image.set_interpolation("nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    prefix = f"{title}: " if title else ""

    def update(k: int):
        image.set_data(frames[k])
        ax.set_title(f"{prefix}t = {t_start + k * frame_duration_ms:g} ms")
        return (image,)

    update(0)
    anim = animation.FuncAnimation(
        fig, update, frames=frames.shape[0], interval=1000.0 / fps, repeat=repeat, blit=False
    )
    if save_path is not None:
        path = str(save_path)
        if path.lower().endswith(".gif"):
            anim.save(path, writer=animation.PillowWriter(fps=fps))
        else:
            anim.save(path, fps=fps)
    return anim
