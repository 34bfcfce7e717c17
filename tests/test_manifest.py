import json

import pytest

from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.errors import ManifestError


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    manifest = write_lines(
        tmp_path / "sub" / "m.jsonl",
        ['{"audio_filepath": "audio/a.flac", "duration": 1.5, "text": "hello"}'],
    )
    [utt] = read_manifest(manifest)
    assert utt.audio_filepath == tmp_path / "sub" / "audio" / "a.flac"
    assert utt.duration == 1.5 and utt.text == "hello"


def test_extra_keys_are_kept_and_written_back(tmp_path):
    line = {"audio_filepath": "a.wav", "duration": 1.0, "text": "hi", "speaker": "s1", "x": [1]}
    manifest = write_lines(tmp_path / "m.jsonl", [json.dumps(line)])
    [utt] = read_manifest(manifest)
    assert utt.speaker == "s1" and utt.extra["x"] == [1]
    out = write_manifest(tmp_path / "copy.jsonl", [utt])
    assert json.loads(out.read_text()) == line


def test_paths_outside_the_manifest_folder_stay_absolute(tmp_path):
    utt = Utterance(tmp_path / "elsewhere" / "a.wav", 1.0, "x")
    out = write_manifest(tmp_path / "m" / "m.jsonl", [utt])
    assert json.loads(out.read_text())["audio_filepath"] == str(tmp_path / "elsewhere" / "a.wav")


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ('{"audio_filepath": "a.wav", "duration": 1.0', "not valid JSON"),
        ('["a.wav", 1.0, "text"]', "expected a JSON object"),
        ('{"audio_filepath": "a.wav", "text": "x"}', "missing key\\(s\\) duration"),
        ('{"audio_filepath": "a.wav", "duration": "long", "text": "x"}', "'duration' must be"),
        ('{"audio_filepath": "a.wav", "duration": -1, "text": "x"}', "'duration' must be finite"),
        ('{"audio_filepath": "", "duration": 1, "text": "x"}', "'audio_filepath' must be"),
        ('{"audio_filepath": "a.wav", "duration": 1, "text": 5}', "'text' must be a string"),
    ],
)
def test_a_bad_line_is_reported_with_its_line_number(tmp_path, bad_line, problem):
    good = '{"audio_filepath": "a.wav", "duration": 1.0, "text": "ok"}'
    manifest = write_lines(tmp_path / "m.jsonl", [good, "", bad_line])
    with pytest.raises(ManifestError, match=rf"m\.jsonl:3: {problem}"):
        read_manifest(manifest)


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl")


def test_write_is_atomic_and_keeps_no_temp_file(tmp_path):
    write_manifest(tmp_path / "m.jsonl", [Utterance(tmp_path / "a.wav", 1.0, "x")])
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]
