"""One live stream's conversation, apart from any transport: PCM bytes and control messages in,
JSON-ready messages out. ``WS /v1/stream`` (:mod:`stt.serve.http`) drives it; tests drive it
directly.

Messages the client receives (every one a JSON object with a ``type``):

* ``ready``: ``sample_rate``, ``format``, ``pause_seconds``, ``model``: the stream is open.
* ``partial``: ``utterance`` (0, 1, ...), ``text`` and ``words`` of the utterance so far (greedy),
  sent when the text changes; ``seconds``: the stream time of the audio it covers (so a client
  can tell how far behind the audio it sent the answers are).
* ``final``: ``utterance``, ``text``, ``words``, ``start``/``end`` of the utterance and
  ``reason`` (``pause``, ``end``, ``max_length`` or ``close``). Word times are seconds from the
  start of the stream.
* ``error``: ``message``; the connection closes after a fatal one.

The client sends binary frames of audio (16 kHz mono, ``s16le`` by default or ``f32le``) and may
send ``{"type": "end"}`` to end the utterance now (its final comes back at once) or
``{"type": "reset"}`` to drop it. An utterance also ends by itself after ``pause_seconds`` with no
new word, or after ``max_utterance_seconds`` of audio (an utterance that is only silence is
then dropped without a final).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stt.audio import SAMPLE_RATE, as_chunk
from stt.errors import AudioError

FORMATS = ("s16le", "f32le")


def _word(w: Any, offset: float) -> dict[str, Any]:
    return {
        "word": w.word,
        "start": round(w.start + offset, 3),
        "end": round(w.end + offset, 3),
        "confidence": round(w.confidence, 4),
    }


class LiveSession:
    """The state of one stream: its transcriber (a :class:`stt.streaming.StreamingTranscriber`,
    named by its methods only, so the protocol does not import the model code), the bytes of a
    sample not yet complete, and where the current utterance began. Not thread-safe: one
    caller at a time (the HTTP layer awaits each call before the next)."""

    def __init__(
        self,
        transcriber: Any,
        audio_format: str = "s16le",
        pause_seconds: float = 0.8,
        max_utterance_seconds: float = 30.0,
    ) -> None:
        if audio_format not in FORMATS:
            raise AudioError(f"format must be one of {', '.join(FORMATS)}, got {audio_format!r}")
        self.transcriber = transcriber
        self.audio_format = audio_format
        self.sample_bytes = 2 if audio_format == "s16le" else 4
        self.pause_seconds = pause_seconds
        self.max_utterance_seconds = max_utterance_seconds
        self.utterance = 0
        self.offset = 0.0  # stream seconds at which the current utterance began
        self._rest = b""  # the bytes of a sample split across frames

    def ready(self, model: str) -> dict[str, Any]:
        return {
            "type": "ready",
            "sample_rate": SAMPLE_RATE,
            "format": self.audio_format,
            "pause_seconds": self.pause_seconds,
            "model": model,
        }

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Take the next bytes of audio; returns the messages they cause (often none). The
        server runs the same three steps with the model calls off its event loop.

        Raises:
            AudioError: samples that are not finite; the stream goes on with the next frame.
        """
        samples = self.take(data)
        if samples is None:
            return []
        messages, reason = self.heard(self.transcriber.accept(samples))
        if reason:
            messages.append(self.end(reason))
        return messages

    def take(self, data: bytes) -> np.ndarray | None:
        """The next bytes of audio as checked float32 samples for the transcriber (None: not
        one whole sample yet).

        Raises:
            AudioError: samples that are not finite (nothing is kept of this frame).
        """
        data = self._rest + data
        usable = len(data) - len(data) % self.sample_bytes
        if not usable:
            self._rest = data
            return None
        dtype = "<i2" if self.audio_format == "s16le" else "<f4"
        samples = as_chunk(np.frombuffer(data[:usable], dtype=dtype).astype(dtype[1:]))
        self._rest = data[usable:]
        return samples

    def heard(self, partial: Any) -> tuple[list[dict[str, Any]], str | None]:
        """The messages a new partial causes, and why the utterance ends now if it does (the
        caller then sends :meth:`end`'s final)."""
        messages = [self._partial(partial)] if partial.changed else []
        reason = self._endpoint(partial)
        if reason == "max_length" and not partial.words:
            self.reset()  # only silence so far: start over without a final to say
            reason = None
        return messages, reason

    def end(self, reason: str = "end") -> dict[str, Any]:
        """End the utterance now: its ``final`` message; the next audio starts a new one."""
        self._rest = b""
        transcript = self.transcriber.finish()
        message = {
            "type": "final",
            "utterance": self.utterance,
            "text": transcript.text,
            "words": [_word(w, self.offset) for w in transcript.words],
            "start": round(self.offset, 3),
            "end": round(self.offset + transcript.duration, 3),
            "reason": reason,
        }
        self.offset += transcript.duration
        self.utterance += 1
        return message

    def reset(self) -> None:
        """Drop the current utterance (its audio still counts for the stream's clock)."""
        self.offset += self.transcriber.encoder.seconds
        self._rest = b""
        self.transcriber.reset()

    @property
    def has_audio(self) -> bool:
        """Whether the current utterance has any audio (a final for it would say something)."""
        return self.transcriber.encoder.seconds > 0

    def close(self) -> None:
        self.transcriber.close()

    def _partial(self, partial: Any) -> dict[str, Any]:
        return {
            "type": "partial",
            "utterance": self.utterance,
            "text": partial.text,
            "words": [_word(w, self.offset) for w in partial.words],
            "seconds": round(self.offset + partial.seconds, 3),
        }

    def _endpoint(self, partial: Any) -> str | None:
        """Why the utterance ends after this audio, if it does."""
        if partial.seconds >= self.max_utterance_seconds:
            return "max_length"
        if partial.words and partial.seconds - partial.words[-1].end >= self.pause_seconds:
            return "pause"
        return None
