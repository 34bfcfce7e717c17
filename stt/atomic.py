"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Every writer of the project (transcripts, manifests, audio, checkpoints) goes through
:func:`atomic_path`: the content is written under a temporary name that is unique per call (two
processes writing one output folder must not share it), then renamed over the target; on any
failure (a full disk, Ctrl-C) the temporary file is removed and the old target is untouched.
"""

from __future__ import annotations

import contextlib
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
