"""Checkpoints: everything needed to resume training exactly, or to transcribe on its own.

A checkpoint is a dict saved with ``torch.save``: the model's weights and config (feature
settings included), the vocabulary, and, for training checkpoints, optimizer, scheduler, scaler,
RNG states, epoch/step, sampler position and the full training config. Writes are atomic (temp
file, fsync, rename) so a machine dying mid-write leaves the previous checkpoint intact; a write
that fails (a full disk, a read-only folder) is a one-line :class:`CheckpointError` with the
previous checkpoint untouched, and Ctrl-C during a write takes effect once the write is complete.

Checkpoints are exchanged between users (a fine-tuned accent, a shared model), and a pickle can
run any code it names, so they are read with ``torch.load(weights_only=True)``: tensors, plain
containers and numbers, plus the numpy arrays of the saved RNG state (:data:`SAFE_GLOBALS`), and
nothing else. A file that names anything more is refused before any of it runs.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stt.atomic import atomic_path
from stt.errors import CheckpointError, STTError, require_file
from stt.model import ModelConfig, WaveNetCTC, model_config_from_dict
from stt.text import Vocabulary

FORMAT = "stt-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "model", "model_config", "vocab")

SAFE_GLOBALS = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
"""What a checkpoint may name beyond torch's weights-only defaults: numpy's array rebuilding
(``np.random.get_state()`` in the RNG state), which creates arrays and calls nothing else."""

_UNSAFE_RE = re.compile(r"Unsupported global: GLOBAL (\S+)")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format tags) to ``path`` atomically.

    If the write fails (a full disk, a read-only folder) the file at ``path`` is left as it was,
    no temporary file remains, and the failure is one :class:`CheckpointError` line. Ctrl-C
    during the write is held back until the new checkpoint is in place, then raised."""
    path = Path(path)
    try:
        with deferred_sigint():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, tmp.open("wb") as handle:
                torch.save({"format": FORMAT, "version": VERSION, **state}, handle)
                handle.flush()
                os.fsync(handle.fileno())
    except (OSError, RuntimeError) as exc:
        # torch.save's C++ writer reports a failed write to the file as a RuntimeError whose
        # context is the OSError; anything else is not a write failure and keeps its traceback.
        cause = _os_error_in(exc)
        if cause is None:
            raise
        reason = cause.strerror or str(cause) or type(cause).__name__
        raise CheckpointError(f"{path}: cannot write checkpoint ({reason})") from None
    return path


def _os_error_in(exc: BaseException | None) -> OSError | None:
    """The OSError that ``exc`` is, or that it was raised while handling (its context chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def deferred_sigint() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back until the block is done, then deliver it to the usual handler.

    torch.save writes through C++, which turns a KeyboardInterrupt raised inside it into a
    RuntimeError and leaves the checkpoint half-written: Ctrl-C at that moment printed a
    traceback instead of ``stt: interrupted``. Deferred, the checkpoint is completed first and
    the interrupt then surfaces as the ordinary KeyboardInterrupt. If the block fails, its own
    error is what propagates (the interrupt is dropped: the program is stopping either way).
    Handlers can only be set from the main thread; elsewhere, or when the current handler was not
    set from Python, the block runs unprotected."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)  # the restored handler: KeyboardInterrupt by default


MAX_CHECKPOINT_BYTES = 8 << 30  # far above any stt model; a bigger archive is refused unread


def check_archive(path: Path) -> None:
    """A checkpoint is a zip archive as ``torch.save`` writes it: stored entries, of a sane total
    size. Anything else is refused before torch reads it, so a file a user was sent cannot
    exhaust memory (a zip bomb) or be misreported (random bytes are "not a checkpoint", not
    torch's advice about ``weights_only``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch zip archive)") from None
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries):
        raise CheckpointError(f"{path}: refused: compressed entries (torch.save never writes any)")
    if sum(e.file_size for e in entries) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path}: refused: over {MAX_CHECKPOINT_BYTES >> 30} GiB of data")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint; any problem is a one-line :class:`CheckpointError`."""
    path = Path(path)
    require_file(path, "checkpoint", CheckpointError)
    check_archive(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = _UNSAFE_RE.search(str(exc))
        if unsafe:
            raise CheckpointError(
                f"{path}: refused: the checkpoint names {unsafe.group(1)}, and stt loads only "
                "weights and plain settings (a pickle can run code; nothing of it was run)"
            ) from None
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
    except Exception as exc:  # torch raises many types for a damaged file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an stt checkpoint")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state['version']} is newer than this stt "
            f"understands ({VERSION}); upgrade stt"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def model_state(model: WaveNetCTC, vocab: Vocabulary) -> dict[str, Any]:
    """The part of a checkpoint that transcription needs."""
    return {
        "model": model.state_dict(),
        "model_config": asdict(model.config),
        "vocab": vocab.to_dict(),
    }


def shippable_state(state: dict[str, Any], path: str | Path = "checkpoint") -> dict[str, Any]:
    """A checkpoint's :func:`model_state` plus ``trained`` (epoch, step, dev results; kept when
    ``state`` already carries it), without optimiser or sampler state: what a shipped model,
    or one sent back from a training machine, needs."""
    model, vocab = model_from_checkpoint(state, path)
    small = model_state(model, vocab)
    small["trained"] = state.get("trained") or {
        "epoch": state["epoch"],
        "step": state["step"],
        "dev": state.get("dev_results"),
    }
    return small


def model_from_checkpoint(
    state: dict[str, Any], path: str | Path = "checkpoint"
) -> tuple[WaveNetCTC, Vocabulary]:
    """Rebuild the model (in eval mode) and vocabulary a checkpoint describes."""
    try:
        config: ModelConfig = model_config_from_dict(state["model_config"])
        vocab = Vocabulary.from_dict(state["vocab"])
        model = WaveNetCTC(config, len(vocab))
        model.load_state_dict(state["model"])
    except (TypeError, KeyError, RuntimeError, ValueError, STTError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{path}: checkpoint does not match its model ({reason})") from None
    return model.eval(), vocab


def read_model(path: str | Path, map_location: str = "cpu") -> tuple[WaveNetCTC, Vocabulary]:
    """A model (in eval mode) and vocabulary from a checkpoint file: the bare network, where
    :func:`stt.transcribe.load_model` gives a ready :class:`~stt.transcribe.Transcriber`."""
    return model_from_checkpoint(load_checkpoint(path, map_location), path)
