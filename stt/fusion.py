"""Inference-only rewrite of a trained :class:`~stt.model.WaveNetCTC`: same log-probs, less work.

:func:`fuse` returns a :class:`FusedWaveNetCTC`, a frozen copy that computes the same function
(to float round-off) in fewer, larger operations. What it changes, and why each step is exact:

* **Eval-mode batch norm folded into the convolution before it**: ``(W x - mean) * scale + bias``
  is ``(scale W) x + (bias - mean * scale)``, one affine map. Layer norm (per frame over
  channels) cannot be folded and is kept; dropout is the identity in eval mode.
* **Residual scale folded into weights**: every block computes ``x' = (x + r) * sqrt(1/2)``.
  Carrying ``y_l = x_l / sqrt(1/2)^l`` instead, block ``l`` scales its convolution's weights by
  ``sqrt(1/2)^l`` and its residual 1x1 convolution by ``sqrt(1/2)^-l``, and the stream update
  becomes an in-place ``y += h @ W_res + b``. The skip sum's ``1/sqrt(blocks)`` goes into the skip
  weights, and all skip biases into one bias added once.
* **Gate with one transcendental**: ``tanh(a) * sigmoid(b)`` becomes ``g - 2 * f * g`` with
  ``f, g = sigmoid([-2a, b])``, since ``tanh(a) = 1 - 2 sigmoid(-2a)``; the ``-2`` goes into the
  filter half's weights (or its layer norm's affine map). One in-place sigmoid over the block's
  output and one ``addcmul`` replace ``tanh``, ``sigmoid`` and a product (``tanh`` is the slow one).
* **Time-major layout**: activations are ``(frames, channels)`` matrices, so a 1x1 convolution
  is one GEMM (``addmm``) and a dilated convolution with ``k`` taps is ``k`` accumulating GEMMs
  on row-shifted views of the same buffer (no copies, no im2col). PyTorch's CPU ``conv1d`` takes
  a slow non-MKLDNN path for one short utterance (batch 1 and under 20,480 input values), which
  is the case this avoids.
* **Packed batches**: the utterances of a batch are laid end to end in one buffer, separated by
  zero rows at least as many as any convolution reaches, and those rows are re-zeroed after each
  block, so each utterance sees exactly the zero padding it would see alone, and the padding of
  a length-sorted batch costs no work.
* **Time-major MFCC front end**: the same ``torch.stft`` as torchaudio's, then the power as
  ``re^2 + im^2`` (torchaudio's ``abs().pow(2)`` takes a square root first) and the mel and DCT
  matrices applied on the last dimension, without transposes, one utterance at a time (no work
  on padding, and the spectrum stays in cache), normalised with one ``var_mean``.

``FusedWaveNetCTC`` keeps :class:`~stt.model.WaveNetCTC`'s calling convention (``forward``,
``forward_features``, ``output_lengths``, ``config``, ``vocab_size``, ``features``, ``frame_ms``)
so :func:`stt.inference.infer_log_probs` can run either; it has no ``blocks`` and cannot train.
:func:`fused_for_inference` caches the fused copy of a model until its weights change.
"""

from __future__ import annotations

import copy
import math
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stt.features import NORM_EPS, normalize_running
from stt.model import ChannelLayerNorm, MaskedBatchNorm1d, WaveNetCTC


