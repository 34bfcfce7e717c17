"""stt.streaming and `stt transcribe --stream`: cached-state streaming equals the offline model.

The models are tiny, causal and randomly initialised (the junk they emit is deterministic, which
is all exactness needs); the head's space bias is raised so the junk has words. The audio is
noise with a few tones: speech-like enough for MFCC, no external tools needed.
"""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

import stt.streaming as streaming_module
from stt.audio import SAMPLE_RATE, load_audio
from stt.checkpoint import model_state, save_checkpoint
from stt.cli import main
from stt.decoding import BeamSearchDecoder, DecoderConfig, GreedyDecoder
from stt.errors import AudioError, ConfigError
from stt.features import FeatureConfig
from stt.model import ModelConfig, WaveNetCTC
from stt.streaming import (
    StreamingEncoder,
    StreamingTranscriber,
    file_chunks,
    load_streaming_model,
    pcm_chunks,
)
from stt.text import Vocabulary

VOCAB = Vocabulary.default()
FRAME = 0.02  # seconds per output frame (stride 2)


pytestmark = pytest.mark.usefixtures("one_thread")


def causal_model(seed: int = 0, **overrides) -> WaveNetCTC:
    torch.manual_seed(seed)
    config = dict(
        channels=16, kernel_size=3, dilations=[1, 2, 4], stacks=2, stride=2, norm="layer",
        head_channels=16, dropout=0.0, causal=True, features=FeatureConfig(normalize="running"),
    )  # fmt: skip
    model = WaveNetCTC(ModelConfig(**{**config, **overrides}), len(VOCAB)).eval()
    with torch.no_grad():
        model.head.out.weight.mul_(8.0)  # peakier junk: a clear best label per frame
    return model


def audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with tones switching every 0.3 s: MFCC frames that vary like speech."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    piece = np.arange(n) // 4800
    freq = rng.uniform(150, 3000, size=piece[-1] + 1)[piece]
    on = (rng.random(piece[-1] + 1) > 0.3)[piece]
    tone = 0.3 * np.sin(2 * np.pi * freq * t) * on
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def offline(model: WaveNetCTC, waveform: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(waveform)[None])[0][0].numpy()


def wordy(model: WaveNetCTC, waveform: np.ndarray, space_share: float = 0.25) -> WaveNetCTC:
    """Raise the space's bias until it is the best label on ``space_share`` of the frames (and
    clear of a tie on the frame at that quantile: round-off must not flip its best label)."""
    lp = offline(model, waveform)
    others = np.delete(lp, 1, axis=1).max(axis=1)
    with torch.no_grad():
        model.head.out.bias[1] += float(np.quantile(others - lp[:, 1], space_share)) + 0.01
    return model


def stream(encoder: StreamingEncoder, waveform: np.ndarray, chunk: int) -> np.ndarray:
    parts = [encoder.accept(waveform[i : i + chunk]) for i in range(0, len(waveform), chunk)]
    parts.append(encoder.finish())
    return torch.cat(parts).numpy()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return audio(3.0)


@pytest.fixture(scope="module")
def model(speech) -> WaveNetCTC:
    return wordy(causal_model(), speech)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model):
    return save_checkpoint(tmp_path_factory.mktemp("m") / "model.pt", model_state(model, VOCAB))


# ---------------------------------------------------------------------------------------------
# Exactness of the encoder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [160, 320, 1234, 1600, 3200, 10**6], ids=lambda c: f"{c}")
def test_streamed_log_probs_equal_the_offline_forward_pass(model, speech, chunk):
    # 160 samples = 1 feature frame; 320 = 20 ms; 1234: chunks that split frames; 1600 and
    # 3200 = 100 and 200 ms; 10**6: the whole audio at once.
    expected = offline(model, speech)
    got = stream(StreamingEncoder(model), speech, chunk)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_one_sample_chunks_equal_the_offline_forward_pass(model):
    waveform = audio(0.25, seed=3)
    got = stream(StreamingEncoder(model), waveform, 1)
    np.testing.assert_allclose(got, offline(model, waveform), atol=1e-4, rtol=0)


