import numpy as np
import pytest
import torch

from stt.audio import SAMPLE_RATE
from stt.data.augment import AugmentConfig, SpecAugment, WaveformAugment, add_noise, narrowband
from stt.errors import ConfigError
from tests.conftest import tone


def only_speed(speed: float) -> WaveformAugment:
    return WaveformAugment(AugmentConfig(speeds=[speed], noise=False))


def test_speed_1_1_shortens_the_waveform_by_1_over_1_1():
    wave = tone(2.0)
    out = only_speed(1.1)(wave, np.random.default_rng(0))
    assert out.dtype == np.float32
    assert abs(len(out) - len(wave) / 1.1) <= 1


def test_speed_0_9_lengthens_the_waveform_by_1_over_0_9():
    wave = tone(2.0)
    out = only_speed(0.9)(wave, np.random.default_rng(0))
    assert abs(len(out) - len(wave) / 0.9) <= 1


def test_speed_1_leaves_the_waveform_unchanged():
    wave = tone(1.0)
    np.testing.assert_array_equal(only_speed(1.0)(wave, np.random.default_rng(0)), wave)


@pytest.mark.parametrize("snr_db", [5.0, 15.0, 30.0])
def test_noise_is_added_at_the_requested_snr(snr_db):
    wave = tone(1.0)
    noisy = add_noise(wave, snr_db, np.random.default_rng(1))
    noise = noisy.astype(np.float64) - wave
    measured = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(noise**2))
    assert abs(measured - snr_db) < 1.0


def test_noise_snr_is_drawn_from_the_configured_range():
    config = AugmentConfig(speed_perturb=False, noise_prob=1.0, snr_db=[12.0, 14.0])
    wave = tone(1.0)
    for seed in range(5):
        noise = WaveformAugment(config)(wave, np.random.default_rng(seed)) - wave
        measured = 10 * np.log10(np.mean(wave**2) / np.mean(noise**2))
        assert 11.0 < measured < 15.0


def test_noise_prob_zero_adds_no_noise():
    config = AugmentConfig(speed_perturb=False, noise_prob=0.0)
    wave = tone(1.0)
    np.testing.assert_array_equal(WaveformAugment(config)(wave, np.random.default_rng(0)), wave)


def test_waveform_augment_is_deterministic_for_a_given_rng():
    augment = WaveformAugment(AugmentConfig(noise_prob=1.0))
    wave = tone(1.0)
    a = augment(wave, np.random.default_rng([3, 1, 4]))
    b = augment(wave, np.random.default_rng([3, 1, 4]))
    np.testing.assert_array_equal(a, b)


def band_power(wave: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_narrowband_keeps_the_telephone_band_and_drops_what_is_above_4_khz():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)  # 1 s of white noise
    out = narrowband(wave)
    assert out.dtype == np.float32 and len(out) == len(wave)
    assert band_power(out, 300, 3400) == pytest.approx(band_power(wave, 300, 3400), rel=0.05)
    assert band_power(out, 4400, 8000) < 0.01 * band_power(wave, 4400, 8000)  # -20 dB or more
    for odd in (1, 401, 15999):  # any length, even one sample, comes back as long
        assert len(narrowband(wave[:odd])) == odd


def test_narrowband_prob_draws_telephone_copies_and_zero_changes_nothing():
    wave = (0.1 * np.random.default_rng(1).standard_normal(SAMPLE_RATE)).astype(np.float32)
    always = WaveformAugment(AugmentConfig(speed_perturb=False, noise=False, narrowband_prob=1.0))
    np.testing.assert_array_equal(always(wave, np.random.default_rng(0)), narrowband(wave))
    # Off (the default), nothing is drawn: older configs augment exactly as before it existed.
    off = WaveformAugment(AugmentConfig(speed_perturb=False, noise=False, narrowband_prob=0.0))
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(off(wave, rng), wave)
    assert rng.bit_generator.state == np.random.default_rng(5).bit_generator.state
    half = WaveformAugment(AugmentConfig(speed_perturb=False, noise=False, narrowband_prob=0.5))
    high = band_power(wave, 4400, 8000)
    hits = sum(
        band_power(half(wave, np.random.default_rng(seed)), 4400, 8000) < 0.01 * high
        for seed in range(40)
    )
    assert 10 <= hits <= 30
    with pytest.raises(ConfigError, match="narrowband_prob"):
        AugmentConfig(narrowband_prob=1.5)


def test_invalid_config_values_are_config_errors():
    with pytest.raises(ConfigError, match="snr_db"):
        AugmentConfig(snr_db=[30.0, 10.0])
    with pytest.raises(ConfigError, match="speeds"):
        AugmentConfig(speeds=[0.0])


def spec_config(**kw) -> AugmentConfig:
    base = dict(freq_masks=2, freq_width=8, time_masks=2, time_width=0.2)
    return AugmentConfig(**{**base, **kw})


def test_spec_augment_masks_only_valid_frames():
    feats = torch.ones(4, 40, 100)
    feats[:, :, 60:] = 7.0  # stands for padding beyond row 0..3's 60 valid frames
    lengths = torch.tensor([60, 60, 60, 60])
    torch.manual_seed(0)
    out = SpecAugment(spec_config(freq_width=20, time_masks=3))(feats, lengths)
    assert (out[:, :, 60:] == 7.0).all()
    assert (out[:, :, :60] == 0).any()
    assert set(out[:, :, :60].unique().tolist()) <= {0.0, 1.0}


def test_spec_augment_time_masks_respect_each_rows_length():
    torch.manual_seed(1)
    feats = torch.ones(8, 10, 200)
    lengths = torch.tensor([200, 150, 100, 50, 20, 10, 1, 0])
    out = SpecAugment(spec_config(freq_masks=0, time_masks=4, time_width=0.5))(feats, lengths)
    for row, n in enumerate(lengths.tolist()):
        assert (out[row, :, n:] == 1).all()
        masked_frames = (out[row] == 0).all(dim=0).sum()
        assert masked_frames <= 4 * int(0.5 * n)


def test_spec_augment_frequency_masks_are_at_most_freq_width_wide():
    torch.manual_seed(2)
    out = SpecAugment(spec_config(freq_masks=1, freq_width=5, time_masks=0))(
        torch.ones(16, 40, 30), torch.full((16,), 30)
    )
    masked_coefs = (out == 0).all(dim=-1).sum(dim=-1)
    assert masked_coefs.max() <= 5 and masked_coefs.max() > 0


def test_spec_augment_is_identity_in_eval_mode():
    module = SpecAugment(spec_config()).eval()
    feats = torch.randn(2, 40, 50)
    assert torch.equal(module(feats, torch.tensor([50, 30])), feats)


def test_spec_augment_is_deterministic_under_manual_seed():
    module = SpecAugment(spec_config())
    feats, lengths = torch.randn(3, 40, 80), torch.tensor([80, 70, 40])
    torch.manual_seed(123)
    a = module(feats, lengths)
    torch.manual_seed(123)
    b = module(feats, lengths)
    torch.manual_seed(124)
    c = module(feats, lengths)
    assert torch.equal(a, b) and not torch.equal(a, c)
