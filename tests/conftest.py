"""Shared fixtures: small audio made by the tests themselves."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stt.audio import SAMPLE_RATE


def tone(seconds: float = 0.5, rate: int = SAMPLE_RATE, freq: float = 440.0) -> np.ndarray:
    """A float32 sine wave at half amplitude."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def write_tone(tmp_path: Path):
    """Write a tone to ``tmp_path/name`` in any soundfile format; returns the path."""

    def _write(name: str, seconds: float = 0.5, rate: int = SAMPLE_RATE, **kwargs) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), tone(seconds, rate), rate, **kwargs)
        return path

    return _write


requires_synth_tools = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="espeak-ng/flite missing: run scripts/setup.sh",
)


@pytest.fixture
def one_thread():
    """Tiny models: with several threads the synchronisation costs more than the work. Use as
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A model small enough to train for a few steps in seconds: Hydra overrides of `stt train`.
TINY_MODEL = [
    "model.channels=16",
    "model.kernel_size=3",
    "model.dilations=[1,2,4]",
    "model.stacks=1",
    "model.head_channels=16",
    "model.dropout=0.1",
]


def tiny_corpus(out: Path, sentence: str, seed: int) -> Path:
    """About 40 s of synthetic speech (train/dev/test) in ``out``: ``sentence`` is a template
    with ``{a}`` and ``{b}`` filled from four adjectives x five animals."""
    from stt.data.synth import SynthConfig, synthesize_corpus

    text = out / "sentences.txt"
    lines = [
        sentence.format(a=a, b=b)
        for a in ("small", "big", "old", "young")
        for b in ("dog", "cat", "bird", "horse", "cow")
    ]
    text.write_text("\n".join(lines) + "\n")
    synthesize_corpus(
        SynthConfig(
            out_dir=str(out),
            hours=0.012,
            seed=seed,
            text_files=[str(text)],
            use_debian_text=False,
            sentence_fractions={"dev": 0.2, "test": 0.2},
            progress=False,
        )
    )
    return out


@pytest.fixture
def python_sigint():
    """Ctrl-C as an interactive Python sees it (KeyboardInterrupt), for the tests that send it:
    a shell starts background jobs with SIGINT ignored, and Python then installs no handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
