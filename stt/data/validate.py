"""`stt data validate`: check manifests before hours of training are spent on them."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stt.audio import SOUNDFILE_ERRORS, open_audio, unreadable_audio
from stt.data.manifest import Utterance, iter_manifest_lines
from stt.errors import AudioError, ManifestError
from stt.text import Vocabulary


@dataclass
class ManifestReport:
    """What :func:`validate_manifest` found in one manifest; ``ok`` is False on any problem."""

    path: Path
    utterances: int = 0
    seconds: float = 0.0
    speakers: Counter = field(default_factory=Counter)
    accents: Counter = field(default_factory=Counter)
    oov_chars: Counter = field(default_factory=Counter)
    oov_lines: list[int] = field(default_factory=list)
    oov_errors: list[str] = field(default_factory=list)  # "file:line: ..." per line
    empty_texts: int = 0
    empty_errors: list[str] = field(default_factory=list)  # "file:line: ..." per line
    line_errors: list[str] = field(default_factory=list)
    audio_errors: list[str] = field(default_factory=list)
    duration_mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.line_errors or self.audio_errors or self.duration_mismatches or self.oov_chars
        )

    def format(self, max_listed: int = 10) -> str:
        """A human-readable report: totals, then every kind of problem (first few of each)."""
        lines = [
            f"{self.path}: {'OK' if self.ok else 'PROBLEMS FOUND'}",
            f"  utterances: {self.utterances}   hours: {self.seconds / 3600:.3f}",
        ]
        if self.speakers:
            lines.append(f"  speakers: {len(self.speakers)}")
        if self.accents:
            accents = ", ".join(f"{a} ({n})" for a, n in sorted(self.accents.items()))
            lines.append(f"  accents: {accents}")
        if self.empty_texts:
            lines.append(f"  warning: {self.empty_texts} utterance(s) with an empty transcript")
            lines += _listed(self.empty_errors, max_listed)
        if self.oov_chars:
            chars = " ".join(f"{c!r}x{n}" for c, n in self.oov_chars.most_common())
            lines.append(
                f"  characters outside the vocabulary on {len(self.oov_lines)} line(s): {chars}"
            )
            lines += _listed(self.oov_errors, max_listed)
        for title, items in (
            ("malformed lines", self.line_errors),
            ("missing or unreadable audio", self.audio_errors),
            ("duration mismatches", self.duration_mismatches),
        ):
            if items:
                lines.append(f"  {title}: {len(items)}")
                lines += _listed(items, max_listed)
        return "\n".join(lines)


def _listed(items: list[str], max_listed: int) -> list[str]:
    """The first ``max_listed`` problem lines, indented, and how many more there are."""
    out = [f"    {item}" for item in items[:max_listed]]
    if len(items) > max_listed:
        out.append(f"    ... and {len(items) - max_listed} more")
    return out


def validate_manifest(
    path: str | Path,
    vocab: Vocabulary | None = None,
    check_audio: bool = True,
    duration_tolerance: float = 0.1,
    workers: int = 4,
    progress: bool = True,
) -> ManifestReport:
    """Read every line of a manifest and check its text and (optionally) its audio.

    Audio is decoded whole, in ``workers`` threads, block by block (bounded memory): each file
    must exist, decode to its last sample (a truncated file may decode a prefix silently or
    fail late), hold as many samples as its header says, hold only finite samples, and last
    within ``duration_tolerance`` seconds of the manifest's duration. Every problem is one line
    ``file:LINE: ...``. A manifest that cannot be opened at all raises ``ManifestError``.
    """
    vocab = vocab or Vocabulary.default()
    report = ManifestReport(Path(path))
    rows: list[tuple[int, Utterance]] = []
    for lineno, item in iter_manifest_lines(path):
        if isinstance(item, ManifestError):
            report.line_errors.append(str(item))
            continue
        rows.append((lineno, item))
        report.utterances += 1
        report.seconds += item.duration
        if item.speaker is not None:
            report.speakers[item.speaker] += 1
        if item.accent is not None:
            report.accents[item.accent] += 1
        if not item.text.strip():
            report.empty_texts += 1
            report.empty_errors.append(f"{path}:{lineno}: empty transcript")
        oov = [c for c in item.text if c not in vocab]
        if oov:
            report.oov_chars.update(oov)
            report.oov_lines.append(lineno)
            chars = " ".join(repr(c) for c in dict.fromkeys(oov))
            report.oov_errors.append(f"{path}:{lineno}: characters outside the vocabulary: {chars}")
    if check_audio and rows:
        with ThreadPoolExecutor(workers) as pool:
            checks = pool.map(lambda row: _check_audio(path, *row, duration_tolerance), rows)
            for kind, message in tqdm(
                checks, total=len(rows), desc=f"audio {Path(path).name}", disable=not progress
            ):
                if kind == "audio":
                    report.audio_errors.append(message)
                elif kind == "duration":
                    report.duration_mismatches.append(message)
    return report


_BLOCK_FRAMES = 1 << 16  # frames decoded at a time: memory stays bounded for long files
_TRUNCATION_SLACK_SECONDS = 0.01  # MP3 headers estimate their length; a real cut is larger


def decoded_seconds(path: str | Path) -> float:
    """Decode the whole file block by block and return its duration in seconds, counted from
    the samples decoded rather than read from the header.

    Raises:
        AudioError: missing, unreadable, truncated (fewer samples than the header says, or a
            decoder error part way), zero samples, or NaN/infinite sample values.
    """
    with open_audio(path) as handle:
        rate, promised = handle.samplerate, handle.frames
        decoded = 0
        try:
            while True:
                block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    break
                if not np.isfinite(block).all():
                    raise AudioError(f"{path}: audio contains NaN or infinite sample values")
                decoded += len(block)
        except SOUNDFILE_ERRORS as exc:
            raise unreadable_audio(path, exc) from None
    if decoded == 0:
        raise AudioError(f"{path}: audio has zero samples")
    if 0 < promised and promised - decoded > _TRUNCATION_SLACK_SECONDS * rate:
        raise AudioError(
            f"{path}: truncated: the header says {promised / rate:.2f} s, "
            f"only {decoded / rate:.2f} s decode"
        )
    return decoded / rate


def _check_audio(
    manifest: str | Path, lineno: int, utt: Utterance, tolerance: float
) -> tuple[str, str]:
    where = f"{manifest}:{lineno}"
    try:
        actual = decoded_seconds(utt.audio_filepath)
    except AudioError as exc:
        return "audio", f"{where}: {exc}"
    if abs(actual - utt.duration) > tolerance:
        return "duration", (
            f"{where}: {utt.audio_filepath} lasts {actual:.2f} s, "
            f"manifest says {utt.duration:.2f} s"
        )
    return "ok", ""
