"""n-gram language models for beam-search decoding, built with KenLM.

A CTC model spells words letter by letter; a word-level n-gram model lets the beam search prefer
spellings that form likely word sequences. :func:`build_lm` makes one from plain text files:

1. every line goes through :func:`stt.text.normalize_text`, the same normaliser the acoustic
   model's transcripts went through, so the LM's words are exactly the words the model can spell
   ("Dr. Smith's 21st" -> "dr smith's twenty first");
2. KenLM's ``lmplz`` estimates a modified Kneser-Ney model into an ARPA file, with its sorting
   memory bounded by ``-S`` so a large corpus spills to disk instead of exhausting RAM;
3. KenLM's ``build_binary`` converts it to the binary format, which loads by mmap in a fraction of
   the ARPA's parse time;
4. the ARPA's unigrams become the word list pyctcdecode wants (it uses it to score partial words).

``lmplz`` and ``build_binary`` are compiled into the virtualenv by ``scripts/build_kenlm.sh`` (run
by ``scripts/setup.sh``), since no package ships them; :func:`kenlm_tool` finds them.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stt.errors import ConfigError, STTError, ToolMissingError, require_file
from stt.text import normalize_text

log = logging.getLogger(__name__)

MIN_ORDER = 2
"""``build_binary`` refuses unigram-only models ("assumes at least a bigram model")."""

MAX_ORDER = 6
"""KenLM's compiled-in ``KENLM_MAX_ORDER``, for both ``build_binary`` and the ``kenlm`` module."""

BINARY_TYPE = "trie"
"""The binary data structure. KenLM's ``probing`` hash table queries somewhat faster, but the
``trie`` takes about a third of its memory (and less still on disk) and is built with a bounded
on-disk sort; beam-search decoding is dominated by the acoustic model and pyctcdecode's own Python
code, not by n-gram lookups, so the memory saving is worth more than the lookup speed."""

SPECIAL_WORDS = frozenset({"<s>", "</s>", "<unk>"})
"""KenLM's sentence-boundary and unknown-word tokens: in the ARPA, but not words anyone says."""

_MEMORY_RE = re.compile(r"^\d+(\.\d+)?[%bKMGTPEZY]?$")  # what lmplz/build_binary -S accept
_HELP = (
    "run scripts/build_kenlm.sh (needs cmake, g++, libboost-program-options-dev, "
    "libboost-system-dev, libboost-thread-dev, libboost-test-dev, zlib1g-dev)"
)


@dataclass(frozen=True)
class LMArtifacts:
    """What :func:`build_lm` wrote, and how much text went into it."""

    arpa: Path
    binary: Path
    unigrams: Path
    order: int
    sentences: int
    words: int


def kenlm_tool(name: str) -> Path:
    """The path of KenLM's ``name`` program (``"lmplz"`` or ``"build_binary"``).

    Looks first beside ``sys.executable`` (the virtualenv's ``bin/``, where
    ``scripts/build_kenlm.sh`` installs them, which is not on ``PATH`` unless the venv is
    activated), then on ``PATH``.

    Raises:
        ToolMissingError: naming the program and how to build it.
    """
    # Not .resolve(): the venv's python is a symlink to the system one, and we want the venv.
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ToolMissingError(f"{name} not found: {_HELP}")


def normalized_sentences(paths: Iterable[str | os.PathLike[str]]) -> Iterator[str]:
    """Yield every non-empty line of the text files, normalised with :func:`normalize_text`.

    One line is one sentence for the LM (``<s>`` ... ``</s>``). Lines that normalise to nothing
    (blank lines, pure punctuation, symbols without a spoken form) are skipped. Files ending in
    ``.xz``, ``.gz`` or ``.bz2`` are decompressed as they are read (large corpora ship that way).

    Raises:
        STTError: naming a file that is missing, unreadable or not UTF-8 text (with the line).
    """
    for path in paths:
        path = Path(path)
        lineno = 0
        try:
            with open_text_source(path) as f:  # decoded line by line: an error names its line
                for raw in f:
                    lineno += 1
                    sentence = normalize_text(raw.decode("utf-8"))
                    if sentence:
                        yield sentence
        except FileNotFoundError as e:
            raise STTError(f"{path}: text file not found") from e
        except (OSError, EOFError, lzma.LZMAError) as e:
            reason = getattr(e, "strerror", None) or e
            raise STTError(f"{path}: cannot read text file ({reason})") from e
        except UnicodeDecodeError as e:
            raise STTError(f"{path}:{lineno}: not UTF-8 text") from e


