"""Transcription: any audio file (or waveform) -> text, word timestamps and subtitle segments.

:func:`load_model` gives a :class:`Transcriber` for a checkpoint (or the shipped default model);
:meth:`Transcriber.transcribe` turns one file or 16 kHz waveform into a :class:`Transcript`, and
:meth:`Transcriber.transcribe_many` runs many files, batching the short ones through
:mod:`stt.inference`.

Long audio is never loaded whole. It is read in overlapping windows (``window_seconds`` of audio
per model pass, with enough context on each side for the model's receptive field), and only the
central frames of each window are kept: because every layer of the model is frame-local apart
from its convolutions, the stitched log-probabilities equal those of one pass over the whole file.
The single non-local step, the per-utterance MFCC normalisation, uses statistics gathered over
the whole file in a first, cheap pass (features only). Files at other sample rates are resampled
window by window, each window read with enough extra native samples that the resampler's filter
sees what it would see in the whole file. Decoding follows the stitched frames, cut at frames
where no word can straddle the cut (see :class:`ChunkDecoder`), so memory stays bounded by the
window size whatever the file's length.
"""

from __future__ import annotations

import glob
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from stt.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, load_audio, open_audio, resample
from stt.decoding import DecoderConfig, Word, build_decoder
from stt.errors import AudioError, ConfigError, ManifestError, STTError
from stt.features import RunningNormState
from stt.inference import infer_log_probs, load_many, pick_device
from stt.model import WaveNetCTC
from stt.silence import gate_silence
from stt.text import Vocabulary

log = logging.getLogger(__name__)

SHIPPED_MODEL = Path(__file__).resolve().parent / "assets" / "default" / "model.pt"
"""Where the default model lives inside the package (used when no checkpoint is given)."""


def default_model_path() -> Path:
    """The default model: ``$STT_DEFAULT_MODEL`` if set (e.g. a model of your own), else the
    one shipped in the package."""
    return Path(os.environ.get("STT_DEFAULT_MODEL") or SHIPPED_MODEL)


_NORM_EPS = 1e-5  # the eps of stt.features.normalize_per_utterance


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class Segment:
    """A subtitle-sized run of words; ``start``/``end`` (seconds) are its first/last word's."""

    start: float
    end: float
    text: str
    words: list[Word]


@dataclass
class Transcript:
    """One file's (or waveform's) transcript. Times are seconds from the start of the audio."""

    text: str
    words: list[Word]
    segments: list[Segment]
    duration: float
    audio_path: str | None = None

    def to_dict(self) -> dict:
        """Plain JSON-ready data: text, duration, audio_path, segments (with their words) and
        words; times rounded to milliseconds."""

        def word(w: Word) -> dict:
            return {
                "word": w.word,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "confidence": round(w.confidence, 4),
            }

        return {
            "text": self.text,
            "duration": round(self.duration, 3),
            "audio_path": self.audio_path,
            "segments": [
                {
                    "id": i,
                    "start": round(s.start, 3),
                    "end": round(s.end, 3),
                    "text": s.text,
                    "words": [word(w) for w in s.words],
                }
                for i, s in enumerate(self.segments)
            ],
            "words": [word(w) for w in self.words],
        }


def segment_words(
    words: list[Word], max_pause: float = 0.6, max_seconds: float = 7.0, max_words: int = 12
) -> list[Segment]:
    """Cut words into subtitle segments: a new segment starts after a pause longer than
    ``max_pause`` seconds, or where the current one would last longer than ``max_seconds`` or
    hold more than ``max_words`` words."""
    segments: list[Segment] = []
    current: list[Word] = []

    def close() -> None:
        text = " ".join(w.word for w in current)
        segments.append(Segment(current[0].start, current[-1].end, text, list(current)))
        current.clear()

    for w in words:
        if current and (
            w.start - current[-1].end > max_pause
            or w.end - current[0].start > max_seconds
            or len(current) >= max_words
        ):
            close()
        current.append(w)
    if current:
        close()
    return segments


# ---------------------------------------------------------------------------------------------
# Reading audio window by window
# ---------------------------------------------------------------------------------------------


