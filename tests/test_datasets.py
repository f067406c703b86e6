"""Datasets and transforms on generated directory trees; expected values are computed here."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pysnn.datasets import (
    AND,
    OR,
    XOR,
    Boolean,
    BooleanNoise,
    DiscretizeFloat,
    Intensity,
    NeuromorphicDataset,
    ncaltech_train_test,
    ncars_train_test,
    nmnist_train_test,
    synthetic_nmnist,
    train_test,
)
from pysnn.encoding import PoissonEncoder


def record(x: int, y: int, p: int, t_us: int) -> bytes:
    """One N-MNIST event: x [39:32] · y [31:24] · p [23] · t [22:0] µs."""
    return ((x << 32) | (y << 24) | (p << 23) | t_us).to_bytes(5, "big")


def write_events(path: Path, events) -> Path:
    """``events``: (x, y, p, t_ms) tuples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(record(x, y, p, round(t * 1000)) for x, y, p, t in events))
    return path


def make_tree(root: Path, layout: dict) -> None:
    """``layout``: {relative folder: number of .bin files}; file k has one event at x = y = k."""
    for folder, count in layout.items():
        for k in range(count):
            write_events(root / folder / f"{k:03d}.bin", [(k % 5, k % 5, 1, 2.0)])


# ----------------------------------------------------------------------------- boolean data


@pytest.mark.parametrize(
    "cls, labels", [(XOR, [0, 1, 1, 0]), (AND, [0, 0, 0, 1]), (OR, [0, 1, 1, 1])]
)
def test_boolean_datasets_rows_and_labels(cls, labels):
    data = cls()
    assert len(data) == 4
    rows = [[0, 0], [1, 0], [0, 1], [1, 1]]
    for i in range(4):
        sample, label = data[i]
        assert sample.dtype == torch.float32 and sample.shape == (1, 2)
        assert sample.tolist() == [rows[i]]
        assert label.dtype == torch.int64 and label.shape == (1,)
        assert label.tolist() == [labels[i]]


def test_repeats_repeat_each_input_column():
    data = XOR(repeats=3)
    assert len(data) == 4  # the features are repeated, not the samples (B15)
    assert data[1][0].tolist() == [[1, 1, 1, 0, 0, 0]]
    assert data[2][0].tolist() == [[0, 0, 0, 1, 1, 1]]
    assert data.data.shape == (4, 6)


def test_transform_then_encoder_then_label_transform():
    calls = []

    def transform(x):
        calls.append("transform")
        return x * 10

    def encoder(x):
        calls.append("encoder")
        return x + 1

    data = OR(encoder, transform, lambda y: y + 100, repeats=2)
    sample, label = data[3]
    assert calls == ["transform", "encoder"]
    assert sample.tolist() == [[11, 11, 11, 11]]
    assert label.tolist() == [101]
    # keywords of the contract
    assert AND(data_encoder=None, data_transform=None, lbl_transform=None, repeats=1)[3][1] == 1


def test_samples_are_copies_of_the_dataset_rows():
    data = XOR()
    sample, _ = data[3]
    sample.zero_()
    assert data[3][0].tolist() == [[1, 1]]


def test_boolean_with_a_poisson_encoder_and_dataloader():
    data = OR(
        PoissonEncoder(50, 1, generator=torch.Generator().manual_seed(0)),
        Intensity(200.0),
        repeats=3,
    )
    sample, label = data[0]
    assert sample.shape == (1, 6, 50) and sample.dtype == torch.bool
    assert not sample.any()  # input 0 -> rate 0 Hz
    assert data[3][0].any()
    batch, labels = next(iter(DataLoader(data, batch_size=4)))
    assert batch.shape == (4, 1, 6, 50) and labels.tolist() == [[0], [1], [1], [1]]


def test_boolean_base_class_and_bad_repeats():
    with pytest.raises(NotImplementedError, match="Boolean: no labels"):
        Boolean()[0]
    with pytest.raises(ValueError, match=r"XOR: repeats must be an int >= 1, got 0"):
        XOR(repeats=0)
    with pytest.raises(ValueError, match=r"repeats must be an int >= 1, got 1.5"):
        OR(repeats=1.5)


# ----------------------------------------------------------------------------- transforms