def open_text_source(path: Path) -> IO[bytes]:
    """``path`` opened for binary reading, decompressing ``.xz``/``.gz``/``.bz2`` on the fly."""
    openers = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
    opener = openers.get(path.suffix.lower())
    return opener(path, "rb") if opener else path.open("rb")


def load_unigrams(path: str | os.PathLike[str]) -> list[str]:
    """Read a unigram list written by :func:`build_lm`: one word per line, blanks skipped.

    Raises:
        ConfigError: if the file cannot be read or is not UTF-8.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read unigram list ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: unigram list is not UTF-8 text") from e
    return [w for w in (line.strip() for line in text.splitlines()) if w]


def arpa_unigrams(arpa: str | os.PathLike[str]) -> list[str]:
    """The words of an ARPA file's ``\\1-grams:`` section, without ``<s>``, ``</s>``, ``<unk>``,
    sorted. This is the vocabulary pyctcdecode needs to know which partial words can still
    become a word the LM knows."""
    words: set[str] = set()
    inside = False
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                inside = True
            elif inside:
                if not line or line.startswith("\\"):
                    break
                fields = line.split("\t")
                if len(fields) >= 2 and fields[1] not in SPECIAL_WORDS:
                    words.add(fields[1])
    return sorted(words)


def arpa_counts(arpa: str | os.PathLike[str]) -> dict[int, int]:
    """The n-gram counts from an ARPA file's ``\\data\\`` header: ``{1: 12, 2: 17, ...}``."""
    counts: dict[int, int] = {}
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("ngram "):
                n, _, count = line[len("ngram ") :].partition("=")
                counts[int(n)] = int(count)
            elif line.startswith("\\1-grams:"):
                break
    return counts


def _check_settings(order: int, memory: str, prune: list[int] | None) -> None:
    """Reject bad settings before normalising what may be a very large corpus."""
    if not MIN_ORDER <= order <= MAX_ORDER:
        raise ConfigError(
            f"n-gram order must be {MIN_ORDER}-{MAX_ORDER} (KenLM's binary format needs at least "
            f"bigrams and was compiled for at most {MAX_ORDER}-grams), got {order}"
        )
    if not _MEMORY_RE.match(memory):
        raise ConfigError(
            f"memory must be a number with an optional unit % b K M G T P E Z Y (lmplz -S, "
            f"e.g. 20% or 2G), got {memory!r}"
        )
    if prune is not None:
        if not prune or len(prune) > order or any(int(p) != p or p < 0 for p in prune):
            raise ConfigError(
                f"prune must be 1 to {order} non-negative counts (one per order), got {prune}"
            )
        if any(a > b for a, b in zip(prune, prune[1:], strict=False)):
            raise ConfigError(f"prune thresholds must not decrease with the order, got {prune}")


def _failure_message(stderr: str) -> str:
    """The informative part of a KenLM program's stderr.

    KenLM reports an exception as ``file.cc:N in <signature> threw X because `cond'.`` followed
    by the human-readable message, and ``build_binary`` then prints ``ERROR``: keep the message
    after the last "threw" line; otherwise fall back to the last non-empty line.
    """
    lines = [line.strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and line != "ERROR"]
    threw = [i for i, line in enumerate(lines) if " threw " in line]
    if threw and threw[-1] + 1 < len(lines):
        return " ".join(lines[threw[-1] + 1 :])
    return lines[-1] if lines else "no error message"


def _run(cmd: list[str], progress: bool) -> None:
    """Run a KenLM program; with ``progress`` its own progress bars go to our stderr.

    Raises:
        STTError: "<program> failed (exit N): <its error message>" (or "(signal SIGABRT)").
    """
    name = Path(cmd[0]).name
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as e:
        raise ToolMissingError(f"{cmd[0]}: cannot run ({e.strerror or e}): {_HELP}") from e
    assert proc.stderr is not None
    chunks: list[bytes] = []
    try:
        # Byte chunks, not lines: KenLM draws its progress bars one '*' at a time.
        while chunk := proc.stderr.read1(65536):
            chunks.append(chunk)
            if progress:
                sys.stderr.write(chunk.decode("utf-8", "replace"))
                sys.stderr.flush()
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stderr.close()
    if rc != 0:
        stderr = b"".join(chunks).decode("utf-8", "replace")
        how = f"exit {rc}"
        if rc < 0:  # KenLM aborts (SIGABRT) on its own exceptions
            try:
                how = f"signal {signal.Signals(-rc).name}"
            except ValueError:
                how = f"signal {-rc}"
        raise STTError(f"{name} failed ({how}): {_failure_message(stderr)}")


