"""Unsupervised digit recognition with STDP (Diehl & Cook 2015) on scikit-learn's 8x8 digits.

The 1797 digits of ``sklearn.datasets.load_digits`` (bundled, no download) are split once into
70 % training and 30 % test samples (stratified, fixed split seed 0). Each pixel becomes a Poisson
spike train whose rate is proportional to its value (16 → ``--rate`` Hz). The network,
:class:`pysnn.models.DiehlCook2015`, learns **without labels**: excitatory neurons with an
adaptive threshold compete through lateral inhibition, and their input weights follow pair STDP
(:class:`pysnn.learning.STDP`) with each neuron's weights renormalised to a fixed sum after
every step (``--normalize sample``: once after each presentation, as in Diehl & Cook's code).
Samples are presented in batches; each sample of a batch is an independent network state,
between presentations the state is reset (a rest period). After training, with the
thresholds frozen, each neuron is labelled with the class it answers most on the training set,
and a test digit is classified by the vote of the neurons.

It prints the accuracy on the held-out test set and the time taken, and saves the learned
receptive fields (``digits_receptive_fields.png``) and the test confusion matrix
(``digits_confusion.png``) into ``--out``.

With the defaults (400 neurons, 3 epochs in batches of 16, pixel 16 → 256 Hz, 150 ms per training
and 500 ms per test presentation) it reaches about 95 % test accuracy (93.9–95.6 % over seeds 0–2)
in 20–40 s on two CPU cores. ``--on-off`` (inverted image as 64 more inputs) did not help here:
90–93 %; nor did ``--normalize sample`` (88.7–91.7 % over seeds 0–2, hardly faster at 64 inputs).

Run: ``python examples/digits_stdp.py [--quick] [--out DIR] [--device cpu|cuda] [--seed N]``
(``--help`` lists the hyper-parameters).

Data-parallel: ``torchrun --nproc-per-node 2 examples/digits_stdp.py --distributed`` trains the
same network on 2 processes (gloo on the CPU, NCCL with ``--device cuda``): each rank presents
its half of every batch of ``--batch-size`` samples, STDP and the thresholds are synchronised
(:mod:`pysnn.distributed`), and rank 0 prints the results. Each rank draws the Poisson spikes
that one process would draw for its samples, so the run reproduces the single-process one;
``--rank-streams`` gives each rank its own stream instead (seed + rank).
"""

import argparse
import contextlib
import math
import os
import sys
import time
from typing import Iterator, Tuple

import numpy as np
import torch
from torch import Tensor

from _common import make_parser, progress, require_matplotlib, save_figure, setup
from pysnn import distributed
from pysnn.learning import STDP
from pysnn.models import DiehlCook2015, assign_labels, confusion_matrix, present, vote
from pysnn.plotting import receptive_fields

N_CLASSES = 10
SPLIT_SEED = 0  # the train/test split never changes, whatever --seed says
TEST_FRACTION = 0.3
PIXEL_MAX = 16.0  # load_digits pixels are integers 0..16


def load_split() -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The digits as ``(train_x, train_y, test_x, test_y)``; pixels scaled to [0, 1].

    :returns: float32 images ``(S, 64)`` and int64 labels ``(S,)`` for each part.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise ImportError(
            "this example reads scikit-learn's bundled digits: pip install scikit-learn "
            "(or pip install 'pysnn[examples]')"
        ) from error
    images, labels = load_digits(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )

    def tensors(x: np.ndarray, y: np.ndarray) -> Tuple[Tensor, Tensor]:
        return torch.tensor(x / PIXEL_MAX, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)

    return (*tensors(train_x, train_y), *tensors(test_x, test_y))


def to_rates(images: Tensor, rate: float, on_off: bool) -> Tensor:
    """Pixel values in [0, 1] → firing rates in Hz, ``(S, 64)`` or ``(S, 128)`` with ON/OFF.

    :param images: ``(S, 64)`` pixels in [0, 1].
    :param rate: rate of a full pixel (value 16) in Hz.
    :param on_off: append the inverted image (OFF cells: background pixels fire).
    """
    if on_off:
        images = torch.cat([images, 1.0 - images], dim=1)
    return images * rate


