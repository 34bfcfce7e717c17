"""Turning CTC log-probabilities into text.

Greedy decoding takes the best label per frame, merges repeats and drops blanks. (Beam search
with a language model comes with pyctcdecode; see the decoding issue.)
"""

from __future__ import annotations

import torch

from stt.text import Vocabulary


def ctc_collapse(ids: list[int], blank_id: int = 0) -> list[int]:
    """Merge repeated labels, then remove blanks: ``[a a _ a b b] -> [a a b]``."""
    out: list[int] = []
    previous = None
    for i in ids:
        if i != previous and i != blank_id:
            out.append(i)
        previous = i
    return out


def greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor | None, vocab: Vocabulary
) -> list[str]:
    """Best path per utterance.

    ``log_probs``: ``(batch, frames, vocab)``; ``lengths``: ``(batch,)`` valid frames or None.
    Returns one string per utterance, with runs of spaces collapsed and trimmed.
    """
    best = log_probs.argmax(dim=-1).cpu()
    if lengths is None:
        lengths = torch.full((best.shape[0],), best.shape[1])
    texts = []
    for row, n in zip(best.tolist(), lengths.tolist(), strict=True):
        text = vocab.decode(ctc_collapse(row[:n], vocab.blank_id))
        texts.append(" ".join(text.split()))
    return texts
