"""`stt data split`: carve a speaker-disjoint dev set out of a training manifest.

Scores on a dev set whose speakers were heard in training flatter the model; holding out whole
speakers measures what a user with a new voice will see.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.errors import ConfigError


def compile_speaker_pattern(pattern: str) -> re.Pattern:
    """``--speaker-pattern``, which must compile and hold a group to capture the speaker."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"--speaker-pattern {pattern!r}: not a regular expression ({exc})"
        ) from None
    if compiled.groups < 1:
        raise ConfigError(
            f"--speaker-pattern {pattern!r}: needs a group ( ) around the speaker, e.g. '^([^_]+)_'"
        )
    return compiled


def speaker_of(utt: Utterance, pattern: re.Pattern | None) -> str:
    """The ``speaker`` key, else the first group of ``pattern`` matched on the file name."""
    if pattern is not None:
        match = pattern.search(utt.audio_filepath.name)
        if match is None:
            raise ConfigError(
                f"{utt.audio_filepath.name}: does not match speaker pattern {pattern.pattern!r}"
            )
        return match.group(1)
    if utt.speaker is None:
        raise ConfigError(
            f"{utt.audio_filepath}: no 'speaker' key; give --speaker-pattern to read it from "
            "the file name"
        )
    return utt.speaker


def split_by_speaker(
    utterances: list[Utterance],
    dev_fraction: float,
    seed: int = 1,
    pattern: str | None = None,
    dev_speakers: list[str] | None = None,
) -> tuple[list[Utterance], list[Utterance]]:
    """Whole speakers, drawn at random (seeded), go to dev until it holds ``dev_fraction`` of the
    audio; at least one speaker goes to each side. Every utterance gets a ``speaker`` key.

    ``dev_speakers`` names the held-out groups instead of drawing them: for a one-reader corpus
    split by book (a pattern on the file name), or to keep a published dev split."""
    if dev_speakers is None and not 0 < dev_fraction < 1:
        raise ConfigError(f"dev fraction must be between 0 and 1, got {dev_fraction}")
    compiled = compile_speaker_pattern(pattern) if pattern else None
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utterances:
        speaker = speaker_of(utt, compiled)
        utt.extra["speaker"] = speaker
        by_speaker[speaker].append(utt)
    if len(by_speaker) < 2:
        raise ConfigError("need at least two speakers for a speaker-disjoint split")
    if dev_speakers is not None:
        return _split_named(utterances, set(dev_speakers), set(by_speaker))
    speakers = sorted(by_speaker)
    random.Random(seed).shuffle(speakers)
    total = sum(u.duration for u in utterances)
    dev_speakers: set[str] = set()
    dev_seconds = 0.0
    for speaker in speakers[:-1]:
        if dev_speakers and dev_seconds >= dev_fraction * total:
            break
        dev_speakers.add(speaker)
        dev_seconds += sum(u.duration for u in by_speaker[speaker])
    train = [u for u in utterances if u.extra["speaker"] not in dev_speakers]
    dev = [u for u in utterances if u.extra["speaker"] in dev_speakers]
    return train, dev


def split_by_utterance(
    utterances: list[Utterance], dev_fraction: float, seed: int = 1
) -> tuple[list[Utterance], list[Utterance]]:
    """A random (seeded) ``dev_fraction`` of the utterances goes to dev, at least one, and at
    least one stays; manifest order is kept on both sides. For data without speaker ids, where
    a speaker-disjoint split cannot be drawn: the dev set then flatters the model."""
    if not 0 < dev_fraction < 1:
        raise ConfigError(f"dev fraction must be between 0 and 1, got {dev_fraction}")
    if len(utterances) < 2:
        raise ConfigError("need at least two utterances to split")
    n_dev = min(max(1, round(dev_fraction * len(utterances))), len(utterances) - 1)
    picked = set(random.Random(seed).sample(range(len(utterances)), n_dev))
    train = [u for i, u in enumerate(utterances) if i not in picked]
    dev = [u for i, u in enumerate(utterances) if i in picked]
    return train, dev


def _split_named(
    utterances: list[Utterance], named: set[str], known: set[str]
) -> tuple[list[Utterance], list[Utterance]]:
    unknown = sorted(named - known)
    if unknown:
        raise ConfigError(f"dev speakers not in the manifest: {', '.join(unknown)}")
    if not named or named >= known:
        raise ConfigError("dev speakers must leave at least one speaker on each side")
    train = [u for u in utterances if u.extra["speaker"] not in named]
    dev = [u for u in utterances if u.extra["speaker"] in named]
    return train, dev


def split_manifest(
    manifest: str | Path,
    out_dir: str | Path,
    dev_fraction: float,
    seed: int,
    pattern: str | None,
    dev_speakers: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``out_dir/train.jsonl`` and ``out_dir/dev.jsonl``; returns their paths."""
    train, dev = split_by_speaker(
        read_manifest(manifest), dev_fraction, seed, pattern, dev_speakers
    )
    out_dir = Path(out_dir)
    return write_manifest(out_dir / "train.jsonl", train), write_manifest(
        out_dir / "dev.jsonl", dev
    )
