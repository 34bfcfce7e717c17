import json

from stt.data.validate import validate_manifest


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
    assert any("m.jsonl:3" in e and "unreadable" in e for e in report.audio_errors)
    assert set(report.oov_chars) == {"U", "C", "!"} and report.oov_lines == [4]
    assert len(report.line_errors) == 1 and "m.jsonl:5" in report.line_errors[0]
    text = report.format()
    assert "PROBLEMS FOUND" in text and "duration mismatches: 1" in text


def test_audio_checks_can_be_skipped(tmp_path, write_tone):
    path = make_manifest(
        tmp_path, write_tone, [{"audio_filepath": "gone.flac", "duration": 1.0, "text": "x"}]
    )
    assert validate_manifest(path, check_audio=False, progress=False).ok
