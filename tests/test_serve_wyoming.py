"""The Wyoming server (Home Assistant) over real loopback sockets, spoken to by the ``wyoming``
package's own client: describe, utterances at 16 kHz and 44.1 kHz stereo, silence, refused
languages and formats, errors, long and abandoned utterances. The shipped models where the
transcript matters, a stand-in engine where only the protocol does (fast, and able to fail)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from serve_fixtures import free_port, shipped_engine

pytest.importorskip("wyoming", reason="the serve extra is not installed: pip install -e .[serve]")

import jiwer  # noqa: E402
from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncClient, AsyncTcpClient, AsyncUnixClient  # noqa: E402
from wyoming.error import Error  # noqa: E402
from wyoming.event import Event  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.ping import Ping, Pong  # noqa: E402

from stt.audio import SAMPLE_RATE, load_audio, resample  # noqa: E402
from stt.errors import AudioError  # noqa: E402
from stt.serve.engine import Busy, EngineInfo, is_english  # noqa: E402
from stt.serve.wyoming import MAX_SECONDS, serve_wyoming  # noqa: E402
from stt.transcript import Transcript as SttTranscript  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "examples" / "07_libri_8629-261139-0000.flac"
SHORT = ROOT / "examples" / "04_fsdd_lucas.flac"
TIMEOUT = 30  # seconds, on every await that talks to the server
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Helpers: audio as the wire carries it, a server for the length of one scenario, a client
# ---------------------------------------------------------------------------------------------


def pcm16(waveform: np.ndarray) -> bytes:
    return (np.clip(waveform, -1, 1) * 32767).astype("<i2").tobytes()


def as_heard(waveform: np.ndarray) -> np.ndarray:
    """The waveform the server rebuilds from :func:`pcm16` (int16 / 32768)."""
    return np.frombuffer(pcm16(waveform), dtype="<i2").astype(np.float32) / 32768


def stereo_44k(waveform: np.ndarray) -> bytes:
    """16-bit interleaved stereo at 44.1 kHz: both channels the same."""
    wide = resample(waveform, SAMPLE_RATE, 44100)
    return pcm16(np.repeat(wide, 2))


async def send_utterance(
    client: AsyncClient, pcm: bytes, rate: int = SAMPLE_RATE, channels: int = 1, **transcribe
) -> None:
    """Transcribe, AudioStart, 100 ms chunks, AudioStop, as Home Assistant sends them."""
    await client.write_event(Transcribe(**transcribe).event())
    await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
    step = rate // 10 * 2 * channels
    for i in range(0, len(pcm), step):
        chunk = AudioChunk(rate=rate, width=2, channels=channels, audio=pcm[i : i + step])
        await client.write_event(chunk.event())
    await client.write_event(AudioStop().event())


async def answer(client: AsyncClient) -> Event:
    event = await client.read_event()  # the client's read_timeout bounds it
    assert event is not None, "the server closed the connection"
    return event


async def transcript_of(client: AsyncClient, pcm: bytes, **kw) -> str:
    await send_utterance(client, pcm, **kw)
    event = await answer(client)
    assert Transcript.is_type(event.type), event
    return Transcript.from_event(event).text


def tcp_client(port: int) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", port, connect_timeout=TIMEOUT, read_timeout=TIMEOUT)


async def wait_listening(port: int, server: asyncio.Task) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        if server.done():
            server.result()  # it failed to start: raise why
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def stop(server: asyncio.Task) -> None:
    """Cancel the server, then check it and every connection's task end (nothing hangs)."""
    server.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(server, TIMEOUT)
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        _, pending = await asyncio.wait(others, timeout=TIMEOUT)
        assert not pending, f"tasks left running after the server stopped: {pending}"


def with_server(scenario: Callable[[int], Awaitable[T]], engine=None) -> T:
    """Run ``scenario(port)`` against a Wyoming server on a free loopback port."""

    async def main() -> T:
        port = free_port()
        uri = f"tcp://127.0.0.1:{port}"
        server = asyncio.create_task(serve_wyoming(engine or shipped_engine(), uri))
        try:
            await wait_listening(port, server)
            return await asyncio.wait_for(scenario(port), TIMEOUT * 2)
        finally:
            await stop(server)

    return asyncio.run(main())


class FakeEngine:
    """Engine stand-in: answers ``replies`` in turn (a text, or an exception to raise) and keeps
    each waveform it was given."""

    info = EngineInfo(model_id="fake-model", model_path="fake.pt", decoder="greedy",
                      streaming_model_path=None, version="9.9")  # fmt: skip

    def __init__(self, *replies: str | Exception) -> None:
        self.replies = list(replies)
        self.heard: list[np.ndarray] = []

    async def transcribe(self, audio: np.ndarray, hotwords=None) -> SttTranscript:
        self.heard.append(audio)
        reply = self.replies.pop(0) if self.replies else "ok"
        if isinstance(reply, Exception):
            raise reply
        return SttTranscript(reply, [], [], len(audio) / SAMPLE_RATE)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(SPEECH)


