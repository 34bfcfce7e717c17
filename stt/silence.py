"""No speech, no words: a level gate on the CTC output frames.

The features are normalised per utterance, which lifts any signal to speech level: 30 s of
digital silence, or of noise at -80 dBFS, came out as words. Speech stands tens of dB above the
noise floor of any usable recording, so an output frame with no 20 ms block above
:data:`GATE_DBFS` within :data:`CONTEXT_SECONDS` of it is forced to the CTC blank: nothing can be
emitted there. Quiet but real speech (peaks at -40 dBFS) is untouched; a silent file, or the
silent stretch of a long recording, gives no words.
"""

from __future__ import annotations

import numpy as np

from stt.audio import SAMPLE_RATE

GATE_DBFS = -60.0
"""Level (RMS of a 20 ms block, dB relative to full scale) below which there is no speech."""

CONTEXT_SECONDS = 0.2
"""A frame stays open if any block this close is loud: word onsets and fading ends survive."""


def speech_frames(
    waveform: np.ndarray, frame_samples: int, n_frames: int, start_sample: int = 0
) -> np.ndarray:
    """``(n_frames,)`` bool: True where output frame ``k`` (samples ``start_sample + k *
    frame_samples`` onwards of ``waveform``) has a loud block within the context. Samples outside
    ``waveform`` count as silence."""
    context = max(1, round(CONTEXT_SECONDS * SAMPLE_RATE / frame_samples))
    first = start_sample - context * frame_samples
    total = (n_frames + 2 * context) * frame_samples
    blocks = np.zeros(total, dtype=np.float32)
    lo, hi = max(first, 0), min(first + total, len(waveform))
    if hi > lo:
        blocks[lo - first : hi - first] = waveform[lo:hi]
    power = np.mean(blocks.reshape(-1, frame_samples).astype(np.float64) ** 2, axis=1)
    loud = (power > 10 ** (GATE_DBFS / 10)).astype(np.int32)
    return np.convolve(loud, np.ones(2 * context + 1, dtype=np.int32), mode="valid") > 0


def gate_silence(
    log_probs: np.ndarray,
    waveform: np.ndarray,
    frame_samples: int,
    start_sample: int = 0,
    blank_id: int = 0,
) -> np.ndarray:
    """``log_probs (frames, vocab)`` with every frame without speech set to a certain blank."""
    keep = speech_frames(waveform, frame_samples, len(log_probs), start_sample)
    return force_blank(log_probs, keep, blank_id)


def force_blank(log_probs: np.ndarray, keep: np.ndarray, blank_id: int = 0) -> np.ndarray:
    """``log_probs (frames, vocab)`` with the frames where ``keep`` is False made certain
    blanks (a copy, if any frame changes)."""
    if keep.all():
        return log_probs
    gated = log_probs.copy()
    gated[~keep] = -1e4
    gated[~keep, blank_id] = 0.0
    return gated


class StreamGate:
    """:func:`gate_silence` for a live stream, fed audio as it arrives.

    Output frame ``k`` is open if a loud block lies within the context before it or at most as
    far after it as has been heard: a causal model emits frame ``k`` once block ``k`` is in, so
    the gate adds no latency. Only the last few blocks are kept: memory does not grow with the
    stream.
    """

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self.context = max(1, round(CONTEXT_SECONDS * SAMPLE_RATE / frame_samples))
        self.reset()

    def reset(self) -> None:
        self._partial = np.zeros(0, dtype=np.float32)  # samples of the block being heard
        self._loud: list[bool] = []  # per complete block, from block `_first` on
        self._first = 0

    def hear(self, samples: np.ndarray) -> None:
        """Take ``(n,)`` 16 kHz samples, the next of the stream."""
        buf = np.concatenate([self._partial, samples]) if len(self._partial) else samples
        whole = len(buf) // self.frame_samples * self.frame_samples
        if whole:
            blocks = buf[:whole].reshape(-1, self.frame_samples).astype(np.float64)
            self._loud.extend((np.mean(blocks**2, axis=1) > 10 ** (GATE_DBFS / 10)).tolist())
        self._partial = buf[whole:].copy()

    def finish(self) -> None:
        """End of stream: the last, partial block counts (zero-padded, as offline)."""
        if len(self._partial):
            pad = np.zeros(self.frame_samples - len(self._partial), dtype=np.float32)
            self.hear(pad)

    def apply(self, log_probs: np.ndarray, first_frame: int, blank_id: int = 0) -> np.ndarray:
        """``log_probs (frames, vocab)`` of output frames ``first_frame`` onwards, with the
        frames without speech set to a certain blank."""
        n = len(log_probs)
        keep = np.zeros(n, dtype=bool)
        loud = np.array(self._loud, dtype=bool)
        for i in range(n):
            lo = max(first_frame + i - self.context - self._first, 0)
            hi = first_frame + i + self.context + 1 - self._first
            keep[i] = bool(loud[lo : max(hi, 0)].any())
        # Blocks no later frame can see again are dropped.
        drop = max(0, first_frame + n - self.context - self._first)
        del self._loud[:drop]
        self._first += drop
        return force_blank(log_probs, keep, blank_id)
