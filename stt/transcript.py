"""What transcription returns: a :class:`Transcript` of words with times, cut into subtitle
:class:`Segment` s by :func:`segment_words`. Shared by file transcription (:mod:`stt.transcribe`)
and live streams (:mod:`stt.streaming`), and written out by :mod:`stt.writers`."""

from __future__ import annotations

from dataclasses import dataclass

from stt.decoding import Word


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