def test_streams_accepted_together_equal_each_stream_alone(model):
    # Five streams at different points (one starts late, one with odd chunk sizes, one of a
    # second model), fed together round by round: the batched path groups streams of one model
    # completing the same number of frames; each stream's log-probs equal its own solo run.
    other = wordy(causal_model(seed=1), audio(3.0))
    waves = [audio(2.0, seed=s) for s in range(5)]
    models = [model, model, model, other, model]
    sizes = [1600, 1600, 1234, 1600, 320]
    starts = [0, 0, 0, 0, 3]  # the last stream joins at round 3
    together = [StreamingEncoder(m) for m in models]
    got = [[] for _ in waves]
    for r in range(110):  # the 320-sample stream needs 100 rounds
        live = [
            i for i in range(5) if r >= starts[i] and (r - starts[i]) * sizes[i] < len(waves[i])
        ]
        chunks = [waves[i][(r - starts[i]) * sizes[i] :][: sizes[i]] for i in live]
        out = StreamingEncoder.accept_together([together[i] for i in live], chunks)
        for i, lp in zip(live, out, strict=True):
            got[i].append(lp)
    for i, enc in enumerate(together):
        solo = stream(StreamingEncoder(models[i]), waves[i], sizes[i])
        both = torch.cat([*got[i], enc.finish()]).numpy()
        np.testing.assert_allclose(both, solo, atol=1e-5, rtol=0)


def test_transcribers_accepted_together_give_the_partials_of_each_alone(model, speech):
    alone = [StreamingTranscriber(model, VOCAB) for _ in range(3)]
    together = [StreamingTranscriber(model, VOCAB) for _ in range(3)]
    waves = [speech, audio(3.0, seed=4), speech[::-1].copy()]

    def same(a, b) -> bool:  # a batch's matrix products round differently in the last bits
        return [(w.word, w.start, w.end) for w in a.words] == [
            (w.word, w.start, w.end) for w in b.words
        ] and [w.confidence for w in a.words] == pytest.approx(
            [w.confidence for w in b.words], abs=1e-5
        )

    for i in range(0, len(speech), 1600):
        chunks = [w[i : i + 1600] for w in waves]
        expected = [t.accept(c) for t, c in zip(alone, chunks, strict=True)]
        got = StreamingTranscriber.accept_together(together, chunks)
        assert [(p.text, p.seconds, p.changed) for p in got] == [
            (p.text, p.seconds, p.changed) for p in expected
        ]
        assert all(same(a, b) for a, b in zip(got, expected, strict=True))
    finals = [t.finish() for t in together], [t.finish() for t in alone]
    assert [f.text for f in finals[0]] == [f.text for f in finals[1]]
    assert all(same(a, b) for a, b in zip(*finals, strict=True))


def test_an_encoder_like_another_shares_its_weights_but_not_its_state(model, speech):
    first = StreamingEncoder(model)
    first.accept(speech[:8000])  # mid-stream: the copy must not inherit its caches
    second = StreamingEncoder(model, like=first)
    assert second._skip_w is first._skip_w and second._blocks[0].weight is first._blocks[0].weight
    assert second.samples_seen == 0 and not second._blocks[0].cache.abs().sum()
    np.testing.assert_allclose(stream(second, speech, 1600), offline(model, speech), atol=1e-4)
    with pytest.raises(ValueError, match="same model"):
        StreamingEncoder(causal_model(seed=2), like=first)


def test_a_bad_chunk_among_streams_accepted_together_changes_no_stream(model, speech):
    together = [StreamingTranscriber(model, VOCAB) for _ in range(2)]
    fresh = StreamingTranscriber(model, VOCAB)
    bad = np.full(1600, np.nan, np.float32)
    with pytest.raises(AudioError, match="NaN or infinite"):
        StreamingTranscriber.accept_together(together, [speech[:1600], bad])
    assert together[0].encoder.samples_seen == together[1].encoder.samples_seen == 0
    assert together[0].accept(speech) == fresh.accept(speech)
    with pytest.raises(ValueError, match="at most once"):
        StreamingEncoder.accept_together([together[1].encoder] * 2, [speech[:160]] * 2)


