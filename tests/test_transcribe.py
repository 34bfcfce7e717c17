"""`stt transcribe` and stt.transcribe: transcripts, long audio in windows, subtitle files, CLI.

The models are tiny and randomly initialised: they emit junk, but deterministic junk, which is
all that stitching, timestamps and file formats need. The head's bias is tilted towards the
space so the junk has many words.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import stt
import stt.transcribe as transcribe_module
from stt.audio import SAMPLE_RATE, load_audio
from stt.checkpoint import model_state, save_checkpoint
from stt.cli import main
from stt.decoding import BeamSearchDecoder, ChunkDecoder, DecoderConfig, GreedyDecoder, Word
from stt.errors import AudioError, ConfigError
from stt.features import FeatureConfig
from stt.inference import infer_log_probs, plan_windows
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary
from stt.transcribe import Transcriber, find_audio, load_model
from stt.transcript import Transcript, segment_words
from stt.writers import WRITERS, format_timestamp, output_stems, parse_formats
from tests.conftest import tone

VOCAB = Vocabulary.default()
FRAME = 0.02  # seconds per output frame of the stride-2 models below
requires_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, **overrides) -> WaveNetCTC:
    torch.manual_seed(seed)
    config = dict(
        channels=16, kernel_size=3, dilations=[1, 2, 4], stacks=2, stride=2, norm="layer",
        head_channels=16, dropout=0.0,
    )  # fmt: skip
    model = WaveNetCTC(ModelConfig(**{**config, **overrides}), len(VOCAB)).eval()
    with torch.no_grad():
        model.head.out.weight.mul_(8.0)  # peakier junk: a clear best label per frame
    return model


def make_wordy(model: WaveNetCTC, waveform: np.ndarray, space_share: float = 0.25) -> WaveNetCTC:
    """Raise the space's bias until it is the best label on ``space_share`` of the frames."""
    lp = infer_log_probs(model, [waveform])[0]
    others = np.delete(lp, 1, axis=1).max(axis=1)
    with torch.no_grad():
        model.head.out.bias[1] += float(np.quantile(others - lp[:, 1], space_share))
    return model


