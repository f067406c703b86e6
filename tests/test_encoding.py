"""Encoders: shapes, dtypes, devices, documented rates, latency mapping, seeding and errors.

Expected numbers are computed here from the documented definitions (p = f · dt / 1000 per step;
latency step = floor((1 - x)(T - 1) + 1/2)), never by calling the code under test.
"""

import time

import pytest
import torch

from pysnn.encoding import (
    BernoulliEncoder,
    LatencyEncoder,
    PoissonEncoder,
    bernoulli_encoding,
    latency_encoding,
    poisson_encoding,
)

RANDOM_ENCODINGS = [poisson_encoding, bernoulli_encoding]
ALL_ENCODINGS = RANDOM_ENCODINGS + [latency_encoding]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def seeded(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# ----------------------------------------------------------------------------- shapes and dtypes


@pytest.mark.parametrize("encode", ALL_ENCODINGS)
@pytest.mark.parametrize("shape", [(), (5,), (2, 1, 3), (4, 2, 3, 3)])
def test_shape_is_input_shape_plus_time_last_and_dtype_bool(encode, shape):
    intensities = torch.full(shape, 0.25)
    spikes = encode(intensities, 20, 2)
    assert spikes.shape == shape + (10,)
    assert spikes.dtype == torch.bool
    assert spikes.device == intensities.device


@pytest.mark.parametrize(
    "duration, dt, steps",
    [
        (1, 0.1, 10),
        (0.3, 0.1, 3),
        (0.7, 0.1, 7),
        (10.5, 1, 10),
        (10, 3, 3),
        (1, 1, 1),
        (50, 0.5, 100),
    ],
)
def test_number_of_steps_is_duration_over_dt_robust_to_float_rounding(duration, dt, steps):
    # 0.3 / 0.1 == 2.9999999999999996 and 0.7 / 0.1 == 6.999999999999999 in floating point.
    for encode in ALL_ENCODINGS:
        assert encode(torch.zeros(2), duration, dt).shape == (2, steps)
        assert PoissonEncoder(duration, dt).n_steps == steps


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("encode", ALL_ENCODINGS)
def test_every_floating_dtype_is_accepted(encode, dtype):
    spikes = encode(torch.tensor([0.0, 0.5, 1.0], dtype=dtype), 5, 1)
    assert spikes.dtype == torch.bool and spikes.shape == (3, 5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("encode", ALL_ENCODINGS)
def test_output_stays_on_the_device_of_the_input(encode, device):
    intensities = torch.full((3, 4), 0.5, device=device)
    generator = seeded(0, device)
    spikes = encode(intensities, 10, 1, generator=generator)
    assert spikes.device.type == device


@pytest.mark.parametrize("encode", ALL_ENCODINGS)
def test_zero_intensity_never_spikes(encode):
    generator = seeded(1)
    intensities = torch.zeros(50, 3)
    intensities[:, 1] = 0.5  # non-zero neighbours must not leak spikes into the zero columns
    spikes = encode(intensities, 1000, 1, generator=generator)
    assert not spikes[:, 0].any() and not spikes[:, 2].any()
    assert spikes[:, 1].any()


def test_empty_intensities_give_an_empty_train():
    assert poisson_encoding(torch.zeros(0, 3), 4, 1).shape == (0, 3, 4)
    assert latency_encoding(torch.zeros(0), 4, 1).shape == (0, 4)


# ----------------------------------------------------------------------------- rates


@pytest.mark.parametrize("rate_hz, dt", [(20.0, 1.0), (100.0, 0.5), (500.0, 1.0), (40.0, 0.1)])
def test_poisson_empirical_rate_matches_the_documented_rate(rate_hz, dt):
    """Over 10 000 steps the measured rate is within 5 % of f (here: of p = f · dt / 1000)."""
    n_inputs, n_steps = 64, 10_000
    spikes = poisson_encoding(
        torch.full((n_inputs,), rate_hz), n_steps * dt, dt, generator=seeded(7)
    )
    assert spikes.shape == (n_inputs, n_steps)
    seconds = n_steps * dt / 1000.0
    measured = spikes.sum().item() / (n_inputs * seconds)
    assert measured == pytest.approx(rate_hz, rel=0.05)
    # every single input: its count lies within 5 binomial standard deviations of n · p
    p = rate_hz * dt / 1000.0
    mean, sd = n_steps * p, (n_steps * p * (1 - p)) ** 0.5
    counts = spikes.sum(-1).double()
    assert (counts - mean).abs().max() < 5 * sd


def test_poisson_is_not_biased_low_at_high_rates():
    """PySNN 0.1.1 gave 458 Hz for 500 Hz (B29); the Bernoulli step model has no such bias."""
    spikes = poisson_encoding(torch.full((200,), 500.0), 10_000, 1.0, generator=seeded(3))
    measured = spikes.sum().item() / (200 * 10.0)
    assert measured == pytest.approx(500.0, rel=0.01)


def test_poisson_rate_of_one_spike_per_step_spikes_every_step():
    # f = 1000 / dt  ->  p = 1
    assert poisson_encoding(torch.tensor([2000.0]), 10, 0.5).all()
    assert poisson_encoding(torch.tensor([1000.0]), 10, 1.0).all()
    assert poisson_encoding(torch.tensor([10_000.0]), 10, 0.1).all()
    assert poisson_encoding(torch.tensor([3000.0], dtype=torch.float16), 10, 1 / 3).all()


def test_poisson_spikes_are_independent_across_steps():
    """The probability of a spike right after a spike equals p (Bernoulli, no refractoriness)."""
    spikes = poisson_encoding(torch.full((100,), 300.0), 5000, 1.0, generator=seeded(11))
    previous, current = spikes[:, :-1], spikes[:, 1:]
    after_spike = current[previous].float().mean().item()
    assert after_spike == pytest.approx(0.3, rel=0.05)


@pytest.mark.parametrize("probability", [0.02, 0.3, 0.75])
def test_bernoulli_empirical_frequency_matches_the_probability(probability):
    spikes = bernoulli_encoding(torch.full((64,), probability), 10_000, 1.0, generator=seeded(5))
    assert spikes.float().mean().item() == pytest.approx(probability, rel=0.05)


def test_bernoulli_probability_one_spikes_every_step():
    assert bernoulli_encoding(torch.ones(3), 7, 1).all()


def test_bernoulli_matches_poisson_with_rates_scaled_by_1000_over_dt():
    """Same generator state: p per step and f = p · 1000 / dt Hz give the same draws."""
    p = torch.tensor([0.1, 0.4, 0.9])
    a = bernoulli_encoding(p, 50, 0.5, generator=seeded(9))
    b = poisson_encoding(p * 1000 / 0.5, 50, 0.5, generator=seeded(9))
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- latency


def test_latency_spike_step_follows_the_documented_linear_map():
    T = 11  # steps 0..10
    intensities = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]) * 4.0  # max 4 -> x = 0..1
    spikes = latency_encoding(intensities, T * 2.0, 2.0)
    assert spikes.shape == (6, T)
    # floor((1 - x) * 10 + 0.5): x=0.1 -> 9, 0.25 -> 7.5+.5 -> 8, 0.5 -> 5, 0.9 -> 1, 1 -> 0
    expected_steps = {1: 9, 2: 8, 3: 5, 4: 1, 5: 0}
    assert not spikes[0].any()
    for row, step in expected_steps.items():
        assert spikes[row].sum() == 1
        assert spikes[row].nonzero().item() == step


