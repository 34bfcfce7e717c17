from pathlib import Path

import numpy as np
import pytest
import torch

from stt.audio import SAMPLE_RATE
from stt.data.augment import AugmentConfig, WaveformAugment
from stt.data.dataset import (
    Batch,
    ManifestSpec,
    SpeechDataset,
    collate,
    ctc_feasible,
    filter_feasible,
    mix_manifests,
)
from stt.data.manifest import Utterance, write_manifest
from stt.data.sampler import DurationBucketSampler
from stt.errors import ConfigError
from stt.text import Vocabulary

VOCAB = Vocabulary.default()


@pytest.fixture
def utterances(write_tone) -> list[Utterance]:
    spec = [(0.5, "hello"), (1.0, "a b"), (0.25, "zz top")]
    return [
        Utterance(write_tone(f"u{i}.wav", seconds), seconds, text)
        for i, (seconds, text) in enumerate(spec)
    ]


def noisy_dataset(utterances, seed: int = 0) -> SpeechDataset:
    augment = WaveformAugment(AugmentConfig(speed_perturb=False, noise_prob=1.0))
    return SpeechDataset(utterances, VOCAB, augment=augment, seed=seed)


def test_item_holds_the_waveform_targets_index_and_text(utterances):
    item = SpeechDataset(utterances, VOCAB)[1]
    assert item["waveform"].dtype == torch.float32
    assert item["waveform"].shape == (SAMPLE_RATE,)
    assert item["targets"].dtype == torch.int64
    assert (item["index"], item["text"]) == (1, "a b")


def test_targets_encode_the_text(utterances):
    item = SpeechDataset(utterances, VOCAB)[0]
    assert VOCAB.decode(item["targets"].tolist()) == "hello"


def test_durations_are_the_manifest_durations(utterances):
    assert SpeechDataset(utterances, VOCAB).durations == [0.5, 1.0, 0.25]


def test_text_outside_the_vocabulary_is_a_config_error_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match="bad.wav"):
        SpeechDataset([Utterance(tmp_path / "bad.wav", 1.0, "caf\u00e9")], VOCAB)


def test_collate_pads_waveforms_and_targets_and_records_lengths(utterances):
    ds = SpeechDataset(utterances, VOCAB)
    batch = collate([ds[0], ds[1], ds[2]])
    assert isinstance(batch, Batch)
    assert batch.waveforms.shape == (3, SAMPLE_RATE)
    assert batch.lengths.tolist() == [8000, 16000, 4000]
    assert batch.lengths.dtype == batch.target_lengths.dtype == torch.int64
    assert (batch.waveforms[0, 8000:] == 0).all() and (batch.waveforms[2, 4000:] == 0).all()
    assert batch.targets.shape == (3, 6)
    assert batch.target_lengths.tolist() == [5, 3, 6]
    assert (batch.targets[0, 5:] == 0).all()
    assert batch.indices == [0, 1, 2] and batch.texts == ["hello", "a b", "zz top"]
    assert batch.seconds == pytest.approx(1.75)


def test_batch_to_moves_every_tensor(utterances):
    ds = SpeechDataset(utterances, VOCAB)
    moved = collate([ds[0]]).to("meta")
    assert moved.waveforms.is_meta and moved.lengths.is_meta
    assert moved.targets.is_meta and moved.target_lengths.is_meta


def test_dataloader_with_the_bucket_sampler_yields_batches(utterances):
    ds = SpeechDataset(utterances, VOCAB)
    sampler = DurationBucketSampler(ds.durations, max_batch_seconds=1.0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    assert sorted(i for b in loader for i in b.indices) == [0, 1, 2]


def test_augmentation_is_deterministic_per_seed_epoch_and_index(utterances):
    a, b = noisy_dataset(utterances), noisy_dataset(utterances)
    a.set_epoch(3)
    b.set_epoch(3)
    b[0]  # reading other items first must not matter
    assert torch.equal(a[2]["waveform"], b[2]["waveform"])


def test_augmentation_differs_between_epochs(utterances):
    ds = noisy_dataset(utterances)
    first = ds[0]["waveform"]
    ds.set_epoch(1)
    assert not torch.equal(first, ds[0]["waveform"])


def test_augmentation_differs_between_seeds(utterances):
    assert not torch.equal(
        noisy_dataset(utterances, seed=0)[0]["waveform"],
        noisy_dataset(utterances, seed=1)[0]["waveform"],
    )


def test_set_epoch_reaches_persistent_dataloader_workers(utterances):
    ds = noisy_dataset(utterances)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=1, collate_fn=collate, num_workers=1, persistent_workers=True
    )
    epochs = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        epochs.append(next(iter(loader)).waveforms[0])
    reference = noisy_dataset(utterances)
    reference.set_epoch(1)
    assert torch.equal(epochs[1], reference[0]["waveform"])
    assert not torch.equal(epochs[0], epochs[1])


