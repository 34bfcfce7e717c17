"""MFCC features as an ``nn.Module``, so feature extraction lives inside the model.

A checkpoint that holds the feature module maps a raw 16 kHz waveform to log-probabilities on its
own, and the features move to the GPU with the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio.transforms as T
from torch import nn

from stt.audio import SAMPLE_RATE


@dataclass
class FeatureConfig:
    """MFCC settings. Times are in milliseconds; ``n_fft`` is the next power of two >= window."""

    sample_rate: int = SAMPLE_RATE
    n_mfcc: int = 40
    n_mels: int = 64
    window_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 20.0
    f_max: float | None = 7600.0
    normalize: bool = True  # per-utterance mean/variance normalisation over time

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()

    def to_dict(self) -> dict:
        return asdict(self)


class MFCC(nn.Module):
    """Waveform -> (optionally normalised) MFCC frames.

    Input ``waveform``: ``(batch, samples)`` float32 at ``config.sample_rate``; ``lengths``:
    ``(batch,)`` valid samples per row (padding beyond is ignored), or None for full rows.
    Output: ``(features, frame_lengths)`` with features ``(batch, n_mfcc, frames)`` and
    ``frame_lengths`` ``(batch,)`` valid frames per row. Padded frames are zero.
    """

    def __init__(self, config: FeatureConfig | None = None):
        super().__init__()
        self.config = config or FeatureConfig()
        c = self.config
        self.mfcc = T.MFCC(
            sample_rate=c.sample_rate,
            n_mfcc=c.n_mfcc,
            log_mels=True,
            melkwargs={
                "n_fft": c.n_fft,
                "win_length": c.win_length,
                "hop_length": c.hop_length,
                "n_mels": c.n_mels,
                "f_min": c.f_min,
                "f_max": c.f_max,
                # No centring: a frame only ever sees its own samples, so a padded batch gives
                # exactly the frames of each utterance alone (and streaming can frame causally).
                "center": False,
            },
        )

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames produced for ``lengths`` samples: ``1 + (n - n_fft) // hop``, at least 1."""
        n_fft, hop = self.config.n_fft, self.config.hop_length
        return torch.div(lengths.clamp(min=n_fft) - n_fft, hop, rounding_mode="floor") + 1

    def forward(
        self, waveform: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.shape[-1] < self.config.n_fft:  # too short for one frame: pad with silence
            waveform = nn.functional.pad(waveform, (0, self.config.n_fft - waveform.shape[-1]))
        batch, samples = waveform.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=waveform.device)
        # Zero the padding so it cannot leak into the last valid frames through the window.
        sample_mask = torch.arange(samples, device=waveform.device)[None, :] < lengths[:, None]
        waveform = waveform * sample_mask
        # The STFT runs in fp32 even under autocast: bf16 log-mels lose too much precision.
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            feats = self.mfcc(waveform.float())  # (batch, n_mfcc, frames)
        frame_lengths = self.frame_lengths(lengths).clamp(max=feats.shape[-1])
        frame_mask = (
            torch.arange(feats.shape[-1], device=feats.device)[None, :] < frame_lengths[:, None]
        ).unsqueeze(1)  # (batch, 1, frames)
        if self.config.normalize:
            feats = normalize_per_utterance(feats, frame_mask)
        return feats * frame_mask, frame_lengths


def normalize_per_utterance(
    feats: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Zero-mean, unit-variance per utterance and coefficient, over valid frames only.

    ``feats``: ``(batch, n, frames)``; ``mask``: ``(batch, 1, frames)`` bool. Using the mask keeps
    a padded batch identical to each utterance processed alone.
    """
    mask = mask.to(feats.dtype)
    count = mask.sum(dim=-1, keepdim=True).clamp(min=1.0)
    mean = (feats * mask).sum(dim=-1, keepdim=True) / count
    var = (((feats - mean) * mask) ** 2).sum(dim=-1, keepdim=True) / count
    return (feats - mean) / torch.sqrt(var + eps)