def batches(order: Tensor, batch_size: int, pad_from: Tensor) -> Iterator[Tuple[Tensor, int]]:
    """Split sample indices into full batches; the last one is padded from ``pad_from``.

    :returns: iterator of ``(indices (batch_size,), n_real)``.
    """
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        n_real = len(chunk)
        if n_real < batch_size:
            chunk = torch.cat([chunk, pad_from[: batch_size - n_real]])
        yield chunk, n_real


def train_epoch(model, rule, rates: Tensor, args, epoch: int) -> float:
    """Present every training sample once, in a random order, with learning.

    :returns: mean number of spikes per sample.
    """
    model.train()
    order = torch.randperm(rates.shape[0])
    total = 0.0
    n_batches = -(-len(order) // args.batch_size)
    for chunk, _ in progress(
        batches(order, args.batch_size, order), f"epoch {epoch + 1}/{args.epochs}", n_batches
    ):
        batch = rates[chunk].unsqueeze(1).to(args.device)  # (B, 1, I)
        if args.group is not None:  # this rank's part of the batch
            batch = distributed.shard(batch, args.group)
        with rank_draws(args, batch, args.time_train):
            counts = present(
                model,
                batch,
                args.time_train,
                args.dt,
                learning_rule=rule,
                after_step=model.normalize if args.normalize == "step" else None,
                generator=args.generator,
            )
        if args.normalize == "sample":  # Diehl & Cook's (and BindsNET's) schedule
            model.normalize()
        total += float(counts.sum())
    model.reset_state()  # adds the last batch's threshold changes to theta
    if args.group is not None:  # the spikes of all ranks' samples
        spikes = torch.tensor([total], device=args.device)  # NCCL reduces CUDA tensors only
        total = float(distributed.all_reduce_sum(spikes, args.group))
    return total / (n_batches * args.batch_size)


def count_spikes(model, rates: Tensor, args, description: str) -> Tensor:
    """Spike counts ``(S, N)`` of the frozen network (evaluation mode) for every sample."""
    model.eval()
    order = torch.arange(rates.shape[0])
    counts = []
    n_batches = -(-len(order) // args.batch_size)
    for chunk, n_real in progress(batches(order, args.batch_size, order), description, n_batches):
        batch = rates[chunk].unsqueeze(1).to(args.device)
        if n_real < args.batch_size:
            batch[n_real:] = 0.0  # silent padding: it affects no other sample
        if args.group is None:
            counts.append(present(model, batch, args.time_test, args.dt)[:n_real, 0].cpu())
        else:  # this rank's part of the batch, then the counts of all ranks in sample order
            part = distributed.shard(batch, args.group)
            with rank_draws(args, part, args.time_test):
                part_counts = present(
                    model, part, args.time_test, args.dt, generator=args.generator
                )
            counts.append(distributed.gather_counts(part_counts, args.group)[:n_real, 0].cpu())
    return torch.cat(counts)


def save_figures(model, matrix: Tensor, accuracy: float, args) -> None:
    """Receptive fields (one image per neuron) and the test confusion matrix, as PNG files."""
    plt = require_matplotlib()
    shape = (2, 8, 8) if args.on_off else (8, 8)
    # ON/OFF fields are two images wide: half as many columns keeps the grid square
    n_cols = math.ceil(math.sqrt(model.n_neurons / (2 if args.on_off else 1)))
    fig = receptive_fields(
        model.exc.weight,
        shape,
        n_cols=n_cols,
        title=f"receptive fields of the {model.n_neurons} neurons after STDP",
    )
    fig.set_size_inches(10, 9)  # 400 fields of 8 x 8 pixels need more than the default size
    save_figure(fig, args.out, "digits_receptive_fields.png")

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(matrix.numpy(), cmap="Blues")
    for (true, pred), value in np.ndenumerate(matrix.numpy()):
        if value:
            colour = "white" if value > matrix.max().item() / 2 else "black"
            ax.text(pred, true, str(value), ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(N_CLASSES))
    ax.set_yticks(range(N_CLASSES))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"test confusion matrix (accuracy {accuracy:.1%})")
    fig.colorbar(image, ax=ax)
    save_figure(fig, args.out, "digits_confusion.png")


def build_parser() -> argparse.ArgumentParser:
    """The shared options (``--quick``, ``--out``, ``--device``, ``--seed``) and the model's."""
    parser = make_parser(__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--neurons", type=int, default=400, help="number of excitatory neurons")
    add("--epochs", type=int, default=3, help="passes over the training set")
    add("--batch-size", type=int, default=16, help="samples presented in parallel")
    add("--rate", type=float, default=256.0, help="firing rate (Hz) of a full pixel (16)")
    add("--time-train", type=float, default=150.0, help="presentation time in training (ms)")
    add("--time-test", type=float, default=500.0, help="presentation time in evaluation (ms)")
    add("--dt", type=float, default=1.0, help="time step (ms)")
    add("--lr", type=float, default=0.005, help="STDP learning rate per sample")
    add("--a-minus", type=float, default=1.0, help="STDP depression amplitude (a_plus = 1)")
    add("--thresh", type=float, default=12.0, help="base threshold (rest voltage 0)")
    add("--theta-plus", type=float, default=1.2, help="threshold increase per spike")
    add("--tau-theta", type=float, default=1e7, help="threshold decay time constant (ms)")
    add("--inhibition", type=float, default=32.0, help="lateral inhibition per spike")
    add("--tau-pre", type=float, default=60.0, help="presynaptic trace time constant (ms)")
    add("--w-total", type=float, default=8.0, help="sum of each neuron's input weights (per 64)")
    add("--on-off", action="store_true", help="also feed the inverted image (128 inputs)")
    add(
        "--normalize",
        choices=("step", "sample"),
        default="step",
        help="renormalise the weights after every step (default) or once after each "
        "presentation (Diehl & Cook's and BindsNET's schedule)",
    )
    add(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (the matrices are small: one thread is fastest)",
    )
    add("--train-samples", type=int, default=0, help="use only this many training samples")
    add(
        "--distributed",
        action="store_true",
        help="data-parallel over the processes of torchrun (each holds batch-size / world)",
    )
    add(
        "--rank-streams",
        action="store_true",
        help="with --distributed: each rank its own Poisson stream (seed + rank) instead of "
        "the single-process draws of its samples",
    )
    return parser


def rank_draws(args, part: Tensor, duration: float):
    """Distributed: the context of a rank's presentation of ``part``, in which it draws the
    Poisson spikes one process would draw for these samples (unless ``--rank-streams``)."""
    if args.group is None or args.generator is not None:
        return contextlib.nullcontext()
    count = part.numel() * round(duration / args.dt)
    return distributed.single_process_draws(count, args.group)


def setup_distributed(args) -> int:
    """With ``--distributed``: join torchrun's process group (gloo, NCCL on CUDA); with
    ``--rank-streams`` (or on CUDA) give this rank its own Poisson generator. Sets ``args.group``
    and ``args.generator`` (``None`` without them). Returns the per-rank batch size."""
    args.group = args.generator = None
    if not args.distributed:
        return args.batch_size
    import torch.distributed as dist

    if args.device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        args.device = torch.device("cuda", local_rank)
        torch.cuda.set_device(args.device)
    dist.init_process_group("nccl" if args.device.type == "cuda" else "gloo")
    args.group = dist.group.WORLD
    world, rank = distributed.world_size(args.group), distributed.rank(args.group)
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} is not a multiple of {world} ranks")
    if args.rank_streams or args.device.type == "cuda":  # CUDA streams do not split
        args.generator = distributed.rank_generator(args.seed, args.group, args.device)
    if rank != 0:  # rank 0 prints and saves the figures
        sys.stdout = open(os.devnull, "w")
    local_batch = args.batch_size // world
    print(f"distributed: {world} processes ({dist.get_backend()}), batch {local_batch} each")
    return local_batch


def main() -> int:
    """Train, label, evaluate; print the results and save the figures. Returns the exit status."""
    args = setup(build_parser())
    # A (400 x 64) by (64 x 16) product is far too small to share: with several threads, OpenMP
    # synchronisation costs more than the work, and on a busy machine it is ~30x slower.
    torch.set_num_threads(args.threads)
    if args.quick:
        args.neurons, args.epochs, args.train_samples = 50, 1, 320
        args.time_train, args.time_test = 100.0, 150.0
    local_batch = setup_distributed(args)
    started = time.perf_counter()

    train_x, train_y, test_x, test_y = load_split()
    if args.train_samples:
        train_x, train_y = train_x[: args.train_samples], train_y[: args.train_samples]
    if args.quick:
        test_x, test_y = test_x[:96], test_y[:96]
    train_rates = to_rates(train_x, args.rate, args.on_off)
    test_rates = to_rates(test_x, args.rate, args.on_off)
    n_inputs = train_rates.shape[1]
    print(
        f"digits: {len(train_y)} training and {len(test_y)} test samples, {n_inputs} inputs, "
        f"{args.neurons} neurons, batch {args.batch_size}, {args.epochs} epoch(s), "
        f"device {args.device}"
    )

    model = DiehlCook2015(
        n_inputs,
        args.neurons,
        local_batch,
        args.dt,
        thresh=args.thresh,
        theta_plus=args.theta_plus,
        tau_theta=args.tau_theta,
        inhibition=args.inhibition,
        tau_pre=args.tau_pre,
        w_total=args.w_total * n_inputs / 64,
        process_group=args.group,
    ).to(args.device)
    distributed.broadcast_parameters(model, args.group)  # rank 0's weights everywhere
    # STDP averages over the batch; scaling by B makes each sample count as if shown alone.
    # (Distributed, the mean is over the whole batch of all ranks: the same B.)
    rule = STDP(
        model.plastic_layers(),
        args.lr * args.batch_size,
        1.0,
        args.a_minus,
        0.0,
        1.0,
        process_group=args.group,
    )

    for epoch in range(args.epochs):
        rate = train_epoch(model, rule, train_rates, args, epoch)
        theta = model.theta
        print(
            f"epoch {epoch + 1}: {rate:.1f} spikes per sample, threshold increase theta "
            f"mean {theta.mean():.2f} max {theta.max():.2f} ({time.perf_counter() - started:.0f} s)"
        )
    train_time = time.perf_counter() - started

    train_counts = count_spikes(model, train_rates, args, "labelling")
    assignments = assign_labels(train_counts, train_y, N_CLASSES)
    test_counts = count_spikes(model, test_rates, args, "testing")
    predictions = vote(test_counts, assignments, N_CLASSES)
    accuracy = float((predictions == test_y).float().mean())
    train_accuracy = float((vote(train_counts, assignments, N_CLASSES) == train_y).float().mean())
    matrix = confusion_matrix(predictions, test_y, N_CLASSES)
    elapsed = time.perf_counter() - started

    per_class = torch.bincount(assignments[assignments >= 0], minlength=N_CLASSES)
    print(f"neurons per class: {per_class.tolist()}, silent: {int((assignments < 0).sum())}")
    print(f"test spikes per sample: {float(test_counts.sum(1).mean()):.1f}")
    print(f"train accuracy {train_accuracy:.4f} (samples that labelled the neurons)")
    print(
        f"test accuracy {accuracy:.4f} ({int((predictions == test_y).sum())}/{len(test_y)}, "
        f"chance 0.1, no vote {int((predictions < 0).sum())})"
    )
    print(f"time: {elapsed:.1f} s ({train_time:.1f} s training)")
    if args.group is None or distributed.rank(args.group) == 0:
        save_figures(model, matrix, accuracy, args)
    if args.group is not None:
        import torch.distributed as dist

        dist.barrier(args.group)  # every rank done before the group goes
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
