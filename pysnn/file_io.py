r"""Event streams: the :class:`Events` container, spike arrays, binary event files and animations.

Times are in **ms** everywhere in Python (``Events.t``); files store integer **µs**. Readers return
``t = µs / 1000`` as float64; writers store ``round(t · 1000)``.

Binary formats (every record is a big-endian bit field, MSB first; bit 0 is the last bit of the
record):

* :func:`read_1d_spikes` / :func:`encode_1d_spikes`, 5 bytes: neuron id [39:24] (16 bit) ·
  polarity [23] · t [22:0] (23 bit µs, < 8 388 608);
* :func:`read_2d_spikes` / :func:`encode_2d_spikes`, 5 bytes, the N-MNIST / N-Caltech101 format:
  x [39:32] (8 bit) · y [31:24] (8 bit) · polarity [23] · t [22:0] (23 bit µs);
* :func:`read_3d_spikes` / :func:`encode_3d_spikes`, 7 bytes: x [55:44] (12 bit) ·
  y [43:32] (12 bit) · channel [31:24] (8 bit) · t [23:0] (24 bit µs);
* :func:`read_1d_num_spikes` / :func:`encode_1d_num_spikes`, 10 bytes: neuron id [79:64]
  (16 bit) · t_start [63:40] (24 bit µs) · t_end [39:16] (24 bit µs) · count [15:0] (16 bit).

For the 2-D format, byte 0 is x, byte 1 is y, the top bit of byte 2 is the polarity and the
remaining 23 bits of bytes 2–4 are the timestamp. Readers decode whole files at once with
:func:`numpy.frombuffer`. Writers validate every field and raise :class:`ValueError` naming it
before anything is written, then write a temporary file in the target directory and move it over
the target with :func:`os.replace`, so a failed write never leaves a partial file behind (the old
file stays as it was and the temporary file is removed). A symbolic link is followed: the file it
points to is replaced and the link stays. The permission bits of an existing file are kept; a new
file gets ``0o666`` minus the umask. The rename necessarily gives the path a new inode, so other
**hard links** to the old file keep the old contents. An empty ``filename`` raises
:class:`ValueError`.

Fixes relative to PySNN 0.1.1: the writers and :func:`show_td` accept the dimension they are
made for (B8); the 1-D and 3-D writers pack every bit (B9); :class:`Events` copies its inputs and
keeps polarities as given (B10, B11); :meth:`Events.to_spike_tensor` drops events with negative
indices (B12).
"""

import math
import os
import uuid
from numbers import Real
from os import PathLike
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from pysnn.utils import _check_positive_real

__all__ = [
    "Events",
    "spike_array_to_events",
    "read_1d_spikes",
    "encode_1d_spikes",
    "read_2d_spikes",
    "encode_2d_spikes",
    "read_3d_spikes",
    "encode_3d_spikes",
    "read_1d_num_spikes",
    "encode_1d_num_spikes",
    "events_to_frames",
    "show_td",
]

PathType = Union[str, PathLike]
ArrayLike = Union[np.ndarray, Sequence[float], Tensor]


