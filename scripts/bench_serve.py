"""`stt serve` under load, on loopback: uploads and live streams (writes bench/results/serve.json).

The server runs as its own process (``stt serve`` with the shipped models, as a user starts it);
this process is the load: asyncio clients, so one thread drives every connection.

* Uploads: 5 s of real speech (a LibriSpeech dev reader) as WAV, posted by 1, 4 and 16
  concurrent clients, each sending the next request when its answer arrives; requests per second
  and p50/p95 latency (request sent -> transcript received).
* Streams: N concurrent WebSocket streams, each paced at real time in 100 ms chunks of real
  speech with pauses, for ``--stream-seconds``. A partial's latency is its arrival time minus the
  time the chunk that completed the audio it covers was sent (partials carry that audio's
  stream time). A stream keeps up if its p95 partial latency stays under 1 s (and its final
  answer comes at all); N grows until a stream falls behind. Every stream sends its end message
  at the same moment, so the final latency (beam search + LM over the last utterance, all
  streams at once) is reported but is a worst case, not a criterion.

The server's idle memory (its process tree's summed RSS) is recorded for each server started.

Both sides share this machine's cores, so the numbers are a floor for a server with the machine
to itself. Targets (issue 16): >= 40 real-time streams with p95 partial latency <= 300 ms, and a
5 s upload answered in <= 150 ms p50 at one client.

Usage: python scripts/bench_serve.py [--quick] [--port 8790] [--compare stream_process=false]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from machine import load_average, write_results  # noqa: E402

from stt.audio import SAMPLE_RATE, load_audio  # noqa: E402

EXAMPLES = ROOT / "examples"
UPLOAD_SOURCE = EXAMPLES / "07_libri_8629-261139-0000.flac"
STREAM_SOURCES = [EXAMPLES / n for n in ("07_libri_8629-261139-0000.flac",
                  "08_libri_3242-8112-0032.flac", "10_ljspeech_LJ050-0276.flac")]  # fmt: skip
CHUNK_SECONDS = 0.1


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (the server's beam-search workers, its stream
    process), from /proc (Linux); a process that has just exited is left out."""
    try:  # each thread (task) lists the children it forked
        children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]  # fmt: skip
    except OSError:
        return []
    return [pid, *(p for child in children for p in process_tree(child))]


def tree_proc_files(pid: int, name: str) -> list[str]:
    """``/proc/P/name`` of each process P in :func:`process_tree` that is still there."""
    texts = []
    for p in process_tree(pid):
        try:
            texts.append(Path(f"/proc/{p}/{name}").read_text())
        except OSError:
            continue
    return texts


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its children."""
    total = 0.0
    for stat in tree_proc_files(pid, "stat"):
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and its children, summed (pages they share count
    once per process, so this is an upper bound), in MB."""
    kb = [int(line.split()[1]) for status in tree_proc_files(pid, "status")
          for line in status.splitlines() if line.startswith("VmRSS:")]  # fmt: skip
    return round(sum(kb) / 1024, 1)


def start_server(port: int, overrides: tuple[str, ...] = ()) -> subprocess.Popen:
    stt = str(Path(sys.executable).parent / "stt")
    proc = subprocess.Popen(
        [stt, "serve", "--port", str(port), "log_level=warning", *overrides],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"stt serve exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("stt serve did not start within 180 s")


# ---------------------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------------------


def five_seconds_wav() -> bytes:
    samples = load_audio(UPLOAD_SOURCE)[: 5 * SAMPLE_RATE]
    buf = io.BytesIO()
    sf.write(buf, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


async def upload_load(url: str, wav: bytes, clients: int, requests: int) -> dict:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    todo = list(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        while todo:
            todo.pop()
            t0 = time.perf_counter()
            r = await http.post(
                url + "/v1/audio/transcriptions", files={"file": ("five.wav", wav)},
                data={"model": "whisper-1"},
            )  # fmt: skip
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(timeout=120) as http:
        await http.post(url + "/v1/audio/transcriptions", files={"file": ("w.wav", wav)})  # warm
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "requests": requests,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "requests_per_second": round(len(latencies) / wall, 2),
        "audio_seconds_per_second": round(5 * len(latencies) / wall, 1),
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
    }


# ---------------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------------


def stream_audio(seconds: float) -> np.ndarray:
    """Real speech with 0.5 s pauses, looped to ``seconds``, as int16."""
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    one = np.concatenate([x for p in STREAM_SOURCES for x in (load_audio(p), pause)])
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(one)))
    audio = np.tile(one, reps)[: int(seconds * SAMPLE_RATE)]
    return (np.clip(audio, -1, 1) * 32767).astype("<i2")