def speak(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, Path]:
    """Three espeak-ng utterances (22.05 kHz WAV) and their concatenation with pauses, as a
    22.05 kHz WAV and a 16 kHz FLAC (about 15 s each)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("no espeak-ng")
    out = tmp_path_factory.mktemp("speech")
    sentences = [
        "the quick brown fox jumps over the lazy dog",
        "a stitch in time saves nine, said the old tailor",
        "speech recognition turns spoken words into text",
    ]
    files = {f"u{i}": speak(s, out / f"u{i}.wav") for i, s in enumerate(sentences)}
    parts = []
    for path in files.values():
        data, rate = sf.read(path, dtype="float32")
        parts += [data, np.zeros(int(0.8 * rate), np.float32)]
    sf.write(out / "long.wav", np.concatenate(parts), rate)
    sf.write(out / "long.flac", load_audio(out / "long.wav"), SAMPLE_RATE)
    return {**files, "long.wav": out / "long.wav", "long.flac": out / "long.flac"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, speech) -> Path:
    model = make_wordy(tiny_model(), load_audio(speech["long.flac"]))
    path = tmp_path_factory.mktemp("model") / "model.pt"
    return save_checkpoint(path, model_state(model, VOCAB))


# ---------------------------------------------------------------------------------------------
# The Python API
# ---------------------------------------------------------------------------------------------


def test_transcribe_returns_text_words_and_segments(checkpoint, speech):
    with load_model(checkpoint) as transcriber:
        result = transcriber.transcribe(speech["u0"])
    assert isinstance(result, Transcript)
    assert result.audio_path == str(speech["u0"])
    assert result.duration == pytest.approx(sf.info(speech["u0"]).duration, abs=1e-3)
    assert result.words and result.text == " ".join(w.word for w in result.words)
    for w in result.words:
        assert 0 <= w.start < w.end <= result.duration and 0 <= w.confidence <= 1
    assert [w for s in result.segments for w in s.words] == result.words
    for s in result.segments:
        assert (s.start, s.end) == (s.words[0].start, s.words[-1].end)
        assert s.text == " ".join(w.word for w in s.words)
    data = result.to_dict()
    assert {"text", "segments", "words", "duration"} <= set(data)
    assert set(data["words"][0]) == {"word", "start", "end", "confidence"}


def test_a_waveform_transcribes_like_its_file(checkpoint, speech):
    with load_model(checkpoint) as transcriber:
        from_file = transcriber.transcribe(speech["u1"])
        from_array = transcriber.transcribe(load_audio(speech["u1"]))
    assert from_array.text == from_file.text and from_array.audio_path is None


def test_package_exports_load_model_lazily():
    code = "import sys, stt; assert 'torch' not in sys.modules; print(stt.load_model.__module__)"
    out = subprocess.run(
        [__import__("sys").executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "stt.transcribe"
    assert stt.load_model is load_model


def test_no_shipped_model_yet_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setattr(transcribe_module, "SHIPPED_MODEL", tmp_path / "none" / "model.pt")
    with pytest.raises(ConfigError, match="no shipped model yet: pass --model CHECKPOINT"):
        load_model(None)


def test_tuned_decoder_beside_the_checkpoint_is_used_and_explicit_settings_win(
    checkpoint, tmp_path
):
    shutil.copy(checkpoint, tmp_path / "model.pt")
    (tmp_path / "decoder.yaml").write_text("kind: beam\nbeam_width: 7\nlm: lm/lm.bin\n")
    # The LM path resolves relative to decoder.yaml (and here does not exist).
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "lm" / "lm.bin"))):
        load_model(tmp_path / "model.pt")
    with load_model(tmp_path / "model.pt", decoder={"lm": None}) as transcriber:
        assert transcriber.decoder_config.kind == "beam"
        assert transcriber.decoder_config.beam_width == 7
    with load_model(tmp_path / "model.pt", decoder=DecoderConfig()) as transcriber:
        assert transcriber.decoder_config.kind == "greedy"


@pytest.mark.parametrize("shape", [(16000, 2), (2, 16000), (1, 1, 16000)])
def test_a_multichannel_waveform_is_an_stt_error_not_a_bare_value_error(shape):
    with Transcriber(tiny_model(), VOCAB) as transcriber:
        with pytest.raises(AudioError, match="1-D"):
            transcriber.transcribe(np.zeros(shape, np.float32))


def test_a_torch_tensor_waveform_transcribes_like_the_numpy_one():
    waveform = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    with Transcriber(tiny_model(), VOCAB) as transcriber:
        from_numpy = transcriber.transcribe(waveform)
        from_torch = transcriber.transcribe(torch.from_numpy(waveform))
    assert from_torch.text == from_numpy.text and from_torch.duration == from_numpy.duration


def test_silence_is_an_empty_transcript_not_an_error(checkpoint, tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(SAMPLE_RATE * 2, np.float32), SAMPLE_RATE)
    model = tiny_model()
    with torch.no_grad():
        model.head.out.bias[0] = 100.0  # blank everywhere
    with Transcriber(model, VOCAB) as transcriber:
        result = transcriber.transcribe(tmp_path / "silence.wav")
    assert (result.text, result.words, result.segments) == ("", [], [])
    assert result.duration == pytest.approx(2.0)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.wav", None, "file not found"),
        ("empty.wav", b"", "file is empty (0 bytes)"),
        ("notes.wav", b"these are not samples", "not an audio file soundfile can decode"),
    ],
)
def test_bad_files_raise_a_one_line_audio_error(checkpoint, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with load_model(checkpoint) as transcriber:
        with pytest.raises(AudioError) as caught:
            transcriber.transcribe(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_transcribe_many_yields_failures_in_order_and_transcribes_the_rest(
    checkpoint, speech, tmp_path
):
    (tmp_path / "empty.flac").write_bytes(b"")
    paths = [speech["u0"], tmp_path / "empty.flac", speech["long.wav"], speech["u2"]]
    with load_model(checkpoint, window_seconds=6.0) as transcriber:
        results = list(transcriber.transcribe_many(paths, batch_size=2, progress=False))
        alone = transcriber.transcribe(speech["u2"])
    assert [p for p, _ in results] == paths
    assert isinstance(results[1][1], AudioError)
    assert all(isinstance(r, Transcript) for i, (_, r) in enumerate(results) if i != 1)
    assert results[3][1].text == alone.text  # batched with padding = alone
    assert results[2][1].duration > 6.0  # the long one went window by window


def test_segments_break_at_pauses_length_and_word_count():
    def words(*spans):
        return [Word(f"w{i}", a, b, 1.0) for i, (a, b) in enumerate(spans)]

    pause = segment_words(words((0, 0.3), (0.4, 0.6), (1.5, 1.8)), max_pause=0.6)
    assert [len(s.words) for s in pause] == [2, 1]
    assert (pause[0].start, pause[0].end, pause[0].text) == (0, 0.6, "w0 w1")
    long = segment_words(words(*[(i, i + 0.9) for i in range(10)]), max_seconds=7.0)
    assert [len(s.words) for s in long] == [7, 3]
    many = segment_words(words(*[(i * 0.1, i * 0.1 + 0.05) for i in range(30)]), max_words=12)
    assert [len(s.words) for s in many] == [12, 12, 6]
    assert segment_words([]) == []


# ---------------------------------------------------------------------------------------------
# Long audio: windows, stitching, bounded memory
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["long.flac", "long.wav"], ids=["16kHz-flac", "22kHz-wav"])
def test_long_audio_in_small_windows_equals_one_whole_pass(checkpoint, speech, source):
    transcriber = load_model(checkpoint, window_seconds=4.0)
    whole_lp = infer_log_probs(transcriber.model, [load_audio(speech[source])])[0]
    chunks = list(transcriber.iter_log_probs(speech[source]))
    assert len(chunks) >= 4  # really stitched
    stitched = np.concatenate(chunks)
    assert stitched.shape == whole_lp.shape
    np.testing.assert_allclose(stitched, whole_lp, atol=1e-4)
    from_array = list(transcriber.iter_log_probs(load_audio(speech[source])))
    assert len(from_array) == len(chunks)
    np.testing.assert_allclose(np.concatenate(from_array), whole_lp, atol=1e-4)

    whole = GreedyDecoder(VOCAB).decode(whole_lp, FRAME)
    result = transcriber.transcribe(speech[source])
    assert result.text == whole.text and len(result.words) > 20
    for got, want in zip(result.words, whole.words, strict=True):
        assert got.word == want.word
        assert abs(got.start - want.start) <= FRAME and abs(got.end - want.end) <= FRAME


@pytest.mark.parametrize(
    "config",
    [
        dict(stride=1, norm="batch"),
        dict(stride=4, kernel_size=5),
        dict(causal=True),
        dict(causal=True, features=FeatureConfig(normalize="running")),
    ],
    ids=["stride1-batchnorm", "stride4", "causal", "causal-running-norm"],
)
def test_stitching_is_exact_for_other_architectures(speech, config):
    model = tiny_model(seed=1, **config)
    transcriber = Transcriber(model, VOCAB, window_seconds=3.0)
    whole = infer_log_probs(model, [load_audio(speech["long.wav"])])[0]
    stitched = np.concatenate(list(transcriber.iter_log_probs(speech["long.wav"])))
    np.testing.assert_allclose(stitched, whole, atol=1e-4)


def test_windows_overlap_by_the_receptive_field_and_align_for_resampling():
    model = tiny_model(stride=2)
    plan = plan_windows(model, 60 * SAMPLE_RATE, window_seconds=10.0, align=320)
    context = (plan.left + plan.right) * plan.stride * 0.01
    assert context >= model.receptive_field_seconds - 0.03
    windows = list(plan.windows())
    assert windows[0].first == 0 and windows[-1].last == plan.frames
    assert all(a.last == b.first for a, b in zip(windows, windows[1:], strict=False))
    assert all(w.sample_start % 320 == 0 for w in windows)
    assert all(w.sample_stop - w.sample_start <= 10.03 * SAMPLE_RATE for w in windows)


def test_a_ten_minute_file_is_read_in_window_sized_blocks(checkpoint, tmp_path, monkeypatch):
    path = tmp_path / "ten_minutes.wav"
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as out:  # written in blocks too
        for i in range(600):
            second = np.zeros(SAMPLE_RATE, np.float32)
            second[: SAMPLE_RATE // 2] = tone(0.5, freq=200 + 10 * i)
            out.write(second)
    reads: list[int] = []
    real_read = sf.SoundFile.read

    def recording_read(self, frames=-1, *args, **kwargs):
        reads.append(frames)
        return real_read(self, frames, *args, **kwargs)

    def no_whole_file(*_args, **_kwargs):
        raise AssertionError("long audio must not be loaded whole")

    monkeypatch.setattr(sf.SoundFile, "read", recording_read)
    monkeypatch.setattr(transcribe_module, "load_audio", no_whole_file)
    with load_model(checkpoint, window_seconds=30.0) as transcriber:
        biggest = max(len(c) for c in transcriber.iter_log_probs(path))
        result = transcriber.transcribe(path)
    assert result.duration == pytest.approx(600.0)
    assert result.words and result.words[-1].end <= 600.0
    assert len(reads) >= 2 * 20 and 0 < max(reads) <= 30.1 * SAMPLE_RATE
    assert biggest <= 30 / FRAME


def make_frames(spec: str, peak: float = 0.99) -> np.ndarray:
    """``(frames, vocab)`` log-probs, one frame per character of ``spec`` (``_`` = blank)."""
    lp = np.full((len(spec), len(VOCAB)), (1 - peak) / (len(VOCAB) - 1))
    for t, c in enumerate(spec):
        lp[t, VOCAB.blank_id if c == "_" else VOCAB.tokens.index(c)] = peak
    return np.log(lp.astype(np.float32))


@pytest.mark.parametrize("kind", ["greedy", "beam"])
def test_chunked_decoding_cuts_only_between_words(kind):
    utterance = "__hh_ee_ll_lo_ _wwo_rr_ld_ " + "_" * 20 + "tt_h_e_ _e_nn_d_ " + "_" * 20
    lp = make_frames(utterance * 6)
    config = DecoderConfig(kind=kind)
    decoder = GreedyDecoder(VOCAB) if kind == "greedy" else BeamSearchDecoder(VOCAB, config, 1)
    whole = decoder.decode(lp, FRAME)
    chunked = ChunkDecoder(
        decoder, VOCAB, FRAME, beam=kind == "beam", min_pending_seconds=0.3,
        max_pending_seconds=10.0,
    )  # fmt: skip
    decoded = []
    chunked._decode = lambda part, real=chunked._decode: (decoded.append(len(part)), real(part))
    for start in range(0, len(lp), 17):  # windows that cut words in half
        chunked.feed(lp[start : start + 17])
    text, words = chunked.finish()
    assert len(decoded) > 3  # decoded piece by piece
    assert text == whole.text == " ".join(["hello world the end"] * 6)
    assert [(w.word, round(w.start, 6), round(w.end, 6)) for w in words] == [
        (w.word, round(w.start, 6), round(w.end, 6)) for w in whole.words
    ]
    decoder.close()


def test_chunked_decoding_holds_a_bounded_number_of_frames_without_word_breaks():
    lp = make_frames("ab" * 3000)  # one endless word
    chunked = ChunkDecoder(
        GreedyDecoder(VOCAB), VOCAB, FRAME, beam=False, min_pending_seconds=1.0,
        max_pending_seconds=4.0,
    )  # fmt: skip
    for start in range(0, len(lp), 50):
        chunked.feed(lp[start : start + 50])
        assert chunked._pending_frames <= 4.0 / FRAME + 50
    assert len("".join(chunked.finish()[0].split())) == 6000


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------

SRT_CUE = re.compile(
    r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)\n(.+)\n"
)
VTT_CUE = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)\n(.+)\n")


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    blocks = text.strip("\n").split("\n\n")
    cues = []
    for block in blocks:
        match = SRT_CUE.fullmatch(block + "\n")
        assert match, f"not an SRT cue: {block!r}"
        g = match.groups()
        cues.append((int(g[0]), seconds(*g[1:5]), seconds(*g[5:9]), g[9]))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    assert text.startswith("WEBVTT\n\n")
    cues = []
    for block in text[len("WEBVTT\n\n") :].strip("\n").split("\n\n"):
        match = VTT_CUE.fullmatch(block + "\n")
        assert match, f"not a WebVTT cue: {block!r}"
        g = match.groups()
        cues.append((seconds(*g[0:4]), seconds(*g[4:8]), g[8]))
    return cues


def check_cues(cues: list[tuple[float, float, str]], transcript: Transcript) -> None:
    assert len(cues) == len(transcript.segments) > 1
    for (start, end, text), segment in zip(cues, transcript.segments, strict=True):
        assert 0 <= start <= end <= transcript.duration + 1e-3
        assert start == pytest.approx(segment.start, abs=1e-3) and text == segment.text
    assert all(a[1] <= b[0] for a, b in zip(cues, cues[1:], strict=False))  # in order


@pytest.fixture(scope="module")
def long_transcript(checkpoint, speech) -> Transcript:
    with load_model(checkpoint, max_segment_words=5) as transcriber:
        return transcriber.transcribe(speech["long.flac"])


def test_srt_and_vtt_parse_back_to_the_segments(long_transcript, tmp_path):
    WRITERS["srt"](long_transcript, tmp_path / "a.srt")
    cues = parse_srt((tmp_path / "a.srt").read_text())
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    check_cues([c[1:] for c in cues], long_transcript)
    WRITERS["vtt"](long_transcript, tmp_path / "a.vtt")
    check_cues(parse_vtt((tmp_path / "a.vtt").read_text()), long_transcript)


def test_json_tsv_and_txt_hold_the_transcript(long_transcript, tmp_path):
    for fmt in ("json", "tsv", "txt"):
        WRITERS[fmt](long_transcript, tmp_path / f"a.{fmt}")
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["text"] == long_transcript.text
    assert [w["word"] for w in data["words"]] == [w.word for w in long_transcript.words]
    assert len(data["segments"]) == len(long_transcript.segments)
    assert {"word", "start", "end", "confidence"} == set(data["segments"][0]["words"][0])
    rows = (tmp_path / "a.tsv").read_text().splitlines()
    assert rows[0] == "start\tend\ttext"
    for row, segment in zip(rows[1:], long_transcript.segments, strict=True):
        start, end, text = row.split("\t")
        assert (int(start), int(end), text) == (
            round(1000 * segment.start),
            round(1000 * segment.end),
            segment.text,
        )
    lines = (tmp_path / "a.txt").read_text().splitlines()
    assert lines == [s.text for s in long_transcript.segments]


def test_writing_replaces_a_file_atomically(long_transcript, tmp_path):
    target = tmp_path / "a.srt"
    target.write_text("old")
    WRITERS["srt"](long_transcript, target)
    assert target.read_text().startswith("1\n") and list(tmp_path.iterdir()) == [target]


def test_timestamps_and_formats():
    assert format_timestamp(3725.4567) == "01:02:05,457"
    assert format_timestamp(0.0, ".") == "00:00:00.000"
    assert parse_formats("all") == ["txt", "json", "srt", "vtt", "tsv"]
    assert parse_formats("srt, vtt") == ["srt", "vtt"]
    with pytest.raises(ConfigError, match="unknown format 'doc'"):
        parse_formats("doc")


def test_output_names_stay_distinct(tmp_path):
    paths = [tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav", tmp_path / "y.flac"]
    assert output_stems(paths) == ["a/x", "b/x", "y"]
    assert output_stems([tmp_path / "x.wav", tmp_path / "x.flac"]) == ["x.wav", "x.flac"]


# ---------------------------------------------------------------------------------------------
# Finding inputs and the command line
# ---------------------------------------------------------------------------------------------


def test_inputs_can_be_folders_globs_and_manifests(tmp_path, write_tone):
    a = write_tone("d/a.wav")
    b = write_tone("d/sub/b.FLAC", format="FLAC")
    (tmp_path / "d" / "notes.txt").write_text("not audio")
    c = write_tone("c.ogg", format="OGG")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_filepath": "c.ogg", "duration": 0.5, "text": ""}\n{bad\n')
    files, problems = find_audio([tmp_path / "d", str(tmp_path / "*.ogg"), manifest])
    assert files == [a, b, c]  # c once, though named twice
    assert len(problems) == 1 and f"{manifest}:2" in problems[0]
    files, problems = find_audio([str(tmp_path / "nothing*.wav"), tmp_path / "missing.wav"])
    assert files == [tmp_path / "missing.wav"]  # reported as missing when transcribed
    assert problems == [f"{tmp_path / 'nothing*.wav'}: no files match this pattern"]


def test_cli_writes_all_five_formats_per_file(checkpoint, speech, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(speech["u0"], folder / "one.wav")
    shutil.copy(speech["u1"], folder / "sub" / "two.wav")
    out = tmp_path / "out"
    args = ["transcribe", str(folder), "--model", str(checkpoint), "--format", "all"]
    code = main([*args, "--output-dir", str(out), "--no-progress", "max_segment_words=4"])
    assert code == 0
    assert capsys.readouterr().out == ""
    for stem in ("one", "two"):
        assert sorted(p.name for p in out.glob(f"{stem}.*")) == [
            f"{stem}.{f}" for f in ("json", "srt", "tsv", "txt", "vtt")
        ]
    assert parse_srt((out / "one.srt").read_text())
    assert json.loads((out / "two.json").read_text())["words"]


def test_cli_takes_a_comma_separated_list_of_formats(checkpoint, speech, tmp_path):
    args = ["transcribe", str(speech["u0"]), "--model", str(checkpoint), "--format", "txt,srt"]
    assert main([*args, "--output-dir", str(tmp_path), "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u0.srt", "u0.txt"]


def test_cli_prints_the_transcript_when_writing_no_files(checkpoint, speech, capsys):
    assert main(["transcribe", str(speech["u0"]), "--model", str(checkpoint)]) == 0
    with load_model(checkpoint) as transcriber:
        expected = transcriber.transcribe(speech["u0"]).text
    assert capsys.readouterr().out == expected + "\n"


def test_cli_reports_a_bad_file_on_one_line_and_transcribes_the_others(
    checkpoint, speech, tmp_path, capsys
):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF but not really")
    code = main(
        ["transcribe", str(speech["u0"]), str(bad), str(speech["u1"]), "--model",
         str(checkpoint), "--no-progress"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(speech["u0"]), str(speech["u1"])]
    errors = [line for line in captured.err.splitlines() if line.startswith("stt: error:")]
    assert errors == [e for e in errors if str(bad) in e] and len(errors) == 1
    assert f"{bad}: not an audio file soundfile can decode" in errors[0]


def test_cli_beam_options_and_overrides(checkpoint, speech, capsys):
    code = main(
        ["transcribe", str(speech["u2"]), "--model", str(checkpoint), "--beam-width", "4",
         "--hotwords", "fox", "decoder.n_best=2"]
    )  # fmt: skip
    assert code == 0 and capsys.readouterr().out.strip()
    assert main(["transcribe", str(speech["u2"]), "--model", str(checkpoint), "bogus=1"]) == 1
    assert "bogus" in capsys.readouterr().err


def _quiet_noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(int(seconds * SAMPLE_RATE)).astype(np.float32)
    return noise * np.float32(10 ** (dbfs / 20))


@pytest.mark.parametrize(
    "kind", ["digital-silence", "noise-80dBFS", "antiphase-stereo", "hum-70dBFS"]
)
def test_no_speech_gives_no_words_even_from_a_wordy_model(checkpoint, tmp_path, kind):
    # The checkpoint's model emits words on any speech-level input; per-utterance normalisation
    # used to lift silence and faint noise to that level.
    if kind == "digital-silence":
        sf.write(tmp_path / "x.wav", np.zeros(SAMPLE_RATE * 3, np.float32), SAMPLE_RATE)
    elif kind == "noise-80dBFS":
        sf.write(tmp_path / "x.wav", _quiet_noise(3.0, -80.0), SAMPLE_RATE, subtype="FLOAT")
    elif kind == "antiphase-stereo":
        left = 0.5 * np.sin(np.linspace(0, 2000, SAMPLE_RATE * 3)).astype(np.float32)
        sf.write(tmp_path / "x.wav", np.stack([left, -left], axis=1), SAMPLE_RATE)
    else:  # mains-like hum far below speech level
        t = np.arange(SAMPLE_RATE * 3) / SAMPLE_RATE
        hum = (10 ** (-70 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 100 * t)).astype(np.float32)
        sf.write(tmp_path / "x.wav", hum, SAMPLE_RATE, subtype="FLOAT")
    with load_model(checkpoint) as transcriber:
        result = transcriber.transcribe(tmp_path / "x.wav")
    assert (result.text, result.words) == ("", [])


def test_the_gate_leaves_speech_alone_and_silences_only_the_pauses(checkpoint, speech):
    waveform = load_audio(speech["long.flac"])
    with load_model(checkpoint) as transcriber:
        gated = infer_log_probs(transcriber.model, [waveform])[0]
        raw = infer_log_probs(transcriber.model, [waveform], gate=False)[0]
    frame = round(FRAME * SAMPLE_RATE)
    loud = np.array([np.mean(waveform[k * frame : (k + 1) * frame] ** 2) > 1e-5
                     for k in range(len(raw))])  # fmt: skip
    changed = np.any(gated != raw, axis=1)
    assert not changed[loud].any()  # frames with speech in them are untouched
    assert changed.sum() > 0.8 / FRAME  # the 0.8 s pauses, minus their context, are gated
    assert np.all(gated[changed].argmax(axis=1) == 0)


def test_a_long_recording_has_no_words_in_its_silent_stretch(checkpoint, speech, tmp_path):
    # Windowed (long-audio) path: speech, 20 s of faint noise, speech.
    speech_part = load_audio(speech["u0"])
    wave = np.concatenate([speech_part, _quiet_noise(20.0, -75.0), speech_part])
    sf.write(tmp_path / "long.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    start, end = len(speech_part) / SAMPLE_RATE, len(speech_part) / SAMPLE_RATE + 20.0
    with load_model(checkpoint, window_seconds=4.0) as transcriber:
        result = transcriber.transcribe(tmp_path / "long.wav")
    assert result.words  # the speech still gives words
    inside = [w for w in result.words if w.start > start + 0.25 and w.end < end - 0.25]
    assert inside == []
