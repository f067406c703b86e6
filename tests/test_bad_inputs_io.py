"""Bad arguments to the encoders, event files, data-set transforms, Monitor and run.

Every case is ``function × parameter × bad value → error type + a regex naming the parameter``;
file cases also check that nothing the user owns is overwritten or left behind.

Case count (pytest ids in brackets; keep in step with the tables below):

* ENCODER_CASES: 34 (``poisson_encoding`` 19, ``PoissonEncoder`` 15)
* READER_PATH_CASES: 6 bad paths × 4 readers = 24
* READER_CONTENT_CASES: 5 truncated / corrupt / empty contents × 4 readers = 20, plus 1 corrupt
  ``read_1d_num_spikes`` record (t_end < t_start) = 21
* WRITER_PATH_CASES: 8 bad paths × 4 writers = 32
* WRITER_FIELD_CASES: 14
* TRANSFORM_CASES: 17
* MONITOR_CASES: 14
* RUN_CASES: 19

Total: 34 + 24 + 21 + 32 + 14 + 17 + 14 + 19 = 175 cases (``test_the_case_count_is_current``
checks the count).
"""

import os

import numpy as np
import pytest
import torch

from pysnn.datasets import BooleanNoise, DiscretizeFloat, Intensity
from pysnn.encoding import PoissonEncoder, poisson_encoding
from pysnn.file_io import (
    Events,
    encode_1d_num_spikes,
    encode_1d_spikes,
    encode_2d_spikes,
    encode_3d_spikes,
    read_1d_num_spikes,
    read_1d_spikes,
    read_2d_spikes,
    read_3d_spikes,
)
from pysnn.monitor import Monitor
from pysnn.neuron import LIFNeuron
from pysnn.simulation import run

NAN, INF = float("nan"), float("inf")
RATES = torch.full((2, 3), 10.0)


def _case(function, parameter, value, call, error, pattern):
    return pytest.param(call, error, pattern, id=f"{function}-{parameter}-{value}")


# ----------------------------------------------------------------------------- encoders

ENCODER_CASES = []
for _owner, _encode in (
    ("poisson_encoding", lambda x, d, dt, **kw: poisson_encoding(x, d, dt, **kw)),
    ("PoissonEncoder", lambda x, d, dt, **kw: PoissonEncoder(d, dt, **kw)(x)),
):
    for _value, _error, _pattern in (
        (0, ValueError, r"duration must be > 0"),
        (-1.0, ValueError, r"duration must be > 0"),
        (NAN, ValueError, r"duration must be finite"),
        (INF, ValueError, r"duration must be finite"),
        ("10", TypeError, r"duration must be a real number"),
        (None, TypeError, r"duration must be a real number"),
        (0.5, ValueError, r"duration must be at least one dt long"),
    ):
        ENCODER_CASES.append(
            _case(
                _owner,
                "duration",
                _value,
                lambda e=_encode, v=_value: e(RATES, v, 1.0),
                _error,
                rf"{_owner}: {_pattern}",
            )
        )
    for _value, _error, _pattern in (
        (0.0, ValueError, r"dt must be > 0"),
        (NAN, ValueError, r"dt must be finite"),
        (True, TypeError, r"dt must be a real number"),
        (20.0, ValueError, r"duration must be at least one dt long.*dt=20"),
    ):
        ENCODER_CASES.append(
            _case(
                _owner,
                "dt",
                _value,
                lambda e=_encode, v=_value: e(RATES, 10.0, v),
                _error,
                rf"{_owner}: {_pattern}",
            )
        )
    ENCODER_CASES.append(
        _case(
            _owner,
            "generator",
            "str",
            lambda e=_encode: e(RATES, 10.0, 1.0, generator="seed"),
            TypeError,
            rf"{_owner}: generator must be a torch.Generator",
        )
    )
# The intensities are checked by the function, also when the encoder calls it.
for _value, _error, _pattern in (
    ([10.0], TypeError, r"intensities must be a torch.Tensor, got list"),
    (None, TypeError, r"intensities must be a torch.Tensor, got NoneType"),
    (torch.ones(3, dtype=torch.int64), TypeError, r"intensities must have a floating dtype"),
    (torch.tensor([NAN]), ValueError, r"intensities must not contain NaN"),
    (torch.tensor([-1.0]), ValueError, r"intensities must be non-negative"),
    (torch.tensor([INF]), ValueError, r"intensities \(rates in Hz\) times dt / 1000 must be <= 1"),
    (torch.tensor([2000.0]), ValueError, r"intensities \(rates in Hz\).*max rate 2000 Hz"),
):
    ENCODER_CASES.append(
        _case(
            "poisson_encoding",
            "intensities",
            _value,
            lambda v=_value: poisson_encoding(v, 10.0, 1.0),
            _error,
            rf"poisson_encoding: {_pattern}",
        )
    )
