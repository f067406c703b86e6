"""Datasets (boolean toy problems, neuromorphic event data) and sample transforms.

Everything here is a plain :class:`torch.utils.data.Dataset` that works with
:class:`torch.utils.data.DataLoader` batching; listing and splitting use plain Python and NumPy (no
pandas, scikit-learn or torchvision).

**Boolean problems.** :class:`XOR`, :class:`AND`, :class:`OR` hold the four input pairs
``[[0, 0], [1, 0], [0, 1], [1, 1]]``; ``repeats`` repeats each input column, so a sample is a
float32 ``(1, 2 · repeats)`` tensor ``[a, …, a, b, …, b]`` and ``len`` is always 4 (PySNN 0.1.1's
docstring promised 4 · repeats samples; its code, and the examples, repeat the features: B15).

**Event data.** :class:`NeuromorphicDataset` reads one N-MNIST-format file (5-byte events, see
:func:`pysnn.file_io.read_2d_spikes`) per sample and returns a fresh float32 tensor of shape
``(2, height, width, n_time_bins)`` (polarity, y, x, time bin) with values 0 or
``1 / sampling_time`` (PySNN 0.1.1 reused one tensor, so events piled up across samples: B13).
The loaders :func:`nmnist_train_test`, :func:`ncaltech_train_test` and :func:`ncars_train_test`
list class folders one level deep, sort the class names and use **one** class → index map for both
splits (PySNN 0.1.1 used ``os.listdir`` order per split and walked sub-folders recursively: B14).
The label of a sample is the index of its folder name in ``dataset.classes``.

:func:`synthetic_nmnist` writes a small N-MNIST-layout folder of genuine event files for offline
examples and tests.
"""

import math
import os
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pysnn.encoding import _n_steps
from pysnn.file_io import Events, _atomic_write, _pack_2d, read_2d_spikes

__all__ = [
    "Boolean",
    "XOR",
    "AND",
    "OR",
    "DiscretizeFloat",
    "BooleanNoise",
    "Intensity",
    "NeuromorphicDataset",
    "train_test",
    "nmnist_train_test",
    "ncaltech_train_test",
    "ncars_train_test",
    "synthetic_nmnist",
]

PathType = Union[str, os.PathLike]
Sample = Tuple[str, int]
Transform = Optional[Callable[[Any], Any]]


# ----------------------------------------------------------------------------- boolean data


class Boolean(Dataset):
    """The four input pairs of a two-input boolean function (subclasses set the labels).

    Rows are ``[0, 0], [1, 0], [0, 1], [1, 1]``; each column is repeated ``repeats`` times, so
    ``data`` has shape ``(4, 2 · repeats)`` (``repeats=3``: ``[a, a, a, b, b, b]``). Item ``i`` is
    ``(sample, label)``: ``sample`` is a float32 copy of row ``i`` of shape ``(1, 2 · repeats)``,
    passed through ``data_transform`` and then ``data_encoder``; ``label`` is an int64 tensor of
    shape ``(1,)`` passed through ``lbl_transform``.

    :param data_encoder: callable applied last to each sample, e.g.
        :class:`pysnn.encoding.PoissonEncoder` (then the sample becomes ``(1, 2 · repeats, T)``
        bool spikes).
    :param data_transform: callable applied to each sample before the encoder, e.g.
        :class:`Intensity`.
    :param lbl_transform: callable applied to each label.
    :param repeats: how many times each input column is repeated (int >= 1).
    :raises ValueError: ``repeats`` is not an int >= 1.
    """

    #: ``(4, 1)`` int64 labels; ``None`` in the base class.
    labels: Optional[Tensor] = None

    def __init__(
        self,
        data_encoder: Transform = None,
        data_transform: Transform = None,
        lbl_transform: Transform = None,
        repeats: int = 1,
    ) -> None:
        owner = type(self).__name__
        if isinstance(repeats, bool) or not isinstance(repeats, Integral) or repeats < 1:
            raise ValueError(f"{owner}: repeats must be an int >= 1, got {repeats!r}")
        self.data_encoder = data_encoder
        self.data_transform = data_transform
        self.lbl_transform = lbl_transform
        self.repeats = int(repeats)
        base = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        self.data = base.repeat_interleave(self.repeats, dim=1)

    def __len__(self) -> int:
        """Always 4."""
        return 4

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        """``(sample, label)`` of row ``index`` (see the class docs)."""
        if self.labels is None:
            raise NotImplementedError(
                f"{type(self).__name__}: no labels; use XOR, AND or OR, or set labels"
            )
        sample = self.data[index].clone().view(1, -1)
        label = self.labels[index].clone()
        if self.data_transform is not None:
            sample = self.data_transform(sample)
        if self.data_encoder is not None:
            sample = self.data_encoder(sample)
        if self.lbl_transform is not None:
            label = self.lbl_transform(label)
        return sample, label


