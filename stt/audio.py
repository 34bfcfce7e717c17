"""Audio input: any file soundfile can read -> float32 mono waveform at 16 kHz, whole
(:func:`load_audio`) or window by window (:class:`FileReader`, for audio too long to hold)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from stt.atomic import atomic_path
from stt.errors import AudioError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
"""The sample rate (Hz) of every waveform inside the project."""

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".sph")


MIN_SAMPLE_RATE = 1000
"""Audio sampled slower than this (a 500 Hz band) holds no intelligible speech: refused."""

MAX_RESAMPLE_TERMS = 1000
"""Largest numerator/denominator of the resampling ratio. torchaudio's polyphase kernel grows
with their product: 15,999 -> 16,000 Hz exactly is a 16,000-phase kernel of gigabytes. Every
common rate (8, 11.025, 22.05, 44.1, 48 kHz...) is exact within this bound; an odd rate is
approximated, e.g. 11,127 Hz is read as 11,125 Hz: a 0.02% change of speed and pitch, far below
what a recogniser (trained on 10% speed perturbation) notices, in bounded memory."""


def resample(waveform: np.ndarray, orig_rate: int, new_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D float32 waveform with torchaudio's windowed-sinc resampler."""
    if orig_rate == new_rate:
        return waveform
    out = AF.resample(torch.from_numpy(waveform), *resample_terms(orig_rate, new_rate))
    return out.numpy().astype(np.float32, copy=False)


def resample_terms(orig_rate: int, new_rate: int) -> tuple[int, int]:
    """``(orig, new)`` for ``torchaudio.functional.resample``: the rates' ratio with both terms
    at most ``MAX_RESAMPLE_TERMS`` (the sinc kernel's size grows with them)."""
    # The ratio below 1 (down- or upsampling) has the smaller term on top: bounding its
    # denominator bounds both terms.
    if new_rate < orig_rate:
        ratio = Fraction(int(new_rate), int(orig_rate)).limit_denominator(MAX_RESAMPLE_TERMS)
        up, down = ratio.numerator, ratio.denominator
    else:
        ratio = Fraction(int(orig_rate), int(new_rate)).limit_denominator(MAX_RESAMPLE_TERMS)
        down, up = ratio.numerator, ratio.denominator
    if up == 0 or down == 0:  # a ratio over 2000: below MIN_SAMPLE_RATE, which open_audio refuses
        raise ValueError(f"cannot resample {orig_rate} Hz to {new_rate} Hz")
    return down, up


SOUNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError)
"""What soundfile raises for a file it cannot decode (opening, or part way through)."""


def as_chunk(samples: np.ndarray | torch.Tensor) -> np.ndarray:
    """A live chunk as ``(n,)`` float32 samples, int16 PCM scaled to [-1, 1), checked before
    it reaches any stream's state.

    Raises:
        AudioError: not 1-D, or NaN/Inf samples (the stream can go on with the next chunk).
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise AudioError(f"audio chunk must be 1-D (samples,) 16 kHz mono, got shape "
                         f"{samples.shape}")  # fmt: skip
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    # Refused before any state changes, so the stream goes on with the next good chunk.
    if not np.isfinite(samples).all():
        raise AudioError("audio chunk contains NaN or infinite sample values; chunk ignored")
    return samples


def unreadable_audio(path: str | Path, exc: Exception) -> AudioError:
    """A file that opened but failed part way through: damaged or cut short."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    reason = re.sub(r"^Error\s*:\s*", "", reason).rstrip(".")
    return AudioError(f"{path}: unreadable audio, damaged or truncated ({reason})")


def _undecodable(path: Path, exc: Exception) -> AudioError:
    """An existing file libsndfile cannot open: say so, not libsndfile's "Error opening 'x':
    File does not exist" (which its MP3 reader says of any file that is not MP3)."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    reason = re.sub(r"^Error opening .*?: ", "", reason)
    if "does not exist" in reason or "not recognised" in reason.lower():
        reason = "format not recognised"
    return AudioError(f"{path}: not an audio file soundfile can decode ({reason.rstrip('.')})")


_MPEG_SUFFIXES = {".mp3", ".mp2", ".mp1", ".mpeg", ".mpga"}
_native_stderr_lock = threading.Lock()


@contextlib.contextmanager
def quiet_mpeg_notes(path: Path) -> Iterator[None]:
    """Keep libmpg123's "Note: Illegal Audio-MPEG-Header ..." lines (written by the C library
    straight to file descriptor 2) off the user's terminal while an MPEG file is opened or read.

    What else reached stderr meanwhile (a progress bar, a log line) is written back afterwards.
    """
    if path.suffix.lower() not in _MPEG_SUFFIXES:
        yield
        return
    with _native_stderr_lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not line.startswith(("Note: ", "Warning: ", "[src/libmpg123"))
            ]
            if kept:
                sys.stderr.write("".join(kept))


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open an audio file for reading (a context manager), after the checks every reader needs.

    Raises:
        AudioError: one line naming the file and the problem (missing, a directory, empty,
            not audio soundfile can read).
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        with quiet_mpeg_notes(path):
            handle = sf.SoundFile(str(path))
    except SOUNDFILE_ERRORS as exc:
        raise _undecodable(path, exc) from None
    if handle.samplerate < MIN_SAMPLE_RATE:
        handle.close()
        raise AudioError(
            f"{path}: sample rate {handle.samplerate} Hz is too low to hold speech "
            f"(at least {MIN_SAMPLE_RATE} Hz)"
        )
    return handle


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as a float32 mono waveform at ``sample_rate`` Hz.

    Integer PCM is scaled to [-1, 1), channels are averaged, and any other sample rate is
    resampled (never rejected). Returns shape ``(samples,)``.

    Raises:
        AudioError: one line naming the file and the problem (missing, empty, unreadable,
            zero samples, non-finite values).
    """
    path = Path(path)
    with open_audio(path) as handle:
        try:
            with quiet_mpeg_notes(path):
                data = handle.read(dtype="float32", always_2d=True)
        except SOUNDFILE_ERRORS as exc:
            raise unreadable_audio(path, exc) from None
        rate = handle.samplerate
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio has zero samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite sample values")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return resample(np.ascontiguousarray(mono), int(rate), sample_rate)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds read from the file header (cheap: decodes no samples).

    Raises:
        AudioError: if the file is missing or its header cannot be read.
    """
    with open_audio(path) as handle:
        frames, rate = handle.frames, handle.samplerate
    if frames <= 0 or rate <= 0:
        # Some containers (mp3 without a length header) report 0 frames: decode to be sure.
        return len(load_audio(path)) / SAMPLE_RATE
    return frames / rate


def write_flac(path: str | Path, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono waveform as 16-bit FLAC atomically (temp file + rename).

    A crash mid-write leaves either the old file or nothing, never half a file under ``path``.
    """
    path = Path(path)
    clipped = np.clip(waveform, -1.0, 1.0 - 1.0 / 32768)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), clipped, sample_rate, format="FLAC", subtype="PCM_16")


# ---------------------------------------------------------------------------------------------
# Reading a file window by window (long audio, streams)
# ---------------------------------------------------------------------------------------------


def open_soundfile(path: Path) -> sf.SoundFile:
    """Open ``path`` for reading; the same one-line errors as :func:`stt.audio.load_audio`."""
    handle = open_audio(path)
    if handle.frames == 0:
        handle.close()
        raise AudioError(f"{path}: audio has zero samples")
    return handle


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