@pytest.fixture(scope="module")
def speech_text(speech) -> str:
    """The offline model's transcript of exactly what the server hears."""
    return shipped_engine().transcriber.transcribe(as_heard(speech)).text


# ---------------------------------------------------------------------------------------------
# With the shipped models
# ---------------------------------------------------------------------------------------------


def test_describe_names_the_model_and_english():
    async def scenario(port: int) -> Info:
        async with tcp_client(port) as client:
            await client.write_event(Describe().event())
            event = await answer(client)
            assert Info.is_type(event.type), event
            return Info.from_event(event)

    info = with_server(scenario)
    engine_info = shipped_engine().info
    (program,) = info.asr
    (model,) = program.models
    assert program.name == "stt" and program.installed and program.version == engine_info.version
    assert model.name == engine_info.model_id and model.languages == ["en"] and model.installed
    assert engine_info.decoder in model.description
    assert not program.supports_transcript_streaming and not info.tts


def test_an_utterance_is_the_offline_models_transcript(speech, speech_text):
    async def scenario(port: int) -> str:
        async with tcp_client(port) as client:
            return await transcript_of(client, pcm16(speech), language="en", name="wavenet-stt")

    text = with_server(scenario)
    assert text == speech_text and len(text.split()) >= 5


def test_44k_stereo_is_converted_to_16k_mono(speech, speech_text):
    async def scenario(port: int) -> str:
        async with tcp_client(port) as client:
            return await transcript_of(client, stereo_44k(speech), rate=44100, channels=2)

    text = with_server(scenario)
    assert jiwer.wer(speech_text, text) <= 0.3, (speech_text, text)


def test_silence_is_an_empty_transcript():
    async def scenario(port: int) -> list[str]:
        async with tcp_client(port) as client:
            silence = await transcript_of(client, bytes(2 * SAMPLE_RATE * 2), language="en-US")
            nothing = await transcript_of(client, b"")  # AudioStart then AudioStop at once
            return [silence, nothing]

    assert with_server(scenario) == ["", ""]


def test_another_language_is_an_error_and_its_audio_ignored(speech):
    async def scenario(port: int) -> None:
        async with tcp_client(port) as client:
            await send_utterance(client, pcm16(speech[:SAMPLE_RATE]), language="fr")
            event = await answer(client)
            assert Error.is_type(event.type), event
            text = Error.from_event(event).text
            assert "'fr'" in text and "English" in text and "\n" not in text
            # No transcript of the French utterance follows: the next answer is the pong.
            await client.write_event(Ping(text="still here").event())
            event = await answer(client)
            assert Pong.is_type(event.type) and Pong.from_event(event).text == "still here"

    with_server(scenario)


def test_two_utterances_on_one_connection_and_a_client_gone_mid_utterance(speech):
    short = pcm16(load_audio(SHORT))
    expected = shipped_engine().transcriber.transcribe(as_heard(load_audio(SHORT))).text

    async def scenario(port: int) -> list[str]:
        async with tcp_client(port) as client:
            texts = [await transcript_of(client, short), await transcript_of(client, short)]
        async with tcp_client(port) as quitter:  # half an utterance, then gone
            await quitter.write_event(Transcribe(language="en").event())
            await quitter.write_event(AudioStart(rate=SAMPLE_RATE, width=2, channels=1).event())
            chunk = AudioChunk(rate=SAMPLE_RATE, width=2, channels=1, audio=pcm16(speech[:8000]))
            await quitter.write_event(chunk.event())
        async with tcp_client(port) as client:
            texts.append(await transcript_of(client, short))
        return texts

    assert with_server(scenario) == [expected] * 3 and expected


# ---------------------------------------------------------------------------------------------
# The protocol alone, with a stand-in engine
# ---------------------------------------------------------------------------------------------


def test_busy_bad_audio_and_bugs_are_error_events_and_the_connection_stays(caplog):
    engine = FakeEngine(Busy(), AudioError("waveform holds unusable samples"), ZeroDivisionError(),
                        "hello")  # fmt: skip

    async def scenario(port: int) -> list[Event]:
        async with tcp_client(port) as client:
            events = []
            for _ in range(4):
                await send_utterance(client, pcm16(np.full(1600, 0.1, np.float32)))
                events.append(await answer(client))
            return events

    with caplog.at_level(logging.ERROR, logger="stt.serve.wyoming"):
        busy, bad, bug, ok = with_server(scenario, engine)
    assert Error.is_type(busy.type) and "busy" in Error.from_event(busy).text
    assert (
        Error.is_type(bad.type) and Error.from_event(bad).text == "waveform holds unusable samples"
    )
    assert Error.is_type(bug.type) and "internal error" in Error.from_event(bug).text
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
    assert Transcript.is_type(ok.type) and Transcript.from_event(ok).text == "hello"


