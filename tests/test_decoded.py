"""`stt data decode`: FLAC copies of compressed training audio, equal to what the source decodes
to."""

import subprocess
import sys

import numpy as np
import pytest

from stt.audio import load_audio
from stt.data.decoded import decode_manifest
from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.errors import AudioError, STTError


@pytest.fixture
def opus_manifest(tmp_path, write_tone):
    a = write_tone("src/a.opus", 1.0, format="OGG", subtype="OPUS")
    b = write_tone("src/b.flac", 0.5)
    utts = [Utterance(a, 1.0, "one", {"speaker": "x"}), Utterance(b, 0.5, "two", {"speaker": "y"})]
    return write_manifest(tmp_path / "src" / "train.jsonl", utts)


def test_compressed_audio_gets_flac_copies_with_the_same_samples(tmp_path, opus_manifest):
    out = decode_manifest(opus_manifest, tmp_path / "dec", workers=1, progress=False)
    rows = read_manifest(out)
    assert out == tmp_path / "dec" / "train.jsonl"
    assert rows[0].audio_filepath == tmp_path / "dec" / "audio" / "a.flac"
    assert rows[1].audio_filepath == tmp_path / "src" / "b.flac"  # lossless: left where it is
    assert [(r.text, r.duration, r.speaker) for r in rows] == [("one", 1.0, "x"), ("two", 0.5, "y")]
    original = load_audio(tmp_path / "src" / "a.opus")
    copy = load_audio(rows[0].audio_filepath)
    assert copy.shape == original.shape
    # 16-bit rounding only, except where Opus's decoder overshoots full scale and FLAC clips.
    inside = np.abs(original) < 1.0
    assert inside.mean() > 0.9
    assert np.max(np.abs(copy - original)[inside]) <= 1 / 32768 + 1e-6


def test_rerun_redoes_only_stale_copies(tmp_path, opus_manifest):
    decode_manifest(opus_manifest, tmp_path / "dec", workers=1, progress=False)
    copy = tmp_path / "dec" / "audio" / "a.flac"
    first = copy.stat().st_mtime_ns
    decode_manifest(opus_manifest, tmp_path / "dec", workers=1, progress=False)
    assert copy.stat().st_mtime_ns == first


def test_unreadable_source_is_named_and_nothing_half_written(tmp_path):
    bad = tmp_path / "bad.opus"
    bad.write_bytes(b"not audio at all" * 10)
    manifest = write_manifest(tmp_path / "m.jsonl", [Utterance(bad, 1.0, "x")])
    with pytest.raises(AudioError, match="bad.opus: not an audio file soundfile can decode"):
        decode_manifest(manifest, tmp_path / "dec", workers=1, progress=False)
    assert list((tmp_path / "dec" / "audio").iterdir()) == []
    assert not (tmp_path / "dec" / "m.jsonl").exists()


def test_clashing_names_are_refused(tmp_path, write_tone):
    a = write_tone("one/a.opus", 0.3, format="OGG", subtype="OPUS")
    b = write_tone("two/a.opus", 0.3, format="OGG", subtype="OPUS")
    manifest = write_manifest(
        tmp_path / "m.jsonl", [Utterance(a, 0.3, "x"), Utterance(b, 0.3, "y")]
    )
    with pytest.raises(STTError, match="would share a.flac"):
        decode_manifest(manifest, tmp_path / "dec", workers=1, progress=False)


def test_decode_command(tmp_path, opus_manifest):
    result = subprocess.run(
        [sys.executable, "-m", "stt", "data", "decode", str(opus_manifest), str(tmp_path / "d"),
         "--workers", "1", "--no-progress"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "audio" / "a.flac").exists()
