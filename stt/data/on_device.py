"""Training batches built on the training device, from audio decoded once into its memory
(``data.on_device=true``): on a GPU, DataLoader workers decoding and augmenting on the CPU keep
it a few percent busy.

:class:`DeviceCorpus` decodes every training utterance once, at start-up, into one int16 tensor
on the device (10 hours are 1.15 GB), with each utterance's offset and length, and the
transcripts as one padded tensor of label ids. :class:`DeviceLoader` stands where the
DataLoader stood: it iterates the same :class:`~stt.data.sampler.DurationBucketSampler`, so
batches, epochs and exact resumption are unchanged, and builds each batch on the device in a
few whole-batch operations: gather and pad, then what :class:`~stt.data.augment.WaveformAugment`
does to one utterance (speed perturbation, noise, telephone band) to all rows at once. MFCC
and SpecAugment already run on the model's device. A batch's random numbers come from a
generator seeded by (seed, epoch, batch position), so it does not depend on what ran before.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor
from tqdm import tqdm

from stt.audio import SAMPLE_RATE, load_audio, resample_terms
from stt.data.augment import NARROWBAND_RATE, AugmentConfig, speed_rate
from stt.data.dataset import Batch, SpeechDataset
from stt.data.sampler import DurationBucketSampler

PCM_SCALE = 32767.0


def _pcm16(path: Path) -> Tensor:
    """One file's samples as int16 PCM (16 kHz mono)."""
    samples = np.clip(load_audio(path), -1.0, 1.0) * PCM_SCALE
    return torch.from_numpy(np.rint(samples).astype(np.int16))


