"""A traceable copy of the fused model, for export to ONNX and TorchScript.

:class:`~stt.fusion.FusedWaveNetCTC` is fast in PyTorch because it plans each batch in Python
(utterances packed end to end, per-utterance MFCC, lengths read with ``.tolist()``); a tracer
records that plan for one batch and replays it for every other. :class:`PortableWaveNetCTC`
computes the same function with the same folded weights (batch norm and residual scales folded,
the gate as one sigmoid) as a fixed graph of tensor operations whose shapes follow the input:
padded ``(batch, frames, channels)`` activations masked after every block (as the original
model does), each dilated convolution one matrix product over its taps side by side, so a
traced graph is valid for any batch size and length, and dynamic int8 quantisation (which
handles ``MatMul``) reaches every layer of the encoder.

The MFCC front end is inside the graph (:class:`PortableMFCC`): the short-time Fourier transform
is a strided ``conv1d`` with a fixed windowed DFT basis (ONNX has no complex numbers, and one
convolution is a plain, fast operator everywhere: onnxruntime's own ``STFT`` took 2.5x as long
on 7 s of audio), followed by the same power, mel, log and DCT
steps as :class:`stt.features.MFCC`, and its normalisation over the valid frames only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stt.features import NORM_EPS, FeatureConfig
from stt.fusion import FusedWaveNetCTC

_LOG_OFFSET = 1e-6  # torchaudio.transforms.MFCC's log_offset


def _size(x: Tensor, dim: int) -> Tensor:
    """``x.shape[dim]`` as a 0-d long tensor: traced as the input's size, not a constant."""
    return torch.as_tensor(x.shape[dim], dtype=torch.long)


