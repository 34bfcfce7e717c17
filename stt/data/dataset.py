"""Training data: manifests -> (augmented) waveforms and character targets -> padded batches.

:class:`SpeechDataset` loads one utterance (``stt.audio.load_audio``), augments it with a random
generator seeded by ``(seed, epoch, index)`` -- so a sample never depends on DataLoader workers or
order -- and encodes its transcript; :func:`collate` pads a list of them into a :class:`Batch`.
:func:`filter_feasible` drops what CTC cannot learn from and :func:`mix_manifests` weights several
corpora into one list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stt.audio import SAMPLE_RATE, load_audio
from stt.data.augment import WaveformAugment
from stt.data.manifest import Utterance, read_manifest
from stt.errors import AudioError, ConfigError
from stt.text import Vocabulary

log = logging.getLogger(__name__)

# Last element of mix_manifests' seed: numpy's SeedSequence ignores trailing zeros, so this keeps
# (seed, manifest 0) apart from plain `seed` and from the dataset's (seed, epoch, index) streams.
_MIX_RNG_TAG = 0x313A7


@dataclass
class Batch:
    """A padded batch. Shapes: ``waveforms (batch, samples)`` float32 zero-padded, ``lengths
    (batch,)`` valid samples, ``targets (batch, max_target_len)`` int64 padded with 0 (the
    blank), ``target_lengths (batch,)`` int64."""

    waveforms: Tensor
    lengths: Tensor
    targets: Tensor
    target_lengths: Tensor
    indices: list[int]
    texts: list[str]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=non_blocking)

        return Batch(
            move(self.waveforms),
            move(self.lengths),
            move(self.targets),
            move(self.target_lengths),
            self.indices,
            self.texts,
        )

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)``; then ``to(device, non_blocking=True)``."""
        return Batch(
            self.waveforms.pin_memory(),
            self.lengths.pin_memory(),
            self.targets.pin_memory(),
            self.target_lengths.pin_memory(),
            self.indices,
            self.texts,
        )

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def seconds(self) -> float:
        """Total valid audio in the batch, in seconds (padding excluded)."""
        return float(self.lengths.sum()) / SAMPLE_RATE


class SpeechDataset(torch.utils.data.Dataset):
    """Utterances as ``{"waveform", "targets", "index", "text"}`` dicts.

    ``waveform``: float32 ``(samples,)`` at 16 kHz, augmented when ``augment`` is given, with
    ``np.random.default_rng([seed, epoch, index])``. ``targets``: int64 ``(len(text),)``.
    :attr:`durations` are the manifest durations (before speed perturbation), for the sampler.

    The epoch lives in shared memory, so :meth:`set_epoch` reaches DataLoader workers that
    already exist (``persistent_workers=True``) as long as it is called before ``iter(loader)``.

    Raises:
        ConfigError: at construction, naming the first utterance whose text has characters
            outside ``vocab`` (run :func:`filter_feasible` first).
    """

    def __init__(
        self,
        utterances: list[Utterance],
        vocab: Vocabulary,
        augment: WaveformAugment | None = None,
        seed: int = 0,
    ):
        self.utterances = list(utterances)
        self.vocab = vocab
        self.augment = augment
        self.seed = int(seed)
        self.durations: list[float] = [float(u.duration) for u in self.utterances]
        # Each text's label ids, encoded once (stt.data.on_device reuses them).
        self.label_ids: list[list[int]] = []
        for u in self.utterances:
            try:
                self.label_ids.append(vocab.encode(u.text))
            except ConfigError as exc:
                raise ConfigError(f"{u.audio_filepath}: {exc}") from None
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        utt = self.utterances[i]
        try:
            waveform = load_audio(utt.audio_filepath)
        except AudioError as exc:
            # A file that went bad after start-up must not kill hours of training: the batch
            # goes on without it (collate drops it and says so).
            return {"error": str(exc), "index": i}
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            waveform = self.augment(waveform, rng)
        return {
            "waveform": torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)),
            "targets": torch.tensor(self.label_ids[i], dtype=torch.int64),
            "index": i,
            "text": utt.text,
        }


