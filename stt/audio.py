"""Audio input: any file soundfile can read -> float32 mono waveform at 16 kHz."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from stt.errors import AudioError

SAMPLE_RATE = 16_000
"""The sample rate (Hz) of every waveform inside the project."""

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".sph")


def resample(waveform: np.ndarray, orig_rate: int, new_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D float32 waveform with torchaudio's windowed-sinc resampler."""
    if orig_rate == new_rate:
        return waveform
    g = math.gcd(int(orig_rate), int(new_rate))
    out = AF.resample(torch.from_numpy(waveform), orig_rate // g, new_rate // g)
    return out.numpy().astype(np.float32, copy=False)


_SOUNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError)


def _unreadable(path: Path, exc: Exception) -> AudioError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return AudioError(f"{path}: unreadable audio ({reason})")


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
        return sf.SoundFile(str(path))
    except _SOUNDFILE_ERRORS as exc:
        raise _unreadable(path, exc) from None


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
            data = handle.read(dtype="float32", always_2d=True)
        except _SOUNDFILE_ERRORS as exc:
            raise _unreadable(path, exc) from None
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
    tmp = path.with_name(f".{path.name}.partial")
    clipped = np.clip(waveform, -1.0, 1.0 - 1.0 / 32768)
    sf.write(str(tmp), clipped, sample_rate, format="FLAC", subtype="PCM_16")
    tmp.replace(path)
