"""pyctcdecode's CTC prefix beam search, with its per-frame loop written for speed.

:func:`beam_search_class` is pyctcdecode's ``BeamSearchDecoderCTC`` with two changes, neither of
which changes a beam:

* a search without hotwords does not ask an empty ``pygtrie`` whether each new partial word
  starts a hotword (13% of the search, measured on a 5 s upload): :class:`_NoPrefixes` answers;
* with a language model, character vocabularies (not BPE) and no history pruning (how
  :class:`stt.decoding.BeamSearchDecoder` searches), the per-frame work runs in one function,
  :func:`fast_search`: extending the beams, merging equal prefixes and adding the LM's scores
  happen in one pass, on Python floats, without pyctcdecode's three passes over tuples and their
  ~1.5 M helper calls per minute of audio. It does the same arithmetic in the same order, so
  its beams, scores and word frames are those of pyctcdecode's own loop (tested against it). In
  any other case pyctcdecode's loop runs.

Built on first use (pyctcdecode is imported only for beam search) and found by pickle as
``stt.beam_search._BeamSearch`` (this module's ``__getattr__``), as a pool's workers need.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


class _NoPrefixes:
    """The hotword trie of a search without hotwords: no partial word starts one."""

    def has_node(self, key: str) -> int:
        return 0


@functools.cache
def beam_search_class() -> type:
    """pyctcdecode's ``BeamSearchDecoderCTC`` with the two changes of this module's docstring.
    If pyctcdecode stops calling ``_decode_logits`` this way, the overrides are simply unused."""
    from pyctcdecode.decoder import BeamSearchDecoderCTC

    class _BeamSearch(BeamSearchDecoderCTC):
        def _decode_logits(self, logits, *args: Any, **kwargs: Any):
            scorer = kwargs.get("hotword_scorer")
            trie = getattr(scorer, "_char_trie", None)
            if trie is not None and len(trie) == 0:
                scorer = copy.copy(scorer)  # a copy per search: one decoder serves many threads
                scorer._char_trie = _NoPrefixes()
                kwargs["hotword_scorer"] = scorer
            if not args and _fast_search_applies(self, kwargs):
                return fast_search(self, logits, **kwargs)
            return super()._decode_logits(logits, *args, **kwargs)

    _BeamSearch.__module__, _BeamSearch.__qualname__ = __name__, "_BeamSearch"
    return _BeamSearch


def __getattr__(name: str) -> Any:
    """``stt.beam_search._BeamSearch``, where pickle finds the class (a decoding pool's
    workers unpickle decoders); built on first use, so pyctcdecode loads only for beam search."""
    if name == "_BeamSearch":
        return beam_search_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_SEARCH_KEYWORDS = frozenset(
    ("beam_width", "beam_prune_logp", "token_min_logp", "prune_history", "hotword_scorer",
     "lm_start_state")
)  # fmt: skip


FAST_LOOP = True
"""False inside :func:`pyctcdecode_loop`: every search takes pyctcdecode's own loop."""


@contextmanager
def pyctcdecode_loop() -> Iterator[None]:
    """Searches inside take pyctcdecode's own per-frame loop, so scripts/bench_decode.py
    --reference-loop can time the two side by side; the fast loop is back on afterwards."""
    global FAST_LOOP
    FAST_LOOP = False
    try:
        yield
    finally:
        FAST_LOOP = True


def _fast_search_applies(decoder, kwargs: dict) -> bool:
    return (
        FAST_LOOP
        and decoder._language_model is not None
        and not decoder._is_bpe
        and not kwargs.get("prune_history")
        and {"beam_width", "beam_prune_logp", "token_min_logp", "hotword_scorer"} <= kwargs.keys()
        and kwargs.keys() <= _SEARCH_KEYWORDS
    )


def fast_search(
    decoder,
    logits: np.ndarray,
    beam_width: int,
    beam_prune_logp: float,
    token_min_logp: float,
    hotword_scorer,
    prune_history: bool = False,
    lm_start_state: Any = None,
) -> list:
    """``decoder._decode_logits(logits, ...)`` of pyctcdecode, for a decoder with a language
    model, a character alphabet and ``prune_history=False``: the same output beams.

    A beam here is pyctcdecode's tuple plus, last, the LM score of its text: a beam extended
    by anything but a space keeps its text, so it keeps that score without a cache lookup."""
    language_model = decoder._language_model
    start = language_model.get_start_state() if lm_start_state is None else lm_start_state
    text_scores: dict[str, tuple] = {"": (0.0, 0.0, start)}  # pyctcdecode's (text, False) cache
    # A partial word's score is the LM's alone without hotwords, so it is kept across searches.
    no_hotwords = isinstance(getattr(hotword_scorer, "_char_trie", None), _NoPrefixes)
    partial_scores = _lm_partial_scores(language_model) if no_hotwords else {}
    beams = [("", "", "", None, [], (-1, -1), 0.0, 0.0)]  # pyctcdecode's EMPTY_START_BEAM
    rows = logits.tolist()  # Python floats: the values pyctcdecode's float64 arithmetic sees
    best = logits.argmax(axis=1).tolist()
    candidates = logits >= token_min_logp
    for frame, col in enumerate(rows):
        # pyctcdecode's own set, iterated in its order (the order of merging and of ties)
        labels = set(np.flatnonzero(candidates[frame]).tolist()) | {best[frame]}
        merged = _extend_and_merge(beams, labels, col, frame, decoder._idx2vocab)
        scored, combined = _score(merged, language_model, hotword_scorer, text_scores,
                                  partial_scores)  # fmt: skip
        floor = max(combined) + beam_prune_logp
        kept = [i for i, c in enumerate(combined) if c >= floor]
        # heapq.nlargest's order (stable: ties keep their order), as pyctcdecode trims
        beams = [scored[i] for i in sorted(kept, key=combined.__getitem__, reverse=True)]
        del beams[beam_width:]
    cached_lm_scores = {(text, False): value for text, value in text_scores.items()}
    return _finish(decoder, [b[:-1] for b in beams], beam_width, beam_prune_logp,
                   hotword_scorer, cached_lm_scores, partial_scores)  # fmt: skip


