"""Sentences for the synthetic corpus, harvested from Debian's ``fortunes`` and ``wordnet-base``.

Both packages are plain text on disk, so the corpus needs no network: fortune cookies give
conversational English, WordNet glosses and their quoted examples give a wide vocabulary.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from stt.errors import ToolMissingError
from stt.text import Vocabulary, normalize_text

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_ATTRIBUTION = re.compile(r"^\s*(--|\u2014)")
_QUOTED = re.compile(r'"([^"]+)"')


def fortune_files(root: Path = FORTUNES_DIR) -> list[Path]:
    """The fortune text files (not their ``.dat`` indexes, ``.u8`` copies or offensive set)."""
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_file() and p.suffix not in (".dat", ".u8", ".sh")
    )


def wordnet_files(root: Path = WORDNET_DIR) -> list[Path]:
    return [root / name for name in WORDNET_FILES if (root / name).is_file()]


def split_sentences(text: str) -> list[str]:
    """Split running text at sentence ends (., !, ? followed by a capitalised word)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def iter_fortunes(path: Path) -> Iterator[str]:
    """Raw sentences of one fortune file (entries separated by ``%`` lines, attributions cut)."""
    text = path.read_text(encoding="latin-1")
    for entry in text.split("\n%\n"):
        lines = [line for line in entry.splitlines() if not _ATTRIBUTION.match(line)]
        yield from split_sentences(" ".join(line.strip() for line in lines))


def iter_wordnet(path: Path) -> Iterator[str]:
    """Quoted usage examples and definitions from one WordNet ``data.*`` file."""
    with path.open(encoding="latin-1") as handle:
        for line in handle:
            if line.startswith("  ") or " | " not in line:  # licence header, malformed
                continue
            gloss = line.split(" | ", 1)[1]
            yield from _QUOTED.findall(gloss)
            for part in _QUOTED.sub("", gloss).split(";"):
                yield part.strip()


def iter_text_file(path: Path) -> Iterator[str]:
    """Sentences of a user-supplied plain text file (one or more sentences per line)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            yield from split_sentences(line)


def clean_sentences(
    raw: Iterable[str], vocab: Vocabulary, min_words: int = 5, max_words: int = 20
) -> list[str]:
    """Normalise, keep ``min_words..max_words`` words of in-vocabulary text, de-duplicate.

    Order of first appearance is kept, so the result is deterministic for the same sources.
    """
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in raw:
        text = normalize_text(sentence)
        n_words = text.count(" ") + 1 if text else 0
        if not (min_words <= n_words <= max_words) or text in seen or vocab.oov_chars(text):
            continue
        seen.add(text)
        kept.append(text)
    return kept


def harvest(
    vocab: Vocabulary,
    min_words: int = 5,
    max_words: int = 20,
    extra_text_files: Iterable[str | Path] = (),
    use_debian: bool = True,
) -> list[str]:
    """All clean sentences from fortunes, WordNet and any extra text files.

    Raises:
        ToolMissingError: when no source is available (the Debian packages are not installed and
            no text file was given).
    """
    sources: list[Iterable[str]] = []
    if use_debian:
        sources += [iter_fortunes(p) for p in fortune_files()]
        sources += [iter_wordnet(p) for p in wordnet_files()]
    sources += [iter_text_file(Path(p)) for p in extra_text_files]
    if not sources:
        raise ToolMissingError(
            "no sentence source: install the Debian packages fortunes and wordnet-base "
            "(scripts/setup.sh does it), or pass text files with synth.text_files=[...]"
        )
    return clean_sentences((s for source in sources for s in source), vocab, min_words, max_words)


def sources_fingerprint(
    extra_text_files: Iterable[str | Path] = (), use_debian: bool = True
) -> str:
    """A short hash of the source files' names, sizes and mtimes, for caching the harvest."""
    files = (fortune_files() + wordnet_files()) if use_debian else []
    files += [Path(p) for p in extra_text_files]
    h = hashlib.sha1()
    for p in files:
        stat = p.stat()
        h.update(f"{p}:{stat.st_size}:{int(stat.st_mtime)}\n".encode())
    return h.hexdigest()[:12]
