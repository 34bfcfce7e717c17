"""Offline inference: audio -> CTC log-probabilities, for evaluation and transcription alike.

Short utterances (:func:`infer_log_probs`) are sorted by length and cut into batches of at most
``max_batch_seconds`` of padded audio (little padding, bounded memory), run under
``torch.inference_mode``, and returned in the caller's order with only their valid frames.
Long audio (:func:`stream_log_probs`) is never loaded whole: it is read in overlapping windows
(:func:`plan_windows`) with enough context on each side for the model's receptive field, and
only each window's central frames are kept, so the stitched log-probs equal one pass over the
whole file; the per-utterance MFCC normalisation uses statistics gathered in a first, cheap
pass over the features. Both run the fused inference copy of the model (:mod:`stt.fusion`: the
same log-probs, less work) and the silence gate (:mod:`stt.silence`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stt.audio import SAMPLE_RATE, load_audio
from stt.data.sampler import make_batches
from stt.errors import AudioError, ConfigError
from stt.features import RunningNormState, UtteranceStats
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


# ---------------------------------------------------------------------------------------------
# Reading audio held in memory
# ---------------------------------------------------------------------------------------------


class ArrayReader:
    """A 16 kHz waveform already in memory, read by slices as :class:`stt.audio.FileReader`
    reads a file."""

    up = 1  # window starts need no alignment for resampling

    def __init__(self, waveform: np.ndarray) -> None:
        self.waveform = waveform
        self.samples = len(waveform)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.waveform[start:stop]

    def close(self) -> None:
        pass


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
    stats = UtteranceStats()
    windows = plan.without_context().windows()
    for w in tqdm(windows, desc="features", unit="window", disable=not progress, leave=False):
        wave = torch.from_numpy(np.ascontiguousarray(reader.read(w.sample_start, w.sample_stop)))
        stats.add(mfcc(wave.to(device)[None].float())[0].double().cpu().numpy())
    return stats.mean_std(device)


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
    twice when the model normalises its features (statistics first, then the model). The model
    runs as the same fused copy :func:`infer_log_probs` uses: one offline inference path.
    """
    device = torch.device(device)
    model = fused_for_inference(model, device)
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
