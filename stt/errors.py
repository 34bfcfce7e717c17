"""Project exceptions.

Every error a user can cause (a bad file, a bad manifest line, a bad option) is raised as an
:class:`STTError` whose message is one line that names the thing and the problem. The CLI prints
that line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class STTError(Exception):
    """Base class for errors a user can act on."""


class AudioError(STTError):
    """An audio file is missing, empty, unreadable or holds unusable samples."""


class ManifestError(STTError):
    """A manifest file or one of its lines is malformed."""


class CheckpointError(STTError):
    """A checkpoint is missing, corrupt, or does not fit what it is loaded into."""


class ConfigError(STTError):
    """A configuration value or command-line override is invalid."""


class ToolMissingError(STTError):
    """An external program the job needs (espeak-ng, flite, lmplz...) is not installed."""


class CorpusError(STTError):
    """A corpus folder is missing, not in the expected layout, or holds a malformed line."""
