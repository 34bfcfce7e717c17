"""Live streams in a process of their own (``stream_process=true``), so they do not share an
interpreter lock with the event loop or with the upload threads' beam searches.

In one process, the batch thread's Python (per-stream features, greedy decoding, the gate) and
the event loop's (WebSocket frames, JSON) take turns on one GIL. At 40 streams on 2 cores the
server used 1.3 cores while streams fell behind, which suggested the lock; measured side by side
(``scripts/bench_serve.py --compare``), this process kept up with as many streams as the
in-process batcher, so the lock was not the limit there and the option is off by default.

Here the causal model, the shared beam decoder and every stream's state live in a child process
(``spawn``: it starts clean, loads the model itself and forks its beam-search workers before it
has any thread), which runs the same :class:`~stt.serve.engine.StreamBatcher`; the server holds a
:class:`RemoteTranscriber` per stream, with the methods :class:`~stt.serve.live.LiveSession`
uses, that forwards each call over a pipe.

Messages are ``(request id, verb, stream id, argument)`` one way and ``(request id, ok, value)``
the other; values are the transcriber's own :class:`~stt.streaming.Partial` and
:class:`~stt.transcript.Transcript` (plain dataclasses) and exceptions. A stream's calls are
never concurrent (its session awaits each one), so the child may run them on any thread.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

START_SECONDS = 300.0  # loading the model and the LM's word list takes seconds, not minutes


def stream_factory(path: Path, beam_processes: int) -> Callable[[], Any]:
    """A factory of streaming transcribers for the causal checkpoint at ``path``: the model is
    read once, its streaming weights prepared once, and a beam decoder (its LM) built once, all
    shared by every stream. The beam search runs in ``beam_processes`` processes of its own,
    forked now, before any thread exists: in the streams' process it would hold the
    interpreter for tens of milliseconds per utterance, and every stream's partials would wait
    (measured: with 16 streams, 1.7 s p95 behind when their finals came due together)."""
    from stt.checkpoint import read_model
    from stt.decoding import build_decoder, resolve_decoder
    from stt.streaming import StreamingTranscriber, check_streamable

    model, vocab = read_model(path)
    check_streamable(model, str(path))
    config = resolve_decoder(path)
    beam = None
    if config.kind == "beam":
        beam = build_decoder(vocab, config, workers=beam_processes, isolate=True)
    template = StreamingTranscriber(model, vocab, config, name=str(path), threads=None,
                                    shared_beam=beam)  # fmt: skip

    def factory() -> StreamingTranscriber:
        return StreamingTranscriber(model, vocab, config, name=str(path), threads=None,
                                    shared_beam=beam, like=template)  # fmt: skip

    return factory


class _Clock:
    """The ``encoder.seconds`` a session reads: audio accepted in the current utterance."""

    seconds = 0.0


class RemoteTranscriber:
    """One stream's :class:`~stt.streaming.StreamingTranscriber`, living in the streams'
    process. ``encoder.seconds`` and ``settle_due`` are the child's values as of the last
    reply (a session only reads them between its own calls)."""

    def __init__(self, streams: StreamProcess, sid: int) -> None:
        self._streams, self.sid = streams, sid
        self.encoder = _Clock()
        self.settle_due = False

    def accept(self, samples: np.ndarray) -> Any:
        """Run one chunk now (in the child's next batch) and wait for its partial."""
        return self.heard(self._streams.submit("accept", self.sid, samples).result())

    def heard(self, reply: tuple[Any, bool]) -> Any:
        """Take an accept's reply ``(partial, settle_due)``: the partial."""
        partial, self.settle_due = reply
        self.encoder.seconds = partial.seconds
        return partial

    def settle(self) -> None:
        self._call("settle")
        self.settle_due = False

    def finish(self) -> Any:
        transcript = self._call("finish")
        self.encoder.seconds, self.settle_due = 0.0, False
        return transcript

    def reset(self) -> None:
        self._call("reset")
        self.encoder.seconds, self.settle_due = 0.0, False

    def close(self) -> None:
        """Free the stream's state in the child (not waited for)."""
        self._streams.forget(self.sid)

    def _call(self, verb: str) -> Any:
        return self._streams.submit(verb, self.sid).result()


class StreamProcess:
    """The server's side of the streams' process: starts it, loads the causal model at
    ``path`` there, and forwards calls; a reader thread resolves their futures.

    Raises:
        ConfigError, CheckpointError: the model cannot be loaded (raised here, in the parent).
    """

    def __init__(self, path: Path, beam_processes: int, gather_seconds: float = 0.02,
                 wait: bool = True, threads: int = 1) -> None:  # fmt: skip
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve_streams, args=(child, str(path), beam_processes, gather_seconds, threads),
            name="stt-streams",  # not a daemon: it forks beam-search workers of its own
        )  # fmt: skip
        self._process.start()
        child.close()
        self._ids = itertools.count()
        self._futures: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._reader: threading.Thread | None = None
        # Before multiprocessing's own exit hook, which waits for the child (LIFO order).
        atexit.register(self.close)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the child has loaded the model (``wait=False`` lets the caller load
        something else meanwhile: ``stt serve`` loads its offline model).

        Raises:
            ConfigError, CheckpointError: the child could not load the model.
        """
        if self._reader is not None:
            return
        try:
            if not self._conn.poll(START_SECONDS):
                raise EOFError
            ok, value = self._conn.recv()
        except EOFError:
            self._process.kill()
            ok, value = (
                False,
                RuntimeError(
                    f"the live-stream process did not start (exit code {self._process.exitcode})"
                ),
            )
        if not ok:
            self._closed = True
            self._process.join()
            atexit.unregister(self.close)
            raise value
        self._reader = threading.Thread(target=self._read, name="stt-streams-reader", daemon=True)
        self._reader.start()

    def open(self) -> RemoteTranscriber:
        """A new stream."""
        sid = next(self._ids)
        self.submit("open", sid).result()
        return RemoteTranscriber(self, sid)

    async def accept(self, transcriber: RemoteTranscriber, samples: np.ndarray) -> Any:
        """The stream's next chunk, run in the child's next batch: its partial."""
        reply = await asyncio.wrap_future(self.submit("accept", transcriber.sid, samples))
        return transcriber.heard(reply)

    def stats(self) -> dict[str, float]:
        """The child's batcher counters (:meth:`StreamBatcher.stats`)."""
        return self.submit("stats", -1).result(timeout=10)

    def forget(self, sid: int) -> None:
        with self._lock, contextlib.suppress(RuntimeError):
            self._send("close", sid)

    def submit(self, verb: str, sid: int, argument: Any = None) -> Future:
        future: Future = Future()
        with self._lock:
            self._futures[self._send(verb, sid, argument)] = future
        return future

    def _send(self, verb: str, sid: int, argument: Any = None) -> int:
        """Send one request (the lock held): its id."""
        if self._closed:
            raise RuntimeError("the live-stream process has stopped")
        rid = next(self._ids)
        try:
            self._conn.send((rid, verb, sid, argument))
        except OSError:  # the child is gone (the reader thread will fail what is pending)
            self._closed = True
            raise RuntimeError("the live-stream process has stopped") from None
        return rid

    def close(self) -> None:
        """Stop the child (it runs what is pending first) and wait for it."""
        with self._lock:
            with contextlib.suppress(RuntimeError):
                self._send("stop", -1)
            self._closed = True
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
        if self._reader is not None:
            self._reader.join(timeout=5)
        atexit.unregister(self.close)

    def _read(self) -> None:
        while True:
            try:
                rid, ok, value = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._futures.pop(rid, None)
            if future is not None and not future.done():
                (future.set_result if ok else future.set_exception)(value)
        with self._lock:  # the child is gone: nothing pending will be answered
            self._closed = True
            pending, self._futures = self._futures, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(RuntimeError("the live-stream process has stopped"))


