"""stt.serve.stream_process: live streams run in a child process give what they give in this
one, errors stay with their stream, and a child that is gone fails calls instead of hanging."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stt.checkpoint import model_state, save_checkpoint
from stt.errors import AudioError, ConfigError
from stt.serve.stream_process import StreamProcess
from stt.streaming import StreamingTranscriber
from tests.test_streaming import VOCAB, audio, causal_model, wordy

CHUNK = 1600  # 100 ms, as the web page and the benchmark send


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return audio(2.0, seed=4)


@pytest.fixture(scope="module")
def model(speech):
    return wordy(causal_model(seed=2), speech)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model):
    return save_checkpoint(tmp_path_factory.mktemp("m") / "causal.pt", model_state(model, VOCAB))


@pytest.fixture(scope="module")
def streams(checkpoint):
    process = StreamProcess(checkpoint, beam_processes=1)
    yield process
    process.close()


def in_this_process(model, speech: np.ndarray) -> tuple[list[str], str]:
    local = StreamingTranscriber(model, VOCAB)
    texts = [local.accept(speech[i : i + CHUNK]).text for i in range(0, len(speech), CHUNK)]
    return texts, local.finish().text


def test_a_remote_stream_gives_the_partials_and_final_of_one_in_this_process(
    streams, model, speech
):
    remote = streams.open()
    texts, seconds = [], []
    for i in range(0, len(speech), CHUNK):
        partial = remote.accept(speech[i : i + CHUNK])
        texts.append(partial.text)
        seconds.append(remote.encoder.seconds)
    final = remote.finish()
    expected_texts, expected_final = in_this_process(model, speech)
    assert texts == expected_texts and final.text == expected_final
    assert final.text  # the test model says something, so equality means something
    assert seconds[-1] == pytest.approx(len(speech) / 16000)
    assert remote.encoder.seconds == 0.0  # finish starts the next utterance
    remote.close()


def test_streams_sent_together_run_as_batches_and_each_gets_its_own_partial(streams, model, speech):
    remotes = [streams.open() for _ in range(4)]
    before = streams.stats()

    async def run() -> list[list[str]]:
        texts: list[list[str]] = [[] for _ in remotes]
        for i in range(0, len(speech), CHUNK):
            partials = await asyncio.gather(
                *(streams.accept(r, speech[i : i + CHUNK]) for r in remotes)
            )
            for row, partial in zip(texts, partials, strict=True):
                row.append(partial.text)
        return texts

    texts = asyncio.run(run())
    expected, _ = in_this_process(model, speech)
    assert all(row == expected for row in texts)
    after = streams.stats()
    chunks = after["chunks"] - before["chunks"]
    assert chunks == 4 * len(expected)
    assert after["batches"] - before["batches"] < chunks  # some chunks shared a batch
    for remote in remotes:
        remote.close()


def test_a_bad_chunk_fails_its_own_stream_only_and_the_stream_goes_on(streams, speech):
    bad, good = streams.open(), streams.open()
    with pytest.raises(AudioError, match="NaN"):
        bad.accept(np.array([0.0, np.nan], np.float32))
    assert good.accept(speech[:CHUNK]).seconds == pytest.approx(0.1)
    assert bad.accept(speech[:CHUNK]).seconds == pytest.approx(0.1)  # nothing kept of the bad one
    bad.close(), good.close()


def test_a_model_that_cannot_stream_is_refused_in_the_server_process(tmp_path):
    offline = save_checkpoint(
        tmp_path / "offline.pt", model_state(causal_model(causal=False), VOCAB)
    )
    with pytest.raises(ConfigError, match="causal"):
        StreamProcess(offline, beam_processes=1)


def test_a_closed_or_dead_child_fails_calls_instead_of_waiting_forever(checkpoint, speech):
    closed = StreamProcess(checkpoint, beam_processes=1)
    closed.close()
    assert not closed._process.is_alive()
    with pytest.raises(RuntimeError, match="stopped"):
        closed.open()
    process = StreamProcess(checkpoint, beam_processes=1)
    remote = process.open()
    process._process.kill()  # the child crashes (out of memory, a signal)
    process._process.join()
    with pytest.raises(RuntimeError, match="stopped"):
        for _ in range(50):  # the reader notices the closed pipe within a call or two
            remote.accept(speech[:CHUNK])
    with pytest.raises(RuntimeError, match="stopped"):
        process.open()
    process.close()  # still safe


@pytest.mark.parametrize("where", ["stream_process=false", "stream_process=true"])
def test_stt_serve_with_a_model_that_cannot_stream_is_one_line_and_exit_1(where, tmp_path, capsys):
    from serve_fixtures import free_port

    from stt.cli import main

    offline = save_checkpoint(
        tmp_path / "offline.pt", model_state(causal_model(causal=False), VOCAB)
    )
    code = main(["serve", "--port", str(free_port()), "--streaming-model", str(offline), where])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("stt: error:") and "causal" in err[0]
    assert "offline.pt" in err[0]
