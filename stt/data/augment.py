"""Training-time augmentation: speed perturbation, noise and telephone-band copies on waveforms,
SpecAugment on features.

:class:`WaveformAugment` runs in the data loader (numpy, one utterance, an explicit random
generator, so a sample depends only on its seed and never on worker scheduling).
:class:`SpecAugment` is an ``nn.Module`` that runs on the batch of features, on the model's
device, after :class:`stt.features.MFCC`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from stt.audio import SAMPLE_RATE, resample
from stt.errors import ConfigError

# Speeds are applied by resampling from SAMPLE_RATE * speed to SAMPLE_RATE. Rounding that rate to
# a multiple of 100 Hz keeps the resampling ratio's denominator <= 160, hence the sinc kernel
# small, whatever speed a config names (resolution 0.00625).
_SPEED_RATE_STEP = 100


@dataclass
class AugmentConfig:
    """Augmentation settings. ``speeds`` are playback rates (1.1 = 10% faster, so shorter)."""

    speed_perturb: bool = True
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    noise: bool = True
    noise_prob: float = 0.3
    snr_db: list[float] = field(default_factory=lambda: [10.0, 30.0])  # [low, high], uniform
    # Probability of hearing an utterance as 8 kHz audio (phone calls, FSDD's digits): nothing
    # above 4 kHz, resampled back to 16 kHz. 0 draws nothing, so other augmentation is unchanged.
    narrowband_prob: float = 0.0
    spec_augment: bool = True
    freq_masks: int = 2
    freq_width: int = 8  # max coefficients per frequency mask
    time_masks: int = 2
    time_width: float = 0.05  # max fraction of the utterance's frames per time mask

    def __post_init__(self) -> None:
        self.speeds = [float(s) for s in self.speeds]
        self.snr_db = [float(s) for s in self.snr_db]
        if self.speed_perturb and not self.speeds:
            raise ConfigError("augment.speeds is empty; name at least one speed (e.g. [1.0])")
        bad = [s for s in self.speeds if not (math.isfinite(s) and 0.5 <= s <= 2.0)]
        if bad:
            raise ConfigError(f"augment.speeds must lie in [0.5, 2.0], got {bad}")
        if not 0.0 <= self.noise_prob <= 1.0:
            raise ConfigError(f"augment.noise_prob must lie in [0, 1], got {self.noise_prob}")
        if not 0.0 <= self.narrowband_prob <= 1.0:
            raise ConfigError(
                f"augment.narrowband_prob must lie in [0, 1], got {self.narrowband_prob}"
            )
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ConfigError(f"augment.snr_db must be [low, high] in dB, got {self.snr_db}")
        for name in ("freq_masks", "freq_width", "time_masks"):
            if getattr(self, name) < 0:
                raise ConfigError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.time_width <= 1.0:
            raise ConfigError(f"augment.time_width must lie in [0, 1], got {self.time_width}")

    @property
    def max_speed(self) -> float:
        """The fastest speed used (1.0 without speed perturbation): audio shrinks by up to this."""
        return max([1.0, *self.speeds]) if self.speed_perturb else 1.0

    @property
    def min_speed(self) -> float:
        """The slowest speed used: audio grows by up to ``1 / min_speed``."""
        return min([1.0, *self.speeds]) if self.speed_perturb else 1.0


def speed_rate(speed: float) -> int:
    """The rate a waveform is taken to have, resampled to SAMPLE_RATE, to play ``speed`` times
    faster."""
    return int(round(SAMPLE_RATE * speed / _SPEED_RATE_STEP)) * _SPEED_RATE_STEP


def change_speed(waveform: np.ndarray, speed: float) -> np.ndarray:
    """Play ``waveform`` ``speed`` times faster (pitch moves too): ``len / speed`` samples."""
    orig_rate = speed_rate(speed)
    if orig_rate == SAMPLE_RATE:
        return waveform
    return resample(np.ascontiguousarray(waveform, dtype=np.float32), orig_rate, SAMPLE_RATE)


def _unit_power(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of zero-mean 1/f noise at unit power (white noise shaped in the spectrum).

    Shaped at the next power of two and cut to ``n``: an FFT of an arbitrary length (a large
    prime factor) costs up to 50x more, and made the noise dominate data loading."""
    size = 1 << max(0, n - 1).bit_length()
    spectrum = np.fft.rfft(rng.standard_normal(size))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = np.inf  # no DC
    return _unit_power(np.fft.irfft(spectrum / np.sqrt(f), size)[:n])


