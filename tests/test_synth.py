"""The synthetic corpus: `stt synth` through the real command line and the library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stt.data.manifest import read_manifest
from stt.data.synth import SynthConfig, make_plan, synthesize_corpus
from stt.data.validate import validate_manifest
from tests.conftest import requires_synth_tools

pytestmark = requires_synth_tools

SENTENCES = [
    f"sentence number {w} about the {c} cat that sat on the mat"
    for w in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    for c in ("red", "green", "blue", "black")
]


def stt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stt", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The issue's reference run: `stt synth OUT --hours 0.05 --seed 1`, from real Debian text."""
    out = tmp_path_factory.mktemp("synth") / "corpus"
    result = stt("synth", str(out), "--hours", "0.05", "--seed", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    return out, result


def small_config(out: Path, **kwargs) -> SynthConfig:
    """A corpus from the test's own sentences: fast, and independent of the Debian text."""
    text_file = out.parent / "sentences.txt"
    text_file.write_text("\n".join(SENTENCES) + "\n")
    defaults = dict(
        out_dir=str(out),
        hours=0.01,
        seed=3,
        text_files=[str(text_file)],
        use_debian_text=False,
        sentence_fractions={"dev": 0.2, "test": 0.2},
        progress=False,
    )
    return SynthConfig(**{**defaults, **kwargs})


def test_reference_run_writes_three_manifests_that_validate(corpus):
    out, _ = corpus
    for split in ("train", "dev", "test"):
        report = validate_manifest(out / f"{split}.jsonl", progress=False)
        assert report.ok, report.format()
        assert report.utterances > 0
    train_hours = validate_manifest(out / "train.jsonl", progress=False).seconds / 3600
    assert 0.03 < train_hours < 0.06


def test_validate_command_accepts_every_line(corpus):
    out, _ = corpus
    result = stt("data", "validate", *(str(out / f"{s}.jsonl") for s in ("train", "dev", "test")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == 3


def test_rerun_skips_everything_already_made(corpus):
    out, first = corpus
    before = (out / "train.jsonl").read_text()
    result = stt("synth", str(out), "--hours", "0.05", "--seed", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "made 0," in result.stdout and "failed 0" in result.stdout
    assert (out / "train.jsonl").read_text() == before


def test_audio_is_16k_flac_with_speaker_and_accent(corpus):
    out, _ = corpus
    utt = read_manifest(out / "train.jsonl")[0]
    assert utt.audio_filepath.suffix == ".flac"
    assert utt.speaker and utt.accent and utt.extra["engine"] in ("espeak", "flite")
    import soundfile as sf

    info = sf.info(str(utt.audio_filepath))
    assert info.samplerate == 16000 and info.channels == 1


def test_test_voices_are_never_heard_in_training(corpus):
    out, _ = corpus
    train = {u.speaker for u in read_manifest(out / "train.jsonl")}
    dev = {u.speaker for u in read_manifest(out / "dev.jsonl")}
    test = {u.speaker for u in read_manifest(out / "test.jsonl")}
    assert test and not test & (train | dev)


def test_splits_have_disjoint_sentences(corpus):
    out, _ = corpus
    texts = {
        s: {u.text for u in read_manifest(out / f"{s}.jsonl")} for s in ("train", "dev", "test")
    }
    assert not texts["train"] & texts["dev"]
    assert not texts["train"] & texts["test"]
    assert not texts["dev"] & texts["test"]


def test_transcripts_are_normalised_and_within_limits(corpus):
    out, _ = corpus
    for utt in read_manifest(out / "train.jsonl"):
        assert 5 <= len(utt.text.split()) <= 20
        assert set(utt.text) <= set(" abcdefghijklmnopqrstuvwxyz'")


def test_same_seed_gives_the_same_corpus_and_another_seed_does_not(tmp_path):
    a = synthesize_corpus(small_config(tmp_path / "a"))
    b = synthesize_corpus(small_config(tmp_path / "b"))
    c = synthesize_corpus(small_config(tmp_path / "c", seed=4))

    def rows(summary):
        return [
            {**json.loads(line)}
            for line in Path(summary.manifests["train"]).read_text().splitlines()
        ]

    assert rows(a) == rows(b)
    assert rows(a) != rows(c)
    first_a = read_manifest(a.manifests["train"])[0].audio_filepath
    first_b = read_manifest(b.manifests["train"])[0].audio_filepath
    assert first_a.read_bytes() == first_b.read_bytes()


def test_rerun_repairs_damaged_files_and_removes_partial_ones(tmp_path):
    cfg = small_config(tmp_path / "c")
    first = synthesize_corpus(cfg)
    utts = read_manifest(first.manifests["train"])
    damaged, deleted = utts[0].audio_filepath, utts[1].audio_filepath
    damaged.write_bytes(damaged.read_bytes()[:200])  # truncated, as by a crash or a full disk
    deleted.unlink()
    partial = damaged.with_name(f".{damaged.name}.partial")
    partial.write_bytes(b"half")

    second = synthesize_corpus(cfg)
    assert (second.made, second.failed) == (2, 0)
    assert second.skipped == first.made - 2
    assert not partial.exists()
    assert validate_manifest(second.manifests["train"], progress=False).ok
    assert Path(second.manifests["train"]).read_text() == Path(first.manifests["train"]).read_text()


def test_hours_bound_the_corpus(tmp_path):
    small = make_plan(small_config(tmp_path, hours=0.01), SENTENCES)
    large = make_plan(small_config(tmp_path, hours=0.03), SENTENCES)
    assert 2.5 < len(large) / len(small) < 3.5


def test_held_out_accent_goes_only_to_holdout_splits_with_disjoint_voices(tmp_path):
    cfg = small_config(tmp_path / "h", holdout_accents=["scottish"], holdout_adapt_hours=0.005,
                       holdout_test_hours=0.005)  # fmt: skip
    summary = synthesize_corpus(cfg)
    assert set(summary.manifests) == {"train", "dev", "test", "holdout_adapt", "holdout_test"}
    for split in ("train", "dev", "test"):
        assert all(u.accent != "scottish" for u in read_manifest(summary.manifests[split]))
    adapt = read_manifest(summary.manifests["holdout_adapt"])
    test = read_manifest(summary.manifests["holdout_test"])
    assert {u.accent for u in adapt} == {u.accent for u in test} == {"scottish"}
    assert not {u.speaker for u in adapt} & {u.speaker for u in test}
    assert not {u.text for u in adapt} & {u.text for u in test}


def test_unknown_accent_is_a_one_line_error(tmp_path):
    result = stt("synth", str(tmp_path / "x"), "--holdout-accent", "martian")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "unknown accent 'martian'" in result.stderr


def test_bad_override_is_a_one_line_error(tmp_path):
    result = stt("synth", str(tmp_path / "x"), "hours=lots")
    assert result.returncode == 1
    assert result.stderr.startswith("stt: error:") and "hours" in result.stderr


def test_a_relative_output_folder_gives_manifests_that_resolve(tmp_path):
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "stt", "synth", "rel/corpus", "--hours", "0.005", "--no-progress",
         f"text_files=[{text}]", "use_debian_text=false",
         "sentence_fractions={dev: 0.2, test: 0.2}"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = validate_manifest(tmp_path / "rel" / "corpus" / "train.jsonl", progress=False)
    assert report.ok and report.utterances > 0