def open_soundfile(path: Path) -> sf.SoundFile:
    """Open ``path`` for reading; the same one-line errors as :func:`stt.audio.load_audio`."""
    handle = open_audio(path)
    if handle.frames == 0:
        handle.close()
        raise AudioError(f"{path}: audio has zero samples")
    return handle


class _ArrayReader:
    """A 16 kHz waveform already in memory, read by slices."""

    up = 1  # window starts need no alignment for resampling

    def __init__(self, waveform: np.ndarray) -> None:
        self.waveform = waveform
        self.samples = len(waveform)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.waveform[start:stop]

    def close(self) -> None:
        pass


class FileReader:
    """16 kHz mono samples of a file, read front to back in windows whose starts never decrease.

    Holds only the native-rate samples of the current window (plus resampling context). For a
    file at another rate, window ``[start, stop)`` (16 kHz samples, ``start`` a multiple of
    :attr:`up`) is resampled from the native samples it covers plus :attr:`pad` on each side,
    so every output sample is computed from the same input samples as in a whole-file
    :func:`stt.audio.resample`.
    """

    def __init__(self, path: Path, handle: sf.SoundFile) -> None:
        self.path = path
        self._file = handle
        self.rate = int(handle.samplerate)
        self.native_samples = int(handle.frames)
        g = math.gcd(self.rate, SAMPLE_RATE)
        self.up, self.down = SAMPLE_RATE // g, self.rate // g
        self.samples = -(-self.native_samples * self.up // self.down)  # ceil, as torchaudio
        # torchaudio's sinc filter reaches ceil(6 * down / (0.99 * min(up, down))) native
        # samples either side of an output sample; keep a multiple of `down` beyond that.
        reach = math.ceil(6 * self.down / (0.99 * min(self.up, self.down))) + 1
        self.pad = self.down * (-(-reach // self.down) + 1)
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # native index of self._buf[0]
        self._short_read = False

    def _native(self, start: int, stop: int) -> np.ndarray:
        """Native-rate mono samples ``[start, stop)``; ``start`` never decreases."""
        buf_end = self._buf_start + len(self._buf)
        if start >= buf_end:
            self._buf = np.zeros(0, dtype=np.float32)
            if start > buf_end:
                self._file.seek(start)
            self._buf_start = start
        else:
            self._buf = self._buf[start - self._buf_start :]
            self._buf_start = start
        need = stop - (self._buf_start + len(self._buf))
        if need > 0:
            data = self._file.read(need, dtype="float32", always_2d=True)
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            if not np.isfinite(mono).all():
                raise AudioError(f"{self.path}: audio contains NaN or infinite sample values")
            if len(mono) < need:  # the header promised more samples than the file holds
                if not self._short_read:
                    log.warning("%s: audio ends before its header says; padding", self.path)
                    self._short_read = True
                mono = np.concatenate([mono, np.zeros(need - len(mono), np.float32)])
            self._buf = np.concatenate([self._buf, mono])
        return self._buf[: stop - start]

    def read(self, start: int, stop: int) -> np.ndarray:
        """16 kHz samples ``[start, stop)``: float32 ``(stop - start,)``."""
        if self.up == self.down:
            return self._native(start, stop)
        if start % self.up:
            raise ValueError(f"window start {start} is not a multiple of {self.up}")
        native_start = start // self.up * self.down
        native_stop = -(-stop * self.down // self.up)
        a = max(0, native_start - self.pad)
        b = min(self.native_samples, native_stop + self.pad)
        out = resample(np.ascontiguousarray(self._native(a, b)), self.rate, SAMPLE_RATE)
        offset = (native_start - a) // self.down * self.up
        out = out[offset : offset + stop - start]
        if len(out) < stop - start:
            out = np.concatenate([out, np.zeros(stop - start - len(out), np.float32)])
        return out

    def close(self) -> None:
        self._file.close()


# ---------------------------------------------------------------------------------------------
# Windows and stitched log-probabilities
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One model pass: output frames ``[first, last)`` are kept, computed from feature frames
    ``[feat_start, feat_stop)``, i.e. 16 kHz samples ``[sample_start, sample_stop)``."""

    first: int
    last: int
    feat_start: int
    feat_stop: int
    sample_start: int
    sample_stop: int


@dataclass(frozen=True)
class WindowPlan:
    """How audio of ``frames`` output frames is cut into overlapping windows.

    Each window keeps ``center`` output frames and sees ``left``/``right`` more on each side
    (fewer at the ends of the audio), enough for the model's receptive field, so kept frames
    equal those of a whole-file pass. All three are multiples of the alignment the resampler
    needs, so every window starts on a sample that maps to a whole native sample.
    """

    frames: int  # output frames of the whole audio
    feature_frames: int
    center: int
    left: int
    right: int
    stride: int  # feature frames per output frame
    hop: int  # samples per feature frame
    n_fft: int  # samples seen by one feature frame

    def windows(self) -> Iterator[Window]:
        for first in range(0, self.frames, self.center):
            last = min(first + self.center, self.frames)
            f0 = max(0, first - self.left) * self.stride
            f1 = min(self.feature_frames, (last + self.right) * self.stride)
            yield Window(first, last, f0, f1, f0 * self.hop, (f1 - 1) * self.hop + self.n_fft)

    def without_context(self) -> WindowPlan:
        """The same audio in adjacent windows, no overlap (for feature statistics)."""
        return WindowPlan(
            self.frames, self.feature_frames, self.center + self.left + self.right, 0, 0,
            self.stride, self.hop, self.n_fft,
        )  # fmt: skip


def context_feature_frames(model: WaveNetCTC) -> tuple[int, int]:
    """Feature frames one output frame depends on before and after its own (together
    ``receptive_field_frames - 1``)."""
    s = model.config.stride
    blocks_left = sum(block.padding[0] for block in model.blocks)  # output frames
    blocks_right = sum(block.padding[1] for block in model.blocks)
    proj = model.input_proj
    proj_left = proj.padding[0]
    proj_right = proj.kernel_size - 1 - proj_left
    return blocks_left * s + proj_left, blocks_right * s + proj_right


def plan_windows(
    model: WaveNetCTC,
    samples: int,
    window_seconds: float = 30.0,
    overlap_seconds: float | None = None,
    align: int = 1,
) -> WindowPlan:
    """Windows over ``samples`` 16 kHz samples.

    ``window_seconds``: audio per model pass, context included. ``overlap_seconds``: context on
    each side; None (or less than needed) takes what the receptive field needs. ``align``: window
    starts must be multiples of this many samples (resampling; 1 at 16 kHz). The kept part is at
    least one second even if that makes windows longer than asked.
    """
    f = model.config.features
    s, hop = model.config.stride, f.hop_length
    feature_frames = int(model.features.frame_lengths(torch.tensor(samples)))
    frames = -(-feature_frames // s)
    frame_seconds = model.frame_ms / 1000
    step = math.lcm(s * hop, int(align)) // (s * hop)  # output frames between allowed starts

    def up(n: int) -> int:
        return -(-n // step) * step

    need_left, need_right = context_feature_frames(model)
    wanted = 0 if overlap_seconds is None else math.ceil(overlap_seconds / frame_seconds)
    left = up(max(-(-need_left // s), wanted))
    right = up(max(-(-need_right // s), wanted))
    window = int(round(window_seconds / frame_seconds))
    center = max(window - left - right, up(math.ceil(1.0 / frame_seconds)))
    center = max(center // step * step, step)
    return WindowPlan(frames, feature_frames, center, left, right, s, hop, f.n_fft)


@torch.inference_mode()
def _feature_stats(model: WaveNetCTC, reader, plan: WindowPlan, device, progress: bool) -> tuple:
    """Mean and standard deviation ``(n_mfcc, 1)`` of the raw MFCC over all the audio: what
    the per-utterance normalisation of a whole-file pass would use."""
    mfcc = model.features.mfcc
    count, mean, m2 = 0, None, None
    windows = plan.without_context().windows()
    for w in tqdm(windows, desc="features", unit="window", disable=not progress, leave=False):
        wave = torch.from_numpy(np.ascontiguousarray(reader.read(w.sample_start, w.sample_stop)))
        x = mfcc(wave.to(device)[None].float())[0].double().cpu().numpy()  # (n_mfcc, frames)
        n = x.shape[1]
        mb = x.mean(axis=1)
        m2b = ((x - mb[:, None]) ** 2).sum(axis=1)
        if mean is None:
            count, mean, m2 = n, mb, m2b
            continue
        total = count + n
        delta = mb - mean
        mean = mean + delta * n / total
        m2 = m2 + m2b + delta**2 * count * n / total
        count = total
    var = m2 / max(count, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device)[:, None]
    std_t = torch.sqrt(torch.tensor(var, dtype=torch.float32, device=device) + _NORM_EPS)
    return mean_t, std_t[:, None]


@torch.inference_mode()
def stream_log_probs(
    model: WaveNetCTC,
    open_reader,
    plan: WindowPlan,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Log-probs of long audio, window by window: consecutive ``(frames, vocab)`` float32 chunks
    that together cover ``plan.frames`` output frames.

    ``open_reader()`` returns a fresh reader (``read(start, stop)``, ``close()``); it is called
    twice when the model normalises its features (statistics first, then the model).
    """
    device = torch.device(device)
    model = model.to(device).eval()
    mfcc = model.features.mfcc
    stats = None
    mode = model.config.features.normalize_mode
    running = RunningNormState() if mode == "running" else None
    if mode == "utterance":
        reader = open_reader()
        try:
            stats = _feature_stats(model, reader, plan, device, progress)
        finally:
            reader.close()
    frame_seconds = model.frame_ms / 1000
    frame_samples = round(frame_seconds * SAMPLE_RATE)
    bar = tqdm(
        total=round(plan.frames * frame_seconds, 1), unit="audio-s", disable=not progress,
        desc="transcribing",
    )  # fmt: skip
    reader = open_reader()
    try:
        for w in plan.windows():
            wave = np.ascontiguousarray(reader.read(w.sample_start, w.sample_stop))
            x = torch.from_numpy(wave).to(device)[None].float()
            with torch.autocast(device_type=device.type, enabled=False):
                feats = mfcc(x)  # (1, n_mfcc, feat_stop - feat_start)
            if stats is not None:
                feats = (feats - stats[0]) / stats[1]
            elif running is not None:
                feats = running.rewind(w.feat_start, feats)(feats)
            n = w.feat_stop - w.feat_start
            log_probs, _ = model.forward_features(feats, torch.tensor([n], device=device))
            k0 = w.first - w.feat_start // plan.stride
            chunk = log_probs[0, k0 : k0 + w.last - w.first].float().cpu().numpy()
            yield gate_silence(chunk, wave, frame_samples, w.first * frame_samples - w.sample_start)
            bar.update(round((w.last - w.first) * frame_seconds, 1))
    finally:
        reader.close()
        bar.close()


# ---------------------------------------------------------------------------------------------
# Decoding stitched frames chunk by chunk
# ---------------------------------------------------------------------------------------------


class ChunkDecoder:
    """Decodes a stream of log-prob chunks in pieces cut where no word can straddle the cut.

    Greedy cuts are exact: a cut after frame ``t - 1`` is taken only where the last character
    emitted so far is a space (or none was), so words, their frames and confidences are those
    of decoding all frames at once. Beam search also needs both frames around the cut to be
    "quiet" (blank or space best, every other label below ``token_min_logp``, so every beam only
    adds a blank or space there), or a pause of ``pause_seconds`` of quiet frames; the language
    model restarts after a cut. Without a safe cut for ``max_pending_seconds``, the cut goes
    where the blank is most likely (a very long word run is split rather than memory grown).
    """

    def __init__(
        self,
        decoder,
        vocab: Vocabulary,
        frame_seconds: float,
        beam: bool,
        token_min_logp: float = -5.0,
        min_pending_seconds: float = 10.0,
        max_pending_seconds: float = 120.0,
        pause_seconds: float = 0.3,
    ) -> None:
        self.decoder = decoder
        self.frame_seconds = frame_seconds
        self.beam = beam
        self.blank = vocab.blank_id
        self.space = vocab.tokens.index(" ") if " " in vocab else -1
        self.token_min_logp = token_min_logp
        self.min_pending = max(1.0, min_pending_seconds / frame_seconds)  # frames (inf: never)
        self.max_pending = max(self.min_pending, max_pending_seconds / frame_seconds)
        self.pause = max(2, int(round(pause_seconds / frame_seconds)))
        self._pending: list[np.ndarray] = []
        self._pending_frames = 0
        self._offset = 0  # global index of the first pending frame
        self.texts: list[str] = []
        self.words: list[Word] = []

    def feed(self, log_probs: np.ndarray) -> None:
        self._pending.append(log_probs)
        self._pending_frames += len(log_probs)
        if self._pending_frames < self.min_pending:
            return
        lp = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        cut = self._safe_cut(lp)
        if cut is None and len(lp) >= self.max_pending:
            cut = self._forced_cut(lp)
        if cut is None:
            self._pending = [lp]
            return
        self._decode(lp[:cut])
        rest = lp[cut:]
        self._pending = [rest] if len(rest) else []
        self._pending_frames = len(rest)

    def finish(self) -> tuple[str, list[Word]]:
        if self._pending:
            self._decode(np.concatenate(self._pending))
            self._pending, self._pending_frames = [], 0
        return " ".join(self.texts), self.words

    def _safe_cut(self, lp: np.ndarray) -> int | None:
        """The largest ``t`` (1..frames) such that cutting before frame ``t`` is safe."""
        n = len(lp)
        best = lp.argmax(axis=1)  # (frames,)
        emitted = np.where(best != self.blank, np.arange(n), -1)
        last = np.maximum.accumulate(emitted)  # last emitting frame at or before each frame
        # between_words[t - 1]: cutting before t leaves no word open.
        between_words = (last < 0) | (best[np.maximum(last, 0)] == self.space)
        if not self.beam:
            ok = np.flatnonzero(between_words) + 1  # cut positions t
            return int(ok[-1]) if len(ok) else None
        quiet_label = (best == self.blank) | (best == self.space)
        runner_up = np.partition(lp, -2, axis=1)[:, -2] if lp.shape[1] > 1 else lp[:, 0] - np.inf
        quiet = quiet_label & (runner_up < self.token_min_logp)
        # Cut before t (1..n-1) with frames t-1 and t quiet ...
        both = quiet[:-1] & quiet[1:]
        candidates = both & between_words[:-1]
        # ... or in the middle of a long quiet run, a pause between words whatever was emitted.
        half = self.pause // 2
        if n > 2 * half:
            runs = np.convolve(quiet.astype(np.int32), np.ones(2 * half, np.int32), "valid")
            pause = np.zeros(n - 1, dtype=bool)  # index t-1
            pause[half - 1 : half - 1 + len(runs)] = runs == 2 * half
            candidates |= pause & both
        ok = np.flatnonzero(candidates) + 1
        return int(ok[-1]) if len(ok) else None

    def _forced_cut(self, lp: np.ndarray) -> int:
        half = len(lp) // 2
        return half + int(lp[half:, self.blank].argmax())

    def _decode(self, lp: np.ndarray) -> None:
        if not len(lp):
            return
        result = self.decoder.decode(lp, self.frame_seconds)
        shift = self._offset * self.frame_seconds
        if result.text:
            self.texts.append(result.text)
        self.words.extend(
            Word(w.word, w.start + shift, w.end + shift, w.confidence) for w in result.words
        )
        self._offset += len(lp)


# ---------------------------------------------------------------------------------------------
# Transcriber
# ---------------------------------------------------------------------------------------------


class Transcriber:
    """A model, its vocabulary and a decoder, ready to transcribe files or waveforms.

    Audio no longer than ``window_seconds`` goes through the model in one pass; longer audio in
    overlapping windows of ``window_seconds`` (``overlap_seconds`` of context each side, by
    default what the receptive field needs), with the same result. Words are grouped into
    subtitle segments by ``max_pause``/``max_segment_seconds``/``max_segment_words``.
    Use as a context manager (or call :meth:`close`) to release a beam decoder's workers and LM.

    Raises:
        ConfigError: for a bad setting, an LM that cannot be loaded, or CUDA asked for and
            missing.
    """

    def __init__(
        self,
        model: WaveNetCTC,
        vocab: Vocabulary,
        decoder: DecoderConfig | None = None,
        device: str = "cpu",
        window_seconds: float = 30.0,
        overlap_seconds: float | None = None,
        max_batch_seconds: float = 200.0,
        max_pause: float = 0.6,
        max_segment_seconds: float = 7.0,
        max_segment_words: int = 12,
        decoder_workers: int | None = None,
    ) -> None:
        if not window_seconds > 0:
            raise ConfigError(f"window_seconds must be positive, got {window_seconds}")
        if overlap_seconds is not None and overlap_seconds < 0:
            raise ConfigError(f"overlap_seconds must be >= 0, got {overlap_seconds}")
        if model.vocab_size != len(vocab):
            raise ConfigError(
                f"the model emits {model.vocab_size} labels but the vocabulary has {len(vocab)}"
            )
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.vocab = vocab
        self.decoder_config = decoder if decoder is not None else DecoderConfig()
        self.decoder = build_decoder(vocab, self.decoder_config, workers=decoder_workers)
        self.window_seconds = float(window_seconds)
        self.overlap_seconds = overlap_seconds
        self.max_batch_seconds = max_batch_seconds
        self.max_pause = max_pause
        self.max_segment_seconds = max_segment_seconds
        self.max_segment_words = max_segment_words
        self.frame_seconds = model.frame_ms / 1000

    # -- public API ---------------------------------------------------------------------------

    def transcribe(self, audio: str | Path | np.ndarray, progress: bool = False) -> Transcript:
        """Transcribe a file (any format soundfile reads, any rate) or a float32 16 kHz mono
        waveform ``(samples,)``. Silence gives an empty transcript.

        Raises:
            AudioError: the file is missing, empty, unreadable or holds unusable samples.
        """
        duration, chunks, streamed = self._log_prob_chunks(audio, progress)
        decoder = self._chunk_decoder(streamed)
        for chunk in chunks:
            decoder.feed(chunk)
        text, words = decoder.finish()
        path = None if isinstance(audio, np.ndarray) else str(audio)
        return self._transcript(text, words, duration, path)

    def iter_log_probs(
        self, audio: str | Path | np.ndarray, progress: bool = False
    ) -> Iterator[np.ndarray]:
        """The model's log-probs for ``audio``: consecutive ``(frames, vocab)`` float32 chunks
        (one for short audio, one per window for long audio)."""
        return self._log_prob_chunks(audio, progress)[1]

    def transcribe_many(
        self, paths: Iterable[str | Path], batch_size: int = 8, progress: bool = True
    ) -> Iterator[tuple[Path, Transcript | STTError]]:
        """Transcribe files in order, yielding ``(path, Transcript)``, or ``(path, error)`` for a
        file that cannot be transcribed (missing, empty, not audio). Files no longer than
        ``window_seconds`` are read ``batch_size`` at a time and run through the model together;
        longer ones go window by window. A progress bar (stderr) counts files."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        paths = [Path(p) for p in paths]
        bar = tqdm(total=len(paths), unit="file", disable=not progress or len(paths) < 2)
        one_long_file = progress and len(paths) == 1  # then show that file's own progress
        try:
            for i in range(0, len(paths), batch_size):
                for item in self._transcribe_batch(paths[i : i + batch_size], one_long_file):
                    yield item
                    bar.update()
        finally:
            bar.close()

    def close(self) -> None:
        """Release the decoder's worker processes and language model. Idempotent."""
        self.decoder.close()

    def __enter__(self) -> Transcriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _window_samples(self) -> int:
        return int(self.window_seconds * SAMPLE_RATE)

    def _chunk_decoder(self, streamed: bool) -> ChunkDecoder:
        c = self.decoder_config
        return ChunkDecoder(
            self.decoder, self.vocab, self.frame_seconds, beam=c.kind == "beam",
            token_min_logp=c.token_min_logp,
            min_pending_seconds=self.window_seconds / 2 if streamed else math.inf,
        )  # fmt: skip

    def _log_prob_chunks(self, audio, progress: bool) -> tuple[float, Iterator[np.ndarray], bool]:
        """``(duration in seconds, log-prob chunks, streamed?)``; opening errors raise here."""
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        if isinstance(audio, np.ndarray):
            waveform = np.ascontiguousarray(audio, dtype=np.float32)
            if waveform.ndim != 1:
                raise AudioError(
                    f"waveform must be 1-D (samples,) 16 kHz mono, got shape {waveform.shape}: "
                    "mix channels first, e.g. waveform.mean(axis=1)"
                )
            if not len(waveform):
                raise AudioError("waveform has zero samples")
            if not np.isfinite(waveform).all():
                raise AudioError("waveform contains NaN or infinite sample values")
            duration = len(waveform) / SAMPLE_RATE
            if len(waveform) <= self._window_samples():
                return duration, iter(self._whole([waveform])), False
            plan = self._plan(len(waveform), 1)
            chunks = stream_log_probs(
                self.model, lambda: _ArrayReader(waveform), plan, self.device, progress
            )
            return duration, chunks, True
        path = Path(audio)
        with open_soundfile(path) as handle:
            reader = FileReader(path, handle)
            samples, align, unknown_length = reader.samples, reader.up, handle.frames < 0
        if unknown_length:  # no length in the header (rare): decode it all, then as a waveform
            return self._log_prob_chunks(load_audio(path), progress)
        if samples <= self._window_samples():
            waveform = load_audio(path)
            return len(waveform) / SAMPLE_RATE, iter(self._whole([waveform])), False
        plan = self._plan(samples, align)

        def open_reader() -> FileReader:
            return FileReader(path, open_soundfile(path))

        chunks = stream_log_probs(self.model, open_reader, plan, self.device, progress)
        return samples / SAMPLE_RATE, chunks, True

    def _plan(self, samples: int, align: int) -> WindowPlan:
        return plan_windows(
            self.model, samples, self.window_seconds, self.overlap_seconds, align=align
        )

    def _whole(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        return infer_log_probs(self.model, waveforms, self.device, self.max_batch_seconds)

    def _transcript(
        self, text: str, words: list[Word], duration: float, path: str | None
    ) -> Transcript:
        # The last frame may reach a few ms past the last sample.
        words = [
            Word(w.word, min(w.start, duration), min(w.end, duration), w.confidence) for w in words
        ]
        segments = segment_words(
            words, self.max_pause, self.max_segment_seconds, self.max_segment_words
        )
        return Transcript(text, words, segments, duration, path)

    def _transcribe_batch(
        self, paths: list[Path], progress: bool
    ) -> Iterator[tuple[Path, Transcript | STTError]]:
        short, errors = [], {}
        for i, path in enumerate(paths):
            try:
                handle = open_soundfile(path)
            except AudioError as exc:
                errors[i] = exc
                continue
            with handle:
                unknown_length = handle.frames < 0
                if unknown_length or FileReader(path, handle).samples <= self._window_samples():
                    short.append(i)
        loaded = dict(zip(short, load_many([paths[i] for i in short]), strict=True))
        ok = [i for i in short if not isinstance(loaded[i], AudioError)]
        errors.update({i: loaded[i] for i in short if isinstance(loaded[i], AudioError)})
        log_probs = self._whole([loaded[i] for i in ok])
        decoded = self.decoder.decode_batch(log_probs, self.frame_seconds)
        results = dict(zip(ok, decoded, strict=True))
        del log_probs, decoded
        for i, path in enumerate(paths):
            if i in errors:
                yield path, errors[i]
            elif i in results:
                r = results.pop(i)
                duration = len(loaded.pop(i)) / SAMPLE_RATE
                yield path, self._transcript(r.text, r.words, duration, str(path))
            else:
                try:
                    yield path, self.transcribe(path, progress=progress)
                except STTError as exc:
                    yield path, exc


def resolve_decoder(checkpoint: str | Path, decoder: DecoderConfig | dict | None) -> DecoderConfig:
    """A ``DecoderConfig`` as given, or a dict of settings (or None) laid over the tuned
    ``decoder.yaml`` beside ``checkpoint``."""
    from stt.evaluate import load_tuned_decoder

    if isinstance(decoder, DecoderConfig):
        return decoder
    return _decoder_config({**load_tuned_decoder(checkpoint), **(decoder or {})})


def _decoder_config(settings: dict[str, Any]) -> DecoderConfig:
    known = {f.name for f in fields(DecoderConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"unknown decoder setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    values = dict(settings)
    if values.get("hotwords") is None:
        values.pop("hotwords", None)
    else:
        values["hotwords"] = [str(h) for h in values["hotwords"]]
    return DecoderConfig(**values)


def load_model(
    path: str | Path | None = None,
    device: str = "cpu",
    decoder: DecoderConfig | dict | None = None,
    **kwargs: Any,
) -> Transcriber:
    """A :class:`Transcriber` for the checkpoint at ``path`` (None: the shipped default model).

    Decoder settings: a :class:`DecoderConfig` is used as it is; a dict (or None) is laid over
    the tuned settings saved as ``decoder.yaml`` beside the checkpoint by ``stt eval
    --multirun`` (LM paths in it resolve relative to it), themselves over greedy defaults.
    ``kwargs`` go to :class:`Transcriber` (``window_seconds``, ``max_pause``, ...).

    Raises:
        ConfigError: no path and no shipped model, or bad decoder settings.
        CheckpointError: the checkpoint is missing or unreadable.
    """
    from stt.training.checkpoint import load_model as load_checkpoint_model

    if path is None:
        if not default_model_path().is_file():
            raise ConfigError("no shipped model yet: pass --model CHECKPOINT")
        path = default_model_path()
    model, vocab = load_checkpoint_model(path)
    return Transcriber(model, vocab, resolve_decoder(path, decoder), device=device, **kwargs)


# ---------------------------------------------------------------------------------------------
# Finding the audio files a command line names
# ---------------------------------------------------------------------------------------------


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _expand(path: Path, files: list[Path], problems: list[str]) -> None:
    from stt.data.manifest import iter_manifest_lines

    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and _is_audio(p))
        if not found:
            problems.append(f"{path}: no audio files ({' '.join(AUDIO_EXTENSIONS)}) in this folder")
        files += found
    elif path.suffix == ".jsonl" and path.is_file():
        try:
            for _, item in iter_manifest_lines(path):
                if isinstance(item, ManifestError):
                    problems.append(str(item))
                else:
                    files.append(item.audio_filepath)
        except ManifestError as exc:
            problems.append(str(exc))
    else:
        files.append(path)  # a missing or non-audio file is reported when transcribed


def find_audio(inputs: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Audio files named by ``inputs``: files, folders (searched recursively for
    :data:`stt.audio.AUDIO_EXTENSIONS`), glob patterns, and ``.jsonl`` manifests (their
    ``audio_filepath`` entries). Returns the files in order without duplicates, and one-line
    problems (empty folder, pattern matching nothing, bad manifest line)."""
    files: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if not path.exists() and glob.has_magic(str(item)):
            matches = sorted(glob.glob(str(item), recursive=True))
            if not matches:
                problems.append(f"{item}: no files match this pattern")
            for match in matches:
                _expand(Path(match), files, problems)
        else:
            _expand(path, files, problems)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = Path(f).absolute()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


# ---------------------------------------------------------------------------------------------
# Command-line settings
# ---------------------------------------------------------------------------------------------


@dataclass
class TranscribeConfig:
    """Settings of ``stt transcribe`` (mirrors ``conf/transcribe.yaml``)."""

    checkpoint: str | None = None  # None: the shipped default model
    device: str = "cpu"  # cpu | cuda | auto
    format: str | None = None  # txt, json, srt, vtt, tsv, comma-separated, or all
    output_dir: str | None = None
    batch_size: int = 8
    window_seconds: float = 30.0
    overlap_seconds: float | None = None
    max_batch_seconds: float = 200.0
    max_pause: float = 0.6
    max_segment_seconds: float = 7.0
    max_segment_words: int = 12
    progress: bool = True
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def transcriber_kwargs(self) -> dict:
        return {
            "window_seconds": self.window_seconds,
            "overlap_seconds": self.overlap_seconds,
            "max_batch_seconds": self.max_batch_seconds,
            "max_pause": self.max_pause,
            "max_segment_seconds": self.max_segment_seconds,
            "max_segment_words": self.max_segment_words,
        }


__all__ = [
    "Segment",
    "Transcript",
    "Transcriber",
    "TranscribeConfig",
    "WindowPlan",
    "find_audio",
    "load_model",
    "plan_windows",
    "segment_words",
    "stream_log_probs",
]
