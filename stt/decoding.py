"""Turning CTC log-probabilities into text, word timestamps and word confidences.

Two decoders share one interface (:class:`Decoder`): :class:`GreedyDecoder` takes the best label
per frame, merges repeats and drops blanks; :class:`BeamSearchDecoder` runs pyctcdecode's prefix
beam search, optionally fused with a KenLM n-gram language model and biased towards hotwords.
:func:`build_decoder` picks one from a :class:`DecoderConfig`.

Both return a :class:`DecodeResult` per utterance with the same definitions:

* **Word timestamps** (seconds): a word spans ``[start_frame, end_frame) * frame_seconds``, where
  ``start_frame`` is the frame that emits its first character and ``end_frame - 1`` is the last
  frame of its last character (including that character's repeated frames).
* **Word confidence** (0-1): the mean, over the word's frames that are not blank-dominated (blank
  is not the frame's best label), of the posterior probability of the best of the word's own
  characters on that frame. For a greedy path this is the mean peak posterior of the word's
  frames; for beam search it also drops when the language model or a hotword chose characters
  the acoustics did not favour. A word whose frames are all blank-dominated averages all its
  frames instead.

There is one greedy decoder: :meth:`GreedyDecoder.texts` is its text-only form for the trainer's
batched dev metrics, and :class:`GreedyStream` its incremental form for live partials.

Decoder settings live here too, resolved in one order by ``stt eval``, ``stt transcribe`` (with
``--stream`` too), :func:`stt.transcribe.load_model` and :func:`stt.streaming.load_streaming_model`
(see :func:`resolve_decoder`), each later step winning key by key:

1. the :class:`DecoderConfig` defaults (greedy);
2. the tuned settings in ``decoder.yaml`` beside the checkpoint (:func:`save_tuned_decoder`,
   written by ``stt eval --multirun``; LM paths in it are relative to its folder);
3. the settings given explicitly: ``decoder.KEY=VALUE`` on the command line, or a dict from
   Python. ``stt eval`` gives ``kind=beam`` (its second decoder is beam search whatever the file
   says) unless told otherwise; ``stt transcribe`` takes ``--lm``, ``--beam-width`` or hotwords
   without a kind as ``kind=beam``.

A whole :class:`DecoderConfig` given from Python is used as it is, with nothing laid under it.
"""

from __future__ import annotations

import bisect
import copy
import logging
import multiprocessing
import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import OmegaConf

from stt.beam_search import beam_search_class
from stt.errors import ConfigError, require_file
from stt.lm import load_unigrams
from stt.text import Vocabulary, normalize_text

log = logging.getLogger(__name__)

DECODER_KINDS = ("greedy", "beam")
TUNED_DECODER_FILE = "decoder.yaml"
_PYCTCDECODE_MIN_LOGP = float(np.log(1e-15))  # pyctcdecode.constants.MIN_TOKEN_CLIP_P


# ---------------------------------------------------------------------------------------------
# Results and configuration
# ---------------------------------------------------------------------------------------------


@dataclass
class Word:
    """One decoded word: times in seconds (``[start, end)``), confidence in ``[0, 1]``."""

    word: str
    start: float
    end: float
    confidence: float


@dataclass
class DecodeResult:
    """One utterance's transcript.

    ``n_best`` lists ``(text, score)`` best first; ``n_best[0][0] == text``. Greedy gives one
    entry scored by the sum of its best-path log-probabilities; beam search gives up to
    ``DecoderConfig.n_best`` distinct texts scored by the search's combined score (acoustic
    log-probability, plus ``alpha`` * LM log-probability and ``beta`` per word with an LM, plus
    hotword bonuses). Higher is better in both cases.
    """

    text: str
    words: list[Word]
    n_best: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class DecoderConfig:
    """How to decode: the one place its defaults live (the ``decoder:`` blocks of
    ``conf/eval.yaml`` and ``conf/transcribe.yaml`` repeat them for Hydra's overrides)."""

    kind: str = "greedy"  # greedy | beam
    beam_width: int = 32
    lm: str | None = None  # KenLM .binary/.bin or .arpa file
    unigrams: str | None = None  # the LM's vocabulary, one word per line
    alpha: float = 0.5  # LM weight
    beta: float = 1.0  # word insertion bonus (with an LM)
    beam_prune_logp: float = -10.0  # drop beams this far below the best
    # Labels below this log-prob on a frame are skipped (unless best); bench decode_prune.json:
    # -4 decodes 1.26x faster than -5 at the same pooled dev WER.
    token_min_logp: float = -4.0
    hotwords: list[str] = field(default_factory=list)
    hotword_weight: float = 10.0
    n_best: int = 1


