"""The page of `stt serve` (``stt/serve/static/``) in a real browser: Debian's chromium driven by
Playwright, its microphone a fake device playing a LibriSpeech clip. The live path (AudioWorklet
resampling to 16 kHz, WebSocket partials and finals), the file path (verbose_json, word times,
SRT/VTT downloads) and the API key carried from the page's URL.

Needs ``pip install -e .[serve,serve-test]`` and ``apt-get install chromium`` (scripts/setup.sh
with ``serve-test`` does both; ``STT_CHROMIUM`` names another chromium binary); skipped, saying
which is missing, without them. Set ``STT_SAVE_SCREENSHOT=1`` to keep the page's screenshot as
``bench/results/serve_page.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from serve_fixtures import running_server, shipped_engine

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "examples" / "07_libri_8629-261139-0000.flac"
CHROMIUM = os.environ.get("STT_CHROMIUM", "/usr/bin/chromium")
SAMPLE_RATE = 16000
MS = 1000  # Playwright's timeouts are in milliseconds

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    print("test_serve_page: playwright is missing: pip install -e .[serve-test]")
    pytest.skip(
        "playwright is not installed: pip install -e .[serve-test]", allow_module_level=True
    )
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):  # pragma: no cover
    print(f"test_serve_page: {CHROMIUM} is missing: apt-get install chromium")
    pytest.skip(
        f"chromium is not installed at {CHROMIUM}: apt-get install chromium "
        "(scripts/setup.sh serve-test does it as root)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.timeout(180)

# How the page's state reads, as JavaScript conditions for page.wait_for_function.
STATUS_CONNECTED = "document.querySelector('#status').textContent.startsWith('connected')"
HEARD_WORDS = """(n) => {
    const text = document.querySelector('#partial').textContent + ' '
        + document.querySelector('#finals').textContent.replace(/\\d+:\\d+\\.\\d/g, ' ');
    return text.split(/\\s+/).filter(Boolean).length >= n;
}"""
FINAL_WITH_WORDS = """(n) => [...document.querySelectorAll('#finals li:not(.unfinished)')]
    .some(li => li.querySelectorAll('.word').length >= n)"""
TRANSCRIBED = """() => document.querySelector('#transcript').textContent.trim().length > 0
    && document.querySelectorAll('#words .word').length > 0"""


@pytest.fixture(scope="module")
def offline():
    """The shipped offline model's transcript of SPEECH: what the file path must show."""
    return shipped_engine().transcriber.transcribe(SPEECH)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium with a fake microphone that plays SPEECH once, then silence."""
    audio, rate = sf.read(SPEECH, dtype="int16")
    padded = np.concatenate([audio, np.zeros(rate, dtype=np.int16)])  # 1 s of silence after
    wav = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(wav, padded, rate, subtype="PCM_16")
    args = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]  # fmt: skip
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def server():
    with running_server() as url:
        yield url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 900, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60 * MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def error_line(page) -> str:
    return page.eval_on_selector("#error", "e => e.hidden ? '' : e.textContent")


def fidelity(sent: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(gain, SNR in dB)`` of the 16 kHz audio the page sent against the clip it heard, both
    low-passed at 7 kHz (the worklet's filter starts cutting there), once aligned: the whole
    lag by cross-correlation, then the best fractional one (resamplers delay by parts of a
    sample)."""
    n = 1 << int(np.ceil(np.log2(len(sent) + len(reference))))
    xc = np.fft.irfft(np.fft.rfft(sent, n) * np.conj(np.fft.rfft(reference, n)), n)
    lag = int(np.argmax(xc))
    lag = lag - n if lag > n // 2 else lag
    s, r = (sent[lag:], reference) if lag >= 0 else (sent, reference[-lag:])
    m = min(len(s), len(r))
    spectrum_s, spectrum_r = np.fft.rfft(s[:m]), np.fft.rfft(r[:m])
    freqs = np.fft.rfftfreq(m)  # cycles per sample
    keep = freqs <= 7000 / 16000
    best = (0.0, -np.inf)
    for delay in np.linspace(-1, 1, 41):
        shifted = spectrum_r * np.exp(-2j * np.pi * freqs * delay)
        a, b = np.fft.irfft(spectrum_s * keep, m), np.fft.irfft(shifted * keep, m)
        gain = float(a @ b / (b @ b))
        noise = a - gain * b
        snr = float(10 * np.log10(gain * gain * (b @ b) / (noise @ noise)))
        best = max(best, (gain, snr), key=lambda x: x[1])
    return best