def test_discretize_float_rounds_to_nearest():
    d = DiscretizeFloat()
    out = d(torch.tensor([-1.7, -0.4, 0.4, 0.6, 2.5, 3.5, 1.0]))
    # PySNN truncated (-1.7 -> -1: B17); nearest integer, ties to even like round()
    assert out.tolist() == [-2.0, -0.0, 0.0, 1.0, 2.0, 4.0, 1.0]
    assert out.dtype == torch.float32
    assert d(-1.7) == -2.0 and isinstance(d(2.6), float)
    assert d(torch.tensor([3])).dtype == torch.float32


def test_boolean_noise_replaces_zeros_and_ones_without_touching_the_input():
    x = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.5, 1.0]])
    original = x.clone()
    noise = BooleanNoise(0.2, 0.7, generator=torch.Generator().manual_seed(0))
    out = noise(x)
    assert torch.equal(x, original)  # B16: no write-through
    zeros, ones = original == 0, original == 1
    assert ((out[zeros] >= 0) & (out[zeros] < 0.2)).all()
    assert ((out[ones] >= 0.7) & (out[ones] < 1.0)).all()
    assert out[0, 4] == 0.5  # other values kept
    assert len(set(out[ones].tolist())) == 3  # independent draws


def test_boolean_noise_draws_only_the_masked_counts_and_is_seedable():
    """Zeros take the first n0 draws, ones the next n1 (documented order)."""
    x = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    out = BooleanNoise(0.3, 0.6, generator=torch.Generator().manual_seed(5))(x)
    draws = torch.rand(5, generator=torch.Generator().manual_seed(5))
    expected = torch.tensor(
        [
            0.6 + draws[2] * 0.4,
            draws[0] * 0.3,
            draws[1] * 0.3,
            0.6 + draws[3] * 0.4,
            0.6 + draws[4] * 0.4,
        ]
    )
    assert torch.allclose(out, expected)


def test_boolean_noise_on_a_dataset_sample_leaves_the_dataset_intact():
    data = XOR(data_transform=BooleanNoise(0.1, 0.9), repeats=2)
    noisy, _ = data[1]
    assert noisy.shape == (1, 4)
    assert (noisy[0, :2] >= 0.9).all() and (noisy[0, 2:] < 0.1).all()
    assert data.data[1].tolist() == [1, 1, 0, 0]


def test_boolean_noise_rejects_bad_thresholds():
    with pytest.raises(
        ValueError, match=r"BooleanNoise: low_thresh must lie in \[0, 1\], got -0.1"
    ):
        BooleanNoise(-0.1, 0.5)
    with pytest.raises(ValueError, match=r"BooleanNoise: high_thresh must lie in \[0, 1\], got 2"):
        BooleanNoise(0.1, 2)


def test_intensity_multiplies():
    assert Intensity(40.0)(torch.tensor([0.0, 1.0, 0.5])).tolist() == [0.0, 40.0, 20.0]
    with pytest.raises(TypeError, match="Intensity: intensity must be a number"):
        Intensity("high")


# ----------------------------------------------------------------------------- NeuromorphicDataset


def test_neuromorphic_dataset_bins_events_into_a_fresh_tensor(tmp_path):
    first = write_events(
        tmp_path / "a.bin",
        [(1, 2, 1, 0.0), (1, 2, 1, 0.4), (3, 0, 0, 5.0), (0, 0, 1, 20.0), (9, 0, 1, 1.0)],
    )
    second = write_events(tmp_path / "b.bin", [(0, 1, 0, 3.0)])
    data = NeuromorphicDataset([(first, 4), (str(second), 2)], 2.0, 10.0, 3, 4)
    assert len(data) == 2 and data.n_time_bins == 5 and data.labels == [4, 2]
    sample, label = data[0]
    assert sample.shape == (2, 3, 4, 5) and sample.dtype == torch.float32 and label == 4
    expected = torch.zeros(2, 3, 4, 5)
    expected[1, 2, 1, 0] = 0.5  # t = 0 and 0.4 ms: one bin, set once to 1 / Δ
    expected[0, 0, 3, 2] = 0.5  # t = 5 ms -> 2.5 -> bin 2 (ties to even)
    # t = 20 ms is beyond 5 bins, x = 9 beyond the width: dropped
    assert torch.equal(sample, expected)

    # B13: every item is a new tensor; nothing accumulates across items
    again, _ = data[0]
    assert again is not sample and torch.equal(again, expected)
    other, label = data[1]
    assert label == 2 and other.nonzero().tolist() == [[0, 1, 0, 2]]  # t = 3 -> 1.5 -> 2
    sample.fill_(9)
    assert torch.equal(data[0][0], expected)


