"""Shared fixtures: small audio made by the tests themselves."""

from __future__ import annotations

import shutil
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
