"""Transcript files: plain text, JSON, SubRip (.srt), WebVTT (.vtt) and Whisper-style TSV.

Every formatter turns a :class:`stt.transcript.Transcript` into text (:data:`FORMATTERS`); every
writer takes a transcript and a path, and writes atomically (a
temporary file in the same folder, flushed and renamed), so an interrupted run never leaves a
half-written file where a complete one was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stt.atomic import atomic_path
from stt.errors import ConfigError

if TYPE_CHECKING:
    from stt.transcript import Transcript

FORMATS = ("txt", "json", "srt", "vtt", "tsv")


def format_timestamp(seconds: float, decimal_marker: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or, with ``decimal_marker="."``, ``HH:MM:SS.mmm`` (WebVTT)."""
    ms = max(0, int(round(seconds * 1000)))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def _atomic_write(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_txt(transcript: Transcript) -> str:
    """One line per segment (nothing for silence)."""
    return "".join(f"{_one_line(s.text)}\n" for s in transcript.segments)


def format_json(transcript: Transcript) -> str:
    """:meth:`Transcript.to_dict`: text, duration, segments and words (word, start, end,
    confidence), times in seconds."""
    return json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2) + "\n"


def format_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues from 1, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, blank-line separated."""
    cues = [
        f"{i}\n{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{_one_line(s.text)}\n"
        for i, s in enumerate(transcript.segments, start=1)
    ]
    return "\n".join(cues)


def format_vtt(transcript: Transcript) -> str:
    """WebVTT: a ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
    cues = [
        f"{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}\n"
        f"{_one_line(s.text)}\n\n"
        for s in transcript.segments
    ]
    return "WEBVTT\n\n" + "".join(cues)


def format_tsv(transcript: Transcript) -> str:
    """Like Whisper's: a ``start end text`` header, then one row per segment, times in integer
    milliseconds, tab-separated."""
    rows = ["start\tend\ttext\n"] + [
        f"{round(1000 * s.start)}\t{round(1000 * s.end)}\t{_one_line(s.text)}\n"
        for s in transcript.segments
    ]
    return "".join(rows)


FORMATTERS: dict[str, Callable[[Transcript], str]] = {
    "txt": format_txt,
    "json": format_json,
    "srt": format_srt,
    "vtt": format_vtt,
    "tsv": format_tsv,
}
"""Each format as text: the files below, and the server's responses (:mod:`stt.serve`)."""


def write_transcript(transcript: Transcript, path: str | Path, fmt: str) -> Path:
    """Write ``transcript`` to ``path`` in format ``fmt`` (one of :data:`FORMATS`)."""
    return _atomic_write(path, FORMATTERS[fmt](transcript))


def write_txt(transcript: Transcript, path: str | Path) -> Path:
    """:func:`format_txt` to ``path``."""
    return write_transcript(transcript, path, "txt")


def write_json(transcript: Transcript, path: str | Path) -> Path:
    """:func:`format_json` to ``path``."""
    return write_transcript(transcript, path, "json")


def write_srt(transcript: Transcript, path: str | Path) -> Path:
    """:func:`format_srt` to ``path``."""
    return write_transcript(transcript, path, "srt")


def write_vtt(transcript: Transcript, path: str | Path) -> Path:
    """:func:`format_vtt` to ``path``."""
    return write_transcript(transcript, path, "vtt")


def write_tsv(transcript: Transcript, path: str | Path) -> Path:
    """:func:`format_tsv` to ``path``."""
    return write_transcript(transcript, path, "tsv")


WRITERS: dict[str, Callable[[Transcript, str | Path], Path]] = {
    "txt": write_txt,
    "json": write_json,
    "srt": write_srt,
    "vtt": write_vtt,
    "tsv": write_tsv,
}


def parse_formats(spec: str | None) -> list[str]:
    """``"srt,vtt"`` or ``"all"`` -> the list of formats; None means all.

    Raises:
        ConfigError: for an unknown format.
    """
    if spec is None:
        return list(FORMATS)
    formats: list[str] = []
    for name in str(spec).split(","):
        name = name.strip().lower()
        if name == "all":
            formats += FORMATS
        elif name in WRITERS:
            formats.append(name)
        elif name:
            raise ConfigError(f"unknown format {name!r}: choose from {', '.join(FORMATS)}, all")
    if not formats:
        raise ConfigError(f"no output format in {spec!r}")
    return list(dict.fromkeys(formats))


def output_stems(paths: Sequence[str | Path]) -> list[str]:
    """A file name stem (maybe with subfolders) per input, distinct across the inputs: the
    audio file's stem, or where two inputs share it, their paths below their common folder."""
    paths = [Path(p).absolute() for p in paths]
    stems = [p.stem for p in paths]
    for attempt in ("relative", "with_suffix"):
        groups: dict[str, list[int]] = {}
        for i, stem in enumerate(stems):
            groups.setdefault(stem, []).append(i)
        clashes = [idx for idx in groups.values() if len(idx) > 1]
        if not clashes:
            break
        for idx in clashes:
            root = Path(os.path.commonpath([paths[i].parent for i in idx]))
            for i in idx:
                rel = paths[i].relative_to(root)
                stems[i] = (rel.with_suffix("") if attempt == "relative" else rel).as_posix()
    return stems
