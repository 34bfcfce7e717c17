"""stt.data.on_device: batches gathered and augmented on the device match what the DataLoader
path (SpeechDataset + collate + WaveformAugment) gives, draw for draw in distribution, and a
loader resumed part way through an epoch yields the same batches as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stt.audio import SAMPLE_RATE
from stt.data.augment import AugmentConfig, change_speed, narrowband
from stt.data.dataset import SpeechDataset, collate
from stt.data.manifest import Utterance
from stt.data.on_device import PCM_SCALE, DeviceCorpus, DeviceLoader
from stt.data.sampler import DurationBucketSampler
from stt.text import Vocabulary

VOCAB = Vocabulary.default()
LENGTHS = [4000, 9000, 6500, 12000, 3000]
NO_AUGMENT = dict(speed_perturb=False, noise=False, narrowband_prob=0.0, spec_augment=False)


@pytest.fixture(scope="module")
def utterances(tmp_path_factory) -> list[Utterance]:
    folder = tmp_path_factory.mktemp("on-device")
    rng = np.random.default_rng(0)
    out = []
    for i, n in enumerate(LENGTHS):
        t = np.arange(n) / SAMPLE_RATE
        wave = 0.3 * np.sin(2 * np.pi * (300 + 500 * i) * t) + 0.05 * rng.standard_normal(n)
        path = folder / f"{i}.wav"
        sf.write(path, wave.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
        out.append(Utterance(path, n / SAMPLE_RATE, "utterance number " + "abcde"[i] * (i + 1), {}))
    return out


@pytest.fixture(scope="module")
def corpus(utterances) -> DeviceCorpus:
    return DeviceCorpus(SpeechDataset(utterances, VOCAB), "cpu")


def pcm(path: Path) -> np.ndarray:
    """The file as the corpus holds it: int16 steps."""
    wave, _ = sf.read(path, dtype="float32")
    return (np.rint(np.clip(wave, -1, 1) * PCM_SCALE) / PCM_SCALE).astype(np.float32)


def test_a_plain_batch_is_what_collate_pads(corpus, utterances):
    indices = [3, 0, 2]
    got = corpus.batch(indices)
    expected = collate([SpeechDataset(utterances, VOCAB)[i] for i in indices])
    assert got.lengths.tolist() == expected.lengths.tolist()
    assert got.waveforms.shape == expected.waveforms.shape
    torch.testing.assert_close(got.waveforms, expected.waveforms, atol=0.6 / PCM_SCALE, rtol=0)
    assert torch.equal(got.targets, expected.targets)
    assert got.target_lengths.tolist() == expected.target_lengths.tolist()
    assert got.texts == expected.texts and got.indices == indices
    assert corpus.nbytes == 2 * sum(LENGTHS)


def test_speed_perturbation_resamples_each_row_as_change_speed_does(corpus, utterances):
    config = AugmentConfig(**{**NO_AUGMENT, "speed_perturb": True, "speeds": [1.1]})
    got = corpus.batch([1, 4, 3], config, torch.Generator().manual_seed(0))
    for row, i in enumerate([1, 4, 3]):
        expected = change_speed(pcm(utterances[i].audio_filepath), 1.1)
        n = int(got.lengths[row])
        assert n == len(expected)
        np.testing.assert_allclose(got.waveforms[row, :n].numpy(), expected, atol=1e-5)
        assert not got.waveforms[row, n:].any()  # padding stays silent


def test_noise_is_added_at_the_drawn_snr_inside_each_row_only(corpus):
    config = AugmentConfig(**{**NO_AUGMENT, "noise": True, "noise_prob": 1.0,
                              "snr_db": [12.0, 12.0]})  # fmt: skip
    indices = [0, 1, 2, 3, 4]
    clean = corpus.batch(indices)
    noisy = corpus.batch(indices, config, torch.Generator().manual_seed(1))
    assert torch.equal(noisy.lengths, clean.lengths)
    for row in range(len(indices)):
        n = int(clean.lengths[row])
        signal, added = clean.waveforms[row, :n].double(), (noisy.waveforms - clean.waveforms)[row]
        snr = 10 * torch.log10((signal**2).mean() / (added[:n].double() ** 2).mean())
        assert abs(float(snr) - 12.0) < 0.01
        assert not added[n:].any()


def test_telephone_band_rows_are_narrowband_copies(corpus, utterances):
    config = AugmentConfig(**{**NO_AUGMENT, "narrowband_prob": 1.0})
    got = corpus.batch([2, 3], config, torch.Generator().manual_seed(2))
    for row, i in enumerate([2, 3]):
        n = int(got.lengths[row])
        expected = narrowband(pcm(utterances[i].audio_filepath))
        np.testing.assert_allclose(got.waveforms[row, :n].numpy(), expected, atol=1e-5)
    spectrum = np.abs(np.fft.rfft(got.waveforms[1, : int(got.lengths[1])].numpy())) ** 2
    freqs = np.fft.rfftfreq(int(got.lengths[1]), 1 / SAMPLE_RATE)
    assert spectrum[freqs > 4400].sum() < 1e-4 * spectrum.sum()


def batches(loader: DeviceLoader) -> list:
    return [(b.indices, b.waveforms, b.lengths) for b in loader]


def test_the_loader_is_seeded_per_batch_and_resumes_exactly(corpus, utterances):
    config = AugmentConfig(speeds=[0.9, 1.0, 1.1], noise_prob=0.5, narrowband_prob=0.5)
    durations = [u.duration for u in utterances]

    def loader(epoch: int, position: int = 0) -> DeviceLoader:
        sampler = DurationBucketSampler(durations, 1.2, shuffle=True, seed=3)
        sampler.set_epoch(epoch)
        sampler.load_state_dict({"epoch": epoch, "position": position})
        return DeviceLoader(corpus, sampler, config, seed=3)

    full = batches(loader(1))
    assert len(full) >= 3 and len(full) == len(loader(1))
    again, resumed = batches(loader(1)), batches(loader(1, position=2))
    for (i, w, n), (j, v, m) in zip(full, again, strict=True):
        assert i == j and torch.equal(w, v) and torch.equal(n, m)
    for (i, w, n), (j, v, m) in zip(full[2:], resumed, strict=True):
        assert i == j and torch.equal(w, v) and torch.equal(n, m)
    other_epoch = batches(loader(2))
    assert [b[0] for b in other_epoch] != [b[0] for b in full] or any(
        not torch.equal(a[1], b[1]) for a, b in zip(full, other_epoch, strict=False)
    )