def _serve_streams(
    conn, path: str, beam_processes: int, gather_seconds: float, threads: int = 1
) -> None:
    """The child: load the model, then answer requests until "stop" or the pipe closes."""
    import torch

    from stt.serve.engine import StreamBatcher
    from stt.streaming import StreamingTranscriber

    torch.set_num_threads(1)
    try:
        factory = stream_factory(Path(path), beam_processes)
    except Exception as exc:  # noqa: BLE001 - raised again in the parent
        conn.send((False, exc))
        return
    conn.send((True, None))
    send_lock = threading.Lock()

    def reply(rid: int, ok: bool, value: Any) -> None:
        with send_lock:
            try:
                conn.send((rid, ok, value))
            except (TypeError, AttributeError, ValueError) as exc:  # an unpicklable error
                conn.send((rid, False, RuntimeError(f"{type(value).__name__}: {value} ({exc})")))

    def answer(rid: int, future: Future, finish: Callable[[Any], Any] = lambda v: v) -> None:
        def done(f: Future) -> None:
            exc = f.exception()
            reply(rid, exc is None, finish(f.result()) if exc is None else exc)

        future.add_done_callback(done)

    streams: dict[int, StreamingTranscriber] = {}
    batcher = StreamBatcher(StreamingTranscriber.accept_together, gather_seconds, threads)
    pool = ThreadPoolExecutor(max(beam_processes, 1), thread_name_prefix="stt-stream",
                              initializer=torch.set_num_threads, initargs=(1,))  # fmt: skip
    while True:
        try:
            rid, verb, sid, argument = conn.recv()
        except (EOFError, OSError):
            break
        if verb == "stop":
            break
        try:
            if verb == "open":
                streams[sid] = factory()
                reply(rid, True, None)
            elif verb == "close":
                stream = streams.pop(sid, None)
                if stream is not None:
                    stream.close()
            elif verb == "stats":
                reply(rid, True, batcher.stats())
            elif verb == "accept":
                stream = streams[sid]
                answer(rid, batcher.submit(stream, argument),
                       lambda partial, s=stream: (partial, s.settle_due))  # fmt: skip
            elif verb in ("settle", "finish", "reset"):
                answer(rid, pool.submit(getattr(streams[sid], verb)))
            else:
                raise ValueError(f"unknown request {verb!r}")
        except Exception as exc:  # noqa: BLE001 - a bad request fails that request only
            reply(rid, False, exc)
    batcher.close()
    pool.shutdown(wait=True)
    for stream in streams.values():
        stream.close()
    conn.close()