class DeviceCorpus:
    """Utterances decoded once into device memory: ``audio`` int16 ``(total samples,)``,
    ``offsets`` and ``lengths`` ``(utterances,)``, ``targets`` ``(utterances, longest text)``
    label ids padded with 0 and ``target_lengths``."""

    def __init__(self, dataset: SpeechDataset, device: torch.device | str, progress: bool = False):
        """The utterances of ``dataset`` (whose texts it has already encoded, and checked
        against its vocabulary) on ``device``."""
        self.device = torch.device(device)
        utterances = dataset.utterances
        self.texts = [u.text for u in utterances]
        # Decoding (libsndfile, called through cffi without the interpreter lock) runs on every
        # core: 12 h of Opus take about a minute on one core, seconds on a GPU machine's 16.
        with ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, 16))) as pool:
            decoded = pool.map(_pcm16, (u.audio_filepath for u in utterances))
            pcm = list(tqdm(decoded, total=len(utterances), desc="audio into memory", unit="utt",
                            disable=not progress))  # fmt: skip
        lengths = torch.tensor([len(x) for x in pcm], dtype=torch.int64)
        self.audio = torch.cat(pcm).to(self.device)
        self.lengths = lengths.to(self.device)
        self.offsets = (torch.cumsum(lengths, 0) - lengths).to(self.device)
        encoded = dataset.label_ids
        targets = torch.zeros(len(encoded), max(map(len, encoded), default=0), dtype=torch.int64)
        for row, ids in enumerate(encoded):
            targets[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        self.targets = targets.to(self.device)
        self.target_lengths = torch.tensor([len(t) for t in encoded], device=self.device)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def nbytes(self) -> int:
        return self.audio.numel() * self.audio.element_size()

    def batch(
        self,
        indices: Sequence[int],
        augment: AugmentConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> Batch:
        """Utterances ``indices`` as a padded :class:`Batch` on the device, augmented when
        ``augment`` is given (with ``generator``'s random numbers)."""
        idx = torch.tensor(list(indices), dtype=torch.int64, device=self.device)
        lengths = self.lengths[idx]
        waves = _gather(self.audio, self.offsets[idx], lengths)
        if augment is not None:
            waves, lengths = augment_batch(waves, lengths, augment, generator)
        longest_text = int(self.target_lengths[idx].max()) if len(idx) else 0
        return Batch(
            waveforms=waves,
            lengths=lengths,
            targets=self.targets[idx, :longest_text],
            target_lengths=self.target_lengths[idx],
            indices=[int(i) for i in indices],
            texts=[self.texts[int(i)] for i in indices],
        )


def _gather(audio: Tensor, offsets: Tensor, lengths: Tensor) -> Tensor:
    """Rows ``audio[offset : offset + length]`` as float32 ``(rows, longest)``, zero-padded."""
    longest = int(lengths.max()) if len(lengths) else 0
    positions = torch.arange(longest, device=audio.device)
    valid = positions[None, :] < lengths[:, None]
    flat = (offsets[:, None] + positions[None, :]).clamp(max=max(audio.numel() - 1, 0))
    return audio[flat].float().div_(PCM_SCALE) * valid


def _valid(lengths: Tensor, width: int) -> Tensor:
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def _resample_rows(waves: Tensor, lengths: Tensor, orig: int, new: int) -> tuple[Tensor, Tensor]:
    """Every row resampled from ``orig`` to ``new`` Hz, as :func:`stt.audio.resample` would
    one waveform: the zeros past a row's end are the padding its sinc filter assumes anyway."""
    down, up = resample_terms(orig, new)
    out = AF.resample(waves, down, up)
    new_lengths = torch.div(lengths * up + down - 1, down, rounding_mode="floor")  # ceil
    return out * _valid(new_lengths, out.shape[1]), new_lengths


def _unit_power(x: Tensor, valid: Tensor) -> Tensor:
    count = valid.sum(dim=1, keepdim=True).clamp(min=1)
    power = (x * x * valid).sum(dim=1, keepdim=True) / count
    return x / (power.sqrt() + 1e-12)


def _pink_noise(shape: tuple[int, int], generator, device) -> Tensor:
    """Rows of 1/f noise (unit power applied by the caller), shaped at the next power of two."""
    rows, n = shape
    size = 1 << max(0, n - 1).bit_length()
    spectrum = torch.fft.rfft(torch.randn(rows, size, generator=generator, device=device))
    f = torch.arange(spectrum.shape[1], dtype=torch.float32, device=device)
    f[0] = math.inf  # no DC
    return torch.fft.irfft(spectrum / f.sqrt(), size)[:, :n]


def augment_batch(
    waves: Tensor, lengths: Tensor, config: AugmentConfig, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """:class:`~stt.data.augment.WaveformAugment` for a padded batch ``(rows, samples)``: each
    row gets its own speed, noise draw and telephone-band draw, with the same distributions.
    Returns the new waveforms and lengths."""
    c, device, rows = config, waves.device, waves.shape[0]

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=device)

    if c.speed_perturb and c.speeds and rows:
        choice = torch.randint(len(c.speeds), (rows,), generator=generator, device=device)
        parts = {}
        for k in sorted(set(choice.tolist())):
            sel = (choice == k).nonzero().squeeze(1)
            rate = speed_rate(c.speeds[k])
            longest = int(lengths[sel].max())
            part, part_lengths = waves[sel, :longest], lengths[sel]
            if rate != SAMPLE_RATE:
                part, part_lengths = _resample_rows(part, part_lengths, rate, SAMPLE_RATE)
            parts[k] = (sel, part, part_lengths)
        width = max(p.shape[1] for _, p, _ in parts.values())
        waves = torch.zeros(rows, width, device=device)
        lengths = torch.zeros(rows, dtype=torch.int64, device=device)
        for sel, part, part_lengths in parts.values():
            waves[sel, : part.shape[1]] = part
            lengths[sel] = part_lengths
    if c.noise and rows:
        valid = _valid(lengths, waves.shape[1])
        noisy = uniform(rows) < c.noise_prob
        snr_db = c.snr_db[0] + (c.snr_db[1] - c.snr_db[0]) * uniform(rows)
        mix = uniform(rows, 1)
        white = torch.randn(waves.shape, generator=generator, device=device)
        pink = _pink_noise(tuple(waves.shape), generator, device)
        noise = _unit_power(
            mix * _unit_power(white, valid) + (1 - mix) * _unit_power(pink, valid), valid
        )
        count = valid.sum(dim=1).clamp(min=1)
        signal_power = (waves.double() ** 2).sum(dim=1) / count
        scale = (signal_power / 10 ** (snr_db.double() / 10)).sqrt().float()[:, None]
        waves = torch.where(noisy[:, None], waves + scale * noise * valid, waves)
    if c.narrowband_prob and rows:
        phoned = (uniform(rows) < c.narrowband_prob).nonzero().squeeze(1)
        if len(phoned):
            part = waves[phoned]
            down, down_lengths = _resample_rows(part, lengths[phoned], SAMPLE_RATE,
                                                NARROWBAND_RATE)  # fmt: skip
            up, _ = _resample_rows(down, down_lengths, NARROWBAND_RATE, SAMPLE_RATE)
            width = min(up.shape[1], waves.shape[1])
            waves[phoned] = torch.nn.functional.pad(up[:, :width], (0, waves.shape[1] - width))
            waves = waves * _valid(lengths, waves.shape[1])
    return waves, lengths


def batch_seed(seed: int, epoch: int, position: int) -> int:
    """One 63-bit seed per (seed, epoch, batch position)."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, np.uint64)[0]) >> 1


class DeviceLoader:
    """The training loop's loader over a :class:`DeviceCorpus`: the sampler's batches in its
    order (from its position, when resumed), built and augmented on the device."""

    def __init__(
        self,
        corpus: DeviceCorpus,
        sampler: DurationBucketSampler,
        augment: AugmentConfig | None,
        seed: int,
    ):
        self.corpus, self.sampler, self.augment, self.seed = corpus, sampler, augment, int(seed)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.sampler.epoch
        for indices in self.sampler:
            generator = torch.Generator(device=self.corpus.device)
            generator.manual_seed(batch_seed(self.seed, epoch, self.sampler.position))
            yield self.corpus.batch(indices, self.augment, generator)
