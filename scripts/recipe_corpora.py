"""The corpora of scripts/train_default_model.sh and where its train stage reads each one.

One definition for the Python scripts that lay out or read the recipe's WORK folder
(scripts/gpu/pack_data.py, scripts/bench_accent.py); the recipe itself spells the same list in
bash (its CORPORA array, in TRAIN_WEIGHTS' order).
"""

from __future__ import annotations

from pathlib import Path

CORPORA = ("librispeech", "speechocean", "ljspeech", "an4", "fsdd", "synth")
"""In the order of the recipe's TRAIN_WEIGHTS."""

DECODED = ("librispeech", "speechocean", "ljspeech")
"""The Opus corpora: the train stage reads their FLAC copies under ``WORK/decoded/``."""


def train_manifest(root: Path, corpus: str) -> Path:
    """Where the recipe's train stage reads ``corpus``'s train split under the WORK ``root``."""
    if corpus in DECODED:
        return root / "decoded" / corpus / "train.jsonl"
    return root / corpus / "train.jsonl"