def test_the_waveform_is_int16_over_32768():
    engine = FakeEngine()
    samples = np.array([-32768, -1, 0, 1, 16384, 32767], dtype="<i2")

    async def scenario(port: int) -> str:
        async with tcp_client(port) as client:
            return await transcript_of(client, samples.tobytes())

    assert with_server(scenario, engine) == "ok"
    (heard,) = engine.heard
    assert heard.dtype == np.float32 and np.array_equal(heard, samples / np.float32(32768))


def test_an_utterance_is_cut_at_the_limit_with_one_warning(caplog):
    engine = FakeEngine()
    second = bytes(SAMPLE_RATE * 2)

    async def scenario(port: int) -> str:
        async with tcp_client(port) as client:
            await client.write_event(AudioStart(rate=SAMPLE_RATE, width=2, channels=1).event())
            for _ in range(MAX_SECONDS + 3):
                chunk = AudioChunk(rate=SAMPLE_RATE, width=2, channels=1, audio=second)
                await client.write_event(chunk.event())
            await client.write_event(AudioStop().event())
            return Transcript.from_event(await answer(client)).text

    with caplog.at_level(logging.WARNING, logger="stt.serve.wyoming"):
        assert with_server(scenario, engine) == "ok"
    assert [len(w) for w in engine.heard] == [MAX_SECONDS * SAMPLE_RATE]
    warnings = [r for r in caplog.records if r.name == "stt.serve.wyoming"]
    assert len(warnings) == 1 and "dropped" in warnings[0].getMessage()


def test_unusable_formats_and_malformed_events_are_errors():
    engine = FakeEngine()

    async def scenario(port: int) -> list[Event]:
        async with tcp_client(port) as client:
            events = []
            await send_utterance(client, bytes(1200), channels=3)  # audioop would garble it
            events.append(await answer(client))
            await client.write_event(Event(type="audio-chunk", data={"rate": 16000}))
            events.append(await answer(client))
            await client.write_event(AudioStop().event())  # ends the refused utterance, silently
            await client.write_event(AudioStart(rate="16k", width=2, channels=1).event())
            await client.write_event(AudioChunk(rate="16k", width=2, channels=1, audio=b"").event())
            events.append(await answer(client))
            await client.write_event(AudioStop().event())
            await send_utterance(client, bytes(3200))
            events.append(await answer(client))
            return events

    channels, malformed, typed, ok = with_server(scenario, engine)
    assert Error.is_type(channels.type) and "mono and stereo" in Error.from_event(channels).text
    assert Error.is_type(malformed.type) and "malformed" in Error.from_event(malformed).text
    assert Error.is_type(typed.type) and "integers" in Error.from_event(typed).text
    assert Transcript.is_type(ok.type) and len(engine.heard) == 1


def test_a_unix_socket_and_sigterm_left_to_uvicorn(tmp_path):
    engine = FakeEngine()
    path = tmp_path / "stt.sock"
    sigterm = signal.getsignal(signal.SIGTERM)

    async def main() -> Info:
        server = asyncio.create_task(serve_wyoming(engine, f"unix://{path}"))
        try:
            for _ in range(int(TIMEOUT / 0.02)):
                if path.exists() or server.done():
                    break
                await asyncio.sleep(0.02)
            client = AsyncUnixClient(path, connect_timeout=TIMEOUT, read_timeout=TIMEOUT)
            async with client:
                await client.write_event(Describe().event())
                event = await answer(client)
            assert signal.getsignal(signal.SIGTERM) is sigterm  # uvicorn's, in `stt serve`
            return Info.from_event(event)
        finally:
            await stop(server)

    info = asyncio.run(main())
    assert info.asr[0].models[0].name == "fake-model" and info.asr[0].version == "9.9"
    assert not path.exists()


@pytest.mark.parametrize("language", [None, "", "*", "en", "en-US", "en_GB", "EN", "English (US)"])
def test_english_in_its_spellings(language):
    assert is_english(language)


@pytest.mark.parametrize("language", ["fr", "de-DE", "zh_CN", "ens", "e"])
def test_other_languages(language):
    assert not is_english(language)


def test_a_bad_uri_is_refused():
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        asyncio.run(serve_wyoming(FakeEngine(), "stdio://"))
