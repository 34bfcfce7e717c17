"""Corpus importers: standard on-disk corpus layouts -> NeMo-style JSON Lines manifests.

Each importer reads a corpus as it is distributed, pairs every transcript with its audio file,
reads the duration from the audio header, runs the transcript through
:func:`stt.text.normalize_text` and writes one manifest per split under ``OUT`` (see
:func:`stt.data.manifest.write_manifest`: audio inside ``OUT`` is written relative, everything
else absolute).

Supported corpora (``import_corpus(name, SRC, OUT)``):

``librispeech``
    ``SRC/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` -> ``OUT/<subset>.jsonl``.
``commonvoice``
    ``SRC/{train,dev,test,validated}.tsv`` + ``SRC/clips/*.mp3`` -> ``OUT/<split>.jsonl``.
``vctk``
    ``SRC/txt/<spk>/<utt>.txt`` + ``SRC/wav48_silence_trimmed`` (0.92) or ``SRC/wav48`` (0.80)
    -> ``OUT/vctk.jsonl``.
``an4``
    ``SRC/etc/an4_{train,test}.transcription`` (+ ``.fileids``) + ``SRC/wav/...`` ->
    ``OUT/an4_{train,test}.jsonl``.

``SRC`` may also be the folder one level above the corpus root (e.g. the folder a tarball was
extracted into). Utterances whose audio is missing or unreadable, or whose transcript is empty
after normalisation, are skipped and counted in one warning line per manifest on the
``stt.data.importers`` logger; a malformed transcript line raises :class:`CorpusError` naming
``file:line``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from stt.audio import SAMPLE_RATE, audio_duration, write_flac
from stt.data.manifest import Utterance, write_manifest
from stt.errors import AudioError, CorpusError
from stt.text import normalize_text

logger = logging.getLogger("stt.data.importers")

__all__ = [
    "IMPORTERS",
    "CorpusError",
    "import_an4",
    "import_commonvoice",
    "import_corpus",
    "import_librispeech",
    "import_vctk",
]


# --------------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One transcript waiting for its audio: the first existing candidate file is used."""

    key: str
    candidates: tuple[Path, ...]
    text: str
    extra: dict[str, Any] = field(default_factory=dict)
    convert_to: Path | None = None  # for headerless .raw audio: FLAC written here


@dataclass
class _Split:
    name: str  # manifest file stem
    items: list[_Item]
    empty: int = 0  # transcripts dropped because normalisation left nothing
    first_empty: str | None = None


def _natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders embedded numbers numerically ("p9" < "p10")."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _check_dirs(src: Path, out: Path) -> tuple[Path, Path]:
    src = Path(os.path.expanduser(src))
    out = Path(os.path.expanduser(out))
    if not src.exists():
        raise CorpusError(f"{src}: corpus folder not found")
    if not src.is_dir():
        raise CorpusError(f"{src}: is a file; expected the corpus folder")
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out}: output path exists and is not a folder")
    return src.resolve(), out.resolve()