def test_neuromorphic_dataset_applies_transforms_and_batches(tmp_path):
    paths = [write_events(tmp_path / f"{k}.bin", [(k, 0, 1, float(k))]) for k in range(4)]
    data = NeuromorphicDataset(
        [(p, k % 2) for k, p in enumerate(paths)],
        1,
        4,
        2,
        5,
        im_transform=lambda s: s.sum(-1),
        lbl_transform=lambda y: y * 10,
    )
    sample, label = data[3]
    assert sample.shape == (2, 2, 5) and sample[1, 0, 3] == 1 and sample.sum() == 1
    assert label == 10
    batch, labels = next(iter(DataLoader(data, batch_size=4)))
    assert batch.shape == (4, 2, 2, 5) and labels.tolist() == [0, 10, 0, 10]


def test_neuromorphic_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(
        ValueError, match=r"NeuromorphicDataset: data must hold \(path, label\) pairs"
    ):
        NeuromorphicDataset(["a.bin"], 1, 10, 34, 34)
    with pytest.raises(ValueError, match=r"NeuromorphicDataset: labels must be ints, got 'x'"):
        NeuromorphicDataset([("a.bin", "x")], 1, 10, 34, 34)
    with pytest.raises(
        ValueError, match=r"NeuromorphicDataset: sampling_time must be > 0.0 \(ms\), got 0.0"
    ):
        NeuromorphicDataset([], 0, 10, 34, 34)
    with pytest.raises(ValueError, match=r"NeuromorphicDataset: height must be an int >= 1"):
        NeuromorphicDataset([], 1, 10, 0, 34)
    data = NeuromorphicDataset([(tmp_path / "missing.bin", 0)], 1, 10, 34, 34)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        data[0]


# ----------------------------------------------------------------------------- loaders


def test_nmnist_loader_uses_one_sorted_class_map_for_both_splits(tmp_path):
    make_tree(
        tmp_path,
        {"Train/b": 2, "Train/a": 3, "Train/c": 1, "Test/c": 2, "Test/b": 1, "Test/d": 1},
    )
    # B14: nested folders are not classes, non-.bin and hidden files are ignored
    write_events(tmp_path / "Train/a/nested/zzz.bin", [(0, 0, 0, 0.0)])
    (tmp_path / "Train/a/notes.txt").write_text("not an event file")
    write_events(tmp_path / "Train/a/.hidden.bin", [(0, 0, 0, 0.0)])
    train, test = nmnist_train_test(tmp_path, 1, 10, 6, 6)
    assert train.classes == test.classes == ["a", "b", "c", "d"]
    assert train.labels == [0, 0, 0, 1, 1, 2]
    assert test.labels == [1, 2, 2, 3]  # 'b' is 1 in both splits although Test has no 'a'
    assert [Path(p).relative_to(tmp_path).as_posix() for p, _ in test.samples] == [
        "Test/b/000.bin",
        "Test/c/000.bin",
        "Test/c/001.bin",
        "Test/d/000.bin",
    ]
    sample, label = train[4]  # Train/b/001.bin: one event at x = y = 1, t = 2 ms
    assert sample.shape == (2, 6, 6, 10) and label == 1
    assert sample.nonzero().tolist() == [[1, 1, 1, 2]]


def test_nmnist_loader_defaults_and_keywords(tmp_path):
    make_tree(tmp_path, {"Train/0": 1, "Test/0": 1})
    train, test = nmnist_train_test(root=tmp_path)
    assert train[0][0].shape == (2, 34, 34, 300)
    train, _ = nmnist_train_test(
        tmp_path, sampling_time=2, sample_length=20, height=8, width=9, im_transform=lambda s: s * 2
    )
    assert train[0][0].shape == (2, 8, 9, 10) and train[0][0].max() == 1.0  # 2 · (1 / 2)


def test_nmnist_loader_explains_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nmnist_train_test: .* root/Train/<label>/\*.bin"):
        nmnist_train_test(tmp_path / "nowhere")
    make_tree(tmp_path, {"Train/0": 1})
    with pytest.raises(
        FileNotFoundError, match=r"Test does not exist; expected the N-MNIST layout"
    ):
        nmnist_train_test(tmp_path)
    (tmp_path / "Test" / "0").mkdir(parents=True)
    with pytest.raises(
        ValueError, match=r"no .bin files in class folders of .*Test; expected the N-MNIST"
    ):
        nmnist_train_test(tmp_path)


