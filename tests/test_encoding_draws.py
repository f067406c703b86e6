"""The C twin of the random encoders' draws (:func:`pysnn.native.bernoulli_draws`).

The reference is torch's own ``torch.rand(shape + (T,)) < p`` from a copy of the same generator
state, computed here: the kernel must give the same spikes, in either layout, and leave the
generator where ``torch.rand`` leaves it (the next draws agree). Shapes cross the 624-word
regenerations of the generator and the kernel's 64-value blocks.
"""

import pytest
import torch

from helpers import kernel_results
from pysnn import native
from pysnn.encoding import _poisson_trains, bernoulli_encoding, poisson_encoding
from pysnn.models import present

pytestmark = pytest.mark.skipif(not native.available(), reason="the extension is not built")


def twin(generator: torch.Generator) -> torch.Generator:
    copy = torch.Generator()
    copy.set_state(generator.get_state())
    return copy


def reference_spikes(probabilities: torch.Tensor, steps: int, generator: torch.Generator):
    dtype = torch.promote_types(probabilities.dtype, torch.float32)
    draws = torch.rand(tuple(probabilities.shape) + (steps,), generator=generator, dtype=dtype)
    return draws < probabilities.to(dtype).unsqueeze(-1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (63,), (64,), (65,), (3, 1, 50), (2, 1, 784)])
@pytest.mark.parametrize("steps", [1, 3, 250, 700])
@pytest.mark.parametrize("offset", [0, 1, 623, 624])
def test_bernoulli_draws_are_torch_rand_and_leave_the_generator_where_rand_does(
    dtype, shape, steps, offset
):
    generator = torch.Generator().manual_seed(7)
    torch.rand(offset, generator=generator)  # any position in the 624-word cycle
    probabilities = torch.rand(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    expected_generator = twin(generator)
    expected = reference_spikes(probabilities, steps, expected_generator)

    spikes = bernoulli_encoding(probabilities, float(steps), 1.0, generator=generator)
    assert spikes.dtype == torch.bool and spikes.shape == shape + (steps,)
    assert torch.equal(spikes, expected)
    assert torch.equal(generator.get_state(), expected_generator.get_state())
    assert torch.equal(
        torch.rand(5, generator=generator), torch.rand(5, generator=expected_generator)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5,), (2, 1, 130)])
def test_time_first_trains_are_the_time_last_spikes_moved(dtype, shape):
    rates = torch.rand(shape, generator=torch.Generator().manual_seed(3), dtype=dtype) * 500.0
    generator = torch.Generator().manual_seed(11)
    expected_generator = twin(generator)
    expected = reference_spikes(rates * (1.0 / 1000.0), 40, expected_generator)

    trains = _poisson_trains(rates, 40.0, 1.0, generator, time_first=True)
    assert trains.shape == (40,) + shape and trains.is_contiguous()
    assert torch.equal(trains, expected.movedim(-1, 0))
    assert torch.equal(generator.get_state(), expected_generator.get_state())


def test_the_default_generator_advances_as_with_torch_rand():
    intensities = torch.full((3, 200), 64.0)
    torch.manual_seed(2026)
    expected = reference_spikes(intensities * (2.0 / 1000.0), 25, torch.default_generator)
    after = torch.rand(4)
    torch.manual_seed(2026)
    spikes = poisson_encoding(intensities, 50.0, 2.0)
    assert torch.equal(spikes, expected)
    assert torch.equal(torch.rand(4), after)


@pytest.mark.skipif(not native.enabled(), reason="the kernels are switched off")
def test_the_kernel_runs_on_cpu_float_tensors_and_steps_aside_when_switched_off(monkeypatch):
    results = kernel_results(monkeypatch, "bernoulli_draws")
    native._draws_checked = None  # the one check per process counts as a call too
    assert native._draws_match_torch()
    results.clear()
    poisson_encoding(torch.full((4, 30), 100.0), 10.0, 1.0)
    bernoulli_encoding(torch.full((4, 30), 0.5, dtype=torch.float64), 10.0, 1.0)
    assert results == {True: 2}
    with native.disabled():
        poisson_encoding(torch.full((4, 30), 100.0), 10.0, 1.0)
    assert results == {True: 2}


def test_probabilities_zero_never_spike_and_one_always_does():
    probabilities = torch.tensor([0.0, 1.0, 0.0, 1.0] * 40)
    spikes = bernoulli_encoding(probabilities, 300.0, 1.0, generator=torch.Generator())
    assert not spikes[0::2].any() and spikes[1::2].all()


def test_an_unreadable_generator_state_is_declined_and_nothing_is_written():
    probabilities = torch.full((10,), 0.5)
    spikes = torch.zeros(10, 4, dtype=torch.bool)
    state = torch.Generator().manual_seed(0).get_state()
    # left 0 or 625, seeded 0, next 625, and 624 words left from word 624 (past the end)
    for fields in ((8, 0), (8, 625), (12, 0), (16, 625), (8, 624, 16, 624)):
        broken = state.clone()
        for at, number in zip(fields[0::2], fields[1::2]):
            broken[at : at + 4] = torch.tensor(
                list(number.to_bytes(4, "little")), dtype=torch.uint8
            )
        assert (
            native._extension.bernoulli_draws(
                broken.data_ptr(), probabilities.data_ptr(), 10, 4, 0, spikes.data_ptr(), 0
            )
            is False
        )
        assert not spikes.any()
    high_word = state.clone()
    high_word[24 + 4] = 1  # a state word above 32 bits
    assert (
        native._extension.bernoulli_draws(
            high_word.data_ptr(), probabilities.data_ptr(), 10, 4, 0, spikes.data_ptr(), 0
        )
        is False
    )
    assert not spikes.any()


def test_present_counts_the_same_spikes_on_both_backends():
    network = torch.nn.Identity()
    rates = torch.rand(2, 1, 300, generator=torch.Generator().manual_seed(5)) * 200.0
    counts = present(network, rates, 30.0, 1.0, generator=torch.Generator().manual_seed(9))
    with native.disabled():
        expected = present(network, rates, 30.0, 1.0, generator=torch.Generator().manual_seed(9))
    expected_by_hand = reference_spikes(rates / 1000.0, 30, torch.Generator().manual_seed(9))
    assert torch.equal(counts, expected)
    assert torch.equal(counts, expected_by_hand.sum(-1).float())
