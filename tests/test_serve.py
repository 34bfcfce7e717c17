"""`stt serve` over real loopback HTTP and WebSocket connections, with the shipped models:
every response format, the official openai client, live streams, and each way a request can go
wrong (size, auth, bad audio, busy, silent or vanishing clients)."""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from serve_fixtures import running_server, shipped_engine

httpx = pytest.importorskip("httpx")

from stt.audio import SAMPLE_RATE, load_audio  # noqa: E402
from stt.data.manifest import read_manifest  # noqa: E402
from stt.serve.config import ServeConfig  # noqa: E402
from stt.serve.engine import Engine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "examples" / "07_libri_8629-261139-0000.flac"
URL = "/v1/audio/transcriptions"


@pytest.fixture(scope="module")
def server():
    with running_server() as url:
        yield url


@pytest.fixture(scope="module")
def offline_text() -> str:
    return shipped_engine().transcriber.transcribe(SPEECH).text


def post(url: str, data: dict | None = None, content: bytes | None = None, **kw):
    files = {"file": ("my recording.flac", content if content is not None else SPEECH.read_bytes())}
    return httpx.post(url + URL, files=files, data=data or {}, timeout=60, **kw)


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# The OpenAI-compatible endpoint
# ---------------------------------------------------------------------------------------------


def test_json_is_the_offline_transcript(server, offline_text):
    r = post(server, {"model": "whisper-1"})
    assert r.status_code == 200
    body = r.json()
    assert body["text"] == offline_text and len(offline_text.split()) >= 5
    assert body["usage"]["seconds"] == pytest.approx(len(load_audio(SPEECH)) / SAMPLE_RATE, 0.01)


def test_text_srt_and_vtt(server, offline_text):
    assert post(server, {"response_format": "text"}).text == offline_text + "\n"
    srt = post(server, {"response_format": "srt"})
    assert srt.text.startswith("1\n00:00:") and " --> " in srt.text
    cues = [block.split("\n") for block in srt.text.strip().split("\n\n")]
    assert [int(c[0]) for c in cues] == list(range(1, len(cues) + 1))
    assert " ".join(c[2] for c in cues) == offline_text
    vtt = post(server, {"response_format": "vtt"})
    assert vtt.text.startswith("WEBVTT\n\n00:00:") and vtt.headers["content-type"].startswith(
        "text/vtt"
    )


def test_verbose_json_has_segments_and_words_with_times_and_confidence(server, offline_text):
    body = post(server, {"response_format": "verbose_json"}).json()
    assert body["text"] == offline_text and body["language"] == "english"
    words = body["words"]
    assert [w["word"] for w in words] == offline_text.split()
    assert all(0 <= w["start"] < w["end"] <= body["duration"] for w in words)
    assert all(0 <= w["confidence"] <= 1 for w in words)
    assert [w for s in body["segments"] for w in s["words"]] == words
    only_words = post(
        server, {"response_format": "verbose_json", "timestamp_granularities[]": "word"}
    ).json()
    assert "words" in only_words and "segments" not in only_words


def test_the_official_openai_client_works_unchanged(server, offline_text):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    with SPEECH.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert result.text == offline_text
    with SPEECH.open("rb") as f:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )  # fmt: skip
    assert [w.word for w in verbose.words] == offline_text.split()
    assert verbose.segments[0].start >= 0
    with SPEECH.open("rb") as f:
        srt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    assert "-->" in srt
    assert [m.id for m in client.models.list()] == ["wavenet-stt"]


def test_prompt_words_become_hotwords(server):
    """Words of the prompt the model missed are pulled in by beam search's hotword bonus,
    exactly as the library's own hotwords do. The prompt is the reference's words the plain
    pass missed, so the test holds for whichever model ships."""
    plain = post(server).json()["text"].split()
    examples = read_manifest(ROOT / "examples" / "references.jsonl")
    reference = next(u.text for u in examples if u.audio_filepath.name == SPEECH.name)
    missed = list(dict.fromkeys(w for w in reference.split() if w not in plain and len(w) > 2))
    assert missed, "the shipped model transcribes the example perfectly: pick a harder one"
    biased = post(server, {"prompt": ", ".join(missed).capitalize() + "."}).json()["text"]
    assert set(missed) & set(biased.split()), f"no prompt word of {missed} was pulled in"
    expected = shipped_engine().transcriber.transcribe(SPEECH, hotwords=missed)
    assert biased == expected.text


def test_silence_gives_an_empty_transcript(server):
    r = post(server, {"response_format": "verbose_json"}, wav_bytes(np.zeros(2 * SAMPLE_RATE)))
    assert r.status_code == 200 and r.json()["text"] == "" and r.json()["words"] == []