def test_latency_with_a_fixed_max_intensity():
    # max_intensity 10: x = 0.5 -> middle step of T = 5 (step 2); x = 1 -> 0; x = 0.2 -> 3.2 -> 3
    spikes = latency_encoding(torch.tensor([5.0, 10.0, 2.0]), 5, 1, max_intensity=10.0)
    assert [row.nonzero().item() for row in spikes] == [2, 0, 3]
    encoder = LatencyEncoder(5, 1, max_intensity=10.0)
    assert torch.equal(encoder(torch.tensor([5.0, 10.0, 2.0])), spikes)


def test_latency_stronger_inputs_spike_no_later():
    intensities = torch.linspace(0.01, 1.0, 100)
    steps = latency_encoding(intensities, 50, 1).float().argmax(-1)
    assert torch.all(steps[1:] <= steps[:-1])
    assert steps[-1] == 0 and steps[0] == 49


def test_latency_all_zero_gives_no_spikes():
    assert not latency_encoding(torch.zeros(4, 4), 10, 1).any()


def test_latency_rejects_intensities_above_max_intensity():
    with pytest.raises(ValueError, match=r"latency_encoding: intensities must be <= max_intensity"):
        latency_encoding(torch.tensor([0.5, 2.0]), 10, 1, max_intensity=1.0)
    with pytest.raises(ValueError, match=r"max_intensity must be > 0.0"):
        latency_encoding(torch.tensor([0.5]), 10, 1, max_intensity=0.0)


