"""stt: a WaveNet speech-to-text engine (MFCC features -> dilated-conv encoder -> CTC)."""

from stt.errors import AudioError, ConfigError, ManifestError, STTError
from stt.version import __version__

__all__ = [
    "AudioError",
    "ConfigError",
    "ManifestError",
    "STTError",
    "Transcriber",
    "Transcript",
    "__version__",
    "load_model",
]

# Imported on first use: stt.transcribe and stt.transcript import torch.
_LAZY = {
    "load_model": "stt.transcribe",
    "Transcriber": "stt.transcribe",
    "Transcript": "stt.transcript",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stt' has no attribute {name!r}")