def test_microphone_streams_partials_and_finals(page, server, tmp_path):
    sent: list[bytes] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda f: isinstance(f, bytes) and sent.append(f)),
    )
    page.goto(server + "/")
    page.wait_for_function(STATUS_CONNECTED)
    assert page.is_disabled("#stop") and page.is_enabled("#record")

    page.click("#record")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('recording')")
    page.wait_for_function(
        "(document.querySelector('#partial').textContent"
        " + document.querySelector('#finals').textContent).trim().length > 0"
    )
    page.wait_for_function(HEARD_WORDS, arg=8)  # partials of 8 words: a final of 3 or more
    page.click("#stop")
    page.wait_for_function(FINAL_WITH_WORDS, arg=3, timeout=30 * MS)
    page.wait_for_function(STATUS_CONNECTED)  # the stream closed after its last final
    assert error_line(page) == ""
    assert page.is_enabled("#record") and page.is_disabled("#stop")

    finals = page.eval_on_selector_all(
        "#finals li",
        "lis => lis.map(li => ({time: li.querySelector('.time').textContent,"
        " words: [...li.querySelectorAll('.word')].map(w => ({word: w.textContent,"
        " start: +w.dataset.start, end: +w.dataset.end}))}))",
    )
    print("finals:", finals)
    assert all(re.fullmatch(r"\d+:\d\d\.\d–\d+:\d\d\.\d", f["time"]) for f in finals)
    assert all(0 <= w["start"] <= w["end"] <= 12 for f in finals for w in f["words"])

    # What went over the WebSocket is the clip, resampled cleanly: 100 ms frames of 16 kHz
    # int16 (the last one shorter), and the same sound at the same level, with no clicks.
    assert len(sent) >= 10 and all(len(f) == 3200 for f in sent[:-1]) and len(sent[-1]) <= 3200
    audio = np.frombuffer(b"".join(sent), dtype="<i2").astype(np.float64)
    reference = sf.read(SPEECH, dtype="int16")[0].astype(np.float64)
    audio = audio[: -SAMPLE_RATE // 5]  # not the silence after Stop
    # Half-second pieces, each aligned by itself: a render quantum the busy machine dropped
    # spoils one piece, while a resampler that clicks at its block edges spoils them all.
    piece = SAMPLE_RATE // 2
    measured = [
        fidelity(audio[i : i + piece], reference) for i in range(0, len(audio) - piece + 1, piece)
    ]
    gain, snr = (float(np.median(values)) for values in zip(*measured, strict=True))
    print(
        f"sent {len(audio) / SAMPLE_RATE:.2f} s of audio: median gain {gain:.3f}, median SNR "
        f"{snr:.1f} dB (pieces: {', '.join(f'{s:.0f}' for _, s in measured)} dB)"
    )
    assert 0.8 < gain < 1.25 and snr > 25

    shot = tmp_path / "page.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("STT_SAVE_SCREENSHOT") == "1":
        target = ROOT / "bench" / "results" / "serve_page.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def test_file_shows_words_and_downloads_subtitles(page, server, offline, tmp_path):
    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(server + "/")
    page.wait_for_function(STATUS_CONNECTED)
    page.set_input_files("#file", str(SPEECH))
    page.wait_for_function(TRANSCRIBED)
    assert error_line(page) == ""

    assert page.text_content("#transcript") == offline.text
    words = page.eval_on_selector_all(
        "#words .word",
        "ws => ws.map(w => ({word: w.querySelector('.w').textContent,"
        " time: w.querySelector('small').textContent, low: w.classList.contains('low'),"
        " start: +w.dataset.start, end: +w.dataset.end, confidence: +w.dataset.confidence}))",
    )
    assert [w["word"] for w in words] == [w.word for w in offline.words]
    for shown, word in zip(words, offline.words, strict=True):
        assert shown["start"] == pytest.approx(word.start, abs=1e-3)
        assert shown["end"] == pytest.approx(word.end, abs=1e-3)
        assert shown["time"] == f"{shown['start']:.2f}"
        assert shown["low"] == (shown["confidence"] < 0.5)
    meta = page.text_content("#meta")
    assert SPEECH.name in meta and "s of audio" in meta and "transcribed in" in meta

    from stt.writers import format_srt, format_vtt

    for button, ext, expected in (
        ("#download-srt", "srt", format_srt(offline)),
        ("#download-vtt", "vtt", format_vtt(offline)),
    ):
        with page.expect_download() as info:
            page.click(button)
        download = info.value
        assert download.suggested_filename == f"{SPEECH.stem}.{ext}"
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        text = saved.read_text()
        assert "-->" in text
        assert text == expected  # the page writes what the server's own writers would

    # 360 px wide: nothing sticks out sideways.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide at a 360 px viewport"


def test_api_key_from_the_page_url(page):
    with running_server(api_key="k") as url:
        assert page.goto(url + "/").status == 401
        assert page.goto(url + "/?api_key=wrong").status == 401

        page.goto(url + "/?api_key=k")
        page.wait_for_function(STATUS_CONNECTED)  # GET /v1/models took the key
        page.set_input_files("#file", str(SPEECH))
        page.wait_for_function(TRANSCRIBED)
        assert error_line(page) == ""

        page.click("#record")  # the WebSocket takes the key as ?api_key=
        page.wait_for_function(
            "document.querySelector('#status').textContent.startsWith('recording')"
        )
        page.click("#stop")
        page.wait_for_function(STATUS_CONNECTED)
        assert error_line(page) == ""
