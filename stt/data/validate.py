"""`stt data validate`: check manifests before hours of training are spent on them."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from stt.audio import audio_duration
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
    empty_texts: int = 0
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
        if self.oov_chars:
            chars = " ".join(f"{c!r}x{n}" for c, n in self.oov_chars.most_common())
            lines.append(
                f"  characters outside the vocabulary on {len(self.oov_lines)} line(s): {chars}"
                f" (first lines: {', '.join(map(str, self.oov_lines[:max_listed]))})"
            )
        for title, items in (
            ("malformed lines", self.line_errors),
            ("missing or unreadable audio", self.audio_errors),
            ("duration mismatches", self.duration_mismatches),
        ):
            if items:
                lines.append(f"  {title}: {len(items)}")
                lines += [f"    {item}" for item in items[:max_listed]]
                if len(items) > max_listed:
                    lines.append(f"    ... and {len(items) - max_listed} more")
        return "\n".join(lines)


def validate_manifest(
    path: str | Path,
    vocab: Vocabulary | None = None,
    check_audio: bool = True,
    duration_tolerance: float = 0.1,
    workers: int = 4,
    progress: bool = True,
) -> ManifestReport:
    """Read every line of a manifest and check its text and (optionally) its audio.

    Audio is checked from file headers only (cheap), in ``workers`` threads: existence,
    readability and that the header's duration is within ``duration_tolerance`` seconds of
    the manifest's. A manifest that cannot be opened at all raises ``ManifestError``.
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
        oov = [c for c in item.text if c not in vocab]
        if oov:
            report.oov_chars.update(oov)
            report.oov_lines.append(lineno)
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


def _check_audio(
    manifest: str | Path, lineno: int, utt: Utterance, tolerance: float
) -> tuple[str, str]:
    where = f"{manifest}:{lineno}"
    try:
        actual = audio_duration(utt.audio_filepath)
    except AudioError as exc:
        return "audio", f"{where}: {exc}"
    if abs(actual - utt.duration) > tolerance:
        return "duration", (
            f"{where}: {utt.audio_filepath} lasts {actual:.2f} s, "
            f"manifest says {utt.duration:.2f} s"
        )
    return "ok", ""
