"""Event files byte for byte, Events and dense arrays, frames and show_td.

Records are assembled here from their documented bit layout with ``int.to_bytes`` (or written out
as literal bytes), never with the writers under test.
"""

import os
import sys
import time

import numpy as np
import pytest
import torch

from pysnn.file_io import (
    Events,
    encode_1d_num_spikes,
    encode_1d_spikes,
    encode_2d_spikes,
    encode_3d_spikes,
    events_to_frames,
    read_1d_num_spikes,
    read_1d_spikes,
    read_2d_spikes,
    read_3d_spikes,
    show_td,
    spike_array_to_events,
)

# FuncAnimation warns when an animation is collected without having been shown; tests only
# inspect them.
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")


def record_2d(x: int, y: int, p: int, t_us: int) -> bytes:
    """x [39:32] · y [31:24] · p [23] · t [22:0], big-endian, 5 bytes."""
    return ((x << 32) | (y << 24) | (p << 23) | t_us).to_bytes(5, "big")


def record_1d(n: int, p: int, t_us: int) -> bytes:
    """id [39:24] · p [23] · t [22:0], 5 bytes."""
    return ((n << 24) | (p << 23) | t_us).to_bytes(5, "big")


def record_3d(x: int, y: int, c: int, t_us: int) -> bytes:
    """x [55:44] · y [43:32] · channel [31:24] · t [23:0], 7 bytes."""
    return ((x << 44) | (y << 32) | (c << 24) | t_us).to_bytes(7, "big")


def record_num(n: int, t0_us: int, t1_us: int, count: int) -> bytes:
    """id [79:64] · t_start [63:40] · t_end [39:16] · count [15:0], 10 bytes."""
    return ((n << 64) | (t0_us << 40) | (t1_us << 16) | count).to_bytes(10, "big")


def same_events(a: Events, b: Events) -> bool:
    return (
        a.dim == b.dim
        and np.array_equal(a.x, b.x)
        and (a.y is None and b.y is None or np.array_equal(a.y, b.y))
        and np.array_equal(a.p, b.p)
        and np.allclose(a.t, b.t, rtol=0, atol=1e-9)
    )


# ----------------------------------------------------------------------------- readers, byte-exact


def test_read_2d_spikes_decodes_hand_assembled_records(tmp_path):
    path = tmp_path / "sample.bin"
    # One record written out byte by byte: x=17, y=200, ON, t = 2**23 - 1 µs.
    # byte2 = 1000 0000 | top 7 bits of t (111 1111) = 0xFF, bytes 3-4 = 0xFF 0xFF.
    literal = bytes([17, 200, 0xFF, 0xFF, 0xFF])
    assert literal == record_2d(17, 200, 1, 2**23 - 1)
    records = [
        literal,
        record_2d(0, 255, 0, 0x123456),  # polarity bit clear, t uses bits 20..0
        record_2d(255, 0, 1, 0),
        record_2d(33, 12, 0, 2**23 - 2),
        record_2d(5, 6, 1, 1),
    ]
    path.write_bytes(b"".join(records))
    events = read_2d_spikes(path)
    assert events.dim == 2
    assert events.x.tolist() == [17, 0, 255, 33, 5]
    assert events.y.tolist() == [200, 255, 0, 12, 6]
    assert events.p.tolist() == [1, 0, 1, 0, 1]
    assert events.t.dtype == np.float64
    assert events.t.tolist() == [8388.607, 0x123456 / 1000, 0.0, 8388.606, 0.001]