@pytest.mark.parametrize("samples", [1, 300, 512, 671, 672, 832, 3333, 16160])
def test_end_of_stream_gives_the_offline_frames_for_any_length(model, samples):
    # Below 512 samples the offline MFCC pads to one frame; odd feature-frame counts end in a
    # half-filled stride group that the projection's right padding completes.
    waveform = audio(1.1, seed=samples)[:samples]
    got = stream(StreamingEncoder(model), waveform, 500)
    expected = offline(model, waveform)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "overrides",
    [{"norm": "batch"}, {"norm": "none"}, {"stride": 1}, {"stride": 3},
     {"features": FeatureConfig(normalize="none")}],
    ids=["batch-norm", "no-norm", "stride-1", "stride-3", "unnormalised-features"],
)  # fmt: skip
def test_other_causal_geometries_stream_exactly(overrides):
    model = causal_model(**overrides)
    with torch.no_grad():  # non-trivial batch-norm statistics
        for module in model.modules():
            if hasattr(module, "running_mean"):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    waveform = audio(1.5, seed=1)
    got = stream(StreamingEncoder(model), waveform, 700)
    np.testing.assert_allclose(got, offline(model, waveform), atol=1e-4, rtol=0)


def test_int16_pcm_is_scaled_like_float_audio(model, speech):
    pcm = np.round(np.clip(speech, -1, 1 - 1 / 32768) * 32768).astype(np.int16)
    got = stream(StreamingEncoder(model), pcm, 1600)
    np.testing.assert_allclose(got, offline(model, pcm / np.float32(32768)), atol=1e-4, rtol=0)


def test_finish_resets_so_the_next_utterance_starts_fresh(model, speech):
    encoder = StreamingEncoder(model)
    stream(encoder, audio(2.0, seed=7), 1600)
    np.testing.assert_array_equal(
        stream(encoder, speech, 1600), stream(StreamingEncoder(model), speech, 1600)
    )


def test_reset_mid_utterance_drops_it(model, speech):
    encoder = StreamingEncoder(model)
    encoder.accept(audio(1.0, seed=5)[:12345])
    encoder.reset()
    np.testing.assert_array_equal(
        stream(encoder, speech, 1600), stream(StreamingEncoder(model), speech, 1600)
    )


def test_state_does_not_grow_with_the_length_of_the_stream(model):
    encoder = StreamingEncoder(model)
    waveform = audio(20.0, seed=2)
    sizes = []
    for i in range(0, len(waveform), 1600):
        encoder.accept(waveform[i : i + 1600])
        if i // 1600 in (20, 199):  # after 2 s and after 20 s
            sizes.append(encoder.state_sizes())
    assert sizes[0] == sizes[1]
    assert sum(sizes[1].values()) < 2000  # the caches of a 16-channel model, a few frames each


def test_non_causal_model_is_refused():
    with pytest.raises(ConfigError, match="is not causal; streaming needs a causal model"):
        StreamingEncoder(causal_model(causal=False))


def test_model_with_utterance_normalised_features_is_refused():
    with pytest.raises(ConfigError, match="features.normalize=running"):
        StreamingEncoder(causal_model(features=FeatureConfig(normalize="utterance")))


# ---------------------------------------------------------------------------------------------
# Partial and final transcripts
# ---------------------------------------------------------------------------------------------


def test_partial_text_only_grows_and_ends_as_the_offline_greedy_transcript(model, speech):
    expected = GreedyDecoder(VOCAB).decode(offline(model, speech), FRAME)
    assert len(expected.words) >= 5  # the tilted junk has words
    transcriber = StreamingTranscriber(model, VOCAB)
    previous = ""
    for i in range(0, len(speech), 320):
        partial = transcriber.accept(speech[i : i + 320])
        assert partial.text.startswith(previous)
        assert partial.changed == (partial.text != previous)
        previous = partial.text
    assert expected.text.startswith(previous)
    final = transcriber.finish()
    assert final.text == expected.text
    assert [(w.word, w.start, w.end) for w in final.words] == [
        (w.word, w.start, w.end) for w in expected.words
    ]
    np.testing.assert_allclose(
        [w.confidence for w in final.words], [w.confidence for w in expected.words], atol=1e-5
    )
    assert final.duration == pytest.approx(len(speech) / SAMPLE_RATE)


