// The stt page: live transcription from the microphone over WS /v1/stream, and whole files through
// POST /v1/audio/transcriptions (verbose_json). No dependencies, no build step, works offline.
//
// An API key given in the page's own URL (/?api_key=KEY) goes along as Authorization: Bearer KEY
// on requests and as ?api_key=KEY on the WebSocket (browsers cannot set its headers).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"), error: $("error"), record: $("record"), stop: $("stop"), clear: $("clear"),
    level: $("level"), partial: $("partial"), finals: $("finals"), drop: $("drop"), file: $("file"),
    prompt: $("prompt"), result: $("result"), meta: $("meta"), player: $("player"),
    transcript: $("transcript"), words: $("words"), srt: $("download-srt"), vtt: $("download-vtt"),
  };

  const SAMPLE_RATE = 16000;
  const FRAME_MS = 100;
  const LOW_CONFIDENCE = 0.5; // words below this are marked
  const END_TIMEOUT_MS = 5000; // after Stop, how long to wait for the last final before closing
  const MAX_QUEUED = 200; // frames (20 s) held while the WebSocket is still connecting

  const apiKey = new URLSearchParams(location.search).get("api_key") || "";
  const authHeaders = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  let idleStatus = "idle";
  let uploading = false; // a file is being transcribed

  // ------------------------------------------------------------------------------------------
  // Status, errors, formatting
  // ------------------------------------------------------------------------------------------

  function setStatus(text) {
    el.status.textContent = text;
  }

  function showError(text) {
    el.error.textContent = text || "";
    el.error.hidden = !text;
  }

  async function describe(response) {
    // "401 Unauthorized: missing or wrong API key ..." from an error response of any shape
    let message = "";
    try {
      const text = await response.text();
      try {
        const body = JSON.parse(text);
        message = (body.error && body.error.message) || body.detail || text;
        if (typeof message !== "string") message = JSON.stringify(message);
      } catch {
        message = text;
      }
    } catch {
      // no body
    }
    message = message.replace(/\s+/g, " ").trim().slice(0, 300);
    return `${response.status} ${response.statusText}`.trim() + (message ? `: ${message}` : "");
  }

  function clock(seconds) {
    // 0:07.4
    const tenths = Math.max(0, Math.round(seconds * 10));
    const minutes = Math.floor(tenths / 600);
    return `${minutes}:${((tenths % 600) / 10).toFixed(1).padStart(4, "0")}`;
  }

  function stamp(seconds, marker) {
    // 00:00:07,400 (SRT) or 00:00:07.400 (WebVTT), as the server's writers round them
    let ms = Math.max(0, Math.round(seconds * 1000));
    const h = Math.floor(ms / 3600000);
    ms -= h * 3600000;
    const m = Math.floor(ms / 60000);
    ms -= m * 60000;
    const s = Math.floor(ms / 1000);
    ms -= s * 1000;
    const two = (n) => String(n).padStart(2, "0");
    return `${two(h)}:${two(m)}:${two(s)}${marker}${String(ms).padStart(3, "0")}`;
  }

  function wordSpan(w, withTime) {
    const span = document.createElement("span");
    span.className = "word";
    const confidence = typeof w.confidence === "number" ? w.confidence : 1;
    if (confidence < LOW_CONFIDENCE) span.classList.add("low");
    span.dataset.start = w.start;
    span.dataset.end = w.end;
    span.dataset.confidence = confidence;
    span.title = `${w.start.toFixed(2)}–${w.end.toFixed(2)} s · confidence ${Math.round(confidence * 100)}%`;
    if (withTime) {
      const word = document.createElement("span");
      word.className = "w";
      word.textContent = w.word;
      const time = document.createElement("small");
      time.textContent = w.start.toFixed(2);
      span.append(word, time);
    } else {
      span.textContent = w.word;
    }
    return span;
  }

  // ------------------------------------------------------------------------------------------
  // Microphone → WS /v1/stream
  // ------------------------------------------------------------------------------------------

  let live = null; // the recording in progress, if any

  function addFinal(message, unfinished) {
    const text = (message.text || "").trim();
    if (!text) return; // an utterance of silence
    const li = document.createElement("li");
    li.dataset.reason = message.reason || "";
    const time = document.createElement("span");
    time.className = "time";
    const start = message.start != null ? message.start : (message.words[0] || {}).start || 0;
    const last = message.words[message.words.length - 1];
    const end = message.end != null ? message.end : last ? last.end : start;
    time.textContent = `${clock(start)}–${clock(end)}`;
    const body = document.createElement("span");
    body.className = "text";
    if (message.words && message.words.length) {
      message.words.forEach((w, i) => {
        if (i) body.append(" ");
        body.append(wordSpan(w, false));
      });
    } else {
      body.textContent = text;
    }
    li.append(time, " ", body);
    if (unfinished) {
      li.classList.add("unfinished");
      li.title = "the server's final for this utterance did not arrive: this is its last partial";
    }
    el.finals.append(li);
    li.scrollIntoView({ block: "nearest" });
  }

  function send(session, data) {
    const ws = session.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(data);
    } else if (!ws || ws.readyState === WebSocket.CONNECTING) {
      if (session.queue.length < MAX_QUEUED) session.queue.push(data);
    }
  }

  function onWorklet(session, data) {
    if (data.flushed) {
      session.flushed = true;
      send(session, JSON.stringify({ type: "end" }));
      session.endSent = true;
      stopAudio(session);
      return;
    }
    if (session.flushed || !data.pcm) return;
    el.level.value = Math.min(1, data.peak * 1.5);
    send(session, data.pcm);
  }

  function onMessage(session, raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    if (message.type === "ready") {
      session.ready = true;
      if (!session.ending) setStatus("recording — speak now");
    } else if (message.type === "partial") {
      el.partial.textContent = message.text || "";
      session.partial = message;
    } else if (message.type === "final") {
      el.partial.textContent = "";
      session.partial = null;
      addFinal(message, false);
      if (session.endSent && (message.reason === "end" || message.reason === "close")) {
        closeSocket(session);
      }
    } else if (message.type === "error") {
      session.errorShown = true;
      showError(`live stream: ${message.message}`);
    }
  }

  function openSocket(session) {
    const url = new URL("v1/stream", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    url.searchParams.set("format", "s16le");
    url.searchParams.set("sample_rate", String(SAMPLE_RATE));
    if (apiKey) url.searchParams.set("api_key", apiKey);
    const ws = new WebSocket(url.href);
    ws.binaryType = "arraybuffer";
    session.ws = ws;
    ws.onopen = () => {
      session.opened = true;
      for (const data of session.queue) ws.send(data);
      session.queue = [];
    };
    ws.onmessage = (event) => onMessage(session, event.data);
    ws.onerror = () => {}; // the close event that follows says more
    ws.onclose = (event) => {
      if (!session.ending && !session.errorShown) {
        showError(
          session.opened
            ? `live stream closed by the server (code ${event.code}${event.reason ? `: ${event.reason}` : ""})`
            : "could not open the live stream: the server refused it (wrong API key?) or is not reachable",
        );
      }
      finish(session);
    };
  }

  function closeSocket(session) {
    const ws = session.ws;
    if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) {
      ws.close(1000, "done");
    }
    finish(session);
  }

  function stopAudio(session) {
    if (session.stream) session.stream.getTracks().forEach((t) => t.stop());
    if (session.node) session.node.port.onmessage = null;
    if (session.ctx && session.ctx.state !== "closed") session.ctx.close().catch(() => {});
    session.stream = session.node = session.ctx = null;
    el.level.value = 0;
  }

  function finish(session) {
    if (session.finished) return;
    session.finished = true;
    clearTimeout(session.timer);
    stopAudio(session);
    if (session.partial && session.partial.text) addFinal(session.partial, true);
    el.partial.textContent = "";
    if (live === session) live = null;
    el.record.disabled = false;
    el.stop.disabled = true;
    setStatus(uploading ? "transcribing…" : idleStatus);
  }

  async function startRecording() {
    if (live) return;
    showError("");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("the microphone needs a secure page: open this one over https or at localhost");
      return;
    }
    if (!window.AudioWorkletNode) {
      showError("this browser has no AudioWorklet: use a current Chrome, Firefox or Safari");
      return;
    }
    const session = { queue: [], partial: null };
    live = session;
    el.record.disabled = true;
    setStatus("asking for the microphone…");
    try {
      session.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      session.ctx = new AudioContext();
      await session.ctx.audioWorklet.addModule("static/pcm-worklet.js");
      session.node = new AudioWorkletNode(session.ctx, "pcm-worklet", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { targetRate: SAMPLE_RATE, frameMs: FRAME_MS },
      });
      session.node.port.onmessage = (event) => onWorklet(session, event.data);
      const source = session.ctx.createMediaStreamSource(session.stream);
      const mute = session.ctx.createGain();
      mute.gain.value = 0; // the graph must reach the destination to run; nothing is heard
      source.connect(session.node).connect(mute).connect(session.ctx.destination);
      await session.ctx.resume();
    } catch (err) {
      session.ending = true;
      finish(session);
      const name = err && err.name && err.name !== "Error" ? `${err.name}: ` : "";
      showError(`microphone: ${name}${(err && err.message) || err}`);
      return;
    }
    setStatus("connecting…");
    openSocket(session);
    el.stop.disabled = false;
  }

  function stopRecording() {
    const session = live;
    if (!session || session.ending) return;
    session.ending = true;
    el.stop.disabled = true;
    setStatus("finishing…");
    if (session.stream) session.stream.getTracks().forEach((t) => t.stop());
    if (session.node) {
      session.node.port.postMessage("flush"); // its answer sends {"type": "end"}
    } else {
      send(session, JSON.stringify({ type: "end" }));
      session.endSent = true;
    }
    session.timer = setTimeout(() => closeSocket(session), END_TIMEOUT_MS);
  }

  el.record.addEventListener("click", startRecording);
  el.stop.addEventListener("click", stopRecording);
  el.clear.addEventListener("click", () => {
    el.finals.replaceChildren();
    el.partial.textContent = "";
  });
  window.addEventListener("pagehide", () => live && closeSocket(live));

  // ------------------------------------------------------------------------------------------
  // Files → POST /v1/audio/transcriptions
  // ------------------------------------------------------------------------------------------

  let uploads = 0; // only the latest upload's answer is shown
  let subtitles = null; // {base, segments} of the transcript shown
  let playerURL = null;

  function cues(segments) {
    return segments
      .map((s) => ({ start: s.start, end: s.end, text: (s.text || "").replace(/\s+/g, " ").trim() }))
      .filter((c) => c.text);
  }

  function toSRT(segments) {
    return cues(segments)
      .map((c, i) => `${i + 1}\n${stamp(c.start, ",")} --> ${stamp(c.end, ",")}\n${c.text}\n`)
      .join("\n");
  }

  function toVTT(segments) {
    return (
      "WEBVTT\n\n" +
      cues(segments)
        .map((c) => `${stamp(c.start, ".")} --> ${stamp(c.end, ".")}\n${c.text}\n\n`)
        .join("")
    );
  }

  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function render(file, body, seconds) {
    const words = body.words || (body.segments || []).flatMap((s) => s.words || []);
    const duration = body.duration || 0;
    el.transcript.textContent = body.text || "(no speech found)";
    el.words.replaceChildren(...words.map((w) => wordSpan(w, true)));
    const speed = seconds > 0 && duration > 0 ? ` (${(duration / seconds).toFixed(1)}× real time)` : "";
    const low = words.filter((w) => w.confidence < LOW_CONFIDENCE).length;
    el.meta.textContent =
      `${file.name} · ${duration.toFixed(2)} s of audio · transcribed in ${seconds.toFixed(2)} s${speed}` +
      ` · ${words.length} words${low ? `, ${low} low-confidence` : ""}`;
    if (playerURL) URL.revokeObjectURL(playerURL);
    playerURL = URL.createObjectURL(file);
    el.player.src = playerURL;
    const segments =
      body.segments && body.segments.length
        ? body.segments
        : body.text
          ? [{ start: 0, end: duration, text: body.text }]
          : [];
    subtitles = { base: file.name.replace(/\.[^.]*$/, "") || "transcript", segments };
    el.srt.disabled = el.vtt.disabled = false;
    el.result.hidden = false;
  }

  async function upload(file) {
    if (!file) return;
    const id = ++uploads;
    uploading = true;
    showError("");
    setStatus(`transcribing ${file.name}…`);
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("response_format", "verbose_json");
    if (el.prompt.value.trim()) form.append("prompt", el.prompt.value.trim());
    const started = performance.now();
    try {
      const response = await fetch("v1/audio/transcriptions", { method: "POST", headers: authHeaders, body: form });
      if (id !== uploads) return;
      if (!response.ok) {
        showError(await describe(response));
        return;
      }
      const body = await response.json();
      if (id !== uploads) return;
      render(file, body, (performance.now() - started) / 1000);
    } catch (err) {
      if (id === uploads) showError(`upload failed: ${(err && err.message) || err}`);
    } finally {
      if (id === uploads) {
        uploading = false;
        if (!live) setStatus(idleStatus);
      }
    }
  }

  el.file.addEventListener("change", () => upload(el.file.files[0]));
  el.srt.addEventListener("click", () => {
    if (subtitles) download(`${subtitles.base}.srt`, toSRT(subtitles.segments), "application/x-subrip");
  });
  el.vtt.addEventListener("click", () => {
    if (subtitles) download(`${subtitles.base}.vtt`, toVTT(subtitles.segments), "text/vtt");
  });
  el.words.addEventListener("click", (event) => {
    const span = event.target.closest(".word");
    if (!span || !el.player.src) return;
    el.player.currentTime = Number(span.dataset.start);
    el.player.play().catch(() => {});
  });

  // Drop anywhere on the zone; elsewhere a dropped file must not replace the page.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  el.drop.addEventListener("dragover", () => el.drop.classList.add("over"));
  el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
  el.drop.addEventListener("drop", (event) => {
    el.drop.classList.remove("over");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) upload(file);
  });

  // ------------------------------------------------------------------------------------------
  // On load: is the server there, does the key work, can it stream?
  // ------------------------------------------------------------------------------------------

  async function probe() {
    try {
      const [models, health] = await Promise.all([
        fetch("v1/models", { headers: authHeaders }),
        fetch("health").catch(() => null),
      ]);
      if (!models.ok) {
        showError(await describe(models));
        setStatus("not connected");
        return;
      }
      const model = ((await models.json()).data || [{}])[0].id || "";
      idleStatus = `connected · idle${model ? ` · ${model}` : ""}`;
      if (health && health.ok && (await health.json()).streaming === false) {
        el.record.disabled = true;
        el.record.title = "this server has no streaming model (started with --streaming-model none)";
      }
      if (!live && !uploading) setStatus(idleStatus);
    } catch (err) {
      showError(`cannot reach the server: ${(err && err.message) || err}`);
      setStatus("not connected");
    }
  }

  probe();
})();
