r"""Data-parallel training on :mod:`torch.distributed`: every rank simulates a shard of the batch.

The learning rules take a keyword-only ``process_group`` (as :class:`torch.nn.SyncBatchNorm`):
given one (``torch.distributed.group.WORLD`` or a subgroup), each rank simulates its own samples
and, before each weight update, the rule combines its batch means over the ranks of the group,
so that every rank applies the update one process would apply to the concatenated batch (the
ranks' samples in rank order). :class:`pysnn.models.DiehlCook2015` takes the same keyword for
its shared threshold :attr:`~pysnn.models.DiehlCook2015.theta`. This module holds what is
needed around them:

* :func:`broadcast_parameters`: make every rank start from rank 0's weights (and buffers);
* :func:`rank_generator`: a :class:`torch.Generator` per rank, for the Poisson encoding (each
  rank draws its own spikes from one seed); or :func:`single_process_draws`, with which the
  ranks draw from one shared stream exactly the numbers one process would draw for the whole
  batch (runs reproduce the single-process run);
* :func:`shard`: the rank's part of a batch or a dataset (or use
  :class:`torch.utils.data.distributed.DistributedSampler`);
* :func:`gather_counts`: the spike counts of all ranks, concatenated in rank order, for
  :func:`pysnn.models.assign_labels` and :func:`pysnn.models.vote`;
* :func:`gather_batch` and :func:`all_reduce_sum`: the collectives the rules use, for rules of
  your own.

Everything here runs on gloo (CPU tensors) and NCCL (CUDA tensors) alike; with
``process_group=None`` (or a group of one rank) nothing is communicated. See the "Scaling out"
page of the documentation for the semantics and how to launch.
"""

from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "world_size",
    "rank",
    "broadcast_parameters",
    "rank_generator",
    "single_process_draws",
    "shard",
    "gather_counts",
    "gather_batch",
    "all_reduce_sum",
]

Group = Optional[Any]  # a torch.distributed ProcessGroup, or None


def _check_group(group: Group, owner: str) -> Group:
    """``group`` itself, after checking that the default process group is initialised."""
    if group is None:
        return None
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            f"{owner}: process_group was given but torch.distributed is not initialised "
            f"(call torch.distributed.init_process_group first, or launch with torchrun)"
        )
    return group


def world_size(group: Group = None) -> int:
    """Number of ranks in ``group`` (the default group for ``None``); 1 without distributed."""
    if not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size(group)


def rank(group: Group = None) -> int:
    """This process's rank in ``group`` (the default group for ``None``); 0 without distributed."""
    if not dist.is_available() or not dist.is_initialized():
        return 0
    return dist.get_rank(group)


def _src_global(group: Group, src: int) -> int:
    """The global rank of rank ``src`` of ``group``."""
    if group is None or group is dist.group.WORLD:
        return src
    return dist.get_global_rank(group, src)


def broadcast_parameters(module: nn.Module, group: Group = None, src: int = 0) -> nn.Module:
    """Copy rank ``src``'s parameters and buffers of ``module`` to every rank of ``group``.

    Call it once after building the network (and after loading a checkpoint on one rank), at
    setup: the distributed rules keep the weights equal from then on. Parameters and the
    contiguous buffers (e.g. :attr:`pysnn.models.DiehlCook2015.theta`, masks) are broadcast in
    place, one collective per tensor; buffers that are broadcast views of compact state
    (per-synapse ``trace``/``spikes`` of a connection) are skipped, their state is broadcast
    through its own buffer. The per-sample state (voltages, traces) is broadcast too, which is
    harmless at rest, before training; each rank's state is its own afterwards. Without
    distributed (or with one rank) it does nothing.

    :param module: e.g. the network; its tensors must be on a device the backend serves (CPU
        for gloo, CUDA for NCCL).
    :param group: the process group (default: the world).
    :param src: rank in ``group`` whose tensors are kept.
    :returns: ``module``.
    """
    if world_size(group) == 1:
        return module
    source = _src_global(group, src)
    with torch.no_grad():
        for tensor in module.parameters():
            if tensor.is_contiguous():
                dist.broadcast(tensor, source, group=group)
            else:
                copy = tensor.contiguous()
                dist.broadcast(copy, source, group=group)
                tensor.copy_(copy)
        for tensor in module.buffers():
            if tensor is not None and tensor.is_contiguous() and tensor.numel():
                dist.broadcast(tensor, source, group=group)
    return module


