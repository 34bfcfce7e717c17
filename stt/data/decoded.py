"""`stt data decode`: FLAC copies of a manifest's compressed audio, for training.

The shared corpora travel as ~30 kbit/s Opus, which decodes at only a few hundred times real time
per core; a training epoch reads every file again (speed perturbation needs the waveform), so on a
2-core machine decoding took a third of the CPU. 16-bit FLAC of the decoded samples holds the same
audio, reads several times faster, and costs about 0.6 MB per minute. Decoding happens once, in
parallel, and a rerun only redoes files that are missing or older than their source.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from stt.audio import load_audio, write_flac
from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.errors import STTError

LOSSLESS_SUFFIXES = frozenset({".flac", ".wav"})
"""Audio that already reads fast: referenced where it is, not copied."""


def decoded_path(source: Path, audio_dir: Path) -> Path:
    """Where the FLAC copy of ``source`` goes: its name with ``.flac``, in ``audio_dir``."""
    return audio_dir / f"{source.stem}.flac"


def _decode_one(job: tuple[str, str]) -> None:
    source, target = job
    write_flac(target, load_audio(source))


def _is_fresh(target: Path, source: Path) -> bool:
    return target.exists() and target.stat().st_mtime >= source.stat().st_mtime


def decode_manifest(
    manifest: str | Path,
    out_dir: str | Path,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/<manifest name>`` pointing at FLAC copies in ``out_dir/audio/``.

    Lossless inputs stay where they are. Two sources with the same file stem would share one
    copy, so they are refused. Returns the new manifest's path.

    Raises:
        AudioError: naming the first file that cannot be read (nothing half-written is left).
        STTError: for a missing or malformed manifest, or clashing file names.
    """
    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    utterances = read_manifest(manifest)
    rows: list[Utterance] = []
    jobs: list[tuple[str, str]] = []
    claimed: dict[Path, Path] = {}
    for utt in utterances:
        source = utt.audio_filepath
        if source.suffix.lower() in LOSSLESS_SUFFIXES:
            rows.append(utt)
            continue
        target = decoded_path(source, audio_dir)
        if claimed.setdefault(target, source) != source:
            raise STTError(f"{manifest}: {source} and {claimed[target]} would share {target.name}")
        if not _is_fresh(target, source):
            jobs.append((str(source), str(target)))
        rows.append(Utterance(target, utt.duration, utt.text, dict(utt.extra)))
    if jobs:
        workers = workers or os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = pool.map(_decode_one, jobs, chunksize=16)
            for _ in tqdm(done, total=len(jobs), desc="decode", unit="file", disable=not progress):
                pass
    return write_manifest(out_dir / Path(manifest).name, rows)