def _array(values: Any, name: str, owner: str) -> np.ndarray:
    """A 1-D numeric NumPy **copy** of ``values`` (tensors are moved to the host)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.array(values, copy=True)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"{owner}: {name} must be one-dimensional, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.int64)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{owner}: {name} must hold numbers, got dtype {array.dtype}")
    return array


def _sampling_time(value: float, owner: str) -> float:
    return _check_positive_real(value, "sampling_time", owner, unit=" (ms)")


def _round_index(values: np.ndarray) -> np.ndarray:
    """Nearest integer (ties to even, :func:`numpy.round`) as int64."""
    return np.round(values).astype(np.int64)


class Events:
    """A list of events: coordinates, polarity (or channel) and time in ms.

    The arrays are copied (the caller's arrays are never modified) and kept as given: polarities
    are *not* shifted to start at 0 (PySNN 0.1.1 subtracted ``p.min()``, which turned an ON-only
    recording into OFF events; B10). Empty event lists are allowed.

    :param x: x coordinate (1-D data: neuron id) of every event, shape ``(N,)``.
    :param y: y coordinate of every event, shape ``(N,)``, or ``None`` for 1-D data.
    :param p: polarity (0 = OFF, 1 = ON for N-MNIST) or channel of every event, shape ``(N,)``.
    :param t: time of every event in **ms**, shape ``(N,)`` (stored as float64).

    Attributes: ``x``, ``y`` (``None`` for 1-D data), ``p`` (NumPy arrays as given, copied),
    ``t`` (float64 ms) and ``dim`` (1 when ``y`` is ``None``, else 2; 3-D files give ``dim`` 2 with
    the channel in ``p``).

    :raises ValueError: arrays that are not 1-D or whose lengths differ.
    :raises TypeError: non-numeric arrays.
    """

    def __init__(
        self,
        x: ArrayLike,
        y: Optional[ArrayLike],
        p: ArrayLike,
        t: ArrayLike,
    ) -> None:
        owner = "Events"
        self.x = _array(x, "x", owner)
        self.y = None if y is None else _array(y, "y", owner)
        self.p = _array(p, "p", owner)
        self.t = _array(t, "t", owner).astype(np.float64)
        self.dim = 1 if self.y is None else 2
        lengths = {"x": len(self.x), "p": len(self.p), "t": len(self.t)}
        if self.y is not None:
            lengths["y"] = len(self.y)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{owner}: x, y, p and t must have the same length, got {lengths}")

    def __len__(self) -> int:
        """Number of events."""
        return len(self.t)

    def __repr__(self) -> str:
        span = f", t in [{self.t.min():g}, {self.t.max():g}] ms" if len(self) else ""
        return f"Events(n={len(self)}, dim={self.dim}{span})"

    def _indices(self, shape: Tuple[int, int, int, int], sampling_time: float):
        """Index arrays ``(p, y, x, t)`` into a ``(P, H, W, T)`` array, minus out-of-range ones."""
        p_idx = _round_index(self.p)
        y_idx = np.zeros_like(p_idx) if self.y is None else _round_index(self.y)
        x_idx = _round_index(self.x)
        t_idx = _round_index(self.t / sampling_time)
        keep = np.ones(len(self), dtype=bool)
        for index, size in zip((p_idx, y_idx, x_idx, t_idx), shape):
            keep &= (index >= 0) & (index < size)
        return p_idx[keep], y_idx[keep], x_idx[keep], t_idx[keep]

    def _full_shape(self, sampling_time: float) -> Tuple[int, ...]:
        """``(P, X, T)`` or ``(P, Y, X, T)`` just large enough for every (non-negative) event."""

        def extent(values: np.ndarray) -> int:
            return int(max(_round_index(values).max(), -1)) + 1 if len(values) else 0

        sizes = [extent(self.p)]
        if self.y is not None:
            sizes.append(extent(self.y))
        sizes += [extent(self.x), extent(self.t / sampling_time)]
        return tuple(sizes)

    def to_spike_array(
        self, sampling_time: float = 1, dim: Optional[Sequence[int]] = None
    ) -> np.ndarray:
        """Dense spike array with time last.

        Every event lands in bin ``round(t / sampling_time)`` (nearest, ties to even), so bin
        ``k`` covers :math:`[(k - 1/2)Δ, (k + 1/2)Δ)`; coordinates are rounded the same way. A hit
        entry is **set** to ``1 / sampling_time``: several events in one bin count once.

        :param sampling_time: bin width Δ in ms (> 0).
        :param dim: output shape; ``None`` infers ``(P, X, T)`` (1-D) or ``(P, Y, X, T)`` (2-D)
            from the largest indices. 1-D data also accept ``(P, 1, X, T)``. Events outside the
            shape (or with negative indices) are dropped.
        :returns: float64 array of shape ``dim`` with values 0 or ``1 / sampling_time``.
        :raises ValueError: a ``dim`` of the wrong length or a bad ``sampling_time``.
        """
        owner = "Events.to_spike_array"
        sampling_time = _sampling_time(sampling_time, owner)
        shape = self._full_shape(sampling_time) if dim is None else tuple(int(d) for d in dim)
        allowed = (3, 4) if self.dim == 1 else (4,)
        if len(shape) not in allowed or any(size < 0 for size in shape):
            expected = "(P, X, T) or (P, 1, X, T)" if self.dim == 1 else "(P, Y, X, T)"
            raise ValueError(f"{owner}: dim must be {expected} for {self.dim}-D events, got {dim}")
        array = np.zeros(shape, dtype=np.float64)
        view = array if len(shape) == 4 else array[:, None]
        p_idx, y_idx, x_idx, t_idx = self._indices(view.shape, sampling_time)
        view[p_idx, y_idx, x_idx, t_idx] = 1.0 / sampling_time
        return array

    def to_spike_tensor(self, empty_tensor: Tensor, sampling_time: float = 1) -> Tensor:
        """Write the events into ``empty_tensor`` in place and return it.

        ``empty_tensor`` has shape ``(P, H, W, T)`` for 2-D events or ``(P, 1, X, T)`` for 1-D
        events, any dtype and device. Entry ``[round(p), round(y), round(x), round(t / Δ)]`` of
        every event is **set** (not accumulated) to ``1 / sampling_time``: several events in one
        bin count once. Events with a negative index or an index beyond the tensor are dropped
        (e.g. events later than ``T · Δ`` are cut off). The tensor is *not* cleared first: pass
        zeros (:class:`pysnn.datasets.NeuromorphicDataset` allocates a fresh one per sample).

        :param empty_tensor: 4-D tensor to fill, usually ``torch.zeros(P, H, W, T)``.
        :param sampling_time: bin width Δ in ms (> 0).
        :returns: ``empty_tensor``.
        :raises TypeError: ``empty_tensor`` is not a tensor.
        :raises ValueError: it is not 4-D (or 1-D events with ``H != 1``), or a bad
            ``sampling_time``.
        """
        owner = "Events.to_spike_tensor"
        if not isinstance(empty_tensor, Tensor):
            raise TypeError(
                f"{owner}: empty_tensor must be a torch.Tensor, got {type(empty_tensor).__name__}"
            )
        if empty_tensor.dim() != 4 or (self.dim == 1 and empty_tensor.shape[1] != 1):
            expected = "(P, 1, X, T)" if self.dim == 1 else "(P, H, W, T)"
            raise ValueError(
                f"{owner}: empty_tensor must have shape {expected} for {self.dim}-D events, "
                f"got {tuple(empty_tensor.shape)}"
            )
        sampling_time = _sampling_time(sampling_time, owner)
        indices = self._indices(tuple(empty_tensor.shape), sampling_time)
        index = tuple(torch.from_numpy(i).to(empty_tensor.device) for i in indices)
        empty_tensor[index] = 1.0 / sampling_time
        return empty_tensor


def spike_array_to_events(spike_mat: Union[np.ndarray, Tensor], sampling_time: float = 1) -> Events:
    """Events of every positive entry of a dense spike array (inverse of ``to_spike_array``).

    :param spike_mat: ``(C, X, T)`` (→ 1-D events, ``y`` is ``None``) or ``(C, H, W, T)`` (→ 2-D
        events) NumPy array or tensor; entries > 0 are events.
    :param sampling_time: bin width in ms (> 0): bin ``k`` becomes time ``k · sampling_time``.
    :returns: :class:`Events` with ``p`` the channel index, sorted by time (stable, so events of
        one bin stay in C-order of the remaining axes).
    :raises ValueError: ``spike_mat`` is not 3-D or 4-D, or a bad ``sampling_time``.
    """
    owner = "spike_array_to_events"
    sampling_time = _sampling_time(sampling_time, owner)
    if isinstance(spike_mat, Tensor):
        spike_mat = spike_mat.detach().cpu().numpy()
    spike_mat = np.asarray(spike_mat)
    if spike_mat.ndim not in (3, 4):
        raise ValueError(
            f"{owner}: spike_mat must be 3-D (C, X, T) or 4-D (C, H, W, T), "
            f"got shape {spike_mat.shape}"
        )
    coords = np.argwhere(spike_mat > 0)
    order = np.argsort(coords[:, -1], kind="stable")
    coords = coords[order]
    t = coords[:, -1] * sampling_time
    if spike_mat.ndim == 3:
        return Events(coords[:, 1], None, coords[:, 0], t)
    return Events(coords[:, 2], coords[:, 1], coords[:, 0], t)


# ----------------------------------------------------------------------------- binary files


def _read_records(filename: PathType, record: int, owner: str) -> np.ndarray:
    """The file as a ``(N, record)`` uint8 array; clear errors for missing/empty/truncated files."""
    if isinstance(filename, bool) or not isinstance(filename, (str, bytes, PathLike)):
        raise TypeError(
            f"{owner}: filename must be a str or os.PathLike, got {type(filename).__name__}"
        )
    path = os.fspath(filename)
    if len(path) == 0:
        raise ValueError(f"{owner}: filename must not be empty")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{owner}: no such file: filename={path!r}") from error
    except IsADirectoryError as error:
        raise IsADirectoryError(
            f"{owner}: filename {path!r} is a directory, not an event file"
        ) from error
    if not data:
        raise ValueError(f"{owner}: {path} is empty (expected {record}-byte event records)")
    if len(data) % record:
        raise ValueError(
            f"{owner}: {path} is {len(data)} bytes long, which is not a multiple of the "
            f"{record}-byte record size (truncated or not this format?)"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, record)


def _big_endian(columns: np.ndarray) -> np.ndarray:
    """Unsigned big-endian integer of each row of uint8 ``columns`` (up to 8 bytes) as uint64."""
    value = np.zeros(columns.shape[0], dtype=np.uint64)
    for k in range(columns.shape[1]):
        value = (value << np.uint64(8)) | columns[:, k].astype(np.uint64)
    return value


def _to_bytes(value: np.ndarray, n_bytes: int) -> np.ndarray:
    """``(N, n_bytes)`` big-endian uint8 bytes of non-negative integers ``value``."""
    value = value.astype(np.uint64)
    shifts = np.arange(n_bytes - 1, -1, -1, dtype=np.uint64) * np.uint64(8)
    return ((value[:, None] >> shifts) & np.uint64(0xFF)).astype(np.uint8)


def _integral_field(
    values: Any, name: str, owner: str, upper: int, what: str = "", length: Optional[int] = None
) -> np.ndarray:
    """``values`` as int64, checking integral values in ``[0, upper)``."""
    array = _array(values, name, owner)
    if length is not None and len(array) != length:
        raise ValueError(f"{owner}: {name} must have {length} entries, got {len(array)}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{owner}: {name} must hold integers{what}")
    array = array.astype(np.int64) if len(array) else np.zeros(0, dtype=np.int64)
    if len(array) and (array.min() < 0 or array.max() >= upper):
        raise ValueError(
            f"{owner}: {name} must lie in [0, {upper - 1}]{what}, "
            f"got values in [{array.min()}, {array.max()}]"
        )
    return array


def _time_field(
    values: Any, name: str, owner: str, bits: int, length: Optional[int] = None
) -> np.ndarray:
    """Times in ms → integer µs ``round(t · 1000)`` in ``[0, 2**bits)``."""
    array = _array(values, name, owner).astype(np.float64)
    if length is not None and len(array) != length:
        raise ValueError(f"{owner}: {name} must have {length} entries, got {len(array)}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{owner}: {name} must be finite (ms)")
    micro = np.round(array * 1000.0)
    upper = 1 << bits
    if len(micro) and (micro.min() < 0 or micro.max() >= upper):
        raise ValueError(
            f"{owner}: {name} must lie in [0, {(upper - 1) / 1000:g}] ms ({bits}-bit µs "
            f"timestamps), got values in [{array.min():g}, {array.max():g}] ms"
        )
    return micro.astype(np.int64)


def _check_events(td: Events, owner: str, dims: Sequence[int], what: str, name: str = "TD") -> None:
    if not isinstance(td, Events):
        raise TypeError(f"{owner}: {name} must be a pysnn.file_io.Events, got {type(td).__name__}")
    if td.dim not in dims:
        raise ValueError(
            f"{owner}: {name} must hold {what} events (dim {dims[0]}), got dim {td.dim}"
        )


def _check_not_empty(td: Events, owner: str) -> None:
    if len(td) == 0:
        raise ValueError(f"{owner}: TD has no events (an empty file cannot be read back)")


def _current_umask() -> int:
    """The process umask: from ``/proc/self/status`` where Linux has it (no side effect on other
    threads), else by setting it and putting it back at once."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_target(filename: PathType, owner: str) -> str:
    """The path an atomic writer replaces: ``filename`` with every symbolic link resolved.

    :raises TypeError: ``filename`` is not a str or path-like (bytes paths are refused too).
    :raises ValueError: ``filename`` is empty or names a directory.
    """
    if isinstance(filename, bool) or not isinstance(filename, (str, PathLike)):
        raise TypeError(
            f"{owner}: filename must be a str or os.PathLike, got {type(filename).__name__}"
        )
    path = os.fspath(filename)
    if not isinstance(path, str):
        raise TypeError(f"{owner}: filename must be a str path, got {type(path).__name__}")
    if path == "":
        raise ValueError(f"{owner}: filename must not be empty")
    if "\x00" in path:
        raise ValueError(f"{owner}: filename must not contain NUL characters, got {path!r}")
    # Follow symbolic links (also dangling ones, whose target is created): the link stays a
    # link and the file it points to gets the new contents.
    target = os.path.realpath(path)
    if os.path.isdir(target) or path.endswith(("/", os.sep)):
        raise ValueError(f"{owner}: filename names a directory, not a file: {path!r}")
    return target


def _atomic_write(filename: PathType, payload: bytes, owner: str = "file_io") -> None:
    """Write ``payload`` to a temporary file beside the target, then rename it over the target.

    The target is ``filename`` with symbolic links resolved (the link is kept and the file it
    points to is replaced). The temporary file gets the permission bits of the existing target,
    or ``0o666`` minus the umask (like :func:`open`) for a new file; it is removed if anything
    fails, and the target is untouched until the final :func:`os.replace`. The rename gives the
    path a new inode: other hard links to the old file keep the old contents.
    """
    target = _write_target(filename, owner)
    directory, name = os.path.split(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"{owner}: the directory of filename {os.fspath(filename)!r} does not exist "
            f"({directory})"
        )
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_current_umask()
    temp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def read_1d_spikes(filename: PathType) -> Events:
    """Read 1-D events (5 bytes each: 16-bit neuron id, polarity bit, 23-bit µs timestamp).

    :param filename: path of the binary file.
    :returns: :class:`Events` with ``dim == 1``: ``x`` neuron ids and ``p`` polarities (int64),
        ``y`` ``None``, ``t`` in ms (float64).
    :raises FileNotFoundError: the file does not exist.
    :raises ValueError: the file is empty or its length is not a multiple of 5 bytes.
    """
    raw = _read_records(filename, 5, "read_1d_spikes")
    word = _big_endian(raw)
    neuron = (word >> np.uint64(24)).astype(np.int64)
    polarity = ((word >> np.uint64(23)) & np.uint64(1)).astype(np.int64)
    micro = (word & np.uint64(0x7FFFFF)).astype(np.int64)
    return Events(neuron, None, polarity, micro / 1000.0)


def encode_1d_spikes(filename: PathType, TD: Events) -> None:
    """Write 1-D events (format of :func:`read_1d_spikes`), atomically.

    :param filename: path of the file to (over)write.
    :param TD: :class:`Events` with ``dim == 1``: ``x`` ids in [0, 65535], ``p`` in {0, 1},
        ``t`` in [0, 8388.607] ms (stored as ``round(t · 1000)`` µs).
    :raises TypeError: ``TD`` is not :class:`Events`.
    :raises ValueError: ``TD`` is not 1-D, has no events or a field is out of range, or
        ``filename`` is empty or a directory (nothing is written).
    :raises FileNotFoundError: the directory of ``filename`` does not exist.

    Atomic write: a symbolic link ``filename`` is followed (the link stays, the file it names
    is replaced), the existing file's permission bits are kept (a new file gets ``0o666`` minus
    the umask). The final rename gives the path a **new inode**: other hard links to the old
    file keep the old contents (owner and group become the writer's).
    """
    owner = "encode_1d_spikes"
    _check_events(TD, owner, (1,), "1-D")
    _check_not_empty(TD, owner)
    neuron = _integral_field(TD.x, "x (neuron id)", owner, 1 << 16)
    polarity = _integral_field(TD.p, "p (polarity)", owner, 2)
    micro = _time_field(TD.t, "t", owner, 23)
    word = (neuron << 24) | (polarity << 23) | micro
    _atomic_write(filename, _to_bytes(word, 5).tobytes(), owner)


def read_2d_spikes(filename: PathType) -> Events:
    """Read 2-D events in the N-MNIST / N-Caltech101 format (5 bytes per event).

    Byte 0 is x, byte 1 is y, bit 7 of byte 2 is the polarity and the remaining 23 bits of bytes
    2–4 are the timestamp in µs (big-endian).

    :param filename: path of the binary file.
    :returns: :class:`Events` with ``dim == 2``: ``x``, ``y``, ``p`` int64, ``t`` in ms (float64).
    :raises FileNotFoundError: the file does not exist.
    :raises ValueError: the file is empty or its length is not a multiple of 5 bytes.
    """
    raw = _read_records(filename, 5, "read_2d_spikes")
    x = raw[:, 0].astype(np.int64)
    y = raw[:, 1].astype(np.int64)
    polarity = (raw[:, 2] >> 7).astype(np.int64)
    micro = _big_endian(raw[:, 2:5]).astype(np.int64) & 0x7FFFFF
    return Events(x, y, polarity, micro / 1000.0)


def encode_2d_spikes(filename: PathType, TD: Events) -> None:
    """Write 2-D events in the N-MNIST format (see :func:`read_2d_spikes`), atomically.

    :param filename: path of the file to (over)write.
    :param TD: :class:`Events` with ``dim == 2``: ``x`` and ``y`` in [0, 255], ``p`` in {0, 1},
        ``t`` in [0, 8388.607] ms (stored as ``round(t · 1000)`` µs, < 2**23).
    :raises TypeError: ``TD`` is not :class:`Events`.
    :raises ValueError: ``TD`` is not 2-D, has no events or a field is out of range, or
        ``filename`` is empty or a directory (nothing is written).
    :raises FileNotFoundError: the directory of ``filename`` does not exist.

    Atomic write: a symbolic link ``filename`` is followed (the link stays, the file it names
    is replaced), the existing file's permission bits are kept (a new file gets ``0o666`` minus
    the umask). The final rename gives the path a **new inode**: other hard links to the old
    file keep the old contents (owner and group become the writer's).
    """
    _atomic_write(filename, _pack_2d(TD, "encode_2d_spikes"), "encode_2d_spikes")


def _pack_2d(TD: Events, owner: str) -> bytes:
    """The bytes :func:`encode_2d_spikes` writes for ``TD`` (validated)."""
    _check_events(TD, owner, (2,), "2-D")
    _check_not_empty(TD, owner)
    x = _integral_field(TD.x, "x", owner, 1 << 8)
    y = _integral_field(TD.y, "y", owner, 1 << 8)
    polarity = _integral_field(TD.p, "p (polarity)", owner, 2)
    micro = _time_field(TD.t, "t", owner, 23)
    word = (x << 32) | (y << 24) | (polarity << 23) | micro
    return _to_bytes(word, 5).tobytes()


def read_3d_spikes(filename: PathType) -> Events:
    """Read 3-D events (7 bytes each: 12-bit x, 12-bit y, 8-bit channel, 24-bit µs timestamp).

    :param filename: path of the binary file.
    :returns: :class:`Events` with ``dim == 2`` and the channel in ``p`` (int64), ``t`` in ms.
    :raises FileNotFoundError: the file does not exist.
    :raises ValueError: the file is empty or its length is not a multiple of 7 bytes.
    """
    raw = _read_records(filename, 7, "read_3d_spikes")
    word = _big_endian(raw)
    x = (word >> np.uint64(44)).astype(np.int64)
    y = ((word >> np.uint64(32)) & np.uint64(0xFFF)).astype(np.int64)
    channel = ((word >> np.uint64(24)) & np.uint64(0xFF)).astype(np.int64)
    micro = (word & np.uint64(0xFFFFFF)).astype(np.int64)
    return Events(x, y, channel, micro / 1000.0)


def encode_3d_spikes(filename: PathType, TD: Events) -> None:
    """Write 3-D events (format of :func:`read_3d_spikes`), atomically.

    :param filename: path of the file to (over)write.
    :param TD: :class:`Events` with ``dim == 2`` and the channel in ``p``: ``x``, ``y`` in
        [0, 4095], ``p`` in [0, 255], ``t`` in [0, 16777.215] ms (``round(t · 1000)`` µs).
    :raises TypeError: ``TD`` is not :class:`Events`.
    :raises ValueError: ``TD`` is 1-D, has no events or a field is out of range, or
        ``filename`` is empty or a directory (nothing is written).
    :raises FileNotFoundError: the directory of ``filename`` does not exist.

    Atomic write: a symbolic link ``filename`` is followed (the link stays, the file it names
    is replaced), the existing file's permission bits are kept (a new file gets ``0o666`` minus
    the umask). The final rename gives the path a **new inode**: other hard links to the old
    file keep the old contents (owner and group become the writer's).
    """
    owner = "encode_3d_spikes"
    _check_events(TD, owner, (2,), "3-D (x, y, channel in p)")
    _check_not_empty(TD, owner)
    x = _integral_field(TD.x, "x", owner, 1 << 12)
    y = _integral_field(TD.y, "y", owner, 1 << 12)
    channel = _integral_field(TD.p, "p (channel)", owner, 1 << 8)
    micro = _time_field(TD.t, "t", owner, 24)
    word = (x << 44) | (y << 32) | (channel << 24) | micro
    _atomic_write(filename, _to_bytes(word, 7).tobytes(), owner)


def read_1d_num_spikes(filename: PathType) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read spike counts per neuron and time window (10 bytes per record).

    :param filename: path of the binary file.
    :returns: ``(n_id, t_start, t_end, n_spikes)``: neuron ids (int64), window start and end in
        ms (float64), spike counts (int64), each of shape ``(N,)``.
    :raises FileNotFoundError: the file does not exist.
    :raises ValueError: the file is empty, its length is not a multiple of 10 bytes or a record
        has ``t_end < t_start`` (a corrupt file), or ``filename`` is empty.
    """
    raw = _read_records(filename, 10, "read_1d_num_spikes")
    n_id = _big_endian(raw[:, 0:2]).astype(np.int64)
    t_start = _big_endian(raw[:, 2:5]).astype(np.int64) / 1000.0
    t_end = _big_endian(raw[:, 5:8]).astype(np.int64) / 1000.0
    backwards = np.flatnonzero(t_end < t_start)
    if len(backwards):
        i = int(backwards[0])
        raise ValueError(
            f"read_1d_num_spikes: {os.fspath(filename)} is corrupt or not this format: record "
            f"{i} has t_end={t_end[i]:g} ms < t_start={t_start[i]:g} ms "
            f"({len(backwards)} such record(s))"
        )
    n_spikes = _big_endian(raw[:, 8:10]).astype(np.int64)
    return n_id, t_start, t_end, n_spikes


def encode_1d_num_spikes(
    filename: PathType,
    n_id: ArrayLike,
    t_start: ArrayLike,
    t_end: ArrayLike,
    n_spikes: ArrayLike,
) -> None:
    """Write spike counts per neuron and time window (format of :func:`read_1d_num_spikes`).

    :param filename: path of the file to (over)write (atomically).
    :param n_id: neuron ids in [0, 65535], shape ``(N,)``.
    :param t_start: window starts in ms, in [0, 16777.215] (stored as ``round(t · 1000)`` µs).
    :param t_end: window ends in ms, same range, ``t_end >= t_start`` in every record
        (compared after rounding to µs; an empty window ``t_end == t_start`` is allowed).
    :param n_spikes: spike counts in [0, 65535], shape ``(N,)``.
    :raises TypeError: ``filename`` is not a str or path-like.
    :raises ValueError: no records, a field out of range or of another length than
        ``n_id``, ``t_end < t_start``, an empty ``filename`` or one naming a directory
        (nothing is written).
    :raises FileNotFoundError: the directory of ``filename`` does not exist.

    Atomic write: a symbolic link ``filename`` is followed (the link stays, the file it names
    is replaced), the existing file's permission bits are kept (a new file gets ``0o666`` minus
    the umask). The final rename gives the path a **new inode**: other hard links to the old
    file keep the old contents (owner and group become the writer's).
    """
    owner = "encode_1d_num_spikes"
    ids = _integral_field(n_id, "n_id", owner, 1 << 16)
    if len(ids) == 0:
        raise ValueError(f"{owner}: n_id is empty (an empty file cannot be read back)")
    start = _time_field(t_start, "t_start", owner, 24, len(ids))
    end = _time_field(t_end, "t_end", owner, 24, len(ids))
    backwards = np.flatnonzero(end < start)
    if len(backwards):
        i = int(backwards[0])
        raise ValueError(
            f"{owner}: t_end must be >= t_start in every record, got t_end < t_start in "
            f"{len(backwards)} record(s), first at index {i}: t_start={start[i] / 1000:g} ms, "
            f"t_end={end[i] / 1000:g} ms"
        )
    counts = _integral_field(n_spikes, "n_spikes", owner, 1 << 16, length=len(ids))
    payload = np.concatenate(
        [_to_bytes(ids, 2), _to_bytes(start, 3), _to_bytes(end, 3), _to_bytes(counts, 2)], axis=1
    )
    _atomic_write(filename, payload.tobytes(), owner)


# ----------------------------------------------------------------------------- frames and plots


def events_to_frames(
    events: Events,
    frame_duration_ms: float,
    height: Optional[int] = None,
    width: Optional[int] = None,
    *,
    t_start: Optional[float] = None,
    t_end: Optional[float] = None,
) -> np.ndarray:
    """Render 2-D events as RGB frames, one per ``frame_duration_ms`` window.

    Frame ``k`` covers :math:`[t_0 + k I, t_0 + (k+1) I)` with ``I = frame_duration_ms``. By
    default :math:`t_0 = \\lfloor t_{min} / I \\rfloor I` and the frames run until the window that
    holds the last event. A pixel with at least one event in the window is set to 1 in colour
    channel ``(p - 1) mod 3``: polarity 1 red, 2 green, 0 blue (so OFF = 0 events are blue, ON = 1
    events red); everything else is 0 (black).

    :param events: 2-D :class:`Events` (``t`` in ms).
    :param frame_duration_ms: window length ``I`` in ms (> 0).
    :param height: frame height H in pixels; ``None``: ``max(y) + 1`` (1 without events).
    :param width: frame width W in pixels; ``None``: ``max(x) + 1`` (1 without events).
    :param t_start: keyword-only; start of frame 0 in ms (default :math:`t_0` above).
    :param t_end: keyword-only; the frames cover ``[t_start, t_end)`` ms, the last one possibly
        partly (default: up to the window of the last event; no events, no frames).
    :returns: float32 array ``(n_frames, H, W, 3)`` with values in {0, 1}; events outside the
        frames or the image (negative coordinates included) are dropped.
    :raises TypeError: ``events`` is not :class:`Events`.
    :raises ValueError: 1-D events, or a bad ``frame_duration_ms``, ``height``, ``width`` or
        ``t_end <= t_start``.
    """
    owner = "events_to_frames"
    _check_events(events, owner, (2,), "2-D", "events")
    if isinstance(frame_duration_ms, bool) or not isinstance(frame_duration_ms, Real):
        raise TypeError(f"{owner}: frame_duration_ms must be a number (ms)")
    interval = float(frame_duration_ms)
    if not (interval > 0 and math.isfinite(interval)):
        raise ValueError(f"{owner}: frame_duration_ms must be > 0, got {frame_duration_ms!r}")
    x = _round_index(events.x)
    y = _round_index(events.y)
    sizes = []
    for name, value, coords in (("height", height, y), ("width", width, x)):
        if value is None:
            value = int(max(coords.max(), 0)) + 1 if len(coords) else 1
        elif isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{owner}: {name} must be an int >= 1 (pixels), got {value!r}")
        sizes.append(int(value))
    height, width = sizes
    t = events.t
    if t_start is None:
        t_start = math.floor(t.min() / interval) * interval if len(t) else 0.0
    t_start = float(t_start)
    if t_end is None:
        n_frames = int(math.floor((t.max() - t_start) / interval)) + 1 if len(t) else 0
        n_frames = max(n_frames, 0)
    else:
        if not float(t_end) > t_start:
            raise ValueError(f"{owner}: t_end must be > t_start={t_start:g}, got {t_end!r}")
        n_frames = int(math.ceil((float(t_end) - t_start) / interval - 1e-9))
    frames = np.zeros((n_frames, height, width, 3), dtype=np.float32)
    frame = np.floor((t - t_start) / interval).astype(np.int64)
    keep = (frame >= 0) & (frame < n_frames) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if t_end is not None:
        keep &= t < float(t_end)
    colour = (_round_index(events.p) - 1) % 3
    frames[frame[keep], y[keep], x[keep], colour[keep]] = 1.0
    return frames


def _pyplot():
    """Import ``matplotlib.pyplot`` (and the animation module) or explain how to install it."""
    try:
        import matplotlib.animation as animation
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "show_td needs matplotlib; install it with: pip install 'pysnn[plot]'"
        ) from error
    return plt, animation


def show_td(
    TD: Events,
    frame_rate: float = 24,
    pre_compute_frames: bool = True,
    repeat: bool = False,
    *,
    save_path: Optional[PathType] = None,
):
    """Animate an event stream in real time (one frame per ``1000 / frame_rate`` ms of events).

    2-D events are shown as the RGB frames of :func:`events_to_frames` (polarity 1 red, 2 green,
    0 blue); 1-D events as a raster plot ``(t, neuron id)`` that grows frame by frame with a scan
    line at the current time. matplotlib is needed (``pip install 'pysnn[plot]'``); nothing is
    shown (call ``plt.show()`` yourself).

    :param TD: :class:`Events` (1-D or 2-D).
    :param frame_rate: frames per second (> 0); each frame spans ``1000 / frame_rate`` ms of
        events and is displayed for as long.
    :param pre_compute_frames: render every frame up front (``True``) or each one when it is
        drawn (``False``, less memory for long recordings); the pictures are the same.
    :param repeat: loop the animation.
    :param save_path: keyword-only; save the animation there (``.gif`` with Pillow, other
        extensions with matplotlib's default writer for them, e.g. ffmpeg for ``.mp4``).
    :returns: the :class:`matplotlib.animation.FuncAnimation` (keep a reference while it plays).
    :raises ImportError: matplotlib is not installed.
    :raises ValueError: a bad ``frame_rate``.
    """
    owner = "show_td"
    _check_events(TD, owner, (1, 2), "1-D or 2-D")
    if isinstance(frame_rate, bool) or not isinstance(frame_rate, Real) or not frame_rate > 0:
        raise ValueError(f"{owner}: frame_rate must be a number > 0 (frames/s), got {frame_rate!r}")
    plt, animation = _pyplot()
    interval = 1000.0 / float(frame_rate)
    fig, ax = plt.subplots()
    if TD.dim == 2:
        if len(TD):
            t0 = math.floor(TD.t.min() / interval) * interval
            n_frames = int(math.floor((TD.t.max() - t0) / interval)) + 1
        else:
            t0, n_frames = 0.0, 1
        height = int(_round_index(TD.y).max()) + 1 if len(TD) else 1
        width = int(_round_index(TD.x).max()) + 1 if len(TD) else 1

        def frame_at(k: int) -> np.ndarray:
            return events_to_frames(
                TD,
                interval,
                height,
                width,
                t_start=t0 + k * interval,
                t_end=t0 + (k + 1) * interval,
            )[0]

        if pre_compute_frames:
            stack = events_to_frames(
                TD, interval, height, width, t_start=t0, t_end=t0 + n_frames * interval
            )
            frame_at = stack.__getitem__  # noqa: F811 (same pictures, computed once)
        image = ax.imshow(frame_at(0), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])

        def update(k: int):
            image.set_data(frame_at(k))
            ax.set_title(f"t = {t0 + k * interval:.1f} ms")
            return (image,)

    else:
        t0 = 0.0
        n_frames = int(math.floor(TD.t.max() / interval)) + 1 if len(TD) else 1
        t_max = n_frames * interval
        n_max = int(TD.x.max()) + 1 if len(TD) else 1
        ax.set_xlim(0, t_max)
        ax.set_ylim(-0.5, n_max - 0.5)
        ax.set_xlabel("t (ms)")
        ax.set_ylabel("neuron")
        (dots,) = ax.plot([], [], ".", markersize=2)
        scan = ax.axvline(0.0, color="tab:red", linewidth=1)
        order = np.argsort(TD.t, kind="stable")
        times, ids = TD.t[order], TD.x[order]
        if pre_compute_frames:
            counts = np.searchsorted(times, (np.arange(n_frames) + 1) * interval, side="left")

            def shown(k: int) -> int:
                return int(counts[k])

        else:

            def shown(k: int) -> int:
                return int(np.searchsorted(times, (k + 1) * interval, side="left"))

        def update(k: int):
            n = shown(k)
            dots.set_data(times[:n], ids[:n])
            scan.set_xdata([(k + 1) * interval] * 2)
            return dots, scan

    anim = animation.FuncAnimation(
        fig, update, frames=n_frames, interval=interval, repeat=repeat, blit=False
    )
    if save_path is not None:
        path = os.fspath(save_path)
        if path.lower().endswith(".gif"):
            anim.save(path, writer=animation.PillowWriter(fps=float(frame_rate)))
        else:
            anim.save(path, fps=float(frame_rate))
    return anim