for _value, _error, _pattern in (
    ([10.0], TypeError, r"intensities must be a torch.Tensor"),
    (torch.tensor([-5.0]), ValueError, r"intensities must be non-negative"),
):
    ENCODER_CASES.append(
        _case(
            "PoissonEncoder",
            "intensities",
            _value,
            lambda v=_value: PoissonEncoder(10.0, 1.0)(v),
            _error,
            _pattern,
        )
    )
ENCODER_CASES.append(
    _case(
        "PoissonEncoder",
        "generator",
        "int-at-construction",
        lambda: PoissonEncoder(10.0, 1.0, generator=3),
        TypeError,
        r"PoissonEncoder: generator must be a torch.Generator or None, got int",
    )
)


@pytest.mark.parametrize("call, error, pattern", ENCODER_CASES)
def test_encoders_reject_bad_arguments(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


# ----------------------------------------------------------------------------- event files

READERS = {
    "read_1d_spikes": (read_1d_spikes, 5),
    "read_2d_spikes": (read_2d_spikes, 5),
    "read_3d_spikes": (read_3d_spikes, 7),
    "read_1d_num_spikes": (read_1d_num_spikes, 10),
}
WRITERS = {
    "encode_1d_spikes": lambda path: encode_1d_spikes(path, Events([3], None, [1], [2.0])),
    "encode_2d_spikes": lambda path: encode_2d_spikes(path, Events([9], [9], [1], [9.0])),
    "encode_3d_spikes": lambda path: encode_3d_spikes(path, Events([9], [9], [7], [9.0])),
    "encode_1d_num_spikes": lambda path: encode_1d_num_spikes(path, [1], [0.0], [5.0], [3]),
}

# (id, path maker from tmp_path, error, regex after "<owner>: ")
READER_PATH_CASES = [
    ("empty-str", lambda tmp: "", ValueError, r"filename must not be empty"),
    ("None", lambda tmp: None, TypeError, r"filename must be a str or os.PathLike, got NoneType"),
    ("int", lambda tmp: 3, TypeError, r"filename must be a str or os.PathLike, got int"),
    ("missing", lambda tmp: tmp / "missing.bin", FileNotFoundError, r"no such file: filename="),
    ("directory", lambda tmp: tmp, IsADirectoryError, r"filename .* is a directory"),
    (
        "missing-dir",
        lambda tmp: tmp / "nope" / "x.bin",
        FileNotFoundError,
        r"no such file: filename=",
    ),
]


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize(
    "make, error, pattern",
    [pytest.param(*case[1:], id=case[0]) for case in READER_PATH_CASES],
)
def test_readers_reject_bad_paths(tmp_path, reader, make, error, pattern):
    function, _ = READERS[reader]
    with pytest.raises(error, match=rf"{reader}: {pattern}"):
        function(make(tmp_path))


# (id, content from the record size, regex after "<owner>: ")
READER_CONTENT_CASES = [
    ("empty", lambda size: b"", r".* is empty \(expected \d+-byte event records\)"),
    ("one-byte", lambda size: b"\x01", r".* is 1 bytes long, which is not a multiple"),
    (
        "truncated-record",
        lambda size: bytes(size + size // 2),
        r".* bytes long, which is not a multiple.*truncated",
    ),
    (
        "one-byte-short",
        lambda size: bytes(2 * size - 1),
        r".* bytes long, which is not a multiple.*truncated",
    ),
    (
        "one-byte-long",
        lambda size: bytes(3 * size + 1),
        r".* bytes long, which is not a multiple.*truncated",
    ),
]


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize(
    "content, pattern",
    [pytest.param(*case[1:], id=case[0]) for case in READER_CONTENT_CASES],
)
def test_readers_reject_truncated_or_empty_files(tmp_path, reader, content, pattern):
    function, size = READERS[reader]
    path = tmp_path / "bad.bin"
    data = content(size)
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"{reader}: {pattern}"):
        function(path)
    assert path.read_bytes() == data  # a reader never touches the file


def test_read_1d_num_spikes_rejects_a_window_that_ends_before_it_starts(tmp_path):
    path = tmp_path / "corrupt.bin"
    good = (1 << 64 | 1000 << 40 | 2000 << 16 | 4).to_bytes(10, "big")
    backwards = (2 << 64 | 3000 << 40 | 2500 << 16 | 4).to_bytes(10, "big")
    path.write_bytes(good + backwards)
    with pytest.raises(
        ValueError,
        match=r"read_1d_num_spikes: .* corrupt or not this format: record 1 has t_end=2.5 ms < "
        r"t_start=3 ms",
    ):
        read_1d_num_spikes(path)


# (id, path maker, error, regex after "<owner>: ")
WRITER_PATH_CASES = [
    ("empty-str", lambda tmp: "", ValueError, r"filename must not be empty"),
    ("None", lambda tmp: None, TypeError, r"filename must be a str or os.PathLike, got NoneType"),
    ("int", lambda tmp: 3, TypeError, r"filename must be a str or os.PathLike, got int"),
    ("bytes", lambda tmp: b"x.bin", TypeError, r"filename must be a str or os.PathLike, got bytes"),
    ("nul", lambda tmp: str(tmp / "a\x00b.bin"), ValueError, r"filename must not contain NUL"),
    ("directory", lambda tmp: tmp, ValueError, r"filename names a directory"),
    (
        "trailing-slash",
        lambda tmp: str(tmp / "new") + "/",
        ValueError,
        r"filename names a directory",
    ),
    (
        "missing-dir",
        lambda tmp: tmp / "nope" / "x.bin",
        FileNotFoundError,
        r"the directory of filename .* does not exist",
    ),
]


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize(
    "make, error, pattern",
    [pytest.param(*case[1:], id=case[0]) for case in WRITER_PATH_CASES],
)
def test_writers_reject_bad_paths_and_write_nothing(
    tmp_path, monkeypatch, writer, make, error, pattern
):
    work = tmp_path / "work"
    work.mkdir()
    keep = work / "keep.bin"
    keep.write_bytes(b"user data")
    monkeypatch.chdir(work)
    with pytest.raises(error, match=rf"{writer}: {pattern}"):
        WRITERS[writer](make(work))
    # Nothing new anywhere (the parent of the working directory included), nothing changed.
    assert sorted(os.listdir(tmp_path)) == ["work"]
    assert sorted(os.listdir(work)) == ["keep.bin"] and keep.read_bytes() == b"user data"


def _events_1d(**fields):
    base = dict(x=[1], y=None, p=[1], t=[1.0])
    base.update(fields)
    return Events(**base)


WRITER_FIELD_CASES = [
    ("encode_1d_spikes", "TD", lambda p: encode_1d_spikes(p, "events"), TypeError, r"TD must be"),
    (
        "encode_1d_spikes",
        "x",
        lambda p: encode_1d_spikes(p, _events_1d(x=[70000])),
        ValueError,
        r"x \(neuron id\) must lie in \[0, 65535\]",
    ),
    (
        "encode_1d_spikes",
        "p",
        lambda p: encode_1d_spikes(p, _events_1d(p=[2])),
        ValueError,
        r"p \(polarity\) must lie in \[0, 1\]",
    ),
    (
        "encode_1d_spikes",
        "t",
        lambda p: encode_1d_spikes(p, _events_1d(t=[NAN])),
        ValueError,
        r"t must be finite",
    ),
    (
        "encode_1d_spikes",
        "t",
        lambda p: encode_1d_spikes(p, _events_1d(t=[-1.0])),
        ValueError,
        r"t must lie in \[0, 8388.61\] ms",
    ),
    (
        "encode_2d_spikes",
        "TD",
        lambda p: encode_2d_spikes(p, _events_1d()),
        ValueError,
        r"TD must hold 2-D events",
    ),
    (
        "encode_2d_spikes",
        "TD",
        lambda p: encode_2d_spikes(p, Events([], [], [], [])),
        ValueError,
        r"TD has no events",
    ),
    (
        "encode_2d_spikes",
        "y",
        lambda p: encode_2d_spikes(p, Events([1], [256], [0], [1.0])),
        ValueError,
        r"y must lie in \[0, 255\]",
    ),
    (
        "encode_3d_spikes",
        "p",
        lambda p: encode_3d_spikes(p, Events([1], [1], [256], [1.0])),
        ValueError,
        r"p \(channel\) must lie in \[0, 255\]",
    ),
    (
        "encode_1d_num_spikes",
        "n_id",
        lambda p: encode_1d_num_spikes(p, [], [], [], []),
        ValueError,
        r"n_id is empty",
    ),
    (
        "encode_1d_num_spikes",
        "t_end",
        lambda p: encode_1d_num_spikes(p, [1], [5.0], [4.0], [1]),
        ValueError,
        r"t_end must be >= t_start",
    ),
    (
        "encode_1d_num_spikes",
        "t_start",
        lambda p: encode_1d_num_spikes(p, [1], [0.0, 1.0], [4.0], [1]),
        ValueError,
        r"t_start must have 1 entries",
    ),
    (
        "encode_1d_num_spikes",
        "n_spikes",
        lambda p: encode_1d_num_spikes(p, [1], [0.0], [4.0], [1.5]),
        ValueError,
        r"n_spikes must hold integers",
    ),
    (
        "encode_1d_num_spikes",
        "n_spikes",
        lambda p: encode_1d_num_spikes(p, [1], [0.0], [4.0], ["a"]),
        TypeError,
        r"n_spikes must hold numbers",
    ),
]


@pytest.mark.parametrize(
    "owner, call, error, pattern",
    [
        pytest.param(owner, call, error, pattern, id=f"{owner}-{name}-{i}")
        for i, (owner, name, call, error, pattern) in enumerate(WRITER_FIELD_CASES)
    ],
)
def test_writers_reject_bad_fields_and_keep_the_existing_file(
    tmp_path, owner, call, error, pattern
):
    path = tmp_path / "keep.bin"
    path.write_bytes(b"user data")
    os.chmod(path, 0o600)
    with pytest.raises(error, match=rf"{owner}: {pattern}"):
        call(path)
    assert path.read_bytes() == b"user data" and os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["keep.bin"]


# ----------------------------------------------------------------------------- data-set transforms

TRANSFORM_CASES = [
    (
        "DiscretizeFloat",
        "x",
        lambda: DiscretizeFloat()("1.5"),
        TypeError,
        r"x must be a tensor or a real number, got str",
    ),
    ("DiscretizeFloat", "x", lambda: DiscretizeFloat()(None), TypeError, r"x must be a tensor"),
    ("DiscretizeFloat", "x", lambda: DiscretizeFloat()(NAN), ValueError, r"x must be finite"),
    ("DiscretizeFloat", "x", lambda: DiscretizeFloat()(INF), ValueError, r"x must be finite"),
    (
        "DiscretizeFloat",
        "x",
        lambda: DiscretizeFloat()(torch.ones(2, dtype=torch.complex64)),
        TypeError,
        r"x must be a real tensor",
    ),
    (
        "BooleanNoise",
        "low_thresh",
        lambda: BooleanNoise(-0.1, 0.5),
        ValueError,
        r"low_thresh must lie in \[0, 1\]",
    ),
    (
        "BooleanNoise",
        "low_thresh",
        lambda: BooleanNoise(NAN, 0.5),
        ValueError,
        r"low_thresh must lie in \[0, 1\], got nan",
    ),
    (
        "BooleanNoise",
        "high_thresh",
        lambda: BooleanNoise(0.1, 1.5),
        ValueError,
        r"high_thresh must lie in \[0, 1\]",
    ),
    (
        "BooleanNoise",
        "high_thresh",
        lambda: BooleanNoise(0.1, "0.9"),
        ValueError,
        r"high_thresh must lie in \[0, 1\]",
    ),
    (
        "BooleanNoise",
        "generator",
        lambda: BooleanNoise(0.1, 0.9, generator=7),
        TypeError,
        r"generator must be a torch.Generator or None, got int",
    ),
    (
        "BooleanNoise",
        "x",
        lambda: BooleanNoise(0.1, 0.9)([0.0, 1.0]),
        TypeError,
        r"x must be a torch.Tensor, got list",
    ),
    ("Intensity", "intensity", lambda: Intensity("high"), TypeError, r"intensity must be a number"),
    ("Intensity", "intensity", lambda: Intensity(True), TypeError, r"intensity must be a number"),
    ("Intensity", "intensity", lambda: Intensity(NAN), ValueError, r"intensity must be finite"),
    (
        "Intensity",
        "intensity",
        lambda: Intensity(torch.tensor([1.0, INF])),
        ValueError,
        r"intensity must be finite",
    ),
    (
        "Intensity",
        "x",
        lambda: Intensity(2.0)("ab"),
        TypeError,
        r"x must be a tensor or a number, got str",
    ),
    (
        "Intensity",
        "x",
        lambda: Intensity(2.0)([1.0]),
        TypeError,
        r"x must be a tensor or a number, got list",
    ),
]


@pytest.mark.parametrize(
    "owner, call, error, pattern",
    [
        pytest.param(owner, call, error, pattern, id=f"{owner}-{name}-{i}")
        for i, (owner, name, call, error, pattern) in enumerate(TRANSFORM_CASES)
    ],
)
def test_transforms_reject_bad_arguments(owner, call, error, pattern):
    with pytest.raises(error, match=rf"{owner}: {pattern}"):
        call()


# ----------------------------------------------------------------------------- Monitor and run


def _neuron():
    return LIFNeuron((1, 1, 3), 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


def _monitor(**changes):
    arguments = dict(module=_neuron(), variables=["spikes"])
    arguments.update(changes)
    return Monitor(arguments.pop("module"), arguments.pop("variables"), **arguments)


def _none_buffer():
    neuron = _neuron()
    monitor = Monitor(neuron, ["spikes", "v_cell"])
    neuron.v_cell = None
    return monitor.record()


MONITOR_CASES = [
    ("module", lambda: _monitor(module="neuron"), TypeError, r"module must be a torch.nn.Module"),
    ("variables", lambda: _monitor(variables=[]), TypeError, r"variables must be a str or"),
    ("variables", lambda: _monitor(variables=5), TypeError, r"variables must be a str or"),
    ("variables", lambda: _monitor(variables=[1]), TypeError, r"variable names must be str"),
    (
        "variables",
        lambda: _monitor(variables=["nope"]),
        ValueError,
        r"LIFNeuron has no tensor attribute 'nope'",
    ),
    (
        "variables",
        lambda: _monitor(variables=["spikes", "spikes"]),
        ValueError,
        r"variables must be unique",
    ),
    ("max_steps", lambda: _monitor(max_steps=0), ValueError, r"max_steps must be >= 1"),
    ("max_steps", lambda: _monitor(max_steps=1.5), TypeError, r"max_steps must be an int"),
    ("max_steps", lambda: _monitor(max_steps=True), TypeError, r"max_steps must be an int"),
    ("every", lambda: _monitor(every=0), ValueError, r"every must be >= 1"),
    ("every", lambda: _monitor(every="2"), TypeError, r"every must be an int"),
    ("hook", lambda: _monitor(hook=1), TypeError, r"hook must be a bool"),
    ("name", lambda: _monitor().get("v_cell"), KeyError, r"'v_cell' is not recorded"),
    (
        "v_cell",
        _none_buffer,
        ValueError,
        r"the monitored variable 'v_cell' of module LIFNeuron is no longer a tensor",
    ),
]


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        pytest.param(call, error, pattern, id=f"Monitor-{name}-{i}")
        for i, (name, call, error, pattern) in enumerate(MONITOR_CASES)
    ],
)
def test_monitor_rejects_bad_arguments(call, error, pattern):
    with pytest.raises(error, match=rf"Monitor: {pattern}"):
        call()