def test_models_and_health(server):
    assert httpx.get(server + "/v1/models").json()["data"][0]["id"] == "wavenet-stt"
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok" and health["streaming"] is True


# ---------------------------------------------------------------------------------------------
# Bad requests: one line of JSON each, nothing left behind
# ---------------------------------------------------------------------------------------------


def error_of(r) -> str:
    body = r.json()
    assert set(body) == {"error"} and "\n" not in r.text
    return body["error"]["message"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not audio at all" * 50, "not an audio file"),
        (SPEECH.read_bytes()[: SPEECH.stat().st_size // 2], "damaged or truncated"),
        (b"", "empty"),
    ],
)
def test_undecodable_uploads_get_400_naming_the_problem(server, content, words):
    r = post(server, content=content)
    assert r.status_code == 400
    message = error_of(r)
    assert words in message and "stt-upload" not in message  # no server paths leak


def test_missing_file_gets_422(server):
    r = httpx.post(server + URL, files={"model": (None, "whisper-1")}, timeout=30)
    assert r.status_code == 422 and "file" in error_of(r)


@pytest.mark.parametrize(
    ("field", "value", "status"),
    [
        ("response_format", "xml", 400),
        ("language", "fr", 400),
        ("model", "gpt-9", 404),
        ("timestamp_granularities[]", "char", 400),
    ],
)
def test_bad_fields(server, field, value, status):
    r = post(server, {field: value})
    assert r.status_code == status and value in error_of(r)


def test_english_language_codes_are_accepted(server):
    # the same rule as Wyoming's (stt.serve.engine.is_english)
    codes = ("en", "en-US", "EN", "en_GB", "English (UK)")
    assert all(post(server, {"language": c}).status_code == 200 for c in codes)


def test_oversized_upload_is_refused_before_it_is_read():
    with running_server(max_upload_mb=0.05) as url:
        big = wav_bytes(np.zeros(5 * SAMPLE_RATE))  # 160 kB > 52 kB
        r = post(url, content=big)
        assert r.status_code == 413 and "0.05 MB" in error_of(r)

        def chunks():  # no Content-Length: the limit holds on the bytes received
            boundary = b"xyz"
            yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
            for _ in range(200):
                yield b"\0" * 65536
            yield b"\r\n--" + boundary + b"--\r\n"

        r = httpx.post(url + URL, content=chunks(), timeout=60,
                       headers={"content-type": "multipart/form-data; boundary=xyz"})  # fmt: skip
        assert r.status_code == 413


def test_uploads_leave_nothing_in_the_temporary_folder(server):
    before = set(Path(tempfile.gettempdir()).glob("stt-upload-*"))
    post(server)
    post(server, content=b"junk" * 100)
    assert set(Path(tempfile.gettempdir()).glob("stt-upload-*")) == before


def test_api_key_is_required_everywhere_but_health():
    with running_server(api_key="s3cret") as url:
        assert httpx.get(url + "/health").status_code == 200
        for path in ("/v1/models", "/"):
            assert httpx.get(url + path).status_code == 401
        assert post(url).status_code == 401
        assert post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert post(url, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(url + "/?api_key=s3cret").status_code == 200


def test_busy_server_answers_503_with_retry_after():
    """One worker and no queue. Several simultaneous uploads each get a transcript or a 503,
    nothing else; with the worker held by a transcription that cannot finish yet, the next
    request is refused with Retry-After at once; once it finishes the server takes work again."""
    base = shipped_engine()
    engine = Engine(base.transcriber, None, base.info, workers=1, queue=0)
    release = threading.Event()
    real = engine.transcriber

    class Held:  # the real transcriber, made to wait for the test on the first call
        def transcribe(self, audio, hotwords=None):
            release.wait(30)
            return real.transcribe(audio, hotwords=hotwords)

    with running_server(engine) as url:
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(post(url))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {r.status_code for r in results} <= {200, 503} and 200 in {
            r.status_code for r in results
        }
        engine.transcriber = Held()
        first = threading.Thread(target=lambda: results.append(post(url)))
        first.start()
        for _ in range(600):  # until the held request occupies the worker
            if engine.in_flight == 1:
                break
            threading.Event().wait(0.05)
        busy = post(url)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "busy" in error_of(busy)
        release.set()
        first.join()
        assert results[-1].status_code == 200
        engine.transcriber = real
        assert post(url).status_code == 200
        # No streaming model on this engine: /v1/stream says so and closes.
        ws = pytest.importorskip("websockets.sync.client")
        with ws.connect(url.replace("http", "ws") + "/v1/stream") as conn:
            message = json.loads(conn.recv(timeout=10))
            assert message["type"] == "error" and "streaming model" in message["message"]


def test_a_public_host_needs_allow_remote_and_warns_without_a_key(capsys):
    from stt.errors import ConfigError
    from stt.serve.main import warn_if_exposed

    with pytest.raises(ConfigError, match="--allow-remote"):
        ServeConfig(host="0.0.0.0")
    warn_if_exposed(ServeConfig(host="0.0.0.0", allow_remote=True))
    assert "no --api-key" in capsys.readouterr().err
    warn_if_exposed(ServeConfig(host="0.0.0.0", allow_remote=True, api_key="k"))
    warn_if_exposed(ServeConfig(wyoming="tcp://127.0.0.1:10300"))
    assert capsys.readouterr().err == ""
    warn_if_exposed(ServeConfig(wyoming="tcp://0.0.0.0:10300", allow_remote=True, api_key="k"))
    assert "no authentication" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Live streams over the WebSocket
# ---------------------------------------------------------------------------------------------


ws_client = pytest.importorskip("websockets.sync.client")
ws_exceptions = pytest.importorskip("websockets.exceptions")


def offline_streaming_text(samples: np.ndarray) -> str:
    """What the streaming model says for the whole recording, fed chunk by chunk offline."""
    transcriber = shipped_engine().open_stream()
    for start in range(0, len(samples), 1600):
        transcriber.accept(samples[start : start + 1600])
    return transcriber.finish().text


def stream(url: str, pcm: bytes, chunk: int = 3200, query: str = "", end: bool = True):
    """Send ``pcm`` in ``chunk``-byte frames, then an end message; returns all messages."""
    messages = []
    with ws_client.connect(url.replace("http", "ws") + "/v1/stream" + query) as conn:
        messages.append(json.loads(conn.recv(timeout=10)))
        for start in range(0, len(pcm), chunk):
            conn.send(pcm[start : start + chunk])
        if end:
            conn.send(json.dumps({"type": "end"}))
        while True:
            message = json.loads(conn.recv(timeout=30))
            messages.append(message)
            if message["type"] == "final" and (message["reason"] == "end" or not end):
                break
    return messages


def test_a_stream_gets_partials_then_the_offline_streaming_result(server):
    samples = load_audio(SPEECH)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    messages = stream(server, pcm.tobytes(), chunk=3199)  # odd: samples split across frames
    assert messages[0]["type"] == "ready" and messages[0]["sample_rate"] == 16000
    partials = [m for m in messages if m["type"] == "partial"]
    finals = [m for m in messages if m["type"] == "final"]
    assert len(partials) >= 3
    assert [m["utterance"] for m in messages[1:]] == sorted(m["utterance"] for m in messages[1:])
    text = " ".join(m["text"] for m in finals if m["text"])
    assert text == offline_streaming_text(pcm.astype(np.float32) / 32768)
    words = [w for m in finals for w in m["words"]]
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(words, words[1:], strict=False))
    assert httpx.get(server + "/health").json()["open_streams"] == 0


def test_streams_in_a_process_of_their_own_give_the_same_result():
    """stream_process=true: the streams run in a child process (stt.serve.stream_process),
    here with two torch threads for their batches."""
    from stt.serve.main import load_engine

    engine = load_engine(ServeConfig(stream_process=True, stream_threads=2))
    try:
        assert engine.streaming
        samples = load_audio(SPEECH)
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
        with running_server(engine) as url:
            messages = stream(url, pcm.tobytes())
        finals = [m for m in messages if m["type"] == "final"]
        assert " ".join(m["text"] for m in finals if m["text"]) == offline_streaming_text(
            pcm.astype(np.float32) / 32768
        )
    finally:
        engine.close()


def test_frames_that_arrive_during_a_step_go_into_the_next_one_together(server, monkeypatch):
    """A stream behind a busy server catches up: what came in while its step ran is one step,
    up to a second of audio, and the transcript is the same as frame by frame."""
    from stt.serve.http import JOINED_AUDIO_BYTES

    engine = shipped_engine()
    real_accept, sizes, first = engine.accept, [], threading.Event()

    async def slow_accept(transcriber, samples):
        sizes.append(len(samples))
        if not first.is_set():  # the first step is slow: the frames after it pile up
            first.set()
            await asyncio.sleep(0.5)
        return await real_accept(transcriber, samples)

    monkeypatch.setattr(engine, "accept", slow_accept)
    samples = load_audio(SPEECH)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    messages = stream(server, pcm.tobytes(), chunk=3200)  # 100 ms frames, sent at once
    finals = [m for m in messages if m["type"] == "final"]
    assert " ".join(m["text"] for m in finals if m["text"]) == offline_streaming_text(
        pcm.astype(np.float32) / 32768
    )
    assert sizes[0] == 1600 and sum(sizes) == len(pcm)
    assert max(sizes) > 1600  # joined ...
    assert max(sizes) <= JOINED_AUDIO_BYTES // 2 + 1600  # ... up to about a second
    assert len(sizes) < len(pcm) / 1600


def test_a_pause_ends_the_utterance_by_itself(server):
    samples = load_audio(SPEECH)
    two = np.concatenate([samples, np.zeros(int(1.5 * SAMPLE_RATE), np.float32), samples])
    pcm = (two * 32767).astype("<i2").tobytes()
    messages = stream(server, pcm)
    finals = [m for m in messages if m["type"] == "final"]
    assert finals[0]["reason"] == "pause" and finals[0]["text"]
    assert finals[-1]["start"] >= finals[0]["end"] and finals[-1]["text"]
    assert finals[-1]["words"][0]["start"] > len(samples) / SAMPLE_RATE  # stream time


def test_float32_frames_and_bad_stream_settings(server):
    samples = load_audio(SPEECH)[: 2 * SAMPLE_RATE]
    messages = stream(server, samples.astype("<f4").tobytes(), query="?format=f32le")
    assert messages[-1]["type"] == "final"
    for query, words in [("?format=mp3", "format"), ("?sample_rate=44100", "16000")]:
        with ws_client.connect(server.replace("http", "ws") + "/v1/stream" + query) as conn:
            message = json.loads(conn.recv(timeout=10))
            assert message["type"] == "error" and words in message["message"]
    with ws_client.connect(server.replace("http", "ws") + "/v1/stream") as conn:
        conn.recv(timeout=10)
        # The client offered permessage-deflate; PCM barely compresses, so the server declines.
        assert conn.protocol.extensions == []
        conn.send("not json")
        message = json.loads(conn.recv(timeout=10))
        assert message["type"] == "error" and "JSON" in message["message"]


def test_silent_clients_time_out_and_vanishing_ones_free_their_state():
    with running_server(idle_timeout_seconds=0.5) as url:
        with ws_client.connect(url.replace("http", "ws") + "/v1/stream") as conn:
            conn.recv(timeout=10)
            message = json.loads(conn.recv(timeout=10))
            assert message["type"] == "error" and "nothing received" in message["message"]
    with running_server() as url:  # the default timeout, so only the client's leaving counts
        with ws_client.connect(url.replace("http", "ws") + "/v1/stream") as conn:
            conn.recv(timeout=10)
            conn.send(np.zeros(1600, "<i2").tobytes())
            assert httpx.get(url + "/health").json()["open_streams"] == 1
        # The client has gone without a word: its stream is freed.
        for _ in range(100):
            if httpx.get(url + "/health").json()["open_streams"] == 0:
                break
            threading.Event().wait(0.05)
        assert httpx.get(url + "/health").json()["open_streams"] == 0


def test_streams_past_max_streams_are_refused_with_1013():
    with running_server(max_streams=1) as url:
        assert httpx.get(url + "/health").json()["max_streams"] == 1
        base = url.replace("http", "ws") + "/v1/stream"
        with ws_client.connect(base) as first:
            assert json.loads(first.recv(timeout=10))["type"] == "ready"
            with ws_client.connect(base) as second:
                message = json.loads(second.recv(timeout=10))
                assert message["type"] == "error"
                assert "too many open streams (1)" in message["message"]
                with pytest.raises(ws_exceptions.ConnectionClosed) as closed:
                    second.recv(timeout=10)
                assert closed.value.rcvd.code == 1013


def test_stream_api_key():
    with running_server(api_key="k") as url:
        base = url.replace("http", "ws") + "/v1/stream"
        with pytest.raises(Exception, match="1008|403|rejected"):
            with ws_client.connect(base) as conn:
                conn.recv(timeout=10)
        with ws_client.connect(base + "?api_key=k") as conn:
            assert json.loads(conn.recv(timeout=10))["type"] == "ready"
        with ws_client.connect(base, additional_headers={"Authorization": "Bearer k"}) as conn:
            assert json.loads(conn.recv(timeout=10))["type"] == "ready"


def test_a_missing_serve_extra_is_named_in_one_line(monkeypatch):
    import importlib.util

    from stt.errors import ConfigError
    from stt.serve.main import require_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wyoming" else real(name, *a)
    )
    require_extra(ServeConfig())  # Wyoming not asked for: nothing missing
    with pytest.raises(ConfigError, match=r"wyoming missing\): pip install 'wavenet-stt\[serve\]'"):
        require_extra(ServeConfig(wyoming="tcp://127.0.0.1:10300"))
