"""Project exceptions, and the one check every loader makes of the file it is given.

Every error a user can cause (a bad file, a bad manifest line, a bad option) is raised as an
:class:`STTError` whose message is one line that names the thing and the problem. The CLI prints
that line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


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


def require_file(
    path, what: str, error: type[STTError] = STTError, kind: str = "", missing: str = ""
) -> None:
    """Raise ``error`` in the project's words unless ``path`` is a file: ``PATH: is a folder,
    not a WHAT file (KIND)`` or ``PATH: MISSING not found`` (``missing`` defaults to ``what``).
    Shared by the loaders of checkpoints, exports, manifests, language models and text files,
    so each says it the same way."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        suffix = f" ({kind})" if kind else ""
        raise error(f"{path}: is a folder, not a {what} file{suffix}")
    if not path.is_file():
        raise error(f"{path}: {missing or what} not found")


def exit_status(work: Callable[[], object]) -> int:
    """Run ``work`` for a script's ``main``: 0, or 1 after printing an :class:`STTError` as the
    CLI does (one ``stt: error:`` line on stderr, no traceback)."""
    try:
        work()
    except STTError as e:
        print(f"stt: error: {e}", file=sys.stderr)
        return 1
    return 0
