"""The HTTP side of ``stt serve`` (FastAPI): an OpenAI-compatible transcription endpoint, live
streams over a WebSocket, and the web page.

Endpoints:

* ``POST /v1/audio/transcriptions``: OpenAI's Whisper API (multipart ``file``, ``model``,
  ``response_format`` = json | text | srt | vtt | verbose_json, ``timestamp_granularities[]``,
  ``prompt`` (its words become hotwords), ``language`` (English only)), so the ``openai`` client
  pointed at ``base_url=http://127.0.0.1:8000/v1`` works unchanged.
* ``GET /v1/models``, ``GET /health``.
* ``WS /v1/stream``: live transcription (the protocol is in :mod:`stt.serve.live`).
* ``GET /``: the page (``stt/serve/static/``) that records from the microphone or takes a file.

Errors have OpenAI's shape, ``{"error": {"message", "type", "code"}}``, on one line: 400 for audio
that cannot be decoded or a bad field, 401 without the API key, 413 for an upload over the limit
(found before it is read), 422 without a ``file``, 503 with ``Retry-After`` when busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from stt.errors import STTError
from stt.serve.config import ServeConfig
from stt.serve.engine import MODEL_ALIASES, Busy, Engine, is_english
from stt.serve.live import FORMATS as STREAM_FORMATS
from stt.serve.live import SAMPLE_RATE, LiveSession
from stt.serve.uploads import UploadError, receive_upload
from stt.writers import format_srt, format_vtt

if TYPE_CHECKING:
    from stt.transcript import Transcript

log = logging.getLogger("stt.serve")

STATIC = Path(__file__).parent / "static"
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                413: "invalid_request_error", 415: "invalid_request_error",
                422: "invalid_request_error", 503: "server_busy"}  # fmt: skip


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """OpenAI's error shape, one line."""
    body = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"),
                      "code": status}}  # fmt: skip
    return JSONResponse(body, status_code=status, headers=headers)


class RequestError(Exception):
    """A request refused with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# ---------------------------------------------------------------------------------------------
# Responses in OpenAI's formats
# ---------------------------------------------------------------------------------------------


def verbose_json(transcript: Transcript, granularities: set[str]) -> dict[str, Any]:
    """OpenAI's ``verbose_json``: segments (with their mean word confidence) and words with
    start, end and confidence; ``timestamp_granularities[]`` picks which (default: both)."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": "english",
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
    }
    data = transcript.to_dict()
    if not granularities or "segment" in granularities:
        body["segments"] = [
            {
                "id": s["id"],
                "seek": 0,
                "start": s["start"],
                "end": s["end"],
                "text": s["text"],
                "tokens": [],
                "temperature": 0.0,
                "confidence": round(
                    sum(w["confidence"] for w in s["words"]) / max(len(s["words"]), 1), 4
                ),  # fmt: skip
                "words": s["words"],
            }
            for s in data["segments"]
        ]
    if not granularities or "word" in granularities:
        body["words"] = data["words"]
    return body


def render(transcript: Transcript, response_format: str, granularities: set[str]) -> Response:
    if response_format == "json":
        usage = {"type": "duration", "seconds": round(transcript.duration, 3)}
        return JSONResponse({"text": transcript.text, "usage": usage})
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(format_srt(transcript), media_type="application/x-subrip")
    if response_format == "vtt":
        return PlainTextResponse(format_vtt(transcript), media_type="text/vtt")
    return JSONResponse(verbose_json(transcript, granularities))


def hotwords_of(prompt: str | None) -> list[str] | None:
    """A prompt's distinct words, in order: Whisper conditions on a prompt, this model biases
    its beam search towards them."""
    if not prompt:
        return None
    words = re.findall(r"[\w']+", prompt.lower())
    return list(dict.fromkeys(words))[:100] or None


def check_fields(fields: dict[str, list[str]], model_ids: set[str]) -> tuple[str, set[str]]:
    """``(response_format, timestamp granularities)`` of the form, after checking its fields."""
    get = {name: values[-1] for name, values in fields.items()}
    model = get.get("model", "")
    if model and model not in model_ids:
        raise RequestError(404, f"model {model!r} does not exist; this server has "
                           f"{', '.join(sorted(model_ids))}")  # fmt: skip
    response_format = get.get("response_format", "json") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise RequestError(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, "
                           f"got {response_format!r}")  # fmt: skip
    language = get.get("language", "")
    if not is_english(language):
        raise RequestError(400, f"language {language!r} is not supported: this model "
                           "transcribes English only (en)")  # fmt: skip
    granularities = set(fields.get("timestamp_granularities[]", []))
    granularities |= set(fields.get("timestamp_granularities", []))
    unknown = granularities - {"word", "segment"}
    if unknown:
        raise RequestError(400, f"timestamp_granularities must be word or segment, got "
                           f"{', '.join(sorted(unknown))}")  # fmt: skip
    return response_format, granularities


UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
        "prompt": {"type": "string"}, "language": {"type": "string"},
        "timestamp_granularities[]": {"type": "array", "items": {
            "type": "string", "enum": ["word", "segment"]}},
    }}}}}}  # fmt: skip
"""The form OpenAI's endpoint takes, for /docs: the body is parsed by hand (stt.serve.uploads)."""


async def transcribe_upload(
    request: Request, engine: Engine, config: ServeConfig, model_ids: set[str]
) -> Response:
    """``POST /v1/audio/transcriptions``: receive, check, transcribe, answer; the upload's
    private folder is removed whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix="stt-upload-"))  # mode 0700: this request's own
    try:
        upload = await receive_upload(
            request.headers.get("content-type", ""), request.headers.get("content-length"),
            request.stream(), folder, config.max_upload_bytes,
        )  # fmt: skip
        if upload.path is None:
            raise RequestError(422, "no 'file' field in the form: send the audio as file=@…")
        response_format, granularities = check_fields(upload.fields, model_ids)
        if upload.size == 0:
            raise RequestError(400, "the uploaded file is empty")
        transcript = await engine.transcribe(upload.path, hotwords_of(upload.get("prompt")))
        return render(transcript, response_format, granularities)
    except (UploadError, RequestError) as exc:
        return error_response(exc.status, exc.message)
    except Busy as exc:
        return error_response(503, str(exc), headers={"Retry-After": str(exc.retry_after)})
    except STTError as exc:  # audio that cannot be decoded: say why, in one line
        message = str(exc).replace(str(folder / "upload"), "the uploaded file")
        return error_response(400, " ".join(message.split()))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


def create_app(engine: Engine, config: ServeConfig) -> FastAPI:
    """The FastAPI app serving ``engine`` with ``config``'s limits and key."""
    app = FastAPI(
        title="stt", version=engine.info.version,
        description="A private speech-to-text server: OpenAI-compatible transcription, live "
        "streams over a WebSocket, Home Assistant's Wyoming protocol.",
    )  # fmt: skip
    model_ids = {engine.info.model_id, *MODEL_ALIASES}
    key = config.api_key.encode() if config.api_key else None
    streams = {"open": 0}

    def authorised(headers, query: dict[str, str]) -> bool:
        if key is None:
            return True
        given = headers.get("authorization", "")
        token = given[7:] if given[:7].lower() == "bearer " else query.get("api_key", "")
        return hmac.compare_digest(token.encode(), key)

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        path = request.url.path
        if path in ("/health", "/favicon.ico") or path.startswith("/static/"):
            return await call_next(request)  # the page's scripts are code, not data
        if not authorised(request.headers, dict(request.query_params)):
            return error_response(401, "missing or wrong API key: send Authorization: Bearer KEY",
                                  headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": engine.info.version,
            "in_flight": engine.in_flight,
            "open_streams": streams["open"],
            "max_streams": config.max_streams,
            "streaming": engine.streaming,
            "stream_batches": engine.stream_stats(),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {
            "object": "model",
            "created": 0,
            "owned_by": "stt",
            "decoder": engine.info.decoder,
        }  # fmt: skip (no server paths for clients)
        return {"object": "list", "data": [{"id": engine.info.model_id, **entry}]}

    @app.post("/v1/audio/transcriptions", openapi_extra=UPLOAD_SCHEMA)
    async def transcriptions(request: Request) -> Response:
        return await transcribe_upload(request, engine, config, model_ids)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await live_stream(ws, engine, config, streams, authorised)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# ---------------------------------------------------------------------------------------------
# Live streams
# ---------------------------------------------------------------------------------------------


async def live_stream(ws: WebSocket, engine: Engine, config: ServeConfig, streams: dict,
                      authorised) -> None:  # fmt: skip
    """One WebSocket stream, from accept to close; the state is freed however it ends."""
    query = dict(ws.query_params)
    if not authorised(ws.headers, query):
        await ws.close(code=1008, reason="missing or wrong API key")
        return
    await ws.accept()

    async def fail(message: str, code: int = 1003) -> None:
        await ws.send_json({"type": "error", "message": message})
        await ws.close(code=code)

    audio_format = query.get("format", "s16le")
    rate = query.get("sample_rate", str(SAMPLE_RATE))
    if audio_format not in STREAM_FORMATS:
        return await fail(
            f"format must be one of {', '.join(STREAM_FORMATS)}, got {audio_format!r}"
        )
    if rate != str(SAMPLE_RATE):
        return await fail(
            f"sample_rate must be {SAMPLE_RATE} (resample before sending), got {rate}"
        )
    if streams["open"] >= config.max_streams:
        return await fail(f"too many open streams ({config.max_streams}): try later", code=1013)
    try:
        transcriber = engine.open_stream()
    except STTError as exc:
        return await fail(str(exc), code=1011)
    session = LiveSession(transcriber, audio_format, config.pause_seconds,
                          config.max_utterance_seconds)  # fmt: skip
    streams["open"] += 1
    try:
        await ws.send_json(session.ready(engine.info.model_id))
        await _converse(ws, engine, session, config.idle_timeout_seconds)
    except WebSocketDisconnect:
        pass  # the client left: nothing to answer
    finally:
        streams["open"] -= 1
        session.close()


INBOX_MESSAGES = 32
"""A stream's messages read ahead while its previous audio runs (~3 s of 100 ms frames); past
that the server stops reading, so a client sending faster than real time is held back by TCP
rather than by this process's memory."""

JOINED_AUDIO_BYTES = 32000
"""At most this much audio (1 s of s16le) from consecutive frames goes into one step."""

_GONE, _TIMED_OUT = object(), object()


async def _read(ws: WebSocket, inbox: asyncio.Queue, idle: float) -> None:
    """Put the client's messages into ``inbox``, then ``_GONE`` (it left) or ``_TIMED_OUT``
    (nothing for ``idle`` seconds)."""
    while True:
        try:
            message = await asyncio.wait_for(ws.receive(), timeout=idle)
        except asyncio.TimeoutError:
            await inbox.put(_TIMED_OUT)
            return
        except (RuntimeError, WebSocketDisconnect):
            message = {"type": "websocket.disconnect"}
        if message["type"] == "websocket.disconnect":
            await inbox.put(_GONE)
            return
        await inbox.put(message)


async def _converse(ws: WebSocket, engine: Engine, session: LiveSession, idle: float) -> None:
    """Answer the client's messages in order. The frames that arrived while the previous step
    ran go into the next one together, so a stream that fell behind (a busy server) catches up
    in larger steps instead of queueing one step per frame, its delay growing without end. Only
    the inbox holds what is read ahead (plus the one message after the joined frames)."""
    inbox: asyncio.Queue = asyncio.Queue(INBOX_MESSAGES)
    reader = asyncio.create_task(_read(ws, inbox, idle))
    held = None  # taken from the inbox while joining frames, not audio: the next to answer
    try:
        while True:
            message, held = (held if held is not None else await inbox.get()), None
            if message is _GONE:
                return
            if message is _TIMED_OUT:
                with contextlib.suppress(Exception):
                    await ws.send_json(
                        {"type": "error", "message": f"nothing received for {idle:g} s: closing"}
                    )
                    await ws.close(code=1000)
                return
            if _is_audio(message):
                data = message["bytes"]
                while len(data) < JOINED_AUDIO_BYTES and not inbox.empty():
                    following = inbox.get_nowait()
                    if not _is_audio(following):
                        held = following
                        break
                    data += following["bytes"]
                try:
                    replies = await _feed(engine, session, data)
                except STTError as exc:  # a bad frame: say so, the stream goes on
                    replies = [{"type": "error", "message": str(exc)}]
            else:
                replies = await _control(engine, session, message.get("text") or "")
            for reply in replies:
                await ws.send_json(reply)
    finally:
        reader.cancel()


def _is_audio(message: Any) -> bool:
    return isinstance(message, dict) and message.get("bytes") is not None


async def _feed(engine: Engine, session: LiveSession, data: bytes) -> list[dict]:
    """:meth:`LiveSession.feed`, its chunk run in the engine's stream batch, the beam search of
    the utterance's finished pieces and its final decode in the stream pool."""
    samples = session.take(data)
    if samples is None:
        return []
    replies, reason = session.heard(await engine.accept(session.transcriber, samples))
    if session.transcriber.settle_due:  # the final's beam search of finished pieces, off the batch
        await engine.in_stream_pool(session.transcriber.settle)
    if reason:
        replies.append(await engine.in_stream_pool(session.end, reason))
    return replies


async def _control(engine: Engine, session: LiveSession, text: str) -> list[dict]:
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError):
        return [{"type": "error", "message": 'text frames must be JSON like {"type": "end"}'}]
    if kind == "end":
        return [await engine.in_stream_pool(session.end, "end")]
    if kind == "reset":
        await engine.in_stream_pool(session.reset)
        return []
    return [{"type": "error", "message": f"unknown message type {kind!r}: send end or reset"}]
