"""stt: a WaveNet speech-to-text engine (MFCC features -> dilated-conv encoder -> CTC)."""

from stt.errors import AudioError, ConfigError, ManifestError, STTError

__version__ = "0.1.0"

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

_LAZY = {"load_model", "Transcriber", "Transcript"}  # from stt.transcribe, which imports torch


def __getattr__(name: str):
    if name in _LAZY:
        import stt.transcribe

        return getattr(stt.transcribe, name)
    raise AttributeError(f"module 'stt' has no attribute {name!r}")