class Decoder(Protocol):
    """What every decoder offers. ``log_probs``: ``(frames, vocab)`` natural-log posteriors of
    one utterance, valid frames only; ``frame_seconds``: seconds between output frames."""

    def decode(self, log_probs: np.ndarray, frame_seconds: float) -> DecodeResult: ...

    def decode_batch(self, batch: list[np.ndarray], frame_seconds: float) -> list[DecodeResult]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Shared helpers: input checks, timestamps and confidence
# ---------------------------------------------------------------------------------------------


def _as_log_probs(log_probs: np.ndarray | torch.Tensor, vocab_size: int) -> np.ndarray:
    """``(frames, vocab)`` float32 log-probabilities, renormalised per frame."""
    if isinstance(log_probs, torch.Tensor):
        log_probs = log_probs.detach().cpu().numpy()
    lp = np.asarray(log_probs, dtype=np.float32)
    if lp.ndim != 2 or lp.shape[1] != vocab_size:
        raise ValueError(
            f"log_probs must have shape (frames, {vocab_size}) for this vocabulary, "
            f"got {tuple(lp.shape)}"
        )
    if lp.shape[0]:
        # Cheap insurance: confidences and scores assume each frame sums to probability one.
        peak = lp.max(axis=1, keepdims=True)
        lp = lp - (peak + np.log(np.exp(lp - peak).sum(axis=1, keepdims=True)))
    return np.ascontiguousarray(lp)


def _check_frame_seconds(frame_seconds: float) -> None:
    if not frame_seconds > 0:
        raise ValueError(f"frame_seconds must be positive, got {frame_seconds}")


class _WordScorer:
    """Turns ``(word, (start_frame, end_frame))`` spans into :class:`Word` objects."""

    def __init__(self, vocab: Vocabulary) -> None:
        self._blank = vocab.blank_id
        self._ids = {tok: i for i, tok in enumerate(vocab.tokens) if i != vocab.blank_id}

    def words(
        self, lp: np.ndarray, spans: list[tuple[str, tuple[int, int]]], frame_seconds: float
    ) -> list[Word]:
        if not spans:
            return []
        frames = lp.shape[0]
        posteriors = np.exp(lp)  # (frames, vocab)
        voiced = lp.argmax(axis=1) != self._blank  # (frames,) not blank-dominated
        out = []
        previous_end = 0
        for word, (start, end) in spans:
            start = min(max(int(start), previous_end), frames)
            end = min(max(int(end), start), frames)
            previous_end = end
            ids = sorted({self._ids[c] for c in word if c in self._ids})
            confidence = 0.0
            if end > start and ids:
                own = posteriors[start:end, ids].max(axis=1)  # (span,)
                mask = voiced[start:end]
                confidence = float(own[mask].mean() if mask.any() else own.mean())
            out.append(Word(word, start * frame_seconds, end * frame_seconds, min(confidence, 1.0)))
        return out


# ---------------------------------------------------------------------------------------------
# Greedy
# ---------------------------------------------------------------------------------------------


