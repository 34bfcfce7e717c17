"""Manifests in NeMo's JSON Lines convention.

One JSON object per line with ``audio_filepath`` (relative paths resolve against the manifest's
folder), ``duration`` (seconds) and ``text``; any other keys (``speaker``, ``accent``...) are kept
in :attr:`Utterance.extra` and written back unchanged.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stt.atomic import atomic_path
from stt.errors import ManifestError, require_file

REQUIRED_KEYS = ("audio_filepath", "duration", "text")


@dataclass
class Utterance:
    """One manifest line. ``audio_filepath`` is absolute once read from a manifest."""

    audio_filepath: Path
    duration: float
    text: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speaker(self) -> str | None:
        value = self.extra.get("speaker")
        return None if value is None else str(value)

    @property
    def accent(self) -> str | None:
        value = self.extra.get("accent")
        return None if value is None else str(value)

    def to_json(self, manifest_dir: Path | None = None) -> str:
        """One JSON line; the path goes relative to ``manifest_dir`` when it lies inside it."""
        path = Path(self.audio_filepath)
        if manifest_dir is not None:
            path = path.absolute()  # a relative path built in code is relative to the cwd
            try:
                path = path.relative_to(Path(manifest_dir).resolve())
            except ValueError:
                pass
        record = {
            "audio_filepath": path.as_posix(),
            "duration": round(float(self.duration), 4),
            "text": self.text,
            **self.extra,
        }
        return json.dumps(record, ensure_ascii=False)


def parse_line(line: str, manifest_dir: Path, where: str) -> Utterance:
    """Parse and check one manifest line; ``where`` ("file:line") prefixes any error."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise ManifestError(f"{where}: missing key(s) {', '.join(missing)}")
    audio = record.pop("audio_filepath")
    duration = record.pop("duration")
    text = record.pop("text")
    if not isinstance(audio, str) or not audio.strip():
        raise ManifestError(f"{where}: 'audio_filepath' must be a non-empty string")
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise ManifestError(f"{where}: 'duration' must be a number of seconds, got {duration!r}")
    if not math.isfinite(duration) or duration < 0:
        raise ManifestError(f"{where}: 'duration' must be finite and >= 0, got {duration!r}")
    if not isinstance(text, str):
        raise ManifestError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    path = Path(os.path.expanduser(audio))
    if not path.is_absolute():
        path = manifest_dir / path
    return Utterance(Path(os.path.normpath(path)), float(duration), text, record)


def iter_manifest_lines(path: str | Path) -> Iterator[tuple[int, Utterance | ManifestError]]:
    """Yield ``(line_number, Utterance or ManifestError)`` for every non-blank line.

    Lets a validator report every bad line instead of stopping at the first; a line that is not
    UTF-8 is one bad line, not the end of the file.
    """
    path = Path(path)
    require_file(path, "manifest", ManifestError, kind=".jsonl")
    manifest_dir = path.resolve().parent
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, ManifestError(f"{where}: not UTF-8 text ({exc.reason})")
                continue
            try:
                yield lineno, parse_line(line, manifest_dir, where)
            except ManifestError as exc:
                yield lineno, exc


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a whole manifest; the first malformed line raises ``ManifestError`` with its number."""
    utterances = []
    for _, item in iter_manifest_lines(path):
        if isinstance(item, ManifestError):
            raise item
        utterances.append(item)
    return utterances


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> Path:
    """Write utterances as JSON Lines atomically; paths inside the manifest's folder go relative."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest_dir = path.parent.resolve()
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for utt in utterances:
            handle.write(utt.to_json(manifest_dir) + "\n")
    return path
