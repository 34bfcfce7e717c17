"""`stt eval`: reports, jiwer agreement, bad input, decoders side by side, tuning."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

import stt.evaluate as evaluate_module
from stt.checkpoint import model_state, read_model, save_checkpoint
from stt.cli import main
from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.data.synth import SynthConfig, synthesize_corpus
from stt.evaluate import EvalConfig, load_test_set, run_eval
from stt.inference import infer_log_probs
from stt.metrics import aligned_diff, word_confusions
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary
from tests.conftest import requires_synth_tools, tone


def tiny_checkpoint(folder: Path) -> Path:
    """An untrained tiny model with the default vocabulary."""
    torch.manual_seed(0)
    vocab = Vocabulary.default()
    model = WaveNetCTC(
        ModelConfig(channels=16, kernel_size=3, dilations=[1, 2], stacks=1, head_channels=16),
        len(vocab),
    )
    return save_checkpoint(folder / "model.pt", model_state(model.eval(), vocab))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic test set and an (untrained) tiny checkpoint."""
    if requires_synth_tools.args[0]:
        pytest.skip(requires_synth_tools.kwargs["reason"])
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
    return out, tiny_checkpoint(out / "model")


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
    assert (
        f"{manifest}:{len(good) + 1}: {broken}: not an audio file soundfile can decode"
        in result.stderr
    )
    assert f"{manifest}:{len(good) + 2}: not valid JSON" in result.stderr
    assert "2 utterance(s) skipped (1 malformed line(s), 1 unreadable audio" in result.stdout
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


# ---------------------------------------------------------------------------------------------
# Evaluation that does not lie (no synthetic speech needed: tones, noise and an untrained model)
# ---------------------------------------------------------------------------------------------


def write_set(folder: Path, rows: list[tuple[str, np.ndarray | None, float, str]]) -> Path:
    """A manifest of ``(file name, samples or None for no file, duration, text)`` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, samples, _, _ in rows:
        if samples is not None:
            sf.write(str(folder / name), samples, 16_000)
    utterances = [Utterance(folder / name, duration, text) for name, _, duration, text in rows]
    return write_manifest(folder / "set.jsonl", utterances)


def eval_cli(checkpoint: Path, manifest: Path, out: Path) -> list[str]:
    return ["eval", str(checkpoint), str(manifest), "--out", str(out), "--no-progress"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty manifest"),
        ('{not json\n[1, 2]\n{"text": "no audio"}\n', "3 lines, all bad"),
        (
            '{"audio_filepath": "gone.flac", "duration": 1, "text": "x"}\n{bad\n',
            "2 lines: 1 malformed, 1 with missing or unreadable audio",
        ),
    ],
    ids=["empty", "every-line-bad", "bad-lines-and-missing-audio"],
)
def test_eval_of_a_manifest_with_nothing_usable_fails_in_one_line(
    checkpoint, tmp_path, capsys, content, problem
):
    manifest = tmp_path / "x.jsonl"
    manifest.write_text(content)
    assert main(eval_cli(checkpoint, manifest, tmp_path / "r")) == 1
    err = capsys.readouterr().err
    assert (
        err.strip().splitlines()[-1] == f"stt: error: {manifest}: no usable utterances ({problem})"
    )
    assert not (tmp_path / "r" / "report.json").exists()


def test_hours_and_rtfx_come_from_the_decoded_audio_not_the_manifest_duration(checkpoint, tmp_path):
    manifest = write_set(tmp_path / "set", [("a.wav", tone(2.0), 1e300, "a tone")])
    report = run_eval(EvalConfig(str(checkpoint), [str(manifest)], ["set"],
                                 str(tmp_path / "r"), device="cpu", progress=False))  # fmt: skip
    assert report["sets"]["set"]["hours"] == pytest.approx(2.0 / 3600)
    figures = report["decoders"]["greedy"]["overall"]
    assert figures["hours"] == pytest.approx(2.0 / 3600)
    assert 0 < figures["rtfx"] < 1e6  # 1e300 s of audio would give an RTFx near 1e300
    [row] = [json.loads(line) for line in (tmp_path / "r" / "utterances.jsonl").open()]
    assert row["duration"] == pytest.approx(2.0)


def test_references_the_model_cannot_emit_are_warned_about_once_and_counted(
    checkpoint, tmp_path, caplog
):
    manifest = write_set(tmp_path / "set", [
        ("a.wav", tone(1.0), 1.0, "Hello 21 \U0001f600"),
        ("b.wav", tone(1.0), 1.0, "twenty one"),  # already normalised: fine
        ("c.wav", tone(1.0), 1.0, "Big"),
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="stt.evaluate"):
        cfg = EvalConfig(str(checkpoint), [str(manifest)], ["myset"], str(tmp_path / "r"))
        report = run_eval(replace(cfg, device="cpu", progress=False))
    [warning] = [r.getMessage() for r in caplog.records if "cannot emit" in r.getMessage()]
    assert warning.startswith("myset: 2 of 3 reference(s)")
    for char in ("H", "2", "1", "\U0001f600", "B"):
        assert repr(char) in warning
    stored = json.loads((tmp_path / "r" / "report.json").read_text())["sets"]["myset"]
    assert stored["unscorable_utterances"] == 2
    assert stored["unscorable_chars"] == {"H": 1, "2": 1, "1": 1, "\U0001f600": 1, "B": 1}
    assert report["sets"]["myset"] == stored
    assert "References the model cannot match" in (tmp_path / "r" / "report.md").read_text()


def test_a_long_file_goes_through_the_model_window_by_window(
    checkpoint, tmp_path, monkeypatch, one_thread
):
    noise = (0.1 * np.random.default_rng(0).standard_normal(180 * 16_000)).astype(np.float32)
    manifest = write_set(tmp_path / "set", [
        ("long.flac", noise, 180.0, "noise"),
        ("short.wav", tone(1.0), 1.0, "a tone"),
    ])  # fmt: skip
    chunks, whole_lengths = [], []
    stream = evaluate_module.stream_log_probs

    def counted_stream(*args, **kwargs):
        for chunk in stream(*args, **kwargs):
            chunks.append(len(chunk))
            yield chunk

    def recorded_infer(model, waveforms, *args, **kwargs):
        whole_lengths.extend(len(w) for w in waveforms)
        return infer_log_probs(model, waveforms, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "stream_log_probs", counted_stream)
    monkeypatch.setattr(evaluate_module, "infer_log_probs", recorded_infer)
    model, vocab = read_model(checkpoint)
    cfg = EvalConfig(str(checkpoint), [str(manifest)], window_seconds=30.0, progress=False)
    test_set = load_test_set(str(manifest), "set", model, vocab, "cpu", cfg)

    assert len(chunks) >= 6  # 180 s in windows of 30 s, context included
    assert whole_lengths == [16_000]  # only the short file went through in one pass
    assert test_set.durations == pytest.approx([180.0, 1.0])
    long_lp = test_set.log_probs[0]
    assert len(long_lp) == sum(chunks)
    one_pass = infer_log_probs(model, [noise])[0]  # what a whole-file pass would give
    assert long_lp.shape == one_pass.shape
    np.testing.assert_allclose(long_lp, one_pass, atol=1e-4)