def collate(items: list[dict[str, Any]]) -> Batch:
    """Pad :class:`SpeechDataset` items into a :class:`Batch` (zeros after each row's end).

    Items whose audio could not be read are left out with a warning; the batch may be empty.
    """
    for bad in (it for it in items if "error" in it):
        log.warning("skipping unreadable audio: %s", bad["error"])
    items = [it for it in items if "error" not in it]
    lengths = torch.tensor([len(it["waveform"]) for it in items], dtype=torch.int64)
    target_lengths = torch.tensor([len(it["targets"]) for it in items], dtype=torch.int64)
    waveforms = torch.zeros(len(items), max(lengths.tolist(), default=0), dtype=torch.float32)
    targets = torch.zeros(len(items), max(target_lengths.tolist(), default=0), dtype=torch.int64)
    for row, it in enumerate(items):
        waveforms[row, : len(it["waveform"])] = it["waveform"]
        targets[row, : len(it["targets"])] = it["targets"]
    return Batch(
        waveforms=waveforms,
        lengths=lengths,
        targets=targets,
        target_lengths=target_lengths,
        indices=[int(it["index"]) for it in items],
        texts=[it["text"] for it in items],
    )


def ctc_feasible(target_ids: Sequence[int], n_frames: int) -> bool:
    """Whether CTC can align ``target_ids`` to ``n_frames`` output frames.

    Each label needs a frame, and two equal adjacent labels need a blank between them:
    ``len(targets) + repeats <= n_frames`` ("aa" needs 3 frames, "ab" needs 2).
    """
    repeats = sum(1 for a, b in zip(target_ids, target_ids[1:], strict=False) if a == b)
    return len(target_ids) + repeats <= n_frames


def filter_feasible(
    utterances: Sequence[Utterance],
    vocab: Vocabulary,
    frames_for_seconds: Callable[[float], int],
    max_speed: float = 1.0,
) -> tuple[list[Utterance], list[Utterance]]:
    """Split utterances into ``(kept, dropped)``.

    Dropped: empty (or all-space) text, text with characters outside ``vocab``, and transcripts
    that cannot fit the CTC output frames of ``frames_for_seconds(duration / max_speed)`` (speed
    perturbation up to ``max_speed`` shortens the audio, and so the frames). Pure: the caller
    logs the count.
    """
    kept: list[Utterance] = []
    dropped: list[Utterance] = []
    for u in utterances:
        ok = (
            bool(u.text.strip())
            and not vocab.oov_chars(u.text)
            and ctc_feasible(vocab.encode(u.text), int(frames_for_seconds(u.duration / max_speed)))
        )
        (kept if ok else dropped).append(u)
    return kept, dropped


@dataclass
class ManifestSpec:
    """One manifest in a training mix; ``weight`` copies of it per epoch (0.5 = a random half)."""

    path: str
    weight: float = 1.0


def mix_manifests(specs: Sequence[ManifestSpec], seed: int) -> list[Utterance]:
    """Read every manifest and concatenate them, each repeated ``weight`` times.

    The integer part of a weight gives full copies; the fractional part a random subset of
    ``round(fraction x lines)`` utterances drawn with ``(seed, spec position)``, kept in manifest
    order. Deterministic for ``seed``; pass e.g. ``seed + epoch`` for a fresh subset per epoch.

    Raises:
        ConfigError: for a negative or non-finite weight. ManifestError from reading.
    """
    mixed: list[Utterance] = []
    for k, spec in enumerate(specs):
        weight = float(spec.weight)
        if not np.isfinite(weight) or weight < 0:
            raise ConfigError(f"{spec.path}: manifest weight must be >= 0, got {spec.weight}")
        utterances = read_manifest(spec.path)
        whole = int(weight)
        for _ in range(whole):
            mixed.extend(utterances)
        n_part = int(round((weight - whole) * len(utterances)))
        if n_part:
            rng = np.random.default_rng([int(seed), k, _MIX_RNG_TAG])
            chosen = np.sort(rng.choice(len(utterances), size=n_part, replace=False))
            mixed.extend(utterances[i] for i in chosen)
    return mixed