class _Rule:
    def update_state(self):
        pass

    def step(self, *args):
        pass


class _Varying(torch.nn.Module):
    def __init__(self, late):
        super().__init__()
        self.late, self.calls = late, 0

    def forward(self, x):
        self.calls += 1
        return self.late if self.calls > 1 else torch.zeros(2, 3, dtype=torch.bool)


X = torch.zeros(2, 4)  # four steps


def _none_monitor_run():
    neuron = _neuron()
    monitor = Monitor(neuron, "spikes", hook=False)
    neuron.spikes = None
    run(neuron, torch.ones(1, 1, 3, 1, 4), monitors=[monitor])


RUN_CASES = [
    ("network", lambda: run("net", X), TypeError, r"network must be a callable module"),
    ("inputs", lambda: run(torch.nn.Identity(), [1, 2]), TypeError, r"inputs must be a torch"),
    (
        "inputs",
        lambda: run(torch.nn.Identity(), torch.tensor(1.0)),
        ValueError,
        r"inputs must have a time axis last with at least one step",
    ),
    (
        "inputs",
        lambda: run(torch.nn.Identity(), torch.zeros(2, 0)),
        ValueError,
        r"inputs must have a time axis last",
    ),
    (
        "learning_rule",
        lambda: run(torch.nn.Identity(), X, object()),
        TypeError,
        r"learning_rule must have an update_state\(\) method",
    ),
    (
        "reward",
        lambda: run(torch.nn.Identity(), X, reward=1.0),
        ValueError,
        r"reward was given without a learning_rule",
    ),
    (
        "reward",
        lambda: run(torch.nn.Identity(), X, _Rule(), [1.0] * 3),
        ValueError,
        r"a reward sequence must have one value per step \(4\)",
    ),
    (
        "reward",
        lambda: run(torch.nn.Identity(), X, _Rule(), torch.ones(3)),
        ValueError,
        r"a reward tensor must be 0-dim or have the time axis last with 4 steps",
    ),
    (
        "reward",
        lambda: run(torch.nn.Identity(), X, _Rule(), "high"),
        TypeError,
        r"reward must be None, a number",
    ),
    (
        "reward",
        lambda: run(torch.nn.Identity(), X, _Rule(), ["a"] * 4),
        TypeError,
        r"a reward sequence must hold numbers",
    ),
    (
        "reward",
        lambda: run(torch.nn.Identity(), X, _Rule(), [1.0, NAN, 1.0, 1.0]),
        ValueError,
        r"reward must be finite \(no NaN or inf\), got nan at step 1",
    ),
    (
        "reward",
        lambda: run(torch.nn.Identity(), X, _Rule(), torch.tensor(INF)),
        ValueError,
        r"reward must be finite",
    ),
    (
        "reward",
        lambda: run(torch.nn.Identity(), X, _Rule(), lambda t, out: NAN),
        ValueError,
        r"reward \(the callable's value at step 0\) must be finite",
    ),
    (
        "monitors",
        lambda: run(torch.nn.Identity(), X, monitors=["m"]),
        TypeError,
        r"monitors must be Monitor or NetworkMonitor objects",
    ),
    (
        "monitors",
        _none_monitor_run,
        ValueError,
        r"Monitor: the monitored variable 'spikes' of module LIFNeuron",
    ),
    ("reset", lambda: run(torch.nn.Identity(), X, reset=1), TypeError, r"reset must be a bool"),
    ("output", lambda: run(lambda x: 3, X), TypeError, r"forward must return a tensor"),
    (
        "output",
        lambda: run(_Varying(torch.zeros(2, 1, dtype=torch.bool)), X),
        ValueError,
        r"output changed shape at step 1: \(2, 1\), but step 0 gave \(2, 3\)",
    ),
    (
        "output",
        lambda: run(_Varying(torch.ones(2, 3)), X),
        TypeError,
        r"output changed dtype at step 1: torch.float32, but step 0 gave torch.bool",
    ),
]


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        pytest.param(call, error, pattern, id=f"run-{name}-{i}")
        for i, (name, call, error, pattern) in enumerate(RUN_CASES)
    ],
)
def test_run_rejects_bad_arguments(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_the_case_count_is_current():
    counts = {
        "ENCODER_CASES": len(ENCODER_CASES),
        "READER_PATH_CASES": len(READER_PATH_CASES) * len(READERS),
        "READER_CONTENT_CASES": len(READER_CONTENT_CASES) * len(READERS) + 1,
        "WRITER_PATH_CASES": len(WRITER_PATH_CASES) * len(WRITERS),
        "WRITER_FIELD_CASES": len(WRITER_FIELD_CASES),
        "TRANSFORM_CASES": len(TRANSFORM_CASES),
        "MONITOR_CASES": len(MONITOR_CASES),
        "RUN_CASES": len(RUN_CASES),
    }
    assert counts == {
        "ENCODER_CASES": 34,
        "READER_PATH_CASES": 24,
        "READER_CONTENT_CASES": 21,
        "WRITER_PATH_CASES": 32,
        "WRITER_FIELD_CASES": 14,
        "TRANSFORM_CASES": 17,
        "MONITOR_CASES": 14,
        "RUN_CASES": 19,
    }
    assert sum(counts.values()) == 175
    assert "Total: 34 + 24 + 21 + 32 + 14 + 17 + 14 + 19 = 175" in __doc__
