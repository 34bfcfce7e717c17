import subprocess
import sys

import pytest

from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.data.split import split_by_speaker
from stt.errors import ConfigError


def utterances(tmp_path, speakers=("ann", "bob", "cat", "dan", "eve"), per_speaker=4):
    return [
        Utterance(tmp_path / f"{i}_{s}_{j}.flac", 1.0, "hi")
        for i, s in enumerate(speakers)
        for j in range(per_speaker)
    ]


def test_dev_speakers_never_appear_in_train(tmp_path):
    train, dev = split_by_speaker(utterances(tmp_path), 0.2, pattern=r"^\d+_([a-z]+)_")
    assert dev and train
    assert not {u.speaker for u in train} & {u.speaker for u in dev}
    assert len(train) + len(dev) == 20


def test_split_is_seeded(tmp_path):
    a = split_by_speaker(utterances(tmp_path), 0.2, seed=1, pattern=r"^\d+_([a-z]+)_")[1]
    b = split_by_speaker(utterances(tmp_path), 0.2, seed=1, pattern=r"^\d+_([a-z]+)_")[1]
    assert [u.audio_filepath for u in a] == [u.audio_filepath for u in b]


def test_missing_speaker_information_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no 'speaker' key"):
        split_by_speaker(utterances(tmp_path), 0.2)
    with pytest.raises(ConfigError, match="does not match speaker pattern"):
        split_by_speaker(utterances(tmp_path), 0.2, pattern=r"^speaker(\d+)")


def test_split_command_writes_train_and_dev(tmp_path):
    manifest = write_manifest(tmp_path / "all.jsonl", utterances(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "stt", "data", "split", str(manifest), str(tmp_path / "out"),
         "--dev-fraction", "0.3", "--speaker-pattern", r"^\d+_([a-z]+)_"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    train = read_manifest(tmp_path / "out" / "train.jsonl")
    dev = read_manifest(tmp_path / "out" / "dev.jsonl")
    assert not {u.speaker for u in train} & {u.speaker for u in dev}
    assert "speakers" in result.stdout


def test_named_dev_speakers_are_held_out_exactly(tmp_path):
    # A one-reader corpus split by book: the pattern's group is the book, LJ050 is dev.
    utts = [Utterance(tmp_path / f"LJ{b:03d}-{i:04d}.flac", 2.0, "hi") for b in (1, 2, 50)
            for i in range(3)]  # fmt: skip
    train, dev = split_by_speaker(utts, 0.1, pattern=r"^(LJ\d+)-", dev_speakers=["LJ050"])
    assert {u.speaker for u in dev} == {"LJ050"} and len(dev) == 3
    assert {u.speaker for u in train} == {"LJ001", "LJ002"}


def test_named_dev_speakers_must_exist_and_leave_a_train_side(tmp_path):
    with pytest.raises(ConfigError, match="not in the manifest: zed"):
        split_by_speaker(utterances(tmp_path), 0.1, pattern=r"^\d+_([a-z]+)_", dev_speakers=["zed"])
    everyone = ["ann", "bob", "cat", "dan", "eve"]
    with pytest.raises(ConfigError, match="at least one speaker on each side"):
        split_by_speaker(
            utterances(tmp_path), 0.1, pattern=r"^\d+_([a-z]+)_", dev_speakers=everyone
        )


def test_split_command_takes_named_dev_speakers(tmp_path):
    manifest = write_manifest(tmp_path / "all.jsonl", utterances(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "stt", "data", "split", str(manifest), str(tmp_path / "out"),
         "--speaker-pattern", r"^\d+_([a-z]+)_", "--dev-speakers", "bob", "eve"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {u.speaker for u in read_manifest(tmp_path / "out" / "dev.jsonl")} == {"bob", "eve"}