def test_partial_words_carry_timestamps_as_they_are_spoken(model, speech):
    transcriber = StreamingTranscriber(model, VOCAB)
    half = transcriber.accept(speech[: len(speech) // 2])
    assert half.seconds == pytest.approx(len(speech) / 2 / SAMPLE_RATE)
    assert half.words and all(0 <= w.start < w.end <= half.seconds for w in half.words)
    assert half.text == " ".join(w.word for w in half.words)


def test_transcriber_reset_equals_a_fresh_transcriber(model, speech):
    transcriber = StreamingTranscriber(model, VOCAB)
    transcriber.accept(audio(1.0, seed=9))
    transcriber.reset()
    fresh = StreamingTranscriber(model, VOCAB)
    for i in range(0, len(speech), 1600):
        assert transcriber.accept(speech[i : i + 1600]) == fresh.accept(speech[i : i + 1600])
    assert transcriber.finish() == fresh.finish()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_chunk_is_refused_and_the_stream_goes_on(model, speech, bad):
    transcriber = StreamingTranscriber(model, VOCAB)
    fresh = StreamingTranscriber(model, VOCAB)
    half = len(speech) // 2
    assert transcriber.accept(speech[:half]) == fresh.accept(speech[:half])
    chunk = np.zeros(1600, np.float32)
    chunk[10] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        transcriber.accept(chunk)
    assert transcriber.accept(speech[half:]) == fresh.accept(speech[half:])
    assert transcriber.finish() == fresh.finish()
    # and the next utterance on the same object is unharmed
    assert transcriber.accept(speech) == fresh.accept(speech)
    assert transcriber.finish() == fresh.finish()


def test_a_stereo_chunk_is_an_stt_error_naming_the_shape(model):
    transcriber = StreamingTranscriber(model, VOCAB)
    with pytest.raises(AudioError, match=r"1-D.*\(1600, 2\)"):
        transcriber.accept(np.zeros((1600, 2), np.float32))


def test_greedy_transcriber_keeps_no_log_probs_beyond_the_open_word(model):
    transcriber = StreamingTranscriber(model, VOCAB)
    waveform = audio(20.0, seed=4)
    open_frames = []
    for i in range(0, len(waveform), 1600):
        transcriber.accept(waveform[i : i + 1600])
        sizes = transcriber.state_sizes()
        assert sizes["pending_frames"] == 0
        open_frames.append(sizes["open_word_frames"])
    assert max(open_frames) < 100  # a word's frames, not the stream's 1000


def test_beam_search_final_transcript_equals_offline_beam_search(model, speech):
    config = DecoderConfig(kind="beam", beam_width=8)
    with BeamSearchDecoder(VOCAB, config, workers=1) as beam:
        expected = beam.decode(offline(model, speech), FRAME)
    with StreamingTranscriber(model, VOCAB, config, min_pending_seconds=1e9) as transcriber:
        for i in range(0, len(speech), 1600):
            transcriber.accept(speech[i : i + 1600])
        final = transcriber.finish()
    assert final.text == expected.text
    assert [(w.word, w.start, w.end) for w in final.words] == [
        (w.word, w.start, w.end) for w in expected.words
    ]


def test_beam_search_log_probs_are_bounded_on_a_long_stream(model):
    config = DecoderConfig(kind="beam", beam_width=4)
    waveform = audio(12.0, seed=6)
    with StreamingTranscriber(
        model, VOCAB, config, min_pending_seconds=2.0, max_pending_seconds=4.0
    ) as transcriber:
        pending = []
        for i in range(0, len(waveform), 1600):
            transcriber.accept(waveform[i : i + 1600])
            pending.append(transcriber.state_sizes()["pending_frames"])
        assert transcriber.finish().text
    assert max(pending) <= 4.0 / FRAME + 5  # at most max_pending_seconds (+ one chunk)


def test_streams_accepted_together_leave_the_beam_pieces_to_settle(model):
    # accept_together never beam-decodes (it would hold up the batch); settle() when due does
    # the same pieces as accept() would have, so the finals and the memory bound are the same.
    config = DecoderConfig(kind="beam", beam_width=4)
    waveform = audio(12.0, seed=6)
    kwargs = dict(min_pending_seconds=2.0, max_pending_seconds=4.0)
    with (
        StreamingTranscriber(model, VOCAB, config, **kwargs) as alone,
        StreamingTranscriber(model, VOCAB, config, **kwargs) as together,
    ):
        pending, deferred = [], 0
        for i in range(0, len(waveform), 1600):
            alone.accept(waveform[i : i + 1600])
            StreamingTranscriber.accept_together([together], [waveform[i : i + 1600]])
            if together.settle_due:
                deferred += 1
                together.settle()
            pending.append(together.state_sizes()["pending_frames"])
        assert deferred > 0
        assert max(pending) <= 4.0 / FRAME + 5
        assert together.finish().text == alone.finish().text


# ---------------------------------------------------------------------------------------------
# Audio sources and loading
# ---------------------------------------------------------------------------------------------


class Trickle(io.RawIOBase):
    """A pipe that hands out at most 3 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = self.data[: min(n, 3)], self.data[min(n, 3) :]
        return out


def test_pcm_chunks_reassemble_samples_split_across_reads():
    pcm = (np.arange(1001, dtype=np.int16) - 500) * 60
    chunks = list(pcm_chunks(Trickle(pcm.tobytes()), 100))
    np.testing.assert_array_equal(np.concatenate(chunks), pcm / np.float32(32768))
    assert all(len(c) <= 100 for c in chunks)


def test_file_chunks_of_a_44k_file_match_the_whole_file_resampled(tmp_path):
    waveform = audio(2.0, seed=8)
    path = tmp_path / "a.wav"
    import torchaudio.functional as AF

    native = AF.resample(torch.from_numpy(waveform), 160, 441).numpy()
    sf.write(path, native, 44100, subtype="FLOAT")
    chunks = list(file_chunks(path, 1600))
    np.testing.assert_allclose(np.concatenate(chunks), load_audio(path), atol=1e-4)


def test_missing_streaming_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("STT_STREAMING_MODEL", str(tmp_path / "none.pt"))
    with pytest.raises(ConfigError, match="no streaming model at .*none.pt: pass --model"):
        load_streaming_model()


def test_streaming_model_loads_by_default_when_present(monkeypatch, checkpoint, speech):
    monkeypatch.setenv("STT_STREAMING_MODEL", str(checkpoint))
    with load_streaming_model(decoder={"kind": "greedy"}) as transcriber:
        transcriber.accept(speech)
        assert transcriber.finish().text


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def test_cli_stream_prints_partials_then_the_final_greedy_text(checkpoint, model, speech,
                                                                tmp_path, capsys):  # fmt: skip
    path = tmp_path / "speech.flac"
    sf.write(path, speech, SAMPLE_RATE, subtype="PCM_24")
    expected = GreedyDecoder(VOCAB).decode(offline(model, load_audio(path)), FRAME).text
    args = ["transcribe", str(path), "--stream", "--model", str(checkpoint), "--chunk-ms", "20"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == expected
    partials = lines[:-1]
    assert len(partials) >= 3 and len(set(partials)) == len(partials)  # one line per change
    assert all(expected.startswith(p) for p in partials)


def test_cli_stream_realtime_paces_the_file_to_the_wall_clock(
    checkpoint, model, speech, tmp_path, monkeypatch, capsys
):
    path = tmp_path / "speech.wav"
    sf.write(path, speech, SAMPLE_RATE)
    expected = GreedyDecoder(VOCAB).decode(offline(model, load_audio(path)), FRAME).text
    waits: list[float] = []  # the sleeps asked for, not slept: the test stays fast
    monkeypatch.setattr(streaming_module.time, "sleep", waits.append)
    started = time.monotonic()
    args = ["transcribe", str(path), "--stream", "--realtime", "--model", str(checkpoint)]
    assert main(args) == 0
    elapsed = time.monotonic() - started
    assert capsys.readouterr().out.splitlines()[-1] == expected
    duration = len(speech) / SAMPLE_RATE
    assert len(waits) >= round(duration / 0.1) - 1  # 100 ms chunks, each held back
    # The last chunk is released when its audio would have ended: the file's duration after
    # the start, less the time the run itself took.
    assert duration - elapsed - 0.01 <= max(waits) <= duration


def test_cli_stream_reads_raw_pcm_on_stdin(checkpoint, model, speech, monkeypatch, capsys):
    pcm = np.round(np.clip(speech, -1, 1 - 1 / 32768) * 32768).astype(np.int16)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm.tobytes())))
    expected = GreedyDecoder(VOCAB).decode(offline(model, pcm / np.float32(32768)), FRAME).text
    assert main(["transcribe", "-", "--stream", "--model", str(checkpoint)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == expected


def test_cli_stream_writes_the_final_transcript_files(checkpoint, speech, tmp_path, capsys):
    path = tmp_path / "talk.wav"
    sf.write(path, speech, SAMPLE_RATE)
    out = tmp_path / "out"
    args = ["transcribe", str(path), "--stream", "--model", str(checkpoint), "--format", "all",
            "--output-dir", str(out)]  # fmt: skip
    assert main(args) == 0
    final = capsys.readouterr().out.splitlines()[-1]
    assert " ".join((out / "talk.txt").read_text().split()) == final
    assert "-->" in (out / "talk.srt").read_text()


def test_cli_stream_refuses_a_non_causal_model_in_one_line(tmp_path, speech, capsys):
    ckpt = save_checkpoint(tmp_path / "offline.pt", model_state(causal_model(causal=False), VOCAB))
    path = tmp_path / "a.wav"
    sf.write(path, speech, SAMPLE_RATE)
    assert main(["transcribe", str(path), "--stream", "--model", str(ckpt)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"stt: error: {ckpt} is not causal; streaming needs a causal model (model=causal)"
    ]


def test_cli_stream_without_a_streaming_model_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STT_STREAMING_MODEL", str(tmp_path / "missing.pt"))
    path = tmp_path / "a.wav"
    sf.write(path, audio(0.5), SAMPLE_RATE)
    assert main(["transcribe", str(path), "--stream"]) == 1
    err = capsys.readouterr().err
    assert "no streaming model at" in err and "--model" in err


def test_cli_stream_reports_an_unreadable_file_in_one_line(checkpoint, tmp_path, capsys):
    path = tmp_path / "bad.wav"
    path.write_text("not audio")
    assert main(["transcribe", str(path), "--stream", "--model", str(checkpoint)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"stt: error: {path}: not an audio file soundfile can decode"
    )


# ---------------------------------------------------------------------------------------------
# The silence gate, live
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level_dbfs", [None, -80.0], ids=["digital-silence", "noise-at-80dBFS"])
def test_a_live_stream_of_no_speech_gives_no_words(model, level_dbfs):
    rng = np.random.default_rng(5)
    n = 5 * SAMPLE_RATE
    quiet = np.zeros(n, np.float32)
    if level_dbfs is not None:
        quiet = (10 ** (level_dbfs / 20) * rng.standard_normal(n)).astype(np.float32)
    ungated = StreamingTranscriber(model, VOCAB, gate=False)
    gated = StreamingTranscriber(model, VOCAB)
    for i in range(0, n, 1600):
        ungated.accept(quiet[i : i + 1600])
        partial = gated.accept(quiet[i : i + 1600])
        assert partial.text == ""
    assert ungated.finish().text != ""  # the model does emit junk here: the gate removes it
    result = gated.finish()
    assert (result.text, result.words) == ("", [])


def test_the_live_gate_keeps_speech_and_equals_the_offline_gate_once_all_is_heard():
    from stt.silence import StreamGate, speech_frames

    frame = 320
    waveform = np.zeros(4 * SAMPLE_RATE, np.float32)
    waveform[SAMPLE_RATE : 2 * SAMPLE_RATE] = audio(1.0, seed=2)
    frames = len(waveform) // frame
    lp = np.full((frames, len(VOCAB)), -1.0, np.float32)  # a gated frame's blank becomes 0
    offline_keep = speech_frames(waveform, frame, frames)
    # Live: each frame is gated as soon as its own block is heard (no look-ahead).
    live, done = StreamGate(frame), 0
    kept = []
    for i in range(0, len(waveform), 1234):
        live.hear(waveform[i : i + 1234])
        ready = (i + 1234) // frame - done
        if ready > 0:
            kept.append(live.apply(lp[done : done + ready], done)[:, 0] != 0.0)
            done += ready
    live.finish()
    kept.append(live.apply(lp[done:], done)[:, 0] != 0.0)
    gated_live = ~np.concatenate(kept)
    speech_part = np.zeros(frames, bool)
    speech_part[SAMPLE_RATE // frame : 2 * SAMPLE_RATE // frame] = True
    assert gated_live[speech_part].sum() == 0  # no frame of speech is gated
    assert gated_live.sum() > 0.6 * frames  # most of the silence is
    # The live gate differs from the offline one only in the frames just before the onset.
    onset = SAMPLE_RATE // frame
    differ = np.flatnonzero(gated_live == offline_keep)
    assert set(differ) <= set(range(onset - 11, onset))
    # Heard whole before gating, it is the offline gate exactly.
    whole = StreamGate(frame)
    whole.hear(waveform)
    whole.finish()
    np.testing.assert_array_equal(whole.apply(lp, 0)[:, 0] != 0.0, offline_keep)