class PortableMFCC(nn.Module):
    """Waveform -> normalised MFCC, time-major, as :class:`stt.features.MFCC` computes it.

    ``forward(waveform (batch, samples) float32 at 16 kHz, lengths (batch,) long)`` ->
    ``(features (batch, frames, n_mfcc), frame_lengths (batch,))`` with ``frames = 1 +
    (max(samples, n_fft) - n_fft) // hop``; frames past ``frame_lengths`` are zero.
    """

    def __init__(self, features: nn.Module):
        super().__init__()
        config: FeatureConfig = features.config
        self.config = config
        mfcc = features.mfcc
        spec = mfcc.MelSpectrogram.spectrogram
        self.n_fft, self.hop = int(spec.n_fft), int(spec.hop_length)
        self.mode = config.normalize_mode
        window = spec.window.detach().double()
        # torch.stft centres a window shorter than n_fft inside the frame; the basis covers the
        # window's taps only (the zeros around it would cost a quarter more size and time).
        self.window_start = (self.n_fft - window.numel()) // 2
        n = torch.arange(window.numel(), dtype=torch.float64) + self.window_start
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(k, n) / self.n_fft  # (freqs, window taps)
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2 freqs, taps)
        self.register_buffer("dft", basis.float()[:, None, :].contiguous())
        self.window = window.float()  # not a buffer: an export rebuilds ``dft`` from it
        self.register_buffer("mel_fb", mfcc.MelSpectrogram.mel_scale.fb.detach().float())
        self.register_buffer("dct", mfcc.dct_mat.detach().float())

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Frames for ``lengths`` samples: ``1 + (n - n_fft) // hop``, at least 1."""
        n = lengths.clamp(min=self.n_fft) - self.n_fft
        return torch.div(n, self.hop, rounding_mode="floor") + 1

    def raw(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Unnormalised MFCC ``(batch, frames, n_mfcc)`` and ``frame_lengths``: what
        torchaudio's MFCC gives each row cut to its length (valid frames only)."""
        samples = _size(waveform, 1)
        frames = self.frame_lengths(samples)
        frame_lengths = torch.minimum(self.frame_lengths(lengths), frames)
        positions = torch.arange(waveform.shape[1], device=waveform.device)
        waveform = waveform.float() * (positions[None, :] < lengths[:, None])
        # n_fft zeros on the right give every length (even under one frame) enough samples;
        # the extra frames they add are cut off.
        padded = F.pad(waveform, (0, self.n_fft))[:, None, self.window_start :]  # (batch, 1, .)
        spectrum = F.conv1d(padded, self.dft, stride=self.hop)[:, :, :frames]
        re, im = spectrum.transpose(1, 2).chunk(2, dim=2)  # (batch, frames, freqs) each
        power = re * re + im * im
        feats = torch.log(power @ self.mel_fb + _LOG_OFFSET) @ self.dct  # (batch, frames, n_mfcc)
        return feats, frame_lengths

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        feats, frame_lengths = self.raw(waveform, lengths)
        mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < frame_lengths[:, None]
        mask = mask[:, :, None].float()  # (batch, frames, 1)
        if self.mode == "utterance":  # sums in float64: onnxruntime adds up an hour in order
            x, m = feats.double(), mask.double()
            count = m.sum(dim=1, keepdim=True).clamp(min=1.0)
            mean = (x * m).sum(dim=1, keepdim=True) / count
            var = (((x - mean) * m) ** 2).sum(dim=1, keepdim=True) / count
            feats = ((x - mean) / torch.sqrt(var + NORM_EPS)).float()
        elif self.mode == "running":  # stt.features.normalize_running, in float64 as there
            x = feats.double()
            count = torch.cumsum(torch.ones_like(x[:, :, :1]), dim=1)
            mean = torch.cumsum(x, dim=1) / count
            var = (torch.cumsum(x * x, dim=1) / count - mean * mean).clamp(min=0.0)
            feats = ((x - mean) / torch.sqrt(var + NORM_EPS)).float()
        return feats * mask, frame_lengths


class PortableWaveNetCTC(nn.Module):
    """The fused model as one traceable graph (see the module docstring).

    ``forward(waveform (batch, samples) float32, lengths (batch,) long)`` and
    ``forward_features(features (batch, n_mfcc, frames) normalised MFCC, frame_lengths
    (batch,) long)`` return ``(log_probs (batch, out_frames, vocab) float32, out_lengths
    (batch,) long)``, as :class:`~stt.fusion.FusedWaveNetCTC` does; frames past
    ``out_lengths`` are arbitrary.
    """

    def __init__(self, fused: FusedWaveNetCTC):
        super().__init__()
        if fused.front_end is None:
            raise ValueError("these MFCC settings have no portable front end")
        self.config = fused.config
        self.vocab_size = fused.vocab_size
        self.frame_ms = fused.frame_ms
        self.front_end = PortableMFCC(fused.features)
        self.channels = fused.channels
        self.stride, self.proj_kernel = fused.stride, fused.proj_kernel
        self.proj_padding = tuple(fused.proj_padding)
        self.n_blocks = fused.n_blocks
        self.taps = list(fused.taps)
        kernels = [getattr(fused, f"conv_w{i}").shape[0] for i in range(self.n_blocks)]
        self.right = [(k - 1) * d - left for k, (left, d) in zip(kernels, self.taps, strict=True)]
        self.ln_eps = [None if ln is None else ln[2] for ln in fused.layer_norms]
        self.has_res = list(fused.has_res)
        self.head_ln_eps = fused.head_ln_eps
        for name, tensor in fused.named_buffers():
            if name.startswith(("features.", "front_end.")):
                continue
            if name.startswith("conv_w"):  # (k, C, 2C) -> (k C, 2C): all taps in one product
                tensor = tensor.reshape(-1, tensor.shape[-1])
            self.register_buffer(name, tensor.detach().clone().contiguous())

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        feats, frame_lengths = self.front_end(waveform, lengths)
        return self._encode(feats, frame_lengths)

    def forward_features(self, features: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self._encode(features.float().transpose(1, 2), frame_lengths)

    def mfcc(self, waveform: Tensor) -> Tensor:
        """Unnormalised MFCC ``(batch, n_mfcc, frames)`` of full rows ``(batch, samples)``, as
        ``features.mfcc`` (torchaudio) computes them: stt's long-audio windows normalise them
        with statistics of the whole recording, then call :meth:`forward_features`."""
        lengths = _size(waveform, 1).expand(waveform.shape[0])
        return self.front_end.raw(waveform, lengths)[0].transpose(1, 2)

    def _encode(self, tm: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``tm`` ``(batch, frames, n_mfcc)`` -> ``(log_probs, out_lengths)``."""
        frame_lengths = frame_lengths.long()
        frames = tm.shape[1]
        mask = torch.arange(frames, device=tm.device)[None, :] < frame_lengths[:, None]
        tm = tm * mask[:, :, None].float()
        s = self.stride
        out_lengths = torch.div(frame_lengths + s - 1, s, rounding_mode="floor")
        out_frames = torch.div(_size(tm, 1) + s - 1, s, rounding_mode="floor")
        if s == 1:
            windows = tm
        else:  # kernel 2s, stride s: output frame j reads input chunks j and j + 1 of s frames
            tm = F.pad(tm, (0, 0, self.proj_padding[0], self.proj_padding[1]))
            chunks = tm[:, : (out_frames + 1) * s].reshape(tm.shape[0], -1, s * tm.shape[2])
            windows = torch.cat([chunks[:, :-1], chunks[:, 1:]], dim=2)  # (batch, T, 2s n_mfcc)
        y = windows @ self.proj_w + self.proj_b  # (batch, T, C), the residual stream
        mask = torch.arange(y.shape[1], device=y.device)[None, :] < out_lengths[:, None]
        mask = mask[:, :, None].float()  # (batch, T, 1)
        y = y * mask
        c = self.channels
        skip = self.skip_b
        batch = _size(y, 0)
        positions = torch.arange(y.shape[1], device=y.device)[:, None]  # (T, 1)
        frames_read: dict[tuple[int, int], Tensor] = {}  # one gather index per tap layout
        for i in range(self.n_blocks):
            left, dilation = self.taps[i]
            w = getattr(self, f"conv_w{i}")
            taps = w.shape[0] // c
            x = F.pad(y, (0, 0, left, self.right[i]))
            if (taps, dilation) not in frames_read:  # output t reads frames t + j * dilation
                offsets = torch.arange(taps, device=y.device)[None, :] * dilation
                frames_read[(taps, dilation)] = (positions + offsets).reshape(-1)
            # All taps of every frame side by side with one gather (one graph node, where a
            # slice per tap cost ~6 nodes of index arithmetic each): (batch, T, taps * C).
            stacked = x.index_select(1, frames_read[(taps, dilation)]).reshape(batch, -1, taps * c)
            z = stacked @ w + getattr(self, f"conv_b{i}")  # (batch, T, 2C)
            eps = self.ln_eps[i]
            if eps is not None:
                z = F.layer_norm(
                    z, (2 * c,), getattr(self, f"ln_w{i}"), getattr(self, f"ln_b{i}"), eps
                )
            z = torch.sigmoid(z)  # filter half pre-scaled by -2: tanh(a) = 1 - 2 sigmoid(-2a)
            f, g = z[:, :, :c], z[:, :, c:]
            h = g - 2.0 * f * g  # (batch, T, C)
            skip = skip + h @ getattr(self, f"skip_w{i}")
            if self.has_res[i]:
                y = (y + h @ getattr(self, f"res_w{i}") + getattr(self, f"res_b{i}")) * mask
        hidden = torch.relu(skip) @ self.hidden_w + self.hidden_b
        if self.head_ln_eps is not None:
            hidden = F.layer_norm(
                hidden,
                (self.head_ln_w.shape[0],),
                self.head_ln_w,
                self.head_ln_b,
                self.head_ln_eps,  # a constant shape: a traced size cannot be one
            )
        logits = torch.relu(hidden) @ self.out_w + self.out_b
        return F.log_softmax(logits, dim=-1), out_lengths


class OnnxEntry(nn.Module):
    """The entry points of :class:`PortableWaveNetCTC` as one graph, for an ONNX file (which
    has one): ``(waveform, lengths, features, feature_lengths, mfcc_waveform)`` ->
    ``(log_probs, out_lengths, features_log_probs, features_out_lengths, mfcc)``. The exporter
    gives the last three inputs a one-frame default, so a caller with a waveform passes only
    the first two; stt's long-audio windows take each window's ``mfcc``, normalise it over the
    whole recording and pass it as ``features``."""

    def __init__(self, model: PortableWaveNetCTC):
        super().__init__()
        self.model = model

    def forward(
        self,
        waveform: Tensor,
        lengths: Tensor,
        features: Tensor,
        feature_lengths: Tensor,
        mfcc_waveform: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        log_probs, out_lengths = self.model(waveform, lengths)
        f_log_probs, f_out_lengths = self.model.forward_features(features, feature_lengths)
        return log_probs, out_lengths, f_log_probs, f_out_lengths, self.model.mfcc(mfcc_waveform)