def _fold_norm(norm: nn.Module, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Fold an eval-mode :class:`MaskedBatchNorm1d` after a conv ``(out, in, k)`` into it.

    Returns ``(weight, bias)`` of the equivalent conv; other norms leave them as they are
    (a missing bias becomes zeros)."""
    weight = weight.detach().float().clone()  # callers scale these in place
    bias = weight.new_zeros(weight.shape[0]) if bias is None else bias.detach().float().clone()
    if isinstance(norm, MaskedBatchNorm1d):
        scale = norm.weight.detach().float() * torch.rsqrt(norm.running_var.float() + norm.eps)
        weight = weight * scale[:, None, None]
        bias = (bias - norm.running_mean.float()) * scale + norm.bias.detach().float()
    return weight, bias


def _layer_norm_params(norm: nn.Module) -> tuple[Tensor, Tensor, float] | None:
    if isinstance(norm, ChannelLayerNorm):
        ln = norm.norm
        return ln.weight.detach().float(), ln.bias.detach().float(), float(ln.eps)
    return None


class _FusedFrontEnd(nn.Module):
    """:class:`stt.features.MFCC` computed time-major: ``(batch, samples)`` ->
    ``((batch, frames, n_mfcc) features, (batch,) frame lengths)``, same values."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.config = features.config
        mfcc = features.mfcc
        spec = mfcc.MelSpectrogram.spectrogram
        self.n_fft, self.hop = int(spec.n_fft), int(spec.hop_length)
        window = spec.window.detach().float()
        self.win = int(window.numel())
        self.register_buffer("window", window)
        self.register_buffer("mel_fb", mfcc.MelSpectrogram.mel_scale.fb.detach().float())
        self.register_buffer("dct", mfcc.dct_mat.detach().float())
        self.frame_lengths = features.frame_lengths

    @staticmethod
    def supports(features: nn.Module) -> bool:
        """Whether the MFCC settings are the ones this front end reproduces."""
        mfcc = getattr(features, "mfcc", None)
        try:
            spec = mfcc.MelSpectrogram.spectrogram
            return (
                mfcc.log_mels
                and spec.power == 2.0
                and not spec.normalized
                and not spec.center
                and spec.pad == 0
                and spec.onesided
                and spec.window.numel() <= spec.n_fft
            )
        except AttributeError:
            return False

    def forward(self, waveform: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        batch, samples = waveform.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=waveform.device)
        frames = 1 + (max(samples, self.n_fft) - self.n_fft) // self.hop
        frame_lengths = self.frame_lengths(lengths).clamp(max=frames)
        if batch == 1 and int(lengths[0]) >= samples:
            return self.utterance(waveform[0])[None], frame_lengths
        # One utterance at a time: no work on padding, and each one's spectrum stays in cache.
        feats = waveform.new_zeros(batch, frames, self.dct.shape[1], dtype=torch.float32)
        for b, (n, k) in enumerate(zip(lengths.tolist(), frame_lengths.tolist(), strict=True)):
            feats[b, :k] = self.utterance(waveform[b, :n])[:k]
        return feats, frame_lengths

    def utterance(self, waveform: Tensor) -> Tensor:
        """One utterance ``(samples,)`` -> normalised MFCC ``(frames, n_mfcc)``."""
        waveform = waveform.float()
        if waveform.shape[-1] < self.n_fft:  # as MFCC.forward: one frame of zero-padded audio
            waveform = F.pad(waveform, (0, self.n_fft - waveform.shape[-1]))
        # The same stft call as torchaudio's (same round-off); its (freq, frames) output is read
        # time-major through views.
        spectrum = torch.stft(
            waveform,
            self.n_fft,
            self.hop,
            win_length=self.win,
            window=self.window,
            center=False,
            return_complex=True,
        )
        spectrum = torch.view_as_real(spectrum).transpose(0, 1)  # (frames, freq, 2)
        re, im = spectrum[..., 0], spectrum[..., 1]
        power = torch.addcmul(re * re, im, im)  # (frames, n_fft // 2 + 1)
        feats = torch.log(power @ self.mel_fb + 1e-6) @ self.dct  # (frames, n_mfcc)
        mode = self.config.normalize_mode
        if mode == "utterance":
            var, mean = torch.var_mean(feats, dim=0, keepdim=True, correction=0)
            feats = (feats - mean) * torch.rsqrt(var + NORM_EPS)
        elif mode == "running":
            feats = normalize_running(feats.T).T
        return feats


class FusedWaveNetCTC(nn.Module):
    """A frozen, inference-only :class:`WaveNetCTC` (see the module docstring).

    ``forward(waveform (batch, samples), lengths (batch,))`` and ``forward_features(feats
    (batch, n_mfcc, frames), frame_lengths (batch,))`` return ``(log_probs (batch, out_frames,
    vocab) float32, out_lengths (batch,))`` like the original; frames past ``out_lengths`` are
    arbitrary. Weights are float32 on the original's device.
    """

    def __init__(self, model: WaveNetCTC):
        super().__init__()
        if model.training:
            raise ValueError("fuse an eval-mode model (call model.eval() first)")
        self.config = model.config
        self.vocab_size = model.vocab_size
        self.frame_ms = model.frame_ms
        # The original MFCC module too: stt.transcribe's window-by-window path calls it.
        self.features = copy.deepcopy(model.features)
        supported = _FusedFrontEnd.supports(self.features)
        self.front_end = _FusedFrontEnd(self.features) if supported else None
        c = model.config
        channels = c.channels
        self.channels = channels

        # Input projection as one GEMM over windows of `kernel` feature frames, `stride` apart.
        proj = model.input_proj
        self.stride, self.proj_kernel, self.proj_padding = (
            proj.stride,
            proj.kernel_size,
            proj.padding,
        )
        w = proj.conv.weight.detach().float()  # (channels, n_mfcc, kernel)
        self.register_buffer("proj_w", w.permute(2, 1, 0).reshape(-1, channels).contiguous())
        self.register_buffer("proj_b", proj.conv.bias.detach().float().clone())

        # Blocks: conv taps (k, C, 2C) with the norm and the residual scale folded in.
        s = math.sqrt(0.5)
        self.taps: list[tuple[int, int]] = []  # (left padding, dilation) per block
        self.layer_norms: list[tuple[Tensor, Tensor, float] | None] = []
        skip_bias = torch.zeros(channels, device=model.head.out.weight.device)
        n_blocks = len(model.blocks)
        for i, block in enumerate(model.blocks):
            weight, bias = _fold_norm(block.norm, block.conv.weight, block.conv.bias)
            weight = weight * s**i
            ln = _layer_norm_params(block.norm)
            if ln is None:  # the filter half's -2 (see the gate below) goes into the conv...
                weight[:channels] *= -2.0
                bias[:channels] *= -2.0
            else:  # ... or into the layer norm's affine map, which comes after it
                ln = (ln[0].clone(), ln[1].clone(), ln[2])
                ln[0][:channels] *= -2.0
                ln[1][:channels] *= -2.0
            self.register_buffer(f"conv_w{i}", weight.permute(2, 1, 0).contiguous())
            self.register_buffer(f"conv_b{i}", bias)
            self.layer_norms.append(ln)
            if ln is not None:
                self.register_buffer(f"ln_w{i}", ln[0])
                self.register_buffer(f"ln_b{i}", ln[1])
            self.taps.append((block.padding[0], block.dilation))
            if block.res is not None:
                res_w = block.res.weight.detach().float()[:, :, 0].T * s**-i
                self.register_buffer(f"res_w{i}", res_w.contiguous())
                self.register_buffer(f"res_b{i}", block.res.bias.detach().float() * s**-i)
            skip_w = block.skip.weight.detach().float()[:, :, 0].T * model.skip_scale
            self.register_buffer(f"skip_w{i}", skip_w.contiguous())
            skip_bias += block.skip.bias.detach().float() * model.skip_scale
        self.n_blocks = n_blocks
        self.has_res = [block.res is not None for block in model.blocks]
        self.register_buffer("skip_b", skip_bias)
        self.left = max(left for left, _ in self.taps)
        self.right = max(b.padding[1] for b in model.blocks)
        self.gap = max(self.left, self.right)  # zero rows between packed utterances

        head = model.head
        weight, bias = _fold_norm(head.norm, head.hidden.weight, head.hidden.bias)
        self.register_buffer("hidden_w", weight[:, :, 0].T.contiguous())
        self.register_buffer("hidden_b", bias)
        ln = _layer_norm_params(head.norm)
        self.head_ln_eps = None if ln is None else ln[2]
        if ln is not None:
            self.register_buffer("head_ln_w", ln[0])
            self.register_buffer("head_ln_b", ln[1])
        self.register_buffer("out_w", head.out.weight.detach().float()[:, :, 0].T.contiguous())
        self.register_buffer("out_b", head.out.bias.detach().float().clone())
        self.to(next(model.parameters()).device)
        self.eval()

    def train(self, mode: bool = True) -> FusedWaveNetCTC:
        if mode:
            raise RuntimeError("a fused model is for inference only; train the original model")
        return super().train(False)

    def forward(
        self, waveform: Tensor, lengths: Tensor | None = None, spec_augment: None = None
    ) -> tuple[Tensor, Tensor]:
        """``waveform`` ``(batch, samples)`` at 16 kHz -> ``(log_probs, out_lengths)``."""
        if spec_augment is not None:
            raise ValueError("a fused model is for inference: no spec_augment")
        if self.front_end is None:
            feats, frame_lengths = self.features(waveform, lengths)
        else:
            feats, frame_lengths = self.front_end(waveform, lengths)
            feats = feats.transpose(1, 2)
        return self.forward_features(feats, frame_lengths)

    def forward_features(self, feats: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``feats`` ``(batch, n_mfcc, frames)`` -> ``(log_probs (batch, out_frames, vocab),
        out_lengths (batch,))``.

        The batch runs packed: its utterances one after the other in a ``(rows, channels)``
        buffer, zero rows between them (:meth:`_project_packed`), so each layer is one GEMM per
        tap over the real frames and the gaps, never over a short utterance's padding.
        """
        frame_lengths = frame_lengths.to(device=self.proj_w.device, dtype=torch.long)
        out_frames = -(-feats.shape[2] // self.stride)
        out_lengths = torch.div(frame_lengths + self.stride - 1, self.stride, rounding_mode="floor")
        lengths = out_lengths.tolist()
        buf, starts = self._project_packed(feats, frame_lengths, lengths, out_frames)
        log_probs = self._head(self._run_blocks(buf, starts, lengths))  # (rows, vocab)
        return self._unpack(log_probs, starts, lengths, out_frames), out_lengths

    def _project_packed(
        self, feats: Tensor, frame_lengths: Tensor, lengths: list[int], out_frames: int
    ) -> tuple[Tensor, list[int]]:
        """The input projection of ``feats`` ``(batch, n_mfcc, frames)`` into the packed buffer
        ``(rows, channels)``: [left zeros][utt 0][gap zeros][utt 1]...[utt B-1][right zeros],
        utterance ``b`` holding its ``lengths[b]`` output frames from row ``starts[b]``.

        Frames past ``frame_lengths`` are zeroed first. The gaps (:attr:`gap` rows) are as wide
        as the widest tap reach, so no block of one utterance reads the next one's frames."""
        device = self.proj_w.device
        batch, _, frames = feats.shape
        tm = feats.float().transpose(1, 2)  # (batch, frames, n_mfcc)
        if bool((frame_lengths < frames).any()):
            tm = tm * (
                torch.arange(frames, device=device)[None, :, None] < frame_lengths[:, None, None]
            )
        s, k = self.stride, self.proj_kernel
        # Pad to the projection's padding (and whole windows), then view windows of k frames.
        tm = F.pad(tm, (0, 0, self.proj_padding[0], self.proj_padding[1])).contiguous()
        n_mfcc = tm.shape[-1]
        windows = tm.as_strided(
            (batch, out_frames, k * n_mfcc), (tm.stride(0), s * n_mfcc, 1)
        )  # (batch, out_frames, k * n_mfcc)
        starts, row = [], self.left
        for n in lengths:
            starts.append(row)
            row += n + self.gap
        end = row - self.gap  # one past the last utterance's last row
        buf = torch.zeros(end + self.right, self.channels, device=device)
        for b, n in enumerate(lengths):
            torch.addmm(
                self.proj_b, windows[b, :n], self.proj_w, out=buf[starts[b] : starts[b] + n]
            )
        return buf, starts

    def _run_blocks(self, buf: Tensor, starts: list[int], lengths: list[int]) -> Tensor:
        """The gated dilated blocks over the packed buffer (updated in place: it holds the
        residual stream); returns the sum of their skip outputs ``(rows, channels)``, rows
        counted from the first utterance's first frame."""
        device = buf.device
        end = buf.shape[0] - self.right
        rows = end - self.left
        y = buf[self.left : end]  # (rows, channels), the residual stream (scaled, see above)
        gaps = None
        if len(lengths) > 1:  # the gap rows must stay zero for the next block's taps
            gaps = (
                torch.cat(
                    [
                        torch.arange(st + n, st + n + self.gap, device=device)
                        for st, n in zip(starts[:-1], lengths[:-1], strict=True)
                    ]
                )
                - self.left
            )
        c = self.channels
        skip = None
        for i in range(self.n_blocks):
            left, dilation = self.taps[i]
            w, bias = getattr(self, f"conv_w{i}"), getattr(self, f"conv_b{i}")
            first = self.left - left
            z = torch.addmm(bias, buf[first : first + rows], w[0])
            for j in range(1, w.shape[0]):
                a = first + j * dilation
                z.addmm_(buf[a : a + rows], w[j])
            ln = self.layer_norms[i]
            if ln is not None:
                z = F.layer_norm(
                    z, (2 * c,), getattr(self, f"ln_w{i}"), getattr(self, f"ln_b{i}"), ln[2]
                )
            z.sigmoid_()  # filter half pre-scaled by -2: tanh(a) = 1 - 2 sigmoid(-2a)
            h = torch.addcmul(z[:, c:], z[:, :c], z[:, c:], value=-2.0)  # (rows, channels)
            if skip is None:
                skip = torch.addmm(self.skip_b, h, getattr(self, f"skip_w{i}"))
            else:
                skip.addmm_(h, getattr(self, f"skip_w{i}"))
            if self.has_res[i]:
                y.addmm_(h, getattr(self, f"res_w{i}"))
                y.add_(getattr(self, f"res_b{i}"))
                if gaps is not None:
                    y.index_fill_(0, gaps, 0.0)
        return skip

    def _head(self, skip: Tensor) -> Tensor:
        """The CTC head: summed skips ``(rows, channels)`` -> log-probs ``(rows, vocab)``."""
        hidden = torch.addmm(self.hidden_b, skip.relu_(), self.hidden_w)
        if self.head_ln_eps is not None:
            hidden = F.layer_norm(
                hidden, (hidden.shape[-1],), self.head_ln_w, self.head_ln_b, self.head_ln_eps
            )
        logits = torch.addmm(self.out_b, hidden.relu_(), self.out_w)
        return F.log_softmax(logits, dim=1)

    def _unpack(
        self, log_probs: Tensor, starts: list[int], lengths: list[int], out_frames: int
    ) -> Tensor:
        """Packed ``(rows, vocab)`` -> ``(batch, out_frames, vocab)``; frames past an
        utterance's length are copies of other rows (arbitrary, as documented)."""
        batch = len(lengths)
        if batch == 1 and lengths[0] == out_frames:
            return log_probs.unsqueeze(0)
        index = torch.zeros(batch, out_frames, dtype=torch.long)
        for b, n in enumerate(lengths):
            index[b, :n] = torch.arange(starts[b] - self.left, starts[b] - self.left + n)
        out = log_probs.index_select(0, index.view(-1).to(log_probs.device))
        return out.view(batch, out_frames, -1)

    def output_lengths(self, sample_lengths: Tensor) -> Tensor:
        """Output frames for waveforms of ``sample_lengths`` samples (as the original's)."""
        frames = self.features.frame_lengths(torch.as_tensor(sample_lengths))
        return torch.div(frames + self.stride - 1, self.stride, rounding_mode="floor")

    def describe(self) -> str:
        c = self.config
        return (
            f"FusedWaveNetCTC (inference): {self.n_blocks} blocks x {c.channels} channels, "
            f"output every {self.frame_ms:g} ms, {'causal' if c.causal else 'non-causal'}, "
            f"{c.norm} norm folded, vocab {self.vocab_size}"
        )


def fuse(model: WaveNetCTC) -> FusedWaveNetCTC:
    """An equivalent, faster, inference-only copy of an eval-mode ``model`` (float32)."""
    with torch.no_grad():
        return FusedWaveNetCTC(model)


def can_fuse(model: nn.Module) -> bool:
    """Whether :func:`fuse` handles ``model``: an eval-mode float32 :class:`WaveNetCTC` (not a
    subclass, which may compute something else)."""
    if type(model) is not WaveNetCTC or model.training:
        return False
    return all(p.dtype == torch.float32 for p in model.parameters())


class _Cached:
    """A fused copy and what it was made from: the model's tensors, their storage and versions
    (an optimiser step, ``load_state_dict`` or ``.to()`` changes one of them)."""

    def __init__(self, model: nn.Module, fused: FusedWaveNetCTC) -> None:
        self.fused = fused
        self.device = fused.proj_w.device
        self.tensors = [*model.parameters(), *model.buffers()]
        self.state = [(t.data_ptr(), t._version) for t in self.tensors]

    def matches(self, model: nn.Module, device: torch.device | None) -> bool:
        if model.training:
            return False
        if device is not None and (
            device.type != self.device.type
            or device.index not in (None, self.device.index)  # "cuda" means the current one
        ):
            return False
        return all(
            (t.data_ptr(), t._version) == state
            for t, state in zip(self.tensors, self.state, strict=True)
        )


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fused_for_inference(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """``model`` moved to ``device`` (None: where it is) in eval mode, as its fused copy when
    :func:`can_fuse` allows. The copy is made once and reused while the model's weights stay
    the same: checking that costs microseconds, where ``.to()`` and ``.eval()`` on every call of
    a batch-1 loop cost milliseconds."""
    device = torch.device(device) if device is not None else None
    cached = _CACHE.get(model)
    if cached is not None and cached.matches(model, device):
        return cached.fused
    model = (model.to(device) if device is not None else model).eval()
    if not can_fuse(model):
        return model
    fused = fuse(model)
    try:
        _CACHE[model] = _Cached(model, fused)
    except RuntimeError:  # inference tensors have no version counter: do not cache
        pass
    return fused
