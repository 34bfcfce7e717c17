"""MFCC features as an ``nn.Module``, so feature extraction lives inside the model.

A checkpoint that holds the feature module maps a raw 16 kHz waveform to log-probabilities on its
own, and the features move to the GPU with the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchaudio.transforms as T
from torch import nn

from stt.audio import SAMPLE_RATE

NORMALIZE_MODES = ("utterance", "running", "none")


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
    # Mean/variance normalisation over time: "utterance" (whole utterance; True), "running"
    # (statistics of frames 0..t only, so a stream can compute it exactly) or "none" (False).
    normalize: bool | str = True

    def __post_init__(self) -> None:
        if self.normalize_mode not in NORMALIZE_MODES:
            raise ValueError(
                f"features.normalize must be one of {', '.join(NORMALIZE_MODES)} "
                f"(or true/false), not {self.normalize!r}"
            )

    @property
    def normalize_mode(self) -> str:
        if isinstance(self.normalize, bool):
            return "utterance" if self.normalize else "none"
        return str(self.normalize)

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
        mode = self.config.normalize_mode
        if mode == "utterance":
            feats = normalize_per_utterance(feats, frame_mask)
        elif mode == "running":
            feats = normalize_running(feats)
        return feats * frame_mask, frame_lengths


NORM_EPS = 1e-5
"""Added to the variance before the square root in every normalisation: the per-utterance one
here, its streamed statistics (:class:`UtteranceStats`), the running one, and the fused and
exported copies of the model (``stt.fusion``, ``stt.portable``), which must all agree."""


def normalize_per_utterance(
    feats: torch.Tensor, mask: torch.Tensor, eps: float = NORM_EPS
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


class UtteranceStats:
    """The mean and standard deviation :func:`normalize_per_utterance` would use, gathered
    piece by piece, so a file too long for one pass is normalised exactly as a whole-file pass.

    Pieces are merged with Chan et al.'s parallel update (float64), which stays accurate for an
    hour of frames where a running sum of squares would not.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None  # (n,)
        self.m2: np.ndarray | None = None  # (n,) sum of squared deviations

    def add(self, feats: np.ndarray) -> None:
        """Fold in the raw features ``(n, frames)`` of the next piece."""
        x = np.asarray(feats, dtype=np.float64)
        n = x.shape[1]
        if not n:
            return
        mean = x.mean(axis=1)
        m2 = ((x - mean[:, None]) ** 2).sum(axis=1)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * n / total
        self.count = total

    def mean_std(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)``, each ``(n, 1)`` float32, the std with :data:`NORM_EPS` inside."""
        if self.mean is None:
            raise ValueError("no frames were added")
        var = self.m2 / max(self.count, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device)[:, None]
        std = torch.sqrt(torch.tensor(var, dtype=torch.float32, device=device) + NORM_EPS)
        return mean, std[:, None]


def normalize_running(feats: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Normalise frame ``t`` by the mean and variance of frames ``0..t`` of its utterance.

    Causal, so a streaming front end that keeps three running sums (count, sum, sum of squares;
    see :class:`RunningNormState`) reproduces it exactly: this is that state run over the whole
    utterance at once. Padding lies after the valid frames and therefore never reaches them.
    """
    return RunningNormState()(feats, eps)


class RunningNormState:
    """The running sums behind :func:`normalize_running`, advanced chunk by chunk for streaming.
    Sums are float64: an hour of frames must not lose precision."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.total: torch.Tensor | None = None  # (batch, n, 1) float64
        self.total_sq: torch.Tensor | None = None

    def rewind(self, start: int, feats: torch.Tensor) -> RunningNormState:
        """Step back to frame ``start`` (for overlapping windows), given the raw ``feats`` from
        ``start`` on, of which the first ``count - start`` were already seen; returns ``self``."""
        overlap = self.count - start
        if overlap < 0 or overlap > feats.shape[-1]:
            raise ValueError(f"cannot rewind from frame {self.count} to {start}")
        if overlap and self.total is not None:
            seen = feats[..., :overlap].double()
            self.total = self.total - seen.sum(dim=-1, keepdim=True)
            self.total_sq = self.total_sq - (seen * seen).sum(dim=-1, keepdim=True)
        self.count = start
        return self

    def __call__(self, feats: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
        """Normalise the next ``(batch, n, frames)`` chunk as the offline pass would."""
        x = feats.double()
        if self.total is None:
            self.total = torch.zeros_like(x[..., :1])
            self.total_sq = torch.zeros_like(x[..., :1])
        sums = self.total + x.cumsum(dim=-1)
        sums_sq = self.total_sq + (x * x).cumsum(dim=-1)
        count = torch.arange(
            self.count + 1, self.count + x.shape[-1] + 1, device=x.device, dtype=x.dtype
        )
        mean = sums / count
        var = (sums_sq / count - mean * mean).clamp(min=0.0)
        if x.shape[-1]:
            self.total, self.total_sq = sums[..., -1:], sums_sq[..., -1:]
            self.count += x.shape[-1]
        return ((x - mean) / torch.sqrt(var + eps)).to(feats.dtype)