def _find_root(src: Path, is_root: Callable[[Path], bool]) -> Path | None:
    """``src`` if it is the corpus root, else the first (sorted) child folder that is."""
    if is_root(src):
        return src
    for child in sorted(p for p in src.iterdir() if p.is_dir()):
        if is_root(child):
            return child
    return None


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for non-blank lines; decoding errors become CorpusError."""
    try:
        with path.open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if line.strip():
                    yield lineno, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _add(split: _Split, item: _Item, raw_text: str) -> None:
    """Normalise ``raw_text`` and queue the item, or count it as an empty transcript."""
    text = normalize_text(raw_text)
    if not text.strip():
        split.empty += 1
        split.first_empty = split.first_empty or item.key
        return
    item.text = text
    split.items.append(item)


def _read_raw(path: Path) -> np.ndarray:
    """Headerless 16 kHz 16-bit signed big-endian mono PCM (AN4's ``.raw``) as float32."""
    try:
        samples = np.fromfile(path, dtype=">i2")
    except (OSError, ValueError) as exc:
        raise AudioError(f"{path}: unreadable raw PCM ({exc})") from None
    if samples.size == 0:
        raise AudioError(f"{path}: raw PCM file holds no samples")
    return samples.astype(np.float32) / 32768.0


def _probe(item: _Item) -> tuple[Path, float] | str:
    """Resolve an item's audio: ``(path, duration)``, or ``"missing"`` / ``"unreadable"``."""
    path = next((p for p in item.candidates if p.is_file()), None)
    if path is None:
        return "missing"
    try:
        if path.suffix.lower() == ".raw" and item.convert_to is not None:
            target = item.convert_to
            fresh = target.is_file() and target.stat().st_mtime >= path.stat().st_mtime
            if not fresh:
                waveform = _read_raw(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                write_flac(target, waveform, SAMPLE_RATE)
                return target, len(waveform) / SAMPLE_RATE
            path = target
        duration = audio_duration(path)
    except (AudioError, OSError) as exc:
        logger.debug("skipping %s: %s", item.key, exc)
        return "unreadable"
    if duration <= 0:
        return "unreadable"
    return path, duration


def _run(corpus: str, src: Path, out: Path, splits: list[_Split], progress: bool) -> list[Path]:
    """Probe every item's audio (threaded), warn about skips, write one manifest per split."""
    results: list[tuple[str, list[Utterance]]] = []
    workers = min(16, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for split in splits:
            split.items.sort(key=lambda it: _natural_key(it.key))
            utterances: list[Utterance] = []
            missing: list[str] = []
            unreadable: list[str] = []
            probes = pool.map(_probe, split.items)
            bar = tqdm(
                probes,
                total=len(split.items),
                desc=f"{corpus} {split.name}",
                unit="utt",
                disable=not progress,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            for item, probed in zip(split.items, bar, strict=True):
                if probed == "missing":
                    missing.append(item.key)
                elif probed == "unreadable":
                    unreadable.append(item.key)
                else:
                    path, duration = probed  # type: ignore[misc]
                    utterances.append(Utterance(path, duration, item.text, item.extra))
            skipped = len(missing) + len(unreadable) + split.empty
            if skipped:
                first = (missing or unreadable or [split.first_empty])[0]
                logger.warning(
                    "%s %s: skipped %d of %d utterances (%d missing audio, %d unreadable audio, "
                    "%d empty transcript); first skipped: %s",
                    corpus,
                    split.name,
                    skipped,
                    skipped + len(utterances),
                    len(missing),
                    len(unreadable),
                    split.empty,
                    first,
                )
            results.append((split.name, utterances))
    if not any(utts for _, utts in results):
        raise CorpusError(
            f"{src}: no usable {corpus} utterances found (every transcript lacked readable audio)"
        )
    return [write_manifest(out / f"{name}.jsonl", utts) for name, utts in results]


# --------------------------------------------------------------------------------------------
# LibriSpeech
# --------------------------------------------------------------------------------------------

_LIBRI_LAYOUT = "SRC/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt"


def _is_libri_subset(path: Path) -> bool:
    return next(iter(path.glob("*/*/*.trans.txt")), None) is not None


def _librispeech_subsets(src: Path) -> list[Path]:
    if _is_libri_subset(src):
        return [src]
    for root in (src, src / "LibriSpeech"):
        if root.is_dir():
            subsets = sorted(p for p in root.iterdir() if p.is_dir() and _is_libri_subset(p))
            if subsets:
                return subsets
    return []


def import_librispeech(src: Path, out: Path, progress: bool = True) -> list[Path]:
    """Import LibriSpeech: one manifest ``OUT/<subset>.jsonl`` per subset found.

    Layout: ``SRC/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` with lines
    ``<speaker>-<chapter>-<nnnn> TRANSCRIPT`` and ``<id>.flac`` beside it. ``SRC`` may be the
    ``LibriSpeech/`` folder, its parent, or a single subset folder. Extra keys: ``speaker``,
    ``chapter``, ``id``.
    """
    src, out = _check_dirs(src, out)
    subsets = _librispeech_subsets(src)
    if not subsets:
        raise CorpusError(f"{src}: not a LibriSpeech folder (expected {_LIBRI_LAYOUT})")
    splits = []
    for subset in subsets:
        split = _Split(subset.name, [])
        for trans in sorted(subset.glob("*/*/*.trans.txt")):
            prefix = trans.name[: -len(".trans.txt")]
            for lineno, line in _read_lines(trans):
                parts = line.split(maxsplit=1)
                where = f"{trans}:{lineno}"
                if len(parts) != 2:
                    raise CorpusError(f"{where}: expected 'ID TRANSCRIPT', got {line.strip()!r}")
                uid, raw_text = parts
                fields = uid.split("-")
                if len(fields) != 3 or uid.rsplit("-", 1)[0] != prefix:
                    raise CorpusError(
                        f"{where}: utterance id {uid!r} does not match the file ({prefix}-NNNN)"
                    )
                extra = {"speaker": fields[0], "chapter": fields[1], "id": uid}
                _add(split, _Item(uid, (trans.parent / f"{uid}.flac",), "", extra), raw_text)
        splits.append(split)
    return _run("librispeech", src, out, splits, progress)


# --------------------------------------------------------------------------------------------
# Common Voice
# --------------------------------------------------------------------------------------------

_CV_SPLITS = ("train", "dev", "test", "validated")
_CV_LAYOUT = "SRC/{train,dev,test,validated}.tsv and SRC/clips/"


def _is_cv_root(path: Path) -> bool:
    return (path / "clips").is_dir() and any((path / f"{s}.tsv").is_file() for s in _CV_SPLITS)


def _read_cv_tsv(tsv: Path, clips: Path, split: _Split) -> None:
    rows = iter(_read_lines(tsv))
    header_line = next(rows, None)
    if header_line is None:
        return
    header = [name.strip().lower() for name in header_line[1].split("\t")]
    if "path" not in header or "sentence" not in header:
        raise CorpusError(
            f"{tsv}:{header_line[0]}: header lacks the 'path' and 'sentence' columns "
            f"(got {', '.join(header)})"
        )
    col = {name: i for i, name in enumerate(header)}
    accent_col = col.get("accents", col.get("accent"))
    needed = max(col["path"], col["sentence"])

    def get(row: list[str], index: int | None) -> str:
        return row[index].strip() if index is not None and index < len(row) else ""

    for lineno, line in rows:
        row = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))
        if len(row) <= needed:
            raise CorpusError(
                f"{tsv}:{lineno}: expected {len(header)} tab-separated columns, got {len(row)}"
            )
        name = get(row, col["path"])
        if not name:
            raise CorpusError(f"{tsv}:{lineno}: empty 'path' column")
        candidates = [clips / name]
        if not Path(name).suffix:
            candidates.append(clips / f"{name}.mp3")
        extra: dict[str, Any] = {"speaker": get(row, col.get("client_id")), "id": Path(name).stem}
        if not extra["speaker"]:
            del extra["speaker"]
        for key, index in (("accent", accent_col), ("gender", col.get("gender"))):
            if value := get(row, index):
                extra[key] = value
        if age := get(row, col.get("age")):
            extra["age"] = age
        _add(split, _Item(name, tuple(candidates), "", extra), row[col["sentence"]])


def import_commonvoice(src: Path, out: Path, progress: bool = True) -> list[Path]:
    """Import a Common Voice language folder: ``OUT/<split>.jsonl`` per split tsv present.

    Layout: ``SRC/{train,dev,test,validated}.tsv`` (tab-separated, header ``client_id path
    sentence up_votes down_votes age gender accents|accent locale segment``; other columns and
    other tsvs are ignored) and ``SRC/clips/<path>`` (mp3, kept as is). Extra keys: ``speaker``
    (client_id), ``id``, and ``accent``, ``gender``, ``age`` when non-empty.
    """
    src, out = _check_dirs(src, out)
    root = _find_root(src, _is_cv_root)
    if root is None:
        raise CorpusError(f"{src}: not a Common Voice folder (expected {_CV_LAYOUT})")
    splits = []
    for name in _CV_SPLITS:
        tsv = root / f"{name}.tsv"
        if tsv.is_file():
            split = _Split(name, [])
            _read_cv_tsv(tsv, root / "clips", split)
            splits.append(split)
    return _run("commonvoice", src, out, splits, progress)


# --------------------------------------------------------------------------------------------
# VCTK
# --------------------------------------------------------------------------------------------

_VCTK_LAYOUT = "SRC/txt/<speaker>/*.txt and SRC/wav48_silence_trimmed/ (0.92) or SRC/wav48/ (0.80)"
_GENDERS = {"f": "female", "m": "male"}


def _is_vctk_root(path: Path) -> bool:
    return (path / "txt").is_dir() and (
        (path / "wav48_silence_trimmed").is_dir() or (path / "wav48").is_dir()
    )


def _read_speaker_info(path: Path) -> dict[str, dict[str, str]]:
    """``speaker-info.txt``: ``ID AGE GENDER ACCENTS REGION...`` -> {"p225": {accent, gender}}."""
    info: dict[str, dict[str, str]] = {}
    if not path.is_file():
        return info
    for lineno, line in _read_lines(path):
        fields = line.split()
        if fields[0].upper() == "ID":
            continue
        if len(fields) < 3:
            raise CorpusError(f"{path}:{lineno}: expected 'ID AGE GENDER ACCENTS REGION'")
        speaker = f"p{fields[0]}" if fields[0].isdigit() else fields[0]
        entry = {"gender": _GENDERS.get(fields[2].lower(), fields[2])}
        if len(fields) > 3 and not fields[3].startswith("("):
            entry["accent"] = fields[3]
        info[speaker] = entry
    return info


def import_vctk(src: Path, out: Path, progress: bool = True) -> list[Path]:
    """Import VCTK (release 0.92 or 0.80) into ``OUT/vctk.jsonl``.

    Layout: ``SRC/txt/<spk>/<spk>_<nnn>.txt`` (one transcript per file) with audio either
    ``SRC/wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac`` (0.92; ``_mic2`` if mic1 is
    absent) or ``SRC/wav48/<spk>/<spk>_<nnn>.wav`` (0.80). ``SRC/speaker-info.txt`` (optional;
    ``ID AGE GENDER ACCENTS REGION``, ids with or without the ``p``) adds ``accent`` and
    ``gender`` (``female``/``male``). Extra keys: ``speaker``, ``id``, ``accent``, ``gender``.
    Transcripts without audio (VCTK has some) are skipped and counted.
    """
    src, out = _check_dirs(src, out)
    root = _find_root(src, _is_vctk_root)
    if root is None:
        raise CorpusError(f"{src}: not a VCTK folder (expected {_VCTK_LAYOUT})")
    speakers = _read_speaker_info(root / "speaker-info.txt")
    trimmed, wav48 = root / "wav48_silence_trimmed", root / "wav48"
    split = _Split("vctk", [])
    for txt in sorted((root / "txt").glob("*/*.txt")):
        speaker, uid = txt.parent.name, txt.stem
        lines = [line.strip() for _, line in _read_lines(txt)]
        candidates = (
            trimmed / speaker / f"{uid}_mic1.flac",
            trimmed / speaker / f"{uid}_mic2.flac",
            wav48 / speaker / f"{uid}.wav",
        )
        extra = {"speaker": speaker, "id": uid, **speakers.get(speaker, {})}
        _add(split, _Item(uid, candidates, "", extra), " ".join(lines))
    return _run("vctk", src, out, [split], progress)


# --------------------------------------------------------------------------------------------
# AN4
# --------------------------------------------------------------------------------------------

_AN4_SPLITS = ("an4_train", "an4_test")
_AN4_LAYOUT = "SRC/etc/an4_{train,test}.transcription and SRC/wav/"
_AN4_LINE = re.compile(r"^\s*(?:<s>)?(?P<text>.*?)(?:</s>)?\s*\((?P<id>[^()\s]+)\)\s*$")
_AN4_EXTS = (".flac", ".wav", ".sph", ".raw")


def _is_an4_root(path: Path) -> bool:
    return (path / "wav").is_dir() and any(
        (path / "etc" / f"{s}.transcription").is_file() for s in _AN4_SPLITS
    )


def _swap_id(uid: str) -> str:
    """``fash-an251-b`` <-> ``an251-fash-b`` (transcription ids come in both orders)."""
    parts = uid.split("-")
    return "-".join([parts[1], parts[0], *parts[2:]]) if len(parts) >= 3 else uid


def _an4_split(
    root: Path, out: Path, name: str, wav_index: Callable[[], dict[str, Path]]
) -> _Split:
    etc, wav = root / "etc", root / "wav"
    fileids_path = etc / f"{name}.fileids"
    fileids: list[str] = []
    if fileids_path.is_file():
        fileids = [line.strip() for _, line in _read_lines(fileids_path)]
    by_name = {Path(f).name: f for f in fileids}
    lines = list(_read_lines(etc / f"{name}.transcription"))
    split = _Split(name, [])
    for index, (lineno, line) in enumerate(lines):
        match = _AN4_LINE.match(line)
        if match is None:
            raise CorpusError(
                f"{etc / f'{name}.transcription'}:{lineno}: expected '<s> TRANSCRIPT </s> (id)'"
            )
        uid, raw_text = match["id"], match["text"].replace("<s>", " ").replace("</s>", " ")
        fileid = by_name.get(uid) or by_name.get(_swap_id(uid))
        if fileid is None and fileids and len(fileids) == len(lines):
            fileid = fileids[index]  # .fileids and .transcription are parallel files
        if fileid is not None:
            candidates = tuple(wav / f"{fileid}{ext}" for ext in _AN4_EXTS)
            rel = Path(fileid)
        else:
            index_map = wav_index()
            found = index_map.get(uid) or index_map.get(_swap_id(uid))
            candidates = (found,) if found else ()
            rel = found.relative_to(wav).with_suffix("") if found else Path(uid)
        parts = uid.split("-")
        speaker = rel.parent.name or (parts[1] if len(parts) >= 3 else parts[0])
        item = _Item(
            rel.as_posix(),
            candidates,
            "",
            {"speaker": speaker, "id": rel.name},
            convert_to=out / "audio" / f"{rel.as_posix()}.flac",
        )
        _add(split, item, raw_text)
    return split


def import_an4(src: Path, out: Path, progress: bool = True) -> list[Path]:
    """Import CMU AN4 into ``OUT/an4_train.jsonl`` and ``OUT/an4_test.jsonl``.

    Layout (as in ``an4_sphere.tar.gz``): ``SRC/etc/an4_{train,test}.transcription`` with lines
    ``<s> WORDS </s> (an251-fash-b)``, optional parallel ``SRC/etc/an4_{train,test}.fileids``
    with lines ``an4_clstk/fash/an251-fash-b`` (relative to ``SRC/wav/``, no extension), and
    audio ``SRC/wav/<fileid>.{flac,wav,sph,raw}``. Headerless ``.raw`` (16 kHz 16-bit signed
    big-endian mono) is converted to ``OUT/audio/<fileid>.flac`` (reused when up to date).
    Extra keys: ``speaker`` (the speaker folder, e.g. ``fash``), ``id``.
    """
    src, out = _check_dirs(src, out)
    root = _find_root(src, _is_an4_root)
    if root is None:
        raise CorpusError(f"{src}: not an AN4 folder (expected {_AN4_LAYOUT})")
    cache: dict[str, Path] = {}

    def wav_index() -> dict[str, Path]:
        if not cache:
            for path in sorted((root / "wav").rglob("*")):
                if path.suffix.lower() in _AN4_EXTS and path.is_file():
                    cache.setdefault(path.stem, path)
        return cache

    splits = [
        _an4_split(root, out, name, wav_index)
        for name in _AN4_SPLITS
        if (root / "etc" / f"{name}.transcription").is_file()
    ]
    return _run("an4", src, out, splits, progress)


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

IMPORTERS: dict[str, Callable[[Path, Path], list[Path]]] = {
    "librispeech": import_librispeech,
    "commonvoice": import_commonvoice,
    "vctk": import_vctk,
    "an4": import_an4,
}


def import_corpus(name: str, src: Path, out: Path, progress: bool = True) -> list[Path]:
    """Import corpus ``name`` (a key of :data:`IMPORTERS`) from ``src``; returns manifest paths.

    Raises:
        CorpusError: unknown name, missing ``src``, unrecognised layout, malformed transcript
            line, or no usable utterance at all.
    """
    importer = IMPORTERS.get(name.lower())
    if importer is None:
        raise CorpusError(f"unknown corpus {name!r} (expected one of: {', '.join(IMPORTERS)})")
    return importer(Path(src), Path(out), progress=progress)  # type: ignore[call-arg]
