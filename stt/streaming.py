"""Streaming transcription: audio chunks in, partial and final text out, with cached states.

A causal model (``model=causal``) never looks at audio after a frame's own time, so it can run on
a live stream. Recomputing its whole receptive field (about 7.5 s of audio for ``causal``) for
every new chunk would waste almost all of the work; instead, following Fast WaveNet (Paine et
al., 2016, "Fast Wavenet Generation Algorithm", arXiv:1611.09482), every layer keeps a queue of
the inputs its convolution still needs, and a chunk costs only its own new frames:

* MFCC: the samples not yet in a complete frame (a frame needs ``n_fft`` = 512 samples, the next
  one starts ``hop`` = 160 later), so frame ``i`` sees samples ``[hop*i, hop*i + n_fft)`` as in
  the offline pass; then :class:`stt.features.RunningNormState` normalises the new frames with
  the running statistics, exactly as :func:`stt.features.normalize_running` does.
* Input projection (stride ``s``, kernel ``2s``, left padding ``s``): the feature frames after
  the last whole group of ``s`` (starting as the ``s`` zero frames of the left padding).
* Every dilated block: its last ``(kernel_size - 1) * dilation`` input frames (starting as the
  zeros of its left padding).

Each layer convolves ``cache + new frames`` without padding, so the log-probabilities equal the
offline :meth:`stt.model.WaveNetCTC.forward` of the same audio within float round-off, whatever
the chunk sizes. At the end of the stream, :meth:`StreamingEncoder.finish` does what the offline
pass does with the tail: samples that do not fill a frame are dropped (audio shorter than one
frame is zero-padded to one frame), and the projection's right padding completes the last
half-filled group of ``s`` frames.

Memory is constant over time: the encoder's caches have fixed sizes (:meth:`state_sizes`). The
greedy decoder behind the partial results keeps the words decoded so far (the transcript itself)
and the log-probs of the word being spoken, nothing else. A beam-search final transcript needs
the log-probs of undecoded frames: they are decoded piecewise at safe cuts (pauses between
words, see :class:`stt.decoding.ChunkDecoder`), so at most ``max_pending_seconds`` are kept.
With a greedy decoder (``decoder.kind=greedy``) no log-probs are kept beyond the open word's,
which suits endless streams (end each utterance with :meth:`StreamingTranscriber.finish` or
:meth:`~StreamingTranscriber.reset` so the transcript does not grow forever).

pyctcdecode 0.5 has no public stateful beam search (its beams live inside one
``decode_beams`` call; only the LM start state can be passed in), so partial results are
greedy and beam search with the LM runs on the kept log-probs, piece by piece.

Streaming runs on the CPU, in eval mode (dropout off), one stream per object.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from stt.audio import SAMPLE_RATE, FileReader, as_chunk, load_audio, open_soundfile
from stt.checkpoint import read_model
from stt.decoding import (
    BeamSearchDecoder,
    ChunkDecoder,
    DecoderConfig,
    GreedyStream,
    Word,
    build_decoder,
    resolve_decoder,
)
from stt.errors import AudioError, ConfigError
from stt.features import RunningNormState
from stt.model import ChannelLayerNorm, NoNorm, WaveNetCTC
from stt.silence import StreamGate
from stt.text import Vocabulary
from stt.transcript import Transcript, segment_words

SHIPPED_STREAMING_MODEL = Path(__file__).resolve().parent / "assets" / "streaming" / "model.pt"
"""Where the shipped causal (streaming) model lives inside the package."""


def default_streaming_model_path() -> Path:
    """The default streaming model: ``$STT_STREAMING_MODEL`` if set, else the shipped one."""
    return Path(os.environ.get("STT_STREAMING_MODEL") or SHIPPED_STREAMING_MODEL)


def check_streamable(model: WaveNetCTC, name: str = "the model") -> None:
    """Raise :class:`ConfigError` unless ``model`` can stream exactly (causal convolutions and
    features normalised without looking ahead)."""
    if not model.config.causal:
        raise ConfigError(f"{name} is not causal; streaming needs a causal model (model=causal)")
    if model.config.features.normalize_mode == "utterance":
        raise ConfigError(
            f"{name} normalises its features over the whole utterance; streaming needs "
            "features.normalize=running (model=causal)"
        )


# ---------------------------------------------------------------------------------------------
# The encoder with cached states
# ---------------------------------------------------------------------------------------------


@dataclass
class _Block:
    """One residual block's weights, read once from the model, and its input cache.

    Time-major: a chunk is ``(frames, channels)``, so the dilated convolution is one matrix
    product of the ``kernel_size`` taps of every new frame (a strided view of cache + chunk)."""

    weight: Tensor  # (kernel * C, 2C): tap i, channel c at row i * C + c
    bias: Tensor | None  # (2C,)
    dilation: int
    kernel: int
    context: int  # (kernel - 1) * dilation frames of left context
    norm: Any  # callable (frames, 2C) -> same
    res_weight: Tensor | None  # (C, C) residual 1x1 conv, times sqrt(1/2) (None: last block)
    res_bias: Tensor | None
    cache: Tensor = field(default=None)  # (context, C) the last inputs


def _taps(weight: Tensor) -> Tensor:
    """Conv1d weight ``(out, in, kernel)`` -> ``(kernel * in, out)`` for ``taps @ weight``."""
    out, inp, k = weight.shape
    return weight.detach().permute(2, 1, 0).reshape(k * inp, out).contiguous()


def _norm_fn(module) -> Any:
    """The eval-mode norm of ``module`` as a function of ``(frames, channels)``, over detached
    copies of its weights: read once like every other weight here, and constants a trace of the
    step (:class:`stt.export.StreamingStep`) can embed."""
    if isinstance(module, ChannelLayerNorm):
        ln = module.norm
        shape, eps = tuple(ln.normalized_shape), ln.eps
        w, b = ln.weight.detach(), ln.bias.detach()
        return lambda z: torch.layer_norm(z, shape, w, b, eps)
    if isinstance(module, NoNorm):
        return lambda z: z
    # MaskedBatchNorm1d in eval mode: its running statistics, per channel, as its forward does.
    mean = module.running_mean.detach().clone()
    scale = (module.weight * torch.rsqrt(module.running_var + module.eps)).detach()
    bias = module.bias.detach()
    return lambda z: (z.float() - mean) * scale + bias


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, n: int, kernel: int, step: int,
          dilation: int) -> Tensor:  # fmt: skip
    """``n`` outputs per stream of a convolution over contiguous time-major ``x``, ``(frames,
    C)`` or ``(streams, frames, C)``, without padding: output ``t`` sees frames ``t * step + i *
    dilation``, ``i < kernel``. Returns ``(streams * n, out)``, stream by stream."""
    if x.dim() == 2:
        x = x[None]
    b, t, c = x.shape
    if b == 1 and dilation == 1:  # the taps of consecutive frames are one strided view
        taps = x.as_strided((n, kernel * c), (step * c, 1))
    else:
        taps = x.as_strided((b, n, kernel, c), (t * c, step * c, dilation * c, 1))
        taps = taps.reshape(b * n, kernel * c)
    return taps @ weight if bias is None else torch.addmm(bias, taps, weight)


class StreamingEncoder:
    """A causal :class:`~stt.model.WaveNetCTC` run chunk by chunk with cached layer states.

    :meth:`accept` takes any number of new 16 kHz samples and returns the log-probs of the
    output frames they complete, ``(new_frames, vocab)`` float32; :meth:`finish` returns the
    last frames and resets. The concatenation of all the returned frames equals
    ``model(waveform)[0][0]`` for the whole waveform (within float round-off). The weights are
    read from ``model`` once, here.

    ``threads``: torch intra-op threads while a chunk is processed (None: leave torch's
    setting). A chunk's matrices are far too small to split, so a second thread only adds
    wake-ups, which cost milliseconds when the cores are busy with other work.

    ``like``: an encoder of the same model whose weights this one shares (a server's streams
    then hold one copy of the weights, ~7 MB for ``causal``, and only their own caches).

    Raises:
        ConfigError: the model is not causal or normalises features per utterance.
    """

    def __init__(self, model: WaveNetCTC, name: str = "the model", threads: int | None = 1,
                 like: StreamingEncoder | None = None) -> None:  # fmt: skip
        if like is not None:
            if like.model is not model:
                raise ValueError("like= must be an encoder of the same model")
            self.__dict__.update(like.__dict__)  # the weights; reset() makes the state anew
            self._blocks = [replace(b) for b in like._blocks]  # own caches
            self.threads = threads
            self.reset()
            return
        check_streamable(model, name)
        self.model = model.cpu().eval()
        self.threads = threads
        c = model.config
        f = c.features
        self.n_fft, self.hop = f.n_fft, f.hop_length
        self.n_mfcc = f.n_mfcc
        self.running = f.normalize_mode == "running"
        self._mfcc = model.features.mfcc
        proj = model.input_proj
        self.stride, self.proj_kernel = proj.stride, proj.kernel_size
        self.proj_left, self.proj_right = proj.padding
        self._proj_w, self._proj_b = _taps(proj.conv.weight), proj.conv.bias.detach()
        self.channels = c.channels
        self._blocks = []
        half = math.sqrt(0.5)  # the residual scale, folded into the residual conv
        for block in model.blocks:
            res, conv = block.res, block.conv
            self._blocks.append(
                _Block(
                    weight=_taps(conv.weight),
                    bias=None if conv.bias is None else conv.bias.detach(),
                    dilation=block.dilation,
                    kernel=conv.kernel_size[0],
                    context=block.padding[0],
                    norm=_norm_fn(block.norm),
                    res_weight=None if res is None else _taps(res.weight) * half,
                    res_bias=None if res is None else res.bias.detach() * half,
                )
            )
        # The skip convs of all blocks (and the skip scale) as one product of the gated units.
        scale = model.skip_scale
        self._skip_w = torch.cat([_taps(b.skip.weight) for b in model.blocks]) * scale
        self._skip_b = sum(b.skip.bias.detach() for b in model.blocks) * scale
        head = model.head
        self._hidden_w = _taps(head.hidden.weight)
        self._hidden_b = None if head.hidden.bias is None else head.hidden.bias.detach()
        self._head_norm = _norm_fn(head.norm)
        self._out_w, self._out_b = _taps(head.out.weight), head.out.bias.detach()
        self.frame_seconds = model.frame_ms / 1000
        self.reset()

    # -- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the stream: the next sample is the first of a new utterance."""
        self._samples = np.zeros(0, dtype=np.float32)  # from sample hop * feature_frames on
        self.samples_seen = 0
        self.feature_frames = 0  # MFCC frames computed so far
        self.frames = 0  # output frames emitted so far
        self._norm = RunningNormState()
        self._proj_cache = torch.zeros(self.proj_left, self.n_mfcc)  # (frames, n_mfcc)
        for b in self._blocks:
            b.cache = torch.zeros(b.context, self.channels)

    def state_sizes(self) -> dict[str, int]:
        """Elements held per piece of state (for checking that memory does not grow)."""
        sizes = {"samples": len(self._samples), "projection": self._proj_cache.numel()}
        for i, b in enumerate(self._blocks):
            sizes[f"block{i}"] = b.cache.numel()
        if self._norm.total is not None:
            sizes["norm"] = self._norm.total.numel() + self._norm.total_sq.numel()
        return sizes

    @property
    def seconds(self) -> float:
        """Audio accepted so far, in seconds."""
        return self.samples_seen / SAMPLE_RATE

    # -- streaming --------------------------------------------------------------------------

    @torch.inference_mode()
    def accept(self, samples: np.ndarray | Tensor) -> Tensor:
        """Feed ``(n,)`` float32 16 kHz samples (any ``n``, even 0); returns the log-probs
        ``(new_frames, vocab)`` of the output frames completed so far and not yet returned."""
        with _torch_threads(self.threads):
            return self._accept(as_chunk(samples))

    def _accept(self, samples: np.ndarray) -> Tensor:
        framed = self._take(samples)
        return self._empty() if framed is None else self._step(self._features(framed))

    def _take(self, samples: np.ndarray) -> np.ndarray | None:
        """Take new samples: the samples of the feature frames they complete (None: none yet);
        the rest waits for the next chunk."""
        self.samples_seen += len(samples)
        buf = np.concatenate([self._samples, samples]) if len(self._samples) else samples
        n = 0 if len(buf) < self.n_fft else (len(buf) - self.n_fft) // self.hop + 1
        if not n:
            self._samples = buf.copy() if buf is samples else buf
            return None
        self._samples = buf[n * self.hop :].copy()
        return buf[: (n - 1) * self.hop + self.n_fft]

    @torch.inference_mode()
    def finish(self) -> Tensor:
        """End of stream: the last output frames ``(frames, vocab)``, as the offline pass gives
        them; then :meth:`reset`."""
        try:
            with _torch_threads(self.threads):
                return self._finish()
        finally:
            self.reset()

    def _finish(self) -> Tensor:
        feats = None
        if self.feature_frames == 0 and self.samples_seen > 0:
            # Shorter than one frame: the offline MFCC pads it with silence to one frame.
            pad = np.zeros(self.n_fft - len(self._samples), dtype=np.float32)
            feats = self._features(np.concatenate([self._samples, pad]))
        return self._step(feats, final=True)

    # -- the layers -------------------------------------------------------------------------

    def _empty(self) -> Tensor:
        return torch.zeros(0, self._out_w.shape[1])

    def _features(self, samples: np.ndarray) -> Tensor:
        """MFCC (normalised like the model's) of whole frames: ``(frames, n_mfcc)``."""
        return self._normalise(self._mfcc(torch.from_numpy(samples)[None]))

    def _normalise(self, mfcc: Tensor) -> Tensor:
        """This stream's new MFCC frames ``(1, n_mfcc, frames)`` -> normalised, ``(frames,
        n_mfcc)``."""
        if self.running:
            mfcc = self._norm(mfcc)
        self.feature_frames += mfcc.shape[-1]
        return mfcc[0].T

    def _step(self, feats: Tensor | None, final: bool = False) -> Tensor:
        """New normalised feature frames ``(frames, n_mfcc)`` (None: none) -> the log-probs of
        the output frames they complete; ``final``: the end of the stream. The network part of
        a chunk, which an exported step graph (:func:`stt.export.export_streaming`) replaces."""
        return self._encode(self._project(feats, final))

    def _project(self, feats: Tensor | None, final: bool = False) -> Tensor:
        """New normalised feature frames ``(frames, n_mfcc)`` -> new input-projection outputs
        ``(n, C)``."""
        buf = self._proj_cache if feats is None else torch.cat([self._proj_cache, feats])
        wanted = None
        if final:  # the offline right padding completes the last group of `stride` frames
            buf = F.pad(buf, (0, 0, 0, self.proj_right))
            wanted = -(-self.feature_frames // self.stride) - self.frames
        k, s = self.proj_kernel, self.stride
        n = 0 if len(buf) < k else (len(buf) - k) // s + 1
        if wanted is not None:
            n = min(n, wanted)
        self._proj_cache = buf[n * s :].clone()
        if not n:
            return torch.zeros(0, self.channels)
        return _conv(buf.contiguous(), self._proj_w, self._proj_b, n, k, s, 1)

    def _encode(self, x: Tensor) -> Tensor:
        """Input-projection frames ``(n, C)`` -> log-probs ``(n, vocab)``."""
        return _encode_together([self], x[None])[0]

    @staticmethod
    @torch.inference_mode()
    def accept_together(encoders: Sequence[StreamingEncoder],
                        chunks: Sequence[np.ndarray | Tensor]) -> list[Tensor]:  # fmt: skip
        """:meth:`accept` of one chunk for each of several streams (each encoder at most once):
        the same log-probs, but the streams of one model that complete the same number of
        frames go through the network as one batch. A chunk's step is mostly the Python and
        call overhead of small matrix products (15 blocks), so a server with many live streams
        pays it once per batch instead of once per stream.

        Raises:
            AudioError: a chunk is not 1-D or holds NaN/Inf (checked before any state changes).
        """
        chunks = [as_chunk(c) for c in chunks]
        if len({id(e) for e in encoders}) != len(encoders):
            raise ValueError("accept_together takes each stream's encoder at most once")
        out: list[Tensor | None] = [None] * len(encoders)
        with _torch_threads(encoders[0].threads if encoders else None):
            framed = [enc._take(c) for enc, c in zip(encoders, chunks, strict=True)]
            # MFCC: one call per group of streams of one model with as many samples to frame.
            feats: list[Tensor | None] = [None] * len(encoders)
            for members in _groups(encoders, framed, len).values():
                mfcc = encoders[members[0]]._mfcc(
                    torch.from_numpy(np.stack([framed[i] for i in members]))
                )
                for i, rows in zip(members, mfcc, strict=True):
                    feats[i] = encoders[i]._normalise(rows[None])
            # The network: one pass per group of streams completing as many frames.
            projected: list[Tensor | None] = [None] * len(encoders)
            for i, (enc, f) in enumerate(zip(encoders, feats, strict=True)):
                if f is None:
                    out[i] = enc._empty()
                elif type(enc)._step is not StreamingEncoder._step:  # another runtime's step
                    out[i] = enc._step(f)
                else:
                    projected[i] = enc._project(f)
            for members in _groups(encoders, projected, len).values():
                batch = _encode_together([encoders[i] for i in members],
                                         torch.stack([projected[i] for i in members]))  # fmt: skip
                for i, log_probs in zip(members, batch, strict=True):
                    out[i] = log_probs
        return out  # type: ignore[return-value]


def _groups(encoders: Sequence[StreamingEncoder], items: Sequence[Any],
            size: Callable[[Any], int]) -> dict[tuple[int, int], list[int]]:  # fmt: skip
    """The indices of the ``items`` that are not None, grouped by their encoder's model and
    ``size(item)``: the items that one batched call can take together."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (enc, item) in enumerate(zip(encoders, items, strict=True)):
        if item is not None:
            groups.setdefault((id(enc.model), size(item)), []).append(i)
    return groups


def _encode_together(encoders: Sequence[StreamingEncoder], x: Tensor) -> list[Tensor]:
    """Input-projection frames ``(streams, n, C)`` of streams of one model, each stream's
    encoder in ``encoders`` -> their log-probs, ``(n, vocab)`` each; each stream's caches
    advance. The weights are the first encoder's (the same model's as the others')."""
    lead = encoders[0]
    b, n, c = x.shape
    if not n:
        return [e._empty() for e in encoders]
    for e in encoders:
        e.frames += n
    x = x.reshape(b * n, c)
    gated = []
    for layer, block in enumerate(lead._blocks):
        caches = [e._blocks[layer].cache for e in encoders]
        stacked = caches[0][None] if b == 1 else torch.stack(caches)
        xx = torch.cat([stacked, x.view(b, n, c)], dim=1)  # (streams, context + n, C)
        for e, rows in zip(encoders, xx, strict=True):
            e._blocks[layer].cache = rows[n:]  # contiguous: whole rows of one stream
        z = block.norm(_conv(xx, block.weight, block.bias, n, block.kernel, 1, block.dilation))
        h = torch.tanh(z[:, :c]) * torch.sigmoid(z[:, c:])  # (streams * n, C)
        gated.append(h)
        if block.res_weight is not None:  # (x + res(h)) * sqrt(1/2)
            x = torch.addmm(block.res_bias, h, block.res_weight).add_(x, alpha=math.sqrt(0.5))
    skip = torch.addmm(lead._skip_b, torch.cat(gated, dim=1), lead._skip_w)
    h = torch.relu(skip) @ lead._hidden_w
    if lead._hidden_b is not None:
        h = h + lead._hidden_b
    logits = torch.addmm(lead._out_b, torch.relu(lead._head_norm(h)), lead._out_w)
    return list(F.log_softmax(logits.float(), dim=1).view(b, n, -1))  # (n, vocab) per stream


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (None: unchanged)."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# The transcriber
# ---------------------------------------------------------------------------------------------


@dataclass
class Partial:
    """What a stream has said so far: greedy ``text`` and ``words`` (times in seconds from the
    start of the utterance), ``seconds`` of audio accepted, and whether ``changed`` since the
    previous partial."""

    text: str
    words: list[Word]
    seconds: float
    changed: bool


class StreamingTranscriber:
    """Live transcription of one stream with a causal model.

    :meth:`accept` takes audio chunks of any size (16 kHz float32, or int16 PCM) and returns a
    :class:`Partial` (greedy, updated incrementally); :meth:`finish` returns the utterance's
    final :class:`~stt.transcript.Transcript` (decoded with ``decoder``: greedy, or beam search
    with an LM, which then restarts at pauses) and starts a new utterance; :meth:`reset` drops
    the current one. Use as a context manager (or :meth:`close`) to free a beam decoder.

    ``shared_beam``: one beam decoder (its LM loaded once) for many streams, as a server has;
    ``decoder`` must then describe it. ``like``: a transcriber of the same model whose encoder
    weights this one shares (see :class:`StreamingEncoder`).
    ``max_pending_seconds``: the most log-probs a beam-search final decode keeps undecoded
    (``min_pending_seconds``: decoded in pieces of at least this long, cut between words).
    ``max_pause``, ``max_segment_seconds``, ``max_segment_words``: subtitle segments of the
    final transcript, as :class:`stt.transcribe.Transcriber`. ``threads``: see
    :class:`StreamingEncoder`.

    Raises:
        ConfigError: the model is not streamable, or bad decoder settings.
    """

    def __init__(
        self,
        model: WaveNetCTC,
        vocab: Vocabulary,
        decoder: DecoderConfig | None = None,
        name: str = "the model",
        min_pending_seconds: float = 15.0,
        max_pending_seconds: float = 120.0,
        max_pause: float = 0.6,
        max_segment_seconds: float = 7.0,
        max_segment_words: int = 12,
        threads: int | None = 1,
        gate: bool = True,
        shared_beam: BeamSearchDecoder | None = None,
        like: StreamingTranscriber | None = None,
    ) -> None:
        if model.vocab_size != len(vocab):
            raise ConfigError(
                f"the model emits {model.vocab_size} labels but the vocabulary has {len(vocab)}"
            )
        self.encoder = StreamingEncoder(model, name, threads, like.encoder if like else None)
        self.vocab = vocab
        self.frame_seconds = self.encoder.frame_seconds
        frame_samples = round(self.frame_seconds * SAMPLE_RATE)
        self.gate = StreamGate(frame_samples) if gate else None
        self.decoder_config = decoder if decoder is not None else DecoderConfig()
        self.greedy = GreedyStream(vocab, self.frame_seconds)
        self._beam, self._owns_beam = shared_beam, shared_beam is None
        if shared_beam is None and self.decoder_config.kind != "greedy":
            self._beam = build_decoder(vocab, self.decoder_config, workers=1)
        self._pending = (min_pending_seconds, max_pending_seconds)
        self._segments = (max_pause, max_segment_seconds, max_segment_words)
        self.reset()

    def reset(self) -> None:
        """Drop the current utterance; the next chunk starts a new one."""
        self.encoder.reset()
        self.greedy.reset()
        if self.gate is not None:
            self.gate.reset()
        self._text = ""
        self._chunks = None
        if self._beam is not None:
            c = self.decoder_config
            self._chunks = ChunkDecoder(
                self._beam, self.vocab, self.frame_seconds, beam=True,
                token_min_logp=c.token_min_logp, min_pending_seconds=self._pending[0],
                max_pending_seconds=self._pending[1],
            )  # fmt: skip

    def state_sizes(self) -> dict[str, int]:
        """Elements held per piece of state, words excepted: the encoder's caches, the open
        word's frames and the log-prob frames waiting for the beam search."""
        sizes = self.encoder.state_sizes()
        sizes["open_word_frames"] = self.greedy.open_frames
        sizes["pending_frames"] = self._chunks._pending_frames if self._chunks else 0
        return sizes

    def accept(self, samples: np.ndarray | Tensor) -> Partial:
        """Feed ``(n,)`` samples; returns the partial transcript of the utterance so far."""
        samples = as_chunk(samples)  # a bad chunk is refused here, before any state changes
        if self.gate is not None:
            self.gate.hear(samples)
        return self._advance(self.encoder.accept(samples))

    @staticmethod
    def accept_together(transcribers: Sequence[StreamingTranscriber],
                        chunks: Sequence[np.ndarray | Tensor]) -> list[Partial]:  # fmt: skip
        """:meth:`accept` of one chunk for each of several streams (each at most once), their
        encoders run as one batch (:meth:`StreamingEncoder.accept_together`): the same partials
        as one call per stream, for a fraction of the time when there are many streams.

        The beam search of a final transcript's finished pieces is left out (it would hold up
        every stream of the batch): call :meth:`settle` of each transcriber whose
        :attr:`settle_due` is set, from another thread if need be; :meth:`finish` decodes what
        is still pending either way.

        Raises:
            AudioError: a chunk is not 1-D or holds NaN/Inf (before any stream changes).
        """
        chunks = [as_chunk(c) for c in chunks]
        for t, samples in zip(transcribers, chunks, strict=True):
            if t.gate is not None:
                t.gate.hear(samples)
        encoded = StreamingEncoder.accept_together([t.encoder for t in transcribers], chunks)
        return [t._advance(lp, settle=False) for t, lp in zip(transcribers, encoded, strict=True)]

    @property
    def settle_due(self) -> bool:
        """Whether enough log-probs wait for the beam search that :meth:`settle` should run."""
        return self._chunks is not None and self._chunks.due

    def settle(self) -> None:
        """Beam-decode the pending log-probs up to the last safe cut (bounds their memory)."""
        if self._chunks is not None:
            self._chunks.settle()

    def finish(self) -> Transcript:
        """End the utterance: its final transcript (times in seconds from its start); the
        transcriber is then ready for the next one."""
        duration = self.encoder.seconds
        if self.gate is not None:
            self.gate.finish()
        self._advance(self.encoder.finish())
        words = self.greedy.finish()
        text = " ".join(w.word for w in words)
        if self._chunks is not None:
            text, words = self._chunks.finish()
        words = [Word(w.word, min(w.start, duration), min(w.end, duration), w.confidence)
                 for w in words]  # fmt: skip
        self.reset()
        return Transcript(text, words, segment_words(words, *self._segments), duration)

    def _advance(self, log_probs: Tensor, settle: bool = True) -> Partial:
        lp = log_probs.numpy()
        if len(lp) and self.gate is not None:  # no words where there is no speech
            lp = self.gate.apply(lp, self.greedy.frames, self.vocab.blank_id)
        if len(lp):
            self.greedy.accept(lp)
            if self._chunks is not None:
                self._chunks.feed(lp, settle)
        text = self.greedy.text()
        changed, self._text = text != self._text, text
        return Partial(text, self.greedy.current_words(), self.encoder.seconds, changed)

    def close(self) -> None:
        """Free the beam decoder this transcriber built (a shared one stays open)."""
        if self._beam is not None and self._owns_beam:
            self._beam.close()

    def __enter__(self) -> StreamingTranscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_streaming_model(
    path: str | Path | None = None, decoder: DecoderConfig | dict | None = None, **kwargs: Any
) -> StreamingTranscriber:
    """A :class:`StreamingTranscriber` for the causal checkpoint at ``path`` (None: the shipped
    streaming model, ``stt/assets/streaming/model.pt``, or ``$STT_STREAMING_MODEL``).

    Decoder settings as :func:`stt.decoding.resolve_decoder`: a dict (or None) is laid over the
    ``decoder.yaml`` beside the checkpoint. ``kwargs`` go to :class:`StreamingTranscriber`.

    Raises:
        ConfigError: no path and no streaming model shipped, a model that is not causal, or bad
            decoder settings.
        CheckpointError: the checkpoint is missing or unreadable.
    """
    if path is None:
        path = default_streaming_model_path()
        if not path.is_file():
            raise ConfigError(
                f"no streaming model at {path}: pass --model CHECKPOINT of a causal model "
                "(trained with `stt train model=causal`)"
            )
    model, vocab = read_model(path)
    config = resolve_decoder(path, decoder)
    return StreamingTranscriber(model, vocab, config, name=str(path), **kwargs)


# ---------------------------------------------------------------------------------------------
# Audio sources, chunk by chunk
# ---------------------------------------------------------------------------------------------


def file_chunks(path: str | Path, chunk_samples: int) -> Iterator[np.ndarray]:
    """A file's 16 kHz mono samples in chunks of about ``chunk_samples`` (the last one shorter),
    read (and resampled) piece by piece, so memory does not grow with the file.

    Raises:
        AudioError: the file is missing, empty or unreadable.
    """
    path = Path(path)
    with open_soundfile(path) as handle:
        if handle.frames < 0:  # no length in the header (rare): decode it all
            waveform = load_audio(path)
            for start in range(0, len(waveform), max(1, chunk_samples)):
                yield waveform[start : start + max(1, chunk_samples)]
            return
        reader = FileReader(path, handle)
        step = -(-max(1, chunk_samples) // reader.up) * reader.up  # resampler alignment
        for start in range(0, reader.samples, step):
            yield reader.read(start, min(start + step, reader.samples)).copy()


def pcm_chunks(stream: BinaryIO, chunk_samples: int) -> Iterator[np.ndarray]:
    """Raw s16le mono 16 kHz PCM from a binary stream (stdin) in chunks of ``chunk_samples``
    (the last one shorter), as float32 in [-1, 1)."""
    size = 2 * max(1, chunk_samples)
    carry = b""
    while True:
        data = stream.read(size - len(carry))
        if not data:
            break
        data = carry + data
        whole = len(data) // 2 * 2
        carry = data[whole:]
        if whole:
            yield np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0


def microphone_chunks(chunk_samples: int) -> Iterator[np.ndarray]:
    """The default input device at 16 kHz mono, chunk by chunk, until Ctrl-C (which ends the
    stream, not the program). Needs the optional ``sounddevice`` package and PortAudio (never a
    dependency of stt).

    Raises:
        ConfigError: no sounddevice/PortAudio, or no input device.
    """
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise ConfigError(
            f"microphone input needs the sounddevice package and PortAudio ({exc})"
        ) from None
    try:
        with sounddevice.InputStream(
            samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=chunk_samples
        ) as mic:
            while True:
                try:
                    data, _ = mic.read(chunk_samples)
                except KeyboardInterrupt:
                    return
                yield data[:, 0].copy()
    except sounddevice.PortAudioError as exc:
        raise ConfigError(f"microphone: {exc}") from None


def audio_chunks(source: str | Path, chunk_samples: int) -> Iterator[np.ndarray]:
    """Chunks of ``source``: ``-`` is raw s16le 16 kHz mono PCM on stdin, ``mic:`` the
    microphone (if no such file exists), anything else an audio file."""
    if str(source) == "-":
        if sys.stdin is None or sys.stdin.closed:  # e.g. started with `<&-`
            raise AudioError("-: standard input is closed; pipe raw s16le 16 kHz PCM into it")
        return pcm_chunks(sys.stdin.buffer, chunk_samples)
    if str(source) == "mic:" and not Path(source).exists():
        return microphone_chunks(chunk_samples)
    return file_chunks(source, chunk_samples)


def paced(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The chunks no faster than real time (each one once its audio would have been spoken)."""
    start = time.monotonic()
    seconds = 0.0
    for chunk in chunks:
        seconds += len(chunk) / SAMPLE_RATE
        delay = start + seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield chunk


def transcribe_stream(
    transcriber: StreamingTranscriber, chunks: Iterable[np.ndarray]
) -> Iterator[Partial | Transcript]:
    """Feed ``chunks`` through ``transcriber``: yields a :class:`Partial` for every chunk that
    changed the text, then the final :class:`~stt.transcript.Transcript`."""
    for chunk in chunks:
        if not len(chunk):
            continue
        partial = transcriber.accept(chunk)
        if partial.changed:
            yield partial
    yield transcriber.finish()


__all__ = [
    "Partial",
    "StreamingEncoder",
    "StreamingTranscriber",
    "audio_chunks",
    "check_streamable",
    "default_streaming_model_path",
    "file_chunks",
    "load_streaming_model",
    "microphone_chunks",
    "paced",
    "pcm_chunks",
    "transcribe_stream",
]
