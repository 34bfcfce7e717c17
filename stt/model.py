"""WaveNet-style acoustic model with a CTC head: waveform -> per-frame character log-probs.

The encoder follows WaveNet (van den Oord et al., 2016, "WaveNet: A Generative Model for Raw
Audio", arXiv:1609.03499) as adapted to recognition by speech-to-text-wavenet (Namju Kim,
github.com/buriburisuri/speech-to-text-wavenet): MFCC frames go through a 1x1 input projection,
then ``stacks`` repetitions of a list of dilated 1-D convolutions, each a residual block with a
gated unit ``tanh(filter) * sigmoid(gate)``, a residual 1x1 convolution and a skip 1x1
convolution. The sum of the skips feeds a small 1x1 head that emits log-probabilities over the
vocabulary (CTC blank included) for every output frame.

Additions to the seed design:

* ``stride`` > 1 reduces time at the front with a strided convolution (2 -> 20 ms CTC frames),
  which halves the encoder's cost and doubles its receptive field in seconds.
* ``causal`` pads every convolution on the left only, so an output frame never depends on audio
  after its own time (the precondition for streaming with cached states).
* Padded frames of a batch are zeroed after the input projection and after every block, and the
  "batch" norm takes its statistics over valid frames only, so each utterance of a padded batch
  gets (in eval mode) the log-probs it would get alone.

Shapes: ``batch`` utterances, ``samples`` at 16 kHz, ``frames`` of the MFCC (10 ms hop),
``out_frames`` = ceil(frames / stride) emitted by the CTC head.

This is the training graph. The same network is executed by three twins, which must change
with it: :class:`stt.fusion.FusedWaveNetCTC` (inference: norms folded into the convolutions;
pinned equal by ``tests/test_fusion.py``), :class:`stt.streaming.StreamingEncoder` (causal
models chunk by chunk with cached states; ``tests/test_streaming.py``) and
:class:`stt.portable.PortableWaveNetCTC` (the traceable copy that ``stt export`` writes to ONNX
and TorchScript; ``tests/test_export.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stt.errors import ConfigError
from stt.features import MFCC, FeatureConfig

NORMS = ("batch", "layer", "none")


@dataclass
class ModelConfig:
    """Architecture of :class:`WaveNetCTC`. Frame counts are in feature frames (``hop_ms``)."""

    channels: int = 128  # residual (and skip) channels
    kernel_size: int = 7  # taps of each dilated convolution
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    stacks: int = 3  # the dilation list is repeated `stacks` times
    stride: int = 1  # time reduction at the front (2 -> CTC at 20 ms frames)
    causal: bool = False  # left-only padding everywhere (needed for streaming)
    dropout: float = 0.1
    norm: str = "batch"  # "batch" | "layer" (per frame over channels) | "none"
    head_channels: int = 128
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        positive = {
            "channels": self.channels,
            "kernel_size": self.kernel_size,
            "stacks": self.stacks,
            "stride": self.stride,
            "head_channels": self.head_channels,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {value}")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ConfigError(
                f"model.dilations must be a non-empty list of ints >= 1, got {list(self.dilations)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in NORMS:
            raise ConfigError(f"model.norm must be one of {', '.join(NORMS)}, got {self.norm!r}")


def model_config_from_dict(d: Mapping) -> ModelConfig:
    """Inverse of ``dataclasses.asdict(config)`` (as stored in checkpoints).

    Missing keys take their defaults (older checkpoints); unknown keys raise :class:`ConfigError`.
    Also accepts an OmegaConf ``DictConfig``.
    """
    d = dict(d)
    features = d.pop("features", None)
    _check_keys(d, ModelConfig, "model")
    if "dilations" in d:
        d["dilations"] = [int(x) for x in d["dilations"]]
    if features is None:
        features = FeatureConfig()
    elif not isinstance(features, FeatureConfig):
        features = dict(features)
        _check_keys(features, FeatureConfig, "model.features")
        features = FeatureConfig(**features)
    return ModelConfig(**d, features=features)


def _check_keys(d: dict, cls: type, where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known keys: {', '.join(sorted(known))})"
        )


def frame_mask(lengths: Tensor, frames: int, dtype: torch.dtype) -> Tensor:
    """``(batch, 1, frames)`` mask of ``dtype``: 1 on the first ``lengths[b]`` frames, else 0."""
    positions = torch.arange(frames, device=lengths.device)
    return (positions[None, :] < lengths[:, None]).unsqueeze(1).to(dtype)


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm over ``(batch, channels, frames)`` whose training statistics skip padded frames.

    ``nn.BatchNorm1d`` would average the padding in, so its running statistics would depend on
    how much padding the training batches had. In eval mode this is exactly ``BatchNorm1d``. It is
    deliberately not a ``_BatchNorm`` subclass: ``SyncBatchNorm.convert_sync_batchnorm`` would
    replace it with a module that takes no mask.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x`` ``(batch, channels, frames)``, ``mask`` ``(batch, 1, frames)`` -> like ``x``."""
        xf = x.float()  # statistics in fp32 even under autocast
        if self.training:
            m = mask.float()
            count = m.sum().clamp(min=1.0)
            mean = (xf * m).sum(dim=(0, 2)) / count
            var = (((xf - mean[None, :, None]) * m) ** 2).sum(dim=(0, 2)) / count
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1.0)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        y = (xf - mean[None, :, None]) * scale[None, :, None] + self.bias[None, :, None]
        return y.to(x.dtype)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels, separately for every frame (so it works frame by frame)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x`` ``(batch, channels, frames)`` -> same shape; ``mask`` is unused."""
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class NoNorm(nn.Module):
    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return x


def make_norm(kind: str, channels: int) -> nn.Module:
    """A norm taking ``(x, mask)``: "batch", "layer" or "none"."""
    if kind == "batch":
        return MaskedBatchNorm1d(channels)
    if kind == "layer":
        return ChannelLayerNorm(channels)
    return NoNorm()


class InputProjection(nn.Module):
    """MFCC frames -> ``channels``, reducing time by ``stride``.

    Stride 1: a 1x1 convolution. Stride s > 1: kernel ``2s``, stride ``s``, with ``2s - 1`` frames
    of zero padding so that ``out_frames = ceil(frames / s)``. Output frame ``j`` stands for the
    input chunk ``[j*s, j*s + s)``: causal, it sees that chunk and the one before (left padding
    ``s``); non-causal, the chunk and ``s/2`` frames either side (left padding ``s // 2``).
    """

    def __init__(self, in_channels: int, channels: int, stride: int, causal: bool):
        super().__init__()
        self.stride = stride
        self.kernel_size = 1 if stride == 1 else 2 * stride
        left = stride if causal else stride // 2
        self.padding = (0, 0) if stride == 1 else (left, 2 * stride - 1 - left)
        self.conv = nn.Conv1d(in_channels, channels, self.kernel_size, stride=stride)

    def forward(self, feats: Tensor) -> Tensor:
        """``(batch, n_mfcc, frames)`` -> ``(batch, channels, ceil(frames / stride))``."""
        return self.conv(F.pad(feats, self.padding))


class ResidualBlock(nn.Module):
    """One WaveNet layer: dilated conv -> norm -> tanh * sigmoid -> dropout -> residual, skip.

    Padding keeps the frame count ("same"): ``(kernel_size - 1) * dilation`` zeros, split evenly
    (extra on the right) when non-causal, all on the left when causal.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        dilation: int,
        causal: bool,
        norm: str,
        dropout: float,
        residual: bool = True,
    ):
        super().__init__()
        total = (kernel_size - 1) * dilation
        left = total if causal else total // 2
        self.padding = (left, total - left)
        self.dilation = dilation
        self.conv = nn.Conv1d(
            channels, 2 * channels, kernel_size, dilation=dilation, bias=norm == "none"
        )
        self.norm = make_norm(norm, 2 * channels)
        self.dropout = nn.Dropout(dropout)
        # The last block's residual output feeds nothing, so it has no residual conv (an unused
        # parameter would also stall DDP, which waits for every gradient).
        self.res = nn.Conv1d(channels, channels, 1) if residual else None
        self.skip = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(batch, channels, frames)``, ``mask`` ``(batch, 1, frames)`` ->
        ``(residual output, skip contribution)``, both ``(batch, channels, frames)``."""
        z = self.norm(self.conv(F.pad(x, self.padding)), mask)
        filt, gate = z.chunk(2, dim=1)
        h = self.dropout(torch.tanh(filt) * torch.sigmoid(gate))
        if self.res is None:
            return x, self.skip(h)
        out = (x + self.res(h)) * math.sqrt(0.5) * mask
        return out, self.skip(h)


class CTCHead(nn.Module):
    """Skip sum -> ReLU -> 1x1 -> norm -> ReLU -> dropout -> 1x1 to the vocabulary (logits)."""

    def __init__(
        self, channels: int, head_channels: int, vocab_size: int, norm: str, dropout: float
    ):
        super().__init__()
        self.hidden = nn.Conv1d(channels, head_channels, 1, bias=norm == "none")
        self.norm = make_norm(norm, head_channels)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Conv1d(head_channels, vocab_size, 1)

    def forward(self, skip: Tensor, mask: Tensor) -> Tensor:
        """``(batch, channels, frames)`` -> logits ``(batch, vocab_size, frames)``."""
        h = self.norm(self.hidden(torch.relu(skip)), mask)
        return self.out(self.dropout(torch.relu(h)))


class WaveNetCTC(nn.Module):
    """Waveform -> MFCC -> WaveNet encoder -> CTC log-probs.

    ``vocab_size`` counts every output symbol, the CTC blank included. Attributes: ``config``,
    ``vocab_size``, ``features`` (the :class:`~stt.features.MFCC` module), ``input_proj``,
    ``blocks`` (``stacks * len(dilations)`` :class:`ResidualBlock`), ``head``.
    """

    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        if vocab_size < 2:
            raise ConfigError(f"vocab_size must be >= 2 (blank + one symbol), got {vocab_size}")
        self.config = config
        self.vocab_size = vocab_size
        c = config
        self.features = MFCC(c.features)
        self.input_proj = InputProjection(c.features.n_mfcc, c.channels, c.stride, c.causal)
        dilations = [d for _ in range(c.stacks) for d in c.dilations]
        self.blocks = nn.ModuleList(
            ResidualBlock(
                c.channels, c.kernel_size, d, c.causal, c.norm, c.dropout,
                residual=i < len(dilations) - 1,
            )
            for i, d in enumerate(dilations)
        )  # fmt: skip
        # Keeps the skip sum at unit scale whatever the depth.
        self.skip_scale = 1.0 / math.sqrt(len(self.blocks))
        self.head = CTCHead(c.channels, c.head_channels, vocab_size, c.norm, c.dropout)

    def forward(
        self,
        waveform: Tensor,
        lengths: Tensor | None = None,
        spec_augment: nn.Module | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``waveform`` ``(batch, samples)`` float32 at 16 kHz, ``lengths`` ``(batch,)`` valid
        samples (None: full rows) -> ``(log_probs, out_lengths)``.

        ``log_probs``: ``(batch, out_frames, vocab_size)`` float32 log-softmax; frames at or after
        ``out_lengths[b]`` are padding and hold arbitrary values. ``out_lengths``: ``(batch,)``
        long. ``spec_augment(feats, frame_lengths) -> feats``, if given, is applied to the
        normalised ``(batch, n_mfcc, frames)`` features before the encoder.
        """
        feats, frame_lengths = self.features(waveform, lengths)
        if spec_augment is not None:
            feats = spec_augment(feats, frame_lengths)
        return self.forward_features(feats, frame_lengths)

    def forward_features(self, feats: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``feats`` ``(batch, n_mfcc, frames)`` normalised MFCC, ``frame_lengths`` ``(batch,)``
        -> ``(log_probs (batch, out_frames, vocab_size) float32, out_lengths (batch,))``."""
        frame_lengths = frame_lengths.to(device=feats.device, dtype=torch.long)
        feats = feats * frame_mask(frame_lengths, feats.shape[-1], feats.dtype)
        x = self.input_proj(feats)
        out_lengths = self._strided(frame_lengths)
        mask = frame_mask(out_lengths, x.shape[-1], x.dtype)
        x = x * mask
        skip = torch.zeros_like(x)
        for block in self.blocks:
            x, s = block(x, mask)
            skip = skip + s
        logits = self.head(skip * self.skip_scale, mask)
        # fp32 log-softmax: CTC on bf16/fp16 log-probs is unstable.
        log_probs = F.log_softmax(logits.float(), dim=1).transpose(1, 2)
        return log_probs, out_lengths

    def _strided(self, frame_lengths: Tensor) -> Tensor:
        s = self.config.stride
        return torch.div(frame_lengths + s - 1, s, rounding_mode="floor")

    def output_lengths(self, sample_lengths: Tensor) -> Tensor:
        """Output frames for waveforms of ``sample_lengths`` samples: MFCC frames, then
        ``ceil(frames / stride)``."""
        return self._strided(self.features.frame_lengths(torch.as_tensor(sample_lengths)))

    def num_parameters(self) -> int:
        """Trainable and frozen parameters (the MFCC module has none)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def receptive_field_frames(self) -> int:
        """Feature frames (10 ms hops) that can influence one output frame.

        ``R = 1 + sum over blocks of (kernel_size - 1) * dilation`` output frames span
        ``(R - 1) * stride + K`` feature frames through the input projection of kernel ``K``
        (1 when stride is 1, else ``2 * stride``). Causal, all of it lies in the past.
        """
        c = self.config
        blocks = c.stacks * sum((c.kernel_size - 1) * d for d in c.dilations)
        return blocks * c.stride + self.input_proj.kernel_size

    @property
    def receptive_field_seconds(self) -> float:
        """Audio seconds behind one output frame: ``receptive_field_frames`` hops apart, the
        last one plus its MFCC analysis window (``(frames - 1) * hop + window``)."""
        f = self.config.features
        samples = (self.receptive_field_frames - 1) * f.hop_length + f.win_length
        return samples / f.sample_rate

    @property
    def frame_ms(self) -> float:
        """Milliseconds between output frames (``stride * hop_ms``)."""
        return self.config.stride * self.config.features.hop_ms

    def describe(self) -> str:
        """One line: size, receptive field, output frame rate, causality."""
        c = self.config
        return (
            f"WaveNetCTC: {self.num_parameters() / 1e6:.2f} M parameters, "
            f"{len(self.blocks)} blocks x {c.channels} channels, "
            f"receptive field {self.receptive_field_frames} frames "
            f"({self.receptive_field_seconds:.2f} s), output every {self.frame_ms:g} ms, "
            f"{'causal' if c.causal else 'non-causal'}, {c.norm} norm, vocab {self.vocab_size}"
        )