def test_read_2d_spikes_matches_the_nmnist_reference_decoding(tmp_path):
    """The published N-MNIST reader: x = b0, y = b1, p = b2 >> 7, t = (b2 & 127) << 16 | b3 << 8 | b4."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(500, 5), dtype=np.uint8)
    path = tmp_path / "random.bin"
    path.write_bytes(raw.tobytes())
    events = read_2d_spikes(path)
    b = raw.astype(np.int64)
    assert np.array_equal(events.x, b[:, 0])
    assert np.array_equal(events.y, b[:, 1])
    assert np.array_equal(events.p, b[:, 2] >> 7)
    t_us = ((b[:, 2] & 127) << 16) | (b[:, 3] << 8) | b[:, 4]
    assert np.array_equal(events.t, t_us / 1000.0)


def test_read_1d_spikes_decodes_hand_assembled_records(tmp_path):
    path = tmp_path / "one_d.bin"
    # id 300 = 0x012C, ON, t = 1000 µs = 0x0003E8 -> 01 2C 80 03 E8 (PySNN wrote 300 as 0: B9)
    literal = bytes([0x01, 0x2C, 0x80, 0x03, 0xE8])
    assert literal == record_1d(300, 1, 1000)
    path.write_bytes(literal + record_1d(65535, 0, 2**23 - 1) + record_1d(0, 1, 0))
    events = read_1d_spikes(path)
    assert events.dim == 1 and events.y is None
    assert events.x.tolist() == [300, 65535, 0]
    assert events.p.tolist() == [1, 0, 1]
    assert events.t.tolist() == [1.0, 8388.607, 0.0]


def test_read_3d_spikes_decodes_hand_assembled_records(tmp_path):
    path = tmp_path / "three_d.bin"
    # x = 139 = 0x08B, y = 4095 = 0xFFF, channel 3, t = 2**24 - 1:
    # bytes 08 | B F | FF | 03 | FF FF FF  (PySNN lost y[11:8] in byte 1: B9)
    literal = bytes([0x08, 0xBF, 0xFF, 0x03, 0xFF, 0xFF, 0xFF])
    assert literal == record_3d(139, 4095, 3, 2**24 - 1)
    path.write_bytes(literal + record_3d(4095, 139, 255, 1500) + record_3d(0, 0, 0, 0))
    events = read_3d_spikes(path)
    assert events.dim == 2
    assert events.x.tolist() == [139, 4095, 0]
    assert events.y.tolist() == [4095, 139, 0]
    assert events.p.tolist() == [3, 255, 0]
    assert events.t.tolist() == [16777.215, 1.5, 0.0]


def test_read_1d_num_spikes_decodes_hand_assembled_records(tmp_path):
    path = tmp_path / "num.bin"
    # id 513 = 02 01 | t_start 1500 µs = 00 05 DC | t_end 2**24-1 = FF FF FF | count FF FF
    literal = bytes([0x02, 0x01, 0x00, 0x05, 0xDC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    assert literal == record_num(513, 1500, 2**24 - 1, 65535)
    path.write_bytes(literal + record_num(7, 0, 250_000, 12))
    n_id, t_start, t_end, counts = read_1d_num_spikes(path)
    assert n_id.tolist() == [513, 7]
    assert t_start.tolist() == [1.5, 0.0]
    assert t_end.tolist() == [16777.215, 250.0]
    assert counts.tolist() == [65535, 12]
    assert t_start.dtype == np.float64


# ----------------------------------------------------------------------------- writers, byte-exact


def test_encode_2d_spikes_writes_the_documented_bytes(tmp_path):
    path = tmp_path / "out.bin"
    events = Events([17, 0, 255], [200, 255, 0], [1, 0, 1], [8388.607, 1193.046, 0.0005])
    encode_2d_spikes(path, events)
    # 0.0005 ms = 0.5 µs rounds (to even) to 0 µs
    expected = (
        record_2d(17, 200, 1, 2**23 - 1) + record_2d(0, 255, 0, 1193046) + record_2d(255, 0, 1, 0)
    )
    assert path.read_bytes() == expected


def test_encode_1d_3d_num_spikes_write_the_documented_bytes(tmp_path):
    encode_1d_spikes(tmp_path / "a.bin", Events([300, 65535], None, [1, 0], [1.0, 8388.607]))
    assert (tmp_path / "a.bin").read_bytes() == record_1d(300, 1, 1000) + record_1d(
        65535, 0, 2**23 - 1
    )
    encode_3d_spikes(tmp_path / "b.bin", Events([139, 4095], [4095, 0], [3, 255], [16777.215, 2.0]))
    assert (tmp_path / "b.bin").read_bytes() == record_3d(139, 4095, 3, 2**24 - 1) + record_3d(
        4095, 0, 255, 2000
    )
    encode_1d_num_spikes(tmp_path / "c.bin", [513, 7], [1.5, 0.0], [16777.215, 250.0], [65535, 12])
    assert (tmp_path / "c.bin").read_bytes() == record_num(
        513, 1500, 2**24 - 1, 65535
    ) + record_num(7, 0, 250_000, 12)


@pytest.mark.parametrize("seed", [0, 1])
def test_every_writer_round_trips_through_its_reader(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n = 300
    t_ms = lambda bits: rng.integers(0, 2**bits, n) / 1000.0  # noqa: E731 (exact µs)
    two_d = Events(
        rng.integers(0, 256, n), rng.integers(0, 256, n), rng.integers(0, 2, n), t_ms(23)
    )
    encode_2d_spikes(tmp_path / "2d.bin", two_d)
    assert same_events(read_2d_spikes(tmp_path / "2d.bin"), two_d)

    one_d = Events(rng.integers(0, 2**16, n), None, rng.integers(0, 2, n), t_ms(23))
    encode_1d_spikes(tmp_path / "1d.bin", one_d)
    assert same_events(read_1d_spikes(tmp_path / "1d.bin"), one_d)

    three_d = Events(
        rng.integers(0, 4096, n), rng.integers(0, 4096, n), rng.integers(0, 256, n), t_ms(24)
    )
    encode_3d_spikes(tmp_path / "3d.bin", three_d)
    assert same_events(read_3d_spikes(tmp_path / "3d.bin"), three_d)

    ids, starts, ends, counts = (
        rng.integers(0, 2**16, n),
        t_ms(24),
        t_ms(24),
        rng.integers(0, 2**16, n),
    )
    starts, ends = np.minimum(starts, ends), np.maximum(starts, ends)  # windows run forwards
    encode_1d_num_spikes(tmp_path / "num.bin", ids, starts, ends, counts)
    got = read_1d_num_spikes(tmp_path / "num.bin")
    assert np.array_equal(got[0], ids) and np.array_equal(got[3], counts)
    assert np.allclose(got[1], starts, atol=1e-9) and np.allclose(got[2], ends, atol=1e-9)


def test_writers_accept_their_own_dimension_and_keyword_arguments(tmp_path):
    """PySNN 0.1.1 asserted the wrong dimension and refused every event set (B8)."""
    encode_2d_spikes(filename=tmp_path / "x.bin", TD=Events([1], [2], [1], [3.0]))
    encode_3d_spikes(str(tmp_path / "y.bin"), Events([1], [2], [7], [3.0]))
    encode_1d_spikes(tmp_path / "z.bin", Events([1], None, [0], [3.0]))
    assert read_2d_spikes(str(tmp_path / "x.bin")).x.tolist() == [1]


def test_files_are_created_with_ordinary_permissions(tmp_path):
    path = tmp_path / "perm.bin"
    encode_2d_spikes(path, Events([1], [2], [1], [3.0]))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# ----------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    "reader, size",
    [(read_1d_spikes, 5), (read_2d_spikes, 5), (read_3d_spikes, 7), (read_1d_num_spikes, 10)],
)
def test_readers_reject_truncated_empty_and_missing_files(tmp_path, reader, size):
    name = reader.__name__
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(bytes(3 * size + 2))
    with pytest.raises(
        ValueError,
        match=rf"{name}: .*truncated.bin is {3 * size + 2} bytes long, which is not a multiple "
        rf"of the {size}-byte record size",
    ):
        reader(truncated)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{name}: .*empty.bin is empty"):
        reader(empty)
    missing = tmp_path / "missing.bin"
    with pytest.raises(FileNotFoundError, match=rf"{name}: no such file: .*missing.bin"):
        reader(missing)


def test_one_million_events_decode_in_under_a_second(tmp_path):
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, size=(1_000_000, 5), dtype=np.uint8)
    path = tmp_path / "big.bin"
    path.write_bytes(raw.tobytes())
    start = time.perf_counter()
    events = read_2d_spikes(path)
    elapsed = time.perf_counter() - start
    assert len(events) == 1_000_000
    assert elapsed < 1.0
    assert events.x[123_456] == raw[123_456, 0] and events.y[-1] == raw[-1, 1]


# ----------------------------------------------------------------------------- writer validation


def original_file(tmp_path):
    path = tmp_path / "keep.bin"
    encode_2d_spikes(path, Events([1, 2], [3, 4], [0, 1], [0.5, 1.0]))
    return path, path.read_bytes()


@pytest.mark.parametrize(
    "events, pattern",
    [
        (Events([256], [0], [0], [0.0]), r"x must lie in \[0, 255\], got values in \[256, 256\]"),
        (Events([-1], [0], [0], [0.0]), r"x must lie in \[0, 255\]"),
        (Events([0], [300], [0], [0.0]), r"y must lie in \[0, 255\]"),
        (Events([0], [0], [2], [0.0]), r"p \(polarity\) must lie in \[0, 1\]"),
        (Events([0], [0], [1], [8388.608]), r"t must lie in \[0, 8388.61\] ms \(23-bit µs"),
        (Events([0], [0], [1], [-0.001]), r"t must lie in \[0, 8388.61\] ms"),
        (Events([0], [0], [1], [float("nan")]), r"t must be finite"),
        (Events([0.5], [0], [1], [1.0]), r"x must hold integers"),
        (Events([], [], [], []), r"TD has no events"),
        (Events([1], None, [1], [1.0]), r"TD must hold 2-D events \(dim 2\), got dim 1"),
    ],
)
def test_bad_2d_writes_raise_and_leave_the_existing_file_unchanged(tmp_path, events, pattern):
    path, original = original_file(tmp_path)
    with pytest.raises(ValueError, match=rf"encode_2d_spikes: {pattern}"):
        encode_2d_spikes(path, events)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]  # no temporary leftovers


def test_a_write_that_fails_midway_leaves_the_existing_file_unchanged(tmp_path, monkeypatch):
    path, original = original_file(tmp_path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        encode_2d_spikes(path, Events([9], [9], [1], [9.0]))
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]


@pytest.mark.parametrize(
    "write, pattern",
    [
        (
            lambda p: encode_1d_spikes(p, Events([65536], None, [0], [0.0])),
            r"encode_1d_spikes: x \(neuron id\) must lie in \[0, 65535\]",
        ),
        (
            lambda p: encode_1d_spikes(p, Events([0], None, [0], [8388.608])),
            r"encode_1d_spikes: t must lie in",
        ),
        (
            lambda p: encode_1d_spikes(p, Events([0], [0], [0], [0.0])),
            r"encode_1d_spikes: TD must hold 1-D events",
        ),
        (
            lambda p: encode_3d_spikes(p, Events([4096], [0], [0], [0.0])),
            r"encode_3d_spikes: x must lie in \[0, 4095\]",
        ),
        (
            lambda p: encode_3d_spikes(p, Events([0], [0], [256], [0.0])),
            r"encode_3d_spikes: p \(channel\) must lie in \[0, 255\]",
        ),
        (
            lambda p: encode_3d_spikes(p, Events([0], [0], [0], [16777.216])),
            r"encode_3d_spikes: t must lie in \[0, 16777.2\] ms \(24-bit",
        ),
        (
            lambda p: encode_3d_spikes(p, Events([0], None, [0], [0.0])),
            r"encode_3d_spikes: TD must hold 3-D",
        ),
        (
            lambda p: encode_1d_num_spikes(p, [65536], [0], [1], [1]),
            r"encode_1d_num_spikes: n_id must lie in \[0, 65535\]",
        ),
        (
            lambda p: encode_1d_num_spikes(p, [1], [0], [16777.216], [1]),
            r"encode_1d_num_spikes: t_end must lie in",
        ),
        (
            lambda p: encode_1d_num_spikes(p, [1], [-1], [1], [1]),
            r"encode_1d_num_spikes: t_start must lie in",
        ),
        (
            lambda p: encode_1d_num_spikes(p, [1], [0], [1], [65536]),
            r"encode_1d_num_spikes: n_spikes must lie in \[0, 65535\]",
        ),
        (
            lambda p: encode_1d_num_spikes(p, [1, 2], [0], [1, 2], [1, 1]),
            r"encode_1d_num_spikes: t_start must have 2 entries, got 1",
        ),
        (lambda p: encode_1d_num_spikes(p, [], [], [], []), r"encode_1d_num_spikes: n_id is empty"),
    ],
)
def test_other_writers_validate_every_field(tmp_path, write, pattern):
    path, original = original_file(tmp_path)
    with pytest.raises(ValueError, match=pattern):
        write(path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]


def test_writers_reject_non_events():
    with pytest.raises(
        TypeError, match=r"encode_2d_spikes: TD must be a pysnn.file_io.Events, got dict"
    ):
        encode_2d_spikes("never.bin", {"x": [1]})
    assert not os.path.exists("never.bin")


# ----------------------------------------------------------------------------- Events


def test_events_copy_their_inputs_and_keep_polarity_as_given():
    x, y, p, t = np.array([1, 2]), np.array([3, 4]), np.array([1, 1]), np.array([0.5, 1.5])
    events = Events(x, y, p, t)
    x[0], p[:] = 99, 7
    assert events.x.tolist() == [1, 2]
    assert events.p.tolist() == [1, 1]  # all-ON stays ON (PySNN subtracted p.min(): B10)
    assert events.t.dtype == np.float64 and events.dim == 2 and len(events) == 2


def test_events_accept_lists_tensors_and_empty_lists():
    events = Events(torch.tensor([3, 4]), None, [0, 1], (1, 2))
    assert events.dim == 1 and events.y is None and events.x.tolist() == [3, 4]
    empty = Events([], [], [], [])
    assert len(empty) == 0 and empty.dim == 2
    assert empty.to_spike_array().shape == (0, 0, 0, 0)
    assert "n=0" in repr(empty)


def test_events_reject_mismatched_lengths_and_non_numbers():
    with pytest.raises(ValueError, match=r"Events: x, y, p and t must have the same length"):
        Events([1, 2], [1], [0, 0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"Events: t must be one-dimensional, got shape \(1, 2\)"):
        Events([1, 2], None, [0, 0], [[0.0, 1.0]])
    with pytest.raises(TypeError, match=r"Events: x must hold numbers"):
        Events(["a"], None, [0], [0.0])


def test_to_spike_array_bins_by_nearest_step_and_sets_not_accumulates():
    # t / Δ with Δ = 2: 0 -> 0, 0.8 -> 0.4 -> 0, 1.2 -> 0.6 -> 1, 3.0 -> 1.5 -> 2 (ties to even),
    # 5.0 -> 2.5 -> 2 (ties to even), 6.2 -> 3.1 -> 3
    events = Events(
        [0, 0, 1, 2, 2, 1], [1, 1, 0, 0, 0, 1], [1, 1, 0, 1, 1, 0], [0, 0.8, 1.2, 3.0, 5.0, 6.2]
    )
    array = events.to_spike_array(sampling_time=2)
    assert array.shape == (2, 2, 3, 4)  # P = 2, Y = 2, X = 3, T = 3 + 1
    expected = np.zeros((2, 2, 3, 4))
    expected[1, 1, 0, 0] = 0.5  # two events in one bin count once: value 1 / Δ
    expected[0, 0, 1, 1] = 0.5
    expected[1, 0, 2, 2] = 0.5  # two events (t = 3.0 and 5.0) in bin 2
    expected[0, 1, 1, 3] = 0.5
    assert np.array_equal(array, expected)


def test_to_spike_array_of_1d_events_and_with_a_given_shape():
    events = Events([0, 3, 9], None, [0, 1, 1], [0.0, 2.0, 1.0])
    array = events.to_spike_array()
    assert array.shape == (2, 10, 3)
    assert sorted(map(tuple, np.argwhere(array))) == [(0, 0, 0), (1, 3, 2), (1, 9, 1)]
    clipped = events.to_spike_array(1, dim=(2, 5, 2))  # x = 9 and t = 2 fall outside
    assert np.argwhere(clipped).tolist() == [[0, 0, 0]]
    assert events.to_spike_array(1, dim=(2, 1, 10, 3)).shape == (2, 1, 10, 3)
    with pytest.raises(ValueError, match=r"Events.to_spike_array: dim must be"):
        events.to_spike_array(1, dim=(2, 10))


def test_to_spike_tensor_fills_in_place_and_masks_negative_and_out_of_range_indices():
    events = Events(
        [0, 1, -1, 2, 3, 0, 1],
        [0, 1, 0, 2, 0, -1, 1],
        [1, 0, 0, 0, 0, 0, 2],
        [0.0, 1.4, 1.0, 1.0, 1.0, 1.0, 1.0],
    )
    tensor = torch.zeros(2, 3, 3, 4)
    out = events.to_spike_tensor(tensor, 1)
    assert out is tensor
    # x = -1, y = -1 (negative: must not wrap to the last row/column), x = 3 (width 3),
    # p = 2 (2 polarities) are dropped.
    assert tensor.nonzero().tolist() == [[0, 1, 1, 1], [0, 2, 2, 1], [1, 0, 0, 0]]
    assert tensor.sum() == 3


def test_to_spike_tensor_sets_one_over_sampling_time_and_does_not_clear():
    events = Events([0, 0, 0], [0, 0, 0], [0, 0, 0], [0.0, 0.5, 10.0])
    tensor = torch.full((1, 1, 1, 3), 7.0)
    events.to_spike_tensor(tensor, sampling_time=4)
    # t / 4: 0 -> 0, 0.125 -> 0 (same bin, set once), 2.5 -> 2 (ties to even)
    assert tensor.flatten().tolist() == [0.25, 7.0, 0.25]


def test_to_spike_tensor_rejects_wrong_shapes():
    with pytest.raises(
        ValueError,
        match=r"empty_tensor must have shape \(P, H, W, T\) for 2-D events, got \(2, 3, 3\)",
    ):
        Events([0], [0], [0], [0.0]).to_spike_tensor(torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match=r"\(P, 1, X, T\) for 1-D events"):
        Events([0], None, [0], [0.0]).to_spike_tensor(torch.zeros(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"sampling_time must be > 0.0 \(ms\), got 0.0"):
        Events([0], [0], [0], [0.0]).to_spike_tensor(torch.zeros(1, 1, 1, 1), 0)


def test_spike_array_to_events_inverts_to_spike_array():
    rng = np.random.default_rng(3)
    dense = (rng.random((2, 4, 5, 6)) < 0.2).astype(float)
    events = spike_array_to_events(dense, sampling_time=0.5)
    assert events.dim == 2 and len(events) == int(dense.sum())
    assert np.all(np.diff(events.t) >= 0)  # sorted by time
    back = events.to_spike_array(0.5, dim=dense.shape)
    assert np.array_equal(back > 0, dense > 0)
    # one event by hand: channel 1, y 2, x 3, bin 4 -> t = 2.0 ms
    single = np.zeros((2, 4, 5, 6))
    single[1, 2, 3, 4] = 1
    e = spike_array_to_events(torch.from_numpy(single), 0.5)
    assert (e.x.tolist(), e.y.tolist(), e.p.tolist(), e.t.tolist()) == ([3], [2], [1], [2.0])


def test_spike_array_to_events_of_a_3d_array_gives_1d_events():
    dense = np.zeros((2, 7, 3))
    dense[0, 6, 2] = 1
    dense[1, 0, 0] = 1
    events = spike_array_to_events(dense)
    assert events.dim == 1 and events.y is None
    assert (events.x.tolist(), events.p.tolist(), events.t.tolist()) == ([0, 6], [1, 0], [0.0, 2.0])


@pytest.mark.parametrize("shape", [(5,), (2, 5), (1, 2, 3, 4, 5)])
def test_spike_array_to_events_rejects_other_ranks(shape):
    with pytest.raises(
        ValueError, match=r"spike_array_to_events: spike_mat must be 3-D .* got shape"
    ):
        spike_array_to_events(np.zeros(shape))


# ----------------------------------------------------------------------------- frames and show_td


def test_events_to_frames_places_each_event_in_its_window_and_colour():
    # I = 10 ms; t0 = floor(3 / 10) * 10 = 0; frames [0,10), [10,20), [20,30), [30,40)
    events = Events(
        [0, 2, 1, 1, 0], [0, 1, 2, 2, 0], [1, 0, 2, 1, 1], [3.0, 9.99, 10.0, 25.0, 30.0]
    )
    frames = events_to_frames(events, 10.0)
    assert frames.shape == (4, 3, 3, 3) and frames.dtype == np.float32
    expected = np.zeros((4, 3, 3, 3), dtype=np.float32)
    expected[0, 0, 0, 0] = 1  # p = 1 -> red
    expected[0, 1, 2, 2] = 1  # p = 0 -> blue
    expected[1, 2, 1, 1] = 1  # p = 2 -> green
    expected[2, 2, 1, 0] = 1
    expected[3, 0, 0, 0] = 1
    assert np.array_equal(frames, expected)


def test_events_to_frames_with_size_and_time_range():
    events = Events([0, 5, 1], [0, 0, 1], [1, 1, 0], [12.0, 15.0, 47.0])
    frames = events_to_frames(events, 5, 2, 4, t_start=10.0, t_end=20.0)
    assert frames.shape == (2, 2, 4, 3)
    assert np.argwhere(frames).tolist() == [[0, 0, 0, 0]]  # x = 5 outside, t = 15, 47 outside
    default = events_to_frames(events, 5)  # t0 = 10, last window [45, 50)
    assert default.shape == (8, 2, 6, 3)
    assert events_to_frames(Events([], [], [], []), 5).shape == (0, 1, 1, 3)
    with pytest.raises(ValueError, match=r"events_to_frames: events must hold 2-D events"):
        events_to_frames(Events([0], None, [0], [0.0]), 5)
    with pytest.raises(ValueError, match=r"events_to_frames: frame_duration_ms must be > 0"):
        events_to_frames(events, 0)


@pytest.fixture
def pyplot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


@pytest.mark.parametrize("pre_compute", [True, False])
def test_show_td_2d_animates_the_frames(pyplot, pre_compute):
    from matplotlib.animation import FuncAnimation

    events = Events([0, 3, 1], [0, 1, 2], [1, 0, 1], [0.0, 50.0, 90.0])
    anim = show_td(events, frame_rate=20, pre_compute_frames=pre_compute)  # 50 ms per frame
    assert isinstance(anim, FuncAnimation)
    assert anim._interval == 50
    image = anim._fig.axes[0].images[0]
    anim._func(1)
    expected = np.zeros((3, 4, 3))
    expected[1, 3, 2] = 1  # OFF event at t = 50 ms, frame 1 -> blue
    expected[2, 1, 0] = 1  # ON event at t = 90 ms -> red
    assert np.array_equal(np.asarray(image.get_array()), expected)


def test_show_td_1d_and_gif(pyplot, tmp_path):
    events = Events([0, 4, 2], None, [1, 1, 0], [0.0, 30.0, 60.0])
    path = tmp_path / "td.gif"
    anim = show_td(events, frame_rate=25, save_path=path)  # 40 ms per frame, 2 frames
    assert path.exists() and path.read_bytes()[:3] == b"GIF"
    anim._func(0)
    line = anim._fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [0.0, 30.0] and list(line.get_ydata()) == [0, 4]


def test_show_td_without_matplotlib_names_the_plot_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'pysnn\[plot\]'"):
        show_td(Events([0], [0], [1], [0.0]))


def test_show_td_rejects_a_bad_frame_rate():
    with pytest.raises(ValueError, match=r"show_td: frame_rate must be a number > 0"):
        show_td(Events([0], [0], [1], [0.0]), frame_rate=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_spike_tensor_fills_a_cuda_tensor():
    tensor = torch.zeros(2, 2, 2, 3, device="cuda")
    Events([1, -1], [0, 0], [1, 0], [2.0, 0.0]).to_spike_tensor(tensor)
    assert tensor.device.type == "cuda"
    assert tensor.nonzero().tolist() == [[1, 0, 1, 2]]


# ----------------------------------------------------------------------------- atomic writes keep
# what the user owns: symbolic links, permission bits; hard links are documented to break.

WRITERS = {
    "encode_1d_spikes": lambda path: encode_1d_spikes(path, Events([3], None, [1], [2.0])),
    "encode_2d_spikes": lambda path: encode_2d_spikes(path, Events([9], [9], [1], [9.0])),
    "encode_3d_spikes": lambda path: encode_3d_spikes(path, Events([9], [9], [7], [9.0])),
    "encode_1d_num_spikes": lambda path: encode_1d_num_spikes(path, [1], [0.0], [5.0], [3]),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_writers_write_through_a_symlink_and_keep_it(tmp_path, name):
    real = tmp_path / "real.bin"
    real.write_bytes(b"old data")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    WRITERS[name](link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    reference = tmp_path / "reference.bin"
    WRITERS[name](reference)
    assert real.read_bytes() == reference.read_bytes() != b"old data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.bin", "real.bin", "reference.bin"]


def test_writers_follow_a_chain_of_relative_symlinks_and_a_dangling_one(tmp_path):
    (tmp_path / "sub").mkdir()
    real = tmp_path / "sub" / "real.bin"
    (tmp_path / "sub" / "mid.bin").symlink_to("real.bin")  # relative, dangling for now
    (tmp_path / "top.bin").symlink_to(os.path.join("sub", "mid.bin"))
    encode_2d_spikes(tmp_path / "top.bin", Events([1], [2], [1], [3.0]))
    assert (tmp_path / "top.bin").is_symlink() and (tmp_path / "sub" / "mid.bin").is_symlink()
    assert same_events(read_2d_spikes(real), Events([1], [2], [1], [3.0]))


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("name", sorted(WRITERS))
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604])
def test_writers_keep_the_permission_bits_of_an_existing_file(tmp_path, name, mode):
    path = tmp_path / "private.bin"
    path.write_bytes(b"secret")
    os.chmod(path, mode)
    WRITERS[name](path)
    assert os.stat(path).st_mode & 0o7777 == mode
    assert path.read_bytes() != b"secret"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_writers_give_a_new_file_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        encode_2d_spikes(tmp_path / "new.bin", Events([1], [2], [1], [3.0]))
        with open(tmp_path / "plain.bin", "wb"):
            pass
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "new.bin").st_mode & 0o7777 == 0o640
    assert os.stat(tmp_path / "new.bin").st_mode & 0o7777 == (
        os.stat(tmp_path / "plain.bin").st_mode & 0o7777
    )


@pytest.mark.skipif(os.name != "posix", reason="POSIX hard links")
def test_a_write_through_a_symlink_keeps_the_targets_mode_not_the_links(tmp_path):
    real = tmp_path / "real.bin"
    real.write_bytes(b"x")
    os.chmod(real, 0o600)
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    encode_1d_spikes(link, Events([3], None, [1], [2.0]))
    assert os.stat(real).st_mode & 0o7777 == 0o600 and link.is_symlink()


@pytest.mark.skipif(os.name != "posix", reason="POSIX hard links")
def test_hard_links_keep_the_old_contents_as_documented(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old data")
    other = tmp_path / "b.bin"
    os.link(path, other)
    inode = os.stat(path).st_ino
    encode_2d_spikes(path, Events([1], [2], [1], [3.0]))
    assert os.stat(path).st_ino != inode  # the rename gives the path a new inode ...
    assert other.read_bytes() == b"old data"  # ... and the other link keeps the old file
    import pysnn.file_io as file_io

    for doc in (file_io.__doc__, encode_2d_spikes.__doc__, encode_1d_num_spikes.__doc__):
        assert "hard links" in doc and "new inode" in doc


def test_a_failed_write_through_a_symlink_keeps_the_target_and_removes_the_temp(
    tmp_path, monkeypatch
):
    real = tmp_path / "real.bin"
    real.write_bytes(b"old data")
    link = tmp_path / "link.bin"
    link.symlink_to(real)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        encode_2d_spikes(link, Events([9], [9], [1], [9.0]))
    assert real.read_bytes() == b"old data" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.bin", "real.bin"]


def test_a_write_that_fails_while_writing_removes_the_temp(tmp_path, monkeypatch):
    path, original = original_file(tmp_path)
    import pysnn.file_io as file_io

    def broken_chmod(*args, **kwargs):
        raise OSError("no space left")

    monkeypatch.setattr(file_io.os, "chmod", broken_chmod)
    with pytest.raises(OSError, match="no space left"):
        encode_2d_spikes(path, Events([9], [9], [1], [9.0]))
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_writers_reject_an_empty_filename_and_write_nothing(tmp_path, monkeypatch, name):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ValueError, match=rf"{name}: filename must not be empty"):
        WRITERS[name]("")
    assert list(tmp_path.iterdir()) == [work] and list(work.iterdir()) == []


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_writers_reject_a_directory_and_a_missing_directory(tmp_path, name):
    with pytest.raises(ValueError, match=rf"{name}: filename names a directory"):
        WRITERS[name](tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"{name}: the directory of filename"):
        WRITERS[name](tmp_path / "missing" / "x.bin")
    assert list(tmp_path.iterdir()) == []


def test_encode_1d_num_spikes_rejects_windows_that_end_before_they_start(tmp_path):
    path, original = original_file(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"encode_1d_num_spikes: t_end must be >= t_start.*"
        r"index 1: t_start=5 ms, t_end=4 ms",
    ):
        encode_1d_num_spikes(path, [1, 2], [0.0, 5.0], [1.0, 4.0], [3, 4])
    assert path.read_bytes() == original
    encode_1d_num_spikes(path, [1], [5.0], [5.0], [0])  # an empty window is fine
    assert read_1d_num_spikes(path)[2].tolist() == [5.0]


def test_read_1d_num_spikes_rejects_a_record_that_ends_before_it_starts(tmp_path):
    path = tmp_path / "corrupt.bin"
    path.write_bytes(record_num(1, 5000, 4000, 3))
    with pytest.raises(ValueError, match=r"read_1d_num_spikes: .*corrupt.*t_end=4 ms < t_start"):
        read_1d_num_spikes(path)
