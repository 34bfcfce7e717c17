"""The bounded pools every endpoint runs its transcriptions in.

One :class:`Engine` serves the HTTP API, the WebSocket streams and the Wyoming server alike: it
holds the offline transcriber (files and Wyoming utterances) and a factory of live-stream
transcribers (the causal model and one shared beam decoder, so the LM is loaded once, not once
per connection). The event loop never runs a model: whole files go to a thread pool, and the
chunks of all live streams to one batching thread (:class:`StreamBatcher`), which runs the chunks
that arrive together through the network as one batch; final decodes of utterances go to a pool
of their own. So a burst of uploads cannot stall live partials. Admission is
bounded: past ``workers + queue`` files in flight, :class:`Busy` tells the caller to answer 503
with ``Retry-After`` rather than let a queue grow without limit.

With ``stream_process`` the live streams run in a process of their own
(:mod:`stt.serve.stream_process`), with the same batcher there, so their Python does not take
turns with the event loop's and the upload threads' on one interpreter lock. The engine knows
its transcribers only by the narrow interface below (:class:`FileTranscriber`), so the protocol
modules that hold an engine never import the model code; the models are loaded by
:mod:`stt.serve.main`.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from stt.errors import ConfigError
from stt.version import __version__

T = TypeVar("T")

MODEL_ID = "wavenet-stt"
"""The id ``GET /v1/models`` lists; names OpenAI clients send are accepted as aliases of it."""

MODEL_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")


_LANGUAGE_SPLIT = re.compile(r"[-_\s(]")
ENGLISH = ("en", "eng", "english")


def is_english(language: str | None) -> bool:
    """Whether a requested language is English, the model's only one: ``en``, ``eng`` or
    ``english`` in any case, with or without a region (``en-US``, ``en_GB``, ``English (UK)``).
    None, empty or ``*`` (any) count as English. The one rule for every protocol."""
    if language is None or language.strip() in ("", "*"):
        return True
    return _LANGUAGE_SPLIT.split(language.strip().lower(), maxsplit=1)[0] in ENGLISH


class Busy(Exception):
    """Too many requests in flight: answer 503 and ask the client to come back later."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("the server is busy: too many transcriptions in flight, retry later")
        self.retry_after = retry_after


@dataclass(frozen=True)
class EngineInfo:
    """What ``/v1/models``, ``/health`` and Wyoming's ``info`` say about the models."""

    model_id: str
    model_path: str
    decoder: str
    streaming_model_path: str | None
    version: str = __version__


class FileTranscriber(Protocol):
    """What the engine needs of :class:`stt.transcribe.Transcriber`."""

    def transcribe(
        self, audio: Any, progress: bool = False, hotwords: list[str] | None = None
    ) -> Any: ...

    def close(self) -> None: ...


AcceptTogether = Callable[[Sequence[Any], Sequence[np.ndarray]], Sequence[Any]]
"""One chunk for each of several streams -> their partials, as one batch
(:meth:`stt.streaming.StreamingTranscriber.accept_together`)."""


def _one_by_one(transcribers: Sequence[Any], chunks: Sequence[np.ndarray]) -> list[Any]:
    return [t.accept(c) for t, c in zip(transcribers, chunks, strict=True)]