class XOR(Boolean):
    """Exclusive or: labels ``[[0], [1], [1], [0]]`` (int64). Parameters as :class:`Boolean`."""

    labels = torch.tensor([[0], [1], [1], [0]], dtype=torch.int64)


class AND(Boolean):
    """And: labels ``[[0], [0], [0], [1]]`` (int64). Parameters as :class:`Boolean`."""

    labels = torch.tensor([[0], [0], [0], [1]], dtype=torch.int64)


class OR(Boolean):
    """Or: labels ``[[0], [1], [1], [1]]`` (int64). Parameters as :class:`Boolean`."""

    labels = torch.tensor([[0], [1], [1], [1]], dtype=torch.int64)


# ----------------------------------------------------------------------------- transforms


class DiscretizeFloat:
    """Round to the nearest integer, as a float (ties to even, like :func:`round`).

    PySNN 0.1.1 truncated (−1.7 → −1); this rounds (−1.7 → −2; B17). Tensors are rounded
    elementwise into a new floating tensor (integer tensors become float32); numbers give a float.
    """

    def __call__(self, x: Union[Tensor, float]) -> Union[Tensor, float]:
        """:param x: tensor or number. :returns: the rounded value(s) as float."""
        if isinstance(x, Tensor):
            if x.is_complex():
                raise TypeError(f"DiscretizeFloat: x must be a real tensor, got {x.dtype}")
            return torch.round(x if x.is_floating_point() else x.float())
        if isinstance(x, bool) or not isinstance(x, Real):
            raise TypeError(
                f"DiscretizeFloat: x must be a tensor or a real number, got {type(x).__name__}"
            )
        if not math.isfinite(float(x)):
            raise ValueError(f"DiscretizeFloat: x must be finite to round to an integer, got {x!r}")
        return float(round(x))

    def __repr__(self) -> str:
        return "DiscretizeFloat()"


