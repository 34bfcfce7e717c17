"""Batched inference: waveforms -> per-utterance CTC log-probabilities.

Shared by evaluation and transcription: utterances are sorted by length and cut into batches of
at most ``max_batch_seconds`` of padded audio (little padding, bounded memory), run under
``torch.inference_mode``, and returned in the caller's order with only their valid frames.
The model runs as its fused inference copy (:mod:`stt.fusion`: same log-probs, less work).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stt.audio import SAMPLE_RATE, load_audio
from stt.data.sampler import make_batches
from stt.errors import AudioError, ConfigError
from stt.fusion import fused_for_inference
from stt.model import WaveNetCTC
from stt.silence import gate_silence


@dataclass
class InferenceTiming:
    """Wall time spent in the model, for real-time factors."""

    audio_seconds: float = 0.0
    compute_seconds: float = 0.0


def pick_device(spec: str = "auto", option: str = "--device") -> torch.device:
    """``auto`` (CUDA if present), ``cpu``, ``cuda`` or ``cuda:N``; anything else, or CUDA on a
    machine without it, is a :class:`ConfigError` naming ``option`` (torch would raise a bare
    RuntimeError listing twenty device types)."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", spec):
        raise ConfigError(f"{option}={spec}: not a device; use auto, cpu, cuda or cuda:N")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{option}={spec}: CUDA is not available on this machine; use cpu")
        index = int(spec.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{option}={spec}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(spec)


def load_many(paths: Sequence[Path], workers: int = 4) -> list[np.ndarray | AudioError]:
    """Load audio files in threads; a failure is returned in place of its waveform."""

    def load(path: Path) -> np.ndarray | AudioError:
        try:
            return load_audio(path)
        except AudioError as exc:
            return exc

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(load, paths))


@torch.inference_mode()
def infer_log_probs(
    model: WaveNetCTC,
    waveforms: Sequence[np.ndarray],
    device: torch.device | str = "cpu",
    max_batch_seconds: float = 200.0,
    progress: bool = False,
    desc: str = "inference",
    timing: InferenceTiming | None = None,
    fuse: bool = True,
    gate: bool = True,
) -> list[np.ndarray]:
    """Log-probs ``(frames, vocab)`` float32 for each 16 kHz waveform, in input order.

    ``fuse``: run :func:`stt.fusion.fused_for_inference`'s copy of the model (False: the model
    as it is, e.g. to measure what fusion gains). ``gate``: frames without speech (see
    :mod:`stt.silence`) become certain blanks, so silence gives no words."""
    device = torch.device(device)
    frame_samples = round(model.frame_ms * SAMPLE_RATE / 1000)
    model = fused_for_inference(model, device) if fuse else model.to(device).eval()
    durations = [len(w) / SAMPLE_RATE for w in waveforms]
    order = sorted(range(len(waveforms)), key=durations.__getitem__)
    batches = make_batches(durations, max_batch_seconds, order)
    results: list[np.ndarray | None] = [None] * len(waveforms)
    bar = tqdm(total=sum(durations), desc=desc, unit="audio-s", disable=not progress)
    for batch in batches:
        lengths = torch.tensor([len(waveforms[i]) for i in batch])
        padded = torch.zeros(len(batch), int(lengths.max()))
        for row, i in enumerate(batch):
            padded[row, : len(waveforms[i])] = torch.from_numpy(waveforms[i])
        start = time.perf_counter()
        log_probs, out_lengths = model(padded.to(device), lengths.to(device))
        log_probs = log_probs.float().cpu().numpy()
        if timing is not None:
            timing.compute_seconds += time.perf_counter() - start
            timing.audio_seconds += float(lengths.sum()) / SAMPLE_RATE
        for row, i in enumerate(batch):
            results[i] = log_probs[row, : int(out_lengths[row])]
            if gate:
                results[i] = gate_silence(results[i], waveforms[i], frame_samples)
        bar.update(sum(durations[i] for i in batch))
    bar.close()
    return results  # type: ignore[return-value]