# ----------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("encode", RANDOM_ENCODINGS)
def test_same_seed_same_spikes_different_seed_different_spikes(encode):
    intensities = torch.full((20, 5), 0.3)
    a = encode(intensities, 200, 1, generator=seeded(42))
    b = encode(intensities, 200, 1, generator=seeded(42))
    c = encode(intensities, 200, 1, generator=seeded(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_global_generator_is_used_without_a_generator():
    intensities = torch.full((20,), 100.0)
    torch.manual_seed(123)
    a = poisson_encoding(intensities, 100, 1)
    torch.manual_seed(123)
    b = poisson_encoding(intensities, 100, 1)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "encoder_cls, encode",
    [(PoissonEncoder, poisson_encoding), (BernoulliEncoder, bernoulli_encoding)],
)
def test_encoder_objects_equal_their_functions(encoder_cls, encode):
    intensities = torch.tensor([[0.2, 0.0, 0.9]])
    encoder = encoder_cls(30, 1.5)
    assert encoder.duration == 30 and encoder.dt == 1.5
    assert torch.equal(
        encoder(intensities, generator=seeded(4)),
        encode(intensities, 30, 1.5, generator=seeded(4)),
    )
    # the generator also works positionally in __call__ and as a constructor default
    assert torch.equal(
        encoder(intensities, seeded(4)), encode(intensities, 30, 1.5, generator=seeded(4))
    )
    with_default = encoder_cls(30, 1.5, generator=seeded(4))
    assert torch.equal(with_default(intensities), encode(intensities, 30, 1.5, generator=seeded(4)))
    assert encoder_cls.__name__ in repr(encoder)


def test_encoders_accept_keywords_of_the_contract():
    spikes = poisson_encoding(intensities=torch.ones(2), duration=4, dt=1)
    assert spikes.shape == (2, 4)
    assert PoissonEncoder(duration=4, dt=1)(torch.ones(2)).shape == (2, 4)


def test_poisson_784_inputs_1000_steps_is_fast():
    intensities = torch.rand(784, generator=seeded(0)) * 100
    poisson_encoding(intensities, 1000, 1)  # warm-up
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        poisson_encoding(intensities, 1000, 1)
        best = min(best, time.perf_counter() - start)
    assert best < 0.05


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("encode", ALL_ENCODINGS)
def test_negative_intensities_are_rejected(encode):
    name = encode.__name__
    with pytest.raises(
        ValueError, match=rf"^{name}: intensities must be non-negative, got min -0.5$"
    ):
        encode(torch.tensor([0.2, -0.5]), 10, 1)


@pytest.mark.parametrize("encode", ALL_ENCODINGS)
def test_non_floating_and_non_tensor_intensities_are_rejected(encode):
    name = encode.__name__
    with pytest.raises(
        TypeError, match=rf"{name}: intensities must have a floating dtype, got torch.int64"
    ):
        encode(torch.tensor([1, 0]), 10, 1)
    with pytest.raises(
        TypeError, match=rf"{name}: intensities must have a floating dtype, got torch.bool"
    ):
        encode(torch.tensor([True]), 10, 1)
    with pytest.raises(TypeError, match=rf"{name}: intensities must be a torch.Tensor, got list"):
        encode([0.5, 0.2], 10, 1)


@pytest.mark.parametrize("encode", ALL_ENCODINGS)
def test_nan_intensities_are_rejected(encode):
    with pytest.raises(ValueError, match="intensities must not contain NaN"):
        encode(torch.tensor([0.1, float("nan")]), 10, 1)


@pytest.mark.parametrize("encode", ALL_ENCODINGS)
@pytest.mark.parametrize(
    "duration, dt, pattern",
    [
        (0, 1, r"duration must be > 0.0 \(ms\), got 0.0"),
        (-5, 1, r"duration must be > 0.0 \(ms\), got -5.0"),
        (10, 0, r"dt must be > 0.0 \(ms\), got 0.0"),
        (10, -1, r"dt must be > 0.0 \(ms\), got -1.0"),
        (10, float("inf"), r"dt must be finite \(ms\), got inf"),
        (0.5, 1, r"duration must be at least one dt long, got duration=0.5 and dt=1"),
    ],
)
def test_duration_and_dt_must_be_positive(encode, duration, dt, pattern):
    with pytest.raises(ValueError, match=rf"{encode.__name__}: {pattern}"):
        encode(torch.ones(2) * 0.1, duration, dt)


def test_duration_and_dt_must_be_numbers():
    with pytest.raises(
        TypeError, match=r"poisson_encoding: duration must be a real number \(ms\), got str"
    ):
        poisson_encoding(torch.ones(1), "10", 1)
    with pytest.raises(
        TypeError, match=r"PoissonEncoder: dt must be a real number \(ms\), got NoneType"
    ):
        PoissonEncoder(10, None)
    with pytest.raises(ValueError, match=r"LatencyEncoder: dt must be > 0.0 \(ms\)"):
        LatencyEncoder(10, 0)


def test_poisson_rate_above_one_spike_per_step_is_rejected():
    with pytest.raises(
        ValueError,
        match=r"poisson_encoding: intensities \(rates in Hz\) times dt / 1000 must be <= 1 .*"
        r"got max rate 1500 Hz with dt=1 ms, i.e. p=1.5",
    ):
        poisson_encoding(torch.tensor([10.0, 1500.0]), 10, 1)
    with pytest.raises(ValueError, match=r"use rates <= 500 Hz or a smaller dt"):
        poisson_encoding(torch.tensor([600.0]), 10, 2)


def test_bernoulli_probability_above_one_is_rejected():
    with pytest.raises(
        ValueError, match=r"bernoulli_encoding: intensities are spike probabilities .* got max 1.2"
    ):
        bernoulli_encoding(torch.tensor([0.5, 1.2]), 10, 1)


def test_generator_must_be_a_torch_generator():
    with pytest.raises(TypeError, match=r"poisson_encoding: generator must be a torch.Generator"):
        poisson_encoding(torch.ones(1), 10, 1, generator=42)
    with pytest.raises(TypeError, match=r"PoissonEncoder: generator must be a torch.Generator"):
        PoissonEncoder(10, 1, generator="seed")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_generator_on_another_device_is_rejected():
    with pytest.raises(ValueError, match=r"generator must live on the device of intensities"):
        poisson_encoding(torch.ones(2, device="cuda"), 10, 1, generator=seeded(0))


def test_latency_encoding_rejects_an_infinite_intensity():
    """One inf intensity used to give no spikes at all, for every input."""
    from pysnn.encoding import latency_encoding

    with pytest.raises(ValueError, match="intensities must be finite"):
        latency_encoding(torch.tensor([1.0, float("inf")]), 10, 1.0)
    spikes = latency_encoding(torch.tensor([1.0, 0.5]), 10, 1.0)
    assert int(spikes.sum()) == 2  # each input fires once; the brighter one first
    assert spikes[0].nonzero()[0, 0] < spikes[1].nonzero()[0, 0]