_PARTIAL_SCORES_KEPT = 200_000
"""Partial-word scores an LM keeps across searches; past this many (a long-running server) the
store starts again, so its memory stays bounded (~20 MB)."""


def _lm_partial_scores(language_model) -> dict[str, float]:
    """The LM's own ``score_partial_token`` results, stored on the LM for its later searches."""
    store = getattr(language_model, "_stt_partial_scores", None)
    if store is None or len(store) > _PARTIAL_SCORES_KEPT:
        store = language_model._stt_partial_scores = {}
    return store


def _extend_and_merge(beams: list, labels: set, col: list, frame: int, idx2vocab: dict) -> dict:
    """Every beam extended by every candidate label, beams of equal (text, partial word, last
    label) merged: pyctcdecode's extension loop and ``_merge_beams`` in one pass. A beam's
    ``next_word`` is always empty here (the LM scoring of the previous frame moved it into its
    text), so only a space makes a beam whose full text differs from its ``text``; its LM score
    (last) is then unknown (None) until :func:`_score`."""
    log, exp = math.log, math.exp
    end = frame + 1
    merged: dict = {}
    for label in labels:
        p = col[label]
        char = idx2vocab[label]
        for text, next_word, word_part, last_char, text_frames, part_frames, score, lm in beams:
            if char == "" or last_char == char:  # blank, or the same label again
                frames = part_frames if char == "" else (part_frames[0], end)
                beam = (text, next_word, word_part, char, text_frames, frames, score + p, lm)
                key = (text, word_part, char)
            elif char == " ":
                words = text_frames if word_part == "" else text_frames + [part_frames]
                full = text + " " + word_part if text and word_part else text or word_part
                beam = (text, word_part, "", char, words, (-1, -1), score + p, None)
                key = (full, "", char)
            else:
                frames = (frame, end) if part_frames[0] < 0 else (part_frames[0], end)
                part = word_part + char
                beam = (text, next_word, part, char, text_frames, frames, score + p, lm)
                key = (text, part, char)
            old = merged.get(key)
            if old is not None:  # pyctcdecode keeps the later beam's fields, sums the scores
                s1, s2 = old[6], beam[6]
                total = s1 + log(1 + exp(s2 - s1)) if s1 >= s2 else s2 + log(1 + exp(s1 - s2))
                beam = beam[:6] + (total, beam[7])
            merged[key] = beam
    return merged


def _score(merged: dict, language_model, hotword_scorer, text_scores: dict,
           partial_scores: dict) -> tuple[list, list]:  # fmt: skip
    """pyctcdecode's ``_get_lm_beams`` on the merged beams: the LM (and hotword) score of each
    full text and partial word, cached per search, added to the acoustic score. Returns the
    beams for the next frame and, in a list beside them, their combined scores."""
    scored, combined = [], []
    for (full, _, _), beam in merged.items():
        text, next_word, word_part, last_char, text_frames, part_frames, score, lm_score = beam
        if lm_score is None:  # a new word ended: its text's score, from the cache or the LM
            cached = text_scores.get(full)
            if cached is None:
                _, previous, state = text_scores[text]
                word_score, end_state = language_model.score(state, next_word, is_last_word=False)
                raw = previous + word_score
                cached = text_scores[full] = (raw + hotword_scorer.score(full), raw, end_state)
            lm_score = cached[0]
        total = lm_score
        if word_part:
            partial = partial_scores.get(word_part)
            if partial is None:
                if word_part in hotword_scorer:
                    partial = hotword_scorer.score_partial_token(word_part)
                else:
                    partial = language_model.score_partial_token(word_part)
                partial_scores[word_part] = partial
            total += partial
        scored.append((full, "", word_part, last_char, text_frames, part_frames, score, lm_score))
        combined.append(score + total)
    return scored, combined


def _finish(decoder, beams: list, beam_width: int, beam_prune_logp: float, hotword_scorer,
            cached_lm_scores: dict, cached_partial_scores: dict) -> list:  # fmt: skip
    """pyctcdecode's end of search, with its own helpers: the last partial words become words,
    the end-of-sentence LM score is added, the best ``beam_width`` beams are returned."""
    from pyctcdecode.decoder import _merge_beams, _normalize_whitespace, _sort_and_trim_beams

    ended = []
    for text, _, word_part, _, frame_list, frames, logit_score in beams:
        token_times = frame_list if word_part == "" else frame_list + [frames]
        ended.append((text, word_part, "", None, token_times, (-1, -1), logit_score))
    scored = decoder._get_lm_beams(_merge_beams(ended), hotword_scorer, cached_lm_scores,
                                   cached_partial_scores, is_eos=True)  # fmt: skip
    floor = max(b[-1] for b in scored) + beam_prune_logp
    trimmed = _sort_and_trim_beams([b for b in scored if b[-1] >= floor], beam_width)
    return [
        (
            _normalize_whitespace(text),
            cached_lm_scores[(text, True)][-1] if (text, True) in cached_lm_scores else None,
            list(zip(text.split(), text_frames, strict=False)),  # as pyctcdecode zips
            logit_score,
            combined_score,
        )
        for text, _, _, _, text_frames, _, logit_score, combined_score in trimmed
    ]