def test_ctc_needs_one_frame_per_label():
    assert ctc_feasible([1, 2, 3], 3)
    assert not ctc_feasible([1, 2, 3], 2)


def test_ctc_needs_a_blank_between_repeated_labels():
    aa = VOCAB.encode("aa")
    assert not ctc_feasible(aa, 2)
    assert ctc_feasible(aa, 3)
    assert not ctc_feasible(VOCAB.encode("aaab"), 5)  # 4 labels + 2 repeats


def test_filter_feasible_drops_too_long_oov_and_empty_transcripts(tmp_path):
    def utt(seconds: float, text: str) -> Utterance:
        return Utterance(tmp_path / "x.wav", seconds, text)

    def frames(seconds: float) -> int:
        return int(seconds * 10)  # 10 output frames per second

    fits, too_long, oov, empty, blank = (
        utt(1.0, "hello"),
        utt(0.5, "hello world"),
        utt(5.0, "na\u00efve"),
        utt(1.0, ""),
        utt(1.0, "  "),
    )
    kept, dropped = filter_feasible([fits, too_long, oov, empty, blank], VOCAB, frames)
    assert kept == [fits]
    assert dropped == [too_long, oov, empty, blank]


def test_filter_feasible_allows_for_the_fastest_speed(tmp_path):
    u = Utterance(tmp_path / "x.wav", 1.0, "abcdefghij")  # 10 labels in 10 frames
    kept, _ = filter_feasible([u], VOCAB, lambda s: int(round(s * 10)))
    assert kept == [u]
    kept, dropped = filter_feasible([u], VOCAB, lambda s: int(round(s * 10)), max_speed=1.1)
    assert kept == [] and dropped == [u]


def write_lines(path: Path, n: int, tag: str) -> str:
    utts = [Utterance(path.parent / f"{tag}{i}.wav", 1.0, f"{tag} {i}") for i in range(n)]
    write_manifest(path, utts)
    return str(path)


def test_mix_manifests_repeats_each_manifest_by_its_weight(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", 10, "a")
    b = write_lines(tmp_path / "b.jsonl", 10, "b")
    mixed = mix_manifests([ManifestSpec(a, 2.0), ManifestSpec(b, 0.5)], seed=0)
    texts = [u.text for u in mixed]
    assert texts[:20] == [f"a {i}" for i in range(10)] * 2
    half = texts[20:]
    assert len(half) == 5 and len(set(half)) == 5 and all(t.startswith("b ") for t in half)


def test_mix_manifests_is_deterministic_for_the_seed(tmp_path):
    b = write_lines(tmp_path / "b.jsonl", 40, "b")

    def subset(seed: int) -> list[str]:
        return [u.text for u in mix_manifests([ManifestSpec(b, 0.5)], seed=seed)]

    assert subset(1) == subset(1)
    assert subset(1) != subset(2)


def test_mix_manifests_rejects_a_negative_weight(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", 3, "a")
    with pytest.raises(ConfigError, match="weight"):
        mix_manifests([ManifestSpec(a, -1.0)], seed=0)


def test_speed_perturbed_item_has_the_perturbed_length(utterances):
    augment = WaveformAugment(AugmentConfig(speeds=[1.1], noise=False))
    item = SpeechDataset(utterances, VOCAB, augment=augment)[1]
    assert abs(len(item["waveform"]) - SAMPLE_RATE / 1.1) <= 1
    assert np.isfinite(item["waveform"].numpy()).all()
