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
where no word can straddle the cut (see :class:`stt.decoding.ChunkDecoder`), so memory stays
bounded by the window size whatever the file's length.
"""

from __future__ import annotations

import glob
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from stt.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, FileReader, load_audio, open_soundfile
from stt.decoding import (
    BeamSearchDecoder,
    ChunkDecoder,
    DecoderConfig,
    Word,
    build_decoder,
    resolve_decoder,
)
from stt.errors import AudioError, ConfigError, ManifestError, STTError
from stt.inference import (
    ArrayReader,
    WindowPlan,
    infer_log_probs,
    load_many,
    pick_device,
    plan_windows,
    stream_log_probs,
)
from stt.model import WaveNetCTC
from stt.text import Vocabulary
from stt.transcript import Transcript, segment_words

log = logging.getLogger(__name__)

SHIPPED_MODEL = Path(__file__).resolve().parent / "assets" / "default" / "model.pt"
"""Where the default model lives inside the package (used when no checkpoint is given)."""


def default_model_path() -> Path:
    """The default model: ``$STT_DEFAULT_MODEL`` if set (e.g. a model of your own), else the
    one shipped in the package."""
    return Path(os.environ.get("STT_DEFAULT_MODEL") or SHIPPED_MODEL)


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

    def transcribe(
        self,
        audio: str | Path | np.ndarray,
        progress: bool = False,
        hotwords: list[str] | None = None,
    ) -> Transcript:
        """Transcribe a file (any format soundfile reads, any rate) or a float32 16 kHz mono
        waveform ``(samples,)``. Silence gives an empty transcript. ``hotwords`` replace the
        configured ones for this call (beam search only; a greedy decoder has no use for them).

        Raises:
            AudioError: the file is missing, empty, unreadable or holds unusable samples.
        """
        duration, chunks, streamed = self._log_prob_chunks(audio, progress)
        decoder = self._chunk_decoder(streamed, hotwords)
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

    def _chunk_decoder(self, streamed: bool, hotwords: list[str] | None = None) -> ChunkDecoder:
        c = self.decoder_config
        decoder = self.decoder
        if hotwords is not None and isinstance(decoder, BeamSearchDecoder):
            decoder = decoder.with_hotwords(hotwords)
        return ChunkDecoder(
            decoder, self.vocab, self.frame_seconds, beam=c.kind == "beam",
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
                self.model, lambda: ArrayReader(waveform), plan, self.device, progress
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


def load_model(
    path: str | Path | None = None,
    device: str = "cpu",
    decoder: DecoderConfig | dict | None = None,
    backend: str = "auto",
    **kwargs: Any,
) -> Transcriber:
    """A :class:`Transcriber` for the checkpoint at ``path`` (None: the shipped default model).

    ``backend``: ``torch`` runs a checkpoint, ``onnx`` (onnxruntime) or ``torchscript`` a file
    made by ``stt export`` (:mod:`stt.exported`); ``auto`` picks by the file's suffix
    (``.onnx``, ``.ts``, else a checkpoint).

    Decoder settings (:func:`stt.decoding.resolve_decoder`): a :class:`DecoderConfig` is used as
    it is; a dict (or None) is laid over the tuned settings saved as ``decoder.yaml`` beside the
    checkpoint by ``stt eval --multirun`` (LM paths in it resolve relative to it), themselves
    over greedy defaults.
    ``kwargs`` go to :class:`Transcriber` (``window_seconds``, ``max_pause``, ...).

    Raises:
        ConfigError: no path and no shipped model, or bad decoder settings.
        CheckpointError: the checkpoint is missing or unreadable.
    """
    if path is None:
        if not default_model_path().is_file():
            raise ConfigError("no shipped model yet: pass --model CHECKPOINT")
        path = default_model_path()
    from stt.exported import read_any_model

    model, vocab = read_any_model(path, backend)
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
    "Transcriber",
    "TranscribeConfig",
    "WindowPlan",
    "find_audio",
    "load_model",
    "plan_windows",
    "stream_log_probs",
]