def test_ncars_loader_reads_lower_case_splits(tmp_path):
    make_tree(
        tmp_path, {"train/cars": 2, "train/background": 3, "test/cars": 1, "test/background": 1}
    )
    train, test = ncars_train_test(tmp_path)
    assert train.classes == ["background", "cars"]
    assert train.labels == [0, 0, 0, 1, 1] and test.labels == [0, 1]
    assert train[0][0].shape == (2, 100, 120, 100)
    with pytest.raises(FileNotFoundError, match=r"N-CARS layout root/train/<class>/\*.bin"):
        ncars_train_test(tmp_path / "train")


def test_ncaltech_split_sizes_order_and_seed_stability(tmp_path):
    counts = {"airplanes": 10, "BACKGROUND_Google": 5, "cup": 2, "ant": 1}
    make_tree(tmp_path, counts)
    train, test = ncaltech_train_test(tmp_path, 1, 5, 10, 10)
    classes = sorted(counts)  # plain string order: upper case first
    assert (
        train.classes == test.classes == classes == ["BACKGROUND_Google", "airplanes", "ant", "cup"]
    )
    # per class floor(0.8 n) for training: 10 -> 8, 5 -> 4, 2 -> 1, 1 -> 0
    expected_train = {"airplanes": 8, "BACKGROUND_Google": 4, "cup": 1, "ant": 0}
    for name, n in counts.items():
        k = classes.index(name)
        assert train.labels.count(k) == expected_train[name]
        assert test.labels.count(k) == n - expected_train[name]
    every = sorted(p for p, _ in train.samples + test.samples)
    assert every == sorted(str(p) for p in tmp_path.rglob("*.bin"))  # disjoint, complete
    for path, label in train.samples + test.samples:
        assert Path(path).parent.name == classes[label]

    again_train, again_test = ncaltech_train_test(tmp_path, 1, 5, 10, 10)
    assert again_train.samples == train.samples and again_test.samples == test.samples
    splits = {
        tuple(p for p, _ in ncaltech_train_test(tmp_path, 1, 5, 10, 10, seed=s)[1].samples)
        for s in range(6)
    }
    assert len(splits) > 1  # the seed matters
    half, _ = ncaltech_train_test(tmp_path, train_size=0.5)
    assert len(half) == 5 + 2 + 1 + 0
    with pytest.raises(
        ValueError, match=r"ncaltech_train_test: train_size must lie in \(0, 1\), got 1.5"
    ):
        ncaltech_train_test(tmp_path, train_size=1.5)


def test_ncaltech_explains_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"N-Caltech101 layout root/<class>/\*.bin"):
        ncaltech_train_test(tmp_path / "missing")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(
        ValueError, match=r"no .bin files in class folders of .*N-Caltech101 layout"
    ):
        ncaltech_train_test(tmp_path)


def test_train_test_returns_labelled_path_lists(tmp_path):
    make_tree(tmp_path, {"x": 5, "y": 5})
    (tmp_path / "y" / "extra.txt").write_text("any file counts here")
    train, test = train_test(tmp_path)
    assert len(train) == 4 + 4 and len(test) == 1 + 2
    assert {label for _, label in train} == {0, 1}
    assert all(Path(p).parent.name == "xy"[label] for p, label in train + test)
    assert train == train_test(tmp_path, 0.8, 42)[0]
    with pytest.raises(
        ValueError, match=r"train_test: no class folders with files in .*; expected"
    ):
        train_test(tmp_path / "x")


# ----------------------------------------------------------------------------- synthetic N-MNIST


