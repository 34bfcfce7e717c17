"""Home Assistant's Wyoming protocol, speech-to-text part: ``stt serve --wyoming URI``.

Wyoming is JSON-lines events over a TCP (or Unix) socket. A client such as Home Assistant sends:

* ``describe``: answered with ``info``: one ASR program, ``stt``, holding one model (the offline
  model, English);
* ``transcribe`` (optional ``language``, ``name``): a new utterance follows. A language other than
  English is answered with an ``error`` and that utterance is ignored;
* ``audio-start``, ``audio-chunk`` ..., ``audio-stop``: the utterance, in any rate, width and
  channel count: every chunk is converted to 16 kHz 16-bit mono. At ``audio-stop`` the
  utterance (at most :data:`MAX_SECONDS`; the rest is dropped) is transcribed and answered with
  ``transcript``, or with ``error`` if the server is busy or the audio unusable. The connection
  stays open for the next utterance;
* ``ping``: answered with ``pong``. Other events are ignored, as the protocol asks.

The offline model does the work, not the streaming one: it sees the whole utterance, left and
right context, and is the more accurate of the two, and Home Assistant sends a whole utterance
(its own voice-activity detection ends it) and waits for one transcript, so nothing is gained by
decoding as the audio arrives.

In Home Assistant: Settings → Devices & services → Add integration → Wyoming Protocol, then the
host of this machine and the port of ``--wyoming`` (10300 by convention), and choose "stt" as
the speech-to-text engine of a voice assistant (Settings → Voice assistants). Wyoming has no
authentication: listen on loopback or a trusted LAN only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, Eventable
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncServer

from stt.audio import MIN_SAMPLE_RATE
from stt.errors import STTError
from stt.serve.engine import Busy, EngineInfo, is_english

if TYPE_CHECKING:
    from stt.serve.engine import Engine

log = logging.getLogger(__name__)

SAMPLE_RATE, SAMPLE_WIDTH, CHANNELS = 16000, 2, 1
"""What every chunk is converted to: what the model takes, as 16-bit PCM."""

MAX_SECONDS = 60
"""Longest utterance kept: a voice command lasts seconds; this bounds a connection's memory."""

MAX_BYTES = MAX_SECONDS * SAMPLE_RATE * SAMPLE_WIDTH * CHANNELS

MIN_RATE, MAX_RATE = MIN_SAMPLE_RATE, 384_000
"""Rates accepted: below 1 kHz is no speech (as for files); above 384 kHz no sound card."""

ATTRIBUTION = Attribution(name="wavenet-stt", url="https://arxiv.org/abs/1609.03499")
"""Who made it: this project; the URL is the WaveNet paper its model follows (it has no home
page of its own)."""


def describe(info: EngineInfo) -> Info:
    """The ``info`` answer: one program, one model."""
    model = AsrModel(
        name=info.model_id,
        description=f"WaveNet CTC model, offline, {info.decoder} decoder",
        attribution=ATTRIBUTION,
        installed=True,
        version=info.version,
        languages=["en"],
    )
    program = AsrProgram(
        name="stt",
        description="wavenet-stt: local, private speech-to-text",
        attribution=ATTRIBUTION,
        installed=True,
        version=info.version,
        models=[model],
    )
    return Info(asr=[program])


def unsupported(chunk: AudioChunk) -> str | None:
    """Why the converter cannot take this chunk's format, or None. It would silently garble
    more than two channels (it mixes them as if stereo), so they are refused here."""
    if not all(type(v) is int for v in (chunk.rate, chunk.width, chunk.channels)):
        return "rate, width and channels must be integers"
    if not 1 <= chunk.width <= 4:
        return "the sample width must be 1 to 4 bytes"
    if chunk.channels not in (1, 2):
        return "only mono and stereo are supported"
    if not MIN_RATE <= chunk.rate <= MAX_RATE:
        return f"the rate must be {MIN_RATE} to {MAX_RATE} Hz"
    return None


def _converter() -> AudioChunkConverter:
    return AudioChunkConverter(rate=SAMPLE_RATE, width=SAMPLE_WIDTH, channels=CHANNELS)


