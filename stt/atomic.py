"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Every writer of the project (transcripts, manifests, audio, checkpoints) goes through
:func:`atomic_path`: the content is written under a temporary name that is unique per call (two
processes writing one output folder must not share it), then renamed over the target; on any
failure (a full disk, Ctrl-C) the temporary file is removed and the old target is untouched.
Only a process killed outright (``kill -9``, power loss) can leave one behind:
:func:`leftover_temporaries` finds those, for a later run to remove.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; renamed onto ``path`` if the block succeeds.

    The temporary file exists (empty) when yielded and gets ordinary permissions (``0666``
    minus the umask, as ``open`` would give), not ``mkstemp``'s private ``0600``."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def leftover_temporaries(path: str | Path) -> list[Path]:
    """Temporary files of :func:`atomic_path` writes of ``path`` that never finished.

    Only a killed writer leaves them; remove them only when no other process may be writing
    ``path`` at the same time."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.partial"))