def rank_generator(
    seed: int, group: Group = None, device: Union[str, torch.device] = "cpu"
) -> torch.Generator:
    """A :class:`torch.Generator` seeded with ``seed + rank``: each rank draws its own spikes.

    Pass it as ``generator=`` to :func:`pysnn.models.present` or
    :func:`pysnn.encoding.poisson_encoding`. With one process it is seeded with ``seed``.

    :param seed: the run's seed (the same on every rank).
    :param group: the process group whose rank offsets the seed (default: the world).
    :param device: device of the generator (that of the rates it encodes).
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) + rank(group))
    return generator


@contextmanager
def single_process_draws(
    count: int,
    group: Group = None,
    generator: Optional[torch.Generator] = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[None]:
    """Within the block, this rank's draws are those one process would make for this rank's
    samples of the concatenated batch, from a stream that every rank holds in the same state.

    One process encoding the whole batch draws ``W·count`` numbers at once, sample by sample;
    rank ``r`` of ``W`` skips the ``r·count`` draws of the ranks before it, draws its own
    ``count`` inside the block, then skips the ``(W - 1 - r)·count`` of the ranks after it, so
    that every rank's stream leaves the block in the state of the single process (a later
    ``torch.randperm`` agrees on every rank). With the same seed, a run on W ranks then sees the
    single-process run's spikes bit for bit::

        with single_process_draws(part.numel() * n_steps, group):
            counts = present(model, part, duration, dt)  # part = shard(batch, group)

    Exact for CPU generators, whose streams split anywhere (``rand(k)`` then ``rand(n)`` equals
    ``rand(k + n)``); CUDA (Philox) generators do not split this way: use
    :func:`rank_generator` there. The skipped draws cost ``(W - 1)·count`` random numbers.

    :param count: numbers this rank draws in the block (its shard's share).
    :param group: the process group (default: the world).
    :param generator: the shared generator (``None``: torch's global one, seeded alike on every
        rank).
    :param dtype: dtype of the draws (float32 draws one 32-bit number each, float64 two).
    """
    size, index = world_size(group), rank(group)
    device = "cpu" if generator is None else generator.device
    if index:
        torch.rand(index * count, generator=generator, dtype=dtype, device=device)
    yield
    if size - 1 - index:
        torch.rand((size - 1 - index) * count, generator=generator, dtype=dtype, device=device)


def shard(data: Union[Tensor, Sequence], group: Group = None, dim: int = 0) -> Any:
    """This rank's contiguous part of ``data`` along ``dim``: rank ``r`` of ``W`` gets
    ``data[r·n/W : (r+1)·n/W]``; concatenating the parts in rank order gives ``data`` back.

    Use it on each global batch (every rank then holds ``B/W`` of the samples, and the rules and
    :func:`gather_counts` see the concatenated batch in the original order), or on a whole
    dataset. For a :class:`torch.utils.data.Dataset` with a ``DataLoader``,
    :class:`torch.utils.data.distributed.DistributedSampler` does the same job (it interleaves
    the samples instead, ``rank::W``).

    :param data: a tensor (split along ``dim``) or a sequence (split as a list slice).
    :raises ValueError: the length is not a multiple of the world size (each rank must hold the
        same number of samples: the rules exchange equal-sized shards).
    """
    size, index = world_size(group), rank(group)
    length = data.shape[dim] if isinstance(data, Tensor) else len(data)
    if length % size:
        raise ValueError(
            f"shard: the length {length} is not a multiple of the world size {size} (every rank "
            f"must hold as many samples; pad the batch)"
        )
    part = length // size
    if isinstance(data, Tensor):
        return data.narrow(dim, index * part, part)
    return data[index * part : (index + 1) * part]


def gather_batch(tensor: Tensor, group: Group = None, out: Optional[Tensor] = None) -> Tensor:
    """All ranks' ``tensor`` concatenated along the first (batch) axis, in rank order.

    One ``all_gather_into_tensor`` call; every rank receives the same tensor. The shards must
    have the same shape on every rank.

    :param tensor: this rank's shard, ``(B, ...)``.
    :param out: optional ``(W·B, ...)`` contiguous tensor to receive it (no allocation).
    :returns: ``(W·B, ...)``; ``tensor`` itself with one rank.
    """
    size = world_size(group)
    if size == 1:
        return tensor if out is None else out.copy_(tensor)
    tensor = tensor.contiguous()
    if out is None:
        out = tensor.new_empty((size * tensor.shape[0],) + tuple(tensor.shape[1:]))
    _all_gather_flat(out, tensor, group)
    return out


def _all_gather_flat(out: Tensor, tensor: Tensor, group: Group) -> None:
    """``out`` (``W·numel`` values, contiguous) ← every rank's contiguous ``tensor``."""
    _ALL_GATHER(out.view(-1), tensor.view(-1), group=group)


# torch >= 2.13 names it all_gather_single (all_gather_into_tensor is deprecated there)
_ALL_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def all_reduce_sum(tensor: Tensor, group: Group = None) -> Tensor:
    """``tensor`` ← its sum over the ranks of ``group``, in place (every rank gets the same
    numbers: the backends reduce each element once and share the result)."""
    if world_size(group) > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def gather_counts(counts: Tensor, group: Group = None) -> Tensor:
    """Spike counts of all ranks concatenated along the sample axis, in rank order.

    Each rank presents its shard of a batch (see :func:`shard`); the concatenation is the
    batch's counts in the original sample order, the same on every rank, ready for
    :func:`pysnn.models.assign_labels` and :func:`pysnn.models.vote`.

    :param counts: ``(S, ...)`` this rank's counts (e.g. the output of
        :func:`pysnn.models.present`).
    :returns: ``(W·S, ...)``.
    """
    return gather_batch(counts, group)