@dataclass
class Utterance:
    """One utterance's state: what ``transcribe`` asked for and the 16 kHz PCM so far.
    ``refused``: already answered with an error, so its audio is dropped unheard."""

    language: str | None = None
    name: str | None = None
    refused: bool = False
    pcm: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    # Per utterance: the resampler keeps state from chunk to chunk.
    converter: AudioChunkConverter = field(default_factory=_converter)

    def next_audio(self) -> Utterance:
        """The same request with no audio yet (at ``audio-start``)."""
        return Utterance(self.language, self.name, self.refused)

    def add(self, chunk: AudioChunk) -> None:
        """Append a chunk converted to 16 kHz mono 16-bit, up to :data:`MAX_BYTES`.

        Raises:
            audioop.error, ValueError: the chunk's format cannot be converted.
        """
        if len(self.pcm) >= MAX_BYTES:
            self._truncate()
            return
        self.pcm += self.converter.convert(chunk).audio
        if len(self.pcm) > MAX_BYTES:
            self._truncate()

    def _truncate(self) -> None:
        del self.pcm[MAX_BYTES:]
        if not self.truncated:
            self.truncated = True
            log.warning("wyoming: utterance longer than %d s: the rest is dropped", MAX_SECONDS)

    def waveform(self) -> np.ndarray:
        """The PCM as the float32 waveform the model takes."""
        whole = len(self.pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH  # a client's odd byte, unconverted
        samples = np.frombuffer(bytes(self.pcm[:whole]), dtype="<i2")
        return samples.astype(np.float32) / 32768


_EVENTS = (Describe, Ping, Transcribe, AudioStart, AudioChunk, AudioStop)


def parse(event: Event) -> Eventable | None:
    """The event as one of the messages this server answers; None for any other.

    Raises:
        KeyError, TypeError, AttributeError: a field is missing or of the wrong type.
    """
    for kind in _EVENTS:
        if kind.is_type(event.type):
            return kind.from_event(event)
    return None


class WyomingHandler(AsyncEventHandler):
    """One client connection: its own :class:`Utterance`, freed when it disconnects."""

    def __init__(
        self, engine: Engine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(reader, writer)
        self.engine = engine
        self.utterance = Utterance()

    async def handle_event(self, event: Event) -> bool:
        """Answer one event; False (the client is gone) ends the connection."""
        try:
            message = parse(event)
        except (KeyError, TypeError, AttributeError) as exc:  # a field missing or of a bad type
            self.utterance.refused = True
            return await self.error(f"malformed {event.type} event: {exc!r}")
        if isinstance(message, Describe):
            return await self.send(describe(self.engine.info))
        if isinstance(message, Ping):
            return await self.send(Pong(text=message.text))
        if isinstance(message, Transcribe):
            return await self.on_transcribe(message)
        if isinstance(message, AudioStart):
            self.utterance = self.utterance.next_audio()
        elif isinstance(message, AudioChunk):
            return await self.on_chunk(message)
        elif isinstance(message, AudioStop):
            return await self.on_stop()
        return True

    async def on_transcribe(self, request: Transcribe) -> bool:
        self.utterance = Utterance(request.language, request.name)
        if is_english(request.language):
            return True
        self.utterance.refused = True
        return await self.error(
            f"language {request.language!r} is not supported: this model knows English (en) only"
        )

    async def on_chunk(self, chunk: AudioChunk) -> bool:
        if self.utterance.refused:
            return True
        problem = unsupported(chunk)
        if problem is None:
            try:
                self.utterance.add(chunk)
                return True
            except Exception as exc:  # audioop.error, ValueError: e.g. half a frame
                problem = str(exc)
        self.utterance.refused = True
        return await self.error(
            f"cannot convert audio of {chunk.rate} Hz, {chunk.width} bytes a sample, "
            f"{chunk.channels} channels to 16 kHz mono: {problem}"
        )

    async def on_stop(self) -> bool:
        utterance, self.utterance = self.utterance, Utterance()
        if utterance.refused:  # its error has been sent
            return True
        if not utterance.pcm:
            return await self.send(Transcript(text=""))
        try:
            transcript = await self.engine.transcribe(utterance.waveform())
        except (Busy, STTError) as exc:
            return await self.error(str(exc))
        except Exception:  # a bug: its traceback goes to the log, the client hears of it
            log.exception("wyoming: transcription failed")
            return await self.error("internal error: the transcription failed (see the log)")
        return await self.send(Transcript(text=transcript.text))

    async def error(self, text: str) -> bool:
        log.info("wyoming: error sent: %s", text)
        return await self.send(Error(text=text))

    async def send(self, message: Eventable) -> bool:
        """Write an event; False if the client has gone (the connection then ends)."""
        try:
            await self.write_event(message.event())
        except ConnectionError:  # reset, or the transport already closed
            return False
        return True

    async def disconnect(self) -> None:
        self.utterance = Utterance()  # a half-sent utterance is not kept


async def serve_wyoming(engine: Engine, uri: str) -> None:
    """Run a Wyoming server at uri (tcp://HOST:PORT or unix://PATH) until cancelled.

    The server is started with ``start`` and waited on here, not with ``run``: ``run`` installs
    its own SIGTERM handler, which would take SIGTERM from uvicorn running beside it. On
    cancellation every open connection is closed, so nothing waits for an idle client.

    Raises:
        OSError: the address cannot be listened on (port in use, no such folder).
        ValueError: ``uri`` is neither ``tcp://HOST:PORT`` nor ``unix://PATH``.
    """
    if not uri.startswith(("tcp://", "unix://")):
        raise ValueError(f"a Wyoming URI is tcp://HOST:PORT or unix://PATH, got {uri!r}")
    server = AsyncServer.from_uri(uri)
    await server.start(partial(WyomingHandler, engine))
    log.info("wyoming: listening on %s", uri)
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        await server.stop()