class BooleanNoise:
    """Replace exact 0s by uniform noise in ``[0, low_thresh)`` and 1s by ``[high_thresh, 1)``.

    Other values are kept. The input is not modified (PySNN 0.1.1 wrote into the dataset through a
    view, and failed when a sample held both 0s and 1s: B16); only as many random numbers are drawn
    as there are 0s (first) and 1s (then), in row-major order.

    :param low_thresh: upper end of the noise that replaces 0, in [0, 1].
    :param high_thresh: lower end of the noise that replaces 1, in [0, 1].
    :param generator: keyword-only; :class:`torch.Generator` to draw from (``None``: global).
    :raises ValueError: a threshold outside [0, 1].
    """

    def __init__(
        self,
        low_thresh: float,
        high_thresh: float,
        *,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        for name, value in (("low_thresh", low_thresh), ("high_thresh", high_thresh)):
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= 1:
                raise ValueError(f"BooleanNoise: {name} must lie in [0, 1], got {value!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"BooleanNoise: generator must be a torch.Generator or None, "
                f"got {type(generator).__name__}"
            )
        self.low_thresh = float(low_thresh)
        self.high_thresh = float(high_thresh)
        self.generator = generator

    def __call__(self, x: Tensor) -> Tensor:
        """:param x: tensor of 0s and 1s (any shape). :returns: a noisy floating copy."""
        if not isinstance(x, Tensor):
            raise TypeError(f"BooleanNoise: x must be a torch.Tensor, got {type(x).__name__}")
        if x.is_complex():
            raise TypeError(f"BooleanNoise: x must be a real tensor, got {x.dtype}")
        out = x.clone() if x.is_floating_point() else x.float()
        zeros = out == 0
        ones = out == 1
        kwargs = dict(generator=self.generator, device=out.device, dtype=out.dtype)
        n_zeros, n_ones = int(zeros.sum()), int(ones.sum())
        noise_low = torch.rand(n_zeros, **kwargs) * self.low_thresh
        noise_high = self.high_thresh + torch.rand(n_ones, **kwargs) * (1.0 - self.high_thresh)
        out[zeros] = noise_low
        out[ones] = noise_high
        return out

    def __repr__(self) -> str:
        return f"BooleanNoise(low_thresh={self.low_thresh:g}, high_thresh={self.high_thresh:g})"


class Intensity:
    """Multiply samples by a constant, e.g. 0/1 inputs → 0/``intensity`` Hz rates.

    :param intensity: the factor (e.g. a firing rate in Hz for
        :class:`~pysnn.encoding.PoissonEncoder`).
    """

    def __init__(self, intensity: float) -> None:
        if isinstance(intensity, bool) or not isinstance(intensity, (Real, Tensor)):
            raise TypeError(
                f"Intensity: intensity must be a number, got {type(intensity).__name__}"
            )
        if isinstance(intensity, Tensor):
            finite = intensity.device.type != "cpu" or bool(torch.isfinite(intensity).all())
        else:
            finite = math.isfinite(float(intensity))
        if not finite:
            raise ValueError(f"Intensity: intensity must be finite, got {intensity!r}")
        self.intensity = intensity

    def __call__(self, x: Tensor) -> Tensor:
        """:param x: sample tensor (or number). :returns: ``x * intensity`` (a new tensor)."""
        if not isinstance(x, Tensor) and (isinstance(x, bool) or not isinstance(x, Real)):
            # e.g. a str or list would be repeated by ``*``, silently: refuse it.
            raise TypeError(f"Intensity: x must be a tensor or a number, got {type(x).__name__}")
        return x * self.intensity

    def __repr__(self) -> str:
        return f"Intensity({self.intensity!r})"


# ----------------------------------------------------------------------------- event data


def _pairs(data: Any, owner: str) -> List[Sample]:
    """``(path, label)`` pairs from a list of pairs or a table with ``sample``/``label`` columns."""
    if hasattr(data, "columns") and "sample" in data.columns and "label" in data.columns:
        data = zip(list(data["sample"]), list(data["label"]))
    samples = []
    for item in data:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{owner}: data must hold (path, label) pairs, got {item!r}")
        path, label = item
        if isinstance(label, Tensor):
            label = label.item()
        if isinstance(label, bool) or not isinstance(label, Integral):
            raise ValueError(f"{owner}: labels must be ints, got {label!r} for {path}")
        samples.append((os.fspath(path), int(label)))
    return samples


class NeuromorphicDataset(Dataset):
    """Event files as dense spike tensors: one N-MNIST-format file per sample.

    Item ``i`` reads file ``i`` with :func:`pysnn.file_io.read_2d_spikes` and bins it into a
    **fresh** ``torch.zeros(2, height, width, n_time_bins)`` float32 tensor with
    :meth:`pysnn.file_io.Events.to_spike_tensor`: entry ``[p, y, x, round(t / sampling_time)]`` is
    ``1 / sampling_time`` when at least one event falls there. Events later than about
    ``sample_length`` ms, outside the image, or with a polarity other than 0/1 are dropped. Then
    ``im_transform`` is applied to the sample and ``lbl_transform`` to the label (an int).

    :param data: ``(path, label)`` pairs (``label`` an int), e.g. from :func:`train_test`; a
        table with ``sample`` and ``label`` columns (PySNN's DataFrame) is accepted too.
    :param sampling_time: time bin width in ms (> 0).
    :param sample_length: length of every sample in ms (> 0);
        ``n_time_bins = sample_length / sampling_time`` (rounded down, float-robust).
    :param height: image height H in pixels (y < H).
    :param width: image width W in pixels (x < W).
    :param im_transform: callable applied to each ``(2, H, W, n_time_bins)`` sample.
    :param lbl_transform: callable applied to each label.
    :param classes: keyword-only; class names, ``classes[label]`` being the name of ``label``
        (the loaders set it; default ``[]``).
    :raises ValueError: bad pairs, sizes or times.
    """

    def __init__(
        self,
        data: Iterable[Sample],
        sampling_time: float,
        sample_length: float,
        height: int,
        width: int,
        im_transform: Transform = None,
        lbl_transform: Transform = None,
        *,
        classes: Optional[Sequence[str]] = None,
    ) -> None:
        owner = "NeuromorphicDataset"
        self.samples = _pairs(data, owner)
        self.n_time_bins = _n_steps(
            sample_length, sampling_time, owner, names=("sample_length", "sampling_time")
        )
        for name, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{owner}: {name} must be an int >= 1 (pixels), got {value!r}")
        self.sampling_time = float(sampling_time)
        self.sample_length = float(sample_length)
        self.height = int(height)
        self.width = int(width)
        self.im_transform = im_transform
        self.lbl_transform = lbl_transform
        self.classes = list(classes) if classes is not None else []

    @property
    def labels(self) -> List[int]:
        """The label (class index) of every sample, in order."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        """Number of samples (files)."""
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        """``(sample, label)``: a new ``(2, H, W, n_time_bins)`` float32 tensor and its label."""
        path, label = self.samples[index]
        # A fresh zero tensor per item (B13). NumPy's calloc-backed zeros avoid torch's parallel
        # fill, which costs milliseconds per sample on a busy machine.
        shape = (2, self.height, self.width, self.n_time_bins)
        sample = torch.from_numpy(np.zeros(shape, dtype=np.float32))
        read_2d_spikes(path).to_spike_tensor(sample, self.sampling_time)
        if self.im_transform is not None:
            sample = self.im_transform(sample)
        if self.lbl_transform is not None:
            label = self.lbl_transform(label)
        return sample, label

    def __repr__(self) -> str:
        return (
            f"NeuromorphicDataset({len(self)} samples, {len(self.classes)} classes, "
            f"shape (2, {self.height}, {self.width}, {self.n_time_bins}), "
            f"sampling_time={self.sampling_time:g} ms)"
        )


def _class_files(
    directory: PathType, suffix: Optional[str], owner: str, layout: str
) -> Dict[str, List[str]]:
    """Class folder name → sorted file paths, one level deep; hidden entries skipped.

    Only folders with at least one matching file count as classes.
    """
    path = os.fspath(directory)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{owner}: {path} does not exist; expected {layout}")
    if not os.path.isdir(path):
        raise ValueError(f"{owner}: {path} is not a directory; expected {layout}")
    content = {}
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        files = sorted(
            f.path
            for f in os.scandir(entry.path)
            if f.is_file()
            and not f.name.startswith(".")
            and (suffix is None or f.name.lower().endswith(suffix))
        )
        if files:
            content[entry.name] = files
    return content


def _labelled(content: Dict[str, List[str]], index: Dict[str, int]) -> List[Sample]:
    return [(path, index[name]) for name in sorted(content) for path in content[name]]


def _split(
    content: Dict[str, List[str]],
    index: Dict[str, int],
    train_size: float,
    seed: int,
    owner: str,
) -> Tuple[List[Sample], List[Sample]]:
    """Stratified seeded split: per class ``floor(train_size · n)`` files for training."""
    if isinstance(train_size, bool) or not isinstance(train_size, Real) or not 0 < train_size < 1:
        raise ValueError(f"{owner}: train_size must lie in (0, 1), got {train_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"{owner}: seed must be an int >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    train, test = [], []
    for name in sorted(content):
        files = content[name]
        n_train = int(math.floor(float(train_size) * len(files) + 1e-9))
        order = rng.permutation(len(files))
        chosen = set(order[:n_train].tolist())
        for k, path in enumerate(files):
            (train if k in chosen else test).append((path, index[name]))
    return train, test


def train_test(
    root_dir: PathType, train_size: float = 0.8, seed: int = 42
) -> Tuple[List[Sample], List[Sample]]:
    """List ``root_dir/<class>/<file>`` and split it into training and test samples.

    Class names are the sub-folder names (one level, hidden entries skipped, folders without files
    ignored), sorted; the label of a file is the index of its class name. The split is stratified
    and seeded: each class contributes ``floor(train_size · n)`` randomly chosen files to the
    training set and the rest to the test set (a NumPy ``default_rng(seed)`` permutation per class,
    classes in sorted order). Both lists are ordered by class, then file name.

    :param root_dir: folder holding one sub-folder per class.
    :param train_size: fraction of each class used for training, in (0, 1).
    :param seed: seed of the split (int >= 0); the same seed gives the same split.
    :returns: ``(train, test)``, lists of ``(path, label)`` pairs.
    :raises FileNotFoundError: ``root_dir`` does not exist.
    :raises ValueError: no class folder with files, or a bad ``train_size``/``seed``.
    """
    owner = "train_test"
    layout = "root_dir/<class>/<files>"
    content = _class_files(root_dir, None, owner, layout)
    if not content:
        raise ValueError(f"{owner}: no class folders with files in {root_dir}; expected {layout}")
    index = {name: k for k, name in enumerate(sorted(content))}
    return _split(content, index, train_size, seed, owner)


def _two_split_loader(
    root: PathType,
    splits: Tuple[str, str],
    owner: str,
    layout: str,
    args: Tuple[float, float, int, int, Transform, Transform],
) -> Tuple[NeuromorphicDataset, NeuromorphicDataset]:
    """Datasets for ``root/<train split>/<class>/*.bin`` and ``root/<test split>/...``."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{owner}: {root} is not a directory; expected {layout}")
    contents = [_class_files(os.path.join(root, split), ".bin", owner, layout) for split in splits]
    classes = sorted(set(contents[0]) | set(contents[1]))
    for split, content in zip(splits, contents):
        if not content:
            raise ValueError(
                f"{owner}: no .bin files in class folders of {os.path.join(root, split)}; "
                f"expected {layout}"
            )
    index = {name: k for k, name in enumerate(classes)}
    return tuple(
        NeuromorphicDataset(_labelled(content, index), *args, classes=classes)
        for content in contents
    )


def nmnist_train_test(
    root: PathType,
    sampling_time: float = 1,
    sample_length: float = 300,
    height: int = 34,
    width: int = 34,
    im_transform: Transform = None,
    lbl_transform: Transform = None,
) -> Tuple[NeuromorphicDataset, NeuromorphicDataset]:
    """N-MNIST training and test sets from ``root/Train/<label>/*.bin`` and ``root/Test/...``.

    Class names are the sorted union of the label folders of both splits, shared by both datasets
    (``dataset.classes``); for the digit folders ``0``–``9`` the label equals the digit.

    :param root: the N-MNIST folder holding ``Train`` and ``Test``.
    :param sampling_time: time bin width in ms.
    :param sample_length: ms of each recording used (N-MNIST samples last about 300 ms).
    :param height: image height in pixels (34 for N-MNIST).
    :param width: image width in pixels (34 for N-MNIST).
    :param im_transform: callable applied to each sample tensor.
    :param lbl_transform: callable applied to each label.
    :returns: ``(train_set, test_set)``, :class:`NeuromorphicDataset` objects.
    :raises FileNotFoundError: ``root``, ``root/Train`` or ``root/Test`` is missing.
    :raises ValueError: a split without ``.bin`` files in class folders.
    """
    args = (sampling_time, sample_length, height, width, im_transform, lbl_transform)
    layout = "the N-MNIST layout root/Train/<label>/*.bin and root/Test/<label>/*.bin"
    return _two_split_loader(root, ("Train", "Test"), "nmnist_train_test", layout, args)


def ncars_train_test(
    root: PathType,
    sampling_time: float = 1,
    sample_length: float = 100,
    height: int = 100,
    width: int = 120,
    im_transform: Transform = None,
    lbl_transform: Transform = None,
) -> Tuple[NeuromorphicDataset, NeuromorphicDataset]:
    """N-CARS training and test sets from ``root/train/<class>/*.bin`` and ``root/test/...``.

    The official N-CARS files are Prophesee ``.dat`` files with a header; convert them to the
    5-byte format of :func:`pysnn.file_io.encode_2d_spikes` (``.bin``) first.

    :param root: the folder holding ``train`` and ``test``.
    :param sampling_time: time bin width in ms.
    :param sample_length: ms of each recording used (N-CARS samples last 100 ms).
    :param height: image height in pixels.
    :param width: image width in pixels.
    :param im_transform: callable applied to each sample tensor.
    :param lbl_transform: callable applied to each label.
    :returns: ``(train_set, test_set)`` with shared, sorted ``classes``.
    :raises FileNotFoundError: ``root``, ``root/train`` or ``root/test`` is missing.
    :raises ValueError: a split without ``.bin`` files in class folders.
    """
    args = (sampling_time, sample_length, height, width, im_transform, lbl_transform)
    layout = "the N-CARS layout root/train/<class>/*.bin and root/test/<class>/*.bin"
    return _two_split_loader(root, ("train", "test"), "ncars_train_test", layout, args)


def ncaltech_train_test(
    root: PathType,
    sampling_time: float = 1,
    sample_length: float = 300,
    height: int = 200,
    width: int = 300,
    im_transform: Transform = None,
    lbl_transform: Transform = None,
    *,
    train_size: float = 0.8,
    seed: int = 42,
) -> Tuple[NeuromorphicDataset, NeuromorphicDataset]:
    """N-Caltech101 split into training and test sets from ``root/<class>/*.bin``.

    ``root`` is the folder of class folders (not the one holding the annotations). The split is
    that of :func:`train_test`: stratified, ``floor(train_size · n)`` files of each class for
    training, seeded.

    :param root: the folder holding one sub-folder per class.
    :param sampling_time: time bin width in ms.
    :param sample_length: ms of each recording used (N-Caltech101 samples last about 300 ms).
    :param height: image height in pixels (≥ the largest y + 1, 180 for N-Caltech101).
    :param width: image width in pixels (≥ the largest x + 1, 240 for N-Caltech101).
    :param im_transform: callable applied to each sample tensor.
    :param lbl_transform: callable applied to each label.
    :param train_size: keyword-only; fraction of each class used for training, in (0, 1).
    :param seed: keyword-only; seed of the split (int >= 0).
    :returns: ``(train_set, test_set)`` with shared, sorted ``classes``.
    :raises FileNotFoundError: ``root`` is missing.
    :raises ValueError: no class folder with ``.bin`` files, or a bad ``train_size``/``seed``.
    """
    owner = "ncaltech_train_test"
    layout = "the N-Caltech101 layout root/<class>/*.bin"
    content = _class_files(root, ".bin", owner, layout)
    if not content:
        raise ValueError(
            f"{owner}: no .bin files in class folders of {os.fspath(root)}; expected {layout}"
        )
    classes = sorted(content)
    index = {name: k for k, name in enumerate(classes)}
    train, test = _split(content, index, train_size, seed, owner)
    args = (sampling_time, sample_length, height, width, im_transform, lbl_transform)
    return (
        NeuromorphicDataset(train, *args, classes=classes),
        NeuromorphicDataset(test, *args, classes=classes),
    )


# ----------------------------------------------------------------------------- synthetic data

# Seven-segment digits: segments a (top), b (top right), c (bottom right), d (bottom),
# e (bottom left), f (top left), g (middle).
_SEGMENTS = {
    0: "abcdef",
    1: "bc",
    2: "abdeg",
    3: "abcdg",
    4: "bcfg",
    5: "acdfg",
    6: "acdefg",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}


def _glyph(index: int, height: int, width: int) -> np.ndarray:
    """``(height, width)`` bool picture of class ``index``: a digit for 0–9, else a bar."""
    image = np.zeros((height, width), dtype=bool)
    thick = max(1, round(min(height, width) / 7))
    if index < 10:
        mid = (height - thick) // 2
        strokes = {
            "a": (slice(0, thick), slice(0, width)),
            "d": (slice(height - thick, height), slice(0, width)),
            "g": (slice(mid, mid + thick), slice(0, width)),
            "f": (slice(0, mid + thick), slice(0, thick)),
            "b": (slice(0, mid + thick), slice(width - thick, width)),
            "e": (slice(mid, height), slice(0, thick)),
            "c": (slice(mid, height), slice(width - thick, width)),
        }
        for segment in _SEGMENTS[index]:
            image[strokes[segment]] = True
        return image
    angle = math.pi * ((index - 10) * 0.618034 % 1.0)
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    distance = np.abs((yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle))
    return distance <= thick / 2 + 0.25


def _saccade_events(
    glyph: np.ndarray,
    height: int,
    width: int,
    duration_ms: float,
    rng: np.random.Generator,
) -> Events:
    """Events of ``glyph`` moved along three saccades (a triangle), like N-MNIST's camera motion.

    Each time the rounded position changes, pixels that turn on give ON (p=1) events and pixels
    that turn off give OFF (p=0) events, each kept with probability 0.9 and delayed by 0–2 ms;
    sparse uniform noise events are added.
    """
    gh, gw = glyph.shape
    amplitude = max(2.0, min(height, width) / 8) * rng.uniform(0.8, 1.2)
    corners = np.array([[0.0, 0.0], [amplitude, amplitude / 2], [0.0, amplitude], [0.0, 0.0]])
    if rng.random() < 0.5:
        corners = corners[::-1].copy()
    base_y = (height - gh) // 2 - int(round(amplitude / 2)) + int(rng.integers(-1, 2))
    base_x = (width - gw) // 2 - int(round(amplitude / 2)) + int(rng.integers(-1, 2))
    step = 0.5  # ms between position samples
    times = np.arange(0.0, duration_ms, step)
    phase = times / duration_ms * 3.0
    segment = np.minimum(phase.astype(np.int64), 2)
    fraction = (phase - segment)[:, None]
    offsets = corners[segment] + fraction * (corners[segment + 1] - corners[segment])
    positions = np.round(offsets).astype(np.int64) + np.array([base_y, base_x])
    changed = np.flatnonzero(np.any(positions[1:] != positions[:-1], axis=1)) + 1

    def frame(position: np.ndarray) -> np.ndarray:
        canvas = np.zeros((height + 2 * gh, width + 2 * gw), dtype=bool)
        y0, x0 = position[0] + gh, position[1] + gw
        canvas[y0 : y0 + gh, x0 : x0 + gw] = glyph
        return canvas[gh : gh + height, gw : gw + width]

    xs, ys, ps, ts = [], [], [], []
    for k in changed:
        before, after = frame(positions[k - 1]), frame(positions[k])
        for polarity, mask in ((1, after & ~before), (0, before & ~after)):
            y, x = np.nonzero(mask)
            keep = rng.random(len(y)) < 0.9
            ys.append(y[keep])
            xs.append(x[keep])
            ps.append(np.full(int(keep.sum()), polarity))
            ts.append(times[k] + rng.uniform(0.0, 2.0, int(keep.sum())))
    n_noise = int(rng.poisson(height * width * duration_ms * 1e-4))
    ys.append(rng.integers(0, height, n_noise))
    xs.append(rng.integers(0, width, n_noise))
    ps.append(rng.integers(0, 2, n_noise))
    ts.append(rng.uniform(0.0, duration_ms, n_noise))
    x, y, p, t = (np.concatenate(v) for v in (xs, ys, ps, ts))
    t = np.minimum(np.round(t * 1000.0) / 1000.0, duration_ms - 0.001)
    order = np.argsort(t, kind="stable")
    return Events(x[order], y[order], p[order], t[order])


def synthetic_nmnist(
    root: PathType,
    n_train_per_class: int = 4,
    n_test_per_class: int = 2,
    classes: Union[int, Sequence[str]] = 10,
    height: int = 34,
    width: int = 34,
    duration_ms: float = 300.0,
    seed: int = 0,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a small synthetic data set in the N-MNIST layout, for offline examples and tests.

    Creates ``root/Train/<class>/NNNNN.bin`` (``n_train_per_class`` files per class, named
    ``00001.bin``, ...) and ``root/Test/<class>/NNNNN.bin`` (``n_test_per_class``), each a genuine
    5-byte-per-event file (:func:`pysnn.file_io.encode_2d_spikes`) that
    :func:`nmnist_train_test` reads. Each sample is a class glyph (a seven-segment digit for the
    first ten classes, a bar at a class-specific angle after that) moved along three saccades
    forming a triangle over ``duration_ms``, as N-MNIST's camera was: pixels that turn on emit ON
    events (p = 1), pixels that turn off OFF events (p = 0), with per-sample random position,
    saccade size and direction, dropped events, timing jitter and background noise. Classes are
    separable from the event counts per pixel. File ``i`` of a class depends only on ``seed``,
    the split, the class index and ``i``, so reruns reproduce the same bytes.

    Existing files are never silently replaced: a file identical to the one that would be written
    is left alone; a different one raises :class:`FileExistsError` (before anything is written)
    unless ``overwrite=True``. Other files under ``root`` are left untouched (and would be
    listed by :func:`nmnist_train_test`).

    :param root: output folder (created if missing).
    :param n_train_per_class: training files per class (int >= 0).
    :param n_test_per_class: test files per class (int >= 0).
    :param classes: number of classes (folders ``0``, ``1``, ...), or a sequence of class folder
        names (class ``k`` gets glyph ``k``).
    :param height: image height in pixels, in [8, 256] (y < height).
    :param width: image width in pixels, in [8, 256] (x < width).
    :param duration_ms: length of every sample in ms, in (0, 8388] (23-bit µs timestamps).
    :param seed: seed (int >= 0).
    :param overwrite: keyword-only; replace existing files that differ.
    :returns: ``root`` as a :class:`pathlib.Path`.
    :raises FileExistsError: an existing file differs and ``overwrite`` is false.
    :raises ValueError: a bad argument.
    """
    owner = "synthetic_nmnist"
    for name, value, low in (
        ("n_train_per_class", n_train_per_class, 0),
        ("n_test_per_class", n_test_per_class, 0),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, Integral) or not 8 <= value <= 256:
            raise ValueError(f"{owner}: {name} must be an int in [8, 256] (pixels), got {value!r}")
    if isinstance(classes, Integral) and not isinstance(classes, bool):
        if classes < 1:
            raise ValueError(f"{owner}: classes must be >= 1, got {classes}")
        names = [str(k) for k in range(int(classes))]
    elif isinstance(classes, (list, tuple)) and classes:
        names = [str(name) for name in classes]
    else:
        raise ValueError(f"{owner}: classes must be an int >= 1 or a non-empty list of names")
    for name in names:
        if name in ("", ".", "..") or "/" in name or os.sep in name or name.startswith("."):
            raise ValueError(f"{owner}: class names must be plain folder names, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}: class names must be unique, got {names}")
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, Real):
        raise ValueError(f"{owner}: duration_ms must be a number (ms), got {duration_ms!r}")
    if not 0 < duration_ms <= 8388:
        raise ValueError(f"{owner}: duration_ms must lie in (0, 8388] ms, got {duration_ms!r}")

    root = Path(root)
    glyph_h = max(5, int(round(height * 0.55)))
    glyph_w = max(3, int(round(width * 0.35)))
    payloads = {}
    for split_index, (split, count) in enumerate(
        (("Train", n_train_per_class), ("Test", n_test_per_class))
    ):
        for class_index, name in enumerate(names):
            glyph = _glyph(class_index, glyph_h, glyph_w)
            for i in range(int(count)):
                rng = np.random.default_rng([int(seed), split_index, class_index, i])
                events = _saccade_events(glyph, height, width, float(duration_ms), rng)
                payloads[root / split / name / f"{i + 1:05d}.bin"] = _pack_2d(events, owner)

    conflicts = []
    unchanged = set()
    for path, payload in payloads.items():
        if path.exists() or path.is_symlink():
            if path.is_file() and path.read_bytes() == payload:
                unchanged.add(path)
            elif not path.is_file():
                raise FileExistsError(f"{owner}: {path} exists and is not a regular file")
            else:
                conflicts.append(path)
    if conflicts and not overwrite:
        raise FileExistsError(
            f"{owner}: {len(conflicts)} existing file(s) differ from what would be written, "
            f"e.g. {conflicts[0]}; nothing was written (pass overwrite=True to replace them, "
            "or use another root)"
        )
    for path, payload in payloads.items():
        if path not in unchanged:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, payload, owner)
    for split in ("Train", "Test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    return root
