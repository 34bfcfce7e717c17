import json
import re
from unittest.mock import patch

import numpy as np
import pytest
import soundfile as sf

from stt.data.validate import decoded_seconds, validate_manifest
from stt.errors import AudioError
from tests.conftest import tone


def make_manifest(tmp_path, write_tone, rows):
    lines = []
    for row in rows:
        lines.append(row if isinstance(row, str) else json.dumps(row))
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_clean_manifest_passes_with_counts_hours_speakers_accents(tmp_path, write_tone):
    write_tone("a.flac", seconds=1.0)
    write_tone("b.flac", seconds=2.0)
    path = make_manifest(tmp_path, write_tone, [
        {"audio_filepath": "a.flac", "duration": 1.0, "text": "one", "speaker": "s1",
         "accent": "gb"},
        {"audio_filepath": "b.flac", "duration": 2.0, "text": "two", "speaker": "s2",
         "accent": "us"},
    ])  # fmt: skip
    report = validate_manifest(path, progress=False)
    assert report.ok
    assert report.utterances == 2 and report.seconds == 3.0
    assert set(report.speakers) == {"s1", "s2"} and set(report.accents) == {"gb", "us"}
    assert "OK" in report.format()


def test_every_kind_of_problem_is_found_and_reported(tmp_path, write_tone):
    write_tone("a.flac", seconds=1.0)
    (tmp_path / "junk.wav").write_text("not audio")
    path = make_manifest(tmp_path, write_tone, [
        {"audio_filepath": "a.flac", "duration": 1.5, "text": "duration is off"},
        {"audio_filepath": "gone.flac", "duration": 1.0, "text": "missing"},
        {"audio_filepath": "junk.wav", "duration": 1.0, "text": "unreadable"},
        {"audio_filepath": "a.flac", "duration": 1.0, "text": "Upper Case!"},
        '{"broken": ',
    ])  # fmt: skip
    report = validate_manifest(path, progress=False)
    assert not report.ok
    assert len(report.duration_mismatches) == 1 and "m.jsonl:1" in report.duration_mismatches[0]
    assert len(report.audio_errors) == 2
    assert any("m.jsonl:2" in e and "not found" in e for e in report.audio_errors)
    assert any(
        "m.jsonl:3" in e and "not an audio file soundfile can decode" in e
        for e in report.audio_errors
    )
    assert set(report.oov_chars) == {"U", "C", "!"} and report.oov_lines == [4]
    assert len(report.line_errors) == 1 and "m.jsonl:5" in report.line_errors[0]
    text = report.format()
    assert "PROBLEMS FOUND" in text and "duration mismatches: 1" in text


def test_audio_checks_can_be_skipped(tmp_path, write_tone):
    path = make_manifest(
        tmp_path, write_tone, [{"audio_filepath": "gone.flac", "duration": 1.0, "text": "x"}]
    )
    assert validate_manifest(path, check_audio=False, progress=False).ok


def test_nan_and_infinite_samples_are_reported_with_their_line(tmp_path):
    samples = tone(1.0)
    samples[100], samples[200] = np.nan, np.inf
    sf.write(str(tmp_path / "nan.wav"), samples, 16_000, subtype="FLOAT")
    path = make_manifest(
        tmp_path, None, [{"audio_filepath": "nan.wav", "duration": 1.0, "text": "x"}]
    )
    report = validate_manifest(path, progress=False)
    assert not report.ok
    [error] = report.audio_errors
    assert error.startswith(f"{path}:1: ") and "NaN or infinite" in error


def test_a_truncated_flac_is_reported_with_its_line(tmp_path, write_tone):
    whole = write_tone("whole.flac", seconds=2.0).read_bytes()
    (tmp_path / "cut.flac").write_bytes(whole[: len(whole) * 2 // 3])  # header says 2 s
    path = make_manifest(
        tmp_path, write_tone, [{"audio_filepath": "cut.flac", "duration": 2.0, "text": "x"}]
    )
    report = validate_manifest(path, progress=False)
    assert not report.ok
    [error] = report.audio_errors
    assert error.startswith(f"{path}:1: ") and "truncated" in error


def test_a_file_shorter_than_its_header_is_truncated():
    class Short:  # a stand-in decoder that stops half way through what its header promised
        samplerate, frames = 16_000, 32_000

        def __init__(self):
            self.blocks = [np.zeros((16_000, 1), np.float32)]

        def read(self, *args, **kwargs):
            return self.blocks.pop() if self.blocks else np.zeros((0, 1), np.float32)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    with patch("stt.data.validate.open_audio", lambda path: Short()):
        with pytest.raises(AudioError, match=r"truncated: the header says 2.00 s, only 1.00 s"):
            decoded_seconds("short.flac")


def test_a_non_utf8_line_is_reported_by_number_and_the_other_lines_still_checked(
    tmp_path, write_tone
):
    write_tone("a.flac", seconds=1.0)
    good = json.dumps({"audio_filepath": "a.flac", "duration": 1.0, "text": "fine"})
    latin1 = '{"audio_filepath": "a.flac", "duration": 1.0, "text": "caf\xe9"}'.encode("latin-1")
    path = tmp_path / "m.jsonl"
    path.write_bytes(good.encode() + b"\n" + latin1 + b"\n" + good.encode() + b"\n")
    report = validate_manifest(path, progress=False)
    assert report.utterances == 2 and report.seconds == 2.0
    [error] = report.line_errors
    assert error.startswith(f"{path}:2: not UTF-8 text")


def test_every_problem_line_names_the_manifest_and_the_line_number(tmp_path, write_tone):
    write_tone("a.flac", seconds=1.0)
    path = make_manifest(tmp_path, write_tone, [
        {"audio_filepath": "a.flac", "duration": 1.0, "text": "fine"},
        {"audio_filepath": "gone.flac", "duration": 1.0, "text": "missing"},
        {"audio_filepath": "a.flac", "duration": 1.0, "text": "Upper"},
        {"audio_filepath": "a.flac", "duration": 1.0, "text": ""},
        {"audio_filepath": "a.flac", "duration": 3.0, "text": "too long"},
        '{"broken": ',
    ])  # fmt: skip
    text = validate_manifest(path, progress=False).format()
    problems = [line.strip() for line in text.splitlines() if line.startswith("    ")]
    assert len(problems) == 5, text
    numbers = sorted(int(re.match(rf"{re.escape(str(path))}:(\d+): ", p)[1]) for p in problems)
    assert numbers == [2, 3, 4, 5, 6]
    assert f"{path}:2: {tmp_path / 'gone.flac'}: file not found" in problems
