"""`stt eval`: reports, jiwer agreement, bad input, decoders side by side, tuning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
import torch
from omegaconf import OmegaConf

from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.data.synth import SynthConfig, synthesize_corpus
from stt.evaluate import aligned_diff, word_confusions
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary
from stt.training.checkpoint import model_state, save_checkpoint
from tests.conftest import requires_synth_tools

pytestmark = requires_synth_tools


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic test set and an (untrained) tiny checkpoint."""
    out = tmp_path_factory.mktemp("eval")
    text = out / "sentences.txt"
    text.write_text(
        "\n".join(f"a {c} {n} sat on the warm mat" for c in ("cat", "dog", "cow") for n in
                  ("one", "two", "three", "four")) + "\n"
    )  # fmt: skip
    synthesize_corpus(
        SynthConfig(
            out_dir=str(out / "corpus"), hours=0.006, seed=4, text_files=[str(text)],
            use_debian_text=False, sentence_fractions={"dev": 0.25, "test": 0.25}, progress=False,
        )
    )  # fmt: skip
    torch.manual_seed(0)
    vocab = Vocabulary.default()
    model = WaveNetCTC(
        ModelConfig(channels=16, kernel_size=3, dilations=[1, 2], stacks=1, head_channels=16),
        len(vocab),
    )
    checkpoint = save_checkpoint(out / "model" / "model.pt", model_state(model.eval(), vocab))
    return out, checkpoint


def stt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stt", *args], capture_output=True, text=True, check=False
    )


def test_eval_writes_every_report_file_and_its_wer_is_jiwers(setup, tmp_path):
    out, checkpoint = setup
    test = out / "corpus" / "test.jsonl"
    result = stt("eval", str(checkpoint), str(test), "--out", str(tmp_path / "r"), "--no-progress")
    assert result.returncode == 0, result.stderr
    for name in ("report.json", "report.md", "utterances.jsonl", "wer_per_set.png",
                 "wer_by_length.png"):  # fmt: skip
        assert (tmp_path / "r" / name).exists(), name
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "r" / "utterances.jsonl").open()]
    refs = [r["reference"] for r in rows]
    hyps = [r["hypothesis"] for r in rows]
    figures = report["decoders"]["greedy"]["sets"]["corpus/test"]
    assert figures["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert figures["cer"] == pytest.approx(jiwer.cer(refs, hyps))
    assert figures["utterances"] == len(read_manifest(test))
    for key in ("ser", "substitutions", "deletions", "insertions", "hours", "rtfx"):
        assert key in figures
    assert {"reference", "hypothesis", "diff", "wer", "duration"} <= set(rows[0])
    assert "| corpus/test |" in (tmp_path / "r" / "report.md").read_text()


def test_greedy_and_beam_are_reported_side_by_side(setup, tmp_path):
    out, checkpoint = setup
    dev, test = str(out / "corpus" / "dev.jsonl"), str(out / "corpus" / "test.jsonl")
    result = stt(
        "eval", str(checkpoint), dev, test, "--decoders", "greedy", "beam",
        "--out", str(tmp_path / "r"), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert set(report["decoders"]) == {"greedy", "beam"}
    assert set(report["decoders"]["beam"]["sets"]) == {"corpus/dev", "corpus/test"}
    assert "Side by side" in (tmp_path / "r" / "report.md").read_text()


def test_bad_lines_and_unreadable_audio_are_counted_not_fatal(setup, tmp_path):
    out, checkpoint = setup
    good = read_manifest(out / "corpus" / "test.jsonl")
    broken = tmp_path / "broken.wav"
    broken.write_text("nope")
    manifest = write_manifest(tmp_path / "mixed.jsonl", [*good, Utterance(broken, 1.0, "x y")])
    with manifest.open("a") as handle:
        handle.write("{not json\n")
    result = stt(
        "eval", str(checkpoint), str(manifest), "--out", str(tmp_path / "r"), "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    assert "broken.wav: unreadable audio" in result.stderr
    assert f"{manifest}:{len(good) + 2}: not valid JSON" in result.stderr
    [mixed] = json.loads((tmp_path / "r" / "report.json").read_text())["sets"].values()
    assert mixed["bad_manifest_lines"] == 1 and mixed["unreadable_audio"] == 1
    assert mixed["utterances"] == len(good)
    strict = stt("eval", str(checkpoint), str(manifest), "--strict", "--out", str(tmp_path / "s"))
    assert strict.returncode == 1
    assert strict.stderr.strip().splitlines()[-1].startswith("stt: error:")


def test_multirun_tunes_and_saves_the_decoder_beside_the_checkpoint(setup, tmp_path):
    out, checkpoint = setup
    result = stt(
        "eval", str(checkpoint), str(out / "corpus" / "dev.jsonl"), "--multirun",
        "decoder.alpha=0.2,0.8", "decoder.beta=0,1.5", "--decoders", "beam",
        "--out", str(tmp_path / "r"), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("wer=") == 4
    saved = checkpoint.parent / "decoder.yaml"
    assert saved.exists()
    try:
        tuned = OmegaConf.load(saved)
        again = stt("eval", str(checkpoint), str(out / "corpus" / "test.jsonl"), "--decoders",
                    "beam", "--out", str(tmp_path / "again"), "--no-progress")  # fmt: skip
        assert again.returncode == 0, again.stderr
        settings = json.loads((tmp_path / "again" / "report.json").read_text())["decoder_settings"]
        assert settings["alpha"] == tuned.alpha and settings["beta"] == tuned.beta
    finally:
        saved.unlink()


def test_aligned_diff_marks_substitutions_deletions_insertions():
    assert aligned_diff("the cat sat on the mat", "the cap sat the mat now") == (
        "the [cat->cap] sat [-on] the mat [+now]"
    )


def test_word_confusions_count_the_most_frequent_errors_first():
    pairs = [("a cat", "a cap"), ("the cat", "the cap"), ("big dog", "big")]
    top = word_confusions(pairs)
    assert top[0] == {"reference": "cat", "hypothesis": "cap", "count": 2}
    assert {"reference": "dog", "hypothesis": None, "count": 1} in top


def test_bootstrap_interval_brackets_the_rate_and_narrows_with_more_utterances():
    from stt.metrics import bootstrap_interval, error_counts

    refs = ["the cat sat on the mat", "a dog ran", "hello world", "one two three four"] * 5
    hyps = ["the cat sat on a mat", "a dog ran", "hello word", "one two three four"] * 5
    wer = error_counts(refs, hyps).wer
    low, high = bootstrap_interval(refs, hyps)
    assert low <= wer <= high and high > low
    assert bootstrap_interval(refs, hyps) == (low, high)  # seeded
    wide = bootstrap_interval(refs[:4], hyps[:4])
    assert wide[1] - wide[0] > high - low
    assert bootstrap_interval(refs, refs) == (0.0, 0.0)
    c_low, c_high = bootstrap_interval(refs, hyps, "cer")
    assert c_low <= error_counts(refs, hyps).cer <= c_high