class GreedyDecoder:
    """Best path: the most likely label per frame, repeats merged, blanks dropped.

    Words are runs of non-space characters. Needs no resources; :meth:`close` does nothing.
    """

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self._tokens = np.array(vocab.tokens, dtype=object)
        self._space = vocab.tokens.index(" ") if " " in vocab else -1
        self._scorer = _WordScorer(vocab)

    def decode(self, log_probs: np.ndarray, frame_seconds: float) -> DecodeResult:
        _check_frame_seconds(frame_seconds)
        lp = _as_log_probs(log_probs, len(self.vocab))
        if not lp.shape[0]:
            return DecodeResult("", [], [("", 0.0)])
        best = lp.argmax(axis=1)  # (frames,)
        score = float(np.take_along_axis(lp, best[:, None], axis=1).sum())
        spans = self._spans(best)
        text = " ".join(word for word, _ in spans)
        words = self._scorer.words(lp, spans, frame_seconds)
        return DecodeResult(text, words, [(text, score)])

    def texts(self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
        """Text only, for a padded batch ``(batch, frames, vocab)`` of ``lengths`` valid frames
        (None: all): what :meth:`decode` gives, without timestamps, for the trainer's dev WER."""
        best = log_probs.argmax(dim=-1).cpu().numpy()
        if lengths is None:
            lengths = torch.full((best.shape[0],), best.shape[1])
        return [
            " ".join(word for word, _ in self._spans(row[:n]))
            for row, n in zip(best, lengths.tolist(), strict=True)
        ]

    def _spans(self, best: np.ndarray) -> list[tuple[str, tuple[int, int]]]:
        """Words of the best path ``(frames,)`` of labels, with their ``[start, end)`` frames."""
        if not best.shape[0]:
            return []
        # Runs of equal labels; each non-blank run emits one character.
        run_start = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
        run_end = np.r_[run_start[1:], best.shape[0]]
        labels = best[run_start]
        emitted = labels != self.vocab.blank_id
        labels, run_start, run_end = labels[emitted], run_start[emitted], run_end[emitted]
        # Words: maximal groups of consecutive non-space characters.
        letter = labels != self._space
        first = np.flatnonzero(letter & ~np.r_[False, letter[:-1]])
        last = np.flatnonzero(letter & ~np.r_[letter[1:], False])
        return [
            ("".join(self._tokens[labels[a : b + 1]]), (int(run_start[a]), int(run_end[b])))
            for a, b in zip(first.tolist(), last.tolist(), strict=True)
        ]

    def decode_batch(self, batch: list[np.ndarray], frame_seconds: float) -> list[DecodeResult]:
        return [self.decode(lp, frame_seconds) for lp in batch]

    def close(self) -> None:
        pass

    def __enter__(self) -> GreedyDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GreedyStream:
    """:class:`GreedyDecoder` run incrementally: the same best path, words, timestamps and
    confidences, decoded as frames arrive (the live partials of :mod:`stt.streaming`);
    ``tests/test_streaming.py`` pins the two equal on any chunking.

    Keeps the finished words and, for the word being spoken, its characters and the log-probs of
    its frames (its confidence needs them); nothing else grows. The open word's confidence is
    summed incrementally, so a partial result costs the new frames only.
    """

    def __init__(self, vocab: Vocabulary, frame_seconds: float) -> None:
        self.blank = vocab.blank_id
        self.space = vocab.tokens.index(" ") if " " in vocab else -1
        self.tokens = vocab.tokens
        self.frame_seconds = frame_seconds
        self.reset()

    def reset(self) -> None:
        self.words: list[Word] = []
        self._words_text = ""  # " ".join of the finished words
        self.frames = 0
        self._previous = -1  # best label of the last frame
        self._clear_word()

    def _clear_word(self) -> None:
        self._text = ""  # the open word ("": none)
        self._last = -1  # its last character's label
        self._start = 0  # its first frame
        self._end = 0  # one past the last frame of its last character's run
        self._rows: list[np.ndarray] = []  # its frames' log-probs, from _start on
        self._voiced: list[bool] = []  # per frame: best label not the blank
        self._ids: list[int] = []  # its distinct labels, sorted
        self._scored_ids = 0  # how many of them the sums below are for
        self._scored = 0  # frames summed below
        self._sums = np.zeros(4)  # own posterior over voiced frames, their count; over all, count

    @property
    def open_frames(self) -> int:
        """Frames of log-probs kept for the word being spoken."""
        return len(self._rows)

    def accept(self, log_probs: np.ndarray) -> bool:
        """Decode ``(frames, vocab)`` more log-probs; True if a label was emitted."""
        changed = False
        for row, label in zip(log_probs, log_probs.argmax(axis=1).tolist(), strict=True):
            t = self.frames
            self.frames += 1
            if label != self._previous and label != self.blank:  # a label is emitted
                changed = True
                if label == self.space:
                    self._close()
                else:
                    if not self._text:
                        self._start = t
                    self._last = label
                    self._text += self.tokens[label]
                    if label not in self._ids:
                        bisect.insort(self._ids, label)
            if self._text:
                self._rows.append(row)
                self._voiced.append(label != self.blank)
                if label == self._last:  # still in the run of the word's last character
                    self._end = t + 1
            self._previous = label
        return changed

    def _close(self) -> None:
        if self._text:
            self.words.append(self._open_word())
            self._words_text += f" {self._text}" if self._words_text else self._text
            self._clear_word()

    def _open_word(self) -> Word:
        """The word being spoken as it stands, scored as :class:`_WordScorer`:
        the mean over its voiced frames of the best posterior among its own characters."""
        ids = self._ids
        if len(ids) != self._scored_ids:  # a new character: rescore the word's frames
            self._scored_ids, self._scored, self._sums = len(ids), 0, np.zeros(4)
        n = self._end - self._start
        if n > self._scored:
            own = np.exp(np.asarray(self._rows[self._scored : n])[:, ids]).max(axis=1)
            voiced = np.asarray(self._voiced[self._scored : n])
            self._sums += (own[voiced].sum(), voiced.sum(), own.sum(), len(own))
            self._scored = n
        own_voiced, n_voiced, own_all, n_all = self._sums
        confidence = own_voiced / n_voiced if n_voiced else own_all / n_all
        fs = self.frame_seconds
        return Word(self._text, self._start * fs, self._end * fs, min(float(confidence), 1.0))

    def finish(self) -> list[Word]:
        """Close the open word; returns all the words."""
        self._close()
        return self.words

    def current_words(self) -> list[Word]:
        """The finished words and the open one (its characters so far)."""
        return self.words + [self._open_word()] if self._text else list(self.words)

    def text(self) -> str:
        """The text so far: the words, the open one included, one space apart."""
        if self._text and self._words_text:
            return f"{self._words_text} {self._text}"
        return self._words_text or self._text


# ---------------------------------------------------------------------------------------------
# Beam search (pyctcdecode)
# ---------------------------------------------------------------------------------------------


def pyctcdecode_labels(vocab: Vocabulary) -> list[str]:
    """The vocabulary as pyctcdecode labels: the blank becomes ``""``, everything else (the word
    delimiter ``" "`` included) stays as it is."""
    return ["" if i == vocab.blank_id else tok for i, tok in enumerate(vocab.tokens)]


KENLM_BINARY_MAGIC = b"mmap lm http://kheafield.com/code"


def check_kenlm_file(path: Path) -> None:
    """A KenLM binary or an ARPA file, told by its first bytes: anything else is refused here,
    before KenLM prints its loading chatter and a decoding error about some other file."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    compressed_arpa = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ")  # gzip, bzip2, xz: KenLM reads them
    if head.startswith((KENLM_BINARY_MAGIC, *compressed_arpa)):
        return
    if head.lstrip().startswith(b"\\data\\"):
        return
    raise ConfigError(f"{path}: not a KenLM language model (neither a KenLM binary nor ARPA text)")


_LANGUAGE_MODELS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
"""Loaded pyctcdecode language models by (LM file, unigram file, their sizes and times), while
a decoder uses them: the unigram trie takes seconds to build, and a server's offline and
streaming decoders can share one. Closing the last decoder frees it."""
_LANGUAGE_MODELS_LOCK = threading.Lock()


class UnigramPrefixes:
    """Every prefix of every LM unigram, answering the one question pyctcdecode's
    ``LanguageModel`` asks its ``pygtrie.CharTrie``: ``has_node(partial_word)``, non-zero when
    some known word starts with it (so the partial word is not yet out of vocabulary).

    That question is the beam search's hottest call with an LM (a fifth of its time, measured on
    the shipped 4-gram's 165 k words); a set answers it ~5x faster than the pure-Python trie, is
    built faster and holds less memory (~30 MB vs ~42 MB)."""

    def __init__(self, words: Iterable[str]) -> None:
        self._prefixes = frozenset(w[:i] for w in words for i in range(1, len(w) + 1))

    def has_node(self, key: str) -> int:
        """2 (a subtrie, as pygtrie says) if ``key`` starts a known word, else 0."""
        return 2 if not key or key in self._prefixes else 0


_BUILDING_WITHOUT_UNIGRAMS = threading.local()


class _MissingUnigramsFilter(logging.Filter):
    """Drops pyctcdecode's "No known unigrams" warning, only for the thread that is building a
    model whose unigrams :func:`_new_language_model` sets itself; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        building = getattr(_BUILDING_WITHOUT_UNIGRAMS, "active", False)
        return not (building and "No known unigrams" in record.getMessage())


def _silence_missing_unigrams_warning(lm_module) -> None:
    logger = logging.getLogger(lm_module.__name__)
    if not any(isinstance(f, _MissingUnigramsFilter) for f in logger.filters):
        logger.addFilter(_MissingUnigramsFilter())


def _new_language_model(kenlm_model: Any, unigrams: Iterable[str] | None):
    """pyctcdecode's ``LanguageModel`` of ``kenlm_model``, its unigram trie a
    :class:`UnigramPrefixes`; built as pyctcdecode builds it if its fields are not the ones this
    was written for (then the trie stays, and decoding is only slower)."""
    from pyctcdecode import language_model as lm_module

    if unigrams is None:
        return lm_module.LanguageModel(kenlm_model, None)
    _silence_missing_unigrams_warning(lm_module)
    _BUILDING_WITHOUT_UNIGRAMS.active = True  # the unigrams are set just below
    try:
        model = lm_module.LanguageModel(kenlm_model, None)
    finally:
        _BUILDING_WITHOUT_UNIGRAMS.active = False
    prepare = getattr(lm_module, "_prepare_unigram_set", None)
    if prepare is None or not {"_unigram_set", "_char_trie"} <= set(vars(model)):
        return lm_module.LanguageModel(kenlm_model, unigrams)
    model._unigram_set = prepare(unigrams, kenlm_model)
    model._char_trie = UnigramPrefixes(model._unigram_set)
    return model


def _language_model(lm_path: Path, unigrams_path: str | None, alpha: float, beta: float):
    """A pyctcdecode ``LanguageModel`` with these weights, sharing the KenLM model and the
    unigram trie (both read-only during search) with any earlier one of the same files."""
    from pyctcdecode.language_model import load_unigram_set_from_arpa

    if unigrams_path and not Path(unigrams_path).is_file():
        load_unigrams(unigrams_path)  # says why it cannot be read
    files = [lm_path] + ([Path(unigrams_path)] if unigrams_path else [])
    key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    with _LANGUAGE_MODELS_LOCK:
        base = _LANGUAGE_MODELS.get(key)
        if base is None:
            import kenlm

            unigrams = load_unigrams(unigrams_path) if unigrams_path else None
            if unigrams is None and lm_path.suffix == ".arpa":  # as build_ctcdecoder does
                unigrams = load_unigram_set_from_arpa(str(lm_path))
            base = _new_language_model(kenlm.Model(str(lm_path)), unigrams)
            _LANGUAGE_MODELS[key] = base
    shared = copy.copy(base)  # the weights are plain attributes; the heavy parts are shared
    shared.alpha, shared.beta = alpha, beta
    shared._stt_base = base  # keeps the cache entry alive while this copy is in use
    return shared


def _build_ctc_decoder(vocab: Vocabulary, config: DecoderConfig):
    """A pyctcdecode ``BeamSearchDecoderCTC``, with the KenLM model loaded if configured."""
    from pyctcdecode.alphabet import Alphabet

    labels = pyctcdecode_labels(vocab)
    if not config.lm:
        return beam_search_class()(Alphabet.build_alphabet(labels))
    lm_path = Path(config.lm)
    require_file(lm_path, "language model", ConfigError, kind="lm.bin")
    check_kenlm_file(lm_path)
    try:
        language_model = _language_model(
            lm_path, config.unigrams, float(config.alpha), float(config.beta)
        )
    except (OSError, RuntimeError, ValueError) as e:
        raise ConfigError(f"{config.lm}: cannot load language model ({e})") from e
    return beam_search_class()(Alphabet.build_alphabet(labels), language_model)


class _Squeeze:
    """Drops the frames that cannot change the beam search, and maps results back.

    On a frame where a single label is a candidate (it is the best and every other label is
    below ``token_min_logp``), pyctcdecode extends every beam with that label. If the previous
    frame had the same single candidate, every beam already ends in it, so the frame only adds
    the same log-probability to every beam (ranking, merging and pruning unchanged) and moves
    the end frame of a word ending in that label. Such frames, the bulk of a trained CTC model's
    blank stretches and held characters, are dropped before the search; their log-probabilities
    are added back to the scores (``offset``) and word ends are moved back to the end of their
    run, so results equal a search over every frame.
    """

    _MARGIN = 1e-3  # stay clear of pyctcdecode's own renormalisation round-off

    def __init__(self, lp: np.ndarray, token_min_logp: float) -> None:
        frames = lp.shape[0]
        best = lp.argmax(axis=1)  # (frames,)
        runner_up = (
            np.partition(lp, -2, axis=1)[:, -2] if lp.shape[1] > 1 else np.full(frames, -np.inf)
        )
        runner_up = np.maximum(runner_up, _PYCTCDECODE_MIN_LOGP)  # pyctcdecode clips there
        single = runner_up < token_min_logp - self._MARGIN
        drop = np.zeros(frames, dtype=bool)
        drop[1:] = single[1:] & single[:-1] & (best[1:] == best[:-1])
        self.kept = np.flatnonzero(~drop)  # (kept,) original frame of each squeezed frame
        self.run_end = np.r_[self.kept[1:], frames]  # (kept,) end of the run it stands for
        self.offset = float(lp[drop, best[drop]].sum(dtype=np.float64))
        self.log_probs = lp[self.kept] if drop.any() else lp

    def unsqueeze_spans(self, spans) -> list[tuple[str, tuple[int, int]]]:
        """``(word, (start, end))`` on squeezed frames -> the same on the original frames."""
        n = len(self.kept)
        out = []
        for word, (start, end) in spans:
            start = int(self.kept[min(max(start, 0), n - 1)])
            end = int(self.run_end[min(max(end, 1), n) - 1])
            out.append((word, (start, max(start, end))))
        return out


class _Resources:
    """What a :class:`BeamSearchDecoder` must give back: its worker pool and its LM (pyctcdecode
    keeps LMs in a class-level registry until ``cleanup()``). Held apart from the decoder so a
    weakref finalizer can release them without keeping the decoder alive."""

    def __init__(self, ctc_decoder) -> None:
        self.ctc_decoder = ctc_decoder
        self.pool: Pool | None = None

    def close_pool(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.terminate()  # no work is ever pending between calls
            pool.join()

    def release(self) -> None:
        self.close_pool()
        if self.ctc_decoder is not None:
            self.ctc_decoder.cleanup()
            self.ctc_decoder = None


class BeamSearchDecoder:
    """CTC prefix beam search (pyctcdecode), with an optional KenLM language model and hotwords.

    The pyctcdecode decoder (and the LM) is built once here. :meth:`decode_batch` spreads batches
    of two or more utterances over one pool of ``workers`` processes (default: one per CPU),
    created with the "fork" start method on first use and kept until :meth:`close`, the end of a
    ``with`` block, or garbage collection. ``workers <= 1`` decodes in this process.

    ``isolate``: every search, even of one utterance, runs in the pool (of ``max(workers, 1)``
    processes, forked here), so this process's other threads keep the interpreter while the
    pure-Python search runs: a server's live streams, whose partials must not wait behind a
    final's beam search. Create it before starting threads (a fork copies only the caller).

    Raises:
        ConfigError: if ``config.lm`` or ``config.unigrams`` is missing or unreadable.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        config: DecoderConfig,
        workers: int | None = None,
        isolate: bool = False,
    ) -> None:
        if config.beam_width < 1:
            raise ConfigError(f"beam_width must be at least 1, got {config.beam_width}")
        if config.n_best < 1:
            raise ConfigError(f"n_best must be at least 1, got {config.n_best}")
        self.vocab = vocab
        self.config = config
        self.workers = (os.cpu_count() or 1) if workers is None else int(workers)
        self._hotwords = [h for h in (normalize_text(w) for w in config.hotwords) if h]
        self._scorer = _WordScorer(vocab)
        self._resources = _Resources(_build_ctc_decoder(vocab, config))
        self._finalizer = weakref.finalize(self, self._resources.release)
        self.isolate = isolate
        if isolate:
            self.workers = max(self.workers, 1)
            self._start_pool()

    def _start_pool(self) -> None:
        if self._resources.pool is None:
            # pyctcdecode finds its LM through a class-level registry, so the workers must be
            # forked (not spawned) after the decoder exists.
            self._resources.pool = multiprocessing.get_context("fork").Pool(self.workers)

    def with_hotwords(self, hotwords: list[str]) -> BeamSearchDecoder:
        """This decoder with other hotwords (a server's per-request ``prompt``), sharing its
        LM and worker pool: nothing is rebuilt. The copy is valid while this one is open."""
        view = copy.copy(self)
        view.config = replace(self.config, hotwords=list(hotwords))
        view._hotwords = [h for h in (normalize_text(w) for w in hotwords) if h]
        return view

    @property
    def pool(self) -> Pool | None:
        """The worker pool, once a batch has needed it; None before that and after close."""
        return self._resources.pool

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _ctc(self):
        if self.closed:
            raise RuntimeError("this BeamSearchDecoder is closed")
        return self._resources.ctc_decoder

    def _search_kwargs(self) -> dict:
        c = self.config
        return {
            "beam_width": max(int(c.beam_width), int(c.n_best)),
            "beam_prune_logp": float(c.beam_prune_logp),
            "token_min_logp": float(c.token_min_logp),
            "hotwords": self._hotwords or None,
            "hotword_weight": float(c.hotword_weight),
        }

    def _result(
        self, lp: np.ndarray, beams: list, squeeze: _Squeeze, frame_seconds: float
    ) -> DecodeResult:
        """``beams``: pyctcdecode's ``(text, word_frames, logit_score, combined_score)``, best
        first, found on ``squeeze.log_probs``; ``lp``: the full matrix."""
        n_best: list[tuple[str, float]] = []
        for text, _, _, score in beams:
            text = " ".join(text.split())
            if text not in (seen for seen, _ in n_best):
                n_best.append((text, float(score) + squeeze.offset))
            if len(n_best) == self.config.n_best:
                break
        if not n_best:
            return DecodeResult("", [], [("", 0.0)])
        spans = squeeze.unsqueeze_spans(beams[0][1])
        return DecodeResult(n_best[0][0], self._scorer.words(lp, spans, frame_seconds), n_best)

    def decode(self, log_probs: np.ndarray, frame_seconds: float) -> DecodeResult:
        _check_frame_seconds(frame_seconds)
        ctc = self._ctc()
        lp = _as_log_probs(log_probs, len(self.vocab))
        if not lp.shape[0]:
            return DecodeResult("", [], [("", 0.0)])
        if self.isolate:
            return self._decode_in_pool([lp], frame_seconds)[0]
        squeeze = _Squeeze(lp, self.config.token_min_logp)
        beams = ctc.decode_beams(squeeze.log_probs, **self._search_kwargs())
        mp_safe = [(text, frames, logit, combined) for text, _, frames, logit, combined in beams]
        return self._result(lp, mp_safe, squeeze, frame_seconds)

    def decode_batch(self, batch: list[np.ndarray], frame_seconds: float) -> list[DecodeResult]:
        _check_frame_seconds(frame_seconds)
        if (len(batch) < 2 or self.workers <= 1) and not self.isolate:
            return [self.decode(lp, frame_seconds) for lp in batch]
        return self._decode_in_pool([_as_log_probs(lp, len(self.vocab)) for lp in batch],
                                    frame_seconds)  # fmt: skip

    def _decode_in_pool(self, lps: list[np.ndarray], frame_seconds: float) -> list[DecodeResult]:
        ctc = self._ctc()
        todo = [i for i, lp in enumerate(lps) if lp.shape[0]]
        squeezes = {i: _Squeeze(lps[i], self.config.token_min_logp) for i in todo}
        results = [DecodeResult("", [], [("", 0.0)]) for _ in lps]
        if not todo:
            return results
        self._start_pool()
        all_beams = ctc.decode_beams_batch(
            self._resources.pool, [squeezes[i].log_probs for i in todo], **self._search_kwargs()
        )
        for i, beams in zip(todo, all_beams, strict=True):
            results[i] = self._result(lps[i], beams, squeezes[i], frame_seconds)
        return results

    def close(self) -> None:
        """Stop the worker pool and free the LM. Idempotent; decoding afterwards is an error."""
        self._finalizer()

    def __enter__(self) -> BeamSearchDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_decoder(
    vocab: Vocabulary, config: DecoderConfig, workers: int | None = None, isolate: bool = False
) -> GreedyDecoder | BeamSearchDecoder:
    """The decoder ``config.kind`` names. ``workers``: processes for beam-search batches;
    ``isolate``: every beam search in them (:class:`BeamSearchDecoder`).

    Raises:
        ConfigError: for an unknown kind, or an LM / unigram file that cannot be loaded.
    """
    if config.kind == "greedy":
        return GreedyDecoder(vocab)
    if config.kind == "beam":
        return BeamSearchDecoder(vocab, config, workers=workers, isolate=isolate)
    raise ConfigError(
        f"decoder kind must be one of {', '.join(DECODER_KINDS)}, not {config.kind!r}"
    )


# ---------------------------------------------------------------------------------------------
# Decoding stitched frames chunk by chunk
# ---------------------------------------------------------------------------------------------


class ChunkDecoder:
    """Decodes a stream of log-prob chunks in pieces cut where no word can straddle the cut.

    Greedy cuts are exact: a cut after frame ``t - 1`` is taken only where the last character
    emitted so far is a space (or none was), so words, their frames and confidences are those
    of decoding all frames at once. Beam search also needs both frames around the cut to be
    "quiet" (blank or space best, every other label below ``token_min_logp``, so every beam only
    adds a blank or space there), or a pause of ``pause_seconds`` of quiet frames; the language
    model restarts after a cut. Without a safe cut for ``max_pending_seconds``, the cut goes
    where the blank is most likely (a very long word run is split rather than memory grown).
    """

    def __init__(
        self,
        decoder,
        vocab: Vocabulary,
        frame_seconds: float,
        beam: bool,
        token_min_logp: float = DecoderConfig.token_min_logp,
        min_pending_seconds: float = 10.0,
        max_pending_seconds: float = 120.0,
        pause_seconds: float = 0.3,
    ) -> None:
        self.decoder = decoder
        self.frame_seconds = frame_seconds
        self.beam = beam
        self.blank = vocab.blank_id
        self.space = vocab.tokens.index(" ") if " " in vocab else -1
        self.token_min_logp = token_min_logp
        self.min_pending = max(1.0, min_pending_seconds / frame_seconds)  # frames (inf: never)
        self.max_pending = max(self.min_pending, max_pending_seconds / frame_seconds)
        self.pause = max(2, int(round(pause_seconds / frame_seconds)))
        self._pending: list[np.ndarray] = []
        self._pending_frames = 0
        self._offset = 0  # global index of the first pending frame
        self.texts: list[str] = []
        self.words: list[Word] = []

    def feed(self, log_probs: np.ndarray, settle: bool = True) -> None:
        """Take the next frames; ``settle``: decode a piece now if one is due (False: leave it
        to :meth:`settle`, e.g. from a thread that may take the time)."""
        self._pending.append(log_probs)
        self._pending_frames += len(log_probs)
        if settle:
            self.settle()

    @property
    def due(self) -> bool:
        """Whether enough frames wait for :meth:`settle` to look for a cut."""
        return self._pending_frames >= self.min_pending

    def settle(self) -> None:
        """Decode the pending frames up to the last safe cut, if enough are pending."""
        if not self.due:
            return
        lp = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        cut = self._safe_cut(lp)
        if cut is None and len(lp) >= self.max_pending:
            cut = self._forced_cut(lp)
        if cut is None:
            self._pending = [lp]
            return
        self._decode(lp[:cut])
        rest = lp[cut:]
        self._pending = [rest] if len(rest) else []
        self._pending_frames = len(rest)

    def finish(self) -> tuple[str, list[Word]]:
        if self._pending:
            self._decode(np.concatenate(self._pending))
            self._pending, self._pending_frames = [], 0
        return " ".join(self.texts), self.words

    def _safe_cut(self, lp: np.ndarray) -> int | None:
        """The largest ``t`` (1..frames) such that cutting before frame ``t`` is safe."""
        n = len(lp)
        best = lp.argmax(axis=1)  # (frames,)
        emitted = np.where(best != self.blank, np.arange(n), -1)
        last = np.maximum.accumulate(emitted)  # last emitting frame at or before each frame
        # between_words[t - 1]: cutting before t leaves no word open.
        between_words = (last < 0) | (best[np.maximum(last, 0)] == self.space)
        if not self.beam:
            ok = np.flatnonzero(between_words) + 1  # cut positions t
            return int(ok[-1]) if len(ok) else None
        quiet_label = (best == self.blank) | (best == self.space)
        runner_up = np.partition(lp, -2, axis=1)[:, -2] if lp.shape[1] > 1 else lp[:, 0] - np.inf
        quiet = quiet_label & (runner_up < self.token_min_logp)
        # Cut before t (1..n-1) with frames t-1 and t quiet ...
        both = quiet[:-1] & quiet[1:]
        candidates = both & between_words[:-1]
        # ... or in the middle of a long quiet run, a pause between words whatever was emitted.
        half = self.pause // 2
        if n > 2 * half:
            runs = np.convolve(quiet.astype(np.int32), np.ones(2 * half, np.int32), "valid")
            pause = np.zeros(n - 1, dtype=bool)  # index t-1
            pause[half - 1 : half - 1 + len(runs)] = runs == 2 * half
            candidates |= pause & both
        ok = np.flatnonzero(candidates) + 1
        return int(ok[-1]) if len(ok) else None

    def _forced_cut(self, lp: np.ndarray) -> int:
        half = len(lp) // 2
        return half + int(lp[half:, self.blank].argmax())

    def _decode(self, lp: np.ndarray) -> None:
        if not len(lp):
            return
        result = self.decoder.decode(lp, self.frame_seconds)
        shift = self._offset * self.frame_seconds
        if result.text:
            self.texts.append(result.text)
        self.words.extend(
            Word(w.word, w.start + shift, w.end + shift, w.confidence) for w in result.words
        )
        self._offset += len(lp)


# ---------------------------------------------------------------------------------------------
# Settings: the tuned decoder.yaml beside a checkpoint, and the one resolution order
# ---------------------------------------------------------------------------------------------


def tuned_decoder_path(checkpoint: str | Path) -> Path:
    """Where tuned decoder settings live: ``decoder.yaml`` beside the checkpoint."""
    return Path(checkpoint).parent / TUNED_DECODER_FILE


def load_tuned_decoder(checkpoint: str | Path) -> dict:
    """The tuned decoder settings saved beside a checkpoint ({} if none). Relative LM paths in
    the file are relative to its folder."""
    path = tuned_decoder_path(checkpoint)
    if not path.is_file():
        return {}
    values = OmegaConf.to_container(OmegaConf.load(path))
    for key in ("lm", "unigrams"):
        if values.get(key) and not Path(values[key]).is_absolute():
            values[key] = str(path.parent / values[key])
    return values


def save_tuned_decoder(checkpoint: str | Path, settings: dict[str, Any]) -> Path:
    """Write ``settings`` to ``decoder.yaml`` beside ``checkpoint``. LM paths inside its folder
    are stored relative to it, so the folder can move; others are stored absolute."""
    path = tuned_decoder_path(checkpoint)
    stored = dict(settings)
    for key in ("lm", "unigrams"):
        if stored.get(key):
            try:
                stored[key] = str(Path(stored[key]).resolve().relative_to(path.parent.resolve()))
            except ValueError:
                stored[key] = str(Path(stored[key]).resolve())
    OmegaConf.save(OmegaConf.create(stored), path)
    return path


def resolve_decoder(
    checkpoint: str | Path, decoder: DecoderConfig | dict[str, Any] | None = None
) -> DecoderConfig:
    """The decoder settings for ``checkpoint``, in the order of this module's docstring: a
    ``DecoderConfig`` as given, or a dict of settings (or None) laid over the tuned
    ``decoder.yaml`` beside ``checkpoint``, itself over the :class:`DecoderConfig` defaults.

    Raises:
        ConfigError: a setting :class:`DecoderConfig` does not have.
    """
    if isinstance(decoder, DecoderConfig):
        return decoder
    return _decoder_config({**load_tuned_decoder(checkpoint), **(decoder or {})})


def _decoder_config(settings: dict[str, Any]) -> DecoderConfig:
    known = {f.name for f in fields(DecoderConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"unknown decoder setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    values = dict(settings)
    if values.get("hotwords") is None:
        values.pop("hotwords", None)
    else:
        values["hotwords"] = [str(h) for h in values["hotwords"]]
    return DecoderConfig(**values)
