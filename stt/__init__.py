"""stt: a WaveNet speech-to-text engine (MFCC features -> dilated-conv encoder -> CTC)."""

from stt.errors import AudioError, ConfigError, ManifestError, STTError

__version__ = "0.1.0"

__all__ = ["AudioError", "ConfigError", "ManifestError", "STTError", "__version__"]
