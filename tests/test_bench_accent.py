"""scripts/bench_accent.py's data preparation: the accent-free manifests, the 10-minute adapt set
and the voice check (the training run itself is the benchmark, not a test)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from stt.data.manifest import Utterance, read_manifest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_accent.py"
_spec = importlib.util.spec_from_file_location("bench_accent", SCRIPT)
bench_accent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_accent)


def corpus_manifest(tmp_path: Path) -> Path:
    """A synth-style manifest in ``tmp_path/synth`` with relative audio paths, and one absolute."""
    rows = [
        ("audio/train/a.flac", "lancashire", "one"),
        ("audio/train/b.flac", "scottish", "two"),
        ("audio/train/c.flac", "us", "three"),
        ("/data/elsewhere/d.flac", "rp", "four"),
        ("audio/train/e.flac", "scottish", "five"),
        ("audio/train/f.flac", "caribbean", "six"),
    ]
    path = tmp_path / "synth" / "train.jsonl"
    path.parent.mkdir(parents=True)
    lines = [
        json.dumps(
            {"audio_filepath": audio, "duration": 1.5, "text": text, "speaker": f"v{i}",
             "accent": accent, "engine": "espeak", "snr_db": None}
        )
        for i, (audio, accent, text) in enumerate(rows)
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def utterances(durations: list[float], speaker: str = "v") -> list[Utterance]:
    return [
        Utterance(Path(f"/a/{i}.flac"), d, f"utt {i}", {"speaker": f"{speaker}{i % 2}"})
        for i, d in enumerate(durations)
    ]


def test_filtering_drops_the_accent_and_keeps_the_order(tmp_path):
    src = corpus_manifest(tmp_path)
    lines = bench_accent.without_accent(src, tmp_path / "accent" / "base.jsonl", "scottish")
    records = [json.loads(line) for line in lines]
    assert [r["text"] for r in records] == ["one", "three", "four", "six"]
    assert all(r["accent"] != "scottish" for r in records)


def test_filtered_paths_resolve_to_the_same_audio_from_the_new_folder(tmp_path):
    src = corpus_manifest(tmp_path)
    dst = tmp_path / "accent" / "base.jsonl"
    bench_accent.ensure_without_accent(src, dst, "scottish")
    original = {u.text: u.audio_filepath for u in read_manifest(src)}
    filtered = read_manifest(dst)
    assert [u.audio_filepath for u in filtered] == [original[u.text] for u in filtered]
    first = json.loads(dst.read_text().splitlines()[0])
    assert first["audio_filepath"] == "../synth/audio/train/a.flac"


def test_filtering_keeps_every_other_key_and_absolute_paths(tmp_path):
    src = corpus_manifest(tmp_path)
    lines = bench_accent.without_accent(src, tmp_path / "accent" / "base.jsonl", "scottish")
    fourth = json.loads(lines[2])
    assert fourth == {
        "audio_filepath": "/data/elsewhere/d.flac",
        "duration": 1.5,
        "text": "four",
        "speaker": "v3",
        "accent": "rp",
        "engine": "espeak",
        "snr_db": None,
    }
    assert list(json.loads(lines[0])) == list(json.loads(src.read_text().splitlines()[0]))


def test_an_existing_filtered_manifest_is_verified_not_rewritten(tmp_path):
    src = corpus_manifest(tmp_path)
    dst = tmp_path / "accent" / "base.jsonl"
    assert bench_accent.ensure_without_accent(src, dst, "scottish") == "created"
    assert bench_accent.ensure_without_accent(src, dst, "scottish") == "verified"


def test_a_filtered_manifest_that_differs_is_an_error(tmp_path):
    src = corpus_manifest(tmp_path)
    dst = tmp_path / "accent" / "base.jsonl"
    bench_accent.ensure_without_accent(src, dst, "scottish")
    dst.write_text(dst.read_text().replace('"three"', '"tree"'))
    with pytest.raises(bench_accent.BenchError, match="differs"):
        bench_accent.ensure_without_accent(src, dst, "scottish")


def test_adapt_set_is_the_prefix_that_fits_the_minutes():
    utts = utterances([200.0, 250.0, 100.0, 60.0, 5.0])
    kept = bench_accent.first_minutes(utts, 10)  # 600 s
    assert kept == utts[:3]  # 550 s; the fourth would make 610 s


def test_adapt_set_stops_at_the_first_utterance_that_does_not_fit():
    utts = utterances([500.0, 200.0, 50.0])
    assert bench_accent.first_minutes(utts, 10) == utts[:1]  # no skipping ahead to the 50 s one


def test_adapt_set_may_fill_the_minutes_exactly():
    utts = utterances([300.0, 300.0, 1.0])
    assert bench_accent.first_minutes(utts, 10) == utts[:2]


def test_disjoint_voices_are_listed():
    voices = bench_accent.check_disjoint_voices(utterances([1.0] * 3, "a"), utterances([1.0], "t"))
    assert voices == {"adapt": ["a0", "a1"], "test": ["t0"]}


def test_a_voice_in_both_adapt_and_test_is_an_error():
    adapt, test = utterances([1.0, 1.0]), utterances([1.0])  # voices v0 v1, and v0
    with pytest.raises(bench_accent.BenchError, match="share voices: v0$"):
        bench_accent.check_disjoint_voices(adapt, test)


def test_an_utterance_without_a_speaker_is_an_error():
    test = [Utterance(Path("/a/x.flac"), 1.0, "x", {})]
    with pytest.raises(bench_accent.BenchError, match="without a speaker"):
        bench_accent.check_disjoint_voices(utterances([1.0]), test)


def test_relative_change_is_negative_for_a_reduction():
    assert bench_accent.relative_change(0.8, 0.4) == pytest.approx(-0.5)
    assert bench_accent.relative_change(0.0, 0.1) is None
