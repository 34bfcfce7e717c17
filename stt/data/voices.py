"""The synthetic corpus's voices: espeak-ng accents x voice variants, plus flite's voices.

A voice renders text to a waveform. Each has a stable ``speaker`` id and an ``accent`` label, so
manifests can hold out speakers (unseen-voice test split) or whole accents (fine-tuning recipes).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from stt.errors import ToolMissingError

# espeak-ng English voices and the accent label each one stands for.
ESPEAK_ACCENTS: dict[str, str] = {
    "en-us": "us",
    "en-gb": "gb",
    "en-gb-scotland": "scottish",
    "en-gb-x-rp": "rp",
    "en-gb-x-gbclan": "lancashire",
    "en-gb-x-gbcwmd": "west-midlands",
    "en-029": "caribbean",
    "en-us-nyc": "nyc",
}

# espeak-ng voice variants that sound human (the robotic, whispering and croaking ones are left
# out: no user will speak like them).
ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7",
    "f1", "f2", "f3", "f4", "f5",
    "adam", "Andy", "Annie", "caleb", "david", "ed", "john", "linda", "max", "paul", "rob",
    "steph", "travis", "victor",
)  # fmt: skip

# flite's built-in voices and their accents (awb is a Scottish English speaker).
FLITE_ACCENTS: dict[str, str] = {"kal16": "us", "awb": "scottish", "rms": "us", "slt": "us"}
# Their natural mean F0 in Hz, so a pitch change is relative to each voice (slt is female).
FLITE_BASE_F0: dict[str, float] = {"kal16": 105.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}

ENGINE_BINARIES = {"espeak": "espeak-ng", "flite": "flite"}


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: ``engine`` is "espeak" or "flite"; ``name`` is what it is given."""

    engine: str
    name: str
    accent: str
    variant: str

    @property
    def speaker(self) -> str:
        return f"{self.engine}:{self.name}"


def all_voices(engines: tuple[str, ...] | list[str] = ("espeak", "flite")) -> list[Voice]:
    """Every voice of the given engines, in a fixed order."""
    voices: list[Voice] = []
    if "espeak" in engines:
        for lang, accent in ESPEAK_ACCENTS.items():
            for variant in ESPEAK_VARIANTS:
                voices.append(Voice("espeak", f"{lang}+{variant}", accent, variant))
    if "flite" in engines:
        for name, accent in FLITE_ACCENTS.items():
            voices.append(Voice("flite", name, accent, name))
    return voices


def require_engines(engines: list[str] | tuple[str, ...]) -> None:
    """Fail early, in one line, when a synthesis program is not installed."""
    missing = [ENGINE_BINARIES[e] for e in engines if shutil.which(ENGINE_BINARIES[e]) is None]
    if missing:
        raise ToolMissingError(
            f"{', '.join(missing)} not found on PATH: install the Debian package(s) "
            f"{' '.join(missing)} (scripts/setup.sh does it when run as root)"
        )


def render(voice: Voice, text: str, rate: float, pitch: float) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``voice``; returns (float32 mono waveform, sample rate).

    ``rate`` is a speed factor (1.0 = the voice's normal speed, 175 words/min for espeak-ng);
    ``pitch`` is in [0, 1] (0.5 = the voice's normal pitch).
    """
    with tempfile.TemporaryDirectory(prefix="stt-synth-") as tmp:
        wav = Path(tmp) / "out.wav"
        if voice.engine == "espeak":
            cmd = [
                "espeak-ng", "-v", voice.name, "-s", str(int(round(175 * rate))),
                "-p", str(int(round(99 * pitch))), "-w", str(wav), "--", text,
            ]  # fmt: skip
        elif voice.engine == "flite":
            # flite has no rate flag: stretch durations instead; shift the mean F0 for pitch.
            f0 = FLITE_BASE_F0[voice.name] * (0.75 + 0.5 * pitch)
            cmd = [
                "flite", "-voice", voice.name,
                "--setf", f"duration_stretch={1.0 / rate:.3f}",
                "--setf", f"int_f0_target_mean={f0:.1f}",
                "-t", text, "-o", str(wav),
            ]  # fmt: skip
        else:
            raise ValueError(f"unknown engine {voice.engine!r}")
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not wav.exists():
            detail = (result.stderr or "no output").strip().splitlines()
            raise RuntimeError(f"{cmd[0]} failed for voice {voice.name}: {detail[:1]}")
        data, rate_hz = sf.read(str(wav), dtype="float32", always_2d=True)
    return data.mean(axis=1, dtype=np.float32), int(rate_hz)
