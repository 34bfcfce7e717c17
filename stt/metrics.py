"""Word and character error rates, word alignments and confusions, always through jiwer (the
field's reference implementation)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import jiwer
import numpy as np


@dataclass
class ErrorCounts:
    """Edit-distance counts over a set of utterances; rates are derived, so sets can be summed."""

    words: int = 0
    word_errors: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    chars: int = 0
    char_errors: int = 0
    sentences: int = 0
    sentence_errors: int = 0

    @property
    def wer(self) -> float:
        return self.word_errors / max(self.words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.chars, 1)

    @property
    def ser(self) -> float:
        return self.sentence_errors / max(self.sentences, 1)

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            *(a + b for a, b in zip(vars(self).values(), vars(other).values(), strict=True))
        )


def error_counts(references: list[str], hypotheses: list[str]) -> ErrorCounts:
    """Count word and character edits of ``hypotheses`` against ``references`` with jiwer.

    jiwer rejects empty references; an empty reference counts every hypothesis word (and
    character) as an insertion, which is what the edit distance says.
    """
    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in length")
    counts = ErrorCounts(sentences=len(references))
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    for ref, hyp in zip(references, hypotheses, strict=True):
        counts.sentence_errors += ref.split() != hyp.split()
        if not ref.strip():
            counts.insertions += len(hyp.split())
            counts.word_errors += len(hyp.split())
            counts.char_errors += len(hyp)
    if pairs:
        refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
        words = jiwer.process_words(refs, hyps)
        chars = jiwer.process_characters(refs, hyps)
        counts.substitutions += words.substitutions
        counts.deletions += words.deletions
        counts.insertions += words.insertions
        counts.word_errors += words.substitutions + words.deletions + words.insertions
        counts.words += words.substitutions + words.deletions + words.hits
        counts.char_errors += chars.substitutions + chars.deletions + chars.insertions
        counts.chars += chars.substitutions + chars.deletions + chars.hits
    return counts


def bootstrap_interval(
    references: list[str],
    hypotheses: list[str],
    rate: str = "wer",
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile bootstrap interval of the set's WER (or CER) over utterances.

    Utterances are drawn with replacement and the rate recomputed as total errors over total
    words of the draw, as the point figure is: a few hundred utterances of one corpus give an
    interval several points wide, which is what two models' WERs must be compared against.
    Seeded, so a report is reproducible."""
    if rate not in ("wer", "cer"):
        raise ValueError(f"rate must be 'wer' or 'cer', not {rate!r}")
    per = [error_counts([r], [h]) for r, h in zip(references, hypotheses, strict=True)]
    errors = [c.word_errors if rate == "wer" else c.char_errors for c in per]
    sizes = [c.words if rate == "wer" else c.chars for c in per]
    return bootstrap_rate_interval(errors, sizes, confidence, resamples, seed)


def bootstrap_rate_interval(
    errors: list[int],
    sizes: list[int],
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """:func:`bootstrap_interval` from per-utterance error and reference-length counts."""
    if not errors:
        return (0.0, 0.0)
    e, n = np.asarray(errors, float), np.asarray(sizes, float)
    draws = np.random.default_rng(seed).integers(0, len(e), size=(resamples, len(e)))
    rates = e[draws].sum(axis=1) / np.maximum(n[draws].sum(axis=1), 1.0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(rates, [tail, 100 - tail])
    return float(low), float(high)


def alignment(reference: str, hypothesis: str) -> list[tuple[str, list[str], list[str]]]:
    """jiwer's word alignment as ``(kind, reference words, hypothesis words)`` chunks, kind one
    of equal, substitute, delete, insert. An empty reference is all insertion."""
    if not reference.strip():
        return [("insert", [], hypothesis.split())] if hypothesis.split() else []
    out = jiwer.process_words(reference, hypothesis)
    ref, hyp = out.references[0], out.hypotheses[0]
    return [
        (
            chunk.type,
            ref[chunk.ref_start_idx : chunk.ref_end_idx],
            hyp[chunk.hyp_start_idx : chunk.hyp_end_idx],
        )
        for chunk in out.alignments[0]
    ]


def aligned_diff(reference: str, hypothesis: str) -> str:
    """Reference and hypothesis interleaved: ``the [cat->cap] sat [-on] the mat [+now]``."""
    parts: list[str] = []
    for kind, r, h in alignment(reference, hypothesis):
        if kind == "equal":
            parts += r
        elif kind == "substitute":
            parts += [f"[{a}->{b}]" for a, b in zip(r, h, strict=True)]
        elif kind == "delete":
            parts += [f"[-{a}]" for a in r]
        else:
            parts += [f"[+{b}]" for b in h]
    return " ".join(parts)


def word_confusions(pairs: list[tuple[str, str]], top: int = 20) -> list[dict]:
    """The most frequent word errors: substitutions ``a->b``, deletions ``a->`` and insertions."""
    counter: Counter = Counter()
    for ref, hyp in pairs:
        for kind, r, h in alignment(ref, hyp):
            if kind == "substitute":
                counter.update(zip(r, h, strict=True))
            elif kind == "delete":
                counter.update((w, None) for w in r)
            elif kind == "insert":
                counter.update((None, w) for w in h)
    return [
        {"reference": ref, "hypothesis": hyp, "count": n}
        for (ref, hyp), n in counter.most_common(top)
    ]


def paired_bootstrap_change(
    errors_before: list[int],
    errors_after: list[int],
    words: list[int],
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile bootstrap interval of (WER after - WER before) over the same utterances.

    Each draw resamples utterance indices with replacement and takes the same indices for
    both models, then the difference of corpus-level WERs (sum of errors / sum of reference
    words of the draw). Pairing removes the spread that comes from which utterances are hard,
    which both models share: two unpaired intervals may overlap while the change is clear.
    Seeded, so a report is reproducible. Identical before and after give exactly (0, 0)."""
    if not len(errors_before) == len(errors_after) == len(words):
        raise ValueError("errors_before, errors_after and words differ in length")
    if not words:
        return (0.0, 0.0)
    before, after = np.asarray(errors_before, float), np.asarray(errors_after, float)
    n = np.asarray(words, float)
    draws = np.random.default_rng(seed).integers(0, len(n), size=(resamples, len(n)))
    change = (after[draws].sum(axis=1) - before[draws].sum(axis=1)) / np.maximum(
        n[draws].sum(axis=1), 1.0
    )
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(change, [tail, 100 - tail])
    return float(low), float(high)