def build_lm(
    texts: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    order: int = 3,
    memory: str = "20%",
    prune: list[int] | None = None,
    discount_fallback: bool = True,
    progress: bool = True,
    quantize_bits: int | None = None,
) -> LMArtifacts:
    """Build a KenLM ``order``-gram model of the normalised ``texts`` into ``out_dir``.

    Writes ``out_dir/``:

    * ``corpus.txt``: the normalised sentences, one per line (what the LM was estimated on);
    * ``lm.arpa``: ``lmplz -o order -S memory`` (modified Kneser-Ney); ``prune`` is lmplz's
      ``--prune`` (per-order count thresholds, e.g. ``[0, 0, 1]`` drops singleton trigrams);
      ``discount_fallback`` passes ``--discount_fallback`` so that small or repetitive corpora,
      whose count-of-counts make the closed-form discounts undefined, still give a model;
    * ``lm.bin``: ``build_binary`` in the :data:`BINARY_TYPE` structure (see there for why);
      ``quantize_bits`` (e.g. 8) stores probabilities and backoffs in that many bits
      (``-q N -b N``) and compresses the trie's pointers (``-a 22``): about a third of the size
      for a negligible change in scores;
    * ``unigrams.txt``: the model's words, sorted, one per line (pyctcdecode's ``unigrams``);
    * ``lm.json``: the settings and counts.

    ``memory`` bounds the sorting memory of both programs (``-S``: ``20%`` of RAM, ``2G``...);
    their temporary files go in a hidden folder inside ``out_dir``. Everything is written under
    temporary names and renamed at the end, so a failed or interrupted build leaves no half
    model (and a previous model in ``out_dir`` intact).

    Raises:
        ConfigError: for an order outside 2-6, a malformed memory size or prune list.
        ToolMissingError: if ``lmplz`` or ``build_binary`` is not installed.
        STTError: for a missing or unreadable text file, text with no words in it, or a failing
            KenLM program (with its error message).
    """
    paths = [Path(t) for t in texts]
    out = Path(out_dir)
    _check_options(paths, order, memory, prune, quantize_bits)
    lmplz, build_binary = kenlm_tool("lmplz"), kenlm_tool("build_binary")
    _check_text_files(paths)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise STTError(f"{out}: cannot create output folder ({e.strerror or e})") from e

    work = Path(tempfile.mkdtemp(dir=out, prefix=".lm-build-"))
    try:
        sentences, words = _write_corpus(paths, work / "corpus.txt")
        _estimate_arpa(lmplz, work, order, memory, prune, discount_fallback, progress)
        _convert_to_binary(build_binary, work, memory, quantize_bits, progress)
        unigram_words = _write_unigrams(work)
        settings = {
            "order": order,
            "memory": memory,
            "prune": list(prune) if prune else None,
            "discount_fallback": discount_fallback,
            "binary_type": BINARY_TYPE,
            "quantize_bits": quantize_bits,
        }
        _write_metadata(work, settings, paths, sentences, words, len(unigram_words))
        _publish(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    log.info("lm: wrote %s (%d words in the vocabulary)", out / "lm.bin", len(unigram_words))
    return LMArtifacts(
        arpa=out / "lm.arpa",
        binary=out / "lm.bin",
        unigrams=out / "unigrams.txt",
        order=order,
        sentences=sentences,
        words=words,
    )


def _check_options(
    paths: list[Path], order: int, memory: str, prune: list[int] | None, quantize_bits: int | None
) -> None:
    """Reject bad settings up front: normalising a large corpus takes minutes, and a mistake
    found only when KenLM runs would waste them."""
    if not paths:
        raise ConfigError("no text files given")
    _check_settings(order, memory, prune)
    if quantize_bits is not None and not 2 <= quantize_bits <= 25:
        raise ConfigError(f"quantisation must be 2-25 bits, got {quantize_bits}")


def _check_text_files(paths: list[Path]) -> None:
    """Fail before normalising the first file if the fifth is missing or is a folder."""
    for path in paths:
        require_file(path, "text", missing="text file")


def _write_corpus(paths: list[Path], corpus: Path) -> tuple[int, int]:
    """Write the normalised sentences of ``paths`` to ``corpus``, one per line; return the counts
    of sentences and words.

    The LM must see the words exactly as the acoustic model spells them, so the text goes through
    the transcripts' normaliser; lmplz reads the result, and it is kept as ``corpus.txt`` so the
    model's training text can be inspected.

    Raises:
        STTError: if no words are left after normalisation.
    """
    sentences = words = 0
    with corpus.open("w", encoding="utf-8") as f:
        for sentence in normalized_sentences(paths):
            f.write(sentence + "\n")
            sentences += 1
            words += sentence.count(" ") + 1
    if not sentences:
        names = ", ".join(str(p) for p in paths)
        raise STTError(f"no words left in {names} after normalisation")
    log.info("lm: %d sentences, %d words from %d file(s)", sentences, words, len(paths))
    return sentences, words


def _estimate_arpa(
    lmplz: Path,
    work: Path,
    order: int,
    memory: str,
    prune: list[int] | None,
    discount_fallback: bool,
    progress: bool,
) -> None:
    """Run lmplz on ``work/corpus.txt`` into ``work/lm.arpa`` (modified Kneser-Ney).

    ``-S`` bounds its sorting memory and ``-T`` puts its spill files in ``work``, so a large
    corpus goes to disk inside the output folder instead of exhausting RAM or filling /tmp.
    ``--discount_fallback`` lets small or repetitive corpora, whose count-of-counts leave the
    closed-form discounts undefined, still give a model.
    """
    cmd = [str(lmplz), "-o", str(order), "-S", memory, "-T", f"{work}/"]
    cmd += ["--text", str(work / "corpus.txt"), "--arpa", str(work / "lm.arpa")]
    if prune:
        cmd += ["--prune", *(str(int(p)) for p in prune)]
    if discount_fallback:
        cmd.append("--discount_fallback")  # last: it takes optional values
    log.info("lm: estimating the %d-gram model with lmplz (-S %s)", order, memory)
    _run(cmd, progress)


def _convert_to_binary(
    build_binary: Path, work: Path, memory: str, quantize_bits: int | None, progress: bool
) -> None:
    """Run build_binary on ``work/lm.arpa`` into ``work/lm.bin``: the binary format loads by mmap
    in a fraction of the ARPA's parse time. Quantised probabilities and backoffs (``-q N -b N``)
    with compressed trie pointers (``-a 22``) take about a third of the space for a negligible
    change in scores."""
    log.info("lm: converting to KenLM's binary %s format with build_binary", BINARY_TYPE)
    cmd = [str(build_binary), "-S", memory, "-T", f"{work}/"]
    if quantize_bits:
        bits = str(quantize_bits)
        cmd += ["-q", bits, "-b", bits, "-a", "22"]
    cmd.append(BINARY_TYPE)
    _run([*cmd, str(work / "lm.arpa"), str(work / "lm.bin")], progress)


def _write_unigrams(work: Path) -> list[str]:
    """Write ``work/unigrams.txt``, the ARPA's words one per line, and return them: pyctcdecode
    needs the word list to tell which partial words can still become a word the LM knows."""
    words = arpa_unigrams(work / "lm.arpa")
    (work / "unigrams.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    return words


def _write_metadata(
    work: Path,
    settings: dict,
    paths: list[Path],
    sentences: int,
    words: int,
    vocabulary: int,
) -> None:
    """Write ``lm.json``: the settings and counts, so that a model file says how it was made (and
    can be made again) without the build's log."""
    info = {
        **settings,
        "texts": [str(p) for p in paths],
        "normalizer": "stt.text.normalize_text",
        "sentences": sentences,
        "words": words,
        "vocabulary": vocabulary,
        "ngrams": {str(n): c for n, c in sorted(arpa_counts(work / "lm.arpa").items())},
        "files": {
            "corpus": "corpus.txt",
            "arpa": "lm.arpa",
            "binary": "lm.bin",
            "unigrams": "unigrams.txt",
        },
    }
    (work / "lm.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _publish(work: Path, out: Path) -> None:
    """Move the finished files from ``work`` into ``out`` by atomic renames, ``lm.json`` last: its
    presence says the rest of this build is in place, so a build interrupted here never passes
    for a complete one."""
    for name in ("corpus.txt", "lm.arpa", "unigrams.txt", "lm.bin", "lm.json"):
        os.replace(work / name, out / name)
