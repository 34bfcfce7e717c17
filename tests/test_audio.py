from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stt.audio import SAMPLE_RATE, audio_duration, load_audio, write_flac
from stt.errors import AudioError


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("a.wav", {"subtype": "PCM_16"}),
        ("a.flac", {}),
        ("a.ogg", {"format": "OGG", "subtype": "VORBIS"}),
        ("a.mp3", {"format": "MP3"}),
    ],
)
def test_every_supported_format_loads_as_float32_mono_16k(write_tone, name, kwargs):
    audio = load_audio(write_tone(name, seconds=0.5, **kwargs))
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    # mp3/ogg encoders add a little padding; the length stays close to 0.5 s.
    assert abs(len(audio) - SAMPLE_RATE // 2) < 0.06 * SAMPLE_RATE


def test_integer_pcm_is_scaled_to_unit_range(tmp_path):
    path = tmp_path / "int.wav"
    sf.write(str(path), np.array([16384, -32768, 0], dtype=np.int16), SAMPLE_RATE)
    np.testing.assert_allclose(load_audio(path), [0.5, -1.0, 0.0])


def test_other_sample_rates_are_resampled_not_rejected(write_tone):
    audio = load_audio(write_tone("8k.wav", seconds=1.0, rate=8000))
    assert len(audio) == SAMPLE_RATE
    # The 440 Hz tone survives resampling: its spectrum peaks at 440 Hz.
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(audio) - 440) < 2


@pytest.mark.parametrize("rate", [11127, 15999, 44101, 7919])
def test_odd_rates_resample_in_bounded_memory(write_tone, rate):
    # Rates coprime with 16 kHz once built a kernel for the full ratio (gigabytes, tens of s).
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    audio = load_audio(write_tone(f"{rate}.wav", seconds=3.2, rate=rate))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert abs(len(audio) - 3.2 * SAMPLE_RATE) <= 0.001 * 3.2 * SAMPLE_RATE
    assert grown_mib < 200
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(audio) - 440) < 2


def test_a_rate_too_low_for_speech_is_one_clear_error(write_tone):
    path = write_tone("slow.wav", seconds=2.0, rate=400)
    with pytest.raises(AudioError, match=r"slow\.wav: sample rate 400 Hz is too low"):
        load_audio(path)


def test_channels_are_averaged(tmp_path):
    path = tmp_path / "stereo.wav"
    stereo = np.stack([np.full(1600, 0.5), np.full(1600, -0.1)], axis=1).astype(np.float32)
    sf.write(str(path), stereo, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), 0.2, atol=1e-6)


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file_error(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: file is empty"):
        load_audio(path)


def test_unreadable_file_error_is_one_line(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all\n" * 10)
    with pytest.raises(
        AudioError,
        match=r"notes\.wav: not an audio file soundfile can decode \(format not recognised\)",
    ) as info:
        load_audio(path)
    assert "\n" not in str(info.value)


def test_zero_sample_file_error(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"zero\.wav: audio has zero samples"):
        load_audio(path)


def test_non_finite_samples_error(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(str(path), np.array([0.1, np.nan, 0.2], np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: audio contains NaN"):
        load_audio(path)


def test_duration_comes_from_the_header(write_tone):
    assert audio_duration(write_tone("d.flac", seconds=1.25)) == pytest.approx(1.25)


def test_write_flac_is_atomic_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.flac"
    write_flac(target, np.zeros(1600, np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.flac"]
    assert len(load_audio(target)) == 1600


def test_directory_is_not_audio(tmp_path: Path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)