def add_noise(waveform: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add a random white/pink noise mix at exactly ``snr_db`` relative to the signal's power."""
    n = len(waveform)
    mix = rng.uniform(0.0, 1.0)
    noise = _unit_power(mix * _unit_power(rng.standard_normal(n)) + (1 - mix) * pink_noise(n, rng))
    signal_power = float(np.mean(waveform.astype(np.float64) ** 2))
    scale = math.sqrt(signal_power / 10 ** (snr_db / 10))
    return (waveform + scale * noise).astype(np.float32)


NARROWBAND_RATE = 8000
"""The sample rate of a telephone-band copy (:func:`narrowband`)."""


def narrowband(waveform: np.ndarray) -> np.ndarray:
    """``waveform`` as 8 kHz audio would sound at 16 kHz: resampled down (the resampler's
    low-pass removes everything above 4 kHz) and back up, the same length."""
    down = resample(np.ascontiguousarray(waveform, dtype=np.float32), SAMPLE_RATE, NARROWBAND_RATE)
    up = resample(down, NARROWBAND_RATE, SAMPLE_RATE)[: len(waveform)]
    return np.pad(up, (0, len(waveform) - len(up)))


class WaveformAugment:
    """Speed perturbation, additive noise, then a telephone-band copy, on one waveform
    ``(samples,)`` float32.

    Speed: one of ``config.speeds`` chosen uniformly (speed 1.1 gives ``len / 1.1`` samples).
    Noise: with probability ``noise_prob``, a white/pink mix at an SNR drawn uniformly from
    ``snr_db``. Narrowband: with probability ``narrowband_prob``, :func:`narrowband` (the noise
    went through the phone too). Deterministic for a given ``rng`` state.
    """

    def __init__(self, config: AugmentConfig):
        self.config = config

    def __call__(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        out = np.asarray(waveform, dtype=np.float32)
        if c.speed_perturb and c.speeds:
            out = change_speed(out, c.speeds[int(rng.integers(len(c.speeds)))])
        if c.noise and rng.random() < c.noise_prob:
            out = add_noise(out, rng.uniform(c.snr_db[0], c.snr_db[1]), rng)
        if c.narrowband_prob and rng.random() < c.narrowband_prob:
            out = narrowband(out)
        return out


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019, without time warping) on MFCC batches.

    Input ``feats`` ``(batch, n_mfcc, frames)`` and ``frame_lengths`` ``(batch,)`` valid frames;
    output the same shape. Each row gets ``freq_masks`` bands of 0..``freq_width`` coefficients
    and ``time_masks`` spans of 0..``floor(time_width * frame_length)`` frames, set to 0 (the
    mean of normalised features), and only inside its valid frames. Identity in eval mode.

    The random numbers come from torch's global CPU generator (``torch.get_rng_state()``), whatever
    the device, so a checkpoint that saves that state resumes with the same masks; the draws are
    then moved to the device, so no host sync is needed.
    """

    def __init__(self, config: AugmentConfig):
        super().__init__()
        self.config = config

    def forward(self, feats: Tensor, frame_lengths: Tensor) -> Tensor:
        c = self.config
        if not self.training or not c.spec_augment or (c.freq_masks == 0 and c.time_masks == 0):
            return feats
        batch, n_coef, n_frames = feats.shape
        device = feats.device
        lengths = frame_lengths.to(device=device, dtype=torch.long).clamp(0, n_frames)
        frame_idx = torch.arange(n_frames, device=device)
        valid = frame_idx[None, :] < lengths[:, None]  # (batch, frames)

        # Frequency masks: (batch, n_coef) bool.
        u = torch.rand(2, batch, c.freq_masks).to(device)
        max_fw = torch.full((batch, 1), min(c.freq_width, n_coef), device=device)
        freq = _spans(
            u, max_fw, torch.full_like(max_fw, n_coef), torch.arange(n_coef, device=device)
        )

        # Time masks: (batch, frames) bool, each span inside the row's valid frames.
        u = torch.rand(2, batch, c.time_masks).to(device)
        max_tw = torch.floor(c.time_width * lengths.float()).long()[:, None]
        time = _spans(u, max_tw, lengths[:, None], frame_idx)

        mask = (freq[:, :, None] | time[:, None, :]) & valid[:, None, :]
        return feats.masked_fill(mask, 0.0)


def _spans(u: Tensor, max_width: Tensor, size: Tensor, positions: Tensor) -> Tensor:
    """Union of random spans per row: ``(batch, len(positions))`` bool.

    ``u``: ``(2, batch, n_spans)`` uniforms in [0, 1) for widths and starts; ``max_width`` and
    ``size``: ``(batch, 1)``. Width is uniform in ``0..max_width``, start in ``0..size - width``.
    """
    width = torch.minimum(torch.floor(u[0] * (max_width + 1)).long(), max_width)
    room = (size - width).clamp(min=0)
    start = torch.minimum(torch.floor(u[1] * (room + 1)).long(), room)
    p = positions[None, None, :]
    inside = (p >= start[..., None]) & (p < (start + width)[..., None])  # (batch, n_spans, n)
    return inside.any(dim=1)
