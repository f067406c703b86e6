"""Shared plumbing of the examples: command line, output folder, device, seeding, figures.

Every example accepts the same four options:

* ``--quick``: tiny sizes and few steps (each example then runs in a few seconds; the tests use it);
* ``--out DIR``: folder for the PNG figures (and generated data), created if needed (``./out``);
* ``--device {cpu,cuda}``: where the network runs (``cpu`` by default);
* ``--seed N``: seeds Python, NumPy and torch, so runs are repeatable on one machine.

Figures are written with matplotlib's non-interactive ``Agg`` backend; nothing is ever shown.
"""

import argparse
import os
import random
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch

__all__ = ["make_parser", "setup", "progress", "save_figure", "require_matplotlib"]


def make_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every example shares.

    :param description: what the example does (shown by ``--help``).
    :returns: the parser; examples add their own options before calling :func:`setup`.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and few steps (a smoke run of seconds)"
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the figures")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="device the network runs on"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (Python, NumPy, torch)")
    return parser


def setup(parser: argparse.ArgumentParser, argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the command line, check the device, seed everything and create the output folder.

    :param parser: from :func:`make_parser` (plus the example's own options).
    :param argv: arguments (``None``: ``sys.argv[1:]``).
    :returns: the parsed options, with ``device`` turned into a :class:`torch.device`.
    """
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was given but torch.cuda.is_available() is False")
    args.device = torch.device(args.device)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    # The figures are files: never open a window (also on machines with a display).
    os.environ["MPLBACKEND"] = "Agg"
    return args


def require_matplotlib() -> Any:
    """Import ``matplotlib.pyplot`` with the ``Agg`` backend.

    :returns: the ``matplotlib.pyplot`` module.
    :raises ImportError: matplotlib is not installed (with the command that installs it).
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "the examples save their figures with matplotlib: pip install 'pysnn[plot]'"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def progress(iterable: Iterable, description: str, total: Optional[int] = None) -> Iterable:
    """Wrap a long loop in a tqdm progress bar (on stderr); plain iteration without tqdm.

    :param iterable: the loop's iterable.
    :param description: label shown before the bar.
    :param total: number of items, when ``len(iterable)`` does not give it.
    :returns: an iterable over the same items.
    """
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=description, total=total, leave=False, dynamic_ncols=True)


def save_figure(figure: Any, out: Path, name: str) -> Path:
    """Save a matplotlib figure as ``out/name`` (PNG) and close it.

    :param figure: a :class:`matplotlib.figure.Figure`.
    :param out: output folder (exists: see :func:`setup`).
    :param name: file name, ending in ``.png``.
    :returns: the path written.
    """
    plt = require_matplotlib()
    path = Path(out) / name
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    print(f"saved {path}")
    return path