async def one_stream(url: str, pcm: np.ndarray, offset: float) -> dict:
    import websockets

    chunk = int(CHUNK_SECONDS * SAMPLE_RATE)
    sent_at: list[float] = []  # perf_counter time each chunk was sent
    latencies: list[float] = []
    final_latency = None
    async with websockets.connect(url.replace("http", "ws") + "/v1/stream",
                                  max_size=None) as ws:  # fmt: skip
        if json.loads(await ws.recv())["type"] == "error":  # refused: the server is full
            return {"latencies": [], "final_latency": None, "refused": True}
        done = asyncio.Event()

        async def receive() -> None:
            nonlocal final_latency
            async for raw in ws:
                message = json.loads(raw)
                now = time.perf_counter()
                if message["type"] == "partial":
                    index = min(int(np.ceil(message["seconds"] / CHUNK_SECONDS - 1e-6)) - 1,
                                len(sent_at) - 1)  # fmt: skip
                    if index >= 0:
                        latencies.append(now - sent_at[index])
                elif message["type"] == "final" and message["reason"] == "end":
                    final_latency = now - sent_at[-1]
                    done.set()
                    return

        receiver = asyncio.create_task(receive())
        await asyncio.sleep(offset)  # streams start spread over one chunk
        start = time.perf_counter()
        for i in range(0, len(pcm), chunk):
            target = start + (i // chunk) * CHUNK_SECONDS
            await asyncio.sleep(max(0.0, target - time.perf_counter()))
            sent_at.append(time.perf_counter())
            await ws.send(pcm[i : i + chunk].tobytes())
        sent_at.append(time.perf_counter())
        await ws.send(json.dumps({"type": "end"}))
        try:
            await asyncio.wait_for(done.wait(), timeout=30)
        except asyncio.TimeoutError:
            pass
        receiver.cancel()
    return {"latencies": latencies, "final_latency": final_latency, "refused": False}


async def stream_load(url: str, streams: int, seconds: float, server_pid: int) -> dict:
    import httpx

    pcm = stream_audio(seconds)
    offsets = [CHUNK_SECONDS * i / streams for i in range(streams)]
    before = httpx.get(url + "/health").json()["stream_batches"]
    cpu_before = tree_cpu_seconds(server_pid), time.process_time()
    start = time.perf_counter()
    results = await asyncio.gather(*(one_stream(url, pcm, o) for o in offsets))
    wall = time.perf_counter() - start
    server_cpu = tree_cpu_seconds(server_pid) - cpu_before[0]
    client_cpu = time.process_time() - cpu_before[1]
    after = httpx.get(url + "/health").json()["stream_batches"]
    batches = after["batches"] - before["batches"]
    all_latencies = [x for r in results for x in r["latencies"]]
    finals = [r["final_latency"] for r in results]
    behind = sum(
        1 for r in results
        if r["final_latency"] is None
        or not r["latencies"] or np.percentile(r["latencies"], 95) > 1.0
    )  # fmt: skip
    return {
        "streams": streams,
        "seconds_each": seconds,
        "partials": len(all_latencies),
        "partial_latency_p50_s": percentile(all_latencies, 50),
        "partial_latency_p95_s": percentile(all_latencies, 95),
        "final_latency_max_s": None if None in finals else round(max(finals), 4),
        "streams_behind": behind,  # refused streams count as behind
        "streams_refused": sum(r["refused"] for r in results),
        # The server's stream batcher: chunks per batch, and its share of the wall time busy.
        "chunks_per_batch": round((after["chunks"] - before["chunks"]) / max(batches, 1), 2),
        "batcher_busy_share": round((after["busy_seconds"] - before["busy_seconds"]) / wall, 3),
        # Cores' worth of CPU each side used (this machine has os.cpu_count() of them).
        "server_cpu_cores": round(server_cpu / wall, 3),
        "client_cpu_cores": round(client_cpu / wall, 3),
    }


# ---------------------------------------------------------------------------------------------


async def run(url: str, quick: bool, stream_seconds: float, server_pid: int) -> dict:
    wav = five_seconds_wav()
    uploads = []
    for clients in (1, 4, 16):
        requests = max(8 if quick else 24, 2 * clients)
        uploads.append(await upload_load(url, wav, clients, requests))
        print(f"uploads: {uploads[-1]}", flush=True)
    return {"uploads": uploads, "streams": await stream_ladder(url, stream_seconds, server_pid)}


async def stream_ladder(url: str, stream_seconds: float, server_pid: int) -> list[dict]:
    """More and more concurrent streams, until one falls behind or the server's
    ``max_streams`` is reached (past it, the server refuses new streams by design)."""
    import httpx

    limit = httpx.get(url + "/health").json()["max_streams"]
    streams = []
    for n in sorted({n for n in (8, 16, 24, 32, 40, 48, 56, 64, 80, 96) if n < limit} | {limit}):
        streams.append(await stream_load(url, n, stream_seconds, server_pid))
        print(f"streams: {streams[-1]}", flush=True)
        if streams[-1]["streams_behind"]:
            break
    return streams


def compare(port: int, override: str, stream_seconds: float) -> dict:
    """The stream ladder again, on a server started with ``override`` (same run, same
    machine state as near as a shared machine allows): e.g. ``stream_process=false``."""
    proc = start_server(port, (override,))
    idle_rss = idle_rss_mb(proc.pid)
    try:
        ladder = asyncio.run(stream_ladder(f"http://127.0.0.1:{port}", stream_seconds, proc.pid))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    kept = [s["streams"] for s in ladder if not s["streams_behind"]]
    return {"override": override, "server_rss_mb_idle": idle_rss,
            "max_realtime_streams": max(kept, default=0), "streams": ladder}  # fmt: skip


def idle_rss_mb(pid: int) -> float:
    """The started server's resident memory, once its worker processes are up and idle."""
    time.sleep(3)
    return tree_rss_mb(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--quick", action="store_true", help="fewer requests, 8 s streams")
    parser.add_argument("--stream-seconds", type=float, default=None)
    parser.add_argument("--name", default="serve")
    parser.add_argument(
        "--compare", metavar="KEY=VALUE", action="append", default=[],
        help="also run the stream ladder on a server with this setting (e.g. "
        "stream_process=false), after the main run",
    )  # fmt: skip
    args = parser.parse_args()
    stream_seconds = args.stream_seconds or (8.0 if args.quick else 15.0)
    load_before = load_average()
    proc = start_server(args.port)
    idle_rss = idle_rss_mb(proc.pid)
    try:
        url = f"http://127.0.0.1:{args.port}"
        results = asyncio.run(run(url, args.quick, stream_seconds, proc.pid))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    results["server_rss_mb_idle"] = idle_rss
    results["comparisons"] = [compare(args.port, o, stream_seconds) for o in args.compare]
    kept = [s for s in results["streams"] if not s["streams_behind"]]
    best = kept[-1] if kept else None
    one = results["uploads"][0]
    summary = {
        "max_realtime_streams": best["streams"] if best else 0,
        "partial_latency_p95_s_at_max": best["partial_latency_p95_s"] if best else None,
        "upload_5s_p50_s_one_client": one["p50_s"],
        "targets": {"streams": 40, "partial_latency_p95_s": 0.3, "upload_5s_p50_s": 0.15},
    }
    summary["met"] = {
        "streams": bool(best) and best["streams"] >= 40
        and best["partial_latency_p95_s"] <= 0.3,
        "upload": one["p50_s"] is not None and one["p50_s"] <= 0.15,
    }  # fmt: skip
    out = write_results(args.name, {
        "benchmark": "serve",
        "command": "python scripts/bench_serve.py " + " ".join(sys.argv[1:]),
        "notes": [
            "server: `stt serve` with the shipped models (beam search + 4-gram LM offline, "
            "causal model + greedy partials + beam final for streams; stream_process as "
            "conf/serve.yaml sets it, a comparison's override on top), its own process",
            "clients: one asyncio process on the same 2 cores (its CPU time competes with "
            "the server's)",
            "server_rss_mb_idle: the server's process tree's resident memory summed, 3 s "
            "after /health first answers (shared pages count once per process)",
            "a stream falls behind if its p95 partial latency exceeds 1 s (or no final comes); "
            "the ladder stops at the first such load; every stream ends at the same moment, so "
            "final_latency_max_s is a worst case",
        ],
        "load_average_before_after": [load_before, load_average()],
        "cpu_count": os.cpu_count(),
        "summary": summary,
        **results,
    })  # fmt: skip
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