def test_synthetic_nmnist_writes_a_readable_nmnist_tree_quickly(tmp_path):
    start = time.perf_counter()
    root = synthetic_nmnist(tmp_path / "data")
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert root == tmp_path / "data"
    assert sorted(p.name for p in root.iterdir()) == ["Test", "Train"]
    assert sorted(p.name for p in (root / "Train").iterdir()) == [str(k) for k in range(10)]
    assert sorted(p.name for p in (root / "Train" / "3").iterdir()) == [
        "00001.bin",
        "00002.bin",
        "00003.bin",
        "00004.bin",
    ]
    assert len(list((root / "Test").rglob("*.bin"))) == 20
    for path in root.rglob("*.bin"):
        raw = np.frombuffer(path.read_bytes(), dtype=np.uint8).reshape(-1, 5).astype(np.int64)
        assert len(raw) > 100
        assert raw[:, 0].max() < 34 and raw[:, 1].max() < 34
        t_us = ((raw[:, 2] & 127) << 16) | (raw[:, 3] << 8) | raw[:, 4]
        assert t_us.max() < 300_000 and np.all(np.diff(t_us) >= 0)
        polarity = raw[:, 2] >> 7
        assert 0.2 < polarity.mean() < 0.8  # ON and OFF events
    train, test = nmnist_train_test(root)
    assert len(train) == 40 and len(test) == 20 and train.classes == [str(k) for k in range(10)]


def test_synthetic_classes_are_separable(tmp_path):
    """A nearest-class-mean classifier on per-pixel event counts beats chance (1/10) clearly."""
    root = synthetic_nmnist(tmp_path, n_train_per_class=6, n_test_per_class=4, duration_ms=150)
    train, test = nmnist_train_test(root, 5, 150)

    def features(data):
        # counts per (polarity, pixel), summed in NumPy (small tensors: no thread-pool overhead)
        x = np.stack([data[i][0].numpy().sum(-1).ravel() for i in range(len(data))])
        return torch.from_numpy(x), torch.tensor(data.labels)

    x_train, y_train = features(train)
    x_test, y_test = features(test)
    means = torch.stack([x_train[y_train == c].mean(0) for c in range(10)])
    accuracy = (torch.cdist(x_test, means).argmin(1) == y_test).float().mean().item()
    assert accuracy >= 0.4


def test_synthetic_nmnist_is_deterministic_and_refuses_foreign_files(tmp_path):
    a = synthetic_nmnist(
        tmp_path / "a", 2, 1, classes=["left", "right"], height=20, width=24, seed=3
    )
    b = synthetic_nmnist(
        tmp_path / "b", 2, 1, classes=["left", "right"], height=20, width=24, seed=3
    )
    files = sorted(p.relative_to(a) for p in a.rglob("*.bin"))
    assert len(files) == 6
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # rerunning with the same arguments finds identical files: no error, nothing changes
    synthetic_nmnist(tmp_path / "a", 2, 1, classes=["left", "right"], height=20, width=24, seed=3)
    # a different seed would write different bytes: refused, nothing written
    before = {f: (a / f).read_bytes() for f in files}
    with pytest.raises(FileExistsError, match=r"synthetic_nmnist: 6 existing file\(s\) differ"):
        synthetic_nmnist(
            tmp_path / "a", 2, 1, classes=["left", "right"], height=20, width=24, seed=4
        )
    assert {f: (a / f).read_bytes() for f in files} == before
    # a file that is not ours
    (a / "Train" / "left" / "00001.bin").write_bytes(b"\x00" * 5)
    with pytest.raises(FileExistsError, match=r"1 existing file\(s\) differ.*00001.bin"):
        synthetic_nmnist(
            tmp_path / "a", 2, 1, classes=["left", "right"], height=20, width=24, seed=3
        )
    assert (a / "Train" / "left" / "00001.bin").read_bytes() == b"\x00" * 5
    synthetic_nmnist(
        tmp_path / "a", 2, 1, classes=["left", "right"], height=20, width=24, seed=3, overwrite=True
    )
    assert (a / "Train" / "left" / "00001.bin").read_bytes() == before[Path("Train/left/00001.bin")]
    # the two classes differ
    assert (a / "Train/left/00001.bin").read_bytes() != (a / "Train/right/00001.bin").read_bytes()


def test_synthetic_nmnist_validates_its_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"synthetic_nmnist: height must be an int in \[8, 256\]"):
        synthetic_nmnist(tmp_path, height=300)
    with pytest.raises(
        ValueError, match=r"synthetic_nmnist: duration_ms must lie in \(0, 8388\] ms"
    ):
        synthetic_nmnist(tmp_path, duration_ms=9000)
    with pytest.raises(
        ValueError, match=r"synthetic_nmnist: n_train_per_class must be an int >= 0"
    ):
        synthetic_nmnist(tmp_path, n_train_per_class=-1)
    with pytest.raises(
        ValueError, match=r"synthetic_nmnist: class names must be plain folder names"
    ):
        synthetic_nmnist(tmp_path, classes=["../up"])
    assert not any(tmp_path.iterdir())