class StreamBatcher:
    """One thread that runs the chunks of every live stream: whatever has arrived while the
    previous batch ran goes through the network as the next batch. A chunk's step is mostly
    per-call overhead (measured: 40 streams cost ~1/5 as much together as one by one), and with
    the GIL more threads would not run steps side by side anyway.

    A stream is in a batch at most once (its next chunk waits for the next batch). When a batch
    fails, its chunks are run one by one, so only the stream at fault gets the error.

    ``gather_seconds``: how long the first chunk of a batch waits for others. Clients send
    their chunks at independent moments, so without a wait each batch would hold one or two
    chunks and cost nearly as much as running them alone (measured: 16 streams of 100 ms
    chunks kept the thread 93% busy at 1.5 chunks per batch); 20 ms gathers a fifth of the
    streams that send every 100 ms, for 20 ms more latency.
    """

    def __init__(
        self, accept_together: AcceptTogether, gather_seconds: float = 0.02, threads: int = 1
    ) -> None:
        self._accept_together = accept_together
        self.gather_seconds = gather_seconds
        self.threads = threads
        self._pending: list[tuple[Any, np.ndarray, Future]] = []
        self._wake = threading.Condition()
        self._closed = False
        self.batches = self.chunks = 0  # run so far: /health shows them
        self.busy_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="stt-stream-batch", daemon=True)
        self._thread.start()

    async def accept(self, transcriber: Any, samples: np.ndarray) -> Any:
        """``transcriber.accept(samples)``, run in the next batch: its partial."""
        return await asyncio.wrap_future(self.submit(transcriber, samples))

    def submit(self, transcriber: Any, samples: np.ndarray) -> Future:
        """:meth:`accept` for callers outside an event loop: the future of the partial."""
        future: Future = Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the stream batcher is closed")
            self._pending.append((transcriber, samples, future))
            self._wake.notify()
        return future

    def close(self) -> None:
        """Run what is pending, then stop the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        torch.set_num_threads(self.threads)  # stream_threads: one by default, see Engine
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending:
                    return
                deadline = time.monotonic() + self.gather_seconds
                while not self._closed and (left := deadline - time.monotonic()) > 0:
                    self._wake.wait(left)  # other streams' chunks join this batch
                batch, seen, later = [], set(), []
                for item in self._pending:
                    (later if id(item[0]) in seen else batch).append(item)
                    seen.add(id(item[0]))
                self._pending = later
            batch = [item for item in batch if item[2].set_running_or_notify_cancel()]
            start = time.perf_counter()
            self._run_batch(batch)
            self.busy_seconds += time.perf_counter() - start
            self.batches += 1 if batch else 0
            self.chunks += len(batch)

    def stats(self) -> dict[str, float]:
        """Batches and chunks run so far, and the seconds spent on them (busy / wall time near
        1 means the streams are more than this thread can keep up with)."""
        return {"batches": self.batches, "chunks": self.chunks,
                "busy_seconds": round(self.busy_seconds, 3)}  # fmt: skip

    def _run_batch(self, batch: list[tuple[Any, np.ndarray, Future]]) -> None:
        if not batch:
            return
        try:
            partials = self._accept_together([t for t, _, _ in batch], [s for _, s, _ in batch])
        except Exception as exc:  # noqa: BLE001 - delivered to the stream(s) it belongs to
            if len(batch) == 1:
                batch[0][2].set_exception(exc)
                return
            for item in batch:
                self._run_batch([item])
            return
        for (_, _, future), partial in zip(batch, partials, strict=True):
            future.set_result(partial)


class LocalStreams:
    """Live streams in this process: ``factory`` makes each stream's transcriber, one
    :class:`StreamBatcher` runs their chunks. :class:`~stt.serve.stream_process.StreamProcess`
    has the same four methods for streams in a child process."""

    def __init__(
        self, factory: Callable[[], Any] | None, accept_together: AcceptTogether, threads: int = 1
    ) -> None:
        self._factory = factory
        self._batcher = StreamBatcher(accept_together, threads=threads)

    def open(self) -> Any:
        return self._factory()

    async def accept(self, transcriber: Any, samples: np.ndarray) -> Any:
        return await self._batcher.accept(transcriber, samples)

    def stats(self) -> dict[str, float]:
        return self._batcher.stats()

    def close(self) -> None:
        self._batcher.close()


class Engine:
    """Runs transcriptions off the event loop, within bounds.

    ``transcriber``: the offline model. ``stream_factory``: makes one
    :class:`~stt.streaming.StreamingTranscriber` per live stream (None: no streaming model, and
    ``/v1/stream`` says so); ``accept_together``: runs one chunk of each of several of them as a
    batch (None: one by one). ``remote_streams``: instead of those two, a
    :class:`~stt.serve.stream_process.StreamProcess` whose child runs every stream. ``workers``:
    threads for whole files; ``queue``: how many more may wait before :class:`Busy`;
    ``stream_workers``: threads for utterances' final decodes; ``stream_threads``: torch threads
    of the thread that runs live chunks as batches.
    """

    def __init__(
        self,
        transcriber: FileTranscriber,
        stream_factory: Callable[[], Any] | None,
        info: EngineInfo,
        workers: int = 2,
        queue: int = 16,
        stream_workers: int = 2,
        accept_together: AcceptTogether | None = None,
        remote_streams: Any = None,
        stream_threads: int = 1,
    ) -> None:
        if workers < 1 or stream_workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {min(workers, stream_workers)}")
        if queue < 0:
            raise ConfigError(f"the queue limit must be >= 0, got {queue}")
        self.transcriber = transcriber
        self.streaming = remote_streams is not None or stream_factory is not None
        self.info = info
        self.workers, self.queue = workers, queue
        # One torch thread per worker: requests run side by side rather than each splitting its
        # matrices over cores that are busy with the others (measured on 2 busy cores: a 5 s
        # file's forward pass took 22 ms on 1 thread, 88 ms on 2). A stream chunk's matrices
        # are too small to split at all.
        self._files = ThreadPoolExecutor(
            workers, thread_name_prefix="stt-file", initializer=torch.set_num_threads,
            initargs=(1,),
        )  # fmt: skip
        self._streams = ThreadPoolExecutor(
            stream_workers, thread_name_prefix="stt-stream", initializer=torch.set_num_threads,
            initargs=(1,),
        )  # fmt: skip
        self._live = remote_streams or LocalStreams(
            stream_factory, accept_together or _one_by_one, stream_threads
        )
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Files being transcribed or waiting for a worker."""
        return self._in_flight

    async def transcribe(
        self, audio: str | Path | np.ndarray, hotwords: list[str] | None = None
    ) -> Any:
        """Transcribe a file or 16 kHz waveform in the file pool: its
        :class:`~stt.transcript.Transcript`.

        Raises:
            Busy: ``workers + queue`` transcriptions are already in flight.
            AudioError: the audio cannot be decoded or holds unusable samples.
        """
        with self._lock:
            if self._in_flight >= self.workers + self.queue:
                raise Busy()
            self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._files, lambda: self.transcriber.transcribe(audio, hotwords=hotwords)
            )
        finally:
            with self._lock:
                self._in_flight -= 1

    def open_stream(self) -> Any:
        """A new live stream's :class:`~stt.streaming.StreamingTranscriber`.

        Raises:
            ConfigError: the server has no streaming model."""
        if not self.streaming:
            raise ConfigError(
                "this server has no streaming model: start it with --streaming-model CHECKPOINT "
                "of a causal model"
            )
        return self._live.open()

    async def accept(self, transcriber: Any, samples: np.ndarray) -> Any:
        """A live stream's next chunk (checked samples), in the next batch: its partial."""
        return await self._live.accept(transcriber, samples)

    def stream_stats(self) -> dict[str, float]:
        """The stream batcher's counters (:meth:`StreamBatcher.stats`)."""
        return self._live.stats()

    async def in_stream_pool(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (an utterance's final decode or reset) in the stream pool."""
        return await asyncio.get_running_loop().run_in_executor(self._streams, fn, *args)

    def close(self) -> None:
        """Stop the pools (waiting for running work) and free the decoders."""
        self._files.shutdown(wait=True, cancel_futures=True)
        self._live.close()
        self._streams.shutdown(wait=True, cancel_futures=True)
        self.transcriber.close()
